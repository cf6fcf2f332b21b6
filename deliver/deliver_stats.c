/*
 * deliver_stats.c - what delivery shows the operator: the counters of
 * lib/stats.h (one per delivery log line, the delay of what was
 * delivered, the shard's gauges) and the per-destination table that
 * `sluicectl status` and /metrics ask the shards for.
 *
 * The table is asked for, not published: a shard walks its destinations
 * only when somebody wants to see them, on its own thread, when it takes
 * the request out of its inbox (deliver_run()), so the request costs the
 * loop one walk of its table and nothing when nobody looks.
 *
 * A request lives until both sides let go of it (refs): the asking
 * thread, which may give up waiting, and every shard it was posted to,
 * which answers however late. The last one out frees it and closes its
 * eventfd, so a shard's late answer never writes into freed memory or a
 * descriptor number reused since.
 */
#include "deliver_int.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../lib/clock.h"
#include "../lib/log.h"
#include "../lib/stats.h"
#include "../lib/efd.h"

#define RATE_WINDOW_MS 60000u

static_assert((int)STATS_DELIVERED == (int)DLOG_DELIVERED &&
    (int)STATS_DEFERRED == (int)DLOG_DEFERRED &&
    (int)STATS_BOUNCED == (int)DLOG_BOUNCED &&
    (int)STATS_EXPIRED == (int)DLOG_EXPIRED &&
    (int)STATS_DISCARDED == (int)DLOG_DISCARDED,
    "the counters are indexed by the delivery log's status");

struct stats_req {
	_Atomic unsigned refs;
	int efd;
	unsigned top;
	_Atomic bool done[64];		/* shard i filled st.shard[i] */
	struct deliver_stats st;
};

/* ---- counting, on the owner's thread -------------------------------- */

/* Slide the destination's two one-minute windows to now. */
static void
rate_roll(struct dl_dest *ds, uint64_t now_ms)
{
	if (now_ms < ds->rate_ms + RATE_WINDOW_MS)
		return;
	ds->rate_prev = now_ms < ds->rate_ms + 2 * RATE_WINDOW_MS ?
	    ds->rate_cur : 0;
	ds->rate_cur = 0;
	ds->rate_ms = now_ms - (now_ms - ds->rate_ms) % RATE_WINDOW_MS;
}

/*
 * Delivered in the last minute, about: this minute's count plus the
 * part of the last one that the sliding minute still covers.
 */
static double
rate_now(const struct dl_dest *ds, uint64_t now_ms)
{
	uint64_t in = now_ms - ds->rate_ms;
	uint32_t cur = ds->rate_cur, prev = ds->rate_prev;

	if (in >= 2 * RATE_WINDOW_MS)
		return 0;
	if (in >= RATE_WINDOW_MS) {
		prev = cur;
		cur = 0;
		in -= RATE_WINDOW_MS;
	}
	return cur + prev * (double)(RATE_WINDOW_MS - in) / RATE_WINDOW_MS;
}

/* Is text a reply line of this code ("451 ...")? */
static bool
starts_with_code(const char *text, int code)
{
	char c[4];

	if (code < 100 || code > 999)
		return false;
	snprintf(c, sizeof(c), "%03d", code);
	return strncmp(text, c, 3) == 0 &&
	    (text[3] == ' ' || text[3] == '-' || text[3] == '\0');
}

