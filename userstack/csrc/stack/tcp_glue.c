/* tcp_glue.c: the TCP core (tcp/, contract in tcp/tcp.h) wired into the stack, and the us_tcp_*
 * socket calls of ../api.h.
 *
 *   in     ip.c hands every checksummed TCP segment to us_tcp_input -> tcp_input
 *   out    emit: IP + Ethernet around the core's header and payload in one TX frame (one copy
 *          from the send ring), checksum over the pseudo-header; -ENOBUFS when no frame is free
 *   poll   us_tcp_timers after the batch's RX (timers due, writability), us_tcp_output once per
 *          batch: tcp_flush (writes coalesce, ACKs ride on data), the timerfd armed for
 *          tcp_next_deadline
 *   calls  socket calls only queue: their output (data written with US_MSG_MORE, window updates
 *          after reads, FINs, RSTs, SYNs) leaves at the batch flush, one TX kick for everything,
 *          unless a driver thread may be asleep (Python's blocking sockets): then at once
 *   ready  the core's on_event and every socket call end in refresh(): the ready list for
 *          us_wait, the condition variable for blocked callers, the socketpair behind fileno()
 *   ports  active opens take an ephemeral port claimed through the launcher (CLAIM_EPHEMERAL):
 *          a few per local address are claimed ahead, refilled asynchronously; with none ready
 *          the connect waits for the answer in the background (EINPROGRESS), never the stack.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include "stack.h"

#define EPH_PORTS   64         /* ports kept per local address at most */
#define EPH_CLAIMS  1024       /* CLAIM_EPHEMERAL requests in flight at most */
#define EPH_ROUTES  16         /* remote -> local address answers remembered */
#define EPH_TIMEOUT_NS 5000000000ull   /* a claim the launcher does not answer fails */
#define SP_FILL     2048       /* bytes that make the fileno socketpair unwritable (see sp_sync) */

struct eph_pool {
	struct us_addr local;
	uint32_t n;
	uint16_t port[EPH_PORTS];
};

struct eph_claim {
	uint32_t seq;
	uint8_t family;
	struct us_sock *waiter;    /* the connect waiting for this port, or NULL: for a pool */
	struct us_addr remote;
	uint64_t deadline;
};

struct us_eph {
	struct eph_pool pool[US_MAX_ADDRS];
	uint32_t npool;
	struct eph_claim claim[EPH_CLAIMS];
	uint32_t nclaim;
	struct { struct us_addr remote, local; } route[EPH_ROUTES];
	uint32_t route_next;
	struct us_endpoint pick;   /* handed to the core by bind_ephemeral during tcp_connect */
	int have_pick;
};

static inline uint64_t now_us(const struct us_stack *st) { return st->now / 1000; }

/* The clock for a socket call that sends now or starts timers: the core stamps what it sends
 * (RTT samples, timers), so never a time from before the application went idle. Calls that only
 * queue read no clock: what they queue is stamped at the flush, which reads it. */
static inline void touch_clock(struct us_stack *st)
{
	st->now = us_now_ns();
}

/* ---- output ---- */
static int hook_emit(void *ctx, const struct us_addr *src, const struct us_addr *dst,
		     const uint8_t *hdr, size_t hl, const uint8_t *p1, size_t l1, const uint8_t *p2, size_t l2)
{
	struct us_stack *st = ctx;
	uint32_t l3 = us_l3_offset(dst->family);
	uint32_t tcplen = (uint32_t)(hl + l1 + l2);
	if (l3 + tcplen > st->dev->frame_room)
		return 0;                  /* cannot happen: the MSS comes from the frame size */
	struct us_frame f;
	if (st->dev->ops->tx_alloc(st->dev, st->tx_queue, &f)) {
		st->stats->tx_no_frame++;
		return -ENOBUFS;
	}
	uint8_t *t = f.data + l3;
	memcpy(t, hdr, hl);
	if (l1)
		memcpy(t + hl, p1, l1);
	if (l2)
		memcpy(t + hl + l1, p2, l2);
	uint64_t sum = us_csum_pseudo(dst->family, src->a, dst->a, US_IPPROTO_TCP, tcplen);
	uint16_t c = us_csum_fold(us_csum_add(sum, t, tcplen));
	memcpy(t + 16, &c, 2);
	us_ip_output(st, &f, src, dst, US_IPPROTO_TCP, tcplen);
	st->tx_pending++;
	return 0;
}

