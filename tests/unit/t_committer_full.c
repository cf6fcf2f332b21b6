/*
 * Description: when the index cannot take more (here a map of 256 KiB
 * fills up), messages already acknowledged are not lost. The committer
 * goes on acknowledging real records until the indexer's first failed
 * write, then refuses new ones with QUEUE_EFULL (452) and fails their
 * segment (no record after the hole is acknowledged); a stop gives up on
 * the acknowledged messages it could not index, and the next start
 * (recovery, with a bigger map) replays them from the segment: every
 * acknowledged message is then indexed and reads back whole, and the
 * refused ones are not there.
 * timeout: 60
 */
#define QUEUE_INTERNAL
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "../../queue/queue.h"
#include "../../queue/queue_commit.h"
#include "check.h"
#include "commit_check.h"

#define SMALL_MAP (256u << 10)
#define BIG_MAP (64u << 20)
#define MAX_JOBS 20000
#define SEG SEG_ID(0, 1)

static const char *rcpt[1] = { "b@example.net" };

/* Submit one job and wait (bounded) for it to come back. */
static void
run1(struct committer *cm, int efd, struct commit_job *job)
{
	time_t deadline = time(NULL) + 10;
	uint64_t v;

	CHECK_FATAL(committer_submit(cm, 0, job));
	committer_wake(cm);
	while (time(NULL) < deadline) {
		struct pollfd p = { .fd = efd, .events = POLLIN };

		if (poll(&p, 1, 100) == 1) {
			CHECK(read(efd, &v, sizeof(v)) == sizeof(v));
			if (committer_reap(cm, 0) != NULL)
				return;
		}
	}
	CHECK_FATAL(!"job came back");
}

int
main(void)
{
	char dir[] = "/tmp/sluice-t-committer-full-XXXXXX", path[256];
	char rel[SEG_PATH_MAX];
	static uint64_t acked[MAX_JOBS];
	static char bodies[MAX_JOBS][40];
	struct queue_recovery_report rep;
	struct queue_index *qi;
	struct committer *cm;
	struct queue_msg m;
	uint64_t off = 0, count, refused = 0;
	size_t nacked = 0, after = 0;
	int efd = eventfd(0, EFD_CLOEXEC), fd;

	CHECK_FATAL(efd >= 0 && mkdtemp(dir) != NULL);
	CHECK_FATAL(queue_index_open(&qi, dir, SMALL_MAP, 0) == 0);
	seg_path(SEG, rel, sizeof(rel));
	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	CHECK_FATAL(fd >= 0);
	CHECK_FATAL(committer_start(&cm, qi, 1, &efd, dir) == 0);

	for (uint64_t i = 0; i < MAX_JOBS; i++) {
		size_t n = (size_t)snprintf(bodies[i], sizeof(bodies[i]),
		    "Subject: %llu\r\n\r\nbody\r\n", (unsigned long long)i);
		struct commit_job *job = check_put_job(0x1000 + i, SEG, off, fd,
		    rcpt, 1, bodies[i], n);

		run1(cm, efd, job);
		if (job->put.result == 0) {
			CHECK(refused == 0);	/* none after the first */
			acked[nacked++] = job->put.qid;
			off += job->put.rec_len;
		} else {
			CHECK(job->put.result == QUEUE_EFULL);
			CHECK(job->seg_failed);
			refused++;
		}
		free(job);
		if (refused == 3)
			break;
	}
	CHECK_FATAL(refused == 3);
	CHECK(nacked > 100);
	committer_stop(cm);
	queue_index_close(qi);
	close(fd);

	/* The next start, with room: every acknowledged message is back. */
	CHECK_FATAL(queue_index_open(&qi, dir, BIG_MAP, 0) == 0);
	CHECK(queue_recover(qi, dir, &rep) == 0);
	CHECK(rep.replayed > 0);
	CHECK(queue_index_count(qi, &count) == 0 && count == nacked);
	for (size_t i = 0; i < nacked; i++) {
		uint8_t *msg;
		size_t len;

		if (queue_index_get(qi, acked[i], &m) != 0) {
			CHECK(!"acknowledged message indexed");
			continue;
		}
		if (queue_read_message(dir, &m, &msg, &len) == 0) {
			after += len == strlen(bodies[acked[i] - 0x1000]) &&
			    memcmp(msg, bodies[acked[i] - 0x1000], len) == 0;
			free(msg);
		}
		queue_msg_release(&m);
	}
	CHECK(after == nacked);
	CHECK(queue_index_get(qi, 0x1000 + nacked, &m) == QUEUE_ENOTFOUND);
	printf("%zu acknowledged, %llu replayed at the next start\n", nacked,
	    (unsigned long long)rep.replayed);
	queue_index_close(qi);
	snprintf(path, sizeof(path), "rm -rf %s", dir);
	CHECK(system(path) == 0);
	return check_done();
}
