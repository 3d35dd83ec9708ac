/* tcp_conn.c: the TCP stack object: its config, buffers and socket memory, and the connection
 * and listener tables. The sockets' life cycle and calls are in tcp_sock.c, the invariant checks
 * in tcp_check.c. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tcp_int.h"

void tcp_config_default(struct tcp_config *c)
{
	memset(c, 0, sizeof(*c));
	c->sndbuf = 2u << 20;
	c->rcvbuf = 2u << 20;
	c->mtu = 1500;
	c->sack = c->timestamps = c->wscale = 1;
	c->cc = TCP_CC_CUBIC;
	c->init_cwnd = 10;
	c->delack_us = 40000;
	c->quickack = 16;
	c->rto_min_us = 200000;
	c->rto_init_us = 1000000;
	c->rto_max_us = 120000000;
	c->syn_retries = 6;
	c->synack_retries = 5;
	c->retries = 15;
	c->keepidle_s = 7200;
	c->keepintvl_s = 75;
	c->keepcnt = 9;
	c->time_wait_us = 60000000;
	c->max_time_wait = 65536;
	c->backlog = 128;
	c->challenge_ack_limit = 1000;
}

static const char *const state_names[] = {
	"CLOSED", "LISTEN", "SYN-SENT", "SYN-RECEIVED", "ESTABLISHED", "FIN-WAIT-1",
	"FIN-WAIT-2", "CLOSE-WAIT", "CLOSING", "LAST-ACK", "TIME-WAIT",
};

const char *tcp_state_name(int st)
{
	return st >= 0 && st <= TCPS_TIME_WAIT ? state_names[st] : "?";
}

static void derive_key(const struct tcp_config *cfg, const char *label, uint64_t out[2])
{
	uint64_t master[2];
	memcpy(master, cfg->secret, 16);
	out[0] = siphash(master, label, strlen(label), 2, 4);
	char l2[16];
	size_t n = strlen(label);
	memcpy(l2, label, n);
	l2[n] = '2';
	out[1] = siphash(master, l2, n + 1, 2, 4);
}

struct tcp_stack *tcp_stack_new(const struct tcp_config *cfg, const struct tcp_hooks *hooks, void *ctx)
{
	struct tcp_stack *ts = calloc(1, sizeof(*ts));
	if (!ts)
		return NULL;
	if (cfg)
		ts->cfg = *cfg;
	else
		tcp_config_default(&ts->cfg);
	struct tcp_config *c = &ts->cfg;
	if (c->mtu < 576)
		c->mtu = 576;
	if (c->sndbuf < 4096)
		c->sndbuf = 4096;
	if (c->rcvbuf < 4096)
		c->rcvbuf = 4096;
	if (c->init_cwnd < 1)
		c->init_cwnd = 1;
	if (c->rto_min_us < 1000)
		c->rto_min_us = 1000;
	if (c->rto_max_us < c->rto_min_us)
		c->rto_max_us = c->rto_min_us;
	if (c->rto_init_us < c->rto_min_us)
		c->rto_init_us = c->rto_min_us;
	if (c->backlog < 1)
		c->backlog = 1;
	if (hooks)
		ts->hooks = *hooks;
	ts->ctx = ctx;
	ts->st = &ts->own_st;
	derive_key(c, "conn-hash", ts->hkey);
	derive_key(c, "isn", ts->isn_key);
	derive_key(c, "tsoff", ts->ts_key);
	ts->cmask = 1023;
	ts->lmask = 63;
	ts->ctab = calloc(ts->cmask + 1, sizeof(*ts->ctab));
	ts->ltab = calloc(ts->lmask + 1, sizeof(*ts->ltab));
	if (!ts->ctab || !ts->ltab) {
		free(ts->ctab);
		free(ts->ltab);
		free(ts);
		return NULL;
	}
	list_init(&ts->dirty);
	list_init(&ts->evq);
	tw_init(&ts->wheel, 0);
	return ts;
}

void *tcp_buf_get(struct tcp_stack *ts, uint32_t size)
{
	for (uint32_t i = ts->nbuf_cache; i-- > 0;) {
		if (ts->buf_cache_size[i] == size) {
			void *p = ts->buf_cache[i];
			ts->nbuf_cache--;
			ts->buf_cache[i] = ts->buf_cache[ts->nbuf_cache];
			ts->buf_cache_size[i] = ts->buf_cache_size[ts->nbuf_cache];
			return p;
		}
	}
	return malloc(size);
}

void tcp_buf_put(struct tcp_stack *ts, void *p, uint32_t size)
{
	if (!p)
		return;
	if (ts->nbuf_cache < TCP_BUF_CACHE && (size == ts->cfg.sndbuf || size == ts->cfg.rcvbuf)) {
		ts->buf_cache[ts->nbuf_cache] = p;
		ts->buf_cache_size[ts->nbuf_cache] = size;
		ts->nbuf_cache++;
		return;
	}
	free(p);
}

/* Objects of one size kept for reuse (not under AddressSanitizer: the fuzzer must see every
 * use after free). */
