"""What the benchmarks share: a throwaway testbed with the demux attached under a
private bpffs root, applications on the user stack through the launcher, kernel programs in
either namespace, a bare stack port for the raw AF_XDP loops (tools/xsk-*), and the last JSON
line a tool printed.

Everything made here is undone on every exit path: processes stopped, stacks closed, the demux
detached, pins and the private bpffs root removed, the namespaces deleted.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from xdpstack import libbpf, loader, netlink, ports, registry, testrun
from xdpstack.errors import NotRoot, XdpstackError
from xdpstack.testbed import Testbed


class BenchError(XdpstackError):
    pass


def venv_bin(name: str) -> str:
    """A C app built by `make setup` (userstack-httpd, userstack-tcpperf) from the venv's bin."""
    p = Path(sys.executable).parent / name
    if not p.exists():
        raise BenchError(f"{p} is missing: build it with `make setup` (or `make -C userstack/csrc "
                         f"install PREFIX=$PWD/.venv`)")
    return str(p)


def require(*tools: str) -> None:
    if os.geteuid() != 0:
        raise NotRoot("benchmarks build network namespaces and attach XDP: run as root")
    missing = [t for t in tools if not shutil.which(t, path=os.environ.get("PATH", "") + ":/usr/sbin")]
    if missing:
        raise BenchError(f"{', '.join(missing)} not found: `make setup` installs Debian's packages")


def cpus_for_bench(server_cpu: int | None, client_cpu: int | None) -> tuple[int, int]:
    """Server on the highest allowed CPU, the client (wrk, iperf3) on another."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        raise BenchError("the benchmarks pin server and client to different CPUs: 2 CPUs needed")
    s = allowed[-1] if server_cpu is None else server_cpu
    c = next(x for x in allowed if x != s) if client_cpu is None else client_cpu
    if s == c:
        raise BenchError("--server-cpu and --client-cpu must differ")
    return s, c


# ---- numbers ---------------------------------------------------------------------------------------

def median(xs) -> float:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else 0.0


def median_ratio(a: list[float], b: list[float]) -> float:
    """Median over rounds of a/b, each round against its own baseline."""
    rs = [x / y for x, y in zip(a, b, strict=True) if x is not None and y]
    return round(statistics.median(rs), 3) if rs else 0.0


# ---- the testbed -------------------------------------------------------------------------------------

class Bed:
    """A testbed with the demux attached on the dut veth, under a private bpffs root."""

    def __init__(self, attach: bool = True):
        self.attach = attach
        self.undo = contextlib.ExitStack()
        self.demux_on: set[str] = set()
        self.tb: Testbed | None = None
        self.bpffs = f"/sys/fs/bpf/xdpstack-bench-{os.getpid()}"

    def __enter__(self) -> Bed:
        try:
            self._up()
        except BaseException:
            self.undo.close()
            raise
        return self

    def _up(self):
        old = os.environ.get("XDPSTACK_BPFFS")
        os.environ["XDPSTACK_BPFFS"] = self.bpffs

        def restore():
            shutil.rmtree(self.bpffs, ignore_errors=True)
            if old is None:
                os.environ.pop("XDPSTACK_BPFFS", None)
            else:
                os.environ["XDPSTACK_BPFFS"] = old
        self.undo.callback(restore)
        self.tb = Testbed()
        self.tb.up()
        self.undo.callback(self.tb.down)
        self.undo.callback(self._cleanup_xdp)
        if self.attach:
            self.attach_demux()

    # -- XDP on the dut veth (and on the peer's, for user-level stacks on both ends) -----------------
    def host(self, name: str):
        return self.tb.dut if name == "dut" else self.tb.peer

    def attach_demux(self, host: str = "dut"):
        h = self.host(host)
        with netlink.netns(h.ns):
            loader.attach(h.ifname)
        self.demux_on.add(host)

    def detach_demux(self, host: str = "dut"):
        h = self.host(host)
        with netlink.netns(h.ns):
            loader.detach(h.ifname)
        self.demux_on.discard(host)

    @property
    def demux_attached(self) -> bool:
        return "dut" in self.demux_on

    def attach_trivial(self):
        """A `return XDP_PASS;` program on the dut veth (native mode): the price of any XDP program."""
        with netlink.netns(self.tb.dut.ns):
            fd = testrun.load_trivial()
            try:
                libbpf.xdp_attach(self.tb.dut.ifindex, fd, libbpf.XDP_FLAGS_DRV_MODE)
            finally:
                os.close(fd)
        self.trivial_attached = True

    def detach_trivial(self):
        with netlink.netns(self.tb.dut.ns):
            libbpf.xdp_attach(self.tb.dut.ifindex, -1, libbpf.XDP_FLAGS_DRV_MODE)
        self.trivial_attached = False

    trivial_attached = False

    def _cleanup_xdp(self):
        if self.trivial_attached:
            with contextlib.suppress(Exception):
                self.detach_trivial()
        for host in list(self.demux_on):
            h = self.host(host)
            with netlink.netns(h.ns), contextlib.suppress(Exception):
                loader.detach(h.ifname, force=True)

    def __exit__(self, *exc):
        self.undo.close()

    # -- processes -----------------------------------------------------------------------------------
    def launch(self, cmd: list[str], tcp: list[int], env: dict[str, str] | None = None, host: str = "dut",
               direct: bool = False):
        """CMD on its own user-level stack on the host's veth (what `xdpstack --netns NS run` does,
        in-process; the demux must be attached there; direct: `run --direct`); stopped (and
        everything the launcher built undone) when the bed goes down, or earlier with close_launch()."""
        from xdpstack.launcher import Launch, RunSpec
        h = self.host(host)
        spec = RunSpec(ifname=h.ifname, cmd=cmd, tcp=tcp, env=env or {}, direct=direct)
        with netlink.netns(h.ns):
            launch = Launch(spec).start()
        launch.bench_host = host
        self.undo.callback(self.close_launch, launch)
        return launch

    def close_launch(self, launch):
        """Stop the application and undo its stack now (again at the end: a no-op)."""
        with netlink.netns(self.host(getattr(launch, "bench_host", "dut")).ns):
            launch.close()

    def popen(self, host: str, cmd: list[str], **kw) -> subprocess.Popen:
        """A kernel program in the dut or peer namespace (killed when the bed goes down)."""
        h = self.tb.dut if host == "dut" else self.tb.peer
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        p = h.popen(cmd, text=True, **kw)
        self.undo.callback(stop_process, p)
        return p

    def run(self, host: str, cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
        h = self.tb.dut if host == "dut" else self.tb.peer
        return h.run(cmd, check=False, timeout=timeout)


def stop_process(p: subprocess.Popen, grace: float = 2.0) -> tuple[str, str]:
    """SIGTERM, then SIGKILL; returns what it printed."""
    if p.poll() is None:
        p.terminate()
    try:
        out, err = p.communicate(timeout=grace)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate(timeout=5)
    return out or "", err or ""


def wait_ready(check, timeout: float = 10.0, what: str = "server") -> None:
    """Poll check() (truthy when ready) for up to timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise BenchError(f"the {what} did not come up within {timeout:.0f} s")


