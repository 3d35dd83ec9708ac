/* tcp_ring.h: byte ring for the send and receive buffers.
 *
 * `len` bytes of in-order data start at `head`. The receive side also writes out-of-order data
 * beyond `len` at its offset (tcp_ring_write_at) and extends `len` once the gap is filled. The
 * ring goes back to offset 0 whenever it is empty, so small request/response traffic stays in the
 * first pages (the pages of a large, mostly idle buffer are never touched).
 */
#pragma once
#include <stdint.h>
#include <string.h>

struct tcp_ring {
	uint8_t *buf;
	uint32_t cap, head, len;
};

static inline uint32_t tcp_ring_free(const struct tcp_ring *r) { return r->cap - r->len; }

/* Copy n bytes to offset off (from head); the caller ensures off + n <= cap. */
static inline void tcp_ring_write_at(struct tcp_ring *r, uint32_t off, const uint8_t *p, uint32_t n)
{
	uint32_t pos = r->head + off;
	if (pos >= r->cap)
		pos -= r->cap;
	uint32_t first = r->cap - pos < n ? r->cap - pos : n;
	memcpy(r->buf + pos, p, first);
	if (n > first)
		memcpy(r->buf, p + first, n - first);
}

static inline uint32_t tcp_ring_append(struct tcp_ring *r, const uint8_t *p, uint32_t n)
{
	uint32_t room = tcp_ring_free(r);
	if (n > room)
		n = room;
	if (n) {
		tcp_ring_write_at(r, r->len, p, n);
		r->len += n;
	}
	return n;
}

/* Up to n bytes at offset off as two pieces; returns the bytes described. */
static inline uint32_t tcp_ring_peek(const struct tcp_ring *r, uint32_t off, uint32_t n,
				     const uint8_t **p1, uint32_t *l1, const uint8_t **p2, uint32_t *l2)
{
	if (off >= r->len) {
		*p1 = *p2 = NULL; *l1 = *l2 = 0;
		return 0;
	}
	if (n > r->len - off)
		n = r->len - off;
	uint32_t pos = r->head + off;
	if (pos >= r->cap)
		pos -= r->cap;
	uint32_t first = r->cap - pos < n ? r->cap - pos : n;
	*p1 = r->buf + pos; *l1 = first;
	*p2 = n > first ? r->buf : NULL; *l2 = n - first;
	return n;
}

/* Drop n bytes from the front. `keep_pos`: do not rewind an empty ring (out-of-order data
 * may sit beyond len). */
static inline void tcp_ring_consume(struct tcp_ring *r, uint32_t n, int keep_pos)
{
	if (n > r->len)
		n = r->len;
	r->head += n;
	if (r->head >= r->cap)
		r->head -= r->cap;
	r->len -= n;
	if (r->len == 0 && !keep_pos)
		r->head = 0;
}
