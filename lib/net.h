/*
 * net.h - numeric socket addresses and CIDR networks.
 *
 * Parsers take text as an operator writes it in the configuration and
 * never look anything up; they return 0 or -1 (cidr_parse_why() says why,
 * for a config error message).
 */
#ifndef SLUICE_NET_H
#define SLUICE_NET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* An address family plus prefix: 10.0.0.0/8, ::1/128. */
struct cidr {
	int family;		/* AF_INET or AF_INET6 */
	uint8_t addr[16];	/* network byte order; first 4 bytes for v4 */
	unsigned prefix;	/* 0..32 or 0..128 */
};

/* Does the address match any network in the list? */
int cidr_match(const struct cidr *nets, size_t n, const struct sockaddr *sa);
/* Parse "10.0.0.0/8" or "::1" (full-length prefix). 0 ok, -1 bad. */
int cidr_parse(const char *s, struct cidr *out);
/* NULL when parsed into *out; else why not, for an error message. */
const char *cidr_parse_why(const char *s, struct cidr *out);
/* Parse "host:port" / "[v6]:port" into a socket address. 0 ok, -1 bad. */
int address_parse(const char *s, struct sockaddr_storage *sa, socklen_t *len);

/*
 * A client's address for logs and headers: "192.0.2.1", "2001:db8::1"; a
 * v4-mapped IPv6 address as the IPv4 one (a dual-stack socket's IPv4
 * client); "unknown" for another family. Returns out.
 */
const char *net_addr_text(const struct sockaddr *sa, char *out, size_t cap);

#endif
