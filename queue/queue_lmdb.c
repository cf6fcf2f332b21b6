/*
 * queue_lmdb.c - the queue index: an LMDB environment under spool/index.
 *
 * Purpose: LMDB indexes what is queued. "msg" maps a queue id to its
 * struct msg_meta and encoded envelope, "rcpt" maps (id, index) to a
 * struct rcpt_meta, "quarantine" keeps damaged messages, "log" maps a
 * segment id to how far its records have been indexed, "meta" holds the
 * format version. Ids are stored big-endian so cursor order is id order,
 * which is arrival order.
 *
 * Contract: every call is one short transaction; no read transaction is
 * held across calls (a pinned snapshot would keep the daemon from reusing
 * pages and grow the file). Commits use LMDB's default synchronous mode:
 * once queue_index_write() returns 0 the write survives power loss. The
 * segments are the log a write follows: what an acknowledged record adds
 * is in its segment before it is here, and recovery replays a segment
 * from its "log" position (queue.h). Values are copied out of the map
 * before their transaction ends. Readers in another process (sluicectl)
 * open the same environment read-only.
 *
 * Diagnostics: nothing is printed; LMDB codes map to QUEUE_E* codes or
 * -errno through queue_lmdb_err(). An index entry whose shape is wrong is
 * reported as QUEUE_ECORRUPT (recovery quarantines it) rather than by an
 * assertion: the index is data read from disk, and one bad entry must not
 * stop a daemon from starting. Assertions guard what this code writes.
 */
#define QUEUE_INTERNAL
#include "queue.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>

#define INDEX_MAXDBS 16
/* Messages loaded per read transaction in queue_index_foreach(). */
#define FOREACH_BATCH 64

static const char version_key[] = "version";

const char *
queue_strerror(int err)
{
	switch (err) {
	case 0:
		return "success";
	case QUEUE_ENOTFOUND:
		return "no such queue id";
	case QUEUE_ECORRUPT:
		return "queue record damaged";
	case QUEUE_EFULL:
		return "queue index or disk full";
	case QUEUE_EINDEX:
		return "queue index error";
	case QUEUE_EFORMAT:
		return "queue index has an unknown format version";
	default:
		if (err < 0 && err > -4096)
			return strerror(-err);
		return "unknown queue error";
	}
}

int
queue_lmdb_err(int rc)
{
	switch (rc) {
	case MDB_SUCCESS:
		return 0;
	case MDB_NOTFOUND:
		return QUEUE_ENOTFOUND;
	case MDB_MAP_FULL:
	case ENOSPC:
	case EDQUOT:
		return QUEUE_EFULL;
	case MDB_INVALID:
	case MDB_VERSION_MISMATCH:
		return QUEUE_EFORMAT;
	case ENOMEM:
		return -ENOMEM;
	default:
		/* LMDB passes system errors through as positive errno. */
		if (rc > 0 && rc < 4096)
			return -rc;
		return QUEUE_EINDEX;
	}
}

int
queue_txn_begin(struct queue_index *qi, unsigned flags, MDB_txn **txn)
{
	int rc;

	assert(qi != NULL && qi->env != NULL);
	rc = mdb_txn_begin(qi->env, NULL, flags, txn);
	if (rc == MDB_MAP_RESIZED) {
		/* The daemon grew the map: adopt its size and try once more. */
		rc = mdb_env_set_mapsize(qi->env, 0);
		if (rc == 0)
			rc = mdb_txn_begin(qi->env, NULL, flags, txn);
	}
	return queue_lmdb_err(rc);
}

/* mkdir -p, mode 0700: the spool holds other people's mail. */
static int
mkdir_p(const char *path)
{
	char buf[PATH_MAX];
	size_t n = strlen(path);

	if (n == 0 || n >= sizeof(buf))
		return n == 0 ? -EINVAL : -ENAMETOOLONG;
	memcpy(buf, path, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		buf[i] = '\0';
		if (mkdir(buf, 0700) < 0 && errno != EEXIST)
			return -errno;
		buf[i] = i < n ? '/' : '\0';
	}
	return 0;
}

static int
dir_under(char *out, size_t outlen, const char *spool, const char *sub)
{
	int n = snprintf(out, outlen, "%s/%s", spool, sub);

	return n < 0 || (size_t)n >= outlen ? -ENAMETOOLONG : 0;
}

/*
 * Open the databases and check (or, when writable, set) the version. An
 * index of version 1 (before "log") or 2 (before mark records) is opened
 * too: recovery migrates it (log_reset() in queue_recover.c stamps the
 * current version); read-only, version 1 reads as one without a log.
 */
