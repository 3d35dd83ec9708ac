"""The user-level TCP against real kernel peers on a testbed (see userstack_tcp_helpers):
handshakes both ways, 100 MB each way compared by SHA-256, 1,000 concurrent connections, every
close variant, IPv4 and IPv6; the C echo (as nobody, from the environment) and the Python API.

    peer ns: python3 / nc / curl / wrk (kernel TCP)  <--veth-->  dut: XDP redirect -> AF_XDP -> stack
"""
from __future__ import annotations

import errno
import socket
import struct
import subprocess
import sys
import time

import pytest

from tests.fixtures import userstack_tcp_helpers as H
from tests.fixtures.testbed import wait_until
from tests.fixtures.userstack_xdp import in_netns

pytestmark = pytest.mark.root
FAMILIES = ["4", "6"]
MB = 1_000_000


@pytest.fixture(scope="module")
def prog(request):
    import os
    if os.geteuid() != 0:
        pytest.skip("needs root")
    p = H.redirect_program()
    yield p
    p.close()


@pytest.fixture
def echo(testbed, prog):
    app = H.App(testbed, prog, [H.ECHO], tcp=(7000,))
    app.wait_ready("echo on tcp/7000 (IPv6)")
    yield app
    if app.p.poll() is None or app.stdout is None:
        app.stop()


def addr(tb, family):
    return tb.dut.addr6 if family == "6" else tb.dut.addr4


def peer_addr(tb, family):
    return tb.peer.addr6 if family == "6" else tb.peer.addr4


SMALL_CLIENT = r"""
import json, socket, sys
dst, port = sys.argv[1], int(sys.argv[2])
s = socket.create_connection((dst, port), timeout=5)
local = s.getsockname()
s.sendall(b"hello user-level tcp")
first = s.recv(100)
s.shutdown(socket.SHUT_WR)                 # half-close: the echo still answers, then FINs
rest = b""
while True:
    d = s.recv(100)
    if not d:
        break
    rest += d
s.close()
print(json.dumps({"first": first.decode(), "rest": rest.decode(), "local": list(local[:2])}))
"""


@pytest.mark.parametrize("family", FAMILIES)
def test_passive_open_echo_with_python_and_nc(testbed, echo, family):
    tb = testbed
    r = H.peer_python(tb, SMALL_CLIENT, addr(tb, family), 7000)
    assert r["first"] + r["rest"] == "hello user-level tcp"
    out = tb.peer.run(f"printf 'over nc\\n' | nc -N -w 5 {addr(tb, family)} 7000", timeout=20)
    assert out.stdout == "over nc\n"
    stats = echo.stop()
    assert stats["tcp_accepted"] == 2 and stats["tcp_open"] == 0 and stats["tcp_resets"] == 0
    assert stats["rx_bad_csum"] == 0 and stats["rx_malformed"] == 0


@pytest.mark.parametrize("family", FAMILIES)
def test_100mb_each_way_through_the_echo(testbed, echo, family):
    """100 MB to the stack and the same 100 MB back, one connection, SHA-256 both ways."""
    r = H.peer_python(testbed, H.BULK_ECHO_CLIENT, addr(testbed, family), 7000, 100 * MB, timeout=300)
    assert r["received"] == r["sent"] == 100 * MB
    assert r["sha_received"] == r["sha_sent"]
    stats = echo.stop()
    assert stats["tcp_bytes"] == 100 * MB and stats["tcp_resets"] == 0


THOUSAND = r"""
import json, resource, selectors, socket, sys, time
dst, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_NOFILE, (n + 256, n + 256))
af = socket.AF_INET6 if ":" in dst else socket.AF_INET
sel = selectors.DefaultSelector()
socks, want, got = [], {}, {}
t0 = time.monotonic()
for i in range(n):
    s = socket.socket(af, socket.SOCK_STREAM); s.setblocking(False)
    s.connect_ex((dst, port))
    socks.append(s); want[s] = b"connection %d\n" % i; got[s] = b""
    sel.register(s, selectors.EVENT_WRITE)
pending_connect, open_now, max_open = n, 0, 0
deadline = time.monotonic() + 60
while (pending_connect or any(len(got[s]) < len(want[s]) for s in socks)) and time.monotonic() < deadline:
    for key, ev in sel.select(1):
        s = key.fileobj
        if ev & selectors.EVENT_WRITE:
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise OSError(err, "connect failed")
            s.send(want[s]); pending_connect -= 1
            sel.modify(s, selectors.EVENT_READ)
        else:
            d = s.recv(100)
            got[s] += d
            if len(got[s]) >= len(want[s]):
                sel.unregister(s)
# every connection is open (none closed yet) while the last echo arrives
ok = sum(got[s] == want[s] for s in socks)
for s in socks:
    s.shutdown(socket.SHUT_WR)
eofs = 0
for s in socks:
    s.setblocking(True); s.settimeout(10)
    eofs += s.recv(100) == b""
    s.close()
print(json.dumps({"ok": ok, "eofs": eofs, "seconds": time.monotonic() - t0}))
"""


