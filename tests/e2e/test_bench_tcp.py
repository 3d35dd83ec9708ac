"""Smoke test of `xdpstack bench tcp`: a tiny run that checks the shape of the result, that every
figure is a positive number, that every target is there with a number, that the plots are
written, and that nothing is left behind. Not timed."""
from __future__ import annotations

import os

import pytest

from tests.fixtures.bench_helpers import assert_clean, positive
from xdpstack.bench import tcp

pytestmark = pytest.mark.root

TARGETS = ("tcp_bulk_out_ratio_vs_kernel_per_frame", "tcp_bulk_in_ratio_vs_kernel",
           "tcp_rr_p50_ratio_vs_kernel_spinning")


@pytest.fixture(autouse=True)
def _root():
    if os.geteuid() != 0:
        pytest.skip("needs root")


def test_bench_tcp_shape_and_positive_figures(tmp_path):
    before = os.environ.get("XDPSTACK_BPFFS")
    steps: list[str] = []
    r = tcp.run(duration=1, rounds=1, progress=steps.append)
    assert_clean(before)
    assert any("raw AF_XDP" in s for s in steps) and any("rr" in s for s in steps)
    for d in ("to_dut", "from_dut"):
        b = r["bulk"][d]
        assert set(b) == set(tcp.BULK)
        for n in tcp.BULK:
            positive(b[n], ("gbit_per_s", "frames_per_s", "cpu_s_per_gb", "server_core_util",
                            "client_core_util"), f"bulk.{d}.{n}")
            assert isinstance(b[n]["client_bound"], bool)
        for base in ("kernel_per_frame", "kernel_default"):
            positive(b["userstack"][f"vs_{base}"], ("ratio", "cpu_ratio"), f"bulk.{d}.vs_{base}")
        kt = r["kernel_traffic"][d]
        for s in ("no_xdp", "trivial_xdp", "xdpstack"):
            positive(kt[s], ("gbit_per_s", "cpu_s_per_gb"), f"kernel_traffic.{d}.{s}")
        positive(kt["xdpstack"], ("ratio_vs_trivial_xdp", "ratio_vs_no_xdp"), f"kernel_traffic.{d}")
    raw = r["raw_tx"]
    positive(raw, ("frames_per_s", "gbit_per_s", "cpu_ns_per_frame", "frames_at_peer", "tcp_fraction"),
             "raw_tx")
    assert raw["frames_at_peer"] >= raw["frames"] * 0.9       # the raw frames took the stack's path out
    assert set(r["rr"]) == set(tcp.RR)
    for n, c in r["rr"].items():
        positive(c, ("p50_us", "p99_us", "rounds_per_run", "cpu_us_per_round_trip"), f"rr.{n}")
        assert c["p99_us"] >= c["p50_us"]
        if n.startswith("userstack"):
            positive(c, ("p50_ratio_vs_kernel", "p99_ratio_vs_kernel", "cpu_ratio_vs_kernel"), f"rr.{n}")
    assert set(r["targets"]) == set(TARGETS)
    for name, t in r["targets"].items():
        assert isinstance(t["value"], float) and t["value"] > 0, name
        assert isinstance(t["met"], bool) and t["target"]
    text = tcp.format_text(r)
    assert "per frame" in text and "raw AF_XDP TX" in text and "both spinning" in text
    assert all(name in text for name in TARGETS)
    plots = tcp.plots(r, tmp_path)
    assert [title for title, _ in plots] == ["TCP bulk throughput", "TCP round trip p50/p99"]
    assert all(p.stat().st_size > 0 for _, p in plots)
