/*
 * Description: SMTP argument parsing. smtp_utf8_valid() accepts exactly
 * RFC 3629 UTF-8 (no overlong forms, surrogates or code points above
 * U+10FFFF; no truncated sequences), and smtp_parse_path() refuses a
 * non-ASCII address without SMTPUTF8 and a non-UTF-8 one with it.
 */
#include <string.h>

#include "../../proto/smtp_parse.h"
#include "check.h"

static const struct {
	const char *s;
	bool ok;
} utf8_cases[] = {
	{ "", true },
	{ "plain ascii", true },
	{ "j\xc3\xb6rg", true },			/* U+00F6 */
	{ "\xe6\x97\xa5\xe6\x9c\xac", true },		/* U+65E5 U+672C */
	{ "\xf0\x9f\x93\xab", true },			/* U+1F4EB */
	{ "\xf4\x8f\xbf\xbf", true },			/* U+10FFFF */
	{ "\xed\x9f\xbf", true },			/* U+D7FF */
	{ "\xee\x80\x80", true },			/* U+E000 */
	{ "j\xf6rg", false },				/* Latin-1 */
	{ "\x80", false },				/* lone continuation */
	{ "\xc3", false },				/* truncated */
	{ "\xe6\x97", false },				/* truncated */
	{ "\xc0\xaf", false },				/* overlong '/' */
	{ "\xc1\xbf", false },				/* overlong */
	{ "\xe0\x80\xaf", false },			/* overlong */
	{ "\xf0\x80\x80\xaf", false },			/* overlong */
	{ "\xed\xa0\x80", false },			/* U+D800 */
	{ "\xed\xbf\xbf", false },			/* U+DFFF */
	{ "\xf4\x90\x80\x80", false },			/* U+110000 */
	{ "\xf5\x80\x80\x80", false },
	{ "\xff", false },
	{ "\xc3\x28", false },				/* bad continuation */
};

static const struct {
	const char *arg;
	bool utf8;
	enum smtp_path_result want;
} path_cases[] = {
	{ "TO:<a@b.c>", false, SMTP_PATH_OK },
	{ "TO:<j\xc3\xb6rg@b.c>", false, SMTP_PATH_NEEDS_UTF8 },
	{ "TO:<j\xc3\xb6rg@b.c>", true, SMTP_PATH_OK },
	{ "TO:<a@\xe6\x97\xa5.jp>", true, SMTP_PATH_OK },
	{ "TO:<j\xf6rg@b.c>", false, SMTP_PATH_NEEDS_UTF8 },
	{ "TO:<j\xf6rg@b.c>", true, SMTP_PATH_BAD_UTF8 },
	{ "TO:<a@\xed\xa0\x80.jp>", true, SMTP_PATH_BAD_UTF8 },
	{ "TO:<\"q\xc0\xaf\"@b.c>", true, SMTP_PATH_BAD_UTF8 },
};

int
main(void)
{
	char buf[256], *addr, *params;
	size_t i;

	printf("RUN utf8\n");
	for (i = 0; i < sizeof(utf8_cases) / sizeof(utf8_cases[0]); i++) {
		const char *s = utf8_cases[i].s;

		if (smtp_utf8_valid(s, strlen(s)) != utf8_cases[i].ok) {
			fprintf(stderr, "utf8 case %zu: expected %d\n", i,
			    utf8_cases[i].ok);
			check_failures++;
		}
	}
	printf("RUN paths\n");
	for (i = 0; i < sizeof(path_cases) / sizeof(path_cases[0]); i++) {
		snprintf(buf, sizeof(buf), "%s", path_cases[i].arg);
		if (smtp_parse_path(buf, "TO:", false, path_cases[i].utf8,
		    &addr, &params) != path_cases[i].want) {
			fprintf(stderr, "path case %zu (%s): expected %d\n", i,
			    path_cases[i].arg, (int)path_cases[i].want);
			check_failures++;
		}
	}
	return check_done();
}
