"""`xdpstack bench tcp`: one TCP connection on the user-level stack against the kernel's, on the
same testbed, with every frame an MTU packet on both sides; the stack's TX against a raw AF_XDP
transmit loop; round trips with both ends spinning and both sleeping.

    ns dut (its veth: demux attached)                              ns peer (kernel)
    userstack-tcpperf on its own stack, :5201 (sleeping), :5204 (busy poll)
    userstack-tcpperf --kernel, :5202 (sleeping), :5205 (--spin)  <->  userstack-tcpperf --kernel client
    iperf3 -s, :5203                                              <->  iperf3 -c
    servers (and xsk-tx) pinned to one CPU, clients to the other

- bulk, per frame: one connection for `duration` each way, the same tool (userstack-tcpperf, C,
  net.h) on the user stack and on kernel sockets. `out` (from_dut): the dut sends; `in` (to_dut):
  the peer's kernel sends. Why this is fair: an AF_XDP frame is one MTU packet, as on a real wire,
  while the kernel hands veth 64 KB GSO super-frames that no NIC without TSO would see. So the
  sending veth gets `ethtool -K tso off gso off` (restored afterwards on every exit path): every
  frame the kernel sends is an MTU packet too. For `in` the sender is the peer's kernel, the same for
  both contenders (its TSO is already off: any XDP program on the dut veth takes it, so for `in`
  only GSO changes). The kernel with default offloads (the same tool, and iperf3) is kept as
  context. Frames are counted at the peer's veth (rx for `out`, tx for `in`); Gbit/s is payload.
  Caveat for `in`: veth runs the kernel server's TCP receive on the sender's core, while the user
  stack receives on its own core, so the `in` rate is set by the sender's core (client-bound) and
  CPU per GB over both cores is the figure that compares the two.
- raw AF_XDP TX: tools/xsk-tx (libxdp, XDP_COPY, MTU-sized frames prebuilt in the UMEM) bound on
  a stack's virtual port built as the launcher builds one (registered stack, one UDP claim, the
  port pair and its programs), so its frames take the user stack's TX path exactly: inner end,
  the outer end's egress guard, bpf_redirect to the dut veth, the peer. They are addressed to a MAC
  nobody has: the peer's kernel drops them as "other host" first thing in ip_rcv, and its veth
  counts them. `raw_tx.tcp_fraction` is the user stack's bulk-out frames/s over xsk-tx's, both
  pinned to the server CPU, for the same duration; xsk-tx's Gbit/s counts whole frames.
- rr: a client sends `rr_size` bytes and waits for them to come back, for `duration` (at most
  1,000,000 rounds), both ends on user stacks (the demux on the peer's veth too, the client on its
  own stack there, claiming 5299 and connecting from an ephemeral port) or both on kernel
  sockets; both spinning (the stacks with XDPSTACK_BUSY_POLL=1, the kernel ends with
  userstack-tcpperf --spin: non-blocking sockets polled without sleeping) and both sleeping. All
  four in the same phase (both veths attached). Why: a spinning user stack against a sleeping
  kernel compares busy polling with wake-ups, not stacks. A user-stack client's meter spans its
  launch too: its busy time is charged pro rata to the seconds the client itself timed.
  (Today's one-sided rr, a kernel client against a user-stack server, is gone: it set a
  spinning end against a sleeping one.)
- kernel_traffic (context): kernel iperf3 both ways with nothing on the dut veth, with a trivial
  `return XDP_PASS` program (native mode) and with xdpstack's demux attached (the fallback path).

CPU: every run is metered over both cores from /proc/stat (xdpstack.bench.cpu.Meter), reported
per GB (bulk), per frame (raw TX) and per round trip (rr), beside each core's utilisation; a rate
ratio taken while a client core was >= 95 % busy is marked client-bound (on veth the receiver's
softirq work runs on the sender's CPU). Every figure is a median over `rounds`; every ratio is the
median of per-round ratios against a baseline measured in the same round (the machine is noisy).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path

from pyroute2 import IPRoute

from xdpstack import netlink
from xdpstack.bench import Progress, met, say, target
from xdpstack.bench._bed import (
    Bed,
    BenchError,
    cpus_for_bench,
    json_line,
    median,
    median_ratio,
    raw_port,
    require,
    stop_process,
    venv_bin,
    wait_ready,
)
from xdpstack.bench.cpu import Meter, cpu_ratio
from xdpstack.testbed import Testbed

PORT_US, PORT_US_BUSY, PORT_KERNEL, PORT_IPERF, PORT_KERNEL_SPIN = 5201, 5204, 5202, 5203, 5205
PORT_CLIENT_CLAIM = 5299               # what the user-stack client's launch claims (it connects out)
PORT_RAW = 5298                        # xsk-tx's source port, claimed by its port
RAW_DST_MAC = "02:00:00:00:00:01"     # nobody's: the peer's kernel drops the frames at once
ETH_HEADER = 14
DIRECTIONS = ("to_dut", "from_dut")
BULK = ("userstack", "kernel_per_frame", "kernel_default", "iperf3_default")
RR = ("userstack_spinning", "kernel_spinning", "userstack_sleeping", "kernel_sleeping")
MAX_RR_ROUNDS = 1_000_000
KT_STATES = ("no_xdp", "trivial_xdp", "xdpstack")


# ---- the sending veth's segmentation offloads ----------------------------------------------------

@contextlib.contextmanager
def offloads_off(bed: Bed, host: str):
    """TSO and GSO off on the host's veth (what is on now, nothing else), restored afterwards."""
    h = bed.host(host)
    r = bed.run(host, ["ethtool", "-k", h.ifname], timeout=10)
    names = (("tcp-segmentation-offload", "tso"), ("generic-segmentation-offload", "gso"))
    on = [short for long_, short in names if f"{long_}: on" in r.stdout]
    if on:
        _ethtool(bed, host, [x for f in on for x in (f, "off")])
    try:
        yield
    finally:
        if on:
            _ethtool(bed, host, [x for f in on for x in (f, "on")])


