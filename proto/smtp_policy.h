/*
 * smtp_policy.h - who may send what through the inbound session: which
 * recipients an outside client may name (relay_domains), which sender
 * addresses an authenticated user owns (allowed_from), and the addresses
 * of a message's From: header fields. Pure functions over strings.
 *
 * Names are compared without regard to case, and a domain's one trailing
 * dot is ignored ("Example.COM." is example.com), as routing does.
 */
#ifndef SLUICE_SMTP_POLICY_H
#define SLUICE_SMTP_POLICY_H

#include <stdbool.h>
#include <stddef.h>

#include "smtp_parse.h"

/*
 * One pattern as the configuration stores it: a domain ("example.com",
 * ".example.com" for its subdomains) in relay_domains; "user@domain" or
 * "@domain" in a user's allowed_from. Fixed size: lists of them are
 * plain arrays.
 */
struct smtp_pat {
	char s[SMTP_PATH_MAX + 2];
};

/* How much of a sender address a user must own (sender_restrictions). */
enum smtp_sender_rule {
	SMTP_SENDER_ANY = 0,	/* no restriction on MAIL FROM / From: */
	SMTP_SENDER_DOMAIN,	/* the domain must be one the user owns */
	SMTP_SENDER_EMAIL,	/* the address must be one the user owns */
};

/* What an authenticated user may send as: its allowed_from patterns. */
struct smtp_sender_id {
	const char *name;		/* the user name */
	const struct smtp_pat *pats;	/* allowed_from */
	size_t npats;
};

/*
 * Is domain one of pats (exact, or a subdomain of a ".parent" pattern)?
 * A pattern is a domain name; it never matches an address literal.
 */
bool smtp_domain_listed(const struct smtp_pat *pats, size_t n,
    const char *domain);

/*
 * May a client that is neither in allowed_networks nor authenticated
 * name this recipient? Only an address at one of the relay domains, and
 * only when its local part routes nowhere else: a '%' (the percent hack),
 * '!' (a bang path) or '@' (quoted) in it could make the next hop relay
 * on, as Postfix's allow_untrusted_routing = no refuses. A bare
 * "postmaster" has no domain and is not local here.
 */
bool smtp_rcpt_local(const struct smtp_pat *domains, size_t n,
    const char *addr);

/*
 * May user send with sender address addr (MAIL FROM, or a From: header
 * address) under rule? SMTP_SENDER_ANY allows all. Else the null sender
 * "" is allowed (as Postfix's reject_sender_login_mismatch allows it: a
 * bounce impersonates nobody; its From: is checked all the same), and
 * addr must match a pattern:
 *   EMAIL:  "user@domain" the same address, "@domain" any address there;
 *   DOMAIN: the domain of any pattern, "user@domain" or "@domain".
 * A user with no patterns owns its own name when that is an address.
 */
bool smtp_sender_allowed(enum smtp_sender_rule rule,
    const struct smtp_sender_id *id, const char *addr);

enum smtp_from_result {
	SMTP_FROM_OK = 0,	/* every address allowed (or no From: field) */
	SMTP_FROM_FORBIDDEN,	/* an address not allowed: in bad */
	SMTP_FROM_MALFORMED,	/* a From: field we cannot read safely */
};

/*
 * Check the addresses of every From: field in the header section of the
 * message msg[0..len) (RFC 5322 3.6.2, with its comments, quoted strings,
 * groups and folding; the header section ends at the first empty line or
 * the first line that is neither a field nor a continuation). ok() judges
 * each address. A field whose angle brackets do not pair up, or that
 * names no address, is MALFORMED: what another reader would take from it
 * is unknown. The first address refused is copied to bad (truncated).
 */
enum smtp_from_result smtp_from_check(const char *msg, size_t len,
    bool (*ok)(void *ctx, const char *addr), void *ctx, char *bad,
    size_t badlen);

#endif
