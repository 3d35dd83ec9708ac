/* fault.h: a fault-injecting netdev middleware (drop, duplicate, reorder, corrupt), seeded and
 * reproducible, between a stack and its device, on the receive and/or the transmit side.
 * Rates are in parts per million of frames. Same seed + same frames in = same faults out. */
#pragma once
#include <stdint.h>
#include "netdev.h"

#define US_FAULT_RX 0x1
#define US_FAULT_TX 0x2

struct us_fault_config {
	uint64_t seed;
	uint32_t drop_ppm, dup_ppm, reorder_ppm, corrupt_ppm;
	uint32_t dirs;              /* US_FAULT_RX | US_FAULT_TX */
	uint32_t pad;
};

struct us_fault_stats {
	uint64_t dropped, duplicated, reordered, corrupted;
};

/* The middleware over lower (which it owns from then on: destroyed with it). NULL: -ENOMEM. */
struct us_netdev *us_fault_wrap(struct us_netdev *lower, const struct us_fault_config *c);
/* New settings for a middleware from us_fault_wrap, the same stream restarted from c->seed.
 * 0, or -ENOENT when d is not one. */
int us_fault_configure(struct us_netdev *d, const struct us_fault_config *c);
/* Its counters: 0, or -ENOENT when d is not one. */
int us_fault_get_stats(struct us_netdev *d, struct us_fault_stats *out);
/* (us_stack_set_faults in stack/faults.h puts it under a stack.) */
