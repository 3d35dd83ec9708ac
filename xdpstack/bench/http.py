"""`xdpstack bench http`: userstack-httpd on the user-level stack against the same server on kernel
sockets and against nginx, with wrk as the client.

    ns dut (demux attached on its veth)                         ns peer
    userstack-httpd on its own stack, :80   (the launcher)  <-  wrk -t1 -cN, pinned to the other CPU
    userstack-httpd --kernel, :8080         (epoll)         <-
    nginx, 1 worker, :8081                  (access log off)<-
    every server pinned to one CPU (taskset); all three run all the time, idle when not measured

Loads, each `wrk -t1 -c{10,50,100} -d{duration}` for a 64-byte body:
- keepalive: one request at a time per connection, connections kept open;
- close: `Connection: close`, a new TCP connection per request;
- pipeline: HTTP/1.1 pipelining, 16 requests per write, as TechEmpower's plaintext test does (a wrk
  Lua script builds the batch once in init() with wrk.format and sends it in request()). wrk's cost
  per request falls by the batching, so this is the load meant to make the server, not wrk, the
  limit. Before measuring, one short pipelined run per server with a response() callback checks
  that every response is a 200 with the 64-byte body (not in the measured runs: handing every
  response to Lua slows wrk). Read the pipelined ratio to nginx with its design in mind: nginx
  (1.22, this config) answers a pipelined batch with one writev per response (strace: 38,206
  writev for 38,199 requests), userstack-httpd with one write per batch it read, on either
  transport; the ratio measures that as well as the stacks.
Every measured run also checks wrk's byte count against the size of the server's one response
(taken with curl): at least requests x size, at most one pipeline batch per connection more (the
responses in flight when wrk stops).

CPU: the busy time of BOTH cores from /proc/stat (user + system + irq + softirq, xdpstack.bench.cpu)
over each wrk run, per request. This is the fair figure on veth: a packet is received on the CPU
that sent it, so the kernel's TCP receive of the requests (nginx, the kernel-socket server) or the
demux and AF_XDP copy (the user stack) run on wrk's core, and wrk's receive of the responses on the
server's core; a per-process or per-core figure charges part of that to nobody or to the wrong
side. The earlier figure, requests per server-process CPU-second, left nginx's TCP receive
uncharged (biased against the user stack); it is kept, with each core's share, as context. wrk's
own work is in every contender's figure (more per request where a server sends more packets).

Client-bound: wrk's core (its work plus the receive processing veth runs there) at >= 95 % busy
means the requests/s is wrk's, not the server's. A requests/s ratio is marked client-bound when any
run of either contender in it was; the server-bound target is met only by ratios that are not.

A round measures every (mode, connections, server) once, the servers in a rotating order; figures
are medians over rounds, and every ratio is the median of per-round ratios (each server against
its baseline measured in the same round), so slow drifts of a shared machine cancel out.
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

from xdpstack.bench import Progress, met, say, target
from xdpstack.bench._bed import (
    Bed,
    BenchError,
    cpus_for_bench,
    median,
    median_ratio,
    require,
    stop_process,
    venv_bin,
    wait_ready,
)
from xdpstack.bench.cpu import Meter, children

SERVERS = ("userstack", "kernel_server", "nginx")
LABELS = {"userstack": "userstack-httpd", "kernel_server": "same, kernel sockets", "nginx": "nginx"}
BASELINES = {"userstack": ("nginx", "kernel_server"), "kernel_server": ("nginx",)}
MODES = ("keepalive", "close", "pipeline")
CONNS = (10, 50, 100)
DURATION, ROUNDS = 3, 3
PIPELINE_DEPTH = 16
PORTS = {"userstack": 80, "kernel_server": 8080, "nginx": 8081}
BODY_BYTES = 64
TARGET_RATIO = 2.0

# wrk's Lua: every run reports its summary as one JSON line; the pipelined runs send a batch of
# PIPELINE_DEPTH requests per write; the check run counts responses that are not 200 + the body.
WRK_DONE = r"""
local threads = {}
setup = function(thread) table.insert(threads, thread) end
done = function(summary, latency, requests)
  local e = summary.errors
  local seen, non200, badbody = 0, 0, 0
  for _, t in ipairs(threads) do
    seen = seen + (t:get("seen") or 0)
    non200 = non200 + (t:get("non200") or 0)
    badbody = badbody + (t:get("badbody") or 0)
  end
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, "connect_errors": %d, "read_errors": %d, ' ..
    '"write_errors": %d, "status_errors": %d, "timeouts": %d, "p50_us": %d, "p90_us": %d, ' ..
    '"p99_us": %d, "mean_us": %.2f, "max_us": %d, "checked": %d, "non_200": %d, "bad_body": %d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max, seen, non200, badbody))
