/*
 * dns.c - DNS queries and answers through ldns; see dns.h.
 *
 * ldns does all the wire work: ldns_pkt_query_new_frm_str() and
 * ldns_pkt2wire() build, ldns_wire2pkt() parses (checking every length
 * against the message) and rdf accessors read the records. This file only
 * decides which records of a parsed message count: those of the asked
 * type owned by the question name, or by the end of a CNAME chain that
 * starts there (RFC 1034 section 3.6.2; a recursive resolver puts the
 * whole chain in one answer). Records owned by any other name are ignored,
 * which is what keeps out-of-zone "additional" data from being believed.
 *
 * Diagnostics: none printed; every failure is a DNS_E* return.
 */
#include "dns.h"

#include <assert.h>
#include <ldns/ldns.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char
dns_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

int
dns_name_check(const char *name)
{
	size_t len, label = 0;

	assert(name != NULL);
	len = strlen(name);
	if (len > 0 && name[len - 1] == '.')
		len--;
	if (len == 0 || len > DNS_NAME_MAX)
		return DNS_ESYNTAX;
	for (size_t i = 0; i < len; i++) {
		char c = name[i];

		if (c == '.') {
			if (label == 0)
				return DNS_ESYNTAX;
			label = 0;
		} else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '_') {
			if (++label > DNS_LABEL_MAX)
				return DNS_ESYNTAX;
		} else {
			return DNS_ESYNTAX;
		}
	}
	return label > 0 ? 0 : DNS_ESYNTAX;
}

/* name (checked) as an absolute name: one trailing dot. */
static void
dns_absolute(const char *name, char out[DNS_NAME_MAX + 2])
{
	size_t len = strlen(name);

	assert(len > 0 && len <= DNS_NAME_MAX + 1);
	memcpy(out, name, len);
	if (out[len - 1] != '.')
		out[len++] = '.';
	out[len] = '\0';
}

int
dns_query_build(uint8_t *buf, size_t buflen, uint16_t id, const char *qname,
    uint16_t qtype, size_t *len)
{
	return dns_query_build_flags(buf, buflen, id, qname, qtype, 0, len);
}

int
dns_query_build_flags(uint8_t *buf, size_t buflen, uint16_t id,
    const char *qname, uint16_t qtype, unsigned flags, size_t *len)
{
	char abs[DNS_NAME_MAX + 2];
	ldns_pkt *pkt = NULL;
	uint8_t *wire = NULL;
	size_t size = 0;
	ldns_status st;
	int rc;

	assert(buf != NULL && len != NULL && qname != NULL);
	*len = 0;
	if (dns_name_check(qname) != 0)
		return DNS_ESYNTAX;
	dns_absolute(qname, abs);
	st = ldns_pkt_query_new_frm_str(&pkt, abs, (ldns_rr_type)qtype,
	    LDNS_RR_CLASS_IN, LDNS_RD);
	if (st != LDNS_STATUS_OK)
		return st == LDNS_STATUS_MEM_ERR ? DNS_ENOMEM : DNS_ESYNTAX;
	ldns_pkt_set_id(pkt, id);
	ldns_pkt_set_cd(pkt, (flags & DNS_QF_CD) != 0);
	/* RFC 6891: EDNS0; RFC 3225: DO asks for DNSSEC records and lets a
	 * validating resolver tell us (AD) that it validated. */
	ldns_pkt_set_edns_udp_size(pkt, DNS_UDP_SIZE);
	ldns_pkt_set_edns_do(pkt, true);
	st = ldns_pkt2wire(&wire, pkt, &size);
	if (st != LDNS_STATUS_OK) {
		rc = DNS_ENOMEM;
		goto out;
	}
	if (size > buflen) {
		rc = DNS_ESPACE;
		goto out;
	}
	memcpy(buf, wire, size);
	*len = size;
	rc = 0;
out:
	free(wire);
	ldns_pkt_free(pkt);
	return rc;
}

int
dns_message_id(const uint8_t *msg, size_t len, uint16_t *id)
{
	assert(msg != NULL && id != NULL);
	if (len < LDNS_HEADER_SIZE || !LDNS_QR_WIRE(msg))
		return DNS_EFORMAT;
	*id = LDNS_ID_WIRE(msg);
	return 0;
}

