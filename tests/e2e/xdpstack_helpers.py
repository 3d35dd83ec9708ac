"""Helpers for the control-plane tests: the CLI in-process (click's CliRunner) and as the installed
executable, bpftool, ping (this machine has no ping binary), and checks that nothing is left behind.
The fixtures that use them are in xdpstack_fixtures.py."""
from __future__ import annotations

import contextlib
import json
import os
import pwd
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from tests.conftest import host_has_xdp_on
from tests.fixtures.testbed import Testbed
from xdpstack import netlink, paths
from xdpstack.cli import cli

XDPSTACK = str(Path(sys.executable).with_name("xdpstack"))


@contextlib.contextmanager
def in_ns(tb: Testbed):
    """Run the block inside the dut namespace (in this thread, like --netns)."""
    with netlink.netns(tb.dut.ns):
        yield


class CliResult:
    def __init__(self, code: int, out: str, err: str):
        self.code, self.out, self.err = code, out, err

    def json(self):
        return json.loads(self.out)

    def __repr__(self):
        return f"CliResult(code={self.code}, out={self.out[:400]!r}, err={self.err[:400]!r})"


def invoke(*args: str) -> CliResult:
    """The CLI in this process (CliRunner): exit code, stdout, stderr."""
    r = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return CliResult(r.exit_code, r.stdout, r.stderr)


def run_exe(*args: str, user: str | None = None, timeout: float = 120, env: dict | None = None) -> CliResult:
    """The installed `xdpstack` executable in a subprocess (optionally as another user)."""
    argv = [XDPSTACK, *args]
    if user:
        pw = pwd.getpwnam(user)
        argv = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups", *argv]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, **(env or {})})
    return CliResult(r.returncode, r.stdout, r.stderr)


def bpftool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bpftool", *args], capture_output=True, text=True, timeout=120)


def _icmp_checksum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def ping(ns: str, addr: str, count: int = 3, timeout: float = 2.0) -> int:
    """ICMP/ICMPv6 echo from namespace `ns` to addr (raw sockets, in-process: this machine has no
    ping binary); the number of replies received."""
    v6 = ":" in addr
    ident = os.getpid() & 0xFFFF
    got = 0
    with netlink.netns(ns):
        s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_RAW,
                          socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP)
    with s:
        s.settimeout(timeout)
        for seq in range(1, count + 1):
            body = struct.pack("!HH", ident, seq) + b"xdpstack-ping" * 4
            head = struct.pack("!BBH", 128 if v6 else 8, 0, 0)
            if not v6:                                    # the kernel sums ICMPv6 itself
                head = struct.pack("!BBH", 8, 0, _icmp_checksum(head + body))
            s.sendto(head + body, (addr, 0))
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    pkt = s.recv(2048)
                except TimeoutError:
                    break
                icmp = pkt if v6 else pkt[(pkt[0] & 0x0F) * 4:]
                if icmp[0] == (129 if v6 else 0) and struct.unpack("!HH", icmp[4:8]) == (ident, seq):
                    got += 1
                    break
    return got


def xdp_prog_id(tb: Testbed, ifname: str | None = None) -> int | None:
    """The XDP program id on an interface of the dut, as iproute2 reports it."""
    out = tb.dut.run(["ip", "-j", "-d", "link", "show", "dev", ifname or tb.dut.ifname]).stdout
    xdp = json.loads(out)[0].get("xdp")
    return xdp["prog"]["id"] if xdp and "prog" in xdp else None


def pin_dir(tb: Testbed, ifname: str | None = None) -> Path:
    """Where the pins of a dut interface live: computed inside the dut namespace, as xdpstack does."""
    with in_ns(tb):
        return paths.pin_dir(ifname or tb.dut.ifname)


def state_dirs(tb: Testbed) -> tuple[Path, Path]:
    """The dut namespace's directories: (<bpffs root>/netns-<inode>, /run/xdpstack/netns-<inode>)."""
    with in_ns(tb):
        return paths.netns_dir(), paths.run_dir()


def assert_clean(tb: Testbed, ifname: str | None = None):
    """No pins and no XDP program left for the interface; nothing on the host's own interfaces."""
    ifname = ifname or tb.dut.ifname
    d = pin_dir(tb, ifname)
    assert not d.exists(), f"pins left at {d}"
    assert xdp_prog_id(tb, ifname) is None, f"XDP program left on {ifname}"
    assert not host_has_xdp_on("eth0")


def assert_no_state(tb: Testbed):
    """Nothing of the dut namespace's is left: no netns directory in bpffs, none in /run/xdpstack."""
    for d in state_dirs(tb):
        assert not d.exists(), f"{d} is left: {sorted(p.name for p in d.iterdir())}"


