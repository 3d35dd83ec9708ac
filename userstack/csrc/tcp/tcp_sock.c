/* tcp_sock.c: the socket life cycle and the socket calls of tcp.h (RFC 9293 3.10.1-3.10.6:
 * OPEN, SEND, RECEIVE, CLOSE, ABORT), options and state. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tcp_int.h"

/* ---- socket life cycle ---- */

struct tcp_sock *tcp_sock_alloc(struct tcp_stack *ts)
{
	struct tcp_sock *s = tcp_obj_get(ts->sock_cache, &ts->nsock_cache, sizeof(*s));
	if (!s)
		return NULL;
	s->ts = ts;
	s->state = TCPS_CLOSED;
	list_init(&s->synq);
	list_init(&s->acceptq);
	s->sndbuf_size = ts->cfg.sndbuf;
	s->rcvbuf_size = ts->cfg.rcvbuf;
	s->keepidle = ts->cfg.keepidle_s;
	s->keepintvl = ts->cfg.keepintvl_s;
	s->keepcnt = (uint8_t)(ts->cfg.keepcnt > 255 ? 255 : ts->cfg.keepcnt);
	s->cc_algo = ts->cfg.cc;
	s->ca = cc_by_id(s->cc_algo);
	if (!s->ca) {
		s->cc_algo = TCP_CC_CUBIC;
		s->ca = &cc_cubic;
	}
	s->rto = ts->cfg.rto_init_us;
	return s;
}

int tcp_conn_setup(struct tcp_sock *s)
{
	s->sndbuf.buf = tcp_buf_get(s->ts, s->sndbuf_size);
	s->sndbuf.cap = s->sndbuf_size;
	s->rcvbuf.buf = tcp_buf_get(s->ts, s->rcvbuf_size);
	s->rcvbuf.cap = s->rcvbuf_size;
	s->mem = tcp_obj_get(s->ts->mem_cache, &s->ts->nmem_cache, sizeof(*s->mem));
	if (!s->sndbuf.buf || !s->rcvbuf.buf || !s->mem) {
		tcp_free_sock_mem(s);
		return -ENOMEM;
	}
	s->sndbuf.head = s->sndbuf.len = s->rcvbuf.head = s->rcvbuf.len = 0;
	/* RFC 7323 2.3: the smallest shift that lets the window cover the buffer. */
	s->rcv_wscale = 0;
	if (s->ts->cfg.wscale)
		while (s->rcv_wscale < TCP_MAX_WSCALE && (s->rcvbuf_size >> s->rcv_wscale) > 65535)
			s->rcv_wscale++;
	uint32_t ipov = s->local.addr.family == US_AF6 ? 60 : 40;
	s->adv_mss = s->ts->cfg.mtu - ipov;
	if (s->mss_clamp && s->mss_clamp < s->adv_mss)
		s->adv_mss = s->mss_clamp;
	s->peer_mss = s->local.addr.family == US_AF6 ? 1220 : 536;   /* RFC 9293 3.7.1, RFC 8200 */
	s->rcv_mss = 536;
	s->quickack = s->ts->cfg.quickack;
	s->srtt = 0;
	s->rttvar = 0;
	s->min_rtt = UINT32_MAX;
	s->rto = s->ts->cfg.rto_init_us;
	s->ts_offset = tcp_ts_offset(s->ts, &s->local, &s->remote);
	tcp_update_mss(s);
	return 0;
}

bool tcp_synchronized(const struct tcp_sock *s)
{
	return s->state >= TCPS_SYN_RECEIVED;
}

void tcp_set_state(struct tcp_sock *s, int st)
{
	struct tcp_stack *ts = s->ts;
	if (s->state == TCPS_TIME_WAIT && s->in_tw_count) {
		ts->ntw--;
		s->in_tw_count = false;
		tcp_gauges(ts);
	}
	s->state = (uint8_t)st;
	tcp_notify(s, false);
}

void tcp_mark_dirty(struct tcp_sock *s)
{
	if (!s->dirty) {
		s->dirty = true;
		list_add_tail(&s->ts->dirty, &s->dirty_node);
	}
}

void tcp_notify(struct tcp_sock *s, bool edge)
{
	if (s->parent && s->state == TCPS_ESTABLISHED)
		return;                        /* in an accept queue: the listener speaks for it */
	if (!s->owned)
		return;
	s->ev_edge |= edge;
	if (!s->ev_queued) {
		s->ev_queued = true;
		list_add_tail(&s->ts->evq, &s->ev_node);
	}
}

