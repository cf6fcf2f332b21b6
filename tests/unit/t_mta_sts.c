/*
 * Description: the MTA-STS parser (proto/mta_sts.c). TXT records: the
 * id of a good one (spaces, a trailing ';', extension fields), and every
 * bad one refused (not v=STSv1 first, no id, an id too long or with
 * punctuation, a field without '='). Policies: CRLF and LF lines, a last
 * line without an end, the first of a repeated key, extensions ignored,
 * max_age capped at one year, mx patterns lower-cased; refused: another
 * version, an unknown mode, no max_age, a max_age with letters or 11
 * digits, enforce without mx, a bad mx, more than 64 KiB. mx matching:
 * exact names ignore case and a trailing dot; "*.example.com" matches
 * one label only. HTTP responses: 200 text/plain (parameters allowed)
 * bodies to EOF or Content-Length; refused: redirects, other statuses,
 * other media types, a length over 64 KiB, transfer codings, a body or
 * head cut short.
 */
#include "check.h"
#include "../../proto/mta_sts.h"

#include <string.h>

static int
txt(const char *s, char id[MTA_STS_ID_MAX + 1])
{
	const char *why = NULL;
	int rc = mta_sts_txt_parse(s, strlen(s), id, &why);

	CHECK(rc == 0 || (why != NULL && why[0] != '\0'));
	return rc;
}

static int
pol(const char *s, struct mta_sts_policy *p)
{
	const char *why = NULL;
	int rc = mta_sts_policy_parse(s, strlen(s), p, &why);

	CHECK(rc == 0 || (why != NULL && why[0] != '\0'));
	return rc;
}

static void
test_txt(void)
{
	char id[MTA_STS_ID_MAX + 1];

	CHECK(txt("v=STSv1; id=20160831085700Z;", id) == 0);
	CHECK(strcmp(id, "20160831085700Z") == 0);
	CHECK(txt("v=STSv1;id=abc", id) == 0 && strcmp(id, "abc") == 0);
	CHECK(txt("v=STSv1 ;  id=X1 ; ext=foo;", id) == 0 &&
	    strcmp(id, "X1") == 0);
	CHECK(txt("v=STSv1; ext=1; id=Y", id) == 0 && strcmp(id, "Y") == 0);
	CHECK(txt("v=STSv1; id=12345678901234567890123456789012", id) == 0);
	CHECK(txt("v=STSv1; id=123456789012345678901234567890123", id) < 0);
	CHECK(txt("v=STSv1; id=a-b", id) < 0);
	CHECK(txt("v=STSv1; id=", id) < 0);
	CHECK(txt("v=STSv1;", id) < 0);
	CHECK(txt("id=abc; v=STSv1", id) < 0);
	CHECK(txt("v=STSv2; id=abc", id) < 0);
	CHECK(txt("v=STSv1; id", id) < 0);
	CHECK(txt("v=spf1 -all", id) < 0);
	CHECK(mta_sts_txt_is_sts("v=STSv1; id=1", 13));
	CHECK(!mta_sts_txt_is_sts("v=STSv10", 8));
}

static void
test_policy(void)
{
	struct mta_sts_policy p;
	char big[MTA_STS_POLICY_MAX + 64];

	CHECK(pol("version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\n"
	    "mx: *.Example.NET\r\nmx: backupmx.example.com\r\n"
	    "max_age: 604800\r\n", &p) == 0);
	CHECK(p.mode == MTA_STS_ENFORCE && p.max_age_s == 604800);
	CHECK(p.nmx == 3 && strcmp(p.mx[1], "*.example.net") == 0);
	CHECK(pol("version: STSv1\nmode: testing\nmx: a.b\nmax_age: 86400",
	    &p) == 0 && p.mode == MTA_STS_TESTING && p.nmx == 1);
	CHECK(pol("version:STSv1\nmode:none\nmax_age:99999999999\n", &p) < 0);
	CHECK(pol("version:STSv1\nmode:none  \nmax_age:9999999999\n", &p) == 0);
	CHECK(p.mode == MTA_STS_NONE && p.max_age_s == MTA_STS_MAX_AGE_MAX);
	CHECK(pol("version: STSv1\nmode: enforce\nmode: none\nmx: m.x\n"
	    "max_age: 5\nfoo: bar\n", &p) == 0 && p.mode == MTA_STS_ENFORCE);
	CHECK(pol("version: STSv2\nmode: enforce\nmx: m.x\nmax_age: 5\n",
	    &p) < 0);
	CHECK(pol("version: STSv1\nmode: strict\nmx: m.x\nmax_age: 5\n",
	    &p) < 0);
	CHECK(pol("version: STSv1\nmode: enforce\nmx: m.x\n", &p) < 0);
	CHECK(pol("version: STSv1\nmode: enforce\nmx: m.x\nmax_age: 5d\n",
	    &p) < 0);
	CHECK(pol("version: STSv1\nmode: enforce\nmax_age: 5\n", &p) < 0);
	CHECK(pol("version: STSv1\nmode: enforce\nmx: m..x\nmax_age: 5\n",
	    &p) < 0);
	CHECK(pol("version: STSv1\nmode: enforce\nmx: a.*.x\nmax_age: 5\n",
	    &p) < 0);
	CHECK(pol("mode: enforce\nmx: m.x\nmax_age: 5\n", &p) < 0);
	CHECK(pol("<html>not a policy</html>\n", &p) < 0);
	CHECK(pol("", &p) < 0);
	memset(big, '\n', sizeof(big));
	memcpy(big, "version: STSv1\nmode: none\nmax_age: 5\n", 37);
	CHECK(mta_sts_policy_parse(big, MTA_STS_POLICY_MAX, &p, NULL) == 0);
	CHECK(mta_sts_policy_parse(big, sizeof(big), &p, NULL) < 0);
}

