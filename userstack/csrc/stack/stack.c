/* stack.c: the stack object, its lock, the poll loop and socket readiness (see stack.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include "stack.h"
#include "../dev/xsk.h"

enum { EP_WAKE = 1000, EP_TIMER, EP_CTL };

uint64_t us_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static int ep_add(int epfd, int fd, uint32_t tag)
{
	struct epoll_event e = { .events = EPOLLIN, .data.u32 = tag };
	return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e) < 0 ? -errno : 0;
}

static void stats_point(struct us_stack *st, struct us_shared_stats *page)
{
	st->stats = &page->stack;
	st->tcp_stats = &page->tcp;
}

/* Counters in the launcher's shared page when the description has one, else in the stack. */
static int stats_map(struct us_stack *st, const struct us_desc *d)
{
	struct stat sb;
	stats_point(st, &st->own_stats);
	if (!d->stats_size)
		return 0;
	if (d->stats_size < sizeof(struct us_shared_stats) || fstat(d->stats_fd, &sb) < 0 ||
	    (uint64_t)sb.st_size < d->stats_size)
		return -EINVAL;
	void *p = mmap(NULL, d->stats_size, PROT_READ | PROT_WRITE, MAP_SHARED, d->stats_fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	stats_point(st, p);
	return 0;
}

static void stats_unmap(struct us_stack *st)
{
	if (st->stats != &st->own_stats.stack)
		munmap(st->stats, st->desc.stats_size);     /* stack is the page's first member */
	stats_point(st, &st->own_stats);
}

struct us_stack *us_stack_open_dev(const struct us_desc *d, struct us_netdev *dev, int *err)
{
	int r;
	struct us_stack *st = calloc(1, sizeof(*st));
	if (!st) {
		*err = -ENOMEM;
		return NULL;
	}
	st->desc = *d;
	st->dev = st->base_dev = dev;
	st->epfd = st->wakefd = st->timerfd = -1;
	st->ctlfd = d->ctl_fd;
	stats_point(st, &st->own_stats);
	st->parse_flags = d->local_peer ? US_PARSE_LOCAL_PEER : 0;
	pthread_mutex_init(&st->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&st->cond, &ca);
	pthread_condattr_destroy(&ca);
	st->udp_port = calloc(65536, sizeof(*st->udp_port));
	st->epfd = epoll_create1(EPOLL_CLOEXEC);
	st->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	st->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (!st->udp_port) {
		r = -ENOMEM;
		goto fail;
	}
	if (st->epfd < 0 || st->wakefd < 0 || st->timerfd < 0) {
		r = -errno;
		goto fail;
	}
	if ((r = stats_map(st, d)))
		goto fail;
	for (int i = 0; i < dev->nfds; i++)
		if ((r = ep_add(st->epfd, dev->fds[i], i)))
			goto fail;
	if ((r = ep_add(st->epfd, st->wakefd, EP_WAKE)) || (r = ep_add(st->epfd, st->timerfd, EP_TIMER)))
		goto fail;
	if (st->ctlfd >= 0) {
		fcntl(st->ctlfd, F_SETFL, fcntl(st->ctlfd, F_GETFL) | O_NONBLOCK);
		if ((r = ep_add(st->epfd, st->ctlfd, EP_CTL)))
			goto fail;
	}
	st->now = us_now_ns();
	st->ip_id = (uint16_t)(st->now ^ getpid());
	struct us_tcp_opts o;
	us_tcp_opts_default(&o);
	if ((r = us_tcp_open(st, &o)))
		goto fail;
	*err = 0;
	return st;
fail:
	/* the device stays the caller's on failure */
	if (st->epfd >= 0) close(st->epfd);
	if (st->wakefd >= 0) close(st->wakefd);
	if (st->timerfd >= 0) close(st->timerfd);
	stats_unmap(st);
	free(st->udp_port);
	free(st);
	*err = r;
	return NULL;
}

struct us_stack *us_stack_open(const struct us_desc *d, int *err)
{
	struct us_netdev *dev = us_xdev_open(d, err);
	if (!dev)
		return NULL;
	struct us_stack *st = us_stack_open_dev(d, dev, err);
	if (!st) {
		dev->ops->destroy(dev);
		return NULL;
	}
	st->is_xdev = 1;
	int r = us_stack_apply_env(st);    /* XDPSTACK_CC, XDPSTACK_TCP, XDPSTACK_FAULTS */
	if (r) {
		st->desc.owns_fds = 0;             /* the caller's, on failure */
		us_stack_close(st);
		*err = r;
		return NULL;
	}
	return st;
}

struct us_stack *us_stack_open_env(int *err)
{
	struct us_desc *d = calloc(1, sizeof(*d));
	if (!d) {
		*err = -ENOMEM;
		return NULL;
	}
	int r = us_desc_from_env(d);
	struct us_stack *st = NULL;
	if (r)
		*err = r;
	else
		st = us_stack_open(d, err);
	free(d);
	return st;
}

void us_stack_close(struct us_stack *st)
{
	if (!st)
		return;
	us_driver_stop(st);
	pthread_mutex_lock(&st->lock);
	for (struct us_sock *s = st->all, *next; s; s = next) {
		next = s->all_next;
		if (s->type == US_SOCK_UDP)
			us_udp_close_locked(s);
	}
	us_tcp_close_all(st);              /* closing connections get linger_ms to finish */
	us_neigh_flush_all(st);
	us_stack_flush_locked(st);
	pthread_mutex_unlock(&st->lock);
	st->dev->ops->destroy(st->dev);
	close(st->epfd);
	close(st->wakefd);
	close(st->timerfd);
	if (st->desc.owns_fds) {
		for (uint32_t i = 0; i < st->desc.nqueues; i++)
			close(st->desc.queues[i].fd);
		close(st->desc.umem_fd);
		if (st->ctlfd >= 0)
			close(st->ctlfd);
		if (st->desc.stats_size)
			close(st->desc.stats_fd);
	}
	stats_unmap(st);
	free(st->udp_port);
	pthread_mutex_destroy(&st->lock);
	pthread_cond_destroy(&st->cond);
	free(st);
}

/* ---- readiness ---- */
static uint32_t sock_events(struct us_sock *s)
{
	if (s->type == US_SOCK_TCP)
		return us_tcp_events(s);
	uint32_t e = US_EV_OUT;
	if (!us_rxq_empty(&s->q))
		e |= US_EV_IN;
	if (s->error)
		e |= US_EV_ERR;
	return e;
}

void us_sock_mark_ready(struct us_sock *s)
{
	if (s->type == US_SOCK_TCP) {
		us_tcp_refresh(s);
		return;
	}
	struct us_stack *st = s->st;
	if (!s->in_ready) {
		s->in_ready = 1;
		s->ready_next = st->ready;
		st->ready = s;
	}
	if (s->efd >= 0 && !s->efd_set) {
		uint64_t one = 1;
		if (write(s->efd, &one, sizeof(one)) == sizeof(one))
			s->efd_set = 1;
	}
	if (st->waiters)
		pthread_cond_broadcast(&st->cond);
}

static int collect(struct us_stack *st, struct us_event *ev, int max)
{
	int n = 0;
	struct us_sock **pp = &st->ready;
	while (*pp && n < max) {
		struct us_sock *s = *pp;
		uint32_t e = sock_events(s) & s->evmask;
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

/* ---- sockets: common ---- */
void us_sock_link(struct us_sock *s)
{
	struct us_stack *st = s->st;
	s->all_prev = NULL;
	s->all_next = st->all;
	if (st->all)
		st->all->all_prev = s;
	st->all = s;
}

void us_sock_unlink(struct us_sock *s)
{
	struct us_stack *st = s->st;
	if (s->in_ready) {
		for (struct us_sock **pp = &st->ready; *pp; pp = &(*pp)->ready_next)
			if (*pp == s) {
				*pp = s->ready_next;
				break;
			}
		s->in_ready = 0;
	}
	if (s->all_prev)
		s->all_prev->all_next = s->all_next;
	else
		st->all = s->all_next;
	if (s->all_next)
		s->all_next->all_prev = s->all_prev;
	s->all_next = s->all_prev = NULL;
}

void us_sock_release(struct us_sock *s)
{
	if (s->waiting) {
		s->closed = 1;                 /* the last waiter frees it */
		pthread_cond_broadcast(&s->st->cond);
		return;
	}
	free(s);
}

int us_sock_block_locked(struct us_sock *s, uint32_t want, uint64_t deadline)
{
	struct us_stack *st = s->st;
	uint64_t now = us_now_ns();
	s->waiting++;
	if (st->driver_running) {
		struct timespec ts;
		uint64_t until = deadline == UINT64_MAX || deadline > now + 3600000000000ull
			? now + 3600000000000ull : deadline;
		ts.tv_sec = until / 1000000000ull;
		ts.tv_nsec = until % 1000000000ull;
		st->waiters++;
		pthread_cond_timedwait(&st->cond, &st->lock, &ts);
		st->waiters--;
	} else {
		/* no driver thread: drive the stack from here, sleeping in its epoll */
		us_poll_locked(st);
		if (!s->closed && !(sock_events(s) & want)) {
			uint64_t ms = deadline == UINT64_MAX ? 1000 : (deadline - now + 999999) / 1000000;
			us_sleep_locked(st, ms > 1000 ? 1000 : (int)ms);
		}
	}
	s->waiting--;
	if (s->closed) {
		if (!s->waiting)
			free(s);
		return -EBADF;
	}
	return 0;
}

int us_sock_wait(struct us_sock *s, uint32_t events, int timeout_ms)
{
	struct us_stack *st = s->st;
	uint64_t deadline = timeout_ms < 0 ? UINT64_MAX : us_now_ns() + (uint64_t)timeout_ms * 1000000;
	uint32_t want = events | US_EV_ERR | US_EV_HUP;
	int r;
	pthread_mutex_lock(&st->lock);
	for (;;) {
		uint32_t e = sock_events(s) & want;
		if (e) {
			r = (int)e;
			break;
		}
		if (timeout_ms == 0 || us_now_ns() >= deadline) {
			r = 0;
			break;
		}
		if (s->type == US_SOCK_TCP && (want & US_EV_OUT))
			us_tcp_want_writable(s);
		if (us_sock_block_locked(s, want, deadline)) {
			r = -EBADF;
			break;
		}
	}
	pthread_mutex_unlock(&st->lock);
	return r;
}

int us_sock_close(struct us_sock *s)
{
	struct us_stack *st = s->st;
	pthread_mutex_lock(&st->lock);
	if (s->type == US_SOCK_UDP)
		us_udp_close_locked(s);
	else
		us_tcp_close_locked(s);
	pthread_cond_broadcast(&st->cond);
	pthread_mutex_unlock(&st->lock);
	return 0;
}

int us_sock_fileno(struct us_sock *s)
{
	pthread_mutex_lock(&s->st->lock);
	int fd = s->type == US_SOCK_UDP ? us_udp_fileno_locked(s) : us_tcp_fileno_locked(s);
	pthread_mutex_unlock(&s->st->lock);
	return fd;
}

void us_sock_set_user(struct us_sock *s, void *user)
{
	pthread_mutex_lock(&s->st->lock);
	s->user = user;
	pthread_mutex_unlock(&s->st->lock);
}

int us_sock_set_events(struct us_sock *s, uint32_t events)
{
	pthread_mutex_lock(&s->st->lock);
	s->evmask = events;
	if (s->type == US_SOCK_UDP ? (events & US_EV_OUT) : (sock_events(s) & events))
		us_sock_mark_ready(s);
	if (s->type == US_SOCK_TCP && (events & US_EV_OUT) && !(sock_events(s) & US_EV_OUT))
		us_tcp_want_writable(s);
	pthread_mutex_unlock(&s->st->lock);
	return 0;
}

int us_sock_local(struct us_sock *s, struct us_endpoint *out)
{
	pthread_mutex_lock(&s->st->lock);
	int r = s->bound ? 0 : -EINVAL;
	*out = s->local;
	if (s->type == US_SOCK_TCP && s->tcp) {
		struct us_endpoint l;
		tcp_sock_local(s->tcp, &l);
		if (l.port) {                  /* connected: the port the connection uses */
			*out = l;
			r = 0;
		}
	}
	pthread_mutex_unlock(&s->st->lock);
	return r;
}

int us_sock_set_rcvbuf(struct us_sock *s, uint32_t bytes)
{
	pthread_mutex_lock(&s->st->lock);
	int r;
	if (s->type == US_SOCK_UDP)
		r = us_udp_set_rcvbuf_locked(s, bytes);
	else
		r = tcp_setopt(s->tcp, TCP_OPT_RCVBUF, bytes > INT32_MAX ? INT32_MAX : (int)bytes);
	pthread_mutex_unlock(&s->st->lock);
	return r;
}

int us_sock_error(struct us_sock *s)
{
	pthread_mutex_lock(&s->st->lock);
	int e;
	if (s->type == US_SOCK_UDP) {
		e = us_udp_error_locked(s);
	} else {
		int v = 0;
		us_tcp_getsockopt_locked(s, US_SO_ERROR, &v);
		e = -v;
	}
	pthread_mutex_unlock(&s->st->lock);
	return e;
}

/* ---- the poll loop ---- */
int us_stack_flush_locked(struct us_stack *st)
{
	int left = st->dev->ops->flush(st->dev);
	if (st->is_xdev)
		us_xdev_kicks(st->base_dev, &st->stats->tx_kicks, &st->stats->tx_kick_again);
	return left;
}

/* A batch in: control messages (every 64 polls), RX bursts, neighbour and TCP timers. What the
 * received segments call for is queued, not sent (timers send what they must). */
/* Every waiting control message, each to its owner: neighbour updates to neigh.c, CLAIMED
 * answers to the ephemeral ports (eph.c). ctl.c only carries them. */
void us_stack_ctl_input(struct us_stack *st)
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
		us_stack_ctl_input(st);
	}
	for (int q = 0; q < dev->nqueues; q++) {
		for (int b = 0; b < US_RX_BUDGET; b++) {
			int n = dev->ops->rx_burst(dev, q, f, US_RX_BATCH);
			if (n <= 0)
				break;
			for (int i = 0; i < n; i++) {
				if (i + 1 < n)
					__builtin_prefetch(f[i + 1].data);
				us_ip_input(st, &f[i]);
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

/* A batch out: TCP output (hold: the application gets events now, see us_tcp_output), then the
 * device, one TX kick for the whole batch. */
static void poll_out(struct us_stack *st, bool hold)
{
	us_tcp_output(st, hold);
	us_stack_flush_locked(st);
	st->tx_pending = 0;
}

int us_poll_locked(struct us_stack *st)
{
	int n = poll_in(st);
	poll_out(st, false);
	return n;
}

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
		if (evs[i].data.u32 == EP_WAKE) {
			if (read(st->wakefd, &v, sizeof(v)) < 0) { /* already drained */ }
		} else if (evs[i].data.u32 == EP_TIMER) {
			if (read(st->timerfd, &v, sizeof(v)) < 0) { /* already drained */ }
		} else if (evs[i].data.u32 == EP_CTL) {
			us_stack_ctl_input(st);
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
	int r = us_stack_flush_locked(st);
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

void us_stack_arm_timer(struct us_stack *st, uint64_t deadline_ns)
{
	struct itimerspec its = { 0 };
	its.it_value.tv_sec = deadline_ns / 1000000000ull;
	its.it_value.tv_nsec = deadline_ns % 1000000000ull;
	timerfd_settime(st->timerfd, TFD_TIMER_ABSTIME, &its, NULL);
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

/* ---- information ---- */
void us_stack_stats(struct us_stack *st, struct us_stats *out)
{
	pthread_mutex_lock(&st->lock);
	*out = *st->stats;
	pthread_mutex_unlock(&st->lock);
}

int us_stack_xdp_stats(struct us_stack *st, int q, struct us_xdp_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (!st->is_xdev)
		return -EOPNOTSUPP;
	pthread_mutex_lock(&st->lock);
	int r = us_xdev_stats(st->base_dev, q, out);
	if (!r)
		out->rx_frames = st->q_rx[q];
	pthread_mutex_unlock(&st->lock);
	return r;
}

const struct us_desc *us_stack_desc(struct us_stack *st)
{
	return &st->desc;
}

int us_neigh_set(struct us_stack *st, const struct us_addr *dst, const uint8_t *mac)
{
	if (dst->family != US_AF4 && dst->family != US_AF6)
		return -EAFNOSUPPORT;
	pthread_mutex_lock(&st->lock);
	us_neigh_update(st, dst, mac);
	us_stack_flush_locked(st);
	pthread_mutex_unlock(&st->lock);
	return 0;
}

/* Options applied to the stack (opts.c only parses them). */
int us_stack_faults_configure(struct us_stack *st, const char *spec)
{
	struct us_fault_config c;
	int r = us_faults_parse(&c, spec);
	return r ? r : us_stack_set_faults(st, &c);
}

int us_stack_apply_env(struct us_stack *st)
{
	const char *cc = getenv("XDPSTACK_CC"), *tcp = getenv("XDPSTACK_TCP");
	const char *faults = getenv("XDPSTACK_FAULTS");
	if ((cc && *cc) || (tcp && *tcp)) {
		pthread_mutex_lock(&st->lock);
		struct us_tcp_opts o = st->topts;
		int r = 0;
		if (cc && *cc)
			r = us_tcp_cc_parse(cc, &o.cfg.cc);
		if (!r)
			r = us_tcp_opts_parse(&o, tcp);
		if (!r)
			r = us_tcp_open(st, &o);
		pthread_mutex_unlock(&st->lock);
		if (r)
			return r;
	}
	if (faults && *faults)
		return us_stack_faults_configure(st, faults);
	return 0;
}