def _ethtool(bed: Bed, host: str, features: list[str]):
    r = bed.run(host, ["ethtool", "-K", bed.host(host).ifname, *features], timeout=10)
    if r.returncode != 0:
        raise BenchError(f"ethtool -K {' '.join(features)} on the {host} veth: {r.stderr.strip()}")


def peer_frames(tb: Testbed, direction: str) -> int:
    """Frames the peer's veth has received (from_dut) or sent (to_dut)."""
    h = tb.peer
    with netlink.netns(h.ns), IPRoute() as ipr:
        stats = ipr.get_links(h.ifindex)[0].get_attr("IFLA_STATS64")
    return stats["rx_packets" if direction == "from_dut" else "tx_packets"]


class Tools:
    def __init__(self, bed: Bed, cpus: tuple[int, int]):
        self.bed, self.cpus = bed, cpus
        self.tcpperf = venv_bin("userstack-tcpperf")
        self.xsk_tx = venv_bin("xsk-tx")
        self.addr = bed.tb.dut.addr4
        self.frame_bytes = bed.tb.mtu + ETH_HEADER         # an MTU packet on the wire
        self.launches: dict[str, object] = {}
        self.kernel_servers: dict[str, object] = {}

    def pin(self, which: str) -> list[str]:
        return ["taskset", "-c", str(self.cpus[0] if which == "server" else self.cpus[1])]

    def roles(self) -> dict[str, int]:
        return {"server": self.cpus[0], "client": self.cpus[1]}

    def start_servers(self):
        """userstack-tcpperf on the user stack (sleeping; and spinning, paused until used), on
        kernel sockets (sleeping; and spinning, paused until used), and iperf3 -s, in the dut."""
        cmd = ["sh", "-c", f"exec {' '.join(self.pin('server'))} {self.tcpperf} >/dev/null 2>&1"]
        self.launches["userstack"] = self.bed.launch(cmd, tcp=[PORT_US])
        self.launches["userstack_busy_poll"] = self.bed.launch(cmd, tcp=[PORT_US_BUSY],
                                                               env={"XDPSTACK_BUSY_POLL": "1"})
        pin = self.pin("server")
        for name, port, extra in (("kernel", PORT_KERNEL, []), ("kernel_spin", PORT_KERNEL_SPIN, ["--spin"])):
            self.kernel_servers[name] = self.bed.popen(
                "dut", [*pin, self.tcpperf, "--kernel", *extra, "--listen", f"{self.addr}:{port}"])
        self.bed.popen("dut", [*pin, "iperf3", "-s", "-p", str(PORT_IPERF)])
        for port in (PORT_US, PORT_US_BUSY, PORT_KERNEL, PORT_KERNEL_SPIN):
            wait_ready(lambda p=port: self.rr(p, 0.2, 10, check=False) is not None,
                       what=f"userstack-tcpperf on port {port}")
        # a spinning server would eat the server CPU during every other measurement
        self.pause("userstack_busy_poll")
        self.pause("kernel_spin")

    def _proc(self, name: str):
        return self.kernel_servers[name] if name in self.kernel_servers else self.launches[name].child

    def pause(self, name: str):
        self._proc(name).send_signal(19)          # SIGSTOP

    def resume(self, name: str):
        self._proc(name).send_signal(18)          # SIGCONT

    @contextlib.contextmanager
    def running(self, name: str | None):
        if name:
            self.resume(name)
        try:
            yield
        finally:
            if name:
                self.pause(name)

    def stop_spinners(self):
        """The paused spinning servers end now (stopped, they would hold up the bed's teardown)."""
        self.resume("kernel_spin")
        stop_process(self.kernel_servers["kernel_spin"])
        self.resume("userstack_busy_poll")
        self.bed.close_launch(self.launches.pop("userstack_busy_poll"))

    # -- bulk ---------------------------------------------------------------------------------------
    def bulk(self, port: int, direction: str, duration: float) -> dict:
        """userstack-tcpperf --kernel in the peer against the dut's server on port: one connection,
        metered over both cores, frames counted at the peer."""
        mode = "send" if direction == "to_dut" else "recv"
        f0 = peer_frames(self.bed.tb, direction)
        meter = Meter(roles=self.roles()).start()
        r = self.bed.run("peer", [*self.pin("client"), self.tcpperf, "--kernel", "--connect",
                                  f"{self.addr}:{port}", "--mode", mode, "--duration", str(duration)],
                         timeout=duration + 60)
        usage = meter.stop()
        if r.returncode != 0:
            raise BenchError(f"bulk {direction} against port {port} failed: {r.stderr.strip()[-300:]}")
        res = json_line(r.stdout)
        return _bulk_cell(res["gbit_per_s"], res["bytes"], peer_frames(self.bed.tb, direction) - f0,
                          res["seconds"], usage)

    def iperf(self, direction: str, duration: float) -> dict:
        """Kernel iperf3, peer client to the dut server (-R: the dut sends), metered."""
        argv = [*self.pin("client"), "iperf3", "-c", self.addr, "-p", str(PORT_IPERF), "-t", str(duration),
                "-J", "--connect-timeout", "5000"]
        if direction == "from_dut":
            argv.append("-R")
        for _ in range(3):      # "the server is busy" right after a previous test: retry
            f0 = peer_frames(self.bed.tb, direction)
            meter = Meter(roles=self.roles()).start()
            r = self.bed.run("peer", argv, timeout=duration + 60)
            usage = meter.stop()
            try:
                res = json.loads(r.stdout)
            except ValueError:
                res = {"error": r.stdout[-300:] or r.stderr[-300:]}
            if "error" not in res:
                s = res["end"]["sum_received"]
                return _bulk_cell(s["bits_per_second"] / 1e9, s["bytes"],
                                  peer_frames(self.bed.tb, direction) - f0, s["seconds"], usage)
        raise BenchError(f"iperf3 {direction} failed: {res['error']}")

    def raw_tx(self, duration: float) -> dict:
        """xsk-tx on a bare port in the dut (the stack's TX path), pinned like the server."""
        dut, peer = self.bed.tb.dut, self.bed.tb.peer
        with raw_port(self.bed.tb, PORT_RAW, "xsk-tx") as (_, inner):
            f0 = peer_frames(self.bed.tb, "from_dut")
            meter = Meter(roles={"server": self.cpus[0]}).start()
            r = self.bed.run("dut", [*self.pin("server"), self.xsk_tx, "--dev", inner, "--src-mac", dut.mac,
                                     "--dst-mac", RAW_DST_MAC, "--src", f"{dut.addr4}:{PORT_RAW}",
                                     "--dst", f"{peer.addr4}:9", "--frame", str(self.frame_bytes),
                                     "--duration", str(duration)], timeout=duration + 60)
            usage = meter.stop()
            at_peer = peer_frames(self.bed.tb, "from_dut") - f0
        if r.returncode != 0:
            raise BenchError(f"xsk-tx failed: {r.stderr.strip()[-300:]}")
        res = json_line(r.stdout)
        return {"gbit_per_s": res["gbit_per_s"], "frames": res["frames"], "frames_at_peer": at_peer,
                "frames_per_s": round(res["frames_per_s"]), "frame_bytes": res["frame_bytes"],
                **usage.fields(res["frames"], "frame"),
                "cpu_s_per_gb": _per_gb(usage.total_busy_s, res["frames"] * res["frame_bytes"])}

    # -- request/response ---------------------------------------------------------------------------
    def rr(self, port: int, duration: float, count: int, size: int = 64, check: bool = True,
           spin: bool = False) -> dict | None:
        """The rr client on kernel sockets in the peer (spinning with --spin)."""
        kernel = ["--kernel", "--spin"] if spin else ["--kernel"]
        r = self.bed.run("peer", [*self.pin("client"), self.tcpperf, *kernel, "--connect",
                                  f"{self.addr}:{port}", "--mode", "rr", "--size", str(size),
                                  "--count", str(count), "--duration", str(duration)],
                         timeout=duration + 60)
        if r.returncode != 0:
            if check:
                raise BenchError(f"rr against port {port} failed: {r.stderr.strip()[-300:]}")
            return None
        return json_line(r.stdout)

    def rr_user_client(self, port: int, duration: float, count: int, size: int, busy_poll: bool) -> dict:
        """The rr client on its own stack in the peer namespace (the launcher there), pinned to the
        client CPU, against the dut's server on port."""
        with tempfile.NamedTemporaryFile("r", prefix="xdpstack-bench-rr-", suffix=".json") as out:
            os.chmod(out.name, 0o666)
            cmd = ["sh", "-c", f"exec {' '.join(self.pin('client'))} {self.tcpperf} --connect "
                               f"{self.addr}:{port} --mode rr --size {size} --count {count} "
                               f"--duration {duration} >{out.name} 2>&1"]
            launch = self.bed.launch(cmd, tcp=[PORT_CLIENT_CLAIM], host="peer",
                                     env={"XDPSTACK_BUSY_POLL": "1"} if busy_poll else {})
            try:
                rc = launch.child.wait(timeout=duration + 60)
            finally:
                self.bed.close_launch(launch)
            text = out.read()
        if rc != 0:
            raise BenchError(f"rr from the peer's user stack to port {port} failed: {text.strip()[-300:]}")
        return json_line(text)

    def rr_pair(self, name: str, duration: float, count: int, size: int) -> dict:
        """One rr run of a RR configuration, metered over both cores while the client runs (the
        user-stack client's launch and teardown are outside its own timed loop, not its rounds)."""
        server, port = {"userstack_spinning": ("userstack_busy_poll", PORT_US_BUSY),
                        "userstack_sleeping": (None, PORT_US),
                        "kernel_spinning": ("kernel_spin", PORT_KERNEL_SPIN),
                        "kernel_sleeping": (None, PORT_KERNEL)}[name]
        with self.running(server):
            meter = Meter(roles=self.roles()).start()
            if name.startswith("userstack"):
                res = self.rr_user_client(port, duration, count, size, busy_poll=name.endswith("spinning"))
            else:
                res = self.rr(port, duration, count, size, spin=name.endswith("spinning"))
            usage = meter.stop()
        # the meter spans the launch of a user-stack client too: charge the busy time of the
        # client's own timed seconds only, in proportion (an upper bound on the idle set-up)
        share = min(1.0, res["seconds"] / usage.wall_s) if usage.wall_s else 1.0
        cell = usage.fields(res["rounds"] / share, "round_trip")
        return {"rtt_us": res["rtt_us"], "rounds": res["rounds"], **cell}


