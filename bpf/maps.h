/* maps.h: every map of the xdpstack BPF object, declared once (bcc dialect).
 * Layouts are in xdpstack.h; the control plane pins each map at $XDPSTACK_BPFFS/<iface>/<name>. */
#pragma once
#include "xdpstack.h"

BPF_HASH(claims, struct xs_tuple, struct xs_claim, XS_MAX_CLAIMS);      /* 3-tuple -> owner */
BPF_ARRAY(claims_by_port, struct xs_port_claims, XS_CLAIMS_BY_PORT_LEN); /* index over claims */
BPF_HASH(stacks, __u32, struct xs_stack, XS_MAX_STACKS);                /* stack id -> who owns it */
BPF_XSKMAP(xsks, XS_XSK_SLOTS);                                         /* AF_XDP sockets by slot */
BPF_DEVMAP(ports, XS_MAX_STACKS);                                       /* stack id -> outer port ifindex */
BPF_HASH(port_of, __u32, struct xs_port, 512);                          /* port ifindex -> stack, role */
BPF_HASH(local_addrs, struct xs_addr, __u32, XS_MAX_LOCAL_ADDRS);       /* interface addresses */
BPF_ARRAY(iface, struct xs_iface, 1);
BPF_PERCPU_ARRAY(stats, struct xs_stats, 1);
BPF_PERCPU_ARRAY(stack_stats, struct xs_stack_stats, XS_MAX_STACKS);
