/*
 * Description: the outbound SMTP/LMTP client state machine, driven by a
 * scripted server. Each tests/golden/client/NAME.in is a dialogue; the
 * transcript (what the client sends, and every callback with its codes)
 * must equal NAME.ref when the server's bytes arrive whole, one byte at a
 * time, and split in two at every offset. Then table-free cases that are
 * clearer in C: a pipelining window with thousands of recipients, bad
 * messages, state names, waiting(), buffer reuse.
 *
 * .in format, one directive per line:
 *   # comment
 *   %helo=NAME  %lmtp  %auth=USER PASS  %noquit  %chunking (cfg.chunking)
 *   %pipe=N     (cfg.pipeline_depth: the harness sends the next message
 *               whenever smtp_client_can_pipeline() says it may)
 *   %starttls=may|must  %auth_insecure  %implicit (tls_done before the
 *               greeting)
 *   %msg from=ADDR to=A,B,... [body=7bit|8bitmime|binarymime] [utf8]
 *        [size=N]  -- then the message, one line per line (CRLF added
 *        unless the line ends in \c), up to a line "%end"
 *   S: TEXT     server bytes (CRLF added unless \c); consecutive S: lines
 *               arrive as one read
 *   !eof  !timeout  !state   (the last prints state and waiting())
 *   !tls  !tlsfail   (the engine's handshake: smtp_client_tls_done(),
 *               smtp_client_tls_failed())
 * EV_STARTTLS prints "[starttls]" once, when the client first asks for
 * the handshake; server bytes fed while it waits must be ignored.
 * Escapes in S: and message lines: \r \n \\ \xHH \c, and \RNNNc for NNN
 * times the byte c.
 * The harness acts as the engine: on `ready` it sends the next %msg, or
 * QUIT when none is left (unless %noquit). It checks the callback
 * contract on every run: each recipient exactly once, then message_done
 * once, nothing after failed.
 * SLUICE_GOLDEN_UPDATE=1 rewrites the .ref files from the current output.
 */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../proto/smtp_client.h"
#include "check.h"

#define GOLDEN_DIR "tests/golden/client"
#define MSGS_MAX 8
#define RCPTS_MAX 16

struct tmsg {
	char from[128];
	char to_buf[RCPTS_MAX][128];
	const char *to[RCPTS_MAX];
	uint32_t nrcpt;
	struct buf data;
	uint8_t body;
	bool utf8;
	uint64_t size;
};

/* An action of the script: a group of server bytes or a directive. */
struct step {
	enum { ST_FEED, ST_EOF, ST_TIMEOUT, ST_STATE, ST_TLS, ST_TLSFAIL }
	    kind;
	struct buf bytes;	/* ST_FEED: the server's bytes */
	struct buf echo;	/* ST_FEED: the S: lines as written */
};

struct script {
	struct smtp_client_cfg cfg;
	char helo[128], user[300], pass[300];
	bool noquit;
	bool implicit;
	struct tmsg msgs[MSGS_MAX];
	unsigned nmsgs;
	struct step steps[64];
	unsigned nsteps;
};

/* The fake engine: what a run saw. */
struct eng {
	struct smtp_client c;
	const struct script *sc;
	struct buf *tr;
	unsigned next_msg;	/* next message to send */
	int cur;		/* message under way, -1 none */
	/* Messages pipelined behind cur, oldest first; psend: the one a
	 * pipelined send is about (its callbacks, if refused locally). */
	int later[MSGS_MAX];
	unsigned nlater;
	int psend;
	uint8_t mseen[MSGS_MAX][RCPTS_MAX];
	uint32_t mnseen[MSGS_MAX];
	uint8_t seen[RCPTS_MAX];
	uint32_t nseen;
	unsigned done_msgs;
	bool failed;
	bool closed_reported;
	bool starttls_reported;
	/* for the C cases */
	struct smtp_client_msg *auto_msg;
	uint32_t rcpt_codes[6];
	uint8_t *seen_big;
};

