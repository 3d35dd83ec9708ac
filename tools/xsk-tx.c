/* xsk-tx: a raw AF_XDP transmit loop, the ceiling for a stack's TX on the same device.
 *
 *   xsk-tx --dev IF [--queue Q] --src-mac MAC --dst-mac MAC --src A.B.C.D:PORT --dst A.B.C.D:PORT
 *          [--frame BYTES] [--duration S] [--tune 0|1]
 *
 * One socket (libxdp's xsk API, XDP_COPY, no XDP program loaded: TX only) on queue Q of IF. Every
 * frame is the same IPv4/UDP frame of --frame bytes (default 1514: an MTU packet), built once in
 * every UMEM frame. The loop reserves TX descriptors, submits them, kicks with sendto(MSG_DONTWAIT)
 * (EAGAIN/EBUSY/ENOBUFS: the kernel has not taken the ring yet, kick again) and reaps completions,
 * until --duration (default 5 s) has passed. --tune 1 (the default) gives the socket the send
 * buffer and per-kick budget a stack's sockets get (userstack/csrc/dev/xsk_tx_tune.h); --tune 0
 * leaves the kernel's defaults. Prints one JSON line: frames (completed), seconds, frames_per_s,
 * gbit_per_s (whole frames), frame_bytes, kicks, kicks_again, tx_tuned (XSK_TX_TUNED_* bits).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_xdp.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <net/if.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "xsk.h"

struct opts {
	const char *dev;
	unsigned queue, frame_len, tune;
	double duration;
	uint8_t src_mac[6], dst_mac[6];
	struct in_addr src, dst;
	uint16_t sport, dport;
};

static int parse_mac(const char *s, uint8_t *mac)
{
	return sscanf(s, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &mac[0], &mac[1], &mac[2], &mac[3], &mac[4],
		      &mac[5]) == 6 ? 0 : -1;
}

static int parse_endpoint(const char *s, struct in_addr *a, uint16_t *port)
{
	char host[64];
	unsigned p;
	if (sscanf(s, "%63[^:]:%u", host, &p) != 2 || p > 65535 || inet_pton(AF_INET, host, a) != 1)
		return -1;
	*port = (uint16_t)p;
	return 0;
}

static uint16_t ip_csum(const void *p, size_t len)
{
	const uint16_t *w = p;
	uint32_t sum = 0;
	for (size_t i = 0; i < len / 2; i++)
		sum += w[i];
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

/* An Ethernet/IPv4/UDP frame of o->frame_len bytes (UDP checksum 0: none, allowed on IPv4). */
static void build_frame(uint8_t *f, const struct opts *o)
{
	struct ethhdr *eth = (struct ethhdr *)f;
	struct iphdr *ip = (struct iphdr *)(eth + 1);
	struct udphdr *udp = (struct udphdr *)(ip + 1);
	size_t ip_len = o->frame_len - sizeof(*eth);
	memset(f, 0, o->frame_len);
	memcpy(eth->h_dest, o->dst_mac, 6);
	memcpy(eth->h_source, o->src_mac, 6);
	eth->h_proto = htons(ETH_P_IP);
	ip->version = 4;
	ip->ihl = 5;
	ip->tot_len = htons((uint16_t)ip_len);
	ip->frag_off = htons(0x4000);           /* DF */
	ip->ttl = 64;
	ip->protocol = IPPROTO_UDP;
	ip->saddr = o->src.s_addr;
	ip->daddr = o->dst.s_addr;
	ip->check = ip_csum(ip, sizeof(*ip));
	udp->source = htons(o->sport);
	udp->dest = htons(o->dport);
	udp->len = htons((uint16_t)(ip_len - sizeof(*ip)));
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	int have = 0;
	*o = (struct opts){ .frame_len = 1514, .duration = 5, .tune = 1 };
	for (int i = 1; i + 1 < argc; i += 2) {
		const char *a = argv[i], *v = argv[i + 1];
		if (!strcmp(a, "--dev"))
			o->dev = v, have |= 1;
		else if (!strcmp(a, "--queue"))
			o->queue = (unsigned)atoi(v);
		else if (!strcmp(a, "--src-mac") && !parse_mac(v, o->src_mac))
			have |= 2;
		else if (!strcmp(a, "--dst-mac") && !parse_mac(v, o->dst_mac))
			have |= 4;
		else if (!strcmp(a, "--src") && !parse_endpoint(v, &o->src, &o->sport))
			have |= 8;
		else if (!strcmp(a, "--dst") && !parse_endpoint(v, &o->dst, &o->dport))
			have |= 16;
		else if (!strcmp(a, "--frame"))
			o->frame_len = (unsigned)atoi(v);
		else if (!strcmp(a, "--duration"))
			o->duration = atof(v);
		else if (!strcmp(a, "--tune") && (!strcmp(v, "0") || !strcmp(v, "1")))
			o->tune = v[0] == '1';
		else
			return -1;
	}
	if (argc % 2 == 0 || have != 31 || o->duration <= 0 || o->duration > 600 ||
	    o->frame_len < sizeof(struct ethhdr) + sizeof(struct iphdr) + sizeof(struct udphdr) ||
	    o->frame_len > FRAME_SIZE)
		return -1;
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o;
	if (parse_args(argc, argv, &o) < 0) {
		fprintf(stderr, "usage: xsk-tx --dev IF [--queue Q] --src-mac MAC --dst-mac MAC "
			"--src ADDR:PORT --dst ADDR:PORT [--frame BYTES] [--duration S] [--tune 0|1]\n");
		return 2;
	}
	struct xsk_ring_prod fill, tx;
	struct xsk_ring_cons comp;
	struct xsk_socket *xsk;
	struct xsk_socket_config scfg = { .tx_size = RING_SIZE, .bind_flags = XDP_COPY,
					  .libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD };
	void *area;
	struct xsk_umem *umem = umem_open("xsk-tx", &area, &fill, &comp);
	if (!umem)
		return 1;
	for (unsigned i = 0; i < NUM_FRAMES; i++)
		build_frame((uint8_t *)area + (size_t)i * FRAME_SIZE, &o);
	int r = xsk_socket__create(&xsk, o.dev, o.queue, umem, NULL, &tx, &scfg);
	if (r) {
		fprintf(stderr, "xsk-tx: socket on %s queue %u: %s\n", o.dev, o.queue, strerror(-r));
		return 1;
	}
	int fd = xsk_socket__fd(xsk);
	int tuned = o.tune ? xsk_tx_tune(fd, RING_SIZE, FRAME_SIZE) : 0;

	uint64_t frames = 0, kicks = 0, again = 0, next = 0;
	uint32_t outstanding = 0;
	double t0 = now_s(), end = t0 + o.duration, t = t0;
	for (unsigned iter = 0; t < end; iter++) {
		uint32_t idx, n = RING_SIZE - outstanding < BATCH ? RING_SIZE - outstanding : BATCH;
		if (n && (n = xsk_ring_prod__reserve(&tx, n, &idx))) {
			for (uint32_t i = 0; i < n; i++) {
				struct xdp_desc *d = xsk_ring_prod__tx_desc(&tx, idx + i);
				d->addr = (next++ % NUM_FRAMES) * FRAME_SIZE;
				d->len = o.frame_len;
			}
			xsk_ring_prod__submit(&tx, n);
			outstanding += n;
		}
		kicks++;
		if (sendto(fd, NULL, 0, MSG_DONTWAIT, NULL, 0) < 0) {
			if (errno != EAGAIN && errno != EBUSY && errno != ENOBUFS) {
				perror("xsk-tx: sendto");
				return 1;
			}
			again++;
		}
		uint32_t done = xsk_ring_cons__peek(&comp, RING_SIZE, &idx);
		if (done) {
			xsk_ring_cons__release(&comp, done);
			outstanding -= done;
			frames += done;
		}
		if (!(iter & 15))
			t = now_s();
	}
	double secs = now_s() - t0;
	printf("{\"frames\": %llu, \"seconds\": %.6f, \"frames_per_s\": %.1f, \"gbit_per_s\": %.4f, "
	       "\"frame_bytes\": %u, \"kicks\": %llu, \"kicks_again\": %llu, \"tx_tuned\": %d}\n",
	       (unsigned long long)frames, secs, frames / secs, frames * o.frame_len * 8 / secs / 1e9,
	       o.frame_len, (unsigned long long)kicks, (unsigned long long)again, tuned);
	xsk_socket__delete(xsk);
	xsk_umem__delete(umem);
	munmap(area, AREA_LEN);
	return 0;
}
