/*
 * Description: SMTP dialogues against the session state machine, checked
 * against golden transcripts. Each tests/golden/smtp/NAME.in is fed whole
 * and then one byte at a time; both runs must give the transcript in
 * NAME.ref (server replies, and each message the session hands to the
 * queue, between [message] and [end]).
 *
 * .in format: one client line per line, sent with CRLF appended unless it
 * ends in \c; escapes \r \n \0 \\ \xHH; lines starting "# " are comments;
 * "%key=value" lines set the session up: relay, recipients, size, errors,
 * line, hops, junk, commit (ok, nospace, ioerr), tls (none, starttls,
 * required: the listener's policy); auth (off, optional, required),
 * insecure (AUTH without TLS), overtls (the session runs over TLS from the
 * start), senders (any, domain, email); relaydomain (one pattern a line)
 * and allowed (one of the user's allowed_from a line). A "%handshake" line marks where the
 * client's TLS handshake would be: when the session answers STARTTLS the
 * transcript says [starttls], what is left before the mark is dropped
 * (the engine would hand it to TLS) and the session is told TLS started.
 * AUTH is answered as the engine would: alice/secret is a good login,
 * "busy" a temporary failure, "locked" an address over its failures,
 * anything else a bad password; "[auth USER]" marks each check.
 * SLUICE_GOLDEN_UPDATE=1 rewrites the .ref files from the current output.
 */
#include <dirent.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../deliver/route.h"
#include "../../engine/inbound.h"
#include "../../proto/smtp_server.h"
#include "check.h"

#define GOLDEN_DIR "tests/golden/smtp"
#define GOLDEN_CUTS 8

#define SETUP_PATS 8

struct setup {
	struct route_table routes;
	struct smtp_listen_policy pol;
	int tls;
	struct smtp_pat relay_domains[SETUP_PATS], allowed[SETUP_PATS];
	size_t nrelay_domains, nallowed;
	int relay;
	unsigned recipients, errors, line, hops, junk;
	unsigned long long size;
	enum smtp_commit_result commit;
	size_t cuts[GOLDEN_CUTS];	/* %handshake offsets in the wire */
	unsigned ncuts;
};

/* "%route=PATTERN TRANSPORT" (the transport may contain spaces). */
static void
add_route(struct setup *su, const char *line)
{
	char pattern[256], transport[512], err[256];
	struct route_transport t;
	struct route_policy pol = route_policy_defaults();
	const char *eol = strchr(line, '\n');
	int n = eol ? (int)(eol - line) : (int)strlen(line);

	if (sscanf(line, "%%route=%255s %511[^\n]", pattern, transport) != 2 ||
	    route_parse_transport(transport, &t, err, sizeof(err)) != 0 ||
	    route_table_add(&su->routes, pattern, &t, &pol, err,
	    sizeof(err)) != 0) {
		fprintf(stderr, "bad directive: %.*s\n", n, line);
		exit(T_EXIT_FAIL);
	}
}

