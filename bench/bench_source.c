/*
 * bench_source.c - `sluice-bench source`: drive an SMTP or LMTP server as
 * hard as it will go (closed loop) or at a fixed rate (open loop), and say
 * what it did: transactions accepted and refused by stage, connection
 * errors by kind, throughput, and latency percentiles.
 *
 * Contract: bench_source_main(argc, argv), argv[0] == "source", parses the
 * options (bench_source.h), opens --connections sessions to --to, runs
 * --messages transactions (or as many as fit in --duration), prints one
 * report on stdout (text, or one JSON object with --json and nothing else
 * there) and returns the exit status: 0 the run completed (refusals are
 * measurements, not failures; an interrupt drains and completes too), 1 it
 * could not run (nothing listens at --to, the server refuses the session
 * set-up, --max-errors connection errors), 2 usage error.
 * Diagnostics go to stderr; when stderr is a terminal, a progress line too.
 *
 * I/O: one thread, one io_uring ring, built like engine/shard.c. Every
 * operation carries op | slot | generation in user_data; completions are
 * reaped in a batch, then handled; recv uses a provided buffer ring, so an
 * idle connection holds no receive buffer; each connection has at most one
 * connect, one recv and one send in flight. Handlers never send: they mark
 * the connection dirty, and before the loop sleeps each dirty connection
 * runs its send side once and flushes, so everything decided in one batch
 * leaves in one write per connection.
 *
 * Per message the only work is the few hundred bytes of header: commands
 * and header are composed in a fixed per-connection buffer, and the body
 * (built once) or the corpus file is sent by reference with sendmsg
 * iovecs. No allocation per message. With --starttls, plaintext goes
 * through wolfSSL over memory buffers (bench_tls.h) and the ciphertext is
 * sent on the same ring.
 */
#include "bench_source.h"

#include <assert.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <liburing.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/coding.h>

#include "../lib/buf.h"
#include "../lib/clock.h"
#include "../lib/log.h"
#include "../lib/uring.h"
#include "bench.h"
#include "bench_common.h"
#include "bench_hist.h"
#include "bench_tls.h"

/* ---- limits ----------------------------------------------------------- */

#define SRC_RING_ENTRIES 4096
#define SRC_CQE_BATCH 256
#define SRC_RECV_BUFS 512		/* power of two */
#define SRC_RECV_BUF_SIZE 4096		/* replies are short */
#define SRC_BGID 1
#define SRC_EXPECT_MAX 8	/* DOT, RSET, MAIL, RCPT, DATA, QUIT: 6 */
#define SRC_TXN_MAX 2		/* awaiting its final reply + awaiting 354 */
#define SRC_IOV_MAX 16
#define SRC_LINE_MAX 1024	/* RFC 5321 4.5.3.1.5 says 512; be lenient */
#define SRC_REPLY_LINES_MAX 256	/* lines in one multi-line reply */
#define SRC_HEAD_BASE 4096	/* fixed part of a connection's output */
#define SRC_TICK_US 100000	/* timeout scan */
#define SRC_PROGRESS_US 250000	/* progress line: 4 times a second */
#define SRC_PROGRESS_SAMPLES 4	/* x 250 ms: rate over the last second */
#define SRC_BACKOFF_MIN_US 10000
#define SRC_BACKOFF_MAX_US 1000000
#define SRC_QUIT_GRACE_US 2000000	/* wait for 221s at the end, at most */
#define SRC_CORPUS_FILES_MAX 100000
#define SRC_CORPUS_BYTES_MAX (1024ull * 1024 * 1024)
#define SRC_RATE_MAX 10000000.0
#define SRC_WHY_MAX 256
#define SRC_FD_SPARE 32		/* descriptors besides the connections */

static_assert((SRC_RECV_BUFS & (SRC_RECV_BUFS - 1)) == 0,
    "provided buffer ring size must be a power of two");
static_assert(SRC_EXPECT_MAX >= 6, "expect queue too short for a group");
static_assert(SRC_CONNECTIONS_MAX < (1 << 24), "slot index in user_data");

/* ---- options ---------------------------------------------------------- */

const char bench_source_usage[] =
"usage: sluice-bench source --to HOST:PORT [options]\n"
"\n"
"Load generator for any SMTP or LMTP server. Runs --messages transactions\n"
"(or as many as fit in --duration) over --connections sessions and reports\n"
"throughput, refusals and latency percentiles on stdout.\n"
"\n"
"  --to HOST:PORT        server address, numeric (127.0.0.1:25, [::1]:25)\n"
"  --connections C       concurrent sessions (default 10)\n"
"  --messages N          transactions to run (default 1000)\n"
"  --duration D          run for D instead (30s, 500ms, 5m): as many as fit\n"
"  --size BYTES          generated message size (default 1024; 20k, 1M)\n"
"  --corpus DIR          send every regular file in DIR instead, in turn\n"
"                        (LF line ends become CRLF, lines are dot-stuffed)\n"
"  --recipients R        recipients per message (default 1)\n"
"  --per-connection M    QUIT and reconnect after M messages (default 0:\n"
"                        one connection for all)\n"
"  --pipelining on|off   pipeline when the server offers it (default on)\n"
"  --rate MSGS_PER_S     open loop: start transactions at fixed intervals;\n"
"                        latency counts from the scheduled time\n"
"                        (default: closed loop, as fast as replies come)\n"
"  --from ADDR           envelope sender (default bench@example.com;\n"
"                        \"\" is the null sender)\n"
"  --rcpt ADDR           recipient template (default rcpt{n}@example.net);\n"
"                        {n} is a counter advanced per recipient\n"
"  --rcpt-mod K          the counter wraps at K (default 1000; 0: never)\n"
"  --helo NAME           EHLO/LHLO name (default sluice-bench.localdomain)\n"
"  --lmtp                speak LMTP: LHLO, one reply per recipient after\n"
"                        the data\n"
"  --starttls            upgrade each session with STARTTLS before MAIL\n"
"  --tls-verify CAFILE   verify the server's certificate chain against\n"
"                        CAFILE (implies --starttls; default: no check)\n"
"  --auth USER:PASS      AUTH PLAIN (or LOGIN if only that is offered),\n"
"                        after STARTTLS when --starttls is given\n"
"  --timeout D           wait at most D for each reply (default 30s)\n"
"  --max-errors N        give up after N connection errors (default 1000)\n"
"  --json                print the report as one JSON object\n"
"  --quiet               no progress line\n"
"  --help                this text\n"
"\n"
"Exit status: 0 the run completed (refusals included), 1 it could not run\n"
"(cannot connect, session set-up refused, --max-errors reached), 2 usage.\n";

enum opt_id {
	OPT_TO = 1, OPT_CONNECTIONS, OPT_MESSAGES, OPT_DURATION, OPT_SIZE,
	OPT_CORPUS, OPT_RECIPIENTS, OPT_PER_CONNECTION, OPT_PIPELINING,
	OPT_RATE, OPT_FROM, OPT_RCPT, OPT_RCPT_MOD, OPT_HELO, OPT_LMTP,
	OPT_STARTTLS, OPT_TLS_VERIFY, OPT_AUTH, OPT_TIMEOUT, OPT_MAX_ERRORS,
	OPT_JSON, OPT_QUIET, OPT_HELP,
};

static const struct opt_def {
	const char *name;
	enum opt_id id;
	bool has_arg;
} opt_table[] = {
	{ "to", OPT_TO, true },
	{ "connections", OPT_CONNECTIONS, true },
	{ "messages", OPT_MESSAGES, true },
	{ "duration", OPT_DURATION, true },
	{ "size", OPT_SIZE, true },
	{ "corpus", OPT_CORPUS, true },
	{ "recipients", OPT_RECIPIENTS, true },
	{ "per-connection", OPT_PER_CONNECTION, true },
	{ "pipelining", OPT_PIPELINING, true },
	{ "rate", OPT_RATE, true },
	{ "from", OPT_FROM, true },
	{ "rcpt", OPT_RCPT, true },
	{ "rcpt-mod", OPT_RCPT_MOD, true },
	{ "helo", OPT_HELO, true },
	{ "lmtp", OPT_LMTP, false },
	{ "starttls", OPT_STARTTLS, false },
	{ "tls-verify", OPT_TLS_VERIFY, true },
	{ "auth", OPT_AUTH, true },
	{ "timeout", OPT_TIMEOUT, true },
	{ "max-errors", OPT_MAX_ERRORS, true },
	{ "json", OPT_JSON, false },
	{ "quiet", OPT_QUIET, false },
	{ "help", OPT_HELP, false },
};

/* A decimal integer in [min, max], digits only. */
static bool
parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	unsigned long long v;
	char *end;

	if (!isdigit((unsigned char)*s))
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return false;
	*out = v;
	return true;
}

/*
 * An address as it goes between < and > (RFC 5321 4.1.2, loosely): no
 * spaces, controls, brackets; UTF-8 allowed. Empty only when allow_empty.
 */
static bool
addr_ok(const char *s, bool allow_empty)
{
	const unsigned char *p;

	if (*s == '\0')
		return allow_empty;
	if (strlen(s) > SRC_ADDR_MAX)
		return false;
	for (p = (const unsigned char *)s; *p; p++)
		if (*p <= ' ' || *p == '<' || *p == '>' || *p == 0x7f)
			return false;
	return true;
}

/* Printable, no spaces: a domain or address literal for EHLO. */
static bool
helo_ok(const char *s)
{
	const unsigned char *p;

	if (*s == '\0' || strlen(s) > SRC_HELO_MAX)
		return false;
	for (p = (const unsigned char *)s; *p; p++)
		if (*p <= ' ' || *p == 0x7f)
			return false;
	return true;
}

__attribute__((format(printf, 3, 4)))
static enum bench_source_parse
usage_error(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
	return BENCH_SOURCE_USAGE;
}

static void
opts_defaults(struct bench_source_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->connections = SRC_DEF_CONNECTIONS;
	o->messages = SRC_DEF_MESSAGES;
	o->size = SRC_DEF_SIZE;
	o->recipients = SRC_DEF_RECIPIENTS;
	o->pipelining = true;
	o->from = SRC_DEF_FROM;
	o->rcpt = SRC_DEF_RCPT;
	o->rcpt_mod = SRC_DEF_RCPT_MOD;
	o->helo = SRC_DEF_HELO;
	o->timeout_us = SRC_DEF_TIMEOUT_US;
	o->max_errors = SRC_DEF_MAX_ERRORS;
}

/* One option with its value v (NULL for flags). */
static enum bench_source_parse
opt_set(struct bench_source_opts *o, const struct opt_def *d, const char *v,
    char *why, size_t whylen)
{
	const char *colon;
	uint64_t n;
	char *end;
	double r;

	switch (d->id) {
	case OPT_TO:
		if (strlen(v) >= sizeof(o->to_text) ||
		    !bench_parse_hostport(v, &o->to, &o->to_len))
			return usage_error(why, whylen, "--to: '%s' is not a "
			    "numeric HOST:PORT (127.0.0.1:25, [::1]:25)", v);
		snprintf(o->to_text, sizeof(o->to_text), "%s", v);
		break;
	case OPT_CONNECTIONS:
		if (!parse_uint(v, 1, SRC_CONNECTIONS_MAX, &n))
			return usage_error(why, whylen, "--connections: '%s' "
			    "is not a number from 1 to %d", v,
			    SRC_CONNECTIONS_MAX);
		o->connections = (uint32_t)n;
		break;
	case OPT_MESSAGES:
		if (!parse_uint(v, 1, UINT64_MAX, &o->messages))
			return usage_error(why, whylen, "--messages: '%s' is "
			    "not a positive number", v);
		break;
	case OPT_DURATION:
		if (!bench_parse_duration(v, &o->duration_us) ||
		    o->duration_us == 0)
			return usage_error(why, whylen, "--duration: '%s' is "
			    "not a positive duration (30s, 500ms, 5m)", v);
		break;
	case OPT_SIZE:
		if (!bench_parse_size(v, &o->size) || o->size > SRC_SIZE_MAX)
			return usage_error(why, whylen, "--size: '%s' is not "
			    "a size up to 1G (1024, 20k, 1M)", v);
		break;
	case OPT_CORPUS:
		if (*v == '\0')
			return usage_error(why, whylen, "--corpus: empty "
			    "directory name");
		o->corpus = v;
		break;
	case OPT_RECIPIENTS:
		if (!parse_uint(v, 1, SRC_RECIPIENTS_MAX, &n))
			return usage_error(why, whylen, "--recipients: '%s' "
			    "is not a number from 1 to %d", v,
			    SRC_RECIPIENTS_MAX);
		o->recipients = (uint32_t)n;
		break;
	case OPT_PER_CONNECTION:
		if (!parse_uint(v, 0, UINT32_MAX, &n))
			return usage_error(why, whylen, "--per-connection: "
			    "'%s' is not a number", v);
		o->per_connection = (uint32_t)n;
		break;
	case OPT_PIPELINING:
		if (strcmp(v, "on") == 0)
			o->pipelining = true;
		else if (strcmp(v, "off") == 0)
			o->pipelining = false;
		else
			return usage_error(why, whylen, "--pipelining: '%s' "
			    "is not on or off", v);
		break;
	case OPT_RATE:
		errno = 0;
		r = isdigit((unsigned char)*v) ? strtod(v, &end) : -1;
		if (r <= 0 || errno != 0 || *end != '\0' || !isfinite(r) ||
		    r > SRC_RATE_MAX)
			return usage_error(why, whylen, "--rate: '%s' is not "
			    "a positive number of messages per second", v);
		o->rate = r;
		break;
	case OPT_FROM:
		if (!addr_ok(v, true))
			return usage_error(why, whylen, "--from: '%s' is not "
			    "a usable address", v);
		o->from = v;
		break;
	case OPT_RCPT: {
		char probe[SRC_ADDR_MAX + 1];

		/* The longest expansion must fit: try the largest counter. */
		if (!addr_ok(v, false) ||
		    bench_source_rcpt_expand(v, UINT64_MAX, probe,
		    sizeof(probe)) == 0)
			return usage_error(why, whylen, "--rcpt: '%s' is not "
			    "a usable address template", v);
		o->rcpt = v;
		break;
	}
	case OPT_RCPT_MOD:
		if (!parse_uint(v, 0, UINT64_MAX, &o->rcpt_mod))
			return usage_error(why, whylen, "--rcpt-mod: '%s' is "
			    "not a number", v);
		break;
	case OPT_HELO:
		if (!helo_ok(v))
			return usage_error(why, whylen, "--helo: '%s' is not "
			    "a usable name", v);
		o->helo = v;
		break;
	case OPT_LMTP:
		o->lmtp = true;
		break;
	case OPT_STARTTLS:
		o->starttls = true;
		break;
	case OPT_TLS_VERIFY:
		if (*v == '\0')
			return usage_error(why, whylen, "--tls-verify: empty "
			    "file name");
		o->tls_verify = v;
		o->starttls = true;
		break;
	case OPT_AUTH:
		colon = strchr(v, ':');
		if (colon == NULL || colon == v ||
		    (size_t)(colon - v) > SRC_AUTH_MAX ||
		    strlen(colon + 1) > SRC_AUTH_MAX)
			return usage_error(why, whylen, "--auth: expected "
			    "USER:PASS, each at most %d bytes", SRC_AUTH_MAX);
		memcpy(o->auth_user, v, (size_t)(colon - v));
		o->auth_user[colon - v] = '\0';
		snprintf(o->auth_pass, sizeof(o->auth_pass), "%s", colon + 1);
		o->auth = true;
		break;
	case OPT_TIMEOUT:
		if (!bench_parse_duration(v, &o->timeout_us) ||
		    o->timeout_us == 0)
			return usage_error(why, whylen, "--timeout: '%s' is "
			    "not a positive duration", v);
		break;
	case OPT_MAX_ERRORS:
		if (!parse_uint(v, 1, UINT64_MAX, &o->max_errors))
			return usage_error(why, whylen, "--max-errors: '%s' "
			    "is not a positive number", v);
		break;
	case OPT_JSON:
		o->json = true;
		break;
	case OPT_QUIET:
		o->quiet = true;
		break;
	case OPT_HELP:
		return BENCH_SOURCE_HELP;
	default:
		log_panic("bad option id %d", (int)d->id);
	}
	return BENCH_SOURCE_RUN;
}

