/*
 * sink_opts.c - the command line of `sluice-bench sink`: the --help text,
 * getopt_long over the options, the --reply and --delay grammars
 * (bench_sink.h) and the draw of the reply mix. Pure: no I/O, nothing kept
 * but pointers into argv (tested by tests/unit/t_bench_sink_opts.c).
 */
#include "bench_sink.h"

#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../lib/log.h"
#include "bench_common.h"

const char sink_usage[] =
    "usage: sluice-bench sink --listen ADDR:PORT [options]\n"
    "\n"
    "An SMTP (or LMTP) server that accepts everything, fast, and misbehaves\n"
    "on request. Prints a report at the end (stdout).\n"
    "\n"
    "  --listen ADDR:PORT   listen here (numeric; [v6]:port; port 0 picks\n"
    "                       one, shown on stderr); repeatable, each listener\n"
    "                       is counted separately\n"
    "  --lmtp               speak LMTP (LHLO; one reply per recipient after\n"
    "                       the data, RFC 2033)\n"
    "  --expect N           stop once N messages have been accepted\n"
    "  --duration D         stop after D (30s, 500ms, 5m, 1h)\n"
    "                       (neither: run until SIGINT/SIGTERM)\n"
    "  --json               print the report as one JSON object\n"
    "  --reply SPEC         reply mix, e.g. rcpt:451=5%,data:550=1%\n"
    "                       stages: connect helo mail rcpt data bdat\n"
    "                       codes 400-599; a 421 closes the connection\n"
    "  --delay SPEC         reply delays, e.g. greeting:100ms,rcpt:5ms\n"
    "                       stages: greeting helo mail rcpt data bdat rset\n"
    "                       noop quit (data/bdat: the reply ending the\n"
    "                       message)\n"
    "  --max-connections N  at most N at once; beyond, 421 and close\n"
    "  --drop-data P%       close P% of connections in the middle of the\n"
    "                       message, without a reply\n"
    "  --store DIR          write each accepted message to DIR/ID.eml\n"
    "  --log FILE           one JSON line per accepted message and per\n"
    "                       closed connection\n"
    "  --hostname NAME      name in the greeting (default sink.invalid)\n"
    "  --seed N             seed of the reply mix and drops (default 1)\n"
    "  --max-slots N        connection slots (default 20000)\n"
    "  --quiet              no messages on stderr but errors\n"
    "  --help               this text\n";

static const struct {
	const char *name;
	enum sink_stage stage;
} stage_names[] = {
	{ "connect", SINK_STAGE_CONNECT },
	{ "greeting", SINK_STAGE_CONNECT },
	{ "helo", SINK_STAGE_HELO },
	{ "ehlo", SINK_STAGE_HELO },
	{ "lhlo", SINK_STAGE_HELO },
	{ "mail", SINK_STAGE_MAIL },
	{ "rcpt", SINK_STAGE_RCPT },
	{ "data", SINK_STAGE_DATA },
	{ "bdat", SINK_STAGE_BDAT },
	{ "rset", SINK_STAGE_RSET },
	{ "noop", SINK_STAGE_NOOP },
	{ "quit", SINK_STAGE_QUIT },
};

const char *
sink_stage_name(enum sink_stage st)
{
	switch (st) {
	case SINK_STAGE_CONNECT:
		return "connect";
	case SINK_STAGE_HELO:
		return "helo";
	case SINK_STAGE_MAIL:
		return "mail";
	case SINK_STAGE_RCPT:
		return "rcpt";
	case SINK_STAGE_DATA:
		return "data";
	case SINK_STAGE_BDAT:
		return "bdat";
	case SINK_STAGE_RSET:
		return "rset";
	case SINK_STAGE_NOOP:
		return "noop";
	case SINK_STAGE_QUIT:
		return "quit";
	case SINK_STAGE_COUNT:
	default:
		log_panic("bad sink stage %d", (int)st);
	}
}

/* The stage named by s[0..n), or -1. */
static int
stage_lookup(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < sizeof(stage_names) / sizeof(stage_names[0]); i++)
		if (strlen(stage_names[i].name) == n &&
		    strncasecmp(stage_names[i].name, s, n) == 0)
			return (int)stage_names[i].stage;
	return -1;
}

