/* xsk-rx: a spinning AF_XDP consumer, the receiving end of bench demux's live-frames case.
 *
 *   xsk-rx --dev IF [--queue Q] [--duration S] [--xsks-fd FD --slot N]
 *
 * One socket (libxdp's xsk API, XDP_COPY) on queue Q of IF. Without --xsks-map, libxdp loads its
 * default redirect program on IF (the baseline: every frame of queue Q into this socket). With
 * it, no program is loaded: the socket goes into slot N of the XSKMAP open on FD (inherited: `ip
 * netns exec` mounts a fresh /sys, so a pin path would not resolve), where xdpstack's programs
 * redirect to it. The loop never sleeps: it peeks the RX ring, hands every
 * frame straight back to the fill ring, and counts. It prints "ready" once the socket is bound (and
 * in the map), then, after --duration (default 5 s), one JSON line: frames, seconds,
 * frames_per_s, and the kernel's XDP_STATISTICS (rx_dropped, rx_ring_full, fill_ring_empty).
 */
#define _GNU_SOURCE
#include <bpf/bpf.h>
#include <linux/if_xdp.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "xsk.h"

struct opts {
	const char *dev;
	unsigned queue, slot;
	int map;
	double duration;
};

static int parse_args(int argc, char **argv, struct opts *o)
{
	int slot = 0;
	*o = (struct opts){ .duration = 5, .map = -1 };
	for (int i = 1; i + 1 < argc; i += 2) {
		const char *a = argv[i], *v = argv[i + 1];
		if (!strcmp(a, "--dev"))
			o->dev = v;
		else if (!strcmp(a, "--queue"))
			o->queue = (unsigned)atoi(v);
		else if (!strcmp(a, "--duration"))
			o->duration = atof(v);
		else if (!strcmp(a, "--xsks-fd"))
			o->map = atoi(v);
		else if (!strcmp(a, "--slot"))
			o->slot = (unsigned)atoi(v), slot = 1;
		else
			return -1;
	}
	if (argc % 2 == 0 || !o->dev || o->duration <= 0 || o->duration > 600 || (o->map >= 0) != slot)
		return -1;
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o;
	if (parse_args(argc, argv, &o) < 0) {
		fprintf(stderr, "usage: xsk-rx --dev IF [--queue Q] [--duration S] [--xsks-fd FD --slot N]\n");
		return 2;
	}
	struct xsk_ring_prod fill;
	struct xsk_ring_cons comp, rx;
	struct xsk_socket *xsk;
	struct xsk_socket_config scfg = { .rx_size = RING_SIZE, .bind_flags = XDP_COPY,
					  .libxdp_flags = o.map >= 0 ? XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD : 0 };
	void *area;
	struct xsk_umem *umem = umem_open("xsk-rx", &area, &fill, &comp);
	if (!umem)
		return 1;
	int r = xsk_socket__create(&xsk, o.dev, o.queue, umem, &rx, NULL, &scfg);
	if (r) {
		fprintf(stderr, "xsk-rx: socket on %s queue %u: %s\n", o.dev, o.queue, strerror(-r));
		return 1;
	}
	int fd = xsk_socket__fd(xsk);
	if (o.map >= 0 && bpf_map_update_elem(o.map, &o.slot, &fd, 0)) {
		fprintf(stderr, "xsk-rx: slot %u of the XSKMAP on fd %d: %s\n", o.slot, o.map, strerror(errno));
		return 1;
	}
	uint32_t idx;                                /* RING_SIZE frames into the fill ring, once */
	uint32_t n = xsk_ring_prod__reserve(&fill, RING_SIZE, &idx);
	for (uint32_t i = 0; i < n; i++)
		*xsk_ring_prod__fill_addr(&fill, idx + i) = (uint64_t)i * FRAME_SIZE;
	xsk_ring_prod__submit(&fill, n);
	printf("ready\n");
	fflush(stdout);

	uint64_t frames = 0;
	double t0 = now_s(), end = t0 + o.duration, t = t0;
	for (unsigned iter = 0; t < end; iter++) {
		uint32_t got = xsk_ring_cons__peek(&rx, BATCH, &idx), fidx;
		if (got) {
			/* the fill ring has room for every frame we hold: give the same buffers back */
			while (xsk_ring_prod__reserve(&fill, got, &fidx) != got)
				;
			for (uint32_t i = 0; i < got; i++)
				*xsk_ring_prod__fill_addr(&fill, fidx + i) =
					xsk_umem__extract_addr(xsk_ring_cons__rx_desc(&rx, idx + i)->addr);
			xsk_ring_prod__submit(&fill, got);
			xsk_ring_cons__release(&rx, got);
			frames += got;
		}
		if (!(iter & 255))
			t = now_s();
	}
	double secs = now_s() - t0;
	struct xdp_statistics st = { 0 };
	socklen_t len = sizeof(st);
	getsockopt(fd, SOL_XDP, XDP_STATISTICS, &st, &len);
	printf("{\"frames\": %llu, \"seconds\": %.6f, \"frames_per_s\": %.1f, \"rx_dropped\": %llu, "
	       "\"rx_ring_full\": %llu, \"fill_ring_empty\": %llu}\n",
	       (unsigned long long)frames, secs, frames / secs, (unsigned long long)st.rx_dropped,
	       (unsigned long long)st.rx_ring_full, (unsigned long long)st.rx_fill_ring_empty_descs);
	xsk_socket__delete(xsk);
	xsk_umem__delete(umem);
	munmap(area, AREA_LEN);
	return 0;
}