enum bench_source_parse
bench_source_opts_parse(struct bench_source_opts *o, int argc, char **argv,
    char *why, size_t whylen)
{
	bool seen_messages = false, seen_size = false;
	const struct opt_def *d;
	enum bench_source_parse rc;
	const char *arg, *v, *eq;
	size_t nlen, i;
	int ai;

	opts_defaults(o);
	why[0] = '\0';
	for (ai = 1; ai < argc; ai++) {
		arg = argv[ai];
		if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0')
			return usage_error(why, whylen, "unexpected argument "
			    "'%s'", arg);
		arg += 2;
		eq = strchr(arg, '=');
		nlen = eq ? (size_t)(eq - arg) : strlen(arg);
		d = NULL;
		for (i = 0; i < sizeof(opt_table) / sizeof(opt_table[0]); i++)
			if (strlen(opt_table[i].name) == nlen &&
			    strncmp(opt_table[i].name, arg, nlen) == 0) {
				d = &opt_table[i];
				break;
			}
		if (d == NULL)
			return usage_error(why, whylen, "unknown option "
			    "'--%.*s'", (int)nlen, arg);
		v = NULL;
		if (d->has_arg) {
			if (eq != NULL)
				v = eq + 1;
			else if (ai + 1 < argc)
				v = argv[++ai];
			else
				return usage_error(why, whylen, "--%s needs a "
				    "value", d->name);
		} else if (eq != NULL) {
			return usage_error(why, whylen, "--%s takes no value",
			    d->name);
		}
		if (d->id == OPT_MESSAGES)
			seen_messages = true;
		if (d->id == OPT_SIZE)
			seen_size = true;
		rc = opt_set(o, d, v, why, whylen);
		if (rc != BENCH_SOURCE_RUN)
			return rc;
	}
	if (o->to_len == 0)
		return usage_error(why, whylen, "--to HOST:PORT is required");
	if (seen_messages && o->duration_us)
		return usage_error(why, whylen, "--messages and --duration "
		    "exclude each other");
	if (seen_size && o->corpus)
		return usage_error(why, whylen, "--size and --corpus exclude "
		    "each other");
	if (o->duration_us)
		o->messages = 0;
	return BENCH_SOURCE_RUN;
}

size_t
bench_source_rcpt_expand(const char *tmpl, uint64_t n, char *out,
    size_t outlen)
{
	char num[24];
	size_t len = 0, nl;
	const char *p;

	nl = (size_t)snprintf(num, sizeof(num), "%llu", (unsigned long long)n);
	for (p = tmpl; *p; ) {
		if (p[0] == '{' && p[1] == 'n' && p[2] == '}') {
			if (len + nl >= outlen)
				return 0;
			memcpy(out + len, num, nl);
			len += nl;
			p += 3;
			continue;
		}
		if (len + 1 >= outlen)
			return 0;
		out[len++] = *p++;
	}
	if (len >= outlen)
		return 0;
	out[len] = '\0';
	return len;
}

/* ---- the client's states ---------------------------------------------- */

/*
 * The SMTP client: one state machine per connection, split into a send
 * side and a receive side so that commands can run ahead of replies
 * (the design of Postfix's smtp_proto.c).
 *
 * The send side (conn_send) walks c->send_state. Each state sends exactly
 * one command and names the next state:
 *
 *   GREETING -> EHLO [-> HELO] [-> STARTTLS -> TLS -> EHLO]
 *   [-> AUTH [-> AUTH_USER -> AUTH_PASS]] -> MAIL -> RCPT x R -> DATA
 *   -> DOT [-> RSET] -> MAIL ... -> QUIT
 *
 * Every command sent pushes what its reply will mean onto the connection's
 * expect queue. Replies come back in the order of the commands (RFC 2920
 * section 3.1), so the receive side (reply_done) takes the head of that
 * queue, and that entry is the receive state. Session set-up is
 * synchronous: after each set-up command the send side waits (WAIT) until
 * the reply handler names the next state. In a transaction, without
 * PIPELINING each state waits for an empty expect queue before it sends.
 * With it the send side runs on until DOT, which must have the 354 to its
 * DATA (DATA ends a group, RFC 2920 section 3.1), and then sends the
 * message, the dot and straight after it the next transaction's MAIL,
 * RCPTs and DATA in the same write. So a pipelining connection has at
 * most two transactions in flight: one waiting for its final reply, the
 * next waiting for its 354.
 *
 * A refusal never stalls the send side. After a refused MAIL or RCPT the
 * rest of the group is sent anyway and refused in turn; a refused DATA
 * skips the message (with RSET first when the server still holds the
 * transaction open); each transaction's outcome is settled by its replies
 * alone. A 421, a reset, an unexpected close or a timeout ends the
 * connection: the transactions in flight on it are lost, and it reconnects
 * after a bounded backoff while there is work left.
 */
enum src_state {
	SRC_S_GREETING,		/* the server's 220 (receive side only) */
	SRC_S_EHLO,		/* EHLO, or LHLO with --lmtp */
	SRC_S_HELO,		/* EHLO refused: plain SMTP */
	SRC_S_STARTTLS,
	SRC_S_TLS,		/* the handshake: no command, recv drives it */
	SRC_S_AUTH,		/* AUTH PLAIN with initial response, or LOGIN */
	SRC_S_AUTH_USER,	/* AUTH LOGIN: the user name */
	SRC_S_AUTH_PASS,	/* AUTH LOGIN: the password */
	SRC_S_MAIL,
	SRC_S_RCPT,
	SRC_S_DATA,
	SRC_S_DOT,		/* the message and its end-of-data dot */
	SRC_S_RSET,		/* after a refused DATA, before the next MAIL */
	SRC_S_QUIT,
	SRC_S_WAIT,		/* send side: nothing until a reply comes */
	SRC_S_COUNT
};

static const char *const src_state_names[SRC_S_COUNT] = {
	[SRC_S_GREETING] = "greeting", [SRC_S_EHLO] = "EHLO",
	[SRC_S_HELO] = "HELO", [SRC_S_STARTTLS] = "STARTTLS",
	[SRC_S_TLS] = "TLS handshake", [SRC_S_AUTH] = "AUTH",
	[SRC_S_AUTH_USER] = "AUTH LOGIN user",
	[SRC_S_AUTH_PASS] = "AUTH LOGIN password", [SRC_S_MAIL] = "MAIL",
	[SRC_S_RCPT] = "RCPT", [SRC_S_DATA] = "DATA",
	[SRC_S_DOT] = "end of data", [SRC_S_RSET] = "RSET",
	[SRC_S_QUIT] = "QUIT", [SRC_S_WAIT] = "wait",
};

static const char *
src_strstate(enum src_state st)
{
	return (unsigned)st < SRC_S_COUNT ? src_state_names[st] : "?";
}

/* Where a refused transaction was refused. */
enum src_stage {
	SRC_STAGE_NONE,
	SRC_STAGE_MAIL,
	SRC_STAGE_RCPT,		/* every recipient refused */
	SRC_STAGE_DATA,
	SRC_STAGE_DOT,		/* after the data */
	SRC_STAGE_COUNT
};

static const char *const src_stage_names[SRC_STAGE_COUNT] = {
	[SRC_STAGE_NONE] = "none", [SRC_STAGE_MAIL] = "mail",
	[SRC_STAGE_RCPT] = "rcpt", [SRC_STAGE_DATA] = "data",
	[SRC_STAGE_DOT] = "end_of_data",
};

/* Connection errors, by kind. */
enum src_err {
	SRC_E_REFUSED,		/* connect: ECONNREFUSED */
	SRC_E_CONNECT,		/* connect: any other error */
	SRC_E_RESET,		/* reset or broken pipe */
	SRC_E_CLOSED,		/* the server closed without a QUIT */
	SRC_E_TIMEOUT,		/* no reply within --timeout */
	SRC_E_421,		/* 421: service closing */
	SRC_E_SETUP,		/* greeting, EHLO, STARTTLS or AUTH refused */
	SRC_E_TLS,		/* handshake or record failure */
	SRC_E_PROTOCOL,		/* malformed or unexpected reply */
	SRC_E_COUNT
};

static const char *const src_err_names[SRC_E_COUNT] = {
	[SRC_E_REFUSED] = "refused", [SRC_E_CONNECT] = "connect",
	[SRC_E_RESET] = "reset", [SRC_E_CLOSED] = "closed",
	[SRC_E_TIMEOUT] = "timeout", [SRC_E_421] = "421",
	[SRC_E_SETUP] = "setup", [SRC_E_TLS] = "tls",
	[SRC_E_PROTOCOL] = "protocol",
};

/* What the send side may do with the message after DATA. */
enum src_data {
	SRC_DATA_WAIT,		/* no reply to DATA yet */
	SRC_DATA_GO,		/* 354: send the message */
	SRC_DATA_EMPTY,		/* 354 but no recipient: a lone dot */
	SRC_DATA_REFUSED,	/* no 354: skip the message */
};

struct src_txn {
	bool live;
	bool mail_ok;
	uint8_t data;		/* enum src_data */
	uint8_t fail_stage;	/* enum src_stage; NONE while not refused */
	uint8_t fail_class;	/* 4 or 5 */
	uint64_t seq;		/* the run's message number */
	uint64_t start_us;	/* monotonic: scheduled or started */
	uint64_t rcpt_first;	/* recipient counter of its first recipient */
	uint32_t rcpt_ok, rcpt_4xx, rcpt_5xx;
	uint32_t lmtp_ok, lmtp_4xx, lmtp_5xx;
};

/* A reply still due, and what it means; count covers repeated replies. */
struct src_expect {
	uint8_t kind;		/* enum src_state of the command */
	uint8_t txn;		/* index in c->txn */
	uint16_t count;
};
static_assert(SRC_RECIPIENTS_MAX <= UINT16_MAX, "expect count");

/*
 * Output being composed: bytes in head (fixed capacity, never moves while
 * a send may point into it) and references to shared message bytes, in
 * order, as iovecs for sendmsg.
 */
struct src_out {
	char *head;
	size_t len;
	size_t cap;
	struct iovec iov[SRC_IOV_MAX];
	unsigned niov;
};

enum src_after {
	SRC_AFTER_NONE,		/* stay closed */
	SRC_AFTER_RECONNECT,	/* connect again at once */
	SRC_AFTER_BACKOFF,	/* connect again at wake_us */
};

struct src_conn {
	uint32_t gen;
	int fd;
	uint32_t serial;	/* connection number within the run */
	enum src_state send_state;
	bool connecting;	/* connect in flight */
	bool recv_armed;
	bool send_armed;
	bool send_tls;		/* the send in flight is tls_tx */
	bool closing;		/* shut down; released when inflight == 0 */
	bool dirty;		/* on the dirty list */
	bool idle;		/* waiting for work (open loop) */
	bool queued;		/* has an entry in the idle queue */
	bool sleeping;		/* waiting for wake_us to reconnect */
	bool pipelining;	/* negotiated for this session */
	bool cap_pipelining, cap_starttls, cap_plain, cap_login;
	bool ehlo_refused;	/* fell back to HELO */
	bool tls_pending;	/* 220 to STARTTLS seen: start TLS */
	bool tls_on;
	bool authed;
	bool quit_sent;
	bool auth_login;	/* AUTH LOGIN rather than PLAIN */
	uint8_t inflight;
	uint8_t after;		/* enum src_after, once released */
	uint32_t backoff_n;	/* consecutive connection errors */
	uint32_t reserved;	/* messages promised to this new session */
	uint32_t msgs;		/* transactions started on this session */
	uint32_t rcpt_next;	/* next RCPT of the transaction being sent */
	uint32_t reply_lines;	/* lines so far of the reply being read */
	uint32_t tsend;		/* c->txn index the send side works on */
	uint64_t connect_us;
	uint64_t deadline_us;	/* 0: not waiting for anything */
	uint64_t wake_us;
	struct src_expect expect[SRC_EXPECT_MAX];
	unsigned ehead, ecount;
	struct src_txn txn[SRC_TXN_MAX];
	char line[SRC_LINE_MAX];	/* a reply line split across reads */
	size_t line_len;
	struct src_out out[2];	/* out[fill] composes, the other is sent */
	unsigned fill;
	struct msghdr msg;	/* of the plaintext send in flight */
	struct bench_tls *tls;
	struct buf tls_tx;	/* ciphertext being sent */
	size_t tls_tx_off;
	uint32_t next_dirty;
};

