/*
 * queue_recover.c - start-up recovery and quarantine.
 *
 * Purpose: after a crash the index is the truth (it commits last), but the
 * segments may hold records that were written and never indexed, and an
 * indexed record may have been damaged at rest. Recovery reconciles the two
 * before any shard starts appending.
 *
 * Contract: queue_recover()
 *   1. reads every "msg" entry in one read txn, loads it (shape, recipients,
 *      envelope) and verifies its segment record (framing and checksum);
 *      for sound records it notes the highest end offset per segment;
 *   2. moves each failed message to "quarantine" (write txns of at most
 *      QUAR_BATCH messages), then prints one line per message on stderr;
 *      except a failed message on the index's "unconfirmed" list (indexed
 *      by the last write while its segment sync was still running): its
 *      record never reached the disk whole, so it was never acknowledged,
 *      and it is removed from the index with a line of its own;
 *   3. lists spool/seg: deletes every segment no live record points at,
 *      truncates the others to their last live record's end, fsyncs the
 *      directory after deleting, and reports the highest sequence per shard
 *      over all names seen so new segments never reuse a name.
 * A quarantined message keeps its envelope, recipient states and a copy of
 * its raw segment record, so deleting its segment loses nothing. Files in
 * spool/seg whose names seg_path() would not produce are left alone.
 * Every step is idempotent: a crash during recovery is repaired by the next.
 *
 * Diagnostics: "sluiced: queue: QID quarantined: REASON" or "sluiced: queue:
 * QID removed: never acknowledged (REASON)" per message on stderr. Index or
 * file system errors stop recovery and are returned.
 */
#define QUEUE_INTERNAL
#include "queue.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Quarantine moves per write txn, and raw bytes per txn before a commit. */
#define QUAR_BATCH 64
#define QUAR_BATCH_BYTES (64u << 20)

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
	bool unacked;		/* on the unconfirmed list: remove */
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

