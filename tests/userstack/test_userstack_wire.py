"""userstack wire layer (csrc/base/wire.c): checksums, parsing of good, truncated and malformed frames.
No root, no network: the parser runs on buffers that end at a guard page, so an over-read crashes."""
from __future__ import annotations

import os
import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP, Ether
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop
from scapy.layers.l2 import Dot1Q

from tests.fixtures.userstack_helpers import MAC, PEER_MAC, Guarded, udp4, udp6
from userstack._lib import ffi, lib

OK, TRUNC, MALF, CSUM, FRAG, UNSUP = (lib.US_WIRE_OK, lib.US_WIRE_TRUNCATED, lib.US_WIRE_MALFORMED,
                                      lib.US_WIRE_BAD_CSUM, lib.US_WIRE_FRAGMENT, lib.US_WIRE_UNSUPPORTED)
G = Guarded()


def py_csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def c_csum(data: bytes) -> int:
    """The C checksum as the big-endian value it stores."""
    v = lib.us_csum_fold(lib.us_csum_add(0, data, len(data)))
    return struct.unpack("!H", struct.pack("=H", v))[0]


# ---- checksum -------------------------------------------------------------------------------
def test_rfc1071_example():
    # RFC 1071 section 3: the sum of 0001 f203 f4f5 f6f7 is ddf2, the checksum its complement.
    assert c_csum(bytes.fromhex("0001f203f4f5f6f7")) == 0xFFFF - 0xDDF2


def test_ipv4_header_known_vector():
    hdr = bytes.fromhex("450000730000400040110000c0a80001c0a800c7")
    assert c_csum(hdr) == 0xB861


@given(st.binary(max_size=3000))
def test_checksum_matches_python(data):
    assert c_csum(data) == py_csum(data)


