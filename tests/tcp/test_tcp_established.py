"""TCP unit tests: ESTABLISHED. Receiving (delayed ACKs, out of order data and SACK blocks,
windows), sending (Nagle, coalescing, peer window, zero-window probes), keepalive, timestamps and
PAWS, and the RFC 5961 protections."""
from __future__ import annotations

import pytest

from tests.fixtures.tcp_harness import M32, Stack, active_open, passive_open


@pytest.fixture
def stk():
    s = Stack(quickack=0)
    yield s
    s.free()


MSS = 1448     # 1460 - timestamps


def data(n: int, start: int = 0) -> bytes:
    return bytes((start + i) * 7 % 251 for i in range(n))


# ---------------------------------------------------------------- receiving, delayed ACKs


def test_delayed_ack_one_segment(stk):
    c = passive_open(stk)
    assert c.send("PA", data(100)) == []                       # delayed (RFC 9293 3.8.6.3)
    assert c.advance(39_999) == []
    out = c.advance(1)                                          # 40 ms, like Linux
    assert len(out) == 1 and out[0].flags == "A" and out[0].ack == c.snd
    assert c.read() == data(100)


def test_ack_every_second_full_segment(stk):
    c = passive_open(stk)
    assert c.send("A", data(MSS)) == []
    out = c.send("A", data(MSS))
    assert len(out) == 1 and out[0].ack == c.snd                 # RFC 5681 4.2


def test_batch_gets_one_ack(stk):
    """Segments of one poll batch (input without flush) are acknowledged once, at flush."""
    c = passive_open(stk)
    for _ in range(6):
        stk.input(c.seg("A", data(MSS)))
        c.snd += MSS
    out = c.recv()
    assert len(out) == 1 and out[0].ack == c.snd


def test_quickack_at_start():
    stk = Stack()                                               # quickack = 16 (default)
    c = passive_open(stk)
    for _ in range(16):
        assert len(c.send("PA", b"x")) == 1
    assert c.send("PA", b"x") == []
    stk.free()


def test_ack_piggybacks_on_reply(stk):
    c = passive_open(stk)
    stk.input(c.seg("PA", b"request"))
    c.snd += 7
    assert c.read() == b"request"
    c.write(b"response")
    out = c.recv()
    assert len(out) == 1 and out[0].payload == b"response" and out[0].ack == c.snd
    assert out[0].flags == "PA"


def test_out_of_order_sack_and_fill(stk):
    c = passive_open(stk)
    base = c.snd
    out = c.send("A", data(100, 100), seq=base + 100)           # hole [base, base+100)
    assert len(out) == 1 and out[0].ack == base                  # immediate duplicate ACK
    assert out[0].sack == ((base + 100, base + 200),)
    out = c.send("A", data(100, 300), seq=base + 300)
    assert out[0].sack == ((base + 300, base + 400), (base + 100, base + 200))   # newest first
    out = c.send("A", data(100, 100), seq=base + 100)           # a duplicate of a SACKed block
    assert out[0].sack[0] == (base + 100, base + 200)
    out = c.send("A", data(100, 0), seq=base)                    # fills the first hole: ACK now
    assert out[0].ack == base + 200 and out[0].sack == ((base + 300, base + 400),)
    out = c.send("A", data(100, 200), seq=base + 200)
    assert out[0].ack == base + 400 and not out[0].sack
    assert c.read() == data(400)
    assert stk.stats().ooo_segs >= 3


def test_dsack_for_duplicate(stk):
    c = passive_open(stk)
    base = c.snd
    c.send("A", data(MSS))
    c.send("A", data(MSS, MSS))
    out = c.send("A", data(MSS), seq=base)                       # all old: D-SACK (RFC 2883)
    assert out[0].ack == base + 2 * MSS and out[0].sack == ((base, base + MSS),)


def test_overlapping_segments_trimmed(stk):
    c = passive_open(stk)
    base = c.snd
    c.send("PA", data(100), seq=base)
    c.send("PA", data(150), seq=base)                            # 100 old, 50 new
    assert c.read() == data(150)
    c.snd = base + 150