void tcp_dispatch_events(struct tcp_stack *ts)
{
	while (!list_empty(&ts->evq)) {
		struct tcp_sock *s = container_of(ts->evq.next, struct tcp_sock, ev_node);
		list_del(&s->ev_node);
		s->ev_queued = false;
		if (!s->owned)
			continue;
		unsigned ev = tcp_events(s);
		if (ev == s->ev_last && !s->ev_edge)
			continue;
		s->ev_last = ev;
		s->ev_edge = false;
		if (ts->hooks.on_event)
			ts->hooks.on_event(ts->ctx, s, ev);   /* may close s: touch nothing after */
	}
}

void tcp_destroy(struct tcp_sock *s)
{
	struct tcp_stack *ts = s->ts;
	if (s->state == TCPS_LISTEN) {
		while (!list_empty(&s->synq))
			tcp_destroy(container_of(s->synq.next, struct tcp_sock, q_node));
		while (!list_empty(&s->acceptq))
			tcp_destroy(container_of(s->acceptq.next, struct tcp_sock, q_node));
	}
	if (s->parent) {
		if (s->state == TCPS_SYN_RECEIVED)
			s->parent->nsynq--;
		else
			s->parent->nacceptq--;
		list_del(&s->q_node);
		s->parent = NULL;
	}
	tcp_unhash(s);
	if (s->in_tw_count) {
		ts->ntw--;
		s->in_tw_count = false;
		tcp_gauges(ts);
	}
	list_del(&s->dirty_node);
	list_del(&s->ev_node);
	tw_del(&ts->wheel, &s->timer);
	if (s->ephemeral && ts->hooks.release_port)
		ts->hooks.release_port(ts->ctx, &s->local);
	if (ts->last == s)
		ts->last = NULL;
	tcp_free_sock_mem(s);
	tcp_sock_put(ts, s);
}

static void clear_timers(struct tcp_sock *s)
{
	for (int i = 0; i < T_NUM; i++)
		s->deadline[i] = 0;
	tw_del(&s->ts->wheel, &s->timer);
}

void tcp_done(struct tcp_sock *s, int err)
{
	if (err) {
		s->err = err;
		if (s->state >= TCPS_ESTABLISHED && s->state != TCPS_TIME_WAIT)
			s->ts->st->established_resets++;
	}
	clear_timers(s);
	tcp_unhash(s);
	list_del(&s->dirty_node);
	s->dirty = false;
	if (s->parent || !s->owned) {
		tcp_destroy(s);
		return;
	}
	tcp_set_state(s, TCPS_CLOSED);
	tcp_notify(s, true);
}

void tcp_enter_time_wait(struct tcp_sock *s, uint64_t now)
{
	struct tcp_stack *ts = s->ts;
	clear_timers(s);
	/* Over max_time_wait: no TIME_WAIT (Linux's behaviour), the socket goes at the next
	 * tcp_timers. Not here: callers still hold s. */
	uint64_t until = ts->ntw >= ts->cfg.max_time_wait ? now : now + ts->cfg.time_wait_us;
	tcp_set_state(s, TCPS_TIME_WAIT);
	ts->ntw++;
	tcp_gauges(ts);
	s->in_tw_count = true;
	/* Keep only what TIME_WAIT needs: the sequence numbers. Unread data stays readable. */
	tcp_buf_put(ts, s->sndbuf.buf, s->sndbuf.cap);
	s->sndbuf.buf = NULL;
	s->sndbuf.cap = s->sndbuf.len = 0;
	tcp_mem_put(ts, s->mem);
	s->mem = NULL;
	if (!s->owned || !s->rcvbuf.len) {
		tcp_buf_put(ts, s->rcvbuf.buf, s->rcvbuf.cap);
		s->rcvbuf.buf = NULL;
		s->rcvbuf.cap = s->rcvbuf.len = 0;
	}
	s->in_recovery = false;
	s->persist = false;
	tcp_timer_set(s, T_CLOSE, until);
}

/* A passive connection completed its handshake: to the accept queue. */
void tcp_child_established(struct tcp_sock *s)
{
	struct tcp_sock *l = s->parent;
	list_del(&s->q_node);
	l->nsynq--;
	list_add_tail(&l->acceptq, &s->q_node);
	l->nacceptq++;
	tcp_notify(l, true);
}

