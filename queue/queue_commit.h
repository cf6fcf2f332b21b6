/*
 * queue_commit.h - group commit: the segments are written and synced by
 * one thread, and indexed behind it by another.
 *
 * A shard gives a message's record its place in its current segment (seg,
 * offset) and hands a commit_job to the committer. The committer takes
 * every job waiting from every shard and, on its own ring, starts one
 * linked chain per segment: a writev of each record, then an fdatasync
 * (the kernel's workers run them). Once the chains are done it hands the
 * batch's index work (the puts that were written and synced, the updates,
 * the seals) to the indexer and every job back to its shard with the
 * result; the shard answers 250 at once. The acknowledged record is
 * durable in its segment, the log recovery replays (queue.h): the index
 * may follow. The indexer writes everything handed over since its last
 * write in one LMDB transaction, so under load one commit (two flushes)
 * serves many batches, and no acknowledgement waits for it. Only these two
 * threads ever wait on a write, a sync or a commit; no shard does.
 *
 * A record whose write or sync failed fails (a full disk: -ENOSPC or
 * -EDQUOT, so the client hears 452; anything else -EIO or the error) and
 * is never indexed; the other records of that segment in the batch fail
 * too, and so does every later job of it, without being written (its log
 * must not have a hole): the job's seg_failed tells the shard to retire
 * the segment. The indexer keeps room allocated on the disk ahead of the
 * index (queue_index_reserve()); while it cannot, or while index writes
 * fail (the map is full), shards refuse new messages before placing them
 * (committer_refusing(): QUEUE_EFULL, 452, or the index's error), a record
 * placed before the refusal fails its segment unwritten, and the indexer
 * keeps its work and tries it again whole: nothing is acknowledged that
 * the index could not take.
 *
 * With a spool the indexer also reclaims segments: it counts the indexed
 * messages of each (from the index at start, where every segment counts
 * as sealed) and unlinks a sealed segment once its count reaches zero;
 * once the unlinks are durable (a directory fsync, for many at a time)
 * their log entries go with a later write.
 *
 * Delivery results travel the same way: a shard journals the recipients
 * it delivered as a mark record in its current segment (a COMMIT_UPDATE
 * with a record), which the next batch writes and syncs like a message
 * record; the indexer applies the updates behind it. After a crash
 * recovery replays the marks, so a message delivered just before it is not
 * delivered again once its mark was durable.
 *
 * Shard -> committer and committer -> shard are single-producer
 * single-consumer rings, one pair per shard; each side wakes the other with
 * an eventfd write. Committer -> indexer is a list under a mutex, one entry
 * per batch, bounded (the committer waits when the indexer is far behind).
 */
#ifndef SLUICE_QUEUE_COMMIT_H
#define SLUICE_QUEUE_COMMIT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "queue.h"

struct seg;

/*
 * What a job asks of the committer:
 *   COMMIT_PUT     write iov[] to seg_fd at put.offset, fdatasync it,
 *                  then index put, and apply ups[] in the same transaction
 *                  if nups > 0 (a bounce's DSN and its recipients' new
 *                  states)
 *   COMMIT_UPDATE  apply ups[] (delivery results, operator commands). With
 *                  put.rec_len > 0 it is journaled first: iov[] holds a
 *                  mark record (queue.h) of those of ups[] that are
 *                  delivered recipients, placed in segment put.seg at
 *                  put.offset (rec_len bytes), which is written and
 *                  synced with the batch's records like a put's; its
 *                  index write then moves the segment's position past it.
 *                  If that write or sync fails, seg_failed tells the shard
 *                  to retire the segment, and ups[] are still applied,
 *                  unjournaled (as every update was before mark records)
 *   COMMIT_SEAL    segment put.seg is closed: every record of it has been
 *                  handed over before this job, so once no indexed message
 *                  lives in it the indexer deletes the file (its marks are
 *                  indexed by then: they were handed over before the seal,
 *                  so they are in the write that sees the seal or earlier)
 * Every job comes back to its shard, with put.result set for all kinds: a
 * put's is its write and sync's (the index follows later); an update's
 * and a seal's are 0 (the indexer retries what it cannot write yet). A
 * journaled update is back once its mark record is durable.
 */
