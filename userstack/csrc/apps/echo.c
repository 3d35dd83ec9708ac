/* userstack-echo: echo on every tuple the stack owns, UDP and TCP, through the C API only (../api.h).
 *
 *   xdpstack run IFACE --udp 7000 --tcp 7000 -- userstack-echo   echo datagrams and TCP streams
 *   xdpstack run IFACE --udp 9000 -- userstack-echo --sink       count, echo nothing
 *
 * TCP: any number of concurrent connections; each byte received is sent back (zero-copy from the
 * receive buffer into the send buffer; when the send buffer is full, reading stops until it drains,
 * so a slow reader slows its sender). Half-close is respected: after the peer's FIN the rest is
 * echoed, then our FIN. --sink reads and discards.
 *
 * Options: --sink, --count N (exit after N datagrams), --duration SECONDS, --quiet.
 * On exit (and on SIGUSR1) one JSON line on stdout (SIGUSR1 also lists the open TCP
 * connections on stderr: state, buffers, window, what the echo waits for):
 *   {"datagrams": N, "bytes": B, "echoed": E, "first_ns": T0, "last_ns": T1, "tcp_accepted": A,
 *    "tcp_bytes": TB, "tcp_open": O, ...stack counters}
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
#define MAX_EVENTS 256

static volatile sig_atomic_t stop_flag, report_flag;
static void on_stop(int sig) { (void)sig; stop_flag = 1; }
static void on_report(int sig) { (void)sig; report_flag = 1; }

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

struct counts {
	uint64_t datagrams, bytes, echoed, send_errors, first, last;
	uint64_t tcp_accepted, tcp_bytes, tcp_open, tcp_resets;
};

/* What a us_sock's user pointer points to. */
enum kind { UDP_SOCK = 1, TCP_LISTENER, TCP_CONN };
struct handle {
	enum kind kind;
	struct us_sock *s;
	uint32_t waits;                 /* events asked for */
	struct handle *next, *prev;     /* open connections */
};
static struct handle conns = { .next = &conns, .prev = &conns };
static const uint32_t CONN_EVENTS = US_EV_IN | US_EV_ERR | US_EV_HUP | US_EV_RDHUP;

static void report(struct us_stack *st, const struct counts *c, int verbose)
{
	struct us_stats s;
	struct us_tcp_stats t;
	us_stack_stats(st, &s);
	us_tcp_stack_stats(st, &t);
	printf("{\"datagrams\": %llu, \"bytes\": %llu, \"echoed\": %llu, \"send_errors\": %llu, "
	       "\"first_ns\": %llu, \"last_ns\": %llu, \"rx_frames\": %llu, \"rx_queue_full\": %llu, "
	       "\"rx_bad_csum\": %llu, \"rx_csum_partial\": %llu, \"rx_malformed\": %llu, \"tx_frames\": %llu, "
	       "\"tcp_accepted\": %llu, \"tcp_bytes\": %llu, \"tcp_open\": %llu, \"tcp_resets\": %llu, "
	       "\"tcp_retransmits\": %llu, \"tcp_listen_drops\": %llu}\n",
	       (unsigned long long)c->datagrams, (unsigned long long)c->bytes,
	       (unsigned long long)c->echoed, (unsigned long long)c->send_errors,
	       (unsigned long long)c->first, (unsigned long long)c->last,
	       (unsigned long long)s.rx_frames, (unsigned long long)s.rx_queue_full,
	       (unsigned long long)s.rx_bad_csum, (unsigned long long)s.rx_csum_partial,
	       (unsigned long long)s.rx_malformed,
	       (unsigned long long)s.tx_frames, (unsigned long long)c->tcp_accepted,
	       (unsigned long long)c->tcp_bytes, (unsigned long long)c->tcp_open,
	       (unsigned long long)c->tcp_resets, (unsigned long long)t.retransmits,
	       (unsigned long long)t.listen_drops);
	fflush(stdout);
	if (verbose)
		fprintf(stderr, "tcp: segs_in=%llu segs_out=%llu bad=%llu rst_in=%llu rst_out=%llu paws=%llu "
			"chal=%llu ooo=%llu nobufs=%llu timeouts=%llu\n", (unsigned long long)t.segs_in,
			(unsigned long long)t.segs_out, (unsigned long long)t.bad_segs,
			(unsigned long long)t.rst_in, (unsigned long long)t.rst_out,
			(unsigned long long)t.paws_drops, (unsigned long long)t.challenge_acks,
			(unsigned long long)t.ooo_segs, (unsigned long long)t.emit_nobufs,
			(unsigned long long)t.timeouts);
}