def test_data_beyond_buffer_trimmed():
    stk = Stack(rcvbuf=4096, quickack=0)
    c = passive_open(stk, ts=False)
    assert c.info.rcv_wscale == 0
    out = c.send("PA", data(5000))
    assert out[0].ack == c.snd - 5000 + 4096 and out[0].wnd == 0   # only what fits
    assert len(c.read()) == 4096
    stk.free()


def test_window_shrinks_as_data_waits_and_opens_on_read():
    stk = Stack(rcvbuf=16384, quickack=0)
    c = passive_open(stk, ts=False)
    c.send("PA", data(1460))
    w0 = c.send("PA", data(1460))[0].wnd
    assert w0 == 16384 - 2920
    for _ in range(9):
        c.send("PA", data(1460))
    out = c.advance(40_000)
    assert out[0].wnd == 16384 - 11 * 1460
    c.read(1000)
    assert c.recv() == []                                        # not worth an update yet
    c.read()
    out = c.recv()
    assert len(out) == 1 and out[0].wnd == 16384                  # window update
    stk.free()


def test_zero_window_then_update():
    stk = Stack(rcvbuf=4096, quickack=0)
    c = passive_open(stk, ts=False)
    out = c.send("PA", data(4096))
    assert out[0].wnd == 0
    out = c.send("PA", b"z")                                      # beyond a zero window
    assert out[0].ack == c.snd - 1 and out[0].wnd == 0
    c.snd -= 1
    c.read()
    out = c.recv()
    assert out and out[-1].wnd == 4096
    stk.free()


def test_fin_accepted_at_zero_window():
    stk = Stack(rcvbuf=4096, quickack=0)
    c = passive_open(stk, ts=False)
    c.send("PA", data(4096))
    out = c.send("FA")
    assert out[-1].ack == c.snd and c.state == "CLOSE-WAIT"
    assert len(c.read()) == 4096 and c.read() == b""
    stk.free()


def test_segment_out_of_window_gets_ack(stk):
    c = passive_open(stk)
    out = c.send("PA", b"x", seq=c.snd + (1 << 30))
    assert len(out) == 1 and out[0].flags == "A" and out[0].ack == c.snd
    assert c.read() == -11


def test_rd_shutdown_discards(stk):
    c = passive_open(stk)
    assert stk.lib.tcp_shutdown(c.sock, 0) == 0
    c.send("PA", b"ignored")
    assert c.read() == b""


def test_recv_peek_and_consume(stk):
    c = passive_open(stk)
    c.send("PA", b"hello world")
    p1, l1, p2, l2 = (stk.ffi.new("uint8_t **"), stk.ffi.new("size_t *"),
                      stk.ffi.new("uint8_t **"), stk.ffi.new("size_t *"))
    n = stk.lib.tcp_recv_peek(c.sock, p1, l1, p2, l2)
    assert n == 11 and bytes(stk.ffi.buffer(p1[0], l1[0])) == b"hello world"
    stk.lib.tcp_recv_consume(c.sock, 6)
    assert c.read() == b"world"


def test_readable_event(stk):
    c = passive_open(stk)
    stk.events()
    c.send("PA", b"abc")
    ev = stk.events()
    assert ev and ev[-1][0] == c.sock and ev[-1][1] & 1


# ---------------------------------------------------------------- sending


def test_send_coalesces_until_flush(stk):
    c = passive_open(stk)
    for _ in range(10):
        assert c.write(b"y" * 100) == 100
    out = c.recv()
    assert len(out) == 1 and len(out[0].payload) == 1000


def test_nagle_holds_second_small_segment(stk):
    c = passive_open(stk)
    c.write(b"a")
    assert [s.payload for s in c.recv()] == [b"a"]
    c.write(b"b")
    assert c.recv() == []                                         # a small segment is unacked
    out = c.send("A", ack=c.rcv + 1)
    assert [s.payload for s in out] == [b"b"]


