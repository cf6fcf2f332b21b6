/*
 * resolver.c - asynchronous DNS on a shard's io_uring ring; see resolver.h.
 * This file: configuration, the cache, lookups, the ring's completions
 * and the synchronous wrapper; resolver_wire.c sends and receives.
 *
 * Three layers, each with its own bounded table:
 *
 *   lookups   what callers asked for (resolver_lookup): "mail for this
 *             domain goes to these hosts and addresses". A lookup issues
 *             requests for (name, type) pairs - MX first, then A and AAAA
 *             of each host - and finishes when the last one is answered.
 *   queries   one (name, type) on the wire, in one of RESOLVER_QUERIES_MAX
 *             slots. Every lookup that needs the same pair while it is in
 *             flight waits on the same query (coalescing). A query is sent
 *             over UDP; an answer with TC moves it to TCP. Each try has
 *             cfg.timeout_ms; cfg.attempts tries in all, then it fails.
 *             Within a try a UDP datagram is sent again after a timeout
 *             taken from the measured round trip (RESOLVER_RESENDS_MAX),
 *             so a lost datagram costs a round trip, not timeout_ms.
 *             When all slots are busy, requests wait in a FIFO.
 *   cache     answers by (name, type) for their TTL, capped at an hour,
 *             negative ones (NXDOMAIN, NODATA) per RFC 2308, SERVFAIL and
 *             other error RCODEs for RESOLVER_FAIL_TTL_S seconds; timeouts
 *             and network errors are not cached. LRU beyond cfg.cache_max.
 *
 * I/O: one connected UDP socket with a single recv always armed on the
 * ring (answers are matched to a query by id, then dns_answer_parse()
 * checks the question), one send per try, and up to RESOLVER_TCP_MAX TCP
 * connections for truncated answers (connect, send with the RFC 1035
 * section 4.2.2 length prefix, recv until the whole message is in). Every
 * buffer the kernel reads or writes belongs to a slot that stays allocated
 * while its operation is in flight.
 *
 * user_data: op | (kind << RSLV_KIND_SHIFT | slot) | (instance << 24 |
 * generation). The instance tag tells a resolver created on a ring apart
 * from an earlier one with the same op, whose cancelled requests may still
 * complete after it is gone: such completions are dropped.
 *
 * Finished lookups go on a FIFO and their callbacks run at the end of
 * resolver_complete() and resolver_tick(), never inside resolver_lookup().
 *
 * Diagnostics: lookups report through resolve_result.why; unexpected
 * socket errors are logged with log_warn (once per recv failure).
 */
#include "resolver_int.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "../lib/errbuf.h"
#include "../lib/clock.h"
#include "../lib/log.h"
#include "../lib/uring.h"

static _Atomic unsigned rslv_instances;

/* ------------------------------------------------------------------ */
/* small helpers                                                       */
/* ------------------------------------------------------------------ */

/* Unpredictable bytes for query ids and MX shuffling (RFC 5452). */
uint32_t
rslv_rnd32(struct resolver *r)
{
	uint32_t v;

	if (r->rnd_left < sizeof(v)) {
		ssize_t n = getrandom(r->rnd, sizeof(r->rnd), GRND_NONBLOCK);

		if (n != (ssize_t)sizeof(r->rnd)) {
			/* Entropy not ready (early boot): a mixed clock. */
			for (size_t i = 0; i < sizeof(r->rnd); i += 8) {
				uint64_t x = XXH64(&r->rnd_counter,
				    sizeof(r->rnd_counter), clock_mono_ms() ^ i);

				r->rnd_counter++;
				memcpy(r->rnd + i, &x, 8);
			}
		}
		r->rnd_left = sizeof(r->rnd);
	}
	r->rnd_left -= sizeof(v);
	memcpy(&v, r->rnd + r->rnd_left, sizeof(v));
	return v;
}

/* Uniform in [0, n), n > 0. */
static unsigned
rnd_below(struct resolver *r, unsigned n)
{
	assert(n > 0);
	return (unsigned)(((uint64_t)rslv_rnd32(r) * n) >> 32);
}

uint64_t
rslv_ud_make(const struct resolver *r, enum rslv_kind kind, uint32_t slot,
    uint32_t gen)
{
	assert(slot <= RSLV_SLOT_MASK);
	return uring_ud(r->op, (uint32_t)kind << RSLV_KIND_SHIFT | slot,
	    r->instance << RSLV_INSTANCE_SHIFT | (gen & RSLV_GEN_MASK));
}

const char *
resolve_status_name(enum resolve_status st)
{
	switch (st) {
	case RESOLVE_OK:
		return "ok";
	case RESOLVE_NXDOMAIN:
		return "nxdomain";
	case RESOLVE_NULLMX:
		return "nullmx";
	case RESOLVE_NOADDR:
		return "noaddr";
	case RESOLVE_TEMPFAIL:
		return "tempfail";
	}
	return "?";
}

/* Lower-case copy without a trailing dot; false if not a host name. */
static bool
norm_name(const char *in, char out[DNS_NAME_MAX + 1])
{
	size_t len;

	if (in == NULL || dns_name_check(in) != 0)
		return false;
	len = strlen(in);
	if (in[len - 1] == '.')
		len--;
	for (size_t i = 0; i < len; i++)
		out[i] = (in[i] >= 'A' && in[i] <= 'Z') ?
		    (char)(in[i] - 'A' + 'a') : in[i];
	out[len] = '\0';
	return true;
}

/* ------------------------------------------------------------------ */
/* configuration                                                       */
/* ------------------------------------------------------------------ */

void
resolver_cfg_defaults(struct resolver_cfg *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->timeout_ms = 2000;
	cfg->attempts = 3;
	cfg->cache_max = 10000;
}

