/* testing.h: a stack over an in-memory device (dev/memdev.h), for unit tests without root or
 * network. Frames injected are received on the next us_poll; frames the stack sends are captured. */
#pragma once
#include <stdint.h>
#include "../api.h"
#include "../dev/memdev.h"

/* d needs addrs, tuples, mac, mtu, nqueues (no fds); ctl_fd may be a socketpair end or -1. */
struct us_stack *us_test_stack_open(const struct us_desc *d, uint32_t nframes, int *err);
/* Copy a frame into the device's receive queue q. 0, -ENOBUFS (no free buffer), -EMSGSIZE. */
int us_test_inject(struct us_stack *st, int q, const void *frame, uint32_t len);
/* Take the oldest sent frame: its length (copied up to len), or -EAGAIN when none. */
int us_test_capture(struct us_stack *st, void *buf, uint32_t len);
/* Free buffers of the in-memory device (leak checks). */
int us_test_free_frames(struct us_stack *st);
/* Join two in-memory stacks by a wire: frames either one sends are received by the other (on
 * queue 0, copied; up to depth frames in flight each way, more are dropped and counted), and a
 * sleeping receiver is woken. Both stacks must be from us_test_stack_open and unlinked. */
int us_test_link(struct us_stack *a, struct us_stack *b, uint32_t depth);
/* Frames st put on its wire, and those dropped because the wire was full. */
int us_test_link_stats(struct us_stack *st, uint64_t *frames_out, uint64_t *drops_out);
