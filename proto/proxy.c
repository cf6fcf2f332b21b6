/*
 * proxy.c - the PROXY protocol header parser; see proxy.h.
 *
 * Every check looks only at bytes already at hand, so the same code
 * answers for a header cut anywhere: what is there is judged, and only a
 * header that is right so far and not yet whole asks for more. The one
 * exception to reading in order is version 2's length field, which is
 * bounded as soon as it has arrived, before the bytes it announces.
 */
#include "proxy.h"

#include <arpa/inet.h>
#include <assert.h>
#include <netinet/in.h>
#include <string.h>

static const uint8_t v2_sig[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
};
static const char v1_sig[] = "PROXY ";
#define V1_SIG_LEN	(sizeof(v1_sig) - 1)

/* Version 2, byte 13: version (high nibble) and command (low). */
#define V2_VERSION	0x2
#define V2_CMD_LOCAL	0x0
#define V2_CMD_PROXY	0x1
/* Byte 14: address family (high nibble) and transport protocol (low). */
#define V2_FAM_UNSPEC	0x0
#define V2_FAM_INET	0x1
#define V2_FAM_INET6	0x2
#define V2_FAM_UNIX	0x3
#define V2_PROTO_UNSPEC	0x0
#define V2_PROTO_STREAM	0x1
#define V2_PROTO_DGRAM	0x2
#define V2_INET_BLOCK	12	/* 2 x 4 address bytes, 2 x 2 port bytes */
#define V2_INET6_BLOCK	36	/* 2 x 16, 2 x 2 */
#define V2_TLV_HDR	3	/* type, 16-bit length */
#define V2_TYPE_CRC32C	0x03

static_assert(PROXY_V1_MAX < PROXY_HDR_MAX, "v1 line longer than any header");
static_assert(PROXY_V2_LEN_MAX <= UINT16_MAX, "v2 length is 16 bits");

static enum proxy_status
bad(struct proxy_header *h, const char *why)
{
	h->why = why;
	return PROXY_BAD;
}

/* ---- CRC32C ---------------------------------------------------------- */

/*
 * Bit at a time, reflected, polynomial 0x1EDC6F41 (reversed 0x82F63B78):
 * a header is at most PROXY_HDR_MAX bytes and is checked once per
 * connection, so a table buys nothing worth its 1 KiB.
 */
uint32_t
proxy_crc32c(uint32_t crc, const void *p, size_t n)
{
	const uint8_t *b = p;

	crc = ~crc;
	while (n-- > 0) {
		crc ^= *b++;
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1u)));
	}
	return ~crc;
}

/* ---- version 1 ------------------------------------------------------- */

/*
 * A port: 1 to 5 decimal digits, no leading zero (but "0" itself), at
 * most 65535 (spec 2.1: no leading zeros, lest they be read as octal).
 */
static bool
v1_port(const char *s, size_t n, uint16_t *out)
{
	unsigned long v = 0;

	if (n == 0 || n > 5 || (s[0] == '0' && n > 1))
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v > 65535)
		return false;
	*out = (uint16_t)v;
	return true;
}

/*
 * Four decimal numbers 0-255, one dot apart, none with a leading zero.
 * Checked here rather than left to inet_pton(), whose tolerance differs
 * between C libraries; inet_pton() then converts.
 */
static bool
v1_ipv4_syntax(const char *s, size_t n)
{
	size_t i = 0;

	for (int part = 0; part < 4; part++) {
		size_t start = i;
		unsigned v = 0;

		if (part > 0) {
			if (i >= n || s[i] != '.')
				return false;
			start = ++i;
		}
		while (i < n && s[i] >= '0' && s[i] <= '9' && i - start < 3)
			v = v * 10 + (unsigned)(s[i++] - '0');
		if (i == start || v > 255 || (s[start] == '0' && i - start > 1))
			return false;
	}
	return i == n;
}

