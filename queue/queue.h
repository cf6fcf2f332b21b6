/*
 * queue.h - the durable queue: spool segments plus an LMDB index.
 *
 * On disk, under the spool directory:
 *   seg/SSS-NNNNNNNNNN.seg  append-only segment files, one writer (a shard)
 *                           each; a message record is a seg_hdr, the
 *                           encoded envelope, then the message bytes
 *                           exactly as received (with sluice's Received:
 *                           header); a mark record journals delivered
 *                           recipients (struct seg_mark_hdr below).
 *   index/                  the LMDB environment (data.mdb, lock.mdb) with
 *                           the databases "msg", "rcpt", "quarantine", "log"
 *                           and "meta".
 *
 * The segments are the log and LMDB the index built from it. A record is
 * acknowledged (the client hears 250) once it is written and its
 * segment's fdatasync returned; the committer indexes it after that, many
 * batches to an LMDB commit. For each segment "log" holds its position:
 * every acknowledged record before it has been indexed (and may since have
 * been delivered and removed). After a crash recovery replays each
 * segment from its position: the records whole there were written and
 * maybe acknowledged, and are indexed; the first that is not whole ends
 * the segment (it was never acknowledged: a sync covers everything written
 * before it, so nothing after a torn record was acknowledged either).
 * A record sluice made itself (protocol "local": a DSN, which is indexed
 * in one transaction with the bounces it reports) is not replayed: without
 * its index write the bounces are not recorded either, and they happen
 * again. Delivery results travel the same log: a mark record journals
 * recipients delivered (and so the removal of a message whose recipients
 * are then all final); recovery applies the replayed marks after every
 * replayed message, since a mark may sit in another shard's segment than
 * its message. A segment whose position is QUEUE_LOG_SEALED is not replayed: it
 * was sealed (or failed) and every record it holds was dealt with. A
 * record in a segment that no "msg" entry points at, below the position,
 * is garbage (delivered, deleted, or never acknowledged) and is reclaimed
 * with its segment.
 *
 * Every record carries an XXH3-64 checksum of its envelope and message,
 * seeded with the queue id, and it is verified on every read. A record that
 * fails is moved to "quarantine" with the reason, never delivered, never
 * silently dropped.
 *
 * Error returns: 0 on success, or a negative QUEUE_E* code below, or -errno.
 *
 * All fixed-layout structs below (seg_hdr, msg_meta, rcpt_meta) are stored
 * as they are in memory: little-endian, no padding (checked below). The
 * byte-level format is described in docs/queue-format.md.
 */
#ifndef SLUICE_QUEUE_H
#define SLUICE_QUEUE_H

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "queue records are stored in host order, which must be little-endian"
#endif

#define QUEUE_ENOTFOUND	(-30001)	/* no such queue id */
#define QUEUE_ECORRUPT	(-30002)	/* checksum or framing mismatch */
#define QUEUE_EFULL	(-30003)	/* index map or disk full */
#define QUEUE_EINDEX	(-30004)	/* other LMDB error */
#define QUEUE_EFORMAT	(-30005)	/* unknown on-disk version */

/* Text for 0, a QUEUE_E* code or -errno; never NULL. */
const char *queue_strerror(int err);

/* ---- queue ids ------------------------------------------------------- */
/*
 * A queue id is 64 bits: 42 bits of milliseconds since 2024-01-01 UTC, 6 bits
 * of shard, 16 bits of per-shard sequence. Printed as 16 upper-case hex
 * digits, so the text sorts like the number, and both sort by arrival.
 */
#define QUEUE_ID_LEN 16
#define QUEUE_ID_EPOCH_MS 1704067200000ULL

struct queue_id_gen {
	uint64_t last;		/* last id issued; ids only grow */
	unsigned shard;		/* 0..63 */
};

#define QUEUE_ID_SHARD_MAX 63

/*
 * The next id: the smallest id of g->shard that is above g->last and not
 * earlier than now_ms (Unix milliseconds, CLOCK_REALTIME). When the clock
 * stepped back or 65536 ids were taken in one millisecond, the id borrows
 * the following millisecond. g->last may be preset (to queue_index_max_id(),
 * which can be another shard's id) so that ids stay above it. Never 0.
 */
