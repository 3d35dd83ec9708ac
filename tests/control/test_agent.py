"""The one control-channel agent (userstack.agent), over real socket pairs: what a launched stack
and an in-process one (Stack.create) are both answered. No root, no testbed: the kernel tables
of this namespace (lo) are enough; tests/e2e/test_agent.py has the neighbour resolution."""
from __future__ import annotations

import contextlib
import errno
import socket
import subprocess
import sys

import pytest

from userstack import ctl
from userstack.agent import InProcessAgent, KernelPortClaims, StackAgent
from userstack.stack import _link_info
from xdpstack import netlink

UNROUTED = "198.51.100.77"          # TEST-NET-2: never routed through lo


@contextlib.contextmanager
def agent_on(ifindex=1, **kw):
    stack_end, agent_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    stack_end.settimeout(5)
    agent = StackAgent(agent_end, ifindex, **kw)
    try:
        yield stack_end
    finally:
        agent.close()
        stack_end.close()
        agent_end.close()


def ask(sock, m):
    sock.send(ctl.encode(m))
    return ctl.decode(sock.recv(ctl.MSG_SIZE))


def claim_msg(proto=17, family=4, remote="127.0.0.1", seq=5):
    return ctl.ClaimEphemeral(proto=proto, family=family, remote=remote, remote_port=9, seq=seq)


def test_a_destination_routed_elsewhere_fails_at_once_with_the_seq_of_the_request():
    with agent_on() as s:
        s.settimeout(1)
        m = ask(s, ctl.Resolve(dst=UNROUTED, seq=41))
    assert (m.dst, m.status, m.mac, m.seq) == (UNROUTED, ctl.NEIGH_FAILED, None, 41)


def test_asking_again_is_answered_again():
    with agent_on() as s:
        s.settimeout(1)
        assert ask(s, ctl.Resolve(dst=UNROUTED, seq=1)).seq == 1
        assert ask(s, ctl.Resolve(dst=UNROUTED, seq=2)).seq == 2      # same answer, sent again


def test_without_a_claim_callback_claims_are_refused():
    """Stack.create(claims=False) and a launcher without claims alike: EOPNOTSUPP."""
    with agent_on() as s:
        m = ask(s, claim_msg(seq=9))
    assert (m.seq, m.port, m.status) == (9, 0, -errno.EOPNOTSUPP)


@pytest.mark.parametrize("exc, code", [(OSError(errno.EADDRINUSE, "taken"), errno.EADDRINUSE),
                                       (ValueError("not an OSError"), errno.EADDRNOTAVAIL)])
def test_a_failing_claim_callback_reaches_the_stack_as_an_errno(exc, code):
    def claim(m):
        raise exc
    with agent_on(claim=claim) as s:
        m = ask(s, claim_msg(seq=3))
        assert (m.seq, m.port, m.status) == (3, 0, -code)
        assert ask(s, ctl.Resolve(dst=UNROUTED, seq=4)).seq == 4       # still answering


def test_claims_and_releases_go_to_the_injected_callbacks():
    """What the launcher injects (registry claims): the agent only carries the messages."""
    released = []
    with agent_on(claim=lambda m: ("198.18.0.1", 40000 + m.seq), release=released.append) as s:
        m = ask(s, claim_msg(proto=6, remote="198.18.0.2", seq=7))
        assert (m.seq, m.status, m.local, m.port, m.proto) == (7, 0, "198.18.0.1", 40007, 6)
        s.send(ctl.encode(ctl.Release(proto=6, family=4, port=40007, local="198.18.0.1")))
        ask(s, ctl.Resolve(dst=UNROUTED, seq=8))                       # in order: the release is done
    assert released == [ctl.Release(proto=6, family=4, port=40007, local="198.18.0.1")]


def _bindable(proto, addr, port) -> bool:
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM if proto == 6 else socket.SOCK_DGRAM) as k:
        try:
            k.bind((addr, port))
        except OSError as e:
            assert e.errno == errno.EADDRINUSE
            return False
        return True


@pytest.mark.parametrize("proto", [6, 17])
def test_in_process_claims_hold_a_kernel_port_until_released(proto):
    """Stack.create(claims=True): the kernel picks the port on the source toward the remote and
    nobody else gets it until RELEASE."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    a.settimeout(5)
    agent = InProcessAgent(b, 1, claims=True)
    try:
        m = ask(a, claim_msg(proto=proto, remote="127.0.0.1", seq=11))
        assert (m.seq, m.status, m.local, m.proto) == (11, 0, "127.0.0.1", proto) and m.port > 0
        assert not _bindable(proto, "127.0.0.1", m.port)
        a.send(ctl.encode(ctl.Release(proto=proto, family=4, port=m.port, local=m.local)))
        ask(a, ctl.Resolve(dst=UNROUTED, seq=12))
        assert _bindable(proto, "127.0.0.1", m.port)
        w = ask(a, claim_msg(proto=proto, remote=None, seq=13))      # no remote: the wildcard
        assert (w.status, w.local) == (0, None) and w.port > 0
        assert not _bindable(proto, "0.0.0.0", w.port)
    finally:
        agent.close()
        a.close()
    assert _bindable(proto, "0.0.0.0", w.port)                       # close() gave it back
    assert b.fileno() == -1                                           # the agent owned its end


def test_kernel_port_claims_refuse_what_the_launcher_refuses():
    ports = KernelPortClaims()
    with pytest.raises(OSError) as e:
        ports.claim(claim_msg(proto=1))
    assert e.value.errno == errno.EPROTONOSUPPORT
    ports.close()


def test_in_process_stacks_get_the_addresses_the_launcher_hands_over():
    """Stack.create's addresses are the launcher's (xdpstack.netlink.addresses): every address of
    the interface, host- and link-scope ones included (lo: 127.0.0.1 and ::1, which were left out)."""
    ifindex = socket.if_nametoindex("lo")
    launcher = [a.address for a in netlink.addresses(ifindex)]
    info = _link_info("lo")
    assert info["ifindex"] == ifindex and info["addrs"] == launcher
    assert "127.0.0.1" in info["addrs"]


def test_the_stack_package_does_not_import_the_control_plane():
    code = ("import sys, userstack, userstack.agent, userstack.stack, userstack.ctl; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'xdpstack'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    with pytest.raises(ImportError):
        __import__("xdpstack.agent")
    with pytest.raises(ImportError):
        __import__("userstack.resolver")
