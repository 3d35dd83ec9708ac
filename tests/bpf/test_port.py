"""xdp_port_rx (XDP) and tc_port_tx (TC), the programs on a stack's virtual port, through
BPF_PROG_TEST_RUN.

The port's ends are played by the queue device (port_of says which end it is); the NIC is the
host's lo in iface[0], which only needs to exist since the test-run does not send anything. The
guard's test-run gets each frame as the data of an skb arriving on the queue device, from the
Ethernet header on, as at clsact ingress.
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
    ICMPv6EchoRequest,
    IPv6,
    Raw,
    eth,
    frame,
)
from tests.fixtures.bpf_harness import INNER, LO_IFINDEX, OUTER, PORT, XSK, key, tc_runnable

S, OTHER = 5, 6
Q = 64


def expect(bpf, prog: str, f: bytes, reason: str, stack: int | None = S, rx_queue: int = 0,
           meta: bytes = b""):
    got = bpf.port(prog, f, rx_queue=rx_queue, meta=meta)
    if prog == "tc_port_tx":
        action = ref.TC_ACT_REDIRECT if reason == "tx" else ref.TC_ACT_SHOT
    else:
        action = ref.XDP_REDIRECT if reason == "delivered" else ref.XDP_DROP
    assert key(got) == (action, reason, stack)
    refv = (ref.port_tx(f, bpf.state, bpf.qdev.ifindex) if prog == "tc_port_tx"
            else ref.port_rx(f, bpf.state, bpf.qdev.ifindex, rx_queue, meta))
    assert key(refv) == key(got), "the reference classifier disagrees"


def tx(bpf, f, reason, stack=S):
    assert tc_runnable(f)
    expect(bpf, "tc_port_tx", f, reason, stack)


def rx(bpf, f, reason, stack=S, rx_queue=0, meta=b""):
    expect(bpf, "xdp_port_rx", f, reason, stack, rx_queue, meta)


@pytest.fixture
def guard(bpf):
    """The queue device is stack S's outer end; S owns UDP A4:53 and the TCP wildcard :80 of both
    families, OTHER owns UDP B4:53 and UDP A4:54; A4 and A6 are local addresses."""
    bpf.set_port_of({bpf.qdev.ifindex: (S, OUTER)})
    bpf.set_claims({("udp", A4, 53): (S, PORT), ("tcp", None, 80, 4): (S, PORT),
                    ("tcp", None, 80, 6): (S, PORT), ("udp", B4, 53): (OTHER, PORT),
                    ("udp", A4, 54): (OTHER, PORT)})
    bpf.set_local_addrs([A4, A6])
    bpf.set_nic(LO_IFINDEX)
    return bpf


# -- egress guard ---------------------------------------------------------------------------------

def test_own_exact_tuple_is_sent(guard):
    tx(guard, frame(eth() / IP(src=A4, dst=PEER4) / UDP(sport=53, dport=40000)), "tx")
    tx(guard, frame(eth("q") / IP(src=A4, dst=PEER4) / UDP(sport=53, dport=40000) / Raw(bytes(500))), "tx")
    tx(guard, frame(eth("ad", "q") / IP(src=A4, dst=PEER4) / UDP(sport=53, dport=40000)), "tx")
    tx(guard, frame(eth() / IP(src=A4, dst=PEER4) / UDP(sport=53, dport=40000), pad_to=60), "tx")


def test_the_guard_redirects_to_the_nic(guard):
    """TC_ACT_REDIRECT comes from bpf_redirect(nic, 0): the test-run reports the verdict only, so
    the NIC is seen through iface[0], which the guard must read: unset, nothing leaves."""
    f = frame(eth() / IP(src=A4, dst=PEER4) / UDP(sport=53, dport=40000))
    assert guard.port("tc_port_tx", f).action == ref.TC_ACT_REDIRECT
    guard.set_nic(0)
    assert guard.port("tc_port_tx", f).action == ref.TC_ACT_SHOT


@pytest.mark.parametrize("src,peer,ipc", [(A4, PEER4, IP), (A6, PEER6, IPv6)])
def test_own_wildcard_from_a_local_address_is_sent(guard, src, peer, ipc):
    tx(guard, frame(eth() / ipc(src=src, dst=peer) / TCP(sport=80, dport=40000, flags="SA")), "tx")


@pytest.mark.parametrize("src,peer,ipc", [("198.18.0.99", PEER4, IP), ("2001:db8::99", PEER6, IPv6),
                                          (B4, PEER4, IP)])
def test_own_wildcard_from_a_foreign_address_is_denied(guard, src, peer, ipc):
    tx(guard, frame(eth() / ipc(src=src, dst=peer) / TCP(sport=80, dport=40000)), "tx_denied")


def test_the_unspecified_address_is_nobodys(guard):
    """0.0.0.0 and :: are the wildcard claims' keys, never a local address: a wildcard owner may
    not send from them, whether its claim is alone on the port or shares it."""
    for shared in (False, True):
        if shared:
            guard.set_claims({("tcp", None, 80, 4): (S, PORT), ("tcp", None, 80, 6): (S, PORT),
                              ("tcp", A4, 80): (OTHER, PORT), ("tcp", A6, 80): (OTHER, PORT)})
        tx(guard, frame(eth() / IP(src="0.0.0.0", dst=PEER4) / TCP(sport=80, dport=40000)), "tx_denied")
        tx(guard, frame(eth() / IPv6(src="::", dst=PEER6) / TCP(sport=80, dport=40000)), "tx_denied")


def test_another_stacks_tuple_is_denied(guard):
    tx(guard, frame(eth() / IP(src=B4, dst=PEER4) / UDP(sport=53, dport=40000)), "tx_denied")
    tx(guard, frame(eth() / IP(src=A4, dst=PEER4) / UDP(sport=54, dport=40000)), "tx_denied")


def test_exact_claim_of_another_stack_beats_own_wildcard(guard):
    """OTHER owns TCP A4:80 exactly; replies to it would reach OTHER, so S may not send from it.
    From any other local address, S's wildcard claim is the one replies reach."""
    claims = {("udp", A4, 53): (S, PORT), ("tcp", None, 80, 4): (S, PORT), ("tcp", A4, 80): (OTHER, PORT)}
    guard.set_claims(claims)
    guard.set_local_addrs([A4, B4])
    tx(guard, frame(eth() / IP(src=A4, dst=PEER4) / TCP(sport=80, dport=40000)), "tx_denied")
    tx(guard, frame(eth() / IP(src=B4, dst=PEER4) / TCP(sport=80, dport=40000)), "tx")
    tx(guard, frame(eth() / IP(src="198.18.0.99", dst=PEER4) / TCP(sport=80, dport=40000)), "tx_denied")


