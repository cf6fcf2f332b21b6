/*
 * Description: the options of `sluice-bench sink`: the command line (required
 * --listen, defaults, the connection cap raising the slots, each bad value
 * refused with the option named), the reply mix (stages, codes 400-599,
 * shares per stage at most 100% across repeated --reply, the ranges each
 * rule takes in the draw) and the delays (stages, durations, limits).
 */
#include <stdarg.h>
#include <string.h>

#include "../../bench/bench_sink.h"
#include "check.h"

#define ARGS_MAX 32

/* Parse a NULL-terminated argument list given after "sink". */
static enum sink_parse_result
parse(struct sink_opts *o, char *why, size_t whylen, ...)
{
	char *argv[ARGS_MAX + 2];
	int argc = 0;
	va_list ap;
	char *a;

	argv[argc++] = "sink";
	va_start(ap, whylen);
	while ((a = va_arg(ap, char *)) != NULL && argc <= ARGS_MAX)
		argv[argc++] = a;
	va_end(ap);
	argv[argc] = NULL;
	sink_opts_init(o);
	return sink_opts_parse(o, argc, argv, why, whylen);
}

static void
test_command_line(void)
{
	struct sink_opts o;
	char why[256];

	printf("RUN command line\n");
	CHECK(parse(&o, why, sizeof(why), "--listen", "127.0.0.1:2525", NULL) ==
	    SINK_PARSE_OK);
	CHECK(o.nlisten == 1);
	CHECK(strcmp(o.listen[0].text, "127.0.0.1:2525") == 0);
	CHECK(o.max_slots == SINK_SLOTS_DEFAULT);
	CHECK(o.max_connections == SINK_SLOTS_DEFAULT);
	CHECK(o.seed == SINK_SEED_DEFAULT);
	CHECK(strcmp(o.hostname, "sink.invalid") == 0);
	CHECK(!o.lmtp && !o.json && !o.quiet);
	CHECK(o.expect == 0 && o.duration_us == 0 && o.drop_ppm == 0);
	CHECK(o.store_dir == NULL && o.log_path == NULL && o.nrule == 0);

	CHECK(parse(&o, why, sizeof(why), "--listen", "127.0.0.1:25",
	    "--listen", "[::1]:2525", "--lmtp", "--json", "--quiet",
	    "--expect", "1000", "--duration", "1m", "--drop-data", "0.5%",
	    "--store", "/tmp/s", "--log", "/tmp/l", "--hostname", "mx.test",
	    "--seed", "42", NULL) == SINK_PARSE_OK);
	CHECK(o.nlisten == 2);
	CHECK(o.lmtp && o.json && o.quiet);
	CHECK(o.expect == 1000);
	CHECK(o.duration_us == 60000000ull);
	CHECK(o.drop_ppm == 5000);
	CHECK(strcmp(o.store_dir, "/tmp/s") == 0);
	CHECK(strcmp(o.log_path, "/tmp/l") == 0);
	CHECK(strcmp(o.hostname, "mx.test") == 0);
	CHECK(o.seed == 42);

	/* The cap is kept within the slots by raising the slots. */
	CHECK(parse(&o, why, sizeof(why), "--listen", "127.0.0.1:25",
	    "--max-slots", "100", "--max-connections", "500", NULL) ==
	    SINK_PARSE_OK);
	CHECK(o.max_slots == 500 && o.max_connections == 500);
	CHECK(parse(&o, why, sizeof(why), "--listen", "127.0.0.1:25",
	    "--max-connections", "10", NULL) == SINK_PARSE_OK);
	CHECK(o.max_slots == SINK_SLOTS_DEFAULT && o.max_connections == 10);
	CHECK(parse(&o, why, sizeof(why), "--listen", "127.0.0.1:25",
	    "--max-slots", "300", NULL) == SINK_PARSE_OK);
	CHECK(o.max_slots == 300 && o.max_connections == 300);

	CHECK(parse(&o, why, sizeof(why), "--help", NULL) == SINK_PARSE_HELP);
	CHECK(strstr(sink_usage, "--reply SPEC") != NULL);
	CHECK(strstr(sink_usage, "--max-slots N") != NULL);
}

