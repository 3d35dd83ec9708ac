/* tcp_calls.c: the us_tcp_* socket calls of ../api.h, over the TCP core (../tcp/tcp.h) as
 * wired in by tcp_glue.c. Each takes the stack's lock, acts on the core's socket and ends in
 * us_tcp_refresh; what it queues leaves at the batch flush (tcp_glue.c says when sooner). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "eph.h"
#include "ip.h"
#include "sock.h"
#include "tcp_glue.h"

#define TCP_SOCK_CHECK(s) do { if ((s)->type != US_SOCK_TCP) return -EOPNOTSUPP; } while (0)

static struct us_sock *sock_new(struct us_stack *st, uint8_t family, struct tcp_sock *ts)
{
	struct us_sock *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->st = st;
	s->type = US_SOCK_TCP;
	s->family = family;
	s->local.addr.family = family;
	s->efd = -1;
	s->sp[0] = s->sp[1] = -1;
	s->evmask = US_EV_IN | US_EV_ERR | US_EV_HUP;
	s->tcp = ts;
	s->ops = &us_tcp_sock_ops;
	tcp_sock_set_user(ts, s);
	us_sock_link(s);
	st->tcp_socks++;
	return s;
}

struct us_sock *us_tcp_socket(struct us_stack *st, int family, int *err)
{
	if (family != US_AF4 && family != US_AF6) {
		*err = -EAFNOSUPPORT;
		return NULL;
	}
	pthread_mutex_lock(&st->lock);
	struct us_sock *s = NULL;
	struct tcp_sock *ts = st->tcp ? tcp_socket(st->tcp) : NULL;
	if (ts && !(s = sock_new(st, (uint8_t)family, ts)))
		tcp_abort(ts);
	pthread_mutex_unlock(&st->lock);
	*err = s ? 0 : -ENOMEM;
	return s;
}

int us_tcp_bind(struct us_sock *s, const struct us_endpoint *local)
{
	TCP_SOCK_CHECK(s);
	struct us_stack *st = s->st;
	struct us_endpoint ep = *local;
	if (ep.addr.family == 0)
		ep.addr.family = s->family;
	if (ep.addr.family != s->family)
		return -EAFNOSUPPORT;
	pthread_mutex_lock(&st->lock);
	int r = 0;
	if (s->bound || tcp_sock_state(s->tcp) != TCPS_CLOSED || s->claim_seq)
		r = -EINVAL;
	else if (!us_addr_is_any(&ep.addr) && !us_is_local_addr(st, &ep.addr))
		r = -EADDRNOTAVAIL;
	else if (ep.port && !us_tuple_claimed(st, US_IPPROTO_TCP, &ep))
		r = -EACCES;
	if (!r) {
		s->local = ep;
		s->bound = 1;
	}
	pthread_mutex_unlock(&st->lock);
	return r;
}

int us_tcp_listen(struct us_sock *s, int backlog)
{
	TCP_SOCK_CHECK(s);
	struct us_stack *st = s->st;
	pthread_mutex_lock(&st->lock);
	int r;
	if (!s->bound || !s->local.port)
		r = -EDESTADDRREQ;
	else
		r = tcp_listen(s->tcp, &s->local, backlog);
	us_tcp_refresh(s);
	pthread_mutex_unlock(&st->lock);
	return r;
}

struct us_sock *us_tcp_accept(struct us_sock *l, struct us_endpoint *peer, int *err)
{
	if (l->type != US_SOCK_TCP) {
		*err = -EOPNOTSUPP;
		return NULL;
	}
	struct us_stack *st = l->st;
	pthread_mutex_lock(&st->lock);
	struct us_sock *s = NULL;
	int e;
	struct tcp_sock *c = tcp_accept(l->tcp, &e);
	if (c) {
		struct us_endpoint loc;
		tcp_sock_local(c, &loc);
		if (!(s = sock_new(st, loc.addr.family, c))) {
			tcp_abort(c);
			e = -ENOMEM;
		} else {
			s->local = loc;
			s->bound = 1;
			if (peer)
				tcp_sock_remote(c, peer);
			us_tcp_refresh(s);            /* data or a FIN may wait already */
		}
	}
	us_tcp_refresh(l);
	pthread_mutex_unlock(&st->lock);
	*err = s ? 0 : e;
	return s;
}

