/* fuzz_tcp_input.c: libFuzzer target for the TCP input path.
 *
 * The input is a small script. Its first byte picks a starting point (a listener, a connection
 * in SYN-SENT, ESTABLISHED with data in flight both ways, FIN-WAIT, CLOSE-WAIT, TIME-WAIT ...)
 * and the options; every following operation is either a segment (raw bytes, or fields taken
 * relative to the connection's sequence numbers so that mutations reach deep states), time
 * passing, or an application call. After every operation all invariants of every socket are
 * checked (tcp_check_invariants): a violation aborts, and so does any sanitizer report.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
 *         -I userstack/csrc userstack/csrc/tcp/fuzz/fuzz_tcp_input.c userstack/csrc/tcp/[a-z]*.c \
 *         userstack/csrc/base/timer.c -o fuzz_tcp_input
 *   ./fuzz_tcp_input -max_total_time=60 userstack/csrc/tcp/fuzz/corpus
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tcp/tcp_int.h"

struct fz {
	const uint8_t *p;
	size_t n;
	struct tcp_stack *ts;
	struct tcp_sock *lst, *conn;
	struct us_addr me, peer;
	uint16_t lport, rport;
	uint64_t now;
	int fail;                    /* emits to refuse with -ENOBUFS */
	uint32_t peer_iss;
	uint8_t last[TCP_MAX_HDR + 2048];
	size_t last_len;
};

static uint8_t u8(struct fz *f)
{
	if (!f->n)
		return 0;
	f->n--;
	return *f->p++;
}

static uint16_t u16(struct fz *f) { return (uint16_t)(u8(f) << 8 | u8(f)); }
static uint32_t u32(struct fz *f) { return (uint32_t)u16(f) << 16 | u16(f); }

static int emit(void *ctx, const struct us_addr *s, const struct us_addr *d, const uint8_t *h, size_t hl,
		const uint8_t *p1, size_t l1, const uint8_t *p2, size_t l2)
{
	struct fz *f = ctx;
	(void)s; (void)d;
	if (f->fail) {
		f->fail--;
		return -ENOBUFS;
	}
	/* Touch every byte so that ASan sees a bad pointer or length. */
	volatile uint8_t sink = 0;
	for (size_t i = 0; i < l1; i++)
		sink ^= p1[i];
	for (size_t i = 0; i < l2; i++)
		sink ^= p2[i];
	(void)sink;
	if (hl < 20 || hl > TCP_MAX_HDR || (h[12] >> 4) * 4 != (int)hl)
		abort();
	f->last_len = hl;
	memcpy(f->last, h, hl);
	return 0;
}

static void on_event(void *ctx, struct tcp_sock *s, unsigned ev)
{
	(void)ctx; (void)s; (void)ev;
}

static uint16_t next_port = 40000;
static int bind_eph(void *ctx, const struct us_endpoint *r, struct us_endpoint *out)
{
	struct fz *f = ctx;
	(void)r;
	memset(out, 0, sizeof(*out));
	out->addr = f->me;
	out->port = next_port++;
	if (next_port < 40000)
		next_port = 40000;
	return 0;
}

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static void put32(uint8_t *p, uint32_t v) { put16(p, (uint16_t)(v >> 16)); put16(p + 2, (uint16_t)v); }

static void deliver(struct fz *f, const uint8_t *seg, size_t len)
{
	tcp_input(f->ts, &f->peer, &f->me, seg, len, f->now);
}

/* A segment from the peer with the given fields, options and payload length. */
static void peer_seg(struct fz *f, uint8_t flags, uint32_t seq, uint32_t ack, uint16_t wnd,
		     const uint8_t *opts, size_t olen, size_t plen, uint16_t sport)
{
	static uint8_t b[TCP_MAX_HDR + 4096];
	olen &= ~(size_t)3;
	if (olen > 40)
		olen = 40;
	if (plen > 4000)
		plen = 4000;
	put16(b, sport);
	put16(b + 2, f->lport);
	put32(b + 4, seq);
	put32(b + 8, ack);
	b[12] = (uint8_t)(((20 + olen) / 4) << 4);
	b[13] = flags;
	put16(b + 14, wnd);
	put16(b + 16, 0);
	put16(b + 18, 0);
	if (olen)
		memcpy(b + 20, opts, olen);
	for (size_t i = 0; i < plen; i++)
		b[20 + olen + i] = (uint8_t)(i * 31 + seq);
	deliver(f, b, 20 + olen + plen);
}

static const uint8_t syn_opts[] = { 2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7 };

/* The peer's view of f->conn: what it sends next and what it acknowledges. */
static uint32_t peer_seq(struct fz *f) { return f->conn ? f->conn->rcv_nxt : f->peer_iss; }
static uint32_t peer_ack(struct fz *f) { return f->conn ? f->conn->snd_nxt : 0; }