def test_first_small_segment_never_waits():
    """Nagle holds nothing while nothing is outstanding, whatever the ISN (sequence space wraps)."""
    for i in range(16):
        stk = Stack(quickack=0, secret=bytes([i]) * 16)
        c = passive_open(stk)
        c.write(b"a")
        assert [s.payload for s in c.recv()] == [b"a"], hex(c.iss)
        stk.free()


def test_nodelay_sends_at_once(stk):
    c = passive_open(stk)
    assert stk.setopt(c.sock, "NODELAY", 1) == 0
    assert stk.getopt(c.sock, "NODELAY") == 1
    c.write(b"a")
    c.recv()
    c.write(b"b")
    assert [s.payload for s in c.recv()] == [b"b"]


def test_nagle_minshall_full_then_small(stk):
    """A full segment plus a tail goes at once: only an unacked *small* segment holds a new one."""
    c = passive_open(stk)
    c.write(data(MSS + 100))
    assert [len(s.payload) for s in c.recv()] == [MSS, 100]


def test_initial_window_and_peer_window(stk):
    c = passive_open(stk, wnd=20000, ws=0)
    c.write(data(100_000))
    out = c.recv()
    assert sum(len(s.payload) for s in out) <= 20000
    c2 = passive_open(Stack(quickack=0), wnd=65535, ws=7)
    c2.write(data(100_000))
    out = c2.recv()
    assert [len(s.payload) for s in out] == [MSS] * 10           # IW10
    c2.stk.free()


def test_send_buffer_full(stk):
    s = Stack(sndbuf=4096)
    c = passive_open(s)
    assert c.write(data(10000)) == 4096
    assert c.write(b"x") == -11
    assert not s.lib.tcp_events(c.sock) & 4
    out = c.recv()
    c.ack_all(out)
    assert s.lib.tcp_events(c.sock) & 4
    s.free()


def test_ack_frees_buffer_and_signals_writable():
    s = Stack(sndbuf=8192)
    c = passive_open(s)
    c.write(data(8192))
    out = c.recv()
    s.events()
    c.ack_all(out)
    ev = s.events()
    assert ev and ev[-1][1] & 4
    assert c.info.sndbuf_used == 0
    s.free()


def test_zero_window_probe(stk):
    c = passive_open(stk, ws=0)
    c.send("A", wnd=0)
    c.write(b"hello")
    assert c.recv() == []                                         # window closed
    rto = c.info.rto_us
    assert c.advance(rto - 1) == []
    out = c.advance(1)
    assert len(out) == 1 and out[0].payload == b"h" and out[0].seq == c.rcv   # one byte beyond
    assert c.info.zero_window_probes == 1
    out = c.send("A", wnd=0)                                      # still closed
    assert out == []
    out = c.advance(2 * rto)                                      # backed off
    assert len(out) == 1 and out[0].payload == b"h"
    out = c.send("A", wnd=1000)                                   # opens: everything goes
    assert [s.payload for s in out] == [b"hello"]


def test_zero_window_probe_accepted_byte(stk):
    c = passive_open(stk, ws=0)
    c.send("A", wnd=0)
    c.write(b"hello")
    assert c.recv() == []
    out = c.advance(c.info.rto_us)
    assert out[0].payload == b"h"
    out = c.send("A", ack=c.rcv + 1, wnd=100)                     # took the byte, opened
    assert [s.payload for s in out] == [b"ello"]


# ---------------------------------------------------------------- keepalive


def test_keepalive_probes_and_timeout(stk):
    c = passive_open(stk)
    s = c.sock
    for opt, v in (("KEEPIDLE", 10), ("KEEPINTVL", 2), ("KEEPCNT", 3), ("KEEPALIVE", 1)):
        assert stk.setopt(s, opt, v) == 0
    assert c.advance(9_999_999) == []
    out = c.advance(1)
    assert len(out) == 1 and out[0].seq == c.rcv - 1 and out[0].payload == b""   # old seq
    assert c.send("A") == []                                       # answered: idle again
    assert c.advance(9_999_999) == []
    probes = [len(c.advance(1))] + [len(c.advance(2_000_000)) for _ in range(2)]
    assert probes == [1, 1, 1]
    out = c.advance(2_000_000)                                    # keepcnt unanswered
    assert [x.flags for x in out] == ["RA"]
    assert c.read() == -110
    assert c.info.keepalive_probes == 4


