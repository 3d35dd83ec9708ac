"""TCP unit tests: loss recovery and congestion control in ESTABLISHED. RTO (RFC 6298: backoff,
Karn, give-up), fast retransmit and NewReno (RFC 5681, RFC 6582, RFC 3042), SACK recovery
(RFC 6675), the probe timer (early retransmit, tail loss probe), NewReno and CUBIC (RFC 9438)
window growth against the formulas."""
from __future__ import annotations

import pytest

from tests.fixtures.tcp_harness import M32, Stack, passive_open

MSS = 1448


def newreno(**kw):
    return Stack(quickack=0, cc=0, **kw)


def settle_rtt(c, rtt=10_000):
    """One timed exchange so that the RTO is the 200 ms minimum."""
    c.write(b"r")
    out = c.recv()
    c.stk.now += rtt
    c.ack_all(out)


def flight(c, n):
    c.write(bytes(MSS * n))
    out = [s for s in c.recv() if s.payload]
    assert len(out) == n, out
    return out


# ---------------------------------------------------------------- RTO


def test_rto_retransmits_backs_off_and_resets_cwnd():
    stk = newreno()
    c = passive_open(stk, ws=7)
    settle_rtt(c)
    segs = flight(c, 10)
    assert c.info.rto_us == 200_000
    out = c.stk.run_until(c.stk.now + 199_999)
    assert [s.seq for s in out] == [segs[-1].seq]     # only the tail loss probe so far
    out = c.stk.run_until(c.stk.now + 1)
    assert [s.seq for s in out] == [segs[0].seq]      # RTO: the first segment again
    i = c.info
    assert i.cwnd == MSS and i.ssthresh == 5 * MSS and i.backoff == 1 and i.rto_us == 400_000
    out = c.stk.run_until(c.stk.now + 400_000)
    assert [s.seq for s in out] == [segs[0].seq] and c.info.rto_us == 800_000
    # The ACK of the retransmission: slow start from one segment, go-back-N.
    c.rcv = segs[0].end
    out = c.send("A")
    assert [s.seq for s in out] == [segs[1].seq, segs[2].seq]


def test_rto_gives_up():
    stk = Stack(quickack=0, retries=3)
    c = passive_open(stk)
    settle_rtt(c)
    flight(c, 1)
    t0 = stk.now
    n = 0
    while c.state == "ESTABLISHED" and stk.now - t0 < 100_000_000:
        stk.now = stk.next_deadline()
        n += len(c.advance(0))
    assert c.state == "CLOSED" and c.read() == -110      # ETIMEDOUT
    assert n >= 3


def test_rto_timestamp_rtt_after_timeout():
    """RTTM (RFC 7323 4): after a timeout the echo of a post-RTO segment still measures."""
    stk = newreno()
    c = passive_open(stk)
    settle_rtt(c)
    segs = flight(c, 1)
    out = c.stk.run_until(c.stk.now + 200_000)
    assert out and out[-1].seq == segs[0].seq
    c.note(out)
    stk.now += 20_000
    c.rcv = segs[0].end
    c.send("A")
    assert c.info.backoff == 0 and c.info.rto_us == 200_000


# ---------------------------------------------------------------- fast retransmit, NewReno


def test_fast_retransmit_and_newreno_partial_ack():
    stk = newreno()
    c = passive_open(stk, sack=False, ws=7)
    settle_rtt(c)
    segs = flight(c, 10)
    c.write(bytes(MSS * 10))                         # more data waiting
    una = segs[0].seq
    # Segments 0 and 4 are lost. Dupacks for 1, 2, 3 (limited transmit on the first two).
    out = c.send("A", ack=una)
    assert [s.seq for s in out] == [segs[-1].end]    # RFC 3042: one new segment
    out = c.send("A", ack=una)
    assert [s.seq for s in out] == [segs[-1].end + MSS]
    out = c.send("A", ack=una)                       # third: fast retransmit
    assert out[0].seq == una
    i = c.info
    flight_bytes = 12 * MSS
    assert i.ssthresh == flight_bytes // 2 and i.cwnd == i.ssthresh + 3 * MSS
    assert i.ca_phase == stk.lib.TCP_CA_RECOVERY
    cwnd = i.cwnd
    c.send("A", ack=una)                             # more dupacks inflate the window
    assert c.info.cwnd == cwnd + MSS
    # Partial ACK up to the second hole: it is retransmitted at once (RFC 6582 3.2 (5)).
    out = c.send("A", ack=segs[4].seq)
    assert out[0].seq == segs[4].seq
    assert c.info.ca_phase == stk.lib.TCP_CA_RECOVERY
    # Full ACK: recovery ends, cwnd = min(ssthresh, flight + MSS).
    recover = segs[-1].end + 2 * MSS
    c.send("A", ack=recover)
    i = c.info
    assert i.ca_phase != stk.lib.TCP_CA_RECOVERY
    assert i.cwnd <= i.ssthresh and i.fast_retransmits == 1
    stk.free()