static void handshake_passive(struct fz *f)
{
	peer_seg(f, TH_SYN, f->peer_iss, 0, 65535, syn_opts, sizeof(syn_opts), 0, f->rport);
	tcp_flush(f->ts, f->now);
	struct us_endpoint l = { .addr = f->me, .port = f->lport }, r = { .addr = f->peer, .port = f->rport };
	struct tcp_sock *c = tcp_lookup(f->ts, &l, &r);
	if (!c)
		return;
	uint8_t ts[] = { 1, 1, 8, 10, 0, 0, 0, 2, 0, 0, 0, 0 };
	put32(ts + 8, tcp_ts_now(c, f->now));
	peer_seg(f, TH_ACK, f->peer_iss + 1, c->iss + 1, 65535, ts, sizeof(ts), 0, f->rport);
	int err;
	f->conn = tcp_accept(f->lst, &err);
}

static void handshake_active(struct fz *f, bool complete)
{
	f->conn = tcp_socket(f->ts);
	struct us_endpoint r = { .addr = f->peer, .port = f->rport };
	if (tcp_connect(f->conn, &r, NULL, f->now) < 0)
		return;
	tcp_flush(f->ts, f->now);
	f->lport = f->conn->local.port;
	if (!complete)
		return;
	uint8_t opts[24];
	memcpy(opts, syn_opts, sizeof(syn_opts));
	put32(opts + 12, tcp_ts_now(f->conn, f->now));
	peer_seg(f, TH_SYN | TH_ACK, f->peer_iss, f->conn->iss + 1, 65535, opts, 20, 0, f->rport);
}

static void setup(struct fz *f, uint8_t sc)
{
	struct tcp_config cfg;
	tcp_config_default(&cfg);
	cfg.timestamps = !(sc & 0x08);
	cfg.sack = !(sc & 0x10);
	cfg.cc = (sc & 0x20) ? TCP_CC_NEWRENO : TCP_CC_CUBIC;
	if (sc & 0x40) {
		cfg.sndbuf = 4096;
		cfg.rcvbuf = 4096;
	} else {
		cfg.sndbuf = 65536;
		cfg.rcvbuf = 65536;
	}
	cfg.time_wait_us = 2000000;
	cfg.quickack = (sc & 0x80) ? 0 : 4;
	cfg.max_time_wait = (sc & 0x80) ? 1 : 65536;
	cfg.challenge_ack_limit = 50;
	struct tcp_hooks h = { emit, on_event, bind_eph, NULL };
	f->ts = tcp_stack_new(&cfg, &h, f);
	f->me.family = f->peer.family = (sc & 0x40) && (sc & 1) ? US_AF6 : US_AF4;
	f->me.a[0] = 198; f->me.a[1] = 18; f->me.a[3] = 1;
	f->peer.a[0] = 198; f->peer.a[1] = 18; f->peer.a[3] = 2;
	f->lport = 80;
	f->rport = 12345;
	f->peer_iss = 0x7ffff000u;
	f->now = 1000000;
	struct us_endpoint l = { .addr = f->me, .port = 80 };
	f->lst = tcp_socket(f->ts);
	tcp_listen(f->lst, &l, 4);
	static const uint8_t msg[3000];
	switch (sc & 7) {
	case 0:                                          /* a listener only */
		break;
	case 1:                                          /* ESTABLISHED, passive */
		handshake_passive(f);
		break;
	case 2:                                          /* SYN-SENT */
		handshake_active(f, false);
		break;
	case 3:                                          /* ESTABLISHED, active, data in flight */
		handshake_active(f, true);
		if (f->conn)
			tcp_send(f->conn, msg, sizeof(msg));
		break;
	case 4:                                          /* FIN-WAIT-1 with data in flight */
		handshake_passive(f);
		if (f->conn) {
			tcp_send(f->conn, msg, sizeof(msg));
			tcp_shutdown(f->conn, TCP_SHUT_WR);
		}
		break;
	case 5:                                          /* CLOSE-WAIT */
		handshake_passive(f);
		if (f->conn)
			peer_seg(f, TH_FIN | TH_ACK, peer_seq(f), peer_ack(f), 65535, NULL, 0, 0, f->rport);
		break;
	case 6:                                          /* TIME-WAIT (orphaned) */
		handshake_passive(f);
		if (f->conn) {
			tcp_shutdown(f->conn, TCP_SHUT_WR);
			tcp_flush(f->ts, f->now);
			peer_seg(f, TH_FIN | TH_ACK, peer_seq(f), peer_ack(f), 65535, NULL, 0, 0, f->rport);
		}
		break;
	case 7:                                          /* ESTABLISHED, out-of-order data held */
		handshake_passive(f);
		if (f->conn) {
			tcp_send(f->conn, msg, 2000);
			peer_seg(f, TH_ACK, peer_seq(f) + 500, peer_ack(f), 65535, NULL, 0, 300, f->rport);
		}
		break;
	}
	tcp_flush(f->ts, f->now);
}

