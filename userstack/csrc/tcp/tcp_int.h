/* tcp_int.h: the TCP's internal types, shared by its source files only.
 *
 * One struct tcp_sock per socket (listener, connection or TIME_WAIT), one struct tcp_stack per
 * application stack. Sequence-space names follow RFC 9293 3.3.1 (snd_una, snd_nxt, rcv_nxt ...);
 * snd_max is the highest sequence number sent so far (snd_nxt goes back to snd_una on RTO).
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../base/timer.h"
#include "cc.h"
#include "tcp.h"
#include "tcp_ring.h"
#include "tcp_wire.h"

/* ---- sequence numbers (RFC 9293 3.4: modulo 2^32 comparisons) ---- */
static inline bool seq_lt(uint32_t a, uint32_t b) { return (int32_t)(a - b) < 0; }
static inline bool seq_le(uint32_t a, uint32_t b) { return (int32_t)(a - b) <= 0; }
static inline bool seq_gt(uint32_t a, uint32_t b) { return (int32_t)(a - b) > 0; }
static inline bool seq_ge(uint32_t a, uint32_t b) { return (int32_t)(a - b) >= 0; }
static inline uint32_t seq_max(uint32_t a, uint32_t b) { return seq_gt(a, b) ? a : b; }
static inline uint32_t seq_min(uint32_t a, uint32_t b) { return seq_lt(a, b) ? a : b; }

/* ---- intrusive doubly-linked list ---- */
struct tcp_list { struct tcp_list *next, *prev; };
static inline void list_init(struct tcp_list *l) { l->next = l->prev = l; }
static inline bool list_empty(const struct tcp_list *l) { return l->next == l; }
static inline bool list_linked(const struct tcp_list *n) { return n->next != NULL && n->next != n; }
static inline void list_add_tail(struct tcp_list *h, struct tcp_list *n)
{
	n->prev = h->prev; n->next = h; h->prev->next = n; h->prev = n;
}
static inline void list_del(struct tcp_list *n)
{
	if (!n->next)
		return;
	n->prev->next = n->next; n->next->prev = n->prev; n->next = n->prev = NULL;
}
#define container_of(p, type, member) ((type *)((char *)(p) - offsetof(type, member)))

/* ---- sequence ranges: out-of-order data (receiver) and the SACK scoreboard (sender) ---- */
#define TCP_MAX_RANGES 64
struct tcp_range { uint32_t start, end; };      /* [start, end) */
struct tcp_ranges {
	uint32_t n;
	struct tcp_range r[TCP_MAX_RANGES];          /* sorted, disjoint, non-adjacent */
};

#define TCP_BUF_CACHE 64
#define TCP_OBJ_CACHE 256            /* sockets and per-connection memory kept for reuse */

/* Per-connection memory freed when the connection enters TIME_WAIT. */
struct tcp_conn_mem {
	struct tcp_ranges ooo;       /* received above rcv_nxt */
	struct tcp_ranges sacked;    /* SACKed by the peer above snd_una */
	uint32_t sack_recent[4];     /* start of the most recently changed ooo ranges (RFC 2018 4) */
	uint8_t nrecent;
};

/* T_CLOSE: TIME_WAIT, FIN-WAIT-2; T_REORDER: SACKed data but no progress (see tcp_timer.c) */
enum { T_RTO, T_PERSIST, T_DELACK, T_KEEPALIVE, T_CLOSE, T_REORDER, T_NUM };

