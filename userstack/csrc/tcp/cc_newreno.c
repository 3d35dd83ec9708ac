/* cc_newreno.c: Reno window growth and reduction (RFC 5681); recovery itself is RFC 6582 in the
 * TCP (tcp_input.c). Congestion avoidance uses appropriate byte counting (RFC 3465 2.1): cwnd
 * grows by one MSS per cwnd bytes acknowledged. */
#include <stddef.h>

#include "cc.h"
#include "tcp.h"

uint32_t cc_slow_start(struct cc_state *cc, uint32_t acked)
{
	uint32_t room = cc->ssthresh > cc->cwnd ? cc->ssthresh - cc->cwnd : 0;
	uint32_t grow = acked < room ? acked : room;
	cc->cwnd += grow;
	return acked - grow;
}

static void reno_init(struct cc_state *cc, uint32_t mss, uint32_t init_cwnd)
{
	cc->mss = mss;
	cc->cwnd = init_cwnd;
	cc->ssthresh = UINT32_MAX / 2;
	cc->u.reno.acked = 0;
}

static void reno_on_ack(struct cc_state *cc, uint32_t acked, uint32_t srtt_us, uint64_t now_us)
{
	(void)srtt_us; (void)now_us;
	if (cc->cwnd < cc->ssthresh) {
		acked = cc_slow_start(cc, acked);
		if (!acked)
			return;
	}
	/* RFC 5681 3.1 eq. 3 by bytes: +MSS per cwnd acknowledged. */
	cc->u.reno.acked += acked;
	while (cc->u.reno.acked >= cc->cwnd) {
		cc->u.reno.acked -= cc->cwnd;
		cc->cwnd += cc->mss;
	}
}

/* RFC 5681 eq. 4: ssthresh = max(FlightSize / 2, 2 * SMSS). */
static void reno_on_loss(struct cc_state *cc, uint32_t flight, uint64_t now_us)
{
	(void)now_us;
	uint32_t half = flight / 2;
	cc->ssthresh = half > 2 * cc->mss ? half : 2 * cc->mss;
	cc->u.reno.acked = 0;
}

static void reno_on_recovery_end(struct cc_state *cc, uint64_t now_us)
{
	(void)now_us;
	cc->cwnd = cc->ssthresh;
}

static void reno_on_rto(struct cc_state *cc, uint32_t flight, uint64_t now_us)
{
	reno_on_loss(cc, flight, now_us);
	cc->cwnd = cc->mss;
}

const struct cc_ops cc_newreno = {
	.name = "newreno",
	.init = reno_init,
	.on_ack = reno_on_ack,
	.on_loss = reno_on_loss,
	.on_recovery_end = reno_on_recovery_end,
	.on_rto = reno_on_rto,
};
