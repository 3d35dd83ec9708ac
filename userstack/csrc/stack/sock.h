/* sock.h: the socket base (sock.c): life cycle, readiness, waiting, and the us_sock_* calls of
 * ../api.h, over what each protocol installs in s->ops. */
#pragma once
#include "stack.h"

struct us_sock_ops {
	uint32_t (*events)(struct us_sock *s);           /* US_EV_* now */
	void (*set_events)(struct us_sock *s, uint32_t events);   /* s->evmask just changed */
	void (*want_writable)(struct us_sock *s);        /* a waiter wants US_EV_OUT (or NULL) */
	int (*fileno)(struct us_sock *s);
	int (*take_error)(struct us_sock *s);            /* the pending -errno, cleared, or 0 */
	int (*set_rcvbuf)(struct us_sock *s, uint32_t bytes);
	/* The local endpoint in use when it is not s->local (a connection's port), or NULL. */
	int (*local)(struct us_sock *s, struct us_endpoint *out);
	void (*close)(struct us_sock *s);                /* s is gone after it */
};

void us_sock_link(struct us_sock *s);          /* onto st->all */
void us_sock_unlink(struct us_sock *s);        /* off st->all and st->ready */
void us_sock_release(struct us_sock *s);       /* free, or leave it to the last waiter */
/* A socket got an event: the ready list, its eventfd, blocked callers. */
void us_sock_notify(struct us_sock *s);
/* One wait for socket events `want` (lock released meanwhile; drives the stack through the poll
 * loop's hooks when no driver thread runs). -EBADF when the socket was closed meanwhile (it is
 * gone: do not touch it). */
int us_sock_block_locked(struct us_sock *s, uint32_t want, uint64_t deadline);
