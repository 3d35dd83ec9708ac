"""TCP unit tests: ACKs and FINs riding on the application's answer.

tcp_flush_hold_acks is the flush a stack runs just before it hands a batch's events to the
application: an ACK due only because in-order data arrived (a quick ACK) or because an ESTABLISHED
connection got a FIN waits one flush, so that the answer carries it. It stays a delayed ACK in the
sense of RFC 9293 3.8.6.3 / RFC 1122 4.2.3.2: it goes at the next flush whatever the application
does, or when the delayed-ACK timer fires, and every second full segment is still ACKed at once.
"""
from __future__ import annotations

import pytest

from tests.fixtures.tcp_harness import Seg, Stack, passive_open

DELACK = 40_000
MSS = 1448     # 1460 - timestamps


@pytest.fixture
def stk():
    s = Stack()                 # quickack on (16 segments), as in the stacks xdpstack runs
    yield s
    s.free()


def close(c):
    c.stk.lib.tcp_close(c.sock)


def test_quick_ack_rides_on_the_response(stk):
    c = passive_open(stk)
    assert c.deliver("PA", b"GET / HTTP/1.1\r\n\r\n") == []      # held for the answer
    assert c.read() == b"GET / HTTP/1.1\r\n\r\n"
    c.write(b"HTTP/1.1 200 OK\r\n\r\n")
    out = c.recv()
    assert len(out) == 1 and out[0].flags == "PA" and out[0].ack == c.snd
    assert out[0].payload == b"HTTP/1.1 200 OK\r\n\r\n"


def test_plain_flush_sends_the_quick_ack_at_once(stk):
    c = passive_open(stk)
    out = c.send("PA", b"request")                               # tcp_flush: not held
    assert len(out) == 1 and out[0].flags == "A" and out[0].ack == c.snd


def test_held_ack_goes_at_the_next_flush_without_an_answer(stk):
    c = passive_open(stk)
    assert c.deliver("PA", b"partial req") == []
    stk.lib.tcp_flush_hold_acks(stk.ts, stk.now)                 # held once only
    out = stk.output()
    assert len(out) == 1 and out[0].flags == "A" and out[0].ack == c.snd


def test_held_ack_is_a_delayed_ack_meanwhile(stk):
    c = passive_open(stk)
    assert c.deliver("PA", b"partial req") == []
    assert stk.next_deadline() <= stk.now + DELACK               # bounded by the delayed-ACK timer
    # Even if nothing flushes, the timer sends it within delack (RFC 1122 4.2.3.2: < 0.5 s).
    out = c.advance(DELACK)
    assert len(out) == 1 and out[0].flags == "A" and out[0].ack == c.snd
    assert c.advance(10 * DELACK) == []                          # once


def test_answer_clears_the_delayed_ack_timer(stk):
    c = passive_open(stk)
    c.deliver("PA", b"req")
    c.read()
    c.write(b"resp")
    assert len(c.recv()) == 1
    assert c.advance(DELACK) == []                               # nothing left to ACK


def test_second_full_segment_is_acked_at_once(stk):
    c = passive_open(stk)
    assert c.deliver("A", bytes(MSS)) == []                      # one full segment: held
    out = c.deliver("A", bytes(MSS))                             # the second: RFC 5681 4.2
    assert len(out) == 1 and out[0].ack == c.snd


def test_out_of_order_data_is_acked_at_once(stk):
    c = passive_open(stk)
    base = c.snd
    out = c.deliver("PA", b"x" * 100, seq=base + 100)
    assert len(out) == 1 and out[0].ack == base and out[0].sack == ((base + 100, base + 200),)


def test_delayed_ack_after_quickack_unchanged(stk):
    c = passive_open(stk)
    for _ in range(16):
        c.deliver("PA", b"r")
        c.read()
        c.write(b"a")
        assert len(c.recv()) == 1
    assert c.deliver("PA", b"r") == []                           # quickack used up: delayed
    assert stk.next_deadline() <= stk.now + DELACK
    out = c.advance(DELACK)
    assert len(out) == 1 and out[0].flags == "A"


def test_connection_close_in_three_segments(stk):
    """Connection: close on a passive connection: SYN-ACK, response + FIN (+ ACK of the request),
    ACK of the peer's FIN. Nothing else."""
    c = passive_open(stk)                                        # the SYN-ACK (checked there)
    assert c.deliver("PA", b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n") == []
    c.read()
    c.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbody")
    close(c)
    out = c.recv()
    assert len(out) == 1 and out[0].flags == "FPA" and out[0].ack == c.snd
    assert c.state == "FIN-WAIT-1"
    c.rcv = out[0].end
    out = c.deliver("FA")                                        # ACK of our FIN and the peer's FIN
    assert len(out) == 1 and out[0].flags == "A" and out[0].ack == c.snd
    assert stk.stats().time_wait == 1


def test_ack_of_fin_rides_on_our_fin(stk):
    c = passive_open(stk)
    assert c.deliver("FA") == []                                 # held: the app will close
    assert c.state == "CLOSE-WAIT"
    assert c.read() == b""
    close(c)
    out = c.recv()
    assert len(out) == 1 and out[0].flags == "FA" and out[0].ack == c.snd
    assert stk.stats().conns == 1                                # LAST-ACK
    c.send("A", ack=out[0].end)
    assert stk.stats().conns == 0


def test_ack_of_fin_goes_next_flush_if_the_app_keeps_the_socket(stk):
    c = passive_open(stk)
    assert c.deliver("FA") == []
    out = c.recv()
    assert len(out) == 1 and out[0].flags == "A" and out[0].ack == c.snd


def test_fin_in_fin_wait_2_is_acked_at_once(stk):
    """Only an ESTABLISHED connection's FIN waits: after our own FIN nothing more will come."""
    c = passive_open(stk)
    close(c)
    fin = c.recv()[0]
    c.rcv = fin.end
    assert c.deliver("A") == []                                  # FIN-WAIT-2
    out = c.deliver("FA")
    assert len(out) == 1 and out[0].flags == "A" and out[0].ack == c.snd
    assert stk.stats().time_wait == 1


def test_fin_of_an_unaccepted_connection_is_acked_at_once(stk):
    """In the accept queue nobody answers yet: the FIN's ACK is not held."""
    lst = stk.listen()
    out = stk.send(Seg(seq=1000, flags="S", mss=1460))
    assert len(out) == 1 and out[0].flags == "SA"
    iss = out[0].seq
    assert stk.send(Seg(seq=1001, ack=iss + 1, flags="A")) == []
    stk.input(Seg(seq=1001, ack=iss + 1, flags="FA"))
    out = stk.recv_hold()
    assert len(out) == 1 and out[0].flags == "A" and out[0].ack == 1002
    assert stk.accept(lst) is not None
