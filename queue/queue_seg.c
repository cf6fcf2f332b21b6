/*
 * queue_seg.c - segment records: naming, framing, checksum, verified reads.
 *
 * Purpose: a record in a segment is a struct seg_hdr, the encoded envelope
 * and the message bytes. The header carries an XXH3-64 checksum of
 * envelope || message seeded with the queue id, so a record copied to the
 * wrong place (or read at a stale offset) fails even if its bytes are intact.
 *
 * Contract: seg_hdr_fill() is pure and cheap (a streaming hash, no copy).
 * queue_read_verify() reads the record the index entry points at and
 * accepts it only if every header field matches the index entry and the
 * checksum matches both the header and the index. With a message buffer
 * wanted it reads envelope and message with one allocation; without, it
 * streams the record through a fixed buffer so that recovery's memory does
 * not grow with message size.
 *
 * A mark record (queue.h) journals delivered recipients between message
 * records: seg_mark_encode() builds one for its place in a segment,
 * seg_mark_check() accepts exactly what seg_mark_encode() can produce.
 *
 * Diagnostics: QUEUE_ECORRUPT with a reason phrase for any mismatch or short
 * read; -ENOENT (reason "segment missing") when the file is gone; -errno for
 * other I/O errors. Nothing is printed here.
 */
#define QUEUE_INTERNAL
#define XXH_STATIC_LINKING_ONLY	/* XXH3_state_t on the stack, no malloc */
#include "queue.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

/* Verify-only reads go through a buffer this big. */
#define SEG_VERIFY_CHUNK (256 * 1024)

void
seg_path(uint64_t seg, char *out, size_t outlen)
{
	int n;

	assert(outlen >= SEG_PATH_MAX);
	n = snprintf(out, outlen, "seg/%03u-%010llu.seg", SEG_SHARD(seg),
	    (unsigned long long)SEG_SEQ(seg));
	assert(n > 0 && (size_t)n < outlen);
	(void)n;	/* only asserted */
}

uint64_t
seg_hdr_fill(struct seg_hdr *h, uint64_t qid, const uint8_t *env,
    uint32_t env_len, const void *msg, uint32_t msg_len)
{
	XXH3_state_t st;
	XXH_errorcode rc;

	assert(env != NULL || env_len == 0);
	assert(msg != NULL || msg_len == 0);
	XXH3_INITSTATE(&st);
	rc = XXH3_64bits_reset_withSeed(&st, qid);
	assert(rc == XXH_OK);
	if (env_len > 0)
		XXH3_64bits_update(&st, env, env_len);
	if (msg_len > 0)
		XXH3_64bits_update(&st, msg, msg_len);
	memset(h, 0, sizeof(*h));
	h->magic = SEG_MAGIC;
	h->version = SEG_VERSION;
	h->hdr_len = sizeof(*h);
	h->qid = qid;
	h->env_len = env_len;
	h->msg_len = msg_len;
	h->checksum = XXH3_64bits_digest(&st);
	(void)rc;	/* only asserted */
	return h->checksum;
}

/* ---- mark records ---------------------------------------------------- */

static bool
mark_journaled(const struct queue_update *u)
{
	return u->kind == QUEUE_UPD_RCPT && u->state == RCPT_DELIVERED;
}

uint32_t
seg_mark_count(const struct queue_update *ups, uint32_t nups)
{
	uint32_t n = 0;

	assert(ups != NULL || nups == 0);
	for (uint32_t i = 0; i < nups; i++)
		n += mark_journaled(&ups[i]);
	return n;
}

/* The checksum of a mark record: header bytes 0..24, then the marks. */
static uint64_t
mark_checksum(const uint8_t *rec, size_t marks_len, uint64_t off)
{
	XXH3_state_t st;
	XXH_errorcode rc;

	static_assert(offsetof(struct seg_mark_hdr, checksum) == 24,
	    "the checksum covers the header before it");
	XXH3_INITSTATE(&st);
	rc = XXH3_64bits_reset_withSeed(&st, off);
	assert(rc == XXH_OK);
	XXH3_64bits_update(&st, rec, offsetof(struct seg_mark_hdr, checksum));
	XXH3_64bits_update(&st, rec + sizeof(struct seg_mark_hdr), marks_len);
	(void)rc;	/* only asserted */
	return XXH3_64bits_digest(&st);
}

