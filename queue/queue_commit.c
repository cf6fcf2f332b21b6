/*
 * queue_commit.c - the committer thread (the indexer's is in
 * queue_indexer.c), and starting and stopping both; see queue_commit.h.
 */
#include "queue_commit_int.h"
#include "../lib/efd.h"

static void
efd_signal(int fd)
{
	int rc = efd_wake(fd);

	if (rc < 0)
		log_warn("committer: eventfd write: %s", strerror(-rc));
}

/* The error segment seg failed with, or 0. */
static int
seg_failed_err(const struct committer *c, uint64_t seg)
{
	/* Once any segment failed this runs for every put: only the slots
	 * in use, most often one or two. */
	for (unsigned i = 0; i < c->nfailed_used; i++)
		if (c->failed[i].seg == seg)
			return c->failed[i].err;
	return 0;
}

/* Every job of segment seg from now on fails with err, unwritten. */
static void
seg_mark_failed(struct committer *c, uint64_t seg, int err)
{
	c->failed[c->nfailed].seg = seg;
	c->failed[c->nfailed].err = err;
	c->nfailed = (c->nfailed + 1) % COMMIT_FAILED_SEGS;
	if (c->nfailed_used < COMMIT_FAILED_SEGS)
		c->nfailed_used++;
}

/* Does the job have a record to write: a put, or a journaled update? */
static bool
job_writes(const struct commit_job *job)
{
	return job->kind == COMMIT_PUT ||
	    (job->kind == COMMIT_UPDATE && job->put.rec_len > 0);
}

static uint32_t
rec_bytes(const struct commit_job *job)
{
	return (uint32_t)(job->iov[0].iov_len + job->iov[1].iov_len);
}

#define IO_SYNC_BIT (1ull << 63)	/* user_data: a sync, not a write */

/*
 * A record's write finished with res (bytes or -errno). On a regular file
 * a short write means the device or quota filled up: -ENOSPC. The chain's
 * first real error is kept (the writes after it come back -ECANCELED).
 */
static void
write_done(struct committer *c, struct commit_job *job, int res)
{
	job->io_res = res == (int)rec_bytes(job) ? 0 : res < 0 ? res : -ENOSPC;
	if (job->io_res != 0 && job->io_res != -ECANCELED &&
	    c->sync[job->chain].err == 0)
		c->sync[job->chain].err = job->io_res;
}

/*
 * A run's writev finished with res: the bytes written cover whole records
 * from the first on; a record they cover only in part, and the ones after
 * it, were not written.
 */
static void
run_done(struct committer *c, struct commit_job **jobs, const struct wrun *r,
    ssize_t res)
{
	size_t left = res > 0 ? (size_t)res : 0;

	for (uint32_t j = 0; j < r->n; j++) {
		struct commit_job *job = jobs[c->runjob[r->first + j]];
		size_t len = rec_bytes(job);

		if (res < 0) {
			write_done(c, job, (int)res);
		} else {
			write_done(c, job, (int)(left < len ? left : len));
			left -= left < len ? left : len;
		}
	}
}

/*
 * One chain per segment jobs[0..n) go to: a writev of each run of records
 * that follow each other in the file (most often all of the segment's in
 * the batch: one write, one hand-off to the kernel's workers), then an
 * fdatasync, linked so the sync covers every write and a failed write
 * stops the rest. Jobs of a segment that failed before fail at once
 * (with its error, not written). Without a ring (it could not be set up)
 * the writes and syncs run here, one by one.
 */
