"""`xdpstack bench rx` runs end to end and reports every figure (benchmarks print; tests check shape)."""
from __future__ import annotations

import pytest

from xdpstack.bench import rx

pytestmark = pytest.mark.root


def test_frame_checksums_are_valid():
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    f = rx.udp4_frame("02:00:00:00:00:01", "02:00:00:00:00:02", "198.18.0.2", "198.18.0.1", 40000, 9000,
                      b"abc")
    p = Ether(f)
    ip_sum, udp_sum = p[IP].chksum, p[UDP].chksum
    del p[IP].chksum, p[UDP].chksum
    p = Ether(bytes(p))
    assert (ip_sum, udp_sum) == (p[IP].chksum, p[UDP].chksum) and bytes(p[UDP].payload) == b"abc"


def test_bench_rx_reports_both_paths(root):
    r = rx.run(seconds=0.2, steps=1, payloads=(64,))
    (res,) = r["results"]
    for path in ("user_stack", "kernel"):
        m = res[path]
        assert m["offered_mpps"] > 0 and m["delivered_mpps"] > 0 and m["zero_loss_mpps"] >= 0
        assert 0 <= m["loss_at_full_speed"] <= 1
    assert res["throughput_ratio_vs_kernel"] > 0 and "zero_loss_ratio_vs_kernel" in res
    assert "ratio vs kernel" in rx.format_text(r)
