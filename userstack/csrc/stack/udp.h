/* udp.h: UDP (udp.c): input from the poll loop; the sockets' calls are ../api.h's us_udp_*. */
#pragma once
#include "stack.h"

void us_udp_input(struct us_stack *st, const struct us_parsed *p);