static void
parse_msg(struct script *sc, const char *line)
{
	struct tmsg *m;
	char tmp[1024], *tok, *save = NULL;

	CHECK_FATAL(sc->nmsgs < MSGS_MAX);
	m = &sc->msgs[sc->nmsgs++];
	memset(m, 0, sizeof(*m));
	snprintf(tmp, sizeof(tmp), "%s", line + 4);
	for (tok = strtok_r(tmp, " ", &save); tok;
	    tok = strtok_r(NULL, " ", &save)) {
		if (!strncmp(tok, "from=", 5)) {
			snprintf(m->from, sizeof(m->from), "%s", tok + 5);
		} else if (!strncmp(tok, "to=", 3)) {
			char *r, *s2 = NULL;
			for (r = strtok_r(tok + 3, ",", &s2); r;
			    r = strtok_r(NULL, ",", &s2)) {
				CHECK_FATAL(m->nrcpt < RCPTS_MAX);
				snprintf(m->to_buf[m->nrcpt], 128, "%s", r);
				m->to[m->nrcpt] = m->to_buf[m->nrcpt];
				m->nrcpt++;
			}
		} else if (!strcmp(tok, "body=8bitmime")) {
			m->body = SMTP_BODY_8BITMIME;
		} else if (!strcmp(tok, "body=binarymime")) {
			m->body = SMTP_BODY_BINARYMIME;
		} else if (!strcmp(tok, "body=7bit")) {
			m->body = SMTP_BODY_7BIT;
		} else if (!strcmp(tok, "utf8")) {
			m->utf8 = true;
		} else if (!strncmp(tok, "size=", 5)) {
			m->size = strtoull(tok + 5, NULL, 10);
		} else {
			fprintf(stderr, "bad %%msg token: %s\n", tok);
			exit(T_EXIT_FAIL);
		}
	}
}

static void
parse_script(struct script *sc, const char *text)
{
	const char *p = text, *eol;
	struct tmsg *in_msg = NULL;
	struct step *feed = NULL;

	memset(sc, 0, sizeof(*sc));
	snprintf(sc->helo, sizeof(sc->helo), "sluice.test");
	sc->cfg.helo_name = sc->helo;
	while (*p) {
		size_t n;

		eol = strchr(p, '\n');
		if (eol == NULL)
			eol = p + strlen(p);
		n = (size_t)(eol - p);
		if (in_msg != NULL) {
			if (n == 4 && !strncmp(p, "%end", 4))
				in_msg = NULL;
			else
				check_unescape(&in_msg->data, p, n);
		} else if (n >= 3 && !strncmp(p, "S: ", 3)) {
			if (feed == NULL) {
				CHECK_FATAL(sc->nsteps < 64);
				feed = &sc->steps[sc->nsteps++];
				feed->kind = ST_FEED;
			}
			check_unescape(&feed->bytes, p + 3, n - 3);
			buf_append(&feed->echo, p, n);
			buf_append(&feed->echo, "\n", 1);
		} else {
			feed = NULL;
			if (n == 0 || *p == '#' || !strncmp(p, "--", 2)) {
				/* comment or separator */
			} else if (!strncmp(p, "!eof", 4)) {
				sc->steps[sc->nsteps++].kind = ST_EOF;
			} else if (!strncmp(p, "!timeout", 8)) {
				sc->steps[sc->nsteps++].kind = ST_TIMEOUT;
			} else if (!strncmp(p, "!state", 6)) {
				sc->steps[sc->nsteps++].kind = ST_STATE;
			} else if (!strncmp(p, "!tlsfail", 8)) {
				sc->steps[sc->nsteps++].kind = ST_TLSFAIL;
			} else if (!strncmp(p, "!tls", 4)) {
				sc->steps[sc->nsteps++].kind = ST_TLS;
			} else if (!strncmp(p, "%starttls=may", 13)) {
				sc->cfg.starttls = SMTP_CLIENT_STARTTLS_MAY;
			} else if (!strncmp(p, "%starttls=must", 14)) {
				sc->cfg.starttls = SMTP_CLIENT_STARTTLS_MUST;
			} else if (!strncmp(p, "%auth_insecure", 14)) {
				sc->cfg.auth_insecure = true;
			} else if (!strncmp(p, "%implicit", 9)) {
				sc->implicit = true;
			} else if (!strncmp(p, "%helo=", 6)) {
				snprintf(sc->helo, sizeof(sc->helo), "%.*s",
				    (int)n - 6, p + 6);
			} else if (!strncmp(p, "%lmtp", 5)) {
				sc->cfg.lmtp = true;
			} else if (!strncmp(p, "%noquit", 7)) {
				sc->noquit = true;
			} else if (!strncmp(p, "%pipe=", 6)) {
				sc->cfg.pipeline_depth = (uint8_t)atoi(p + 6);
			} else if (!strncmp(p, "%chunking", 9)) {
				sc->cfg.chunking = true;
			} else if (!strncmp(p, "%auth=", 6)) {
				CHECK_FATAL(sscanf(p + 6, "%299s %299s",
				    sc->user, sc->pass) == 2);
				sc->cfg.auth_user = sc->user;
				sc->cfg.auth_pass = sc->pass;
			} else if (!strncmp(p, "%msg ", 5)) {
				char line[1024];
				snprintf(line, sizeof(line), "%.*s", (int)n, p);
				parse_msg(sc, line);
				in_msg = &sc->msgs[sc->nmsgs - 1];
			} else {
				fprintf(stderr, "bad script line: %.*s\n",
				    (int)n, p);
				exit(T_EXIT_FAIL);
			}
		}
		p = *eol ? eol + 1 : eol;
	}
	CHECK_FATAL(in_msg == NULL);
}

