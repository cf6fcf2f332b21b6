/*
 * Description: start-up recovery replays each segment's log from its
 * position: the whole records there are indexed (they may have been
 * acknowledged before the crash), a DSN ("local") is not, and a torn
 * record ends the log, is reported as never acknowledged and cut off. It
 * quarantines and reports an indexed record with a flipped byte and one
 * whose segment is gone (keeping envelope, recipients and raw bytes),
 * deletes segments with no indexed record (a sealed log is not replayed),
 * leaves foreign files alone, reports the highest segment sequence per
 * shard, seals every kept segment's log, and changes nothing when run
 * again. A version 1 index (no log) is not replayed and becomes the
 * current version.
 */
#define QUEUE_INTERNAL
#include "check.h"
#include "../../queue/queue.h"
#include "queue_check.h"

#include <stdbool.h>

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAP_SIZE (64u << 20)

static char spool[64];

static void
touch(const char *name)
{
	char path[128];
	int fd;

	snprintf(path, sizeof(path), "%s/seg/%s", spool, name);
	fd = open(path, O_WRONLY | O_CREAT, 0600);
	CHECK_FATAL(fd >= 0);
	CHECK_FATAL(write(fd, "x", 1) == 1);
	close(fd);
}

static int
exists(const char *name)
{
	char path[128];

	snprintf(path, sizeof(path), "%s/seg/%s", spool, name);
	return access(path, F_OK) == 0;
}

/* Check the quarantine value of qid against its layout in queue.h. */
static void
check_quarantine_value(uint64_t qid, const char *reason, uint32_t raw_want,
    const uint8_t *raw)
{
	char path[128];
	uint8_t kb[8];
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k = { 8, kb }, v;
	struct msg_meta mm;
	uint32_t rlen, raw_len;
	const uint8_t *p;

	for (int i = 0; i < 8; i++)
		kb[i] = (uint8_t)(qid >> (56 - 8 * i));
	snprintf(path, sizeof(path), "%s/index", spool);
	CHECK_FATAL(mdb_env_create(&env) == 0);
	CHECK_FATAL(mdb_env_set_maxdbs(env, 8) == 0);
	CHECK_FATAL(mdb_env_open(env, path, MDB_RDONLY, 0600) == 0);
	CHECK_FATAL(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) == 0);
	CHECK_FATAL(mdb_dbi_open(txn, "quarantine", 0, &dbi) == 0);
	CHECK_FATAL(mdb_get(txn, dbi, &k, &v) == 0);
	p = v.mv_data;
	memcpy(&mm, p, sizeof(mm));
	CHECK(mm.nrcpt == 2);
	p += sizeof(mm) + mm.env_len + mm.nrcpt * sizeof(struct rcpt_meta);
	memcpy(&rlen, p, 4);
	CHECK(rlen == strlen(reason));
	CHECK(memcmp(p + 4, reason, rlen) == 0);
	p += 4 + rlen;
	memcpy(&raw_len, p, 4);
	CHECK(raw_len == raw_want);
	if (raw != NULL && raw_len == raw_want)
		CHECK(memcmp(p + 4, raw, raw_len) == 0);
	CHECK(p + 4 + raw_len == (const uint8_t *)v.mv_data + v.mv_size);
	mdb_txn_abort(txn);
	mdb_env_close(env);
}

