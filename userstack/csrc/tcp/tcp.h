/* tcp.h: xdpstack's user-level TCP (RFC 9293), the contract with the stack.
 *
 * Pure protocol code: no sockets, no syscalls, no global state, no clock reads (time comes in as
 * now_us, any monotonic microsecond clock), no locking (the stack serialises every call).
 * Segments arrive through tcp_input and leave through hooks.emit; sockets are opaque handles.
 *
 * How the stack drives it:
 *
 *     struct tcp_config cfg; tcp_config_default(&cfg);  cfg.secret = 16 random bytes; ...
 *     struct tcp_stack *ts = tcp_stack_new(&cfg, &hooks, ctx);
 *     per poll batch:
 *         for each received TCP segment (IP layer parsed, checksum verified):
 *             tcp_input(ts, &ip_src, &ip_dst, tcp_header_and_payload, len, now);
 *         (the application reads and writes)
 *         tcp_flush(ts, now);                  // sends what became sendable: coalesces writes
 *                                              // (tcp_flush_hold_acks when the app runs next)
 *         if (tcp_next_deadline(ts) <= now) tcp_timers(ts, now);   // runs timers, then flushes
 *     sleep at most until tcp_next_deadline(ts), or until the TX ring has room again when
 *     tcp_tx_blocked(ts) says a segment is waiting for it.
 *
 * Output: hooks.emit(ctx, src, dst, hdr, hdr_len, p1, l1, p2, l2) gets a complete TCP header
 * with options (checksum field zero: the stack computes it over the pseudo-header) and the
 * payload in up to two pieces (the send ring may wrap). It returns 0, or -ENOBUFS when the TX
 * ring is full: TCP then behaves as if that segment had not been sent, stops emitting for this
 * flush and retries at the next tcp_flush/tcp_timers. Stateless replies (RST to a closed port,
 * challenge ACKs) are emitted from inside tcp_input and simply lost on -ENOBUFS.
 * emit may be called from tcp_input, tcp_flush, tcp_timers, tcp_abort and tcp_close; it must
 * not call back into TCP.
 *
 * Events: hooks.on_event(ctx, sock, tcp_events(sock)) is called at the end of tcp_input,
 * tcp_flush and tcp_timers (never from inside a socket call) for sockets the application holds
 * (connected/listening sockets it created, accepted sockets) when their readiness changed or new
 * data/connections arrived. It may call any socket function, including tcp_close.
 *
 * Ownership: tcp_socket and tcp_accept give the application a handle; tcp_close and tcp_abort
 * take it back (TCP finishes a graceful close on its own, TIME_WAIT included, and then frees it).
 * A connection that fails (RST, timeout) stays readable as CLOSED with its error until closed.
 *
 * Ports: an active open without a local port asks hooks.bind_ephemeral for one (the stack claims
 * it from the kernel); TCP calls hooks.release_port when that connection is gone (after
 * TIME_WAIT). Listening: the stack only lets applications listen on tuples they claimed. A
 * segment for which no socket exists is answered with a RST (RFC 9293 3.10.7.1), which is right
 * because the stack only delivers segments for claimed tuples.
 *
 * Listen backlog (Linux's behaviour): a SYN is dropped silently (the peer retries) while the
 * accept queue or the queue of half-open connections is full; an ACK completing a handshake while
 * the accept queue is full is dropped too, and the SYN-ACK retransmission retries it later.
 *
 * Return values: >= 0 on success, -errno on failure (the errno a kernel socket would give).
 *
 * Memory: sockets, their buffers (sndbuf/rcvbuf, allocated at connect/SYN, never per segment)
 * and the tables are malloc'd; the per-segment path allocates nothing. tcp_stack_free frees
 * every socket it can reach (listeners, connections, TIME_WAIT); a socket the application
 * created but never connected, or holds in CLOSED, is freed by its tcp_close.
 *
 * Build: userstack/csrc/tcp/[a-z]*.c and userstack/csrc/base/timer.c, include path userstack/csrc.
 * See README.md beside this file for the file map and what each RFC section maps to.
 */
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../base/addr.h"
#include "tcp_stats.h"