struct src_corpus_msg {
	char *data;
	size_t len;
};

struct src_stats {
	uint64_t sent;			/* transactions started */
	uint64_t accepted;
	uint64_t completed;		/* accepted or refused */
	uint64_t temp[SRC_STAGE_COUNT];
	uint64_t perm[SRC_STAGE_COUNT];
	uint64_t lost;			/* in flight at a connection error */
	uint64_t rcpt_4xx, rcpt_5xx;	/* recipients refused at RCPT */
	uint64_t lmtp_ok, lmtp_4xx, lmtp_5xx;
	uint64_t err[SRC_E_COUNT];
	uint64_t errors;
	uint64_t connects;		/* connections opened */
	uint64_t sessions;		/* sessions that reached MAIL */
	struct hist lat_txn;		/* accepted transactions */
	struct hist lat_greet;		/* connect to 220 */
};

struct src {
	const struct bench_source_opts *o;
	struct io_uring ring;
	bool ring_ok;
	struct uring_bufs bufs;		/* provided buffers for recv */
	struct src_conn *conns;
	char *heads;			/* every connection's out heads */
	size_t heads_size;
	struct bench_tls_ctx *tls_ctx;

	/* What is sent. */
	char *body;
	size_t body_len;
	struct src_corpus_msg *corpus;
	size_t ncorpus;
	char mail_cmd[SRC_ADDR_MAX + 64];
	size_t mail_cmd_len;
	char from_hdr[SRC_ADDR_MAX + 64];
	char auth_plain[2 * (2 * SRC_AUTH_MAX + 2) + 32];
	char auth_user64[2 * SRC_AUTH_MAX + 8];
	char auth_pass64[2 * SRC_AUTH_MAX + 8];
	char date[64];
	uint64_t date_sec;
	char run_id[9];

	/* The schedule. */
	uint64_t now;			/* monotonic us, per batch */
	uint64_t t0;
	int64_t real_off;		/* realtime - monotonic */
	uint64_t next_seq;		/* transactions taken */
	uint64_t reserved;		/* messages promised to sessions being set up */
	uint64_t rcpt_counter;
	uint64_t live;			/* transactions in flight */
	bool stopping;			/* no new transactions */
	bool aborting;			/* stop now: exit 1 */
	uint64_t end_us;		/* when the last transaction ended */
	uint64_t quit_deadline;
	uint32_t conn_serial;
	uint32_t nopen;			/* connections with a socket */
	uint32_t nsleeping;
	uint64_t next_wake;
	uint64_t next_tick;
	uint32_t *idleq;		/* FIFO of idle connections */
	uint32_t idle_head, idle_count;
	uint32_t dirty_head;

	/* What happened. */
	struct src_stats st;
	char error[SRC_WHY_MAX];	/* why the run could not run */
	char first_refusal[SRC_WHY_MAX];
	char first_conn_error[SRC_WHY_MAX];
	bool srv_known;
	bool srv_pipelining, srv_starttls, srv_plain, srv_login;
	char tls_version[32];
	char tls_cipher[64];

	/* The progress line. */
	bool progress;
	bool progress_shown;
	uint64_t next_progress;
	uint64_t prog_t[SRC_PROGRESS_SAMPLES];
	uint64_t prog_acc[SRC_PROGRESS_SAMPLES];
	unsigned prog_i;
};

enum op {
	OP_CONNECT = 1,
	OP_RECV,
	OP_SEND,
	OP_CANCEL,
};


static volatile sig_atomic_t src_interrupts;

/* Does c still have a transaction waiting for a reply? */
static bool
conn_txn_live(const struct src_conn *c)
{
	unsigned i;

	for (i = 0; i < SRC_TXN_MAX; i++)
		if (c->txn[i].live)
			return true;
	return false;
}

static void
on_interrupt(int sig)
{
	(void)sig;
	src_interrupts++;
}

static inline struct io_uring_sqe *
get_sqe(struct src *s)
{
	return uring_get_sqe(&s->ring);
}

static inline uint32_t
conn_idx(const struct src *s, const struct src_conn *c)
{
	return (uint32_t)(c - s->conns);
}

/* ---- composing output ------------------------------------------------- */

/* Room for n bytes at the end of the head; the caller writes, then commits. */
static inline char *
out_room(struct src_out *o, size_t n)
{
	/* The head is sized at start-up for one full group; see src_init. */
	if (o->len + n > o->cap)
		log_panic("output head overflow: %zu + %zu > %zu", o->len, n,
		    o->cap);
	return o->head + o->len;
}

static inline void
out_commit(struct src_out *o, size_t n)
{
	struct iovec *last = o->niov ? &o->iov[o->niov - 1] : NULL;

	if (n == 0)
		return;
	if (last != NULL &&
	    (char *)last->iov_base + last->iov_len == o->head + o->len) {
		last->iov_len += n;
	} else {
		if (o->niov == SRC_IOV_MAX)
			log_panic("output iovec overflow");
		o->iov[o->niov].iov_base = o->head + o->len;
		o->iov[o->niov].iov_len = n;
		o->niov++;
	}
	o->len += n;
}

static inline void
out_bytes(struct src_out *o, const char *p, size_t n)
{
	memcpy(out_room(o, n), p, n);
	out_commit(o, n);
}

#define OUT_LIT(o, lit) out_bytes((o), (lit), sizeof(lit) - 1)

static inline void
out_str(struct src_out *o, const char *p)
{
	out_bytes(o, p, strlen(p));
}

/* Shared bytes (the body, a corpus file), sent by reference. */
static void
out_ref(struct src_out *o, const char *p, size_t n)
{
	if (n == 0)
		return;
	if (o->niov == SRC_IOV_MAX)
		log_panic("output iovec overflow");
	o->iov[o->niov].iov_base = (void *)p;
	o->iov[o->niov].iov_len = n;
	o->niov++;
}

static void
out_reset(struct src_out *o)
{
	o->len = 0;
	o->niov = 0;
}

/* Decimal digits of v at p; returns the count. */
static size_t
fmt_u64(char *p, uint64_t v)
{
	char tmp[20];
	size_t n = 0, i;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	for (i = 0; i < n; i++)
		p[i] = tmp[n - 1 - i];
	return n;
}

static void
out_u64(struct src_out *o, uint64_t v)
{
	out_commit(o, fmt_u64(out_room(o, 20), v));
}

/* ---- message material ------------------------------------------------- */

/*
 * A body of len bytes: lines of at most 76 printable characters and CRLF.
 * No line starts with a dot, so it needs no stuffing. A remainder too short
 * for a line is avoided by shortening the line before it.
 */
static char *
body_make(size_t len, size_t *outlen)
{
	static const char alphabet[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
	const size_t na = sizeof(alphabet) - 1;
	size_t left = len, w, rem, i, line = 0;
	char *b, *p;

	b = malloc(len + 1);
	if (b == NULL)
		return NULL;
	p = b;
	while (left >= 3) {
		w = left - 2 > 76 ? 76 : left - 2;
		rem = left - (w + 2);
		if (rem == 1 || rem == 2)
			w -= 3 - rem;
		for (i = 0; i < w; i++)
			p[i] = alphabet[(line + i) % na];
		p[w] = '\r';
		p[w + 1] = '\n';
		p += w + 2;
		left -= w + 2;
		line++;
	}
	if (left == 2) {
		memcpy(p, "\r\n", 2);
		p += 2;
	}
	*outlen = (size_t)(p - b);
	return b;
}

/*
 * One corpus file as it goes on the wire: bare LF becomes CRLF, a line
 * starting with a dot gets another (RFC 5321 4.5.2), and the last line
 * ends with CRLF. Other bytes go as they are.
 */
static int
corpus_convert(const char *in, size_t n, struct src_corpus_msg *m)
{
	size_t i, len = 0;
	bool bol = true;
	char *out;

	/* Worst case: every byte a "\n" or a leading ".", doubled. */
	out = malloc(2 * n + 3);
	if (out == NULL)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		if (bol && in[i] == '.')
			out[len++] = '.';
		bol = false;
		if (in[i] == '\n') {
			if (len == 0 || out[len - 1] != '\r')
				out[len++] = '\r';
			bol = true;
		}
		out[len++] = in[i];
	}
	if (len > 0 && !bol) {
		out[len++] = '\r';
		out[len++] = '\n';
	}
	m->data = out;
	m->len = len;
	return 0;
}

static int
name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Load every regular file in dir, in name order. 0, or -1 with why. */
static int
corpus_load(struct src *s, const char *dir, char *why, size_t whylen)
{
	char **names = NULL, path[4096];
	size_t nnames = 0, cap = 0, total = 0, i;
	struct dirent *de;
	struct stat sb;
	DIR *d = NULL;
	char *data = NULL;
	int fd = -1, rc = -1;
	ssize_t r;

	d = opendir(dir);
	if (d == NULL) {
		snprintf(why, whylen, "--corpus %s: %s", dir, strerror(errno));
		goto fail;
	}
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.' && (de->d_name[1] == '\0' ||
		    (de->d_name[1] == '.' && de->d_name[2] == '\0')))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (stat(path, &sb) < 0 || !S_ISREG(sb.st_mode))
			continue;
		if (nnames == SRC_CORPUS_FILES_MAX) {
			snprintf(why, whylen, "--corpus %s: more than %d "
			    "files", dir, SRC_CORPUS_FILES_MAX);
			goto fail;
		}
		if (nnames == cap) {
			char **nn;

			cap = cap ? cap * 2 : 64;
			nn = realloc(names, cap * sizeof(*names));
			if (nn == NULL)
				goto nomem;
			names = nn;
		}
		if ((names[nnames] = strdup(de->d_name)) == NULL)
			goto nomem;
		nnames++;
	}
	if (nnames == 0) {
		snprintf(why, whylen, "--corpus %s: no regular file in it",
		    dir);
		goto fail;
	}
	qsort(names, nnames, sizeof(*names), name_cmp);
	s->corpus = calloc(nnames, sizeof(*s->corpus));
	if (s->corpus == NULL)
		goto nomem;
	for (i = 0; i < nnames; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0 || fstat(fd, &sb) < 0) {
			snprintf(why, whylen, "%.200s: %s", path,
			    strerror(errno));
			goto fail;
		}
		if ((uint64_t)sb.st_size > SRC_CORPUS_BYTES_MAX - total) {
			snprintf(why, whylen, "--corpus %s: more than 1 GiB",
			    dir);
			goto fail;
		}
		data = malloc((size_t)sb.st_size + 1);
		if (data == NULL)
			goto nomem;
		r = read(fd, data, (size_t)sb.st_size);
		if (r != (ssize_t)sb.st_size) {
			snprintf(why, whylen, "%.200s: short read", path);
			goto fail;
		}
		close(fd);
		fd = -1;
		if (corpus_convert(data, (size_t)r, &s->corpus[i]) < 0)
			goto nomem;
		free(data);
		data = NULL;
		s->ncorpus++;
		total += s->corpus[i].len;
	}
	rc = 0;
	goto done;
nomem:
	snprintf(why, whylen, "--corpus %s: out of memory", dir);
fail:
	rc = -1;
done:
	if (fd >= 0)
		close(fd);
	free(data);
	for (i = 0; i < nnames; i++)
		free(names[i]);
	free(names);
	if (d != NULL)
		closedir(d);
	return rc;
}

/* The Date: value for this second (RFC 5322 3.3), cached per second. */
static const char *
date_now(struct src *s, uint64_t real_us)
{
	time_t sec = (time_t)(real_us / 1000000u);
	struct tm tm;

	if ((uint64_t)sec != s->date_sec) {
		gmtime_r(&sec, &tm);
		strftime(s->date, sizeof(s->date),
		    "%a, %d %b %Y %H:%M:%S +0000", &tm);
		s->date_sec = (uint64_t)sec;
	}
	return s->date;
}

/*
 * The per-message header: X-Sluice-Bench first (bench_common.h), then, for
 * generated messages, Date, From, To, Subject, Message-ID and the empty
 * line. A corpus file brings its own header section.
 */
static void
out_header(struct src *s, struct src_conn *c, const struct src_txn *t,
    struct src_out *o)
{
	uint64_t sent_real = (uint64_t)((int64_t)t->start_us + s->real_off);
	char *p;
	size_t n;

	OUT_LIT(o, BENCH_HEADER ": id=");
	out_bytes(o, s->run_id, 8);
	OUT_LIT(o, "-");
	out_u64(o, c->serial);
	OUT_LIT(o, "-");
	out_u64(o, t->seq);
	OUT_LIT(o, "; sent=");
	out_u64(o, sent_real);
	OUT_LIT(o, "\r\n");
	if (s->corpus != NULL)
		return;
	OUT_LIT(o, "Date: ");
	out_str(o, date_now(s, sent_real));
	OUT_LIT(o, "\r\n");
	out_str(o, s->from_hdr);
	OUT_LIT(o, "To: ");
	p = out_room(o, SRC_ADDR_MAX + 1);
	n = bench_source_rcpt_expand(s->o->rcpt,
	    bench_source_rcpt_n(t->rcpt_first, s->o->rcpt_mod), p,
	    SRC_ADDR_MAX + 1);
	out_commit(o, n);
	OUT_LIT(o, "\r\nSubject: sluice-bench message ");
	out_u64(o, t->seq);
	OUT_LIT(o, "\r\nMessage-ID: <");
	out_bytes(o, s->run_id, 8);
	OUT_LIT(o, ".");
	out_u64(o, c->serial);
	OUT_LIT(o, ".");
	out_u64(o, t->seq);
	OUT_LIT(o, "@sluice-bench.invalid>\r\n\r\n");
}

