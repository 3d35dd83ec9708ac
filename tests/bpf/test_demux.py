"""xdp_demux through BPF_PROG_TEST_RUN: every parse path, claim lookups, targets and counters.

Each case states the expected verdict outright and also checks that the reference classifier
agrees, so a bug shared by the program and the reference still fails here.
"""
from __future__ import annotations

import struct

import pytest

from tests.fixtures import bpf_reference as ref
from tests.fixtures.bpf_frames import (
    A4,
    A6,
    ARP,
    B4,
    B6,
    ICMP,
    IP,
    PEER4,
    PEER6,
    TCP,
    UDP,
    Ether,
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    Raw,
    eth,
    frame,
)
from tests.fixtures.bpf_harness import PORT, XSK, key
from xdpstack import testrun

S = 7           # the stack that claims things in these tests
Q = 64          # XS_MAX_QUEUES


def expect(bpf, f: bytes, reason: str, stack: int | None = None, rx_queue: int = 0):
    got = bpf.demux(f, rx_queue)
    action = ref.XDP_REDIRECT if reason == "redirected" else ref.XDP_PASS
    assert key(got) == (action, reason, stack)
    assert key(ref.demux(f, bpf.state, rx_queue)) == key(got), "the reference classifier disagrees"
    return got


@pytest.fixture
def claimed(bpf):
    """UDP and TCP port 80 and UDP port 53 of A4 and A6 claimed by stack S, sockets in queue 0."""
    pp = (("udp", 80), ("tcp", 80), ("udp", 53))
    bpf.set_claims({(p, a, port): (S, XSK) for a in (A4, A6) for p, port in pp})
    bpf.set_slots({S * Q})
    return bpf


# -- hits and misses ------------------------------------------------------------------------------

@pytest.mark.parametrize("l3", ["v4", "v6"])
@pytest.mark.parametrize("l4", ["udp", "tcp"])
@pytest.mark.parametrize("pad", [0, 60])
def test_hit(claimed, l3, l4, pad):
    ip = IP(src=PEER4, dst=A4) if l3 == "v4" else IPv6(src=PEER6, dst=A6)
    t = UDP(sport=40000, dport=80) if l4 == "udp" else TCP(sport=40000, dport=80, flags="S")
    expect(claimed, frame(eth() / ip / t, pad), "redirected", S)


@pytest.mark.parametrize("pkt", [
    IP(src=PEER4, dst=A4) / UDP(dport=81),                   # unclaimed port
    IP(src=PEER4, dst=B4) / UDP(dport=80),                   # claimed port, another address
    IP(src=PEER4, dst=A4) / TCP(dport=53),                   # claimed UDP port, but TCP
    IPv6(src=PEER6, dst=A6) / UDP(dport=81),
    IPv6(src=PEER6, dst=B6) / TCP(dport=80),
    IP(src=A4, dst=PEER4) / UDP(sport=80, dport=40000),      # the claimed port as source
], ids=["port", "addr", "proto", "port6", "addr6", "source"])
def test_miss(claimed, pkt):
    expect(claimed, frame(eth() / pkt), "pass_no_claim")


def test_payload_and_options_do_not_matter(claimed):
    expect(claimed, frame(eth() / IP(src=PEER4, dst=A4, options=b"\x01" * 40) / TCP(dport=80,
           options=[("MSS", 1460), ("SAckOK", b""), ("WScale", 7)]) / Raw(b"x" * 1000)), "redirected", S)


@pytest.mark.parametrize("ihl", range(5, 16))
def test_any_valid_ihl(claimed, ihl):
    opts = b"\x01" * ((ihl - 5) * 4)                         # NOPs
    expect(claimed, frame(eth() / IP(src=PEER4, dst=A4, options=opts) / UDP(dport=53)), "redirected", S)


# -- wildcard and precedence ----------------------------------------------------------------------