/* ---- socket calls ---- */

struct tcp_sock *tcp_socket(struct tcp_stack *ts)
{
	struct tcp_sock *s = tcp_sock_alloc(ts);
	if (s)
		s->owned = true;
	return s;
}

void tcp_sock_set_user(struct tcp_sock *s, void *user) { s->user = user; }
void *tcp_sock_user(const struct tcp_sock *s) { return s->user; }
int tcp_sock_state(const struct tcp_sock *s) { return s->state; }

int tcp_sock_local(const struct tcp_sock *s, struct us_endpoint *out)
{
	*out = s->local;
	return 0;
}

int tcp_sock_remote(const struct tcp_sock *s, struct us_endpoint *out)
{
	if (s->state == TCPS_LISTEN || (!s->remote.port && s->state == TCPS_CLOSED))
		return -ENOTCONN;
	*out = s->remote;
	return 0;
}

static bool used_before(const struct tcp_sock *s)
{
	return s->remote.port != 0 || s->local.port != 0;
}

int tcp_listen(struct tcp_sock *s, const struct us_endpoint *local, int backlog)
{
	if (s->state == TCPS_LISTEN) {            /* listen() again: only the backlog changes */
		s->backlog = backlog > 0 ? (uint32_t)backlog : s->ts->cfg.backlog;
		return 0;
	}
	if (s->state != TCPS_CLOSED || used_before(s))
		return -EINVAL;
	if (!local || !local->port || (local->addr.family != 0 && local->addr.family != US_AF4 &&
					local->addr.family != US_AF6))
		return -EINVAL;
	struct tcp_stack *ts = s->ts;
	for (struct tcp_sock *o = ts->ltab[tcp_listen_hash(ts, local->port)]; o; o = o->hnext)
		if (tcp_ep_eq(&o->local, local))
			return -EADDRINUSE;
	s->local = *local;
	s->backlog = backlog > 0 ? (uint32_t)backlog : ts->cfg.backlog;
	s->state = TCPS_LISTEN;
	tcp_hash_insert(s);
	return 0;
}

struct tcp_sock *tcp_accept(struct tcp_sock *l, int *err)
{
	if (l->state != TCPS_LISTEN) {
		if (err)
			*err = -EINVAL;
		return NULL;
	}
	if (list_empty(&l->acceptq)) {
		if (err)
			*err = -EAGAIN;
		return NULL;
	}
	struct tcp_sock *s = container_of(l->acceptq.next, struct tcp_sock, q_node);
	list_del(&s->q_node);
	l->nacceptq--;
	s->parent = NULL;
	s->owned = true;
	s->ev_last = 0;
	tcp_notify(s, true);       /* data or a FIN may already be waiting */
	if (err)
		*err = 0;
	return s;
}

int tcp_connect(struct tcp_sock *s, const struct us_endpoint *remote,
		const struct us_endpoint *local, uint64_t now)
{
	struct tcp_stack *ts = s->ts;
	if (s->state == TCPS_SYN_SENT)
		return -EALREADY;
	if (s->state != TCPS_CLOSED)
		return -EISCONN;
	if (used_before(s))
		return -EISCONN;
	if (!remote || !remote->port || (remote->addr.family != US_AF4 && remote->addr.family != US_AF6))
		return -EINVAL;
	struct us_endpoint l;
	bool eph = false;
	if (!local || !local->port) {
		if (!ts->hooks.bind_ephemeral)
			return -EADDRNOTAVAIL;
		memset(&l, 0, sizeof(l));
		int r = ts->hooks.bind_ephemeral(ts->ctx, remote, &l);
		if (r < 0)
			return r;
		eph = true;
	} else {
		l = *local;
	}
	if (l.addr.family != remote->addr.family || us_addr_is_any(&l.addr) || !l.port) {
		if (eph && ts->hooks.release_port)
			ts->hooks.release_port(ts->ctx, &l);
		return -EINVAL;
	}
	if (tcp_lookup(ts, &l, remote)) {
		if (eph && ts->hooks.release_port)
			ts->hooks.release_port(ts->ctx, &l);
		return -EADDRINUSE;
	}
	s->local = l;
	s->remote = *remote;
	if (tcp_conn_setup(s) < 0) {
		if (eph && ts->hooks.release_port)
			ts->hooks.release_port(ts->ctx, &l);
		memset(&s->local, 0, sizeof(s->local));
		memset(&s->remote, 0, sizeof(s->remote));
		return -ENOMEM;
	}
	s->ephemeral = eph;
	tcp_touch(ts, now);
	s->iss = tcp_isn(ts, &s->local, &s->remote, now);
	s->snd_una = s->snd_nxt = s->snd_max = s->iss;
	s->sb_seq = s->iss + 1;
	s->high_rxt = s->recover = s->snd_sml = s->iss;
	s->snd_wnd = 0;
	s->ca->init(&s->cc, s->mss, 0);
	s->state = TCPS_SYN_SENT;
	s->syn_pending = true;
	s->last_recv = now;
	tcp_hash_insert(s);
	tcp_mark_dirty(s);
	ts->st->active_opens++;
	return 0;
}

