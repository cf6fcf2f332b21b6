/*
 * deliver_tls.c - TLS to next hops: the policy each destination gets,
 * the client contexts (one table per configuration generation, made
 * before it is published), a shard's
 * sessions kept per next hop for resumption, the hosts whose handshake
 * failed under "may" (plaintext for a while), and the records of one
 * connection moved between its socket buffers and its smtp_client.
 *
 * The plaintext path pays nothing for this: a connection only gets a
 * struct tls when its session asks for the handshake (STARTTLS offered
 * and wanted, or implicit TLS), and until then dl_conn_flush() and
 * dl_handle_orecv() take the path they always took.
 *
 * Records, in and out (lib/tls.h):
 *
 *	c->rbuf --tls_input--> c->tplain --smtp_client_input--> client
 *	client --c->cli.out--> c->ptx --tls_write (DL_TLS_CHUNK at a
 *	    time)--> records --tls_take--> c->tx --send-->
 *
 * A message is encrypted a slice at a time as the socket takes it, so
 * the records waiting never pass TLS_OUT_MAX whatever the message size.
 */
#include "deliver_int.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <xxhash.h>

#include "../lib/log.h"
#include "../lib/tls.h"
#include "mta_sts.h"

/* Plaintext encrypted per send: a few records, not a whole message. */
#define DL_TLS_CHUNK (256u * 1024)
/* Sessions kept per shard for resumption (direct-mapped; power of 2). */
#define DL_TLS_SESSIONS 1024
/* Hosts remembered as unable to do TLS under "may" (power of 2). */
#define DL_TLS_PLAIN 256
/* ... and for how long: then the handshake is tried again. */
#define DL_TLS_PLAIN_MS (60u * 60 * 1000)
/* Verify contexts: one per distinct CA file. */
#define DL_TLS_CAFILES_MAX 64

struct dl_tls_sess {
	uint64_t key;		/* 0: empty */
	struct tls_session *s;
};

struct dl_tls_plain {
	uint8_t sa[20];
	uint8_t salen;		/* 0: empty */
	uint64_t until_ms;
};

/* What a shard keeps: allocated with the first TLS connection. */
struct dl_tls_cache {
	struct dl_tls_sess sess[DL_TLS_SESSIONS];
	struct dl_tls_plain plain[DL_TLS_PLAIN];
};

/*
 * The contexts of one configuration generation: made (every CA file
 * read) before the generation is published, read-only after, freed with
 * it. A reload makes a table of its own, so a CA file changed in place is
 * read again, and shards never see a table while it grows.
 */
struct deliver_tls_ctxs {
	uint64_t serial;		/* unique among tables, never reused */
	struct tls_ctx *any;		/* may, encrypt: any certificate */
	struct tls_ctx *dane;		/* dane: TLSA records per conn. */
	struct {
		char *cafile;
		struct tls_ctx *ctx;
	} verify[DL_TLS_CAFILES_MAX];
	unsigned nverify;
	/* MTA-STS: enforce (verify) and testing (checked, not enforced). */
	struct tls_ctx *sts_verify, *sts_test;
};

static _Atomic uint64_t g_serial;

/* ---- contexts (before the generation is published) -------------------- */

static struct tls_ctx *
verify_ctx(const struct deliver_tls_ctxs *t, const char *cafile)
{
	for (unsigned i = 0; i < t->nverify; i++)
		if (strcmp(t->verify[i].cafile, cafile) == 0)
			return t->verify[i].ctx;
	return NULL;
}

static int
add_verify_ctx(struct deliver_tls_ctxs *t, const char *cafile, char *why,
    size_t whylen)
{
	struct tls_client_cfg tc = { .verify = true, .cafile = cafile };
	struct tls_ctx *ctx;
	char *name;

	if (verify_ctx(t, cafile) != NULL)
		return 0;
	if (t->nverify == DL_TLS_CAFILES_MAX) {
		snprintf(why, whylen, "more than %d different tls_ca_file",
		    DL_TLS_CAFILES_MAX);
		return -1;
	}
	if ((name = strdup(cafile)) == NULL) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	if ((ctx = tls_ctx_client(&tc, why, whylen)) == NULL) {
		free(name);
		return -1;
	}
	t->verify[t->nverify].cafile = name;
	t->verify[t->nverify].ctx = ctx;
	t->nverify++;
	return 0;
}

