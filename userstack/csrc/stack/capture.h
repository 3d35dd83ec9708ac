/* capture.h: frames in and out copied for `xdpstack capture` (capture.c; layout ../base/capring.h). */
#pragma once
#include "stack.h"

/* The page the launcher shared has room for the capture area: use it. */
void us_cap_attach(struct us_stack *st, void *page, uint64_t size);
void us_cap_detach(struct us_stack *st);
/* On the control cadence of the poll loop: a capture started, changed or ended. */
void us_cap_poll(struct us_stack *st);
/* A frame the filter may want (call only when st->cap_dirs & dir: the fast path's one test). */
void us_cap_frame(struct us_stack *st, const uint8_t *data, uint32_t len, uint8_t dir);

static inline void us_cap(struct us_stack *st, const uint8_t *data, uint32_t len, uint8_t dir)
{
	if (__builtin_expect(st->cap_dirs & dir, 0))
		us_cap_frame(st, data, len, dir);
}