def test_wildcard_alone(bpf):
    bpf.set_claims({("udp", None, 53, 4): (S, XSK), ("tcp", None, 443, 6): (S, XSK)})
    bpf.set_slots({S * Q})
    expect(bpf, frame(eth() / IP(src=PEER4, dst=A4) / UDP(dport=53)), "redirected", S)
    expect(bpf, frame(eth() / IP(src=PEER4, dst="255.255.255.255") / UDP(dport=53)), "redirected", S)
    expect(bpf, frame(eth() / IPv6(src=PEER6, dst=A6) / UDP(dport=53)), "pass_no_claim")   # a v4 wildcard
    expect(bpf, frame(eth() / IPv6(src=PEER6, dst=B6) / TCP(dport=443)), "redirected", S)
    expect(bpf, frame(eth() / IP(src=PEER4, dst=A4) / TCP(dport=443)), "pass_no_claim")


@pytest.mark.parametrize("fam", [4, 6])
def test_exact_wins_over_wildcard(bpf, fam):
    a, b, peer, ipc = (A4, B4, PEER4, IP) if fam == 4 else (A6, B6, PEER6, IPv6)
    bpf.set_claims({("udp", a, 53): (1, XSK), ("udp", None, 53, fam): (2, XSK)})
    bpf.set_slots({1 * Q, 2 * Q})
    expect(bpf, frame(eth() / ipc(src=peer, dst=a) / UDP(dport=53)), "redirected", 1)
    expect(bpf, frame(eth() / ipc(src=peer, dst=b) / UDP(dport=53)), "redirected", 2)


def test_shared_port_uses_the_claims_hash(bpf):
    """Two exact claims on one port: the index says 2, the hash decides."""
    bpf.set_claims({("tcp", A4, 80): (1, XSK), ("tcp", B4, 80): (2, XSK)})
    bpf.set_slots({1 * Q, 2 * Q})
    expect(bpf, frame(eth() / IP(src=PEER4, dst=A4) / TCP(dport=80)), "redirected", 1)
    expect(bpf, frame(eth() / IP(src=PEER4, dst=B4) / TCP(dport=80)), "redirected", 2)
    expect(bpf, frame(eth() / IP(src=PEER4, dst="198.18.0.9") / TCP(dport=80)), "pass_no_claim")


def test_index_follows_claim_changes(bpf):
    """Claims come and go; the claims_by_port entry follows (1 -> 2 -> 1 -> 0 claims)."""
    f_a = frame(eth() / IP(src=PEER4, dst=A4) / UDP(dport=5000))
    f_b = frame(eth() / IP(src=PEER4, dst=B4) / UDP(dport=5000))
    bpf.set_slots({1 * Q, 2 * Q})
    bpf.set_claims({("udp", A4, 5000): (1, XSK)})
    expect(bpf, f_b, "pass_no_claim")
    bpf.set_claims({("udp", A4, 5000): (1, XSK), ("udp", B4, 5000): (2, XSK)})
    expect(bpf, f_b, "redirected", 2)
    bpf.set_claims({("udp", B4, 5000): (2, XSK)})
    expect(bpf, f_a, "pass_no_claim")
    expect(bpf, f_b, "redirected", 2)
    bpf.set_claims({})
    expect(bpf, f_b, "pass_no_claim")


# -- VLAN -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("tags", [(), ("q",), ("ad",), ("ad", "q"), ("q", "q")])
@pytest.mark.parametrize("fam", [4, 6])
def test_vlan_tags(claimed, tags, fam):
    ip = IP(src=PEER4, dst=A4) if fam == 4 else IPv6(src=PEER6, dst=A6)
    expect(claimed, frame(eth(*tags) / ip / UDP(dport=53)), "redirected", S)


def test_three_vlan_tags_are_beyond_the_bound(claimed):
    """A third tag is not parsed: the kernel gets the frame, counted as pass_too_deep."""
    expect(claimed, frame(eth("ad", "q", "q") / IP(src=PEER4, dst=A4) / UDP(dport=53)), "pass_too_deep")


@pytest.mark.parametrize("tags", [("q",), ("ad", "q")])
def test_vlan_non_ip(claimed, tags):
    expect(claimed, frame(eth(*tags) / ARP(pdst=A4)), "pass_not_ip")


# -- IPv6 extension headers -----------------------------------------------------------------------

