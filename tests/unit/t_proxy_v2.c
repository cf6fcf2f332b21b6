/*
 * Description: PROXY protocol version 2 headers. PROXY over TCP4 and
 * TCP6 gives the addresses; LOCAL, UNSPEC, UNIX and datagram families
 * keep the connection's own; TLVs are skipped when whole and refused when
 * cut or overlong; a CRC32C TLV must hold the header's checksum (checked
 * against RFC 3720's test vectors first); the length is bounded at
 * PROXY_V2_LEN_MAX, refused from the 16 fixed bytes alone; a wrong
 * signature, version, command, family or protocol is refused.
 */
#include <string.h>

#include "check.h"
#include "proxy_check.h"

static enum proxy_status
parse(const struct pc_v2 *v, struct proxy_header *h)
{
	return proxy_parse(v->b, v->n, h);
}

static void
test_crc32c(void)
{
	uint8_t zeros[32] = { 0 }, ones[32], inc[32];
	uint32_t c;

	printf("RUN crc32c vectors\n");
	memset(ones, 0xff, sizeof(ones));
	for (int i = 0; i < 32; i++)
		inc[i] = (uint8_t)i;
	/* The check value of the CRC-32C catalogue entry. */
	CHECK(proxy_crc32c(0, "123456789", 9) == 0xe3069283u);
	/* RFC 3720 appendix B.4 (iSCSI, the same CRC as RFC 4960). */
	CHECK(proxy_crc32c(0, zeros, 32) == 0x8a9136aau);
	CHECK(proxy_crc32c(0, ones, 32) == 0x62a8ab43u);
	CHECK(proxy_crc32c(0, inc, 32) == 0x46dd794eu);
	/* Continuing: in pieces is the same as at once. */
	c = proxy_crc32c(0, "1234", 4);
	CHECK(proxy_crc32c(c, "56789", 5) == 0xe3069283u);
	CHECK(proxy_crc32c(0, NULL, 0) == 0);
}

static void
test_tcp(void)
{
	struct proxy_header h;
	struct pc_v2 v;
	char a[128];

	printf("RUN PROXY TCP4\n");
	pc_v2_begin(&v, 0x21, 0x11);
	pc_v2_inet(&v, "203.0.113.9", "192.0.2.1", 40000, 25);
	pc_v2_end(&v);
	CHECK(v.n == 28);
	pc_v2_bytes(&v, "EHLO x\r\n", 8);	/* the client's, not ours */
	CHECK(parse(&v, &h) == PROXY_DONE);
	CHECK(h.version == 2 && h.kind == PROXY_KIND_ADDR && h.len == 28);
	CHECK(strcmp(pc_addr(&h.src, a, sizeof(a)), "203.0.113.9:40000") == 0);
	CHECK(strcmp(pc_addr(&h.dst, a, sizeof(a)), "192.0.2.1:25") == 0);
	CHECK(h.srclen == sizeof(struct sockaddr_in));
	CHECK(!h.crc32c);
	CHECK(strcmp(proxy_describe(&h), "v2 PROXY TCP4") == 0);

	printf("RUN PROXY TCP6\n");
	pc_v2_begin(&v, 0x21, 0x21);
	pc_v2_inet6(&v, "2001:db8::5", "2001:db8::25", 65535, 587);
	pc_v2_end(&v);
	CHECK(v.n == 52);
	CHECK(parse(&v, &h) == PROXY_DONE);
	CHECK(h.kind == PROXY_KIND_ADDR && h.len == 52);
	CHECK(strcmp(pc_addr(&h.src, a, sizeof(a)), "[2001:db8::5]:65535") == 0);
	CHECK(strcmp(pc_addr(&h.dst, a, sizeof(a)), "[2001:db8::25]:587") == 0);
	CHECK(h.srclen == sizeof(struct sockaddr_in6));
	CHECK(strcmp(proxy_describe(&h), "v2 PROXY TCP6") == 0);

	printf("RUN PROXY TCP6 v4-mapped stays AF_INET6\n");
	pc_v2_begin(&v, 0x21, 0x21);
	pc_v2_inet6(&v, "::ffff:192.0.2.7", "::1", 1, 2);
	pc_v2_end(&v);
	CHECK(parse(&v, &h) == PROXY_DONE);
	CHECK(strcmp(pc_addr(&h.src, a, sizeof(a)), "[::ffff:192.0.2.7]:1") == 0);
}