/* ---- connection plumbing ---------------------------------------------- */

static void conn_fail(struct src *s, struct src_conn *c, enum src_err kind,
    bool fatal_first, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void conn_start(struct src *s, struct src_conn *c);

static void
conn_kick(struct src *s, struct src_conn *c)
{
	if (c->dirty)
		return;
	c->dirty = true;
	c->next_dirty = s->dirty_head;
	s->dirty_head = conn_idx(s, c);
}

/*
 * The idle queue holds each connection at most once (c->queued), so it
 * never holds more than --connections entries; an entry whose connection
 * stopped waiting (c->idle cleared on close) is skipped when popped.
 */
static void
idle_push(struct src *s, struct src_conn *c)
{
	uint32_t n = s->o->connections;

	c->idle = true;
	if (c->queued)
		return;
	assert(s->idle_count < n);
	s->idleq[(s->idle_head + s->idle_count) % n] = conn_idx(s, c);
	s->idle_count++;
	c->queued = true;
}

/* The next connection still idle, or NULL. */
static struct src_conn *
idle_pop(struct src *s)
{
	struct src_conn *c;

	while (s->idle_count > 0) {
		c = &s->conns[s->idleq[s->idle_head]];
		s->idle_head = (s->idle_head + 1) % s->o->connections;
		s->idle_count--;
		c->queued = false;
		if (c->idle) {
			c->idle = false;
			return c;
		}
	}
	return NULL;
}

static void
arm_recv(struct src *s, struct src_conn *c)
{
	assert(!c->recv_armed);
	assert(!c->closing);
	uring_recv_bufs(&s->ring, c->fd, &s->bufs,
	    uring_ud(OP_RECV, conn_idx(s, c), c->gen));
	c->recv_armed = true;
	c->inflight++;
}

/*
 * Send what the send side composed, if no send is in flight; otherwise it
 * leaves when the one in flight completes (handle_send).
 */
static void
conn_flush(struct src *s, struct src_conn *c)
{
	struct io_uring_sqe *sqe;
	struct src_out *o;
	unsigned i;

	if (c->send_armed || c->closing || c->fd < 0 || c->connecting)
		return;
	o = &c->out[c->fill];
	if (c->tls != NULL) {
		for (i = 0; i < o->niov; i++)
			if (bench_tls_write(c->tls, o->iov[i].iov_base,
			    o->iov[i].iov_len) < 0) {
				conn_fail(s, c, SRC_E_TLS, false, "TLS: %s",
				    bench_tls_why(c->tls));
				return;
			}
		out_reset(o);
		if (c->tls_tx_off == c->tls_tx.len) {
			buf_reset(&c->tls_tx);
			c->tls_tx_off = 0;
			if (bench_tls_pending_out(c->tls) == 0)
				return;
			bench_tls_take(c->tls, &c->tls_tx);
		}
		sqe = get_sqe(s);
		io_uring_prep_send(sqe, c->fd, c->tls_tx.data + c->tls_tx_off,
		    c->tls_tx.len - c->tls_tx_off, MSG_NOSIGNAL);
		c->send_tls = true;
	} else {
		if (o->niov == 0)
			return;
		memset(&c->msg, 0, sizeof(c->msg));
		c->msg.msg_iov = o->iov;
		c->msg.msg_iovlen = o->niov;
		c->fill ^= 1;
		assert(c->out[c->fill].niov == 0);
		sqe = get_sqe(s);
		io_uring_prep_sendmsg(sqe, c->fd, &c->msg, MSG_NOSIGNAL);
		c->send_tls = false;
	}
	io_uring_sqe_set_data64(sqe, uring_ud(OP_SEND, conn_idx(s, c), c->gen));
	c->send_armed = true;
	c->inflight++;
}

static void
expect_push(struct src *s, struct src_conn *c, enum src_state kind,
    uint32_t txn, uint32_t count)
{
	struct src_expect *e;

	if (c->ecount == 0)
		c->deadline_us = s->now + s->o->timeout_us;
	if (c->ecount > 0) {
		e = &c->expect[(c->ehead + c->ecount - 1) % SRC_EXPECT_MAX];
		if (e->kind == kind && e->txn == txn &&
		    e->count + count <= UINT16_MAX) {
			e->count = (uint16_t)(e->count + count);
			return;
		}
	}
	if (c->ecount == SRC_EXPECT_MAX)
		log_panic("expect queue overflow in state %s",
		    src_strstate(kind));
	e = &c->expect[(c->ehead + c->ecount) % SRC_EXPECT_MAX];
	e->kind = (uint8_t)kind;
	e->txn = (uint8_t)txn;
	e->count = (uint16_t)count;
	c->ecount++;
}

/* ---- transactions ----------------------------------------------------- */

static uint64_t
sched_at(const struct src *s, uint64_t seq)
{
	return s->t0 + (uint64_t)((double)seq * 1e6 / s->o->rate);
}

/* No transaction is started after this; idle connections QUIT. */
static void
src_stop(struct src *s)
{
	struct src_conn *c;

	if (s->stopping)
		return;
	s->stopping = true;
	while ((c = idle_pop(s)) != NULL)
		conn_kick(s, c);
}

/*
 * A transaction for c, or false: none left (stopping) or, in open loop,
 * none due yet (the connection then waits in the idle queue).
 */
static bool
txn_take(struct src *s, struct src_conn *c)
{
	const struct bench_source_opts *o = s->o;
	struct src_txn *t;
	uint64_t start;
	uint32_t slot;

	if (s->stopping)
		return false;
	if (o->messages && s->next_seq >= o->messages) {
		src_stop(s);
		return false;
	}
	if (o->rate > 0) {
		start = sched_at(s, s->next_seq);
		if (o->duration_us && start >= s->t0 + o->duration_us) {
			src_stop(s);
			return false;
		}
		if (start > s->now)
			return false;
	} else {
		if (o->duration_us && s->now >= s->t0 + o->duration_us) {
			src_stop(s);
			return false;
		}
		start = s->now;
	}
	slot = c->txn[0].live ? 1 : 0;
	t = &c->txn[slot];
	assert(!t->live);
	memset(t, 0, sizeof(*t));
	t->live = true;
	t->seq = s->next_seq++;
	if (c->reserved > 0) {
		c->reserved--;
		s->reserved--;
	}
	t->start_us = start;
	t->rcpt_first = s->rcpt_counter;
	s->rcpt_counter += o->recipients;
	c->tsend = slot;
	c->msgs++;
	s->live++;
	s->st.sent++;
	return true;
}

static void
txn_refuse(struct src *s, struct src_txn *t, enum src_stage stage, int code,
    const char *line)
{
	if (t->fail_stage != SRC_STAGE_NONE)
		return;
	t->fail_stage = (uint8_t)stage;
	t->fail_class = code >= 500 ? 5 : 4;
	if (s->first_refusal[0] == '\0')
		snprintf(s->first_refusal, sizeof(s->first_refusal),
		    "%s: %.200s", src_stage_names[stage], line);
}

/* The transaction's outcome is settled: count it. */
static void
txn_finish(struct src *s, struct src_txn *t)
{
	assert(t->live);
	t->live = false;
	assert(s->live > 0);
	s->live--;
	s->st.completed++;
	if (t->fail_stage == SRC_STAGE_NONE) {
		s->st.accepted++;
		hist_add(&s->st.lat_txn, s->now - t->start_us);
	} else if (t->fail_class == 4) {
		s->st.temp[t->fail_stage]++;
	} else {
		s->st.perm[t->fail_stage]++;
	}
	s->end_us = s->now;
}

/* ---- the send side ---------------------------------------------------- */

/* Nothing may be sent before every reply due has come (no PIPELINING). */
static inline bool
must_wait(const struct src_conn *c)
{
	return !c->pipelining && c->ecount > 0;
}

/*
 * Compose every command the session may send now, starting from
 * c->send_state; see the block comment above enum src_state.
 */
static void
conn_send(struct src *s, struct src_conn *c)
{
	const struct bench_source_opts *o = s->o;
	struct src_out *o_;
	struct src_txn *t;
	size_t n;
	char *p;

	for (;;) {
		if (c->closing || c->fd < 0 || c->connecting)
			return;
		o_ = &c->out[c->fill];
		switch (c->send_state) {
		case SRC_S_GREETING:
		case SRC_S_TLS:
		case SRC_S_WAIT:
			return;
		case SRC_S_EHLO:
			if (o->lmtp)
				OUT_LIT(o_, "LHLO ");
			else
				OUT_LIT(o_, "EHLO ");
			out_str(o_, o->helo);
			OUT_LIT(o_, "\r\n");
			expect_push(s, c, SRC_S_EHLO, 0, 1);
			c->send_state = SRC_S_WAIT;
			break;
		case SRC_S_HELO:
			OUT_LIT(o_, "HELO ");
			out_str(o_, o->helo);
			OUT_LIT(o_, "\r\n");
			expect_push(s, c, SRC_S_HELO, 0, 1);
			c->send_state = SRC_S_WAIT;
			break;
		case SRC_S_STARTTLS:
			OUT_LIT(o_, "STARTTLS\r\n");
			expect_push(s, c, SRC_S_STARTTLS, 0, 1);
			c->send_state = SRC_S_WAIT;
			break;
		case SRC_S_AUTH:
			if (c->auth_login)
				OUT_LIT(o_, "AUTH LOGIN\r\n");
			else
				out_str(o_, s->auth_plain);
			expect_push(s, c, SRC_S_AUTH, 0, 1);
			c->send_state = SRC_S_WAIT;
			break;
		case SRC_S_AUTH_USER:
			out_str(o_, s->auth_user64);
			expect_push(s, c, SRC_S_AUTH_USER, 0, 1);
			c->send_state = SRC_S_WAIT;
			break;
		case SRC_S_AUTH_PASS:
			out_str(o_, s->auth_pass64);
			expect_push(s, c, SRC_S_AUTH_PASS, 0, 1);
			c->send_state = SRC_S_WAIT;
			break;
		case SRC_S_MAIL:
			if (must_wait(c))
				return;
			if (o->per_connection && c->msgs >= o->per_connection) {
				c->send_state = SRC_S_QUIT;
				continue;
			}
			if (!txn_take(s, c)) {
				if (!s->stopping) {
					/* Open loop: nothing due yet. */
					idle_push(s, c);
					return;
				}
				c->send_state = SRC_S_QUIT;
				continue;
			}
			out_bytes(o_, s->mail_cmd, s->mail_cmd_len);
			expect_push(s, c, SRC_S_MAIL, c->tsend, 1);
			c->rcpt_next = 0;
			c->send_state = SRC_S_RCPT;
			break;
		case SRC_S_RCPT:
			if (must_wait(c))
				return;
			t = &c->txn[c->tsend];
			OUT_LIT(o_, "RCPT TO:<");
			p = out_room(o_, SRC_ADDR_MAX + 1);
			n = bench_source_rcpt_expand(o->rcpt,
			    bench_source_rcpt_n(t->rcpt_first + c->rcpt_next,
			    o->rcpt_mod), p, SRC_ADDR_MAX + 1);
			assert(n > 0);	/* the parser tried the longest */
			out_commit(o_, n);
			OUT_LIT(o_, ">\r\n");
			expect_push(s, c, SRC_S_RCPT, c->tsend, 1);
			if (++c->rcpt_next == o->recipients)
				c->send_state = SRC_S_DATA;
			break;
		case SRC_S_DATA:
			if (must_wait(c))
				return;
			OUT_LIT(o_, "DATA\r\n");
			expect_push(s, c, SRC_S_DATA, c->tsend, 1);
			c->send_state = SRC_S_DOT;
			break;
		case SRC_S_DOT:
			t = &c->txn[c->tsend];
			switch (t->data) {
			case SRC_DATA_WAIT:
				return;
			case SRC_DATA_REFUSED:
				/* The server may still hold the MAIL. */
				c->send_state = t->mail_ok ? SRC_S_RSET :
				    SRC_S_MAIL;
				continue;
			case SRC_DATA_EMPTY:
				/* RFC 2920 3.1: 354 with no recipient. */
				OUT_LIT(o_, ".\r\n");
				expect_push(s, c, SRC_S_DOT, c->tsend, 1);
				break;
			case SRC_DATA_GO:
				out_header(s, c, t, o_);
				if (s->corpus != NULL)
					out_ref(o_, s->corpus[t->seq %
					    s->ncorpus].data,
					    s->corpus[t->seq % s->ncorpus].len);
				else
					out_ref(o_, s->body, s->body_len);
				OUT_LIT(o_, ".\r\n");
				expect_push(s, c, SRC_S_DOT, c->tsend,
				    o->lmtp ? t->rcpt_ok : 1);
				break;
			default:
				log_panic("bad data state %d", (int)t->data);
			}
			c->send_state = SRC_S_MAIL;
			break;
		case SRC_S_RSET:
			if (must_wait(c))
				return;
			OUT_LIT(o_, "RSET\r\n");
			expect_push(s, c, SRC_S_RSET, c->tsend, 1);
			c->send_state = SRC_S_MAIL;
			break;
		case SRC_S_QUIT:
			if (must_wait(c))
				return;
			OUT_LIT(o_, "QUIT\r\n");
			expect_push(s, c, SRC_S_QUIT, 0, 1);
			c->quit_sent = true;
			c->send_state = SRC_S_WAIT;
			break;
		default:
			log_panic("bad send state %d", (int)c->send_state);
		}
	}
}

/* ---- the receive side ------------------------------------------------- */

/* A set-up step was refused (code) or impossible (code 0). */
__attribute__((format(printf, 4, 5)))
static void
setup_refused(struct src *s, struct src_conn *c, int code,
    const char *fmt, ...)
{
	char text[SRC_WHY_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	/*
	 * A permanent refusal before any session worked is a configuration
	 * mismatch (no STARTTLS, wrong password): retrying cannot help.
	 */
	conn_fail(s, c, SRC_E_SETUP, code == 0 || code >= 500, "%s", text);
}

static void
session_ready(struct src *s, struct src_conn *c)
{
	c->backoff_n = 0;
	s->st.sessions++;
	if (!s->srv_known) {
		s->srv_known = true;
		s->srv_pipelining = c->cap_pipelining;
		s->srv_starttls = c->cap_starttls || c->tls_on;
		s->srv_plain = c->cap_plain;
		s->srv_login = c->cap_login;
	}
	c->send_state = SRC_S_MAIL;
}

/* EHLO or HELO accepted: STARTTLS, AUTH, or the first MAIL. */
static void
after_hello(struct src *s, struct src_conn *c)
{
	const struct bench_source_opts *o = s->o;

	c->pipelining = o->pipelining && c->cap_pipelining;
	if (o->starttls && !c->tls_on) {
		if (!c->cap_starttls) {
			setup_refused(s, c, 0, "the server does not offer "
			    "STARTTLS");
			return;
		}
		c->send_state = SRC_S_STARTTLS;
		return;
	}
	if (o->auth && !c->authed) {
		if (!c->cap_plain && !c->cap_login) {
			setup_refused(s, c, 0, "the server offers neither "
			    "AUTH PLAIN nor AUTH LOGIN");
			return;
		}
		c->auth_login = !c->cap_plain;
		c->send_state = SRC_S_AUTH;
		return;
	}
	session_ready(s, c);
}

/* A line of the EHLO reply past the first: one service extension. */
static void
ehlo_keyword(struct src_conn *c, const char *p, size_t n)
{
	const char *end = p + n, *w;
	size_t wl;

	if (n >= 10 && strncasecmp(p, "PIPELINING", 10) == 0 &&
	    (n == 10 || p[10] == ' '))
		c->cap_pipelining = true;
	else if (n >= 8 && strncasecmp(p, "STARTTLS", 8) == 0 &&
	    (n == 8 || p[8] == ' '))
		c->cap_starttls = true;
	else if (n > 5 && strncasecmp(p, "AUTH ", 5) == 0) {
		for (w = p + 5; w < end; w += wl) {
			while (w < end && *w == ' ')
				w++;
			for (wl = 0; w + wl < end && w[wl] != ' '; wl++)
				;
			if (wl == 5 && strncasecmp(w, "PLAIN", 5) == 0)
				c->cap_plain = true;
			if (wl == 5 && strncasecmp(w, "LOGIN", 5) == 0)
				c->cap_login = true;
		}
	}
}

/* The session is over as asked (QUIT answered, or closed after it). */
static void conn_close(struct src *s, struct src_conn *c, enum src_after after);

/* A complete reply: code, and its last line (NUL-terminated, no CRLF). */
static void
reply_done(struct src *s, struct src_conn *c, int code, const char *line)
{
	struct src_expect *e = &c->expect[c->ehead];
	enum src_state kind = (enum src_state)e->kind;
	struct src_txn *t = &c->txn[e->txn];
	bool last;

	assert(c->ecount > 0);
	last = --e->count == 0;
	if (last) {
		c->ehead = (c->ehead + 1) % SRC_EXPECT_MAX;
		c->ecount--;
	}
	c->deadline_us = c->ecount ? s->now + s->o->timeout_us : 0;
	if (code == 421 && kind != SRC_S_QUIT) {
		conn_fail(s, c, SRC_E_421, false, "%s: %s", src_strstate(kind),
		    line);
		return;
	}
	switch (kind) {
	case SRC_S_GREETING:
		if (code != 220) {
			setup_refused(s, c, code, "greeting: %s", line);
			return;
		}
		hist_add(&s->st.lat_greet, s->now - c->connect_us);
		c->send_state = SRC_S_EHLO;
		break;
	case SRC_S_EHLO:
		if (code / 100 == 2) {
			after_hello(s, c);
		} else if (code / 100 == 5 && !s->o->lmtp &&
		    !c->ehlo_refused && !c->tls_on) {
			c->ehlo_refused = true;
			c->send_state = SRC_S_HELO;
		} else {
			setup_refused(s, c, code, "%s: %s", s->o->lmtp ?
			    "LHLO" : "EHLO", line);
		}
		break;
	case SRC_S_HELO:
		if (code / 100 != 2)
			setup_refused(s, c, code, "HELO: %s", line);
		else
			after_hello(s, c);
		break;
	case SRC_S_STARTTLS:
		if (code != 220) {
			setup_refused(s, c, code, "STARTTLS: %s", line);
			return;
		}
		/* The handshake starts once this input is consumed. */
		c->tls_pending = true;
		c->send_state = SRC_S_TLS;
		c->deadline_us = s->now + s->o->timeout_us;
		break;
	case SRC_S_AUTH:
		if (code == 235) {
			c->authed = true;
			session_ready(s, c);
		} else if (code == 334 && c->auth_login) {
			c->send_state = SRC_S_AUTH_USER;
		} else {
			setup_refused(s, c, code, "AUTH: %s", line);
		}
		break;
	case SRC_S_AUTH_USER:
		if (code != 334)
			setup_refused(s, c, code, "AUTH LOGIN: %s", line);
		else
			c->send_state = SRC_S_AUTH_PASS;
		break;
	case SRC_S_AUTH_PASS:
		if (code != 235) {
			setup_refused(s, c, code, "AUTH LOGIN: %s", line);
			return;
		}
		c->authed = true;
		session_ready(s, c);
		break;
	case SRC_S_MAIL:
		assert(t->live);
		if (code / 100 == 2)
			t->mail_ok = true;
		else if (code / 100 == 4 || code / 100 == 5)
			txn_refuse(s, t, SRC_STAGE_MAIL, code, line);
		else
			goto unexpected;
		break;
	case SRC_S_RCPT:
		assert(t->live);
		/* After a refused MAIL, RCPT refusals say nothing. */
		if (!t->mail_ok)
			break;
		if (code / 100 == 2) {
			t->rcpt_ok++;
		} else if (code / 100 == 4) {
			t->rcpt_4xx++;
			s->st.rcpt_4xx++;
		} else if (code / 100 == 5) {
			t->rcpt_5xx++;
			s->st.rcpt_5xx++;
		} else {
			goto unexpected;
		}
		if (code / 100 != 2 && s->first_refusal[0] == '\0')
			snprintf(s->first_refusal, sizeof(s->first_refusal),
			    "rcpt: %.200s", line);
		break;
	case SRC_S_DATA:
		assert(t->live);
		if (t->mail_ok && t->rcpt_ok == 0)
			txn_refuse(s, t, SRC_STAGE_RCPT, t->rcpt_4xx ? 400 :
			    500, "every recipient refused");
		if (code == 354) {
			if (t->fail_stage == SRC_STAGE_NONE) {
				t->data = SRC_DATA_GO;
			} else if (s->o->lmtp) {
				/* RFC 2033 4.2: DATA needs a recipient. */
				goto unexpected;
			} else {
				t->data = SRC_DATA_EMPTY;
			}
		} else if (code / 100 == 4 || code / 100 == 5) {
			txn_refuse(s, t, SRC_STAGE_DATA, code, line);
			t->data = SRC_DATA_REFUSED;
			txn_finish(s, t);
		} else {
			goto unexpected;
		}
		break;
	case SRC_S_DOT:
		assert(t->live);
		if (t->data == SRC_DATA_EMPTY) {
			txn_finish(s, t);
			break;
		}
		if (code / 100 != 2 && code / 100 != 4 && code / 100 != 5)
			goto unexpected;
		if (!s->o->lmtp) {
			if (code / 100 != 2)
				txn_refuse(s, t, SRC_STAGE_DOT, code, line);
			txn_finish(s, t);
			break;
		}
		/* LMTP (RFC 2033 4.2): one reply per accepted recipient. */
		if (code / 100 == 2) {
			t->lmtp_ok++;
			s->st.lmtp_ok++;
		} else if (code / 100 == 4) {
			t->lmtp_4xx++;
			s->st.lmtp_4xx++;
		} else {
			t->lmtp_5xx++;
			s->st.lmtp_5xx++;
		}
		if (code / 100 != 2 && s->first_refusal[0] == '\0')
			snprintf(s->first_refusal, sizeof(s->first_refusal),
			    "end_of_data: %.200s", line);
		if (last) {
			if (t->lmtp_ok == 0)
				txn_refuse(s, t, SRC_STAGE_DOT,
				    t->lmtp_4xx ? 400 : 500, line);
			txn_finish(s, t);
		}
		break;
	case SRC_S_RSET:
		break;
	case SRC_S_QUIT:
		conn_close(s, c, SRC_AFTER_RECONNECT);
		break;
	default:
		log_panic("bad receive state %d", (int)kind);
	}
	conn_kick(s, c);
	return;
unexpected:
	conn_fail(s, c, SRC_E_PROTOCOL, false, "unexpected reply to %s: %s",
	    src_strstate(kind), line);
}

/* One reply line, CRLF or LF included (n >= 1, p[n - 1] == '\n'). */
static void
reply_line(struct src *s, struct src_conn *c, char *p, size_t n)
{
	int code;

	n--;
	if (n > 0 && p[n - 1] == '\r')
		n--;
	p[n] = '\0';
	if (n < 3 || !isdigit((unsigned char)p[0]) ||
	    !isdigit((unsigned char)p[1]) || !isdigit((unsigned char)p[2]) ||
	    (n > 3 && p[3] != ' ' && p[3] != '-')) {
		conn_fail(s, c, SRC_E_PROTOCOL, false, "malformed reply line "
		    "'%.80s'", p);
		return;
	}
	code = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
	if (c->ecount == 0) {
		/* Unsolicited: a server closing an idle session says 421. */
		conn_fail(s, c, code == 421 ? SRC_E_421 : SRC_E_PROTOCOL,
		    false, "unsolicited reply '%.80s'", p);
		return;
	}
	if (++c->reply_lines > SRC_REPLY_LINES_MAX) {
		conn_fail(s, c, SRC_E_PROTOCOL, false, "reply of more than "
		    "%d lines", SRC_REPLY_LINES_MAX);
		return;
	}
	/* EHLO: every line after the first names an extension. */
	if (c->expect[c->ehead].kind == SRC_S_EHLO && c->reply_lines > 1 &&
	    n > 4)
		ehlo_keyword(c, p + 4, n - 4);
	if (n > 3 && p[3] == '-')
		return;
	c->reply_lines = 0;
	reply_done(s, c, code, p);
}

/* Plaintext from the server: split it into reply lines. */
static void
replies_parse(struct src *s, struct src_conn *c, char *p, size_t n)
{
	size_t chunk, len;
	char *nl, *line;

	while (n > 0 && !c->closing) {
		nl = memchr(p, '\n', n);
		if (nl == NULL) {
			/* Keep the start of a line for the next read. */
			if (c->line_len + n > SRC_LINE_MAX - 1) {
				conn_fail(s, c, SRC_E_PROTOCOL, false,
				    "reply line longer than %d bytes",
				    SRC_LINE_MAX);
				return;
			}
			memcpy(c->line + c->line_len, p, n);
			c->line_len += n;
			return;
		}
		chunk = (size_t)(nl - p) + 1;
		if (c->line_len > 0) {
			if (c->line_len + chunk > SRC_LINE_MAX) {
				conn_fail(s, c, SRC_E_PROTOCOL, false,
				    "reply line longer than %d bytes",
				    SRC_LINE_MAX);
				return;
			}
			memcpy(c->line + c->line_len, p, chunk);
			line = c->line;
			len = c->line_len + chunk;
			c->line_len = 0;
		} else {
			line = p;
			len = chunk;
		}
		p += chunk;
		n -= chunk;
		reply_line(s, c, line, len);
		if (c->tls_pending && n > 0 && !c->closing) {
			/* RFC 3207 5: nothing may follow the 220 in clear. */
			conn_fail(s, c, SRC_E_PROTOCOL, false, "plaintext "
			    "after the reply to STARTTLS");
			return;
		}
	}
}

/* ---- connections ------------------------------------------------------ */

/* Count a connection error; stop the run if it was the last allowed. */
static void
count_error(struct src *s, enum src_err kind, bool fatal_first,
    const char *text)
{
	bool fatal;

	s->st.err[kind]++;
	s->st.errors++;
	if (s->first_conn_error[0] == '\0')
		snprintf(s->first_conn_error, sizeof(s->first_conn_error),
		    "%s: %s", src_err_names[kind], text);
	/*
	 * "Cannot run at all": nothing accepts connections at --to, or the
	 * server refuses the session set-up permanently, before a single
	 * connection (or session) worked. Retrying cannot help there.
	 */
	if (kind == SRC_E_REFUSED || kind == SRC_E_CONNECT)
		fatal = fatal_first && s->st.connects == 0;
	else
		fatal = fatal_first && s->st.sessions == 0;
	if (fatal && !s->aborting) {
		snprintf(s->error, sizeof(s->error), "%s", text);
		s->aborting = true;
	} else if (s->st.errors >= s->o->max_errors && !s->aborting) {
		snprintf(s->error, sizeof(s->error), "%llu connection errors "
		    "(--max-errors); the first: %.180s",
		    (unsigned long long)s->st.errors, s->first_conn_error);
		s->aborting = true;
	}
}

/*
 * The connection failed: count the error, lose its transactions in flight,
 * close it and, while there is work, reconnect after a backoff.
 */
static void
conn_fail(struct src *s, struct src_conn *c, enum src_err kind,
    bool fatal_first, const char *fmt, ...)
{
	char text[SRC_WHY_MAX];
	va_list ap;
	unsigned i;

	if (c->fd < 0 || c->closing)
		return;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	count_error(s, kind, fatal_first, text);
	for (i = 0; i < SRC_TXN_MAX; i++) {
		if (!c->txn[i].live)
			continue;
		c->txn[i].live = false;
		assert(s->live > 0);
		s->live--;
		s->st.lost++;
		s->end_us = s->now;
	}
	conn_close(s, c, SRC_AFTER_BACKOFF);
}

static void
conn_release(struct src *s, struct src_conn *c)
{
	uint64_t delay;
	unsigned i;

	assert(c->fd >= 0);
	assert(c->inflight == 0);
	close(c->fd);
	c->fd = -1;
	c->closing = false;
	c->gen++;
	s->nopen--;
	bench_tls_free(c->tls);
	c->tls = NULL;
	buf_reset(&c->tls_tx);
	c->tls_tx_off = 0;
	out_reset(&c->out[0]);
	out_reset(&c->out[1]);
	c->ecount = 0;
	for (i = 0; i < SRC_TXN_MAX; i++)
		assert(!c->txn[i].live);
	if (s->stopping || s->aborting)
		return;
	switch ((enum src_after)c->after) {
	case SRC_AFTER_NONE:
		break;
	case SRC_AFTER_RECONNECT:
		/*
		 * A new session only if messages are left that no session
		 * being set up will take: otherwise it would greet and quit.
		 */
		if (s->o->messages &&
		    s->next_seq + s->reserved >= s->o->messages) {
			if (s->next_seq >= s->o->messages)
				src_stop(s);
			break;
		}
		c->reserved = s->o->per_connection ? s->o->per_connection :
		    (uint32_t)(s->o->messages - s->next_seq);
		s->reserved += c->reserved;
		conn_start(s, c);
		break;
	case SRC_AFTER_BACKOFF:
		/* Bounded exponential backoff: a dead server ends the run
		 * at --max-errors rather than being hammered. */
		delay = c->backoff_n >= 7 ? SRC_BACKOFF_MAX_US :
		    (uint64_t)SRC_BACKOFF_MIN_US << c->backoff_n;
		if (delay > SRC_BACKOFF_MAX_US)
			delay = SRC_BACKOFF_MAX_US;
		c->backoff_n++;
		c->wake_us = s->now + delay;
		c->sleeping = true;
		s->nsleeping++;
		if (s->next_wake == 0 || c->wake_us < s->next_wake)
			s->next_wake = c->wake_us;
		break;
	default:
		log_panic("bad after-close action %d", (int)c->after);
	}
}

/* End the session: no more I/O; released once nothing is in flight. */
static void
conn_close(struct src *s, struct src_conn *c, enum src_after after)
{
	struct io_uring_sqe *sqe;

	if (c->fd < 0 || c->closing)
		return;
	c->closing = true;
	c->after = (uint8_t)after;
	/* What this session was to send is free for another. */
	s->reserved -= c->reserved;
	c->reserved = 0;
	c->idle = false;
	c->deadline_us = 0;
	if (c->inflight == 0) {
		conn_release(s, c);
		return;
	}
	/* Completes the recv and send in flight (and a connect under way). */
	shutdown(c->fd, SHUT_RDWR);
	if (c->connecting) {
		sqe = get_sqe(s);
		io_uring_prep_cancel64(sqe, uring_ud(OP_CONNECT, conn_idx(s, c),
		    c->gen), 0);
		io_uring_sqe_set_data64(sqe, uring_ud(OP_CANCEL, conn_idx(s, c),
		    c->gen));
	}
}

static void
conn_start(struct src *s, struct src_conn *c)
{
	const struct bench_source_opts *o = s->o;
	struct io_uring_sqe *sqe;
	int fd, one = 1;

	assert(c->fd < 0);
	fd = socket(o->to.ss_family, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);
	if (fd < 0) {
		char text[SRC_WHY_MAX];

		snprintf(text, sizeof(text), "socket: %s", strerror(errno));
		count_error(s, SRC_E_CONNECT, false, text);
		c->fd = -1;
		c->after = SRC_AFTER_BACKOFF;
		/* As if released: schedule the retry. */
		c->wake_us = s->now + SRC_BACKOFF_MAX_US;
		c->sleeping = true;
		s->nsleeping++;
		if (s->next_wake == 0 || c->wake_us < s->next_wake)
			s->next_wake = c->wake_us;
		return;
	}
	/* Each write is a whole group: Nagle would only delay it. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->fd = fd;
	c->serial = ++s->conn_serial;
	c->send_state = SRC_S_GREETING;
	c->connecting = true;
	c->recv_armed = c->send_armed = c->send_tls = false;
	c->closing = c->idle = false;
	c->pipelining = c->cap_pipelining = c->cap_starttls = false;
	c->cap_plain = c->cap_login = c->ehlo_refused = false;
	c->tls_pending = c->tls_on = c->authed = c->quit_sent = false;
	c->auth_login = false;
	c->after = SRC_AFTER_NONE;
	c->msgs = c->rcpt_next = c->reply_lines = c->tsend = 0;
	c->ehead = c->ecount = 0;
	c->line_len = 0;
	c->fill = 0;
	c->connect_us = s->now;
	c->deadline_us = s->now + o->timeout_us;
	s->nopen++;
	sqe = get_sqe(s);
	io_uring_prep_connect(sqe, fd, (const struct sockaddr *)&o->to,
	    o->to_len);
	io_uring_sqe_set_data64(sqe, uring_ud(OP_CONNECT, conn_idx(s, c),
	    c->gen));
	c->inflight++;
}

/* The server answered STARTTLS with 220: begin the handshake. */
static void
tls_start(struct src *s, struct src_conn *c)
{
	c->tls_pending = false;
	c->tls = bench_tls_new(s->tls_ctx);
	if (c->tls == NULL) {
		conn_fail(s, c, SRC_E_TLS, false, "TLS: out of memory");
		return;
	}
	if (bench_tls_handshake(c->tls) == BENCH_TLS_ERROR) {
		conn_fail(s, c, SRC_E_TLS, true, "TLS: %s",
		    bench_tls_why(c->tls));
		return;
	}
	conn_kick(s, c);	/* the ClientHello */
}

/* Ciphertext arrived: advance the handshake, then read replies. */
static void
tls_input(struct src *s, struct src_conn *c)
{
	char plain[SRC_RECV_BUF_SIZE];
	enum bench_tls_status st;
	ssize_t r;

	if (c->send_state == SRC_S_TLS) {
		st = bench_tls_handshake(c->tls);
		conn_kick(s, c);	/* handshake output, if any */
		if (st == BENCH_TLS_ERROR) {
			conn_fail(s, c, SRC_E_TLS, true, "TLS handshake: %s",
			    bench_tls_why(c->tls));
			return;
		}
		if (st == BENCH_TLS_WANT)
			return;
		c->tls_on = true;
		if (s->tls_version[0] == '\0') {
			snprintf(s->tls_version, sizeof(s->tls_version), "%s",
			    bench_tls_version(c->tls));
			snprintf(s->tls_cipher, sizeof(s->tls_cipher), "%s",
			    bench_tls_cipher(c->tls));
		}
		/* RFC 3207 4.2: forget what was learnt before TLS. */
		c->cap_pipelining = c->cap_starttls = false;
		c->cap_plain = c->cap_login = false;
		c->send_state = SRC_S_EHLO;
		c->deadline_us = 0;
	}
	for (;;) {
		r = bench_tls_read(c->tls, plain, sizeof(plain));
		if (r == 0)
			break;
		if (r == -2) {
			if (c->quit_sent && !conn_txn_live(c))
				conn_close(s, c, SRC_AFTER_RECONNECT);
			else
				conn_fail(s, c, SRC_E_CLOSED, false, "the "
				    "server closed the TLS session");
			return;
		}
		if (r < 0) {
			conn_fail(s, c, SRC_E_TLS, false, "TLS: %s",
			    bench_tls_why(c->tls));
			return;
		}
		replies_parse(s, c, plain, (size_t)r);
		if (c->closing)
			return;
	}
	conn_kick(s, c);
}

/* ---- completions ------------------------------------------------------ */

static void
handle_connect(struct src *s, struct src_conn *c, int res)
{
	c->connecting = false;
	assert(c->inflight > 0);
	c->inflight--;
	if (c->closing) {
		if (c->inflight == 0)
			conn_release(s, c);
		return;
	}
	if (res < 0) {
		conn_fail(s, c, res == -ECONNREFUSED ? SRC_E_REFUSED :
		    SRC_E_CONNECT, true, "connect to %s: %s", s->o->to_text,
		    strerror(-res));
		return;
	}
	s->st.connects++;
	expect_push(s, c, SRC_S_GREETING, 0, 1);
	arm_recv(s, c);
}

static void
handle_recv(struct src *s, struct src_conn *c, int res, uint32_t flags)
{
	char *data = NULL;
	unsigned bid = 0;

	c->recv_armed = false;
	if (flags & IORING_CQE_F_BUFFER)
		data = uring_bufs_data(&s->bufs, flags, &bid);
	if (!c->closing) {
		if (res == -ENOBUFS) {
			/* Every buffer is busy for now: just ask again. */
		} else if (res < 0) {
			conn_fail(s, c, SRC_E_RESET, false, "recv: %s",
			    strerror(-res));
		} else if (res == 0) {
			/* A close after QUIT is normal only once every
			 * transaction has its reply: the last message may
			 * have left in the same write as the QUIT. */
			if (c->quit_sent && !conn_txn_live(c))
				conn_close(s, c, SRC_AFTER_RECONNECT);
			else
				conn_fail(s, c, SRC_E_CLOSED, false, "the "
				    "server closed the connection%s",
				    c->ecount ? " while replies were due" :
				    "");
		} else if (c->tls != NULL) {
			assert(data != NULL);
			if (bench_tls_feed(c->tls, data, (size_t)res) < 0)
				conn_fail(s, c, SRC_E_TLS, false, "TLS: too "
				    "much input at once");
			else
				tls_input(s, c);
		} else {
			assert(data != NULL);
			replies_parse(s, c, data, (size_t)res);
			if (c->tls_pending && !c->closing)
				tls_start(s, c);
		}
	}
	if (data != NULL) {
		/* Everything kept was copied: the buffer goes back now. */
		uring_bufs_recycle(&s->bufs, bid);
	}
	assert(c->inflight > 0);
	c->inflight--;
	if (c->closing) {
		if (c->inflight == 0)
			conn_release(s, c);
		return;
	}
	arm_recv(s, c);
}

/* Drop the first n bytes of the iovecs in m; true when none are left. */
static bool
iov_advance(struct msghdr *m, size_t n)
{
	while (m->msg_iovlen > 0) {
		if (n < m->msg_iov[0].iov_len) {
			m->msg_iov[0].iov_base = (char *)m->msg_iov[0].iov_base
			    + n;
			m->msg_iov[0].iov_len -= n;
			return false;
		}
		n -= m->msg_iov[0].iov_len;
		m->msg_iov++;
		m->msg_iovlen--;
	}
	assert(n == 0);
	return true;
}

static void
handle_send(struct src *s, struct src_conn *c, int res)
{
	struct io_uring_sqe *sqe;

	c->send_armed = false;
	assert(c->inflight > 0);
	c->inflight--;
	if (c->closing) {
		if (c->inflight == 0)
			conn_release(s, c);
		return;
	}
	if (res <= 0) {
		conn_fail(s, c, SRC_E_RESET, false, "send: %s",
		    res == 0 ? "no progress" : strerror(-res));
		return;
	}
	if (c->deadline_us)
		c->deadline_us = s->now + s->o->timeout_us;
	if (c->send_tls) {
		c->tls_tx_off += (size_t)res;
		assert(c->tls_tx_off <= c->tls_tx.len);
	} else if (iov_advance(&c->msg, (size_t)res)) {
		out_reset(&c->out[c->fill ^ 1]);
	} else {
		/* A short send: the rest of the same buffer goes first. */
		sqe = get_sqe(s);
		io_uring_prep_sendmsg(sqe, c->fd, &c->msg, MSG_NOSIGNAL);
		io_uring_sqe_set_data64(sqe, uring_ud(OP_SEND, conn_idx(s, c),
		    c->gen));
		c->send_armed = true;
		c->inflight++;
		return;
	}
	conn_kick(s, c);
}

static void
dispatch(struct src *s, uint64_t ud, int res, uint32_t flags)
{
	struct src_conn *c = NULL;

	switch ((enum op)URING_UD_OP(ud)) {
	case OP_CONNECT:
	case OP_RECV:
	case OP_SEND:
		c = &s->conns[URING_UD_IDX(ud)];
		/* A slot is reused only once nothing of it is in flight. */
		assert(c->fd >= 0);
		assert(c->gen == URING_UD_GEN(ud));
		break;
	default:
		break;
	}
	switch ((enum op)URING_UD_OP(ud)) {
	case OP_CONNECT:
		handle_connect(s, c, res);
		break;
	case OP_RECV:
		handle_recv(s, c, res, flags);
		break;
	case OP_SEND:
		handle_send(s, c, res);
		break;
	case OP_CANCEL:
		break;
	default:
		log_panic("bad operation %llu", (unsigned long long)(enum op)URING_UD_OP(ud));
	}
}

/* ---- time ------------------------------------------------------------- */

/* Connections waiting too long for a reply, a connect or a handshake. */
static void
src_timeouts(struct src *s)
{
	const char *what;
	struct src_conn *c;
	uint32_t i;

	for (i = 0; i < s->o->connections; i++) {
		c = &s->conns[i];
		if (c->fd < 0 || c->closing || c->deadline_us == 0 ||
		    s->now < c->deadline_us)
			continue;
		if (c->connecting)
			what = "connect";
		else if (c->send_state == SRC_S_TLS)
			what = "TLS handshake";
		else if (c->ecount > 0)
			what = src_strstate(c->expect[c->ehead].kind);
		else
			what = "?";
		conn_fail(s, c, SRC_E_TIMEOUT, false, "no reply to %s within "
		    "%.1f s", what, (double)s->o->timeout_us / 1e6);
	}
}

/* Reconnect the connections whose backoff is over. */
static void
src_wake(struct src *s)
{
	struct src_conn *c;
	uint64_t next = 0;
	uint32_t i;

	if (s->nsleeping == 0 || s->now < s->next_wake)
		return;
	for (i = 0; i < s->o->connections; i++) {
		c = &s->conns[i];
		if (!c->sleeping)
			continue;
		if (c->wake_us > s->now && !s->stopping && !s->aborting) {
			if (next == 0 || c->wake_us < next)
				next = c->wake_us;
			continue;
		}
		c->sleeping = false;
		s->nsleeping--;
		if (!s->stopping && !s->aborting)
			conn_start(s, c);
	}
	s->next_wake = next;
}

/* Open loop: hand the transactions now due to idle connections. */
static void
src_schedule(struct src *s)
{
	const struct bench_source_opts *o = s->o;
	uint64_t seq;
	struct src_conn *c;

	if (s->stopping || s->aborting)
		return;
	if (o->rate <= 0) {
		if (o->duration_us && s->now >= s->t0 + o->duration_us)
			src_stop(s);
		return;
	}
	seq = s->next_seq;
	if ((o->messages && seq >= o->messages) || (o->duration_us &&
	    sched_at(s, seq) >= s->t0 + o->duration_us)) {
		src_stop(s);
		return;
	}
	while (sched_at(s, seq) <= s->now &&
	    (o->messages == 0 || seq < o->messages) &&
	    (c = idle_pop(s)) != NULL) {
		conn_kick(s, c);
		seq++;
	}
}

/* Run the send side of every connection touched, and send. */
static void
src_flush_dirty(struct src *s)
{
	struct src_conn *c;

	while (s->dirty_head != UINT32_MAX) {
		c = &s->conns[s->dirty_head];
		s->dirty_head = c->next_dirty;
		c->dirty = false;
		conn_send(s, c);
		conn_flush(s, c);
	}
}

/* How long the loop may sleep. */
static uint64_t
src_wait_us(const struct src *s)
{
	const struct bench_source_opts *o = s->o;
	uint64_t next = s->next_tick;

	if (s->progress && s->next_progress < next)
		next = s->next_progress;
	if (s->nsleeping && s->next_wake < next)
		next = s->next_wake;
	if (!s->stopping && o->rate > 0 && s->idle_count > 0 &&
	    sched_at(s, s->next_seq) < next)
		next = sched_at(s, s->next_seq);
	if (!s->stopping && o->rate <= 0 && o->duration_us &&
	    s->t0 + o->duration_us < next)
		next = s->t0 + o->duration_us;
	if (s->quit_deadline && s->quit_deadline < next)
		next = s->quit_deadline;
	return next > s->now ? next - s->now : 0;
}

/* ---- progress --------------------------------------------------------- */

static void
progress_show(struct src *s)
{
	const struct bench_source_opts *o = s->o;
	/* The slot about to be overwritten holds the sample of 1 s ago. */
	unsigned oldest = s->prog_i % SRC_PROGRESS_SAMPLES;
	uint64_t refused = s->st.completed - s->st.accepted, left;
	double rate = 0, dt, elapsed, eta = -1;
	char line[256], etas[32];
	int n;

	dt = (double)(s->now - s->prog_t[oldest]) / 1e6;
	if (dt > 0)
		rate = (double)(s->st.accepted - s->prog_acc[oldest]) / dt;
	s->prog_t[oldest] = s->now;
	s->prog_acc[oldest] = s->st.accepted;
	s->prog_i++;
	elapsed = (double)(s->now - s->t0) / 1e6;
	if (o->messages) {
		left = o->messages - (s->st.completed + s->st.lost);
		if (rate > 0)
			eta = (double)left / rate;
	} else if (s->now < s->t0 + o->duration_us) {
		eta = (double)(s->t0 + o->duration_us - s->now) / 1e6;
	}
	if (eta >= 0)
		snprintf(etas, sizeof(etas), ", ETA %.0fs", eta);
	else
		etas[0] = '\0';
	n = snprintf(line, sizeof(line), "\r%.0f msg/s | %llu sent, %llu "
	    "accepted, %llu refused, %llu lost, %llu conn errors | %.1fs%s"
	    "\033[K", rate, (unsigned long long)s->st.sent,
	    (unsigned long long)s->st.accepted, (unsigned long long)refused,
	    (unsigned long long)s->st.lost,
	    (unsigned long long)s->st.errors, elapsed, etas);
	if (n > 0 && write(STDERR_FILENO, line, (size_t)n) > 0)
		s->progress_shown = true;
}

static void
progress_erase(struct src *s)
{
	static const char erase[] = "\r\033[K";

	if (s->progress_shown &&
	    write(STDERR_FILENO, erase, sizeof(erase) - 1) < 0)
		return;
	s->progress_shown = false;
}

/* ---- the loop --------------------------------------------------------- */

static bool
src_done(struct src *s)
{
	if (s->aborting)
		return true;
	if (!s->stopping || s->live > 0)
		return false;
	/* Measured; let the sessions QUIT, for a bounded time. */
	if (s->quit_deadline == 0)
		s->quit_deadline = s->now + SRC_QUIT_GRACE_US;
	return s->nopen == 0 || s->now >= s->quit_deadline;
}

static void
src_loop(struct src *s)
{
	struct {
		uint64_t ud;
		int res;
		uint32_t flags;
	} done[SRC_CQE_BATCH];
	struct io_uring_cqe *cqe;
	struct __kernel_timespec ts;
	unsigned head, n, i;
	int interrupts = 0;
	uint64_t wait;
	uint32_t ci;
	int rc;

	s->now = clock_mono_us();
	s->t0 = s->now;
	s->next_tick = s->now + SRC_TICK_US;
	s->next_progress = s->now + SRC_PROGRESS_US;
	for (ci = 0; ci < SRC_PROGRESS_SAMPLES; ci++)
		s->prog_t[ci] = s->t0;
	for (ci = 0; ci < s->o->connections; ci++)
		conn_start(s, &s->conns[ci]);
	for (;;) {
		if (src_interrupts != interrupts) {
			interrupts = src_interrupts;
			if (interrupts == 1) {
				if (!s->o->quiet) {
					progress_erase(s);
					log_info("interrupted: finishing the "
					    "transactions under way (again to "
					    "stop at once)");
				}
				src_stop(s);
			} else if (!s->aborting) {
				snprintf(s->error, sizeof(s->error),
				    "interrupted");
				s->aborting = true;
			}
		}
		src_schedule(s);
		src_flush_dirty(s);
		if (src_done(s))
			break;
		wait = src_wait_us(s);
		ts.tv_sec = (long long)(wait / 1000000u);
		ts.tv_nsec = (long long)(wait % 1000000u) * 1000;
		rc = io_uring_submit_and_wait_timeout(&s->ring, &cqe, 1, &ts,
		    NULL);
		if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY)
			log_fatal("io_uring wait: %s", strerror(-rc));
		/* Reap everything first, then run the handlers. */
		n = 0;
		io_uring_for_each_cqe(&s->ring, head, cqe) {
			done[n].ud = cqe->user_data;
			done[n].res = cqe->res;
			done[n].flags = cqe->flags;
			if (++n == SRC_CQE_BATCH)
				break;
		}
		io_uring_cq_advance(&s->ring, n);
		s->now = clock_mono_us();
		for (i = 0; i < n; i++)
			dispatch(s, done[i].ud, done[i].res, done[i].flags);
		if (s->now >= s->next_tick) {
			src_timeouts(s);
			s->next_tick = s->now + SRC_TICK_US;
		}
		src_wake(s);
		if (s->progress && s->now >= s->next_progress) {
			progress_show(s);
			s->next_progress = s->now + SRC_PROGRESS_US;
		}
	}
	if (s->end_us == 0 || s->aborting)
		s->end_us = s->now;
}

/* ---- the report ------------------------------------------------------- */

static double
src_elapsed(const struct src *s)
{
	return (double)(s->end_us - s->t0) / 1e6;
}

static uint64_t
sum_stages(const uint64_t *v)
{
	uint64_t n = 0;
	unsigned i;

	for (i = 0; i < SRC_STAGE_COUNT; i++)
		n += v[i];
	return n;
}

static void
text_stages(const char *label, const uint64_t *v)
{
	unsigned i;
	const char *sep = "";

	if (sum_stages(v) == 0)
		return;
	printf("%-20s ", label);
	for (i = SRC_STAGE_MAIL; i < SRC_STAGE_COUNT; i++) {
		printf("%s%s %llu", sep, src_stage_names[i],
		    (unsigned long long)v[i]);
		sep = ", ";
	}
	printf("\n");
}

static void
text_latency(const char *label, const struct hist *h)
{
	printf("  %-18s %9.3f %9.3f %9.3f %9.3f %9.3f %9llu\n", label,
	    hist_percentile(h, 50) / 1e3, hist_percentile(h, 90) / 1e3,
	    hist_percentile(h, 99) / 1e3, hist_percentile(h, 99.9) / 1e3,
	    h->count ? (double)h->max / 1e3 : 0.0,
	    (unsigned long long)h->count);
}

static void
report_text(const struct src *s)
{
	const struct bench_source_opts *o = s->o;
	const struct src_stats *st = &s->st;
	double el = src_elapsed(s);
	const char *sep = "";
	unsigned i;

	printf("sluice-bench source: %s, %s%s%s, %u connection%s, %s loop",
	    o->to_text, o->lmtp ? "LMTP" : "SMTP",
	    o->starttls ? " STARTTLS" : "", o->auth ? " AUTH" : "",
	    o->connections, o->connections == 1 ? "" : "s",
	    o->rate > 0 ? "open" : "closed");
	if (o->rate > 0)
		printf(" at %g msg/s", o->rate);
	if (s->corpus != NULL)
		printf(", corpus of %zu\n", s->ncorpus);
	else
		printf(", %llu-byte messages\n", (unsigned long long)o->size);
	printf("%-20s %.3f s\n", "elapsed", el);
	printf("%-20s %llu sent, %llu accepted, %llu tempfail, %llu "
	    "permfail, %llu lost to connection errors\n", "transactions",
	    (unsigned long long)st->sent, (unsigned long long)st->accepted,
	    (unsigned long long)sum_stages(st->temp),
	    (unsigned long long)sum_stages(st->perm),
	    (unsigned long long)st->lost);
	if (s->live > 0)
		printf("%-20s %llu (the run stopped with them in flight)\n",
		    "unfinished", (unsigned long long)s->live);
	printf("%-20s %.1f msg/s accepted\n", "throughput",
	    el > 0 ? (double)st->accepted / el : 0.0);
	text_stages("tempfail by stage", st->temp);
	text_stages("permfail by stage", st->perm);
	if (st->rcpt_4xx || st->rcpt_5xx)
		printf("%-20s %llu 4xx, %llu 5xx (at RCPT)\n",
		    "recipients refused", (unsigned long long)st->rcpt_4xx,
		    (unsigned long long)st->rcpt_5xx);
	if (o->lmtp)
		printf("%-20s %llu accepted, %llu tempfail, %llu permfail "
		    "(after the data)\n", "LMTP recipients",
		    (unsigned long long)st->lmtp_ok,
		    (unsigned long long)st->lmtp_4xx,
		    (unsigned long long)st->lmtp_5xx);
	printf("%-20s %9s %9s %9s %9s %9s %9s\n", "latency (ms)", "p50",
	    "p90", "p99", "p99.9", "max", "count");
	text_latency("transaction", &st->lat_txn);
	text_latency("connect to 220", &st->lat_greet);
	printf("%-20s %llu opened, %llu sessions, %llu errors",
	    "connections", (unsigned long long)st->connects,
	    (unsigned long long)st->sessions,
	    (unsigned long long)st->errors);
	if (st->errors) {
		printf(" (");
		for (i = 0; i < SRC_E_COUNT; i++) {
			if (st->err[i] == 0)
				continue;
			printf("%s%s %llu", sep, src_err_names[i],
			    (unsigned long long)st->err[i]);
			sep = ", ";
		}
		printf(")");
	}
	printf("\n");
	if (s->srv_known)
		printf("%-20s PIPELINING %s%s%s%s\n", "server offers",
		    s->srv_pipelining ? "yes" : "no",
		    s->srv_starttls ? ", STARTTLS" : "",
		    s->srv_plain ? ", AUTH PLAIN" : "",
		    s->srv_login ? ", AUTH LOGIN" : "");
	if (s->tls_version[0])
		printf("%-20s %s %s\n", "tls", s->tls_version, s->tls_cipher);
	if (s->first_refusal[0])
		printf("%-20s %s\n", "first refusal", s->first_refusal);
	if (s->first_conn_error[0])
		printf("%-20s %s\n", "first conn error", s->first_conn_error);
	if (s->error[0])
		printf("%-20s %s\n", "run failed", s->error);
}

static json_t *
json_u64(uint64_t v)
{
	return json_integer((json_int_t)v);
}

static json_t *
json_stages(const uint64_t *v)
{
	json_t *j = json_object();
	unsigned i;

	json_object_set_new(j, "total", json_u64(sum_stages(v)));
	for (i = SRC_STAGE_MAIL; i < SRC_STAGE_COUNT; i++)
		json_object_set_new(j, src_stage_names[i], json_u64(v[i]));
	return j;
}

static json_t *
json_hist(const struct hist *h)
{
	json_t *j = json_object();

	json_object_set_new(j, "count", json_u64(h->count));
	json_object_set_new(j, "p50", json_u64(hist_percentile(h, 50)));
	json_object_set_new(j, "p90", json_u64(hist_percentile(h, 90)));
	json_object_set_new(j, "p99", json_u64(hist_percentile(h, 99)));
	json_object_set_new(j, "p99.9", json_u64(hist_percentile(h, 99.9)));
	json_object_set_new(j, "max", json_u64(h->count ? h->max : 0));
	json_object_set_new(j, "mean", json_real(hist_mean(h)));
	return j;
}

static json_t *
json_str_or_null(const char *p)
{
	return p[0] ? json_string(p) : json_null();
}

static void
report_json(const struct src *s, int status)
{
	const struct bench_source_opts *o = s->o;
	const struct src_stats *st = &s->st;
	json_t *j = json_object(), *x;
	double el = src_elapsed(s);
	unsigned i;

	json_object_set_new(j, "to", json_string(o->to_text));
	json_object_set_new(j, "protocol", json_string(o->lmtp ? "lmtp" :
	    "smtp"));
	json_object_set_new(j, "connections", json_u64(o->connections));
	if (o->messages)
		json_object_set_new(j, "messages", json_u64(o->messages));
	else
		json_object_set_new(j, "duration_s",
		    json_real((double)o->duration_us / 1e6));
	if (s->corpus != NULL)
		json_object_set_new(j, "corpus_files", json_u64(s->ncorpus));
	else
		json_object_set_new(j, "size", json_u64(o->size));
	json_object_set_new(j, "recipients", json_u64(o->recipients));
	json_object_set_new(j, "per_connection", json_u64(o->per_connection));
	json_object_set_new(j, "pipelining", json_boolean(o->pipelining));
	json_object_set_new(j, "starttls", json_boolean(o->starttls));
	json_object_set_new(j, "auth", json_boolean(o->auth));
	json_object_set_new(j, "loop", json_string(o->rate > 0 ? "open" :
	    "closed"));
	json_object_set_new(j, "rate", o->rate > 0 ? json_real(o->rate) :
	    json_null());
	json_object_set_new(j, "elapsed_s", json_real(el));
	json_object_set_new(j, "sent", json_u64(st->sent));
	json_object_set_new(j, "accepted", json_u64(st->accepted));
	json_object_set_new(j, "tempfail", json_stages(st->temp));
	json_object_set_new(j, "permfail", json_stages(st->perm));
	json_object_set_new(j, "lost", json_u64(st->lost));
	json_object_set_new(j, "unfinished", json_u64(s->live));
	json_object_set_new(j, "messages_per_s",
	    json_real(el > 0 ? (double)st->accepted / el : 0.0));
	x = json_object();
	json_object_set_new(x, "refused_4xx", json_u64(st->rcpt_4xx));
	json_object_set_new(x, "refused_5xx", json_u64(st->rcpt_5xx));
	if (o->lmtp) {
		json_object_set_new(x, "lmtp_accepted", json_u64(st->lmtp_ok));
		json_object_set_new(x, "lmtp_tempfail",
		    json_u64(st->lmtp_4xx));
		json_object_set_new(x, "lmtp_permfail",
		    json_u64(st->lmtp_5xx));
	}
	json_object_set_new(j, "recipients_detail", x);
	x = json_object();
	json_object_set_new(x, "transaction", json_hist(&st->lat_txn));
	json_object_set_new(x, "connect_greeting", json_hist(&st->lat_greet));
	json_object_set_new(j, "latency_us", x);
	x = json_object();
	json_object_set_new(x, "opened", json_u64(st->connects));
	json_object_set_new(x, "sessions", json_u64(st->sessions));
	json_object_set_new(x, "errors", json_u64(st->errors));
	for (i = 0; i < SRC_E_COUNT; i++)
		json_object_set_new(x, src_err_names[i], json_u64(st->err[i]));
	json_object_set_new(j, "connections_detail", x);
	if (s->srv_known) {
		x = json_object();
		json_object_set_new(x, "pipelining",
		    json_boolean(s->srv_pipelining));
		json_object_set_new(x, "starttls",
		    json_boolean(s->srv_starttls));
		json_object_set_new(x, "auth_plain",
		    json_boolean(s->srv_plain));
		json_object_set_new(x, "auth_login",
		    json_boolean(s->srv_login));
		json_object_set_new(j, "server", x);
	}
	if (s->tls_version[0]) {
		x = json_object();
		json_object_set_new(x, "version", json_string(s->tls_version));
		json_object_set_new(x, "cipher", json_string(s->tls_cipher));
		json_object_set_new(j, "tls", x);
	}
	json_object_set_new(j, "first_refusal",
	    json_str_or_null(s->first_refusal));
	json_object_set_new(j, "first_connection_error",
	    json_str_or_null(s->first_conn_error));
	json_object_set_new(j, "error", json_str_or_null(s->error));
	json_object_set_new(j, "exit", json_integer(status));
	if (json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER |
	    JSON_REAL_PRECISION(10)) == 0)
		fputc('\n', stdout);
	json_decref(j);
}

/* ---- set-up ----------------------------------------------------------- */

/* base64 of n bytes into out (NUL-terminated), then CRLF. false if too long. */
static bool
b64_line(const void *in, size_t n, char *out, size_t outlen)
{
	word32 len = (word32)(outlen - 3);

	if (outlen < 4 || Base64_Encode_NoNl(in, (word32)n, (byte *)out,
	    &len) != 0 || len + 3 > outlen)
		return false;
	memcpy(out + len, "\r\n", 3);
	return true;
}

static int
setup_auth(struct src *s)
{
	const struct bench_source_opts *o = s->o;
	char plain[2 * SRC_AUTH_MAX + 2];
	size_t ul = strlen(o->auth_user), pl = strlen(o->auth_pass);
	char *p = s->auth_plain;
	size_t cap = sizeof(s->auth_plain);

	/* RFC 4616: authzid (empty) NUL authcid NUL passwd. */
	plain[0] = '\0';
	memcpy(plain + 1, o->auth_user, ul);
	plain[1 + ul] = '\0';
	memcpy(plain + 2 + ul, o->auth_pass, pl);
	memcpy(p, "AUTH PLAIN ", 11);
	if (!b64_line(plain, 2 + ul + pl, p + 11, cap - 11) ||
	    !b64_line(o->auth_user, ul, s->auth_user64,
	    sizeof(s->auth_user64)) ||
	    !b64_line(o->auth_pass, pl, s->auth_pass64,
	    sizeof(s->auth_pass64)))
		return -1;
	/* An empty password is "=" in LOGIN, not an empty line. */
	if (pl == 0)
		memcpy(s->auth_pass64, "=\r\n", 4);
	return 0;
}

static void
setup_run_id(struct src *s)
{
	uint32_t v;
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);

	if (fd < 0 || read(fd, &v, sizeof(v)) != (ssize_t)sizeof(v))
		v = (uint32_t)getpid();
	if (fd >= 0)
		close(fd);
	snprintf(s->run_id, sizeof(s->run_id), "%08x", v);
}

