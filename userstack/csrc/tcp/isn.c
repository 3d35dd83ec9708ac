/* isn.c: keyed hashing (SipHash), initial sequence numbers (RFC 6528) and per-connection
 * timestamp offsets (RFC 7323 5.4). */
#include <string.h>

#include "tcp_int.h"

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND do { \
	v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32); \
	v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2; \
	v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0; \
	v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32); \
} while (0)

/* SipHash-c-d (Aumasson & Bernstein): 2-4 for ISNs, 1-3 for the connection table. */
uint64_t siphash(const uint64_t key[2], const void *data, size_t len, int crounds, int drounds)
{
	uint64_t v0 = 0x736f6d6570736575ull ^ key[0], v1 = 0x646f72616e646f6dull ^ key[1];
	uint64_t v2 = 0x6c7967656e657261ull ^ key[0], v3 = 0x7465646279746573ull ^ key[1];
	const uint8_t *p = data;
	size_t n = len & ~(size_t)7;
	for (size_t i = 0; i < n; i += 8) {
		uint64_t m;
		memcpy(&m, p + i, 8);                  /* little-endian hosts only (x86-64, arm64) */
		v3 ^= m;
		for (int r = 0; r < crounds; r++)
			SIPROUND;
		v0 ^= m;
	}
	uint64_t b = (uint64_t)len << 56;
	for (size_t i = 0; i < (len & 7); i++)
		b |= (uint64_t)p[n + i] << (8 * i);
	v3 ^= b;
	for (int r = 0; r < crounds; r++)
		SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	for (int r = 0; r < drounds; r++)
		SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

/* The 4-tuple as hashed: local address, remote address, ports (addresses sized by family). */
static size_t tuple_bytes(uint8_t *b, const struct us_endpoint *l, const struct us_endpoint *r)
{
	size_t al = (size_t)us_addr_len(&l->addr);
	memcpy(b, l->addr.a, al);
	memcpy(b + al, r->addr.a, al);
	b[2 * al] = (uint8_t)(l->port >> 8); b[2 * al + 1] = (uint8_t)l->port;
	b[2 * al + 2] = (uint8_t)(r->port >> 8); b[2 * al + 3] = (uint8_t)r->port;
	return 2 * al + 4;
}

uint32_t tcp_hash_tuple(const struct tcp_stack *ts, const struct us_endpoint *l, const struct us_endpoint *r)
{
	uint8_t b[36];
	return (uint32_t)siphash(ts->hkey, b, tuple_bytes(b, l, r), 1, 3);
}

/* RFC 6528 3: ISN = M + F(localip, localport, remoteip, remoteport, secretkey), M a 4 us timer. */
uint32_t tcp_isn(const struct tcp_stack *ts, const struct us_endpoint *l, const struct us_endpoint *r, uint64_t now)
{
	uint8_t b[36];
	return (uint32_t)siphash(ts->isn_key, b, tuple_bytes(b, l, r), 2, 4) + (uint32_t)(now / 4);
}

/* RFC 7323 5.4: a random offset per connection, so TSval reveals no host clock. */
uint32_t tcp_ts_offset(const struct tcp_stack *ts, const struct us_endpoint *l, const struct us_endpoint *r)
{
	uint8_t b[36];
	return (uint32_t)siphash(ts->ts_key, b, tuple_bytes(b, l, r), 2, 4);
}
