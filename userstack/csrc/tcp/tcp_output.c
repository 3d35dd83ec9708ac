/* tcp_output.c: what to send and when (RFC 9293 3.8.6: windows, SWS avoidance, Nagle; RFC 6675
 * NextSeg during SACK recovery; RFC 5681/6582 fast retransmit; RFC 3042 limited transmit;
 * zero-window probes; ACKs) and building the segments.
 *
 * Sending is deferred: socket calls and tcp_input only mark a socket dirty, and tcp_flush runs
 * tcp_output once per dirty socket at the end of the stack's poll batch, so that writes coalesce
 * into full segments and ACKs ride on data (or one ACK covers a whole batch, like Linux's GRO).
 */
#include <errno.h>
#include <string.h>

#include "tcp_int.h"

uint32_t tcp_ts_now(const struct tcp_sock *s, uint64_t now)
{
	return (uint32_t)(now / 1000) + s->ts_offset;    /* 1 ms TS clock (RFC 7323 5.4) */
}

void tcp_update_mss(struct tcp_sock *s)
{
	uint32_t m = s->peer_mss < s->adv_mss ? s->peer_mss : s->adv_mss;
	if (s->ts_ok)
		m -= 12;                                      /* every segment carries TS */
	if (m < 64)
		m = 64;
	s->mss = m;
	s->cc.mss = m;
}

/* The window to advertise from rcv_nxt (RFC 9293 3.8.6.2.2): keep the right edge where it is, or
 * move it by at least min(buffer / 2, MSS) (receiver SWS avoidance), never past the ring's free
 * space. (The free space's right edge, rcv_nxt + free, never moves left: data in, rcv_nxt and the
 * ring's length grow together; reads only add space.) */
uint32_t tcp_rcv_window(struct tcp_sock *s)
{
	if (!s->rcvbuf.buf)
		return 0;
	uint32_t cap = s->rcvbuf.cap;
	uint32_t free = cap - s->rcvbuf.len;
	uint32_t cur = seq_gt(s->rcv_adv, s->rcv_nxt) ? s->rcv_adv - s->rcv_nxt : 0;
	if (free <= cur)
		return free;
	uint32_t step = cap / 2 < s->adv_mss ? cap / 2 : s->adv_mss;
	if (free - cur < step)
		return cur;
	return free;
}

static int do_emit(struct tcp_stack *ts, const struct us_addr *src, const struct us_addr *dst, size_t hl,
		   const uint8_t *p1, uint32_t l1, const uint8_t *p2, uint32_t l2)
{
	int r = ts->hooks.emit ? ts->hooks.emit(ts->ctx, src, dst, ts->hdr, hl, p1, l1, p2, l2) : 0;
	if (r < 0) {
		ts->tx_blocked = true;
		ts->st->emit_nobufs++;
		return r;
	}
	ts->st->segs_out++;
	ts->st->bytes_out += (uint64_t)l1 + l2;
	return 0;
}

/* Build and emit one segment of the connection; payload [seq, seq+len) from the send ring.
 * Returns the payload bytes sent (options may shorten it) or -ENOBUFS. */