static void
io_start(struct committer *c, struct commit_job **jobs, size_t n)
{
	struct io_uring_sqe *sqe;
	unsigned k;
	size_t niov = 0, nrj = 0;
	int err;

	c->nsync = 0;
	c->nruns = 0;
	for (size_t i = 0; i < n; i++) {
		struct commit_job *job = jobs[i];

		if (!job_writes(job))
			continue;
		assert(job->seg_fd >= 0);
		/* A mark record is its iovecs. */
		assert(job->kind != COMMIT_UPDATE ||
		    rec_bytes(job) == job->put.rec_len);
		job->io_res = 1;	/* in flight */
		if ((err = seg_failed_err(c, job->put.seg)) != 0) {
			job->seg_failed = true;
			if (job->kind == COMMIT_PUT)
				job->put.result = err;
			job->io_res = err;
			continue;
		}
		for (k = 0; k < c->nsync && c->sync[k].fd != job->seg_fd; k++)
			;
		if (k == c->nsync) {
			if (c->nsync == COMMIT_SYNC_MAX)
				log_panic("committer: more than %d segments "
				    "in a batch", COMMIT_SYNC_MAX);
			c->sync[k].fd = job->seg_fd;
			c->sync[k].err = 0;
			c->sync[k].res = 1;
			c->nsync++;
		}
		job->chain = (uint16_t)k;
	}
	for (k = 0; k < c->nsync; k++) {
		struct wrun *r = NULL;
		uint64_t end = 0;

		for (size_t i = 0; i < n; i++) {
			struct commit_job *job = jobs[i];

			if (!job_writes(job) || job->io_res != 1 ||
			    job->chain != k)
				continue;
			if (r == NULL || job->put.offset != end ||
			    r->n * 2 + 2 > RUN_IOV_MAX ||
			    end - r->offset + rec_bytes(job) > RUN_BYTES_MAX) {
				r = &c->runs[c->nruns++];
				r->first = (uint32_t)nrj;
				r->n = 0;
				r->iov = (uint32_t)niov;
				r->chain = (uint16_t)k;
				r->offset = job->put.offset;
			}
			c->runjob[nrj++] = (uint32_t)i;
			r->n++;
			c->iov[niov++] = job->iov[0];
			c->iov[niov++] = job->iov[1];
			end = job->put.offset + rec_bytes(job);
		}
	}
	for (size_t ri = 0; ri < c->nruns; ri++) {
		struct wrun *r = &c->runs[ri];
		int fd = c->sync[r->chain].fd;
		bool last = ri + 1 == c->nruns ||
		    c->runs[ri + 1].chain != r->chain;

		if (!c->ring_ok) {
			ssize_t w = pwritev(fd, c->iov + r->iov, (int)r->n * 2,
			    (off_t)r->offset);

			run_done(c, jobs, r, w < 0 ? -errno : w);
			if (last)
				c->sync[r->chain].res =
				    fdatasync(fd) < 0 ? -errno : 0;
			continue;
		}
		sqe = io_uring_get_sqe(&c->ring);
		assert(sqe != NULL);	/* sized for a whole batch */
		io_uring_prep_writev(sqe, fd, c->iov + r->iov, r->n * 2,
		    r->offset);
		io_uring_sqe_set_data64(sqe, ri);
		sqe->flags |= IOSQE_IO_LINK;
		if (!last)
			continue;
		sqe = io_uring_get_sqe(&c->ring);
		assert(sqe != NULL);
		io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
		io_uring_sqe_set_data64(sqe, IO_SYNC_BIT | r->chain);
	}
	/* Every SQE must reach the kernel, or io_wait() waits forever. */
	while (c->ring_ok && io_uring_sq_ready(&c->ring) > 0) {
		int rc = io_uring_submit(&c->ring);

		if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
			log_fatal("committer: io_uring_submit: %s",
			    strerror(-rc));
	}
}

/*
 * Wait for the writes and syncs io_start() began (a sync completes after
 * the writes linked before it). One wait for all that is left, and then
 * every completion that is in: one io_uring_enter() a batch instead of
 * one per segment's write and one per sync.
 */
