/* stack.h: the stack object and the internal interfaces between its layers.
 *
 *   stack.c  the object, its lock, the poll loop (RX bursts, control, timers, TX flush), readiness
 *   ip.c     input dispatch (Ethernet/IP checked, then UDP or TCP) and output (IP + Ethernet)
 *   neigh.c  dst -> MAC cache fed by the launcher, with a bounded queue per unresolved dst
 *   ctl.c    the control channel (ctl.h), transport only: send, read the waiting messages
 *   eph.c    ephemeral ports claimed from the launcher and released
 *   udp.c    UDP sockets and their receive queues
 *   tcp_glue.c  the TCP core (tcp/) wired in: segments in and out, timers, readiness, ephemeral
 *            ports through the control channel, and the us_tcp_* socket calls
 *   opts.c   parses option text (XDPSTACK_CC, XDPSTACK_TCP, XDPSTACK_FAULTS) into structs; stack.c
 *            applies them
 *   faults.c the fault middleware (../dev/fault.c) under the stack (faults.h)
 *   testing.c  the stack over the in-memory device (../dev/memdev.c) for unit tests (testing.h)
 * Below it (../LAYERS): ../base/ (wire views, timer wheel, environment), ../dev/ (devices),
 * ../tcp/ (the TCP core); above it ../api.h, which it implements.
 * Every function here expects the stack's lock held, except where it says otherwise. */
#pragma once
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include "../api.h"
#include "ctl.h"
#include "../base/env.h"
#include "../dev/netdev.h"
#include "../base/wire.h"
#include "faults.h"
#include "../tcp/tcp.h"

#define US_RX_BATCH        64
#define US_RX_BUDGET       16      /* bursts per queue per poll before control and timers run */
#define US_NEIGH_SLOTS     256     /* power of two */
#define US_NEIGH_QLEN      64      /* frames held per unresolved destination (arp_queue-like) */
#define US_NEIGH_TIMEOUT_NS   3000000000ull   /* give up on a RESOLVE after this */
#define US_NEIGH_FAILED_NS    1000000000ull   /* then drop at once for this long */
#define US_RXQ_DEFAULT_BYTES  (256 * 1024)
#define US_RXQ_SLOTS       2048    /* power of two: datagrams a receive queue holds */
/* Busy poll: PAUSEs between two polls. Few when the application spins in us_wait itself (each
 * costs ~20-35 ns here, and every one delays noticing a frame); more while a driver thread spins,
 * so that the application's threads get the lock between its polls. */
#define US_BUSY_PAUSES         1
#define US_BUSY_PAUSES_SHARED  64
#define US_CTL_POLL_NS     50000ull   /* busy poll: read the control channel this often */

enum us_sock_type { US_SOCK_UDP = 1, US_SOCK_TCP = 2 };

/* TCP options of a stack: the core's config plus the glue's own knobs (XDPSTACK_TCP). */
struct us_tcp_opts {
	struct tcp_config cfg;
	uint32_t port_pool;        /* ephemeral ports kept claimed ahead per local address (4) */
	uint32_t linger_ms;        /* us_stack_close waits this long for closing connections (1000) */
};

/* A socket receive queue: datagram records in a ring, payloads in a byte ring. */
struct us_rxrec {
	struct us_endpoint remote;
	struct us_endpoint local;
	uint64_t off;              /* absolute position in the byte ring */
	uint32_t len;
	uint32_t pad;
};

struct us_rxq {
	struct us_rxrec *rec;      /* US_RXQ_SLOTS records */
	uint32_t head, tail;       /* records: head = next to read, tail = next to write */
	uint8_t *bytes;
	uint32_t cap;              /* byte ring size (allocated) */
	uint32_t limit;            /* rcvbuf: bytes allowed in use */
	uint64_t rd, wr;           /* absolute positions in the byte ring */
};

struct us_sock {
	struct us_stack *st;
	uint8_t type;              /* enum us_sock_type */
	uint8_t family;
	uint8_t bound;
	uint8_t in_ready;          /* on st->ready list */
	uint8_t ephemeral;         /* bound to a port claimed through CLAIM_EPHEMERAL */
	uint8_t pad[3];
	struct us_endpoint local;
	int efd;                   /* eventfd for fileno(), -1 until asked for */
	int efd_set;
	int error;                 /* pending -errno */
	uint32_t evmask;
	void *user;
	struct us_sock *ready_next;
	struct us_sock *port_next; /* chain of UDP sockets on one port */
	struct us_sock *all_next, *all_prev;
	struct us_rxq q;           /* UDP */
	/* TCP */
	struct tcp_sock *tcp;      /* the core's socket, from us_tcp_socket until close */
	struct us_endpoint peer;   /* connect target while waiting for an ephemeral port */
	uint32_t claim_seq;        /* nonzero: connect waits for the CLAIMED with this seq */
	uint8_t wblocked;          /* on st->wblocked: a write or a waiter wants writability */
	uint8_t sp_in, sp_out;     /* sp[0] state: readable / writable as last set */
	uint8_t closed;            /* closed while a thread waited on it: freed by the last waiter */
	uint16_t waiting;          /* threads inside us_sock_wait / a blocking call on it */
	int sp[2];                 /* socketpair mirroring readiness for fileno(), -1 until asked */
	struct us_sock *wb_next;
};