uint64_t
seg_mark_encode(uint8_t *buf, uint64_t seg, uint64_t off,
    const struct queue_update *ups, uint32_t nups)
{
	struct seg_mark_hdr h = {
		.magic = SEG_MARK_MAGIC,
		.version = SEG_MARK_VERSION,
		.hdr_len = sizeof(h),
		.seg = seg,
	};
	uint8_t *p = buf + sizeof(h);

	for (uint32_t i = 0; i < nups; i++) {
		const struct queue_update *u = &ups[i];
		struct seg_mark m = {
			.qid = u->qid,
			.idx = u->idx,
			.attempts = u->attempts,
			.last_code = (uint16_t)u->last_code,
			.state = u->state,
		};

		if (!mark_journaled(u))
			continue;
		/* What the reader accepts: a real message, a reply code. */
		assert(u->qid != 0);
		assert(u->last_code <= 999);
		memcpy(p, &m, sizeof(m));
		p += sizeof(m);
		h.nmarks++;
	}
	assert(h.nmarks >= 1 && h.nmarks <= SEG_MARKS_MAX);
	h.marks_len = h.nmarks * (uint32_t)sizeof(struct seg_mark);
	memcpy(buf, &h, sizeof(h));
	h.checksum = mark_checksum(buf, h.marks_len, off);
	memcpy(buf + offsetof(struct seg_mark_hdr, checksum), &h.checksum,
	    sizeof(h.checksum));
	assert(seg_mark_check(buf, (size_t)seg_mark_len(h.nmarks), seg, off)
	    == NULL);
	return seg_mark_len(h.nmarks);
}

const char *
seg_mark_check(const uint8_t *rec, size_t len, uint64_t seg, uint64_t off)
{
	struct seg_mark_hdr h;

	if (len < sizeof(h))
		return "record cut short";
	memcpy(&h, rec, sizeof(h));
	if (h.magic != SEG_MARK_MAGIC || h.version != SEG_MARK_VERSION ||
	    h.hdr_len != sizeof(h) || h.seg != seg)
		return "bad mark header";
	if (h.nmarks == 0 || h.nmarks > SEG_MARKS_MAX ||
	    h.marks_len != h.nmarks * sizeof(struct seg_mark) ||
	    len != seg_mark_len(h.nmarks))
		return "bad mark lengths";
	if (mark_checksum(rec, h.marks_len, off) != h.checksum)
		return "checksum mismatch";
	for (uint32_t i = 0; i < h.nmarks; i++) {
		struct seg_mark m;

		memcpy(&m, rec + sizeof(h) + i * sizeof(m), sizeof(m));
		if (m.qid == 0 || m.state != RCPT_DELIVERED ||
		    m.reserved != 0 || m.last_code > 999)
			return "mark damaged";
	}
	return NULL;
}

void
seg_mark_update(const struct seg_mark *m, struct queue_update *u)
{
	assert(m->state == RCPT_DELIVERED);
	*u = (struct queue_update){
		.qid = m->qid,
		.last_code = m->last_code,
		.idx = m->idx,
		.attempts = m->attempts,
		.kind = QUEUE_UPD_RCPT,
		.state = m->state,
	};
}

/* ---- message records --------------------------------------------------- */