static int
index_open_dbs(struct queue_index *qi)
{
	unsigned dbflags = qi->readonly ? 0 : MDB_CREATE;
	MDB_txn *txn = NULL;
	MDB_val k = { sizeof(version_key) - 1, (void *)version_key };
	MDB_val v;
	uint32_t version;
	int rc, err;

	err = queue_txn_begin(qi, qi->readonly ? MDB_RDONLY : 0, &txn);
	if (err != 0)
		goto fail;
	rc = mdb_dbi_open(txn, "msg", dbflags, &qi->msg);
	if (rc == 0)
		rc = mdb_dbi_open(txn, "rcpt", dbflags, &qi->rcpt);
	if (rc == 0)
		rc = mdb_dbi_open(txn, "quarantine", dbflags, &qi->quarantine);
	if (rc == 0)
		rc = mdb_dbi_open(txn, "meta", dbflags, &qi->meta);
	if (rc == 0)
		rc = mdb_get(txn, qi->meta, &k, &v);
	if (rc == MDB_NOTFOUND && !qi->readonly) {
		/* A new index: stamp it in the same txn as the databases. */
		rc = queue_version_stamp(qi, txn);
		qi->version = QUEUE_INDEX_VERSION;
	} else if (rc == 0) {
		assert(v.mv_data != NULL);
		if (v.mv_size != sizeof(version)) {
			err = QUEUE_EFORMAT;
			goto fail;
		}
		memcpy(&version, v.mv_data, sizeof(version));
		if (version < 1 || version > QUEUE_INDEX_VERSION) {
			err = QUEUE_EFORMAT;
			goto fail;
		}
		qi->v1 = version == 1;
		qi->version = version;
	}
	if (rc == 0) {
		/* Added without a version change: older builds ignore them,
		 * and a read-only opener of an index without them sees
		 * nothing parked. */
		rc = mdb_dbi_open(txn, "parked", dbflags, &qi->parked);
		if (rc == 0)
			rc = mdb_dbi_open(txn, "parked_q", dbflags,
			    &qi->parked_q);
		if (rc == MDB_NOTFOUND && qi->readonly) {
			qi->parked = qi->parked_q = 0;
			rc = 0;
		}
	}
	if (rc == 0) {
		/* The same: an older index has no reply texts. */
		rc = mdb_dbi_open(txn, "reply", dbflags, &qi->reply);
		if (rc == MDB_NOTFOUND && qi->readonly) {
			qi->reply = 0;
			rc = 0;
		}
	}
	if (rc == 0) {
		rc = mdb_dbi_open(txn, "log", dbflags, &qi->log);
		if (rc == MDB_NOTFOUND && qi->readonly && qi->v1)
			rc = 0;		/* not migrated yet: no log */
		else
			qi->has_log = rc == 0;
	}
	if (rc != 0) {
		/* Read-only and no databases: not a sluice index (yet). */
		err = rc == MDB_NOTFOUND ? QUEUE_EFORMAT : queue_lmdb_err(rc);
		goto fail;
	}
	/* Also for a read txn: commit keeps the dbi handles open. */
	rc = mdb_txn_commit(txn);
	txn = NULL;
	if (rc != 0) {
		err = queue_lmdb_err(rc);
		goto fail;
	}
	return 0;
fail:
	if (txn != NULL)
		mdb_txn_abort(txn);
	return err;
}

int
queue_index_open(struct queue_index **qip, const char *spool,
    uint64_t map_size, int readonly)
{
	struct queue_index *qi;
	char path[PATH_MAX];
	int rc, err;

	assert(qip != NULL);
	assert(spool != NULL);
	*qip = NULL;
	qi = calloc(1, sizeof(*qi));
	if (qi == NULL)
		return -ENOMEM;
	qi->readonly = readonly != 0;
	if (!qi->readonly) {
		err = mkdir_p(spool);
		if (err == 0)
			err = dir_under(path, sizeof(path), spool, "seg");
		if (err == 0 && mkdir(path, 0700) < 0 && errno != EEXIST)
			err = -errno;
		if (err != 0)
			goto fail;
	}
	err = dir_under(path, sizeof(path), spool, "index");
	if (err != 0)
		goto fail;
	if (!qi->readonly && mkdir(path, 0700) < 0 && errno != EEXIST) {
		err = -errno;
		goto fail;
	}
	rc = mdb_env_create(&qi->env);
	if (rc == 0)
		rc = mdb_env_set_maxdbs(qi->env, INDEX_MAXDBS);
	if (rc == 0 && map_size > 0)
		rc = mdb_env_set_mapsize(qi->env, (size_t)map_size);
	/* Default flags: synchronous commits are the durability contract. */
	if (rc == 0)
		rc = mdb_env_open(qi->env, path, qi->readonly ? MDB_RDONLY : 0,
		    0600);
	if (rc != 0) {
		err = queue_lmdb_err(rc);
		goto fail;
	}
	err = index_open_dbs(qi);
	if (err != 0)
		goto fail;
	*qip = qi;
	return 0;
fail:
	if (qi->env != NULL)
		mdb_env_close(qi->env);
	free(qi);
	return err;
}

