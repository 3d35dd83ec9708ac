/* userstack-tcpperf: bulk throughput and request/response round trips of one TCP connection, on
 * the user-level stack or on kernel sockets (the same code through net.h), as server or client.
 *
 *   server:  xdpstack run IFACE --tcp 5201 -- userstack-tcpperf          (every claimed TCP tuple)
 *            userstack-tcpperf --kernel --listen 0.0.0.0:5201
 *   client:  userstack-tcpperf [--kernel] --connect ADDR:PORT --mode send|recv|rr
 *                              [--duration S] [--size BYTES] [--count N]
 *   --spin   (with --kernel, server or client) never sleep: the sockets are non-blocking, epoll
 *            is polled with a zero timeout and the rr client retries its read at once on EAGAIN,
 *            a kernel counterpart of the user stack's XDPSTACK_BUSY_POLL=1
 *
 *   send   the client sends for --duration; the server counts and reports the bytes it read
 *   recv   the server sends for --duration; the client counts until the server's FIN
 *   rr     the client sends --size bytes, the server echoes them, the client times each round
 *          trip (--count of them at most, within --duration)
 *
 * The client asks for its mode in a 16-byte hello ("TPRF", mode, size, duration in ms). It prints
 * one JSON line: bytes, seconds, gbit_per_s (send/recv) or rtt_us {min, p50, p90, p99, max, mean}
 * and rounds (rr). A server prints one JSON line of totals when it stops (SIGINT/SIGTERM,
 * --duration, or --once after its first connection).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "../api.h"
#include "net.h"

#define BUF_SIZE   (256 * 1024)
#define HELLO_LEN  16
#define MAX_LISTEN 64
#define MAX_ROUNDS 10000000

enum { OBJ_LISTENER = 1, OBJ_CONN };
enum { MODE_SEND = 'S', MODE_RECV = 'R', MODE_RR = 'P' };

struct conn {
	int type;
	struct net_sock s;
	uint8_t hello[HELLO_LEN];
	uint32_t hlen;
	int mode;
	uint32_t size;              /* rr: message size */
	uint64_t bytes, deadline_ns;
	uint32_t echo_pending;      /* rr: bytes read but not yet echoed (kept in echo_buf) */
	uint8_t *echo_buf;
};

struct listener { int type; struct net_sock s; };

static struct net net;
static uint8_t *buf;
static volatile sig_atomic_t stop_flag;
static int spin;                /* --spin: every wait polls (timeout 0) instead of sleeping */
static void on_stop(int sig) { (void)sig; stop_flag = 1; net_wake(&net); }

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }

/* Read and drop what is readable (zero-copy on the user stack). 0 at EOF, -EAGAIN, -errno,
 * else the count. */
static ssize_t drain(struct net_sock *s)
{
	ssize_t total = 0;
	for (;;) {
		const char *p;
		size_t len0;
		ssize_t n = net_peek(&net, s, &p, &len0);
		if (n > 0) {
			net_consume(&net, s, (size_t)n);
		} else {
			n = net_read(&net, s, buf, BUF_SIZE);
			if (n <= 0)
				return total ? total : n;
		}
		total += n;
		if (total > 64 * BUF_SIZE)
			return total;               /* let others run */
	}
}

/* Write every byte or fail: only for the few-byte replies (the send buffer is empty then). */
static int write_all(struct net_sock *s, const void *p, size_t n)
{
	ssize_t w = net_write(&net, s, p, n);
	return w == (ssize_t)n ? 0 : -EIO;
}

/* ---- server ---- */
static struct { uint64_t conns, open, bytes_in, bytes_out, rounds; } tot;

static void srv_close(struct conn *k)
{
	tot.open--;
	net_close(&net, &k->s);
	free(k->echo_buf);
	free(k);
}

/* Send (recv mode) until the deadline; then FIN and close. */
static void srv_source(struct conn *k, uint64_t now)
{
	while (now < k->deadline_ns) {
		ssize_t w = net_write(&net, &k->s, buf, BUF_SIZE);
		if (w == -EAGAIN) {
			net_set_events(&net, &k->s, NET_OUT);
			return;
		}
		if (w < 0) {
			srv_close(k);
			return;
		}
		k->bytes += (uint64_t)w;
		tot.bytes_out += (uint64_t)w;
		if ((size_t)w < BUF_SIZE) {
			net_set_events(&net, &k->s, NET_OUT);
			return;
		}
		now = now_ns();
	}
	srv_close(k);
}

