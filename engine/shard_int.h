/*
 * shard_int.h - what the shard's files share: its limits, its connection
 * and segment slots, struct shard itself, and the functions one file calls
 * in the other. Not for use outside engine/ (the interface is shard.h).
 */
#ifndef SLUICE_SHARD_INT_H
#define SLUICE_SHARD_INT_H

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "../proto/proxy.h"
#include "../proto/smtp_server.h"
#include "../queue/queue.h"
#include "inbound.h"
#include "../queue/queue_commit.h"
#include "../deliver/deliver.h"
#include "../lib/clock.h"
#include "../lib/log.h"
#include "../lib/rbuf.h"
#include "../lib/stats.h"
#include "../lib/tls.h"
#include "../lib/thread.h"
#include "../lib/uring.h"
#include "gen.h"
#include "shard.h"

/* Ring and buffer sizes: fixed at start-up, see docs/architecture.md. */
#define SHARD_RING_ENTRIES 4096
#define SHARD_CQE_BATCH 256
#define SHARD_RECV_BUFS 256		/* power of two */
#define SHARD_RECV_BUF_SIZE 16384
#define SHARD_BGID 1
#define SHARD_SEGS 16			/* live segments per shard */
#define SHARD_OUT_HIGH 65536		/* stop reading above this backlog */
#define SHARD_TICK_MS 250
#define SHARD_FLUSH_GRACE_MS 5000	/* to send the last reply, then close */
#define SHARD_ACCEPT_BACKOFF_MS 100	/* after accept fails (EMFILE...) */
#define SHARD_DKIM_POOLS 8		/* generations' signers with jobs out */

enum op {
	OP_ACCEPT = 1,
	OP_RECV,
	OP_SEND,
	OP_WAKE,
	OP_SEG_OPEN,
	OP_SEG_DIRSYNC,
	OP_SEG_ALLOC,
	OP_CANCEL,
};
static_assert(OP_CANCEL < DELIVER_OP_BASE, "op kinds overlap");


struct seg {
	uint64_t id;
	int fd;
	bool in_use;
	bool sealed;		/* no more appends; close when refs == 0 */
	bool broken;		/* a write or fsync failed: roll over */
	uint64_t end;		/* next append offset */
	uint32_t refs;		/* jobs placed in it, not back from the
				 * committer (which writes and syncs them) */
};

struct conn {
	uint32_t gen;
	uint32_t next_free;
	int fd;
	bool in_use;
	bool closing;		/* shut down; freed when inflight == 0 */
	bool close_after_flush;
	bool recv_armed;
	bool send_armed;
	uint8_t inflight;
	uint8_t listener;	/* index in cg->cfg.listen */
	uint16_t client_bucket;
	bool client_counted;	/* holds one of client_conns[client_bucket] */
	/*
	 * A PROXY protocol listener's connection before its header is
	 * whole: no session yet (c->smtp is not set up), nothing sent,
	 * deadline_ms is the header's (shard_proxy.c).
	 */
	bool proxy_wait;
	struct buf proxy_hdr;	/* a header split over reads, kept whole */
	uint64_t deadline_ms;
	uint64_t cmd_deadline_ms;	/* command line under way: its end by
					 * then; 0 when none is */
	uint64_t auth_due_ms;	/* a failed login's 535 goes out then; 0:
				 * none held back (engine/auth.h) */
	struct buf tx;		/* bytes being sent (swapped from smtp.out,
				 * or records from tls) */
	size_t tx_off;
	struct tls *tls;	/* NULL: plaintext (shard_tls.c) */
	bool tls_plain_out;	/* STARTTLS taken: smtp.out (the 220) still
				 * leaves in plaintext */
	bool tls_failed;	/* TLS error: only OpenSSL's alert leaves */
	struct commit_job *job;	/* record write in flight */
	struct shard_dkim *dk;	/* DKIM hasher and job (shard_dkim.c) */
	bool dk_nomem;		/* ... could not be had: 451 at the end */
	struct smtp_session smtp;
	/*
	 * The configuration generation the connection was accepted under,
	 * held until it is freed: its session's settings, listener policy,
	 * TLS context and users stay those it started with across a reload.
	 */
	struct config_gen *cg;
};

struct shard {
	unsigned id;
	/*
	 * The generation new connections get (held), and the fields of it
	 * the code reads: swapped together, on this thread, when a reload
	 * hands over gen_next (shard_swap_gen()).
	 */
	struct config_gen *gen;
	_Atomic(struct config_gen *) gen_next;	/* from the main thread */
	const struct config *cfg;
	struct deliver_cfg dcfg;	/* delivery's view of cfg */
	const struct smtp_server_cfg *scfg;
	struct committer *committer;
	struct io_uring ring;
	struct uring_loop loop;
	pthread_t thread;

