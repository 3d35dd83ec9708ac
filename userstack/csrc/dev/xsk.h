/* xsk.h: AF_XDP sockets and their UMEM.
 *
 * Launcher side (privileged): us_xsk_create makes a UMEM on a memfd and one socket per RX queue
 * with libxdp (its program inhibited: the demux redirects), sharing the UMEM; each queue gets its
 * own fill and completion rings and its own slice of frames. It describes them in a us_desc
 * (../base/env.h). The set stays alive in the creating process until us_xsk_destroy.
 *
 * Stack side (unprivileged): us_xdev_open maps the memfd and the rings of the already-bound
 * sockets (XDP_MMAP_OFFSETS + mmap) into libxdp ring structs, and is the stack's netdev. */
#pragma once
#include <stdint.h>
#include "../base/env.h"
#include "netdev.h"

struct us_xdp_stats;

#define US_XSK_NEED_WAKEUP 0x1      /* bind with XDP_USE_NEED_WAKEUP (default in the Python API) */
#define US_XSK_COPY        0x2      /* force XDP_COPY */
#define US_XSK_ZEROCOPY    0x4      /* force XDP_ZEROCOPY */

struct us_xsk_set;

/* nqueues queue ids; frames_per_queue frames of frame_size bytes each (power of two, 2048 or
 * 4096); every ring ring_size entries (power of two). Fills d (umem, queues, ifname, ifindex,
 * owns_fds = 0) and leaves the rest of d as it was. NULL and *err = -errno on failure. */
struct us_xsk_set *us_xsk_create(const char *ifname, const uint32_t *queue_ids, int nqueues,
				 uint32_t frames_per_queue, uint32_t frame_size, uint32_t ring_size,
				 uint32_t flags, struct us_desc *d, int *err);
/* Close the sockets and the memfd (a stack still holding inherited copies keeps them alive). */
void us_xsk_destroy(struct us_xsk_set *set);
/* 1 if the socket fd is bound in zero-copy mode, 0 in copy mode (XDP_OPTIONS), or -errno. */
int us_xsk_fd_zerocopy(int fd);
/* Preferred busy polling on the socket fd (SO_PREFER_BUSY_POLL, SO_BUSY_POLL usecs,
 * SO_BUSY_POLL_BUDGET packets per poll); raising SO_BUSY_POLL needs CAP_NET_ADMIN. 0 or -errno. */
int us_xsk_fd_busy_poll(int fd, int usecs, int budget);
/* XDP_STATISTICS of one socket fd. 0 or -errno. */
int us_xsk_fd_stats(int fd, struct us_xdp_stats *out);

/* The netdev over the sockets in d. NULL and *err = -errno. */
struct us_netdev *us_xdev_open(const struct us_desc *d, int *err);
int us_xdev_stats(struct us_netdev *dev, int q, struct us_xdp_stats *out);
/* TX kicks made, and EAGAIN answers, since open. */
void us_xdev_kicks(struct us_netdev *dev, uint64_t *kicks, uint64_t *again);
