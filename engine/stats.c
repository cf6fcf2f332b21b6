/*
 * stats.c - putting a view together; see stats.h.
 */
#include "stats.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/clock.h"
#include "../queue/queue_filter.h"

static _Atomic uint64_t started_us;

uint64_t
stats_started_us(void)
{
	uint64_t zero = 0, now = clock_real_us();

	if (atomic_compare_exchange_strong(&started_us, &zero, now))
		return now;
	return zero;
}

void
stats_sum(struct stats_view *v, unsigned shards)
{
	struct stats_hist_copy h;

	memset(v, 0, sizeof(*v));
	v->now_us = clock_real_us();
	v->started_us = stats_started_us();
	v->shards = shards;
	for (unsigned i = 0; i < shards && i < STATS_SHARDS_MAX; i++) {
		const struct stats_shard *s = &stats_shards[i];

		v->conns_in += stats_get(&s->conns_in);
		v->conns_in_closed += stats_get(&s->conns_in_closed);
		v->conns_in_refused += stats_get(&s->conns_in_refused);
		v->tls_in += stats_get(&s->tls_in);
		v->tls_in_failed += stats_get(&s->tls_in_failed);
		v->messages_in += stats_get(&s->messages_in);
		v->rcpts_in += stats_get(&s->rcpts_in);
		v->bytes_in += stats_get(&s->bytes_in);
		for (unsigned c = 0; c < STATS_CLASSES; c++)
			for (unsigned j = 0; j < STATS_SUBJECTS; j++)
				v->replies[c][j] += stats_get(&s->replies[c][j]);
		for (unsigned o = 0; o < STATS_OUTCOMES; o++)
			v->outcomes[o] += stats_get(&s->outcomes[o]);
		for (unsigned c = 0; c < STATS_CLASSES; c++)
			v->reply_out[c] += stats_get(&s->reply_out[c]);
		v->conns_out += stats_get(&s->conns_out);
		v->tls_out += stats_get(&s->tls_out);
		v->tls_out_failed += stats_get(&s->tls_out_failed);
		v->parked += stats_get(&s->parked);
		v->read_mem += stats_get(&s->read_mem);
		v->read_back += stats_get(&s->read_back);
		v->g_conns_out += stats_get(&s->g_conns_out);
		v->g_items += stats_get(&s->g_items);
		v->g_rcpts += stats_get(&s->g_rcpts);
		v->g_deferred += stats_get(&s->g_deferred);
		v->g_dests += stats_get(&s->g_dests);
		stats_hist_read(&s->accept, &h);
		stats_hist_add(&v->accept, &h);
		stats_hist_read(&s->delay, &h);
		stats_hist_add(&v->delay, &h);
		stats_hist_read(&s->sign, &h);
		stats_hist_add(&v->sign, &h);
	}
	stats_hist_read(&stats_commit.batch, &v->batch);
	stats_hist_read(&stats_commit.sync, &v->sync);
}

/* ---- the index --------------------------------------------------------- */

struct scan {
	struct stats_queue *q;
	uint64_t deadline_us;
};

static int
scan_one(void *arg, const struct queue_msg *m)
{
	static const struct queue_filter held = {
		.status = QUEUE_FILTER_HELD
	}, deferred = {
		.status = QUEUE_FILTER_DEFERRED
	};
	struct scan *sc = arg;
	struct stats_queue *q = sc->q;

	/* Queue ids sort by arrival: the first one read is the oldest. */
	if (q->scanned++ == 0) {
		q->oldest_qid = m->qid;
		q->oldest_arrival_us = m->env.arrival_us;
	}
	if (queue_filter_match(&held, m))
		q->held++;
	else if (queue_filter_match(&deferred, m))
		q->deferred++;
	else
		q->queued++;
	if ((q->scanned & 255) == 0 && clock_mono_us() >= sc->deadline_us)
		return 1;
	return 0;
}

int
stats_queue_scan(struct queue_index *qi, struct stats_queue *q,
    unsigned budget_ms)
{
	uint64_t t0 = clock_mono_us();
	struct scan sc = { q, t0 + (uint64_t)budget_ms * 1000u };
	int rc;

	memset(q, 0, sizeof(*q));
	if ((rc = queue_index_count(qi, &q->messages)) < 0 ||
	    (rc = queue_index_count_quarantine(qi, &q->quarantined)) < 0 ||
	    (rc = queue_index_parked(qi, STATS_SHARDS_MAX, &q->parked)) < 0)
		goto fail;
	rc = queue_index_foreach(qi, scan_one, &sc);
	if (rc < 0)
		goto fail;
	q->complete = rc == 0;
	q->read = true;
	q->scan_us = clock_mono_us() - t0;
	return 0;
fail:
	memset(q, 0, sizeof(*q));
	return rc;
}

