"""Helpers for the userstack-httpd tests: the server on kernel sockets as a subprocess, and a raw
HTTP/1.1 client that reads responses by their framing (so pipelining and keep-alive are checked
byte by byte, not through a library that hides them)."""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

from xdpstack import procs

BIN = os.path.dirname(sys.executable)
HTTPD = os.path.join(BIN, "userstack-httpd")
TCPPERF = os.path.join(BIN, "userstack-tcpperf")
DEFAULT_BODY = b"Hello from userstack-httpd\n"


class Response:
    def __init__(self, status: int, reason: str, headers: dict[str, str], body: bytes):
        self.status, self.reason, self.headers, self.body = status, reason, headers, body

    def __repr__(self):
        return f"Response({self.status} {self.reason}, {self.headers}, body={self.body[:60]!r})"


class Conn:
    """A raw client connection: send bytes, read framed responses."""

    def __init__(self, addr: tuple, timeout: float = 5.0):
        self.s = socket.create_connection(addr, timeout=timeout)
        self.buf = b""

    def send(self, data: bytes):
        self.s.sendall(data)

    def _fill(self) -> bool:
        chunk = self.s.recv(1 << 20)
        if not chunk:
            return False
        self.buf += chunk
        return True

    def response(self, head_only: bool = False) -> Response:
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                raise EOFError(f"connection closed before a response head ({self.buf[:200]!r})")
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        m = re.match(r"HTTP/1\.1 (\d{3}) (.*)$", lines[0])
        assert m, lines[0]
        headers = {}
        for line in lines[1:]:
            k, v = line.split(":", 1)
            assert k.lower() not in headers, f"duplicate header {k}"
            headers[k.lower()] = v.strip()
        n = 0 if head_only else int(headers["content-length"])
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError(f"connection closed after {len(self.buf)} of {n} body bytes")
        body, self.buf = self.buf[:n], self.buf[n:]
        return Response(int(m.group(1)), m.group(2), headers, body)

    def closed_by_peer(self, timeout: float = 3.0) -> bool:
        """True when the server closes (EOF or reset) within timeout with nothing more sent."""
        self.s.settimeout(timeout)
        try:
            data = self.s.recv(4096)
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
        assert data == b"" and self.buf == b"", f"unexpected bytes: {self.buf + data!r}"
        return True

    def close(self):
        self.s.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def get(path: str = "/", extra: str = "", method: str = "GET") -> bytes:
    """A request in HTTP/1.1; extra: more header lines, each ending in CRLF."""
    return f"{method} {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n".encode()


class KernelServer:
    """userstack-httpd --kernel on 127.0.0.1 (or ::1), an ephemeral port; stopped with SIGTERM, its
    JSON counters kept in .stats."""

    def __init__(self, *args: str, addr: str = "127.0.0.1"):
        self.args, self.addr = list(args), addr
        self.p: subprocess.Popen | None = None
        self.stats: dict | None = None
        self.port = 0

    def __enter__(self) -> KernelServer:
        listen = f"[{self.addr}]:0" if ":" in self.addr else f"{self.addr}:0"
        self.p = subprocess.Popen([HTTPD, "--kernel", "--listen", listen, *self.args],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = procs.readline(self.p.stderr, 10)
        except TimeoutError:
            line = ""
        m = re.search(r"serving http://\[?[^\]]*\]?:(\d+)/", line)
        if not m:
            procs.stop(self.p)
            raise RuntimeError(f"userstack-httpd did not start: {line}{procs.available(self.p.stderr)}")
        self.port = int(m.group(1))
        return self

    @property
    def address(self) -> tuple[str, int]:
        return (self.addr, self.port)

    @property
    def url(self) -> str:
        host = f"[{self.addr}]" if ":" in self.addr else self.addr
        return f"http://{host}:{self.port}"

    def conn(self, timeout: float = 5.0) -> Conn:
        return Conn(self.address, timeout)

    def report(self) -> dict:
        """Counters now (SIGUSR1)."""
        self.p.send_signal(signal.SIGUSR1)
        return json.loads(procs.readline(self.p.stdout, 10))

    def stop(self) -> dict:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        out, err = self.p.communicate(timeout=10)
        assert self.p.returncode == 0, err
        self.stats = json.loads(out.strip().splitlines()[-1])
        return self.stats

    def __exit__(self, *exc):
        if self.p and self.p.poll() is None:
            with contextlib.suppress(Exception):
                self.stop()
        if self.p and self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def wait_for(pred, timeout: float = 5.0, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)
