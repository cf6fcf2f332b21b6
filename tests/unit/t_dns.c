/*
 * Description: proto/dns builds queries (id, RD, EDNS0 1232 with DO, the
 * asked name and type) and parses answers built with ldns: MX with
 * several preferences, null MX, CNAME chains (and loops), NXDOMAIN and
 * NODATA with their SOA TTL, the TC and AD bits, records of other owners
 * ignored, the Extended DNS Error of a SERVFAIL (RFC 8914), mismatched
 * id/question/opcode rejected, truncated and random garbage rejected
 * without crashing.
 */
#include "check.h"
#include "../../proto/dns.h"

#include <arpa/inet.h>
#include <ldns/ldns.h>
#include <string.h>

static uint8_t wire[DNS_MSG_MAX];
static struct dns_answer ans;

struct msg {
	uint16_t id;
	const char *qname;		/* NULL: no question */
	ldns_rr_type qtype;
	uint8_t rcode;
	bool tc, ad, query;
	const char *an[40];		/* zone-file lines, NULL-terminated */
	const char *ns[4];
	size_t ede_len;			/* an EDE option (RFC 8914): */
	const uint8_t *ede;		/* octets: INFO-CODE, EXTRA-TEXT */
};

/* Builds m with ldns into wire; returns the length. */
static size_t
build(const struct msg *m)
{
	ldns_pkt *p = ldns_pkt_new();
	uint8_t *w = NULL;
	size_t n = 0;

	CHECK_FATAL(p != NULL);
	ldns_pkt_set_id(p, m->id);
	ldns_pkt_set_qr(p, !m->query);
	ldns_pkt_set_rd(p, true);
	ldns_pkt_set_ra(p, true);
	ldns_pkt_set_tc(p, m->tc);
	ldns_pkt_set_ad(p, m->ad);
	ldns_pkt_set_rcode(p, m->rcode);
	if (m->qname != NULL) {
		ldns_rr *q = ldns_rr_new();

		CHECK_FATAL(q != NULL);
		ldns_rr_set_owner(q, ldns_dname_new_frm_str(m->qname));
		ldns_rr_set_type(q, m->qtype);
		ldns_rr_set_class(q, LDNS_RR_CLASS_IN);
		ldns_rr_set_question(q, true);
		CHECK_FATAL(ldns_pkt_push_rr(p, LDNS_SECTION_QUESTION, q));
	}
	for (size_t i = 0; i < NELEM(m->an) && m->an[i] != NULL; i++) {
		ldns_rr *rr = NULL;

		CHECK_FATAL(ldns_rr_new_frm_str(&rr, m->an[i], 0, NULL, NULL) ==
		    LDNS_STATUS_OK);
		CHECK_FATAL(ldns_pkt_push_rr(p, LDNS_SECTION_ANSWER, rr));
	}
	for (size_t i = 0; i < NELEM(m->ns) && m->ns[i] != NULL; i++) {
		ldns_rr *rr = NULL;

		CHECK_FATAL(ldns_rr_new_frm_str(&rr, m->ns[i], 0, NULL, NULL) ==
		    LDNS_STATUS_OK);
		CHECK_FATAL(ldns_pkt_push_rr(p, LDNS_SECTION_AUTHORITY, rr));
	}
	if (m->ede != NULL) {
		ldns_edns_option_list *l = ldns_edns_option_list_new();
		ldns_edns_option *o = ldns_edns_new_from_data(LDNS_EDNS_EDE,
		    m->ede_len, m->ede);

		CHECK_FATAL(l != NULL && o != NULL);
		CHECK_FATAL(ldns_edns_option_list_push(l, o));
		ldns_pkt_set_edns_udp_size(p, 1232);
		ldns_pkt_set_edns_option_list(p, l);
	}
	CHECK_FATAL(ldns_pkt2wire(&w, p, &n) == LDNS_STATUS_OK);
	CHECK_FATAL(n <= sizeof(wire));
	memcpy(wire, w, n);
	free(w);
	ldns_pkt_free(p);
	return n;
}

