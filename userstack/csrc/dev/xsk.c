/* xsk.c: AF_XDP sockets: creation with libxdp (launcher side) and the ring device (stack side).
 * See xsk.h. Behaviour measured on kernel 6.18 that this code relies on: copy-mode TX needs a
 * kick per 32 frames, and EAGAIN from the kick means "kick again". */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <net/if.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <linux/if_xdp.h>
#include <xdp/xsk.h>
#include "xdp_stats.h"
#include "xsk.h"
#include "xsk_tx_tune.h"

#ifndef SOL_XDP
#define SOL_XDP 283
#endif
#ifndef SO_PREFER_BUSY_POLL              /* asm-generic/socket.h, 5.11 and later */
#define SO_PREFER_BUSY_POLL 69
#define SO_BUSY_POLL_BUDGET 70
#endif

/* ------------------------------------------------------------------------------------------ */
/* launcher side                                                                              */

struct us_xsk_set {
	int memfd;
	void *area;
	uint64_t size;
	struct xsk_umem *umem;
	int nqueues;
	struct {
		struct xsk_socket *xsk;
		struct xsk_ring_cons rx, comp;
		struct xsk_ring_prod tx, fill;
	} q[US_MAX_QUEUES];
};

void us_xsk_destroy(struct us_xsk_set *set)
{
	if (!set)
		return;
	for (int i = 0; i < set->nqueues; i++)
		if (set->q[i].xsk)
			xsk_socket__delete(set->q[i].xsk);
	if (set->umem)
		xsk_umem__delete(set->umem);
	if (set->area && set->area != MAP_FAILED)
		munmap(set->area, set->size);
	if (set->memfd >= 0)
		close(set->memfd);
	free(set);
}

static int is_pow2(uint32_t x) { return x && !(x & (x - 1)); }

struct us_xsk_set *us_xsk_create(const char *ifname, const uint32_t *queue_ids, int nqueues,
				 uint32_t frames_per_queue, uint32_t frame_size, uint32_t ring_size,
				 uint32_t flags, struct us_desc *d, int *err)
{
	int r;
	if (nqueues < 1 || nqueues > US_MAX_QUEUES || !is_pow2(frame_size) || frame_size < 2048 ||
	    !is_pow2(ring_size) || frames_per_queue < 2 || strlen(ifname) >= US_IFNAME_LEN) {
		*err = -EINVAL;
		return NULL;
	}
	unsigned ifindex = if_nametoindex(ifname);
	if (!ifindex) {
		*err = -ENODEV;
		return NULL;
	}
	struct us_xsk_set *set = calloc(1, sizeof(*set));
	if (!set) {
		*err = -ENOMEM;
		return NULL;
	}
	set->memfd = -1;
	set->size = (uint64_t)frames_per_queue * nqueues * frame_size;
	set->memfd = memfd_create("xdpstack-umem", MFD_CLOEXEC);
	if (set->memfd < 0 || ftruncate(set->memfd, set->size) < 0) {
		r = -errno;
		goto fail;
	}
	set->area = mmap(NULL, set->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
			 set->memfd, 0);
	if (set->area == MAP_FAILED) {
		r = -errno;
		goto fail;
	}
	struct xsk_umem_config ucfg = {
		.fill_size = ring_size, .comp_size = ring_size, .frame_size = frame_size,
		.frame_headroom = 0, .flags = 0,
	};
	r = xsk_umem__create(&set->umem, set->area, set->size, &set->q[0].fill, &set->q[0].comp, &ucfg);
	if (r) {
		set->umem = NULL;
		goto fail;
	}
	struct xsk_socket_config scfg = {
		.rx_size = ring_size, .tx_size = ring_size,
		.libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD,
		.xdp_flags = 0,
		.bind_flags = (flags & US_XSK_NEED_WAKEUP ? XDP_USE_NEED_WAKEUP : 0) |
			      (flags & US_XSK_COPY ? XDP_COPY : 0) |
			      (flags & US_XSK_ZEROCOPY ? XDP_ZEROCOPY : 0),
	};
	for (int i = 0; i < nqueues; i++) {
		set->nqueues = i + 1;
		r = xsk_socket__create_shared(&set->q[i].xsk, ifname, queue_ids[i], set->umem,
					      &set->q[i].rx, &set->q[i].tx, &set->q[i].fill,
					      &set->q[i].comp, &scfg);
		if (r) {
			set->q[i].xsk = NULL;
			goto fail;
		}
		/* XDPSTACK_TX_TUNE=0 keeps the kernel's defaults (to measure what the tuning buys) */
		const char *tune = getenv("XDPSTACK_TX_TUNE");
		if (!tune || strcmp(tune, "0"))
			xsk_tx_tune(xsk_socket__fd(set->q[i].xsk), ring_size, frame_size);
	}
	snprintf(d->ifname, sizeof(d->ifname), "%s", ifname);
	d->ifindex = ifindex;
	d->umem_fd = set->memfd;
	d->umem_size = set->size;
	d->frame_size = frame_size;
	d->headroom = 0;
	d->umem_flags = flags & US_XSK_NEED_WAKEUP ? US_UMEM_NEED_WAKEUP : 0;
	d->nqueues = nqueues;
	for (int i = 0; i < nqueues; i++) {
		struct us_queue_desc *q = &d->queues[i];
		q->queue_id = queue_ids[i];
		q->fd = xsk_socket__fd(set->q[i].xsk);
		q->rx_size = q->tx_size = q->fill_size = q->comp_size = ring_size;
		q->frame_first = i * frames_per_queue;
		q->frame_count = frames_per_queue;
	}
	d->owns_fds = 0;
	*err = 0;
	return set;
fail:
	us_xsk_destroy(set);
	*err = r < 0 ? r : -r;
	return NULL;
}

