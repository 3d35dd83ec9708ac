"""TCP unit tests: LISTEN and SYN-RECEIVED (passive open), option negotiation, ISNs, backlog.

Segment in, expected segments out (RFC 9293 3.10.7.2 and 3.10.7.4 for SYN-RECEIVED)."""
from __future__ import annotations

import pytest

from tests.fixtures.tcp_harness import (
    LOCAL4,
    LOCAL6,
    LPORT,
    M32,
    REMOTE4,
    REMOTE6,
    RPORT,
    Seg,
    Stack,
    passive_open,
)


@pytest.fixture
def stk():
    s = Stack()
    yield s
    s.free()


# ---------------------------------------------------------------- LISTEN


def test_listen_syn_gets_syn_ack_with_options(stk):
    stk.listen()
    out = stk.send(Seg(seq=1000, flags="S", mss=1400, ws=7, sack_perm=True, ts=(77, 0)))
    assert len(out) == 1
    sa = out[0]
    assert sa.flags == "SA" and sa.ack == 1001
    assert (sa.sport, sa.dport) == (LPORT, RPORT)
    assert (sa.src, sa.dst) == (LOCAL4, REMOTE4)
    assert sa.mss == 1460                         # ours: MTU 1500 - 40
    assert sa.ws is not None and sa.sack_perm and sa.ts[1] == 77
    assert sa.wnd == 65535                        # a SYN's window is never scaled


def test_listen_syn_without_options_gets_none(stk):
    stk.listen()
    sa = stk.send(Seg(seq=1, flags="S"))[0]
    assert sa.flags == "SA" and sa.mss == 1460
    assert sa.ws is None and not sa.sack_perm and sa.ts is None


def test_listen_ignores_rst(stk):
    stk.listen()
    assert stk.send(Seg(seq=5, flags="R")) == []


def test_listen_ack_gets_rst(stk):
    stk.listen()
    out = stk.send(Seg(seq=5, ack=12345, flags="A"))
    assert len(out) == 1 and out[0].flags == "R" and out[0].seq == 12345


def test_listen_syn_ack_gets_rst(stk):
    stk.listen()
    out = stk.send(Seg(seq=5, ack=777, flags="SA"))
    assert out[0].flags == "R" and out[0].seq == 777


def test_listen_plain_segment_dropped(stk):
    stk.listen()
    assert stk.send(Seg(seq=5, flags="", payload=b"x")) == []


def test_no_listener_rst(stk):
    out = stk.send(Seg(seq=100, flags="S"))
    assert len(out) == 1
    r = out[0]
    assert r.flags == "RA" and r.seq == 0 and r.ack == 101          # RFC 9293 3.10.7.1
    out = stk.send(Seg(seq=100, flags="PA", ack=55, payload=b"abc"))
    assert out[0].flags == "R" and out[0].seq == 55
    out = stk.send(Seg(seq=100, flags="F", payload=b"abc"))
    assert out[0].flags == "RA" and out[0].ack == 104
    assert stk.send(Seg(seq=100, flags="R")) == []
    assert stk.stats().no_socket == 4


def test_listener_wildcard_and_exact(stk):
    wild = stk.listen(port=80, addr="0.0.0.0")
    exact = stk.listen(port=81, addr=LOCAL4)
    stk.send(Seg(seq=1, flags="S", dport=80))
    stk.send(Seg(seq=1, flags="S", dport=81))
    stk.send(Seg(seq=1, ack=0, flags="A", dport=80))       # no matter: handshakes below
    assert stk.stats().passive_opens == 2
    assert stk.lib.tcp_listen(stk.socket(), stk.ep("0.0.0.0", 80), 0) == -98    # EADDRINUSE
    del wild, exact


def test_listener_ipv6(stk):
    c = passive_open(stk, v6=True)
    assert c.state == "ESTABLISHED"
    assert c.synack.mss == 1440                   # MTU 1500 - 60
    assert c.synack.src == LOCAL6 and c.synack.dst == REMOTE6
    assert c.send("PA", b"six") and c.read() == b"six"


def test_dual_stack_wildcard(stk):
    stk.listen(addr="0.0.0.0", family=0)
    assert stk.send(Seg(seq=1, flags="S"))[0].flags == "SA"
    assert stk.send(Seg(seq=1, flags="S", sport=2), src=REMOTE6, dst=LOCAL6)[0].flags == "SA"


# ---------------------------------------------------------------- SYN-RECEIVED


def test_handshake_completes_and_accept(stk):
    c = passive_open(stk)
    assert c.state == "ESTABLISHED"
    i = c.info
    assert i.options == 7                          # SACK | TS | WSCALE
    assert i.snd_wscale == 7 and i.snd_mss == 1448   # 1460 - 12 bytes of timestamps
    assert i.cwnd == 10 * 1448                     # RFC 6928 initial window
    assert stk.accept(c.lst) is None