struct tcp_sock {
	struct tcp_stack *ts;
	void *user;
	uint8_t state;
	/* ownership and bookkeeping */
	bool owned;           /* the application holds the handle */
	bool ephemeral;       /* local port came from bind_ephemeral: release it at the end */
	bool hashed;          /* in the connection or listener table */
	bool dirty;           /* on ts->dirty: tcp_output has something to do */
	bool ev_queued, ev_edge;
	bool in_tw_count;
	/* options */
	bool nodelay, keepalive;
	bool sack_ok, ts_ok, ws_ok;      /* negotiated */
	/* flags */
	bool syn_pending;     /* (re)send SYN or SYN-ACK at the next output */
	bool ack_now;         /* send an ACK at the next output */
	bool ack_soon;        /* an ACK is due, but may ride on the application's answer (held) */
	bool ack_held;        /* ack_soon was held once (tcp_flush_hold_acks): it goes next time */
	bool fin_queued;      /* the application shut down writing: FIN follows the data */
	bool fin_rcvd;
	bool rd_shut;
	bool ooo_fin;         /* a FIN arrived out of order at ooo_fin_seq */
	bool in_recovery;     /* fast recovery (RFC 6582 / RFC 6675) */
	bool rtt_active;
	bool persist;         /* zero-window probing */
	bool force_probe;     /* persist timer fired: send one segment beyond the window */
	bool dsack;           /* report dsack_* as the first SACK block (RFC 2883) */
	bool rst_on_data;     /* closed with unread data / orphaned: data from now on resets */
	bool passive;         /* created by a listener */
	bool rxt_head;        /* retransmit the segment at snd_una (fast retransmit, partial ACK) */
	bool tlp_probe, tlp_sent;   /* tail loss probe wanted / sent since snd_una last moved */
	uint8_t snd_wscale, rcv_wscale;
	uint8_t backoff, probes_out, dupacks, cc_algo;
	uint8_t keepcnt;
	int err;              /* pending error, positive errno */
	unsigned ev_last;

	struct us_endpoint local, remote;
	struct tcp_sock *hnext, **hpprev;          /* hash chain */
	uint32_t hash;
	struct tcp_list dirty_node, ev_node;

	/* listener */
	struct tcp_sock *parent;                    /* listener of a not yet accepted child */
	struct tcp_list q_node;                     /* in parent's synq or acceptq */
	struct tcp_list synq, acceptq;
	uint32_t nsynq, nacceptq, backlog;

	/* timers: absolute deadlines (0 = off); one wheel entry at the earliest */
	uint64_t deadline[T_NUM];
	struct tw_timer timer;

	/* send sequence space */
	uint32_t iss, snd_una, snd_nxt, snd_max, snd_wnd, max_snd_wnd, snd_wl1, snd_wl2;
	uint32_t sb_seq;             /* sequence number of the first byte in sndbuf */
	uint32_t fin_seq;            /* valid when fin_queued: sb_seq + sndbuf.len at shutdown */
	uint32_t snd_sml;            /* end of the last small segment sent (Nagle, Minshall) */
	uint32_t recover;            /* RFC 6582 recover / RFC 6675 RecoveryPoint */
	uint32_t high_rxt;           /* RFC 6675 HighRxt */
	uint32_t pipe;               /* RFC 6675 pipe, refreshed per ACK */
	uint32_t mss;                /* send MSS: payload per segment, TS option deducted */
	uint32_t peer_mss, adv_mss;  /* the peer's MSS option / ours */
	uint32_t rcv_mss;            /* largest payload seen (delayed-ACK "full segment") */
	/* receive sequence space */
	uint32_t irs, rcv_nxt, rcv_adv;   /* rcv_adv: right edge advertised */
	uint32_t last_ack_sent;
	uint32_t unacked_bytes;      /* received since our last ACK */
	uint32_t quickack;
	uint32_t ooo_fin_seq;
	uint32_t dsack_start, dsack_end;
	/* timestamps (RFC 7323) */
	uint32_t ts_recent, ts_offset;
	uint64_t ts_recent_at;
	/* RTT (RFC 6298), microseconds */
	uint32_t srtt, rttvar, rto, min_rtt;
	uint32_t rtt_seq;
	uint64_t rtt_time;
	uint64_t last_send, last_recv;
	uint64_t rxt_round;           /* when HighRxt last went back to snd_una */
	uint32_t er_una;             /* snd_una when T_REORDER was armed */
	uint32_t rto_tsval;          /* our TSval when the last RTO fired */
	uint32_t retries;            /* consecutive RTO / SYN retransmissions */
	/* keepalive, seconds */
	uint32_t keepidle, keepintvl;
	/* congestion control */
	struct cc_state cc;
	const struct cc_ops *ca;
	/* buffers */
	uint32_t sndbuf_size, rcvbuf_size, mss_clamp;
	struct tcp_ring sndbuf, rcvbuf;
	struct tcp_conn_mem *mem;