/* Enough descriptors for every connection, raising the soft limit. */
static int
setup_fds(struct src *s, char *why, size_t whylen)
{
	rlim_t need = (rlim_t)s->o->connections + SRC_FD_SPARE;
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= need)
		return 0;
	rl.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
	setrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < need) {
		snprintf(why, whylen, "%u connections need %llu file "
		    "descriptors; the limit is %llu", s->o->connections,
		    (unsigned long long)need,
		    (unsigned long long)rl.rlim_cur);
		return -1;
	}
	return 0;
}

static int
setup_ring(struct src *s, char *why, size_t whylen)
{
	unsigned cq = 2 * SRC_RING_ENTRIES;
	int rc;

	/* Room for every completion that can be pending at once. */
	while (cq < 4 * s->o->connections)
		cq *= 2;
	if ((rc = uring_init(&s->ring, SRC_RING_ENTRIES, cq)) < 0) {
		snprintf(why, whylen, "io_uring_queue_init: %s", strerror(-rc));
		return -1;
	}
	s->ring_ok = true;
	if ((rc = uring_bufs_setup(&s->ring, &s->bufs, SRC_RECV_BUFS,
	    SRC_RECV_BUF_SIZE, SRC_BGID)) < 0) {
		snprintf(why, whylen, "provided buffers: %s", strerror(-rc));
		return -1;
	}
	return 0;
}

