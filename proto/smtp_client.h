/*
 * smtp_client.h - the outbound SMTP (RFC 5321) and LMTP (RFC 2033) client,
 * as a pure state machine: replies in, commands out, no I/O of its own.
 *
 * The engine connects, calls smtp_client_init(), feeds every byte it
 * receives to smtp_client_input() and sends whatever lands in c->out (it
 * may consume or swap out the bytes at any time; the client only ever
 * appends, and never reads them back). Results come back through the
 * callbacks in struct smtp_client_cb, never through state the engine has
 * to poll:
 *
 *   ready         the client is idle and will take smtp_client_send() or
 *                 smtp_client_quit(): after greeting + EHLO/LHLO (+ AUTH),
 *                 and after every transaction (and its RSET, if one was
 *                 needed). Fires once per idle period.
 *   rcpt_done     the definite result (2xx delivered, 4xx deferred, 5xx
 *                 bounced) of one recipient of the current message. A
 *                 452 at RCPT ("too many recipients", RFC 5321 4.5.3.1.10)
 *                 is a 4xx like any other: the engine retries those
 *                 recipients later, in a new transaction.
 *   message_done  the current message is finished; fires after rcpt_done
 *                 has fired for every one of its recipients.
 *   failed        the session is over (greeting refused, EHLO refused,
 *                 AUTH failed, 421, malformed reply, connection lost,
 *                 timeout). Fires once; nothing fires after it. It
 *                 does not fire when the session ends normally after
 *                 smtp_client_quit() (whatever QUIT got back).
 *
 * The per-recipient contract: for every message accepted by
 * smtp_client_send() (return 0 or 1), rcpt_done fires exactly once for
 * each recipient index 0..nrcpt-1, then message_done fires exactly once,
 * whatever happens: refused at MAIL (every recipient gets MAIL's reply),
 * refused at RCPT (that reply, as soon as it arrives), accepted at RCPT
 * (the reply to the final dot for SMTP; its own reply after the dot for
 * LMTP; DATA's reply if DATA is refused), refused locally before MAIL
 * (SIZE, SMTPUTF8), or the session failing mid-transaction (the failure's
 * reply: 421 as the server said it, else 451 4.4.2 "connection lost",
 * 451 4.4.2 for a timeout, 451 4.5.0 for a protocol error). When the
 * session fails mid-transaction the order is: rcpt_done for every
 * recipient still open, message_done, failed.
 *
 * Callbacks may call smtp_client_send() and smtp_client_quit() from
 * inside `ready` (that is the intended use). They must not free the
 * client or call smtp_client_input/eof/timeout; free it after the call
 * that fired them has returned.
 *
 * Errors: peer trouble (refusals, 421, malformed replies, lost
 * connections) becomes callbacks with a reply code; memory exhaustion
 * while the session runs becomes a session failure 451 4.3.0; misuse (send
 * while not ready, a bad message) fails an assertion or returns -EINVAL.
 *
 * TLS sits at the same seam as the server's: the engine decrypts before
 * smtp_client_input() and encrypts what it takes from c->out; the client
 * never sees a record. STARTTLS (RFC 3207), when cfg->starttls asks for
 * it, goes after EHLO/LHLO:
 *
 *   EHLO -> 250 ... STARTTLS -> "STARTTLS" -> 220
 *        smtp_client_input() returns SMTP_CLIENT_EV_STARTTLS: the engine
 *        sends what is in c->out (nothing, by then), drops the rest of
 *        the bytes it read (the server may not speak before our
 *        ClientHello: anything there is an injection attempt) and runs
 *        the handshake;
 *   smtp_client_tls_done()   handshake over: EHLO again, the extensions
 *                            re-read from its reply, then AUTH, ready;
 *   smtp_client_tls_failed() handshake failed: the session fails at
 *                            SMTP_CLIENT_STAGE_TLS with 454 4.7.5.
 *
 * Implicit TLS (port 465) is the engine's alone: it runs the handshake
 * before the greeting and calls smtp_client_tls_done() then, which only
 * records that the session is encrypted. AUTH is never sent over a
 * session that is not (unless cfg->auth_insecure): the session fails
 * at the AUTH stage with a 4xx instead.
 */