void
sink_opts_init(struct sink_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->hostname = SINK_HOSTNAME_DEFAULT;
	o->seed = SINK_SEED_DEFAULT;
	o->max_slots = SINK_SLOTS_DEFAULT;
}

/*
 * Copy spec into buf (NUL-terminated) for splitting; -1 when it does not
 * fit or is empty.
 */
static int
spec_copy(const char *spec, char *buf, size_t len, const char *what,
    char *why, size_t whylen)
{
	size_t n = strlen(spec);

	if (n == 0 || n >= len) {
		snprintf(why, whylen, "%s: %s", what, n == 0 ? "empty" :
		    "too long");
		return -1;
	}
	memcpy(buf, spec, n + 1);
	return 0;
}

int
sink_parse_reply(struct sink_opts *o, const char *spec, char *why,
    size_t whylen)
{
	char buf[SINK_SPEC_MAX], *item, *save = NULL, *colon, *eq, *end;
	uint32_t sum[SINK_MIX_STAGES] = { 0 };
	unsigned long code;
	uint32_t ppm;
	unsigned i;
	int st;

	if (spec_copy(spec, buf, sizeof(buf), "--reply", why, whylen) < 0)
		return -1;
	/* Shares already given by earlier --reply options count too. */
	for (i = 0; i < o->nrule; i++)
		sum[o->rule[i].stage] += o->rule[i].ppm;
	for (item = strtok_r(buf, ",", &save); item != NULL;
	    item = strtok_r(NULL, ",", &save)) {
		colon = strchr(item, ':');
		eq = colon ? strchr(colon, '=') : NULL;
		if (colon == NULL || eq == NULL) {
			snprintf(why, whylen, "--reply: '%s': expected "
			    "STAGE:CODE=PERCENT", item);
			return -1;
		}
		st = stage_lookup(item, (size_t)(colon - item));
		if (st < 0 || st >= (int)SINK_MIX_STAGES) {
			snprintf(why, whylen, "--reply: '%.*s': not a stage "
			    "(connect helo mail rcpt data bdat)",
			    (int)(colon - item), item);
			return -1;
		}
		*eq = '\0';
		errno = 0;
		code = strtoul(colon + 1, &end, 10);
		if (colon[1] < '0' || colon[1] > '9' || *end != '\0' ||
		    errno != 0 || code < 400 || code > 599) {
			snprintf(why, whylen, "--reply: '%s': the code must be "
			    "400-599", colon + 1);
			return -1;
		}
		if (!bench_parse_percent(eq + 1, &ppm)) {
			snprintf(why, whylen, "--reply: '%s': expected a "
			    "percentage like 5%% or 0.1%%", eq + 1);
			return -1;
		}
		if (sum[st] + ppm > SINK_PPM) {
			snprintf(why, whylen, "--reply: the shares of stage %s "
			    "add up to more than 100%%",
			    sink_stage_name((enum sink_stage)st));
			return -1;
		}
		if (o->nrule == SINK_RULES_MAX) {
			snprintf(why, whylen, "--reply: more than %d rules",
			    SINK_RULES_MAX);
			return -1;
		}
		sum[st] += ppm;
		o->rule[o->nrule].stage = (enum sink_stage)st;
		o->rule[o->nrule].code = (uint16_t)code;
		o->rule[o->nrule].ppm = ppm;
		o->nrule++;
	}
	return 0;
}

