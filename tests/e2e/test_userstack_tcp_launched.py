"""User-level TCP through the real launcher: `xdpstack run IFACE --tcp P -- CMD` in the dut
namespace of a testbed with the demux attached (the stack's own virtual port, claims in the
registry, ephemeral ports claimed by the launcher's agent), kernel peers in the peer namespace.

    the C echo as nobody (v4, v6, 100 MB each way), the asyncio HTTP example with curl and wrk,
    an active open from a launched Python app (its port claimed through the launcher),
    --faults (XDPSTACK_FAULTS) and --cc reaching the stack."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pytest

from tests.fixtures import userstack_tcp_helpers as H
from tests.fixtures.testbed import wait_until

pytest_plugins = ["tests.fixtures.xdpstack_fixtures"]
pytestmark = pytest.mark.root

XDPSTACK = os.path.join(os.path.dirname(sys.executable), "xdpstack")
MB = 1_000_000


class Run:
    """`xdpstack --netns DUT run IFACE ... -- CMD` as a subprocess."""

    def __init__(self, tb, opts: list[str], cmd: list[str], ready=None, timeout: float = 15):
        self.tb = tb
        argv = [XDPSTACK, "--netns", tb.dut.ns, "run", tb.dut.ifname, *opts, "--", *cmd]
        self.p = tb.track(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                           cwd=H.REPO, env={**os.environ, "PYTHONPATH": H.REPO}))
        if ready is not None and not wait_until(lambda: self.p.poll() is not None or ready(), timeout, 0.1) \
                or self.p.poll() is not None:
            self.p.kill()
            raise AssertionError(f"{cmd[0]} did not come up: {self.p.communicate(timeout=5)}")

    def stop(self) -> tuple[int, str, str]:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        out, err = self.p.communicate(timeout=20)
        return self.p.returncode, out, err


def tcp_up(tb, port: int, v6: bool = False):
    """A kernel client in the peer namespace can connect."""
    dst = tb.dut.addr6 if v6 else tb.dut.addr4
    code = f"import socket; socket.create_connection(('{dst}', {port}), 1)"
    return lambda: tb.peer.run(["python3", "-c", code], check=False, timeout=10).returncode == 0


def last_json(text: str) -> dict:
    return json.loads([ln for ln in text.splitlines() if ln.startswith("{")][-1])


def test_echo_launched_as_nobody_v4_v6_100mb(attached_bed):
    tb, _ = attached_bed
    r = Run(tb, ["--tcp", "7000", "--user", "nobody"], ["userstack-echo"], ready=tcp_up(tb, 7000))
    try:
        for dst in (tb.dut.addr4, tb.dut.addr6):
            res = H.peer_python(tb, H.BULK_ECHO_CLIENT, dst, 7000, 100 * MB, timeout=300)
            assert res["received"] == 100 * MB and res["sha_received"] == res["sha_sent"]
    finally:
        rc, out, err = r.stop()
    assert rc == 128 + signal.SIGTERM, err
    stats = last_json(out)
    assert stats["tcp_bytes"] == 200 * MB and stats["tcp_resets"] == 0
    # the peer keeps the kernel's default offloads: its segments carry partial checksums
    assert stats["rx_bad_csum"] == 0 and stats["rx_csum_partial"] > 200 * MB // 1448 // 2, stats


def test_asyncio_http_example_with_curl_and_wrk(attached_bed):
    tb, _ = attached_bed
    app = [sys.executable, "-m", "userstack.examples.http_server", "--body-size", "100"]
    r = Run(tb, ["--tcp", "7080"], app, ready=tcp_up(tb, 7080))
    try:
        for url in (f"http://{tb.dut.addr4}:7080/", f"http://[{tb.dut.addr6}]:7080/x"):
            c = tb.peer.run(["curl", "-sS", "-g", "-m", "10", "-D", "-", url], timeout=30)
            assert c.stdout.startswith("HTTP/1.1 200 OK")
            assert c.stdout.split("\n\n", 1)[1] == ("userstack says hello\n" * 5)[:100]
        head = tb.peer.run(["curl", "-sS", "-m", "10", "-I", f"http://{tb.dut.addr4}:7080/"], timeout=30)
        assert "Content-Length: 100" in head.stdout
        w = tb.peer.run(["wrk", "-t1", "-c10", "-d2s", f"http://{tb.dut.addr4}:7080/"], timeout=60)
        m = re.search(r"(\d+) requests in", w.stdout)
        assert m and int(m.group(1)) > 100, w.stdout
        assert "Socket errors" not in w.stdout and "Non-2xx" not in w.stdout, w.stdout
    finally:
        rc, _out, err = r.stop()
    assert rc in (0, 128 + signal.SIGTERM), err


CLIENT_APP = r"""
import hashlib, json, os, socket, sys
from userstack import Stack
peer, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with Stack.from_env() as st:
    out = {"ports": []}
    for dst in peer.split(","):
        c = st.tcp_socket(socket.AF_INET6 if ":" in dst else socket.AF_INET)
        c.settimeout(10)
        c.connect((dst, port))
        out["ports"].append(c.getsockname()[1])
        block, h, left = os.urandom(1000003), hashlib.sha256(), n
        while left:
            chunk = memoryview(block)[:min(left, len(block))]
            c.sendall(chunk); h.update(chunk); left -= len(chunk)
        c.close()
        out.setdefault("sha", []).append(h.hexdigest())
    out["tcp"] = st.tcp_stats()