void
queue_index_close(struct queue_index *qi)
{
	if (qi == NULL)
		return;
	assert(qi->env != NULL);
	mdb_env_close(qi->env);
	qi->env = NULL;
	free(qi);
}

static int
index_entries(struct queue_index *qi, MDB_dbi dbi, uint64_t *n)
{
	MDB_txn *txn;
	MDB_stat st;
	int rc, err;

	assert(n != NULL);
	err = queue_txn_begin(qi, MDB_RDONLY, &txn);
	if (err != 0)
		return err;
	rc = mdb_stat(txn, dbi, &st);
	mdb_txn_abort(txn);
	if (rc != 0)
		return queue_lmdb_err(rc);
	*n = st.ms_entries;
	return 0;
}

int
queue_index_count(struct queue_index *qi, uint64_t *n)
{
	return index_entries(qi, qi->msg, n);
}

int
queue_index_count_quarantine(struct queue_index *qi, uint64_t *n)
{
	return index_entries(qi, qi->quarantine, n);
}

/* What a msg_meta written by this code always satisfies. */
static const char *
msg_meta_check(const struct msg_meta *mm)
{
	if (mm->version != MSG_META_VERSION)
		return "unknown index entry version";
	if (mm->state != MSG_QUEUED && mm->state != MSG_HOLD)
		return "bad message state";
	if (mm->nrcpt == 0 || mm->nrcpt > UINT16_MAX)
		return "bad recipient count";
	if (mm->env_len < ENVELOPE_FIXED_LEN)
		return "envelope too short";
	if (mm->rec_len != (uint64_t)sizeof(struct seg_hdr) + mm->env_len +
	    mm->msg_len)
		return "record length mismatch";
	return NULL;
}

const char *
queue_msg_value_check(const void *val, size_t len)
{
	struct msg_meta mm;

	if (val == NULL || len < sizeof(mm))
		return "index entry too short";
	memcpy(&mm, val, sizeof(mm));	/* LMDB values are not aligned */
	if (len != sizeof(mm) + (size_t)mm.env_len)
		return "index entry length mismatch";
	return msg_meta_check(&mm);
}

void
queue_msg_release(struct queue_msg *m)
{
	if (m == NULL)
		return;
	envelope_release(&m->env);
	free(m->rcpt);
	free(m->storage);
	free(m->reply);
	memset(m, 0, sizeof(*m));
}

