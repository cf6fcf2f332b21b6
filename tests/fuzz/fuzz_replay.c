/*
 * fuzz_replay.c - libFuzzer target: arbitrary bytes as a segment that
 * recovery replays from the start (a segment with no log position, as
 * after a crash). Recovery must never crash or abort on it, whatever it
 * holds; what it indexes must read back and verify; a message a replayed
 * mark completed is gone; and a second recovery must find nothing left to
 * do.
 *
 * The first input byte is a mode: with bit 0 set, every record the
 * segment frames (header lengths in bounds), message or mark record, gets
 * its checksum (and a mark record its segment id) fixed up first, so that
 * the fuzzer reaches envelope decoding, mark checks and indexing instead
 * of stopping at the checksum. With bit 1 set, a whole record of a fixed
 * envelope comes first, so that every run indexes something and then
 * meets the fuzzer's bytes; with bit 2 also set, it comes twice (a copy
 * of a record, which replay must index once); with bit 3 also set, a
 * whole mark record delivering its one recipient follows, so the message
 * must be gone. With bit 4 set, the rest of the input is not a segment
 * but the marks of one mark record (whole around them), so arbitrary
 * marks reach the mark checks and, when they pass, the index.
 */
#include <assert.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "../../queue/queue.h"

static int
check_one(void *arg, const struct queue_msg *m)
{
	const char *spool = arg;
	uint8_t *msg;
	size_t len;

	/* Replay indexed only records that verify. */
	assert(queue_read_message(spool, m, &msg, &len) == 0);
	free(msg);
	return 0;
}

#define SEG SEG_ID(0, 1)
#define SEED_QID 0x55

/*
 * Give the mark record at rec (marks_len bytes of marks after its header,
 * at offset off of SEG) the segment id and the checksum a writer would
 * (docs/queue-format.md); the fuzzer's other fields stay.
 */
static void
fix_mark(uint8_t *rec, size_t marks_len, uint64_t off)
{
	struct seg_mark_hdr h;
	XXH3_state_t *st = XXH3_createState();

	assert(st != NULL);
	memcpy(&h, rec, sizeof(h));
	h.seg = SEG;
	memcpy(rec, &h, sizeof(h));
	XXH3_64bits_reset_withSeed(st, off);
	XXH3_64bits_update(st, rec, offsetof(struct seg_mark_hdr, checksum));
	XXH3_64bits_update(st, rec + sizeof(h), marks_len);
	h.checksum = XXH3_64bits_digest(st);
	XXH3_freeState(st);
	memcpy(rec, &h, sizeof(h));
}

/*
 * Fix up the checksum of every record framed in seg[0..n), of either
 * kind (a mark record's also gets the segment's id).
 */
static void
fix_checksums(uint8_t *seg, size_t n)
{
	size_t off = 0;

	while (n - off >= sizeof(struct seg_hdr)) {
		struct seg_hdr h;
		struct seg_mark_hdr mh;
		uint64_t body;

		memcpy(&mh, seg + off, sizeof(mh));
		if (mh.magic == SEG_MARK_MAGIC) {
			if (mh.marks_len > n - off - sizeof(mh))
				return;
			fix_mark(seg + off, mh.marks_len, off);
			off += sizeof(mh) + (size_t)mh.marks_len;
			continue;
		}
		memcpy(&h, seg + off, sizeof(h));
		body = (uint64_t)h.env_len + h.msg_len;
		if (body > n - off - sizeof(h))
			return;
		h.checksum = 0;
		{
			struct seg_hdr fixed;

			seg_hdr_fill(&fixed, h.qid, seg + off + sizeof(h),
			    h.env_len, seg + off + sizeof(h) + h.env_len,
			    h.msg_len);
			/* Keep the fuzzer's magic, version and lengths. */
			h.checksum = fixed.checksum;
		}
		memcpy(seg + off, &h, sizeof(h));
		off += sizeof(h) + (size_t)body;
	}
}