static int
parse(const struct msg *m, uint16_t id, const char *qname, uint16_t qtype)
{
	size_t n = build(m);

	return dns_answer_parse(wire, n, id, qname, qtype, &ans);
}

/* ------------------------------------------------------------------ */

static void
test_query(void)
{
	static const struct {
		const char *name;
		uint16_t type;
	} qs[] = {
		{ "example.test", DNS_T_MX },
		{ "mx1.example.test.", DNS_T_A },
		{ "Mixed.Case.TEST", DNS_T_AAAA },
		{ "_25._tcp.mx.example.test", DNS_T_TLSA },
	};
	uint8_t buf[DNS_QUERY_MAX];
	size_t len;

	puts("RUN query");
	for (size_t i = 0; i < NELEM(qs); i++) {
		ldns_pkt *p = NULL;
		ldns_rr *q;
		char *owner;
		char want[DNS_NAME_MAX + 2];

		CHECK(dns_query_build(buf, sizeof(buf), (uint16_t)(0x1234 + i),
		    qs[i].name, qs[i].type, &len) == 0);
		CHECK_FATAL(ldns_wire2pkt(&p, buf, len) == LDNS_STATUS_OK);
		CHECK(ldns_pkt_id(p) == 0x1234 + i);
		CHECK(!ldns_pkt_qr(p));
		CHECK(ldns_pkt_rd(p));
		CHECK(ldns_pkt_get_opcode(p) == LDNS_PACKET_QUERY);
		CHECK(ldns_pkt_edns(p));
		CHECK(ldns_pkt_edns_udp_size(p) == DNS_UDP_SIZE);
		CHECK(ldns_pkt_edns_do(p));
		CHECK(ldns_rr_list_rr_count(ldns_pkt_question(p)) == 1);
		CHECK(ldns_pkt_ancount(p) == 0);
		q = ldns_rr_list_rr(ldns_pkt_question(p), 0);
		CHECK(ldns_rr_get_type(q) == qs[i].type);
		CHECK(ldns_rr_get_class(q) == LDNS_RR_CLASS_IN);
		owner = ldns_rdf2str(ldns_rr_owner(q));
		snprintf(want, sizeof(want), "%s", qs[i].name);
		if (want[strlen(want) - 1] != '.')
			strcat(want, ".");
		CHECK(owner != NULL && strcmp(owner, want) == 0);
		free(owner);
		ldns_pkt_free(p);
	}
	/* A short buffer is refused, not overrun. */
	CHECK(dns_query_build(buf, 20, 1, "example.test", DNS_T_MX, &len) ==
	    DNS_ESPACE);
	CHECK(len == 0);
	puts("PASS query");
}

static void
test_names(void)
{
	char label64[80], long_name[300];
	static const char *const bad[] = {
		"", ".", "a..b", ".a", "a b", "a\\.b", "exa\"mple.test",
		"ex@mple.test", "a.b..", "\xc3\xa9.test",
	};
	static const char *const good[] = {
		"a", "a.", "example.test", "_25._tcp.x.test", "xn--bcher-kva.test",
		"1.2.3.4.in-addr.arpa",
	};
	uint8_t buf[DNS_QUERY_MAX];
	size_t len;

	puts("RUN names");
	for (size_t i = 0; i < NELEM(bad); i++) {
		CHECK(dns_name_check(bad[i]) == DNS_ESYNTAX);
		CHECK(dns_query_build(buf, sizeof(buf), 1, bad[i], DNS_T_A,
		    &len) == DNS_ESYNTAX);
	}
	for (size_t i = 0; i < NELEM(good); i++)
		CHECK(dns_name_check(good[i]) == 0);
	memset(label64, 'a', 64);
	strcpy(label64 + 64, ".test");
	CHECK(dns_name_check(label64) == DNS_ESYNTAX);
	label64[0] = '.';
	CHECK(dns_name_check(label64 + 1) == 0);	/* 63 octets */
	/* 254 octets of text is one too many; 253 fits. */
	memset(long_name, 0, sizeof(long_name));
	for (size_t i = 0; i < 254; i++)
		long_name[i] = (i % 50 == 49) ? '.' : 'b';
	CHECK(dns_name_check(long_name) == DNS_ESYNTAX);
	long_name[253] = '\0';
	CHECK(dns_name_check(long_name) == 0);
	CHECK(dns_query_build(buf, sizeof(buf), 1, long_name, DNS_T_A,
	    &len) == 0);
	puts("PASS names");
}