static void
test_local_unknown(void)
{
	struct proxy_header h;
	struct pc_v2 v;

	printf("RUN LOCAL, no block\n");
	pc_v2_begin(&v, 0x20, 0x00);
	pc_v2_end(&v);
	CHECK(parse(&v, &h) == PROXY_DONE);
	CHECK(h.kind == PROXY_KIND_LOCAL && h.len == 16);
	CHECK(strcmp(proxy_describe(&h), "v2 LOCAL") == 0);

	printf("RUN LOCAL with an address block: skipped, not used\n");
	pc_v2_begin(&v, 0x20, 0x11);
	pc_v2_inet(&v, "203.0.113.9", "192.0.2.1", 1, 2);
	pc_v2_end(&v);
	CHECK(parse(&v, &h) == PROXY_DONE);
	CHECK(h.kind == PROXY_KIND_LOCAL && h.len == 28);
	CHECK(h.src.ss_family == 0);

	printf("RUN LOCAL with a short block: the family is ignored\n");
	pc_v2_begin(&v, 0x20, 0x21);
	pc_v2_bytes(&v, "abc", 3);
	pc_v2_end(&v);
	CHECK(parse(&v, &h) == PROXY_DONE);
	CHECK(h.kind == PROXY_KIND_LOCAL && h.len == 19);

	printf("RUN PROXY UNSPEC\n");
	pc_v2_begin(&v, 0x21, 0x00);
	pc_v2_bytes(&v, "anything", 8);
	pc_v2_end(&v);
	CHECK(parse(&v, &h) == PROXY_DONE);
	CHECK(h.kind == PROXY_KIND_UNKNOWN && h.len == 24);

	printf("RUN PROXY INET with protocol UNSPEC\n");
	pc_v2_begin(&v, 0x21, 0x10);
	pc_v2_end(&v);
	CHECK(parse(&v, &h) == PROXY_DONE);
	CHECK(h.kind == PROXY_KIND_UNKNOWN);

	printf("RUN PROXY UDP4: a TCP listener keeps its own addresses\n");
	pc_v2_begin(&v, 0x21, 0x12);
	pc_v2_inet(&v, "203.0.113.9", "192.0.2.1", 1, 2);
	pc_v2_end(&v);
	CHECK(parse(&v, &h) == PROXY_DONE);
	CHECK(h.kind == PROXY_KIND_UNKNOWN && h.src.ss_family == 0);

	printf("RUN PROXY UNIX stream, 216-byte block, with a TLV\n");
	pc_v2_begin(&v, 0x21, 0x31);
	for (int i = 0; i < 216; i++)
		pc_v2_bytes(&v, "/", 1);
	pc_v2_tlv(&v, 0x04, 5, 0);
	pc_v2_end(&v);
	CHECK(parse(&v, &h) == PROXY_DONE);
	CHECK(h.kind == PROXY_KIND_UNKNOWN && h.len == 16 + 216 + 8);

	printf("RUN PROXY UNIX block cut short\n");
	pc_v2_begin(&v, 0x21, 0x31);
	for (int i = 0; i < 215; i++)
		pc_v2_bytes(&v, "/", 1);
	pc_v2_end(&v);
	CHECK(parse(&v, &h) == PROXY_BAD);
}

