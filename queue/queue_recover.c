/*
 * queue_recover.c - start-up recovery and quarantine.
 *
 * Purpose: after a crash the segments may hold acknowledged records the
 * index never got (the committer acknowledges after the segment sync and
 * indexes after that), records that were written and never acknowledged,
 * and an indexed record may have been damaged at rest. Recovery reconciles
 * the two before any shard starts appending.
 *
 * Contract: queue_recover()
 *   1. replays the log: for each segment whose "log" position is not
 *      sealed, reads the records from the position on and indexes each
 *      whole one (header, lengths, checksum, envelope) that is not indexed
 *      or quarantined already, except a "local" one (a DSN: its bounces
 *      were not recorded either, so they happen again), and keeps the
 *      marks of each whole mark record; the first record that is not
 *      whole ends the segment's log (nothing after it was acknowledged)
 *      and is reported, one line per segment. Once every segment's
 *      messages are in, one write applies all the marks (a mark may be in
 *      another shard's segment than its message, read earlier or later)
 *      and moves each replayed segment's position to its log's end;
 *   2. reads every "msg" entry in one read txn, loads it (shape,
 *      recipients, envelope) and verifies its segment record (framing and
 *      checksum); for sound records it notes the highest end offset per
 *      segment;
 *   3. moves each failed message to "quarantine" (write txns of at most
 *      QUAR_BATCH messages), then prints one line per message on stderr;
 *   4. lists spool/seg: deletes every segment no live record points at,
 *      truncates the others to their last live record's end, fsyncs the
 *      directory after deleting, and reports the highest sequence per shard
 *      over all names seen so new segments never reuse a name;
 *   5. rewrites "log": every segment kept is sealed (shards only ever
 *      append to new ones), nothing else is listed; an index of an older
 *      version is stamped the current one in the same transaction (a
 *      version 1 index had no log: what it indexed was all there was, and
 *      its segments are not replayed in step 1; a version 2 one is
 *      replayed like the current one, its segments hold no mark).
 * A quarantined message keeps its envelope, recipient states and a copy of
 * its raw segment record, so deleting its segment loses nothing. Files in
 * spool/seg whose names seg_path() would not produce are left alone.
 * Every step is idempotent: a crash during recovery is repaired by the next.
 *
 * Diagnostics: "sluiced: queue: QID quarantined: REASON" per message,
 * "sluiced: queue: segment NAME: N byte(s) at OFFSET never acknowledged
 * (REASON): cut off" per torn log end, "sluiced: queue: QID (a DSN) not
 * replayed: its bounces happen again" on stderr. Index or file system
 * errors stop recovery and are returned.
 */
#define QUEUE_INTERNAL
#include "queue.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Quarantine moves per write txn, and raw bytes per txn before a commit. */
#define QUAR_BATCH 64
#define QUAR_BATCH_BYTES (64u << 20)
/* Records indexed per write txn while replaying the log. */
#define REPLAY_BATCH 256

/* Highest live end offset per segment: open addressing, linear probing. */
struct seg_end {
	uint64_t seg;
	uint64_t end;
	int used;
};

struct seg_table {
	struct seg_end *slot;
	size_t cap;		/* power of two, or 0 */
	size_t n;
};

/* A message that failed; the reason is a static string. */
struct bad_msg {
	uint64_t qid;
	const char *reason;
};

/* Scratch reused by every quarantine move: a growable byte buffer. */
struct scratch {
	uint8_t *p;
	size_t len;
	size_t cap;
};

/*
 * The segment file open for verification, one per shard: ids are in arrival
 * order, so consecutive messages of a shard share a segment while shards
 * interleave.
 */
#define SEG_CACHE_SLOTS 64
struct seg_cache {
	uint64_t seg;
	int fd;
	int err;
	int valid;
};

static size_t
seg_hash(uint64_t seg, size_t cap)
{
	assert(cap > 0 && (cap & (cap - 1)) == 0);
	return (size_t)((seg * UINT64_C(0x9e3779b97f4a7c15)) >> 32) & (cap - 1);
}

static struct seg_end *
seg_table_find(const struct seg_table *t, uint64_t seg)
{
	if (t->cap == 0)
		return NULL;
	for (size_t i = seg_hash(seg, t->cap);; i = (i + 1) & (t->cap - 1)) {
		if (!t->slot[i].used)
			return NULL;
		if (t->slot[i].seg == seg)
			return &t->slot[i];
	}
}

