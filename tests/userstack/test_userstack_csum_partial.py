"""Partial transport checksums from a local kernel peer (csrc/base/wire.h, US_PARSE_LOCAL_PEER).

A kernel sending on a veth with tx checksum offload on (the default) leaves in the UDP/TCP checksum
field only the folded pseudo-header sum, for a NIC to complete; XDP and AF_XDP get the frame as it
is. A stack told that its peer is local accepts exactly that value (and counts it), verifies every
other one in full, and the fault injector completes such a checksum before it corrupts the frame.
No root, no network: the partial value is computed here independently of the C code."""
from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP, Ether
from scapy.layers.inet6 import IPv6

from tests.fixtures.userstack_helpers import (
    ADDR4,
    ADDR6,
    MAC,
    PEER4,
    PEER6,
    PEER_MAC,
    Guarded,
    inject,
    make_desc,
)
from userstack._lib import ffi, lib
from userstack.stack import Stack

OK, CSUM = lib.US_WIRE_OK, lib.US_WIRE_BAD_CSUM
LOCAL = lib.US_PARSE_LOCAL_PEER
G = Guarded()


def frame(proto: str, family: int, payload: bytes) -> bytes:
    """A frame from the peer with a complete checksum (scapy's)."""
    ip = IP(src=PEER4, dst=ADDR4) if family == 4 else IPv6(src=PEER6, dst=ADDR6)
    l4 = UDP(sport=5555, dport=7000) if proto == "udp" else TCP(sport=5555, dport=7000, flags="A")
    return bytes(Ether(src=PEER_MAC, dst=MAC) / ip / l4 / payload)


def _l4(f: bytes) -> tuple[int, int, bytes, bytes, int]:
    """Offset of the transport header, its protocol, source, destination, transport length."""
    if f[12:14] == b"\x08\x00":
        ihl = (f[14] & 0xF) * 4
        return 14 + ihl, f[14 + 9], f[26:30], f[30:34], struct.unpack("!H", f[16:18])[0] - ihl
    return 54, f[14 + 6], f[22:38], f[38:54], struct.unpack("!H", f[18:20])[0]


def partial(f: bytes) -> bytes:
    """f as a local kernel sends it with checksum offload: field = folded pseudo-header sum."""
    off, proto, src, dst, n = _l4(f)
    if len(src) == 4:
        pseudo = src + dst + struct.pack("!BBH", 0, proto, n)
    else:
        pseudo = src + dst + struct.pack("!I3xB", n, proto)
    s = sum(struct.unpack(f"!{len(pseudo) // 2}H", pseudo))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    field = off + (6 if proto == 17 else 16)
    return f[:field] + struct.pack("!H", s) + f[field + 2:]


CASES = [(p, fam) for p in ("udp", "tcp") for fam in (4, 6)]


# ---- the parser ---------------------------------------------------------------------------------
@pytest.mark.parametrize("proto,family", CASES)
def test_partial_is_accepted_only_from_a_local_peer(proto, family):
    f = partial(frame(proto, family, b"hello"))
    r, p, _ = G.parse(f)
    assert r == CSUM                                      # a real NIC's frame would be complete
    r, p, _ = G.parse(f, LOCAL)
    assert r == OK and p.csum_partial == 1


@pytest.mark.parametrize("proto,family", CASES)
def test_complete_checksums_are_verified_either_way(proto, family):
    f = frame(proto, family, b"complete")
    for flags in (0, LOCAL):
        r, p, _ = G.parse(f, flags)
        assert r == OK and p.csum_partial == 0
        bad = bytearray(f)
        bad[-1] ^= 0x01
        assert G.parse(bytes(bad), flags)[0] == CSUM
        bad = bytearray(f)
        field = _l4(f)[0] + (6 if proto == "udp" else 16)
        bad[field + 1] ^= 0x01                            # neither complete nor partial
        assert G.parse(bytes(bad), flags)[0] == CSUM


@pytest.mark.parametrize("proto,family", CASES)
def test_a_partial_checksum_covers_no_payload(proto, family):
    """The point of checking the partial value first: no payload sum. So a damaged payload under
    a partial checksum passes; only the pseudo-header (addresses, length, protocol) is covered.
    Hence the fault injector completes the checksum before it corrupts a frame."""
    f = bytearray(partial(frame(proto, family, b"payload")))
    f[-1] ^= 0x40
    r, p, _ = G.parse(bytes(f), LOCAL)
    assert r == OK and p.csum_partial == 1
    g = bytearray(partial(frame(proto, family, b"payload")))
    g[_l4(bytes(g))[0] - 1] ^= 0x01                       # last byte of the destination address
    assert G.parse(bytes(g), LOCAL)[0] == CSUM


