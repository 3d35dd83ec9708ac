"""The stack's TCP as applications see it, between two stacks joined by an in-memory wire
(tests/fixtures/userstack_pair.py): the C API (api.h) and the Python TcpSocket (kernel-socket
semantics and exceptions), readiness through fileno() for selectors, ephemeral ports through the
control channel, per-stack options, faults. No root, no network."""
from __future__ import annotations

import errno
import hashlib
import os
import selectors
import socket
import struct
import threading
import time

import pytest

from tests.fixtures.testbed import wait_until
from tests.fixtures.userstack_pair import A4, A6, B4, Pair
from userstack._lib import ffi, lib

V4, V6 = socket.AF_INET, socket.AF_INET6


@pytest.fixture
def pair():
    with Pair(tcp=[7000, 7001]) as p:
        yield p


def listener(stack, family=V4, port=7000, backlog=16):
    s = stack.socket(family, socket.SOCK_STREAM)
    s.bind(("::" if family == V6 else "0.0.0.0", port))
    s.listen(backlog)
    s.settimeout(5)
    return s


def connected(p, family=V4, port=7000):
    lsock = listener(p.a, family, port)
    c = p.b.socket(family, socket.SOCK_STREAM)
    c.settimeout(5)
    c.connect((A6 if family == V6 else A4, port))
    s, _ = lsock.accept()
    s.settimeout(5)
    return lsock, c, s


def recv_exact(s, n):
    out = bytearray()
    while len(out) < n:
        d = s.recv(n - len(out))
        assert d, "unexpected end of stream"
        out += d
    return bytes(out)


# ---- binding and listening ------------------------------------------------------------------------
def test_listen_only_on_claimed_tuples(pair):
    s = pair.a.socket(V4, socket.SOCK_STREAM)
    with pytest.raises(OSError) as e:
        s.bind(("0.0.0.0", 7002))                       # not claimed
    assert e.value.errno == errno.EACCES
    with pytest.raises(OSError) as e:
        s.bind(("198.18.0.9", 7000))                    # not a local address
    assert e.value.errno == errno.EADDRNOTAVAIL
    with pytest.raises(OSError) as e:
        s.listen()                                      # never bound
    assert e.value.errno == errno.EDESTADDRREQ
    s.bind((A4, 7000))
    s.listen()
    assert s.getsockname() == (A4, 7000)
    t = pair.a.socket(V4, socket.SOCK_STREAM)
    t.bind((A4, 7000))
    with pytest.raises(OSError) as e:
        t.listen()
    assert e.value.errno == errno.EADDRINUSE
    with pytest.raises(OSError) as e:
        pair.a.socket(V6, socket.SOCK_STREAM).bind((A4, 7000))
    assert e.value.errno == errno.EAFNOSUPPORT
    with pytest.raises(OSError) as e:
        pair.a.socket(V4, socket.SOCK_SEQPACKET)
    assert e.value.errno == errno.EPROTONOSUPPORT


@pytest.mark.parametrize("family", [V4, V6])
def test_handshake_and_addresses(pair, family):
    lsock, c, s = connected(pair, family)
    a, b = (A6, "2001:db8::2") if family == V6 else (A4, B4)
    assert c.getpeername()[:2] == (a, 7000)
    assert s.getsockname()[:2] == (a, 7000)
    assert s.getpeername() == c.getsockname()
    assert c.getsockname()[0] == b and c.getsockname()[1] >= 40000     # claimed by the launcher
    fl = pair.launchers[1]
    assert (6, b, c.getsockname()[1], a) in fl.claims
    c.sendall(b"ping")
    assert recv_exact(s, 4) == b"ping"
    s.sendall(b"pong")
    assert recv_exact(c, 4) == b"pong"
    info = c.tcp_info()
    assert info["state_name"] == "ESTABLISHED" and info["options"] == 7      # SACK, TS, WS
    assert info["snd_mss"] == (1440 if family == V6 else 1460) - 12
    assert info["srtt_us"] > 0 and info["cwnd"] > 0


