/*
 * Description: the PROXY header parser on input cut at every length, as
 * reads may deliver it. Each valid header (v1 and v2, with the client's
 * first bytes behind it) asks for more at every length short of the
 * header and gives the same result at every length from it on; each bad
 * one is refused at the byte that proves it wrong and stays refused.
 * Then random bytes and random changes to valid headers: the verdicts
 * over growing prefixes only ever go from "more" to one final answer, a
 * header is never longer than what was given or than PROXY_HDR_MAX, and
 * "more" is never asked for at or past PROXY_HDR_MAX bytes.
 */
#include <string.h>

#include "check.h"
#include "proxy_check.h"

#define TAIL "EHLO client.example\r\n"

static char
status_char(enum proxy_status st)
{
	return st == PROXY_MORE ? 'M' : st == PROXY_DONE ? 'D' : 'B';
}

/*
 * Parse every prefix of p[0..n). The verdicts must read M...M then one
 * final letter to the end, a D always with the same length and
 * addresses. Returns the final verdict; *first: the shortest prefix that
 * got it.
 */
static enum proxy_status
prefixes(const uint8_t *p, size_t n, struct proxy_header *fin, size_t *first)
{
	enum proxy_status last = PROXY_MORE, st;
	struct proxy_header h;

	*first = 0;
	memset(fin, 0, sizeof(*fin));
	for (size_t k = 0; k <= n; k++) {
		st = proxy_parse(p, k, &h);
		if (st == PROXY_MORE) {
			CHECK(last == PROXY_MORE);
			CHECK(k < PROXY_HDR_MAX);
			continue;
		}
		if (last == PROXY_MORE) {
			last = st;
			*first = k;
			*fin = h;
			continue;
		}
		if (st != last) {
			printf("prefix %zu: %c after %c\n", k, status_char(st),
			    status_char(last));
			CHECK(0);
			return st;
		}
		if (st == PROXY_DONE) {
			CHECK(h.len == fin->len);
			CHECK(h.kind == fin->kind);
			CHECK(memcmp(&h.src, &fin->src, sizeof(h.src)) == 0);
			CHECK(memcmp(&h.dst, &fin->dst, sizeof(h.dst)) == 0);
		}
	}
	if (last == PROXY_DONE) {
		CHECK(fin->len == *first);
		CHECK(fin->len <= PROXY_HDR_MAX);
	}
	return last;
}

static void
good(const char *name, const uint8_t *hdr, size_t hlen)
{
	uint8_t in[PROXY_HDR_MAX + sizeof(TAIL)];
	struct proxy_header h;
	size_t first;
	int before = check_failures;

	printf("RUN %s\n", name);
	CHECK_FATAL(hlen + strlen(TAIL) <= sizeof(in));
	memcpy(in, hdr, hlen);
	memcpy(in + hlen, TAIL, strlen(TAIL));
	CHECK(prefixes(in, hlen + strlen(TAIL), &h, &first) == PROXY_DONE);
	CHECK(first == hlen);
	CHECK(h.len == hlen);
	printf("%s %s\n", check_failures == before ? "PASS" : "FAIL", name);
}

/* Refused, first at exactly `at` bytes. */
static void
bad(const char *name, const void *p, size_t n, size_t at)
{
	struct proxy_header h;
	size_t first;
	int before = check_failures;

	printf("RUN %s\n", name);
	CHECK(prefixes(p, n, &h, &first) == PROXY_BAD);
	if (first != at) {
		printf("refused at %zu bytes, not %zu\n", first, at);
		CHECK(0);
	}
	printf("%s %s\n", check_failures == before ? "PASS" : "FAIL", name);
}

static void
good_v1(const char *line)
{
	good(line, (const uint8_t *)line, strlen(line));
}

static uint32_t
rnd(void)
{
	return (uint32_t)(check_rand() >> 32);
}

/* The prefix rules on n bytes; cheap enough for inputs up to ~2 KiB. */
static void
fuzz_one(const uint8_t *p, size_t n)
{
	struct proxy_header h;
	size_t first;

	(void)prefixes(p, n, &h, &first);
}

