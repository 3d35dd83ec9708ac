"""xdp_port_rx and xdp_port_tx, the programs on a stack's virtual port, through BPF_PROG_TEST_RUN.

The port's ends are played by the queue device (port_of says which end it is); the NIC is the
host's lo in iface[0], which only needs to exist since the test-run does not send anything.
"""
from __future__ import annotations

import pytest

from tests.bpf import reference as ref
from tests.bpf.frames import (
    A4,
    A6,
    ARP,
    B4,
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
from tests.bpf.harness import INNER, LO_IFINDEX, OUTER, PORT, XSK, key

S, OTHER = 5, 6
Q = 64


def expect(bpf, prog: str, f: bytes, reason: str, stack: int | None = S, rx_queue: int = 0):
    got = bpf.port(prog, f, rx_queue=rx_queue)
    action = {"tx": ref.XDP_REDIRECT, "delivered": ref.XDP_REDIRECT}.get(reason, ref.XDP_DROP)
    assert key(got) == (action, reason, stack)
    refv = (ref.port_tx(f, bpf.state, bpf.qdev.ifindex) if prog == "xdp_port_tx"
            else ref.port_rx(f, bpf.state, bpf.qdev.ifindex, rx_queue))
    assert key(refv) == key(got), "the reference classifier disagrees"


def tx(bpf, f, reason, stack=S):
    expect(bpf, "xdp_port_tx", f, reason, stack)


def rx(bpf, f, reason, stack=S, rx_queue=0):
    expect(bpf, "xdp_port_rx", f, reason, stack, rx_queue)


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


@pytest.mark.parametrize("src,peer,ipc", [(A4, PEER4, IP), (A6, PEER6, IPv6)])
def test_own_wildcard_from_a_local_address_is_sent(guard, src, peer, ipc):
    tx(guard, frame(eth() / ipc(src=src, dst=peer) / TCP(sport=80, dport=40000, flags="SA")), "tx")


@pytest.mark.parametrize("src,peer,ipc", [("198.18.0.99", PEER4, IP), ("2001:db8::99", PEER6, IPv6),
                                          (B4, PEER4, IP)])
def test_own_wildcard_from_a_foreign_address_is_denied(guard, src, peer, ipc):
    tx(guard, frame(eth() / ipc(src=src, dst=peer) / TCP(sport=80, dport=40000)), "tx_denied")


def test_another_stacks_tuple_is_denied(guard):
    tx(guard, frame(eth() / IP(src=B4, dst=PEER4) / UDP(sport=53, dport=40000)), "tx_denied")
    tx(guard, frame(eth() / IP(src=A4, dst=PEER4) / UDP(sport=54, dport=40000)), "tx_denied")


def test_exact_claim_of_another_stack_beats_own_wildcard(guard):
    """OTHER owns TCP A4:80 exactly; replies to it would reach OTHER, so S may not send from it."""
    claims = {("udp", A4, 53): (S, PORT), ("tcp", None, 80, 4): (S, PORT), ("tcp", A4, 80): (OTHER, PORT)}
    guard.set_claims(claims)
    tx(guard, frame(eth() / IP(src=A4, dst=PEER4) / TCP(sport=80, dport=40000)), "tx_denied")


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


def test_tx_counters(guard):
    f = frame(eth() / IP(src=A4, dst=PEER4) / UDP(sport=53, dport=40000) / Raw(bytes(100)))
    bad = frame(eth() / IP(src=B4, dst=PEER4) / UDP(sport=53, dport=40000))
    before = guard.obj.counters("stack_stats", S)
    for _ in range(3):
        guard.port("xdp_port_tx", f)
    guard.port("xdp_port_tx", bad)
    after = guard.obj.counters("stack_stats", S)
    d = {k: after[k] - before[k] for k in after}
    assert d == {**dict.fromkeys(d, 0), "tx_packets": 3, "tx_bytes": 3 * len(f), "tx_denied": 1}


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
