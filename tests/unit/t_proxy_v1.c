/*
 * Description: PROXY protocol version 1 lines. TCP4, TCP6 (IPv4-mapped
 * too) and UNKNOWN are read, with the client's bytes after the CRLF left
 * alone; the longest lines the specification allows (56, 104, 107 bytes)
 * pass and one byte more does not; every field is strictly checked:
 * exactly one space, no leading zeros in octets or ports, ports up to
 * 65535, addresses of the family the line names, CRLF and nothing else
 * to end the line, printable US-ASCII only.
 */
#include <string.h>

#include "check.h"
#include "proxy_check.h"

struct v1_case {
	const char *name;
	const char *in;
	enum proxy_status want;
	enum proxy_kind kind;
	const char *src, *dst;	/* pc_addr() text; NULL: not checked */
	size_t len;		/* PROXY_DONE: header length; 0: strlen(in) */
};

#define OK(nm, in, s, d) { nm, in, PROXY_DONE, PROXY_KIND_ADDR, s, d, 0 }
#define UNKNOWN(nm, in) { nm, in, PROXY_DONE, PROXY_KIND_UNKNOWN, NULL, \
	NULL, 0 }
#define BAD(nm, in) { nm, in, PROXY_BAD, 0, NULL, NULL, 0 }
#define MORE(nm, in) { nm, in, PROXY_MORE, 0, NULL, NULL, 0 }

