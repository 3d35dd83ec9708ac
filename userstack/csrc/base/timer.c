/* timer.c: the hierarchical timing wheel (see timer.h). */
#include "timer.h"

#include <stddef.h>

#define MASK (TW_SLOTS - 1)

void tw_init(struct tw_wheel *w, uint64_t now)
{
	for (int k = 0; k < TW_LEVELS; k++) {
		w->occupied[k] = 0;
		for (unsigned s = 0; s < TW_SLOTS; s++)
			w->slots[k][s] = NULL;
	}
	w->now = now;
	w->count = 0;
}

static void link_slot(struct tw_wheel *w, struct tw_timer *t, unsigned level, unsigned slot)
{
	struct tw_timer **head = &w->slots[level][slot];
	t->level = (uint8_t)level;
	t->slot = (uint8_t)slot;
	t->next = *head;
	if (t->next)
		t->next->pprev = &t->next;
	t->pprev = head;
	*head = t;
	w->occupied[level] |= 1ull << slot;
}

/* File t by its distance from the wheel's clock: level k holds deltas below 64^(k+1). */
static void file(struct tw_wheel *w, struct tw_timer *t)
{
	uint64_t exp = t->expires;
	if (exp < w->now)
		exp = w->now;
	uint64_t delta = exp - w->now;
	unsigned level = 0;
	while (level < TW_LEVELS - 1 && delta >= (1ull << (TW_BITS * (level + 1))))
		level++;
	if (level == TW_LEVELS - 1 && delta >= (1ull << (TW_BITS * TW_LEVELS)))
		exp = w->now + (1ull << (TW_BITS * TW_LEVELS)) - 1;   /* parked: re-filed on cascade */
	link_slot(w, t, level, (unsigned)(exp >> (TW_BITS * level)) & MASK);
}

void tw_del(struct tw_wheel *w, struct tw_timer *t)
{
	if (!t->pprev)
		return;
	*t->pprev = t->next;
	if (t->next)
		t->next->pprev = t->pprev;
	if (!w->slots[t->level][t->slot])
		w->occupied[t->level] &= ~(1ull << t->slot);
	t->pprev = NULL;
	t->next = NULL;
	w->count--;
}

void tw_add(struct tw_wheel *w, struct tw_timer *t, uint64_t expires)
{
	tw_del(w, t);
	t->expires = expires;
	file(w, t);
	w->count++;
}

/* Move every timer of slot (level, slot) down to where it now belongs. */
static void cascade(struct tw_wheel *w, unsigned level, unsigned slot)
{
	struct tw_timer *t = w->slots[level][slot];
	w->slots[level][slot] = NULL;
	w->occupied[level] &= ~(1ull << slot);
	while (t) {
		struct tw_timer *next = t->next;
		file(w, t);
		t = next;
	}
}

/* Rotate the bitmap so that bit 0 is slot `from`; the first set bit is then the distance. */
static int first_from(uint64_t bits, unsigned from)
{
	uint64_t r = from ? (bits >> from) | (bits << (TW_SLOTS - from)) : bits;
	return r ? __builtin_ctzll(r) : -1;
}

uint64_t tw_next(const struct tw_wheel *w)
{
	uint64_t best = TW_NEVER;
	for (unsigned k = 0; k < TW_LEVELS; k++) {
		if (!w->occupied[k])
			continue;
		unsigned shift = TW_BITS * k;
		unsigned cur = (unsigned)(w->now >> shift) & MASK;
		uint64_t when;
		if (k == 0) {
			when = w->now + (unsigned)first_from(w->occupied[0], cur);
		} else {
			/* Slot `cur` of a higher level was cascaded when the clock entered it: the
			 * next visit of any slot is 1..64 blocks ahead. */
			int d = first_from(w->occupied[k], (cur + 1) & MASK) + 1;
			when = ((w->now >> shift) + (unsigned)d) << shift;
		}
		if (when < best)
			best = when;
	}
	return best;
}

/* Set the clock to t (> w->now, no occupied event in between) and cascade at its boundaries. */
static void advance_to(struct tw_wheel *w, uint64_t t)
{
	w->now = t;
	for (unsigned k = 1; k < TW_LEVELS; k++) {
		unsigned shift = TW_BITS * k;
		if (t & ((1ull << shift) - 1))
			break;
		cascade(w, k, (unsigned)(t >> shift) & MASK);
	}
}

struct tw_timer *tw_expire(struct tw_wheel *w, uint64_t now)
{
	for (;;) {
		struct tw_timer *t = w->slots[0][w->now & MASK];
		if (t) {
			tw_del(w, t);
			return t;
		}
		if (w->now >= now)
			return NULL;
		uint64_t next = tw_next(w);
		if (next <= w->now)           /* cannot happen: slot 0 of now is empty */
			next = w->now + 1;
		if (next > now) {
			/* Nothing happens before now: jump, crossing only empty cascade points. */
			w->now = now;
			return NULL;
		}
		advance_to(w, next);
	}
}