int us_xsk_fd_zerocopy(int fd)
{
	struct xdp_options o;
	socklen_t len = sizeof(o);
	if (getsockopt(fd, SOL_XDP, XDP_OPTIONS, &o, &len) < 0)
		return -errno;
	return !!(o.flags & XDP_OPTIONS_ZEROCOPY);
}

int us_xsk_fd_busy_poll(int fd, int usecs, int budget)
{
	int one = 1;
	if (setsockopt(fd, SOL_SOCKET, SO_PREFER_BUSY_POLL, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_BUSY_POLL, &usecs, sizeof(usecs)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_BUSY_POLL_BUDGET, &budget, sizeof(budget)) < 0)
		return -errno;
	return 0;
}

int us_xsk_fd_stats(int fd, struct us_xdp_stats *out)
{
	struct xdp_statistics s;
	socklen_t len = sizeof(s);
	memset(out, 0, sizeof(*out));
	if (getsockopt(fd, SOL_XDP, XDP_STATISTICS, &s, &len) < 0)
		return -errno;
	out->rx_dropped = s.rx_dropped;
	out->rx_invalid_descs = s.rx_invalid_descs;
	out->tx_invalid_descs = s.tx_invalid_descs;
	out->rx_ring_full = s.rx_ring_full;
	out->rx_fill_ring_empty_descs = s.rx_fill_ring_empty_descs;
	out->tx_ring_empty_descs = s.tx_ring_empty_descs;
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* stack side: the netdev over mapped rings                                                   */

struct xq {
	uint32_t queue_id;
	int fd;
	struct xsk_ring_cons rx, comp;
	struct xsk_ring_prod tx, fill;
	void *map[4];
	size_t maplen[4];
	uint64_t *tx_free;         /* stack of free TX frame addresses */
	uint32_t n_tx_free, tx_frames;
	uint32_t tx_reserved;      /* descriptors written to the TX ring but not published */
	uint32_t tx_inflight;      /* published, completion not yet reaped */
};

struct xdev {
	struct us_netdev dev;
	uint8_t *umem;
	uint64_t umem_size;
	uint64_t frame_mask;
	int need_wakeup;
	uint64_t kicks, again;
	struct xq q[];
};

static void *map_ring(int fd, uint64_t pgoff, size_t len)
{
	void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, pgoff);
	return m == MAP_FAILED ? NULL : m;
}

