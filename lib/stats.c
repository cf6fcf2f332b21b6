/*
 * stats.c - the counter blocks and their histograms; see stats.h.
 */
#include "stats.h"

#include "clock.h"

#include <assert.h>
#include <stdbool.h>
#include <string.h>

struct stats_shard stats_shards[STATS_SHARDS_MAX];
struct stats_commit stats_commit;

/*
 * Bounds. Accept latency: from a quarter of a millisecond (a small
 * message and one sync on a fast disk) to seconds (a slow disk). Delivery
 * delay: from a tenth of a second to five days (the default max_age).
 * Batch size: records per group commit, in powers of two.
 */
static const uint64_t accept_us[] = {
	250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000,
	500000, 1000000, 2500000, 5000000,
};
static const uint64_t delay_us[] = {
	100000, 500000, 1000000, 5000000, 10000000, 30000000, 60000000,
	300000000, 900000000, 3600000000ull, 14400000000ull, 86400000000ull,
	432000000000ull,
};
static const uint64_t batch[] = {
	1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096,
};
static const uint64_t sync_us[] = {
	100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000,
	1000000,
};

#define NB(a) (sizeof(a) / sizeof((a)[0]))
static_assert(NB(accept_us) <= STATS_BUCKETS_MAX, "accept buckets");
static_assert(NB(delay_us) <= STATS_BUCKETS_MAX, "delay buckets");
static_assert(NB(batch) <= STATS_BUCKETS_MAX, "batch buckets");
static_assert(NB(sync_us) <= STATS_BUCKETS_MAX, "sync buckets");

const uint64_t *
stats_bounds(enum stats_hist_kind kind, unsigned *n)
{
	switch (kind) {
	case STATS_H_ACCEPT_US:
		*n = NB(accept_us);
		return accept_us;
	case STATS_H_DELAY_US:
		*n = NB(delay_us);
		return delay_us;
	case STATS_H_BATCH:
		*n = NB(batch);
		return batch;
	case STATS_H_SYNC_US:
		*n = NB(sync_us);
		return sync_us;
	case STATS_H_SIGN_US:
		/* A signature is part of the accept latency: its bounds. */
		*n = NB(accept_us);
		return accept_us;
	default:
		assert(!"bad histogram kind");
		*n = 0;
		return NULL;
	}
}

void
stats_observe(struct stats_hist *h, enum stats_hist_kind kind, uint64_t v)
{
	unsigned n, i;
	const uint64_t *b = stats_bounds(kind, &n);

	/* A dozen bounds: a scan is as quick as a search. */
	for (i = 0; i < n && v > b[i]; i++)
		;
	stats_add(&h->bucket[i], 1);
	stats_add(&h->sum, v);
}

void
stats_accepted(struct stats_shard *s, uint32_t nrcpt, uint32_t bytes,
    uint64_t start_us)
{
	uint64_t now;

	stats_add(&s->messages_in, 1);
	stats_add(&s->rcpts_in, nrcpt);
	stats_add(&s->bytes_in, bytes);
	if (start_us == 0)
		return;
	now = clock_real_us();
	stats_observe(&s->accept, STATS_H_ACCEPT_US,
	    now > start_us ? now - start_us : 0);
}

static bool
digit(char c)
{
	return c >= '0' && c <= '9';
}

void
stats_reply(struct stats_shard *s, const char *p, size_t len)
{
	unsigned cls, subj = STATS_SUBJECTS - 1;

	if (len < 3 || p[0] < '2' || p[0] > '5' || !digit(p[1]) ||
	    !digit(p[2]))
		return;
	cls = (unsigned)(p[0] - '2');
	/* "NNN X.Y.Z" or "NNN-X.Y.Z": X is the reply's own class. */
	if (len >= 7 && (p[3] == ' ' || p[3] == '-') && p[4] == p[0] &&
	    p[5] == '.' && digit(p[6]) && p[6] <= '7')
		subj = (unsigned)(p[6] - '0');
	stats_add(&s->replies[cls][subj], 1);
}

void
stats_hist_read(const struct stats_hist *h, struct stats_hist_copy *out)
{
	memset(out, 0, sizeof(*out));
	for (unsigned i = 0; i <= STATS_BUCKETS_MAX; i++) {
		out->bucket[i] = stats_get(&h->bucket[i]);
		out->count += out->bucket[i];
	}
	out->sum = stats_get(&h->sum);
}

void
stats_hist_add(struct stats_hist_copy *out, const struct stats_hist_copy *in)
{
	for (unsigned i = 0; i <= STATS_BUCKETS_MAX; i++)
		out->bucket[i] += in->bucket[i];
	out->sum += in->sum;
	out->count += in->count;
}