void
dl_stats_line(struct deliver *d, struct dl_dest *ds, int st, int code,
    const char *text, uint64_t delay_us)
{
	struct stats_shard *s = &stats_shards[d->id];
	unsigned cls = code >= 200 && code < 300 ? 0 : code >= 400 &&
	    code < 500 ? 2 : code >= 500 && code < 600 ? 3 : STATS_OUT_NOREPLY;

	if (st < 0 || st >= STATS_OUTCOMES)
		return;
	stats_add(&s->outcomes[st], 1);
	stats_add(&s->reply_out[cls], 1);
	if (st == STATS_DELIVERED) {
		stats_observe(&s->delay, STATS_H_DELAY_US, delay_us);
		d->delivered++;
	}
	if (ds == NULL)
		return;
	switch (st) {
	case STATS_DELIVERED:
	case STATS_DISCARDED:
		ds->n_delivered++;
		rate_roll(ds, d->now_ms);
		ds->rate_cur++;
		break;
	case STATS_DEFERRED:
		ds->n_deferred++;
		break;
	default:
		ds->n_bounced++;
		break;
	}
	if (st == STATS_DEFERRED || st == STATS_BOUNCED ||
	    st == STATS_EXPIRED) {
		ds->last_err_us = clock_real_us();
		/* Replies are whole lines ("451 4.7.1 ..."); our own
		 * reasons ("connection refused") get their code. */
		if (text != NULL && starts_with_code(text, code))
			snprintf(ds->last_err, sizeof(ds->last_err), "%s", text);
		else if (code != 0)
			snprintf(ds->last_err, sizeof(ds->last_err), "%d %s",
			    code, text != NULL ? text : "");
		else
			snprintf(ds->last_err, sizeof(ds->last_err), "%s",
			    text != NULL ? text : "failed");
	}
}

void
dl_stats_publish(const struct deliver *d)
{
	struct stats_shard *s = &stats_shards[d->id];

	stats_set(&s->conns_out, d->opened);
	stats_set(&s->tls_out, d->tls_handshakes);
	stats_set(&s->tls_out_failed, d->tls_failed);
	stats_set(&s->parked, d->parked);
	stats_set(&s->g_conns_out, d->nactive);
	stats_set(&s->g_items, d->nitems);
	stats_set(&s->g_rcpts, d->nrcpts);
	stats_set(&s->g_deferred, d->nheap);
	stats_set(&s->g_dests, d->ndests);
}

/* ---- the table, on the owner's thread -------------------------------- */

static const char *
dest_state(const struct deliver *d, const struct dl_dest *ds)
{
	if (d->now_ms < ds->hold_until_ms)
		return ds->broken_ms > 0 ? "broken" : "held";
	if (ds->rstatus != RESOLVE_OK)
		return "unresolved";
	if (d->now_ms < ds->open_after_ms)
		return "gated";
	if (ds->eff_max < dl_dest_max(ds) &&
	    (ds->fails > 0 || ds->nrecent > 0) &&
	    (ds->recent & ((1u << ds->nrecent) - 1)) != 0)
		return "slowed";
	return "ok";
}

static void
dest_row(const struct deliver *d, const struct dl_dest *ds,
    struct deliver_dest_stat *r)
{
	uint32_t mask = ds->nrecent >= 32 ? UINT32_MAX :
	    (1u << ds->nrecent) - 1;

	snprintf(r->key, sizeof(r->key), "%s", ds->key);
	r->queued = ds->nitems;
	r->ready = ds->queued;
	r->conns = ds->nconn;
	r->conn_limit = ds->eff_max;
	r->max_conns = ds->route->policy.max_connections;
	r->failures = ds->fails;
	r->recent = ds->nrecent;
	r->recent_failed = (uint32_t)__builtin_popcount(ds->recent & mask);
	r->hold_ms = d->now_ms < ds->hold_until_ms ?
	    ds->hold_until_ms - d->now_ms : 0;
	r->state = dest_state(d, ds);
	r->rate = rate_now(ds, d->now_ms);
	r->delivered = ds->n_delivered;
	r->deferred = ds->n_deferred;
	r->bounced = ds->n_bounced;
	r->last_error_us = ds->last_err_us;
	snprintf(r->last_error, sizeof(r->last_error), "%s", ds->last_err);
}

/* Does a rank before b: more queued, then the name. */
static bool
ranks_before(const struct dl_dest *a, const struct dl_dest *b)
{
	if (a->nitems != b->nitems)
		return a->nitems > b->nitems;
	return strcmp(a->key, b->key) < 0;
}

