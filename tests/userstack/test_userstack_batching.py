"""The send path of an application that drives its stack with us_wait (run to completion): socket
calls only queue, the batch leaves at the next us_wait/us_flush in one flush, ACKs ride on the
answers and FINs on the last data. Stack A is driven here through the C API; stack B is a Python
client with its driver thread (whose calls must still leave at once). In-memory wire: each frame
a stack emits is counted (us_test_link_stats), so "nothing left during the call" is observable."""
from __future__ import annotations

import errno
import socket
import time

import pytest

from tests.fixtures.userstack_pair import A4, Pair
from userstack._lib import ffi, lib

PORT = 7000


@pytest.fixture
def pair():
    with Pair(tcp=[PORT], driver=False) as p:
        assert lib.us_driver_start(p.b._st) == 0           # B: a blocking-style client
        yield p


def frames_out(p, st) -> int:
    return p.link_stats(st)[0]


def c_listener(st):
    err = ffi.new("int *")
    lsn = lib.us_tcp_socket(st, lib.US_AF4, err)
    ep = ffi.new("struct us_endpoint *")
    ep.addr.family = lib.US_AF4
    ep.port = PORT
    assert lib.us_tcp_bind(lsn, ep) == 0 and lib.us_tcp_listen(lsn, 16) == 0
    return lsn


def wait_for(st, sock, mask, timeout=5.0) -> int:
    """us_wait until sock has one of mask; returns its events."""
    ev = ffi.new("struct us_event[16]")
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        n = lib.us_wait(st, ev, 16, 100)
        for i in range(max(n, 0)):
            if ev[i].sock == sock and ev[i].events & mask:
                return ev[i].events
    raise AssertionError("no event")


def accept(st, lsn):
    wait_for(st, lsn, lib.US_EV_IN)
    err = ffi.new("int *")
    s = lib.us_tcp_accept(lsn, ffi.NULL, err)
    assert s != ffi.NULL, err[0]
    return s


def peek_all(s) -> bytes:
    iov = ffi.new("struct us_iov[2]")
    n = lib.us_tcp_peek(s, iov)
    return b"".join(ffi.buffer(ffi.cast("char *", iov[i].base), iov[i].len)[:] for i in range(2))[:n]


def connect(p, lsn):
    """A client on B (non-blocking connect: A progresses only in our us_wait), accepted on A."""
    c = p.b.socket(socket.AF_INET, socket.SOCK_STREAM)
    c.setblocking(False)
    assert c.connect_ex((A4, PORT)) in (0, errno.EINPROGRESS)
    s = accept(p.a._st, lsn)
    c.settimeout(5)
    return c, s