def test_keepalive_off_by_default(stk):
    c = passive_open(stk)
    assert c.advance(3 * 3600 * 1_000_000) == []


# ---------------------------------------------------------------- timestamps, PAWS


def test_timestamps_echo_and_recent(stk):
    c = passive_open(stk)
    c.tsval = 10_000
    out = c.send("PA", data(MSS))
    out += c.send("PA", data(MSS))
    assert out[-1].ts[1] == 10_000                # TS.Recent: the earliest unacked segment (RFC 7323 4.3)
    c.tsval = 30_000
    out = c.send("PA", data(10))
    out = c.advance(40_000)
    assert out[0].ts[1] == 30_000
    assert out[0].ts[0] > 0


def test_retransmission_of_the_last_acked_segment_echoes_its_timestamp(stk):
    """Our ACK of a segment was lost and the peer retransmits it after a backoff: the duplicate ACK
    echoes the retransmission's TSval (as Linux), so the peer's RTT sample is one round trip, not
    the backoff. An older duplicate (ending before our last ACK) does not move TS.Recent."""
    c = passive_open(stk)
    base = c.snd
    c.tsval = 10_000
    c.send("PA", data(MSS))
    assert c.send("PA", data(MSS, MSS))[-1].ts[1] == 10_000       # ACK of both (lost on the wire)
    c.tsval = 50_000
    out = c.send("PA", data(MSS, MSS), seq=base + MSS)             # the last segment again
    assert out[-1].ack == base + 2 * MSS and out[-1].ts[1] == 50_000
    c.tsval = 90_000
    out = c.send("PA", data(MSS), seq=base)                        # an older duplicate
    assert out[-1].ack == base + 2 * MSS and out[-1].ts[1] == 50_000


def test_paws_drops_old_timestamp(stk):
    c = passive_open(stk)
    c.tsval = 10_000
    c.send("PA", b"new")
    c.tsval = 9_000                               # older: a wrapped old duplicate
    out = c.send("PA", b"old")
    assert len(out) == 1 and out[0].flags == "A" and out[0].ack == c.snd - 3   # dropped, ACKed
    c.snd -= 3
    assert c.read() == b"new"
    assert stk.stats().paws_drops == 1


def test_segment_without_timestamp_dropped(stk):
    c = passive_open(stk)
    s = c.seg("PA", b"nots")
    s.ts = None
    stk.input(s)
    assert c.read() == -11                        # RFC 7323 3.2


def test_rtt_measured(stk):
    c = passive_open(stk)
    c.write(data(100))
    out = c.recv()
    stk.now += 30_000
    c.ack_all(out)
    # RFC 6298 2: the handshake measured 0 us (counted as 1), this one 30 ms.
    i = c.info
    assert i.srtt_us == (7 * 1 + 30_000) // 8 and i.rttvar_us == (3 * 0 + 29_999) // 4
    assert i.rto_us == 200_000                    # max(min RTO, srtt + 4 rttvar)
    c.write(data(100))
    out = c.recv()
    stk.now += 400_000
    c.ack_all(out)
    srtt = (7 * 3750 + 400_000) // 8
    rttvar = (3 * 7499 + (400_000 - 3750)) // 4
    assert (c.info.srtt_us, c.info.rttvar_us, c.info.rto_us) == (srtt, rttvar, srtt + 4 * rttvar)


# ---------------------------------------------------------------- RFC 5961


def test_rst_exact_resets(stk):
    c = passive_open(stk)
    assert c.send("R") == []
    assert c.state == "CLOSED"
    assert c.read() == -104                       # ECONNRESET
    assert stk.stats().established_resets == 1


def test_rst_in_window_gets_challenge_ack(stk):
    c = passive_open(stk)
    out = c.send("R", seq=c.snd + 10)
    assert len(out) == 1 and out[0].flags == "A" and out[0].ack == c.snd
    assert c.state == "ESTABLISHED"
    assert stk.stats().challenge_acks == 1


