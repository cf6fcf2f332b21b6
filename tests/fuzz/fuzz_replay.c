/*
 * fuzz_replay.c - libFuzzer target: arbitrary bytes as a segment that
 * recovery replays from the start (a segment with no log position, as
 * after a crash). Recovery must never crash or abort on it, whatever it
 * holds; what it indexes must read back and verify; and a second
 * recovery must find nothing left to do.
 *
 * The first input byte is a mode: with bit 0 set, every record the rest
 * frames (header lengths in bounds) gets its checksum fixed up first, so
 * that the fuzzer reaches envelope decoding and indexing instead of
 * stopping at the checksum. With bit 1 set, a whole record of a fixed
 * envelope comes first, so that every run indexes something and then
 * meets the fuzzer's bytes; with bit 2 also set, it comes twice (a copy
 * of a record, which replay must index once).
 */
#include <assert.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* Fix up the checksum of every record framed in seg[0..n). */
static void
fix_checksums(uint8_t *seg, size_t n)
{
	size_t off = 0;

	while (n - off >= sizeof(struct seg_hdr)) {
		struct seg_hdr h;
		uint64_t body;

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

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char spool[] = "/tmp/fuzz-replay-XXXXXX", path[128], rel[SEG_PATH_MAX];
	struct queue_recovery_report rep;
	struct queue_index *qi;
	uint8_t *seg;
	size_t n;
	int fd;

	if (size < 1 || mkdtemp(spool) == NULL)
		return 0;
	n = size - 1;
	seg = malloc(n + 1024);
	assert(seg != NULL);
	memcpy(seg, data + 1, n);
	if (data[0] & 1)
		fix_checksums(seg, n);
	if (data[0] & 2) {
		static const char *rcpt[1] = { "b@example.net" };
		static const char body[] = "Subject: seed\r\n\r\nbody\r\n";
		struct envelope e = { .qid = 0x55, .arrival_us = 1,
		    .nrcpt = 1, .sender = "a@example.com",
		    .client_addr = "127.0.0.1", .helo = "x",
		    .protocol = "ESMTP", .rcpt = rcpt };
		uint8_t head[512];
		size_t el = envelope_encoded_len(&e), hl;

		assert(sizeof(struct seg_hdr) + el + sizeof(body) <=
		    sizeof(head));
		envelope_encode(&e, head + sizeof(struct seg_hdr));
		seg_hdr_fill((struct seg_hdr *)head, e.qid,
		    head + sizeof(struct seg_hdr), (uint32_t)el, body,
		    sizeof(body) - 1);
		hl = sizeof(struct seg_hdr) + el;
		memcpy(head + hl, body, sizeof(body) - 1);
		hl += sizeof(body) - 1;
		memmove(seg + hl, seg, n);
		memcpy(seg, head, hl);
		n += hl;
		if (data[0] & 4) {	/* the same record again: a copy */
			memmove(seg + hl, seg, n);
			n += hl;
		}
	}
	assert(queue_index_open(&qi, spool, 1u << 24, 0) == 0);
	seg_path(SEG_ID(0, 1), rel, sizeof(rel));
	snprintf(path, sizeof(path), "%s/%s", spool, rel);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert(fd >= 0);
	assert(n == 0 || write(fd, seg, n) == (ssize_t)n);
	close(fd);
	free(seg);

	assert(queue_recover(qi, spool, &rep) == 0);
	assert(rep.messages == rep.replayed - rep.marks_done);
	assert(queue_index_foreach(qi, check_one, spool) == 0);
	assert(queue_recover(qi, spool, &rep) == 0);
	assert(rep.replayed == 0 && rep.unacknowledged == 0);
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