struct us_neigh {
	struct us_addr dst;
	uint8_t mac[6];
	uint8_t state;             /* enum below */
	uint8_t nq;
	uint64_t deadline;         /* PENDING: give up; FAILED: retry after */
	struct us_frame q[US_NEIGH_QLEN];
};

enum { US_N_EMPTY = 0, US_N_PENDING, US_N_OK, US_N_FAILED };

struct us_stack {
	pthread_mutex_t lock;
	pthread_cond_t cond;       /* broadcast when a socket becomes readable or errors */
	int waiters;
	struct us_desc desc;
	struct us_netdev *dev;           /* what the stack talks to (maybe a middleware) */
	struct us_netdev *base_dev;      /* the device under every middleware */
	int epfd, wakefd, timerfd, ctlfd;
	int woken;                 /* us_wake was called: us_wait/us_poll return (atomic) */
	/* Counters: in the launcher's shared page (XDPSTACK_STATS, struct us_shared_stats), or in
	 * own_stats. tcp_stats is where the TCP core counts (tcp_stack_count_into). */
	struct us_stats *stats;
	struct us_tcp_stats *tcp_stats;
	struct us_shared_stats own_stats;
	uint32_t parse_flags;      /* US_PARSE_LOCAL_PEER when desc.local_peer */
	uint64_t q_rx[US_MAX_QUEUES];   /* frames received per queue index */
	uint64_t now;              /* CLOCK_MONOTONIC ns, refreshed each poll */
	uint16_t ip_id;
	int tx_queue;              /* device queue index frames are sent from */
	int is_xdev;               /* dev is the AF_XDP device (../dev/xsk.c) */
	uint32_t neigh_pending;    /* entries in US_N_PENDING */
	struct us_neigh neigh[US_NEIGH_SLOTS];
	struct us_sock **udp_port; /* 65536 chains */
	struct us_sock *all;
	struct us_sock *ready;     /* sockets that may have events */
	uint32_t ctl_seq;
	/* the CLAIM_EPHEMERAL answer being waited for */
	uint32_t claim_seq;
	int claim_done;
	struct us_ctl_claimed claim_reply;
	/* driver thread */
	pthread_t driver;
	int driver_running;
	volatile int driver_stop;
	/* TCP (tcp_glue.c) */
	struct tcp_stack *tcp;
	struct us_tcp_opts topts;  /* what the TCP was (re)created with */
	uint64_t timer_armed;      /* CLOCK_MONOTONIC ns the timerfd is set to (0: disarmed) */
	uint32_t tx_pending;       /* frames submitted since the last device flush */
	uint32_t tcp_socks;        /* TCP sockets the application holds */
	uint32_t spins;            /* busy-poll iterations */
	uint64_t ctl_polled;       /* busy poll: when the control channel was last read */
	struct us_sock *wblocked;  /* sockets waiting to become writable */
	struct us_eph *eph;        /* ephemeral ports: ready pools and claims in flight */
};

/* stack.c */
uint64_t us_now_ns(void);
void us_sock_link(struct us_sock *s);          /* onto st->all */
void us_sock_unlink(struct us_sock *s);        /* off st->all and st->ready */
void us_sock_release(struct us_sock *s);       /* free, or leave it to the last waiter */
/* One wait for socket events `want` (lock released meanwhile; drives the stack when no driver
 * thread runs). -EBADF when the socket was closed meanwhile (it is gone: do not touch it). */
int us_sock_block_locked(struct us_sock *s, uint32_t want, uint64_t deadline);
void us_sock_mark_ready(struct us_sock *s);    /* a socket got an event: list, eventfd, cond */
int us_stack_flush_locked(struct us_stack *st);
int us_poll_locked(struct us_stack *st);       /* one round of processing, never sleeps */
/* Sleep in the stack's epoll (lock released meanwhile) up to timeout_ms; handles wake, timer, control. */
int us_sleep_locked(struct us_stack *st, int timeout_ms);
/* Arm the stack's timerfd for an absolute CLOCK_MONOTONIC deadline in ns (0 disarms). */
void us_stack_arm_timer(struct us_stack *st, uint64_t deadline_ns);
struct us_stack *us_stack_open_dev(const struct us_desc *d, struct us_netdev *dev, int *err);