@pytest.mark.parametrize("family", FAMILIES)
def test_1000_concurrent_connections(testbed, echo, family):
    r = H.peer_python(testbed, THOUSAND, addr(testbed, family), 7000, 1000, timeout=120)
    assert r["ok"] == 1000 and r["eofs"] == 1000, r
    stats = echo.stop()
    assert stats["tcp_accepted"] == 1000 and stats["tcp_open"] == 0 and stats["tcp_resets"] == 0
    assert stats["tcp_listen_drops"] == 0


# ---- the Python API in this process against kernel servers and clients ------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_active_open_100mb_each_way(testbed, prog, family):
    """The stack connects (ephemeral port claimed from the dut's kernel) to kernel servers: sends
    100 MB to one, receives 100 MB from another; SHA-256 compared."""
    import hashlib
    import os
    tb = testbed
    af = socket.AF_INET6 if family == "6" else socket.AF_INET
    with H.inproc_stack(tb, prog) as stack:
        sink = H.peer_popen(tb, H.SINK_SERVER, peer_addr(tb, family), 9000)
        c = stack.socket(af, socket.SOCK_STREAM)
        c.settimeout(10)
        c.connect((peer_addr(tb, family), 9000))
        lport = c.getsockname()[1]
        assert H.EPHEMERAL[0] <= lport <= H.EPHEMERAL[1]
        with in_netns(tb.dut.ns):                  # the kernel holds the port for us meanwhile
            k = socket.socket(af, socket.SOCK_STREAM)
            with pytest.raises(OSError) as e:
                k.bind((addr(tb, family), lport))
            k.close()
        assert e.value.errno == errno.EADDRINUSE
        block, h, left = os.urandom(1000003), hashlib.sha256(), 100 * MB
        while left:
            chunk = memoryview(block)[:min(left, len(block))]
            c.sendall(chunk)
            h.update(chunk)
            left -= len(chunk)
        c.close()                                  # graceful: the data still arrives
        r = H.peer_result(sink, 120)
        assert r["received"] == 100 * MB and r["sha"] == h.hexdigest()
        assert r["peer"][1] == lport

        src = H.peer_popen(tb, H.SOURCE_SERVER, peer_addr(tb, family), 9001, 100 * MB)
        c = stack.socket(af, socket.SOCK_STREAM)
        c.settimeout(10)
        c.connect((peer_addr(tb, family), 9001))
        h, n, buf = hashlib.sha256(), 0, bytearray(1 << 20)
        while True:
            k = c.recv_into(buf)
            if not k:
                break
            h.update(memoryview(buf)[:k])
            n += k
        c.close()
        r = H.peer_result(src, 120)
        assert n == 100 * MB and r["sha"] == h.hexdigest()
        t = stack.tcp_stats()
        assert t["active_opens"] == 2 and t["port_claims"] >= 2 and t["port_claim_failures"] == 0


ACCEPT_ONE = r"""
import json, socket, struct, sys, time
addr, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
af = socket.AF_INET6 if ":" in addr else socket.AF_INET
l = socket.socket(af, socket.SOCK_STREAM); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind((addr, port)); l.listen(4)
print("ready", flush=True)
c, _ = l.accept(); c.settimeout(10)
out = {}
if mode == "rst":                          # reset (once the client surely saw the handshake)
    time.sleep(0.3)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)); c.close()
elif mode == "fin":                        # say something and close first
    c.sendall(b"kernel closes"); c.close()
elif mode == "halfclose":                  # the stack shuts down writing; answer after its FIN
    got = b""
    while True:
        d = c.recv(100)
        if not d:
            break
        got += d
    c.sendall(b"answer after your FIN"); c.close(); out["got"] = got.decode()
elif mode == "expect_rst":
    try:
        while c.recv(100):
            pass
        out["result"] = "eof"
    except ConnectionResetError:
        out["result"] = "reset"
print(json.dumps(out))
"""


