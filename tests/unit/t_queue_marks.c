/*
 * Description: mark records (delivered recipients journaled in the
 * segments) and their replay. A record seg_mark_encode() makes passes
 * seg_mark_check() only at its own place (segment and offset), whole and
 * unchanged; only delivered recipients go in. After a crash recovery
 * applies the replayed marks after every replayed message: a message
 * whose recipients a mark completes counts as delivered (removed), also
 * when the mark is in another segment than its put (both directions, so
 * the order segments are read in does not matter); a mark for a message
 * not indexed changes nothing; a torn or damaged mark record ends its
 * segment's log like a torn message record (what follows is not
 * replayed); a message that a mark removed before the crash is never
 * indexed again; and a second recovery changes nothing. A version 2
 * index is replayed and becomes version 3.
 */
#define QUEUE_INTERNAL
#include "check.h"
#include "../../queue/queue.h"
#include "queue_check.h"

#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define MAP_SIZE (64u << 20)

static char spool[64];
/* Append a message record (two recipients) at *off; fill r->put. */
static void
append_msg(int fd, uint64_t seg, uint64_t *off, struct check_rec *r)
{
	check_append_record(fd, seg, off, r, "Subject: m\r\n\r\nbody\r\n");
}

static struct queue_update
delivered(uint64_t qid, uint16_t idx)
{
	return (struct queue_update){ .kind = QUEUE_UPD_RCPT, .qid = qid,
	    .idx = idx, .state = RCPT_DELIVERED, .attempts = 1,
	    .last_code = 250 };
}

/* Append the mark record of ups[0..n) at *off; returns its length. */
static uint64_t
append_marks(int fd, uint64_t seg, uint64_t *off,
    const struct queue_update *ups, uint32_t n)
{
	uint8_t buf[1024];
	uint64_t len = seg_mark_len(seg_mark_count(ups, n));

	CHECK_FATAL(len <= sizeof(buf));
	CHECK_FATAL(seg_mark_encode(buf, seg, *off, ups, n) == len);
	CHECK_FATAL(pwrite(fd, buf, len, (off_t)*off) == (ssize_t)len);
	*off += len;
	return len;
}

/* The state of recipient idx of qid, or -1 when qid is not indexed. */
static int
rcpt_state(struct queue_index *qi, uint64_t qid, unsigned idx)
{
	struct queue_msg m;
	int st;

	if (queue_index_get(qi, qid, &m) != 0)
		return -1;
	st = idx < m.meta.nrcpt ? m.rcpt[idx].state : -2;
	queue_msg_release(&m);
	return st;
}

/* XXH3-64 of header bytes 0..24 and the marks, seeded with the offset. */
static uint64_t
doc_checksum(const uint8_t *rec, size_t len, uint64_t off)
{
	uint8_t tmp[256];

	CHECK_FATAL(len <= sizeof(tmp) && len >= 32);
	memcpy(tmp, rec, 24);
	memcpy(tmp + 24, rec + 32, len - 32);
	return XXH3_64bits_withSeed(tmp, len - 8, off);
}