/* Initial window of RFC 6928: min(10 * MSS, max(2 * MSS, 14600)) for init_cwnd = 10. */
uint32_t tcp_initial_cwnd(const struct tcp_sock *s)
{
	uint32_t n = s->ts->cfg.init_cwnd;
	if (n == 10) {
		uint32_t a = 10 * s->mss, b = 2 * s->mss > 14600 ? 2 * s->mss : 14600;
		return a < b ? a : b;
	}
	return n * s->mss;
}

static int take_error(struct tcp_sock *s)
{
	int e = s->err;
	s->err = 0;
	return -e;
}

ssize_t tcp_send(struct tcp_sock *s, const void *buf, size_t len)
{
	if (s->err)
		return take_error(s);
	if (s->fin_queued)
		return -EPIPE;
	switch (s->state) {
	case TCPS_ESTABLISHED:
	case TCPS_CLOSE_WAIT:
		break;
	case TCPS_SYN_SENT:
	case TCPS_SYN_RECEIVED:
		return -EAGAIN;
	case TCPS_CLOSED:
		return used_before(s) ? -EPIPE : -ENOTCONN;
	case TCPS_LISTEN:
		return -ENOTCONN;
	default:
		return -EPIPE;
	}
	if (len > UINT32_MAX)
		len = UINT32_MAX;
	uint32_t n = tcp_ring_append(&s->sndbuf, buf, (uint32_t)len);
	if (!n)
		return len ? -EAGAIN : 0;
	tcp_mark_dirty(s);
	return n;
}

/* After the application read: open the window if it grew enough to be worth an ACK (the
 * peer's usable window at least doubled, by at least a segment: Linux's rule). */
static void maybe_window_update(struct tcp_sock *s)
{
	if (s->state != TCPS_ESTABLISHED && s->state != TCPS_FIN_WAIT_1 && s->state != TCPS_FIN_WAIT_2)
		return;
	uint32_t old = seq_gt(s->rcv_adv, s->rcv_nxt) ? s->rcv_adv - s->rcv_nxt : 0;
	uint32_t now = tcp_rcv_window(s);
	if (now >= 2 * old && now - old >= s->rcv_mss) {
		s->ack_now = true;
		tcp_mark_dirty(s);
	}
}

size_t tcp_recv_peek(struct tcp_sock *s, const uint8_t **p1, size_t *l1, const uint8_t **p2, size_t *l2)
{
	const uint8_t *a, *b;
	uint32_t la = 0, lb = 0;
	if (s->rcvbuf.buf && !s->rd_shut)
		tcp_ring_peek(&s->rcvbuf, 0, s->rcvbuf.len, &a, &la, &b, &lb);
	else
		a = b = NULL;
	*p1 = a; *l1 = la; *p2 = b; *l2 = lb;
	return (size_t)la + lb;
}

static bool has_ooo(const struct tcp_sock *s)
{
	return s->mem && s->mem->ooo.n;
}

void tcp_recv_consume(struct tcp_sock *s, size_t n)
{
	if (!s->rcvbuf.buf)
		return;
	if (n > s->rcvbuf.len)
		n = s->rcvbuf.len;
	tcp_ring_consume(&s->rcvbuf, (uint32_t)n, has_ooo(s));
	maybe_window_update(s);
}