static const struct v1_case cases[] = {
	OK("tcp4", "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
	    "192.168.0.1:56324", "192.168.0.11:443"),
	OK("tcp4 zeros", "PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n",
	    "0.0.0.0:0", "0.0.0.0:0"),
	/* 56 bytes: the longest TCP4 line (spec 2.1). */
	OK("tcp4 longest",
	    "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n",
	    "255.255.255.255:65535", "255.255.255.255:65535"),
	OK("tcp6", "PROXY TCP6 2001:db8::1 2001:db8::25 40000 25\r\n",
	    "[2001:db8::1]:40000", "[2001:db8::25]:25"),
	OK("tcp6 upper case", "PROXY TCP6 2001:DB8::A ::1 1 2\r\n",
	    "[2001:db8::a]:1", "[::1]:2"),
	OK("tcp6 v4-mapped", "PROXY TCP6 ::ffff:192.0.2.7 ::1 1025 25\r\n",
	    "[::ffff:192.0.2.7]:1025", "[::1]:25"),
	/* 104 bytes: the longest TCP6 line. */
	OK("tcp6 longest", "PROXY TCP6 "
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
	    "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
	    "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"),
	UNKNOWN("unknown short", "PROXY UNKNOWN\r\n"),
	UNKNOWN("unknown with addresses",
	    "PROXY UNKNOWN 192.0.2.1 192.0.2.2 1 2\r\n"),
	UNKNOWN("unknown, rest ignored", "PROXY UNKNOWN whatever it says\r\n"),
	/* 107 bytes: the longest line of all. */
	UNKNOWN("unknown longest", "PROXY UNKNOWN "
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),

	BAD("108 bytes", "PROXY UNKNOWN "
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 655355\r\n"),
	BAD("no CRLF in 107 bytes", "PROXY UNKNOWN "
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 6553555"),
	BAD("leading zero octet", "PROXY TCP4 010.0.0.1 10.0.0.2 1 2\r\n"),
	BAD("leading zero octet 00", "PROXY TCP4 10.00.0.1 10.0.0.2 1 2\r\n"),
	BAD("octet 256", "PROXY TCP4 10.0.0.256 10.0.0.2 1 2\r\n"),
	BAD("four digits", "PROXY TCP4 10.0.0.1000 10.0.0.2 1 2\r\n"),
	BAD("three octets", "PROXY TCP4 10.0.1 10.0.0.2 1 2\r\n"),
	BAD("five octets", "PROXY TCP4 10.0.0.1.5 10.0.0.2 1 2\r\n"),
	BAD("trailing dot", "PROXY TCP4 10.0.0.1. 10.0.0.2 1 2\r\n"),
	BAD("empty octet", "PROXY TCP4 10..0.1 10.0.0.2 1 2\r\n"),
	BAD("hex octet", "PROXY TCP4 0x1.0.0.1 10.0.0.2 1 2\r\n"),
	BAD("sign", "PROXY TCP4 +1.0.0.1 10.0.0.2 1 2\r\n"),
	BAD("v6 in TCP4", "PROXY TCP4 ::1 ::1 1 2\r\n"),
	BAD("v4 in TCP6", "PROXY TCP6 192.0.2.1 192.0.2.2 1 2\r\n"),
	BAD("v6 zone", "PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n"),
	BAD("v6 brackets", "PROXY TCP6 [::1] ::1 1 2\r\n"),
	BAD("v6 triple colon", "PROXY TCP6 1:::2 ::1 1 2\r\n"),
	BAD("v6 too many groups", "PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n"),
	BAD("v6 too long",
	    "PROXY TCP6 0000:0000:0000:0000:0000:0000:0000:00001 ::1 1 2\r\n"),
	BAD("port leading zero", "PROXY TCP4 10.0.0.1 10.0.0.2 1 025\r\n"),
	BAD("port 00", "PROXY TCP4 10.0.0.1 10.0.0.2 00 25\r\n"),
	BAD("port 65536", "PROXY TCP4 10.0.0.1 10.0.0.2 65536 25\r\n"),
	BAD("port 6 digits", "PROXY TCP4 10.0.0.1 10.0.0.2 100000 25\r\n"),
	BAD("port sign", "PROXY TCP4 10.0.0.1 10.0.0.2 -1 25\r\n"),
	BAD("port letters", "PROXY TCP4 10.0.0.1 10.0.0.2 smtp 25\r\n"),
	BAD("double space", "PROXY TCP4  10.0.0.1 10.0.0.2 1 2\r\n"),
	BAD("trailing space", "PROXY TCP4 10.0.0.1 10.0.0.2 1 2 \r\n"),
	BAD("tab", "PROXY TCP4\t10.0.0.1 10.0.0.2 1 2\r\n"),
	BAD("missing port", "PROXY TCP4 10.0.0.1 10.0.0.2 1\r\n"),
	BAD("extra field", "PROXY TCP4 10.0.0.1 10.0.0.2 1 2 3\r\n"),
	BAD("no protocol", "PROXY \r\n"),
	BAD("TCP5", "PROXY TCP5 10.0.0.1 10.0.0.2 1 2\r\n"),
	BAD("tcp4 lower case", "PROXY tcp4 10.0.0.1 10.0.0.2 1 2\r\n"),
	BAD("UNKNOWNX", "PROXY UNKNOWNX\r\n"),
	BAD("proxy lower case", "proxy TCP4 10.0.0.1 10.0.0.2 1 2\r\n"),
	BAD("no space after PROXY", "PROXYTCP4 10.0.0.1 10.0.0.2 1 2\r\n"),
	BAD("bare LF", "PROXY TCP4 10.0.0.1 10.0.0.2 1 2\n"),
	BAD("CR without LF", "PROXY TCP4 10.0.0.1 10.0.0.2 1 2\rX\n"),
	BAD("LF inside", "PROXY TCP4 10.0.0.1\n10.0.0.2 1 2\r\n"),
	BAD("8-bit byte", "PROXY UNKNOWN \xe9t\xe9\r\n"),
	BAD("SMTP instead", "EHLO client.example\r\n"),
	BAD("HTTP instead", "GET / HTTP/1.0\r\n"),
	BAD("P then garbage", "PX"),
	BAD("early DEL", "PROXY \x7f"),

	MORE("empty", ""),
	MORE("P", "P"),
	MORE("PROXY", "PROXY"),
	MORE("no CRLF yet", "PROXY TCP4 10.0.0.1 10.0.0.2 1 2"),
	MORE("CR only", "PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r"),
};

static void
run(const struct v1_case *c)
{
	struct proxy_header h;
	enum proxy_status st;
	size_t n = strlen(c->in);
	char a[128];
	int before = check_failures;

	printf("RUN %s\n", c->name);
	st = proxy_parse(c->in, n, &h);
	CHECK(st == c->want);
	if (st == PROXY_BAD)
		CHECK(h.why != NULL && h.why[0] != '\0');
	if (st == PROXY_DONE && c->want == PROXY_DONE) {
		CHECK(h.version == 1);
		CHECK(h.kind == c->kind);
		CHECK(h.len == (c->len ? c->len : n));
		if (c->src != NULL)
			CHECK(strcmp(pc_addr(&h.src, a, sizeof(a)), c->src) == 0);
		if (c->dst != NULL)
			CHECK(strcmp(pc_addr(&h.dst, a, sizeof(a)), c->dst) == 0);
		if (c->kind == PROXY_KIND_ADDR)
			CHECK(h.srclen == (h.src.ss_family == AF_INET ?
			    sizeof(struct sockaddr_in) :
			    sizeof(struct sockaddr_in6)));
	}
	if (check_failures != before)
		printf("FAIL %s: got %d (%s)\n", c->name, (int)st,
		    st == PROXY_BAD ? h.why : "");
	else
		printf("PASS %s\n", c->name);
}

int
main(void)
{
	static const char with_smtp[] =
	    "PROXY TCP4 203.0.113.9 192.0.2.1 40000 25\r\nEHLO client\r\n";
	struct proxy_header h;
	char a[64];

	for (size_t i = 0; i < NELEM(cases); i++)
		run(&cases[i]);

	printf("RUN client bytes after the line\n");
	CHECK(proxy_parse(with_smtp, strlen(with_smtp), &h) == PROXY_DONE);
	CHECK(h.len == strlen(with_smtp) - strlen("EHLO client\r\n"));
	CHECK(strcmp(pc_addr(&h.src, a, sizeof(a)), "203.0.113.9:40000") == 0);
	CHECK(strcmp(proxy_describe(&h), "v1 TCP4") == 0);

	printf("RUN the longest lines are exactly the specification's\n");
	CHECK(strlen(cases[2].in) == 56);
	CHECK(strlen(cases[6].in) == 104);
	CHECK(strlen(cases[10].in) == PROXY_V1_MAX);
	CHECK(strlen(cases[11].in) == PROXY_V1_MAX + 1);
	return check_done();
}
