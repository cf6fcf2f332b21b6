/*
 * Description: the routing table parses every transport form (and rejects
 * the rest with an exact message), parses policies and presets, finds the
 * most specific route (exact > nearest .parent > *), honours relay_host,
 * names destinations, and stays correct with 5,000 routes.
 */
#include "check.h"
#include "../../deliver/route.h"

#include <string.h>

/* ------------------------------------------------------------------ */

static const struct good_transport {
	const char *text;
	enum route_kind kind;
	const char *host;
	unsigned port;
	bool mx, bracketed, ipv6, unix_socket;
	int code;
	const char *reply;
} good_transports[] = {
	{ "smtp", ROUTE_SMTP, "", 0, true, false, false, false, 0, "" },
	{ "smtp:[mx.example.net]:2525", ROUTE_SMTP, "mx.example.net", 2525,
	    false, true, false, false, 0, "" },
	{ "smtp:[Relay.Example.NET]", ROUTE_SMTP, "relay.example.net", 25,
	    false, true, false, false, 0, "" },
	{ "smtp:relay.example.net:587", ROUTE_SMTP, "relay.example.net", 587,
	    true, false, false, false, 0, "" },
	{ "smtp:relay.example.net", ROUTE_SMTP, "relay.example.net", 25,
	    true, false, false, false, 0, "" },
	{ "smtp:[192.0.2.7]:26", ROUTE_SMTP, "192.0.2.7", 26,
	    false, true, false, false, 0, "" },
	{ "smtp:[::1]:2525", ROUTE_SMTP, "::1", 2525,
	    false, true, true, false, 0, "" },
	{ "smtp:[IPv6:2001:DB8:0::1]", ROUTE_SMTP, "2001:db8::1", 25,
	    false, true, true, false, 0, "" },
	{ "lmtp:[127.0.0.1]:24", ROUTE_LMTP, "127.0.0.1", 24,
	    false, true, false, false, 0, "" },
	{ "lmtp:mail.example.org:2003", ROUTE_LMTP, "mail.example.org", 2003,
	    false, false, false, false, 0, "" },
	{ "lmtp:[dovecot]", ROUTE_LMTP, "dovecot", 24,
	    false, true, false, false, 0, "" },
	{ "lmtp:inet:[10.0.0.2]:2424", ROUTE_LMTP, "10.0.0.2", 2424,
	    false, true, false, false, 0, "" },
	{ "lmtp:unix:/run/dovecot/lmtp", ROUTE_LMTP, "/run/dovecot/lmtp", 0,
	    false, false, false, true, 0, "" },
	{ "error:mailbox unavailable", ROUTE_ERROR, "", 0,
	    false, false, false, false, 550, "550 5.7.1 mailbox unavailable" },
	{ "error:550 5.1.1 no such user", ROUTE_ERROR, "", 0,
	    false, false, false, false, 550, "550 5.1.1 no such user" },
	{ "error:554 gone", ROUTE_ERROR, "", 0,
	    false, false, false, false, 554, "554 5.0.0 gone" },
	{ "error:450 4.2.1 try later", ROUTE_ERROR, "", 0,
	    false, false, false, false, 450, "450 4.2.1 try later" },
	{ "error:5.1.2 bad domain", ROUTE_ERROR, "", 0,
	    false, false, false, false, 550, "550 5.1.2 bad domain" },
	{ "discard", ROUTE_DISCARD, "", 0,
	    false, false, false, false, 0, "" },
	{ "discard:test traffic", ROUTE_DISCARD, "", 0,
	    false, false, false, false, 0, "test traffic" },
};

