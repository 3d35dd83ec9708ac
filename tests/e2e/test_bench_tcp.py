"""Smoke test of `xdpstack bench tcp`: a tiny run that checks the shape of the result, that every
figure is a positive number, and that nothing is left behind. Not timed."""
from __future__ import annotations

import os

import pytest

from tests.fixtures.bench_helpers import assert_clean, positive
from xdpstack.bench import tcp

pytestmark = pytest.mark.root


@pytest.fixture(autouse=True)
def _root():
    if os.geteuid() != 0:
        pytest.skip("needs root")


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