	/* statistics */
	uint64_t bytes_sent, bytes_retrans, bytes_acked, bytes_received;
	uint64_t segs_out, segs_in, retransmits, timeouts, fast_retransmits, recoveries;
	uint64_t zwp, kap;
};

struct tcp_stack {
	struct tcp_config cfg;
	struct tcp_hooks hooks;
	void *ctx;
	struct tw_wheel wheel;
	uint64_t now;
	uint64_t hkey[2], isn_key[2], ts_key[2];
	/* connections by 4-tuple, listeners by (address, port): chained hash tables */
	struct tcp_sock **ctab, **ltab;
	uint32_t cmask, lmask, nconn, nlisten, ntw;
	struct tcp_sock *last;                      /* last connection found: bulk flows hit it */
	struct tcp_list dirty, evq;
	bool tx_blocked;                            /* emit said -ENOBUFS during this flush */
	bool hold_acks;                             /* inside tcp_flush_hold_acks */
	/* RFC 5961 sec. 7 challenge-ACK limit */
	uint64_t chal_window;
	uint32_t chal_count;
	struct us_tcp_stats *st;                   /* counters: &own_st or tcp_stack_count_into's */
	struct us_tcp_stats own_st;
	/* Buffers of the configured sizes kept for the next connection: no malloc, no page
	 * faults on fresh pages for short connections (HTTP with Connection: close). */
	void *buf_cache[TCP_BUF_CACHE];
	uint32_t buf_cache_size[TCP_BUF_CACHE];
	uint32_t nbuf_cache;
	/* Freed sockets and connection memory, reused without malloc: a short connection costs no
	 * allocation once the stack runs (and the heap does not churn with TIME_WAIT sockets). */
	void *sock_cache[TCP_OBJ_CACHE], *mem_cache[TCP_OBJ_CACHE];
	uint32_t nsock_cache, nmem_cache;
	uint8_t hdr[TCP_MAX_HDR];
};

/* Every entry point notes the time; an empty wheel follows it, so that the first timers are
 * filed relative to the present. */
static inline void tcp_touch(struct tcp_stack *ts, uint64_t now)
{
	if (now > ts->now)
		ts->now = now;
	if (!ts->wheel.count && now > ts->wheel.now)
		ts->wheel.now = now;
}

/* The gauges in the counters, after nconn, nlisten or ntw changed (per connection, not per
 * segment). */
static inline void tcp_gauges(struct tcp_stack *ts)
{
	ts->st->conns = ts->nconn;
	ts->st->listeners = ts->nlisten;
	ts->st->time_wait = ts->ntw;
}

/* isn.c */
uint32_t tcp_hash_tuple(const struct tcp_stack *ts, const struct us_endpoint *l, const struct us_endpoint *r);

/* tcp_conn.c: socket memory and the tables */
void *tcp_obj_get(void **cache, uint32_t *n, size_t size);   /* from a free list, or calloc */
void *tcp_buf_get(struct tcp_stack *ts, uint32_t size);
void tcp_buf_put(struct tcp_stack *ts, void *p, uint32_t size);
void tcp_sock_put(struct tcp_stack *ts, struct tcp_sock *s);
void tcp_mem_put(struct tcp_stack *ts, struct tcp_conn_mem *m);
void tcp_free_sock_mem(struct tcp_sock *s);                  /* buffers and per-connection memory */
bool tcp_ep_eq(const struct us_endpoint *a, const struct us_endpoint *b);
uint32_t tcp_listen_hash(const struct tcp_stack *ts, uint16_t port);
int tcp_hash_insert(struct tcp_sock *s);
void tcp_unhash(struct tcp_sock *s);
struct tcp_sock *tcp_lookup(struct tcp_stack *ts, const struct us_endpoint *l, const struct us_endpoint *r);
struct tcp_sock *tcp_lookup_listener(struct tcp_stack *ts, const struct us_endpoint *l);

