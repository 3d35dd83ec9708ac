"""xdpstack bench rx: UDP datagrams into a sink on a user-level stack against the kernel's own UDP
receive path, in one run on one throwaway testbed.

    generator   the demux attached to the dut veth, run in live-frames mode (BPF_PROG_TEST_RUN with
                BPF_F_TEST_XDP_LIVE_FRAMES on the dut device): every verdict is executed for real,
                on CPU 0, exactly as for frames arriving from the wire.
    user stack  `xdpstack run --udp PORT -- userstack-echo --sink` (as nobody, on CPU 1): frames take
                demux -> port devmap -> veth -> xdp_port_rx -> AF_XDP socket -> the stack's C loop.
    kernel      the same port left unclaimed, so the demux passes the frames (XDP_PASS) to the kernel,
                where `kernel-udp-sink` (recvmmsg, 64 per call, on CPU 1) drains a UDP socket.

What is fair, and why:
- CPU per datagram over BOTH cores. The kernel's whole UDP receive runs on the generator's CPU
  (live frames are received where they are made), so a rate alone gives the kernel a second CPU
  for free. Each path is run once more at one paced rate both sustain (0.8x the lower of the two
  zero-loss rates) with the generator sleeping when ahead of its pace, and the busy time of both
  cores (/proc/stat) is divided by the datagrams delivered. The generator's own per-frame work
  (frame set-up, the demux) is charged to both paths: it stands in for a NIC driver's receive.
- Equal buffering, in datagrams. A ring of 2048 descriptors against a 16 MB socket buffer compares
  buffer depth under the VM's scheduling jitter, not receive paths. Each path's depth is measured
  the same way: the sink is stopped (SIGSTOP), 20,000 frames are sent, the sink resumed, and what
  it then receives is what the path held. The kernel socket's SO_RCVBUF is then scaled until it
  holds as many datagrams as the user stack's ring, and the zero-loss search runs with it.
- Zero loss and a tolerance. The zero-loss rate (RFC 2544: the highest paced rate at which every
  datagram arrives, by binary search below the full-speed rate) is strict; beside it, the highest
  rate tried with at most 0.1 % loss, as later RFC 2544 practice allows.
- Where loss went: for the full-speed trial and the first lossy step of each search, the deltas of
  the demux's counters, the veths' `ethtool -S` counters (XDP drops and redirect errors: the user
  stack's full ring shows here) and the kernel's UDP receive errors (/proc/net/snmp).
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
from pathlib import Path

from xdpstack import counters, libbpf, loader, netlink, paths, procs, testrun
from xdpstack.bench import Progress, met, plot, say, target
from xdpstack.bench.cpu import Meter, cpu_ratio
from xdpstack.testbed import Testbed

PORT = 9000
LOSS_TOLERANCE = 0.001         # beside strict zero loss: at most 0.1 % lost
CAPACITY_FRAMES = 20_000       # frames sent at a stopped sink to measure what a path holds
TARGET_CPU_RATIO = 3.0
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
    """Live frames through the dut's XDP program (the attached demux unless prog_fd is given),
    optionally paced, on GEN_CPU."""

    def __init__(self, tb: Testbed, frame: bytes, prog_fd: int | None = None):
        self.tb, self.frame = tb, frame
        if prog_fd is None:
            prog_fd = libbpf.obj_get(str(paths.pin_dir(tb.dut.ifname) / "prog"))
        self.prog_fd = prog_fd
        self.netns = netlink.netns_path(tb.dut.ns)

    def send(self, seconds: float, rate: float | None = None) -> tuple[int, float]:
        """Send for `seconds` at `rate` frames/s (None: as fast as the CPU allows); (sent, elapsed)."""
        chunk = 65536 if rate is None else int(min(8192, max(64, rate * 0.002)))     # ~2 ms of frames
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
                        time.sleep(min(sent / rate - now, seconds - now))   # ahead: idle, as a NIC is
                        continue
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
        self.proc, self.pid = proc, pid_of_sink         # pid(): the sink's process now

    def count(self, timeout: float = 5.0) -> int:
        os.kill(self.pid(), signal.SIGUSR1)
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


def user_sink(tb: Testbed, direct: bool = False) -> Sink:
    """userstack-echo --sink on its own stack: isolated (its port) or, with direct, `run --direct`."""
    argv = ["taskset", "-c", str(SINK_CPU), _bin("xdpstack"), "--netns", tb.dut.ns, "run", tb.dut.ifname,
            "--udp", str(PORT), "--user", "nobody", "--name", "rx-sink", *(["--direct"] if direct else []),
            "--", "userstack-echo", "--sink", "--quiet"]
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


def kernel_sink(tb: Testbed, rcvbuf: int) -> Sink:
    # `ip netns exec` and taskset exec in place: the Popen pid is the sink's own.
    p = tb.track(tb.dut.popen(["taskset", "-c", str(SINK_CPU), _bin("kernel-udp-sink"), str(PORT),
                               "--rcvbuf", str(rcvbuf)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True))
    try:
        ready = json.loads(procs.readline(p.stdout, 10) or "{}").get("ready") is True
    except (TimeoutError, ValueError):
        ready = False
    if not ready:
        procs.stop(p)
        raise RuntimeError(f"kernel-udp-sink did not start: {procs.available(p.stderr)}")
    return Sink(p, lambda: p.pid)


# ---- where frames go -----------------------------------------------------------------------------

def drop_counters(tb: Testbed) -> dict[str, int]:
    """Every counter a lost datagram can show up in (read in the dut namespace, which this thread
    is in): the demux's, each veth's `ethtool -S` (the dut veth, the stacks' ports), the kernel's UDP."""
    out = {f"demux.{k}": v for k, v in counters.snapshot(tb.dut.ifname).totals.items()}
    links = json.loads(subprocess.run(["ip", "-j", "link", "show", "type", "veth"], capture_output=True,
                                      text=True, timeout=10).stdout or "[]")
    for link in links:
        r = subprocess.run(["ethtool", "-S", link["ifname"]], capture_output=True, text=True, timeout=10)
        for line in r.stdout.splitlines()[1:]:
            k, _, v = line.strip().partition(":")
            if v.strip().isdigit() and ("drop" in k or "err" in k):
                out[f"{link['ifname']}.{k}"] = int(v)
    with open("/proc/net/snmp") as f:
        udp = [ln.split()[1:] for ln in f if ln.startswith("Udp:")]
    out.update({f"udp.{k}": int(v) for k, v in zip(*udp, strict=True) if "Err" in k})
    return out


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


# ---- measurement --------------------------------------------------------------------------------

@dataclass
class Trial:
    offered: float      # frames/s the generator achieved
    delivered: float    # datagrams/s the sink counted
    sent: int
    received: int
    drops: dict | None = None

    @property
    def lost(self) -> int:
        return max(0, self.sent - self.received)

    @property
    def loss(self) -> float:
        return self.lost / max(self.sent, 1)


def trial(gen: Generator, sink: Sink, seconds: float, rate: float | None = None,
          tb: Testbed | None = None) -> Trial:
    """One trial; with tb, the counters that moved (where lost frames went)."""
    before, c0 = sink.count(), (drop_counters(tb) if tb else None)
    sent, elapsed = gen.send(seconds, rate)
    time.sleep(0.15)                                  # the last frames drain through the rings
    received = sink.count() - before
    drops = delta(c0, drop_counters(tb)) if tb else None
    return Trial(sent / elapsed, received / elapsed, sent, received, drops)


def held(gen: Generator, sink: Sink, frames: int = CAPACITY_FRAMES, rate: float = 200_000) -> int:
    """How many datagrams the path holds while its reader is stopped (the same probe for both)."""
    before = sink.count()
    pid = sink.pid()
    os.kill(pid, signal.SIGSTOP)
    try:
        gen.send(frames / rate, rate)
        time.sleep(0.2)
    finally:
        os.kill(pid, signal.SIGCONT)
    time.sleep(0.5)
    return sink.count() - before


def search(gen: Generator, sink: Sink, full: Trial, seconds: float, steps: int, tb: Testbed) -> dict:
    """Binary search below the full-speed rate: the highest rate with no loss, the highest with at
    most LOSS_TOLERANCE, and the counters of the first lossy step."""
    zero = full.offered if full.lost == 0 else 0.0
    tol = full.offered if full.loss <= LOSS_TOLERANCE else 0.0
    first_lossy = None
    lo, hi = 0.0, full.offered
    for _ in range(steps if full.lost else 0):
        mid = (lo + hi) / 2
        t = trial(gen, sink, seconds, mid, tb if first_lossy is None else None)
        if t.received and t.loss <= LOSS_TOLERANCE:
            tol = max(tol, t.offered)
        if t.lost == 0 and t.received > 0:
            lo = zero = max(zero, t.offered)
        else:
            hi = mid
            if first_lossy is None:
                first_lossy = {"rate_mpps": round(t.offered / 1e6, 3), "loss": round(t.loss, 5),
                               "lost": t.lost, "counters": t.drops}
    return {"zero_loss": zero, "tolerance": tol, "first_lossy_step": first_lossy}


def start_sink(tb: Testbed, which: str, rcvbuf: int) -> Sink:
    """which: user (an isolated stack), direct (a direct stack) or kernel."""
    if which in ("user", "direct"):
        return user_sink(tb, direct=which == "direct")
    return kernel_sink(tb, rcvbuf)


def measure(tb: Testbed, which: str, frame: bytes, seconds: float, steps: int, rcvbuf: int) -> dict:
    """Full speed, then the zero-loss search, one sink (the kernel's with rcvbuf bytes)."""
    gen = Generator(tb, frame)
    try:
        sink = start_sink(tb, which, rcvbuf)
        try:
            trial(gen, sink, min(seconds, 0.3))       # warm-up: caches, neighbour, rings
            full = trial(gen, sink, seconds, tb=tb)
            found = search(gen, sink, full, seconds, steps, tb)
        finally:
            sink.stop()
    finally:
        gen.close()
    return {"offered_mpps": round(full.offered / 1e6, 3), "delivered_mpps": round(full.delivered / 1e6, 3),
            "loss_at_full_speed": round(full.loss, 4), "full_speed_counters": full.drops,
            "zero_loss_mpps": round(found["zero_loss"] / 1e6, 3),
            "tolerance_mpps": round(found["tolerance"] / 1e6, 3),
            "first_lossy_step": found["first_lossy_step"]}


def cpu_trial(tb: Testbed, which: str, frame: bytes, seconds: float, rate: float, rcvbuf: int) -> dict:
    """Both cores' busy time per delivered datagram at a paced rate (the generator idles between
    chunks)."""
    gen = Generator(tb, frame)
    try:
        sink = start_sink(tb, which, rcvbuf)
        try:
            trial(gen, sink, min(seconds, 0.3), rate)
            before = sink.count()
            meter = Meter(roles={"generator": GEN_CPU, "sink": SINK_CPU}).start()
            sent, _ = gen.send(seconds, rate)
            time.sleep(0.15)
            usage = meter.stop()
            got = sink.count() - before
        finally:
            sink.stop()
    finally:
        gen.close()
    return {"rate_mpps": round(rate / 1e6, 3), "sent": sent, "delivered": got,
            **usage.fields(got, "datagram")}


def calibrate(tb: Testbed, frame: bytes, want: int) -> dict:
    """An SO_RCVBUF for the kernel sink that holds `want` datagrams, as measured by held()."""
    rcvbuf, tries = 1 << 20, []
    for _ in range(3):
        gen = Generator(tb, frame)
        try:
            sink = kernel_sink(tb, rcvbuf)
            try:
                trial(gen, sink, 0.2)
                got = held(gen, sink)
            finally:
                sink.stop()
        finally:
            gen.close()
        tries.append({"rcvbuf": rcvbuf, "datagrams": got})
        if got and abs(got - want) <= want * 0.05:
            break
        rcvbuf = max(4096, int(rcvbuf * want / max(got, 1)))
    best = min(tries, key=lambda t: abs(t["datagrams"] - want))
    return {"rcvbuf": best["rcvbuf"], "datagrams": best["datagrams"], "tries": tries}


def user_capacity(tb: Testbed, frame: bytes) -> int:
    gen = Generator(tb, frame)
    try:
        sink = user_sink(tb)
        try:
            trial(gen, sink, 0.2)
            return held(gen, sink)
        finally:
            sink.stop()
    finally:
        gen.close()


def run(seconds: float = 1.0, steps: int = 7, payloads: tuple[int, ...] = PAYLOADS,
        progress: Progress | None = None) -> dict:
    out: dict = {"generator": "live-frames BPF_PROG_TEST_RUN of the attached demux on the dut veth, CPU 0",
                 "sinks": "userstack-echo --sink (user stack) / kernel-udp-sink recvmmsg (kernel), CPU 1",
                 "seconds_per_trial": seconds, "loss_tolerance": LOSS_TOLERANCE, "results": []}
    with Testbed() as tb, netlink.netns(tb.dut.ns):
        loader.attach(tb.dut.ifname)
        try:
            for payload in payloads:
                frame = udp4_frame(tb.peer.mac, tb.dut.mac, tb.peer.addr4, tb.dut.addr4, 40000, PORT,
                                   b"x" * payload)
                say(progress, f"rx {payload} B: buffering of each path")
                held_user = user_capacity(tb, frame)
                buf = calibrate(tb, frame, held_user)
                res: dict = {"payload": payload, "frame_bytes": len(frame),
                             "buffering": {"user_stack_datagrams": held_user, "kernel": buf}}
                for which, key in (("user", "user_stack"), ("kernel", "kernel")):
                    say(progress, f"rx {payload} B: {key} full speed and zero-loss search")
                    res[key] = measure(tb, which, frame, seconds, steps, buf["rcvbuf"])
                rate = 0.8 * min(res["user_stack"]["zero_loss_mpps"], res["kernel"]["zero_loss_mpps"]) * 1e6
                rate = rate or 100_000                 # a path that lost at every rate: a low pace
                for which, key in (("user", "user_stack"), ("kernel", "kernel")):
                    say(progress, f"rx {payload} B: {key} CPU at {rate / 1e6:.2f} Mpps")
                    res[key]["cpu"] = cpu_trial(tb, which, frame, max(seconds, 2.0), rate, buf["rcvbuf"])
                u, k = res["user_stack"], res["kernel"]
                res["zero_loss_ratio_vs_kernel"] = _ratio(u["zero_loss_mpps"], k["zero_loss_mpps"])
                res["tolerance_ratio_vs_kernel"] = _ratio(u["tolerance_mpps"], k["tolerance_mpps"])
                res["throughput_ratio_vs_kernel"] = _ratio(u["delivered_mpps"], k["delivered_mpps"])
                res["cpu_ratio_vs_kernel"] = cpu_ratio(k["cpu"]["cpu_ns_per_datagram"],
                                                       u["cpu"]["cpu_ns_per_datagram"])
                out["results"].append(res)
        finally:
            loader.detach(tb.dut.ifname, force=True)
    small = min(out["results"], key=lambda r: r["payload"])
    cr, zr = small["cpu_ratio_vs_kernel"], small["zero_loss_ratio_vs_kernel"]
    out["targets"] = {
        "rx_cpu_ratio_vs_kernel": target(
            cr, f">= {TARGET_CPU_RATIO:g}x less CPU per datagram than the kernel (both cores, "
                f"{small['payload']} B)", (cr or 0) >= TARGET_CPU_RATIO),
        "rx_zero_loss_ratio_vs_kernel": target(zr, f">= 1x the kernel's zero-loss rate with equal buffering "
                                               f"({small['payload']} B)", (zr or 0) >= 1.0),
    }
    return out


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b > 0 else None


def _x(v) -> str:
    return "-" if v is None else f"{v:.2f}x"


def format_text(r: dict) -> str:
    lines = [f"UDP receive, {r['seconds_per_trial']} s trials; generator: {r['generator']}",
             f"sinks: {r['sinks']}",
             f"{'payload':>8} {'path':>11} {'offered':>10} {'delivered':>10} {'loss':>7} {'zero-loss':>10}"
             f" {'<=0.1%':>10} {'CPU ns/dgram':>13}"]
    for res in r["results"]:
        for name, key in (("user stack", "user_stack"), ("kernel", "kernel")):
            m = res[key]
            lines.append(f"{res['payload']:>7}B {name:>11} {m['offered_mpps']:>5.3f} Mpps "
                         f"{m['delivered_mpps']:>5.3f} Mpps {m['loss_at_full_speed']:>6.1%} "
                         f"{m['zero_loss_mpps']:>5.3f} Mpps {m['tolerance_mpps']:>5.3f} Mpps "
                         f"{m['cpu']['cpu_ns_per_datagram'] or 0:>9.0f} ns")
        b = res["buffering"]
        lines.append(f"{'':>8} buffering: user stack {b['user_stack_datagrams']} datagrams, kernel "
                     f"{b['kernel']['datagrams']} with SO_RCVBUF {b['kernel']['rcvbuf']:,} B; CPU at "
                     f"{res['user_stack']['cpu']['rate_mpps']:.2f} Mpps over both cores")
        lines.append(f"{'':>8} ratio vs kernel: zero-loss {_x(res['zero_loss_ratio_vs_kernel'])}, "
                     f"<=0.1% {_x(res['tolerance_ratio_vs_kernel'])}, full speed "
                     f"{_x(res['throughput_ratio_vs_kernel'])}, "
                     f"CPU per datagram {_x(res['cpu_ratio_vs_kernel'])}")
        for name, key in (("user stack", "user_stack"), ("kernel", "kernel")):
            lossy = res[key]["full_speed_counters"] or {}
            if res[key]["loss_at_full_speed"]:
                lines.append(f"{'':>8} {name} loss at full speed: "
                             + (", ".join(f"{k} +{v}" for k, v in lossy.items()) or "in no counter"))
    lines.append("targets: " + "; ".join(f"{k} {_x(t['value'])} ({t['target']}: {met(t['met'])})"
                                         for k, t in r["targets"].items()))
    return "\n".join(lines)


def plots(r: dict, outdir: Path) -> list[tuple[str, Path]]:
    labels = [f"{res['payload']} B" for res in r["results"]]
    fig, ax = plot.figure("UDP receive rate, user stack vs kernel (equal buffering)")
    plot.bars(ax, labels, {f"{name}, {what}": [res[key][f] for res in r["results"]]
                           for name, key in (("user stack", "user_stack"), ("kernel", "kernel"))
                           for what, f in (("zero loss", "zero_loss_mpps"),
                                           ("<=0.1% loss", "tolerance_mpps"))},
              "Mpps")
    out = [("RX rate, user stack vs kernel", plot.save(fig, outdir / "rx_rate.png"))]
    fig, ax = plot.figure("UDP receive: CPU per datagram, both cores")
    plot.bars(ax, labels, {name: [res[key]["cpu"]["cpu_ns_per_datagram"] for res in r["results"]]
                           for name, key in (("user stack", "user_stack"), ("kernel", "kernel"))},
              "ns of CPU per datagram")
    out.append(("CPU per datagram, user stack vs kernel", plot.save(fig, outdir / "rx_cpu.png")))
    return out
