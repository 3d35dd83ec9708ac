/* harness.c: a tcp_stack wired to in-memory hooks for the unit tests (segment in, segments out).
 * Emitted segments queue up until the test pops them; events and port releases are logged. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define TH_MAXQ 4096
#define TH_MAXEV 4096

struct th_seg {
	struct us_addr src, dst;
	uint32_t len;
	uint8_t data[TCP_MAX_HDR + 65536];
};

struct th {
	struct tcp_stack *ts;
	struct th_seg *q;
	int head, n;
	int fail;                    /* emits to fail with -ENOBUFS (-1: all) */
	struct us_endpoint eph;
	int eph_err;
	int released;
	struct tcp_sock *ev_sock[TH_MAXEV];
	unsigned ev_mask[TH_MAXEV];
	int nev;
	int close_on_event;          /* the event hook closes the socket (re-entrancy test) */
};

static int th_emit(void *ctx, const struct us_addr *src, const struct us_addr *dst,
		   const uint8_t *hdr, size_t hl, const uint8_t *p1, size_t l1, const uint8_t *p2, size_t l2)
{
	struct th *h = ctx;
	if (h->fail) {
		if (h->fail > 0)
			h->fail--;
		return -ENOBUFS;
	}
	if (h->n == TH_MAXQ)
		return -ENOBUFS;
	struct th_seg *s = &h->q[(h->head + h->n) % TH_MAXQ];
	s->src = *src;
	s->dst = *dst;
	memcpy(s->data, hdr, hl);
	if (l1)
		memcpy(s->data + hl, p1, l1);
	if (l2)
		memcpy(s->data + hl + l1, p2, l2);
	s->len = (uint32_t)(hl + l1 + l2);
	h->n++;
	return 0;
}

static void th_event(void *ctx, struct tcp_sock *s, unsigned ev)
{
	struct th *h = ctx;
	if (h->nev < TH_MAXEV) {
		h->ev_sock[h->nev] = s;
		h->ev_mask[h->nev] = ev;
		h->nev++;
	}
	if (h->close_on_event)
		tcp_close(s);
}

static int th_bind(void *ctx, const struct us_endpoint *remote, struct us_endpoint *out)
{
	struct th *h = ctx;
	(void)remote;
	if (h->eph_err)
		return h->eph_err;
	*out = h->eph;
	h->eph.port++;
	return 0;
}

static void th_release(void *ctx, const struct us_endpoint *local)
{
	struct th *h = ctx;
	(void)local;
	h->released++;
}

struct th *th_new(const struct tcp_config *cfg)
{
	struct th *h = calloc(1, sizeof(*h));
	h->q = malloc(sizeof(*h->q) * TH_MAXQ);
	struct tcp_hooks hooks = { th_emit, th_event, th_bind, th_release };
	h->ts = tcp_stack_new(cfg, &hooks, h);
	return h;
}

void th_free(struct th *h)
{
	tcp_stack_free(h->ts);
	free(h->q);
	free(h);
}

struct tcp_stack *th_stack(struct th *h) { return h->ts; }
int th_pending(struct th *h) { return h->n; }
void th_set_emit_fail(struct th *h, int n) { h->fail = n; }
void th_set_ephemeral(struct th *h, const struct us_endpoint *ep, int err) { h->eph = *ep; h->eph_err = err; }
int th_released(struct th *h) { return h->released; }
void th_set_close_on_event(struct th *h, int on) { h->close_on_event = on; }
int th_check(struct th *h) { return tcp_check_invariants(h->ts); }
int th_sock_check(struct tcp_sock *s) { return tcp_sock_check(s); }

int th_pop(struct th *h, uint8_t *buf, size_t cap, struct us_addr *src, struct us_addr *dst)
{
	if (!h->n)
		return -1;
	struct th_seg *s = &h->q[h->head];
	h->head = (h->head + 1) % TH_MAXQ;
	h->n--;
	if (s->len > cap)
		return -2;
	memcpy(buf, s->data, s->len);
	*src = s->src;
	*dst = s->dst;
	return (int)s->len;
}

int th_events(struct th *h, struct tcp_sock **socks, unsigned *evs, int max)
{
	int n = h->nev < max ? h->nev : max;
	memcpy(socks, h->ev_sock, sizeof(socks[0]) * (size_t)n);
	memcpy(evs, h->ev_mask, sizeof(evs[0]) * (size_t)n);
	memmove(h->ev_sock, h->ev_sock + n, sizeof(h->ev_sock[0]) * (size_t)(h->nev - n));
	memmove(h->ev_mask, h->ev_mask + n, sizeof(h->ev_mask[0]) * (size_t)(h->nev - n));
	h->nev -= n;
	return n;
}

/* Timer wheel access for its own tests. */
struct tw_wheel *th_wheel_new(uint64_t now)
{
	struct tw_wheel *w = malloc(sizeof(*w));
	tw_init(w, now);
	return w;
}

/* Internals for white-box tests: the socket's timer deadlines (T_* order of tcp_int.h). */
void th_deadlines(struct tcp_sock *s, uint64_t out[T_NUM])
{
	for (int i = 0; i < T_NUM; i++)
		out[i] = s->deadline[i];
}
