/* testing.c: a stack over the in-memory device (testing.h): the memdev calls of dev/memdev.c
 * under the stack's lock. */
#include <errno.h>
#include "stack.h"
#include "testing.h"

struct us_stack *us_test_stack_open(const struct us_desc *d, uint32_t nframes, int *err)
{
	uint32_t room = d->frame_size ? d->frame_size : 2048;
	struct us_netdev *dev = us_memdev_create(d->nqueues ? (int)d->nqueues : 1, nframes, room);
	if (!dev) {
		*err = -EINVAL;
		return NULL;
	}
	struct us_stack *st = us_stack_open_dev(d, dev, err);
	if (!st)
		dev->ops->destroy(dev);
	return st;
}

int us_test_inject(struct us_stack *st, int q, const void *frame, uint32_t len)
{
	pthread_mutex_lock(&st->lock);
	int r = us_memdev_inject(st->base_dev, q, frame, len);
	pthread_mutex_unlock(&st->lock);
	if (!r)
		us_wake(st);               /* a driver thread sleeping in epoll: poll now */
	return r;
}

int us_test_capture(struct us_stack *st, void *buf, uint32_t len)
{
	pthread_mutex_lock(&st->lock);
	int r = us_memdev_capture(st->base_dev, buf, len);
	pthread_mutex_unlock(&st->lock);
	return r;
}

int us_test_free_frames(struct us_stack *st)
{
	pthread_mutex_lock(&st->lock);
	int n = us_memdev_free_frames(st->base_dev);
	pthread_mutex_unlock(&st->lock);
	return n;
}

int us_test_link(struct us_stack *a, struct us_stack *b, uint32_t depth)
{
	struct us_memdev_link l;
	int r = us_memdev_link_new(a->base_dev, a->wakefd, b->base_dev, b->wakefd, depth, &l);
	if (r)
		return r;
	pthread_mutex_lock(&a->lock);
	us_memdev_link_attach(a->base_dev, &l, 0);
	pthread_mutex_unlock(&a->lock);
	pthread_mutex_lock(&b->lock);
	us_memdev_link_attach(b->base_dev, &l, 1);
	pthread_mutex_unlock(&b->lock);
	return 0;
}

int us_test_link_stats(struct us_stack *st, uint64_t *frames_out, uint64_t *drops_out)
{
	return us_memdev_link_stats(st->base_dev, frames_out, drops_out);
}