/* The line for a message that failed verification: kept, or removed. */
static void
say_failed(uint64_t qid, const char *reason, bool unacked)
{
	char id[QUEUE_ID_LEN + 1], line[512];
	int n;

	queue_id_format(qid, id);
	n = snprintf(line, sizeof(line), unacked ?
	    "sluiced: queue: %s removed: never acknowledged (%s)\n" :
	    "sluiced: queue: %s quarantined: %s\n", id, reason);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line)) {
		n = sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	/* One write per line keeps it whole next to other threads' logs. */
	if (write(STDERR_FILENO, line, (size_t)n) < 0)
		return;
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
 * Pass 1: one read txn over "msg". Sound records go into the segment table,
 * failed ones onto the bad list.
 */
static int
u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int
scan_index(struct queue_index *qi, int segdir, struct seg_table *t,
    struct bad_msg **bad, size_t *nbad, uint64_t *live)
{
	struct seg_cache cache[SEG_CACHE_SLOTS];
	struct queue_msg m;
	MDB_txn *txn;
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	uint64_t *unconf = NULL;
	size_t cap = 0, nunconf = 0;
	int rc, err;

	memset(cache, 0, sizeof(cache));
	err = queue_txn_begin(qi, MDB_RDONLY, &txn);
	if (err != 0)
		return err;
	err = queue_index_unconfirmed(qi, txn, &unconf, &nunconf);
	if (err == QUEUE_ECORRUPT) {
		/* Without the list every failed record is quarantined. */
		fprintf(stderr, "sluiced: queue: the unconfirmed list is "
		    "damaged: ignored\n");
		err = 0;
	}
	if (err != 0) {
		mdb_txn_abort(txn);
		return err;
	}
	if (nunconf > 1)
		qsort(unconf, nunconf, sizeof(*unconf), u64_cmp);
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
		(*bad)[*nbad].unacked = nunconf > 0 &&
		    bsearch(&(*bad)[*nbad].qid, unconf, nunconf,
		    sizeof(*unconf), u64_cmp) != NULL;
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
	free(unconf);
	return err;
}

/*
 * Pass 2 for bad[0..n), all unacknowledged: remove them from the index in
 * one write (which also empties the unconfirmed list), then say so.
 */
static int
remove_unacked(struct queue_index *qi, const struct bad_msg *bad, size_t n)
{
	struct queue_update *ups;
	int err;

	if (n == 0)
		return 0;
	ups = calloc(n, sizeof(*ups));
	if (ups == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		assert(bad[i].unacked);
		ups[i].kind = QUEUE_UPD_DELETE;
		ups[i].qid = bad[i].qid;
	}
	err = queue_index_write(qi, NULL, 0, ups, n, NULL, NULL);
	free(ups);
	if (err != 0)
		return err;
	for (size_t i = 0; i < n; i++)
		say_failed(bad[i].qid, bad[i].reason, true);
	return 0;
}

/* Pass 2: move the bad list into "quarantine", in batches. */
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
			say_failed(bad[done].qid, bad[done].reason,
			    false);
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

/* Pass 3: delete, truncate, and find the highest sequence per shard. */
static int
sweep_segments(int segdir, const struct seg_table *t,
    struct queue_recovery_report *rep)
{
	struct dirent *de;
	DIR *d;
	int dfd, fd, removed = 0, err = 0;

	dfd = dup(segdir);
	if (dfd < 0)
		return -errno;
	d = fdopendir(dfd);
	if (d == NULL) {
		err = -errno;
		close(dfd);
		return err;
	}
	while ((errno = 0, de = readdir(d)) != NULL) {
		const struct seg_end *e;
		struct stat st;
		uint64_t seg;

		if (seg_name_parse(de->d_name, &seg) != 0)
			continue;
		if (SEG_SHARD(seg) < 64 &&
		    SEG_SEQ(seg) > rep->max_seq[SEG_SHARD(seg)])
			rep->max_seq[SEG_SHARD(seg)] = SEG_SEQ(seg);
		if (fstatat(segdir, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			err = -errno;
			goto fail;
		}
		if (!S_ISREG(st.st_mode))
			continue;
		e = seg_table_find(t, seg);
		if (e == NULL) {
			if (unlinkat(segdir, de->d_name, 0) < 0) {
				err = -errno;
				goto fail;
			}
			rep->segments_removed++;
			removed = 1;
			continue;
		}
		rep->segments++;
		assert(e->end > 0);
		if ((uint64_t)st.st_size <= e->end)
			continue;
		/* A write that was never acknowledged: cut it off. */
		fd = openat(segdir, de->d_name, O_WRONLY | O_CLOEXEC);
		if (fd < 0 || ftruncate(fd, (off_t)e->end) < 0 ||
		    fsync(fd) < 0) {
			err = -errno;
			if (fd >= 0)
				close(fd);
			goto fail;
		}
		close(fd);
		rep->bytes_reclaimed += (uint64_t)st.st_size - e->end;
	}
	if (errno != 0) {
		err = -errno;
		goto fail;
	}
	/* Make the deletions durable before anyone reuses the space. */
	if (removed && fsync(segdir) < 0)
		err = -errno;
fail:
	closedir(d);
	return err;
}

int
queue_recover(struct queue_index *qi, const char *spool,
    struct queue_recovery_report *rep)
{
	struct seg_table t = { 0 };
	struct bad_msg *bad = NULL;
	size_t nbad = 0, nunacked = 0, removed;
	uint64_t live = 0;
	int segdir, err;

	assert(qi != NULL && !qi->readonly);
	assert(spool != NULL && rep != NULL);
	memset(rep, 0, sizeof(*rep));
	segdir = open_segdir(spool);
	if (segdir < 0 && segdir != -ENOENT)
		return segdir;
	err = scan_index(qi, segdir, &t, &bad, &nbad, &live);
	if (err != 0)
		goto fail;
	/* The unacknowledged to the end: they are removed, not kept. */
	for (size_t i = 0, j = nbad; i < j;) {
		if (bad[i].unacked) {
			struct bad_msg x = bad[i];

			bad[i] = bad[--j];
			bad[j] = x;
			nunacked++;
		} else {
			i++;
		}
	}
	err = quarantine_all(qi, segdir, bad, nbad - nunacked);
	removed = nunacked;
	if (err == 0) {
		err = remove_unacked(qi, bad + nbad - nunacked, nunacked);
		if (err == QUEUE_EFULL) {
			/* They fail every read, so nothing delivers them:
			 * the next start with room removes them. */
			fprintf(stderr, "sluiced: queue: %zu never acknowledged "
			    "record(s) stay indexed: %s\n", nunacked,
			    queue_strerror(err));
			removed = 0;
			err = 0;
		}
	}
	if (err != 0)
		goto fail;
	rep->messages = live;
	rep->quarantined = nbad - nunacked;
	rep->unacknowledged = removed;
	if (segdir >= 0)
		err = sweep_segments(segdir, &t, rep);
fail:
	if (segdir >= 0)
		close(segdir);
	free(bad);
	free(t.slot);
	return err;
}
