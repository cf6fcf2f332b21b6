/*
 * Description: parked recipients (delivery's overflow) wait in the index:
 * QUEUE_UPD_PARK stores a pending recipient of a queued message for a
 * shard and a due time, and ignores the others; queue_index_unpark()
 * takes a shard's entries out earliest first, up to a count and a
 * horizon, grouped by message with a pending map, and says whether more
 * are left; a re-park moves an entry; hold and delete unpark a message;
 * unpark by qid takes one message's entries whatever their shard; "due
 * now" rewrites every due time to 0; an entry whose message went is
 * dropped; clear forgets them all.
 */
#define QUEUE_INTERNAL
#include "check.h"
#include "../../queue/queue.h"
#include "queue_check.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint8_t envbuf[8][512];

static struct queue_put
mkput(int slot, uint64_t qid, const char **rcpt, uint16_t n)
{
	return check_index_put(envbuf[slot], sizeof(envbuf[slot]), qid, 1,
	    rcpt, n);
}

static struct queue_update
park(uint64_t qid, uint16_t idx, unsigned shard, uint64_t due)
{
	return (struct queue_update){ .kind = QUEUE_UPD_PARK, .qid = qid,
	    .idx = idx, .state = (uint8_t)shard, .next_try_us = due };
}

static void
write_ups(struct queue_index *qi, struct queue_update *u, size_t n)
{
	struct queue_removed rem[16];
	size_t nrem;

	CHECK_FATAL(n <= 16);
	CHECK_FATAL(queue_index_write(qi, NULL, 0, u, n, NULL, 0, rem,
	    &nrem) == 0);
}

/* What the callback saw, in order. */
static struct seen {
	uint64_t qid;
	uint64_t next_try_us;
	char pending[8];	/* "10" for recipient 0 pending, 1 not */
} seen[16];
static size_t nseen;

static void
got(void *arg, const struct queue_msg *m, const bool *pending,
    uint64_t next_try_us)
{
	(void)arg;
	CHECK_FATAL(nseen < 16);
	seen[nseen].qid = m->qid;
	seen[nseen].next_try_us = next_try_us;
	for (uint32_t i = 0; i < m->meta.nrcpt && i < 7; i++)
		seen[nseen].pending[i] = pending[i] ? '1' : '0';
	seen[nseen].pending[m->meta.nrcpt < 7 ? m->meta.nrcpt : 7] = '\0';
	nseen++;
}

