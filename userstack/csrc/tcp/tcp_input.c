/* tcp_input.c: segment arrival, RFC 9293 3.10.7 ("SEGMENT ARRIVES") step by step, with
 * RFC 5961 (blind-attack protections), RFC 7323 (PAWS, RTTM), RFC 2018/6675 (SACK), RFC 5681 and
 * RFC 6582 (fast retransmit, NewReno) and RFC 6191 (SYN in TIME-WAIT). */
#include <errno.h>
#include <string.h>

#include "tcp_int.h"

void tcp_input(struct tcp_stack *ts, const struct us_addr *src, const struct us_addr *dst,
	       const uint8_t *p, size_t len, uint64_t now)
{
	struct tcp_seg seg;
	tcp_touch(ts, now);
	ts->st->segs_in++;
	if (tcp_parse(p, len, &seg) < 0 || !seg.sport || !seg.dport || src->family != dst->family ||
	    (src->family != US_AF4 && src->family != US_AF6)) {
		ts->st->bad_segs++;
		return;
	}
	ts->st->bytes_in += seg.len;
	tcp_process(ts, src, dst, &seg, now);
	tcp_dispatch_events(ts);
}

/* ---- options of a SYN (RFC 9293 3.7.1, RFC 7323 2-3, RFC 2018 2) ---- */
static void take_syn_options(struct tcp_sock *s, const struct tcp_seg *seg, uint64_t now)
{
	const struct tcp_config *c = &s->ts->cfg;
	if (seg->has_mss)
		s->peer_mss = seg->mss < 88 ? 88 : seg->mss;
	s->ws_ok = c->wscale && seg->has_ws;
	if (s->ws_ok) {
		s->snd_wscale = seg->ws;
	} else {
		s->snd_wscale = 0;
		s->rcv_wscale = 0;
	}
	s->sack_ok = c->sack && seg->sack_perm;
	s->ts_ok = c->timestamps && seg->has_ts;
	if (s->ts_ok) {
		s->ts_recent = seg->tsval;
		s->ts_recent_at = now;
	}
	tcp_update_mss(s);
}

static void established(struct tcp_sock *s, uint64_t now)
{
	/* RFC 5681 3.1: one segment when the SYN or SYN-ACK had to be retransmitted. */
	uint32_t iw = s->retries ? s->mss : tcp_initial_cwnd(s);
	s->ca->init(&s->cc, s->mss, iw);
	s->retries = 0;
	s->backoff = 0;
	s->quickack = s->ts->cfg.quickack;
	s->last_recv = now;
	tcp_timer_clear(s, T_RTO);
	if (s->keepalive)
		tcp_timer_set(s, T_KEEPALIVE, now + (uint64_t)s->keepidle * 1000000);
	tcp_set_state(s, TCPS_ESTABLISHED);
	tcp_notify(s, true);
}

