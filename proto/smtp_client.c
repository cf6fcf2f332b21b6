/*
 * smtp_client.c - the outbound SMTP/LMTP client; see smtp_client.h.
 *
 * Replies are read line by line into c->rd (bounded: SMTP_CLIENT_LINE_MAX
 * per line, SMTP_CLIENT_REPLY_LINES_MAX lines, one code per reply); a
 * complete reply goes to handle_reply(), which switches on the receive
 * state. Anything that does not parse is a protocol error: the session
 * fails with 451 4.5.0, because a client that has lost track of which
 * reply answers which command must not guess.
 *
 * Sending and receiving a transaction (RFC 2920, after Postfix's
 * smtp_loop): the commands of one message are numbered 0 = MAIL,
 * 1..n = RCPT to recipient 0..n-1, n+1 = DATA. c->send_idx is the sender's
 * cursor (the next command to write) and c->recv_idx the receiver's (the
 * command the next reply answers); the receive state (MAIL, RCPT, DATA)
 * follows recv_idx and is what the engine sees. pump() moves the sender:
 * without PIPELINING it writes a command only when nothing is outstanding
 * (send_idx == recv_idx), so the dialogue is lock-step; with PIPELINING it
 * writes until SMTP_CLIENT_PIPE_MAX commands are outstanding, which for
 * any ordinary message means MAIL, every RCPT and DATA leave in one write.
 * After each reply the receiver records the result and calls pump() again.
 * The sender stops early (send_done) when MAIL was refused, and does not
 * send DATA when every recipient has been answered and none accepted.
 * Once everything sent has been answered and nothing more will be sent,
 * the transaction ends (with RSET). With pipelining DATA may already be
 * out when the last RCPT is refused; its 354 is then answered with a lone
 * "." (RFC 2920 section 3.1) and the reply to that is not a delivery.
 * The message data and the final dot are never pipelined with anything.
 * With BDAT (cfg->chunking, and the server offers CHUNKING and PIPELINING)
 * command n+1 is "BDAT <size> LAST" followed by the message itself, so a
 * whole transaction leaves in one write and its replies come back in
 * one; the BDAT reply is then what the final dot's would be.
 *
 * Several transactions (cfg->pipeline_depth): once a BDAT transaction is
 * whole on the wire, smtp_client_send() may put the next one behind it
 * (send_pipelined()). Its message waits in c->pend[] until the one under
 * way is finished; finish_tx() then makes it current (start_tx()) with
 * every command already counted as sent, and its replies are read as any.
 * No RSET can go between the two: after_fail marks a transaction that
 * followed a failed one, whose MAIL refusal then defers rather than
 * bounces (the server may have kept the failed transaction's state).
 *
 * Every receive-state change goes through smtpc_enter_state(). Commands go
 * through smtpc_emit(), which keeps c->out under SMTP_CLIENT_OUT_CMD_MAX plus
 * the last message appended (which the engine may not have sent yet); a
 * failure there is sticky (out_err) and ends the session at the next
 * smtpc_check_out(). The window makes the limit a backstop: a full window of
 * the longest commands fits (static_assert below).
 */
#include "smtp_client.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "../lib/log.h"
#include "smtp_client_int.h"
#include "smtp_parse.h"

static_assert(SMTP_CLIENT_RCPT_MAX <= UINT32_MAX - 2, "command numbering");
static_assert(SMTP_CLIENT_PIPE_MAX >= 2, "a window holds MAIL and a RCPT");
static_assert((size_t)SMTP_CLIENT_PIPE_MAX * (SMTP_CLIENT_ADDR_MAX + 64) <=
    SMTP_CLIENT_OUT_CMD_MAX, "a full pipelining window fits the output");
static_assert(SMTP_CLIENT_LINE_MAX >= 512, "RFC 5321 4.5.3.1.5");

/* Per-recipient progress in c->rstat. */
enum {
	RS_OPEN = 0,		/* no reply yet */
	RS_ACCEPTED,		/* 2xx to RCPT, waiting for the data's verdict */
	RS_DONE,		/* rcpt_done has fired */
};

static const char *const state_names[] = {
	[SMTP_C_GREETING] = "GREETING",
	[SMTP_C_EHLO] = "EHLO",
	[SMTP_C_HELO] = "HELO",
	[SMTP_C_LHLO] = "LHLO",
	[SMTP_C_STARTTLS] = "STARTTLS",
	[SMTP_C_TLS] = "TLS",
	[SMTP_C_AUTH] = "AUTH",
	[SMTP_C_READY] = "READY",
	[SMTP_C_MAIL] = "MAIL",
	[SMTP_C_RCPT] = "RCPT",
	[SMTP_C_DATA] = "DATA",
	[SMTP_C_DOT] = "DOT",
	[SMTP_C_BDAT] = "BDAT",
	[SMTP_C_RSET] = "RSET",
	[SMTP_C_QUIT] = "QUIT",
	[SMTP_C_CLOSED] = "CLOSED",
};

static const char *const stage_names[] = {
	[SMTP_CLIENT_STAGE_CONNECT] = "connect",
	[SMTP_CLIENT_STAGE_GREETING] = "greeting",
	[SMTP_CLIENT_STAGE_EHLO] = "ehlo",
	[SMTP_CLIENT_STAGE_TLS] = "tls",
	[SMTP_CLIENT_STAGE_AUTH] = "auth",
	[SMTP_CLIENT_STAGE_IDLE] = "idle",
	[SMTP_CLIENT_STAGE_MAIL] = "mail",
	[SMTP_CLIENT_STAGE_RCPT] = "rcpt",
	[SMTP_CLIENT_STAGE_DATA] = "data",
	[SMTP_CLIENT_STAGE_DOT] = "dot",
	[SMTP_CLIENT_STAGE_RSET] = "rset",
	[SMTP_CLIENT_STAGE_QUIT] = "quit",
	[SMTP_CLIENT_STAGE_BDAT] = "bdat",
};

const char *
smtp_client_strstate(enum smtp_client_state st)
{
	if ((unsigned)st < sizeof(state_names) / sizeof(state_names[0]))
		return state_names[st];
	return "?";
}

const char *
smtp_client_strstage(enum smtp_client_stage stage)
{
	if ((unsigned)stage < sizeof(stage_names) / sizeof(stage_names[0]))
		return stage_names[stage];
	return "?";
}