int us_tcp_connect(struct us_sock *s, const struct us_endpoint *remote)
{
	TCP_SOCK_CHECK(s);
	struct us_stack *st = s->st;
	if (remote->addr.family != s->family)
		return -EAFNOSUPPORT;
	if (!remote->port || us_addr_is_any(&remote->addr))
		return -EINVAL;
	pthread_mutex_lock(&st->lock);
	us_tcp_touch_clock(st);
	struct us_endpoint dummy;
	int r = -EINPROGRESS, state = tcp_sock_state(s->tcp);
	if (s->claim_seq || state == TCPS_SYN_SENT)
		r = -EALREADY;
	else if (state != TCPS_CLOSED || tcp_sock_remote(s->tcp, &dummy) == 0 || s->error)
		r = -EISCONN;
	if (r != -EINPROGRESS)
		goto out;
	s->peer = *remote;
	if (s->bound && s->local.port) {
		if (us_addr_is_any(&s->local.addr)) {
			const struct us_addr *a = us_eph_local_for(st, &remote->addr);
			if (!a) {
				r = -EADDRNOTAVAIL;
				goto out;
			}
			s->local.addr = *a;
		}
		us_tcp_start_connect(s, NULL);
	} else {
		struct us_endpoint pick;
		if (us_eph_take(st, &remote->addr, &pick) == 0) {
			us_tcp_start_connect(s, &pick);
		} else {
			int c = us_eph_request(st, &remote->addr, s);
			if (c) {
				r = c;
				goto out;
			}
			us_tcp_refresh(s);
		}
		us_eph_refill(st, &remote->addr);
	}
	if (s->error) {                        /* the core refused at once */
		r = s->error;
		s->error = 0;
		us_tcp_refresh(s);
	}
out:
	pthread_mutex_unlock(&st->lock);
	return r;
}

static int take_sock_error(struct us_sock *s)
{
	int e = s->error;
	s->error = 0;
	us_tcp_refresh(s);
	return e;
}

/* After a read: the window may have opened (an update is due), readiness changed. */
static void after_read(struct us_sock *s)
{
	us_tcp_refresh(s);
	us_tcp_flush_soon(s->st);
}

ssize_t us_tcp_read(struct us_sock *s, void *buf, size_t len)
{
	TCP_SOCK_CHECK(s);
	struct us_stack *st = s->st;
	pthread_mutex_lock(&st->lock);
	ssize_t r;
	if (s->error)
		r = take_sock_error(s);
	else if (s->claim_seq)
		r = -EAGAIN;
	else {
		r = tcp_recv(s->tcp, buf, len);
		if (r != -EAGAIN)
			after_read(s);
	}
	pthread_mutex_unlock(&st->lock);
	return r;
}

ssize_t us_tcp_peek(struct us_sock *s, struct us_iov iov[2])
{
	TCP_SOCK_CHECK(s);
	pthread_mutex_lock(&s->st->lock);
	const uint8_t *p1 = NULL, *p2 = NULL;
	size_t l1 = 0, l2 = 0;
	if (!s->claim_seq)
		tcp_recv_peek(s->tcp, &p1, &l1, &p2, &l2);
	iov[0].base = (void *)p1;
	iov[0].len = l1;
	iov[1].base = (void *)p2;
	iov[1].len = l2;
	pthread_mutex_unlock(&s->st->lock);
	return (ssize_t)(l1 + l2);
}

int us_tcp_consume(struct us_sock *s, size_t n)
{
	TCP_SOCK_CHECK(s);
	pthread_mutex_lock(&s->st->lock);
	tcp_recv_consume(s->tcp, n);
	after_read(s);
	pthread_mutex_unlock(&s->st->lock);
	return 0;
}

