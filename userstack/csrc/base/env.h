/* env.h: how a stack is described, and the XDPSTACK_* environment that carries the description
 * from the privileged launcher to the unprivileged application.
 *
 * The launcher creates the UMEM (a memfd) and one bound AF_XDP socket per RX queue
 * (us_xsk_create in ../dev/xsk.h fills a struct us_desc), adds the claimed tuples, addresses, MAC,
 * MTU and the control-channel fd, and exports it with us_desc_format_env. The application
 * inherits the fds and calls us_desc_from_env + us_stack_open (or us_stack_open_env).
 *
 * Every variable is flat text that sscanf parses; fields are separated by single spaces.
 *
 *   XDPSTACK_VERSION   "1"
 *   XDPSTACK_NAME      stack name, at most 31 characters, no spaces
 *   XDPSTACK_STACK_ID  "%u"   stack id in the demux maps (slot = id * XS_MAX_QUEUES + queue)
 *   XDPSTACK_IFNAME    device the sockets are bound on (the port's inner end, or the NIC itself)
 *   XDPSTACK_IFINDEX   "%u"   ifindex of XDPSTACK_IFNAME
 *   XDPSTACK_MAC       "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx"  source MAC of every frame sent (the NIC's)
 *   XDPSTACK_MTU       "%u"   IP MTU of the NIC: the largest IP packet the stack sends
 *   XDPSTACK_ADDRS     "%u"   number of local addresses, then for i in 0..n-1:
 *   XDPSTACK_ADDR<i>   "%u %s"            family (4 or 6), address text ("198.18.0.1", "2001:db8::1")
 *   XDPSTACK_TUPLES    "%u"   number of claimed 3-tuples, then for i in 0..n-1:
 *   XDPSTACK_TUPLE<i>  "%s %u %s %u"      proto ("udp"/"tcp"), family, address ("0.0.0.0"/"::" =
 *                                         every local address of that family), port
 *   XDPSTACK_UMEM      "%d %llu %u %u %u" memfd, size in bytes, frame size, headroom, flags
 *                                         (flags bit 0: sockets bound with XDP_USE_NEED_WAKEUP)
 *   XDPSTACK_QUEUES    "%u"   number of sockets, then for i in 0..n-1:
 *   XDPSTACK_Q<i>      "%u %d %u %u %u %u %u %u"  queue id, socket fd, rx ring size, tx ring size,
 *                                         fill ring size, completion ring size, first frame,
 *                                         frame count (frames [first, first+count) of the UMEM
 *                                         belong to this queue; the rings are empty at hand-over:
 *                                         the application fills the fill ring)
 *   XDPSTACK_CTL_FD    "%d"   SOCK_SEQPACKET control channel (../stack/ctl.h), -1 if none
 *   XDPSTACK_BUSY_POLL "%u"   optional, 1 = spin on the rings instead of sleeping in epoll
 *   XDPSTACK_LOCAL_PEER "%u"  optional, 1 = the NIC's peer is a kernel on this host (a veth): its
 *                                         TCP/UDP frames may carry partial checksums (wire.h,
 *                                         US_PARSE_LOCAL_PEER), accepted and counted
 *                                         (rx_csum_partial); 0 = verify every checksum (a real NIC)
 *   XDPSTACK_STATS     "%d %u"  optional: memfd and size (>= sizeof(struct us_shared_stats),
 *                                         ../api.h) of a page the launcher created; the stack maps it
 *                                         shared and keeps its counters and its TCP's there, for
 *                                         `xdpstack stacks` to read
 *
 * The fds are inherited without FD_CLOEXEC; the stack takes ownership of them when it opens from
 * the environment and closes them with the stack.
 *
 * Optional, read by every stack opened on AF_XDP sockets (us_stack_open, us_stack_open_env; also
 * set at run time with us_stack_tcp_configure / us_stack_faults_configure). A bad value fails the
 * open with -EINVAL. `xdpstack run` passes them through (and its --faults sets XDPSTACK_FAULTS).
 *
 *   XDPSTACK_CC        "cubic" (default) or "newreno": congestion control of the stack's TCP
 *   XDPSTACK_TCP       TCP knobs, "key=value" words; sizes take k/m suffixes, *_ms fractions:
 *        cc=cubic|newreno   sndbuf=2m rcvbuf=2m (per connection)   init_cwnd=10 (segments)
 *        sack=1 timestamps=1 wscale=1 (offer them)   delack_ms=40   quickack=16 (segments ACKed
 *        at once after the start)   rto_min_ms=200 rto_init_ms=1000 rto_max_ms=120000
 *        syn_retries=6 synack_retries=5 retries=15   keepidle=7200 keepintvl=75 keepcnt=9 (s)
 *        time_wait_ms=60000 max_time_wait=65536   backlog=128 (listen(0))
 *        challenge_ack_limit=1000 (per second)   port_pool=4 (ephemeral ports claimed ahead per
 *        local address, 0: claim at each connect)   linger_ms=1000 (stack close waits this long
 *        for closing connections to deliver their data)
 *   XDPSTACK_FAULTS    fault injection between the stack and its device (../dev/fault.h), e.g.
 *        "seed=1 drop=0.05 duplicate=0.01 reorder=0.02 corrupt=0.01 dir=both": rates are
 *        probabilities per frame (or "5%"), dir is rx, tx or both (default both), seed 1 */
