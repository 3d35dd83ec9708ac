/* port.c: the programs on a stack's virtual port, a veth pair (outer O, inner I) in the NIC's
 * namespace. port_of maps each end's ifindex to (stack, role).
 *
 *   NIC --xdp_demux--> ports[stack] = O ~~veth~~> I --xdp_port_rx--> xsks[stack, queue]
 *   NIC <--bpf_redirect-- O <--tc_port_tx-- (veth) <-- I <-- the stack's AF_XDP TX
 *
 * I carries only its stack's traffic. A frame the demux redirected carries struct xs_meta naming
 * the stack its claim lookup chose: when that is I's stack, xdp_port_rx hands the frame on with no
 * parse and no claim lookup. Any other frame (anything the kernel might send out of O: it carries
 * no metadata) has its destination claim checked in full; not the stack's: dropped, counted in
 * rx_dropped. The frame then goes to the stack's socket for that queue of I (none there: dropped,
 * counted as orphaned; passing it would hand it to the kernel on the wrong device). A claim
 * released while its frame is between the demux and I (microseconds) still reaches its stack.
 *
 * tc_port_tx (clsact ingress of O, direct action) is the egress guard. It works on the skb the
 * AF_XDP transmit already built: the frame is not copied into an XDP buffer, turned into an
 * xdp_frame and rebuilt as an skb on its way out. A frame leaves (bpf_redirect to the NIC's
 * egress) only if the claim that would receive its replies belongs to this stack: the exact source
 * tuple's claim, or with no exact claim the wildcard claim, and then only from an address in
 * local_addrs (so never from 0.0.0.0 or ::). The kernel owns ARP, ND and ICMP, so anything that is
 * not TCP/UDP over IP is denied too, as are non-first fragments (no source port to check). Denied
 * frames are dropped (TC_ACT_SHOT) and counted in tx_denied. O needs no program to receive the
 * demux's redirects: veth hands them to I, whose XDP program gives I the NAPI they need.
 */
#pragma once
#include <linux/pkt_cls.h>
#include "parse.h"
#include "demux.c"

static __always_inline int xs_port_rx(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct xs_port *p = xs_map_port_of(ctx->ingress_ifindex);
	if (!p || p->role != XS_PORT_INNER)
		return XDP_DROP;          /* attached where it does not belong: nothing to deliver to */
	__u32 stack = p->stack;
	struct xs_stack_stats *ss = xs_map_stack_stats(stack);
	if (!ss)
		return XDP_DROP;

	struct xs_meta *m = (void *)(long)ctx->data_meta;
	if ((void *)(m + 1) <= data && m->magic == XS_META_MAGIC && m->stack == stack)
		goto deliver;

	struct xs_pkt pkt;
	struct xs_tuple key __attribute__((aligned(8)));
	if (xs_parse(data, data_end, &pkt, XS_DST) != XS_PARSE_OK)
		goto foreign;
	xs_key(&pkt, &key);
	struct xs_claim *c = xs_claim_of(&key);
	if (!c || c->stack != stack)
		goto foreign;
deliver:;
	__u32 q = ctx->rx_queue_index;
	if (q < XS_MAX_QUEUES && xs_map_redirect_xsk(stack * XS_MAX_QUEUES + q, XDP_DROP) == XDP_REDIRECT)
		return XDP_REDIRECT;
	ss->orphaned++;
	return XDP_DROP;
foreign:
	ss->rx_dropped++;
	return XDP_DROP;
}

/* The egress guard's decision on a frame arriving on device ifindex (a port's outer end): the NIC's
 * ifindex to send it out of (counted in tx_packets, tx_bytes), or 0 to drop it (counted in
 * tx_denied, unless ifindex is no outer end and there is no stack to count for). len, tags: as
 * for xs_parse_frame; segs: the frames a packet stands for (a GRO packet's segments, else 1). */
static __always_inline __u32 xs_guard(void *data, void *data_end, __u64 len, __u32 tags, __u32 ifindex,
				      __u32 segs)
{
	struct xs_port *p = xs_map_port_of(ifindex);
	if (!p || p->role != XS_PORT_OUTER)
		return 0;
	__u32 stack = p->stack;
	struct xs_stack_stats *ss = xs_map_stack_stats(stack);
	if (!ss)
		return 0;

	struct xs_pkt pkt;
	if (xs_parse_frame(data, data_end, len, tags, &pkt, XS_SRC) != XS_PARSE_OK)
		goto deny;
	/* The claim that would receive the replies: as in the demux, the claims_by_port index
	 * decides alone when one claim holds the source (family, proto, port); only a shared port
	 * costs hash lookups, the exact address first. */
	struct xs_port_claims *pc = xs_map_claims_by_port(xs_port_index(&pkt));
	if (!pc || !pc->claims)
		goto deny;
	struct xs_claim *c;
	int wildcard;
	if (pc->claims == 1) {
		const __u32 *ca = (const __u32 *)pc->addr;
		if (!xs_addr_covers(ca, pkt.addr, pkt.family))
			goto deny;
		c = &pc->only;
		wildcard = !(ca[0] | ca[1] | ca[2] | ca[3]);
	} else {
		struct xs_tuple key __attribute__((aligned(8)));
		__u32 *ka = (__u32 *)key.addr;
		xs_key(&pkt, &key);
		c = xs_map_claim(&key);
		/* from 0.0.0.0 or ::, the "exact" claim found is the wildcard claim itself */
		wildcard = !c || !(ka[0] | ka[1] | ka[2] | ka[3]);
		if (!c) {
			__builtin_memset(key.addr, 0, sizeof(key.addr));
			c = xs_map_claim(&key);
			if (!c)
				goto deny;
		}
	}
	if (c->stack != stack)
		goto deny;
	if (wildcard) {                   /* a wildcard claim sends from the interface's addresses only */
		struct xs_addr local __attribute__((aligned(8))) = {};
		__u32 *la = (__u32 *)local.addr;
		local.family = pkt.family;
		la[0] = pkt.addr[0];
		if (pkt.family == XS_FAMILY_V6) {
			la[1] = pkt.addr[1];
			la[2] = pkt.addr[2];
			la[3] = pkt.addr[3];
		}
		if (!xs_map_local_addr(&local))
			goto deny;
	}
	struct xs_iface *nic = xs_map_iface();
	if (!nic || !nic->ifindex)
		goto deny;                /* not configured yet */
	ss->tx_packets += segs;
	ss->tx_bytes += len + tags * 4;   /* a tag the kernel took out is still sent */
	return nic->ifindex;
deny:
	ss->tx_denied += segs;
	return 0;
}

/* The guard on the skb the stack's AF_XDP transmit built (clsact ingress of the outer end, direct
 * action): no copy into an XDP buffer and back. The kernel has moved an outer VLAN tag into the
 * skb's metadata before TC ingress (skb_vlan_untag); bpf_redirect puts it back on the NIC. */
static __always_inline int xs_port_tx_tc(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u32 segs = skb->gso_segs;
	__u32 nic = xs_guard(data, data_end, skb->len, skb->vlan_present != 0, skb->ingress_ifindex,
			     segs ? segs : 1);
	return nic ? bpf_redirect(nic, 0) : TC_ACT_SHOT;
}
