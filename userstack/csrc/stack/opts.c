/* opts.c: per-stack options as text ("key=value key=value"), from the environment (../base/env.h:
 * XDPSTACK_CC, XDPSTACK_TCP, XDPSTACK_FAULTS) or from us_stack_tcp_configure /
 * us_stack_faults_configure. Unknown keys and bad values are errors (-EINVAL), never ignored. */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include "opts.h"

void us_tcp_opts_default(struct us_tcp_opts *o)
{
	memset(o, 0, sizeof(*o));
	tcp_config_default(&o->cfg);
	o->port_pool = 4;
	o->linger_ms = 1000;
}

/* Calls fn(key, value, arg) for every "key=value" word of spec. */
static int each_pair(const char *spec, int (*fn)(const char *k, const char *v, void *arg), void *arg)
{
	char buf[1024];
	if (!spec)
		return 0;
	if (strlen(spec) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, spec);
	char *save = NULL;
	for (char *w = strtok_r(buf, " \t,", &save); w; w = strtok_r(NULL, " \t,", &save)) {
		char *eq = strchr(w, '=');
		if (!eq || eq == w || !eq[1])
			return -EINVAL;
		*eq = 0;
		int r = fn(w, eq + 1, arg);
		if (r)
			return r;
	}
	return 0;
}

/* An unsigned integer with an optional k/m/g suffix (powers of 1024). */
static int parse_u32(const char *v, uint32_t *out)
{
	char *end;
	errno = 0;
	unsigned long long x = strtoull(v, &end, 10);
	if (errno || end == v || v[0] == '-')
		return -EINVAL;
	switch (*end) {
	case 'k': case 'K': x <<= 10; end++; break;
	case 'm': case 'M': x <<= 20; end++; break;
	case 'g': case 'G': x <<= 30; end++; break;
	default: break;
	}
	if (*end || x > UINT32_MAX)
		return -EINVAL;
	*out = (uint32_t)x;
	return 0;
}

/* Milliseconds, fractions allowed ("0.5"), into microseconds. */
static int parse_ms(const char *v, uint32_t *us)
{
	char *end;
	double x = strtod(v, &end);
	if (end == v || *end || !(x >= 0) || x * 1000 > UINT32_MAX)
		return -EINVAL;
	*us = (uint32_t)(x * 1000 + 0.5);
	return 0;
}

int us_tcp_cc_parse(const char *v, uint8_t *cc)
{
	if (!strcmp(v, "cubic"))
		*cc = TCP_CC_CUBIC;
	else if (!strcmp(v, "newreno") || !strcmp(v, "reno"))
		*cc = TCP_CC_NEWRENO;
	else
		return -EINVAL;
	return 0;
}