static void dump_conns(void)
{
	static const char *const names[] = { "CLOSED", "LISTEN", "SYN-SENT", "SYN-RECEIVED", "ESTABLISHED",
		"FIN-WAIT-1", "FIN-WAIT-2", "CLOSE-WAIT", "CLOSING", "LAST-ACK", "TIME-WAIT" };
	for (struct handle *h = conns.next; h != &conns; h = h->next) {
		struct us_tcp_info i;
		struct us_endpoint peer;
		char a[64] = "?";
		us_tcp_info(h->s, &i);
		if (!us_sock_peer(h->s, &peer))
			us_addr_format(&peer.addr, a, sizeof(a));
		fprintf(stderr, "conn %s:%u %s waits=%#x events=%#x rcvbuf=%u sndbuf=%u cwnd=%u snd_wnd=%u "
			"rcv_wnd=%u unacked=%u rto=%u ca=%u retrans=%llu timeouts=%llu snd_una=%u snd_nxt=%u "
			"snd_max=%u rcv_nxt=%u acked=%llu received=%llu\n", a, peer.port,
			i.state <= 10 ? names[i.state] : "?", h->waits, (unsigned)us_sock_wait(h->s, 0xffff, 0),
			i.rcvbuf_used, i.sndbuf_used, i.cwnd, i.snd_wnd, i.rcv_wnd, i.unacked, i.rto_us,
			i.ca_state, (unsigned long long)i.retransmits, (unsigned long long)i.timeouts,
			i.snd_una, i.snd_nxt, i.snd_max, i.rcv_nxt, (unsigned long long)i.bytes_acked,
			(unsigned long long)i.bytes_received);
	}
}

static void set_waits(struct handle *h, uint32_t ev)
{
	h->waits = ev;
	us_sock_set_events(h->s, ev);
}

static void conn_close(struct handle *h, struct counts *c)
{
	h->prev->next = h->next;
	h->next->prev = h->prev;
	us_sock_close(h->s);
	free(h);
	c->tcp_open--;
}

/* Move what was received into the send buffer; stop reading while it is full; at the end of
 * the peer's stream (once everything is echoed) close: FIN after the queued data. */
static void conn_pump(struct handle *h, int sink, struct counts *c)
{
	struct us_sock *s = h->s;
	for (;;) {
		struct us_iov iov[2];
		ssize_t n = us_tcp_peek(s, iov);
		if (n <= 0)
			break;
		ssize_t w = sink ? n : us_tcp_writev(s, iov, 2, US_MSG_MORE);
		if (w < 0 && w != -EAGAIN) {
			c->tcp_resets++;
			conn_close(h, c);
			return;
		}
		if (w > 0) {
			us_tcp_consume(s, (size_t)w);
			c->tcp_bytes += (uint64_t)w;
		}
		if (w < n) {                   /* send buffer full: wait until it drains */
			set_waits(h, US_EV_OUT | US_EV_ERR | US_EV_HUP);
			return;
		}
	}
	char b;
	ssize_t r = us_tcp_read(s, &b, 0);     /* nothing buffered: end of stream or an error? */
	if (r == -EAGAIN)
		return;
	if (r < 0)
		c->tcp_resets++;
	conn_close(h, c);
}

static void tcp_accept_all(struct us_sock *l, struct counts *c)
{
	for (;;) {
		int err;
		struct us_sock *s = us_tcp_accept(l, NULL, &err);
		if (!s)
			return;
		struct handle *h = malloc(sizeof(*h));
		if (!h) {
			us_tcp_abort(s);
			continue;
		}
		h->kind = TCP_CONN;
		h->s = s;
		h->next = &conns;
		h->prev = conns.prev;
		conns.prev->next = h;
		conns.prev = h;
		us_tcp_setsockopt(s, US_TCP_NODELAY, 1);
		us_sock_set_user(s, h);
		set_waits(h, CONN_EVENTS);
		c->tcp_accepted++;
		c->tcp_open++;
	}
}

