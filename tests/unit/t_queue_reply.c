/*
 * Description: the last reply text of each recipient ("reply" in the
 * index) and the --reason filter on it. A 4xx or 5xx update keeps its
 * text, a 2xx keeps none and hides an older one; queue_index_replies()
 * loads them; queue_filter's reason matches a substring without regard to
 * case, on any recipient whose last reply failed, and nothing when the
 * texts are not loaded; a message's texts leave the index with it (also
 * one a later delivery left behind), and another message's stay.
 */
#define QUEUE_INTERNAL
#include "check.h"
#include "../../queue/queue.h"
#include "../../queue/queue_filter.h"
#include "queue_check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint8_t envbuf[2][512];

static struct queue_put
mkput(int slot, uint64_t qid, const char **rcpt, uint16_t n)
{
	return check_index_put(envbuf[slot], sizeof(envbuf[slot]), qid, 3,
	    rcpt, n);
}

static struct queue_update
upd(uint64_t qid, uint16_t idx, uint8_t state, uint32_t code, const char *text)
{
	struct queue_update u = { .kind = QUEUE_UPD_RCPT, .qid = qid,
	    .idx = idx, .state = state, .attempts = 1, .last_code = code };

	snprintf(u.text, sizeof(u.text), "%s", text);
	return u;
}

static void
write1(struct queue_index *qi, struct queue_update u)
{
	CHECK(queue_index_write(qi, NULL, 0, &u, 1, NULL, 0, NULL, NULL) == 0);
}

static size_t
reply_entries(struct queue_index *qi)
{
	MDB_txn *txn;
	MDB_stat st;

	CHECK_FATAL(queue_txn_begin(qi, MDB_RDONLY, &txn) == 0);
	CHECK_FATAL(mdb_stat(txn, qi->reply, &st) == 0);
	mdb_txn_abort(txn);
	return st.ms_entries;
}

static bool
reason(struct queue_msg *m, const char *text)
{
	struct queue_filter f = { .reason = text };

	return queue_filter_match(&f, m);
}

int
main(void)
{
	char spool[] = "/tmp/t_queue_reply.XXXXXX", long_text[QUEUE_REPLY_MAX];
	const char *four[] = { "a@x.test", "b@y.test", "c@z.test", "e@w.test" };
	const char *one[] = { "d@x.test" };
	struct queue_filter f = { .reason = "x" };
	struct queue_index *qi;
	struct queue_put puts[2];
	struct queue_msg m;

	CHECK_FATAL(mkdtemp(spool) != NULL);
	CHECK_FATAL(queue_index_open(&qi, spool, 64u << 20, 0) == 0);
	puts[0] = mkput(0, 200, four, 4);
	puts[1] = mkput(1, 201, one, 1);
	CHECK_FATAL(queue_index_write(qi, puts, 2, NULL, 0, NULL, 0, NULL,
	    NULL) == 0);
	CHECK(!queue_filter_empty(&f));

	write1(qi, upd(200, 0, RCPT_PENDING, 451,
	    "451 4.7.1 <a@x.test>: Greylisted, see http://example/"));
	write1(qi, upd(200, 1, RCPT_BOUNCED, 550, "550 5.1.1 no such user"));
	write1(qi, upd(200, 2, RCPT_DELIVERED, 250, "250 2.0.0 ok queued"));
	memset(long_text, 'q', sizeof(long_text) - 1);
	long_text[sizeof(long_text) - 1] = '\0';
	write1(qi, upd(201, 0, RCPT_PENDING, 452, long_text));
	CHECK(reply_entries(qi) == 3);	/* the 2xx wrote none */

	CHECK_FATAL(queue_index_get(qi, 200, &m) == 0);
	CHECK(m.reply == NULL);
	CHECK(!reason(&m, "greylist"));		/* not loaded: no match */
	CHECK(queue_index_replies(qi, &m) == 0 && m.reply != NULL);
	CHECK(m.reply[0] != NULL && strcmp(m.reply[0],
	    "451 4.7.1 <a@x.test>: Greylisted, see http://example/") == 0);
	CHECK(m.reply[1] != NULL &&
	    strcmp(m.reply[1], "550 5.1.1 no such user") == 0);
	CHECK(m.reply[2] == NULL && m.reply[3] == NULL);
	CHECK(reason(&m, "greylist"));
	CHECK(reason(&m, "GREYLISTED, SEE"));
	CHECK(reason(&m, "no such user"));	/* bounced counts too */
	CHECK(!reason(&m, "ok queued"));	/* a 2xx is no reason */
	CHECK(!reason(&m, "mailbox full"));
	queue_msg_release(&m);

	CHECK_FATAL(queue_index_get(qi, 201, &m) == 0);
	CHECK(queue_index_replies(qi, &m) == 0);
	CHECK(m.reply[0] != NULL && strcmp(m.reply[0], long_text) == 0);
	queue_msg_release(&m);

	/* Delivered later: the old text stays behind but is not shown. */
	write1(qi, upd(200, 0, RCPT_DELIVERED, 250, ""));
	CHECK_FATAL(queue_index_get(qi, 200, &m) == 0);
	CHECK(queue_index_replies(qi, &m) == 0);
	CHECK(m.reply[0] == NULL && m.reply[1] != NULL);
	CHECK(!reason(&m, "greylist"));
	queue_msg_release(&m);
	CHECK(reply_entries(qi) == 3);

	/* Every recipient final: the message and its texts go, 201's stay. */
	{
		struct queue_update u = { .kind = QUEUE_UPD_DELETE, .qid = 200 };

		write1(qi, u);
	}
	CHECK(queue_index_get(qi, 200, &m) == QUEUE_ENOTFOUND);
	CHECK(reply_entries(qi) == 1);
	CHECK_FATAL(queue_index_get(qi, 201, &m) == 0);
	CHECK(queue_index_replies(qi, &m) == 0 && m.reply[0] != NULL);
	queue_msg_release(&m);
	write1(qi, upd(201, 0, RCPT_BOUNCED, 550, "550 gone"));
	CHECK(queue_index_get(qi, 201, &m) == QUEUE_ENOTFOUND);
	CHECK(reply_entries(qi) == 0);

	/* Deferred, then delivered at its second attempt: the message goes
	 * on its own (every recipient delivered), and its old text too. */
	{
		struct queue_update u;

		CHECK_FATAL(queue_index_write(qi, &puts[1], 1, NULL, 0, NULL,
		    0, NULL, NULL) == 0);
		write1(qi, upd(201, 0, RCPT_PENDING, 451, "451 greylisted"));
		CHECK(reply_entries(qi) == 1);
		u = upd(201, 0, RCPT_DELIVERED, 250, "");
		u.attempts = 2;
		write1(qi, u);
		CHECK(queue_index_get(qi, 201, &m) == QUEUE_ENOTFOUND);
		CHECK(reply_entries(qi) == 0);
	}

	queue_index_close(qi);
	{
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", spool);
		CHECK(system(cmd) == 0);
	}
	return check_done();
}
