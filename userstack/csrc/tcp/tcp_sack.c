/* tcp_sack.c: sequence range lists, SACK blocks we send (RFC 2018 4, RFC 2883) and the SACK
 * scoreboard we keep as a sender (RFC 6675: IsLost, SetPipe, NextSeg).
 *
 * Both sides use the same small sorted array of disjoint ranges: the receiver's out-of-order
 * data (written straight into the receive ring at its offset) and the sender's SACKed data. A
 * peer rarely has more than a few dozen holes in flight; when the array is full the receiver
 * drops a segment that would need a new range and the sender forgets the SACK block (both safe).
 */
#include <string.h>

#include "tcp_int.h"

bool ranges_add(struct tcp_ranges *rs, uint32_t s, uint32_t e)
{
	if (!seq_lt(s, e))
		return true;
	uint32_t lo = 0, hi = rs->n;
	while (lo < hi) {                   /* first range that ends at or after s */
		uint32_t mid = (lo + hi) / 2;
		if (seq_lt(rs->r[mid].end, s))
			lo = mid + 1;
		else
			hi = mid;
	}
	uint32_t i = lo;
	if (i == rs->n || seq_lt(e, rs->r[i].start)) {
		if (rs->n == TCP_MAX_RANGES)
			return false;
		memmove(&rs->r[i + 1], &rs->r[i], (rs->n - i) * sizeof(rs->r[0]));
		rs->r[i].start = s;
		rs->r[i].end = e;
		rs->n++;
		return true;
	}
	rs->r[i].start = seq_min(rs->r[i].start, s);
	uint32_t end = seq_max(rs->r[i].end, e);
	uint32_t j = i + 1;
	while (j < rs->n && seq_le(rs->r[j].start, end)) {
		end = seq_max(end, rs->r[j].end);
		j++;
	}
	rs->r[i].end = end;
	memmove(&rs->r[i + 1], &rs->r[j], (rs->n - j) * sizeof(rs->r[0]));
	rs->n -= j - i - 1;
	return true;
}

void ranges_trim_below(struct tcp_ranges *rs, uint32_t seq)
{
	uint32_t k = 0;
	while (k < rs->n && seq_le(rs->r[k].end, seq))
		k++;
	if (k) {
		memmove(&rs->r[0], &rs->r[k], (rs->n - k) * sizeof(rs->r[0]));
		rs->n -= k;
	}
	if (rs->n && seq_lt(rs->r[0].start, seq))
		rs->r[0].start = seq;
}

uint32_t ranges_bytes(const struct tcp_ranges *rs)
{
	uint32_t b = 0;
	for (uint32_t i = 0; i < rs->n; i++)
		b += rs->r[i].end - rs->r[i].start;
	return b;
}

int ranges_find(const struct tcp_ranges *rs, uint32_t seq)
{
	for (uint32_t i = 0; i < rs->n; i++) {
		if (seq_lt(seq, rs->r[i].start))
			return -1;
		if (seq_lt(seq, rs->r[i].end))
			return (int)i;
	}
	return -1;
}

/* ---- receiver: SACK blocks ---- */

/* Remember that the range holding `start` changed last: it goes first (RFC 2018 4). */
void tcp_ooo_note(struct tcp_sock *s, uint32_t start)
{
	struct tcp_conn_mem *m = s->mem;
	uint8_t k = 0;
	uint32_t keep[4];
	keep[k++] = start;
	int cur = ranges_find(&m->ooo, start);
	for (uint8_t i = 0; i < m->nrecent && k < 4; i++) {
		int idx = ranges_find(&m->ooo, m->sack_recent[i]);
		if (idx >= 0 && idx != cur)
			keep[k++] = m->sack_recent[i];
	}
	memcpy(m->sack_recent, keep, sizeof(keep[0]) * k);
	m->nrecent = k;
}

int tcp_sack_blocks(struct tcp_sock *s, uint32_t blocks[][2], int max)
{
	int n = 0;
	if (max <= 0)
		return 0;
	if (s->dsack) {                     /* RFC 2883: the duplicate first */
		blocks[n][0] = s->dsack_start;
		blocks[n][1] = s->dsack_end;
		n++;
	}
	struct tcp_conn_mem *m = s->mem;
	if (!m)
		return n;
	int used[TCP_MAX_SACK] = {-1, -1, -1, -1};
	int nu = 0;
	for (uint8_t i = 0; i < m->nrecent && n < max; i++) {
		int idx = ranges_find(&m->ooo, m->sack_recent[i]);
		if (idx < 0)
			continue;
		bool dup = false;
		for (int u = 0; u < nu; u++)
			dup |= used[u] == idx;
		if (dup)
			continue;
		used[nu++] = idx;
		blocks[n][0] = m->ooo.r[idx].start;
		blocks[n][1] = m->ooo.r[idx].end;
		n++;
	}
	for (int idx = (int)m->ooo.n - 1; idx >= 0 && n < max && nu < TCP_MAX_SACK; idx--) {
		bool dup = false;
		for (int u = 0; u < nu; u++)
			dup |= used[u] == idx;
		if (dup)
			continue;
		used[nu++] = idx;
		blocks[n][0] = m->ooo.r[idx].start;
		blocks[n][1] = m->ooo.r[idx].end;
		n++;
	}
	return n;
}

