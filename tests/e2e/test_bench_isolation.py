"""`xdpstack bench isolation`, short: both modes really deliver, send and serve HTTP, the targets
are named, the plot is written."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.root


def test_bench_isolation_measures_both_modes(root, tmp_path):
    from xdpstack.bench import isolation

    steps = []
    r = isolation.run(seconds=0.3, rounds=1, tx_seconds=0.5, http_seconds=1, progress=steps.append)
    for m in isolation.MODES:
        (rx,) = r["rx"][m]["runs"]
        assert rx["delivered_mpps"] > 0.05, (m, rx)           # datagrams reached the sink each way
        assert r["rx"][m]["cpu"]["cpu_ns_per_datagram"] > 0, m
        (tx,) = r["tx"][m]["runs"]
        # every frame sent reached the peer's veth (plus the peer's own few ND/MLD frames at most)
        assert tx["frames"] > 1000 and tx["frames"] <= tx["frames_at_peer"] + 64, (m, tx)
    assert set(r["targets"]) == {"isolation_rx_ratio", "isolation_tx_ratio", "isolation_http_ratio"}
    assert r["targets"]["isolation_rx_ratio"]["value"] > 0 and r["targets"]["isolation_tx_ratio"]["value"] > 0
    assert r["targets"]["isolation_http_ratio"]["value"] > 0
    for m in isolation.MODES:                              # wrk got answers from both servers
        (h,) = r["http"][m]["runs"]
        assert h["rps"] > 1000 and h["cpu_us_per_request"] > 0, (m, h)
    assert "isolated" in isolation.format_text(r) and any("direct" in s for s in steps)
    ((_, png),) = isolation.plots(r, tmp_path)
    assert png.read_bytes()[:4] == b"\x89PNG"