def test_an_exact_claim_covers_its_own_address_only(guard):
    """S's only claim on TCP :8080 is A4's (and A6's): from another local address, nobody owns the
    source, and A4's port in the other family is not A6's."""
    guard.set_claims({("tcp", A4, 8080): (S, PORT), ("tcp", A6, 8081): (S, PORT)})
    guard.set_local_addrs([A4, B4, A6, B6])
    tx(guard, frame(eth() / IP(src=A4, dst=PEER4) / TCP(sport=8080, dport=40000)), "tx")
    tx(guard, frame(eth() / IP(src=B4, dst=PEER4) / TCP(sport=8080, dport=40000)), "tx_denied")
    tx(guard, frame(eth() / IPv6(src=A6, dst=PEER6) / TCP(sport=8081, dport=40000)), "tx")
    tx(guard, frame(eth() / IPv6(src=B6, dst=PEER6) / TCP(sport=8081, dport=40000)), "tx_denied")
    tx(guard, frame(eth() / IPv6(src=A6, dst=PEER6) / TCP(sport=8080, dport=40000)), "tx_denied")


def test_unclaimed_tuple_is_denied(guard):
    tx(guard, frame(eth() / IP(src=A4, dst=PEER4) / UDP(sport=9999, dport=53)), "tx_denied")
    tx(guard, frame(eth() / IP(src=A4, dst=PEER4) / TCP(sport=53, dport=53)), "tx_denied")    # UDP claim


