/*
 * resolver.h - asynchronous DNS for outbound delivery, on a shard's ring.
 *
 * Purpose: turn a destination (a recipient domain, or a fixed next hop)
 * into the ordered list of hosts and addresses to connect to, without
 * ever blocking the shard's event loop. Queries go to one configured
 * recursive resolver (docs/dns.md), which should validate DNSSEC: we ask
 * with the DO bit and report whether every answer used carried AD.
 *
 * Contract:
 * - One resolver per ring, used only by the thread that owns the ring.
 *   Every SQE it submits carries user_data uring_ud(op, ...); the owner's
 *   completion dispatch passes each CQE with that op to
 *   resolver_complete(). It prepares SQEs but never submits them: the
 *   owner's loop does (resolver_destroy() and resolver_lookup_sync() are
 *   the exceptions, see there).
 * - resolver_tick() must be called at least every 250 ms with the
 *   CLOCK_MONOTONIC time in milliseconds: it drives retries, timeouts and
 *   the delivery of finished lookups when the ring is quiet.
 * - resolver_lookup() never calls back from inside itself. The callback
 *   runs exactly once per lookup, from resolver_complete() or
 *   resolver_tick(); a lookup answered from the cache posts a NOP on the
 *   ring so it is delivered on the next completion pass, not a tick later.
 *   Callbacks may start new lookups, but must not destroy the resolver.
 * - Memory: the resolver allocates on demand within fixed bounds (queries
 *   and lookups in flight, cache entries, records per answer) and
 *   resolver_destroy() frees all of it.
 *
 * Errors: functions that can fail return 0 or -errno (resolver_cfg_server:
 * -1 with a message). Lookup outcomes are a resolve_status, which separates
 * "try later" from "will never work" (cf. Postfix DNS_RETRY / DNS_FAIL).
 */
#ifndef SLUICE_RESOLVER_H
#define SLUICE_RESOLVER_H

#include <liburing.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "../proto/dns.h"

/* Addresses kept per host, and MX hosts kept per domain. */
#define RESOLVE_ADDR_MAX	8
#define RESOLVE_MX_MAX		10
#define RESOLVE_HOST_MAX	255

struct resolver_cfg {
	struct sockaddr_storage server;	/* the nameserver */
	socklen_t server_len;
	uint32_t timeout_ms;	/* per try, e.g. 2000 */
	unsigned attempts;	/* tries (UDP, or TCP after TC) per query */
	unsigned cache_max;	/* entries; 0: no cache */
	/*
	 * DNSSEC (docs/dns.md): RESOLVE_DNSSEC_OFF marks nothing secure and
	 * looks up no TLSA; RESOLVE_DNSSEC_TRUST_AD takes the resolver's AD
	 * bit as proof and its SERVFAIL to a DO query as a possibly bogus
	 * answer.
	 */
	unsigned dnssec;	/* enum resolve_dnssec */
	/* RESOLVE_DNSSEC_VALIDATE: DS or DNSKEY records, zone-file lines
	 * (Debian's /usr/share/dns/root.key); read by resolver_create(). */
	const char *trust_anchor;
};

enum resolve_dnssec {
	RESOLVE_DNSSEC_OFF = 0,
	RESOLVE_DNSSEC_TRUST_AD,
	RESOLVE_DNSSEC_VALIDATE,	/* our own validation: docs/dns.md */
};

/*
 * dns.dnssec as configured: "auto" (the key unset) is trust-ad when the
 * resolver is on loopback (only a resolver on this host can be trusted
 * with the AD bit without TSIG or a secure channel) and off otherwise.
 */
enum resolve_dnssec_cfg {
	RESOLVE_DNSSEC_CFG_AUTO = 0,
	RESOLVE_DNSSEC_CFG_OFF,
	RESOLVE_DNSSEC_CFG_TRUST_AD,
	RESOLVE_DNSSEC_CFG_VALIDATE,
};

/* Debian's dns-root-data: the root zone's trust anchor. */
#define RESOLVER_ROOT_KEY	"/usr/share/dns/root.key"

