"""TCP unit tests: closing. FIN-WAIT-1, FIN-WAIT-2, CLOSE-WAIT, CLOSING, LAST-ACK, TIME-WAIT and
CLOSED; every close variant (FIN either side, half-close, RST, abort, close with unread data),
simultaneous close, TIME-WAIT expiry and reuse (RFC 6191)."""
from __future__ import annotations

import pytest

from tests.fixtures.tcp_harness import Seg, Stack, active_open, passive_open

EV_R, EV_W, EV_E, EV_HUP, EV_RDHUP = 0x1, 0x4, 0x8, 0x10, 0x2000
TW = 1_000_000


@pytest.fixture
def stk():
    s = Stack(quickack=0, time_wait_us=TW)
    yield s
    s.free()


def close(c):
    c.stk.lib.tcp_close(c.sock)


def fin_of(out):
    fins = [s for s in out if "F" in s.flags]
    assert len(fins) == 1, out
    return fins[0]


# ---------------------------------------------------------------- active close


def test_active_close_full_sequence(stk):
    c = active_open(stk)
    close(c)
    fin = fin_of(c.recv())
    assert fin.seq == c.rcv and fin.flags == "FA"
    assert stk.stats().conns == 1
    c.rcv += 1
    assert c.send("A") == []                       # FIN-WAIT-2
    out = c.send("FA")
    assert len(out) == 1 and out[0].flags == "A" and out[0].ack == c.snd   # TIME-WAIT
    st = stk.stats()
    assert st.time_wait == 1 and st.conns == 1
    assert c.advance(TW - 1) == []
    c.advance(1)
    st = stk.stats()
    assert st.time_wait == 0 and st.conns == 0
    assert stk.lib.th_released(stk.h) == 1          # the ephemeral port goes back after 2MSL


def test_states_of_active_close(stk):
    c = passive_open(stk)
    stk.lib.tcp_shutdown(c.sock, 1)                # half-close keeps the handle
    assert c.state == "FIN-WAIT-1"
    fin = fin_of(c.recv())
    c.rcv = fin.end
    c.send("A")
    assert c.state == "FIN-WAIT-2"
    c.send("PA", b"still talking")                 # half-closed: the peer may still send
    assert c.read() == b"still talking"
    c.send("FA")
    assert c.state == "TIME-WAIT"
    assert c.read() == b""
    ev = stk.lib.tcp_events(c.sock)
    assert ev & EV_HUP and ev & EV_RDHUP
    c.advance(TW)
    assert c.state == "CLOSED"                     # still ours until closed
    close(c)
    assert stk.stats().conns == 0


def test_fin_follows_queued_data(stk):
    c = passive_open(stk)
    c.write(b"a" * 3000)
    close(c)
    out = c.recv()
    assert [len(s.payload) for s in out] == [1448, 1448, 104]
    assert out[-1].flags == "FPA" and out[-1].end == out[-1].seq + 105


def test_fin_wait_1_fin_and_ack_together(stk):
    c = passive_open(stk)
    close(c)
    fin = fin_of(c.recv())
    out = c.send("FA", ack=fin.end)
    assert out[0].ack == c.snd and stk.stats().time_wait == 1


def test_simultaneous_close(stk):
    """RFC 9293 figure 13: FINs cross; CLOSING, then TIME-WAIT on both sides."""
    c = passive_open(stk)
    close(c)
    fin = fin_of(c.recv())
    out = c.send("FA", ack=fin.seq)                # the peer's FIN, not acking ours
    assert out[0].flags == "A" and out[0].ack == c.snd
    s = stk.socket()                               # (the handle is gone; watch the stats)
    stk.lib.tcp_close(s)
    assert stk.stats().time_wait == 0
    c.send("A", ack=fin.end)                       # CLOSING -> TIME-WAIT
    assert stk.stats().time_wait == 1


def test_simultaneous_close_state(stk):
    c = passive_open(stk)
    stk.lib.tcp_shutdown(c.sock, 1)
    fin = fin_of(c.recv())
    c.send("FA", ack=fin.seq)
    assert c.state == "CLOSING"
    c.send("A", ack=fin.end)
    assert c.state == "TIME-WAIT"


