/*
 * source_opts.c - the command line of `sluice-bench source`: the --help
 * text, the option table and its parser, and the expansion of the --rcpt
 * template. Pure: no I/O, nothing kept but pointers into argv; see
 * bench_source.h for the contract (tested by tests/unit/t_bench_source_opts.c).
 */
#include "bench_source.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../lib/log.h"
#include "bench_common.h"

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
"  --domains N           spread the recipients over N domains, in turn:\n"
"                        {d} in --rcpt is the domain's number, 0..N-1\n"
"                        (default --rcpt then: rcpt{n}@d{d}.bench.test)\n"
"  --helo NAME           EHLO/LHLO name (default sluice-bench.localdomain)\n"
"  --lmtp                speak LMTP: LHLO, one reply per recipient after\n"
"                        the data\n"
"  --starttls            upgrade each session with STARTTLS before MAIL\n"
"  --tls                 TLS from the first byte (port 465, \"implicit\"):\n"
"                        the handshake, then the greeting\n"
"  --tls-verify CAFILE   verify the server's certificate chain against\n"
"                        CAFILE (implies --starttls unless --tls is given;\n"
"                        default: no check)\n"
"  --tls-resume on|off   offer the session of the last TLS connection on\n"
"                        the next (default on; off: every handshake full)\n"
"  --auth USER:PASS      AUTH PLAIN (or LOGIN if only that is offered),\n"
"                        after STARTTLS when --starttls is given\n"
"  --auth-mech PLAIN|LOGIN  use this mechanism only (default: PLAIN if\n"
"                        offered, else LOGIN)\n"
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
	OPT_RATE, OPT_FROM, OPT_RCPT, OPT_RCPT_MOD, OPT_DOMAINS, OPT_HELO,
	OPT_LMTP,
	OPT_STARTTLS, OPT_TLS, OPT_TLS_VERIFY, OPT_TLS_RESUME, OPT_AUTH,
	OPT_AUTH_MECH, OPT_TIMEOUT, OPT_MAX_ERRORS,
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
	{ "domains", OPT_DOMAINS, true },
	{ "helo", OPT_HELO, true },
	{ "lmtp", OPT_LMTP, false },
	{ "starttls", OPT_STARTTLS, false },
	{ "tls", OPT_TLS, false },
	{ "tls-verify", OPT_TLS_VERIFY, true },
	{ "tls-resume", OPT_TLS_RESUME, true },
	{ "auth", OPT_AUTH, true },
	{ "auth-mech", OPT_AUTH_MECH, true },
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
	o->tls_resume = true;
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

		/* The longest expansion must fit: try the largest values. */
		if (!addr_ok(v, false) ||
		    bench_source_rcpt_expand(v, UINT64_MAX,
		    SRC_DOMAINS_MAX - 1, probe, sizeof(probe)) == 0)
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
	case OPT_DOMAINS:
		if (!parse_uint(v, 1, SRC_DOMAINS_MAX, &n))
			return usage_error(why, whylen, "--domains: '%s' is "
			    "not a number from 1 to %d", v, SRC_DOMAINS_MAX);
		o->domains = (uint32_t)n;
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
	case OPT_TLS:
		o->tls = true;
		break;
	case OPT_TLS_VERIFY:
		if (*v == '\0')
			return usage_error(why, whylen, "--tls-verify: empty "
			    "file name");
		o->tls_verify = v;	/* STARTTLS, unless --tls: see below */
		break;
	case OPT_TLS_RESUME:
		if (strcmp(v, "on") == 0)
			o->tls_resume = true;
		else if (strcmp(v, "off") == 0)
			o->tls_resume = false;
		else
			return usage_error(why, whylen, "--tls-resume: '%s' "
			    "is not on or off", v);
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
	case OPT_AUTH_MECH:
		if (strcasecmp(v, "plain") == 0)
			o->auth_mech = SRC_AUTH_PLAIN;
		else if (strcasecmp(v, "login") == 0)
			o->auth_mech = SRC_AUTH_LOGIN;
		else
			return usage_error(why, whylen, "--auth-mech: '%s' is "
			    "not PLAIN or LOGIN", v);
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
	bool seen_messages = false, seen_size = false, seen_rcpt = false;
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
		if (d->id == OPT_RCPT)
			seen_rcpt = true;
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
	if (o->tls && o->starttls)
		return usage_error(why, whylen, "--tls and --starttls exclude "
		    "each other");
	if (o->tls_verify && !o->tls)
		o->starttls = true;
	if (o->auth_mech != SRC_AUTH_ANY && !o->auth)
		return usage_error(why, whylen, "--auth-mech needs --auth "
		    "USER:PASS");
	if (o->domains && !seen_rcpt)
		o->rcpt = SRC_DEF_RCPT_DOMAINS;
	if (o->domains && strstr(o->rcpt, "{d}") == NULL)
		return usage_error(why, whylen, "--domains: the --rcpt "
		    "template '%s' has no {d} for the domain's number",
		    o->rcpt);
	if (!o->domains && strstr(o->rcpt, "{d}") != NULL)
		return usage_error(why, whylen, "--rcpt: {d} needs --domains");
	if (o->duration_us)
		o->messages = 0;
	return BENCH_SOURCE_RUN;
}

size_t
bench_source_rcpt_expand(const char *tmpl, uint64_t n, uint64_t d,
    char *out, size_t outlen)
{
	const uint64_t v[2] = { n, d };
	char num[2][24];
	size_t len = 0, nl[2] = { 0, 0 }, k;
	const char *p;

	for (p = tmpl; *p; ) {
		if (p[0] == '{' && (p[1] == 'n' || p[1] == 'd') && p[2] == '}') {
			k = p[1] == 'd';
			/* Formatted once, when first used: this runs per RCPT. */
			if (nl[k] == 0)
				nl[k] = (size_t)snprintf(num[k], sizeof(num[k]),
				    "%llu", (unsigned long long)v[k]);
			if (len + nl[k] >= outlen)
				return 0;
			memcpy(out + len, num[k], nl[k]);
			len += nl[k];
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

size_t
bench_source_rcpt(const struct bench_source_opts *o, uint64_t counter,
    char *out, size_t outlen)
{
	return bench_source_rcpt_expand(o->rcpt,
	    bench_source_rcpt_n(counter, o->rcpt_mod),
	    bench_source_rcpt_d(counter, o->domains), out, outlen);
}

