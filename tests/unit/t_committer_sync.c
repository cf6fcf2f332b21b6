/*
 * Description: the committer writes each record at its offset and
 * fdatasyncs the segments of a batch, hands the jobs back, and the indexer
 * indexes them after that. Jobs come back with their bytes in the file and
 * are indexed soon after, moving their segment's log position to the
 * record's end. A job whose segment cannot be synced (here a pipe, where
 * fdatasync fails with EINVAL) comes back failed with seg_failed set and
 * is never indexed; a later job of that segment fails without being
 * written, even on a descriptor that could be synced; the failed
 * segment's log is sealed. A failed write (a read-only descriptor) fails
 * every job of that chain. A DSN (a put carrying its bounced recipients'
 * updates) whose record cannot be synced is not indexed and its updates
 * are not applied: the bounced message stays queued; with a good segment
 * both happen. A seal seals the segment's log; a stop indexes what is
 * left.
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
#include "queue_check.h"

static const char *rcpt[1] = { "b@example.net" };

static char payload[8][32];

static struct commit_job *
mkjob(uint64_t qid, uint64_t seg, int fd)
{
	static unsigned np;
	char *pl = payload[np++ % 8];
	struct envelope e = { .qid = qid, .arrival_us = 1, .nrcpt = 1,
	    .sender = "a@example.com", .client_addr = "127.0.0.1",
	    .helo = "x", .protocol = "ESMTP", .rcpt = rcpt };
	size_t el = envelope_encoded_len(&e);
	struct commit_job *j = calloc(1, sizeof(*j) + el);

	CHECK_FATAL(j != NULL);
	envelope_encode(&e, j->head);
	j->kind = COMMIT_PUT;
	j->put.qid = qid;
	j->put.seg = seg;
	j->put.env = j->head;
	j->put.env_len = (uint32_t)el;
	j->put.nrcpt = 1;
	j->put.msg_len = 10;
	j->put.rec_len = (uint32_t)(sizeof(struct seg_hdr) + el + 10);
	j->seg_fd = fd;
	j->conn_idx = COMMIT_NO_CONN;
	/* The record's bytes: a fixed-size text naming the job. */
	snprintf(pl, sizeof(payload[0]), "record %016llx\n",
	    (unsigned long long)qid);
	j->iov[0].iov_base = pl;
	j->iov[0].iov_len = 24;
	j->put.offset = (qid & 0xff) * 24;
	return j;
}

/* Wait (bounded) until qid is indexed; true if it is. */
static bool
indexed(struct queue_index *qi, uint64_t qid)
{
	time_t deadline = time(NULL) + 10;
	struct queue_msg m;

	while (queue_index_get(qi, qid, &m) != 0) {
		if (time(NULL) >= deadline)
			return false;
		usleep(2000);
	}
	queue_msg_release(&m);
	return true;
}

