/* ctl_io.h: the stack's end of the control channel (ctl.c): transport only. */
#pragma once
#include "stack.h"

int us_ctl_send(struct us_stack *st, union us_ctl_msg *m);  /* seq set when 0; 0 or -errno */
int us_ctl_recv(struct us_stack *st, union us_ctl_msg *m);  /* one waiting message: 1, or 0 */
