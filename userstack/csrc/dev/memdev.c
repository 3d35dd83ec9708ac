/* memdev.c: an in-memory netdev (memdev.h). Buffers come from one pool; a frame is in exactly
 * one place: free, an RX queue, handed out, the TX queue or the sent queue.
 * Two memdevs can be joined by a wire (us_memdev_link): what one sends, the other receives. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <pthread.h>
#include "memdev.h"

struct fifo { uint32_t *v; uint32_t head, tail, cap; };

/* One direction of a wire: a bounded queue of frame copies with its own lock (always taken
 * last, so the two stacks' locks never nest). */
struct wire {
	pthread_mutex_t mu;
	uint8_t *buf;
	uint32_t *len;
	uint32_t room, depth, head, tail;
	uint64_t frames, drops;
	int wakefd;                /* the receiving stack's wake eventfd, -1 once it is gone */
	int refs;
};

struct memdev {
	struct us_netdev dev;
	uint8_t *pool;
	uint32_t nframes;
	struct fifo free, sent;
	struct fifo rx[4];
	uint32_t *len;
	struct wire *out, *in;
	int out_dirty;
};

static void wire_put(struct wire *w)
{
	pthread_mutex_lock(&w->mu);
	int last = --w->refs == 0;
	pthread_mutex_unlock(&w->mu);
	if (last) {
		pthread_mutex_destroy(&w->mu);
		free(w->buf);
		free(w->len);
		free(w);
	}
}

static int fifo_init(struct fifo *f, uint32_t cap)
{
	f->v = calloc(cap, sizeof(uint32_t));
	f->cap = cap;
	f->head = f->tail = 0;
	return f->v ? 0 : -ENOMEM;
}
static int fifo_put(struct fifo *f, uint32_t x)
{
	if (f->tail - f->head == f->cap)
		return -ENOBUFS;
	f->v[f->tail++ % f->cap] = x;
	return 0;
}
static int fifo_get(struct fifo *f, uint32_t *x)
{
	if (f->tail == f->head)
		return -EAGAIN;
	*x = f->v[f->head++ % f->cap];
	return 0;
}

static int md_rx_burst(struct us_netdev *d, int q, struct us_frame *f, int max)
{
	struct memdev *m = (struct memdev *)d;
	int n = 0;
	uint32_t i;
	while (n < max && !fifo_get(&m->rx[q], &i)) {
		f[n].addr = i;
		f[n].data = m->pool + (size_t)i * d->frame_room;
		f[n].len = m->len[i];
		f[n].queue = q;
		n++;
	}
	struct wire *w = m->in;
	if (w && q == 0 && n < max) {
		pthread_mutex_lock(&w->mu);
		while (n < max && w->head != w->tail && !fifo_get(&m->free, &i)) {
			uint32_t slot = w->head++ % w->depth;
			uint32_t len = w->len[slot] < d->frame_room ? w->len[slot] : d->frame_room;
			memcpy(m->pool + (size_t)i * d->frame_room, w->buf + (size_t)slot * w->room, len);
			f[n].addr = i;
			f[n].data = m->pool + (size_t)i * d->frame_room;
			f[n].len = len;
			f[n].queue = q;
			n++;
		}
		pthread_mutex_unlock(&w->mu);
	}
	return n;
}

static void md_rx_release(struct us_netdev *d, int q, const struct us_frame *f, int n)
{
	struct memdev *m = (struct memdev *)d;
	(void)q;
	for (int i = 0; i < n; i++)
		fifo_put(&m->free, (uint32_t)f[i].addr);
}

static int md_tx_alloc(struct us_netdev *d, int q, struct us_frame *f)
{
	struct memdev *m = (struct memdev *)d;
	uint32_t i;
	if (fifo_get(&m->free, &i))
		return -ENOBUFS;
	f->addr = i;
	f->data = m->pool + (size_t)i * d->frame_room;
	f->len = 0;
	f->queue = q;
	return 0;
}

static void md_tx_submit(struct us_netdev *d, struct us_frame *f)
{
	struct memdev *m = (struct memdev *)d;
	struct wire *w = m->out;
	if (w) {                       /* onto the wire (dropped when it is full), the buffer freed */
		pthread_mutex_lock(&w->mu);
		if (w->tail - w->head < w->depth && f->len <= w->room) {
			uint32_t slot = w->tail++ % w->depth;
			memcpy(w->buf + (size_t)slot * w->room, f->data, f->len);
			w->len[slot] = f->len;
			w->frames++;
		} else {
			w->drops++;
		}
		pthread_mutex_unlock(&w->mu);
		fifo_put(&m->free, (uint32_t)f->addr);
		m->out_dirty = 1;
		return;
	}
	m->len[f->addr] = f->len;
	fifo_put(&m->sent, (uint32_t)f->addr);
}

static void md_tx_free(struct us_netdev *d, struct us_frame *f)
{
	fifo_put(&((struct memdev *)d)->free, (uint32_t)f->addr);
}

static int md_flush(struct us_netdev *d)
{
	struct memdev *m = (struct memdev *)d;
	if (m->out_dirty) {            /* wake the receiving stack once per batch */
		m->out_dirty = 0;
		pthread_mutex_lock(&m->out->mu);
		uint64_t one = 1;
		if (m->out->wakefd >= 0 && write(m->out->wakefd, &one, sizeof(one)) < 0) { /* saturated */ }
		pthread_mutex_unlock(&m->out->mu);
	}
	return 0;
}
static void md_pre_sleep(struct us_netdev *d) { (void)d; }