/* Turn the .in text into the bytes a client sends, and read directives. */
static void
parse_input(const char *text, struct buf *wire, struct setup *su)
{
	const char *p = text, *eol;

	while (*p) {
		eol = strchr(p, '\n');
		if (eol == NULL)
			eol = p + strlen(p);
		if (strncmp(p, "# ", 2) == 0) {
			/* comment */
		} else if (strncmp(p, "%handshake", 10) == 0) {
			CHECK_FATAL(su->ncuts < GOLDEN_CUTS);
			su->cuts[su->ncuts++] = wire->len;
		} else if (*p == '%') {
			char key[32], val[32];
			if (sscanf(p, "%%%31[a-z]=%31s", key, val) == 2) {
				if (!strcmp(key, "relay"))
					su->relay = atoi(val);
				else if (!strcmp(key, "recipients"))
					su->recipients = (unsigned)atoi(val);
				else if (!strcmp(key, "errors"))
					su->errors = (unsigned)atoi(val);
				else if (!strcmp(key, "line"))
					su->line = (unsigned)atoi(val);
				else if (!strcmp(key, "hops"))
					su->hops = (unsigned)atoi(val);
				else if (!strcmp(key, "junk"))
					su->junk = (unsigned)atoi(val);
				else if (!strcmp(key, "size"))
					su->size = strtoull(val, NULL, 10);
				else if (!strcmp(key, "route"))
					add_route(su, p);
				else if (!strcmp(key, "tls"))
					su->pol.tls = !strcmp(val, "required") ?
					    SMTP_TLS_REQUIRED :
					    !strcmp(val, "starttls") ?
					    SMTP_TLS_STARTTLS : SMTP_TLS_NONE;
				else if (!strcmp(key, "auth"))
					su->pol.auth = !strcmp(val, "required") ?
					    SMTP_AUTH_REQUIRED :
					    !strcmp(val, "optional") ?
					    SMTP_AUTH_OPTIONAL : SMTP_AUTH_OFF;
				else if (!strcmp(key, "insecure"))
					su->pol.auth_insecure = atoi(val) != 0;
				else if (!strcmp(key, "overtls"))
					su->tls = atoi(val);
				else if (!strcmp(key, "senders"))
					su->pol.senders = !strcmp(val, "email") ?
					    SMTP_SENDER_EMAIL :
					    !strcmp(val, "domain") ?
					    SMTP_SENDER_DOMAIN : SMTP_SENDER_ANY;
				else if (!strcmp(key, "relaydomain") &&
				    su->nrelay_domains < SETUP_PATS)
					snprintf(su->relay_domains[
					    su->nrelay_domains++].s,
					    sizeof(su->relay_domains[0].s), "%s",
					    val);
				else if (!strcmp(key, "allowed") &&
				    su->nallowed < SETUP_PATS)
					snprintf(su->allowed[su->nallowed++].s,
					    sizeof(su->allowed[0].s), "%s", val);
				else if (!strcmp(key, "commit"))
					su->commit = !strcmp(val, "nospace") ?
					    SMTP_COMMIT_NOSPACE :
					    !strcmp(val, "ioerr") ?
					    SMTP_COMMIT_IOERR : SMTP_COMMIT_OK;
			}
		} else {
			check_unescape(wire, p, (size_t)(eol - p));
		}
		p = *eol ? eol + 1 : eol;
	}
}

/* Server output to transcript form: CRLF to LF, queue ids to QID. */
static void
add_output(struct buf *tr, struct buf *out)
{
	size_t i;

	for (i = 0; i < out->len; i++) {
		if (out->data[i] == '\r' && i + 1 < out->len &&
		    out->data[i + 1] == '\n')
			continue;
		if (i + 10 + 16 <= out->len &&
		    memcmp(out->data + i, "queued as ", 10) == 0) {
			buf_puts(tr, "queued as QID");
			i += 10 + 16 - 1;
			continue;
		}
		buf_append(tr, out->data + i, 1);
	}
	buf_reset(out);
}

/* The message minus our Received: header, CRLF as LF, bare CR as \r. */
static void
add_message(struct buf *tr, const struct buf *msg)
{
	const char *p = msg->data, *end = msg->data + msg->len;

	/* Skip "Received:" and its continuation lines. */
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL)
			break;
		p = nl + 1;
		if (p < end && *p != '\t' && *p != ' ')
			break;
	}
	buf_puts(tr, "[message]\n");
	for (; p < end; p++) {
		if (*p == '\r' && p + 1 < end && p[1] == '\n')
			continue;
		if (*p == '\r')
			buf_puts(tr, "\\r");
		else
			buf_append(tr, p, 1);
	}
	buf_puts(tr, "[end]\n");
}

/* Ids count up from 1, like a fresh queue id generator's sequence. */
static uint64_t
next_id(void *ctx, uint64_t now_ms)
{
	uint64_t *last = ctx;

	(void)now_ms;
	return ++*last;
}

/* The engine's part of AUTH, with one user: alice, password "secret". */
static enum smtp_event
fake_auth(struct smtp_session *s, const struct setup *su, struct buf *tr)
{
	struct smtp_sender_id id = { NULL, su->allowed, su->nallowed };
	enum smtp_auth_result res = SMTP_AUTH_FAILED;

	CHECK(s->state == SMTP_S_AUTH_WAIT);
	buf_printf(tr, "[auth %s]\n", s->auth_user);
	if (strcmp(s->auth_user, "alice") == 0 &&
	    strcmp(s->auth_pass, "secret") == 0)
		res = SMTP_AUTH_OK;
	else if (strcmp(s->auth_user, "busy") == 0)
		res = SMTP_AUTH_TEMPFAIL;
	else if (strcmp(s->auth_user, "locked") == 0)
		res = SMTP_AUTH_LOCKED;
	return smtp_session_auth_done(s, res, &id);
}