enum commit_kind {
	COMMIT_PUT = 0,
	COMMIT_UPDATE,
	COMMIT_SEAL,
};

/* conn_idx of a job no SMTP session waits for (a DSN, an update). */
#define COMMIT_NO_CONN UINT32_MAX

/* One message on its way to durability; owned by one side at a time. */
struct commit_job {
	struct queue_put put;		/* what the index gets; put.result */
	uint8_t kind;			/* enum commit_kind */
	uint32_t nups;
	struct queue_update *ups;	/* owned by the job's creator */
	void *owner;			/* creator's cookie, untouched */
	uint32_t conn_idx;		/* shard connection that waits */
	uint32_t conn_gen;
	unsigned shard;
	struct seg *seg;		/* the shard's segment holding it */
	int seg_fd;			/* its descriptor, open until the job
					 * is back: the committer writes it */
	bool seg_failed;		/* set by the committer: retire seg */
	int io_res;			/* committer's: the write's result */
	uint16_t chain;			/* committer's: its segment's slot in
					 * the batch's write chains */
	struct commit_job *next;	/* shard-private lists */
	struct iovec iov[2];		/* record head, message bytes: both
					 * stay valid until the job is back */
	const uint8_t *msg;		/* the message bytes */
	uint32_t head_len;		/* seg_hdr + envelope */
	/* struct seg_hdr, then envelope: aligned for the header */
	_Alignas(8) uint8_t head[];
};

struct committer;

/*
 * Start the committer and indexer threads for nshards shards; shard_efd[i]
 * is written to wake shard i when results wait for it. With a spool
 * directory segments are reclaimed; NULL spool: no reclamation (tests).
 * 0 or -errno / a QUEUE_E* code.
 */
int committer_start(struct committer **c, struct queue_index *qi,
    unsigned nshards, const int *shard_efd, const char *spool);

/* Shard side: hand a job over. false when the ring is full (keep it). */
bool committer_submit(struct committer *c, unsigned shard,
    struct commit_job *job);
/* Shard side: wake the committer after one or more submits. */
void committer_wake(struct committer *c);
/* Shard side: take back a finished job, NULL when none. */
struct commit_job *committer_reap(struct committer *c, unsigned shard);
/*
 * Shard side: the shard is about to wait on its eventfd (true), or runs
 * its loop and takes its finished jobs there (false), so the committer
 * need not write the eventfd for them. A shard that never says so is
 * taken to be waiting: it is woken for every batch.
 */
void committer_shard_waits(struct committer *c, unsigned shard, bool waits);
/* Shard side: are finished jobs waiting to be reaped? */
bool committer_has_results(struct committer *c, unsigned shard);

/*
 * Shard side: 0, or the error new messages are refused with while the
 * index cannot take more (QUEUE_EFULL: answer 452); refuse before placing
 * a record.
 */
int committer_refusing(struct committer *c);

/*
 * Any thread but a shard's: wait until everything acknowledged before the
 * call is indexed (the indexer writes at once), so that a reader of the
 * index sees it. 0, -EIO at once while index writes fail, or -ETIMEDOUT
 * after timeout_ms.
 */
int committer_index_sync(struct committer *c, unsigned timeout_ms);

/* After every shard has stopped: write, sync and index what is queued,
 * join, free. */
void committer_stop(struct committer *c);

/* Counters for status reports. */
struct committer_stats {
	uint64_t batches;		/* write-and-sync batches */
	uint64_t messages;		/* indexed */
	uint64_t failures;
	uint64_t updates;
	uint64_t removed;		/* messages done and deleted */
	uint64_t cancelled;		/* of them, never indexed: put and
					 * removal in the same write */
	uint64_t segments_removed;
	uint64_t index_writes;		/* index transactions committed */
	uint64_t write_us;		/* time in index transactions */
	uint64_t sync_us;		/* time writing and syncing batches */
};
void committer_stats(struct committer *c, struct committer_stats *st);

#endif
