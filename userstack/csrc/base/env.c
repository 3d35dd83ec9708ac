/* env.c: the XDPSTACK_* environment (env.h) both ways, and address text. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include "env.h"

int us_addr_parse(struct us_addr *a, const char *text)
{
	memset(a, 0, sizeof(*a));
	if (inet_pton(AF_INET, text, a->a) == 1) {
		a->family = US_AF4;
		return 0;
	}
	if (inet_pton(AF_INET6, text, a->a) == 1) {
		a->family = US_AF6;
		return 0;
	}
	return -EINVAL;
}

int us_addr_format(const struct us_addr *a, char *buf, size_t len)
{
	if (a->family != US_AF4 && a->family != US_AF6)
		return -EINVAL;
	return inet_ntop(a->family == US_AF4 ? AF_INET : AF_INET6, a->a, buf, len) ? 0 : -ENOSPC;
}

static const char *var(const char *fmt, ...)
{
	char name[64];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(name, sizeof(name), fmt, ap);
	va_end(ap);
	return getenv(name);
}

static int get_u32(const char *name, uint32_t *out)
{
	const char *v = var("%s", name);
	unsigned x;
	if (!v || sscanf(v, "%u", &x) != 1)
		return -EINVAL;
	*out = x;
	return 0;
}

int us_desc_from_env(struct us_desc *d)
{
	const char *v;
	uint32_t n;
	memset(d, 0, sizeof(*d));
	d->ctl_fd = -1;
	d->umem_fd = -1;
	if (!(v = var("XDPSTACK_VERSION")))
		return -ENOENT;
	if (atoi(v) != US_ENV_VERSION)
		return -EPROTO;
	if ((v = var("XDPSTACK_NAME")))
		snprintf(d->name, sizeof(d->name), "%s", v);
	get_u32("XDPSTACK_STACK_ID", &d->stack_id);
	if (!(v = var("XDPSTACK_IFNAME")) || strlen(v) >= sizeof(d->ifname))
		return -EINVAL;
	snprintf(d->ifname, sizeof(d->ifname), "%s", v);
	if (get_u32("XDPSTACK_IFINDEX", &d->ifindex) || get_u32("XDPSTACK_MTU", &d->mtu))
		return -EINVAL;
	if (!(v = var("XDPSTACK_MAC")) ||
	    sscanf(v, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &d->mac[0], &d->mac[1], &d->mac[2], &d->mac[3],
		   &d->mac[4], &d->mac[5]) != 6)
		return -EINVAL;
	if (get_u32("XDPSTACK_ADDRS", &n) || n > US_MAX_ADDRS)
		return -EINVAL;
	for (uint32_t i = 0; i < n; i++) {
		char text[64];
		unsigned fam;
		if (!(v = var("XDPSTACK_ADDR%u", i)) || sscanf(v, "%u %63s", &fam, text) != 2 ||
		    us_addr_parse(&d->addrs[i], text) || d->addrs[i].family != fam)
			return -EINVAL;
	}
	d->naddrs = n;
	if (get_u32("XDPSTACK_TUPLES", &n) || n > US_MAX_TUPLES)
		return -EINVAL;
	for (uint32_t i = 0; i < n; i++) {
		char proto[8], text[64];
		unsigned fam, port;
		struct us_tuple *t = &d->tuples[i];
		if (!(v = var("XDPSTACK_TUPLE%u", i)) ||
		    sscanf(v, "%7s %u %63s %u", proto, &fam, text, &port) != 4 ||
		    us_addr_parse(&t->addr, text) || t->addr.family != fam || port > 65535)
			return -EINVAL;
		if (!strcmp(proto, "udp"))
			t->proto = 17;
		else if (!strcmp(proto, "tcp"))
			t->proto = 6;
		else
			return -EINVAL;
		t->port = port;
	}
	d->ntuples = n;
	unsigned long long size;
	int fd;
	if (!(v = var("XDPSTACK_UMEM")) ||
	    sscanf(v, "%d %llu %u %u %u", &fd, &size, &d->frame_size, &d->headroom, &d->umem_flags) != 5)
		return -EINVAL;
	d->umem_fd = fd;
	d->umem_size = size;
	if (get_u32("XDPSTACK_QUEUES", &n) || n < 1 || n > US_MAX_QUEUES)
		return -EINVAL;
	for (uint32_t i = 0; i < n; i++) {
		struct us_queue_desc *q = &d->queues[i];
		int qfd;
		if (!(v = var("XDPSTACK_Q%u", i)) ||
		    sscanf(v, "%u %d %u %u %u %u %u %u", &q->queue_id, &qfd, &q->rx_size, &q->tx_size,
			   &q->fill_size, &q->comp_size, &q->frame_first, &q->frame_count) != 8)
			return -EINVAL;
		q->fd = qfd;
	}
	d->nqueues = n;
	if ((v = var("XDPSTACK_CTL_FD")))
		d->ctl_fd = atoi(v);
	get_u32("XDPSTACK_BUSY_POLL", &d->busy_poll);
	get_u32("XDPSTACK_LOCAL_PEER", &d->local_peer);
	d->stats_fd = -1;
	if ((v = var("XDPSTACK_STATS")) && (sscanf(v, "%d %u", &fd, &d->stats_size) != 2 || fd < 0))
		return -EINVAL;
	if (v)
		d->stats_fd = fd;
	d->owns_fds = 1;
	return 0;
}

struct out { char *buf; size_t len, used; };

static void put(struct out *o, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	size_t room = o->used < o->len ? o->len - o->used : 0;
	int n = vsnprintf(room ? o->buf + o->used : NULL, room, fmt, ap);
	va_end(ap);
	if (n > 0)
		o->used += n;
}

int us_desc_format_env(const struct us_desc *d, char *buf, size_t len)
{
	struct out o = { buf, len, 0 };
	char text[64];
	if (len)
		buf[0] = 0;
	put(&o, "XDPSTACK_VERSION=%d\n", US_ENV_VERSION);
	put(&o, "XDPSTACK_NAME=%s\n", d->name);
	put(&o, "XDPSTACK_STACK_ID=%u\n", d->stack_id);
	put(&o, "XDPSTACK_IFNAME=%s\n", d->ifname);
	put(&o, "XDPSTACK_IFINDEX=%u\n", d->ifindex);
	put(&o, "XDPSTACK_MAC=%02x:%02x:%02x:%02x:%02x:%02x\n", d->mac[0], d->mac[1], d->mac[2],
	    d->mac[3], d->mac[4], d->mac[5]);
	put(&o, "XDPSTACK_MTU=%u\n", d->mtu);
	put(&o, "XDPSTACK_ADDRS=%u\n", d->naddrs);
	for (uint32_t i = 0; i < d->naddrs && i < US_MAX_ADDRS; i++) {
		if (us_addr_format(&d->addrs[i], text, sizeof(text)))
			return -EINVAL;
		put(&o, "XDPSTACK_ADDR%u=%u %s\n", i, d->addrs[i].family, text);
	}
	put(&o, "XDPSTACK_TUPLES=%u\n", d->ntuples);
	for (uint32_t i = 0; i < d->ntuples && i < US_MAX_TUPLES; i++) {
		const struct us_tuple *t = &d->tuples[i];
		if (us_addr_format(&t->addr, text, sizeof(text)))
			return -EINVAL;
		put(&o, "XDPSTACK_TUPLE%u=%s %u %s %u\n", i, t->proto == 6 ? "tcp" : "udp",
		    t->addr.family, text, t->port);
	}
	put(&o, "XDPSTACK_UMEM=%d %llu %u %u %u\n", d->umem_fd, (unsigned long long)d->umem_size,
	    d->frame_size, d->headroom, d->umem_flags);
	put(&o, "XDPSTACK_QUEUES=%u\n", d->nqueues);
	for (uint32_t i = 0; i < d->nqueues && i < US_MAX_QUEUES; i++) {
		const struct us_queue_desc *q = &d->queues[i];
		put(&o, "XDPSTACK_Q%u=%u %d %u %u %u %u %u %u\n", i, q->queue_id, q->fd, q->rx_size,
		    q->tx_size, q->fill_size, q->comp_size, q->frame_first, q->frame_count);
	}
	put(&o, "XDPSTACK_CTL_FD=%d\n", d->ctl_fd);
	put(&o, "XDPSTACK_BUSY_POLL=%u\n", d->busy_poll);
	put(&o, "XDPSTACK_LOCAL_PEER=%u\n", d->local_peer);
	if (d->stats_size)
		put(&o, "XDPSTACK_STATS=%d %u\n", d->stats_fd, d->stats_size);
	return (int)o.used;
}