int
main(void)
{
	static const char v1_unknown_max[] = "PROXY UNKNOWN "
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
	struct pc_v2 v, crc, big;
	uint8_t buf[2048];

	good_v1("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n");
	good_v1("PROXY TCP6 2001:db8::1 2001:db8::25 40000 25\r\n");
	good_v1("PROXY UNKNOWN\r\n");
	good_v1(v1_unknown_max);

	pc_v2_begin(&v, 0x21, 0x11);
	pc_v2_inet(&v, "203.0.113.9", "192.0.2.1", 40000, 25);
	pc_v2_end(&v);
	good("v2 TCP4", v.b, v.n);
	pc_v2_begin(&crc, 0x21, 0x21);
	pc_v2_inet6(&crc, "2001:db8::5", "2001:db8::25", 1, 25);
	pc_v2_tlv(&crc, 0x05, 20, 'u');
	pc_v2_crc_tlv(&crc);
	pc_v2_end(&crc);
	good("v2 TCP6 with TLVs and CRC32C", crc.b, crc.n);
	pc_v2_begin(&big, 0x20, 0x00);
	pc_v2_tlv(&big, 0x04, 1000, 0);
	pc_v2_tlv(&big, 0x04, PROXY_V2_LEN_MAX - 1006, 0);
	pc_v2_end(&big);
	CHECK(big.n == PROXY_HDR_MAX);
	good("v2 LOCAL of the largest length", big.b, big.n);

	/* Refused at the first byte that cannot belong to a header. */
	bad("SMTP", TAIL, strlen(TAIL), 1);
	bad("PROXY lower case", "proxy TCP4", 10, 1);
	bad("PROXY without its space", "PROXYTCP4 1.2.3.4", 17, 6);
	bad("NUL in a v1 line", "PROXY TCP4\0 1", 13, 11);
	bad("bare LF", "PROXY TCP4 1.2.3.4 1.2.3.5 1 2\n" TAIL, 31 + 21, 31);
	bad("CR then X", "PROXY UNKNOWN\rX\n", 16, 15);
	bad("bad port, at the CRLF", "PROXY TCP4 1.2.3.4 1.2.3.5 1 099\r\nX",
	    35, 34);
	/* No CRLF: refused at the 107th byte. */
	memset(buf, 'x', sizeof(buf));
	memcpy(buf, "PROXY UNKNOWN ", 14);
	bad("v1 without CRLF", buf, 300, PROXY_V1_MAX);
	memcpy(buf, v.b, v.n);
	buf[5] = 'X';
	bad("v2 signature", buf, v.n, 6);
	memcpy(buf, v.b, v.n);
	buf[12] = 0x11;
	bad("v2 version", buf, v.n, 13);
	memcpy(buf, v.b, v.n);
	buf[13] = 0x14;
	bad("v2 protocol", buf, v.n, 14);
	memcpy(buf, v.b, v.n);
	buf[14] = 0x05;
	bad("v2 oversized: at the length field", buf, sizeof(buf), 16);
	memcpy(buf, crc.b, crc.n);
	buf[20] ^= 1;
	bad("v2 CRC32C: once whole", buf, crc.n + 10, crc.n);

	printf("RUN random bytes\n");
	for (int i = 0; i < 3000; i++) {
		size_t n = rnd() % 200;

		for (size_t k = 0; k < n; k++)
			buf[k] = (uint8_t)rnd();
		/* Often a right start, so the parsers get past it. */
		if (i % 3 == 0 && n >= 6)
			memcpy(buf, "PROXY ", 6);
		else if (i % 3 == 1 && n >= 12)
			memcpy(buf, pc_sig, 12);
		fuzz_one(buf, n);
	}

	printf("RUN random changes to valid headers\n");
	for (int i = 0; i < 3000; i++) {
		const struct pc_v2 *src = i % 2 ? &v : &crc;
		size_t n = src->n + strlen(TAIL);
		int changes = 1 + (int)(rnd() % 3);

		memcpy(buf, src->b, src->n);
		memcpy(buf + src->n, TAIL, strlen(TAIL));
		while (changes-- > 0)
			buf[rnd() % n] = (uint8_t)rnd();
		fuzz_one(buf, n);
	}
	for (int i = 0; i < 3000; i++) {
		static const char line[] =
		    "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n" TAIL;
		static const char likely[] = "0123456789. \r\n:";
		size_t n = strlen(line), at = rnd() % n;

		memcpy(buf, line, n);
		if (i % 4 != 0)
			buf[at] = (uint8_t)likely[rnd() % (sizeof(likely) - 1)];
		else
			buf[at] = (uint8_t)rnd();
		fuzz_one(buf, n);
	}
	return check_done();
}