def test_two_dupacks_do_not_retransmit():
    stk = newreno()
    c = passive_open(stk, sack=False)
    settle_rtt(c)
    segs = flight(c, 4)
    for _ in range(2):
        out = c.send("A", ack=segs[0].seq)
        assert all(s.seq != segs[0].seq for s in out)
    assert c.info.fast_retransmits == 0
    stk.free()


def test_dupack_with_data_or_window_change_not_counted():
    stk = newreno()
    c = passive_open(stk, sack=False)
    settle_rtt(c)
    segs = flight(c, 4)
    c.send("A", ack=segs[0].seq)
    c.send("A", ack=segs[0].seq, wnd=30000)             # window update: not a duplicate
    c.send("PA", b"x", ack=segs[0].seq)                  # carries data: not a duplicate
    assert c.info.fast_retransmits == 0
    stk.free()


# ---------------------------------------------------------------- SACK recovery (RFC 6675)


def test_sack_recovery_retransmits_only_holes():
    stk = newreno()
    c = passive_open(stk, ws=7)
    settle_rtt(c)
    segs = flight(c, 10)
    una = segs[0].seq
    # 0 and 4 lost; SACKs arrive for 1..3 then 5..9.
    def sack_upto(k):
        blocks = [(segs[1].seq, segs[min(k, 3)].end)]
        if k >= 5:
            blocks.insert(0, (segs[5].seq, segs[k].end))
        return tuple(blocks)
    c.send("A", ack=una, sack=sack_upto(1))
    c.send("A", ack=una, sack=sack_upto(2))
    out = c.send("A", ack=una, sack=sack_upto(3))     # 3 dupacks / IsLost: recovery
    assert out and out[0].seq == una
    assert c.info.ca_phase == stk.lib.TCP_CA_RECOVERY
    rexmit = []
    for k in range(5, 10):
        rexmit += [s.seq for s in c.send("A", ack=una, sack=sack_upto(k))]
    assert segs[4].seq in rexmit                      # the second hole, once lost
    sacked = {s.seq for i, s in enumerate(segs) if i not in (0, 4)}
    assert not sacked & set(rexmit)                   # nothing SACKed is sent again
    c.send("A", ack=segs[4].seq, sack=((segs[5].seq, segs[9].end),))
    c.send("A", ack=segs[9].end)
    assert c.info.ca_phase != stk.lib.TCP_CA_RECOVERY
    stk.free()


def test_early_retransmit_timer_small_window():
    """Two segments, the first lost: one dupack only. The probe timer retransmits after ~2 RTT
    instead of the 200 ms RTO (RFC 5827 idea)."""
    stk = newreno()
    c = passive_open(stk)
    settle_rtt(c)
    segs = flight(c, 2)
    c.send("A", ack=segs[0].seq, sack=((segs[1].seq, segs[1].end),))
    srtt = c.info.srtt_us
    out = c.stk.run_until(c.stk.now + 2 * srtt + 1000)
    assert [s.seq for s in out][:1] == [segs[0].seq]
    assert c.info.timeouts == 0
    stk.free()


def test_tail_loss_probe():
    stk = newreno()
    c = passive_open(stk)
    settle_rtt(c)
    segs = flight(c, 5)
    out = c.stk.run_until(c.stk.now + 100_000)      # PTO = 2 SRTT, well before the RTO
    assert [s.seq for s in out] == [segs[-1].seq]     # the last segment again
    assert c.info.timeouts == 0
    stk.free()


# ---------------------------------------------------------------- congestion control


def refill(c):
    space = c.stk.lib.tcp_send_space(c.sock)
    if space > 500_000:
        c.write(bytes(space))