/* "off", "trust-ad", "validate" (enum resolve_dnssec_cfg), else -1. */
int resolver_dnssec_parse(const char *s);
/*
 * Reads a trust anchor file (DS or DNSKEY records, one zone): 0, or -1
 * with why (the file, the line). For configuration checks.
 */
int resolver_anchor_check(const char *path, char *why, size_t whylen);
/* Is cfg->server a loopback address (127/8, ::1)? */
bool resolver_server_loopback(const struct resolver_cfg *cfg);
/* Sets cfg->dnssec from the configured mode and cfg->server. */
void resolver_cfg_dnssec(struct resolver_cfg *cfg, unsigned cfg_mode);


/* Timeout 2000 ms, 3 attempts, 10000 cache entries; server unset. */
void resolver_cfg_defaults(struct resolver_cfg *cfg);

/*
 * Fills cfg->server from spec: "addr:port", "[v6]:port", "addr" or a bare
 * IPv6 address (port 53). The address must be numeric: looking up the
 * resolver's own name would need a resolver. With spec NULL or "", the
 * first "nameserver" line of resolv_conf_path (e.g. /etc/resolv.conf) is
 * used. Returns 0, or -1 with a one-line reason in err.
 */
int resolver_cfg_server(struct resolver_cfg *cfg, const char *spec,
    const char *resolv_conf_path, char *err, size_t errlen);

struct resolver;

/*
 * Creates a resolver on ring: a UDP socket connected to cfg->server with
 * a recv armed on the ring (SQE prepared, not submitted). op is the
 * user_data op kind (engine/uring.h) of everything it submits. Returns 0
 * or -EINVAL (bad cfg: no server, timeout_ms 0 or over 60000, attempts 0
 * or over 10, cache_max over 1000000), -ENOMEM, or the socket errno.
 */
int resolver_create(struct resolver **r, struct io_uring *ring, unsigned op,
    const struct resolver_cfg *cfg);

/* A CQE whose user_data has the resolver's op. */
void resolver_complete(struct resolver *r, uint64_t user_data, int res,
    uint32_t cqe_flags);

/* Retries, timeouts, deferred callbacks; now_ms is CLOCK_MONOTONIC. */
void resolver_tick(struct resolver *r, uint64_t now_ms);

/*
 * Ends everything: submits what is queued on the ring (so that nothing
 * of ours is left unsubmitted), cancels the resolver's requests in the
 * kernel synchronously (io_uring_register_sync_cancel: when it returns,
 * the kernel no longer touches any of our memory), closes the sockets,
 * drops all lookups without calling back, and frees everything. The ring
 * must still be alive and this must run on its thread.
 *
 * Completions with the resolver's op may still be in the completion
 * queue afterwards (cancelled requests, a NOP). They must never reach the
 * destroyed resolver: the owner sets its pointer to NULL and drops the op
 * while it is NULL. Passing them to a new resolver created on the same
 * ring with the same op is fine: each resolver tags its user_data and
 * ignores completions that are not its own. r may be NULL.
 */
void resolver_destroy(struct resolver *r);

enum resolve_status {
	RESOLVE_OK = 0,
	RESOLVE_NXDOMAIN,	/* permanent: the domain does not exist */
	RESOLVE_NULLMX,		/* permanent: RFC 7505 null MX */
	RESOLVE_NOADDR,		/* permanent: no MX and no A/AAAA, or MX hosts
				 * without addresses */
	RESOLVE_TEMPFAIL,	/* SERVFAIL, timeout, network error, truncated
				 * twice...: try later */
};

/* "ok", "nxdomain", "nullmx", "noaddr", "tempfail". */
const char *resolve_status_name(enum resolve_status st);

/* TLSA records kept per host (RFC 7672 section 2.2). */
#define RESOLVE_TLSA_MAX	8

/*
 * What DNSSEC says of an answer. SECURE: authenticated (AD). INSECURE:
 * not (an unsigned zone, or DNSSEC off). BOGUS: the validating resolver
 * refused it (SERVFAIL to a DO query): never used, the lookup defers.
 */