int
sink_parse_delay(struct sink_opts *o, const char *spec, char *why,
    size_t whylen)
{
	char buf[SINK_SPEC_MAX], *item, *save = NULL, *colon;
	uint64_t us;
	int st;

	if (spec_copy(spec, buf, sizeof(buf), "--delay", why, whylen) < 0)
		return -1;
	for (item = strtok_r(buf, ",", &save); item != NULL;
	    item = strtok_r(NULL, ",", &save)) {
		colon = strchr(item, ':');
		if (colon == NULL) {
			snprintf(why, whylen, "--delay: '%s': expected "
			    "STAGE:DURATION", item);
			return -1;
		}
		st = stage_lookup(item, (size_t)(colon - item));
		if (st < 0) {
			snprintf(why, whylen, "--delay: '%.*s': not a stage "
			    "(greeting helo mail rcpt data bdat rset noop "
			    "quit)", (int)(colon - item), item);
			return -1;
		}
		if (!bench_parse_duration(colon + 1, &us) ||
		    us > SINK_DELAY_MAX_US) {
			snprintf(why, whylen, "--delay: '%s': expected a "
			    "duration up to 1h, like 5ms or 2s", colon + 1);
			return -1;
		}
		o->delay_us[st] = us;
	}
	return 0;
}

unsigned
sink_mix_pick(const struct sink_opts *o, enum sink_stage st, uint32_t draw)
{
	uint32_t acc = 0;
	unsigned i;

	assert(draw < SINK_PPM);
	for (i = 0; i < o->nrule; i++) {
		if (o->rule[i].stage != st)
			continue;
		acc += o->rule[i].ppm;
		if (draw < acc)
			return o->rule[i].code;
	}
	return 0;
}

/* A decimal in [min, max]; false on junk, sign or range. */
static bool
parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	unsigned long long v;
	char *end;

	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (*end != '\0' || errno != 0 || v < min || v > max)
		return false;
	*out = v;
	return true;
}

/* Hostnames go into replies: printable, no spaces. */
static bool
hostname_ok(const char *h)
{
	size_t n = strlen(h), i;

	if (n == 0 || n > SINK_HOSTNAME_MAX)
		return false;
	for (i = 0; i < n; i++)
		if ((unsigned char)h[i] <= ' ' || (unsigned char)h[i] >= 127)
			return false;
	return true;
}

enum {
	OPT_LISTEN = 256, OPT_LMTP, OPT_EXPECT, OPT_DURATION, OPT_JSON,
	OPT_REPLY, OPT_DELAY, OPT_MAXCONN, OPT_DROP, OPT_STORE, OPT_LOG,
	OPT_HOSTNAME, OPT_QUIET, OPT_SEED, OPT_SLOTS, OPT_HELP,
};

static const struct option sink_longopts[] = {
	{ "listen", required_argument, NULL, OPT_LISTEN },
	{ "lmtp", no_argument, NULL, OPT_LMTP },
	{ "expect", required_argument, NULL, OPT_EXPECT },
	{ "duration", required_argument, NULL, OPT_DURATION },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "reply", required_argument, NULL, OPT_REPLY },
	{ "delay", required_argument, NULL, OPT_DELAY },
	{ "max-connections", required_argument, NULL, OPT_MAXCONN },
	{ "drop-data", required_argument, NULL, OPT_DROP },
	{ "store", required_argument, NULL, OPT_STORE },
	{ "log", required_argument, NULL, OPT_LOG },
	{ "hostname", required_argument, NULL, OPT_HOSTNAME },
	{ "quiet", no_argument, NULL, OPT_QUIET },
	{ "seed", required_argument, NULL, OPT_SEED },
	{ "max-slots", required_argument, NULL, OPT_SLOTS },
	{ "help", no_argument, NULL, OPT_HELP },
	{ NULL, 0, NULL, 0 },
};

