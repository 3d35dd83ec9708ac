"""`xdpstack bench tcp`: one TCP connection on the user-level stack against the kernel's, on the
same testbed, and what attaching xdpstack costs the kernel's own traffic.

    ns dut (its veth: demux attached)                              ns peer (kernel)
    userstack-tcpperf on its own stack, :5201 (the launcher)  <->  userstack-tcpperf --kernel client
    userstack-tcpperf --kernel, :5202                         <->  (the same client)
    iperf3 -s, :5203                                          <->  iperf3 -c
    servers pinned to one CPU, clients to the other

- bulk: one connection for `duration` in each direction: `to_dut` (the peer sends, the dut's
  stack receives) and `from_dut` (the dut sends). The same tool (userstack-tcpperf, C, net.h) runs
  on the user stack and on kernel sockets, so the kernel baseline is the same code on the same
  attached interface; iperf3 kernel-to-kernel is there as a cross-check of the kernel figure.
- rr: a kernel client in the peer sends `rr_size` bytes and waits for them to come back, for
  `duration` (at most 1,000,000 rounds); p50/p99 round trip against the user-stack server (its
  stack sleeping in epoll when idle, and spinning with XDPSTACK_BUSY_POLL=1) and the kernel server.
- rr_multistack (MultiStack's own comparison): the same request/response between two user-level
  stacks, the demux attached to the peer's veth too and the client (userstack-tcpperf) on its own
  stack there, as `xdpstack --netns PEER run` starts it (a stack claims at least one port: the
  client's claims 5299 and connects from an ephemeral port); both stacks busy-poll, the server
  pinned to one CPU and the client to the other. Baseline: the same client and server on kernel
  sockets, pinned the same way, measured in the same phase (both veths attached).
- kernel_traffic: iperf3 kernel-to-kernel both ways with nothing on the dut veth, with a trivial
  `return XDP_PASS` program (native mode), and with xdpstack's demux attached (no claims on the
  iperf3 port: the fallback path). Any XDP program on a veth costs its peer TSO, so the figure
  that matters is xdpstack against the trivial program.

Every figure is a median over `rounds`; every ratio is the median of per-round ratios against a
baseline measured in the same round (the machine is shared and noisy).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile

from xdpstack.bench import met
from xdpstack.bench._bed import (
    Bed,
    BenchError,
    CpuSample,
    cpus_for_bench,
    median,
    median_ratio,
    require,
    venv_bin,
    wait_ready,
)

PORT_US, PORT_US_BUSY, PORT_KERNEL, PORT_IPERF = 5201, 5204, 5202, 5203
PORT_CLIENT_CLAIM = 5299               # what the user-stack client's launch claims (it connects out)
DIRECTIONS = ("to_dut", "from_dut")
TARGET_THROUGHPUT_RATIO_VS_KERNEL = 1.0
TARGET_P50_RTT_RATIO_VS_KERNEL = 0.5
TARGET_RATIO_VS_TRIVIAL_XDP = 0.95        # "no more than any XDP program", within the noise
MAX_RR_ROUNDS = 1_000_000
MULTISTACK = ("userstack_both_busy_poll", "kernel")     # client and server: both user stacks, both kernel


def _json_line(text: str) -> dict:
    line = next((ln for ln in reversed(text.splitlines()) if ln.startswith("{")), None)
    if line is None:
        raise BenchError(f"no result line in {text[-300:]!r}")
    return json.loads(line)


class Tools:
    def __init__(self, bed: Bed, cpus: tuple[int, int]):
        self.bed, self.cpus = bed, cpus
        self.tcpperf = venv_bin("userstack-tcpperf")
        self.addr = bed.tb.dut.addr4
        self.launches: dict[str, object] = {}
        self.kernel_server = None
        self.iperf_server = None

    def pin(self, which: str) -> list[str]:
        return ["taskset", "-c", str(self.cpus[0] if which == "server" else self.cpus[1])]

    def start_servers(self, busy_poll: bool):
        """userstack-tcpperf on the user stack (sleeping, and spinning when busy_poll), on kernel
        sockets, and iperf3 -s, all in the dut namespace."""
        cmd = ["sh", "-c", f"exec {' '.join(self.pin('server'))} {self.tcpperf} >/dev/null 2>&1"]
        self.launches["userstack"] = self.bed.launch(cmd, tcp=[PORT_US])
        if busy_poll:
            self.launches["userstack_busy_poll"] = self.bed.launch(cmd, tcp=[PORT_US_BUSY],
                                                                   env={"XDPSTACK_BUSY_POLL": "1"})
            # a spinning stack would eat the server CPU during every other measurement
            self.pause("userstack_busy_poll")
        pin = self.pin("server")
        self.kernel_server = self.bed.popen("dut", [*pin, self.tcpperf, "--kernel", "--listen",
                                                    f"{self.addr}:{PORT_KERNEL}"])
        self.iperf_server = self.bed.popen("dut", [*pin, "iperf3", "-s", "-p", str(PORT_IPERF)])
        for port in (PORT_US, PORT_KERNEL):
            wait_ready(lambda p=port: self.rr(p, 0.2, 10, check=False) is not None,
                       what=f"userstack-tcpperf on port {port}")

    def pause(self, name: str):
        self.launches[name].child.send_signal(19)          # SIGSTOP

    def resume(self, name: str):
        self.launches[name].child.send_signal(18)          # SIGCONT

    def server_pids(self, name: str) -> list[int]:
        if name == "kernel":
            return [self.kernel_server.pid]
        return [self.launches[name].child.pid]

    def port(self, name: str) -> int:
        return {"userstack": PORT_US, "userstack_busy_poll": PORT_US_BUSY, "kernel": PORT_KERNEL}[name]

    def bulk(self, name: str, direction: str, duration: float) -> dict:
        mode = "send" if direction == "to_dut" else "recv"
        sample = CpuSample(self.server_pids(name), {"server": self.cpus[0]}).start()
        r = self.bed.run("peer", [*self.pin("client"), self.tcpperf, "--kernel", "--connect",
                                  f"{self.addr}:{self.port(name)}", "--mode", mode,
                                  "--duration", str(duration)], timeout=duration + 60)
        cpu = sample.stop()
        if r.returncode != 0:
            raise BenchError(f"bulk {direction} against {name} failed: {r.stderr.strip()[-300:]}")
        res = _json_line(r.stdout)
        return {"gbit_per_s": res["gbit_per_s"], "bytes": res["bytes"], "server_cpu_s": cpu["server_cpu_s"],
                "server_core_busy_s": cpu["server_core_busy_s"]}

    def rr(self, port: int, duration: float, count: int, size: int = 64, check: bool = True) -> dict | None:
        r = self.bed.run("peer", [*self.pin("client"), self.tcpperf, "--kernel", "--connect",
                                  f"{self.addr}:{port}", "--mode", "rr", "--size", str(size),
                                  "--count", str(count), "--duration", str(duration)],
                         timeout=duration + 60)
        if r.returncode != 0:
            if check:
                raise BenchError(f"rr against port {port} failed: {r.stderr.strip()[-300:]}")
            return None
        return _json_line(r.stdout)

    def rr_user_client(self, port: int, duration: float, count: int, size: int = 64) -> dict:
        """The rr client on its own busy-polling stack in the peer namespace (the launcher there),
        pinned to the client CPU, against the dut's server on port."""
        with tempfile.NamedTemporaryFile("r", prefix="xdpstack-bench-rr-", suffix=".json") as out:
            os.chmod(out.name, 0o666)
            cmd = ["sh", "-c", f"exec {' '.join(self.pin('client'))} {self.tcpperf} --connect "
                               f"{self.addr}:{port} --mode rr --size {size} --count {count} "
                               f"--duration {duration} >{out.name} 2>&1"]
            launch = self.bed.launch(cmd, tcp=[PORT_CLIENT_CLAIM], env={"XDPSTACK_BUSY_POLL": "1"},
                                     host="peer")
            try:
                rc = launch.child.wait(timeout=duration + 60)
            finally:
                self.bed.close_launch(launch)
            text = out.read()
        if rc != 0:
            raise BenchError(f"rr from the peer's user stack to port {port} failed: {text.strip()[-300:]}")
        return _json_line(text)

    def iperf(self, direction: str, duration: float) -> float:
        """Gbit/s of kernel iperf3, peer client to the dut server (-R: the dut sends)."""
        argv = [*self.pin("client"), "iperf3", "-c", self.addr, "-p", str(PORT_IPERF), "-t", str(duration),
                "-J", "--connect-timeout", "5000"]
        if direction == "from_dut":
            argv.append("-R")
        for _ in range(3):      # "the server is busy" right after a previous test: retry
            r = self.bed.run("peer", argv, timeout=duration + 60)
            try:
                res = json.loads(r.stdout)
            except ValueError:
                res = {"error": r.stdout[-300:] or r.stderr[-300:]}
            if "error" not in res:
                return round(res["end"]["sum_received"]["bits_per_second"] / 1e9, 4)
        raise BenchError(f"iperf3 {direction} failed: {res['error']}")


