"""userstack-httpd on kernel sockets (--kernel): the HTTP behaviour shared with the user-stack
transport, checked with raw clients, curl and wrk on the loopback. No root, no namespaces."""
from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests.fixtures.httpd_helpers import DEFAULT_BODY, HTTPD, Conn, KernelServer, get, wait_for
from xdpstack import procs


@pytest.fixture(scope="module")
def default_server():
    with KernelServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def www():
    # not under pytest's tmp (mode 0700): the 403 test serves it as nobody
    top = Path(tempfile.mkdtemp(prefix="httpd-test-"))
    os.chmod(top, 0o755)
    d = top / "www"
    d.mkdir()
    (d / "index.html").write_text("<h1>index</h1>\n")
    (d / "a.txt").write_text("file a\n")
    (d / "sub").mkdir()
    (d / "sub" / "index.html").write_text("sub index\n")
    (d / "sub" / "data.json").write_text('{"x": 1}')
    (d / "with space.txt").write_text("spaced\n")
    (d / "big.bin").write_bytes(os.urandom(8 * 1024 * 1024 + 17))   # > the kernel's 4 MB send buffer
    for i in range(10):
        (d / f"f{i}").write_text(f"file number {i}\n" * (i + 1))
    secret = d.parent / f"{d.name}-secret.txt"
    secret.write_text("outside the root\n")
    (d / "escape-rel").symlink_to(f"../{secret.name}")
    (d / "escape-abs").symlink_to(secret)
    (d / "inside-link").symlink_to("a.txt")
    (d / "noperm.txt").write_text("private\n")
    os.chmod(d / "noperm.txt", 0)
    yield d
    shutil.rmtree(top)


@pytest.fixture(scope="module")
def file_server(www):
    # as nobody when root, so that file permissions mean something
    with KernelServer("--root", str(www)) as srv:
        yield srv


def test_default_body_with_curl(default_server):
    r = subprocess.run(["curl", "-sS", "-D", "-", f"{default_server.url}/anything?x=1"],
                       capture_output=True, timeout=10)
    assert r.returncode == 0, r.stderr
    head, body = r.stdout.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nContent-Length: 27" in head and b"\r\nDate: " in head
    assert body == DEFAULT_BODY


def test_keep_alive_many_requests_one_connection(default_server):
    before = default_server.report()["accepted"]
    with default_server.conn() as c:
        for i in range(50):
            c.send(get(f"/{i}"))
            r = c.response()
            assert r.status == 200 and r.body == DEFAULT_BODY and "connection" not in r.headers
    assert default_server.report()["accepted"] == before + 1


def test_pipelining_answers_in_order(file_server):
    order = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4] * 10
    with file_server.conn() as c:
        c.send(b"".join(get(f"/f{i}") for i in order))       # one write: many requests per read
        for i in order:
            r = c.response()
            assert r.status == 200 and r.body == f"file number {i}\n".encode() * (i + 1)


def test_pipelining_more_than_a_buffer(default_server):
    """3,000 pipelined requests (> the 64 KiB read buffer), sent while the responses are read."""
    n = 3000
    with default_server.conn(timeout=10) as c:
        t = threading.Thread(target=c.send, args=(get("/", extra="X-Pad: " + "p" * 20 + "\r\n") * n,))
        t.start()
        for _ in range(n):
            r = c.response()
            assert r.status == 200 and r.body == DEFAULT_BODY
        t.join(10)


def test_request_split_into_single_bytes(default_server):
    with default_server.conn() as c:
        c.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for b in get("/split"):
            c.send(bytes([b]))
            time.sleep(0.001)
        assert c.response().body == DEFAULT_BODY


def test_connection_close(default_server):
    with default_server.conn() as c:
        c.send(get("/", extra="Connection: close\r\n"))
        r = c.response()
        assert r.status == 200 and r.headers["connection"] == "close" and r.body == DEFAULT_BODY
        assert c.closed_by_peer()


