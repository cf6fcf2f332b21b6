/*
 * deliver.h - the delivery side of a shard: scheduler, destinations,
 * outbound SMTP/LMTP connections, retries and bounces.
 *
 * Ownership: every destination (route_destination(): a domain, or a next
 * hop "[host]:port") belongs to the shard chosen by an xxHash of its name,
 * so per-destination limits hold without locks; under delivery.spread a
 * fixed next hop with room for two connections per shard has a lane on
 * every shard instead, each with its part of the limit, and an item goes
 * to the lane of the shard that dispatches it. A message's recipients
 * are grouped by destination into items; each item is posted to its
 * owner's inbox (a lock-free list, woken through the owner's eventfd),
 * from the shard that accepted the message, from a DSN, or at start-up
 * from the index.
 *
 * The owner keeps items in memory: ready ones in their destination's
 * FIFO, deferred ones in a heap by retry time. Outbound connections run
 * on the shard's ring (op kinds DELIVER_OP_*), the SMTP dialogue is
 * proto/smtp_client.c, DNS is deliver/resolver.c on the same ring.
 * Results go to the index through the committer (batched like
 * acceptance), one JSON line per recipient per attempt goes to the
 * delivery log, and bounces produce a DSN queued as a new message.
 *
 * Threads: deliver_* functions run on their shard's thread, except
 * deliver_global_init/deliver_dispatch* (main thread before the shards
 * start, or any shard) and deliver_post (any thread).
 */
#ifndef SLUICE_DELIVER_H
#define SLUICE_DELIVER_H

#include <stdbool.h>
#include <stdint.h>

#include "../queue/queue.h"
#include "deliver_cfg.h"
#include "route.h"

struct buf;
struct io_uring;
struct deliver;
struct queue_index;
struct queue_update;
struct rbuf;

/*
 * What delivery asks of the shard it runs on (engine/shard.c provides it):
 * the two ways its results reach the queue. Both run on the shard's
 * thread and never block.
 *   queue_dsn       queue msg (a DSN from <> to rcpt) with the updates ups
 *                   in the same index write; its queue id, or 0 when it
 *                   could not be queued (the updates are then not sent)
 *   submit_updates  hand recipient-state updates to the committer
 */
struct deliver_host {
	uint64_t (*queue_dsn)(void *ctx, const char *rcpt, struct buf *msg,
	    struct queue_update *ups, uint32_t nups);
	void (*submit_updates)(void *ctx, struct queue_update *ups,
	    uint32_t nups);
};

/* Completions with an op at or above this belong to the deliverer. */
#define DELIVER_OP_BASE 32

/*
 * Before any shard runs: the settings (kept by pointer), the shard count,
 * each shard's eventfd (to wake an owner whose inbox got items) and the
 * queue's index (where what does not fit the active set waits).
 */
void deliver_global_init(const struct deliver_cfg *cfg, unsigned nshards,
    const int *efds, struct queue_index *qi);
void deliver_global_free(void);
/*
 * A reload: mail dispatched from now on is routed by cfg (a newer
 * generation; an older one stays valid while items and destinations
 * hold it, see deliver_cfg_unused()). Any thread; each shard then calls deliver_reconfigure() at a safe
 * point, after pointing its deliverer's settings at the same generation.
 */
void deliver_global_reconfigure(const struct deliver_cfg *cfg);
/*
 * On the shard, after the settings its deliverer points at changed: the
 * shard's shares of delivery.connections and the active set are taken
 * again (a lower connection budget lets connections over it finish; no
 * new one opens until the count is below it). Destinations, queues,
 * backoff and connections stay.
 */
void deliver_reconfigure(struct deliver *d);

/*
 * Before cfg is published (at start, before any shard runs; at a reload,
 * before deliver_global_reconfigure()): the TLS client contexts every
 * route of cfg (and MX delivery) will use, CA files read now, kept in
 * cfg->tls. 0, or -1 with why (cfg->tls unchanged). deliver_tls_free()
 * once nothing uses cfg (deliver_cfg_unused(), or the shards are gone).
 */
