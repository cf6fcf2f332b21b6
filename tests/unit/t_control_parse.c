/*
 * Description: the control socket's request line (engine/control_parse.c).
 * Every verb is read with and without CR, extra blanks and text after the
 * LF; queue ids of either case parse to the same number; an empty line, a
 * NUL byte, an unknown verb, a missing, extra or malformed queue id are
 * refused with a one-line printable reason that quotes the verb only when
 * it is short and printable; a reason longer than the caller's buffer is
 * cut, never overrun.
 */
#include "check.h"
#include "../../engine/control_parse.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

#define NELEM(a)	(sizeof(a) / sizeof((a)[0]))
#define ID		"018BD2C3A4F50001"
#define ID_NUM		0x018BD2C3A4F50001ull

static const struct good {
	const char *line;
	size_t len;		/* 0: strlen(line) */
	enum control_verb verb;
	uint64_t qid;
} good[] = {
	{ "sync\n", 0, CONTROL_SYNC, 0 },
	{ "sync", 0, CONTROL_SYNC, 0 },
	{ "flush\r\n", 0, CONTROL_FLUSH, 0 },
	{ "  flush \t\n", 0, CONTROL_FLUSH, 0 },
	{ "delete " ID "\n", 0, CONTROL_DELETE, ID_NUM },
	{ "hold\t" ID "\r\n", 0, CONTROL_HOLD, ID_NUM },
	{ "release  018bd2c3a4f50001 \n", 0, CONTROL_RELEASE, ID_NUM },
	{ "bounce " ID, 0, CONTROL_BOUNCE, ID_NUM },
	/* Only the first line counts. */
	{ "sync\nflush now\n", 0, CONTROL_SYNC, 0 },
	{ "flush\n\0junk", 11, CONTROL_FLUSH, 0 },
};

static const struct bad {
	const char *line;
	size_t len;
	const char *why;	/* the expected reason, a prefix of it */
} bad[] = {
	{ "", 0, "empty command" },
	{ "\n", 0, "empty command" },
	{ " \t\r\n", 0, "empty command" },
	{ "sync\0\n", 6, "NUL byte" },
	{ "frobnicate\n", 0, "unknown command 'frobnicate'" },
	{ "SYNC\n", 0, "unknown command 'SYNC'" },
	{ "x\x01y\n", 0, "unknown command" },
	{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n", 0, "unknown command" },
	{ "it's\n", 0, "unknown command" },
	{ "sync now\n", 0, "usage:" },
	{ "flush " ID "\n", 0, "usage:" },
	{ "delete\n", 0, "usage:" },
	{ "hold " ID " " ID "\n", 0, "usage:" },
	{ "release 018BD2C3A4F5000\n", 0, "usage:" },
	{ "release 018BD2C3A4F500011\n", 0, "usage:" },
	{ "bounce 018BD2C3A4F5000G\n", 0, "usage:" },
	{ "delete 0x8BD2C3A4F50001\n", 0, "usage:" },
};

static bool
one_printable_line(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			return false;
	return true;
}

static void
run_good(const struct good *g)
{
	struct control_cmd cmd;
	char why[128];
	size_t len = g->len ? g->len : strlen(g->line);

	CHECK(control_parse(g->line, len, &cmd, why, sizeof(why)) == 0);
	CHECK(cmd.verb == g->verb);
	CHECK(cmd.qid == g->qid);
	CHECK(why[0] == '\0');
	if (control_verb_takes_id(g->verb)) {
		CHECK(strlen(cmd.arg) == QUEUE_ID_LEN);
		CHECK(strcasecmp(cmd.arg, ID) == 0);
	} else {
		CHECK(cmd.arg[0] == '\0');
	}
}

static void
run_bad(const struct bad *b)
{
	struct control_cmd cmd;
	char why[128];
	size_t len = b->len ? b->len : strlen(b->line);

	memset(&cmd, 0xa5, sizeof(cmd));
	CHECK(control_parse(b->line, len, &cmd, why, sizeof(why)) == -EINVAL);
	CHECK(cmd.verb == 0 && cmd.qid == 0 && cmd.arg[0] == '\0');
	CHECK(strncmp(why, b->why, strlen(b->why)) == 0);
	CHECK(one_printable_line(why));
	if (strcmp(b->why, "unknown command") == 0)
		CHECK(strcmp(why, "unknown command") == 0);
}

static void
test_names(void)
{
	CHECK(strcmp(control_verb_name(CONTROL_SYNC), "sync") == 0);
	CHECK(strcmp(control_verb_name(CONTROL_BOUNCE), "bounce") == 0);
	CHECK(control_verb_name((enum control_verb)0) == NULL);
	CHECK(control_verb_name((enum control_verb)99) == NULL);
	CHECK(!control_verb_takes_id(CONTROL_FLUSH));
	CHECK(control_verb_takes_id(CONTROL_RELEASE));
	CHECK(!control_verb_takes_id((enum control_verb)99));
}

static void
test_small_why(void)
{
	struct control_cmd cmd;
	char why[8];

	memset(why, 'x', sizeof(why));
	CHECK(control_parse("nope\n", 5, &cmd, why, sizeof(why)) == -EINVAL);
	CHECK(strlen(why) == sizeof(why) - 1);
	CHECK(control_parse("nope\n", 5, &cmd, NULL, 0) == -EINVAL);
	CHECK(control_parse(NULL, 0, &cmd, why, 0) == -EINVAL);
}

int
main(void)
{
	int before;
	size_t i;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (i = 0; i < NELEM(good); i++) {
		before = check_failures;
		printf("RUN good/%zu\n", i);
		run_good(&good[i]);
		printf("%s good/%zu\n", check_failures != before ? "FAIL" :
		    "PASS", i);
	}
	for (i = 0; i < NELEM(bad); i++) {
		before = check_failures;
		printf("RUN bad/%zu\n", i);
		run_bad(&bad[i]);
		printf("%s bad/%zu\n", check_failures != before ? "FAIL" :
		    "PASS", i);
	}
	before = check_failures;
	printf("RUN names\n");
	test_names();
	test_small_why();
	printf("%s names\n", check_failures != before ? "FAIL" : "PASS");
	return check_done();
}
