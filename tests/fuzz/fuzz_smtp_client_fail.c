/*
 * fuzz_smtp_client_fail.c - libFuzzer target: the outbound client's
 * failure paths, with the failure injected at every stage of a session.
 *
 * Description: where fuzz_smtp_client starts mid-transaction with raw
 * bytes, this target plays a whole session from the greeting as a script
 * of server events, one input byte each, so that the fuzzer reaches every
 * state easily and then fails it: the reply the client hopes for (220,
 * the EHLO/LHLO extensions, 334/235, 250, 354, 221), a 4xx, a 5xx, a 421,
 * the connection lost (smtp_client_eof), a timeout (smtp_client_timeout),
 * raw bytes from the input, a reply split across reads, a malformed or
 * over-long line, a partial line. The first two bytes pick SMTP or LMTP,
 * AUTH, CHUNKING and which extensions the EHLO reply offers; whenever the
 * client is ready, the next byte decides between QUIT and a message (1-8
 * recipients, SMTPUTF8, 8-bit, over the SIZE limit, or a bad address that
 * must be refused with -EINVAL). Up to three sessions run on the same
 * struct smtp_client (smtp_client_init() keeps its buffers).
 *
 * Properties checked beyond "no crash":
 * - every recipient of every message smtp_client_send() took (0 or 1)
 *   gets exactly one rcpt_done (2xx, 4xx or 5xx, its enhanced code of the
 *   same class, printable text within SMTP_CLIENT_TEXT_MAX), then exactly
 *   one message_done whose tally adds up; -EINVAL fires nothing;
 * - a lost connection or a timeout gives every open recipient 451 4.4.2
 *   made up by the client, a 421 gives them the server's 421; either way
 *   failed follows with the stage the client was in, and is the last
 *   callback; a session that ends with failed has no message open;
 * - failed fires at most once; smtp_client_input() returns CLOSE exactly
 *   when the client is closed, and after that nothing fires, whatever
 *   arrives; smtp_client_waiting() is NONE exactly when ready or closed;
 * - the output is whole CRLF lines; at the end of the script the session
 *   is closed and nothing is left unfinished.
 */
#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../../proto/smtp_client.h"
#include "../../queue/queue.h"
#include "fuzz_util.h"

#define FZ_RCPT_MAX	8
#define FZ_MSGS_MAX	4	/* per session */
#define FZ_SESSIONS	3
#define FZ_LONG		5000	/* more than SMTP_CLIENT_LINE_MAX */

static_assert(FZ_LONG > SMTP_CLIENT_LINE_MAX, "an over-long line");

/* What the event being injected must do to the open recipients. */
enum expect {
	EXPECT_ANY = 0,
	EXPECT_LOST,		/* 451 4.4.2, local */
	EXPECT_421,		/* the server's 421 */
};

struct fz {
	struct smtp_client c;
	const uint8_t *data;
	size_t size, off;	/* the script and where it is */
	uint8_t flags;		/* data[0] */
	uint8_t ext;		/* data[1]: extensions the EHLO reply offers */
	unsigned sent;		/* messages taken by smtp_client_send() */
	unsigned done;		/* message_done seen */
	bool open;		/* a message under way */
	uint32_t nrcpt;
	uint8_t seen[FZ_RCPT_MAX];
	uint32_t nseen;
	struct smtp_client_tally tally;
	bool failed;
	enum expect expect;
	int expect_stage;	/* -1: any */
};

static const char *const rcpts[FZ_RCPT_MAX] = {
	"r0@a.test", "r1@a.test", "r2@b.test", "r3@b.test",
	"r4@c.test", "r5@c.test", "r6@d.test", "r7@d.test",
};
static const char *const bad_rcpts[2] = { "ok@a.test", "x>y@b.test" };

static const char body[] = "Subject: fuzz\r\n\r\n.dot\r\nline\r\n";

static int
next_byte(struct fz *f)
{
	return f->off < f->size ? f->data[f->off++] : -1;
}

