/*
 * fuzz_proxy.c - libFuzzer target: arbitrary bytes as the first bytes of
 * a connection on a listener that expects a PROXY protocol header, for
 * proto/proxy.c's proxy_parse().
 *
 * Description: the whole input is what the connection sent. Properties
 * checked beyond "no crash":
 * - "more" is asked for only below PROXY_HDR_MAX bytes; a header is
 *   never longer than the input, nor than PROXY_HDR_MAX (v1: 107);
 * - a refusal has a reason, one line of printable ASCII;
 * - the verdict does not depend on how the bytes were cut: every prefix
 *   shorter than an accepted header asks for more, every longer one gets
 *   the same header; a refusal, once given, holds for every longer
 *   prefix (prefixes sampled on long inputs, to keep runs fast);
 * - addresses are what the header says: a v2 PROXY header's address
 *   block is the bytes of the result's addresses and ports; a v1 line's
 *   addresses and ports, printed again, parse to the same result.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../../proto/proxy.h"

static void
check_why(const char *why)
{
	assert(why != NULL && why[0] != '\0');
	for (const char *p = why; *p != '\0'; p++)
		assert((unsigned char)*p >= 0x20 && (unsigned char)*p <= 0x7e);
}

static void
check_same(const struct proxy_header *a, const struct proxy_header *b)
{
	assert(a->version == b->version);
	assert(a->kind == b->kind);
	assert(a->len == b->len);
	assert(a->crc32c == b->crc32c);
	assert(memcmp(&a->src, &b->src, sizeof(a->src)) == 0);
	assert(memcmp(&a->dst, &b->dst, sizeof(a->dst)) == 0);
}

/* The v2 address block, byte for byte, in the result. */
static void
check_v2_addresses(const uint8_t *d, const struct proxy_header *h)
{
	const uint8_t *blk = d + 16;

	if (h->src.ss_family == AF_INET) {
		const struct sockaddr_in *s = (const void *)&h->src;
		const struct sockaddr_in *t = (const void *)&h->dst;

		assert(d[13] == 0x11);
		assert(memcmp(&s->sin_addr, blk, 4) == 0);
		assert(memcmp(&t->sin_addr, blk + 4, 4) == 0);
		assert(memcmp(&s->sin_port, blk + 8, 2) == 0);
		assert(memcmp(&t->sin_port, blk + 10, 2) == 0);
	} else {
		const struct sockaddr_in6 *s = (const void *)&h->src;
		const struct sockaddr_in6 *t = (const void *)&h->dst;

		assert(h->src.ss_family == AF_INET6);
		assert(d[13] == 0x21);
		assert(memcmp(&s->sin6_addr, blk, 16) == 0);
		assert(memcmp(&t->sin6_addr, blk + 16, 16) == 0);
		assert(memcmp(&s->sin6_port, blk + 32, 2) == 0);
		assert(memcmp(&t->sin6_port, blk + 34, 2) == 0);
	}
}

/* Printed back in canonical form, a v1 result parses to itself. */
static void
check_v1_round_trip(const struct proxy_header *h)
{
	char sa[INET6_ADDRSTRLEN], da[INET6_ADDRSTRLEN], line[160];
	struct proxy_header again;
	unsigned sp, dp;
	int n;

	if (h->src.ss_family == AF_INET) {
		const struct sockaddr_in *s = (const void *)&h->src;
		const struct sockaddr_in *t = (const void *)&h->dst;

		assert(inet_ntop(AF_INET, &s->sin_addr, sa, sizeof(sa)));
		assert(inet_ntop(AF_INET, &t->sin_addr, da, sizeof(da)));
		sp = ntohs(s->sin_port);
		dp = ntohs(t->sin_port);
	} else {
		const struct sockaddr_in6 *s = (const void *)&h->src;
		const struct sockaddr_in6 *t = (const void *)&h->dst;

		assert(h->src.ss_family == AF_INET6);
		assert(inet_ntop(AF_INET6, &s->sin6_addr, sa, sizeof(sa)));
		assert(inet_ntop(AF_INET6, &t->sin6_addr, da, sizeof(da)));
		sp = ntohs(s->sin6_port);
		dp = ntohs(t->sin6_port);
	}
	n = snprintf(line, sizeof(line), "PROXY %s %s %s %u %u\r\n",
	    h->src.ss_family == AF_INET ? "TCP4" : "TCP6", sa, da, sp, dp);
	assert(n > 0 && (size_t)n < sizeof(line));
	/* inet_ntop's form of a v4-mapped address may not be shorter. */
	if ((size_t)n > PROXY_V1_MAX)
		return;
	assert(proxy_parse(line, (size_t)n, &again) == PROXY_DONE);
	assert(again.len == (size_t)n);
	assert(memcmp(&again.src, &h->src, sizeof(h->src)) == 0);
	assert(memcmp(&again.dst, &h->dst, sizeof(h->dst)) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxy_header h, p;
	enum proxy_status st, pst;
	size_t step;

	st = proxy_parse(data, size, &h);
	switch (st) {
	case PROXY_MORE:
		assert(size < PROXY_HDR_MAX);
		break;
	case PROXY_BAD:
		check_why(h.why);
		break;
	case PROXY_DONE:
		assert(h.len <= size && h.len <= PROXY_HDR_MAX);
		assert(h.version == 1 || h.version == 2);
		assert(h.version == 2 || h.len <= PROXY_V1_MAX);
		assert(!h.crc32c || h.version == 2);
		if (h.kind == PROXY_KIND_ADDR) {
			assert(h.src.ss_family == h.dst.ss_family);
			assert(h.srclen == h.dstlen);
			if (h.version == 2)
				check_v2_addresses(data, &h);
			else
				check_v1_round_trip(&h);
		} else {
			assert(h.src.ss_family == 0 && h.dst.ss_family == 0);
		}
		break;
	default:
		assert(!"bad status");
	}

	/* Prefixes: all of them when short, a sample when long. */
	step = size <= 256 ? 1 : size / 97 + 1;
	for (size_t k = 0; k < size; k += step) {
		pst = proxy_parse(data, k, &p);
		if (st == PROXY_DONE && k < h.len) {
			assert(pst == PROXY_MORE);
		} else if (st == PROXY_DONE) {
			assert(pst == PROXY_DONE);
			check_same(&p, &h);
		} else if (st == PROXY_MORE) {
			assert(pst == PROXY_MORE);
		} else if (pst == PROXY_DONE) {
			assert(!"a refused input has an accepted prefix");
		}
		/* Once refused, refused at every length after. */
		if (pst == PROXY_BAD)
			assert(st == PROXY_BAD);
	}
	if (st == PROXY_DONE && h.len > 0) {
		assert(proxy_parse(data, h.len - 1, &p) == PROXY_MORE);
		assert(proxy_parse(data, h.len, &p) == PROXY_DONE);
		check_same(&p, &h);
	}
	return 0;
}