static void md_destroy(struct us_netdev *d)
{
	struct memdev *m = (struct memdev *)d;
	if (m->in) {
		pthread_mutex_lock(&m->in->mu);
		m->in->wakefd = -1;        /* this stack's eventfd is about to close */
		pthread_mutex_unlock(&m->in->mu);
		wire_put(m->in);
	}
	if (m->out)
		wire_put(m->out);
	free(m->pool);
	free(m->len);
	free(m->free.v);
	free(m->sent.v);
	for (int q = 0; q < 4; q++)
		free(m->rx[q].v);
	free(m);
}

static const struct us_netdev_ops md_ops = {
	.rx_burst = md_rx_burst, .rx_release = md_rx_release, .tx_alloc = md_tx_alloc,
	.tx_submit = md_tx_submit, .tx_free = md_tx_free, .flush = md_flush,
	.pre_sleep = md_pre_sleep, .destroy = md_destroy,
};

struct us_netdev *us_memdev_create(int nqueues, uint32_t nframes, uint32_t frame_room)
{
	if (nqueues < 1 || nqueues > 4 || nframes < 1)
		return NULL;
	struct memdev *m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->dev.ops = &md_ops;
	m->dev.nqueues = nqueues;
	m->dev.frame_room = frame_room;
	m->nframes = nframes;
	m->pool = calloc(nframes, frame_room);
	m->len = calloc(nframes, sizeof(uint32_t));
	int r = !m->pool || !m->len || fifo_init(&m->free, nframes) || fifo_init(&m->sent, nframes);
	for (int q = 0; q < 4; q++)
		r |= fifo_init(&m->rx[q], nframes);
	if (r) {
		md_destroy(&m->dev);
		return NULL;
	}
	for (uint32_t i = 0; i < nframes; i++)
		fifo_put(&m->free, i);
	return &m->dev;
}

int us_memdev_inject(struct us_netdev *d, int q, const void *frame, uint32_t len)
{
	struct memdev *m = (struct memdev *)d;
	uint32_t i;
	if (q < 0 || q >= m->dev.nqueues)
		return -EINVAL;
	if (len > m->dev.frame_room)
		return -EMSGSIZE;
	if (fifo_get(&m->free, &i))
		return -ENOBUFS;
	memcpy(m->pool + (size_t)i * m->dev.frame_room, frame, len);
	m->len[i] = len;
	fifo_put(&m->rx[q], i);
	return 0;
}

int us_memdev_capture(struct us_netdev *d, void *buf, uint32_t len)
{
	struct memdev *m = (struct memdev *)d;
	uint32_t i;
	int r = fifo_get(&m->sent, &i);
	if (!r) {
		r = (int)m->len[i];
		memcpy(buf, m->pool + (size_t)i * m->dev.frame_room, m->len[i] < len ? m->len[i] : len);
		fifo_put(&m->free, i);
	}
	return r;
}

int us_memdev_free_frames(struct us_netdev *d)
{
	struct memdev *m = (struct memdev *)d;
	return (int)(m->free.tail - m->free.head);
}


static struct wire *wire_new(uint32_t depth, uint32_t room, int wakefd)
{
	struct wire *w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->buf = malloc((size_t)depth * room);
	w->len = calloc(depth, sizeof(uint32_t));
	if (!w->buf || !w->len) {
		free(w->buf);
		free(w->len);
		free(w);
		return NULL;
	}
	pthread_mutex_init(&w->mu, NULL);
	w->room = room;
	w->depth = depth;
	w->wakefd = wakefd;
	w->refs = 2;
	return w;
}

int us_memdev_link_new(struct us_netdev *a, int a_wakefd, struct us_netdev *b, int b_wakefd,
		       uint32_t depth, struct us_memdev_link *l)
{
	if (a == b || depth < 1)
		return -EINVAL;
	struct memdev *ma = (struct memdev *)a, *mb = (struct memdev *)b;
	if (ma->dev.ops != &md_ops || mb->dev.ops != &md_ops || ma->out || ma->in || mb->out || mb->in)
		return -EINVAL;
	uint32_t room = ma->dev.frame_room > mb->dev.frame_room ? ma->dev.frame_room : mb->dev.frame_room;
	struct wire *ab = wire_new(depth, room, b_wakefd), *ba = wire_new(depth, room, a_wakefd);
	if (!ab || !ba) {
		if (ab) { ab->refs = 1; wire_put(ab); }
		if (ba) { ba->refs = 1; wire_put(ba); }
		return -ENOMEM;
	}
	l->ab = ab;
	l->ba = ba;
	return 0;
}

void us_memdev_link_attach(struct us_netdev *d, const struct us_memdev_link *l, int side)
{
	struct memdev *m = (struct memdev *)d;
	m->out = side ? l->ba : l->ab;
	m->in = side ? l->ab : l->ba;
}

int us_memdev_link_stats(struct us_netdev *d, uint64_t *frames_out, uint64_t *drops_out)
{
	struct memdev *m = (struct memdev *)d;
	if (m->dev.ops != &md_ops || !m->out)
		return -EINVAL;
	pthread_mutex_lock(&m->out->mu);
	*frames_out = m->out->frames;
	*drops_out = m->out->drops;
	pthread_mutex_unlock(&m->out->mu);
	return 0;
}
