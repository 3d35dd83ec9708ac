/* cc.c: the congestion control registry: the algorithms of enum tcp_cc_algo (tcp.h) by id. */
#include <stddef.h>

#include "cc.h"
#include "tcp.h"

const struct cc_ops *cc_by_id(int id)
{
	switch (id) {
	case TCP_CC_NEWRENO: return &cc_newreno;
	case TCP_CC_CUBIC: return &cc_cubic;
	default: return NULL;
	}
}
