/*
 * queue_commit.c - the committer thread; see queue_commit.h.
 */
#include "queue_commit.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../engine/log.h"
#include "../engine/spsc.h"

/* Ring capacity per shard and direction; also the largest batch per shard. */
#define COMMIT_RING 4096
/* Most messages indexed in one LMDB transaction. */
#define COMMIT_BATCH_MAX 8192

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
	_Atomic uint64_t n_batches, n_messages, n_failures;
};

static void
efd_signal(int fd)
{
	uint64_t one = 1;

	/* EAGAIN means the counter is already huge: the reader wakes. */
	if (write(fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("committer: eventfd write: %s", strerror(errno));
}

/* Index one batch and hand every job back to its shard. */
static void
commit_batch(struct committer *c, size_t n)
{
	bool wake[64] = { false };
	size_t i;
	int rc;

	for (i = 0; i < n; i++)
		c->puts[i] = c->batch[i]->put;
	rc = queue_index_put_batch(c->qi, c->puts, n);
	if (rc != 0) {
		log_warn("queue: indexing %zu message(s) failed: %s", n,
		    queue_strerror(rc));
		atomic_fetch_add(&c->n_failures, n);
	}
	for (i = 0; i < n; i++) {
		struct commit_job *job = c->batch[i];

		job->put.result = rc != 0 ? (c->puts[i].result ?
		    c->puts[i].result : rc) : 0;
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
	atomic_fetch_add(&c->n_messages, n);
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
	uint64_t v;
	size_t n;

	for (;;) {
		if (read(c->efd, &v, sizeof(v)) < 0 && errno != EINTR &&
		    errno != EAGAIN)
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
			break;
		}
	}
	return NULL;
}

int
committer_start(struct committer **out, struct queue_index *qi,
    unsigned nshards, const int *shard_efd)
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
	c->to = calloc(nshards, sizeof(*c->to));
	c->from = calloc(nshards, sizeof(*c->from));
	c->batch = calloc(COMMIT_BATCH_MAX, sizeof(*c->batch));
	c->puts = calloc(COMMIT_BATCH_MAX, sizeof(*c->puts));
	if (!c->to || !c->from || !c->batch || !c->puts)
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
	atomic_init(&c->stop, false);
	if ((rc = -pthread_create(&c->thread, NULL, committer_main, c)) != 0)
		goto fail;
	*out = c;
	return 0;
fail:
	if (c->efd >= 0)
		close(c->efd);
	for (i = 0; c->to && c->from && i < nshards; i++) {
		spsc_destroy(&c->to[i]);
		spsc_destroy(&c->from[i]);
	}
	free(c->to);
	free(c->from);
	free(c->batch);
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
	free(c->to);
	free(c->from);
	free(c->batch);
	free(c->puts);
	free(c);
}

void
committer_stats(struct committer *c, struct committer_stats *st)
{
	st->batches = atomic_load(&c->n_batches);
	st->messages = atomic_load(&c->n_messages);
	st->failures = atomic_load(&c->n_failures);
}