int
main(void)
{
	char spool[] = "/tmp/t_queue_park.XXXXXX";
	const char *three[] = { "a@x.test", "b@y.test", "c@x.test" };
	const char *one[] = { "d@x.test" };
	struct queue_index *qi;
	struct queue_put puts[4];
	struct queue_update u[8];
	uint64_t n;
	bool left;
	int rc;

	CHECK_FATAL(mkdtemp(spool) != NULL);
	CHECK_FATAL(queue_index_open(&qi, spool, 64u << 20, 0) == 0);
	puts[0] = mkput(0, 100, three, 3);
	puts[1] = mkput(1, 101, one, 1);
	puts[2] = mkput(2, 102, one, 1);
	puts[3] = mkput(3, 103, one, 1);
	CHECK_FATAL(queue_index_write(qi, puts, 4, NULL, 0, NULL, 0, NULL,
	    NULL) == 0);

	/* 100: recipients 0 and 2 on shard 1 (due 50 and 20), 1 on shard 0;
	 * 101 on shard 1 due 30; 102 on shard 1 due 900; 103 held first. */
	u[0] = (struct queue_update){ .kind = QUEUE_UPD_HOLD, .qid = 103 };
	u[1] = park(100, 0, 1, 50);
	u[2] = park(100, 2, 1, 20);
	u[3] = park(100, 1, 0, 10);
	u[4] = park(101, 0, 1, 30);
	u[5] = park(102, 0, 1, 900);
	u[6] = park(103, 0, 1, 5);	/* held: ignored */
	u[7] = park(999, 0, 1, 5);	/* not indexed: ignored */
	write_ups(qi, u, 8);
	CHECK(queue_index_parked(qi, 1, &n) == 0 && n == 4);
	CHECK(queue_index_parked(qi, 0, &n) == 0 && n == 1);
	CHECK(queue_index_parked(qi, 64, &n) == 0 && n == 5);

	/* Up to 2 of shard 1: the two earliest (100/2 at 20, 101 at 30). */
	nseen = 0;
	rc = queue_index_unpark(qi, 1, 2, UINT64_MAX, got, NULL, &left);
	CHECK(rc == 2);
	CHECK(left);
	CHECK(nseen == 2);
	CHECK(seen[0].qid == 100 && strcmp(seen[0].pending, "001") == 0 &&
	    seen[0].next_try_us == 20);
	CHECK(seen[1].qid == 101 && strcmp(seen[1].pending, "1") == 0);

	/* Horizon 100: 100/0 (50) comes, 102 (900) stays and is "left". */
	nseen = 0;
	rc = queue_index_unpark(qi, 1, 10, 100, got, NULL, &left);
	CHECK(rc == 1 && left && nseen == 1);
	CHECK(seen[0].qid == 100 && strcmp(seen[0].pending, "100") == 0);

	/* Re-park 100/0 later (a deferral), then hold 100: both of its
	 * entries (shard 0 and 1) go. */
	u[0] = park(100, 0, 1, 70);
	write_ups(qi, u, 1);
	CHECK(queue_index_parked(qi, 1, &n) == 0 && n == 2);
	u[0] = park(100, 0, 1, 80);	/* moves, does not add */
	write_ups(qi, u, 1);
	CHECK(queue_index_parked(qi, 1, &n) == 0 && n == 2);
	u[0] = (struct queue_update){ .kind = QUEUE_UPD_HOLD, .qid = 100 };
	write_ups(qi, u, 1);
	CHECK(queue_index_parked(qi, 1, &n) == 0 && n == 1);
	CHECK(queue_index_parked(qi, 0, &n) == 0 && n == 0);

	/* Due now: 102 (900) becomes 0 and comes within horizon 100. */
	CHECK(queue_index_park_due_now(qi) == 0);
	nseen = 0;
	rc = queue_index_unpark(qi, 1, 10, 100, got, NULL, &left);
	CHECK(rc == 1 && !left && nseen == 1 && seen[0].qid == 102 &&
	    seen[0].next_try_us == 0);

	/* By qid, whatever the shard; a stale entry (message deleted
	 * behind the park's back is not possible, but a recipient made
	 * final is) gives nothing. */
	u[0] = (struct queue_update){ .kind = QUEUE_UPD_RELEASE, .qid = 100 };
	u[1] = park(100, 0, 3, 7);
	u[2] = park(100, 1, 4, 8);
	u[3] = park(101, 0, 2, 9);
	write_ups(qi, u, 4);
	nseen = 0;
	rc = queue_index_unpark_qid(qi, 100, got, NULL);
	CHECK(rc == 2 && nseen == 1 && strcmp(seen[0].pending, "110") == 0 &&
	    seen[0].next_try_us == 7);
	u[0] = (struct queue_update){ .kind = QUEUE_UPD_RCPT, .qid = 101,
	    .idx = 0, .state = RCPT_DELIVERED };
	write_ups(qi, u, 1);		/* 101 leaves the index */
	nseen = 0;
	rc = queue_index_unpark(qi, 2, 10, UINT64_MAX, got, NULL, &left);
	CHECK(rc == 1 && nseen == 0 && !left);

	/* Delete unparks; clear forgets everything. */
	u[0] = park(102, 0, 1, 1);
	write_ups(qi, u, 1);
	u[0] = (struct queue_update){ .kind = QUEUE_UPD_DELETE, .qid = 102 };
	write_ups(qi, u, 1);
	CHECK(queue_index_parked(qi, 64, &n) == 0 && n == 0);
	u[0] = park(100, 2, 1, 1);
	write_ups(qi, u, 1);
	CHECK(queue_index_parked(qi, 64, &n) == 0 && n == 1);
	CHECK(queue_index_park_clear(qi) == 0);
	CHECK(queue_index_parked(qi, 64, &n) == 0 && n == 0);

	queue_index_close(qi);
	{
		char cmd[300];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", spool);
		CHECK(system(cmd) == 0);
	}
	return check_done();
}
