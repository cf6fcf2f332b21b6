/*
 * smtp_server.h - the inbound SMTP session (RFC 5321), as a pure state
 * machine: bytes in, replies out, no I/O of its own.
 *
 * The engine feeds received bytes with smtp_session_input() and sends
 * whatever lands in s->out. When a message is complete the session returns
 * SMTP_EV_COMMIT and stops consuming input (it is "blocked") until the
 * engine reports the queue's verdict with smtp_session_commit_done(); that
 * is how a 250 is only ever sent after the message is durable. Input that
 * arrives while blocked is kept (bounded by the engine not reading more)
 * and processed afterwards, so pipelined commands keep their order.
 *
 * This seam is also where TLS sits: the engine decrypts before
 * smtp_session_input() and encrypts what it takes from s->out. The session
 * only decides: it offers STARTTLS as its listener's policy says, answers
 * it with 220 and SMTP_EV_STARTTLS (from then on the engine runs the
 * handshake and nothing reaches the session until it is done), and learns
 * of the result through smtp_session_tls_started().
 *
 * AUTH works the same way: once a client's credentials are decoded the
 * session returns SMTP_EV_AUTH and is blocked until the engine, which
 * checks the password off the event loop, calls smtp_session_auth_done().
 */
#ifndef SLUICE_SMTP_SERVER_H
#define SLUICE_SMTP_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "../lib/budget.h"
#include "../lib/buf.h"
#include "data_scan.h"
#include "sasl.h"
#include "smtp_policy.h"

struct stats_shard;

/*
 * The body type a client declared with MAIL BODY= (RFC 6152; BINARYMIME is
 * RFC 3030's, not offered yet). The engine stores it in the envelope and
 * ties these values to the queue's with static_assert.
 */
enum smtp_body {
	SMTP_BODY_7BIT = 0,	/* none given, or BODY=7BIT */
	SMTP_BODY_8BITMIME = 1,
	SMTP_BODY_BINARYMIME = 2,
};

/*
 * Message ids are 64-bit numbers the engine hands out (smtp_id_source);
 * the session prints them as SMTP_ID_LEN upper-case hex digits, in the
 * Received: header and in "250 ... queued as ID".
 */
#define SMTP_ID_LEN 16
void smtp_id_format(uint64_t id, char out[SMTP_ID_LEN + 1]);

/* Where a session gets the id of each message it starts; per shard. */
struct smtp_id_source {
	/* A new id, never 0, for a message arriving at now_ms (Unix ms). */
	uint64_t (*next)(void *ctx, uint64_t now_ms);
	void *ctx;
};

/* Longest command line the session can take (limits.line_length). */
#define SMTP_LINE_MAX 65536

struct smtp_session;

/* What the session needs to know of the server; shared, read-only. */
struct smtp_server_cfg {
	const char *hostname;
	uint64_t message_size;
	uint32_t recipients;
	uint32_t line_length;
	uint32_t errors;
	uint32_t hops;		/* Received: fields allowed; 0: no limit */
	uint32_t junk_commands;	/* before junk counts as errors; 0: never */
	/*
	 * Message bytes all sessions may hold at once (limits.memory),
	 * shared by every shard; NULL: no ceiling. A session takes from it
	 * before its message buffer grows and gives back when the
	 * transaction ends; a DATA or BDAT it cannot cover gets 452 4.3.1.
	 */
	struct budget *memory;
	char ehlo_reply[512];	/* precomputed multi-line EHLO reply */
	/*
	 * Asked at RCPT once the recipient is otherwise acceptable: the
	 * whole reply line (code, enhanced code, text; no CRLF) when the
	 * engine refuses the address by policy (an error: route), else
	 * NULL. The line must stay valid as long as this config. NULL fn:
	 * no such refusals.
	 */
	const char *(*rcpt_refused)(void *ctx, const char *addr);
	void *rcpt_ctx;
	/*
	 * relay_domains: the recipient domains any client may name. Others
	 * need an allowed network or AUTH (see smtp_rcpt_local()). Owned
	 * by the caller, like the hook's context.
	 */
	const struct smtp_pat *relay_domains;
	size_t nrelay_domains;
	/*
	 * Shown the message's bytes as they are stored, while they stream
	 * in: the client's data after dot-unstuffing (not our Received:
	 * header), in the pieces it arrives in; p == NULL, n == 0 when a
	 * message begins. The engine computes the DKIM body hash this way,
	 * with no second pass over the message. NULL fn: no tap.
	 */
	void (*data_tap)(void *ctx, struct smtp_session *s, const char *p,
	    size_t n);
	void *tap_ctx;
};

