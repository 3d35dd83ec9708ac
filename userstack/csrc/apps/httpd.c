/* userstack-httpd: an HTTP/1.1 server on the user-level stack, or the same server on kernel
 * sockets (net.h: one event loop over both transports, the HTTP logic shared).
 *
 *   xdpstack run IFACE --tcp 80 -- userstack-httpd                every GET: a small default body
 *   xdpstack run IFACE --tcp 80 -- userstack-httpd --body-size 64
 *   xdpstack run IFACE --tcp 80 -- userstack-httpd --root /srv/www
 *   userstack-httpd --kernel --listen 0.0.0.0:8080 [--listen [::]:8080]     kernel sockets, epoll
 *
 * On the user stack it listens on every TCP tuple the stack owns (or only --port P).
 * Keep-alive, pipelining (many requests per read, responses in order), Connection: close, HEAD,
 * GET; other methods get 405. With --root, files below DIR (openat2 RESOLVE_BENEATH: no way out
 * through "..", absolute or symbolic links); 400/404/403/413/414/431/501/505 where due.
 * Limits: --max-head (request line + headers, 8 KiB), --max-body (request body we read and
 * discard, 1 MiB; more gets 413 and a close), --max-conns (10,000; more are accepted and closed
 * at once), --idle-timeout (60 s). On the user stack, --sndbuf/--rcvbuf set the stack's TCP
 * buffers per connection (256 KiB / 64 KiB: requests are small; XDPSTACK_TCP wins if it names
 * them); kernel sockets keep the kernel's autotuning.
 *
 * Run to completion: net_wait batches readiness. On the user stack each ready connection's bytes
 * are parsed in place in the stack's receive buffer (us_tcp_peek) and consumed after the whole
 * batch (the stack sends everything the batch queued, responses, FINs, window updates, at the
 * next net_wait, one TX kick); on kernel sockets they are read into one shared buffer. Every complete request is
 * answered into a gather list written once per read: the canned fixed-body responses are never
 * copied on kernel sockets, and copied once, into the send buffer, on the user stack. Partial
 * requests and output the transport did not take are kept per connection; while output is
 * pending the connection is not read (backpressure), and pipelined requests wait their turn.
 *
 * On exit (SIGINT/SIGTERM, --duration) and on SIGUSR1: one JSON line of counters on stdout.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include "../api.h"
#include "http.h"
#include "net.h"

#define IBUF_SIZE   (64 * 1024)     /* shared read buffer */
#define OBUF_SIZE   (256 * 1024)    /* shared scratch for response heads and small bodies */
#define MAX_IOV     64
#define CANNED_MAX  (16 * 1024)     /* fixed bodies up to this size are sent with their head */
#define FILE_INLINE (32 * 1024)     /* files up to this size are read whole; larger are streamed */
#define LINGER_NS   (2ull * 1000000000ull)
#define MAX_LISTEN  64
#define DEFAULT_BODY "Hello from userstack-httpd\n"

enum { OBJ_LISTENER = 1, OBJ_CONN };

struct list { struct conn *head, *tail; };

struct conn {
	int type;                   /* OBJ_CONN */
	struct net_sock s;
	struct conn *prev, *next;   /* in active or lingering, oldest first */
	struct list *on;
	uint64_t last_ns;
	char *rbuf;                 /* unparsed input carried to the next read */
	uint32_t rlen, rcap;
	char *pend;                 /* output the transport has not taken yet */
	uint32_t plen, poff, pcap;
	uint64_t skip;              /* request body bytes still to discard */
	const char *smem;           /* streamed body: from memory (the fixed body) ... */
	int sfd;                    /* ... or from a file */
	uint64_t sleft;
	uint8_t closing;            /* close once the output is out */
	uint8_t lingering;          /* FIN sent; reading and discarding until EOF or timeout */
	uint8_t unread;             /* the client may still be sending: linger before closing */
	uint32_t unconsumed;        /* user stack: bytes parsed in place, consumed after the batch */
	int cidx;                   /* ... at g.consume[cidx] */
};

struct listener {
	int type;                   /* OBJ_LISTENER */
	struct net_sock s;
	struct us_endpoint ep;
};

static struct {
	struct net net;
	int kernel, quiet, rootfd;
	size_t max_head, max_body, max_conns;
	uint64_t idle_ns;
	const char *body;
	size_t body_len;
	char date[30];
	int64_t date_sec;
	/* canned fixed-body responses: [HEAD?][conn header], head + body (or head only) */
	char *canned[2][3];
	size_t canned_len[2][3];
	struct list active, lingering;
	size_t nconns;
	struct listener listeners[MAX_LISTEN];
	int nlisteners;
	/* the gather list of the connection being answered */
	struct iovec iov[MAX_IOV];
	int niov;
	char *obuf;
	size_t oused;
	char *ibuf;
	uint64_t now_ns;
	struct conn *consume[1024]; /* connections with unconsumed bytes (one per ready socket) */
	int nconsume;
} g;