void
smtpc_enter_state(struct smtp_client *c, enum smtp_client_state st)
{
	enum smtp_client_state from = c->state;

	assert((unsigned)st <= SMTP_C_CLOSED);
	/* Nothing leaves CLOSED: the engine closes the connection. */
	assert(from != SMTP_C_CLOSED || st == SMTP_C_CLOSED);
	c->state = st;
	if (from != st && c->cb->state_change != NULL)
		c->cb->state_change(c->arg, from, st);
}

static enum smtp_client_stage
stage_of(enum smtp_client_state st)
{
	switch (st) {
	case SMTP_C_GREETING:
		return SMTP_CLIENT_STAGE_GREETING;
	case SMTP_C_EHLO:
	case SMTP_C_HELO:
	case SMTP_C_LHLO:
		return SMTP_CLIENT_STAGE_EHLO;
	case SMTP_C_STARTTLS:
	case SMTP_C_TLS:
		return SMTP_CLIENT_STAGE_TLS;
	case SMTP_C_AUTH:
		return SMTP_CLIENT_STAGE_AUTH;
	case SMTP_C_READY:
		return SMTP_CLIENT_STAGE_IDLE;
	case SMTP_C_MAIL:
		return SMTP_CLIENT_STAGE_MAIL;
	case SMTP_C_RCPT:
		return SMTP_CLIENT_STAGE_RCPT;
	case SMTP_C_DATA:
		return SMTP_CLIENT_STAGE_DATA;
	case SMTP_C_DOT:
		return SMTP_CLIENT_STAGE_DOT;
	case SMTP_C_BDAT:
		return SMTP_CLIENT_STAGE_BDAT;
	case SMTP_C_RSET:
		return SMTP_CLIENT_STAGE_RSET;
	case SMTP_C_QUIT:
	case SMTP_C_CLOSED:
		return SMTP_CLIENT_STAGE_QUIT;
	default:
		log_panic("bad client state %d", (int)st);
	}
}

/* What a reply in state st answers, for error texts. */
static const char *
what_for(enum smtp_client_state st)
{
	switch (st) {
	case SMTP_C_GREETING:
		return "the server greeting";
	case SMTP_C_EHLO:
		return "EHLO";
	case SMTP_C_HELO:
		return "HELO";
	case SMTP_C_LHLO:
		return "LHLO";
	case SMTP_C_STARTTLS:
		return "STARTTLS";
	case SMTP_C_TLS:
		return "the TLS handshake";
	case SMTP_C_AUTH:
		return "AUTH";
	case SMTP_C_READY:
		return "no command (idle)";
	case SMTP_C_MAIL:
		return "MAIL FROM";
	case SMTP_C_RCPT:
		return "RCPT TO";
	case SMTP_C_DATA:
		return "DATA";
	case SMTP_C_DOT:
		return "end of data";
	case SMTP_C_BDAT:
		return "BDAT";
	case SMTP_C_RSET:
		return "RSET";
	case SMTP_C_QUIT:
	case SMTP_C_CLOSED:
		return "QUIT";
	default:
		log_panic("bad client state %d", (int)st);
	}
}

/* ---- output ----------------------------------------------------------- */

bool
smtpc_emit(struct smtp_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Append a command. On failure (no memory, or the command bytes would pass
 * SMTP_CLIENT_OUT_CMD_MAX) nothing is appended and out_err is set; the
 * caller carries on as if it were sent and smtpc_check_out() ends the session.
 */
static bool
emitted(struct smtp_client *c, size_t before, int rc)
{
	if (rc < 0 || c->out.len > SMTP_CLIENT_OUT_CMD_MAX + c->out_allow) {
		c->out.len = before;
		c->out_err = true;
		return false;
	}
	return true;
}

bool
smtpc_emit(struct smtp_client *c, const char *fmt, ...)
{
	size_t before = c->out.len;
	va_list ap;
	int rc;

	if (c->out_err)
		return false;
	va_start(ap, fmt);
	rc = buf_vprintf(&c->out, fmt, ap);
	va_end(ap);
	return emitted(c, before, rc);
}

/* Every message's MAIL, RCPT and BDAT come this way. */
bool
smtpc_emit_all(struct smtp_client *c, const char *const *parts, size_t n)
{
	size_t before = c->out.len;

	if (c->out_err)
		return false;
	return emitted(c, before, buf_puts_all(&c->out, parts, n));
}

/* ---- replies ------------------------------------------------------------ */

/* "C.0.0" from the reply code's class, for servers without RFC 2034. */
static void
derive_enhanced(int code, char out[12])
{
	assert(code >= 200 && code <= 599);
	out[0] = (char)('0' + code / 100);
	memcpy(out + 1, ".0.0", 5);
}

void
smtpc_local_reply(struct smtp_client_reply *r, int code, const char *enhanced,
    const char *text)
{
	r->code = code;
	snprintf(r->enhanced, sizeof(r->enhanced), "%s", enhanced);
	r->text = text;
	r->local = true;
	r->protocol_error = false;
}

static void
reply_from_rd(struct smtp_client *c, struct smtp_client_reply *r)
{
	r->code = c->rd.code;
	if (c->rd.enhanced[0] != '\0')
		memcpy(r->enhanced, c->rd.enhanced, sizeof(r->enhanced));
	else
		derive_enhanced(c->rd.code, r->enhanced);
	c->rd.text[c->rd.text_len] = '\0';
	r->text = c->rd.text;
	r->local = false;
	r->protocol_error = false;
}

static void
rd_reset(struct smtp_client_rd *rd)
{
	rd->code = 0;
	rd->lines = 0;
	rd->text_len = 0;
	rd->enhanced[0] = '\0';
	rd->text[0] = '\0';
}

/* Copy printable text, control characters as '?', at most n bytes. */
size_t
smtpc_sanitize(char *dst, size_t cap, const char *src, size_t n)
{
	size_t i;

	if (n > cap)
		n = cap;
	for (i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)src[i];
		dst[i] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
	}
	return n;
}

/*
 * An enhanced status code (RFC 3463, "class.subject.detail") at the start
 * of t, whose class matches the reply code: its length, else 0.
 */