end
"""
WRK_PIPELINE = r"""
init = function(args)
  local r = {}
  for i = 1, %(depth)d do r[i] = wrk.format() end
  req = table.concat(r)
end
request = function() return req end
"""
WRK_CHECK = r"""
seen, non200, badbody = 0, 0, 0
response = function(status, headers, body)
  seen = seen + 1
  if status ~= 200 then non200 = non200 + 1 end
  if #body ~= %(body)d then badbody = badbody + 1 end
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


def wrk_scripts(tmp: Path) -> dict[str, Path]:
    """The Lua scripts: "plain" (keepalive, close), "pipeline", "check" (pipelined, every response
    checked)."""
    texts = {"plain": WRK_DONE,
             "pipeline": WRK_DONE + WRK_PIPELINE % {"depth": PIPELINE_DEPTH},
             "check": WRK_DONE + WRK_PIPELINE % {"depth": PIPELINE_DEPTH} + WRK_CHECK % {"body": BODY_BYTES}}
    out = {}
    for name, text in texts.items():
        out[name] = tmp / f"{name}.lua"
        out[name].write_text(text)
    return out


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

    def response_bytes(self, name: str, close: bool) -> int:
        """The size of one whole response (head and body) as the server sends it, for wrk's count."""
        argv = ["curl", "-s", "-o", "/dev/null", "-m", "2", "-w",
                "%{http_code} %{size_header} %{size_download}",
                *(["-H", "Connection: close"] if close else []), self.url(name)]
        r = self.bed.run("peer", argv, timeout=10)
        code, head, size = (r.stdout.split() + ["", "", ""])[:3]
        if r.returncode != 0 or code != "200" or size != str(BODY_BYTES):
            raise BenchError(f"{name}: curl failed ({r.returncode}): {r.stdout[:200]!r}")
        return int(head) + int(size)

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


def wrk(bed: Bed, url: str, conns: int, duration: int, mode: str, cpu: int, script: Path) -> dict:
    argv = ["taskset", "-c", str(cpu), "wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--timeout", "5s",
            "-s", str(script)]
    if mode == "close":
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


def bytes_match(w: dict, size: int, conns: int, mode: str) -> bool:
    """wrk read every counted response whole, and at most the batches in flight at its end more."""
    in_flight = conns * (PIPELINE_DEPTH if mode == "pipeline" else 1)
    return w["requests"] * size <= w["bytes"] <= (w["requests"] + in_flight) * size


def check_pipeline(bed: Bed, servers: Servers, name: str, cpu: int, script: Path) -> dict:
    """One short pipelined run with every response handed to Lua: all 200 with the 64-byte body?"""
    w = wrk(bed, servers.url(name), 10, 1, "pipeline", cpu, script)
    ok = w["checked"] > 0 and w["non_200"] == 0 and w["bad_body"] == 0 and w["errors"] == 0
    return {"responses": w["checked"], "non_200": w["non_200"], "bad_body": w["bad_body"],
            "errors": w["errors"], "ok": ok}