enum resolve_sec {
	RESOLVE_SEC_INSECURE = 0,
	RESOLVE_SEC_SECURE,
	RESOLVE_SEC_BOGUS,
};

/* A host's TLSA lookup (_PORT._tcp.HOST), made only for secure hosts. */
enum resolve_tlsa {
	RESOLVE_TLSA_UNASKED = 0,	/* insecure host, or not wanted */
	RESOLVE_TLSA_NONE,	/* secure denial, or records without AD */
	RESOLVE_TLSA_FOUND,	/* secure records (ntlsa 0: none parsed) */
	RESOLVE_TLSA_FAIL,	/* SERVFAIL (bogus?), timeout: defer host */
};

const char *resolve_sec_name(unsigned sec);
const char *resolve_tlsa_name(unsigned st);

struct resolve_target {		/* one host to try, in order */
	char host[RESOLVE_HOST_MAX + 1];	/* MX exchange or the host */
	uint16_t pref;		/* MX preference; 0 for implicit/fixed */
	uint8_t sec;		/* enum resolve_sec: MX and addresses */
	uint8_t tlsa;		/* enum resolve_tlsa */
	unsigned ntlsa;
	struct dns_tlsa tlsa_rr[RESOLVE_TLSA_MAX];
	char tlsa_why[128];	/* RESOLVE_TLSA_FAIL: what failed */
	unsigned naddr;		/* >= 1 */
	/* IPv4 first, then IPv6; port 0: the caller sets the port. */
	struct sockaddr_storage addr[RESOLVE_ADDR_MAX];
};

struct resolve_result {
	enum resolve_status status;
	bool authenticated;	/* every answer used had the AD bit */
	uint8_t mx_sec;		/* enum resolve_sec of the MX answer (MX
				 * lookups; a fixed next hop: SECURE) */
	char why[160];		/* for logs and DSNs, e.g. "domain x.test does
				 * not exist (NXDOMAIN)"; "" when OK */
	unsigned ntargets;	/* RESOLVE_OK: >= 1; else 0 */
	struct resolve_target *targets;	/* valid only during the callback */
};

typedef void (*resolve_cb)(void *arg, const struct resolve_result *res);

/*
 * Resolves name (lower- or mixed-case, no IP literal, optional trailing
 * dot). mx_lookup: MX of name in preference order, random among equal
 * preferences, at most RESOLVE_MX_MAX hosts; no MX record (NODATA) means
 * the implicit MX, name itself (RFC 5321 section 5.1); a null MX is
 * RESOLVE_NULLMX; then A and AAAA of each host. !mx_lookup: A and AAAA of
 * name only (a fixed next hop). Only hosts with addresses are returned.
 * A failing temporarily loses that host; AAAA failing alone does not.
 * A name that is not a valid host name is RESOLVE_NXDOMAIN; too many
 * lookups in progress is RESOLVE_TEMPFAIL.
 */
void resolver_lookup(struct resolver *r, const char *name, bool mx_lookup,
    resolve_cb cb, void *arg);

/*
 * The same, and for every host whose MX and address answers are secure
 * (DNSSEC on), the TLSA records of _tlsa_port._tcp.HOST (RFC 7672
 * section 2.2.1) in its target. tlsa_port 0: no TLSA, resolver_lookup().
 */
void resolver_lookup_tlsa(struct resolver *r, const char *name,
    bool mx_lookup, uint16_t tlsa_port, resolve_cb cb, void *arg);

/*
 * For tools and tests: a private ring and resolver, one lookup run to
 * completion (bounded by the timeouts), fn called exactly once; with
 * tlsa_port (and DNSSEC on), the TLSA records of secure hosts as
 * resolver_lookup_tlsa() fetches them; until_ms (CLOCK_MONOTONIC), when
 * not 0, ends it sooner (fn then gets a TEMPFAIL). Returns 0,
 * or -errno when the ring or resolver cannot be created (fn not called).
 */
int resolver_lookup_sync(const struct resolver_cfg *cfg, const char *name,
    bool mx_lookup, uint16_t tlsa_port, uint64_t until_ms,
    void (*fn)(void *arg, const struct resolve_result *res), void *arg);

#endif