static void
test_command_line_errors(void)
{
	static const struct {
		const char *a, *b, *why;	/* option, value, text of why */
	} bad[] = {
		{ "--listen", "localhost:25", "--listen" },
		{ "--listen", "127.0.0.1", "--listen" },
		{ "--expect", "0", "--expect" },
		{ "--expect", "-5", "--expect" },
		{ "--expect", "12x", "--expect" },
		{ "--duration", "0", "--duration" },
		{ "--duration", "5x", "--duration" },
		{ "--max-connections", "0", "--max-connections" },
		{ "--max-slots", "99999999999", "--max-slots" },
		{ "--drop-data", "5", "--drop-data" },
		{ "--drop-data", "101%", "--drop-data" },
		{ "--hostname", "two words", "--hostname" },
		{ "--hostname", "", "--hostname" },
		{ "--seed", "abc", "--seed" },
		{ "--reply", "rcpt:451", "--reply" },
		{ "--delay", "rcpt", "--delay" },
		{ "--bogus", NULL, "--bogus" },
		{ "stray", NULL, "stray" },
	};
	struct sink_opts o;
	char why[256];
	size_t i;

	printf("RUN command line errors\n");
	CHECK(parse(&o, why, sizeof(why), NULL) == SINK_PARSE_ERROR);
	CHECK(strstr(why, "--listen") != NULL);
	CHECK(parse(&o, why, sizeof(why), "--json", NULL) == SINK_PARSE_ERROR);
	CHECK(parse(&o, why, sizeof(why), "--listen", NULL) ==
	    SINK_PARSE_ERROR);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why[0] = '\0';
		CHECK(parse(&o, why, sizeof(why), "--listen", "127.0.0.1:25",
		    bad[i].a, bad[i].b, NULL) == SINK_PARSE_ERROR);
		if (strstr(why, bad[i].why) == NULL)
			fprintf(stderr, "case %zu: why '%s' lacks '%s'\n", i,
			    why, bad[i].why);
		CHECK(strstr(why, bad[i].why) != NULL);
	}
}

static void
test_reply_mix(void)
{
	struct sink_opts o;
	char why[256];

	printf("RUN reply mix\n");
	sink_opts_init(&o);
	CHECK(sink_parse_reply(&o, "rcpt:451=5%,data:550=1%,mail:421=0.1%",
	    why, sizeof(why)) == 0);
	CHECK(o.nrule == 3);
	CHECK(o.rule[0].stage == SINK_STAGE_RCPT && o.rule[0].code == 451 &&
	    o.rule[0].ppm == 50000);
	CHECK(o.rule[1].stage == SINK_STAGE_DATA && o.rule[1].code == 550 &&
	    o.rule[1].ppm == 10000);
	CHECK(o.rule[2].stage == SINK_STAGE_MAIL && o.rule[2].code == 421 &&
	    o.rule[2].ppm == 1000);
	/* A second value adds rules; names are case-blind, aliases work. */
	CHECK(sink_parse_reply(&o, "RCPT:550=1%,greeting:421=10%,"
	    "ehlo:554=2%,bdat:452=3%", why, sizeof(why)) == 0);
	CHECK(o.nrule == 7);
	CHECK(o.rule[4].stage == SINK_STAGE_CONNECT);
	CHECK(o.rule[5].stage == SINK_STAGE_HELO);
	CHECK(o.rule[6].stage == SINK_STAGE_BDAT);

	/* Each rule of a stage takes the next range of the draw. */
	CHECK(sink_mix_pick(&o, SINK_STAGE_RCPT, 0) == 451);
	CHECK(sink_mix_pick(&o, SINK_STAGE_RCPT, 49999) == 451);
	CHECK(sink_mix_pick(&o, SINK_STAGE_RCPT, 50000) == 550);
	CHECK(sink_mix_pick(&o, SINK_STAGE_RCPT, 59999) == 550);
	CHECK(sink_mix_pick(&o, SINK_STAGE_RCPT, 60000) == 0);
	CHECK(sink_mix_pick(&o, SINK_STAGE_RCPT, SINK_PPM - 1) == 0);
	CHECK(sink_mix_pick(&o, SINK_STAGE_MAIL, 999) == 421);
	CHECK(sink_mix_pick(&o, SINK_STAGE_MAIL, 1000) == 0);
	CHECK(sink_mix_pick(&o, SINK_STAGE_CONNECT, 99999) == 421);
	CHECK(sink_mix_pick(&o, SINK_STAGE_HELO, 19999) == 554);
	CHECK(sink_mix_pick(&o, SINK_STAGE_BDAT, 29999) == 452);
	CHECK(sink_mix_pick(&o, SINK_STAGE_BDAT, 30000) == 0);

	sink_opts_init(&o);
	CHECK(sink_parse_reply(&o, "data:451=100%", why, sizeof(why)) == 0);
	CHECK(sink_mix_pick(&o, SINK_STAGE_DATA, SINK_PPM - 1) == 451);
	CHECK(sink_mix_pick(&o, SINK_STAGE_RCPT, 0) == 0);
	CHECK(sink_mix_pick(&o, SINK_STAGE_BDAT, 0) == 0);

	CHECK(strcmp(sink_stage_name(SINK_STAGE_CONNECT), "connect") == 0);
	CHECK(strcmp(sink_stage_name(SINK_STAGE_BDAT), "bdat") == 0);
	CHECK(strcmp(sink_stage_name(SINK_STAGE_QUIT), "quit") == 0);
}