ssize_t tcp_recv(struct tcp_sock *s, void *buf, size_t len)
{
	if (s->state == TCPS_LISTEN)
		return -ENOTCONN;
	if (s->rcvbuf.len && !s->rd_shut) {
		const uint8_t *p1, *p2;
		uint32_t l1, l2;
		if (len > UINT32_MAX)
			len = UINT32_MAX;
		tcp_ring_peek(&s->rcvbuf, 0, (uint32_t)len, &p1, &l1, &p2, &l2);
		memcpy(buf, p1, l1);
		if (l2)
			memcpy((uint8_t *)buf + l1, p2, l2);
		tcp_recv_consume(s, (size_t)l1 + l2);
		return (ssize_t)l1 + l2;
	}
	if (s->err)
		return take_error(s);
	if (s->fin_rcvd || s->rd_shut)
		return 0;
	switch (s->state) {
	case TCPS_CLOSED:
		return used_before(s) ? 0 : -ENOTCONN;
	case TCPS_SYN_SENT:
	case TCPS_SYN_RECEIVED:
	case TCPS_ESTABLISHED:
	case TCPS_FIN_WAIT_1:
	case TCPS_FIN_WAIT_2:
		return -EAGAIN;
	default:
		return 0;
	}
}

size_t tcp_send_space(const struct tcp_sock *s)
{
	return s->sndbuf.buf ? tcp_ring_free(&s->sndbuf) : 0;
}

size_t tcp_recv_avail(const struct tcp_sock *s)
{
	return s->rd_shut ? 0 : s->rcvbuf.len;
}

static void queue_fin(struct tcp_sock *s)
{
	if (s->fin_queued)
		return;
	s->fin_queued = true;
	s->fin_seq = s->sb_seq + s->sndbuf.len;
	if (s->state == TCPS_ESTABLISHED)        /* SYN-RECEIVED: after the handshake */
		tcp_set_state(s, TCPS_FIN_WAIT_1);
	else if (s->state == TCPS_CLOSE_WAIT)
		tcp_set_state(s, TCPS_LAST_ACK);
	tcp_mark_dirty(s);
}

int tcp_shutdown(struct tcp_sock *s, int how)
{
	if (how < TCP_SHUT_RD || how > TCP_SHUT_RDWR)
		return -EINVAL;
	if (s->state == TCPS_LISTEN || s->state == TCPS_CLOSED || s->state == TCPS_SYN_SENT)
		return -ENOTCONN;
	if (how != TCP_SHUT_WR) {
		s->rd_shut = true;
		if (s->mem)
			s->mem->ooo.n = 0;                  /* from now on only in-order data counts */
		if (s->rcvbuf.buf)
			tcp_ring_consume(&s->rcvbuf, s->rcvbuf.len, 0);
		tcp_notify(s, false);
	}
	if (how != TCP_SHUT_RD)
		queue_fin(s);
	return 0;
}

static void close_listener(struct tcp_sock *s, uint64_t now)
{
	/* Children never accepted are reset (Linux: inet_csk_listen_stop). */
	struct tcp_list *qs[2] = { &s->synq, &s->acceptq };
	for (int q = 0; q < 2; q++) {
		while (!list_empty(qs[q])) {
			struct tcp_sock *c = container_of(qs[q]->next, struct tcp_sock, q_node);
			tcp_send_rst(c, now);
			tcp_destroy(c);
		}
	}
	tcp_destroy(s);
}

void tcp_close(struct tcp_sock *s)
{
	struct tcp_stack *ts = s->ts;
	s->owned = false;
	list_del(&s->ev_node);
	s->ev_queued = false;
	switch (s->state) {
	case TCPS_LISTEN:
		close_listener(s, ts->now);
		return;
	case TCPS_CLOSED:
	case TCPS_SYN_SENT:
		tcp_destroy(s);
		return;
	case TCPS_TIME_WAIT:
		return;                             /* the timer frees it */
	default:
		break;
	}
	if (s->rcvbuf.len && !s->rd_shut) {
		/* RFC 2525 2.17 / RFC 9293 3.10.4: unread data is lost, tell the peer. */
		tcp_send_rst(s, ts->now);
		tcp_done(s, 0);
		return;
	}
	s->rst_on_data = true;
	s->rd_shut = true;
	if (s->mem)
		s->mem->ooo.n = 0;
	queue_fin(s);
	if (s->state == TCPS_FIN_WAIT_2)
		tcp_timer_set(s, T_CLOSE, ts->now + ts->cfg.time_wait_us);
}