static size_t
enhanced_len(const char *t, size_t n, int code)
{
	size_t i = 2, d;
	int part;

	if (n < 5 || t[0] != '0' + code / 100 || t[1] != '.')
		return 0;
	for (part = 0; part < 2; part++) {
		for (d = 0; i < n && d < 3 && t[i] >= '0' && t[i] <= '9'; d++)
			i++;
		if (d == 0)
			return 0;
		if (part == 0) {
			if (i >= n || t[i] != '.')
				return 0;
			i++;
		}
	}
	if (i < n && t[i] != ' ')
		return 0;
	return i;
}

/* The session cannot go on: a reply we cannot read or did not expect. */
static void
protocol_error(struct smtp_client *c, const char *why, const char *what,
    size_t what_len)
{
	char text[SMTP_CLIENT_TEXT_MAX + 1], ex[81];
	struct smtp_client_reply r;
	size_t exn;

	if (c->state == SMTP_C_QUIT) {
		/* Whatever QUIT got back, the session is over. */
		smtpc_enter_state(c, SMTP_C_CLOSED);
		buf_reset(&c->in);
		return;
	}
	exn = smtpc_sanitize(ex, sizeof(ex) - 1, what, what_len);
	ex[exn] = '\0';
	snprintf(text, sizeof(text), "protocol error: %s: \"%s\"", why, ex);
	smtpc_local_reply(&r, 451, "4.5.0", text);
	r.protocol_error = true;
	smtpc_fail_session(c, stage_of(c->state), &r, false);
}

/* A well-formed reply that makes no sense here. */
void
smtpc_unexpected(struct smtp_client *c, const struct smtp_client_reply *r)
{
	char why[64], what[SMTP_CLIENT_TEXT_MAX + 8];

	snprintf(why, sizeof(why), "unexpected reply to %s",
	    what_for(c->state));
	snprintf(what, sizeof(what), "%d %s", r->code, r->text);
	protocol_error(c, why, what, strlen(what));
}

void
smtpc_check_out(struct smtp_client *c)
{
	struct smtp_client_reply r;

	if (!c->out_err)
		return;
	c->out_err = false;
	smtpc_local_reply(&r, 451, "4.3.0", "out of memory for output");
	smtpc_fail_session(c, stage_of(c->state), &r, false);
}

/* ---- session end -------------------------------------------------------- */

/* The definite result of recipient i: exactly once per recipient. */
static void
rcpt_result(struct smtp_client *c, uint32_t i, const struct smtp_client_reply *r)
{
	int cls = r->code / 100;

	assert(c->in_tx);
	assert(i < c->msg.nrcpt);
	assert(c->rstat.data[i] != RS_DONE);
	assert(cls == 2 || cls == 4 || cls == 5);
	c->rstat.data[i] = RS_DONE;
	c->ndone++;
	if (cls == 2)
		c->tally.delivered++;
	else if (cls == 4)
		c->tally.deferred++;
	else
		c->tally.bounced++;
	c->cb->rcpt_done(c->arg, i, r);
}

/* Every recipient accepted at RCPT gets r: the verdict on the message. */
static void
accepted_result(struct smtp_client *c, const struct smtp_client_reply *r)
{
	for (uint32_t i = 0; i < c->msg.nrcpt; i++)
		if (c->rstat.data[i] == RS_ACCEPTED)
			rcpt_result(c, i, r);
}

/*
 * A message that never became the transaction under way (pipelined behind
 * it, or refused locally before it was sent) gets r for every recipient.
 */
static void
settle_msg(struct smtp_client *c, const struct smtp_client_msg *m,
    const struct smtp_client_reply *r)
{
	struct smtp_client_tally t;
	int cls = r->code / 100;

	assert(cls == 4 || cls == 5);
	memset(&t, 0, sizeof(t));
	for (uint32_t i = 0; i < m->nrcpt; i++) {
		if (cls == 4)
			t.deferred++;
		else
			t.bounced++;
		c->cb->rcpt_done(c->arg, i, r);
	}
	c->cb->message_done(c->arg, r, &t);
}

/*
 * End the session: every open recipient gets r when it is 4xx/5xx (else
 * 451 4.4.2), then message_done, then failed. quit: the stream is in step
 * and the server is not closing, so say goodbye politely.
 */
void
smtpc_fail_session(struct smtp_client *c, enum smtp_client_stage stage,
    const struct smtp_client_reply *r, bool quit)
{
	struct smtp_client_reply lost;
	const struct smtp_client_reply *rr = r;
	struct smtp_client_tally t;
	uint32_t i;

	if (c->state == SMTP_C_CLOSED)
		return;
	if (c->in_tx || c->npend > 0) {
		if (r->code / 100 != 4 && r->code / 100 != 5) {
			smtpc_local_reply(&lost, 451, "4.4.2", "connection lost");
			rr = &lost;
		}
	}
	if (c->in_tx) {
		for (i = 0; i < c->msg.nrcpt; i++)
			if (c->rstat.data[i] != RS_DONE)
				rcpt_result(c, i, rr);
		assert(c->ndone == c->msg.nrcpt);
		c->in_tx = false;
		t = c->tally;
		c->cb->message_done(c->arg, rr, &t);
	}
	/* Those pipelined behind it: in order, none of them answered. */
	while (c->npend > 0) {
		const struct smtp_client_msg *m = &c->pend[c->pend_head];

		c->pend_head = (uint8_t)((c->pend_head + 1) %
		    (SMTP_CLIENT_DEPTH_MAX - 1));
		c->npend--;
		settle_msg(c, m, rr);
	}
	c->pend_cmds = 0;
	c->out_err = false;
	if (quit)
		(void)smtpc_emit(c, "QUIT\r\n");
	c->out_err = false;
	smtpc_enter_state(c, SMTP_C_CLOSED);
	buf_reset(&c->in);
	c->cb->failed(c->arg, stage, r);
}

void
smtpc_go_ready(struct smtp_client *c)
{
	smtpc_enter_state(c, SMTP_C_READY);
	c->cb->ready(c->arg);
}

/* ---- transactions ------------------------------------------------------- */

static void
save_tx_reply(struct smtp_client *c, const struct smtp_client_reply *r)
{
	c->tx_code = r->code;
	memcpy(c->tx_enhanced, r->enhanced, sizeof(c->tx_enhanced));
	snprintf(c->tx_text, sizeof(c->tx_text), "%s", r->text);
	c->tx_local = r->local;
}