def test_ephemeral_ports_are_claimed_ahead_and_reused(pair):
    pair.b.tcp_configure("port_pool=3 time_wait_ms=50")
    lsock = listener(pair.a)
    fl = pair.launchers[1]
    c = pair.b.tcp_socket()
    c.settimeout(5)
    c.connect((A4, 7000))
    assert wait_until(lambda: pair.b.tcp_stats()["ports_ready"] == 3, 2)   # refilled in the background
    claims = len(fl.claims)
    d = pair.b.tcp_socket()
    d.settimeout(5)
    d.connect((A4, 7000))                             # from the pool: no new claim needed first
    assert d.getsockname()[1] in [port for (_p, _a, port, _r) in fl.claims[1:]]
    for x in (c, d):
        lsock.accept()[0].close()
        x.close()
    # after TIME-WAIT the ports go back to the pool (full: back to the launcher)
    assert wait_until(lambda: pair.b.tcp_stats()["time_wait"] == 0 and pair.b.tcp_stats()["conns"] == 0, 3)
    assert len(fl.claims) >= claims
    st = pair.b.tcp_stats()
    assert st["ports_ready"] == 3 and st["port_claim_failures"] == 0
    assert wait_until(lambda: len(fl.released) >= 1, 2)


def test_claim_refused_and_no_launcher():
    with Pair(refuse_claims=True) as p:
        listener(p.a)
        c = p.b.tcp_socket()
        c.settimeout(5)
        with pytest.raises(OSError) as e:
            c.connect((A4, 7000))
        assert e.value.errno == errno.EADDRINUSE
        assert p.b.tcp_stats()["port_claim_failures"] >= 1
    from tests.fixtures.userstack_helpers import mem_stack
    st = mem_stack(tuples=(("tcp", "0.0.0.0", 7000),))   # no control channel at all
    try:
        c = st.tcp_socket()
        with pytest.raises(OSError) as e:
            c.connect((B4, 80))
        assert e.value.errno == errno.EADDRNOTAVAIL
    finally:
        st.close()


# ---- blocking, non-blocking, timeouts, selectors --------------------------------------------------
def test_timeouts_and_nonblocking(pair):
    lsock, c, s = connected(pair)
    s.settimeout(0.2)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        s.recv(10)
    assert 0.15 < time.monotonic() - t0 < 2
    s.setblocking(False)
    assert not s.getblocking()
    with pytest.raises(BlockingIOError):
        s.recv(10)
    lsock.setblocking(False)
    with pytest.raises(BlockingIOError):
        lsock.accept()
    lsock.settimeout(0.1)
    with pytest.raises(TimeoutError):
        lsock.accept()
    c.sendall(b"abc")
    s.setblocking(True)
    assert s.recv(10, socket.MSG_PEEK) == b"abc"
    assert s.recv(1) == b"a"
    buf = bytearray(10)
    assert s.recv_into(buf) == 2 and buf[:2] == b"bc"


def test_nonblocking_connect_and_selectors(pair):
    lsock = listener(pair.a)
    c = pair.b.tcp_socket()
    c.setblocking(False)
    with pytest.raises(BlockingIOError) as e:
        c.connect((A4, 7000))
    assert e.value.errno == errno.EINPROGRESS
    sel = selectors.DefaultSelector()
    sel.register(c, selectors.EVENT_WRITE)
    assert sel.select(5), "never writable"
    assert c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
    with pytest.raises(OSError) as e:
        c.connect((A4, 7000))
    assert e.value.errno == errno.EISCONN
    s, _ = lsock.accept()
    sel.modify(c, selectors.EVENT_READ)
    assert sel.select(0.05) == []                     # nothing to read yet
    s.sendall(b"x")
    assert sel.select(5) and c.recv(1) == b"x"
    assert sel.select(0.05) == []                     # drained: not readable any more
    sel.close()


def test_fileno_writable_only_while_send_would_not_block(pair):
    pair.a.tcp_configure("rcvbuf=65536")
    pair.b.tcp_configure("sndbuf=65536")
    lsock, c, s = connected(pair)
    c.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(c, selectors.EVENT_WRITE)
    assert sel.select(1)
    sent = 0
    for _ in range(50):                               # fill our send buffer and the peer's window
        try:
            sent += c.send(b"z" * 65536)
        except BlockingIOError:
            time.sleep(0.05)                          # until nothing moves any more
            try:
                sent += c.send(b"z" * 65536)
            except BlockingIOError:
                break
    else:
        pytest.fail("the send buffer never filled")
    assert sent > 65536 + 32768
    assert sel.select(0.1) == []                      # full: not writable
    got = 0
    while got < sent:
        got += len(s.recv(1 << 20))
    assert sel.select(5), "writable again once the peer read"
    sel.close()