/* A numeric address and a decimal port into cfg->server. */
static int
set_server(struct resolver_cfg *cfg, const char *host, const char *port,
    const char *what, char *err, size_t errlen)
{
	struct addrinfo hints, *ai = NULL;
	unsigned long p = 0;
	size_t i;
	int rc;

	for (i = 0; port[i] != '\0' && i < 6; i++) {
		if (port[i] < '0' || port[i] > '9')
			break;
		p = p * 10 + (unsigned long)(port[i] - '0');
	}
	if (i == 0 || port[i] != '\0' || p == 0 || p > 65535) {
		errbuf_set(err, errlen, "bad port '%.16s' in nameserver '%.80s'",
		    port, what);
		return -1;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_DGRAM;
	/* Numeric only: no name service is consulted here. */
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
	rc = getaddrinfo(host, port, &hints, &ai);
	if (rc != 0 || ai == NULL || ai->ai_addrlen > sizeof(cfg->server)) {
		errbuf_set(err, errlen, "nameserver '%.80s' is not a numeric "
		    "IPv4 or IPv6 address", what);
		if (ai != NULL)
			freeaddrinfo(ai);
		return -1;
	}
	memset(&cfg->server, 0, sizeof(cfg->server));
	memcpy(&cfg->server, ai->ai_addr, ai->ai_addrlen);
	cfg->server_len = ai->ai_addrlen;
	freeaddrinfo(ai);
	return 0;
}

static int
parse_spec(struct resolver_cfg *cfg, const char *spec, char *err,
    size_t errlen)
{
	char host[128];
	const char *port = "53", *colon;
	size_t hlen;

	if (spec[0] == '[') {
		const char *close = strchr(spec, ']');

		if (close == NULL || (close[1] != '\0' && close[1] != ':')) {
			errbuf_set(err, errlen, "bad nameserver '%.80s' (expected "
			    "[IPv6]:port)", spec);
			return -1;
		}
		hlen = (size_t)(close - spec - 1);
		if (close[1] == ':')
			port = close + 2;
		spec++;
	} else if ((colon = strchr(spec, ':')) != NULL &&
	    strchr(colon + 1, ':') == NULL) {
		hlen = (size_t)(colon - spec);		/* addr:port */
		port = colon + 1;
	} else {
		hlen = strlen(spec);	/* an address, maybe bare IPv6 */
	}
	if (hlen == 0 || hlen >= sizeof(host)) {
		errbuf_set(err, errlen, "bad nameserver '%.80s'", spec);
		return -1;
	}
	memcpy(host, spec, hlen);
	host[hlen] = '\0';
	return set_server(cfg, host, port, host, err, errlen);
}

int
resolver_cfg_server(struct resolver_cfg *cfg, const char *spec,
    const char *resolv_conf_path, char *err, size_t errlen)
{
	char line[512], addr[128];
	FILE *f;
	bool found = false;

	assert(cfg != NULL);
	if (spec != NULL && spec[0] != '\0')
		return parse_spec(cfg, spec, err, errlen);
	if (resolv_conf_path == NULL)
		resolv_conf_path = "/etc/resolv.conf";
	if ((f = fopen(resolv_conf_path, "re")) == NULL) {
		errbuf_set(err, errlen, "cannot read %.120s: %s",
		    resolv_conf_path, strerror(errno));
		return -1;
	}
	for (int n = 0; n < RESOLVER_RESOLV_LINES &&
	    fgets(line, sizeof(line), f) != NULL; n++) {
		/* resolv.conf(5): "nameserver ADDRESS", first one wins. */
		if (sscanf(line, " nameserver %127s", addr) == 1) {
			found = true;
			break;
		}
	}
	fclose(f);
	if (!found) {
		errbuf_set(err, errlen, "no nameserver line in %.120s",
		    resolv_conf_path);
		return -1;
	}
	/* The address alone: resolv.conf has no port syntax. */
	return set_server(cfg, addr, "53", addr, err, errlen);
}

/* ------------------------------------------------------------------ */
/* cache                                                               */
/* ------------------------------------------------------------------ */

static uint64_t
cache_hash(const char *name, uint16_t type)
{
	return XXH3_64bits_withSeed(name, strlen(name), type);
}

void
rslv_centry_free(struct centry *e)
{
	if (e == NULL)
		return;
	free(e->recs);
	free(e->cname);
	free(e->wire);
	free(e);
}

static void
lru_unlink(struct resolver *r, struct centry *e)
{
	if (e->lprev != NULL)
		e->lprev->lnext = e->lnext;
	else
		r->lru_head = e->lnext;
	if (e->lnext != NULL)
		e->lnext->lprev = e->lprev;
	else
		r->lru_tail = e->lprev;
	e->lprev = e->lnext = NULL;
}

static void
lru_push(struct resolver *r, struct centry *e)
{
	e->lprev = NULL;
	e->lnext = r->lru_head;
	if (r->lru_head != NULL)
		r->lru_head->lprev = e;
	r->lru_head = e;
	if (r->lru_tail == NULL)
		r->lru_tail = e;
}

static void
cache_remove(struct resolver *r, struct centry *e)
{
	struct centry **pp = &r->bucket[e->hash & (r->nbucket - 1)];

	while (*pp != e) {
		assert(*pp != NULL);
		pp = &(*pp)->hnext;
	}
	*pp = e->hnext;
	lru_unlink(r, e);
	assert(r->ncache > 0);
	r->ncache--;
	rslv_centry_free(e);
}

struct centry *
rslv_cache_get(struct resolver *r, const char *name, uint16_t type)
{
	uint64_t h;
	struct centry *e;

	if (r->nbucket == 0)
		return NULL;
	h = cache_hash(name, type);
	for (e = r->bucket[h & (r->nbucket - 1)]; e != NULL; e = e->hnext) {
		if (e->hash != h || e->type != type || strcmp(e->name, name))
			continue;
		if (r->now_ms >= e->expires_ms) {
			cache_remove(r, e);
			return NULL;
		}
		lru_unlink(r, e);
		lru_push(r, e);
		return e;
	}
	return NULL;
}

/* Takes e into the cache if it may be cached; true if it did. */
bool
rslv_cache_put(struct resolver *r, struct centry *e)
{
	struct centry *old;

	if (r->nbucket == 0 || e->ttl_s == 0)
		return false;
	if ((old = rslv_cache_get(r, e->name, e->type)) != NULL)
		cache_remove(r, old);
	while (r->ncache >= r->cfg.cache_max && r->lru_tail != NULL)
		cache_remove(r, r->lru_tail);
	e->hash = cache_hash(e->name, e->type);
	e->expires_ms = r->now_ms + (uint64_t)e->ttl_s * 1000u;
	e->hnext = r->bucket[e->hash & (r->nbucket - 1)];
	r->bucket[e->hash & (r->nbucket - 1)] = e;
	lru_push(r, e);
	r->ncache++;
	return true;
}

/* ------------------------------------------------------------------ */
/* lookups                                                             */
/* ------------------------------------------------------------------ */

static void
arm_wake(struct resolver *r)
{
	struct io_uring_sqe *sqe;

	if (r->wake_armed)
		return;
	sqe = uring_get_sqe(r->ring);
	io_uring_prep_nop(sqe);
	io_uring_sqe_set_data64(sqe, rslv_ud_make(r, K_WAKE, 0, 0));
	r->wake_armed = true;
}

static void __attribute__((format(printf, 3, 4)))
decide(struct lookup *lk, enum resolve_status st, const char *fmt, ...)
{
	va_list ap;

	lk->decided = true;
	lk->status = st;
	va_start(ap, fmt);
	vsnprintf(lk->why, sizeof(lk->why), fmt, ap);
	va_end(ap);
}

static void
note_fail(struct lookup *lk, const char *name, uint16_t type,
    const char *why)
{
	if (lk->fail[0] == '\0')
		snprintf(lk->fail, sizeof(lk->fail), "%.40s/%s: %.48s", name,
		    dns_type_name(type), why);
}

/* Address assembly: IPv4 first, but leave IPv6 up to half the room. */
static void
target_addrs(const struct target_state *ts, struct resolve_target *t)
{
	unsigned n6 = ts->n6 < RESOLVE_ADDR_MAX / 2 ? ts->n6 :
	    RESOLVE_ADDR_MAX / 2;
	unsigned na = ts->na, i;

	if (na > RESOLVE_ADDR_MAX - n6)
		na = RESOLVE_ADDR_MAX - n6;
	t->naddr = 0;
	for (i = 0; i < na; i++) {
		struct sockaddr_in *sin = (struct sockaddr_in *)
		    &t->addr[t->naddr++];

		memset(sin, 0, sizeof(t->addr[0]));
		sin->sin_family = AF_INET;
		memcpy(&sin->sin_addr, ts->a4[i], 4);
	}
	for (i = 0; i < ts->n6 && t->naddr < RESOLVE_ADDR_MAX; i++) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)
		    &t->addr[t->naddr++];

		memset(sin6, 0, sizeof(t->addr[0]));
		sin6->sin6_family = AF_INET6;
		memcpy(&sin6->sin6_addr, ts->a6[i], 16);
	}
}