/* Copy the message's recipients, which must be exactly (qid, 0..n-1). */
static int
rcpt_load(struct queue_index *qi, MDB_txn *txn, struct queue_msg *m)
{
	uint8_t kb[10];
	MDB_cursor *cur = NULL;
	MDB_val k = { sizeof(kb), kb }, v;
	int rc, err = 0;

	assert(m->meta.nrcpt > 0);
	m->rcpt = malloc(m->meta.nrcpt * sizeof(*m->rcpt));
	if (m->rcpt == NULL)
		return -ENOMEM;
	rc = mdb_cursor_open(txn, qi->rcpt, &cur);
	if (rc != 0)
		return queue_lmdb_err(rc);
	queue_rcpt_key_put(kb, m->qid, 0);
	rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	for (uint32_t i = 0; i < m->meta.nrcpt; i++) {
		if (rc != 0 && rc != MDB_NOTFOUND) {
			err = queue_lmdb_err(rc);
			break;
		}
		queue_rcpt_key_put(kb, m->qid, i);
		if (rc == MDB_NOTFOUND || k.mv_size != sizeof(kb) ||
		    memcmp(k.mv_data, kb, sizeof(kb)) != 0 ||
		    v.mv_size != sizeof(struct rcpt_meta)) {
			err = QUEUE_ECORRUPT;
			break;
		}
		assert(v.mv_data != NULL);
		memcpy(&m->rcpt[i], v.mv_data, sizeof(struct rcpt_meta));
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	return err;
}

int
queue_index_replies(struct queue_index *qi, struct queue_msg *m)
{
	uint8_t kb[10];
	MDB_val k = { sizeof(kb), kb }, v;
	MDB_txn *txn = NULL;
	size_t n = m->meta.nrcpt, len = n * sizeof(char *);
	char **r, *p;
	int rc, err = 0;

	assert(m->reply == NULL);
	if (qi->reply == 0 || n == 0)
		return 0;
	/* One allocation: the pointers, then room for every text that can
	 * be there (those with a 4xx/5xx), each at most QUEUE_REPLY_MAX. */
	for (size_t i = 0; i < n; i++)
		if (m->rcpt[i].last_code >= 400)
			len += QUEUE_REPLY_MAX;
	if ((r = calloc(1, len)) == NULL)
		return -ENOMEM;
	p = (char *)(r + n);
	err = queue_txn_begin(qi, MDB_RDONLY, &txn);
	for (size_t i = 0; i < n && err == 0; i++) {
		if (m->rcpt[i].last_code < 400)
			continue;
		queue_rcpt_key_put(kb, m->qid, (uint16_t)i);
		rc = mdb_get(txn, qi->reply, &k, &v);
		if (rc == MDB_NOTFOUND)
			continue;
		if (rc != 0) {
			err = queue_lmdb_err(rc);
			break;
		}
		if (v.mv_size >= QUEUE_REPLY_MAX)
			v.mv_size = QUEUE_REPLY_MAX - 1;
		memcpy(p, v.mv_data, v.mv_size);
		p[v.mv_size] = '\0';
		r[i] = p;
		p += v.mv_size + 1;
	}
	if (txn != NULL)
		mdb_txn_abort(txn);
	if (err != 0) {
		free(r);
		return err;
	}
	m->reply = r;
	return 0;
}

int
queue_msg_load(struct queue_index *qi, MDB_txn *txn, const MDB_val *key,
    const MDB_val *val, struct queue_msg *m, const char **why)
{
	const char *reason = NULL;
	int err;

	assert(key != NULL && val != NULL);
	memset(m, 0, sizeof(*m));
	if (key->mv_size != sizeof(uint64_t)) {
		reason = "malformed key";
		err = QUEUE_ECORRUPT;
		goto fail;
	}
	m->qid = queue_key_get(key->mv_data);
	reason = queue_msg_value_check(val->mv_data, val->mv_size);
	if (reason != NULL) {
		err = QUEUE_ECORRUPT;
		goto fail;
	}
	m->storage = malloc(val->mv_size);
	if (m->storage == NULL) {
		err = -ENOMEM;
		goto fail;
	}
	memcpy(m->storage, val->mv_data, val->mv_size);
	memcpy(&m->meta, m->storage, sizeof(m->meta));
	err = rcpt_load(qi, txn, m);
	if (err != 0) {
		reason = "recipient entries missing";
		goto fail;
	}
	err = envelope_decode(m->storage + sizeof(m->meta), m->meta.env_len,
	    &m->env);
	if (err != 0) {
		reason = "envelope malformed";
		goto fail;
	}
	if (m->env.qid != m->qid || m->env.nrcpt != m->meta.nrcpt) {
		reason = "envelope does not match index entry";
		err = QUEUE_ECORRUPT;
		goto fail;
	}
	return 0;
fail:
	if (why != NULL)
		*why = reason != NULL ? reason : queue_strerror(err);
	queue_msg_release(m);
	return err;
}

int
queue_index_get(struct queue_index *qi, uint64_t qid, struct queue_msg *m)
{
	uint8_t kb[8];
	MDB_val k = { sizeof(kb), kb }, v;
	MDB_txn *txn;
	int rc, err;

	assert(qi != NULL);
	assert(m != NULL);
	memset(m, 0, sizeof(*m));
	err = queue_txn_begin(qi, MDB_RDONLY, &txn);
	if (err != 0)
		return err;
	queue_key_put(kb, qid);
	rc = mdb_get(txn, qi->msg, &k, &v);
	if (rc != 0) {
		err = queue_lmdb_err(rc);
		goto done;
	}
	assert(v.mv_data != NULL);
	/* Checks the record's shape (as an error, see the header). */
	err = queue_msg_load(qi, txn, &k, &v, m, NULL);
	assert(err != 0 || m->qid == qid);
done:
	mdb_txn_abort(txn);
	return err;
}

/*
 * Load up to FOREACH_BATCH messages from *after (inclusive) on, in one read
 * txn. *n is how many were loaded; *end is set when the database ran out.
 */
static int
foreach_batch(struct queue_index *qi, uint64_t after, int first,
    struct queue_msg *batch, size_t *n, int *end)
{
	uint8_t kb[8];
	MDB_val k = { sizeof(kb), kb }, v;
	MDB_txn *txn;
	MDB_cursor *cur = NULL;
	int rc, err;

	*n = 0;
	*end = 0;
	err = queue_txn_begin(qi, MDB_RDONLY, &txn);
	if (err != 0)
		return err;
	rc = mdb_cursor_open(txn, qi->msg, &cur);
	if (rc != 0) {
		err = queue_lmdb_err(rc);
		goto done;
	}
	queue_key_put(kb, after);
	rc = mdb_cursor_get(cur, &k, &v, first ? MDB_FIRST : MDB_SET_RANGE);
	while (rc == 0 && *n < FOREACH_BATCH) {
		assert(v.mv_data != NULL);
		err = queue_msg_load(qi, txn, &k, &v, &batch[*n], NULL);
		if (err != 0)
			goto done;
		++*n;
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	if (rc == MDB_NOTFOUND)
		*end = 1;
	else if (rc != 0)
		err = queue_lmdb_err(rc);
done:
	if (cur != NULL)
		mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	return err;
}

int
queue_index_foreach(struct queue_index *qi, queue_msg_fn fn, void *arg)
{
	struct queue_msg batch[FOREACH_BATCH];
	uint64_t next = 0;
	size_t n = 0, i = 0;
	int end = 0, first = 1, ret = 0;

	assert(qi != NULL);
	assert(fn != NULL);
	while (!end) {
		ret = foreach_batch(qi, next, first, batch, &n, &end);
		first = 0;
		for (i = 0; ret == 0 && i < n; i++)
			ret = fn(arg, &batch[i]);
		if (n > 0)
			next = batch[n - 1].qid + 1;
		for (i = 0; i < n; i++)
			queue_msg_release(&batch[i]);
		if (ret != 0)
			return ret;
		/* The highest possible id was the last one: nothing follows. */
		if (n > 0 && next == 0)
			break;
	}
	return 0;
}

/* Index one message and its pending recipients. An LMDB code. */
static int
put_one(struct queue_index *qi, MDB_txn *txn, const struct queue_put *p)
{
	struct msg_meta mm = {
		.version = MSG_META_VERSION,
		.state = MSG_QUEUED,
		.seg = p->seg,
		.offset = p->offset,
		.rec_len = p->rec_len,
		.msg_len = p->msg_len,
		.checksum = p->checksum,
		.env_len = p->env_len,
		.nrcpt = p->nrcpt,
	};
	struct rcpt_meta rm = { .state = RCPT_PENDING };
	uint8_t kb[8], rkb[10];
	MDB_val k = { sizeof(kb), kb };
	MDB_val v = { sizeof(mm) + p->env_len, NULL };
	MDB_val rk = { sizeof(rkb), rkb };
	MDB_val rv = { sizeof(rm), &rm };
	int rc;

	/* The record about to be written must read back as sound. */
	assert(msg_meta_check(&mm) == NULL);
	assert(envelope_peek_nrcpt(p->env, p->env_len) == (int)p->nrcpt);
	queue_key_put(kb, p->qid);
	/* Reserve and fill in place: no staging copy per message. */
	rc = mdb_put(txn, qi->msg, &k, &v, MDB_NOOVERWRITE | MDB_RESERVE);
	if (rc != 0)
		return rc;
	memcpy(v.mv_data, &mm, sizeof(mm));
	memcpy((uint8_t *)v.mv_data + sizeof(mm), p->env, p->env_len);
	for (uint32_t r = 0; r < p->nrcpt && rc == 0; r++) {
		queue_rcpt_key_put(rkb, p->qid, r);
		rc = mdb_put(txn, qi->rcpt, &rk, &rv, MDB_NOOVERWRITE);
	}
	return rc;
}

/*
 * The message's "msg" value, copied into *mm; MDB_NOTFOUND when it is not
 * indexed. An entry of the wrong shape reads as not found too: recovery,
 * not a delivery update, is where damage is dealt with.
 */
static int
get_meta(struct queue_index *qi, MDB_txn *txn, uint64_t qid,
    struct msg_meta *mm)
{
	uint8_t kb[8];
	MDB_val k = { sizeof(kb), kb }, v;
	int rc;

	queue_key_put(kb, qid);
	rc = mdb_get(txn, qi->msg, &k, &v);
	if (rc != 0)
		return rc;
	if (v.mv_size < sizeof(*mm))
		return MDB_NOTFOUND;
	memcpy(mm, v.mv_data, sizeof(*mm));
	return msg_meta_check(mm) == NULL ? 0 : MDB_NOTFOUND;
}

/*
 * Remove a message's reply texts: one cursor seek, and most messages
 * (never deferred nor refused) have none, so a delivery's removal costs
 * one lookup in a small table.
 */
int
queue_replies_del(struct queue_index *qi, MDB_txn *txn, uint64_t qid)
{
	uint8_t kb[10];
	MDB_cursor *cur;
	MDB_val k = { sizeof(kb), kb }, v;
	int rc;

	if (qi->reply == 0)
		return 0;
	rc = mdb_cursor_open(txn, qi->reply, &cur);
	if (rc != 0)
		return rc;
	queue_rcpt_key_put(kb, qid, 0);
	rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	while (rc == 0 && k.mv_size == sizeof(kb) &&
	    memcmp(k.mv_data, kb, 8) == 0) {
		rc = mdb_cursor_del(cur, 0);
		if (rc == 0)	/* after a delete, NEXT is the one after */
			rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/*
 * Remove message qid (its "msg" and its nrcpt "rcpt" entries) if force is
 * set or none of its recipients is pending. *gone tells whether it was.
 */
static int
remove_if_done(struct queue_index *qi, MDB_txn *txn, uint64_t qid,
    uint32_t nrcpt, bool force, bool *gone)
{
	uint8_t kb[8], rkb[10];
	MDB_val k = { sizeof(kb), kb }, rk = { sizeof(rkb), rkb }, rv;
	uint32_t r, code;
	uint16_t attempts;
	bool replies = force;	/* a reply text may be there to delete */

	static_assert(offsetof(struct rcpt_meta, state) == 0,
	    "the state is the first byte");
	int rc;

	*gone = false;
	for (r = 0; r < nrcpt && !force; r++) {
		queue_rcpt_key_put(rkb, qid, r);
		rc = mdb_get(txn, qi->rcpt, &rk, &rv);
		if (rc == MDB_NOTFOUND)
			continue;
		if (rc != 0)
			return rc;
		/* LMDB values are not aligned: read the state byte alone. */
		if (rv.mv_size == sizeof(struct rcpt_meta) &&
		    *(const uint8_t *)rv.mv_data == RCPT_PENDING)
			return 0;
		/* Only a 4xx/5xx leaves a text ("reply"), and one a later
		 * attempt delivered stays: a recipient delivered at its
		 * first attempt has none, so most messages cost no lookup
		 * there. */
		if (rv.mv_size == sizeof(struct rcpt_meta)) {
			memcpy(&code, (const uint8_t *)rv.mv_data +
			    offsetof(struct rcpt_meta, last_code), sizeof(code));
			memcpy(&attempts, (const uint8_t *)rv.mv_data +
			    offsetof(struct rcpt_meta, attempts),
			    sizeof(attempts));
			replies = replies || code >= 400 || attempts > 1;
		}
	}
	for (r = 0; r < nrcpt; r++) {
		queue_rcpt_key_put(rkb, qid, r);
		rc = mdb_del(txn, qi->rcpt, &rk, NULL);
		if (rc != 0 && rc != MDB_NOTFOUND)
			return rc;
	}
	rc = replies ? queue_replies_del(qi, txn, qid) : 0;
	if (rc != 0)
		return rc;
	queue_key_put(kb, qid);
	rc = mdb_del(txn, qi->msg, &k, NULL);
	if (rc == 0)
		*gone = true;
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Apply one update; MDB_NOTFOUND for a message that is not indexed. */
static int
update_one(struct queue_index *qi, MDB_txn *txn, const struct queue_update *u)
{
	struct msg_meta mm;
	uint8_t kb[8], rkb[10];
	MDB_val k = { sizeof(kb), kb }, v;
	MDB_val rk = { sizeof(rkb), rkb };
	int rc;

	rc = get_meta(qi, txn, u->qid, &mm);
	if (rc != 0)
		return rc;
	switch (u->kind) {
	case QUEUE_UPD_RCPT: {
		struct rcpt_meta rm = {
			.state = u->state,
			.attempts = u->attempts,
			.last_code = u->last_code,
			.next_try_us = u->next_try_us,
		};
		MDB_val rv = { sizeof(rm), &rm };

		if (u->idx >= mm.nrcpt || u->state > RCPT_BOUNCED)
			return MDB_NOTFOUND;
		queue_rcpt_key_put(rkb, u->qid, u->idx);
		rc = mdb_put(txn, qi->rcpt, &rk, &rv, 0);
		if (rc == 0 && u->last_code >= 400 && u->text[0] != '\0') {
			MDB_val tv = { strnlen(u->text, sizeof(u->text)),
			    (void *)u->text };

			/* A text is only read with a last_code >= 400, so
			 * one a later 2xx left behind is never shown. */
			rc = mdb_put(txn, qi->reply, &rk, &tv, 0);
		}
		return rc;
	}
	case QUEUE_UPD_HOLD:
	case QUEUE_UPD_RELEASE:
		queue_key_put(kb, u->qid);
		rc = mdb_get(txn, qi->msg, &k, &v);
		if (rc != 0)
			return rc;
		mm.state = u->kind == QUEUE_UPD_HOLD ? MSG_HOLD : MSG_QUEUED;
		/* Rewrite in place: copy, change the head, put back. */
		{
			uint8_t *copy = malloc(v.mv_size);
			MDB_val nv = { v.mv_size, copy };

			if (copy == NULL)
				return ENOMEM;
			memcpy(copy, v.mv_data, v.mv_size);
			memcpy(copy, &mm, sizeof(mm));
			rc = mdb_put(txn, qi->msg, &k, &nv, 0);
			free(copy);
		}
		if (rc == 0 && u->kind == QUEUE_UPD_HOLD)
			rc = queue_park_apply(qi, txn, u, &mm);
		return rc;
	case QUEUE_UPD_DELETE:
		/* removed with the others, below */
		return queue_park_apply(qi, txn, u, &mm);
	case QUEUE_UPD_PARK:
		return queue_park_apply(qi, txn, u, &mm);
	default:
		return MDB_NOTFOUND;
	}
}

struct touched {
	uint64_t qid;
	bool force;
};

static int
touched_cmp(const void *a, const void *b)
{
	uint64_t x = ((const struct touched *)a)->qid;
	uint64_t y = ((const struct touched *)b)->qid;

	return x < y ? -1 : x > y;
}

/* A "log" value: the position, little-endian; a shorter one reads as 0. */
static uint64_t
log_value(const MDB_val *v)
{
	uint64_t end = 0;

	if (v->mv_size == sizeof(end))
		memcpy(&end, v->mv_data, sizeof(end));
	return end;
}

int
queue_version_stamp(struct queue_index *qi, MDB_txn *txn)
{
	MDB_val k = { sizeof(version_key) - 1, (void *)version_key };
	uint32_t version = QUEUE_INDEX_VERSION;
	MDB_val v = { sizeof(version), &version };

	return mdb_put(txn, qi->meta, &k, &v, 0);
}

int
queue_log_get(struct queue_index *qi, MDB_txn *txn, uint64_t seg,
    uint64_t *end)
{
	uint8_t kb[8];
	MDB_val k = { sizeof(kb), kb }, v;
	int rc;

	*end = 0;
	if (!qi->has_log)
		return 0;
	queue_key_put(kb, seg);
	rc = mdb_get(txn, qi->log, &k, &v);
	if (rc == 0)
		*end = log_value(&v);
	return rc == MDB_NOTFOUND ? 0 : queue_lmdb_err(rc);
}

/*
 * Move segment seg's log position to end: forward only (QUEUE_LOG_SEALED
 * is the furthest), except that QUEUE_LOG_FORGET removes the entry. An
 * LMDB code.
 */
static int
log_set(struct queue_index *qi, MDB_txn *txn, uint64_t seg, uint64_t end)
{
	uint8_t kb[8];
	MDB_val k = { sizeof(kb), kb }, v;
	int rc;

	queue_key_put(kb, seg);
	if (end == QUEUE_LOG_FORGET) {
		rc = mdb_del(txn, qi->log, &k, NULL);
		return rc == MDB_NOTFOUND ? 0 : rc;
	}
	rc = mdb_get(txn, qi->log, &k, &v);
	if (rc == 0 && log_value(&v) >= end)
		return 0;
	if (rc != 0 && rc != MDB_NOTFOUND)
		return rc;
	v.mv_size = sizeof(end);
	v.mv_data = &end;
	return mdb_put(txn, qi->log, &k, &v, 0);
}

/*
 * The log positions a write moves: each put's record end, then the
 * explicit ones. Positions only move forward, so the order of the puts
 * does not matter; a run of one segment's puts costs one set. An LMDB code.
 */
static int
log_write(struct queue_index *qi, MDB_txn *txn, const struct queue_put *puts,
    size_t nputs, const struct queue_logpos *logs, size_t nlogs)
{
	int rc = 0;

	for (size_t i = 0; i < nputs && rc == 0; i++)
		if (i + 1 == nputs || puts[i + 1].seg != puts[i].seg)
			rc = log_set(qi, txn, puts[i].seg,
			    puts[i].offset + puts[i].rec_len);
	for (size_t i = 0; i < nlogs && rc == 0; i++)
		rc = log_set(qi, txn, logs[i].seg, logs[i].end);
	return rc;
}

int
queue_index_write(struct queue_index *qi, struct queue_put *puts,
    size_t nputs, const struct queue_update *ups, size_t nups,
    const struct queue_logpos *logs, size_t nlogs,
    struct queue_removed *removed, size_t *nremoved)
{
	return queue_index_write_ex(qi, puts, nputs, ups, nups, logs, nlogs,
	    removed, nremoved, 1);
}

int
queue_index_write_ex(struct queue_index *qi, struct queue_put *puts,
    size_t nputs, const struct queue_update *ups, size_t nups,
    const struct queue_logpos *logs, size_t nlogs,
    struct queue_removed *removed, size_t *nremoved, int puts_move_log)
{
	MDB_txn *txn = NULL;
	int rc = 0, err;
	size_t i, j;

	assert(qi != NULL && !qi->readonly);
	assert(puts != NULL || nputs == 0);
	assert(ups != NULL || nups == 0);
	assert(logs != NULL || nlogs == 0);
	assert(qi->has_log || (nputs == 0 && nlogs == 0));
	if (nremoved != NULL)
		*nremoved = 0;
	if (nputs == 0 && nups == 0 && nlogs == 0)
		return 0;	/* no empty (yet synced) commit */
	err = queue_txn_begin(qi, 0, &txn);
	if (err != 0)
		goto fail;
	for (i = 0; i < nputs && rc == 0; i++)
		rc = put_one(qi, txn, &puts[i]);
	for (i = 0; i < nups && rc == 0; i++) {
		rc = update_one(qi, txn, &ups[i]);
		if (rc == MDB_NOTFOUND)
			rc = 0;
	}
	/* Then each message touched, once: is it done? */
	if (rc == 0 && nups > 0) {
		struct touched *t = malloc(nups * sizeof(*t));
		size_t nt = 0;

		if (t == NULL) {
			rc = ENOMEM;
			goto out;
		}
		for (i = 0; i < nups; i++)
			if (ups[i].kind == QUEUE_UPD_RCPT ||
			    ups[i].kind == QUEUE_UPD_DELETE) {
				t[nt].qid = ups[i].qid;
				t[nt++].force = ups[i].kind ==
				    QUEUE_UPD_DELETE;
			}
		qsort(t, nt, sizeof(*t), touched_cmp);
		for (i = 0; i < nt && rc == 0; i = j) {
			struct msg_meta mm;
			bool gone, force = false;

			for (j = i; j < nt && t[j].qid == t[i].qid; j++)
				force |= t[j].force;
			rc = get_meta(qi, txn, t[i].qid, &mm);
			if (rc == MDB_NOTFOUND) {
				rc = 0;
				continue;
			}
			if (rc == 0)
				rc = remove_if_done(qi, txn, t[i].qid,
				    mm.nrcpt, force, &gone);
			if (rc == 0 && gone && removed != NULL) {
				removed[*nremoved].qid = t[i].qid;
				removed[*nremoved].seg = mm.seg;
				removed[*nremoved].rec_len = mm.rec_len;
				++*nremoved;
			}
		}
		free(t);
	}
out:
	if (rc == 0)
		rc = log_write(qi, txn, puts, puts_move_log ? nputs : 0, logs,
		    nlogs);
	if (rc == 0) {
		rc = mdb_txn_commit(txn);
		txn = NULL;	/* freed by commit, even when it fails */
	}
	if (rc != 0) {
		/* The committer only tells "full" from "anything else". */
		err = queue_lmdb_err(rc) == QUEUE_EFULL ? QUEUE_EFULL :
		    QUEUE_EINDEX;
		goto fail;
	}
	for (i = 0; i < nputs; i++)
		puts[i].result = 0;
	for (i = 0; i < nups; i++)
		if (ups[i].kind == QUEUE_UPD_PARK && ups[i].state < 64)
			atomic_fetch_add(&qi->parks_written[ups[i].state], 1);
	return 0;
fail:
	if (txn != NULL)
		mdb_txn_abort(txn);
	if (err != QUEUE_EFULL)
		err = QUEUE_EINDEX;
	for (i = 0; i < nputs; i++)
		puts[i].result = err;
	if (nremoved != NULL)
		*nremoved = 0;
	return err;
}

uint64_t
queue_index_parks_written(struct queue_index *qi, unsigned shard)
{
	assert(shard < 64);
	return atomic_load(&qi->parks_written[shard]);
}

int
queue_index_reserve(struct queue_index *qi, uint64_t bytes)
{
	MDB_envinfo info;
	MDB_stat st;
	int fd, rc;

	assert(qi != NULL && !qi->readonly);
	rc = mdb_env_info(qi->env, &info);
	if (rc == 0)
		rc = mdb_env_stat(qi->env, &st);
	if (rc == 0)
		rc = mdb_env_get_fd(qi->env, &fd);
	if (rc != 0)
		return queue_lmdb_err(rc);
	if (bytes == 0) {
		bytes = info.me_mapsize / 16;
		if (bytes > QUEUE_RESERVE_MAX)
			bytes = QUEUE_RESERVE_MAX;
	}
	/* Blocks past the end, the file's size unchanged: LMDB sees
	 * nothing, and its next pages land on space that is there. */
	if (fallocate(fd, FALLOC_FL_KEEP_SIZE,
	    (off_t)((uint64_t)(info.me_last_pgno + 1) * st.ms_psize),
	    (off_t)bytes) < 0)
		return errno == EOPNOTSUPP ? 0 : -errno;
	return 0;
}

/* Highest 8-byte key in dbi, or 0 if empty. */
static int
last_key(MDB_txn *txn, MDB_dbi dbi, uint64_t *id)
{
	MDB_cursor *cur;
	MDB_val k, v;
	int rc;

	*id = 0;
	rc = mdb_cursor_open(txn, dbi, &cur);
	if (rc != 0)
		return queue_lmdb_err(rc);
	rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
	mdb_cursor_close(cur);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0)
		return queue_lmdb_err(rc);
	if (k.mv_size != sizeof(uint64_t))
		return QUEUE_ECORRUPT;
	*id = queue_key_get(k.mv_data);
	return 0;
}

int
queue_index_max_id(struct queue_index *qi, uint64_t *qid)
{
	MDB_txn *txn;
	uint64_t a = 0, b = 0;
	int err;

	assert(qi != NULL);
	assert(qid != NULL);
	err = queue_txn_begin(qi, MDB_RDONLY, &txn);
	if (err != 0)
		return err;
	/* Quarantined ids count too: a new message must not reuse one. */
	err = last_key(txn, qi->msg, &a);
	if (err == 0)
		err = last_key(txn, qi->quarantine, &b);
	mdb_txn_abort(txn);
	if (err != 0)
		return err;
	*qid = a > b ? a : b;
	return 0;
}