#ifndef SLUICE_SMTP_CLIENT_H
#define SLUICE_SMTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/buf.h"

/* Longest reply line accepted, CRLF included (RFC 5321 says 512). */
#define SMTP_CLIENT_LINE_MAX 4096
/* Most lines in one (multi-line) reply. */
#define SMTP_CLIENT_REPLY_LINES_MAX 128
/* Reply text kept for callbacks (lines joined by a space), NUL excluded. */
#define SMTP_CLIENT_TEXT_MAX 1000
/* Recipients per message. */
#define SMTP_CLIENT_RCPT_MAX 65535
/* Longest sender or recipient address accepted by smtp_client_send(). */
#define SMTP_CLIENT_ADDR_MAX 512
/* Longest AUTH user name and password. */
#define SMTP_CLIENT_AUTH_MAX 255
/* Commands in flight at once when pipelining (MAIL + RCPTs + DATA). */
#define SMTP_CLIENT_PIPE_MAX 1000
/* Command bytes c->out may hold; the message data comes on top of it. */
#define SMTP_CLIENT_OUT_CMD_MAX (1024 * 1024)
/* Most transactions in flight at once (cfg->pipeline_depth). */
#define SMTP_CLIENT_DEPTH_MAX 4

/* Shared, read-only; outlives every client that points to it. */
struct smtp_client_cfg {
	const char *helo_name;	/* argument of EHLO, HELO and LHLO */
	bool lmtp;		/* LHLO, one reply per recipient after DATA */
	const char *auth_user;	/* NULL or "": no AUTH */
	const char *auth_pass;
	/*
	 * Send messages with BDAT (RFC 3030) when the server offers CHUNKING
	 * and PIPELINING (SMTP only): MAIL, the RCPTs and "BDAT n LAST" with
	 * the message go out in one write, one round trip per message and
	 * no dot-stuffing. Otherwise DATA.
	 */
	bool chunking;
	/*
	 * STARTTLS after EHLO/LHLO (enum smtp_client_starttls): never, when
	 * offered (a refusal is shrugged off, the session goes on in
	 * plaintext), or required (not offered or refused: the session
	 * fails at SMTP_CLIENT_STAGE_TLS with 4.7.4).
	 */
	uint8_t starttls;
	/* AUTH may go over a session that is not encrypted. */
	bool auth_insecure;
	/*
	 * Transactions in flight at once, 1..SMTP_CLIENT_DEPTH_MAX (0 counts
	 * as 1). Above 1, when a transaction goes out with BDAT (so it is
	 * whole on the wire the moment it is sent) the next one may follow
	 * before its replies come back: smtp_client_can_pipeline().
	 */
	uint8_t pipeline_depth;
};

enum smtp_client_starttls {
	SMTP_CLIENT_STARTTLS_NEVER = 0,
	SMTP_CLIENT_STARTTLS_MAY,
	SMTP_CLIENT_STARTTLS_MUST,
};

/* What the server offered in its EHLO/LHLO reply. */
enum smtp_client_ext {
	SMTP_CLIENT_EXT_PIPELINING = 1u << 0,
	SMTP_CLIENT_EXT_SIZE = 1u << 1,
	SMTP_CLIENT_EXT_8BITMIME = 1u << 2,
	SMTP_CLIENT_EXT_SMTPUTF8 = 1u << 3,
	SMTP_CLIENT_EXT_ENHANCEDSTATUSCODES = 1u << 4,
	SMTP_CLIENT_EXT_CHUNKING = 1u << 5,
	SMTP_CLIENT_EXT_STARTTLS = 1u << 6,
	SMTP_CLIENT_EXT_AUTH = 1u << 7,
	SMTP_CLIENT_EXT_DSN = 1u << 8,
};

