"""Running user-level TCP stacks on a testbed's dut, the in-process way (no launcher):

    dut veth: PortRedirect (TCP to 7000-7099 and to the dut's ephemeral range 40000-40999)
              -> AF_XDP -> a stack: a C app launched with the XDPSTACK_* environment (App), or a
                 Stack in this process (inproc_stack)
    peer ns:  kernel clients and servers (python3, curl, nc, wrk)

Active opens claim their local port the way the launcher does (a kernel socket bound in the dut
namespace: userstack.agent.InProcessAgent with claims), from a namespace-local ephemeral range that the
redirect covers."""
from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time

from tests.fixtures import testbed as tbmod
from tests.fixtures.userstack_xdp import as_user, in_netns
from userstack.redirect import PortRedirect
from xdpstack import procs

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
ECHO = os.path.join(BIN, "userstack-echo")
LISTEN_PORTS = (7000, 7099)
EPHEMERAL = (40000, 40999)


def redirect_program() -> PortRedirect:
    return PortRedirect((LISTEN_PORTS, EPHEMERAL), tcp=True, udp=True)


def prepare(tb: tbmod.Testbed) -> None:
    """The dut's kernel hands out ephemeral ports only from the range the redirect covers."""
    tb.dut.run(["sysctl", "-q", "-w", f"net.ipv4.ip_local_port_range={EPHEMERAL[0]} {EPHEMERAL[1]}"])


