/*
 * budget.h - a byte budget shared by threads: a ceiling and an atomic
 * count of what is taken from it.
 *
 * budget_take() succeeds only while the total taken stays within max, so
 * the ceiling holds across every taker without a lock; budget_give()
 * returns bytes taken earlier. Used for the message bytes inbound
 * sessions hold (limits.memory): a session asks before it buffers, and a
 * refusal becomes 452 4.3.1, never an allocation past the ceiling.
 */
#ifndef SLUICE_BUDGET_H
#define SLUICE_BUDGET_H

#include <assert.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct budget {
	_Atomic uint64_t used;
	uint64_t max;		/* set before any thread shares it */
};

static inline void
budget_init(struct budget *b, uint64_t max)
{
	atomic_init(&b->used, 0);
	b->max = max;
}

/* Take n bytes; false (nothing taken) when that would pass max. */
static inline bool
budget_take(struct budget *b, uint64_t n)
{
	uint64_t u = atomic_load_explicit(&b->used, memory_order_relaxed);

	do {
		if (n > b->max || u > b->max - n)
			return false;
	} while (!atomic_compare_exchange_weak_explicit(&b->used, &u, u + n,
	    memory_order_relaxed, memory_order_relaxed));
	return true;
}

/* Give back n bytes taken before. */
static inline void
budget_give(struct budget *b, uint64_t n)
{
	uint64_t u = atomic_fetch_sub_explicit(&b->used, n,
	    memory_order_relaxed);

	assert(u >= n);	/* never more than was taken */
	(void)u;
}

static inline uint64_t
budget_used(struct budget *b)
{
	return atomic_load_explicit(&b->used, memory_order_relaxed);
}

#endif
