/* userstack-echo: UDP echo on every UDP tuple the stack owns, through the C API only (api.h).
 *
 *   xdpstack run IFACE --udp 7000 -- userstack-echo            echo every datagram back
 *   xdpstack run IFACE --udp 9000 -- userstack-echo --sink     count datagrams, echo nothing
 *
 * Options: --sink, --count N (exit after N datagrams), --duration SECONDS, --quiet.
 * On exit (and on SIGUSR1) one JSON line on stdout:
 *   {"datagrams": N, "bytes": B, "echoed": E, "first_ns": T0, "last_ns": T1, ...stack counters}
 * first_ns/last_ns are CLOCK_MONOTONIC times of the first and last datagram (rate = N / span). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "../api.h"

#define BATCH 64
#define MAX_SOCKS 64

static volatile sig_atomic_t stop_flag, report_flag;
static void on_stop(int sig) { (void)sig; stop_flag = 1; }
static void on_report(int sig) { (void)sig; report_flag = 1; }

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

struct counts { uint64_t datagrams, bytes, echoed, send_errors, first, last; };

static void report(struct us_stack *st, const struct counts *c)
{
	struct us_stats s;
	us_stack_stats(st, &s);
	printf("{\"datagrams\": %llu, \"bytes\": %llu, \"echoed\": %llu, \"send_errors\": %llu, "
	       "\"first_ns\": %llu, \"last_ns\": %llu, \"rx_frames\": %llu, \"rx_queue_full\": %llu, "
	       "\"rx_bad_csum\": %llu, \"rx_malformed\": %llu, \"tx_frames\": %llu}\n",
	       (unsigned long long)c->datagrams, (unsigned long long)c->bytes,
	       (unsigned long long)c->echoed, (unsigned long long)c->send_errors,
	       (unsigned long long)c->first, (unsigned long long)c->last,
	       (unsigned long long)s.rx_frames, (unsigned long long)s.rx_queue_full,
	       (unsigned long long)s.rx_bad_csum, (unsigned long long)s.rx_malformed,
	       (unsigned long long)s.tx_frames);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	int sink = 0, quiet = 0, err;
	unsigned long long count = 0;
	double duration = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--sink"))
			sink = 1;
		else if (!strcmp(argv[i], "--quiet"))
			quiet = 1;
		else if (!strcmp(argv[i], "--count") && i + 1 < argc)
			count = strtoull(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--duration") && i + 1 < argc)
			duration = atof(argv[++i]);
		else {
			fprintf(stderr, "usage: userstack-echo [--sink] [--count N] [--duration S] [--quiet]\n");
			return 2;
		}
	}
	struct us_stack *st = us_stack_open_env(&err);
	if (!st) {
		fprintf(stderr, "userstack-echo: cannot open the stack: %s%s\n", strerror(-err),
			err == -ENOENT ? " (no XDPSTACK_* environment: run under `xdpstack run`)" : "");
		return 1;
	}
	const struct us_desc *d = us_stack_desc(st);
	struct us_sock *socks[MAX_SOCKS];
	int nsocks = 0;
	for (uint32_t i = 0; i < d->ntuples && nsocks < MAX_SOCKS; i++) {
		const struct us_tuple *t = &d->tuples[i];
		if (t->proto != 17)
			continue;
		struct us_sock *s = us_udp_socket(st, t->addr.family, &err);
		struct us_endpoint ep = { .addr = t->addr, .port = t->port };
		if (!s || (err = us_udp_bind(s, &ep))) {
			fprintf(stderr, "userstack-echo: udp port %u: %s\n", t->port, strerror(-err));
			if (s)
				us_sock_close(s);
			continue;
		}
		us_sock_set_rcvbuf(s, 4u << 20);
		socks[nsocks++] = s;
		if (!quiet)
			fprintf(stderr, "userstack-echo: %s on udp/%u (IPv%u)\n", sink ? "sink" : "echo",
				t->port, t->addr.family);
	}
	if (!nsocks) {
		fprintf(stderr, "userstack-echo: the stack owns no UDP tuple\n");
		us_stack_close(st);
		return 1;
	}
	struct sigaction sa = { 0 }, old_int, old_term, old_usr1;
	sa.sa_handler = on_stop;
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	sa.sa_handler = on_report;
	sigaction(SIGUSR1, &sa, &old_usr1);
	stop_flag = report_flag = 0;

	static char bufs[BATCH][9216];
	struct us_msg m[BATCH];
	struct us_event ev[MAX_SOCKS];
	struct counts c = { 0 };
	uint64_t end = duration > 0 ? now_ns() + (uint64_t)(duration * 1e9) : 0;
	while (!stop_flag) {
		int n = us_wait(st, ev, MAX_SOCKS, 200);
		if (report_flag) {
			report_flag = 0;
			report(st, &c);
		}
		if (end && now_ns() >= end)
			break;
		for (int i = 0; i < n; i++) {
			int k;
			do {
				for (int j = 0; j < BATCH; j++) {
					m[j].buf = sink ? NULL : bufs[j];
					m[j].len = sink ? 0 : sizeof(bufs[j]);
				}
				k = us_udp_recvmmsg(ev[i].sock, m, BATCH);
				if (k > 0) {
					uint64_t t = now_ns();
					if (!c.first)
						c.first = t;
					c.last = t;
				}
				for (int j = 0; j < k; j++) {
					c.datagrams++;
					c.bytes += m[j].full_len;
					if (sink)
						continue;
					if (us_udp_sendmsg(ev[i].sock, &m[j], US_MSG_MORE) >= 0)
						c.echoed++;
					else
						c.send_errors++;
				}
			} while (k == BATCH);
		}
		if (!sink)
			us_flush(st);
		if (count && c.datagrams >= count)
			break;
	}
	report(st, &c);
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	sigaction(SIGUSR1, &old_usr1, NULL);
	for (int i = 0; i < nsocks; i++)
		us_sock_close(socks[i]);
	us_stack_close(st);
	return 0;
}

