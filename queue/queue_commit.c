/*
 * queue_commit.c - the committer thread; see queue_commit.h.
 */
#include "queue_commit.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "../engine/log.h"
#include "../engine/spsc.h"

/* Ring capacity per shard and direction; also the largest batch per shard. */
#define COMMIT_RING 4096
/* Most jobs handled in one LMDB transaction. */
#define COMMIT_BATCH_MAX 8192
/*
 * Distinct segments written per batch: a shard has at most 16 segments
 * with jobs out (SHARD_SEGS in engine/shard.c), and there are at most 64
 * shards.
 */
#define COMMIT_SYNC_MAX (64 * 16)
static_assert(COMMIT_SYNC_MAX <= UINT16_MAX, "a job's chain slot is 16 bits");
/* The ring holds a whole batch's writes and syncs. */
#define COMMIT_IO_RING (COMMIT_BATCH_MAX + COMMIT_SYNC_MAX)
/* Segments remembered as failed (a failure retires the segment at once,
 * so only jobs already placed in it can still arrive): as many as can
 * have jobs out. */
#define COMMIT_FAILED_SEGS COMMIT_SYNC_MAX
/* With an unconfirmed list left and nothing to do for this long, empty it. */
#define COMMIT_CONFIRM_IDLE_MS 1000

/*
 * Live segments: indexed messages per segment id, and whether its shard
 * has sealed it. Open addressing; a removed entry leaves a tombstone.
 */
struct segref {
	uint64_t id;		/* 0: empty; SEGREF_DEAD: tombstone */
	uint64_t count;
	bool sealed;
};
#define SEGREF_DEAD UINT64_MAX

struct committer {
	struct queue_index *qi;
	unsigned nshards;
	struct spsc *to;		/* shard -> committer, per shard */
	struct spsc *from;		/* committer -> shard, per shard */
	const int *shard_efd;
	int efd;
	atomic_bool stop;
	pthread_t thread;
	struct commit_job **batch;
	struct queue_put *puts;
	struct queue_update *ups;	/* gathered from every job */
	size_t ups_cap;
	struct queue_removed *removed;
	int segdir;			/* -1: no reclamation */
	struct segref *segs;
	size_t segs_cap, segs_used;	/* used counts tombstones too */
	_Atomic uint64_t n_batches, n_messages, n_failures, n_updates,
	    n_removed, n_segs_removed, write_us;
	struct io_uring ring;		/* segment writes and fdatasyncs */
	bool ring_ok;
	bool unconfirmed;		/* the last write indexed puts */
	/* The batch's write chains, one per segment: its descriptor, the
	 * first error of a write in it, and its sync's result (1: pending). */
	struct { int fd; int err; int res; } sync[COMMIT_SYNC_MAX];
	unsigned nsync;
	uint64_t failed_segs[COMMIT_FAILED_SEGS];
	unsigned nfailed;		/* next slot, round robin */
	bool any_failed;		/* failed_segs holds something */
	struct commit_job **defer;	/* puts indexed after their sync */
	struct queue_update *retry_dels;	/* removals still to write */
	size_t nretry, retry_cap;
};

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

