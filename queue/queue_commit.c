/*
 * queue_commit.c - the committer and indexer threads; see queue_commit.h.
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

#include "../lib/clock.h"
#include "../lib/log.h"
#include "../lib/spsc.h"
#include "../lib/stats.h"
#include "../lib/thread.h"

/* Ring capacity per shard and direction; also the largest batch per shard. */
#define COMMIT_RING 4096
/* Most jobs written and synced in one batch. */
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
/*
 * Acknowledged messages waiting for the indexer before the committer
 * waits for it: enough for a second or more of full load, few enough
 * that a restart replays them in well under a second.
 */
#define INDEX_BACKLOG_MAX 65536
/* After a failed index write, the wait before the next try grows from
 * the first to the last. */
#define INDEX_RETRY_FIRST_MS 100
#define INDEX_RETRY_LAST_MS 2000
/*
 * The indexer writes at most once per interval (unless this many puts are
 * waiting): each LMDB commit flushes the disk twice, and flushes from
 * both threads queue at the same device, so an indexer committing as fast
 * as it can would slow the log's syncs, which acknowledgements wait for.
 * After a crash the log is replayed from the last write: an interval's
 * worth of messages.
 */
#define INDEX_INTERVAL_US 10000
#define INDEX_EAGER 16384
/* While the index is short of room, how often to look again. */
#define ROOM_RECHECK_US 500000
/* Unlinked segments gathered before the directory fsync that lets their
 * log entries go (or as many as there are, once idle). */
#define FORGET_BATCH 64

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

/*
 * What one batch hands to the indexer, in the order the committer
 * finished it: the puts it acknowledged (their envelopes copied into
 * env), the updates of its update jobs and of its DSNs, the log positions
 * it moved (sealed or failed segments), and the segments sealed.
 */
struct ixbatch {
	struct ixbatch *next;
	size_t nputs, nups, nlogs, nseals;
	struct queue_put *puts;
	struct queue_update *ups;
	struct queue_logpos *logs;
	uint64_t *seals;
	uint8_t *env;
};

/*
 * ix_cancel()'s view of a write: the recipient updates of messages put in
 * the same write (ixc), and those messages (ixq, sorted by qid).
 */
struct ixc {
	uint64_t qid;
	uint32_t ord;		/* the update's place in the write */
	uint16_t idx;
	bool final;		/* delivered or bounced */
};
struct ixq {
	uint64_t qid;
	uint32_t nrcpt;
	uint32_t nfinal;	/* recipients whose last update is final */
	bool keep;		/* touched by more than recipient updates */
	bool cancel;
};

/* One writev: records runjob[first..first+n) of chain, at offset. */
struct wrun {
	uint64_t offset;
	uint32_t first, n;
	uint32_t iov;		/* the first of its 2 * n iovecs */
	uint16_t chain;
};
/* Iovecs per writev (each record has two), within the kernel's IOV_MAX. */
#define RUN_IOV_MAX 1024
/* Bytes per writev, well within what one write(2) moves (2 GiB - 4 KiB). */
#define RUN_BYTES_MAX (256u << 20)

struct committer {
	struct queue_index *qi;
	unsigned nshards;
	struct spsc *to;		/* shard -> committer, per shard */
	struct spsc *from;		/* committer -> shard, per shard */
	const int *shard_efd;
	int efd;
	atomic_bool stop;
	/* Waiting on efd, or about to: a shard must write it. */
	atomic_bool asleep;
	pthread_t thread;
	struct commit_job **batch;
	_Atomic uint64_t n_batches, n_messages, n_failures, n_updates,
	    n_removed, n_segs_removed, n_writes, write_us, sync_us,
	    n_cancelled;
	struct io_uring ring;		/* segment writes and fdatasyncs */
	bool ring_ok;
	/* The batch's write chains, one per segment: its descriptor, the
	 * first error of a write in it, and its sync's result (1: pending). */
	struct { int fd; int err; int res; } sync[COMMIT_SYNC_MAX];
	unsigned nsync;
	/* The batch's writes: runs of records, their jobs, their iovecs. */
	struct wrun *runs;
	size_t nruns;
	uint32_t *runjob;
	struct iovec *iov;
	struct { uint64_t seg; int err; } failed[COMMIT_FAILED_SEGS];
	unsigned nfailed;		/* next slot, round robin */
	unsigned nfailed_used;		/* slots of failed[] in use */

	/* The indexer's side; the lock guards the list, backlog, istop. */
	pthread_t ithread;
	pthread_mutex_t mu;
	pthread_cond_t work;		/* to the indexer: a batch came */
	pthread_cond_t room;		/* to the committer: backlog shrank */
	pthread_cond_t done;		/* to syncs: a write is done */
	struct ixbatch *ihead, **itail;
	size_t backlog;			/* puts handed over, not indexed */
	uint64_t handed, indexed;	/* batches so far */
	bool iidle;			/* the indexer waits for work */
	bool urgent;			/* a sync waits: write now */
	bool istop;
	_Atomic int index_err;		/* while puts are refused: why */
	_Atomic int write_err;		/* while index writes fail: why */
	bool room_short;		/* indexer's: no reserve for the index */
	/* Indexer-private from here. */
	struct queue_put *puts;
	struct queue_update *ups;
	struct queue_logpos *logs;
	struct queue_removed *removed;
	size_t puts_cap, ups_cap, logs_cap;
	struct ixc *cx;			/* ix_cancel()'s work arrays */
	struct ixq *cq;
	size_t cx_cap, cq_cap;
	int segdir;			/* -1: no reclamation */
	struct segref *segs;
	size_t segs_cap, segs_used;	/* used counts tombstones too */
	uint64_t *forget;		/* unlinked, log entry still there */
	size_t nforget, forget_cap;
	size_t nforget_synced;		/* of them, unlinks made durable */
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

static int
segref_count_msg(void *arg, const struct queue_msg *m)
{
	struct segref *r = segref_find(arg, m->meta.seg, true);

	r->count++;
	r->sealed = true;	/* shards only append to new segments */
	return 0;
}

static void
efd_signal(int fd)
{
	uint64_t one = 1;

	/* EAGAIN means the counter is already huge: the reader wakes. */
	if (write(fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("committer: eventfd write: %s", strerror(errno));
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
 * the writes linked before it).
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
		} else {
			assert(ud < c->nruns);
			run_done(c, jobs, &c->runs[ud], cqe->res);
		}
		left--;
		io_uring_cqe_seen(&c->ring, cqe);
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

/* ---- the indexer thread ---------------------------------------------- */

/* A CLOCK_MONOTONIC time us (clock_mono_us() terms) as a timespec. */
static struct timespec
abs_mono(uint64_t us)
{
	return (struct timespec){ .tv_sec = (time_t)(us / 1000000u),
	    .tv_nsec = (long)(us % 1000000u) * 1000 };
}


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
static void
room_check(struct committer *c)
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

static void
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
static void *
indexer_main(void *arg)
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
				room_check(c);
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
		room_check(c);
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
		rc = queue_index_foreach(qi, segref_count_msg, c);
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
	room_check(c);
	if ((rc = -pthread_create(&c->ithread, NULL, indexer_main, c)) != 0)
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