def test_connect_refused_and_reset_and_broken_pipe(pair):
    c = pair.b.tcp_socket()
    c.settimeout(5)
    with pytest.raises(ConnectionRefusedError):
        c.connect((A4, 7001))                          # claimed but nobody listens: RST
    c2 = pair.b.tcp_socket()
    assert c2.connect_ex((A4, 7001)) == errno.ECONNREFUSED
    lsock, c, s = connected(pair)
    s.abort()                                         # RST
    with pytest.raises(ConnectionResetError):
        c.recv(10)
    with pytest.raises(BrokenPipeError):
        c.send(b"after the reset")
    assert c.recv(10) == b""                          # the error was reported once
    lsock2, c, s = connected(pair, port=7001)
    c.shutdown(socket.SHUT_WR)
    with pytest.raises(BrokenPipeError):
        c.send(b"x")
    assert s.recv(10) == b""                          # FIN
    s.sendall(b"still flows the other way")
    assert recv_exact(c, 25) == b"still flows the other way"
    u = pair.b.tcp_socket()
    with pytest.raises(OSError) as e:
        u.send(b"x")
    assert e.value.errno == errno.ENOTCONN
    with pytest.raises(OSError) as e:
        u.getpeername()
    assert e.value.errno == errno.ENOTCONN


def test_close_with_unread_data_resets_and_linger_zero_resets(pair):
    lsock, c, s = connected(pair)
    c.sendall(b"never read")
    assert wait_until(lambda: s.tcp_info()["rcvbuf_used"] == 10, 2)
    s.close()                                         # RFC 2525: unread data -> RST
    with pytest.raises(ConnectionResetError):
        c.recv(10)
    c.close()
    c = pair.b.tcp_socket()
    c.settimeout(5)
    c.connect((A4, 7000))
    s, _ = lsock.accept()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
    s.settimeout(5)
    with pytest.raises(ConnectionResetError):
        s.recv(10)


def test_graceful_close_both_orders_and_time_wait(pair):
    pair.a.tcp_configure("time_wait_ms=100")
    pair.b.tcp_configure("time_wait_ms=100")
    lsock, c, s = connected(pair)
    s.sendall(b"bye")
    s.close()                                         # the server closes first: TIME-WAIT on A
    assert recv_exact(c, 3) == b"bye" and c.recv(10) == b""
    c.close()
    assert wait_until(lambda: pair.a.tcp_stats()["time_wait"] == 1, 2)
    assert wait_until(lambda: pair.a.tcp_stats()["time_wait"] == 0 and pair.a.tcp_stats()["conns"] == 0, 3)
    assert pair.b.tcp_stats()["time_wait"] == 0 and wait_until(lambda: pair.b.tcp_stats()["conns"] == 0, 2)


def test_close_while_another_thread_waits(pair):
    lsock, c, s = connected(pair)
    err = []

    def reader():
        try:
            s.settimeout(None)
            s.recv(10)
        except OSError as e:
            err.append(e.errno)
    t = threading.Thread(target=reader)
    t.start()
    time.sleep(0.2)
    s.close()
    t.join(3)
    assert not t.is_alive() and err == [errno.EBADF]


# ---- options ----------------------------------------------------------------------------------
def test_socket_options(pair):
    lsock, c, s = connected(pair)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    assert c.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    c.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 30)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 5)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
    assert [c.getsockopt(socket.IPPROTO_TCP, o) for o in (socket.TCP_KEEPIDLE, socket.TCP_KEEPINTVL,
                                                           socket.TCP_KEEPCNT)] == [30, 5, 3]
    assert c.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    assert c.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).rstrip(b"\0") == b"cubic"
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, b"reno")
    assert c.tcp_info()["cc"] == lib.US_CC_NEWRENO
    with pytest.raises(OSError) as e:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, b"bbr")
    assert e.value.errno == errno.ENOENT
    assert c.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG) == 1448
    with pytest.raises(OSError) as e:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)   # only before connect
    assert e.value.errno == errno.EISCONN
    n = pair.b.tcp_socket()
    n.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    n.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 << 10)
    assert n.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == 1 << 20
    assert n.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == 256 << 10
    n.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)      # accepted, meaningless here
    with pytest.raises(OSError) as e:
        n.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 4)
    assert e.value.errno == errno.ENOPROTOOPT