@pytest.mark.parametrize("pkt", [
    eth() / ARP(psrc=A4, pdst=PEER4),
    eth() / IP(src=A4, dst=PEER4) / ICMP(type=0),
    eth() / IPv6(src=A6, dst=PEER6) / ICMPv6EchoRequest(),
    eth() / IP(src=A4, dst=PEER4, frag=5, proto=17) / Raw(bytes(20)),     # no source port to check
    eth("q", "q", "q") / IP(src=A4, dst=PEER4) / UDP(sport=53),
], ids=["arp", "icmp", "icmpv6", "fragment", "3tags"])
def test_not_tcp_udp_is_denied(guard, pkt):
    tx(guard, frame(pkt), "tx_denied")


def test_malformed_is_denied(guard):
    f = frame(eth() / IP(src=A4, dst=PEER4) / UDP(sport=53, dport=40000))
    tx(guard, f[:-1], "tx_denied")


def test_unset_nic_denies(guard):
    guard.set_nic(0)
    tx(guard, frame(eth() / IP(src=A4, dst=PEER4) / UDP(sport=53, dport=40000)), "tx_denied")


def test_tx_on_a_device_that_is_not_an_outer_end(guard):
    f = frame(eth() / IP(src=A4, dst=PEER4) / UDP(sport=53, dport=40000))
    guard.set_port_of({guard.qdev.ifindex: (S, INNER)})
    tx(guard, f, "unconfigured", None)
    guard.set_port_of({})
    tx(guard, f, "unconfigured", None)


def test_tx_is_judged_by_the_device_it_arrives_on(guard):
    """The skb's ingress device decides which stack's claims apply: the same frame arriving on
    another device (lo, in no port) is not S's."""
    f = frame(eth() / IP(src=A4, dst=PEER4) / UDP(sport=53, dport=40000))
    got = guard.port("tc_port_tx", f, ifindex=LO_IFINDEX)
    assert key(got) == (ref.TC_ACT_SHOT, "unconfigured", None)
    guard.set_port_of({guard.qdev.ifindex: (OTHER, OUTER)})         # now OTHER's port: B4:53 is its
    tx(guard, f, "tx_denied", OTHER)
    tx(guard, frame(eth() / IP(src=B4, dst=PEER4) / UDP(sport=53, dport=40000)), "tx", OTHER)


def test_tx_counters(guard):
    f = frame(eth() / IP(src=A4, dst=PEER4) / UDP(sport=53, dport=40000) / Raw(bytes(100)))
    f6 = frame(eth() / IPv6(src=A6, dst=PEER6) / TCP(sport=80, dport=40000) / Raw(bytes(1000)))
    bad = frame(eth() / IP(src=B4, dst=PEER4) / UDP(sport=53, dport=40000))
    before = {s: guard.obj.counters("stack_stats", s) for s in (S, OTHER)}
    for _ in range(3):
        guard.port("tc_port_tx", f)
    guard.port("tc_port_tx", f6)
    guard.port("tc_port_tx", bad)
    guard.port("tc_port_tx", frame(eth() / ARP(psrc=A4, pdst=PEER4)))
    d = {s: {k: v - before[s][k] for k, v in guard.obj.counters("stack_stats", s).items()}
         for s in (S, OTHER)}
    zero = dict.fromkeys(d[S], 0)
    assert d[S] == {**zero, "tx_packets": 4, "tx_bytes": 3 * len(f) + len(f6), "tx_denied": 2}
    assert d[OTHER] == zero, "only the sending stack's counters move"


def test_a_gro_packet_counts_each_of_its_frames(guard):
    """With GRO on the outer end (not xdpstack's setting, but veth allows it), one skb stands for
    gso_segs frames of one flow: the guard decides once and counts every frame."""
    f = frame(eth() / IP(src=A4, dst=PEER4) / TCP(sport=80, dport=40000) / Raw(bytes(2000)))
    bad = frame(eth() / IP(src=B4, dst=PEER4) / TCP(sport=80, dport=40000) / Raw(bytes(2000)))
    assert key(guard.port("tc_port_tx", f, gso_segs=3)) == (ref.TC_ACT_REDIRECT, "tx", S)
    assert key(guard.port("tc_port_tx", bad, gso_segs=2)) == (ref.TC_ACT_SHOT, "tx_denied", S)


# -- inner end: delivery to the stack's sockets ---------------------------------------------------

