/* timer.h: a hierarchical timing wheel (Varghese & Lauck) with microsecond ticks.
 *
 * Six levels of 64 slots: level k holds timers due within 64^(k+1) us of the wheel's clock, in
 * slots of 64^k us, and cascades a slot into the lower levels when the clock reaches it, so every
 * timer fires exactly at its tick, never early and never late. Deadlines further than 2^36 us
 * (19 h) are parked in the top level and re-filed when they come round. Per-level occupancy
 * bitmaps make "next deadline" and skipping idle time O(levels). Add and delete are O(1).
 *
 * Pure data structure: no clock reads; the owner passes the time. Not thread-safe.
 *
 *     struct tw_wheel w; tw_init(&w, now);
 *     tw_add(&w, &obj->t, now + 200000);
 *     for (struct tw_timer *t; (t = tw_expire(&w, now)); ) handle(container_of(t));
 *     sleep until tw_next(&w)
 */
#pragma once
#include <stdint.h>

#define TW_BITS   6
#define TW_SLOTS  64                  /* 1 << TW_BITS */
#define TW_LEVELS 6
#define TW_NEVER  UINT64_MAX

struct tw_timer {
	struct tw_timer *next, **pprev;  /* pprev == NULL: not pending */
	uint64_t expires;
	uint8_t level, slot;
};

struct tw_wheel {
	uint64_t now;                              /* every timer due before now has fired */
	uint64_t occupied[TW_LEVELS];              /* bit s: slot s of that level is non-empty */
	struct tw_timer *slots[TW_LEVELS][TW_SLOTS];
	uint32_t count;
};

void tw_init(struct tw_wheel *w, uint64_t now);
/* (Re)arm t to fire at `expires` (absolute us); a time in the past fires at the next tw_expire. */
void tw_add(struct tw_wheel *w, struct tw_timer *t, uint64_t expires);
void tw_del(struct tw_wheel *w, struct tw_timer *t);
static inline int tw_pending(const struct tw_timer *t) { return t->pprev != 0; }
/* Remove and return one timer due at or before now, or NULL when none is (advances the clock). */
struct tw_timer *tw_expire(struct tw_wheel *w, uint64_t now);
/* Earliest time tw_expire can return something (a cascade point is a lower bound), TW_NEVER if
 * the wheel is empty. */
uint64_t tw_next(const struct tw_wheel *w);