/*
 * The text of a domain name rdf, lower-cased, without the trailing dot
 * ("" for the root). False if it is not a host name (escaped octets,
 * spaces, too long): such names cannot be connected to anyway.
 */
static bool
dns_name_text(const ldns_rdf *rdf, char out[DNS_NAME_MAX + 1])
{
	char *s;
	size_t len;
	bool ok = false;

	if (rdf == NULL || ldns_rdf_get_type(rdf) != LDNS_RDF_TYPE_DNAME)
		return false;
	if ((s = ldns_rdf2str(rdf)) == NULL)
		return false;
	len = strlen(s);
	if (strcmp(s, ".") == 0) {
		out[0] = '\0';
		ok = true;
	} else if (len >= 2 && s[len - 1] == '.' && len - 1 <= DNS_NAME_MAX &&
	    dns_name_check(s) == 0) {
		for (size_t i = 0; i + 1 < len; i++)
			out[i] = dns_lower(s[i]);
		out[len - 1] = '\0';
		ok = true;
	}
	free(s);
	return ok;
}

static bool
dns_same_name(const ldns_rdf *a, const ldns_rdf *b)
{
	/* ldns compares names label by label, case-insensitively. */
	return ldns_rdf_get_type(a) == LDNS_RDF_TYPE_DNAME &&
	    ldns_rdf_get_type(b) == LDNS_RDF_TYPE_DNAME &&
	    ldns_dname_compare(a, b) == 0;
}

static uint32_t
dns_min(uint32_t a, uint32_t b)
{
	return a < b ? a : b;
}

/* Counts of MX exchanges "." seen while collecting, for RFC 7505. */
struct mx_root {
	unsigned total;		/* MX records of the RRset */
	unsigned roots;		/* with exchange "." */
	uint16_t root_pref;
};

/* Stores one record of the asked type; false if it was dropped. */
static bool
dns_keep(const ldns_rr *rr, uint16_t qtype, struct dns_answer *out,
    struct mx_root *mr)
{
	const ldns_rdf *f;

	switch (qtype) {
	case DNS_T_MX: {
		char host[DNS_NAME_MAX + 1];
		uint16_t pref;

		if (ldns_rr_rd_count(rr) != 2)
			return false;
		f = ldns_rr_rdf(rr, 0);
		if (f == NULL || ldns_rdf_size(f) != 2)
			return false;
		pref = ldns_rdf2native_int16(f);
		if (!dns_name_text(ldns_rr_rdf(rr, 1), host))
			return false;
		mr->total++;
		if (host[0] == '\0') {
			/* Decided once the whole RRset is seen. */
			mr->roots++;
			mr->root_pref = pref;
			return true;
		}
		if (out->n >= DNS_RR_MAX)
			return false;
		out->rr.mx[out->n].pref = pref;
		memcpy(out->rr.mx[out->n].host, host, strlen(host) + 1);
		out->n++;
		return true;
	}
	case DNS_T_A:
	case DNS_T_AAAA: {
		size_t want = qtype == DNS_T_A ? 4 : 16;

		if (ldns_rr_rd_count(rr) != 1 || out->n >= DNS_RR_MAX)
			return false;
		f = ldns_rr_rdf(rr, 0);
		if (f == NULL || ldns_rdf_size(f) != want)
			return false;
		memset(out->rr.addr[out->n], 0, sizeof(out->rr.addr[0]));
		memcpy(out->rr.addr[out->n], ldns_rdf_data(f), want);
		out->n++;
		return true;
	}
	case DNS_T_TLSA: {
		struct dns_tlsa *t;
		const ldns_rdf *d;

		if (ldns_rr_rd_count(rr) != 4 || out->n >= DNS_RR_MAX)
			return false;
		for (size_t i = 0; i < 3; i++) {
			f = ldns_rr_rdf(rr, i);
			if (f == NULL || ldns_rdf_size(f) != 1)
				return false;
		}
		d = ldns_rr_rdf(rr, 3);
		if (d == NULL || ldns_rdf_size(d) == 0 ||
		    ldns_rdf_size(d) > DNS_TLSA_DATA_MAX)
			return false;
		t = &out->rr.tlsa[out->n];
		t->usage = ldns_rdf2native_int8(ldns_rr_rdf(rr, 0));
		t->selector = ldns_rdf2native_int8(ldns_rr_rdf(rr, 1));
		t->mtype = ldns_rdf2native_int8(ldns_rr_rdf(rr, 2));
		t->len = (uint16_t)ldns_rdf_size(d);
		memcpy(t->data, ldns_rdf_data(d), t->len);
		out->n++;
		return true;
	}
	case DNS_T_TXT: {
		/* RFC 7208 3.3, RFC 8461 3.1: the strings are joined. */
		struct dns_txt *t;
		size_t len = 0;

		if (out->n >= DNS_RR_MAX)
			return false;
		t = &out->rr.txt[out->n];
		for (size_t i = 0; i < ldns_rr_rd_count(rr); i++) {
			size_t sz;

			f = ldns_rr_rdf(rr, i);
			if (f == NULL || ldns_rdf_get_type(f) != LDNS_RDF_TYPE_STR ||
			    (sz = ldns_rdf_size(f)) < 1 ||
			    ldns_rdf_data(f)[0] != sz - 1)
				return false;
			if (len + sz - 1 > DNS_TXT_MAX)
				return false;
			memcpy(t->text + len, ldns_rdf_data(f) + 1, sz - 1);
			len += sz - 1;
		}
		t->text[len] = '\0';
		t->len = (uint16_t)len;
		out->n++;
		return true;
	}
	default:
		return false;
	}
}