def test_stack_options_and_their_errors(pair):
    with pytest.raises(OSError) as e:
        pair.a.tcp_configure("nonsense=1")
    assert e.value.errno == errno.EINVAL
    for bad in ("sack=2", "sndbuf=-1", "cc=bbr", "rto_min_ms=x", "port_pool=65", "sndbuf"):
        with pytest.raises(OSError):
            pair.a.tcp_configure(bad)
    pair.a.tcp_configure("cc=newreno sndbuf=1m rcvbuf=512k init_cwnd=4 delack_ms=0.5 timestamps=0")
    lsock, c, s = connected(pair)
    assert s.tcp_info()["cc"] == lib.US_CC_NEWRENO and s.tcp_info()["sndbuf"] == 1 << 20
    assert s.tcp_info()["options"] & 2 == 0                   # no timestamps offered by A
    with pytest.raises(OSError) as e:
        pair.a.tcp_configure("cc=cubic")                       # sockets exist now
    assert e.value.errno == errno.EBUSY
    for bad in ("drop=2", "dir=up", "seed=x", "flood=0.1", "drop"):
        with pytest.raises(OSError) as e:
            pair.a.configure_faults(bad)
        assert e.value.errno == errno.EINVAL
    pair.a.configure_faults("seed=3 drop=5% dir=rx")
    assert pair.a.fault_stats()["dropped"] == 0