static struct {
	uint64_t requests, get, head, resp_2xx, resp_3xx, resp_4xx, resp_5xx;
	uint64_t accepted, refused, closed, idle_closed, bytes_in, bytes_out, write_blocked;
} c;

static volatile sig_atomic_t stop_flag, report_flag;
static void on_stop(int sig) { (void)sig; stop_flag = 1; net_wake(&g.net); }
static void on_report(int sig) { (void)sig; report_flag = 1; net_wake(&g.net); }

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

/* ---- connection lists (oldest activity first) ---- */
static void list_del(struct conn *k)
{
	struct list *l = k->on;
	if (!l)
		return;
	if (k->prev) k->prev->next = k->next; else l->head = k->next;
	if (k->next) k->next->prev = k->prev; else l->tail = k->prev;
	k->prev = k->next = NULL;
	k->on = NULL;
}

static void list_add_tail(struct list *l, struct conn *k)
{
	k->prev = l->tail;
	k->next = NULL;
	if (l->tail) l->tail->next = k; else l->head = k;
	l->tail = k;
	k->on = l;
}

static void touch(struct conn *k)
{
	k->last_ns = g.now_ns;
	if (k->on == &g.active && g.active.tail != k) {
		list_del(k);
		list_add_tail(&g.active, k);
	}
}

/* ---- responses ---- */
static void refresh_date(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME_COARSE, &ts);
	if (ts.tv_sec == g.date_sec)
		return;
	g.date_sec = ts.tv_sec;
	http_date(g.date, ts.tv_sec);
	if (g.rootfd >= 0)
		return;
	/* The canned responses carry the date: rebuild them once a second. */
	const char *ctype = "text/plain";
	for (int head = 0; head < 2; head++)
		for (int ch = 0; ch < 3; ch++) {
			char *b = g.canned[head][ch];
			size_t n = http_head(b, 512, 200, g.date, ctype, g.body_len, ch, NULL);
			if (!head && g.body_len <= CANNED_MAX) {
				memcpy(b + n, g.body, g.body_len);
				n += g.body_len;
			}
			g.canned_len[head][ch] = n;
		}
}

static void count_status(int status)
{
	if (status < 300) c.resp_2xx++;
	else if (status < 400) c.resp_3xx++;
	else if (status < 500) c.resp_4xx++;
	else c.resp_5xx++;
}

static int conn_hdr(const struct http_req *r, int keep)
{
	if (!keep)
		return HTTP_CONN_CLOSE;
	return r && r->minor == 0 ? HTTP_CONN_KEEP_ALIVE : HTTP_CONN_NONE;
}

static void flush_out(struct conn *k);

/* Add bytes to the gather list (not copied: they must live until flush_out). */
static void out_ref(struct conn *k, const void *p, size_t n)
{
	if (!n)
		return;
	if (g.niov == MAX_IOV)
		flush_out(k);
	g.iov[g.niov].iov_base = (void *)p;
	g.iov[g.niov].iov_len = n;
	g.niov++;
}

/* Room for n bytes of scratch output and one gather entry (flushing first when either is
 * used up, so that out_commit never flushes under the bytes being built). */
static char *out_space(struct conn *k, size_t n)
{
	if (g.oused + n > OBUF_SIZE || g.niov == MAX_IOV)
		flush_out(k);
	return g.obuf + g.oused;
}

static void out_commit(char *p, size_t n)
{
	g.oused += n;
	g.iov[g.niov].iov_base = p;
	g.iov[g.niov].iov_len = n;
	g.niov++;
}

static void pend_append(struct conn *k, const char *p, size_t n)
{
	if (k->poff && k->poff == k->plen)
		k->poff = k->plen = 0;
	if (k->plen + n > k->pcap) {
		if (k->poff) {
			memmove(k->pend, k->pend + k->poff, k->plen - k->poff);
			k->plen -= k->poff;
			k->poff = 0;
		}
		if (k->plen + n > k->pcap) {
			uint32_t cap = k->pcap ? k->pcap : 4096;
			while (cap < k->plen + n)
				cap *= 2;
			char *nb = realloc(k->pend, cap);
			if (!nb) {
				k->closing = 2;             /* output lost: the connection is broken */
				return;
			}
			k->pend = nb;
			k->pcap = cap;
		}
	}
	memcpy(k->pend + k->plen, p, n);
	k->plen += (uint32_t)n;
}

