/*
 * fuzz_smtp_session.c - libFuzzer target: arbitrary client bytes into an
 * SMTP session, split into reads at positions the input chooses.
 *
 * The first byte picks the session's limits and its listener's AUTH and
 * sender policy; after that, each 0xFE byte marks a read boundary.
 * Commits alternate between success and failure, AUTH checks between
 * every verdict the engine can give. The input's length modulo 3 picks
 * the listener's TLS policy (none, starttls, required); when STARTTLS is
 * taken the next read is as if after the handshake.
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
	static const struct smtp_pat domains[] = { { "b.c" }, { ".e.f" } };
	static const struct smtp_pat allowed[] = { { "a@b.c" }, { "@e.f" } };
	static const enum smtp_auth_result verdicts[] = { SMTP_AUTH_OK,
	    SMTP_AUTH_FAILED, SMTP_AUTH_TEMPFAIL, SMTP_AUTH_FAILED,
	    SMTP_AUTH_LOCKED };
	struct smtp_sender_id id = { NULL, allowed, 2 };
	struct smtp_listen_policy pol = { 0 };
	enum smtp_event ev = SMTP_EV_NONE;
	size_t off = 1, end;
	unsigned commits = 0, auths = 0;

	if (size < 1)
		return 0;
	smtp_server_cfg_init(&cfg, "fuzz.test", 64 + (data[0] & 0x3f) * 16,
	    1 + (data[0] & 3), 512 + (data[0] >> 6) * 100, 50);
	cfg.relay_domains = domains;
	cfg.nrelay_domains = 2;
	pol.auth = (enum smtp_auth_mode)((data[0] >> 4) % 3);
	pol.auth_insecure = (data[0] & 4) != 0;
	pol.senders = (enum smtp_sender_rule)((data[0] >> 2) % 3);
	memset(&s, 0, sizeof(s));
	pol.tls = size % 3 == 0 ? SMTP_TLS_NONE : size % 3 == 1 ?
	    SMTP_TLS_STARTTLS : SMTP_TLS_REQUIRED;
	smtp_session_init(&s, &cfg, &pol, (struct sockaddr *)&sin,
	    data[0] & 0x80, &ids);
	/* Over TLS from the start (as implicit TLS), unless STARTTLS may. */
	s.tls = pol.tls == SMTP_TLS_NONE && (data[0] & 8) != 0;
	smtp_session_greet(&s);
	while (off < size && ev != SMTP_EV_CLOSE) {
		const uint8_t *cut = memchr(data + off, 0xfe, size - off);
		end = cut ? (size_t)(cut - data) : size;
		ev = smtp_session_input(&s, (const char *)data + off, end - off);
		off = cut ? end + 1 : size;
		while (ev == SMTP_EV_COMMIT || ev == SMTP_EV_STARTTLS ||
		    ev == SMTP_EV_AUTH) {
			if (ev == SMTP_EV_AUTH) {
				/* Only decoded credentials, offered AUTH. */
				assert(s.state == SMTP_S_AUTH_WAIT);
				assert(smtp_session_auth_offered(&s));
				assert(s.auth_user[0] != '\0');
				assert(s.auth_pass[0] != '\0');
				ev = smtp_session_auth_done(&s,
				    verdicts[auths++ % 5], &id);
				/* Wiped, unless a pipelined AUTH after a
				 * failed one brought the next password. */
				assert(ev == SMTP_EV_AUTH ||
				    s.auth_pass[0] == '\0');
				continue;
			}
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