static void
test_reply_mix_errors(void)
{
	static const char *const bad[] = {
		"",			/* empty */
		"rcpt",			/* no code */
		"rcpt:451",		/* no share */
		"rcpt=5%",		/* no stage */
		"vrfy:550=1%",		/* not a stage */
		"rset:451=1%",		/* a delay stage, not a mix stage */
		"quit:421=1%",
		"rcpt:250=1%",		/* not a failure */
		"rcpt:399=1%",
		"rcpt:600=1%",
		"rcpt:45x=1%",
		"rcpt:=1%",
		"rcpt:-451=1%",
		"rcpt:451=5",		/* no percent sign */
		"rcpt:451=x%",
		"rcpt:451=101%",
		"rcpt:451=60%,rcpt:550=50%",	/* 110% of one stage */
	};
	struct sink_opts o;
	char why[256], big[SINK_SPEC_MAX + 16];
	size_t i;
	int n;

	printf("RUN reply mix errors\n");
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		sink_opts_init(&o);
		why[0] = '\0';
		if (sink_parse_reply(&o, bad[i], why, sizeof(why)) != -1)
			fprintf(stderr, "accepted: '%s'\n", bad[i]);
		CHECK(sink_parse_reply(&o, bad[i], why, sizeof(why)) == -1);
		CHECK(strncmp(why, "--reply", 7) == 0);
	}
	/* Shares add up across --reply options too. */
	sink_opts_init(&o);
	CHECK(sink_parse_reply(&o, "data:451=70%", why, sizeof(why)) == 0);
	CHECK(sink_parse_reply(&o, "data:550=31%", why, sizeof(why)) == -1);
	CHECK(strstr(why, "100%") != NULL);
	CHECK(sink_parse_reply(&o, "data:550=30%", why, sizeof(why)) == 0);
	CHECK(o.nrule == 2);
	/* No more rules than there is room for. */
	sink_opts_init(&o);
	for (i = 0; i < SINK_RULES_MAX; i++)
		CHECK(sink_parse_reply(&o, "mail:451=1%", why, sizeof(why)) ==
		    0);
	CHECK(sink_parse_reply(&o, "rcpt:451=1%", why, sizeof(why)) == -1);
	CHECK(o.nrule == SINK_RULES_MAX);
	/* Nor a value longer than SINK_SPEC_MAX. */
	sink_opts_init(&o);
	for (n = 0; n + 12 < (int)sizeof(big) - 1; n += 12)
		memcpy(big + n, "rcpt:451=0%,", 12);
	big[n] = '\0';
	CHECK(sink_parse_reply(&o, big, why, sizeof(why)) == -1);
}

static void
test_delays(void)
{
	static const char *const bad[] = {
		"", "rcpt", "rcpt:", "rcpt:5x", "vrfy:5ms", ":5ms", "rcpt:-5ms",
		"rcpt:2h",	/* over SINK_DELAY_MAX_US */
	};
	struct sink_opts o;
	char why[256];
	size_t i;

	printf("RUN delays\n");
	sink_opts_init(&o);
	CHECK(sink_parse_delay(&o, "greeting:100ms,rcpt:5ms,data:50ms", why,
	    sizeof(why)) == 0);
	CHECK(o.delay_us[SINK_STAGE_CONNECT] == 100000);
	CHECK(o.delay_us[SINK_STAGE_RCPT] == 5000);
	CHECK(o.delay_us[SINK_STAGE_DATA] == 50000);
	CHECK(o.delay_us[SINK_STAGE_MAIL] == 0);
	/* Every stage has a delay; a later value wins. */
	CHECK(sink_parse_delay(&o, "connect:1s,helo:1ms,mail:2ms,bdat:3ms,"
	    "rset:4ms,noop:5ms,quit:6ms,rcpt:7ms,data:1h", why,
	    sizeof(why)) == 0);
	CHECK(o.delay_us[SINK_STAGE_CONNECT] == 1000000);
	CHECK(o.delay_us[SINK_STAGE_HELO] == 1000);
	CHECK(o.delay_us[SINK_STAGE_MAIL] == 2000);
	CHECK(o.delay_us[SINK_STAGE_BDAT] == 3000);
	CHECK(o.delay_us[SINK_STAGE_RSET] == 4000);
	CHECK(o.delay_us[SINK_STAGE_NOOP] == 5000);
	CHECK(o.delay_us[SINK_STAGE_QUIT] == 6000);
	CHECK(o.delay_us[SINK_STAGE_RCPT] == 7000);
	CHECK(o.delay_us[SINK_STAGE_DATA] == SINK_DELAY_MAX_US);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why[0] = '\0';
		if (sink_parse_delay(&o, bad[i], why, sizeof(why)) != -1)
			fprintf(stderr, "accepted: '%s'\n", bad[i]);
		CHECK(sink_parse_delay(&o, bad[i], why, sizeof(why)) == -1);
		CHECK(strncmp(why, "--delay", 7) == 0);
	}
}

int
main(void)
{
	test_command_line();
	test_command_line_errors();
	test_reply_mix();
	test_reply_mix_errors();
	test_delays();
	return check_done();
}
