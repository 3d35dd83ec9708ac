/* netdev.h: the device under a stack. The stack runs over AF_XDP rings (xsk.c), over an
 * in-memory device in unit tests (memdev.c), or over a middleware that wraps another device
 * (fault injection, capture) and forwards these calls.
 *
 * Frames are buffers the device owns: RX frames from rx_burst until rx_release; TX frames from
 * tx_alloc until tx_submit (then the device sends and recycles them) or tx_free. */
#pragma once
#include <stdint.h>

struct us_frame {
	uint8_t *data;
	uint32_t len;
	uint16_t queue;            /* device queue index (not the queue id) */
	uint16_t pad;
	uint64_t addr;             /* the device's handle for the buffer */
};

struct us_netdev;

struct us_netdev_ops {
	/* Up to max frames received on queue index q. */
	int (*rx_burst)(struct us_netdev *d, int q, struct us_frame *f, int max);
	/* Give back n frames from one rx_burst of queue q. */
	void (*rx_release)(struct us_netdev *d, int q, const struct us_frame *f, int n);
	/* A free TX buffer of d->frame_room bytes on queue q: 0, or -ENOBUFS. */
	int (*tx_alloc)(struct us_netdev *d, int q, struct us_frame *f);
	/* Queue a filled frame (f->len set) for sending; the device owns it again. */
	void (*tx_submit)(struct us_netdev *d, struct us_frame *f);
	/* Return an allocated frame unused. */
	void (*tx_free)(struct us_netdev *d, struct us_frame *f);
	/* Send what was submitted and recycle completed buffers. Returns frames not yet sent. */
	int (*flush)(struct us_netdev *d);
	/* About to sleep in epoll: arrange to be woken (need_wakeup). */
	void (*pre_sleep)(struct us_netdev *d);
	void (*destroy)(struct us_netdev *d);
};

struct us_netdev {
	const struct us_netdev_ops *ops;
	int nqueues;
	uint32_t frame_room;       /* bytes a TX frame holds */
	int nfds;
	int fds[64];               /* readable when a queue has frames (for the stack's epoll) */
};
