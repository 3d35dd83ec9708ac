/* cc_cubic.c: CUBIC (RFC 9438). Windows in segments as doubles, as the RFC writes them.
 *
 *   W_cubic(t) = C (t - K)^3 + W_max              (eq. 1), C = 0.4
 *   K = cbrt((W_max - cwnd_epoch) / C)             (eq. 2)
 *   target = clamp(W_cubic(t + RTT), cwnd, 1.5 cwnd)  (4.2)
 *   W_est += alpha * acked / cwnd, alpha = 3(1-b)/(1+b) until W_est >= cwnd_prior, then 1 (4.3)
 *   on congestion: ssthresh = cwnd * b, b = 0.7; fast convergence (4.7):
 *                  W_max = cwnd < W_max ? cwnd (1 + b) / 2 : cwnd
 * Slow start is Reno's (HyStart++ is not implemented).
 */
#include "cc.h"

#define CUBIC_C    0.4
#define CUBIC_BETA 0.7

static double cube_root(double x)
{
	if (x <= 0)
		return 0;
	double r = x > 1 ? x / 3 : 1;           /* Newton's method; 40 steps are plenty */
	for (int i = 0; i < 40; i++) {
		double n = r - (r * r * r - x) / (3 * r * r);
		if (n == r)
			break;
		r = n;
	}
	return r;
}

static void cubic_init(struct cc_state *cc, uint32_t mss, uint32_t init_cwnd)
{
	cc->mss = mss;
	cc->cwnd = init_cwnd;
	cc->ssthresh = UINT32_MAX / 2;
	cc->u.cubic.w_max = 0;
	cc->u.cubic.frac = 0;
	cc->u.cubic.k = 0;
	cc->u.cubic.w_est = 0;
	cc->u.cubic.cwnd_prior = 0;
	cc->u.cubic.epoch = 0;
	cc->u.cubic.acked = 0;
}

static void epoch_start(struct cc_state *cc, uint64_t now)
{
	double w = (double)cc->cwnd / cc->mss;
	cc->u.cubic.epoch = now ? now : 1;
	cc->u.cubic.acked = 0;
	cc->u.cubic.frac = 0;
	if (cc->u.cubic.w_max <= w) {
		/* No congestion seen yet above this window: start at the plateau. */
		cc->u.cubic.w_max = w;
		cc->u.cubic.k = 0;
	} else {
		cc->u.cubic.k = cube_root((cc->u.cubic.w_max - w) / CUBIC_C);
	}
	cc->u.cubic.w_est = w;
}

static void cubic_on_ack(struct cc_state *cc, uint32_t acked, uint32_t srtt_us, uint64_t now)
{
	if (cc->cwnd < cc->ssthresh) {
		acked = cc_slow_start(cc, acked);
		if (!acked)
			return;
	}
	if (!cc->u.cubic.epoch)
		epoch_start(cc, now);
	double mss = cc->mss;
	double cwnd = cc->cwnd / mss;
	double segs = acked / mss;
	double t = (double)(now - cc->u.cubic.epoch) / 1e6;
	double rtt = srtt_us / 1e6;
	double k = cc->u.cubic.k, wmax = cc->u.cubic.w_max;

	/* Reno-friendly estimate (4.3). */
	double alpha = cc->u.cubic.w_est >= cc->u.cubic.cwnd_prior
		? 1.0 : 3.0 * (1 - CUBIC_BETA) / (1 + CUBIC_BETA);
	cc->u.cubic.w_est += alpha * segs / cwnd;

	double d = t - k;
	double w_cubic_t = CUBIC_C * d * d * d + wmax;
	double next;
	if (w_cubic_t < cc->u.cubic.w_est) {
		next = cc->u.cubic.w_est;             /* Reno-friendly region */
	} else {
		double dt = t + rtt - k;
		double target = CUBIC_C * dt * dt * dt + wmax;
		if (target < cwnd)
			target = cwnd;
		if (target > 1.5 * cwnd)
			target = 1.5 * cwnd;
		next = cwnd + (target - cwnd) / cwnd * segs;   /* concave / convex (4.4, 4.5) */
	}
	if (next <= cwnd)
		return;
	/* Carry the fraction of a byte so that slow per-ACK growth is not lost to rounding. */
	double bytes = (next - cwnd) * mss + cc->u.cubic.frac;
	uint32_t add = (uint32_t)bytes;
	cc->u.cubic.frac = bytes - add;
	cc->cwnd += add;
}

static void cubic_on_loss(struct cc_state *cc, uint32_t flight, uint64_t now)
{
	(void)flight; (void)now;
	double w = (double)cc->cwnd / cc->mss;
	/* Fast convergence (4.7). */
	if (w < cc->u.cubic.w_max)
		cc->u.cubic.w_max = w * (1 + CUBIC_BETA) / 2;
	else
		cc->u.cubic.w_max = w;
	cc->u.cubic.cwnd_prior = w;
	double ss = cc->cwnd * CUBIC_BETA;          /* 4.6 */
	cc->ssthresh = ss > 2.0 * cc->mss ? (uint32_t)ss : 2 * cc->mss;
	cc->u.cubic.epoch = 0;
}

static void cubic_on_recovery_end(struct cc_state *cc, uint64_t now)
{
	(void)now;
	cc->cwnd = cc->ssthresh;
	cc->u.cubic.epoch = 0;
}

/* 4.8: Reno's reaction to a timeout, with ssthresh from beta_cubic. */
static void cubic_on_rto(struct cc_state *cc, uint32_t flight, uint64_t now)
{
	cubic_on_loss(cc, flight, now);
	cc->cwnd = cc->mss;
}

const struct cc_ops cc_cubic = {
	.name = "cubic",
	.init = cubic_init,
	.on_ack = cubic_on_ack,
	.on_loss = cubic_on_loss,
	.on_recovery_end = cubic_on_recovery_end,
	.on_rto = cubic_on_rto,
};
