/* faults.h: the fault middleware (dev/fault.h) under a stack: XDPSTACK_FAULTS (opts.c) and
 * Stack.set_faults (userstack/stack.py). */
#pragma once
#include "../api.h"
#include "../dev/fault.h"

/* Put the middleware under a stack (before traffic flows), or give the one already there new
 * settings (same stream, restarted from the seed). 0 or -errno. */
int us_stack_set_faults(struct us_stack *st, const struct us_fault_config *c);
/* Its counters: 0, or -ENOENT when the stack runs without it. */
int us_stack_fault_stats(struct us_stack *st, struct us_fault_stats *out);