#pragma once
#include <stddef.h>
#include <stdint.h>
#include "addr.h"

#define US_ENV_VERSION   1
#define US_MAX_ADDRS     16
#define US_MAX_TUPLES    256
#define US_MAX_QUEUES    64
#define US_NAME_LEN      32
#define US_IFNAME_LEN    16

#define US_UMEM_NEED_WAKEUP 1

struct us_tuple {
	uint8_t proto;              /* 6 TCP, 17 UDP */
	uint8_t pad;
	uint16_t port;              /* host order */
	struct us_addr addr;        /* family set; all-zero a[] = wildcard of that family */
};

struct us_queue_desc {
	uint32_t queue_id;
	int32_t fd;
	uint32_t rx_size, tx_size, fill_size, comp_size;
	uint32_t frame_first, frame_count;
};

struct us_desc {
	char name[US_NAME_LEN];
	uint32_t stack_id;
	char ifname[US_IFNAME_LEN];
	uint32_t ifindex;
	uint8_t mac[6];
	uint16_t pad;
	uint32_t mtu;
	uint32_t naddrs;
	struct us_addr addrs[US_MAX_ADDRS];
	uint32_t ntuples;
	struct us_tuple tuples[US_MAX_TUPLES];
	int32_t umem_fd;
	uint32_t frame_size, headroom, umem_flags;
	uint64_t umem_size;
	uint32_t nqueues;
	struct us_queue_desc queues[US_MAX_QUEUES];
	int32_t ctl_fd;
	uint32_t busy_poll;
	uint32_t owns_fds;          /* 1: us_stack_close closes umem, socket, ctl and stats fds */
	uint32_t local_peer;        /* XDPSTACK_LOCAL_PEER */
	int32_t stats_fd;           /* XDPSTACK_STATS; stats_size 0: no shared page, own counters */
	uint32_t stats_size;
};

/* Parse the XDPSTACK_* environment into d (owns_fds = 1). 0 or -errno (-ENOENT: not launched). */
int us_desc_from_env(struct us_desc *d);
/* Write d as "KEY=VALUE\n" lines into buf. Returns the length needed (excluding the NUL),
 * like snprintf; the output is complete only when that is < len. */
int us_desc_format_env(const struct us_desc *d, char *buf, size_t len);
/* Helpers shared with the Python side: address text <-> struct us_addr. 0 or -EINVAL. */
int us_addr_parse(struct us_addr *a, const char *text);
int us_addr_format(const struct us_addr *a, char *buf, size_t len);
