/* tcp_timer.c: per-connection timers on the stack's wheel, RTO estimation (RFC 6298) and what
 * each timer does: retransmission (RFC 6298 5, RFC 5681 3.1), persist (RFC 9293 3.8.6.1),
 * delayed ACK (RFC 9293 3.8.6.3), keepalive (RFC 9293 3.8.4), TIME-WAIT and orphaned FIN-WAIT-2.
 *
 * A connection has one wheel entry at its earliest deadline. Pushing a deadline later (the RTO
 * restarted on every ACK) does not touch the wheel: the entry fires early, finds nothing due and
 * is filed again at the real earliest deadline.
 */
#include <errno.h>
#ifdef TCP_DEBUG
#include <stdio.h>
#endif

#include "tcp_int.h"

static void rearm(struct tcp_sock *s)
{
	uint64_t earliest = 0;
	for (int i = 0; i < T_NUM; i++)
		if (s->deadline[i] && (!earliest || s->deadline[i] < earliest))
			earliest = s->deadline[i];
	if (!earliest)
		return;
	if (!tw_pending(&s->timer) || s->timer.expires > earliest)
		tw_add(&s->ts->wheel, &s->timer, earliest);
}

void tcp_timer_set(struct tcp_sock *s, int which, uint64_t when)
{
	s->deadline[which] = when ? when : 1;
	if (!tw_pending(&s->timer) || s->timer.expires > s->deadline[which])
		tw_add(&s->ts->wheel, &s->timer, s->deadline[which]);
}

void tcp_timer_clear(struct tcp_sock *s, int which)
{
	s->deadline[which] = 0;
}

void tcp_rearm_rto(struct tcp_sock *s, uint64_t now)
{
	if (s->snd_una != s->snd_max && !s->persist)
		tcp_timer_set(s, T_RTO, now + s->rto);
	else
		tcp_timer_clear(s, T_RTO);
}

/* RFC 6298 2: SRTT, RTTVAR, RTO = SRTT + max(G, 4 RTTVAR), clamped to [min, max]. */
void tcp_rtt_sample(struct tcp_sock *s, uint32_t r)
{
	const struct tcp_config *c = &s->ts->cfg;
	if (r == 0)
		r = 1;
	if (r < s->min_rtt)
		s->min_rtt = r;
	if (!s->srtt) {
		s->srtt = r;
		s->rttvar = r / 2;
	} else {
		uint32_t d = s->srtt > r ? s->srtt - r : r - s->srtt;
		s->rttvar = (uint32_t)(((uint64_t)3 * s->rttvar + d) / 4);
		s->srtt = (uint32_t)(((uint64_t)7 * s->srtt + r) / 8);
	}
	uint64_t k = (uint64_t)4 * s->rttvar;
	uint64_t rto = s->srtt + (k > 1000 ? k : 1000);      /* G: 1 ms */
	if (rto < c->rto_min_us)
		rto = c->rto_min_us;
	if (rto > c->rto_max_us)
		rto = c->rto_max_us;
	s->rto = (uint32_t)rto;
	s->backoff = 0;
}

static void backoff_rto(struct tcp_sock *s)
{
	uint64_t rto = (uint64_t)s->rto * 2;                  /* RFC 6298 5.5 */
	if (rto > s->ts->cfg.rto_max_us)
		rto = s->ts->cfg.rto_max_us;
	s->rto = (uint32_t)rto;
	if (s->backoff < 255)
		s->backoff++;
}

/* Returns false when the socket is gone or closed. */
static bool on_rto(struct tcp_sock *s, uint64_t now)
{
	struct tcp_stack *ts = s->ts;
	const struct tcp_config *c = &ts->cfg;
	if (s->state == TCPS_SYN_SENT || s->state == TCPS_SYN_RECEIVED) {
		uint32_t limit = s->state == TCPS_SYN_SENT ? c->syn_retries : c->synack_retries;
		if (s->retries >= limit) {
			tcp_done(s, ETIMEDOUT);
			return false;
		}
		s->retries++;
		s->timeouts++;
		ts->st->timeouts++;
		backoff_rto(s);
		s->syn_pending = true;
		tcp_mark_dirty(s);
		return true;
	}
	if (s->snd_una == s->snd_max || s->persist)
		return true;
	if (s->retries >= c->retries) {
		tcp_done(s, ETIMEDOUT);
		return false;
	}
#ifdef TCP_DEBUG
	fprintf(stderr, "%.6f RTO %s una=%u nxt=+%u max=+%u hrxt=+%u rec=%d cwnd=%u pipe=%u sacked=%u/%u rto=%u backoff=%u\n",
		now / 1e6, tcp_state_name(s->state), s->snd_una, s->snd_nxt - s->snd_una, s->snd_max - s->snd_una,
		s->high_rxt - s->snd_una, s->in_recovery, s->cc.cwnd, s->pipe,
		s->mem ? s->mem->sacked.n : 0, s->mem ? ranges_bytes(&s->mem->sacked) : 0, s->rto, s->backoff);
#endif
	s->retries++;
	s->timeouts++;
	ts->st->timeouts++;
	s->rto_tsval = tcp_ts_now(s, now);
	tcp_timer_clear(s, T_REORDER);
	uint32_t flight = s->snd_max - s->snd_una;
	/* RFC 5681 3.1: ssthresh only on the first timeout of a series; cwnd = loss window. */
	if (!s->backoff)
		s->ca->on_rto(&s->cc, flight, now);
	s->cc.cwnd = s->mss;
	s->in_recovery = false;
	s->dupacks = 0;
	s->recover = s->snd_max;                          /* RFC 6582 3.2 (2) */
	s->high_rxt = s->snd_una;
	s->rxt_head = false;
	s->rtt_active = false;
	/* A second timeout in a row: the receiver may have reneged on SACKed data
	 * (RFC 6675 5.1, RFC 2018 8): forget the scoreboard. */
	if (s->backoff && s->mem)
		s->mem->sacked.n = 0;
	s->snd_nxt = s->snd_una;                          /* go back N, skipping SACKed data */
	backoff_rto(s);
	tcp_mark_dirty(s);
	return true;
}

