"""xdpstack bench rx: UDP datagrams per second delivered into a sink on a user-level stack, against
the kernel's own UDP receive path, in one run on one throwaway testbed.

    generator   the demux attached to the dut veth, run in live-frames mode (BPF_PROG_TEST_RUN with
                BPF_F_TEST_XDP_LIVE_FRAMES on the dut device): every verdict is executed for real,
                on CPU 0, exactly as for frames arriving from the wire.
    user stack  `xdpstack run --udp PORT -- userstack-echo --sink` (as nobody, on CPU 1): frames take
                demux -> port devmap -> veth -> xdp_port_rx -> AF_XDP socket -> the stack's C loop.
    kernel      the same port left unclaimed, so the demux passes the frames (XDP_PASS) to the kernel,
                where `kernel-udp-sink` (recvmmsg, 64 per call, on CPU 1) drains a UDP socket.

For each payload size and path two figures: the throughput at the generator's full speed (delivered
datagrams per second), and the zero-loss rate (RFC 2544: the highest paced rate at which every
datagram arrives, found by binary search). Ratios compare the user stack with the kernel.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import struct
import subprocess
import sys
import time
from dataclasses import dataclass

from xdpstack import libbpf, loader, netlink, paths, procs, testrun
from xdpstack.testbed import Testbed

PORT = 9000
PAYLOADS = (64, 1472)
GEN_CPU, SINK_CPU = 0, 1


def _bin(name: str) -> str:
    return os.path.join(os.path.dirname(sys.executable), name)


# ---- frames -------------------------------------------------------------------------------------

def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def udp4_frame(src_mac: str, dst_mac: str, src: str, dst: str, sport: int, dport: int,
               payload: bytes) -> bytes:
    """Ethernet + IPv4 + UDP with correct checksums (the stack verifies them)."""
    import ipaddress
    s, d = ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed
    ulen = 8 + len(payload)
    udp = struct.pack("!HHHH", sport, dport, ulen, 0) + payload
    c = _csum(s + d + struct.pack("!BBH", 0, 17, ulen) + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", c) + udp[8:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + ulen, 0, 0x4000, 64, 17, 0, s, d)
    ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
    eth = bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex(src_mac.replace(":", "")) + b"\x08\x00"
    return eth + ip + udp


# ---- generator and sinks ------------------------------------------------------------------------

class Generator:
    """Live frames through the attached demux, optionally paced, on GEN_CPU."""

    def __init__(self, tb: Testbed, frame: bytes):
        self.tb, self.frame = tb, frame
        self.prog_fd = libbpf.obj_get(str(paths.pin_dir(tb.dut.ifname) / "prog"))
        self.netns = netlink.netns_path(tb.dut.ns)

    def send(self, seconds: float, rate: float | None = None) -> tuple[int, float]:
        """Send for `seconds` at `rate` frames/s (None: as fast as the CPU allows); (sent, elapsed)."""
        chunk = 65536 if rate is None else int(min(8192, max(64, rate * 0.0005)))
        old = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {GEN_CPU})
        sent = 0
        try:
            with testrun.in_netns(self.netns):
                t0 = time.perf_counter()
                while True:
                    now = time.perf_counter() - t0
                    if now >= seconds:
                        break
                    if rate is not None and sent >= now * rate:
                        continue                       # ahead of the pace: spin (this is our CPU)
                    testrun.run(self.prog_fd, self.frame, chunk, ifindex=self.tb.dut.ifindex, live=True)
                    sent += chunk
                elapsed = time.perf_counter() - t0
        finally:
            os.sched_setaffinity(0, old)
        return sent, elapsed

    def close(self):
        os.close(self.prog_fd)


class Sink:
    """A sink process printing JSON counts on SIGUSR1 (userstack-echo --sink, kernel-udp-sink).
    Its stdout is read only through procs.readline (with a deadline: a stuck sink fails the run)."""

    def __init__(self, proc: subprocess.Popen, pid_of_sink):
        self.proc, self._pid = proc, pid_of_sink

    def count(self, timeout: float = 5.0) -> int:
        os.kill(self._pid(), signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = procs.readline(self.proc.stdout, max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise RuntimeError(f"the sink did not report its count within {timeout:g} s") from None
            if not line:
                raise RuntimeError("the sink exited")
            d = json.loads(line)
            if "datagrams" in d:
                return d["datagrams"]

    def stop(self):
        procs.stop(self.proc)


def user_sink(tb: Testbed) -> Sink:
    argv = ["taskset", "-c", str(SINK_CPU), _bin("xdpstack"), "--netns", tb.dut.ns, "run", tb.dut.ifname,
            "--udp", str(PORT), "--user", "nobody", "--name", "rx-sink", "--",
            "userstack-echo", "--sink", "--quiet"]
    # taskset execs the launcher in place: p.pid is the launcher's, userstack-echo is its child.
    p = tb.track(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))

    def app_pid() -> int:               # not the launcher's own forks (its reachability check)
        kids = procs.exec_children(p.pid)
        if not kids:
            raise RuntimeError("userstack-echo is not running")
        return kids[0]

    try:
        deadline = time.monotonic() + 10
        while True:                              # the stack is up once it counts (0 datagrams)
            with contextlib.suppress(RuntimeError, OSError):
                app_pid()
                time.sleep(0.3)                  # its SIGUSR1 handler is in place (else USR1 kills it)
                s = Sink(p, app_pid)
                s.count()
                return s
            if p.poll() is not None:
                raise RuntimeError(f"the user-stack sink did not start (launcher exit {p.returncode}): "
                                   f"{procs.available(p.stderr)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the user-stack sink did not start within 10 s: "
                                   f"{procs.available(p.stderr)}")
            time.sleep(0.1)
    except BaseException:
        procs.stop(p)                            # the launcher unregisters its stack and claims
        raise


def kernel_sink(tb: Testbed) -> Sink:
    # `ip netns exec` and taskset exec in place: the Popen pid is the sink's own.
    p = tb.track(tb.dut.popen(["taskset", "-c", str(SINK_CPU), _bin("kernel-udp-sink"), str(PORT)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        ready = json.loads(procs.readline(p.stdout, 10) or "{}").get("ready") is True
    except (TimeoutError, ValueError):
        ready = False
    if not ready:
        procs.stop(p)
        raise RuntimeError(f"kernel-udp-sink did not start: {procs.available(p.stderr)}")
    return Sink(p, lambda: p.pid)


# ---- measurement --------------------------------------------------------------------------------

@dataclass
class Trial:
    offered: float      # frames/s the generator achieved
    delivered: float    # datagrams/s the sink counted
    sent: int
    received: int

    @property
    def lost(self) -> int:
        return max(0, self.sent - self.received)


def trial(gen: Generator, sink: Sink, seconds: float, rate: float | None = None) -> Trial:
    before = sink.count()
    sent, elapsed = gen.send(seconds, rate)
    time.sleep(0.15)                                  # the last frames drain through the rings
    received = sink.count() - before
    return Trial(sent / elapsed, received / elapsed, sent, received)


def zero_loss_rate(gen: Generator, sink: Sink, full: Trial, seconds: float, steps: int) -> float:
    """The highest paced rate (frames/s) at which every frame arrived (binary search below `full`)."""
    if full.lost == 0:
        return full.offered
    lo, hi = 0.0, full.offered
    for _ in range(steps):
        mid = (lo + hi) / 2
        t = trial(gen, sink, seconds, mid)
        if t.lost == 0 and t.received > 0:
            lo = max(lo, t.offered)
        else:
            hi = mid
    return lo


def measure(tb: Testbed, which: str, payload: int, seconds: float, steps: int) -> dict:
    frame = udp4_frame(tb.peer.mac, tb.dut.mac, tb.peer.addr4, tb.dut.addr4, 40000, PORT, b"x" * payload)
    gen = Generator(tb, frame)
    try:
        sink = user_sink(tb) if which == "user" else kernel_sink(tb)
        try:
            trial(gen, sink, min(seconds, 0.3))       # warm-up: caches, neighbour, rings
            full = trial(gen, sink, seconds)
            zl = zero_loss_rate(gen, sink, full, seconds, steps)
        finally:
            sink.stop()
    finally:
        gen.close()
    return {"payload": payload, "frame_bytes": len(frame),
            "offered_mpps": round(full.offered / 1e6, 3), "delivered_mpps": round(full.delivered / 1e6, 3),
            "loss_at_full_speed": round(full.lost / max(full.sent, 1), 4),
            "zero_loss_mpps": round(zl / 1e6, 3), "gbit_s_at_zero_loss": round(zl * payload * 8 / 1e9, 2)}


def run(seconds: float = 1.0, steps: int = 7, payloads: tuple[int, ...] = PAYLOADS) -> dict:
    out: dict = {"generator": "live-frames BPF_PROG_TEST_RUN of the attached demux on the dut veth, CPU 0",
                 "sinks": "userstack-echo --sink (user stack) / kernel-udp-sink recvmmsg (kernel), CPU 1",
                 "seconds_per_trial": seconds, "results": []}
    with Testbed() as tb, netlink.netns(tb.dut.ns):
        loader.attach(tb.dut.ifname)
        try:
            for payload in payloads:
                user = measure(tb, "user", payload, seconds, steps)
                kernel = measure(tb, "kernel", payload, seconds, steps)
                out["results"].append({
                    "payload": payload, "user_stack": user, "kernel": kernel,
                    "zero_loss_ratio_vs_kernel": _ratio(user["zero_loss_mpps"], kernel["zero_loss_mpps"]),
                    "throughput_ratio_vs_kernel": _ratio(user["delivered_mpps"], kernel["delivered_mpps"])})
        finally:
            loader.detach(tb.dut.ifname, force=True)
    out["target"] = "user stack >= 5x the kernel, with no loss at that rate"
    out["target_met"] = all(r["zero_loss_ratio_vs_kernel"] >= 5 for r in out["results"])
    return out


def _ratio(a: float, b: float) -> float:
    return round(a / b, 2) if b > 0 else float("inf")


def format_text(r: dict) -> str:
    lines = [f"UDP receive, {r['seconds_per_trial']} s trials; generator: {r['generator']}",
             f"sinks: {r['sinks']}",
             f"{'payload':>8} {'path':>11} {'offered':>10} {'delivered':>10} {'loss':>7} {'zero-loss':>10}",
             ]
    for res in r["results"]:
        for name, key in (("user stack", "user_stack"), ("kernel", "kernel")):
            m = res[key]
            lines.append(f"{res['payload']:>7}B {name:>11} {m['offered_mpps']:>7.3f} Mpps "
                         f"{m['delivered_mpps']:>6.3f} Mpps {m['loss_at_full_speed']:>6.1%} "
                         f"{m['zero_loss_mpps']:>6.3f} Mpps")
        lines.append(f"{'':>8} ratio vs kernel: zero-loss {res['zero_loss_ratio_vs_kernel']:.2f}x, "
                     f"full speed {res['throughput_ratio_vs_kernel']:.2f}x")
    lines.append(f"target: {r['target']}: {'met' if r['target_met'] else 'NOT met'}")
    return "\n".join(lines)