def test_connection_close_costs_three_frames(pair):
    """SYN-ACK, response + FIN + ACK of the request, ACK of the client's FIN; every socket call in
    between (peek, consume, write, close) sends nothing by itself."""
    st = pair.a._st
    lsn = c_listener(st)
    f0 = frames_out(pair, pair.a)
    c, s = connect(pair, lsn)
    c.sendall(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
    wait_for(st, s, lib.US_EV_IN)
    f1 = frames_out(pair, pair.a)
    assert f1 - f0 == 1                                         # the SYN-ACK: the request's ACK is held
    req = peek_all(s)
    assert req.startswith(b"GET /")
    assert lib.us_tcp_consume(s, len(req)) == 0
    body = ffi.new("char[]", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert lib.us_tcp_write(s, body, len(body) - 1, lib.US_MSG_MORE) == len(body) - 1
    assert lib.us_sock_close(s) == 0
    assert frames_out(pair, pair.a) == f1                       # consume, write, close: queued only
    ev = ffi.new("struct us_event[4]")
    lib.us_wait(st, ev, 4, 0)                                   # the batch flush
    assert frames_out(pair, pair.a) == f1 + 1                   # response + FIN, one segment
    got = b""
    while (d := c.recv(100)):
        got += d
    assert got.endswith(b"ok")
    c.close()
    end = time.monotonic() + 5
    while time.monotonic() < end:
        lib.us_wait(st, ev, 4, 20)
        t = ffi.new("struct us_tcp_stats *")
        lib.us_tcp_stack_stats(st, t)
        if t.time_wait == 1:
            break
    assert t.time_wait == 1
    assert frames_out(pair, pair.a) - f0 == 3
    lib.us_sock_close(lsn)


def test_held_ack_leaves_at_the_next_wait_without_an_answer(pair):
    st = pair.a._st
    lsn = c_listener(st)
    c, s = connect(pair, lsn)
    f0 = frames_out(pair, pair.a)
    c.sendall(b"half a request")
    wait_for(st, s, lib.US_EV_IN)
    assert frames_out(pair, pair.a) == f0                       # held for the answer
    ev = ffi.new("struct us_event[4]")
    lib.us_wait(st, ev, 4, 0)                                   # no answer: the ACK goes anyway
    assert frames_out(pair, pair.a) == f0 + 1
    info = ffi.new("struct us_tcp_info *")
    assert lib.us_tcp_info(s, info) == 0
    lib.us_tcp_consume(s, 14)
    lib.us_sock_close(s)
    lib.us_sock_close(lsn)
    c.close()


def test_window_update_after_a_read_waits_for_the_flush(pair):
    """A read that reopens a closed window queues the update; us_flush sends it."""
    st = pair.a._st
    lsn = c_listener(st)
    assert lib.us_tcp_setsockopt(lsn, lib.US_SO_RCVBUF, 8192) == 0
    c, s = connect(pair, lsn)
    c.setblocking(False)
    sent = 0
    try:
        while True:
            sent += c.send(b"x" * 4096)
    except BlockingIOError:
        pass
    end = time.monotonic() + 5
    while lib.us_tcp_recv_avail(s) < 8192 and time.monotonic() < end:
        wait_for(st, s, lib.US_EV_IN, 1)
    assert lib.us_tcp_recv_avail(s) == 8192                    # the window is shut
    ev = ffi.new("struct us_event[4]")
    lib.us_wait(st, ev, 4, 0)
    f0 = frames_out(pair, pair.a)
    buf = ffi.new("char[8192]")
    assert lib.us_tcp_read(s, buf, 8192) == 8192
    assert frames_out(pair, pair.a) == f0                      # queued
    assert lib.us_flush(st) >= 0
    assert frames_out(pair, pair.a) == f0 + 1                  # the window update
    lib.us_sock_close(s)
    lib.us_sock_close(lsn)
    c.close()


def test_driver_thread_calls_still_leave_at_once():
    """With a driver thread (Python's blocking sockets) close and shutdown send at once: the
    driver may sleep in epoll for long."""
    with Pair(tcp=[PORT]) as p:
        lsn = p.a.socket(socket.AF_INET, socket.SOCK_STREAM)
        lsn.bind(("0.0.0.0", PORT))
        lsn.listen()
        lsn.settimeout(5)
        c = p.b.socket(socket.AF_INET, socket.SOCK_STREAM)
        c.settimeout(5)
        c.connect((A4, PORT))
        s, _ = lsn.accept()
        time.sleep(0.05)                                        # both drivers idle in epoll
        f0 = frames_out(p, p.a)
        s.shutdown(socket.SHUT_WR)
        assert frames_out(p, p.a) == f0 + 1                     # the FIN, during the call
        assert c.recv(10) == b""
        c.sendall(b"late")
        assert s.recv(10) == b"late"
        f1 = frames_out(p, p.b)
        c.close()
        assert frames_out(p, p.b) == f1 + 1
        s.close()


def test_busy_polling_stack_serves_and_connects():
    """A stack that spins in us_wait (XDPSTACK_BUSY_POLL) answers, and still reads its control
    channel (the ephemeral port of a connect comes that way) although it never sleeps."""
    with Pair(tcp=[PORT], driver=False, busy_poll=(True, False)) as p:
        assert lib.us_driver_start(p.b._st) == 0
        st = p.a._st
        lsn = c_listener(st)
        c, s = connect(p, lsn)
        c.sendall(b"ping")
        wait_for(st, s, lib.US_EV_IN)
        assert peek_all(s) == b"ping"
        lib.us_tcp_consume(s, 4)
        assert lib.us_tcp_write(s, b"pong", 4, lib.US_MSG_MORE) == 4
        ev = ffi.new("struct us_event[4]")
        lib.us_wait(st, ev, 4, 0)
        assert c.recv(10) == b"pong"
        # an active open from the spinning stack: its port is claimed over the control channel
        blsn = p.b.socket(socket.AF_INET, socket.SOCK_STREAM)
        blsn.bind(("0.0.0.0", PORT))
        blsn.listen()
        blsn.settimeout(5)
        err = ffi.new("int *")
        out = lib.us_tcp_socket(st, lib.US_AF4, err)
        ep = ffi.new("struct us_endpoint *")
        ep.addr.family = lib.US_AF4
        ep.addr.a[0:4] = bytes([198, 18, 0, 2])
        ep.port = PORT
        assert lib.us_tcp_connect(out, ep) == -errno.EINPROGRESS
        assert lib.us_sock_set_events(out, lib.US_EV_OUT) == 0
        assert wait_for(st, out, lib.US_EV_OUT | lib.US_EV_ERR) & lib.US_EV_OUT
        assert lib.us_sock_error(out) == 0
        b, _ = blsn.accept()
        b.close()
        for h in (out, s, lsn):
            lib.us_sock_close(h)
        c.close()


def test_wake_before_the_sleep_still_ends_the_wait(pair):
    """us_wake from a signal handler may land between the loop's check and the sleep (the eventfd
    is drained by a sleep that then goes on): us_wait must return at once, not at its timeout.
    An app's SIGTERM handler relies on it: the launcher kills after half a second."""
    st = pair.a._st
    ev = ffi.new("struct us_event[4]")
    for _ in range(3):
        lib.us_wake(st)
        t0 = time.monotonic()
        assert lib.us_wait(st, ev, 4, 3000) == 0
        assert time.monotonic() - t0 < 0.5
    t0 = time.monotonic()                                     # one wake ends one wait only
    assert lib.us_wait(st, ev, 4, 200) == 0
    assert time.monotonic() - t0 >= 0.15