static int xmit(struct tcp_sock *s, uint32_t seq, uint32_t len, uint8_t flags, uint64_t now)
{
	struct tcp_stack *ts = s->ts;
	struct tcp_opts o;
	memset(&o, 0, sizeof(o));
	o.ws = -1;
	bool syn = flags & TH_SYN;
	if (syn) {
		o.mss = (uint16_t)s->adv_mss;
		if (!(flags & TH_ACK)) {                   /* our SYN offers what is enabled */
			if (ts->cfg.wscale)
				o.ws = (int8_t)s->rcv_wscale;
			o.sack_perm = ts->cfg.sack;
			o.ts = ts->cfg.timestamps;
		} else {                                   /* SYN-ACK: what the peer offered */
			if (s->ws_ok)
				o.ws = (int8_t)s->rcv_wscale;
			o.sack_perm = s->sack_ok;
			o.ts = s->ts_ok;
		}
	} else {
		o.ts = s->ts_ok;
	}
	if (o.ts) {
		o.tsval = tcp_ts_now(s, now);
		o.tsecr = (flags & TH_ACK) ? s->ts_recent : 0;
	}
	if (!syn && s->sack_ok && (flags & TH_ACK) && (s->dsack || (s->mem && s->mem->ooo.n)))
		o.nsack = (uint8_t)tcp_sack_blocks(s, o.sack, o.ts ? 3 : 4);
	if (len) {
		uint32_t extra = o.nsack ? 4 + 8u * o.nsack : 0;
		uint32_t maxp = s->mss > extra ? s->mss - extra : 1;
		if (len > maxp) {
			len = maxp;
			flags &= (uint8_t)~TH_FIN;
		}
	}
	uint32_t wnd = tcp_rcv_window(s), adv;
	uint16_t field;
	if (syn) {
		field = (uint16_t)(wnd > 65535 ? 65535 : wnd);   /* never scaled (RFC 7323 2.2) */
		adv = field;
	} else {
		/* Round down (RFC 7323 Appendix F): rounding up would promise bytes the ring cannot
		 * hold, by up to 2^shift - 1 more with every ACK. The edge may move left by less than
		 * 2^shift; rcv_adv keeps the furthest edge promised, so nothing sent to it is refused. */
		uint32_t f = wnd >> s->rcv_wscale;
		field = (uint16_t)(f > 65535 ? 65535 : f);
		adv = (uint32_t)field << s->rcv_wscale;
	}
	size_t hl = tcp_build(ts->hdr, s->local.port, s->remote.port, seq,
			      (flags & TH_ACK) ? s->rcv_nxt : 0, flags, field, &o);
	const uint8_t *p1 = NULL, *p2 = NULL;
	uint32_t l1 = 0, l2 = 0;
	if (len)
		tcp_ring_peek(&s->sndbuf, seq - s->sb_seq, len, &p1, &l1, &p2, &l2);
	if (do_emit(ts, &s->local.addr, &s->remote.addr, hl, p1, l1, p2, l2) < 0)
		return -ENOBUFS;
	s->segs_out++;
	if (flags & TH_ACK) {
		s->last_ack_sent = s->rcv_nxt;
		s->ack_now = s->ack_soon = s->ack_held = false;
		s->unacked_bytes = 0;
		s->deadline[T_DELACK] = 0;
		s->dsack = false;
		if (seq_gt(s->rcv_nxt + adv, s->rcv_adv))
			s->rcv_adv = s->rcv_nxt + adv;
	}
	s->last_send = now;
	return (int)(l1 + l2);
}

/* The sequence number of a segment without data: the next new octet, snd_max, not snd_nxt,
 * which points back into the retransmission after a timeout and would make the peer (whose
 * rcv_nxt is past it) drop the segment, ACK field and all (BSD does the same). A zero-window
 * probe byte beyond the window is the exception: the peer has not taken it. */
static uint32_t ack_seq(const struct tcp_sock *s)
{
	return s->persist ? s->snd_nxt : s->snd_max;
}

int tcp_send_ack(struct tcp_sock *s, uint64_t now)
{
	int r = xmit(s, ack_seq(s), 0, TH_ACK, now);
	return r < 0 ? r : 0;
}

/* Keepalive probe: an old sequence number elicits an ACK (RFC 9293 3.8.4, RFC 1122 4.2.3.6). */
void tcp_send_probe(struct tcp_sock *s, uint64_t now)
{
	xmit(s, s->snd_una - 1, 0, TH_ACK, now);
}

static void emit_rst(struct tcp_stack *ts, const struct us_addr *src, const struct us_addr *dst,
		     uint16_t sport, uint16_t dport, uint32_t seq, uint32_t ack, uint8_t flags)
{
	struct tcp_opts o;
	memset(&o, 0, sizeof(o));
	o.ws = -1;
	size_t hl = tcp_build(ts->hdr, sport, dport, seq, ack, flags, 0, &o);
	if (do_emit(ts, src, dst, hl, NULL, 0, NULL, 0) == 0)
		ts->st->rst_out++;
}