static const struct bad_transport {
	const char *text;
	const char *err;
} bad_transports[] = {
	{ "smpt", "unknown transport 'smpt'" },
	{ "SMTP", "unknown transport 'SMTP'" },
	{ "", "unknown transport ''" },
	{ "uucp:host", "unknown transport 'uucp'" },
	{ "smtp:[mx.example.net]:70000", "bad port '70000'" },
	{ "smtp:[mx.example.net]:0", "bad port '0'" },
	{ "smtp:[mx.example.net]:", "bad port ''" },
	{ "smtp:[mx.example.net]:25x", "bad port '25x'" },
	{ "smtp:[mx.example.net]:-1", "bad port '-1'" },
	{ "smtp:[mx.example.net", "missing ']' in '[mx.example.net'" },
	{ "smtp:[mx.example.net]x", "unexpected 'x' after next hop" },
	{ "smtp:", "empty next hop" },
	{ "smtp::25", "empty next hop" },
	{ "smtp:[]", "bad host ''" },
	{ "smtp:bad_host!:25", "bad host 'bad_host!'" },
	{ "smtp:-lead.example", "bad host '-lead.example'" },
	{ "smtp:a..b", "bad host 'a..b'" },
	{ "smtp:192.0.2.1:25", "address '192.0.2.1' needs brackets: "
	    "'[192.0.2.1]'" },
	{ "smtp:[300.1.1.1]", "bad IPv4 address '300.1.1.1'" },
	{ "smtp:[ipv6:zz::1]", "bad IPv6 address 'zz::1'" },
	{ "smtp:[fe80::1%eth0]", "bad IPv6 address 'fe80::1%eth0'" },
	{ "lmtp", "lmtp needs a next hop" },
	{ "lmtp:unix:run/lmtp", "socket path 'run/lmtp' is not absolute" },
	{ "lmtp:unix:/xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
	    "socket path longer than 107 bytes" },
	{ "error", "error transport needs a text" },
	{ "error:", "error transport needs a text" },
	{ "error:550 5.1.1", "error transport needs a text" },
	{ "error:250 ok", "error code must be 4xx or 5xx, not '250'" },
	{ "error:2.0.0 ok", "error code must be 4xx or 5xx, not '2.0.0'" },
	{ "error:550 4.1.1 mixed", "enhanced code '4.1.1' does not match 550" },
	{ "error:bad\r\nRSET", "control or non-ASCII character in transport" },
};

static void
run_good_transport(const struct good_transport *c)
{
	struct route_transport tr;
	char err[128] = "";

	CHECK_FATAL(route_parse_transport(c->text, &tr, err, sizeof(err)) == 0);
	CHECK(tr.kind == c->kind);
	CHECK(strcmp(tr.host, c->host) == 0);
	CHECK(tr.port == c->port);
	CHECK(tr.mx_lookup == c->mx);
	CHECK(tr.bracketed == c->bracketed);
	CHECK(tr.ipv6 == c->ipv6);
	CHECK(tr.unix_socket == c->unix_socket);
	CHECK(tr.code == c->code);
	CHECK(strcmp(tr.text, c->reply) == 0);
	if (strcmp(tr.text, c->reply) != 0)
		fprintf(stderr, "  text '%s'\n", tr.text);
	CHECK(err[0] == '\0');
}

static void
run_bad_transport(const struct bad_transport *c)
{
	struct route_transport tr;
	char err[128] = "";

	memset(&tr, 0x5a, sizeof(tr));
	CHECK(route_parse_transport(c->text, &tr, err, sizeof(err)) ==
	    ROUTE_ESYNTAX);
	CHECK(strcmp(err, c->err) == 0);
	if (strcmp(err, c->err) != 0)
		fprintf(stderr, "  err '%s'\n", err);
	/* A failed parse leaves out untouched. */
	CHECK(tr.port == 0x5a5a);
}

/* ------------------------------------------------------------------ */