#if defined(__SANITIZE_ADDRESS__)
#define OBJ_CACHE 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define OBJ_CACHE 0
#endif
#endif
#ifndef OBJ_CACHE
#define OBJ_CACHE 1
#endif

void *tcp_obj_get(void **cache, uint32_t *n, size_t size)
{
	if (OBJ_CACHE && *n) {
		void *p = cache[--*n];
		memset(p, 0, size);
		return p;
	}
	return calloc(1, size);
}

static void obj_put(void **cache, uint32_t *n, void *p)
{
	if (OBJ_CACHE && p && *n < TCP_OBJ_CACHE)
		cache[(*n)++] = p;
	else
		free(p);
}

void tcp_sock_put(struct tcp_stack *ts, struct tcp_sock *s)
{
	obj_put(ts->sock_cache, &ts->nsock_cache, s);
}

void tcp_mem_put(struct tcp_stack *ts, struct tcp_conn_mem *m)
{
	obj_put(ts->mem_cache, &ts->nmem_cache, m);
}

void tcp_free_sock_mem(struct tcp_sock *s)
{
	tcp_buf_put(s->ts, s->sndbuf.buf, s->sndbuf.cap);
	tcp_buf_put(s->ts, s->rcvbuf.buf, s->rcvbuf.cap);
	tcp_mem_put(s->ts, s->mem);
	s->sndbuf.buf = s->rcvbuf.buf = NULL;
	s->sndbuf.cap = s->rcvbuf.cap = 0;
	s->sndbuf.len = s->rcvbuf.len = 0;
	s->mem = NULL;
}

void tcp_stack_free(struct tcp_stack *ts)
{
	if (!ts)
		return;
	for (int t = 0; t < 2; t++) {
		struct tcp_sock **tab = t ? ts->ltab : ts->ctab;
		uint32_t n = (t ? ts->lmask : ts->cmask) + 1;
		for (uint32_t i = 0; i < n; i++) {
			struct tcp_sock *s = tab[i];
			while (s) {
				struct tcp_sock *next = s->hnext;
				if (s->ephemeral && ts->hooks.release_port)
					ts->hooks.release_port(ts->ctx, &s->local);
				tcp_free_sock_mem(s);
				free(s);
				s = next;
			}
		}
	}
	/* Sockets held by the application but in no table (unconnected, closed) are its own:
	 * they were allocated by tcp_socket and must be closed by it; we cannot find them. */
	for (uint32_t i = 0; i < ts->nbuf_cache; i++)
		free(ts->buf_cache[i]);
	for (uint32_t i = 0; i < ts->nsock_cache; i++)
		free(ts->sock_cache[i]);
	for (uint32_t i = 0; i < ts->nmem_cache; i++)
		free(ts->mem_cache[i]);
	ts->nconn = ts->nlisten = ts->ntw = 0;
	tcp_gauges(ts);
	free(ts->ctab);
	free(ts->ltab);
	free(ts);
}

void tcp_stack_stats(const struct tcp_stack *ts, struct us_tcp_stats *out)
{
	*out = *ts->st;
}

void tcp_stack_count_into(struct tcp_stack *ts, struct us_tcp_stats *where)
{
	ts->st = where ? where : &ts->own_st;
	tcp_gauges(ts);
}