/* Unlink a sealed segment nothing lives in any more. */
static void
segref_check(struct committer *c, struct segref *r)
{
	char name[SEG_PATH_MAX];

	if (!r->sealed || r->count > 0)
		return;
	seg_path(r->id, name, sizeof(name));
	if (unlinkat(c->segdir, strchr(name, '/') + 1, 0) < 0 &&
	    errno != ENOENT)
		log_warn("queue: cannot remove %s: %s", name, strerror(errno));
	else
		atomic_fetch_add(&c->n_segs_removed, 1);
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

static int
segref_count_msg(void *arg, const struct queue_msg *m)
{
	struct segref *r = segref_find(arg, m->meta.seg, true);

	r->count++;
	r->sealed = true;	/* shards only append to new segments */
	return 0;
}

static uint64_t
mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void
efd_signal(int fd)
{
	uint64_t one = 1;

	/* EAGAIN means the counter is already huge: the reader wakes. */
	if (write(fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("committer: eventfd write: %s", strerror(errno));
}

/*
 * A put not to index now: its segment failed before, its write did, or it
 * waits for its sync (deferred: a DSN, whose updates bounce recipients,
 * must not be indexed before its record is on disk, or a crash could
 * leave the bounces without the DSN).
 */
static bool
put_skipped(const struct commit_job *job)
{
	return job->kind == COMMIT_PUT &&
	    (job->seg_failed || job->io_res != 0 || job->deferred);
}

/* Room for n updates in c->ups, and as many removals in c->removed. */
static void
ups_reserve(struct committer *c, size_t n)
{
	size_t cap = c->ups_cap ? c->ups_cap : 1024;

	if (n <= c->ups_cap)
		return;
	while (cap < n)
		cap *= 2;
	free(c->ups);
	free(c->removed);
	c->ups = malloc(cap * sizeof(*c->ups));
	c->removed = malloc(cap * sizeof(*c->removed));
	if (c->ups == NULL || c->removed == NULL)
		log_fatal("committer: out of memory");
	c->ups_cap = cap;
}

/*
 * Index jobs[0..n) in one transaction: their puts and their updates. On
 * success, account for what it added and removed. Returns 0 or the error.
 */
static int
write_jobs(struct committer *c, struct commit_job **jobs, size_t n)
{
	size_t i, np = 0, nu = 0, nrem = 0;
	uint64_t t0;
	int rc;

	for (i = 0; i < n; i++)
		nu += jobs[i]->nups;
	ups_reserve(c, nu + c->nretry);
	/* Removals an earlier write could not make go first. */
	if (c->nretry > 0)
		memcpy(c->ups, c->retry_dels, c->nretry * sizeof(*c->ups));
	nu = c->nretry;
	for (i = 0; i < n; i++) {
		struct commit_job *job = jobs[i];

		if (put_skipped(job))
			continue;
		if (job->kind == COMMIT_PUT)
			c->puts[np++] = job->put;
		if (job->nups > 0) {
			memcpy(c->ups + nu, job->ups,
			    job->nups * sizeof(*job->ups));
			nu += job->nups;
		}
	}
	t0 = mono_us();
	rc = queue_index_write(c->qi, c->puts, np, c->ups, nu, c->removed,
	    &nrem);
	atomic_fetch_add(&c->write_us, mono_us() - t0);
	if (rc != 0)
		return rc;
	c->nretry = 0;
	for (i = 0; i < n; i++)
		if (jobs[i]->kind == COMMIT_PUT && !put_skipped(jobs[i]))
			segref_put(c, jobs[i]->put.seg);
	for (i = 0; i < nrem; i++)
		segref_gone(c, c->removed[i].seg);
	atomic_fetch_add(&c->n_messages, np);
	atomic_fetch_add(&c->n_updates, nu);
	atomic_fetch_add(&c->n_removed, nrem);
	if (np > 0 || nu > 0)	/* a write happened: its puts are the list */
		c->unconfirmed = np > 0;
	return 0;
}

static bool
seg_is_failed(const struct committer *c, uint64_t seg)
{
	if (!c->any_failed)
		return false;
	for (unsigned i = 0; i < COMMIT_FAILED_SEGS; i++)
		if (c->failed_segs[i] == seg)
			return true;
	return false;
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
 * One chain per segment jobs[0..n) go to: a writev of each record, then an
 * fdatasync, linked so the sync covers every write and a failed write
 * stops the rest. Jobs of a segment that failed before fail at once
 * (-EIO, not written, not indexed). Without a ring (it could not be set
 * up) the writes and syncs run here, before the index write.
 */
static void
io_start(struct committer *c, struct commit_job **jobs, size_t n)
{
	struct io_uring_sqe *sqe;
	unsigned k;

	c->nsync = 0;
	for (size_t i = 0; i < n; i++) {
		struct commit_job *job = jobs[i];

		if (job->kind != COMMIT_PUT)
			continue;
		assert(job->seg_fd >= 0);
		job->io_res = 1;	/* in flight */
		job->deferred = job->nups > 0;
		if (seg_is_failed(c, job->put.seg)) {
			job->seg_failed = true;
			job->deferred = false;
			job->put.result = -EIO;
			job->io_res = -EIO;
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
		int fd = c->sync[k].fd;

		for (size_t i = 0; i < n; i++) {
			struct commit_job *job = jobs[i];
			ssize_t w;

			if (job->kind != COMMIT_PUT || job->io_res != 1 ||
			    job->chain != k)
				continue;
			if (!c->ring_ok) {
				w = pwritev(fd, job->iov, 2,
				    (off_t)job->put.offset);
				write_done(c, job, w < 0 ? -errno : (int)w);
				continue;
			}
			sqe = io_uring_get_sqe(&c->ring);
			assert(sqe != NULL);	/* sized for a whole batch */
			io_uring_prep_writev(sqe, fd, job->iov, 2,
			    job->put.offset);
			io_uring_sqe_set_data64(sqe, i);
			sqe->flags |= IOSQE_IO_LINK;
		}
		if (!c->ring_ok) {
			c->sync[k].res = fdatasync(fd) < 0 ? -errno : 0;
			continue;
		}
		sqe = io_uring_get_sqe(&c->ring);
		assert(sqe != NULL);
		io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
		io_uring_sqe_set_data64(sqe, IO_SYNC_BIT | k);
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
 * Wait for the writes io_start() began, and with syncs for the syncs too
 * (a sync completes after the writes linked before it).
 */
static void
io_wait(struct committer *c, struct commit_job **jobs, size_t n, bool syncs)
{
	struct io_uring_cqe *cqe;
	size_t left = 0;

	for (unsigned k = 0; syncs && k < c->nsync; k++)
		left += c->sync[k].res == 1;
	for (size_t i = 0; i < n; i++)
		left += jobs[i]->kind == COMMIT_PUT && jobs[i]->io_res == 1;
	while (left > 0) {
		int rc = io_uring_wait_cqe(&c->ring, &cqe);
		uint64_t ud;

		if (rc == -EINTR)
			continue;
		if (rc < 0)
			log_fatal("committer: io_uring_wait_cqe: %s",
			    strerror(-rc));
		ud = cqe->user_data;
		if (ud & IO_SYNC_BIT) {
			assert((ud & ~IO_SYNC_BIT) < c->nsync);
			c->sync[ud & ~IO_SYNC_BIT].res = cqe->res;
			left -= syncs;
		} else {
			assert(ud < n);
			write_done(c, jobs[ud], cqe->res);
			left--;
		}
		io_uring_cqe_seen(&c->ring, cqe);
	}
}

/*
 * After the writes: a chain with a failed write cannot be synced (the rest
 * of it was cancelled), so none of its records is indexed; each gets the
 * chain's first error. sync[k].res keeps the chain's verdict from here.
 */
static void
io_writes_done(struct committer *c, struct commit_job **jobs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct commit_job *job = jobs[i];

		if (job->kind == COMMIT_PUT && !job->seg_failed &&
		    c->sync[job->chain].err != 0)
			job->io_res = c->sync[job->chain].err;
	}
}

/*
 * After the syncs: a job whose write failed fails with that error; one
 * whose segment's sync failed fails too and, being indexed, is taken out
 * again (it was never acknowledged, and its record may not be on disk).
 * Unless the trouble was a full disk, the segment is remembered as failed.
 */
static void
io_check(struct committer *c, struct commit_job **jobs, size_t n)
{
	struct queue_update *dels = NULL;
	size_t ndel = 0, nrem = 0;
	int rc;

	for (size_t i = 0; i < n; i++) {
		struct commit_job *job = jobs[i];
		int err = job->io_res, sync_res;
		bool from_sync = false;

		if (job->kind != COMMIT_PUT || job->seg_failed)
			continue;
		sync_res = c->sync[job->chain].res;
		if (err == 0 && sync_res < 0) {
			err = sync_res == -ECANCELED ? -EIO : sync_res;
			from_sync = true;
			if (job->put.result == 0 && !job->deferred) {
				if (dels == NULL && (dels = calloc(n,
				    sizeof(*dels))) == NULL)
					log_fatal("committer: out of memory");
				dels[ndel].kind = QUEUE_UPD_DELETE;
				dels[ndel++].qid = job->put.qid;
			}
		}
		if (err == 0)
			continue;
		/* After a failed sync nothing written to it is trusted. */
		if (from_sync || (err != -ENOSPC && err != -EDQUOT)) {
			job->seg_failed = true;
			c->any_failed = true;
			if (!seg_is_failed(c, job->put.seg)) {
				log_warn("queue: writing segment %016llx: %s",
				    (unsigned long long)job->put.seg,
				    strerror(-err));
				c->failed_segs[c->nfailed] = job->put.seg;
				c->nfailed = (c->nfailed + 1) %
				    COMMIT_FAILED_SEGS;
			}
		}
		job->put.result = err;
	}
	if (ndel == 0)
		return;
	ups_reserve(c, ndel);
	rc = queue_index_write(c->qi, NULL, 0, dels, ndel, c->removed, &nrem);
	if (rc != 0) {
		/* They go with the next write (or at the next start). */
		log_warn("queue: cannot take %zu unsynced message(s) out of "
		    "the index now: %s", ndel, queue_strerror(rc));
		if (c->nretry + ndel > c->retry_cap) {
			size_t cap = c->nretry + ndel;
			struct queue_update *r = realloc(c->retry_dels,
			    cap * sizeof(*r));

			if (r == NULL)
				log_fatal("committer: out of memory");
			c->retry_dels = r;
			c->retry_cap = cap;
		}
		memcpy(c->retry_dels + c->nretry, dels, ndel * sizeof(*dels));
		c->nretry += ndel;
	} else {
		c->unconfirmed = false;
	}
	for (size_t i = 0; i < nrem; i++)
		segref_gone(c, c->removed[i].seg);
	free(dels);
}

/*
 * After io_check(): the deferred puts (DSNs with their updates) whose
 * record is now written and synced are indexed, in one more write; the
 * others already carry their error.
 */
static void
index_deferred(struct committer *c, struct commit_job **jobs, size_t n)
{
	size_t nd = 0;
	int rc;

	for (size_t i = 0; i < n; i++) {
		struct commit_job *job = jobs[i];

		if (job->kind != COMMIT_PUT || !job->deferred)
			continue;
		job->deferred = false;
		if (job->put.result == 0 && job->io_res == 0 &&
		    !job->seg_failed)
			c->defer[nd++] = job;
	}
	if (nd == 0)
		return;
	rc = write_jobs(c, c->defer, nd);
	for (size_t i = 0; rc != 0 && i < nd; i++)
		c->defer[i]->put.result = rc;
}

/* Index one batch and hand every job back to its shard. */
static void
commit_batch(struct committer *c, size_t n)
{
	bool wake[64] = { false };
	size_t i, start;
	int rc;

	/*
	 * Seals split the batch: the jobs before a seal are written before
	 * the seal is honoured, so its segment cannot go while a record of
	 * it waits to be indexed.
	 */
	for (start = 0; start < n; start = i + 1) {
		for (i = start; i < n && c->batch[i]->kind != COMMIT_SEAL; i++) {
			c->batch[i]->put.result = 0;
			c->batch[i]->seg_failed = false;
		}
		/*
		 * Written before they are indexed (a record that could not
		 * be written never is), synced while the index commits.
		 */
		io_start(c, c->batch + start, i - start);
		io_wait(c, c->batch + start, i - start, false);
		io_writes_done(c, c->batch + start, i - start);
		rc = i > start ? write_jobs(c, c->batch + start, i - start) : 0;
		/* Before any other index write: that would confirm these. */
		io_wait(c, c->batch + start, i - start, true);
		if (rc != 0 && rc != QUEUE_EFULL && i - start > 1) {
			/* One job's failure must not fail the others. */
			for (size_t j = start; j < i; j++)
				if (!put_skipped(c->batch[j]))
					c->batch[j]->put.result =
					    write_jobs(c, c->batch + j, 1);
		} else if (rc != 0) {
			/* One job, or the index is full (one by one would
			 * not fit either): all of it fails. */
			for (size_t j = start; j < i; j++)
				if (!put_skipped(c->batch[j]))
					c->batch[j]->put.result = rc;
		}
		io_check(c, c->batch + start, i - start);
		index_deferred(c, c->batch + start, i - start);
		/* The shard logs each failed message with its queue id. */
		for (size_t j = start; j < i; j++)
			if (c->batch[j]->put.result != 0)
				atomic_fetch_add(&c->n_failures, 1);
		if (i < n) {
			segref_seal(c, c->batch[i]->put.seg);
			c->batch[i]->put.result = 0;
		}
	}
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
	for (i = 0; i < c->nshards; i++)
		if (wake[i])
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

/*
 * The syncs of the last write are done, so an unconfirmed list left after
 * it only costs recovery a distinction: empty it when the queue is idle.
 */
static void
confirm(struct committer *c)
{
	int rc;

	if (!c->unconfirmed)
		return;
	rc = queue_index_confirm(c->qi);
	if (rc != 0)
		log_warn("queue: cannot confirm the last batch: %s",
		    queue_strerror(rc));
	else
		c->unconfirmed = false;
}

static void *
committer_main(void *arg)
{
	struct committer *c = arg;
	struct pollfd pfd = { .fd = c->efd, .events = POLLIN };
	uint64_t v;
	size_t n;

	for (;;) {
		int ready = poll(&pfd, 1, c->unconfirmed ?
		    COMMIT_CONFIRM_IDLE_MS : -1);

		if (ready == 0) {
			confirm(c);
			continue;
		}
		if (ready > 0 && read(c->efd, &v, sizeof(v)) < 0 &&
		    errno != EINTR && errno != EAGAIN)
			log_fatal("committer: eventfd read: %s",
			    strerror(errno));
		/* Jobs that arrive while we commit form the next batch. */
		while ((n = gather(c)) > 0)
			commit_batch(c, n);
		if (atomic_load(&c->stop)) {
			if ((n = gather(c)) > 0) {
				commit_batch(c, n);
				continue;
			}
			confirm(c);
			break;
		}
	}
	return NULL;
}

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
		rc = queue_index_foreach(qi, segref_count_msg, c);
		if (rc != 0)
			goto fail;
		rc = -ENOMEM;
	}
	c->to = calloc(nshards, sizeof(*c->to));
	c->from = calloc(nshards, sizeof(*c->from));
	c->batch = calloc(COMMIT_BATCH_MAX, sizeof(*c->batch));
	c->defer = calloc(COMMIT_BATCH_MAX, sizeof(*c->defer));
	c->puts = calloc(COMMIT_BATCH_MAX, sizeof(*c->puts));
	if (!c->to || !c->from || !c->batch || !c->puts || !c->defer)
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
	/* Without a ring the writes still happen, before each commit. */
	rc = io_uring_queue_init(COMMIT_IO_RING, &c->ring, 0);
	if (rc < 0)
		log_warn("committer: no io_uring for segment writes (%s): "
		    "they run one by one", strerror(-rc));
	c->ring_ok = rc == 0;
	c->unconfirmed = true;	/* a list may be left from before */
	atomic_init(&c->stop, false);
	if ((rc = -pthread_create(&c->thread, NULL, committer_main, c)) != 0)
		goto fail;
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
	free(c->defer);
	free(c->retry_dels);
	free(c->puts);
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
	efd_signal(c->efd);
}

struct commit_job *
committer_reap(struct committer *c, unsigned shard)
{
	assert(shard < c->nshards);
	return spsc_pop(&c->from[shard]);
}

void
committer_stop(struct committer *c)
{
	unsigned i;

	atomic_store(&c->stop, true);
	efd_signal(c->efd);
	pthread_join(c->thread, NULL);
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
	free(c->segs);
	free(c->ups);
	free(c->removed);
	free(c->to);
	free(c->from);
	free(c->batch);
	free(c->defer);
	free(c->retry_dels);
	free(c->puts);
	free(c);
}

void
committer_stats(struct committer *c, struct committer_stats *st)
{
	st->batches = atomic_load(&c->n_batches);
	st->messages = atomic_load(&c->n_messages);
	st->failures = atomic_load(&c->n_failures);
	st->updates = atomic_load(&c->n_updates);
	st->removed = atomic_load(&c->n_removed);
	st->segments_removed = atomic_load(&c->n_segs_removed);
	st->write_us = atomic_load(&c->write_us);
}