/* Echo what arrived (rr); when the peer will not take it, stop reading until it does. */
static void srv_echo(struct conn *k)
{
	for (;;) {
		if (k->echo_pending) {
			ssize_t w = net_write(&net, &k->s, k->echo_buf, k->echo_pending);
			if (w == -EAGAIN) {
				net_set_events(&net, &k->s, NET_OUT);
				return;
			}
			if (w < 0) {
				srv_close(k);
				return;
			}
			tot.bytes_out += (uint64_t)w;
			memmove(k->echo_buf, k->echo_buf + w, k->echo_pending - w);
			k->echo_pending -= (uint32_t)w;
			if (k->echo_pending) {
				net_set_events(&net, &k->s, NET_OUT);
				return;
			}
			net_set_events(&net, &k->s, NET_IN);
		}
		ssize_t n = net_read(&net, &k->s, k->echo_buf, BUF_SIZE);
		if (n == -EAGAIN)
			return;
		if (n <= 0) {
			srv_close(k);
			return;
		}
		tot.bytes_in += (uint64_t)n;
		tot.rounds++;
		k->echo_pending = (uint32_t)n;
	}
}

static void srv_event(struct conn *k, uint32_t ev)
{
	if (!k->mode) {
		ssize_t n = net_read(&net, &k->s, k->hello + k->hlen, HELLO_LEN - k->hlen);
		if (n == -EAGAIN)
			return;
		if (n <= 0) {
			srv_close(k);
			return;
		}
		k->hlen += (uint32_t)n;
		if (k->hlen < HELLO_LEN)
			return;
		if (memcmp(k->hello, "TPRF", 4) ||
		    (k->hello[4] != MODE_SEND && k->hello[4] != MODE_RECV && k->hello[4] != MODE_RR)) {
			srv_close(k);
			return;
		}
		k->mode = k->hello[4];
		k->size = get32(k->hello + 8);
		k->deadline_ns = now_ns() + (uint64_t)get32(k->hello + 12) * 1000000ull;
		if (k->mode == MODE_RR && !(k->echo_buf = malloc(BUF_SIZE))) {
			srv_close(k);
			return;
		}
		if (k->mode == MODE_RECV) {
			srv_source(k, now_ns());
			return;
		}
	}
	(void)ev;
	if (k->mode == MODE_RECV) {
		srv_source(k, now_ns());
	} else if (k->mode == MODE_RR) {
		srv_echo(k);
	} else {
		ssize_t n = drain(&k->s);
		if (n > 0) {
			k->bytes += (uint64_t)n;
			tot.bytes_in += (uint64_t)n;
		} else if (n != -EAGAIN) {
			/* the client's FIN: tell it what arrived */
			uint8_t reply[8];
			memcpy(reply, &k->bytes, 8);
			if (n == 0)
				write_all(&k->s, reply, sizeof(reply));
			srv_close(k);
		}
	}
}