def _per_gb(cpu_s: float, nbytes: float) -> float | None:
    return round(cpu_s / (nbytes / 1e9), 3) if nbytes else None


def _bulk_cell(gbit: float, nbytes: int, frames: int, seconds: float, usage) -> dict:
    return {"gbit_per_s": round(gbit, 4), "bytes": nbytes, "frames": frames,
            "frames_per_s": round(frames / seconds) if seconds else 0, **usage.fields(nbytes / 1e9, "GB")}


def _check_args(duration: float, rounds: int, rr_size: int) -> int:
    if duration <= 0 or rounds < 1 or not 1 <= rr_size <= 65536:
        raise ValueError("duration and rounds must be positive, rr_size 1..65536")
    duration = math.ceil(duration)          # iperf3 takes no fractions
    if duration > 600 or rounds > 50:
        raise ValueError("at most 600 s per run and 50 rounds")
    return duration


def _alternate(names, rnd: int):
    return list(names) if rnd % 2 == 0 else list(names)[::-1]


def run(duration: float = 4, rounds: int = 3, rr_size: int = 64, kernel_traffic: bool = True,
        server_cpu: int | None = None, client_cpu: int | None = None,
        progress: Progress | None = None) -> dict:
    """Measure; see the module doc. Bounded: a fixed number of runs of `duration` seconds each
    (rounded up to whole seconds)."""
    duration = _check_args(duration, rounds, rr_size)
    require("iperf3", "taskset", "ethtool")
    venv_bin("userstack-tcpperf")
    venv_bin("xsk-tx")
    cpus = cpus_for_bench(server_cpu, client_cpu)
    bulk = {d: {n: [] for n in BULK} for d in DIRECTIONS}
    raw: list[dict] = []
    rr = {n: [] for n in RR}
    kt = {s: {d: [] for d in DIRECTIONS} for s in KT_STATES}
    count = min(MAX_RR_ROUNDS, int(duration * 200_000))
    with Bed() as bed:
        tools = Tools(bed, cpus)
        say(progress, "tcp: starting the servers")
        tools.start_servers()
        for rnd in range(rounds):
            _bulk_round(bed, tools, bulk, raw, duration, rnd, rounds, progress)
        # The peer's veth gets the demux only now: attached, it costs the dut veth its TSO, which
        # the default-offload figures above must not pay.
        bed.attach_demux("peer")
        try:
            for rnd in range(rounds):
                for n in _alternate(RR, rnd):
                    say(progress, f"tcp rr {n.replace('_', ' ')}, round {rnd + 1}/{rounds}")
                    rr[n].append(tools.rr_pair(n, duration, count, rr_size))
        finally:
            bed.detach_demux("peer")
        tools.stop_spinners()
        if kernel_traffic:
            _kernel_traffic(bed, tools, kt, duration, rounds, progress)
    return summarize(bulk, raw, rr, kt if kernel_traffic else None, duration, rounds, rr_size, cpus)


