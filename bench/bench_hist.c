/*
 * bench_hist.c - see bench_hist.h.
 */
#include "bench_hist.h"

#include <assert.h>
#include <string.h>

static_assert(HIST_SUB_BITS >= 1 && HIST_SUB_BITS < HIST_EXP_MAX,
    "histogram layout");

void
hist_init(struct hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min = UINT64_MAX;
}

/* Bucket index of v. */
static unsigned
bucket_of(uint64_t v)
{
	unsigned e, idx;

	if (v < HIST_SUB)
		return (unsigned)v;
	e = 63u - (unsigned)__builtin_clzll(v);	/* 2^e <= v < 2^(e+1) */
	if (e > HIST_EXP_MAX)
		return HIST_BUCKETS - 1;
	/* Row e - HIST_SUB_BITS + 1 holds [2^e, 2^(e+1)) in HIST_SUB steps. */
	idx = (e - HIST_SUB_BITS + 1) * HIST_SUB +
	    (unsigned)((v >> (e - HIST_SUB_BITS)) & (HIST_SUB - 1));
	assert(idx < HIST_BUCKETS);
	return idx;
}

/* Largest value that falls in bucket idx. */
static uint64_t
bucket_top(unsigned idx)
{
	unsigned row = idx / HIST_SUB, sub = idx % HIST_SUB, e;

	if (row == 0)
		return idx;
	e = row + HIST_SUB_BITS - 1;
	return ((uint64_t)1 << e) + ((uint64_t)(sub + 1) << (e - HIST_SUB_BITS))
	    - 1;
}

void
hist_add(struct hist *h, uint64_t v)
{
	h->bucket[bucket_of(v)]++;
	h->count++;
	h->sum += v;
	if (v < h->min)
		h->min = v;
	if (v > h->max)
		h->max = v;
}

void
hist_merge(struct hist *dst, const struct hist *src)
{
	unsigned i;

	if (src->count == 0)
		return;
	for (i = 0; i < HIST_BUCKETS; i++)
		dst->bucket[i] += src->bucket[i];
	dst->count += src->count;
	dst->sum += src->sum;
	if (src->min < dst->min)
		dst->min = src->min;
	if (src->max > dst->max)
		dst->max = src->max;
}

uint64_t
hist_percentile(const struct hist *h, double p)
{
	uint64_t want, seen = 0, top;
	unsigned i;

	assert(p > 0 && p <= 100);
	if (h->count == 0)
		return 0;
	/* Rank of the value wanted, 1-based, rounded up. */
	want = (uint64_t)(p / 100.0 * (double)h->count);
	if ((double)want < p / 100.0 * (double)h->count)
		want++;
	if (want == 0)
		want = 1;
	for (i = 0; i < HIST_BUCKETS; i++) {
		seen += h->bucket[i];
		if (seen >= want) {
			top = bucket_top(i);
			return top > h->max ? h->max : top < h->min ? h->min :
			    top;
		}
	}
	return h->max;
}

double
hist_mean(const struct hist *h)
{
	return h->count ? (double)h->sum / (double)h->count : 0.0;
}
