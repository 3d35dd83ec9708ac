"""Smoke test of `xdpstack bench http`: a tiny run that checks the shape of the result, that every
figure is a positive number, that the responses check out, that the targets and plots are there,
and that nothing is left behind. Not timed: the figures are for the benchmark's output, not for
asserts."""
from __future__ import annotations

import os

import pytest

from tests.fixtures.bench_helpers import assert_clean, positive
from xdpstack.bench import http

pytestmark = pytest.mark.root

CPU = ("cpu_us_per_request", "server_cpu_us_per_request", "client_cpu_us_per_request",
       "procs_cpu_us_per_request", "server_core_util", "client_core_util", "cores_busy_s")


@pytest.fixture(autouse=True)
def _root():
    if os.geteuid() != 0:
        pytest.skip("needs root")


def test_bench_http_shape_and_positive_figures(tmp_path):
    before = os.environ.get("XDPSTACK_BPFFS")
    steps = []
    r = http.run(duration=1, rounds=1, conns=(10,), progress=steps.append)
    assert_clean(before)
    assert any("pipeline c=10 nginx" in s for s in steps)
    assert set(r["servers"]) == {"userstack", "kernel_server", "nginx"}
    for name, by_mode in r["servers"].items():
        assert set(by_mode) == {"keepalive", "close", "pipeline"}
        for mode, by_conns in by_mode.items():
            cell = by_conns["10"]
            where = f"{name}.{mode}"
            positive(cell, ("rps", "bytes_per_response", *CPU), where)
            if mode != "pipeline":
                positive(cell, ("p50_us", "p99_us"), where)
                assert cell["p99_us"] >= cell["p50_us"], where
            assert cell["errors"] == 0 and cell["bytes_ok"], where
            assert isinstance(cell["client_bound"], bool), where
            assert set(cell["vs"]) == set(http.BASELINES.get(name, ())), where
            for base, v in cell["vs"].items():
                positive(v, ("rps_ratio", "cpu_ratio", "server_core_cpu_ratio", "procs_cpu_ratio"),
                         f"{where}.vs.{base}")
                assert isinstance(v["client_bound"], bool)
    assert all(ch["ok"] and ch["responses"] > 0 for ch in r["pipeline_check"].values())
    assert r["userstack_httpd_counters"]["responses_2xx"] > 0
    assert r["userstack_httpd_counters"]["rx_bad_csum"] == 0
    assert set(r["targets"]) == {"http_cpu_ratio_vs_nginx_keepalive", "http_cpu_ratio_vs_nginx_close",
                                 "http_rps_ratio_vs_nginx_server_bound"}
    for t in r["targets"].values():
        assert isinstance(t["value"], float) and t["value"] > 0 and isinstance(t["met"], bool)
    text = http.format_text(r)
    assert "vs nginx" in text and "vs kernel" in text and "pipelining check" in text
    assert all(name in text for name in r["targets"])
    written = http.plots(r, tmp_path)
    assert [t for t, _ in written] == ["HTTP requests/s across connections",
                                       "HTTP CPU per request (both cores)"]
    assert all(p.parent == tmp_path and p.stat().st_size > 0 for _, p in written)


def test_server_bound_target_is_not_met_when_client_bound():
    """A pipelined ratio above the target still fails the target when wrk's core was saturated."""
    vs = {"nginx": {"rps_ratio": 5.0, "cpu_ratio": 3.0, "client_bound": True}}
    cell = {"vs": vs}
    out = {"servers": {"userstack": {m: {"10": cell} for m in http.MODES}},
           "pipeline_check": {"nginx": {"ok": True}}}
    t = http.targets(out)
    assert t["http_cpu_ratio_vs_nginx_keepalive"]["met"]
    assert not t["http_rps_ratio_vs_nginx_server_bound"]["met"]
    assert "client-bound" in t["http_rps_ratio_vs_nginx_server_bound"]["target"]
    vs["nginx"]["client_bound"] = False
    assert http.targets(out)["http_rps_ratio_vs_nginx_server_bound"]["met"]
