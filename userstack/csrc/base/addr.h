/* addr.h: addresses and endpoints shared by every layer of the user-level stack. */
#pragma once
#include <stdint.h>
#include <string.h>

#define US_AF4 4
#define US_AF6 6

/* An IPv4 or IPv6 address; IPv4 sits in a[0..3] with the rest zero, so comparisons are memcmp. */
struct us_addr {
	uint8_t family;          /* US_AF4 or US_AF6; 0 = unspecified */
	uint8_t pad[3];
	uint8_t a[16];           /* network order */
};

struct us_endpoint {
	struct us_addr addr;
	uint16_t port;           /* host order */
	uint16_t pad;
};

static inline int us_addr_eq(const struct us_addr *x, const struct us_addr *y)
{
	return x->family == y->family && memcmp(x->a, y->a, 16) == 0;
}

static inline int us_addr_is_any(const struct us_addr *x)
{
	static const uint8_t zero[16];
	return memcmp(x->a, zero, 16) == 0;
}

static inline int us_addr_len(const struct us_addr *x)
{
	return x->family == US_AF4 ? 4 : 16;
}