/* RST for an active close or abort: <SEQ=SND.NXT><ACK=RCV.NXT><CTL=RST,ACK> (like Linux). */
int tcp_send_rst(struct tcp_sock *s, uint64_t now)
{
	(void)now;
	emit_rst(s->ts, &s->local.addr, &s->remote.addr, s->local.port, s->remote.port,
		 ack_seq(s), s->rcv_nxt, TH_RST | TH_ACK);
	return 0;
}

/* RFC 9293 3.10.7.1: the reset answering a segment (src/dst as received). */
void tcp_reply_rst(struct tcp_stack *ts, const struct us_addr *src, const struct us_addr *dst,
		   const struct tcp_seg *seg)
{
	if (seg->flags & TH_RST)
		return;
	if (seg->flags & TH_ACK) {
		emit_rst(ts, dst, src, seg->dport, seg->sport, seg->ack, 0, TH_RST);
	} else {
		uint32_t l = seg->len + ((seg->flags & TH_SYN) ? 1 : 0) + ((seg->flags & TH_FIN) ? 1 : 0);
		emit_rst(ts, dst, src, seg->dport, seg->sport, 0, seg->seq + l, TH_RST | TH_ACK);
	}
}

void tcp_reply_rst_sock(struct tcp_sock *s, const struct tcp_seg *seg)
{
	if (!(seg->flags & TH_RST))
		emit_rst(s->ts, &s->local.addr, &s->remote.addr, s->local.port, s->remote.port,
			 seg->ack, 0, TH_RST);
}

/* RFC 5961 sec. 7: challenge ACKs are limited per stack and per second. */
void tcp_challenge_ack(struct tcp_sock *s, uint64_t now)
{
	struct tcp_stack *ts = s->ts;
	if (ts->chal_count == 0 || now - ts->chal_window >= 1000000) {
		ts->chal_window = now;
		ts->chal_count = 0;
	}
	if (ts->chal_count >= ts->cfg.challenge_ack_limit) {
		ts->st->challenge_acks_limited++;
		return;
	}
	ts->chal_count++;
	ts->st->challenge_acks++;
	tcp_send_ack(s, now);
}

void tcp_want_head_rexmit(struct tcp_sock *s)
{
	s->rxt_head = true;
	tcp_mark_dirty(s);
}

static uint32_t data_end(const struct tcp_sock *s)
{
	return s->sb_seq + s->sndbuf.len;
}

/* Send [seq, seq + len) with FIN if it ends at the FIN; a retransmission when below snd_max.
 * Returns the sequence space sent or -ENOBUFS. Does not move snd_nxt. */
static int send_range(struct tcp_sock *s, uint32_t seq, uint32_t len, bool may_fin, uint64_t now)
{
	struct tcp_stack *ts = s->ts;
	uint8_t flags = TH_ACK;
	if (may_fin && s->fin_queued && seq + len == s->fin_seq)
		flags |= TH_FIN;
	if (len && seq + len == data_end(s))
		flags |= TH_PSH;
	int r = xmit(s, seq, len, flags, now);
	if (r < 0)
		return r;
	len = (uint32_t)r;
	bool fin = (flags & TH_FIN) && seq + len == s->fin_seq;
	uint32_t end = seq + len + (fin ? 1 : 0);
	if (seq_lt(seq, s->snd_max)) {
		s->retransmits++;
		ts->st->retransmits++;
		s->bytes_retrans += len;
		s->rtt_active = false;                     /* Karn */
	} else {
		s->bytes_sent += len;
		if (!s->rtt_active) {
			s->rtt_active = true;
			s->rtt_seq = end;
			s->rtt_time = now;
		}
	}
	if (seq_gt(end, s->snd_max))
		s->snd_max = end;
	if (len && len < s->mss)
		s->snd_sml = end;
	if (!s->deadline[T_RTO] && !s->persist)
		tcp_timer_set(s, T_RTO, now + s->rto);     /* RFC 6298 5.1 */
	return (int)(end - seq);
}

