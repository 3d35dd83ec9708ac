/* cc.h: congestion control behind one small interface (smoltcp's congestion/ in C).
 *
 * The TCP owns struct cc_state and calls the hooks; an algorithm changes cwnd and ssthresh and
 * keeps its private state in the union. The TCP itself does fast recovery (RFC 6582 / RFC 6675:
 * window inflation, pipe) around these hooks, so an algorithm only decides how the window grows
 * and how much it shrinks. All windows are in bytes.
 *
 *   init            connection start: cwnd = initial window, ssthresh = "infinite"
 *   on_ack          new data cumulatively acknowledged outside recovery, while cwnd-limited
 *   on_loss         entering fast recovery (3 dupACKs or SACK loss): set ssthresh
 *   on_recovery_end the ACK that ends fast recovery; cwnd = ssthresh by default
 *   on_rto          retransmission timeout: set ssthresh, cwnd = one segment (RFC 5681 3.1)
 */
#pragma once
#include <stdint.h>

struct cc_state {
	uint32_t cwnd, ssthresh, mss;
	union {
		struct { uint32_t acked; } reno;
		struct {
			double w_max;              /* segments */
			double frac;               /* growth below one byte, carried */
			double k;                  /* seconds */
			double w_est;              /* Reno-friendly estimate, segments */
			double cwnd_prior;         /* cwnd (segments) at the last congestion event */
			uint64_t epoch;            /* us; 0 = no epoch (restart at the next ACK) */
			uint32_t acked;            /* bytes acked not yet turned into growth */
		} cubic;
	} u;
};

struct cc_ops {
	const char *name;
	void (*init)(struct cc_state *cc, uint32_t mss, uint32_t init_cwnd);
	void (*on_ack)(struct cc_state *cc, uint32_t acked, uint32_t srtt_us, uint64_t now_us);
	void (*on_loss)(struct cc_state *cc, uint32_t flight, uint64_t now_us);
	void (*on_recovery_end)(struct cc_state *cc, uint64_t now_us);
	void (*on_rto)(struct cc_state *cc, uint32_t flight, uint64_t now_us);
};

extern const struct cc_ops cc_newreno;
extern const struct cc_ops cc_cubic;
const struct cc_ops *cc_by_id(int id);     /* enum tcp_cc_algo; NULL if unknown */

/* Slow start by bytes acknowledged (RFC 3465 without the L limit, like Linux: a receiver that
 * ACKs a whole batch at once must not slow us down). Returns bytes left over above ssthresh. */
uint32_t cc_slow_start(struct cc_state *cc, uint32_t acked);
