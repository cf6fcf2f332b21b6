/*
 * bench_sink.h - the options of `sluice-bench sink`, exposed so that their
 * parsing can be tested on its own (tests/unit/t_bench_sink_opts.c).
 *
 * The sink itself is bench_sink_main() in bench.h. Everything here is pure:
 * no I/O, no allocation, nothing kept past the call but pointers into argv
 * (which must outlive the options).
 *
 * Reply mix grammar (--reply, repeatable, rules accumulate):
 *   SPEC  := RULE ("," RULE)*
 *   RULE  := STAGE ":" CODE "=" PERCENT      e.g. rcpt:451=5%
 *   STAGE := connect | greeting | helo | ehlo | lhlo | mail | rcpt | data |
 *            bdat
 *   CODE  := 400..599
 * The shares of one stage add up to at most 100%.
 *
 * Delay grammar (--delay, repeatable, a later value for a stage wins):
 *   SPEC  := ITEM ("," ITEM)*
 *   ITEM  := STAGE ":" DURATION               e.g. rcpt:5ms
 *   STAGE := the reply-mix stages, plus rset | noop | quit
 *   DURATION as bench_parse_duration(), at most SINK_DELAY_MAX_US.
 */
#ifndef SLUICE_BENCH_SINK_H
#define SLUICE_BENCH_SINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define SINK_LISTEN_MAX 16		/* --listen given at most this often */
#define SINK_RULES_MAX 64		/* reply-mix rules in all */
#define SINK_SPEC_MAX 4096		/* length of one --reply/--delay value */
#define SINK_SLOTS_DEFAULT 20000
#define SINK_SLOTS_MAX (1u << 22)	/* user_data holds 24 bits of slot */
#define SINK_SEED_DEFAULT 1
#define SINK_HOSTNAME_DEFAULT "sink.invalid"
#define SINK_HOSTNAME_MAX 255
#define SINK_DELAY_MAX_US (3600ull * 1000000u)	/* one hour */
#define SINK_PPM 1000000u		/* 100% in parts per million */

/*
 * The points where the sink can misbehave. Stages up to SINK_STAGE_BDAT
 * take a reply mix; all of them take a delay.
 */
enum sink_stage {
	SINK_STAGE_CONNECT = 0,	/* the greeting */
	SINK_STAGE_HELO,	/* EHLO, HELO, LHLO */
	SINK_STAGE_MAIL,
	SINK_STAGE_RCPT,
	SINK_STAGE_DATA,	/* the reply after the end of data */
	SINK_STAGE_BDAT,	/* the reply to the LAST chunk */
	SINK_STAGE_RSET,
	SINK_STAGE_NOOP,
	SINK_STAGE_QUIT,
	SINK_STAGE_COUNT,
};
#define SINK_MIX_STAGES (SINK_STAGE_BDAT + 1)

struct sink_rule {
	enum sink_stage stage;
	uint16_t code;		/* 400..599 */
	uint32_t ppm;		/* share of the stage's replies */
};

struct sink_listen {
	struct sockaddr_storage sa;
	socklen_t salen;
	const char *text;	/* as given, for messages */
};

struct sink_opts {
	struct sink_listen listen[SINK_LISTEN_MAX];
	unsigned nlisten;
	uint64_t expect;		/* stop after this many; 0: never */
	uint64_t duration_us;		/* stop after this long; 0: never */
	bool json;
	bool lmtp;
	bool quiet;
	struct sink_rule rule[SINK_RULES_MAX];
	unsigned nrule;
	uint64_t delay_us[SINK_STAGE_COUNT];
	uint32_t max_connections;	/* concurrent; <= max_slots */
	uint32_t drop_ppm;		/* --drop-data */
	const char *store_dir;		/* NULL: not stored */
	const char *log_path;		/* NULL: no log */
	const char *hostname;
	uint64_t seed;
	uint32_t max_slots;
};

enum sink_parse_result {
	SINK_PARSE_OK = 0,
	SINK_PARSE_HELP = 1,		/* --help: print sink_usage, exit 0 */
	SINK_PARSE_ERROR = -1,		/* why says what; exit 2 */
};

extern const char sink_usage[];

/* Defaults: no listener, no mix, no delay, the default slots and seed. */
void sink_opts_init(struct sink_opts *o);

/*
 * Parse the sink's command line (argv[0] is "sink") into o, which must
 * have been through sink_opts_init(). Requires at least one --listen.
 * --max-connections above --max-slots raises the slots to match; without
 * it the cap is the number of slots. On SINK_PARSE_ERROR, why holds one
 * line (no newline) naming the offending option.
 */
enum sink_parse_result sink_opts_parse(struct sink_opts *o, int argc,
    char **argv, char *why, size_t whylen);

/* Add the rules of one --reply value. 0, or -1 with why filled in. */
int sink_parse_reply(struct sink_opts *o, const char *spec, char *why,
    size_t whylen);

/* Set the delays of one --delay value. 0, or -1 with why filled in. */
int sink_parse_delay(struct sink_opts *o, const char *spec, char *why,
    size_t whylen);

/* "connect", "helo", ... as reports print them. */
const char *sink_stage_name(enum sink_stage st);

/*
 * The reply code the mix picks for stage st given a uniform draw in
 * [0, SINK_PPM): rules of the stage take consecutive ranges in the order
 * given, so with rcpt:451=5%,rcpt:550=1% draws below 50000 give 451, draws
 * below 60000 give 550. 0 means "reply normally".
 */
unsigned sink_mix_pick(const struct sink_opts *o, enum sink_stage st,
    uint32_t draw);

#endif