static bool on_persist(struct tcp_sock *s, uint64_t now)
{
	(void)now;
	if (!s->persist)
		return true;
	if (s->probes_out >= s->ts->cfg.retries) {        /* no ACK at all for that long */
		tcp_done(s, ETIMEDOUT);
		return false;
	}
	s->probes_out++;
	s->force_probe = true;
	tcp_mark_dirty(s);
	return true;
}

static bool on_keepalive(struct tcp_sock *s, uint64_t now)
{
	if (!s->keepalive || (s->state != TCPS_ESTABLISHED && s->state != TCPS_CLOSE_WAIT &&
			      s->state != TCPS_FIN_WAIT_2))
		return true;
	uint64_t idle = (uint64_t)s->keepidle * 1000000;
	if (s->snd_una != s->snd_max || s->sndbuf.len) {
		/* Data outstanding: the retransmission timer watches the peer. */
		tcp_timer_set(s, T_KEEPALIVE, now + idle);
		return true;
	}
	if (now - s->last_recv < idle && !s->probes_out) {
		tcp_timer_set(s, T_KEEPALIVE, s->last_recv + idle);
		return true;
	}
	if (s->probes_out >= s->keepcnt) {
		tcp_send_rst(s, now);                           /* Linux resets the peer too */
		tcp_done(s, ETIMEDOUT);
		return false;
	}
	tcp_send_probe(s, now);
	s->probes_out++;
	s->kap++;
	tcp_timer_set(s, T_KEEPALIVE, now + (uint64_t)s->keepintvl * 1000000);
	return true;
}

/* The probe timer (T_REORDER), a small RACK-TLP (RFC 8985) without per-segment send times:
 * armed while data is outstanding, it fires when snd_una has not moved for about two round
 * trips (PTO). Then, if data above snd_una is SACKed and we are not in recovery, too few
 * duplicate ACKs came back (small window, ACK loss): enter recovery now (RFC 5827 early
 * retransmit, with a delay). In recovery: the retransmissions were lost; send the holes again.
 * Nothing SACKed: a tail loss probe, the last segment sent again, whose ACK or SACK tells what
 * happened. All much cheaper than the RTO, which is at least 200 ms. */
static uint64_t pto(const struct tcp_sock *s)
{
	uint64_t t = 2 * (uint64_t)s->srtt;
	if (s->snd_max - s->snd_una <= s->mss)
		t += s->ts->cfg.delack_us;            /* a lone segment's ACK may be delayed */
	return t > 1000 ? t : 1000;
}

void tcp_arm_probe(struct tcp_sock *s, uint64_t now)
{
	if (s->deadline[T_REORDER] || !s->srtt || s->snd_una == s->snd_max || s->persist)
		return;
	s->er_una = s->snd_una;
	tcp_timer_set(s, T_REORDER, now + pto(s));
}

static bool on_reorder(struct tcp_sock *s, uint64_t now)
{
	if (!s->mem || s->snd_una == s->snd_max || s->persist || s->state < TCPS_ESTABLISHED)
		return true;
	if (s->snd_una != s->er_una) {
		tcp_arm_probe(s, now);
		return true;
	}
	if (s->mem->sacked.n) {
		if (!s->in_recovery) {
			if (seq_ge(s->snd_una, s->recover))
				tcp_enter_recovery(s, now);
		} else if (s->sack_ok) {
			s->high_rxt = s->snd_una;
			s->rxt_round = now;
			tcp_want_head_rexmit(s);
			tcp_sack_pipe(s);
		}
	} else if (!s->tlp_sent) {
		s->tlp_sent = true;
		s->tlp_probe = true;
	} else {
		return true;                          /* one probe; then the RTO decides */
	}
	tcp_mark_dirty(s);
	s->er_una = s->snd_una;
	tcp_timer_set(s, T_REORDER, now + 2 * pto(s));
	return true;
}

static bool on_close(struct tcp_sock *s, uint64_t now)
{
	if (s->state == TCPS_FIN_WAIT_2)
		tcp_send_rst(s, now);                           /* orphan timed out (Linux) */
	tcp_done(s, 0);
	return false;
}

void tcp_timer_fire(struct tcp_sock *s, uint64_t now)
{
	static bool (*const handlers[T_NUM])(struct tcp_sock *, uint64_t) = {
		[T_RTO] = on_rto, [T_PERSIST] = on_persist, [T_KEEPALIVE] = on_keepalive,
		[T_CLOSE] = on_close, [T_REORDER] = on_reorder,
	};
	for (int i = 0; i < T_NUM; i++) {
		if (!s->deadline[i] || s->deadline[i] > now)
			continue;
		s->deadline[i] = 0;
		if (i == T_DELACK) {
			s->ack_now = true;
			tcp_mark_dirty(s);
			continue;
		}
		if (!handlers[i](s, now))
			return;                                 /* closed: s may be freed */
	}
	rearm(s);
}

void tcp_timers(struct tcp_stack *ts, uint64_t now)
{
	tcp_touch(ts, now);
	struct tw_timer *t;
	while ((t = tw_expire(&ts->wheel, now)) != NULL)
		tcp_timer_fire(container_of(t, struct tcp_sock, timer), now);
	tcp_flush(ts, now);
}
