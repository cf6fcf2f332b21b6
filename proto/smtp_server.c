/*
 * smtp_server.c - the inbound SMTP session; see smtp_server.h.
 *
 * Commands are dispatched through smtp_cmds[], one entry per verb with the
 * function that checks and performs it. Each function appends exactly one
 * reply to s->out (DATA's 354 included), so pipelined groups (RFC 2920) are
 * answered in order and leave in as few writes as the engine can manage:
 * it sends whatever s->out holds once the input at hand is consumed.
 *
 * Every state change goes through enter_state(), the one place to log or
 * assert transitions. Error replies go through reply_error(), which counts
 * them and ends the session with 421 4.7.0 at the configured limit.
 */
#include "smtp_server.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

#include <openssl/crypto.h>

#include "../lib/clock.h"
#include "../lib/hex.h"
#include "../lib/log.h"
#include "../lib/net.h"
#include "../lib/stats.h"
#include "smtp_parse.h"
#include "smtp_server_int.h"

/* Longest HELO name kept; longer ones are truncated (they are only logged). */
#define SMTP_HELO_MAX 255

/*
 * Ceilings (lib/buf.h max) of the buffers the configuration does not size.
 * Replies wait in out only while the client does not read them, and the
 * engine stops reading a client that lets them pile up; input waits in in
 * only while a command line is incomplete or the session is blocked, which
 * the engine bounds by one receive. These are backstops far above both.
 */
#define SMTP_OUT_MAX (4u << 20)
#define SMTP_IN_SLACK (256u << 10)	/* beyond one command line */

/*
 * Message memory: taken from the budget for a message of unknown size at
 * its start (then doubled as it grows), and the most a message buffer
 * keeps between transactions (bigger ones are freed).
 */
#define SMTP_MEM_FIRST (64u << 10)
#define SMTP_MSG_KEEP (256u << 10)
#define SMTP_IN_KEEP (256u << 10)

static const char *const state_names[] = {
	[SMTP_S_INIT] = "INIT",
	[SMTP_S_READY] = "READY",
	[SMTP_S_MAIL] = "MAIL",
	[SMTP_S_RCPT] = "RCPT",
	[SMTP_S_DATA] = "DATA",
	[SMTP_S_BDAT] = "BDAT",
	[SMTP_S_BDAT_WAIT] = "BDAT_WAIT",
	[SMTP_S_COMMIT] = "COMMIT",
	[SMTP_S_AUTH] = "AUTH",
	[SMTP_S_AUTH_WAIT] = "AUTH_WAIT",
	[SMTP_S_QUIT] = "QUIT",
};

const char *
smtp_strstate(enum smtp_state st)
{
	if ((unsigned)st < sizeof(state_names) / sizeof(state_names[0]))
		return state_names[st];
	return "?";
}

static void
enter_state(struct smtp_session *s, enum smtp_state st)
{
	assert((unsigned)st <= SMTP_S_QUIT);
	/* Nothing leaves QUIT: the engine closes the connection. */
	assert(s->state != SMTP_S_QUIT || st == SMTP_S_QUIT);
	s->state = st;
}

static_assert(SMTP_ID_LEN == HEX64_LEN, "ids are printed in full");

void
smtp_id_format(uint64_t id, char out[SMTP_ID_LEN + 1])
{
	hex64_format(id, out);
}

void
smtp_server_cfg_init(struct smtp_server_cfg *c, const char *hostname,
    uint64_t message_size, uint32_t recipients, uint32_t line_length,
    uint32_t errors)
{
	int n;

	assert(line_length <= SMTP_LINE_MAX);
	/* Hooks, hop and junk limits, memory: none unless the caller sets. */
	memset(c, 0, sizeof(*c));
	c->hostname = hostname;
	c->message_size = message_size;
	c->recipients = recipients;
	c->line_length = line_length;
	c->errors = errors;
	n = snprintf(c->ehlo_reply, sizeof(c->ehlo_reply),
	    "250-%s\r\n"
	    "250-PIPELINING\r\n"
	    "250-SIZE %llu\r\n"
	    "250-ENHANCEDSTATUSCODES\r\n"
	    "250-8BITMIME\r\n"
	    "250-SMTPUTF8\r\n"
	    "250 CHUNKING\r\n",
	    hostname, (unsigned long long)message_size);
	assert(n > 0 && (size_t)n < sizeof(c->ehlo_reply));
}

