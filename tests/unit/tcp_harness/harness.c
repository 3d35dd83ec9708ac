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

/* ---- micro-benchmarks: one stack, the peer played by hand-built segments ---- */

#include <time.h>

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static void wr32(uint8_t *p, uint32_t v) { wr16(p, (uint16_t)(v >> 16)); wr16(p + 2, (uint16_t)v); }

static size_t peer_hdr(uint8_t *b, uint32_t seq, uint32_t ack, uint8_t flags, uint32_t tsval, uint32_t tsecr)
{
	wr16(b, 40000); wr16(b + 2, 80); wr32(b + 4, seq); wr32(b + 8, ack);
	b[12] = 8 << 4; b[13] = flags; wr16(b + 14, 65535); wr16(b + 16, 0); wr16(b + 18, 0);
	b[20] = 1; b[21] = 1; b[22] = 8; b[23] = 10; wr32(b + 24, tsval); wr32(b + 28, tsecr);
	return 32;
}

static int null_emit(void *ctx, const struct us_addr *s, const struct us_addr *d, const uint8_t *h,
		     size_t hl, const uint8_t *p1, size_t l1, const uint8_t *p2, size_t l2)
{
	uint64_t *n = ctx;
	(void)s; (void)d; (void)h; (void)hl; (void)p1; (void)l1; (void)p2; (void)l2;
	(*n)++;
	return 0;
}

/* Receive `segs` in-order full segments in batches of `batch` (flush after each batch, the
 * application reads everything), or, with tx set, send that many full segments and take one
 * ACK per two. Returns nanoseconds per segment (TCP work only: input, flush, copy in/out). */
double th_bench(int tx, uint64_t segs, int batch)
{
	struct tcp_config cfg;
	tcp_config_default(&cfg);
	uint64_t emitted = 0;
	struct tcp_hooks hooks = { null_emit, NULL, NULL, NULL };
	struct tcp_stack *ts = tcp_stack_new(&cfg, &hooks, &emitted);
	struct us_addr me = { .family = US_AF4, .a = {198, 18, 0, 1} }, peer = { .family = US_AF4, .a = {198, 18, 0, 2} };
	struct us_endpoint l = { .addr = me, .port = 80 };
	struct tcp_sock *lst = tcp_socket(ts);
	tcp_listen(lst, &l, 0);
	uint8_t *b = malloc(2048);
	uint64_t now = 1000000;
	uint32_t pseq = 1000;
	size_t hl = peer_hdr(b, pseq, 0, TH_SYN, 1, 0);
	b[20] = 2; b[21] = 4; wr16(b + 22, 1460); b[24] = 4; b[25] = 2; b[26] = 1; b[27] = 0;   /* MSS, SACKOK */
	b[28] = 1; b[29] = 3; b[30] = 3; b[31] = 7;                                              /* WS 7 */
	tcp_input(ts, &peer, &me, b, hl, now);
	tcp_flush(ts, now);
	struct us_endpoint r = { .addr = peer, .port = 40000 };
	struct tcp_sock *c = tcp_lookup(ts, &l, &r);
	uint32_t iss = c->iss;
	pseq++;
	/* (no timestamps: the SYN had none) */
	wr16(b, 40000); wr16(b + 2, 80); wr32(b + 4, pseq); wr32(b + 8, iss + 1);
	b[12] = 5 << 4; b[13] = TH_ACK; wr16(b + 14, 65535);
	tcp_input(ts, &peer, &me, b, 20, now);
	int err;
	struct tcp_sock *s = tcp_accept(lst, &err);
	uint8_t *rd = malloc(1 << 20);
	memset(b + 20, 'x', 1460);
	double t0 = now_s();
	if (!tx) {
		for (uint64_t i = 0; i < segs; i++) {
			wr32(b + 4, pseq);
			tcp_input(ts, &peer, &me, b, 20 + 1460, now);
			pseq += 1460;
			if ((int)(i % (uint64_t)batch) == batch - 1) {
				while (tcp_recv(s, rd, 1 << 20) > 0)
					;
				tcp_flush(ts, now);
				now += 10;
			}
		}
	} else {
		uint32_t acked = iss + 1;
		uint64_t sent_before = emitted;
		static uint8_t data[65536];
		uint64_t done = 0;
		while (done < segs) {
			while (tcp_send(s, data, sizeof(data)) > 0)
				;
			tcp_flush(ts, now);
			/* ACK what left, one ACK per two segments */
			uint32_t nxt = s->snd_nxt;
			while (seq_lt(acked, nxt)) {
				acked = seq_min(acked + 2 * 1460, nxt);
				wr32(b + 4, pseq); wr32(b + 8, acked);
				tcp_input(ts, &peer, &me, b, 20, now);
			}
			done = emitted - sent_before;
			now += 10;
		}
	}
	double dt = now_s() - t0;
	free(rd);
	free(b);
	tcp_stack_free(ts);
	return dt * 1e9 / (double)segs;
}