uint64_t queue_id_next(struct queue_id_gen *g, uint64_t now_ms);
void queue_id_format(uint64_t id, char out[QUEUE_ID_LEN + 1]);
/* Exactly 16 hex digits (either case). 0 or -EINVAL. */
int queue_id_parse(const char *s, uint64_t *id);

/* ---- envelope -------------------------------------------------------- */
enum queue_body {
	QUEUE_BODY_7BIT = 0,	/* none given, or BODY=7BIT */
	QUEUE_BODY_8BITMIME = 1,
	QUEUE_BODY_BINARYMIME = 2,
};

/*
 * The envelope of one message. In a decoded envelope every string points
 * into the buffer given to envelope_decode() (which must outlive it) and
 * rcpt is allocated: free it with envelope_release(). No string may be NULL
 * when encoding; strings cannot hold NUL bytes.
 */
#define ENVELOPE_VERSION 1
#define ENVELOPE_FIXED_LEN 28	/* bytes before the first string */
struct envelope {
	uint64_t qid;
	uint64_t arrival_us;		/* CLOCK_REALTIME, microseconds */
	uint8_t body;			/* enum queue_body */
	uint8_t smtputf8;
	uint16_t nrcpt;
	uint32_t declared_size;		/* MAIL FROM SIZE=, 0 if none */
	const char *sender;		/* "" for the null sender <> */
	const char *client_addr;	/* "127.0.0.1" */
	const char *helo;		/* as the client said it */
	const char *protocol;		/* "SMTP", "ESMTP", ... */
	const char **rcpt;		/* nrcpt addresses */
};

/* Encoded size, for sizing a buffer. */
size_t envelope_encoded_len(const struct envelope *e);
/* Encode into buf (at least envelope_encoded_len bytes). Returns length. */
size_t envelope_encode(const struct envelope *e, uint8_t *buf);
/*
 * Decode; returns 0, QUEUE_ECORRUPT (on any framing error, unknown version,
 * out-of-range field or trailing byte: *e is then zeroed) or -ENOMEM.
 */
int envelope_decode(const uint8_t *buf, size_t len, struct envelope *e);
/* Frees rcpt; safe on a zeroed or already released envelope. */
void envelope_release(struct envelope *e);
/* nrcpt of an encoded envelope without decoding it; -1 if not version 1. */
int envelope_peek_nrcpt(const uint8_t *buf, size_t len);

/* ---- segment records ------------------------------------------------- */
#define SEG_MAGIC 0x31434c53u	/* "SLC1" little-endian */
#define SEG_VERSION 1

struct seg_hdr {
	uint32_t magic;
	uint16_t version;	/* 1 */
	uint16_t hdr_len;	/* sizeof(struct seg_hdr) */
	uint64_t qid;
	uint32_t env_len;
	uint32_t msg_len;
	uint64_t checksum;	/* XXH3-64(envelope || message, seed = qid) */
};
static_assert(sizeof(struct seg_hdr) == 32, "seg_hdr is an on-disk layout");

/* A segment id: shard in the top 16 bits, per-shard sequence below. */
#define SEG_ID(shard, seq) (((uint64_t)(shard) << 48) | (seq))
#define SEG_SHARD(id) ((unsigned)((id) >> 48))
#define SEG_SEQ(id) ((id) & 0xffffffffffffULL)

/* "seg/SSS-NNNNNNNNNN.seg", relative to the spool; outlen >= SEG_PATH_MAX. */
#define SEG_PATH_MAX 32
void seg_path(uint64_t seg, char *out, size_t outlen);

/* Fill in a header for (env, msg) and return its checksum. */
uint64_t seg_hdr_fill(struct seg_hdr *h, uint64_t qid, const uint8_t *env,
    uint32_t env_len, const void *msg, uint32_t msg_len);

/* ---- mark records ----------------------------------------------------- */
/*
 * A mark record journals delivery results in a segment, between message
 * records (a record's kind is told by its magic): a struct seg_mark_hdr,
 * then nmarks struct seg_mark. Only what is safe to replay is journaled:
 * a recipient delivered never becomes pending again, so applying its mark
 * twice, or to a message gone since, changes nothing. Bounces are indexed
 * with their DSN (which is not replayed) and deferrals only move a retry
 * time, so neither is journaled.
 *
 * The checksum is XXH3-64 of the header's first 24 bytes and the marks,
 * seeded with the record's offset in its segment; the header names the
 * segment. So a mark record copied elsewhere, or read at a stale offset,
 * fails even when its bytes are intact.
 */