static void
io_wait(struct committer *c, struct commit_job **jobs)
{
	struct io_uring_cqe *cqe;
	size_t left = 0;

	for (unsigned k = 0; k < c->nsync; k++)
		left += c->sync[k].res == 1;
	if (c->ring_ok)
		left += c->nruns;
	while (left > 0) {
		int rc = io_uring_wait_cqe_nr(&c->ring, &cqe, (unsigned)left);
		unsigned head, seen = 0;

		if (rc == -EINTR)
			continue;
		if (rc < 0)
			log_fatal("committer: io_uring_wait_cqe_nr: %s",
			    strerror(-rc));
		io_uring_for_each_cqe(&c->ring, head, cqe) {
			uint64_t ud = cqe->user_data;

			if (ud & IO_SYNC_BIT) {
				assert((ud & ~IO_SYNC_BIT) < c->nsync);
				c->sync[ud & ~IO_SYNC_BIT].res = cqe->res;
			} else {
				assert(ud < c->nruns);
				run_done(c, jobs, &c->runs[ud], cqe->res);
			}
			seen++;
		}
		assert(seen <= left);
		io_uring_cq_advance(&c->ring, seen);
		left -= seen;
	}
}

/*
 * After the writes and syncs: a job whose write failed fails with that
 * error, and so does every other job of its chain (a chain with a failed
 * write was cancelled from there on, its sync too: none of its records is
 * acknowledged, each gets the chain's first error); one whose segment's
 * sync failed fails too. Any failure
 * retires the segment (every later job of it fails with the same error
 * without being written): after a failed sync nothing written to it is
 * trusted, and after a failed write (a full disk) another record after
 * the hole would be one recovery cannot reach, since it replays a
 * segment's log only up to the first record that is not whole. A
 * journaled update's failure only means its mark is not durable: its
 * updates are still indexed, and its result stays 0.
 */
static void
io_check(struct committer *c, struct commit_job **jobs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct commit_job *job = jobs[i];
		int err = job->io_res, sync_res;

		if (!job_writes(job) || job->seg_failed)
			continue;
		if (c->sync[job->chain].err != 0)
			err = c->sync[job->chain].err;
		sync_res = c->sync[job->chain].res;
		if (err == 0 && sync_res < 0)
			err = sync_res == -ECANCELED ? -EIO : sync_res;
		if (err == 0)
			continue;
		job->seg_failed = true;
		if (job->kind == COMMIT_PUT)
			job->put.result = err;
		if (seg_failed_err(c, job->put.seg) == 0) {
			log_warn("queue: writing segment %016llx: %s",
			    (unsigned long long)job->put.seg, strerror(-err));
			seg_mark_failed(c, job->put.seg, err);
		}
	}
}

/* ---- the hand-over to the indexer ------------------------------------ */

/*
 * Move segment seg's position to end in b: positions only move forward
 * (sealed is the furthest), so one entry per segment, the furthest, is
 * the same write. A batch touches a few segments and journals a mark
 * record per delivery attempt: keep it to one entry each.
 */
static void
logpos_add(struct ixbatch *b, uint64_t seg, uint64_t end)
{
	for (size_t i = 0; i < b->nlogs; i++)
		if (b->logs[i].seg == seg &&
		    b->logs[i].end != QUEUE_LOG_FORGET) {
			if (end > b->logs[i].end)
				b->logs[i].end = end;
			return;
		}
	b->logs[b->nlogs++] = (struct queue_logpos){ seg, end };
}

/*
 * The batch's share of the index work, or NULL when it has none. Only
 * puts that are written and synced go in (with a DSN's updates), all
 * update jobs' updates, the position past each journaled update's mark
 * record, a sealed log position for each seal and for each segment that
 * failed in this batch.
 */
