/* net.c: the two transports of net.h. Kernel: non-blocking sockets and level-triggered epoll.
 * User: the user-level stack's TCP (../api.h), whose us_wait processes RX, timers and TX and then
 * returns the ready sockets. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>
#include "../api.h"
#include "net.h"

#define EVCAP 1024


/* ---- endpoints ---- */
static socklen_t to_sockaddr(const struct us_endpoint *ep, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (ep->addr.family == US_AF6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(ep->port);
		memcpy(&s6->sin6_addr, ep->addr.a, 16);
		return sizeof(*s6);
	}
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	s4->sin_family = AF_INET;
	s4->sin_port = htons(ep->port);
	memcpy(&s4->sin_addr, ep->addr.a, 4);
	return sizeof(*s4);
}

static void from_sockaddr(const struct sockaddr_storage *ss, struct us_endpoint *ep)
{
	memset(ep, 0, sizeof(*ep));
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
		ep->addr.family = US_AF6;
		memcpy(ep->addr.a, &s6->sin6_addr, 16);
		ep->port = ntohs(s6->sin6_port);
	} else {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
		ep->addr.family = US_AF4;
		memcpy(ep->addr.a, &s4->sin_addr, 4);
		ep->port = ntohs(s4->sin_port);
	}
}

int net_parse_endpoint(const char *text, struct us_endpoint *out)
{
	char host[64];
	const char *colon;
	memset(out, 0, sizeof(*out));
	if (text[0] == '[') {
		const char *rb = strchr(text, ']');
		if (!rb || rb[1] != ':' || (size_t)(rb - text - 1) >= sizeof(host))
			return -EINVAL;
		memcpy(host, text + 1, rb - text - 1);
		host[rb - text - 1] = '\0';
		colon = rb + 1;
	} else {
		colon = strrchr(text, ':');
		if (!colon || (size_t)(colon - text) >= sizeof(host))
			return -EINVAL;
		memcpy(host, text, colon - text);
		host[colon - text] = '\0';
	}
	char *e;
	unsigned long port = strtoul(colon + 1, &e, 10);
	if (!colon[1] || *e || port > 65535)
		return -EINVAL;
	out->port = (uint16_t)port;
	if (!host[0] || !strcmp(host, "*")) {
		out->addr.family = US_AF4;
		return 0;
	}
	if (inet_pton(AF_INET, host, out->addr.a) == 1) {
		out->addr.family = US_AF4;
		return 0;
	}
	if (inet_pton(AF_INET6, host, out->addr.a) == 1) {
		out->addr.family = US_AF6;
		return 0;
	}
	return -EINVAL;
}

void net_format_endpoint(const struct us_endpoint *ep, char *out, size_t cap)
{
	char a[INET6_ADDRSTRLEN];
	inet_ntop(ep->addr.family == US_AF6 ? AF_INET6 : AF_INET, ep->addr.a, a, sizeof(a));
	snprintf(out, cap, ep->addr.family == US_AF6 ? "[%s]:%u" : "%s:%u", a, ep->port);
}

/* ---- common ---- */
const char *net_kind_name(const struct net *n)
{
	return n->kind == NET_USER ? "userstack" : "kernel";
}

struct us_stack *net_stack(const struct net *n)
{
	return n->kind == NET_USER ? n->st : NULL;
}

static uint32_t k_mask(uint32_t ev)
{
	return (ev & NET_IN ? EPOLLIN : 0) | (ev & NET_OUT ? EPOLLOUT : 0);
}

int net_open_kernel(struct net *n)
{
	memset(n, 0, sizeof(*n));
	n->kind = NET_KERNEL;
	n->epfd = epoll_create1(EPOLL_CLOEXEC);
	n->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	n->evcap = EVCAP;
	n->evbuf = calloc(EVCAP, sizeof(struct epoll_event));
	if (n->epfd < 0 || n->wakefd < 0 || !n->evbuf)
		return -errno;
	struct epoll_event e = { .events = EPOLLIN, .data.ptr = NULL };   /* NULL: the wake fd */
	return epoll_ctl(n->epfd, EPOLL_CTL_ADD, n->wakefd, &e) < 0 ? -errno : 0;
}

int net_open_user(struct net *n)
{
	int err;
	memset(n, 0, sizeof(*n));
	n->kind = NET_USER;
	n->epfd = n->wakefd = -1;
	n->evcap = EVCAP;
	n->evbuf = calloc(EVCAP, sizeof(struct us_event));
	if (!n->evbuf)
		return -ENOMEM;
	n->st = us_stack_open_env(&err);
	return n->st ? 0 : err;
}

