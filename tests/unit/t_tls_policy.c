/*
 * Description: the TLS an MX host gets under each route level, from what
 * DNSSEC said of its MX/address answers and of its TLSA records (RFC 7672
 * section 2.2): the whole decision table, and which TLSA records are
 * usable for SMTP (DANE-TA/DANE-EE only, digests of the right length).
 */
#include "check.h"
#include "../../deliver/route.h"
#include "../../deliver/tls_policy.h"

#include <string.h>

enum tl { T_NONE, T_EE311, T_PKIX_ONLY, T_TA201, T_BADLEN };

static const struct tcase {
	const char *name;
	unsigned level;
	bool dnssec;
	uint8_t sec;
	uint8_t tlsa;
	enum tl recs;
	enum tls_host_action action;
	unsigned out_level;
	unsigned nusable;
} cases[] = {
	{ "dane/secure/usable", ROUTE_TLS_DANE, true, RESOLVE_SEC_SECURE,
	    RESOLVE_TLSA_FOUND, T_EE311, TLS_HOST_DIAL, ROUTE_TLS_DANE, 1 },
	{ "dane/secure/ta", ROUTE_TLS_DANE, true, RESOLVE_SEC_SECURE,
	    RESOLVE_TLSA_FOUND, T_TA201, TLS_HOST_DIAL, ROUTE_TLS_DANE, 1 },
	{ "dane/secure/pkix-only", ROUTE_TLS_DANE, true, RESOLVE_SEC_SECURE,
	    RESOLVE_TLSA_FOUND, T_PKIX_ONLY, TLS_HOST_DIAL, ROUTE_TLS_ENCRYPT,
	    0 },
	{ "dane/secure/bad-digest", ROUTE_TLS_DANE, true, RESOLVE_SEC_SECURE,
	    RESOLVE_TLSA_FOUND, T_BADLEN, TLS_HOST_DIAL, ROUTE_TLS_ENCRYPT, 0 },
	{ "dane/secure/found-none-parsed", ROUTE_TLS_DANE, true,
	    RESOLVE_SEC_SECURE, RESOLVE_TLSA_FOUND, T_NONE, TLS_HOST_DIAL,
	    ROUTE_TLS_ENCRYPT, 0 },
	{ "dane/secure/no-tlsa", ROUTE_TLS_DANE, true, RESOLVE_SEC_SECURE,
	    RESOLVE_TLSA_NONE, T_NONE, TLS_HOST_DIAL, ROUTE_TLS_MAY, 0 },
	{ "dane/secure/tlsa-fail", ROUTE_TLS_DANE, true, RESOLVE_SEC_SECURE,
	    RESOLVE_TLSA_FAIL, T_NONE, TLS_HOST_DEFER_DNS, ROUTE_TLS_DANE, 0 },
	{ "dane/insecure", ROUTE_TLS_DANE, true, RESOLVE_SEC_INSECURE,
	    RESOLVE_TLSA_UNASKED, T_NONE, TLS_HOST_DIAL, ROUTE_TLS_MAY, 0 },
	{ "dane/bogus", ROUTE_TLS_DANE, true, RESOLVE_SEC_BOGUS,
	    RESOLVE_TLSA_UNASKED, T_NONE, TLS_HOST_DEFER_DNS, ROUTE_TLS_DANE,
	    0 },
	/* DNSSEC off: nothing is secure, TLSA is never trusted. */
	{ "dane/dnssec-off", ROUTE_TLS_DANE, false, RESOLVE_SEC_SECURE,
	    RESOLVE_TLSA_FOUND, T_EE311, TLS_HOST_DIAL, ROUTE_TLS_MAY, 0 },
	{ "dane-only/usable", ROUTE_TLS_DANE_ONLY, true, RESOLVE_SEC_SECURE,
	    RESOLVE_TLSA_FOUND, T_EE311, TLS_HOST_DIAL, ROUTE_TLS_DANE, 1 },
	{ "dane-only/pkix-only", ROUTE_TLS_DANE_ONLY, true,
	    RESOLVE_SEC_SECURE, RESOLVE_TLSA_FOUND, T_PKIX_ONLY,
	    TLS_HOST_DEFER_NODANE, ROUTE_TLS_DANE_ONLY, 0 },
	{ "dane-only/no-tlsa", ROUTE_TLS_DANE_ONLY, true, RESOLVE_SEC_SECURE,
	    RESOLVE_TLSA_NONE, T_NONE, TLS_HOST_DEFER_NODANE,
	    ROUTE_TLS_DANE_ONLY, 0 },
	{ "dane-only/insecure", ROUTE_TLS_DANE_ONLY, true,
	    RESOLVE_SEC_INSECURE, RESOLVE_TLSA_UNASKED, T_NONE,
	    TLS_HOST_DEFER_NODANE, ROUTE_TLS_DANE_ONLY, 0 },
	{ "dane-only/tlsa-fail", ROUTE_TLS_DANE_ONLY, true,
	    RESOLVE_SEC_SECURE, RESOLVE_TLSA_FAIL, T_NONE, TLS_HOST_DEFER_DNS,
	    ROUTE_TLS_DANE_ONLY, 0 },
	/* Other levels ignore TLSA, but never use a bogus answer. */
	{ "may/usable", ROUTE_TLS_MAY, true, RESOLVE_SEC_SECURE,
	    RESOLVE_TLSA_FOUND, T_EE311, TLS_HOST_DIAL, ROUTE_TLS_MAY, 0 },
	{ "verify/insecure", ROUTE_TLS_VERIFY, true, RESOLVE_SEC_INSECURE,
	    RESOLVE_TLSA_UNASKED, T_NONE, TLS_HOST_DIAL, ROUTE_TLS_VERIFY, 0 },
	{ "encrypt/bogus", ROUTE_TLS_ENCRYPT, true, RESOLVE_SEC_BOGUS,
	    RESOLVE_TLSA_UNASKED, T_NONE, TLS_HOST_DEFER_DNS,
	    ROUTE_TLS_ENCRYPT, 0 },
	{ "none/bogus-dnssec-off", ROUTE_TLS_NONE, false, RESOLVE_SEC_BOGUS,
	    RESOLVE_TLSA_UNASKED, T_NONE, TLS_HOST_DIAL, ROUTE_TLS_NONE, 0 },
};