@given(st.binary(min_size=2, max_size=200).filter(lambda b: len(b) % 2 == 0), st.data())
def test_split_sums_match_whole(data, d):
    cut = d.draw(st.integers(0, len(data) // 2)) * 2          # pieces of even length, then the rest
    s = lib.us_csum_add(lib.us_csum_add(0, data[:cut], cut), data[cut:], len(data) - cut)
    assert lib.us_csum_fold(s) == lib.us_csum_fold(lib.us_csum_add(0, data, len(data)))


@given(st.binary(min_size=20, max_size=64).filter(lambda b: len(b) % 2 == 0), st.data())
def test_incremental_update_rfc1624(data, d):
    """Changing a 16-bit field and updating the checksum incrementally equals recomputing."""
    buf = bytearray(data)
    csum = lib.us_csum_fold(lib.us_csum_add(0, bytes(buf), len(buf)))
    i = d.draw(st.integers(0, len(buf) // 2 - 1)) * 2
    new = d.draw(st.binary(min_size=2, max_size=2))
    old_v = struct.unpack("=H", bytes(buf[i:i + 2]))[0]
    new_v = struct.unpack("=H", new)[0]
    buf[i:i + 2] = new
    want = lib.us_csum_fold(lib.us_csum_add(0, bytes(buf), len(buf)))
    got = lib.us_csum_update16(csum, old_v, new_v)
    # one's complement has two zeros: 0x0000 and 0xffff are the same sum
    assert got == want or {got, want} == {0, 0xFFFF}


def test_emitted_udp_checksums_agree_with_scapy():
    for fam, src, dst in ((4, "198.18.0.1", "198.18.0.2"), (6, "2001:db8::1", "2001:db8::2")):
        for n in (0, 1, 2, 17, 1000, 1472):
            payload = os.urandom(n)
            buf = ffi.new("uint8_t[]", 8 + n)
            ffi.memmove(buf + 8, payload, n)
            a = (IP if fam == 4 else IPv6)(src=src, dst=dst)
            raw_src = bytes(a)[12:16] if fam == 4 else bytes(a)[8:24]
            raw_dst = bytes(a)[16:20] if fam == 4 else bytes(a)[24:40]
            lib.us_udp_emit(buf, fam, raw_src, raw_dst, 1234, 7000, n)
            ours = bytes(ffi.buffer(buf, 8 + n))
            theirs = bytes(a / UDP(sport=1234, dport=7000) / payload)[len(bytes(a)):]
            assert ours == theirs, (fam, n)


# ---- parsing good frames --------------------------------------------------------------------
def test_parse_udp4():
    f = udp4(b"hello", sport=1111, dport=7000)
    r, p, base = G.parse(f)
    assert r == OK
    assert p.ip.family == 4 and p.ip.proto == 17
    assert p.udp.sport == 1111 and p.udp.dport == 7000 and p.udp.data_len == 5
    assert ffi.buffer(p.udp.data, 5)[:] == b"hello"
    assert bytes(ffi.buffer(p.eth.dst, 6)) == bytes.fromhex(MAC.replace(":", ""))


def test_parse_udp4_with_ip_options_and_padding():
    f = bytes(Ether(src=PEER_MAC, dst=MAC) / IP(src="198.18.0.2", dst="198.18.0.1", options=b"\x01" * 4)
              / UDP(sport=1, dport=7000) / b"x")
    f += b"\0" * 10                                       # Ethernet padding after the IP packet
    r, p, _ = G.parse(f)
    assert r == OK and p.ip.hlen == 24 and p.udp.data_len == 1


def test_parse_vlan_tags():
    for tags in (Dot1Q(vlan=5), Dot1Q(vlan=5) / Dot1Q(vlan=6)):
        f = bytes(Ether(src=PEER_MAC, dst=MAC) / tags / IP(src="198.18.0.2", dst="198.18.0.1")
                  / UDP(sport=1, dport=7000) / b"abc")
        r, p, _ = G.parse(f)
        assert r == OK and p.eth.type == 0x0800 and p.udp.data_len == 3


def test_parse_udp6_with_extension_headers():
    f = udp6(b"v6", ext=IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt())
    r, p, _ = G.parse(f)
    assert r == OK and p.ip.proto == 17 and p.ip.hlen == 40 + 8 + 8 and p.udp.data_len == 2


def test_parse_tcp():
    f = bytes(Ether(src=PEER_MAC, dst=MAC) / IP(src="198.18.0.2", dst="198.18.0.1")
              / TCP(sport=5, dport=80, flags="S", options=[("MSS", 1460)]) / b"data")
    r, p, _ = G.parse(f)
    # checked here (bounds, checksum); its fields are the TCP core's to decode (test_tcp_wire.py)
    assert r == OK and p.ip.proto == 6 and p.ip.payload_len == 24 + 4


# ---- rejections -----------------------------------------------------------------------------
def test_fragments_are_reported():
    f = udp4(b"x" * 100, flags="MF")
    assert G.parse(f)[0] == FRAG
    f = udp4(b"x" * 100, frag=10)
    assert G.parse(f)[0] == FRAG
    f = udp6(b"x", ext=IPv6ExtHdrFragment())
    assert G.parse(f)[0] == FRAG


def test_too_many_extension_headers():
    ext = IPv6ExtHdrDestOpt()
    for _ in range(6):
        ext = ext / IPv6ExtHdrDestOpt()
    assert G.parse(udp6(b"x", ext=ext))[0] == UNSUP


def test_zero_udp_checksum_v4_means_none_v6_invalid():
    f = bytearray(udp4(b"abc"))
    f[14 + 20 + 6:14 + 20 + 8] = b"\0\0"
    assert G.parse(bytes(f))[0] == OK
    f = bytearray(udp6(b"abc"))
    f[14 + 40 + 6:14 + 40 + 8] = b"\0\0"
    assert G.parse(bytes(f))[0] == CSUM


def test_every_corrupted_byte_is_caught():
    """Flipping any bit of the IP header or UDP part is a checksum (or header) failure."""
    f = udp4(b"payload!")
    for i in range(14, len(f)):
        g = bytearray(f)
        g[i] ^= 0x10
        r = G.parse(bytes(g))[0]
        assert r != OK, i
    f6 = udp6(b"payload!")
    for i in range(14 + 8, len(f6)):                     # addresses onwards: pseudo-header covers them
        g = bytearray(f6)
        g[i] ^= 0x01
        assert G.parse(bytes(g))[0] != OK, i


def test_malformed_fields():
    f = bytearray(udp4(b"abc"))
    f[14] = 0x44                                         # IHL 4
    assert G.parse(bytes(f))[0] == MALF
    f = bytearray(udp4(b"abc"))
    f[14] = 0x65                                         # version 6 in an IPv4 frame
    assert G.parse(bytes(f))[0] == MALF
    f = bytearray(udp4(b"abc"))
    struct.pack_into("!H", f, 14 + 20 + 4, 7)            # UDP length < 8
    assert G.parse(bytes(f))[0] in (MALF, CSUM)
    assert G.parse(bytes(Ether(type=0x0806) / (b"\0" * 30)))[0] == UNSUP    # ARP


GOOD = {
    "udp4": udp4(b"0123456789" * 3),
    "udp4-vlan": bytes(Ether(src=PEER_MAC, dst=MAC) / Dot1Q(vlan=9) / IP(src="198.18.0.2", dst="198.18.0.1")
                       / UDP(sport=9, dport=7000) / b"vlan"),
    "udp6-ext": udp6(b"abcdef", ext=IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()),
    "tcp4-opts": bytes(Ether(src=PEER_MAC, dst=MAC) / IP(src="198.18.0.2", dst="198.18.0.1")
                       / TCP(sport=5, dport=80, options=[("MSS", 1460), ("NOP", None), ("WScale", 7)])
                       / b"xy"),
    "tcp6": bytes(Ether(src=PEER_MAC, dst=MAC) / IPv6(src="2001:db8::2", dst="2001:db8::1")
                  / TCP(sport=5, dport=80) / b"z"),
}


@pytest.mark.parametrize("name", sorted(GOOD))
def test_truncated_at_every_boundary(name):
    f = GOOD[name]
    assert G.parse(f)[0] == OK
    for n in range(len(f)):
        r = G.parse(f[:n])[0]
        assert r == TRUNC, (name, n, r)


def _check_consistent(r, p, base, n):
    if r != OK:
        return
    end = base + n
    ip_payload = int(ffi.cast("uintptr_t", p.ip.payload))
    assert base <= ip_payload <= end and ip_payload + p.ip.payload_len <= end
    if p.ip.proto == 17:
        d = int(ffi.cast("uintptr_t", p.udp.data))
        assert d + p.udp.data_len <= end
    else:                                   # a TCP header that fits the payload
        assert p.ip.payload_len >= 20 and (p.ip.payload[12] >> 4) * 4 <= p.ip.payload_len


@settings(max_examples=3000, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_crash(data):
    r, p, base = G.parse(data)
    assert r in (OK, TRUNC, MALF, CSUM, FRAG, UNSUP)
    _check_consistent(r, p, base, len(data))


@settings(max_examples=3000, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.sampled_from(sorted(GOOD)), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)),
                                                max_size=8), st.integers(0, 10_000))
def test_mutated_frames_never_crash(name, edits, cut):
    f = bytearray(GOOD[name])
    for pos, val in edits:
        f[pos % len(f)] = val
    f = bytes(f[: len(f) - cut % 8]) if cut % 3 == 0 else bytes(f)
    r, p, base = G.parse(f)
    _check_consistent(r, p, base, len(f))


def test_random_header_lengths_stay_in_bounds():
    """Length fields claiming more than the frame holds are TRUNCATED, never read past it."""
    rng = random.Random(7)
    for _ in range(2000):
        f = bytearray(GOOD[rng.choice(sorted(GOOD))])
        off = rng.choice([14 + 2, 14 + 4, 14 + 20 + 4, 14 + 40 + 4, 14])
        if off + 2 <= len(f):
            struct.pack_into("!H", f, off, rng.randrange(65536))
        r, p, base = G.parse(bytes(f))
        _check_consistent(r, p, base, len(f))
