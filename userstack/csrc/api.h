/* api.h: the public C API of a user-level stack (userstack).
 *
 * A C application launched by `xdpstack run` opens its stack from the environment and drives
 * it itself, run to completion:
 *
 *     struct us_stack *st = us_stack_open_env(&err);        // XDPSTACK_* from the launcher
 *     struct us_sock *s = us_udp_socket(st, US_AF4, &err);
 *     struct us_endpoint ep = { .addr = { .family = US_AF4 }, .port = 7000 };  // 0.0.0.0:7000
 *     us_udp_bind(s, &ep);                                  // only claimed tuples can be bound
 *     struct us_event ev[64];
 *     for (;;) {
 *         int n = us_wait(st, ev, 64, -1);                  // RX, timers, control; then ready sockets
 *         for (int i = 0; i < n; i++) {
 *             struct us_msg m[32]; char buf[32][2048];  ...  set m[j].buf/.len
 *             int k = us_udp_recvmmsg(ev[i].sock, m, 32);
 *             for (int j = 0; j < k; j++)
 *                 us_udp_sendmsg(ev[i].sock, &m[j], US_MSG_MORE);   // flushed by the next us_wait
 *         }
 *     }
 *
 * Conventions: calls return >= 0 on success and -errno on failure (the errno the same call on a
 * kernel socket would give). Every call takes the stack's mutex, so several threads may share a
 * stack; us_wait/us_poll release it while they sleep. Sockets are never blocking unless a
 * timeout is passed. Ports are host order; addresses are struct us_addr (addr.h).
 * Link with the userstack sources (userstack/csrc), -lxdp -lbpf -lpthread.
 */
#pragma once
#include <stddef.h>
#include <stdint.h>
#include "addr.h"
#include "env.h"

struct us_stack;
struct us_sock;

/* ---- events (us_wait) ---- */
#define US_EV_IN    0x1        /* readable: a datagram (or, for TCP, data / a connection) waits */
#define US_EV_OUT   0x4        /* writable (reported only when asked for with us_sock_set_events) */
#define US_EV_ERR   0x8        /* an error is pending on the socket */
#define US_EV_HUP   0x10       /* closed by the peer (TCP) */

struct us_event {
	struct us_sock *sock;
	void *user;                /* as set with us_sock_set_user */
	uint32_t events;           /* US_EV_* */
	uint32_t pad;
};

/* ---- flags ---- */
#define US_MSG_MORE      0x1   /* send: queue the frame, kick the device later (us_wait/us_flush) */
#define US_MSG_DONTWAIT  0x2   /* receive: never wait, whatever the timeout */
#define US_MSG_TRUNC     0x4   /* us_msg.flags on output: the datagram was longer than the buffer */

/* One datagram for us_udp_recvmmsg / us_udp_sendmsg. */
struct us_msg {
	struct us_endpoint remote; /* recv: the sender; send: the destination */
	struct us_endpoint local;  /* recv: the address the datagram was sent to; send: source
	                            * address to use (family 0 or any address: the socket's) */
	void *buf;                 /* recv: may be NULL to only learn the length (sinks) */
	uint32_t len;              /* recv: in: capacity, out: bytes stored; send: bytes to send */
	uint32_t flags;            /* recv out: US_MSG_TRUNC */
	uint32_t full_len;         /* recv out: the datagram's length */
	uint32_t pad;
};

/* ---- counters ---- */
struct us_stats {
	uint64_t rx_frames, rx_bytes;       /* frames taken from the RX rings */
	uint64_t rx_udp, rx_tcp;            /* datagrams delivered to UDP sockets, segments to TCP */
	uint64_t rx_malformed;              /* truncated or inconsistent headers */
	uint64_t rx_bad_csum;               /* IPv4 header, UDP or TCP checksum wrong */
	uint64_t rx_fragment;               /* IP fragments (not reassembled) */
	uint64_t rx_not_local;              /* destination is not one of the stack's addresses */
	uint64_t rx_other_proto;            /* not IPv4/IPv6, or not UDP/TCP */
	uint64_t rx_no_socket;              /* no socket bound to the destination */
	uint64_t rx_queue_full;             /* socket receive queue full */
	uint64_t tx_frames, tx_bytes;       /* frames handed to the TX rings */
	uint64_t tx_no_frame;               /* no free TX frame: send failed with ENOBUFS */
	uint64_t tx_kicks, tx_kick_again;   /* sendto kicks, and EAGAIN answers (kicked again) */
	uint64_t neigh_resolve;             /* RESOLVE messages sent */
	uint64_t neigh_queued;              /* frames held waiting for a MAC */
	uint64_t neigh_drop;                /* held frames dropped (failure, timeout, queue full) */
	uint64_t ctl_rx, ctl_tx, ctl_bad;   /* control messages */
	uint64_t polls, wakeups;            /* poll-loop iterations, sleeps in epoll */
};