/* One segment from snd_nxt: new data, or the go-back-N resend after a timeout (skipping SACKed
 * data). cw_room: bytes the congestion window allows. 0 when nothing may go now. */
static int send_new(struct tcp_sock *s, uint32_t cw_room, uint64_t now)
{
	if (s->mem && seq_lt(s->snd_nxt, s->snd_max)) {
		int i;
		while (seq_lt(s->snd_nxt, s->snd_max) &&
		       (i = ranges_find(&s->mem->sacked, s->snd_nxt)) >= 0)
			s->snd_nxt = s->mem->sacked.r[i].end;
	}
	uint32_t seq = s->snd_nxt;
	uint32_t dend = data_end(s);
	uint32_t avail = seq_lt(seq, dend) ? dend - seq : 0;
	bool fin_pending = s->fin_queued && seq_le(seq, s->fin_seq);
	uint32_t len = avail < s->mss ? avail : s->mss;
	bool rexmit = seq_lt(seq, s->snd_max);
	if (rexmit && s->mem) {
		const struct tcp_ranges *sb = &s->mem->sacked;
		for (uint32_t i = 0; i < sb->n; i++)
			if (seq_gt(sb->r[i].start, seq)) {
				if (seq_lt(sb->r[i].start, seq + len))
					len = sb->r[i].start - seq;
				break;
			}
	}
	uint32_t wnd_end = s->snd_una + s->snd_wnd;
	uint32_t win_room = seq_lt(seq, wnd_end) ? wnd_end - seq : 0;
	if (s->force_probe && win_room == 0 && avail) {
		/* Zero-window probe: one byte beyond the window (RFC 9293 3.8.6.1). Like BSD,
		 * snd_max covers it but snd_nxt does not, so it is sent again once the window opens. */
		int r = xmit(s, seq, 1, TH_ACK, now);
		if (r < 0)
			return r;
		if (seq_gt(seq + 1, s->snd_max))
			s->snd_max = seq + 1;
		s->zwp++;
		return 0;
	}
	/* The congestion window counts segments, like Linux: one more may start while the
	 * flight is below cwnd, so that a cwnd that is not a multiple of the MSS does not hold
	 * back a runt (or block limited transmit). */
	if (cw_room && cw_room < s->mss)
		cw_room = s->mss;
	uint32_t n = len;
	if (n > win_room)
		n = win_room;
	if (n > cw_room)
		n = cw_room;
	bool fin = fin_pending && seq + n == s->fin_seq && (n || cw_room);
	if (!n && !fin)
		return 0;
	if (n < s->mss && !fin && !rexmit && !s->force_probe) {
		if (n < avail) {
			/* Window- or cwnd-limited: no runt unless it is half the peer's largest window. */
			if (!(s->max_snd_wnd && n >= s->max_snd_wnd / 2))
				return 0;
		} else if (!s->nodelay && seq_gt(s->snd_sml, s->snd_una)) {
			return 0;                          /* Nagle, Minshall's variant */
		}
	}
	int r = send_range(s, seq, n, fin, now);
	if (r < 0)
		return r;
	s->snd_nxt = seq + (uint32_t)r;
	return r;
}

static uint64_t persist_interval(const struct tcp_sock *s)
{
	const struct tcp_config *c = &s->ts->cfg;
	unsigned sh = s->probes_out > 15 ? 15 : s->probes_out;
	uint64_t t = (uint64_t)s->rto << sh;
	if (t < c->rto_min_us)
		t = c->rto_min_us;
	if (t > c->rto_max_us)
		t = c->rto_max_us;
	return t;
}