#define RING_INIT(r, m, o, n) do { \
	(r)->mask = (n) - 1; (r)->size = (n); \
	(r)->producer = (void *)((char *)(m) + (o).producer); \
	(r)->consumer = (void *)((char *)(m) + (o).consumer); \
	(r)->flags = (void *)((char *)(m) + (o).flags); \
	(r)->ring = (char *)(m) + (o).desc; \
	(r)->cached_prod = __atomic_load_n((r)->producer, __ATOMIC_ACQUIRE); \
	(r)->cached_cons = __atomic_load_n((r)->consumer, __ATOMIC_ACQUIRE); \
} while (0)

static int xq_map(struct xq *x, const struct us_queue_desc *qd)
{
	struct xdp_mmap_offsets off;
	socklen_t optlen = sizeof(off);
	if (getsockopt(qd->fd, SOL_XDP, XDP_MMAP_OFFSETS, &off, &optlen) < 0)
		return -errno;
	x->maplen[0] = off.rx.desc + qd->rx_size * sizeof(struct xdp_desc);
	x->maplen[1] = off.tx.desc + qd->tx_size * sizeof(struct xdp_desc);
	x->maplen[2] = off.fr.desc + qd->fill_size * sizeof(uint64_t);
	x->maplen[3] = off.cr.desc + qd->comp_size * sizeof(uint64_t);
	x->map[0] = map_ring(qd->fd, XDP_PGOFF_RX_RING, x->maplen[0]);
	x->map[1] = map_ring(qd->fd, XDP_PGOFF_TX_RING, x->maplen[1]);
	x->map[2] = map_ring(qd->fd, XDP_UMEM_PGOFF_FILL_RING, x->maplen[2]);
	x->map[3] = map_ring(qd->fd, XDP_UMEM_PGOFF_COMPLETION_RING, x->maplen[3]);
	for (int i = 0; i < 4; i++)
		if (!x->map[i])
			return -errno;
	RING_INIT(&x->rx, x->map[0], off.rx, qd->rx_size);
	RING_INIT(&x->tx, x->map[1], off.tx, qd->tx_size);
	RING_INIT(&x->fill, x->map[2], off.fr, qd->fill_size);
	RING_INIT(&x->comp, x->map[3], off.cr, qd->comp_size);
	/* producer rings keep cached_cons one ring ahead (libxdp's convention) */
	x->tx.cached_cons += qd->tx_size;
	x->fill.cached_cons += qd->fill_size;
	return 0;
}

static void xdev_destroy(struct us_netdev *d)
{
	struct xdev *x = (struct xdev *)d;
	for (int i = 0; i < d->nqueues; i++) {
		for (int k = 0; k < 4; k++)
			if (x->q[i].map[k])
				munmap(x->q[i].map[k], x->q[i].maplen[k]);
		free(x->q[i].tx_free);
	}
	if (x->umem)
		munmap(x->umem, x->umem_size);
	free(x);
}

static int xdev_rx_burst(struct us_netdev *d, int qi, struct us_frame *f, int max)
{
	struct xdev *x = (struct xdev *)d;
	struct xq *q = &x->q[qi];
	uint32_t idx;
	uint32_t n = xsk_ring_cons__peek(&q->rx, max, &idx);
	for (uint32_t i = 0; i < n; i++) {
		const struct xdp_desc *desc = xsk_ring_cons__rx_desc(&q->rx, idx + i);
		f[i].addr = desc->addr;
		f[i].data = x->umem + desc->addr;
		f[i].len = desc->len;
		f[i].queue = qi;
	}
	return n;
}

static void xdev_rx_release(struct us_netdev *d, int qi, const struct us_frame *f, int n)
{
	struct xdev *x = (struct xdev *)d;
	struct xq *q = &x->q[qi];
	uint32_t idx = 0;
	if (n <= 0)
		return;
	/* The fill ring holds every RX frame of this queue, so there is always room. */
	while (xsk_ring_prod__reserve(&q->fill, n, &idx) != (uint32_t)n)
		;
	for (int i = 0; i < n; i++)
		*xsk_ring_prod__fill_addr(&q->fill, idx + i) = f[i].addr & x->frame_mask;
	xsk_ring_prod__submit(&q->fill, n);
	xsk_ring_cons__release(&q->rx, n);
}