void smtp_server_cfg_init(struct smtp_server_cfg *c, const char *hostname,
    uint64_t message_size, uint32_t recipients, uint32_t line_length,
    uint32_t errors);

/*
 * What one listener asks of its sessions: TLS, AUTH and sender rules. The
 * engine keeps one per listener (read-only, shared by every shard) and
 * hands it to smtp_session_init(); NULL means a plaintext listener with
 * no AUTH, which is what the zero value says too.
 */
enum smtp_tls_mode {
	SMTP_TLS_NONE = 0,	/* plaintext only, no STARTTLS offered */
	SMTP_TLS_STARTTLS,	/* STARTTLS offered, not required */
	SMTP_TLS_REQUIRED,	/* STARTTLS before MAIL */
	SMTP_TLS_IMPLICIT,	/* TLS from the first byte (port 465) */
};

enum smtp_auth_mode {
	SMTP_AUTH_OFF = 0,	/* AUTH not offered */
	SMTP_AUTH_OPTIONAL,	/* offered; relaying still needs it */
	SMTP_AUTH_REQUIRED,	/* MAIL refused until authenticated */
};

struct smtp_listen_policy {
	enum smtp_tls_mode tls;
	enum smtp_auth_mode auth;
	bool auth_insecure;	/* offer AUTH without TLS */
	enum smtp_sender_rule senders;
};

enum smtp_state {
	SMTP_S_INIT = 0,	/* greeted, no HELO/EHLO yet */
	SMTP_S_READY,		/* HELO/EHLO done, no transaction */
	SMTP_S_MAIL,		/* MAIL accepted, no recipient yet */
	SMTP_S_RCPT,		/* at least one recipient */
	SMTP_S_DATA,		/* receiving DATA */
	SMTP_S_BDAT,		/* receiving a BDAT chunk */
	SMTP_S_BDAT_WAIT,	/* between BDAT chunks */
	SMTP_S_COMMIT,		/* message complete, awaiting the queue */
	SMTP_S_AUTH,		/* AUTH: a 334 sent, reading the response */
	SMTP_S_AUTH_WAIT,	/* AUTH: awaiting the engine's verdict */
	SMTP_S_QUIT,		/* closing after the output drains */
};

const char *smtp_strstate(enum smtp_state st);

enum smtp_event {
	SMTP_EV_NONE = 0,	/* nothing for the engine but sending s->out */
	SMTP_EV_COMMIT,		/* a message is ready: queue it */
	SMTP_EV_CLOSE,		/* send s->out, then close */
	/*
	 * STARTTLS was accepted: send s->out (the 220) in plaintext, then
	 * run the TLS handshake on the connection's next bytes and call
	 * smtp_session_tls_started() when it completes. Input that followed
	 * the STARTTLS line was discarded (RFC 3207 5, command injection);
	 * the session is back at its greeted state (EHLO needed again).
	 */
	SMTP_EV_STARTTLS,
	SMTP_EV_AUTH,		/* check auth_user/auth_pass, then
				 * smtp_session_auth_done() */
};

/* Results for smtp_session_auth_done(). */
enum smtp_auth_result {
	SMTP_AUTH_OK = 0,	/* 235 2.7.0 */
	SMTP_AUTH_FAILED,	/* 535 5.7.8 */
	SMTP_AUTH_TEMPFAIL,	/* 454 4.7.0: could not check now */
	SMTP_AUTH_LOCKED,	/* 421 4.7.0 and close: too many failures */
};