/* ---- LISTEN (3.10.7.2) ---- */
static void listen_input(struct tcp_sock *l, const struct us_endpoint *le, const struct us_endpoint *re,
			 const struct us_addr *src, const struct us_addr *dst,
			 const struct tcp_seg *seg, uint64_t now, uint32_t iss_hint)
{
	struct tcp_stack *ts = l->ts;
	if (seg->flags & TH_RST)
		return;
	if (seg->flags & TH_ACK) {
		tcp_reply_rst(ts, src, dst, seg);
		return;
	}
	if (!(seg->flags & TH_SYN))
		return;
	if (l->nacceptq >= l->backlog || l->nsynq >= l->backlog) {
		ts->st->listen_drops++;              /* like Linux: drop, the peer retries */
		return;
	}
	struct tcp_sock *c = tcp_sock_alloc(ts);
	if (!c)
		return;
	c->nodelay = l->nodelay;
	c->keepalive = l->keepalive;
	c->keepidle = l->keepidle;
	c->keepintvl = l->keepintvl;
	c->keepcnt = l->keepcnt;
	c->sndbuf_size = l->sndbuf_size;
	c->rcvbuf_size = l->rcvbuf_size;
	c->mss_clamp = l->mss_clamp;
	c->ca = l->ca;
	c->cc_algo = l->cc_algo;
	c->local = *le;
	c->remote = *re;
	if (tcp_conn_setup(c) < 0) {
		tcp_destroy(c);
		return;
	}
	c->passive = true;
	c->parent = l;
	list_add_tail(&l->synq, &c->q_node);
	l->nsynq++;
	c->irs = seg->seq;
	c->rcv_nxt = seg->seq + 1;
	c->rcv_adv = c->rcv_nxt;
	c->last_ack_sent = c->rcv_nxt;
	take_syn_options(c, seg, now);
	c->snd_wnd = seg->wnd;                       /* never scaled in a SYN (RFC 7323 2.2) */
	c->max_snd_wnd = c->snd_wnd;
	c->snd_wl1 = seg->seq;
	c->iss = iss_hint ? iss_hint : tcp_isn(ts, le, re, now);
	c->snd_una = c->snd_nxt = c->snd_max = c->iss;
	c->snd_wl2 = c->iss;
	c->sb_seq = c->iss + 1;
	c->high_rxt = c->recover = c->snd_sml = c->iss;
	c->ca->init(&c->cc, c->mss, tcp_initial_cwnd(c));
	c->state = TCPS_SYN_RECEIVED;
	c->syn_pending = true;
	c->last_recv = now;
	tcp_hash_insert(c);
	tcp_mark_dirty(c);
	ts->st->passive_opens++;
	/* Data on the SYN is not acknowledged (no TFO): the peer sends it again. */
}

/* ---- SYN-SENT (3.10.7.3) ---- */
static void receive_data(struct tcp_sock *s, const struct tcp_seg *seg, uint64_t now);
static void process_fin(struct tcp_sock *s, uint64_t now);

static void syn_sent_input(struct tcp_sock *s, const struct us_addr *src, const struct us_addr *dst,
			   const struct tcp_seg *seg, uint64_t now)
{
	bool ack = seg->flags & TH_ACK;
	if (ack && (seq_le(seg->ack, s->iss) || seq_gt(seg->ack, s->snd_max))) {
		if (!(seg->flags & TH_RST))
			tcp_reply_rst(s->ts, src, dst, seg);
		return;
	}
	if (seg->flags & TH_RST) {
		/* RFC 5961 3.2 / RFC 9293: acceptable only if it acknowledges our SYN. */
		if (ack) {
			s->ts->st->rst_in++;
			tcp_done(s, ECONNREFUSED);
		}
		return;
	}
	if (!(seg->flags & TH_SYN))
		return;
	s->irs = seg->seq;
	s->rcv_nxt = seg->seq + 1;
	take_syn_options(s, seg, now);
	uint32_t w = s->rcvbuf.cap < 65535 ? s->rcvbuf.cap : 65535;   /* what our SYN said */
	s->rcv_adv = s->rcv_nxt + w;
	s->last_ack_sent = s->rcv_nxt;
	s->snd_wnd = seg->wnd;
	s->max_snd_wnd = s->snd_wnd;
	s->snd_wl1 = seg->seq;
	s->snd_wl2 = seg->ack;
	s->ack_now = true;
	tcp_mark_dirty(s);
	if (ack) {
		s->snd_una = seg->ack;
		if (seq_lt(s->snd_nxt, s->snd_una))
			s->snd_nxt = s->snd_una;
		if (s->rtt_active && seq_ge(seg->ack, s->rtt_seq)) {
			tcp_rtt_sample(s, (uint32_t)(now - s->rtt_time));
			s->rtt_active = false;
		}
		s->high_rxt = s->recover = s->snd_una;
		established(s, now);
		if (seg->len || (seg->flags & TH_FIN)) {
			struct tcp_seg d = *seg;
			d.seq = seg->seq + 1;                  /* past the SYN */
			if (d.len)
				receive_data(s, &d, now);
			if ((seg->flags & TH_FIN) && s->rcv_nxt == d.seq + d.len)
				process_fin(s, now);
		}
	} else {
		/* Simultaneous open (3.10.7.3, figure 8): answer with SYN-ACK, same ISS. */
		tcp_set_state(s, TCPS_SYN_RECEIVED);
		s->syn_pending = true;
	}
}

