/*
 * sink_int.h - what the files of `sluice-bench sink` share and nothing
 * else sees: limits, the connection, listener and --store job slots, the
 * run's state and counters, small inline helpers, and the functions one
 * file calls in another.
 *
 * The files, one concern each:
 *   bench_sink.c     the run: set-up, the event loop, the stop and drain,
 *                    teardown, bench_sink_main()
 *   sink_opts.c      the command line (bench_sink.h is its public side)
 *   sink_session.c   the SMTP/LMTP server session: commands, DATA, BDAT,
 *                    the reply mix, counting what arrived
 *   sink_conn.c      connections: accept, recv, send, held replies, close,
 *                    and sink_dispatch() for every completion
 *   sink_record.c    --log (JSON lines) and --store (files via the ring)
 *   sink_report.c    the report at the end (text and JSON)
 *
 * One thread; nothing here locks. s->now_us is the monotonic time of the
 * current batch of completions (lib/uring.h uring_loop_step()).
 */
#ifndef SLUICE_BENCH_SINK_INT_H
#define SLUICE_BENCH_SINK_INT_H

#include <arpa/inet.h>
#include <assert.h>
#include <liburing.h>
#include <signal.h>

#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/signalfd.h>

#include "../lib/buf.h"
#include "../lib/uring.h"
#include "../proto/data_scan.h"
#include "bench_hist.h"
#include "bench_sink.h"

/* Ring and buffers: fixed at start. */
#define SINK_RING_ENTRIES 4096
#define SINK_CQ_ENTRIES 65536
#define SINK_CQE_BATCH 512
#define SINK_RECV_BUFS 512		/* power of two */
#define SINK_RECV_BUF_SIZE 16384
#define SINK_BGID 1
#define SINK_BACKLOG 4096

/* Protocol limits. */
#define SINK_LINE_MAX 4096		/* a command line, CRLF included */
#define SINK_RCPT_MAX 1000		/* recipients per transaction */
#define SINK_MSG_MAX (256ull << 20)	/* advertised SIZE, enforced */
#define SINK_HEAD_KEEP 65536		/* message bytes kept to find the header */
#define SINK_OUT_HIGH 65536		/* stop reading above this backlog */
#define SINK_ID_LEN 16			/* hex digits of a message id */
#define SINK_BENCH_ID_MAX 128		/* X-Sluice-Bench id= text */

/* Buffers a slot keeps for its next connection, at most. */
#define SINK_KEEP_MSG (1u << 20)
#define SINK_KEEP_IO 16384

/* Timing. */
#define SINK_TICK_US 250000		/* --duration, log flush, re-accept */
#define SINK_DRAIN_US 1000000		/* after the stop, for QUITs to come */
#define SINK_STORE_WAIT_US 30000000	/* after the stop, for --store writes */

/* Output files. */
#define SINK_LOG_FLUSH (256u * 1024)	/* write the log in blocks this big */
#define SINK_STORE_JOBS 64		/* --store writes in flight */
#define SINK_SECONDS_MAX (7u * 86400)	/* per-second counts kept */

static_assert((SINK_RECV_BUFS & (SINK_RECV_BUFS - 1)) == 0,
    "the buffer ring size is a power of two");
static_assert(SINK_HEAD_KEEP >= SINK_LINE_MAX, "head holds a header line");
static_assert(SINK_SLOTS_MAX <= (1u << 24), "slot index fits user_data");
static_assert(SINK_MIX_STAGES <= SINK_STAGE_COUNT, "mix stages are stages");

enum sink_op {
	SINK_OP_ACCEPT = 1,		/* idx: listener */
	SINK_OP_RECV,		/* idx: slot */
	SINK_OP_SEND,		/* idx: slot */
	SINK_OP_TIMER,		/* idx: slot; a held reply is due */
	SINK_OP_SIGNAL,		/* signalfd read */
	SINK_OP_STORE,		/* idx: store job; gen: step 0 open, 1 write, 2 close */
	SINK_OP_CANCEL,		/* a cancel or timeout removal; nothing to do */
};

/* What the bytes arriving on a connection are. */
enum sink_conn_state {
	SINK_CS_CMD = 0,		/* command lines */
	SINK_CS_DATA,		/* DATA content, up to <CRLF>.<CRLF> */
	SINK_CS_BDAT,		/* the octets of a BDAT chunk */
};

