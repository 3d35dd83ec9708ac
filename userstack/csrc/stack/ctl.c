/* ctl.c: the stack's end of the control channel (ctl.h). */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include "stack.h"
#include "../base/wire.h"

int us_ctl_send(struct us_stack *st, union us_ctl_msg *m)
{
	if (st->ctlfd < 0)
		return -ENOTCONN;
	m->hdr.version = US_CTL_VERSION;
	if (!m->hdr.seq)
		m->hdr.seq = ++st->ctl_seq;
	if (send(st->ctlfd, m, sizeof(*m), MSG_DONTWAIT | MSG_NOSIGNAL) != sizeof(*m))
		return -errno;
	st->stats->ctl_tx++;
	return 0;
}

static void ctl_gone(struct us_stack *st)
{
	/* The launcher closed its end: stop listening (EOF would stay readable forever). */
	epoll_ctl(st->epfd, EPOLL_CTL_DEL, st->ctlfd, NULL);
	st->ctlfd = -1;
	st->claim_done = 1;
	st->claim_reply.status = -ENOTCONN;
	if (st->waiters)
		pthread_cond_broadcast(&st->cond);
}

void us_ctl_input(struct us_stack *st)
{
	union us_ctl_msg m;
	while (st->ctlfd >= 0) {
		ssize_t n = recv(st->ctlfd, &m, sizeof(m), MSG_DONTWAIT);
		if (n == 0) {
			ctl_gone(st);
			return;
		}
		if (n < 0) {
			if (errno != EAGAIN && errno != EINTR)
				ctl_gone(st);
			return;
		}
		st->stats->ctl_rx++;
		if (n != sizeof(m) || m.hdr.version != US_CTL_VERSION) {
			st->stats->ctl_bad++;
			continue;
		}
		switch (m.hdr.type) {
		case US_CTL_NEIGH:
			if (m.neigh.dst.family != US_AF4 && m.neigh.dst.family != US_AF6) {
				st->stats->ctl_bad++;
				break;
			}
			us_neigh_update(st, &m.neigh.dst,
					m.neigh.status == US_NEIGH_OK ? m.neigh.mac : NULL);
			break;
		case US_CTL_CLAIMED:
			if (m.hdr.seq == st->claim_seq && !st->claim_done) {
				st->claim_reply = m.claimed;
				st->claim_done = 1;
				if (st->waiters)
					pthread_cond_broadcast(&st->cond);
			} else if (m.claimed.proto == US_IPPROTO_TCP) {
				us_tcp_claimed(st, &m.claimed);   /* an active open's port */
			} else {
				st->stats->ctl_bad++;
			}
			break;
		default:
			st->stats->ctl_bad++;
		}
	}
}

int us_ctl_claim_ephemeral(struct us_stack *st, uint8_t proto, uint8_t family,
			   const struct us_endpoint *remote, struct us_endpoint *local)
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
	st->claim_seq = m.hdr.seq;
	st->claim_done = 0;
	int r = us_ctl_send(st, &m);
	if (r)
		return r;
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
			us_ctl_input(st);
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

void us_ctl_release(struct us_stack *st, uint8_t proto, const struct us_endpoint *local)
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