def test_accept_empty_is_eagain(stk):
    lst = stk.listen()
    err = stk.ffi.new("int *")
    assert stk.lib.tcp_accept(lst, err) == stk.ffi.NULL and err[0] == -11


def test_listener_event_on_new_connection(stk):
    lst = stk.listen()
    stk.send(Seg(seq=1000, flags="S"))
    assert stk.events() == []
    sa = stk.output()
    iss = stk.send(Seg(seq=1000, flags="S"))       # retransmitted SYN: SYN-ACK again
    assert iss[0].flags == "SA"
    del sa
    stk.send(Seg(seq=1001, ack=iss[0].seq + 1, flags="A"))
    ev = stk.events()
    assert ev and ev[-1][0] == lst and ev[-1][1] & stk.lib.TCP_EV_ACCEPT
    assert stk.lib.tcp_events(lst) & stk.lib.TCP_EV_ACCEPT


def test_syn_received_retransmits_syn_ack(stk):
    stk.listen()
    sa = stk.send(Seg(seq=1000, flags="S"))[0]
    assert stk.advance(999_999) == []
    out = stk.advance(1)                           # initial RTO 1 s (RFC 6298 2.1)
    assert len(out) == 1 and out[0].flags == "SA" and out[0].seq == sa.seq
    assert stk.advance(1_999_999) == []
    assert stk.advance(1)[0].flags == "SA"         # backed off to 2 s


def test_syn_received_gives_up(stk):
    stk.listen()
    stk.send(Seg(seq=1000, flags="S"))
    n = 0
    for _ in range(10):
        n += len(stk.run_until(stk.now + 64_000_000))
    assert n == 5                                  # synack_retries
    assert stk.stats().conns == 0


def test_syn_received_bad_ack_gets_rst(stk):
    stk.listen()
    sa = stk.send(Seg(seq=1000, flags="S"))[0]
    out = stk.send(Seg(seq=1001, ack=sa.seq + 5, flags="A"))
    assert out[0].flags == "R" and out[0].seq == sa.seq + 5
    assert stk.stats().conns == 1                  # still half-open


def test_syn_received_rst_back_to_listen(stk):
    lst = stk.listen()
    sa = stk.send(Seg(seq=1000, flags="S"))[0]
    assert stk.send(Seg(seq=1001, flags="R")) == []
    assert stk.stats().conns == 0
    assert stk.accept(lst) is None
    del sa


def test_syn_received_data_with_handshake_ack(stk):
    lst = stk.listen()
    sa = stk.send(Seg(seq=1000, flags="S"))[0]
    stk.send(Seg(seq=1001, ack=sa.seq + 1, flags="PA", payload=b"GET /"))
    s = stk.accept(lst)
    assert stk.read(s) == b"GET /"


def test_syn_data_not_acknowledged(stk):
    stk.listen()
    sa = stk.send(Seg(seq=1000, flags="S", payload=b"early"))[0]
    assert sa.ack == 1001                           # no TFO: the data is sent again later


def test_syn_in_syn_received_other_seq_challenge_ack(stk):
    stk.listen()
    sa = stk.send(Seg(seq=1000, flags="S"))[0]
    out = stk.send(Seg(seq=5000, flags="S"))
    assert len(out) == 1 and out[0].flags == "A" and out[0].ack == 1001 and out[0].seq == sa.seq + 1


def test_peer_mss_respected(stk):
    c = passive_open(stk, mss=536, ts=False)
    assert c.info.snd_mss == 536
    c.write(b"x" * 3000)
    out = c.recv()
    assert [len(s.payload) for s in out] == [536] * 5 + [320]


def test_mss_clamp_option(stk):
    lst = stk.socket()
    assert stk.setopt(lst, "MAXSEG", 1000) == 0
    assert stk.lib.tcp_listen(lst, stk.ep(LOCAL4, LPORT), 0) == 0
    sa = stk.send(Seg(seq=1, flags="S", mss=1460))[0]
    assert sa.mss == 1000


def test_window_scale_negotiation(stk):
    c = passive_open(stk, ws=3, ts=False)
    assert c.info.snd_wscale == 3
    assert c.info.rcv_wscale == 6                   # 2 MiB buffer: 2^21 >> 6 < 65536
    c.send("A", wnd=100)                            # peer's window 100 << 3
    assert c.info.snd_wnd == 800


