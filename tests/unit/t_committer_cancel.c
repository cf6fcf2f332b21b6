/*
 * Description: a message put and fully delivered within one index write
 * is never indexed. Its put and its mark record handed over in one batch
 * leave no msg/rcpt entry at any moment, the log positions of both
 * segments move past both records all the same, and the committer counts
 * it cancelled; a message of the same batch with one of its two
 * recipients delivered is indexed as usual, with that recipient
 * delivered. Recovery on the spool afterwards replays nothing (no
 * message, no mark) and finds only the second message.
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
static char spool[] = "/tmp/sluice-t-committer-cancel-XXXXXX";
static const char body[] = "Subject: c\r\n\r\nbody\r\n";

int
main(void)
{
	const uint64_t s1 = SEG_ID(0, 1), s2 = SEG_ID(0, 2);
	struct queue_recovery_report rep;
	struct committer_stats st;
	struct commit_job *jobs[4];
	struct queue_index *qi;
	struct committer *cm;
	struct queue_msg m;
	int efd = eventfd(0, EFD_CLOEXEC), f1, f2;
	uint64_t end1, end2;
	bool seen = false, done = false;
	char cmd[600];

	CHECK_FATAL(efd >= 0 && mkdtemp(spool) != NULL);
	CHECK_FATAL(queue_index_open(&qi, spool, 1ull << 26, 0) == 0);
	f1 = check_seg_open(spool, s1);
	f2 = check_seg_open(spool, s2);
	CHECK_FATAL(committer_start(&cm, qi, 1, &efd, spool) == 0);

	/* One batch: A and its mark (all delivered), B and a mark of one
	 * of its two recipients. */
	jobs[0] = check_put_job(0x201, s1, 0, f1, rcpts, 2, body,
	    sizeof(body) - 1);
	jobs[1] = check_put_job(0x202, s1, jobs[0]->put.rec_len, f1, rcpts, 2,
	    body, sizeof(body) - 1);
	end1 = jobs[1]->put.offset + jobs[1]->put.rec_len;
	jobs[2] = check_mark_job(0x201, 2, s2, 0, f2);
	jobs[3] = check_mark_job(0x202, 1, s2, jobs[2]->put.rec_len, f2);
	end2 = jobs[3]->put.offset + jobs[3]->put.rec_len;
	check_commit_run(cm, efd, jobs, 4);
	for (int i = 0; i < 4; i++)
		CHECK(jobs[i]->put.result == 0 && !jobs[i]->seg_failed);

	/* Until the index has B and both positions, A never shows. */
	for (time_t deadline = time(NULL) + 10; time(NULL) < deadline;) {
		seen |= check_indexed(qi, 0x201);
		if (check_indexed(qi, 0x202) && check_log_pos(qi, s1) == end1 &&
		    check_log_pos(qi, s2) == end2) {
			done = true;
			break;
		}
		usleep(2000);
	}
	CHECK(done);
	CHECK(!seen);
	CHECK(!check_indexed(qi, 0x201));
	committer_stats(cm, &st);
	CHECK(st.cancelled == 1);
	CHECK(st.messages == 1);
	CHECK(queue_index_get(qi, 0x202, &m) == 0);
	CHECK(m.meta.nrcpt == 2);
	if (m.meta.nrcpt == 2) {
		CHECK(m.rcpt[0].state == RCPT_DELIVERED);
		CHECK(m.rcpt[1].state == RCPT_PENDING);
	}
	queue_msg_release(&m);
	for (int i = 0; i < 4; i++) {
		check_job_free(jobs[i]);
	}
	committer_stop(cm);

	/* What a start would find: nothing to replay, B alone. */
	CHECK(queue_recover(qi, spool, &rep) == 0);
	CHECK(rep.replayed == 0);
	CHECK(rep.marks == 0);
	CHECK(rep.messages == 1);
	CHECK(!check_indexed(qi, 0x201) && check_indexed(qi, 0x202));

	queue_index_close(qi);
	close(f1);
	close(f2);
	close(efd);
	if (check_failures)
		return check_done();
	snprintf(cmd, sizeof(cmd), "rm -rf %s", spool);
	CHECK(system(cmd) == 0);
	return check_done();
}