def _bulk_round(bed, tools, bulk, raw, duration, rnd, rounds, progress):
    """One round of bulk: per direction the user stack and the kernel with the sender's offloads
    off, then the kernel (same tool, iperf3) with default offloads; then the raw TX loop."""
    port = {"userstack": PORT_US, "kernel_per_frame": PORT_KERNEL, "kernel_default": PORT_KERNEL}
    for d in DIRECTIONS:
        sender = "peer" if d == "to_dut" else "dut"
        with offloads_off(bed, sender):
            for n in _alternate(("userstack", "kernel_per_frame"), rnd):
                say(progress, f"tcp bulk {d} {n.replace('_', ' ')}, round {rnd + 1}/{rounds}")
                bulk[d][n].append(tools.bulk(port[n], d, duration))
        say(progress, f"tcp bulk {d} kernel default offloads (tcpperf, iperf3), round {rnd + 1}/{rounds}")
        bulk[d]["kernel_default"].append(tools.bulk(port["kernel_default"], d, duration))
        bulk[d]["iperf3_default"].append(tools.iperf(d, duration))
    say(progress, f"tcp raw AF_XDP TX (xsk-tx), round {rnd + 1}/{rounds}")
    raw.append(tools.raw_tx(duration))


def _kernel_traffic(bed, tools, kt, duration, rounds, progress):
    # the stacks' claims would keep the demux attached: stop them first
    for launch in tools.launches.values():
        bed.close_launch(launch)
    bed.detach_demux()
    for rnd in range(rounds):
        for s in _alternate(KT_STATES, rnd):
            say(progress, f"tcp kernel iperf3 through the dut veth, {s.replace('_', ' ')}, "
                          f"round {rnd + 1}/{rounds}")
            attach, detach = {"trivial_xdp": (bed.attach_trivial, bed.detach_trivial),
                              "xdpstack": (bed.attach_demux, bed.detach_demux)}.get(s, (None, None))
            if attach:
                attach()
            try:
                for d in DIRECTIONS:
                    kt[s][d].append(tools.iperf(d, duration))
            finally:
                if detach:
                    detach()


