"""Tiny XDP programs that put a stack's frames into its AF_XDP sockets without the demux: for stacks
made in-process (Stack.create, tools/userstack_rx_mpps.py) on a device of their own. UdpRedirect
sends UDP to one port range, PortRedirect TCP and/or UDP to up to two ranges, into
xsks[rx_queue_index]; everything else goes to the kernel. Launched stacks get the real demux (bpf/).
"""
from __future__ import annotations

import contextlib
import ctypes

REDIRECT_SRC = r"""
#include <uapi/linux/bpf.h>
#include <uapi/linux/in.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/ipv6.h>
#include <uapi/linux/udp.h>

BPF_XSKMAP(xsks, 64);

int redirect_udp(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    void *l4;
    if ((void *)(eth + 1) > end)
        return XDP_PASS;
    if (eth->h_proto == htons(ETH_P_IP)) {
        struct iphdr *ip = (void *)(eth + 1);
        if ((void *)(ip + 1) > end || ip->protocol != IPPROTO_UDP)
            return XDP_PASS;
        l4 = (void *)ip + ip->ihl * 4;
    } else if (eth->h_proto == htons(ETH_P_IPV6)) {
        struct ipv6hdr *ip6 = (void *)(eth + 1);
        if ((void *)(ip6 + 1) > end || ip6->nexthdr != IPPROTO_UDP)
            return XDP_PASS;
        l4 = ip6 + 1;
    } else {
        return XDP_PASS;
    }
    struct udphdr *udp = l4;
    if ((void *)(udp + 1) > end)
        return XDP_PASS;
    u16 port = ntohs(udp->dest);
    if (port < PORT_LO || port > PORT_HI)
        return XDP_PASS;
    return xsks.redirect_map(ctx->rx_queue_index, XDP_PASS);
}
"""


class UdpRedirect:
    """The compiled program; attach() it to a device of the current namespace."""

    def __init__(self, port_lo: int, port_hi: int):
        from bcc import BPF
        self.bpf = BPF(text=REDIRECT_SRC, cflags=[f"-DPORT_LO={port_lo}", f"-DPORT_HI={port_hi}"])
        self.fn = self.bpf.load_func("redirect_udp", BPF.XDP)
        self.attached: list[str] = []

    def attach(self, ifname: str):
        from bcc import BPF
        BPF.attach_xdp(ifname.encode(), self.fn, 0)
        self.attached.append(ifname)

    def detach(self, ifname: str):
        from bcc import BPF
        with contextlib.suppress(Exception):
            BPF.remove_xdp(ifname.encode(), 0)
        if ifname in self.attached:
            self.attached.remove(ifname)

    def set_sockets(self, queue_ids, fds):
        xsks = self.bpf[b"xsks"]
        for q, fd in zip(queue_ids, fds, strict=True):
            xsks[ctypes.c_int(q)] = ctypes.c_int(fd)

    def close(self):
        self.bpf.cleanup()


PORTS_SRC = r"""
#include <uapi/linux/bpf.h>
#include <uapi/linux/in.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/ipv6.h>
#include <uapi/linux/tcp.h>
#include <uapi/linux/udp.h>

BPF_XSKMAP(xsks, 64);

static __always_inline int in_ranges(u16 p)
{
    return (p >= LO1 && p <= HI1) || (p >= LO2 && p <= HI2);
}

int redirect_ports(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    void *l4;
    u8 proto;
    if ((void *)(eth + 1) > end)
        return XDP_PASS;
    if (eth->h_proto == htons(ETH_P_IP)) {
        struct iphdr *ip = (void *)(eth + 1);
        if ((void *)(ip + 1) > end)
            return XDP_PASS;
        proto = ip->protocol;
        l4 = (void *)ip + ip->ihl * 4;
    } else if (eth->h_proto == htons(ETH_P_IPV6)) {
        struct ipv6hdr *ip6 = (void *)(eth + 1);
        if ((void *)(ip6 + 1) > end)
            return XDP_PASS;
        proto = ip6->nexthdr;
        l4 = ip6 + 1;
    } else {
        return XDP_PASS;
    }
    u16 port;
    if (proto == IPPROTO_TCP && WANT_TCP) {
        struct tcphdr *tcp = l4;
        if ((void *)(tcp + 1) > end)
            return XDP_PASS;
        port = ntohs(tcp->dest);
    } else if (proto == IPPROTO_UDP && WANT_UDP) {
        struct udphdr *udp = l4;
        if ((void *)(udp + 1) > end)
            return XDP_PASS;
        port = ntohs(udp->dest);
    } else {
        return XDP_PASS;
    }
    if (!in_ranges(port))
        return XDP_PASS;
    return xsks.redirect_map(ctx->rx_queue_index, XDP_PASS);
}
"""


class PortRedirect(UdpRedirect):
    """TCP and/or UDP to destination ports in up to two ranges (e.g. the listeners' and the
    ephemeral range of the namespace) into xsks[rx_queue_index]."""

    def __init__(self, ranges=((7000, 7099),), tcp: bool = True, udp: bool = False):
        from bcc import BPF
        r = list(ranges) + [(1, 0)] * (2 - len(ranges))
        flags = [f"-DLO1={r[0][0]}", f"-DHI1={r[0][1]}", f"-DLO2={r[1][0]}", f"-DHI2={r[1][1]}",
                 f"-DWANT_TCP={int(tcp)}", f"-DWANT_UDP={int(udp)}"]
        self.bpf = BPF(text=PORTS_SRC, cflags=flags)
        self.fn = self.bpf.load_func("redirect_ports", BPF.XDP)
        self.attached = []