def measure(bed: Bed, servers: Servers, name: str, mode: str, conns: int, duration: int,
            cpus: tuple[int, int], script: Path, size: int) -> dict:
    """One wrk run against one server: rates, latency, and the CPU of both cores per request."""
    servers.alive(name)
    meter = Meter(roles={"server": cpus[0], "client": cpus[1]}, pids=servers.pids[name]).start()
    w = wrk(bed, servers.url(name), conns, duration, mode, cpus[1], script)
    usage = meter.stop()
    servers.alive(name)
    cpu = usage.fields(w["requests"], "request")
    cpu["procs_cpu_us_per_request"] = round(usage.procs_s * 1e6 / w["requests"], 3) if w["requests"] else None
    # pipelined, wrk times a batch of requests, not one, and its percentiles come out broken (p99 0)
    lat = {} if mode == "pipeline" else {k: w[k] for k in ("p50_us", "p99_us", "mean_us")}
    return {"rps": round(w["rps"]), **lat, "errors": w["errors"], "requests": w["requests"],
            "bytes_per_response": round(w["bytes"] / max(w["requests"], 1), 1),
            "bytes_ok": bytes_match(w, size, conns, mode), **cpu}


def run(duration: float = DURATION, rounds: int = ROUNDS, conns: tuple[int, ...] = CONNS,
        modes: tuple[str, ...] = MODES, server_cpu: int | None = None, client_cpu: int | None = None,
        progress: Progress | None = None) -> dict:
    """Measure; see the module doc. Bounded: rounds x modes x conns x 3 wrk runs of `duration`
    seconds (rounded up to whole seconds: wrk takes no fractions), plus 2 s per server of warm-up
    and checks."""
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
        scripts = wrk_scripts(tmp)
        say(progress, "http: starting userstack-httpd, the kernel-socket server and nginx")
        servers = Servers(bed, cpus[0], tmp)
        servers.start()
        sizes = {(s, m): servers.response_bytes(s, m == "close") for s in SERVERS for m in modes}
        checks = {}
        for name in SERVERS:                    # warm-up (caches, ARP, TCP metrics), then the check
            say(progress, f"http warm-up and pipelining check, {name}")
            wrk(bed, servers.url(name), max(conns), 1, "keepalive", cpus[1], scripts["plain"])
            checks[name] = check_pipeline(bed, servers, name, cpus[1], scripts["check"])
        for rnd in range(rounds):
            for mode in modes:
                script = scripts["pipeline" if mode == "pipeline" else "plain"]
                for c in conns:
                    for name in SERVERS[rnd % 3:] + SERVERS[:rnd % 3]:
                        say(progress, f"http {mode} c={c} {name}, round {rnd + 1}/{rounds}")
                        runs[name][mode][c].append(measure(bed, servers, name, mode, c, duration, cpus,
                                                           script, sizes[name, mode]))
        counters = servers.stop_userstack()
    out = summarize(runs, duration, rounds, cpus, time.time() - t_start)
    out["pipeline_check"] = checks
    out["response_bytes"] = {f"{s}.{m}": n for (s, m), n in sizes.items()}
    out["userstack_httpd_counters"] = counters
    out["targets"] = targets(out)
    return out


FIELDS = ("rps", "p50_us", "p99_us", "cpu_us_per_request", "server_cpu_us_per_request",
          "client_cpu_us_per_request", "procs_cpu_us_per_request", "server_core_util", "client_core_util",
          "server_core_softirq_s", "client_core_softirq_s", "cores_busy_s", "bytes_per_response")


def cell_of(rs: list[dict]) -> dict:
    """Medians over rounds of one (server, mode, connections)."""
    cell = {}
    for f in FIELDS:
        if any(r.get(f) is None for r in rs):
            continue
        v = median(r[f] for r in rs)
        cell[f] = round(v) if f in ("rps", "p50_us", "p99_us") else round(v, 3)
    cell["errors"] = sum(r["errors"] for r in rs)
    cell["bytes_ok"] = all(r["bytes_ok"] for r in rs)
    cell["client_bound"] = any(r["client_bound"] for r in rs)
    cell["runs_rps"] = [r["rps"] for r in rs]
    return cell


