/*
 * dkim_pool.c - signer threads: shards hand messages over, workers sign
 * them in batches, results go back to each shard through its eventfd.
 *
 * Shard -> worker: each worker has a lock-free stack of jobs (a CAS per
 * job); a shard gives each job to the worker with the fewest queued, so
 * a batch spreads over the workers at once. The worker takes its whole
 * stack in one exchange (oldest first after a reversal) and signs it as
 * one batch; it sleeps on its eventfd only when the stack is empty, and
 * a shard writes that eventfd only when its push found the stack empty,
 * so a busy worker costs no system call per job.
 *
 * Worker -> shard: one lock-free stack per shard, pushed by any worker,
 * emptied by its shard in one exchange. A worker writes the shard's
 * eventfd only when its push found the stack empty: the shard empties it
 * whole after the wake it already has coming.
 *
 * A shard never blocks here: no lock, no wait, at most a write(2) to an
 * eventfd (which never blocks below its counter's 2^64 - 2 ceiling).
 * Workers block only in read(2) on their own eventfd.
 */
#include "dkim_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/thread.h"
#include "../lib/efd.h"

struct worker {
	struct dkim_pool *pool;
	pthread_t thread;
	bool started;
	int efd;
	_Atomic(struct dkim_job *) in;
	atomic_uint queued;
	struct dkim_signer *sg;
};

struct dkim_pool {
	const struct dkim_policy *pol;
	unsigned nworkers, nshards;
	struct worker *w;
	int *shard_efd;
	_Atomic(struct dkim_job *) *out;	/* per shard */
	atomic_bool stop;
	_Atomic uint64_t signed_msgs, signatures, failed;
};

/* Push onto a stack; true when it was empty (the consumer needs a wake). */
static bool
stack_push(_Atomic(struct dkim_job *) *top, struct dkim_job *job)
{
	struct dkim_job *old = atomic_load_explicit(top, memory_order_relaxed);

	do {
		job->next = old;
	} while (!atomic_compare_exchange_weak_explicit(top, &old, job,
	    memory_order_release, memory_order_relaxed));
	return old == NULL;
}

/* Take the whole stack, oldest first. */
static struct dkim_job *
stack_take(_Atomic(struct dkim_job *) *top)
{
	struct dkim_job *j = atomic_exchange_explicit(top, NULL,
	    memory_order_acquire), *rev = NULL, *next;

	for (; j != NULL; j = next) {
		next = j->next;
		j->next = rev;
		rev = j;
	}
	return rev;
}

static void
sign_one(struct worker *w, struct dkim_job *job)
{
	struct dkim_pool *p = w->pool;

	buf_reset(&job->sig);
	job->result = dkim_sign_message(w->sg, job->msg, &job->pick, job->bh,
	    job->now, &job->sig);
	if (job->result == 0) {
		atomic_fetch_add_explicit(&p->signed_msgs, 1,
		    memory_order_relaxed);
		atomic_fetch_add_explicit(&p->signatures, job->pick.count,
		    memory_order_relaxed);
	} else {
		atomic_fetch_add_explicit(&p->failed, 1, memory_order_relaxed);
	}
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	struct dkim_pool *p = w->pool;
	struct dkim_job *batch, *job, *next;
	uint64_t v;

	thread_name("dkim", (int)(w - p->w));
	for (;;) {
		batch = stack_take(&w->in);
		if (batch == NULL) {
			if (atomic_load(&p->stop))
				break;
			/* Woken by a push onto the empty stack, or the stop. */
			while (read(w->efd, &v, sizeof(v)) < 0 &&
			    errno == EINTR)
				;
			continue;
		}
		for (job = batch; job != NULL; job = next) {
			unsigned shard = job->shard;

			next = job->next;
			sign_one(w, job);
			atomic_fetch_sub_explicit(&w->queued, 1,
			    memory_order_relaxed);
			if (stack_push(&p->out[shard], job))
				(void)efd_wake(p->shard_efd[shard]);
		}
	}
	return NULL;
}

int
dkim_pool_start(struct dkim_pool **pp, const struct dkim_policy *pol,
    unsigned nworkers, unsigned nshards, const int *shard_efd)
{
	struct dkim_pool *p;
	int rc = -ENOMEM;

	*pp = NULL;
	if (nworkers == 0 || nshards == 0)
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (p == NULL)
		return -ENOMEM;
	p->pol = pol;
	p->nshards = nshards;
	p->w = calloc(nworkers, sizeof(*p->w));
	p->shard_efd = calloc(nshards, sizeof(*p->shard_efd));
	p->out = calloc(nshards, sizeof(*p->out));
	if (p->w == NULL || p->shard_efd == NULL || p->out == NULL)
		goto fail;
	memcpy(p->shard_efd, shard_efd, nshards * sizeof(*shard_efd));
	for (unsigned i = 0; i < nworkers; i++) {
		struct worker *w = &p->w[i];

		w->pool = p;
		w->efd = -1;
		p->nworkers++;
		w->sg = dkim_signer_new(pol);
		if (w->sg == NULL)
			goto fail;
		w->efd = eventfd(0, EFD_CLOEXEC);
		if (w->efd < 0) {
			rc = -errno;
			goto fail;
		}
		rc = -pthread_create(&w->thread, NULL, worker_main, w);
		if (rc != 0)
			goto fail;
		w->started = true;
	}
	*pp = p;
	return 0;
fail:
	dkim_pool_stop(p);
	return rc;
}

void
dkim_pool_submit(struct dkim_pool *p, struct dkim_job *job)
{
	struct worker *best = &p->w[0];
	unsigned bq = atomic_load_explicit(&best->queued, memory_order_relaxed);

	for (unsigned i = 1; i < p->nworkers && bq > 0; i++) {
		unsigned q = atomic_load_explicit(&p->w[i].queued,
		    memory_order_relaxed);

		if (q < bq) {
			best = &p->w[i];
			bq = q;
		}
	}
	atomic_fetch_add_explicit(&best->queued, 1, memory_order_relaxed);
	if (stack_push(&best->in, job))
		(void)efd_wake(best->efd);
}

struct dkim_job *
dkim_pool_reap(struct dkim_pool *p, unsigned shard)
{
	if (atomic_load_explicit(&p->out[shard], memory_order_relaxed) == NULL)
		return NULL;
	return stack_take(&p->out[shard]);
}

void
dkim_pool_stop(struct dkim_pool *p)
{
	if (p == NULL)
		return;
	atomic_store(&p->stop, true);
	for (unsigned i = 0; p->w != NULL && i < p->nworkers; i++)
		if (p->w[i].efd >= 0)
			(void)efd_wake(p->w[i].efd);
	for (unsigned i = 0; p->w != NULL && i < p->nworkers; i++) {
		struct worker *w = &p->w[i];

		if (w->started)
			pthread_join(w->thread, NULL);
		if (w->efd >= 0)
			close(w->efd);
		dkim_signer_free(w->sg);
	}
	free(p->w);
	free(p->shard_efd);
	free((void *)p->out);
	free(p);
}

void
dkim_pool_stats(struct dkim_pool *p, struct dkim_pool_stats *st)
{
	st->signed_msgs = atomic_load(&p->signed_msgs);
	st->signatures = atomic_load(&p->signatures);
	st->failed = atomic_load(&p->failed);
}