static void
trf(struct eng *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
trf(struct eng *e, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	buf_vprintf(e->tr, fmt, ap);
	va_end(ap);
}

static void
tr_reply(struct eng *e, const struct smtp_client_reply *r)
{
	trf(e, "%d %s %s%s\n", r->code, r->enhanced, r->text,
	    r->protocol_error ? " (local, protocol error)" :
	    r->local ? " (local)" : "");
	CHECK(!r->protocol_error || r->local);
	CHECK(r->code >= 200 && r->code <= 599);
	CHECK(r->enhanced[0] == '0' + r->code / 100);
	CHECK(strlen(r->text) <= SMTP_CLIENT_TEXT_MAX);
}

/* Client output to "C: line" form; everything must be whole CRLF lines. */
static void
take_output(struct eng *e)
{
	struct buf *o = &e->c.out;
	size_t i, start = 0;

	for (i = 0; i + 1 < o->len; i++) {
		if (o->data[i] == '\r' && o->data[i + 1] == '\n') {
			size_t j;
			buf_puts(e->tr, "C: ");
			for (j = start; j < i; j++) {
				unsigned char ch = (unsigned char)o->data[j];
				if (ch == '\r')
					buf_puts(e->tr, "\\r");
				else if (ch == '\n')
					buf_puts(e->tr, "\\n");
				else if (ch < 0x20 || ch == 0x7f)
					trf(e, "\\x%02x", ch);
				else
					buf_append(e->tr, o->data + j, 1);
			}
			buf_puts(e->tr, "\n");
			start = i + 2;
			i++;
		}
	}
	if (start != o->len) {
		trf(e, "C: (partial line of %zu bytes)\n", o->len - start);
		check_failures++;
	}
	buf_reset(o);
}

static void
tmsg_to(const struct tmsg *t, struct smtp_client_msg *m)
{
	memset(m, 0, sizeof(*m));
	m->sender = t->from;
	m->rcpt = t->to;
	m->nrcpt = t->nrcpt;
	m->data = t->data.data ? t->data.data : "";
	m->len = t->data.len;
	m->body = t->body;
	m->smtputf8 = t->utf8;
	m->size = t->size;
}

/* Messages behind the one under way, while the client takes them. */
static void
eng_pipe(struct eng *e)
{
	while (e->cur >= 0 && e->next_msg < e->sc->nmsgs &&
	    smtp_client_can_pipeline(&e->c)) {
		struct smtp_client_msg m;
		int num = (int)++e->next_msg, rc;

		tmsg_to(&e->sc->msgs[num - 1], &m);
		e->psend = num - 1;
		trf(e, "send %d (pipelined)\n", num);
		rc = smtp_client_send(&e->c, &m);
		e->psend = -1;
		if (rc == 1) {
			trf(e, "send %d: refused locally\n", num);
			continue;
		}
		CHECK(rc == 0);
		CHECK(e->nlater < MSGS_MAX);
		e->later[e->nlater++] = num - 1;
	}
}

static void
eng_send_next(struct eng *e)
{
	while (e->next_msg < e->sc->nmsgs) {
		struct smtp_client_msg m;
		int rc;

		int num = (int)++e->next_msg;

		tmsg_to(&e->sc->msgs[num - 1], &m);
		e->cur = num - 1;
		trf(e, "send %d\n", num);
		rc = smtp_client_send(&e->c, &m);
		if (rc != 1) {
			CHECK(rc == 0);
			eng_pipe(e);
			return;
		}
		/* Refused locally: its callbacks ran; still ready. */
		trf(e, "send %d: refused locally\n", num);
		CHECK(e->cur == -1);
		CHECK(smtp_client_ready(&e->c));
	}
	if (!e->sc->noquit) {
		trf(e, "quit\n");
		smtp_client_quit(&e->c);
	}
}

static void
cb_ready(void *arg)
{
	struct eng *e = arg;

	CHECK(!e->failed);
	CHECK(e->cur == -1);
	CHECK(smtp_client_ready(&e->c));
	trf(e, "ready\n");
	eng_send_next(e);
}

static void
cb_rcpt_done(void *arg, uint32_t index, const struct smtp_client_reply *r)
{
	struct eng *e = arg;

	int cur = e->psend >= 0 ? e->psend : e->cur;

	CHECK(!e->failed);
	CHECK(cur >= 0);
	if (cur < 0)
		return;
	CHECK(index < e->sc->msgs[cur].nrcpt);
	CHECK(index < RCPTS_MAX && !e->mseen[cur][index]);
	if (index < RCPTS_MAX)
		e->mseen[cur][index] = 1;
	e->mnseen[cur]++;
	trf(e, "rcpt_done %d.%u ", cur + 1, index);
	tr_reply(e, r);
}

static void
cb_message_done(void *arg, const struct smtp_client_reply *r,
    const struct smtp_client_tally *t)
{
	struct eng *e = arg;

	int cur = e->psend >= 0 ? e->psend : e->cur;

	CHECK(!e->failed);
	CHECK(cur >= 0);
	if (cur < 0)
		return;
	CHECK(e->mnseen[cur] == e->sc->msgs[cur].nrcpt);
	CHECK(t->delivered + t->deferred + t->bounced == e->mnseen[cur]);
	trf(e, "message_done %d delivered=%u deferred=%u bounced=%u ",
	    cur + 1, t->delivered, t->deferred, t->bounced);
	tr_reply(e, r);
	e->done_msgs++;
	if (e->psend >= 0)
		return;
	/* The next in flight is the one the callbacks are about now. */
	e->cur = -1;
	if (e->nlater > 0) {
		e->cur = e->later[0];
		memmove(e->later, e->later + 1, --e->nlater * sizeof(int));
	}
}

static void
cb_failed(void *arg, enum smtp_client_stage stage,
    const struct smtp_client_reply *r)
{
	struct eng *e = arg;

	CHECK(!e->failed);
	CHECK(e->cur == -1);	/* message_done came first */
	CHECK(smtp_client_closed(&e->c));
	e->failed = true;
	trf(e, "failed %s ", smtp_client_strstage(stage));
	tr_reply(e, r);
}

static void
cb_state(void *arg, enum smtp_client_state from, enum smtp_client_state to)
{
	struct eng *e = arg;

	CHECK(from != to);
	CHECK(e->c.state == to);
	CHECK(from != SMTP_C_CLOSED);
}

static const struct smtp_client_cb eng_cb = {
	.ready = cb_ready,
	.rcpt_done = cb_rcpt_done,
	.message_done = cb_message_done,
	.failed = cb_failed,
	.state_change = cb_state,
};

static const char *
strwait(enum smtp_client_wait w)
{
	switch (w) {
	case SMTP_CLIENT_WAIT_NONE:
		return "none";
	case SMTP_CLIENT_WAIT_GREETING:
		return "greeting";
	case SMTP_CLIENT_WAIT_REPLY:
		return "reply";
	case SMTP_CLIENT_WAIT_DATA_END:
		return "data-end";
	case SMTP_CLIENT_WAIT_QUIT:
		return "quit";
	}
	return "?";
}

static void
feed(struct eng *e, const char *p, size_t n)
{
	enum smtp_client_event ev = smtp_client_input(&e->c, p, n);

	/* CLOSE exactly when the client says it is over. */
	CHECK((ev == SMTP_CLIENT_EV_CLOSE) == smtp_client_closed(&e->c));
	/* STARTTLS exactly while it waits for the handshake. */
	CHECK((ev == SMTP_CLIENT_EV_STARTTLS) == (e->c.state == SMTP_C_TLS));
	if (ev == SMTP_CLIENT_EV_STARTTLS && !e->starttls_reported) {
		/* Nothing may be left to send before the handshake. */
		CHECK(e->c.out.len == 0);
		trf(e, "[starttls]\n");
		e->starttls_reported = true;
	}
}

/* What the server offered, as the client recorded it (from READY on). */
static void
tr_ext(struct eng *e)
{
	static const struct {
		uint32_t bit;
		const char *name;
	} names[] = {
		{ SMTP_CLIENT_EXT_PIPELINING, "PIPELINING" },
		{ SMTP_CLIENT_EXT_SIZE, "SIZE" },
		{ SMTP_CLIENT_EXT_8BITMIME, "8BITMIME" },
		{ SMTP_CLIENT_EXT_SMTPUTF8, "SMTPUTF8" },
		{ SMTP_CLIENT_EXT_ENHANCEDSTATUSCODES, "ENHANCEDSTATUSCODES" },
		{ SMTP_CLIENT_EXT_CHUNKING, "CHUNKING" },
		{ SMTP_CLIENT_EXT_STARTTLS, "STARTTLS" },
		{ SMTP_CLIENT_EXT_AUTH, "AUTH" },
		{ SMTP_CLIENT_EXT_DSN, "DSN" },
	};
	size_t i;

	if (e->c.state == SMTP_C_GREETING || e->c.state == SMTP_C_EHLO ||
	    e->c.state == SMTP_C_HELO || e->c.state == SMTP_C_LHLO) {
		trf(e, "\n");
		return;
	}
	trf(e, " esmtp=%d tls=%d ext=", e->c.esmtp, e->c.tls);
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (e->c.ext & names[i].bit)
			trf(e, "%s,", names[i].name);
	trf(e, " size=%llu auth=%s%s\n", (unsigned long long)e->c.size_max,
	    e->c.auth_mechs & SMTP_CLIENT_AUTH_PLAIN ? "PLAIN," : "",
	    e->c.auth_mechs & SMTP_CLIENT_AUTH_LOGIN ? "LOGIN," : "");
}

/*
 * One run of a script. split: 0 whole reads, 1 byte by byte, k > 1 each
 * read cut in two at offset k - 1.
 */
static void
run(const struct script *sc, size_t split, struct buf *tr)
{
	struct eng e;
	unsigned i;

	memset(&e, 0, sizeof(e));
	e.sc = sc;
	e.tr = tr;
	e.cur = -1;
	e.psend = -1;
	smtp_client_init(&e.c, &sc->cfg, &eng_cb, &e);
	if (sc->implicit)
		smtp_client_tls_done(&e.c);
	for (i = 0; i < sc->nsteps; i++) {
		const struct step *st = &sc->steps[i];
		size_t off, n;

		switch (st->kind) {
		case ST_FEED:
			buf_append(tr, st->echo.data, st->echo.len);
			if (split == 1) {
				for (off = 0; off < st->bytes.len; off++)
					feed(&e, st->bytes.data + off, 1);
			} else if (split > 1 && split - 1 < st->bytes.len) {
				n = split - 1;
				feed(&e, st->bytes.data, n);
				feed(&e, st->bytes.data + n, st->bytes.len - n);
			} else {
				feed(&e, st->bytes.data, st->bytes.len);
			}
			eng_pipe(&e);
			break;
		case ST_EOF:
			trf(&e, "eof\n");
			smtp_client_eof(&e.c);
			break;
		case ST_TIMEOUT:
			trf(&e, "timeout\n");
			smtp_client_timeout(&e.c);
			break;
		case ST_TLS:
			trf(&e, "tls done\n");
			smtp_client_tls_done(&e.c);
			e.starttls_reported = false;
			break;
		case ST_TLSFAIL:
			trf(&e, "tls failed\n");
			smtp_client_tls_failed(&e.c, "bad record mac\r\n");
			break;
		case ST_STATE:
			trf(&e, "state %s waiting %s",
			    smtp_client_strstate(e.c.state),
			    strwait(smtp_client_waiting(&e.c)));
			tr_ext(&e);
			break;
		}
		take_output(&e);
		if (smtp_client_closed(&e.c) && !e.closed_reported) {
			trf(&e, "[closed]\n");
			e.closed_reported = true;
		}
	}
	if (!smtp_client_closed(&e.c)) {
		trf(&e, "[open at end of script]\n");
		smtp_client_eof(&e.c);
		take_output(&e);
	}
	/* Every message handed over was finished. */
	CHECK(e.cur == -1);
	CHECK(e.nlater == 0);
	smtp_client_free(&e.c);
}

static void
free_script(struct script *sc)
{
	unsigned i;

	for (i = 0; i < sc->nmsgs; i++)
		buf_free(&sc->msgs[i].data);
	for (i = 0; i < sc->nsteps; i++) {
		buf_free(&sc->steps[i].bytes);
		buf_free(&sc->steps[i].echo);
	}
}

static int
golden(void)
{
	char name[256];
	int ncases = 0;
	DIR *d;

	d = opendir(GOLDEN_DIR);
	CHECK_FATAL(d != NULL);
	while (check_golden_next(d, name, sizeof(name))) {
		char path[512], refpath[512];
		struct script *sc;
		struct buf whole = { 0 }, other = { 0 };
		char *text;
		size_t maxlen = 0, k;
		unsigned i;
		int ok;

		snprintf(path, sizeof(path), "%s/%s.in", GOLDEN_DIR, name);
		snprintf(refpath, sizeof(refpath), "%s/%s.ref", GOLDEN_DIR,
		    name);
		printf("RUN %s\n", name);
		ncases++;
		text = check_slurp(path, NULL);
		CHECK_FATAL(text != NULL);
		sc = calloc(1, sizeof(*sc));
		CHECK_FATAL(sc != NULL);
		parse_script(sc, text);
		run(sc, 0, &whole);
		ok = check_golden(name, refpath, whole.data, whole.len);
		buf_append(&whole, "", 1);
		for (i = 0; i < sc->nsteps; i++)
			if (sc->steps[i].bytes.len > maxlen)
				maxlen = sc->steps[i].bytes.len;
		/* Byte by byte (k = 1), then cut at every offset. */
		for (k = 1; ok && k <= maxlen; k++) {
			buf_reset(&other);
			run(sc, k, &other);
			buf_append(&other, "", 1);
			if (strcmp(other.data, whole.data) != 0) {
				fprintf(stderr, "--- %s: split %zu differs:\n%s",
				    name, k, other.data);
				ok = 0;
			}
		}
		if (!ok)
			check_failures++;
		printf("%s %s\n", ok ? "PASS" : "FAIL", name);
		free(text);
		free_script(sc);
		free(sc);
		buf_free(&whole);
		buf_free(&other);
	}
	closedir(d);
	CHECK(ncases >= 20);
	return ncases;
}

/* ---- cases in C ---------------------------------------------------------- */

static void
big_ready(void *arg)
{
	struct eng *e = arg;

	if (e->auto_msg != NULL) {
		CHECK(smtp_client_send(&e->c, e->auto_msg) == 0);
		e->auto_msg = NULL;
	} else {
		smtp_client_quit(&e->c);
	}
}

static void
big_rcpt_done(void *arg, uint32_t index, const struct smtp_client_reply *r)
{
	struct eng *e = arg;

	CHECK(!e->seen_big[index]);
	e->seen_big[index] = 1;
	e->nseen++;
	e->rcpt_codes[r->code / 100]++;
}

static void
big_message_done(void *arg, const struct smtp_client_reply *r,
    const struct smtp_client_tally *t)
{
	struct eng *e = arg;

	(void)r;
	CHECK(t->delivered + t->deferred + t->bounced == e->nseen);
	e->done_msgs++;
}

static void
big_failed(void *arg, enum smtp_client_stage stage,
    const struct smtp_client_reply *r)
{
	struct eng *e = arg;

	fprintf(stderr, "failed %s %d %s\n", smtp_client_strstage(stage),
	    r->code, r->text);
	e->failed = true;
}

static const struct smtp_client_cb big_cb = {
	.ready = big_ready,
	.rcpt_done = big_rcpt_done,
	.message_done = big_message_done,
	.failed = big_failed,
};

static size_t
count_lines(const struct buf *b, const char *prefix)
{
	size_t i, n = 0, pl = strlen(prefix);
	int bol = 1;

	for (i = 0; i < b->len; i++) {
		if (bol && b->len - i >= pl && !memcmp(b->data + i, prefix, pl))
			n++;
		bol = b->data[i] == '\n';
	}
	return n;
}

/*
 * Description: a pipelined message with more recipients than the window
 * (SMTP_CLIENT_PIPE_MAX commands in flight): the first write holds MAIL
 * and PIPE_MAX - 1 RCPTs, then one more command per reply; every
 * recipient gets exactly one result. Every other recipient is refused.
 */
static void
case_window(void)
{
	enum { N = 2500 };
	static char addrs[N][32];
	static const char *rcpt[N];
	struct smtp_client_cfg cfg = { .helo_name = "h.test" };
	struct smtp_client_msg m = { .sender = "s@test", .rcpt = rcpt,
	    .nrcpt = N, .data = "x\r\n", .len = 3 };
	static const char ehlo[] = "220 mx\r\n250-mx\r\n250-PIPELINING\r\n"
	    "250 SIZE 0\r\n";
	struct eng e;
	size_t i;

	printf("RUN window\n");
	for (i = 0; i < N; i++) {
		snprintf(addrs[i], sizeof(addrs[i]), "r%zu@test", i);
		rcpt[i] = addrs[i];
	}
	memset(&e, 0, sizeof(e));
	e.seen_big = calloc(N, 1);
	e.auto_msg = &m;
	smtp_client_init(&e.c, &cfg, &big_cb, &e);
	smtp_client_input(&e.c, ehlo, sizeof(ehlo) - 1);
	CHECK(e.c.state == SMTP_C_MAIL);
	CHECK(count_lines(&e.c.out, "MAIL FROM:<s@test> SIZE=3\r\n") == 1);
	CHECK(count_lines(&e.c.out, "RCPT TO:") ==
	    SMTP_CLIENT_PIPE_MAX - 1);
	CHECK(count_lines(&e.c.out, "DATA") == 0);
	buf_reset(&e.c.out);
	smtp_client_input(&e.c, "250 ok\r\n", 8);	/* MAIL */
	CHECK(count_lines(&e.c.out, "RCPT TO:<r999@test>") == 1);
	buf_reset(&e.c.out);
	for (i = 0; i < N; i++) {
		if (i % 2)
			smtp_client_input(&e.c, "550 5.1.1 no\r\n", 14);
		else
			smtp_client_input(&e.c, "250 ok\r\n", 8);
	}
	/* DATA went out with the last RCPTs, and its reply is next. */
	CHECK(count_lines(&e.c.out, "RCPT TO:") == N - (SMTP_CLIENT_PIPE_MAX - 1) - 1);
	CHECK(count_lines(&e.c.out, "DATA\r\n") == 1);
	CHECK(e.c.state == SMTP_C_DATA);
	CHECK(e.nseen == N / 2);
	buf_reset(&e.c.out);
	smtp_client_input(&e.c, "354 go\r\n", 8);
	CHECK(e.c.out.len == 6 && !memcmp(e.c.out.data, "x\r\n.\r\n", 6));
	buf_reset(&e.c.out);
	smtp_client_input(&e.c, "250 2.0.0 queued\r\n", 18);
	CHECK(e.nseen == N);
	CHECK(e.rcpt_codes[2] == N / 2 && e.rcpt_codes[5] == N / 2);
	CHECK(e.done_msgs == 1);
	CHECK(e.c.state == SMTP_C_QUIT);
	CHECK(smtp_client_input(&e.c, "221 bye\r\n", 9) ==
	    SMTP_CLIENT_EV_CLOSE);
	CHECK(!e.failed);
	for (i = 0; i < N; i++)
		CHECK(e.seen_big[i] == 1);
	free(e.seen_big);
	smtp_client_free(&e.c);
	printf("PASS window\n");
}

/*
 * Description: the same without PIPELINING, 300 recipients, all refused
 * with 452 (too many recipients): one command per reply, no DATA, RSET,
 * then ready again; every recipient deferred.
 */
static void
case_lockstep_452(void)
{
	enum { N = 300 };
	static char addrs[N][32];
	static const char *rcpt[N];
	struct smtp_client_cfg cfg = { .helo_name = "h.test" };
	struct smtp_client_msg m = { .sender = "", .rcpt = rcpt,
	    .nrcpt = N, .data = "", .len = 0 };
	static const char ehlo[] = "220 mx\r\n250 mx\r\n";
	struct eng e;
	size_t i;

	printf("RUN lockstep_452\n");
	for (i = 0; i < N; i++) {
		snprintf(addrs[i], sizeof(addrs[i]), "r%zu@test", i);
		rcpt[i] = addrs[i];
	}
	memset(&e, 0, sizeof(e));
	e.seen_big = calloc(N, 1);
	e.auto_msg = &m;
	smtp_client_init(&e.c, &cfg, &big_cb, &e);
	smtp_client_input(&e.c, ehlo, sizeof(ehlo) - 1);
	CHECK(e.c.out.len == 27 && !memcmp(e.c.out.data, "EHLO h.test\r\n"
	    "MAIL FROM:<>\r\n", 27));
	buf_reset(&e.c.out);
	smtp_client_input(&e.c, "250 ok\r\n", 8);
	for (i = 0; i < N; i++) {
		char want[64];
		snprintf(want, sizeof(want), "RCPT TO:<r%zu@test>\r\n", i);
		CHECK(e.c.out.len == strlen(want) &&
		    !memcmp(e.c.out.data, want, e.c.out.len));
		buf_reset(&e.c.out);
		smtp_client_input(&e.c, "452 4.5.3 too many recipients\r\n",
		    31);
	}
	CHECK(e.c.out.len == 6 && !memcmp(e.c.out.data, "RSET\r\n", 6));
	CHECK(e.rcpt_codes[4] == N && e.done_msgs == 1);
	CHECK(e.c.state == SMTP_C_RSET);
	buf_reset(&e.c.out);
	smtp_client_input(&e.c, "250 ok\r\n", 8);
	CHECK(e.c.state == SMTP_C_QUIT);
	CHECK(!e.failed);
	free(e.seen_big);
	smtp_client_free(&e.c);
	printf("PASS lockstep_452\n");
}

static void
nop_ready(void *arg)
{
	(void)arg;
}

static void
nop_rcpt(void *arg, uint32_t i, const struct smtp_client_reply *r)
{
	(void)arg;
	(void)i;
	(void)r;
	check_failures++;	/* no callback is expected here */
}

static void
nop_msg(void *arg, const struct smtp_client_reply *r,
    const struct smtp_client_tally *t)
{
	(void)arg;
	(void)r;
	(void)t;
	check_failures++;
}

static void
nop_failed(void *arg, enum smtp_client_stage s,
    const struct smtp_client_reply *r)
{
	(void)arg;
	(void)s;
	(void)r;
}

/*
 * Description: messages the client must refuse without a callback
 * (-EINVAL), names of states and stages, waiting() along a session, the
 * count of whole replies (it moves only when a reply is complete, however
 * its bytes arrive), and a client struct reused for a second connection.
 */
static void
case_api(void)
{
	static const struct smtp_client_cb cb = { .ready = nop_ready,
	    .rcpt_done = nop_rcpt, .message_done = nop_msg,
	    .failed = nop_failed };
	struct smtp_client_cfg cfg = { .helo_name = "h.test" };
	const char *good[1] = { "a@b" }, *crlf[1] = { "a@b>\r\nRSET" };
	const char *empty[1] = { "" };
	char long_addr[SMTP_CLIENT_ADDR_MAX + 2];
	const char *longv[1] = { long_addr };
	struct smtp_client_msg m = { .sender = "s@t", .rcpt = good,
	    .nrcpt = 1, .data = "", .len = 0 };
	struct smtp_client c;
	char *kept;

	printf("RUN api\n");
	memset(&c, 0, sizeof(c));
	smtp_client_init(&c, &cfg, &cb, NULL);
	CHECK(smtp_client_waiting(&c) == SMTP_CLIENT_WAIT_GREETING);
	CHECK(!strcmp(smtp_client_strstate(c.state), "GREETING"));
	CHECK(c.replies == 0);
	smtp_client_input(&c, "2", 1);
	smtp_client_input(&c, "20 x\r", 5);
	CHECK(c.replies == 0);
	smtp_client_input(&c, "\n", 1);
	CHECK(c.replies == 1);
	CHECK(smtp_client_waiting(&c) == SMTP_CLIENT_WAIT_REPLY);
	CHECK(!strcmp(smtp_client_strstate(c.state), "EHLO"));
	smtp_client_input(&c, "250-x\r\n", 7);
	CHECK(c.replies == 1);	/* a line, not yet the whole reply */
	smtp_client_input(&c, "250 x\r\n", 7);
	CHECK(c.replies == 2);
	CHECK(smtp_client_ready(&c));
	CHECK(smtp_client_waiting(&c) == SMTP_CLIENT_WAIT_NONE);

	m.nrcpt = 0;
	CHECK(smtp_client_send(&c, &m) == -EINVAL);
	m.nrcpt = SMTP_CLIENT_RCPT_MAX + 1;
	CHECK(smtp_client_send(&c, &m) == -EINVAL);
	m.nrcpt = 1;
	m.rcpt = crlf;
	CHECK(smtp_client_send(&c, &m) == -EINVAL);
	m.rcpt = empty;
	CHECK(smtp_client_send(&c, &m) == -EINVAL);
	memset(long_addr, 'a', sizeof(long_addr) - 1);
	long_addr[sizeof(long_addr) - 1] = '\0';
	m.rcpt = longv;
	CHECK(smtp_client_send(&c, &m) == -EINVAL);
	m.rcpt = good;
	m.sender = "bad\rsender";
	CHECK(smtp_client_send(&c, &m) == -EINVAL);
	CHECK(smtp_client_ready(&c));
	CHECK(c.out.len == strlen("EHLO h.test\r\n"));

	CHECK(!strcmp(smtp_client_strstate(SMTP_C_CLOSED), "CLOSED"));
	CHECK(!strcmp(smtp_client_strstate((enum smtp_client_state)99), "?"));
	CHECK(!strcmp(smtp_client_strstage(SMTP_CLIENT_STAGE_CONNECT),
	    "connect"));
	CHECK(!strcmp(smtp_client_strstage(SMTP_CLIENT_STAGE_RSET), "rset"));

	smtp_client_quit(&c);
	CHECK(smtp_client_waiting(&c) == SMTP_CLIENT_WAIT_QUIT);
	smtp_client_quit(&c);	/* no-op */
	CHECK(count_lines(&c.out, "QUIT") == 1);
	smtp_client_timeout(&c);	/* QUIT's reply never came: just over */
	CHECK(smtp_client_closed(&c));
	CHECK(smtp_client_waiting(&c) == SMTP_CLIENT_WAIT_NONE);
	CHECK(smtp_client_input(&c, "250 late\r\n", 10) ==
	    SMTP_CLIENT_EV_CLOSE);

	/* Reuse: the output allocation is kept, the contents are not. */
	kept = c.out.data;
	smtp_client_init(&c, &cfg, &cb, NULL);
	CHECK(c.out.data == kept && c.out.len == 0);
	CHECK(c.state == SMTP_C_GREETING && c.ext == 0);
	smtp_client_free(&c);
	printf("PASS api\n");
}

int
main(void)
{
	golden();
	case_window();
	case_lockstep_452();
	case_api();
	return check_done();
}