/* ---- sender: the scoreboard ---- */

/* Record the SACK blocks of an acceptable ACK; true when new data was SACKed (an RFC 6675
 * "duplicate ACK"). Blocks outside (snd_una, snd_max] are D-SACKs or bogus: ignored. */
bool tcp_sack_update(struct tcp_sock *s, const struct tcp_seg *seg)
{
	if (!s->sack_ok || !seg->nsack || !s->mem)
		return false;
	struct tcp_ranges *sb = &s->mem->sacked;
	uint32_t before = ranges_bytes(sb);
	for (unsigned i = 0; i < seg->nsack; i++) {
		uint32_t a = seg->sack[i][0], b = seg->sack[i][1];
		if (!seq_lt(a, b) || seq_le(b, s->snd_una) || seq_gt(b, s->snd_max))
			continue;
		if (seq_lt(a, s->snd_una))
			a = s->snd_una;
		ranges_add(sb, a, b);
	}
	return ranges_bytes(sb) > before;
}

/* Index of the highest SACK range whose hole below is lost; holes 0..L are lost (IsLost is
 * monotone: a lower hole has at least as much SACKed above it). -1: none lost. */
static int lost_boundary(const struct tcp_sock *s)
{
	const struct tcp_ranges *sb = &s->mem->sacked;
	uint32_t above = 0;
	for (int i = (int)sb->n - 1; i >= 0; i--) {
		above += sb->r[i].end - sb->r[i].start;
		/* RFC 6675 4 IsLost: DupThresh (3) discontiguous SACKed ranges above, or more than
		 * (DupThresh - 1) * SMSS bytes SACKed above. */
		if ((int)sb->n - i >= 3 || above > 2 * s->mss)
			return i;
	}
	return -1;
}

static uint32_t hole_start(const struct tcp_sock *s, int i)
{
	return i == 0 ? s->snd_una : s->mem->sacked.r[i - 1].end;
}

bool tcp_sack_is_lost(const struct tcp_sock *s, uint32_t seq)
{
	if (!s->mem || !s->mem->sacked.n)
		return false;
	const struct tcp_ranges *sb = &s->mem->sacked;
	int L = lost_boundary(s);
	for (int i = 0; i <= L; i++)
		if (seq_ge(seq, hole_start(s, i)) && seq_lt(seq, sb->r[i].start))
			return true;
	return false;
}

uint32_t tcp_sack_lost_bytes(const struct tcp_sock *s)
{
	if (!s->mem || !s->mem->sacked.n)
		return 0;
	int L = lost_boundary(s);
	uint32_t b = 0;
	for (int i = 0; i <= L; i++)
		b += s->mem->sacked.r[i].start - hole_start(s, i);
	return b;
}

/* RFC 6675 4 SetPipe: unSACKed octets not deemed lost, plus octets retransmitted (below
 * HighRxt). The part above the highest SACK is never lost. */
void tcp_sack_pipe(struct tcp_sock *s)
{
	if (!s->mem) {
		s->pipe = s->snd_max - s->snd_una;
		return;
	}
	const struct tcp_ranges *sb = &s->mem->sacked;
	int L = lost_boundary(s);
	uint32_t pipe = 0;
	for (int i = 0; i <= (int)sb->n; i++) {
		uint32_t hs = hole_start(s, i);
		uint32_t he = i < (int)sb->n ? sb->r[i].start : s->snd_max;
		if (!seq_lt(hs, he))
			continue;
		if (i > L)
			pipe += he - hs;
		if (seq_gt(s->high_rxt, hs))
			pipe += seq_min(s->high_rxt, he) - hs;
	}
	s->pipe = pipe;
}

/* RFC 6675 4 NextSeg rules (1) and (3): the first unSACKed bytes at or above HighRxt and below
 * the highest SACKed byte, in a lost hole (rule 1) or any hole (rule 3, lost_only false). */
static bool next_hole(struct tcp_sock *s, bool lost_only, uint32_t *seq, uint32_t *len)
{
	if (!s->mem || !s->mem->sacked.n)
		return false;
	const struct tcp_ranges *sb = &s->mem->sacked;
	int last = lost_only ? lost_boundary(s) : (int)sb->n - 1;
	for (int i = 0; i <= last; i++) {
		uint32_t hs = seq_max(hole_start(s, i), s->high_rxt);
		uint32_t he = sb->r[i].start;
		if (seq_lt(hs, he)) {
			*seq = hs;
			*len = he - hs < s->mss ? he - hs : s->mss;
			return true;
		}
	}
	return false;
}

bool tcp_sack_next_seg(struct tcp_sock *s, uint32_t *seq, uint32_t *len)
{
	return next_hole(s, true, seq, len);
}

bool tcp_sack_next_seg_rule3(struct tcp_sock *s, uint32_t *seq, uint32_t *len)
{
	return next_hole(s, false, seq, len);
}
