"""TCP unit tests: CLOSED sockets and SYN-SENT (active open, RFC 9293 3.10.7.3), simultaneous open,
ephemeral ports."""
from __future__ import annotations

import pytest

from tests.fixtures.tcp_harness import LOCAL4, REMOTE4, RPORT, Seg, Stack, active_open

EV = {"r": 0x1, "w": 0x4, "e": 0x8, "h": 0x10, "rdhup": 0x2000}


@pytest.fixture
def stk():
    s = Stack()
    yield s
    s.free()


def connect(stk):
    stk.set_ephemeral(LOCAL4, 50000)
    s = stk.socket()
    assert stk.connect(s) == 0
    out = stk.recv()
    assert len(out) == 1
    return s, out[0]


# ---------------------------------------------------------------- CLOSED


def test_unconnected_socket(stk):
    s = stk.socket()
    assert stk.state(s) == "CLOSED"
    assert stk.write(s, b"x") == -107            # ENOTCONN
    assert stk.read(s) == -107
    assert stk.lib.tcp_shutdown(s, 1) == -107
    stk.lib.tcp_close(s)


def test_connect_sends_syn_with_options(stk):
    s, syn = connect(stk)
    assert syn.flags == "S" and syn.ack == 0
    assert (syn.sport, syn.dport) == (50000, RPORT) and (syn.src, syn.dst) == (LOCAL4, REMOTE4)
    assert syn.mss == 1460 and syn.ws == 6 and syn.sack_perm and syn.ts[1] == 0
    assert syn.wnd == 65535
    assert stk.state(s) == "SYN-SENT"
    assert stk.lib.tcp_events(s) == 0
    assert stk.write(s, b"early") == -11         # EAGAIN until connected


def test_connect_twice(stk):
    s, _ = connect(stk)
    assert stk.connect(s) == -114                # EALREADY


def test_connect_ephemeral_failure(stk):
    stk.set_ephemeral(LOCAL4, 50000, err=-99)
    s = stk.socket()
    assert stk.connect(s) == -99
    stk.lib.tcp_close(s)


def test_connect_explicit_local(stk):
    s = stk.socket()
    assert stk.connect(s, local=(LOCAL4, 6000)) == 0
    assert stk.recv()[0].sport == 6000
    t = stk.socket()
    assert stk.connect(t, local=(LOCAL4, 6000)) == -98          # 4-tuple in use
    assert stk.connect(t, local=("0.0.0.0", 6001)) == -22       # address needed
    for x in (s, t):
        stk.lib.tcp_close(x)
    assert stk.lib.th_released(stk.h) == 0                       # not ephemeral: not released


def test_ephemeral_port_released_after_close(stk):
    c = active_open(stk)
    stk.lib.tcp_abort(c.sock)
    assert stk.lib.th_released(stk.h) == 1


# ---------------------------------------------------------------- SYN-SENT


def test_syn_ack_establishes(stk):
    c = active_open(stk)
    assert c.state == "ESTABLISHED"
    assert stk.lib.tcp_events(c.sock) & EV["w"]
    ev = stk.events()
    assert ev and ev[-1][0] == c.sock and ev[-1][1] & EV["w"]
    i = c.info
    assert i.options == 7 and i.snd_wscale == 7 and i.rcv_wscale == 6
    assert i.srtt_us > 0 or i.srtt_us == 0            # measured from the SYN (0 us here)


def test_syn_ack_without_ws_disables_scaling(stk):
    c = active_open(stk, ws=None)
    assert c.info.rcv_wscale == 0 and c.info.snd_wscale == 0
    out = c.send("PA", b"x")
    assert out[0].wnd == 65535


def test_syn_sent_bad_ack_gets_rst(stk):
    s, syn = connect(stk)
    out = stk.send(Seg(seq=7, ack=syn.seq + 100, flags="SA", sport=RPORT, dport=50000))
    assert out[0].flags == "R" and out[0].seq == syn.seq + 100
    assert stk.state(s) == "SYN-SENT"
    out = stk.send(Seg(seq=7, ack=syn.seq, flags="A", sport=RPORT, dport=50000))
    assert out[0].flags == "R"