static void
test_match(void)
{
	struct mta_sts_policy p;

	CHECK(pol("version: STSv1\nmode: enforce\nmx: mail.example.com\n"
	    "mx: *.example.net\nmax_age: 5\n", &p) == 0);
	CHECK(mta_sts_mx_match(&p, "mail.example.com"));
	CHECK(mta_sts_mx_match(&p, "MAIL.Example.com."));
	CHECK(!mta_sts_mx_match(&p, "mail.example.com.evil.org"));
	CHECK(!mta_sts_mx_match(&p, "xmail.example.com"));
	CHECK(mta_sts_mx_match(&p, "mx1.example.net"));
	CHECK(!mta_sts_mx_match(&p, "example.net"));
	CHECK(!mta_sts_mx_match(&p, "a.b.example.net"));
	CHECK(!mta_sts_mx_match(&p, ".example.net"));
	CHECK(!mta_sts_mx_match(&p, ""));
	CHECK(!mta_sts_pattern_match("*example.net", "xexample.net"));
}

static int
http(const char *s, bool eof, const char **body, size_t *len)
{
	const char *why = NULL;
	int rc = mta_sts_http_response(s, strlen(s), eof, body, len, &why);

	CHECK(rc >= 0 || (why != NULL && why[0] != '\0'));
	return rc;
}

static void
test_http(void)
{
	const char *b;
	size_t n;

	CHECK(http("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n"
	    "version: STSv1\n", true, &b, &n) == 0);
	CHECK(n == 15 && strncmp(b, "version: STSv1\n", n) == 0);
	CHECK(http("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n"
	    "version: STSv1\n", false, &b, &n) == 1);
	CHECK(http("HTTP/1.1 200 OK\r\ncontent-type: TEXT/PLAIN; charset=utf-8"
	    "\r\nContent-Length: 3\r\n\r\nabcdef", false, &b, &n) == 0);
	CHECK(n == 3 && strncmp(b, "abc", 3) == 0);
	CHECK(http("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
	    "Content-Length: 9\r\n\r\nabc", false, &b, &n) == 1);
	CHECK(http("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
	    "Content-Length: 9\r\n\r\nabc", true, &b, &n) < 0);
	CHECK(http("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\nx",
	    true, &b, &n) < 0);
	CHECK(http("HTTP/1.1 200 OK\r\nContent-Type: text/plainx\r\n\r\nx",
	    true, &b, &n) < 0);
	CHECK(http("HTTP/1.1 200 OK\r\n\r\nx", true, &b, &n) < 0);
	CHECK(http("HTTP/1.1 301 Moved\r\nLocation: https://x/\r\n"
	    "Content-Type: text/plain\r\n\r\n", true, &b, &n) < 0);
	CHECK(http("HTTP/1.1 404 Not Found\r\nContent-Type: text/plain"
	    "\r\n\r\n", true, &b, &n) < 0);
	CHECK(http("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
	    "Content-Length: 70000\r\n\r\n", false, &b, &n) < 0);
	CHECK(http("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n", false, &b, &n) < 0);
	CHECK(http("HTTP/1.1 200 OK\r\nContent-", false, &b, &n) == 1);
	CHECK(http("HTTP/1.1 200 OK\r\nContent-", true, &b, &n) < 0);
	CHECK(http("SSH-2.0-OpenSSH\r\n\r\n", true, &b, &n) < 0);
}

int
main(void)
{
	test_http();
	test_txt();
	test_policy();
	test_match();
	return check_done();
}
