/*
 * net.c - numeric socket addresses and networks, as configuration writes
 * them: "host:port" / "[v6]:port" and CIDR prefixes. No DNS here: what
 * these parse must not depend on a lookup.
 */
#include "net.h"

#include <arpa/inet.h>
#include <assert.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Clear the bits of a (nbytes long) beyond prefix. */
static void
mask_bits(uint8_t *a, size_t nbytes, unsigned prefix)
{
	size_t i;

	for (i = 0; i < nbytes; i++) {
		unsigned bit = (unsigned)i * 8;

		if (bit >= prefix)
			a[i] = 0;
		else if (prefix - bit < 8)
			a[i] &= (uint8_t)(0xff << (8 - (prefix - bit)));
	}
}

static bool
prefix_match(const uint8_t *net, const uint8_t *a, unsigned prefix)
{
	unsigned full = prefix / 8, rest = prefix % 8;
	uint8_t mask;

	if (memcmp(net, a, full) != 0)
		return false;
	if (rest == 0)
		return true;
	mask = (uint8_t)(0xff << (8 - rest));
	return (net[full] & mask) == (a[full] & mask);
}

/* NULL: parsed into *out. Else why not, for the error message. */
const char *
cidr_parse_why(const char *s, struct cidr *out)
{
	char host[INET6_ADDRSTRLEN];
	const char *slash = strchr(s, '/');
	size_t alen = slash != NULL ? (size_t)(slash - s) : strlen(s);
	unsigned maxp;
	uint8_t m[16];

	memset(out, 0, sizeof *out);
	if (alen == 0 || alen >= sizeof host)
		return "not a numeric IPv4 or IPv6 address";
	memcpy(host, s, alen);
	host[alen] = '\0';
	if (inet_pton(AF_INET, host, out->addr) == 1) {
		out->family = AF_INET;
		maxp = 32;
	} else if (inet_pton(AF_INET6, host, out->addr) == 1) {
		out->family = AF_INET6;
		maxp = 128;
	} else {
		return "not a numeric IPv4 or IPv6 address";
	}
	out->prefix = maxp;
	if (slash != NULL) {
		const char *p = slash + 1;
		size_t n = strspn(p, "0123456789");

		if (n == 0 || n > 3 || p[n] != '\0')
			return "bad prefix length";
		out->prefix = (unsigned)strtoul(p, NULL, 10);
		if (out->prefix > maxp)
			return out->family == AF_INET ?
			    "prefix length must be at most 32" :
			    "prefix length must be at most 128";
	}
	/* 10.0.0.1/8 is almost always a typo for a host or for 10.0.0.0/8. */
	memcpy(m, out->addr, sizeof m);
	mask_bits(m, maxp / 8, out->prefix);
	if (memcmp(m, out->addr, maxp / 8) != 0)
		return "host bits set beyond the prefix";
	return NULL;
}

int
cidr_parse(const char *s, struct cidr *out)
{
	assert(s != NULL);
	assert(out != NULL);
	return cidr_parse_why(s, out) == NULL ? 0 : -1;
}

/*
 * A dual-stack socket sees IPv4 clients as ::ffff:a.b.c.d, so those are
 * also compared with the IPv4 networks; likewise an IPv4 client is compared
 * with IPv6 networks in its mapped form.
 */
int
cidr_match(const struct cidr *nets, size_t n, const struct sockaddr *sa)
{
	static const uint8_t mapped_prefix[12] = {
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff,
	};
	uint8_t a4[4], a6[16];
	bool have4 = false, have6 = false;
	size_t i;

	if (sa == NULL)
		return 0;
	if (sa->sa_family == AF_INET) {
		struct sockaddr_in sin;

		memcpy(&sin, sa, sizeof sin);
		memcpy(a4, &sin.sin_addr, 4);
		memcpy(a6, mapped_prefix, 12);
		memcpy(a6 + 12, a4, 4);
		have4 = have6 = true;
	} else if (sa->sa_family == AF_INET6) {
		struct sockaddr_in6 sin6;

		memcpy(&sin6, sa, sizeof sin6);
		memcpy(a6, &sin6.sin6_addr, 16);
		have6 = true;
		if (memcmp(a6, mapped_prefix, 12) == 0) {
			memcpy(a4, a6 + 12, 4);
			have4 = true;
		}
	} else {
		return 0;
	}
	for (i = 0; i < n; i++) {
		if (nets[i].family == AF_INET && have4 && nets[i].prefix <= 32 &&
		    prefix_match(nets[i].addr, a4, nets[i].prefix))
			return 1;
		if (nets[i].family == AF_INET6 && have6 && nets[i].prefix <= 128 &&
		    prefix_match(nets[i].addr, a6, nets[i].prefix))
			return 1;
	}
	return 0;
}

/*
 * "a.b.c.d:port" or "[v6]:port", numeric only: a listener must not depend
 * on DNS at startup. Port 0 is accepted (the kernel picks one; tests use it).
 */
int
address_parse(const char *s, struct sockaddr_storage *sa, socklen_t *len)
{
	char host[INET6_ADDRSTRLEN];
	const char *h, *port, *close;
	size_t hlen, plen, i;
	unsigned long p = 0;
	bool v6;

	assert(s != NULL && sa != NULL && len != NULL);
	memset(sa, 0, sizeof *sa);
	*len = 0;
	if (s[0] == '[') {
		close = strchr(s, ']');
		if (close == NULL || close[1] != ':')
			return -1;
		h = s + 1;
		hlen = (size_t)(close - h);
		port = close + 2;
		v6 = true;
	} else {
		close = strrchr(s, ':');
		if (close == NULL)
			return -1;
		h = s;
		hlen = (size_t)(close - s);
		port = close + 1;
		v6 = false;
	}
	if (hlen == 0 || hlen >= sizeof host)
		return -1;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	plen = strlen(port);
	if (plen == 0 || plen > 5)
		return -1;
	for (i = 0; i < plen; i++) {
		if (port[i] < '0' || port[i] > '9')
			return -1;
		p = p * 10 + (unsigned long)(port[i] - '0');
	}
	if (p > 65535)
		return -1;

	if (v6) {
		struct sockaddr_in6 sin6;

		memset(&sin6, 0, sizeof sin6);
		if (inet_pton(AF_INET6, host, &sin6.sin6_addr) != 1)
			return -1;
		sin6.sin6_family = AF_INET6;
		sin6.sin6_port = htons((uint16_t)p);
		memcpy(sa, &sin6, sizeof sin6);
		*len = sizeof sin6;
	} else {
		struct sockaddr_in sin;

		memset(&sin, 0, sizeof sin);
		if (inet_pton(AF_INET, host, &sin.sin_addr) != 1)
			return -1;
		sin.sin_family = AF_INET;
		sin.sin_port = htons((uint16_t)p);
		memcpy(sa, &sin, sizeof sin);
		*len = sizeof sin;
	}
	return 0;
}

const char *
net_addr_text(const struct sockaddr *sa, char *out, size_t cap)
{
	const struct sockaddr_in6 *a6 = (const void *)sa;
	const struct sockaddr_in *a4 = (const void *)sa;

	if (sa->sa_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr))
		inet_ntop(AF_INET, &a6->sin6_addr.s6_addr[12], out,
		    (socklen_t)cap);
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &a6->sin6_addr, out, (socklen_t)cap);
	else if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &a4->sin_addr, out, (socklen_t)cap);
	else
		snprintf(out, cap, "unknown");
	return out;
}
