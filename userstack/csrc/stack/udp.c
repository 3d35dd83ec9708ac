/* udp.c: UDP sockets. Sockets bind only to tuples the stack claimed; received datagrams are
 * copied into a bounded per-socket queue (drops counted); sends build the whole frame in a TX
 * buffer (no fragmentation: larger than the MTU is EMSGSIZE). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include "eph.h"
#include "ip.h"
#include "sock.h"
#include "udp.h"

static const struct us_sock_ops udp_ops;

/* ---- receive queue ---- */
static bool rxq_empty(const struct us_rxq *q) { return q->head == q->tail; }

static int rxq_init(struct us_rxq *q, uint32_t bytes)
{
	q->rec = malloc(US_RXQ_SLOTS * sizeof(*q->rec));
	q->bytes = malloc(bytes);
	if (!q->rec || !q->bytes) {
		free(q->rec);
		free(q->bytes);
		return -ENOMEM;
	}
	q->cap = q->limit = bytes;
	q->head = q->tail = 0;
	q->rd = q->wr = 0;
	return 0;
}

static void rxq_free(struct us_rxq *q)
{
	free(q->rec);
	free(q->bytes);
	q->rec = NULL;
	q->bytes = NULL;
}

/* Room for len contiguous bytes; returns the record or NULL when full. */
static struct us_rxrec *rxq_push(struct us_rxq *q, uint32_t len)
{
	if (q->tail - q->head == US_RXQ_SLOTS)
		return NULL;
	uint32_t pos = q->wr % q->cap;
	uint32_t skip = pos + len > q->cap ? q->cap - pos : 0;  /* payloads never wrap */
	if (q->wr + skip + len - q->rd > q->limit)
		return NULL;
	struct us_rxrec *r = &q->rec[q->tail & (US_RXQ_SLOTS - 1)];
	r->off = q->wr + skip;
	r->len = len;
	q->wr += skip + len;
	q->tail++;
	return r;
}

static void rxq_pop(struct us_rxq *q)
{
	struct us_rxrec *r = &q->rec[q->head & (US_RXQ_SLOTS - 1)];
	q->head++;
	q->rd = q->head == q->tail ? q->wr : r->off + r->len;
}

static void clear_readable(struct us_sock *s)
{
	if (s->efd_set && rxq_empty(&s->q) && !s->error) {
		uint64_t v;
		if (read(s->efd, &v, sizeof(v)) < 0) { /* already zero */ }
		s->efd_set = 0;
	}
}

/* ---- input ---- */
static struct us_sock *lookup(struct us_stack *st, uint8_t family, const uint8_t *dst, uint16_t port)
{
	struct us_sock *wild = NULL;
	for (struct us_sock *s = st->udp_port[port]; s; s = s->port_next) {
		if (s->family != family)
			continue;
		if (us_addr_is_any(&s->local.addr))
			wild = s;
		else if (memcmp(s->local.addr.a, dst, family == US_AF4 ? 4 : 16) == 0)
			return s;
	}
	return wild;
}

void us_udp_input(struct us_stack *st, const struct us_parsed *p)
{
	int alen = p->ip.family == US_AF4 ? 4 : 16;
	struct us_sock *s = lookup(st, p->ip.family, p->ip.dst, p->udp.dport);
	if (!s) {
		st->stats->rx_no_socket++;
		return;
	}
	struct us_rxrec *r = rxq_push(&s->q, p->udp.data_len);
	if (!r) {
		st->stats->rx_queue_full++;
		return;
	}
	memset(&r->remote, 0, sizeof(r->remote) * 2);
	r->remote.addr.family = r->local.addr.family = p->ip.family;
	memcpy(r->remote.addr.a, p->ip.src, alen);
	memcpy(r->local.addr.a, p->ip.dst, alen);
	r->remote.port = p->udp.sport;
	r->local.port = p->udp.dport;
	memcpy(s->q.bytes + r->off % s->q.cap, p->udp.data, p->udp.data_len);
	st->stats->rx_udp++;
	if (s->q.tail - s->q.head == 1 || !s->in_ready)
		us_sock_notify(s);
}

/* ---- sockets ---- */
struct us_sock *us_udp_socket(struct us_stack *st, int family, int *err)
{
	if (family != US_AF4 && family != US_AF6) {
		*err = -EAFNOSUPPORT;
		return NULL;
	}
	struct us_sock *s = calloc(1, sizeof(*s));
	if (!s || rxq_init(&s->q, US_RXQ_DEFAULT_BYTES)) {
		free(s);
		*err = -ENOMEM;
		return NULL;
	}
	s->st = st;
	s->ops = &udp_ops;
	s->type = US_SOCK_UDP;
	s->family = family;
	s->local.addr.family = family;
	s->efd = -1;
	s->evmask = US_EV_IN | US_EV_ERR | US_EV_HUP;
	s->sp[0] = s->sp[1] = -1;
	pthread_mutex_lock(&st->lock);
	us_sock_link(s);
	pthread_mutex_unlock(&st->lock);
	*err = 0;
	return s;
}

