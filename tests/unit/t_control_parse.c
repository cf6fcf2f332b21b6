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

#define ID		"018BD2C3A4F50001"
#define ID_NUM		0x018BD2C3A4F50001ull

/* verb 0: refused, with why as the start of the reason. */
static const struct tcase {
	const char *line;
	size_t len;		/* 0: strlen(line) */
	enum control_verb verb;
	uint64_t qid;
	const char *why;
} cases[] = {
	{ "sync\n", 0, CONTROL_SYNC, 0, NULL },
	{ "status\n", 0, CONTROL_STATUS, 0, NULL },
	{ "status " ID "\n", 0, 0, 0, "usage" },
	{ "reload\n", 0, CONTROL_RELOAD, 0, NULL },
	{ "reload " ID "\n", 0, 0, 0, "usage" },
	{ "sync", 0, CONTROL_SYNC, 0, NULL },
	{ "flush\r\n", 0, CONTROL_FLUSH, 0, NULL },
	{ "  flush \t\n", 0, CONTROL_FLUSH, 0, NULL },
	{ "delete " ID "\n", 0, CONTROL_DELETE, ID_NUM, NULL },
	{ "hold\t" ID "\r\n", 0, CONTROL_HOLD, ID_NUM, NULL },
	{ "release  018bd2c3a4f50001 \n", 0, CONTROL_RELEASE, ID_NUM, NULL },
	{ "bounce " ID, 0, CONTROL_BOUNCE, ID_NUM, NULL },
	/* Several ids: the first is kept in arg and qid[0]. */
	{ "flush " ID "\n", 0, CONTROL_FLUSH, ID_NUM, NULL },
	{ "hold " ID " " ID "\n", 0, CONTROL_HOLD, ID_NUM, NULL },
	/* Only the first line counts. */
	{ "sync\nflush now\n", 0, CONTROL_SYNC, 0, NULL },
	{ "flush\n\0junk", 11, CONTROL_FLUSH, 0, NULL },

	{ "", 0, 0, 0, "empty command" },
	{ "\n", 0, 0, 0, "empty command" },
	{ " \t\r\n", 0, 0, 0, "empty command" },
	{ "sync\0\n", 6, 0, 0, "NUL byte" },
	{ "frobnicate\n", 0, 0, 0, "unknown command 'frobnicate'" },
	{ "SYNC\n", 0, 0, 0, "unknown command 'SYNC'" },
	/* Not quoted back: a control character, too long, a quote. */
	{ "x\x01y\n", 0, 0, 0, "unknown command" },
	{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n", 0, 0, 0,
	    "unknown command" },
	{ "it's\n", 0, 0, 0, "unknown command" },
	{ "sync now\n", 0, 0, 0, "usage:" },
	{ "delete\n", 0, 0, 0, "usage:" },
	{ "hold " ID " 018BD2C3A4F5000\n", 0, 0, 0, "usage:" },
	{ "release 018BD2C3A4F5000\n", 0, 0, 0, "usage:" },
	{ "release 018BD2C3A4F500011\n", 0, 0, 0, "usage:" },
	{ "bounce 018BD2C3A4F5000G\n", 0, 0, 0, "usage:" },
	{ "delete 0x8BD2C3A4F50001\n", 0, 0, 0, "usage:" },
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
run_one(size_t i)
{
	const struct tcase *t = &cases[i];
	struct control_cmd cmd;
	char why[128];
	size_t len = t->len ? t->len : strlen(t->line);
	int rc;

	memset(&cmd, 0xa5, sizeof(cmd));
	rc = control_parse(t->line, len, &cmd, why, sizeof(why));
	CHECK(rc == (t->verb != 0 ? 0 : -EINVAL));
	CHECK(cmd.verb == t->verb);
	CHECK((cmd.nqid > 0 ? cmd.qid[0] : 0) == t->qid);
	CHECK(cmd.nqid <= 2);
	CHECK(one_printable_line(why));
	if (t->verb == 0) {
		CHECK(cmd.arg[0] == '\0');
		CHECK(strncmp(why, t->why, strlen(t->why)) == 0);
		/* Nothing quoted back when it is not safe to. */
		if (strcmp(t->why, "unknown command") == 0)
			CHECK(strcmp(why, "unknown command") == 0);
	} else if (cmd.nqid > 0) {
		CHECK(why[0] == '\0');
		CHECK(strlen(cmd.arg) == QUEUE_ID_LEN);
		CHECK(strcasecmp(cmd.arg, ID) == 0);
	} else {
		CHECK(why[0] == '\0');
		CHECK(cmd.arg[0] == '\0');
	}
}

/* CONTROL_IDS_MAX ids pass, in order; one more is a usage error. */
static void
test_many_ids(void)
{
	static char line[CONTROL_LINE_MAX + 64];
	static struct control_cmd cmd;
	char why[128], id[QUEUE_ID_LEN + 1];
	size_t n = (size_t)snprintf(line, sizeof(line), "delete");

	for (unsigned i = 0; i < CONTROL_IDS_MAX; i++) {
		queue_id_format(ID_NUM + i, id);
		n += (size_t)snprintf(line + n, sizeof(line) - n, " %s", id);
	}
	line[n++] = '\n';
	CHECK(n <= CONTROL_LINE_MAX);
	CHECK(control_parse(line, n, &cmd, why, sizeof(why)) == 0);
	CHECK(cmd.nqid == CONTROL_IDS_MAX);
	CHECK(cmd.qid[0] == ID_NUM);
	CHECK(cmd.qid[CONTROL_IDS_MAX - 1] == ID_NUM + CONTROL_IDS_MAX - 1);
	queue_id_format(ID_NUM, id);
	n--;
	n += (size_t)snprintf(line + n, sizeof(line) - n, " %s\n", id);
	CHECK(control_parse(line, n, &cmd, why, sizeof(why)) == -EINVAL);
	CHECK(cmd.nqid == 0 && cmd.verb == 0);
	CHECK(strncmp(why, "usage:", 6) == 0);
}

static void
run_many_ids(size_t i)
{
	(void)i;
	test_many_ids();
}

static void
test_names(void)
{
	CHECK(strcmp(control_verb_name(CONTROL_SYNC), "sync") == 0);
	CHECK(strcmp(control_verb_name(CONTROL_BOUNCE), "bounce") == 0);
	CHECK(control_verb_name((enum control_verb)0) == NULL);
	CHECK(control_verb_name((enum control_verb)99) == NULL);
	CHECK(!control_verb_takes_id(CONTROL_FLUSH));
	CHECK(!control_verb_takes_id(CONTROL_SYNC));
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

/* Case kind/i: RUN, then PASS or FAIL. */
static void
run_case(const char *kind, size_t i, void (*fn)(size_t))
{
	int before = check_failures;

	printf("RUN %s/%zu\n", kind, i);
	fn(i);
	printf("%s %s/%zu\n", check_failures != before ? "FAIL" : "PASS",
	    kind, i);
}

static void
run_names(size_t i)
{
	(void)i;
	test_names();
	test_small_why();
}

int
main(void)
{
	size_t i;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (i = 0; i < NELEM(cases); i++)
		run_case("parse", i, run_one);
	run_case("names", 0, run_names);
	run_case("many ids", 0, run_many_ids);
	return check_done();
}