static void reap(struct xq *q)
{
	uint32_t idx;
	uint32_t n = xsk_ring_cons__peek(&q->comp, q->comp.size, &idx);
	for (uint32_t i = 0; i < n; i++)
		q->tx_free[q->n_tx_free++] = *xsk_ring_cons__comp_addr(&q->comp, idx + i);
	if (n)
		xsk_ring_cons__release(&q->comp, n);
	q->tx_inflight -= n;
}

static int xdev_tx_alloc(struct us_netdev *d, int qi, struct us_frame *f)
{
	struct xdev *x = (struct xdev *)d;
	struct xq *q = &x->q[qi];
	if (!q->n_tx_free) {
		reap(q);
		if (!q->n_tx_free)
			return -ENOBUFS;
	}
	f->addr = q->tx_free[--q->n_tx_free];
	f->data = x->umem + f->addr;
	f->len = 0;
	f->queue = qi;
	return 0;
}

static void xdev_tx_free(struct us_netdev *d, struct us_frame *f)
{
	struct xdev *x = (struct xdev *)d;
	struct xq *q = &x->q[f->queue];
	q->tx_free[q->n_tx_free++] = f->addr;
}

static void xdev_tx_submit(struct us_netdev *d, struct us_frame *f)
{
	struct xdev *x = (struct xdev *)d;
	struct xq *q = &x->q[f->queue];
	uint32_t idx = 0;
	/* TX ring size >= TX frames of the queue: a reserve cannot fail. */
	xsk_ring_prod__reserve(&q->tx, 1, &idx);
	struct xdp_desc *desc = xsk_ring_prod__tx_desc(&q->tx, idx);
	desc->addr = f->addr;
	desc->len = f->len;
	desc->options = 0;
	q->tx_reserved++;
}

static int xdev_flush(struct us_netdev *d)
{
	struct xdev *x = (struct xdev *)d;
	int left = 0;
	for (int i = 0; i < d->nqueues; i++) {
		struct xq *q = &x->q[i];
		if (q->tx_reserved) {
			xsk_ring_prod__submit(&q->tx, q->tx_reserved);
			q->tx_inflight += q->tx_reserved;
			q->tx_reserved = 0;
		}
		/* Copy mode sends at most 32 frames per kick and answers EAGAIN while more are
		 * waiting: kick until the kernel has taken the ring, with a bound. */
		for (int tries = 0; tries < 256; tries++) {
			uint32_t cons = __atomic_load_n(q->tx.consumer, __ATOMIC_ACQUIRE);
			if (cons == *q->tx.producer)
				break;
			if (x->need_wakeup && !xsk_ring_prod__needs_wakeup(&q->tx))
				break;     /* zero-copy driver already busy with it */
			x->kicks++;
			if (sendto(q->fd, NULL, 0, MSG_DONTWAIT, NULL, 0) >= 0)
				continue;
			if (errno == EAGAIN || errno == EBUSY || errno == ENOBUFS) {
				x->again++;
				reap(q);       /* a full completion ring also answers EAGAIN */
				continue;
			}
			break;             /* ENETDOWN, ENXIO: the device went away */
		}
		reap(q);
		left += *q->tx.producer - __atomic_load_n(q->tx.consumer, __ATOMIC_ACQUIRE);
	}
	return left;
}

static void xdev_pre_sleep(struct us_netdev *d)
{
	struct xdev *x = (struct xdev *)d;
	if (!x->need_wakeup)
		return;
	for (int i = 0; i < d->nqueues; i++)
		if (xsk_ring_prod__needs_wakeup(&x->q[i].fill))
			recvfrom(x->q[i].fd, NULL, 0, MSG_DONTWAIT, NULL, NULL);
}

static const struct us_netdev_ops xdev_ops = {
	.rx_burst = xdev_rx_burst,
	.rx_release = xdev_rx_release,
	.tx_alloc = xdev_tx_alloc,
	.tx_submit = xdev_tx_submit,
	.tx_free = xdev_tx_free,
	.flush = xdev_flush,
	.pre_sleep = xdev_pre_sleep,
	.destroy = xdev_destroy,
};

