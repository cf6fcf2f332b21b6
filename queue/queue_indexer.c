/*
 * queue_indexer.c - the indexer thread: applies what the committer handed
 * over to the LMDB index in one write transaction at a time (see
 * queue_commit.h for the pacing and the durability contract), cancels a
 * put and its removal that meet in one write, keeps room allocated ahead
 * of the index, and reclaims spool segments nothing indexed lives in.
 */
#include "queue_commit_int.h"

static struct segref *
segref_find(struct committer *c, uint64_t id, bool create)
{
	size_t mask = c->segs_cap - 1, i;
	struct segref *tomb = NULL;

	assert(id != 0 && id != SEGREF_DEAD);
	if (create && (c->segs_used + 1) * 2 > c->segs_cap) {
		/* Grow (and drop tombstones): rehash into a new table. */
		struct segref *old = c->segs;
		size_t oldcap = c->segs_cap, ncap = oldcap, live = 0;

		for (i = 0; i < oldcap; i++)
			live += old[i].id != 0 && old[i].id != SEGREF_DEAD;
		while ((live + 1) * 4 > ncap)
			ncap *= 2;
		c->segs = calloc(ncap, sizeof(*c->segs));
		if (c->segs == NULL)
			log_fatal("committer: out of memory");
		c->segs_cap = ncap;
		c->segs_used = 0;
		for (i = 0; i < oldcap; i++)
			if (old[i].id != 0 && old[i].id != SEGREF_DEAD) {
				*segref_find(c, old[i].id, true) = old[i];
			}
		free(old);
		mask = c->segs_cap - 1;
	}
	for (i = (size_t)(id * 0x9e3779b97f4a7c15ULL) & mask;;
	    i = (i + 1) & mask) {
		struct segref *r = &c->segs[i];

		if (r->id == id)
			return r;
		if (r->id == SEGREF_DEAD) {
			if (tomb == NULL)
				tomb = r;
			continue;
		}
		if (r->id == 0) {
			if (!create)
				return NULL;
			if (tomb != NULL)
				r = tomb;
			else
				c->segs_used++;
			r->id = id;
			r->count = 0;
			r->sealed = false;
			return r;
		}
	}
}

static void forget_add(struct committer *c, uint64_t seg);

/* Unlink a sealed segment nothing lives in any more. */
static void
segref_check(struct committer *c, struct segref *r)
{
	char name[SEG_PATH_MAX];

	if (!r->sealed || r->count > 0)
		return;
	seg_path(r->id, name, sizeof(name));
	if (unlinkat(c->segdir, strchr(name, '/') + 1, 0) < 0 &&
	    errno != ENOENT) {
		log_warn("queue: cannot remove %s: %s", name, strerror(errno));
	} else {
		atomic_fetch_add(&c->n_segs_removed, 1);
		forget_add(c, r->id);
	}
	r->id = SEGREF_DEAD;
}

static void
segref_put(struct committer *c, uint64_t seg)
{
	if (c->segdir >= 0)
		segref_find(c, seg, true)->count++;
}

static void
segref_gone(struct committer *c, uint64_t seg)
{
	struct segref *r;

	if (c->segdir < 0 || (r = segref_find(c, seg, false)) == NULL)
		return;
	if (r->count > 0)
		r->count--;
	segref_check(c, r);
}

static void
segref_seal(struct committer *c, uint64_t seg)
{
	struct segref *r;

	if (c->segdir < 0)
		return;
	r = segref_find(c, seg, true);
	r->sealed = true;
	segref_check(c, r);
}

int
ix_segref_count_msg(void *arg, const struct queue_msg *m)
{
	struct segref *r = segref_find(arg, m->meta.seg, true);

	r->count++;
	r->sealed = true;	/* shards only append to new segments */
	return 0;
}

/* ---- the indexer thread ---------------------------------------------- */


