/*
 * bench_sink.c - `sluice-bench sink`: an SMTP (or LMTP) server that takes
 * mail as fast as the machine allows, to stand in for MX hosts or a next
 * hop when measuring a relay, and that misbehaves on request (a reply mix,
 * delays, a connection cap, connections dropped mid-DATA).
 *
 * Contract: bench_sink_main(argc, argv) with argv[0] == "sink" runs until
 * --expect messages were accepted, --duration passed, or SIGINT/SIGTERM
 * (a second signal cuts the drain short), prints one report (text, or one
 * JSON object with --json) on stdout, and returns 0; 2 on a usage error,
 * 1 when it cannot start. SIGINT and SIGTERM are left blocked on return:
 * the caller is expected to exit.
 *
 * Design, after engine/shard.c (docs/architecture.md): one thread, one
 * io_uring ring; connection slots allocated at start; a multishot accept
 * per listener; recv through a provided buffer ring, so an idle connection
 * holds no receive buffer; at most one recv, one send and one timer in
 * flight per connection; user_data = op | slot | generation, completions
 * reaped in a batch and handled afterwards. All input at hand is processed
 * before anything is sent, so a pipelined group gets its replies in one
 * send. A delayed reply holds the connection: the replies before it leave
 * now, processing stops (input already read is kept, no recv is armed) and
 * an IORING_OP_TIMEOUT resumes it, so replies always stay in order.
 *
 * Hot path: a message costs no allocation once a slot's buffers have grown
 * and no syscall beyond recv/send. Without --store and --log only the first
 * SINK_HEAD_KEEP bytes of a message are kept (to find X-Sluice-Bench). With
 * --log the bytes are hashed as they arrive and the log is written in
 * blocks; with --store the whole message is kept and written through the
 * ring (open, write, close linked on a fixed-file slot), off the session.
 *
 * Diagnostics: startup failures are fatal (exit 1) on stderr; trouble at
 * run time is counted and shown in the report, and warned about on stderr
 * unless --quiet.
 */
#include "bench.h"
#include "bench_sink.h"

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../lib/buf.h"
#include "../lib/clock.h"
#include "../lib/log.h"
#include "../lib/uring.h"
#include "../proto/data_scan.h"
#include "bench_common.h"
#include "bench_hist.h"

/* Ring and buffers: fixed at start. */
#define SINK_RING_ENTRIES 4096
#define SINK_CQ_ENTRIES 65536
#define SINK_CQE_BATCH 512
#define SINK_RECV_BUFS 512		/* power of two */
#define SINK_RECV_BUF_SIZE 16384
#define SINK_BGID 1
#define SINK_BACKLOG 4096

/* Protocol limits. */
#define SINK_LINE_MAX 4096		/* a command line, CRLF included */
#define SINK_RCPT_MAX 1000		/* recipients per transaction */
#define SINK_MSG_MAX (256ull << 20)	/* advertised SIZE, enforced */
#define SINK_HEAD_KEEP 65536		/* message bytes kept to find the header */
#define SINK_OUT_HIGH 65536		/* stop reading above this backlog */
#define SINK_ID_LEN 16			/* hex digits of a message id */
#define SINK_BENCH_ID_MAX 128		/* X-Sluice-Bench id= text */

/* Buffers a slot keeps for its next connection, at most. */
#define SINK_KEEP_MSG (1u << 20)
#define SINK_KEEP_IO 16384

/* Timing. */
#define SINK_TICK_US 250000		/* --duration, log flush, re-accept */
#define SINK_DRAIN_US 1000000		/* after the stop, for QUITs to come */
#define SINK_STORE_WAIT_US 30000000	/* after the stop, for --store writes */

/* Output files. */
#define SINK_LOG_FLUSH (256u * 1024)	/* write the log in blocks this big */
#define SINK_STORE_JOBS 64		/* --store writes in flight */
#define SINK_SECONDS_MAX (7u * 86400)	/* per-second counts kept */

static_assert((SINK_RECV_BUFS & (SINK_RECV_BUFS - 1)) == 0,
    "the buffer ring size is a power of two");
static_assert(SINK_HEAD_KEEP >= SINK_LINE_MAX, "head holds a header line");
static_assert(SINK_SLOTS_MAX <= (1u << 24), "slot index fits user_data");
static_assert(SINK_MIX_STAGES <= SINK_STAGE_COUNT, "mix stages are stages");

enum sink_op {
	OP_ACCEPT = 1,		/* idx: listener */
	OP_RECV,		/* idx: slot */
	OP_SEND,		/* idx: slot */
	OP_TIMER,		/* idx: slot; a held reply is due */
	OP_SIGNAL,		/* signalfd read */
	OP_STORE,		/* idx: store job; gen: step 0 open, 1 write, 2 close */
	OP_CANCEL,		/* a cancel or timeout removal; nothing to do */
};


/* What the bytes arriving on a connection are. */
enum conn_state {
	CS_CMD = 0,		/* command lines */
	CS_DATA,		/* DATA content, up to <CRLF>.<CRLF> */
	CS_BDAT,		/* the octets of a BDAT chunk */
};

struct conn {
	uint32_t gen;
	uint32_t next_free;
	int fd;
	uint16_t listener;
	uint8_t inflight;	/* recv + send + timer in flight */
	enum conn_state state;
	bool in_use;
	bool closing;		/* shut down; freed when inflight == 0 */
	bool close_after_flush;	/* QUIT or 421: close once out is sent */
	bool recv_armed;
	bool send_armed;
	bool timer_armed;
	bool hold;		/* out[hold_off..] waits for the timer/store */
	bool store_wait;	/* the held reply waits for a --store write */
	bool no_service;	/* greeted with a refusal: 503 until QUIT */
	bool helo;
	bool mail;		/* a transaction is open */
	bool drop;		/* drop this message mid-data */
	bool bdat_started;	/* a chunk of this transaction was seen */
	bool bdat_bad;		/* BDAT outside a valid transaction */
	bool bdat_last;
	bool msg_too_big;
	bool msg_nomem;
	uint32_t nrcpt;
	uint32_t messages;	/* accepted on this connection */
	uint64_t serial;
	uint64_t rng;
	uint64_t bdat_left;
	uint64_t msg_size;	/* message bytes seen, kept or not */
	size_t hold_off;
	size_t tx_off;
	size_t hashed;		/* msg bytes already hashed */
	struct data_scan ds;
	struct buf in;		/* input read but not yet processed */
	struct buf out;		/* replies not yet handed to send */
	struct buf tx;		/* the bytes of the send in flight */
	struct buf msg;		/* the message, or its head */
	struct buf env;		/* --log: sender and recipients, see env_add */
	wc_Sha256 *sha;		/* --log: allocated on first use, kept */
	struct __kernel_timespec ts;
};

struct listener {
	int fd;
	bool accept_armed;
	bool rearm;		/* re-arm the accept at the next tick */
	char addr[INET6_ADDRSTRLEN + 8];
	uint64_t conns;
	uint64_t refused_cap;
	uint64_t messages;
	uint64_t bytes;
};

struct store_job {
	struct buf msg;
	char name[SINK_ID_LEN + 8];
	uint32_t next_free;
	uint32_t conn;		/* slot and generation of the connection */
	uint32_t conn_gen;	/* whose reply waits for this write */
	bool busy;
	bool failed;
	size_t len;
};

struct sink {
	const struct sink_opts *o;
	struct io_uring ring;
	bool ring_ok;
	bool has_mix[SINK_MIX_STAGES];

	struct conn *conns;
	uint32_t nslots;
	uint32_t free_head;
	uint32_t nactive;

	struct listener lst[SINK_LISTEN_MAX];
	unsigned nlisten;

	struct uring_bufs bufs;	/* provided buffers for recv */

	int sigfd;
	struct signalfd_siginfo si;
	sigset_t sigmask;	/* SIGINT, SIGTERM */
	unsigned signals;

	char greeting[SINK_HOSTNAME_MAX + 64];
	char ehlo[SINK_HOSTNAME_MAX + 256];
	char helo[SINK_HOSTNAME_MAX + 16];

	/* Run state; times are CLOCK_MONOTONIC microseconds. */
	bool stop_pending;
	bool stopping;
	uint64_t now_us;
	uint64_t start_us;
	uint64_t stop_us;
	uint64_t first_us;	/* first connection accepted, 0: none yet */
	uint64_t last_msg_us;
	uint64_t next_tick_us;
	uint64_t wall_start_us;

	/* Counters for the report. */
	uint64_t messages;
	uint64_t refused[SINK_MIX_STAGES][200];	/* by stage, code - 400 */
	uint64_t refused_total;
	uint64_t dropped;
	uint64_t conn_accepted;
	uint64_t conn_refused_connect;
	uint64_t conn_refused_cap;
	uint64_t conn_max;
	uint64_t bytes;
	uint64_t bare_cr;
	uint64_t bare_lf;
	uint64_t errors;	/* commands answered 5xx/503 by the protocol */
	uint64_t too_big;
	uint64_t no_header;
	uint64_t serial;
	uint64_t seq;
	uint64_t id_prefix;
	struct hist *lat;
	uint32_t *per_sec;
	size_t nsec;
	size_t sec_cap;
	bool sec_full;

	/* --log */
	int log_fd;
	struct buf logb;
	uint64_t log_errors;

	/* --store */
	int store_dirfd;
	bool store_ring;	/* fixed-file slots registered */
	struct store_job jobs[SINK_STORE_JOBS];
	uint32_t store_free;
	uint32_t store_inflight;
	uint64_t stored;
	uint64_t store_errors;

	bool rcpt_ok[SINK_RCPT_MAX];	/* LMTP verdicts of one message */
};

/* ---- options ---------------------------------------------------------- */

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

/* ---- small helpers ---------------------------------------------------- */

