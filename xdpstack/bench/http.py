"""`xdpstack bench http`: userstack-httpd on the user-level stack against the same server on kernel
sockets and against nginx, with wrk as the client.

    ns dut (demux attached on its veth)                         ns peer
    userstack-httpd on its own stack, :80   (the launcher)  <-  wrk -t1 -cN, pinned to the other CPU
    userstack-httpd --kernel, :8080         (epoll)         <-
    nginx, 1 worker, :8081                  (access log off)<-
    every server pinned to one CPU (taskset); all three run all the time, idle when not measured

Each measurement is `wrk -t1 -c{10,100} -d{duration}` for a 64-byte body, with keep-alive and with
`Connection: close` (a new connection per request). A round measures every (mode, connections,
server) once, the servers in a rotating order; figures are medians over rounds, and every ratio is
the median of per-round ratios (each server against its baseline measured in the same round), so
slow drifts of a shared machine cancel out.

CPU: utime + stime of the server's processes (nginx: master and worker) from /proc/PID/stat,
read before and after each wrk run, and the busy and softirq time of the server's CPU from
/proc/stat. This kernel accounts CPU time by ticks (no CONFIG_IRQ_TIME_ACCOUNTING): softirq work
(packet processing) that runs while the server's process is on its CPU, in its syscalls or
interrupting it, is charged to the process's stime; softirq run from idle or by ksoftirqd is charged
to no server process. On veth the receive side of a packet runs on the CPU that sent it, so each
server's CPU also does the receive processing of wrk's TCP for the responses it sends, and wrk's CPU
does the receive processing (for the user stack: the demux, the port and the AF_XDP copy) of the
requests. The core figures (`server_core_busy_s`) include all of that; the process figures are
what "server CPU time" means below (requests per server CPU-second).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import tempfile
import time
from pathlib import Path

from xdpstack.bench import met
from xdpstack.bench._bed import (
    Bed,
    BenchError,
    CpuSample,
    children,
    cpus_for_bench,
    median,
    median_ratio,
    require,
    stop_process,
    venv_bin,
    wait_ready,
)

SERVERS = ("userstack", "kernel_server", "nginx")
BASELINES = {"userstack": ("nginx", "kernel_server"), "kernel_server": ("nginx",)}
MODES = ("keepalive", "close")
PORTS = {"userstack": 80, "kernel_server": 8080, "nginx": 8081}
BODY_BYTES = 64
TARGET_RATIO_VS_NGINX = 2.0
TARGET_CPU_RATIO_VS_NGINX = 2.0
# Measured on this 2-core VM (the issue): nginx, 1 worker, keep-alive.
REFERENCE_NGINX_KEEPALIVE_RPS = (115_000, 125_000)

WRK_SCRIPT = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, "connect_errors": %d, "read_errors": %d, ' ..
    '"write_errors": %d, "status_errors": %d, "timeouts": %d, "p50_us": %d, "p90_us": %d, ' ..
    '"p99_us": %d, "mean_us": %.2f, "max_us": %d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max))
end
"""

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 65;
    tcp_nodelay on;
    server {{
        listen {addr}:{port} backlog=4096;
        default_type text/plain;
        location / {{ return 200 "{body}"; }}
    }}
}}
"""


def body(n: int = BODY_BYTES) -> str:
    """The body every server sends: n bytes, the same pattern as userstack-httpd --body-size."""
    pat = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+/"
    return "".join("\n" if (i + 1) % 64 == 0 else pat[i % 64] for i in range(n))


class Servers:
    """The three servers in the bed, pinned to one CPU; pids for CPU accounting."""

    def __init__(self, bed: Bed, cpu: int, tmp: Path):
        self.bed, self.cpu, self.tmp = bed, cpu, tmp
        self.pids: dict[str, list[int]] = {}
        self.procs: dict[str, subprocess.Popen] = {}
        self.launch = None

    def start(self):
        httpd = venv_bin("userstack-httpd")
        addr = self.bed.tb.dut.addr4
        pin = ["taskset", "-c", str(self.cpu)]
        # through sh so that its counters (printed on exit) go to a file, not to our stdout
        out, err = self.tmp / "httpd.json", self.tmp / "httpd.err"
        cmd = f"exec {' '.join(pin)} {httpd} --body-size {BODY_BYTES} --quiet >{out} 2>{err}"
        self.launch = self.bed.launch(["sh", "-c", cmd], tcp=[PORTS["userstack"]])
        self.pids["userstack"] = [self.launch.child.pid]
        p = self.bed.popen("dut", [*pin, httpd, "--kernel", "--listen", f"{addr}:{PORTS['kernel_server']}",
                                   "--body-size", str(BODY_BYTES), "--quiet"])
        self.procs["kernel_server"] = p
        self.pids["kernel_server"] = [p.pid]
        conf = self.tmp / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=self.tmp, addr=addr, port=PORTS["nginx"],
                                          body=body().replace("\n", "\\n")))
        p = self.bed.popen("dut", [*pin, "nginx", "-e", str(self.tmp / "error.log"), "-p", str(self.tmp),
                                   "-c", str(conf)])
        self.procs["nginx"] = p
        for name in SERVERS:
            wait_ready(lambda n=name: self._answers(n), what=name)
        # nginx's master forks its worker: account both
        self.pids["nginx"] = [p.pid, *children(p.pid)]
        if len(self.pids["nginx"]) != 2:
            raise BenchError(f"expected nginx master + 1 worker, found pids {self.pids['nginx']}")

    def url(self, name: str) -> str:
        return f"http://{self.bed.tb.dut.addr4}:{PORTS[name]}/"

    def _answers(self, name: str) -> bool:
        self.alive(name)
        r = self.bed.run("peer", ["curl", "-s", "-m", "2", self.url(name)], timeout=10)
        if r.returncode == 0 and len(r.stdout) != BODY_BYTES:
            raise BenchError(f"{name} answered {len(r.stdout)} bytes, not {BODY_BYTES}")
        return r.returncode == 0

    def alive(self, name: str):
        p = self.launch.child if name == "userstack" else self.procs[name]
        if p.poll() is not None:
            if name == "userstack":
                err = (self.tmp / "httpd.err").read_text()[-500:]
            else:
                err = stop_process(p)[1][-500:]
            raise BenchError(f"{name} exited with status {p.returncode} {err}".strip())

    def stop_userstack(self) -> dict:
        """Stop the user-stack server (the launcher undoes its stack); its final counters."""
        self.bed.close_launch(self.launch)
        with contextlib.suppress(OSError, ValueError, IndexError):
            return json.loads((self.tmp / "httpd.json").read_text().strip().splitlines()[-1])
        return {}


def wrk(bed: Bed, url: str, conns: int, duration: int, close: bool, cpu: int, script: Path) -> dict:
    argv = ["taskset", "-c", str(cpu), "wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--timeout", "5s",
            "-s", str(script)]
    if close:
        argv += ["-H", "Connection: close"]
    r = bed.run("peer", [*argv, url], timeout=duration + 60)
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("{")), None)
    if r.returncode != 0 or line is None:
        raise BenchError(f"wrk failed ({r.returncode}): {r.stderr.strip()[-300:] or r.stdout[-300:]}")
    res = json.loads(line)
    res["rps"] = res["requests"] / (res["duration_us"] / 1e6)
    res["errors"] = sum(res[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors",
                                         "timeouts"))
    return res


def _measure(bed: Bed, servers: Servers, name: str, mode: str, conns: int, duration: int,
             cpus: tuple[int, int], script: Path) -> dict:
    servers.alive(name)
    sample = CpuSample(servers.pids[name], {"server": cpus[0], "client": cpus[1]}).start()
    w = wrk(bed, servers.url(name), conns, duration, mode == "close", cpus[1], script)
    cpu = sample.stop()
    servers.alive(name)
    secs = w["duration_us"] / 1e6

    def per(cpu_s: float) -> int | None:
        return round(w["requests"] / cpu_s) if cpu_s else None
    return {"rps": round(w["rps"]), "p50_us": w["p50_us"], "p99_us": w["p99_us"], "mean_us": w["mean_us"],
            "errors": w["errors"], "requests": w["requests"],
            "bytes_per_response": round(w["bytes"] / max(w["requests"], 1), 1),
            "server_cpu_s": cpu["server_cpu_s"],
            "server_cpu_util": round(cpu["server_cpu_s"] / secs, 3),
            "requests_per_server_cpu_s": per(cpu["server_cpu_s"]),
            "server_core_busy_s": cpu["server_core_busy_s"],
            "server_core_softirq_s": cpu["server_core_softirq_s"],
            "client_core_busy_s": cpu["client_core_busy_s"],
            "requests_per_server_core_busy_s": per(cpu["server_core_busy_s"])}


def run(duration: float = 5, rounds: int = 3, conns: tuple[int, ...] = (10, 100),
        modes: tuple[str, ...] = MODES, server_cpu: int | None = None, client_cpu: int | None = None) -> dict:
    """Measure; see the module doc. Bounded: rounds x modes x conns x 3 wrk runs of `duration`
    seconds (rounded up to whole seconds: wrk takes no fractions)."""
    if duration <= 0 or rounds < 1 or not conns or not modes:
        raise ValueError("duration and rounds must be positive, conns and modes non-empty")
    duration = math.ceil(duration)
    if any(m not in MODES for m in modes):
        raise ValueError(f"modes are {MODES}")
    if duration > 600 or rounds > 50:
        raise ValueError("at most 600 s per run and 50 rounds")
    require("wrk", "nginx", "taskset", "curl")
    venv_bin("userstack-httpd")
    cpus = cpus_for_bench(server_cpu, client_cpu)
    runs: dict = {s: {m: {c: [] for c in conns} for m in modes} for s in SERVERS}
    t_start = time.time()
    with tempfile.TemporaryDirectory(prefix="xdpstack-bench-http-") as tmpd, Bed() as bed:
        tmp = Path(tmpd)
        os.chmod(tmp, 0o755)                   # nginx's worker (nobody) reads nothing here, but looks
        script = tmp / "report.lua"
        script.write_text(WRK_SCRIPT)
        servers = Servers(bed, cpus[0], tmp)
        servers.start()
        for name in SERVERS:                    # warm-up: caches, ARP, TCP metrics
            wrk(bed, servers.url(name), max(conns), 1, False, cpus[1], script)
        for rnd in range(rounds):
            for mode in modes:
                for c in conns:
                    order = SERVERS[rnd % 3:] + SERVERS[:rnd % 3]
                    for name in order:
                        m = _measure(bed, servers, name, mode, c, duration, cpus, script)
                        runs[name][mode][c].append(m)
        counters = servers.stop_userstack()
    out = summarize(runs, duration, rounds, cpus, time.time() - t_start)
    out["userstack_httpd_counters"] = counters
    return out


FIELDS = ("rps", "p50_us", "p99_us", "server_cpu_s", "server_cpu_util", "requests_per_server_cpu_s",
          "server_core_busy_s", "server_core_softirq_s", "requests_per_server_core_busy_s",
          "client_core_busy_s", "bytes_per_response")


def summarize(runs: dict, duration: int, rounds: int, cpus: tuple[int, int], elapsed: float) -> dict:
    results: dict = {}
    for name, by_mode in runs.items():
        results[name] = {}
        for mode, by_conns in by_mode.items():
            results[name][mode] = {}
            for c, rs in by_conns.items():
                cell = {f: (round(median(r[f] for r in rs), 3) if isinstance(rs[0][f], float)
                            else round(median(r[f] for r in rs))) for f in FIELDS if rs[0][f] is not None}
                cell["errors"] = sum(r["errors"] for r in rs)
                cell["runs_rps"] = [r["rps"] for r in rs]
                for base in BASELINES.get(name, ()):
                    b = runs[base][mode][c]
                    cell[f"ratio_vs_{base}"] = median_ratio([r["rps"] for r in rs], [r["rps"] for r in b])
                    for prefix, f in (("cpu_", "requests_per_server_cpu_s"),
                                      ("core_", "requests_per_server_core_busy_s")):
                        cell[f"{prefix}ratio_vs_{base}"] = median_ratio([r[f] for r in rs], [r[f] for r in b])
                results[name][mode][str(c)] = cell
    us = results["userstack"]
    ka = us.get("keepalive", {})
    targets = {
        "min_ratio_vs_nginx_keepalive": TARGET_RATIO_VS_NGINX,
        "min_cpu_ratio_vs_nginx": TARGET_CPU_RATIO_VS_NGINX,
        "ratio_vs_nginx_keepalive": {c: v["ratio_vs_nginx"] for c, v in ka.items()},
        "cpu_ratio_vs_nginx": {f"{m}_{c}": v["cpu_ratio_vs_nginx"]
                               for m, d in us.items() for c, v in d.items()},
    }
    targets["ratio_vs_nginx_keepalive_met"] = bool(ka) and all(
        v >= TARGET_RATIO_VS_NGINX for v in targets["ratio_vs_nginx_keepalive"].values())
    targets["cpu_ratio_vs_nginx_met"] = all(v >= TARGET_CPU_RATIO_VS_NGINX
                                            for v in targets["cpu_ratio_vs_nginx"].values())
    return {"duration_s": duration, "rounds": rounds, "body_bytes": BODY_BYTES, "server_cpu": cpus[0],
            "client_cpu": cpus[1], "client": "wrk -t1, in the peer namespace", "elapsed_s": round(elapsed, 1),
            "cpu_accounting": "server_cpu_s: utime+stime of the server's processes (tick-based: includes "
                              "softirq work that interrupts them, not softirq run from idle/ksoftirqd); "
                              "server_core_*: everything the server's CPU did (/proc/stat)",
            "reference_nginx_keepalive_rps": list(REFERENCE_NGINX_KEEPALIVE_RPS),
            "servers": results, "targets": targets}


def format_text(result: dict) -> str:
    r = result
    lines = [f"HTTP, {r['body_bytes']}-byte body, wrk -t1 from the peer namespace (CPU {r['client_cpu']}), "
             f"servers on CPU {r['server_cpu']}; {r['duration_s']} s per run, "
             f"median of {r['rounds']} rounds",
             f"{'server':<15}{'mode':<10}{'conns':>5}{'req/s':>10}{'p50 us':>8}{'p99 us':>8}"
             f"{'srv CPU':>8}{'req/CPU-s':>11}{'core busy':>10}  ratios"]
    names = {"userstack": "user stack", "kernel_server": "same, kernel", "nginx": "nginx"}
    for mode in ("keepalive", "close"):
        conns = next(iter(r["servers"].values())).get(mode, {})
        for c in conns:
            for name in SERVERS:
                v = r["servers"][name][mode][c]
                ratios = []
                for base in BASELINES.get(name, ()):
                    short = "nginx" if base == "nginx" else "kernel"
                    ratios.append(f"{v[f'ratio_vs_{base}']:.2f}x req/s, {v[f'cpu_ratio_vs_{base}']:.2f}x "
                                  f"req/CPU-s vs {short}")
                err = f"  ({v['errors']} errors)" if v["errors"] else ""
                per_cpu = v.get("requests_per_server_cpu_s", 0)
                lines.append(f"{names[name]:<15}{mode:<10}{c:>5}{v['rps']:>10,}{v['p50_us']:>8}{v['p99_us']:>8}"
                             f"{v['server_cpu_util'] * 100:>7.0f}%{per_cpu:>11,}"
                             f"{v['server_core_busy_s']:>9.2f}s  {'; '.join(ratios)}{err}")
    t = r["targets"]
    ka = ", ".join(f"{c} conns {x:.2f}x" for c, x in t["ratio_vs_nginx_keepalive"].items())
    eff = ", ".join(f"{k} {x:.2f}x" for k, x in t["cpu_ratio_vs_nginx"].items())
    lines.append(f"targets: >= {t['min_ratio_vs_nginx_keepalive']}x nginx req/s with keep-alive ({ka}: "
                 f"{met(t['ratio_vs_nginx_keepalive_met'])}); >= {t['min_cpu_ratio_vs_nginx']}x nginx "
                 f"req per server CPU-second ({eff}: {met(t['cpu_ratio_vs_nginx_met'])})")
    lines.append("srv CPU: utime+stime of the server's processes / run time (tick-based, includes softirq "
                 "that interrupts them); core busy: all work on the server's CPU (/proc/stat), softirq "
                 "included")
    return "\n".join(lines)


if __name__ == "__main__":
    import sys
    res = run(int(sys.argv[1]) if len(sys.argv) > 1 else 5, int(sys.argv[2]) if len(sys.argv) > 2 else 3)
    with contextlib.suppress(BrokenPipeError):
        print(format_text(res))
        print(json.dumps(res, indent=1), file=sys.stderr)
