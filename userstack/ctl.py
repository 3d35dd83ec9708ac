"""Codec for the control channel between a stack and its launcher (userstack/csrc/stack/ctl.h).

Every message is exactly 64 bytes on a SOCK_SEQPACKET socket: a header (type, version, seq),
a body, zero padding. Integers are native order (both ends are on one machine); addresses are
struct us_addr: family byte (4 or 6), 3 pad bytes, 16 address bytes in network order.

    msg = decode(sock.recv(64))          # Resolve / Neigh / ClaimEphemeral / Claimed / Release
    sock.send(encode(Neigh(dst="198.18.0.2", mac="02:00:00:00:00:02", seq=msg.seq)))
"""
from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

MSG_SIZE = 64
VERSION = 1

RESOLVE, NEIGH, CLAIM_EPHEMERAL, CLAIMED, RELEASE = 1, 2, 3, 4, 5
NEIGH_OK, NEIGH_FAILED = 0, 1

_HDR = "=HHI"                 # 8 bytes
_ADDR = "B3x16s"              # 20 bytes
_FMT = {
    RESOLVE: "=HHI" + _ADDR,                          # 28
    NEIGH: "=HHI" + _ADDR + "6sBx" + _ADDR,           # 56
    CLAIM_EPHEMERAL: "=HHI" + "BBxx" + _ADDR + "H2x",  # 36
    CLAIMED: "=HHI" + "BBHi" + _ADDR,                 # 36
    RELEASE: "=HHI" + "BBH" + _ADDR,                  # 32
}


def _pack_addr(text: str | None, family: int = 0) -> tuple[int, bytes]:
    if not text:
        return family, b"\0" * 16
    ip = ipaddress.ip_address(text)
    return ip.version, ip.packed.ljust(16, b"\0")


def _unpack_addr(family: int, raw: bytes) -> str | None:
    if family == 4:
        return str(ipaddress.IPv4Address(raw[:4]))
    if family == 6:
        return str(ipaddress.IPv6Address(raw))
    return None


def _mac_bytes(mac: str | None) -> bytes:
    return bytes.fromhex(mac.replace(":", "")) if mac else b"\0" * 6


@dataclass
class Resolve:
    dst: str
    seq: int = 0


@dataclass
class Neigh:
    dst: str
    mac: str | None                  # None with status NEIGH_FAILED
    status: int = NEIGH_OK
    nexthop: str | None = None
    seq: int = 0


@dataclass
class ClaimEphemeral:
    proto: int                       # 6 TCP, 17 UDP
    family: int                      # 4 or 6
    remote: str | None = None
    remote_port: int = 0
    seq: int = 0


@dataclass
class Claimed:
    proto: int
    family: int
    port: int
    status: int = 0                  # 0 or -errno
    local: str | None = None         # None: the wildcard of family
    seq: int = 0


@dataclass
class Release:
    proto: int
    family: int
    port: int
    local: str | None = None
    seq: int = 0


def encode(m) -> bytes:
    if isinstance(m, Resolve):
        body = struct.pack(_FMT[RESOLVE], RESOLVE, VERSION, m.seq, *_pack_addr(m.dst))
    elif isinstance(m, Neigh):
        status = m.status if m.mac else NEIGH_FAILED
        body = struct.pack(_FMT[NEIGH], NEIGH, VERSION, m.seq, *_pack_addr(m.dst), _mac_bytes(m.mac),
                           status, *_pack_addr(m.nexthop))
    elif isinstance(m, ClaimEphemeral):
        body = struct.pack(_FMT[CLAIM_EPHEMERAL], CLAIM_EPHEMERAL, VERSION, m.seq, m.proto, m.family,
                           *_pack_addr(m.remote), m.remote_port)
    elif isinstance(m, Claimed):
        body = struct.pack(_FMT[CLAIMED], CLAIMED, VERSION, m.seq, m.proto, m.family, m.port, m.status,
                           *_pack_addr(m.local, m.family))
    elif isinstance(m, Release):
        body = struct.pack(_FMT[RELEASE], RELEASE, VERSION, m.seq, m.proto, m.family, m.port,
                           *_pack_addr(m.local, m.family))
    else:
        raise TypeError(f"not a control message: {m!r}")
    return body.ljust(MSG_SIZE, b"\0")


def decode(data: bytes):
    if len(data) != MSG_SIZE:
        raise ValueError(f"control messages are {MSG_SIZE} bytes, got {len(data)}")
    mtype, version, seq = struct.unpack_from(_HDR, data)
    if version != VERSION or mtype not in _FMT:
        raise ValueError(f"unknown control message type {mtype} version {version}")
    f = struct.unpack_from(_FMT[mtype], data)[3:]
    if mtype == RESOLVE:
        return Resolve(dst=_unpack_addr(f[0], f[1]), seq=seq)
    if mtype == NEIGH:
        mac = ":".join(f"{b:02x}" for b in f[2]) if f[3] == NEIGH_OK else None
        return Neigh(dst=_unpack_addr(f[0], f[1]), mac=mac, status=f[3], nexthop=_unpack_addr(f[4], f[5]),
                     seq=seq)
    if mtype == CLAIM_EPHEMERAL:
        return ClaimEphemeral(proto=f[0], family=f[1], remote=_unpack_addr(f[2], f[3]), remote_port=f[4],
                              seq=seq)
    if mtype == CLAIMED:
        local = _unpack_addr(f[4], f[5]) if any(f[5]) else None
        return Claimed(proto=f[0], family=f[1], port=f[2], status=f[3], local=local, seq=seq)
    local = _unpack_addr(f[3], f[4]) if any(f[4]) else None
    return Release(proto=f[0], family=f[1], port=f[2], local=local, seq=seq)