static void
fill(struct resolve_target *t, enum tl recs)
{
	struct dns_tlsa *r = t->tlsa_rr;

	t->ntlsa = 0;
	switch (recs) {
	case T_NONE:
		break;
	case T_EE311:
		r[0] = (struct dns_tlsa){ 3, 1, 1, 32, { 0xab } };
		r[1] = (struct dns_tlsa){ 1, 1, 1, 32, { 0xcd } };
		t->ntlsa = 2;
		break;
	case T_PKIX_ONLY:
		r[0] = (struct dns_tlsa){ 0, 0, 1, 32, { 1 } };
		r[1] = (struct dns_tlsa){ 1, 1, 2, 64, { 2 } };
		t->ntlsa = 2;
		break;
	case T_TA201:
		r[0] = (struct dns_tlsa){ 2, 0, 1, 32, { 3 } };
		t->ntlsa = 1;
		break;
	case T_BADLEN:
		r[0] = (struct dns_tlsa){ 3, 1, 1, 20, { 4 } };
		r[1] = (struct dns_tlsa){ 3, 2, 1, 32, { 5 } };
		r[2] = (struct dns_tlsa){ 3, 1, 3, 32, { 6 } };
		t->ntlsa = 3;
		break;
	}
}

static void
run_case(const struct tcase *c)
{
	struct resolve_target t;
	struct tls_host_decision d;

	memset(&t, 0, sizeof(t));
	snprintf(t.host, sizeof(t.host), "mx.example.test");
	t.sec = c->sec;
	t.tlsa = c->tlsa;
	if (c->tlsa == RESOLVE_TLSA_FAIL)
		snprintf(t.tlsa_why, sizeof(t.tlsa_why), "TLSA lookup for "
		    "mx.example.test failed: SERVFAIL");
	fill(&t, c->recs);
	memset(&d, 0x55, sizeof(d));
	tls_policy_for_host(c->level, c->dnssec, &t, &d);
	CHECK(d.action == c->action);
	if (c->action == TLS_HOST_DIAL) {
		CHECK(d.level == c->out_level);
		CHECK(d.nusable == c->nusable);
		CHECK(d.why[0] == '\0');
	} else {
		/* A defer always says why, naming the host. */
		CHECK(strstr(d.why, "mx.example.test") != NULL);
	}
	if (c->action == TLS_HOST_DEFER_DNS && c->tlsa == RESOLVE_TLSA_FAIL)
		CHECK(strstr(d.why, "SERVFAIL") != NULL);
}

static void
test_usable(void)
{
	struct dns_tlsa r = { 3, 1, 1, 32, { 0 } };

	CHECK(tls_tlsa_usable(&r));
	r.usage = 2;
	CHECK(tls_tlsa_usable(&r));
	r.usage = 1;
	CHECK(!tls_tlsa_usable(&r));
	r.usage = 0;
	CHECK(!tls_tlsa_usable(&r));
	r.usage = 4;
	CHECK(!tls_tlsa_usable(&r));
	r.usage = 3;
	r.mtype = 2;
	CHECK(!tls_tlsa_usable(&r));	/* SHA2-512 needs 64 octets */
	r.len = 64;
	CHECK(tls_tlsa_usable(&r));
	r.mtype = 0;
	CHECK(tls_tlsa_usable(&r));	/* full data */
	r.selector = 2;
	CHECK(!tls_tlsa_usable(&r));
}

int
main(void)
{
	int failed = 0, before;

	for (size_t i = 0; i < NELEM(cases); i++) {
		before = check_failures;
		printf("RUN %s\n", cases[i].name);
		run_case(&cases[i]);
		printf("%s %s\n", check_failures != before ? "FAIL" : "PASS",
		    cases[i].name);
		failed += check_failures != before;
	}
	before = check_failures;
	test_usable();
	printf("%s usable\n", check_failures != before ? "FAIL" : "PASS");
	return check_done();
}