/* The core and the device both flushed: what the socket calls do unless told US_MSG_MORE. */
static void flush_now(struct us_stack *st)
{
	tcp_flush(st->tcp, now_us(st));
	for (int i = 0; i < 8 && tcp_tx_blocked(st->tcp); i++) {
		us_stack_flush_locked(st);         /* copy mode completes at the kick: frames return */
		st->tx_pending = 0;
		tcp_flush(st->tcp, now_us(st));
	}
	if (st->tx_pending) {
		us_stack_flush_locked(st);
		st->tx_pending = 0;
	}
}

void us_tcp_flush_locked(struct us_stack *st)
{
	if (st->tcp)
		flush_now(st);
}

/* After a socket call queued output. An application driving the stack (us_wait, us_poll,
 * us_sock_wait, us_flush) sends it at its next batch flush, with everything else of the batch in
 * one TX kick (RFC 9293 3.8.6.2.2 lets a window update wait that long; a FIN or RST gains
 * nothing by going first). A driver thread may sleep in epoll for long: a blocking-style caller
 * expects its close, shutdown or window update on the wire at once, so then it goes now. */
static void flush_soon(struct us_stack *st)
{
	if (st->driver_running) {
		touch_clock(st);
		flush_now(st);
	}
}

/* ---- readiness ---- */
static uint32_t map_events(unsigned e)
{
	uint32_t r = 0;
	if (e & (TCP_EV_READABLE | TCP_EV_ACCEPT))
		r |= US_EV_IN;
	if (e & TCP_EV_WRITABLE)
		r |= US_EV_OUT;
	if (e & TCP_EV_ERROR)
		r |= US_EV_ERR;
	if (e & TCP_EV_HUP)
		r |= US_EV_HUP;
	if (e & TCP_EV_RDHUP)
		r |= US_EV_RDHUP;
	return r;
}

uint32_t us_tcp_events(struct us_sock *s)
{
	if (s->error)                  /* a connect that failed before it reached the core */
		return US_EV_ERR | US_EV_IN | US_EV_OUT | US_EV_HUP;
	if (s->claim_seq)
		return 0;                  /* connecting: waiting for a port */
	return map_events(tcp_events(s->tcp));
}

static void sp_drain(int fd)
{
	char buf[4096];
	while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) == (ssize_t)sizeof(buf))
		;
}

/* The socketpair behind fileno(): sp[0] is readable while the socket is readable (a byte sent
 * from sp[1]); it is made unwritable by one SP_FILL-byte send into its minimal send buffer, and
 * writable again by draining that from sp[1]. */
static void sp_sync(struct us_sock *s, uint32_t e)
{
	uint8_t in = !!(e & (US_EV_IN | US_EV_ERR | US_EV_HUP)), out = !!(e & US_EV_OUT);
	if (in != s->sp_in) {
		if (in) {
			if (send(s->sp[1], "r", 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) { /* already readable */ }
		} else {
			sp_drain(s->sp[0]);
		}
		s->sp_in = in;
	}
	if (out != s->sp_out) {
		if (out) {
			sp_drain(s->sp[1]);
		} else {
			static const char fill[SP_FILL];
			if (send(s->sp[0], fill, sizeof(fill), MSG_DONTWAIT | MSG_NOSIGNAL) < 0) { /* full */ }
		}
		s->sp_out = out;
	}
}

static void wblock(struct us_sock *s)
{
	if (!s->wblocked) {
		s->wblocked = 1;
		s->wb_next = s->st->wblocked;
		s->st->wblocked = s;
	}
}

static void wunblock(struct us_sock *s)
{
	if (!s->wblocked)
		return;
	for (struct us_sock **pp = &s->st->wblocked; *pp; pp = &(*pp)->wb_next)
		if (*pp == s) {
			*pp = s->wb_next;
			break;
		}
	s->wblocked = 0;
}

/* The socket's readiness may have changed: tell us_wait, blocked callers and fileno(). */
static void refresh(struct us_sock *s)
{
	struct us_stack *st = s->st;
	uint32_t e = us_tcp_events(s);
	if ((e & s->evmask) && !s->in_ready) {
		s->in_ready = 1;
		s->ready_next = st->ready;
		st->ready = s;
	}
	if (st->waiters && e)
		pthread_cond_broadcast(&st->cond);
	if (s->sp[0] >= 0)
		sp_sync(s, e);
}

void us_tcp_refresh(struct us_sock *s) { refresh(s); }
void us_tcp_want_writable(struct us_sock *s) { wblock(s); }

static void hook_event(void *ctx, struct tcp_sock *ts, unsigned events)
{
	(void)ctx;
	(void)events;
	struct us_sock *s = tcp_sock_user(ts);
	if (s)
		refresh(s);
}

int us_tcp_fileno_locked(struct us_sock *s)
{
	if (s->sp[0] < 0) {
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, s->sp) < 0) {
			s->sp[0] = s->sp[1] = -1;
			return -errno;
		}
		int one = 1;          /* the kernel's minimum (4608): one SP_FILL send fills it */
		setsockopt(s->sp[0], SOL_SOCKET, SO_SNDBUF, &one, sizeof(one));
		s->sp_in = 0;
		s->sp_out = 1;             /* a fresh socketpair is writable */
		sp_sync(s, us_tcp_events(s));
	}
	return s->sp[0];
}