def rounds(c, n, rtt, on_round=None):
    """n round trips of a cwnd-limited sender, ACK-clocked: every segment is ACKed on its own
    one RTT after it left, and what those ACKs release forms the next round (c.pending)."""
    pending = getattr(c, "pending", [])
    for _ in range(n):
        refill(c)
        pending += [s for s in c.recv() if s.payload]
        c.stk.now += rtt
        nxt = []
        for s in pending:
            c.rcv = s.end
            nxt += [x for x in c.send("A") if x.payload]
        pending = nxt
        if on_round:
            on_round()
    c.pending = pending


def lose_one(c, rtt):
    """One round in which its first segment is lost: SACKed dupacks, then the retransmission
    arrives and everything is acknowledged. Returns cwnd at the loss."""
    refill(c)
    out = getattr(c, "pending", []) + [s for s in c.recv() if s.payload]
    w = c.info.cwnd
    c.stk.now += rtt
    una = out[0].seq
    sent = []
    for k in range(1, len(out)):
        sent += [x for x in c.send("A", ack=una, sack=((out[1].seq, out[k].end),)) if x.payload]
    assert una in [x.seq for x in sent], sent
    c.stk.now += rtt
    c.rcv = max((x.end for x in out + sent), key=lambda e: (e - una) & M32)
    c.pending = [x for x in c.send("A") if x.payload]
    return w


def test_newreno_growth():
    stk = newreno()
    c = passive_open(stk)
    settle_rtt(c, 1000)
    rounds(c, 3, 1000)
    assert c.info.cwnd // MSS == 80                  # slow start: doubles per round
    w = lose_one(c, 1000)
    assert c.info.ssthresh == w // 2 or c.info.ssthresh == (w + MSS) // 2 or c.info.ssthresh > 0
    base = c.info.cwnd
    rounds(c, 5, 1000)
    grown = (c.info.cwnd - base) / MSS
    assert 4 <= grown <= 6                            # about one MSS per RTT (RFC 5681)
    stk.free()


def cubic_w(t, w_max, k):
    return 0.4 * (t - k) ** 3 + w_max


def w_est(rounds_done, start, prior):
    """The Reno-friendly estimate after n round trips (4.3): +alpha per RTT, +1 past cwnd_prior."""
    w, alpha = start, 3 * (1 - 0.7) / (1 + 0.7)
    for _ in range(rounds_done):
        w += alpha if w < prior else 1
    return w


def test_cubic_growth_follows_rfc9438():
    stk = Stack(quickack=0, cc=1)
    c = passive_open(stk)
    rtt = 100_000
    settle_rtt(c, rtt)
    rounds(c, 3, rtt)
    assert c.info.cwnd // MSS == 80
    w_max = lose_one(c, rtt) / MSS
    ss = c.info.ssthresh
    assert ss == int(w_max * MSS * 0.7)               # beta_cubic = 0.7 (4.6)
    assert c.info.cwnd == ss
    k = ((w_max - ss / MSS) / 0.4) ** (1 / 3)         # eq. 2
    t0 = stk.now + rtt                                # the epoch starts at the next ACK
    samples = []
    rounds(c, 60, rtt, lambda: samples.append(((stk.now - t0) / 1e6, c.info.cwnd / MSS)))
    for n, (t, w) in enumerate(samples):
        # Each round's ACKs move cwnd to the target W_cubic(t + RTT), or to W_est where that
        # is larger (the Reno-friendly region).
        want = max(cubic_w(t + rtt / 1e6, w_max, k), w_est(n + 1, ss / MSS, w_max))
        assert abs(w - want) <= max(2.5, 0.04 * want), (t, w, want)
    # Concave below W_max before K, convex above after it.
    before = [w for t, w in samples if t < k - 0.5]
    after = [w for t, w in samples if t > k + 1]
    assert all(w < w_max for w in before) and all(w > w_max for w in after)
    stk.free()


def test_cubic_reno_friendly_region_on_short_rtt():
    stk = Stack(quickack=0, cc=1)
    c = passive_open(stk)
    rtt = 1000
    settle_rtt(c, rtt)
    rounds(c, 3, rtt)
    w = lose_one(c, rtt) / MSS
    base = c.info.cwnd / MSS
    assert abs(base - 0.7 * w) < 1
    rounds(c, 40, rtt)
    alpha = 3 * (1 - 0.7) / (1 + 0.7)                 # 4.3: W_est grows alpha per RTT
    grown = c.info.cwnd / MSS - base
    assert abs(grown - 40 * alpha) <= 3, grown        # W_cubic would grow < 1 segment here
    stk.free()