static void
run(const struct buf *wire, const struct setup *su, size_t step,
    struct buf *tr)
{
	struct smtp_server_cfg cfg;
	struct smtp_session s;
	uint64_t last_id = 0;
	struct smtp_id_source ids = { next_id, &last_id };
	struct sockaddr_in sin = { .sin_family = AF_INET };
	enum smtp_event ev;
	size_t off = 0, n, end;
	unsigned cut = 0;
	int closed = 0;

	sin.sin_addr.s_addr = htonl(0x7f000001);
	smtp_server_cfg_init(&cfg, "mx.test", su->size, su->recipients,
	    su->line, su->errors);
	cfg.hops = su->hops;
	cfg.junk_commands = su->junk;
	cfg.rcpt_refused = inbound_rcpt_refused;	/* the engine's own */
	cfg.rcpt_ctx = (void *)&su->routes;
	cfg.relay_domains = su->relay_domains;
	cfg.nrelay_domains = su->nrelay_domains;
	memset(&s, 0, sizeof(s));
	smtp_session_init(&s, &cfg, &su->pol, (struct sockaddr *)&sin,
	    su->relay != 0, &ids);
	s.tls = su->tls != 0;
	smtp_session_greet(&s);
	add_output(tr, &s.out);
	while (off < wire->len && !closed) {
		/* No read crosses a handshake mark. */
		while (cut < su->ncuts && su->cuts[cut] <= off)
			cut++;
		end = cut < su->ncuts ? su->cuts[cut] : wire->len;
		n = end - off < step ? end - off : step;
		ev = smtp_session_input(&s, wire->data + off, n);
		off += n;
		for (;;) {
			add_output(tr, &s.out);
			if (ev == SMTP_EV_STARTTLS) {
				buf_puts(tr, "[starttls]\n");
				off = end;	/* the rest went to TLS */
				smtp_session_tls_started(&s, "TLSv1.3",
				    "TLS_AES_256_GCM_SHA384", 256);
				break;
			}
			if (ev == SMTP_EV_CLOSE) {
				buf_puts(tr, "[closed]\n");
				closed = 1;
				break;
			}
			if (ev == SMTP_EV_AUTH) {
				ev = fake_auth(&s, su, tr);
				continue;
			}
			if (ev != SMTP_EV_COMMIT)
				break;
			if (su->commit == SMTP_COMMIT_OK)
				add_message(tr, &s.msg);
			ev = smtp_session_commit_done(&s, su->commit);
		}
	}
	smtp_session_free(&s);
}

int
main(void)
{
	char name[256];
	int ncases = 0;
	DIR *d;

	d = opendir(GOLDEN_DIR);
	CHECK_FATAL(d != NULL);
	while (check_golden_next(d, name, sizeof(name))) {
		char path[512], refpath[512];
		struct setup su = { .relay = 1, .recipients = 100, .errors = 10,
		    .line = 512, .size = 1000, .commit = SMTP_COMMIT_OK };
		struct buf wire = { 0 }, whole = { 0 }, bytewise = { 0 };
		char *text;
		int ok;

		snprintf(path, sizeof(path), "%s/%s.in", GOLDEN_DIR, name);
		snprintf(refpath, sizeof(refpath), "%s/%s.ref", GOLDEN_DIR,
		    name);
		printf("RUN %s\n", name);
		ncases++;
		text = check_slurp(path, NULL);
		CHECK_FATAL(text != NULL);
		parse_input(text, &wire, &su);
		run(&wire, &su, wire.len ? wire.len : 1, &whole);
		run(&wire, &su, 1, &bytewise);
		ok = check_golden(name, refpath, whole.data, whole.len);
		if (whole.len != bytewise.len ||
		    memcmp(whole.data, bytewise.data, whole.len) != 0) {
			fprintf(stderr, "--- %s byte by byte differs:\n%.*s",
			    name, (int)bytewise.len, bytewise.data);
			ok = 0;
		}
		if (!ok)
			check_failures++;
		printf("%s %s\n", ok ? "PASS" : "FAIL", name);
		free(text);
		route_table_free(&su.routes);
		buf_free(&wire);
		buf_free(&whole);
		buf_free(&bytewise);
	}
	closedir(d);
	CHECK(ncases >= 5);
	return check_done();
}