/* ---- destinations ------------------------------------------------------ */

static int
row_cmp(const void *a, const void *b)
{
	const struct deliver_dest_stat *x = a, *y = b;

	if (x->queued != y->queued)
		return x->queued > y->queued ? -1 : 1;
	return strcmp(x->key, y->key);
}

static void
sum_add(struct stats_dests_sum *s, uint64_t count, uint64_t queued,
    uint64_t ready, uint64_t conns, uint64_t delivered, uint64_t deferred,
    uint64_t bounced, double rate)
{
	s->count += count;
	s->queued += queued;
	s->ready += ready;
	s->conns += conns;
	s->delivered += delivered;
	s->deferred += deferred;
	s->bounced += bounced;
	s->rate += rate;
}

void
stats_dests(struct stats_view *v, unsigned timeout_ms)
{
	struct deliver_stats *st;
	struct deliver_dest_stat *all;
	size_t n = 0;

	if (deliver_stats_collect(STATS_TOP, timeout_ms, &st) != 0)
		return;
	all = calloc((size_t)st->nshards * STATS_TOP, sizeof(*all));
	if (all == NULL) {
		deliver_stats_free(st);
		return;
	}
	v->dests_read = true;
	v->dests_answered = st->answered;
	for (unsigned i = 0; i < st->nshards; i++) {
		const struct deliver_shard_stat *sh = &st->shard[i];

		if (!sh->answered)
			continue;
		sum_add(&v->dests_all, sh->ndests, sh->queued, sh->ready,
		    sh->conns, sh->delivered, sh->deferred, sh->bounced,
		    sh->rate);
		for (unsigned r = 0; r < sh->nrows; r++)
			all[n++] = sh->rows[r];
	}
	/* Each shard's top holds every row of the global top it owns. */
	qsort(all, n, sizeof(*all), row_cmp);
	v->ntop = n < STATS_TOP ? (unsigned)n : STATS_TOP;
	memcpy(v->top, all, v->ntop * sizeof(*all));
	v->dests_other = v->dests_all;
	for (unsigned i = 0; i < v->ntop; i++) {
		const struct deliver_dest_stat *r = &v->top[i];
		struct stats_dests_sum *o = &v->dests_other;

		o->count--;
		o->queued -= r->queued;
		o->ready -= r->ready;
		o->conns -= r->conns;
		o->delivered -= r->delivered;
		o->deferred -= r->deferred;
		o->bounced -= r->bounced;
		o->rate -= r->rate;
	}
	if (v->dests_other.rate < 0)
		v->dests_other.rate = 0;
	free(all);
	deliver_stats_free(st);
}

/* ---- the minute's ring ------------------------------------------------- */

void
stats_ring_vals(const struct stats_view *v, uint64_t out[STATS_R_VALS])
{
	out[STATS_R_ACCEPTED] = v->messages_in;
	out[STATS_R_DELIVERED] = v->outcomes[STATS_DELIVERED];
	out[STATS_R_DEFERRED] = v->outcomes[STATS_DEFERRED];
	out[STATS_R_BOUNCED] = v->outcomes[STATS_BOUNCED];
	out[STATS_R_EXPIRED] = v->outcomes[STATS_EXPIRED];
	out[STATS_R_DISCARDED] = v->outcomes[STATS_DISCARDED];
}

void
stats_ring_add(struct stats_ring *r, uint64_t now_ms,
    const uint64_t vals[STATS_R_VALS])
{
	unsigned i = r->n % STATS_RING_N;

	r->s[i].ms = now_ms;
	memcpy(r->s[i].v, vals, sizeof(r->s[i].v));
	r->n++;
}

void
stats_ring_minute(const struct stats_ring *r, uint64_t now_ms,
    const uint64_t vals[STATS_R_VALS], uint64_t delta[STATS_R_VALS],
    uint64_t *window_ms)
{
	unsigned have = r->n < STATS_RING_N ? r->n : STATS_RING_N;
	int best = -1;

	/* The oldest sample still within the minute. */
	for (unsigned k = 0; k < have; k++) {
		unsigned i = (r->n - have + k) % STATS_RING_N;

		if (now_ms - r->s[i].ms <= 60000) {
			best = (int)i;
			break;
		}
	}
	if (best < 0) {
		memset(delta, 0, STATS_R_VALS * sizeof(*delta));
		*window_ms = 0;
		return;
	}
	for (unsigned j = 0; j < STATS_R_VALS; j++)
		delta[j] = vals[j] >= r->s[best].v[j] ?
		    vals[j] - r->s[best].v[j] : 0;
	*window_ms = now_ms - r->s[best].ms;
}