def json_line(text: str) -> dict:
    """The last JSON line a tool printed (xsk-tx, xsk-rx, userstack-tcpperf)."""
    line = next((ln for ln in reversed(text.splitlines()) if ln.startswith("{")), None)
    if line is None:
        raise BenchError(f"no result line in {text[-300:]!r}")
    return json.loads(line)


@contextlib.contextmanager
def raw_port(tb: Testbed, udp_port: int, name: str):
    """What the launcher builds for a stack before it binds the stack's sockets: a registered
    stack, one UDP claim (udp_port on the dut address: the demux sends its frames to the port, and
    the egress guard lets the port's frames out) and the port pair with its programs. Yields
    (stack record, inner end): a raw AF_XDP loop binds its own socket there (xsk-tx, xsk-rx)."""
    from xdpstack.launcher import TARGET_PORT
    h = tb.dut
    undo = contextlib.ExitStack()

    def later(fn, *args):
        def in_ns():
            with netlink.netns(h.ns):
                fn(*args)
        undo.callback(in_ns)
    with undo:
        with netlink.netns(h.ns):
            rec = registry.register_stack(h.ifname, name, uid=0, target=TARGET_PORT)
            later(registry.unregister_stack, h.ifname, rec.id)
            claims = registry.claim_all(h.ifname, [("udp", h.addr4, udp_port)], rec, 0, 0, target=TARGET_PORT)
            later(claims.release)
            port = ports.create(h.ifname, h.ifindex, rec.id, 1, tb.mtu)
            later(ports.remove, h.ifname, rec.id, port)
            rec.port_ifindex = port.outer_index
            registry.update_stack(h.ifname, rec)
        yield rec, port.inner


@contextlib.contextmanager
def direct_stack(tb: Testbed, udp_port: int, name: str):
    """What the launcher builds for a direct stack (`run --direct`) before it binds its sockets: a
    registered stack and one UDP claim (udp_port on the dut address), both with the XSK target, and
    no port. Yields the stack record: a raw AF_XDP loop binds the dut veth's queue 0 and puts its
    socket in the record's first XSK slot (xsk-rx --xsks-fd --slot)."""
    from xdpstack.launcher import TARGET_XSK
    h = tb.dut
    with netlink.netns(h.ns):
        rec = registry.register_stack(h.ifname, name, uid=0, target=TARGET_XSK)
    try:
        with netlink.netns(h.ns):
            claims = registry.claim_all(h.ifname, [("udp", h.addr4, udp_port)], rec, 0, 0, target=TARGET_XSK)
        try:
            yield rec
        finally:
            with netlink.netns(h.ns):
                claims.release()
    finally:
        with netlink.netns(h.ns):
            registry.unregister_stack(h.ifname, rec.id)
