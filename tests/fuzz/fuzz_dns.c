/*
 * fuzz_dns.c - libFuzzer target: arbitrary bytes as a DNS answer for
 * proto/dns.c's dns_answer_parse(), the one parser that reads what the
 * network sends. It must reject garbage cleanly and, whatever it accepts,
 * return a result within its documented bounds.
 *
 * The first input byte picks the question: odd - the one the message
 * itself carries (parsed here with ldns), so that well-formed messages
 * reach the record-level code; even - a fixed question, x.test, with the
 * type from the byte. The rest is the message.
 */
#include <assert.h>
#include <ldns/ldns.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../proto/dns.h"

static const uint16_t types[5] = { DNS_T_MX, DNS_T_A, DNS_T_AAAA,
	DNS_T_TLSA, DNS_T_TXT };

static void
check_name(const char *s)
{
	size_t len = strnlen(s, DNS_NAME_MAX + 1);

	assert(len <= DNS_NAME_MAX);
	assert(len == 0 || dns_name_check(s) == 0);
	for (size_t i = 0; i < len; i++)
		assert(s[i] < 'A' || s[i] > 'Z');
}

/* The message's own question as (text, type); false if it has none. */
static bool
own_question(const uint8_t *msg, size_t len, char *name, size_t cap,
    uint16_t *type)
{
	ldns_pkt *p = NULL;
	char *s;
	bool ok = false;

	if (ldns_wire2pkt(&p, msg, len) != LDNS_STATUS_OK)
		return false;
	if (ldns_pkt_qdcount(p) == 1) {
		ldns_rr *q = ldns_rr_list_rr(ldns_pkt_question(p), 0);

		s = ldns_rdf2str(ldns_rr_owner(q));
		if (s != NULL && strlen(s) < cap) {
			memcpy(name, s, strlen(s) + 1);
			*type = (uint16_t)ldns_rr_get_type(q);
			ok = dns_name_check(name) == 0;
		}
		free(s);
	}
	ldns_pkt_free(p);
	return ok;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct dns_answer a;
	char name[DNS_NAME_MAX + 8] = "x.test";
	uint16_t type, id = 0;
	const uint8_t *msg;
	size_t len;
	int rc;

	if (size < 1)
		return 0;
	msg = data + 1;
	len = size - 1;
	type = types[((data[0] >> 1) & 7) % 5];
	if ((data[0] & 1) && !own_question(msg, len, name, sizeof(name),
	    &type))
		return 0;
	if (dns_message_id(msg, len, &id) != 0) {
		/* Not a response header: the parser must agree. */
		assert(dns_answer_parse(msg, len, 0, name, type, &a) != 0);
		return 0;
	}
	rc = dns_answer_parse(msg, len, id, name, type, &a);
	if (rc != 0) {
		assert(rc == DNS_EFORMAT || rc == DNS_EMISMATCH ||
		    rc == DNS_ENOMEM);
		return 0;
	}
	assert(a.id == id && a.qtype == type);
	assert(a.kind >= DNS_KIND_DATA && a.kind <= DNS_KIND_ERROR);
	assert(a.n <= DNS_RR_MAX);
	assert(a.ncname <= DNS_CNAME_MAX);
	assert(a.rcode <= 15);
	/* RFC 8914: an INFO-CODE, or none; every code has a name. */
	assert(a.ede == DNS_EDE_NONE || (a.ede >= 0 && a.ede <= 65535));
	assert(dns_ede_name(a.ede) != NULL);
	if (a.kind != DNS_KIND_DATA)
		assert(a.n == 0 && !a.null_mx);
	if (a.kind == DNS_KIND_ERROR)
		assert(a.ttl == 0);
	if (a.null_mx)
		assert(type == DNS_T_MX && a.n == 0);
	if (!a.tc || a.kind != DNS_KIND_ERROR)
		check_name(a.name);
	if (a.kind == DNS_KIND_DATA && type == DNS_T_MX)
		for (unsigned i = 0; i < a.n; i++) {
			check_name(a.rr.mx[i].host);
			assert(a.rr.mx[i].host[0] != '\0');
		}
	if (a.kind == DNS_KIND_DATA && type == DNS_T_TLSA)
		for (unsigned i = 0; i < a.n; i++)
			assert(a.rr.tlsa[i].len >= 1 &&
			    a.rr.tlsa[i].len <= DNS_TLSA_DATA_MAX);
	if (a.kind == DNS_KIND_DATA && type == DNS_T_TXT)
		for (unsigned i = 0; i < a.n; i++)
			assert(a.rr.txt[i].len <= DNS_TXT_MAX &&
			    a.rr.txt[i].text[a.rr.txt[i].len] == '\0');
	return 0;
}