static const struct policy_case {
	const char *key, *value;
	int rc;
	const char *err;
} policy_cases[] = {
	{ "max_connections", "5", 0, "" },
	{ "max_connections", "0", ROUTE_ESYNTAX, "bad max_connections '0'" },
	{ "max_connections", "10001", ROUTE_ESYNTAX,
	    "bad max_connections '10001'" },
	{ "max_connections", "-1", ROUTE_ESYNTAX, "bad max_connections '-1'" },
	{ "max_messages_per_connection", "100", 0, "" },
	{ "max_messages_per_connection", "1e3", ROUTE_ESYNTAX,
	    "bad max_messages_per_connection '1e3'" },
	{ "max_rate", "10/s", 0, "" },
	{ "max_rate", "10/d", ROUTE_ESYNTAX, "bad max_rate '10/d'" },
	{ "max_rate", "inf", ROUTE_ESYNTAX, "bad max_rate 'inf'" },
	{ "max_rate", "/s", ROUTE_ESYNTAX, "bad max_rate '/s'" },
	{ "max_age", "0", ROUTE_ESYNTAX, "bad max_age '0'" },
	{ "max_age", "3x", ROUTE_ESYNTAX, "bad max_age '3x'" },
	{ "max_age", "99999999d", ROUTE_ESYNTAX, "bad max_age '99999999d'" },
	{ "max_attempts", "3", 0, "" },
	{ "retry", "exponential:1h:5m", ROUTE_ESYNTAX,
	    "bad retry 'exponential:1h:5m'" },
	{ "retry", "1m,", ROUTE_ESYNTAX, "bad retry '1m,'" },
	{ "retry", "", ROUTE_ESYNTAX, "bad retry ''" },
	{ "retry", "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17", ROUTE_ESYNTAX,
	    "bad retry '1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17'" },
	{ "auth", "secret", ROUTE_ESYNTAX, "bad auth: want 'user:password'" },
	{ "auth", ":pw", ROUTE_ESYNTAX, "bad auth: want 'user:password'" },
	{ "auth", "user:", ROUTE_ESYNTAX, "bad auth: want 'user:password'" },
	{ "max_conections", "1", ROUTE_ESYNTAX,
	    "unknown policy 'max_conections'" },
};

static void
run_policy_case(const struct policy_case *c)
{
	struct route_policy p = route_policy_defaults(), before = p;
	char err[128] = "";

	CHECK(route_policy_set(&p, c->key, c->value, err, sizeof(err)) ==
	    c->rc);
	CHECK(strcmp(err, c->err) == 0);
	if (strcmp(err, c->err) != 0)
		fprintf(stderr, "  err '%s'\n", err);
	if (c->rc != 0)
		CHECK(memcmp(&p, &before, sizeof(p)) == 0);
}

static void
test_policy_defaults(void)
{
	struct route_policy p = route_policy_defaults();

	CHECK(p.max_connections == 20);
	CHECK(p.max_messages_per_connection == 0);
	CHECK(p.max_rate == 0);
	CHECK(p.max_age_s == 5 * 86400);
	CHECK(p.max_attempts == 0);
	CHECK(!p.auth);
	CHECK(p.retry.exponential);
	CHECK(p.retry.min_s == 300);
	CHECK(p.retry.max_s == 14400);
	/* 5m, 10m, 20m, 40m, 80m, 160m, then the 4h cap. */
	CHECK(route_retry_delay(&p.retry, 1) == 300);
	CHECK(route_retry_delay(&p.retry, 2) == 600);
	CHECK(route_retry_delay(&p.retry, 6) == 9600);
	CHECK(route_retry_delay(&p.retry, 7) == 14400);
	CHECK(route_retry_delay(&p.retry, 1000000) == 14400);
}

