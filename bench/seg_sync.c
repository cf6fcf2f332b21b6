/*
 * seg_sync.c - sluice-bench seg-sync: what a group commit's fdatasync
 * costs when the record is appended (the file grows, so its size must be
 * written too) and when it goes into space the segment was allocated with
 * (shards fallocate each segment whole when they open it); and, with
 * --writers, what several such streams syncing at once (a shard's
 * segments, the index) do to the machine.
 *
 *   sluice-bench seg-sync --dir DIR [--records 2000] [--size 1024]
 *                         [--rounds 3] [--writers 1]
 *
 * Each round, --writers threads each write --records records of --size
 * bytes one after the other, each followed by fdatasync(), into a file of
 * their own, once into files that grow ("append") and once into files
 * allocated whole first ("allocated"), alternating which goes first.
 * Meanwhile a probe thread (SCHED_FIFO when allowed) sleeps 1 ms at a
 * time and notes how much longer it took to get the CPU back: a stall of
 * the whole machine shows there, whatever else runs.
 *
 * One JSON line per mode: the medians over the rounds of the wall time
 * and of the CPU time (user + system of this process) per sync, in
 * microseconds, the p99 of the last round, and the probe's worst delay
 * and how many delays passed 5 ms, over all rounds. The files are
 * removed. Bounded: --records at most 100000, --rounds at most 20,
 * --writers at most 8.
 */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
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
#define SS_WRITERS_MAX	8u
#define SS_SIZE_MAX	(1u << 20)
#define SS_PROBE_US	1000u
#define SS_STALL_US	5000u

struct ss_result {
	double wall_us[SS_ROUNDS_MAX], cpu_us[SS_ROUNDS_MAX];
	uint64_t p99;
	uint64_t probe_max_us, probe_stalls;
	bool probe_fifo;
};

struct ss_writer {
	pthread_t thread;
	const char *dir, *rec;
	unsigned id, records, size;
	bool allocated;
	struct hist h;
	int err;
};

struct ss_probe {
	pthread_t thread;
	atomic_bool stop;
	uint64_t max_us, stalls;
	bool fifo;
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

static void *
ss_write_main(void *arg)
{
	struct ss_writer *w = arg;
	char path[4096];
	int fd;

	hist_init(&w->h);
	snprintf(path, sizeof(path), "%s/seg-sync.%d.%u", w->dir, (int)getpid(),
	    w->id);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		w->err = -errno;
		return NULL;
	}
	unlink(path);
	if (w->allocated &&
	    fallocate(fd, 0, 0, (off_t)w->records * w->size) < 0)
		w->err = -errno;
	if (w->err == 0 && fsync(fd) < 0)
		w->err = -errno;
	for (unsigned i = 0; w->err == 0 && i < w->records; i++) {
		uint64_t t = clock_mono_us();

		if (pwrite(fd, w->rec, w->size, (off_t)i * w->size) !=
		    (ssize_t)w->size || fdatasync(fd) < 0)
			w->err = errno != 0 ? -errno : -EIO;
		hist_add(&w->h, clock_mono_us() - t);
	}
	close(fd);
	return NULL;
}

static void *
ss_probe_main(void *arg)
{
	struct ss_probe *p = arg;
	struct sched_param sp = { .sched_priority = 50 };
	struct timespec ts = { 0, SS_PROBE_US * 1000 };

	p->fifo = pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp) == 0;
	while (!atomic_load(&p->stop)) {
		uint64_t t = clock_mono_us(), late;

		nanosleep(&ts, NULL);
		late = clock_mono_us() - t;
		late = late > SS_PROBE_US ? late - SS_PROBE_US : 0;
		if (late > p->max_us)
			p->max_us = late;
		if (late > SS_STALL_US)
			p->stalls++;
	}
	return NULL;
}

/* One round of one mode into r's slot round; 0 or -errno. */
static int
ss_round(const char *dir, bool allocated, unsigned records, unsigned size,
    unsigned writers, const char *rec, struct ss_result *r, unsigned round,
    struct ss_writer *w)
{
	struct ss_probe probe = { .max_us = 0 };
	uint64_t t0, c0;
	int err = 0;
	unsigned n;