/* Write the gather list; what the transport does not take is copied into k->pend. */
static void flush_out(struct conn *k)
{
	int i = 0;
	size_t off = 0;
	if (g.niov && k->plen == k->poff) {
		ssize_t w = net_writev(&g.net, &k->s, g.iov, g.niov);
		if (w < 0 && w != -EAGAIN) {
			k->closing = 2;             /* broken: close without flushing */
			g.niov = 0;
			g.oused = 0;
			return;
		}
		size_t left = w > 0 ? (size_t)w : 0;
		c.bytes_out += left;
		while (i < g.niov && left >= g.iov[i].iov_len)
			left -= g.iov[i++].iov_len;
		off = left;
	}
	if (i < g.niov)
		c.write_blocked++;
	for (; i < g.niov; i++, off = 0)
		pend_append(k, (const char *)g.iov[i].iov_base + off, g.iov[i].iov_len - off);
	g.niov = 0;
	g.oused = 0;
}

static void respond_error(struct conn *k, const struct http_req *r, int status, int keep,
			  const char *extra)
{
	char body[64];
	int bl = snprintf(body, sizeof(body), "%d %s\n", status, http_reason(status));
	size_t cap = 512 + (extra ? strlen(extra) : 0);
	char *p = out_space(k, cap + bl);
	size_t n = http_head(p, cap, status, g.date, "text/plain", bl, conn_hdr(r, keep), extra);
	if (!r || r->method != HTTP_HEAD) {
		memcpy(p + n, body, bl);
		n += bl;
	}
	out_commit(p, n);
	count_status(status);
	if (!keep)
		k->closing = 1;
}

static int open_beneath(const char *rel)
{
	struct open_how how = { .flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK,
				.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS };
	long fd = syscall(SYS_openat2, g.rootfd, rel, &how, sizeof(how));
	return fd < 0 ? -errno : (int)fd;
}

static void respond_file(struct conn *k, const struct http_req *r, int keep)
{
	char path[4096];
	int pl = http_local_path(r->target, r->target_len, path, sizeof(path));
	if (pl < 0) {
		respond_error(k, r, -pl, keep, NULL);
		return;
	}
	int fd = open_beneath(path);
	struct stat sb;
	if (fd >= 0 && fstat(fd, &sb) < 0) {
		close(fd);
		fd = -ENOENT;
	}
	if (fd >= 0 && S_ISDIR(sb.st_mode)) {
		/* a directory named without its trailing '/': redirect like other servers do */
		close(fd);
		char loc[4200];
		const char *q = memchr(r->target, '?', r->target_len);
		size_t tl = q ? (size_t)(q - r->target) : r->target_len;
		if (tl > 4000) {
			respond_error(k, r, 414, keep, NULL);
			return;
		}
		snprintf(loc, sizeof(loc), "Location: %.*s/\r\n", (int)tl, r->target);
		respond_error(k, r, 301, keep, loc);
		return;
	}
	if (fd < 0 || !S_ISREG(sb.st_mode)) {
		int e = fd < 0 ? -fd : 0;
		if (fd >= 0)
			close(fd);
		respond_error(k, r, e == EACCES || e == EPERM ? 403 : 404, keep, NULL);
		return;
	}
	uint64_t size = (uint64_t)sb.st_size;
	char *p = out_space(k, 512);
	size_t n = http_head(p, 512, 200, g.date, http_content_type(path), size, conn_hdr(r, keep), NULL);
	out_commit(p, n);
	count_status(200);
	if (!keep)
		k->closing = 1;
	if (r->method == HTTP_HEAD || size == 0) {
		close(fd);
		return;
	}
	if (size <= FILE_INLINE) {
		char *b = out_space(k, size);
		ssize_t got = pread(fd, b, size, 0);
		close(fd);
		if (got != (ssize_t)size) {
			k->closing = 2;             /* the file changed under us: the length is wrong */
			return;
		}
		out_commit(b, size);
		return;
	}
	k->sfd = fd;
	k->sleft = size;
}

/* One parsed request: answer it into the gather list. */
static void respond(struct conn *k, const struct http_req *r)
{
	int keep = r->keep_alive;
	c.requests++;
	if (r->chunked) {
		k->unread = 1;
		respond_error(k, r, 501, 0, NULL);       /* a request body we cannot frame */
		return;
	}
	if (r->content_length > 0) {
		if ((uint64_t)r->content_length > g.max_body) {
			k->unread = 1;
			respond_error(k, r, 413, 0, NULL);
			return;
		}
		k->skip = (uint64_t)r->content_length;
	}
	if (r->method == HTTP_OTHER) {
		respond_error(k, r, 405, keep, "Allow: GET, HEAD\r\n");
		return;
	}
	int head = r->method == HTTP_HEAD;
	if (head) c.head++; else c.get++;
	if (g.rootfd >= 0) {
		respond_file(k, r, keep);
		return;
	}
	int ch = conn_hdr(r, keep);
	out_ref(k, g.canned[head][ch], g.canned_len[head][ch]);
	count_status(200);
	if (!head && g.body_len > CANNED_MAX) {
		k->smem = g.body;
		k->sleft = g.body_len;
	}
	if (!keep)
		k->closing = 1;
}

