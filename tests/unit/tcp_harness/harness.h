/* harness.h: the test harness around userstack's TCP (unit tests and netsim). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tcp/tcp.h"
#include "tcp/tcp_int.h"
#include "base/timer.h"

struct th;
struct th *th_new(const struct tcp_config *cfg);
void th_free(struct th *h);
struct tcp_stack *th_stack(struct th *h);
int th_pending(struct th *h);
void th_set_emit_fail(struct th *h, int n);
void th_set_ephemeral(struct th *h, const struct us_endpoint *ep, int err);
int th_released(struct th *h);
void th_set_close_on_event(struct th *h, int on);
int th_check(struct th *h);
int th_sock_check(struct tcp_sock *s);
int th_pop(struct th *h, uint8_t *buf, size_t cap, struct us_addr *src, struct us_addr *dst);
int th_events(struct th *h, struct tcp_sock **socks, unsigned *evs, int max);
struct tw_wheel *th_wheel_new(uint64_t now);
void th_deadlines(struct tcp_sock *s, uint64_t out[6]);
double th_bench(int tx, uint64_t segs, int batch);

struct netsim_params {
	double loss, dup, reorder, corrupt;
	uint32_t delay_us;
	uint64_t bw_bytes_per_s;     /* 0: infinite */
	uint32_t queue_bytes;        /* drop-tail limit, 0: none */
	uint64_t seed;
	uint64_t bytes, bytes_back;
	int cc, sack, ts, ws, ipv6, close;
	int no_check;                /* skip the invariant checks (throughput measurement) */
	uint32_t sndbuf, rcvbuf, mtu;
	uint64_t time_limit_us;
};

struct netsim_result {
	int ok, stalled, invariant;
	int deadlock;                /* stalled with no packet in flight and no timer armed */
	uint64_t final_drop_run[2];  /* stalled: segments the link dropped in a row at the end, per receiver */
	int64_t mismatch_at;
	uint64_t sim_time_us, delivered, delivered_back, iterations;
	uint64_t segs, drops, dups, corrupts, reorders, queue_drops;
	uint64_t retransmits, timeouts, fast_retransmits;
	uint32_t final_cwnd, srtt_us;
	double wall_s;
};

int netsim_run(const struct netsim_params *p, struct netsim_result *r);
