/*
 * stats.h - the daemon's counters, kept so that any thread can read them
 * while the threads that count never wait for a reader.
 *
 * Purpose: `sluicectl status` and the Prometheus endpoint read what the
 * shards and the committer count, from other threads (control, metrics),
 * without a lock and without asking the counting thread anything.
 *
 * Contract: every block has exactly one writer thread: a shard writes
 * stats_shards[its id] (its SMTP sessions through the session's pointer,
 * its delivery, its connections), the committer writes stats_commit.
 * The writer adds with stats_add(): a relaxed load and a relaxed store,
 * no locked instruction, since nobody else writes the word; readers load
 * relaxed. A reader therefore sees each counter whole and never going
 * back, but not a cut across counters taken at one instant: a message
 * may show as delivered a moment before it shows as accepted. Every
 * counter only grows (gauges excepted, which the writer stores).
 * Blocks are cache-line aligned so that two shards never write the
 * same line.
 *
 * Histograms keep per-bucket counts (not cumulative; the exposition
 * adds them up) and the sum of what was observed, in the histogram's
 * unit (microseconds, or a plain count). The bucket bounds of each kind
 * are fixed here (stats_bounds()), so the exposition and the observer
 * agree on them.
 */
#ifndef SLUICE_STATS_H
#define SLUICE_STATS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define STATS_SHARDS_MAX 64
#define STATS_BUCKETS_MAX 16		/* finite bounds; +Inf is one more */

/* Outcomes of a recipient's delivery attempt, as the delivery log's. */
enum stats_outcome {
	STATS_DELIVERED = 0,
	STATS_DEFERRED,
	STATS_BOUNCED,
	STATS_EXPIRED,
	STATS_DISCARDED,
	STATS_OUTCOMES
};

/* Reply classes counted: 2xx..5xx, and (outbound) no reply at all. */
#define STATS_CLASSES 4			/* 2, 3, 4, 5 */
#define STATS_SUBJECTS 9		/* enhanced X.0..X.7, 8: none */
#define STATS_OUT_NOREPLY 1		/* index of "none" in reply_out[] */

enum stats_hist_kind {
	STATS_H_ACCEPT_US = 0,		/* start of DATA to the 250 */
	STATS_H_DELAY_US,		/* arrival to delivery */
	STATS_H_BATCH,			/* records per group commit */
	STATS_H_SYNC_US,		/* a group commit's write and sync */
	STATS_H_SIGN_US,		/* end of data to its DKIM fields back */
	STATS_H_KINDS
};

struct stats_hist {
	_Atomic uint64_t bucket[STATS_BUCKETS_MAX + 1];
	_Atomic uint64_t sum;
};

struct stats_shard {
	/* Inbound. */
	_Atomic uint64_t conns_in;		/* accepted and served */
	_Atomic uint64_t conns_in_closed;
	_Atomic uint64_t conns_in_refused;	/* limits, shutting down */
	_Atomic uint64_t tls_in;		/* handshakes completed */
	_Atomic uint64_t tls_in_failed;
	_Atomic uint64_t messages_in;		/* 250 after the sync */
	_Atomic uint64_t rcpts_in;
	_Atomic uint64_t bytes_in;
	/* Every reply a session sent, by class and enhanced subject. */
	_Atomic uint64_t replies[STATS_CLASSES][STATS_SUBJECTS];
	/* Delivery: one count per delivery log line, by status. */
	_Atomic uint64_t outcomes[STATS_OUTCOMES];
	/* The reply behind each line: 2xx, none, 4xx, 5xx. */
	_Atomic uint64_t reply_out[STATS_CLASSES];
	/* Published by the shard at its tick: counters of its own. */
	_Atomic uint64_t conns_out;		/* opened */
	_Atomic uint64_t tls_out;
	_Atomic uint64_t tls_out_failed;
	_Atomic uint64_t parked;		/* recipients parked, ever */
	_Atomic uint64_t read_mem;		/* records sent from memory */
	_Atomic uint64_t read_back;		/* records read from the spool */
	/* Gauges, published at the tick. */
	_Atomic uint64_t g_conns_out;		/* open now */
	_Atomic uint64_t g_items;		/* the active set */
	_Atomic uint64_t g_rcpts;
	_Atomic uint64_t g_deferred;		/* items waiting to retry */
	_Atomic uint64_t g_dests;		/* destinations in memory */
	struct stats_hist accept;		/* STATS_H_ACCEPT_US */
	struct stats_hist delay;		/* STATS_H_DELAY_US */
	struct stats_hist sign;			/* STATS_H_SIGN_US */
} __attribute__((aligned(64)));

struct stats_commit {
	struct stats_hist batch;		/* STATS_H_BATCH */
	struct stats_hist sync;			/* STATS_H_SYNC_US */
} __attribute__((aligned(64)));

extern struct stats_shard stats_shards[STATS_SHARDS_MAX];
extern struct stats_commit stats_commit;

/* The one writer adds n. */
static inline void
stats_add(_Atomic uint64_t *c, uint64_t n)
{
	atomic_store_explicit(c, atomic_load_explicit(c,
	    memory_order_relaxed) + n, memory_order_relaxed);
}

/* The one writer stores a gauge. */
static inline void
stats_set(_Atomic uint64_t *c, uint64_t v)
{
	atomic_store_explicit(c, v, memory_order_relaxed);
}

static inline uint64_t
stats_get(const _Atomic uint64_t *c)
{
	return atomic_load_explicit((_Atomic uint64_t *)c,
	    memory_order_relaxed);
}

/*
 * The finite upper bounds of a kind's buckets, ascending, in its unit;
 * *n is how many (at most STATS_BUCKETS_MAX). Bucket n is +Inf.
 */
const uint64_t *stats_bounds(enum stats_hist_kind kind, unsigned *n);

/* The one writer observes v (a kind's unit). */
void stats_observe(struct stats_hist *h, enum stats_hist_kind kind,
    uint64_t v);

/*
 * A message acknowledged with 250: its recipients and bytes, and the
 * time since start_us (real time its data began; 0: not known).
 */
void stats_accepted(struct stats_shard *s, uint32_t nrcpt, uint32_t bytes,
    uint64_t start_us);

/*
 * Count one reply a session sent: line is its first bytes (at least
 * "NNN"); len how many there are. Anything that is not a 2xx-5xx reply
 * is not counted. The enhanced code, when the reply has one ("NNN
 * X.Y.Z"), gives the subject Y.
 */
void stats_reply(struct stats_shard *s, const char *line, size_t len);

/* A plain copy of a histogram (any thread). */
struct stats_hist_copy {
	uint64_t bucket[STATS_BUCKETS_MAX + 1];
	uint64_t sum;
	uint64_t count;
};
void stats_hist_read(const struct stats_hist *h, struct stats_hist_copy *out);
/* out += in, bucket by bucket. */
void stats_hist_add(struct stats_hist_copy *out,
    const struct stats_hist_copy *in);

#endif