int tcp_tx_blocked(const struct tcp_stack *ts)
{
	return ts->tx_blocked;
}

uint64_t tcp_next_deadline(const struct tcp_stack *ts)
{
	return tw_next(&ts->wheel);
}

/* ---- tables ---- */

bool tcp_ep_eq(const struct us_endpoint *a, const struct us_endpoint *b)
{
	return a->port == b->port && us_addr_eq(&a->addr, &b->addr);
}

static void chain_link(struct tcp_sock **head, struct tcp_sock *s)
{
	s->hnext = *head;
	if (s->hnext)
		s->hnext->hpprev = &s->hnext;
	s->hpprev = head;
	*head = s;
}

static void chain_unlink(struct tcp_sock *s)
{
	*s->hpprev = s->hnext;
	if (s->hnext)
		s->hnext->hpprev = s->hpprev;
	s->hnext = NULL;
	s->hpprev = NULL;
}

static void ctab_grow(struct tcp_stack *ts)
{
	uint32_t nb = (ts->cmask + 1) * 2;
	struct tcp_sock **nt = calloc(nb, sizeof(*nt));
	if (!nt)
		return;                        /* keep the old table: longer chains, still correct */
	for (uint32_t i = 0; i <= ts->cmask; i++) {
		struct tcp_sock *s = ts->ctab[i];
		while (s) {
			struct tcp_sock *next = s->hnext;
			chain_link(&nt[s->hash & (nb - 1)], s);
			s = next;
		}
	}
	free(ts->ctab);
	ts->ctab = nt;
	ts->cmask = nb - 1;
}

uint32_t tcp_listen_hash(const struct tcp_stack *ts, uint16_t port)
{
	return (port * 0x9e3779b1u >> 16) & ts->lmask;
}

int tcp_hash_insert(struct tcp_sock *s)
{
	struct tcp_stack *ts = s->ts;
	if (s->state == TCPS_LISTEN) {
		chain_link(&ts->ltab[tcp_listen_hash(ts, s->local.port)], s);
		ts->nlisten++;
	} else {
		s->hash = tcp_hash_tuple(ts, &s->local, &s->remote);
		chain_link(&ts->ctab[s->hash & ts->cmask], s);
		if (++ts->nconn > ts->cmask + 1)       /* load <= 1: a lookup touches ~1 socket */
			ctab_grow(ts);
	}
	tcp_gauges(ts);
	s->hashed = true;
	return 0;
}

void tcp_unhash(struct tcp_sock *s)
{
	struct tcp_stack *ts = s->ts;
	if (!s->hashed)
		return;
	chain_unlink(s);
	if (s->state == TCPS_LISTEN)
		ts->nlisten--;
	else
		ts->nconn--;
	tcp_gauges(ts);
	s->hashed = false;
	if (ts->last == s)
		ts->last = NULL;
}

struct tcp_sock *tcp_lookup(struct tcp_stack *ts, const struct us_endpoint *l, const struct us_endpoint *r)
{
	struct tcp_sock *s = ts->last;
	if (s && tcp_ep_eq(&s->remote, r) && tcp_ep_eq(&s->local, l))
		return s;
	uint32_t h = tcp_hash_tuple(ts, l, r);
	for (s = ts->ctab[h & ts->cmask]; s; s = s->hnext) {
		if (s->hash == h && tcp_ep_eq(&s->remote, r) && tcp_ep_eq(&s->local, l)) {
			ts->last = s;
			return s;
		}
	}
	return NULL;
}

/* Exact (address, port), then the family's wildcard, then the dual-stack wildcard. */
struct tcp_sock *tcp_lookup_listener(struct tcp_stack *ts, const struct us_endpoint *l)
{
	struct tcp_sock *wild = NULL, *dual = NULL;
	for (struct tcp_sock *s = ts->ltab[tcp_listen_hash(ts, l->port)]; s; s = s->hnext) {
		if (s->local.port != l->port)
			continue;
		if (us_addr_eq(&s->local.addr, &l->addr))
			return s;
		if (s->local.addr.family == l->addr.family && us_addr_is_any(&s->local.addr))
			wild = s;
		else if (s->local.addr.family == 0)
			dual = s;
	}
	return wild ? wild : dual;
}
