/* fault.c: the fault-injecting middleware (fault.h). It wraps the stack's device and forwards
 * every call. RX: frames from the lower device are dropped (returned at once), corrupted (one
 * bit flipped), duplicated (a copy from its own buffers, marked by the top bit of addr) or held
 * back one burst (reorder). TX: the same on frames the stack submits. A received frame about to be
 * corrupted gets its partial L4 checksum (a local veth peer's, ../base/wire.h) completed first, as a NIC
 * would have: the damage is then a bad checksum, never hidden by a partial one accepted unsummed. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "fault.h"
#include "../base/env.h"
#include "../base/wire.h"

#define OWN (1ull << 63)            /* addr bit: a duplicate in this layer's own buffer */
#define HOLD_MAX 64
#define BURST_MAX 64                /* frames per rx_burst (the stack asks for US_RX_BATCH, 64) */

struct faultdev {
	struct us_netdev dev;
	struct us_netdev *lower;
	struct us_fault_config c;
	uint64_t rng;
	struct us_fault_stats st;
	struct us_frame rx_held[US_MAX_QUEUES][HOLD_MAX];
	int n_rx_held[US_MAX_QUEUES];
	struct us_frame tx_held[HOLD_MAX];
	int n_tx_held;
};

static uint32_t rnd(struct faultdev *f)       /* splitmix64 */
{
	uint64_t z = (f->rng += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return (uint32_t)((z ^ (z >> 31)) >> 32);
}

static int hit(struct faultdev *f, uint32_t ppm) { return ppm && rnd(f) % 1000000 < ppm; }

static void corrupt(struct faultdev *f, struct us_frame *fr)
{
	if (fr->len) {
		fr->data[rnd(f) % fr->len] ^= (uint8_t)(1u << (rnd(f) % 8));
		f->st.corrupted++;
	}
}

static void release_one(struct faultdev *f, int q, const struct us_frame *fr)
{
	if (fr->addr & OWN)
		free(fr->data);
	else
		f->lower->ops->rx_release(f->lower, q, fr, 1);
}

static int fd_rx_burst(struct us_netdev *d, int q, struct us_frame *out, int max)
{
	struct faultdev *f = (struct faultdev *)d;
	struct us_frame in[BURST_MAX], prev[HOLD_MAX];
	int n = 0;
	/* Frames held back by the previous burst are delivered after this burst's: reordered. */
	int nprev = f->n_rx_held[q];
	memcpy(prev, f->rx_held[q], nprev * sizeof(prev[0]));
	f->n_rx_held[q] = 0;
	if (max > BURST_MAX)
		max = BURST_MAX;
	int room = max - nprev;
	int got = room > 0 ? f->lower->ops->rx_burst(f->lower, q, in, room) : 0;
	for (int i = 0; i < got; i++) {
		struct us_frame fr = in[i];
		if (!(f->c.dirs & US_FAULT_RX)) {
			out[n++] = fr;
			continue;
		}
		if (hit(f, f->c.drop_ppm)) {
			f->st.dropped++;
			release_one(f, q, &fr);
			continue;
		}
		if (hit(f, f->c.corrupt_ppm)) {
			/* a wire carries complete checksums: damage is then caught as on a wire */
			us_csum_complete(fr.data, fr.len);
			corrupt(f, &fr);
		}
		if (hit(f, f->c.reorder_ppm) && f->n_rx_held[q] < HOLD_MAX) {
			f->st.reordered++;
			f->rx_held[q][f->n_rx_held[q]++] = fr;
			continue;
		}
		out[n++] = fr;
		/* a copy only while out[] keeps room for the rest of this burst and the held frames */
		if (n + (got - i - 1) + nprev < max && hit(f, f->c.dup_ppm)) {
			struct us_frame dup = fr;
			dup.data = malloc(fr.len ? fr.len : 1);
			if (dup.data) {
				memcpy(dup.data, fr.data, fr.len);
				dup.addr = OWN;
				out[n++] = dup;
				f->st.duplicated++;
			}
		}
	}
	for (int i = 0; i < nprev; i++)
		out[n++] = prev[i];
	return n;
}

static void fd_rx_release(struct us_netdev *d, int q, const struct us_frame *fr, int n)
{
	struct faultdev *f = (struct faultdev *)d;
	for (int i = 0; i < n; i++)
		release_one(f, q, &fr[i]);
}

static int fd_tx_alloc(struct us_netdev *d, int q, struct us_frame *fr)
{
	struct faultdev *f = (struct faultdev *)d;
	return f->lower->ops->tx_alloc(f->lower, q, fr);
}

static void fd_tx_free(struct us_netdev *d, struct us_frame *fr)
{
	struct faultdev *f = (struct faultdev *)d;
	f->lower->ops->tx_free(f->lower, fr);
}

static void fd_tx_submit(struct us_netdev *d, struct us_frame *fr)
{
	struct faultdev *f = (struct faultdev *)d;
	struct us_netdev *lo = f->lower;
	if (!(f->c.dirs & US_FAULT_TX)) {
		lo->ops->tx_submit(lo, fr);
		return;
	}
	if (hit(f, f->c.drop_ppm)) {
		f->st.dropped++;
		lo->ops->tx_free(lo, fr);
		return;
	}
	if (hit(f, f->c.dup_ppm)) {
		struct us_frame dup;
		if (!lo->ops->tx_alloc(lo, fr->queue, &dup)) {
			memcpy(dup.data, fr->data, fr->len);
			dup.len = fr->len;
			lo->ops->tx_submit(lo, &dup);
			f->st.duplicated++;
		}
	}
	if (hit(f, f->c.corrupt_ppm))
		corrupt(f, fr);
	if (hit(f, f->c.reorder_ppm) && f->n_tx_held < HOLD_MAX) {
		f->st.reordered++;
		f->tx_held[f->n_tx_held++] = *fr;   /* sent after the next frame (or the next flush) */
		return;
	}
	lo->ops->tx_submit(lo, fr);
	for (int i = 0; i < f->n_tx_held; i++)
		lo->ops->tx_submit(lo, &f->tx_held[i]);
	f->n_tx_held = 0;
}

static int fd_flush(struct us_netdev *d)
{
	struct faultdev *f = (struct faultdev *)d;
	for (int i = 0; i < f->n_tx_held; i++)
		f->lower->ops->tx_submit(f->lower, &f->tx_held[i]);
	f->n_tx_held = 0;
	return f->lower->ops->flush(f->lower);
}

static void fd_pre_sleep(struct us_netdev *d)
{
	struct faultdev *f = (struct faultdev *)d;
	f->lower->ops->pre_sleep(f->lower);
}

static void fd_destroy(struct us_netdev *d)
{
	struct faultdev *f = (struct faultdev *)d;
	for (int q = 0; q < d->nqueues; q++)
		for (int i = 0; i < f->n_rx_held[q]; i++)
			release_one(f, q, &f->rx_held[q][i]);
	for (int i = 0; i < f->n_tx_held; i++)
		f->lower->ops->tx_free(f->lower, &f->tx_held[i]);
	f->lower->ops->destroy(f->lower);
	free(f);
}

static const struct us_netdev_ops fault_ops = {
	.rx_burst = fd_rx_burst, .rx_release = fd_rx_release, .tx_alloc = fd_tx_alloc,
	.tx_submit = fd_tx_submit, .tx_free = fd_tx_free, .flush = fd_flush,
	.pre_sleep = fd_pre_sleep, .destroy = fd_destroy,
};

struct us_netdev *us_fault_wrap(struct us_netdev *lower, const struct us_fault_config *c)
{
	struct faultdev *f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->dev = *lower;                       /* queues, frame room, fds */
	f->dev.ops = &fault_ops;
	f->lower = lower;
	f->c = *c;
	f->rng = c->seed;
	return &f->dev;
}

int us_fault_configure(struct us_netdev *d, const struct us_fault_config *c)
{
	if (d->ops != &fault_ops)
		return -ENOENT;
	struct faultdev *f = (struct faultdev *)d;
	f->c = *c;
	f->rng = c->seed;
	return 0;
}

int us_fault_get_stats(struct us_netdev *d, struct us_fault_stats *out)
{
	if (d->ops != &fault_ops)
		return -ENOENT;
	*out = ((struct faultdev *)d)->st;
	return 0;
}
