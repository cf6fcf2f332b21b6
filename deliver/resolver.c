/*
 * resolver.c - asynchronous DNS on a shard's io_uring ring; see resolver.h.
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
#include "resolver.h"

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

#include "../proto/dns.h"
#include "../lib/clock.h"
#include "../lib/log.h"
#include "../lib/uring.h"

#define RESOLVER_QUERIES_MAX	256	/* (name, type) queries in flight */
#define RESOLVER_LOOKUPS_MAX	1024	/* lookups in progress */
#define RESOLVER_TCP_MAX	8	/* TCP connections at once */
#define RESOLVER_TTL_MAX_S	3600	/* cap on positive answers */
#define RESOLVER_NEG_TTL_MAX_S	3600	/* cap on NXDOMAIN / NODATA */
#define RESOLVER_FAIL_TTL_S	5	/* SERVFAIL, REFUSED, ... */
#define RESOLVER_UDP_BUF	65536	/* any UDP datagram fits */
#define RESOLVER_TCP_BUF_MIN	1024
#define RESOLVER_TIMEOUT_MS_MAX	60000
#define RESOLVER_ATTEMPTS_MAX	10
#define RESOLVER_CACHE_MAX	1000000
#define RESOLVER_SYNC_OP	1	/* the op of resolver_lookup_sync's ring */
#define RESOLVER_RESOLV_LINES	1000	/* lines read from resolv.conf */

#define RSLV_KIND_SHIFT		20
#define RSLV_SLOT_MASK		((1u << RSLV_KIND_SHIFT) - 1)
#define RSLV_GEN_MASK		0xffffffu	/* generation bits of gen */
#define RSLV_INSTANCE_SHIFT	24

/* Tags resolvers apart (see user_data above); shared by every shard. */
static _Atomic unsigned rslv_instances;

static_assert(RESOLVER_QUERIES_MAX <= RSLV_SLOT_MASK, "slot fits user_data");
static_assert(RESOLVE_HOST_MAX >= DNS_NAME_MAX, "a DNS name fits a host");

/* What a completion is for (the slot part of user_data says which). */
enum rslv_kind {
	K_UDP_RECV = 1,
	K_UDP_SEND,	/* slot: query */
	K_TCP,		/* slot: TCP connection (one operation at a time) */
	K_WAKE,		/* a NOP that brings finished lookups to the loop */
	K_CANCEL,	/* result of a cancellation; nothing to do */
};

/* Per-host address lookup state. */
enum addr_state {
	AS_WAIT = 0,
	AS_DATA,
	AS_NODATA,
	AS_NXDOMAIN,
	AS_FAIL,
};

/* A request's sub: the MX of the lookup's name, or A/AAAA of target i. */
#define SUB_MX		(-1)
#define SUB_A(i)	((int)(i) * 2)
#define SUB_AAAA(i)	((int)(i) * 2 + 1)

/*
 * An answer, cached or not. kind is a dns_kind; DNS_KIND_ERROR covers
 * every temporary failure (RCODE, timeout, network), explained in why.
 */
struct centry {
	struct centry *hnext;		/* hash chain */
	struct centry *lprev, *lnext;	/* LRU, head = most recent */
	uint64_t hash;
	uint64_t expires_ms;
	uint32_t ttl_s;			/* 0: not to be cached */
	uint16_t type;
	uint8_t kind;
	bool ad;
	bool null_mx;
	unsigned n;
	void *recs;	/* n struct dns_mx, or n addresses of 16 octets */
	char name[DNS_NAME_MAX + 1];
	char why[96];
};

struct target_state {
	uint8_t a, aaaa;		/* enum addr_state */
	unsigned na, n6;
	uint8_t a4[RESOLVE_ADDR_MAX][4];
	uint8_t a6[RESOLVE_ADDR_MAX][16];
};

struct lookup {
	struct lookup *next;		/* done FIFO */
	struct lookup *aprev, *anext;	/* every lookup, for destroy */
	resolve_cb cb;
	void *arg;
	char name[DNS_NAME_MAX + 1];
	bool mx;
	bool implicit;			/* MX NODATA: the name itself */
	bool decided;			/* status set before the address phase */
	bool authenticated;
	unsigned outstanding;		/* requests not answered yet */
	enum resolve_status status;
	char why[160];
	char fail[96];			/* first temporary failure seen */
	unsigned ntargets;
	struct target_state ts[RESOLVE_MX_MAX];
	struct resolve_target targets[RESOLVE_MX_MAX];
};

