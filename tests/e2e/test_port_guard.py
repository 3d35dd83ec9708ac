"""The egress guard on real ports: a stack cannot send from a 3-tuple it does not own.

Two stacks run through the real launcher (`xdpstack run`, as nobody) on an attached testbed. Frames
are crafted and written with an AF_PACKET socket into a stack's inner port device, the way its
AF_XDP transmit writes them; they arrive at the outer end's clsact ingress, where tc_port_tx
redirects them to the NIC or drops them. A packet socket on the peer shows what got out, the pinned
stack_stats what the guard counted. This also covers what BPF_PROG_TEST_RUN cannot: the kernel's
own path to the guard (the outer VLAN tag moved into skb metadata before TC ingress) and an IPv4
frame shorter than its header, which test-run refuses.
"""
from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import time

import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1AD, Dot1Q, Ether

from tests.e2e.test_launcher import app_pid, assert_nothing_left, echoes, launch, wait_running
from tests.fixtures.testbed import wait_until
from tests.fixtures.xdpstack_helpers import in_ns
from xdpstack import maps, netlink, ports, registry
from xdpstack.procs import readline

pytest_plugins = ["tests.fixtures.xdpstack_fixtures"]
pytestmark = pytest.mark.root

ETH_P_ALL = 0x0003
A_PORT, B_PORT = 7300, 7301


@pytest.fixture
def two_stacks(attached_bed):
    """Stacks A (UDP :7300, both wildcards) and B (UDP :7301), echo servers as nobody."""
    tb, _ = attached_bed
    procs = {}
    for name, port in (("a", A_PORT), ("b", B_PORT)):
        procs[name] = launch(tb, "--udp", str(port), "--name", f"guard-{name}")
        wait_running(tb, procs[name], n=len(procs))
    with in_ns(tb):
        recs = {r.name: r for r in registry.list_stacks(tb.dut.ifname)}
    stacks = {n: recs[f"guard-{n}"] for n in procs}
    yield tb, stacks
    pids = [app_pid(p) for p in procs.values()]
    for p in procs.values():
        p.send_signal(signal.SIGTERM)
        p.wait(5)
    assert_nothing_left(tb, *pids)


def inner_name(tb, stack) -> str:
    return ports.port_names(tb.dut.ifindex, stack.id)[1]


def outer_name(tb, stack) -> str:
    return ports.port_names(tb.dut.ifindex, stack.id)[0]


def counters(tb, stack) -> dict[str, int]:
    with in_ns(tb), maps.open_map(tb.dut.ifname, "stack_stats") as m:
        return m.sum(stack.id)


class Wire:
    """Write frames into devices of the dut; read what reaches the peer's veth."""

    def __init__(self, tb):
        self.tb = tb
        with netlink.netns(tb.peer.ns):
            self.rx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.rx.bind((tb.peer.ifname, 0))
        self.rx.setblocking(False)
        with netlink.netns(tb.dut.ns):
            self.tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)

    def send(self, ifname: str, frame: bytes):
        self.tx.sendto(frame, (ifname, 0))

    def received(self, markers: list[bytes], wait: float = 0.5) -> set[bytes]:
        """Which markers showed up at the peer within `wait` seconds."""
        got: set[bytes] = set()
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and got != set(markers):
            try:
                data = self.rx.recv(4096)
            except BlockingIOError:
                time.sleep(0.01)
                continue
            got |= {m for m in markers if m in data}
        return got

    def close(self):
        self.rx.close()
        self.tx.close()


@pytest.fixture
def wire(attached_bed):
    w = Wire(attached_bed[0])
    yield w
    w.close()


def eth(tb):
    return Ether(src=tb.dut.mac, dst=tb.peer.mac)