/*
 * Collects the records of qtype owned by owner from the answer section.
 * Returns how many records of the RRset there were (kept or not).
 */
static unsigned
dns_collect(const ldns_rr_list *an, const ldns_rdf *owner, uint16_t qtype,
    struct dns_answer *out, uint32_t *ttl)
{
	struct mx_root mr = { 0 };
	unsigned seen = 0;
	size_t count = ldns_rr_list_rr_count(an);

	for (size_t i = 0; i < count; i++) {
		const ldns_rr *rr = ldns_rr_list_rr(an, i);

		if (ldns_rr_get_type(rr) != (ldns_rr_type)qtype ||
		    ldns_rr_get_class(rr) != LDNS_RR_CLASS_IN ||
		    !dns_same_name(ldns_rr_owner(rr), owner))
			continue;
		seen++;
		*ttl = dns_min(*ttl, ldns_rr_ttl(rr));
		if (!dns_keep(rr, qtype, out, &mr))
			out->skipped++;
	}
	/*
	 * RFC 7505 section 3: a null MX is a single MX record with
	 * preference 0 and exchange ".". A "." among other exchanges is
	 * a misconfiguration; it is dropped and the others are used.
	 */
	if (mr.roots == 1 && mr.total == 1 && mr.root_pref == 0)
		out->null_mx = true;
	else
		out->skipped += mr.roots;
	return seen;
}

/* The CNAME owned by owner in the answer section, or NULL. */
static const ldns_rr *
dns_cname(const ldns_rr_list *an, const ldns_rdf *owner)
{
	size_t count = ldns_rr_list_rr_count(an);

	for (size_t i = 0; i < count; i++) {
		const ldns_rr *rr = ldns_rr_list_rr(an, i);

		if (ldns_rr_get_type(rr) == LDNS_RR_TYPE_CNAME &&
		    ldns_rr_get_class(rr) == LDNS_RR_CLASS_IN &&
		    ldns_rr_rd_count(rr) == 1 &&
		    ldns_rr_rdf(rr, 0) != NULL &&
		    ldns_rdf_get_type(ldns_rr_rdf(rr, 0)) ==
		    LDNS_RDF_TYPE_DNAME &&
		    dns_same_name(ldns_rr_owner(rr), owner))
			return rr;
	}
	return NULL;
}

/* RFC 2308 section 5: a negative answer lives min(SOA TTL, MINIMUM). */
static bool
dns_negative_ttl(const ldns_pkt *pkt, uint32_t *ttl)
{
	const ldns_rr_list *ns = ldns_pkt_authority(pkt);
	size_t count = ldns_rr_list_rr_count(ns);

	for (size_t i = 0; i < count; i++) {
		const ldns_rr *rr = ldns_rr_list_rr(ns, i);
		const ldns_rdf *min;

		if (ldns_rr_get_type(rr) != LDNS_RR_TYPE_SOA ||
		    ldns_rr_rd_count(rr) != 7)
			continue;
		min = ldns_rr_rdf(rr, 6);
		if (min == NULL || ldns_rdf_size(min) != 4)
			continue;
		*ttl = dns_min(ldns_rr_ttl(rr), ldns_rdf2native_int32(min));
		return true;
	}
	return false;
}