/* The stage a failure in each state reports (smtp_client.h); -1: none. */
static const int stage_for[SMTP_C_CLOSED + 1] = {
	[SMTP_C_GREETING] = SMTP_CLIENT_STAGE_GREETING,
	[SMTP_C_EHLO] = SMTP_CLIENT_STAGE_EHLO,
	[SMTP_C_HELO] = SMTP_CLIENT_STAGE_EHLO,
	[SMTP_C_LHLO] = SMTP_CLIENT_STAGE_EHLO,
	[SMTP_C_STARTTLS] = SMTP_CLIENT_STAGE_TLS,
	[SMTP_C_TLS] = SMTP_CLIENT_STAGE_TLS,
	[SMTP_C_AUTH] = SMTP_CLIENT_STAGE_AUTH,
	[SMTP_C_READY] = SMTP_CLIENT_STAGE_IDLE,
	[SMTP_C_MAIL] = SMTP_CLIENT_STAGE_MAIL,
	[SMTP_C_RCPT] = SMTP_CLIENT_STAGE_RCPT,
	[SMTP_C_DATA] = SMTP_CLIENT_STAGE_DATA,
	[SMTP_C_DOT] = SMTP_CLIENT_STAGE_DOT,
	[SMTP_C_BDAT] = SMTP_CLIENT_STAGE_BDAT,
	[SMTP_C_RSET] = SMTP_CLIENT_STAGE_RSET,
	[SMTP_C_QUIT] = -1,
	[SMTP_C_CLOSED] = -1,
};

static void
check_reply(const struct smtp_client_reply *r)
{
	int cls = r->code / 100;
	size_t n = strlen(r->text);

	assert(r->code >= 200 && r->code <= 599);
	assert(r->enhanced[0] == '0' + cls);
	assert(n <= SMTP_CLIENT_TEXT_MAX);
	for (size_t i = 0; i < n; i++)
		assert((unsigned char)r->text[i] >= 0x20 &&
		    r->text[i] != 0x7f);
}

static void
fz_ready(void *arg)
{
	struct fz *f = arg;
	struct smtp_client_msg m;
	int b, rc;

	assert(!f->failed && !f->open);
	assert(smtp_client_ready(&f->c));
	assert(smtp_client_waiting(&f->c) == SMTP_CLIENT_WAIT_NONE);
	while ((b = next_byte(f)) >= 0 && f->sent < FZ_MSGS_MAX &&
	    (b & 0x80) == 0) {
		memset(&m, 0, sizeof(m));
		m.sender = b & 0x40 ? "" : "s@fuzz.test";
		m.nrcpt = 1 + (b & 7);
		m.rcpt = rcpts;
		m.data = body;
		m.len = sizeof(body) - 1;
		m.smtputf8 = b & 8;
		m.body = b & 16 ? QUEUE_BODY_8BITMIME : QUEUE_BODY_7BIT;
		m.size = b & 32 ? 1000000 : 0;	/* over "SIZE 1000" */
		if ((b & 0x47) == 0x47) {
			/* An address that would end the command early. */
			m.rcpt = bad_rcpts;
			m.nrcpt = 2;
			assert(smtp_client_send(&f->c, &m) == -EINVAL);
			assert(smtp_client_ready(&f->c));
			continue;
		}
		f->open = true;
		f->nrcpt = m.nrcpt;
		memset(f->seen, 0, sizeof(f->seen));
		f->nseen = 0;
		memset(&f->tally, 0, sizeof(f->tally));
		f->sent++;
		rc = smtp_client_send(&f->c, &m);
		assert(rc == 0 || rc == 1);
		if (rc == 0)
			return;
		/* Refused locally: reported before the return, still ready. */
		assert(!f->open && smtp_client_ready(&f->c));
	}
	smtp_client_quit(&f->c);
}

static void
fz_rcpt_done(void *arg, uint32_t i, const struct smtp_client_reply *r)
{
	struct fz *f = arg;
	int cls = r->code / 100;

	assert(!f->failed && f->open);
	assert(i < f->nrcpt && !f->seen[i]);
	assert(cls == 2 || cls == 4 || cls == 5);
	check_reply(r);
	if (f->expect == EXPECT_LOST)
		assert(r->code == 451 && r->local &&
		    strcmp(r->enhanced, "4.4.2") == 0);
	else if (f->expect == EXPECT_421)
		assert(r->code == 421 && !r->local);
	f->seen[i] = 1;
	f->nseen++;
	if (cls == 2)
		f->tally.delivered++;
	else if (cls == 4)
		f->tally.deferred++;
	else
		f->tally.bounced++;
}