static void
test_mx(void)
{
	static const struct msg m = {
		.id = 77, .qname = "x.test.", .qtype = LDNS_RR_TYPE_MX,
		.an = {
			"x.test. 3600 IN MX 20 MX2.X.Test.",
			"x.test. 600 IN MX 10 mx1.x.test.",
			"x.test. 3600 IN MX 10 mx1b.x.test.",
			"x.test. 3600 IN MX 30 mail.elsewhere.test.",
			/* Other owners are not ours. */
			"y.test. 1 IN MX 0 evil.test.",
			"mx1.x.test. 5 IN A 192.0.2.1",
		},
	};

	puts("RUN mx");
	CHECK(parse(&m, 77, "x.test", DNS_T_MX) == 0);
	CHECK(ans.kind == DNS_KIND_DATA);
	CHECK(ans.rcode == LDNS_RCODE_NOERROR);
	CHECK(!ans.tc && !ans.ad && !ans.null_mx);
	CHECK(ans.n == 4);
	CHECK(ans.skipped == 0);
	CHECK(ans.ttl == 600);
	CHECK(strcmp(ans.name, "x.test") == 0);
	CHECK(ans.rr.mx[0].pref == 20);
	CHECK(strcmp(ans.rr.mx[0].host, "mx2.x.test") == 0);
	CHECK(ans.rr.mx[1].pref == 10);
	CHECK(strcmp(ans.rr.mx[1].host, "mx1.x.test") == 0);
	CHECK(strcmp(ans.rr.mx[2].host, "mx1b.x.test") == 0);
	CHECK(ans.rr.mx[3].pref == 30);
	CHECK(strcmp(ans.rr.mx[3].host, "mail.elsewhere.test") == 0);
	/* The question name matches whatever its case. */
	CHECK(parse(&m, 77, "X.TEST", DNS_T_MX) == 0);
	CHECK(ans.n == 4);
	puts("PASS mx");
}

static void
test_null_mx(void)
{
	static const struct msg null1 = {
		.id = 5, .qname = "nomail.test.", .qtype = LDNS_RR_TYPE_MX,
		.an = { "nomail.test. 300 IN MX 0 ." },
	};
	static const struct msg mixed = {
		.id = 5, .qname = "mixed.test.", .qtype = LDNS_RR_TYPE_MX,
		.an = { "mixed.test. 300 IN MX 0 .",
			"mixed.test. 300 IN MX 10 mx.mixed.test." },
	};
	static const struct msg pref10 = {
		.id = 5, .qname = "odd.test.", .qtype = LDNS_RR_TYPE_MX,
		.an = { "odd.test. 300 IN MX 10 ." },
	};

	puts("RUN null_mx");
	CHECK(parse(&null1, 5, "nomail.test", DNS_T_MX) == 0);
	CHECK(ans.kind == DNS_KIND_DATA);
	CHECK(ans.null_mx);
	CHECK(ans.n == 0);
	CHECK(ans.ttl == 300);
	/* A "." among real exchanges is not a null MX: it is dropped. */
	CHECK(parse(&mixed, 5, "mixed.test", DNS_T_MX) == 0);
	CHECK(!ans.null_mx);
	CHECK(ans.n == 1 && ans.skipped == 1);
	CHECK(strcmp(ans.rr.mx[0].host, "mx.mixed.test") == 0);
	/* RFC 7505 wants preference 0. */
	CHECK(parse(&pref10, 5, "odd.test", DNS_T_MX) == 0);
	CHECK(!ans.null_mx);
	CHECK(ans.n == 0 && ans.skipped == 1);
	puts("PASS null_mx");
}