/* An address of the family the line named, into a socket address. */
static bool
v1_addr(const char *s, size_t n, int family, uint16_t port,
    struct sockaddr_storage *ss, socklen_t *len)
{
	char text[INET6_ADDRSTRLEN];

	if (n == 0 || n >= sizeof(text))
		return false;
	memcpy(text, s, n);
	text[n] = '\0';
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)ss;

		if (!v1_ipv4_syntax(s, n) ||
		    inet_pton(AF_INET, text, &a->sin_addr) != 1)
			return false;
		a->sin_family = AF_INET;
		a->sin_port = htons(port);
		*len = sizeof(*a);
		return true;
	} else {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;

		/* Hex groups, colons, and a dotted tail (::ffff:a.b.c.d). */
		if (strspn(text, "0123456789abcdefABCDEF:.") != n ||
		    inet_pton(AF_INET6, text, &a->sin6_addr) != 1)
			return false;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons(port);
		*len = sizeof(*a);
		return true;
	}
}

/* The next field of a line: up to the next space or the end. */
static size_t
field_len(const char *s, size_t n)
{
	const char *sp = memchr(s, ' ', n);

	return sp != NULL ? (size_t)(sp - s) : n;
}

/*
 * "PROXY TCP4|TCP6 SRC DST SPORT DPORT" (the line without its CRLF):
 * exactly one space before each field, none after the last.
 */
static enum proxy_status
v1_line(const char *s, size_t n, struct proxy_header *h)
{
	const char *f[5];
	size_t fl[5], i = V1_SIG_LEN;
	uint16_t sport, dport;
	int family;

	assert(n >= V1_SIG_LEN);
	/* "UNKNOWN": the rest, if any, is ignored (spec 2.1). */
	if (n - i >= 7 && memcmp(s + i, "UNKNOWN", 7) == 0 &&
	    (n - i == 7 || s[i + 7] == ' ')) {
		h->kind = PROXY_KIND_UNKNOWN;
		return PROXY_DONE;
	}
	for (int k = 0; k < 5; k++) {
		if (k > 0) {
			if (i >= n || s[i] != ' ')
				return bad(h, "PROXY v1: fields missing");
			i++;
		}
		f[k] = s + i;
		fl[k] = field_len(s + i, n - i);
		if (fl[k] == 0)
			return bad(h, "PROXY v1: empty field");
		i += fl[k];
	}
	if (i != n)
		return bad(h, "PROXY v1: more than five fields");
	if (fl[0] == 4 && memcmp(f[0], "TCP4", 4) == 0)
		family = AF_INET;
	else if (fl[0] == 4 && memcmp(f[0], "TCP6", 4) == 0)
		family = AF_INET6;
	else
		return bad(h, "PROXY v1: protocol not TCP4, TCP6 or UNKNOWN");
	if (!v1_port(f[3], fl[3], &sport) || !v1_port(f[4], fl[4], &dport))
		return bad(h, "PROXY v1: bad port");
	if (!v1_addr(f[1], fl[1], family, sport, &h->src, &h->srclen) ||
	    !v1_addr(f[2], fl[2], family, dport, &h->dst, &h->dstlen))
		return bad(h, family == AF_INET ? "PROXY v1: bad IPv4 address" :
		    "PROXY v1: bad IPv6 address");
	h->kind = PROXY_KIND_ADDR;
	return PROXY_DONE;
}

