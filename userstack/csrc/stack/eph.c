/* eph.c: ephemeral ports claimed from the launcher over the control channel, and released. */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <time.h>
#include "stack.h"
#include "../base/wire.h"

/* The one CLAIM_EPHEMERAL message: sent, its sequence number in *seq for the CLAIMED answer. */
int us_eph_send_claim(struct us_stack *st, uint8_t proto, uint8_t family,
		      const struct us_endpoint *remote, uint32_t *seq)
{
	union us_ctl_msg m;
	memset(&m, 0, sizeof(m));
	if (st->ctlfd < 0)
		return -EADDRNOTAVAIL;     /* nobody to claim from */
	m.hdr.type = US_CTL_CLAIM_EPHEMERAL;
	m.hdr.seq = ++st->ctl_seq;
	m.claim.proto = proto;
	m.claim.family = family;
	if (remote)
		m.claim.remote = *remote;
	*seq = m.hdr.seq;
	return us_ctl_send(st, &m);
}

int us_eph_claim(struct us_stack *st, uint8_t proto, uint8_t family,
		 const struct us_endpoint *remote, struct us_endpoint *local)
{
	uint32_t seq;
	st->claim_done = 0;
	int r = us_eph_send_claim(st, proto, family, remote, &seq);
	if (r)
		return r;
	st->claim_seq = seq;
	uint64_t deadline = us_now_ns() + 2000000000ull;
	while (!st->claim_done) {
		uint64_t now = us_now_ns();
		if (now >= deadline)
			return -ETIMEDOUT;
		if (st->driver_running) {  /* the driver thread reads the channel */
			struct timespec ts = { .tv_sec = deadline / 1000000000ull,
					       .tv_nsec = deadline % 1000000000ull };
			st->waiters++;
			pthread_cond_timedwait(&st->cond, &st->lock, &ts);
			st->waiters--;
		} else {                   /* read it ourselves, the lock released meanwhile */
			struct pollfd p = { .fd = st->ctlfd, .events = POLLIN };
			pthread_mutex_unlock(&st->lock);
			poll(&p, 1, (int)((deadline - now) / 1000000 + 1));
			pthread_mutex_lock(&st->lock);
			us_stack_ctl_input(st);
		}
	}
	if (st->claim_reply.status)
		return st->claim_reply.status;
	if (st->claim_reply.family != family || !st->claim_reply.port)
		return -EPROTO;
	memset(local, 0, sizeof(*local));
	local->addr = st->claim_reply.local;
	local->addr.family = family;
	local->port = st->claim_reply.port;
	return 0;
}

void us_eph_release(struct us_stack *st, uint8_t proto, const struct us_endpoint *local)
{
	union us_ctl_msg m;
	memset(&m, 0, sizeof(m));
	m.hdr.type = US_CTL_RELEASE;
	m.release.proto = proto;
	m.release.family = local->addr.family;
	m.release.port = local->port;
	m.release.local = local->addr;
	us_ctl_send(st, &m);
}

/* A CLAIMED answer (from the poll loop): the one a blocked claim waits for, or, for TCP, an
 * active open's port. */
void us_eph_claimed(struct us_stack *st, const union us_ctl_msg *m)
{
	if (m->hdr.seq == st->claim_seq && !st->claim_done) {
		st->claim_reply = m->claimed;
		st->claim_done = 1;
		if (st->waiters)
			pthread_cond_broadcast(&st->cond);
	} else if (m->claimed.proto == US_IPPROTO_TCP) {
		us_tcp_claimed(st, &m->claimed);   /* an active open's port */
	} else {
		st->stats->ctl_bad++;
	}
}