#define SEG_MARK_MAGIC 0x314d4c53u	/* "SLM1" little-endian */
#define SEG_MARK_VERSION 1
#define SEG_MARKS_MAX 65535		/* marks per record: an item's
					   recipients at most */

struct seg_mark_hdr {
	uint32_t magic;		/* SEG_MARK_MAGIC */
	uint16_t version;	/* 1 */
	uint16_t hdr_len;	/* sizeof(struct seg_mark_hdr) */
	uint64_t seg;		/* the segment the record is in */
	uint32_t nmarks;	/* 1..SEG_MARKS_MAX */
	uint32_t marks_len;	/* nmarks * sizeof(struct seg_mark) */
	uint64_t checksum;	/* see above */
};
static_assert(sizeof(struct seg_mark_hdr) == 32,
    "seg_mark_hdr is an on-disk layout");
static_assert(sizeof(struct seg_mark_hdr) == sizeof(struct seg_hdr),
    "both record kinds start with the same 8 bytes and size");

struct seg_mark {
	uint64_t qid;
	uint16_t idx;		/* recipient index */
	uint16_t attempts;
	uint16_t last_code;	/* the 2xx reply, 0..999 */
	uint8_t state;		/* RCPT_DELIVERED */
	uint8_t reserved;	/* 0 */
};
static_assert(sizeof(struct seg_mark) == 16, "seg_mark is an on-disk layout");

struct queue_update;

/* How many of ups[0..nups) a mark record carries (delivered recipients). */
uint32_t seg_mark_count(const struct queue_update *ups, uint32_t nups);
/* Bytes of a mark record of nmarks marks. */
static inline uint64_t
seg_mark_len(uint32_t nmarks)
{
	return sizeof(struct seg_mark_hdr) +
	    (uint64_t)nmarks * sizeof(struct seg_mark);
}
/*
 * Encode the mark record of ups[0..nups) for offset off of segment seg
 * into buf, which holds seg_mark_len(seg_mark_count(ups, nups)) bytes;
 * that count must be 1..SEG_MARKS_MAX (asserted). Returns the length.
 */
uint64_t seg_mark_encode(uint8_t *buf, uint64_t seg, uint64_t off,
    const struct queue_update *ups, uint32_t nups);
/*
 * Is rec[0..len) a whole mark record written at offset off of segment
 * seg? NULL if it is (len is then exactly its length), else why not:
 * "bad mark header", "bad mark lengths", "checksum mismatch", "mark
 * damaged" (a mark that a writer could not have made).
 */
const char *seg_mark_check(const uint8_t *rec, size_t len, uint64_t seg,
    uint64_t off);
/* The update a mark (of a record seg_mark_check() accepted) stands for. */
void seg_mark_update(const struct seg_mark *m, struct queue_update *u);

/* ---- index records --------------------------------------------------- */
enum msg_state {
	MSG_QUEUED = 0,		/* waiting for delivery */
	MSG_HOLD = 1,		/* held by the operator */
};

enum rcpt_state {
	RCPT_PENDING = 0,
	RCPT_DELIVERED = 1,
	RCPT_BOUNCED = 2,
};

/* Value of "msg" (key: qid, 8 bytes big-endian); the envelope follows. */
#define MSG_META_VERSION 1
struct msg_meta {
	uint32_t version;	/* 1 */
	uint32_t state;		/* enum msg_state */
	uint64_t seg;		/* segment id */
	uint64_t offset;	/* of the seg_hdr in the segment */
	uint32_t rec_len;	/* header + envelope + message */
	uint32_t msg_len;
	uint64_t checksum;	/* same as the segment record's */
	uint32_t env_len;
	uint32_t nrcpt;
};
static_assert(sizeof(struct msg_meta) == 48, "msg_meta is an on-disk layout");

/* Value of "rcpt" (key: qid big-endian, then index as 2 bytes big-endian). */
struct rcpt_meta {
	uint8_t state;		/* enum rcpt_state */
	uint8_t pad;
	uint16_t attempts;
	uint32_t last_code;	/* last SMTP reply code, 0 if none */
	uint64_t next_try_us;
};
static_assert(sizeof(struct rcpt_meta) == 16, "rcpt_meta is an on-disk layout");