static void
test_cname(void)
{
	static const struct msg chain = {
		.id = 9, .qname = "www.x.test.", .qtype = LDNS_RR_TYPE_A,
		.an = {
			"www.x.test. 900 IN CNAME a.x.test.",
			"a.x.test. 120 IN CNAME B.x.test.",
			"b.x.test. 3600 IN A 192.0.2.7",
			"b.x.test. 3600 IN A 192.0.2.8",
			"c.x.test. 3600 IN A 192.0.2.66",
		},
	};
	static const struct msg loop = {
		.id = 9, .qname = "l1.x.test.", .qtype = LDNS_RR_TYPE_A,
		.an = {
			"l1.x.test. 60 IN CNAME l2.x.test.",
			"l2.x.test. 60 IN CNAME l1.x.test.",
		},
	};
	static const struct msg dangling = {
		.id = 9, .qname = "d.x.test.", .qtype = LDNS_RR_TYPE_MX,
		.rcode = LDNS_RCODE_NXDOMAIN,
		.an = { "d.x.test. 60 IN CNAME gone.x.test." },
		.ns = { "x.test. 600 IN SOA ns.x.test. h.x.test. 1 2 3 4 30" },
	};
	struct msg longer = {
		.id = 9, .qname = "c0.x.test.", .qtype = LDNS_RR_TYPE_A,
	};
	char lines[DNS_CNAME_MAX + 2][64];
	size_t i;

	puts("RUN cname");
	CHECK(parse(&chain, 9, "www.x.test", DNS_T_A) == 0);
	CHECK(ans.kind == DNS_KIND_DATA);
	CHECK(ans.ncname == 2);
	CHECK(strcmp(ans.name, "b.x.test") == 0);
	CHECK(ans.n == 2);
	CHECK(ans.ttl == 120);
	CHECK(memcmp(ans.rr.addr[0], "\xc0\x00\x02\x07", 4) == 0);
	CHECK(memcmp(ans.rr.addr[1], "\xc0\x00\x02\x08", 4) == 0);
	CHECK(parse(&loop, 9, "l1.x.test", DNS_T_A) == 0);
	CHECK(ans.kind == DNS_KIND_ERROR);
	CHECK(ans.chain_too_long);
	CHECK(parse(&dangling, 9, "d.x.test", DNS_T_MX) == 0);
	CHECK(ans.kind == DNS_KIND_NXDOMAIN);
	CHECK(strcmp(ans.name, "gone.x.test") == 0);
	CHECK(ans.ttl == 30);
	/* Exactly DNS_CNAME_MAX links are followed; one more is too long. */
	for (size_t links = DNS_CNAME_MAX; links <= DNS_CNAME_MAX + 1;
	    links++) {
		for (i = 0; i < links; i++) {
			snprintf(lines[i], sizeof(lines[i]),
			    "c%zu.x.test. 60 IN CNAME c%zu.x.test.", i, i + 1);
			longer.an[i] = lines[i];
		}
		snprintf(lines[i], sizeof(lines[i]),
		    "c%zu.x.test. 60 IN A 192.0.2.1", i);
		longer.an[i] = lines[i];
		longer.an[i + 1] = NULL;
		CHECK(parse(&longer, 9, "c0.x.test", DNS_T_A) == 0);
		if (links == DNS_CNAME_MAX) {
			CHECK(ans.kind == DNS_KIND_DATA);
			CHECK(ans.n == 1);
		} else {
			CHECK(ans.kind == DNS_KIND_ERROR);
			CHECK(ans.chain_too_long);
		}
	}
	puts("PASS cname");
}