static int
seg_table_note(struct seg_table *t, uint64_t seg, uint64_t end)
{
	struct seg_end *e = seg_table_find(t, seg);
	size_t i;

	if (e != NULL) {
		if (end > e->end)
			e->end = end;
		return 0;
	}
	if ((t->n + 1) * 2 > t->cap) {
		/* Keep the table at most half full so probes stay short. */
		struct seg_table bigger = { .cap = t->cap ? t->cap * 2 : 64 };

		bigger.slot = calloc(bigger.cap, sizeof(*bigger.slot));
		if (bigger.slot == NULL)
			return -ENOMEM;
		for (size_t j = 0; j < t->cap; j++)
			if (t->slot[j].used)
				seg_table_note(&bigger, t->slot[j].seg,
				    t->slot[j].end);
		free(t->slot);
		*t = bigger;
	}
	for (i = seg_hash(seg, t->cap); t->slot[i].used;
	    i = (i + 1) & (t->cap - 1))
		;
	t->slot[i] = (struct seg_end){ .seg = seg, .end = end, .used = 1 };
	t->n++;
	assert(t->n * 2 <= t->cap);
	return 0;
}

/* Room for n more bytes; returns where they go (len is not moved). */
static uint8_t *
scratch_room(struct scratch *s, size_t n)
{
	size_t cap = s->cap ? s->cap : 4096;
	uint8_t *np;

	assert(s->len <= s->cap);
	if (n <= s->cap - s->len)
		return s->p + s->len;
	while (cap - s->len < n) {
		if (cap > SIZE_MAX / 2)
			return NULL;
		cap *= 2;
	}
	np = realloc(s->p, cap);
	if (np == NULL)
		return NULL;
	s->p = np;
	s->cap = cap;
	return s->p + s->len;
}

static int
scratch_put(struct scratch *s, const void *p, size_t n)
{
	uint8_t *dst = scratch_room(s, n);

	if (dst == NULL)
		return -ENOMEM;
	if (n > 0)
		memcpy(dst, p, n);
	s->len += n;
	return 0;
}

/* One line on stderr, in one write so that it stays whole next to other
 * threads' logs; cut to fit. */
static void
say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
say(const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line)) {
		n = sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	if (write(STDERR_FILENO, line, (size_t)n) < 0)
		return;
}

/* The line for a message that failed verification. */
static void
say_quarantined(uint64_t qid, const char *reason)
{
	char id[QUEUE_ID_LEN + 1];

	queue_id_format(qid, id);
	say("sluiced: queue: %s quarantined: %s\n", id, reason);
}

/* Read up to n bytes at off; returns how many could be read. */
static size_t
read_some(int fd, uint8_t *dst, size_t n, uint64_t off)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = pread(fd, dst + got, n - got, (off_t)(off + got));

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	return got;
}

/*
 * Append to s the raw record bytes of a (sound-shaped) entry: as many of
 * rec_len bytes at offset as the segment still has. Best effort: the copy is
 * evidence for the operator, its absence is not an error.
 */