	/*
	 * Listening sockets by slot; a slot's accept carries its number.
	 * slot_lis[slot] is its listener's index in cfg->listen, -1 for a
	 * slot closed (its listener was removed by a reload: its accept may
	 * still be on the ring, so the slot is reused only once it is not,
	 * slot_armed). nlisten: slots ever used.
	 */
	int lfd[SHARD_LISTEN_MAX];
	int slot_lis[SHARD_LISTEN_MAX];
	bool slot_armed[SHARD_LISTEN_MAX];
	unsigned nlisten;
	unsigned accepts;	/* multishot accepts in flight */
	bool accepting;
	bool accept_retry[SHARD_LISTEN_MAX];	/* re-arm from tick() */
	uint64_t accept_retry_ms;
	uint64_t accept_warn_ms;	/* last "accept failed" warning */

	struct conn *conns;
	uint32_t nconns;
	uint32_t free_head;
	uint32_t nactive;

	struct uring_bufs bufs;	/* provided buffers for recv */
	struct buf tls_plain;	/* decrypted input of one recv */

	int efd;
	uint64_t efd_val;
	atomic_bool stop_requested;
	bool stopping;
	uint64_t stop_deadline_ms;

	int segdir_fd;
	uint64_t seg_seq;
	struct seg segs[SHARD_SEGS];
	int cur;		/* index in segs, -1 when none */
	int next;		/* pre-opened, or -1 */
	bool next_opening;
	uint64_t next_seq;	/* reserved for the segment being pre-opened */
	char next_name[64];

	struct queue_id_gen idgen;
	struct smtp_id_source ids;	/* idgen, for the sessions */
	struct commit_job *pending_head, *pending_tail;	/* for committer */
	uint32_t jobs_out;	/* jobs not yet back from the committer */
	uint32_t seg_ops;	/* open/dirsync in flight */

	uint64_t now_ms;
	uint64_t next_tick_ms;
	_Atomic uint64_t n_messages;

	struct deliver *deliver;

	/* Refused PROXY connections: log lines this second, and not. */
	uint64_t refusal_log_sec;
	uint32_t refusal_log_n;
	uint32_t refusal_log_dropped;

	/*
	 * The signer pools this shard has jobs out at (a session's job goes
	 * to its generation's pool), and its current generation's; a pool
	 * leaves once it is neither (shard_dkim.c).
	 */
	struct {
		struct dkim_pool *pool;
		uint32_t out;		/* jobs not yet reaped */
	} dk_pools[SHARD_DKIM_POOLS];
};

/*
 * Connections in total and per client address, all shards together, so
 * the limits hold however SO_REUSEPORT spreads clients over shards.
 * Collisions of the 16-bit address hash only make the per-client limit a
 * little stricter for the unlucky pair.
 */
/* A counter goes one past the limit before the check takes it back. */
static_assert(CONFIG_CONNECTIONS_MAX < UINT32_MAX,
    "connection counters too narrow for limits.connections");
/* Records carry 32-bit lengths: the largest message and our header fit. */
static_assert(CONFIG_MESSAGE_SIZE_MAX <= UINT32_MAX / 2,
    "limits.message_size may pass a record's 32-bit length");

/*
 * The listener c was accepted on, in the configuration it was accepted
 * under (c->listener indexes that one: after a reload the shard's own
 * list may differ).
 */
static inline const struct listen_cfg *
conn_listen(const struct conn *c)
{
	return &c->cg->cfg.listen[c->listener];
}

static inline struct io_uring_sqe *
get_sqe(struct shard *sh)
{
	return uring_get_sqe(&sh->ring);
}

/* shard_seg.c: the shard's spool segments */
int shard_seg_open_sync(struct shard *sh);
void shard_seg_preopen(struct shard *sh);
void shard_handle_seg_open(struct shard *sh, int res);
void shard_handle_seg_alloc(struct shard *sh, uint32_t i, int res);
void shard_handle_seg_dirsync(struct shard *sh, uint32_t i, int res);
void shard_seg_release(struct shard *sh, struct seg *s);
struct seg *shard_seg_for_append(struct shard *sh, uint64_t rec_len, int *err);

/* shard.c: what the session asked for, its command deadline, an
 * operation of the connection done (it may be freed then) */
void shard_handle_event(struct shard *sh, struct conn *c, enum smtp_event ev);
void shard_command_deadline(struct shard *sh, struct conn *c);
void shard_conn_op_done(struct shard *sh, struct conn *c);

/* shard_commit.c: commit jobs, their way to the committer and back */
void shard_start_commit(struct shard *sh, struct conn *c);
void shard_job_finish(struct shard *sh, struct commit_job *job);
uint64_t shard_queue_dsn(struct shard *sh, const char *rcpt, struct buf *msg,
    struct queue_update *ups, uint32_t nups);