void tcp_abort(struct tcp_sock *s)
{
	s->owned = false;
	if (s->state == TCPS_LISTEN) {
		close_listener(s, s->ts->now);
		return;
	}
	/* RFC 9293 3.10.5: RST in SYN-RECEIVED .. LAST-ACK; nothing otherwise. */
	if (tcp_synchronized(s) && s->state != TCPS_TIME_WAIT)
		tcp_send_rst(s, s->ts->now);
	tcp_destroy(s);
}

/* ---- options and state ---- */

int tcp_setopt(struct tcp_sock *s, int opt, int val)
{
	bool conn = s->state != TCPS_CLOSED || used_before(s);
	switch (opt) {
	case TCP_OPT_NODELAY:
		s->nodelay = val != 0;
		if (s->nodelay)
			tcp_mark_dirty(s);
		return 0;
	case TCP_OPT_KEEPALIVE:
		s->keepalive = val != 0;
		if (s->keepalive && (s->state == TCPS_ESTABLISHED || s->state == TCPS_CLOSE_WAIT))
			tcp_timer_set(s, T_KEEPALIVE, s->last_recv + (uint64_t)s->keepidle * 1000000);
		else if (!s->keepalive)
			tcp_timer_clear(s, T_KEEPALIVE);
		return 0;
	case TCP_OPT_KEEPIDLE:
		if (val < 1 || val > 32767)
			return -EINVAL;
		s->keepidle = (uint32_t)val;
		if (s->keepalive && s->deadline[T_KEEPALIVE])
			tcp_timer_set(s, T_KEEPALIVE, s->last_recv + (uint64_t)s->keepidle * 1000000);
		return 0;
	case TCP_OPT_KEEPINTVL:
		if (val < 1 || val > 32767)
			return -EINVAL;
		s->keepintvl = (uint32_t)val;
		return 0;
	case TCP_OPT_KEEPCNT:
		if (val < 1 || val > 127)
			return -EINVAL;
		s->keepcnt = (uint8_t)val;
		return 0;
	case TCP_OPT_SNDBUF:
	case TCP_OPT_RCVBUF:
		if (conn && s->state != TCPS_LISTEN)
			return -EISCONN;
		if (val < 4096)
			val = 4096;
		if (val > (1 << 30))
			val = 1 << 30;
		if (opt == TCP_OPT_SNDBUF)
			s->sndbuf_size = (uint32_t)val;
		else
			s->rcvbuf_size = (uint32_t)val;
		return 0;
	case TCP_OPT_CC: {
		const struct cc_ops *ca = cc_by_id(val);
		if (!ca)
			return -ENOENT;
		if (ca != s->ca) {
			uint32_t cwnd = s->cc.cwnd, ssthresh = s->cc.ssthresh;
			s->ca = ca;
			s->cc_algo = (uint8_t)val;
			if (tcp_synchronized(s)) {
				ca->init(&s->cc, s->mss, cwnd);
				s->cc.ssthresh = ssthresh;
			}
		}
		return 0;
	}
	case TCP_OPT_MAXSEG:
		if (conn && s->state != TCPS_LISTEN)
			return -EISCONN;
		if (val < 88 || val > 65535)
			return -EINVAL;
		s->mss_clamp = (uint32_t)val;
		return 0;
	default:
		return -ENOPROTOOPT;
	}
}

int tcp_getopt(struct tcp_sock *s, int opt, int *val)
{
	switch (opt) {
	case TCP_OPT_NODELAY: *val = s->nodelay; return 0;
	case TCP_OPT_KEEPALIVE: *val = s->keepalive; return 0;
	case TCP_OPT_KEEPIDLE: *val = (int)s->keepidle; return 0;
	case TCP_OPT_KEEPINTVL: *val = (int)s->keepintvl; return 0;
	case TCP_OPT_KEEPCNT: *val = s->keepcnt; return 0;
	case TCP_OPT_SNDBUF: *val = (int)s->sndbuf_size; return 0;
	case TCP_OPT_RCVBUF: *val = (int)s->rcvbuf_size; return 0;
	case TCP_OPT_CC: *val = s->cc_algo; return 0;
	case TCP_OPT_MAXSEG: *val = (int)(s->mss ? s->mss : (s->mss_clamp ? s->mss_clamp : 536)); return 0;
	case TCP_OPT_ERROR: *val = s->err; s->err = 0; return 0;
	default: return -ENOPROTOOPT;
	}
}

