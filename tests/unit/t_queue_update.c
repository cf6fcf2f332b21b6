/*
 * Description: queue_index_write() applies delivery results and operator
 * commands: a message stays while a recipient is pending, goes (and is
 * reported with its segment) once every recipient is delivered or
 * bounced; updates of unknown ids are ignored; hold and release flip the
 * message state; delete removes whatever the recipients' states; a put
 * and updates in one call land together.
 */
#define QUEUE_INTERNAL
#include "check.h"
#include "../../queue/queue.h"
#include "queue_check.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint8_t envbuf[4][512];

static struct queue_put
mkput(int slot, uint64_t qid, uint64_t seg, const char **rcpt, uint16_t n)
{
	return check_index_put(envbuf[slot], sizeof(envbuf[slot]), qid, seg,
	    rcpt, n);
}

static struct queue_update
rcpt_upd(uint64_t qid, uint16_t idx, uint8_t state)
{
	return (struct queue_update){ .kind = QUEUE_UPD_RCPT, .qid = qid,
	    .idx = idx, .state = state, .attempts = 1, .last_code = 250 };
}

int
main(void)
{
	char spool[] = "/tmp/t_queue_update.XXXXXX";
	const char *two[] = { "a@x.test", "b@y.test" }, *one[] = { "c@x.test" };
	struct queue_index *qi;
	struct queue_put puts[3];
	struct queue_update ups[4];
	struct queue_removed rem[4];
	struct queue_msg m;
	size_t nrem;
	uint64_t n;

	CHECK_FATAL(mkdtemp(spool) != NULL);
	CHECK_FATAL(queue_index_open(&qi, spool, 64u << 20, 0) == 0);
	puts[0] = mkput(0, 100, 7, two, 2);
	puts[1] = mkput(1, 101, 8, one, 1);
	CHECK_FATAL(queue_index_write(qi, puts, 2, NULL, 0, NULL, 0, NULL, NULL) == 0);

	/* One of two recipients done: the message stays. */
	ups[0] = rcpt_upd(100, 0, RCPT_DELIVERED);
	CHECK(queue_index_write(qi, NULL, 0, ups, 1, NULL, 0, rem, &nrem) == 0);
	CHECK(nrem == 0);
	CHECK(queue_index_get(qi, 100, &m) == 0);
	CHECK(m.rcpt[0].state == RCPT_DELIVERED && m.rcpt[0].attempts == 1);
	CHECK(m.rcpt[1].state == RCPT_PENDING);
	queue_msg_release(&m);

	/* A deferral keeps it pending with its retry time. */
	ups[0] = rcpt_upd(100, 1, RCPT_PENDING);
	ups[0].next_try_us = 123456;
	ups[0].last_code = 451;
	CHECK(queue_index_write(qi, NULL, 0, ups, 1, NULL, 0, rem, &nrem) == 0);
	CHECK(nrem == 0);
	CHECK(queue_index_get(qi, 100, &m) == 0);
	CHECK(m.rcpt[1].next_try_us == 123456 && m.rcpt[1].last_code == 451);
	queue_msg_release(&m);

	/* The last one bounced, plus an unknown id and a bad index: gone. */
	ups[0] = rcpt_upd(100, 1, RCPT_BOUNCED);
	ups[1] = rcpt_upd(999, 0, RCPT_DELIVERED);
	ups[2] = rcpt_upd(101, 5, RCPT_DELIVERED);
	CHECK(queue_index_write(qi, NULL, 0, ups, 3, NULL, 0, rem, &nrem) == 0);
	CHECK(nrem == 1);
	CHECK(rem[0].qid == 100 && rem[0].seg == 7);
	CHECK(queue_index_get(qi, 100, &m) == QUEUE_ENOTFOUND);
	CHECK(queue_index_get(qi, 101, &m) == 0);
	queue_msg_release(&m);

	/* Hold and release. */
	ups[0] = (struct queue_update){ .kind = QUEUE_UPD_HOLD, .qid = 101 };
	CHECK(queue_index_write(qi, NULL, 0, ups, 1, NULL, 0, rem, &nrem) == 0);
	CHECK(queue_index_get(qi, 101, &m) == 0);
	CHECK(m.meta.state == MSG_HOLD);
	CHECK(strcmp(m.env.rcpt[0], "c@x.test") == 0);
	queue_msg_release(&m);
	ups[0].kind = QUEUE_UPD_RELEASE;
	CHECK(queue_index_write(qi, NULL, 0, ups, 1, NULL, 0, rem, &nrem) == 0);
	CHECK(queue_index_get(qi, 101, &m) == 0);
	CHECK(m.meta.state == MSG_QUEUED);
	queue_msg_release(&m);

	/* A put and a delete of another message in one transaction. */
	puts[2] = mkput(2, 102, 9, one, 1);
	ups[0] = (struct queue_update){ .kind = QUEUE_UPD_DELETE, .qid = 101 };
	CHECK(queue_index_write(qi, &puts[2], 1, ups, 1, NULL, 0, rem, &nrem) == 0);
	CHECK(nrem == 1 && rem[0].qid == 101 && rem[0].seg == 8);
	CHECK(queue_index_count(qi, &n) == 0 && n == 1);
	CHECK(queue_index_get(qi, 102, &m) == 0);
	queue_msg_release(&m);

	/* A failing put (duplicate id) takes the updates down with it. */
	ups[0] = rcpt_upd(102, 0, RCPT_DELIVERED);
	CHECK(queue_index_write(qi, &puts[2], 1, ups, 1, NULL, 0, rem, &nrem) ==
	    QUEUE_EINDEX);
	CHECK(nrem == 0);
	CHECK(queue_index_get(qi, 102, &m) == 0);
	CHECK(m.rcpt[0].state == RCPT_PENDING);
	queue_msg_release(&m);

	queue_index_close(qi);
	{
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", spool);
		CHECK(system(cmd) == 0);
	}
	return check_done();
}