@pytest.fixture
def inner(bpf):
    """The queue device is stack S's inner end; S owns UDP A4:53 and TCP A6:80, OTHER UDP B4:53."""
    bpf.set_port_of({bpf.qdev.ifindex: (S, INNER)})
    bpf.set_claims({("udp", A4, 53): (S, PORT), ("tcp", A6, 80): (S, PORT), ("udp", B4, 53): (OTHER, PORT)})
    bpf.set_slots({S * Q, S * Q + 3, OTHER * Q})
    return bpf


def test_own_traffic_reaches_the_socket_of_its_queue(inner):
    rx(inner, frame(eth() / IP(src=PEER4, dst=A4) / UDP(dport=53)), "delivered")
    rx(inner, frame(eth() / IPv6(src=PEER6, dst=A6) / TCP(dport=80)), "delivered", rx_queue=3)


def test_no_socket_on_the_queue_is_dropped_as_orphaned(inner):
    rx(inner, frame(eth() / IP(src=PEER4, dst=A4) / UDP(dport=53)), "orphaned", rx_queue=1)
    rx(inner, frame(eth() / IP(src=PEER4, dst=A4) / UDP(dport=53)), "orphaned", rx_queue=70)


def test_queue_beyond_max_queues_never_reaches_another_stacks_slot(inner):
    """S * 64 + 64 is OTHER's queue 0, which has a socket: the queue bound must keep S out."""
    assert OTHER == S + 1
    rx(inner, frame(eth() / IP(src=PEER4, dst=A4) / UDP(dport=53)), "orphaned", rx_queue=64)


@pytest.mark.parametrize("pkt", [
    eth() / IP(src=PEER4, dst=B4) / UDP(dport=53),              # another stack's tuple
    eth() / IP(src=PEER4, dst=A4) / UDP(dport=99),              # nobody's
    eth() / ARP(pdst=A4),                                       # the kernel's
    eth() / IPv6(src="fe80::1", dst="ff02::2") / ICMPv6EchoRequest(),
    eth() / IP(src=PEER4, dst=A4, frag=2, proto=17) / Raw(bytes(20)),
], ids=["other-stack", "unclaimed", "arp", "icmpv6", "fragment"])
def test_foreign_frames_are_dropped(inner, pkt):
    rx(inner, frame(pkt), "rx_dropped")


MINE = frame(eth() / IP(src=PEER4, dst=A4) / UDP(dport=53))
OTHERS = frame(eth() / IP(src=PEER4, dst=B4) / UDP(dport=53))


def test_a_frame_the_demux_marked_for_this_stack_is_delivered_without_a_lookup(inner):
    """The demux already looked the claim up: the port trusts its mark (only an XDP program can
    write metadata), so even a claim released while the frame was in flight reaches its stack."""
    inner.set_claims({})
    rx(inner, MINE, "delivered", meta=ref.port_meta(S))
    rx(inner, MINE, "orphaned", rx_queue=1, meta=ref.port_meta(S))   # still only to its own socket


@pytest.mark.parametrize("meta", [
    ref.port_meta(OTHER),                                        # another stack's mark
    struct.pack("=II", 0x78736D30, S),                           # not the demux's magic
    struct.pack("=I", 0x78736D31),                               # too short to be a mark
    ref.port_meta(S)[4:] + ref.port_meta(S)[:4],                 # the fields swapped
], ids=["other-stack", "magic", "short", "swapped"])
def test_any_other_metadata_gets_the_full_check(inner, meta):
    rx(inner, MINE, "delivered", meta=meta)
    rx(inner, OTHERS, "rx_dropped", meta=meta)


def test_rx_on_a_device_that_is_not_an_inner_end(inner):
    inner.set_port_of({inner.qdev.ifindex: (S, OUTER)})
    rx(inner, frame(eth() / IP(src=PEER4, dst=A4) / UDP(dport=53)), "unconfigured", None)


def test_rx_leaves_the_demux_counters_alone(inner):
    before = inner.obj.counters("stack_stats", S)
    rx(inner, frame(eth() / IP(src=PEER4, dst=A4) / UDP(dport=53)), "delivered")
    after = inner.obj.counters("stack_stats", S)
    assert after == before          # rx_packets belongs to the demux, which already counted the frame


def test_xsk_claims_are_delivered_too(inner):
    """The inner end checks the owner, not the target the demux used."""
    inner.set_claims({("udp", A4, 53): (S, XSK)})
    rx(inner, frame(eth() / IP(src=PEER4, dst=A4) / UDP(dport=53)), "delivered")
