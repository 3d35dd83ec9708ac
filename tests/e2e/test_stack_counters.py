"""A launched stack's own counters, live, through `xdpstack stacks`: the launcher's shared page
(xdpstack/stackstats.py) read while the application runs; and kernel peers on veths with the
kernel's default offloads (partial checksums) answered byte-exact through the launcher.

Bad frames come from the peer namespace, built with scapy: a wrong UDP checksum (IPv4 and IPv6), a
claimed port with no socket bound, an address that is not the stack's. Each drop counter must move
by exactly the number sent, and nothing else. The TCP's counters are in the same page: kernel
connect()s to a claimed TCP port nobody listens on move "no listener" and the resets sent by exactly
their number, connections that work move the passive and active opens."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from tests.fixtures import userstack_tcp_helpers as H
from tests.fixtures.testbed import wait_until
from tests.fixtures.userstack_tcp_helpers import REPO
from tests.fixtures.xdpstack_helpers import XDPSTACK, udp_echo_app
from xdpstack import stackstats

pytest_plugins = ["tests.fixtures.xdpstack_fixtures"]
pytestmark = pytest.mark.root

PORT, NO_SOCKET = 7040, 7041

# On the stack: an IPv4 echo on PORT only, although PORT and NO_SOCKET are both claimed.
APP = udp_echo_app(PORT)

# In the peer namespace: frames as they are, through a packet socket (no kernel checksumming).
SENDER = r"""
import json, sys
from scapy.all import Ether, IP, IPv6, UDP, Raw, sendp
iface, dmac, a4, a6, port, nosock, counts = sys.argv[1:8]
port, nosock, n = int(port), int(nosock), json.loads(counts)
def bad(ip):                                   # a checksum that is neither right nor partial
    f = Ether(dst=dmac) / ip / UDP(sport=40001, dport=port) / Raw(b"bad checksum")
    good = Ether(bytes(f))[UDP].chksum
    f[UDP].chksum = good ^ 0x5A5A
    return f
frames = [bad(IP(dst=a4)) for _ in range(n["bad4"])] + [bad(IPv6(dst=a6)) for _ in range(n["bad6"])]
frames += [Ether(dst=dmac) / IP(dst=a4) / UDP(sport=40002, dport=nosock) / b"nobody"] * n["nosock"]
frames += [Ether(dst=dmac) / IP(dst="198.18.0.77") / UDP(sport=40003, dport=port) / b"away"] * n["notlocal"]
sendp(frames, iface=iface, verbose=False)
print(json.dumps({"sent": len(frames)}))
"""

UDP_ECHO_CLIENT = r"""
import json, os, socket, sys
fam, dst, port, sizes = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
s = socket.socket(socket.AF_INET6 if fam == "6" else socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1.0)
ok, bad, lost = 0, 0, 0
for n in sizes:
    msg = os.urandom(n)
    for _ in range(3):
        s.sendto(msg, (dst, port))
        try:
            got = s.recv(65536)
        except TimeoutError:
            continue
        ok += got == msg
        bad += got != msg
        break
    else:
        lost += 1
print(json.dumps({"ok": ok, "bad": bad, "lost": lost}))
"""


def launch(tb, opts: list[str], cmd: list[str]) -> subprocess.Popen:
    argv = [XDPSTACK, "--netns", tb.dut.ns, "run", tb.dut.ifname, *opts, "--", *cmd]
    return tb.track(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     cwd=REPO, env={**os.environ, "PYTHONPATH": REPO}))


def stacks_json(tb) -> dict:
    """The one stack's row of `xdpstack stacks --json`; stack_counters is {"stack": .., "tcp": ..}."""
    out = subprocess.run([XDPSTACK, "--netns", tb.dut.ns, "stacks", "--json"], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    (s,) = json.loads(out.stdout)
    return s


def udp_echoes(tb, family: str, sizes: list[int]) -> dict:
    dst = tb.dut.addr6 if family == "6" else tb.dut.addr4
    r = tb.peer.run(["python3", "-c", UDP_ECHO_CLIENT, family, dst, str(PORT), json.dumps(sizes)],
                    timeout=120)
    return json.loads(r.stdout)


def stop(p: subprocess.Popen):
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=10)


