/* stack.h: the stack object and the data its files share. Each file declares its own calls
 * in its own header; a file calls only the files below it (../LAYERS, checked by make lint):
 *
 *   stack.c     the object: open, close, options applied, information        (top)
 *   poll.c      the one poll loop: RX frames to UDP/TCP input, control messages to their
 *               owners, timers, the batch's TX flush; us_wait/us_poll/us_flush, driver thread
 *   tcp_calls.c the us_tcp_* socket calls of ../api.h
 *   tcp_glue.c  the TCP core (../tcp/) wired in: segments in and out, timers, active opens
 *   tcp_ready.c TCP readiness: the ready list, blocked writers, the socketpair behind fileno()
 *   udp.c       UDP sockets and their receive queues
 *   eph.c       ephemeral ports claimed from the launcher: UDP binds, TCP pools, released
 *   sock.c      the socket base: life cycle, readiness, waiting; the us_sock_* calls
 *   ip.c        IP + Ethernet output, local addresses and claimed tuples, the device flush
 *   neigh.c     dst -> MAC cache fed by the launcher, with a bounded queue per unresolved dst
 *   ctl.c       the control channel (ctl.h), transport only: send, read the waiting messages
 *   capture.c   frames in and out copied for `xdpstack capture` (../base/capring.h)
 *   opts.c      option text (XDPSTACK_CC, XDPSTACK_TCP, XDPSTACK_FAULTS) parsed into structs
 *   faults.c, testing.c  the fault middleware and the in-memory device under a stack
 *
 * A lower file reaches a higher one only through a pointer the higher one installed: the
 * socket's ops (struct us_sock_ops, sock.h), the poll loop's hooks in the stack (poll_once,
 * sleep, ctl_input), and eph_ready (an active open's port, eph.c -> tcp_glue.c).
 * Below the stack (../LAYERS): ../base/, ../dev/, ../tcp/; above it ../api.h, which it
 * implements. Every function expects the stack's lock held, except where it says otherwise. */
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
#include "opts.h"
#include "../base/capring.h"
#include "../base/clock.h"
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
enum { US_EP_WAKE = 1000, US_EP_TIMER, US_EP_CTL };   /* epoll tags beside the device queues */

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

struct us_sock_ops;

struct us_sock {
	struct us_stack *st;
	const struct us_sock_ops *ops;   /* installed by udp.c or tcp_calls.c (sock.h) */
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
	struct us_eph *eph;        /* ephemeral ports: ready pools and claims in flight (eph.c) */
	struct us_cap *cap;        /* the capture area of the shared page (capture.c), or NULL */
	uint8_t cap_dirs;          /* US_CAP_IN | US_CAP_OUT while captured: the fast path's test */
	/* an active open's port is claimed (or failed, err < 0): installed by tcp_glue.c */
	void (*eph_ready)(struct us_sock *waiter, const struct us_endpoint *local, int err);
	struct us_endpoint tcp_pick;   /* the port tcp_connect's bind_ephemeral takes (tcp_glue.c) */
	int have_tcp_pick;
	/* The poll loop (poll.c), installed at open, for the files below it that must wait with no
	 * driver thread: blocking socket calls, a claim's answer, the close linger. */
	int (*poll_once)(struct us_stack *st);                /* one round, never sleeps */
	int (*sleep)(struct us_stack *st, int timeout_ms);    /* epoll, lock released meanwhile */
	void (*ctl_input)(struct us_stack *st);               /* every waiting control message */
};

/* stack.c: a stack over any device (testing.c opens one over the in-memory device). */
struct us_stack *us_stack_open_dev(const struct us_desc *d, struct us_netdev *dev, int *err);