def ratios(rs: list[dict], base: list[dict]) -> dict:
    """One server against a baseline, per round then the median: requests/s (>1: faster), CPU per
    request on both cores (baseline's / this one's: >1, cheaper), and the same on each core."""
    def cpu(f: str) -> float:
        return median_ratio([b[f] for b in base], [r[f] for r in rs])
    return {"rps_ratio": median_ratio([r["rps"] for r in rs], [b["rps"] for b in base]),
            "client_bound": any(r["client_bound"] for r in rs + base),
            "cpu_ratio": cpu("cpu_us_per_request"),
            "server_core_cpu_ratio": cpu("server_cpu_us_per_request"),
            "procs_cpu_ratio": cpu("procs_cpu_us_per_request")}


def summarize(runs: dict, duration: int, rounds: int, cpus: tuple[int, int], elapsed: float) -> dict:
    results: dict = {}
    for name, by_mode in runs.items():
        results[name] = {}
        for mode, by_conns in by_mode.items():
            results[name][mode] = {}
            for c, rs in by_conns.items():
                cell = cell_of(rs)
                cell["vs"] = {base: ratios(rs, runs[base][mode][c]) for base in BASELINES.get(name, ())}
                results[name][mode][str(c)] = cell
    return {"duration_s": duration, "rounds": rounds, "body_bytes": BODY_BYTES,
            "pipeline_depth": PIPELINE_DEPTH, "server_cpu": cpus[0], "client_cpu": cpus[1],
            "client": "wrk -t1, in the peer namespace",
            "elapsed_s": round(elapsed, 1),
            "cpu_accounting": "cpu_us_per_request: busy time of both cores (/proc/stat: user+system+irq+"
                              "softirq) per request; server_/client_cpu_us_per_request: each core's share; "
                              "procs_cpu_us_per_request: utime+stime of the server's processes (context)",
            "servers": results}


def targets(out: dict) -> dict:
    """The issue's three HTTP targets, each the worst over the connection counts measured."""
    us = out["servers"]["userstack"]
    t = {}
    for mode in ("keepalive", "close"):
        vs = [cell["vs"]["nginx"]["cpu_ratio"] for cell in us.get(mode, {}).values()]
        worst = min(vs) if vs else None
        t[f"http_cpu_ratio_vs_nginx_{mode}"] = target(
            worst, f">= {TARGET_RATIO:g}x nginx in requests per CPU-second (both cores), {mode}, "
                   f"worst over {len(vs)} connection counts", worst is not None and worst >= TARGET_RATIO)
    pipe = {c: cell["vs"]["nginx"] for c, cell in us.get("pipeline", {}).items()}
    worst = min((v["rps_ratio"] for v in pipe.values()), default=None)
    bound = [c for c, v in pipe.items() if v["client_bound"]]
    checked = all(ch["ok"] for ch in out.get("pipeline_check", {}).values())
    text = (f">= {TARGET_RATIO:g}x nginx requests/s under a server-bound load (HTTP/1.1 pipelining, depth "
            f"{PIPELINE_DEPTH}), worst over {len(pipe)} connection counts")
    if bound:
        text += f"; client-bound (wrk's core >= 95 % busy) at c={','.join(bound)}: not a server-bound figure"
    if not checked:
        text += "; the pipelining check failed (a response not 200 or a wrong body)"
    t["http_rps_ratio_vs_nginx_server_bound"] = target(
        worst, text, worst is not None and worst >= TARGET_RATIO and not bound and checked)
    return t


def format_text(result: dict) -> str:
    r = result
    lines = [f"HTTP, {r['body_bytes']}-byte body, wrk -t1 from the peer namespace (CPU {r['client_cpu']}), "
             f"servers on CPU {r['server_cpu']}; {r['duration_s']} s per run, median of {r['rounds']} "
             f"rounds; pipeline = {r['pipeline_depth']} requests per write",
             f"{'server':<21}{'mode':<10}{'conns':>5}{'req/s':>10}{'p50 us':>8}{'p99 us':>8}"
             f"{'CPU us/req':>11}{'srv core':>9}{'wrk core':>9}{'proc us/req':>12}  "
             f"ratios (req/s; CPU per request, both cores)"]
    modes = next(iter(r["servers"].values()))
    for mode, by_conns in modes.items():
        for c in by_conns:
            for name in SERVERS:
                lines.append(_row(name, mode, c, r["servers"][name][mode][c]))
    checks = ", ".join(f"{LABELS[n]} {'ok' if ch['ok'] else 'FAILED'} ({ch['responses']:,} responses, "
                       f"{ch['non_200']} not 200, {ch['bad_body']} wrong body)"
                       for n, ch in r.get("pipeline_check", {}).items())
    lines.append(f"pipelining check: {checks}")
    for name, t in r["targets"].items():
        value = "-" if t["value"] is None else f"{t['value']:.2f}x"
        lines.append(f"target {name}: {value} ({t['target']}): {met(t['met'])}")
    lines.append("CPU us/req: busy time of both cores per request (the work wherever veth runs it); "
                 "srv/wrk core: each core's utilisation; proc us/req: the server processes' own CPU "
                 "(context); client-bound: wrk's core >= 95 % busy, so req/s is wrk's; pipelined: no "
                 "latency (wrk times whole batches)")
    return "\n".join(lines)


