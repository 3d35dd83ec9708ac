"""userstack-httpd on its own user-level stack, launched by `xdpstack run IFACE --tcp 80 -- ...` as
user nobody in the dut namespace of a testbed with the demux attached; curl, wrk and raw Python
clients in the peer namespace talk to it over the veth pair, like hosts on a network."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.fixtures.httpd_helpers import DEFAULT_BODY
from tests.fixtures.testbed import wait_until
from xdpstack.bench.http import body as pattern_body

pytest_plugins = ["tests.fixtures.xdpstack_fixtures"]
pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]
XDPSTACK = os.path.join(os.path.dirname(sys.executable), "xdpstack")

# Runs in the peer namespace: the raw client of httpd_helpers against the dut.
PEER_CLIENT = r"""
import json, sys
from tests.fixtures.httpd_helpers import Conn, get
host, port, case = sys.argv[1], int(sys.argv[2]), sys.argv[3]
out = {}
with Conn((host, port), timeout=10) as c:
    if case == "keepalive":
        bodies = []
        for i in range(100):
            c.send(get(f"/{i}"))
            bodies.append(c.response().body.decode())
        out["bodies"] = sorted(set(bodies))
    elif case == "pipeline":
        order = [int(x) for x in sys.argv[4].split(",")]
        c.send(b"".join(get(f"/f{i}") for i in order))
        out["bodies"] = [c.response().body.decode() for _ in order]
    elif case == "close":
        c.send(get("/f1") + get("/f2", extra="Connection: close\r\n") + get("/f3"))
        out["statuses"] = [c.response().status, c.response().headers.get("connection")]
        out["closed"] = c.closed_by_peer()
    elif case == "errors":
        c.send(get("/missing") + get("/../x") + b"BREW / HTTP/1.1\r\nHost: t\r\n\r\n")
        out["statuses"] = [c.response().status for _ in range(2)]
        c2 = Conn((host, port), timeout=10)
        c2.send(b"BREW / HTTP/1.1\r\nHost: t\r\n\r\n" + get("/f1"))
        out["statuses"] += [c2.response().status, c2.response().status]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def www():
    top = Path(tempfile.mkdtemp(prefix="httpd-us-test-"))
    os.chmod(top, 0o755)                         # the server runs as nobody
    d = top / "www"
    d.mkdir()
    for i in range(10):
        (d / f"f{i}").write_text(f"file {i}\n" * (i + 1))
    (d / "big.bin").write_bytes(os.urandom(5 * 1024 * 1024 + 3))
    (d / "index.html").write_text("<p>hi</p>\n")
    yield d
    shutil.rmtree(top)


