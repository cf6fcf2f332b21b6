/*
 * log_sync.c - sluice-bench log-sync: what a busy log file does to the
 * spool's fdatasync on the same disk, with and without early writeback.
 *
 *   sluice-bench log-sync --dir DIR [--seconds 40] [--log-mb 8]
 *                         [--sync-every-ms 2] [--wback]
 *
 * One thread appends 512-byte lines to DIR/log at --log-mb MB a second
 * (as the delivery log does under load); with --wback it registers the
 * file with lib/wback.c and reports its bytes, as sluiced does. The main
 * thread writes 4 KiB to DIR/spool and fdatasyncs it every
 * --sync-every-ms, as a shard's segment write does, and reports the
 * sync's latency: p50, p99, p99.9 and max in microseconds, one line of
 * JSON. Without --wback the kernel writes the log back in bulk (after
 * dirty_expire_centisecs), and the syncs that meet such a burst wait.
 * Both files are removed at the end. Bounded: --seconds at most 600.
 */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../lib/clock.h"
#include "../lib/wback.h"
#include "bench_hist.h"

#define LS_LINE		512
#define LS_BLOCK	4096
#define LS_SECONDS_MAX	600

struct ls_opts {
	const char *dir;
	unsigned seconds, log_mb, every_ms;
	bool wback;
};

static atomic_bool ls_stop;

static void
ls_sleep_until(uint64_t t)
{
	uint64_t now = clock_mono_us();
	struct timespec ts;

	if (t <= now)
		return;
	ts.tv_sec = (time_t)((t - now) / 1000000u);
	ts.tv_nsec = (long)((t - now) % 1000000u) * 1000;
	nanosleep(&ts, NULL);
}

struct ls_writer {
	int fd;
	unsigned log_mb;
	bool wback;
	uint64_t bytes;
};

/* Lines at the rate, in 10 ms steps. */
static void *
ls_write_main(void *arg)
{
	struct ls_writer *w = arg;
	char line[LS_LINE];
	uint64_t t = clock_mono_us(), per_step = (uint64_t)w->log_mb * 1000000u /
	    100u / LS_LINE;

	memset(line, 'x', sizeof(line));
	line[sizeof(line) - 1] = '\n';
	while (!atomic_load(&ls_stop)) {
		for (uint64_t i = 0; i < per_step; i++) {
			if (write(w->fd, line, sizeof(line)) !=
			    (ssize_t)sizeof(line))
				return NULL;
			w->bytes += sizeof(line);
			if (w->wback)
				wback_wrote(sizeof(line));
		}
		t += 10000;
		ls_sleep_until(t);
	}
	return NULL;
}

static int
ls_parse(int argc, char **argv, struct ls_opts *o)
{
	o->seconds = 40;
	o->log_mb = 8;
	o->every_ms = 2;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		unsigned *num = NULL;

		if (strcmp(a, "--wback") == 0) {
			o->wback = true;
			continue;
		}
		if (strcmp(a, "--dir") == 0 && v != NULL) {
			o->dir = v;
			i++;
			continue;
		}
		if (strcmp(a, "--seconds") == 0)
			num = &o->seconds;
		else if (strcmp(a, "--log-mb") == 0)
			num = &o->log_mb;
		else if (strcmp(a, "--sync-every-ms") == 0)
			num = &o->every_ms;
		if (num == NULL || v == NULL)
			return -1;
		*num = (unsigned)strtoul(v, NULL, 10);
		i++;
	}
	if (o->dir == NULL || o->seconds == 0 || o->seconds > LS_SECONDS_MAX ||
	    o->log_mb == 0 || o->log_mb > 1000 || o->every_ms == 0)
		return -1;
	return 0;
}

int
bench_log_sync_main(int argc, char **argv)
{
	char logp[4096], spoolp[4096], block[LS_BLOCK];
	struct ls_writer w = { 0 };
	struct ls_opts o = { 0 };
	struct hist *h;
	pthread_t t;
	uint64_t end, next, t0, off = 0;
	int sfd, rc = 1;

	if (ls_parse(argc, argv, &o) != 0) {
		fputs("usage: sluice-bench log-sync --dir DIR [--seconds 40] "
		    "[--log-mb 8] [--sync-every-ms 2] [--wback]\n", stderr);
		return 2;
	}
	snprintf(logp, sizeof(logp), "%s/log", o.dir);
	snprintf(spoolp, sizeof(spoolp), "%s/spool", o.dir);
	w.fd = open(logp, O_WRONLY | O_APPEND | O_CREAT | O_TRUNC | O_CLOEXEC,
	    0640);
	sfd = open(spoolp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	h = calloc(1, sizeof(*h));
	if (w.fd < 0 || sfd < 0 || h == NULL) {
		fprintf(stderr, "log-sync: %s: %s\n", o.dir, strerror(errno));
		goto out;
	}
	hist_init(h);
	w.log_mb = o.log_mb;
	w.wback = o.wback;
	if (o.wback)
		wback_add(w.fd);
	if (pthread_create(&t, NULL, ls_write_main, &w) != 0)
		goto out;
	memset(block, 'r', sizeof(block));
	next = clock_mono_us();
	end = next + (uint64_t)o.seconds * 1000000u;
	while ((t0 = clock_mono_us()) < end) {
		if (pwrite(sfd, block, sizeof(block), (off_t)off) !=
		    (ssize_t)sizeof(block) || fdatasync(sfd) != 0) {
			fprintf(stderr, "log-sync: spool: %s\n",
			    strerror(errno));
			break;
		}
		hist_add(h, clock_mono_us() - t0);
		off = (off + sizeof(block)) % (64u << 20);
		next += (uint64_t)o.every_ms * 1000u;
		ls_sleep_until(next);
	}
	atomic_store(&ls_stop, true);
	pthread_join(t, NULL);
	printf("{\"wback\":%s,\"log_mb_per_s\":%u,\"seconds\":%u,"
	    "\"log_bytes\":%llu,\"syncs\":%llu,\"sync_us\":{\"p50\":%llu,"
	    "\"p99\":%llu,\"p99.9\":%llu,\"max\":%llu}}\n",
	    o.wback ? "true" : "false", o.log_mb, o.seconds,
	    (unsigned long long)w.bytes, (unsigned long long)h->count,
	    (unsigned long long)hist_percentile(h, 50),
	    (unsigned long long)hist_percentile(h, 99),
	    (unsigned long long)hist_percentile(h, 99.9),
	    (unsigned long long)h->max);
	rc = 0;
out:
	if (w.fd >= 0)
		close(w.fd);
	if (sfd >= 0)
		close(sfd);
	unlink(logp);
	unlink(spoolp);
	free(h);
	return rc;
}