/* The CA file a verify policy uses: the route's, delivery's, the system's. */
static const char *
policy_cafile(const struct deliver_cfg *cfg, const struct route_policy *p)
{
	if (p->tls_ca_file[0] != '\0')
		return p->tls_ca_file;
	if (cfg->delivery->tls_ca_file != NULL)
		return cfg->delivery->tls_ca_file;
	return tls_default_ca_file();
}

static unsigned
policy_level(const struct deliver_cfg *cfg, const struct route_policy *p)
{
	unsigned lvl = p->tls != ROUTE_TLS_DEFAULT ? p->tls :
	    cfg->delivery->tls_level;

	/* Implicit TLS is encrypted or nothing (route_policy_check()). */
	if (p->tls_implicit && lvl != ROUTE_TLS_ENCRYPT &&
	    lvl != ROUTE_TLS_VERIFY)
		lvl = ROUTE_TLS_ENCRYPT;
	return lvl;
}

/* Every context a route of the table (or MX delivery) may need. */
static int
route_ctxs(struct deliver_tls_ctxs *t, const struct deliver_cfg *cfg,
    const struct route *r, char *why, size_t whylen)
{
	struct tls_client_cfg any = { .verify = false };
	struct tls_client_cfg dane = { .verify = false, .dane = true };
	unsigned lvl;

	if (r == NULL || r->transport.kind == ROUTE_ERROR ||
	    r->transport.kind == ROUTE_DISCARD)
		return 0;
	lvl = policy_level(cfg, &r->policy);
	if (lvl == ROUTE_TLS_VERIFY)
		return add_verify_ctx(t, policy_cafile(cfg, &r->policy), why,
		    whylen);
	if ((lvl == ROUTE_TLS_DANE || lvl == ROUTE_TLS_DANE_ONLY) &&
	    t->dane == NULL &&
	    (t->dane = tls_ctx_client(&dane, why, whylen)) == NULL)
		return -1;
	/* Under dane, hosts without DANE get may, or encrypt. */
	if (lvl != ROUTE_TLS_NONE && t->any == NULL &&
	    (t->any = tls_ctx_client(&any, why, whylen)) == NULL)
		return -1;
	return 0;
}

/*
 * What DANE can rely on, said once at start: the AD bit only means
 * something from a resolver on this host (or over a channel we trust).
 */
static void
dnssec_notice(const struct deliver_cfg *cfg)
{
	struct resolver_cfg rc;
	char err[160];

	resolver_cfg_defaults(&rc);
	if (resolver_cfg_server(&rc, cfg->dns->resolver, "/etc/resolv.conf",
	    err, sizeof(err)) != 0)
		return;
	if (resolver_server_loopback(&rc))
		return;
	if (cfg->dns->dnssec_mode == RESOLVE_DNSSEC_CFG_TRUST_AD)
		log_warn("dns.dnssec is trust-ad but the resolver is not on "
		    "loopback: its AD bit can be forged on the way, and DANE "
		    "trusts it");
	else if (cfg->dns->dnssec_mode == RESOLVE_DNSSEC_CFG_AUTO)
		log_info("DNSSEC off (the resolver is not on loopback): no "
		    "DANE; set dns.dnssec: trust-ad to trust it anyway");
}

static void
ctxs_free(struct deliver_tls_ctxs *t)
{
	if (t == NULL)
		return;
	/* A connection's SSL holds OpenSSL's own reference to its context. */
	tls_ctx_free(t->any);
	tls_ctx_free(t->dane);
	for (unsigned i = 0; i < t->nverify; i++) {
		tls_ctx_free(t->verify[i].ctx);
		free(t->verify[i].cafile);
	}
	tls_ctx_free(t->sts_verify);
	tls_ctx_free(t->sts_test);
	free(t);
}

