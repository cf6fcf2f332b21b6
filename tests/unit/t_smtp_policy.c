/*
 * Description: the inbound policy functions (proto/smtp_policy.c): relay
 * domain patterns, which recipients an outside client may name, which
 * sender addresses a user owns under each rule, and the addresses read
 * out of From: fields (comments, quoted strings, groups, folding; what
 * cannot be read safely is MALFORMED). Tables of cases, RUN/PASS/FAIL.
 */
#include <string.h>

#include "../../proto/smtp_policy.h"
#include "check.h"

static const struct smtp_pat domains[] = {
	{ "local.example" }, { ".sub.example" }, { "Trail.Example." },
};
#define NDOMAINS (sizeof(domains) / sizeof(domains[0]))

static void
relay_cases(void)
{
	static const struct {
		const char *addr;
		bool local;
	} cases[] = {
		{ "u@local.example", true },
		{ "u@LOCAL.Example", true },
		{ "u@local.example.", true },
		{ "u@trail.example", true },
		{ "u@trail.example.", true },
		{ "\"a b\"@local.example", true },
		{ "u@a.sub.example", true },
		{ "u@a.b.sub.example", true },
		{ "u@sub.example", false },	/* ".sub": subdomains only */
		{ "u@xsub.example", false },
		{ "u@local.example.evil", false },
		{ "u@evillocal.example", false },
		{ "u@local.example..", false },
		{ "u@other.example", false },
		{ "u%other.example@local.example", false },
		{ "other!u@local.example", false },
		{ "\"u@other.example\"@local.example", false },
		{ "\"u%x\"@local.example", false },
		{ "u@[192.0.2.1]", false },
		{ "postmaster", false },
		{ "", false },
		{ "@local.example", true },	/* the parser refuses it first */
	};
	size_t i;

	for (i = 0; i < NELEM(cases); i++) {
		int before = check_failures;

		printf("RUN rcpt '%s'\n", cases[i].addr);
		CHECK(smtp_rcpt_local(domains, NDOMAINS, cases[i].addr) ==
		    cases[i].local);
		printf("%s rcpt '%s'\n", check_failures == before ? "PASS" :
		    "FAIL", cases[i].addr);
	}
	printf("RUN no relay domains\n");
	CHECK(!smtp_rcpt_local(NULL, 0, "u@local.example"));
	CHECK(!smtp_domain_listed(domains, NDOMAINS, ""));
	CHECK(!smtp_domain_listed(domains, NDOMAINS, "."));
	CHECK(!smtp_domain_listed(domains, NDOMAINS, ".sub.example"));
}

static const struct smtp_pat alice_pats[] = {
	{ "alice@example.com" }, { "@alias.example" },
};