def test_rst_out_of_window_ignored(stk):
    c = passive_open(stk)
    assert c.send("R", seq=c.snd - 100) == []
    assert c.send("R", seq=c.snd + (1 << 31)) == []
    assert c.state == "ESTABLISHED"


def test_syn_in_established_gets_challenge_ack(stk):
    c = passive_open(stk)
    for seq in (c.snd, c.snd + 5, c.snd - 5000, 12345):
        out = c.send("S", seq=seq)
        assert len(out) == 1 and out[0].flags == "A" and out[0].ack == c.snd
    assert c.state == "ESTABLISHED"


def test_challenge_ack_rate_limit():
    stk = Stack(challenge_ack_limit=5)
    c = passive_open(stk)
    sent = sum(len(c.send("R", seq=c.snd + 1)) for _ in range(20))
    assert sent == 5 and stk.stats().challenge_acks_limited == 15
    stk.now += 1_000_000
    assert len(c.send("R", seq=c.snd + 1)) == 1    # a new second
    stk.free()


def test_ack_of_unsent_data_dropped(stk):
    c = passive_open(stk)
    out = c.send("PA", b"data", ack=c.rcv + 1000)
    assert len(out) == 1 and out[0].ack == c.snd - 4   # ACKed, data not taken
    c.snd -= 4
    assert c.read() == -11


def test_too_old_ack_gets_challenge(stk):
    c = passive_open(stk, ws=0)
    out = c.send("PA", b"data", ack=(c.rcv - 200_000) & M32)
    assert len(out) == 1 and out[0].flags == "A"
    assert c.read() == -11
    assert stk.stats().challenge_acks == 1


def test_active_open_established_data_roundtrip(stk):
    c = active_open(stk)
    c.write(b"ping")
    out = c.recv()
    assert out[0].payload == b"ping"
    c.rcv = out[0].end
    c.send("PA", b"pong")
    assert c.read() == b"pong"


# ---------------------------------------------------------------- a full TX ring


def test_enobufs_data_retried_at_next_flush(stk):
    c = passive_open(stk)
    c.write(data(3000))
    stk.fail_emits(1)
    assert c.recv() == []                                         # the ring was full
    assert stk.lib.tcp_tx_blocked(stk.ts)
    assert c.info.snd_nxt == c.info.snd_una                       # as if nothing was sent
    out = c.recv()
    assert [len(s.payload) for s in out] == [MSS, MSS, 104]
    assert not stk.lib.tcp_tx_blocked(stk.ts)
    assert stk.stats().emit_nobufs == 1


def test_enobufs_ack_retried(stk):
    c = passive_open(stk)
    assert c.send("A", data(MSS)) == []
    stk.fail_emits(1)
    assert c.send("A", data(MSS)) == []                          # the ACK found no room
    out = c.recv()
    assert len(out) == 1 and out[0].ack == c.snd


def test_enobufs_persistent_then_recovers(stk):
    a = passive_open(stk)
    a.write(b"x")
    stk.fail_emits(-1)
    for _ in range(3):
        assert a.recv() == []
    stk.fail_emits(0)
    assert [s.payload for s in a.recv()] == [b"x"]


def test_shutdown_rd_with_out_of_order_data_pending(stk):
    """Found by the fuzzer: out-of-order ranges must not survive SHUT_RD."""
    c = passive_open(stk)
    base = c.snd
    c.send("PA", b"later", seq=base + 10)
    assert stk.lib.tcp_shutdown(c.sock, 0) == 0
    c.send("PA", b"0123456789abcdefghij", seq=base)
    stk.check()
    assert c.read() == b""


def test_data_beyond_fin_ignored(stk):
    c = passive_open(stk)
    base = c.snd
    c.send("PA", b"bogus", seq=base + 1)               # "after" the FIN below
    c.send("FA", seq=base)
    stk.check()
    assert c.state == "CLOSE-WAIT" and c.read() == b""
