"""Smoke test of `xdpstack bench http`: a tiny run that checks the shape of the result, that every
figure is a positive number, and that nothing is left behind. Not timed: the figures are for the
benchmark's output, not for asserts."""
from __future__ import annotations

import os

import pytest

from tests.fixtures.bench_helpers import assert_clean, positive
from xdpstack.bench import http

pytestmark = pytest.mark.root


@pytest.fixture(autouse=True)
def _root():
    if os.geteuid() != 0:
        pytest.skip("needs root")


def test_bench_http_shape_and_positive_figures():
    before = os.environ.get("XDPSTACK_BPFFS")
    r = http.run(duration=1, rounds=1, conns=(10,))
    assert_clean(before)
    assert set(r["servers"]) == {"userstack", "kernel_server", "nginx"}
    for name, by_mode in r["servers"].items():
        assert set(by_mode) == {"keepalive", "close"}
        for mode, by_conns in by_mode.items():
            cell = by_conns["10"]
            where = f"{name}.{mode}"
            positive(cell, ("rps", "p50_us", "p99_us", "server_cpu_s", "requests_per_server_cpu_s",
                            "server_core_busy_s", "bytes_per_response"), where)
            assert cell["errors"] == 0, where
            assert cell["p99_us"] >= cell["p50_us"]
            ratios = [k for k in cell if "ratio" in k]
            want = {"userstack": 6, "kernel_server": 3, "nginx": 0}[name]
            assert len(ratios) == want, (where, ratios)
            positive(cell, tuple(ratios), where)
    us = r["servers"]["userstack"]["keepalive"]["10"]
    assert {"ratio_vs_nginx", "ratio_vs_kernel_server", "cpu_ratio_vs_nginx"} <= set(us)
    assert r["userstack_httpd_counters"]["responses_2xx"] > 0
    assert r["userstack_httpd_counters"]["rx_bad_csum"] == 0
    t = r["targets"]
    assert set(t["ratio_vs_nginx_keepalive"]) == {"10"} and len(t["cpu_ratio_vs_nginx"]) == 2
    text = http.format_text(r)
    assert "vs nginx" in text and "vs kernel" in text and "targets:" in text
