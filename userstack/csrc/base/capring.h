/* capring.h: the capture area of a stack's shared page (XDPSTACK_STATS, base/env.h), after its
 * counters: how `xdpstack capture` (xdpstack/capture.py) sees a user-level stack's frames, both
 * ways, where tcpdump cannot (AF_XDP frames never reach the kernel's taps).
 *
 *   capturer  writes a filter (classic BPF, compiled by libpcap from a pcap-filter expression),
 *             snaplen, directions and its pid, then bumps gen; once seen_gen equals gen, reads
 *             records from the ring and advances tail; at the end clears pid, bumps gen again,
 *             and reads what is left. One capturer per stack at a time: it holds an flock on the
 *             page while it captures.
 *   stack     reads gen once per poll (never per frame); on a new one it validates and copies
 *             the filter, empties the ring (tail = head), zeroes the counters below, and then
 *             sets seen_gen. Each frame in or out that passes the filter is copied (up to
 *             snaplen bytes) into the ring, or counted as dropped when the ring is full. It
 *             stops by itself when the capturer's pid is gone (checked once a second).
 *
 * The ring is single-producer (the stack), single-consumer (the capturer): records of
 * struct us_cap_rec then caplen bytes, each padded to 8; a record never wraps: the rest of the
 * ring is skipped, marked by a US_CAP_PAD record when one fits there (fewer bytes than a record
 * header left: skipped unmarked). head and tail count bytes since the start, each written by one side
 * only, with release/acquire order on x86-64's total store order. Layout changes bump
 * US_CAP_MAGIC. */
#pragma once
#include <stdint.h>

#define US_CAP_MAGIC       0x58534331u        /* "XSC1" */
#define US_CAP_OFFSET      4096u              /* from the start of the page */
#define US_CAP_MAX_INSNS   1024u              /* BPF_MAXINSNS is 4096; libpcap's are far shorter */
#define US_CAP_RING_OFFSET 20480u             /* US_CAP_OFFSET + 16 KB for struct us_cap_ctl */
#define US_CAP_RING_BYTES  4194304u           /* 4 MB */
#define US_CAP_AREA_BYTES  4214784u           /* RING_OFFSET + RING_BYTES: a page this big has it */

enum { US_CAP_IN = 1, US_CAP_OUT = 2, US_CAP_PAD = 0x80 };

struct us_cap_insn {               /* struct bpf_insn, as libpcap writes it */
	uint16_t code;
	uint8_t jt, jf;
	uint32_t k;
};

struct us_cap_rec {
	uint32_t caplen;           /* bytes that follow */
	uint32_t wirelen;          /* the frame's length */
	uint64_t ts_ns;            /* CLOCK_REALTIME */
	uint8_t dir;               /* US_CAP_IN, US_CAP_OUT, or US_CAP_PAD (skip to the ring's start) */
	uint8_t pad[7];
};

struct us_cap_ctl {               /* at US_CAP_OFFSET: each line below is one cache line */
	uint64_t head;             /* the stack's: bytes produced */
	uint64_t pad0[7];
	uint64_t tail;             /* the capturer's: bytes consumed */
	uint64_t pad1[7];
	/* the capturer's settings */
	uint32_t magic;            /* US_CAP_MAGIC: written by the stack when it maps the page */
	uint32_t gen;              /* bumped after every change of the settings */
	int32_t pid;               /* the capturing process; 0: no capture */
	uint32_t snaplen;
	uint32_t dirs;             /* US_CAP_IN | US_CAP_OUT */
	uint32_t ninsns;           /* 0: every frame */
	uint64_t pad2[5];
	/* the stack's counters of this capture (zeroed by the capturer before it starts) */
	uint64_t seen_gen;         /* the gen the stack acts on */
	uint64_t matched;          /* frames that passed the filter: captured + dropped */
	uint64_t captured;         /* copied into the ring */
	uint64_t dropped;          /* passed the filter, ring full */
	int32_t error;             /* -EINVAL: the filter failed validation (nothing captured) */
	uint32_t pad3;
	uint64_t pad4[3];
	struct us_cap_insn insns[US_CAP_MAX_INSNS];
};

_Static_assert(US_CAP_OFFSET + sizeof(struct us_cap_ctl) <= US_CAP_RING_OFFSET, "ctl overlaps ring");
_Static_assert(US_CAP_AREA_BYTES == US_CAP_RING_OFFSET + US_CAP_RING_BYTES, "area size");