# ---- the summary -----------------------------------------------------------------------------------

def _med(runs: list[dict], key: str, nd: int = 3):
    vals = [r[key] for r in runs if r.get(key) is not None]
    return round(median(vals), nd) if vals else None


def _cell(runs: list[dict], keys: tuple[str, ...]) -> dict:
    out = {k: _med(runs, k) for k in keys}
    if any("client_bound" in r for r in runs):
        out["client_bound"] = any(r.get("client_bound") for r in runs)
    return out


BULK_KEYS = ("gbit_per_s", "frames_per_s", "cpu_s_per_gb", "server_core_util", "client_core_util",
             "server_cpu_s_per_gb")


def _cpu_ratio(user: list[dict], base: list[dict], key: str) -> float | None:
    """Median over rounds of the baseline's CPU per unit over the user stack's (above 1: cheaper)."""
    rs = [cpu_ratio(b[key], u[key]) for u, b in zip(user, base, strict=True)]
    return round(median(rs), 3) if any(rs) else None


def _vs(user: list[dict], base: list[dict]) -> dict:
    """Bulk, the user stack against a baseline: the Gbit/s and CPU-per-GB ratios, and whether a
    client core was saturated in any run of either (the rate ratio is then the client's)."""
    return {"ratio": median_ratio([u["gbit_per_s"] for u in user], [b["gbit_per_s"] for b in base]),
            "cpu_ratio": _cpu_ratio(user, base, "cpu_s_per_gb"),
            "client_bound": any(r.get("client_bound") for r in user + base)}