/* Room in the indexer's arrays for the work of the list at b. */
static void
ix_reserve(struct committer *c, const struct ixbatch *b)
{
	size_t np = 0, nu = 0, nl = c->nforget;

	for (; b != NULL; b = b->next) {
		np += b->nputs;
		nu += b->nups;
		nl += b->nlogs;
	}
	if (np > c->puts_cap) {
		free(c->puts);
		c->puts_cap = np * 2;
		c->puts = malloc(c->puts_cap * sizeof(*c->puts));
	}
	if (nu > c->ups_cap) {
		free(c->ups);
		free(c->removed);
		c->ups_cap = nu * 2;
		c->ups = malloc(c->ups_cap * sizeof(*c->ups));
		c->removed = malloc(c->ups_cap * sizeof(*c->removed));
	}
	nl += np;	/* ix_cancel() turns a put into a log position */
	if (nl > c->logs_cap) {
		free(c->logs);
		c->logs_cap = nl * 2;
		c->logs = malloc(c->logs_cap * sizeof(*c->logs));
	}
	if ((np > 0 && c->puts == NULL) || (nu > 0 && (c->ups == NULL ||
	    c->removed == NULL)) || (nl > 0 && c->logs == NULL))
		log_fatal("committer: out of memory");
}

static void
forget_add(struct committer *c, uint64_t seg)
{
	if (c->nforget == c->forget_cap) {
		size_t cap = c->forget_cap ? c->forget_cap * 2 : 64;
		uint64_t *f = realloc(c->forget, cap * sizeof(*f));

		if (f == NULL)
			log_fatal("committer: out of memory");
		c->forget = f;
		c->forget_cap = cap;
	}
	c->forget[c->nforget++] = seg;
}

/*
 * Make the unlinks so far durable, so that their log entries may go: a
 * segment that came back after a crash without its entry would be
 * replayed from the start. Only every FORGET_BATCH segments, or when idle.
 */
static void
forget_sync(struct committer *c, bool idle)
{
	if (c->nforget == c->nforget_synced ||
	    (!idle && c->nforget - c->nforget_synced < FORGET_BATCH))
		return;
	if (fsync(c->segdir) < 0) {
		log_warn("queue: fsync of the segment directory: %s",
		    strerror(errno));
		return;
	}
	c->nforget_synced = c->nforget;
}

/* Refuse new messages while index writes fail or the index has no room. */
static void
refuse_update(struct committer *c)
{
	int werr = atomic_load(&c->write_err);

	atomic_store(&c->index_err, werr != 0 ? werr :
	    c->room_short ? QUEUE_EFULL : 0);
}

/*
 * Keep room on the disk for the index (queue_index_reserve()): while it
 * cannot be had, new messages are refused, so that the index can still
 * take every message acknowledged so far.
 */
void
ix_room_check(struct committer *c)
{
	int rc = queue_index_reserve(c->qi, 0);
	bool short_now = rc == -ENOSPC || rc == -EDQUOT;

	if (rc != 0 && !short_now)
		log_warn("queue: cannot reserve room for the index: %s",
		    strerror(-rc));
	if (short_now == c->room_short)
		return;
	c->room_short = short_now;
	if (short_now)
		log_warn("queue: the disk is nearly full: new messages are "
		    "refused until there is room for the index");
	else
		log_info("queue: room for the index again");
	refuse_update(c);
}

static int
ixq_cmp(const void *a, const void *b)
{
	uint64_t x = ((const struct ixq *)a)->qid;
	uint64_t y = ((const struct ixq *)b)->qid;

	return x < y ? -1 : x > y;
}

static int
ixc_cmp(const void *a, const void *b)
{
	const struct ixc *x = a, *y = b;

	if (x->qid != y->qid)
		return x->qid < y->qid ? -1 : 1;
	if (x->idx != y->idx)
		return x->idx < y->idx ? -1 : 1;
	return x->ord < y->ord ? -1 : x->ord > y->ord;
}

