/* tcp_stats.h: the counters of a stack's TCP (struct us_tcp_stats).
 *
 * One definition for everyone: the TCP core (tcp.h) counts into it, the stack keeps it in the
 * launcher's shared counters page after struct us_stats (struct us_shared_stats, ../api.h), and
 * us_tcp_stack_stats copies it out. Included by ../api.h and tcp.h; no dependencies.
 * The core counts the segment and connection fields; the stack the ephemeral-port ones. */
#pragma once
#include <stdint.h>

struct us_tcp_stats {
	uint64_t segs_in, segs_out, bytes_in, bytes_out;   /* bytes: payload */
	uint64_t bad_segs;                                 /* malformed TCP headers */
	uint64_t rst_in, rst_out;
	uint64_t no_socket;                                /* segment for no connection and no listener
	                                                    * (answered with a RST) */
	uint64_t retransmits, timeouts, fast_retransmits;
	uint64_t challenge_acks, challenge_acks_limited;   /* RFC 5961; limited: over the rate limit */
	uint64_t paws_drops, ooo_segs;
	uint64_t listen_drops;                             /* SYN or handshake ACK dropped: backlog full */
	uint64_t active_opens, passive_opens, established_resets;
	uint64_t emit_nobufs;                              /* TX ring full: sent later */
	uint64_t port_claims, port_claim_failures;         /* ephemeral ports claimed through the launcher */
	uint32_t conns, listeners, time_wait, ports_ready; /* now (conns include TIME_WAIT) */
};
