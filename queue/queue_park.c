/*
 * queue_park.c - recipients parked outside delivery's active set; see
 * queue.h ("parked recipients").
 *
 * Two LMDB databases, always changed together in one transaction:
 *   parked    key shard (1) | next_try_us (8, big-endian) | qid (8) |
 *             idx (2), empty value: a shard's parked recipients in due
 *             order, for queue_index_unpark()
 *   parked_q  key qid (8) | idx (2), value shard (1) | next_try_us (8,
 *             little-endian): the same by message, for a hold, a delete
 *             or an operator's bounce
 * Entries go stale only when their message leaves the index without a
 * HOLD or DELETE update (every recipient final, which a parked one cannot
 * become while parked); unpark drops stale ones as it meets them.
 */
#define QUEUE_INTERNAL
#include "queue.h"

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define PARK_KEY_LEN 19
#define PARK_QKEY_LEN 10
#define PARK_QVAL_LEN 9
#define PARK_REWRITE_BATCH 10000	/* entries per txn when made due now */

struct park_ent {
	uint64_t qid;
	uint64_t next_try_us;
	uint16_t idx;
	uint8_t shard;
};

static void
be64_put(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

static uint64_t
be64_get(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static void
park_key(uint8_t k[PARK_KEY_LEN], const struct park_ent *e)
{
	k[0] = e->shard;
	be64_put(k + 1, e->next_try_us);
	be64_put(k + 9, e->qid);
	k[17] = (uint8_t)(e->idx >> 8);
	k[18] = (uint8_t)e->idx;
}

static void
park_key_get(const uint8_t k[PARK_KEY_LEN], struct park_ent *e)
{
	e->shard = k[0];
	e->next_try_us = be64_get(k + 1);
	e->qid = be64_get(k + 9);
	e->idx = (uint16_t)(k[17] << 8 | k[18]);
}

/* Put e in both databases (replacing an older entry of the recipient). */
static int
park_put(struct queue_index *qi, MDB_txn *txn, const struct park_ent *e)
{
	uint8_t kb[PARK_KEY_LEN], qk[PARK_QKEY_LEN], qv[PARK_QVAL_LEN];
	MDB_val k = { sizeof(kb), kb }, v = { 0, (void *)"" };
	MDB_val q = { sizeof(qk), qk }, w = { sizeof(qv), qv }, old;
	int rc;

	queue_rcpt_key_put(qk, e->qid, e->idx);
	rc = mdb_get(txn, qi->parked_q, &q, &old);
	if (rc == 0 && old.mv_size == PARK_QVAL_LEN) {
		struct park_ent o = { .qid = e->qid, .idx = e->idx };

		o.shard = ((const uint8_t *)old.mv_data)[0];
		memcpy(&o.next_try_us, (const uint8_t *)old.mv_data + 1, 8);
		park_key(kb, &o);
		rc = mdb_del(txn, qi->parked, &k, NULL);
		if (rc != 0 && rc != MDB_NOTFOUND)
			return rc;
	} else if (rc != MDB_NOTFOUND && rc != 0) {
		return rc;
	}
	park_key(kb, e);
	qv[0] = e->shard;
	memcpy(qv + 1, &e->next_try_us, 8);
	rc = mdb_put(txn, qi->parked, &k, &v, 0);
	if (rc == 0)
		rc = mdb_put(txn, qi->parked_q, &q, &w, 0);
	return rc;
}

/* Delete e from both databases. */
static int
park_del(struct queue_index *qi, MDB_txn *txn, const struct park_ent *e)
{
	uint8_t kb[PARK_KEY_LEN], qk[PARK_QKEY_LEN];
	MDB_val k = { sizeof(kb), kb }, q = { sizeof(qk), qk };
	int rc;

	park_key(kb, e);
	queue_rcpt_key_put(qk, e->qid, e->idx);
	rc = mdb_del(txn, qi->parked, &k, NULL);
	if (rc == 0 || rc == MDB_NOTFOUND)
		rc = mdb_del(txn, qi->parked_q, &q, NULL);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/*
 * The parked entries of qid (at most cap of them into out[]), from
 * "parked_q". *n is how many.
 */
static int
park_of_qid(struct queue_index *qi, MDB_txn *txn, uint64_t qid,
    struct park_ent *out, size_t cap, size_t *n)
{
	uint8_t qk[PARK_QKEY_LEN];
	MDB_val k = { sizeof(qk), qk }, v;
	MDB_cursor *cur;
	int rc;

	*n = 0;
	rc = mdb_cursor_open(txn, qi->parked_q, &cur);
	if (rc != 0)
		return rc;
	queue_rcpt_key_put(qk, qid, 0);
	rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	while (rc == 0 && *n < cap && k.mv_size == PARK_QKEY_LEN &&
	    queue_key_get(k.mv_data) == qid) {
		const uint8_t *kk = k.mv_data;

		if (v.mv_size == PARK_QVAL_LEN) {
			struct park_ent *e = &out[(*n)++];

			e->qid = qid;
			e->idx = (uint16_t)(kk[8] << 8 | kk[9]);
			e->shard = ((const uint8_t *)v.mv_data)[0];
			memcpy(&e->next_try_us, (const uint8_t *)v.mv_data + 1,
			    8);
		}
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

int
queue_park_apply(struct queue_index *qi, MDB_txn *txn,
    const struct queue_update *u, const struct msg_meta *mm)
{
	uint8_t rk[10];
	MDB_val k = { sizeof(rk), rk }, v;
	int rc;

	if (qi->parked == 0)
		return 0;
	if (u->kind == QUEUE_UPD_PARK) {
		struct park_ent e = {
			.qid = u->qid,
			.next_try_us = u->next_try_us,
			.idx = u->idx,
			.shard = u->state,
		};

		if (u->idx >= mm->nrcpt || mm->state != MSG_QUEUED)
			return MDB_NOTFOUND;
		queue_rcpt_key_put(rk, u->qid, u->idx);
		rc = mdb_get(txn, qi->rcpt, &k, &v);
		if (rc != 0)
			return rc;
		if (v.mv_size != sizeof(struct rcpt_meta) ||
		    *(const uint8_t *)v.mv_data != RCPT_PENDING)
			return MDB_NOTFOUND;
		return park_put(qi, txn, &e);
	}
	/* HOLD, DELETE: nothing of the message stays parked. */
	for (;;) {
		struct park_ent ents[64];
		size_t n;

		rc = park_of_qid(qi, txn, u->qid, ents, 64, &n);
		for (size_t i = 0; rc == 0 && i < n; i++)
			rc = park_del(qi, txn, &ents[i]);
		if (rc != 0 || n < 64)
			return rc;
	}
}

/* One message's unparked recipients, loaded inside the txn. */
struct unparked {
	struct queue_msg m;
	bool *pending;
	uint64_t next_try_us;
};

static int
park_ent_cmp(const void *a, const void *b)
{
	const struct park_ent *x = a, *y = b;

	if (x->qid != y->qid)
		return x->qid < y->qid ? -1 : 1;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/*
 * Delete ents[0..n) and load their messages into *out (grouped by qid;
 * stale entries give nothing). *nout is how many messages.
 */
static int
take(struct queue_index *qi, MDB_txn *txn, struct park_ent *ents, size_t n,
    struct unparked **out, size_t *nout)
{
	struct unparked *u;
	size_t i, j;
	int rc = 0;

	*out = NULL;
	*nout = 0;
	if (n == 0)
		return 0;
	qsort(ents, n, sizeof(*ents), park_ent_cmp);
	u = calloc(n, sizeof(*u));
	if (u == NULL)
		return ENOMEM;
	for (i = 0; i < n && rc == 0; i++)
		rc = park_del(qi, txn, &ents[i]);
	for (i = 0; i < n && rc == 0; i = j) {
		uint8_t kb[8];
		MDB_val k = { sizeof(kb), kb }, v;
		struct unparked *x = &u[*nout];
		bool any = false;

		for (j = i; j < n && ents[j].qid == ents[i].qid; j++)
			;
		queue_key_put(kb, ents[i].qid);
		rc = mdb_get(txn, qi->msg, &k, &v);
		if (rc == MDB_NOTFOUND) {
			rc = 0;		/* delivered or deleted meanwhile */
			continue;
		}
		if (rc != 0)
			break;
		rc = queue_msg_load(qi, txn, &k, &v, &x->m, NULL);
		if (rc == -ENOMEM) {
			rc = ENOMEM;	/* the whole take fails, nothing lost */
			break;
		}
		if (rc != 0) {
			rc = 0;		/* damage: recovery quarantines it */
			continue;
		}
		x->pending = calloc(x->m.meta.nrcpt, sizeof(bool));
		if (x->pending == NULL) {
			queue_msg_release(&x->m);
			rc = ENOMEM;
			break;
		}
		x->next_try_us = UINT64_MAX;
		for (size_t e = i; e < j; e++) {
			uint16_t r = ents[e].idx;

			if (x->m.meta.state != MSG_QUEUED ||
			    r >= x->m.meta.nrcpt ||
			    x->m.rcpt[r].state != RCPT_PENDING)
				continue;
			x->pending[r] = true;
			any = true;
			if (ents[e].next_try_us < x->next_try_us)
				x->next_try_us = ents[e].next_try_us;
		}
		if (!any) {
			free(x->pending);
			queue_msg_release(&x->m);
			continue;
		}
		++*nout;
	}
	*out = u;
	return rc;
}

static void
unparked_free(struct unparked *u, size_t n)
{
	for (size_t i = 0; u != NULL && i < n; i++) {
		free(u[i].pending);
		queue_msg_release(&u[i].m);
	}
	free(u);
}

/*
 * Take ents[0..n) out in txn, commit, then hand each message to fn. txn
 * is ended either way. 0 or a QUEUE_E* / -errno code (nothing taken).
 */
static int
take_and_hand(struct queue_index *qi, MDB_txn *txn, struct park_ent *ents,
    size_t n, queue_unpark_fn fn, void *arg)
{
	struct unparked *u = NULL;
	size_t nu = 0;
	int rc = take(qi, txn, ents, n, &u, &nu);

	if (rc != 0) {
		mdb_txn_abort(txn);
		unparked_free(u, nu);
		return queue_lmdb_err(rc);
	}
	rc = mdb_txn_commit(txn);
	if (rc == 0)
		for (size_t i = 0; i < nu; i++)
			fn(arg, &u[i].m, u[i].pending, u[i].next_try_us);
	unparked_free(u, nu);
	return queue_lmdb_err(rc);
}

int
queue_index_unpark(struct queue_index *qi, unsigned shard, size_t max,
    uint64_t horizon_us, queue_unpark_fn fn, void *arg, bool *left)
{
	uint8_t kb[PARK_KEY_LEN];
	MDB_val k = { sizeof(kb), kb }, v;
	struct park_ent start = { .shard = (uint8_t)shard }, *ents = NULL;
	size_t n = 0;
	MDB_cursor *cur = NULL;
	MDB_txn *txn = NULL;
	bool more;
	int rc, err;

	assert(qi != NULL && !qi->readonly && fn != NULL && left != NULL);
	assert(shard < 256 && max > 0);
	*left = true;		/* until the scan proves otherwise */
	ents = malloc(max * sizeof(*ents));
	if (ents == NULL)
		return -ENOMEM;
	err = queue_txn_begin(qi, 0, &txn);
	if (err != 0)
		goto fail;
	rc = mdb_cursor_open(txn, qi->parked, &cur);
	if (rc != 0)
		goto lmdb;
	park_key(kb, &start);
	rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	more = false;
	while (rc == 0 && k.mv_size == PARK_KEY_LEN &&
	    ((const uint8_t *)k.mv_data)[0] == shard) {
		struct park_ent e;

		park_key_get(k.mv_data, &e);
		if (n == max || e.next_try_us >= horizon_us) {
			more = true;
			break;
		}
		ents[n++] = e;
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	cur = NULL;
	if (rc != 0 && rc != MDB_NOTFOUND)
		goto lmdb;
	err = take_and_hand(qi, txn, ents, n, fn, arg);
	free(ents);
	if (err != 0)
		return err;
	*left = more;
	return (int)n;
lmdb:
	err = queue_lmdb_err(rc);
fail:
	if (cur != NULL)
		mdb_cursor_close(cur);
	if (txn != NULL)
		mdb_txn_abort(txn);
	free(ents);
	return err;
}

int
queue_index_unpark_qid(struct queue_index *qi, uint64_t qid,
    queue_unpark_fn fn, void *arg)
{
	struct park_ent *ents = NULL;
	size_t n = 0, cap = 1024;
	MDB_txn *txn = NULL;
	int rc, err;

	assert(qi != NULL && !qi->readonly && fn != NULL);
	if (qi->parked == 0)
		return 0;
	/* 65,535 recipients at most: grow until they all fit. */
	for (;;) {
		ents = malloc(cap * sizeof(*ents));
		if (ents == NULL)
			return -ENOMEM;
		err = queue_txn_begin(qi, 0, &txn);
		if (err != 0)
			goto fail;
		rc = park_of_qid(qi, txn, qid, ents, cap, &n);
		if (rc != 0)
			goto lmdb;
		if (n < cap)
			break;
		mdb_txn_abort(txn);
		txn = NULL;
		free(ents);
		cap *= 2;
	}
	err = take_and_hand(qi, txn, ents, n, fn, arg);
	free(ents);
	return err != 0 ? err : (int)n;
lmdb:
	err = queue_lmdb_err(rc);
fail:
	if (txn != NULL)
		mdb_txn_abort(txn);
	free(ents);
	return err;
}

int
queue_index_park_due_now(struct queue_index *qi)
{
	struct park_ent *ents;
	int rc = 0, err = 0;

	assert(qi != NULL && !qi->readonly);
	if (qi->parked == 0)
		return 0;
	ents = malloc(PARK_REWRITE_BATCH * sizeof(*ents));
	if (ents == NULL)
		return -ENOMEM;
	for (;;) {
		uint8_t kb[PARK_KEY_LEN];
		MDB_val k = { sizeof(kb), kb }, v;
		MDB_cursor *cur;
		MDB_txn *txn;
		size_t n = 0;

		err = queue_txn_begin(qi, 0, &txn);
		if (err != 0)
			break;
		rc = mdb_cursor_open(txn, qi->parked, &cur);
		if (rc == 0)
			rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
		while (rc == 0 && n < PARK_REWRITE_BATCH) {
			if (k.mv_size == PARK_KEY_LEN) {
				park_key_get(k.mv_data, &ents[n]);
				if (ents[n].next_try_us != 0)
					n++;
			}
			rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
		}
		if (rc == 0 || rc == MDB_NOTFOUND) {
			mdb_cursor_close(cur);
			rc = 0;
		}
		for (size_t i = 0; i < n && rc == 0; i++) {
			rc = park_del(qi, txn, &ents[i]);
			ents[i].next_try_us = 0;
			if (rc == 0)
				rc = park_put(qi, txn, &ents[i]);
		}
		if (rc == 0)
			rc = mdb_txn_commit(txn);
		else
			mdb_txn_abort(txn);
		if (rc != 0) {
			err = queue_lmdb_err(rc);
			break;
		}
		if (n < PARK_REWRITE_BATCH)
			break;
	}
	free(ents);
	return err;
}

int
queue_index_park_clear(struct queue_index *qi)
{
	MDB_txn *txn;
	int rc, err;

	assert(qi != NULL && !qi->readonly);
	if (qi->parked == 0)
		return 0;
	err = queue_txn_begin(qi, 0, &txn);
	if (err != 0)
		return err;
	rc = mdb_drop(txn, qi->parked, 0);
	if (rc == 0)
		rc = mdb_drop(txn, qi->parked_q, 0);
	if (rc == 0)
		rc = mdb_txn_commit(txn);
	else
		mdb_txn_abort(txn);
	return queue_lmdb_err(rc);
}

int
queue_index_parked(struct queue_index *qi, unsigned shard, uint64_t *n)
{
	uint8_t kb[PARK_KEY_LEN];
	MDB_val k = { sizeof(kb), kb }, v;
	struct park_ent start = { .shard = (uint8_t)shard };
	MDB_cursor *cur;
	MDB_txn *txn;
	MDB_stat st;
	int rc, err;

	*n = 0;
	if (qi->parked == 0)
		return 0;
	err = queue_txn_begin(qi, MDB_RDONLY, &txn);
	if (err != 0)
		return err;
	if (shard >= 64) {
		rc = mdb_stat(txn, qi->parked, &st);
		if (rc == 0)
			*n = st.ms_entries;
		mdb_txn_abort(txn);
		return queue_lmdb_err(rc);
	}
	rc = mdb_cursor_open(txn, qi->parked, &cur);
	if (rc == 0) {
		park_key(kb, &start);
		rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
		while (rc == 0 && k.mv_size == PARK_KEY_LEN &&
		    ((const uint8_t *)k.mv_data)[0] == shard) {
			++*n;
			rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
		}
		mdb_cursor_close(cur);
	}
	mdb_txn_abort(txn);
	return rc == MDB_NOTFOUND ? 0 : queue_lmdb_err(rc);
}
