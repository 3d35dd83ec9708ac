"""`xdpstack status`, `stats` and `bench demux` on a live attachment with stacks and claims."""
from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from tests.fixtures.xdpstack_helpers import in_ns, invoke, run_exe
from xdpstack import netlink, registry
from xdpstack.layout import ffi

pytest_plugins = ["tests.fixtures.xdpstack_fixtures"]
pytestmark = pytest.mark.root
STATS_FIELDS = [name for name, _ in ffi.typeof("struct xs_stats").fields]
STACK_FIELDS = [name for name, _ in ffi.typeof("struct xs_stack_stats").fields]


@pytest.fixture(scope="module")
def busy_bed(attached_bed):
    tb, a = attached_bed
    with in_ns(tb):
        st = registry.Stack.create(tb.dut.ifname, "echo", uid=65534, gid=65534)
        st.claim("udp", None, 7000)
        st.claim("tcp", "198.18.0.1", 8080)
    try:
        yield tb, a, st
    finally:
        st.close()


class Sender:
    """UDP datagrams from the peer to an unclaimed dut port, in a thread, while a command runs."""

    def __init__(self, tb, rate: float = 500):
        with netlink.netns(tb.peer.ns):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.dst, self.gap, self.stop = (tb.dut.addr4, 9), 1 / rate, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            self.sock.sendto(b"x" * 32, self.dst)
            time.sleep(self.gap)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.sock.close()


def test_status_text(busy_bed):
    tb, a, st = busy_bed
    r = invoke("--netns", tb.dut.ns, "status", tb.dut.ifname)
    assert r.code == 0, r
    out = r.out
    assert f"{tb.dut.ifname}: attached in native mode" in out
    assert f"id {a.prog_id}  xdp_demux  tag {a.prog_tag}" in out
    assert f"{a.pin_dir}/prog" in out
    assert f"{st.id} echo  pid {st.record.pid}  user nobody" in out
    owner = f"-> stack {st.id} echo (pid {st.record.pid}, user nobody)"
    for t in ("udp 0.0.0.0:7000", "udp [::]:7000", "tcp 198.18.0.1:8080"):
        line = next(ln for ln in out.splitlines() if t in ln)
        assert line.endswith(owner), line
    assert "counters  redirected" in out


def test_status_json(busy_bed):
    tb, a, st = busy_bed
    r = run_exe("--netns", tb.dut.ns, "status", tb.dut.ifname, "--json")
    assert r.code == 0, r
    d = r.json()
    assert (d["ifname"], d["mode"], d["prog"]["id"], d["prog"]["tag"]) == (tb.dut.ifname, "native", a.prog_id,
                                                                          a.prog_tag)
    assert d["pin_path"] == f"{a.pin_dir}/prog" and "claims" in d["pins"]
    assert [(s["name"], s["user"], s["pid"]) for s in d["stacks"]] == [("echo", "nobody", st.record.pid)]
    got = {(c["proto"], c["addr"], c["port"], c["wildcard"], c["owner"]["name"]) for c in d["claims"]}
    assert got == {("udp", "0.0.0.0", 7000, True, "echo"), ("udp", "::", 7000, True, "echo"),
                   ("tcp", "198.18.0.1", 8080, False, "echo")}
    assert list(d["counters"]) == STATS_FIELDS
    assert list(d["stacks"][0]["counters"]) == STACK_FIELDS


def test_status_of_every_interface(busy_bed):
    tb, _, _ = busy_bed
    r = invoke("--netns", tb.dut.ns, "status", "--json")
    assert r.code == 0
    mine = [d for d in r.json() if d["ifname"] == tb.dut.ifname]
    assert len(mine) == 1 and mine[0]["attached"]
    r = invoke("--netns", tb.dut.ns, "status")
    assert r.code == 0 and f"{tb.dut.ifname}: attached in native mode" in r.out


def test_stats_once(busy_bed):
    tb, _, st = busy_bed
    with Sender(tb):
        r = invoke("--netns", tb.dut.ns, "stats", tb.dut.ifname, "--interval", "0.5", "--json")
    assert r.code == 0, r
    d = r.json()
    assert list(d["totals"]) == list(d["rates"]) == STATS_FIELDS
    assert d["rates"]["pass_no_claim"] > 50 and d["rates"]["redirected"] == 0
    assert [(s["id"], s["name"]) for s in d["stacks"]] == [(st.id, "echo")]
    assert list(d["stacks"][0]["totals"]) == STACK_FIELDS
    r = invoke("--netns", tb.dut.ns, "stats", tb.dut.ifname, "--interval", "0.1")
    assert r.code == 0
    for field in ("counter", "per second", "pass_no_claim", f"stack {st.id} echo rx_packets"):
        assert field in r.out, field


def test_stats_samples_are_bounded_by_count(busy_bed):
    tb, _, _ = busy_bed
    t0 = time.monotonic()
    r = invoke("--netns", tb.dut.ns, "stats", tb.dut.ifname, "--interval", "0.1", "--count", "3")
    assert r.code == 0 and r.out.count("pass_no_claim") == 3, r
    assert time.monotonic() - t0 < 5
    r = invoke("--netns", tb.dut.ns, "stats", tb.dut.ifname, "--watch")   # the live view is top's
    assert r.code != 0 and "xdpstack top" in r.err, r
    with Sender(tb):
        r = run_exe("--netns", tb.dut.ns, "stats", tb.dut.ifname, "--interval", "0.3", "--count", "3",
                    "--json")
    assert r.code == 0, r
    lines = [json.loads(line) for line in r.out.splitlines()]
    assert len(lines) == 3
    totals = [ln["totals"]["pass_no_claim"] for ln in lines]
    assert totals == sorted(totals) and totals[-1] > totals[0]
    assert all(ln["rates"]["pass_no_claim"] > 0 for ln in lines)


def test_bench_demux():
    demux = pytest.importorskip("xdpstack.bench.demux")
    assert callable(demux.run) and callable(demux.format_text)
    r = invoke("bench", "demux", "--json", "--repeat", "2000")
    assert r.code == 0, r
    d = r.json()

    def ratio_keys(x, path=""):
        if isinstance(x, dict):
            for k, v in x.items():
                yield from ([f"{path}{k}"] if "ratio" in k else []) + list(ratio_keys(v, f"{path}{k}."))
    assert any("ratio_vs" in k for k in ratio_keys(d)), d
    r = invoke("bench", "demux", "--repeat", "2000")
    assert r.code == 0 and "ns" in r.out, r