/* ---- helpers for the synchronized states ---- */

static bool seq_acceptable(const struct tcp_sock *s, uint32_t seq, uint32_t seg_len)
{
	uint32_t wnd = seq_gt(s->rcv_adv, s->rcv_nxt) ? s->rcv_adv - s->rcv_nxt : 0;
	/* RFC 9293 3.10.7.4, the four cases; a zero-length segment may sit exactly at the right edge
	 * (as Linux takes it): a peer that sent up to our edge sends its ACKs from there, and refusing
	 * them leaves both ends waiting for retransmission timeouts. */
	if (seg_len == 0) {
		if (wnd == 0)
			return seq == s->rcv_nxt;
		return seq_ge(seq, s->rcv_nxt) && seq_le(seq, s->rcv_nxt + wnd);
	}
	if (wnd == 0)
		return false;
	uint32_t last = seq + seg_len - 1;
	return (seq_ge(seq, s->rcv_nxt) && seq_lt(seq, s->rcv_nxt + wnd)) ||
	       (seq_ge(last, s->rcv_nxt) && seq_lt(last, s->rcv_nxt + wnd));
}

static void process_fin(struct tcp_sock *s, uint64_t now)
{
	s->rcv_nxt++;
	s->fin_rcvd = true;
	s->ooo_fin = false;
	if (s->mem)
		s->mem->ooo.n = 0;                      /* anything "after" the FIN is bogus */
	/* ESTABLISHED: the application that sees the end of stream usually closes at once, and
	 * its FIN may carry the ACK (Linux's pingpong mode does the same). */
	if (s->state == TCPS_ESTABLISHED && s->owned)
		s->ack_soon = true;
	else
		s->ack_now = true;
	tcp_mark_dirty(s);
	switch (s->state) {
	case TCPS_SYN_RECEIVED:
	case TCPS_ESTABLISHED:
		tcp_set_state(s, TCPS_CLOSE_WAIT);
		break;
	case TCPS_FIN_WAIT_1:
		if (s->fin_queued && seq_gt(s->snd_una, s->fin_seq))
			tcp_enter_time_wait(s, now);
		else
			tcp_set_state(s, TCPS_CLOSING);      /* simultaneous close */
		break;
	case TCPS_FIN_WAIT_2:
		tcp_enter_time_wait(s, now);
		break;
	default:
		break;
	}
	tcp_notify(s, true);
}

static void schedule_ack(struct tcp_sock *s, uint32_t len, uint64_t now)
{
	s->unacked_bytes += len;
	if (len > s->rcv_mss)
		s->rcv_mss = len < s->adv_mss ? len : s->adv_mss;
	if (s->unacked_bytes >= 2 * s->rcv_mss)
		s->ack_now = true;                      /* every second full segment (RFC 5681 4.2) */
	else if (s->quickack)
		s->ack_soon = true;                     /* quick ACK: may ride on the answer */
	else if (!s->deadline[T_DELACK])
		tcp_timer_set(s, T_DELACK, now + s->ts->cfg.delack_us);
	if (s->quickack)
		s->quickack--;
	if (s->ack_now || s->ack_soon)
		tcp_mark_dirty(s);
}