def test_close_stops_the_pipeline(default_server):
    """Requests after the one that says close are not answered."""
    with default_server.conn() as c:
        c.send(get("/1") + get("/2", extra="Connection: close\r\n") + get("/3"))
        assert "connection" not in c.response().headers
        assert c.response().headers["connection"] == "close"
        assert c.closed_by_peer()


def test_http10_close_by_default_and_keep_alive_on_request(default_server):
    with default_server.conn() as c:
        c.send(b"GET / HTTP/1.0\r\n\r\n")
        r = c.response()
        assert r.status == 200 and r.headers["connection"] == "close"
        assert c.closed_by_peer()
    with default_server.conn() as c:
        for _ in range(3):
            c.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            r = c.response()
            assert r.status == 200 and r.headers["connection"] == "keep-alive"


def test_head_has_length_but_no_body(default_server):
    with default_server.conn() as c:
        c.send(get("/", method="HEAD") + get("/"))
        h = c.response(head_only=True)
        assert h.status == 200 and h.headers["content-length"] == str(len(DEFAULT_BODY))
        r = c.response()                                # the next response starts right after the head
        assert r.status == 200 and r.body == DEFAULT_BODY


@pytest.mark.parametrize("size", [0, 1, 64, 16 * 1024, 16 * 1024 + 1, 5 * 1024 * 1024])
def test_body_size(size):
    with KernelServer("--body-size", str(size)) as srv, srv.conn(timeout=10) as c:
        for _ in range(2):                              # twice: the connection survives a big body
            c.send(get("/"))
            r = c.response()
            assert r.status == 200 and len(r.body) == size and int(r.headers["content-length"]) == size
        c.send(get("/", method="HEAD"))
        assert c.response(head_only=True).headers["content-length"] == str(size)


