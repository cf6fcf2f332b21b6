/*
 * source_int.h - what the files of `sluice-bench source` share and nothing
 * else sees: limits, the client's states, the per-connection and per-run
 * structures, the output composer (inline: it runs per command), and the
 * functions one file calls in another.
 *
 * The files, one concern each:
 *   bench_source.c    the run: set-up, the event loop and its timers, main
 *   source_opts.c     the command line (bench_source.h is its public side)
 *   source_msg.c      message material: the body, a corpus, the header
 *   source_session.c  the SMTP/LMTP client state machine: send and receive
 *                     sides, transactions, the idle queue of the open loop
 *   source_conn.c     connections: connect, close, backoff, TLS, and the
 *                     completion handlers
 *   source_report.c   the progress line and the report (text and JSON)
 *
 * All of it runs on one thread; nothing here locks. s->now is the
 * monotonic time of the current batch of completions (lib/uring.h
 * uring_loop_step()).
 */
#ifndef SLUICE_BENCH_SOURCE_INT_H
#define SLUICE_BENCH_SOURCE_INT_H

#include <assert.h>
#include <liburing.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "../lib/buf.h"
#include "../lib/log.h"
#include "../lib/tls.h"
#include "../lib/uring.h"
#include "bench_hist.h"
#include "bench_source.h"

/* ---- limits ----------------------------------------------------------- */

#define SRC_RING_ENTRIES 4096
#define SRC_CQE_BATCH 256
#define SRC_RECV_BUFS 512		/* power of two */
#define SRC_RECV_BUF_SIZE 4096		/* replies are short */
#define SRC_BGID 1
#define SRC_EXPECT_MAX 8	/* DOT, RSET, MAIL, RCPT, DATA, QUIT: 6 */
#define SRC_TXN_MAX 2		/* awaiting its final reply + awaiting 354 */
#define SRC_IOV_MAX 16
#define SRC_LINE_MAX 1024	/* RFC 5321 4.5.3.1.5 says 512; be lenient */
#define SRC_REPLY_LINES_MAX 256	/* lines in one multi-line reply */
#define SRC_HEAD_BASE 4096	/* fixed part of a connection's output */
#define SRC_TICK_US 100000	/* timeout scan */
#define SRC_PROGRESS_US 250000	/* progress line: 4 times a second */
#define SRC_PROGRESS_SAMPLES 4	/* x 250 ms: rate over the last second */
#define SRC_BACKOFF_MIN_US 10000
#define SRC_BACKOFF_MAX_US 1000000
#define SRC_QUIT_GRACE_US 2000000	/* wait for 221s at the end, at most */
#define SRC_CORPUS_FILES_MAX 100000
#define SRC_CORPUS_BYTES_MAX (1024ull * 1024 * 1024)
#define SRC_WHY_MAX 256
#define SRC_FD_SPARE 32		/* descriptors besides the connections */

static_assert((SRC_RECV_BUFS & (SRC_RECV_BUFS - 1)) == 0,
    "provided buffer ring size must be a power of two");
static_assert(SRC_EXPECT_MAX >= 6, "expect queue too short for a group");
static_assert(SRC_CONNECTIONS_MAX < (1 << 24), "slot index in user_data");

/* ---- the client's states ---------------------------------------------- */

/*
 * The SMTP client: one state machine per connection, split into a send
 * side and a receive side so that commands can run ahead of replies
 * (the design of Postfix's smtp_proto.c).
 *
 * The send side (src_conn_send) walks c->send_state. Each state sends exactly
 * one command and names the next state:
 *
 *   GREETING -> EHLO [-> HELO] [-> STARTTLS -> TLS -> EHLO]
 *   [-> AUTH [-> AUTH_USER -> AUTH_PASS]] -> MAIL -> RCPT x R -> DATA
 *   -> DOT [-> RSET] -> MAIL ... -> QUIT
 *
 * Every command sent pushes what its reply will mean onto the connection's
 * expect queue. Replies come back in the order of the commands (RFC 2920
 * section 3.1), so the receive side (reply_done) takes the head of that
 * queue, and that entry is the receive state. Session set-up is
 * synchronous: after each set-up command the send side waits (WAIT) until
 * the reply handler names the next state. In a transaction, without
 * PIPELINING each state waits for an empty expect queue before it sends.
 * With it the send side runs on until DOT, which must have the 354 to its
 * DATA (DATA ends a group, RFC 2920 section 3.1), and then sends the
 * message, the dot and straight after it the next transaction's MAIL,
 * RCPTs and DATA in the same write. So a pipelining connection has at
 * most two transactions in flight: one waiting for its final reply, the
 * next waiting for its 354.
 *
 * A refusal never stalls the send side. After a refused MAIL or RCPT the
 * rest of the group is sent anyway and refused in turn; a refused DATA
 * skips the message (with RSET first when the server still holds the
 * transaction open); each transaction's outcome is settled by its replies
 * alone. A 421, a reset, an unexpected close or a timeout ends the
 * connection: the transactions in flight on it are lost, and it reconnects
 * after a bounded backoff while there is work left.
 */