static struct ixq *
ixq_find(struct committer *c, size_t n, uint64_t qid)
{
	struct ixq key = { .qid = qid };

	return bsearch(&key, c->cq, n, sizeof(*c->cq), ixq_cmp);
}

/*
 * A message put and finished in the same write (every recipient's last
 * update there delivered or bounced: delivery was quicker than the
 * indexer's interval) would be inserted and deleted in one transaction.
 * Leave both out: drop its put and its updates from c->puts/c->ups, and
 * in place of the put move its segment's log position past its record,
 * exactly as the put would have. Recovery then sees what it would have
 * seen after the insert and delete: the record behind its position, not
 * replayed, and its mark (if any) behind its own. A message touched by
 * anything but recipient updates (a park, an operator's command) is
 * written as usual. *np, *nu, *nl are updated; returns the messages left
 * out. Nothing is left out when the work arrays cannot be had.
 */
static size_t
ix_cancel(struct committer *c, size_t *np, size_t *nu, size_t *nl)
{
	size_t nq = *np, ncx = 0, ncan = 0, kp = 0, ku = 0;

	if (*np == 0 || *nu == 0)
		return 0;
	if (nq > c->cq_cap) {
		free(c->cq);
		c->cq_cap = nq * 2;
		c->cq = malloc(c->cq_cap * sizeof(*c->cq));
	}
	if (*nu > c->cx_cap) {
		free(c->cx);
		c->cx_cap = *nu * 2;
		c->cx = malloc(c->cx_cap * sizeof(*c->cx));
	}
	if (c->cq == NULL || c->cx == NULL) {
		free(c->cq);
		free(c->cx);
		c->cq = NULL;
		c->cx = NULL;
		c->cq_cap = c->cx_cap = 0;
		return 0;
	}
	for (size_t i = 0; i < nq; i++)
		c->cq[i] = (struct ixq){ .qid = c->puts[i].qid,
		    .nrcpt = c->puts[i].nrcpt };
	qsort(c->cq, nq, sizeof(*c->cq), ixq_cmp);
	for (size_t i = 0; i < *nu; i++) {
		const struct queue_update *u = &c->ups[i];
		struct ixq *q = ixq_find(c, nq, u->qid);

		if (q == NULL)
			continue;
		if (u->kind != QUEUE_UPD_RCPT) {
			q->keep = true;
			continue;
		}
		c->cx[ncx++] = (struct ixc){ .qid = u->qid, .ord = (uint32_t)i,
		    .idx = u->idx, .final = u->state == RCPT_DELIVERED ||
		    u->state == RCPT_BOUNCED };
	}
	if (ncx == 0)
		return 0;
	/* Per recipient, its last update says. */
	qsort(c->cx, ncx, sizeof(*c->cx), ixc_cmp);
	for (size_t i = 0; i < ncx; i++) {
		struct ixq *q;

		if (i + 1 < ncx && c->cx[i + 1].qid == c->cx[i].qid &&
		    c->cx[i + 1].idx == c->cx[i].idx)
			continue;
		q = ixq_find(c, nq, c->cx[i].qid);
		assert(q != NULL);
		if (c->cx[i].final && c->cx[i].idx < q->nrcpt)
			q->nfinal++;
	}
	for (size_t i = 0; i < nq; i++) {
		c->cq[i].cancel = !c->cq[i].keep && c->cq[i].nrcpt > 0 &&
		    c->cq[i].nfinal == c->cq[i].nrcpt;
		ncan += c->cq[i].cancel;
	}
	if (ncan == 0)
		return 0;
	for (size_t i = 0; i < *np; i++) {
		const struct queue_put *p = &c->puts[i];

		if (ixq_find(c, nq, p->qid)->cancel) {
			assert(*nl < c->logs_cap);
			c->logs[(*nl)++] = (struct queue_logpos){ p->seg,
			    p->offset + p->rec_len };
			continue;
		}
		if (kp != i)
			c->puts[kp] = *p;
		kp++;
	}
	for (size_t i = 0; i < *nu; i++) {
		const struct ixq *q = ixq_find(c, nq, c->ups[i].qid);

		if (q != NULL && q->cancel)
			continue;
		if (ku != i)
			c->ups[ku] = c->ups[i];
		ku++;
	}
	assert(*np - kp == ncan);
	*np = kp;
	*nu = ku;
	return ncan;
}