int deliver_tls_init(struct deliver_cfg *cfg, char *why, size_t whylen);
void deliver_tls_free(struct deliver_cfg *cfg);

/*
 * Can cfg, an older configuration than the one dispatch uses, be freed?
 * True when no item or destination holds it and no dispatch is under
 * way that may have read it as the newest (it then stays unused: nothing
 * takes a new hold on an older configuration). Any thread. The caller
 * must also know that no shard runs its deliverer under cfg any more.
 */
bool deliver_cfg_unused(const struct deliver_cfg *cfg);

/*
 * The active set. Each shard keeps at most its share of
 * delivery.active_messages items and delivery.active_recipients
 * recipients in memory (destination FIFOs, the deferred heap, connections).
 * Beyond that an item is parked: its recipients go to the index's
 * "parked" table (QUEUE_UPD_PARK, through the committer) with their due
 * time and the item leaves memory; an item due now that arrives when the
 * set is full parks a deferred one instead. When a shard has room again
 * (a quarter of its share), the feeder thread takes its parked recipients
 * out of the index, earliest due first and only those due within
 * DELIVER_FEED_HORIZON_S, and dispatches them again.
 *
 * deliver_start_begin()/deliver_start_end() bracket the start-up schedule
 * (main thread, before the shards run): the parked table is cleared
 * first, and what exceeds a shard's share is parked straight into the
 * index instead of being posted, so a large queue never sits in memory
 * whole. deliver_feed_start()/deliver_feed_stop() run the feeder.
 */
#define DELIVER_FEED_HORIZON_S 60
int deliver_start_begin(void);
int deliver_start_end(void);
int deliver_feed_start(void);
void deliver_feed_stop(void);
/*
 * Held by the feeder across each unpark and the posts that follow it, and
 * by the control thread across an operator command that must not cross
 * one (hold, delete, bounce): otherwise items taken out of the index just
 * before a hold could reach their shard just after its DROP.
 */
void deliver_park_lock(void);
void deliver_park_unlock(void);
/* Operator flush: every parked recipient is due now. */
int deliver_unpark_all_now(void);
/* Operator bounce: qid's parked recipients come back; posted after the
 * BOUNCE, they are bounced as they arrive (the shard remembers it). */
int deliver_unpark_qid(uint64_t qid);

/*
 * Dispatch a message read from the index: the recipients pending[i] (NULL:
 * every pending one), with the highest attempt count among them and, when
 * next_try_us is UINT64_MAX, their latest retry time. Returns the items
 * posted or -ENOMEM.
 */
int deliver_dispatch_msg(const struct queue_msg *m, const bool *pending,
    uint64_t next_try_us);

/*
 * Route a message's pending recipients and post one item per destination
 * to its owner. pending[i] tells whether recipient i is still to be
 * delivered (NULL: all are); attempts and next_try_us come from the index
 * (0 for a new message). Recipients routed to discard are reported through
 * *discarded (a bitmap of nrcpt bits the caller marks delivered); may be
 * NULL when the caller has none to mark. rec (may be NULL): the record's
 * bytes in memory, exactly as written to the spool; each item takes a
 * reference and its first attempt sends from it instead of reading the
 * record back (the caller keeps its own reference). Returns the number of
 * items posted, or -ENOMEM.
 */
int deliver_dispatch(const struct msg_meta *mm, uint64_t qid,
    const struct envelope *env, const bool *pending, uint16_t attempts,
    uint64_t next_try_us, bool *discarded, struct rbuf *rec);

/*
 * Operator commands, posted to a shard's inbox (any thread):
 *   FLUSH   the deferred items of qid (qid 0: every one) are due now,
 *           and their destinations (0: all) stop waiting
 *   DROP    forget the items of qid (deleted or put on hold)
 *   BOUNCE  bounce the items of qid now (a DSN to the sender)
 *   UPDATE  hand the index update (upd: enum queue_upd_kind) of qid to
 *           the committer, through this shard
 * Items on a connection at that moment finish their attempt.
 */