/* ---- ephemeral ports ---- */
static struct eph_pool *pool_of(struct us_eph *e, const struct us_addr *local, int create)
{
	for (uint32_t i = 0; i < e->npool; i++)
		if (us_addr_eq(&e->pool[i].local, local))
			return &e->pool[i];
	if (!create || e->npool == US_MAX_ADDRS)
		return NULL;
	struct eph_pool *p = &e->pool[e->npool++];
	p->local = *local;
	p->n = 0;
	return p;
}

/* The ports_ready gauge in the counters, after a pool changed. */
static void ports_gauge(struct us_stack *st)
{
	uint32_t n = 0;
	for (uint32_t i = 0; st->eph && i < st->eph->npool; i++)
		n += st->eph->pool[i].n;
	st->tcp_stats->ports_ready = n;
}

/* The local address the launcher will pick toward remote, when the stack can tell. */
static const struct us_addr *local_for(struct us_stack *st, const struct us_addr *remote)
{
	const struct us_addr *only = NULL;
	for (uint32_t i = 0; i < st->desc.naddrs; i++)
		if (st->desc.addrs[i].family == remote->family) {
			if (only)
				goto several;
			only = &st->desc.addrs[i];
		}
	return only;
several:
	for (uint32_t i = 0; i < EPH_ROUTES; i++)
		if (us_addr_eq(&st->eph->route[i].remote, remote))
			return &st->eph->route[i].local;
	return NULL;
}

static void release_claim(struct us_stack *st, const struct us_endpoint *local)
{
	us_eph_release(st, US_IPPROTO_TCP, local);
}

static int send_claim(struct us_stack *st, const struct us_addr *remote, struct us_sock *waiter)
{
	struct us_eph *e = st->eph;
	if (st->ctlfd < 0)
		return -EADDRNOTAVAIL;     /* nobody to claim from */
	if (e->nclaim == EPH_CLAIMS)
		return -EAGAIN;
	struct us_endpoint rem;
	memset(&rem, 0, sizeof(rem));
	rem.addr = *remote;
	uint32_t seq;
	int r = us_eph_send_claim(st, US_IPPROTO_TCP, remote->family, &rem, &seq);
	if (r)
		return r == -EAGAIN ? -EAGAIN : -EADDRNOTAVAIL;
	struct eph_claim *c = &e->claim[e->nclaim++];
	c->seq = seq;
	c->family = remote->family;
	c->waiter = waiter;
	c->remote = *remote;
	c->deadline = st->now + EPH_TIMEOUT_NS;
	if (waiter)
		waiter->claim_seq = c->seq;
	return 0;
}

/* Keep port_pool ports ready for the local address used toward remote. */
static void refill(struct us_stack *st, const struct us_addr *remote)
{
	struct us_eph *e = st->eph;
	uint32_t want = st->topts.port_pool, have = 0;
	if (!want || st->ctlfd < 0)
		return;
	const struct us_addr *local = local_for(st, remote);
	struct eph_pool *p = local ? pool_of(e, local, 0) : NULL;
	if (p)
		have = p->n;
	for (uint32_t i = 0; i < e->nclaim; i++)
		if (!e->claim[i].waiter && e->claim[i].family == remote->family)
			have++;
	while (have++ < want && !send_claim(st, remote, NULL))
		;
}

