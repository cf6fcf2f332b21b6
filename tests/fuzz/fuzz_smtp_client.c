/*
 * fuzz_smtp_client.c - libFuzzer target: arbitrary server bytes into an
 * outbound SMTP/LMTP client in the middle of a transaction.
 *
 * The first byte picks the set-up: LMTP or SMTP, AUTH configured or not,
 * which extensions the scripted EHLO/LHLO reply offers (PIPELINING, SIZE,
 * 8BITMIME and SMTPUTF8) and how many recipients each message has. A
 * well-formed greeting and EHLO reply are fed first, so the client has
 * sent its first message (or AUTH) when the fuzzer's bytes arrive; after
 * that, each 0xFE byte marks a read boundary. The fake engine sends up to
 * three messages (one needing SMTPUTF8, one 8-bit) and then QUIT. An
 * input of odd length sets pipeline_depth 2: with BDAT the next message
 * goes out behind the one under way whenever the client takes it, and
 * the callbacks must keep to their order, message by message.
 *
 * Properties checked beyond "no crash": every recipient of every message
 * handed over gets exactly one rcpt_done with a 2xx/4xx/5xx code before
 * its message_done; nothing fires after failed; input returns CLOSE
 * exactly when the client is closed; the output is whole CRLF lines; and
 * after a final smtp_client_eof() no message is left unfinished.
 */
#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../../proto/smtp_client.h"
#include "fuzz_util.h"

#define FZ_RCPT_MAX 8

struct fz {
	struct smtp_client c;
	unsigned next;		/* messages handed over so far */
	int cur;		/* message under way, -1 none */
	/* Pipelined behind cur (cfg.pipeline_depth 2), and the one a
	 * pipelined send is about while it runs. */
	int later[3];
	unsigned nlater;
	int psend;
	uint32_t nrcpt;
	uint8_t seen[3][FZ_RCPT_MAX];
	uint32_t nseen[3];
	int failed;
};

static const char *const rcpts[FZ_RCPT_MAX] = {
	"r0@a.test", "r1@a.test", "r2@b.test", "r3@b.test",
	"r4@c.test", "r5@c.test", "r6@d.test", "r7@d.test",
};

static const char body[] = "Subject: fuzz\r\n\r\n.leading dot\r\n..\r\n"
    "last line";

static void
fz_msg(struct fz *f, struct smtp_client_msg *m)
{
	memset(m, 0, sizeof(*m));
	m->sender = f->next == 1 ? "" : "s@fuzz.test";
	m->rcpt = rcpts;
	m->nrcpt = f->nrcpt;
	m->data = body;
	m->len = sizeof(body) - 1;
	m->smtputf8 = f->next == 1;
	m->body = f->next == 2 ? SMTP_BODY_8BITMIME : SMTP_BODY_7BIT;
}

/* Messages behind the one under way while the client takes them. */
static void
fz_pipe(struct fz *f)
{
	struct smtp_client_msg m;
	int rc;

	while (f->cur >= 0 && f->next < 3 && !smtp_client_closed(&f->c) &&
	    smtp_client_can_pipeline(&f->c)) {
		fz_msg(f, &m);
		f->psend = (int)f->next++;
		rc = smtp_client_send(&f->c, &m);
		f->psend = -1;
		assert(rc == 0 || rc == 1);
		if (rc == 0)
			f->later[f->nlater++] = (int)f->next - 1;
	}
}

static void
fz_ready(void *arg)
{
	struct fz *f = arg;
	struct smtp_client_msg m;
	int rc;

	assert(!f->failed && f->cur == -1 && f->nlater == 0);
	while (f->next < 3) {
		fz_msg(f, &m);
		f->cur = (int)f->next++;
		rc = smtp_client_send(&f->c, &m);
		assert(rc == 0 || rc == 1);
		if (rc == 0)
			return;
		assert(f->cur == -1);	/* refused locally: all reported */
	}
	smtp_client_quit(&f->c);
}

static void
fz_rcpt_done(void *arg, uint32_t i, const struct smtp_client_reply *r)
{
	struct fz *f = arg;
	int cls = r->code / 100, cur = f->psend >= 0 ? f->psend : f->cur;

	assert(!f->failed && cur >= 0);
	assert(i < f->nrcpt && !f->seen[cur][i]);
	assert(cls == 2 || cls == 4 || cls == 5);
	assert(r->enhanced[0] == '0' + cls);
	assert(strlen(r->text) <= SMTP_CLIENT_TEXT_MAX);
	f->seen[cur][i] = 1;
	f->nseen[cur]++;
}