def udp(tb, sport: int, marker: bytes, src4: str | None = None, tags: tuple[str, ...] = ()) -> bytes:
    """A UDP frame from the dut to the peer, as a stack would write it (with VLAN tags if asked)."""
    p = eth(tb)
    for i, t in enumerate(tags):
        p = p / (Dot1AD if t == "ad" else Dot1Q)(vlan=100 + i)
    return bytes(p / IP(src=src4 or tb.dut.addr4, dst=tb.peer.addr4) / UDP(sport=sport, dport=40000) / marker)


def test_the_guard_is_tc_on_the_outer_end(two_stacks):
    """The outer end carries the guard as a direct-action clsact filter and no XDP program; the
    inner end has xdp_port_rx."""
    tb, stacks = two_stacks
    for s in stacks.values():
        out = tb.dut.run(["tc", "filter", "show", "dev", outer_name(tb, s), "ingress"]).stdout
        assert "tc_port_tx" in out and "direct-action" in out, out
        for name, xdp in ((outer_name(tb, s), None), (inner_name(tb, s), "xdp_port_rx")):
            link = json.loads(tb.dut.run(["ip", "-j", "-d", "link", "show", "dev", name]).stdout)[0]
            prog = link.get("xdp", {}).get("prog", {}).get("name")
            assert prog == xdp, (name, link.get("xdp"))


def test_a_stack_cannot_send_from_a_tuple_it_does_not_own(two_stacks, wire):
    tb, stacks = two_stacks
    a, b = stacks["a"], stacks["b"]
    assert echoes(tb, A_PORT) == 5 and echoes(tb, B_PORT) == 5      # their own frames get out
    before = {n: counters(tb, s) for n, s in stacks.items()}

    good = {  # marker -> (the stack that sends it, the frame)
        b"own-a": (a, udp(tb, A_PORT, b"own-a")),
        b"own-b": (b, udp(tb, B_PORT, b"own-b")),
        b"own-a-1tag": (a, udp(tb, A_PORT, b"own-a-1tag", tags=("q",))),
        b"own-a-2tags": (a, udp(tb, A_PORT, b"own-a-2tags", tags=("ad", "q"))),
        b"own-a-v6": (a, bytes(eth(tb) / IPv6(src=tb.dut.addr6, dst=tb.peer.addr6)
                               / UDP(sport=A_PORT, dport=40000) / b"own-a-v6")),
    }
    v6 = IPv6(src="2001:db8::99", dst=tb.peer.addr6) / UDP(sport=A_PORT, dport=40000)
    bad = {
        b"b-tuple-from-a": (a, udp(tb, B_PORT, b"b-tuple-from-a")),         # B's tuple, sent by A
        b"a-tuple-from-b": (b, udp(tb, A_PORT, b"a-tuple-from-b")),
        b"unclaimed": (a, udp(tb, 7399, b"unclaimed")),
        b"not-local": (a, udp(tb, A_PORT, b"not-local", src4="198.18.0.99")),   # own wildcard, not local
        b"not-local-v6": (a, bytes(eth(tb) / v6 / b"not-local-v6")),
        b"3tags": (a, udp(tb, A_PORT, b"3tags", tags=("ad", "q", "q"))),        # a tag beyond the bound
        b"icmp": (a, bytes(eth(tb) / IP(src=tb.dut.addr4, dst=tb.peer.addr4) / ICMP() / b"icmp")),
        b"short-ip": (a, bytes(Ether(src=tb.dut.mac, dst=tb.peer.mac, type=0x0800)) + b"short-ip"),
    }
    for s, f in [*good.values(), *bad.values()]:
        wire.send(inner_name(tb, s), f)
    got = wire.received(list(good) + list(bad))
    assert got == set(good), f"missing {set(good) - got}, leaked {got - set(good)}"

    # Counted exactly: the frames each stack was denied, the frames and bytes it sent (a VLAN tag
    # the kernel took out of the frame before the guard is counted as sent).
    def delta(n: str) -> dict[str, int]:
        now = counters(tb, stacks[n])
        return {k: now[k] - before[n][k] for k in ("tx_packets", "tx_bytes", "tx_denied")}

    for n, s in stacks.items():
        want = {"tx_packets": sum(1 for st, _ in good.values() if st is s),
                "tx_bytes": sum(len(f) for st, f in good.values() if st is s),
                "tx_denied": sum(1 for st, _ in bad.values() if st is s)}
        assert wait_until(lambda n=n, want=want: delta(n) == want, 2), (n, delta(n), want)
    # and the stacks still serve
    assert echoes(tb, A_PORT) == 5 and echoes(tb, B_PORT) == 5