/*
 * Value of "quarantine" (key: qid, 8 bytes big-endian): a struct msg_meta
 * whose env_len and nrcpt describe what follows, env_len bytes of envelope,
 * nrcpt struct rcpt_meta, then u32 reason length + reason text, then u32 raw
 * length + the raw segment record bytes (as much of it as could be read).
 */

/* ---- the index ------------------------------------------------------- */
/*
 * "meta" key "version". 1 had no "log"; 2 had no mark records in its
 * segments. Both are migrated by recovery (stamped 3 once replayed), and
 * a sluiced that knows only 2 refuses a version 3 spool (QUEUE_EFORMAT)
 * rather than stop its replay at the first mark record.
 */
#define QUEUE_INDEX_VERSION 3
struct queue_index;

/*
 * Open spool/index (creating spool, spool/index and spool/seg unless
 * readonly). map_size is the LMDB map size in bytes (0: LMDB's default, or
 * the existing file's size). Readers (sluicectl) may open it while the
 * daemon writes. Returns 0, QUEUE_EFORMAT (another index version, or not a
 * sluice index), QUEUE_EINDEX, -ENOMEM or -errno (-ENOENT: no index yet).
 * The handle may be used from several threads; each call is one txn.
 * Open an index once per process and share the handle: LMDB must not have
 * one environment open twice in a process (closing either breaks the
 * other's locks).
 */
int queue_index_open(struct queue_index **qi, const char *spool,
    uint64_t map_size, int readonly);
void queue_index_close(struct queue_index *qi);

/* Number of messages in the queue (quarantined ones not counted). */
int queue_index_count(struct queue_index *qi, uint64_t *n);
/* Number of quarantined messages. */
int queue_index_count_quarantine(struct queue_index *qi, uint64_t *n);

/*
 * One message as read from the index. env's strings point into storage
 * owned by the queue_msg; release with queue_msg_release().
 */
struct queue_msg {
	uint64_t qid;
	struct msg_meta meta;
	struct envelope env;
	struct rcpt_meta *rcpt;		/* meta.nrcpt entries */
	uint8_t *storage;
	/* The last reply text of each recipient whose last reply was 4xx or
	 * 5xx (NULL for the others), or NULL altogether: only
	 * queue_index_replies() loads them. */
	char **reply;
};
void queue_msg_release(struct queue_msg *m);

/*
 * Load m->reply from "reply" (the last reply text of each recipient whose
 * last_code is 400 or more), in one read transaction. An index without
 * "reply" (written by an older sluiced) gives every recipient NULL. 0,
 * -ENOMEM or another error (m->reply stays NULL).
 */
int queue_index_replies(struct queue_index *qi, struct queue_msg *m);

/*
 * Look up one message. 0, QUEUE_ENOTFOUND, QUEUE_ECORRUPT (the index entry
 * is malformed), -ENOMEM or another error. m is zeroed on error.
 */
int queue_index_get(struct queue_index *qi, uint64_t qid, struct queue_msg *m);

/*
 * Call fn for every message in queue-id order; fn returns non-zero to stop,
 * and that value is returned. The queue_msg is valid only during the call.
 * Messages are read in batches of short read transactions and fn runs with
 * no transaction open, so a slow fn (a pager) never pins an old snapshot
 * and fn may call into the index. A message added or removed meanwhile may
 * or may not be seen; none is seen twice. Errors as queue_index_get().
 */
typedef int (*queue_msg_fn)(void *arg, const struct queue_msg *m);
int queue_index_foreach(struct queue_index *qi, queue_msg_fn fn, void *arg);

/*
 * Read a message's record from its segment and verify it. On success *msg
 * (malloc'd, caller frees) holds the message bytes and *len their count.
 * QUEUE_ECORRUPT when the checksum or framing does not match (or the record
 * is cut short), -ENOENT when the segment is missing, other -errno.
 * Only m->qid and m->meta are used.
 */
int queue_read_message(const char *spool, const struct queue_msg *m,
    uint8_t **msg, size_t *len);
/*
 * The same, also giving a static one-phrase reason on failure ("checksum
 * mismatch", "segment missing", ...). With msg == NULL the record is only
 * verified, streamed through a small buffer.
 */
int queue_read_verify(const char *spool, const struct queue_msg *m,
    uint8_t **msg, size_t *len, const char **reason);