static struct ixbatch *
ixbatch_make(struct commit_job **jobs, size_t n)
{
	size_t np = 0, nu = 0, nl = 0, ns = 0, envb = 0, size;
	struct ixbatch *b;
	uint8_t *p;

	for (size_t i = 0; i < n; i++) {
		const struct commit_job *job = jobs[i];

		if (job->kind == COMMIT_SEAL) {
			nl++;
			ns++;
		} else if (job->kind == COMMIT_UPDATE) {
			nu += job->nups;
			nl += job_writes(job);
		} else if (job->put.result == 0) {
			np++;
			nu += job->nups;
			envb += job->put.env_len;
		} else if (job->seg_failed) {
			nl++;
		}
	}
	if (np + nu + nl == 0)
		return NULL;
	size = sizeof(*b) + np * sizeof(*b->puts) + nu * sizeof(*b->ups) +
	    nl * sizeof(*b->logs) + ns * sizeof(*b->seals) + envb;
	if ((b = malloc(size)) == NULL)
		log_fatal("committer: out of memory");
	memset(b, 0, sizeof(*b));
	p = (uint8_t *)(b + 1);
	b->puts = (struct queue_put *)p;
	p += np * sizeof(*b->puts);
	b->ups = (struct queue_update *)p;
	p += nu * sizeof(*b->ups);
	b->logs = (struct queue_logpos *)p;
	p += nl * sizeof(*b->logs);
	b->seals = (uint64_t *)p;
	p += ns * sizeof(*b->seals);
	b->env = p;
	for (size_t i = 0; i < n; i++) {
		const struct commit_job *job = jobs[i];

		if (job->kind == COMMIT_SEAL) {
			b->logs[b->nlogs++] = (struct queue_logpos){
				job->put.seg, QUEUE_LOG_SEALED };
			b->seals[b->nseals++] = job->put.seg;
			continue;
		}
		if (job->kind == COMMIT_PUT && job->put.result != 0) {
			if (job->seg_failed)
				b->logs[b->nlogs++] = (struct queue_logpos){
					job->put.seg, QUEUE_LOG_SEALED };
			continue;
		}
		if (job->kind == COMMIT_UPDATE && job_writes(job))
			logpos_add(b, job->put.seg, job->seg_failed ?
			    QUEUE_LOG_SEALED : job->put.offset +
			    job->put.rec_len);
		if (job->kind == COMMIT_PUT) {
			struct queue_put *put = &b->puts[b->nputs++];

			*put = job->put;
			memcpy(p, job->put.env, job->put.env_len);
			put->env = p;
			p += job->put.env_len;
		}
		if (job->nups > 0) {
			memcpy(b->ups + b->nups, job->ups,
			    job->nups * sizeof(*job->ups));
			b->nups += job->nups;
		}
	}
	return b;
}

/*
 * Queue b for the indexer, first waiting while the backlog is full (the
 * shards keep running meanwhile; their jobs wait in the rings).
 */
static void
ixbatch_hand(struct committer *c, struct ixbatch *b)
{
	pthread_mutex_lock(&c->mu);
	/* Not while writes fail: new puts are refused then, and a failure
	 * that does not pass would hold the committer (and a stop) forever. */
	while (c->backlog >= INDEX_BACKLOG_MAX &&
	    atomic_load(&c->write_err) == 0 && !atomic_load(&c->stop))
		pthread_cond_wait(&c->room, &c->mu);
	b->next = NULL;
	*c->itail = b;
	c->itail = &b->next;
	c->backlog += b->nputs;
	c->handed++;
	/* Idle, or pacing with enough waiting to write now. */
	if (c->iidle || (c->backlog >= INDEX_EAGER &&
	    c->backlog - b->nputs < INDEX_EAGER))
		pthread_cond_signal(&c->work);
	pthread_mutex_unlock(&c->mu);
}

/* ---- the committer thread -------------------------------------------- */

