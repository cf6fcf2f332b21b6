/*
 * Description: queue ids strictly increase per generator whatever the clock
 * does (steady, stepped back, 65536+ ids in one millisecond, preset from
 * another shard's id), carry their shard, and format/parse round trip.
 */
#include "check.h"
#include "../../queue/queue.h"

#include <string.h>

#define MS(x) (QUEUE_ID_EPOCH_MS + (x))

static unsigned
id_shard(uint64_t id)
{
	return (unsigned)(id >> 16) & 63;
}

static uint64_t
id_ms(uint64_t id)
{
	return id >> 22;
}

static void
test_steady_and_backwards(void)
{
	struct queue_id_gen g = { .shard = 5 };
	uint64_t a, b, c, d;

	a = queue_id_next(&g, MS(1000));
	CHECK(a != 0);
	CHECK(id_ms(a) == 1000);
	CHECK(id_shard(a) == 5);
	CHECK((a & 0xffff) == 0);
	b = queue_id_next(&g, MS(1000));
	CHECK(b == a + 1);
	/* The clock steps back a full second: ids keep growing. */
	c = queue_id_next(&g, MS(0));
	CHECK(c > b);
	CHECK(id_ms(c) == 1000);
	d = queue_id_next(&g, MS(2000));
	CHECK(d > c);
	CHECK(id_ms(d) == 2000);
	CHECK((d & 0xffff) == 0);
	/* A clock before the epoch still yields ordered ids. */
	CHECK(queue_id_next(&g, 0) > d);
}

static void
test_sequence_overflow(void)
{
	struct queue_id_gen g = { .shard = 1 };
	uint64_t prev = 0, id = 0;

	for (unsigned i = 0; i < 65536 + 10; i++) {
		id = queue_id_next(&g, MS(7));
		CHECK_FATAL(id > prev);
		CHECK_FATAL(id_shard(id) == 1);
		prev = id;
	}
	/* The 65537th id borrowed the next millisecond. */
	CHECK(id_ms(id) == 8);
	CHECK((id & 0xffff) == 9);
	/* When the clock reaches the borrowed ms, it goes on from there. */
	id = queue_id_next(&g, MS(8));
	CHECK(id == prev + 1);
	id = queue_id_next(&g, MS(9));
	CHECK(id_ms(id) == 9);
}

static void
test_preset_from_other_shard(void)
{
	struct queue_id_gen hi = { .shard = 40 }, lo = { .shard = 3 };
	uint64_t top, id;

	top = queue_id_next(&hi, MS(500));
	/* A lower shard started from the index's max id must stay above. */
	lo.last = top;
	id = queue_id_next(&lo, MS(500));
	CHECK(id > top);
	CHECK(id_shard(id) == 3);
	CHECK(id_ms(id) == 501);
	/* A higher shard can reuse the millisecond. */
	hi.last = id;
	hi.shard = 60;
	top = queue_id_next(&hi, MS(400));
	CHECK(top > id);
	CHECK(id_ms(top) == 501);
	CHECK(id_shard(top) == 60);
}

static void
test_format_parse(void)
{
	static const uint64_t ids[] = { 0, 1, 0x0123456789abcdefULL,
	    UINT64_MAX, 0xfedcba9876543210ULL };
	static const char *bad[] = { "", "0123", "0123456789ABCDE",
	    "0123456789ABCDEF0", "0123456789ABCDEG", "0123456789ABCDE ",
	    " 123456789ABCDEF", "0x23456789ABCDEF", "-123456789ABCDEF" };
	char buf[QUEUE_ID_LEN + 1];
	uint64_t v = 0;

	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		queue_id_format(ids[i], buf);
		CHECK(strlen(buf) == QUEUE_ID_LEN);
		CHECK(queue_id_parse(buf, &v) == 0);
		CHECK(v == ids[i]);
	}
	queue_id_format(0x0123456789abcdefULL, buf);
	CHECK(strcmp(buf, "0123456789ABCDEF") == 0);
	CHECK(queue_id_parse("0123456789abcdef", &v) == 0);
	CHECK(v == 0x0123456789abcdefULL);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(queue_id_parse(bad[i], &v) < 0);
	/* Text order is numeric order. */
	{
		char a[QUEUE_ID_LEN + 1], b[QUEUE_ID_LEN + 1];

		queue_id_format(0x00000000000000ffULL, a);
		queue_id_format(0x0000000000000100ULL, b);
		CHECK(strcmp(a, b) < 0);
	}
}

int
main(void)
{
	test_steady_and_backwards();
	test_sequence_overflow();
	test_preset_from_other_shard();
	test_format_parse();
	return check_done();
}
