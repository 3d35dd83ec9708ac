/* eph.c: ephemeral ports, claimed from the launcher over the control channel (CLAIM_EPHEMERAL,
 * answered by CLAIMED) and released (RELEASE); see eph.h.
 *
 *   udp    us_eph_claim sends one claim and waits for its answer (a bind is a blocking call)
 *   tcp    active opens never wait in the stack: a few ports per local address are claimed
 *          ahead (port_pool), refilled in the background; with none ready a connect sends its
 *          own claim and the answer (or a timeout) reaches it through st->eph_ready
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "ctl_io.h"
#include "eph.h"

#define EPH_PORTS   64         /* ports kept per local address at most */
#define EPH_CLAIMS  1024       /* CLAIM_EPHEMERAL requests in flight at most */
#define EPH_ROUTES  16         /* remote -> local address answers remembered */
#define EPH_TIMEOUT_NS 5000000000ull   /* a claim the launcher does not answer fails */

struct eph_pool {
	struct us_addr local;
	uint32_t n;
	uint16_t port[EPH_PORTS];
};

struct eph_claim {
	uint32_t seq;
	uint8_t family;
	struct us_sock *waiter;    /* the connect waiting for this port, or NULL: for a pool */
	struct us_addr remote;
	uint64_t deadline;
};

struct us_eph {
	struct eph_pool pool[US_MAX_ADDRS];
	uint32_t npool;
	struct eph_claim claim[EPH_CLAIMS];
	uint32_t nclaim;
	struct { struct us_addr remote, local; } route[EPH_ROUTES];
	uint32_t route_next;
};

int us_eph_init(struct us_stack *st)
{
	if (!st->eph && !(st->eph = calloc(1, sizeof(*st->eph))))
		return -ENOMEM;
	return 0;
}

/* The ports_ready gauge in the counters, after a pool changed. */
static void ports_gauge(struct us_stack *st)
{
	uint32_t n = 0;
	for (uint32_t i = 0; st->eph && i < st->eph->npool; i++)
		n += st->eph->pool[i].n;
	st->tcp_stats->ports_ready = n;
}

void us_eph_close(struct us_stack *st)
{
	struct us_eph *e = st->eph;
	if (!e)
		return;
	for (uint32_t i = 0; i < e->npool; i++)
		for (uint32_t k = 0; k < e->pool[i].n; k++) {
			struct us_endpoint l = { .addr = e->pool[i].local, .port = e->pool[i].port[k] };
			us_eph_release(st, US_IPPROTO_TCP, &l);
		}
	free(e);
	st->eph = NULL;
	ports_gauge(st);
}