static void
tx_reply_get(struct smtp_client *c, struct smtp_client_reply *r)
{
	r->code = c->tx_code;
	memcpy(r->enhanced, c->tx_enhanced, sizeof(r->enhanced));
	r->text = c->tx_text;
	r->local = c->tx_local;
	r->protocol_error = false;
}

/*
 * The transaction is over; every recipient has its result. rset: it
 * ended before (or instead of) a real end of data, so the server may
 * still hold a half transaction.
 */
static void start_tx(struct smtp_client *c, const struct smtp_client_msg *msg);
static void enter_recv_state(struct smtp_client *c);

static void
finish_tx(struct smtp_client *c, const struct smtp_client_reply *r, bool rset)
{
	struct smtp_client_tally t = c->tally;

	assert(c->in_tx);
	assert(c->ndone == c->msg.nrcpt);
	c->in_tx = false;
	c->messages++;
	c->cb->message_done(c->arg, r, &t);
	if (c->npend > 0) {
		/*
		 * The next transaction is on the wire already, its replies
		 * are next: no RSET can go between (see after_fail).
		 */
		struct smtp_client_msg m = c->pend[c->pend_head];
		uint32_t cmds = m.nrcpt + 2;

		c->pend_head = (uint8_t)((c->pend_head + 1) %
		    (SMTP_CLIENT_DEPTH_MAX - 1));
		c->npend--;
		assert(c->pend_cmds >= cmds);
		c->pend_cmds -= cmds;
		start_tx(c, &m);
		c->bdat = true;
		c->send_idx = cmds;
		c->send_done = true;
		c->after_fail = rset;
		enter_recv_state(c);
		return;
	}
	if (rset) {
		(void)smtpc_emit(c, "RSET\r\n");
		smtpc_enter_state(c, SMTP_C_RSET);
	} else {
		smtpc_go_ready(c);
	}
}

static void
emit_mail(struct smtp_client *c, const struct smtp_client_msg *m)
{
	char size[21];
	const bool with_size = (c->ext & SMTP_CLIENT_EXT_SIZE) != 0;
	/*
	 * RFC 6152. An 8-bit message to a server without 8BITMIME goes out
	 * as it is, without BODY= (Postfix's default; nothing is converted).
	 * BINARYMIME would need BDAT for every message: declared as 8BITMIME.
	 */
	const bool body8 = m->body != SMTP_BODY_7BIT &&
	    (c->ext & SMTP_CLIENT_EXT_8BITMIME);
	const bool utf8 = m->smtputf8 && (c->ext & SMTP_CLIENT_EXT_SMTPUTF8);
	const char *parts[] = {
		"MAIL FROM:<", m->sender, ">",
		with_size ? " SIZE=" : "", "",
		body8 ? " BODY=8BITMIME" : "", utf8 ? " SMTPUTF8" : "", "\r\n",
	};

	size[sizeof(size) - 1] = '\0';
	if (with_size)
		parts[4] = dec_digits(m->size, size + sizeof(size) - 1);
	(void)smtpc_emit_all(c, parts, sizeof(parts) / sizeof(parts[0]));
}

static void
emit_rcpt(struct smtp_client *c, const char *rcpt)
{
	const char *parts[] = { "RCPT TO:<", rcpt, ">\r\n" };

	(void)smtpc_emit_all(c, parts, sizeof(parts) / sizeof(parts[0]));
}

/*
 * RFC 3030: "BDAT <size> LAST" and the message as it is, in one chunk.
 * The queue holds CRLF lines only (sluice's server refuses bare CR and
 * LF), so nothing is converted and nothing is stuffed; a last line
 * without CRLF gets one, as with DATA, so both ways deliver the same bytes.
 */
static void
append_bdat(struct smtp_client *c, const struct smtp_client_msg *m)
{
	const char *d = m->data;
	size_t len = m->len;
	bool crlf = len >= 2 && d[len - 2] == '\r' && d[len - 1] == '\n';

	char num[21];
	const char *parts[] = { "BDAT ", NULL, " LAST\r\n" };

	num[sizeof(num) - 1] = '\0';
	parts[1] = dec_digits(len + (crlf || len == 0 ? 0 : 2),
	    num + sizeof(num) - 1);
	if (!smtpc_emit_all(c, parts, sizeof(parts) / sizeof(parts[0])))
		return;
	if (buf_append(&c->out, d, len) < 0 ||
	    (!crlf && len > 0 && buf_append(&c->out, "\r\n", 2) < 0)) {
		c->out_err = true;
		return;
	}
	/*
	 * Commands after it may find it not yet sent: allow for it, and for
	 * a message pipelined before it that may not be sent either.
	 */
	c->out_allow = c->out.len;
}

/* The receive state that matches recv_idx (something is outstanding). */
static void
enter_recv_state(struct smtp_client *c)
{
	uint32_t i = c->recv_idx;

	assert(i < c->send_idx);
	smtpc_enter_state(c, i == 0 ? SMTP_C_MAIL :
	    i <= c->msg.nrcpt ? SMTP_C_RCPT :
	    c->bdat ? SMTP_C_BDAT : SMTP_C_DATA);
}

/* The sender: see the comment at the top of this file. */
static void
pump(struct smtp_client *c)
{
	uint32_t n = c->msg.nrcpt, outstanding;
	bool pipe = (c->ext & SMTP_CLIENT_EXT_PIPELINING) != 0;

	while (c->in_tx && !c->send_done) {
		assert(c->send_idx >= c->recv_idx);
		outstanding = c->send_idx - c->recv_idx;
		if (outstanding > 0 && !pipe)
			break;
		if (outstanding >= SMTP_CLIENT_PIPE_MAX)
			break;
		if (c->mail_failed) {
			c->send_done = true;
			break;
		}
		if (c->send_idx == 0) {
			emit_mail(c, &c->msg);
		} else if (c->send_idx <= n) {
			emit_rcpt(c, c->msg.rcpt[c->send_idx - 1]);
		} else {
			assert(c->send_idx == n + 1);
			c->send_done = true;
			/* Every recipient answered and none took it. */
			if (c->recv_idx > n && c->naccepted == 0)
				break;
			if (c->bdat)
				append_bdat(c, &c->msg);
			else
				(void)smtpc_emit(c, "DATA\r\n");
		}
		c->send_idx++;
	}
}

