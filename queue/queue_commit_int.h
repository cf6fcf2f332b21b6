/*
 * queue_commit_int.h - what the committer (queue_commit.c) and the indexer
 * (queue_indexer.c) share: their limits, the batch handed from one to the
 * other, and struct committer, which holds both threads' state. Not for
 * use outside queue/ (the interface is queue_commit.h).
 */
#ifndef SLUICE_QUEUE_COMMIT_INT_H
#define SLUICE_QUEUE_COMMIT_INT_H

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
	/* The same, per shard, for its eventfd (committer_shard_waits()). */
	atomic_bool shard_waits[64];
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

/* A CLOCK_MONOTONIC time us (clock_mono_us() terms) as a timespec. */
static inline struct timespec
abs_mono(uint64_t us)
{
	return (struct timespec){ .tv_sec = (time_t)(us / 1000000u),
	    .tv_nsec = (long)(us % 1000000u) * 1000 };
}

/* queue_indexer.c */
void *ix_main(void *arg);
void ix_room_check(struct committer *c);
int ix_segref_count_msg(void *arg, const struct queue_msg *m);
void ix_free(struct ixbatch *b);

#endif