static int blocked(const struct conn *k)
{
	return k->plen > k->poff || k->sleft;
}

/* Parse and answer every complete request in buf; returns the bytes consumed. Stops at a
 * partial request, at a response that closes the connection, or when a streamed body makes
 * the connection wait. */
static size_t process(struct conn *k, const char *buf, size_t len)
{
	size_t off = 0;
	while (off < len && !k->closing && !k->sleft) {
		if (k->skip) {
			size_t n = len - off < k->skip ? len - off : (size_t)k->skip;
			k->skip -= n;
			off += n;
			continue;
		}
		struct http_req r;
		int h = http_parse(buf + off, len - off, g.max_head, &r);
		if (h == 0)
			break;
		if (h < 0) {
			c.requests++;
			k->unread = 1;
			respond_error(k, NULL, -h, 0, NULL);
			off = len;
			break;
		}
		off += (size_t)h;
		respond(k, &r);
	}
	return off;
}

/* On the user stack, consuming received bytes only queues a window update when one is due: the
 * next net_wait sends it with every response of the batch (../api.h, "Sending"). */
static void consume_now(struct conn *k)
{
	if (!k->unconsumed)
		return;
	net_consume(&g.net, &k->s, k->unconsumed);
	k->unconsumed = 0;
	g.consume[k->cidx] = NULL;
}

static void consume_batch(void)
{
	for (int i = 0; i < g.nconsume; i++)
		if (g.consume[i])
			consume_now(g.consume[i]);
	g.nconsume = 0;
}

static void conn_free(struct conn *k)
{
	consume_now(k);                     /* closing with unread bytes would reset the connection */
	list_del(k);
	net_close(&g.net, &k->s);
	if (k->sfd >= 0)
		close(k->sfd);
	free(k->rbuf);
	free(k->pend);
	free(k);
	g.nconns--;
	c.closed++;
}

static void keep_input(struct conn *k, const char *p, size_t n)
{
	if (n > k->rcap) {
		char *nb = realloc(k->rbuf, n);
		if (!nb) {
			k->closing = 2;
			return;
		}
		k->rbuf = nb;
		k->rcap = (uint32_t)n;
	}
	memmove(k->rbuf, p, n);
	k->rlen = (uint32_t)n;
}

/* The response that closes the connection is out: FIN, then read and discard what the client
 * still sends (so that closing with unread data does not reset the response away). */
static void start_linger(struct conn *k)
{
	consume_now(k);
	if (!k->rlen && !k->skip && !k->unread) {
		conn_free(k);                       /* nothing unread that we know of */
		return;
	}
	k->rlen = 0;
	k->lingering = 1;
	net_shutdown_wr(&g.net, &k->s);
	net_set_events(&g.net, &k->s, NET_IN);
	list_del(k);
	k->last_ns = g.now_ns;
	list_add_tail(&g.lingering, k);
}

/* Push pending output, then the streamed body. Returns nonzero while output remains. */
static int push(struct conn *k)
{
	while (k->plen > k->poff) {
		ssize_t w = net_write(&g.net, &k->s, k->pend + k->poff, k->plen - k->poff);
		if (w == -EAGAIN) {
			c.write_blocked++;
			return 1;
		}
		if (w < 0) {
			k->closing = 2;
			return 0;
		}
		c.bytes_out += w;
		k->poff += (uint32_t)w;
	}
	k->poff = k->plen = 0;
	while (k->sleft) {
		size_t chunk = k->sleft < IBUF_SIZE ? (size_t)k->sleft : IBUF_SIZE;
		const char *src = k->smem;
		if (!src) {
			ssize_t got = read(k->sfd, g.ibuf, chunk);
			if (got <= 0) {
				k->closing = 2;
				return 0;
			}
			chunk = (size_t)got;
			src = g.ibuf;
		}
		ssize_t w = net_write(&g.net, &k->s, src, chunk);
		if (w < 0 && w != -EAGAIN) {
			k->closing = 2;
			return 0;
		}
		size_t took = w > 0 ? (size_t)w : 0;
		c.bytes_out += took;
		if (k->smem) {
			k->smem += took;
			k->sleft -= took;
		} else {
			k->sleft -= chunk;          /* read from the file: sent, or pending below */
			if (took < chunk)
				pend_append(k, src + took, chunk - took);
		}
		if (took < chunk) {
			c.write_blocked++;
			if (!k->sleft && k->sfd >= 0) {
				close(k->sfd);
				k->sfd = -1;
			}
			return 1;
		}
	}
	if (k->sfd >= 0) {
		close(k->sfd);
		k->sfd = -1;
	}
	k->smem = NULL;
	return 0;
}

