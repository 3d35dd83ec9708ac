/* tcp_wire.c: parsing and building TCP headers and options. */
#include "tcp_wire.h"

#include <string.h>

static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline void wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static inline void wr32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

/* Options: an option whose length is below 2 or runs past the header ends parsing; what was
 * read until then stands. Wrong-length known options are ignored. */
static void parse_options(const uint8_t *o, size_t n, struct tcp_seg *s)
{
	size_t i = 0;
	while (i < n) {
		uint8_t kind = o[i];
		if (kind == TCPOPT_EOL)
			break;
		if (kind == TCPOPT_NOP) {
			i++;
			continue;
		}
		if (i + 1 >= n)
			break;
		uint8_t l = o[i + 1];
		if (l < 2 || i + l > n)
			break;
		const uint8_t *v = o + i + 2;
		switch (kind) {
		case TCPOPT_MSS:
			if (l == 4) {
				s->has_mss = 1;
				s->mss = rd16(v);
			}
			break;
		case TCPOPT_WS:
			if (l == 3) {
				s->has_ws = 1;
				s->ws = v[0] > TCP_MAX_WSCALE ? TCP_MAX_WSCALE : v[0];
			}
			break;
		case TCPOPT_SACK_PERM:
			if (l == 2)
				s->sack_perm = 1;
			break;
		case TCPOPT_TS:
			if (l == 10) {
				s->has_ts = 1;
				s->tsval = rd32(v);
				s->tsecr = rd32(v + 4);
			}
			break;
		case TCPOPT_SACK:
			if (l >= 10 && (l - 2) % 8 == 0) {
				unsigned nb = (unsigned)(l - 2) / 8;
				if (nb > TCP_MAX_SACK)
					nb = TCP_MAX_SACK;
				for (unsigned b = 0; b < nb; b++) {
					s->sack[b][0] = rd32(v + 8 * b);
					s->sack[b][1] = rd32(v + 8 * b + 4);
				}
				s->nsack = (uint8_t)nb;
			}
			break;
		default:
			break;
		}
		i += l;
	}
}

int tcp_parse(const uint8_t *p, size_t len, struct tcp_seg *s)
{
	if (len < TCP_HLEN)
		return -1;
	size_t doff = (size_t)(p[12] >> 4) * 4;
	if (doff < TCP_HLEN || doff > len)
		return -1;
	memset(s, 0, sizeof(*s));
	s->sport = rd16(p);
	s->dport = rd16(p + 2);
	s->seq = rd32(p + 4);
	s->ack = rd32(p + 8);
	s->flags = p[13];
	s->wnd = rd16(p + 14);
	s->urp = rd16(p + 18);
	s->data = p + doff;
	s->len = (uint32_t)(len - doff);
	if (doff > TCP_HLEN)
		parse_options(p + TCP_HLEN, doff - TCP_HLEN, s);
	if (!(s->flags & TH_SYN)) {
		s->has_mss = s->has_ws = s->sack_perm = 0;
	}
	return 0;
}

size_t tcp_opts_len(const struct tcp_opts *o)
{
	size_t n = 0;
	if (o->mss)
		n += 4;
	if (o->ts)
		n += 12;                       /* NOP NOP TS, or SACK_PERM TS on a SYN */
	else if (o->sack_perm)
		n += 4;                        /* NOP NOP SACK_PERM */
	if (o->ws >= 0)
		n += 4;                        /* NOP WS */
	if (o->nsack)
		n += 4 + 8 * (size_t)o->nsack; /* NOP NOP SACK */
	return TCP_HLEN + n;
}

size_t tcp_build(uint8_t *b, uint16_t sport, uint16_t dport, uint32_t seq, uint32_t ack,
		 uint8_t flags, uint16_t wnd, const struct tcp_opts *o)
{
	uint8_t *p = b + TCP_HLEN;
	/* Linux's layout, every option 4-aligned: MSS, SACK_PERM+TS, NOP+WS, NOP NOP+SACK. */
	if (o->mss) {
		p[0] = TCPOPT_MSS; p[1] = 4; wr16(p + 2, o->mss);
		p += 4;
	}
	if (o->ts) {
		if (o->sack_perm) {
			p[0] = TCPOPT_SACK_PERM; p[1] = 2;
		} else {
			p[0] = TCPOPT_NOP; p[1] = TCPOPT_NOP;
		}
		p[2] = TCPOPT_TS; p[3] = 10;
		wr32(p + 4, o->tsval);
		wr32(p + 8, o->tsecr);
		p += 12;
	} else if (o->sack_perm) {
		p[0] = TCPOPT_NOP; p[1] = TCPOPT_NOP; p[2] = TCPOPT_SACK_PERM; p[3] = 2;
		p += 4;
	}
	if (o->ws >= 0) {
		p[0] = TCPOPT_NOP; p[1] = TCPOPT_WS; p[2] = 3; p[3] = (uint8_t)o->ws;
		p += 4;
	}
	if (o->nsack) {
		p[0] = TCPOPT_NOP; p[1] = TCPOPT_NOP; p[2] = TCPOPT_SACK; p[3] = (uint8_t)(2 + 8 * o->nsack);
		p += 4;
		for (unsigned i = 0; i < o->nsack; i++) {
			wr32(p, o->sack[i][0]);
			wr32(p + 4, o->sack[i][1]);
			p += 8;
		}
	}
	size_t hl = (size_t)(p - b);
	wr16(b, sport);
	wr16(b + 2, dport);
	wr32(b + 4, seq);
	wr32(b + 8, ack);
	b[12] = (uint8_t)((hl / 4) << 4);
	b[13] = flags;
	wr16(b + 14, wnd);
	wr16(b + 16, 0);
	wr16(b + 18, 0);
	return hl;
}