static void
test_policy_values(void)
{
	struct route_policy p = route_policy_defaults();
	char err[128] = "";

	CHECK(route_policy_set(&p, "max_rate", "600/m", err, sizeof(err)) == 0);
	CHECK(p.max_rate == 10.0);
	CHECK(route_policy_set(&p, "max_rate", "7", err, sizeof(err)) == 0);
	CHECK(p.max_rate == 7.0);
	CHECK(route_policy_set(&p, "max_rate", "0.5/s", err, sizeof(err)) == 0);
	CHECK(p.max_rate == 0.5);
	CHECK(route_policy_set(&p, "max_rate", "3600/h", err,
	    sizeof(err)) == 0);
	CHECK(p.max_rate == 1.0);
	CHECK(route_policy_set(&p, "max_age", "12h", err, sizeof(err)) == 0);
	CHECK(p.max_age_s == 43200);
	CHECK(route_policy_set(&p, "max_age", "90", err, sizeof(err)) == 0);
	CHECK(p.max_age_s == 90);
	CHECK(route_policy_set(&p, "max_attempts", "3", err, sizeof(err)) == 0);
	CHECK(p.max_attempts == 3);
	CHECK(route_policy_set(&p, "max_messages_per_connection", "100", err,
	    sizeof(err)) == 0);
	CHECK(p.max_messages_per_connection == 100);

	CHECK(route_policy_set(&p, "retry", "1m, 5m,15m ,1h", err,
	    sizeof(err)) == 0);
	CHECK(!p.retry.exponential);
	CHECK(p.retry.count == 4);
	CHECK(route_retry_delay(&p.retry, 1) == 60);
	CHECK(route_retry_delay(&p.retry, 2) == 300);
	CHECK(route_retry_delay(&p.retry, 3) == 900);
	CHECK(route_retry_delay(&p.retry, 4) == 3600);
	CHECK(route_retry_delay(&p.retry, 9) == 3600);

	CHECK(route_policy_set(&p, "retry", "exponential:30s:2m", err,
	    sizeof(err)) == 0);
	CHECK(p.retry.exponential);
	CHECK(route_retry_delay(&p.retry, 1) == 30);
	CHECK(route_retry_delay(&p.retry, 2) == 60);
	CHECK(route_retry_delay(&p.retry, 3) == 120);
	CHECK(route_retry_delay(&p.retry, 4) == 120);
	CHECK(route_policy_set(&p, "retry", "exponential", err,
	    sizeof(err)) == 0);
	CHECK(p.retry.min_s == 300 && p.retry.max_s == 14400);

	CHECK(route_policy_set(&p, "auth", "relay:pa:ss", err,
	    sizeof(err)) == 0);
	CHECK(p.auth);
	CHECK(strcmp(p.auth_user, "relay") == 0);
	CHECK(strcmp(p.auth_password, "pa:ss") == 0);
	CHECK(err[0] == '\0');
}

static void
test_presets(void)
{
	struct route_policy p = route_policy_defaults();
	char err[128] = "";

	CHECK(route_policy_preset(&p, "relaylim", err, sizeof(err)) == 0);
	CHECK(p.max_connections == 1);
	CHECK(p.max_attempts == 0);
	CHECK(route_policy_preset(&p, "oneshot", err, sizeof(err)) == 0);
	CHECK(p.max_attempts == 1);
	CHECK(p.max_connections == 1);
	p = route_policy_defaults();
	CHECK(route_policy_preset(&p, "oneshot", err, sizeof(err)) == 0);
	CHECK(p.max_connections == 20);
	CHECK(p.max_attempts == 1);
	CHECK(route_policy_preset(&p, "relaylimit", err, sizeof(err)) ==
	    ROUTE_ESYNTAX);
	CHECK(strcmp(err, "unknown preset 'relaylimit'") == 0);
}

/* ------------------------------------------------------------------ */

static void
add(struct route_table *t, const char *pattern, const char *transport)
{
	struct route_transport tr;
	struct route_policy p = route_policy_defaults();
	char err[128] = "";

	CHECK_FATAL(route_parse_transport(transport, &tr, err,
	    sizeof(err)) == 0);
	if (route_table_add(t, pattern, &tr, &p, err, sizeof(err)) != 0) {
		fprintf(stderr, "add %s: %s\n", pattern, err);
		CHECK_FATAL(0);
	}
}