enum smtp_client_auth_mech {
	SMTP_CLIENT_AUTH_PLAIN = 1u << 0,
	SMTP_CLIENT_AUTH_LOGIN = 1u << 1,
};

/*
 * Receive state: which reply the client waits for. Every change goes
 * through one function (enter_state in smtp_client.c), which reports it
 * to cb->state_change when set.
 */
enum smtp_client_state {
	SMTP_C_GREETING = 0,	/* connected, waiting for the 220 */
	SMTP_C_EHLO,		/* EHLO sent */
	SMTP_C_HELO,		/* HELO sent (EHLO got 5xx) */
	SMTP_C_LHLO,		/* LHLO sent */
	SMTP_C_STARTTLS,	/* STARTTLS sent: waiting for the 220 */
	SMTP_C_TLS,		/* the engine runs the TLS handshake */
	SMTP_C_AUTH,		/* an AUTH step sent */
	SMTP_C_READY,		/* idle: nothing outstanding */
	SMTP_C_MAIL,		/* waiting for MAIL's reply */
	SMTP_C_RCPT,		/* waiting for a RCPT reply */
	SMTP_C_DATA,		/* waiting for DATA's reply (354) */
	SMTP_C_DOT,		/* message sent, waiting for the final reply(ies) */
	SMTP_C_BDAT,		/* "BDAT n LAST" and the message sent: its reply */
	SMTP_C_RSET,		/* RSET after a failed transaction */
	SMTP_C_QUIT,		/* QUIT sent */
	SMTP_C_CLOSED,		/* over: the engine closes the connection */
};

const char *smtp_client_strstate(enum smtp_client_state st);

/* Where a session failed (failed callback). */
enum smtp_client_stage {
	SMTP_CLIENT_STAGE_CONNECT = 0,	/* never from the client: engine's own */
	SMTP_CLIENT_STAGE_GREETING,
	SMTP_CLIENT_STAGE_EHLO,		/* EHLO, HELO or LHLO */
	SMTP_CLIENT_STAGE_TLS,		/* STARTTLS, the handshake, implicit TLS */
	SMTP_CLIENT_STAGE_AUTH,
	SMTP_CLIENT_STAGE_IDLE,		/* between transactions */
	SMTP_CLIENT_STAGE_MAIL,
	SMTP_CLIENT_STAGE_RCPT,
	SMTP_CLIENT_STAGE_DATA,
	SMTP_CLIENT_STAGE_DOT,		/* after the message's final dot */
	SMTP_CLIENT_STAGE_RSET,
	SMTP_CLIENT_STAGE_QUIT,
	SMTP_CLIENT_STAGE_BDAT,		/* the reply to BDAT LAST */
};

/* "connect", "greeting", "ehlo", ... */
const char *smtp_client_strstage(enum smtp_client_stage stage);

/* Which timeout the engine should run (Postfix's defaults in brackets). */
enum smtp_client_wait {
	SMTP_CLIENT_WAIT_NONE = 0,	/* idle (READY) or closed */
	SMTP_CLIENT_WAIT_GREETING,	/* smtp_helo_timeout [300 s] */
	SMTP_CLIENT_WAIT_REPLY,		/* EHLO/AUTH/MAIL/RCPT/DATA/RSET [300 s] */
	SMTP_CLIENT_WAIT_DATA_END,	/* reply after the dot [600 s] */
	SMTP_CLIENT_WAIT_QUIT,		/* QUIT's reply: close soon anyway */
};

/*
 * A reply as the callbacks see it. `text` is the text of every line after
 * "NNN " or "NNN-", with a leading enhanced status code removed, control
 * characters turned into '?', lines joined by one space, cut at
 * SMTP_CLIENT_TEXT_MAX bytes. It is valid only during the callback.
 */