/* ip.c */
void us_ip_input(struct us_stack *st, const struct us_frame *f);
bool us_is_local_addr(const struct us_stack *st, const struct us_addr *a);
/* First local address of the family (source for wildcard-bound sockets), or NULL. */
const struct us_addr *us_pick_source(const struct us_stack *st, uint8_t family);
/* Header room in front of an IP payload of this family. */
static inline uint32_t us_l3_offset(uint8_t family)
{
	return US_ETH_HLEN + (family == US_AF4 ? US_IPV4_HLEN : US_IPV6_HLEN);
}
/* The transport payload (l4len bytes at f->data + us_l3_offset) is in place: write IP and
 * Ethernet headers, and send (or hold until the destination's MAC is known). */
void us_ip_output(struct us_stack *st, struct us_frame *f, const struct us_addr *src,
		  const struct us_addr *dst, uint8_t proto, uint32_t l4len);

/* neigh.c */
/* Frame f has everything but the destination MAC: send it, or hold it, or drop it. */
void us_neigh_output(struct us_stack *st, const struct us_addr *dst, struct us_frame *f);
void us_neigh_update(struct us_stack *st, const struct us_addr *dst, const uint8_t *mac);
void us_neigh_timers(struct us_stack *st);
void us_neigh_flush_all(struct us_stack *st);  /* drop everything held (close) */

/* ctl.c */
int us_ctl_send(struct us_stack *st, union us_ctl_msg *m);
int us_ctl_recv(struct us_stack *st, union us_ctl_msg *m);  /* one waiting message: 1, or 0 */

/* stack.c: the poll loop's control input, each message to its owner */
void us_stack_ctl_input(struct us_stack *st);  /* read and act on every waiting message */

/* eph.c */
int us_eph_send_claim(struct us_stack *st, uint8_t proto, uint8_t family,
		      const struct us_endpoint *remote, uint32_t *seq);  /* the message, built once */
int us_eph_claim(struct us_stack *st, uint8_t proto, uint8_t family,
		 const struct us_endpoint *remote, struct us_endpoint *local);
void us_eph_release(struct us_stack *st, uint8_t proto, const struct us_endpoint *local);
void us_eph_claimed(struct us_stack *st, const union us_ctl_msg *m);  /* a CLAIMED answer */

/* tcp_glue.c */
int us_tcp_open(struct us_stack *st, const struct us_tcp_opts *o);   /* at stack open; reconfigure */
void us_tcp_close_all(struct us_stack *st);                          /* at stack close */
void us_tcp_input(struct us_stack *st, const struct us_parsed *p);
void us_tcp_timers(struct us_stack *st);       /* per poll, after RX: timers, writability */
void us_tcp_output(struct us_stack *st, bool hold);   /* per poll: flush (see tcp_glue.c), timerfd */
void us_tcp_flush_locked(struct us_stack *st); /* what the sockets queued goes out now */
void us_tcp_claimed(struct us_stack *st, const struct us_ctl_claimed *m);  /* a CLAIMED for TCP */
void us_tcp_close_locked(struct us_sock *s);
uint32_t us_tcp_events(struct us_sock *s);     /* US_EV_* now */
int us_tcp_fileno_locked(struct us_sock *s);
void us_tcp_refresh(struct us_sock *s);        /* readiness may have changed */
void us_tcp_want_writable(struct us_sock *s);  /* re-check writability after each poll */
int us_tcp_getsockopt_locked(struct us_sock *s, int opt, int *val);
bool us_tcp_tx_blocked(struct us_stack *st);

/* opts.c */
void us_tcp_opts_default(struct us_tcp_opts *o);
int us_tcp_opts_parse(struct us_tcp_opts *o, const char *spec);
int us_faults_parse(struct us_fault_config *c, const char *spec);
int us_tcp_cc_parse(const char *v, uint8_t *cc);   /* opts.c: XDPSTACK_CC's value */
int us_stack_apply_env(struct us_stack *st);   /* XDPSTACK_CC, XDPSTACK_TCP, XDPSTACK_FAULTS */

/* ip.c */
bool us_tuple_claimed(const struct us_stack *st, uint8_t proto, const struct us_endpoint *ep);

/* udp.c */
void us_udp_input(struct us_stack *st, const struct us_parsed *p);
int us_udp_fileno_locked(struct us_sock *s);
int us_udp_set_rcvbuf_locked(struct us_sock *s, uint32_t bytes);
int us_udp_error_locked(struct us_sock *s);
void us_udp_close_locked(struct us_sock *s);
bool us_rxq_empty(const struct us_rxq *q);