/* Pattern of the route domain takes, or "-" for none. */
static const char *
lookup(const struct route_table *t, const char *domain)
{
	const struct route *r = route_lookup(t, domain);

	return r != NULL ? r->pattern : "-";
}

static const struct lookup_case {
	const char *domain, *pattern;
} lookup_cases[] = {
	{ "example.com", "example.com" },
	{ "EXAMPLE.Com", "example.com" },
	{ "example.com.", "example.com" },
	{ "mail.example.com", ".example.com" },
	{ "a.b.c.example.com", ".example.com" },
	{ "deep.sub.example.com", ".sub.example.com" },
	{ "x.deep.sub.example.com", ".sub.example.com" },
	{ "sub.example.com", ".example.com" },
	{ "exact.sub.example.com", "exact.sub.example.com" },
	{ "Mail.Example.COM.", ".example.com" },
	{ "notexample.com", "*" },
	{ "example.org", "*" },
	{ "com", "*" },
	{ "", "*" },
	{ ".", "*" },
};

static void
test_lookup_precedence(void)
{
	struct route_table t = { 0 };

	add(&t, "*", "smtp");
	add(&t, "Example.COM.", "lmtp:unix:/run/lmtp");
	add(&t, ".example.com", "smtp:[relay.example.com]");
	add(&t, ".SUB.example.com", "discard");
	add(&t, "exact.sub.example.com", "error:go away");
	for (size_t i = 0; i < NELEM(lookup_cases); i++) {
		const char *got = lookup(&t, lookup_cases[i].domain);

		CHECK(strcmp(got, lookup_cases[i].pattern) == 0);
		if (strcmp(got, lookup_cases[i].pattern) != 0)
			fprintf(stderr, "  %s -> %s\n", lookup_cases[i].domain,
			    got);
	}
	CHECK(route_lookup(&t, "example.com")->transport.kind == ROUTE_LMTP);
	CHECK(route_lookup(&t, "x.example.com")->transport.kind == ROUTE_SMTP);
	route_table_free(&t);
	CHECK(t.slots == NULL && t.cap == 0 && t.wildcard == NULL);
}

static void
test_lookup_without_wildcard(void)
{
	struct route_table t = { 0 };

	/* An empty table answers NULL without touching memory. */
	CHECK(route_lookup(&t, "example.com") == NULL);
	add(&t, ".example.com", "smtp");
	/* ".example.com" is the subdomains only, as Postfix transport(5). */
	CHECK(route_lookup(&t, "example.com") == NULL);
	CHECK(strcmp(lookup(&t, "a.example.com"), ".example.com") == 0);
	CHECK(route_lookup(&t, "a.example.net") == NULL);
	route_table_free(&t);
}

static void
test_add_errors(void)
{
	struct route_table t = { 0 };
	struct route_transport tr;
	struct route_policy p = route_policy_defaults();
	char err[128] = "";
	static const char *bad[] = { "", ".", "..", "*.example.com",
	    "exa mple.com", "a..b", "-x.com" };

	CHECK_FATAL(route_parse_transport("smtp", &tr, err, sizeof(err)) == 0);
	add(&t, "example.com", "smtp");
	add(&t, ".example.com", "smtp");
	add(&t, "*", "smtp");
	CHECK(route_table_add(&t, "EXAMPLE.com.", &tr, &p, err, sizeof(err)) ==
	    ROUTE_EDUP);
	CHECK(strcmp(err, "duplicate route 'example.com'") == 0);
	CHECK(route_table_add(&t, ".Example.com", &tr, &p, err, sizeof(err)) ==
	    ROUTE_EDUP);
	CHECK(strcmp(err, "duplicate route '.example.com'") == 0);
	CHECK(route_table_add(&t, "*", &tr, &p, err, sizeof(err)) ==
	    ROUTE_EDUP);
	CHECK(strcmp(err, "duplicate route '*'") == 0);
	for (size_t i = 0; i < NELEM(bad); i++) {
		char want[128];

		snprintf(want, sizeof(want), "bad route pattern '%s'", bad[i]);
		CHECK(route_table_add(&t, bad[i], &tr, &p, err, sizeof(err)) ==
		    ROUTE_ESYNTAX);
		CHECK(strcmp(err, want) == 0);
	}
	CHECK(t.count == 2);
	route_table_free(&t);
}