/* A host is as secure as its MX answer and every address answer. */
static uint8_t
target_sec(const struct lookup *lk, const struct target_state *ts)
{
	if (!lk->dnssec)
		return RESOLVE_SEC_INSECURE;
	if (ts->bogus || lk->mx_sec == RESOLVE_SEC_BOGUS)
		return RESOLVE_SEC_BOGUS;
	if (ts->insecure || lk->mx_sec != RESOLVE_SEC_SECURE)
		return RESOLVE_SEC_INSECURE;
	return RESOLVE_SEC_SECURE;
}

/* All requests answered: settle the status and the target list. */
static void
lookup_settle(struct lookup *lk)
{
	unsigned i, ok = 0;
	bool tempfail = false, nx = false;

	if (lk->decided) {
		lk->ntargets = 0;
		return;
	}
	for (i = 0; i < lk->ntargets; i++) {
		const struct target_state *ts = &lk->ts[i];

		assert(ts->a != AS_WAIT && ts->aaaa != AS_WAIT);
		/* A is required: without its answer the host is unknown. */
		if (ts->a == AS_FAIL) {
			tempfail = true;
			continue;
		}
		if (ts->a == AS_NXDOMAIN)
			nx = true;
		if (ts->na == 0 && ts->n6 == 0) {
			/* Maybe IPv6-only and its AAAA failed: retry. */
			if (ts->aaaa == AS_FAIL)
				tempfail = true;
			continue;
		}
		lk->targets[i].sec = target_sec(lk, ts);
		if (ok != i) {
			lk->targets[ok] = lk->targets[i];
			lk->ts[ok] = *ts;
		}
		target_addrs(&lk->ts[ok], &lk->targets[ok]);
		ok++;
	}
	lk->ntargets = ok;
	if (ok > 0) {
		lk->status = RESOLVE_OK;
		lk->why[0] = '\0';
	} else if (tempfail) {
		lk->status = RESOLVE_TEMPFAIL;
		snprintf(lk->why, sizeof(lk->why), "no address for %.80s "
		    "yet: %.50s", lk->name, lk->fail);
	} else if (!lk->mx && nx) {
		lk->status = RESOLVE_NXDOMAIN;
		snprintf(lk->why, sizeof(lk->why), "host %.100s does not "
		    "exist (NXDOMAIN)", lk->name);
	} else if (!lk->mx) {
		lk->status = RESOLVE_NOADDR;
		snprintf(lk->why, sizeof(lk->why), "host %.100s has no A or "
		    "AAAA record", lk->name);
	} else if (lk->implicit) {
		lk->status = RESOLVE_NOADDR;
		snprintf(lk->why, sizeof(lk->why), "domain %.100s has no MX, "
		    "A or AAAA record", lk->name);
	} else {
		lk->status = RESOLVE_NOADDR;
		snprintf(lk->why, sizeof(lk->why), "no MX host of %.100s has "
		    "an address", lk->name);
	}
}

static void
lookup_finish(struct resolver *r, struct lookup *lk)
{
	assert(lk->outstanding == 0);
	/*
	 * validate: fetch the DS and DNSKEY records the answers need, in
	 * rounds (each round's answers may name more), then judge them.
	 * A hold on outstanding keeps answers from the cache, which come
	 * back inside rslv_request(), from finishing the lookup early.
	 */
	while (lk->val != NULL && !lk->val->done) {
		unsigned n;

		lk->outstanding = 1;
		n = rslv_val_step(r, lk);
		if (--lk->outstanding > 0)
			return;		/* the last answer calls again */
		if (n == 0) {
			rslv_val_apply(r, lk);
			lk->val->done = true;
		}
	}
	lookup_settle(lk);
	lk->next = NULL;
	if (r->done_tail != NULL)
		r->done_tail->next = lk;
	else
		r->done_head = lk;
	r->done_tail = lk;
	arm_wake(r);
}

void
rslv_request(struct resolver *r, struct lookup *lk, int sub, const char *name,
    uint16_t type)
{
	lk->outstanding++;
	rslv_submit_req(r, lk, sub, name, type);
}