enum src_state {
	SRC_S_GREETING,		/* the server's 220 (receive side only) */
	SRC_S_EHLO,		/* EHLO, or LHLO with --lmtp */
	SRC_S_HELO,		/* EHLO refused: plain SMTP */
	SRC_S_STARTTLS,
	SRC_S_TLS,		/* the handshake: no command, recv drives it */
	SRC_S_AUTH,		/* AUTH PLAIN with initial response, or LOGIN */
	SRC_S_AUTH_USER,	/* AUTH LOGIN: the user name */
	SRC_S_AUTH_PASS,	/* AUTH LOGIN: the password */
	SRC_S_MAIL,
	SRC_S_RCPT,
	SRC_S_DATA,
	SRC_S_DOT,		/* the message and its end-of-data dot */
	SRC_S_RSET,		/* after a refused DATA, before the next MAIL */
	SRC_S_QUIT,
	SRC_S_WAIT,		/* send side: nothing until a reply comes */
	SRC_S_COUNT
};


/* Where a refused transaction was refused. */
enum src_stage {
	SRC_STAGE_NONE,
	SRC_STAGE_MAIL,
	SRC_STAGE_RCPT,		/* every recipient refused */
	SRC_STAGE_DATA,
	SRC_STAGE_DOT,		/* after the data */
	SRC_STAGE_COUNT
};


/* Connection errors, by kind. */
enum src_err {
	SRC_E_REFUSED,		/* connect: ECONNREFUSED */
	SRC_E_CONNECT,		/* connect: any other error */
	SRC_E_RESET,		/* reset or broken pipe */
	SRC_E_CLOSED,		/* the server closed without a QUIT */
	SRC_E_TIMEOUT,		/* no reply within --timeout */
	SRC_E_421,		/* 421: service closing */
	SRC_E_SETUP,		/* greeting, EHLO, STARTTLS or AUTH refused */
	SRC_E_TLS,		/* handshake or record failure */
	SRC_E_PROTOCOL,		/* malformed or unexpected reply */
	SRC_E_COUNT
};


/* What the send side may do with the message after DATA. */
enum src_data {
	SRC_DATA_WAIT,		/* no reply to DATA yet */
	SRC_DATA_GO,		/* 354: send the message */
	SRC_DATA_EMPTY,		/* 354 but no recipient: a lone dot */
	SRC_DATA_REFUSED,	/* no 354: skip the message */
};

struct src_txn {
	bool live;
	bool mail_ok;
	uint8_t data;		/* enum src_data */
	uint8_t fail_stage;	/* enum src_stage; NONE while not refused */
	uint8_t fail_class;	/* 4 or 5 */
	uint64_t seq;		/* the run's message number */
	uint64_t start_us;	/* monotonic: scheduled or started */
	uint64_t rcpt_first;	/* recipient counter of its first recipient */
	uint32_t rcpt_ok, rcpt_4xx, rcpt_5xx;
	uint32_t lmtp_ok, lmtp_4xx, lmtp_5xx;
};

/* A reply still due, and what it means; count covers repeated replies. */
struct src_expect {
	uint8_t kind;		/* enum src_state of the command */
	uint8_t txn;		/* index in c->txn */
	uint16_t count;
};
static_assert(SRC_RECIPIENTS_MAX <= UINT16_MAX, "expect count");

/*
 * Output being composed: bytes in head (fixed capacity, never moves while
 * a send may point into it) and references to shared message bytes, in
 * order, as iovecs for sendmsg.
 */