static void
test_relay_host(void)
{
	struct route_table t = { 0 };
	const struct route *r;
	char err[128] = "", dest[ROUTE_DEST_MAX + 1];

	CHECK(route_relay_host(&t, "[smarthost.example]:587", err,
	    sizeof(err)) == 0);
	add(&t, "local.example", "lmtp:unix:/run/lmtp");
	r = route_lookup(&t, "anywhere.example");
	CHECK_FATAL(r != NULL);
	CHECK(strcmp(r->pattern, "*") == 0);
	CHECK(r->transport.kind == ROUTE_SMTP);
	CHECK(r->transport.bracketed && !r->transport.mx_lookup);
	CHECK(strcmp(r->transport.host, "smarthost.example") == 0);
	CHECK(r->transport.port == 587);
	CHECK(route_destination(r, "anywhere.example", dest,
	    sizeof(dest)) == 0);
	CHECK(strcmp(dest, "[smarthost.example]:587") == 0);
	CHECK(route_relay_host(&t, "[other]:25", err, sizeof(err)) ==
	    ROUTE_EDUP);
	CHECK(strcmp(err, "relay_host conflicts with the '*' route") == 0);
	route_table_free(&t);

	CHECK(route_relay_host(&t, "[smarthost]:99999", err, sizeof(err)) ==
	    ROUTE_ESYNTAX);
	CHECK(strcmp(err, "bad port '99999'") == 0);
	CHECK(route_relay_host(&t, "", err, sizeof(err)) == ROUTE_ESYNTAX);
	CHECK(t.wildcard == NULL);
	add(&t, "*", "smtp");
	CHECK(route_relay_host(&t, "[smarthost]", err, sizeof(err)) ==
	    ROUTE_EDUP);
	route_table_free(&t);
}

static const struct dest_case {
	const char *transport, *domain, *dest;
	int rc;
} dest_cases[] = {
	{ "smtp", "Example.COM.", "example.com", 0 },
	{ "smtp", "", "", ROUTE_ENODEST },
	{ "smtp:[mx.example.net]", "x.org", "[mx.example.net]:25", 0 },
	{ "smtp:[mx.example.net]:2525", "x.org", "[mx.example.net]:2525", 0 },
	{ "smtp:relay.example.net:587", "x.org", "relay.example.net:587", 0 },
	{ "smtp:[IPv6:2001:db8:0:0::1]:26", "x.org", "[2001:db8::1]:26", 0 },
	{ "lmtp:[127.0.0.1]", "x.org", "[127.0.0.1]:24", 0 },
	{ "lmtp:store:2003", "x.org", "[store]:2003", 0 },
	{ "lmtp:unix:/run/dovecot/lmtp", "x.org", "/run/dovecot/lmtp", 0 },
	{ "error:nope", "x.org", "", ROUTE_ENODEST },
	{ "discard", "x.org", "", ROUTE_ENODEST },
};

static void
test_destination(void)
{
	struct route r = { 0 };
	char err[128] = "", out[ROUTE_DEST_MAX + 1], small[8];

	for (size_t i = 0; i < NELEM(dest_cases); i++) {
		const struct dest_case *c = &dest_cases[i];
		int rc;

		CHECK_FATAL(route_parse_transport(c->transport, &r.transport,
		    err, sizeof(err)) == 0);
		out[0] = '\0';
		rc = route_destination(&r, c->domain, out, sizeof(out));
		CHECK(rc == c->rc);
		if (rc == 0)
			CHECK(strcmp(out, c->dest) == 0);
		if (rc != c->rc || (rc == 0 && strcmp(out, c->dest) != 0))
			fprintf(stderr, "  %s %s -> %d '%s'\n", c->transport,
			    c->domain, rc, out);
	}
	CHECK_FATAL(route_parse_transport("smtp:[mx.example.net]", &r.transport,
	    err, sizeof(err)) == 0);
	CHECK(route_destination(&r, "x.org", small, sizeof(small)) ==
	    ROUTE_ESPACE);
}