static void check(struct fz *f)
{
	int line = tcp_check_invariants(f->ts);
	if (line) {
		fprintf(stderr, "invariant broken: tcp_check.c:%d\n", line);
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz f;
	memset(&f, 0, sizeof(f));
	f.p = data;
	f.n = size;
	setup(&f, u8(&f));
	check(&f);
	static uint8_t buf[8192];
	int ops = 0;
	while (f.n && ops++ < 200) {
		uint8_t op = u8(&f);
		switch (op % 12) {
		case 0: {                                  /* raw bytes as a segment */
			size_t len = u8(&f) | (size_t)(u8(&f) & 7) << 8;
			if (len > f.n)
				len = f.n;
			memcpy(buf, f.p, len);
			if (op & 0x80 && len >= 4) {           /* aimed at our connection */
				put16(buf, f.rport);
				put16(buf + 2, f.lport);
			}
			f.p += len;
			f.n -= len;
			deliver(&f, buf, len);
			break;
		}
		case 1:
		case 2:
		case 3: {                                  /* a segment relative to the connection */
			uint8_t flags = u8(&f);
			int16_t ds = (int16_t)u16(&f), da = (int16_t)u16(&f);
			uint16_t wnd = u16(&f);
			uint8_t olen = u8(&f) % 44;
			uint8_t opts[44];
			for (int i = 0; i < olen; i++)
				opts[i] = u8(&f);
			size_t plen = (size_t)u8(&f) * (op & 0x40 ? 16 : 1);
			uint32_t seq = peer_seq(&f) + (uint32_t)(op & 0x20 ? ds * 64 : ds);
			uint32_t ack = peer_ack(&f) + (uint32_t)da;
			peer_seg(&f, flags, seq, ack, wnd, opts, olen, plen, f.rport);
			break;
		}
		case 4:                                    /* time passes */
			f.now += (uint64_t)u8(&f) * (op & 0x80 ? 100000 : 1000) + 1;
			tcp_timers(f.ts, f.now);
			break;
		case 5:
			if (f.conn)
				tcp_send(f.conn, buf, u8(&f) * 16);
			break;
		case 6:
			if (f.conn) {
				if (op & 0x80) {
					const uint8_t *p1, *p2;
					size_t l1, l2;
					size_t n = tcp_recv_peek(f.conn, &p1, &l1, &p2, &l2);
					tcp_recv_consume(f.conn, n / 2 + 1);
				} else {
					tcp_recv(f.conn, buf, u8(&f) * 32);
				}
			}
			break;
		case 7:                                    /* a flush, or one before the app runs */
			if (op & 0x80)
				tcp_flush_hold_acks(f.ts, f.now);
			else
				tcp_flush(f.ts, f.now);
			break;
		case 8:                                    /* the application lets go */
			if (f.conn) {
				switch (u8(&f) % 4) {
				case 0: tcp_shutdown(f.conn, TCP_SHUT_WR); break;
				case 1: tcp_shutdown(f.conn, TCP_SHUT_RD); break;
				case 2: tcp_close(f.conn); f.conn = NULL; break;
				case 3: tcp_abort(f.conn); f.conn = NULL; break;
				}
			}
			break;
		case 9:
			f.fail = u8(&f) % 8;
			break;
		case 10:
			if (f.conn) {
				int o = 1 + u8(&f) % 9;
				tcp_setopt(f.conn, o, u8(&f) % 4);
			}
			break;
		case 11:                                   /* a new connection, or accept one */
			if (!f.conn) {
				int err;
				f.conn = tcp_accept(f.lst, &err);
				if (!f.conn && (op & 0x80)) {
					f.rport++;
					handshake_passive(&f);
				}
			} else if (op & 0x80) {
				f.rport++;
				peer_seg(&f, TH_SYN, u32(&f), 0, 65535, syn_opts, sizeof(syn_opts), 0, f.rport);
			}
			break;
		}
		check(&f);
		if (f.conn)
			(void)tcp_events(f.conn);
	}
	f.now += 400ull * 1000000;                      /* let every timer run out */
	tcp_timers(f.ts, f.now);
	check(&f);
	if (f.conn)
		tcp_close(f.conn);
	tcp_close(f.lst);
	tcp_stack_free(f.ts);
	return 0;
}
