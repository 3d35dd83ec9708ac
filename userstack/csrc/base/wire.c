/* wire.c: checked header views and the Internet checksum (see wire.h). */
#include <string.h>
#include <arpa/inet.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include "wire.h"

static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline void wr16(uint8_t *p, uint16_t v) { p[0] = v >> 8; p[1] = v & 0xff; }

/* ---- checksum ----
 * Sums are of 16-bit words as loaded natively from memory; the one's-complement sum is byte-order
 * independent, so the folded result stored natively is the network-order checksum. Pieces summed
 * one after another must each have an even length, except the last. */
uint64_t us_csum_add(uint64_t sum, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint32_t w;
#ifdef __SSE2__
	/* 32-bit words widened into 64-bit lanes, four independent accumulators (no carries to
	 * track: a lane would need 2^32 words to overflow) */
	__m128i z = _mm_setzero_si128(), a0 = z, a1 = z, a2 = z, a3 = z;
	while (len >= 64) {
		__m128i x0 = _mm_loadu_si128((const __m128i *)p);
		__m128i x1 = _mm_loadu_si128((const __m128i *)(p + 16));
		__m128i x2 = _mm_loadu_si128((const __m128i *)(p + 32));
		__m128i x3 = _mm_loadu_si128((const __m128i *)(p + 48));
		a0 = _mm_add_epi64(a0, _mm_add_epi64(_mm_unpacklo_epi32(x0, z), _mm_unpackhi_epi32(x0, z)));
		a1 = _mm_add_epi64(a1, _mm_add_epi64(_mm_unpacklo_epi32(x1, z), _mm_unpackhi_epi32(x1, z)));
		a2 = _mm_add_epi64(a2, _mm_add_epi64(_mm_unpacklo_epi32(x2, z), _mm_unpackhi_epi32(x2, z)));
		a3 = _mm_add_epi64(a3, _mm_add_epi64(_mm_unpacklo_epi32(x3, z), _mm_unpackhi_epi32(x3, z)));
		p += 64; len -= 64;
	}
	uint64_t lanes[2];
	_mm_storeu_si128((__m128i *)lanes, _mm_add_epi64(_mm_add_epi64(a0, a1), _mm_add_epi64(a2, a3)));
	sum += lanes[0];
	sum += lanes[1];
#endif
	while (len >= 16) {
		uint32_t a, b, c, d;
		memcpy(&a, p, 4); memcpy(&b, p + 4, 4); memcpy(&c, p + 8, 4); memcpy(&d, p + 12, 4);
		sum += (uint64_t)a + b + c + d;
		p += 16; len -= 16;
	}
	while (len >= 4) {
		memcpy(&w, p, 4);
		sum += w;
		p += 4; len -= 4;
	}
	if (len >= 2) {
		uint16_t h;
		memcpy(&h, p, 2);
		sum += h;
		p += 2; len -= 2;
	}
	if (len) {
		uint8_t last[2] = { p[0], 0 };
		uint16_t h;
		memcpy(&h, last, 2);
		sum += h;
	}
	return sum;
}

