/*
 * proxy_check.h - what the PROXY header tests share: building version 2
 * headers byte by byte (written from the specification's layout, not from
 * the parser's code) and printing a parsed address. Needs check.h first.
 */
#ifndef SLUICE_PROXY_CHECK_H
#define SLUICE_PROXY_CHECK_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../../proto/proxy.h"

static const uint8_t pc_sig[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
};

/* A version 2 header under construction; big enough for any test. */
struct pc_v2 {
	uint8_t b[4096];
	size_t n;
	size_t crc_at;		/* value offset of a CRC32C TLV; 0: none */
};

/* Signature, ver_cmd, fam; the length is filled in by pc_v2_end(). */
static inline void
pc_v2_begin(struct pc_v2 *h, uint8_t ver_cmd, uint8_t fam)
{
	memset(h, 0, sizeof(*h));
	memcpy(h->b, pc_sig, 12);
	h->b[12] = ver_cmd;
	h->b[13] = fam;
	h->n = 16;
}

static inline void
pc_v2_bytes(struct pc_v2 *h, const void *p, size_t n)
{
	CHECK_FATAL(h->n + n <= sizeof(h->b));
	memcpy(h->b + h->n, p, n);
	h->n += n;
}

static inline void
pc_v2_u16(struct pc_v2 *h, uint16_t v)
{
	uint8_t b[2] = { (uint8_t)(v >> 8), (uint8_t)v };

	pc_v2_bytes(h, b, 2);
}

/* IPv4 source and destination with ports: the 12-byte block. */
static inline void
pc_v2_inet(struct pc_v2 *h, const char *src, const char *dst, uint16_t sp,
    uint16_t dp)
{
	uint8_t a[4];

	CHECK_FATAL(inet_pton(AF_INET, src, a) == 1);
	pc_v2_bytes(h, a, 4);
	CHECK_FATAL(inet_pton(AF_INET, dst, a) == 1);
	pc_v2_bytes(h, a, 4);
	pc_v2_u16(h, sp);
	pc_v2_u16(h, dp);
}

/* IPv6: the 36-byte block. */
static inline void
pc_v2_inet6(struct pc_v2 *h, const char *src, const char *dst, uint16_t sp,
    uint16_t dp)
{
	uint8_t a[16];

	CHECK_FATAL(inet_pton(AF_INET6, src, a) == 1);
	pc_v2_bytes(h, a, 16);
	CHECK_FATAL(inet_pton(AF_INET6, dst, a) == 1);
	pc_v2_bytes(h, a, 16);
	pc_v2_u16(h, sp);
	pc_v2_u16(h, dp);
}

/* One type-length-value entry; its value is len bytes of fill. */
static inline void
pc_v2_tlv(struct pc_v2 *h, uint8_t type, uint16_t len, uint8_t fill)
{
	uint8_t v[1024];

	CHECK_FATAL(len <= sizeof(v));
	memset(v, fill, len);
	pc_v2_bytes(h, &type, 1);
	pc_v2_u16(h, len);
	pc_v2_bytes(h, v, len);
}

/* A CRC32C entry, zero until pc_v2_end() computes it. */
static inline void
pc_v2_crc_tlv(struct pc_v2 *h)
{
	pc_v2_tlv(h, 0x03, 4, 0);
	h->crc_at = h->n - 4;
}

/* Length field = everything after the 16 fixed bytes; then the CRC. */
static inline void
pc_v2_end(struct pc_v2 *h)
{
	size_t len = h->n - 16;

	h->b[14] = (uint8_t)(len >> 8);
	h->b[15] = (uint8_t)len;
	if (h->crc_at != 0) {
		uint32_t c = proxy_crc32c(0, h->b, h->n);

		h->b[h->crc_at] = (uint8_t)(c >> 24);
		h->b[h->crc_at + 1] = (uint8_t)(c >> 16);
		h->b[h->crc_at + 2] = (uint8_t)(c >> 8);
		h->b[h->crc_at + 3] = (uint8_t)c;
	}
}

/* "a.b.c.d:port" or "[v6]:port" of a parsed address, for comparisons. */
static inline const char *
pc_addr(const struct sockaddr_storage *ss, char *out, size_t cap)
{
	char a[INET6_ADDRSTRLEN] = "?";

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s = (const void *)ss;

		inet_ntop(AF_INET, &s->sin_addr, a, sizeof(a));
		snprintf(out, cap, "%s:%u", a, ntohs(s->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const void *)ss;

		inet_ntop(AF_INET6, &s->sin6_addr, a, sizeof(a));
		snprintf(out, cap, "[%s]:%u", a, ntohs(s->sin6_port));
	} else {
		snprintf(out, cap, "family %d", (int)ss->ss_family);
	}
	return out;
}

#endif