static enum proxy_status
parse_v1(const char *s, size_t n, struct proxy_header *h)
{
	size_t lim = n < PROXY_V1_MAX ? n : PROXY_V1_MAX;

	h->version = 1;
	if (memcmp(s, v1_sig, n < V1_SIG_LEN ? n : V1_SIG_LEN) != 0)
		return bad(h, "not a PROXY header");
	/*
	 * Printable US-ASCII up to the CRLF. A CR must be the CRLF's (spec
	 * 2.1: no lone CR or LF ends the line); a byte that cannot belong
	 * to the line is refused as soon as it arrives.
	 */
	for (size_t i = 0; i < lim; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '\r') {
			/* The CRLF counts towards the 107 bytes. */
			if (i + 2 > PROXY_V1_MAX)
				return bad(h, "PROXY v1: no CRLF within 107 bytes");
			if (i + 1 == n)
				return PROXY_MORE;
			if (s[i + 1] != '\n')
				return bad(h, "PROXY v1: CR without LF");
			h->len = i + 2;
			return v1_line(s, i, h);
		}
		if (c == '\n')
			return bad(h, "PROXY v1: LF without CR");
		if (c < 0x20 || c > 0x7e)
			return bad(h, "PROXY v1: not printable US-ASCII");
	}
	if (n >= PROXY_V1_MAX)
		return bad(h, "PROXY v1: no CRLF within 107 bytes");
	return PROXY_MORE;
}

/* ---- version 2 ------------------------------------------------------- */

static uint16_t
get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/*
 * The type-length-value entries in p[off..end): whole, and a checksum
 * entry, if any, matching the header h[0..end).
 */
static enum proxy_status
v2_tlvs(const uint8_t *p, size_t off, size_t end, struct proxy_header *h)
{
	size_t crc_at = 0;
	uint32_t want, got;

	while (off < end) {
		size_t vlen;

		if (end - off < V2_TLV_HDR)
			return bad(h, "PROXY v2: TLV cut short");
		vlen = get16(p + off + 1);
		if (vlen > end - off - V2_TLV_HDR)
			return bad(h, "PROXY v2: TLV longer than the header");
		if (p[off] == V2_TYPE_CRC32C) {
			if (vlen != 4)
				return bad(h, "PROXY v2: CRC32C TLV not 4 bytes");
			if (crc_at != 0)
				return bad(h, "PROXY v2: two CRC32C TLVs");
			crc_at = off + V2_TLV_HDR;
		}
		off += V2_TLV_HDR + vlen;
	}
	if (crc_at == 0)
		return PROXY_DONE;
	/* Computed with the checksum's own bytes as zeros (spec 2.2.3). */
	want = (uint32_t)p[crc_at] << 24 | (uint32_t)p[crc_at + 1] << 16 |
	    (uint32_t)p[crc_at + 2] << 8 | p[crc_at + 3];
	got = proxy_crc32c(0, p, crc_at);
	got = proxy_crc32c(got, "\0\0\0\0", 4);
	got = proxy_crc32c(got, p + crc_at + 4, end - crc_at - 4);
	if (got != want)
		return bad(h, "PROXY v2: CRC32C mismatch");
	h->crc32c = true;
	return PROXY_DONE;
}

