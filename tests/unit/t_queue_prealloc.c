/*
 * Description: a segment allocated whole ahead (shards fallocate each one
 * when they open it) ends its log at the first zero word: recovery after a
 * crash replays every record before the unwritten space, reports nothing
 * as never acknowledged, and cuts the space off (counted as reclaimed).
 * A torn record in front of the space is still reported and cut off.
 */
#define QUEUE_INTERNAL
#include "check.h"
#include "../../queue/queue.h"
#include "queue_check.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAP_SIZE (16u << 20)
#define ALLOC (1u << 20)

int
main(void)
{
	static struct check_rec r1 = { .qid = 0x201 }, r2 = { .qid = 0x202 },
	    r3 = { .qid = 0x203 }, r4 = { .qid = 0x204 };
	const uint64_t seg_a = SEG_ID(0, 1), seg_b = SEG_ID(1, 1);
	struct queue_recovery_report rep;
	struct queue_index *qi;
	struct queue_msg m;
	uint64_t off, end_a, end_b, n;
	char spool[64], err_text[2048], cmd[128];
	int fd;

	strcpy(spool, "/tmp/t_queue_prealloc.XXXXXX");
	CHECK_FATAL(mkdtemp(spool) != NULL);
	CHECK_FATAL(queue_index_open(&qi, spool, MAP_SIZE, 0) == 0);

	/* A: two whole records, then the rest of the allocation. */
	fd = check_seg_open(spool, seg_a);
	CHECK_FATAL(fallocate(fd, 0, 0, ALLOC) == 0 ||
	    ftruncate(fd, ALLOC) == 0);
	off = 0;
	check_append_record(fd, seg_a, &off, &r1, "Subject: one\r\n\r\n1\r\n");
	check_append_record(fd, seg_a, &off, &r2, "Subject: two\r\n\r\n2\r\n");
	end_a = off;
	close(fd);
	CHECK(check_seg_size(spool, seg_a) == ALLOC);

	/* B: a whole record, a torn one, then unwritten space. */
	fd = check_seg_open(spool, seg_b);
	CHECK_FATAL(ftruncate(fd, ALLOC) == 0);
	off = 0;
	check_append_record(fd, seg_b, &off, &r3, "Subject: three\r\n\r\n3\r\n");
	end_b = off;
	check_append_record(fd, seg_b, &off, &r4, "Subject: four\r\n\r\n4\r\n");
	{
		/* Its last 6 bytes never reached the disk. */
		static const uint8_t zero[6];

		CHECK_FATAL(pwrite(fd, zero, sizeof(zero),
		    (off_t)(off - sizeof(zero))) == (ssize_t)sizeof(zero));
	}
	close(fd);

	CHECK(check_recover(qi, spool, &rep, err_text, sizeof(err_text)) == 0);
	CHECK(rep.replayed == 3);
	CHECK(rep.messages == 3);
	CHECK(rep.unacknowledged == 1);
	CHECK(strstr(err_text, "never acknowledged") != NULL &&
	    strstr(err_text, "001-0000000001.seg") != NULL);
	CHECK(strstr(err_text, "000-0000000001.seg") == NULL);
	CHECK(rep.segments == 2 && rep.segments_removed == 0);
	CHECK(rep.bytes_reclaimed == (ALLOC - end_a) + (ALLOC - end_b));
	CHECK(check_seg_size(spool, seg_a) == (off_t)end_a);
	CHECK(check_seg_size(spool, seg_b) == (off_t)end_b);
	CHECK(queue_index_count(qi, &n) == 0 && n == 3);
	CHECK_FATAL(queue_index_get(qi, r2.qid, &m) == 0);
	CHECK(m.meta.seg == seg_a);
	queue_msg_release(&m);
	CHECK(queue_index_get(qi, r4.qid, &m) == QUEUE_ENOTFOUND);

	/* Again: nothing to do. */
	CHECK(check_recover(qi, spool, &rep, err_text, sizeof(err_text)) == 0);
	CHECK(rep.replayed == 0 && rep.unacknowledged == 0);
	CHECK(rep.bytes_reclaimed == 0 && err_text[0] == '\0');

	queue_index_close(qi);
	if (check_failures)
		return check_done();	/* keep the spool to look at */
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", spool);
	CHECK(system(cmd) == 0);
	return check_done();
}