/*
 * The message after 354 (RFC 5321 4.5.2): lines that start with "." get
 * another; a last line without CRLF gets one; then ".". Bare CR and bare
 * LF (RFC 5321 2.3.8 forbids them; sluice's own server refuses them) are
 * sent as CRLF, so no "<LF>.<LF>" can pass through to the next hop.
 * Two passes: the exact size is reserved once, then the bytes copied.
 */
static bool
append_message(struct smtp_client *c)
{
	const char *d = c->msg.data;
	size_t len = c->msg.len, i, need = 0;
	bool bol = true;
	char *o;

	for (i = 0; i < len; i++) {
		if (d[i] == '\r' || d[i] == '\n') {
			if (d[i] == '\r' && i + 1 < len && d[i + 1] == '\n')
				i++;
			need += 2;
			bol = true;
			continue;
		}
		need += 1 + (bol && d[i] == '.');
		bol = false;
	}
	need += (bol ? 0 : 2) + 3;
	if (buf_reserve(&c->out, need) < 0)
		return false;
	o = c->out.data + c->out.len;
	bol = true;
	for (i = 0; i < len; i++) {
		if (d[i] == '\r' || d[i] == '\n') {
			if (d[i] == '\r' && i + 1 < len && d[i + 1] == '\n')
				i++;
			*o++ = '\r';
			*o++ = '\n';
			bol = true;
			continue;
		}
		if (bol && d[i] == '.')
			*o++ = '.';
		*o++ = d[i];
		bol = false;
	}
	if (!bol) {
		*o++ = '\r';
		*o++ = '\n';
	}
	memcpy(o, ".\r\n", 3);
	o += 3;
	assert((size_t)(o - (c->out.data + c->out.len)) == need);
	c->out.len += need;
	/* Commands after it may find it not yet sent: allow for it. */
	c->out_allow = need;
	return true;
}

static void
data_reply(struct smtp_client *c, const struct smtp_client_reply *r)
{
	struct smtp_client_reply saved;
	int cls = r->code / 100;

	if (r->code == 354) {
		if (c->naccepted > 0) {
			assert(!c->mail_failed);
			if (!append_message(c))
				c->out_err = true;
			smtpc_enter_state(c, SMTP_C_DOT);
			return;
		}
		if (c->cfg->lmtp) {
			/* RFC 2033 4.2: DATA MUST fail without recipients,
			 * and there would be no reply to count after the dot. */
			smtpc_unexpected(c, r);
			return;
		}
		/* RFC 2920 3.1: an empty message, whose reply means nothing. */
		(void)smtpc_emit(c, ".\r\n");
		c->dot_discard = true;
		smtpc_enter_state(c, SMTP_C_DOT);
		return;
	}
	if (cls != 4 && cls != 5) {
		smtpc_unexpected(c, r);
		return;
	}
	if (c->naccepted > 0) {
		accepted_result(c, r);
		finish_tx(c, r, true);
		return;
	}
	tx_reply_get(c, &saved);
	finish_tx(c, &saved, true);
}

/*
 * The reply to BDAT LAST: the verdict on the message for every accepted
 * recipient, as the reply after the final dot. Without an accepted
 * recipient the server could only refuse it (RFC 3030 section 3: the
 * chunk is read and discarded), and the recipients already have their
 * results. After a refusal the transaction state is the server's guess:
 * RSET.
 */
static void
bdat_reply(struct smtp_client *c, const struct smtp_client_reply *r)
{
	struct smtp_client_reply saved;
	int cls = r->code / 100;

	if (cls != 2 && cls != 4 && cls != 5) {
		smtpc_unexpected(c, r);
		return;
	}
	if (c->naccepted > 0) {
		assert(!c->mail_failed);
		accepted_result(c, r);
		finish_tx(c, r, cls != 2);
		return;
	}
	tx_reply_get(c, &saved);
	finish_tx(c, &saved, true);
}

/* A reply to MAIL, RCPT, DATA or BDAT. */
static void
tx_reply(struct smtp_client *c, const struct smtp_client_reply *r)
{
	uint32_t idx = c->recv_idx, n = c->msg.nrcpt, i;
	struct smtp_client_reply saved, after;
	char after_text[SMTP_CLIENT_TEXT_MAX + 1];
	int cls = r->code / 100;

	assert(idx < c->send_idx);
	if (idx == n + 1) {
		c->recv_idx++;
		if (c->bdat)
			bdat_reply(c, r);
		else
			data_reply(c, r);
		return;
	}
	if (cls != 2 && cls != 4 && cls != 5 && !c->mail_failed) {
		smtpc_unexpected(c, r);
		return;
	}
	c->recv_idx++;
	if (idx == 0 && cls != 2 && c->after_fail) {
		/*
		 * Pipelined behind a transaction that failed, with no RSET
		 * between: the refusal may be about the server's leftover
		 * state ("nested MAIL command"), not this message. Defer.
		 */
		snprintf(after_text, sizeof(after_text), "MAIL FROM pipelined "
		    "after a failed transaction got %d %s %s", r->code,
		    r->enhanced, r->text);
		smtpc_local_reply(&after, 451, "4.5.0", after_text);
		r = &after;
		cls = 4;
	}
	if (idx == 0) {
		if (cls != 2) {
			/* Every recipient gets MAIL's reply; what the
			 * pipelined RCPTs get back no longer matters. */
			c->mail_failed = true;
			save_tx_reply(c, r);
			for (i = 0; i < n; i++)
				rcpt_result(c, i, r);
		}
	} else if (!c->mail_failed) {
		i = idx - 1;
		if (cls == 2) {
			c->rstat.data[i] = RS_ACCEPTED;
			c->naccepted++;
		} else {
			/* RFC 5321 4.5.3.1.10: a 452 here ("too many
			 * recipients") is a 4xx like any other: retry later. */
			save_tx_reply(c, r);
			rcpt_result(c, i, r);
		}
	}
	pump(c);
	if (c->send_done && c->recv_idx == c->send_idx) {
		/* Everything answered, DATA not sent: nobody to send to. */
		tx_reply_get(c, &saved);
		finish_tx(c, &saved, true);
		return;
	}
	enter_recv_state(c);
}