int
deliver_tls_init(struct deliver_cfg *cfg, char *why, size_t whylen)
{
	const struct route_table *rt = cfg->routes;
	struct route mx = { .transport = { .kind = ROUTE_SMTP } };
	struct deliver_tls_ctxs *t = calloc(1, sizeof(*t));

	if (t == NULL) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	t->serial = atomic_fetch_add(&g_serial, 1) + 1;
	if (cfg->tls == NULL)
		dnssec_notice(cfg);	/* once: dns.* needs a restart */
	mx.policy = route_policy_defaults();
	if (route_ctxs(t, cfg, &mx, why, whylen) < 0 ||
	    route_ctxs(t, cfg, rt->wildcard, why, whylen) < 0)
		goto fail;
	for (size_t i = 0; i < rt->cap; i++)
		if (route_ctxs(t, cfg, rt->slots[i], why, whylen) < 0)
			goto fail;
	if (cfg->mta_sts != NULL && cfg->mta_sts->enabled &&
	    mta_sts_prepared()) {
		struct tls_client_cfg sv = { .verify = true,
		    .cafile = cfg->mta_sts->ca_file != NULL ?
		    cfg->mta_sts->ca_file : tls_default_ca_file() };
		struct tls_client_cfg st = sv;

		st.verify = false;
		if ((t->sts_verify = tls_ctx_client(&sv, why,
		    whylen)) == NULL ||
		    (t->sts_test = tls_ctx_client(&st, why, whylen)) == NULL)
			goto fail;
	}
	ctxs_free(cfg->tls);
	cfg->tls = t;
	return 0;
fail:
	ctxs_free(t);
	return -1;
}

void
deliver_tls_free(struct deliver_cfg *cfg)
{
	ctxs_free(cfg->tls);
	cfg->tls = NULL;
}

/* ---- a destination's policy -------------------------------------------- */

void
dl_tls_policy(struct dl_dest *ds)
{
	/* The route's own generation: its CA files are in its table. */
	const struct deliver_cfg *cfg = ds->cfg != NULL ? ds->cfg : ds->d->cfg;
	const struct deliver_tls_ctxs *t = cfg->tls;
	const struct route *r = ds->route;
	struct dl_tls_policy *tp = &ds->tls;
	unsigned lvl = policy_level(cfg, &r->policy);

	memset(tp, 0, sizeof(*tp));
	/* A unix socket is local: nothing to encrypt, nobody to listen. */
	if (r->transport.unix_socket)
		lvl = ROUTE_TLS_NONE;
	tp->level = (uint8_t)lvl;
	tp->implicit = r->policy.tls_implicit && lvl != ROUTE_TLS_NONE;
	tp->name = r->policy.tls_name[0] != '\0' ? r->policy.tls_name : NULL;
	tp->serial = t != NULL ? t->serial : 0;
	if (t == NULL)
		tp->ctx = NULL;
	else if (lvl == ROUTE_TLS_VERIFY)
		tp->ctx = verify_ctx(t, policy_cafile(cfg, &r->policy));
	else if (lvl != ROUTE_TLS_NONE)
		tp->ctx = t->any;
	if (tp->ctx == NULL) {
		/* deliver_tls_init() made every context a route needs. */
		assert(lvl == ROUTE_TLS_NONE);
		tp->level = ROUTE_TLS_NONE;
		tp->implicit = false;
	}
	/* dane: each connection sets its host's (dl_tls_conn_start()). */
	ds->ccfg.starttls = tp->implicit || lvl == ROUTE_TLS_NONE ?
	    SMTP_CLIENT_STARTTLS_NEVER : lvl == ROUTE_TLS_MAY ||
	    lvl == ROUTE_TLS_DANE ? SMTP_CLIENT_STARTTLS_MAY :
	    SMTP_CLIENT_STARTTLS_MUST;
	ds->ccfg.auth_insecure = r->policy.auth_insecure ||
	    r->transport.unix_socket;
}

void
dl_tls_sts(struct dl_dest *ds, bool enforce)
{
	struct dl_tls_policy *tp = &ds->tls;
	const struct deliver_cfg *cfg = ds->cfg != NULL ? ds->cfg : ds->d->cfg;
	const struct deliver_tls_ctxs *t = cfg->tls;

	if (t == NULL || t->sts_verify == NULL)
		return;
	if (enforce) {
		/* The MX host's name, never a route's tls_name. */
		tp->level = ROUTE_TLS_VERIFY;
		tp->implicit = false;
		tp->name = NULL;
		tp->ctx = t->sts_verify;
		ds->ccfg.starttls = SMTP_CLIENT_STARTTLS_MUST;
	} else if (tp->level == ROUTE_TLS_MAY ||
	    tp->level == ROUTE_TLS_ENCRYPT || tp->level == ROUTE_TLS_DANE) {
		tp->ctx = t->sts_test;
	}
}