def test_fin_retransmitted(stk):
    c = passive_open(stk)
    close(c)
    fin = fin_of(c.recv())
    out = c.advance(1_000_000)                     # no RTT yet beyond the handshake: RTO
    assert any("F" in s.flags and s.seq == fin.seq for s in out)


def test_orphan_fin_wait_2_times_out_with_rst(stk):
    c = passive_open(stk)
    close(c)
    fin = fin_of(c.recv())
    c.send("A", ack=fin.end)
    assert c.advance(TW - 1) == []
    out = c.advance(1)
    assert [s.flags for s in out] == ["RA"] and stk.stats().conns == 0


def test_data_after_close_gets_rst(stk):
    c = passive_open(stk)
    close(c)
    fin = fin_of(c.recv())
    c.send("A", ack=fin.end)
    out = c.send("PA", b"late", ack=fin.end)
    assert [s.flags for s in out] == ["RA"] and stk.stats().conns == 0


# ---------------------------------------------------------------- passive close


def test_passive_close(stk):
    c = passive_open(stk)
    stk.events()
    out = c.send("FA")
    assert out[0].ack == c.snd                     # FIN acknowledged at once
    assert c.state == "CLOSE-WAIT"
    assert c.read() == b""
    ev = stk.events()
    assert ev and ev[-1][1] & EV_RDHUP and ev[-1][1] & EV_R
    assert c.write(b"bye") == 3                    # CLOSE-WAIT may still send
    close(c)
    out = c.recv()
    assert out[-1].flags == "FPA" and out[-1].payload == b"bye"
    assert stk.stats().conns == 1                  # LAST-ACK
    c.send("A", ack=out[-1].end)
    assert stk.stats().conns == 0 and stk.stats().time_wait == 0


def test_last_ack_state_and_fin_retransmission(stk):
    c = passive_open(stk)
    c.send("FA")
    stk.lib.tcp_shutdown(c.sock, 1)
    assert c.state == "LAST-ACK"
    fin = fin_of(c.recv())
    out = c.advance(1_000_000)
    assert fin_of(out).seq == fin.seq
    c.send("A", ack=fin.end)
    assert c.state == "CLOSED"


def test_fin_out_of_order_processed_when_hole_fills(stk):
    c = passive_open(stk)
    base = c.snd
    c.send("FA", b"world", seq=base + 5)
    assert c.state == "ESTABLISHED"
    out = c.send("A", b"hello", seq=base)
    assert c.state == "CLOSE-WAIT" and out[-1].ack == base + 11
    assert c.read() == b"helloworld" and c.read() == b""


# ---------------------------------------------------------------- RST and abort


def test_close_with_unread_data_sends_rst(stk):
    c = passive_open(stk)
    c.send("PA", b"unread")
    stk.output()
    close(c)
    out = stk.output()
    assert [s.flags for s in out] == ["RA"] and out[0].seq == c.rcv
    assert stk.stats().conns == 0


def test_abort_sends_rst(stk):
    c = passive_open(stk)
    c.write(b"x" * 100)
    out = c.recv()
    stk.lib.tcp_abort(c.sock)
    rst = stk.output()
    assert [s.flags for s in rst] == ["RA"] and rst[0].seq == out[-1].end
    assert stk.stats().conns == 0


def test_abort_in_syn_sent_is_silent(stk):
    stk.set_ephemeral()
    s = stk.socket()
    stk.connect(s)
    stk.recv()
    stk.lib.tcp_abort(s)
    assert stk.output() == [] and stk.stats().conns == 0


@pytest.mark.parametrize("state", ["FIN-WAIT-1", "FIN-WAIT-2", "CLOSE-WAIT", "CLOSING", "LAST-ACK",
                                   "TIME-WAIT"])