/* Text processing (3.10.7.4 seventh): in order into the ring, out of order at its offset. */
static void receive_data(struct tcp_sock *s, const struct tcp_seg *seg, uint64_t now)
{
	uint32_t seq = seg->seq, len = seg->len;
	const uint8_t *data = seg->data;
	if (seq_lt(seq, s->rcv_nxt)) {
		uint32_t d = s->rcv_nxt - seq;
		if (d >= len) {
			if (s->sack_ok) {                  /* RFC 2883: report the duplicate */
				s->dsack = true;
				s->dsack_start = seq;
				s->dsack_end = seq + len;
			}
			s->ack_now = true;
			tcp_mark_dirty(s);
			return;
		}
		data += d;
		len -= d;
		seq = s->rcv_nxt;
	}
	struct tcp_ring *rb = &s->rcvbuf;
	uint32_t room = rb->cap - rb->len;
	uint32_t wnd = seq_gt(s->rcv_adv, s->rcv_nxt) ? s->rcv_adv - s->rcv_nxt : 0;
	if (room > wnd)
		room = wnd;                             /* trim to the window we advertised */
	uint32_t off = seq - s->rcv_nxt;
	if (off >= room) {
		s->ack_now = true;
		tcp_mark_dirty(s);
		return;
	}
	if (len > room - off)
		len = room - off;
	s->bytes_received += len;
	if (s->rd_shut) {                           /* shut down for reading: acknowledge, discard */
		if (off == 0) {
			s->rcv_nxt += len;
			schedule_ack(s, len, now);
		}
		return;
	}
	struct tcp_ranges *ooo = &s->mem->ooo;
	if (off == 0) {
		tcp_ring_write_at(rb, rb->len, data, len);
		rb->len += len;
		s->rcv_nxt += len;
		if (ooo->n) {
			bool filled = false;
			while (ooo->n && seq_le(ooo->r[0].start, s->rcv_nxt)) {
				if (seq_gt(ooo->r[0].end, s->rcv_nxt)) {
					rb->len += ooo->r[0].end - s->rcv_nxt;
					s->rcv_nxt = ooo->r[0].end;
				}
				memmove(&ooo->r[0], &ooo->r[1], (ooo->n - 1) * sizeof(ooo->r[0]));
				ooo->n--;
				filled = true;
			}
			if (filled || ooo->n) {
				s->ack_now = true;              /* RFC 5681 4.2: ACK a gap fill at once */
				tcp_mark_dirty(s);
			}
		}
		if (s->ooo_fin && s->rcv_nxt == s->ooo_fin_seq)
			process_fin(s, now);
		schedule_ack(s, len, now);
		tcp_notify(s, true);
		return;
	}
	/* Out of order: keep it at its place, ACK at once with SACK (RFC 5681 4.2, RFC 2018). */
	s->ts->st->ooo_segs++;
	if (ranges_add(ooo, seq, seq + len)) {
		tcp_ring_write_at(rb, rb->len + off, data, len);
		tcp_ooo_note(s, seq);
	}
	s->ack_now = true;
	tcp_mark_dirty(s);
}

/* ---- ACK processing (3.10.7.4 fifth) ---- */

void tcp_enter_recovery(struct tcp_sock *s, uint64_t now)
{
	s->in_recovery = true;
	s->recoveries++;
	s->fast_retransmits++;
	s->ts->st->fast_retransmits++;
	uint32_t flight = s->snd_max - s->snd_una;
	s->recover = s->snd_max;
	s->ca->on_loss(&s->cc, flight, now);
	if (s->sack_ok) {
		s->cc.cwnd = s->cc.ssthresh;                    /* RFC 6675 5 (4.2) */
	} else {
		s->cc.cwnd = s->cc.ssthresh + 3 * s->mss;       /* RFC 6582 3.2 (3) */
	}
	s->high_rxt = s->snd_una;
	s->rxt_round = now;
	s->rtt_active = false;                               /* Karn */
	tcp_want_head_rexmit(s);
}

static void exit_recovery(struct tcp_sock *s, uint64_t now)
{
	s->in_recovery = false;
	s->dupacks = 0;
	s->ca->on_recovery_end(&s->cc, now);
	if (!s->sack_ok) {
		/* RFC 6582 3.2 (5), option 1: min(ssthresh, max(FlightSize, SMSS) + SMSS). */
		uint32_t flight = s->snd_max - s->snd_una;
		uint32_t alt = (flight > s->mss ? flight : s->mss) + s->mss;
		if (alt < s->cc.cwnd)
			s->cc.cwnd = alt;
	}
}

