/* sock.c: the socket base (sock.h): the stack's list of sockets, readiness, one wait, and the
 * us_sock_* calls of ../api.h. What differs between UDP and TCP is behind s->ops (udp.c,
 * tcp_glue.c); with no driver thread, a wait drives the stack through the poll loop's hooks. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>
#include "sock.h"

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

void us_sock_notify(struct us_sock *s)
{
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
		st->poll_once(st);
		if (!s->closed && !(s->ops->events(s) & want)) {
			uint64_t ms = deadline == UINT64_MAX ? 1000 : (deadline - now + 999999) / 1000000;
			st->sleep(st, ms > 1000 ? 1000 : (int)ms);
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

/* ---- the us_sock_* calls ---- */
int us_sock_wait(struct us_sock *s, uint32_t events, int timeout_ms)
{
	struct us_stack *st = s->st;
	uint64_t deadline = timeout_ms < 0 ? UINT64_MAX : us_now_ns() + (uint64_t)timeout_ms * 1000000;
	uint32_t want = events | US_EV_ERR | US_EV_HUP;
	int r;
	pthread_mutex_lock(&st->lock);
	for (;;) {
		uint32_t e = s->ops->events(s) & want;
		if (e) {
			r = (int)e;
			break;
		}
		if (timeout_ms == 0 || us_now_ns() >= deadline) {
			r = 0;
			break;
		}
		if ((want & US_EV_OUT) && s->ops->want_writable)
			s->ops->want_writable(s);
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
	s->ops->close(s);
	pthread_cond_broadcast(&st->cond);
	pthread_mutex_unlock(&st->lock);
	return 0;
}

int us_sock_fileno(struct us_sock *s)
{
	pthread_mutex_lock(&s->st->lock);
	int fd = s->ops->fileno(s);
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
	s->ops->set_events(s, events);
	pthread_mutex_unlock(&s->st->lock);
	return 0;
}

int us_sock_local(struct us_sock *s, struct us_endpoint *out)
{
	pthread_mutex_lock(&s->st->lock);
	int r = s->bound ? 0 : -EINVAL;
	*out = s->local;
	if (s->ops->local && s->ops->local(s, out) == 0)
		r = 0;
	pthread_mutex_unlock(&s->st->lock);
	return r;
}

int us_sock_set_rcvbuf(struct us_sock *s, uint32_t bytes)
{
	pthread_mutex_lock(&s->st->lock);
	int r = s->ops->set_rcvbuf(s, bytes);
	pthread_mutex_unlock(&s->st->lock);
	return r;
}

int us_sock_error(struct us_sock *s)
{
	pthread_mutex_lock(&s->st->lock);
	int e = s->ops->take_error(s);
	pthread_mutex_unlock(&s->st->lock);
	return e;
}