def test_drop_counters_move_by_exactly_the_bad_frames_sent(attached_bed):
    tb, _ = attached_bed
    p = launch(tb, ["--udp", str(PORT), "--udp", str(NO_SOCKET), "--name", "counted"],
               [sys.executable, "-c", APP])
    try:
        assert wait_until(lambda: p.poll() is not None or udp_echoes(tb, "4", [10])["ok"] == 1, 15, 0.2), \
            p.communicate(timeout=5)
        before = stacks_json(tb)["stack_counters"]["stack"]
        assert before is not None and before["rx_frames"] >= 1
        n = {"bad4": 4, "bad6": 3, "nosock": 5, "notlocal": 2}
        r = tb.peer.run([sys.executable, "-c", SENDER, tb.peer.ifname, tb.dut.mac, tb.dut.addr4, tb.dut.addr6,
                         str(PORT), str(NO_SOCKET), json.dumps(n)], timeout=60)
        assert json.loads(r.stdout)["sent"] == 14
        want = {k: before[k] for k, _ in stackstats.DROP_REASONS}
        want.update(rx_bad_csum=before["rx_bad_csum"] + 7, rx_no_socket=before["rx_no_socket"] + 5,
                    rx_not_local=before["rx_not_local"] + 2)
        drops = lambda: stackstats.drops(stacks_json(tb)["stack_counters"]["stack"])   # noqa: E731
        assert wait_until(lambda: drops() == want, 5, 0.1), (drops(), want)
        after = stacks_json(tb)["stack_counters"]["stack"]
        assert stackstats.drops(after) == want                   # exactly: nothing more came later
        assert after["rx_frames"] == before["rx_frames"] + 14
        assert after["rx_csum_partial"] == before["rx_csum_partial"]   # scapy's frames are complete

        text = subprocess.run([XDPSTACK, "--netns", tb.dut.ns, "stacks", tb.dut.ifname], capture_output=True,
                              text=True, timeout=30).stdout
        line = next(ln.strip() for ln in text.splitlines() if ln.strip().startswith("drops:"))
        assert line == (f"drops: bad checksum {want['rx_bad_csum']}, no socket {want['rx_no_socket']}, "
                        f"not addressed to it {want['rx_not_local']}; "
                        f"partial checksums accepted {after['rx_csum_partial']}"), text
        assert "tcp:" not in text, text                     # a UDP-only stack: no TCP line
    finally:
        stop(p)


def test_udp_echo_byte_exact_on_default_offloads_v4_v6(attached_bed):
    """The kernel peer keeps tx checksum offload on: every datagram arrives with a partial
    checksum, the stack (on a veth NIC) accepts and counts it, and echoes every size byte-exact."""
    tb, _ = attached_bed
    p = launch(tb, ["--udp", str(PORT), "--user", "nobody"], ["userstack-echo"])
    try:
        assert wait_until(lambda: p.poll() is not None or udp_echoes(tb, "4", [1])["ok"] == 1, 15, 0.2), \
            p.communicate(timeout=5)
        assert stacks_json(tb)["stack_counters"]["stack"]["rx_csum_partial"] >= 1
        r4 = udp_echoes(tb, "4", list(range(0, 1473, 7)) + [1472] * 20)
        r6 = udp_echoes(tb, "6", list(range(0, 1453, 7)) + [1452] * 20)
        assert (r4["bad"], r6["bad"], r4["lost"], r6["lost"]) == (0, 0, 0, 0), (r4, r6)
        c = stacks_json(tb)["stack_counters"]["stack"]
        assert c["rx_csum_partial"] >= r4["ok"] + r6["ok"] and c["rx_bad_csum"] == 0, c
        text = subprocess.run([XDPSTACK, "--netns", tb.dut.ns, "stacks"], capture_output=True, text=True,
                              timeout=30).stdout
        assert "drops: none; partial checksums accepted" in text, text
    finally:
        stop(p)


TCP_PORT, TCP_NO_LISTENER, SINK_PORT = 7042, 7043, 9042

# On the stack: TCP listeners (v4, v6) on TCP_PORT only, although TCP_NO_LISTENER is claimed too.
# A line "connect HOST PORT" makes the app open a connection itself (an active open) and answer
# "connected"; any other line is echoed.
TCP_APP = f"""
import socket, threading
from userstack import Stack
st = Stack.from_env()
def serve(c):
    with c:
        line = b""
        while not line.endswith(b"\\n"):
            d = c.recv(100)
            if not d:
                return
            line += d
        w = line.split()
        if w[0] == b"connect":
            host, port = w[1].decode(), int(w[2])
            o = st.tcp_socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
            o.settimeout(10)
            o.connect((host, port))
            o.sendall(b"from the stack")
            o.close()
            line = b"connected\\n"
        c.sendall(line)
def accept(family, any_addr):
    l = st.tcp_socket(family)
    l.bind((any_addr, {TCP_PORT}))
    l.listen(8)
    while True:
        c, _ = l.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()
threading.Thread(target=accept, args=(socket.AF_INET6, "::"), daemon=True).start()
accept(socket.AF_INET, "0.0.0.0")
"""

TCP_CLIENT = r"""
import json, socket, sys
dst, port, line = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode() + b"\n"
s = socket.create_connection((dst, port), timeout=5)
s.sendall(line)
got = b""
while not got.endswith(b"\n"):
    d = s.recv(100)
    if not d:
        break
    got += d
s.close()
print(json.dumps({"got": got.decode()}))
"""