def _row(name: str, mode: str, c: str, v: dict) -> str:
    ratios_txt = []
    for base, x in v["vs"].items():
        bound = " (client-bound)" if x["client_bound"] else ""
        short = "nginx" if base == "nginx" else "kernel"
        ratios_txt.append(f"{x['rps_ratio']:.2f}x{bound}; {x['cpu_ratio']:.2f}x vs {short}")
    notes = "".join([" (client-bound)" if v["client_bound"] and not v["vs"] else "",
                     f" ({v['errors']} errors)" if v["errors"] else "",
                     "" if v["bytes_ok"] else " (byte count MISMATCH)"])
    proc = v.get("procs_cpu_us_per_request", 0)
    return (f"{LABELS[name]:<21}{mode:<10}{c:>5}{v['rps']:>10,}"
            f"{v.get('p50_us', '-'):>8}{v.get('p99_us', '-'):>8}"
            f"{v.get('cpu_us_per_request', 0):>11.2f}{v['server_core_util'] * 100:>8.0f}%"
            f"{v['client_core_util'] * 100:>8.0f}%{proc:>12.2f}  {' | '.join(ratios_txt)}{notes}")


def plots(result: dict, outdir: Path) -> list[tuple[str, Path]]:
    """Requests/s and CPU per request (both cores) across connections, one panel per mode; in the
    requests/s plot a hatched bar is client-bound (wrk's core >= 95 % busy)."""
    from xdpstack.bench import plot
    modes = list(next(iter(result["servers"].values())))
    out = []
    for title, field, ylabel, fname in (
            ("HTTP requests/s across connections", "rps", "requests/s", "http_rps.png"),
            ("HTTP CPU per request (both cores)", "cpu_us_per_request", "CPU us per request",
             "http_cpu.png")):
        fig, axes = plot.figure(title, width=4.0 * len(modes), ncols=len(modes))
        axes = axes if len(modes) > 1 else [axes]
        for i, (ax, mode) in enumerate(zip(axes, modes, strict=True)):
            cells = {name: result["servers"][name][mode] for name in SERVERS}
            conns = list(cells[SERVERS[0]])
            plot.bars(ax, [f"{c} conns" for c in conns],
                      {LABELS[n]: [cells[n][c].get(field) for c in conns] for n in SERVERS}, ylabel)
            ax.set_ylim(0, ax.get_ylim()[1] * 1.35)         # room for the legend above the bars
            if i:
                ax.get_legend().remove()
            if field == "rps":
                for bars, name in zip(ax.containers, SERVERS, strict=True):
                    for bar, c in zip(bars, conns, strict=True):
                        bar.set_hatch("//" if cells[name][c]["client_bound"] else "")
            ax.set_title(mode + (" (hatched: client-bound)" if field == "rps" else ""), fontsize=9)
        out.append((title, plot.save(fig, outdir / fname)))
    return out


if __name__ == "__main__":
    import sys
    res = run(int(sys.argv[1]) if len(sys.argv) > 1 else DURATION,
              int(sys.argv[2]) if len(sys.argv) > 2 else ROUNDS)
    with contextlib.suppress(BrokenPipeError):
        print(format_text(res))
        print(json.dumps(res, indent=1), file=sys.stderr)
