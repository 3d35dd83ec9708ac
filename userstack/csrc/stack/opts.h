/* opts.h: per-stack option text parsed into structs (opts.c); the stack applies them (stack.c).
 * Parsing only: nothing here touches a stack. */
#pragma once
#include <stdint.h>
#include "../dev/fault.h"
#include "../tcp/tcp.h"

/* TCP options of a stack: the core's config plus the glue's own knobs (XDPSTACK_TCP). */
struct us_tcp_opts {
	struct tcp_config cfg;
	uint32_t port_pool;        /* ephemeral ports kept claimed ahead per local address (4) */
	uint32_t linger_ms;        /* us_stack_close waits this long for closing connections (1000) */
};

void us_tcp_opts_default(struct us_tcp_opts *o);
int us_tcp_opts_parse(struct us_tcp_opts *o, const char *spec);   /* XDPSTACK_TCP's words */
int us_tcp_cc_parse(const char *v, uint8_t *cc);                  /* XDPSTACK_CC's value */
int us_faults_parse(struct us_fault_config *c, const char *spec); /* XDPSTACK_FAULTS' words */
