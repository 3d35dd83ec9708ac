"""`xdpstack run --direct`: a stack whose AF_XDP sockets are on the NIC's own queues (no virtual port,
no egress guard), end to end on veth (copy mode: veth has no zero-copy AF_XDP).

The same launcher, claims and clean-up as an isolated stack; what differs is where the sockets are,
that every tool says the stack is unguarded, and that one direct stack owns the NIC's queues.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pytest

from tests.e2e.test_launcher import (
    XDPSTACK,
    app_pid,
    assert_nothing_left,
    claims,
    echoes,
    kernel_can_bind,
    kernel_udp_echo,
    launch,
    stacks,
    wait_running,
)
from tests.fixtures.testbed import wait_until
from xdpstack import registry

pytest_plugins = ["tests.fixtures.xdpstack_fixtures"]
pytestmark = pytest.mark.root

TCP_CLIENT = r"""
import socket, sys
fam, dst, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.create_connection((dst, port), timeout=3)
msg = bytes(range(256)) * 64                 # 16 KB: several segments each way
s.sendall(msg)
got = b""
while len(got) < len(msg):
    d = s.recv(65536)
    if not d:
        break
    got += d
print("ok" if got == msg else f"bad {len(got)}")
"""


def tcp_echo(tb, port: int, family: int) -> str:
    dst = tb.dut.addr4 if family == 4 else tb.dut.addr6
    return tb.peer.run(["python3", "-c", TCP_CLIENT, str(family), dst, str(port)], timeout=20).stdout.strip()


def xdpstack(tb, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([XDPSTACK, "--netns", tb.dut.ns, *args], capture_output=True, text=True, timeout=30)


def test_udp_and_tcp_echo_v4_v6_then_sigkill(attached_bed):
    tb, _ = attached_bed
    kecho = kernel_udp_echo(tb, 7201)
    p = launch(tb, "--direct", "--udp", "7200", "--tcp", "7200", "--name", "direct-echo")
    wait_running(tb, p)
    (rec,) = stacks(tb)
    assert rec.target == registry.TARGET_XSK and rec.port_ifindex == 0
    links = tb.dut.run("ip -o link show").stdout
    assert not re.search(r"\bxs\d+\.\d+[io]\b", links), links     # no virtual port made
    assert echoes(tb, 7200, 4) == 5 and echoes(tb, 7200, 6) == 5
    assert tcp_echo(tb, 7200, 4) == "ok" and tcp_echo(tb, 7200, 6) == "ok"
    assert echoes(tb, 7201, 4) == 5                       # the kernel's own port, beside it

    (row,) = json.loads(xdpstack(tb, "stacks", "--json").stdout)
    assert (row["name"], row["mode"], row["xsk_bind"]) == ("direct-echo", "direct, unguarded", "copy")
    assert row["counters"]["rx_packets"] >= 10 and row["counters"]["tx_packets"] == 0  # no guard counts
    assert "direct, unguarded (copy)" in xdpstack(tb, "stacks").stdout
    status = xdpstack(tb, "status", tb.dut.ifname)
    assert "direct-echo" in status.stdout and "direct, unguarded" in status.stdout, status.stdout

    t0, pid = time.monotonic(), app_pid(p)
    os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: not claims(tb) and kernel_can_bind(tb, "udp", 7200)
                      and kernel_can_bind(tb, "tcp", 7200), 1.0, 0.01)
    assert time.monotonic() - t0 < 1.0
    assert p.wait(5) == 128 + signal.SIGKILL
    assert_nothing_left(tb, pid)
    assert echoes(tb, 7201, 4) == 5
    kecho.kill()


def test_one_direct_stack_owns_the_nics_queues(attached_bed):
    """A second direct stack cannot bind the same queues: one line, and nothing of it is left.
    An isolated stack beside the direct one works (its sockets are on its own port)."""
    tb, _ = attached_bed
    first = launch(tb, "--direct", "--udp", "7210")
    wait_running(tb, first)
    second = xdpstack(tb, "run", tb.dut.ifname, "--direct", "--udp", "7211", "--", "userstack-echo")
    assert second.returncode != 0 and len(second.stderr.strip().splitlines()) == 1, second.stderr
    assert "one direct stack owns" in second.stderr, second.stderr
    assert [s.name for s in stacks(tb)] == ["userstack-echo"] and len(claims(tb)) == 2   # first's only
    iso = launch(tb, "--udp", "7212")
    wait_running(tb, iso, n=2)
    assert echoes(tb, 7210) == 5 and echoes(tb, 7212) == 5
    pids = [app_pid(first), app_pid(iso)]
    for p in (first, iso):
        p.send_signal(signal.SIGTERM)
        p.wait(5)
    assert_nothing_left(tb, *pids)


@pytest.mark.parametrize("args,expect", [
    (("--direct", "--zerocopy", "on"), "no zero-copy AF_XDP here"),          # veth: copy mode only
    (("--zerocopy", "off"), "--zerocopy is for --direct stacks"),
    (("--direct", "--zerocopy", "maybe"), "'maybe' is not one of"),
])
def test_zerocopy_choices_are_one_clear_line(attached_bed, args, expect):
    tb, _ = attached_bed
    r = xdpstack(tb, "run", tb.dut.ifname, "--udp", "7220", *args, "--", "true")
    assert r.returncode != 0 and expect in r.stderr.strip().splitlines()[-1], r.stderr   # the error's line
    assert_nothing_left(tb)