enum sink_parse_result
sink_opts_parse(struct sink_opts *o, int argc, char **argv, char *why,
    size_t whylen)
{
	uint64_t v;
	bool cap_given = false;
	int ch;

	why[0] = '\0';
	/* glibc: optind 0 starts a fresh scan (argv may differ per call). */
	optind = 0;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "+h", sink_longopts, NULL)) !=
	    -1) {
		switch (ch) {
		case OPT_LISTEN:
			if (o->nlisten == SINK_LISTEN_MAX) {
				snprintf(why, whylen, "--listen: at most %d",
				    SINK_LISTEN_MAX);
				return SINK_PARSE_ERROR;
			}
			if (!bench_parse_hostport(optarg,
			    &o->listen[o->nlisten].sa,
			    &o->listen[o->nlisten].salen)) {
				snprintf(why, whylen, "--listen: '%s': expected "
				    "ADDR:PORT or [ADDR]:PORT, numeric", optarg);
				return SINK_PARSE_ERROR;
			}
			o->listen[o->nlisten++].text = optarg;
			break;
		case OPT_LMTP:
			o->lmtp = true;
			break;
		case OPT_EXPECT:
			if (!parse_u64(optarg, 1, UINT64_MAX, &o->expect)) {
				snprintf(why, whylen, "--expect: '%s': expected "
				    "a count of at least 1", optarg);
				return SINK_PARSE_ERROR;
			}
			break;
		case OPT_DURATION:
			if (!bench_parse_duration(optarg, &o->duration_us) ||
			    o->duration_us == 0) {
				snprintf(why, whylen, "--duration: '%s': "
				    "expected a duration like 30s", optarg);
				return SINK_PARSE_ERROR;
			}
			break;
		case OPT_JSON:
			o->json = true;
			break;
		case OPT_REPLY:
			if (sink_parse_reply(o, optarg, why, whylen) < 0)
				return SINK_PARSE_ERROR;
			break;
		case OPT_DELAY:
			if (sink_parse_delay(o, optarg, why, whylen) < 0)
				return SINK_PARSE_ERROR;
			break;
		case OPT_MAXCONN:
			if (!parse_u64(optarg, 1, SINK_SLOTS_MAX, &v)) {
				snprintf(why, whylen, "--max-connections: '%s': "
				    "expected 1..%u", optarg, SINK_SLOTS_MAX);
				return SINK_PARSE_ERROR;
			}
			o->max_connections = (uint32_t)v;
			cap_given = true;
			break;
		case OPT_DROP:
			if (!bench_parse_percent(optarg, &o->drop_ppm)) {
				snprintf(why, whylen, "--drop-data: '%s': "
				    "expected a percentage like 1%%", optarg);
				return SINK_PARSE_ERROR;
			}
			break;
		case OPT_STORE:
			o->store_dir = optarg;
			break;
		case OPT_LOG:
			o->log_path = optarg;
			break;
		case OPT_HOSTNAME:
			if (!hostname_ok(optarg)) {
				snprintf(why, whylen, "--hostname: '%s': expected "
				    "1-%d printable characters, no spaces",
				    optarg, SINK_HOSTNAME_MAX);
				return SINK_PARSE_ERROR;
			}
			o->hostname = optarg;
			break;
		case OPT_QUIET:
			o->quiet = true;
			break;
		case OPT_SEED:
			if (!parse_u64(optarg, 0, UINT64_MAX, &o->seed)) {
				snprintf(why, whylen, "--seed: '%s': expected a "
				    "number", optarg);
				return SINK_PARSE_ERROR;
			}
			break;
		case OPT_SLOTS:
			if (!parse_u64(optarg, 1, SINK_SLOTS_MAX, &v)) {
				snprintf(why, whylen, "--max-slots: '%s': "
				    "expected 1..%u", optarg, SINK_SLOTS_MAX);
				return SINK_PARSE_ERROR;
			}
			o->max_slots = (uint32_t)v;
			break;
		case 'h':
		case OPT_HELP:
			return SINK_PARSE_HELP;
		case ':':
			snprintf(why, whylen, "%s: needs a value",
			    argv[optind - 1]);
			return SINK_PARSE_ERROR;
		case '?':
		default:
			snprintf(why, whylen, "unknown option '%s'",
			    argv[optind - 1]);
			return SINK_PARSE_ERROR;
		}
	}
	if (optind < argc) {
		snprintf(why, whylen, "unexpected argument '%s'", argv[optind]);
		return SINK_PARSE_ERROR;
	}
	if (o->nlisten == 0) {
		snprintf(why, whylen, "--listen ADDR:PORT is required");
		return SINK_PARSE_ERROR;
	}
	/* The cap is a promise: make room for it. */
	if (!cap_given)
		o->max_connections = o->max_slots;
	else if (o->max_connections > o->max_slots)
		o->max_slots = o->max_connections;
	return SINK_PARSE_OK;
}