static int bind_locked(struct us_sock *s, const struct us_endpoint *local)
{
	struct us_stack *st = s->st;
	struct us_endpoint ep = *local;
	if (s->bound)
		return -EINVAL;
	if (ep.addr.family == 0)
		ep.addr.family = s->family;
	if (ep.addr.family != s->family)
		return -EAFNOSUPPORT;
	if (!us_addr_is_any(&ep.addr) && !us_is_local_addr(st, &ep.addr))
		return -EADDRNOTAVAIL;
	if (ep.port == 0) {
		struct us_endpoint got;
		int r = us_eph_claim(st, US_IPPROTO_UDP, s->family, NULL, &got);
		if (r)
			return r;
		if (st->desc.ntuples == US_MAX_TUPLES) {
			us_eph_release(st, US_IPPROTO_UDP, &got);
			return -ENOSPC;
		}
		struct us_tuple *t = &st->desc.tuples[st->desc.ntuples++];
		memset(t, 0, sizeof(*t));
		t->proto = US_IPPROTO_UDP;
		t->port = got.port;
		t->addr = got.addr;
		ep.port = got.port;
		if (!us_addr_is_any(&got.addr))
			ep.addr = got.addr;
		s->ephemeral = 1;
	} else if (!us_tuple_claimed(st, US_IPPROTO_UDP, &ep)) {
		return -EACCES;
	}
	for (struct us_sock *o = st->udp_port[ep.port]; o; o = o->port_next)
		if (o->family == s->family &&
		    (us_addr_is_any(&o->local.addr) || us_addr_is_any(&ep.addr) ||
		     us_addr_eq(&o->local.addr, &ep.addr)))
			return -EADDRINUSE;
	s->local = ep;
	s->bound = 1;
	s->port_next = st->udp_port[ep.port];
	st->udp_port[ep.port] = s;
	return 0;
}

int us_udp_bind(struct us_sock *s, const struct us_endpoint *local)
{
	pthread_mutex_lock(&s->st->lock);
	int r = bind_locked(s, local);
	pthread_mutex_unlock(&s->st->lock);
	return r;
}

static void udp_close(struct us_sock *s)
{
	struct us_stack *st = s->st;
	if (s->bound) {
		for (struct us_sock **pp = &st->udp_port[s->local.port]; *pp; pp = &(*pp)->port_next)
			if (*pp == s) {
				*pp = s->port_next;
				break;
			}
		if (s->ephemeral) {
			us_eph_release(st, US_IPPROTO_UDP, &s->local);
			for (uint32_t i = 0; i < st->desc.ntuples; i++) {
				struct us_tuple *t = &st->desc.tuples[i];
				if (t->proto == US_IPPROTO_UDP && t->port == s->local.port &&
				    t->addr.family == s->family) {
					st->desc.tuples[i] = st->desc.tuples[--st->desc.ntuples];
					break;
				}
			}
		}
	}
	us_sock_unlink(s);
	if (s->efd >= 0)
		close(s->efd);
	s->efd = -1;
	rxq_free(&s->q);
	us_sock_release(s);
}

static int udp_set_rcvbuf(struct us_sock *s, uint32_t bytes)
{
	if (bytes < 2048)
		bytes = 2048;
	if (bytes > (64u << 20))
		return -EINVAL;
	if (bytes <= s->q.cap) {
		s->q.limit = bytes;
		return 0;
	}
	if (!rxq_empty(&s->q))
		return -EBUSY;
	uint8_t *b = malloc(bytes);
	if (!b)
		return -ENOMEM;
	free(s->q.bytes);
	s->q.bytes = b;
	s->q.cap = s->q.limit = bytes;
	s->q.rd = s->q.wr = 0;
	return 0;
}

static int udp_fileno(struct us_sock *s)
{
	if (s->efd < 0) {
		s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (s->efd < 0)
			return -errno;
		if (!rxq_empty(&s->q) || s->error)
			us_sock_notify(s);
	}
	return s->efd;
}

static int udp_take_error(struct us_sock *s)
{
	int e = s->error;
	s->error = 0;
	clear_readable(s);
	return e;
}

static uint32_t udp_events(struct us_sock *s)
{
	uint32_t e = US_EV_OUT;
	if (!rxq_empty(&s->q))
		e |= US_EV_IN;
	if (s->error)
		e |= US_EV_ERR;
	return e;
}

/* Always writable: asking for US_EV_OUT is an event at once. */
static void udp_set_events(struct us_sock *s, uint32_t events)
{
	if (events & US_EV_OUT)
		us_sock_notify(s);
}

static const struct us_sock_ops udp_ops = {
	.events = udp_events, .set_events = udp_set_events, .fileno = udp_fileno,
	.take_error = udp_take_error, .set_rcvbuf = udp_set_rcvbuf, .close = udp_close,
};