struct tcp_stack;
struct tcp_sock;

enum tcp_cc_algo { TCP_CC_NEWRENO = 0, TCP_CC_CUBIC = 1 };

struct tcp_config {
	uint32_t sndbuf, rcvbuf;       /* per-socket buffer bytes (default 2 MiB each; window scaled) */
	uint32_t mtu;                  /* IP MTU: MSS 1460 (IPv4) / 1440 (IPv6) at 1500 */
	uint8_t sack, timestamps, wscale;   /* offer/accept RFC 2018 SACK, RFC 7323 TS and WS (1) */
	uint8_t cc;                    /* enum tcp_cc_algo, default CUBIC */
	uint32_t init_cwnd;            /* initial window in segments (RFC 6928: 10) */
	uint32_t delack_us;            /* delayed-ACK timeout (40 ms, like Linux; RFC 9293 < 500 ms) */
	uint32_t quickack;             /* ACK this many first data segments at once (16; 0 = off) */
	uint32_t rto_min_us, rto_init_us, rto_max_us;   /* 200 ms, 1 s, 120 s (RFC 6298, Linux) */
	uint32_t syn_retries, synack_retries, retries;  /* give up after 6 / 5 / 15 retransmissions */
	uint32_t keepidle_s, keepintvl_s, keepcnt;      /* 7200, 75, 9 (used when SO_KEEPALIVE) */
	uint32_t time_wait_us;         /* 2*MSL: 60 s; also the orphaned FIN-WAIT-2 timeout */
	uint32_t max_time_wait;        /* TIME_WAIT sockets kept at most (then closed at once) */
	uint32_t backlog;              /* listen backlog when tcp_listen gets <= 0 (128) */
	uint32_t challenge_ack_limit;  /* RFC 5961 sec. 7: challenge ACKs per second per stack (1000) */
	uint8_t secret[16];            /* keys ISNs (RFC 6528), timestamps offsets and hashing */
};

struct tcp_hooks {
	int (*emit)(void *ctx, const struct us_addr *src, const struct us_addr *dst,
		    const uint8_t *tcp_hdr, size_t hdr_len,
		    const uint8_t *p1, size_t l1, const uint8_t *p2, size_t l2);
	void (*on_event)(void *ctx, struct tcp_sock *s, unsigned events);           /* optional */
	/* Claim a local endpoint for a connection to remote: address and port. 0 or -errno. */
	int (*bind_ephemeral)(void *ctx, const struct us_endpoint *remote, struct us_endpoint *local_out);
	void (*release_port)(void *ctx, const struct us_endpoint *local);           /* optional */
};

/* ---- the stack ---- */
void tcp_config_default(struct tcp_config *cfg);
/* cfg NULL: defaults (with an all-zero secret: tests only). NULL when out of memory. */
struct tcp_stack *tcp_stack_new(const struct tcp_config *cfg, const struct tcp_hooks *hooks, void *ctx);
/* Frees every socket without sending anything. */
void tcp_stack_free(struct tcp_stack *ts);
/* One received segment: TCP header, options and payload; src/dst are the IP addresses. */
void tcp_input(struct tcp_stack *ts, const struct us_addr *src, const struct us_addr *dst,
	       const uint8_t *seg, size_t len, uint64_t now_us);
void tcp_flush(struct tcp_stack *ts, uint64_t now_us);
/* tcp_flush for a stack that is about to hand this batch's events to the application: an ACK due
 * only because in-order data or a FIN arrived (a quick ACK, or the FIN of an ESTABLISHED
 * connection), with nothing else to send on that connection, is held for one flush so that the
 * application's answer (data, FIN) carries it. A held ACK leaves at the next flush of either kind
 * (or the delayed-ACK timer, delack_us) whatever the application does: it is a delayed ACK of
 * RFC 9293 3.8.6.3 / RFC 1122 4.2.3.2, and every second full segment is still ACKed at once. */
