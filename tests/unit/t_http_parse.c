/*
 * Description: the metrics endpoint's HTTP request-head parser
 * (proto/http.c). Good heads (CRLF or bare LF, HTTP/1.0 without Host,
 * query strings, HEAD) give their method, path, version and length; a
 * head cut anywhere before its empty line asks for more; every bad one
 * gets its status: 400 (malformed line, target not a path, whitespace
 * before a colon, obsolete folding, NUL and control bytes, HTTP/1.1
 * without Host or with two, an empty line first), 414 (long target, even
 * before its line ends), 431 (head or field count past the limit), 501
 * (long method), 505 (HTTP/2.0).
 */
#include "check.h"
#include "../../proto/http.h"

#include <string.h>

static const struct tcase {
	const char *name;
	const char *in;
	size_t len;			/* 0: strlen(in) */
	enum http_result res;
	int status;			/* HTTP_BAD */
	const char *method, *path;	/* HTTP_DONE */
	unsigned minor;
} cases[] = {
	{ "get 1.1", "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 0, HTTP_DONE,
	  0, "GET", "/metrics", 1 },
	{ "bare LF", "GET /metrics HTTP/1.1\nHost: x\n\n", 0, HTTP_DONE, 0,
	  "GET", "/metrics", 1 },
	{ "1.0 no host", "GET /metrics HTTP/1.0\r\n\r\n", 0, HTTP_DONE, 0,
	  "GET", "/metrics", 0 },
	{ "query cut", "GET /metrics?x=1&y HTTP/1.1\r\nhost: a:1\r\n\r\n", 0,
	  HTTP_DONE, 0, "GET", "/metrics", 1 },
	{ "head", "HEAD / HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n"
	  "User-Agent: Prometheus/2.42.0\r\n\r\n", 0, HTTP_DONE, 0, "HEAD",
	  "/", 1 },
	{ "post", "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3"
	  "\r\n\r\nabc", 0, HTTP_DONE, 0, "POST", "/metrics", 1 },
	{ "tab in value", "GET / HTTP/1.1\r\nHost:\tx \r\n\r\n", 0, HTTP_DONE,
	  0, "GET", "/", 1 },
	{ "8-bit value", "GET / HTTP/1.1\r\nHost: x\r\nX: \xc3\xa9\r\n\r\n",
	  0, HTTP_DONE, 0, "GET", "/", 1 },
	/* Not whole yet. */
	{ "empty", "", 0, HTTP_MORE, 0, NULL, NULL, 0 },
	{ "half line", "GET /met", 0, HTTP_MORE, 0, NULL, NULL, 0 },
	{ "line and CR", "GET /metrics HTTP/1.1\r", 0, HTTP_MORE, 0, NULL,
	  NULL, 0 },
	{ "no empty line", "GET /metrics HTTP/1.1\r\nHost: x\r\n", 0,
	  HTTP_MORE, 0, NULL, NULL, 0 },
	{ "empty line cut", "GET /metrics HTTP/1.1\r\nHost: x\r\n\r", 0,
	  HTTP_MORE, 0, NULL, NULL, 0 },
	/* Bad. */
	{ "empty first", "\r\nGET / HTTP/1.1\r\n\r\n", 0, HTTP_BAD, 400 },
	{ "no version", "GET /metrics\r\n\r\n", 0, HTTP_BAD, 400 },
	{ "two spaces", "GET  /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 0,
	  HTTP_BAD, 400 },
	{ "absolute", "GET http://a/metrics HTTP/1.1\r\nHost: a\r\n\r\n", 0,
	  HTTP_BAD, 400 },
	{ "asterisk", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", 0, HTTP_BAD,
	  400 },
	{ "lower version", "GET / http/1.1\r\nHost: a\r\n\r\n", 0, HTTP_BAD,
	  400 },
	{ "http/2", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 0, HTTP_BAD, 505 },
	{ "http/0.9", "GET / HTTP/0.9\r\n\r\n", 0, HTTP_BAD, 505 },
	{ "trailing", "GET / HTTP/1.1 x\r\nHost: a\r\n\r\n", 0, HTTP_BAD,
	  400 },
	{ "no host", "GET / HTTP/1.1\r\n\r\n", 0, HTTP_BAD, 400 },
	{ "two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHOST: b\r\n\r\n", 0,
	  HTTP_BAD, 400 },
	{ "space colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 0, HTTP_BAD,
	  400 },
	{ "no colon", "GET / HTTP/1.1\r\nHost a\r\n\r\n", 0, HTTP_BAD, 400 },
	{ "fold", "GET / HTTP/1.1\r\nHost: a\r\n b\r\n\r\n", 0, HTTP_BAD,
	  400 },
	{ "nul in line", "GET /\0 HTTP/1.1\r\n\r\n", 20, HTTP_BAD, 400 },
	{ "nul early", "GE\0", 3, HTTP_BAD, 400 },
	{ "ctl in field", "GET / HTTP/1.1\r\nHost: a\x01\r\n\r\n", 0,
	  HTTP_BAD, 400 },
	{ "bare CR inside", "GET / HTTP/1.1\rHost: a\r\n\r\n", 0, HTTP_BAD,
	  400 },
	{ "8-bit target", "GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 0,
	  HTTP_BAD, 400 },
	{ "long method", "ABCDEFGHIJKLMNOPQRSTUVWXYZ / HTTP/1.1\r\n\r\n", 0,
	  HTTP_BAD, 501 },
};