static void
test_negative(void)
{
	static const struct msg nx = {
		.id = 3, .qname = "nope.test.", .qtype = LDNS_RR_TYPE_MX,
		.rcode = LDNS_RCODE_NXDOMAIN,
		.ns = { "test. 900 IN SOA ns.test. host.test. 1 7200 900 "
			"86400 300" },
	};
	static const struct msg nodata = {
		.id = 3, .qname = "aonly.test.", .qtype = LDNS_RR_TYPE_MX,
		.ns = { "aonly.test. 60 IN SOA ns.test. host.test. 1 7200 900 "
			"86400 3600" },
	};
	static const struct msg nosoa = {
		.id = 3, .qname = "aonly.test.", .qtype = LDNS_RR_TYPE_AAAA,
	};
	static const struct msg servfail = {
		.id = 3, .qname = "broken.test.", .qtype = LDNS_RR_TYPE_MX,
		.rcode = LDNS_RCODE_SERVFAIL,
	};
	static const struct msg refused = {
		.id = 3, .qname = "broken.test.", .qtype = LDNS_RR_TYPE_A,
		.rcode = LDNS_RCODE_REFUSED,
		.an = { "broken.test. 60 IN A 192.0.2.1" },
	};

	puts("RUN negative");
	CHECK(parse(&nx, 3, "nope.test", DNS_T_MX) == 0);
	CHECK(ans.kind == DNS_KIND_NXDOMAIN);
	CHECK(ans.rcode == LDNS_RCODE_NXDOMAIN);
	CHECK(ans.ttl == 300);		/* min(SOA TTL, MINIMUM) */
	CHECK(ans.n == 0);
	CHECK(parse(&nodata, 3, "aonly.test", DNS_T_MX) == 0);
	CHECK(ans.kind == DNS_KIND_NODATA);
	CHECK(ans.ttl == 60);
	CHECK(parse(&nosoa, 3, "aonly.test", DNS_T_AAAA) == 0);
	CHECK(ans.kind == DNS_KIND_NODATA);
	CHECK(ans.ttl == 0);
	CHECK(parse(&servfail, 3, "broken.test", DNS_T_MX) == 0);
	CHECK(ans.kind == DNS_KIND_ERROR);
	CHECK(ans.rcode == LDNS_RCODE_SERVFAIL);
	CHECK(strcmp(dns_rcode_name(ans.rcode), "SERVFAIL") == 0);
	/* Records in a REFUSED answer are not believed. */
	CHECK(parse(&refused, 3, "broken.test", DNS_T_A) == 0);
	CHECK(ans.kind == DNS_KIND_ERROR);
	CHECK(ans.n == 0);
	puts("PASS negative");
}

/* RFC 8914: the Extended DNS Error a validating resolver adds. */
static void
test_ede(void)
{
	static const uint8_t expired[] = { 0, 7, 'e', 'x', 'p', '\n' };
	static const uint8_t short_opt[] = { 7 };
	static const uint8_t big[] = { 0xff, 0xfe };
	static const struct msg sf = {
		.id = 21, .qname = "expired.test.", .qtype = LDNS_RR_TYPE_MX,
		.rcode = LDNS_RCODE_SERVFAIL, .ede = expired,
		.ede_len = sizeof(expired),
	};
	static const struct msg bad = {
		.id = 22, .qname = "x.test.", .qtype = LDNS_RR_TYPE_MX,
		.rcode = LDNS_RCODE_SERVFAIL, .ede = short_opt,
		.ede_len = sizeof(short_opt),
	};
	static const struct msg unknown = {
		.id = 23, .qname = "x.test.", .qtype = LDNS_RR_TYPE_TLSA,
		.rcode = LDNS_RCODE_SERVFAIL, .ede = big,
		.ede_len = sizeof(big),
	};
	static const struct msg none = {
		.id = 24, .qname = "x.test.", .qtype = LDNS_RR_TYPE_MX,
		.rcode = LDNS_RCODE_SERVFAIL,
	};

	puts("RUN ede");
	CHECK(parse(&sf, 21, "expired.test", DNS_T_MX) == 0);
	CHECK(ans.kind == DNS_KIND_ERROR && ans.rcode == 2);
	CHECK(ans.ede == 7);
	CHECK(strcmp(dns_ede_name(ans.ede), "Signature Expired") == 0);
	CHECK(dns_ede_dnssec(ans.ede));
	/* An option too short for its INFO-CODE is no EDE. */
	CHECK(parse(&bad, 22, "x.test", DNS_T_MX) == 0);
	CHECK(ans.ede == DNS_EDE_NONE);
	CHECK(parse(&unknown, 23, "x.test", DNS_T_TLSA) == 0);
	CHECK(ans.ede == 0xfffe);
	CHECK(strcmp(dns_ede_name(ans.ede), "Unknown Error") == 0);
	CHECK(!dns_ede_dnssec(ans.ede));
	CHECK(parse(&none, 24, "x.test", DNS_T_MX) == 0);
	CHECK(ans.ede == DNS_EDE_NONE);
	CHECK(strcmp(dns_ede_name(6), "DNSSEC Bogus") == 0);
	CHECK(strcmp(dns_ede_name(24), "Invalid Data") == 0);
	CHECK(dns_ede_dnssec(6) && dns_ede_dnssec(1) && !dns_ede_dnssec(22));
	CHECK(!dns_ede_dnssec(DNS_EDE_NONE));
	puts("PASS ede");
}