static void start_connect(struct us_sock *s, const struct us_endpoint *local_pick);

void us_tcp_claimed(struct us_stack *st, const struct us_ctl_claimed *m)
{
	struct us_eph *e = st->eph;
	uint32_t i = 0;
	if (e)
		while (i < e->nclaim && e->claim[i].seq != m->hdr.seq)
			i++;
	if (!e || i == e->nclaim) {
		st->stats->ctl_bad++;
		if (!m->status && m->port) {       /* not ours (timed out): give it back */
			struct us_endpoint l = { .addr = m->local, .port = m->port };
			l.addr.family = m->family;
			release_claim(st, &l);
		}
		return;
	}
	struct eph_claim c = e->claim[i];
	e->claim[i] = e->claim[--e->nclaim];
	struct us_endpoint local = { .addr = m->local, .port = m->port };
	local.addr.family = c.family;
	int err = m->status;
	if (!err && (m->family != c.family || !m->port || us_addr_is_any(&m->local)))
		err = -EPROTO;
	if (err) {
		st->tcp_stats->port_claim_failures++;
		if (c.waiter) {
			c.waiter->claim_seq = 0;
			c.waiter->error = err == -EPROTO ? -EADDRNOTAVAIL : err;
			refresh(c.waiter);
		}
		return;
	}
	st->tcp_stats->port_claims++;
	e->route[e->route_next].remote = c.remote;
	e->route[e->route_next].local = local.addr;
	e->route_next = (e->route_next + 1) % EPH_ROUTES;
	if (c.waiter) {
		c.waiter->claim_seq = 0;
		start_connect(c.waiter, &local);
		refill(st, &c.remote);
		return;
	}
	struct eph_pool *p = pool_of(e, &local.addr, 1);
	if (p && p->n < EPH_PORTS) {
		p->port[p->n++] = local.port;
		ports_gauge(st);
	} else {
		release_claim(st, &local);
	}
}

static void claims_expire(struct us_stack *st)
{
	struct us_eph *e = st->eph;
	for (uint32_t i = 0; i < e->nclaim;) {
		struct eph_claim *c = &e->claim[i];
		if (st->now < c->deadline) {
			i++;
			continue;
		}
		if (c->waiter) {
			c->waiter->claim_seq = 0;
			c->waiter->error = -ETIMEDOUT;
			refresh(c->waiter);
		}
		st->tcp_stats->port_claim_failures++;
		*c = e->claim[--e->nclaim];
	}
}

static int hook_bind(void *ctx, const struct us_endpoint *remote, struct us_endpoint *out)
{
	struct us_stack *st = ctx;
	(void)remote;
	if (!st->eph->have_pick)
		return -EADDRNOTAVAIL;
	*out = st->eph->pick;
	st->eph->have_pick = 0;
	return 0;
}

/* A connection with an ephemeral port is gone: keep the port for the next connect, or give it
 * back to the launcher. */
static void hook_release(void *ctx, const struct us_endpoint *local)
{
	struct us_stack *st = ctx;
	struct eph_pool *p = pool_of(st->eph, &local->addr, 1);
	if (p && p->n < st->topts.port_pool && p->n < EPH_PORTS) {
		p->port[p->n++] = local->port;
		ports_gauge(st);
	} else {
		release_claim(st, local);
	}
}

/* ---- the stack's side ---- */
static const struct tcp_hooks hooks = {
	.emit = hook_emit, .on_event = hook_event, .bind_ephemeral = hook_bind, .release_port = hook_release,
};

int us_tcp_open(struct us_stack *st, const struct us_tcp_opts *o)
{
	if (st->tcp && (st->tcp_socks || st->tcp_stats->conns || st->tcp_stats->listeners))
		return -EBUSY;
	struct us_tcp_opts opts = *o;
	struct tcp_config *c = &opts.cfg;
	/* Segments must fit a TX frame whatever the device's MTU. */
	uint32_t room = st->dev->frame_room - US_ETH_HLEN;
	c->mtu = st->desc.mtu && st->desc.mtu < room ? st->desc.mtu : room;
	if (getrandom(c->secret, sizeof(c->secret), 0) != sizeof(c->secret))
		return -EIO;
	struct tcp_stack *ts = tcp_stack_new(c, &hooks, st);
	if (!ts)
		return -ENOMEM;
	if (!st->eph && !(st->eph = calloc(1, sizeof(*st->eph)))) {
		tcp_stack_free(ts);
		return -ENOMEM;
	}
	if (st->tcp)
		tcp_stack_free(st->tcp);
	tcp_stack_count_into(ts, st->tcp_stats);   /* counts on where the one before counted */
	st->tcp = ts;
	st->topts = opts;
	return 0;
}