def test_the_kernel_never_sees_a_denied_frame(two_stacks, wire):
    """A denied frame is dropped at the outer end, not handed to the dut's kernel stack either (it
    would deliver a frame for its own address that arrived on the outer end): its UDP socket on
    the tuple the frame is addressed to stays empty."""
    tb, stacks = two_stacks
    outer = json.loads(tb.dut.run(["ip", "-j", "link", "show", "dev", outer_name(tb, stacks["a"])]).stdout)[0]
    code = ("import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
            "s.bind(('0.0.0.0', 7398)); s.settimeout(1.5); print('ok', flush=True)\n"
            "try: print(s.recv(100))\nexcept OSError: print('none')")
    sink = tb.track(tb.dut.popen(["python3", "-c", code], stdout=subprocess.PIPE, text=True))
    assert readline(sink.stdout, 10).strip() == "ok"
    f = bytes(Ether(src=tb.peer.mac, dst=outer["address"]) / IP(src=tb.peer.addr4, dst=tb.dut.addr4)
              / UDP(sport=7300, dport=7398) / b"to-the-dut-kernel")
    before = counters(tb, stacks["a"])["tx_denied"]
    wire.send(inner_name(tb, stacks["a"]), f)
    assert readline(sink.stdout, 10).strip() == "none"
    sink.wait(5)
    assert counters(tb, stacks["a"])["tx_denied"] == before + 1


def napi_frames(tb, ifname: str) -> int:
    """Frames veth took in through ifname's NAPI (ptr_ring) rather than the backlog: its rx
    queues' xdp_packets, counted for every frame received that way, XDP program or not."""
    stats = (line.strip().split(":") for line in tb.dut.run(["ethtool", "-S", ifname]).stdout.splitlines())
    return sum(int(v[0]) for k, *v in stats if v and re.fullmatch(r"rx_queue_\d+_xdp_packets", k))


@pytest.mark.parametrize("napi", [False, True], ids=["backlog", "napi-gro"])
def test_the_guard_sees_frames_on_either_veth_receive_path(two_stacks, wire, napi):
    """veth hands a frame from the inner end to the outer end through the outer end's NAPI only
    when that has XDP or GRO (and the frame is GRO-eligible: the inner end's TSO off); otherwise
    through the per-CPU backlog. The guard (TC ingress) must see the frame either way."""
    tb, stacks = two_stacks
    a = stacks["a"]
    if napi:                        # this case's subject, not a testbed setting: the NAPI path
        tb.dut.run(["ethtool", "-K", outer_name(tb, a), "gro", "on"])
        tb.dut.run(["ethtool", "-K", inner_name(tb, a), "tso", "off"])
    n0, before = napi_frames(tb, outer_name(tb, a)), counters(tb, a)
    wire.send(inner_name(tb, a), udp(tb, A_PORT, b"path-own"))
    wire.send(inner_name(tb, a), udp(tb, B_PORT, b"path-foreign"))
    assert wire.received([b"path-own", b"path-foreign"]) == {b"path-own"}
    assert wait_until(lambda: counters(tb, a)["tx_denied"] == before["tx_denied"] + 1, 2)
    assert counters(tb, a)["tx_packets"] == before["tx_packets"] + 1
    assert napi_frames(tb, outer_name(tb, a)) - n0 == (2 if napi else 0)
    assert echoes(tb, A_PORT) == 5