/*
 * One message to index, as handed from a shard to the committer. rec_len
 * must be sizeof(struct seg_hdr) + env_len + msg_len, nrcpt 1..65535 and
 * equal to the envelope's (assertions check this).
 */
struct queue_put {
	uint64_t qid;
	uint64_t seg;
	uint64_t offset;
	uint32_t rec_len;
	uint32_t msg_len;
	uint64_t checksum;
	const uint8_t *env;	/* encoded envelope */
	uint32_t env_len;
	uint32_t nrcpt;
	int result;		/* set by queue_index_write */
};

/*
 * A change to an indexed message, as handed from a shard to the committer
 * with the results of delivery attempts or an operator's command.
 *   QUEUE_UPD_RCPT     set recipient idx to (state, attempts, last_code,
 *                      next_try_us)
 *   QUEUE_UPD_HOLD     msg state MSG_HOLD (delivery stops)
 *   QUEUE_UPD_RELEASE  msg state MSG_QUEUED
 *   QUEUE_UPD_DELETE   remove the message whatever its recipients' states
 *   QUEUE_UPD_PARK     recipient idx waits in "parked" for delivery shard
 *                      `state` until next_try_us (0: due now): delivery
 *                      keeps it out of memory (see queue_index_unpark());
 *                      ignored unless the message is queued and the
 *                      recipient pending. HOLD and DELETE unpark.
 * An update of a message that is not (or no longer) indexed is ignored:
 * the operator may have deleted it while a delivery was in flight.
 */
enum queue_upd_kind {
	QUEUE_UPD_RCPT = 1,
	QUEUE_UPD_HOLD,
	QUEUE_UPD_RELEASE,
	QUEUE_UPD_DELETE,
	QUEUE_UPD_PARK,
};

/* A reply text kept per recipient ("reply"), with its NUL. */
#define QUEUE_REPLY_MAX 160

struct queue_update {
	uint64_t qid;
	uint64_t next_try_us;
	uint32_t last_code;
	uint16_t idx;
	uint16_t attempts;
	uint8_t kind;		/* enum queue_upd_kind */
	uint8_t state;		/* enum rcpt_state, for QUEUE_UPD_RCPT */
	/* QUEUE_UPD_RCPT with last_code >= 400: the reply line, kept in
	 * "reply" for the operator (sluicectl queue list --reason); "":
	 * none. A 2xx keeps none, so delivering costs no extra write. */
	char text[QUEUE_REPLY_MAX];
};

/* A message a write removed: its space in segment seg can be reclaimed. */
struct queue_removed {
	uint64_t qid;
	uint64_t seg;
	uint32_t rec_len;
};

/*
 * A segment's log position (key: segment id, 8 bytes big-endian; value: the
 * offset, 8 bytes little-endian). QUEUE_LOG_SEALED: nothing of it is ever
 * replayed; QUEUE_LOG_FORGET (in a write): remove the entry, for a segment
 * whose file is gone.
 */
#define QUEUE_LOG_SEALED UINT64_MAX
#define QUEUE_LOG_FORGET 0
struct queue_logpos {
	uint64_t seg;
	uint64_t end;
};

/*
 * One write transaction: index puts[0..nputs) (each moves its segment's
 * log position to the record's end), apply ups[0..nups) in order, move
 * the log positions logs[0..nlogs) (forward only, or forget), then remove
 * every message touched by a QUEUE_UPD_RCPT update whose recipients are
 * now all final (delivered or bounced), and every QUEUE_UPD_DELETE one.
 * Removed messages are listed in removed[], which has room for nups
 * entries; *nremoved is how many. Either all of it is durable (0) or none
 * of it is: QUEUE_EFULL or QUEUE_EINDEX, also stored in each put's result.
 */
int queue_index_write(struct queue_index *qi, struct queue_put *puts,
    size_t nputs, const struct queue_update *ups, size_t nups,
    const struct queue_logpos *logs, size_t nlogs,
    struct queue_removed *removed, size_t *nremoved);

/* ---- parked recipients ------------------------------------------------ */
/*
 * Delivery keeps a bounded active set in memory; what does not fit waits
 * in LMDB: "parked" holds (shard, next_try_us, qid, idx) for each recipient
 * parked with QUEUE_UPD_PARK, and "parked_q" (qid, idx) -> (shard,
 * next_try_us) finds them by message. A recipient is parked by the one
 * delivery shard that owns its destination, which then holds nothing of
 * it, and taken out (unparked) only here, so it is never in memory and
 * parked at once.
 */