/* Does the parsed message answer (id, want, qtype)? */
static int
dns_matches(const ldns_pkt *pkt, uint16_t id, const ldns_rdf *want,
    uint16_t qtype)
{
	const ldns_rr_list *q = ldns_pkt_question(pkt);
	const ldns_rr *rr;

	if (!ldns_pkt_qr(pkt))
		return DNS_EFORMAT;
	if (ldns_pkt_id(pkt) != id ||
	    ldns_pkt_get_opcode(pkt) != LDNS_PACKET_QUERY ||
	    q == NULL || ldns_rr_list_rr_count(q) != 1)
		return DNS_EMISMATCH;
	rr = ldns_rr_list_rr(q, 0);
	if (ldns_rr_get_type(rr) != (ldns_rr_type)qtype ||
	    ldns_rr_get_class(rr) != LDNS_RR_CLASS_IN ||
	    !dns_same_name(ldns_rr_owner(rr), want))
		return DNS_EMISMATCH;
	return 0;
}

/* The first Extended DNS Error of the OPT record (RFC 8914 section 2). */
static void
dns_ede(ldns_pkt *pkt, struct dns_answer *out)
{
	ldns_edns_option_list *opts;
	size_t n;

	out->ede = DNS_EDE_NONE;
	if (!ldns_pkt_edns(pkt) ||
	    (opts = ldns_pkt_edns_get_option_list(pkt)) == NULL)
		return;
	n = ldns_edns_option_list_get_count(opts);
	for (size_t i = 0; i < n; i++) {
		ldns_edns_option *o = ldns_edns_option_list_get_option(opts, i);
		const uint8_t *d;
		size_t len;

		if (o == NULL || ldns_edns_get_code(o) != LDNS_EDNS_EDE)
			continue;
		len = ldns_edns_get_size(o);
		d = ldns_edns_get_data(o);
		/* INFO-CODE (2 octets), then EXTRA-TEXT (maybe empty). */
		if (d == NULL || len < 2)
			continue;
		out->ede = (int32_t)(d[0] << 8 | d[1]);
		return;
	}
}