/* The record format on its own. */
static void
test_format(void)
{
	struct queue_update ups[4] = {
		delivered(0x11, 0),
		{ .kind = QUEUE_UPD_RCPT, .qid = 0x11, .idx = 1,
		  .state = RCPT_BOUNCED, .last_code = 550 },
		{ .kind = QUEUE_UPD_RCPT, .qid = 0x12, .idx = 0,
		  .state = RCPT_PENDING, .last_code = 451, .next_try_us = 9 },
		delivered(0x12, 1),
	};
	const uint64_t seg = SEG_ID(3, 7), off = 4096;
	uint8_t buf[256], bad[256];
	struct seg_mark m;
	struct queue_update u;
	size_t len;

	printf("RUN format\n");
	/* Bounces, deferrals, operator commands: not journaled. */
	CHECK(seg_mark_count(ups, 4) == 2);
	CHECK(seg_mark_count(ups + 1, 2) == 0);
	len = (size_t)seg_mark_len(2);
	CHECK(len == 32 + 2 * 16);
	CHECK(seg_mark_encode(buf, seg, off, ups, 4) == len);
	CHECK(seg_mark_check(buf, len, seg, off) == NULL);
	memcpy(&m, buf + 32 + 16, sizeof(m));
	seg_mark_update(&m, &u);
	CHECK(u.kind == QUEUE_UPD_RCPT && u.qid == 0x12 && u.idx == 1);
	CHECK(u.state == RCPT_DELIVERED && u.last_code == 250);
	CHECK(u.attempts == 1 && u.next_try_us == 0);
	/* Only at its own place, only whole. */
	CHECK(strcmp(seg_mark_check(buf, len, seg, off + 1),
	    "checksum mismatch") == 0);
	CHECK(strcmp(seg_mark_check(buf, len, SEG_ID(3, 8), off),
	    "bad mark header") == 0);
	CHECK(strcmp(seg_mark_check(buf, len - 1, seg, off),
	    "bad mark lengths") == 0);
	CHECK(strcmp(seg_mark_check(buf, 20, seg, off),
	    "record cut short") == 0);
	for (size_t i = 0; i < len; i++) {
		memcpy(bad, buf, len);
		bad[i] ^= 0x40;
		CHECK(seg_mark_check(bad, len, seg, off) != NULL);
	}
	/*
	 * The checksum as queue.h documents it; with it a mark no writer
	 * makes (bounced) is still refused.
	 */
	{
		struct queue_update one = delivered(0x13, 0);
		uint64_t sum;

		len = (size_t)seg_mark_len(1);
		CHECK(seg_mark_encode(bad, seg, off, &one, 1) == len);
		CHECK(doc_checksum(bad, len, off) == *(uint64_t *)(bad + 24));
		bad[32 + 14] = RCPT_BOUNCED;
		sum = doc_checksum(bad, len, off);
		memcpy(bad + 24, &sum, sizeof(sum));
		CHECK(strcmp(seg_mark_check(bad, len, seg, off),
		    "mark damaged") == 0);
	}
	printf("PASS format\n");
}

