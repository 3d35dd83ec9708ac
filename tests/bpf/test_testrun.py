"""xdpstack.testrun: the BPF_PROG_TEST_RUN wrapper, including live frames, and the demux bench."""
from __future__ import annotations

import contextlib
import errno
import os
import secrets
import socket

import pytest
from pyroute2 import IPRoute, netns

from tests.fixtures.bpf_frames import IP, UDP, Ether, Raw, frame
from tests.fixtures.testbed import PREFIX
from xdpstack import testrun

F = frame(Ether() / IP(src="198.18.0.2", dst="198.18.0.1") / UDP(dport=9))


@pytest.fixture
def trivial(root):
    fds = {a: testrun.load_trivial(a) for a in (testrun.XDP_DROP, testrun.XDP_PASS)}
    yield fds
    for fd in fds.values():
        os.close(fd)


@pytest.fixture
def root():
    if os.geteuid() != 0:
        pytest.skip("needs root")


def test_verdict_duration_and_frame(trivial):
    r = testrun.run(trivial[testrun.XDP_DROP], F)
    assert r.retval == testrun.XDP_DROP and r.data == F
    r = testrun.run(trivial[testrun.XDP_PASS], F, repeat=100_000)
    assert r.retval == testrun.XDP_PASS and r.data == F
    assert 0 < r.duration_ns < 10_000, "average ns per run of a two-instruction program"


def test_errors_are_raised(trivial):
    with pytest.raises(OSError) as e:
        testrun.run(9999, F)                                        # not a program
    assert e.value.errno in (errno.EBADF, errno.EINVAL)
    with pytest.raises(OSError) as e:
        testrun.run(trivial[testrun.XDP_PASS], F[:13])             # shorter than Ethernet
    assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError):
        testrun.run(trivial[testrun.XDP_PASS], F, rx_queue=1)       # a queue needs its device
    with pytest.raises(ValueError):
        testrun.run(trivial[testrun.XDP_PASS], F, live=True)         # live needs a device


def test_context_queue_of_a_device(trivial, qdev):
    fd, on = trivial[testrun.XDP_PASS], {"ifindex": qdev.ifindex, "netns": qdev.netns}
    assert testrun.run(fd, F, rx_queue=qdev.queues - 1, **on).retval == testrun.XDP_PASS
    with pytest.raises(OSError) as e:
        testrun.run(fd, F, rx_queue=qdev.queues, **on)
    assert e.value.errno == errno.EINVAL


def test_in_netns_restores_the_thread(qdev):
    mine = os.stat("/proc/thread-self/ns/net").st_ino
    with testrun.in_netns(qdev.netns):
        assert os.stat("/proc/thread-self/ns/net").st_ino == os.stat(qdev.netns).st_ino
    assert os.stat("/proc/thread-self/ns/net").st_ino == mine
    with pytest.raises(RuntimeError), testrun.in_netns(qdev.netns):
        raise RuntimeError("leaves by an exception")
    assert os.stat("/proc/thread-self/ns/net").st_ino == mine


@pytest.fixture
def lo_ns(root):
    """A namespace whose lo is up with 198.18.0.1/32: a live frame passed there reaches a local
    socket (127.0.0.1 would not do: a frame arriving from outside to 127/8 is a martian)."""
    name = f"{PREFIX}{secrets.token_hex(3)}-live"
    netns.create(name)
    try:
        with IPRoute(netns=name) as ipr:
            lo = ipr.link_lookup(ifname="lo")[0]
            ipr.link("set", index=lo, state="up")
            ipr.addr("add", index=lo, address="198.18.0.1", prefixlen=32)
        yield f"/var/run/netns/{name}"
    finally:
        with contextlib.suppress(Exception):
            netns.remove(name)


def test_live_frames_are_delivered(trivial, lo_ns):
    """Live mode runs the program on real frames entering lo: XDP_PASS gives them to the kernel
    (a UDP socket receives every one), XDP_DROP does not."""
    with testrun.in_netns(lo_ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with s:
        s.bind(("198.18.0.1", 0))
        port = s.getsockname()[1]
        f = frame(Ether(src="00:00:00:00:00:00", dst="00:00:00:00:00:00") /
                  IP(src="198.18.0.2", dst="198.18.0.1") / UDP(sport=4000, dport=port) / Raw(b"live"))
        r = testrun.run(trivial[testrun.XDP_DROP], f, repeat=20, ifindex=1, live=True, netns=lo_ns)
        assert r.data == b""
        r = testrun.run(trivial[testrun.XDP_PASS], f, repeat=50, ifindex=1, live=True, netns=lo_ns)
        s.settimeout(2)
        got = [s.recv(64) for _ in range(50)]
        assert got == [b"live"] * 50
        s.setblocking(False)
        with pytest.raises(BlockingIOError):
            s.recv(64)                                 # and the dropped ones never arrived


def test_bench_result_shape(root, tmp_path):
    """A short bench run: every figure present, every target named, the plots written."""
    from xdpstack.bench import demux

    steps = []
    res = demux.run(repeat=20_000, rounds=1, progress=steps.append, live_rounds=1, live_seconds=0.5)
    cases = res["cases"]
    assert {"hit_ipv4", "hit_ipv6", "miss_ipv4", "miss_ipv6", "hit_ipv4_shared_port",
            "hit_ipv6_shared_port"} == cases.keys()
    for n, c in cases.items():
        assert c["verdict"] == ("XDP_REDIRECT" if n.startswith("hit") else "XDP_PASS"), n
        assert c["ns_per_packet"] > 0 and c["mpps"] > 0 and "ratio_vs_xdp_pass" in c and "extra_ns" in c
    assert set(res["tuples"]["exact"]) == {"1", "10", "100", "1000", "10000"}
    assert set(res["tuples"]["shared_port"]) == {"2", "10", "100", "1000", "10000"}
    assert res["cold"]["miss_ipv4_cold"]["ports"] == demux.COLD_PORTS
    assert set(res["targets"]) == {"demux_hit_extra_ns", "demux_miss_extra_ns", "demux_min_mpps",
                                   "demux_live_ratio_vs_libxdp"}
    for name in res["targets"]:
        assert isinstance(res["targets"][name]["value"], int | float), name
    live = res["live"]
    for path in ("libxdp", "xdpstack", "direct"):     # frames really reached the consumer on each path
        (r,) = live["runs"][path]
        # libxdp's program takes every frame of the queue: the peer's own ND/MLD frames too
        assert live["mpps"][path] > 0 and 0 < r["delivered"] <= r["sent"] + 100, (path, r)
    assert live["ratio_vs_libxdp"] > 0 and "libxdp's default program" in demux.format_text(res)
    assert live["isolated_ratio_vs_direct"] > 0 and "direct (demux into a socket" in demux.format_text(res)
    assert steps and all(s.startswith("demux") for s in steps)
    text = demux.format_text(res)
    assert "hit_ipv4" in text and "extra ns" in text and "10,000" in text
    paths = [p for _, p in demux.plots(res, tmp_path)]
    assert len(paths) == 2 and all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)
