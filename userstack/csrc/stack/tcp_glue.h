/* tcp_glue.h: the TCP core wired into the stack (tcp_glue.c) and TCP readiness (tcp_ready.c);
 * the us_tcp_* calls of ../api.h (tcp_calls.c) are on top of both. */
#pragma once
#include "stack.h"

/* tcp_glue.c: for the stack and the poll loop */
int us_tcp_open(struct us_stack *st, const struct us_tcp_opts *o);   /* at stack open; reconfigure */
void us_tcp_close_all(struct us_stack *st);                          /* at stack close */
void us_tcp_input(struct us_stack *st, const struct us_parsed *p);
void us_tcp_timers(struct us_stack *st);       /* per poll, after RX: timers, writability */
void us_tcp_output(struct us_stack *st, bool hold);   /* per poll: flush (see tcp_glue.c), timerfd */
void us_tcp_flush_locked(struct us_stack *st); /* what the sockets queued goes out now */
bool us_tcp_tx_blocked(struct us_stack *st);
/* tcp_glue.c: for the socket calls */
extern const struct us_sock_ops us_tcp_sock_ops;
void us_tcp_flush_soon(struct us_stack *st);   /* after a call queued output (see tcp_glue.c) */
/* Hand s's connect (to s->peer) to the core; with local_pick the connection takes that port. */
void us_tcp_start_connect(struct us_sock *s, const struct us_endpoint *local_pick);
void us_tcp_close_locked(struct us_sock *s);
void us_tcp_unlink(struct us_sock *s);         /* off the stack's lists; the core's socket stays */

/* The clock for a socket call that sends now or starts timers: the core stamps what it sends
 * (RTT samples, timers), so never a time from before the application went idle. Calls that only
 * queue read no clock: what they queue is stamped at the flush, which reads it. */
static inline void us_tcp_touch_clock(struct us_stack *st)
{
	st->now = us_now_ns();
}
static inline uint64_t us_tcp_now_us(const struct us_stack *st) { return st->now / 1000; }

/* tcp_ready.c */
uint32_t us_tcp_events(struct us_sock *s);     /* US_EV_* now */
void us_tcp_refresh(struct us_sock *s);        /* readiness may have changed: tell everyone */
void us_tcp_want_writable(struct us_sock *s);  /* re-check writability after each poll */
void us_tcp_wunblock(struct us_sock *s);       /* off that list */
void us_tcp_writable_check(struct us_stack *st);   /* per poll: who became writable */
int us_tcp_fileno_locked(struct us_sock *s);
void us_tcp_fileno_close(struct us_sock *s);   /* the socketpair, when there is one */