static ssize_t write_locked(struct us_sock *s, const struct us_iov *iov, int n, int flags)
{
	struct us_stack *st = s->st;
	if (s->error)
		return take_sock_error(s);
	if (s->claim_seq)
		return -EAGAIN;
	ssize_t total = 0, r = 0;
	size_t want = 0;
	for (int i = 0; i < n; i++) {
		want += iov[i].len;
		if (!iov[i].len)
			continue;
		r = tcp_send(s->tcp, iov[i].base, iov[i].len);
		if (r < 0)
			break;
		total += r;
		if ((size_t)r < iov[i].len)
			break;
	}
	if ((size_t)total < want && (r >= 0 || r == -EAGAIN))
		us_tcp_want_writable(s);
	if (!(flags & US_MSG_MORE)) {
		us_tcp_touch_clock(st);
		us_tcp_flush_locked(st);
	}
	us_tcp_refresh(s);
	return total ? total : (r < 0 ? r : 0);
}

ssize_t us_tcp_write(struct us_sock *s, const void *buf, size_t len, int flags)
{
	TCP_SOCK_CHECK(s);
	struct us_iov v = { (void *)buf, len };
	pthread_mutex_lock(&s->st->lock);
	ssize_t r = write_locked(s, &v, 1, flags);
	pthread_mutex_unlock(&s->st->lock);
	return r;
}

ssize_t us_tcp_writev(struct us_sock *s, const struct us_iov *iov, int iovcnt, int flags)
{
	TCP_SOCK_CHECK(s);
	if (iovcnt < 0)
		return -EINVAL;
	pthread_mutex_lock(&s->st->lock);
	ssize_t r = write_locked(s, iov, iovcnt, flags);
	pthread_mutex_unlock(&s->st->lock);
	return r;
}

size_t us_tcp_send_space(struct us_sock *s)
{
	if (s->type != US_SOCK_TCP)
		return 0;
	pthread_mutex_lock(&s->st->lock);
	size_t n = s->claim_seq ? 0 : tcp_send_space(s->tcp);
	pthread_mutex_unlock(&s->st->lock);
	return n;
}

size_t us_tcp_recv_avail(struct us_sock *s)
{
	if (s->type != US_SOCK_TCP)
		return 0;
	pthread_mutex_lock(&s->st->lock);
	size_t n = s->claim_seq ? 0 : tcp_recv_avail(s->tcp);
	pthread_mutex_unlock(&s->st->lock);
	return n;
}

int us_tcp_shutdown(struct us_sock *s, int how)
{
	TCP_SOCK_CHECK(s);
	pthread_mutex_lock(&s->st->lock);
	int r = s->claim_seq ? -ENOTCONN : tcp_shutdown(s->tcp, how);
	us_tcp_flush_soon(s->st);
	us_tcp_refresh(s);
	pthread_mutex_unlock(&s->st->lock);
	return r;
}

int us_tcp_abort(struct us_sock *s)
{
	TCP_SOCK_CHECK(s);
	struct us_stack *st = s->st;
	pthread_mutex_lock(&st->lock);
	struct tcp_sock *ts = s->tcp;
	us_tcp_unlink(s);
	tcp_abort(ts);
	us_tcp_flush_soon(st);
	us_sock_release(s);
	pthread_cond_broadcast(&st->cond);
	pthread_mutex_unlock(&st->lock);
	return 0;
}

static int core_opt(int opt)
{
	switch (opt) {
	case US_TCP_NODELAY: return TCP_OPT_NODELAY;
	case US_SO_KEEPALIVE: return TCP_OPT_KEEPALIVE;
	case US_TCP_KEEPIDLE: return TCP_OPT_KEEPIDLE;
	case US_TCP_KEEPINTVL: return TCP_OPT_KEEPINTVL;
	case US_TCP_KEEPCNT: return TCP_OPT_KEEPCNT;
	case US_SO_SNDBUF: return TCP_OPT_SNDBUF;
	case US_SO_RCVBUF: return TCP_OPT_RCVBUF;
	case US_TCP_CONGESTION: return TCP_OPT_CC;
	case US_TCP_MAXSEG: return TCP_OPT_MAXSEG;
	case US_SO_ERROR: return TCP_OPT_ERROR;
	default: return -1;
	}
}