/*
 * Called for each message unparked, after the transaction that took its
 * recipients out committed: pending[i] for the recipients unparked (only
 * those still pending, of a queued message), next_try_us the earliest of
 * their due times. m and pending are valid during the call only.
 */
typedef void (*queue_unpark_fn)(void *arg, const struct queue_msg *m,
    const bool *pending, uint64_t next_try_us);

/*
 * Take up to max parked recipients of delivery shard `shard` due before
 * horizon_us (CLOCK_REALTIME microseconds; UINT64_MAX: all), earliest
 * first, out of "parked" and hand them to fn, grouped by message. Stale
 * entries (message gone or held, recipient final) are dropped. *left is
 * cleared only when the scan found the shard has no parked recipient left
 * (none due later, none beyond max); on any error it stays set. Returns
 * the number of recipients unparked or an error (nothing taken out).
 */
int queue_index_unpark(struct queue_index *qi, unsigned shard, size_t max,
    uint64_t horizon_us, queue_unpark_fn fn, void *arg, bool *left);
/* The same for every parked recipient of message qid, whatever its shard
 * and due time. */
int queue_index_unpark_qid(struct queue_index *qi, uint64_t qid,
    queue_unpark_fn fn, void *arg);
/* Make every parked recipient due now (an operator's flush). */
int queue_index_park_due_now(struct queue_index *qi);
/* Forget every parked entry: at start, before the schedule is rebuilt
 * from "msg" (which parks again what does not fit). */
int queue_index_park_clear(struct queue_index *qi);
/*
 * QUEUE_UPD_PARK updates for shard that index writes have committed since
 * the index was opened (ignored ones included): a reader that finds
 * nothing parked for the shard in a transaction begun after reading this
 * knows that all of those were taken out.
 */
uint64_t queue_index_parks_written(struct queue_index *qi, unsigned shard);
/* Parked recipients of shard (shard >= 64: of all). */
int queue_index_parked(struct queue_index *qi, unsigned shard, uint64_t *n);

/*
 * Have the file system hold bytes of space for the index beyond what it
 * uses now (allocated, the file's size unchanged), so that the writes
 * that index messages already acknowledged do not find the disk full.
 * bytes 0: a sixteenth of the map size, at most QUEUE_RESERVE_MAX. 0, or
 * -ENOSPC / -EDQUOT / another -errno; 0 where the file system cannot
 * allocate ahead.
 */
#define QUEUE_RESERVE_MAX (8ull << 20)
int queue_index_reserve(struct queue_index *qi, uint64_t bytes);

/*
 * Highest queue id in the index ("msg" and "quarantine"), or 0. Ids issued
 * later must be above it.
 */
int queue_index_max_id(struct queue_index *qi, uint64_t *qid);

/* ---- recovery -------------------------------------------------------- */
struct queue_recovery_report {
	uint64_t messages;		/* live messages indexed */
	uint64_t replayed;		/* of them, indexed from the log now */
	uint64_t dsn_dropped;		/* "local" records not replayed */
	uint64_t marks;			/* delivered marks replayed */
	uint64_t marks_done;		/* messages they completed (removed) */
	uint64_t quarantined;		/* records that failed verification now */
	uint64_t unacknowledged;	/* torn records ending a segment's log:
					   never acknowledged, cut off */
	uint64_t segments;		/* live segments kept */
	uint64_t segments_removed;	/* segments with nothing indexed */
	uint64_t bytes_reclaimed;	/* garbage tails truncated away */
	uint64_t max_seq[64];		/* highest segment sequence per shard,
					   over every file seen (also removed
					   ones): start new ones at max + 1 */
};

/*
 * Start-up recovery, before any shard runs: replay every segment's log
 * from its position (index the whole records there, cut off the torn
 * one ending it, one line on stderr per segment cut), verify every
 * indexed record, quarantine the damaged (one line each on stderr),
 * delete segments nothing points at and truncate unindexed tails; then
 * every remaining segment is sealed in "log" and the entries of deleted
 * ones forgotten. Time is proportional to the live queue plus the log
 * written since the last index commit. 0, or an error from the index or
 * the file system (then the spool may be partly recovered; running it
 * again is safe).
 */
int queue_recover(struct queue_index *qi, const char *spool,
    struct queue_recovery_report *rep);