/* A lookup finished before it started (bad name, too many lookups). */
struct early {
	struct early *next;
	resolve_cb cb;
	void *arg;
	enum resolve_status status;
	char why[160];
};

struct waiter {
	struct waiter *next;
	struct lookup *lk;
	int sub;
};

/* A request waiting for a free query slot. */
struct pending {
	struct pending *next;
	struct lookup *lk;
	int sub;
	uint16_t type;
	char name[DNS_NAME_MAX + 1];
};

struct rquery {
	uint32_t gen;
	bool used;
	bool finished;		/* answered or failed; waits for its send */
	bool sending;		/* a UDP send of wire is in flight */
	bool resend;		/* send again when that send completes */
	bool tcp;		/* truncated over UDP: now over TCP */
	bool tcp_wait;		/* waiting for a free TCP connection */
	int tconn;		/* TCP connection, -1: none (yet) */
	uint16_t type;
	uint16_t id;
	unsigned tries;
	uint64_t deadline_ms;	/* of the current try */
	int last_err;		/* errno of the last failed try */
	struct waiter *waiters;
	char name[DNS_NAME_MAX + 1];
	size_t wirelen;		/* of the message, after the 2-octet prefix */
	uint8_t wire[2 + DNS_QUERY_MAX];
};

enum tcp_state {
	T_CONNECT = 1,
	T_SEND,
	T_RECV,
};

struct tconn {
	bool used;
	bool inflight;		/* one operation on the ring */
	bool aborting;		/* cancelled: close when it completes */
	uint32_t gen;
	int fd;
	enum tcp_state state;
	uint32_t qidx, qgen;	/* the query it serves */
	size_t sent;
	uint8_t *buf;		/* the answer, with its length prefix */
	size_t len, cap;
};

struct resolver {
	struct io_uring *ring;
	unsigned op;
	uint32_t instance;	/* 1..255 */
	struct resolver_cfg cfg;
	char server_text[INET6_ADDRSTRLEN + 8];
	int udp_fd;
	bool recv_armed;
	bool recv_retry;	/* re-arm at the next tick */
	bool wake_armed;
	uint64_t now_ms;
	uint8_t *udp_buf;
	struct dns_answer *ans;	/* parse scratch */
	struct rquery *q;	/* RESOLVER_QUERIES_MAX */
	unsigned nquery;
	struct tconn tc[RESOLVER_TCP_MAX];
	struct pending *pend_head, *pend_tail;
	struct lookup *done_head, *done_tail;
	struct early *early_head, *early_tail;
	struct lookup *all;
	unsigned nlookups;
	struct centry **bucket;
	size_t nbucket;		/* power of two, 0: no cache */
	unsigned ncache;
	struct centry *lru_head, *lru_tail;
	uint8_t rnd[256];
	size_t rnd_left;
	uint64_t rnd_counter;
};

static void submit_req(struct resolver *r, struct lookup *lk, int sub,
    const char *name, uint16_t type);
static void try_failed(struct resolver *r, struct rquery *q, int err);
static void tcp_connect(struct resolver *r, struct rquery *q);

/* ------------------------------------------------------------------ */
/* small helpers                                                       */
/* ------------------------------------------------------------------ */

/* Unpredictable bytes for query ids and MX shuffling (RFC 5452). */
static uint32_t
rnd32(struct resolver *r)
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
	return (unsigned)(((uint64_t)rnd32(r) * n) >> 32);
}