enum deliver_ctl {
	DELIVER_CTL_FLUSH = 1,
	DELIVER_CTL_DROP,
	DELIVER_CTL_BOUNCE,
	DELIVER_CTL_UPDATE,
	DELIVER_CTL_STATS,	/* deliver_stats_collect() only */
};
int deliver_control(unsigned shard, enum deliver_ctl what, uint64_t qid,
    unsigned upd);

/*
 * Destinations as the operator sees them (sluicectl status, /metrics),
 * from any thread but a shard's. deliver_stats_collect() posts a request
 * to every shard's inbox (DELIVER_CTL_STATS); each shard answers on its
 * own thread between two loop iterations: it fills its part (its top
 * destinations by queued items, and its totals over all of them) and
 * writes the request's eventfd. The caller waits at most timeout_ms; a
 * shard that has not answered by then is left out (answered false), and
 * the request is freed by whichever side lets go of it last, so a late
 * answer never writes into freed memory.
 */
#define DELIVER_STATS_TOP_MAX 100
#define DELIVER_STATS_ERR_MAX 160

struct deliver_dest_stat {
	char key[ROUTE_DEST_MAX + 1];	/* route_destination() */
	uint32_t queued;		/* items (a message's recipients at
					 * it) in memory: ready, deferred,
					 * on a connection */
	uint32_t ready;			/* of them due, waiting */
	uint32_t conns;			/* open connections */
	uint32_t conn_limit;		/* it may open now (slow start, AIMD) */
	uint32_t max_conns;		/* its route's max_connections */
	uint32_t failures;		/* temporary failures in a row */
	uint32_t recent, recent_failed;	/* of its last attempts */
	uint64_t hold_ms;		/* held off for this long yet */
	const char *state;		/* static text, deliver_dest_state() */
	double rate;			/* recipients delivered, last minute */
	uint64_t delivered, deferred, bounced;	/* since it was made */
	uint64_t last_error_us;		/* real time; 0: none */
	char last_error[DELIVER_STATS_ERR_MAX];	/* "451 4.7.1 ..." */
};

struct deliver_shard_stat {
	bool answered;
	uint32_t ndests;		/* destinations in memory */
	uint64_t queued, ready, conns;	/* summed over all of them */
	uint64_t delivered, deferred, bounced;
	double rate;
	uint32_t nrows;
	struct deliver_dest_stat *rows;	/* its top, by queued */
};

struct deliver_stats {
	unsigned nshards;
	unsigned answered;		/* shards that answered in time */
	struct deliver_shard_stat shard[64];
};

/*
 * The top `top` (1..DELIVER_STATS_TOP_MAX) destinations of every shard
 * into *out (free with deliver_stats_free()). 0, -ENOMEM, or -errno of
 * the eventfd; a shard late past timeout_ms is only left out.
 */
int deliver_stats_collect(unsigned top, unsigned timeout_ms,
    struct deliver_stats **out);
void deliver_stats_free(struct deliver_stats *st);

/* One delivery log line for a recipient routed to discard. */
void deliver_log_discard(struct deliver *d, uint64_t qid,
    const struct envelope *env, uint16_t idx, uint32_t size);

/* The deliverer of one shard; NULL on failure (reported). */
struct deliver *deliver_create(const struct deliver_host *host,
    void *host_ctx, struct io_uring *ring, unsigned shard_id,
    const struct deliver_cfg *cfg);
void deliver_destroy(struct deliver *d);

/* A completion with op >= DELIVER_OP_BASE. */
void deliver_complete(struct deliver *d, uint64_t ud, int res, uint32_t flags);
/*
 * Before the shard sleeps: take the inbox, start what can start. Items a
 * shard's own thread dispatches to itself (outside deliver_run()) do not
 * wake it: this call takes them.
 */
void deliver_run(struct deliver *d, uint64_t now_ms);
/* Every tick: timeouts, retries, the resolver. */
void deliver_tick(struct deliver *d, uint64_t now_ms);
/*
 * Stop: no new connections, idle ones get QUIT; with force, every
 * connection is closed (what was in flight is deferred). true once all
 * are closed.
 */
bool deliver_stop(struct deliver *d, bool force);

#endif