unsigned tcp_events(const struct tcp_sock *s)
{
	unsigned ev = 0;
	if (s->state == TCPS_LISTEN)
		return list_empty(&s->acceptq) ? 0 : TCP_EV_READABLE | TCP_EV_ACCEPT;
	if (s->err)
		ev |= TCP_EV_ERROR | TCP_EV_READABLE | TCP_EV_WRITABLE;
	if (s->state == TCPS_SYN_SENT || s->state == TCPS_SYN_RECEIVED)
		return ev;
	if (s->state == TCPS_CLOSED)
		return ev | TCP_EV_HUP | TCP_EV_READABLE | TCP_EV_WRITABLE | (s->fin_rcvd ? TCP_EV_RDHUP : 0);
	if ((s->rcvbuf.len && !s->rd_shut) || s->fin_rcvd || s->rd_shut)
		ev |= TCP_EV_READABLE;
	if (s->fin_rcvd)
		ev |= TCP_EV_RDHUP;
	if (s->fin_queued) {
		ev |= TCP_EV_WRITABLE;             /* a write fails at once (EPIPE) */
		if (s->fin_rcvd)
			ev |= TCP_EV_HUP;
	} else if (s->sndbuf.buf && (uint64_t)tcp_ring_free(&s->sndbuf) * 3 >= s->sndbuf.cap) {
		ev |= TCP_EV_WRITABLE;
	}
	return ev;
}

void tcp_sock_info(const struct tcp_sock *s, struct tcp_sock_info *o)
{
	memset(o, 0, sizeof(*o));
	o->state = s->state;
	o->ca_phase = s->in_recovery ? TCP_CA_RECOVERY
		: s->backoff ? TCP_CA_LOSS : s->dupacks ? TCP_CA_DISORDER : TCP_CA_OPEN;
	o->options = (s->sack_ok ? TCP_INFO_SACK : 0) | (s->ts_ok ? TCP_INFO_TS : 0) |
		     (s->ws_ok ? TCP_INFO_WSCALE : 0);
	o->snd_wscale = s->snd_wscale;
	o->rcv_wscale = s->rcv_wscale;
	o->cc = s->cc_algo;
	o->backoff = s->backoff;
	o->rto_us = s->rto;
	o->srtt_us = s->srtt;
	o->rttvar_us = s->rttvar;
	o->min_rtt_us = s->min_rtt == UINT32_MAX ? 0 : s->min_rtt;
	o->snd_mss = s->mss;
	o->rcv_mss = s->rcv_mss;
	o->peer_mss = s->peer_mss;
	o->cwnd = s->cc.cwnd;
	o->ssthresh = s->cc.ssthresh;
	o->snd_wnd = s->snd_wnd;
	o->rcv_wnd = seq_gt(s->rcv_adv, s->rcv_nxt) ? s->rcv_adv - s->rcv_nxt : 0;
	o->unacked = s->snd_max - s->snd_una;
	if (s->mem) {
		o->sacked = ranges_bytes(&s->mem->sacked);
		o->lost = tcp_sack_lost_bytes(s);
		o->ooo_ranges = s->mem->ooo.n;
	}
	o->retrans_out = s->in_recovery && seq_gt(s->high_rxt, s->snd_una) ? s->high_rxt - s->snd_una : 0;
	o->iss = s->iss;
	o->irs = s->irs;
	o->snd_una = s->snd_una;
	o->snd_nxt = s->snd_nxt;
	o->snd_max = s->snd_max;
	o->rcv_nxt = s->rcv_nxt;
	o->sndbuf_used = s->sndbuf.len;
	o->sndbuf = s->sndbuf_size;
	o->rcvbuf_used = s->rcvbuf.len;
	o->rcvbuf = s->rcvbuf_size;
	o->dupacks = s->dupacks;
	o->bytes_sent = s->bytes_sent;
	o->bytes_retrans = s->bytes_retrans;
	o->bytes_acked = s->bytes_acked;
	o->bytes_received = s->bytes_received;
	o->segs_out = s->segs_out;
	o->segs_in = s->segs_in;
	o->retransmits = s->retransmits;
	o->timeouts = s->timeouts;
	o->fast_retransmits = s->fast_retransmits;
	o->recoveries = s->recoveries;
	o->zero_window_probes = s->zwp;
	o->keepalive_probes = s->kap;
}