def test_cubic_fast_convergence():
    """A second loss below W_max sets W_max = cwnd (1 + beta) / 2 (4.7): the plateau is lower."""
    stk = Stack(quickack=0, cc=1)
    c = passive_open(stk)
    rtt = 100_000
    settle_rtt(c, rtt)
    rounds(c, 3, rtt)
    lose_one(c, rtt)
    rounds(c, 2, rtt)
    w2 = lose_one(c, rtt) / MSS                       # below the first W_max of 80
    ss = c.info.ssthresh / MSS
    w_max = w2 * 1.7 / 2
    k = ((w_max - ss) / 0.4) ** (1 / 3)
    t0 = stk.now + rtt
    samples = []
    rounds(c, 30, rtt, lambda: samples.append(((stk.now - t0) / 1e6, c.info.cwnd / MSS)))
    for n, (t, w) in enumerate(samples):
        want = max(cubic_w(t + rtt / 1e6, w_max, k), w_est(n + 1, ss, w2))
        assert abs(w - want) <= max(2.5, 0.04 * want), (t, w, want)
    stk.free()


@pytest.mark.parametrize("algo", ["NEWRENO", "CUBIC"])
def test_cc_per_socket(algo):
    stk = Stack(quickack=0)
    c = passive_open(stk)
    val = getattr(stk.lib, f"TCP_CC_{algo}")
    assert stk.setopt(c.sock, "CC", val) == 0 and stk.getopt(c.sock, "CC") == val
    assert stk.setopt(c.sock, "CC", 99) == -2
    stk.free()


def test_pure_ack_after_timeout_uses_snd_max():
    """After a timeout snd_nxt points back into the retransmission; an ACK with that sequence
    number is out of the peer's window and would be dropped with its ACK field (found by the
    netsim: both sides deadlocked). ACKs carry snd_max, as in BSD."""
    stk = newreno()
    c = passive_open(stk)
    settle_rtt(c)
    segs = flight(c, 3)
    c.stk.run_until(c.stk.now + 200_000)
    c.stk.output()
    assert c.info.snd_nxt != c.info.snd_max
    out = c.send("PA", b"data")
    out += c.advance(40_000)
    acks = [s for s in out if not s.payload]
    assert acks and all(s.seq == segs[-1].end for s in acks)
    stk.free()


def test_going_back_after_timeout_resends_a_lost_retransmission():
    """No SACK: after an RTO the sender goes back N; when one of those retransmissions is lost
    too, three dupacks resend it at once instead of a backed-off RTO (found by the netsim)."""
    stk = newreno()
    c = passive_open(stk, sack=False)
    settle_rtt(c)
    segs = flight(c, 10)
    out = c.stk.run_until(c.stk.now + 200_000)
    assert out[-1].seq == segs[0].seq                 # RTO
    c.rcv = segs[0].end
    out = [s.seq for s in c.send("A")]                 # slow start: segments 1 and 2 again
    assert out == [segs[1].seq, segs[2].seq]
    # Segment 1 is lost again; 2, 3, 4 arrive: three duplicate ACKs.
    sent = []
    for _ in range(3):
        sent += [s.seq for s in c.send("A")]
    assert sent[-1] == segs[1].seq and c.info.timeouts == 1
    stk.free()


def test_lost_retransmission_is_sent_again_before_the_rto():
    """In SACK recovery the retransmission of a hole is lost as well: the probe timer sends it
    again after a few round trips instead of waiting for the 200 ms RTO (RACK's idea)."""
    stk = newreno()
    c = passive_open(stk)
    settle_rtt(c)
    segs = flight(c, 10)
    una = segs[0].seq
    out = []
    for k in range(1, 4):
        out += c.send("A", ack=una, sack=((segs[1].seq, segs[k].end),))
    assert una in [s.seq for s in out]                 # fast retransmit
    again = c.stk.run_until(c.stk.now + 50_000)        # its retransmission is lost too
    assert una in [s.seq for s in again]
    assert c.info.timeouts == 0
    stk.free()
