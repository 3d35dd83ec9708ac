"""`xdpstack bench all`: every benchmark in one run, each on its own fresh testbed, and one summary.

The summary's "targets" has one entry per target of the benchmarks issue, always all of them: a
benchmark that failed leaves its targets with value None, not met, and its error in "errors".
"""
from __future__ import annotations

import datetime
import importlib
import os
import platform
import subprocess
import time
import traceback
from pathlib import Path

from xdpstack.bench import Progress, say, target

BENCHES = ("demux", "rx", "http", "tcp", "isolation")
TARGETS = {
    "demux": ("demux_hit_extra_ns", "demux_miss_extra_ns", "demux_min_mpps", "demux_live_ratio_vs_libxdp"),
    "rx": ("rx_cpu_ratio_vs_kernel", "rx_zero_loss_ratio_vs_kernel"),
    "http": ("http_cpu_ratio_vs_nginx_keepalive", "http_cpu_ratio_vs_nginx_close",
             "http_rps_ratio_vs_nginx_server_bound"),
    "tcp": ("tcp_bulk_out_ratio_vs_kernel_per_frame", "tcp_bulk_in_ratio_vs_kernel",
            "tcp_rr_p50_ratio_vs_kernel_spinning"),
    "isolation": ("isolation_rx_ratio", "isolation_tx_ratio", "isolation_http_ratio"),
}


def module(name: str):
    if name not in BENCHES:
        raise ValueError(f"no benchmark {name!r}: one of {', '.join(BENCHES)}")
    return importlib.import_module(f"xdpstack.bench.{name}")


def machine() -> dict:
    """Where and when: what a reader needs to compare figures across runs."""
    model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")), platform.processor() or "unknown")
    mem_kb = next(int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines()
                  if ln.startswith("MemTotal:"))
    return {"date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "kernel": platform.release(), "cpu": model, "cpus": len(os.sched_getaffinity(0)),
            "memory_gb": round(mem_kb / 2**20, 1), "commit": commit()}


def commit() -> str | None:
    """The checkout's commit ("+dirty" when the tree has changes), None outside a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "-C", str(here), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("+dirty" if dirty else "")


def run(only: tuple[str, ...] = (), progress: Progress | None = None) -> dict:
    """Run the benchmarks (all, or `only`) in order; a failure is recorded and the next one runs."""
    names = [n for n in BENCHES if not only or n in only]
    for n in only:
        module(n)                                       # an unknown name fails before anything runs
    out: dict = {"machine": machine(), "benchmarks": names, "results": {}, "errors": {}, "seconds": {}}
    t_all = time.monotonic()
    for i, name in enumerate(names, 1):
        t0 = time.monotonic()
        say(progress, f"[{i}/{len(names)}] {name}")
        try:
            out["results"][name] = module(name).run(progress=progress)
        except KeyboardInterrupt:
            raise
        except Exception as e:                          # recorded; the other benchmarks still run
            out["errors"][name] = f"{type(e).__name__}: {e}"
            say(progress, f"{name} failed: {e}\n{traceback.format_exc(limit=3)}")
        out["seconds"][name] = round(time.monotonic() - t0, 1)
    out["elapsed_s"] = round(time.monotonic() - t_all, 1)
    out["targets"] = targets(out)
    return out


def targets(out: dict) -> dict:
    """Every target of the benchmarks run, in the issue's order; missing ones not met."""
    merged = {}
    for name in out["benchmarks"]:
        got = out["results"].get(name, {}).get("targets", {})
        why = out["errors"].get(name, "not reported by the benchmark")
        for t in TARGETS[name]:
            merged[t] = got.get(t) or target(None, f"not measured: {why}", False)
    return merged


def format_text(out: dict) -> str:
    m = out["machine"]
    lines = [f"xdpstack bench all, {m['date']}, {m['cpus']} x {m['cpu']}, kernel {m['kernel']}, "
             f"commit {m['commit']}; {out['elapsed_s']:.0f} s", ""]
    for name in out["benchmarks"]:
        if name in out["results"]:
            lines += [module(name).format_text(out["results"][name]), ""]
        else:
            lines += [f"{name}: FAILED: {out['errors'][name]}", ""]
    lines.append(f"{'target':<42}{'value':>10}  {'met':<5} against")
    for t, v in out["targets"].items():
        value = "-" if v["value"] is None else f"{v['value']:.3g}"
        lines.append(f"{t:<42}{value:>10}  {'yes' if v['met'] else 'NO':<5} {v['target']}")
    return "\n".join(lines)
