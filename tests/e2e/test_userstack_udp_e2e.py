"""userstack end to end: real AF_XDP sockets on the dut veth of a testbed, a tiny XDP program
redirecting UDP ports 7000-7099 into xsks[rx_queue_index], and kernel peers.

    peer ns (kernel client) --veth--> dut veth: XDP redirect -> AF_XDP -> user-level stack
                                                 (everything else: the kernel, e.g. a kernel echo on 7100)

The C echo app runs as user nobody with only the inherited fds and the XDPSTACK_* environment:
the launcher's hand-over, minus the launcher (whose tests are the lead's)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from tests.fixtures import testbed as tbmod
from tests.fixtures.userstack_xdp import as_user, in_netns
from userstack.redirect import UdpRedirect
from xdpstack import procs

pytestmark = pytest.mark.root
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ECHO = os.path.join(os.path.dirname(sys.executable), "userstack-echo")   # the C app (make setup builds it)

CLIENT = r"""
import json, os, socket, sys
family, dst, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
sizes, kport = json.loads(sys.argv[4]), int(sys.argv[5])
af = socket.AF_INET6 if family == "6" else socket.AF_INET
s = socket.socket(af, socket.SOCK_DGRAM)
s.settimeout(0.5)
bad, lost, ok = [], 0, 0
for n in sizes:
    payload = os.urandom(n)
    for attempt in range(3):
        s.sendto(payload, (dst, port))
        try:
            data, addr = s.recvfrom(65535)
        except socket.timeout:
            continue
        if data != payload or addr[1] != port:
            bad.append(n)
        else:
            ok += 1
        break
    else:
        lost += 1
# the kernel's own service on another port, meanwhile
k = socket.socket(af, socket.SOCK_DGRAM); k.settimeout(2)
k.sendto(b"kernel", (dst, kport))
try:
    kernel = k.recvfrom(100)[0].decode()
except socket.timeout:
    kernel = None
print(json.dumps({"ok": ok, "bad": bad, "lost": lost, "kernel": kernel}))
"""

KERNEL_ECHO = r"""
import socket, sys, select
socks = []
for af, a in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
    s = socket.socket(af, socket.SOCK_DGRAM)
    if af == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((a, int(sys.argv[1]))); socks.append(s)
print("ready", flush=True)
while True:
    for s in select.select(socks, [], [], 60)[0]:
        d, addr = s.recvfrom(65535); s.sendto(d, addr)