static bool ack_due(const struct tcp_sock *s)
{
	return s->ack_now || s->ack_soon;
}

void tcp_output(struct tcp_sock *s, uint64_t now)
{
	struct tcp_stack *ts = s->ts;
	switch (s->state) {
	case TCPS_SYN_SENT:
	case TCPS_SYN_RECEIVED:
		if (s->syn_pending) {
			uint8_t f = TH_SYN | (s->state == TCPS_SYN_RECEIVED ? TH_ACK : 0);
			if (xmit(s, s->iss, 0, f, now) < 0)
				goto blocked;
			s->syn_pending = false;
			if (s->snd_max == s->iss) {
				s->rtt_active = true;
				s->rtt_seq = s->iss + 1;
				s->rtt_time = now;
			} else {
				s->retransmits++;
				ts->st->retransmits++;
				s->rtt_active = false;
			}
			s->snd_nxt = s->snd_max = s->iss + 1;
			if (!s->deadline[T_RTO])
				tcp_timer_set(s, T_RTO, now + s->rto);
		}
		if (ack_due(s) && s->state == TCPS_SYN_RECEIVED && tcp_send_ack(s, now) < 0)
			goto blocked;
		return;
	case TCPS_CLOSED:
	case TCPS_LISTEN:
		return;
	case TCPS_TIME_WAIT:
		if (ack_due(s) && tcp_send_ack(s, now) < 0)
			goto blocked;
		return;
	default:
		break;
	}

	int sent = 0;
	/* Fast retransmit / NewReno partial ACK: the segment at snd_una, whatever cwnd says. */
	if (s->rxt_head) {
		uint32_t seq = s->snd_una;
		if (seq_lt(seq, s->snd_max)) {
			uint32_t from = seq_lt(seq, s->sb_seq) ? s->sb_seq : seq;
			uint32_t end = seq_min(data_end(s), s->snd_max);
			uint32_t len = seq_lt(from, end) ? end - from : 0;
			if (len > s->mss)
				len = s->mss;
			if (s->mem && s->mem->sacked.n && seq_lt(s->mem->sacked.r[0].start, from + len))
				len = seq_gt(s->mem->sacked.r[0].start, from) ? s->mem->sacked.r[0].start - from : 0;
			if (len || (s->fin_queued && from == s->fin_seq)) {
				int r = send_range(s, from, len, true, now);
				if (r < 0)
					goto blocked;
				sent++;
				if (seq_gt(from + (uint32_t)r, s->high_rxt))
					s->high_rxt = from + (uint32_t)r;
				if (s->in_recovery && s->sack_ok)
					s->pipe += (uint32_t)r;
			}
		}
		s->rxt_head = false;
	}

	/* Tail loss probe (tcp_timer.c): the last segment sent, again. */
	if (s->tlp_probe) {
		uint32_t end = s->fin_queued && seq_gt(s->snd_max, s->fin_seq) ? s->fin_seq : s->snd_max;
		uint32_t from = seq_lt(end - s->mss, s->snd_una) ? s->snd_una : end - s->mss;
		if (seq_lt(from, s->sb_seq))
			from = s->sb_seq;
		if (seq_le(from, end) && seq_lt(s->snd_una, s->snd_max)) {
			int r = send_range(s, from, end - from, true, now);
			if (r < 0)
				goto blocked;
			sent++;
		}
		s->tlp_probe = false;
	}

	if (s->in_recovery && s->sack_ok) {
		/* RFC 6675 5 (C): while cwnd - pipe >= 1 SMSS, send NextSeg. */
		while (s->cc.cwnd >= s->pipe + s->mss) {
			uint32_t seq, len;
			int r;
			if (!tcp_sack_next_seg(s, &seq, &len)) {
				r = send_new(s, s->cc.cwnd - s->pipe, now);            /* rule 2 */
				if (r < 0)
					goto blocked;
				if (r > 0) {
					s->pipe += (uint32_t)r;
					sent++;
					continue;
				}
				if (!tcp_sack_next_seg_rule3(s, &seq, &len))           /* rule 3 */
					break;
			}
			r = send_range(s, seq, len, true, now);
			if (r < 0)
				goto blocked;
			s->high_rxt = seq + (uint32_t)r;
			s->pipe += (uint32_t)r;
			sent++;
		}
	} else {
		/* RFC 5681 4.1: restart from the initial window after an idle RTO. */
		if (s->snd_una == s->snd_max && s->last_send && now - s->last_send > s->rto &&
		    seq_lt(s->snd_nxt, data_end(s))) {
			uint32_t iw = tcp_initial_cwnd(s);
			if (s->cc.cwnd > iw)
				s->cc.cwnd = iw;
		}
		for (;;) {
			uint32_t flight = s->snd_nxt - s->snd_una;
			uint32_t cwnd = s->cc.cwnd;
			if (!s->in_recovery && s->dupacks && s->dupacks < 3)
				cwnd += s->dupacks * s->mss;       /* RFC 3042 limited transmit */
			int r = send_new(s, cwnd > flight ? cwnd - flight : 0, now);
			if (r < 0)
				goto blocked;
			if (r == 0)
				break;
			sent++;
			if (s->force_probe)
				break;
		}
	}
	s->force_probe = false;

	/* Data waits, nothing is in flight: only a window update can start us, so probe. */
	bool pending = seq_lt(s->snd_nxt, data_end(s));
	if (pending && s->snd_nxt == s->snd_una && !s->in_recovery) {
		if (!s->persist) {
			s->persist = true;
			s->probes_out = 0;
		}
		tcp_timer_clear(s, T_RTO);
		if (!s->deadline[T_PERSIST])
			tcp_timer_set(s, T_PERSIST, now + persist_interval(s));
	} else if (s->persist && (!pending || s->snd_nxt != s->snd_una)) {
		s->persist = false;
		tcp_timer_clear(s, T_PERSIST);
		if (s->snd_max != s->snd_una && !s->deadline[T_RTO])
			tcp_timer_set(s, T_RTO, now + s->rto);
	}

	if (sent)
		tcp_arm_probe(s, now);
	if (sent || !ack_due(s))
		return;
	if (!s->ack_now && !s->ack_held && ts->hold_acks) {
		/* tcp_flush_hold_acks: the application may answer first; a delayed ACK meanwhile. */
		s->ack_held = true;
		if (!s->deadline[T_DELACK])
			tcp_timer_set(s, T_DELACK, now + ts->cfg.delack_us);
		tcp_mark_dirty(s);                          /* the next flush sends it whatever */
		return;
	}
	if (tcp_send_ack(s, now) < 0)
		goto blocked;
	return;
blocked:
	tcp_mark_dirty(s);
}

uint64_t tcp_persist_interval(const struct tcp_sock *s)
{
	return persist_interval(s);
}

void tcp_flush(struct tcp_stack *ts, uint64_t now)
{
	tcp_touch(ts, now);
	ts->tx_blocked = false;
	struct tcp_list work;
	list_init(&work);
	if (!list_empty(&ts->dirty)) {                  /* take the list: re-marked go to the next flush */
		work.next = ts->dirty.next;
		work.prev = ts->dirty.prev;
		work.next->prev = &work;
		work.prev->next = &work;
		list_init(&ts->dirty);
	}
	while (!list_empty(&work)) {
		struct tcp_sock *s = container_of(work.next, struct tcp_sock, dirty_node);
		list_del(&s->dirty_node);
		s->dirty = false;
		if (ts->tx_blocked) {
			tcp_mark_dirty(s);                  /* the ring is full: next time */
			continue;
		}
		tcp_output(s, now);
	}
	tcp_dispatch_events(ts);
}

void tcp_flush_hold_acks(struct tcp_stack *ts, uint64_t now)
{
	ts->hold_acks = true;
	tcp_flush(ts, now);
	ts->hold_acks = false;
}
