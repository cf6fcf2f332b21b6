/*
 * Description: the benchmark's latency histogram gives percentiles within
 * 1% of the exact ones (computed by sorting), exact values below 128,
 * correct min/max/mean, and merging two histograms equals recording
 * everything in one.
 */
#include <stdlib.h>
#include <string.h>

#include "../../bench/bench_hist.h"
#include "check.h"

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* The exact percentile by the same rank rule: ceil(p/100 * n)-th value. */
static uint64_t
exact(const uint64_t *sorted, size_t n, double p)
{
	size_t rank = (size_t)(p / 100.0 * (double)n);

	if ((double)rank < p / 100.0 * (double)n)
		rank++;
	if (rank == 0)
		rank = 1;
	return sorted[rank - 1];
}

static void
check_against_sort(const char *name, uint64_t *v, size_t n)
{
	static const double ps[] = { 1, 50, 90, 99, 99.9, 100 };
	struct hist *h = malloc(sizeof(*h));
	size_t i;
	int ok = 1;

	printf("RUN %s\n", name);
	hist_init(h);
	for (i = 0; i < n; i++)
		hist_add(h, v[i]);
	qsort(v, n, sizeof(*v), cmp_u64);
	for (i = 0; i < sizeof(ps) / sizeof(ps[0]); i++) {
		uint64_t want = exact(v, n, ps[i]), got = hist_percentile(h, ps[i]);
		/* Within 1% above (bucket upper bound), never below. */
		if (got < want || (double)(got - want) > (double)want / 100.0 + 1) {
			fprintf(stderr, "  p%g: want %llu got %llu\n", ps[i],
			    (unsigned long long)want, (unsigned long long)got);
			ok = 0;
		}
	}
	ok &= h->min == v[0] && h->max == v[n - 1] && h->count == n;
	printf("%s %s\n", ok ? "PASS" : "FAIL", name);
	if (!ok)
		check_failures++;
	free(h);
}

int
main(void)
{
	static uint64_t v[200000];
	struct hist *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b)),
	    *all = malloc(sizeof(*all));
	size_t i, n = sizeof(v) / sizeof(v[0]);

	srand(7);
	for (i = 0; i < n; i++)
		v[i] = (uint64_t)rand() % 1000;
	check_against_sort("uniform small", v, n);
	for (i = 0; i < n; i++)
		v[i] = (uint64_t)1 << (rand() % 36) | (uint64_t)rand();
	check_against_sort("wide range", v, n);
	for (i = 0; i < n; i++)
		v[i] = 500 + (uint64_t)(rand() % 100) * (rand() % 100 == 0 ? 1000 : 1);
	check_against_sort("long tail", v, n);

	printf("RUN exact below 128\n");
	hist_init(a);
	for (i = 0; i < 100; i++)
		hist_add(a, i);
	CHECK(hist_percentile(a, 50) == 49);
	CHECK(hist_percentile(a, 100) == 99);
	CHECK(hist_percentile(a, 1) == 0);
	CHECK(hist_mean(a) == 49.5);
	printf("RUN empty\n");
	hist_init(b);
	CHECK(hist_percentile(b, 99) == 0);
	CHECK(hist_mean(b) == 0.0);

	printf("RUN merge\n");
	hist_init(a);
	hist_init(b);
	hist_init(all);
	for (i = 0; i < 10000; i++) {
		uint64_t x = (uint64_t)rand() % 5000000;
		hist_add(i % 3 ? a : b, x);
		hist_add(all, x);
	}
	hist_merge(a, b);
	CHECK(memcmp(a, all, sizeof(*a)) == 0);
	printf("RUN huge values\n");
	hist_init(a);
	hist_add(a, UINT64_MAX / 2);
	CHECK(hist_percentile(a, 50) == UINT64_MAX / 2);
	free(a);
	free(b);
	free(all);
	return check_done();
}