int us_tcp_setsockopt(struct us_sock *s, int opt, int val)
{
	TCP_SOCK_CHECK(s);
	int o = core_opt(opt);
	if (o < 0 || o == TCP_OPT_ERROR)
		return -ENOPROTOOPT;
	pthread_mutex_lock(&s->st->lock);
	int r = tcp_setopt(s->tcp, o, val);
	/* What Nagle held goes at the next flush (keepalive timers restart from the last segment
	 * received: no clock needed). */
	if (!r && o == TCP_OPT_NODELAY && val)
		us_tcp_flush_soon(s->st);
	pthread_mutex_unlock(&s->st->lock);
	return r;
}

static int getsockopt_locked(struct us_sock *s, int opt, int *val)
{
	int o = core_opt(opt);
	if (o < 0)
		return -ENOPROTOOPT;
	int r;
	if (o == TCP_OPT_ERROR && s->error) {
		*val = -s->error;
		s->error = 0;
		r = 0;
	} else {
		r = tcp_getopt(s->tcp, o, val);
	}
	if (o == TCP_OPT_ERROR)
		us_tcp_refresh(s);
	return r;
}

int us_tcp_getsockopt(struct us_sock *s, int opt, int *val)
{
	TCP_SOCK_CHECK(s);
	pthread_mutex_lock(&s->st->lock);
	int r = getsockopt_locked(s, opt, val);
	pthread_mutex_unlock(&s->st->lock);
	return r;
}

int us_sock_peer(struct us_sock *s, struct us_endpoint *out)
{
	if (s->type != US_SOCK_TCP)
		return -ENOTCONN;
	pthread_mutex_lock(&s->st->lock);
	int r = 0;
	if (s->claim_seq)
		*out = s->peer;
	else
		r = tcp_sock_remote(s->tcp, out);
	pthread_mutex_unlock(&s->st->lock);
	return r;
}

int us_tcp_info(struct us_sock *s, struct us_tcp_info *o)
{
	TCP_SOCK_CHECK(s);
	struct tcp_sock_info i;
	pthread_mutex_lock(&s->st->lock);
	tcp_sock_info(s->tcp, &i);
	pthread_mutex_unlock(&s->st->lock);
	memset(o, 0, sizeof(*o));
	o->state = i.state;
	o->ca_state = i.ca_phase;
	o->options = i.options;
	o->snd_wscale = i.snd_wscale;
	o->rcv_wscale = i.rcv_wscale;
	o->cc = i.cc;
	o->backoff = i.backoff;
	o->rto_us = i.rto_us;
	o->srtt_us = i.srtt_us;
	o->rttvar_us = i.rttvar_us;
	o->min_rtt_us = i.min_rtt_us;
	o->snd_mss = i.snd_mss;
	o->rcv_mss = i.rcv_mss;
	o->cwnd = i.cwnd;
	o->ssthresh = i.ssthresh;
	o->snd_wnd = i.snd_wnd;
	o->rcv_wnd = i.rcv_wnd;
	o->unacked = i.unacked;
	o->sacked = i.sacked;
	o->lost = i.lost;
	o->retrans_out = i.retrans_out;
	o->sndbuf_used = i.sndbuf_used;
	o->sndbuf = i.sndbuf;
	o->rcvbuf_used = i.rcvbuf_used;
	o->rcvbuf = i.rcvbuf;
	o->snd_una = i.snd_una;
	o->snd_nxt = i.snd_nxt;
	o->snd_max = i.snd_max;
	o->rcv_nxt = i.rcv_nxt;
	o->bytes_sent = i.bytes_sent;
	o->bytes_retrans = i.bytes_retrans;
	o->bytes_acked = i.bytes_acked;
	o->bytes_received = i.bytes_received;
	o->segs_out = i.segs_out;
	o->segs_in = i.segs_in;
	o->retransmits = i.retransmits;
	o->timeouts = i.timeouts;
	o->fast_retransmits = i.fast_retransmits;
	o->recoveries = i.recoveries;
	o->zero_window_probes = i.zero_window_probes;
	o->keepalive_probes = i.keepalive_probes;
	return 0;
}

/* The counters are kept in place (st->tcp_stats: the shared page or the stack's own), gauges
 * included: a copy. */
void us_tcp_stack_stats(struct us_stack *st, struct us_tcp_stats *o)
{
	pthread_mutex_lock(&st->lock);
	*o = *st->tcp_stats;
	pthread_mutex_unlock(&st->lock);
}
