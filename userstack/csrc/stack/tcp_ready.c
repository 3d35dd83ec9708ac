/* tcp_ready.c: a TCP socket's readiness (tcp_glue.h). The core reports events (on_event, at the
 * end of every input and call); each ends in us_tcp_refresh: the ready list for us_wait, the
 * condition variable for blocked callers, the socketpair behind fileno(). Writability the core
 * reports only as a change, so writers that want it are re-checked after each poll. */
#define _GNU_SOURCE
#include <errno.h>
#include <unistd.h>
#include <sys/socket.h>
#include "tcp_glue.h"

#define SP_FILL     2048       /* bytes that make the fileno socketpair unwritable (see sp_sync) */

/* ---- events ---- */
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

void us_tcp_want_writable(struct us_sock *s)
{
	if (!s->wblocked) {
		s->wblocked = 1;
		s->wb_next = s->st->wblocked;
		s->st->wblocked = s;
	}
}

void us_tcp_wunblock(struct us_sock *s)
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
void us_tcp_refresh(struct us_sock *s)
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


void us_tcp_fileno_close(struct us_sock *s)
{
	for (int i = 0; i < 2; i++)
		if (s->sp[i] >= 0)
			close(s->sp[i]);
	s->sp[0] = s->sp[1] = -1;
}

/* After the batch's RX: sockets that became writable. */
void us_tcp_writable_check(struct us_stack *st)
{
	for (struct us_sock **pp = &st->wblocked; *pp;) {
		struct us_sock *s = *pp;
		if (us_tcp_events(s) & (US_EV_OUT | US_EV_ERR | US_EV_HUP)) {
			*pp = s->wb_next;
			s->wblocked = 0;
			us_tcp_refresh(s);
		} else {
			pp = &s->wb_next;
		}
	}
}