def run(duration: float = 5, rounds: int = 3, rr_size: int = 64, busy_poll: bool = True,
        kernel_traffic: bool = True, server_cpu: int | None = None, client_cpu: int | None = None,
        multistack: bool = True) -> dict:
    """Measure; see the module doc. Bounded: a fixed number of runs of `duration` seconds each
    (rounded up to whole seconds: iperf3 takes no fractions)."""
    if duration <= 0 or rounds < 1 or not 1 <= rr_size <= 65536:
        raise ValueError("duration and rounds must be positive, rr_size 1..65536")
    duration = math.ceil(duration)
    if duration > 600 or rounds > 50:
        raise ValueError("at most 600 s per run and 50 rounds")
    require("iperf3", "taskset")
    venv_bin("userstack-tcpperf")
    cpus = cpus_for_bench(server_cpu, client_cpu)
    stacks = ["userstack", "kernel"]
    rr_servers = ["userstack", *(["userstack_busy_poll"] if busy_poll else []), "kernel"]
    bulk = {n: {d: [] for d in DIRECTIONS} for n in stacks}
    iperf_attached = {d: [] for d in DIRECTIONS}
    rr = {n: [] for n in rr_servers}
    ms = {n: [] for n in MULTISTACK}
    states = ("no_xdp", "trivial_xdp", "xdpstack")
    kt = {s: {d: [] for d in DIRECTIONS} for s in states}
    count = min(MAX_RR_ROUNDS, int(duration * 200_000))
    with Bed() as bed:
        tools = Tools(bed, cpus)
        tools.start_servers(busy_poll)
        for rnd in range(rounds):
            for d in DIRECTIONS:
                for n in (stacks if rnd % 2 == 0 else stacks[::-1]):
                    bulk[n][d].append(tools.bulk(n, d, duration))
                iperf_attached[d].append(tools.iperf(d, duration))
            for n in (rr_servers if rnd % 2 == 0 else rr_servers[::-1]):
                if n == "userstack_busy_poll":
                    tools.resume(n)
                try:
                    rr[n].append(tools.rr(tools.port(n), duration, count, rr_size))
                finally:
                    if n == "userstack_busy_poll":
                        tools.pause(n)
        if multistack and busy_poll:
            # The peer's veth gets the demux only now: attached, it costs the dut veth its TSO,
            # which the figures above must not pay.
            bed.attach_demux("peer")
            try:
                for rnd in range(rounds):
                    for n in (MULTISTACK if rnd % 2 == 0 else MULTISTACK[::-1]):
                        if n == "kernel":
                            ms[n].append(tools.rr(PORT_KERNEL, duration, count, rr_size))
                            continue
                        tools.resume("userstack_busy_poll")
                        try:
                            ms[n].append(tools.rr_user_client(PORT_US_BUSY, duration, count, rr_size))
                        finally:
                            tools.pause("userstack_busy_poll")
            finally:
                bed.detach_demux("peer")
        if kernel_traffic:
            # the stacks' claims would keep the demux attached: stop them first
            for launch in tools.launches.values():
                if launch.child.poll() is None:
                    launch.child.send_signal(18)
                bed.close_launch(launch)
            bed.detach_demux()
            for rnd in range(rounds):
                order = states if rnd % 2 == 0 else states[::-1]
                for s in order:
                    if s == "trivial_xdp":
                        bed.attach_trivial()
                    elif s == "xdpstack":
                        bed.attach_demux()
                    try:
                        for d in DIRECTIONS:
                            kt[s][d].append(tools.iperf(d, duration))
                    finally:
                        if s == "trivial_xdp":
                            bed.detach_trivial()
                        elif s == "xdpstack":
                            bed.detach_demux()
    return summarize(bulk, iperf_attached, rr, kt if kernel_traffic else None, duration, rounds, rr_size,
                     cpus, ms if multistack and busy_poll else None)