static void
sender_cases(void)
{
	static const struct {
		enum smtp_sender_rule rule;
		const char *addr;
		bool ok;
	} cases[] = {
		{ SMTP_SENDER_ANY, "anyone@anywhere.example", true },
		{ SMTP_SENDER_EMAIL, "alice@example.com", true },
		{ SMTP_SENDER_EMAIL, "ALICE@Example.COM", true },
		{ SMTP_SENDER_EMAIL, "alice@example.com.", true },
		{ SMTP_SENDER_EMAIL, "bob@example.com", false },
		{ SMTP_SENDER_EMAIL, "alic@example.com", false },
		{ SMTP_SENDER_EMAIL, "xalice@example.com", false },
		{ SMTP_SENDER_EMAIL, "alice@example.com.evil", false },
		{ SMTP_SENDER_EMAIL, "alice@sub.example.com", false },
		{ SMTP_SENDER_EMAIL, "x@alias.example", true },
		{ SMTP_SENDER_EMAIL, "x@sub.alias.example", false },
		{ SMTP_SENDER_EMAIL, "\"alice\"@example.com", false },
		{ SMTP_SENDER_EMAIL, "postmaster", false },
		{ SMTP_SENDER_EMAIL, "", true },	/* the null sender */
		{ SMTP_SENDER_DOMAIN, "bob@example.com", true },
		{ SMTP_SENDER_DOMAIN, "bob@EXAMPLE.com.", true },
		{ SMTP_SENDER_DOMAIN, "bob@alias.example", true },
		{ SMTP_SENDER_DOMAIN, "bob@other.example", false },
		{ SMTP_SENDER_DOMAIN, "bob@sub.example.com", false },
	};
	struct smtp_sender_id id = { "alice", alice_pats, 2 };
	struct smtp_sender_id self = { "carol@example.org", NULL, 0 };
	struct smtp_sender_id plain = { "dave", NULL, 0 };
	size_t i;

	for (i = 0; i < NELEM(cases); i++) {
		int before = check_failures;

		printf("RUN sender %d '%s'\n", (int)cases[i].rule,
		    cases[i].addr);
		CHECK(smtp_sender_allowed(cases[i].rule, &id, cases[i].addr) ==
		    cases[i].ok);
		printf("%s sender %d '%s'\n", check_failures == before ?
		    "PASS" : "FAIL", (int)cases[i].rule, cases[i].addr);
	}
	printf("RUN a user without allowed_from owns its name\n");
	CHECK(smtp_sender_allowed(SMTP_SENDER_EMAIL, &self,
	    "carol@example.org"));
	CHECK(!smtp_sender_allowed(SMTP_SENDER_EMAIL, &self,
	    "eve@example.org"));
	CHECK(smtp_sender_allowed(SMTP_SENDER_DOMAIN, &self,
	    "eve@example.org"));
	CHECK(!smtp_sender_allowed(SMTP_SENDER_EMAIL, &plain, "dave@x.y"));
	CHECK(smtp_sender_allowed(SMTP_SENDER_ANY, &plain, "dave@x.y"));
}

/* ok() for the From: cases: collects the addresses, allows alice's. */
struct seen {
	char all[1024];
};

static bool
collect(void *ctx, const char *addr)
{
	struct seen *s = ctx;
	struct smtp_sender_id id = { "alice", alice_pats, 2 };
	size_t n = strlen(s->all);

	snprintf(s->all + n, sizeof(s->all) - n, "%s%s", n ? "|" : "", addr);
	return addr[0] != '\0' &&
	    smtp_sender_allowed(SMTP_SENDER_EMAIL, &id, addr);
}

