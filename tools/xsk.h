/* What the raw AF_XDP loops (xsk-tx.c, xsk-rx.c) share: the UMEM and ring sizes, a clock, and
 * one UMEM over an anonymous mapping (libxdp's xsk API does the rest). */
#ifndef TOOLS_XSK_H
#define TOOLS_XSK_H

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <xdp/xsk.h>
#include "../userstack/csrc/dev/xsk_tx_tune.h"

#define NUM_FRAMES 4096
#define FRAME_SIZE XSK_UMEM__DEFAULT_FRAME_SIZE
#define RING_SIZE  2048
#define BATCH      64
#define AREA_LEN   ((size_t)NUM_FRAMES * FRAME_SIZE)

static inline double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A UMEM of NUM_FRAMES frames with RING_SIZE fill and completion rings; NULL (and a line on
 * stderr, prefixed by `who`) on failure. The area is *area, AREA_LEN bytes. */
static inline struct xsk_umem *umem_open(const char *who, void **area, struct xsk_ring_prod *fill,
					 struct xsk_ring_cons *comp)
{
	struct xsk_umem_config cfg = { .fill_size = RING_SIZE, .comp_size = RING_SIZE,
				       .frame_size = FRAME_SIZE };
	struct xsk_umem *umem;
	*area = mmap(NULL, AREA_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (*area == MAP_FAILED) {
		fprintf(stderr, "%s: mmap: %s\n", who, strerror(errno));
		return NULL;
	}
	int r = xsk_umem__create(&umem, *area, AREA_LEN, fill, comp, &cfg);
	if (r) {
		fprintf(stderr, "%s: umem: %s\n", who, strerror(-r));
		munmap(*area, AREA_LEN);
		return NULL;
	}
	return umem;
}

#endif