/* MX answer: order the exchanges and ask for their addresses. */
static void
feed_mx(struct resolver *r, struct lookup *lk, const struct centry *e)
{
	const struct dns_mx *mx = e->recs;
	unsigned idx[DNS_RR_MAX], n = e->n, i, j, start;

	/* The last answer of a CNAME chain decides (each one is AD-checked
	 * in lk->authenticated, which demotes a chain with any hole). */
	lk->mx_sec = e->bogus ? RESOLVE_SEC_BOGUS : e->ad && lk->authenticated ?
	    RESOLVE_SEC_SECURE : RESOLVE_SEC_INSECURE;
	/* validate: rslv_val_apply() says, once every answer is in. */
	if (lk->val != NULL)
		lk->mx_sec = RESOLVE_SEC_INSECURE;
	switch (e->kind) {
	case DNS_KIND_DATA:
		break;
	case DNS_KIND_NODATA:
		/* RFC 5321 section 5.1: no MX, the domain is its own MX. */
		lk->implicit = true;
		lk->ntargets = 1;
		snprintf(lk->targets[0].host, sizeof(lk->targets[0].host),
		    "%s", lk->name);
		lk->targets[0].pref = 0;
		rslv_request(r, lk, SUB_A(0), lk->name, DNS_T_A);
		rslv_request(r, lk, SUB_AAAA(0), lk->name, DNS_T_AAAA);
		return;
	case DNS_KIND_NXDOMAIN:
		if (lk->mx_alias[0] != '\0' || e->cname != NULL)
			decide(lk, RESOLVE_NXDOMAIN, "domain %.80s: its CNAME "
			    "target %.60s does not exist (NXDOMAIN)", lk->name,
			    e->cname != NULL ? e->cname : lk->mx_alias);
		else
			decide(lk, RESOLVE_NXDOMAIN, "domain %.100s does not "
			    "exist (NXDOMAIN)", lk->name);
		return;
	default:
		if (lk->mx_alias[0] != '\0')
			decide(lk, RESOLVE_TEMPFAIL, "MX lookup for %.50s "
			    "(CNAME %.40s) failed: %.50s", lk->name,
			    lk->mx_alias, e->why);
		else
			decide(lk, RESOLVE_TEMPFAIL, "MX lookup for %.80s "
			    "failed: %.60s", lk->name, e->why);
		return;
	}
	if (e->null_mx) {
		decide(lk, RESOLVE_NULLMX, "domain %.100s accepts no mail "
		    "(null MX, RFC 7505)", lk->name);
		return;
	}
	assert(n <= DNS_RR_MAX);
	/* Stable insertion sort by preference (RFC 5321 section 5.1)... */
	for (i = 0; i < n; i++) {
		for (j = i; j > 0 && mx[idx[j - 1]].pref > mx[i].pref; j--)
			idx[j] = idx[j - 1];
		idx[j] = i;
	}
	/* ...then shuffle each run of equal preference. */
	for (start = 0; start < n; start = j) {
		for (j = start + 1; j < n &&
		    mx[idx[j]].pref == mx[idx[start]].pref; j++)
			;
		for (unsigned k = j - 1; k > start; k--) {
			unsigned m = start + rnd_below(r, k - start + 1);
			unsigned t = idx[k];

			idx[k] = idx[m];
			idx[m] = t;
		}
	}
	lk->ntargets = 0;
	for (i = 0; i < n && lk->ntargets < RESOLVE_MX_MAX; i++) {
		const struct dns_mx *m = &mx[idx[i]];
		bool dup = false;

		for (j = 0; j < lk->ntargets; j++)
			dup |= strcmp(lk->targets[j].host, m->host) == 0;
		if (dup)
			continue;
		snprintf(lk->targets[lk->ntargets].host,
		    sizeof(lk->targets[0].host), "%s", m->host);
		lk->targets[lk->ntargets].pref = m->pref;
		lk->ntargets++;
	}
	if (lk->ntargets == 0) {
		decide(lk, RESOLVE_NOADDR, "domain %.100s has no usable MX "
		    "host", lk->name);
		return;
	}
	for (i = 0; i < lk->ntargets; i++) {
		rslv_request(r, lk, SUB_A(i), lk->targets[i].host, DNS_T_A);
		rslv_request(r, lk, SUB_AAAA(i), lk->targets[i].host, DNS_T_AAAA);
	}
}

static void
feed_addr(struct resolver *r, struct lookup *lk, int sub,
    const struct centry *e)
{
	unsigned i = (unsigned)sub / 2;
	bool v6 = sub & 1;
	struct target_state *ts = &lk->ts[i];
	uint8_t *st = v6 ? &ts->aaaa : &ts->a;
	const uint8_t (*addr)[16] = e->recs;

	assert(i < lk->ntargets);
	assert(*st == AS_WAIT);
	switch (e->kind) {
	case DNS_KIND_DATA:
		*st = AS_DATA;
		for (unsigned k = 0; k < e->n; k++) {
			if (!v6 && ts->na < RESOLVE_ADDR_MAX)
				memcpy(ts->a4[ts->na++], addr[k], 4);
			else if (v6 && ts->n6 < RESOLVE_ADDR_MAX)
				memcpy(ts->a6[ts->n6++], addr[k], 16);
		}
		break;
	case DNS_KIND_NODATA:
		*st = AS_NODATA;
		break;
	case DNS_KIND_NXDOMAIN:
		*st = AS_NXDOMAIN;
		break;
	default:
		*st = AS_FAIL;
		note_fail(lk, e->name, e->type, e->why);
		break;
	}
	if (e->bogus)
		ts->bogus = true;
	else if (e->kind != DNS_KIND_ERROR && !e->ad && lk->val == NULL)
		ts->insecure = true;
	/*
	 * RFC 7672 section 2.2: TLSA records are only looked for once the
	 * host's name and addresses are known to be secure; an insecure
	 * host gets none (and no query leaks what we are about).
	 */
	if (ts->a != AS_WAIT && ts->aaaa != AS_WAIT && lk->tlsa_port != 0 &&
	    ts->na + ts->n6 > 0 && (lk->val != NULL ||
	    target_sec(lk, ts) == RESOLVE_SEC_SECURE)) {
		char q[DNS_NAME_MAX + 16];

		if (snprintf(q, sizeof(q), "_%u._tcp.%s", lk->tlsa_port,
		    lk->targets[i].host) > DNS_NAME_MAX) {
			lk->targets[i].tlsa = RESOLVE_TLSA_FAIL;
			snprintf(lk->targets[i].tlsa_why,
			    sizeof(lk->targets[i].tlsa_why), "TLSA name too "
			    "long");
			return;
		}
		rslv_request(r, lk, SUB_TLSA(i), q, DNS_T_TLSA);
	}
}

