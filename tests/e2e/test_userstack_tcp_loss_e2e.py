"""100 MB each way between kernel peers and a user-level stack whose fault injection
(XDPSTACK_FAULTS syntax, both directions) drops 1%, 5% and 10% of the frames and duplicates,
reorders and corrupts some more: byte-exact (SHA-256) and within a time bound, so a stall fails
the test. Loss recovery runs for real on both ends: ours for what the stack sends, the kernel's
for what it sends to the stack.

Each direction is its own transfer: the stack connects to a kernel sink and sends (stack ->
kernel), a kernel client connects to the stack and sends (kernel -> stack). The 10% case runs in
the default suite with both ends' minimum RTO at 5 ms (a LAN setting: `ip route ... rto_min` on
the peer, XDPSTACK_TCP rto_min_ms on the stack); with the default 200 ms it is a soak test, like
the same transfers both ways at once through the C echo.

Both directions at once on one connection, through the C echo, run in the default suite at 5%
loss; every loss rate and several seeds as a soak. (Those once stalled: the receive window, rounded
up to its scale, promised more than the ring held, and pure ACKs at the right edge were refused;
tests/tcp/test_tcp_window_edge.py pins both down.)"""
from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time

import pytest

from tests.fixtures import userstack_tcp_helpers as H

pytestmark = pytest.mark.root
MB = 1_000_000

SEND_CLIENT = r"""
import hashlib, json, os, socket, sys, time
dst, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.create_connection((dst, port), timeout=60)
block, h, left = os.urandom(1000003), hashlib.sha256(), n
while left:
    chunk = memoryview(block)[:min(left, len(block))]
    s.sendall(chunk); h.update(chunk); left -= len(chunk)
s.shutdown(socket.SHUT_WR)
s.recv(1)                                    # until the stack closes too
print(json.dumps({"sent": n, "sha": h.hexdigest()}))
"""


@pytest.fixture(scope="module")
def prog():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    p = H.redirect_program()
    yield p
    p.close()


def fast_rto(tb):
    dev = tb.peer.ifname
    tb.peer.run(f"ip route change 198.18.0.0/24 dev {dev} rto_min 5ms && "
                f"ip -6 route replace 2001:db8::/64 dev {dev} metric 256 rto_min 5ms")


def faults(loss: float, seed: int) -> str:
    return f"seed={seed} drop={loss} duplicate=0.01 reorder=0.02 corrupt=0.002 dir=both"


def both_ways(tb, prog, family: str, loss: float, nbytes: int, limit_s: float, seed: int, rto_ms: int = 0):
    """Stack -> kernel, then kernel -> stack, each nbytes, each within limit_s."""
    af = socket.AF_INET6 if family == "6" else socket.AF_INET
    peer = tb.peer.addr6 if family == "6" else tb.peer.addr4
    dut = tb.dut.addr6 if family == "6" else tb.dut.addr4
    if rto_ms:
        fast_rto(tb)
    with H.inproc_stack(tb, prog, tcp_opts=f"rto_min_ms={rto_ms}" if rto_ms else "",
                        faults=faults(loss, seed)) as stack:
        # stack -> kernel (active open under loss)
        sink = H.peer_popen(tb, H.SINK_SERVER, peer, 9000)
        t0 = time.monotonic()
        c = stack.socket(af, socket.SOCK_STREAM)
        c.settimeout(limit_s)
        c.connect((peer, 9000))
        block, h, left = os.urandom(1000003), hashlib.sha256(), nbytes
        while left:
            chunk = memoryview(block)[:min(left, len(block))]
            c.sendall(chunk)
            h.update(chunk)
            left -= len(chunk)
        c.close()
        r = H.peer_result(sink, limit_s + 30)
        took_out = time.monotonic() - t0
        assert r["received"] == nbytes and r["sha"] == h.hexdigest()
        assert took_out < limit_s, f"stack -> kernel at {loss:.0%} loss: {took_out:.1f} s (bound {limit_s} s)"

        # kernel -> stack (passive open under loss)
        lsock = stack.socket(af, socket.SOCK_STREAM)
        lsock.bind(("::" if family == "6" else "0.0.0.0", 7000))
        lsock.listen()
        lsock.settimeout(30)
        t0 = time.monotonic()
        cl = tb.track(tb.peer.popen([sys.executable, "-c", SEND_CLIENT, dut, "7000", str(nbytes)],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        s, _ = lsock.accept()
        s.settimeout(limit_s)
        h, n, buf = hashlib.sha256(), 0, bytearray(1 << 20)
        while True:
            k = s.recv_into(buf)
            if not k:
                break
            h.update(memoryview(buf)[:k])
            n += k
        s.close()
        r = H.peer_result(cl, limit_s + 30)
        took_in = time.monotonic() - t0
        assert n == nbytes and r["sha"] == h.hexdigest()
        assert took_in < limit_s, f"kernel -> stack at {loss:.0%} loss: {took_in:.1f} s (bound {limit_s} s)"
        f = stack.fault_stats()
        assert f["dropped"] > 0 and f["duplicated"] > 0 and f["reordered"] > 0
        assert stack.tcp_stats()["retransmits"] > 0
    return took_out, took_in


@pytest.mark.parametrize("family", ["4", "6"])
@pytest.mark.parametrize("loss,limit_s", [(0.01, 30), (0.05, 45)])
def test_100mb_each_way_under_loss(testbed, prog, family, loss, limit_s):
    both_ways(testbed, prog, family, loss, 100 * MB, limit_s, seed=11)


def test_100mb_each_way_at_10_percent_loss_fast_rto(testbed, prog):
    both_ways(testbed, prog, "4", 0.10, 100 * MB, 60, seed=12, rto_ms=5)


@pytest.mark.soak
@pytest.mark.parametrize("family", ["4", "6"])
def test_100mb_each_way_at_10_percent_loss_default_rto(testbed, prog, family):
    both_ways(testbed, prog, family, 0.10, 100 * MB, 300, seed=13)


def test_100mb_both_ways_at_once_through_the_echo_at_5_percent(testbed, prog):
    echo_both_ways(testbed, prog, 0.05, 90, seed=21)


@pytest.mark.soak
@pytest.mark.parametrize("loss,limit_s", [(0.01, 60), (0.05, 90), (0.10, 300)])
@pytest.mark.parametrize("seed", [21, 22, 23])
def test_100mb_both_ways_at_once_through_the_echo(testbed, prog, loss, limit_s, seed):
    echo_both_ways(testbed, prog, loss, limit_s, seed)


def echo_both_ways(tb, prog, loss: float, limit_s: float, seed: int):
    """The C echo (launched from the environment) under XDPSTACK_FAULTS: 100 MB in, the same
    100 MB out, on one connection at the same time."""
    app = H.App(tb, prog, [H.ECHO], tcp=(7000,), env={"XDPSTACK_FAULTS": faults(loss, seed)})
    app.wait_ready("echo on tcp/7000 (IPv6)")
    t0 = time.monotonic()
    try:
        r = H.peer_python(tb, H.BULK_ECHO_CLIENT, tb.dut.addr4, 7000, 100 * MB, timeout=limit_s + 60)
    finally:
        stats = app.stop()
    took = time.monotonic() - t0
    assert r["received"] == r["sent"] == 100 * MB and r["sha_received"] == r["sha_sent"]
    assert took < limit_s, f"{took:.1f} s"
    assert stats["tcp_bytes"] == 100 * MB and stats["tcp_resets"] == 0 and stats["tcp_retransmits"] > 0
