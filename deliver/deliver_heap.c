/*
 * deliver_heap.c - a shard's deferred items, in a binary heap by due time
 * (monotonic ms); see deliver_int.h. Each item knows its slot
 * (heap_idx).
 */
#include "deliver_int.h"

#include <errno.h>
#include <stdlib.h>

static void
heap_swap(struct deliver *d, uint32_t a, uint32_t b)
{
	struct dl_item *t = d->heap[a];

	d->heap[a] = d->heap[b];
	d->heap[b] = t;
	d->heap[a]->heap_idx = a;
	d->heap[b]->heap_idx = b;
}

int
dl_heap_push(struct deliver *d, struct dl_item *it)
{
	uint32_t i;

	if (d->nheap == d->heap_cap) {
		uint32_t cap = d->heap_cap ? d->heap_cap * 2 : 1024;
		struct dl_item **h = realloc(d->heap, cap * sizeof(*h));

		if (h == NULL)
			return -ENOMEM;
		d->heap = h;
		d->heap_cap = cap;
	}
	i = d->nheap++;
	d->heap[i] = it;
	it->heap_idx = i;
	while (i > 0 && d->heap[(i - 1) / 2]->due_ms > d->heap[i]->due_ms) {
		heap_swap(d, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
	return 0;
}

struct dl_item *
dl_heap_pop(struct deliver *d)
{
	struct dl_item *top;
	uint32_t i = 0;

	if (d->nheap == 0)
		return NULL;
	top = d->heap[0];
	d->heap[0] = d->heap[--d->nheap];
	d->heap[0]->heap_idx = 0;
	for (;;) {
		uint32_t l = 2 * i + 1, r = l + 1, m = i;

		if (l < d->nheap && d->heap[l]->due_ms < d->heap[m]->due_ms)
			m = l;
		if (r < d->nheap && d->heap[r]->due_ms < d->heap[m]->due_ms)
			m = r;
		if (m == i)
			break;
		heap_swap(d, i, m);
		i = m;
	}
	return top;
}

/*
 * Take out of the heap every item for which take(it, arg) holds, at most
 * max of them, and heapify what is left: O(heap size).
 */
struct dl_item *
dl_heap_take_if(struct deliver *d, bool (*take)(const struct dl_item *, void *),
    void *arg, uint32_t max)
{
	struct dl_item *out = NULL;
	uint32_t i, n = 0, taken = 0;

	for (i = 0; i < d->nheap; i++) {
		struct dl_item *it = d->heap[i];

		if (taken < max && take(it, arg)) {
			it->next = out;
			out = it;
			taken++;
		} else {
			d->heap[n] = it;
			it->heap_idx = n++;
		}
	}
	d->nheap = n;
	/* Heapify what is left: sift every parent down. */
	for (i = n / 2; i-- > 0;) {
		uint32_t j = i;

		for (;;) {
			uint32_t l = 2 * j + 1, r = l + 1, m = j;

			if (l < n && d->heap[l]->due_ms < d->heap[m]->due_ms)
				m = l;
			if (r < n && d->heap[r]->due_ms < d->heap[m]->due_ms)
				m = r;
			if (m == j)
				break;
			heap_swap(d, j, m);
			j = m;
		}
	}
	return out;
}

static bool
is_qid(const struct dl_item *it, void *arg)
{
	uint64_t qid = *(const uint64_t *)arg;

	return qid == 0 || it->qid == qid;
}

/* Take out of the heap every item that matches (qid 0: all). */
struct dl_item *
dl_heap_take(struct deliver *d, uint64_t qid)
{
	return dl_heap_take_if(d, is_qid, &qid, UINT32_MAX);
}