/* The reply (SMTP) or one of the replies (LMTP) after the final dot. */
static void
dot_reply(struct smtp_client *c, const struct smtp_client_reply *r)
{
	struct smtp_client_reply saved;
	int cls = r->code / 100;
	uint32_t i, n = c->msg.nrcpt;

	if (cls != 2 && cls != 4 && cls != 5) {
		smtpc_unexpected(c, r);
		return;
	}
	if (c->dot_discard) {
		tx_reply_get(c, &saved);
		finish_tx(c, &saved, true);
		return;
	}
	if (!c->cfg->lmtp) {
		accepted_result(c, r);
		finish_tx(c, r, false);
		return;
	}
	/* RFC 2033 4.2: one reply per accepted RCPT, in RCPT order. */
	for (i = c->lmtp_next; i < n && c->rstat.data[i] != RS_ACCEPTED; i++)
		;
	assert(i < n);
	c->lmtp_next = i + 1;
	rcpt_result(c, i, r);
	if (c->ndone == n)
		finish_tx(c, r, false);
}

/* ---- reply dispatch ------------------------------------------------------ */

static void
handle_reply(struct smtp_client *c)
{
	struct smtp_client_reply r;
	int cls;

	reply_from_rd(c, &r);
	cls = r.code / 100;
	if (c->state == SMTP_C_QUIT) {
		/* Whatever QUIT got back, the session is over. */
		smtpc_enter_state(c, SMTP_C_CLOSED);
		buf_reset(&c->in);
		return;
	}
	if (r.code == 421) {
		/* RFC 5321 3.8: the server is closing, whatever we asked. */
		smtpc_fail_session(c, stage_of(c->state), &r, false);
		return;
	}
	switch (c->state) {
	case SMTP_C_GREETING:
		if (cls == 2)
			smtpc_send_hello(c, c->cfg->lmtp ? "LHLO" : "EHLO",
			    c->cfg->lmtp ? SMTP_C_LHLO : SMTP_C_EHLO);
		else if (cls == 4 || cls == 5)
			/* RFC 5321 3.1: after a 554 greeting, QUIT. */
			smtpc_fail_session(c, SMTP_CLIENT_STAGE_GREETING, &r, true);
		else
			smtpc_unexpected(c, &r);
		break;
	case SMTP_C_EHLO:
		if (cls == 2)
			smtpc_hello_done(c, true);
		else if (cls == 5)
			/* RFC 5321 4.1.4: a server without EHLO says 500/502. */
			smtpc_send_hello(c, "HELO", SMTP_C_HELO);
		else if (cls == 4)
			smtpc_fail_session(c, SMTP_CLIENT_STAGE_EHLO, &r, true);
		else
			smtpc_unexpected(c, &r);
		break;
	case SMTP_C_HELO:
	case SMTP_C_LHLO:
		if (cls == 2)
			smtpc_hello_done(c, c->state == SMTP_C_LHLO);
		else if (cls == 4 || cls == 5)
			smtpc_fail_session(c, SMTP_CLIENT_STAGE_EHLO, &r, true);
		else
			smtpc_unexpected(c, &r);
		break;
	case SMTP_C_STARTTLS:
		smtpc_starttls_reply(c, &r);
		break;
	case SMTP_C_AUTH:
		smtpc_auth_reply(c, &r);
		break;
	case SMTP_C_READY:
		/* Nothing was asked: only a server giving up talks now. */
		if (cls == 4 || cls == 5)
			smtpc_fail_session(c, SMTP_CLIENT_STAGE_IDLE, &r, false);
		else
			smtpc_unexpected(c, &r);
		break;
	case SMTP_C_MAIL:
	case SMTP_C_RCPT:
	case SMTP_C_DATA:
	case SMTP_C_BDAT:
		tx_reply(c, &r);
		break;
	case SMTP_C_DOT:
		dot_reply(c, &r);
		break;
	case SMTP_C_RSET:
		if (cls == 2)
			smtpc_go_ready(c);
		else if (cls == 4 || cls == 5)
			smtpc_fail_session(c, SMTP_CLIENT_STAGE_RSET, &r, true);
		else
			smtpc_unexpected(c, &r);
		break;
	default:
		log_panic("bad client state %d", (int)c->state);
	}
}

/*
 * One reply line, without its LF (a CR before it is dropped): "NNN-text"
 * continues a reply, "NNN text" or "NNN" ends it (RFC 5321 4.2.1).
 */
static void
read_line(struct smtp_client *c, const char *line, size_t len)
{
	struct smtp_client_rd *rd = &c->rd;
	const char *t;
	size_t tn, el, room;
	int code;
	bool last;

	if (len > 0 && line[len - 1] == '\r')
		len--;
	if (len < 3 || line[0] < '2' || line[0] > '5' ||
	    line[1] < '0' || line[1] > '9' || line[2] < '0' || line[2] > '9' ||
	    (len > 3 && line[3] != ' ' && line[3] != '-')) {
		protocol_error(c, "malformed reply", line, len);
		return;
	}
	code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	last = len == 3 || line[3] == ' ';
	if (rd->lines == 0) {
		rd->code = code;
	} else if (code != rd->code) {
		protocol_error(c, "mixed codes in a multi-line reply", line,
		    len);
		return;
	}
	if (++rd->lines > SMTP_CLIENT_REPLY_LINES_MAX) {
		protocol_error(c, "too many lines in a reply", line, len);
		return;
	}
	t = len > 4 ? line + 4 : line + len;
	tn = len > 4 ? len - 4 : 0;
	if (rd->lines > 1 && code / 100 == 2 &&
	    (c->state == SMTP_C_EHLO || c->state == SMTP_C_LHLO))
		smtpc_ehlo_keyword(c, t, tn);
	if ((el = enhanced_len(t, tn, code)) > 0) {
		if (rd->lines == 1) {
			memcpy(rd->enhanced, t, el);
			rd->enhanced[el] = '\0';
		}
		t += el;
		tn -= el;
		while (tn > 0 && *t == ' ') {
			t++;
			tn--;
		}
	}
	room = SMTP_CLIENT_TEXT_MAX - rd->text_len;
	if (tn > 0 && rd->text_len > 0 && room > 0) {
		rd->text[rd->text_len++] = ' ';
		room--;
	}
	rd->text_len += (uint32_t)smtpc_sanitize(rd->text + rd->text_len, room, t, tn);
	if (last) {
		c->replies++;
		handle_reply(c);
		rd_reset(rd);
		smtpc_check_out(c);
	}
}

