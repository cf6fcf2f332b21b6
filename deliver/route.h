/*
 * route.h - the routing table: recipient domain -> transport + policy.
 *
 * Purpose: decide, for a recipient domain, how mail for it leaves sluice
 * (transport: smtp with MX lookup, a fixed smtp or lmtp next hop, an
 * error: refusal, or discard) and under which limits (policy). Modelled
 * on Postfix transport(5) with parent_domain_matches_subdomains off; the
 * operator's view is docs/routing.md.
 *
 * Contract: pure data, no I/O, no DNS, no globals. A table is filled
 * while the config loads and only read afterwards; lookups from several
 * threads are safe once nobody adds. A const struct route * returned by
 * route_lookup() stays valid until route_table_free() (routes never
 * move: the hash table holds pointers to them).
 *
 * Error returns: 0 on success or a negative ROUTE_E* code below. Every
 * function that takes err/errlen writes a one-line reason there on
 * failure (err may be NULL when errlen is 0).
 */
#ifndef SLUICE_ROUTE_H
#define SLUICE_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ROUTE_ESYNTAX	(-30201)	/* text does not parse */
#define ROUTE_EDUP	(-30202)	/* pattern already in the table */
#define ROUTE_ENOMEM	(-30203)	/* allocation failed */
#define ROUTE_ELIMIT	(-30204)	/* table holds ROUTE_TABLE_MAX routes */
#define ROUTE_ENODEST	(-30205)	/* error:/discard have no destination */
#define ROUTE_ESPACE	(-30206)	/* output buffer too small */

/* RFC 1035 section 2.3.4: 255 octets on the wire, 253 as text. */
#define ROUTE_DOMAIN_MAX	253
/* Room for a host name or an AF_UNIX path (sun_path is 108 bytes). */
#define ROUTE_HOST_MAX		255
#define ROUTE_PATH_MAX		107
/* RFC 5321 section 4.5.3.1.5: a reply line is 512 octets with CRLF. */
#define ROUTE_TEXT_MAX		510
#define ROUTE_AUTH_MAX		255
#define ROUTE_CAFILE_MAX	255
#define ROUTE_RETRY_MAX		16
#define ROUTE_TABLE_MAX		(1u << 20)
#define ROUTE_PORT_SMTP		25
#define ROUTE_PORT_LMTP		24
/* Longest destination key: "[" host "]:" port. */
#define ROUTE_DEST_MAX		(ROUTE_HOST_MAX + 9)

enum route_kind {
	ROUTE_SMTP = 1,		/* zero stays "not parsed" */
	ROUTE_LMTP,
	ROUTE_ERROR,
	ROUTE_DISCARD,
};

/*
 * A parsed transport. host is lower-case; for an IPv6 literal it is the
 * address in inet_ntop() form without brackets or "ipv6:" prefix.
 *   smtp               kind SMTP, host "", mx_lookup (of the recipient domain)
 *   smtp:host[:port]   kind SMTP, host, mx_lookup (of host)
 *   smtp:[host][:port] kind SMTP, host, no MX lookup
 *   lmtp:[host][:port] kind LMTP, host (never an MX lookup)
 *   lmtp:unix:/path    kind LMTP, unix, path in host
 *   error:TEXT         kind ERROR, code and the whole reply line in text
 *   discard[:TEXT]     kind DISCARD, text for the log (may be empty)
 */
struct route_transport {
	enum route_kind kind;
	bool mx_lookup;
	bool bracketed;		/* written as [host] */
	bool ipv6;		/* host is an IPv6 address literal */
	bool unix_socket;	/* lmtp:unix:, host holds the path */
	uint16_t port;		/* 0 for unix, error, discard */
	int code;		/* error: 4xx or 5xx reply code */
	char host[ROUTE_HOST_MAX + 1];
	char text[ROUTE_TEXT_MAX + 1];
};

