/* fault.h: a fault-injecting netdev middleware (drop, duplicate, reorder, corrupt), seeded and
 * reproducible, between a stack and its device, on the receive and/or the transmit side.
 * Rates are in parts per million of frames. Same seed + same frames in = same faults out. */
#pragma once
#include <stdint.h>
#include "netdev.h"

struct us_stack;

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

/* Put the middleware under a stack (before traffic flows). 0 or -errno. */
int us_stack_set_faults(struct us_stack *st, const struct us_fault_config *c);
int us_stack_fault_stats(struct us_stack *st, struct us_fault_stats *out);