/*
 * One index write for the whole list at b: every put, every update, the
 * log positions, and the log entries of segments whose unlink is durable.
 * Returns 0 (and accounts for it) or the error.
 */
static int
ix_write(struct committer *c, const struct ixbatch *b)
{
	size_t np = 0, nu = 0, nl = 0, nrem = 0, nf = c->nforget_synced;
	size_t ncan;
	uint64_t t0;
	int rc;

	ix_reserve(c, b);
	/* (memcpy must not see the NULL of an array never needed yet.) */
	for (const struct ixbatch *x = b; x != NULL; x = x->next) {
		if (x->nputs > 0)
			memcpy(c->puts + np, x->puts,
			    x->nputs * sizeof(*x->puts));
		np += x->nputs;
		if (x->nups > 0)
			memcpy(c->ups + nu, x->ups, x->nups * sizeof(*x->ups));
		nu += x->nups;
		if (x->nlogs > 0)
			memcpy(c->logs + nl, x->logs,
			    x->nlogs * sizeof(*x->logs));
		nl += x->nlogs;
	}
	ncan = ix_cancel(c, &np, &nu, &nl);
	for (size_t i = 0; i < nf; i++)
		c->logs[nl++] = (struct queue_logpos){ c->forget[i],
		    QUEUE_LOG_FORGET };
	if (np + nu + nl == 0)
		return 0;
	t0 = clock_mono_us();
	rc = queue_index_write(c->qi, c->puts, np, c->ups, nu, c->logs, nl,
	    c->removed, &nrem);
	atomic_fetch_add(&c->write_us, clock_mono_us() - t0);
	if (rc != 0)
		return rc;
	atomic_fetch_add(&c->n_writes, 1);
	if (c->nforget > nf)
		memmove(c->forget, c->forget + nf,
		    (c->nforget - nf) * sizeof(*c->forget));
	c->nforget -= nf;
	c->nforget_synced = 0;
	for (size_t i = 0; i < np; i++)
		segref_put(c, c->puts[i].seg);
	for (size_t i = 0; i < nrem; i++)
		segref_gone(c, c->removed[i].seg);
	for (const struct ixbatch *x = b; x != NULL; x = x->next)
		for (size_t i = 0; i < x->nseals; i++)
			segref_seal(c, x->seals[i]);
	atomic_fetch_add(&c->n_messages, np);
	atomic_fetch_add(&c->n_updates, nu);
	atomic_fetch_add(&c->n_removed, nrem + ncan);
	atomic_fetch_add(&c->n_cancelled, ncan);
	return 0;
}

void
ix_free(struct ixbatch *b)
{
	while (b != NULL) {
		struct ixbatch *next = b->next;

		free(b);
		b = next;
	}
}

/*
 * Index what the committer handed over, all of it in one write each time
 * round. While writes fail, keep the work, tell the committer (which then
 * refuses new messages) and try again after a growing wait; on stop, give
 * up after one more try: the segments hold what was acknowledged, and the
 * next start replays it.
 */
