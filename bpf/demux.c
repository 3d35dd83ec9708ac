/* demux.c: xdp_demux, the program on the NIC.
 *
 * Each received frame's local 3-tuple (protocol, destination address, destination port) is looked
 * up in claims, exactly and then with the wildcard address of its family (claims_by_port answers
 * without a hash lookup unless two claims share the (family, proto, port)). A claimed frame goes to
 * its stack: the AF_XDP socket for this RX queue (XS_TARGET_XSK) or the stack's virtual port
 * (XS_TARGET_PORT, see port.c). Everything else gets XDP_PASS, so the kernel decides as if
 * xdpstack were not there; that includes a claim whose socket or port is gone (orphaned).
 *
 * Every frame is counted exactly once in stats: redirected, or one pass_* reason (passed and
 * passed_bytes add up the reasons). Cost on the hot path: one stats lookup, one claims_by_port
 * array lookup (which decides alone unless two claims share the port), and stack_stats only for
 * claimed frames.
 */
#pragma once
#include "parse.h"
/* Maps are reached only through the xs_map_* accessors of xdpstack.bpf.c: bcc rewrites map
 * calls (claims.lookup, xsks.redirect_map) in its main file only. */

/* Count a passed frame under `reason` (a member of struct xs_stats) and pass it. */
#define XS_PASS(st, reason, bytes) \
	({ (st)->reason++; (st)->passed++; (st)->passed_bytes += (bytes); XDP_PASS; })

/* Index of a (family, proto, port) in claims_by_port. */
static __always_inline __u32 xs_port_index(const struct xs_pkt *pkt)
{
	return (pkt->family == XS_FAMILY_V6) * 131072 + (pkt->proto == IPPROTO_UDP) * 65536 + pkt->port;
}

/* Does a claim on address `claimed` (all zero: the wildcard) cover destination `addr`? */
static __always_inline int xs_addr_covers(const __u32 *c, const __u32 *a, __u8 family)
{
	if (family == XS_FAMILY_V4)       /* an IPv4 claim has zeros beyond its first 4 bytes */
		return !c[0] || c[0] == a[0];
	if (!(c[0] | c[1] | c[2] | c[3]))
		return 1;
	return !((c[0] ^ a[0]) | (c[1] ^ a[1]) | (c[2] ^ a[2]) | (c[3] ^ a[3]));
}

/* The claim for key in claims: the exact address, else the wildcard of the same family.
 * Leaves key->addr zeroed when the exact lookup missed. */
static __always_inline struct xs_claim *xs_claim_of(struct xs_tuple *key)
{
	struct xs_claim *c = xs_map_claim(key);
	if (c)
		return c;
	__builtin_memset(key->addr, 0, sizeof(key->addr));
	return xs_map_claim(key);
}

/* Tell the port program whose frame this is (struct xs_meta). Where metadata cannot be had (a
 * driver without headroom for it) the frame goes without, and the port checks it in full. */
static __always_inline void xs_meta_write(struct xdp_md *ctx, __u32 stack)
{
	if (bpf_xdp_adjust_meta(ctx, -(int)sizeof(struct xs_meta)))
		return;
	struct xs_meta *m = (void *)(long)ctx->data_meta;
	if ((void *)(m + 1) > (void *)(long)ctx->data)
		return;
	m->magic = XS_META_MAGIC;
	m->stack = stack;
}

static __always_inline int xs_demux(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 bytes = data_end - data;
	struct xs_stats *st = xs_map_stats();
	if (!st)
		return XDP_PASS;          /* cannot happen: a per-CPU array always has key 0 */

	struct xs_pkt pkt;
	switch (xs_parse(data, data_end, &pkt, XS_DST)) {
	case XS_PARSE_OK:
		break;
	case XS_PARSE_NOT_IP:
		return XS_PASS(st, pass_not_ip, bytes);
	case XS_PARSE_NOT_L4:
		return XS_PASS(st, pass_not_l4, bytes);
	case XS_PARSE_FRAGMENT:
		return XS_PASS(st, pass_fragment, bytes);
	case XS_PARSE_TOO_DEEP:
		return XS_PASS(st, pass_too_deep, bytes);
	default:
		return XS_PASS(st, pass_malformed, bytes);
	}

	/* The port index first: no claim on this (family, proto, port) is the common case for kernel
	 * traffic, one claim the common case for a stack's; only shared ports need the hash. */
	struct xs_port_claims *pc = xs_map_claims_by_port(xs_port_index(&pkt));
	if (!pc || !pc->claims)
		return XS_PASS(st, pass_no_claim, bytes);
	struct xs_claim *c;
	if (pc->claims == 1) {
		if (!xs_addr_covers((const __u32 *)pc->addr, pkt.addr, pkt.family))
			return XS_PASS(st, pass_no_claim, bytes);
		c = &pc->only;
	} else {
		struct xs_tuple key __attribute__((aligned(8)));
		xs_key(&pkt, &key);
		c = xs_claim_of(&key);
		if (!c)
			return XS_PASS(st, pass_no_claim, bytes);
	}

	__u32 stack = c->stack;
	long act = XDP_PASS;
	/* The differing empty asm keeps clang from merging the two redirect calls into one call
	 * site: the verifier would then see two maps there and fall back to an indirect call. */
	if (c->target == XS_TARGET_XSK && stack < XS_MAX_STACKS) {   /* else the slot could wrap */
		__u32 q = ctx->rx_queue_index;
		if (q >= XS_MAX_QUEUES)
			return XS_PASS(st, pass_bad_queue, bytes);
		act = xs_map_redirect_xsk(stack * XS_MAX_QUEUES + q, XDP_PASS);
		asm volatile("/* xsk */" : "+r"(act));
	} else if (c->target == XS_TARGET_PORT) {
		act = xs_map_redirect_port(stack, XDP_PASS);
		asm volatile("/* port */" : "+r"(act));
		if (act == XDP_REDIRECT)  /* the redirect happens after return: the frame may change */
			xs_meta_write(ctx, stack);
	}
	struct xs_stack_stats *ss = xs_map_stack_stats(stack);
	if (act != XDP_REDIRECT) {
		/* An empty slot (socket closed, port removed), or a claim naming no valid target:
		 * the owner is gone. */
		if (ss)
			ss->orphaned++;
		return XS_PASS(st, pass_orphaned, bytes);
	}
	st->redirected++;
	st->redirected_bytes += bytes;
	if (ss) {
		ss->rx_packets++;
		ss->rx_bytes += bytes;
	}
	return XDP_REDIRECT;
}
