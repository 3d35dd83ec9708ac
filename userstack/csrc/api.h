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
 * timeout is passed. Ports are host order; addresses are struct us_addr (base/addr.h).
 * Link with the userstack sources (userstack/csrc), -lxdp -lbpf -lpcap -lpthread.
 */
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "base/addr.h"
#include "base/env.h"
#include "tcp/tcp_stats.h"          /* struct us_tcp_stats: the counters of the stack's TCP */
#include "dev/xdp_stats.h"          /* struct us_xdp_stats: one AF_XDP queue's counters */

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

/* ---- counters ----
 * A launched stack keeps them in a page the launcher created and shares (XDPSTACK_STATS in base/env.h),
 * so that `xdpstack stacks` reads them live: struct us_shared_stats below is that page's layout. */
struct us_stats {
	uint64_t rx_frames, rx_bytes;       /* frames taken from the RX rings */
	uint64_t rx_udp, rx_tcp;            /* datagrams delivered to UDP sockets, segments to TCP */
	uint64_t rx_malformed;              /* truncated or inconsistent headers */
	uint64_t rx_bad_csum;               /* IPv4 header, UDP or TCP checksum wrong */
	uint64_t rx_csum_partial;           /* accepted with a local peer's partial checksum (base/env.h) */
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

/* The shared counters page (XDPSTACK_STATS): the stack's counters, then its TCP's (struct
 * us_tcp_stats, tcp/tcp_stats.h; what us_stack_stats and us_tcp_stack_stats return). Both are
 * counted in place, gauges (conns, listeners, ...) included. */
struct us_shared_stats {
	struct us_stats stack;
	struct us_tcp_stats tcp;
};


/* ---- the stack ---- */
/* Open the stack described by the XDPSTACK_* environment (base/env.h). NULL and *err = -errno. */
struct us_stack *us_stack_open_env(int *err);
/* Open from a description (in-process: from us_xsk_create; or a parsed environment). */
struct us_stack *us_stack_open(const struct us_desc *d, int *err);
/* Close every socket, unmap the rings and the UMEM; closes the fds if the stack owns them. */
void us_stack_close(struct us_stack *st);
/* Process RX, timers and control messages, flush TX; then return up to max ready sockets.
 * Sleeps up to timeout_ms (-1: forever, 0: never) when nothing is ready. -EINTR on a signal.
 * The flush sends what the application queued since the last one (see "Sending" below) in one TX
 * kick; when it returns events, an ACK of data or of a FIN it reports may wait for the answer
 * (at most until the next us_wait/us_flush, and never longer than the delayed-ACK time). */
int us_wait(struct us_stack *st, struct us_event *ev, int max, int timeout_ms);
/* The same processing without collecting events (the Python driver thread's loop). */
int us_poll(struct us_stack *st, int timeout_ms);
/* Send now what was queued (UDP frames sent with US_MSG_MORE, everything TCP queued). An
 * application that sleeps outside us_wait/us_poll (its own epoll on us_stack_fd) calls it before
 * sleeping. */
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
/* Close any socket (TCP: the graceful close described below). The handle is invalid after. */
int us_sock_close(struct us_sock *s);
/* A file descriptor for selectors, epoll and asyncio that mirrors the socket's readiness:
 * UDP: an eventfd readable while a datagram or an error waits.
 * TCP: readable (POLLIN) while data, end of stream, a connection to accept or an error waits;
 * writable (POLLOUT) while us_tcp_write would take data (so also once a connect completes or
 * fails). Never read or write it yourself. Owned by the socket: closed with it. */
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

/* ---- TCP ----
 * Sending: TCP socket calls only queue what they make the connection send (data written with
 * US_MSG_MORE, the window update after a read or consume, the FIN of a shutdown or close, the RST
 * of an abort, the SYN of a connect); the next us_wait, us_poll, us_sock_wait or us_flush sends
 * all of it together, so that ACKs ride on data and the FIN on the last data segment, in one TX
 * kick per batch. Only us_tcp_write/writev without US_MSG_MORE send at once. A stack with a
 * driver thread (us_driver_start) sends each call's output at once instead: the thread may sleep.
 *
 * A TCP server on a claimed port, run to completion from the us_wait loop:
 *
 *     struct us_sock *l = us_tcp_socket(st, US_AF4, &err);
 *     struct us_endpoint ep = { .addr = { .family = US_AF4 }, .port = 8080 };
 *     us_tcp_bind(l, &ep);                                   // -EACCES unless claimed
 *     us_tcp_listen(l, 1024);
 *     for (;;) {
 *         int n = us_wait(st, ev, 64, -1);
 *         for (int i = 0; i < n; i++) {
 *             if (ev[i].sock == l) { struct us_sock *c;
 *                 while ((c = us_tcp_accept(l, NULL, &err))) us_sock_set_user(c, conn_new(c)); }
 *             else { ssize_t k = us_tcp_read(ev[i].sock, buf, sizeof buf);   // 0: peer's FIN
 *                    ... us_tcp_write(ev[i].sock, reply, len, US_MSG_MORE); }  // sent by us_wait
 *         }
 *     }
 *
 * A client: us_tcp_connect returns -EINPROGRESS (like a non-blocking kernel socket); the socket
 * becomes writable (US_EV_OUT, ask for it with us_sock_set_events) when connected, or reports
 * US_EV_ERR with the error in us_sock_error (-ECONNREFUSED, -ETIMEDOUT, -EADDRNOTAVAIL). The local
 * port of an active open is claimed from the kernel through the launcher (never blocking the
 * stack: a few claimed ports are kept ready). us_sock_wait waits for one socket (blocking style).
 *
 * Errors are the kernel's: reads and writes return -EAGAIN when they would block, -ECONNRESET
 * once after a reset (then -EPIPE for writes, 0 for reads), -EPIPE after shutdown(WR), -ENOTCONN
 * before the connection exists. Writes never raise SIGPIPE.
 *
 * Closing: us_sock_close is the graceful close (FIN after the queued data; a RST instead when
 * received data is left unread, RFC 2525) and the stack finishes it on its own, TIME_WAIT
 * included; us_tcp_abort resets the connection at once. Listeners are IPv4- or IPv6-only (as
 * with IPV6_V6ONLY): bind one socket per family. */

#define US_EV_RDHUP 0x2000     /* TCP: the peer sent FIN (reads return 0 once the data is read) */

#define US_SHUT_RD   0
#define US_SHUT_WR   1
#define US_SHUT_RDWR 2

/* Options for us_tcp_setsockopt / us_tcp_getsockopt (int values; times in seconds). */
enum us_tcp_opt {
	US_TCP_NODELAY = 1,        /* 1: Nagle off (send small segments at once) */
	US_SO_KEEPALIVE,           /* 1: keepalive probes after KEEPIDLE s idle */
	US_TCP_KEEPIDLE, US_TCP_KEEPINTVL, US_TCP_KEEPCNT,
	US_SO_SNDBUF, US_SO_RCVBUF,/* bytes; before connect/listen only (-EISCONN after) */
	US_TCP_CONGESTION,         /* US_CC_NEWRENO or US_CC_CUBIC, any time */
	US_TCP_MAXSEG,             /* get: send MSS; set: clamp, before connect/listen */
	US_SO_ERROR,               /* get: pending error as a positive errno, cleared */
};
#define US_CC_NEWRENO 0
#define US_CC_CUBIC   1

/* One contiguous piece of a buffer (us_tcp_peek, us_tcp_writev). */
struct us_iov {
	void *base;
	size_t len;
};

/* Like Linux's TCP_INFO (times in microseconds, windows in bytes). */
struct us_tcp_info {
	uint8_t state;             /* US_TCP_* below */
	uint8_t ca_state;          /* 0 open, 1 disorder, 2 recovery, 3 loss (after an RTO) */
	uint8_t options;           /* 1 SACK, 2 timestamps, 4 window scaling (negotiated) */
	uint8_t snd_wscale, rcv_wscale;
	uint8_t cc;                /* US_CC_* */
	uint8_t backoff;           /* RTO backoffs in a row */
	uint8_t pad;
	uint32_t rto_us, srtt_us, rttvar_us, min_rtt_us;
	uint32_t snd_mss, rcv_mss;
	uint32_t cwnd, ssthresh, snd_wnd, rcv_wnd;
	uint32_t unacked, sacked, lost, retrans_out;    /* bytes in flight / SACKed / lost / resent */
	uint32_t sndbuf_used, sndbuf, rcvbuf_used, rcvbuf;
	uint32_t snd_una, snd_nxt, snd_max, rcv_nxt;    /* sequence numbers (absolute) */
	uint64_t bytes_sent, bytes_retrans, bytes_acked, bytes_received;
	uint64_t segs_out, segs_in, retransmits, timeouts, fast_retransmits, recoveries;
	uint64_t zero_window_probes, keepalive_probes;
};

enum us_tcp_state {
	US_TCP_CLOSED = 0, US_TCP_LISTEN, US_TCP_SYN_SENT, US_TCP_SYN_RECEIVED, US_TCP_ESTABLISHED,
	US_TCP_FIN_WAIT_1, US_TCP_FIN_WAIT_2, US_TCP_CLOSE_WAIT, US_TCP_CLOSING, US_TCP_LAST_ACK,
	US_TCP_TIME_WAIT,
};

struct us_sock *us_tcp_socket(struct us_stack *st, int family, int *err);
/* Set the local endpoint. For a listener it must be a claimed tuple (-EACCES otherwise;
 * -EADDRNOTAVAIL: not a local address; -EADDRINUSE: another listener has it). Port 0 (or no bind
 * at all) before connect: an ephemeral port is claimed at connect time. */
int us_tcp_bind(struct us_sock *s, const struct us_endpoint *local);
/* backlog <= 0: the stack's default (XDPSTACK_TCP backlog=, 128). -EDESTADDRREQ when unbound. */
int us_tcp_listen(struct us_sock *s, int backlog);
/* A connection from the listener's queue (peer filled when not NULL), or NULL with
 * *err = -EAGAIN (none waiting) or -EINVAL (not listening). The new socket has the listener's
 * options and user pointer NULL. */
struct us_sock *us_tcp_accept(struct us_sock *listener, struct us_endpoint *peer, int *err);
/* Start an active open: -EINPROGRESS (completion as above), or -EISCONN, -EALREADY, -EINVAL,
 * -EAFNOSUPPORT, -EADDRINUSE. */
int us_tcp_connect(struct us_sock *s, const struct us_endpoint *remote);
/* Copy up to len received bytes: the count, 0 at end of stream, or -errno. */
ssize_t us_tcp_read(struct us_sock *s, void *buf, size_t len);
/* Zero-copy reading: the readable bytes as up to two pieces (iov[0], iov[1]), returns the total
 * (0 with nothing to read; check us_tcp_read for end of stream/errors). The pieces stay valid and
 * unchanged until us_tcp_consume or close of this socket. Then consume what was used. */
ssize_t us_tcp_peek(struct us_sock *s, struct us_iov iov[2]);
int us_tcp_consume(struct us_sock *s, size_t n);
/* Queue up to len bytes for sending (copied once into the send buffer): the count taken (less
 * than len when the buffer fills), or -EAGAIN when it is full, or -errno. Sent at once unless
 * flags has US_MSG_MORE (then by the next us_wait/us_poll/us_flush: batch replies that way, see
 * "Sending" above). */
ssize_t us_tcp_write(struct us_sock *s, const void *buf, size_t len, int flags);
ssize_t us_tcp_writev(struct us_sock *s, const struct us_iov *iov, int iovcnt, int flags);
/* Bytes that us_tcp_write would take now / bytes that us_tcp_read would return now. */
size_t us_tcp_send_space(struct us_sock *s);
size_t us_tcp_recv_avail(struct us_sock *s);
/* US_SHUT_WR sends FIN after the queued data; US_SHUT_RD discards what arrives. */
int us_tcp_shutdown(struct us_sock *s, int how);
/* RST (if the connection is synchronized) and free the socket: the handle is invalid after. */
int us_tcp_abort(struct us_sock *s);
int us_tcp_setsockopt(struct us_sock *s, int opt, int val);
int us_tcp_getsockopt(struct us_sock *s, int opt, int *val);
/* The remote endpoint: -ENOTCONN unless connected (or connecting). */
int us_sock_peer(struct us_sock *s, struct us_endpoint *out);
int us_tcp_info(struct us_sock *s, struct us_tcp_info *out);
void us_tcp_stack_stats(struct us_stack *st, struct us_tcp_stats *out);

/* ---- waiting on one socket (blocking-style code, any socket type) ----
 * Wait until the socket has one of `events` (US_EV_*; US_EV_ERR and US_EV_HUP are always
 * included) or timeout_ms passes (-1: forever). Returns the events ready (> 0), 0 on timeout,
 * -EINTR. Drives the stack itself when no driver thread runs. */
int us_sock_wait(struct us_sock *s, uint32_t events, int timeout_ms);

/* ---- per-stack options (also read from the environment when the stack opens: base/env.h) ---- */
/* TCP knobs as in XDPSTACK_TCP ("cc=newreno sndbuf=4194304 ..."); before the first TCP socket
 * only (-EBUSY after); -EINVAL names nothing known or a bad value. */
int us_stack_tcp_configure(struct us_stack *st, const char *spec);
/* Fault injection as in XDPSTACK_FAULTS ("seed=1 drop=0.05 dir=both"); see dev/fault.h. */
int us_stack_faults_configure(struct us_stack *st, const char *spec);