def test_other_methods_405_and_body_skipped(default_server):
    with default_server.conn() as c:
        c.send(b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world" + get("/"))
        r = c.response()
        assert r.status == 405 and r.headers["allow"] == "GET, HEAD"
        assert c.response().body == DEFAULT_BODY        # the body was skipped, not parsed


def test_get_with_body_is_skipped(default_server):
    with default_server.conn() as c:
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\n")
        assert c.response().body == DEFAULT_BODY
        c.send(b"12345" + get("/"))                     # the 5 body bytes, then a request
        assert c.response().body == DEFAULT_BODY


@pytest.mark.parametrize("raw", [
    b"GET / HTTP/1.1\r\n\r\n",                                  # no Host in HTTP/1.1
    b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",             # two Hosts
    b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",                       # two spaces
    b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
    b"GET /\r\nHost: a\r\n\r\n",                                 # HTTP/0.9 style
    b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n",                        # not a token
    b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",                       # space before the colon
    b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",             # obs-fold
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n",
    b"GET / HTTP/1.x\r\nHost: a\r\n\r\n",
])
def test_malformed_400_and_close(default_server, raw):
    with default_server.conn() as c:
        c.send(raw)
        r = c.response()
        assert r.status == 400 and r.headers["connection"] == "close"
        assert c.closed_by_peer()


def test_version_505_and_chunked_501(default_server):
    with default_server.conn() as c:
        c.send(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n")
        assert c.response().status == 505
    with default_server.conn() as c:
        c.send(b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        r = c.response()
        assert r.status == 501 and r.headers["connection"] == "close"


def test_leading_empty_lines_and_bare_lf(default_server):
    with default_server.conn() as c:
        c.send(b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\nHost: a\n\n")
        assert c.response().body == DEFAULT_BODY
        assert c.response().body == DEFAULT_BODY


def test_header_limit_431_and_line_limit_414():
    with KernelServer("--max-head", "1024") as srv:
        with srv.conn() as c:
            c.send(get("/", extra="X-Big: " + "b" * 600 + "\r\n"))      # fits
            assert c.response().status == 200
            c.send(get("/", extra="X-Big: " + "b" * 2000 + "\r\n"))     # does not
            r = c.response()
            assert r.status == 431 and r.headers["connection"] == "close"
            assert c.closed_by_peer()
        with srv.conn() as c:
            c.send(b"GET /" + b"u" * 2000 + b" HTTP/1.1\r\nHost: a\r\n\r\n")
            assert c.response().status == 414


def test_body_limit_413():
    with KernelServer("--max-body", "100") as srv, srv.conn() as c:
        c.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n" + b"x" * 100 + get("/"))
        assert c.response().status == 405
        assert c.response().status == 200
        c.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n" + b"x" * 101)
        r = c.response()
        assert r.status == 413 and r.headers["connection"] == "close"
        assert c.closed_by_peer()


def test_connection_limit():
    with KernelServer("--max-conns", "2") as srv:
        a, b = srv.conn(), srv.conn()
        for c in (a, b):
            c.send(get("/"))
            assert c.response().status == 200
        with srv.conn() as third:
            assert third.closed_by_peer()              # accepted and closed at once
        a.close()
        assert wait_for(lambda: srv.report()["open"] == 1)
        with srv.conn() as fourth:                       # room again
            fourth.send(get("/"))
            assert fourth.response().status == 200
        b.close()
        assert srv.stop()["refused"] == 1


def test_idle_timeout():
    with KernelServer("--idle-timeout", "0.5") as srv, srv.conn() as c:
        c.send(get("/"))
        assert c.response().status == 200
        t0 = time.monotonic()
        assert c.closed_by_peer(timeout=5)
        assert 0.4 < time.monotonic() - t0 < 2.5
        assert srv.report()["idle_closed"] == 1


def test_ipv6():
    with KernelServer(addr="::1") as srv, srv.conn() as c:
        c.send(get("/"))
        assert c.response().body == DEFAULT_BODY


# ---- files -----------------------------------------------------------------------------------

@pytest.mark.parametrize("path,status,body,ctype", [
    ("/", 200, b"<h1>index</h1>\n", "text/html; charset=utf-8"),
    ("/index.html", 200, b"<h1>index</h1>\n", "text/html; charset=utf-8"),
    ("/a.txt", 200, b"file a\n", "text/plain; charset=utf-8"),
    ("/a.txt?query=1#frag", 200, b"file a\n", None),
    ("/sub/", 200, b"sub index\n", None),
    ("/sub/data.json", 200, b'{"x": 1}', "application/json"),
    ("/sub/../a.txt", 200, b"file a\n", None),
    ("/./sub/./data.json", 200, b'{"x": 1}', None),
    ("//a.txt", 200, b"file a\n", None),
    ("/with%20space.txt", 200, b"spaced\n", None),
    ("/%61.txt", 200, b"file a\n", None),
    ("/inside-link", 200, b"file a\n", None),
    ("http://example/a.txt", 200, b"file a\n", None),       # absolute-form
    ("/missing", 404, None, None),
    ("/a.txt/", 404, None, None),
    ("/escape-rel", 404, None, None),                        # symlinks out of the root
    ("/escape-abs", 404, None, None),
    ("/..", 400, None, None),
    ("/../etc/passwd", 400, None, None),
    ("/sub/../../etc/passwd", 400, None, None),
    ("/%2e%2e/etc/passwd", 400, None, None),
    ("/%2E%2E%2Fetc%2Fpasswd", 400, None, None),             # an encoded '/' is not a separator
    ("/a%00.txt", 400, None, None),
    ("/a%zz", 400, None, None),
    ("/a%2", 400, None, None),
    ("*", 400, None, None),
    ("relative", 400, None, None),
])
def test_files(file_server, path, status, body, ctype):
    with file_server.conn() as c:
        c.send(get(path))
        r = c.response()
        assert r.status == status, r
        if body is not None:
            assert r.body == body
        if ctype:
            assert r.headers["content-type"] == ctype


def test_directory_without_slash_redirects(file_server, www):
    with file_server.conn() as c:
        c.send(get("/sub?x=1"))
        r = c.response()
        assert r.status == 301 and r.headers["location"] == "/sub/"
        long = "d" * 200
        (www / long / long).mkdir(parents=True, exist_ok=True)
        c.send(get(f"/{long}/./{long}"))                 # a Location longer than a usual head
        r = c.response()
        assert r.status == 301 and r.headers["location"] == f"/{long}/./{long}/"


def test_unreadable_file_403(www):
    if os.geteuid() != 0:
        pytest.skip("needs root to run the server as nobody")
    p = subprocess.Popen(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                          HTTPD, "--kernel", "--listen", "127.0.0.1:0", "--root", str(www)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = int(procs.readline(p.stderr, 10).rsplit(":", 1)[1].split("/")[0])
        with Conn(("127.0.0.1", port)) as c:
            c.send(get("/noperm.txt") + get("/a.txt"))
            assert c.response().status == 403
            assert c.response().body == b"file a\n"
    finally:
        p.terminate()
        p.wait(5)


def test_big_file_byte_exact(file_server, www):
    want = hashlib.sha256((www / "big.bin").read_bytes()).hexdigest()
    with file_server.conn(timeout=20) as c:
        c.send(get("/big.bin") + get("/a.txt"))         # a request queued behind a streamed body
        r = c.response()
        assert r.headers["content-type"] == "application/octet-stream"
        assert hashlib.sha256(r.body).hexdigest() == want
        assert c.response().body == b"file a\n"
    r = subprocess.run(["curl", "-sS", f"{file_server.url}/big.bin"], capture_output=True, timeout=30)
    assert hashlib.sha256(r.stdout).hexdigest() == want


def test_slow_reader_gets_everything(file_server, www):
    """Backpressure: a client that does not read for a while still gets the whole streamed file,
    and the requests queued behind it."""
    want = (www / "big.bin").read_bytes()
    blocked = file_server.report()["write_blocked"]
    with file_server.conn(timeout=20) as c:
        c.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        c.send(get("/big.bin") + get("/a.txt"))
        time.sleep(0.3)
        assert file_server.report()["write_blocked"] > blocked
        assert c.response().body == want
        assert c.response().body == b"file a\n"


def test_wrk_short_run(default_server):
    r = subprocess.run(["wrk", "-t1", "-c10", "-d1s", f"{default_server.url}/"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "Non-2xx" not in r.stdout and "Socket errors" not in r.stdout, r.stdout
    reqs = int(r.stdout.split(" requests in ")[0].split()[-1])
    assert reqs > 100


def test_counters_on_sigterm():
    with KernelServer() as srv:
        with srv.conn() as c:
            c.send(get("/") + get("/", method="HEAD") + get("/", method="DELETE"))
            c.response()
            c.response(head_only=True)
            c.response()
        stats = srv.stop()
    assert stats["transport"] == "kernel"
    assert (stats["requests"], stats["get"], stats["head"]) == (3, 1, 1)
    assert (stats["responses_2xx"], stats["responses_4xx"], stats["accepted"]) == (2, 1, 1)


def test_usage_errors():
    for args in (["--kernel"], ["--listen", "127.0.0.1:1"], ["--bogus"], ["--body-size", "x"],
                 ["--kernel", "--listen", "nope"], ["--root", "/", "--body-size", "1"]):
        r = subprocess.run([HTTPD, *args], capture_output=True, text=True, timeout=5)
        assert r.returncode == 2, (args, r.stderr)
    r = subprocess.run([HTTPD], capture_output=True, text=True, timeout=5,
                       env={k: v for k, v in os.environ.items() if not k.startswith("XDPSTACK_")})
    assert r.returncode == 1 and "xdpstack run" in r.stderr
