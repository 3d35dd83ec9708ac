/* tcp_check.c: the invariants of every socket and of the stack (tests and the fuzzer): each
 * check returns 0, or the line of the first one broken in this file. */
#include "tcp_int.h"

/* ---- invariants (tests and the fuzzer) ---- */

#define CHECK(c) do { if (!(c)) return __LINE__; } while (0)

int tcp_sock_check(const struct tcp_sock *s)
{
	CHECK(s->state <= TCPS_TIME_WAIT);
	CHECK(s->sndbuf.len <= s->sndbuf.cap && s->rcvbuf.len <= s->rcvbuf.cap);
	CHECK(s->sndbuf.cap == 0 || s->sndbuf.head < s->sndbuf.cap);
	CHECK(s->rcvbuf.cap == 0 || s->rcvbuf.head < s->rcvbuf.cap);
	if (s->state == TCPS_LISTEN || (s->state == TCPS_CLOSED && !s->hashed)) {
		return 0;
	}
	CHECK(!(s->ack_now || s->ack_soon) || s->dirty);      /* a due ACK is never forgotten */
	CHECK(!s->ack_held || s->ack_soon);
	CHECK(seq_le(s->snd_una, s->snd_nxt));
	CHECK(seq_le(s->snd_nxt, s->snd_max));
	uint32_t d = s->snd_una - s->sb_seq;       /* 0; -1 while the SYN is unacked; 1 once the FIN is */
	CHECK(d == 0 || d == UINT32_MAX || (d == 1 && s->fin_queued && !s->sndbuf.len));
	if (s->sndbuf.buf) {
		uint32_t end = s->sb_seq + s->sndbuf.len + (s->fin_queued ? 1 : 0);
		CHECK(seq_le(s->snd_max, end));
		if (s->fin_queued)
			CHECK(s->fin_seq == s->sb_seq + s->sndbuf.len);
	}
	CHECK(seq_le(s->rcv_nxt, s->rcv_adv) || s->state == TCPS_TIME_WAIT || s->fin_rcvd ||
	      s->state == TCPS_SYN_SENT);
	if (s->mem) {
		const struct tcp_ranges *o = &s->mem->ooo;
		CHECK(o->n <= TCP_MAX_RANGES);
		for (uint32_t i = 0; i < o->n; i++) {
			CHECK(seq_lt(o->r[i].start, o->r[i].end));
			CHECK(seq_gt(o->r[i].start, s->rcv_nxt));
			CHECK(i == 0 || seq_gt(o->r[i].start, o->r[i - 1].end));
			CHECK(o->r[i].end - s->rcv_nxt <= s->rcvbuf.cap - s->rcvbuf.len);
		}
		const struct tcp_ranges *k = &s->mem->sacked;
		CHECK(k->n <= TCP_MAX_RANGES);
		for (uint32_t i = 0; i < k->n; i++) {
			CHECK(seq_lt(k->r[i].start, k->r[i].end));
			CHECK(seq_gt(k->r[i].start, s->snd_una) || k->r[i].start == s->snd_una);
			CHECK(seq_le(k->r[i].end, s->snd_max));
			CHECK(i == 0 || seq_gt(k->r[i].start, k->r[i - 1].end));
		}
	}
	uint64_t earliest = 0;
	for (int i = 0; i < T_NUM; i++)
		if (s->deadline[i] && (!earliest || s->deadline[i] < earliest))
			earliest = s->deadline[i];
	if (earliest)
		CHECK(tw_pending(&s->timer) && s->timer.expires <= earliest);
	if (s->state == TCPS_TIME_WAIT)
		CHECK(s->deadline[T_CLOSE]);
	return 0;
}

int tcp_check_invariants(const struct tcp_stack *ts)
{
	uint32_t n = 0, l = 0;
	for (uint32_t i = 0; i <= ts->cmask; i++)
		for (const struct tcp_sock *s = ts->ctab[i]; s; s = s->hnext) {
			CHECK(s->hashed && s->state != TCPS_LISTEN && (s->hash & ts->cmask) == i);
			int r = tcp_sock_check(s);
			if (r)
				return r;
			n++;
		}
	for (uint32_t i = 0; i <= ts->lmask; i++)
		for (const struct tcp_sock *s = ts->ltab[i]; s; s = s->hnext) {
			CHECK(s->state == TCPS_LISTEN);
			CHECK(s->nsynq <= s->backlog && s->nacceptq <= s->backlog);
			l++;
		}
	CHECK(n == ts->nconn && l == ts->nlisten);
	CHECK(ts->st->conns == ts->nconn && ts->st->listeners == ts->nlisten && ts->st->time_wait == ts->ntw);
	return 0;
}
