/*
 * Description: the committer never deadlocks with a shard that has more
 * jobs outstanding than a ring holds. The shard here behaves like
 * engine/shard.c: it keeps its submit ring full and reaps results only
 * when its eventfd fires. Every job must come back, indexed, in bounded
 * time. The shard polls without waiting, so it refills its ring while the
 * committer gathers: the committer can take more than a result ring holds
 * in one batch, which once left both sides waiting for each other.
 */
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "../../queue/queue.h"
#include "../../queue/queue_commit.h"
#include "check.h"

#define NJOBS 9000	/* more than twice COMMIT_RING */

int
main(void)
{
	char dir[] = "/tmp/sluice-t-committer-XXXXXX";
	const char *rcpt[1] = { "b@example.net" };
	struct commit_job **jobs = calloc(NJOBS, sizeof(*jobs));
	struct queue_index *qi;
	struct committer *cm;
	int efd = eventfd(0, EFD_CLOEXEC), i, next = 0, reaped = 0, iter, sfd;
	uint64_t v, count = 0;
	time_t deadline;
	char cmd[256];

	CHECK_FATAL(jobs != NULL && efd >= 0 && mkdtemp(dir) != NULL);
	CHECK_FATAL(queue_index_open(&qi, dir, 1ull << 30, 0) == 0);
	/* The "segment" the committer fdatasyncs for every job. */
	snprintf(cmd, sizeof(cmd), "%s/segment", dir);
	sfd = open(cmd, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	CHECK_FATAL(sfd >= 0);
	for (i = 0; i < NJOBS; i++) {
		struct envelope e = { .qid = 1000 + (uint64_t)i,
		    .arrival_us = 1, .nrcpt = 1, .sender = "a@example.com",
		    .client_addr = "127.0.0.1", .helo = "x",
		    .protocol = "ESMTP", .rcpt = rcpt };
		size_t el = envelope_encoded_len(&e);
		struct commit_job *j = calloc(1, sizeof(*j) + el);

		CHECK_FATAL(j != NULL);
		envelope_encode(&e, j->head);
		j->put.qid = e.qid;
		j->put.seg = 1;
		j->seg_fd = sfd;
		j->put.env = j->head;
		j->put.env_len = (uint32_t)el;
		j->put.nrcpt = 1;
		j->put.msg_len = 10;
		j->put.rec_len = (uint32_t)(sizeof(struct seg_hdr) + el + 10);
		jobs[i] = j;
	}
	CHECK_FATAL(committer_start(&cm, qi, 1, &efd, NULL) == 0);
	deadline = time(NULL) + 20;
	for (iter = 0; reaped < NJOBS && time(NULL) < deadline; iter++) {
		struct pollfd p = { .fd = efd, .events = POLLIN };
		struct commit_job *j;
		int pushed = 0;

		while (next < NJOBS && committer_submit(cm, 0, jobs[next])) {
			next++;
			pushed++;
		}
		if (pushed)
			committer_wake(cm);
		if (poll(&p, 1, 0) == 1) {
			CHECK(read(efd, &v, sizeof(v)) == sizeof(v));
			while ((j = committer_reap(cm, 0)) != NULL) {
				CHECK(j->put.result == 0);
				reaped++;
			}
		}
	}
	printf("%d of %d jobs back after %d polls\n", reaped, NJOBS, iter);
	CHECK(reaped == NJOBS);
	if (reaped == NJOBS) {
		committer_stop(cm);
		CHECK(queue_index_count(qi, &count) == 0);
		CHECK(count == NJOBS);
		queue_index_close(qi);
	}
	close(sfd);
	for (i = 0; i < NJOBS; i++)
		free(jobs[i]);
	free(jobs);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	CHECK(system(cmd) == 0);
	return check_done();
}