	atomic_init(&probe.stop, false);
	if (pthread_create(&probe.thread, NULL, ss_probe_main, &probe) != 0)
		return -EAGAIN;
	t0 = clock_mono_us();
	c0 = ss_cpu_us();
	for (n = 0; n < writers; n++) {
		w[n] = (struct ss_writer){ .dir = dir, .rec = rec, .id = n,
		    .records = records, .size = size, .allocated = allocated };
		if (pthread_create(&w[n].thread, NULL, ss_write_main,
		    &w[n]) != 0) {
			err = -EAGAIN;
			break;
		}
	}
	for (unsigned i = 0; i < n; i++) {
		pthread_join(w[i].thread, NULL);
		if (err == 0)
			err = w[i].err;
		if (i > 0)
			hist_merge(&w[0].h, &w[i].h);
	}
	r->wall_us[round] = (double)(clock_mono_us() - t0) / records;
	r->cpu_us[round] = (double)(ss_cpu_us() - c0) / records /
	    (writers > 0 ? writers : 1);
	r->p99 = hist_percentile(&w[0].h, 99);
	atomic_store(&probe.stop, true);
	pthread_join(probe.thread, NULL);
	if (probe.max_us > r->probe_max_us)
		r->probe_max_us = probe.max_us;
	r->probe_stalls += probe.stalls;
	r->probe_fifo = probe.fifo;
	return err;
}

int
bench_seg_sync_main(int argc, char **argv)
{
	unsigned records = 2000, size = 1024, rounds = 3, writers = 1;
	static const char *const names[2] = { "append", "allocated" };
	struct ss_result res[2] = { { .p99 = 0 } };
	struct ss_writer *w;
	const char *dir = NULL;
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
		else if (strcmp(argv[i], "--writers") == 0)
			num = &writers;
		if (num == NULL || v == NULL)
			goto usage;
		*num = (unsigned)strtoul(v, NULL, 10);
		i++;
	}
	if (dir == NULL || records == 0 || records > SS_RECORDS_MAX ||
	    size == 0 || size > SS_SIZE_MAX || rounds == 0 ||
	    rounds > SS_ROUNDS_MAX || writers == 0 || writers > SS_WRITERS_MAX)
		goto usage;
	w = calloc(writers, sizeof(*w));
	rec = malloc(size);
	if (w == NULL || rec == NULL) {
		fputs("seg-sync: out of memory\n", stderr);
		return 1;
	}
	memset(rec, 'r', size);
	for (unsigned r = 0; r < rounds && err == 0; r++)
		for (unsigned k = 0; k < 2 && err == 0; k++) {
			unsigned m = (r + k) % 2;	/* alternate the order */

			err = ss_round(dir, m == 1, records, size, writers, rec,
			    &res[m], r, w);
		}
	free(w);
	free(rec);
	if (err != 0) {
		fprintf(stderr, "seg-sync: %s: %s\n", dir, strerror(-err));
		return 1;
	}
	for (unsigned m = 0; m < 2; m++)
		printf("{\"mode\":\"%s\",\"records\":%u,\"size\":%u,"
		    "\"rounds\":%u,\"writers\":%u,\"sync_us\":%.1f,"
		    "\"cpu_us\":%.1f,\"p99_us\":%llu,\"probe_fifo\":%s,"
		    "\"probe_max_us\":%llu,\"probe_over_5ms\":%llu}\n",
		    names[m], records, size, rounds, writers,
		    ss_median(res[m].wall_us, rounds),
		    ss_median(res[m].cpu_us, rounds),
		    (unsigned long long)res[m].p99,
		    res[m].probe_fifo ? "true" : "false",
		    (unsigned long long)res[m].probe_max_us,
		    (unsigned long long)res[m].probe_stalls);
	return 0;
usage:
	fputs("usage: sluice-bench seg-sync --dir DIR [--records 2000] "
	    "[--size 1024] [--rounds 3] [--writers 1]\n", stderr);
	return 2;
}
