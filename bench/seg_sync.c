/*
 * seg_sync.c - sluice-bench seg-sync: what a group commit's fdatasync
 * costs when the record is appended (the file grows, so its size must be
 * written too) and when it goes into space the segment was allocated with
 * (shards fallocate each segment whole when they open it).
 *
 *   sluice-bench seg-sync --dir DIR [--records 2000] [--size 1024]
 *                         [--rounds 3]
 *
 * Each round writes --records records of --size bytes one after the
 * other, each followed by fdatasync(), once into a new file that grows
 * ("append") and once into a new file allocated whole first
 * ("allocated"), alternating which goes first. One JSON line per mode:
 * the medians over the rounds of the wall time and of the CPU time (user
 * + system of this process) per sync, in microseconds, and the p99 of
 * the last round. The files are removed. Bounded: --records at most
 * 100000, --rounds at most 20.
 */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "../lib/clock.h"
#include "bench_hist.h"

#define SS_RECORDS_MAX	100000u
#define SS_ROUNDS_MAX	20u
#define SS_SIZE_MAX	(1u << 20)

struct ss_result {
	double wall_us[SS_ROUNDS_MAX], cpu_us[SS_ROUNDS_MAX];
	uint64_t p99;
};

static uint64_t
ss_cpu_us(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u +
	    (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static int
ss_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double
ss_median(double *v, unsigned n)
{
	qsort(v, n, sizeof(*v), ss_cmp);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* One round of one mode into r's slot round; 0 or -errno. */
static int
ss_round(const char *dir, bool allocated, unsigned records, unsigned size,
    const char *rec, struct ss_result *r, unsigned round, struct hist *h)
{
	char path[4096];
	uint64_t t0, c0;
	int fd, err = 0;

	snprintf(path, sizeof(path), "%s/seg-sync.%d", dir, (int)getpid());
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	unlink(path);
	if (allocated && fallocate(fd, 0, 0, (off_t)records * size) < 0)
		err = -errno;
	if (err == 0 && fsync(fd) < 0)
		err = -errno;
	hist_init(h);
	t0 = clock_mono_us();
	c0 = ss_cpu_us();
	for (unsigned i = 0; err == 0 && i < records; i++) {
		uint64_t t = clock_mono_us();

		if (pwrite(fd, rec, size, (off_t)i * size) != (ssize_t)size ||
		    fdatasync(fd) < 0)
			err = errno != 0 ? -errno : -EIO;
		hist_add(h, clock_mono_us() - t);
	}
	r->wall_us[round] = (double)(clock_mono_us() - t0) / records;
	r->cpu_us[round] = (double)(ss_cpu_us() - c0) / records;
	r->p99 = hist_percentile(h, 99);
	close(fd);
	return err;
}

int
bench_seg_sync_main(int argc, char **argv)
{
	unsigned records = 2000, size = 1024, rounds = 3;
	static const char *const names[2] = { "append", "allocated" };
	struct ss_result res[2];
	const char *dir = NULL;
	struct hist *h;
	char *rec;
	int err = 0;

	for (int i = 1; i < argc; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		unsigned *num = NULL;

		if (strcmp(argv[i], "--dir") == 0 && v != NULL) {
			dir = v;
			i++;
			continue;
		}
		if (strcmp(argv[i], "--records") == 0)
			num = &records;
		else if (strcmp(argv[i], "--size") == 0)
			num = &size;
		else if (strcmp(argv[i], "--rounds") == 0)
			num = &rounds;
		if (num == NULL || v == NULL)
			goto usage;
		*num = (unsigned)strtoul(v, NULL, 10);
		i++;
	}
	if (dir == NULL || records == 0 || records > SS_RECORDS_MAX ||
	    size == 0 || size > SS_SIZE_MAX || rounds == 0 ||
	    rounds > SS_ROUNDS_MAX)
		goto usage;
	h = malloc(sizeof(*h));
	rec = malloc(size);
	if (h == NULL || rec == NULL) {
		fputs("seg-sync: out of memory\n", stderr);
		return 1;
	}
	memset(rec, 'r', size);
	for (unsigned r = 0; r < rounds && err == 0; r++)
		for (unsigned k = 0; k < 2 && err == 0; k++) {
			unsigned m = (r + k) % 2;	/* alternate the order */

			err = ss_round(dir, m == 1, records, size, rec, &res[m],
			    r, h);
		}
	free(h);
	free(rec);
	if (err != 0) {
		fprintf(stderr, "seg-sync: %s: %s\n", dir, strerror(-err));
		return 1;
	}
	for (unsigned m = 0; m < 2; m++)
		printf("{\"mode\":\"%s\",\"records\":%u,\"size\":%u,"
		    "\"rounds\":%u,\"sync_us\":%.1f,\"cpu_us\":%.1f,"
		    "\"p99_us\":%llu}\n", names[m], records, size, rounds,
		    ss_median(res[m].wall_us, rounds),
		    ss_median(res[m].cpu_us, rounds),
		    (unsigned long long)res[m].p99);
	return 0;
usage:
	fputs("usage: sluice-bench seg-sync --dir DIR [--records 2000] "
	    "[--size 1024] [--rounds 3]\n", stderr);
	return 2;
}