print(json.dumps(out))
"""


def test_active_open_from_a_launched_app(attached_bed):
    """connect() from a launched Python app: the launcher claims the local port from the kernel
    (agent CLAIM_EPHEMERAL), the demux steers the answers to the stack; 10 MB to kernel sinks."""
    tb, _ = attached_bed
    sinks = [H.peer_popen(tb, H.SINK_SERVER, a, 9000) for a in (tb.peer.addr4, tb.peer.addr6)]
    app = [sys.executable, "-c", CLIENT_APP, f"{tb.peer.addr4},{tb.peer.addr6}", "9000", str(10 * MB)]
    r = Run(tb, ["--tcp", "7090"], app)
    out, err = r.p.communicate(timeout=60)             # the app exits by itself
    assert r.p.returncode == 0, err
    res = last_json(out)
    got = [H.peer_result(s) for s in sinks]
    for i, g in enumerate(got):
        assert g["received"] == 10 * MB and g["sha"] == res["sha"][i]
        assert g["peer"][1] == res["ports"][i]
    assert res["tcp"]["port_claims"] >= 2 and res["tcp"]["port_claim_failures"] == 0


SEND = r"""
import hashlib, json, os, socket, sys
dst, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.create_connection((dst, port), timeout=60)
block, left = os.urandom(1000003), n
while left:
    k = min(left, len(block)); s.sendall(memoryview(block)[:k]); left -= k
s.shutdown(socket.SHUT_WR)
print(json.dumps({"eof": s.recv(1) == b""}))
"""


def test_faults_and_cc_options_reach_the_stack(attached_bed):
    """--faults of `xdpstack run` reaches the stack (20 MB into the echo's sink at 5% loss: the
    kernel resends what was dropped), and --cc newreno opens it (a bad value would fail the open)."""
    tb, _ = attached_bed
    r = Run(tb, ["--tcp", "7000", "--cc", "newreno", "--faults", "seed=3 drop=0.05 reorder=0.02 dir=both"],
            ["userstack-echo", "--sink"], ready=tcp_up(tb, 7000))
    try:
        res = H.peer_python(tb, SEND, tb.dut.addr4, 7000, 20 * MB, timeout=120)
        assert res["eof"]
    finally:
        rc, out, err = r.stop()
    stats = last_json(out)
    assert stats["tcp_bytes"] == 20 * MB
    assert stats["rx_frames"] > 20 * MB // 1448 * 1.02, stats    # the kernel resent what was dropped
