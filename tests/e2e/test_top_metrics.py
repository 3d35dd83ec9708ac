"""`xdpstack metrics` and `xdpstack top` on a launched UDP echo stack with kernel peers: the
exposition parses with prometheus-client's own parser, its counters move by exactly the traffic
sent, it is scraped over HTTP from the listen address and written as a node_exporter textfile;
`top` draws in a pseudo-terminal (read back through pyte) a row for the stack with non-zero rates."""
from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time

import pyte
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.testbed import wait_until
from tests.fixtures.userstack_tcp_helpers import REPO
from tests.fixtures.xdpstack_helpers import XDPSTACK, udp_echo_app

pytest_plugins = ["tests.fixtures.xdpstack_fixtures"]
pytestmark = pytest.mark.root

PORT, NO_SOCKET = 7070, 7071

# On the stack (as nobody): an IPv4 echo on PORT only, although PORT and NO_SOCKET are both claimed.
APP = udp_echo_app(PORT)

SENDER = r"""
import json, socket, sys, time
dst, port, n, gap = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.5)
got = 0
for i in range(n):
    s.sendto(b"m" * 100, (dst, port))
    try:
        s.recv(2048)
        got += 1
    except TimeoutError:
        pass
    time.sleep(gap)
print(json.dumps({"echoed": got}))
"""


@pytest.fixture(scope="module")
def stack(attached_bed):
    tb, _ = attached_bed
    argv = [XDPSTACK, "--netns", tb.dut.ns, "run", tb.dut.ifname, "--udp", str(PORT), "--udp", str(NO_SOCKET),
            "--name", "echo-m", "--user", "nobody", "--", sys.executable, "-c", APP]
    p = tb.track(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                                  env={**os.environ, "PYTHONPATH": REPO}))
    try:
        wait_until(lambda: send(tb, PORT, 1)["echoed"] == 1, timeout=20, interval=0.3)
        yield tb
    finally:
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=15)


def send(tb, port: int, n: int, gap: float = 0.0) -> dict:
    r = tb.peer.run(["python3", "-c", SENDER, tb.dut.addr4, str(port), str(n), str(gap)], timeout=120)
    return json.loads(r.stdout)