static int server(struct us_endpoint *eps, int neps, int port, double duration, int once)
{
	static struct listener ls[MAX_LISTEN];
	int nl = 0;
	if (net.kind == NET_KERNEL) {
		for (int i = 0; i < neps; i++) {
			ls[nl].type = OBJ_LISTENER;
			int r = net_listen(&net, &eps[i], 128, &ls[nl].s, &ls[nl]);
			if (r < 0) {
				fprintf(stderr, "userstack-tcpperf: listen: %s\n", strerror(-r));
				return 1;
			}
			nl++;
		}
	} else {
		const struct us_desc *d = us_stack_desc(net_stack(&net));
		for (uint32_t i = 0; i < d->ntuples && nl < MAX_LISTEN; i++) {
			const struct us_tuple *t = &d->tuples[i];
			if (t->proto != 6 || (port >= 0 && t->port != port))
				continue;
			struct us_endpoint ep = { .addr = t->addr, .port = t->port };
			ls[nl].type = OBJ_LISTENER;
			int r = net_listen(&net, &ep, 128, &ls[nl].s, &ls[nl]);
			if (r < 0) {
				fprintf(stderr, "userstack-tcpperf: listen on port %u: %s\n", t->port, strerror(-r));
				return 1;
			}
			nl++;
		}
		if (!nl) {
			fprintf(stderr, "userstack-tcpperf: the stack owns no TCP tuple\n");
			return 1;
		}
	}
	fprintf(stderr, "userstack-tcpperf: serving on %s (%d listener%s)\n", net_kind_name(&net), nl,
		nl == 1 ? "" : "s");
	static struct net_event ev[256];
	uint64_t end = duration > 0 ? now_ns() + (uint64_t)(duration * 1e9) : 0;
	while (!stop_flag && (!end || now_ns() < end)) {
		int n = net_wait(&net, ev, 256, spin ? 0 : 200);
		if (n < 0 && n != -EINTR)
			break;
		for (int i = 0; i < n; i++) {
			if (*(int *)ev[i].user == OBJ_LISTENER) {
				struct listener *l = ev[i].user;
				for (;;) {
					struct conn *k = calloc(1, sizeof(*k));
					if (!k)
						break;
					k->type = OBJ_CONN;
					if (net_accept(&net, &l->s, &k->s, k, NULL) < 0) {
						free(k);
						break;
					}
					net_nodelay(&net, &k->s);
					tot.conns++;
					tot.open++;
				}
				continue;
			}
			srv_event(ev[i].user, ev[i].events);
		}
		if (once && tot.conns && !tot.open)
			break;
	}
	/* the user stack finishes closes (FIN, ACKs) in us_wait: give it a moment */
	for (uint64_t e = now_ns() + 200000000ull; net.kind == NET_USER && now_ns() < e;)
		net_wait(&net, ev, 256, 20);
	printf("{\"transport\": \"%s\", \"conns\": %llu, \"bytes_in\": %llu, \"bytes_out\": %llu, "
	       "\"rounds\": %llu}\n", net_kind_name(&net), (unsigned long long)tot.conns,
	       (unsigned long long)tot.bytes_in, (unsigned long long)tot.bytes_out,
	       (unsigned long long)tot.rounds);
	fflush(stdout);
	return 0;
}

/* ---- client ---- */
static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Wait for one of events on s; 0, or -errno (-ETIMEDOUT past the deadline). */
static int wait_for(struct net_sock *s, uint32_t events, uint64_t deadline)
{
	struct net_event ev[8];
	net_set_events(&net, s, events);
	for (;;) {
		if (stop_flag)
			return -EINTR;
		uint64_t now = now_ns();
		if (now >= deadline)
			return -ETIMEDOUT;
		int ms = (int)((deadline - now) / 1000000) + 1;
		int n = net_wait(&net, ev, 8, spin ? 0 : ms > 200 ? 200 : ms);
		if (n < 0 && n != -EINTR)
			return n;
		for (int i = 0; i < n; i++)
			if (ev[i].events & (events | NET_ERR | NET_HUP))
				return 0;
	}
}

