/* xsk_tx_tune.h: transmit settings of a copy-mode AF_XDP socket, shared by the stack's devices
 * (dev/xsk.c) and the benchmarks' raw loops (tools/xsk.h), so that both send the same way.
 *
 * In copy mode every TX descriptor becomes an skb charged to the socket's send buffer; the
 * default (net.core.wmem_default, 208 KB) holds ~90 MTU frames, so a ring of thousands is
 * throttled by EAGAIN long before it is full. And each sendto() kick sends at most
 * max_tx_budget frames (32 until XDP_MAX_TX_SKB_BUDGET, kernel 6.17). So: a send buffer for the
 * whole ring (SO_SNDBUFFORCE, which needs CAP_NET_ADMIN: the launcher creates the sockets;
 * SO_SNDBUF, capped by wmem_max, otherwise) and a budget of the whole ring per kick. Each setting
 * is best effort; the result says which took. */
#pragma once
#include <sys/socket.h>

#ifndef SOL_XDP
#define SOL_XDP 283
#endif
#ifndef XDP_MAX_TX_SKB_BUDGET
#define XDP_MAX_TX_SKB_BUDGET 9          /* include/uapi/linux/if_xdp.h, 6.17 and later */
#endif

#define XSK_TX_TUNED_SNDBUF  1           /* the send buffer holds the whole TX ring */
#define XSK_TX_TUNED_BUDGET  2           /* a kick may send the whole TX ring */

/* skb overhead per frame in copy mode, beyond the frame itself (sk_buff, shared info, rounding) */
#define XSK_TX_SKB_OVERHEAD 1024

static inline int xsk_tx_tune(int fd, unsigned ring_size, unsigned frame_size)
{
	int done = 0;
	int sndbuf = (int)(ring_size * (frame_size + XSK_TX_SKB_OVERHEAD));
	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof(sndbuf)) == 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)) == 0) {
		int got = 0;
		socklen_t len = sizeof(got);
		/* the kernel doubles what it is given; SO_SNDBUF alone may have been capped */
		if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &got, &len) == 0 && got / 2 >= sndbuf)
			done |= XSK_TX_TUNED_SNDBUF;
	}
	unsigned budget = ring_size;
	if (setsockopt(fd, SOL_XDP, XDP_MAX_TX_SKB_BUDGET, &budget, sizeof(budget)) == 0)
		done |= XSK_TX_TUNED_BUDGET;
	return done;
}
