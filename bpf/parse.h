/* parse.h: bounded header parsing for the xdpstack XDP programs (bcc dialect).
 *
 * xs_parse() walks Ethernet, up to XS_VLAN_MAX VLAN tags, IPv4 (any IHL) or IPv6 (up to
 * XS_IPV6_EXT_MAX extension headers), then the TCP or UDP header, and finds the destination
 * (XS_DST) or source (XS_SRC) 3-tuple: struct xs_pkt, whose address stays in the packet (xs_key()
 * makes a claims key of it). Every packet access is checked against data_end
 * for the verifier; the semantic checks use byte offsets against the IP datagram's own end
 * (IPv4 total length, IPv6 payload length), which must itself lie inside the frame.
 *
 * Outcomes, in the order they are decided:
 *   malformed   Ethernet or a VLAN tag cut short; IPv4 version != 4, IHL < 5, total length < IHL*4
 *               or beyond the frame; IPv6 version != 6 or payload beyond the frame (jumbograms
 *               included); an extension header, UDP header (8 bytes) or TCP header (20 bytes, then
 *               data offset * 4, data offset >= 5) not inside the datagram.
 *   too_deep    a third VLAN tag, or an IPv6 extension header after XS_IPV6_EXT_MAX of them.
 *   not_ip      any other EtherType.
 *   fragment    IPv4 fragment offset != 0, or an IPv6 fragment header with offset != 0: no
 *               transport header to read. (Offset 0, more-fragments set: parsed like any packet.)
 *   not_l4      IP whose upper layer is not TCP/UDP (ICMP, ICMPv6, ESP, AH, no-next-header, ...).
 */
#pragma once
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include "xdpstack.h"

#define XS_VLAN_MAX 2

enum xs_parse_result {
	XS_PARSE_OK = 0,
	XS_PARSE_NOT_IP,
	XS_PARSE_NOT_L4,
	XS_PARSE_FRAGMENT,
	XS_PARSE_MALFORMED,
	XS_PARSE_TOO_DEEP,
};

/* What xs_parse finds: the local end of the frame. addr points at the 4 or 16 address bytes
 * inside the checked IP header, so the demux's fast path compares them in place and only a hash
 * lookup needs them copied into a key (xs_key). */
struct xs_pkt {
	__u8         proto;
	__u8         family;     /* XS_FAMILY_V4 or XS_FAMILY_V6 */
	__u16        port;       /* host order */
	const __u32 *addr;       /* network order, in the packet */
};

enum xs_dir {
	XS_DST = 0,       /* received frames: the local end is the destination */
	XS_SRC = 1,       /* transmitted frames: the local end is the source */
};

/* Ethernet header without the kernel's packed attribute, so the EtherType is one 16-bit load. */
struct xs_eth_hdr {
	__u8   dst[6];
	__u8   src[6];
	__be16 proto;
};

struct xs_vlan_hdr {
	__be16 tci;
	__be16 proto;
};

/* The first 8 bytes of an IPv6 extension header. Hop-by-hop, routing and destination options
 * carry their length in hdrlen (8-byte units beyond the first 8); the fragment header is exactly
 * 8 bytes and has frag_off (offset in the upper 13 bits, then 2 reserved bits and M). */
struct xs_ext_hdr {
	__u8   nexthdr;
	__u8   hdrlen;
	__be16 frag_off;
	__be32 rest;
};

static __always_inline int xs_is_vlan(__be16 proto)
{
	return proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD);
}

static __always_inline int xs_is_ext(__u8 nh)
{
	return nh == IPPROTO_HOPOPTS || nh == IPPROTO_ROUTING || nh == IPPROTO_DSTOPTS ||
	       nh == IPPROTO_FRAGMENT;
}

/* The transport header at byte offset l4 of a datagram ending at byte offset end (<= frame
 * length): bounds, TCP data offset, and the port of the wanted direction. */
static __always_inline int xs_parse_l4(void *data, void *data_end, __u32 l4, __u32 end, __u8 proto,
				       struct xs_pkt *pkt, int dir)
{
	/* l4 is at most 22 + 60 (IPv4) or 22 + 40 + XS_IPV6_EXT_MAX * 2048 (IPv6): the mask only
	 * tells the verifier so, it never changes the value. */
	l4 &= 0x7fff;
	struct udphdr *udp = data + l4;   /* ports sit at the same offsets in TCP and UDP */
	if ((void *)(udp + 1) > data_end || l4 + sizeof(*udp) > end)
		return XS_PARSE_MALFORMED;
	pkt->port = bpf_ntohs(dir == XS_SRC ? udp->source : udp->dest);
	if (proto == IPPROTO_TCP) {
		struct tcphdr *tcp = (void *)udp;
		if ((void *)(tcp + 1) > data_end || l4 + sizeof(*tcp) > end)
			return XS_PARSE_MALFORMED;
		__u32 doff = tcp->doff;
		if (doff < 5 || l4 + doff * 4 > end)
			return XS_PARSE_MALFORMED;
	}
	pkt->proto = proto;
	return XS_PARSE_OK;
}