/*
 * The level one host gets: what tls_policy_for_host() made of it when
 * the destination was resolved, or, for a host never resolved (an
 * address literal, a socket), the destination's, where dane (nothing to
 * look TLSA up for) is may and dane-only is left to fail (no records: no
 * DANE authentication, no delivery).
 */
unsigned
dl_tls_host_level(const struct dl_dest *ds, const struct dl_target *t)
{
	if (ds->tls.level == ROUTE_TLS_NONE)
		return ROUTE_TLS_NONE;
	/* DANE wins (RFC 8461 section 2), host by host; then an enforced
	 * MTA-STS policy, on the hosts without DANE (dl_sts_apply()). */
	if (t->tls_level == ROUTE_TLS_DANE)
		return ROUTE_TLS_DANE;
	if (ds->sts_state == DL_STS_S_ENFORCE)
		return ROUTE_TLS_VERIFY;
	if (t->tls_level != ROUTE_TLS_DEFAULT)
		return t->tls_level;
	return ds->tls.level == ROUTE_TLS_DANE ? ROUTE_TLS_MAY : ds->tls.level;
}

/* The port whose TLSA records a lookup fetches: 0 when DANE is off. */
uint16_t
dl_tls_tlsa_port(const struct dl_dest *ds)
{
	const struct route_transport *t = &ds->route->transport;

	if ((ds->tls.level != ROUTE_TLS_DANE &&
	    ds->tls.level != ROUTE_TLS_DANE_ONLY) || t->unix_socket ||
	    !ds->d->dnssec)
		return 0;
	return t->port ? t->port : ROUTE_PORT_SMTP;
}

/* The name the certificate must carry (and SNI): MX host or next hop. */
const char *
dl_tls_peer_name(const struct dl_dest *ds, const char *host)
{
	return ds->tls.name != NULL ? ds->tls.name : host;
}

bool
dl_tls_same(const struct dl_conn *c, const struct dl_dest *old,
    const struct dl_dest *ds, const struct dl_target *t)
{
	if (old->tls.level != ds->tls.level ||
	    old->tls.implicit != ds->tls.implicit ||
	    old->tls.ctx != ds->tls.ctx)
		return false;
	/* DANE: the same host name (the same TLSA records), the same
	 * decision for it. */
	if (c->tls_level != dl_tls_host_level(ds, t) ||
	    (c->tls_level == ROUTE_TLS_DANE &&
	    strcasecmp(c->host, t->host) != 0))
		return false;
	/* A session verified for one name proves nothing of another. */
	if (ds->tls.level == ROUTE_TLS_VERIFY)
		return c->tls != NULL && strcasecmp(c->tls_peer,
		    dl_tls_peer_name(ds, t->host)) == 0;
	return true;
}

/* ---- a shard's memory: sessions, hosts that fail -------------------------- */

static struct dl_tls_cache *
cache(struct deliver *d)
{
	if (d->tls_cache == NULL)
		d->tls_cache = calloc(1, sizeof(*d->tls_cache));
	return d->tls_cache;
}

/* A session is for one address, one name, one context: never shared. */
static uint64_t
sess_key(const struct dl_conn *c)
{
	uint8_t k[20 + sizeof(void *) + 8 + RESOLVE_HOST_MAX + 1];
	size_t n = dl_sa_key(&c->sa, k), pl = strlen(c->tls_peer);
	uint64_t h;

	/* The table's serial too: a freed context's address may come back
	 * for another one, with other verify settings. */
	memcpy(k + n, &c->dest->tls.ctx, sizeof(void *));
	n += sizeof(void *);
	memcpy(k + n, &c->dest->tls.serial, 8);
	n += 8;
	memcpy(k + n, c->tls_peer, pl);
	h = XXH3_64bits(k, n + pl);
	return h != 0 ? h : 1;
}