# ---- completing it, as a NIC would --------------------------------------------------------------
def complete(f: bytes) -> tuple[int, bytes]:
    buf = ffi.new("uint8_t[]", f)
    r = lib.us_csum_complete(buf, len(f))
    return r, bytes(ffi.buffer(buf, len(f)))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(CASES), st.binary(max_size=1400), st.integers(1, 0xFFFFFFFF))
def test_completing_a_partial_checksum_gives_the_full_one(case, payload, src):
    proto, family = case
    f = frame(proto, family, payload)
    if family == 4:                                       # vary the pseudo-header too
        peer = str(ipaddress.IPv4Address(src))
        f = bytes(Ether(src=PEER_MAC, dst=MAC) / IP(src=peer, dst=ADDR4)
                  / (UDP(sport=1, dport=7000) if proto == "udp" else TCP(sport=1, dport=7000)) / payload)
    r, done = complete(partial(f))
    assert (r, done) == (1, f)
    assert G.parse(done)[0] == OK
    assert complete(f) == (0, f)                          # a complete checksum is left alone


def test_completion_leaves_other_frames_alone():
    for f in (bytes(Ether(src=PEER_MAC, dst=MAC, type=0x0806) / (b"\0" * 28)),    # ARP
              frame("udp", 4, b"x")[:30],                                         # truncated
              bytes(Ether(src=PEER_MAC, dst=MAC) / IP(src=PEER4, dst=ADDR4, proto=47) / (b"\0" * 20))):
        assert complete(f) == (0, f)


def test_a_completed_udp_checksum_of_zero_is_sent_as_ffff():
    """0 in a UDP checksum means none (IPv4) or invalid (IPv6): a sum of zero is written 0xffff."""
    for family in (4, 6):
        f0 = frame("udp", family, b"\0\0")
        off = _l4(f0)[0]
        f = frame("udp", family, f0[off + 6:off + 8])      # payload word = ~(sum of the rest): sum 0
        assert f[off + 6:off + 8] == b"\xff\xff"
        r, done = complete(partial(f))
        assert r == 1 and done[off + 6:off + 8] == b"\xff\xff" and G.parse(done)[0] == OK


# ---- a stack told its peer is local -------------------------------------------------------------
def local_stack(local_peer: bool) -> Stack:
    d = make_desc()
    d.local_peer = int(local_peer)
    err = ffi.new("int *")
    h = lib.us_test_stack_open(d, 512, err)
    assert h != ffi.NULL, err[0]
    return Stack(h, driver=False)


def _drain(s) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(s.recv(2048))
        except BlockingIOError:
            return out


@pytest.mark.parametrize("local_peer", [True, False])
def test_a_stack_counts_the_partial_frames_it_accepts(local_peer):
    stack = local_stack(local_peer)
    try:
        s = stack.socket()
        s.bind(("0.0.0.0", 7000))
        s.setblocking(False)
        for i in range(10):
            inject(stack, partial(frame("udp", 4, b"p%d" % i)))
        inject(stack, frame("udp", 4, b"full"))
        stack.poll()
        st = stack.stats()
        got = _drain(s)
        if local_peer:
            assert got == [b"p%d" % i for i in range(10)] + [b"full"]
            assert (st["rx_csum_partial"], st["rx_bad_csum"]) == (10, 0)
        else:
            assert got == [b"full"]
            assert (st["rx_csum_partial"], st["rx_bad_csum"]) == (0, 10)
    finally:
        stack.close()


def test_the_fault_injector_corrupts_partial_frames_into_bad_checksums():
    """Every received frame corrupted: the injector completed each partial checksum first, so a
    flipped payload bit is a bad checksum, and no damaged payload reaches the socket."""
    n, payload = 200, bytes(range(256)) * 5
    stack = local_stack(True)
    try:
        s = stack.socket()
        s.bind(("0.0.0.0", 7000))
        s.setblocking(False)
        stack.set_faults(seed=3, corrupt=1.0, tx=False)
        for i in range(n):
            inject(stack, partial(frame("udp", 4, payload)))
            if i % 32 == 31:
                stack.poll()
        stack.poll()
        delivered = _drain(s)
        st = stack.stats()
        assert stack.fault_stats()["corrupted"] == n
        assert all(d == payload for d in delivered)       # only bits in the MAC addresses are harmless
        assert st["rx_csum_partial"] == 0
        assert st["rx_bad_csum"] >= 0.9 * n, st
        assert len(delivered) + st["rx_bad_csum"] + st["rx_malformed"] + st["rx_not_local"] \
            + st["rx_no_socket"] + st["rx_fragment"] + st["rx_other_proto"] == n
    finally:
        stack.close()