/* ---- API ----------------------------------------------------------------- */

void
smtp_client_init(struct smtp_client *c, const struct smtp_client_cfg *cfg,
    const struct smtp_client_cb *cb, void *arg)
{
	struct buf in = c->in, out = c->out, rstat = c->rstat;

	assert(cfg != NULL && cfg->helo_name != NULL);
	assert(cb->ready != NULL && cb->rcpt_done != NULL);
	assert(cb->message_done != NULL && cb->failed != NULL);
	/* Keep the buffers' allocations across connections in the same slot. */
	memset(c, 0, sizeof(*c));
	c->in = in;
	c->out = out;
	c->rstat = rstat;
	buf_reset(&c->in);
	buf_reset(&c->out);
	buf_reset(&c->rstat);
	c->cfg = cfg;
	c->cb = cb;
	c->arg = arg;
	c->state = SMTP_C_GREETING;
	c->starttls = cfg->starttls;
	rd_reset(&c->rd);
}

void
smtp_client_free(struct smtp_client *c)
{
	buf_free(&c->in);
	buf_free(&c->out);
	buf_free(&c->rstat);
}

/* The line so far (kept part, then p[0..n)) is over the limit. */
static void
too_long(struct smtp_client *c, const char *p, size_t n)
{
	char ex[80];
	size_t k = c->in.len < sizeof(ex) ? c->in.len : sizeof(ex);

	if (k > 0)
		memcpy(ex, c->in.data, k);
	if (n > sizeof(ex) - k)
		n = sizeof(ex) - k;
	memcpy(ex + k, p, n);
	protocol_error(c, "reply line too long", ex, k + n);
}

enum smtp_client_event
smtp_client_input(struct smtp_client *c, const char *p, size_t n)
{
	const char *lf;
	size_t off = 0, seg;

	while (off < n && c->state != SMTP_C_CLOSED && c->state != SMTP_C_TLS) {
		lf = memchr(p + off, '\n', n - off);
		if (lf == NULL) {
			/* Keep the partial line, within the line limit. */
			if (c->in.len + (n - off) >= SMTP_CLIENT_LINE_MAX) {
				too_long(c, p + off, n - off);
				break;
			}
			if (buf_append(&c->in, p + off, n - off) < 0) {
				c->out_err = true;
				smtpc_check_out(c);
			}
			break;
		}
		seg = (size_t)(lf - (p + off));
		if (c->in.len + seg + 1 > SMTP_CLIENT_LINE_MAX) {
			too_long(c, p + off, seg);
			break;
		}
		if (c->in.len > 0) {
			if (buf_append(&c->in, p + off, seg) < 0) {
				c->out_err = true;
				smtpc_check_out(c);
				break;
			}
			read_line(c, c->in.data, c->in.len);
			buf_reset(&c->in);
		} else {
			read_line(c, p + off, seg);
		}
		off += seg + 1;
	}
	if (c->state == SMTP_C_TLS)
		return SMTP_CLIENT_EV_STARTTLS;
	return c->state == SMTP_C_CLOSED ? SMTP_CLIENT_EV_CLOSE :
	    SMTP_CLIENT_EV_NONE;
}


static bool
addr_ok(const char *a)
{
	size_t i;

	for (i = 0; a[i] != '\0'; i++) {
		unsigned char ch = (unsigned char)a[i];
		if (i >= SMTP_CLIENT_ADDR_MAX || ch < 0x20 || ch == 0x7f ||
		    ch == '<' || ch == '>')
			return false;
	}
	return true;
}

/* Refused before MAIL: every recipient gets r, nothing is sent. */
static int
refuse_local(struct smtp_client *c, int code, const char *enhanced,
    const char *text)
{
	struct smtp_client_reply r;
	struct smtp_client_tally t;
	uint32_t i;

	smtpc_local_reply(&r, code, enhanced, text);
	for (i = 0; i < c->msg.nrcpt; i++)
		rcpt_result(c, i, &r);
	c->in_tx = false;
	t = c->tally;
	c->cb->message_done(c->arg, &r, &t);
	return 1;
}

static bool
msg_ok(const struct smtp_client_msg *msg)
{
	if (msg->nrcpt == 0 || msg->nrcpt > SMTP_CLIENT_RCPT_MAX ||
	    msg->sender == NULL || !addr_ok(msg->sender))
		return false;
	for (uint32_t i = 0; i < msg->nrcpt; i++)
		if (msg->rcpt[i] == NULL || msg->rcpt[i][0] == '\0' ||
		    !addr_ok(msg->rcpt[i]))
			return false;
	return true;
}

/*
 * Why msg cannot go to this server at all (written to text), or NULL:
 * RFC 1870 6, do not send what the server said it will not take; RFC 6531
 * 3.4, no downgrade.
 */
static const char *
local_refusal(const struct smtp_client *c, const struct smtp_client_msg *m,
    char *text, size_t cap, int *code)
{
	uint64_t size = m->size != 0 ? m->size : m->len;

	if ((c->ext & SMTP_CLIENT_EXT_SIZE) && c->size_max > 0 &&
	    size > c->size_max) {
		snprintf(text, cap, "message size %llu exceeds size limit "
		    "%llu of the remote host", (unsigned long long)size,
		    (unsigned long long)c->size_max);
		*code = 552;
		return "5.3.4";
	}
	if (m->smtputf8 && !(c->ext & SMTP_CLIENT_EXT_SMTPUTF8)) {
		snprintf(text, cap, "SMTPUTF8 is required but not supported "
		    "by the remote host");
		*code = 550;
		return "5.6.7";
	}
	return NULL;
}

/* msg becomes the transaction under way; its rstat fits (reserved). */
static void
start_tx(struct smtp_client *c, const struct smtp_client_msg *msg)
{
	buf_reset(&c->rstat);
	if (buf_reserve(&c->rstat, msg->nrcpt) < 0)
		log_panic("client: recipient state not reserved");
	memset(c->rstat.data, RS_OPEN, msg->nrcpt);
	c->rstat.len = msg->nrcpt;

	c->msg = *msg;
	if (c->msg.size == 0)
		c->msg.size = msg->len;
	c->in_tx = true;
	c->send_done = false;
	c->mail_failed = false;
	c->dot_discard = false;
	c->bdat = c->cfg->chunking && !c->cfg->lmtp &&
	    (c->ext & SMTP_CLIENT_EXT_CHUNKING) &&
	    (c->ext & SMTP_CLIENT_EXT_PIPELINING);
	c->send_idx = 0;
	c->recv_idx = 0;
	c->naccepted = 0;
	c->ndone = 0;
	c->lmtp_next = 0;
	memset(&c->tally, 0, sizeof(c->tally));
	c->tx_code = 0;
	c->tx_text[0] = '\0';
	c->after_fail = false;
}

