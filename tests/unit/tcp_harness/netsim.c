/* netsim.c: two tcp_stacks joined by a simulated link (smoltcp's tests/netsim.rs in C).
 *
 * A bulk transfer from the client to a listening server (optionally back, too), through a link
 * with a one-way delay, a bandwidth and a drop-tail queue, and seeded loss, duplication,
 * reordering and corruption (a corrupted segment fails the stack's checksum, so it is dropped).
 * Simulated time jumps from event to event; the run fails when it exceeds time_limit_us (a
 * stall), when the received bytes differ from the sent ones, or when an invariant breaks. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"

#define POOL 16384
#define PKT_MAX (TCP_MAX_HDR + 9000)

struct pkt {
	uint64_t when;
	int to;                      /* 0: client, 1: server */
	struct us_addr src, dst;
	uint32_t len;
	uint8_t data[PKT_MAX];
};

struct sim {
	const struct netsim_params *p;
	struct netsim_result *r;
	struct tcp_stack *st[2];
	uint64_t now;
	uint64_t rng;
	struct pkt *pool;
	int free_list[POOL], nfree;
	int heap[POOL], nheap;
	uint64_t busy[2];            /* link busy until, per direction (index = receiver) */
	uint64_t drop_run[2];        /* segments dropped in a row, per direction (index = receiver) */
	uint64_t eph_port;
	uint64_t trace_from;          /* NETSIM_TRACE=seconds: print deliveries for 3 s */
};

static uint64_t rnd(struct sim *s)
{
	s->rng ^= s->rng << 13;
	s->rng ^= s->rng >> 7;
	s->rng ^= s->rng << 17;
	return s->rng;
}

static double frand(struct sim *s) { return (double)(rnd(s) >> 11) / (double)(1ull << 53); }

static bool heap_less(struct sim *s, int a, int b)
{
	return s->pool[s->heap[a]].when < s->pool[s->heap[b]].when;
}

static void heap_swap(struct sim *s, int a, int b)
{
	int t = s->heap[a];
	s->heap[a] = s->heap[b];
	s->heap[b] = t;
}