int
dns_answer_parse(const uint8_t *msg, size_t len, uint16_t id,
    const char *qname, uint16_t qtype, struct dns_answer *out)
{
	char abs[DNS_NAME_MAX + 2];
	ldns_pkt *pkt = NULL;
	ldns_rdf *want = NULL;
	const ldns_rdf *cur;
	const ldns_rr_list *an;
	uint32_t ttl = UINT32_MAX, cname_ttl = UINT32_MAX;
	ldns_status st;
	unsigned seen = 0;
	int rc;

	assert(msg != NULL && qname != NULL && out != NULL);
	memset(out, 0, offsetof(struct dns_answer, rr));
	out->ede = DNS_EDE_NONE;
	out->id = id;
	out->qtype = qtype;
	if (len < LDNS_HEADER_SIZE || len > DNS_MSG_MAX || !LDNS_QR_WIRE(msg))
		return DNS_EFORMAT;
	if (dns_name_check(qname) != 0)
		return DNS_EMISMATCH;
	st = ldns_wire2pkt(&pkt, msg, len);
	if (st == LDNS_STATUS_MEM_ERR)
		return DNS_ENOMEM;
	if (st != LDNS_STATUS_OK) {
		/*
		 * Some servers cut a truncated answer mid-record. The TC bit
		 * in the header still says "ask over TCP"; nothing else of
		 * such a message is used.
		 */
		if (LDNS_TC_WIRE(msg) && LDNS_ID_WIRE(msg) == id &&
		    LDNS_OPCODE_WIRE(msg) == LDNS_PACKET_QUERY) {
			out->tc = true;
			out->rcode = LDNS_RCODE_WIRE(msg);
			out->kind = DNS_KIND_ERROR;
			return 0;
		}
		return DNS_EFORMAT;
	}
	dns_absolute(qname, abs);
	if ((want = ldns_dname_new_frm_str(abs)) == NULL) {
		rc = DNS_ENOMEM;
		goto out;
	}
	if ((rc = dns_matches(pkt, id, want, qtype)) != 0)
		goto out;
	out->rcode = (uint8_t)ldns_pkt_get_rcode(pkt);
	out->tc = ldns_pkt_tc(pkt);
	out->ad = ldns_pkt_ad(pkt);
	dns_ede(pkt, out);

	/* Follow the chain from the question name, at most DNS_CNAME_MAX. */
	an = ldns_pkt_answer(pkt);
	cur = want;
	for (;;) {
		const ldns_rr *cn;

		if ((seen = dns_collect(an, cur, qtype, out, &ttl)) > 0)
			break;
		if ((cn = dns_cname(an, cur)) == NULL)
			break;
		if (out->ncname == DNS_CNAME_MAX) {
			out->chain_too_long = true;
			break;
		}
		out->ncname++;
		cname_ttl = dns_min(cname_ttl, ldns_rr_ttl(cn));
		cur = ldns_rr_rdf(cn, 0);
	}
	if (!dns_name_text(cur, out->name)) {
		/* A CNAME target that is no host name: name the question. */
		size_t n = strlen(abs) - 1;

		for (size_t i = 0; i < n; i++)
			out->name[i] = dns_lower(abs[i]);
		out->name[n] = '\0';
	}

	if (out->chain_too_long) {
		out->kind = DNS_KIND_ERROR;
	} else if (out->rcode == LDNS_RCODE_NOERROR && seen > 0) {
		out->kind = DNS_KIND_DATA;
		out->ttl = dns_min(ttl, cname_ttl);
	} else if (out->rcode == LDNS_RCODE_NOERROR ||
	    out->rcode == LDNS_RCODE_NXDOMAIN) {
		out->kind = out->rcode == LDNS_RCODE_NOERROR ?
		    DNS_KIND_NODATA : DNS_KIND_NXDOMAIN;
		out->n = 0;
		out->null_mx = false;
		if (dns_negative_ttl(pkt, &ttl))
			out->ttl = dns_min(ttl, cname_ttl);
	} else {
		out->kind = DNS_KIND_ERROR;
		out->n = 0;
		out->null_mx = false;
	}
	rc = 0;
out:
	ldns_rdf_deep_free(want);
	ldns_pkt_free(pkt);
	return rc;
}

const char *
dns_type_name(uint16_t qtype)
{
	switch (qtype) {
	case DNS_T_A:
		return "A";
	case DNS_T_MX:
		return "MX";
	case DNS_T_AAAA:
		return "AAAA";
	case DNS_T_TLSA:
		return "TLSA";
	case DNS_T_TXT:
		return "TXT";
	case LDNS_RR_TYPE_CNAME:
		return "CNAME";
	case LDNS_RR_TYPE_SOA:
		return "SOA";
	default:
		return "?";
	}
}

/* RFC 8914 section 4, the registry's first 25 codes. */
static const char *const ede_names[] = {
	"Other Error", "Unsupported DNSKEY Algorithm",
	"Unsupported DS Digest Type", "Stale Answer", "Forged Answer",
	"DNSSEC Indeterminate", "DNSSEC Bogus", "Signature Expired",
	"Signature Not Yet Valid", "DNSKEY Missing", "RRSIGs Missing",
	"No Zone Key Bit Set", "NSEC Missing", "Cached Error", "Not Ready",
	"Blocked", "Censored", "Filtered", "Prohibited",
	"Stale NXDOMAIN Answer", "Not Authoritative", "Not Supported",
	"No Reachable Authority", "Network Error", "Invalid Data",
};

const char *
dns_ede_name(int32_t code)
{
	size_t n = sizeof(ede_names) / sizeof(ede_names[0]);

	if (code < 0 || (size_t)code >= n)
		return "Unknown Error";
	return ede_names[code];
}

bool
dns_ede_dnssec(int32_t code)
{
	return code == 1 || code == 2 || (code >= 5 && code <= 12);
}

const char *
dns_rcode_name(uint8_t rcode)
{
	static const char *const names[] = {
		"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP",
		"REFUSED", "YXDOMAIN", "YXRRSET", "NXRRSET", "NOTAUTH",
		"NOTZONE",
	};

	if (rcode < sizeof(names) / sizeof(names[0]))
		return names[rcode];
	return "RCODE?";
}