static void
vreply(struct smtp_session *s, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/*
 * Append one reply line; CRLF is added here. A reply that does not fit
 * leaves no half line behind: the session fails (see session_failed()) and
 * is closed after the replies before it.
 */
static void log_refusal(const struct smtp_session *s, const char *r,
    size_t n);

static void
vreply(struct smtp_session *s, const char *fmt, va_list ap)
{
	size_t len = s->out.len;
	/* Most replies are fixed text ("250 2.1.5 Ok"): no format then. */
	const char *parts[] = { fmt, "\r\n" };
	int rc;

	if (strchr(fmt, '%') == NULL)
		rc = buf_puts_all(&s->out, parts, 2);
	else if ((rc = buf_vprintf(&s->out, fmt, ap)) == 0)
		rc = buf_puts(&s->out, "\r\n");
	if (rc < 0) {
		s->out.len = len;
		if (!s->failed)
			log_warn("%s: no room for a reply (%zu bytes unsent): "
			    "closing", s->client_addr, len);
		s->failed = true;
		return;
	}
	if (s->out.data[len] == '4' || s->out.data[len] == '5')
		log_refusal(s, s->out.data + len, s->out.len - len - 2);
	if (s->stats != NULL)
		stats_reply(s->stats, s->out.data + len, s->out.len - len);
}

static void
reply(struct smtp_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
reply(struct smtp_session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vreply(s, fmt, ap);
	va_end(ap);
}

/*
 * Every 4xx and 5xx reply is logged, as Postfix's "reject:" lines are:
 * the client, the command it answers, the reply, and what the session
 * knows of the transaction (never a password: AUTH replies carry none).
 */
static void
log_refusal(const struct smtp_session *s, const char *r, size_t n)
{
	const char *helo = s->env.len > 0 ? s->env.data : "";
	bool mail = s->state == SMTP_S_MAIL || s->state == SMTP_S_RCPT ||
	    s->state == SMTP_S_DATA || s->state == SMTP_S_BDAT ||
	    s->state == SMTP_S_BDAT_WAIT || s->state == SMTP_S_COMMIT;

	log_info("reject: %s from [%s]: %.*s;%s%s%s helo=<%.64s>",
	    s->cmd != NULL ? s->cmd : "CONNECT", s->client_addr,
	    (int)(n > 512 ? 512 : n), r, mail ? " from=<" : "",
	    mail ? s->env.data + s->sender_off : "", mail ? ">" : "", helo);
}

/*
 * One more error (what: "errors", or "junk commands" when a junk command
 * past its limit tipped it); at limits.errors the session ends with 421.
 */
static void
count_error(struct smtp_session *s, const char *what)
{
	if (++s->errors >= s->cfg->errors && s->state != SMTP_S_QUIT) {
		reply(s, "421 4.7.0 %s Error: too many %s", s->cfg->hostname,
		    what);
		enter_state(s, SMTP_S_QUIT);
	}
}

/* An error reply: counted, and the session ends at the limit. */
static void
reply_error(struct smtp_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A reply that is an error: counted, the session ends at the limit. */
static void
vreply_error(struct smtp_session *s, const char *fmt, va_list ap)
{
	vreply(s, fmt, ap);
	count_error(s, "errors");
}

static void
reply_error(struct smtp_session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vreply_error(s, fmt, ap);
	va_end(ap);
}

/* For smtp_auth.c (smtp_server_int.h): the helpers above. */
void
smtp_reply(struct smtp_session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vreply(s, fmt, ap);
	va_end(ap);
}

void
smtp_reply_error(struct smtp_session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vreply_error(s, fmt, ap);
	va_end(ap);
}

void
smtp_enter_state(struct smtp_session *s, enum smtp_state st)
{
	enter_state(s, st);
}

void
smtp_session_init(struct smtp_session *s, const struct smtp_server_cfg *cfg,
    const struct smtp_listen_policy *pol, const struct sockaddr *peer,
    bool relay_ok, const struct smtp_id_source *ids)
{
	static const struct smtp_listen_policy plain;

	struct buf in = s->in, out = s->out, msg = s->msg, env = s->env;
	int rc;

	/* The engine gave the last session's memory back (release()). */
	assert(s->mem_held == 0);
	/* Keep the buffers' allocations across sessions in the same slot. */
	memset(s, 0, sizeof(*s));
	s->in = in;
	s->out = out;
	s->msg = msg;
	s->env = env;
	buf_reset(&s->in);
	buf_reset(&s->out);
	buf_reset(&s->msg);
	buf_reset(&s->env);
	s->in.max = (size_t)cfg->line_length + SMTP_IN_SLACK;
	s->out.max = SMTP_OUT_MAX;
	/* The HELO name, the sender and every recipient, NUL-terminated. */
	s->env.max = SMTP_HELO_MAX + 1 +
	    ((size_t)cfg->recipients + 1) * (SMTP_PATH_MAX + 1);
	s->cfg = cfg;
	s->pol = pol != NULL ? pol : &plain;
	s->ids = ids;
	s->relay_ok = relay_ok;
	s->state = SMTP_S_INIT;
	net_addr_text(peer, s->client_addr, sizeof(s->client_addr));
	/* env always starts with the HELO name, empty until given. */
	if ((rc = buf_append(&s->env, "", 1)) < 0) {
		log_warn("%s: session: %s", s->client_addr, strerror(-rc));
		s->failed = true;	/* the greeting says so */
	}
	s->sender_off = 1;
}

static void mem_release(struct smtp_session *s);

void
smtp_session_release(struct smtp_session *s)
{
	OPENSSL_cleanse(s->auth_pass, sizeof(s->auth_pass));
	if (s->cfg != NULL)
		mem_release(s);
	if (s->msg.cap > SMTP_MSG_KEEP)
		buf_free(&s->msg);
	if (s->in.cap > SMTP_IN_KEEP)
		buf_free(&s->in);
}

void
smtp_session_free(struct smtp_session *s)
{
	smtp_session_release(s);
	buf_free(&s->in);
	buf_free(&s->out);
	buf_free(&s->msg);
	buf_free(&s->env);
}

enum smtp_event
smtp_session_greet(struct smtp_session *s)
{
	if (s->failed) {
		reply(s, "421 4.3.0 %s Error: out of memory", s->cfg->hostname);
		enter_state(s, SMTP_S_QUIT);
		return SMTP_EV_CLOSE;
	}
	reply(s, "220 %s ESMTP sluice", s->cfg->hostname);
	return SMTP_EV_NONE;
}

/*
 * Hold room for `total` bytes in msg (capped at msg_limit): take from the
 * memory budget and raise msg's ceiling to match. Doubles what it holds
 * when it can, so a message costs a few atomic operations, not one per
 * read. False when the budget cannot cover total: msg keeps its ceiling.
 */
static bool
mem_reserve(struct smtp_session *s, uint64_t total)
{
	struct budget *b = s->cfg->memory;
	uint64_t want;

	if (total > s->msg_limit)
		total = s->msg_limit;
	if (total <= s->mem_held)
		return true;
	want = s->mem_held * 2 > total ? s->mem_held * 2 : total;
	if (want > s->msg_limit)
		want = s->msg_limit;
	if (b != NULL && !budget_take(b, want - s->mem_held)) {
		if (want == total || !budget_take(b, total - s->mem_held))
			return false;
		want = total;
	}
	s->mem_held = want;
	s->msg.max = (size_t)want;
	return true;
}

/* Give back what msg held of the budget; msg may not grow until more. */
static void
mem_release(struct smtp_session *s)
{
	if (s->mem_held > 0 && s->cfg->memory != NULL)
		budget_give(s->cfg->memory, s->mem_held);
	s->mem_held = 0;
	s->msg_limit = 0;
	s->msg.max = 0;
}

/* Drop the transaction, keep the HELO name. */
static void
reset_transaction(struct smtp_session *s)
{
	s->env.len = s->sender_off;
	s->nrcpt = 0;
	s->nrcpt_tried = 0;
	s->declared_size = 0;
	s->body = SMTP_BODY_7BIT;
	s->smtputf8 = false;
	s->qid = 0;
	s->bdat_left = 0;
	s->bdat_last = false;
	s->bdat_bad = false;
	s->bdat_nostore = false;
	/* Never during SMTP_S_COMMIT: the engine writes from msg then. */
	mem_release(s);
	if (s->msg.cap > SMTP_MSG_KEEP)
		buf_free(&s->msg);
	buf_reset(&s->msg);
	if (s->state != SMTP_S_QUIT)
		enter_state(s, s->helo_seen ? SMTP_S_READY : SMTP_S_INIT);
}

/* ---- commands -------------------------------------------------------- */

/* Keep the HELO name (it starts env). False when there is no room. */
static bool
set_helo(struct smtp_session *s, const char *name)
{
	size_t n = strlen(name);
	int rc;

	if (n > SMTP_HELO_MAX)
		n = SMTP_HELO_MAX;
	s->env.len = 0;
	if (buf_reserve(&s->env, n + 1) < 0) {
		/* env is the empty HELO name again; its byte is still there. */
		assert(s->env.data != NULL && s->env.cap > 0);
		s->env.len = 1;
		s->env.data[0] = '\0';
		s->sender_off = 1;
		return false;
	}
	rc = buf_append(&s->env, name, n);
	assert(rc == 0);	/* reserved */
	rc = buf_append(&s->env, "", 1);
	assert(rc == 0);
	(void)rc;
	s->sender_off = (uint32_t)s->env.len;
	s->helo_seen = true;
	return true;
}

/*
 * The HELO name goes into our Received: header, so control characters
 * (a bare CR among them) would let a client forge header lines.
 */
static bool
helo_name_ok(const char *p)
{
	for (; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

/* Is STARTTLS offered now: a listener that has it, not yet over TLS. */
static bool
starttls_offered(const struct smtp_session *s)
{
	return !s->tls && (s->pol->tls == SMTP_TLS_STARTTLS ||
	    s->pol->tls == SMTP_TLS_REQUIRED);
}

/*
 * The EHLO reply: the precomputed lines, with what depends on the session
 * added: STARTTLS after the first line, AUTH before the last. One reply()
 * call: a reply that does not fit leaves nothing.
 */
static void
reply_ehlo(struct smtp_session *s)
{
	const char *r = s->cfg->ehlo_reply, *rest = strstr(r, "\r\n");
	size_t n = strlen(r);
	const char *last;

	assert(rest != NULL && n >= 2 && r[n - 2] == '\r');
	rest += 2;
	/* The last line begins after the CRLF before the final one. */
	for (last = r + n - 2; last > r && last[-1] != '\n'; last--)
		;
	if (last < rest)
		last = rest;	/* a one-line reply: nothing in between */
	reply(s, "%.*s%s%.*s%s%.*s", (int)(rest - r), r,
	    starttls_offered(s) ? "250-STARTTLS\r\n" : "",
	    (int)(last - rest), rest,
	    smtp_session_auth_offered(s) ? "250-AUTH PLAIN LOGIN\r\n" : "",
	    (int)(r + n - 2 - last), last);
}

static void
cmd_helo_common(struct smtp_session *s, char *arg, bool esmtp)
{
	if (*arg == '\0' || !helo_name_ok(arg)) {
		reply_error(s, "501 5.5.4 Syntax: %s hostname",
		    esmtp ? "EHLO" : "HELO");
		return;
	}
	/* RFC 5321 4.1.4: EHLO/HELO resets any transaction. */
	reset_transaction(s);
	if (!set_helo(s, arg)) {
		reply(s, "452 4.3.1 Insufficient system storage");
		return;
	}
	s->esmtp = esmtp;
	enter_state(s, SMTP_S_READY);
	if (esmtp)
		reply_ehlo(s);
	else
		reply(s, "250 %s", s->cfg->hostname);
}

static void
cmd_ehlo(struct smtp_session *s, char *arg)
{
	cmd_helo_common(s, arg, true);
}

static void
cmd_helo(struct smtp_session *s, char *arg)
{
	cmd_helo_common(s, arg, false);
}

static void
cmd_mail(struct smtp_session *s, char *arg)
{
	char *addr, *params, *key, *val;
	unsigned long long size = 0;
	uint8_t body = SMTP_BODY_7BIT;
	bool utf8 = false;
	enum smtp_path_result pr;

	if (s->state == SMTP_S_INIT) {
		reply_error(s, "503 5.5.1 Error: send HELO/EHLO first");
		return;
	}
	if (s->state != SMTP_S_READY) {
		reply_error(s, "503 5.5.1 Error: nested MAIL command");
		return;
	}
	/* tls: required (RFC 3207 4: 530 until the client has TLS). */
	if (s->pol->tls == SMTP_TLS_REQUIRED && !s->tls) {
		reply_error(s, "530 5.7.0 Must issue a STARTTLS command first");
		return;
	}
	/* RFC 4954 section 6: a submission listener takes mail from users. */
	if (s->pol->auth == SMTP_AUTH_REQUIRED && !s->authenticated) {
		reply_error(s, "530 5.7.0 Authentication required");
		return;
	}
	/* SMTPUTF8 must be known before the address is judged. */
	utf8 = s->esmtp && strcasestr(arg, " SMTPUTF8") != NULL;
	pr = smtp_parse_path(arg, "FROM:", true, utf8, &addr, &params);
	switch (pr) {
	case SMTP_PATH_OK:
		break;
	case SMTP_PATH_SYNTAX:
		reply_error(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
		return;
	case SMTP_PATH_BAD_ADDR:
		reply_error(s, "501 5.1.7 Bad sender address syntax");
		return;
	case SMTP_PATH_NEEDS_UTF8:
		reply_error(s, "553 5.6.7 Sender address needs SMTPUTF8");
		return;
	case SMTP_PATH_BAD_UTF8:
		reply_error(s, "553 5.6.7 Sender address is not valid UTF-8");
		return;
	default:
		log_panic("bad path result %d", (int)pr);
	}
	utf8 = false;
	while (smtp_next_param(&params, &key, &val)) {
		if (!s->esmtp) {
			reply_error(s, "555 5.5.4 Unsupported option: %s", key);
			return;
		}
		if (strcasecmp(key, "SIZE") == 0 && val != NULL) {
			/* Too many digits is just too big (RFC 1870 6). */
			if (*val != '\0' && strspn(val, "0123456789") ==
			    strlen(val) && !smtp_parse_u64(val, &size))
				size = ~0ULL;
			else if (!smtp_parse_u64(val, &size)) {
				reply_error(s, "501 5.5.4 Bad SIZE value");
				return;
			}
		} else if (strcasecmp(key, "BODY") == 0 && val != NULL) {
			if (strcasecmp(val, "7BIT") == 0) {
				body = SMTP_BODY_7BIT;
			} else if (strcasecmp(val, "8BITMIME") == 0) {
				body = SMTP_BODY_8BITMIME;
			} else {
				reply_error(s, "501 5.5.4 Unsupported BODY "
				    "type: %s", val);
				return;
			}
		} else if (strcasecmp(key, "SMTPUTF8") == 0 && val == NULL) {
			utf8 = true;
		} else if (strcasecmp(key, "AUTH") == 0 && val != NULL &&
		    *val != '\0' && smtp_session_auth_offered(s)) {
			/*
			 * RFC 4954 section 5: who submitted the message at
			 * the previous hop. Nothing here relays on that word
			 * (the session's own AUTH is what counts): taken, and
			 * not kept.
			 */
		} else {
			reply_error(s, "555 5.5.4 Unsupported option: %s", key);
			return;
		}
	}
	if (size > s->cfg->message_size) {
		reply_error(s, "552 5.3.4 Message size exceeds fixed limit");
		return;
	}
	/* Postfix's reject_sender_login_mismatch, in its words. */
	if (s->authenticated &&
	    !smtp_sender_allowed(s->pol->senders, &s->sender_id, addr)) {
		reply_error(s, "553 5.7.1 <%s>: Sender address rejected: not "
		    "owned by user %s", addr, s->auth_user);
		return;
	}
	s->env.len = s->sender_off;
	if (buf_append(&s->env, addr, strlen(addr) + 1) < 0) {
		/* RFC 5321 4.2.3: 452 is MAIL's "insufficient storage". */
		reply(s, "452 4.3.1 Insufficient system storage");
		return;
	}
	s->rcpt_off0 = (uint32_t)s->env.len;
	s->declared_size = size > UINT32_MAX ? UINT32_MAX : (uint32_t)size;
	s->body = body;
	s->smtputf8 = utf8;
	enter_state(s, SMTP_S_MAIL);
	reply(s, "250 2.1.0 Ok");
}

static void
cmd_rcpt(struct smtp_session *s, char *arg)
{
	char *addr, *params, *key, *val;
	enum smtp_path_result pr;
	const char *refusal;

	if (s->state != SMTP_S_MAIL && s->state != SMTP_S_RCPT) {
		if (s->state == SMTP_S_INIT)
			reply_error(s, "503 5.5.1 Error: send HELO/EHLO first");
		else
			reply_error(s, "503 5.5.1 Error: need MAIL command");
		return;
	}
	s->nrcpt_tried++;
	pr = smtp_parse_path(arg, "TO:", false, s->smtputf8, &addr, &params);
	switch (pr) {
	case SMTP_PATH_OK:
		break;
	case SMTP_PATH_SYNTAX:
		reply_error(s, "501 5.5.4 Syntax: RCPT TO:<address>");
		return;
	case SMTP_PATH_BAD_ADDR:
		reply_error(s, "501 5.1.3 Bad recipient address syntax");
		return;
	case SMTP_PATH_NEEDS_UTF8:
		reply_error(s, "553 5.6.7 Recipient address needs SMTPUTF8");
		return;
	case SMTP_PATH_BAD_UTF8:
		reply_error(s, "553 5.6.7 Recipient address is not valid "
		    "UTF-8");
		return;
	default:
		log_panic("bad path result %d", (int)pr);
	}
	if (smtp_next_param(&params, &key, &val)) {
		reply_error(s, "555 5.5.4 Unsupported option: %s", key);
		return;
	}
	if (s->nrcpt >= s->cfg->recipients) {
		/* RFC 5321 4.5.3.1.10: 452 lets the client send the rest later. */
		reply(s, "452 4.5.3 Error: too many recipients");
		return;
	}
	/*
	 * The one relay decision: an allowed network or AUTH relays
	 * anywhere; anyone else may only name the relay domains, by their
	 * literal address (smtp_rcpt_local(): no percent hack, bang path or
	 * quoted '@'). Source routes were dropped by the parser (RFC 5321
	 * 4.1.2), so "<@relay:u@elsewhere>" is judged as u@elsewhere.
	 */
	if (!s->relay_ok && !s->authenticated &&
	    !smtp_rcpt_local(s->cfg->relay_domains, s->cfg->nrelay_domains,
	    addr)) {
		reply_error(s, "554 5.7.1 <%s>: Relay access denied", addr);
		return;
	}
	if (s->cfg->rcpt_refused != NULL &&
	    (refusal = s->cfg->rcpt_refused(s->cfg->rcpt_ctx, addr)) != NULL) {
		/*
		 * Refused here, while the client can still tell its sender
		 * (an error: route, as Postfix transport(5) "error"). Policy,
		 * not a client mistake: not counted towards limits.errors.
		 */
		reply(s, "%s", refusal);
		return;
	}
	if (buf_append(&s->env, addr, strlen(addr) + 1) < 0) {
		reply(s, "452 4.3.1 Insufficient system storage");
		return;
	}
	s->nrcpt++;
	enter_state(s, SMTP_S_RCPT);
	reply(s, "250 2.1.5 Ok");
}

/*
 * The RFC 5322 date of us, valid until this thread's next call. A thread
 * formats each second once: its sessions' messages of the same second
 * share the text.
 */
static const char *
date_text(uint64_t us)
{
	static _Thread_local time_t last = -1;
	static _Thread_local char text[64];
	time_t t = (time_t)(us / 1000000u);

	if (t != last) {
		struct tm tm;

		gmtime_r(&t, &tm);
		if (strftime(text, sizeof(text),
		    "%a, %d %b %Y %H:%M:%S +0000", &tm) == 0)
			text[0] = '\0';
		last = t;
	}
	return text;
}

/*
 * Start the message: pick its id, write our Received: header and take
 * room for `expect` bytes of data from the memory budget. False when the
 * budget cannot cover them: nothing is kept then.
 */
static bool
begin_message(struct smtp_session *s, uint64_t expect)
{
	char qid[SMTP_ID_LEN + 1], tls[128] = "";
	const char *proto = smtp_session_protocol(s);

	s->arrival_us = clock_real_us();
	s->qid = s->ids->next(s->ids->ctx, s->arrival_us / 1000u);
	assert(s->qid != 0);
	smtp_id_format(s->qid, qid);
	data_scan_init(&s->ds, s->cfg->message_size);
	s->ds.hops_max = s->cfg->hops;
	assert(s->mem_held == 0);
	buf_reset(&s->msg);
	s->msg.max = 0;		/* the header is ours; the data is bounded */
	/*
	 * RFC 5321 4.4: "from" the HELO name and address, "by" us, "id".
	 * Over TLS a comment says what was negotiated, as sendmail writes
	 * it; the protocol says ESMTPS (RFC 3848).
	 */
	if (s->tls)
		snprintf(tls, sizeof(tls), "\t(version=%s cipher=%s bits=%u)\r\n",
		    s->tls_version, s->tls_cipher, (unsigned)s->tls_bits);
	{
		/* Once a message: pieces, not a format to parse. */
		const bool one = s->nrcpt == 1;
		const char *parts[] = {
			"Received: from ", s->env.data, " ([", s->client_addr,
			"])\r\n", tls, "\tby ", s->cfg->hostname,
			" (sluice) with ", proto, " id ", qid,
			one ? "\r\n\tfor <" : ";\r\n\t",
			one ? s->env.data + s->rcpt_off0 : "",
			one ? ">; " : "", date_text(s->arrival_us), "\r\n",
		};

		if (buf_puts_all(&s->msg, parts,
		    sizeof(parts) / sizeof(parts[0])) < 0)
			s->ds.nomem = true; /* the data is read, then refused */
	}
	s->data_off = (uint32_t)s->msg.len;
	s->msg_limit = s->msg.len + s->cfg->message_size;
	s->msg.max = s->msg.len;	/* more once it is paid for */
	if (s->cfg->data_tap != NULL)
		s->cfg->data_tap(s->cfg->tap_ctx, s, NULL, 0);
	if (!mem_reserve(s, s->msg.len + expect)) {
		mem_release(s);
		buf_reset(&s->msg);
		s->qid = 0;
		return false;
	}
	return true;
}

static bool
need_recipients(struct smtp_session *s)
{
	if (s->state == SMTP_S_RCPT)
		return true;
	if (s->state == SMTP_S_INIT)
		reply_error(s, "503 5.5.1 Error: send HELO/EHLO first");
	else if (s->state == SMTP_S_READY)
		reply_error(s, "503 5.5.1 Error: need MAIL command");
	else if (s->state == SMTP_S_BDAT_WAIT)
		reply_error(s, "503 5.5.1 Error: DATA after BDAT");
	else if (s->nrcpt_tried > 0)
		reply_error(s, "554 5.5.1 Error: no valid recipients");
	else
		reply_error(s, "503 5.5.1 Error: need RCPT command");
	return false;
}

static void
cmd_data(struct smtp_session *s, char *arg)
{
	if (*arg != '\0') {
		reply_error(s, "501 5.5.4 Syntax: DATA");
		return;
	}
	if (!need_recipients(s))
		return;
	if (!begin_message(s, s->declared_size != 0 ? s->declared_size :
	    SMTP_MEM_FIRST)) {
		/*
		 * limits.memory: other messages hold what this one needs.
		 * Postfix's words for a full queue; the transaction stays,
		 * so the client may try DATA again or later.
		 */
		reply(s, "452 4.3.1 Insufficient system storage");
		return;
	}
	enter_state(s, SMTP_S_DATA);
	reply(s, "354 End data with <CR><LF>.<CR><LF>");
}

static void
cmd_bdat(struct smtp_session *s, char *arg)
{
	unsigned long long size;
	char *sp = strchr(arg, ' ');
	bool last = false;

	if (sp != NULL) {
		*sp++ = '\0';
		while (*sp == ' ')
			sp++;
		if (strcasecmp(sp, "LAST") != 0) {
			reply_error(s, "501 5.5.4 Syntax: BDAT count [LAST]");
			return;
		}
		last = true;
	}
	if (!smtp_parse_u64(arg, &size)) {
		/* Without a count we cannot find the chunk's end. */
		reply_error(s, "501 5.5.4 Syntax: BDAT count [LAST]");
		return;
	}
	s->bdat_left = size;
	s->bdat_last = last;
	/*
	 * RFC 3030 section 3: the chunk is read whatever the verdict, so
	 * the session stays in step; the error is sent after it.
	 */
	if (s->state == SMTP_S_BDAT_WAIT) {
		s->bdat_bad = false;
	} else if (s->state == SMTP_S_RCPT) {
		s->bdat_bad = false;
		/* No room: the chunk is read all the same, then 452. */
		s->bdat_nostore = !begin_message(s,
		    size > s->declared_size ? size : s->declared_size);
	} else {
		s->bdat_bad = true;
		s->bdat_prev = s->state;
	}
	enter_state(s, SMTP_S_BDAT);
}

static void
cmd_rset(struct smtp_session *s, char *arg)
{
	(void)arg;
	reset_transaction(s);
	reply(s, "250 2.0.0 Ok");
}

static void
cmd_noop(struct smtp_session *s, char *arg)
{
	(void)arg;
	reply(s, "250 2.0.0 Ok");
}

static void
cmd_quit(struct smtp_session *s, char *arg)
{
	(void)arg;
	reply(s, "221 2.0.0 Bye");
	enter_state(s, SMTP_S_QUIT);
}

static void
cmd_vrfy(struct smtp_session *s, char *arg)
{
	(void)arg;
	reply(s, "252 2.0.0 Cannot VRFY user, but will accept message and "
	    "attempt delivery");
}

static void
cmd_help(struct smtp_session *s, char *arg)
{
	(void)arg;
	reply(s, "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET "
	    "NOOP QUIT VRFY HELP%s%s", starttls_offered(s) ? " STARTTLS" : "",
	    smtp_session_auth_offered(s) ? " AUTH" : "");
}

/*
 * RFC 3207. Accepted, the session forgets what the client told it before
 * (section 4.2: the EHLO name and anything of a transaction) and stops
 * consuming input: consume() returns SMTP_EV_STARTTLS and whatever
 * followed this line is dropped, since bytes sent before the handshake
 * must not count as commands sent over TLS (section 5).
 */
static void
cmd_starttls(struct smtp_session *s, char *arg)
{
	if (s->pol->tls == SMTP_TLS_NONE) {
		reply_error(s, "502 5.5.1 Error: command not supported");
		return;
	}
	if (s->tls) {
		reply_error(s, "503 5.5.1 Error: TLS already active");
		return;
	}
	if (*arg != '\0') {
		reply_error(s, "501 5.5.4 Syntax: STARTTLS");
		return;
	}
	if (s->state != SMTP_S_INIT && s->state != SMTP_S_READY) {
		reply_error(s, "503 5.5.1 Error: MAIL transaction in progress");
		return;
	}
	reset_transaction(s);
	s->env.len = 0;
	if (buf_append(&s->env, "", 1) < 0)	/* it had room for more */
		log_panic("%s: the empty HELO name does not fit",
		    s->client_addr);
	s->sender_off = 1;
	s->helo_seen = false;
	s->esmtp = false;
	/* RFC 3207 4.2: nothing learnt before TLS, a login included. */
	s->authenticated = false;
	s->auth_user[0] = '\0';
	memset(&s->sender_id, 0, sizeof(s->sender_id));
	enter_state(s, SMTP_S_INIT);
	reply(s, "220 2.0.0 Ready to start TLS");
	s->starttls = true;
}

static void
cmd_not_implemented(struct smtp_session *s, char *arg)
{
	(void)arg;
	reply_error(s, "502 5.5.1 Error: command not supported");
}

/*
 * A junk command moves no mail (Postfix's smtpd_junk_command_limit counts
 * NOOP, VRFY, ETRN and RSET): past limits.junk_commands since the last
 * message queued, each one also counts as an error. Commands we do not
 * implement are errors anyway.
 */
#define SMTP_CMD_JUNK 0x1

static const struct smtp_cmd {
	const char *verb;
	void (*fn)(struct smtp_session *, char *);
	unsigned flags;
} smtp_cmds[] = {
	{ "MAIL", cmd_mail, 0 },
	{ "RCPT", cmd_rcpt, 0 },
	{ "DATA", cmd_data, 0 },
	{ "BDAT", cmd_bdat, 0 },
	{ "EHLO", cmd_ehlo, 0 },
	{ "HELO", cmd_helo, 0 },
	{ "RSET", cmd_rset, SMTP_CMD_JUNK },
	{ "NOOP", cmd_noop, SMTP_CMD_JUNK },
	{ "QUIT", cmd_quit, 0 },
	{ "VRFY", cmd_vrfy, SMTP_CMD_JUNK },
	{ "HELP", cmd_help, SMTP_CMD_JUNK },
	{ "STARTTLS", cmd_starttls, 0 },
	{ "AUTH", smtp_cmd_auth },
	{ "EXPN", cmd_not_implemented },
	{ "ETRN", cmd_not_implemented },
	{ "TURN", cmd_not_implemented },
};

/* Run one command line (without CRLF, NUL-terminated, writable). */
static void
do_command(struct smtp_session *s, char *line)
{
	size_t i, vl;
	char *arg;

	if (s->shutting_down && !smtp_session_in_transaction(s)) {
		reply(s, "421 4.3.2 %s Service shutting down",
		    s->cfg->hostname);
		enter_state(s, SMTP_S_QUIT);
		return;
	}
	if (s->state == SMTP_S_AUTH) {
		s->cmd = "AUTH";
		smtp_auth_response(s, line);
		return;
	}
	vl = strcspn(line, " ");
	s->cmd = "unknown command";
	arg = line + vl;
	while (*arg == ' ')
		arg++;
	for (i = 0; i < sizeof(smtp_cmds) / sizeof(smtp_cmds[0]); i++) {
		if (strlen(smtp_cmds[i].verb) == vl &&
		    strncasecmp(line, smtp_cmds[i].verb, vl) == 0) {
			s->cmd = smtp_cmds[i].verb;
			/* Between BDAT chunks only a few commands make sense. */
			if (s->state == SMTP_S_BDAT_WAIT &&
			    smtp_cmds[i].fn != cmd_bdat &&
			    smtp_cmds[i].fn != cmd_rset &&
			    smtp_cmds[i].fn != cmd_quit &&
			    smtp_cmds[i].fn != cmd_noop &&
			    smtp_cmds[i].fn != cmd_data) {
				reply_error(s, "503 5.5.1 Error: BDAT "
				    "transaction in progress");
				return;
			}
			smtp_cmds[i].fn(s, arg);
			if ((smtp_cmds[i].flags & SMTP_CMD_JUNK) &&
			    s->cfg->junk_commands != 0 &&
			    ++s->junk > s->cfg->junk_commands)
				count_error(s, "junk commands");
			return;
		}
	}
	reply_error(s, "500 5.5.2 Error: command not recognized");
}

/* ---- message end ----------------------------------------------------- */

/*
 * The message is refused: the transaction ends and `line` is the reply.
 * counted: the client's mistake, which counts towards limits.errors;
 * policy and our own shortage do not.
 */
static enum smtp_event
refuse_message(struct smtp_session *s, bool counted, const char *line)
{
	reset_transaction(s);
	if (counted)
		reply_error(s, "%s", line);
	else
		reply(s, "%s", line);
	return SMTP_EV_NONE;
}

/* Judge a complete message; COMMIT when it should be queued. */
static enum smtp_event
finish_message(struct smtp_session *s)
{
	char line[SMTP_PATH_MAX + SASL_FIELD_MAX + 128];
	const char *why;

	if (s->ds.bare_cr || s->ds.bare_lf)
		return refuse_message(s, true,
		    "554 5.6.0 Error: bare CR or LF in message data");
	if (s->ds.too_big)
		return refuse_message(s, true,
		    "552 5.3.4 Error: message file too big");
	/* RFC 5321 6.3: a loop. Postfix's code and words (hopcount_limit). */
	if (s->ds.too_many_hops)
		return refuse_message(s, false,
		    "554 5.4.6 Error: too many hops");
	/* limits.memory ran out while the message streamed. */
	if (s->ds.no_room)
		return refuse_message(s, false,
		    "452 4.3.1 Insufficient system storage");
	/* Not text (RFC 5321 2.3.8, RFC 6152 2): BINARYMIME only. */
	if (s->ds.nul)
		return refuse_message(s, true,
		    "554 5.6.0 Error: NUL character in message data");
	if (s->ds.nomem)
		return refuse_message(s, false,
		    "451 4.3.0 Error: out of memory");
	if ((why = smtp_from_refusal(s, line, sizeof(line))) != NULL)
		return refuse_message(s, true, why);
	enter_state(s, SMTP_S_COMMIT);
	return SMTP_EV_COMMIT;
}

enum smtp_event
smtp_session_commit_done(struct smtp_session *s, enum smtp_commit_result res)
{
	char qid[SMTP_ID_LEN + 1];

	assert(s->state == SMTP_S_COMMIT);
	switch (res) {
	case SMTP_COMMIT_OK:
		smtp_id_format(s->qid, qid);
		reply(s, "250 2.0.0 Ok: queued as %s", qid);
		s->messages++;
		s->junk = 0;	/* as Postfix: the count restarts with mail */
		break;
	case SMTP_COMMIT_NOSPACE:
		reply(s, "452 4.3.1 Insufficient system storage");
		break;
	case SMTP_COMMIT_IOERR:
		reply(s, "451 4.3.0 Error: queue file write error");
		break;
	case SMTP_COMMIT_SIGNFAIL:
		reply(s, "451 4.3.0 Error: cannot sign the message, try "
		    "again later");
		break;
	default:
		log_panic("bad commit result %d", (int)res);
	}
	enter_state(s, SMTP_S_READY);
	reset_transaction(s);
	/* Carry on with whatever the client pipelined meanwhile. */
	return smtp_session_input(s, NULL, 0);
}

bool
smtp_session_prepend(struct smtp_session *s, const char *p, size_t n)
{
	assert(s->state == SMTP_S_COMMIT);
	/* The fields are ours, not the client's: beyond message_size. */
	if (s->msg.len + n > s->msg_limit)
		s->msg_limit = s->msg.len + n;
	if (!mem_reserve(s, s->msg.len + n) || buf_reserve(&s->msg, n) < 0)
		return false;
	memmove(s->msg.data + n, s->msg.data, s->msg.len);
	memcpy(s->msg.data, p, n);
	s->msg.len += n;
	return true;
}

/* Show the tap what was stored since `before` bytes. */
static inline void
tap(struct smtp_session *s, size_t before)
{
	if (s->cfg->data_tap != NULL && s->msg.len > before)
		s->cfg->data_tap(s->cfg->tap_ctx, s, s->msg.data + before,
		    s->msg.len - before);
}

static enum smtp_event
bdat_chunk_done(struct smtp_session *s)
{
	unsigned long long got = s->ds.size;

	if (s->bdat_bad) {
		s->bdat_bad = false;
		/* Back to where the chunk found us, then say why. */
		enter_state(s, s->bdat_prev);
		(void)need_recipients(s);
		return SMTP_EV_NONE;
	}
	/* RFC 3030 2: after an error reply the transaction has failed. */
	if (s->ds.too_big)
		return refuse_message(s, true,
		    "552 5.3.4 Error: message file too big");
	if (s->bdat_nostore || s->ds.no_room)	/* limits.memory */
		return refuse_message(s, false,
		    "452 4.3.1 Insufficient system storage");
	if (!s->bdat_last) {
		enter_state(s, SMTP_S_BDAT_WAIT);
		reply(s, "250 2.0.0 Ok: %llu octets received", got);
		return SMTP_EV_NONE;
	}
	if (s->ds.state == DS_CR)
		s->ds.bare_cr = true;
	return finish_message(s);
}

/* ---- input ----------------------------------------------------------- */

/* Scratch for one command line, NUL-terminated (lines are bounded). */
static _Thread_local char line_buf[SMTP_LINE_MAX + 1];

/* A line past limits.line_length; in an AUTH exchange it ends that too. */
static void
line_too_long(struct smtp_session *s)
{
	if (s->state == SMTP_S_AUTH)
		smtp_auth_abort(s, "500 5.5.2 Error: line too long");
	else
		reply_error(s, "500 5.5.2 Error: line too long");
}

/*
 * Consume what we can of cur[0..len). Returns the bytes used and the event
 * that stopped us (COMMIT and CLOSE stop; NONE means "need more input").
 */
static size_t
consume(struct smtp_session *s, const char *cur, size_t len,
    enum smtp_event *ev)
{
	size_t off = 0, take, ll, max = s->cfg->line_length, before;
	const char *lf;
	bool secret;

	*ev = SMTP_EV_NONE;
	while (off < len) {
		switch (s->state) {
		case SMTP_S_DATA:
			/* Unstuffing only shrinks: len - off bytes at most. */
			(void)mem_reserve(s, s->msg.len + (len - off));
			before = s->msg.len;
			off += data_scan(&s->ds, cur + off, len - off, &s->msg);
			tap(s, before);
			if (s->ds.state == DS_DONE)
				*ev = finish_message(s);
			break;
		case SMTP_S_BDAT:
			take = len - off;
			if (take > s->bdat_left)
				take = (size_t)s->bdat_left;
			if (!s->bdat_bad && !s->bdat_nostore) {
				/* On failure msg stops at its ceiling. */
				(void)mem_reserve(s, s->msg.len + take);
				before = s->msg.len;
				data_scan_raw(&s->ds, cur + off, take, &s->msg);
				tap(s, before);
			}
			off += take;
			s->bdat_left -= take;
			break;
		case SMTP_S_COMMIT:
		case SMTP_S_AUTH_WAIT:
			return off;
		case SMTP_S_QUIT:
			/* Nothing after QUIT (or a fatal error) is read. */
			*ev = SMTP_EV_CLOSE;
			return len;
		default:
			lf = memchr(cur + off, '\n', len - off);
			if (s->skip_line) {
				/* Rest of an overlong line: drop it. */
				if (lf == NULL)
					return len;
				off = (size_t)(lf - cur) + 1;
				s->skip_line = false;
				break;
			}
			if (lf == NULL) {
				if (len - off < max)
					return off;	/* wait for the rest */
				line_too_long(s);
				s->skip_line = true;
				return len;
			}
			ll = (size_t)(lf - (cur + off)) + 1;
			if (ll > max) {
				line_too_long(s);
				off += ll;
				break;
			}
			/* The line without CRLF (a bare LF ends it too). */
			take = ll - 1;
			if (take > 0 && cur[off + take - 1] == '\r')
				take--;
			off += ll;
			if (memchr(cur + off - ll, '\0', take) != NULL) {
				/* NUL cannot be part of any command. */
				reply_error(s, "500 5.5.2 Error: command not "
				    "recognized");
				break;
			}
			memcpy(line_buf, cur + off - ll, take);
			line_buf[take] = '\0';
			/* Credentials do not stay in scratch memory. */
			secret = s->state == SMTP_S_AUTH ||
			    strncasecmp(line_buf, "AUTH ", 5) == 0;
			do_command(s, line_buf);
			if (secret)
				OPENSSL_cleanse(line_buf, take);
			if (s->starttls) {
				s->starttls = false;
				*ev = SMTP_EV_STARTTLS;
				return off;
			}
			break;
		}
		/* Credentials decoded: the engine checks them. */
		if (s->state == SMTP_S_AUTH_WAIT && *ev == SMTP_EV_NONE)
			*ev = SMTP_EV_AUTH;
		/* A zero-length BDAT chunk ends without any input. */
		if (s->state == SMTP_S_BDAT && s->bdat_left == 0)
			*ev = bdat_chunk_done(s);
		/* A reply did not fit: stop here (not while a commit waits). */
		if (s->failed && s->state != SMTP_S_COMMIT)
			enter_state(s, SMTP_S_QUIT);
		if (*ev != SMTP_EV_NONE)
			return off;
		if (s->state == SMTP_S_QUIT) {
			*ev = SMTP_EV_CLOSE;
			return len;
		}
	}
	return off;
}

/*
 * Input that cannot be kept (past in's ceiling, or no memory) ends the
 * session: what it said can no longer be answered in order.
 */
static enum smtp_event
input_overflow(struct smtp_session *s, int err)
{
	log_warn("%s: input not kept (%s): closing", s->client_addr,
	    strerror(-err));
	if (err == -ENOBUFS)
		reply(s, "421 4.7.0 %s Error: too much pipelined input",
		    s->cfg->hostname);
	else
		reply(s, "421 4.3.0 %s Error: out of memory", s->cfg->hostname);
	enter_state(s, SMTP_S_QUIT);
	return SMTP_EV_CLOSE;
}

/*
 * RFC 3207 5: what the client sent behind STARTTLS, before the handshake,
 * is dropped unread; were it kept, a man in the middle could inject
 * commands that would then run as if sent over TLS.
 */
static void
starttls_discard(struct smtp_session *s, size_t n)
{
	buf_reset(&s->in);
	s->skip_line = false;
	if (n > 0)
		log_info("%s: %zu byte(s) sent behind STARTTLS discarded",
		    s->client_addr, n);
}

enum smtp_event
smtp_session_input(struct smtp_session *s, const char *p, size_t n)
{
	enum smtp_event ev;
	size_t used;

	int rc;

	if (s->failed && s->state != SMTP_S_COMMIT)
		enter_state(s, SMTP_S_QUIT);
	if (s->state == SMTP_S_QUIT)
		return SMTP_EV_CLOSE;
	if (s->in.len > 0 || smtp_session_blocked(s)) {
		/* Earlier input waits, so the new bytes queue behind it. */
		if (n > 0 && (rc = buf_append(&s->in, p, n)) < 0)
			return input_overflow(s, rc);
		if (smtp_session_blocked(s))
			return SMTP_EV_NONE;
		used = consume(s, s->in.data, s->in.len, &ev);
		if (ev == SMTP_EV_STARTTLS)
			starttls_discard(s, s->in.len - used);
		else
			buf_consume(&s->in, used);
	} else {
		used = consume(s, p, n, &ev);
		if (ev == SMTP_EV_STARTTLS)
			starttls_discard(s, n - used);
		else if (used < n && ev != SMTP_EV_CLOSE &&
		    (rc = buf_append(&s->in, p + used, n - used)) < 0)
			return input_overflow(s, rc);
	}
	if (s->failed && s->state != SMTP_S_COMMIT)
		enter_state(s, SMTP_S_QUIT);
	if ((ev == SMTP_EV_NONE || ev == SMTP_EV_AUTH) &&
	    s->state == SMTP_S_QUIT)
		ev = SMTP_EV_CLOSE;
	return ev;
}

/* Printable ASCII only: the strings go into a header field. */
static void
copy_token(char *dst, size_t n, const char *src)
{
	size_t i;

	for (i = 0; i + 1 < n && src[i] != '\0'; i++)
		dst[i] = src[i] > ' ' && src[i] < 0x7f ? src[i] : '_';
	dst[i] = '\0';
}

void
smtp_session_tls_started(struct smtp_session *s, const char *version,
    const char *cipher, int bits)
{
	assert(!s->tls);
	s->tls = true;
	copy_token(s->tls_version, sizeof(s->tls_version), version);
	copy_token(s->tls_cipher, sizeof(s->tls_cipher), cipher);
	s->tls_bits = bits > 0 && bits < UINT16_MAX ? (uint16_t)bits : 0;
}

const char *
smtp_session_protocol(const struct smtp_session *s)
{
	/* Indexed by esmtp, tls, authenticated. */
	static const char *const names[2][2][2] = {
		{ { "SMTP", "SMTPA" }, { "SMTPS", "SMTPSA" } },
		{ { "ESMTP", "ESMTPA" }, { "ESMTPS", "ESMTPSA" } },
	};

	return names[s->esmtp][s->tls][s->authenticated];
}

void
smtp_session_timeout(struct smtp_session *s)
{
	reply(s, "421 4.4.2 %s Error: timeout exceeded", s->cfg->hostname);
	enter_state(s, SMTP_S_QUIT);
}

void
smtp_session_command_timeout(struct smtp_session *s)
{
	reply(s, "421 4.4.2 %s Error: command not completed in time",
	    s->cfg->hostname);
	enter_state(s, SMTP_S_QUIT);
}

bool
smtp_session_partial_command(const struct smtp_session *s)
{
	switch (s->state) {
	case SMTP_S_INIT:
	case SMTP_S_READY:
	case SMTP_S_MAIL:
	case SMTP_S_RCPT:
	case SMTP_S_BDAT_WAIT:
	case SMTP_S_AUTH:
		/* consume() leaves only an incomplete line in `in`. */
		return s->in.len > 0 || s->skip_line;
	default:
		return false;
	}
}

enum smtp_event
smtp_session_shutdown(struct smtp_session *s)
{
	s->shutting_down = true;
	if (smtp_session_in_transaction(s) || s->state == SMTP_S_QUIT)
		return SMTP_EV_NONE;
	reply(s, "421 4.3.2 %s Service shutting down", s->cfg->hostname);
	enter_state(s, SMTP_S_QUIT);
	return SMTP_EV_CLOSE;
}