/* 5,000 routes: every one found, nothing else matched, hash grows right. */
static void
test_large_table(void)
{
	struct route_table t = { 0 };
	char pattern[64], domain[96];
	unsigned misses = 0;

	for (unsigned i = 0; i < 2500; i++) {
		snprintf(pattern, sizeof(pattern), "d%u.example", i);
		add(&t, pattern, "smtp");
		snprintf(pattern, sizeof(pattern), ".p%u.example", i);
		add(&t, pattern, "smtp:[hub]:2525");
	}
	CHECK(t.count == 5000);
	CHECK(t.cap >= 10000);
	CHECK(route_lookup(&t, "d1.example.org") == NULL);
	for (unsigned i = 0; i < 2500; i++) {
		const struct route *r;

		snprintf(domain, sizeof(domain), "D%u.Example", i);
		snprintf(pattern, sizeof(pattern), "d%u.example", i);
		r = route_lookup(&t, domain);
		misses += r == NULL || strcmp(r->pattern, pattern) != 0;
		snprintf(domain, sizeof(domain), "host.p%u.example.", i);
		snprintf(pattern, sizeof(pattern), ".p%u.example", i);
		r = route_lookup(&t, domain);
		misses += r == NULL || strcmp(r->pattern, pattern) != 0 ||
		    r->transport.port != 2525;
		snprintf(domain, sizeof(domain), "p%u.example", i);
		misses += route_lookup(&t, domain) != NULL;
		snprintf(domain, sizeof(domain), "x.d%u.example", i);
		misses += route_lookup(&t, domain) != NULL;
	}
	CHECK(misses == 0);
	route_table_free(&t);
}

/* ------------------------------------------------------------------ */

static int failed;

int
main(void)
{
	static const struct check_case tests[] = {
		{ "policy_defaults", test_policy_defaults },
		{ "policy_values", test_policy_values },
		{ "presets", test_presets },
		{ "lookup_precedence", test_lookup_precedence },
		{ "lookup_without_wildcard", test_lookup_without_wildcard },
		{ "add_errors", test_add_errors },
		{ "relay_host", test_relay_host },
		{ "destination", test_destination },
		{ "large_table", test_large_table },
	};
	size_t i;
	int before;

	/* Keep RUN/PASS lines whole when stderr is merged into stdout. */
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (i = 0; i < NELEM(good_transports); i++) {
		before = check_failures;
		printf("RUN transport/%s\n", good_transports[i].text);
		run_good_transport(&good_transports[i]);
		printf("%s transport/%s\n", check_failures != before ? "FAIL" :
		    "PASS", good_transports[i].text);
		failed += check_failures != before;
	}
	for (i = 0; i < NELEM(bad_transports); i++) {
		before = check_failures;
		printf("RUN bad_transport/%zu\n", i);
		run_bad_transport(&bad_transports[i]);
		printf("%s bad_transport/%zu\n", check_failures != before ?
		    "FAIL" : "PASS", i);
		failed += check_failures != before;
	}
	for (i = 0; i < NELEM(policy_cases); i++) {
		before = check_failures;
		printf("RUN policy/%s=%s\n", policy_cases[i].key,
		    policy_cases[i].value);
		run_policy_case(&policy_cases[i]);
		printf("%s policy/%s=%s\n", check_failures != before ? "FAIL" :
		    "PASS", policy_cases[i].key, policy_cases[i].value);
		failed += check_failures != before;
	}
	failed += check_run_table(tests, NELEM(tests));
	printf("%d failed\n", failed);
	return check_done();
}
