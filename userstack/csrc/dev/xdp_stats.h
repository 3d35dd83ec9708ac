/* xdp_stats.h: the counters of one AF_XDP queue (us_xdev_stats in xsk.h, us_stack_xdp_stats in
 * ../api.h). */
#pragma once
#include <stdint.h>

/* XDP_STATISTICS of one queue's socket (getsockopt), plus ring state. */
struct us_xdp_stats {
	uint64_t rx_dropped, rx_invalid_descs, tx_invalid_descs, rx_ring_full;
	uint64_t rx_fill_ring_empty_descs, tx_ring_empty_descs;
	uint64_t rx_frames;        /* frames the stack took from this queue's RX ring */
	uint32_t queue_id, fill_free, tx_free_frames, pad;
};
