/*
 * dns.h - DNS messages for outbound delivery: build a query, parse an
 * answer. Pure: no I/O, no clock, no globals; the wire format is left to
 * ldns (no hand-written DNS parsing here either).
 *
 * Purpose: engine/resolver.c sends what dns_query_build() makes and hands
 * what comes back to dns_answer_parse(), which reduces a whole message to
 * the few facts delivery needs: did it answer our question, the RCODE,
 * the TC and AD bits, the TTL to cache it for, and the records of the
 * asked type (MX, A, AAAA, TLSA or TXT) at the end of any CNAME chain.
 *
 * Contract:
 * - Names are text without a trailing dot: letters, digits, '-' and '_',
 *   labels of 1..63 octets, at most DNS_NAME_MAX octets in all
 *   (dns_name_check()). Names that come out (MX exchanges, the owner
 *   after CNAMEs) are lower-cased and have no trailing dot.
 * - Everything is bounded: at most DNS_RR_MAX records are kept (extra
 *   ones are counted in `skipped`), at most DNS_CNAME_MAX CNAMEs are
 *   followed, a message is at most DNS_MSG_MAX octets.
 * - A parsed answer is only returned for the question asked: same id,
 *   QR set, opcode QUERY, exactly one question with the same name (case
 *   does not matter), type and class IN. Anything else is rejected, so a
 *   stray or spoofed datagram cannot be mistaken for an answer.
 *
 * Errors: functions return 0 or a negative DNS_E* code below. Passing
 * NULL where a pointer is required is a programmer error (assertion).
 */
#ifndef SLUICE_DNS_H
#define SLUICE_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DNS_ESYNTAX	(-30501)	/* name unfit for a query */
#define DNS_ESPACE	(-30502)	/* output buffer too small */
#define DNS_ENOMEM	(-30503)	/* allocation failed (in ldns) */
#define DNS_EFORMAT	(-30504)	/* not a well-formed DNS response */
#define DNS_EMISMATCH	(-30505)	/* a response, but not to our question */

/* RFC 1035 section 2.3.4: 255 octets on the wire, 253 as text. */
#define DNS_NAME_MAX	253
#define DNS_LABEL_MAX	63
/* Records kept per answer, CNAMEs followed within one answer. */
#define DNS_RR_MAX	32
#define DNS_CNAME_MAX	8
/* A query is header + question + OPT: 12 + 255 + 4 + 11 octets. */
#define DNS_QUERY_MAX	512
/* EDNS0 UDP payload size we advertise (the DNS flag day 2020 value). */
#define DNS_UDP_SIZE	1232
/* Largest message (over TCP: the 16-bit length prefix). */
#define DNS_MSG_MAX	65535
/* TXT text kept per record (its strings joined); longer ones dropped. */
#define DNS_TXT_MAX	255
/* TLSA association data kept: a SHA-512 digest. */
#define DNS_TLSA_DATA_MAX 64
/* No Extended DNS Error in the answer. */
#define DNS_EDE_NONE	(-1)

/* The types sluice asks for (RFC 1035, RFC 3596, RFC 6698). */
enum dns_type {
	DNS_T_A = 1,
	DNS_T_MX = 15,
	DNS_T_TXT = 16,
	DNS_T_AAAA = 28,
	DNS_T_TLSA = 52,
};

/* What an answer says, once the CNAME chain is followed. */
enum dns_kind {
	DNS_KIND_DATA = 1,	/* records of the asked type */
	DNS_KIND_NODATA,	/* NOERROR, the name exists, no such records */
	DNS_KIND_NXDOMAIN,	/* RCODE 3: the (final) name does not exist */
	DNS_KIND_ERROR,		/* another RCODE (SERVFAIL, REFUSED...), or a
				 * CNAME chain longer than DNS_CNAME_MAX */
};

struct dns_mx {
	uint16_t pref;
	char host[DNS_NAME_MAX + 1];	/* lower case, no trailing dot */
};

struct dns_tlsa {
	uint8_t usage;
	uint8_t selector;
	uint8_t mtype;
	uint16_t len;
	uint8_t data[DNS_TLSA_DATA_MAX];
};

struct dns_txt {
	uint16_t len;
	char text[DNS_TXT_MAX + 1];	/* NUL-terminated; may hold NULs */
};