/* splitmix64: one stream per connection, seeded by --seed and its serial. */
static uint64_t
rng_next(uint64_t *st)
{
	uint64_t z = (*st += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint32_t
rng_draw(struct conn *c)
{
	return (uint32_t)(rng_next(&c->rng) % SINK_PPM);
}

/* The mix's code for this stage of c, 0 to reply normally. */
static unsigned
mix(struct sink *s, struct conn *c, enum sink_stage st)
{
	assert(st < SINK_MIX_STAGES);
	if (!s->has_mix[st])
		return 0;
	return sink_mix_pick(s->o, st, rng_draw(c));
}

static inline struct io_uring_sqe *
get_sqe(struct sink *s)
{
	return uring_get_sqe(&s->ring);
}

static uint32_t
conn_idx(const struct sink *s, const struct conn *c)
{
	return (uint32_t)(c - s->conns);
}

/* Append to a connection's output; out of memory closes it. */
static void conn_close(struct sink *s, struct conn *c);

static void
reply(struct sink *s, struct conn *c, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
reply(struct sink *s, struct conn *c, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = buf_vprintf(&c->out, fmt, ap);
	va_end(ap);
	if (rc < 0)
		conn_close(s, c);
}

static void
reply_str(struct sink *s, struct conn *c, const char *text)
{
	if (buf_puts(&c->out, text) < 0)
		conn_close(s, c);
}

/*
 * Append p[0..n) to b as the body of a JSON string: quote, backslash and
 * control characters escaped, valid UTF-8 kept, any other byte written as
 * \u00XX so the line stays valid JSON whatever the client sent.
 */
static int
json_str(struct buf *b, const char *p, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *u = (const unsigned char *)p;
	size_t i = 0, run, k;
	char esc[6];
	int rc;

	if ((rc = buf_reserve(b, n + 2)) < 0)
		return rc;
	b->data[b->len++] = '"';
	while (i < n) {
		for (run = i; run < n && u[run] >= 0x20 && u[run] < 0x80 &&
		    u[run] != '"' && u[run] != '\\'; run++)
			;
		if (run > i) {
			if ((rc = buf_append(b, p + i, run - i)) < 0)
				return rc;
			i = run;
			continue;
		}
		k = 0;
		if (u[i] >= 0xc2 && u[i] <= 0xdf)
			k = 1;
		else if (u[i] >= 0xe0 && u[i] <= 0xef)
			k = 2;
		else if (u[i] >= 0xf0 && u[i] <= 0xf4)
			k = 3;
		if (k > 0 && i + k < n) {
			size_t j;

			for (j = 1; j <= k; j++)
				if ((u[i + j] & 0xc0) != 0x80)
					break;
			if (j > k) {
				if ((rc = buf_append(b, p + i, k + 1)) < 0)
					return rc;
				i += k + 1;
				continue;
			}
		}
		if (u[i] == '"' || u[i] == '\\') {
			esc[0] = '\\';
			esc[1] = (char)u[i];
			rc = buf_append(b, esc, 2);
		} else {
			memcpy(esc, "\\u00", 4);
			esc[4] = hex[u[i] >> 4];
			esc[5] = hex[u[i] & 15];
			rc = buf_append(b, esc, 6);
		}
		if (rc < 0)
			return rc;
		i++;
	}
	return buf_append(b, "\"", 1);
}

/* ---- --log ------------------------------------------------------------ */

static void
log_flush(struct sink *s)
{
	size_t off = 0;
	ssize_t n;

	while (off < s->logb.len) {
		n = write(s->log_fd, s->logb.data + off, s->logb.len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (s->log_errors++ == 0)
				log_warn("--log: write: %s", n < 0 ?
				    strerror(errno) : "nothing written");
			break;
		}
		off += (size_t)n;
	}
	buf_reset(&s->logb);
}

/* A line was appended: write the block once it is big enough. */
static void
log_line_done(struct sink *s, int rc)
{
	if (rc < 0 && s->log_errors++ == 0)
		log_warn("--log: out of memory");
	if (s->logb.len >= SINK_LOG_FLUSH)
		log_flush(s);
}

/*
 * The envelope kept for --log: each string as a 16-bit length and its
 * bytes, the sender first. Lines are shorter than 64 KiB.
 */
static_assert(SINK_LINE_MAX < 65536, "envelope lengths fit 16 bits");

static void
env_add(struct sink *s, struct conn *c, const char *p, size_t n)
{
	uint16_t len = (uint16_t)n;

	if (s->log_fd < 0)
		return;
	if (buf_append(&c->env, &len, sizeof(len)) < 0 ||
	    buf_append(&c->env, p, n) < 0)
		conn_close(s, c);
}

/* The string at *off in env, advancing *off. */
static const char *
env_next(const struct conn *c, size_t *off, size_t *n)
{
	uint16_t len;
	const char *p;

	assert(*off + sizeof(len) <= c->env.len);
	memcpy(&len, c->env.data + *off, sizeof(len));
	p = c->env.data + *off + sizeof(len);
	*off += sizeof(len) + len;
	assert(*off <= c->env.len);
	*n = len;
	return p;
}

static void
log_message(struct sink *s, struct conn *c, const char *id,
    const char *bench_id, uint64_t latency_us, uint64_t wall_us)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char digest[WC_SHA256_DIGEST_SIZE];
	char dhex[2 * WC_SHA256_DIGEST_SIZE + 1];
	struct buf *b = &s->logb;
	const char *p;
	size_t off = 0, n;
	uint32_t i;
	bool first = true;
	int rc;

	if (wc_Sha256Final(c->sha, digest) != 0)
		memset(digest, 0, sizeof(digest));
	for (i = 0; i < WC_SHA256_DIGEST_SIZE; i++) {
		dhex[2 * i] = hex[digest[i] >> 4];
		dhex[2 * i + 1] = hex[digest[i] & 15];
	}
	dhex[2 * WC_SHA256_DIGEST_SIZE] = '\0';
	rc = buf_printf(b, "{\"id\":\"%s\",\"listener\":\"%s\",\"conn\":%llu,"
	    "\"mail_from\":", id, s->lst[c->listener].addr,
	    (unsigned long long)c->serial);
	p = env_next(c, &off, &n);
	if (rc == 0)
		rc = json_str(b, p, n);
	if (rc == 0)
		rc = buf_puts(b, ",\"rcpt\":[");
	for (i = 0; i < c->nrcpt && rc == 0; i++) {
		p = env_next(c, &off, &n);
		if (s->o->lmtp && !s->rcpt_ok[i])
			continue;
		if (!first)
			rc = buf_puts(b, ",");
		if (rc == 0)
			rc = json_str(b, p, n);
		first = false;
	}
	if (rc == 0)
		rc = buf_printf(b, "],\"size\":%llu,\"sha256\":\"%s\","
		    "\"via\":\"%s\"", (unsigned long long)c->msg_size, dhex,
		    c->bdat_started ? "bdat" : "data");
	if (rc == 0 && bench_id != NULL) {
		rc = buf_puts(b, ",\"bench_id\":");
		if (rc == 0)
			rc = json_str(b, bench_id, strlen(bench_id));
		if (rc == 0)
			rc = buf_printf(b, ",\"latency_us\":%llu",
			    (unsigned long long)latency_us);
	}
	if (rc == 0)
		rc = buf_printf(b, ",\"time\":%llu.%06llu}\n",
		    (unsigned long long)(wall_us / 1000000u),
		    (unsigned long long)(wall_us % 1000000u));
	log_line_done(s, rc);
}

/* The line for a closed connection: tests count connections with it. */
static void
log_close(struct sink *s, const struct conn *c)
{
	log_line_done(s, buf_printf(&s->logb, "{\"event\":\"close\","
	    "\"conn\":%llu,\"listener\":\"%s\",\"messages\":%u}\n",
	    (unsigned long long)c->serial, s->lst[c->listener].addr,
	    c->messages));
}

/* ---- --store ---------------------------------------------------------- */

static void hold_at(struct conn *c, size_t mark);
static void conn_resume(struct sink *s, struct conn *c);
static void conn_free(struct sink *s, struct conn *c);

static void
store_sync(struct sink *s, const char *name, const char *data, size_t len)
{
	size_t off = 0;
	ssize_t n;
	int fd;

	fd = openat(s->store_dirfd, name, O_WRONLY | O_CREAT | O_TRUNC |
	    O_CLOEXEC, 0644);
	if (fd < 0)
		goto fail;
	while (off < len) {
		n = write(fd, data + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			goto fail;
		off += (size_t)n;
	}
	if (close(fd) < 0) {
		fd = -1;
		goto fail;
	}
	s->stored++;
	return;
fail:
	if (s->store_errors++ == 0 && !s->o->quiet)
		log_warn("--store: %s: %s", name, strerror(errno));
	if (fd >= 0)
		close(fd);
}

/*
 * Write c's message as DIR/<id>.eml before its reply (which starts at
 * out[mark]) leaves, so a client that saw 250 finds the file. Through the
 * ring when a job is free: the message buffer moves to the job (the
 * connection takes the job's old buffer, so neither allocates in steady
 * state), open, write and close go as one linked chain on the job's
 * fixed-file slot, and the connection holds its reply meanwhile.
 * Otherwise, plainly.
 */
static void
store_message(struct sink *s, struct conn *c, const char *id, size_t mark)
{
	struct io_uring_sqe *sqe;
	struct store_job *job;
	uint32_t j;
	struct buf t;

	if (!s->store_ring || s->store_free == UINT32_MAX) {
		char name[SINK_ID_LEN + 8];

		snprintf(name, sizeof(name), "%s.eml", id);
		store_sync(s, name, c->msg.data, c->msg.len);
		return;
	}
	j = s->store_free;
	job = &s->jobs[j];
	assert(!job->busy);
	s->store_free = job->next_free;
	job->busy = true;
	job->failed = false;
	t = job->msg;
	job->msg = c->msg;
	c->msg = t;
	buf_reset(&c->msg);
	job->len = job->msg.len;
	job->conn = (uint32_t)(c - s->conns);
	job->conn_gen = c->gen;
	snprintf(job->name, sizeof(job->name), "%s.eml", id);
	hold_at(c, mark);
	c->store_wait = true;
	/* The chain must reach the kernel in one submission. */
	if (io_uring_sq_space_left(&s->ring) < 3)
		io_uring_submit(&s->ring);
	sqe = get_sqe(s);
	io_uring_prep_openat_direct(sqe, s->store_dirfd, job->name,
	    O_WRONLY | O_CREAT | O_TRUNC, 0644, j);
	sqe->flags |= IOSQE_IO_LINK | IOSQE_CQE_SKIP_SUCCESS;
	io_uring_sqe_set_data64(sqe, uring_ud(OP_STORE, j, 0));
	sqe = get_sqe(s);
	io_uring_prep_write(sqe, (int)j, job->msg.data, (unsigned)job->len, 0);
	sqe->flags |= IOSQE_FIXED_FILE | IOSQE_IO_LINK | IOSQE_CQE_SKIP_SUCCESS;
	io_uring_sqe_set_data64(sqe, uring_ud(OP_STORE, j, 1));
	sqe = get_sqe(s);
	io_uring_prep_close_direct(sqe, j);
	io_uring_sqe_set_data64(sqe, uring_ud(OP_STORE, j, 2));
	s->store_inflight++;
}

static void
handle_store(struct sink *s, uint32_t j, uint32_t step, int res)
{
	struct store_job *job = &s->jobs[j];
	struct conn *c;

	assert(j < SINK_STORE_JOBS);
	assert(job->busy);
	/* A failed step cancels the rest of the chain: report it once. */
	if ((res < 0 && res != -ECANCELED) ||
	    (step == 1 && res >= 0 && (size_t)res != job->len)) {
		if (!job->failed && s->store_errors++ == 0 && !s->o->quiet)
			log_warn("--store: %s: %s", job->name, res < 0 ?
			    strerror(-res) : "short write");
		job->failed = true;
	} else if (res == -ECANCELED && !job->failed) {
		job->failed = true;
		s->store_errors++;
	}
	if (step != 2)
		return;
	if (!job->failed)
		s->stored++;
	job->busy = false;
	if (job->msg.cap > SINK_KEEP_MSG)
		buf_free(&job->msg);
	buf_reset(&job->msg);
	job->next_free = s->store_free;
	s->store_free = j;
	assert(s->store_inflight > 0);
	s->store_inflight--;
	/* The reply may go now, if its connection is still there. */
	c = &s->conns[job->conn];
	if (c->in_use && c->gen == job->conn_gen && c->store_wait) {
		c->store_wait = false;
		/* Counted in flight so that input processing cannot free c. */
		c->inflight++;
		conn_resume(s, c);
		c->inflight--;
		if (c->closing && c->inflight == 0)
			conn_free(s, c);
	}
}

/* ---- connections ------------------------------------------------------ */

static void conn_kick(struct sink *s, struct conn *c);

static void
arm_recv(struct sink *s, struct conn *c)
{
	assert(!c->recv_armed);
	assert(!c->closing);
	uring_recv_bufs(&s->ring, c->fd, &s->bufs,
	    uring_ud(OP_RECV, conn_idx(s, c), c->gen));
	c->recv_armed = true;
	c->inflight++;
}

/*
 * Hold c's output from out[mark] on: what comes before may leave, the
 * rest waits until conn_resume() finds nothing left to wait for.
 */
static void
hold_at(struct conn *c, size_t mark)
{
	assert(mark <= c->out.len);
	if (!c->hold) {
		c->hold = true;
		c->hold_off = mark;
	}
	assert(c->hold_off <= mark);
}

/* Hold the reply about to be written for us microseconds. */
static void
hold_begin(struct sink *s, struct conn *c, uint64_t us)
{
	struct io_uring_sqe *sqe;

	assert(!c->timer_armed);
	hold_at(c, c->out.len);
	c->ts.tv_sec = (long long)(us / 1000000u);
	c->ts.tv_nsec = (long long)(us % 1000000u) * 1000;
	sqe = get_sqe(s);
	io_uring_prep_timeout(sqe, &c->ts, 0, 0);
	io_uring_sqe_set_data64(sqe, uring_ud(OP_TIMER, conn_idx(s, c),
	    c->gen));
	c->timer_armed = true;
	c->inflight++;
}

static void
conn_free(struct sink *s, struct conn *c)
{
	assert(c->in_use);
	assert(c->inflight == 0);
	if (s->log_fd >= 0)
		log_close(s, c);
	close(c->fd);
	c->fd = -1;
	c->in_use = false;
	c->gen++;
	/* Keep modest buffers for the slot's next connection. */
	if (c->msg.cap > SINK_KEEP_MSG)
		buf_free(&c->msg);
	if (c->in.cap > SINK_KEEP_IO)
		buf_free(&c->in);
	if (c->out.cap > SINK_KEEP_IO)
		buf_free(&c->out);
	if (c->tx.cap > SINK_KEEP_IO)
		buf_free(&c->tx);
	if (c->env.cap > SINK_KEEP_IO)
		buf_free(&c->env);
	buf_reset(&c->in);
	buf_reset(&c->out);
	buf_reset(&c->tx);
	buf_reset(&c->msg);
	buf_reset(&c->env);
	c->next_free = s->free_head;
	s->free_head = conn_idx(s, c);
	assert(s->nactive > 0);
	s->nactive--;
}

/*
 * Stop all I/O on c; it is freed once nothing of it is in flight. Safe to
 * call more than once, and from inside input processing: the handler that
 * runs it holds an in-flight count until it is done with c.
 */
static void
conn_close(struct sink *s, struct conn *c)
{
	struct io_uring_sqe *sqe;

	if (!c->closing) {
		c->closing = true;
		/* Completes a recv or send in flight with an error or EOF. */
		if (c->recv_armed || c->send_armed)
			shutdown(c->fd, SHUT_RDWR);
		if (c->timer_armed) {
			sqe = get_sqe(s);
			io_uring_prep_timeout_remove(sqe, uring_ud(OP_TIMER,
			    conn_idx(s, c), c->gen), 0);
			io_uring_sqe_set_data64(sqe, uring_ud(OP_CANCEL, 0, 0));
		}
	}
	if (c->inflight == 0)
		conn_free(s, c);
}

/* Send what is due, if no send is in flight. */
static void
conn_flush(struct sink *s, struct conn *c)
{
	struct io_uring_sqe *sqe;
	size_t n;
	struct buf t;

	if (c->send_armed || c->closing)
		return;
	if (c->tx_off == c->tx.len) {
		buf_reset(&c->tx);
		c->tx_off = 0;
		n = c->hold ? c->hold_off : c->out.len;
		if (n == 0)
			return;
		if (n == c->out.len) {
			t = c->tx;
			c->tx = c->out;
			c->out = t;
		} else {
			/* Only on the delay path: move the part not held. */
			if (buf_append(&c->tx, c->out.data, n) < 0) {
				conn_close(s, c);
				return;
			}
			buf_consume(&c->out, n);
		}
		/* What is held, if anything, now starts out. */
		c->hold_off = 0;
	}
	sqe = get_sqe(s);
	io_uring_prep_send(sqe, c->fd, c->tx.data + c->tx_off,
	    c->tx.len - c->tx_off, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, uring_ud(OP_SEND, conn_idx(s, c), c->gen));
	c->send_armed = true;
	c->inflight++;
}

/* After any event on c: send what is due, close, or read more. */
static void
conn_kick(struct sink *s, struct conn *c)
{
	if (c->closing)
		return;
	conn_flush(s, c);
	if (c->closing)
		return;
	if (c->close_after_flush) {
		if (!c->send_armed && !c->hold && c->out.len == 0)
			conn_close(s, c);
		return;
	}
	if (!c->recv_armed && !c->hold && c->out.len < SINK_OUT_HIGH)
		arm_recv(s, c);
}

/* ---- the SMTP session ------------------------------------------------- */

static void
txn_reset(struct conn *c)
{
	c->mail = false;
	c->nrcpt = 0;
	c->drop = false;
	c->bdat_started = false;
	c->bdat_bad = false;
	c->bdat_last = false;
	buf_reset(&c->env);
}

/* Start collecting a message (DATA, or the first BDAT chunk). */
static void
msg_begin(struct sink *s, struct conn *c)
{
	buf_reset(&c->msg);
	c->hashed = 0;
	c->msg_size = 0;
	c->msg_too_big = false;
	c->msg_nomem = false;
	if (s->log_fd >= 0) {
		if (c->sha == NULL && (c->sha = malloc(sizeof(*c->sha))) == NULL)
			c->msg_nomem = true;
		else if (wc_InitSha256(c->sha) != 0)
			c->msg_nomem = true;
	}
	c->drop = s->o->drop_ppm > 0 && rng_draw(c) < s->o->drop_ppm;
}

/*
 * Bytes were added to c->msg: hash them for --log, and unless the whole
 * message is to be stored keep only its head.
 */
static void
msg_absorb(struct sink *s, struct conn *c)
{
	if (c->sha != NULL && s->log_fd >= 0 && c->msg.len > c->hashed &&
	    !c->msg_nomem) {
		if (wc_Sha256Update(c->sha, (const byte *)c->msg.data +
		    c->hashed, (word32)(c->msg.len - c->hashed)) != 0)
			c->msg_nomem = true;
		c->hashed = c->msg.len;
	}
	if (s->store_dirfd < 0 && c->msg.len > SINK_HEAD_KEEP) {
		c->msg.len = SINK_HEAD_KEEP;
		c->hashed = SINK_HEAD_KEEP;
	}
}

/* Raw message bytes (BDAT). */
static void
msg_append(struct sink *s, struct conn *c, const char *p, size_t n)
{
	size_t keep = n;

	c->msg_size += n;
	if (c->msg_size > SINK_MSG_MAX)
		c->msg_too_big = true;
	if (c->msg_too_big || c->msg_nomem)
		return;
	if (s->store_dirfd < 0 && s->log_fd < 0) {
		/* Nothing but the head is ever looked at. */
		keep = c->msg.len >= SINK_HEAD_KEEP ? 0 :
		    SINK_HEAD_KEEP - c->msg.len;
		if (keep > n)
			keep = n;
	}
	if (keep > 0 && buf_append(&c->msg, p, keep) < 0)
		c->msg_nomem = true;
	msg_absorb(s, c);
}

static void
count_refused(struct sink *s, enum sink_stage st, unsigned code)
{
	assert(st < SINK_MIX_STAGES);
	assert(code >= 400 && code <= 599);
	s->refused[st][code - 400]++;
	s->refused_total++;
}

/* Answer with the mix's code; a 421 closes after the reply. */
static void
inject(struct sink *s, struct conn *c, enum sink_stage st, unsigned code)
{
	count_refused(s, st, code);
	if (code == 421) {
		reply(s, c, "421 4.0.0 %s sluice-bench: injected %s reply, "
		    "closing\r\n", s->o->hostname, sink_stage_name(st));
		c->close_after_flush = true;
		return;
	}
	reply(s, c, "%u %u.0.0 sluice-bench: injected %s reply\r\n", code,
	    code / 100, sink_stage_name(st));
}

static void
proto_error(struct sink *s, struct conn *c, const char *text)
{
	s->errors++;
	reply_str(s, c, text);
}

/* Per-second arrival counts, from the first connection on. */
static void
count_second(struct sink *s)
{
	size_t sec = (size_t)((s->now_us - s->first_us) / 1000000u);
	size_t cap;
	uint32_t *p;

	if (sec >= SINK_SECONDS_MAX) {
		s->sec_full = true;
		return;
	}
	if (sec >= s->sec_cap) {
		cap = s->sec_cap ? s->sec_cap : 64;
		while (cap <= sec)
			cap *= 2;
		p = realloc(s->per_sec, cap * sizeof(*p));
		if (p == NULL) {
			s->sec_full = true;
			return;
		}
		memset(p + s->sec_cap, 0, (cap - s->sec_cap) * sizeof(*p));
		s->per_sec = p;
		s->sec_cap = cap;
	}
	s->per_sec[sec]++;
	if (sec + 1 > s->nsec)
		s->nsec = sec + 1;
}

/* A message was accepted (for at least one recipient). */
static void
message_accepted(struct sink *s, struct conn *c, const char *id,
    uint64_t wall_us, size_t mark)
{
	char bench_id[SINK_BENCH_ID_MAX];
	uint64_t sent_us, lat = 0;
	bool have;

	s->messages++;
	s->lst[c->listener].messages++;
	c->messages++;
	s->last_msg_us = s->now_us;
	count_second(s);
	have = bench_header_parse(c->msg.data, c->msg.len, &sent_us, bench_id,
	    sizeof(bench_id));
	if (have) {
		lat = wall_us > sent_us ? wall_us - sent_us : 0;
		hist_add(s->lat, lat);
	} else {
		s->no_header++;
	}
	if (s->log_fd >= 0)
		log_message(s, c, id, have ? bench_id : NULL, lat, wall_us);
	if (s->store_dirfd >= 0)
		store_message(s, c, id, mark);
	if (s->o->expect > 0 && s->messages >= s->o->expect)
		s->stop_pending = true;
}

/*
 * The end of a message (DATA's final dot, or BDAT LAST): reply for it, per
 * recipient in LMTP mode (RFC 2033 section 4.2), and count it.
 */
static void
message_end(struct sink *s, struct conn *c, enum sink_stage st)
{
	char id[SINK_ID_LEN + 1];
	size_t mark = c->out.len;	/* where the replies to the end start */
	uint64_t wall_us;
	unsigned code;
	uint32_t i, ok = 0;

	if (s->o->delay_us[st] > 0)
		hold_begin(s, c, s->o->delay_us[st]);
	if (c->msg_too_big || c->msg_nomem) {
		if (c->msg_too_big) {
			s->too_big++;
			proto_error(s, c, "552 5.3.4 message too big\r\n");
		} else {
			proto_error(s, c, "451 4.3.0 local error: out of "
			    "memory\r\n");
		}
		if (s->o->lmtp)
			for (i = 1; i < c->nrcpt; i++)
				reply_str(s, c, c->msg_too_big ?
				    "552 5.3.4 message too big\r\n" :
				    "451 4.3.0 local error: out of memory\r\n");
		txn_reset(c);
		return;
	}
	if (c->ds.bare_cr && st == SINK_STAGE_DATA)
		s->bare_cr++;
	if (c->ds.bare_lf && st == SINK_STAGE_DATA)
		s->bare_lf++;
	wall_us = clock_real_us();
	snprintf(id, sizeof(id), "%016llX",
	    (unsigned long long)(s->id_prefix | ++s->seq));
	if (s->o->lmtp) {
		for (i = 0; i < c->nrcpt; i++) {
			s->rcpt_ok[i] = false;
			if (c->close_after_flush)
				continue;	/* a 421 ended the session */
			code = mix(s, c, st);
			if (code != 0) {
				inject(s, c, st, code);
				continue;
			}
			reply(s, c, "250 2.0.0 Ok: queued as %s\r\n", id);
			s->rcpt_ok[i] = true;
			ok++;
		}
	} else {
		code = mix(s, c, st);
		if (code != 0) {
			inject(s, c, st, code);
		} else {
			reply(s, c, "250 2.0.0 Ok: queued as %s\r\n", id);
			ok = 1;
		}
	}
	if (ok > 0)
		message_accepted(s, c, id, wall_us, mark);
	txn_reset(c);
}

/* Close mid-message without a reply (--drop-data). */
static void
drop_now(struct sink *s, struct conn *c)
{
	s->dropped++;
	txn_reset(c);
	conn_close(s, c);
}

/* DATA content: returns the bytes consumed. */
static size_t
data_input(struct sink *s, struct conn *c, const char *p, size_t n)
{
	size_t k;

	if (c->drop) {
		drop_now(s, c);
		return n;
	}
	k = data_scan(&c->ds, p, n, &c->msg);
	c->msg_size = c->ds.size;
	if (c->ds.nomem)
		c->msg_nomem = true;
	if (c->ds.size > SINK_MSG_MAX ||
	    (c->ds.too_big && s->store_dirfd >= 0))
		c->msg_too_big = true;
	msg_absorb(s, c);
	if (c->ds.state == DS_DONE) {
		c->state = CS_CMD;
		message_end(s, c, SINK_STAGE_DATA);
	}
	return k;
}

static void
bdat_chunk_done(struct sink *s, struct conn *c)
{
	c->state = CS_CMD;
	if (c->bdat_bad) {
		proto_error(s, c, "503 5.5.1 BDAT without a valid "
		    "transaction\r\n");
		if (c->bdat_last)
			txn_reset(c);
		return;
	}
	if (c->bdat_last) {
		message_end(s, c, SINK_STAGE_BDAT);
		return;
	}
	reply(s, c, "250 2.0.0 Ok: %llu octets received\r\n",
	    (unsigned long long)c->msg_size);
}

/* BDAT chunk octets (RFC 3030): returns the bytes consumed. */
static size_t
bdat_input(struct sink *s, struct conn *c, const char *p, size_t n)
{
	size_t k = n;

	if (c->drop) {
		drop_now(s, c);
		return n;
	}
	if (k > c->bdat_left)
		k = (size_t)c->bdat_left;
	if (!c->bdat_bad)
		msg_append(s, c, p, k);
	c->bdat_left -= k;
	if (c->bdat_left == 0)
		bdat_chunk_done(s, c);
	return k;
}

/*
 * The path of "FROM:<path> params" or "TO:<path> params" (key given with
 * its colon). Accepts any bracketed path, quoted parts included, and any
 * parameters; false when there is no such path.
 */
static bool
path_parse(const char *a, size_t n, const char *key, const char **path,
    size_t *plen)
{
	size_t k = strlen(key), i;
	bool quoted = false;

	if (n < k || strncasecmp(a, key, k) != 0)
		return false;
	for (i = k; i < n && a[i] == ' '; i++)
		;
	if (i == n || a[i] != '<')
		return false;
	*path = a + i + 1;
	for (i++; i < n; i++) {
		if (quoted && a[i] == '\\' && i + 1 < n) {
			i++;
			continue;
		}
		if (a[i] == '"')
			quoted = !quoted;
		else if (a[i] == '>' && !quoted)
			break;
	}
	if (i == n || (i + 1 < n && a[i + 1] != ' '))
		return false;
	*plen = (size_t)(a + i - *path);
	return true;
}

typedef void cmd_fn(struct sink *s, struct conn *c, const char *arg,
    size_t n);

/*
 * EHLO, HELO and LHLO differ only in which protocol allows them and what
 * they answer; wrong_proto is the reply when the protocol does not.
 */
static void
greeting_cmd(struct sink *s, struct conn *c, size_t n, bool lmtp_verb,
    const char *needs_domain, const char *wrong_proto, const char *reply)
{
	unsigned code;

	if (s->o->lmtp != lmtp_verb) {
		proto_error(s, c, wrong_proto);
		return;
	}
	if (n == 0) {
		proto_error(s, c, needs_domain);
		return;
	}
	if ((code = mix(s, c, SINK_STAGE_HELO)) != 0) {
		inject(s, c, SINK_STAGE_HELO, code);
		return;
	}
	txn_reset(c);
	c->helo = true;
	reply_str(s, c, reply);
}

static void
cmd_ehlo(struct sink *s, struct conn *c, const char *arg, size_t n)
{
	(void)arg;
	greeting_cmd(s, c, n, false, "501 5.5.4 EHLO needs a domain\r\n",
	    "500 5.5.1 this is LMTP: use LHLO\r\n", s->ehlo);
}

static void
cmd_helo(struct sink *s, struct conn *c, const char *arg, size_t n)
{
	(void)arg;
	greeting_cmd(s, c, n, false, "501 5.5.4 HELO needs a domain\r\n",
	    "500 5.5.1 this is LMTP: use LHLO\r\n", s->helo);
}

static void
cmd_lhlo(struct sink *s, struct conn *c, const char *arg, size_t n)
{
	(void)arg;
	greeting_cmd(s, c, n, true, "501 5.5.4 LHLO needs a domain\r\n",
	    "502 5.5.1 command not supported\r\n", s->ehlo);
}

static void
cmd_mail(struct sink *s, struct conn *c, const char *arg, size_t n)
{
	const char *path;
	size_t plen;
	unsigned code;

	if (!c->helo) {
		proto_error(s, c, s->o->lmtp ? "503 5.5.1 send LHLO first\r\n" :
		    "503 5.5.1 send EHLO or HELO first\r\n");
		return;
	}
	if (c->mail) {
		proto_error(s, c, "503 5.5.1 nested MAIL command\r\n");
		return;
	}
	if (!path_parse(arg, n, "FROM:", &path, &plen)) {
		proto_error(s, c, "501 5.5.4 syntax: MAIL FROM:<address>\r\n");
		return;
	}
	if ((code = mix(s, c, SINK_STAGE_MAIL)) != 0) {
		inject(s, c, SINK_STAGE_MAIL, code);
		return;
	}
	txn_reset(c);
	c->mail = true;
	env_add(s, c, path, plen);
	reply_str(s, c, "250 2.1.0 Ok\r\n");
}

static void
cmd_rcpt(struct sink *s, struct conn *c, const char *arg, size_t n)
{
	const char *path;
	size_t plen;
	unsigned code;

	if (!c->mail) {
		proto_error(s, c, "503 5.5.1 need MAIL before RCPT\r\n");
		return;
	}
	if (!path_parse(arg, n, "TO:", &path, &plen) || plen == 0) {
		proto_error(s, c, "501 5.5.4 syntax: RCPT TO:<address>\r\n");
		return;
	}
	if (c->nrcpt >= SINK_RCPT_MAX) {
		proto_error(s, c, "452 4.5.3 too many recipients\r\n");
		return;
	}
	if ((code = mix(s, c, SINK_STAGE_RCPT)) != 0) {
		inject(s, c, SINK_STAGE_RCPT, code);
		return;
	}
	c->nrcpt++;
	env_add(s, c, path, plen);
	reply_str(s, c, "250 2.1.5 Ok\r\n");
}

static void
cmd_data(struct sink *s, struct conn *c, const char *arg, size_t n)
{
	(void)arg;
	if (n != 0) {
		proto_error(s, c, "501 5.5.4 DATA takes no argument\r\n");
		return;
	}
	if (!c->mail || c->bdat_started) {
		proto_error(s, c, "503 5.5.1 need MAIL and RCPT before "
		    "DATA\r\n");
		return;
	}
	if (c->nrcpt == 0) {
		/* RFC 5321 section 3.3: no valid recipients. */
		proto_error(s, c, "554 5.5.1 no valid recipients\r\n");
		return;
	}
	msg_begin(s, c);
	/* Without --store only the head is kept; the scanner counts on. */
	data_scan_init(&c->ds, s->store_dirfd >= 0 ? SINK_MSG_MAX :
	    s->log_fd >= 0 ? UINT64_MAX : SINK_HEAD_KEEP);
	c->state = CS_DATA;
	reply_str(s, c, "354 End data with <CR><LF>.<CR><LF>\r\n");
}

static void
cmd_bdat(struct sink *s, struct conn *c, const char *arg, size_t n)
{
	uint64_t size = 0;
	size_t i = 0;
	bool last = false;

	while (i < n && arg[i] >= '0' && arg[i] <= '9' &&
	    size <= SINK_MSG_MAX) {
		size = size * 10 + (uint64_t)(arg[i] - '0');
		i++;
	}
	if (i < n && arg[i] == ' ') {
		while (i < n && arg[i] == ' ')
			i++;
		if (n - i == 4 && strncasecmp(arg + i, "LAST", 4) == 0) {
			last = true;
			i = n;
		}
	}
	if (i == 0 || i != n || size > SINK_MSG_MAX) {
		/* The chunk's length is unknown: the stream cannot go on. */
		proto_error(s, c, "501 5.5.4 syntax: BDAT size [LAST]; "
		    "closing\r\n");
		c->close_after_flush = true;
		return;
	}
	if (!c->bdat_started) {
		c->bdat_bad = !c->mail || c->nrcpt == 0;
		c->bdat_started = true;
		msg_begin(s, c);
		/* A chunk of nothing cannot be dropped "in the middle". */
		if (size == 0)
			c->drop = false;
	}
	c->bdat_last = last;
	c->bdat_left = size;
	c->ds.bare_cr = c->ds.bare_lf = false;
	c->state = CS_BDAT;
	if (size == 0)
		bdat_chunk_done(s, c);
}

static void
cmd_rset(struct sink *s, struct conn *c, const char *arg, size_t n)
{
	(void)arg;
	(void)n;
	txn_reset(c);
	reply_str(s, c, "250 2.0.0 Ok\r\n");
}

static void
cmd_noop(struct sink *s, struct conn *c, const char *arg, size_t n)
{
	(void)arg;
	(void)n;
	reply_str(s, c, "250 2.0.0 Ok\r\n");
}

static void
cmd_quit(struct sink *s, struct conn *c, const char *arg, size_t n)
{
	(void)arg;
	(void)n;
	reply(s, c, "221 2.0.0 %s closing connection\r\n", s->o->hostname);
	c->close_after_flush = true;
}

/*
 * The command table. `delay` says whether the stage's delay applies to
 * the command's reply; DATA and BDAT delay the reply that ends the
 * message instead, not the 354 or a chunk's acknowledgement.
 */
static const struct sink_cmd {
	const char *verb;
	enum sink_stage stage;
	bool delay;
	cmd_fn *fn;
} sink_cmds[] = {
	{ "EHLO", SINK_STAGE_HELO, true, cmd_ehlo },
	{ "HELO", SINK_STAGE_HELO, true, cmd_helo },
	{ "LHLO", SINK_STAGE_HELO, true, cmd_lhlo },
	{ "MAIL", SINK_STAGE_MAIL, true, cmd_mail },
	{ "RCPT", SINK_STAGE_RCPT, true, cmd_rcpt },
	{ "DATA", SINK_STAGE_DATA, false, cmd_data },
	{ "BDAT", SINK_STAGE_BDAT, false, cmd_bdat },
	{ "RSET", SINK_STAGE_RSET, true, cmd_rset },
	{ "NOOP", SINK_STAGE_NOOP, true, cmd_noop },
	{ "QUIT", SINK_STAGE_QUIT, true, cmd_quit },
};

/* One command line, with its line end. */
static void
handle_command(struct sink *s, struct conn *c, const char *line, size_t n)
{
	const struct sink_cmd *cmd = NULL;
	size_t vlen, i;
	const char *arg;

	if (n > 0 && line[n - 1] == '\n')
		n--;
	if (n > 0 && line[n - 1] == '\r')
		n--;
	for (vlen = 0; vlen < n && line[vlen] != ' '; vlen++)
		;
	for (i = 0; i < sizeof(sink_cmds) / sizeof(sink_cmds[0]); i++)
		if (vlen == 4 && strncasecmp(line, sink_cmds[i].verb, 4) == 0)
			cmd = &sink_cmds[i];
	arg = line + vlen;
	while (arg < line + n && *arg == ' ')
		arg++;
	n -= (size_t)(arg - line);
	while (n > 0 && arg[n - 1] == ' ')
		n--;
	if (cmd == NULL) {
		proto_error(s, c, "502 5.5.1 command not supported\r\n");
		return;
	}
	if (cmd->fn != cmd_quit && c->no_service) {
		/* RFC 5321 section 3.1: after a refusing greeting. */
		proto_error(s, c, "503 5.5.1 no service here; QUIT\r\n");
		return;
	}
	if (cmd->fn != cmd_quit && s->stopping && !c->mail) {
		reply(s, c, "421 4.3.2 %s service shutting down\r\n",
		    s->o->hostname);
		c->close_after_flush = true;
		return;
	}
	if (cmd->delay && s->o->delay_us[cmd->stage] > 0)
		hold_begin(s, c, s->o->delay_us[cmd->stage]);
	cmd->fn(s, c, arg, n);
}

/*
 * Process input at p[0..n): commands, DATA content, BDAT octets. Stops at
 * a held reply, a close, or a partial command line, and returns the bytes
 * consumed; the caller keeps the rest for later.
 */
static size_t
conn_input(struct sink *s, struct conn *c, const char *p, size_t n)
{
	const char *lf;
	size_t off = 0, k;

	while (off < n && !c->hold && !c->close_after_flush && !c->closing) {
		switch (c->state) {
		case CS_CMD:
			lf = memchr(p + off, '\n', n - off);
			k = lf ? (size_t)(lf - (p + off)) + 1 : n - off;
			if (k > SINK_LINE_MAX) {
				proto_error(s, c, "500 5.5.2 line too long; "
				    "closing\r\n");
				c->close_after_flush = true;
				return n;
			}
			if (lf == NULL)
				return off;	/* a partial line */
			handle_command(s, c, p + off, k);
			off += k;
			break;
		case CS_DATA:
			off += data_input(s, c, p + off, n - off);
			break;
		case CS_BDAT:
			off += bdat_input(s, c, p + off, n - off);
			break;
		default:
			log_panic("sink: bad connection state %d",
			    (int)c->state);
		}
	}
	return off;
}

/* Bytes received on c: process them, keeping what cannot be yet. */
static void
conn_feed(struct sink *s, struct conn *c, const char *p, size_t n)
{
	size_t used;

	if (c->in.len > 0) {
		/* Bounded: a partial line, or what a hold left over. */
		if (buf_append(&c->in, p, n) < 0) {
			conn_close(s, c);
			return;
		}
		used = conn_input(s, c, c->in.data, c->in.len);
		if (c->closing || c->close_after_flush)
			buf_reset(&c->in);
		else
			buf_consume(&c->in, used);
		return;
	}
	used = conn_input(s, c, p, n);
	if (used < n && !c->closing && !c->close_after_flush &&
	    buf_append(&c->in, p + used, n - used) < 0)
		conn_close(s, c);
}

/* ---- completions ------------------------------------------------------ */

static void
refuse_connection(struct sink *s, int fd)
{
	char line[SINK_HOSTNAME_MAX + 64];
	int n;

	/* A best-effort one-line reply on a fresh socket; never blocks. */
	n = snprintf(line, sizeof(line), "421 4.7.0 %s too many connections\r\n",
	    s->o->hostname);
	if (n > 0)
		(void)send(fd, line, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
	close(fd);
}

static void
handle_accept(struct sink *s, unsigned li, int fd)
{
	struct listener *l = &s->lst[li];
	struct conn *c;
	unsigned code;

	if (s->stopping) {
		close(fd);
		return;
	}
	if (s->first_us == 0)
		s->first_us = s->now_us;
	if (s->nactive >= s->o->max_connections ||
	    s->free_head == UINT32_MAX) {
		s->conn_refused_cap++;
		l->refused_cap++;
		refuse_connection(s, fd);
		return;
	}
	c = &s->conns[s->free_head];
	assert(!c->in_use);
	assert(c->inflight == 0);
	s->free_head = c->next_free;
	s->nactive++;
	if (s->nactive > s->conn_max)
		s->conn_max = s->nactive;
	s->conn_accepted++;
	l->conns++;
	c->in_use = true;
	c->fd = fd;
	c->listener = (uint16_t)li;
	c->state = CS_CMD;
	c->closing = c->close_after_flush = false;
	c->recv_armed = c->send_armed = c->timer_armed = false;
	c->hold = c->store_wait = c->no_service = c->helo = false;
	c->messages = 0;
	c->tx_off = 0;
	c->serial = ++s->serial;
	c->rng = s->o->seed * 0xd1342543de82ef95ull ^ c->serial;
	txn_reset(c);
	if (s->o->delay_us[SINK_STAGE_CONNECT] > 0)
		hold_begin(s, c, s->o->delay_us[SINK_STAGE_CONNECT]);
	if ((code = mix(s, c, SINK_STAGE_CONNECT)) != 0) {
		s->conn_refused_connect++;
		inject(s, c, SINK_STAGE_CONNECT, code);
		c->no_service = true;
	} else {
		reply_str(s, c, s->greeting);
	}
	conn_kick(s, c);
}

static void
handle_recv(struct sink *s, struct conn *c, int res, uint32_t flags)
{
	unsigned bid;
	char *data;

	c->recv_armed = false;
	if ((res == -ENOBUFS || res == 0) && !c->closing) {
		/*
		 * No buffer free for the moment: try again. End of input: a
		 * client that half-closes after its last command still gets
		 * the replies, then the connection closes.
		 */
		if (res == 0)
			c->close_after_flush = true;
		c->inflight--;
		conn_kick(s, c);
		return;
	}
	if (res <= 0) {
		c->inflight--;
		conn_close(s, c);
		return;
	}
	data = uring_bufs_data(&s->bufs, flags, &bid);
	s->bytes += (uint64_t)res;
	s->lst[c->listener].bytes += (uint64_t)res;
	if (!c->closing)
		conn_feed(s, c, data, (size_t)res);
	/* What is kept was copied: the buffer goes back now. */
	uring_bufs_recycle(&s->bufs, bid);
	c->inflight--;
	if (c->closing) {
		if (c->inflight == 0)
			conn_free(s, c);
		return;
	}
	conn_kick(s, c);
}

static void
handle_send(struct sink *s, struct conn *c, int res)
{
	c->send_armed = false;
	c->inflight--;
	if (res < 0 || c->closing) {
		conn_close(s, c);
		return;
	}
	c->tx_off += (size_t)res;
	conn_kick(s, c);
}

/*
 * Nothing more to wait for: release the held replies and go on with the
 * input kept meanwhile (which may hold c again).
 */
static void
conn_resume(struct sink *s, struct conn *c)
{
	size_t used;

	if (c->closing || c->timer_armed || c->store_wait)
		return;
	c->hold = false;
	if (c->in.len > 0) {
		used = conn_input(s, c, c->in.data, c->in.len);
		if (c->closing || c->close_after_flush)
			buf_reset(&c->in);
		else
			buf_consume(&c->in, used);
	}
	conn_kick(s, c);
}

/* A delayed reply is due. */
static void
handle_timer(struct sink *s, struct conn *c)
{
	c->timer_armed = false;
	/* The in-flight count keeps c while its input is processed. */
	conn_resume(s, c);
	c->inflight--;
	if (c->closing && c->inflight == 0)
		conn_free(s, c);
}

static void
arm_accept(struct sink *s, unsigned li)
{
	struct io_uring_sqe *sqe = get_sqe(s);

	io_uring_prep_multishot_accept(sqe, s->lst[li].fd, NULL, NULL,
	    SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, uring_ud(OP_ACCEPT, li, 0));
	s->lst[li].accept_armed = true;
}

static void
arm_signal(struct sink *s)
{
	struct io_uring_sqe *sqe = get_sqe(s);

	io_uring_prep_read(sqe, s->sigfd, &s->si, sizeof(s->si), 0);
	io_uring_sqe_set_data64(sqe, uring_ud(OP_SIGNAL, 0, 0));
}

static void
dispatch(struct sink *s, uint64_t ud, int res, uint32_t flags)
{
	uint32_t idx = URING_UD_IDX(ud);
	struct conn *c = NULL;

	switch ((enum sink_op)URING_UD_OP(ud)) {
	case OP_RECV:
	case OP_SEND:
	case OP_TIMER:
		assert(idx < s->nslots);
		c = &s->conns[idx];
		/* A slot is reused only once nothing of it is in flight. */
		assert(c->in_use);
		assert(c->gen == URING_UD_GEN(ud));
		assert(c->inflight > 0);
		break;
	default:
		break;
	}
	switch ((enum sink_op)URING_UD_OP(ud)) {
	case OP_ACCEPT:
		assert(idx < s->nlisten);
		if (res >= 0) {
			handle_accept(s, idx, res);
		} else if (res != -ECANCELED && !s->stopping) {
			if (!s->o->quiet)
				log_warn("accept on %s: %s", s->lst[idx].addr,
				    strerror(-res));
		}
		if (!(flags & IORING_CQE_F_MORE)) {
			s->lst[idx].accept_armed = false;
			/* After an error (EMFILE...) wait a tick: no spin. */
			if (!s->stopping && res >= 0)
				arm_accept(s, idx);
			else if (!s->stopping)
				s->lst[idx].rearm = true;
		}
		break;
	case OP_RECV:
		handle_recv(s, c, res, flags);
		break;
	case OP_SEND:
		handle_send(s, c, res);
		break;
	case OP_TIMER:
		handle_timer(s, c);
		break;
	case OP_SIGNAL:
		if (res > 0) {
			s->signals++;
			s->stop_pending = true;
			arm_signal(s);
		}
		break;
	case OP_STORE:
		handle_store(s, idx, URING_UD_GEN(ud), res);
		break;
	case OP_CANCEL:
		break;
	default:
		log_panic("sink: bad operation %u in completion",
		    URING_UD_OP(ud));
	}
}

/* Stop: no new connections; sessions get 421 at their next command. */
static void
begin_stop(struct sink *s)
{
	struct io_uring_sqe *sqe;
	unsigned i;

	s->stopping = true;
	s->stop_us = s->now_us;
	for (i = 0; i < s->nlisten; i++) {
		if (s->lst[i].accept_armed) {
			sqe = get_sqe(s);
			io_uring_prep_cancel64(sqe, uring_ud(OP_ACCEPT, i, 0),
			    0);
			io_uring_sqe_set_data64(sqe, uring_ud(OP_CANCEL, 0, 0));
		}
		/* The kernel refuses new connections from here on. */
		close(s->lst[i].fd);
		s->lst[i].fd = -1;
	}
}

static void
tick(struct sink *s)
{
	unsigned i;

	if (s->o->duration_us > 0 && !s->stopping &&
	    s->now_us - s->start_us >= s->o->duration_us)
		s->stop_pending = true;
	if (s->log_fd >= 0 && s->logb.len > 0)
		log_flush(s);
	for (i = 0; i < s->nlisten; i++) {
		if (s->lst[i].rearm && !s->stopping) {
			s->lst[i].rearm = false;
			arm_accept(s, i);
		}
	}
}

/* ---- set-up and the loop ---------------------------------------------- */

static int
listen_socket(const struct sink_listen *l, char *name, size_t namelen)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[INET6_ADDRSTRLEN];
	int fd, one = 1, err;

	fd = socket(l->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd < 0)
		return -errno;
	/* No SO_REUSEPORT: a second sink on the port must fail, not share. */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		goto fail;
	/* Accepted sockets inherit it: replies are never held back. */
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
		goto fail;
	if (l->sa.ss_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
		goto fail;
	if (bind(fd, (const struct sockaddr *)&l->sa, l->salen) < 0 ||
	    listen(fd, SINK_BACKLOG) < 0 ||
	    getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
		goto fail;
	/* The name with the port actually bound (--listen ...:0). */
	if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *a6 = (const void *)&ss;

		inet_ntop(AF_INET6, &a6->sin6_addr, host, sizeof(host));
		snprintf(name, namelen, "[%s]:%u", host, ntohs(a6->sin6_port));
	} else {
		const struct sockaddr_in *a4 = (const void *)&ss;

		inet_ntop(AF_INET, &a4->sin_addr, host, sizeof(host));
		snprintf(name, namelen, "%s:%u", host, ntohs(a4->sin_port));
	}
	return fd;
fail:
	err = -errno;
	close(fd);
	return err;
}

/* As many descriptors as the hard limit allows: one per connection. */
static void
raise_nofile(struct sink *s)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			return;
	}
	if (rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur < (rlim_t)s->o->max_connections && !s->o->quiet)
		log_warn("only %llu file descriptors (ulimit -Hn): fewer "
		    "than %u connections at once", (unsigned long long)
		    rl.rlim_cur, s->o->max_connections);
}

static void
build_replies(struct sink *s)
{
	const char *h = s->o->hostname;

	snprintf(s->greeting, sizeof(s->greeting),
	    "220 %s %s sluice-bench sink\r\n", h, s->o->lmtp ? "LMTP" :
	    "ESMTP");
	snprintf(s->helo, sizeof(s->helo), "250 %s\r\n", h);
	snprintf(s->ehlo, sizeof(s->ehlo),
	    "250-%s\r\n"
	    "250-PIPELINING\r\n"
	    "250-SIZE %llu\r\n"
	    "250-8BITMIME\r\n"
	    "250-SMTPUTF8\r\n"
	    "250-ENHANCEDSTATUSCODES\r\n"
	    "250 CHUNKING\r\n", h, (unsigned long long)SINK_MSG_MAX);
}

static int
sink_setup(struct sink *s, const struct sink_opts *o)
{
	unsigned i;
	uint32_t j;
	int rc;

	s->o = o;
	s->sigfd = s->log_fd = s->store_dirfd = -1;
	for (i = 0; i < SINK_LISTEN_MAX; i++)
		s->lst[i].fd = -1;
	for (i = 0; i < o->nrule; i++)
		s->has_mix[o->rule[i].stage] = true;
	s->now_us = s->start_us = clock_mono_us();
	s->wall_start_us = clock_real_us();
	/* Ids: 24 bits of the start time, then a 40-bit sequence. */
	s->id_prefix = ((s->wall_start_us / 1000000u) & 0xffffffu) << 40;
	build_replies(s);
	raise_nofile(s);
	if ((s->lat = malloc(sizeof(*s->lat))) == NULL)
		return -ENOMEM;
	hist_init(s->lat);

	s->nslots = o->max_slots;
	s->conns = calloc(s->nslots, sizeof(*s->conns));
	if (s->conns == NULL) {
		log_warn("out of memory for %u connection slots", s->nslots);
		return -ENOMEM;
	}
	for (j = 0; j < s->nslots; j++) {
		s->conns[j].fd = -1;
		s->conns[j].next_free = j + 1 < s->nslots ? j + 1 : UINT32_MAX;
	}
	s->free_head = 0;

	if ((rc = uring_init(&s->ring, SINK_RING_ENTRIES, SINK_CQ_ENTRIES)) < 0) {
		log_warn("io_uring_queue_init: %s", strerror(-rc));
		return rc;
	}
	s->ring_ok = true;
	if ((rc = uring_bufs_setup(&s->ring, &s->bufs, SINK_RECV_BUFS,
	    SINK_RECV_BUF_SIZE, SINK_BGID)) < 0) {
		log_warn("provided buffers: %s", strerror(-rc));
		return rc;
	}

	if (o->log_path != NULL) {
		s->log_fd = open(o->log_path, O_WRONLY | O_CREAT | O_TRUNC |
		    O_APPEND | O_CLOEXEC, 0644);
		if (s->log_fd < 0) {
			rc = -errno;
			log_warn("--log %s: %s", o->log_path, strerror(errno));
			return rc;
		}
		if ((rc = buf_reserve(&s->logb, SINK_LOG_FLUSH + 4096)) < 0)
			return rc;
	}
	s->store_free = UINT32_MAX;
	if (o->store_dir != NULL) {
		s->store_dirfd = open(o->store_dir, O_RDONLY | O_DIRECTORY |
		    O_CLOEXEC);
		if (s->store_dirfd < 0) {
			rc = -errno;
			log_warn("--store %s: %s", o->store_dir,
			    strerror(errno));
			return rc;
		}
		rc = io_uring_register_files_sparse(&s->ring, SINK_STORE_JOBS);
		if (rc == 0) {
			s->store_ring = true;
			for (j = SINK_STORE_JOBS; j-- > 0;) {
				s->jobs[j].next_free = s->store_free;
				s->store_free = j;
			}
		} else if (!o->quiet) {
			log_warn("--store: no fixed files (%s): writing "
			    "synchronously", strerror(-rc));
		}
	}

	/* Signals arrive as reads on the ring, never as interruptions;
	 * blocked before "listening on" tells anyone we are up. */
	sigemptyset(&s->sigmask);
	sigaddset(&s->sigmask, SIGINT);
	sigaddset(&s->sigmask, SIGTERM);
	if (sigprocmask(SIG_BLOCK, &s->sigmask, NULL) < 0)
		return -errno;
	s->sigfd = signalfd(-1, &s->sigmask, SFD_CLOEXEC);
	if (s->sigfd < 0) {
		rc = -errno;
		log_warn("signalfd: %s", strerror(errno));
		return rc;
	}
	for (i = 0; i < o->nlisten; i++) {
		rc = listen_socket(&o->listen[i], s->lst[i].addr,
		    sizeof(s->lst[i].addr));
		if (rc < 0) {
			log_warn("cannot listen on %s: %s", o->listen[i].text,
			    strerror(-rc));
			return rc;
		}
		s->lst[i].fd = rc;
		s->nlisten = i + 1;
		if (!o->quiet)
			log_info("listening on %s%s", s->lst[i].addr,
			    o->lmtp ? " (LMTP)" : "");
	}

	arm_signal(s);
	for (i = 0; i < s->nlisten; i++)
		arm_accept(s, i);
	return 0;
}

/* Reap every completion first, then run the handlers. */
static void
sink_loop(struct sink *s)
{
	struct {
		uint64_t ud;
		int res;
		uint32_t flags;
	} *done;
	struct io_uring_cqe *cqe;
	struct __kernel_timespec ts;
	uint64_t wait_us, deadline = 0, end;
	unsigned head, n, i;
	int rc;

	done = malloc(SINK_CQE_BATCH * sizeof(*done));
	if (done == NULL)
		log_fatal("out of memory");
	s->next_tick_us = s->now_us + SINK_TICK_US;
	for (;;) {
		if (s->stop_pending && !s->stopping) {
			begin_stop(s);
			deadline = s->now_us + SINK_DRAIN_US;
		}
		if (s->stopping && s->signals >= 2)
			deadline = s->now_us;	/* asked twice: go now */
		if (s->stopping && (s->nactive == 0 || s->now_us >= deadline)) {
			/* Files promised to --store are written first. */
			if (s->store_inflight == 0 ||
			    s->now_us >= s->stop_us + SINK_STORE_WAIT_US)
				break;
		}
		wait_us = s->next_tick_us > s->now_us ?
		    s->next_tick_us - s->now_us : 0;
		if (s->stopping && deadline > s->now_us &&
		    deadline - s->now_us < wait_us)
			wait_us = deadline - s->now_us;
		if (s->o->duration_us > 0 && !s->stopping) {
			end = s->start_us + s->o->duration_us;
			if (end > s->now_us && end - s->now_us < wait_us)
				wait_us = end - s->now_us;
		}
		ts.tv_sec = (long long)(wait_us / 1000000u);
		ts.tv_nsec = (long long)(wait_us % 1000000u) * 1000;
		rc = io_uring_submit_and_wait_timeout(&s->ring, &cqe, 1, &ts,
		    NULL);
		if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY)
			log_fatal("io_uring wait: %s", strerror(-rc));
		n = 0;
		io_uring_for_each_cqe(&s->ring, head, cqe) {
			done[n].ud = cqe->user_data;
			done[n].res = cqe->res;
			done[n].flags = cqe->flags;
			if (++n == SINK_CQE_BATCH)
				break;
		}
		io_uring_cq_advance(&s->ring, n);
		s->now_us = clock_mono_us();
		for (i = 0; i < n; i++)
			dispatch(s, done[i].ud, done[i].res, done[i].flags);
		if (s->now_us >= s->next_tick_us ||
		    (s->o->duration_us > 0 &&
		    s->now_us - s->start_us >= s->o->duration_us)) {
			tick(s);
			s->next_tick_us = s->now_us + SINK_TICK_US;
		}
	}
	free(done);
	if (!s->stopping)
		s->stop_us = s->now_us;
}

static void
sink_teardown(struct sink *s)
{
	uint32_t j;
	unsigned i;

	/* Exiting the ring cancels whatever is still in flight. */
	if (s->ring_ok)
		io_uring_queue_exit(&s->ring);
	if (s->log_fd >= 0) {
		/* Close lines for the connections still open. */
		for (j = 0; j < s->nslots; j++)
			if (s->conns[j].in_use)
				log_close(s, &s->conns[j]);
		log_flush(s);
		close(s->log_fd);
	}
	for (j = 0; s->conns != NULL && j < s->nslots; j++) {
		struct conn *c = &s->conns[j];

		if (c->fd >= 0)
			close(c->fd);
		buf_free(&c->in);
		buf_free(&c->out);
		buf_free(&c->tx);
		buf_free(&c->msg);
		buf_free(&c->env);
		if (c->sha != NULL) {
			wc_Sha256Free(c->sha);
			free(c->sha);
		}
	}
	for (i = 0; i < SINK_STORE_JOBS; i++)
		buf_free(&s->jobs[i].msg);
	for (i = 0; i < SINK_LISTEN_MAX; i++)
		if (s->lst[i].fd >= 0)
			close(s->lst[i].fd);
	if (s->store_dirfd >= 0)
		close(s->store_dirfd);
	/*
	 * SIGINT and SIGTERM stay blocked: unblocking them would let one sent
	 * while the sink stops on its own (--expect) kill the process before
	 * it exits 0. The caller is about to exit anyway.
	 */
	if (s->sigfd >= 0)
		close(s->sigfd);
	uring_bufs_free(&s->bufs);
	free(s->conns);
	free(s->lat);
	free(s->per_sec);
	buf_free(&s->logb);
}

/* ---- the report ------------------------------------------------------- */

/* The facts both report formats print. */
struct sink_facts {
	double elapsed_s;	/* first connection to last message */
	double runtime_s;	/* start to stop */
	double rate;		/* messages / elapsed_s */
	double p50, p90, p99, p999, max;	/* milliseconds */
};

static void
facts(const struct sink *s, struct sink_facts *f)
{
	memset(f, 0, sizeof(*f));
	if (s->messages > 0 && s->last_msg_us > s->first_us)
		f->elapsed_s = (double)(s->last_msg_us - s->first_us) / 1e6;
	f->runtime_s = (double)(s->stop_us - s->start_us) / 1e6;
	if (f->elapsed_s > 0)
		f->rate = (double)s->messages / f->elapsed_s;
	if (s->lat->count > 0) {
		f->p50 = (double)hist_percentile(s->lat, 50) / 1e3;
		f->p90 = (double)hist_percentile(s->lat, 90) / 1e3;
		f->p99 = (double)hist_percentile(s->lat, 99) / 1e3;
		f->p999 = (double)hist_percentile(s->lat, 99.9) / 1e3;
		f->max = (double)s->lat->max / 1e3;
	}
}

static void
report_text(const struct sink *s, FILE *fp)
{
	struct sink_facts f;
	const char *sep = "";
	unsigned st, code, i;
	size_t j, k;

	facts(s, &f);
	fprintf(fp, "sluice-bench sink report (%s)\n",
	    s->o->lmtp ? "LMTP" : "SMTP");
	fprintf(fp, "messages:     %llu accepted, %llu refused by the reply "
	    "mix, %llu dropped mid-DATA, %llu too big\n",
	    (unsigned long long)s->messages,
	    (unsigned long long)s->refused_total,
	    (unsigned long long)s->dropped, (unsigned long long)s->too_big);
	fprintf(fp, "rate:         %.1f msg/s over %.3f s (first connection "
	    "to last message); ran %.3f s\n", f.rate, f.elapsed_s,
	    f.runtime_s);
	fprintf(fp, "per second:  ");
	/* Runs of equal counts as COUNT*N, to keep the line short. */
	for (j = 0; j < s->nsec; j = k) {
		for (k = j + 1; k < s->nsec && s->per_sec[k] == s->per_sec[j];
		    k++)
			;
		if (k - j > 1)
			fprintf(fp, " %u*%zu", s->per_sec[j], k - j);
		else
			fprintf(fp, " %u", s->per_sec[j]);
	}
	fprintf(fp, "%s\n", s->nsec == 0 ? " none" : s->sec_full ?
	    " (cut at a week)" : "");
	if (s->refused_total > 0) {
		fprintf(fp, "refused:      ");
		for (st = 0; st < SINK_MIX_STAGES; st++)
			for (code = 0; code < 200; code++)
				if (s->refused[st][code] > 0) {
					fprintf(fp, "%s%s:%u %llu", sep,
					    sink_stage_name((enum sink_stage)st),
					    code + 400, (unsigned long long)
					    s->refused[st][code]);
					sep = ", ";
				}
		fprintf(fp, "\n");
	}
	fprintf(fp, "connections:  %llu accepted, %llu refused at connect, "
	    "%llu refused over the cap, %llu at most at once\n",
	    (unsigned long long)s->conn_accepted,
	    (unsigned long long)s->conn_refused_connect,
	    (unsigned long long)s->conn_refused_cap,
	    (unsigned long long)s->conn_max);
	fprintf(fp, "bytes:        %llu received\n",
	    (unsigned long long)s->bytes);
	if (s->lat->count > 0)
		fprintf(fp, "latency ms:   p50 %.3f  p90 %.3f  p99 %.3f  "
		    "p99.9 %.3f  max %.3f  (%llu with X-Sluice-Bench, %llu "
		    "without)\n", f.p50, f.p90, f.p99, f.p999, f.max,
		    (unsigned long long)s->lat->count,
		    (unsigned long long)s->no_header);
	else
		fprintf(fp, "latency ms:   none (%llu messages without "
		    "X-Sluice-Bench)\n", (unsigned long long)s->no_header);
	for (i = 0; i < s->nlisten; i++)
		fprintf(fp, "listener:     %s: %llu connections, %llu refused "
		    "over the cap, %llu messages, %llu bytes\n",
		    s->lst[i].addr, (unsigned long long)s->lst[i].conns,
		    (unsigned long long)s->lst[i].refused_cap,
		    (unsigned long long)s->lst[i].messages,
		    (unsigned long long)s->lst[i].bytes);
	fprintf(fp, "protocol:     %llu errors answered, %llu messages with "
	    "bare CR, %llu with bare LF\n", (unsigned long long)s->errors,
	    (unsigned long long)s->bare_cr, (unsigned long long)s->bare_lf);
	if (s->store_dirfd >= 0)
		fprintf(fp, "store:        %llu written, %llu errors\n",
		    (unsigned long long)s->stored,
		    (unsigned long long)s->store_errors);
	if (s->log_fd >= 0)
		fprintf(fp, "log:          %llu errors\n",
		    (unsigned long long)s->log_errors);
}

/* json_object_set_new, failing the report rather than the process. */
static int
jset(json_t *obj, const char *key, json_t *v)
{
	return v == NULL ? -1 : json_object_set_new(obj, key, v);
}

static json_t *
jint(uint64_t v)
{
	return json_integer((json_int_t)v);
}

static json_t *
jms(const struct sink *s, double v)
{
	return s->lat->count > 0 ? json_real(v) : json_null();
}

static int
report_json(const struct sink *s, FILE *fp)
{
	json_t *root, *o, *a;
	struct sink_facts f;
	char key[32];
	unsigned st, code, i;
	size_t j;
	int rc = 0;

	facts(s, &f);
	if ((root = json_object()) == NULL)
		return -1;
	rc |= jset(root, "protocol", json_string(s->o->lmtp ? "lmtp" :
	    "smtp"));
	rc |= jset(root, "messages", jint(s->messages));
	o = json_object();
	for (st = 0; o != NULL && st < SINK_MIX_STAGES; st++)
		for (code = 0; code < 200; code++)
			if (s->refused[st][code] > 0) {
				snprintf(key, sizeof(key), "%s:%u",
				    sink_stage_name((enum sink_stage)st),
				    code + 400);
				rc |= jset(o, key, jint(s->refused[st][code]));
			}
	rc |= jset(root, "refused", o);
	rc |= jset(root, "refused_total", jint(s->refused_total));
	rc |= jset(root, "dropped", jint(s->dropped));
	rc |= jset(root, "too_big", jint(s->too_big));
	if ((o = json_object()) != NULL) {
		rc |= jset(o, "accepted", jint(s->conn_accepted));
		rc |= jset(o, "refused_connect", jint(s->conn_refused_connect));
		rc |= jset(o, "refused_cap", jint(s->conn_refused_cap));
		rc |= jset(o, "max_concurrent", jint(s->conn_max));
	}
	rc |= jset(root, "connections", o);
	rc |= jset(root, "bytes", jint(s->bytes));
	rc |= jset(root, "elapsed_s", json_real(f.elapsed_s));
	rc |= jset(root, "runtime_s", json_real(f.runtime_s));
	/* CLOCK_MONOTONIC is one clock for every process on the machine:
	 * a harness can measure end to end up to the last message without
	 * counting the sink's wait for idle connections to close. */
	rc |= jset(root, "last_message_mono_s",
	    json_real((double)s->last_msg_us / 1e6));
	rc |= jset(root, "rate", json_real(f.rate));
	a = json_array();
	for (j = 0; a != NULL && j < s->nsec; j++)
		rc |= json_array_append_new(a, jint(s->per_sec[j]));
	rc |= jset(root, "per_second", a);
	if ((o = json_object()) != NULL) {
		rc |= jset(o, "p50", jms(s, f.p50));
		rc |= jset(o, "p90", jms(s, f.p90));
		rc |= jset(o, "p99", jms(s, f.p99));
		rc |= jset(o, "p99.9", jms(s, f.p999));
		rc |= jset(o, "max", jms(s, f.max));
		rc |= jset(o, "count", jint(s->lat->count));
	}
	rc |= jset(root, "latency_ms", o);
	rc |= jset(root, "without_header", jint(s->no_header));
	a = json_array();
	for (i = 0; a != NULL && i < s->nlisten; i++) {
		if ((o = json_object()) == NULL) {
			rc = -1;
			break;
		}
		rc |= jset(o, "address", json_string(s->lst[i].addr));
		rc |= jset(o, "connections", jint(s->lst[i].conns));
		rc |= jset(o, "refused_cap", jint(s->lst[i].refused_cap));
		rc |= jset(o, "messages", jint(s->lst[i].messages));
		rc |= jset(o, "bytes", jint(s->lst[i].bytes));
		rc |= json_array_append_new(a, o);
	}
	rc |= jset(root, "listeners", a);
	rc |= jset(root, "protocol_errors", jint(s->errors));
	rc |= jset(root, "bare_cr", jint(s->bare_cr));
	rc |= jset(root, "bare_lf", jint(s->bare_lf));
	if (s->store_dirfd >= 0 && (o = json_object()) != NULL) {
		rc |= jset(o, "written", jint(s->stored));
		rc |= jset(o, "errors", jint(s->store_errors));
		rc |= jset(root, "store", o);
	}
	if (s->log_fd >= 0)
		rc |= jset(root, "log_errors", jint(s->log_errors));
	if (rc == 0)
		rc = json_dumpf(root, fp, JSON_INDENT(2) | JSON_PRESERVE_ORDER |
		    JSON_REAL_PRECISION(12));
	if (rc == 0)
		fputc('\n', fp);
	json_decref(root);
	return rc == 0 ? 0 : -1;
}

/* ---- entry ------------------------------------------------------------ */

int
bench_sink_main(int argc, char **argv)
{
	struct sink_opts o;
	struct sink *s;
	char why[512];
	int rc = 1;

	log_progname = "sluice-bench sink";
	sink_opts_init(&o);
	switch (sink_opts_parse(&o, argc, argv, why, sizeof(why))) {
	case SINK_PARSE_OK:
		break;
	case SINK_PARSE_HELP:
		fputs(sink_usage, stdout);
		return 0;
	case SINK_PARSE_ERROR:
		fprintf(stderr, "sluice-bench sink: %s\n"
		    "Run `sluice-bench sink --help` for the options.\n", why);
		return 2;
	default:
		log_panic("bad parse result");
	}
	if (o.quiet)
		log_min_level = LOG_WARN;
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		log_warn("out of memory");
		return 1;
	}
	if (sink_setup(s, &o) < 0)
		goto fail;
	sink_loop(s);
	if (o.json ? report_json(s, stdout) < 0 : (report_text(s, stdout), 0))
		log_warn("cannot write the report");
	fflush(stdout);
	rc = 0;
fail:
	sink_teardown(s);
	free(s);
	return rc;
}