/* After output progress: close, keep waiting for room, or go back to reading (answering the
 * requests that were waiting first). */
static void after_output(struct conn *k)
{
	for (;;) {
		if (k->closing == 2) {
			conn_free(k);
			return;
		}
		if (push(k)) {
			net_set_events(&g.net, &k->s, NET_OUT);
			return;
		}
		if (k->closing == 2)
			continue;
		if (k->closing) {
			start_linger(k);
			return;
		}
		net_set_events(&g.net, &k->s, NET_IN);
		if (!k->rlen)
			return;
		/* requests that arrived while we waited */
		size_t have = k->rlen;
		memcpy(g.ibuf, k->rbuf, have);
		k->rlen = 0;
		size_t used = process(k, g.ibuf, have);
		flush_out(k);
		if (used < have && k->closing != 2)
			keep_input(k, g.ibuf + used, have - used);
		if (!blocked(k) && !k->closing)
			return;
	}
}

static void on_readable(struct conn *k)
{
	if (k->lingering) {
		for (int i = 0; i < 16; i++) {
			ssize_t n = net_read(&g.net, &k->s, g.ibuf, IBUF_SIZE);
			if (n == -EAGAIN)
				return;
			if (n <= 0) {
				conn_free(k);
				return;
			}
		}
		return;
	}
	touch(k);
	for (int rounds = 0; rounds < 8; rounds++) {
		size_t have = k->rlen;
		if (!have && g.net.kind == NET_USER && !k->unconsumed) {
			/* parse in place in the stack's receive buffer; only a partial request is copied */
			const char *buf;
			size_t len;
			ssize_t n = net_peek(&g.net, &k->s, &buf, &len);
			if (n > 0) {
				c.bytes_in += (uint64_t)len;
				size_t used = process(k, buf, len);
				if (used < len && k->closing != 2)
					keep_input(k, buf + used, len - used);
				flush_out(k);
				if ((size_t)n == len && g.nconsume < (int)(sizeof(g.consume) / sizeof(g.consume[0]))) {
					k->unconsumed = (uint32_t)len;      /* all there is: done for this batch */
					k->cidx = g.nconsume;
					g.consume[g.nconsume++] = k;
					break;
				}
				net_consume(&g.net, &k->s, len);   /* the ring wrapped: the rest next */
				if (k->closing || blocked(k))
					break;
				continue;
			}
		}
		if (have)
			memcpy(g.ibuf, k->rbuf, have);
		k->rlen = 0;
		ssize_t n = net_read(&g.net, &k->s, g.ibuf + have, IBUF_SIZE - have);
		if (n == -EAGAIN) {
			if (have)
				keep_input(k, g.ibuf, have);
			break;
		}
		if (n <= 0) {
			/* end of stream (or reset): what was asked is answered; nothing more comes */
			if (n < 0 || !blocked(k)) {
				conn_free(k);
				return;
			}
			k->closing = 1;
			break;
		}
		c.bytes_in += (uint64_t)n;
		size_t total = have + (size_t)n;
		size_t used = process(k, g.ibuf, total);
		flush_out(k);
		if (used < total && k->closing != 2)
			keep_input(k, g.ibuf + used, total - used);
		if (k->closing || blocked(k))
			break;
		if ((size_t)n < IBUF_SIZE - have)
			break;                          /* a short read: the socket is drained */
	}
	if (k->closing || blocked(k))
		after_output(k);
}

static void on_accept(struct listener *l)
{
	for (int i = 0; i < 256; i++) {
		struct conn *k = calloc(1, sizeof(*k));
		if (!k)
			return;
		k->type = OBJ_CONN;
		k->sfd = -1;
		int r = net_accept(&g.net, &l->s, &k->s, k, NULL);
		if (r < 0) {
			free(k);
			if (r != -EAGAIN && r != -EINTR && !g.quiet)
				fprintf(stderr, "userstack-httpd: accept: %s\n", strerror(-r));
			return;
		}
		if (g.nconns >= g.max_conns) {
			c.refused++;
			net_close(&g.net, &k->s);
			free(k);
			continue;
		}
		c.accepted++;
		g.nconns++;
		if (g.net.kind == NET_KERNEL)
			net_nodelay(&g.net, &k->s);     /* the user stack's inherit it from the listener */
		k->last_ns = g.now_ns;
		list_add_tail(&g.active, k);
	}
}