static void
test_flags(void)
{
	static const struct msg tc = {
		.id = 11, .qname = "big.test.", .qtype = LDNS_RR_TYPE_MX,
		.tc = true,
	};
	static const struct msg ad = {
		.id = 12, .qname = "signed.test.", .qtype = LDNS_RR_TYPE_AAAA,
		.ad = true,
		.an = { "signed.test. 300 IN AAAA 2001:db8::25" },
	};
	static const struct msg big = {
		.id = 13, .qname = "big.test.", .qtype = LDNS_RR_TYPE_MX,
		.tc = true,
		.an = { "big.test. 300 IN MX 10 mx1.big.test.",
			"big.test. 300 IN MX 10 mx2.big.test." },
	};
	uint8_t v6[16];
	size_t n;

	puts("RUN flags");
	CHECK(parse(&tc, 11, "big.test", DNS_T_MX) == 0);
	CHECK(ans.tc);
	CHECK(parse(&ad, 12, "signed.test", DNS_T_AAAA) == 0);
	CHECK(ans.ad && !ans.tc);
	CHECK(ans.kind == DNS_KIND_DATA && ans.n == 1);
	inet_pton(AF_INET6, "2001:db8::25", v6);
	CHECK(memcmp(ans.rr.addr[0], v6, 16) == 0);
	/* Cut mid-record (as some servers truncate): still TC. */
	n = build(&big);
	CHECK(dns_answer_parse(wire, n - 5, 13, "big.test", DNS_T_MX,
	    &ans) == 0);
	CHECK(ans.tc);
	CHECK(ans.kind == DNS_KIND_ERROR);
	/* The same cut without TC is garbage. */
	wire[2] &= (uint8_t)~LDNS_TC_MASK;
	CHECK(dns_answer_parse(wire, n - 5, 13, "big.test", DNS_T_MX,
	    &ans) == DNS_EFORMAT);
	puts("PASS flags");
}

