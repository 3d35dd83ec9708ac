"""xdpstack.bench.suite and .report with stand-in benchmarks (pure logic: merging targets,
recording a failure, writing report.md with its plots)."""
from __future__ import annotations

import json
import types

import pytest

from xdpstack.bench import plot, report, say, suite, target


def fake(name: str, fail: bool = False):
    def run(progress=None):
        say(progress, f"{name} step")
        if fail:
            raise RuntimeError("the server did not come up")
        return {"targets": {t: target(1.5, ">= 1x", True) for t in suite.TARGETS[name]}, "v": 2}

    def plots(res, outdir):
        fig, ax = plot.figure(f"{name} plot")
        plot.bars(ax, ["a", "b"], {"user": [1, 2], "kernel": [2, None]}, "x")
        return [(f"{name} plot", plot.save(fig, outdir / f"{name}.png"))]
    return types.SimpleNamespace(run=run, plots=plots, format_text=lambda r: f"{name}: v={r['v']}")


@pytest.fixture
def fakes(monkeypatch):
    mods = {n: fake(n, fail=(n == "http")) for n in suite.BENCHES}
    monkeypatch.setattr(suite, "module", lambda n: mods[n])
    return mods


def test_every_target_is_reported_and_a_failure_is_recorded(fakes):
    steps = []
    out = suite.run(progress=steps.append)
    assert list(out["targets"]) == [t for n in suite.BENCHES for t in suite.TARGETS[n]]
    assert out["errors"] == {"http": "RuntimeError: the server did not come up"}
    for t in suite.TARGETS["http"]:
        assert out["targets"][t] == {"value": None, "met": False,
                                     "target": "not measured: RuntimeError: the server did not come up"}
    assert out["targets"]["rx_cpu_ratio_vs_kernel"] == {"value": 1.5, "target": ">= 1x", "met": True}
    assert steps[0] == f"[1/{len(suite.BENCHES)}] demux" and "tcp step" in steps
    json.dumps(out)                                            # --json can print it


def test_only_runs_the_named_benchmarks(fakes):
    out = suite.run(("rx",))
    assert out["benchmarks"] == ["rx"] and list(out["targets"]) == list(suite.TARGETS["rx"])


def test_an_unknown_benchmark_is_refused_before_anything_runs():
    with pytest.raises(ValueError, match="no benchmark 'nope'"):
        suite.run(("nope",))


def test_report_has_the_table_the_text_and_the_plots(fakes, tmp_path):
    out = suite.run()
    path = report.write(out, tmp_path)
    md = path.read_text()
    assert "| `demux_hit_extra_ns` | 1.5 | yes |" in md
    assert "| `http_rps_ratio_vs_nginx_server_bound` | – | **no** |" in md
    assert "FAILED: RuntimeError" in md and "rx: v=2" in md
    assert "![rx plot](rx.png)" in md and (tmp_path / "rx.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "report.json").read_text())["targets"] == out["targets"]
    text = suite.format_text(out)
    assert "demux_min_mpps" in text and "http: FAILED" in text