static int
copy_raw(int segdir, const struct msg_meta *mm, struct scratch *s,
    uint32_t *raw_len)
{
	char rel[SEG_PATH_MAX];
	struct stat st;
	uint8_t *dst;
	size_t want;
	int fd;

	*raw_len = 0;
	if (segdir < 0)
		return 0;
	seg_path(mm->seg, rel, sizeof(rel));
	fd = openat(segdir, rel + strlen("seg/"), O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	if (fstat(fd, &st) < 0 || st.st_size < 0 ||
	    mm->offset >= (uint64_t)st.st_size) {
		close(fd);
		return 0;
	}
	want = mm->rec_len;
	if ((uint64_t)st.st_size - mm->offset < want)
		want = (size_t)((uint64_t)st.st_size - mm->offset);
	dst = scratch_room(s, want);
	if (dst == NULL) {
		close(fd);
		return -ENOMEM;
	}
	*raw_len = (uint32_t)read_some(fd, dst, want, mm->offset);
	s->len += *raw_len;
	close(fd);
	return 0;
}

/*
 * Move one message into "quarantine" inside txn. The value is built in s
 * (see queue.h for the layout) from copies: every write below invalidates
 * pointers into the map.
 */
static int
quarantine_one(struct queue_index *qi, MDB_txn *txn, int segdir,
    uint64_t qid, const char *reason, struct scratch *s)
{
	uint8_t kb[8], rkb[10];
	MDB_val k = { sizeof(kb), kb }, v, rk, rv;
	struct msg_meta mm;
	size_t env_len, nrcpt = 0, raw_at;
	uint32_t reason_len = (uint32_t)strlen(reason), raw_len = 0;
	int sound, rc, err;

	assert(reason != NULL);
	s->len = 0;
	queue_key_put(kb, qid);
	rc = mdb_get(txn, qi->msg, &k, &v);
	if (rc != 0)
		return queue_lmdb_err(rc);
	assert(v.mv_data != NULL);
	sound = queue_msg_value_check(v.mv_data, v.mv_size) == NULL;
	memset(&mm, 0, sizeof(mm));
	memcpy(&mm, v.mv_data, v.mv_size < sizeof(mm) ? v.mv_size :
	    sizeof(mm));
	env_len = v.mv_size > sizeof(mm) ? v.mv_size - sizeof(mm) : 0;
	if (env_len > UINT32_MAX)
		env_len = UINT32_MAX;
	/* Layout: meta (patched at the end), envelope, recipients, ... */
	err = scratch_put(s, &mm, sizeof(mm));
	if (err == 0)
		err = scratch_put(s, (const uint8_t *)v.mv_data + sizeof(mm),
		    env_len);
	if (err != 0)
		return err;
	for (;;) {
		struct rcpt_meta r;
		MDB_cursor *cur;

		/* Re-seek after each delete rather than trust cursor state. */
		rc = mdb_cursor_open(txn, qi->rcpt, &cur);
		if (rc != 0)
			return queue_lmdb_err(rc);
		queue_rcpt_key_put(rkb, qid, 0);
		rk = (MDB_val){ sizeof(rkb), rkb };
		rc = mdb_cursor_get(cur, &rk, &rv, MDB_SET_RANGE);
		if (rc == 0 && (rk.mv_size != sizeof(rkb) ||
		    memcmp(rk.mv_data, kb, sizeof(kb)) != 0))
			rc = MDB_NOTFOUND;
		if (rc == 0) {
			memset(&r, 0, sizeof(r));
			memcpy(&r, rv.mv_data, rv.mv_size < sizeof(r) ?
			    rv.mv_size : sizeof(r));
			rc = mdb_cursor_del(cur, 0);
		}
		mdb_cursor_close(cur);
		if (rc == MDB_NOTFOUND)
			break;
		if (rc != 0)
			return queue_lmdb_err(rc);
		err = scratch_put(s, &r, sizeof(r));
		if (err != 0)
			return err;
		nrcpt++;
	}
	if (nrcpt > UINT32_MAX)
		return QUEUE_EINDEX;
	err = scratch_put(s, &reason_len, sizeof(reason_len));
	if (err == 0)
		err = scratch_put(s, reason, reason_len);
	raw_at = s->len;
	if (err == 0)
		err = scratch_put(s, &raw_len, sizeof(raw_len));
	/* Offsets in a malformed entry mean nothing: copy no raw bytes. */
	if (err == 0 && sound)
		err = copy_raw(segdir, &mm, s, &raw_len);
	if (err != 0)
		return err;
	memcpy(s->p + raw_at, &raw_len, sizeof(raw_len));
	mm.env_len = (uint32_t)env_len;
	mm.nrcpt = (uint32_t)nrcpt;
	memcpy(s->p, &mm, sizeof(mm));
	rc = mdb_del(txn, qi->msg, &k, NULL);
	if (rc == 0)
		rc = queue_replies_del(qi, txn, qid);
	if (rc != 0)
		return queue_lmdb_err(rc);
	v.mv_size = s->len;
	v.mv_data = s->p;
	/* The value describes exactly what it holds. */
	assert(s->len == sizeof(mm) + env_len + nrcpt * sizeof(struct
	    rcpt_meta) + 4 + reason_len + 4 + raw_len);
	rc = mdb_put(txn, qi->quarantine, &k, &v, 0);
	return queue_lmdb_err(rc);
}

static int
open_segdir(const char *spool)
{
	char path[PATH_MAX];
	int n = snprintf(path, sizeof(path), "%s/seg", spool);

	if (n < 0 || (size_t)n >= sizeof(path))
		return -ENAMETOOLONG;
	n = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return n < 0 ? -errno : n;
}

int
queue_index_quarantine(struct queue_index *qi, const char *spool,
    uint64_t qid, const char *reason)
{
	struct scratch s = { 0 };
	MDB_txn *txn = NULL;
	int segdir, err, rc;

	assert(qi != NULL && !qi->readonly);
	assert(reason != NULL);
	segdir = open_segdir(spool);	/* < 0: no raw copy, still move */
	err = queue_txn_begin(qi, 0, &txn);
	if (err != 0)
		goto fail;
	err = quarantine_one(qi, txn, segdir, qid, reason, &s);
	if (err != 0)
		goto fail;
	rc = mdb_txn_commit(txn);
	txn = NULL;
	err = queue_lmdb_err(rc);
	if (err != 0)
		goto fail;
	free(s.p);
	close(segdir);
	return 0;
fail:
	if (txn != NULL)
		mdb_txn_abort(txn);
	free(s.p);
	if (segdir >= 0)
		close(segdir);
	if (err != QUEUE_ENOTFOUND && err != QUEUE_EFULL)
		err = QUEUE_EINDEX;
	return err;
}

/* Verify m's record through the per-shard descriptor cache. */
static int
verify_cached(int segdir, struct seg_cache *cache, const struct queue_msg *m,
    const char **reason)
{
	struct seg_cache *c = &cache[SEG_SHARD(m->meta.seg) % SEG_CACHE_SLOTS];
	char rel[SEG_PATH_MAX];

	if (!c->valid || c->seg != m->meta.seg) {
		if (c->valid && c->fd >= 0)
			close(c->fd);
		seg_path(m->meta.seg, rel, sizeof(rel));
		c->seg = m->meta.seg;
		c->valid = 1;
		c->fd = segdir < 0 ? -1 : openat(segdir, rel + strlen("seg/"),
		    O_RDONLY | O_CLOEXEC);
		c->err = c->fd >= 0 ? 0 : segdir < 0 ? -ENOENT : -errno;
	}
	if (c->fd < 0) {
		*reason = c->err == -ENOENT ? "segment missing" :
		    "cannot open segment";
		return c->err;
	}
	return queue_seg_verify_fd(c->fd, m, NULL, NULL, reason);
}

/*
 * Pass 2: one read txn over "msg". Sound records go into the segment table,
 * failed ones onto the bad list.
 */
static int
scan_index(struct queue_index *qi, int segdir, struct seg_table *t,
    struct bad_msg **bad, size_t *nbad, uint64_t *live)
{
	struct seg_cache cache[SEG_CACHE_SLOTS];
	struct queue_msg m;
	MDB_txn *txn;
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	size_t cap = 0;
	int rc, err;

	memset(cache, 0, sizeof(cache));
	err = queue_txn_begin(qi, MDB_RDONLY, &txn);
	if (err != 0)
		return err;
	rc = mdb_cursor_open(txn, qi->msg, &cur);
	if (rc == 0)
		rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	for (; rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		const char *reason = NULL;

		assert(v.mv_data != NULL);
		if (k.mv_size != sizeof(uint64_t)) {
			/* Not ours to interpret: stop rather than guess. */
			err = QUEUE_ECORRUPT;
			goto fail;
		}
		err = queue_msg_load(qi, txn, &k, &v, &m, &reason);
		if (err == 0) {
			err = verify_cached(segdir, cache, &m, &reason);
			if (err == 0)
				err = seg_table_note(t, m.meta.seg,
				    m.meta.offset + m.meta.rec_len);
			else if (err == -ENOENT || err == -EIO)
				err = QUEUE_ECORRUPT;	/* gone or unreadable */
			queue_msg_release(&m);
		}
		if (err == 0) {
			++*live;
			continue;
		}
		if (err != QUEUE_ECORRUPT)
			goto fail;
		if (*nbad == cap) {
			struct bad_msg *nb;

			cap = cap ? cap * 2 : 16;
			nb = realloc(*bad, cap * sizeof(*nb));
			if (nb == NULL) {
				err = -ENOMEM;
				goto fail;
			}
			*bad = nb;
		}
		assert(reason != NULL);
		(*bad)[*nbad] = (struct bad_msg){
			.qid = queue_key_get(k.mv_data), .reason = reason };
		++*nbad;
	}
	err = rc == MDB_NOTFOUND ? 0 : queue_lmdb_err(rc);
fail:
	for (size_t i = 0; i < SEG_CACHE_SLOTS; i++)
		if (cache[i].valid && cache[i].fd >= 0)
			close(cache[i].fd);
	if (cur != NULL)
		mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	return err;
}

/* Pass 3: move the bad list into "quarantine", in batches. */
static int
quarantine_all(struct queue_index *qi, int segdir, const struct bad_msg *bad,
    size_t nbad)
{
	struct scratch s = { 0 };
	MDB_txn *txn = NULL;
	size_t done = 0, i = 0, bytes = 0;
	int rc, err = 0;

	while (done < nbad) {
		err = queue_txn_begin(qi, 0, &txn);
		if (err != 0)
			goto fail;
		for (i = done, bytes = 0; i < nbad && i - done < QUAR_BATCH &&
		    bytes < QUAR_BATCH_BYTES; i++) {
			err = quarantine_one(qi, txn, segdir, bad[i].qid,
			    bad[i].reason, &s);
			if (err != 0)
				goto fail;
			bytes += s.len;
		}
		rc = mdb_txn_commit(txn);
		txn = NULL;
		err = queue_lmdb_err(rc);
		if (err != 0)
			goto fail;
		/* Report only what is durably quarantined. */
		for (; done < i; done++)
			say_quarantined(bad[done].qid, bad[done].reason);
	}
	free(s.p);
	return 0;
fail:
	if (txn != NULL)
		mdb_txn_abort(txn);
	free(s.p);
	return err;
}

/* Parse a name seg_path() produces; 0 and the segment id, or -1. */
static int
seg_name_parse(const char *name, uint64_t *seg)
{
	char canon[SEG_PATH_MAX];
	unsigned long long shard = 0, seq = 0;
	const char *p = name;

	if (*p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		shard = shard * 10 + (unsigned)(*p - '0');
		if (shard > 0xffff)
			return -1;
	}
	if (*p++ != '-' || *p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		seq = seq * 10 + (unsigned)(*p - '0');
		if (seq > SEG_SEQ(UINT64_MAX))
			return -1;
	}
	if (strcmp(p, ".seg") != 0)
		return -1;
	*seg = SEG_ID(shard, seq);
	/* Only the canonical spelling: "7-1.seg" is someone else's file. */
	seg_path(*seg, canon, sizeof(canon));
	return strcmp(canon + strlen("seg/"), name) == 0 ? 0 : -1;
}

/*
 * Call fn for every regular file in spool/seg named as seg_path() names
 * them, with its id and stat; fn returns 0 to go on, else an error that is
 * returned.
 */
typedef int (*seg_file_fn)(void *arg, int segdir, const char *name,
    uint64_t seg, const struct stat *st);

static int
seg_each(int segdir, seg_file_fn fn, void *arg)
{
	struct dirent *de;
	DIR *d;
	int dfd, err = 0;

	dfd = dup(segdir);
	if (dfd < 0)
		return -errno;
	d = fdopendir(dfd);
	if (d == NULL) {
		err = -errno;
		close(dfd);
		return err;
	}
	/* A dup shares the offset: start over after an earlier pass. */
	rewinddir(d);
	while ((errno = 0, de = readdir(d)) != NULL) {
		struct stat st;
		uint64_t seg;

		if (seg_name_parse(de->d_name, &seg) != 0)
			continue;
		if (fstatat(segdir, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			err = errno == ENOENT ? 0 : -errno;
			if (err != 0)
				break;
			continue;
		}
		if (S_ISREG(st.st_mode) &&
		    (err = fn(arg, segdir, de->d_name, seg, &st)) != 0)
			break;
	}
	if (err == 0 && errno != 0)
		err = -errno;
	closedir(d);
	return err;
}

/* ---- pass 1: replay the log ------------------------------------------ */

struct replay {
	struct queue_index *qi;
	struct queue_recovery_report *rep;
	struct queue_put puts[REPLAY_BATCH];
	size_t env_at[REPLAY_BATCH];	/* each put's envelope in env */
	size_t n;
	struct scratch env;
	/* The marks of every segment, applied once all puts are in. */
	struct queue_update *marks;
	size_t nmarks, marks_cap;
	/* Where each segment's whole log ends: its position after that. */
	struct queue_logpos *ends;
	size_t nends, ends_cap;
	struct scratch rec;		/* one mark record */
};

/* Room for one more element of size sz in *arr (n used, *cap held). */
static int
grow(void **arr, size_t n, size_t *cap, size_t sz)
{
	void *p;
	size_t c;

	if (n < *cap)
		return 0;
	c = *cap ? *cap * 2 : 256;
	if (c > SIZE_MAX / sz || (p = realloc(*arr, c * sz)) == NULL)
		return -ENOMEM;
	*arr = p;
	*cap = c;
	return 0;
}

/* Is qid in "msg" or "quarantine"? 0 (*yes set) or an error. */
static int
replay_known(struct queue_index *qi, uint64_t qid, bool *yes)
{
	uint8_t kb[8];
	MDB_val k = { sizeof(kb), kb }, v;
	MDB_txn *txn;
	int rc, err;

	queue_key_put(kb, qid);
	err = queue_txn_begin(qi, MDB_RDONLY, &txn);
	if (err != 0)
		return err;
	rc = mdb_get(txn, qi->msg, &k, &v);
	if (rc == MDB_NOTFOUND)
		rc = mdb_get(txn, qi->quarantine, &k, &v);
	mdb_txn_abort(txn);
	*yes = rc == 0;
	return rc == 0 || rc == MDB_NOTFOUND ? 0 : queue_lmdb_err(rc);
}

/* Is qid among the puts gathered for the next write? */
static bool
replay_gathered(const struct replay *r, uint64_t qid)
{
	for (size_t i = 0; i < r->n; i++)
		if (r->puts[i].qid == qid)
			return true;
	return false;
}

/* Index the puts gathered so far, in one write. */
static int
replay_flush(struct replay *r)
{
	int err;

	if (r->n == 0)
		return 0;
	for (size_t i = 0; i < r->n; i++)
		r->puts[i].env = r->env.p + r->env_at[i];
	/*
	 * The positions stay: they move in replay_marks(), in one write with
	 * the marks, so that no crash in between can leave a mark behind a
	 * position while its message is still pending.
	 */
	err = queue_index_write_ex(r->qi, r->puts, r->n, NULL, 0, NULL, 0,
	    NULL, NULL, 0);
	if (err == 0)
		r->rep->replayed += r->n;
	r->n = 0;
	r->env.len = 0;
	return err;
}

/*
 * The record at off (the file is size bytes): NULL when it is whole, its
 * header in *h and its envelope appended to r->env and decoded into *e
 * (release it); else why not. *err is set for an I/O or memory error,
 * which is not the record's fault.
 */
static const char *
replay_record(struct replay *r, int fd, uint64_t off, uint64_t size,
    struct seg_hdr *h, struct envelope *e, int *err)
{
	struct queue_msg m = { 0 };
	const char *why = NULL;
	uint8_t *dst;
	uint64_t rec_len;

	*err = 0;
	if (size - off < sizeof(*h))
		return "record cut short";
	if (read_some(fd, (uint8_t *)h, sizeof(*h), off) != sizeof(*h))
		return "record cut short";
	if (h->magic != SEG_MAGIC || h->version != SEG_VERSION ||
	    h->hdr_len != sizeof(*h))
		return "no record header";
	rec_len = sizeof(*h) + (uint64_t)h->env_len + h->msg_len;
	if (rec_len > UINT32_MAX || h->env_len < ENVELOPE_FIXED_LEN ||
	    h->qid == 0)
		return "bad record lengths";
	if (rec_len > size - off)
		return "record cut short";
	m.qid = h->qid;
	m.meta.offset = off;
	m.meta.rec_len = (uint32_t)rec_len;
	m.meta.env_len = h->env_len;
	m.meta.msg_len = h->msg_len;
	m.meta.checksum = h->checksum;
	*err = queue_seg_verify_fd(fd, &m, NULL, NULL, &why);
	if (*err == QUEUE_ECORRUPT) {
		*err = 0;
		return why;
	}
	if (*err != 0)
		return why;
	if ((dst = scratch_room(&r->env, h->env_len)) == NULL) {
		*err = -ENOMEM;
		return "out of memory";
	}
	if (read_some(fd, dst, h->env_len, off + sizeof(*h)) != h->env_len) {
		*err = -EIO;
		return "read error";
	}
	*err = envelope_decode(dst, h->env_len, e);
	if (*err == QUEUE_ECORRUPT) {
		*err = 0;
		return "envelope damaged";
	}
	if (*err != 0)
		return "out of memory";
	if (e->qid != h->qid || e->nrcpt == 0) {
		why = e->nrcpt == 0 ? "no recipients" : "queue id mismatch";
		envelope_release(e);
		return why;
	}
	r->env.len += h->env_len;
	return NULL;
}

/*
 * The mark record at off of segment seg (the file is size bytes): NULL
 * when it is whole, its length in *rec_len and its marks appended to
 * r->marks; else why not. *err as for replay_record().
 */
static const char *
replay_mark(struct replay *r, int fd, uint64_t seg, uint64_t off,
    uint64_t size, uint64_t *rec_len, int *err)
{
	struct seg_mark_hdr h;
	const char *why;

	*err = 0;
	if (size - off < sizeof(h) ||
	    read_some(fd, (uint8_t *)&h, sizeof(h), off) != sizeof(h))
		return "record cut short";
	if (h.nmarks == 0 || h.nmarks > SEG_MARKS_MAX ||
	    h.marks_len != h.nmarks * sizeof(struct seg_mark))
		return "bad mark lengths";
	*rec_len = seg_mark_len(h.nmarks);
	if (*rec_len > size - off)
		return "record cut short";
	r->rec.len = 0;
	if (scratch_room(&r->rec, (size_t)*rec_len) == NULL) {
		*err = -ENOMEM;
		return "out of memory";
	}
	if (read_some(fd, r->rec.p, (size_t)*rec_len, off) != *rec_len) {
		*err = -EIO;
		return "read error";
	}
	if ((why = seg_mark_check(r->rec.p, (size_t)*rec_len, seg, off)) !=
	    NULL)
		return why;
	for (uint32_t i = 0; i < h.nmarks; i++) {
		struct seg_mark m;

		if (grow((void **)&r->marks, r->nmarks, &r->marks_cap,
		    sizeof(*r->marks)) != 0) {
			*err = -ENOMEM;
			return "out of memory";
		}
		memcpy(&m, r->rec.p + sizeof(h) + i * sizeof(m), sizeof(m));
		seg_mark_update(&m, &r->marks[r->nmarks++]);
	}
	return NULL;
}

/*
 * The first 4 bytes at off, which tell a message record (SEG_MAGIC) from a
 * mark record (SEG_MARK_MAGIC) and both from space allocated ahead that
 * nothing was written to (0); false when fewer than 4 bytes are left.
 */
static bool
replay_magic(int fd, uint64_t off, uint64_t size, uint32_t *magic)
{
	return size - off >= sizeof(*magic) && read_some(fd, (uint8_t *)magic,
	    sizeof(*magic), off) == sizeof(*magic);
}

/*
 * After every segment's puts: apply the marks, and move each replayed
 * segment's position to its log's end, in one write. Once a mark has
 * removed a message, the message's put lies behind its position (no later
 * replay indexes it again), and a mark is never behind a position before
 * it is applied. Marks of messages not indexed (done, deleted, or a DSN
 * not replayed) change nothing.
 */
static int
replay_marks(struct replay *r)
{
	struct queue_removed *removed = NULL;
	size_t nremoved = 0;
	int err;

	if (r->nmarks + r->nends == 0)
		return 0;
	if (r->nmarks > 0 &&
	    (removed = calloc(r->nmarks, sizeof(*removed))) == NULL)
		return -ENOMEM;
	err = queue_index_write_ex(r->qi, NULL, 0, r->marks, r->nmarks,
	    r->ends, r->nends, removed, &nremoved, 0);
	free(removed);
	if (err != 0)
		return err;
	r->rep->marks = r->nmarks;
	r->rep->marks_done = nremoved;
	return 0;
}

/* Replay one segment from its log position: see the contract above. */
static int
replay_segment(void *arg, int segdir, const char *name, uint64_t seg,
    const struct stat *st)
{
	struct replay *r = arg;
	uint64_t off, start, size = (uint64_t)st->st_size;
	const char *why = NULL;
	MDB_txn *txn;
	int fd, err;

	if (r->qi->v1)
		return 0;	/* everything it holds was indexed */
	err = queue_txn_begin(r->qi, MDB_RDONLY, &txn);
	if (err != 0)
		return err;
	err = queue_log_get(r->qi, txn, seg, &off);
	mdb_txn_abort(txn);
	if (err != 0 || off == QUEUE_LOG_SEALED || off >= size)
		return err;
	fd = openat(segdir, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	start = off;
	while (off < size) {
		struct seg_hdr h;
		struct envelope e;
		size_t env_at = r->env.len;
		uint64_t rec_len;
		bool known;
		char id[QUEUE_ID_LEN + 1];
		uint32_t magic;
		bool has_magic = replay_magic(fd, off, size, &magic);

		/*
		 * Zero: space the shard allocated with the segment and did
		 * not write yet, where its next record would have gone. The
		 * log ends there quietly (the sweep cuts the space off); it
		 * is no torn record, whose header is not zero when it got to
		 * the disk, and one whose header did not was never
		 * acknowledged either, as a sync covers all written before.
		 */
		if (has_magic && magic == 0)
			break;
		if (has_magic && magic == SEG_MARK_MAGIC) {
			why = replay_mark(r, fd, seg, off, size, &rec_len,
			    &err);
			if (why != NULL)
				break;
			off += rec_len;
			continue;
		}
		why = replay_record(r, fd, off, size, &h, &e, &err);
		if (why != NULL)
			break;
		if (strcmp(e.protocol, "local") == 0) {
			queue_id_format(h.qid, id);
			say("sluiced: queue: %s (a DSN) not replayed: its "
			    "bounces happen again\n", id);
			r->rep->dsn_dropped++;
			r->env.len = env_at;
		} else if (replay_gathered(r, h.qid)) {
			r->env.len = env_at;	/* a copy: the first one counts */
		} else if ((err = replay_known(r->qi, h.qid, &known)) != 0) {
			envelope_release(&e);
			break;
		} else if (known) {
			r->env.len = env_at;
		} else {
			r->env_at[r->n] = env_at;
			r->puts[r->n++] = (struct queue_put){
				.qid = h.qid, .seg = seg, .offset = off,
				.rec_len = (uint32_t)(sizeof(h) + h.env_len +
				    h.msg_len),
				.msg_len = h.msg_len, .checksum = h.checksum,
				.env_len = h.env_len, .nrcpt = e.nrcpt,
			};
		}
		envelope_release(&e);
		off += sizeof(h) + (uint64_t)h.env_len + h.msg_len;
		if (r->n == REPLAY_BATCH && (err = replay_flush(r)) != 0)
			break;
	}
	if (err == 0)
		err = replay_flush(r);
	close(fd);
	if (err == 0 && off > start) {
		if (grow((void **)&r->ends, r->nends, &r->ends_cap,
		    sizeof(*r->ends)) != 0)
			return -ENOMEM;
		r->ends[r->nends++] = (struct queue_logpos){ seg, off };
	}
	if (err == 0 && why != NULL) {
		say("sluiced: queue: segment %s: %llu byte(s) at %llu never "
		    "acknowledged (%s): cut off\n", name,
		    (unsigned long long)(size - off), (unsigned long long)off,
		    why);
		r->rep->unacknowledged++;
	}
	return err;
}

/* ---- pass 4: delete, truncate ----------------------------------------- */

struct sweep {
	const struct seg_table *t;
	struct queue_recovery_report *rep;
	bool removed;
};

/* Delete, truncate, and find the highest sequence per shard. */
static int
sweep_segment(void *arg, int segdir, const char *name, uint64_t seg,
    const struct stat *st)
{
	struct sweep *sw = arg;
	const struct seg_end *e;
	int fd, err;

	if (SEG_SHARD(seg) < 64 &&
	    SEG_SEQ(seg) > sw->rep->max_seq[SEG_SHARD(seg)])
		sw->rep->max_seq[SEG_SHARD(seg)] = SEG_SEQ(seg);
	e = seg_table_find(sw->t, seg);
	if (e == NULL) {
		if (unlinkat(segdir, name, 0) < 0)
			return -errno;
		sw->rep->segments_removed++;
		sw->removed = true;
		return 0;
	}
	sw->rep->segments++;
	assert(e->end > 0);
	if ((uint64_t)st->st_size <= e->end)
		return 0;
	/* Never acknowledged, or done with: cut it off. */
	fd = openat(segdir, name, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || ftruncate(fd, (off_t)e->end) < 0 || fsync(fd) < 0) {
		err = -errno;
		if (fd >= 0)
			close(fd);
		return err;
	}
	close(fd);
	sw->rep->bytes_reclaimed += (uint64_t)st->st_size - e->end;
	return 0;
}

static int
sweep_segments(int segdir, const struct seg_table *t,
    struct queue_recovery_report *rep)
{
	struct sweep sw = { .t = t, .rep = rep };
	int err = seg_each(segdir, sweep_segment, &sw);

	/* Make the deletions durable before anyone reuses the space. */
	if (err == 0 && sw.removed && fsync(segdir) < 0)
		err = -errno;
	return err;
}

/* ---- pass 5: the log, sealed ------------------------------------------ */

/*
 * Rewrite "log" to list exactly the segments kept, each sealed, and stamp
 * an older index with the current version: one write txn.
 */
static int
log_reset(struct queue_index *qi, const struct seg_table *t)
{
	uint64_t sealed = QUEUE_LOG_SEALED;
	MDB_val k, v;
	uint8_t kb[8];
	MDB_txn *txn;
	int rc, err;

	err = queue_txn_begin(qi, 0, &txn);
	if (err != 0)
		return err;
	rc = mdb_drop(txn, qi->log, 0);
	for (size_t i = 0; rc == 0 && i < t->cap; i++) {
		if (!t->slot[i].used)
			continue;
		queue_key_put(kb, t->slot[i].seg);
		k = (MDB_val){ sizeof(kb), kb };
		v = (MDB_val){ sizeof(sealed), &sealed };
		rc = mdb_put(txn, qi->log, &k, &v, 0);
	}
	if (rc == 0 && qi->version != QUEUE_INDEX_VERSION)
		rc = queue_version_stamp(qi, txn);
	if (rc != 0) {
		mdb_txn_abort(txn);
		return queue_lmdb_err(rc);
	}
	rc = mdb_txn_commit(txn);
	if (rc != 0)
		return queue_lmdb_err(rc);
	qi->v1 = 0;
	qi->version = QUEUE_INDEX_VERSION;
	return 0;
}

int
queue_recover(struct queue_index *qi, const char *spool,
    struct queue_recovery_report *rep)
{
	struct seg_table t = { 0 };
	struct bad_msg *bad = NULL;
	struct replay *r = NULL;
	size_t nbad = 0;
	uint64_t live = 0;
	int segdir, err;

	assert(qi != NULL && !qi->readonly && qi->has_log);
	assert(spool != NULL && rep != NULL);
	memset(rep, 0, sizeof(*rep));
	segdir = open_segdir(spool);
	if (segdir < 0 && segdir != -ENOENT)
		return segdir;
	if (segdir >= 0) {
		if ((r = calloc(1, sizeof(*r))) == NULL) {
			err = -ENOMEM;
			goto fail;
		}
		r->qi = qi;
		r->rep = rep;
		err = seg_each(segdir, replay_segment, r);
		if (err == 0)
			err = replay_marks(r);
		free(r->env.p);
		free(r->rec.p);
		free(r->marks);
		free(r->ends);
		free(r);
		if (err != 0)
			goto fail;
	}
	err = scan_index(qi, segdir, &t, &bad, &nbad, &live);
	if (err == 0)
		err = quarantine_all(qi, segdir, bad, nbad);
	if (err != 0)
		goto fail;
	rep->messages = live;
	rep->quarantined = nbad;
	if (segdir >= 0)
		err = sweep_segments(segdir, &t, rep);
	if (err == 0)
		err = log_reset(qi, &t);
fail:
	if (segdir >= 0)
		close(segdir);
	free(bad);
	free(t.slot);
	return err;
}