/*
 * The generated body: --size less the header of a typical message, so
 * that messages come out at --size bytes give or take the few digits by
 * which counters grow.
 */
static int
setup_body(struct src *s, char *why, size_t whylen)
{
	struct src_conn c;
	struct src_txn t;
	struct src_out o;
	char head[SRC_HEAD_BASE + 2 * SRC_ADDR_MAX];
	size_t body;

	memset(&c, 0, sizeof(c));
	memset(&t, 0, sizeof(t));
	memset(&o, 0, sizeof(o));
	o.head = head;
	o.cap = sizeof(head);
	c.serial = s->o->connections;
	t.seq = s->o->messages ? s->o->messages / 2 : 100000;
	t.start_us = clock_mono_us();
	out_header(s, &c, &t, &o);
	body = s->o->size > o.len ? (size_t)(s->o->size - o.len) : 0;
	s->body = body_make(body, &s->body_len);
	if (s->body == NULL) {
		snprintf(why, whylen, "out of memory for a %zu-byte body",
		    body);
		return -1;
	}
	return 0;
}

/* 0, -1 (could not set up: exit 1) or -2 (bad argument: exit 2). */
static int
src_init(struct src *s, const struct bench_source_opts *o, char *why,
    size_t whylen)
{
	size_t cap, i;
	int n;

	s->o = o;
	s->dirty_head = UINT32_MAX;
	hist_init(&s->st.lat_txn);
	hist_init(&s->st.lat_greet);
	s->real_off = (int64_t)clock_real_us() - (int64_t)clock_mono_us();
	setup_run_id(s);
	n = snprintf(s->mail_cmd, sizeof(s->mail_cmd), "MAIL FROM:<%s>\r\n",
	    o->from);
	assert(n > 0 && (size_t)n < sizeof(s->mail_cmd));
	s->mail_cmd_len = (size_t)n;
	if (o->from[0])
		snprintf(s->from_hdr, sizeof(s->from_hdr), "From: <%s>\r\n",
		    o->from);
	else
		snprintf(s->from_hdr, sizeof(s->from_hdr),
		    "From: <MAILER-DAEMON@sluice-bench.invalid>\r\n");
	if (o->auth && setup_auth(s) < 0) {
		snprintf(why, whylen, "--auth: cannot encode");
		return -2;
	}
	if (o->corpus != NULL) {
		if (corpus_load(s, o->corpus, why, whylen) < 0)
			return -2;
	} else if (setup_body(s, why, whylen) < 0) {
		return -1;
	}
	if (setup_fds(s, why, whylen) < 0)
		return -1;
	if (o->starttls) {
		s->tls_ctx = bench_tls_client_ctx(o->tls_verify, why, whylen);
		if (s->tls_ctx == NULL)
			return o->tls_verify ? -2 : -1;
	}
	/*
	 * One connection's output between two sends is at most: the header
	 * of a message, the dot, RSET, MAIL, every RCPT, DATA and QUIT (see
	 * the send side). Rounded generously; out_room() checks.
	 */
	cap = SRC_HEAD_BASE + strlen(s->from_hdr) + s->mail_cmd_len +
	    strlen(s->auth_plain) + (size_t)(o->recipients + 1) *
	    (SRC_ADDR_MAX + 32);
	s->heads_size = 2 * cap * o->connections;
	s->heads = mmap(NULL, s->heads_size, PROT_READ | PROT_WRITE,
	    MAP_ANONYMOUS | MAP_PRIVATE | MAP_NORESERVE, -1, 0);
	s->conns = calloc(o->connections, sizeof(*s->conns));
	s->idleq = calloc(o->connections, sizeof(*s->idleq));
	if (s->heads == MAP_FAILED || s->conns == NULL || s->idleq == NULL) {
		if (s->heads == MAP_FAILED)
			s->heads = NULL;
		snprintf(why, whylen, "out of memory for %u connections",
		    o->connections);
		return -1;
	}
	for (i = 0; i < o->connections; i++) {
		s->conns[i].fd = -1;
		s->conns[i].out[0].head = s->heads + 2 * i * cap;
		s->conns[i].out[0].cap = cap;
		s->conns[i].out[1].head = s->heads + (2 * i + 1) * cap;
		s->conns[i].out[1].cap = cap;
	}
	if (setup_ring(s, why, whylen) < 0)
		return -1;
	s->progress = !o->quiet && isatty(STDERR_FILENO);
	return 0;
}