void tcp_flush_hold_acks(struct tcp_stack *ts, uint64_t now_us);
void tcp_timers(struct tcp_stack *ts, uint64_t now_us);
/* Earliest time tcp_timers has work (UINT64_MAX: none). */
uint64_t tcp_next_deadline(const struct tcp_stack *ts);
/* Nonzero when a segment waits for TX ring room (emit returned -ENOBUFS). */
int tcp_tx_blocked(const struct tcp_stack *ts);

/* Counters: struct us_tcp_stats (tcp_stats.h). The core counts into its own copy, or into the
 * one tcp_stack_count_into names (the stack's shared counters page), through a pointer; the
 * gauges (conns, listeners, time_wait) are kept current there. The port_* fields are the
 * stack's: the core leaves them alone. */
void tcp_stack_stats(const struct tcp_stack *ts, struct us_tcp_stats *out);
/* Count into *where from now on (call it before the first tcp_input): its counters are counted
 * on, not reset, so that a TCP the stack re-creates continues the counts of the one before; the
 * gauges are set from this stack. tcp_stack_free sets the gauges to 0. */
void tcp_stack_count_into(struct tcp_stack *ts, struct us_tcp_stats *where);

/* ---- sockets ---- */
enum tcp_state {
	TCPS_CLOSED = 0, TCPS_LISTEN, TCPS_SYN_SENT, TCPS_SYN_RECEIVED, TCPS_ESTABLISHED,
	TCPS_FIN_WAIT_1, TCPS_FIN_WAIT_2, TCPS_CLOSE_WAIT, TCPS_CLOSING, TCPS_LAST_ACK,
	TCPS_TIME_WAIT,
};
const char *tcp_state_name(int state);

/* A new unconnected socket with the stack's defaults; NULL when out of memory. */
struct tcp_sock *tcp_socket(struct tcp_stack *ts);
/* Listen on local (family set; all-zero address = every address of that family; family 0 =
 * every address of both). backlog <= 0: the configured default. -EADDRINUSE, -EINVAL. */
int tcp_listen(struct tcp_sock *s, const struct us_endpoint *local, int backlog);
/* A connection from the accept queue, or NULL with *err = -EAGAIN (-EINVAL: not listening). */
struct tcp_sock *tcp_accept(struct tcp_sock *listener, int *err);
/* Active open. local NULL or port 0: hooks.bind_ephemeral picks the local endpoint; otherwise
 * local must be complete. The SYN leaves at the next flush; completion (or failure) shows as
 * TCP_EV_WRITABLE (or TCP_EV_ERROR). -EISCONN, -EADDRINUSE (4-tuple taken), -EINVAL. */
int tcp_connect(struct tcp_sock *s, const struct us_endpoint *remote,
		const struct us_endpoint *local, uint64_t now_us);
/* Copies up to len bytes into the send buffer: bytes taken, -EAGAIN (full), -EPIPE (shut down
 * for writing), -ENOTCONN, or the pending error (-ECONNRESET, -ETIMEDOUT). Sent at flush. */
ssize_t tcp_send(struct tcp_sock *s, const void *buf, size_t len);
/* Bytes read, 0 at end of stream, -EAGAIN, -ENOTCONN, or the error (-ECONNRESET ...). */
ssize_t tcp_recv(struct tcp_sock *s, void *buf, size_t len);
/* Zero-copy reading: the readable bytes as up to two pieces (returns the total), then consume. */
size_t tcp_recv_peek(struct tcp_sock *s, const uint8_t **p1, size_t *l1, const uint8_t **p2, size_t *l2);
void tcp_recv_consume(struct tcp_sock *s, size_t n);
#define TCP_SHUT_RD   0
#define TCP_SHUT_WR   1
#define TCP_SHUT_RDWR 2
int tcp_shutdown(struct tcp_sock *s, int how);
/* Graceful close (FIN after queued data; RST instead when unread data is left, RFC 2525). The
 * handle is invalid afterwards. */
