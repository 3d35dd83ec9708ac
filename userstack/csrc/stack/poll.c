/* poll.c: the one poll loop (poll.h). Each round: control messages to their owners (neigh.c,
 * eph.c), received frames checked and handed to UDP or TCP, neighbour and TCP timers, then the
 * batch's TCP output and one device flush. us_wait, us_poll and the driver thread run it; files
 * below it reach it only through the hooks us_poll_install puts in the stack. */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include "capture.h"
#include "ctl_io.h"
#include "eph.h"
#include "ip.h"
#include "neigh.h"
#include "poll.h"
#include "sock.h"
#include "tcp_glue.h"
#include "udp.h"

/* ---- input ---- */
/* Every waiting control message, each to its owner: neighbour updates to neigh.c, CLAIMED
 * answers to the ephemeral ports (eph.c). ctl.c only carries them. */
static void ctl_input(struct us_stack *st)
{
	union us_ctl_msg m;
	while (us_ctl_recv(st, &m)) {
		switch (m.hdr.type) {
		case US_CTL_NEIGH:
			if (m.neigh.dst.family != US_AF4 && m.neigh.dst.family != US_AF6) {
				st->stats->ctl_bad++;
				break;
			}
			us_neigh_update(st, &m.neigh.dst,
					m.neigh.status == US_NEIGH_OK ? m.neigh.mac : NULL);
			break;
		case US_CTL_CLAIMED:
			us_eph_claimed(st, &m);
			break;
		default:
			st->stats->ctl_bad++;
		}
	}
}

/* One received frame, checked once (Ethernet, IP, the transport header and checksum: us_frame_parse),
 * counted, and handed to UDP or TCP when it is for one of the stack's addresses. */
static void rx_frame(struct us_stack *st, const struct us_frame *f)
{
	struct us_parsed p;
	struct us_stats *c = st->stats;    /* loaded once (the build has no strict aliasing) */
	c->rx_frames++;
	c->rx_bytes += f->len;
	us_cap(st, f->data, f->len, US_CAP_IN);
	int r = us_frame_parse(f->data, f->len, st->parse_flags, &p);
	if (r) {
		switch (r) {
		case US_WIRE_BAD_CSUM: c->rx_bad_csum++; break;
		case US_WIRE_FRAGMENT: c->rx_fragment++; break;
		case US_WIRE_UNSUPPORTED: c->rx_other_proto++; break;
		default: c->rx_malformed++; break;
		}
		return;
	}
	c->rx_csum_partial += p.csum_partial;
	struct us_addr dst = { .family = p.ip.family };
	memcpy(dst.a, p.ip.dst, p.ip.family == US_AF4 ? 4 : 16);
	if (!us_is_local_addr(st, &dst)) {
		c->rx_not_local++;
		return;
	}
	if (p.ip.proto == US_IPPROTO_UDP) {
		us_udp_input(st, &p);
	} else {
		c->rx_tcp++;
		us_tcp_input(st, &p);
	}
}

/* A batch in: control messages (now and then), RX bursts, neighbour and TCP timers. What the
 * received segments call for is queued, not sent (timers send what they must). */
static int poll_in(struct us_stack *st)
{
	struct us_frame f[US_RX_BATCH];
	struct us_netdev *dev = st->dev;
	int total = 0;
	st->now = us_now_ns();
	st->stats->polls++;
	/* Control messages wake a sleeping stack (epoll); one that never sleeps reads them now and
	 * then (a syscall: not every poll, and by time when spinning, where polls come fast). */
	if (st->ctlfd >= 0 && (st->desc.busy_poll ? st->now - st->ctl_polled >= US_CTL_POLL_NS
						  : !(st->stats->polls & 63))) {
		st->ctl_polled = st->now;
		ctl_input(st);
	}
	us_cap_poll(st);                   /* a capture started or ended: one shared load */
	for (int q = 0; q < dev->nqueues; q++) {
		for (int b = 0; b < US_RX_BUDGET; b++) {
			int n = dev->ops->rx_burst(dev, q, f, US_RX_BATCH);
			if (n <= 0)
				break;
			for (int i = 0; i < n; i++) {
				if (i + 1 < n)
					__builtin_prefetch(f[i + 1].data);
				rx_frame(st, &f[i]);
			}
			dev->ops->rx_release(dev, q, f, n);
			st->q_rx[q] += n;
			total += n;
			if (n < US_RX_BATCH)
				break;
		}
	}
	if (st->neigh_pending)
		us_neigh_timers(st);
	us_tcp_timers(st);
	return total;
}

/* ---- output ---- */
/* A batch out: TCP output (hold: the application gets events now, see us_tcp_output), then the
 * device, one TX kick for the whole batch. */
static void poll_out(struct us_stack *st, bool hold)
{
	us_tcp_output(st, hold);
	us_dev_flush(st);
	st->tx_pending = 0;
}

int us_poll_locked(struct us_stack *st)
{
	int n = poll_in(st);
	poll_out(st, false);
	return n;
}

