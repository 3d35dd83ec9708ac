/* ip.h: IP + Ethernet output and the stack's addresses and claims (ip.c). */
#pragma once
#include "stack.h"

bool us_is_local_addr(const struct us_stack *st, const struct us_addr *a);
/* First local address of the family (source for wildcard-bound sockets), or NULL. */
const struct us_addr *us_pick_source(const struct us_stack *st, uint8_t family);
/* The stack may use proto/ep: the launcher claimed it (or an ephemeral claim added it). */
bool us_tuple_claimed(const struct us_stack *st, uint8_t proto, const struct us_endpoint *ep);
/* Header room in front of an IP payload of this family. */
static inline uint32_t us_l3_offset(uint8_t family)
{
	return US_ETH_HLEN + (family == US_AF4 ? US_IPV4_HLEN : US_IPV6_HLEN);
}
/* The transport payload (l4len bytes at f->data + us_l3_offset) is in place: write IP and
 * Ethernet headers, and send (or hold until the destination's MAC is known). */
void us_ip_output(struct us_stack *st, struct us_frame *f, const struct us_addr *src,
		  const struct us_addr *dst, uint8_t proto, uint32_t l4len);
/* The device sends what was queued (one TX kick); frames it could not send yet: the count. */
int us_dev_flush(struct us_stack *st);