static void
test_tlvs(void)
{
	struct proxy_header h;
	struct pc_v2 v;
	char a[128];

	printf("RUN TLVs as HAProxy sends them are skipped\n");
	pc_v2_begin(&v, 0x21, 0x11);
	pc_v2_inet(&v, "198.51.100.20", "192.0.2.1", 5555, 25);
	pc_v2_tlv(&v, 0x01, 4, 'h');		/* ALPN */
	pc_v2_tlv(&v, 0x02, 255, 'a');		/* AUTHORITY */
	pc_v2_tlv(&v, 0x05, 128, 'u');		/* UNIQUE_ID */
	pc_v2_tlv(&v, 0x20, 40, 0);		/* SSL, sub-TLVs not read */
	pc_v2_tlv(&v, 0x04, 0, 0);		/* NOOP, empty */
	pc_v2_tlv(&v, 0xe0, 3, 'c');		/* custom */
	pc_v2_end(&v);
	CHECK(parse(&v, &h) == PROXY_DONE);
	CHECK(h.kind == PROXY_KIND_ADDR && h.len == v.n);
	CHECK(strcmp(pc_addr(&h.src, a, sizeof(a)), "198.51.100.20:5555") == 0);

	printf("RUN CRC32C right\n");
	pc_v2_begin(&v, 0x21, 0x11);
	pc_v2_inet(&v, "198.51.100.20", "192.0.2.1", 5555, 25);
	pc_v2_tlv(&v, 0x05, 16, 'u');
	pc_v2_crc_tlv(&v);
	pc_v2_tlv(&v, 0x04, 2, 0);
	pc_v2_end(&v);
	CHECK(parse(&v, &h) == PROXY_DONE);
	CHECK(h.crc32c);

	printf("RUN CRC32C wrong, in any byte of the header\n");
	for (size_t i = 0; i < v.n; i++) {
		struct pc_v2 w = v;

		/* Bytes whose change is refused for another reason first. */
		if (i < 16)
			continue;
		w.b[i] ^= 0x40;
		if (i >= w.crc_at - 3 && i < w.crc_at)
			continue;	/* the CRC TLV's type and length */
		if (i >= 28 && i < 31)
			continue;	/* the UNIQUE_ID TLV's type and length */
		if (i >= w.n - 5 && i < w.n - 2)
			continue;	/* the NOOP TLV's type and length */
		if (parse(&w, &h) != PROXY_BAD || h.why == NULL ||
		    strstr(h.why, "CRC32C") == NULL) {
			printf("byte %zu changed: not refused for its CRC\n", i);
			CHECK(0);
		}
	}

	printf("RUN CRC32C TLV of 3 bytes\n");
	pc_v2_begin(&v, 0x21, 0x11);
	pc_v2_inet(&v, "198.51.100.20", "192.0.2.1", 5555, 25);
	pc_v2_tlv(&v, 0x03, 3, 0);
	pc_v2_end(&v);
	CHECK(parse(&v, &h) == PROXY_BAD);

	printf("RUN two CRC32C TLVs\n");
	pc_v2_begin(&v, 0x21, 0x11);
	pc_v2_inet(&v, "198.51.100.20", "192.0.2.1", 5555, 25);
	pc_v2_crc_tlv(&v);
	pc_v2_tlv(&v, 0x03, 4, 0);
	pc_v2_end(&v);
	CHECK(parse(&v, &h) == PROXY_BAD);

	printf("RUN TLV header cut short\n");
	pc_v2_begin(&v, 0x21, 0x11);
	pc_v2_inet(&v, "198.51.100.20", "192.0.2.1", 5555, 25);
	pc_v2_bytes(&v, "\x04\x00", 2);
	pc_v2_end(&v);
	CHECK(parse(&v, &h) == PROXY_BAD);

	printf("RUN TLV value past the header's end\n");
	pc_v2_begin(&v, 0x21, 0x11);
	pc_v2_inet(&v, "198.51.100.20", "192.0.2.1", 5555, 25);
	pc_v2_bytes(&v, "\x04\x00\x05" "abcd", 7);
	pc_v2_end(&v);
	pc_v2_bytes(&v, "EHLO x\r\n", 8);	/* must not be read as TLV */
	CHECK(parse(&v, &h) == PROXY_BAD);

	printf("RUN TLV length 0xffff\n");
	pc_v2_begin(&v, 0x21, 0x21);
	pc_v2_inet6(&v, "::1", "::1", 1, 2);
	pc_v2_bytes(&v, "\x04\xff\xff", 3);
	pc_v2_end(&v);
	CHECK(parse(&v, &h) == PROXY_BAD);
}

