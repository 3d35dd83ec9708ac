/* capture.c: the stack's side of `xdpstack capture` (../base/capring.h). A stack that is not
 * captured pays one test of st->cap_dirs per frame; a captured one runs the capturer's filter
 * (libpcap's BPF interpreter, bpf_filter) on each frame of the directions asked for, and copies
 * what passes into the shared ring. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <pcap/bpf.h>
#include "capture.h"

#define PID_CHECK_NS 1000000000ull     /* is the capturer still there? once a second */

struct us_cap {
	struct us_cap_ctl *ctl;    /* in the shared page */
	uint8_t *ring;
	uint32_t gen;              /* the capturer's gen last acted on */
	int32_t pid;
	uint32_t snaplen;
	uint32_t ninsns;
	uint64_t pid_checked;
	struct bpf_insn insns[US_CAP_MAX_INSNS];
};

void us_cap_attach(struct us_stack *st, void *page, uint64_t size)
{
	if (size < US_CAP_AREA_BYTES || st->cap)
		return;
	struct us_cap *c = calloc(1, sizeof(*c));
	if (!c)
		return;                    /* the stack runs; it cannot be captured */
	c->ctl = (struct us_cap_ctl *)((uint8_t *)page + US_CAP_OFFSET);
	c->ring = (uint8_t *)page + US_CAP_RING_OFFSET;
	c->gen = __atomic_load_n(&c->ctl->gen, __ATOMIC_ACQUIRE) - 1;   /* act on what is there */
	__atomic_store_n(&c->ctl->magic, US_CAP_MAGIC, __ATOMIC_RELEASE);
	st->cap = c;
}

void us_cap_detach(struct us_stack *st)
{
	free(st->cap);
	st->cap = NULL;
	st->cap_dirs = 0;
}

static void stop(struct us_stack *st)
{
	st->cap_dirs = 0;
	st->cap->pid = 0;
}

/* A new gen: the capturer's settings, checked before the stack runs them. */
static void start(struct us_stack *st, struct us_cap_ctl *ctl)
{
	struct us_cap *c = st->cap;
	uint32_t n = ctl->ninsns;
	stop(st);
	if (!ctl->pid)
		return;
	if (n > US_CAP_MAX_INSNS) {
		ctl->error = -EINVAL;
		return;
	}
	for (uint32_t i = 0; i < n; i++) {
		c->insns[i].code = ctl->insns[i].code;
		c->insns[i].jt = ctl->insns[i].jt;
		c->insns[i].jf = ctl->insns[i].jf;
		c->insns[i].k = ctl->insns[i].k;
	}
	if (n && !bpf_validate(c->insns, (int)n)) {
		ctl->error = -EINVAL;
		return;
	}
	/* A fresh capture: the ring empty (the capturer reads tail only once it sees seen_gen), the
	 * counters zero. */
	ctl->tail = ctl->head;
	ctl->matched = ctl->captured = ctl->dropped = 0;
	ctl->error = 0;
	c->ninsns = n;
	c->snaplen = ctl->snaplen ? ctl->snaplen : 262144;
	c->pid = ctl->pid;
	c->pid_checked = st->now;
	st->cap_dirs = (uint8_t)(ctl->dirs & (US_CAP_IN | US_CAP_OUT));
}

void us_cap_poll(struct us_stack *st)
{
	struct us_cap *c = st->cap;
	if (!c)
		return;
	uint32_t gen = __atomic_load_n(&c->ctl->gen, __ATOMIC_ACQUIRE);
	if (gen != c->gen) {
		c->gen = gen;
		start(st, c->ctl);
		__atomic_store_n(&c->ctl->seen_gen, gen, __ATOMIC_RELEASE);
	} else if (c->pid && st->now - c->pid_checked >= PID_CHECK_NS) {
		c->pid_checked = st->now;
		if (kill(c->pid, 0) < 0 && errno == ESRCH)
			stop(st);          /* killed before it could say so: stop copying */
	}
}

void us_cap_frame(struct us_stack *st, const uint8_t *data, uint32_t len, uint8_t dir)
{
	struct us_cap *c = st->cap;
	struct us_cap_ctl *ctl = c->ctl;
	uint32_t keep = c->ninsns ? bpf_filter(c->insns, data, len, len) : len;
	if (!keep)
		return;
	if (keep > len)
		keep = len;
	if (keep > c->snaplen)
		keep = c->snaplen;
	ctl->matched++;
	uint32_t need = (uint32_t)sizeof(struct us_cap_rec) + ((keep + 7) & ~7u);
	uint64_t head = ctl->head, tail = __atomic_load_n(&ctl->tail, __ATOMIC_ACQUIRE);
	uint32_t pos = (uint32_t)(head % US_CAP_RING_BYTES);
	uint32_t pad = pos + need > US_CAP_RING_BYTES ? US_CAP_RING_BYTES - pos : 0;
	if (head + pad + need - tail > US_CAP_RING_BYTES) {
		ctl->dropped++;
		return;
	}
	if (pad) {                         /* the ring's end: a PAD record, if one fits there */
		if (pad >= sizeof(struct us_cap_rec)) {
			struct us_cap_rec *p = (struct us_cap_rec *)(c->ring + pos);
			p->caplen = pad - (uint32_t)sizeof(*p);
			p->dir = US_CAP_PAD;
		}
		pos = 0;
	}
	struct us_cap_rec *r = (struct us_cap_rec *)(c->ring + pos);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	r->caplen = keep;
	r->wirelen = len;
	r->ts_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	r->dir = dir;
	memcpy(r + 1, data, keep);
	ctl->captured++;
	__atomic_store_n(&ctl->head, head + pad + need, __ATOMIC_RELEASE);
}