class Httpd:
    """`xdpstack run IFACE --tcp PORT [--user nobody] -- userstack-httpd ARGS` in the dut namespace."""

    def __init__(self, tb, port: int, user: str | None, *args: str, more_tcp: tuple[int, ...] = ()):
        self.tb, self.port = tb, port
        claims = [w for p in (port, *more_tcp) for w in ("--tcp", str(p))]
        argv = [XDPSTACK, "--netns", tb.dut.ns, "run", tb.dut.ifname, *claims,
                *(["--user", user] if user else []), "--", "userstack-httpd", *args]
        self.p = tb.track(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        ok = wait_until(lambda: self.p.poll() is not None or self.curl("/").returncode == 0, 15, 0.1)
        if not ok or self.p.poll() is not None:
            self.p.kill()
            raise AssertionError(f"userstack-httpd did not come up: {self.p.communicate(timeout=5)}")

    def url(self, path: str = "/", v6: bool = False) -> str:
        host = f"[{self.tb.dut.addr6}]" if v6 else self.tb.dut.addr4
        return f"http://{host}:{self.port}{path}"

    def curl(self, path: str = "/", *opts: str, v6: bool = False, port: int | None = None):
        url = self.url(path, v6)
        if port:
            url = url.replace(f":{self.port}/", f":{port}/", 1)
        return subprocess.run(["ip", "netns", "exec", self.tb.peer.ns, "curl", "-sS", "-g", "-m", "10", *opts,
                               url], capture_output=True, timeout=30)

    def peer_client(self, case: str, *args: str) -> dict:
        argv = [sys.executable, "-c", PEER_CLIENT, self.tb.dut.addr4, str(self.port), case, *args]
        r = self.tb.peer.run(argv, timeout=60, cwd=str(REPO), env={**os.environ, "PYTHONPATH": str(REPO)})
        return json.loads(r.stdout)

    def stop(self) -> dict:
        """SIGTERM to the launcher: the app stops, prints its counters, the stack is undone."""
        self.p.send_signal(signal.SIGTERM)
        out, err = self.p.communicate(timeout=15)
        assert self.p.returncode == 128 + signal.SIGTERM, err
        return json.loads([ln for ln in out.splitlines() if ln.startswith("{")][-1])


@pytest.fixture
def httpd(attached_bed):
    tb, _ = attached_bed
    servers = []

    def start(*args: str, port: int = 8000, user: str | None = "nobody", more_tcp=()) -> Httpd:
        s = Httpd(tb, port, user, *args, more_tcp=more_tcp)
        servers.append(s)
        return s
    yield start
    for s in servers:
        if s.p.poll() is None:
            s.p.kill()
            s.p.wait(10)


def test_curl_v4_and_v6_keepalive_and_counters(httpd):
    s = httpd(port=80, user=None)                   # as root, the way the issue runs it
    assert s.curl("/").stdout == DEFAULT_BODY
    assert s.curl("/x", v6=True).stdout == DEFAULT_BODY
    r = s.curl("/", "-I")
    assert r.stdout.startswith(b"HTTP/1.1 200 OK\r\n") and b"Content-Length: 27\r\n" in r.stdout
    assert s.peer_client("keepalive")["bodies"] == [DEFAULT_BODY.decode()]
    stats = s.stop()
    assert stats["transport"] == "userstack"
    assert stats["get"] >= 102 and stats["head"] == 1 and stats["rx_bad_csum"] == 0
    assert stats["accepted"] >= 4                  # the readiness probes, curl x3, the client


def test_pipelining_files_and_errors(httpd, www):
    s = httpd("--root", str(www))
    order = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9] * 20
    got = s.peer_client("pipeline", ",".join(map(str, order)))["bodies"]
    assert got == [f"file {i}\n" * (i + 1) for i in order]
    assert s.peer_client("errors")["statuses"] == [404, 400, 405, 200]
    assert s.peer_client("close") == {"statuses": [200, "close"], "closed": True}
    r = s.curl("/big.bin")
    assert hashlib.sha256(r.stdout).digest() == hashlib.sha256((www / "big.bin").read_bytes()).digest()
    assert s.stop()["responses_4xx"] == 4          # 404, 400 (framing intact: kept alive), 405, 405


@pytest.mark.parametrize("size", [64, 100_000, 4 * 1024 * 1024])
def test_body_size_byte_exact(httpd, size):
    s = httpd("--body-size", str(size))
    want = pattern_body(size).encode()
    for v6 in (False, True):
        assert s.curl("/", v6=v6).stdout == want


def test_wrk_keepalive_and_close(httpd):
    s = httpd("--body-size", "64")
    for extra in ([], ["-H", "Connection: close"]):
        r = s.tb.peer.run(["wrk", "-t1", "-c50", "-d2s", *extra, s.url()], timeout=60)
        assert "Socket errors" not in r.stdout and "Non-2xx" not in r.stdout, r.stdout
        n = int(r.stdout.split(" requests in ")[0].split()[-1])
        assert n > 1000, r.stdout
    stats = s.stop()
    assert stats["responses_2xx"] >= 2000 and stats["responses_4xx"] == 0


def test_kernel_keeps_its_own_port(httpd):
    """The stack owns tcp/80; a kernel server on 8080 in the same namespace still answers."""
    s = httpd()
    k = s.tb.track(s.tb.dut.popen(["python3", "-m", "http.server", "--bind", s.tb.dut.addr4, "8080"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    probe = ["curl", "-s", "-m", "2", "-o", "/dev/null", "-w", "%{http_code}", f"http://{s.tb.dut.addr4}:8080/"]
    try:
        assert wait_until(lambda: s.tb.peer.run(probe, check=False).stdout == "200", 10, 0.1)
        assert s.curl("/").stdout == DEFAULT_BODY
    finally:
        k.terminate()
        k.wait(5)


def test_every_claimed_port_or_only_port(httpd):
    s = httpd(more_tcp=(8001,))                      # no --port: both claimed ports
    assert s.curl("/").stdout == DEFAULT_BODY and s.curl("/", port=8001).stdout == DEFAULT_BODY
    s.stop()
    s = httpd("--port", "8001", port=8001, more_tcp=(8000,))
    assert s.curl("/").stdout == DEFAULT_BODY
    r = s.curl("/", port=8000)                       # claimed but not served: the stack resets
    assert r.returncode == 7, r                      # curl: connection refused