static void
fz_message_done(void *arg, const struct smtp_client_reply *r,
    const struct smtp_client_tally *t)
{
	struct fz *f = arg;

	assert(!f->failed && f->open);
	check_reply(r);
	assert(f->nseen == f->nrcpt);
	assert(t->delivered == f->tally.delivered);
	assert(t->deferred == f->tally.deferred);
	assert(t->bounced == f->tally.bounced);
	f->open = false;
	f->done++;
}

static void
fz_failed(void *arg, enum smtp_client_stage stage,
    const struct smtp_client_reply *r)
{
	struct fz *f = arg;

	assert(!f->failed && !f->open);
	check_reply(r);
	assert(r->code / 100 == 4 || r->code / 100 == 5);
	assert(smtp_client_closed(&f->c));
	assert(smtp_client_strstage(stage) != NULL);
	if (f->expect_stage >= 0)
		assert((int)stage == f->expect_stage);
	f->failed = true;
}

static const struct smtp_client_cb fz_cb = {
	.ready = fz_ready,
	.rcpt_done = fz_rcpt_done,
	.message_done = fz_message_done,
	.failed = fz_failed,
};

static void
check_state(struct fz *f)
{
	enum smtp_client_wait w = smtp_client_waiting(&f->c);

	assert((w == SMTP_CLIENT_WAIT_NONE) ==
	    (smtp_client_ready(&f->c) || smtp_client_closed(&f->c)));
	assert(!f->failed || smtp_client_closed(&f->c));
	fz_check_out(&f->c.out);
}

static void
feed(struct fz *f, const char *p, size_t n)
{
	bool was_closed = smtp_client_closed(&f->c);
	unsigned done = f->done;
	enum smtp_client_event ev = smtp_client_input(&f->c, p, n);

	assert((ev == SMTP_CLIENT_EV_CLOSE) == smtp_client_closed(&f->c));
	if (was_closed)
		assert(f->done == done);
	check_state(f);
}

static void
feed_str(struct fz *f, const char *s)
{
	feed(f, s, strlen(s));
}

/* The EHLO/LHLO reply offering what data[1] says. */
static void
ehlo_reply(struct fz *f, char *out, size_t cap)
{
	int n = snprintf(out, cap, "250-fuzz.test hello\r\n%s%s%s%s%s%s%s"
	    "250 ENHANCEDSTATUSCODES\r\n",
	    f->ext & 1 ? "250-PIPELINING\r\n" : "",
	    f->ext & 2 ? "250-SIZE 1000\r\n" : "",
	    f->ext & 4 ? "250-8BITMIME\r\n" : "",
	    f->ext & 8 ? "250-SMTPUTF8\r\n" : "",
	    f->ext & 16 ? "250-CHUNKING\r\n" : "",
	    f->ext & 32 ? "250-AUTH PLAIN LOGIN\r\n" : "",
	    f->ext & 64 ? "250-AUTH=LOGIN\r\n250-STARTTLS\r\n" : "");

	assert(n > 0 && (size_t)n < cap);
}

/* The reply the client hopes for in its state. */
static void
good_reply(struct fz *f, int param, char *out, size_t cap)
{
	switch (f->c.state) {
	case SMTP_C_GREETING:
		snprintf(out, cap, "220 fuzz.test ESMTP\r\n");
		break;
	case SMTP_C_EHLO:
	case SMTP_C_LHLO:
		ehlo_reply(f, out, cap);
		break;
	case SMTP_C_AUTH:
		snprintf(out, cap, param & 1 ? "334 VXNlcm5hbWU6\r\n" :
		    "235 2.7.0 Authentication successful\r\n");
		break;
	case SMTP_C_DATA:
		snprintf(out, cap, "354 End data with <CR><LF>.<CR><LF>\r\n");
		break;
	case SMTP_C_DOT:
	case SMTP_C_BDAT:
		snprintf(out, cap, "250 2.0.0 Ok: queued\r\n");
		break;
	case SMTP_C_QUIT:
		snprintf(out, cap, "221 2.0.0 Bye\r\n");
		break;
	default:	/* HELO, MAIL, RCPT, RSET; READY: not asked */
		snprintf(out, cap, "250 2.1.0 Ok\r\n");
		break;
	}
}

