/* poll.h: the poll loop (poll.c), for the stack object above it. */
#pragma once
#include "stack.h"

void us_poll_install(struct us_stack *st);     /* the hooks files below call (stack.h) */
int us_poll_locked(struct us_stack *st);       /* one round of processing, never sleeps */
/* Sleep in the stack's epoll (lock released meanwhile) up to timeout_ms; handles wake, timer, control. */
int us_sleep_locked(struct us_stack *st, int timeout_ms);