@pytest.mark.parametrize("family", FAMILIES)
def test_close_variants_active_side(testbed, prog, family):
    """The stack as client: the kernel resets; the kernel closes first; the stack half-closes;
    the stack resets; a refused connect; a connect that times out, closed in SYN-SENT."""
    tb = testbed
    af = socket.AF_INET6 if family == "6" else socket.AF_INET
    p = peer_addr(tb, family)
    with H.inproc_stack(tb, prog) as stack:
        def dial(port):
            c = stack.socket(af, socket.SOCK_STREAM)
            c.settimeout(5)
            c.connect((p, port))
            return c

        srv = H.peer_popen(tb, ACCEPT_ONE, p, 9100, "rst")
        c = dial(9100)
        with pytest.raises(ConnectionResetError):
            while c.recv(10):
                pass
        with pytest.raises(BrokenPipeError):
            c.send(b"x")
        c.close()
        H.peer_result(srv)

        srv = H.peer_popen(tb, ACCEPT_ONE, p, 9101, "fin")
        c = dial(9101)
        assert c.recv(100) == b"kernel closes"
        assert c.recv(100) == b""               # FIN from the kernel first
        c.sendall(b"still allowed in CLOSE-WAIT")  # the kernel answers with a RST: it closed
        c.close()
        H.peer_result(srv)

        srv = H.peer_popen(tb, ACCEPT_ONE, p, 9102, "halfclose")
        c = dial(9102)
        c.sendall(b"my half")
        c.shutdown(socket.SHUT_WR)
        got = b""
        while True:
            d = c.recv(100)
            if not d:
                break
            got += d
        assert got == b"answer after your FIN"
        c.close()
        assert H.peer_result(srv)["got"] == "my half"
        wait_until(lambda: stack.tcp_stats()["time_wait"] == 1, 5)   # we closed first

        srv = H.peer_popen(tb, ACCEPT_ONE, p, 9103, "expect_rst")
        c = dial(9103)
        c.sendall(b"then a reset")
        time.sleep(0.1)
        c.abort()
        assert H.peer_result(srv)["result"] == "reset"

        c = stack.socket(af, socket.SOCK_STREAM)
        c.settimeout(5)
        with pytest.raises(ConnectionRefusedError):
            c.connect((p, 9199))                 # nobody listens: the kernel answers RST
        c.close()
        c = stack.socket(af, socket.SOCK_STREAM)
        assert c.connect_ex((p, 9199)) == errno.ECONNREFUSED
        c.close()

        c = stack.socket(af, socket.SOCK_STREAM)
        c.settimeout(0.5)
        nowhere = "2001:db8::77" if family == "6" else "198.18.0.77"
        with pytest.raises(TimeoutError):
            c.connect((nowhere, 80))            # no such host: nothing ever answers
        c.close()                                # abandoned in SYN-SENT
        assert wait_until(lambda: stack.tcp_stats()["conns"] == stack.tcp_stats()["time_wait"], 5)


CONNECT_AND = r"""
import json, socket, struct, sys, time
dst, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.create_connection((dst, port), timeout=10)
out = {}
if mode == "rst":
    s.sendall(b"data then reset"); time.sleep(0.2)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)); s.close()
elif mode == "read_all":                      # the stack closes first, or resets
    got = b""
    try:
        while True:
            d = s.recv(100)
            if not d:
                break
            got += d
        out["end"] = "eof"
    except ConnectionResetError:
        out["end"] = "reset"
    out["got"] = got.decode()
    s.close()
elif mode == "halfclose":                     # the stack shuts down writing, we answer after
    got = b""
    while True:
        d = s.recv(100)
        if not d:
            break
        got += d
    s.sendall(b"more after your FIN"); s.close(); out["got"] = got.decode()
print(json.dumps(out))
"""


