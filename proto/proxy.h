/*
 * proxy.h - the PROXY protocol header (versions 1 and 2), as a load
 * balancer such as HAProxy sends it before the client's first byte to say
 * whom the connection is really from. A pure parser: bytes in, verdict
 * out, no I/O. Specification: HAProxy's doc/proxy-protocol.txt.
 *
 * The version is told by the first bytes: "PROXY " is version 1 (one line
 * of text), the 12-byte binary signature is version 2. Anything else is
 * refused at once, so a client that speaks SMTP to a listener expecting a
 * header is turned away on its first read.
 *
 * Incremental: proxy_parse() is given every byte received so far, from
 * the first, and says PROXY_MORE (none of them is wrong yet, the header
 * is not complete), PROXY_DONE (h->len bytes are the header; whatever
 * follows is the client's) or PROXY_BAD (h->why says why). It only ever
 * asks for more while fewer than PROXY_HDR_MAX bytes are at hand, so a
 * caller that keeps a partial header needs no more room than that. It
 * refuses as soon as the bytes at hand prove the header wrong: a verdict
 * of PROXY_BAD never turns into anything else with more bytes, nor does
 * PROXY_DONE.
 *
 * What it accepts (and only that):
 *   v1  "PROXY TCP4 a.b.c.d a.b.c.d SPORT DPORT\r\n", "PROXY TCP6 ...",
 *       at most 107 bytes with the CRLF; exactly one space between the
 *       fields; IPv4 as four decimal numbers 0-255 without leading zeros;
 *       IPv6 as inet_pton() reads it; ports 0-65535 without leading zeros.
 *       "PROXY UNKNOWN" and anything up to the CRLF: keep the
 *       connection's own addresses.
 *   v2  signature, version 2, command LOCAL or PROXY, family UNSPEC, INET,
 *       INET6 or UNIX, protocol UNSPEC, STREAM or DGRAM, and at most
 *       PROXY_V2_LEN_MAX bytes after the 16 fixed ones. PROXY over TCP
 *       with INET or INET6 gives the addresses; LOCAL, and PROXY with
 *       UNSPEC, UNIX or a datagram protocol (which a TCP listener cannot
 *       use), keep the connection's own (the specification's fall-back to
 *       UNSPEC). After an INET, INET6 or UNIX address block the rest must
 *       be whole type-length-value entries; a PP2_TYPE_CRC32C entry must
 *       hold 4 bytes and the header's checksum (RFC 4960 appendix B), and
 *       may appear once. Other entries are skipped unread.
 *
 * IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are returned as AF_INET6,
 * as a dual-stack socket would give them; lib/net.c's matching and the
 * session's printing treat them as the IPv4 address.
 */
#ifndef SLUICE_PROXY_H
#define SLUICE_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* "PROXY UNKNOWN ffff:...:ffff ffff:...:ffff 65535 65535\r\n" (spec 2.1) */
#define PROXY_V1_MAX		107
#define PROXY_V2_FIXED		16	/* signature, ver/cmd, family, length */
#define PROXY_V2_UNIX_BLOCK	216	/* the largest address block */
/*
 * Bytes of type-length-value entries allowed beyond the largest address
 * block. What HAProxy sends (CRC32C 7, unique id up to 131, authority up
 * to 258, ALPN, SSL details with a certificate's CN, a namespace name)
 * stays well within; a peer that sends more is refused rather than read
 * without bound.
 */
#define PROXY_V2_TLV_MAX	1024
#define PROXY_V2_LEN_MAX	(PROXY_V2_UNIX_BLOCK + PROXY_V2_TLV_MAX)
#define PROXY_HDR_MAX		(PROXY_V2_FIXED + PROXY_V2_LEN_MAX)

enum proxy_status {
	PROXY_BAD = -1,		/* not a valid header: h->why */
	PROXY_MORE = 0,		/* valid so far; not complete */
	PROXY_DONE = 1,		/* h->len bytes are a complete header */
};

enum proxy_kind {
	PROXY_KIND_ADDR = 0,	/* src and dst are the client's connection */
	PROXY_KIND_LOCAL,	/* v2 LOCAL: the proxy's own (health check) */
	PROXY_KIND_UNKNOWN,	/* v1 UNKNOWN, or a v2 family/protocol a TCP
				 * listener cannot use: keep the connection's */
};

struct proxy_header {
	unsigned version;	/* 1 or 2; 0 until the first byte tells */
	enum proxy_kind kind;
	size_t len;		/* PROXY_DONE: the header's length */
	/* PROXY_KIND_ADDR: AF_INET or AF_INET6, port included. */
	struct sockaddr_storage src, dst;
	socklen_t srclen, dstlen;
	bool crc32c;		/* v2 carried a checksum, and it matched */
	const char *why;	/* PROXY_BAD: a static reason, for the log */
};

/*
 * Look at the first n bytes of a connection. p may be NULL when n is 0.
 * Fills *h on every call (why on PROXY_BAD, the rest on PROXY_DONE).
 */
enum proxy_status proxy_parse(const void *p, size_t n, struct proxy_header *h);

/* CRC32C (Castagnoli, RFC 4960 appendix B) of p[0..n), continuing crc
 * (0 to start). */
uint32_t proxy_crc32c(uint32_t crc, const void *p, size_t n);

/* "v1 TCP4", "v2 LOCAL"...: what kind of header it was, for the log. */
const char *proxy_describe(const struct proxy_header *h);

#endif