static uint64_t
ud_make(const struct resolver *r, enum rslv_kind kind, uint32_t slot,
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

static void __attribute__((format(printf, 3, 4)))
set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
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
		set_err(err, errlen, "bad port '%.16s' in nameserver '%.80s'",
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
		set_err(err, errlen, "nameserver '%.80s' is not a numeric "
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
			set_err(err, errlen, "bad nameserver '%.80s' (expected "
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
		set_err(err, errlen, "bad nameserver '%.80s'", spec);
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
		set_err(err, errlen, "cannot read %.120s: %s",
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
		set_err(err, errlen, "no nameserver line in %.120s",
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

static void
centry_free(struct centry *e)
{
	if (e == NULL)
		return;
	free(e->recs);
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
	centry_free(e);
}

static struct centry *
cache_get(struct resolver *r, const char *name, uint16_t type)
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
static bool
cache_put(struct resolver *r, struct centry *e)
{
	struct centry *old;

	if (r->nbucket == 0 || e->ttl_s == 0)
		return false;
	if ((old = cache_get(r, e->name, e->type)) != NULL)
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
	io_uring_sqe_set_data64(sqe, ud_make(r, K_WAKE, 0, 0));
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
	lookup_settle(lk);
	lk->next = NULL;
	if (r->done_tail != NULL)
		r->done_tail->next = lk;
	else
		r->done_head = lk;
	r->done_tail = lk;
	arm_wake(r);
}

static void
request(struct resolver *r, struct lookup *lk, int sub, const char *name,
    uint16_t type)
{
	lk->outstanding++;
	submit_req(r, lk, sub, name, type);
}

/* MX answer: order the exchanges and ask for their addresses. */
static void
feed_mx(struct resolver *r, struct lookup *lk, const struct centry *e)
{
	const struct dns_mx *mx = e->recs;
	unsigned idx[DNS_RR_MAX], n = e->n, i, j, start;

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
		request(r, lk, SUB_A(0), lk->name, DNS_T_A);
		request(r, lk, SUB_AAAA(0), lk->name, DNS_T_AAAA);
		return;
	case DNS_KIND_NXDOMAIN:
		decide(lk, RESOLVE_NXDOMAIN, "domain %.100s does not exist "
		    "(NXDOMAIN)", lk->name);
		return;
	default:
		decide(lk, RESOLVE_TEMPFAIL, "MX lookup for %.80s failed: "
		    "%.60s", lk->name, e->why);
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
		request(r, lk, SUB_A(i), lk->targets[i].host, DNS_T_A);
		request(r, lk, SUB_AAAA(i), lk->targets[i].host, DNS_T_AAAA);
	}
}

static void
feed_addr(struct lookup *lk, int sub, const struct centry *e)
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
}

/* One answer for one of lk's requests. */
static void
feed(struct resolver *r, struct lookup *lk, int sub, const struct centry *e)
{
	assert(lk->outstanding > 0);
	if (e->kind != DNS_KIND_ERROR)
		lk->authenticated &= e->ad;
	if (sub == SUB_MX)
		feed_mx(r, lk, e);
	else
		feed_addr(lk, sub, e);
	if (--lk->outstanding == 0)
		lookup_finish(r, lk);
}

/* A failure that never reached the wire (no memory): feed it as such. */
static void
feed_local_fail(struct resolver *r, struct lookup *lk, int sub,
    const char *name, uint16_t type, const char *why)
{
	struct centry e;

	memset(&e, 0, sizeof(e));
	e.kind = DNS_KIND_ERROR;
	e.type = type;
	snprintf(e.name, sizeof(e.name), "%s", name);
	snprintf(e.why, sizeof(e.why), "%s", why);
	feed(r, lk, sub, &e);
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
		snprintf(res.why, sizeof(res.why), "%s", lk->why);
		res.ntargets = lk->status == RESOLVE_OK ? lk->ntargets : 0;
		res.targets = lk->targets;
		lk->cb(lk->arg, &res);
		free(lk);
	}
	if (r->done_head != NULL || r->early_head != NULL)
		arm_wake(r);
}

/* A lookup answered without any request: refused, or not a name. */
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
	memcpy(lk->name, norm, sizeof(norm));
	lk->anext = r->all;
	if (r->all != NULL)
		r->all->aprev = lk;
	r->all = lk;
	r->nlookups++;
	/* Hold a reference so that cached answers cannot finish it early. */
	lk->outstanding = 1;
	if (mx_lookup) {
		request(r, lk, SUB_MX, lk->name, DNS_T_MX);
	} else {
		lk->ntargets = 1;
		snprintf(lk->targets[0].host, sizeof(lk->targets[0].host),
		    "%s", lk->name);
		request(r, lk, SUB_A(0), lk->name, DNS_T_A);
		request(r, lk, SUB_AAAA(0), lk->name, DNS_T_AAAA);
	}
	if (--lk->outstanding == 0)
		lookup_finish(r, lk);
}

/* ------------------------------------------------------------------ */
/* queries                                                             */
/* ------------------------------------------------------------------ */

static struct rquery *
query_find(struct resolver *r, const char *name, uint16_t type)
{
	for (unsigned i = 0; i < RESOLVER_QUERIES_MAX; i++) {
		struct rquery *q = &r->q[i];

		if (q->used && !q->finished && q->type == type &&
		    strcmp(q->name, name) == 0)
			return q;
	}
	return NULL;
}

/* A random id that no live query uses. */
static uint16_t
query_id(struct resolver *r)
{
	uint16_t id = 0;

	for (int tries = 0; tries < 64; tries++) {
		bool clash = false;

		id = (uint16_t)rnd32(r);
		for (unsigned i = 0; i < RESOLVER_QUERIES_MAX && !clash; i++)
			clash = r->q[i].used && !r->q[i].finished &&
			    r->q[i].id == id;
		if (!clash)
			break;
	}
	return id;
}

static void
udp_send(struct resolver *r, struct rquery *q)
{
	struct io_uring_sqe *sqe;

	assert(!q->sending);
	sqe = uring_get_sqe(r->ring);
	io_uring_prep_send(sqe, r->udp_fd, q->wire + 2, q->wirelen, 0);
	io_uring_sqe_set_data64(sqe, ud_make(r, K_UDP_SEND,
	    (uint32_t)(q - r->q), q->gen));
	q->sending = true;
}

/* Starts one more try over UDP. */
static void
query_try_udp(struct resolver *r, struct rquery *q)
{
	q->tries++;
	q->deadline_ms = r->now_ms + r->cfg.timeout_ms;
	if (q->sending)
		q->resend = true;	/* the previous send still holds wire */
	else
		udp_send(r, q);
}

/* Frees the slot (nothing of it in flight) and starts waiting requests. */
static void
query_release(struct resolver *r, struct rquery *q)
{
	assert(q->used && q->finished && !q->sending);
	assert(q->waiters == NULL);
	q->used = false;
	assert(r->nquery > 0);
	r->nquery--;
	while (r->pend_head != NULL && r->nquery < RESOLVER_QUERIES_MAX) {
		struct pending *p = r->pend_head;

		r->pend_head = p->next;
		if (r->pend_head == NULL)
			r->pend_tail = NULL;
		submit_req(r, p->lk, p->sub, p->name, p->type);
		free(p);
	}
}

static void
tcp_close(struct resolver *r, struct tconn *c)
{
	assert(c->used && !c->inflight);
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	free(c->buf);
	c->buf = NULL;
	c->len = c->cap = 0;
	c->used = false;
	c->aborting = false;
	/* Queries waiting for a connection take the free one. */
	for (unsigned i = 0; i < RESOLVER_QUERIES_MAX; i++) {
		struct rquery *q = &r->q[i];

		if (q->used && !q->finished && q->tcp_wait) {
			tcp_connect(r, q);
			break;
		}
	}
}

/* Stops a connection whatever it is doing; its query is not told. */
static void
tcp_abort(struct resolver *r, struct tconn *c)
{
	if (c->aborting)
		return;
	if (c->inflight) {
		struct io_uring_sqe *sqe = uring_get_sqe(r->ring);

		io_uring_prep_cancel64(sqe, ud_make(r, K_TCP,
		    (uint32_t)(c - r->tc), c->gen), 0);
		io_uring_sqe_set_data64(sqe, ud_make(r, K_CANCEL, 0, 0));
		c->aborting = true;
	} else {
		tcp_close(r, c);
	}
}

/*
 * The query has its outcome: cache it if it may be, tell every waiter,
 * free the slot once no send holds it. Takes e.
 */
static void
query_finish(struct resolver *r, struct rquery *q, struct centry *e)
{
	struct waiter *w = q->waiters;
	bool cached;

	assert(q->used && !q->finished);
	q->finished = true;
	q->waiters = NULL;
	if (q->tcp && q->tconn >= 0) {
		struct tconn *c = &r->tc[q->tconn];

		q->tconn = -1;
		tcp_abort(r, c);
	}
	cached = cache_put(r, e);
	while (w != NULL) {
		struct waiter *next = w->next;

		feed(r, w->lk, w->sub, e);
		free(w);
		w = next;
	}
	if (!cached)
		centry_free(e);
	if (!q->sending)
		query_release(r, q);
}

static struct centry *
centry_new(const struct rquery *q)
{
	struct centry *e = calloc(1, sizeof(*e));

	if (e == NULL)
		return NULL;
	e->type = q->type;
	memcpy(e->name, q->name, sizeof(e->name));
	return e;
}

static void
query_fail(struct resolver *r, struct rquery *q, const char *why)
{
	struct centry *e = centry_new(q);
	struct centry local;

	if (e == NULL) {
		/* Tell the waiters from the stack; cache_put refuses ttl 0. */
		memset(&local, 0, sizeof(local));
		local.type = q->type;
		memcpy(local.name, q->name, sizeof(local.name));
		e = &local;
	}
	e->kind = DNS_KIND_ERROR;
	snprintf(e->why, sizeof(e->why), "%s", why);
	if (e == &local) {
		struct waiter *w = q->waiters;

		q->finished = true;
		q->waiters = NULL;
		if (q->tcp && q->tconn >= 0) {
			tcp_abort(r, &r->tc[q->tconn]);
			q->tconn = -1;
		}
		while (w != NULL) {
			struct waiter *next = w->next;

			feed(r, w->lk, w->sub, e);
			free(w);
			w = next;
		}
		if (!q->sending)
			query_release(r, q);
		return;
	}
	query_finish(r, q, e);
}

/* A parsed answer (not truncated) to q. */
static void
query_answered(struct resolver *r, struct rquery *q,
    const struct dns_answer *a)
{
	struct centry *e = centry_new(q);
	size_t each;

	if (e == NULL) {
		query_fail(r, q, "out of memory");
		return;
	}
	e->kind = (uint8_t)a->kind;
	e->ad = a->ad;
	e->null_mx = a->null_mx;
	switch (a->kind) {
	case DNS_KIND_DATA:
		e->ttl_s = a->ttl < RESOLVER_TTL_MAX_S ? a->ttl :
		    RESOLVER_TTL_MAX_S;
		each = q->type == DNS_T_MX ? sizeof(a->rr.mx[0]) :
		    sizeof(a->rr.addr[0]);
		if (a->n > 0) {
			if ((e->recs = malloc(a->n * each)) == NULL) {
				free(e);
				query_fail(r, q, "out of memory");
				return;
			}
			memcpy(e->recs, q->type == DNS_T_MX ?
			    (const void *)a->rr.mx : (const void *)a->rr.addr,
			    a->n * each);
			e->n = a->n;
		}
		break;
	case DNS_KIND_NODATA:
	case DNS_KIND_NXDOMAIN:
		e->ttl_s = a->ttl < RESOLVER_NEG_TTL_MAX_S ? a->ttl :
		    RESOLVER_NEG_TTL_MAX_S;
		break;
	default:
		/* SERVFAIL and friends: briefly, so a broken domain is not
		 * asked again for every message queued to it. */
		e->kind = DNS_KIND_ERROR;
		e->ttl_s = a->chain_too_long ? 0 : RESOLVER_FAIL_TTL_S;
		if (a->chain_too_long)
			snprintf(e->why, sizeof(e->why), "CNAME chain longer "
			    "than %d", DNS_CNAME_MAX);
		else
			snprintf(e->why, sizeof(e->why), "%s from %s",
			    dns_rcode_name(a->rcode), r->server_text);
		break;
	}
	query_finish(r, q, e);
}

static void
try_failed(struct resolver *r, struct rquery *q, int err)
{
	char why[96];

	assert(q->used && !q->finished);
	q->last_err = err;
	if (q->tries < r->cfg.attempts) {
		if (q->tcp) {
			q->tries++;
			q->deadline_ms = r->now_ms + r->cfg.timeout_ms;
			tcp_connect(r, q);
		} else {
			query_try_udp(r, q);
		}
		return;
	}
	if (err == ETIMEDOUT)
		snprintf(why, sizeof(why), "no answer from %s%s after %u "
		    "tries", r->server_text, q->tcp ? " over TCP" : "",
		    q->tries);
	else
		snprintf(why, sizeof(why), "%s%s: %s", r->server_text,
		    q->tcp ? " over TCP" : "", strerror(err));
	query_fail(r, q, why);
}

/*
 * Puts lk's request for (name, type) on its way: from the cache, onto a
 * query already in flight, a new query, or the FIFO of requests waiting
 * for a query slot. lk->outstanding already counts it.
 */
static void
submit_req(struct resolver *r, struct lookup *lk, int sub, const char *name,
    uint16_t type)
{
	struct centry *e;
	struct rquery *q;
	struct waiter *w;
	uint32_t gen;
	int rc;

	if ((e = cache_get(r, name, type)) != NULL) {
		feed(r, lk, sub, e);
		return;
	}
	if ((q = query_find(r, name, type)) == NULL &&
	    r->nquery >= RESOLVER_QUERIES_MAX) {
		struct pending *p = calloc(1, sizeof(*p));

		if (p == NULL) {
			feed_local_fail(r, lk, sub, name, type,
			    "out of memory");
			return;
		}
		p->lk = lk;
		p->sub = sub;
		p->type = type;
		snprintf(p->name, sizeof(p->name), "%s", name);
		if (r->pend_tail != NULL)
			r->pend_tail->next = p;
		else
			r->pend_head = p;
		r->pend_tail = p;
		return;
	}
	if ((w = calloc(1, sizeof(*w))) == NULL) {
		feed_local_fail(r, lk, sub, name, type, "out of memory");
		return;
	}
	w->lk = lk;
	w->sub = sub;
	if (q != NULL) {
		w->next = q->waiters;
		q->waiters = w;
		return;
	}
	for (q = r->q; q->used; q++)
		assert(q < r->q + RESOLVER_QUERIES_MAX - 1);
	gen = q->gen + 1;	/* generations survive reuse */
	memset(q, 0, offsetof(struct rquery, wire));
	q->gen = gen;
	q->used = true;
	q->tconn = -1;
	q->type = type;
	snprintf(q->name, sizeof(q->name), "%s", name);
	q->id = query_id(r);
	rc = dns_query_build(q->wire + 2, sizeof(q->wire) - 2, q->id, name,
	    type, &q->wirelen);
	q->waiters = w;
	r->nquery++;
	if (rc != 0) {
		query_fail(r, q, "cannot build the query");
		return;
	}
	/* RFC 1035 section 4.2.2: the TCP length prefix, ready for later. */
	q->wire[0] = (uint8_t)(q->wirelen >> 8);
	q->wire[1] = (uint8_t)q->wirelen;
	query_try_udp(r, q);
}

/* ------------------------------------------------------------------ */
/* UDP                                                                 */
/* ------------------------------------------------------------------ */

static void
arm_recv(struct resolver *r)
{
	struct io_uring_sqe *sqe;

	if (r->recv_armed)
		return;
	sqe = uring_get_sqe(r->ring);
	io_uring_prep_recv(sqe, r->udp_fd, r->udp_buf, RESOLVER_UDP_BUF, 0);
	io_uring_sqe_set_data64(sqe, ud_make(r, K_UDP_RECV, 0, 0));
	r->recv_armed = true;
}

static void
udp_answer(struct resolver *r, const uint8_t *msg, size_t len)
{
	struct rquery *q = NULL;
	uint16_t id;
	int rc;

	if (dns_message_id(msg, len, &id) != 0)
		return;
	for (unsigned i = 0; i < RESOLVER_QUERIES_MAX; i++) {
		struct rquery *c = &r->q[i];

		if (c->used && !c->finished && !c->tcp && c->tries > 0 &&
		    c->id == id) {
			q = c;
			break;
		}
	}
	if (q == NULL)
		return;		/* late, duplicate or forged */
	rc = dns_answer_parse(msg, len, q->id, q->name, q->type, r->ans);
	if (rc != 0) {
		/* Not an answer to q: keep waiting for the real one. */
		log_debug("resolver: ignored a reply for %s/%s: error %d",
		    q->name, dns_type_name(q->type), rc);
		return;
	}
	if (r->ans->tc) {
		/* RFC 7766 section 5: truncated over UDP, ask over TCP. */
		q->tcp = true;
		q->resend = false;
		if (q->tries >= r->cfg.attempts)
			q->tries = r->cfg.attempts - 1;
		q->tries++;
		q->deadline_ms = r->now_ms + r->cfg.timeout_ms;
		tcp_connect(r, q);
		return;
	}
	query_answered(r, q, r->ans);
}

/* ICMP port unreachable: every UDP query in flight lost this try. */
static void
udp_refused(struct resolver *r)
{
	for (unsigned i = 0; i < RESOLVER_QUERIES_MAX; i++) {
		struct rquery *q = &r->q[i];

		if (q->used && !q->finished && !q->tcp && q->tries > 0 &&
		    !q->sending && !q->resend)
			try_failed(r, q, ECONNREFUSED);
	}
}

static void
udp_recv_done(struct resolver *r, int res)
{
	r->recv_armed = false;
	if (res > 0) {
		udp_answer(r, r->udp_buf, (size_t)res);
	} else if (res == -ECONNREFUSED) {
		udp_refused(r);
	} else if (res < 0 && res != -ECANCELED && res != -EINTR &&
	    res != -EAGAIN) {
		/* Re-arming at once could spin on a persistent error. */
		log_warn("resolver: recv from %s: %s", r->server_text,
		    strerror(-res));
		r->recv_retry = true;
		return;
	}
	arm_recv(r);
}

static void
udp_send_done(struct resolver *r, struct rquery *q, int res)
{
	assert(q->used && q->sending);
	q->sending = false;
	if (q->finished) {
		query_release(r, q);
		return;
	}
	if (q->tcp)
		return;		/* moved to TCP meanwhile */
	if (q->resend) {
		q->resend = false;
		udp_send(r, q);
		return;
	}
	if (res < 0)
		try_failed(r, q, -res);
}

/* ------------------------------------------------------------------ */
/* TCP                                                                 */
/* ------------------------------------------------------------------ */

static void
tcp_submit(struct resolver *r, struct tconn *c)
{
	struct io_uring_sqe *sqe = uring_get_sqe(r->ring);
	const struct rquery *q = &r->q[c->qidx];

	switch (c->state) {
	case T_CONNECT:
		io_uring_prep_connect(sqe, c->fd,
		    (const struct sockaddr *)&r->cfg.server,
		    r->cfg.server_len);
		break;
	case T_SEND:
		io_uring_prep_send(sqe, c->fd, q->wire + c->sent,
		    q->wirelen + 2 - c->sent, MSG_NOSIGNAL);
		break;
	case T_RECV:
		io_uring_prep_recv(sqe, c->fd, c->buf + c->len,
		    c->cap - c->len, 0);
		break;
	default:
		log_panic("resolver: bad TCP state %d", (int)c->state);
	}
	io_uring_sqe_set_data64(sqe, ud_make(r, K_TCP, (uint32_t)(c - r->tc),
	    c->gen));
	c->inflight = true;
}

/* Gives q a TCP connection, or leaves it waiting for one (tconn -1). */
static void
tcp_connect(struct resolver *r, struct rquery *q)
{
	struct tconn *c = NULL;
	int fd;

	assert(q->tcp && q->tconn < 0);
	for (unsigned i = 0; i < RESOLVER_TCP_MAX && c == NULL; i++)
		if (!r->tc[i].used)
			c = &r->tc[i];
	q->tcp_wait = c == NULL;
	if (c == NULL)
		return;		/* tcp_close() starts it later */
	fd = socket(r->cfg.server.ss_family,
	    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		try_failed(r, q, errno);
		return;
	}
	c->used = true;
	c->gen++;
	c->fd = fd;
	c->state = T_CONNECT;
	c->qidx = (uint32_t)(q - r->q);
	c->qgen = q->gen;
	c->sent = 0;
	c->len = 0;
	q->tconn = (int)(c - r->tc);
	tcp_submit(r, c);
}

/* The connection failed q's try. */
static void
tcp_fail(struct resolver *r, struct tconn *c, struct rquery *q, int err)
{
	q->tconn = -1;
	tcp_close(r, c);
	if (!q->finished)
		try_failed(r, q, err);
}

static void
tcp_done(struct resolver *r, struct tconn *c, int res)
{
	struct rquery *q = &r->q[c->qidx];
	size_t need;
	int rc;

	assert(c->used && c->inflight);
	c->inflight = false;
	if (c->aborting || !q->used || q->gen != c->qgen || q->finished ||
	    q->tconn != (int)(c - r->tc)) {
		tcp_close(r, c);
		return;
	}
	if (res < 0) {
		tcp_fail(r, c, q, -res);
		return;
	}
	switch (c->state) {
	case T_CONNECT:
		c->state = T_SEND;
		c->sent = 0;
		break;
	case T_SEND:
		c->sent += (size_t)res;
		if (c->sent < q->wirelen + 2)
			break;
		c->state = T_RECV;
		if (c->buf == NULL) {
			c->buf = malloc(RESOLVER_TCP_BUF_MIN);
			if (c->buf == NULL) {
				tcp_fail(r, c, q, ENOMEM);
				return;
			}
			c->cap = RESOLVER_TCP_BUF_MIN;
		}
		c->len = 0;
		break;
	case T_RECV:
		if (res == 0) {
			tcp_fail(r, c, q, ECONNRESET);
			return;
		}
		c->len += (size_t)res;
		if (c->len < 2)
			break;
		need = 2 + ((size_t)c->buf[0] << 8 | c->buf[1]);
		if (need > c->cap) {
			/* Bounded by the 16-bit prefix: at most 65537. */
			uint8_t *nb = realloc(c->buf, need);

			if (nb == NULL) {
				tcp_fail(r, c, q, ENOMEM);
				return;
			}
			c->buf = nb;
			c->cap = need;
		}
		if (c->len < need)
			break;
		rc = dns_answer_parse(c->buf + 2, need - 2, q->id, q->name,
		    q->type, r->ans);
		q->tconn = -1;
		tcp_close(r, c);
		if (rc != 0) {
			try_failed(r, q, EPROTO);
		} else if (r->ans->tc) {
			query_fail(r, q, "answer truncated over TCP too");
		} else {
			query_answered(r, q, r->ans);
		}
		return;
	default:
		log_panic("resolver: bad TCP state %d", (int)c->state);
	}
	tcp_submit(r, c);
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
		return;		/* a destroyed predecessor's request */
	gen &= RSLV_GEN_MASK;
	r->now_ms = clock_mono_ms();
	switch ((enum rslv_kind)(idx >> RSLV_KIND_SHIFT)) {
	case K_UDP_RECV:
		udp_recv_done(r, res);
		break;
	case K_UDP_SEND:
		assert(slot < RESOLVER_QUERIES_MAX);
		/* A slot is never reused while its send is in flight. */
		assert((r->q[slot].gen & RSLV_GEN_MASK) == gen);
		udp_send_done(r, &r->q[slot], res);
		break;
	case K_TCP:
		assert(slot < RESOLVER_TCP_MAX);
		assert((r->tc[slot].gen & RSLV_GEN_MASK) == gen);
		tcp_done(r, &r->tc[slot], res);
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

void
resolver_tick(struct resolver *r, uint64_t now_ms)
{
	assert(r != NULL);
	r->now_ms = now_ms;
	if (r->recv_retry) {
		r->recv_retry = false;
		arm_recv(r);
	}
	for (unsigned i = 0; i < RESOLVER_QUERIES_MAX; i++) {
		struct rquery *q = &r->q[i];

		if (!q->used || q->finished || q->tries == 0 ||
		    now_ms < q->deadline_ms)
			continue;
		if (q->tcp && q->tconn >= 0) {
			struct tconn *c = &r->tc[q->tconn];

			q->tconn = -1;
			tcp_abort(r, c);
		}
		if (!q->finished)
			try_failed(r, q, ETIMEDOUT);
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
	    cfg->cache_max > RESOLVER_CACHE_MAX || op >= 256)
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
	/* Connected: only the server's datagrams reach us, and ICMP errors
	 * come back as ECONNREFUSED. */
	if (connect(r->udp_fd, (const struct sockaddr *)&cfg->server,
	    cfg->server_len) < 0) {
		rc = -errno;
		goto fail;
	}
	arm_recv(r);
	*rp = r;
	return 0;
fail:
	if (r->udp_fd >= 0)
		close(r->udp_fd);
	free(r->bucket);
	free(r->q);
	free(r->ans);
	free(r->udp_buf);
	free(r);
	return rc;
}

/* Waits until the kernel has finished every request on fd. */
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
		free(lk);
	}
	while (r->lru_head != NULL)
		cache_remove(r, r->lru_head);
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
    bool mx_lookup, void (*fn)(void *arg, const struct resolve_result *res),
    void *arg)
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
	/* MX, then addresses: each phase at most attempts tries, plus a
	 * TCP try, of timeout_ms. A bound, never normally reached. */
	deadline = clock_mono_ms() + 3ull * (cfg->attempts + 1) * cfg->timeout_ms +
	    1000;
	resolver_lookup(r, name, mx_lookup, sync_done, &s);
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