/* Results for smtp_session_commit_done(). */
enum smtp_commit_result {
	SMTP_COMMIT_OK = 0,
	SMTP_COMMIT_NOSPACE,	/* 452 4.3.1 */
	SMTP_COMMIT_IOERR,	/* 451 4.3.0 */
	SMTP_COMMIT_SIGNFAIL,	/* 451 4.3.0: should be signed, cannot be */
};

struct smtp_session {
	const struct smtp_server_cfg *cfg;
	const struct smtp_listen_policy *pol;	/* never NULL once set up */
	enum smtp_state state;
	struct buf in;		/* unconsumed input */
	struct buf out;		/* replies not yet sent */
	struct buf msg;		/* the message: Received: + data */
	struct buf env;		/* sender, helo and recipients, NUL-separated */
	struct data_scan ds;
	const struct smtp_id_source *ids;
	uint64_t qid;		/* id of the message being received */
	uint64_t arrival_us;
	uint64_t bdat_left;	/* bytes left in the current chunk */
	bool bdat_last;		/* current chunk is the last */
	bool bdat_bad;		/* chunk is consumed, then refused */
	bool bdat_nostore;	/* chunk is consumed, then 452 (memory) */
	bool skip_line;		/* discarding the rest of a long line */
	bool relay_ok;		/* client may relay (allowed network) */
	bool esmtp;		/* EHLO rather than HELO */
	bool smtputf8;
	bool shutting_down;
	bool tls;		/* running over TLS (the engine sets it) */
	const char *cmd;	/* verb being answered ("RCPT"), for the log */
	bool authenticated;	/* AUTH succeeded: auth_user is the user */
	bool starttls;		/* STARTTLS accepted: stop, return the event */
	bool failed;		/* out of memory or room: closing */
	uint8_t body;		/* enum smtp_body */
	uint32_t declared_size;
	uint32_t errors;
	uint32_t junk;		/* junk commands since the last message */
	uint32_t nrcpt;		/* accepted recipients */
	uint32_t nrcpt_tried;
	bool helo_seen;		/* HELO or EHLO given */
	enum smtp_state bdat_prev; /* state a refused BDAT chunk returns to */
	uint32_t sender_off;	/* offsets into env; HELO name at 0 */
	uint32_t rcpt_off0;	/* first recipient; they follow NUL-separated */
	uint64_t messages;	/* queued in this session */
	uint64_t mem_held;	/* taken from cfg->memory for msg */
	uint64_t msg_limit;	/* msg may hold our header + message_size */
	uint32_t data_off;	/* in msg, where the client's data starts */
	char client_addr[64];	/* "127.0.0.1", "::1" */
	/* Once tls: what was negotiated, for Received: and the logs. */
	char tls_version[16];	/* "TLSv1.3" */
	char tls_cipher[64];	/* "TLS_AES_256_GCM_SHA384" */
	uint16_t tls_bits;	/* the cipher's key bits */
	/*
	 * AUTH: the user name (kept once authenticated, for the logs and
	 * the Received: header) and, only between SMTP_EV_AUTH and
	 * smtp_session_auth_done(), the password, wiped then. The mechanism
	 * ("PLAIN", "LOGIN") is a static string.
	 */
	const char *auth_mech;
	uint8_t auth_step;	/* which response SMTP_S_AUTH reads */
	char auth_user[SASL_FIELD_MAX + 1];
	char auth_pass[SASL_FIELD_MAX + 1];
	struct smtp_sender_id sender_id;	/* once authenticated */
	/* Where its replies are counted (the engine sets it after
	 * smtp_session_init(); NULL: not counted). */
	struct stats_shard *stats;
};

/* pol: the listener's policy, kept by reference; NULL: plaintext, no AUTH. */
void smtp_session_init(struct smtp_session *s, const struct smtp_server_cfg *cfg,
    const struct smtp_listen_policy *pol, const struct sockaddr *peer,
    bool relay_ok, const struct smtp_id_source *ids);
/*
 * The connection is gone: give back what the session holds of the memory
 * budget and free its big buffers (small ones stay for the next session
 * in the slot). Not while the engine still writes from s->msg.
 */