def _bg(tb, code, *args):
    return tb.track(tb.peer.popen([sys.executable, "-c", code, *map(str, args)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True))


@pytest.mark.parametrize("family", FAMILIES)
def test_close_variants_passive_side(testbed, prog, family):
    """The stack as server: the kernel client resets; the stack closes first (TIME-WAIT on our
    side); the stack half-closes and keeps reading; the stack resets."""
    tb = testbed
    af = socket.AF_INET6 if family == "6" else socket.AF_INET
    a = addr(tb, family)
    with H.inproc_stack(tb, prog) as stack:
        lsock = stack.socket(af, socket.SOCK_STREAM)
        lsock.bind(("::" if family == "6" else "0.0.0.0", 7000))
        lsock.listen()
        lsock.settimeout(10)

        cl = _bg(tb, CONNECT_AND, a, 7000, "rst")
        c, peer = lsock.accept()
        assert peer[0] == peer_addr(tb, family)
        c.settimeout(5)
        assert c.recv(100) == b"data then reset"
        with pytest.raises(ConnectionResetError):
            c.recv(100)
        c.close()
        H.peer_result(cl)

        cl = _bg(tb, CONNECT_AND, a, 7000, "read_all")
        c, _ = lsock.accept()
        c.sendall(b"stack closes first")
        c.close()
        r = H.peer_result(cl)
        assert r == {"end": "eof", "got": "stack closes first"}
        assert wait_until(lambda: stack.tcp_stats()["time_wait"] == 1, 5)

        cl = _bg(tb, CONNECT_AND, a, 7000, "halfclose")
        c, _ = lsock.accept()
        c.settimeout(5)
        c.sendall(b"half")
        c.shutdown(socket.SHUT_WR)
        got = b""
        while True:
            d = c.recv(100)
            if not d:
                break
            got += d
        assert got == b"more after your FIN"
        c.close()
        assert H.peer_result(cl)["got"] == "half"

        cl = _bg(tb, CONNECT_AND, a, 7000, "read_all")
        c, _ = lsock.accept()
        c.sendall(b"before the reset")
        time.sleep(0.2)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
        r = H.peer_result(cl)
        assert r["end"] == "reset" and r["got"] in ("", "before the reset")
        lsock.close()


HANDSHAKE_ABORT = r"""
import json, sys, logging
logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
from scapy.all import IP, IPv6, TCP, conf, sr1, send
conf.verb = 0
dst, port = sys.argv[1], int(sys.argv[2])
ip = IPv6(dst=dst) if ":" in dst else IP(dst=dst)
syn = ip / TCP(sport=33333, dport=port, flags="S", seq=1000)
synack = sr1(syn, timeout=2)
out = {"synack": bool(synack and synack[TCP].flags & 0x12 == 0x12)}
if out["synack"]:
    send(ip / TCP(sport=33333, dport=port, flags="R", seq=1001))
print(json.dumps(out))
"""


@pytest.mark.parametrize("family", FAMILIES)
def test_abort_during_handshake(testbed, prog, family):
    """A client resets after our SYN-ACK: the half-open connection goes, the listener keeps
    working (a connection that sends data and resets is accepted and reports the reset)."""
    tb = testbed
    af = socket.AF_INET6 if family == "6" else socket.AF_INET
    with H.inproc_stack(tb, prog) as stack:
        lsock = stack.socket(af, socket.SOCK_STREAM)
        lsock.bind(("::" if family == "6" else "0.0.0.0", 7000))
        lsock.listen()
        # the peer's kernel would reset the SYN-ACK of a connection it does not know: scapy's
        # raw SYN gets an answer either way, then its own RST
        r = H.peer_python(tb, HANDSHAKE_ABORT, addr(tb, family), 7000)
        assert r["synack"]
        assert wait_until(lambda: stack.tcp_stats()["conns"] == 0, 3), stack.tcp_stats()
        cl = _bg(tb, CONNECT_AND, addr(tb, family), 7000, "rst")
        lsock.settimeout(5)
        c, _ = lsock.accept()
        c.settimeout(5)
        assert c.recv(100) == b"data then reset"
        with pytest.raises(ConnectionResetError):
            c.recv(100)
        c.close()
        H.peer_result(cl)
        lsock.close()
        assert stack.tcp_stats()["listen_drops"] == 0