/* XDP_STATISTICS of one queue's socket (getsockopt), plus ring state. */
struct us_xdp_stats {
	uint64_t rx_dropped, rx_invalid_descs, tx_invalid_descs, rx_ring_full;
	uint64_t rx_fill_ring_empty_descs, tx_ring_empty_descs;
	uint64_t rx_frames;        /* frames the stack took from this queue's RX ring */
	uint32_t queue_id, fill_free, tx_free_frames, pad;
};

/* ---- the stack ---- */
/* Open the stack described by the XDPSTACK_* environment (env.h). NULL and *err = -errno. */
struct us_stack *us_stack_open_env(int *err);
/* Open from a description (in-process: from us_xsk_create; or a parsed environment). */
struct us_stack *us_stack_open(const struct us_desc *d, int *err);
/* Close every socket, unmap the rings and the UMEM; closes the fds if the stack owns them. */
void us_stack_close(struct us_stack *st);
/* Process RX, timers and control messages, flush TX; then return up to max ready sockets.
 * Sleeps up to timeout_ms (-1: forever, 0: never) when nothing is ready. -EINTR on a signal. */
int us_wait(struct us_stack *st, struct us_event *ev, int max, int timeout_ms);
/* The same processing without collecting events (the Python driver thread's loop). */
int us_poll(struct us_stack *st, int timeout_ms);
/* Kick the TX rings now (frames sent with US_MSG_MORE). */
int us_flush(struct us_stack *st);
/* Make a sleeping us_wait/us_poll return. Async-signal-safe. */
void us_wake(struct us_stack *st);
/* An fd (epoll) that is readable when the stack has work: for embedding in another event loop. */
int us_stack_fd(struct us_stack *st);
/* A background thread looping us_poll (for Python applications). */
int us_driver_start(struct us_stack *st);
void us_driver_stop(struct us_stack *st);

void us_stack_stats(struct us_stack *st, struct us_stats *out);
int us_stack_xdp_stats(struct us_stack *st, int queue_index, struct us_xdp_stats *out);
/* The description the stack was opened with (addresses, tuples, MTU, queues). */
const struct us_desc *us_stack_desc(struct us_stack *st);
/* Feed the neighbour cache directly (in-process use; launched stacks learn from NEIGH messages).
 * mac NULL marks dst failed (held frames are dropped). */
int us_neigh_set(struct us_stack *st, const struct us_addr *dst, const uint8_t *mac);

/* ---- sockets: common ---- */
int us_sock_close(struct us_sock *s);
/* An eventfd readable while the socket is readable or has an error (selectors, asyncio). */
int us_sock_fileno(struct us_sock *s);
void us_sock_set_user(struct us_sock *s, void *user);
/* Events us_wait reports for this socket (default US_EV_IN | US_EV_ERR | US_EV_HUP). */
int us_sock_set_events(struct us_sock *s, uint32_t events);
int us_sock_local(struct us_sock *s, struct us_endpoint *out);
/* Receive queue limit in bytes of payload (default 256 KiB; the queue also holds at most 4096
 * datagrams). Datagrams that do not fit are dropped and counted (rx_queue_full). */
int us_sock_set_rcvbuf(struct us_sock *s, uint32_t bytes);
/* Pending error (-errno) or 0; clears it. */
int us_sock_error(struct us_sock *s);

/* ---- UDP ---- */
struct us_sock *us_udp_socket(struct us_stack *st, int family, int *err);
/* Bind to a claimed tuple (family from the socket; address all-zero = wildcard). Port 0 asks the
 * launcher for an ephemeral claim. -EADDRNOTAVAIL: not a local address; -EACCES: tuple not
 * claimed by this stack; -EADDRINUSE: another socket of this stack has it. */
int us_udp_bind(struct us_sock *s, const struct us_endpoint *local);
/* Returns len or -errno: -EMSGSIZE when the IP packet would exceed the MTU (no fragmentation),
 * -ENOBUFS when no TX frame is free, -EDESTADDRREQ when unbound. A destination whose MAC is not
 * known yet is resolved through the launcher; the frame waits (bounded) and is dropped, counted,
 * on failure, like the kernel's ARP queue. */
int us_udp_sendto(struct us_sock *s, const void *buf, size_t len, const struct us_endpoint *to,
		  int flags);
int us_udp_sendmsg(struct us_sock *s, const struct us_msg *m, int flags);
/* Returns the bytes stored (at most len; the rest of a longer datagram is discarded, as with a
 * kernel socket), -EAGAIN when none arrives within timeout_ms (0: do not wait, -1: forever). */
int us_udp_recvfrom(struct us_sock *s, void *buf, size_t len, struct us_endpoint *from,
		    int flags, int timeout_ms);
/* Up to n queued datagrams, never waits. Returns the number received (0 when none). */
int us_udp_recvmmsg(struct us_sock *s, struct us_msg *msgs, int n);

/* ---- TCP: added by the TCP integration (issue 4) ----
 * us_tcp_socket, us_tcp_listen, us_tcp_accept, us_tcp_connect, us_tcp_read, us_tcp_write,
 * us_tcp_shutdown; readiness through the same us_wait events. */