/* Append the seed message's record (one recipient) at seg + *n. */
static void
seed_record(uint8_t *seg, size_t *n)
{
	static const char *rcpt[1] = { "b@example.net" };
	static const char body[] = "Subject: seed\r\n\r\nbody\r\n";
	struct envelope e = { .qid = SEED_QID, .arrival_us = 1,
	    .nrcpt = 1, .sender = "a@example.com",
	    .client_addr = "127.0.0.1", .helo = "x",
	    .protocol = "ESMTP", .rcpt = rcpt };
	uint8_t *head = seg + *n;
	size_t el = envelope_encoded_len(&e);
	struct seg_hdr h;	/* head may be unaligned (a second record) */

	envelope_encode(&e, head + sizeof(struct seg_hdr));
	seg_hdr_fill(&h, e.qid, head + sizeof(struct seg_hdr), (uint32_t)el,
	    body, sizeof(body) - 1);
	memcpy(head, &h, sizeof(h));
	memcpy(head + sizeof(struct seg_hdr) + el, body, sizeof(body) - 1);
	*n += sizeof(struct seg_hdr) + el + sizeof(body) - 1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char spool[] = "/tmp/fuzz-replay-XXXXXX", path[128], rel[SEG_PATH_MAX];
	struct queue_recovery_report rep;
	struct queue_index *qi;
	struct queue_msg m;
	uint8_t *seg, mode;
	size_t n = 0;
	int fd;

	if (size < 1 || mkdtemp(spool) == NULL)
		return 0;
	mode = data[0];
	seg = malloc(size + 2048);
	assert(seg != NULL);
	if (mode & 2) {
		seed_record(seg, &n);
		if (mode & 4)	/* the same record again: a copy */
			seed_record(seg, &n);
		if (mode & 8) {
			struct queue_update u = { .kind = QUEUE_UPD_RCPT,
			    .qid = SEED_QID, .idx = 0, .attempts = 1,
			    .last_code = 250, .state = RCPT_DELIVERED };

			n += seg_mark_encode(seg + n, SEG, n, &u, 1);
		}
	}
	if ((mode & 16) && size - 1 >= sizeof(struct seg_mark)) {
		/* The rest as the marks of one record, whole around them. */
		struct seg_mark_hdr h = { .magic = SEG_MARK_MAGIC,
		    .version = SEG_MARK_VERSION, .hdr_len = sizeof(h),
		    .nmarks = (uint32_t)((size - 1) / sizeof(struct seg_mark)) };

		if (h.nmarks > SEG_MARKS_MAX)
			h.nmarks = SEG_MARKS_MAX;
		h.marks_len = h.nmarks * (uint32_t)sizeof(struct seg_mark);
		memcpy(seg + n, &h, sizeof(h));
		memcpy(seg + n + sizeof(h), data + 1, h.marks_len);
		fix_mark(seg + n, h.marks_len, n);
		n += sizeof(h) + h.marks_len;
	} else {
		memcpy(seg + n, data + 1, size - 1);
		n += size - 1;
	}
	if (mode & 1)
		fix_checksums(seg, n);	/* offsets count from the start */
	assert(queue_index_open(&qi, spool, 1u << 24, 0) == 0);
	seg_path(SEG, rel, sizeof(rel));
	snprintf(path, sizeof(path), "%s/%s", spool, rel);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert(fd >= 0);
	assert(n == 0 || write(fd, seg, n) == (ssize_t)n);
	close(fd);
	free(seg);

	assert(queue_recover(qi, spool, &rep) == 0);
	/* The index was empty: every message was replayed, some done since. */
	assert(rep.marks_done <= rep.replayed);
	assert(rep.messages == rep.replayed - rep.marks_done);
	assert(queue_index_foreach(qi, check_one, spool) == 0);
	if ((mode & 10) == 10)	/* the seed's one recipient was delivered */
		assert(queue_index_get(qi, SEED_QID, &m) == QUEUE_ENOTFOUND);
	assert(queue_recover(qi, spool, &rep) == 0);
	assert(rep.replayed == 0 && rep.unacknowledged == 0 && rep.marks == 0);
	queue_index_close(qi);

	/* What a recovery leaves: the segment (if kept) and the index. */
	snprintf(path, sizeof(path), "%s/%s", spool, rel);
	unlink(path);
	snprintf(path, sizeof(path), "%s/index/data.mdb", spool);
	unlink(path);
	snprintf(path, sizeof(path), "%s/index/lock.mdb", spool);
	unlink(path);
	snprintf(path, sizeof(path), "%s/index", spool);
	rmdir(path);
	snprintf(path, sizeof(path), "%s/seg", spool);
	rmdir(path);
	assert(rmdir(spool) == 0);
	return 0;
}