static void sweep(void)
{
	while (g.active.head && g.now_ns - g.active.head->last_ns > g.idle_ns) {
		c.idle_closed++;
		conn_free(g.active.head);
	}
	while (g.lingering.head && g.now_ns - g.lingering.head->last_ns > LINGER_NS)
		conn_free(g.lingering.head);
}

/* ---- set-up ---- */
static void report(void)
{
	printf("{\"transport\": \"%s\", \"requests\": %llu, \"get\": %llu, \"head\": %llu, "
	       "\"responses_2xx\": %llu, \"responses_3xx\": %llu, \"responses_4xx\": %llu, "
	       "\"responses_5xx\": %llu, \"accepted\": %llu, \"refused\": %llu, \"closed\": %llu, "
	       "\"idle_closed\": %llu, \"open\": %zu, \"bytes_in\": %llu, \"bytes_out\": %llu, "
	       "\"write_blocked\": %llu",
	       net_kind_name(&g.net), (unsigned long long)c.requests, (unsigned long long)c.get,
	       (unsigned long long)c.head, (unsigned long long)c.resp_2xx,
	       (unsigned long long)c.resp_3xx, (unsigned long long)c.resp_4xx,
	       (unsigned long long)c.resp_5xx, (unsigned long long)c.accepted,
	       (unsigned long long)c.refused, (unsigned long long)c.closed,
	       (unsigned long long)c.idle_closed, g.nconns, (unsigned long long)c.bytes_in,
	       (unsigned long long)c.bytes_out, (unsigned long long)c.write_blocked);
	struct us_stack *st = net_stack(&g.net);
	if (st) {
		struct us_stats s;
		us_stack_stats(st, &s);
		printf(", \"rx_frames\": %llu, \"tx_frames\": %llu, \"rx_bad_csum\": %llu, "
		       "\"tx_no_frame\": %llu, \"tx_kicks\": %llu, \"polls\": %llu, \"wakeups\": %llu",
		       (unsigned long long)s.rx_frames, (unsigned long long)s.tx_frames,
		       (unsigned long long)s.rx_bad_csum, (unsigned long long)s.tx_no_frame,
		       (unsigned long long)s.tx_kicks, (unsigned long long)s.polls,
		       (unsigned long long)s.wakeups);
		struct us_tcp_stats t;
		us_tcp_stack_stats(st, &t);
		printf(", \"tcp\": {\"segs_in\": %llu, \"segs_out\": %llu, \"retransmits\": %llu, "
		       "\"timeouts\": %llu, \"rst_in\": %llu, \"rst_out\": %llu, \"no_socket\": %llu, "
		       "\"listen_drops\": %llu, \"passive_opens\": %llu, \"paws_drops\": %llu, "
		       "\"challenge_acks\": %llu, \"emit_nobufs\": %llu, \"conns\": %u, \"time_wait\": %u}",
		       (unsigned long long)t.segs_in, (unsigned long long)t.segs_out,
		       (unsigned long long)t.retransmits, (unsigned long long)t.timeouts,
		       (unsigned long long)t.rst_in, (unsigned long long)t.rst_out,
		       (unsigned long long)t.no_socket, (unsigned long long)t.listen_drops,
		       (unsigned long long)t.passive_opens, (unsigned long long)t.paws_drops,
		       (unsigned long long)t.challenge_acks, (unsigned long long)t.emit_nobufs, t.conns,
		       t.time_wait);
	}
	printf("}\n");
	fflush(stdout);
}

static int add_listener(const struct us_endpoint *ep, int backlog)
{
	if (g.nlisteners >= MAX_LISTEN)
		return -ENOSPC;
	struct listener *l = &g.listeners[g.nlisteners];
	l->type = OBJ_LISTENER;
	l->ep = *ep;
	int r = net_listen(&g.net, ep, backlog, &l->s, l);
	char text[64];
	if (r >= 0) {
		net_local(&g.net, &l->s, &l->ep);
		/* on the user stack, accepted sockets inherit it (and setting it per connection would
		 * flush the stack's TX, every connection's pending responses, at each accept) */
		if (g.net.kind == NET_USER)
			net_nodelay(&g.net, &l->s);
	}
	net_format_endpoint(&l->ep, text, sizeof(text));
	if (r < 0) {
		fprintf(stderr, "userstack-httpd: listen on %s: %s\n", text, strerror(-r));
		return r;
	}
	if (!g.quiet)
		fprintf(stderr, "userstack-httpd: serving http://%s/ on %s\n", text, net_kind_name(&g.net));
	g.nlisteners++;
	return 0;
}