# ---- data ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("faults", ["", "seed=5 drop=0.05 duplicate=0.01 reorder=0.02 corrupt=0.01 dir=both"])
def test_bulk_both_ways_byte_exact(pair, faults):
    if faults:
        # corruption on one side only: two flipped bits in one frame can cancel out in the
        # Internet checksum (that is what link CRCs are for); one is always caught
        pair.a.configure_faults(faults)
        pair.b.configure_faults(faults.replace("seed=5", "seed=6").replace("corrupt=0.01", "corrupt=0"))
        pair.a.tcp_configure("rto_min_ms=10")
        pair.b.tcp_configure("rto_min_ms=10")
    lsock, c, s = connected(pair)
    n = 8 << 20
    data_c, data_s = os.urandom(n), os.urandom(n)
    got = {}

    def send(sock, data):
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)

    def recv(sock, key):
        out = bytearray()
        while True:
            d = sock.recv(1 << 20)
            if not d:
                break
            out += d
        got[key] = hashlib.sha256(out).hexdigest()
    ts = [threading.Thread(target=send, args=(c, data_c)), threading.Thread(target=send, args=(s, data_s)),
          threading.Thread(target=recv, args=(c, "c")), threading.Thread(target=recv, args=(s, "s"))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert got == {"c": hashlib.sha256(data_s).hexdigest(), "s": hashlib.sha256(data_c).hexdigest()}
    if faults:
        assert pair.a.fault_stats()["dropped"] > 0 and c.tcp_info()["retransmits"] > 0


def test_data_written_before_stack_close_is_delivered():
    with Pair() as p:
        lsock = listener(p.a)
        data = os.urandom(4 << 20)
        c = p.b.tcp_socket()
        c.settimeout(5)
        c.connect((A4, 7000))
        s, _ = lsock.accept()
        got = bytearray()

        def rx():
            while True:
                d = s.recv(1 << 20)
                if not d:
                    return
                got.extend(d)
        t = threading.Thread(target=rx)
        t.start()
        c.sendall(data)
        c.close()
        p.b.close()                                   # lingers until the data is acknowledged
        t.join(10)
        assert bytes(got) == data


def test_many_connections(pair):
    lsock = listener(pair.a, backlog=512)
    clients = []
    for _ in range(200):
        c = pair.b.tcp_socket()
        c.setblocking(False)
        assert c.connect_ex((A4, 7000)) == errno.EINPROGRESS
        clients.append(c)
    servers = []
    while len(servers) < 200:
        servers.append(lsock.accept()[0])
    for i, c in enumerate(clients):
        c.setblocking(True)
        c.settimeout(5)
        c.sendall(b"%d" % i)
    seen = sorted(int(s.recv(10)) for s in servers)
    assert seen == list(range(200))
    assert pair.a.tcp_stats()["conns"] == 200 and pair.a.tcp_stats()["listen_drops"] == 0


def test_without_driver_threads_blocking_calls_drive_the_stack():
    with Pair(driver=False) as p:
        lsock = listener(p.a)
        res = {}

        def server():
            s, _ = lsock.accept()
            res["got"] = recv_exact(s, 5)
            s.sendall(b"world")
            s.close()
        t = threading.Thread(target=server)
        t.start()
        c = p.b.tcp_socket()
        c.settimeout(5)
        c.connect((A4, 7000))
        c.sendall(b"hello")
        assert recv_exact(c, 5) == b"world"
        t.join(5)
        assert res["got"] == b"hello"


# ---- the C API directly -----------------------------------------------------------------------------
def test_c_api_events_peek_consume_writev(pair):
    lsock, c, s = connected(pair)
    h = s._s
    assert lib.us_sock_set_events(h, lib.US_EV_IN | lib.US_EV_OUT | lib.US_EV_RDHUP) == 0
    c.sendall(b"hello world")
    c.shutdown(socket.SHUT_WR)
    assert wait_until(lambda: lib.us_tcp_recv_avail(h) == 11, 2)
    ev = ffi.new("struct us_event[8]")
    n = lib.us_wait(pair.a._st, ev, 8, 1000)
    mine = [ev[i].events for i in range(n) if ev[i].sock == h]
    assert mine and mine[0] & lib.US_EV_IN and mine[0] & lib.US_EV_OUT and mine[0] & lib.US_EV_RDHUP
    iov = ffi.new("struct us_iov[2]")
    assert lib.us_tcp_peek(h, iov) == 11
    assert ffi.buffer(ffi.cast("char *", iov[0].base), iov[0].len)[:] == b"hello world"[:iov[0].len]
    assert lib.us_tcp_consume(h, 6) == 0
    buf = ffi.new("char[16]")
    assert lib.us_tcp_read(h, buf, 16) == 5 and ffi.buffer(buf, 5)[:] == b"world"
    assert lib.us_tcp_read(h, buf, 16) == 0                    # end of stream
    parts = [ffi.new("char[]", b"ab"), ffi.new("char[]", b"cde")]
    v = ffi.new("struct us_iov[2]", [(parts[0], 2), (parts[1], 3)])
    space = lib.us_tcp_send_space(h)
    assert lib.us_tcp_writev(h, v, 2, lib.US_MSG_MORE) == 5
    assert lib.us_tcp_send_space(h) == space - 5
    assert lib.us_flush(pair.a._st) >= 0
    assert recv_exact(c, 5) == b"abcde"
    info = ffi.new("struct us_tcp_info *")
    assert lib.us_tcp_info(h, info) == 0 and info.state == lib.US_TCP_CLOSE_WAIT
    assert lib.us_tcp_listen(h, 1) < 0
    u = ffi.new("int *")
    assert lib.us_tcp_accept(h, ffi.NULL, u) == ffi.NULL and u[0] == -errno.EINVAL
    assert lib.us_sock_wait(h, lib.US_EV_OUT, 0) & lib.US_EV_OUT


def test_makefile_lines_both_ways(pair):
    lsock, c, s = connected(pair)
    w = c.makefile("w")
    r = s.makefile("rb")
    w.write("first line\nsecond line\n")
    w.flush()
    assert r.readline() == b"first line\n" and r.readline() == b"second line\n"
    w.close()
    c.close()                                   # closes now: no stream left open
    assert r.read() == b""
    s.close()
    assert not s.closed                         # the reader still holds it
    r.close()
    assert s.closed


def test_keepalive_detects_a_dead_peer(pair):
    lsock, c, s = connected(pair)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for opt in (socket.TCP_KEEPIDLE, socket.TCP_KEEPINTVL):
        c.setsockopt(socket.IPPROTO_TCP, opt, 1)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 2)
    pair.a.configure_faults("drop=1 dir=both")       # the peer goes silent
    c.settimeout(10)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError) as e:
        c.recv(10)
    assert e.value.errno == errno.ETIMEDOUT             # from the stack, not our own timeout
    assert 2 < time.monotonic() - t0 < 8
    assert c.tcp_info()["keepalive_probes"] >= 2