/* tcp_sock.c: the socket life cycle */
struct tcp_sock *tcp_sock_alloc(struct tcp_stack *ts);
int tcp_conn_setup(struct tcp_sock *s);     /* buffers and per-connection memory */
void tcp_set_state(struct tcp_sock *s, int state);
void tcp_destroy(struct tcp_sock *s);
void tcp_done(struct tcp_sock *s, int err);  /* -> CLOSED with error; freed if orphaned */
void tcp_enter_time_wait(struct tcp_sock *s, uint64_t now);
void tcp_mark_dirty(struct tcp_sock *s);
void tcp_notify(struct tcp_sock *s, bool edge);
void tcp_dispatch_events(struct tcp_stack *ts);
void tcp_child_established(struct tcp_sock *s);
bool tcp_synchronized(const struct tcp_sock *s);

/* tcp_input.c */
void tcp_enter_recovery(struct tcp_sock *s, uint64_t now);
void tcp_process(struct tcp_stack *ts, const struct us_addr *src, const struct us_addr *dst,
		 const struct tcp_seg *seg, uint64_t now);

/* tcp_output.c */
void tcp_output(struct tcp_sock *s, uint64_t now);
int tcp_send_ack(struct tcp_sock *s, uint64_t now);
int tcp_send_rst(struct tcp_sock *s, uint64_t now);
void tcp_reply_rst(struct tcp_stack *ts, const struct us_addr *src, const struct us_addr *dst,
		   const struct tcp_seg *seg);
void tcp_challenge_ack(struct tcp_sock *s, uint64_t now);
void tcp_send_probe(struct tcp_sock *s, uint64_t now);      /* keepalive: seq snd_una - 1 */
uint32_t tcp_rcv_window(struct tcp_sock *s);                 /* what we would advertise, bytes */
uint32_t tcp_ts_now(const struct tcp_sock *s, uint64_t now);
void tcp_update_mss(struct tcp_sock *s);
void tcp_want_head_rexmit(struct tcp_sock *s);                /* retransmit snd_una first */
void tcp_reply_rst_sock(struct tcp_sock *s, const struct tcp_seg *seg);
uint32_t tcp_initial_cwnd(const struct tcp_sock *s);
uint64_t tcp_persist_interval(const struct tcp_sock *s);

/* tcp_timer.c */
void tcp_timer_set(struct tcp_sock *s, int which, uint64_t when);
void tcp_timer_clear(struct tcp_sock *s, int which);
void tcp_timer_fire(struct tcp_sock *s, uint64_t now);
void tcp_rtt_sample(struct tcp_sock *s, uint32_t rtt_us);
void tcp_rearm_rto(struct tcp_sock *s, uint64_t now);
void tcp_arm_probe(struct tcp_sock *s, uint64_t now);      /* T_REORDER, if not armed */

/* tcp_sack.c */
bool ranges_add(struct tcp_ranges *rs, uint32_t start, uint32_t end);   /* false when full */
void ranges_trim_below(struct tcp_ranges *rs, uint32_t seq);
uint32_t ranges_bytes(const struct tcp_ranges *rs);
int ranges_find(const struct tcp_ranges *rs, uint32_t seq);   /* index of range holding seq, -1 */
void tcp_ooo_note(struct tcp_sock *s, uint32_t start);
int tcp_sack_blocks(struct tcp_sock *s, uint32_t blocks[][2], int max);
bool tcp_sack_update(struct tcp_sock *s, const struct tcp_seg *seg);   /* true: new data SACKed */
void tcp_sack_pipe(struct tcp_sock *s);
bool tcp_sack_is_lost(const struct tcp_sock *s, uint32_t seq);
bool tcp_sack_next_seg(struct tcp_sock *s, uint32_t *seq, uint32_t *len);        /* rule 1 */
bool tcp_sack_next_seg_rule3(struct tcp_sock *s, uint32_t *seq, uint32_t *len);
uint32_t tcp_sack_lost_bytes(const struct tcp_sock *s);

/* isn.c */
uint64_t siphash(const uint64_t key[2], const void *data, size_t len, int crounds, int drounds);
uint32_t tcp_isn(const struct tcp_stack *ts, const struct us_endpoint *l, const struct us_endpoint *r, uint64_t now);
uint32_t tcp_ts_offset(const struct tcp_stack *ts, const struct us_endpoint *l, const struct us_endpoint *r);

/* tcp_check.c (debugging and fuzzing): 0 when every invariant holds, else a line number there */
int tcp_check_invariants(const struct tcp_stack *ts);
int tcp_sock_check(const struct tcp_sock *s);