int
main(void)
{
	static struct check_rec p1 = { .qid = 0x101 }, p2 = { .qid = 0x102 },
	    p3 = { .qid = 0x103 }, p4 = { .qid = 0x104 }, p5 = { .qid = 0x105 },
	    p6 = { .qid = 0x106 }, p7 = { .qid = 0x107 }, p8 = { .qid = 0x108 };
	const uint64_t seg_a = SEG_ID(0, 1), seg_b = SEG_ID(1, 1),
	    seg_c = SEG_ID(0, 2), seg_d = SEG_ID(1, 2), seg_e = SEG_ID(0, 3),
	    seg_f = SEG_ID(0, 4), seg_g = SEG_ID(1, 4);
	struct queue_recovery_report rep;
	struct queue_index *qi;
	struct queue_update u[4];
	char err_text[2048], cmd[200];
	uint64_t off, off_b, n, end_e, mark_e, end_a;
	int fd, fb;

	test_format();
	printf("RUN replay\n");
	strcpy(spool, "/tmp/t_queue_marks.XXXXXX");
	CHECK_FATAL(mkdtemp(spool) != NULL);
	CHECK_FATAL(queue_index_open(&qi, spool, MAP_SIZE, 0) == 0);

	/*
	 * A: p1 indexed before the crash, then a mark record delivering
	 * both its recipients that the index never got.
	 */
	fd = check_seg_open(spool, seg_a);
	off = 0;
	append_msg(fd, seg_a, &off, &p1);
	CHECK_FATAL(queue_index_write(qi, &p1.put, 1, NULL, 0, NULL, 0, NULL,
	    NULL) == 0);
	u[0] = delivered(p1.qid, 0);
	u[1] = delivered(p1.qid, 1);
	append_marks(fd, seg_a, &off, u, 2);
	end_a = off;
	close(fd);
	/*
	 * B (shard 1) and C (shard 0), nothing of them indexed: each holds
	 * a put and a mark for the other's put. p3 (in C) is delivered
	 * whole by B's mark; p2 (in B) has one recipient delivered by C's.
	 */
	fb = check_seg_open(spool, seg_b);
	off_b = 0;
	append_msg(fb, seg_b, &off_b, &p2);
	fd = check_seg_open(spool, seg_c);
	off = 0;
	append_msg(fd, seg_c, &off, &p3);
	u[0] = delivered(p2.qid, 1);
	append_marks(fd, seg_c, &off, u, 1);
	close(fd);
	u[0] = delivered(p3.qid, 0);
	u[1] = delivered(p3.qid, 1);
	u[2] = delivered(0x999, 0);	/* a message nobody has */
	append_marks(fb, seg_b, &off_b, u, 3);
	close(fb);
	/*
	 * D: p4, then a mark record for it with one byte flipped, then p5,
	 * whole: the damaged mark ends the log, so p5 (never acknowledged:
	 * a sync covers all before it) is not replayed, nor is the mark.
	 */
	fd = check_seg_open(spool, seg_d);
	off = 0;
	append_msg(fd, seg_d, &off, &p4);
	{
		uint64_t at = off, len;
		uint8_t b;

		u[0] = delivered(p4.qid, 0);
		u[1] = delivered(p4.qid, 1);
		len = append_marks(fd, seg_d, &off, u, 2);
		CHECK_FATAL(pread(fd, &b, 1, (off_t)(at + len - 3)) == 1);
		b ^= 1;
		CHECK_FATAL(pwrite(fd, &b, 1, (off_t)(at + len - 3)) == 1);
		append_msg(fd, seg_d, &off, &p5);
		snprintf(cmd, sizeof(cmd), "segment 001-0000000002.seg: %llu "
		    "byte(s) at %llu never acknowledged (checksum mismatch): "
		    "cut off\n", (unsigned long long)(off - at),
		    (unsigned long long)at);
	}
	close(fd);
	/*
	 * E: p6, then a mark record for it cut short (the crash came during
	 * its write): p6 stays with both recipients pending.
	 */
	fd = check_seg_open(spool, seg_e);
	off = 0;
	append_msg(fd, seg_e, &off, &p6);
	end_e = off;
	u[0] = delivered(p6.qid, 0);
	mark_e = append_marks(fd, seg_e, &off, u, 1);
	CHECK_FATAL(ftruncate(fd, (off_t)(off - 1)) == 0);
	close(fd);
	/*
	 * F: p7 indexed and then delivered and removed through the index
	 * (the mark's position moved too), before the crash: never again.
	 * G: p8, whose put is indexed, and a mark for it the index got, but
	 * whose segment's position stayed behind the mark: replaying the
	 * mark again changes nothing.
	 */
	fd = check_seg_open(spool, seg_f);
	off = 0;
	append_msg(fd, seg_f, &off, &p7);
	append_msg(fd, seg_f, &off, &p8);
	u[0] = delivered(p7.qid, 0);
	u[1] = delivered(p7.qid, 1);
	append_marks(fd, seg_f, &off, u, 2);
	CHECK_FATAL(queue_index_write(qi, (struct queue_put[]){ p7.put,
	    p8.put }, 2, u, 2, &(struct queue_logpos){ seg_f, off }, 1, NULL,
	    NULL) == 0);
	close(fd);
	fd = check_seg_open(spool, seg_g);
	off = 0;
	u[0] = delivered(p8.qid, 0);
	append_marks(fd, seg_g, &off, u, 1);
	CHECK_FATAL(queue_index_write(qi, NULL, 0, u, 1, NULL, 0, NULL,
	    NULL) == 0);
	close(fd);
	CHECK(rcpt_state(qi, p7.qid, 0) == -1);
	CHECK(rcpt_state(qi, p8.qid, 0) == RCPT_DELIVERED);
	CHECK(check_log_pos(qi, seg_g) == 0);

	/* The index as a version 2 sluiced left it: migrated too. */
	queue_index_close(qi);
	check_index_version(spool, true, 2);
	CHECK_FATAL(queue_index_open(&qi, spool, MAP_SIZE, 0) == 0);

	CHECK(check_recover(qi, spool, &rep, err_text, sizeof(err_text)) == 0);
	printf("%s", err_text);
	CHECK(rep.replayed == 4);	/* p2, p3, p4, p6 (p5: after the cut) */
	/* A: 2, B: 3, C: 1, G: 1; D's and E's are not whole. */
	CHECK(rep.marks == 7);
	CHECK(rep.marks_done == 2);	/* p1, p3 */
	CHECK(rep.messages == 4);	/* p2, p4, p6, p8 */
	CHECK(rep.unacknowledged == 2);
	CHECK(strstr(err_text, cmd) != NULL);
	snprintf(cmd, sizeof(cmd), "segment 000-0000000003.seg: %llu byte(s) "
	    "at %llu never acknowledged (record cut short): cut off\n",
	    (unsigned long long)(mark_e - 1), (unsigned long long)end_e);
	CHECK(strstr(err_text, cmd) != NULL);
	CHECK(queue_index_count(qi, &n) == 0 && n == 4);
	CHECK(rcpt_state(qi, p1.qid, 0) == -1);
	CHECK(rcpt_state(qi, p3.qid, 0) == -1);
	CHECK(rcpt_state(qi, p2.qid, 0) == RCPT_PENDING);
	CHECK(rcpt_state(qi, p2.qid, 1) == RCPT_DELIVERED);
	CHECK(rcpt_state(qi, p4.qid, 0) == RCPT_PENDING);
	CHECK(rcpt_state(qi, p4.qid, 1) == RCPT_PENDING);
	CHECK(rcpt_state(qi, p5.qid, 0) == -1);
	CHECK(rcpt_state(qi, p6.qid, 0) == RCPT_PENDING);
	CHECK(rcpt_state(qi, p7.qid, 0) == -1);
	CHECK(rcpt_state(qi, p8.qid, 0) == RCPT_DELIVERED);
	CHECK(rcpt_state(qi, p8.qid, 1) == RCPT_PENDING);
	/* Segments with nothing live go, the others keep their live part. */
	CHECK(check_seg_size(spool, seg_a) == -1);
	CHECK(check_seg_size(spool, seg_c) == -1);
	CHECK(check_seg_size(spool, seg_g) == -1);
	CHECK(check_seg_size(spool, seg_b) == (off_t)p2.put.rec_len);
	CHECK(check_seg_size(spool, seg_d) == (off_t)p4.put.rec_len);
	CHECK(check_seg_size(spool, seg_e) == (off_t)end_e);
	CHECK(check_seg_size(spool, seg_f) == (off_t)(p8.put.offset + p8.put.rec_len));
	CHECK(check_log_pos(qi, seg_b) == QUEUE_LOG_SEALED);
	(void)end_a;

	/* Again: nothing left to do. */
	CHECK(check_recover(qi, spool, &rep, err_text, sizeof(err_text)) == 0);
	CHECK(rep.replayed == 0 && rep.marks == 0 && rep.messages == 4);
	CHECK(rep.unacknowledged == 0 && err_text[0] == '\0');
	queue_index_close(qi);
	CHECK(check_index_version(spool, false, 0) == QUEUE_INDEX_VERSION);
	CHECK(QUEUE_INDEX_VERSION == 3);
	printf("PASS replay\n");

	if (check_failures)
		return check_done();	/* keep the spool to look at */
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", spool);
	CHECK(system(cmd) == 0);
	return check_done();
}