static bool
run_case(const struct tcase *t)
{
	size_t len = t->len ? t->len : strlen(t->in);
	struct http_req r;
	enum http_result res = http_parse(t->in, len, &r);
	bool ok = res == t->res;

	if (ok && res == HTTP_BAD)
		ok = r.status == t->status && r.why != NULL && r.why[0] != '\0';
	if (ok && res == HTTP_DONE) {
		const char *end = strstr(t->in, "\r\n\r\n");

		ok = strcmp(r.method, t->method) == 0 &&
		    strcmp(r.path, t->path) == 0 && r.minor == t->minor;
		/* The head ends after its empty line, not at the body. */
		if (end == NULL)
			end = strstr(t->in, "\n\n") - 2;
		ok = ok && r.head_len == (size_t)(end + 4 - t->in);
	}
	if (!ok)
		fprintf(stderr, "  got %d status %d (%s) method '%s' path "
		    "'%s' minor %u\n", (int)res, r.status, r.why ? r.why : "",
		    res == HTTP_DONE ? r.method : "", res == HTTP_DONE ?
		    r.path : "", r.minor);
	return ok;
}

/* A good head cut anywhere asks for more, and never anything else. */
static void
prefixes(void)
{
	static const char head[] = "GET /metrics?a=b HTTP/1.1\r\n"
	    "Host: 127.0.0.1:9108\r\nAccept: text/plain\r\n\r\n";
	struct http_req r;

	for (size_t n = 0; n < sizeof(head) - 1; n++)
		CHECK(http_parse(head, n, &r) == HTTP_MORE);
	CHECK(http_parse(head, sizeof(head) - 1, &r) == HTTP_DONE);
	CHECK(r.head_len == sizeof(head) - 1);
}

static void
limits(void)
{
	static char big[HTTP_HEAD_MAX * 2];
	struct http_req r;
	size_t n;

	/* A target past the limit: 414 before the line even ends. */
	n = (size_t)snprintf(big, sizeof(big), "GET /");
	memset(big + n, 'a', HTTP_TARGET_MAX + 40);
	n += HTTP_TARGET_MAX + 40;
	CHECK(http_parse(big, n, &r) == HTTP_BAD && r.status == 414);
	memcpy(big + n, " HTTP/1.1\r\nHost: a\r\n\r\n", 23);
	CHECK(http_parse(big, n + 23, &r) == HTTP_BAD && r.status == 414);
	/* Exactly the limit is fine. */
	n = (size_t)snprintf(big, sizeof(big), "GET /");
	memset(big + n, 'a', HTTP_TARGET_MAX - 1);
	n += HTTP_TARGET_MAX - 1;
	memcpy(big + n, " HTTP/1.1\r\nHost: a\r\n\r\n", 23);
	CHECK(http_parse(big, n + 23, &r) == HTTP_DONE);
	CHECK(strlen(r.path) == HTTP_TARGET_MAX);
	/* A head that never ends: more until the limit, then 431. */
	n = (size_t)snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nHost: a\r\n"
	    "X: ");
	memset(big + n, 'v', sizeof(big) - n);
	CHECK(http_parse(big, HTTP_HEAD_MAX, &r) == HTTP_MORE);
	CHECK(http_parse(big, HTTP_HEAD_MAX + 1, &r) == HTTP_BAD &&
	    r.status == 431);
	/* Too many fields, each small. */
	n = (size_t)snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nHost: a\r\n");
	for (unsigned i = 0; i < HTTP_FIELDS_MAX; i++)
		n += (size_t)snprintf(big + n, sizeof(big) - n, "X%u: y\r\n", i);
	n += (size_t)snprintf(big + n, sizeof(big) - n, "\r\n");
	CHECK(http_parse(big, n, &r) == HTTP_BAD && r.status == 431);
	/* A long line of garbage without a space: 400, not 414. */
	memset(big, 'x', HTTP_TARGET_MAX + 100);
	big[5] = '/';
	CHECK(http_parse(big, HTTP_TARGET_MAX + 100, &r) == HTTP_BAD &&
	    r.status == 400);
}

int
main(void)
{
	int failed = 0;

	for (size_t i = 0; i < NELEM(cases); i++) {
		printf("RUN %s\n", cases[i].name);
		if (run_case(&cases[i])) {
			printf("PASS %s\n", cases[i].name);
		} else {
			printf("FAIL %s\n", cases[i].name);
			failed++;
		}
	}
	prefixes();
	limits();
	CHECK(strcmp(http_reason(405), "Method Not Allowed") == 0);
	CHECK(strcmp(http_reason(431), "Request Header Fields Too Large") == 0);
	if (failed)
		return T_EXIT_FAIL;
	return check_done();
}
