"""Smoke tests of `xdpstack bench http` and `xdpstack bench tcp` (xdpstack.bench.http/tcp): tiny
runs that check the shape of the result, that every figure is a positive number, and that nothing
is left behind. Not timed: the figures themselves are for the benchmark's output, not for asserts."""
from __future__ import annotations

import os

import pytest

from tests.fixtures.testbed import leftover_namespaces
from xdpstack.bench import http, tcp

pytestmark = pytest.mark.root


@pytest.fixture(autouse=True)
def _root():
    if os.geteuid() != 0:
        pytest.skip("needs root")


def positive(d: dict, keys: tuple[str, ...], where: str):
    for k in keys:
        assert isinstance(d[k], int | float) and d[k] > 0, f"{where}.{k} = {d[k]!r}"


def assert_clean(bpffs_before: str | None):
    assert not any(n.startswith("xst") for n in leftover_namespaces())
    assert os.environ.get("XDPSTACK_BPFFS") == bpffs_before          # the private root was given back
    assert not os.path.exists(f"/sys/fs/bpf/xdpstack-bench-{os.getpid()}")   # ours (others may run)


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


def test_bench_tcp_shape_and_positive_figures():
    before = os.environ.get("XDPSTACK_BPFFS")
    r = tcp.run(duration=1, rounds=1)
    assert_clean(before)
    for d in ("to_dut", "from_dut"):
        b = r["bulk"][d]
        for n in ("userstack", "kernel", "iperf3_kernel"):
            positive(b[n], ("gbit_per_s",), f"bulk.{d}.{n}")
        positive(b["userstack"], ("ratio_vs_kernel", "ratio_vs_iperf3_kernel", "server_cpu_s"), f"bulk.{d}")
        kt = r["kernel_traffic"][d]
        for s in ("no_xdp", "trivial_xdp", "xdpstack"):
            positive(kt[s], ("gbit_per_s",), f"kernel_traffic.{d}.{s}")
        positive(kt["xdpstack"], ("ratio_vs_trivial_xdp", "ratio_vs_no_xdp"), f"kernel_traffic.{d}")
    assert set(r["rr"]) == {"userstack", "userstack_busy_poll", "kernel"}
    for n, c in r["rr"].items():
        positive(c, ("p50_us", "p99_us", "rounds_per_run"), f"rr.{n}")
        assert c["p99_us"] >= c["p50_us"]
        if n != "kernel":
            positive(c, ("p50_ratio_vs_kernel", "p99_ratio_vs_kernel"), f"rr.{n}")
    assert set(r["rr_multistack"]) == {"userstack_both_busy_poll", "kernel"}     # MultiStack's comparison
    for n, c in r["rr_multistack"].items():
        positive(c, ("p50_us", "p99_us", "rounds_per_run"), f"rr_multistack.{n}")
    positive(r["rr_multistack"]["userstack_both_busy_poll"], ("p50_ratio_vs_kernel", "p99_ratio_vs_kernel"),
             "rr_multistack")
    assert {"throughput_met", "p50_rtt_met", "kernel_traffic_met", "p50_rtt_multistack_met",
            "p50_rtt_ratio_vs_kernel_multistack"} <= set(r["targets"])
    assert "user stack <-> user stack" in tcp.format_text(r)
    text = tcp.format_text(r)
    assert "bulk" in text and "busy poll" in text and "trivial XDP" in text