struct sink_conn {
	uint32_t gen;
	uint32_t next_free;
	int fd;
	uint16_t listener;
	uint8_t inflight;	/* recv + send + timer in flight */
	enum sink_conn_state state;
	bool in_use;
	bool closing;		/* shut down; freed when inflight == 0 */
	bool close_after_flush;	/* QUIT or 421: close once out is sent */
	bool recv_armed;
	bool send_armed;
	bool timer_armed;
	bool hold;		/* out[hold_off..] waits for the timer/store */
	bool store_wait;	/* the held reply waits for a --store write */
	bool no_service;	/* greeted with a refusal: 503 until QUIT */
	bool helo;
	bool mail;		/* a transaction is open */
	bool drop;		/* drop this message mid-data */
	bool bdat_started;	/* a chunk of this transaction was seen */
	bool bdat_bad;		/* BDAT outside a valid transaction */
	bool bdat_last;
	bool msg_too_big;
	bool msg_nomem;
	uint32_t nrcpt;
	uint32_t messages;	/* accepted on this connection */
	uint64_t serial;
	uint64_t rng;
	uint64_t bdat_left;
	uint64_t msg_size;	/* message bytes seen, kept or not */
	size_t hold_off;
	size_t tx_off;
	size_t hashed;		/* msg bytes already hashed */
	struct data_scan ds;
	struct buf in;		/* input read but not yet processed */
	struct buf out;		/* replies not yet handed to send */
	struct buf tx;		/* the bytes of the send in flight */
	struct buf msg;		/* the message, or its head */
	struct buf env;		/* --log: sender and recipients, see sink_env_add */
	EVP_MD_CTX *sha;	/* --log: SHA-256; made on first use, kept */
	struct __kernel_timespec ts;
};

struct sink_listener {
	int fd;
	bool accept_armed;
	bool rearm;		/* re-arm the accept at the next tick */
	char addr[INET6_ADDRSTRLEN + 8];
	uint64_t conns;
	uint64_t refused_cap;
	uint64_t messages;
	uint64_t bytes;
};

struct sink_store_job {
	struct buf msg;
	char name[SINK_ID_LEN + 8];
	uint32_t next_free;
	uint32_t conn;		/* slot and generation of the connection */
	uint32_t conn_gen;	/* whose reply waits for this write */
	bool busy;
	bool failed;
	size_t len;
};

struct sink {
	const struct sink_opts *o;
	struct io_uring ring;
	bool ring_ok;
	struct uring_loop loop;	/* reap and dispatch (lib/uring.h) */
	bool has_mix[SINK_MIX_STAGES];

	struct sink_conn *conns;
	uint32_t nslots;
	uint32_t free_head;
	uint32_t nactive;

	struct sink_listener lst[SINK_LISTEN_MAX];
	unsigned nlisten;

	struct uring_bufs bufs;	/* provided buffers for recv */

	int sigfd;
	struct signalfd_siginfo si;
	sigset_t sigmask;	/* SIGINT, SIGTERM */
	unsigned signals;

	char greeting[SINK_HOSTNAME_MAX + 64];
	char ehlo[SINK_HOSTNAME_MAX + 256];
	char helo[SINK_HOSTNAME_MAX + 16];

	/* Run state; times are CLOCK_MONOTONIC microseconds. */
	bool stop_pending;
	bool stopping;
	uint64_t now_us;
	uint64_t start_us;
	uint64_t stop_us;
	uint64_t first_us;	/* first connection accepted, 0: none yet */
	uint64_t last_msg_us;
	uint64_t next_tick_us;
	uint64_t wall_start_us;

	/* Counters for the report. */
	uint64_t messages;
	uint64_t refused[SINK_MIX_STAGES][200];	/* by stage, code - 400 */
	uint64_t refused_total;
	uint64_t dropped;
	uint64_t conn_accepted;
	uint64_t conn_refused_connect;
	uint64_t conn_refused_cap;
	uint64_t conn_max;
	uint64_t bytes;
	uint64_t bare_cr;
	uint64_t bare_lf;
	uint64_t errors;	/* commands answered 5xx/503 by the protocol */
	uint64_t too_big;
	uint64_t no_header;
	uint64_t serial;
	uint64_t seq;
	uint64_t id_prefix;
	struct hist *lat;
	uint32_t *per_sec;
	size_t nsec;
	size_t sec_cap;
	bool sec_full;

	/* --log */
	int log_fd;
	struct buf logb;
	uint64_t log_errors;

	/* --store */
	int store_dirfd;
	bool store_ring;	/* fixed-file slots registered */
	struct sink_store_job jobs[SINK_STORE_JOBS];
	uint32_t store_free;
	uint32_t store_inflight;
	uint64_t stored;
	uint64_t store_errors;