static void
request_put(struct stats_req *rq)
{
	if (atomic_fetch_sub(&rq->refs, 1) != 1)
		return;
	for (unsigned i = 0; i < rq->st.nshards; i++)
		free(rq->st.shard[i].rows);
	if (rq->efd >= 0)
		close(rq->efd);
	free(rq);
}

void
dl_stats_answer(struct deliver *d, struct dl_item *ctl)
{
	struct stats_req *rq = (struct stats_req *)(uintptr_t)ctl->qid;
	struct deliver_shard_stat *me = &rq->st.shard[d->id];
	const struct dl_dest **top;
	unsigned ntop = 0, want = rq->top;
	int rc;

	free(ctl);
	/* The top few by insertion: a table of thousands, a top of 20. */
	top = calloc(want, sizeof(*top));
	for (unsigned b = 0; b < DL_DEST_BUCKETS; b++)
		for (const struct dl_dest *ds = d->buckets[b]; ds != NULL;
		    ds = ds->hnext) {
			unsigned at;

			me->ndests++;
			me->queued += ds->nitems;
			me->ready += ds->queued;
			me->conns += ds->nconn;
			me->delivered += ds->n_delivered;
			me->deferred += ds->n_deferred;
			me->bounced += ds->n_bounced;
			me->rate += rate_now(ds, d->now_ms);
			if (top == NULL || (ntop == want &&
			    !ranks_before(ds, top[ntop - 1])))
				continue;
			at = ntop < want ? ntop++ : want - 1;
			for (; at > 0 && ranks_before(ds, top[at - 1]); at--)
				top[at] = top[at - 1];
			top[at] = ds;
		}
	for (unsigned i = 0; i < ntop; i++)
		dest_row(d, top[i], &me->rows[i]);
	me->nrows = ntop;
	me->answered = true;
	free(top);
	atomic_store_explicit(&rq->done[d->id], true, memory_order_release);
	/* Never blocks: a nonblocking eventfd far from its limit. */
	if ((rc = efd_wake(rq->efd)) < 0)
		log_warn("deliver: stats: eventfd write: %s", strerror(-rc));
	request_put(rq);
}

void
dl_stats_drop(struct dl_item *ctl)
{
	struct stats_req *rq = (struct stats_req *)(uintptr_t)ctl->qid;

	free(ctl);
	request_put(rq);
}

/* ---- the asking side --------------------------------------------------- */

/* The same destination's row in an earlier shard's answer, or NULL. */
static struct deliver_dest_stat *
lane_find(struct deliver_stats *st, unsigned before,
    const struct deliver_dest_stat *row)
{
	for (unsigned j = 0; j < before; j++) {
		struct deliver_shard_stat *sh = &st->shard[j];

		for (unsigned r = 0; sh->answered && r < sh->nrows; r++)
			if (sh->rows[r].max_conns == row->max_conns &&
			    strcmp(sh->rows[r].key, row->key) == 0)
				return &sh->rows[r];
	}
	return NULL;
}

/* Two lanes of one destination seen as one. */
static void
lane_add(struct deliver_dest_stat *to, const struct deliver_dest_stat *row)
{
	to->queued += row->queued;
	to->ready += row->ready;
	to->conns += row->conns;
	to->conn_limit += row->conn_limit;
	if (row->failures > to->failures)
		to->failures = row->failures;
	to->recent += row->recent;
	to->recent_failed += row->recent_failed;
	if (row->hold_ms > to->hold_ms)
		to->hold_ms = row->hold_ms;
	if (strcmp(to->state, "ok") == 0)
		to->state = row->state;
	to->rate += row->rate;
	to->delivered += row->delivered;
	to->deferred += row->deferred;
	to->bounced += row->bounced;
	if (row->last_error_us > to->last_error_us) {
		to->last_error_us = row->last_error_us;
		memcpy(to->last_error, row->last_error, sizeof(to->last_error));
	}
}