struct dns_answer {
	uint16_t id;
	uint16_t qtype;
	uint8_t rcode;		/* header RCODE, 0..15 */
	bool tc;		/* truncated: ask again over TCP */
	bool ad;		/* the resolver validated it (DNSSEC) */
	bool null_mx;		/* RFC 7505: one MX, preference 0, exchange "." */
	bool chain_too_long;	/* more than DNS_CNAME_MAX CNAMEs */
	/*
	 * RFC 8914: the INFO-CODE of the first Extended DNS Error option of
	 * the OPT record, 0..65535, or DNS_EDE_NONE. A validating resolver
	 * says so why it answered SERVFAIL (6: DNSSEC Bogus, 7: Signature
	 * Expired...). Its EXTRA-TEXT is not kept.
	 */
	int32_t ede;
	enum dns_kind kind;
	/*
	 * Seconds the answer may be cached: DATA: the smallest TTL of the
	 * records and CNAMEs used; NODATA/NXDOMAIN: min(SOA TTL, SOA
	 * MINIMUM) per RFC 2308 section 5, 0 without an SOA; ERROR: 0.
	 */
	uint32_t ttl;
	unsigned ncname;		/* CNAMEs followed */
	char name[DNS_NAME_MAX + 1];	/* owner of the records: the question
					 * or the last CNAME target */
	unsigned n;		/* records in rr (DATA only; 0 for null MX) */
	unsigned skipped;	/* records dropped: beyond DNS_RR_MAX, an MX
				 * exchange that is not a host name, a
				 * malformed record, TLSA data or TXT
				 * text too long */
	union {
		struct dns_mx mx[DNS_RR_MAX];		/* packet order */
		uint8_t addr[DNS_RR_MAX][16];		/* A: first 4 octets */
		struct dns_tlsa tlsa[DNS_RR_MAX];
		struct dns_txt txt[DNS_RR_MAX];
	} rr;
};

/*
 * Checks a name (syntax above; one trailing dot is allowed). Returns 0 or
 * DNS_ESYNTAX.
 */
int dns_name_check(const char *name);

/*
 * Builds a query for (qname, qtype, class IN) with id, RD set and an
 * EDNS0 OPT record (UDP size DNS_UDP_SIZE, DO bit set) into buf; *len
 * gets its size. DNS_ESYNTAX (bad name), DNS_ESPACE (buflen too small;
 * DNS_QUERY_MAX always fits), DNS_ENOMEM.
 */
int dns_query_build(uint8_t *buf, size_t buflen, uint16_t id,
    const char *qname, uint16_t qtype, size_t *len);

/* The same with flags: DNS_QF_CD sets CD (RFC 4035 section 3.2.2: a
 * validating resolver then hands over what fails validation too, for
 * us to judge). */
#define DNS_QF_CD	1u
int dns_query_build_flags(uint8_t *buf, size_t buflen, uint16_t id,
    const char *qname, uint16_t qtype, unsigned flags, size_t *len);

/*
 * The id of a message, to find which query it may answer. 0, or
 * DNS_EFORMAT when msg is shorter than a header or is not a response.
 */
int dns_message_id(const uint8_t *msg, size_t len, uint16_t *id);

/*
 * Parses msg as the answer to (id, qname, qtype) into *out. Returns 0 (see
 * out->kind; out->tc set means the records may be incomplete), or
 * DNS_EFORMAT (garbage, not a response, len > DNS_MSG_MAX) or
 * DNS_EMISMATCH (another id, question or opcode), or DNS_ENOMEM. A
 * truncated message that ldns cannot parse but whose header says TC is
 * returned as tc with kind DNS_KIND_ERROR, so the caller still retries
 * over TCP. *out is unspecified after an error.
 */
int dns_answer_parse(const uint8_t *msg, size_t len, uint16_t id,
    const char *qname, uint16_t qtype, struct dns_answer *out);

/* "A", "MX", "AAAA", "TLSA", "TXT", "CNAME", "SOA", else "?". */
const char *dns_type_name(uint16_t qtype);
/*
 * RFC 8914 section 4's name of an INFO-CODE ("DNSSEC Bogus"), else
 * "Unknown Error".
 */
const char *dns_ede_name(int32_t code);
/* Is the INFO-CODE one that says DNSSEC validation failed (1, 2, 5-12)? */
bool dns_ede_dnssec(int32_t code);

/* "NOERROR", "SERVFAIL", "NXDOMAIN", "REFUSED", ..., else "RCODE?". */
const char *dns_rcode_name(uint8_t rcode);

#endif