	bool rcpt_ok[SINK_RCPT_MAX];	/* LMTP verdicts of one message */
};

/* ---- small helpers ---------------------------------------------------- */

/* splitmix64: one stream per connection, seeded by --seed and its serial. */
static inline uint64_t
sink_rng_next(uint64_t *st)
{
	uint64_t z = (*st += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static inline uint32_t
sink_rng_draw(struct sink_conn *c)
{
	return (uint32_t)(sink_rng_next(&c->rng) % SINK_PPM);
}

/* The mix's code for this stage of c, 0 to reply normally. */
static inline unsigned
sink_mix(struct sink *s, struct sink_conn *c, enum sink_stage st)
{
	assert(st < SINK_MIX_STAGES);
	if (!s->has_mix[st])
		return 0;
	return sink_mix_pick(s->o, st, sink_rng_draw(c));
}

static inline struct io_uring_sqe *
sink_get_sqe(struct sink *s)
{
	return uring_get_sqe(&s->ring);
}

static inline uint32_t
sink_conn_idx(const struct sink *s, const struct sink_conn *c)
{
	return (uint32_t)(c - s->conns);
}

/* ---- sink_session.c ---------------------------------------------------- */

/* Append a reply to c's output; out of memory closes c. */
void sink_reply(struct sink *s, struct sink_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void sink_reply_str(struct sink *s, struct sink_conn *c, const char *text);
/* Answer at stage st with the mix's code; a 421 closes after the reply. */
void sink_inject(struct sink *s, struct sink_conn *c, enum sink_stage st,
    unsigned code);
/* Forget the transaction (MAIL, RCPTs, BDAT state, the --log envelope). */
void sink_txn_reset(struct sink_conn *c);
/*
 * Process input at p[0..n): commands, DATA content, BDAT octets. Stops at
 * a held reply, a close, or a partial command line; returns the bytes used.
 */
size_t sink_conn_input(struct sink *s, struct sink_conn *c, const char *p,
    size_t n);
/* Bytes received on c: process them, keeping what cannot be yet. */
void sink_conn_feed(struct sink *s, struct sink_conn *c, const char *p,
    size_t n);

/* ---- sink_conn.c ------------------------------------------------------- */

/* Hold c's output from out[mark] on, until sink_conn_resume() frees it. */
void sink_hold_at(struct sink_conn *c, size_t mark);
/* Hold the reply about to be written for us microseconds (a timer). */
void sink_hold_begin(struct sink *s, struct sink_conn *c, uint64_t us);
/* Nothing left to wait for: release held replies, go on with the input. */
void sink_conn_resume(struct sink *s, struct sink_conn *c);
/* Stop all I/O on c; freed once nothing of it is in flight. Idempotent. */
void sink_conn_close(struct sink *s, struct sink_conn *c);
/* Release the slot (inflight must be 0). */
void sink_conn_free(struct sink *s, struct sink_conn *c);
/* A multishot accept on listener li; a read of the signalfd. */
void sink_arm_accept(struct sink *s, unsigned li);
void sink_arm_signal(struct sink *s);
/* One completion (ctx is the struct sink): the uring_loop's dispatch. */
void sink_dispatch(void *ctx, uint64_t ud, int res, uint32_t flags);

/* ---- sink_record.c ----------------------------------------------------- */

/* --log: the envelope string p[0..n) of c's transaction, kept for its line. */
void sink_env_add(struct sink *s, struct sink_conn *c, const char *p,
    size_t n);
/* --log: the line of an accepted message (bench_id NULL: no header). */
void sink_log_message(struct sink *s, struct sink_conn *c, const char *id,
    const char *bench_id, uint64_t latency_us, uint64_t wall_us);
/* --log: the line of a closed connection. */
void sink_log_close(struct sink *s, const struct sink_conn *c);
/* --log: write the lines buffered so far. */
void sink_log_flush(struct sink *s);
/* --store: write c's message as DIR/<id>.eml before the reply at out[mark]. */
void sink_store_message(struct sink *s, struct sink_conn *c, const char *id,
    size_t mark);
/* --store: step (0 open, 1 write, 2 close) of job j completed with res. */
void sink_handle_store(struct sink *s, uint32_t j, uint32_t step, int res);

/* ---- sink_report.c ----------------------------------------------------- */

void sink_report_text(const struct sink *s, FILE *fp);
/* 0, or -1 when the report could not be built or written. */
int sink_report_json(const struct sink *s, FILE *fp);

#endif
