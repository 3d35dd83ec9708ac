/* clock.h: the stack's clock, CLOCK_MONOTONIC in ns (inline: read on every poll). */
#pragma once
#include <stdint.h>
#include <time.h>

static inline uint64_t us_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}