/*
 * Retry schedule. A list gives the wait before attempt 2, 3, ...; its
 * last entry repeats. Exponential waits min_s, 2*min_s, 4*min_s, ...
 * capped at max_s. The default is exponential from 5 minutes to 4 hours.
 */
struct route_retry {
	bool exponential;
	uint32_t min_s;
	uint32_t max_s;
	unsigned count;
	uint32_t delay_s[ROUTE_RETRY_MAX];
};

/*
 * TLS to the next hop (docs/routing.md), Postfix's smtp_tls_security_level:
 * none; may (STARTTLS when offered, plaintext otherwise or when the
 * handshake fails); encrypt (TLS or no delivery, any certificate);
 * verify (TLS with a chain that verifies and names the host); dane and
 * dane-only (RFC 7672, per MX host: deliver_tls.c). DEFAULT:
 * the route says nothing, delivery.tls decides.
 */
enum route_tls {
	ROUTE_TLS_DEFAULT = 0,
	ROUTE_TLS_NONE,
	ROUTE_TLS_MAY,
	ROUTE_TLS_ENCRYPT,
	ROUTE_TLS_VERIFY,
	ROUTE_TLS_DANE,		/* DANE where DNSSEC allows, else may */
	ROUTE_TLS_DANE_ONLY,	/* DANE-authenticated TLS or no delivery */
};

/* MTA-STS for a route's MX delivery: mta_sts.enabled, or on, or off. */
enum route_sts {
	ROUTE_STS_DEFAULT = 0,
	ROUTE_STS_ON,
	ROUTE_STS_OFF,
};

/* Limits for one route; 0 means unlimited where noted. */
struct route_policy {
	unsigned max_connections;		/* >= 1; relaylim: 1 */
	unsigned max_messages_per_connection;	/* 0: unlimited */
	double max_rate;			/* per second, 0: none */
	struct route_retry retry;
	uint32_t max_age_s;			/* default 5 days */
	unsigned max_attempts;			/* 0: unlimited; oneshot: 1 */
	bool auth;
	char auth_user[ROUTE_AUTH_MAX + 1];
	char auth_password[ROUTE_AUTH_MAX + 1];
	bool auth_insecure;			/* AUTH even without TLS */
	uint8_t tls;				/* enum route_tls */
	bool tls_implicit;			/* TLS from the first byte (465) */
	char tls_ca_file[ROUTE_CAFILE_MAX + 1];	/* "": delivery.tls_ca_file */
	char tls_name[ROUTE_HOST_MAX + 1];	/* "": the next hop's name */
	uint8_t mta_sts;			/* enum route_sts */
};

struct route {
	char pattern[ROUTE_DOMAIN_MAX + 2];	/* "*", "x.org" or ".x.org" */
	uint64_t hash;
	struct route_transport transport;
	struct route_policy policy;
};

/*
 * All-zero is an empty table: struct route_table t = { 0 }; fill it with
 * route_table_add() and release it with route_table_free().
 */
struct route_table {
	struct route **slots;	/* open addressing, cap is a power of 2 */
	size_t cap;
	size_t count;		/* routes in slots, "*" not included */
	struct route *wildcard;	/* the "*" route */
};

/*
 * Parses a transport (syntax above and in docs/routing.md). Rejects an
 * unknown name, a bad host, a port outside 1..65535, a relative unix
 * path, an error: without text or with a code not 4xx/5xx, and any
 * control character. ROUTE_ESYNTAX on failure.
 */
int
route_parse_transport(const char *text, struct route_transport *out,
    char *err, size_t errlen);

/* Defaults: 20 connections, unlimited messages per connection and rate,
 * exponential retry 5m..4h, max_age 5 days, unlimited attempts, no auth. */
struct route_policy
route_policy_defaults(void);