static void
test_mismatch(void)
{
	static const struct msg ok = {
		.id = 100, .qname = "x.test.", .qtype = LDNS_RR_TYPE_A,
		.an = { "x.test. 300 IN A 192.0.2.1" },
	};
	static const struct msg query = {
		.id = 100, .qname = "x.test.", .qtype = LDNS_RR_TYPE_A,
		.query = true,
	};
	static const struct msg noq = {
		.id = 100, .qtype = LDNS_RR_TYPE_A,
		.an = { "x.test. 300 IN A 192.0.2.1" },
	};
	uint16_t id = 0;
	size_t n;

	puts("RUN mismatch");
	CHECK(parse(&ok, 100, "x.test", DNS_T_A) == 0);
	CHECK(parse(&ok, 101, "x.test", DNS_T_A) == DNS_EMISMATCH);
	CHECK(parse(&ok, 100, "y.test", DNS_T_A) == DNS_EMISMATCH);
	CHECK(parse(&ok, 100, "x.test.y", DNS_T_A) == DNS_EMISMATCH);
	CHECK(parse(&ok, 100, "x.test", DNS_T_AAAA) == DNS_EMISMATCH);
	CHECK(parse(&ok, 100, "bad name", DNS_T_A) == DNS_EMISMATCH);
	CHECK(parse(&query, 100, "x.test", DNS_T_A) == DNS_EFORMAT);
	CHECK(parse(&noq, 100, "x.test", DNS_T_A) == DNS_EMISMATCH);
	/* Opcode other than QUERY. */
	n = build(&ok);
	wire[2] = (uint8_t)(wire[2] | (LDNS_PACKET_STATUS << 3));
	CHECK(dns_answer_parse(wire, n, 100, "x.test", DNS_T_A, &ans) ==
	    DNS_EMISMATCH);
	/* dns_message_id wants a response header. */
	n = build(&ok);
	CHECK(dns_message_id(wire, n, &id) == 0 && id == 100);
	CHECK(dns_message_id(wire, 11, &id) == DNS_EFORMAT);
	n = build(&query);
	CHECK(dns_message_id(wire, n, &id) == DNS_EFORMAT);
	puts("PASS mismatch");
}

static void
test_bounds(void)
{
	struct msg m = { .id = 1, .qname = "many.test.",
	    .qtype = LDNS_RR_TYPE_A };
	char lines[40][64];
	static const struct msg tlsa = {
		.id = 2, .qname = "_25._tcp.mx.test.", .qtype = LDNS_RR_TYPE_TLSA,
		.an = {
			"_25._tcp.mx.test. 300 IN TLSA 3 1 1 "
			"0102030405060708090a0b0c0d0e0f10"
			"1112131415161718191a1b1c1d1e1f20",
		},
	};
	static const struct msg badmx = {
		.id = 3, .qname = "weird.test.", .qtype = LDNS_RR_TYPE_MX,
		.an = { "weird.test. 300 IN MX 10 sp\\032ace.test.",
			"weird.test. 300 IN MX 20 ok.test." },
	};

	puts("RUN bounds");
	for (size_t i = 0; i < 40; i++) {
		snprintf(lines[i], sizeof(lines[i]),
		    "many.test. 300 IN A 10.0.0.%zu", i + 1);
		m.an[i] = lines[i];
	}
	CHECK(parse(&m, 1, "many.test", DNS_T_A) == 0);
	CHECK(ans.n == DNS_RR_MAX);
	CHECK(ans.skipped == 40 - DNS_RR_MAX);
	CHECK(parse(&tlsa, 2, "_25._tcp.mx.test", DNS_T_TLSA) == 0);
	CHECK(ans.kind == DNS_KIND_DATA && ans.n == 1);
	CHECK(ans.rr.tlsa[0].usage == 3 && ans.rr.tlsa[0].selector == 1 &&
	    ans.rr.tlsa[0].mtype == 1 && ans.rr.tlsa[0].len == 32);
	CHECK(ans.rr.tlsa[0].data[0] == 1 && ans.rr.tlsa[0].data[31] == 0x20);
	/* An exchange that is not a host name is dropped. */
	CHECK(parse(&badmx, 3, "weird.test", DNS_T_MX) == 0);
	CHECK(ans.n == 1 && ans.skipped == 1);
	CHECK(strcmp(ans.rr.mx[0].host, "ok.test") == 0);
	puts("PASS bounds");
}

