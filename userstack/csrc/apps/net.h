/* net.h: one event loop over two TCP transports, for the C apps that must run the same code on
 * the user-level stack (../api.h, driven by us_wait) and on kernel sockets (epoll), so that "the
 * same server on the kernel stack" is the same server.
 *
 *     struct net n;
 *     net_open_user(&n, &err)  or  net_open_kernel(&n)
 *     net_listen(&n, &ep, backlog, &lsock, my_listener)       // user pointer comes back in events
 *     for (;;) {
 *         int k = net_wait(&n, ev, 256, 1000);                 // ready sockets, level-triggered
 *         for each ev: listener -> net_accept(&n, &lsock, &c->s, c) until -EAGAIN
 *                      conn     -> net_read / net_writev until -EAGAIN
 *     }
 *
 * Every call returns >= 0 or -errno (-EAGAIN: try again after the next event). Readiness is
 * level-triggered on both transports; NET_OUT is reported only while asked for (net_set_events).
 * Writes on the user stack are sent at the next net_wait (coalesced across the batch).
 */
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>
#include "../api.h"

#define NET_IN   0x1u
#define NET_OUT  0x4u
#define NET_ERR  0x8u
#define NET_HUP  0x10u

enum net_kind { NET_KERNEL = 1, NET_USER };

struct us_stack;
struct us_sock;

struct net {
	enum net_kind kind;
	int epfd;                   /* kernel */
	struct us_stack *st;        /* user */
	void *evbuf;                /* epoll_event or us_event array */
	int evcap;
	int wakefd;                 /* kernel: eventfd in the epoll set, for net_wake */
};

struct net_sock {
	int fd;                     /* kernel */
	struct us_sock *us;         /* user */
	uint32_t events;            /* interest: NET_IN / NET_OUT */
	void *user;
};

struct net_event {
	void *user;
	uint32_t events;
};

int net_open_kernel(struct net *n);
/* The user-level stack from the XDPSTACK_* environment (`xdpstack run`). */
int net_open_user(struct net *n);
void net_close_all(struct net *n);
const char *net_kind_name(const struct net *n);
/* The stack, for the user transport (NULL on kernel sockets). */
struct us_stack *net_stack(const struct net *n);

int net_listen(struct net *n, const struct us_endpoint *local, int backlog, struct net_sock *out,
	       void *user);
/* A connection from the listener, registered for NET_IN with user; -EAGAIN when none waits.
 * remote may be NULL. */
int net_accept(struct net *n, struct net_sock *listener, struct net_sock *out, void *user,
	       struct us_endpoint *remote);
/* Active open (non-blocking): completion shows as NET_OUT (asked for here) or NET_ERR. */
int net_connect(struct net *n, const struct us_endpoint *remote, struct net_sock *out, void *user);
/* The local endpoint (the port a kernel listener on port 0 got). */
int net_local(struct net *n, struct net_sock *s, struct us_endpoint *out);
/* The pending error of a socket (after NET_ERR or on completion of connect): 0 or -errno. */
int net_sock_error(struct net *n, struct net_sock *s);
int net_set_events(struct net *n, struct net_sock *s, uint32_t events);
int net_wait(struct net *n, struct net_event *ev, int max, int timeout_ms);
/* Make a sleeping (or the next) net_wait return. Async-signal-safe: for signal handlers. */
void net_wake(struct net *n);

ssize_t net_read(struct net *n, struct net_sock *s, void *buf, size_t len);
/* Zero-copy reading (user transport only, else -EOPNOTSUPP): all readable bytes (returned) of
 * which the first *len0 are contiguous at *p, valid until net_consume or close; 0 when nothing
 * is readable (net_read then tells end of stream or an error apart). */
ssize_t net_peek(struct net *n, struct net_sock *s, const char **p, size_t *len0);
int net_consume(struct net *n, struct net_sock *s, size_t len);
/* The bytes taken (possibly fewer than offered), or -errno (-EAGAIN when none were). */
ssize_t net_write(struct net *n, struct net_sock *s, const void *buf, size_t len);
ssize_t net_writev(struct net *n, struct net_sock *s, const struct iovec *iov, int cnt);
int net_shutdown_wr(struct net *n, struct net_sock *s);
void net_close(struct net *n, struct net_sock *s);
/* Disable Nagle (both transports) on a connected socket. */
int net_nodelay(struct net *n, struct net_sock *s);

/* Endpoint parsing: "198.18.0.1:80", "[2001:db8::1]:80", "*:80" / ":80" (IPv4 any). */
int net_parse_endpoint(const char *text, struct us_endpoint *out);
void net_format_endpoint(const struct us_endpoint *ep, char *out, size_t cap);
