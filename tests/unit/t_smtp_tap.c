/*
 * Description: the session's data tap and prepend, which DKIM signing
 * rests on. The tap sees exactly the client's stored bytes (after
 * dot-unstuffing, without our Received: header), whatever the input's
 * split (whole, byte by byte, 7-byte pieces), for DATA and for BDAT, with
 * a start call (NULL, 0) per message; a refused message's bytes end with
 * no commit. smtp_session_prepend() puts fields in front of the message
 * while it waits for the queue, paid from the memory budget (refused when
 * the budget cannot pay). SMTP_COMMIT_SIGNFAIL answers 451 4.3.0.
 */
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/budget.h"
#include "../../proto/smtp_server.h"
#include "check.h"

static uint64_t last_id;

static uint64_t
next_id(void *ctx, uint64_t now_ms)
{
	(void)now_ms;
	return ++*(uint64_t *)ctx;
}

static const struct smtp_id_source ids = { next_id, &last_id };

struct tapped {
	struct buf bytes;
	unsigned starts;
};

static void
tap(void *ctx, struct smtp_session *s, const char *p, size_t n)
{
	struct tapped *t = ctx;

	(void)s;
	if (p == NULL) {
		CHECK(n == 0);
		t->starts++;
		buf_reset(&t->bytes);
		return;
	}
	CHECK(buf_append(&t->bytes, p, n) == 0);
}

static void
start(struct smtp_session *s, struct smtp_server_cfg *cfg, struct tapped *t,
    struct budget *mem)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };

	smtp_server_cfg_init(cfg, "mx.test", 100000, 10, 512, 20);
	cfg->data_tap = tap;
	cfg->tap_ctx = t;
	cfg->memory = mem;
	memset(s, 0, sizeof(*s));
	smtp_session_init(s, cfg, NULL, (struct sockaddr *)&sin, true, &ids);
	CHECK(smtp_session_greet(s) == SMTP_EV_NONE);
}

/* Feed in pieces of step (0: whole); the event of the last piece. */
static enum smtp_event
feed(struct smtp_session *s, const char *in, size_t step)
{
	size_t n = strlen(in), i;
	enum smtp_event ev = SMTP_EV_NONE;

	if (step == 0)
		return smtp_session_input(s, in, n);
	for (i = 0; i < n && ev == SMTP_EV_NONE; i += step)
		ev = smtp_session_input(s, in + i, n - i < step ? n - i : step);
	return ev;
}

/* The stored message without our Received: header (its 3 lines). */
static const char *
client_part(const struct smtp_session *s)
{
	const char *p = s->msg.data;

	for (int k = 0; k < 3; k++)
		p = strstr(p, "\r\n") + 2;
	return p;
}

static const char data_in[] =
    "EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\n"
    "From: a@b.c\r\nSubject: x\r\n\r\n..dot\r\n.\r\n";
static const char data_stored[] =
    "From: a@b.c\r\nSubject: x\r\n\r\n.dot\r\n";

int
main(void)
{
	static const size_t steps[] = { 0, 1, 7 };
	struct smtp_server_cfg cfg;
	struct smtp_session s;
	struct tapped t = { 0 };
	struct budget mem;
	static const char sig[] = "DKIM-Signature: v=1; b=x\r\n";

	budget_init(&mem, 1u << 20);
	for (size_t k = 0; k < sizeof(steps) / sizeof(steps[0]); k++) {
		printf("RUN DATA in pieces of %zu\n", steps[k]);
		start(&s, &cfg, &t, &mem);
		CHECK(feed(&s, data_in, steps[k]) == SMTP_EV_COMMIT);
		CHECK(t.starts == k + 1);
		CHECK(t.bytes.len == strlen(data_stored) &&
		    memcmp(t.bytes.data, data_stored, t.bytes.len) == 0);
		CHECK(s.msg.len - (size_t)(client_part(&s) - s.msg.data) ==
		    strlen(data_stored));
		CHECK(memcmp(client_part(&s), data_stored,
		    strlen(data_stored)) == 0);
		/* Prepend, then commit: the fields lead the message. */
		CHECK(smtp_session_prepend(&s, sig, strlen(sig)));
		CHECK(memcmp(s.msg.data, sig, strlen(sig)) == 0);
		CHECK(strncmp(s.msg.data + strlen(sig), "Received: ", 10) == 0);
		CHECK(smtp_session_commit_done(&s, SMTP_COMMIT_OK) ==
		    SMTP_EV_NONE);
		smtp_session_free(&s);
	}

	printf("RUN BDAT in two chunks\n");
	start(&s, &cfg, &t, &mem);
	t.starts = 0;
	CHECK(feed(&s, "EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\n"
	    "BDAT 11\r\nFrom: a@b\r\nBDAT 8 LAST\r\n\r\nno-eol", 3) ==
	    SMTP_EV_COMMIT);
	CHECK(t.starts == 1);
	CHECK(t.bytes.len == 19 &&
	    memcmp(t.bytes.data, "From: a@b\r\n\r\nno-eol", 19) == 0);
	printf("RUN SIGNFAIL answers 451 4.3.0\n");
	buf_reset(&s.out);
	CHECK(smtp_session_commit_done(&s, SMTP_COMMIT_SIGNFAIL) ==
	    SMTP_EV_NONE);
	CHECK(s.out.len > 10 && memcmp(s.out.data, "451 4.3.0 ", 10) == 0);
	smtp_session_free(&s);

	printf("RUN a refused message: bytes, then no commit\n");
	start(&s, &cfg, &t, &mem);
	CHECK(feed(&s, "EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\n"
	    "DATA\r\nbare\nlf\r\n.\r\n", 0) == SMTP_EV_NONE);
	CHECK(t.bytes.len > 0);
	CHECK(strstr(s.out.data, "554 5.6.0") != NULL);
	smtp_session_free(&s);

	printf("RUN prepend refused when the budget cannot pay\n");
	budget_init(&mem, 1u << 20);
	start(&s, &cfg, &t, &mem);
	CHECK(feed(&s, data_in, 0) == SMTP_EV_COMMIT);
	{
		size_t len = s.msg.len, n = (size_t)s.mem_held - len + 4096;
		char *big = calloc(1, n);

		CHECK_FATAL(big != NULL);
		/* Everything left of the budget is someone else's now. */
		while (budget_take(&mem, 1024))
			;
		CHECK(!smtp_session_prepend(&s, big, n));
		CHECK(s.msg.len == len);
		CHECK(strncmp(s.msg.data, "Received: ", 10) == 0);
		/* A small one fits in what the session holds already. */
		CHECK(smtp_session_prepend(&s, sig, strlen(sig)));
		free(big);
	}
	smtp_session_free(&s);
	buf_free(&t.bytes);
	return check_done();
}