/* Write, sync and hand back one batch; hand its index work over. */
static void
commit_batch(struct committer *c, size_t n)
{
	bool wake[64] = { false };
	struct ixbatch *b;
	int ierr = atomic_load(&c->index_err);
	uint64_t t0;
	size_t i;

	for (i = 0; i < n; i++) {
		struct commit_job *job = c->batch[i];

		job->put.result = 0;
		job->seg_failed = false;
		/*
		 * While the index cannot take more, nothing new is
		 * acknowledged (shards refuse before placing a record; these
		 * were placed before they knew). Not writing leaves a hole,
		 * so the segment fails: nothing after it is acknowledged.
		 */
		if (ierr != 0 && job->kind == COMMIT_PUT &&
		    seg_failed_err(c, job->put.seg) == 0)
			seg_mark_failed(c, job->put.seg, ierr);
	}
	t0 = clock_mono_us();
	io_start(c, c->batch, n);
	io_wait(c, c->batch);
	t0 = clock_mono_us() - t0;
	atomic_fetch_add(&c->sync_us, t0);
	stats_observe(&stats_commit.batch, STATS_H_BATCH, n);
	stats_observe(&stats_commit.sync, STATS_H_SYNC_US, t0);
	io_check(c, c->batch, n);
	/* The shard logs each failed message with its queue id. */
	for (i = 0; i < n; i++)
		if (c->batch[i]->kind == COMMIT_PUT &&
		    c->batch[i]->put.result != 0)
			atomic_fetch_add(&c->n_failures, 1);
	/* Handed over before the jobs go back: an update a shard makes for
	 * one of these messages can only come after, so it is indexed after. */
	if ((b = ixbatch_make(c->batch, n)) != NULL)
		ixbatch_hand(c, b);
	for (i = 0; i < n; i++) {
		struct commit_job *job = c->batch[i];

		/*
		 * The shard drains its ring when woken: wake it, then wait
		 * for room. Without the wake both sides would wait forever.
		 */
		while (!spsc_push(&c->from[job->shard], job)) {
			efd_signal(c->shard_efd[job->shard]);
			sched_yield();
		}
		wake[job->shard] = true;
	}
	/* The pushes, then the flags: see committer_shard_waits(). A shard
	 * that runs takes its jobs before it waits again. */
	atomic_thread_fence(memory_order_seq_cst);
	for (i = 0; i < c->nshards; i++)
		if (wake[i] && atomic_load_explicit(&c->shard_waits[i],
		    memory_order_relaxed))
			efd_signal(c->shard_efd[i]);
	atomic_fetch_add(&c->n_batches, 1);
}

/* Take what every shard has waiting, up to the batch limit. */
static size_t
gather(struct committer *c)
{
	struct commit_job *job;
	size_t n = 0;
	unsigned i;

	size_t mine;

	for (i = 0; i < c->nshards; i++)
		for (mine = 0; mine < COMMIT_RING && n < COMMIT_BATCH_MAX &&
		    (job = spsc_pop(&c->to[i])) != NULL; mine++)
			c->batch[n++] = job;
	return n;
}


static void *
committer_main(void *arg)
{
	struct committer *c = arg;
	struct pollfd pfd = { .fd = c->efd, .events = POLLIN };
	uint64_t v;
	size_t n;

	thread_name("commit", -1);
	for (;;) {
		int ready;

		/* Jobs that arrive while we write form the next batch. */
		while ((n = gather(c)) > 0)
			commit_batch(c, n);
		if (atomic_load(&c->stop))
			break;
		/*
		 * Only now may shards need to wake us: while we work they
		 * skip the eventfd write (a system call, and a wake-up of a
		 * thread that was not asleep). A job pushed before a shard
		 * could see the flag woke nobody, so look once more after
		 * setting it (the fences pair with committer_wake()'s).
		 */
		atomic_store(&c->asleep, true);
		atomic_thread_fence(memory_order_seq_cst);
		if ((n = gather(c)) > 0) {
			atomic_store(&c->asleep, false);
			commit_batch(c, n);
			continue;
		}
		ready = poll(&pfd, 1, -1);
		atomic_store(&c->asleep, false);
		if (ready > 0 && read(c->efd, &v, sizeof(v)) < 0 &&
		    errno != EINTR && errno != EAGAIN)
			log_fatal("committer: eventfd read: %s",
			    strerror(errno));
	}
	/* Stopping: what the shards handed over last is written too. */
	while ((n = gather(c)) > 0)
		commit_batch(c, n);
	return NULL;
}

/* ---- start, stop ----------------------------------------------------- */

