/*
 * tls_policy.h - the TLS a route's level makes of one host: DANE
 * (RFC 7672) first, from what DNSSEC said of the host's MX and address
 * answers and of its TLSA records; then the route's own level. Pure: no
 * I/O, no state, so that the decision table is tested on its own
 * (tests/unit/t_tls_policy.c).
 *
 * A per-destination policy that comes later (MTA-STS) plugs in after
 * DANE: a host DANE decided is not decided again.
 */
#ifndef SLUICE_TLS_POLICY_H
#define SLUICE_TLS_POLICY_H

#include <stdbool.h>
#include <stddef.h>

#include "resolver.h"

enum tls_host_action {
	TLS_HOST_DIAL = 0,	/* use the host at level */
	TLS_HOST_DEFER_DNS,	/* skip it: DNS bogus or failed (4.4.3) */
	TLS_HOST_DEFER_NODANE,	/* skip it: dane-only, no DANE (4.7.5) */
};

struct tls_host_decision {
	enum tls_host_action action;
	/*
	 * DIAL: the enum route_tls level for this host: ROUTE_TLS_DANE
	 * means TLS authenticated by its usable TLSA records (nusable of
	 * them), never a fallback; ROUTE_TLS_ENCRYPT under dane is "TLSA
	 * records, none usable": TLS required, not authenticated.
	 */
	unsigned level;
	unsigned nusable;
	char why[160];		/* the defers: for logs, DSNs */
};

/*
 * Is a TLSA record usable for SMTP (RFC 7672 section 3.1.3: DANE-TA(2)
 * and DANE-EE(3) only; selectors 0 and 1; matching types 0, 1 and 2,
 * with a SHA2-256 or SHA2-512 digest of the right length)?
 */
bool tls_tlsa_usable(const struct dns_tlsa *rr);

/*
 * route_level: the route's effective level (never ROUTE_TLS_DEFAULT).
 * dnssec: the resolver's mode is not off. t: the resolved host.
 */
void tls_policy_for_host(unsigned route_level, bool dnssec,
    const struct resolve_target *t, struct tls_host_decision *out);

#endif