/* The newest session the server gave, kept for the next connection. */
static void
sess_keep(struct dl_conn *c)
{
	struct tls_session *s = tls_session_take(c->tls);
	struct dl_tls_cache *tc;
	struct dl_tls_sess *e;
	uint64_t k;

	if (s == NULL)
		return;
	if ((tc = cache(c->d)) == NULL) {
		tls_session_free(s);
		return;
	}
	k = sess_key(c);
	e = &tc->sess[k & (DL_TLS_SESSIONS - 1)];
	if (e->s != NULL)
		tls_session_free(e->s);
	e->key = k;
	e->s = s;
}

static void
sess_offer(struct dl_conn *c)
{
	struct dl_tls_cache *tc = c->d->tls_cache;
	struct dl_tls_sess *e;
	uint64_t k;

	if (tc == NULL)
		return;
	k = sess_key(c);
	e = &tc->sess[k & (DL_TLS_SESSIONS - 1)];
	if (e->key == k && e->s != NULL && tls_session_set(c->tls, e->s) < 0) {
		/* Expired or unusable: a full handshake, and forget it. */
		tls_session_free(e->s);
		e->s = NULL;
		e->key = 0;
	}
}

static struct dl_tls_plain *
plain_slot(struct dl_tls_cache *tc, const struct sockaddr_storage *sa,
    uint8_t k[20], size_t *n)
{
	*n = dl_sa_key(sa, k);
	return &tc->plain[XXH3_64bits(k, *n) & (DL_TLS_PLAIN - 1)];
}

bool
dl_tls_plain_wanted(struct deliver *d, const struct sockaddr_storage *sa)
{
	struct dl_tls_plain *p;
	uint8_t k[20];
	size_t n;

	if (d->tls_cache == NULL)
		return false;
	p = plain_slot(d->tls_cache, sa, k, &n);
	return p->salen == n && memcmp(p->sa, k, n) == 0 &&
	    d->now_ms < p->until_ms;
}

void
dl_tls_plain_remember(struct deliver *d, const struct sockaddr_storage *sa)
{
	struct dl_tls_cache *tc = cache(d);
	struct dl_tls_plain *p;
	uint8_t k[20];
	size_t n;

	if (tc == NULL)
		return;
	p = plain_slot(tc, sa, k, &n);
	memcpy(p->sa, k, n);
	p->salen = (uint8_t)n;
	p->until_ms = d->now_ms + DL_TLS_PLAIN_MS;
}

void
dl_tls_cache_free(struct deliver *d)
{
	struct dl_tls_cache *tc = d->tls_cache;

	if (tc == NULL)
		return;
	for (unsigned i = 0; i < DL_TLS_SESSIONS; i++)
		if (tc->sess[i].s != NULL)
			tls_session_free(tc->sess[i].s);
	free(tc);
	d->tls_cache = NULL;
}

/* ---- one connection ---------------------------------------------------- */

/*
 * A new session on c: under "may", plaintext to a host whose handshake
 * failed lately; with implicit TLS, the handshake now, before the
 * greeting. After smtp_client_init().
 */
void
dl_tls_conn_start(struct dl_conn *c)
{
	struct dl_dest *ds = c->dest;

	c->tls_plain = false;
	c->sts_counted = false;
	c->tls_desc[0] = '\0';
	c->tls_verify[0] = '\0';
	c->tls_auth = "none";
	c->tlsa[0] = '\0';
	c->tls_level = (uint8_t)dl_tls_host_level(ds,
	    &ds->targets[c->target]);
	/* Under dane the host's own level says whether TLS is a must. */
	if (!ds->tls.implicit && c->tls_level != ROUTE_TLS_NONE)
		smtp_client_set_starttls(&c->cli, c->tls_level ==
		    ROUTE_TLS_MAY ? SMTP_CLIENT_STARTTLS_MAY :
		    SMTP_CLIENT_STARTTLS_MUST);
	if (c->tls_level == ROUTE_TLS_MAY &&
	    dl_tls_plain_wanted(c->d, &c->sa)) {
		smtp_client_set_starttls(&c->cli, SMTP_CLIENT_STARTTLS_NEVER);
		c->tls_plain = true;
	}
	if (ds->tls.implicit)
		dl_tls_handshake(c);
}