def summarize(bulk, raw, rr, kt, duration, rounds, rr_size, cpus) -> dict:
    out: dict = {"duration_s": duration, "rounds": rounds, "server_cpu": cpus[0], "client_cpu": cpus[1],
                 "frame_bytes": raw[0]["frame_bytes"], "bulk": {}, "rr": {}}
    for d in DIRECTIONS:
        cell = {n: {**_cell(runs, BULK_KEYS), "runs_gbit_per_s": [r["gbit_per_s"] for r in runs]}
                for n, runs in bulk[d].items()}
        for base in ("kernel_per_frame", "kernel_default"):
            cell["userstack"][f"vs_{base}"] = _vs(bulk[d]["userstack"], bulk[d][base])
        out["bulk"][d] = cell
    out["raw_tx"] = {**_cell(raw, ("gbit_per_s", "frames_per_s", "cpu_ns_per_frame", "cpu_s_per_gb",
                                   "server_core_util")),
                     "frames_at_peer": _med(raw, "frames_at_peer", 0), "frames": _med(raw, "frames", 0)}
    out["raw_tx"]["tcp_fraction"] = median_ratio([r["frames_per_s"] for r in bulk["from_dut"]["userstack"]],
                                                 [r["frames_per_s"] for r in raw])
    for n, runs in rr.items():
        c = {"size": rr_size, "rounds_per_run": _med(runs, "rounds", 0),
             **{f"{p}_us": round(median(r["rtt_us"][p] for r in runs), 2) for p in ("p50", "p99", "mean")},
             **_cell(runs, ("cpu_us_per_round_trip", "server_core_util", "client_core_util"))}
        c.pop("client_bound", None)           # a round trip is a latency, not a rate a client limits
        if n.startswith("userstack"):
            base = rr[n.replace("userstack", "kernel")]
            c["p50_ratio_vs_kernel"] = median_ratio([r["rtt_us"]["p50"] for r in runs],
                                                    [r["rtt_us"]["p50"] for r in base])
            c["p99_ratio_vs_kernel"] = median_ratio([r["rtt_us"]["p99"] for r in runs],
                                                    [r["rtt_us"]["p99"] for r in base])
            c["cpu_ratio_vs_kernel"] = _cpu_ratio(runs, base, "cpu_us_per_round_trip")
        out["rr"][n] = c
    if kt is not None:
        out["kernel_traffic"] = {}
        for d in DIRECTIONS:
            cell = {s: _cell(v[d], BULK_KEYS) for s, v in kt.items()}
            for s in ("trivial_xdp", "xdpstack"):
                cell[s]["ratio_vs_no_xdp"] = median_ratio([r["gbit_per_s"] for r in kt[s][d]],
                                                          [r["gbit_per_s"] for r in kt["no_xdp"][d]])
            cell["xdpstack"]["ratio_vs_trivial_xdp"] = median_ratio(
                [r["gbit_per_s"] for r in kt["xdpstack"][d]], [r["gbit_per_s"] for r in kt["trivial_xdp"][d]])
            out["kernel_traffic"][d] = cell
    out["targets"] = _targets(out)
    return out