/* ---- the messages ---- */
/* The one CLAIM_EPHEMERAL message: sent, its sequence number in *seq for the CLAIMED answer. */
static int send_claim(struct us_stack *st, uint8_t proto, uint8_t family,
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

/* ---- a claim waited for (UDP binds) ---- */
int us_eph_claim(struct us_stack *st, uint8_t proto, uint8_t family,
		 const struct us_endpoint *remote, struct us_endpoint *local)
{
	uint32_t seq;
	st->claim_done = 0;
	int r = send_claim(st, proto, family, remote, &seq);
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
			st->ctl_input(st);     /* the poll loop's: the answer comes back to us_eph_claimed */
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

/* ---- TCP: pools and claims in flight ---- */
static struct eph_pool *pool_of(struct us_eph *e, const struct us_addr *local, int create)
{
	for (uint32_t i = 0; i < e->npool; i++)
		if (us_addr_eq(&e->pool[i].local, local))
			return &e->pool[i];
	if (!create || e->npool == US_MAX_ADDRS)
		return NULL;
	struct eph_pool *p = &e->pool[e->npool++];
	p->local = *local;
	p->n = 0;
	return p;
}

const struct us_addr *us_eph_local_for(struct us_stack *st, const struct us_addr *remote)
{
	const struct us_addr *only = NULL;
	for (uint32_t i = 0; i < st->desc.naddrs; i++)
		if (st->desc.addrs[i].family == remote->family) {
			if (only)
				goto several;
			only = &st->desc.addrs[i];
		}
	return only;
several:
	for (uint32_t i = 0; i < EPH_ROUTES; i++)
		if (us_addr_eq(&st->eph->route[i].remote, remote))
			return &st->eph->route[i].local;
	return NULL;
}

int us_eph_take(struct us_stack *st, const struct us_addr *remote, struct us_endpoint *pick)
{
	const struct us_addr *a = us_eph_local_for(st, remote);
	struct eph_pool *p = a ? pool_of(st->eph, a, 0) : NULL;
	if (!p || !p->n)
		return -ENOENT;
	pick->addr = *a;
	pick->port = p->port[--p->n];
	ports_gauge(st);
	return 0;
}

int us_eph_request(struct us_stack *st, const struct us_addr *remote, struct us_sock *waiter)
{
	struct us_eph *e = st->eph;
	if (st->ctlfd < 0)
		return -EADDRNOTAVAIL;     /* nobody to claim from */
	if (e->nclaim == EPH_CLAIMS)
		return -EAGAIN;
	struct us_endpoint rem;
	memset(&rem, 0, sizeof(rem));
	rem.addr = *remote;
	uint32_t seq;
	int r = send_claim(st, US_IPPROTO_TCP, remote->family, &rem, &seq);
	if (r)
		return r == -EAGAIN ? -EAGAIN : -EADDRNOTAVAIL;
	struct eph_claim *c = &e->claim[e->nclaim++];
	c->seq = seq;
	c->family = remote->family;
	c->waiter = waiter;
	c->remote = *remote;
	c->deadline = st->now + EPH_TIMEOUT_NS;
	if (waiter)
		waiter->claim_seq = c->seq;
	return 0;
}

void us_eph_refill(struct us_stack *st, const struct us_addr *remote)
{
	struct us_eph *e = st->eph;
	uint32_t want = st->topts.port_pool, have = 0;
	if (!want || st->ctlfd < 0)
		return;
	const struct us_addr *local = us_eph_local_for(st, remote);
	struct eph_pool *p = local ? pool_of(e, local, 0) : NULL;
	if (p)
		have = p->n;
	for (uint32_t i = 0; i < e->nclaim; i++)
		if (!e->claim[i].waiter && e->claim[i].family == remote->family)
			have++;
	while (have++ < want && !us_eph_request(st, remote, NULL))
		;
}

void us_eph_forget(struct us_stack *st, struct us_sock *waiter)
{
	for (uint32_t i = 0; i < st->eph->nclaim; i++)
		if (st->eph->claim[i].waiter == waiter)
			st->eph->claim[i].waiter = NULL;
}

void us_eph_put(struct us_stack *st, const struct us_endpoint *local)
{
	struct eph_pool *p = pool_of(st->eph, &local->addr, 1);
	if (p && p->n < st->topts.port_pool && p->n < EPH_PORTS) {
		p->port[p->n++] = local->port;
		ports_gauge(st);
	} else {
		us_eph_release(st, US_IPPROTO_TCP, local);
	}
}

/* A CLAIMED answer for TCP: to the connect waiting for it, or into a pool. */
static void tcp_claimed(struct us_stack *st, const struct us_ctl_claimed *m)
{
	struct us_eph *e = st->eph;
	uint32_t i = 0;
	if (e)
		while (i < e->nclaim && e->claim[i].seq != m->hdr.seq)
			i++;
	if (!e || i == e->nclaim) {
		st->stats->ctl_bad++;
		if (!m->status && m->port) {       /* not ours (timed out): give it back */
			struct us_endpoint l = { .addr = m->local, .port = m->port };
			l.addr.family = m->family;
			us_eph_release(st, US_IPPROTO_TCP, &l);
		}
		return;
	}
	struct eph_claim c = e->claim[i];
	e->claim[i] = e->claim[--e->nclaim];
	struct us_endpoint local = { .addr = m->local, .port = m->port };
	local.addr.family = c.family;
	int err = m->status;
	if (!err && (m->family != c.family || !m->port || us_addr_is_any(&m->local)))
		err = -EPROTO;
	if (err) {
		st->tcp_stats->port_claim_failures++;
		if (c.waiter) {
			c.waiter->claim_seq = 0;
			st->eph_ready(c.waiter, NULL, err == -EPROTO ? -EADDRNOTAVAIL : err);
		}
		return;
	}
	st->tcp_stats->port_claims++;
	e->route[e->route_next].remote = c.remote;
	e->route[e->route_next].local = local.addr;
	e->route_next = (e->route_next + 1) % EPH_ROUTES;
	if (c.waiter) {
		c.waiter->claim_seq = 0;
		st->eph_ready(c.waiter, &local, 0);
		us_eph_refill(st, &c.remote);
		return;
	}
	struct eph_pool *p = pool_of(e, &local.addr, 1);
	if (p && p->n < EPH_PORTS) {
		p->port[p->n++] = local.port;
		ports_gauge(st);
	} else {
		us_eph_release(st, US_IPPROTO_TCP, &local);
	}
}

/* A CLAIMED answer (from the poll loop): the one a blocked claim waits for, or, for TCP, an
 * active open's or a pool's port. */
void us_eph_claimed(struct us_stack *st, const union us_ctl_msg *m)
{
	if (m->hdr.seq == st->claim_seq && !st->claim_done) {
		st->claim_reply = m->claimed;
		st->claim_done = 1;
		if (st->waiters)
			pthread_cond_broadcast(&st->cond);
	} else if (m->claimed.proto == US_IPPROTO_TCP) {
		tcp_claimed(st, &m->claimed);
	} else {
		st->stats->ctl_bad++;
	}
}

void us_eph_expire(struct us_stack *st)
{
	struct us_eph *e = st->eph;
	for (uint32_t i = 0; i < e->nclaim;) {
		struct eph_claim *c = &e->claim[i];
		if (st->now < c->deadline) {
			i++;
			continue;
		}
		if (c->waiter) {
			c->waiter->claim_seq = 0;
			st->eph_ready(c->waiter, NULL, -ETIMEDOUT);
		}
		st->tcp_stats->port_claim_failures++;
		*c = e->claim[--e->nclaim];
	}
}