static void
fz_message_done(void *arg, const struct smtp_client_reply *r,
    const struct smtp_client_tally *t)
{
	struct fz *f = arg;

	int cur = f->psend >= 0 ? f->psend : f->cur;

	(void)r;
	assert(!f->failed && cur >= 0);
	assert(f->nseen[cur] == f->nrcpt);
	assert(t->delivered + t->deferred + t->bounced == f->nrcpt);
	if (f->psend >= 0)
		return;
	/* The next in flight is the one the callbacks are about now. */
	f->cur = -1;
	if (f->nlater > 0) {
		f->cur = f->later[0];
		memmove(f->later, f->later + 1, --f->nlater * sizeof(int));
	}
}

static void
fz_failed(void *arg, enum smtp_client_stage stage,
    const struct smtp_client_reply *r)
{
	struct fz *f = arg;

	(void)stage;
	assert(!f->failed && f->cur == -1 && f->nlater == 0);
	assert(r->code >= 200 && r->code <= 599);
	assert(smtp_client_closed(&f->c));
	f->failed = 1;
}

static const struct smtp_client_cb fz_cb = {
	.ready = fz_ready,
	.rcpt_done = fz_rcpt_done,
	.message_done = fz_message_done,
	.failed = fz_failed,
};

static void
feed(struct fz *f, const char *p, size_t n)
{
	enum smtp_client_event ev = smtp_client_input(&f->c, p, n);

	assert((ev == SMTP_CLIENT_EV_CLOSE) == smtp_client_closed(&f->c));
	assert((ev == SMTP_CLIENT_EV_STARTTLS) == (f->c.state == SMTP_C_TLS));
	fz_check_out(&f->c.out);
	/* The engine's handshake: done, or failed on an odd length. */
	if (ev == SMTP_CLIENT_EV_STARTTLS) {
		assert(f->c.out.len == 0);
		if (n & 1)
			smtp_client_tls_failed(&f->c, "fuzz");
		else
			smtp_client_tls_done(&f->c);
		fz_check_out(&f->c.out);
	}
	fz_pipe(f);
	fz_check_out(&f->c.out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_client_cfg cfg = { .helo_name = "fuzz.test" };
	static struct fz f;
	char ehlo[256];
	size_t off = 1, end;
	int n;

	if (size < 1)
		return 0;
	cfg.lmtp = data[0] & 1;
	/* BDAT when PIPELINING is offered too (CHUNKING always is). */
	cfg.chunking = (data[0] & 16) != 0;
	if (data[0] & 2) {
		cfg.auth_user = "user";
		cfg.auth_pass = "pass";
		cfg.auth_insecure = (data[0] & 1) != 0;
	}
	/* STARTTLS offered (below) and wanted, or required. */
	cfg.starttls = (data[0] & 8) ? ((data[0] & 2) ? SMTP_CLIENT_STARTTLS_MUST :
	    SMTP_CLIENT_STARTTLS_MAY) : SMTP_CLIENT_STARTTLS_NEVER;
	/* Odd inputs: two transactions in flight when BDAT is used. */
	cfg.pipeline_depth = (size & 1) ? 2 : 1;
	memset(&f, 0, sizeof(f));
	f.cur = -1;
	f.psend = -1;
	f.nrcpt = 1 + (data[0] >> 5);
	smtp_client_init(&f.c, &cfg, &fz_cb, &f);
	feed(&f, "220 fuzz ESMTP\r\n", 16);
	n = snprintf(ehlo, sizeof(ehlo), "250-fuzz\r\n%s%s%s%s%s250-CHUNKING\r\n"
	    "250 %s\r\n",
	    (data[0] & 12) == 12 ? "250-STARTTLS\r\n" : "",
	    data[0] & 4 ? "250-PIPELINING\r\n" : "",
	    data[0] & 8 ? "250-SIZE 100\r\n" : "",
	    data[0] & 16 ? "250-8BITMIME\r\n250-SMTPUTF8\r\n" : "",
	    data[0] & 2 ? "250-AUTH PLAIN LOGIN\r\n" : "",
	    "ENHANCEDSTATUSCODES");
	assert(n > 0 && (size_t)n < sizeof(ehlo));
	feed(&f, ehlo, (size_t)n);
	while (off < size && !smtp_client_closed(&f.c)) {
		const uint8_t *cut = memchr(data + off, 0xfe, size - off);
		end = cut ? (size_t)(cut - data) : size;
		feed(&f, (const char *)data + off, end - off);
		off = cut ? end + 1 : size;
	}
	smtp_client_eof(&f.c);
	fz_check_out(&f.c.out);
	assert(smtp_client_closed(&f.c));
	assert(f.cur == -1);
	smtp_client_free(&f.c);
	return 0;
}