/*
 * A destination spread over the shards (dl_lanes()) has a lane in each:
 * the operator sees one row of it, in the first shard that has one, with
 * the other lanes added (connections, limits, counts), and counted once.
 * Only lanes within each shard's top are found so.
 */
static void
lanes_merge(struct deliver_stats *st)
{
	for (unsigned i = 1; i < st->nshards; i++) {
		struct deliver_shard_stat *sh = &st->shard[i];
		unsigned keep = 0;

		if (!sh->answered)
			continue;
		for (unsigned r = 0; r < sh->nrows; r++) {
			struct deliver_dest_stat *to = lane_find(st, i,
			    &sh->rows[r]);

			if (to == NULL) {
				if (keep != r)
					sh->rows[keep] = sh->rows[r];
				keep++;
				continue;
			}
			lane_add(to, &sh->rows[r]);
			if (sh->ndests > 0)
				sh->ndests--;
		}
		sh->nrows = keep;
	}
}

int
deliver_stats_collect(unsigned top, unsigned timeout_ms,
    struct deliver_stats **out)
{
	unsigned n = dl_nshards(), got = 0;
	uint64_t deadline = clock_mono_ms() + timeout_ms;
	struct deliver_stats *res;
	struct stats_req *rq;

	*out = NULL;
	if (top == 0 || top > DELIVER_STATS_TOP_MAX)
		return -EINVAL;
	rq = calloc(1, sizeof(*rq));
	res = calloc(1, sizeof(*res));
	if (rq == NULL || res == NULL) {
		free(rq);
		free(res);
		return -ENOMEM;
	}
	rq->st.nshards = res->nshards = n;
	rq->top = top;
	rq->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (rq->efd < 0) {
		int err = -errno;

		free(rq);
		free(res);
		return err;
	}
	for (unsigned i = 0; i < n; i++) {
		rq->st.shard[i].rows = calloc(top, sizeof(struct deliver_dest_stat));
		res->shard[i].rows = calloc(top, sizeof(struct deliver_dest_stat));
		if (rq->st.shard[i].rows == NULL || res->shard[i].rows == NULL)
			goto nomem;
	}
	atomic_init(&rq->refs, 1);
	for (unsigned i = 0; i < n; i++) {
		struct dl_item *it = calloc(1, sizeof(*it));

		if (it == NULL)
			break;
		it->ctl = DELIVER_CTL_STATS;
		/* A control item's qid carries the request's address. */
		it->qid = (uint64_t)(uintptr_t)rq;
		atomic_fetch_add(&rq->refs, 1);
		dl_post(i, it);
	}
	while (got < n) {
		struct pollfd p = { .fd = rq->efd, .events = POLLIN };
		uint64_t now = clock_mono_ms(), v;

		got = 0;
		for (unsigned i = 0; i < n; i++)
			got += atomic_load_explicit(&rq->done[i],
			    memory_order_acquire);
		if (got == n || now >= deadline)
			break;
		if (poll(&p, 1, (int)(deadline - now)) > 0 &&
		    read(rq->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
			break;
	}
	/* Copied out: a shard late past the deadline writes only into rq. */
	for (unsigned i = 0; i < n; i++) {
		struct deliver_dest_stat *rows = res->shard[i].rows;

		if (!atomic_load_explicit(&rq->done[i], memory_order_acquire))
			continue;
		res->shard[i] = rq->st.shard[i];
		res->shard[i].rows = rows;
		memcpy(rows, rq->st.shard[i].rows,
		    rq->st.shard[i].nrows * sizeof(*rows));
		res->answered++;
	}
	request_put(rq);
	lanes_merge(res);
	*out = res;
	return 0;
nomem:
	atomic_init(&rq->refs, 1);
	request_put(rq);
	deliver_stats_free(res);
	return -ENOMEM;
}

void
deliver_stats_free(struct deliver_stats *st)
{
	if (st == NULL)
		return;
	for (unsigned i = 0; i < st->nshards; i++)
		free(st->shard[i].rows);
	free(st);
}