int
committer_start(struct committer **out, struct queue_index *qi,
    unsigned nshards, const int *shard_efd, const char *spool)
{
	struct committer *c;
	unsigned i;
	int rc = -ENOMEM;

	assert(nshards > 0 && nshards <= 64);
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return -ENOMEM;
	c->qi = qi;
	c->nshards = nshards;
	c->shard_efd = shard_efd;
	c->efd = -1;
	c->segdir = -1;
	c->itail = &c->ihead;
	pthread_mutex_init(&c->mu, NULL);
	{
		pthread_condattr_t ca;

		/* The indexer's paced waits count in clock_mono_us() terms. */
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&c->work, &ca);
		pthread_cond_init(&c->done, &ca);
		pthread_condattr_destroy(&ca);
	}
	pthread_cond_init(&c->room, NULL);
	atomic_init(&c->index_err, 0);
	atomic_init(&c->write_err, 0);
	if (spool != NULL) {
		char path[4096];

		snprintf(path, sizeof(path), "%s/seg", spool);
		c->segdir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		c->segs_cap = 64;
		c->segs = calloc(c->segs_cap, sizeof(*c->segs));
		if (c->segdir < 0 || c->segs == NULL) {
			rc = c->segdir < 0 ? -errno : -ENOMEM;
			goto fail;
		}
		rc = queue_index_foreach(qi, ix_segref_count_msg, c);
		if (rc != 0)
			goto fail;
		rc = -ENOMEM;
	}
	c->to = calloc(nshards, sizeof(*c->to));
	c->from = calloc(nshards, sizeof(*c->from));
	c->batch = calloc(COMMIT_BATCH_MAX, sizeof(*c->batch));
	c->runs = calloc(COMMIT_BATCH_MAX, sizeof(*c->runs));
	c->runjob = calloc(COMMIT_BATCH_MAX, sizeof(*c->runjob));
	c->iov = calloc(2 * COMMIT_BATCH_MAX, sizeof(*c->iov));
	if (!c->to || !c->from || !c->batch || !c->runs || !c->runjob ||
	    !c->iov)
		goto fail;
	for (i = 0; i < nshards; i++)
		if (spsc_init(&c->to[i], COMMIT_RING) < 0 ||
		    spsc_init(&c->from[i], COMMIT_RING) < 0)
			goto fail;
	c->efd = eventfd(0, EFD_CLOEXEC);
	if (c->efd < 0) {
		rc = -errno;
		goto fail;
	}
	/* Without a ring the writes still happen, one by one. */
	rc = io_uring_queue_init(COMMIT_IO_RING, &c->ring, 0);
	if (rc < 0)
		log_warn("committer: no io_uring for segment writes (%s): "
		    "they run one by one", strerror(-rc));
	c->ring_ok = rc == 0;
	atomic_init(&c->stop, false);
	atomic_init(&c->asleep, false);
	for (i = 0; i < 64; i++)
		atomic_init(&c->shard_waits[i], true);
	ix_room_check(c);
	if ((rc = -pthread_create(&c->ithread, NULL, ix_main, c)) != 0)
		goto fail;
	if ((rc = -pthread_create(&c->thread, NULL, committer_main, c)) != 0) {
		pthread_mutex_lock(&c->mu);
		c->istop = true;
		pthread_cond_signal(&c->work);
		pthread_mutex_unlock(&c->mu);
		pthread_join(c->ithread, NULL);
		goto fail;
	}
	*out = c;
	return 0;
fail:
	if (c->ring_ok)
		io_uring_queue_exit(&c->ring);
	if (c->efd >= 0)
		close(c->efd);
	if (c->segdir >= 0)
		close(c->segdir);
	free(c->segs);
	for (i = 0; c->to && c->from && i < nshards; i++) {
		spsc_destroy(&c->to[i]);
		spsc_destroy(&c->from[i]);
	}
	free(c->to);
	free(c->from);
	free(c->batch);
	free(c->runs);
	free(c->runjob);
	free(c->iov);
	free(c->puts);
	free(c->ups);
	free(c->logs);
	free(c->removed);
	free(c->cx);
	free(c->cq);
	free(c->forget);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->work);
	pthread_cond_destroy(&c->room);
	pthread_cond_destroy(&c->done);
	free(c);
	return rc;
}