class App:
    """A C application on its own stack over the dut's AF_XDP sockets, as `xdpstack run` hands
    it over: inherited fds and the XDPSTACK_* environment, run as `user`."""

    def __init__(self, tb: tbmod.Testbed, prog: PortRedirect, argv: list[str], tcp=(7000,), udp=(),
                 env: dict | None = None, user: str | None = "nobody", queues=None):
        from userstack import xsk
        from userstack.agent import InProcessAgent
        from userstack.stack import _link_info
        self.tb, self.prog = tb, prog
        prepare(tb)
        with in_netns(tb.dut.ns):
            info = _link_info(tb.dut.ifname)
            self.xs = xsk.create(tb.dut.ifname, queues)
            a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            self.agent = InProcessAgent(b, info["ifindex"], claims=True)
        tuples = [(proto, w, p) for proto, ports in (("tcp", tcp), ("udp", udp)) for p in ports
                  for w in ("0.0.0.0", "::")]
        xenv = self.xs.env(name="app", mac=info["mac"], mtu=info["mtu"], addrs=info["addrs"], tuples=tuples,
                           ctl_fd=a.fileno(),
                           local_peer=info["kind"] == "veth")
        with in_netns(tb.dut.ns):
            prog.set_sockets(self.xs.queue_ids, self.xs.fds)
            prog.attach(tb.dut.ifname)
        base = {k: v for k, v in os.environ.items() if not k.startswith("XDPSTACK_")}
        self.p = subprocess.Popen(argv, cwd=REPO, env={**base, **xenv, **(env or {})},
                                  pass_fds=[*self.xs.pass_fds, a.fileno()], **as_user(user),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        tb.track(self.p)
        a.close()
        self.stdout = self.stderr = None

    def wait_ready(self, marker: str = "", timeout: float = 5.0) -> None:
        """Until the app printed its start-up line on stderr (or a short moment)."""
        if not marker:
            time.sleep(0.3)
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = procs.readline(self.p.stderr, max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                break
            if marker in line:
                return
            if not line and self.p.poll() is not None:
                break
        raise AssertionError(f"app did not start: {self.p.poll()}")

    def stop(self) -> dict | None:
        """SIGTERM, wait, detach; the last JSON line of its stdout (None when there is none)."""
        if self.p.poll() is None:
            self.p.terminate()
        try:
            self.stdout, err = self.p.communicate(timeout=15)
        finally:
            with in_netns(self.tb.dut.ns):
                self.prog.detach(self.tb.dut.ifname)
            self.agent.close()
            self.xs.close()
        self.stderr = err
        lines = [ln for ln in self.stdout.strip().splitlines() if ln.startswith("{")]
        return json.loads(lines[-1]) if lines else None


@contextlib.contextmanager
def inproc_stack(tb: tbmod.Testbed, prog: PortRedirect, tcp=(7000,), udp=(), tcp_opts: str = "",
                 faults: str = ""):
    """A Stack in this process on the dut (driver thread), redirect attached; closed after."""
    import userstack
    prepare(tb)
    with in_netns(tb.dut.ns):
        stack = userstack.Stack.create(tb.dut.ifname, tcp=list(tcp), udp=list(udp), claims=True)
    try:
        if tcp_opts:
            stack.tcp_configure(tcp_opts)
        if faults:
            stack.configure_faults(faults)
        with in_netns(tb.dut.ns):
            prog.set_sockets(stack.queue_ids, stack.fds)
            prog.attach(tb.dut.ifname)
        yield stack
    finally:
        with in_netns(tb.dut.ns):
            prog.detach(tb.dut.ifname)
        stack.close()


def peer_python(tb: tbmod.Testbed, code: str, *args, timeout: float = 120, check: bool = True) -> dict:
    """Run a Python script in the peer namespace; its last stdout line is JSON."""
    r = tb.peer.run([sys.executable, "-c", code, *map(str, args)], timeout=timeout, check=False)
    if check and r.returncode != 0:
        raise AssertionError(f"peer script failed ({r.returncode}): {r.stderr[-3000:]}")
    lines = [ln for ln in r.stdout.strip().splitlines() if ln.startswith("{")]
    if not lines:
        raise AssertionError(f"no result from the peer: {r.stdout[-1000:]} {r.stderr[-3000:]}")
    return json.loads(lines[-1])


def peer_popen(tb: tbmod.Testbed, code: str, *args) -> subprocess.Popen:
    """A Python script in the peer namespace in the background; it prints "ready" when listening."""
    p = tb.track(tb.peer.popen([sys.executable, "-c", code, *map(str, args)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True))
    try:
        line = procs.readline(p.stdout, 30)
    except TimeoutError:
        line = ""
    assert line.strip() == "ready", (line, p.poll(), procs.available(p.stderr))
    return p


def peer_result(p: subprocess.Popen, timeout: float = 60) -> dict:
    out, err = p.communicate(timeout=timeout)
    lines = [ln for ln in out.strip().splitlines() if ln.startswith("{")]
    assert lines, f"no result from the peer ({p.returncode}): {err[-3000:]}"
    return json.loads(lines[-1])


# ---- scripts run by kernel peers (stdlib only) --------------------------------------------------

# Sends N pseudo-random bytes (a block repeated) and reads what comes back, concurrently: SHA-256 of
# both ways, counts and the time.
BULK_ECHO_CLIENT = r"""
import hashlib, json, os, socket, sys, threading, time
dst, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
block = os.urandom(1000003)                 # not a power of two: misplaced blocks change the hash
s = socket.create_connection((dst, port), timeout=60)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
sent = hashlib.sha256()
got, got_n = hashlib.sha256(), 0
def rx():
    global got_n
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    while True:
        k = s.recv_into(buf)
        if not k:
            return
        got.update(view[:k]); got_n += k
t = threading.Thread(target=rx); t.start()
t0 = time.monotonic()
left = n
while left:
    chunk = memoryview(block)[:min(left, len(block))]
    s.sendall(chunk); sent.update(chunk); left -= len(chunk)
s.shutdown(socket.SHUT_WR)
t.join(600)
dt = time.monotonic() - t0
print(json.dumps({"sent": n, "received": got_n, "sha_sent": sent.hexdigest(), "sha_received": got.hexdigest(),
                  "seconds": dt}))
"""

# One-way sender (kernel -> stack) / receiver (stack -> kernel) with SHA-256.
SINK_SERVER = r"""
import hashlib, json, socket, sys, time
addr, port = sys.argv[1], int(sys.argv[2])
af = socket.AF_INET6 if ":" in addr else socket.AF_INET
l = socket.socket(af, socket.SOCK_STREAM); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind((addr, port)); l.listen(16)
print("ready", flush=True)
c, peer = l.accept()
h, n, buf = hashlib.sha256(), 0, bytearray(1 << 20)
view = memoryview(buf)
t0 = time.monotonic()
while True:
    k = c.recv_into(buf)
    if not k:
        break
    h.update(view[:k]); n += k
dt = time.monotonic() - t0
c.close()
print(json.dumps({"received": n, "sha": h.hexdigest(), "seconds": dt, "peer": list(peer[:2])}))
"""

SOURCE_SERVER = r"""
import hashlib, json, os, socket, sys, time
addr, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
af = socket.AF_INET6 if ":" in addr else socket.AF_INET
l = socket.socket(af, socket.SOCK_STREAM); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind((addr, port)); l.listen(16)
print("ready", flush=True)
c, peer = l.accept()
block = os.urandom(1000003)
h, left = hashlib.sha256(), n
t0 = time.monotonic()
while left:
    chunk = memoryview(block)[:min(left, len(block))]
    c.sendall(chunk); h.update(chunk); left -= len(chunk)
c.shutdown(socket.SHUT_WR)
c.recv(1)                                   # until the stack closes
dt = time.monotonic() - t0
c.close()
print(json.dumps({"sent": n, "sha": h.hexdigest(), "seconds": dt, "peer": list(peer[:2])}))
"""