void tcp_close(struct tcp_sock *s);
/* RST if synchronized, then free. The handle is invalid afterwards. */
void tcp_abort(struct tcp_sock *s);

/* Options (int values; times in seconds like Linux). SNDBUF/RCVBUF only before connect/listen
 * (-EISCONN after). Accepted sockets inherit the listener's options. */
enum tcp_opt {
	TCP_OPT_NODELAY = 1,    /* 1: Nagle off */
	TCP_OPT_KEEPALIVE,      /* SO_KEEPALIVE */
	TCP_OPT_KEEPIDLE, TCP_OPT_KEEPINTVL, TCP_OPT_KEEPCNT,
	TCP_OPT_SNDBUF, TCP_OPT_RCVBUF,
	TCP_OPT_CC,             /* enum tcp_cc_algo, changeable any time */
	TCP_OPT_MAXSEG,         /* get: the send MSS (payload per segment); set: clamp before connect */
	TCP_OPT_ERROR,          /* get: SO_ERROR as a positive errno, cleared */
};
int tcp_setopt(struct tcp_sock *s, int opt, int val);
int tcp_getopt(struct tcp_sock *s, int opt, int *val);

/* Readiness, same bits as poll(2) where one exists. */
#define TCP_EV_READABLE 0x0001u   /* data, end of stream or an error; listener: see ACCEPT */
#define TCP_EV_WRITABLE 0x0004u   /* connected and at least a third of the send buffer free */
#define TCP_EV_ERROR    0x0008u   /* a pending error (TCP_OPT_ERROR) */
#define TCP_EV_HUP      0x0010u   /* no more data either way (closed, reset, both FINs) */
#define TCP_EV_RDHUP    0x2000u   /* the peer sent FIN */
#define TCP_EV_ACCEPT   0x10000u  /* listener: tcp_accept will return a connection */
unsigned tcp_events(const struct tcp_sock *s);

void tcp_sock_set_user(struct tcp_sock *s, void *user);
void *tcp_sock_user(const struct tcp_sock *s);
int tcp_sock_state(const struct tcp_sock *s);
int tcp_sock_local(const struct tcp_sock *s, struct us_endpoint *out);
int tcp_sock_remote(const struct tcp_sock *s, struct us_endpoint *out);
/* Free space in the send buffer / bytes readable now. */
size_t tcp_send_space(const struct tcp_sock *s);
size_t tcp_recv_avail(const struct tcp_sock *s);

#define TCP_INFO_SACK   0x1
#define TCP_INFO_TS     0x2
#define TCP_INFO_WSCALE 0x4
enum tcp_ca_phase { TCP_CA_OPEN = 0, TCP_CA_DISORDER, TCP_CA_RECOVERY, TCP_CA_LOSS };

/* Like Linux's TCP_INFO: for tests and users. Sequence numbers are absolute. */
struct tcp_sock_info {
	uint8_t state, ca_phase, options, snd_wscale, rcv_wscale, cc, backoff, pad;
	uint32_t rto_us, srtt_us, rttvar_us, min_rtt_us;
	uint32_t snd_mss, rcv_mss, peer_mss;
	uint32_t cwnd, ssthresh;            /* bytes */
	uint32_t snd_wnd, rcv_wnd;          /* bytes, as last received / advertised */
	uint32_t unacked, sacked, lost, retrans_out;  /* bytes outstanding / SACKed / lost / retransmitted */
	uint32_t iss, irs, snd_una, snd_nxt, snd_max, rcv_nxt;
	uint32_t sndbuf_used, sndbuf, rcvbuf_used, rcvbuf;
	uint32_t ooo_ranges, dupacks;
	uint64_t bytes_sent, bytes_retrans, bytes_acked, bytes_received;
	uint64_t segs_out, segs_in, retransmits, timeouts, fast_retransmits, recoveries;
	uint64_t zero_window_probes, keepalive_probes;
};
void tcp_sock_info(const struct tcp_sock *s, struct tcp_sock_info *out);
