/*
 * queue_commit.h - group commit: one thread indexes what shards wrote.
 *
 * A shard gives a message's record its place in its current segment (seg,
 * offset) and hands a commit_job to the committer. The committer takes
 * every job waiting from every shard and, on its own ring, starts one
 * linked chain per segment: a writev of each record, then an fdatasync
 * (the kernel's workers run them). While those run it indexes the jobs in
 * one LMDB write transaction and commits it (LMDB syncs); once the chains
 * are done too it hands each job back to its shard with the result. Only
 * then does the shard answer 250. Running the writes and syncs side by
 * side with the index commit, instead of before it, is why the index keeps
 * an "unconfirmed" list (queue.h). The committer is the only thread that
 * ever waits on a write, a sync or a commit, so no shard's event loop
 * does; while it works, the next batch gathers.
 *
 * A record whose write or sync failed fails (a full disk: -ENOSPC or
 * -EDQUOT, so the client hears 452; anything else -EIO or the error) and
 * is taken out of the index again if it got in; when the chain broke, so
 * do the other records of that segment in the batch. After anything but a
 * full disk the segment is never trusted again (Linux reports a writeback
 * error once): every later job of it fails without being written, and the
 * job's seg_failed tells the shard to retire the segment.
 *
 * Shard -> committer and committer -> shard are single-producer
 * single-consumer rings, one pair per shard; each side wakes the other with
 * an eventfd write.
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
 *                  index put,
 *                  and apply ups[] in the same transaction if nups > 0
 *                  (a bounce's DSN and its recipients' new states)
 *   COMMIT_UPDATE  apply ups[] (delivery results, operator commands)
 *   COMMIT_SEAL    segment put.seg is closed: every record of it has been
 *                  handed over before this job, so once no indexed message
 *                  lives in it the committer deletes the file
 * Every job comes back to its shard, with put.result set for all kinds.
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
	bool deferred;			/* committer's: indexed after its sync */
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
 * Start the committer thread for nshards shards; shard_efd[i] is written
 * to wake shard i when results wait for it. With a spool directory the
 * committer also reclaims segments: it counts the indexed messages of each
 * segment (from the index, at start; every segment seen then counts as
 * sealed) and unlinks a sealed segment once its count reaches zero. NULL
 * spool: no reclamation (tests). 0 or -errno / a QUEUE_E* code.
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

/* After every shard has stopped: finish what is queued, join, free. */
void committer_stop(struct committer *c);

/* Counters for status reports. */
struct committer_stats {
	uint64_t batches;
	uint64_t messages;
	uint64_t failures;
	uint64_t updates;
	uint64_t removed;		/* messages done and deleted */
	uint64_t segments_removed;
	uint64_t write_us;		/* time in index transactions */
};
void committer_stats(struct committer *c, struct committer_stats *st);

#endif