static __always_inline int xs_parse_ipv4(void *data, void *data_end, __u32 off, __u64 len,
					 struct xs_pkt *pkt, int dir)
{
	struct iphdr *ip = data + off;
	if ((void *)(ip + 1) > data_end)
		return XS_PARSE_MALFORMED;
	__u32 hlen = ip->ihl * 4;
	__u32 tot = bpf_ntohs(ip->tot_len);
	if (ip->version != 4 || hlen < sizeof(*ip) || tot < hlen || off + tot > len)
		return XS_PARSE_MALFORMED;
	if (ip->frag_off & bpf_htons(0x1fff))
		return XS_PARSE_FRAGMENT;
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP)
		return XS_PARSE_NOT_L4;
	pkt->family = XS_FAMILY_V4;
	pkt->addr = dir == XS_SRC ? &ip->saddr : &ip->daddr;
	return xs_parse_l4(data, data_end, off + hlen, off + tot, ip->protocol, pkt, dir);
}

static __always_inline int xs_parse_ipv6(void *data, void *data_end, __u32 off, __u64 len,
					 struct xs_pkt *pkt, int dir)
{
	struct ipv6hdr *ip6 = data + off;
	if ((void *)(ip6 + 1) > data_end)
		return XS_PARSE_MALFORMED;
	__u32 end = off + sizeof(*ip6) + bpf_ntohs(ip6->payload_len);
	if (ip6->version != 6 || end > len)
		return XS_PARSE_MALFORMED;
	__u8 nh = ip6->nexthdr;
	__u32 l4 = off + sizeof(*ip6);

	#pragma unroll
	for (int i = 0; i < XS_IPV6_EXT_MAX; i++) {
		if (!xs_is_ext(nh))
			break;
		/* Every extension header is at least 8 bytes; the fragment header exactly 8. */
		l4 &= 0x3fff;
		struct xs_ext_hdr *h = data + l4;
		if ((void *)(h + 1) > data_end || l4 + sizeof(*h) > end)
			return XS_PARSE_MALFORMED;
		if (nh == IPPROTO_FRAGMENT) {
			if (h->frag_off & bpf_htons(0xfff8))
				return XS_PARSE_FRAGMENT;
			l4 += sizeof(*h);
		} else {
			l4 += (h->hdrlen + 1) * 8;
		}
		nh = h->nexthdr;
	}
	if (nh != IPPROTO_TCP && nh != IPPROTO_UDP)
		return xs_is_ext(nh) ? XS_PARSE_TOO_DEEP : XS_PARSE_NOT_L4;
	pkt->family = XS_FAMILY_V6;
	pkt->addr = (const __u32 *)(dir == XS_SRC ? &ip6->saddr : &ip6->daddr);
	return xs_parse_l4(data, data_end, l4, end, nh, pkt, dir);
}

/* Parse a frame into pkt (proto, family, port, addr of direction dir). Returns XS_PARSE_*.
 * Headers are read between data and data_end; len is the whole frame's length, which the IP
 * length fields are checked against (an skb's payload may continue beyond its linear part), and
 * tags the VLAN tags already taken out of the frame (an skb's outer tag, moved into its metadata
 * by the kernel before TC ingress): they count against XS_VLAN_MAX like tags in the frame. */
static __always_inline int xs_parse_frame(void *data, void *data_end, __u64 len, __u32 tags,
					  struct xs_pkt *pkt, int dir)
{
	struct xs_eth_hdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return XS_PARSE_MALFORMED;
	__be16 proto = eth->proto;
	/* Untagged IP first, with constant offsets: the common case, and the cheapest. */
	if (proto == bpf_htons(ETH_P_IP))
		return xs_parse_ipv4(data, data_end, sizeof(*eth), len, pkt, dir);
	if (proto == bpf_htons(ETH_P_IPV6))
		return xs_parse_ipv6(data, data_end, sizeof(*eth), len, pkt, dir);

	__u32 off = sizeof(*eth);
	#pragma unroll
	for (int i = 0; i < XS_VLAN_MAX; i++) {
		if (!xs_is_vlan(proto))
			break;
		struct xs_vlan_hdr *vh = data + off;
		if ((void *)(vh + 1) > data_end)
			return XS_PARSE_MALFORMED;
		proto = vh->proto;
		off += sizeof(*vh);
	}
	if (tags + (off - sizeof(*eth)) / sizeof(struct xs_vlan_hdr) > XS_VLAN_MAX)
		return XS_PARSE_TOO_DEEP;
	if (proto == bpf_htons(ETH_P_IP))
		return xs_parse_ipv4(data, data_end, off, len, pkt, dir);
	if (proto == bpf_htons(ETH_P_IPV6))
		return xs_parse_ipv6(data, data_end, off, len, pkt, dir);
	return xs_is_vlan(proto) ? XS_PARSE_TOO_DEEP : XS_PARSE_NOT_IP;
}

/* An XDP frame: all of it lies between data and data_end, every tag still in it. */
static __always_inline int xs_parse(void *data, void *data_end, struct xs_pkt *pkt, int dir)
{
	return xs_parse_frame(data, data_end, data_end - data, 0, pkt, dir);
}

/* The claims key of a parsed frame: (proto, family, port, address; zero beyond IPv4's 4 bytes). */
static __always_inline void xs_key(const struct xs_pkt *pkt, struct xs_tuple *key)
{
	__u32 *a = (__u32 *)key->addr;
	key->proto = pkt->proto;
	key->family = pkt->family;
	key->port = pkt->port;
	a[0] = pkt->addr[0];
	if (pkt->family == XS_FAMILY_V4) {
		a[1] = 0;
		a[2] = 0;
		a[3] = 0;
	} else {
		a[1] = pkt->addr[1];
		a[2] = pkt->addr[2];
		a[3] = pkt->addr[3];
	}
}