/* Stack close: close what the application left open, give closing connections a moment
 * (data written before close reaches the peer), then free everything. */
void us_tcp_close_all(struct us_stack *st)
{
	if (!st->tcp)
		return;
	for (struct us_sock *s = st->all, *next; s; s = next) {
		next = s->all_next;
		if (s->type == US_SOCK_TCP)
			us_tcp_close_locked(s);
	}
	uint64_t end = us_now_ns() + (uint64_t)st->topts.linger_ms * 1000000;
	for (;;) {
		if (st->tcp_stats->conns <= st->tcp_stats->time_wait || us_now_ns() >= end)
			break;
		us_poll_locked(st);
		us_sleep_locked(st, 5);
	}
	struct us_eph *e = st->eph;
	tcp_stack_free(st->tcp);       /* releases the ports of what is left (hook_release) */
	st->tcp = NULL;
	for (uint32_t i = 0; i < e->npool; i++)
		for (uint32_t k = 0; k < e->pool[i].n; k++) {
			struct us_endpoint l = { .addr = e->pool[i].local, .port = e->pool[i].port[k] };
			release_claim(st, &l);
		}
	free(e);
	st->eph = NULL;
	ports_gauge(st);
}

bool us_tcp_tx_blocked(struct us_stack *st)
{
	return st->tcp && tcp_tx_blocked(st->tcp);
}

void us_tcp_input(struct us_stack *st, const struct us_parsed *p)
{
	struct us_addr src, dst;
	int alen = p->ip.family == US_AF4 ? 4 : 16;
	memset(&src, 0, sizeof(src));
	memset(&dst, 0, sizeof(dst));
	src.family = dst.family = p->ip.family;
	memcpy(src.a, p->ip.src, alen);
	memcpy(dst.a, p->ip.dst, alen);
	tcp_input(st->tcp, &src, &dst, p->ip.payload, p->ip.payload_len, now_us(st));
}

/* After the batch's RX: claims that timed out, timers due, sockets that became writable (the
 * core reports ACKed space only as a change). Timers send what they must at once. */
void us_tcp_timers(struct us_stack *st)
{
	struct tcp_stack *ts = st->tcp;
	uint64_t now = now_us(st);
	if (st->eph->nclaim)
		claims_expire(st);
	if (tcp_next_deadline(ts) <= now)
		tcp_timers(ts, now);
	for (struct us_sock **pp = &st->wblocked; *pp;) {
		struct us_sock *s = *pp;
		if (us_tcp_events(s) & (US_EV_OUT | US_EV_ERR | US_EV_HUP)) {
			*pp = s->wb_next;
			s->wblocked = 0;
			refresh(s);
		} else {
			pp = &s->wb_next;
		}
	}
}

/* The batch's TCP output, once per batch; hold: the application is about to get this batch's
 * events, so ACKs it may answer wait for its answer (tcp_flush_hold_acks). Then the timerfd. */
void us_tcp_output(struct us_stack *st, bool hold)
{
	struct tcp_stack *ts = st->tcp;
	if (hold) {
		tcp_flush_hold_acks(ts, now_us(st));
		if (tcp_tx_blocked(ts))
			flush_now(st);                     /* the ring filled: send and retry at once */
	} else {
		flush_now(st);
	}
	uint64_t next = tcp_next_deadline(ts);
	if (next != UINT64_MAX) {
		uint64_t ns = next * 1000;
		if (!st->timer_armed || ns < st->timer_armed || st->timer_armed <= st->now) {
			us_stack_arm_timer(st, ns);
			st->timer_armed = ns;
		}
	}
}

/* ---- socket calls ---- */
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
	refresh(s);
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
			refresh(s);            /* data or a FIN may wait already */
		}
	}
	refresh(l);
	pthread_mutex_unlock(&st->lock);
	*err = s ? 0 : e;
	return s;
}