/*
 * The TLSA answer of target i. Only authenticated records count; a
 * secure denial (NXDOMAIN, NODATA) or an unsigned answer is "none"
 * (RFC 7672 section 2.2.2); a failure, SERVFAIL above all (what a
 * validating resolver answers when the records are bogus), leaves the
 * host's DANE state unknown: delivery defers it, never goes plaintext.
 */
static void
feed_tlsa(struct lookup *lk, int sub, const struct centry *e)
{
	unsigned i = (unsigned)(sub - SUB_TLSA(0));
	struct resolve_target *t = &lk->targets[i];
	const struct dns_tlsa *rr = e->recs;

	assert(i < lk->ntargets);
	switch (e->kind) {
	case DNS_KIND_DATA:
		/* validate: taken for now, rslv_val_apply() judges. */
		if (!e->ad && lk->val == NULL) {
			t->tlsa = RESOLVE_TLSA_NONE;
			break;
		}
		t->tlsa = RESOLVE_TLSA_FOUND;
		t->ntlsa = 0;
		for (unsigned k = 0; k < e->n && t->ntlsa < RESOLVE_TLSA_MAX;
		    k++)
			t->tlsa_rr[t->ntlsa++] = rr[k];
		break;
	case DNS_KIND_NODATA:
	case DNS_KIND_NXDOMAIN:
		t->tlsa = RESOLVE_TLSA_NONE;
		break;
	default: {
		char why[sizeof(t->tlsa_why)];

		t->tlsa = RESOLVE_TLSA_FAIL;
		snprintf(why, sizeof(why), "TLSA lookup for %.40s failed: "
		    "%.60s", t->host, e->why);
		memcpy(t->tlsa_why, why, sizeof(why));
		break;
	}
	}
}

/*
 * An answer whose CNAME chain ends at a name without the records asked
 * for: an authoritative server answers so for a target outside its zones,
 * and a recursive one may too. RFC 1034 section 5.3.3: the search goes on
 * at the alias's target. Ask for it (the new request stands for sub), at
 * most DNS_CNAME_MAX CNAMEs over the whole chain: true. Past that, false
 * with *f the temporary failure to feed instead: a chain too long, or
 * looping, is a broken zone that may be mended, not a missing domain.
 */
static bool
chase(struct resolver *r, struct lookup *lk, int sub, const struct centry *e,
    struct centry *f)
{
	uint8_t *hops = &lk->hops[sub + 1];

	assert(sub + 1 >= 0 && (size_t)(sub + 1) < sizeof(lk->hops));
	if (*hops + e->ncname > DNS_CNAME_MAX) {
		memset(f, 0, sizeof(*f));
		f->kind = DNS_KIND_ERROR;
		f->type = e->type;
		snprintf(f->name, sizeof(f->name), "%s", e->name);
		snprintf(f->why, sizeof(f->why), "CNAME chain longer than %d",
		    DNS_CNAME_MAX);
		return false;
	}
	*hops = (uint8_t)(*hops + e->ncname);
	if (sub == SUB_MX)
		snprintf(lk->mx_alias, sizeof(lk->mx_alias), "%s", e->cname);
	rslv_request(r, lk, sub, e->cname, e->type);
	return true;
}

/* One answer for one of lk's requests. */
void
rslv_feed(struct resolver *r, struct lookup *lk, int sub, const struct centry *e)
{
	struct centry f;

	assert(lk->outstanding > 0);
	if (lk->val != NULL) {
		rslv_val_record(lk, sub, e);
		if (SUB_IS_VAL(sub))
			goto out;
	}
	if (e->kind != DNS_KIND_ERROR && !SUB_IS_TLSA(sub))
		lk->authenticated &= e->ad;
	if (e->kind == DNS_KIND_NODATA && e->cname != NULL) {
		if (chase(r, lk, sub, e, &f))
			goto out;
		e = &f;
	}
	if (sub == SUB_MX)
		feed_mx(r, lk, e);
	else if (SUB_IS_TLSA(sub))
		feed_tlsa(lk, sub, e);
	else
		feed_addr(r, lk, sub, e);
out:
	if (--lk->outstanding == 0)
		lookup_finish(r, lk);
}

/* A failure that never reached the wire (no memory): rslv_feed it as such. */
void
rslv_feed_local_fail(struct resolver *r, struct lookup *lk, int sub,
    const char *name, uint16_t type, const char *why)
{
	struct centry e;

	memset(&e, 0, sizeof(e));
	e.kind = DNS_KIND_ERROR;
	e.type = type;
	snprintf(e.name, sizeof(e.name), "%s", name);
	snprintf(e.why, sizeof(e.why), "%s", why);
	rslv_feed(r, lk, sub, &e);
}

/* Runs the callbacks of lookups finished so far (not of later ones). */
static void
run_done(struct resolver *r)
{
	struct lookup *lk;
	struct early *ea;
	unsigned n = 0, ne = 0;

	for (lk = r->done_head; lk != NULL; lk = lk->next)
		n++;
	for (ea = r->early_head; ea != NULL; ea = ea->next)
		ne++;
	while (ne-- > 0 && (ea = r->early_head) != NULL) {
		struct resolve_result res;

		r->early_head = ea->next;
		if (r->early_head == NULL)
			r->early_tail = NULL;
		memset(&res, 0, sizeof(res));
		res.status = ea->status;
		memcpy(res.why, ea->why, sizeof(res.why));
		ea->cb(ea->arg, &res);
		free(ea);
	}
	while (n-- > 0 && (lk = r->done_head) != NULL) {
		struct resolve_result res;

		r->done_head = lk->next;
		if (r->done_head == NULL)
			r->done_tail = NULL;
		if (lk->aprev != NULL)
			lk->aprev->anext = lk->anext;
		else
			r->all = lk->anext;
		if (lk->anext != NULL)
			lk->anext->aprev = lk->aprev;
		r->nlookups--;
		memset(&res, 0, sizeof(res));
		res.status = lk->status;
		res.authenticated = lk->status == RESOLVE_OK &&
		    lk->authenticated;
		res.mx_sec = lk->mx_sec;
		snprintf(res.why, sizeof(res.why), "%s", lk->why);
		res.ntargets = lk->status == RESOLVE_OK ? lk->ntargets : 0;
		res.targets = lk->targets;
		lk->cb(lk->arg, &res);
		rslv_val_free(lk);
		free(lk);
	}
	if (r->done_head != NULL || r->early_head != NULL)
		arm_wake(r);
}