static void heap_push(struct sim *s, int idx)
{
	int i = s->nheap++;
	s->heap[i] = idx;
	while (i && heap_less(s, i, (i - 1) / 2)) {
		heap_swap(s, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static int heap_pop(struct sim *s)
{
	int top = s->heap[0];
	s->heap[0] = s->heap[--s->nheap];
	int i = 0;
	for (;;) {
		int l = 2 * i + 1, r = l + 1, m = i;
		if (l < s->nheap && heap_less(s, l, m))
			m = l;
		if (r < s->nheap && heap_less(s, r, m))
			m = r;
		if (m == i)
			break;
		heap_swap(s, i, m);
		i = m;
	}
	return top;
}

static void enqueue(struct sim *s, int to, const struct pkt *src_pkt, uint64_t extra)
{
	if (!s->nfree) {
		s->r->queue_drops++;
		return;
	}
	int idx = s->free_list[--s->nfree];
	struct pkt *k = &s->pool[idx];
	memcpy(k, src_pkt, offsetof(struct pkt, data) + src_pkt->len);
	k->to = to;
	k->when = src_pkt->when + extra;
	heap_push(s, idx);
}

static int sim_emit(struct sim *s, int from, const struct us_addr *src, const struct us_addr *dst,
		    const uint8_t *hdr, size_t hl, const uint8_t *p1, size_t l1, const uint8_t *p2, size_t l2)
{
	const struct netsim_params *p = s->p;
	int to = !from;
	size_t len = hl + l1 + l2;
	if (len > PKT_MAX)
		return -EMSGSIZE;
	s->r->segs++;
	/* Serialisation at the link's rate; drop-tail when the queue is full. */
	uint64_t start = s->busy[to] > s->now ? s->busy[to] : s->now;
	uint64_t tx = p->bw_bytes_per_s ? (uint64_t)(len + 38) * 1000000 / p->bw_bytes_per_s : 0;
	if (p->queue_bytes && p->bw_bytes_per_s &&
	    (start - s->now) * p->bw_bytes_per_s / 1000000 > p->queue_bytes) {
		s->r->queue_drops++;
		s->drop_run[to]++;
		return 0;
	}
	s->busy[to] = start + tx;
	if (frand(s) < p->loss) {
		s->r->drops++;
		s->drop_run[to]++;
		return 0;
	}
	static struct pkt k;
	k.src = *src;
	k.dst = *dst;
	k.len = (uint32_t)len;
	memcpy(k.data, hdr, hl);
	if (l1)
		memcpy(k.data + hl, p1, l1);
	if (l2)
		memcpy(k.data + hl + l1, p2, l2);
	k.when = s->busy[to] + p->delay_us;
	if (frand(s) < p->corrupt) {
		s->r->corrupts++;        /* the receiving stack's checksum check drops it */
		s->drop_run[to]++;
		return 0;
	}
	uint64_t extra = 0;
	if (frand(s) < p->reorder) {
		s->r->reorders++;
		extra = 1 + rnd(s) % (2 * (uint64_t)p->delay_us + 100);
	}
	enqueue(s, to, &k, extra);
	s->drop_run[to] = 0;
	if (frand(s) < p->dup) {
		s->r->dups++;
		enqueue(s, to, &k, extra + 1 + rnd(s) % 50);
	}
	return 0;
}

static struct sim *g_sim;
static int emit_client(void *ctx, const struct us_addr *a, const struct us_addr *b, const uint8_t *h,
		       size_t hl, const uint8_t *p1, size_t l1, const uint8_t *p2, size_t l2)
{
	return sim_emit(ctx, 0, a, b, h, hl, p1, l1, p2, l2);
}
static int emit_server(void *ctx, const struct us_addr *a, const struct us_addr *b, const uint8_t *h,
		       size_t hl, const uint8_t *p1, size_t l1, const uint8_t *p2, size_t l2)
{
	return sim_emit(ctx, 1, a, b, h, hl, p1, l1, p2, l2);
}

static int sim_bind(void *ctx, const struct us_endpoint *remote, struct us_endpoint *out)
{
	struct sim *s = ctx;
	memset(out, 0, sizeof(*out));
	out->addr.family = remote->addr.family;
	if (remote->addr.family == US_AF4) {
		uint8_t a[4] = {198, 18, 0, 2};
		memcpy(out->addr.a, a, 4);
	} else {
		uint8_t a[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 2};
		memcpy(out->addr.a, a, 16);
	}
	out->port = (uint16_t)s->eph_port++;
	return 0;
}

/* Per direction of the transfer: what was written, read and verified. */
struct flow {
	struct tcp_sock *tx, *rx;
	uint64_t total, written, read;
	bool shut;
};

/* The byte stream: a fixed random table repeated with a prime period, so that a misplaced
 * segment never lines up with equal bytes. */
#define PERIOD 1000003
static uint8_t *g_pattern;

static bool pump(struct sim *s, struct flow *f)
{
	if (!f->tx)
		return true;
	while (f->written < f->total && tcp_send_space(f->tx)) {
		uint64_t off = f->written % PERIOD;
		uint64_t n = PERIOD - off;
		if (n > f->total - f->written)
			n = f->total - f->written;
		ssize_t w = tcp_send(f->tx, g_pattern + off, (size_t)n);
		if (w <= 0)
			break;
		f->written += (uint64_t)w;
	}
	if (f->total && f->written == f->total && !f->shut && s->p->close) {
		tcp_shutdown(f->tx, TCP_SHUT_WR);
		f->shut = true;
	}
	while (f->rx) {
		const uint8_t *pc[2];
		size_t lc[2];
		size_t n = tcp_recv_peek(f->rx, &pc[0], &lc[0], &pc[1], &lc[1]);
		if (!n)
			break;
		uint64_t pos = f->read;
		for (int k = 0; k < 2; k++) {
			size_t done = 0;
			while (done < lc[k]) {
				uint64_t off = pos % PERIOD;
				size_t m = lc[k] - done;
				if (m > PERIOD - off)
					m = (size_t)(PERIOD - off);
				if (memcmp(pc[k] + done, g_pattern + off, m)) {
					for (size_t i = 0; i < m; i++)
						if (pc[k][done + i] != g_pattern[off + i]) {
							s->r->mismatch_at = (int64_t)(pos + i);
							break;
						}
					return false;
				}
				done += m;
				pos += m;
			}
		}
		f->read += n;
		tcp_recv_consume(f->rx, n);
	}
	return true;
}

static double wall(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int netsim_run(const struct netsim_params *p, struct netsim_result *r)
{
	memset(r, 0, sizeof(*r));
	r->mismatch_at = -1;
	struct sim *s = calloc(1, sizeof(*s));
	s->p = p;
	s->r = r;
	s->rng = p->seed * 0x9e3779b97f4a7c15ull + 1;
	s->pool = malloc(sizeof(struct pkt) * POOL);
	for (int i = 0; i < POOL; i++)
		s->free_list[i] = POOL - 1 - i;
	s->nfree = POOL;
	s->eph_port = 40000;
	s->now = 1000000;
	if (getenv("NETSIM_TRACE"))
		s->trace_from = (uint64_t)(atof(getenv("NETSIM_TRACE")) * 1e6);
	g_sim = s;
	if (!g_pattern) {
		g_pattern = malloc(PERIOD);
		uint64_t x = 0x1234567;
		for (int i = 0; i < PERIOD; i++) {
			x ^= x << 13; x ^= x >> 7; x ^= x << 17;
			g_pattern[i] = (uint8_t)(x >> 24);
		}
	}

	struct tcp_config cfg;
	tcp_config_default(&cfg);
	cfg.cc = (uint8_t)p->cc;
	if (p->sndbuf)
		cfg.sndbuf = p->sndbuf;
	if (p->rcvbuf)
		cfg.rcvbuf = p->rcvbuf;
	cfg.sack = (uint8_t)p->sack;
	cfg.timestamps = (uint8_t)p->ts;
	cfg.wscale = (uint8_t)p->ws;
	if (p->mtu)
		cfg.mtu = p->mtu;
	cfg.time_wait_us = 1000000;
	for (int i = 0; i < 16; i++)
		cfg.secret[i] = (uint8_t)(p->seed >> (i % 8));
	struct tcp_hooks hc = { emit_client, NULL, sim_bind, NULL };
	struct tcp_hooks hs = { emit_server, NULL, sim_bind, NULL };
	s->st[0] = tcp_stack_new(&cfg, &hc, s);
	cfg.secret[0] ^= 0x55;
	s->st[1] = tcp_stack_new(&cfg, &hs, s);

	struct us_endpoint srv;
	memset(&srv, 0, sizeof(srv));
	srv.addr.family = p->ipv6 ? US_AF6 : US_AF4;
	if (p->ipv6) {
		uint8_t a[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 1};
		memcpy(srv.addr.a, a, 16);
	} else {
		uint8_t a[4] = {198, 18, 0, 1};
		memcpy(srv.addr.a, a, 4);
	}
	srv.port = 80;
	struct tcp_sock *l = tcp_socket(s->st[1]);
	tcp_listen(l, &srv, 16);
	struct tcp_sock *c = tcp_socket(s->st[0]);
	tcp_setopt(c, TCP_OPT_NODELAY, 1);
	tcp_connect(c, &srv, NULL, s->now);

	struct flow fwd = { c, NULL, p->bytes, 0, 0, false };
	struct flow back = { NULL, c, p->bytes_back, 0, 0, false };
	uint8_t buf[1];
	double t0 = wall();
	uint64_t start = s->now, iters = 0;
	bool ok = true;
	for (;;) {
		iters++;
		if (!fwd.rx) {
			int e;
			struct tcp_sock *a = tcp_accept(l, &e);
			if (a) {
				fwd.rx = a;
				back.tx = a;
			}
		}
		if (!pump(s, &fwd) || !pump(s, &back)) {
			ok = false;
			break;
		}
		for (int i = 0; i < 2; i++)
			tcp_flush(s->st[i], s->now);
		int inv = p->no_check ? 0 : tcp_check_invariants(s->st[0]);
		if (!inv && !p->no_check)
			inv = tcp_check_invariants(s->st[1]);
		if (inv) {
			if (getenv("NETSIM_DEBUG")) {
				struct tcp_sock *v[2] = { c, fwd.rx };
				for (int i = 0; i < 2; i++)
					if (v[i])
						fprintf(stderr, "sock%d %s una=%u nxt=%u max=%u sb_seq=%u len=%u rcv_nxt=%u adv=%u fin_q=%d check=%d\n", i,
							tcp_state_name(v[i]->state), v[i]->snd_una, v[i]->snd_nxt, v[i]->snd_max,
							v[i]->sb_seq, v[i]->sndbuf.len, v[i]->rcv_nxt, v[i]->rcv_adv, v[i]->fin_queued,
							tcp_sock_check(v[i]));
			}
			r->invariant = inv;
			ok = false;
			break;
		}
		bool done = fwd.read == fwd.total && back.read == back.total;
		if (done && p->close) {
			int a = fwd.rx ? tcp_sock_state(fwd.rx) : -1;
			done = (a == TCPS_CLOSE_WAIT || a == TCPS_CLOSED || a == TCPS_LAST_ACK) &&
			       tcp_recv(fwd.rx, buf, 1) == 0;
			if (done && a == TCPS_CLOSE_WAIT && !back.shut) {
				tcp_shutdown(fwd.rx, TCP_SHUT_WR);
				back.shut = true;
			}
			int cs = tcp_sock_state(c);
			int ss = tcp_sock_state(fwd.rx);
			done = done && (cs == TCPS_TIME_WAIT || cs == TCPS_CLOSED) && ss == TCPS_CLOSED;
		}
		if (done)
			break;
		/* Next event: a packet arrival or a timer. */
		uint64_t next = UINT64_MAX;
		if (s->nheap)
			next = s->pool[s->heap[0]].when;
		for (int i = 0; i < 2; i++) {
			uint64_t d = tcp_next_deadline(s->st[i]);
			if (d < next)
				next = d;
		}
		if (next == UINT64_MAX || next - start > p->time_limit_us) {
			if (getenv("NETSIM_DEBUG")) {
				struct tcp_sock *v[2] = { c, fwd.rx };
				for (int i = 0; i < 2; i++)
					if (v[i])
						fprintf(stderr, "sock%d %s una=%u nxt=%u max=%u sbuf=%u wnd=%u rcv_nxt=%u adv=%u rbuf=%u fin_q=%d persist=%d dl=%lu,%lu,%lu,%lu,%lu,%lu\n", i,
							tcp_state_name(v[i]->state), v[i]->snd_una, v[i]->snd_nxt - v[i]->snd_una, v[i]->snd_max - v[i]->snd_una,
							v[i]->sndbuf.len, v[i]->snd_wnd, v[i]->rcv_nxt, v[i]->rcv_adv - v[i]->rcv_nxt, v[i]->rcvbuf.len, v[i]->fin_queued, v[i]->persist,
							v[i]->deadline[0], v[i]->deadline[1], v[i]->deadline[2], v[i]->deadline[3], v[i]->deadline[4], v[i]->deadline[5]);
			}
			ok = false;
			r->stalled = 1;
			r->deadlock = next == UINT64_MAX;    /* nothing pending: nothing would ever happen */
			for (int i = 0; i < 2; i++)
				r->final_drop_run[i] = s->drop_run[i];
			break;
		}
		if (next > s->now)
			s->now = next;
		while (s->nheap && s->pool[s->heap[0]].when <= s->now) {
			int idx = heap_pop(s);
			struct pkt *k = &s->pool[idx];
			if (s->trace_from && s->now >= s->trace_from && s->now < s->trace_from + 3000000) {
				struct tcp_seg g;
				if (!tcp_parse(k->data, k->len, &g))
					fprintf(stderr, "%.6f ->%d seq=%u ack=%u fl=%02x len=%u wnd=%u nsack=%u\n", s->now / 1e6,
						k->to, g.seq, g.ack, g.flags, g.len, g.wnd, g.nsack);
			}
			tcp_input(s->st[k->to], &k->src, &k->dst, k->data, k->len, s->now);
			s->free_list[s->nfree++] = idx;
		}
		for (int i = 0; i < 2; i++)
			if (tcp_next_deadline(s->st[i]) <= s->now)
				tcp_timers(s->st[i], s->now);
	}
	r->wall_s = wall() - t0;
	r->sim_time_us = s->now - start;
	r->delivered = fwd.read;
	r->delivered_back = back.read;
	r->iterations = iters;
	struct tcp_sock_info info;
	tcp_sock_info(c, &info);
	r->retransmits = info.retransmits;
	r->timeouts = info.timeouts;
	r->fast_retransmits = info.fast_retransmits;
	r->final_cwnd = info.cwnd;
	r->srtt_us = info.srtt_us;
	r->ok = ok && fwd.read == fwd.total && back.read == back.total;
	if (fwd.rx)
		tcp_close(fwd.rx);
	tcp_close(c);
	tcp_close(l);
	tcp_stack_free(s->st[0]);
	tcp_stack_free(s->st[1]);
	free(s->pool);
	free(s);
	return r->ok ? 0 : -1;
}