/* Hand the connect to the core; with local_pick the core's bind_ephemeral takes that port. */
static void start_connect(struct us_sock *s, const struct us_endpoint *local_pick)
{
	struct us_stack *st = s->st;
	int r;
	if (local_pick) {
		st->eph->pick = *local_pick;
		st->eph->have_pick = 1;
		r = tcp_connect(s->tcp, &s->peer, NULL, now_us(st));
		st->eph->have_pick = 0;
	} else {
		r = tcp_connect(s->tcp, &s->peer, &s->local, now_us(st));
	}
	if (r)
		s->error = r;
	else
		flush_soon(st);                    /* the SYN leaves at the next flush */
	refresh(s);
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
	touch_clock(st);
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
			const struct us_addr *a = local_for(st, &remote->addr);
			if (!a) {
				r = -EADDRNOTAVAIL;
				goto out;
			}
			s->local.addr = *a;
		}
		start_connect(s, NULL);
	} else {
		const struct us_addr *a = local_for(st, &remote->addr);
		struct eph_pool *p = a ? pool_of(st->eph, a, 0) : NULL;
		if (p && p->n) {
			struct us_endpoint pick = { .addr = *a, .port = p->port[--p->n] };
			ports_gauge(st);
			start_connect(s, &pick);
		} else {
			int c = send_claim(st, &remote->addr, s);
			if (c) {
				r = c;
				goto out;
			}
			refresh(s);
		}
		refill(st, &remote->addr);
	}
	if (s->error) {                        /* the core refused at once */
		r = s->error;
		s->error = 0;
		refresh(s);
	}
out:
	pthread_mutex_unlock(&st->lock);
	return r;
}

static int take_sock_error(struct us_sock *s)
{
	int e = s->error;
	s->error = 0;
	refresh(s);
	return e;
}

/* After a read: the window may have opened (an update is due), readiness changed. */
static void after_read(struct us_sock *s)
{
	refresh(s);
	flush_soon(s->st);
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
		wblock(s);
	if (!(flags & US_MSG_MORE)) {
		touch_clock(st);
		flush_now(st);
	}
	refresh(s);
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
	flush_soon(s->st);
	refresh(s);
	pthread_mutex_unlock(&s->st->lock);
	return r;
}

static void unlink_tcp(struct us_sock *s)
{
	struct us_stack *st = s->st;
	if (s->claim_seq)                      /* its port, when it comes, goes to a pool */
		for (uint32_t i = 0; i < st->eph->nclaim; i++)
			if (st->eph->claim[i].waiter == s)
				st->eph->claim[i].waiter = NULL;
	wunblock(s);
	tcp_sock_set_user(s->tcp, NULL);
	s->tcp = NULL;
	st->tcp_socks--;
	for (int i = 0; i < 2; i++)
		if (s->sp[i] >= 0)
			close(s->sp[i]);
	s->sp[0] = s->sp[1] = -1;
	us_sock_unlink(s);
}

void us_tcp_close_locked(struct us_sock *s)
{
	struct us_stack *st = s->st;
	struct tcp_sock *ts = s->tcp;
	unlink_tcp(s);
	tcp_close(ts);
	flush_soon(st);                        /* the FIN rides on the last data */
	us_sock_release(s);
}

int us_tcp_abort(struct us_sock *s)
{
	TCP_SOCK_CHECK(s);
	struct us_stack *st = s->st;
	pthread_mutex_lock(&st->lock);
	struct tcp_sock *ts = s->tcp;
	unlink_tcp(s);
	tcp_abort(ts);
	flush_soon(st);
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
		flush_soon(s->st);
	pthread_mutex_unlock(&s->st->lock);
	return r;
}

int us_tcp_getsockopt_locked(struct us_sock *s, int opt, int *val)
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
		refresh(s);
	return r;
}

int us_tcp_getsockopt(struct us_sock *s, int opt, int *val)
{
	TCP_SOCK_CHECK(s);
	pthread_mutex_lock(&s->st->lock);
	int r = us_tcp_getsockopt_locked(s, opt, val);
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

int us_stack_tcp_configure(struct us_stack *st, const char *spec)
{
	pthread_mutex_lock(&st->lock);
	struct us_tcp_opts o = st->topts;
	int r = us_tcp_opts_parse(&o, spec);
	if (!r)
		r = us_tcp_open(st, &o);
	pthread_mutex_unlock(&st->lock);
	return r;
}
