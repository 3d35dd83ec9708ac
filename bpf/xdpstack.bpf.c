/* xdpstack.bpf.c: the one compilation unit of the kernel side, so that the NIC program and the
 * port programs share the maps of a single bcc object. The control plane compiles it with
 *   BPF(src_file="bpf/xdpstack.bpf.c", cflags=["-I<bpf dir>", "-Wall"])
 * and loads xdp_demux (the NIC) and xdp_port_rx (a port's inner end) as XDP programs, tc_port_tx
 * (its outer end, clsact ingress) as a TC classifier (SCHED_CLS).
 *
 * bcc rewrites map calls and exports programs only in this, its main file. So this file holds the
 * one-line map accessors that parse.h, demux.c and port.c use, and the program entry points;
 * the logic lives in those files. */
#include "maps.h"

static __always_inline struct xs_stats *xs_map_stats(void)
{
	__u32 zero = 0;
	return stats.lookup(&zero);
}

static __always_inline struct xs_stack_stats *xs_map_stack_stats(__u32 stack)
{
	return stack_stats.lookup(&stack);
}

static __always_inline struct xs_port_claims *xs_map_claims_by_port(__u32 index)
{
	return claims_by_port.lookup(&index);
}

static __always_inline struct xs_claim *xs_map_claim(struct xs_tuple *key)
{
	return claims.lookup(key);
}

static __always_inline long xs_map_redirect_xsk(__u32 slot, __u64 action_if_empty)
{
	return xsks.redirect_map(slot, action_if_empty);
}

static __always_inline long xs_map_redirect_port(__u32 stack, __u64 action_if_empty)
{
	return ports.redirect_map(stack, action_if_empty);
}

static __always_inline struct xs_port *xs_map_port_of(__u32 ifindex)
{
	return port_of.lookup(&ifindex);
}

static __always_inline int xs_map_local_addr(struct xs_addr *addr)
{
	return local_addrs.lookup(addr) != NULL;
}

static __always_inline struct xs_iface *xs_map_iface(void)
{
	__u32 zero = 0;
	return iface.lookup(&zero);
}

#include "parse.h"
#include "demux.c"
#include "port.c"

int xdp_demux(struct xdp_md *ctx)
{
	return xs_demux(ctx);
}

int xdp_port_rx(struct xdp_md *ctx)
{
	return xs_port_rx(ctx);
}

int tc_port_tx(struct __sk_buff *skb)
{
	return xs_port_tx_tc(skb);
}