bool
smtp_client_can_pipeline(const struct smtp_client *c)
{
	unsigned depth = c->cfg->pipeline_depth;

	if (depth > SMTP_CLIENT_DEPTH_MAX)
		depth = SMTP_CLIENT_DEPTH_MAX;
	return depth > 1 && c->in_tx && c->bdat && c->send_done &&
	    !c->mail_failed && !c->out_err && 1u + c->npend < depth &&
	    (c->state == SMTP_C_MAIL || c->state == SMTP_C_RCPT ||
	    c->state == SMTP_C_BDAT);
}

/*
 * A transaction behind the one under way (smtp_client_can_pipeline()):
 * all of it goes out now, its replies come after the others'.
 */
static int
send_pipelined(struct smtp_client *c, const struct smtp_client_msg *msg)
{
	struct smtp_client_reply r;
	struct smtp_client_msg m = *msg;
	char text[160];
	const char *enh;
	uint32_t i, cmds = m.nrcpt + 2;
	int code;

	if (m.size == 0)
		m.size = m.len;
	if ((c->send_idx - c->recv_idx) + c->pend_cmds + cmds >
	    SMTP_CLIENT_PIPE_MAX)
		return -EAGAIN;
	/* Room for its state when it comes first (start_tx()). */
	if (buf_reserve(&c->rstat, m.nrcpt) < 0)
		return -ENOMEM;
	if ((enh = local_refusal(c, &m, text, sizeof(text), &code)) != NULL) {
		smtpc_local_reply(&r, code, enh, text);
		settle_msg(c, &m, &r);
		return 1;
	}
	emit_mail(c, &m);
	for (i = 0; i < m.nrcpt; i++)
		emit_rcpt(c, m.rcpt[i]);
	append_bdat(c, &m);
	/* A failed append (out_err) ends the session at the next reply,
	 * which settles this message too. */
	c->pend[(c->pend_head + c->npend) % (SMTP_CLIENT_DEPTH_MAX - 1)] = m;
	c->npend++;
	c->pend_cmds += cmds;
	return 0;
}

int
smtp_client_send(struct smtp_client *c, const struct smtp_client_msg *msg)
{
	char text[160];
	const char *enh;
	int code;

	if (!msg_ok(msg))
		return -EINVAL;
	if (c->state != SMTP_C_READY) {
		assert(smtp_client_can_pipeline(c));
		return send_pipelined(c, msg);
	}
	assert(!c->in_tx);
	assert(c->npend == 0);
	buf_reset(&c->rstat);
	if (buf_reserve(&c->rstat, msg->nrcpt) < 0)
		return -ENOMEM;
	start_tx(c, msg);
	if ((enh = local_refusal(c, &c->msg, text, sizeof(text), &code)) !=
	    NULL)
		return refuse_local(c, code, enh, text);
	pump(c);
	enter_recv_state(c);
	smtpc_check_out(c);
	return 0;
}

void
smtp_client_quit(struct smtp_client *c)
{
	if (c->state == SMTP_C_QUIT || c->state == SMTP_C_CLOSED)
		return;
	assert(c->state == SMTP_C_READY);
	(void)smtpc_emit(c, "QUIT\r\n");
	smtpc_enter_state(c, SMTP_C_QUIT);
	if (c->out_err) {
		/* Could not even say goodbye: just close. */
		c->out_err = false;
		smtpc_enter_state(c, SMTP_C_CLOSED);
	}
}

void
smtp_client_eof(struct smtp_client *c)
{
	struct smtp_client_reply r;

	if (c->state == SMTP_C_CLOSED)
		return;
	if (c->state == SMTP_C_QUIT) {
		smtpc_enter_state(c, SMTP_C_CLOSED);
		return;
	}
	smtpc_local_reply(&r, 451, "4.4.2", "connection lost");
	smtpc_fail_session(c, stage_of(c->state), &r, false);
}

void
smtp_client_timeout(struct smtp_client *c)
{
	struct smtp_client_reply r;
	char text[128];

	if (c->state == SMTP_C_CLOSED)
		return;
	if (c->state == SMTP_C_QUIT) {
		smtpc_enter_state(c, SMTP_C_CLOSED);
		return;
	}
	if (c->state == SMTP_C_READY)
		snprintf(text, sizeof(text), "idle timeout");
	else if (c->state == SMTP_C_GREETING)
		snprintf(text, sizeof(text), "timed out waiting for the "
		    "server greeting");
	else if (c->state == SMTP_C_TLS)
		snprintf(text, sizeof(text), "timed out in the TLS handshake");
	else
		snprintf(text, sizeof(text), "timed out waiting for the reply "
		    "to %s", what_for(c->state));
	smtpc_local_reply(&r, 451, "4.4.2", text);
	smtpc_fail_session(c, stage_of(c->state), &r, false);
}

enum smtp_client_wait
smtp_client_waiting(const struct smtp_client *c)
{
	switch (c->state) {
	case SMTP_C_GREETING:
		return SMTP_CLIENT_WAIT_GREETING;
	case SMTP_C_EHLO:
	case SMTP_C_HELO:
	case SMTP_C_LHLO:
	case SMTP_C_STARTTLS:
	case SMTP_C_TLS:
	case SMTP_C_AUTH:
	case SMTP_C_MAIL:
	case SMTP_C_RCPT:
	case SMTP_C_DATA:
	case SMTP_C_RSET:
		return SMTP_CLIENT_WAIT_REPLY;
	case SMTP_C_DOT:
	case SMTP_C_BDAT:
		return SMTP_CLIENT_WAIT_DATA_END;
	case SMTP_C_QUIT:
		return SMTP_CLIENT_WAIT_QUIT;
	case SMTP_C_READY:
	case SMTP_C_CLOSED:
		return SMTP_CLIENT_WAIT_NONE;
	default:
		log_panic("bad client state %d", (int)c->state);
	}
}