/* ---- send ---- */
static int send_locked(struct us_sock *s, const void *buf, size_t len, const struct us_endpoint *to,
		       const struct us_addr *want_src, int flags)
{
	struct us_stack *st = s->st;
	if (!to)
		return -EDESTADDRREQ;
	if (to->addr.family != s->family)
		return -EAFNOSUPPORT;
	if (to->port == 0 || us_addr_is_any(&to->addr))
		return -EINVAL;
	uint32_t l3 = us_l3_offset(s->family);
	if (len + l3 - US_ETH_HLEN + US_UDP_HLEN > st->desc.mtu ||
	    len + l3 + US_UDP_HLEN > st->dev->frame_room)
		return -EMSGSIZE;
	if (!s->bound) {
		struct us_endpoint any = { .addr = { .family = s->family } };
		int r = bind_locked(s, &any);
		if (r)
			return r == -EADDRNOTAVAIL ? -EDESTADDRREQ : r;
	}
	const struct us_addr *src = &s->local.addr;
	if (us_addr_is_any(src)) {
		if (want_src && want_src->family == s->family && !us_addr_is_any(want_src)) {
			if (!us_is_local_addr(st, want_src))
				return -EINVAL;
			src = want_src;
		} else if (!(src = us_pick_source(st, s->family))) {
			return -EADDRNOTAVAIL;
		}
	}
	struct us_frame f;
	if (st->dev->ops->tx_alloc(st->dev, st->tx_queue, &f)) {
		st->stats->tx_no_frame++;
		return -ENOBUFS;
	}
	uint8_t *udp = f.data + l3;
	memcpy(udp + US_UDP_HLEN, buf, len);
	us_udp_emit(udp, s->family, src->a, to->addr.a, s->local.port, to->port, (uint16_t)len);
	us_ip_output(st, &f, src, &to->addr, US_IPPROTO_UDP, US_UDP_HLEN + len);
	if (!(flags & US_MSG_MORE))
		us_dev_flush(st);
	return (int)len;
}

int us_udp_sendto(struct us_sock *s, const void *buf, size_t len, const struct us_endpoint *to,
		  int flags)
{
	pthread_mutex_lock(&s->st->lock);
	int r = send_locked(s, buf, len, to, NULL, flags);
	pthread_mutex_unlock(&s->st->lock);
	return r;
}

int us_udp_sendmsg(struct us_sock *s, const struct us_msg *m, int flags)
{
	pthread_mutex_lock(&s->st->lock);
	int r = send_locked(s, m->buf, m->len, &m->remote, &m->local.addr, flags);
	pthread_mutex_unlock(&s->st->lock);
	return r;
}

/* ---- receive ---- */
static uint32_t take(struct us_sock *s, void *buf, uint32_t cap, struct us_endpoint *from,
		     struct us_endpoint *local, uint32_t *full)
{
	struct us_rxrec *r = &s->q.rec[s->q.head & (US_RXQ_SLOTS - 1)];
	uint32_t n = r->len < cap ? r->len : cap;
	if (buf && n)
		memcpy(buf, s->q.bytes + r->off % s->q.cap, n);
	if (from)
		*from = r->remote;
	if (local)
		*local = r->local;
	*full = r->len;
	rxq_pop(&s->q);
	return n;
}

int us_udp_recvfrom(struct us_sock *s, void *buf, size_t len, struct us_endpoint *from,
		    int flags, int timeout_ms)
{
	struct us_stack *st = s->st;
	uint64_t deadline = timeout_ms < 0 ? UINT64_MAX : us_now_ns() + (uint64_t)timeout_ms * 1000000;
	int r;
	if (flags & US_MSG_DONTWAIT)
		timeout_ms = 0;
	pthread_mutex_lock(&st->lock);
	for (;;) {
		if (!rxq_empty(&s->q)) {
			uint32_t full;
			r = (int)take(s, buf, len > UINT32_MAX ? UINT32_MAX : (uint32_t)len, from, NULL, &full);
			clear_readable(s);
			break;
		}
		if (s->error) {
			r = s->error;
			s->error = 0;
			clear_readable(s);
			break;
		}
		uint64_t now = us_now_ns();
		if (timeout_ms == 0 || now >= deadline) {
			r = -EAGAIN;
			break;
		}
		if (us_sock_block_locked(s, US_EV_IN | US_EV_ERR, deadline)) {
			r = -EBADF;                /* closed by another thread meanwhile */
			break;
		}
	}
	pthread_mutex_unlock(&st->lock);
	return r;
}

int us_udp_recvmmsg(struct us_sock *s, struct us_msg *msgs, int n)
{
	int i = 0;
	pthread_mutex_lock(&s->st->lock);
	for (; i < n && !rxq_empty(&s->q); i++) {
		struct us_msg *m = &msgs[i];
		m->len = take(s, m->buf, m->len, &m->remote, &m->local, &m->full_len);
		m->flags = m->full_len > m->len ? US_MSG_TRUNC : 0;
	}
	clear_readable(s);
	pthread_mutex_unlock(&s->st->lock);
	return i;
}