struct src_out {
	char *head;
	size_t len;
	size_t cap;
	struct iovec iov[SRC_IOV_MAX];
	unsigned niov;
};

enum src_after {
	SRC_AFTER_NONE,		/* stay closed */
	SRC_AFTER_RECONNECT,	/* connect again at once */
	SRC_AFTER_BACKOFF,	/* connect again at wake_us */
};

struct src_conn {
	uint32_t gen;
	int fd;
	uint32_t serial;	/* connection number within the run */
	enum src_state send_state;
	bool connecting;	/* connect in flight */
	bool recv_armed;
	bool send_armed;
	bool send_tls;		/* the send in flight is tls_tx */
	bool closing;		/* shut down; released when inflight == 0 */
	bool dirty;		/* on the dirty list */
	bool idle;		/* waiting for work (open loop) */
	bool queued;		/* has an entry in the idle queue */
	bool sleeping;		/* waiting for wake_us to reconnect */
	bool pipelining;	/* negotiated for this session */
	bool cap_pipelining, cap_starttls, cap_plain, cap_login;
	bool ehlo_refused;	/* fell back to HELO */
	bool tls_pending;	/* 220 to STARTTLS seen: start TLS */
	bool tls_on;
	bool authed;
	bool quit_sent;
	bool auth_login;	/* AUTH LOGIN rather than PLAIN */
	uint8_t inflight;
	uint8_t after;		/* enum src_after, once released */
	uint32_t backoff_n;	/* consecutive connection errors */
	uint32_t reserved;	/* messages promised to this new session */
	uint32_t msgs;		/* transactions started on this session */
	uint32_t rcpt_next;	/* next RCPT of the transaction being sent */
	uint32_t reply_lines;	/* lines so far of the reply being read */
	uint32_t tsend;		/* c->txn index the send side works on */
	uint64_t connect_us;
	uint64_t tls_start_us;	/* when the ClientHello was made */
	uint64_t deadline_us;	/* 0: not waiting for anything */
	uint64_t wake_us;
	struct src_expect expect[SRC_EXPECT_MAX];
	unsigned ehead, ecount;
	struct src_txn txn[SRC_TXN_MAX];
	char line[SRC_LINE_MAX];	/* a reply line split across reads */
	size_t line_len;
	struct src_out out[2];	/* out[fill] composes, the other is sent */
	unsigned fill;
	struct msghdr msg;	/* of the plaintext send in flight */
	struct tls *tls;
	/*
	 * --tls-resume: the newest session the server gave this slot's
	 * connections (a TLS 1.3 ticket comes after the handshake, so it is
	 * looked for after every input), offered on the slot's next
	 * handshake. Per slot, not per run: OpenSSL's client uses a TLS 1.3
	 * ticket once, and every resumed handshake brings the next one.
	 * Kept across reconnects; freed with the run.
	 */
	struct tls_session *tls_session;
	struct buf tls_tx;	/* ciphertext being sent */
	size_t tls_tx_off;
	uint32_t next_dirty;
};

struct src_corpus_msg {
	char *data;
	size_t len;
};

struct src_stats {
	uint64_t sent;			/* transactions started */
	uint64_t accepted;
	uint64_t completed;		/* accepted or refused */
	uint64_t temp[SRC_STAGE_COUNT];
	uint64_t perm[SRC_STAGE_COUNT];
	uint64_t lost;			/* in flight at a connection error */
	uint64_t rcpt_4xx, rcpt_5xx;	/* recipients refused at RCPT */
	uint64_t lmtp_ok, lmtp_4xx, lmtp_5xx;
	uint64_t err[SRC_E_COUNT];
	uint64_t errors;
	uint64_t connects;		/* connections opened */
	uint64_t sessions;		/* sessions that reached MAIL */
	struct hist lat_txn;		/* accepted transactions */
	struct hist lat_greet;		/* connect to 220 */
	struct hist lat_tls;		/* ClientHello to established */
	uint64_t tls_full;		/* handshakes made afresh */
	uint64_t tls_resumed;		/* handshakes that resumed a session */
};