int
main(void)
{
	static struct check_rec r1 = { .qid = 0x101 }, r2 = { .qid = 0x102 },
	    r3 = { .qid = 0x103 }, r4 = { .qid = 0x104 }, junk = { .qid = 0x1 },
	    r5 = { .qid = 0x105 }, r6 = { .qid = 0x106 }, r7 = { .qid = 0x107 },
	    r8 = { .qid = 0x108 }, dsn = { .qid = 0x1d5 };
	struct queue_put puts[4];
	struct queue_recovery_report rep;
	struct queue_index *qi;
	struct queue_msg m;
	const uint64_t seg_a = SEG_ID(0, 1), seg_b = SEG_ID(0, 2),
	    seg_c = SEG_ID(1, 3), seg_d = SEG_ID(1, 5), seg_gone = SEG_ID(1, 7),
	    seg_e = SEG_ID(0, 9), seg_f = SEG_ID(0, 11);
	uint64_t off, n, end_a, end_d, end_e, max, torn;
	uint8_t flipped[1024], *msg;
	char err_text[2048], cmd[160];
	size_t len;
	int fd;

	strcpy(spool, "/tmp/t_queue_recover.XXXXXX");
	CHECK_FATAL(mkdtemp(spool) != NULL);
	CHECK_FATAL(queue_index_open(&qi, spool, MAP_SIZE, 0) == 0);

	/* A: r1 indexed, then a torn (partial, unindexed) record. */
	fd = check_seg_open(spool, seg_a);
	off = 0;
	check_append_record(fd, seg_a, &off, &r1, "Subject: one\r\n\r\nhi\r\n");
	end_a = off;
	check_append_record(fd, seg_a, &off, &junk, "Subject: torn\r\n\r\nlost\r\n");
	torn = off - end_a - 7;
	CHECK_FATAL(ftruncate(fd, (off_t)(end_a + torn)) == 0);
	close(fd);
	/* B: r2 indexed, then one byte of its message flipped at rest. */
	fd = check_seg_open(spool, seg_b);
	off = 64;	/* records need not start at 0 */
	check_append_record(fd, seg_b, &off, &r2, "Subject: two\r\n\r\nbody\r\n");
	CHECK_FATAL(pread(fd, flipped, r2.put.rec_len,
	    (off_t)r2.put.offset) == r2.put.rec_len);
	flipped[r2.put.rec_len - 3] ^= 0x20;
	CHECK_FATAL(pwrite(fd, flipped, r2.put.rec_len,
	    (off_t)r2.put.offset) == r2.put.rec_len);
	close(fd);
	/* C: a whole record nothing indexes. */
	fd = check_seg_open(spool, seg_c);
	off = 0;
	check_append_record(fd, seg_c, &off, &junk, "Subject: junk\r\n\r\n");
	close(fd);
	/* D: r3 indexed; r4 points at a segment that does not exist. */
	fd = check_seg_open(spool, seg_d);
	off = 0;
	check_append_record(fd, seg_d, &off, &r3, "Subject: three\r\n\r\n3\r\n");
	end_d = off;
	check_append_record(fd, seg_gone, &off, &r4, "Subject: four\r\n\r\n");
	CHECK_FATAL(ftruncate(fd, (off_t)end_d) == 0);
	close(fd);
	touch("notes.txt");
	touch("1-1.seg");

	puts[0] = r1.put;
	puts[1] = r2.put;
	puts[2] = r3.put;
	puts[3] = r4.put;
	/* C's record was dealt with (delivered) and its log sealed. */
	CHECK_FATAL(queue_index_write(qi, puts, 4, NULL, 0,
	    &(struct queue_logpos){ seg_c, QUEUE_LOG_SEALED }, 1, NULL,
	    NULL) == 0);
	CHECK(queue_index_count(qi, &n) == 0 && n == 4);
	CHECK(check_log_pos(qi, seg_a) == end_a && check_log_pos(qi, seg_d) == end_d);

	CHECK(check_recover(qi, spool, &rep, err_text, sizeof(err_text)) == 0);
	CHECK(rep.messages == 2);
	CHECK(rep.replayed == 0);
	CHECK(rep.quarantined == 2);
	CHECK(rep.unacknowledged == 1);
	CHECK(rep.segments == 2);
	CHECK(rep.segments_removed == 2);
	CHECK(rep.bytes_reclaimed == torn);
	snprintf(cmd, sizeof(cmd), "sluiced: queue: segment 000-0000000001.seg"
	    ": %llu byte(s) at %llu never acknowledged (record cut short): "
	    "cut off\n", (unsigned long long)torn, (unsigned long long)end_a);
	CHECK(strstr(err_text, cmd) != NULL);
	CHECK(check_log_pos(qi, seg_a) == QUEUE_LOG_SEALED);
	CHECK(check_log_pos(qi, seg_c) == 0 && check_log_pos(qi, seg_gone) == 0);
	CHECK(rep.max_seq[0] == 2);
	CHECK(rep.max_seq[1] == 5);
	CHECK(rep.max_seq[2] == 0);
	CHECK(strstr(err_text, "sluiced: queue: 0000000000000102 "
	    "quarantined: checksum mismatch\n") != NULL);
	CHECK(strstr(err_text, "sluiced: queue: 0000000000000104 "
	    "quarantined: segment missing\n") != NULL);

	CHECK(check_seg_size(spool, seg_a) == (off_t)end_a);
	CHECK(check_seg_size(spool, seg_b) == -1);
	CHECK(check_seg_size(spool, seg_c) == -1);
	CHECK(check_seg_size(spool, seg_d) == (off_t)end_d);
	CHECK(exists("notes.txt"));
	CHECK(exists("1-1.seg"));

	CHECK(queue_index_count(qi, &n) == 0 && n == 2);
	CHECK(queue_index_count_quarantine(qi, &n) == 0 && n == 2);
	CHECK(queue_index_get(qi, r2.qid, &m) == QUEUE_ENOTFOUND);
	CHECK(queue_index_max_id(qi, &max) == 0 && max == r4.qid);
	/* LMDB allows one open of an environment per process. */
	queue_index_close(qi);
	check_quarantine_value(r2.qid, "checksum mismatch", r2.put.rec_len,
	    flipped);
	check_quarantine_value(r4.qid, "segment missing", 0, NULL);
	CHECK_FATAL(queue_index_open(&qi, spool, MAP_SIZE, 0) == 0);
	/* The survivors still read back. */
	CHECK_FATAL(queue_index_get(qi, r1.qid, &m) == 0);
	CHECK(queue_read_message(spool, &m, &msg, &len) == 0);
	CHECK(len == m.meta.msg_len && memcmp(msg, "Subject: one", 12) == 0);
	free(msg);
	queue_msg_release(&m);

	/* Again: nothing left to do. */
	CHECK(check_recover(qi, spool, &rep, err_text, sizeof(err_text)) == 0);
	CHECK(rep.messages == 2 && rep.quarantined == 0);
	CHECK(rep.segments == 2 && rep.segments_removed == 0);
	CHECK(rep.bytes_reclaimed == 0);
	CHECK(rep.max_seq[0] == 1 && rep.max_seq[1] == 5);
	CHECK(err_text[0] == '\0');

	/* The daemon's own path for a record that fails at delivery. */
	CHECK(queue_index_quarantine(qi, spool, r3.qid, "operator test") == 0);
	CHECK(queue_index_quarantine(qi, spool, r3.qid, "again") ==
	    QUEUE_ENOTFOUND);
	CHECK(queue_index_count(qi, &n) == 0 && n == 1);
	CHECK(queue_index_count_quarantine(qi, &n) == 0 && n == 3);

	/*
	 * E, a segment nothing indexed yet (no log entry): r5 whole, a DSN
	 * whole, r6 whole, then r7 torn as if the crash came during its
	 * write. r5 and r6 are indexed, the DSN is not, r7 is cut off.
	 */
	fd = check_seg_open(spool, seg_e);
	off = 0;
	check_append_record(fd, seg_e, &off, &r5, "Subject: five\r\n\r\n5\r\n");
	dsn.local = true;
	check_append_record(fd, seg_e, &off, &dsn, "Subject: bounce\r\n\r\n");
	check_append_record(fd, seg_e, &off, &r6, "Subject: six\r\n\r\n6\r\n");
	end_e = off;
	check_append_record(fd, seg_e, &off, &r7, "Subject: seven\r\n\r\n7\r\n");
	CHECK_FATAL(ftruncate(fd, (off_t)(off - 5)) == 0);
	close(fd);
	CHECK(check_recover(qi, spool, &rep, err_text, sizeof(err_text)) == 0);
	CHECK(rep.messages == 3 && rep.replayed == 2 && rep.quarantined == 0);
	CHECK(rep.dsn_dropped == 1 && rep.unacknowledged == 1);
	CHECK(strstr(err_text, "sluiced: queue: 00000000000001D5 (a DSN) not "
	    "replayed: its bounces happen again\n") != NULL);
	CHECK(strstr(err_text, "quarantined") == NULL);
	CHECK(queue_index_count(qi, &n) == 0 && n == 3);
	CHECK_FATAL(queue_index_get(qi, r5.qid, &m) == 0);
	CHECK(m.meta.seg == seg_e && m.meta.offset == 0 && m.meta.nrcpt == 2);
	CHECK(m.rcpt[0].state == RCPT_PENDING && m.rcpt[1].state ==
	    RCPT_PENDING);
	CHECK(strcmp(m.env.sender, "s@example.org") == 0);
	queue_msg_release(&m);
	CHECK_FATAL(queue_index_get(qi, r6.qid, &m) == 0);
	CHECK(queue_read_message(spool, &m, &msg, &len) == 0);
	CHECK(len == m.meta.msg_len && memcmp(msg, "Subject: six", 12) == 0);
	free(msg);
	queue_msg_release(&m);
	CHECK(queue_index_get(qi, dsn.qid, &m) == QUEUE_ENOTFOUND);
	CHECK(queue_index_get(qi, r7.qid, &m) == QUEUE_ENOTFOUND);
	CHECK(check_seg_size(spool, seg_e) == (off_t)end_e);
	CHECK(check_log_pos(qi, seg_e) == QUEUE_LOG_SEALED);
	CHECK(queue_index_max_id(qi, &max) == 0 && max == r6.qid);
	/* Again: the sealed log is not replayed. */
	CHECK(check_recover(qi, spool, &rep, err_text, sizeof(err_text)) == 0);
	CHECK(rep.messages == 3 && rep.replayed == 0 && err_text[0] == '\0');

	/*
	 * F, a version 1 index: what it indexed was all there was, so a
	 * whole record in a segment without a log entry is garbage there.
	 */
	fd = check_seg_open(spool, seg_f);
	off = 0;
	check_append_record(fd, seg_f, &off, &r8, "Subject: eight\r\n\r\n");
	close(fd);
	queue_index_close(qi);
	check_index_version(spool, true, 1);
	CHECK_FATAL(queue_index_open(&qi, spool, MAP_SIZE, 0) == 0);
	CHECK(check_recover(qi, spool, &rep, err_text, sizeof(err_text)) == 0);
	CHECK(rep.messages == 3 && rep.replayed == 0);
	CHECK(check_seg_size(spool, seg_f) == -1);
	CHECK(queue_index_get(qi, r8.qid, &m) == QUEUE_ENOTFOUND);
	queue_index_close(qi);
	CHECK(check_index_version(spool, false, 0) == QUEUE_INDEX_VERSION);
	CHECK_FATAL(queue_index_open(&qi, spool, MAP_SIZE, 0) == 0);
	queue_index_close(qi);
	check_quarantine_value(r3.qid, "operator test", r3.put.rec_len, NULL);

	if (check_failures)
		return check_done();	/* keep the spool to look at */
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", spool);
	CHECK(system(cmd) == 0);
	return check_done();
}
