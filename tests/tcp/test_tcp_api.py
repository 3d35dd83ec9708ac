"""TCP unit tests: the socket calls of tcp.h outside the state machine proper (options,
endpoints, readiness, statistics)."""
from __future__ import annotations

from tests.fixtures.tcp_harness import (
    LOCAL4,
    LOCAL6,
    REMOTE4,
    REMOTE6,
    RPORT,
    Seg,
    Stack,
    active_open,
    passive_open,
)

EV_R, EV_W, EV_E, EV_HUP, EV_RDHUP, EV_ACC = 0x1, 0x4, 0x8, 0x10, 0x2000, 0x10000


def test_buffer_sizes_before_connect_only():
    stk = Stack()
    s = stk.socket()
    assert stk.setopt(s, "RCVBUF", 100_000) == 0 and stk.setopt(s, "SNDBUF", 50_000) == 0
    assert stk.getopt(s, "RCVBUF") == 100_000
    stk.set_ephemeral()
    stk.connect(s)
    syn = stk.recv()[0]
    assert syn.ws == 1 and syn.wnd == 65535       # 100000 >> 1 fits in 16 bits
    assert stk.setopt(s, "RCVBUF", 1000) == -106  # EISCONN
    assert stk.info(s).sndbuf == 50_000
    stk.free()


def test_listener_options_inherited():
    stk = Stack(quickack=0)
    lst = stk.socket()
    for opt, v in (("NODELAY", 1), ("KEEPALIVE", 1), ("KEEPIDLE", 30), ("RCVBUF", 8192)):
        assert stk.setopt(lst, opt, v) == 0
    assert stk.lib.tcp_listen(lst, stk.ep(LOCAL4, 80), 0) == 0
    c = passive_open(stk, lst=lst)
    assert stk.getopt(c.sock, "NODELAY") == 1 and stk.getopt(c.sock, "KEEPIDLE") == 30
    assert c.info.rcvbuf == 8192
    stk.free()


def test_option_errors():
    stk = Stack()
    s = stk.socket()
    assert stk.setopt(s, "KEEPIDLE", 0) == -22
    assert stk.setopt(s, "KEEPCNT", 1000) == -22
    assert stk.lib.tcp_setopt(s, 999, 1) == -92   # ENOPROTOOPT
    stk.lib.tcp_close(s)
    stk.free()


def test_endpoints():
    stk = Stack()
    c = passive_open(stk)
    ep = stk.ffi.new("struct us_endpoint *")
    assert stk.lib.tcp_sock_local(c.sock, ep) == 0 and ep.port == 80 and stk.addr_text(ep.addr) == LOCAL4
    assert stk.lib.tcp_sock_remote(c.sock, ep) == 0 and ep.port == RPORT
    assert stk.addr_text(ep.addr) == REMOTE4
    assert stk.lib.tcp_sock_remote(c.lst, ep) == -107
    stk.free()


def test_readiness_through_a_life():
    stk = Stack(quickack=0)
    lst = stk.listen()
    assert stk.lib.tcp_events(lst) == 0
    stk.send(Seg(seq=1, flags="S", sport=5))
    assert stk.lib.tcp_events(lst) == 0            # half-open: nothing to accept yet
    c = passive_open(stk, lst=lst)
    assert stk.lib.tcp_events(c.sock) == EV_W
    c.send("PA", b"x")
    assert stk.lib.tcp_events(c.sock) == EV_W | EV_R
    c.read()
    c.send("FA")
    assert stk.lib.tcp_events(c.sock) == EV_W | EV_R | EV_RDHUP
    stk.lib.tcp_shutdown(c.sock, 1)
    assert stk.lib.tcp_events(c.sock) & EV_HUP
    stk.free()


def test_connecting_socket_events_and_failure():
    stk = Stack()
    stk.set_ephemeral()
    s = stk.socket()
    stk.connect(s)
    syn = stk.recv()[0]
    assert stk.lib.tcp_events(s) == 0
    stk.send(Seg(seq=0, ack=syn.seq + 1, flags="RA", sport=RPORT, dport=syn.sport))
    assert stk.lib.tcp_events(s) & EV_E and stk.getopt(s, "ERROR") == 111
    assert stk.getopt(s, "ERROR") == 0              # read once
    stk.free()


def test_stack_stats_and_info():
    stk = Stack(quickack=0)
    c = active_open(stk)
    c.write(b"x" * 5000)
    out = c.recv()
    c.ack_all(out)
    i = c.info
    assert i.bytes_sent == 5000 and i.bytes_acked == 5000 and i.segs_out >= 5
    st = stk.stats()
    assert st.active_opens == 1 and st.conns == 1 and st.segs_out >= 6 and st.bytes_out == 5000


def test_ipv6_default_mss_without_option():
    stk = Stack()
    lst = stk.listen(addr=LOCAL6)
    sa = stk.send(Seg(seq=1, flags="S"), src=REMOTE6, dst=LOCAL6)[0]
    stk.send(Seg(seq=2, ack=sa.seq + 1, flags="A"), src=REMOTE6, dst=LOCAL6)
    assert stk.info(stk.accept(lst)).snd_mss == 1220      # RFC 8200 minimum MTU - 60
    stk.free()


def test_family_mismatch_dropped():
    stk = Stack()
    stk.listen()
    assert stk.send(Seg(seq=1, flags="S"), src=REMOTE6, dst=LOCAL4) == []
    assert stk.stats().bad_segs == 1
    stk.free()
