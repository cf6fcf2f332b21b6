/*
 * spsc.h - a bounded single-producer single-consumer ring of pointers.
 *
 * Shards and the committer thread talk only through these rings (plus an
 * eventfd to wake the consumer), so nothing mutable is shared on the hot
 * path and no lock is taken. Capacity is a power of two fixed at init;
 * a full ring makes spsc_push() fail and the producer keeps the item.
 * Head and tail live on separate cache lines to avoid false sharing.
 */
#ifndef SLUICE_SPSC_H
#define SLUICE_SPSC_H

#include <assert.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>

struct spsc {
	_Alignas(64) _Atomic size_t head;	/* next slot to read */
	_Alignas(64) _Atomic size_t tail;	/* next slot to write */
	_Alignas(64) size_t mask;
	void **slot;
};

static inline int
spsc_init(struct spsc *q, size_t cap)
{
	assert(cap >= 2 && (cap & (cap - 1)) == 0);
	q->slot = calloc(cap, sizeof(*q->slot));
	if (q->slot == NULL)
		return -1;
	q->mask = cap - 1;
	atomic_init(&q->head, 0);
	atomic_init(&q->tail, 0);
	return 0;
}

static inline void
spsc_destroy(struct spsc *q)
{
	free(q->slot);
	q->slot = NULL;
}

/* Producer side. false when full. */
static inline bool
spsc_push(struct spsc *q, void *item)
{
	size_t t = atomic_load_explicit(&q->tail, memory_order_relaxed);
	size_t h = atomic_load_explicit(&q->head, memory_order_acquire);

	assert(item != NULL);
	if (t - h > q->mask)
		return false;
	q->slot[t & q->mask] = item;
	atomic_store_explicit(&q->tail, t + 1, memory_order_release);
	return true;
}

/* Consumer side. NULL when empty. */
static inline void *
spsc_pop(struct spsc *q)
{
	size_t h = atomic_load_explicit(&q->head, memory_order_relaxed);
	size_t t = atomic_load_explicit(&q->tail, memory_order_acquire);
	void *item;

	if (h == t)
		return NULL;
	item = q->slot[h & q->mask];
	atomic_store_explicit(&q->head, h + 1, memory_order_release);
	return item;
}

static inline bool
spsc_empty(struct spsc *q)
{
	return atomic_load_explicit(&q->head, memory_order_acquire) ==
	    atomic_load_explicit(&q->tail, memory_order_acquire);
}

#endif
