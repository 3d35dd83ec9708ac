"""bench/report.md and its plots from one `bench all` result: the file the README shows."""
from __future__ import annotations

import json
from pathlib import Path

from xdpstack.bench import suite

TITLES = {"demux": "Demux (the XDP program)", "rx": "UDP receive", "http": "HTTP", "tcp": "TCP",
          "isolation": "Isolated vs direct"}


def write(out: dict, outdir: Path) -> Path:
    """Write outdir/report.md, outdir/report.json and the PNG plots; the report's path."""
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "report.json").write_text(json.dumps(out, indent=1) + "\n")
    m = out["machine"]
    md = ["# xdpstack benchmarks", "",
          f"`make bench` (`xdpstack bench all --out bench`), {m['date']}, commit `{m['commit']}`; "
          f"{m['cpus']} x {m['cpu']}, {m['memory_gb']} GB, kernel {m['kernel']}; {out['elapsed_s']:.0f} s.",
          "Every ratio is against a baseline measured in the same run; CPU is the busy "
          "time of all cores (wall minus /proc/stat's idle and steal) per unit of work. "
          "A `cpu_ratio` above 1 means the user stack is cheaper.", "",
          "## Targets", "", targets_table(out["targets"]), ""]
    for name in out["benchmarks"]:
        md += [f"## {TITLES[name]}", ""]
        if name not in out["results"]:
            md += [f"FAILED: {out['errors'][name]}", ""]
            continue
        mod, res = suite.module(name), out["results"][name]
        md += ["```", mod.format_text(res), "```", ""]
        for title, path in mod.plots(res, outdir):
            md += [f"![{title}]({path.relative_to(outdir)})", ""]
    path = outdir / "report.md"
    path.write_text("\n".join(md))
    return path


def targets_table(targets: dict) -> str:
    rows = ["| target | value | met | against |", "|---|---:|:---:|---|"]
    for name, t in targets.items():
        value = "–" if t["value"] is None else f"{t['value']:.3g}"
        rows.append(f"| `{name}` | {value} | {'yes' if t['met'] else '**no**'} | {t['target']} |")
    return "\n".join(rows)
