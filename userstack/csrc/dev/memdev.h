/* memdev.h: an in-memory netdev, for unit tests without root or network (stack/testing.h puts a
 * stack over it). Frames injected are received on the next rx_burst of their queue; frames
 * submitted are captured, or go onto a wire to another memdev. The caller serializes every call
 * on one device with the calls of the stack over it (the stack's lock). */
#pragma once
#include <stdint.h>
#include "netdev.h"

/* nqueues 1..4; nframes buffers of frame_room bytes each. NULL when out of memory or invalid. */
struct us_netdev *us_memdev_create(int nqueues, uint32_t nframes, uint32_t frame_room);
/* Copy a frame into receive queue q. 0, -EINVAL (q), -ENOBUFS (no free buffer), -EMSGSIZE. */
int us_memdev_inject(struct us_netdev *d, int q, const void *frame, uint32_t len);
/* Take the oldest sent frame: its length (copied up to len), or -EAGAIN when none. */
int us_memdev_capture(struct us_netdev *d, void *buf, uint32_t len);
/* Free buffers (leak checks). */
int us_memdev_free_frames(struct us_netdev *d);

/* A wire between two memdevs, made in two steps so that each side is attached under its own
 * stack's lock: us_memdev_link_new (no lock: checks both are unlinked memdevs, makes both
 * directions, each waking the receiver's eventfd), then us_memdev_link_attach for side 0 (a)
 * and side 1 (b). Up to depth frames in flight each way; more are dropped and counted. */
struct us_memdev_link {
	void *ab, *ba;
};
int us_memdev_link_new(struct us_netdev *a, int a_wakefd, struct us_netdev *b, int b_wakefd,
		       uint32_t depth, struct us_memdev_link *l);
void us_memdev_link_attach(struct us_netdev *d, const struct us_memdev_link *l, int side);
/* Frames d put on its wire, and those dropped because the wire was full. -EINVAL: no wire. */
int us_memdev_link_stats(struct us_netdev *d, uint64_t *frames_out, uint64_t *drops_out);