/* One event of the script; false when the session is over. */
static bool
step(struct fz *f)
{
	char line[1024];
	static char longline[FZ_LONG];
	int op = next_byte(f), param, n;
	enum smtp_client_state st = f->c.state;
	/* No partial line or unfinished multi-line reply before it. */
	bool clean = f->c.in.len == 0 && f->c.rd.lines == 0;

	if (op < 0 || smtp_client_closed(&f->c))
		return false;
	param = op >> 4;
	f->expect = EXPECT_ANY;
	f->expect_stage = -1;
	switch (op & 15) {
	case 0: case 1: case 2: case 3:
		good_reply(f, param, line, sizeof(line));
		feed_str(f, line);
		break;
	case 4:
		feed_str(f, param & 1 ? "451 4.3.0 Try again later\r\n" :
		    "452-4.5.3 Too many\r\n452 4.5.3 recipients\r\n");
		break;
	case 5:
		feed_str(f, param & 1 ? "550 5.1.1 No such user\r\n" :
		    "554 Transaction failed\r\n");
		break;
	case 6:
		if (clean && st != SMTP_C_QUIT) {
			f->expect = EXPECT_421;
			f->expect_stage = stage_for[st];
		}
		feed_str(f, "421 4.3.2 Service shutting down\r\n");
		break;
	case 7:		/* connection lost */
	case 8:		/* timed out */
		if (st != SMTP_C_QUIT) {
			f->expect = EXPECT_LOST;
			f->expect_stage = stage_for[st];
		}
		if ((op & 15) == 7)
			smtp_client_eof(&f->c);
		else
			smtp_client_timeout(&f->c);
		check_state(f);
		assert(smtp_client_closed(&f->c));
		break;
	case 9:		/* raw bytes from the input */
		n = next_byte(f);
		if (n < 0)
			n = 0;
		if ((size_t)n > f->size - f->off)
			n = (int)(f->size - f->off);
		feed(f, (const char *)f->data + f->off, (size_t)n);
		f->off += (size_t)n;
		break;
	case 10:	/* the good reply, split across two reads */
		good_reply(f, param, line, sizeof(line));
		n = (int)strlen(line);
		feed(f, line, (size_t)(param % n));
		feed(f, line + param % n, (size_t)(n - param % n));
		break;
	case 11:
		feed_str(f, param & 1 ? "hello\r\n" : "250-a\r\n354 b\r\n");
		break;
	case 12:
		feed_str(f, param & 1 ? "354 go ahead\r\n" : "334 \r\n");
		break;
	case 13:
		feed_str(f, param & 1 ? "250 ok\n" : "220 again\r\n");
		break;
	case 14:
		memset(longline, '5', sizeof(longline));
		feed(f, longline, sizeof(longline));
		break;
	case 15:
		feed_str(f, param & 1 ? "25" : "4");
		break;
	}
	f->expect = EXPECT_ANY;
	f->expect_stage = -1;
	return !smtp_client_closed(&f->c);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fz f;
	struct smtp_client_cfg cfg = { .helo_name = "client.fuzz.test" };

	if (size < 2)
		return 0;
	smtp_client_free(&f.c);
	memset(&f, 0, sizeof(f));
	f.data = data;
	f.size = size;
	f.off = 2;
	f.flags = data[0];
	f.ext = data[1];
	cfg.lmtp = data[0] & 1;
	cfg.chunking = data[0] & 4;
	if (data[0] & 2) {
		cfg.auth_user = "user";
		cfg.auth_pass = "pass";
		/* No STARTTLS here: AUTH must be allowed in plaintext. */
		cfg.auth_insecure = true;
	}
	for (int s = 0; s < FZ_SESSIONS && (s == 0 || f.off < size); s++) {
		smtp_client_init(&f.c, &cfg, &fz_cb, &f);
		f.failed = false;
		f.expect = EXPECT_ANY;
		f.expect_stage = -1;
		while (step(&f))
			;
		/* What the script left open ends as a lost connection. */
		if (!smtp_client_closed(&f.c)) {
			if (f.c.state != SMTP_C_QUIT)
				f.expect = EXPECT_LOST;
			smtp_client_eof(&f.c);
			f.expect = EXPECT_ANY;
		}
		check_state(&f);
		assert(smtp_client_closed(&f.c));
		assert(!f.open && f.done == f.sent);
		/* Closed: nothing fires whatever arrives. */
		feed_str(&f, "250 2.0.0 late\r\n");
		smtp_client_eof(&f.c);
		smtp_client_timeout(&f.c);
		f.sent = f.done = 0;
	}
	smtp_client_free(&f.c);
	memset(&f.c, 0, sizeof(f.c));
	return 0;
}