struct smtp_client_reply {
	int code;		/* 200..599 */
	char enhanced[12];	/* "2.1.5"; "C.0.0" from the code if none given */
	const char *text;
	bool local;		/* made up by the client, not said by the server */
	/*
	 * local, and the server broke the protocol: a line that is no reply,
	 * a reply nothing asked for (extra lines after the greeting or after
	 * a reply), a line over SMTP_CLIENT_LINE_MAX, too many lines, mixed
	 * codes in one reply. A peer that does this is broken, not busy.
	 */
	bool protocol_error;
};

/*
 * How the message body is declared at MAIL (RFC 6152 BODY=8BITMIME; RFC
 * 3030 BINARYMIME). proto/ knows nothing of the queue: deliver/ ties these
 * values to the queue's enum queue_body with static_asserts, where both are
 * visible.
 */
enum smtp_body {
	SMTP_BODY_7BIT = 0,	/* plain ASCII (or BODY=7BIT) */
	SMTP_BODY_8BITMIME = 1,
	SMTP_BODY_BINARYMIME = 2,
};

/* The message to send; see smtp_client_send() for how long it must live. */
struct smtp_client_msg {
	const char *sender;		/* "" for the null sender <> */
	const char *const *rcpt;	/* nrcpt addresses, no brackets */
	uint32_t nrcpt;			/* 1..SMTP_CLIENT_RCPT_MAX */
	const char *data;		/* headers and body, CRLF lines, not */
	size_t len;			/*   dot-stuffed, no final "." line */
	uint8_t body;			/* enum smtp_body */
	bool smtputf8;			/* needs SMTPUTF8 */
	uint64_t size;			/* for SIZE=; 0 means len */
};

/* Counts of a finished message's recipients by the class of their result. */
struct smtp_client_tally {
	uint32_t delivered;	/* 2xx */
	uint32_t deferred;	/* 4xx */
	uint32_t bounced;	/* 5xx */
};

/*
 * Set by the engine; `arg` is passed back as the first argument. All but
 * state_change are required.
 */
struct smtp_client_cb {
	void (*ready)(void *arg);
	void (*rcpt_done)(void *arg, uint32_t index,
	    const struct smtp_client_reply *r);
	/*
	 * r: the reply that ended the transaction: the final dot's (SMTP),
	 * the last recipient's (LMTP), DATA's if refused, MAIL's if refused,
	 * the last RCPT refusal if no recipient was accepted, the local
	 * refusal, or the session failure.
	 */
	void (*message_done)(void *arg, const struct smtp_client_reply *r,
	    const struct smtp_client_tally *t);
	void (*failed)(void *arg, enum smtp_client_stage stage,
	    const struct smtp_client_reply *r);
	void (*state_change)(void *arg, enum smtp_client_state from,
	    enum smtp_client_state to);
};

/* The reply being read, line by line. */
struct smtp_client_rd {
	int code;		/* of the first line; 0 before it */
	uint32_t lines;
	uint32_t text_len;
	char enhanced[12];	/* from the first line, "" if none */
	char text[SMTP_CLIENT_TEXT_MAX + 1];
};

struct smtp_client {
	const struct smtp_client_cfg *cfg;
	const struct smtp_client_cb *cb;
	void *arg;
	enum smtp_client_state state;
	struct buf in;		/* a partial reply line */
	struct buf out;		/* bytes for the engine to send */

	/* What the server offers; valid from READY on. */
	uint32_t ext;		/* enum smtp_client_ext bits */
	uint32_t auth_mechs;	/* enum smtp_client_auth_mech bits */
	uint64_t size_max;	/* SIZE limit; 0: none announced */
	uint32_t ext_pending;	/* collected while reading the EHLO reply */
	uint32_t mechs_pending;
	uint64_t size_pending;
	bool esmtp;		/* EHLO/LHLO succeeded (not HELO) */
	bool tls;		/* the session is encrypted (tls_done) */
	uint8_t starttls;	/* enum smtp_client_starttls, this session */
	bool out_err;		/* an append to out failed: session ends */
	size_t out_allow;	/* message bytes c->out may hold on top */
	uint8_t auth_step;