def samples(text: str) -> dict[tuple, float]:
    """{(name, sorted labels): value} through prometheus-client's parser."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def scrape_once(tb) -> dict[tuple, float]:
    r = subprocess.run([XDPSTACK, "--netns", tb.dut.ns, "metrics", "--once"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    return samples(r.stdout)


def value(s: dict, name: str, **labels) -> float:
    return s[(name, tuple(sorted(labels.items())))]


def test_metrics_parse_and_move_by_exactly_the_traffic(stack):
    tb = stack
    lab = {"interface": tb.dut.ifname, "stack": "echo-m"}
    before = scrape_once(tb)
    assert value(before, "xdpstack_stack_info", user="nobody", **lab) == 1
    assert send(tb, PORT, 25)["echoed"] == 25
    tb.peer.run(["python3", "-c", f"import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
                 f"[s.sendto(b'x', ('{tb.dut.addr4}', {NO_SOCKET})) for _ in range(7)]"])
    time.sleep(0.5)
    after = scrape_once(tb)

    def delta(name, **extra):
        return value(after, name, **lab, **extra) - value(before, name, **lab, **extra)

    assert delta("xdpstack_stack_rx_frames_total") == 25 + 7
    assert delta("xdpstack_stack_tx_frames_total") == 25
    assert delta("xdpstack_stack_rx_dropped_frames_total", reason="no_socket") == 7
    assert delta("xdpstack_stack_rx_dropped_frames_total", reason="bad_csum") == 0
    assert delta("xdpstack_stack_port_rx_packets_total") == 32
    d = value(after, "xdpstack_demux_packets_total", interface=tb.dut.ifname, verdict="redirected") - \
        value(before, "xdpstack_demux_packets_total", interface=tb.dut.ifname, verdict="redirected")
    assert d == 32
    assert ("xdpstack_tcp_connections", tuple(sorted(lab.items()))) in after
    assert any(k[0] == "xdpstack_xsk_rx_dropped_total" for k in after), sorted(k[0] for k in after)


def test_metrics_over_http_and_as_a_textfile(stack, tmp_path):
    tb = stack
    port = 19477
    argv = [XDPSTACK, "--netns", tb.dut.ns, "metrics", "--listen", f"127.0.0.1:{port}"]
    p = tb.track(subprocess.Popen(argv,
                                  stderr=subprocess.PIPE, text=True))
    try:
        assert "serving http://127.0.0.1:" in p.stderr.readline()
        r = tb.dut.run(["curl", "-sf", f"http://127.0.0.1:{port}/metrics"], timeout=30)
        s = samples(r.stdout)
        assert value(s, "xdpstack_stack_info", interface=tb.dut.ifname, stack="echo-m", user="nobody") == 1
        first = value(s, "xdpstack_stack_rx_frames_total", interface=tb.dut.ifname, stack="echo-m")
        send(tb, PORT, 3)
        s = samples(tb.dut.run(["curl", "-sf", f"http://127.0.0.1:{port}/metrics"], timeout=30).stdout)
        now = value(s, "xdpstack_stack_rx_frames_total", interface=tb.dut.ifname, stack="echo-m")
        assert now == first + 3
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=15)
    assert p.returncode == 0
    path = tmp_path / "xdpstack.prom"
    r = subprocess.run([XDPSTACK, "--netns", tb.dut.ns, "metrics", "--once", "--textfile", str(path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout == "", r
    s = samples(path.read_text())
    assert value(s, "xdpstack_stack_info", interface=tb.dut.ifname, stack="echo-m", user="nobody") == 1


def test_metrics_refuses_a_bad_listen_address(stack):
    r = subprocess.run([XDPSTACK, "--netns", stack.dut.ns, "metrics", "--listen", "nowhere"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "ADDR:PORT" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr


def test_top_draws_the_stack_with_rates_in_a_terminal(stack):
    tb = stack
    screen = pyte.Screen(140, 30)
    stream = pyte.ByteStream(screen)
    pid, fd = pty.fork()
    if pid == 0:                                   # the child: top in a terminal 140 columns wide
        os.environ.update(COLUMNS="140", LINES="30", TERM="xterm")
        os.execv(XDPSTACK, [XDPSTACK, "--netns", tb.dut.ns, "top", tb.dut.ifname, "--interval", "0.5",
                            "--count", "8"])
    sender = tb.track(tb.peer.popen(["python3", "-c", SENDER, tb.dut.addr4, str(PORT), "400", "0.01"]))
    seen, deadline = None, time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], 0.5)
            if r:
                try:
                    data = os.read(fd, 65536)
                except OSError:                    # top ended: the terminal closed
                    break
                if not data:
                    break
                stream.feed(data)
            rows = [line for line in screen.display if line.lstrip().startswith("echo-m")]
            if rows and rows[-1].split()[3] not in ("0", "?"):
                seen = rows[-1]
                break
    finally:
        os.kill(pid, signal.SIGINT)
        os.waitpid(pid, 0)
        os.close(fd)
        sender.wait(timeout=60)
    text = "\n".join(screen.display)
    assert seen, text
    assert "nobody" in seen and int(seen.split()[3].replace(",", "")) > 0, seen   # rx pkt/s
    assert f"{tb.dut.ifname}  xdp prog" in text and "kernel path" in text, text


def test_top_once_prints_one_frame(stack):
    r = subprocess.run([XDPSTACK, "--netns", stack.dut.ns, "top", "--once", "--interval", "0.2"],
                       capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "140"})
    assert r.returncode == 0, r.stderr
    assert "echo-m" in r.stdout and "kernel path" in r.stdout, r.stdout