/* TXT: a record's strings joined; one longer than DNS_TXT_MAX dropped. */
static void
test_txt(void)
{
	static char longline[600];
	struct msg m = {
		.id = 4, .qname = "_mta-sts.example.test.",
		.qtype = LDNS_RR_TYPE_TXT,
		.an = {
			"_mta-sts.example.test. 300 IN TXT \"v=STSv1; \" "
			"\"id=20240101;\"",
			"_mta-sts.example.test. 300 IN TXT \"other\"",
			longline,
		},
	};
	size_t n;

	puts("RUN txt");
	n = (size_t)snprintf(longline, sizeof(longline),
	    "_mta-sts.example.test. 300 IN TXT");
	for (int i = 0; i < 3; i++)
		n += (size_t)snprintf(longline + n, sizeof(longline) - n,
		    " \"%0100d\"", i);
	CHECK(parse(&m, 4, "_mta-sts.example.test", DNS_T_TXT) == 0);
	CHECK(ans.kind == DNS_KIND_DATA && ans.n == 2 && ans.skipped == 1);
	CHECK(strcmp(ans.rr.txt[0].text, "v=STSv1; id=20240101;") == 0);
	CHECK(ans.rr.txt[0].len == 21);
	CHECK(strcmp(ans.rr.txt[1].text, "other") == 0);
	CHECK(strcmp(dns_type_name(DNS_T_TXT), "TXT") == 0);
	puts("PASS txt");
}

static void
test_garbage(void)
{
	static const struct msg ok = {
		.id = 0x4242, .qname = "x.test.", .qtype = LDNS_RR_TYPE_MX,
		.an = { "x.test. 300 IN MX 10 mx.x.test." },
	};
	uint8_t g[600] = { 0 };
	uint64_t s = 0x9e3779b97f4a7c15ull;
	size_t n;
	int ok_count = 0;

	puts("RUN garbage");
	CHECK(dns_answer_parse(g, 0, 1, "x.test", DNS_T_MX, &ans) ==
	    DNS_EFORMAT);
	memset(g, 0xff, sizeof(g));
	CHECK(dns_answer_parse(g, sizeof(g), 0xffff, "x.test", DNS_T_MX,
	    &ans) != 0);
	/* Random bytes under a plausible header: never accepted. */
	for (int round = 0; round < 2000; round++) {
		for (size_t i = 0; i < sizeof(g); i++) {
			s ^= s << 13;
			s ^= s >> 7;
			s ^= s << 17;
			g[i] = (uint8_t)s;
		}
		g[0] = 0x42;
		g[1] = 0x42;
		g[2] |= 0x80;
		g[2] &= (uint8_t)~LDNS_TC_MASK;
		CHECK(dns_answer_parse(g, 12 + (size_t)round % 588, 0x4242,
		    "x.test", DNS_T_MX, &ans) != 0);
	}
	/* Every truncation and every single-octet flip of a real answer:
	 * rejected or parsed, never a crash; the intact one parses. */
	n = build(&ok);
	for (size_t cut = 0; cut < n; cut++)
		(void)dns_answer_parse(wire, cut, 0x4242, "x.test", DNS_T_MX,
		    &ans);
	for (size_t i = 0; i < n; i++) {
		n = build(&ok);
		wire[i] ^= 0x5a;
		if (dns_answer_parse(wire, n, 0x4242, "x.test", DNS_T_MX,
		    &ans) == 0)
			ok_count++;
	}
	n = build(&ok);
	CHECK(dns_answer_parse(wire, n, 0x4242, "x.test", DNS_T_MX, &ans) ==
	    0);
	CHECK(ans.n == 1);
	printf("  %d of %zu flipped answers still parse\n", ok_count, n);
	CHECK(dns_answer_parse(wire, DNS_MSG_MAX + 1, 0x4242, "x.test",
	    DNS_T_MX, &ans) == DNS_EFORMAT);
	puts("PASS garbage");
}

int
main(void)
{
	test_query();
	test_names();
	test_mx();
	test_null_mx();
	test_cname();
	test_negative();
	test_flags();
	test_ede();
	test_mismatch();
	test_bounds();
	test_txt();
	test_garbage();
	return check_done();
}
