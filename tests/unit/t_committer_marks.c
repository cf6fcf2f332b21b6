/*
 * Description: delivery results journaled through the committer. An
 * update job with a mark record is written and synced at its place in its
 * segment like a message record, comes back once durable, and its
 * updates are indexed behind it (a message whose recipients are all
 * delivered is removed, the segment's log position moves past the
 * record). A crash after the mark record was durable but before the index
 * had it (an index copied at that moment) loses nothing: recovery replays
 * the mark, from another segment than the message's, and the message
 * counts as delivered. Reclamation: a sealed segment holding only mark
 * records is deleted once they are indexed, never before (a mark and its
 * segment's seal in one batch: whenever the file is gone, so is the
 * message it marked); one holding a message goes once that message is
 * done and the segment sealed. A mark record whose segment cannot be
 * synced (a pipe) fails that segment (its log is sealed) but its updates
 * are still applied, and the job's result is 0.
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
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../../queue/queue.h"
#include "../../queue/queue_commit.h"
#include "check.h"
#include "commit_check.h"
#include "queue_check.h"

static const char *rcpts[2] = { "a@example.net", "b@example.net" };
static char spool[] = "/tmp/sluice-t-committer-marks-XXXXXX";
static const char body[] = "Subject: m\r\n\r\nbody\r\n";

static bool
seg_exists(uint64_t seg)
{
	return check_seg_size(spool, seg) >= 0;
}

/* A put of a real record (two recipients) for qid at off of seg. */
static struct commit_job *
mkput(uint64_t qid, uint64_t seg, uint64_t off, int fd)
{
	return check_put_job(qid, seg, off, fd, rcpts, 2, body,
	    sizeof(body) - 1);
}

static struct commit_job *
mkseal(uint64_t seg)
{
	struct commit_job *j = calloc(1, sizeof(*j));

	CHECK_FATAL(j != NULL);
	j->kind = COMMIT_SEAL;
	j->put.seg = seg;
	j->seg_fd = -1;
	j->conn_idx = COMMIT_NO_CONN;
	return j;
}

/* Wait (bounded) until qid's presence in the index is want. */
static bool
wait_indexed(struct queue_index *qi, uint64_t qid, bool want)
{
	time_t deadline = time(NULL) + 10;

	while (check_indexed(qi, qid) != want) {
		if (time(NULL) >= deadline)
			return false;
		usleep(2000);
	}
	return true;
}

static bool
wait_gone(uint64_t seg)
{
	time_t deadline = time(NULL) + 10;

	while (seg_exists(seg)) {
		if (time(NULL) >= deadline)
			return false;
		usleep(2000);
	}
	return true;
}

/*
 * The crash: the index as it was copied at that moment, and the segments
 * as they are now, in a spool of their own; recovery there.
 */
static void
crash_recover(const char *snap, uint64_t qid)
{
	struct queue_recovery_report rep;
	struct queue_index *qi;
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "cp %s/seg/*.seg %s/seg/", spool, snap);
	CHECK_FATAL(system(cmd) == 0);
	CHECK_FATAL(queue_index_open(&qi, snap, 1ull << 26, 0) == 0);
	CHECK(check_indexed(qi, qid));	/* as the index was at the crash */
	CHECK(queue_recover(qi, snap, &rep) == 0);
	CHECK(rep.marks == 2 && rep.marks_done == 1);
	CHECK(!check_indexed(qi, qid));
	queue_index_close(qi);
}