def _targets(out: dict) -> dict:
    b_out = out["bulk"]["from_dut"]["userstack"]["vs_kernel_per_frame"]["ratio"]
    b_in = out["bulk"]["to_dut"]["userstack"]["vs_kernel_per_frame"]["ratio"]
    p50 = out["rr"]["userstack_spinning"]["p50_ratio_vs_kernel"]
    return {"tcp_bulk_out_ratio_vs_kernel_per_frame":
            target(b_out, ">= 1x the kernel's, every frame an MTU packet", b_out >= 1.0),
            "tcp_bulk_in_ratio_vs_kernel": target(b_in, ">= 1x the kernel's", b_in >= 1.0),
            "tcp_rr_p50_ratio_vs_kernel_spinning": target(p50, "<= 0.5x the kernel's", 0 < p50 <= 0.5)}


# ---- text and plots --------------------------------------------------------------------------------

BULK_NAMES = {"userstack": "user stack", "kernel_per_frame": "kernel, per frame",
              "kernel_default": "kernel, default offloads", "iperf3_default": "iperf3 kernel, default"}
RR_NAMES = {"userstack_spinning": "user <-> user, both spinning",
            "kernel_spinning": "kernel <-> kernel, spinning",
            "userstack_sleeping": "user <-> user, both sleeping",
            "kernel_sleeping": "kernel <-> kernel, sleeping"}
DIR_NAMES = {"to_dut": "in (to_dut: the peer's kernel sends)", "from_dut": "out (from_dut: the dut sends)"}


