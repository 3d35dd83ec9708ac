/* eph.h: ephemeral ports, all claimed from the launcher over the control channel (eph.c):
 * a UDP bind's port (the caller waits for it), and TCP's: a few per local address claimed ahead
 * in pools, refilled in the background; with none ready an active open waits for its own claim
 * (st->eph_ready tells it). Ports TCP is done with go back to a pool or to the launcher. */
#pragma once
#include "stack.h"

int us_eph_init(struct us_stack *st);          /* at stack open */
void us_eph_close(struct us_stack *st);        /* pooled ports back to the launcher; freed */
/* Claim one port and wait for the answer (up to 2 s): 0 and *local, or -errno. */
int us_eph_claim(struct us_stack *st, uint8_t proto, uint8_t family,
		 const struct us_endpoint *remote, struct us_endpoint *local);
void us_eph_release(struct us_stack *st, uint8_t proto, const struct us_endpoint *local);

/* TCP active opens. The local address the launcher will pick toward remote, or NULL. */
const struct us_addr *us_eph_local_for(struct us_stack *st, const struct us_addr *remote);
/* A pooled port toward remote: 0 and *pick, or -ENOENT when the pool is empty. */
int us_eph_take(struct us_stack *st, const struct us_addr *remote, struct us_endpoint *pick);
/* Claim a port for waiter (its claim_seq set; st->eph_ready answers): 0 or -errno. */
int us_eph_request(struct us_stack *st, const struct us_addr *remote, struct us_sock *waiter);
void us_eph_refill(struct us_stack *st, const struct us_addr *remote);  /* keep the pool full */
void us_eph_forget(struct us_stack *st, struct us_sock *waiter);  /* closed: its port to a pool */
void us_eph_put(struct us_stack *st, const struct us_endpoint *local);  /* done with it */

/* From the poll loop: a CLAIMED answer; claims the launcher did not answer in time. */
void us_eph_claimed(struct us_stack *st, const union us_ctl_msg *m);
void us_eph_expire(struct us_stack *st);