/* A lookup answered without any rslv_request: refused, or not a name. */
static void __attribute__((format(printf, 5, 6)))
lookup_early(struct resolver *r, resolve_cb cb, void *arg,
    enum resolve_status st, const char *fmt, ...)
{
	struct early *ea = calloc(1, sizeof(*ea));
	va_list ap;

	if (ea == NULL)
		log_panic("resolver: out of memory");
	ea->cb = cb;
	ea->arg = arg;
	ea->status = st;
	va_start(ap, fmt);
	vsnprintf(ea->why, sizeof(ea->why), fmt, ap);
	va_end(ap);
	if (r->early_tail != NULL)
		r->early_tail->next = ea;
	else
		r->early_head = ea;
	r->early_tail = ea;
	arm_wake(r);
}

void
resolver_lookup(struct resolver *r, const char *name, bool mx_lookup,
    resolve_cb cb, void *arg)
{
	resolver_lookup_tlsa(r, name, mx_lookup, 0, cb, arg);
}

void
resolver_lookup_tlsa(struct resolver *r, const char *name, bool mx_lookup,
    uint16_t tlsa_port, resolve_cb cb, void *arg)
{
	struct lookup *lk;
	char norm[DNS_NAME_MAX + 1];

	assert(r != NULL && cb != NULL);
	r->now_ms = clock_mono_ms();
	if (!norm_name(name, norm)) {
		lookup_early(r, cb, arg, RESOLVE_NXDOMAIN, "'%.100s' is not a "
		    "valid domain name", name != NULL ? name : "");
		return;
	}
	if (r->nlookups >= RESOLVER_LOOKUPS_MAX ||
	    (lk = calloc(1, sizeof(*lk))) == NULL) {
		lookup_early(r, cb, arg, RESOLVE_TEMPFAIL, "too many DNS "
		    "lookups in progress (%u)", r->nlookups);
		return;
	}
	lk->cb = cb;
	lk->arg = arg;
	lk->mx = mx_lookup;
	lk->authenticated = true;
	lk->dnssec = r->cfg.dnssec != RESOLVE_DNSSEC_OFF;
	if (r->cfg.dnssec == RESOLVE_DNSSEC_VALIDATE &&
	    (lk->val = calloc(1, sizeof(*lk->val))) == NULL)
		log_panic("resolver: out of memory");
	lk->tlsa_port = lk->dnssec ? tlsa_port : 0;
	/* A fixed next hop has no MX answer to doubt. */
	lk->mx_sec = mx_lookup ? RESOLVE_SEC_INSECURE : RESOLVE_SEC_SECURE;
	memcpy(lk->name, norm, sizeof(norm));
	lk->anext = r->all;
	if (r->all != NULL)
		r->all->aprev = lk;
	r->all = lk;
	r->nlookups++;
	/* Hold a reference so that cached answers cannot finish it early. */
	lk->outstanding = 1;
	if (mx_lookup) {
		rslv_request(r, lk, SUB_MX, lk->name, DNS_T_MX);
	} else {
		lk->ntargets = 1;
		snprintf(lk->targets[0].host, sizeof(lk->targets[0].host),
		    "%s", lk->name);
		rslv_request(r, lk, SUB_A(0), lk->name, DNS_T_A);
		rslv_request(r, lk, SUB_AAAA(0), lk->name, DNS_T_AAAA);
	}
	if (--lk->outstanding == 0)
		lookup_finish(r, lk);
}

int
resolver_dnssec_parse(const char *s)
{
	if (strcmp(s, "off") == 0)
		return RESOLVE_DNSSEC_CFG_OFF;
	if (strcmp(s, "trust-ad") == 0)
		return RESOLVE_DNSSEC_CFG_TRUST_AD;
	if (strcmp(s, "validate") == 0)
		return RESOLVE_DNSSEC_CFG_VALIDATE;
	return -1;
}

bool
resolver_server_loopback(const struct resolver_cfg *cfg)
{
	if (cfg->server.ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const void *)&cfg->server;

		return (ntohl(s4->sin_addr.s_addr) >> 24) == 127;
	}
	if (cfg->server.ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)&cfg->server;

		return IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr) ||
		    (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr) &&
		    s6->sin6_addr.s6_addr[12] == 127);
	}
	return false;
}

void
resolver_cfg_dnssec(struct resolver_cfg *cfg, unsigned cfg_mode)
{
	switch (cfg_mode) {
	case RESOLVE_DNSSEC_CFG_AUTO:
		cfg->dnssec = resolver_server_loopback(cfg) ?
		    RESOLVE_DNSSEC_TRUST_AD : RESOLVE_DNSSEC_OFF;
		break;
	case RESOLVE_DNSSEC_CFG_OFF:
		cfg->dnssec = RESOLVE_DNSSEC_OFF;
		break;
	case RESOLVE_DNSSEC_CFG_TRUST_AD:
		cfg->dnssec = RESOLVE_DNSSEC_TRUST_AD;
		break;
	case RESOLVE_DNSSEC_CFG_VALIDATE:
		cfg->dnssec = RESOLVE_DNSSEC_VALIDATE;
		break;
	default:
		log_panic("resolver: bad dnssec mode %u", cfg_mode);
	}
}

const char *
resolve_sec_name(unsigned sec)
{
	switch (sec) {
	case RESOLVE_SEC_INSECURE:
		return "insecure";
	case RESOLVE_SEC_SECURE:
		return "secure";
	case RESOLVE_SEC_BOGUS:
		return "bogus";
	default:
		return "?";
	}
}

const char *
resolve_tlsa_name(unsigned st)
{
	switch (st) {
	case RESOLVE_TLSA_UNASKED:
		return "unasked";
	case RESOLVE_TLSA_NONE:
		return "none";
	case RESOLVE_TLSA_FOUND:
		return "found";
	case RESOLVE_TLSA_FAIL:
		return "fail";
	default:
		return "?";
	}
}