/* ---- waiting ---- */
/* Sleep in epoll for up to timeout_ms with the lock released. */
int us_sleep_locked(struct us_stack *st, int timeout_ms)
{
	struct epoll_event evs[16];
	if (st->neigh_pending && (timeout_ms < 0 || timeout_ms > 100))
		timeout_ms = 100;          /* held frames time out */
	if (us_tcp_tx_blocked(st) && (timeout_ms < 0 || timeout_ms > 1))
		timeout_ms = 1;            /* segments wait for TX frames: retry soon */
	if (st->desc.busy_poll) {
		pthread_mutex_unlock(&st->lock);
		int pauses = st->driver_running ? US_BUSY_PAUSES_SHARED : US_BUSY_PAUSES;
		for (int i = 0; i < pauses; i++)
			__builtin_ia32_pause();
		pthread_mutex_lock(&st->lock);
		st->spins++;               /* the control channel: poll_in, which follows */
		return 0;
	}
	st->dev->ops->pre_sleep(st->dev);
	st->stats->wakeups++;
	pthread_mutex_unlock(&st->lock);
	int n = epoll_wait(st->epfd, evs, 16, timeout_ms);
	int e = errno;
	pthread_mutex_lock(&st->lock);
	if (n < 0)
		return -e;
	uint64_t v;
	for (int i = 0; i < n; i++) {
		if (evs[i].data.u32 == US_EP_WAKE) {
			if (read(st->wakefd, &v, sizeof(v)) < 0) { /* already drained */ }
		} else if (evs[i].data.u32 == US_EP_TIMER) {
			if (read(st->timerfd, &v, sizeof(v)) < 0) { /* already drained */ }
		} else if (evs[i].data.u32 == US_EP_CTL) {
			ctl_input(st);
		}
	}
	return n;
}

static int remaining_ms(uint64_t now, uint64_t deadline)
{
	if (now >= deadline)
		return 0;
	uint64_t ms = (deadline - now + 999999) / 1000000;
	return ms > 1000000 ? 1000000 : (int)ms;
}

/* ---- the calls of ../api.h ---- */
static int collect(struct us_stack *st, struct us_event *ev, int max)
{
	int n = 0;
	struct us_sock **pp = &st->ready;
	while (*pp && n < max) {
		struct us_sock *s = *pp;
		uint32_t e = s->ops->events(s) & s->evmask;
		if (!e) {
			*pp = s->ready_next;       /* nothing pending: off the list until the next event */
			s->in_ready = 0;
			continue;
		}
		ev[n].sock = s;
		ev[n].user = s->user;
		ev[n].events = e;
		ev[n].pad = 0;
		n++;
		pp = &s->ready_next;
	}
	return n;
}

/* Events are collected between the batch's input and its output: when the application gets
 * some, the ACKs it may answer wait for its answer (us_tcp_output), which leaves with them at the
 * next us_wait (or us_flush). */
int us_wait(struct us_stack *st, struct us_event *ev, int max, int timeout_ms)
{
	uint64_t deadline = 0;
	int n;
	pthread_mutex_lock(&st->lock);
	for (;;) {
		poll_in(st);
		n = collect(st, ev, max);
		poll_out(st, n > 0);
		if (n == 0)
			n = collect(st, ev, max);      /* readiness the output changed */
		if (n > 0 || timeout_ms == 0)
			break;
		if (__atomic_exchange_n(&st->woken, 0, __ATOMIC_ACQ_REL))
			break;                     /* us_wake: even one that came before the sleep */
		if (!deadline)                     /* st->now: read by the first poll */
			deadline = timeout_ms < 0 ? UINT64_MAX : st->now + (uint64_t)timeout_ms * 1000000;
		int left = timeout_ms < 0 ? -1 : remaining_ms(st->now, deadline);
		if (left == 0)
			break;
		int r = us_sleep_locked(st, left);
		if (r == -EINTR) {
			n = -EINTR;
			break;
		}
	}
	pthread_mutex_unlock(&st->lock);
	return n;
}

int us_poll(struct us_stack *st, int timeout_ms)
{
	pthread_mutex_lock(&st->lock);
	int n = us_poll_locked(st);
	if (n == 0 && timeout_ms != 0 && !__atomic_exchange_n(&st->woken, 0, __ATOMIC_ACQ_REL)) {
		int r = us_sleep_locked(st, timeout_ms);
		n = us_poll_locked(st);
		if (n == 0 && r == -EINTR)
			n = -EINTR;
	}
	pthread_mutex_unlock(&st->lock);
	return n;
}

int us_flush(struct us_stack *st)
{
	pthread_mutex_lock(&st->lock);
	st->now = us_now_ns();
	us_tcp_flush_locked(st);           /* TCP writes made with US_MSG_MORE */
	int r = us_dev_flush(st);
	st->tx_pending = 0;
	pthread_mutex_unlock(&st->lock);
	return r;
}

void us_wake(struct us_stack *st)
{
	uint64_t one = 1;
	__atomic_store_n(&st->woken, 1, __ATOMIC_RELEASE);
	if (write(st->wakefd, &one, sizeof(one)) < 0) { /* counter saturated: already awake */ }
}

int us_stack_fd(struct us_stack *st)
{
	return st->epfd;
}

static void *driver_main(void *arg)
{
	struct us_stack *st = arg;
	while (!st->driver_stop)
		us_poll(st, 500);
	return NULL;
}

int us_driver_start(struct us_stack *st)
{
	pthread_mutex_lock(&st->lock);
	int r = 0;
	if (!st->driver_running) {
		st->driver_stop = 0;
		r = -pthread_create(&st->driver, NULL, driver_main, st);
		if (!r)
			st->driver_running = 1;
	}
	pthread_mutex_unlock(&st->lock);
	return r;
}

void us_driver_stop(struct us_stack *st)
{
	pthread_mutex_lock(&st->lock);
	int running = st->driver_running;
	st->driver_stop = 1;
	pthread_mutex_unlock(&st->lock);
	if (!running)
		return;
	us_wake(st);
	pthread_join(st->driver, NULL);
	pthread_mutex_lock(&st->lock);
	st->driver_running = 0;
	pthread_cond_broadcast(&st->cond);
	pthread_mutex_unlock(&st->lock);
}

void us_poll_install(struct us_stack *st)
{
	st->poll_once = us_poll_locked;
	st->sleep = us_sleep_locked;
	st->ctl_input = ctl_input;
}
