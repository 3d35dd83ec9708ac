/* neigh.h: the destination -> MAC cache (neigh.c). */
#pragma once
#include "stack.h"

/* Frame f has everything but the destination MAC: send it, or hold it, or drop it. */
void us_neigh_output(struct us_stack *st, const struct us_addr *dst, struct us_frame *f);
void us_neigh_update(struct us_stack *st, const struct us_addr *dst, const uint8_t *mac);
void us_neigh_timers(struct us_stack *st);
void us_neigh_flush_all(struct us_stack *st);  /* drop everything held (close) */
