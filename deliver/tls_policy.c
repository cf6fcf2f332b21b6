/*
 * tls_policy.c - the TLS one MX host gets (tls_policy.h). The table, as
 * Postfix's smtp_tls_security_level = dane does (RFC 7672 section 2.2):
 *
 *	DNS of the host			dane		dane-only
 *	bogus MX or address answer	defer 4.4.3	defer 4.4.3
 *	insecure (or DNSSEC off)	may		defer 4.7.5
 *	secure, TLSA lookup failed	defer 4.4.3	defer 4.4.3
 *	secure, no TLSA			may		defer 4.7.5
 *	secure, TLSA none usable	encrypt		defer 4.7.5
 *	secure, usable TLSA		dane		dane
 *
 * "defer" skips the host: delivery goes on with the next MX host, and
 * defers the mail only when none is left. Other levels use the host as
 * they are, except that a bogus answer is never used.
 */
#include "tls_policy.h"

#include <assert.h>
#include <stdio.h>

#include "route.h"

bool
tls_tlsa_usable(const struct dns_tlsa *rr)
{
	if (rr->usage != 2 && rr->usage != 3)
		return false;
	if (rr->selector > 1)
		return false;
	switch (rr->mtype) {
	case 0:
		return rr->len > 0;
	case 1:
		return rr->len == 32;
	case 2:
		return rr->len == 64;
	default:
		return false;
	}
}

void
tls_policy_for_host(unsigned route_level, bool dnssec,
    const struct resolve_target *t, struct tls_host_decision *out)
{
	bool dane = route_level == ROUTE_TLS_DANE ||
	    route_level == ROUTE_TLS_DANE_ONLY;
	bool only = route_level == ROUTE_TLS_DANE_ONLY;

	assert(route_level != ROUTE_TLS_DEFAULT);
	out->action = TLS_HOST_DIAL;
	out->level = route_level;
	out->nusable = 0;
	out->why[0] = '\0';
	if (dnssec && t->sec == RESOLVE_SEC_BOGUS) {
		out->action = TLS_HOST_DEFER_DNS;
		snprintf(out->why, sizeof(out->why), "DNSSEC: the MX or "
		    "address records of %.100s are bogus", t->host);
		return;
	}
	if (!dane)
		return;
	if (!dnssec || t->sec != RESOLVE_SEC_SECURE ||
	    t->tlsa == RESOLVE_TLSA_UNASKED || t->tlsa == RESOLVE_TLSA_NONE) {
		if (only) {
			out->action = TLS_HOST_DEFER_NODANE;
			snprintf(out->why, sizeof(out->why), "no DANE TLSA "
			    "records for %.100s (%s)", t->host,
			    t->sec == RESOLVE_SEC_SECURE ? "none published" :
			    "its DNS is not DNSSEC-signed");
			return;
		}
		out->level = ROUTE_TLS_MAY;
		return;
	}
	if (t->tlsa == RESOLVE_TLSA_FAIL) {
		out->action = TLS_HOST_DEFER_DNS;
		snprintf(out->why, sizeof(out->why), "%s", t->tlsa_why[0] ?
		    t->tlsa_why : "TLSA lookup failed");
		return;
	}
	assert(t->tlsa == RESOLVE_TLSA_FOUND);
	for (unsigned i = 0; i < t->ntlsa; i++)
		out->nusable += tls_tlsa_usable(&t->tlsa_rr[i]);
	if (out->nusable > 0) {
		out->level = ROUTE_TLS_DANE;
		return;
	}
	/* RFC 7672 section 3.1.3 and Postfix: records, none usable. */
	if (only) {
		out->action = TLS_HOST_DEFER_NODANE;
		snprintf(out->why, sizeof(out->why), "no usable DANE TLSA "
		    "record for %.100s", t->host);
		return;
	}
	out->level = ROUTE_TLS_ENCRYPT;
}