bool
committer_submit(struct committer *c, unsigned shard, struct commit_job *job)
{
	assert(shard < c->nshards);
	assert(job->shard == shard);
	return spsc_push(&c->to[shard], job);
}

void
committer_wake(struct committer *c)
{
	/* The push before this call, then the flag: see committer_main(). */
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&c->asleep, memory_order_relaxed))
		efd_signal(c->efd);
}

struct commit_job *
committer_reap(struct committer *c, unsigned shard)
{
	assert(shard < c->nshards);
	return spsc_pop(&c->from[shard]);
}

void
committer_shard_waits(struct committer *c, unsigned shard, bool waits)
{
	assert(shard < c->nshards);
	atomic_store_explicit(&c->shard_waits[shard], waits,
	    memory_order_relaxed);
	/* The flag, then the look at the ring (committer_has_results()),
	 * against the committer's pushes, then its look at the flag. */
	if (waits)
		atomic_thread_fence(memory_order_seq_cst);
}

bool
committer_has_results(struct committer *c, unsigned shard)
{
	assert(shard < c->nshards);
	return !spsc_empty(&c->from[shard]);
}

void
committer_stop(struct committer *c)
{
	unsigned i;

	atomic_store(&c->stop, true);
	pthread_mutex_lock(&c->mu);
	pthread_cond_broadcast(&c->room);
	pthread_mutex_unlock(&c->mu);
	efd_signal(c->efd);
	pthread_join(c->thread, NULL);
	/* Everything is handed over: the indexer writes it and ends. */
	pthread_mutex_lock(&c->mu);
	c->istop = true;
	pthread_cond_signal(&c->work);
	pthread_mutex_unlock(&c->mu);
	pthread_join(c->ithread, NULL);
	for (i = 0; i < c->nshards; i++) {
		/* Every shard reaped its results before it stopped. */
		assert(spsc_empty(&c->from[i]));
		spsc_destroy(&c->to[i]);
		spsc_destroy(&c->from[i]);
	}
	close(c->efd);
	if (c->ring_ok)
		io_uring_queue_exit(&c->ring);
	if (c->segdir >= 0)
		close(c->segdir);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->work);
	pthread_cond_destroy(&c->room);
	pthread_cond_destroy(&c->done);
	free(c->segs);
	free(c->forget);
	free(c->puts);
	free(c->ups);
	free(c->logs);
	free(c->removed);
	free(c->cx);
	free(c->cq);
	free(c->to);
	free(c->from);
	free(c->batch);
	free(c->runs);
	free(c->runjob);
	free(c->iov);
	free(c);
}

int
committer_refusing(struct committer *c)
{
	return atomic_load(&c->index_err);
}

int
committer_index_sync(struct committer *c, unsigned timeout_ms)
{
	struct timespec ts = abs_mono(clock_mono_us() + (uint64_t)timeout_ms * 1000u);
	uint64_t ticket;
	int rc = 0;

	if (atomic_load(&c->write_err) != 0)
		return -EIO;	/* it tries again; nothing to wait for now */
	pthread_mutex_lock(&c->mu);
	ticket = c->handed;
	c->urgent = true;
	pthread_cond_signal(&c->work);
	while (c->indexed < ticket && rc == 0)
		rc = pthread_cond_timedwait(&c->done, &c->mu, &ts);
	rc = c->indexed >= ticket ? 0 : -ETIMEDOUT;
	pthread_mutex_unlock(&c->mu);
	return rc;
}

void
committer_stats(struct committer *c, struct committer_stats *st)
{
	st->batches = atomic_load(&c->n_batches);
	st->messages = atomic_load(&c->n_messages);
	st->failures = atomic_load(&c->n_failures);
	st->updates = atomic_load(&c->n_updates);
	st->removed = atomic_load(&c->n_removed);
	st->cancelled = atomic_load(&c->n_cancelled);
	st->segments_removed = atomic_load(&c->n_segs_removed);
	st->index_writes = atomic_load(&c->n_writes);
	st->write_us = atomic_load(&c->write_us);
	st->sync_us = atomic_load(&c->sync_us);
}