void *
ix_main(void *arg)
{
	struct committer *c = arg;
	struct ixbatch *b = NULL, **tail = &b;
	unsigned wait_ms = 0;
	uint64_t next_us = 0;
	bool stopping = false;

	thread_name("index", -1);
	for (;;) {
		size_t nputs = 0, nbatches = 0;
		int rc;

		pthread_mutex_lock(&c->mu);
		if (b == NULL && c->ihead == NULL && !c->istop) {
			pthread_mutex_unlock(&c->mu);
			/* Idle: let the log entries of removed segments go. */
			forget_sync(c, true);
			if (c->nforget_synced > 0 && ix_write(c, NULL) != 0)
				log_warn("queue: cannot forget removed "
				    "segments now");
			pthread_mutex_lock(&c->mu);
			c->iidle = true;
			while (c->ihead == NULL && !c->istop) {
				struct timespec ts;

				if (!c->room_short) {
					pthread_cond_wait(&c->work, &c->mu);
					continue;
				}
				/* Short of room: look again now and then. */
				ts = abs_mono(clock_mono_us() + ROOM_RECHECK_US);
				pthread_cond_timedwait(&c->work, &c->mu, &ts);
				pthread_mutex_unlock(&c->mu);
				ix_room_check(c);
				pthread_mutex_lock(&c->mu);
			}
			c->iidle = false;
		}
		/* Let the log's syncs have the disk for a while: what comes
		 * meanwhile joins this write. */
		while (!c->istop && !c->urgent && c->backlog < INDEX_EAGER &&
		    clock_mono_us() < next_us) {
			struct timespec ts = abs_mono(next_us);

			pthread_cond_timedwait(&c->work, &c->mu, &ts);
		}
		c->urgent = false;
		if (c->ihead != NULL) {
			*tail = c->ihead;
			tail = c->itail;
			c->ihead = NULL;
			c->itail = &c->ihead;
		}
		stopping = c->istop;
		pthread_mutex_unlock(&c->mu);
		if (b == NULL) {
			if (stopping)
				break;
			continue;
		}
		for (struct ixbatch *x = b; x != NULL; x = x->next) {
			nputs += x->nputs;
			nbatches++;
		}
		forget_sync(c, false);
		ix_room_check(c);
		next_us = clock_mono_us() + INDEX_INTERVAL_US;
		/*
		 * All of it or none: acknowledged messages are never left
		 * out, and a DSN stays in one write with its bounces. A
		 * failure that does not pass (LMDB broken) keeps new mail
		 * refused until a restart, which replays the log.
		 */
		rc = ix_write(c, b);
		if (rc == 0) {
			if (atomic_load(&c->write_err) != 0)
				log_info("queue: index writes work again");
			atomic_store(&c->write_err, 0);
			refuse_update(c);
			wait_ms = 0;
			ix_free(b);
			b = NULL;
			tail = &b;
			pthread_mutex_lock(&c->mu);
			c->backlog -= nputs;
			c->indexed += nbatches;
			pthread_cond_signal(&c->room);
			pthread_cond_broadcast(&c->done);
			pthread_mutex_unlock(&c->mu);
			continue;
		}
		if (atomic_load(&c->write_err) == 0)
			log_warn("queue: index write failed: %s; new messages "
			    "are refused until it works", queue_strerror(rc));
		atomic_store(&c->write_err, rc == QUEUE_EFULL ? QUEUE_EFULL :
		    QUEUE_EINDEX);
		refuse_update(c);
		pthread_mutex_lock(&c->mu);
		pthread_cond_broadcast(&c->room);
		pthread_mutex_unlock(&c->mu);
		if (stopping) {
			log_warn("queue: %zu acknowledged message(s) not "
			    "indexed: the next start replays them from their "
			    "segments", nputs);
			ix_free(b);
			b = NULL;
			break;
		}
		wait_ms = wait_ms == 0 ? INDEX_RETRY_FIRST_MS :
		    wait_ms * 2 > INDEX_RETRY_LAST_MS ? INDEX_RETRY_LAST_MS :
		    wait_ms * 2;
		poll(NULL, 0, (int)wait_ms);
	}
	/* The last unlinks' entries: best effort, recovery drops them too. */
	forget_sync(c, true);
	if (c->nforget_synced > 0)
		(void)ix_write(c, NULL);
	return NULL;
}