def test_syn_sent_rst_with_good_ack_refused(stk):
    s, syn = connect(stk)
    assert stk.send(Seg(seq=0, ack=syn.seq + 1, flags="RA", sport=RPORT, dport=50000)) == []
    assert stk.state(s) == "CLOSED"
    assert stk.lib.tcp_events(s) & EV["e"]
    assert stk.write(s, b"x") == -111            # ECONNREFUSED, then
    assert stk.write(s, b"x") == -32             # EPIPE


def test_syn_sent_rst_without_ack_ignored(stk):
    s, syn = connect(stk)
    assert stk.send(Seg(seq=0, flags="R", sport=RPORT, dport=50000)) == []
    assert stk.state(s) == "SYN-SENT"
    del syn


def test_syn_sent_rst_with_bad_ack_ignored(stk):
    s, syn = connect(stk)
    assert stk.send(Seg(seq=0, ack=syn.seq + 9, flags="RA", sport=RPORT, dport=50000)) == []
    assert stk.state(s) == "SYN-SENT"


def test_syn_sent_plain_ack_ignored_if_acceptable(stk):
    s, syn = connect(stk)
    assert stk.send(Seg(seq=0, ack=syn.seq + 1, flags="A", sport=RPORT, dport=50000)) == []
    assert stk.state(s) == "SYN-SENT"


def test_syn_retransmission_and_timeout(stk):
    s, syn = connect(stk)
    times = []
    t0 = stk.now
    while stk.state(s) != "CLOSED" and stk.now - t0 < 300_000_000:
        stk.now = stk.next_deadline()
        for seg in stk.advance(0):
            assert seg.flags == "S" and seg.seq == syn.seq
            times.append(stk.now - t0)
    # RFC 6298: 1 s initial RTO, doubled each time; gives up after syn_retries (6).
    assert times == [1_000_000, 3_000_000, 7_000_000, 15_000_000, 31_000_000, 63_000_000]
    assert stk.now - t0 == 127_000_000
    assert stk.read(s) == -110                     # ETIMEDOUT


def test_syn_ack_with_data_and_fin(stk):
    s, syn = connect(stk)
    out = stk.send(Seg(seq=7, ack=syn.seq + 1, flags="SAF", payload=b"hi", sport=RPORT, dport=50000))
    assert stk.state(s) == "CLOSE-WAIT"
    assert out[-1].ack == 7 + 1 + 2 + 1
    assert stk.read(s) == b"hi" and stk.read(s) == b""


def test_simultaneous_open(stk):
    """RFC 9293 figure 8: SYN crosses SYN; both answer SYN-ACK; both reach ESTABLISHED."""
    s, syn = connect(stk)
    out = stk.send(Seg(seq=300, flags="S", sport=RPORT, dport=50000, mss=1460))
    assert stk.state(s) == "SYN-RECEIVED"
    assert len(out) == 1 and out[0].flags == "SA" and out[0].seq == syn.seq and out[0].ack == 301
    # The peer's SYN-ACK crosses ours: a challenge ACK (RFC 5961 4), then its ACK completes.
    out = stk.send(Seg(seq=300, ack=syn.seq + 1, flags="SA", sport=RPORT, dport=50000))
    assert [x.flags for x in out] == ["A"]
    assert stk.send(Seg(seq=301, ack=syn.seq + 1, flags="A", sport=RPORT, dport=50000)) == []
    assert stk.state(s) == "ESTABLISHED"
    assert stk.lib.tcp_events(s) & EV["w"]


def test_rfc5681_initial_window_after_syn_loss(stk):
    s, syn = connect(stk)
    stk.run_until(stk.now + 1_000_000)             # SYN retransmitted once
    stk.output()
    stk.send(Seg(seq=7, ack=syn.seq + 1, flags="SA", sport=RPORT, dport=50000, mss=1460))
    assert stk.info(s).cwnd == 1460                 # one segment (RFC 5681 3.1)
