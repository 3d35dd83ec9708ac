/* ctl.c: the stack's end of the control channel (ctl.h), transport only: send a message, read
 * the waiting ones. What each received message means is the poll loop's (poll.c). */
#include <errno.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include "ctl_io.h"

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

/* Read one waiting message into *m: 1 when there is one, 0 when none is waiting (or the
 * channel is gone). Counts what it reads; a malformed message is counted and skipped. */
int us_ctl_recv(struct us_stack *st, union us_ctl_msg *m)
{
	while (st->ctlfd >= 0) {
		ssize_t n = recv(st->ctlfd, m, sizeof(*m), MSG_DONTWAIT);
		if (n == 0) {
			ctl_gone(st);
			return 0;
		}
		if (n < 0) {
			if (errno != EAGAIN && errno != EINTR)
				ctl_gone(st);
			return 0;
		}
		st->stats->ctl_rx++;
		if (n != sizeof(*m) || m->hdr.version != US_CTL_VERSION) {
			st->stats->ctl_bad++;
			continue;
		}
		return 1;
	}
	return 0;
}
