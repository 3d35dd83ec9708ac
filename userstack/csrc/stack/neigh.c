/* neigh.c: the destination -> MAC cache. The launcher resolves through the kernel (FIB next hop,
 * then the kernel's neighbour table) and answers RESOLVE with NEIGH; in-process users call
 * us_neigh_set. While a destination is unresolved, up to US_NEIGH_QLEN frames wait (the newest
 * replace the oldest, like the kernel's arp_queue); failure or timeout drops them, counted. */
#include <string.h>
#include "capture.h"
#include "ctl_io.h"
#include "neigh.h"

static uint32_t addr_hash(const struct us_addr *a)
{
	uint32_t w[4];
	memcpy(w, a->a, 16);
	uint32_t h = (w[0] * 0x9e3779b1u) ^ (w[1] * 0x85ebca6bu) ^ (w[2] * 0xc2b2ae35u) ^ (w[3] * 0x27d4eb2fu);
	return (h ^ (h >> 15) ^ a->family) & (US_NEIGH_SLOTS - 1);
}

static void drop_queue(struct us_stack *st, struct us_neigh *e)
{
	for (int i = 0; i < e->nq; i++)
		st->dev->ops->tx_free(st->dev, &e->q[i]);
	st->stats->neigh_drop += e->nq;
	e->nq = 0;
}

static struct us_neigh *find(struct us_stack *st, const struct us_addr *dst, int create)
{
	uint32_t h = addr_hash(dst);
	for (uint32_t i = 0; i < US_NEIGH_SLOTS; i++) {
		struct us_neigh *e = &st->neigh[(h + i) & (US_NEIGH_SLOTS - 1)];
		if (e->state == US_N_EMPTY) {
			if (!create)
				return NULL;
			memset(e, 0, sizeof(*e));
			e->dst = *dst;
			return e;
		}
		if (us_addr_eq(&e->dst, dst))
			return e;
	}
	if (!create)
		return NULL;
	/* Full: reuse the home slot (entries are never removed, so probe chains stay intact). */
	struct us_neigh *e = &st->neigh[h];
	if (e->state == US_N_PENDING)
		st->neigh_pending--;
	drop_queue(st, e);
	memset(e, 0, sizeof(*e));
	e->dst = *dst;
	return e;
}

static void send_frame(struct us_stack *st, struct us_neigh *e, struct us_frame *f)
{
	memcpy(f->data, e->mac, 6);
	st->stats->tx_frames++;
	st->stats->tx_bytes += f->len;
	us_cap(st, f->data, f->len, US_CAP_OUT);
	st->dev->ops->tx_submit(st->dev, f);
}

static void resolve(struct us_stack *st, struct us_neigh *e)
{
	if (e->state != US_N_PENDING)
		st->neigh_pending++;
	e->state = US_N_PENDING;
	e->deadline = st->now + US_NEIGH_TIMEOUT_NS;
	st->stats->neigh_resolve++;
	if (st->ctlfd >= 0) {
		union us_ctl_msg m;
		memset(&m, 0, sizeof(m));
		m.hdr.type = US_CTL_RESOLVE;
		m.resolve.dst = e->dst;
		us_ctl_send(st, &m);
	}
}

void us_neigh_output(struct us_stack *st, const struct us_addr *dst, struct us_frame *f)
{
	struct us_neigh *e = find(st, dst, 1);
	switch (e->state) {
	case US_N_OK:
		send_frame(st, e, f);
		return;
	case US_N_FAILED:
		if (st->now < e->deadline) {
			st->dev->ops->tx_free(st->dev, f);
			st->stats->neigh_drop++;
			return;
		}
		__attribute__((fallthrough));   /* failed long enough ago: try again */
	case US_N_EMPTY:
		resolve(st, e);
		break;
	default:
		break;
	}
	if (e->nq == US_NEIGH_QLEN) {          /* drop the oldest */
		st->dev->ops->tx_free(st->dev, &e->q[0]);
		st->stats->neigh_drop++;
		memmove(&e->q[0], &e->q[1], (US_NEIGH_QLEN - 1) * sizeof(e->q[0]));
		e->nq--;
	}
	e->q[e->nq++] = *f;
	st->stats->neigh_queued++;
}

void us_neigh_update(struct us_stack *st, const struct us_addr *dst, const uint8_t *mac)
{
	struct us_neigh *e = find(st, dst, 1);
	if (e->state == US_N_PENDING)
		st->neigh_pending--;
	if (!mac) {
		e->state = US_N_FAILED;
		e->deadline = st->now + US_NEIGH_FAILED_NS;
		drop_queue(st, e);
		return;
	}
	memcpy(e->mac, mac, 6);
	e->state = US_N_OK;
	for (int i = 0; i < e->nq; i++)
		send_frame(st, e, &e->q[i]);
	e->nq = 0;
}

void us_neigh_timers(struct us_stack *st)
{
	for (uint32_t i = 0; i < US_NEIGH_SLOTS && st->neigh_pending; i++) {
		struct us_neigh *e = &st->neigh[i];
		if (e->state == US_N_PENDING && st->now >= e->deadline)
			us_neigh_update(st, &e->dst, NULL);
	}
}

void us_neigh_flush_all(struct us_stack *st)
{
	for (uint32_t i = 0; i < US_NEIGH_SLOTS; i++)
		drop_queue(st, &st->neigh[i]);
}