/* Read exactly n bytes at off: 0, QUEUE_ECORRUPT if the file ends, -errno. */
static int
seg_read_at(int fd, void *dst, size_t n, uint64_t off)
{
	uint8_t *p = dst;

	while (n > 0) {
		ssize_t r = pread(fd, p, n, (off_t)off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return QUEUE_ECORRUPT;
		assert((size_t)r <= n);
		p += r;
		n -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

/*
 * Read n bytes at off and feed them to the hash. If the destination holds
 * n bytes they all land there; otherwise it is scratch, reused per chunk.
 */
static int
seg_read_hash(int fd, uint64_t off, uint64_t n, uint8_t *dst, size_t dstlen,
    XXH3_state_t *st)
{
	assert(dstlen > 0 || n == 0);
	while (n > 0) {
		size_t chunk = n < dstlen ? (size_t)n : dstlen;
		int err = seg_read_at(fd, dst, chunk, off);

		if (err != 0)
			return err;
		XXH3_64bits_update(st, dst, chunk);
		if (dstlen >= n)
			dst += chunk;	/* whole-record mode: keep the bytes */
		off += chunk;
		n -= chunk;
	}
	return 0;
}

/* Compare the on-disk header with the index entry; NULL when they agree. */
static const char *
seg_hdr_check(const struct seg_hdr *h, const struct queue_msg *m)
{
	if (h->magic != SEG_MAGIC)
		return "bad magic";
	if (h->version != SEG_VERSION)
		return "unknown record version";
	if (h->hdr_len != sizeof(*h))
		return "bad header length";
	if (h->qid != m->qid)
		return "queue id mismatch";
	if (h->env_len != m->meta.env_len || h->msg_len != m->meta.msg_len)
		return "length mismatch";
	if (h->checksum != m->meta.checksum)
		return "checksum mismatch";
	return NULL;
}

int
queue_seg_verify_fd(int fd, const struct queue_msg *m, uint8_t **msg,
    size_t *len, const char **reason)
{
	const struct msg_meta *mm = &m->meta;
	uint64_t env_off = mm->offset + sizeof(struct seg_hdr);
	uint64_t body = (uint64_t)mm->env_len + mm->msg_len;
	struct seg_hdr h;
	XXH3_state_t st;
	uint8_t *buf = NULL;
	size_t bufsz;
	const char *why = NULL;
	int err;

	assert(fd >= 0);
	assert((msg == NULL) == (len == NULL));
	if (mm->rec_len != sizeof(h) + body) {
		err = QUEUE_ECORRUPT;
		why = "length mismatch";
		goto fail;
	}
	if (mm->offset > (uint64_t)INT64_MAX - mm->rec_len) {
		err = QUEUE_ECORRUPT;
		why = "offset out of range";
		goto fail;
	}
	err = seg_read_at(fd, &h, sizeof(h), mm->offset);
	if (err == 0 && (why = seg_hdr_check(&h, m)) != NULL)
		err = QUEUE_ECORRUPT;
	if (err != 0)
		goto fail;
	/*
	 * Whole record: the message first, then the envelope, so the message
	 * is handed back without moving it. Verify only: a bounded scratch.
	 */
	if (msg != NULL)
		bufsz = (size_t)body;
	else
		bufsz = body < SEG_VERIFY_CHUNK ? (size_t)body : SEG_VERIFY_CHUNK;
	buf = malloc(bufsz > 0 ? bufsz : 1);
	if (buf == NULL) {
		err = -ENOMEM;
		goto fail;
	}
	XXH3_INITSTATE(&st);
	if (XXH3_64bits_reset_withSeed(&st, m->qid) != XXH_OK) {
		err = -EINVAL;
		goto fail;
	}
	if (msg != NULL) {
		err = seg_read_hash(fd, env_off, mm->env_len,
		    buf + mm->msg_len, mm->env_len, &st);
		if (err == 0)
			err = seg_read_hash(fd, env_off + mm->env_len,
			    mm->msg_len, buf, mm->msg_len, &st);
	} else {
		err = seg_read_hash(fd, env_off, body, buf, bufsz, &st);
	}
	if (err != 0)
		goto fail;
	if (XXH3_64bits_digest(&st) != h.checksum) {
		err = QUEUE_ECORRUPT;
		why = "checksum mismatch";
		goto fail;
	}
	if (msg != NULL) {
		*msg = buf;
		*len = mm->msg_len;
		buf = NULL;
	}
	free(buf);
	return 0;
fail:
	if (why == NULL)
		why = err == QUEUE_ECORRUPT ? "record cut short" : "read error";
	if (reason != NULL)
		*reason = why;
	free(buf);
	return err;
}

int
queue_read_verify(const char *spool, const struct queue_msg *m,
    uint8_t **msg, size_t *len, const char **reason)
{
	char rel[SEG_PATH_MAX];
	char path[PATH_MAX];
	int fd, err, n;

	assert(spool != NULL);
	assert(m != NULL);
	seg_path(m->meta.seg, rel, sizeof(rel));
	n = snprintf(path, sizeof(path), "%s/%s", spool, rel);
	if (n < 0 || (size_t)n >= sizeof(path)) {
		if (reason != NULL)
			*reason = "spool path too long";
		return -ENAMETOOLONG;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		if (reason != NULL)
			*reason = err == -ENOENT ? "segment missing" :
			    "cannot open segment";
		return err;
	}
	err = queue_seg_verify_fd(fd, m, msg, len, reason);
	close(fd);
	return err;
}

int
queue_read_message(const char *spool, const struct queue_msg *m,
    uint8_t **msg, size_t *len)
{
	assert(msg != NULL);
	assert(len != NULL);
	return queue_read_verify(spool, m, msg, len, NULL);
}
