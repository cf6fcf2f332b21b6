/*
 * Description: the inbound session at its buffer ceilings. Input pipelined
 * behind a message waiting for the queue is kept up to the input ceiling;
 * past it the session answers 421 4.7.0 and closes instead of growing. A
 * reply that does not fit in the output buffer leaves no half line: the
 * replies before it stay whole and the session closes. Over TLS the
 * Received: header says ESMTPS (ESMTPSA when authenticated) and names the
 * version, cipher and bits; the protocol the queue stores says the same.
 */
#include <netinet/in.h>
#include <string.h>

#include "../../proto/smtp_server.h"
#include "check.h"

static uint64_t
next_id(void *ctx, uint64_t now_ms)
{
	uint64_t *last = ctx;

	(void)now_ms;
	return ++*last;
}

static uint64_t last_id;
static const struct smtp_id_source ids = { next_id, &last_id };

static void
start(struct smtp_session *s, struct smtp_server_cfg *cfg)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };

	smtp_server_cfg_init(cfg, "mx.test", 100000, 10, 512, 20);
	memset(s, 0, sizeof(*s));
	smtp_session_init(s, cfg, NULL, (struct sockaddr *)&sin, true, &ids);
	CHECK(smtp_session_greet(s) == SMTP_EV_NONE);
}

/* Every line in out ends with CRLF and starts with a reply code. */
static int
whole_lines(const struct buf *out)
{
	size_t i, start = 0;

	for (i = 0; i + 1 < out->len; i++) {
		if (out->data[i] != '\r' || out->data[i + 1] != '\n')
			continue;
		if (i - start < 3 || out->data[start] < '2' ||
		    out->data[start] > '5')
			return 0;
		start = i + 2;
	}
	return start == out->len;
}

static int
ends_with(const struct buf *b, const char *s)
{
	size_t n = strlen(s);

	return b->len >= n && memcmp(b->data + b->len - n, s, n) == 0;
}

static void
pipelined_flood(void)
{
	struct smtp_server_cfg cfg;
	struct smtp_session s;
	struct buf in = { 0 };
	size_t i;

	printf("RUN input past the ceiling while blocked\n");
	start(&s, &cfg);
	CHECK(buf_puts(&in, "EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\n"
	    "DATA\r\nhello\r\n.\r\n") == 0);
	for (i = 0; i < 300000 / 6; i++)
		CHECK(buf_puts(&in, "NOOP\r\n") == 0);
	/* Whole: the message blocks the session, the rest is kept. */
	CHECK(smtp_session_input(&s, in.data, in.len) == SMTP_EV_CLOSE);
	CHECK(ends_with(&s.out, "421 4.7.0 mx.test Error: too much pipelined "
	    "input\r\n"));
	CHECK(s.in.len <= s.in.max);
	CHECK(whole_lines(&s.out));
	smtp_session_free(&s);

	printf("RUN the same input in pieces is served\n");
	start(&s, &cfg);
	for (i = 0; i < in.len; i += 16384) {
		size_t n = in.len - i < 16384 ? in.len - i : 16384;
		enum smtp_event ev = smtp_session_input(&s, in.data + i, n);

		while (ev == SMTP_EV_COMMIT)
			ev = smtp_session_commit_done(&s, SMTP_COMMIT_OK);
		CHECK(ev == SMTP_EV_NONE);
		buf_reset(&s.out);
	}
	CHECK(s.in.len == 0);
	smtp_session_free(&s);
	buf_free(&in);
}

static void
reply_does_not_fit(void)
{
	struct smtp_server_cfg cfg;
	struct smtp_session s;
	enum smtp_event ev;
	size_t i;

	printf("RUN a reply past the output ceiling\n");
	start(&s, &cfg);
	s.out.max = 100;
	ev = SMTP_EV_NONE;
	for (i = 0; i < 20 && ev == SMTP_EV_NONE; i++)
		ev = smtp_session_input(&s, "NOOP\r\n", 6);
	CHECK(ev == SMTP_EV_CLOSE);
	CHECK(s.failed);
	CHECK(whole_lines(&s.out));
	CHECK(ends_with(&s.out, "250 2.0.0 Ok\r\n"));
	CHECK(smtp_session_input(&s, "NOOP\r\n", 6) == SMTP_EV_CLOSE);
	smtp_session_free(&s);
}

static void
received_tls(void)
{
	static const char cmds[] = "EHLO c.example\r\nMAIL FROM:<a@b.c>\r\n"
	    "RCPT TO:<d@e.f>\r\nDATA\r\nhi\r\n.\r\n";
	struct smtp_listen_policy pol = { .tls = SMTP_TLS_IMPLICIT };
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct smtp_server_cfg cfg;
	struct smtp_session s;
	struct buf m = { 0 };

	printf("RUN Received: over TLS\n");
	smtp_server_cfg_init(&cfg, "mx.test", 100000, 10, 512, 20);
	memset(&s, 0, sizeof(s));
	smtp_session_init(&s, &cfg, &pol, (struct sockaddr *)&sin, true, &ids);
	CHECK(strcmp(smtp_session_protocol(&s), "SMTP") == 0);
	smtp_session_tls_started(&s, "TLSv1.3", "TLS_AES_256_GCM_SHA384", 256);
	CHECK(smtp_session_greet(&s) == SMTP_EV_NONE);
	CHECK(smtp_session_input(&s, cmds, sizeof(cmds) - 1) ==
	    SMTP_EV_COMMIT);
	/* Implicit TLS: no STARTTLS offered. */
	CHECK(memmem(s.out.data, s.out.len, "STARTTLS", 8) == NULL);
	CHECK(strcmp(smtp_session_protocol(&s), "ESMTPS") == 0);
	CHECK(buf_append(&m, s.msg.data, s.msg.len) == 0 &&
	    buf_append(&m, "", 1) == 0);
	CHECK(strstr(m.data, "Received: from c.example ([0.0.0.0])\r\n"
	    "\t(version=TLSv1.3 cipher=TLS_AES_256_GCM_SHA384 bits=256)\r\n"
	    "\tby mx.test (sluice) with ESMTPS id ") == m.data);
	s.authenticated = true;
	CHECK(strcmp(smtp_session_protocol(&s), "ESMTPSA") == 0);
	buf_free(&m);
	smtp_session_free(&s);
}

int
main(void)
{
	received_tls();
	pipelined_flood();
	reply_does_not_fit();
	return check_done();
}