uint16_t us_csum_fold(uint64_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

uint64_t us_csum_pseudo(uint8_t family, const uint8_t *src, const uint8_t *dst, uint8_t proto,
			uint32_t len)
{
	int alen = family == US_AF4 ? 4 : 16;
	uint64_t sum = us_csum_add(0, src, alen);
	sum = us_csum_add(sum, dst, alen);
	if (family == US_AF4) {            /* zero, proto, 16-bit length */
		uint8_t t4[4] = { 0, proto, (uint8_t)(len >> 8), (uint8_t)len };
		return us_csum_add(sum, t4, 4);
	}
	/* 32-bit length, three zero bytes, next header */
	uint8_t t6[8] = { (uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len,
			  0, 0, 0, proto };
	return us_csum_add(sum, t6, 8);
}

uint16_t us_csum_update16(uint16_t csum, uint16_t old, uint16_t new_)
{
	/* RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m') */
	uint32_t s = (uint16_t)~csum + (uint32_t)(uint16_t)~old + new_;
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

int us_csum_is_partial(uint64_t pseudo, const uint8_t *field)
{
	uint16_t f, want = (uint16_t)~us_csum_fold(pseudo);   /* the sum folded, not complemented */
	memcpy(&f, field, 2);
	return f == want;
}

/* The transport checksum of l4 (len bytes, its field at l4 + off): 0 complete and right, 1 partial
 * (only with US_PARSE_LOCAL_PEER), -1 wrong. The partial case costs no payload sum. */
static int l4_csum(const struct us_ip_view *ip, uint8_t proto, const uint8_t *l4, uint32_t len,
		   uint32_t off, uint32_t flags)
{
	uint64_t pseudo = us_csum_pseudo(ip->family, ip->src, ip->dst, proto, len);
	if ((flags & US_PARSE_LOCAL_PEER) && us_csum_is_partial(pseudo, l4 + off))
		return 1;
	return us_csum_fold(us_csum_add(pseudo, l4, len)) == 0 ? 0 : -1;
}

int us_csum_complete(uint8_t *frame, uint32_t len)
{
	struct us_eth_view eth;
	struct us_ip_view ip;
	if (us_eth_parse(frame, len, &eth))
		return 0;
	uint8_t *l3 = frame + eth.hlen;
	int r = eth.type == US_ETH_P_IPV4 ? us_ipv4_parse(l3, len - eth.hlen, &ip)
	      : eth.type == US_ETH_P_IPV6 ? us_ipv6_parse(l3, len - eth.hlen, &ip) : US_WIRE_UNSUPPORTED;
	if (r)
		return 0;
	uint8_t *l4 = l3 + ip.hlen;
	uint32_t l4len = ip.payload_len, off;
	if (ip.proto == US_IPPROTO_UDP && l4len >= US_UDP_HLEN && rd16(l4 + 4) >= US_UDP_HLEN &&
	    rd16(l4 + 4) <= l4len) {
		l4len = rd16(l4 + 4);
		off = 6;
	} else if (ip.proto == US_IPPROTO_TCP && l4len >= US_TCP_HLEN) {
		off = 16;
	} else {
		return 0;
	}
	uint64_t pseudo = us_csum_pseudo(ip.family, ip.src, ip.dst, ip.proto, l4len);
	if (!us_csum_is_partial(pseudo, l4 + off))
		return 0;
	l4[off] = l4[off + 1] = 0;
	uint16_t c = us_csum_fold(us_csum_add(pseudo, l4, l4len));
	if (c == 0 && ip.proto == US_IPPROTO_UDP)
		c = 0xffff;                    /* 0 would mean "no checksum" */
	memcpy(l4 + off, &c, 2);
	return 1;
}

/* ---- parse ---- */
int us_eth_parse(const uint8_t *p, uint32_t len, struct us_eth_view *v)
{
	if (len < US_ETH_HLEN)
		return US_WIRE_TRUNCATED;
	v->dst = p;
	v->src = p + 6;
	v->type = rd16(p + 12);
	v->hlen = US_ETH_HLEN;
	for (int tags = 0; tags < 2 && (v->type == US_ETH_P_8021Q || v->type == US_ETH_P_8021AD);
	     tags++) {
		if (len < (uint32_t)v->hlen + US_VLAN_HLEN)
			return US_WIRE_TRUNCATED;
		v->type = rd16(p + v->hlen + 2);
		v->hlen += US_VLAN_HLEN;
	}
	if (v->type == US_ETH_P_8021Q || v->type == US_ETH_P_8021AD)
		return US_WIRE_UNSUPPORTED;
	return US_WIRE_OK;
}

int us_ipv4_parse(const uint8_t *p, uint32_t len, struct us_ip_view *v)
{
	if (len < US_IPV4_HLEN)
		return US_WIRE_TRUNCATED;
	if (p[0] >> 4 != 4)
		return US_WIRE_MALFORMED;
	uint32_t hlen = (p[0] & 0xf) * 4u;
	if (hlen < US_IPV4_HLEN)
		return US_WIRE_MALFORMED;
	if (len < hlen)
		return US_WIRE_TRUNCATED;
	uint32_t total = rd16(p + 2);
	if (total < hlen)
		return US_WIRE_MALFORMED;
	if (total > len)
		return US_WIRE_TRUNCATED;
	if (us_csum_fold(us_csum_add(0, p, hlen)) != 0)
		return US_WIRE_BAD_CSUM;
	if (rd16(p + 6) & 0x3fff)          /* MF or a fragment offset */
		return US_WIRE_FRAGMENT;
	v->family = US_AF4;
	v->tos = p[1];
	v->ttl = p[8];
	v->proto = p[9];
	v->src = p + 12;
	v->dst = p + 16;
	v->hlen = hlen;
	v->payload = p + hlen;
	v->payload_len = total - hlen;
	return US_WIRE_OK;
}

int us_ipv6_parse(const uint8_t *p, uint32_t len, struct us_ip_view *v)
{
	if (len < US_IPV6_HLEN)
		return US_WIRE_TRUNCATED;
	if (p[0] >> 4 != 6)
		return US_WIRE_MALFORMED;
	uint32_t end = US_IPV6_HLEN + rd16(p + 4);
	if (end > len)
		return US_WIRE_TRUNCATED;
	uint8_t nh = p[6];
	uint32_t off = US_IPV6_HLEN;
	int i;
	for (i = 0; i < US_IPV6_EXT_MAX; i++) {
		if (nh == 0 || nh == 43 || nh == 60) {      /* hop-by-hop, routing, destination options */
			if (off + 8 > end)
				return US_WIRE_TRUNCATED;
			uint32_t elen = (p[off + 1] + 1u) * 8;
			if (off + elen > end)
				return US_WIRE_TRUNCATED;
			nh = p[off];
			off += elen;
		} else if (nh == 44) {
			return US_WIRE_FRAGMENT;
		} else {
			break;
		}
	}
	if (i == US_IPV6_EXT_MAX && (nh == 0 || nh == 43 || nh == 60 || nh == 44))
		return US_WIRE_UNSUPPORTED;
	v->family = US_AF6;
	v->tos = (uint8_t)(rd16(p) >> 4);
	v->ttl = p[7];
	v->proto = nh;
	v->src = p + 8;
	v->dst = p + 24;
	v->hlen = off;
	v->payload = p + off;
	v->payload_len = end - off;
	return US_WIRE_OK;
}

int us_udp_parse(const struct us_ip_view *ip, uint32_t flags, struct us_udp_view *v, uint8_t *partial)
{
	const uint8_t *p = ip->payload;
	if (ip->payload_len < US_UDP_HLEN)
		return US_WIRE_TRUNCATED;
	uint16_t ulen = rd16(p + 4);
	if (ulen < US_UDP_HLEN)
		return US_WIRE_MALFORMED;
	if (ulen > ip->payload_len)
		return US_WIRE_TRUNCATED;
	v->sport = rd16(p);
	v->dport = rd16(p + 2);
	v->len = ulen;
	v->csum = rd16(p + 6);
	v->data = p + US_UDP_HLEN;
	v->data_len = ulen - US_UDP_HLEN;
	*partial = 0;
	if (v->csum == 0) {
		/* IPv4: the sender computed none. IPv6: a zero checksum is invalid (RFC 8200 8.1). */
		return ip->family == US_AF4 ? US_WIRE_OK : US_WIRE_BAD_CSUM;
	}
	int c = l4_csum(ip, US_IPPROTO_UDP, p, ulen, 6, flags);
	if (c < 0)
		return US_WIRE_BAD_CSUM;
	*partial = (uint8_t)c;
	return US_WIRE_OK;
}

int us_tcp_check(const struct us_ip_view *ip, uint32_t flags, uint8_t *partial)
{
	const uint8_t *p = ip->payload;
	if (ip->payload_len < US_TCP_HLEN)
		return US_WIRE_TRUNCATED;
	uint32_t hlen = (p[12] >> 4) * 4u;
	if (hlen < US_TCP_HLEN)
		return US_WIRE_MALFORMED;
	if (hlen > ip->payload_len)
		return US_WIRE_TRUNCATED;
	int c = l4_csum(ip, US_IPPROTO_TCP, p, ip->payload_len, 16, flags);
	if (c < 0)
		return US_WIRE_BAD_CSUM;
	*partial = (uint8_t)c;
	return US_WIRE_OK;
}

int us_frame_parse(const uint8_t *p, uint32_t len, uint32_t flags, struct us_parsed *out)
{
	out->csum_partial = 0;
	int r = us_eth_parse(p, len, &out->eth);
	if (r)
		return r;
	const uint8_t *l3 = p + out->eth.hlen;
	uint32_t l3len = len - out->eth.hlen;
	if (out->eth.type == US_ETH_P_IPV4)
		r = us_ipv4_parse(l3, l3len, &out->ip);
	else if (out->eth.type == US_ETH_P_IPV6)
		r = us_ipv6_parse(l3, l3len, &out->ip);
	else
		return US_WIRE_UNSUPPORTED;
	if (r)
		return r;
	if (out->ip.proto == US_IPPROTO_UDP)
		return us_udp_parse(&out->ip, flags, &out->udp, &out->csum_partial);
	if (out->ip.proto == US_IPPROTO_TCP)
		return us_tcp_check(&out->ip, flags, &out->csum_partial);
	return US_WIRE_UNSUPPORTED;
}

/* ---- emit ---- */
void us_eth_emit(uint8_t *p, const uint8_t *dst, const uint8_t *src, uint16_t type)
{
	memcpy(p, dst, 6);
	memcpy(p + 6, src, 6);
	wr16(p + 12, type);
}

void us_ipv4_emit(uint8_t *p, const uint8_t *src, const uint8_t *dst, uint8_t proto,
		  uint16_t payload_len, uint8_t ttl, uint16_t id)
{
	p[0] = 0x45;
	p[1] = 0;
	wr16(p + 2, US_IPV4_HLEN + payload_len);
	wr16(p + 4, id);
	wr16(p + 6, 0x4000);               /* DF: the stack never fragments */
	p[8] = ttl;
	p[9] = proto;
	p[10] = p[11] = 0;
	memcpy(p + 12, src, 4);
	memcpy(p + 16, dst, 4);
	uint16_t c = us_csum_fold(us_csum_add(0, p, US_IPV4_HLEN));
	memcpy(p + 10, &c, 2);
}

void us_ipv6_emit(uint8_t *p, const uint8_t *src, const uint8_t *dst, uint8_t proto,
		  uint16_t payload_len, uint8_t hop_limit)
{
	p[0] = 0x60;
	p[1] = p[2] = p[3] = 0;
	wr16(p + 4, payload_len);
	p[6] = proto;
	p[7] = hop_limit;
	memcpy(p + 8, src, 16);
	memcpy(p + 24, dst, 16);
}

void us_udp_emit(uint8_t *p, uint8_t family, const uint8_t *src, const uint8_t *dst,
		 uint16_t sport, uint16_t dport, uint16_t data_len)
{
	uint16_t ulen = US_UDP_HLEN + data_len;
	wr16(p, sport);
	wr16(p + 2, dport);
	wr16(p + 4, ulen);
	p[6] = p[7] = 0;
	uint64_t sum = us_csum_pseudo(family, src, dst, US_IPPROTO_UDP, ulen);
	uint16_t c = us_csum_fold(us_csum_add(sum, p, ulen));
	if (c == 0)
		c = 0xffff;                    /* 0 means "no checksum" (IPv4) or invalid (IPv6) */
	memcpy(p + 6, &c, 2);
}