"""


@pytest.fixture(scope="module")
def redirect():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    prog = UdpRedirect(7000, 7099)
    yield prog
    prog.close()


class Attached:
    """An XSK set (or in-process stack) on the dut with the redirect program attached."""

    def __init__(self, tb: tbmod.Testbed, prog: UdpRedirect):
        self.tb, self.prog = tb, prog

    def attach(self, queue_ids, fds):
        with in_netns(self.tb.dut.ns):
            self.prog.set_sockets(queue_ids, fds)
            self.prog.attach(self.tb.dut.ifname)

    def detach(self):
        with in_netns(self.tb.dut.ns):
            self.prog.detach(self.tb.dut.ifname)


def run_client(tb: tbmod.Testbed, family: str, port: int, sizes: list[int], kport: int = 7100) -> dict:
    dst = tb.dut.addr6 if family == "6" else tb.dut.addr4
    r = tb.peer.run(["python3", "-c", CLIENT, family, dst, str(port), json.dumps(sizes), str(kport)],
                    timeout=120)
    return json.loads(r.stdout)


def launch_echo(tb: tbmod.Testbed, prog: UdpRedirect, args=(), queues=None, user="nobody"):
    """Create sockets in the dut namespace, hand them to a C echo process, resolve for it."""
    from userstack import xsk
    from userstack.agent import InProcessAgent
    from userstack.stack import _link_info
    with in_netns(tb.dut.ns):
        info = _link_info(tb.dut.ifname)
        xs = xsk.create(tb.dut.ifname, queues)
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        agent = InProcessAgent(b, info["ifindex"])
    env = xs.env(name="echo", mac=info["mac"], mtu=info["mtu"], addrs=info["addrs"],
                 tuples=[("udp", "0.0.0.0", 7000), ("udp", "::", 7000)], ctl_fd=a.fileno(),
                 local_peer=info["kind"] == "veth")
    Attached(tb, prog).attach(xs.queue_ids, xs.fds)
    p = subprocess.Popen([ECHO, *args], cwd=REPO,
                         env={**os.environ, **env, "PYTHONPATH": REPO}, pass_fds=[*xs.pass_fds, a.fileno()],
                         **as_user(user), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    tb.track(p)
    a.close()
    return xs, agent, p


def stop_echo(tb, prog, xs, agent, p) -> dict:
    p.terminate()
    out, err = p.communicate(timeout=10)
    Attached(tb, prog).detach()
    agent.close()
    xs.close()
    assert p.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_c_echo_every_size_v4_v6_unprivileged(testbed, redirect):
    tb = testbed
    kecho = tb.track(tb.dut.popen(["python3", "-c", KERNEL_ECHO, "7100"], stdout=subprocess.PIPE, text=True))
    assert procs.readline(kecho.stdout, 10).strip() == "ready"
    xs, agent, p = launch_echo(tb, redirect)
    try:
        time.sleep(0.3)
        assert p.poll() is None, procs.available(p.stderr)
        r4 = run_client(tb, "4", 7000, list(range(0, 1473)) + [1472] * 500)
        r6 = run_client(tb, "6", 7000, list(range(0, 1453)) + [0] * 500)
    finally:
        stats = stop_echo(tb, redirect, xs, agent, p)
    assert r4["bad"] == [] and r6["bad"] == []
    # UDP over a veth pair loses nothing here; allow a handful of retried datagrams
    assert r4["lost"] == 0 and r6["lost"] == 0, (r4, r6)
    assert r4["ok"] == 1973 and r6["ok"] == 1953
    assert r4["kernel"] == "kernel" and r6["kernel"] == "kernel"    # the kernel keeps port 7100
    assert stats["datagrams"] >= 1973 + 1953 and stats["rx_bad_csum"] == 0 and stats["rx_malformed"] == 0
    assert stats["rx_csum_partial"] >= 1973 + 1953          # the peer's default offloads: partial sums


def test_python_api_echo_in_process(testbed, redirect):
    tb = testbed
    import userstack
    with in_netns(tb.dut.ns):
        stack = userstack.Stack.create(tb.dut.ifname, udp=[7000])
    att = Attached(tb, redirect)
    att.attach(stack.queue_ids, stack.fds)
    stop = threading.Event()

    def serve(family):
        s = stack.socket(family, socket.SOCK_DGRAM)
        s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", 7000))
        s.settimeout(0.2)
        while not stop.is_set():
            try:
                data, addr = s.recvfrom(2048)
            except TimeoutError:
                continue
            s.sendto(data, addr)
        s.close()

    threads = [threading.Thread(target=serve, args=(f,)) for f in (socket.AF_INET, socket.AF_INET6)]
    for t in threads:
        t.start()
    try:
        r4 = run_client(tb, "4", 7000, list(range(0, 1473, 13)))
        r6 = run_client(tb, "6", 7000, list(range(0, 1453, 13)))
    finally:
        stop.set()
        for t in threads:
            t.join(5)
        att.detach()
        st = stack.stats()
        stack.close()
    assert (r4["bad"], r4["lost"], r6["bad"], r6["lost"]) == ([], 0, [], 0)
    assert r4["ok"] == len(range(0, 1473, 13)) and r6["ok"] == len(range(0, 1453, 13))
    assert st["rx_bad_csum"] == 0 and st["neigh_drop"] == 0


FLOWS = r"""
import json, socket, sys
dst, n = sys.argv[1], int(sys.argv[2])
socks = []
for i in range(n):
    s = socket.socket(); s.close()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 20000 + i)); s.settimeout(1)
    socks.append(s)
ok = 0
for rnd in range(5):
    for s in socks:
        s.sendto(b"flow %d" % s.getsockname()[1], (dst, 7000))
    for s in socks:
        try:
            d = s.recv(100)
            ok += d == b"flow %d" % s.getsockname()[1]
        except socket.timeout:
            pass
print(json.dumps({"ok": ok}))
"""


def test_four_queues_every_queue_reaches_the_stack(redirect):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    with tbmod.Testbed(queues=4) as tb:
        xs, agent, p = launch_echo(tb, redirect)
        try:
            assert xs.queue_ids == [0, 1, 2, 3]
            time.sleep(0.3)
            r = json.loads(tb.peer.run(["python3", "-c", FLOWS, tb.dut.addr4, "64"], timeout=60).stdout)
            per_queue = [q["rx_dropped"] for q in xs.stats()]
            fills = [q["rx_fill_ring_empty_descs"] for q in xs.stats()]
        finally:
            stats = stop_echo(tb, redirect, xs, agent, p)
        assert r["ok"] == 64 * 5, r
        assert stats["datagrams"] == 64 * 5
        assert per_queue == [0, 0, 0, 0] and fills == [0, 0, 0, 0]


def test_four_queues_in_process_counts_per_queue(redirect):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    import userstack
    with tbmod.Testbed(queues=4) as tb:
        with in_netns(tb.dut.ns):
            stack = userstack.Stack.create(tb.dut.ifname, udp=[7000])
        att = Attached(tb, redirect)
        att.attach(stack.queue_ids, stack.fds)
        s = stack.socket()
        s.bind(("0.0.0.0", 7000))
        stop = threading.Event()

        def serve():
            s.settimeout(0.2)
            while not stop.is_set():
                try:
                    d, a = s.recvfrom(100)
                except TimeoutError:
                    continue
                s.sendto(d, a)
        t = threading.Thread(target=serve)
        t.start()
        try:
            r = json.loads(tb.peer.run(["python3", "-c", FLOWS, tb.dut.addr4, "64"], timeout=60).stdout)
            q = stack.xdp_stats()
        finally:
            stop.set()
            t.join(5)
            att.detach()
            stack.close()
        assert r["ok"] == 64 * 5
        assert len(q) == 4 and all(x["rx_frames"] > 0 for x in q), q
        assert sum(x["rx_frames"] for x in q) == 64 * 5
