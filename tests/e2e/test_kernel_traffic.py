"""Kernel traffic through an attached interface is unaffected: ping, TCP and UDP from the kernel peer
to kernel services on the dut, IPv4 and IPv6, while a stack claims other ports."""
from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
import textwrap

import pytest

from tests.fixtures.testbed import wait_until
from tests.fixtures.xdpstack_helpers import in_ns, ping
from xdpstack import counters, netlink, procs, registry

pytest_plugins = ["tests.fixtures.xdpstack_fixtures"]
pytestmark = pytest.mark.root

UDP_ECHO = textwrap.dedent("""
    import selectors, socket
    sel = selectors.DefaultSelector()
    for fam, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        s = socket.socket(fam, socket.SOCK_DGRAM)
        if fam == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((host, 5353))
        sel.register(s, selectors.EVENT_READ)
    print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            data, peer = key.fileobj.recvfrom(65535)
            key.fileobj.sendto(data, peer)
""")


@pytest.fixture(scope="module")
def traffic_bed(attached_bed, tmp_path_factory):
    """The attached testbed with kernel services on the dut (HTTP on 8000, UDP echo on 5353) and a
    stack claiming udp 7000 and tcp 7000 meanwhile."""
    tb, _ = attached_bed
    www = tmp_path_factory.mktemp("www")
    blob = bytes(range(256)) * 8192                           # 2 MiB
    (www / "blob").write_bytes(blob)
    http = tb.track(tb.dut.popen([sys.executable, "-m", "http.server", "--bind", "::", "--directory",
                                  str(www), "8000"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    echo = tb.track(tb.dut.popen([sys.executable, "-c", UDP_ECHO], stdout=subprocess.PIPE, text=True))
    assert procs.readline(echo.stdout, 10).strip() == "ready"
    assert wait_until(lambda: tb.dut.run("ss -ltn 'sport = :8000'", check=False).stdout.count("LISTEN"), 10)
    with in_ns(tb):
        st = registry.Stack.create(tb.dut.ifname, "other-ports", uid=0, gid=0)
        st.claim_all([("udp", None, 7000), ("tcp", None, 7000)])
    try:
        yield tb, hashlib.sha256(blob).hexdigest()
    finally:
        st.close()
        http.kill()
        echo.kill()


@pytest.mark.parametrize("family", [4, 6])
def test_ping(traffic_bed, family):
    tb, _ = traffic_bed
    assert ping(tb.peer.ns, tb.dut.addr4 if family == 4 else tb.dut.addr6, count=5) == 5


@pytest.mark.parametrize("family", [4, 6])
def test_tcp_to_a_kernel_listener(traffic_bed, family):
    tb, digest = traffic_bed
    host = tb.dut.addr4 if family == 4 else f"[{tb.dut.addr6}]"
    out = tb.peer.run(f"curl -sf -o - http://{host}:8000/blob | sha256sum", timeout=60).stdout.split()[0]
    assert out == digest


@pytest.mark.parametrize("family", [4, 6])
def test_udp_to_a_kernel_service(traffic_bed, family):
    tb, _ = traffic_bed
    addr = tb.dut.addr4 if family == 4 else tb.dut.addr6
    with netlink.netns(tb.peer.ns):
        s = socket.socket(socket.AF_INET if family == 4 else socket.AF_INET6, socket.SOCK_DGRAM)
    with s:
        s.settimeout(2)
        for size in (0, 1, 100, 1000, 1400):
            payload = bytes([size % 251]) * size
            s.sendto(payload, (addr, 5353))
            data, _ = s.recvfrom(65535)
            assert data == payload


def test_claimed_port_still_refuses_kernel_connections(traffic_bed):
    """tcp 7000 is claimed (no stack socket attached yet): the demux passes it as orphaned and the
    kernel answers as for a closed port, since the reservation is bound, not listening."""
    tb, _ = traffic_bed
    r = tb.peer.run(f"curl -s -m 3 http://{tb.dut.addr4}:7000/", check=False)
    assert r.returncode == 7                                   # curl: connection refused


def test_counters_saw_the_kernel_traffic(traffic_bed):
    tb, _ = traffic_bed
    with in_ns(tb):
        before = counters.snapshot(tb.dut.ifname).totals
    assert ping(tb.peer.ns, tb.dut.addr4, count=3) == 3
    with in_ns(tb):
        after = counters.snapshot(tb.dut.ifname).totals
    assert after["pass_not_l4"] - before["pass_not_l4"] >= 3       # ICMP: IP, not TCP/UDP
    assert after["redirected"] == 0
