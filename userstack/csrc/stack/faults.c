/* faults.c: the fault middleware (dev/fault.c) put under a stack, under the stack's lock. */
#include <errno.h>
#include "faults.h"
#include "stack.h"

int us_stack_set_faults(struct us_stack *st, const struct us_fault_config *c)
{
	pthread_mutex_lock(&st->lock);
	int r = 0;
	if (us_fault_configure(st->dev, c)) {  /* not wrapped yet (else: new settings, same stream) */
		struct us_netdev *f = us_fault_wrap(st->dev, c);
		if (f)
			st->dev = f;
		else
			r = -ENOMEM;
	}
	pthread_mutex_unlock(&st->lock);
	return r;
}

int us_stack_fault_stats(struct us_stack *st, struct us_fault_stats *out)
{
	pthread_mutex_lock(&st->lock);
	int r = us_fault_get_stats(st->dev, out);
	pthread_mutex_unlock(&st->lock);
	return r;
}