void shard_submit_updates(struct shard *sh, struct queue_update *ups,
    uint32_t nups);
void shard_pending_push(struct shard *sh, struct commit_job *job);
void shard_pending_flush(struct shard *sh);

/*
 * shard_listen.c: listening slots. arm: a multishot accept on slot i
 * (its socket open, no accept armed). close: stop accepting on slot i
 * (the accept cancelled, the socket closed, the slot free once the
 * cancel completes). swap: take a reload's generation g (the reference
 * handed over is the shard's from now on), at a safe point.
 */
void shard_arm_accept(struct shard *sh, unsigned i);
void shard_slot_close(struct shard *sh, unsigned i);
void shard_swap_gen(struct shard *sh, struct config_gen *g);

/*
 * shard_auth.c: SMTP AUTH between the session and the password workers
 * (engine/auth.c). start: the session returned SMTP_EV_AUTH; its next
 * event (NONE while the workers check). finish: a worker's verdict; the
 * connection to go on with and its event, or NULL when there is nothing
 * to do (the client left, or a failure's 535 is held back until
 * c->auth_due_ms). due: that 535 is due; false when nothing is to do.
 */
struct auth_result;
enum smtp_event shard_auth_start(struct shard *sh, struct conn *c);
struct conn *shard_auth_finish(struct shard *sh, const struct auth_result *r,
    enum smtp_event *ev);
bool shard_auth_due(struct conn *c, enum smtp_event *ev);

/*
 * Connections refused before a greeting (limits, PROXY headers) are logged
 * at most SHARD_REFUSAL_LOG_PER_SEC a second: a flood must not become one.
 * ok: may one more be logged now (else it is counted); tick: say how many
 * went unlogged in the last second.
 */
#define SHARD_REFUSAL_LOG_PER_SEC	20
bool shard_refusal_log_ok(struct shard *sh);
void shard_refusal_log_tick(struct shard *sh);

/* shard_tls.c: inbound TLS on a connection */
/* Give c a TLS connection (implicit TLS, or STARTTLS taken). false: none. */
bool shard_tls_start(struct shard *sh, struct conn *c);
/*
 * Ciphertext received on c: the handshake, then the session's input.
 * Returns the session's event; SMTP_EV_CLOSE on a TLS failure (logged).
 */
enum smtp_event shard_tls_input(struct shard *sh, struct conn *c,
    const char *p, size_t n);
/*
 * c's send buffer is drained: encrypt the session's output and put the
 * records waiting (handshake included) in c->tx. 1: something to send;
 * 0: nothing; -1: TLS failed (logged), close.
 */
int shard_tls_fill_tx(struct conn *c);

/*
 * shard_proxy.c: the PROXY protocol header a listener with
 * proxy_protocol reads before the session starts.
 *
 * shard_proxy_input() takes n received bytes of c (c->proxy_wait) and
 * returns PROXY_MORE (keep reading), PROXY_BAD (logged: close it without
 * a word) or PROXY_DONE: *peer is the client's address (the header's, or
 * the connection's own for a LOCAL or UNKNOWN header) and rest[0..nrest)
 * the client's own bytes behind the header, valid until
 * shard_proxy_end() or the recv buffer's release, whichever is first.
 */
enum proxy_status shard_proxy_input(struct shard *sh, struct conn *c,
    const char *data, size_t n, struct sockaddr_storage *peer,
    const char **rest, size_t *nrest);
/* The header is done with: its buffer's memory back. */
void shard_proxy_end(struct conn *c);
/* Log (rate-limited) why a connection to a PROXY listener is closed. */
void shard_proxy_refused(struct shard *sh, unsigned listener,
    const struct sockaddr_storage *from, const char *why);
/* c's header did not come whole: its deadline passed, or EOF (res). */
void shard_proxy_expired(struct shard *sh, struct conn *c);
void shard_proxy_eof(struct shard *sh, struct conn *c, int res);


/*
 * shard_dkim.c: DKIM signing. submit: 1 the message went to the signers
 * (its fields come back through shard_dkim_reap()), 0 it is not to be
 * signed (commit it now), -1 it should be but cannot be (451). apply:
 * put a returned job's fields in front of the message; 0, or -1 (451).
 */
struct dkim_job;
int shard_dkim_submit(struct shard *sh, struct conn *c);
struct dkim_job *shard_dkim_reap(struct shard *sh);
int shard_dkim_apply(struct shard *sh, struct conn *c, struct dkim_job *job);
void shard_dkim_conn_free(struct conn *c);
/* Drop the pools the shard no longer needs to reap (after a swap too). */
void shard_dkim_prune(struct shard *sh);

#endif