static char *make_body(size_t n)
{
	char *b = malloc(n ? n : 1);
	if (!b)
		return NULL;
	static const char pat[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+/";
	for (size_t i = 0; i < n; i++)
		b[i] = (i + 1) % 64 == 0 ? '\n' : pat[i % 64];
	return b;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: userstack-httpd [--body-size N | --root DIR] [--port P] [--max-conns N]\n"
		"                       [--max-head BYTES] [--max-body BYTES] [--idle-timeout S]\n"
		"                       [--backlog N] [--sndbuf BYTES] [--rcvbuf BYTES] [--duration S]\n"
		"                       [--quiet]\n"
		"       userstack-httpd --kernel --listen ADDR:PORT [--listen ...] [same options]\n"
		"On the user stack (under `xdpstack run IFACE --tcp PORT -- userstack-httpd`) it serves\n"
		"every TCP tuple the stack owns (--port: only that port).\n");
}

static int num_arg(const char *s, unsigned long long max, unsigned long long *out)
{
	char *e;
	errno = 0;
	unsigned long long v = strtoull(s, &e, 10);
	if (errno || !*s || *e || v > max)
		return -1;
	*out = v;
	return 0;
}

int main(int argc, char **argv)
{
	struct us_endpoint listen_eps[MAX_LISTEN];
	int nlisten = 0, backlog = 4096, port = -1;
	long long body_size = -1;
	const char *root = NULL;
	double duration = 0, idle = 60;
	unsigned long long v, sndbuf = 256 * 1024, rcvbuf = 64 * 1024;
	g.max_head = 8192;
	g.max_body = 1 << 20;
	g.max_conns = 10000;
	g.rootfd = -1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
		int bad = 0;
		if (!strcmp(a, "--kernel"))
			g.kernel = 1;
		else if (!strcmp(a, "--quiet"))
			g.quiet = 1;
		else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage();
			return 0;
		} else if (!val)
			bad = 1;
		else if (!strcmp(a, "--listen")) {
			if (nlisten >= MAX_LISTEN || net_parse_endpoint(val, &listen_eps[nlisten]) < 0) {
				fprintf(stderr, "userstack-httpd: --listen %s: give ADDR:PORT, e.g. 0.0.0.0:8080 "
					"or [::]:8080\n", val);
				return 2;
			}
			nlisten++;
			i++;
		} else if (!strcmp(a, "--body-size")) {
			bad = num_arg(val, 1ull << 30, &v);
			body_size = (long long)v;
			i++;
		} else if (!strcmp(a, "--root")) {
			root = val;
			i++;
		} else if (!strcmp(a, "--port")) {
			bad = num_arg(val, 65535, &v) || v == 0;
			port = (int)v;
			i++;
		} else if (!strcmp(a, "--max-conns")) {
			bad = num_arg(val, 1000000, &v) || v == 0;
			g.max_conns = v;
			i++;
		} else if (!strcmp(a, "--max-head")) {
			bad = num_arg(val, IBUF_SIZE / 2, &v) || v < 64;
			g.max_head = v;
			i++;
		} else if (!strcmp(a, "--max-body")) {
			bad = num_arg(val, 1ull << 40, &v);
			g.max_body = v;
			i++;
		} else if (!strcmp(a, "--backlog")) {
			bad = num_arg(val, 65535, &v) || v == 0;
			backlog = (int)v;
			i++;
		} else if (!strcmp(a, "--sndbuf") || !strcmp(a, "--rcvbuf")) {
			bad = num_arg(val, 1u << 30, &v) || v < 4096;
			*(a[2] == 's' ? &sndbuf : &rcvbuf) = v;
			i++;
		} else if (!strcmp(a, "--idle-timeout")) {
			idle = atof(val);
			bad = idle <= 0;
			i++;
		} else if (!strcmp(a, "--duration")) {
			duration = atof(val);
			i++;
		} else
			bad = 1;
		if (bad) {
			usage();
			return 2;
		}
	}
	if (root && body_size >= 0) {
		fprintf(stderr, "userstack-httpd: --root and --body-size exclude each other\n");
		return 2;
	}
	if (g.kernel != (nlisten > 0)) {
		fprintf(stderr, "userstack-httpd: %s\n", g.kernel ? "--kernel needs --listen ADDR:PORT"
			: "--listen is for --kernel (on the user stack, the claimed tuples are served)");
		return 2;
	}
	g.idle_ns = (uint64_t)(idle * 1e9);
	if (root) {
		g.rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (g.rootfd < 0) {
			fprintf(stderr, "userstack-httpd: --root %s: %s\n", root, strerror(errno));
			return 1;
		}
	} else if (body_size >= 0) {
		g.body = make_body((size_t)body_size);
		g.body_len = (size_t)body_size;
	} else {
		g.body = DEFAULT_BODY;
		g.body_len = sizeof(DEFAULT_BODY) - 1;
	}
	g.ibuf = malloc(IBUF_SIZE);
	g.obuf = malloc(OBUF_SIZE);
	for (int h = 0; h < 2; h++)
		for (int ch = 0; ch < 3; ch++)
			g.canned[h][ch] = malloc(512 + (h == 0 && g.body_len <= CANNED_MAX ? g.body_len : 0));
	if (!g.ibuf || !g.obuf || (!root && !g.body)) {
		fprintf(stderr, "userstack-httpd: out of memory\n");
		return 1;
	}

	int r = g.kernel ? net_open_kernel(&g.net) : net_open_user(&g.net);
	if (r < 0) {
		fprintf(stderr, "userstack-httpd: cannot open the %s: %s%s\n",
			g.kernel ? "epoll instance" : "user-level stack", strerror(-r),
			!g.kernel && r == -ENOENT ? " (no XDPSTACK_* environment: run under `xdpstack run "
			"IFACE --tcp PORT -- userstack-httpd`, or use --kernel --listen ADDR:PORT)" : "");
		return 1;
	}
	if (g.kernel) {
		for (int i = 0; i < nlisten; i++)
			if (add_listener(&listen_eps[i], backlog) < 0)
				return 1;
	} else {
		const char *env = getenv("XDPSTACK_TCP");
		char opts[96] = "";
		int o = 0;
		if (!env || !strstr(env, "sndbuf"))
			o = snprintf(opts, sizeof(opts), "sndbuf=%llu ", sndbuf);
		if (!env || !strstr(env, "rcvbuf"))
			snprintf(opts + o, sizeof(opts) - o, "rcvbuf=%llu", rcvbuf);
		if (opts[0] && (r = us_stack_tcp_configure(g.net.st, opts)) < 0)
			fprintf(stderr, "userstack-httpd: TCP buffers (%s): %s\n", opts, strerror(-r));
		const struct us_desc *d = us_stack_desc(g.net.st);
		for (uint32_t i = 0; i < d->ntuples; i++) {
			const struct us_tuple *t = &d->tuples[i];
			if (t->proto != 6 || (port >= 0 && t->port != port))
				continue;
			struct us_endpoint ep = { .addr = t->addr, .port = t->port };
			if (add_listener(&ep, backlog) < 0)
				return 1;
		}
		if (!g.nlisteners) {
			fprintf(stderr, "userstack-httpd: the stack owns no TCP tuple%s: claim one with "
				"`xdpstack run IFACE --tcp PORT`\n", port >= 0 ? " on --port" : "");
			net_close_all(&g.net);
			return 1;
		}
	}

	struct sigaction sa = { 0 };
	sa.sa_handler = on_stop;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sa.sa_handler = on_report;
	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);

	static struct net_event ev[1024];
	g.now_ns = mono_ns();
	uint64_t end = duration > 0 ? g.now_ns + (uint64_t)(duration * 1e9) : 0, last_sweep = g.now_ns;
	refresh_date();
	while (!stop_flag) {
		int n = net_wait(&g.net, ev, 1024, 1000);
		if (n < 0 && n != -EINTR) {
			fprintf(stderr, "userstack-httpd: wait: %s\n", strerror(-n));
			break;
		}
		g.now_ns = mono_ns();
		refresh_date();
		for (int i = 0; i < n; i++) {
			int type = *(int *)ev[i].user;
			if (type == OBJ_LISTENER) {
				on_accept(ev[i].user);
				continue;
			}
			struct conn *k = ev[i].user;
			uint32_t e = ev[i].events;
			if (k->s.events & NET_OUT) {
				if (e & (NET_OUT | NET_ERR | NET_HUP))
					after_output(k);
			} else if (e & (NET_IN | NET_ERR | NET_HUP)) {
				on_readable(k);
			}
		}
		consume_batch();
		if (report_flag) {
			report_flag = 0;
			report();
		}
		if (g.now_ns - last_sweep > 250000000ull) {
			last_sweep = g.now_ns;
			sweep();
		}
		if (end && g.now_ns >= end)
			break;
	}
	report();
	while (g.active.head)
		conn_free(g.active.head);
	while (g.lingering.head)
		conn_free(g.lingering.head);
	for (int i = 0; i < g.nlisteners; i++)
		net_close(&g.net, &g.listeners[i].s);
	net_close_all(&g.net);
	return 0;
}
