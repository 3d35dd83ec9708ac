/* ip.c: IP + Ethernet output, the stack's addresses and claimed tuples, the device flush (ip.h).
 * Input is the poll loop's (poll.c): it checks a frame once and hands it to UDP or TCP. */
#include <string.h>
#include "ip.h"
#include "neigh.h"
#include "../dev/xsk.h"

bool us_is_local_addr(const struct us_stack *st, const struct us_addr *a)
{
	for (uint32_t i = 0; i < st->desc.naddrs; i++)
		if (us_addr_eq(&st->desc.addrs[i], a))
			return true;
	return false;
}

const struct us_addr *us_pick_source(const struct us_stack *st, uint8_t family)
{
	for (uint32_t i = 0; i < st->desc.naddrs; i++)
		if (st->desc.addrs[i].family == family)
			return &st->desc.addrs[i];
	return NULL;
}

bool us_tuple_claimed(const struct us_stack *st, uint8_t proto, const struct us_endpoint *ep)
{
	for (uint32_t i = 0; i < st->desc.ntuples; i++) {
		const struct us_tuple *t = &st->desc.tuples[i];
		if (t->proto != proto || t->port != ep->port || t->addr.family != ep->addr.family)
			continue;
		if (us_addr_is_any(&t->addr) || us_addr_eq(&t->addr, &ep->addr))
			return true;
	}
	return false;
}

void us_ip_output(struct us_stack *st, struct us_frame *f, const struct us_addr *src,
		  const struct us_addr *dst, uint8_t proto, uint32_t l4len)
{
	uint8_t *p = f->data;
	uint16_t type;
	if (dst->family == US_AF4) {
		us_ipv4_emit(p + US_ETH_HLEN, src->a, dst->a, proto, l4len, 64, st->ip_id++);
		type = US_ETH_P_IPV4;
	} else {
		us_ipv6_emit(p + US_ETH_HLEN, src->a, dst->a, proto, l4len, 64);
		type = US_ETH_P_IPV6;
	}
	static const uint8_t unknown[6];
	us_eth_emit(p, unknown, st->desc.mac, type);   /* destination MAC: us_neigh_output */
	f->len = us_l3_offset(dst->family) + l4len;
	us_neigh_output(st, dst, f);
}

int us_dev_flush(struct us_stack *st)
{
	int left = st->dev->ops->flush(st->dev);
	if (st->is_xdev)
		us_xdev_kicks(st->base_dev, &st->stats->tx_kicks, &st->stats->tx_kick_again);
	return left;
}