/*
 * A DANE session: the host's usable TLSA records on a connection of the
 * DANE context (RFC 7672 section 3). No records at all (dane-only to a
 * host never resolved) fails at once: there is nothing to authenticate
 * the server with, and no fallback. -1 when the session failed.
 */
static int
dane_start(struct dl_conn *c)
{
	struct dl_dest *ds = c->dest;
	const struct dl_target *t = &ds->targets[c->target];
	/* The route's own generation's contexts, as dl_tls_policy(). */
	const struct deliver_cfg *cfg = ds->cfg != NULL ? ds->cfg : ds->d->cfg;
	struct tls_ctx *ctx = cfg->tls != NULL ? cfg->tls->dane : NULL;
	const struct dl_dane *dn;
	unsigned taken = 0;

	if (t->dane == 0 || t->dane > ds->ndane || ctx == NULL) {
		smtp_client_tls_failed(&c->cli, "no DANE TLSA records for "
		    "this host (tls: dane-only)");
		return -1;
	}
	dn = &ds->dane[t->dane - 1];
	if ((c->tls = tls_new(ctx, c->tls_peer)) == NULL)
		return 0;
	for (unsigned i = 0; i < dn->n; i++) {
		int rc = tls_dane_add(c->tls, c->host, dn->rr[i].usage,
		    dn->rr[i].selector, dn->rr[i].mtype, dn->rr[i].data,
		    dn->rr[i].len);

		if (rc < 0) {
			smtp_client_tls_failed(&c->cli, tls_why(c->tls));
			return -1;
		}
		taken += (unsigned)rc;
	}
	if (taken == 0) {
		smtp_client_tls_failed(&c->cli, "no usable TLSA record");
		return -1;
	}
	return 0;
}

void
dl_tls_handshake(struct dl_conn *c)
{
	struct dl_dest *ds = c->dest;
	enum tls_status st;

	assert(c->tls == NULL && ds->tls.ctx != NULL);
	snprintf(c->tls_peer, sizeof(c->tls_peer), "%s",
	    dl_tls_peer_name(ds, c->host));
	c->tls_up = false;
	if (c->tls_level == ROUTE_TLS_DANE || c->tls_level ==
	    ROUTE_TLS_DANE_ONLY) {
		if (dane_start(c) < 0)
			return;
	} else {
		c->tls = tls_new(ds->tls.ctx, c->tls_peer);
	}
	if (c->tls == NULL) {
		smtp_client_tls_failed(&c->cli, "out of memory");
		return;
	}
	/* A resumed session skips the TLSA check: DANE does it afresh. */
	if (c->tls_level != ROUTE_TLS_DANE)
		sess_offer(c);
	/* The ClientHello: dl_conn_flush() sends it. */
	st = tls_input(c->tls, NULL, 0, &c->tplain);
	if (st == TLS_ERROR)
		smtp_client_tls_failed(&c->cli, tls_why(c->tls));
}

/* The handshake is over: what the log says of it, the session kept. */
static void
established(struct dl_conn *c)
{
	char why[128];
	bool ok;

	c->tls_up = true;
	c->d->tls_handshakes++;
	if (tls_resumed(c->tls))
		c->d->tls_resumed++;
	snprintf(c->tls_desc, sizeof(c->tls_desc), "%s %s",
	    tls_version(c->tls), tls_cipher(c->tls));
	if (c->tls_level == ROUTE_TLS_VERIFY) {
		ok = tls_peer_verified(c->tls, why, sizeof(why));
		snprintf(c->tls_verify, sizeof(c->tls_verify), "%s", ok ?
		    "verified" : why);
		if (ok)
			c->tls_auth = "pkix";
	}
	if (c->tls_level == ROUTE_TLS_DANE) {
		unsigned u, s, m;

		/*
		 * The handshake fails unless a record matched; should it
		 * ever not, nothing is sent to an unauthenticated server.
		 */
		if (!tls_dane_matched(c->tls, &u, &s, &m)) {
			c->d->tls_failed++;
			smtp_client_tls_failed(&c->cli, "no TLSA record "
			    "matched the server's certificate");
			return;
		}
		c->tls_auth = "dane";
		snprintf(c->tlsa, sizeof(c->tlsa), "%u %u %u", u, s, m);
	}
	log_debug("deliver: %s [%s]: %s%s", c->host, c->addr, c->tls_desc,
	    tls_resumed(c->tls) ? " (resumed)" : "");
	dl_sts_tls_done(c);
	sess_keep(c);
	smtp_client_tls_done(&c->cli);
}