int
main(void)
{
	char dir[] = "/tmp/sluice-t-committer-sync-XXXXXX", path[256];
	struct commit_job *jobs[3];
	struct queue_index *qi;
	struct committer *cm;
	struct queue_msg m;
	uint64_t count;
	int efd = eventfd(0, EFD_CLOEXEC), sfd, pfd[2];

	CHECK_FATAL(efd >= 0 && mkdtemp(dir) != NULL && pipe(pfd) == 0);
	CHECK_FATAL(queue_index_open(&qi, dir, 1ull << 26, 0) == 0);
	snprintf(path, sizeof(path), "%s/segment", dir);
	sfd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	CHECK_FATAL(sfd >= 0);
	CHECK_FATAL(committer_start(&cm, qi, 1, &efd, NULL) == 0);

	/* A good segment: written, handed back, then indexed. */
	jobs[0] = mkjob(0x201, 1, sfd);
	jobs[1] = mkjob(0x202, 1, sfd);
	check_commit_run(cm, efd, jobs, 2);
	CHECK(jobs[0]->put.result == 0 && jobs[1]->put.result == 0);
	CHECK(!jobs[0]->seg_failed && !jobs[1]->seg_failed);
	CHECK(indexed(qi, 0x201) && indexed(qi, 0x202));
	CHECK(check_log_pos(qi, 1) == jobs[1]->put.offset + jobs[1]->put.rec_len);
	{
		char got[24];
		int rfd = open(path, O_RDONLY | O_CLOEXEC);

		CHECK_FATAL(rfd >= 0);
		CHECK(pread(rfd, got, 24, 0x02 * 24) == 24 &&
		    memcmp(got, "record 0000000000000202\n", 24) == 0);
		CHECK(pread(rfd, got, 24, 0x01 * 24) == 24 &&
		    memcmp(got, "record 0000000000000201\n", 24) == 0);
		/* A write that fails breaks its chain: both jobs fail. */
		jobs[2] = mkjob(0x211, 3, rfd);
		jobs[0]->put.qid = 0x212;	/* reuse as a second job */
		jobs[0]->seg_fd = rfd;
		jobs[0]->put.seg = 3;
		check_commit_run(cm, efd, (struct commit_job *[]){ jobs[2], jobs[0] }, 2);
		CHECK(jobs[2]->put.result == -EBADF && jobs[2]->seg_failed);
		CHECK(jobs[0]->put.result == -EBADF && jobs[0]->seg_failed);
		free(jobs[2]);
		close(rfd);
	}
	free(jobs[0]);
	free(jobs[1]);

	/* A segment that cannot be synced: failed, and not indexed. */
	jobs[0] = mkjob(0x301, 2, pfd[1]);
	jobs[1] = mkjob(0x302, 1, sfd);		/* same batch, good segment */
	check_commit_run(cm, efd, jobs, 2);
	CHECK(jobs[0]->put.result < 0 && jobs[0]->seg_failed);
	CHECK(jobs[1]->put.result == 0 && !jobs[1]->seg_failed);
	/* The indexer keeps the order: once 0x302 is in, so is all before. */
	CHECK(indexed(qi, 0x302));
	CHECK(queue_index_get(qi, 0x211, &m) == QUEUE_ENOTFOUND);
	CHECK(queue_index_get(qi, 0x212, &m) == QUEUE_ENOTFOUND);
	CHECK(queue_index_get(qi, 0x301, &m) == QUEUE_ENOTFOUND);
	CHECK(check_log_pos(qi, 3) == QUEUE_LOG_SEALED);
	CHECK(check_log_pos(qi, 2) == QUEUE_LOG_SEALED);
	/* Later jobs of segment 2 fail at once, whatever their descriptor. */
	jobs[2] = mkjob(0x303, 2, sfd);
	check_commit_run(cm, efd, jobs + 2, 1);
	CHECK(jobs[2]->put.result < 0 && jobs[2]->seg_failed);
	for (int i = 0; i < 3; i++)
		free(jobs[i]);

	/* DSNs: a put with the updates that bounce message 0x501. */
	jobs[0] = mkjob(0x501, 1, sfd);
	check_commit_run(cm, efd, jobs, 1);
	CHECK(jobs[0]->put.result == 0);
	CHECK(indexed(qi, 0x501));
	free(jobs[0]);
	{
		struct queue_update *up = calloc(1, sizeof(*up));

		CHECK_FATAL(up != NULL);
		up->kind = QUEUE_UPD_RCPT;
		up->qid = 0x501;
		up->idx = 0;
		up->state = RCPT_BOUNCED;
		up->last_code = 550;
		jobs[0] = mkjob(0x502, 4, pfd[1]);	/* cannot be synced */
		jobs[0]->ups = up;
		jobs[0]->nups = 1;
		jobs[1] = mkjob(0x504, 1, sfd);		/* a marker after it */
		check_commit_run(cm, efd, jobs, 2);
		CHECK(jobs[0]->put.result < 0 && jobs[1]->put.result == 0);
		CHECK(indexed(qi, 0x504));
		CHECK(queue_index_get(qi, 0x502, &m) == QUEUE_ENOTFOUND);
		CHECK_FATAL(queue_index_get(qi, 0x501, &m) == 0);
		CHECK(m.rcpt[0].state == RCPT_PENDING);
		queue_msg_release(&m);
		free(jobs[0]);
		free(jobs[1]);
		jobs[0] = mkjob(0x503, 1, sfd);		/* a good segment */
		jobs[0]->ups = up;
		jobs[0]->nups = 1;
		check_commit_run(cm, efd, jobs, 1);
		CHECK(jobs[0]->put.result == 0);
		CHECK(indexed(qi, 0x503));
		CHECK(queue_index_get(qi, 0x501, &m) == QUEUE_ENOTFOUND);
		free(jobs[0]);
		free(up);
	}

	/* A seal seals the log; a stop indexes what is left. */
	jobs[0] = mkjob(0x401, 1, sfd);
	jobs[1] = calloc(1, sizeof(*jobs[1]));
	CHECK_FATAL(jobs[1] != NULL);
	jobs[1]->kind = COMMIT_SEAL;
	jobs[1]->put.seg = 1;
	jobs[1]->seg_fd = -1;
	jobs[1]->conn_idx = COMMIT_NO_CONN;
	check_commit_run(cm, efd, jobs, 2);
	CHECK(jobs[0]->put.result == 0 && jobs[1]->put.result == 0);
	committer_stop(cm);
	CHECK_FATAL(queue_index_get(qi, 0x401, &m) == 0);
	queue_msg_release(&m);
	CHECK(check_log_pos(qi, 1) == QUEUE_LOG_SEALED);
	CHECK(queue_index_count(qi, &count) == 0 && count == 6);
	free(jobs[0]);
	free(jobs[1]);
	queue_index_close(qi);
	close(sfd);
	close(pfd[0]);
	close(pfd[1]);
	snprintf(path, sizeof(path), "rm -rf %s", dir);
	CHECK(system(path) == 0);
	return check_done();
}