def test_rst_in_every_closing_state(stk, state):
    c = passive_open(stk)
    if state in ("FIN-WAIT-1", "FIN-WAIT-2", "CLOSING", "TIME-WAIT"):
        stk.lib.tcp_shutdown(c.sock, 1)
        fin = fin_of(c.recv())
        if state == "FIN-WAIT-2":
            c.send("A", ack=fin.end)
        elif state == "CLOSING":
            c.send("FA", ack=fin.seq)
        elif state == "TIME-WAIT":
            c.send("FA", ack=fin.end)
    else:
        c.send("FA")
        if state == "LAST-ACK":
            stk.lib.tcp_shutdown(c.sock, 1)
            c.recv()
    assert c.state == state
    out = c.send("R", seq=c.snd + 1)               # in window, not exact: challenge ACK
    assert [s.flags for s in out] == ["A"] and c.state == state
    assert c.send("R") == []
    assert c.state == "CLOSED"
    err = c.read()
    assert err == (-104 if state in ("FIN-WAIT-1", "FIN-WAIT-2", "CLOSE-WAIT") else 0) or err == b""


# ---------------------------------------------------------------- TIME-WAIT


def test_time_wait_reacks_retransmitted_fin_and_restarts(stk):
    c = passive_open(stk)
    close(c)
    fin = fin_of(c.recv())
    c.send("FA", ack=fin.end)
    c.advance(TW // 2)
    out = c.send("FA", seq=c.snd - 1, ack=fin.end)  # our ACK was lost: the FIN again
    assert len(out) == 1 and out[0].flags == "A" and out[0].ack == c.snd
    c.advance(TW - 1)
    assert stk.stats().time_wait == 1               # restarted 2MSL
    c.advance(1)
    assert stk.stats().time_wait == 0


def test_time_wait_new_syn_reuses_tuple(stk):
    """RFC 6191: a SYN with a newer timestamp opens a new connection in the TIME-WAIT tuple."""
    c = passive_open(stk)
    close(c)
    fin = fin_of(c.recv())
    c.send("FA", ack=fin.end)
    assert stk.stats().time_wait == 1
    old_iss = c.iss
    out = stk.send(Seg(seq=c.snd + 100_000, flags="S", ts=(c.tsval + 10, 0), mss=1460))
    assert len(out) == 1 and out[0].flags == "SA"
    assert ((out[0].seq - old_iss) & 0xFFFFFFFF) < 1 << 31      # ISS past the old connection
    assert stk.stats().time_wait == 0


def test_time_wait_old_syn_gets_challenge(stk):
    c = passive_open(stk)
    close(c)
    fin = fin_of(c.recv())
    c.send("FA", ack=fin.end)
    out = stk.send(Seg(seq=c.snd - 10, flags="S", ts=(1, 0)))
    assert [s.flags for s in out] == ["A"] and stk.stats().time_wait == 1


def test_max_time_wait_closes_at_once():
    stk = Stack(quickack=0, max_time_wait=1)
    conns = []
    lst = stk.listen()
    for port in (41000, 41001):
        sa = stk.send(Seg(seq=100, flags="S", sport=port, mss=1460))[0]
        stk.send(Seg(seq=101, ack=sa.seq + 1, flags="A", sport=port))
        conns.append((stk.accept(lst), sa, port))
    for s, sa, port in conns:
        stk.lib.tcp_close(s)
        stk.recv()
        stk.send(Seg(seq=101, ack=sa.seq + 2, flags="FA", sport=port))
    st = stk.stats()
    assert st.conns == 2                              # the second goes at the next timer run
    stk.advance(0)
    st = stk.stats()
    assert st.time_wait == 1 and st.conns == 1
    stk.free()


# ---------------------------------------------------------------- events and re-entrancy


def test_reset_events(stk):
    c = passive_open(stk)
    stk.events()
    c.send("R")
    ev = stk.events()
    assert ev[-1][1] & EV_E and ev[-1][1] & EV_HUP


def test_event_hook_may_close(stk):
    c = passive_open(stk)
    stk.lib.th_set_close_on_event(stk.h, 1)
    out = c.send("PA", b"data")                    # readable -> the hook closes: RST
    assert [s.flags for s in out] == ["RA"]             # closed with unread data
    stk.lib.th_set_close_on_event(stk.h, 0)
    assert stk.stats().conns == 0