void net_close_all(struct net *n)
{
	if (n->kind == NET_USER && n->st)
		us_stack_close(n->st);
	if (n->epfd >= 0)
		close(n->epfd);
	if (n->wakefd >= 0)
		close(n->wakefd);
	free(n->evbuf);
	n->st = NULL;
	n->epfd = n->wakefd = -1;
	n->evbuf = NULL;
}

static int k_register(struct net *n, struct net_sock *s, uint32_t events, void *user)
{
	struct epoll_event e = { .events = k_mask(events), .data.ptr = user };
	s->events = events;
	s->user = user;
	return epoll_ctl(n->epfd, EPOLL_CTL_ADD, s->fd, &e) < 0 ? -errno : 0;
}

int net_listen(struct net *n, const struct us_endpoint *local, int backlog, struct net_sock *out,
	       void *user)
{
	int r;
	memset(out, 0, sizeof(*out));
	out->fd = -1;
	if (n->kind == NET_USER) {
		struct us_sock *s = us_tcp_socket(n->st, local->addr.family, &r);
		if (!s)
			return r;
		if ((r = us_tcp_bind(s, local)) < 0 || (r = us_tcp_listen(s, backlog)) < 0) {
			us_sock_close(s);
			return r;
		}
		us_sock_set_user(s, user);
		out->us = s;
		out->user = user;
		out->events = NET_IN;
		return 0;
	}
	struct sockaddr_storage ss;
	socklen_t sl = to_sockaddr(local, &ss);
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, backlog) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	out->fd = fd;
	if ((r = k_register(n, out, NET_IN, user)) < 0) {
		close(fd);
		out->fd = -1;
	}
	return r;
}

int net_accept(struct net *n, struct net_sock *listener, struct net_sock *out, void *user,
	       struct us_endpoint *remote)
{
	int r;
	memset(out, 0, sizeof(*out));
	out->fd = -1;
	if (n->kind == NET_USER) {
		struct us_sock *s = us_tcp_accept(listener->us, remote, &r);
		if (!s)
			return r;
		us_sock_set_user(s, user);
		out->us = s;
		out->user = user;
		out->events = NET_IN;
		return 0;
	}
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int fd = accept4(listener->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (remote)
		from_sockaddr(&ss, remote);
	out->fd = fd;
	if ((r = k_register(n, out, NET_IN, user)) < 0) {
		close(fd);
		out->fd = -1;
	}
	return r;
}

int net_connect(struct net *n, const struct us_endpoint *remote, struct net_sock *out, void *user)
{
	int r;
	memset(out, 0, sizeof(*out));
	out->fd = -1;
	if (n->kind == NET_USER) {
		struct us_sock *s = us_tcp_socket(n->st, remote->addr.family, &r);
		if (!s)
			return r;
		us_sock_set_user(s, user);
		r = us_tcp_connect(s, remote);
		if (r < 0 && r != -EINPROGRESS) {
			us_sock_close(s);
			return r;
		}
		out->us = s;
		out->user = user;
		out->events = 0;
		return net_set_events(n, out, NET_OUT);
	}
	struct sockaddr_storage ss;
	socklen_t sl = to_sockaddr(remote, &ss);
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&ss, sl) < 0 && errno != EINPROGRESS) {
		r = -errno;
		close(fd);
		return r;
	}
	out->fd = fd;
	if ((r = k_register(n, out, NET_OUT, user)) < 0) {
		close(fd);
		out->fd = -1;
	}
	return r;
}

int net_local(struct net *n, struct net_sock *s, struct us_endpoint *out)
{
	if (n->kind == NET_USER)
		return us_sock_local(s->us, out);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (getsockname(s->fd, (struct sockaddr *)&ss, &sl) < 0)
		return -errno;
	from_sockaddr(&ss, out);
	return 0;
}

int net_sock_error(struct net *n, struct net_sock *s)
{
	if (n->kind == NET_USER)
		return us_sock_error(s->us);
	int e = 0;
	socklen_t l = sizeof(e);
	if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &e, &l) < 0)
		return -errno;
	return -e;
}

int net_set_events(struct net *n, struct net_sock *s, uint32_t events)
{
	if (s->events == events)
		return 0;
	s->events = events;
	if (n->kind == NET_USER)
		return us_sock_set_events(s->us, (events & NET_IN ? US_EV_IN : 0) |
					  (events & NET_OUT ? US_EV_OUT : 0) | US_EV_ERR | US_EV_HUP);
	struct epoll_event e = { .events = k_mask(events), .data.ptr = s->user };
	return epoll_ctl(n->epfd, EPOLL_CTL_MOD, s->fd, &e) < 0 ? -errno : 0;
}

