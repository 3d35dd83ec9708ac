/* ctl.h: the control channel between a stack and its launcher.
 *
 * A SOCK_SEQPACKET unix socket (fd in XDPSTACK_CTL_FD). Every message is exactly
 * US_CTL_MSG_SIZE bytes: a header, a body, zero padding. Integers are host order (both ends run
 * on the same machine), addresses are struct us_addr (family byte, 3 pad bytes, 16 address bytes
 * in network order). userstack/ctl.py is the Python codec of the same layouts.
 *
 *   stack -> launcher
 *     RESOLVE          dst: which MAC do frames to dst go to? (kernel FIB next hop, then the
 *                      kernel neighbour table; the launcher triggers resolution when missing)
 *     CLAIM_EPHEMERAL  proto, family, remote: claim a free local port from the kernel (as the
 *                      launcher's own claims are made) for a flow to remote; answered by CLAIMED
 *                      with the same seq
 *     RELEASE          proto, local address, port: give back an ephemeral claim
 *   launcher -> stack
 *     NEIGH            dst, next hop, MAC, status: an answer to RESOLVE, or an update pushed
 *                      whenever the kernel's entry for a next hop the stack uses changes
 *                      (status US_NEIGH_FAILED: unreachable; queued packets are dropped)
 *     CLAIMED          seq of the CLAIM_EPHEMERAL, status (0 or -errno), proto, local address, port
 */
#pragma once
#include <stdint.h>
#include "../base/addr.h"

#define US_CTL_MSG_SIZE 64
#define US_CTL_VERSION  1

enum us_ctl_type {
	US_CTL_RESOLVE = 1,
	US_CTL_NEIGH = 2,
	US_CTL_CLAIM_EPHEMERAL = 3,
	US_CTL_CLAIMED = 4,
	US_CTL_RELEASE = 5,
};

enum us_neigh_status {
	US_NEIGH_OK = 0,
	US_NEIGH_FAILED = 1,
};

struct us_ctl_hdr {             /* 8 bytes */
	uint16_t type;              /* enum us_ctl_type */
	uint16_t version;           /* US_CTL_VERSION */
	uint32_t seq;               /* chosen by the requester, echoed in the answer */
};

struct us_ctl_resolve {         /* offsets: hdr 0, dst 8 */
	struct us_ctl_hdr hdr;
	struct us_addr dst;
};

struct us_ctl_neigh {           /* offsets: hdr 0, dst 8, mac 28, status 34, nexthop 36 */
	struct us_ctl_hdr hdr;
	struct us_addr dst;
	uint8_t mac[6];
	uint8_t status;             /* enum us_neigh_status */
	uint8_t pad;
	struct us_addr nexthop;     /* for diagnostics: the gateway, or dst itself when on-link */
};

struct us_ctl_claim_ephemeral { /* offsets: hdr 0, proto 8, family 9, remote 12 (addr 12, port 32) */
	struct us_ctl_hdr hdr;
	uint8_t proto;
	uint8_t family;
	uint16_t pad;
	struct us_endpoint remote;
};

struct us_ctl_claimed {         /* offsets: hdr 0, proto 8, family 9, port 10, status 12, local 16 */
	struct us_ctl_hdr hdr;
	uint8_t proto;
	uint8_t family;
	uint16_t port;
	int32_t status;             /* 0 or -errno */
	struct us_addr local;
};

struct us_ctl_release {         /* offsets: hdr 0, proto 8, family 9, port 10, local 12 */
	struct us_ctl_hdr hdr;
	uint8_t proto;
	uint8_t family;
	uint16_t port;
	struct us_addr local;
};

union us_ctl_msg {
	struct us_ctl_hdr hdr;
	struct us_ctl_resolve resolve;
	struct us_ctl_neigh neigh;
	struct us_ctl_claim_ephemeral claim;
	struct us_ctl_claimed claimed;
	struct us_ctl_release release;
	uint8_t raw[US_CTL_MSG_SIZE];
};

_Static_assert(sizeof(union us_ctl_msg) == US_CTL_MSG_SIZE, "control messages are 64 bytes");
_Static_assert(sizeof(struct us_ctl_neigh) == 56, "layout known to ctl.py");
_Static_assert(sizeof(struct us_ctl_claim_ephemeral) == 36, "layout known to ctl.py");
_Static_assert(sizeof(struct us_ctl_claimed) == 36, "layout known to ctl.py");
_Static_assert(sizeof(struct us_ctl_release) == 32, "layout known to ctl.py");