/* ------------------------------------------------------------------ */
/* the ring                                                            */
/* ------------------------------------------------------------------ */

void
resolver_complete(struct resolver *r, uint64_t user_data, int res,
    uint32_t cqe_flags)
{
	uint32_t idx = URING_UD_IDX(user_data);
	uint32_t slot = idx & RSLV_SLOT_MASK;
	uint32_t gen = URING_UD_GEN(user_data);

	(void)cqe_flags;
	assert(r != NULL);
	assert(URING_UD_OP(user_data) == r->op);
	if (gen >> RSLV_INSTANCE_SHIFT != r->instance)
		return;		/* a destroyed predecessor's rslv_request */
	gen &= RSLV_GEN_MASK;
	r->now_ms = clock_mono_ms();
	switch ((enum rslv_kind)(idx >> RSLV_KIND_SHIFT)) {
	case K_UDP_RECV:
		rslv_udp_recv_done(r, res);
		break;
	case K_UDP_SEND:
		assert(slot < RESOLVER_QUERIES_MAX);
		/* A slot is never reused while its send is in flight. */
		assert((r->q[slot].gen & RSLV_GEN_MASK) == gen);
		rslv_udp_send_done(r, &r->q[slot], res);
		break;
	case K_TCP:
		assert(slot < RESOLVER_TCP_MAX);
		assert((r->tc[slot].gen & RSLV_GEN_MASK) == gen);
		rslv_tcp_done(r, &r->tc[slot], res);
		break;
	case K_WAKE:
		r->wake_armed = false;
		break;
	case K_CANCEL:
		break;
	default:
		log_panic("resolver: bad completion kind %u",
		    (unsigned)(idx >> RSLV_KIND_SHIFT));
	}
	run_done(r);
}

/*
 * Room for a burst of answers (RESOLVER_UDP_RCVBUF). SO_RCVBUFFORCE
 * passes net.core.rmem_max when we may (still root); else the kernel caps
 * what SO_RCVBUF asks at rmem_max, and retransmission covers the rest.
 */
static void
rslv_udp_rcvbuf(int fd)
{
	int want = RESOLVER_UDP_RCVBUF;

	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &want,
	    sizeof(want)) < 0 &&
	    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &want, sizeof(want)) < 0)
		log_debug("resolver: SO_RCVBUF: %s", strerror(errno));
}

void
resolver_tick(struct resolver *r, uint64_t now_ms)
{
	assert(r != NULL);
	r->now_ms = now_ms;
	if (r->recv_retry) {
		r->recv_retry = false;
		rslv_arm_recv(r);
	}
	for (unsigned i = 0; i < RESOLVER_QUERIES_MAX; i++) {
		struct rquery *q = &r->q[i];

		if (!q->used || q->finished || q->tries == 0)
			continue;
		if (now_ms < q->deadline_ms) {
			rslv_udp_resend_due(r, q);
			continue;
		}
		if (q->tcp && q->tconn >= 0) {
			struct tconn *c = &r->tc[q->tconn];

			q->tconn = -1;
			rslv_tcp_abort(r, c);
		}
		if (!q->finished)
			rslv_try_failed(r, q, ETIMEDOUT);
	}
	run_done(r);
}