struct src {
	const struct bench_source_opts *o;
	struct io_uring ring;
	bool ring_ok;
	struct uring_loop loop;		/* reap and dispatch (lib/uring.h) */
	struct uring_bufs bufs;		/* provided buffers for recv */
	struct src_conn *conns;
	char *heads;			/* every connection's out heads */
	size_t heads_size;
	struct tls_ctx *tls_ctx;
	struct buf tls_plain;	/* decrypted replies, one recv's worth */
	/*
	 * What one flush encrypts, gathered from its iovecs: one write
	 * makes whole records (up to 16 KiB each), where a write per iovec
	 * would make a small record of each piece, as no real client does,
	 * and cost the server a record each.
	 */
	struct buf tls_gather;

	/* What is sent. */
	char *body;
	size_t body_len;
	struct src_corpus_msg *corpus;
	size_t ncorpus;
	char mail_cmd[SRC_ADDR_MAX + 64];
	size_t mail_cmd_len;
	char from_hdr[SRC_ADDR_MAX + 64];
	char auth_plain[2 * (2 * SRC_AUTH_MAX + 2) + 32];
	char auth_user64[2 * SRC_AUTH_MAX + 8];
	char auth_pass64[2 * SRC_AUTH_MAX + 8];
	char date[64];
	uint64_t date_sec;
	char run_id[9];

	/* The schedule. */
	uint64_t now;			/* monotonic us, per batch */
	uint64_t t0;
	int64_t real_off;		/* realtime - monotonic */
	uint64_t next_seq;		/* transactions taken */
	uint64_t reserved;		/* messages promised to sessions being set up */
	uint64_t rcpt_counter;
	uint64_t live;			/* transactions in flight */
	bool stopping;			/* no new transactions */
	bool aborting;			/* stop now: exit 1 */
	uint64_t end_us;		/* when the last transaction ended */
	uint64_t quit_deadline;
	uint32_t conn_serial;
	uint32_t nopen;			/* connections with a socket */
	uint32_t nsleeping;
	uint64_t next_wake;
	uint64_t next_tick;
	uint32_t *idleq;		/* FIFO of idle connections */
	uint32_t idle_head, idle_count;
	uint32_t dirty_head;

	/* What happened. */
	struct src_stats st;
	char error[SRC_WHY_MAX];	/* why the run could not run */
	char first_refusal[SRC_WHY_MAX];
	char first_conn_error[SRC_WHY_MAX];
	bool srv_known;
	bool srv_pipelining, srv_starttls, srv_plain, srv_login;
	char tls_version[32];
	char tls_cipher[64];

	/* The progress line. */
	bool progress;
	bool progress_shown;
	uint64_t next_progress;
	uint64_t prog_t[SRC_PROGRESS_SAMPLES];
	uint64_t prog_acc[SRC_PROGRESS_SAMPLES];
	unsigned prog_i;
};

enum src_op {
	SRC_OP_CONNECT = 1,
	SRC_OP_RECV,
	SRC_OP_SEND,
	SRC_OP_CANCEL,
};

static inline struct io_uring_sqe *
src_get_sqe(struct src *s)
{
	return uring_get_sqe(&s->ring);
}

static inline uint32_t
src_conn_idx(const struct src *s, const struct src_conn *c)
{
	return (uint32_t)(c - s->conns);
}

/* ---- composing output ------------------------------------------------- */

/* Room for n bytes at the end of the head; the caller writes, then commits. */
static inline char *
src_out_room(struct src_out *o, size_t n)
{
	/* The head is sized at start-up for one full group; see src_init. */
	if (o->len + n > o->cap)
		log_panic("output head overflow: %zu + %zu > %zu", o->len, n,
		    o->cap);
	return o->head + o->len;
}

static inline void
src_out_commit(struct src_out *o, size_t n)
{
	struct iovec *last = o->niov ? &o->iov[o->niov - 1] : NULL;

	if (n == 0)
		return;
	if (last != NULL &&
	    (char *)last->iov_base + last->iov_len == o->head + o->len) {
		last->iov_len += n;
	} else {
		if (o->niov == SRC_IOV_MAX)
			log_panic("output iovec overflow");
		o->iov[o->niov].iov_base = o->head + o->len;
		o->iov[o->niov].iov_len = n;
		o->niov++;
	}
	o->len += n;
}

static inline void
src_out_bytes(struct src_out *o, const char *p, size_t n)
{
	memcpy(src_out_room(o, n), p, n);
	src_out_commit(o, n);
}

#define SRC_OUT_LIT(o, lit) src_out_bytes((o), (lit), sizeof(lit) - 1)

