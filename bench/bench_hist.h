/*
 * bench_hist.h - latency histogram with bounded relative error.
 *
 * Values (microseconds, or any unit) go into log-linear buckets: exact
 * below 2^HIST_SUB_BITS, and above that 2^HIST_SUB_BITS buckets per power
 * of two, so any reported percentile is within 1/2^HIST_SUB_BITS (under
 * 1%) of a value actually recorded. Recording is O(1) with no allocation;
 * histograms of the same layout merge by adding counts, so each thread or
 * connection can keep its own and a report merges them at the end.
 */
#ifndef SLUICE_BENCH_HIST_H
#define SLUICE_BENCH_HIST_H

#include <stdint.h>

#define HIST_SUB_BITS 7
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_EXP_MAX 40		/* values up to 2^40 (12 days in us) */
#define HIST_BUCKETS ((HIST_EXP_MAX - HIST_SUB_BITS + 2) * HIST_SUB)

struct hist {
	uint64_t count;
	uint64_t min;
	uint64_t max;
	uint64_t sum;
	uint64_t bucket[HIST_BUCKETS];
};

void hist_init(struct hist *h);
/* Record one value; values past 2^HIST_EXP_MAX count in the top bucket. */
void hist_add(struct hist *h, uint64_t v);
/* Add every count of src to dst. */
void hist_merge(struct hist *dst, const struct hist *src);
/*
 * The value at percentile p (0 < p <= 100): the smallest recorded bucket
 * value such that at least p% of the values are at or below it, reported
 * as the bucket's upper bound clamped to the recorded maximum. 0 when
 * empty.
 */
uint64_t hist_percentile(const struct hist *h, double p);
/* Mean, 0 when empty. */
double hist_mean(const struct hist *h);

#endif