static int client(const struct us_endpoint *remote, int mode, double duration, uint32_t size,
		  uint64_t count)
{
	struct conn k = { .type = OBJ_CONN };
	uint64_t t_start = now_ns(), run_ns = (uint64_t)(duration * 1e9);
	uint64_t hard = t_start + run_ns + 30ull * 1000000000ull;     /* bounded whatever happens */
	int r = net_connect(&net, remote, &k.s, &k);
	if (r < 0) {
		fprintf(stderr, "userstack-tcpperf: connect: %s\n", strerror(-r));
		return 1;
	}
	if ((r = wait_for(&k.s, NET_OUT, t_start + 10ull * 1000000000ull)) < 0 ||
	    (r = net_sock_error(&net, &k.s)) < 0) {
		fprintf(stderr, "userstack-tcpperf: connect: %s\n", strerror(-r));
		return 1;
	}
	net_nodelay(&net, &k.s);
	uint8_t hello[HELLO_LEN] = { 'T', 'P', 'R', 'F', (uint8_t)mode };
	put32(hello + 8, size);
	put32(hello + 12, (uint32_t)(duration * 1000));
	if (write_all(&k.s, hello, sizeof(hello)) < 0) {
		fprintf(stderr, "userstack-tcpperf: cannot send the hello\n");
		return 1;
	}
	uint64_t bytes = 0, t0 = now_ns(), t1 = 0, first = 0;
	const char *name = mode == MODE_SEND ? "send" : mode == MODE_RECV ? "recv" : "rr";
	if (mode == MODE_SEND) {
		uint64_t end = t0 + run_ns;
		while (now_ns() < end && !stop_flag) {
			ssize_t w = net_write(&net, &k.s, buf, BUF_SIZE);
			if (w == -EAGAIN || (w >= 0 && (size_t)w < BUF_SIZE)) {
				if (w > 0)
					bytes += (uint64_t)w;
				if ((r = wait_for(&k.s, NET_OUT, end)) == -ETIMEDOUT)
					break;
				if (r < 0)
					goto fail;
				continue;
			}
			if (w < 0) {
				r = (int)w;
				goto fail;
			}
			bytes += (uint64_t)w;
		}
		net_shutdown_wr(&net, &k.s);
		uint8_t reply[8];
		size_t got = 0;
		while (got < 8) {
			if ((r = wait_for(&k.s, NET_IN, hard)) < 0)
				goto fail;
			ssize_t n = net_read(&net, &k.s, reply + got, 8 - got);
			if (n == -EAGAIN)
				continue;
			if (n <= 0) {
				r = n ? (int)n : -ECONNRESET;
				goto fail;
			}
			got += (size_t)n;
		}
		t1 = now_ns();
		uint64_t counted;
		memcpy(&counted, reply, 8);
		double s = (t1 - t0) / 1e9;
		printf("{\"transport\": \"%s\", \"mode\": \"%s\", \"bytes\": %llu, \"bytes_written\": %llu, "
		       "\"seconds\": %.6f, \"gbit_per_s\": %.4f}\n", net_kind_name(&net), name,
		       (unsigned long long)counted, (unsigned long long)bytes, s, counted * 8 / s / 1e9);
	} else if (mode == MODE_RECV) {
		for (;;) {
			if ((r = wait_for(&k.s, NET_IN, hard)) < 0)
				goto fail;
			ssize_t n = drain(&k.s);
			if (n == -EAGAIN)
				continue;
			if (n < 0) {
				r = (int)n;
				goto fail;
			}
			if (n == 0)
				break;
			if (!first)
				first = now_ns();
			bytes += (uint64_t)n;
			t1 = now_ns();
		}
		double s = first && t1 > first ? (t1 - first) / 1e9 : 1e-9;
		printf("{\"transport\": \"%s\", \"mode\": \"%s\", \"bytes\": %llu, \"seconds\": %.6f, "
		       "\"gbit_per_s\": %.4f}\n", net_kind_name(&net), name, (unsigned long long)bytes, s,
		       bytes * 8 / s / 1e9);
	} else {
		if (!size || size > BUF_SIZE) {
			fprintf(stderr, "userstack-tcpperf: --size must be 1..%d\n", BUF_SIZE);
			return 2;
		}
		if (!count || count > MAX_ROUNDS)
			count = MAX_ROUNDS;
		uint64_t *rtt = malloc(count * sizeof(*rtt)), n_rtt = 0, end = t0 + run_ns;
		if (!rtt)
			return 1;
		while (n_rtt < count && now_ns() < end && !stop_flag) {
			uint64_t ts = now_ns();
			if (write_all(&k.s, buf, size) < 0) {
				r = -EIO;
				goto fail;
			}
			size_t got = 0;
			while (got < size) {
				ssize_t n = net_read(&net, &k.s, buf + BUF_SIZE, size - got);
				if (n == -EAGAIN && spin) {          /* read again at once, bounded */
					if (stop_flag || now_ns() >= hard) {
						r = stop_flag ? -EINTR : -ETIMEDOUT;
						goto fail;
					}
					continue;
				}
				if (n == -EAGAIN) {
					if ((r = wait_for(&k.s, NET_IN, hard)) < 0)
						goto fail;
					continue;
				}
				if (n <= 0) {
					r = n ? (int)n : -ECONNRESET;
					goto fail;
				}
				got += (size_t)n;
			}
			rtt[n_rtt++] = now_ns() - ts;
		}
		if (!n_rtt) {
			r = -ETIMEDOUT;
			goto fail;
		}
		double sum = 0;
		for (uint64_t i = 0; i < n_rtt; i++)
			sum += rtt[i];
		qsort(rtt, n_rtt, sizeof(*rtt), cmp_u64);
#define PCT(p) (rtt[(uint64_t)((n_rtt - 1) * (p))] / 1e3)
		printf("{\"transport\": \"%s\", \"mode\": \"rr\", \"size\": %u, \"rounds\": %llu, "
		       "\"seconds\": %.6f, \"rtt_us\": {\"min\": %.2f, \"p50\": %.2f, \"p90\": %.2f, "
		       "\"p99\": %.2f, \"max\": %.2f, \"mean\": %.2f}}\n", net_kind_name(&net), size,
		       (unsigned long long)n_rtt, (now_ns() - t0) / 1e9, PCT(0), PCT(0.5), PCT(0.9),
		       PCT(0.99), PCT(1), sum / n_rtt / 1e3);
		free(rtt);
	}
	fflush(stdout);
	net_close(&net, &k.s);
	/* the stack finishes the close (FIN, ACKs) in us_wait: give it a moment */
	if (net.kind == NET_USER)
		for (uint64_t e = now_ns() + 200000000ull; now_ns() < e;) {
			struct net_event ev[4];
			net_wait(&net, ev, 4, 20);
		}
	return 0;
fail:
	fprintf(stderr, "userstack-tcpperf: %s: %s\n", name, strerror(-r));
	net_close(&net, &k.s);
	return 1;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: userstack-tcpperf [--kernel [--spin] --listen ADDR:PORT ...] [--port P] [--duration S]\n"
		"                         [--once]\n"
		"       userstack-tcpperf [--kernel [--spin]] --connect ADDR:PORT --mode send|recv|rr\n"
		"                         [--duration S] [--size BYTES] [--count N]\n");
}

