/* stack.c: the stack object (stack.h): open and close, the options applied (opts.c parses them),
 * information. The poll loop is poll.c's, the sockets' base sock.c's. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include "capture.h"
#include "eph.h"
#include "ip.h"
#include "neigh.h"
#include "opts.h"
#include "poll.h"
#include "sock.h"
#include "tcp_glue.h"
#include "udp.h"
#include "../dev/xsk.h"

static int ep_add(int epfd, int fd, uint32_t tag)
{
	struct epoll_event e = { .events = EPOLLIN, .data.u32 = tag };
	return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e) < 0 ? -errno : 0;
}

static void stats_point(struct us_stack *st, struct us_shared_stats *page)
{
	st->stats = &page->stack;
	st->tcp_stats = &page->tcp;
}

/* Counters in the launcher's shared page when the description has one, else in the stack. */
static int stats_map(struct us_stack *st, const struct us_desc *d)
{
	struct stat sb;
	stats_point(st, &st->own_stats);
	if (!d->stats_size)
		return 0;
	if (d->stats_size < sizeof(struct us_shared_stats) || fstat(d->stats_fd, &sb) < 0 ||
	    (uint64_t)sb.st_size < d->stats_size)
		return -EINVAL;
	void *p = mmap(NULL, d->stats_size, PROT_READ | PROT_WRITE, MAP_SHARED, d->stats_fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	stats_point(st, p);
	us_cap_attach(st, p, d->stats_size);   /* a page with room for it: xdpstack capture works */
	return 0;
}

static void stats_unmap(struct us_stack *st)
{
	us_cap_detach(st);
	if (st->stats != &st->own_stats.stack)
		munmap(st->stats, st->desc.stats_size);     /* stack is the page's first member */
	stats_point(st, &st->own_stats);
}

static int apply_env(struct us_stack *st);

struct us_stack *us_stack_open_dev(const struct us_desc *d, struct us_netdev *dev, int *err)
{
	int r;
	struct us_stack *st = calloc(1, sizeof(*st));
	if (!st) {
		*err = -ENOMEM;
		return NULL;
	}
	st->desc = *d;
	st->dev = st->base_dev = dev;
	st->epfd = st->wakefd = st->timerfd = -1;
	st->ctlfd = d->ctl_fd;
	stats_point(st, &st->own_stats);
	st->parse_flags = d->local_peer ? US_PARSE_LOCAL_PEER : 0;
	pthread_mutex_init(&st->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&st->cond, &ca);
	pthread_condattr_destroy(&ca);
	st->udp_port = calloc(65536, sizeof(*st->udp_port));
	st->epfd = epoll_create1(EPOLL_CLOEXEC);
	st->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	st->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (!st->udp_port) {
		r = -ENOMEM;
		goto fail;
	}
	if (st->epfd < 0 || st->wakefd < 0 || st->timerfd < 0) {
		r = -errno;
		goto fail;
	}
	if ((r = stats_map(st, d)))
		goto fail;
	for (int i = 0; i < dev->nfds; i++)
		if ((r = ep_add(st->epfd, dev->fds[i], i)))
			goto fail;
	if ((r = ep_add(st->epfd, st->wakefd, US_EP_WAKE)) || (r = ep_add(st->epfd, st->timerfd, US_EP_TIMER)))
		goto fail;
	if (st->ctlfd >= 0) {
		fcntl(st->ctlfd, F_SETFL, fcntl(st->ctlfd, F_GETFL) | O_NONBLOCK);
		if ((r = ep_add(st->epfd, st->ctlfd, US_EP_CTL)))
			goto fail;
	}
	st->now = us_now_ns();
	st->ip_id = (uint16_t)(st->now ^ getpid());
	us_poll_install(st);
	struct us_tcp_opts o;
	us_tcp_opts_default(&o);
	if ((r = us_eph_init(st)) || (r = us_tcp_open(st, &o)))
		goto fail;
	*err = 0;
	return st;
fail:
	/* the device stays the caller's on failure */
	if (st->epfd >= 0) close(st->epfd);
	if (st->wakefd >= 0) close(st->wakefd);
	if (st->timerfd >= 0) close(st->timerfd);
	stats_unmap(st);
	free(st->eph);
	free(st->udp_port);
	free(st);
	*err = r;
	return NULL;
}

struct us_stack *us_stack_open(const struct us_desc *d, int *err)
{
	struct us_netdev *dev = us_xdev_open(d, err);
	if (!dev)
		return NULL;
	struct us_stack *st = us_stack_open_dev(d, dev, err);
	if (!st) {
		dev->ops->destroy(dev);
		return NULL;
	}
	st->is_xdev = 1;
	int r = apply_env(st);    /* XDPSTACK_CC, XDPSTACK_TCP, XDPSTACK_FAULTS */
	if (r) {
		st->desc.owns_fds = 0;             /* the caller's, on failure */
		us_stack_close(st);
		*err = r;
		return NULL;
	}
	return st;
}

struct us_stack *us_stack_open_env(int *err)
{
	struct us_desc *d = calloc(1, sizeof(*d));
	if (!d) {
		*err = -ENOMEM;
		return NULL;
	}
	int r = us_desc_from_env(d);
	struct us_stack *st = NULL;
	if (r)
		*err = r;
	else
		st = us_stack_open(d, err);
	free(d);
	return st;
}

void us_stack_close(struct us_stack *st)
{
	if (!st)
		return;
	us_driver_stop(st);
	pthread_mutex_lock(&st->lock);
	for (struct us_sock *s = st->all, *next; s; s = next) {
		next = s->all_next;
		if (s->type == US_SOCK_UDP)
			s->ops->close(s);
	}
	us_tcp_close_all(st);              /* closing connections get linger_ms to finish */
	us_eph_close(st);                  /* the ports left go back to the launcher */
	us_neigh_flush_all(st);
	us_dev_flush(st);
	pthread_mutex_unlock(&st->lock);
	st->dev->ops->destroy(st->dev);
	close(st->epfd);
	close(st->wakefd);
	close(st->timerfd);
	if (st->desc.owns_fds) {
		for (uint32_t i = 0; i < st->desc.nqueues; i++)
			close(st->desc.queues[i].fd);
		close(st->desc.umem_fd);
		if (st->ctlfd >= 0)
			close(st->ctlfd);
		if (st->desc.stats_size)
			close(st->desc.stats_fd);
	}
	stats_unmap(st);
	free(st->udp_port);
	pthread_mutex_destroy(&st->lock);
	pthread_cond_destroy(&st->cond);
	free(st);
}

/* ---- information ---- */
void us_stack_stats(struct us_stack *st, struct us_stats *out)
{
	pthread_mutex_lock(&st->lock);
	*out = *st->stats;
	pthread_mutex_unlock(&st->lock);
}

int us_stack_xdp_stats(struct us_stack *st, int q, struct us_xdp_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (!st->is_xdev)
		return -EOPNOTSUPP;
	pthread_mutex_lock(&st->lock);
	int r = us_xdev_stats(st->base_dev, q, out);
	if (!r)
		out->rx_frames = st->q_rx[q];
	pthread_mutex_unlock(&st->lock);
	return r;
}

const struct us_desc *us_stack_desc(struct us_stack *st)
{
	return &st->desc;
}

int us_neigh_set(struct us_stack *st, const struct us_addr *dst, const uint8_t *mac)
{
	if (dst->family != US_AF4 && dst->family != US_AF6)
		return -EAFNOSUPPORT;
	pthread_mutex_lock(&st->lock);
	us_neigh_update(st, dst, mac);
	us_dev_flush(st);
	pthread_mutex_unlock(&st->lock);
	return 0;
}

/* Options applied to the stack (opts.c only parses them). */
int us_stack_faults_configure(struct us_stack *st, const char *spec)
{
	struct us_fault_config c;
	int r = us_faults_parse(&c, spec);
	return r ? r : us_stack_set_faults(st, &c);
}

static int apply_env(struct us_stack *st)
{
	const char *cc = getenv("XDPSTACK_CC"), *tcp = getenv("XDPSTACK_TCP");
	const char *faults = getenv("XDPSTACK_FAULTS");
	if ((cc && *cc) || (tcp && *tcp)) {
		pthread_mutex_lock(&st->lock);
		struct us_tcp_opts o = st->topts;
		int r = 0;
		if (cc && *cc)
			r = us_tcp_cc_parse(cc, &o.cfg.cc);
		if (!r)
			r = us_tcp_opts_parse(&o, tcp);
		if (!r)
			r = us_tcp_open(st, &o);
		pthread_mutex_unlock(&st->lock);
		if (r)
			return r;
	}
	if (faults && *faults)
		return us_stack_faults_configure(st, faults);
	return 0;
}

int us_stack_tcp_configure(struct us_stack *st, const char *spec)
{
	pthread_mutex_lock(&st->lock);
	struct us_tcp_opts o = st->topts;
	int r = us_tcp_opts_parse(&o, spec);
	if (!r)
		r = us_tcp_open(st, &o);
	pthread_mutex_unlock(&st->lock);
	return r;
}