	struct smtp_client_rd rd;

	/* The transaction under way (in_tx). */
	bool in_tx;
	bool send_done;		/* no more commands for this transaction */
	bool mail_failed;	/* MAIL refused: replies after it are moot */
	bool dot_discard;	/* "." sent with no recipient accepted */
	bool bdat;		/* this transaction ends with BDAT LAST */
	struct smtp_client_msg msg;
	uint32_t send_idx;	/* next command: 0 MAIL, 1..n RCPT, n+1 DATA
				 * (or BDAT with the message) */
	uint32_t recv_idx;	/* next reply, same numbering */
	uint32_t naccepted;	/* 2xx at RCPT */
	uint32_t ndone;		/* recipients with rcpt_done fired */
	uint32_t lmtp_next;	/* LMTP: next recipient index to scan */
	struct smtp_client_tally tally;
	struct buf rstat;	/* one byte per recipient */
	/* Why a transaction ended without DATA: MAIL's or the last RCPT's. */
	int tx_code;
	bool tx_local;
	char tx_enhanced[12];
	char tx_text[SMTP_CLIENT_TEXT_MAX + 1];

	/*
	 * Transactions sent behind the one above (pipelined, all of their
	 * commands on the wire, no reply to them read yet), oldest first
	 * from pend_head. The one above is always the oldest in flight:
	 * the callbacks are about it.
	 */
	struct smtp_client_msg pend[SMTP_CLIENT_DEPTH_MAX - 1];
	uint8_t npend, pend_head;
	uint32_t pend_cmds;	/* commands of the pending ones */
	/*
	 * The transaction was pipelined behind one that failed and could
	 * not be followed by RSET: a refusal of its MAIL may be the
	 * server's leftover state, not a verdict on this message.
	 */
	bool after_fail;

	uint64_t messages;	/* transactions finished on this connection */
	/*
	 * Whole replies taken so far. The engine restarts its reply timer
	 * when this changes (a new reply is awaited), not when bytes arrive:
	 * a reply must be complete within its timeout, however slowly it
	 * trickles in.
	 */
	uint64_t replies;
};

/*
 * Start a session on a fresh connection: the client waits for the
 * greeting. c's buffers keep their allocations when c is reused (zero it
 * before first use).
 */
void smtp_client_init(struct smtp_client *c, const struct smtp_client_cfg *cfg,
    const struct smtp_client_cb *cb, void *arg);
/* Release the buffers. Fires no callbacks: call smtp_client_eof() first. */
void smtp_client_free(struct smtp_client *c);

enum smtp_client_event {
	SMTP_CLIENT_EV_NONE = 0,	/* send c->out, keep reading */
	SMTP_CLIENT_EV_CLOSE,		/* send c->out (maybe a QUIT), close */
	SMTP_CLIENT_EV_STARTTLS,	/* 220 to STARTTLS: run the handshake */
};

/*
 * This session only, before the greeting: lower (or raise) what
 * cfg->starttls asks, e.g. plaintext again to a host whose handshake
 * failed under "may".
 */
void smtp_client_set_starttls(struct smtp_client *c,
    enum smtp_client_starttls s);

/*
 * The handshake the engine ran is over: after SMTP_CLIENT_EV_STARTTLS,
 * the client forgets what the server offered and says EHLO (LHLO) again
 * (RFC 3207 4.2); before the greeting (implicit TLS) it only records that
 * the session is encrypted.
 */
void smtp_client_tls_done(struct smtp_client *c);