/* Returns false when the segment is to be dropped (or s is gone). */
static bool process_ack(struct tcp_sock *s, const struct tcp_seg *seg, uint64_t now)
{
	uint32_t ack = seg->ack;
	uint32_t old_wnd = s->snd_wnd;
	bool new_sack = false;
	uint32_t prior_flight = s->snd_max - s->snd_una;

	/* Window update (3.10.7.4): only from a newer segment. */
	if (seq_ge(ack, s->snd_una) &&
	    (seq_lt(s->snd_wl1, seg->seq) || (s->snd_wl1 == seg->seq && seq_le(s->snd_wl2, ack)))) {
		s->snd_wnd = (uint32_t)seg->wnd << s->snd_wscale;
		s->snd_wl1 = seg->seq;
		s->snd_wl2 = ack;
		if (s->snd_wnd > s->max_snd_wnd)
			s->max_snd_wnd = s->snd_wnd;
		if (s->snd_wnd > old_wnd) {
			if (s->persist && s->snd_wnd) {
				s->persist = false;
				s->probes_out = 0;
				tcp_timer_clear(s, T_PERSIST);
			}
			tcp_mark_dirty(s);
		}
	}

	if (seq_gt(ack, s->snd_una)) {
		uint32_t acked = ack - s->snd_una;
		uint32_t data_acked = 0;
		if (seq_gt(ack, s->sb_seq)) {
			data_acked = ack - s->sb_seq;
			if (data_acked > s->sndbuf.len)
				data_acked = s->sndbuf.len;
			tcp_ring_consume(&s->sndbuf, data_acked, 0);
			s->sb_seq += data_acked;
		}
		s->bytes_acked += data_acked;
		s->snd_una = ack;
		if (seq_lt(s->snd_nxt, ack))
			s->snd_nxt = ack;
		if (seq_lt(s->high_rxt, ack))
			s->high_rxt = ack;
		if (s->mem)
			ranges_trim_below(&s->mem->sacked, ack);
		/* RTT: one timed segment per flight (RFC 6298 3, Karn), or TSecr (RFC 7323 4) after
		 * a timeout, when retransmissions make the timed segment ambiguous. */
		if (s->rtt_active && seq_ge(ack, s->rtt_seq)) {
			tcp_rtt_sample(s, (uint32_t)(now - s->rtt_time));
			s->rtt_active = false;
		} else if (s->backoff && s->ts_ok && seg->has_ts && seq_ge(seg->tsecr, s->rto_tsval)) {
			/* Only an echo of a segment sent after the timeout measures anything. */
			uint32_t ms = tcp_ts_now(s, now) - seg->tsecr;
			if (ms < 60000)
				tcp_rtt_sample(s, ms ? ms * 1000 : 500);
		}
		s->retries = 0;
		s->probes_out = 0;
		s->tlp_sent = false;
		tcp_timer_clear(s, T_REORDER);                 /* progress: the PTO restarts below */
		new_sack = tcp_sack_update(s, seg);
		if (s->in_recovery) {
			if (seq_ge(ack, s->recover)) {
				exit_recovery(s, now);              /* full ACK */
			} else if (!s->sack_ok) {
				/* RFC 6582 3.2 (5) partial ACK: retransmit the next hole, deflate. */
				tcp_want_head_rexmit(s);
				s->cc.cwnd = s->cc.cwnd > acked ? s->cc.cwnd - acked : s->mss;
				if (acked >= s->mss)
					s->cc.cwnd += s->mss;
			}
		} else {
			s->dupacks = 0;
			uint32_t cw = s->cc.cwnd;
			bool limited = s->cc.cwnd < s->cc.ssthresh ? 2 * prior_flight >= cw
								   : prior_flight + s->mss >= cw;
			if (limited && data_acked)
				s->ca->on_ack(&s->cc, data_acked, s->srtt, now);
		}
		if (s->snd_una == s->snd_max)
			tcp_timer_clear(s, T_RTO);
		else if (!s->persist)
			tcp_timer_set(s, T_RTO, now + s->rto);    /* RFC 6298 5.3 */
		if (data_acked)
			tcp_notify(s, false);
		tcp_mark_dirty(s);
	} else if (ack == s->snd_una) {
		new_sack = tcp_sack_update(s, seg);
		bool flight = s->snd_nxt != s->snd_una && !s->persist;
		bool dup = flight && !(seg->flags & (TH_SYN | TH_FIN)) &&
			   (s->sack_ok ? new_sack : (seg->len == 0 && s->snd_wnd == old_wnd));
		if (dup) {
			if (s->dupacks < 255)
				s->dupacks++;
			if (!s->in_recovery) {
				bool lost = s->dupacks >= 3 || (s->sack_ok && tcp_sack_is_lost(s, s->snd_una));
				if (lost && seq_ge(s->snd_una, s->recover))
					tcp_enter_recovery(s, now);
				else if (s->dupacks == 3 && s->backoff &&
					 seq_gt(s->snd_nxt, s->snd_una + 3 * s->mss))
					/* Going back N after a timeout (RFC 6582 forbids a new fast
					 * retransmit below recover): three segments resent after
					 * snd_una arrived, it did not. Resend it, same loss episode. */
					tcp_want_head_rexmit(s);
			} else if (!s->sack_ok) {
				s->cc.cwnd += s->mss;                 /* RFC 6582 3.2 (4): inflate */
			}
			tcp_mark_dirty(s);                        /* limited transmit / recovery */
		}
	} else {
		tcp_sack_update(s, seg);                       /* old ACK: SACK info still counts */
	}
	if (s->in_recovery && s->sack_ok) {
		/* A lost retransmission (RFC 6675 has no answer but the RTO): when SACKs keep
		 * arriving a round trip after the holes were retransmitted, they are lost again.
		 * Rewind HighRxt once per round trip (the idea of RACK, RFC 8985, by rounds). */
		uint64_t round = (uint64_t)s->srtt + s->srtt / 4 + 2 * (uint64_t)s->rttvar;
		if (new_sack && seq_gt(s->high_rxt, s->snd_una) && now - s->rxt_round > round) {
			s->high_rxt = s->snd_una;
			s->rxt_round = now;
			tcp_mark_dirty(s);
		}
		tcp_sack_pipe(s);
	}
	tcp_arm_probe(s, now);
	return true;
}