REFUSED = r"""
import json, socket, sys
dsts, port, n = sys.argv[1].split(","), int(sys.argv[2]), int(sys.argv[3])
out = {}
for dst in dsts:
    refused = 0
    for _ in range(n):
        s = socket.socket(socket.AF_INET6 if ":" in dst else socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect((dst, port))
        except ConnectionRefusedError:
            refused += 1
        finally:
            s.close()
    out[dst] = refused
print(json.dumps(out))
"""


def tcp_echo_works(tb, dst: str) -> bool:
    r = tb.peer.run([sys.executable, "-c", TCP_CLIENT, dst, str(TCP_PORT), "ping"], check=False, timeout=30)
    return r.returncode == 0 and json.loads(r.stdout)["got"] == "ping\n"


def test_tcp_counters_no_listener_resets_and_opens(attached_bed):
    """SYNs to a claimed TCP port with no listener: the TCP's "no listener" counter and its resets
    sent move by exactly the number of connect()s (each refused by one RST); connections that work
    move the passive opens (the kernel connecting) and the active opens (the app connecting); the
    gauges say two listeners; `xdpstack stacks` prints the TCP line."""
    tb, _ = attached_bed
    p = launch(tb, ["--tcp", str(TCP_PORT), "--tcp", str(TCP_NO_LISTENER), "--name", "tcp-counted"],
               [sys.executable, "-c", TCP_APP])
    sink = None
    try:
        # both families answered (their neighbours resolved: no RST waits for a MAC below)
        for dst in (tb.dut.addr4, tb.dut.addr6):
            assert wait_until(lambda d=dst: p.poll() is not None or tcp_echo_works(tb, d), 15, 0.2), \
                p.communicate(timeout=5)
        assert p.poll() is None, p.communicate(timeout=5)
        tcp = lambda: stacks_json(tb)["stack_counters"]["tcp"]    # noqa: E731
        assert wait_until(lambda: tcp()["listeners"] == 2, 5, 0.1), tcp()
        before = tcp()

        # connections that work: one from the kernel per family, and one the app opens itself
        sink = H.peer_popen(tb, H.SINK_SERVER, tb.peer.addr4, SINK_PORT)
        assert tcp_echo_works(tb, tb.dut.addr4) and tcp_echo_works(tb, tb.dut.addr6)
        r = tb.peer.run([sys.executable, "-c", TCP_CLIENT, tb.dut.addr4, str(TCP_PORT),
                         f"connect {tb.peer.addr4} {SINK_PORT}"], timeout=30)
        assert json.loads(r.stdout)["got"] == "connected\n", r
        assert H.peer_result(sink)["received"] == len(b"from the stack")
        opens = lambda: {k: tcp()[k] - before[k] for k in ("passive_opens", "active_opens")}  # noqa: E731
        assert wait_until(lambda: opens() == {"passive_opens": 3, "active_opens": 1}, 5, 0.1), opens()
        assert tcp()["port_claims"] >= before["port_claims"] + 1

        # refused: N connect()s per family to the claimed port nobody listens on
        mid = tcp()
        n4, n6 = 5, 3
        for dst, n in ((tb.dut.addr4, n4), (tb.dut.addr6, n6)):
            r = tb.peer.run([sys.executable, "-c", REFUSED, dst, str(TCP_NO_LISTENER), str(n)], timeout=60)
            assert json.loads(r.stdout) == {dst: n}, r         # each connect() refused, by one RST
        moved = lambda: {k: tcp()[k] - mid[k] for k in ("no_socket", "rst_out")}   # noqa: E731
        assert wait_until(lambda: moved() == {"no_socket": n4 + n6, "rst_out": n4 + n6}, 5, 0.1), moved()
        after = tcp()
        assert {k: after[k] - mid[k] for k in ("no_socket", "rst_out")} == {"no_socket": 8, "rst_out": 8}
        assert after["segs_in"] - mid["segs_in"] >= n4 + n6
        for k in ("bad_segs", "listen_drops", "paws_drops", "passive_opens", "active_opens"):
            assert after[k] == mid[k], (k, mid, after)
        assert after["listeners"] == 2

        text = subprocess.run([XDPSTACK, "--netns", tb.dut.ns, "stacks", tb.dut.ifname], capture_output=True,
                              text=True, timeout=30).stdout
        line = next((ln.strip() for ln in text.splitlines() if ln.strip().startswith("tcp:")), None)
        assert line is not None, text
        assert ", 2 listeners; in " in line and f"drops: no listener {after['no_socket']}, " in line, line
        assert "backlog full 0, PAWS 0; resets out " in line, line
    finally:
        stop(p)
        if sink is not None and sink.poll() is None:
            sink.kill()