/*
 * The handshake failed (why: the TLS layer's reason): every open
 * recipient and the session fail at SMTP_CLIENT_STAGE_TLS with
 * 454 4.7.5 "TLS handshake failed: why". The connection cannot be used
 * further: close it.
 */
void smtp_client_tls_failed(struct smtp_client *c, const char *why);

/*
 * Feed bytes received from the server (any split). Fires callbacks.
 * Returns SMTP_CLIENT_EV_CLOSE once the session is over (QUIT answered, or
 * failed); input after that is ignored. Returns SMTP_CLIENT_EV_STARTTLS
 * while the client waits for the engine's handshake (after the 220 to
 * STARTTLS); plaintext input then is ignored too.
 */
enum smtp_client_event smtp_client_input(struct smtp_client *c,
    const char *p, size_t n);

/*
 * Start a transaction; only when smtp_client_ready(c) or
 * smtp_client_can_pipeline(c). The struct is
 * copied, but the strings, the rcpt array and the data must stay valid
 * until message_done fires. Returns:
 *   0        under way: callbacks follow as replies arrive (or, if the
 *            commands could not be appended for lack of memory, the
 *            session has already failed: rcpt_done, message_done and
 *            failed have fired);
 *   1        refused locally (SIZE above the server's limit: 552 5.3.4;
 *            SMTPUTF8 needed and not offered: 550 5.6.7): rcpt_done and
 *            message_done have fired before the return, nothing was sent,
 *            the client is still ready and `ready` does not fire again;
 *   -EINVAL  bad message: nrcpt 0 or above SMTP_CLIENT_RCPT_MAX, an empty
 *            recipient, or an address longer than SMTP_CLIENT_ADDR_MAX or
 *            with a control character, '<' or '>' (it would end the
 *            command early: no command injection through addresses);
 *   -ENOMEM  no memory.
 * On a negative return no callback fired and nothing changed.
 */
int smtp_client_send(struct smtp_client *c, const struct smtp_client_msg *msg);

/*
 * Whether smtp_client_send() may start another transaction now, before
 * the replies to the one under way: cfg->pipeline_depth allows it, the
 * transaction under way went out with BDAT and whole, and its MAIL was
 * not refused. Such a send puts MAIL, the RCPTs and BDAT LAST with the
 * message behind it in c->out (RFC 2920, RFC 3030); its replies are read
 * after the earlier transactions'. Callbacks keep coming in order: each
 * rcpt_done/message_done is about the oldest transaction in flight. A
 * pipelined send fires callbacks only when it returns 1 (refused
 * locally, about the message it was given); it may also return -EAGAIN
 * (too many commands in flight for this message now: send it when
 * ready). When the transaction before a pipelined one needed a reset
 * (RSET could not go between them), a refusal of the pipelined MAIL
 * defers its recipients (4xx) instead of bouncing them.
 */
bool smtp_client_can_pipeline(const struct smtp_client *c);

/*
 * Send QUIT when ready; a no-op when QUIT is out already or the session
 * is over. The engine closes after smtp_client_input() returns
 * SMTP_CLIENT_EV_CLOSE or after a short timeout.
 */
void smtp_client_quit(struct smtp_client *c);

/*
 * The connection was closed or lost: every open recipient gets 451 4.4.2
 * "connection lost", then message_done, then failed (nothing fires when
 * the session was already over or only QUIT's reply was missing).
 */
void smtp_client_eof(struct smtp_client *c);

/* The engine's timer for smtp_client_waiting() fired: as eof, with a text
 * saying what the client was waiting for. */
void smtp_client_timeout(struct smtp_client *c);

enum smtp_client_wait smtp_client_waiting(const struct smtp_client *c);

static inline bool
smtp_client_ready(const struct smtp_client *c)
{
	return c->state == SMTP_C_READY;
}

static inline bool
smtp_client_closed(const struct smtp_client *c)
{
	return c->state == SMTP_C_CLOSED;
}

#endif