/* ---- the synchronized states (3.10.7.4) ---- */

static void sync_input(struct tcp_sock *s, const struct tcp_seg *seg, uint64_t now)
{
	struct tcp_stack *ts = s->ts;
	uint8_t fl = seg->flags;
	uint32_t seg_len = seg->len + ((fl & TH_FIN) ? 1 : 0);

	/* Fourth (done first, "irrespective of the sequence number"): SYN. RFC 5961 4. */
	if (fl & TH_SYN) {
		if (s->state == TCPS_SYN_RECEIVED && !(fl & TH_ACK) && seg->seq == s->irs) {
			s->syn_pending = true;                 /* our SYN-ACK was lost */
			tcp_mark_dirty(s);
			return;
		}
		tcp_challenge_ack(s, now);
		return;
	}

	/* PAWS (RFC 7323 5.3), before the sequence check. */
	if (s->ts_ok && !(fl & TH_RST)) {
		if (!seg->has_ts)
			return;                                /* RFC 7323 3.2: SHOULD drop */
		bool valid = now - s->ts_recent_at < 24ull * 86400 * 1000000;
		if (valid && seq_lt(seg->tsval, s->ts_recent)) {
			ts->st->paws_drops++;
			s->ack_now = true;
			tcp_mark_dirty(s);
			return;
		}
	}

	/* TIME-WAIT: a retransmitted FIN is acknowledged and restarts 2MSL (3.10.7.4 eighth). */
	if (s->state == TCPS_TIME_WAIT && (fl & TH_FIN) && !(fl & TH_RST) &&
	    seg->seq + seg_len == s->rcv_nxt) {
		s->ack_now = true;
		tcp_mark_dirty(s);
		tcp_timer_set(s, T_CLOSE, now + ts->cfg.time_wait_us);
		return;
	}

	/* First: sequence number. */
	struct tcp_seg d = *seg;
	if (!seq_acceptable(s, seg->seq, seg_len)) {
		uint32_t wnd = seq_gt(s->rcv_adv, s->rcv_nxt) ? s->rcv_adv - s->rcv_nxt : 0;
		if (wnd == 0 && seg->seq == s->rcv_nxt && (fl & TH_ACK) && !(fl & TH_RST)) {
			/* Zero window: still take the ACK (RFC 9293 3.10.7.4 "special allowance"),
			 * and a bare FIN, which needs no buffer space (as Linux does). */
			if (d.len)
				d.flags &= (uint8_t)~TH_FIN;
			d.len = 0;
			s->ack_now = true;
			tcp_mark_dirty(s);
		} else {
			if (!(fl & TH_RST)) {
				/* A retransmission of data up to our last ACK (that ACK was lost): echo
				 * this copy's TSval, as Linux does (its rcv_wup rule). Echoing the first
				 * copy's (RFC 7323 4.3 read strictly) hands the sender an RTT sample that
				 * spans its whole backoff: RTO inflates, each loss then waits longer. */
				if (s->ts_ok && seg->has_ts && seg_len &&
				    seq_le(seg->seq, s->last_ack_sent) &&
				    seq_ge(seg->seq + seg_len, s->last_ack_sent) &&
				    seq_ge(seg->tsval, s->ts_recent)) {
					s->ts_recent = seg->tsval;
					s->ts_recent_at = now;
				}
				if (s->sack_ok && seg->len && seq_le(seg->seq + seg->len, s->rcv_nxt)) {
					s->dsack = true;           /* RFC 2883 */
					s->dsack_start = seg->seq;
					s->dsack_end = seg->seq + seg->len;
				}
				s->ack_now = true;
				tcp_mark_dirty(s);
			}
			return;
		}
	}
	s->last_recv = now;
	s->probes_out = 0;
	/* RFC 7323 4.3: remember the TSval to echo. */
	if (s->ts_ok && seg->has_ts && seq_le(seg->seq, s->last_ack_sent) &&
	    seq_ge(seg->tsval, s->ts_recent)) {
		s->ts_recent = seg->tsval;
		s->ts_recent_at = now;
	}

	/* Second: RST (RFC 5961 3.2: exact match resets, in-window gets a challenge ACK). */
	if (fl & TH_RST) {
		if (seg->seq != s->rcv_nxt) {
			tcp_challenge_ack(s, now);
			return;
		}
		ts->st->rst_in++;
		switch (s->state) {
		case TCPS_SYN_RECEIVED:
			tcp_done(s, s->passive ? 0 : ECONNREFUSED);   /* passive: back to LISTEN */
			return;
		case TCPS_ESTABLISHED:
		case TCPS_FIN_WAIT_1:
		case TCPS_FIN_WAIT_2:
		case TCPS_CLOSE_WAIT:
			tcp_done(s, ECONNRESET);
			return;
		default:
			tcp_done(s, 0);
			return;
		}
	}

	/* Fifth: ACK. */
	if (!(fl & TH_ACK))
		return;
	if (s->state == TCPS_SYN_RECEIVED) {
		if (!seq_gt(seg->ack, s->snd_una) || seq_gt(seg->ack, s->snd_max)) {
			tcp_reply_rst_sock(s, seg);
			return;
		}
		if (s->parent && s->parent->nacceptq >= s->parent->backlog) {
			ts->st->listen_drops++;                /* Linux: drop, SYN-ACK is retried */
			return;
		}
		s->snd_wnd = (uint32_t)seg->wnd << s->snd_wscale;
		s->max_snd_wnd = s->snd_wnd;
		s->snd_wl1 = seg->seq;
		s->snd_wl2 = seg->ack;
		bool fin_queued = s->fin_queued;
		established(s, now);
		if (s->parent)
			tcp_child_established(s);
		if (fin_queued)                            /* closed in SYN-RECEIVED */
			tcp_set_state(s, TCPS_FIN_WAIT_1);
	}
	if (s->state == TCPS_TIME_WAIT) {
		s->ack_now = d.len > 0;
		if (s->ack_now)
			tcp_mark_dirty(s);
		return;
	}
	if (seq_gt(seg->ack, s->snd_max)) {
		/* Acknowledges something not yet sent: ACK and drop (3.10.7.4, RFC 5961 5.2). */
		s->ack_now = true;
		tcp_mark_dirty(s);
		return;
	}
	uint32_t maxw = s->max_snd_wnd > 65535 ? s->max_snd_wnd : 65535;
	if (seq_lt(seg->ack, s->snd_una - maxw)) {
		tcp_challenge_ack(s, now);                     /* RFC 5961 5.2 */
		return;
	}
	if (!process_ack(s, &d, now))
		return;
	bool fin_acked = s->fin_queued && seq_gt(s->snd_una, s->fin_seq);
	switch (s->state) {
	case TCPS_FIN_WAIT_1:
		if (fin_acked) {
			tcp_set_state(s, TCPS_FIN_WAIT_2);
			if (!s->owned)
				tcp_timer_set(s, T_CLOSE, now + ts->cfg.time_wait_us);
		}
		break;
	case TCPS_CLOSING:
		if (fin_acked)
			tcp_enter_time_wait(s, now);
		return;
	case TCPS_LAST_ACK:
		if (fin_acked)
			tcp_done(s, 0);
		return;
	default:
		break;
	}

	/* Seventh: segment text. */
	if (d.len) {
		if (s->state == TCPS_ESTABLISHED || s->state == TCPS_FIN_WAIT_1 ||
		    s->state == TCPS_FIN_WAIT_2) {
			if (s->rst_on_data) {
				/* Data for a closed socket: nobody will read it (RFC 9293 3.10.4, Linux). */
				tcp_send_rst(s, now);
				tcp_done(s, ECONNRESET);
				return;
			}
			receive_data(s, &d, now);
		}
	}

	/* Eighth: FIN. */
	if ((d.flags & TH_FIN) && !s->fin_rcvd && s->state != TCPS_TIME_WAIT &&
	    s->state != TCPS_CLOSED) {
		uint32_t pos = d.seq + d.len;
		if (pos == s->rcv_nxt) {
			process_fin(s, now);
		} else if (seq_gt(pos, s->rcv_nxt)) {
			s->ooo_fin = true;
			s->ooo_fin_seq = pos;
		}
	}
}