void smtp_session_release(struct smtp_session *s);
/* smtp_session_release(), then free every buffer. */
void smtp_session_free(struct smtp_session *s);

/*
 * Queue the 220 greeting; or 421 and SMTP_EV_CLOSE when the session could
 * not be set up (no memory for its buffers).
 */
enum smtp_event smtp_session_greet(struct smtp_session *s);

/* Feed received bytes (n may be 0 to resume after a commit). */
enum smtp_event smtp_session_input(struct smtp_session *s, const char *p,
    size_t n);

/*
 * The TLS handshake completed (after SMTP_EV_STARTTLS, or before the
 * greeting on an implicit-TLS listener): the session is over TLS from
 * now on; version, cipher and bits are what was negotiated (copied,
 * truncated to fit). Received: says ESMTPS (or ESMTPSA) and names them.
 */
void smtp_session_tls_started(struct smtp_session *s, const char *version,
    const char *cipher, int bits);

/*
 * The protocol name of the session for Received: "with" and the queue
 * (RFC 3848): SMTP or ESMTP, "S" added over TLS, "A" when authenticated.
 */
const char *smtp_session_protocol(const struct smtp_session *s);

/* The queue's verdict on the message returned with SMTP_EV_COMMIT. */
enum smtp_event smtp_session_commit_done(struct smtp_session *s,
    enum smtp_commit_result res);

/*
 * While the session is blocked (SMTP_S_COMMIT) the message is complete:
 * the engine reads its envelope from these fields. env holds the HELO
 * name at offset 0, the sender at sender_off and nrcpt recipients from
 * rcpt_off0 on, each NUL-terminated; msg holds the message (our Received:
 * header, then the data). They stay put until smtp_session_commit_done().
 */

/*
 * The verdict on the credentials returned with SMTP_EV_AUTH (state
 * SMTP_S_AUTH_WAIT; the session reads no input until then). id: with
 * SMTP_AUTH_OK, what the user may send as (its patterns must outlive the
 * session; the name is auth_user's). The password is wiped here, and the
 * session goes on with whatever input it had kept.
 */
enum smtp_event smtp_session_auth_done(struct smtp_session *s,
    enum smtp_auth_result res, const struct smtp_sender_id *id);

/* Is AUTH offered to this session (listener policy, and TLS)? */
bool smtp_session_auth_offered(const struct smtp_session *s);

/*
 * While blocked: put n bytes (whole header fields, e.g. DKIM-Signature)
 * in front of the message, before it is queued. The memory budget pays
 * for them; false when it cannot (the message is as it was).
 */
bool smtp_session_prepend(struct smtp_session *s, const char *p, size_t n);

/* The idle timer fired: queue 421 4.4.2. The engine closes after. */
void smtp_session_timeout(struct smtp_session *s);

/*
 * Is a command line under way: its first bytes received, its end not
 * yet? The engine starts the command deadline when this turns true and
 * stops it when it turns false, so that a client dripping a line byte by
 * byte cannot keep a session (Postfix smtpd_timeout, per command).
 */
bool smtp_session_partial_command(const struct smtp_session *s);

/* The command deadline passed: queue 421 4.4.2. The engine closes after. */
void smtp_session_command_timeout(struct smtp_session *s);

/*
 * The server is stopping. A session with no transaction under way gets
 * 421 4.3.2 and SMTP_EV_CLOSE; others finish their transaction first and
 * get the 421 at their next command.
 */
enum smtp_event smtp_session_shutdown(struct smtp_session *s);

/* True while the session waits for the engine and reads nothing. */
static inline bool
smtp_session_blocked(const struct smtp_session *s)
{
	return s->state == SMTP_S_COMMIT || s->state == SMTP_S_AUTH_WAIT;
}

/* True when a transaction (MAIL..end of data) is under way. */
static inline bool
smtp_session_in_transaction(const struct smtp_session *s)
{
	return s->state >= SMTP_S_MAIL && s->state <= SMTP_S_COMMIT;
}

#endif
