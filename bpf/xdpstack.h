/* xdpstack.h: map keys, values and sizes shared by the kernel side (bpf/xdpstack.bpf.c and what
 * it includes, compiled by bcc) and the control plane (xdpstack/layout.py reads this file with cffi).
 *
 * Keep it plain so both parsers accept it: integer #defines, enums and structs of __u8/__u16/
 * __u32/__u64 only; no #if, no expressions in #defines, no kernel types.
 * Layouts are chosen so that `bpftool map dump` (BTF "formatted" view) is readable by a person:
 * addresses are byte arrays in network order, ports and everything else are host-order integers,
 * names are NUL-terminated char arrays. */
#pragma once

/* ---- sizes ---- */
#define XS_MAX_CLAIMS       65536   /* claimed 3-tuples per interface */
#define XS_MAX_STACKS       256     /* stack ids are 0..XS_MAX_STACKS-1 */
#define XS_MAX_QUEUES       64      /* RX queues a stack can have sockets on */
#define XS_XSK_SLOTS        16384   /* XS_MAX_STACKS * XS_MAX_QUEUES; slot = stack * XS_MAX_QUEUES + queue */
#define XS_MAX_LOCAL_ADDRS  1024
#define XS_NAME_LEN         32
#define XS_CLAIMS_BY_PORT_LEN 262144  /* claims_by_port index: (family == 6) * 131072 + (proto == UDP) * 65536 + port */
#define XS_IPV6_EXT_MAX     6       /* IPv6 extension headers walked before giving up (XDP_PASS) */

#define XS_FAMILY_V4        4
#define XS_FAMILY_V6        6

/* Where a claim's packets go. */
enum xs_target {
	XS_TARGET_XSK  = 1,   /* AF_XDP socket bound on this interface: xsks[stack * XS_MAX_QUEUES + rx queue] */
	XS_TARGET_PORT = 2,   /* the stack's virtual port (veth pair): ports[stack], see port.c */
};

/* Role of a virtual-port device in port_of. */
enum xs_port_role {
	XS_PORT_INNER = 1,    /* the end the stack's AF_XDP sockets are bound on */
	XS_PORT_OUTER = 2,    /* the end the demux redirects into; frames the stack sends arrive here */
};

/* claims key: a local 3-tuple. addr is all zero for the wildcard (0.0.0.0 or ::). */
struct xs_tuple {
	__u8  proto;          /* IPPROTO_TCP (6) or IPPROTO_UDP (17) */
	__u8  family;         /* XS_FAMILY_V4 or XS_FAMILY_V6 */
	__u16 port;           /* host order */
	__u8  addr[16];       /* network order; IPv4 in the first 4 bytes, the rest zero */
};

/* claims value. */
struct xs_claim {
	__u32 stack;          /* owning stack id */
	__u32 target;         /* enum xs_target */
};

/* claims_by_port: an index over claims by (family, proto, port), maintained by the control plane
 * beside claims, at (family == XS_FAMILY_V6) * 131072 + (proto == IPPROTO_UDP) * 65536 + port.
 * The demux reads it first (an array lookup, far cheaper than a hash): no claim on that
 * (family, proto, port) -> the kernel's, without a hash lookup; exactly one -> decided right here
 * from `only` and `addr`; two or more -> looked up in claims (exact address, then the wildcard). */
struct xs_port_claims {
	__u32 claims;             /* claims on this (family, proto, port) */
	struct xs_claim only;     /* when claims == 1: that claim's owner and target, */
	__u8  addr[16];           /* and its address as in its claims key (all zero: the wildcard;
	                           * IPv4 in the first 4 bytes, the rest zero) */
};

/* xs_meta: written by the demux in front of a frame it redirects into a stack's port
 * (bpf_xdp_adjust_meta; veth keeps XDP metadata across the redirect), so that xdp_port_rx hands the
 * frame to the stack's socket without parsing it again or looking up its claim. Only an XDP
 * program can write metadata, and only root loads those: a frame the kernel sends out of the
 * port's outer end arrives without it and takes the full check. */
#define XS_META_MAGIC       0x78736d31   /* "xsm1" */

struct xs_meta {
	__u32 magic;          /* XS_META_MAGIC */
	__u32 stack;          /* the stack the demux's claim lookup chose */
};

/* stacks: the readable record of who owns what, keyed by stack id (__u32).
 * The stack owns XSK slots xsk_first_slot .. xsk_first_slot + xsk_slots - 1,
 * which user space cannot read back from the XSKMAP itself. */
struct xs_stack {
	char  name[XS_NAME_LEN];
	__u32 pid;            /* supervising process */
	__u32 uid;            /* user the application runs as */
	__u32 xsk_first_slot;
	__u32 xsk_slots;
	__u32 port_ifindex;   /* outer end of the stack's virtual port, 0 if none */
	__u32 target;         /* enum xs_target */
};

/* port_of: virtual-port device ifindex (__u32) -> which stack and which end. */
struct xs_port {
	__u32 stack;
	__u32 role;           /* enum xs_port_role */
};

/* local_addrs: addresses of the interface; a stack with a wildcard claim may send from these. */
struct xs_addr {
	__u8  family;
	__u8  pad[3];
	__u8  addr[16];
};

/* iface: one entry (key 0) describing the interface the programs were built for. */
struct xs_iface {
	__u32 ifindex;
	__u32 xdp_mode;       /* XDP_FLAGS_DRV_MODE (4) or XDP_FLAGS_SKB_MODE (2) */
};

/* stats: global counters, one entry (key 0) per CPU. Every packet is counted exactly once in
 * redirected (via a claim) or in one pass_* reason; passed/passed_bytes is the sum of pass_*. */
struct xs_stats {
	__u64 redirected;
	__u64 redirected_bytes;
	__u64 passed;
	__u64 passed_bytes;
	__u64 pass_no_claim;      /* TCP/UDP over IP, tuple not claimed */
	__u64 pass_not_ip;        /* not IPv4/IPv6 (ARP, LLDP, ...) */
	__u64 pass_not_l4;        /* IP but not TCP/UDP (ICMP, ...) */
	__u64 pass_fragment;      /* non-first fragments (no transport header) */
	__u64 pass_malformed;     /* truncated or invalid headers */
	__u64 pass_orphaned;      /* claimed, but the owner's socket or port is gone */
	__u64 pass_bad_queue;     /* claimed, but the RX queue is beyond XS_MAX_QUEUES */
	__u64 pass_too_deep;      /* headers nest beyond the parse bounds: a third VLAN tag, or more
	                           * than XS_IPV6_EXT_MAX IPv6 extension headers */
};

/* stack_stats: per stack id, per CPU. rx_* counted by the demux, tx_* by the port guard. */
struct xs_stack_stats {
	__u64 rx_packets;
	__u64 rx_bytes;
	__u64 orphaned;
	__u64 tx_packets;
	__u64 tx_bytes;
	__u64 tx_denied;          /* frames the stack sent from a 3-tuple it does not own */
	__u64 rx_dropped;         /* frames on the stack's inner port that are not its traffic
	                           * (dropped by xdp_port_rx); a missing socket there counts as orphaned */
};