static void
src_free(struct src *s)
{
	size_t i;

	if (s->conns != NULL) {
		for (i = 0; i < s->o->connections; i++) {
			if (s->conns[i].fd >= 0)
				close(s->conns[i].fd);
			bench_tls_free(s->conns[i].tls);
			buf_free(&s->conns[i].tls_tx);
		}
	}
	if (s->ring_ok)
		io_uring_queue_exit(&s->ring);
	uring_bufs_free(&s->bufs);
	if (s->heads != NULL)
		munmap(s->heads, s->heads_size);
	free(s->conns);
	free(s->idleq);
	free(s->body);
	for (i = 0; i < s->ncorpus; i++)
		free(s->corpus[i].data);
	free(s->corpus);
	bench_tls_ctx_free(s->tls_ctx);
	free(s);
}

int
bench_source_main(int argc, char **argv)
{
	struct sigaction sa, old_int, old_term, old_pipe;
	struct bench_source_opts o;
	char why[SRC_WHY_MAX];
	struct src *s;
	int rc, status;

	log_progname = "sluice-bench source";
	switch (bench_source_opts_parse(&o, argc, argv, why, sizeof(why))) {
	case BENCH_SOURCE_HELP:
		fputs(bench_source_usage, stdout);
		return 0;
	case BENCH_SOURCE_USAGE:
		fprintf(stderr, "sluice-bench source: %s\n"
		    "Run 'sluice-bench source --help' for the options.\n", why);
		return 2;
	case BENCH_SOURCE_RUN:
		break;
	default:
		log_panic("bad parse result");
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		fprintf(stderr, "sluice-bench source: out of memory\n");
		return 1;
	}
	rc = src_init(s, &o, why, sizeof(why));
	if (rc < 0) {
		fprintf(stderr, "sluice-bench source: %s\n", why);
		src_free(s);
		return rc == -2 ? 2 : 1;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_interrupt;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, &old_pipe);
	src_interrupts = 0;

	src_loop(s);

	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	sigaction(SIGPIPE, &old_pipe, NULL);
	progress_erase(s);
	status = s->aborting ? 1 : 0;
	if (s->error[0])
		fprintf(stderr, "sluice-bench source: %s\n", s->error);
	if (o.json)
		report_json(s, status);
	else
		report_text(s);
	fflush(stdout);
	src_free(s);
	return status;
}