EXT = {
    "hbh": lambda: IPv6ExtHdrHopByHop(),
    "rt": lambda: IPv6ExtHdrRouting(addresses=[A6]),
    "dst": lambda: IPv6ExtHdrDestOpt(),
    "frag0": lambda: IPv6ExtHdrFragment(offset=0, m=1, id=7),
}


def v6_with(*exts, l4=None):
    p = eth() / IPv6(src=PEER6, dst=A6)
    for e in exts:
        p = p / EXT[e]()
    return p / (l4 if l4 is not None else UDP(sport=1, dport=53))


@pytest.mark.parametrize("ext", ["hbh", "rt", "dst", "frag0"])
def test_each_extension_header(claimed, ext):
    expect(claimed, frame(v6_with(ext)), "redirected", S)


def test_long_extension_header(claimed):
    """A destination-options header of 32 bytes (hdrlen 3): one PadN option over the rest."""
    dstopts = bytes([17, 3, 1, 28]) + bytes(28)
    expect(claimed, frame(eth() / IPv6(src=PEER6, dst=A6, nh=60) / Raw(dstopts) / UDP(sport=1, dport=53)),
           "redirected", S)


@pytest.mark.parametrize("chain", [
    ("hbh", "dst"), ("hbh", "rt", "dst"), ("hbh", "dst", "rt", "frag0", "dst"),
    ("hbh", "dst", "rt", "dst", "frag0", "dst"),                                   # exactly the bound: 6
])
def test_extension_chains(claimed, chain):
    expect(claimed, frame(v6_with(*chain)), "redirected", S)


def test_extension_chain_beyond_the_bound(claimed):
    expect(claimed, frame(v6_with("hbh", "dst", "rt", "dst", "frag0", "dst", "dst")), "pass_too_deep")


def test_extension_then_not_l4(claimed):
    expect(claimed, frame(v6_with("hbh", l4=ICMPv6EchoRequest())), "pass_not_l4")
    expect(claimed, frame(eth() / IPv6(src=PEER6, dst=A6, nh=59)), "pass_not_l4")          # no next header
    expect(claimed, frame(eth() / IPv6(src=PEER6, dst=A6, nh=51) / Raw(bytes(24))), "pass_not_l4")   # AH


def test_extension_header_beyond_the_datagram(claimed):
    f = bytearray(frame(v6_with("dst")))
    f[14 + 40 + 1] = 10                      # hdrlen 10: 88 bytes, far beyond the payload
    expect(claimed, bytes(f), "pass_malformed")


# -- fragments ------------------------------------------------------------------------------------

def test_ipv4_first_fragment_is_demuxed(claimed):
    expect(claimed, frame(eth() / IP(src=PEER4, dst=A4, flags="MF", frag=0) / UDP(dport=53) / Raw(bytes(64))),
           "redirected", S)


@pytest.mark.parametrize("proto", [17, 6, 1])
def test_ipv4_non_first_fragment(claimed, proto):
    expect(claimed, frame(eth() / IP(src=PEER4, dst=A4, flags=0, frag=9, proto=proto) / Raw(bytes(40))),
           "pass_fragment")
    expect(claimed, frame(eth() / IP(src=PEER4, dst=A4, flags="MF", frag=1, proto=proto) / Raw(bytes(40))),
           "pass_fragment")


def test_ipv6_first_fragment_is_demuxed(claimed):
    expect(claimed, frame(v6_with("frag0")), "redirected", S)


