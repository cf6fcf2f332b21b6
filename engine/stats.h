/*
 * stats.h - the daemon's picture of itself, for `sluicectl status` (the
 * control thread) and /metrics (the metrics thread).
 *
 * A view is put together from three sources, none of which stops a
 * shard:
 *   - the counter blocks of lib/stats.h, summed over the shards (the
 *     shards count, nobody waits);
 *   - the queue index, read in short read transactions like `sluicectl
 *     queue list` reads it (messages, and how many are queued, deferred
 *     or held by the same rules as its --status filter; the oldest);
 *   - the destinations, asked of every shard through its inbox
 *     (deliver_stats_collect()), with a bounded wait: a shard too busy to
 *     answer in time is left out and the view says so.
 *
 * The rates over the last minute come from a ring of per-second samples
 * of the totals (struct stats_ring), which the control thread keeps.
 *
 * Threads: any but a shard's. Nothing here is shared between the two
 * callers except the counter blocks, which are read-only to them.
 */
#ifndef SLUICE_ENGINE_STATS_H
#define SLUICE_ENGINE_STATS_H

#include <stdbool.h>
#include <stdint.h>

#include "../deliver/deliver.h"
#include "../lib/buf.h"
#include "../lib/stats.h"
#include "../queue/queue.h"

#define STATS_TOP 20		/* destinations shown, by queued */
#define STATS_DEST_WAIT_MS 1000	/* for the shards' answers */
#define STATS_SCAN_MS 1000	/* at most this long reading the index */

/* What the index holds, by the rules of `queue list --status`. */
struct stats_queue {
	bool read;			/* false: the index could not be read */
	bool complete;			/* the scan saw every message */
	uint64_t messages;		/* in the index */
	uint64_t scanned;
	uint64_t queued, deferred, held;	/* of those scanned */
	uint64_t quarantined;
	uint64_t parked;		/* recipients waiting in the index */
	uint64_t oldest_qid;		/* 0: the queue is empty */
	uint64_t oldest_arrival_us;
	uint64_t scan_us;		/* how long the scan took */
};

/* One destination row, or a sum of many ("_other", all). */
struct stats_dests_sum {
	uint64_t count;
	uint64_t queued, ready, conns;
	uint64_t delivered, deferred, bounced;
	double rate;
};

struct stats_view {
	uint64_t now_us;		/* real time of the view */
	uint64_t started_us;		/* real time the daemon was ready */
	unsigned shards;
	/* The counters, summed over the shards. */
	uint64_t conns_in, conns_in_closed, conns_in_refused;
	uint64_t tls_in, tls_in_failed;
	uint64_t messages_in, rcpts_in, bytes_in;
	uint64_t replies[STATS_CLASSES][STATS_SUBJECTS];
	uint64_t outcomes[STATS_OUTCOMES];
	uint64_t reply_out[STATS_CLASSES];
	uint64_t conns_out, tls_out, tls_out_failed, parked;
	uint64_t read_mem, read_back;	/* records sent from memory / spool */
	uint64_t g_conns_out, g_items, g_rcpts, g_deferred, g_dests;
	struct stats_hist_copy accept, delay, batch, sync, sign;
	struct stats_queue queue;
	/* The destinations: answered of shards, the top ones merged. */
	bool dests_read;
	unsigned dests_answered;
	unsigned ntop;
	struct deliver_dest_stat top[STATS_TOP];
	struct stats_dests_sum dests_all, dests_other;
};

/* Sum the counter blocks of shards 0..shards-1 into v (all of v reset). */
void stats_sum(struct stats_view *v, unsigned shards);

/*
 * Read the index into q, for at most budget_ms (then complete is false
 * and the counts are of what was scanned). 0, or the index's error (q
 * then has read false).
 */
int stats_queue_scan(struct queue_index *qi, struct stats_queue *q,
    unsigned budget_ms);

/* Ask the shards for their destinations and merge the top ones into v. */
void stats_dests(struct stats_view *v, unsigned timeout_ms);

/* The time the daemon became ready; the first call sets it. */
uint64_t stats_started_us(void);

/*
 * Rates over the last minute: a sample of the totals every second, the
 * last STATS_RING_N of them. Owned by one thread.
 */
enum stats_ring_val {
	STATS_R_ACCEPTED = 0,
	STATS_R_DELIVERED,
	STATS_R_DEFERRED,
	STATS_R_BOUNCED,
	STATS_R_EXPIRED,
	STATS_R_DISCARDED,
	STATS_R_VALS
};
#define STATS_RING_N 61
struct stats_ring {
	unsigned n;			/* samples taken */
	struct {
		uint64_t ms;		/* monotonic */
		uint64_t v[STATS_R_VALS];
	} s[STATS_RING_N];
};
/* The totals of v, by enum stats_ring_val. */
void stats_ring_vals(const struct stats_view *v, uint64_t out[STATS_R_VALS]);
/* Take a sample (monotonic ms now) of the totals in v. */
void stats_ring_add(struct stats_ring *r, uint64_t now_ms,
    const uint64_t vals[STATS_R_VALS]);
/*
 * What the totals grew by over the last minute, up to now: delta[] and
 * the window it covers (*window_ms, up to 60 s; less after a start).
 */
void stats_ring_minute(const struct stats_ring *r, uint64_t now_ms,
    const uint64_t vals[STATS_R_VALS], uint64_t delta[STATS_R_VALS],
    uint64_t *window_ms);

/*
 * The Prometheus text exposition (format 0.0.4) of v: appended to out.
 * 0, or -ENOBUFS / -ENOMEM (out is then cut where it failed).
 */
int stats_prom_write(struct buf *out, const struct stats_view *v);

#endif
