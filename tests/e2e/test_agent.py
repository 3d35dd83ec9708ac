"""The control-channel agent (launched and in-process stacks alike) against the kernel's real FIB
and neighbour tables."""
from __future__ import annotations

import contextlib
import socket
import subprocess
import time

import pytest
from pyroute2 import netns as pnetns

from userstack import ctl
from userstack.agent import StackAgent
from xdpstack import procs

pytestmark = pytest.mark.root


@contextlib.contextmanager
def agent_in(tb):
    stack_end, agent_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pnetns.pushns(tb.dut.ns)
    try:
        agent = StackAgent(agent_end, tb.dut.ifindex, claim=lambda m: ("198.18.0.1", 40000))
    finally:
        pnetns.popns()
    stack_end.settimeout(6)
    try:
        yield stack_end
    finally:
        agent.close()
        stack_end.close()
        agent_end.close()


def ask(sock, dst: str, seq: int = 1):
    sock.send(ctl.encode(ctl.Resolve(dst=dst, seq=seq)))
    return ctl.decode(sock.recv(ctl.MSG_SIZE))


def forget_neighbours(tb):
    d = f"dev {tb.dut.ifname}"
    tb.dut.run(f"ip neigh flush {d}; ip -6 neigh flush {d}; "
               f"ip neigh del {tb.peer.addr4} {d}; ip -6 neigh del {tb.peer.addr6} {d}", check=False)


def test_known_neighbour_answers_at_once(testbed):
    with agent_in(testbed) as s:
        m = ask(s, testbed.peer.addr4)
        assert (m.status, m.mac, m.nexthop) == (ctl.NEIGH_OK, testbed.peer.mac, testbed.peer.addr4)


@pytest.mark.parametrize("family", [4, 6])
def test_missing_neighbour_is_resolved_by_the_kernel(testbed, family):
    forget_neighbours(testbed)
    dst = testbed.peer.addr4 if family == 4 else testbed.peer.addr6
    with agent_in(testbed) as s:
        m = ask(s, dst)
        assert (m.status, m.mac) == (ctl.NEIGH_OK, testbed.peer.mac)
    state = testbed.dut.run(f"ip -{family} neigh show {dst} dev {testbed.dut.ifname}").stdout
    assert testbed.peer.mac in state            # the kernel learnt it too (ARP/ND did the work)


def test_unanswered_neighbour_fails_within_the_timeout(testbed):
    with agent_in(testbed) as s:
        m = ask(s, "198.18.0.99")               # on-link, nobody there
        assert m.status == ctl.NEIGH_FAILED and m.mac is None


def test_unrouted_destination_fails_at_once(testbed):
    with agent_in(testbed) as s:
        s.settimeout(1)
        assert ask(s, "198.19.7.7").status == ctl.NEIGH_FAILED


def test_gateway_route_and_updates_are_followed(testbed):
    tb = testbed
    tb.dut.run(f"ip route add 198.19.0.0/16 via {tb.peer.addr4}")
    with agent_in(tb) as s:
        m = ask(s, "198.19.0.9")
        assert (m.status, m.mac, m.nexthop) == (ctl.NEIGH_OK, tb.peer.mac, tb.peer.addr4)
        # The gateway's MAC changes in the kernel: the stack hears about it unasked.
        tb.dut.run(f"ip neigh replace {tb.peer.addr4} lladdr 02:00:00:00:00:42 dev {tb.dut.ifname} "
                   "nud permanent")
        m = ctl.decode(s.recv(ctl.MSG_SIZE))
        assert (m.dst, m.mac) == ("198.19.0.9", "02:00:00:00:00:42")
        # The route goes away: the destination is unreachable now.
        tb.dut.run("ip route del 198.19.0.0/16")
        m = ctl.decode(s.recv(ctl.MSG_SIZE))
        assert (m.dst, m.status) == ("198.19.0.9", ctl.NEIGH_FAILED)


def test_ephemeral_claim_goes_to_the_callback(testbed):
    with agent_in(testbed) as s:
        s.send(ctl.encode(ctl.ClaimEphemeral(proto=6, family=4, remote="198.18.0.2", remote_port=80, seq=7)))
        m = ctl.decode(s.recv(ctl.MSG_SIZE))
        assert (m.seq, m.status, m.local, m.port) == (7, 0, "198.18.0.1", 40000)


def test_a_failing_claim_is_answered_and_the_agent_lives_on(testbed):
    def claim(m):
        raise ValueError("not an OSError")             # e.g. a library error of another kind
    stack_end, agent_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pnetns.pushns(testbed.dut.ns)
    try:
        agent = StackAgent(agent_end, testbed.dut.ifindex, claim=claim)
    finally:
        pnetns.popns()
    stack_end.settimeout(3)
    try:
        stack_end.send(ctl.encode(ctl.ClaimEphemeral(proto=17, family=4, seq=3)))
        m = ctl.decode(stack_end.recv(ctl.MSG_SIZE))
        assert (m.seq, m.port) == (3, 0) and m.status < 0
        assert ask(stack_end, testbed.peer.addr4).status == ctl.NEIGH_OK     # still answering
    finally:
        agent.close()
        stack_end.close()
        agent_end.close()


# ---- the same agent for an in-process stack (Stack.create) -----------------------------------------
RECV_ONE = ("import socket, sys; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
            "s.bind(('0.0.0.0', 7300)); s.settimeout(8); print('ready', flush=True); "
            "print(s.recvfrom(100)[0].decode(), flush=True)")


def _in_process_stack(tb, **kw):
    import userstack
    from tests.fixtures.userstack_xdp import in_netns
    with in_netns(tb.dut.ns):
        return userstack.Stack.create(tb.dut.ifname, **kw)


def test_an_in_process_stack_gets_the_launchers_addresses_link_local_included(testbed):
    from tests.fixtures.userstack_xdp import in_netns
    from xdpstack import netlink
    tb = testbed
    deadline = time.monotonic() + 5
    while True:                                  # the kernel adds fe80:: once the link is up
        with in_netns(tb.dut.ns):
            launcher = [a.address for a in netlink.addresses(tb.dut.ifindex)]
        if any(a.startswith("fe80:") for a in launcher) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert any(a.startswith("fe80:") for a in launcher), launcher
    stack = _in_process_stack(tb, udp=[7000])
    try:
        assert stack.addrs == launcher           # what `xdpstack run` hands its stack (launcher.py)
    finally:
        stack.close()


def test_an_in_process_stack_has_missing_neighbours_resolved_like_a_launched_one(testbed):
    """The in-process answer used to be a lookup only (a missing neighbour: FAILED, the datagram
    dropped); now the kernel is asked to resolve it, as for launched stacks."""
    tb = testbed
    forget_neighbours(tb)
    recv = tb.track(tb.peer.popen(["python3", "-c", RECV_ONE], stdout=subprocess.PIPE, text=True))
    assert procs.readline(recv.stdout, 10).strip() == "ready"
    stack = _in_process_stack(tb, udp=[7000])
    try:
        s = stack.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", 7000))
        s.sendto(b"resolved", (tb.peer.addr4, 7300))
        assert procs.readline(recv.stdout, 10).strip() == "resolved"
        assert stack.stats()["neigh_drop"] == 0
    finally:
        stack.close()