/* The handshake failed: say why, in the log line's terms too. */
static void
handshake_failed(struct dl_conn *c)
{
	const char *why = tls_verify_error(c->tls);

	if ((c->tls_level == ROUTE_TLS_VERIFY ||
	    c->tls_level == ROUTE_TLS_DANE) && why != NULL)
		snprintf(c->tls_verify, sizeof(c->tls_verify), "%s", why);
	c->d->tls_failed++;
	dl_sts_tls_failed(c);
	smtp_client_tls_failed(&c->cli, tls_why(c->tls));
}

enum smtp_client_event
dl_tls_input(struct dl_conn *c, const char *p, size_t n)
{
	enum smtp_client_event ev = SMTP_CLIENT_EV_NONE;
	enum tls_status st;

	st = tls_input(c->tls, p, n, &c->tplain);
	if (!c->tls_up && tls_established(c->tls))
		established(c);
	if (st == TLS_ERROR && !c->tls_up) {
		handshake_failed(c);
		buf_reset(&c->tplain);
		return SMTP_CLIENT_EV_CLOSE;
	}
	if (c->tplain.len > 0 && !smtp_client_closed(&c->cli))
		ev = smtp_client_input(&c->cli, c->tplain.data,
		    c->tplain.len);
	buf_reset(&c->tplain);
	if (st == TLS_ERROR || st == TLS_CLOSED) {
		if (st == TLS_ERROR)
			log_info("deliver: %s [%s]: TLS: %s", c->host,
			    c->addr, tls_why(c->tls));
		smtp_client_eof(&c->cli);
		return SMTP_CLIENT_EV_CLOSE;
	}
	/* TLS 1.3 servers send their tickets after the handshake. */
	if (c->tls_up)
		sess_keep(c);
	return smtp_client_closed(&c->cli) ? SMTP_CLIENT_EV_CLOSE : ev;
}

/*
 * c->tx is empty: fill it with records, from the client's output a slice
 * at a time once established (handshake flights before). -1 when the
 * records cannot be made (out of memory): the session is over.
 */
int
dl_tls_output(struct dl_conn *c)
{
	size_t n;

	if (c->tls_up) {
		if (c->ptx_off == c->ptx.len) {
			struct buf t = c->ptx;

			buf_reset(&t);
			c->ptx = c->cli.out;
			c->cli.out = t;
			c->ptx_off = 0;
		}
		n = c->ptx.len - c->ptx_off;
		if (n > DL_TLS_CHUNK)
			n = DL_TLS_CHUNK;
		if (n > 0 && tls_write(c->tls, c->ptx.data + c->ptx_off,
		    n) < 0) {
			log_info("deliver: %s [%s]: TLS: %s", c->host, c->addr,
			    tls_why(c->tls));
			smtp_client_eof(&c->cli);
			return -1;
		}
		c->ptx_off += n;
	}
	if (tls_pending(c->tls) > 0)
		tls_take(c->tls, &c->tx);
	return 0;
}

/* The connection is done with: its session kept, its TLS state freed. */
void
dl_tls_conn_free(struct dl_conn *c)
{
	if (c->tls != NULL) {
		if (c->tls_up)
			sess_keep(c);
		tls_free(c->tls);
		c->tls = NULL;
	}
	c->tls_up = false;
	buf_free(&c->tplain);
	buf_free(&c->ptx);
	c->ptx_off = 0;
}

void
dl_conn_peer(const struct dl_conn *c, struct dl_peer *p)
{
	p->mx = c->host;
	p->addr = c->addr;
	p->tls = c->tls_up ? c->tls_desc : "none";
	p->tls_verify = c->tls_verify[0] != '\0' ? c->tls_verify : NULL;
	p->tls_auth = c->tls_up && c->tls_auth != NULL ? c->tls_auth : "none";
	p->tlsa = c->tlsa[0] != '\0' ? c->tlsa : NULL;
}