/*
 * Sets one policy key from its text value. Keys: max_connections,
 * max_messages_per_connection, max_rate ("10/s", "600/m", "36000/h",
 * "10" = per second), retry ("exponential", "exponential:5m:4h",
 * "1m,5m,15m,1h"), max_age ("5d", "12h", "90m", "30s", "3600"),
 * max_attempts, auth ("user:password"), auth_insecure ("true"/"false"),
 * tls ("none", "may", "encrypt", "verify", "dane", "dane-only", or
 * "implicit": encrypt with
 * tls_implicit), tls_implicit, tls_ca_file (an absolute path), tls_name
 * (a host name), mta_sts ("true"/"false": MTA-STS for this route's MX
 * delivery). ROUTE_ESYNTAX on an unknown key or a bad value; the
 * policy is unchanged then.
 */
int
route_policy_set(struct route_policy *p, const char *key, const char *value,
    char *err, size_t errlen);

/*
 * Sets the credentials (user without control characters, password
 * without CR or LF, each 1..ROUTE_AUTH_MAX bytes). ROUTE_ESYNTAX with a
 * reason that never repeats the password.
 */
int
route_policy_auth(struct route_policy *p, const char *user,
    const char *password, char *err, size_t errlen);

/*
 * Keys that only make sense together, once all are set: tls_implicit
 * needs tls encrypt or verify (or none set); a unix socket takes no TLS
 * but none or may; auth with tls none needs auth_insecure. ROUTE_ESYNTAX
 * with the reason.
 */
int
route_policy_check(const struct route_policy *p,
    const struct route_transport *t, char *err, size_t errlen);

/* "none", "may", "encrypt", "verify"; NULL for DEFAULT or out of range. */
const char *
route_tls_name(unsigned tls);

/* Parses "none", "may", "encrypt", "verify": the enum value, or -1. */
int
route_tls_parse(const char *s);

/* Applies a named preset: "relaylim" (max_connections 1) or "oneshot"
 * (max_attempts 1). ROUTE_ESYNTAX on an unknown name. */
int
route_policy_preset(struct route_policy *p, const char *name,
    char *err, size_t errlen);

/* Seconds to wait after failed attempt number attempt (1 = the first). */
uint32_t
route_retry_delay(const struct route_retry *r, unsigned attempt);

/*
 * Adds a route. pattern is "domain", ".domain" (its subdomains only) or
 * "*"; it is lower-cased and a trailing dot dropped. Errors: ROUTE_ESYNTAX
 * (bad pattern), ROUTE_EDUP, ROUTE_ELIMIT, ROUTE_ENOMEM.
 */
int
route_table_add(struct route_table *t, const char *pattern,
    const struct route_transport *transport,
    const struct route_policy *policy, char *err, size_t errlen);

/*
 * The most specific route for domain: the exact domain, else the nearest
 * ".parent", else "*", else NULL. Case-insensitive, a trailing dot is
 * ignored. A domain longer than ROUTE_DOMAIN_MAX only matches "*".
 */
const struct route *
route_lookup(const struct route_table *t, const char *domain);

/*
 * relay_host: makes the "*" route smtp:ARG with default policy, e.g.
 * "[smarthost]:587". ROUTE_EDUP if "*" is already set, ROUTE_ESYNTAX if
 * ARG is not a valid smtp next hop.
 */
int
route_relay_host(struct route_table *t, const char *next_hop,
    char *err, size_t errlen);

/*
 * The name per-destination limits and shard ownership are keyed on:
 * "[host]:port" for a bracketed next hop, "host:port" for an smtp next hop
 * with MX lookup, the lower-cased recipient domain for plain smtp, the
 * socket path for lmtp:unix. ROUTE_ENODEST for error: and discard,
 * ROUTE_ESPACE if out is too small (ROUTE_DEST_MAX + 1 always fits).
 */
int
route_destination(const struct route *r, const char *domain, char *out,
    size_t outlen);

/* Frees every route and leaves t all-zero (empty, reusable). */
void
route_table_free(struct route_table *t);

#endif