int main(int argc, char **argv)
{
	struct us_endpoint eps[MAX_LISTEN], remote;
	int neps = 0, kernel = 0, port = -1, mode = 0, connect = 0, once = 0;
	double duration = 0;
	uint32_t size = 64;
	uint64_t count = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--kernel")) {
			kernel = 1;
			continue;
		}
		if (!strcmp(a, "--once")) {
			once = 1;
			continue;
		}
		if (!strcmp(a, "--spin")) {
			spin = 1;
			continue;
		}
		if (!v) {
			usage();
			return 2;
		}
		i++;
		if (!strcmp(a, "--listen") && neps < MAX_LISTEN && !net_parse_endpoint(v, &eps[neps]))
			neps++;
		else if (!strcmp(a, "--connect") && !net_parse_endpoint(v, &remote))
			connect = 1;
		else if (!strcmp(a, "--mode") && (!strcmp(v, "send") || !strcmp(v, "recv") || !strcmp(v, "rr")))
			mode = v[0] == 's' ? MODE_SEND : v[0] == 'r' && v[1] == 'e' ? MODE_RECV : MODE_RR;
		else if (!strcmp(a, "--port"))
			port = atoi(v);
		else if (!strcmp(a, "--duration"))
			duration = atof(v);
		else if (!strcmp(a, "--size"))
			size = (uint32_t)strtoul(v, NULL, 10);
		else if (!strcmp(a, "--count"))
			count = strtoull(v, NULL, 10);
		else {
			usage();
			return 2;
		}
	}
	if ((connect && (!mode || neps)) || (!connect && mode) || (kernel && !connect && !neps) ||
	    (!kernel && (neps || spin))) {
		usage();
		return 2;
	}
	if (connect && duration <= 0)
		duration = 5;
	buf = calloc(1, 2 * BUF_SIZE);
	if (!buf)
		return 1;
	for (size_t i = 0; i < BUF_SIZE; i++)
		buf[i] = (uint8_t)(i * 7);
	int r = kernel ? net_open_kernel(&net) : net_open_user(&net);
	if (r < 0) {
		fprintf(stderr, "userstack-tcpperf: cannot open the %s: %s\n",
			kernel ? "epoll instance" : "user-level stack (run under `xdpstack run`)", strerror(-r));
		return 1;
	}
	struct sigaction sa = { 0 };
	sa.sa_handler = on_stop;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	r = connect ? client(&remote, mode, duration, size, count) : server(eps, neps, port, duration, once);
	net_close_all(&net);
	return r;
}