def _rr_cells(runs: dict, rr_size: int, baseline: str = "kernel") -> dict:
    """p50/p90/p99/min/mean medians per server; p50/p99 ratios against the baseline's runs."""
    k50 = [r["rtt_us"]["p50"] for r in runs[baseline]]
    k99 = [r["rtt_us"]["p99"] for r in runs[baseline]]
    out = {}
    for n, rs in runs.items():
        cell = {"size": rr_size, "rounds_per_run": round(median(r["rounds"] for r in rs))}
        for p in ("p50", "p90", "p99", "min", "mean"):
            cell[f"{p}_us"] = round(median(r["rtt_us"][p] for r in rs), 2)
        if n != baseline:
            cell["p50_ratio_vs_kernel"] = median_ratio([r["rtt_us"]["p50"] for r in rs], k50)
            cell["p99_ratio_vs_kernel"] = median_ratio([r["rtt_us"]["p99"] for r in rs], k99)
        out[n] = cell
    return out


def summarize(bulk, iperf_attached, rr, kt, duration, rounds, rr_size, cpus, ms=None) -> dict:
    out: dict = {"duration_s": duration, "rounds": rounds, "server_cpu": cpus[0], "client_cpu": cpus[1],
                 "bulk": {}, "rr": {}}
    for d in DIRECTIONS:
        cell = {}
        for n, runs in bulk.items():
            cell[n] = {"gbit_per_s": round(median(r["gbit_per_s"] for r in runs[d]), 3),
                       "server_cpu_s": round(median(r["server_cpu_s"] for r in runs[d]), 3),
                       "runs_gbit_per_s": [r["gbit_per_s"] for r in runs[d]]}
        cell["iperf3_kernel"] = {"gbit_per_s": round(median(iperf_attached[d]), 3),
                                 "runs_gbit_per_s": iperf_attached[d]}
        us = [r["gbit_per_s"] for r in bulk["userstack"][d]]
        cell["userstack"]["ratio_vs_kernel"] = median_ratio(us, [r["gbit_per_s"] for r in bulk["kernel"][d]])
        cell["userstack"]["ratio_vs_iperf3_kernel"] = median_ratio(us, iperf_attached[d])
        out["bulk"][d] = cell
    out["rr"] = _rr_cells(rr, rr_size)
    if ms is not None:
        out["rr_multistack"] = _rr_cells(ms, rr_size)
    if kt is not None:
        out["kernel_traffic"] = {}
        for d in DIRECTIONS:
            cell = {s: {"gbit_per_s": round(median(v[d]), 3), "runs_gbit_per_s": v[d]} for s, v in kt.items()}
            cell["trivial_xdp"]["ratio_vs_no_xdp"] = median_ratio(kt["trivial_xdp"][d], kt["no_xdp"][d])
            cell["xdpstack"]["ratio_vs_no_xdp"] = median_ratio(kt["xdpstack"][d], kt["no_xdp"][d])
            cell["xdpstack"]["ratio_vs_trivial_xdp"] = median_ratio(kt["xdpstack"][d], kt["trivial_xdp"][d])
            out["kernel_traffic"][d] = cell
    b, r = out["bulk"], out["rr"]["userstack"]
    t = {"min_throughput_ratio_vs_kernel": TARGET_THROUGHPUT_RATIO_VS_KERNEL,
         "max_p50_rtt_ratio_vs_kernel": TARGET_P50_RTT_RATIO_VS_KERNEL,
         "throughput_ratio_vs_kernel": {d: b[d]["userstack"]["ratio_vs_kernel"] for d in DIRECTIONS},
         "p50_rtt_ratio_vs_kernel": r["p50_ratio_vs_kernel"]}
    t["throughput_met"] = all(v >= TARGET_THROUGHPUT_RATIO_VS_KERNEL
                              for v in t["throughput_ratio_vs_kernel"].values())
    t["p50_rtt_met"] = r["p50_ratio_vs_kernel"] <= TARGET_P50_RTT_RATIO_VS_KERNEL
    if "userstack_busy_poll" in out["rr"]:
        t["p50_rtt_ratio_vs_kernel_busy_poll"] = out["rr"]["userstack_busy_poll"]["p50_ratio_vs_kernel"]
    if "rr_multistack" in out:
        m = out["rr_multistack"]["userstack_both_busy_poll"]["p50_ratio_vs_kernel"]
        t["p50_rtt_ratio_vs_kernel_multistack"] = m
        t["p50_rtt_multistack_met"] = m <= TARGET_P50_RTT_RATIO_VS_KERNEL
    if kt is not None:
        t["min_ratio_vs_trivial_xdp"] = TARGET_RATIO_VS_TRIVIAL_XDP
        t["kernel_traffic_ratio_vs_trivial_xdp"] = {
            d: out["kernel_traffic"][d]["xdpstack"]["ratio_vs_trivial_xdp"] for d in DIRECTIONS}
        t["kernel_traffic_met"] = all(v >= TARGET_RATIO_VS_TRIVIAL_XDP
                                      for v in t["kernel_traffic_ratio_vs_trivial_xdp"].values())
    out["targets"] = t
    return out