int
resolver_create(struct resolver **rp, struct io_uring *ring, unsigned op,
    const struct resolver_cfg *cfg)
{
	struct resolver *r;
	int rc;

	assert(rp != NULL && ring != NULL && cfg != NULL);
	*rp = NULL;
	if (cfg->server_len == 0 || (cfg->server.ss_family != AF_INET &&
	    cfg->server.ss_family != AF_INET6) || cfg->timeout_ms == 0 ||
	    cfg->timeout_ms > RESOLVER_TIMEOUT_MS_MAX ||
	    cfg->attempts == 0 || cfg->attempts > RESOLVER_ATTEMPTS_MAX ||
	    cfg->cache_max > RESOLVER_CACHE_MAX || op >= 256 ||
	    cfg->dnssec > RESOLVE_DNSSEC_VALIDATE ||
	    (cfg->dnssec == RESOLVE_DNSSEC_VALIDATE &&
	    cfg->trust_anchor == NULL))
		return -EINVAL;
	if ((r = calloc(1, sizeof(*r))) == NULL)
		return -ENOMEM;
	r->ring = ring;
	r->op = op;
	r->instance = atomic_fetch_add(&rslv_instances, 1) % 255 + 1;
	r->cfg = *cfg;
	r->udp_fd = -1;
	for (unsigned i = 0; i < RESOLVER_TCP_MAX; i++)
		r->tc[i].fd = -1;
	r->now_ms = clock_mono_ms();
	r->udp_buf = malloc(RESOLVER_UDP_BUF);
	r->ans = malloc(sizeof(*r->ans));
	r->q = calloc(RESOLVER_QUERIES_MAX, sizeof(*r->q));
	if (r->udp_buf == NULL || r->ans == NULL || r->q == NULL) {
		rc = -ENOMEM;
		goto fail;
	}
	if (cfg->dnssec == RESOLVE_DNSSEC_VALIDATE) {
		char why[256];

		/* A small file, read once while the shard starts. */
		if ((r->anchors = rslv_anchor_load(cfg->trust_anchor, why,
		    sizeof(why))) == NULL) {
			log_warn("resolver: %s", why);
			rc = -EINVAL;
			goto fail;
		}
	}
	if (cfg->cache_max > 0) {
		r->nbucket = 16;
		while (r->nbucket < cfg->cache_max)
			r->nbucket *= 2;
		r->bucket = calloc(r->nbucket, sizeof(*r->bucket));
		if (r->bucket == NULL) {
			rc = -ENOMEM;
			goto fail;
		}
	}
	{
		char host[INET6_ADDRSTRLEN];
		unsigned port;

		if (cfg->server.ss_family == AF_INET) {
			const struct sockaddr_in *s =
			    (const struct sockaddr_in *)&cfg->server;

			inet_ntop(AF_INET, &s->sin_addr, host, sizeof(host));
			port = ntohs(s->sin_port);
			snprintf(r->server_text, sizeof(r->server_text),
			    "%s:%u", host, port);
		} else {
			const struct sockaddr_in6 *s =
			    (const struct sockaddr_in6 *)&cfg->server;

			inet_ntop(AF_INET6, &s->sin6_addr, host, sizeof(host));
			port = ntohs(s->sin6_port);
			snprintf(r->server_text, sizeof(r->server_text),
			    "[%s]:%u", host, port);
		}
	}
	r->udp_fd = socket(cfg->server.ss_family,
	    SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (r->udp_fd < 0) {
		rc = -errno;
		goto fail;
	}
	rslv_udp_rcvbuf(r->udp_fd);
	/* Connected: only the server's datagrams reach us, and ICMP errors
	 * come back as ECONNREFUSED. */
	if (connect(r->udp_fd, (const struct sockaddr *)&cfg->server,
	    cfg->server_len) < 0) {
		rc = -errno;
		goto fail;
	}
	rslv_arm_recv(r);
	*rp = r;
	return 0;
fail:
	if (r->udp_fd >= 0)
		close(r->udp_fd);
	rslv_anchor_free(r->anchors);
	free(r->bucket);
	free(r->q);
	free(r->ans);
	free(r->udp_buf);
	free(r);
	return rc;
}

/* Waits until the kernel has finished every rslv_request on fd. */
static void
cancel_fd_sync(struct resolver *r, int fd)
{
	struct io_uring_sync_cancel_reg reg;
	int rc;

	memset(&reg, 0, sizeof(reg));
	reg.fd = fd;
	reg.flags = IORING_ASYNC_CANCEL_FD | IORING_ASYNC_CANCEL_ALL;
	reg.timeout.tv_sec = -1;
	reg.timeout.tv_nsec = -1;
	rc = io_uring_register_sync_cancel(r->ring, &reg);
	if (rc < 0 && rc != -ENOENT)
		log_warn("resolver: cancelling requests on fd %d: %s", fd,
		    strerror(-rc));
}

void
resolver_destroy(struct resolver *r)
{
	if (r == NULL)
		return;
	/* Ours may sit unsubmitted in the SQ: hand them over, then cancel,
	 * so none starts later on a closed (or reused) descriptor. */
	io_uring_submit(r->ring);
	if (r->udp_fd >= 0)
		cancel_fd_sync(r, r->udp_fd);
	for (unsigned i = 0; i < RESOLVER_TCP_MAX; i++) {
		struct tconn *c = &r->tc[i];

		if (!c->used)
			continue;
		cancel_fd_sync(r, c->fd);
		close(c->fd);
		free(c->buf);
	}
	if (r->udp_fd >= 0)
		close(r->udp_fd);
	for (unsigned i = 0; i < RESOLVER_QUERIES_MAX; i++) {
		struct waiter *w = r->q[i].waiters;

		while (w != NULL) {
			struct waiter *next = w->next;

			free(w);
			w = next;
		}
	}
	while (r->pend_head != NULL) {
		struct pending *p = r->pend_head;

		r->pend_head = p->next;
		free(p);
	}
	while (r->early_head != NULL) {
		struct early *ea = r->early_head;

		r->early_head = ea->next;
		free(ea);
	}
	while (r->all != NULL) {
		struct lookup *lk = r->all;

		r->all = lk->anext;
		rslv_val_free(lk);
		free(lk);
	}
	while (r->lru_head != NULL)
		cache_remove(r, r->lru_head);
	rslv_anchor_free(r->anchors);
	free(r->bucket);
	free(r->q);
	free(r->ans);
	free(r->udp_buf);
	free(r);
}

/* ------------------------------------------------------------------ */
/* synchronous use                                                     */
/* ------------------------------------------------------------------ */

struct sync_state {
	void (*fn)(void *arg, const struct resolve_result *res);
	void *arg;
	bool done;
	struct resolver *r;
};

/* After the answer, later completions (cancellations) are only drained. */
static void
sync_dispatch(void *ctx, uint64_t ud, int res, uint32_t flags)
{
	struct sync_state *s = ctx;

	if (!s->done && URING_UD_OP(ud) == RESOLVER_SYNC_OP)
		resolver_complete(s->r, ud, res, flags);
}

static void
sync_done(void *arg, const struct resolve_result *res)
{
	struct sync_state *s = arg;

	assert(!s->done);
	s->done = true;
	s->fn(s->arg, res);
}

int
resolver_lookup_sync(const struct resolver_cfg *cfg, const char *name,
    bool mx_lookup, uint16_t tlsa_port, uint64_t until_ms,
    void (*fn)(void *arg, const struct resolve_result *res), void *arg)
{
	struct sync_state s = { fn, arg, false, NULL };
	struct io_uring ring;
	struct uring_loop loop;
	struct resolver *r;
	uint64_t deadline;
	int rc;

	assert(cfg != NULL && fn != NULL);
	if ((rc = uring_init(&ring, 64, 0)) < 0)
		return rc;
	if ((rc = resolver_create(&r, &ring, RESOLVER_SYNC_OP, cfg)) < 0) {
		io_uring_queue_exit(&ring);
		return rc;
	}
	s.r = r;
	if ((rc = uring_loop_init(&loop, &ring, 64, sync_dispatch, &s,
	    "resolver")) < 0) {
		resolver_destroy(r);
		io_uring_queue_exit(&ring);
		return rc;
	}
	/* MX, then addresses, then TLSA: each phase at most attempts
	 * tries, plus a TCP try, of timeout_ms. A bound, never normally
	 * reached. */
	deadline = clock_mono_ms() +
	    4ull * (cfg->attempts + 1) * cfg->timeout_ms + 1000;
	if (until_ms != 0 && until_ms < deadline)
		deadline = until_ms;
	resolver_lookup_tlsa(r, name, mx_lookup, tlsa_port, sync_done, &s);
	while (!s.done && clock_mono_ms() < deadline) {
		uring_loop_step(&loop, 100 * 1000);
		if (!s.done)
			resolver_tick(r, clock_mono_ms());
	}
	uring_loop_free(&loop);
	resolver_destroy(r);
	if (!s.done) {
		struct resolve_result res;

		memset(&res, 0, sizeof(res));
		res.status = RESOLVE_TEMPFAIL;
		snprintf(res.why, sizeof(res.why), "DNS lookup of %.100s did "
		    "not finish in time", name != NULL ? name : "");
		fn(arg, &res);
	}
	io_uring_queue_exit(&ring);
	return 0;
}