static void
test_bounds(void)
{
	struct proxy_header h;
	struct pc_v2 v;

	printf("RUN length at the bound\n");
	pc_v2_begin(&v, 0x21, 0x11);
	pc_v2_inet(&v, "198.51.100.20", "192.0.2.1", 5555, 25);
	pc_v2_tlv(&v, 0x04, 1000, 0);
	pc_v2_tlv(&v, 0x04, PROXY_V2_LEN_MAX - 12 - 1003 - 3, 0);
	pc_v2_end(&v);
	CHECK(v.n == PROXY_HDR_MAX);
	CHECK(parse(&v, &h) == PROXY_DONE);
	CHECK(h.len == PROXY_HDR_MAX);

	printf("RUN one byte over: refused from the 16 fixed bytes\n");
	pc_v2_begin(&v, 0x21, 0x11);
	v.b[14] = (uint8_t)((PROXY_V2_LEN_MAX + 1) >> 8);
	v.b[15] = (uint8_t)(PROXY_V2_LEN_MAX + 1);
	CHECK(proxy_parse(v.b, 16, &h) == PROXY_BAD);
	CHECK(h.why != NULL && strstr(h.why, "too long") != NULL);
	CHECK(proxy_parse(v.b, 15, &h) == PROXY_MORE);
	v.b[14] = v.b[15] = 0xff;
	CHECK(proxy_parse(v.b, 16, &h) == PROXY_BAD);

	printf("RUN INET block cut short\n");
	pc_v2_begin(&v, 0x21, 0x11);
	pc_v2_bytes(&v, "12345678901", 11);
	pc_v2_end(&v);
	CHECK(parse(&v, &h) == PROXY_BAD);

	printf("RUN INET6 with an INET-sized block\n");
	pc_v2_begin(&v, 0x21, 0x21);
	pc_v2_inet(&v, "198.51.100.20", "192.0.2.1", 5555, 25);
	pc_v2_end(&v);
	CHECK(parse(&v, &h) == PROXY_BAD);
}

static void
test_fixed_bytes(void)
{
	static const struct {
		const char *name;
		uint8_t ver_cmd, fam;
	} bad[] = {
		{ "version 1 nibble", 0x11, 0x11 },
		{ "version 3", 0x31, 0x11 },
		{ "version 0", 0x01, 0x11 },
		{ "command 2", 0x22, 0x11 },
		{ "command 15", 0x2f, 0x11 },
		{ "family 4", 0x21, 0x41 },
		{ "family 15", 0x21, 0xf1 },
		{ "protocol 3", 0x21, 0x13 },
		{ "protocol 15", 0x21, 0x1f },
	};
	struct proxy_header h;
	struct pc_v2 v;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		printf("RUN %s\n", bad[i].name);
		pc_v2_begin(&v, bad[i].ver_cmd, bad[i].fam);
		pc_v2_inet(&v, "198.51.100.20", "192.0.2.1", 5555, 25);
		pc_v2_end(&v);
		CHECK(parse(&v, &h) == PROXY_BAD);
		/* Known wrong from the byte itself, before the rest. */
		CHECK(proxy_parse(v.b, 14, &h) == PROXY_BAD);
	}

	printf("RUN every signature byte matters\n");
	for (size_t i = 0; i < 12; i++) {
		pc_v2_begin(&v, 0x21, 0x11);
		pc_v2_inet(&v, "198.51.100.20", "192.0.2.1", 5555, 25);
		pc_v2_end(&v);
		v.b[i] ^= 0x01;
		CHECK(parse(&v, &h) == PROXY_BAD);
		CHECK(proxy_parse(v.b, i + 1, &h) == PROXY_BAD);
		if (i > 0)
			CHECK(proxy_parse(v.b, i, &h) == PROXY_MORE);
	}
}

int
main(void)
{
	test_crc32c();
	test_tcp();
	test_local_unknown();
	test_tlvs();
	test_bounds();
	test_fixed_bytes();
	return check_done();
}