int net_wait(struct net *n, struct net_event *ev, int max, int timeout_ms)
{
	if (max > n->evcap)
		max = n->evcap;
	if (n->kind == NET_USER) {
		struct us_event *ue = n->evbuf;
		int k = us_wait(n->st, ue, max, timeout_ms);
		for (int i = 0; i < k; i++) {
			ev[i].user = ue[i].user;
			ev[i].events = ue[i].events & (NET_IN | NET_OUT | NET_ERR | NET_HUP);
		}
		return k;
	}
	struct epoll_event *ke = n->evbuf;
	int k = epoll_wait(n->epfd, ke, max, timeout_ms);
	if (k < 0)
		return -errno;
	int out = 0;
	for (int i = 0; i < k; i++) {
		uint32_t e = ke[i].events;
		if (!ke[i].data.ptr) {
			uint64_t v;
			if (read(n->wakefd, &v, sizeof(v)) < 0) { /* drained already */ }
			continue;
		}
		ev[out].user = ke[i].data.ptr;
		ev[out++].events = (e & EPOLLIN ? NET_IN : 0) | (e & EPOLLOUT ? NET_OUT : 0) |
				   (e & EPOLLERR ? NET_ERR : 0) | (e & EPOLLHUP ? NET_HUP : 0);
	}
	return out;
}

void net_wake(struct net *n)
{
	if (n->kind == NET_USER) {
		if (n->st)
			us_wake(n->st);
		return;
	}
	uint64_t one = 1;
	if (n->wakefd >= 0 && write(n->wakefd, &one, sizeof(one)) < 0) { /* saturated: awake */ }
}

ssize_t net_read(struct net *n, struct net_sock *s, void *buf, size_t len)
{
	if (n->kind == NET_USER)
		return us_tcp_read(s->us, buf, len);
	ssize_t r = read(s->fd, buf, len);
	return r < 0 ? -errno : r;
}

ssize_t net_peek(struct net *n, struct net_sock *s, const char **p, size_t *len0)
{
	if (n->kind != NET_USER)
		return -EOPNOTSUPP;
	struct us_iov iov[2];
	ssize_t r = us_tcp_peek(s->us, iov);
	if (r <= 0)
		return r;
	*p = iov[0].base;
	*len0 = iov[0].len;
	return r;
}

int net_consume(struct net *n, struct net_sock *s, size_t len)
{
	return n->kind == NET_USER ? us_tcp_consume(s->us, len) : -EOPNOTSUPP;
}

ssize_t net_write(struct net *n, struct net_sock *s, const void *buf, size_t len)
{
	if (n->kind == NET_USER) {
		struct us_iov v = { (void *)buf, len };
		return us_tcp_writev(s->us, &v, 1, US_MSG_MORE);
	}
	ssize_t r = send(s->fd, buf, len, MSG_NOSIGNAL);
	return r < 0 ? -errno : r;
}

ssize_t net_writev(struct net *n, struct net_sock *s, const struct iovec *iov, int cnt)
{
	if (n->kind == NET_USER) {
		/* struct iovec and struct us_iov have the same layout; sent by the next net_wait */
		_Static_assert(sizeof(struct iovec) == sizeof(struct us_iov), "iov layout");
		return us_tcp_writev(s->us, (const struct us_iov *)iov, cnt, US_MSG_MORE);
	}
	if (cnt == 1)
		return net_write(n, s, iov[0].iov_base, iov[0].iov_len);
	struct msghdr mh = { .msg_iov = (struct iovec *)iov, .msg_iovlen = cnt };
	ssize_t r = sendmsg(s->fd, &mh, MSG_NOSIGNAL);
	return r < 0 ? -errno : r;
}

int net_shutdown_wr(struct net *n, struct net_sock *s)
{
	if (n->kind == NET_USER)
		return us_tcp_shutdown(s->us, 1);
	return shutdown(s->fd, SHUT_WR) < 0 ? -errno : 0;
}

void net_close(struct net *n, struct net_sock *s)
{
	if (n->kind == NET_USER) {
		if (s->us)
			us_sock_close(s->us);
		s->us = NULL;
		return;
	}
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
}

int net_nodelay(struct net *n, struct net_sock *s)
{
	if (n->kind == NET_USER)
		return us_tcp_setsockopt(s->us, US_TCP_NODELAY, 1);
	int one = 1;
	return setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ? -errno : 0;
}