static int tcp_pair(const char *k, const char *v, void *arg)
{
	struct us_tcp_opts *o = arg;
	struct tcp_config *c = &o->cfg;
	uint32_t x = 0;
	static const struct { const char *name; size_t off; } u32s[] = {
		{ "sndbuf", offsetof(struct tcp_config, sndbuf) },
		{ "rcvbuf", offsetof(struct tcp_config, rcvbuf) },
		{ "init_cwnd", offsetof(struct tcp_config, init_cwnd) },
		{ "quickack", offsetof(struct tcp_config, quickack) },
		{ "syn_retries", offsetof(struct tcp_config, syn_retries) },
		{ "synack_retries", offsetof(struct tcp_config, synack_retries) },
		{ "retries", offsetof(struct tcp_config, retries) },
		{ "keepidle", offsetof(struct tcp_config, keepidle_s) },
		{ "keepintvl", offsetof(struct tcp_config, keepintvl_s) },
		{ "keepcnt", offsetof(struct tcp_config, keepcnt) },
		{ "max_time_wait", offsetof(struct tcp_config, max_time_wait) },
		{ "backlog", offsetof(struct tcp_config, backlog) },
		{ "challenge_ack_limit", offsetof(struct tcp_config, challenge_ack_limit) },
	};
	static const struct { const char *name; size_t off; } mss[] = {
		{ "delack_ms", offsetof(struct tcp_config, delack_us) },
		{ "rto_min_ms", offsetof(struct tcp_config, rto_min_us) },
		{ "rto_init_ms", offsetof(struct tcp_config, rto_init_us) },
		{ "rto_max_ms", offsetof(struct tcp_config, rto_max_us) },
		{ "time_wait_ms", offsetof(struct tcp_config, time_wait_us) },
	};
	if (!strcmp(k, "cc"))
		return us_tcp_cc_parse(v, &c->cc);
	for (size_t i = 0; i < sizeof(u32s) / sizeof(u32s[0]); i++)
		if (!strcmp(k, u32s[i].name)) {
			if (parse_u32(v, &x))
				return -EINVAL;
			memcpy((char *)c + u32s[i].off, &x, sizeof(x));
			return 0;
		}
	for (size_t i = 0; i < sizeof(mss) / sizeof(mss[0]); i++)
		if (!strcmp(k, mss[i].name)) {
			if (parse_ms(v, &x))
				return -EINVAL;
			memcpy((char *)c + mss[i].off, &x, sizeof(x));
			return 0;
		}
	if (!strcmp(k, "sack") || !strcmp(k, "timestamps") || !strcmp(k, "wscale")) {
		if (parse_u32(v, &x) || x > 1)
			return -EINVAL;
		*(k[0] == 's' ? &c->sack : k[0] == 't' ? &c->timestamps : &c->wscale) = (uint8_t)x;
		return 0;
	}
	if (!strcmp(k, "port_pool")) {
		if (parse_u32(v, &x) || x > 64)
			return -EINVAL;
		o->port_pool = x;
		return 0;
	}
	if (!strcmp(k, "linger_ms")) {
		if (parse_u32(v, &x))
			return -EINVAL;
		o->linger_ms = x;
		return 0;
	}
	return -EINVAL;
}

int us_tcp_opts_parse(struct us_tcp_opts *o, const char *spec)
{
	struct us_tcp_opts t = *o;
	int r = each_pair(spec, tcp_pair, &t);
	if (!r)
		*o = t;
	return r;
}

static int parse_rate(const char *v, uint32_t *ppm)
{
	char *end;
	double x = strtod(v, &end);
	if (end == v)
		return -EINVAL;
	if (*end == '%') {
		x /= 100;
		end++;
	}
	if (*end || !(x >= 0 && x <= 1))
		return -EINVAL;
	*ppm = (uint32_t)(x * 1e6 + 0.5);
	return 0;
}

static int fault_pair(const char *k, const char *v, void *arg)
{
	struct us_fault_config *c = arg;
	if (!strcmp(k, "seed")) {
		char *end;
		errno = 0;
		c->seed = strtoull(v, &end, 0);
		return errno || *end ? -EINVAL : 0;
	}
	if (!strcmp(k, "drop"))
		return parse_rate(v, &c->drop_ppm);
	if (!strcmp(k, "duplicate") || !strcmp(k, "dup"))
		return parse_rate(v, &c->dup_ppm);
	if (!strcmp(k, "reorder"))
		return parse_rate(v, &c->reorder_ppm);
	if (!strcmp(k, "corrupt"))
		return parse_rate(v, &c->corrupt_ppm);
	if (!strcmp(k, "dir")) {
		if (!strcmp(v, "rx"))
			c->dirs = US_FAULT_RX;
		else if (!strcmp(v, "tx"))
			c->dirs = US_FAULT_TX;
		else if (!strcmp(v, "both"))
			c->dirs = US_FAULT_RX | US_FAULT_TX;
		else
			return -EINVAL;
		return 0;
	}
	return -EINVAL;
}

int us_faults_parse(struct us_fault_config *c, const char *spec)
{
	struct us_fault_config t;
	memset(&t, 0, sizeof(t));
	t.seed = 1;
	t.dirs = US_FAULT_RX | US_FAULT_TX;
	int r = each_pair(spec, fault_pair, &t);
	if (!r)
		*c = t;
	return r;
}
