/* tcp_glue.c: the TCP core (../tcp/, contract in tcp/tcp.h) wired into the stack (tcp_glue.h).
 *
 *   in     the poll loop hands every checksummed TCP segment to us_tcp_input -> tcp_input
 *   out    emit: IP + Ethernet around the core's header and payload in one TX frame (one copy
 *          from the send ring), checksum over the pseudo-header; -ENOBUFS when no frame is free
 *   poll   us_tcp_timers after the batch's RX (claims expired, timers due, writability),
 *          us_tcp_output once per batch: tcp_flush (writes coalesce, ACKs ride on data), the
 *          timerfd armed for tcp_next_deadline
 *   calls  socket calls (tcp_calls.c) only queue: their output (data written with US_MSG_MORE,
 *          window updates after reads, FINs, RSTs, SYNs) leaves at the batch flush, one TX kick
 *          for everything, unless a driver thread may be asleep (Python's blocking sockets):
 *          then at once (us_tcp_flush_soon)
 *   ports  active opens take an ephemeral port from eph.c: a pooled one at once, else the
 *          connect waits in the background (EINPROGRESS) for eph_ready, never the stack
 *   ready  the core's on_event ends in us_tcp_refresh (tcp_ready.c)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/timerfd.h>
#include "eph.h"
#include "ip.h"
#include "sock.h"
#include "tcp_glue.h"

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
	tcp_flush(st->tcp, us_tcp_now_us(st));
	for (int i = 0; i < 8 && tcp_tx_blocked(st->tcp); i++) {
		us_dev_flush(st);         /* copy mode completes at the kick: frames return */
		st->tx_pending = 0;
		tcp_flush(st->tcp, us_tcp_now_us(st));
	}
	if (st->tx_pending) {
		us_dev_flush(st);
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
void us_tcp_flush_soon(struct us_stack *st)
{
	if (st->driver_running) {
		us_tcp_touch_clock(st);
		flush_now(st);
	}
}

/* ---- ports ---- */
static void hook_event(void *ctx, struct tcp_sock *ts, unsigned events)
{
	(void)ctx;
	(void)events;
	struct us_sock *s = tcp_sock_user(ts);
	if (s)
		us_tcp_refresh(s);
}

/* tcp_connect asks for a port: the one us_tcp_start_connect was given. */
static int hook_bind(void *ctx, const struct us_endpoint *remote, struct us_endpoint *out)
{
	struct us_stack *st = ctx;
	(void)remote;
	if (!st->have_tcp_pick)
		return -EADDRNOTAVAIL;
	*out = st->tcp_pick;
	st->have_tcp_pick = 0;
	return 0;
}

/* A connection with an ephemeral port is gone: keep the port for the next connect, or give it
 * back to the launcher. */
static void hook_release(void *ctx, const struct us_endpoint *local)
{
	us_eph_put(ctx, local);
}

/* Hand the connect to the core; with local_pick the core's bind_ephemeral takes that port. */
void us_tcp_start_connect(struct us_sock *s, const struct us_endpoint *local_pick)
{
	struct us_stack *st = s->st;
	int r;
	if (local_pick) {
		st->tcp_pick = *local_pick;
		st->have_tcp_pick = 1;
		r = tcp_connect(s->tcp, &s->peer, NULL, us_tcp_now_us(st));
		st->have_tcp_pick = 0;
	} else {
		r = tcp_connect(s->tcp, &s->peer, &s->local, us_tcp_now_us(st));
	}
	if (r)
		s->error = r;
	else
		us_tcp_flush_soon(st);                    /* the SYN leaves at the next flush */
	us_tcp_refresh(s);
}

/* eph.c answers a connect that waited for its port. */
static void port_ready(struct us_sock *s, const struct us_endpoint *local, int err)
{
	if (err) {
		s->error = err;
		us_tcp_refresh(s);
	} else {
		us_tcp_start_connect(s, local);
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
	if (st->tcp)
		tcp_stack_free(st->tcp);
	tcp_stack_count_into(ts, st->tcp_stats);   /* counts on where the one before counted */
	st->tcp = ts;
	st->eph_ready = port_ready;
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
		st->poll_once(st);
		st->sleep(st, 5);
	}
	tcp_stack_free(st->tcp);       /* the ports of what is left go to eph.c (hook_release) */
	st->tcp = NULL;
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
	tcp_input(st->tcp, &src, &dst, p->ip.payload, p->ip.payload_len, us_tcp_now_us(st));
}

/* After the batch's RX: claims that timed out, timers due, sockets that became writable (the
 * core reports ACKed space only as a change). Timers send what they must at once. */
void us_tcp_timers(struct us_stack *st)
{
	struct tcp_stack *ts = st->tcp;
	uint64_t now = us_tcp_now_us(st);
	us_eph_expire(st);
	if (tcp_next_deadline(ts) <= now)
		tcp_timers(ts, now);
	us_tcp_writable_check(st);
}

/* The stack's timerfd at an absolute CLOCK_MONOTONIC deadline in ns. */
static void arm_timer(struct us_stack *st, uint64_t deadline_ns)
{
	struct itimerspec its = { 0 };
	its.it_value.tv_sec = deadline_ns / 1000000000ull;
	its.it_value.tv_nsec = deadline_ns % 1000000000ull;
	timerfd_settime(st->timerfd, TFD_TIMER_ABSTIME, &its, NULL);
}

/* The batch's TCP output, once per batch; hold: the application is about to get this batch's
 * events, so ACKs it may answer wait for its answer (tcp_flush_hold_acks). Then the timerfd. */
void us_tcp_output(struct us_stack *st, bool hold)
{
	struct tcp_stack *ts = st->tcp;
	if (hold) {
		tcp_flush_hold_acks(ts, us_tcp_now_us(st));
		if (tcp_tx_blocked(ts))
			flush_now(st);                     /* the ring filled: send and retry at once */
	} else {
		flush_now(st);
	}
	uint64_t next = tcp_next_deadline(ts);
	if (next != UINT64_MAX) {
		uint64_t ns = next * 1000;
		if (!st->timer_armed || ns < st->timer_armed || st->timer_armed <= st->now) {
			arm_timer(st, ns);
			st->timer_armed = ns;
		}
	}
}

void us_tcp_unlink(struct us_sock *s)
{
	struct us_stack *st = s->st;
	if (s->claim_seq)                      /* its port, when it comes, goes to a pool */
		us_eph_forget(st, s);
	us_tcp_wunblock(s);
	tcp_sock_set_user(s->tcp, NULL);
	s->tcp = NULL;
	st->tcp_socks--;
	us_tcp_fileno_close(s);
	us_sock_unlink(s);
}

void us_tcp_close_locked(struct us_sock *s)
{
	struct us_stack *st = s->st;
	struct tcp_sock *ts = s->tcp;
	us_tcp_unlink(s);
	tcp_close(ts);
	us_tcp_flush_soon(st);                        /* the FIN rides on the last data */
	us_sock_release(s);
}

/* ---- the socket's ops (sock.h) ---- */
static void tcp_set_events(struct us_sock *s, uint32_t events)
{
	uint32_t now = us_tcp_events(s);
	if (now & events)
		us_tcp_refresh(s);
	if ((events & US_EV_OUT) && !(now & US_EV_OUT))
		us_tcp_want_writable(s);
}

/* SO_ERROR: a connect that failed before it reached the core, else the core's. */
static int tcp_take_error(struct us_sock *s)
{
	int e = s->error, v = 0;
	s->error = 0;
	if (!e && tcp_getopt(s->tcp, TCP_OPT_ERROR, &v) == 0)
		e = -v;
	us_tcp_refresh(s);
	return e;
}

static int tcp_set_rcvbuf(struct us_sock *s, uint32_t bytes)
{
	return tcp_setopt(s->tcp, TCP_OPT_RCVBUF, bytes > INT32_MAX ? INT32_MAX : (int)bytes);
}

/* Connected: the port the connection uses (an ephemeral one is not in s->local). */
static int tcp_local(struct us_sock *s, struct us_endpoint *out)
{
	struct us_endpoint l;
	if (!s->tcp)
		return -ENOTCONN;
	tcp_sock_local(s->tcp, &l);
	if (!l.port)
		return -ENOTCONN;
	*out = l;
	return 0;
}

const struct us_sock_ops us_tcp_sock_ops = {
	.events = us_tcp_events, .set_events = tcp_set_events, .want_writable = us_tcp_want_writable,
	.fileno = us_tcp_fileno_locked, .take_error = tcp_take_error, .set_rcvbuf = tcp_set_rcvbuf,
	.local = tcp_local, .close = us_tcp_close_locked,
};