int
main(void)
{
	const uint64_t s1 = SEG_ID(0, 1), s2 = SEG_ID(1, 1), s3 = SEG_ID(0, 2),
	    s4 = SEG_ID(1, 2), s5 = SEG_ID(0, 3), s6 = SEG_ID(1, 3);
	char snap[sizeof(spool) + 8], path[600];
	struct commit_job *jobs[2];
	struct queue_index *qi;
	struct committer *cm;
	int efd = eventfd(0, EFD_CLOEXEC), f1, f2, f3, f4, f5, pfd[2];
	uint8_t rec[64];
	uint64_t mark_len;
	bool bad = false;

	CHECK_FATAL(efd >= 0 && mkdtemp(spool) != NULL && pipe(pfd) == 0);
	CHECK_FATAL(queue_index_open(&qi, spool, 1ull << 26, 0) == 0);
	f1 = check_seg_open(spool, s1);
	f2 = check_seg_open(spool, s2);
	CHECK_FATAL(committer_start(&cm, qi, 1, &efd, spool) == 0);

	/* P in segment 1 (shard 0), indexed. */
	jobs[0] = mkput(0x101, s1, 0, f1);
	check_commit_run(cm, efd, jobs, 1);
	CHECK(jobs[0]->put.result == 0);
	CHECK(wait_indexed(qi, 0x101, true));
	check_job_free(jobs[0]);
	/* The index as a crash would find it after the mark's sync. */
	snprintf(snap, sizeof(snap), "%s.snap", spool);
	snprintf(path, sizeof(path), "mkdir -p %s/index %s/seg", snap, snap);
	CHECK_FATAL(system(path) == 0);
	snprintf(path, sizeof(path), "%s/index", snap);
	CHECK_FATAL(mdb_env_copy(qi->env, path) == 0);

	/* P's mark in segment 2 (shard 1): durable when back, then indexed. */
	jobs[0] = check_mark_job(0x101, 2, s2, 0, f2);
	mark_len = jobs[0]->put.rec_len;
	check_commit_run(cm, efd, jobs, 1);
	CHECK(jobs[0]->put.result == 0 && !jobs[0]->seg_failed);
	CHECK(pread(f2, rec, sizeof(rec), 0) == (ssize_t)mark_len);
	CHECK(seg_mark_check(rec, (size_t)mark_len, s2, 0) == NULL);
	check_job_free(jobs[0]);
	crash_recover(snap, 0x101);
	CHECK(wait_indexed(qi, 0x101, false));
	CHECK(check_log_pos(qi, s2) == mark_len);

	/* Reclamation: both sealed now, nothing lives in them: both go. */
	jobs[0] = mkseal(s1);
	jobs[1] = mkseal(s2);
	check_commit_run(cm, efd, jobs, 2);
	CHECK(wait_gone(s1) && wait_gone(s2));
	free(jobs[0]);
	free(jobs[1]);

	/*
	 * Q in segment 3; its mark in segment 4 and segment 4's seal in one
	 * batch: the file may go only with (or after) the mark's index
	 * write. Segment 3 is not sealed: it stays though Q is done.
	 */
	f3 = check_seg_open(spool, s3);
	f4 = check_seg_open(spool, s4);
	jobs[0] = mkput(0x102, s3, 0, f3);
	check_commit_run(cm, efd, jobs, 1);
	CHECK(wait_indexed(qi, 0x102, true));
	check_job_free(jobs[0]);
	jobs[0] = check_mark_job(0x102, 2, s4, 0, f4);
	jobs[1] = mkseal(s4);
	CHECK_FATAL(committer_submit(cm, 0, jobs[0]) &&
	    committer_submit(cm, 0, jobs[1]));
	committer_wake(cm);
	for (time_t deadline = time(NULL) + 10; time(NULL) < deadline;) {
		bool gone = !seg_exists(s4), live = check_indexed(qi, 0x102);

		if (gone && live)
			bad = true;
		if (gone && !live)
			break;
	}
	CHECK(!bad);
	CHECK(!seg_exists(s4) && !check_indexed(qi, 0x102));
	for (int back = 0; back < 2;) {
		struct pollfd p = { .fd = efd, .events = POLLIN };
		uint64_t v;

		CHECK_FATAL(poll(&p, 1, 10000) == 1);
		CHECK(read(efd, &v, sizeof(v)) == sizeof(v));
		while (committer_reap(cm, 0) != NULL)
			back++;
	}
	check_job_free(jobs[0]);
	free(jobs[1]);
	CHECK(seg_exists(s3));
	jobs[0] = mkseal(s3);
	check_commit_run(cm, efd, jobs, 1);
	CHECK(wait_gone(s3));
	free(jobs[0]);

	/*
	 * R in segment 5; its mark in segment 6, which cannot be synced (a
	 * pipe): the segment fails and is sealed, R is removed all the same.
	 */
	f5 = check_seg_open(spool, s5);
	jobs[0] = mkput(0x103, s5, 0, f5);
	check_commit_run(cm, efd, jobs, 1);
	CHECK(wait_indexed(qi, 0x103, true));
	check_job_free(jobs[0]);
	jobs[0] = check_mark_job(0x103, 2, s6, 0, pfd[1]);
	check_commit_run(cm, efd, jobs, 1);
	CHECK(jobs[0]->seg_failed && jobs[0]->put.result == 0);
	CHECK(wait_indexed(qi, 0x103, false));
	CHECK(check_log_pos(qi, s6) == QUEUE_LOG_SEALED);
	check_job_free(jobs[0]);

	committer_stop(cm);
	queue_index_close(qi);
	close(f1);
	close(f2);
	close(f3);
	close(f4);
	close(f5);
	close(pfd[0]);
	close(pfd[1]);
	close(efd);
	if (check_failures)
		return check_done();	/* keep the spools to look at */
	snprintf(path, sizeof(path), "rm -rf %s %s", spool, snap);
	CHECK(system(path) == 0);
	return check_done();
}