/* RFC 6191 (and Linux): a new SYN may reuse a TIME-WAIT 4-tuple when it is provably new. */
static bool time_wait_accepts(const struct tcp_sock *s, const struct tcp_seg *seg)
{
	if (s->owned)
		return false;
	if (s->ts_ok && seg->has_ts)
		return seq_gt(seg->tsval, s->ts_recent);
	return seq_gt(seg->seq, s->rcv_nxt);
}

void tcp_process(struct tcp_stack *ts, const struct us_addr *src, const struct us_addr *dst,
		 const struct tcp_seg *seg, uint64_t now)
{
	struct us_endpoint l, r;
	memset(&l, 0, sizeof(l));
	memset(&r, 0, sizeof(r));
	l.addr = *dst;
	l.port = seg->dport;
	r.addr = *src;
	r.port = seg->sport;
	struct tcp_sock *s = tcp_lookup(ts, &l, &r);
	uint32_t iss_hint = 0;
	if (s && s->state == TCPS_TIME_WAIT && (seg->flags & (TH_SYN | TH_ACK | TH_RST)) == TH_SYN &&
	    time_wait_accepts(s, seg)) {
		iss_hint = s->snd_nxt + 65535 + 2;             /* Linux: past the old connection */
		if (!iss_hint)
			iss_hint = 1;
		tcp_done(s, 0);
		s = NULL;
	}
	if (!s) {
		struct tcp_sock *lst = tcp_lookup_listener(ts, &l);
		if (lst) {
			listen_input(lst, &l, &r, src, dst, seg, now, iss_hint);
			return;
		}
		ts->st->no_socket++;
		tcp_reply_rst(ts, src, dst, seg);              /* 3.10.7.1 CLOSED */
		return;
	}
	s->segs_in++;
	if (s->state == TCPS_SYN_SENT)
		syn_sent_input(s, src, dst, seg, now);
	else
		sync_input(s, seg, now);
}