def _f(v, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def _bound(c: dict) -> str:
    return " (client-bound)" if c.get("client_bound") else ""


def format_text(result: dict) -> str:
    r = result
    lines = [f"TCP, one connection, {r['duration_s']} s per run, median of {r['rounds']} rounds; servers on "
             f"CPU {r['server_cpu']}, clients on CPU {r['client_cpu']}; CPU summed over both cores"]
    for d in DIRECTIONS:
        lines.append(f"bulk {DIR_NAMES[d]}   Gbit/s   frames/s  CPU s/GB  server/client core")
        for n, c in r["bulk"][d].items():
            lines.append(f"  {BULK_NAMES[n]:<27}{_f(c['gbit_per_s']):>8}{_f(c['frames_per_s'], '.0f'):>11}"
                         f"{_f(c['cpu_s_per_gb'], '.3f'):>10}   {_f(c['server_core_util'], '.0%')}/"
                         f"{_f(c['client_core_util'], '.0%')}{_bound(c)}")
        for base in ("kernel_per_frame", "kernel_default"):
            v = r["bulk"][d]["userstack"][f"vs_{base}"]
            lines.append(f"  user stack / {BULK_NAMES[base]}: {_f(v['ratio'])}x Gbit/s, CPU per GB "
                         f"{_f(v['cpu_ratio'])}x (kernel/user){_bound(v)}")
    w = r["raw_tx"]
    lines.append(f"raw AF_XDP TX (xsk-tx on a stack's port, {r['frame_bytes']} B frames): "
                 f"{_f(w['frames_per_s'], '.0f')} frames/s, {_f(w['gbit_per_s'])} Gbit/s, "
                 f"{_f(w['cpu_ns_per_frame'], '.0f')} ns CPU/frame, "
                 f"{_f(w['frames_at_peer'], '.0f')} frames at the peer; the stack's TCP reaches "
                 f"{_f(w['tcp_fraction'])} of its frames/s")
    lines.append(f"request/response, {r['rr']['kernel_sleeping']['size']} bytes   p50 us   p99 us  "
                 "CPU us/rt  p50 vs kernel  CPU kernel/user")
    for n, c in r["rr"].items():
        lines.append(f"  {RR_NAMES[n]:<30}{c['p50_us']:>8.1f}{c['p99_us']:>9.1f}"
                     f"{_f(c['cpu_us_per_round_trip'], '.1f'):>11}"
                     f"{_f(c.get('p50_ratio_vs_kernel'), '.2f'):>15}"
                     f"{_f(c.get('cpu_ratio_vs_kernel'), '.2f'):>17}")
    if "kernel_traffic" in r:
        lines.append("kernel iperf3 through the dut veth (Gbit/s, CPU s/GB)  nothing  trivial XDP  xdpstack"
                     "  vs trivial")
        for d in DIRECTIONS:
            c = r["kernel_traffic"][d]
            cols = "".join(f"  {_f(c[s]['gbit_per_s'])}/{_f(c[s]['cpu_s_per_gb'])}" for s in KT_STATES)
            lines.append(f"  {d:<40}{cols}  {_f(c['xdpstack']['ratio_vs_trivial_xdp'])}x")
    lines.append("targets: " + "; ".join(f"{k} {_f(t['value'])} ({t['target']}): {met(t['met'])}"
                                         for k, t in r["targets"].items()))
    return "\n".join(lines)


def plots(result: dict, outdir: Path) -> list[tuple[str, Path]]:
    from xdpstack.bench.plot import bars, figure, save
    r, out = result, []
    labels = [DIR_NAMES[d].split(" (")[0] for d in DIRECTIONS]
    title = "TCP bulk throughput"
    fig, (ax_rate, ax_cpu) = figure(title, width=9, ncols=2)
    names = ("userstack", "kernel_per_frame", "kernel_default")
    raw = [None if d == "to_dut" else r["raw_tx"]["gbit_per_s"] for d in DIRECTIONS]
    bars(ax_rate, labels, {**{BULK_NAMES[n]: [r["bulk"][d][n]["gbit_per_s"] for d in DIRECTIONS]
                              for n in names}, "raw AF_XDP TX (frames)": raw}, "Gbit/s")
    raw_cpu = [None if d == "to_dut" else r["raw_tx"]["cpu_s_per_gb"] for d in DIRECTIONS]
    bars(ax_cpu, labels, {**{BULK_NAMES[n]: [r["bulk"][d][n]["cpu_s_per_gb"] for d in DIRECTIONS]
                             for n in names}, "raw AF_XDP TX (frames)": raw_cpu}, "CPU s per GB (both cores)")
    out.append((title, save(fig, outdir / "tcp_bulk.png")))
    title = "TCP round trip p50/p99"
    fig, axes = figure(title, width=9, ncols=2)
    for ax, p in zip(axes, ("p50", "p99"), strict=True):
        bars(ax, ["both spinning", "both sleeping"],
             {who: [r["rr"][f"{prefix}_{m}"][f"{p}_us"] for m in ("spinning", "sleeping")]
              for who, prefix in (("user <-> user", "userstack"), ("kernel <-> kernel", "kernel"))},
             f"{p} round trip (us)")
    out.append((title, save(fig, outdir / "tcp_rr.png")))
    return out


if __name__ == "__main__":
    import sys
    res = run(int(sys.argv[1]) if len(sys.argv) > 1 else 4, int(sys.argv[2]) if len(sys.argv) > 2 else 3,
              progress=lambda m: print(m, file=sys.stderr))
    with contextlib.suppress(BrokenPipeError):
        print(format_text(res))
        print(json.dumps(res, indent=1), file=sys.stderr)