struct us_netdev *us_xdev_open(const struct us_desc *d, int *err)
{
	int r = -EINVAL;
	if (d->nqueues < 1 || d->nqueues > US_MAX_QUEUES || !is_pow2(d->frame_size) ||
	    d->umem_fd < 0) {
		*err = -EINVAL;
		return NULL;
	}
	struct xdev *x = calloc(1, sizeof(*x) + d->nqueues * sizeof(struct xq));
	if (!x) {
		*err = -ENOMEM;
		return NULL;
	}
	x->dev.ops = &xdev_ops;
	x->dev.nqueues = d->nqueues;
	x->dev.frame_room = d->frame_size - d->headroom;
	x->frame_mask = ~(uint64_t)(d->frame_size - 1);
	x->need_wakeup = !!(d->umem_flags & US_UMEM_NEED_WAKEUP);
	x->umem_size = d->umem_size;
	x->umem = mmap(NULL, d->umem_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
		       d->umem_fd, 0);
	if (x->umem == MAP_FAILED) {
		x->umem = NULL;
		r = -errno;
		goto fail;
	}
	for (uint32_t i = 0; i < d->nqueues; i++) {
		const struct us_queue_desc *qd = &d->queues[i];
		struct xq *q = &x->q[i];
		q->queue_id = qd->queue_id;
		q->fd = qd->fd;
		x->dev.fds[x->dev.nfds++] = qd->fd;
		if (!is_pow2(qd->rx_size) || !is_pow2(qd->tx_size) || !is_pow2(qd->fill_size) ||
		    !is_pow2(qd->comp_size) || qd->frame_count < 2 ||
		    (uint64_t)(qd->frame_first + qd->frame_count) * d->frame_size > d->umem_size) {
			r = -EINVAL;
			goto fail;
		}
		r = xq_map(q, qd);
		if (r)
			goto fail;
		/* Half the frames (at most a fill ring's worth) receive, the rest transmit. */
		uint32_t nrx = qd->frame_count / 2;
		if (nrx > qd->fill_size)
			nrx = qd->fill_size;
		uint32_t ntx = qd->frame_count - nrx;
		if (ntx > qd->tx_size)
			ntx = qd->tx_size;
		if (ntx > qd->comp_size)
			ntx = qd->comp_size;
		q->tx_free = malloc(ntx * sizeof(uint64_t));
		if (!q->tx_free) {
			r = -ENOMEM;
			goto fail;
		}
		uint64_t base = (uint64_t)qd->frame_first * d->frame_size;
		for (uint32_t k = 0; k < ntx; k++)
			q->tx_free[q->n_tx_free++] = base + (uint64_t)(nrx + ntx - 1 - k) * d->frame_size;
		q->tx_frames = ntx;
		uint32_t idx;
		if (xsk_ring_prod__reserve(&q->fill, nrx, &idx) != nrx) {
			r = -EBUSY;        /* someone else filled this ring: not a fresh hand-over */
			goto fail;
		}
		for (uint32_t k = 0; k < nrx; k++)
			*xsk_ring_prod__fill_addr(&q->fill, idx + k) = base + (uint64_t)k * d->frame_size;
		xsk_ring_prod__submit(&q->fill, nrx);
	}
	*err = 0;
	return &x->dev;
fail:
	xdev_destroy(&x->dev);
	*err = r;
	return NULL;
}

int us_xdev_stats(struct us_netdev *dev, int qi, struct us_xdp_stats *out)
{
	struct xdev *x = (struct xdev *)dev;
	if (qi < 0 || qi >= dev->nqueues)
		return -EINVAL;
	struct xq *q = &x->q[qi];
	int r = us_xsk_fd_stats(q->fd, out);
	out->queue_id = q->queue_id;
	out->fill_free = xsk_prod_nb_free(&q->fill, q->fill.size);
	out->tx_free_frames = q->n_tx_free;
	return r;
}

void us_xdev_kicks(struct us_netdev *dev, uint64_t *kicks, uint64_t *again)
{
	struct xdev *x = (struct xdev *)dev;
	*kicks = x->kicks;
	*again = x->again;
}
