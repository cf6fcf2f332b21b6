/*
 * rbuf.h - a byte block shared by threads under a reference count, paid
 * for from a struct budget.
 *
 * Used for a record just made durable: the shard that accepted a message
 * keeps its bytes (segment header, envelope, message) so that delivery,
 * on whichever shard owns each destination, sends them from memory
 * instead of reading them back from the spool. Each holder takes a
 * reference; the last rbuf_put() frees the block and gives its bytes back
 * to the budget, on whichever thread that is.
 *
 * The budget is the copies' own (never the sessions'), so a copy never
 * makes a client wait. No block: the reader falls back to the spool, so
 * a refusal costs a read, never a message.
 */
#ifndef SLUICE_RBUF_H
#define SLUICE_RBUF_H

#include <assert.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "budget.h"

struct rbuf {
	_Atomic uint32_t refs;
	uint32_t len;			/* bytes in data[] */
	struct budget *budget;		/* paid from; NULL: unaccounted */
	uint64_t cost;			/* what was taken from budget */
	_Alignas(8) uint8_t data[];
};

/*
 * A block of len bytes (contents undefined) with one reference, or NULL
 * when the budget has no room or malloc fails.
 */
static inline struct rbuf *
rbuf_new(struct budget *b, uint32_t len)
{
	uint64_t cost = sizeof(struct rbuf) + (uint64_t)len;
	struct rbuf *r;

	if (b != NULL && !budget_take(b, cost))
		return NULL;
	r = malloc(cost);
	if (r == NULL) {
		if (b != NULL)
			budget_give(b, cost);
		return NULL;
	}
	atomic_init(&r->refs, 1);
	r->len = len;
	r->budget = b;
	r->cost = cost;
	return r;
}

static inline struct rbuf *
rbuf_ref(struct rbuf *r)
{
	uint32_t old = atomic_fetch_add_explicit(&r->refs, 1,
	    memory_order_relaxed);

	assert(old > 0);	/* never revive a freed block */
	(void)old;
	return r;
}

/* Drop one reference; the last frees the block. NULL is ignored. */
static inline void
rbuf_put(struct rbuf *r)
{
	uint32_t old;

	if (r == NULL)
		return;
	old = atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel);
	assert(old > 0);
	if (old != 1)
		return;
	if (r->budget != NULL)
		budget_give(r->budget, r->cost);
	free(r);
}

#endif