static void udp_echo(struct us_sock *s, int sink, struct counts *c)
{
	static char bufs[BATCH][9216];
	struct us_msg m[BATCH];
	int k;
	do {
		for (int j = 0; j < BATCH; j++) {
			m[j].buf = sink ? NULL : bufs[j];
			m[j].len = sink ? 0 : sizeof(bufs[j]);
		}
		k = us_udp_recvmmsg(s, m, BATCH);
		if (k > 0) {
			uint64_t t = now_ns();
			if (!c->first)
				c->first = t;
			c->last = t;
		}
		for (int j = 0; j < k; j++) {
			c->datagrams++;
			c->bytes += m[j].full_len;
			if (sink)
				continue;
			if (us_udp_sendmsg(s, &m[j], US_MSG_MORE) >= 0)
				c->echoed++;
			else
				c->send_errors++;
		}
	} while (k == BATCH);
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
	static struct handle socks[MAX_SOCKS];
	memset(socks, 0, sizeof(socks));
	int nsocks = 0;
	for (uint32_t i = 0; i < d->ntuples && nsocks < MAX_SOCKS; i++) {
		const struct us_tuple *t = &d->tuples[i];
		int tcp = t->proto == 6;
		struct us_sock *s = tcp ? us_tcp_socket(st, t->addr.family, &err)
					: us_udp_socket(st, t->addr.family, &err);
		struct us_endpoint ep = { .addr = t->addr, .port = t->port };
		if (s && !(err = tcp ? us_tcp_bind(s, &ep) : us_udp_bind(s, &ep)) && tcp)
			err = us_tcp_listen(s, 4096);
		if (!s || err) {
			fprintf(stderr, "userstack-echo: %s port %u: %s\n", tcp ? "tcp" : "udp", t->port,
				strerror(-err));
			if (s)
				us_sock_close(s);
			continue;
		}
		if (!tcp)
			us_sock_set_rcvbuf(s, 4u << 20);
		socks[nsocks].kind = tcp ? TCP_LISTENER : UDP_SOCK;
		socks[nsocks].s = s;
		us_sock_set_user(s, &socks[nsocks]);
		nsocks++;
		if (!quiet)
			fprintf(stderr, "userstack-echo: %s on %s/%u (IPv%u)\n", sink ? "sink" : "echo",
				tcp ? "tcp" : "udp", t->port, t->addr.family);
	}
	if (!nsocks) {
		fprintf(stderr, "userstack-echo: the stack owns no UDP or TCP tuple\n");
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

	struct us_event ev[MAX_EVENTS];
	struct counts c = { 0 };
	uint64_t end = duration > 0 ? now_ns() + (uint64_t)(duration * 1e9) : 0;
	while (!stop_flag) {
		int n = us_wait(st, ev, MAX_EVENTS, 200);
		if (report_flag) {
			report_flag = 0;
			report(st, &c, 1);
			dump_conns();
		}
		if (end && now_ns() >= end)
			break;
		for (int i = 0; i < n; i++) {
			struct handle *h = ev[i].user;
			switch (h->kind) {
			case UDP_SOCK:
				udp_echo(h->s, sink, &c);
				break;
			case TCP_LISTENER:
				tcp_accept_all(h->s, &c);
				break;
			case TCP_CONN:
				if (ev[i].events & US_EV_OUT)      /* drained: read again */
					set_waits(h, CONN_EVENTS);
				conn_pump(h, sink, &c);
				break;
			}
		}
		us_flush(st);                  /* what this batch queued, in one go */
		if (count && c.datagrams >= count)
			break;
	}
	report(st, &c, 0);
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	sigaction(SIGUSR1, &old_usr1, NULL);
	us_stack_close(st);                /* every socket, TCP connections closed gracefully */
	return 0;
}