/*
 * Move one message (its "msg" and "rcpt" entries, plus a copy of its
 * segment record) to "quarantine" with the reason, in one write txn: for a
 * record that fails verification at delivery time. 0, QUEUE_ENOTFOUND,
 * QUEUE_EFULL, QUEUE_EINDEX.
 */
int queue_index_quarantine(struct queue_index *qi, const char *spool,
    uint64_t qid, const char *reason);

#ifdef QUEUE_INTERNAL
/*
 * Shared by the queue_*.c files only: index internals recovery needs. Keeps
 * <lmdb.h> out of the public header.
 */
#include <lmdb.h>
#include <stdatomic.h>

struct queue_index {
	MDB_env *env;
	MDB_dbi msg;
	MDB_dbi rcpt;
	MDB_dbi quarantine;
	MDB_dbi meta;
	MDB_dbi log;
	MDB_dbi parked;		/* (shard, next_try, qid, idx) -> "" */
	MDB_dbi parked_q;	/* (qid, idx) -> (shard, next_try) */
	MDB_dbi reply;		/* (qid, idx) -> last 4xx/5xx reply text;
				 * 0: none (read-only, older index) */
	_Atomic uint64_t parks_written[64];
	int readonly;
	int has_log;		/* "log" is open (not so: read-only, v1) */
	int v1;			/* version 1: recovery migrates it */
	uint32_t version;	/* as found; recovery stamps the current */
};

/* LMDB return code to 0 / QUEUE_E* / -errno. */
int queue_lmdb_err(int rc);
/* mdb_txn_begin that adopts a map grown by another process. */
int queue_txn_begin(struct queue_index *qi, unsigned flags, MDB_txn **txn);
/* Check a "msg" value's shape; NULL if sound, else the reason. */
const char *queue_msg_value_check(const void *val, size_t len);
/* Delete qid's "reply" entries in txn (the message leaves the index).
 * 0 or an LMDB code. */
int queue_replies_del(struct queue_index *qi, MDB_txn *txn, uint64_t qid);
/*
 * Load the message (key, val) read in txn into m, copying everything out of
 * the map. 0, QUEUE_ECORRUPT (*why set), -ENOMEM or another error.
 */
int queue_msg_load(struct queue_index *qi, MDB_txn *txn, const MDB_val *key,
    const MDB_val *val, struct queue_msg *m, const char **why);
/*
 * queue_index_write() for replay: with puts_move_log false the puts leave
 * their segments' log positions alone (only logs[] moves them).
 */
int queue_index_write_ex(struct queue_index *qi, struct queue_put *puts,
    size_t nputs, const struct queue_update *ups, size_t nups,
    const struct queue_logpos *logs, size_t nlogs,
    struct queue_removed *removed, size_t *nremoved, int puts_move_log);
/* Write QUEUE_INDEX_VERSION into "meta" in txn. An LMDB code. */
int queue_version_stamp(struct queue_index *qi, MDB_txn *txn);
/* Segment seg's log position as of txn (0 when it has none). */
int queue_log_get(struct queue_index *qi, MDB_txn *txn, uint64_t seg,
    uint64_t *end);
/*
 * Park (u->kind QUEUE_UPD_PARK) or, for HOLD/DELETE of u->qid, unpark
 * every recipient of the message, in txn. An LMDB code.
 */
int queue_park_apply(struct queue_index *qi, MDB_txn *txn,
    const struct queue_update *u, const struct msg_meta *mm);
/* queue_read_verify() on an open segment file descriptor. */
int queue_seg_verify_fd(int fd, const struct queue_msg *m, uint8_t **msg,
    size_t *len, const char **reason);

static inline void
queue_key_put(uint8_t k[8], uint64_t qid)
{
	for (int i = 7; i >= 0; i--) {
		k[i] = (uint8_t)qid;
		qid >>= 8;
	}
}

static inline uint64_t
queue_key_get(const uint8_t k[8])
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | k[i];
	return v;
}

/* "rcpt" key: qid big-endian, then the recipient index big-endian. */
static inline void
queue_rcpt_key_put(uint8_t k[10], uint64_t qid, unsigned idx)
{
	queue_key_put(k, qid);
	k[8] = (uint8_t)(idx >> 8);
	k[9] = (uint8_t)idx;
}
#endif

#endif