@pytest.mark.parametrize("m", [0, 1])
def test_ipv6_non_first_fragment(claimed, m):
    p = eth() / IPv6(src=PEER6, dst=A6) / IPv6ExtHdrFragment(offset=10, m=m, nh=17) / Raw(bytes(40))
    expect(claimed, frame(p), "pass_fragment")
    p = eth() / IPv6(src=PEER6, dst=A6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrFragment(offset=1, m=m, nh=17)
    expect(claimed, frame(p / Raw(bytes(8))), "pass_fragment")


# -- truncations and malformed headers ------------------------------------------------------------

TRUNCATE = {  # IPv4 options, TCP options (data offset 7), VLAN tags, IPv6 extension headers
    "udp4": eth() / IP(src=PEER4, dst=A4) / UDP(dport=53) / Raw(b"abcd"),
    "tcp4_vlan": eth("q") / IP(src=PEER4, dst=A4, options=b"\x01" * 8)
    / TCP(dport=80, options=[("NOP", 0)] * 8),
    "udp6": eth("ad", "q") / IPv6(src=PEER6, dst=A6) / UDP(dport=53),
    "tcp6_ext": eth() / IPv6(src=PEER6, dst=A6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrFragment(m=1) / TCP(),
}


@pytest.mark.parametrize("name", TRUNCATE)
def test_truncated_at_every_length(claimed, name):
    """Cut anywhere from the first byte after the MAC addresses to the last byte but one: every
    header boundary and every byte in between. The IP length then reaches beyond the frame."""
    full = frame(TRUNCATE[name])
    expect(claimed, full, "redirected", S)
    for n in range(14, len(full)):
        got = expect(claimed, full[:n], "pass_malformed")
        assert got.action == ref.XDP_PASS


def test_truncated_ethernet_and_vlan(claimed):
    expect(claimed, bytes(12) + b"\x81\x00", "pass_malformed")                       # tag cut off
    expect(claimed, bytes(12) + b"\x81\x00" + bytes(2) + b"\x88\xa8", "pass_malformed")


@pytest.mark.parametrize("l4", ["udp", "tcp"])
def test_transport_header_beyond_the_ip_length(claimed, l4):
    """The frame is long enough (Ethernet padding) but the IP datagram ends inside the header."""
    t = UDP(dport=53) if l4 == "udp" else TCP(dport=80)
    need = 8 if l4 == "udp" else 20
    for cut in range(need):
        f = bytearray(frame(eth() / IP(src=PEER4, dst=A4) / t, 80))
        f[16:18] = (20 + cut).to_bytes(2, "big")
        expect(claimed, bytes(f), "pass_malformed")
        f6 = bytearray(frame(eth() / IPv6(src=PEER6, dst=A6) / t, 100))
        f6[18:20] = cut.to_bytes(2, "big")
        expect(claimed, bytes(f6), "pass_malformed")


@pytest.mark.parametrize("ihl", range(0, 5))
def test_bad_ihl(claimed, ihl):
    f = bytearray(frame(eth() / IP(src=PEER4, dst=A4) / UDP(dport=53)))
    f[14] = 0x40 | ihl
    expect(claimed, bytes(f), "pass_malformed")


def test_bad_ipv4_lengths_and_version(claimed):
    base = frame(eth() / IP(src=PEER4, dst=A4) / UDP(dport=53), 60)
    for mutate in (lambda f: f.__setitem__(slice(16, 18), (19).to_bytes(2, "big")),    # total < IHL*4
                   lambda f: f.__setitem__(slice(16, 18), (47).to_bytes(2, "big")),    # beyond the frame
                   lambda f: f.__setitem__(14, 0x65),                                  # version 6, IHL 5
                   lambda f: f.__setitem__(14, 0x4F)):                                 # IHL 15 > total 28
        f = bytearray(base)
        mutate(f)
        expect(claimed, bytes(f), "pass_malformed")


def test_bad_ipv6_length_and_version(claimed):
    base = frame(eth() / IPv6(src=PEER6, dst=A6) / UDP(dport=53))
    f = bytearray(base)
    f[18:20] = (9).to_bytes(2, "big")          # payload beyond the frame
    expect(claimed, bytes(f), "pass_malformed")
    f = bytearray(base)
    f[14] = 0x40                               # version 4 under EtherType IPv6
    expect(claimed, bytes(f), "pass_malformed")
    f = bytearray(base)
    f[18:20] = bytes(2)                        # jumbogram (payload length 0): not parsed
    expect(claimed, bytes(f), "pass_malformed")


@pytest.mark.parametrize("doff", range(0, 5))
def test_tcp_data_offset_below_5(claimed, doff):
    f = bytearray(frame(eth() / IP(src=PEER4, dst=A4) / TCP(dport=80)))
    f[14 + 20 + 12] = doff << 4
    expect(claimed, bytes(f), "pass_malformed")


def test_tcp_data_offset_beyond_the_datagram(claimed):
    f = bytearray(frame(eth() / IP(src=PEER4, dst=A4) / TCP(dport=80) / Raw(bytes(20)), 100))
    f[14 + 20 + 12] = 11 << 4                   # 44 bytes of header, 40 in the datagram
    expect(claimed, bytes(f), "pass_malformed")
    f[14 + 20 + 12] = 10 << 4                   # 40: fits exactly
    expect(claimed, bytes(f), "redirected", S)


# -- not IP, not TCP/UDP --------------------------------------------------------------------------

@pytest.mark.parametrize("pkt", [
    Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(pdst=A4),
    Ether(dst="01:80:c2:00:00:0e", type=0x88CC) / Raw(bytes(46)),                  # LLDP
    Ether(type=0x8847) / Raw(bytes(46)),                                           # MPLS
    Ether(type=0x0600) / Raw(bytes(46)),
], ids=["arp", "lldp", "mpls", "xns"])
def test_not_ip(claimed, pkt):
    expect(claimed, frame(pkt), "pass_not_ip")


@pytest.mark.parametrize("pkt", [
    IP(src=PEER4, dst=A4) / ICMP(),
    IP(src=PEER4, dst=A4, proto=47) / Raw(bytes(8)),        # GRE
    IP(src=PEER4, dst=A4, proto=132) / Raw(bytes(16)),      # SCTP to a claimed port number
    IPv6(src=PEER6, dst=A6) / ICMPv6EchoRequest(),
], ids=["icmp", "gre", "sctp", "icmpv6"])
def test_not_tcp_or_udp(claimed, pkt):
    expect(claimed, frame(eth() / pkt), "pass_not_l4")


# -- targets, orphans, queues ---------------------------------------------------------------------

F4 = frame(eth() / IP(src=PEER4, dst=A4) / UDP(dport=53))


def test_xsk_target_picks_the_slot_of_the_rx_queue(bpf):
    bpf.set_claims({("udp", A4, 53): (S, XSK)})
    bpf.set_slots({S * Q + 5})
    expect(bpf, F4, "redirected", S, rx_queue=5)
    expect(bpf, F4, "pass_orphaned", S, rx_queue=4)     # the stack has no socket on queue 4
    expect(bpf, F4, "pass_orphaned", S, rx_queue=0)
    bpf.set_slots({S * Q + 63})
    expect(bpf, F4, "redirected", S, rx_queue=63)


@pytest.mark.parametrize("q", [64, 79])
def test_queue_beyond_max_queues(bpf, q):
    bpf.set_claims({("udp", A4, 53): (S, XSK)})
    bpf.set_slots({S * Q + i for i in range(Q)})
    expect(bpf, F4, "pass_bad_queue", None, rx_queue=q)


def test_orphaned_socket_passes_to_the_kernel(bpf):
    """Claimed, but nothing in the slot: XDP_PASS, pass_orphaned and the stack's orphaned."""
    bpf.set_claims({("udp", A4, 53): (S, XSK)})
    bpf.set_slots({(S + 1) * Q})               # another stack's slot only
    before = bpf.obj.counters("stack_stats", S)
    expect(bpf, F4, "pass_orphaned", S)
    after = bpf.obj.counters("stack_stats", S)
    assert after["orphaned"] - before["orphaned"] == 1
    assert after["rx_packets"] == before["rx_packets"]


def test_port_target(bpf):
    bpf.set_claims({("udp", A4, 53): (S, PORT)})
    bpf.set_slots({S * Q})                     # a socket in the XSK slot does not matter
    expect(bpf, F4, "pass_orphaned", S)        # no port in the devmap
    bpf.set_ports({S})
    expect(bpf, F4, "redirected", S)
    expect(bpf, F4, "redirected", S, rx_queue=70)     # ports do not care about the queue
    bpf.set_ports({S + 1})
    expect(bpf, F4, "pass_orphaned", S)


def test_a_frame_for_a_port_carries_its_stack_in_metadata(bpf):
    """The demux tells the port program whose frame it is (struct xs_meta), only when it redirects."""
    bpf.set_claims({("udp", A4, 53): (S, PORT), ("udp", A4, 54): (S + 1, XSK)})
    bpf.set_ports({S})
    bpf.set_slots({(S + 1) * Q})
    assert bpf.demux(F4).meta == struct.pack("=II", 0x78736D31, S)
    assert bpf.demux(frame(eth() / IP(src=PEER4, dst=A4) / UDP(dport=54))).meta == b""   # an XSK: none
    bpf.set_ports(set())
    assert bpf.demux(F4).meta == b""          # orphaned: passed to the kernel as it came


def test_xsk_target_ignores_ports(bpf):
    bpf.set_claims({("udp", A4, 53): (S, XSK)})
    bpf.set_ports({S})
    expect(bpf, F4, "pass_orphaned", S)


@pytest.mark.parametrize("target", [0, 3, 0xFFFFFFFF])
def test_unknown_target_is_orphaned(bpf, target):
    bpf.set_claims({("udp", A4, 53): (S, target)})
    bpf.set_slots({S * Q})
    bpf.set_ports({S})
    expect(bpf, F4, "pass_orphaned", S)


@pytest.mark.parametrize("stack", [256, 1 << 26, 0xFFFFFFFF])
def test_stack_id_beyond_the_maps_owns_nothing(bpf, stack):
    """stack * 64 + queue would wrap into another stack's slots: such a claim is orphaned."""
    bpf.set_claims({("udp", A4, 53): (stack, XSK)})
    bpf.set_slots({0, 1, 64})
    expect(bpf, F4, "pass_orphaned", None)
    expect(bpf, F4, "pass_orphaned", None, rx_queue=1)


# -- counters -------------------------------------------------------------------------------------

def test_counters_exact(bpf):
    """A mixed sequence; the summed per-CPU counters must equal what was sent, field by field."""
    bpf.set_claims({("udp", A4, 53): (1, XSK), ("tcp", A6, 80): (2, PORT), ("udp", B4, 53): (3, XSK)})
    bpf.set_slots({1 * Q})
    bpf.set_ports({2})
    g0 = bpf.obj.counters()
    s0 = {s: bpf.obj.counters("stack_stats", s) for s in (1, 2, 3)}
    frames = [(F4, 3), (frame(eth() / IPv6(src=PEER6, dst=A6) / TCP(dport=80) / Raw(bytes(100))), 2),
              (frame(eth() / IP(src=PEER4, dst=B4) / UDP(dport=53)), 1),              # stack 3: orphaned
              (frame(eth() / ARP()), 4), (frame(eth() / IP(dst=A4) / ICMP()), 1),
              (frame(eth() / IP(dst=A4, frag=3) / Raw(bytes(30))), 2), (bytes(30), 1)]
    for f, times in frames:
        for _ in range(times):
            r = testrun.run(bpf.obj.progs["xdp_demux"], f)
            assert r.retval in (ref.XDP_PASS, ref.XDP_REDIRECT)
    g = {k: v - g0[k] for k, v in bpf.obj.counters().items()}
    s = {i: {k: v - s0[i][k] for k, v in bpf.obj.counters("stack_stats", i).items()} for i in (1, 2, 3)}
    n = [len(f) for f, _ in frames]
    assert g["redirected"] == 3 + 2 and g["redirected_bytes"] == 3 * n[0] + 2 * n[1]
    assert g["pass_orphaned"] == 1 and g["pass_not_ip"] == 4 + 1 and g["pass_not_l4"] == 1
    assert g["pass_fragment"] == 2 and g["pass_no_claim"] == 0 and g["pass_malformed"] == 0
    assert g["passed"] == 1 + 5 + 1 + 2
    assert g["passed_bytes"] == n[2] + 4 * n[3] + n[4] + 2 * n[5] + n[6]
    assert s[1] == {**dict.fromkeys(s[1], 0), "rx_packets": 3, "rx_bytes": 3 * n[0]}
    assert s[2] == {**dict.fromkeys(s[2], 0), "rx_packets": 2, "rx_bytes": 2 * n[1]}
    assert s[3] == {**dict.fromkeys(s[3], 0), "orphaned": 1}
    assert g["pass_bad_queue"] == g["pass_too_deep"] == 0