def test_no_window_scale_when_peer_lacks_it(stk):
    c = passive_open(stk, ws=None)
    i = c.info
    assert i.snd_wscale == 0 and i.rcv_wscale == 0 and not i.options & 4
    out = c.send("PA", b"x")
    assert out[0].wnd == 65535                      # unscaled and capped


def test_window_scale_capped_at_14(stk):
    c = passive_open(stk, ws=20)
    assert c.info.snd_wscale == 14                  # RFC 7323 2.3


def test_options_disabled_by_config():
    stk = Stack(sack=0, timestamps=0, wscale=0)
    stk.listen()
    sa = stk.send(Seg(seq=1, flags="S", mss=1460, ws=7, sack_perm=True, ts=(1, 0)))[0]
    assert sa.ws is None and not sa.sack_perm and sa.ts is None
    stk.free()


# ---------------------------------------------------------------- backlog


def test_backlog_full_drops_syn(stk):
    lst = stk.listen(backlog=2)
    for port in (1, 2):
        assert stk.send(Seg(seq=1, flags="S", sport=port))[0].flags == "SA"
    assert stk.send(Seg(seq=1, flags="S", sport=3)) == []       # dropped, not reset
    assert stk.stats().listen_drops == 1
    del lst


def test_backlog_full_accept_queue_drops_handshake_ack(stk):
    lst = stk.listen(backlog=1)
    sa = stk.send(Seg(seq=1, flags="S", sport=1))[0]
    stk.send(Seg(seq=2, ack=sa.seq + 1, flags="A", sport=1))     # accept queue: 1
    assert stk.send(Seg(seq=1, flags="S", sport=2)) == []       # SYN dropped
    assert stk.accept(lst) is not None
    sa2 = stk.send(Seg(seq=1, flags="S", sport=2))[0]
    assert sa2.flags == "SA"
    sa3 = None
    # Fill the accept queue again, then complete another handshake: its ACK is dropped.
    stk.send(Seg(seq=2, ack=sa2.seq + 1, flags="A", sport=2))
    lst2 = stk.listen(port=90, backlog=1)
    a = stk.send(Seg(seq=1, flags="S", sport=3, dport=90))[0]
    stk.send(Seg(seq=2, ack=a.seq + 1, flags="A", sport=3, dport=90))
    b = stk.send(Seg(seq=1, flags="S", sport=4, dport=90))
    assert b == []                                               # backlog 1: accept queue full
    del sa3, lst2


def test_close_listener_resets_pending(stk):
    lst = stk.listen()
    sa = stk.send(Seg(seq=1, flags="S", sport=1))[0]
    stk.send(Seg(seq=2, ack=sa.seq + 1, flags="A", sport=1))
    stk.send(Seg(seq=1, flags="S", sport=2))
    stk.output()
    stk.lib.tcp_close(lst)
    out = stk.output()
    assert sorted(s.dport for s in out) == [1, 2] and all("R" in s.flags for s in out)
    assert stk.stats().conns == 0 and stk.stats().listeners == 0


# ---------------------------------------------------------------- ISN (RFC 6528)


def test_isn_differs_per_tuple_and_advances_with_time():
    stk = Stack()
    stk.listen()
    a = stk.send(Seg(seq=1, flags="S", sport=1000))[0].seq
    b = stk.send(Seg(seq=1, flags="S", sport=1001))[0].seq
    assert a != b
    stk.free()
    # Same tuple, same secret, 4 ms later: the ISN moved by the 4-us clock (1000 ticks).
    s1, s2 = Stack(now=1_000_000), Stack(now=1_004_000)
    s1.listen()
    s2.listen()
    x = s1.send(Seg(seq=1, flags="S"))[0].seq
    y = s2.send(Seg(seq=1, flags="S"))[0].seq
    assert (y - x) & M32 == 1000
    s3 = Stack(now=1_000_000, secret=b"another secret!!")
    s3.listen()
    assert s3.send(Seg(seq=1, flags="S"))[0].seq != x
    for s in (s1, s2, s3):
        s.free()


def test_isns_look_random():
    stk = Stack()
    stk.listen(backlog=1000)
    isns = [stk.send(Seg(seq=1, flags="S", sport=p))[0].seq for p in range(1000, 1200)]
    assert len(set(isns)) == 200
    top = {i >> 28 for i in isns}
    assert len(top) >= 12                           # spread over the space
    stk.free()


def test_timestamp_offset_per_connection(stk):
    stk.listen()
    a = stk.send(Seg(seq=1, flags="S", sport=1, ts=(1, 0)))[0].ts[0]
    b = stk.send(Seg(seq=1, flags="S", sport=2, ts=(1, 0)))[0].ts[0]
    assert abs(a - b) > 1000                        # RFC 7323 5.4: randomised offsets
