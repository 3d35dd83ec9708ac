"""The receive window's right edge with window scaling (RFC 7323 2.3 and Appendix F).

A scaled window field can only say multiples of 2^shift. Rounding the advertised window up (to
never shrink the right edge) creeps the edge past the receive ring's free space by up to
2^shift - 1 bytes an ACK, and data the peer then sends inside the advertised window finds no room.
The window is rounded down instead: the edge never passes the ring's space, shrinking by less than
2^shift at most, as Appendix F allows. And a zero-length segment at exactly the right edge is
acceptable, as Linux takes it: its ACK field is processed.
"""
from __future__ import annotations

from tests.fixtures.tcp_harness import M32, Stack, passive_open


def data(n: int, start: int = 0) -> bytes:
    return bytes((start + i) % 251 for i in range(n))


def test_advertised_edge_never_passes_the_free_space_and_nothing_inside_it_is_dropped():
    rcvbuf = 1 << 20
    stk = Stack(rcvbuf=rcvbuf, quickack=0)
    c = passive_open(stk, ts=False)
    shift = c.info.rcv_wscale
    assert shift >= 4                                         # the rounding is many bytes wide
    start = c.snd
    edge = (c.info.rcv_nxt + c.info.rcv_wnd) & M32            # what the handshake offered
    sent = 0
    for _ in range(5000):                                     # bounded: the window closes first
        room = (edge - c.snd) & M32
        if room == 0 or room >= 1 << 31:
            out = c.advance(50_000)                           # delayed ACK: the last word on the window
        else:
            out = c.send("PA", data(min(1000, room), sent))    # 1000: not a multiple of 2^shift
            sent += min(1000, room)
        for s in out:
            buffered = (s.ack - start) & M32                   # the app never reads
            advertised = s.wnd << shift
            assert advertised <= rcvbuf - buffered, (advertised, rcvbuf - buffered)
            edge = (s.ack + advertised) & M32
        if c.info.rcv_wnd == 0 and (edge - c.snd) & M32 == 0:
            break
    info = c.info
    assert info.rcv_nxt == (start + sent) & M32               # everything sent inside the window taken
    assert info.rcvbuf_used == sent and rcvbuf - sent < 1460     # closed: what is left is < an MSS (SWS)
    assert c.read() == data(sent) and c.read() == -11
    stk.free()


def test_pure_ack_at_the_right_edge_is_processed():
    stk = Stack(rcvbuf=1 << 20, quickack=0)
    c = passive_open(stk, ts=False)
    assert c.write(b"x" * 1000) == 1000
    (seg,) = [s for s in c.recv() if s.payload]
    wnd = c.info.rcv_wnd
    assert wnd > 0
    # The peer's next sequence number is exactly RCV.NXT + RCV.WND (it had sent up to our edge
    # and those bytes were lost): its ACK of our data must still count.
    c.send("A", seq=(c.snd + wnd) & M32, ack=seg.end)
    assert c.info.snd_una == seg.end
    stk.free()
