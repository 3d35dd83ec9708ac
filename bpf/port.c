/* port.c: the programs on a stack's virtual port, a veth pair (outer O, inner I) in the NIC's
 * namespace. port_of maps each end's ifindex to (stack, role).
 *
 *   NIC --xdp_demux--> ports[stack] = O ~~veth~~> I --xdp_port_rx--> xsks[stack, queue]
 *   NIC <--bpf_redirect-- O <--xdp_port_tx-- (veth) <-- I <-- the stack's AF_XDP TX
 *
 * I carries only its stack's traffic. xdp_port_rx re-checks each frame's destination claim
 * (anything the kernel might send out of O, or a claim released in flight, is not the stack's:
 * dropped, counted in rx_dropped), then hands it to the stack's socket for that queue of I (none
 * there: dropped, counted as orphaned; passing it would hand it to the kernel on the wrong device).
 *
 * xdp_port_tx is the egress guard: a frame leaves through the NIC only if the claim that would
 * receive its replies belongs to this stack: the exact source tuple's claim, or with no exact
 * claim the wildcard claim, and then only from an address in local_addrs. The kernel owns ARP,
 * ND and ICMP, so anything that is not TCP/UDP over IP is denied too, as are non-first fragments
 * (no source port to check). Denied frames are dropped and counted in tx_denied.
 */
#pragma once
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

	struct xs_pkt pkt;
	struct xs_tuple key __attribute__((aligned(8)));
	if (xs_parse(data, data_end, &pkt, XS_DST) != XS_PARSE_OK)
		goto foreign;
	xs_key(&pkt, &key);
	struct xs_claim *c = xs_claim_of(&key);
	if (!c || c->stack != stack)
		goto foreign;
	__u32 q = ctx->rx_queue_index;
	if (q < XS_MAX_QUEUES && xs_map_redirect_xsk(stack * XS_MAX_QUEUES + q, XDP_DROP) == XDP_REDIRECT)
		return XDP_REDIRECT;
	ss->orphaned++;
	return XDP_DROP;
foreign:
	ss->rx_dropped++;
	return XDP_DROP;
}

static __always_inline int xs_port_tx(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct xs_port *p = xs_map_port_of(ctx->ingress_ifindex);
	if (!p || p->role != XS_PORT_OUTER)
		return XDP_DROP;
	__u32 stack = p->stack;
	struct xs_stack_stats *ss = xs_map_stack_stats(stack);
	if (!ss)
		return XDP_DROP;

	struct xs_pkt pkt;
	struct xs_tuple key __attribute__((aligned(8)));
	if (xs_parse(data, data_end, &pkt, XS_SRC) != XS_PARSE_OK)
		goto deny;
	xs_key(&pkt, &key);
	struct xs_claim *c = xs_map_claim(&key);
	if (!c) {
		struct xs_addr local __attribute__((aligned(8))) = {};
		local.family = key.family;
		__builtin_memcpy(local.addr, key.addr, sizeof(local.addr));
		__builtin_memset(key.addr, 0, sizeof(key.addr));
		c = xs_map_claim(&key);
		if (!c || c->stack != stack || !xs_map_local_addr(&local))
			goto deny;
	}
	if (c->stack != stack)
		goto deny;
	struct xs_iface *nic = xs_map_iface();
	if (!nic || !nic->ifindex)
		goto deny;                /* not configured yet */
	ss->tx_packets++;
	ss->tx_bytes += data_end - data;
	return bpf_redirect(nic->ifindex, 0);
deny:
	ss->tx_denied++;
	return XDP_DROP;
}
