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


def test_bench_rx_reports_both_paths(root, tmp_path):
    steps = []
    r = rx.run(seconds=0.2, steps=1, payloads=(64,), progress=steps.append)
    (res,) = r["results"]
    for path in ("user_stack", "kernel"):
        m = res[path]
        assert m["offered_mpps"] > 0 and m["delivered_mpps"] > 0 and m["zero_loss_mpps"] >= 0
        assert 0 <= m["loss_at_full_speed"] <= 1 and m["tolerance_mpps"] >= m["zero_loss_mpps"]
        assert m["cpu"]["cpu_ns_per_datagram"] > 0 and m["cpu"]["delivered"] > 0
        assert 0 < m["cpu"]["generator_core_util"] <= 1.05
    b = res["buffering"]
    assert b["user_stack_datagrams"] > 0 and b["kernel"]["datagrams"] > 0 and b["kernel"]["rcvbuf"] > 0
    assert res["throughput_ratio_vs_kernel"] > 0 and res["cpu_ratio_vs_kernel"] > 0
    assert set(r["targets"]) == {"rx_cpu_ratio_vs_kernel", "rx_zero_loss_ratio_vs_kernel"}
    assert all(isinstance(t["value"], float) for t in r["targets"].values())
    assert steps and all(s.startswith("rx ") for s in steps)
    assert "ratio vs kernel" in rx.format_text(r)
    assert [p.name for _, p in rx.plots(r, tmp_path)] == ["rx_rate.png", "rx_cpu.png"]


def test_drop_counters_show_a_kernel_socket_overflow(root):
    """The loss breakdown sees what it claims to: UDP datagrams dropped at a full socket buffer."""
    import socket

    from xdpstack import loader, netlink
    from xdpstack.testbed import Testbed
    with Testbed() as tb, netlink.netns(tb.dut.ns):
        loader.attach(tb.dut.ifname)
        try:
            before = rx.drop_counters(tb)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as r, \
                    socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                r.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                r.bind(("127.0.0.1", 0))
                for _ in range(200):
                    s.sendto(b"x" * 512, r.getsockname())
            moved = rx.delta(before, rx.drop_counters(tb))
        finally:
            loader.detach(tb.dut.ifname, force=True)
    assert moved.get("udp.RcvbufErrors", 0) > 0, moved