def format_text(result: dict) -> str:
    r = result
    lines = [f"TCP, one connection, {r['duration_s']} s per run, median of {r['rounds']} rounds; "
             f"servers on CPU {r['server_cpu']}, kernel clients in the peer namespace on CPU "
             f"{r['client_cpu']}",
             "bulk (Gbit/s)        user stack  kernel (same tool)  iperf3 kernel  user/kernel"]
    for d in DIRECTIONS:
        c = r["bulk"][d]
        lines.append(f"  {d:<19}{c['userstack']['gbit_per_s']:>10.2f}{c['kernel']['gbit_per_s']:>20.2f}"
                     f"{c['iperf3_kernel']['gbit_per_s']:>15.2f}{c['userstack']['ratio_vs_kernel']:>12.2f}x")
    lines.append(f"request/response, {r['rr']['kernel']['size']} bytes (us)   p50      p99     mean"
                 "   p50 vs kernel")
    names = {"userstack": "user stack", "userstack_busy_poll": "user stack, busy poll", "kernel": "kernel"}
    for n, c in r["rr"].items():
        ratio = f"{c['p50_ratio_vs_kernel']:.2f}x" if "p50_ratio_vs_kernel" in c else ""
        lines.append(f"  {names[n]:<28}{c['p50_us']:>8.1f}{c['p99_us']:>9.1f}{c['mean_us']:>9.1f}{ratio:>15}")
    if "rr_multistack" in r:
        lines.append("  MultiStack: client and server on their own stacks (busy poll), each on its CPU")
        ms_names = {"userstack_both_busy_poll": "user stack <-> user stack", "kernel": "kernel <-> kernel"}
        for n, c in r["rr_multistack"].items():
            ratio = f"{c['p50_ratio_vs_kernel']:.2f}x" if "p50_ratio_vs_kernel" in c else ""
            lines.append(f"  {ms_names[n]:<28}{c['p50_us']:>8.1f}{c['p99_us']:>9.1f}{c['mean_us']:>9.1f}"
                         f"{ratio:>15}")
    if "kernel_traffic" in r:
        lines.append("kernel iperf3 through the dut veth (Gbit/s)  nothing  trivial XDP  xdpstack"
                     "  vs trivial")
        for d in DIRECTIONS:
            c = r["kernel_traffic"][d]
            lines.append(f"  {d:<43}{c['no_xdp']['gbit_per_s']:>8.2f}{c['trivial_xdp']['gbit_per_s']:>13.2f}"
                         f"{c['xdpstack']['gbit_per_s']:>10.2f}{c['xdpstack']['ratio_vs_trivial_xdp']:>10.2f}x")
    t = r["targets"]
    thr = ", ".join(f"{d} {v:.2f}x" for d, v in t["throughput_ratio_vs_kernel"].items())
    tl = (f"targets: throughput >= kernel ({thr}: {met(t['throughput_met'])}); p50 RTT <= "
          f"{t['max_p50_rtt_ratio_vs_kernel']}x kernel ({t['p50_rtt_ratio_vs_kernel']:.2f}x: "
          f"{met(t['p50_rtt_met'])}")
    if "p50_rtt_ratio_vs_kernel_busy_poll" in t:
        tl += f"; busy poll {t['p50_rtt_ratio_vs_kernel_busy_poll']:.2f}x"
    if "p50_rtt_ratio_vs_kernel_multistack" in t:
        tl += (f"; user stack to user stack {t['p50_rtt_ratio_vs_kernel_multistack']:.2f}x: "
               f"{met(t['p50_rtt_multistack_met'])}")
    tl += ")"
    if "kernel_traffic_met" in t:
        tl += (f"; kernel traffic with xdpstack >= {t['min_ratio_vs_trivial_xdp']}x trivial XDP "
               f"({', '.join(f'{d} {v:.2f}x' for d, v in t['kernel_traffic_ratio_vs_trivial_xdp'].items())}: "
               f"{met(t['kernel_traffic_met'])})")
    lines.append(tl)
    return "\n".join(lines)


if __name__ == "__main__":
    import sys
    res = run(int(sys.argv[1]) if len(sys.argv) > 1 else 5, int(sys.argv[2]) if len(sys.argv) > 2 else 3)
    with contextlib.suppress(BrokenPipeError):
        print(format_text(res))
        print(json.dumps(res, indent=1), file=sys.stderr)