static inline void
src_out_str(struct src_out *o, const char *p)
{
	src_out_bytes(o, p, strlen(p));
}

/* Shared bytes (the body, a corpus file), sent by reference. */
static inline void
src_out_ref(struct src_out *o, const char *p, size_t n)
{
	if (n == 0)
		return;
	if (o->niov == SRC_IOV_MAX)
		log_panic("output iovec overflow");
	o->iov[o->niov].iov_base = (void *)p;
	o->iov[o->niov].iov_len = n;
	o->niov++;
}

static inline void
src_out_reset(struct src_out *o)
{
	o->len = 0;
	o->niov = 0;
}

/* Decimal digits of v at p; returns the count. */
static inline size_t
src_fmt_u64(char *p, uint64_t v)
{
	char tmp[20];
	size_t n = 0, i;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	for (i = 0; i < n; i++)
		p[i] = tmp[n - 1 - i];
	return n;
}

static inline void
src_out_u64(struct src_out *o, uint64_t v)
{
	src_out_commit(o, src_fmt_u64(src_out_room(o, 20), v));
}

/* ---- small helpers every part uses ---------------------------------- */

/* Run c's send side before the loop next sleeps (src_flush_dirty). */
static inline void
src_conn_kick(struct src *s, struct src_conn *c)
{
	if (c->dirty)
		return;
	c->dirty = true;
	c->next_dirty = s->dirty_head;
	s->dirty_head = src_conn_idx(s, c);
}

/* Open loop: when transaction seq is due. */
static inline uint64_t
src_sched_at(const struct src *s, uint64_t seq)
{
	return s->t0 + (uint64_t)((double)seq * 1e6 / s->o->rate);
}


/* ---- source_msg.c ------------------------------------------------------ */

/* Load every regular file in dir, in name order. 0, or -1 with why. */
int src_corpus_load(struct src *s, const char *dir, char *why, size_t whylen);
/* The generated body, sized so that messages come out at --size. 0 or -1. */
int src_body_setup(struct src *s, char *why, size_t whylen);
/* The per-message header of transaction t on c, composed into o. */
void src_out_header(struct src *s, struct src_conn *c,
    const struct src_txn *t, struct src_out *o);

/* ---- source_session.c -------------------------------------------------- */

extern const char *const src_stage_names[SRC_STAGE_COUNT];
/* "EHLO", "end of data", ...: for messages. */
const char *src_strstate(enum src_state st);
void src_idle_push(struct src *s, struct src_conn *c);
struct src_conn *src_idle_pop(struct src *s);
/* A command was composed: its reply (count of them) is now due. */
void src_expect_push(struct src *s, struct src_conn *c, enum src_state kind,
    uint32_t txn, uint32_t count);
/* No transaction is started after this; idle connections QUIT. */
void src_stop(struct src *s);
/* Compose every command c may send now (the send side). */
void src_conn_send(struct src *s, struct src_conn *c);
/* Plaintext from the server: reply lines for the receive side. */
void src_replies_parse(struct src *s, struct src_conn *c, char *p, size_t n);

/* ---- source_conn.c ----------------------------------------------------- */

extern const char *const src_err_names[SRC_E_COUNT];
/* Send what the send side composed, unless a send is in flight. */
void src_conn_flush(struct src *s, struct src_conn *c);
/*
 * c failed: count the error (fatal_first: the run cannot work if no
 * connection or session ever did), lose its transactions in flight,
 * close it and reconnect after a backoff while there is work.
 */
void src_conn_fail(struct src *s, struct src_conn *c, enum src_err kind,
    bool fatal_first, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* End the session; released once nothing is in flight, then after. */
void src_conn_close(struct src *s, struct src_conn *c, enum src_after after);
/* Open a socket and connect it; a failure schedules a retry. */
void src_conn_start(struct src *s, struct src_conn *c);
/* One completion (ctx is the struct src): the uring_loop's dispatch. */
void src_dispatch(void *ctx, uint64_t ud, int res, uint32_t flags);

/* ---- source_report.c --------------------------------------------------- */

/* Redraw the progress line on stderr; erase it before the report. */
void src_progress_show(struct src *s);
void src_progress_erase(struct src *s);
void src_report_text(const struct src *s);
void src_report_json(const struct src *s, int status);

#endif
