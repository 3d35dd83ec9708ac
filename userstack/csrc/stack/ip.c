/* ip.c: IP input dispatch and output (see stack.h). */
#include <string.h>
#include "stack.h"

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

void us_ip_input(struct us_stack *st, const struct us_frame *f)
{
	struct us_parsed p;
	struct us_stats *c = st->stats;    /* loaded once (the build has no strict aliasing) */
	c->rx_frames++;
	c->rx_bytes += f->len;
	int r = us_frame_parse(f->data, f->len, st->parse_flags, &p);
	if (r) {
		switch (r) {
		case US_WIRE_BAD_CSUM: c->rx_bad_csum++; break;
		case US_WIRE_FRAGMENT: c->rx_fragment++; break;
		case US_WIRE_UNSUPPORTED: c->rx_other_proto++; break;
		default: c->rx_malformed++; break;
		}
		return;
	}
	c->rx_csum_partial += p.csum_partial;
	struct us_addr dst = { .family = p.ip.family };
	memcpy(dst.a, p.ip.dst, p.ip.family == US_AF4 ? 4 : 16);
	if (!us_is_local_addr(st, &dst)) {
		c->rx_not_local++;
		return;
	}
	if (p.ip.proto == US_IPPROTO_UDP) {
		us_udp_input(st, &p);
	} else {
		c->rx_tcp++;
		us_tcp_input(st, &p);
	}
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