static enum proxy_status
parse_v2(const uint8_t *p, size_t n, struct proxy_header *h)
{
	unsigned cmd, fam, proto;
	size_t len, block;

	h->version = 2;
	if (memcmp(p, v2_sig, n < sizeof(v2_sig) ? n : sizeof(v2_sig)) != 0)
		return bad(h, "not a PROXY header");
	if (n > 12) {
		if (p[12] >> 4 != V2_VERSION)
			return bad(h, "PROXY v2: version not 2");
		cmd = p[12] & 0xf;
		if (cmd != V2_CMD_LOCAL && cmd != V2_CMD_PROXY)
			return bad(h, "PROXY v2: unknown command");
	}
	if (n > 13 && ((p[13] >> 4) > V2_FAM_UNIX ||
	    (p[13] & 0xf) > V2_PROTO_DGRAM))
		return bad(h, "PROXY v2: unknown address family or protocol");
	if (n < PROXY_V2_FIXED)
		return PROXY_MORE;
	len = get16(p + 14);
	if (len > PROXY_V2_LEN_MAX)
		return bad(h, "PROXY v2: header too long");
	if (n < PROXY_V2_FIXED + len)
		return PROXY_MORE;
	h->len = PROXY_V2_FIXED + len;
	cmd = p[12] & 0xf;
	fam = p[13] >> 4;
	proto = p[13] & 0xf;
	/* LOCAL: the block, whatever it holds, is skipped (spec 2.2). */
	if (cmd == V2_CMD_LOCAL) {
		h->kind = PROXY_KIND_LOCAL;
		return PROXY_DONE;
	}
	/* UNSPEC says nothing of the block's layout: all of it is skipped. */
	if (fam == V2_FAM_UNSPEC || proto == V2_PROTO_UNSPEC) {
		h->kind = PROXY_KIND_UNKNOWN;
		return PROXY_DONE;
	}
	block = fam == V2_FAM_INET ? V2_INET_BLOCK :
	    fam == V2_FAM_INET6 ? V2_INET6_BLOCK : PROXY_V2_UNIX_BLOCK;
	if (len < block)
		return bad(h, "PROXY v2: address block cut short");
	if (v2_tlvs(p, PROXY_V2_FIXED + block, h->len, h) != PROXY_DONE)
		return PROXY_BAD;
	/* Not a TCP connection's addresses: fall back to UNSPEC's meaning. */
	if (fam == V2_FAM_UNIX || proto != V2_PROTO_STREAM) {
		h->kind = PROXY_KIND_UNKNOWN;
		return PROXY_DONE;
	}
	p += PROXY_V2_FIXED;
	memset(&h->src, 0, sizeof(h->src));
	memset(&h->dst, 0, sizeof(h->dst));
	if (fam == V2_FAM_INET) {
		struct sockaddr_in *s = (struct sockaddr_in *)&h->src;
		struct sockaddr_in *d = (struct sockaddr_in *)&h->dst;

		s->sin_family = d->sin_family = AF_INET;
		memcpy(&s->sin_addr, p, 4);
		memcpy(&d->sin_addr, p + 4, 4);
		memcpy(&s->sin_port, p + 8, 2);
		memcpy(&d->sin_port, p + 10, 2);
		h->srclen = h->dstlen = sizeof(*s);
	} else {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)&h->src;
		struct sockaddr_in6 *d = (struct sockaddr_in6 *)&h->dst;

		s->sin6_family = d->sin6_family = AF_INET6;
		memcpy(&s->sin6_addr, p, 16);
		memcpy(&d->sin6_addr, p + 16, 16);
		memcpy(&s->sin6_port, p + 32, 2);
		memcpy(&d->sin6_port, p + 34, 2);
		h->srclen = h->dstlen = sizeof(*s);
	}
	h->kind = PROXY_KIND_ADDR;
	return PROXY_DONE;
}

/* ---- both ------------------------------------------------------------ */

enum proxy_status
proxy_parse(const void *p, size_t n, struct proxy_header *h)
{
	const uint8_t *b = p;
	enum proxy_status st;

	memset(h, 0, sizeof(*h));
	if (n == 0)
		return PROXY_MORE;
	assert(p != NULL);
	if (b[0] == v2_sig[0])
		st = parse_v2(b, n, h);
	else if (b[0] == (uint8_t)v1_sig[0])
		st = parse_v1(p, n, h);
	else
		st = bad(h, "not a PROXY header");
	/* The promise callers size their buffers by. */
	assert(st != PROXY_MORE || n < PROXY_HDR_MAX);
	assert(st != PROXY_DONE || (h->len >= V1_SIG_LEN + 2 && h->len <= n &&
	    h->len <= PROXY_HDR_MAX));
	return st;
}

const char *
proxy_describe(const struct proxy_header *h)
{
	bool v6 = h->src.ss_family == AF_INET6;

	if (h->version == 1)
		return h->kind == PROXY_KIND_UNKNOWN ? "v1 UNKNOWN" :
		    v6 ? "v1 TCP6" : "v1 TCP4";
	switch (h->kind) {
	case PROXY_KIND_ADDR:
		return v6 ? "v2 PROXY TCP6" : "v2 PROXY TCP4";
	case PROXY_KIND_LOCAL:
		return "v2 LOCAL";
	case PROXY_KIND_UNKNOWN:
		return "v2 PROXY UNSPEC";
	default:
		return "?";
	}
}