static void
from_cases(void)
{
	static const struct {
		const char *name;
		const char *msg;
		enum smtp_from_result res;
		const char *seen;	/* the addresses judged, '|'-joined */
	} cases[] = {
		{ "bare", "From: alice@example.com\r\n\r\nbody\r\n",
		  SMTP_FROM_OK, "alice@example.com" },
		{ "display name", "From: Alice <alice@example.com>\r\n\r\n",
		  SMTP_FROM_OK, "alice@example.com" },
		{ "case of the field name", "fROM: alice@example.com\r\n",
		  SMTP_FROM_OK, "alice@example.com" },
		{ "no From", "Subject: x\r\nTo: a@b.c\r\n\r\nFrom: bob@b.c\r\n",
		  SMTP_FROM_OK, "" },
		{ "From in the body", "Subject: x\r\n\r\nFrom: bob@b.c\r\n",
		  SMTP_FROM_OK, "" },
		{ "other user", "From: Bob <bob@example.com>\r\n",
		  SMTP_FROM_FORBIDDEN, "bob@example.com" },
		{ "display name looks like alice",
		  "From: alice@example.com <bob@evil.example>\r\n",
		  SMTP_FROM_FORBIDDEN, "bob@evil.example" },
		{ "quoted display name with <> and ,",
		  "From: \"a <alice@example.com>, b\" <bob@evil.example>\r\n",
		  SMTP_FROM_FORBIDDEN, "bob@evil.example" },
		{ "comment with an address",
		  "From: (alice@example.com) bob@evil.example\r\n",
		  SMTP_FROM_FORBIDDEN, "bob@evil.example" },
		{ "comment inside the address",
		  "From: alice(x)@example.com\r\n",
		  SMTP_FROM_OK, "alice@example.com" },
		{ "nested comments", "From: (a (b) c) alice@example.com\r\n",
		  SMTP_FROM_OK, "alice@example.com" },
		{ "list", "From: alice@example.com, x@alias.example\r\n",
		  SMTP_FROM_OK, "alice@example.com|x@alias.example" },
		{ "list with a stranger",
		  "From: alice@example.com, eve@evil.example\r\n",
		  SMTP_FROM_FORBIDDEN, "alice@example.com|eve@evil.example" },
		{ "folded", "From: alice@example.com,\r\n\teve@evil.example\r\n",
		  SMTP_FROM_FORBIDDEN, "alice@example.com|eve@evil.example" },
		{ "two From fields",
		  "From: alice@example.com\r\nSubject: x\r\nFrom: eve@evil.example\r\n",
		  SMTP_FROM_FORBIDDEN, "alice@example.com|eve@evil.example" },
		{ "obsolete space before the colon",
		  "From : eve@evil.example\r\n", SMTP_FROM_FORBIDDEN,
		  "eve@evil.example" },
		{ "group", "From: friends: alice@example.com, x@alias.example;\r\n",
		  SMTP_FROM_OK, "alice@example.com|x@alias.example" },
		{ "empty group", "From: undisclosed:;\r\n", SMTP_FROM_MALFORMED,
		  "" },
		{ "empty", "From:\r\n", SMTP_FROM_MALFORMED, "" },
		{ "<> is nobody", "From: <>\r\n", SMTP_FROM_FORBIDDEN, "" },
		{ "source route", "From: <@relay.example:alice@example.com>\r\n",
		  SMTP_FROM_OK, "alice@example.com" },
		{ "unclosed <", "From: <alice@example.com\r\n",
		  SMTP_FROM_MALFORMED, "" },
		{ "stray >", "From: alice@example.com>\r\n",
		  SMTP_FROM_MALFORMED, "" },
		{ "two angle addresses",
		  "From: <alice@example.com> <eve@evil.example>\r\n",
		  SMTP_FROM_MALFORMED, "" },
		{ "text after the angle address",
		  "From: <alice@example.com> eve@evil.example\r\n",
		  SMTP_FROM_MALFORMED, "" },
		{ "comment after the angle address",
		  "From: <alice@example.com> (Alice)\r\n",
		  SMTP_FROM_OK, "alice@example.com" },
		{ "unclosed comment", "From: (alice@example.com\r\n",
		  SMTP_FROM_MALFORMED, "" },
		{ "unclosed quote", "From: \"alice@example.com\r\n",
		  SMTP_FROM_MALFORMED, "" },
		{ "quoted local part", "From: \"alice\"@example.com\r\n",
		  SMTP_FROM_FORBIDDEN, "\"alice\"@example.com" },
		{ "address past 254 bytes",
		  "From: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@alias.example\r\n",
		  SMTP_FROM_FORBIDDEN, NULL },
		{ "header without a final CRLF", "From: alice@example.com",
		  SMTP_FROM_OK, "alice@example.com" },
		{ "From after the header ended",
		  "Subject: x\r\nnot a field\r\nFrom: eve@evil.example\r\n",
		  SMTP_FROM_OK, "" },
	};
	char bad[64];
	size_t i;

	for (i = 0; i < NELEM(cases); i++) {
		struct seen seen = { "" };
		enum smtp_from_result r;
		int before = check_failures;

		printf("RUN from %s\n", cases[i].name);
		bad[0] = '\0';
		r = smtp_from_check(cases[i].msg, strlen(cases[i].msg),
		    collect, &seen, bad, sizeof(bad));
		CHECK(r == cases[i].res);
		if (cases[i].seen != NULL)
			CHECK(strcmp(seen.all, cases[i].seen) == 0);
		if (r == SMTP_FROM_FORBIDDEN)
			CHECK(strlen(bad) < sizeof(bad));
		if (check_failures != before)
			fprintf(stderr, "  got %d, seen '%s', bad '%s'\n",
			    (int)r, seen.all, bad);
		printf("%s from %s\n", check_failures == before ? "PASS" :
		    "FAIL", cases[i].name);
	}
	printf("RUN a refused address is cleaned for the reply\n");
	CHECK(smtp_from_check("From: \"\x01x\"@evil.example\r\n", 28, collect,
	    &(struct seen){ "" }, bad, sizeof(bad)) == SMTP_FROM_FORBIDDEN);
	CHECK(strcmp(bad, "\"?x\"@evil.example") == 0);
}

int
main(void)
{
	relay_cases();
	sender_cases();
	from_cases();
	return check_done();
}
