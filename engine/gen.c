/*
 * gen.c - configuration generations; see gen.h.
 *
 * What a reload may change and what needs a restart is decided here
 * (gen_restart_key()), in one table-like function, so that the list in
 * docs/operations.md has one place to agree with.
 */
#include "gen.h"

#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../deliver/deliver.h"
#include "../lib/log.h"
#include "../lib/tls.h"
#include "inbound.h"
#include "shard.h"

/* Retired generations: parsed configurations delivery may point into. */
static pthread_mutex_t retired_lock = PTHREAD_MUTEX_INITIALIZER;
static struct config_gen *retired;
static _Atomic uint64_t last_id;
/* Generations in memory, in force or retired: sluicectl status shows it. */
static _Atomic unsigned live;

struct config_gen *
gen_create(struct config *cfg, struct tls_ctx *tls, struct budget *memory,
    unsigned nshards)
{
	struct config_gen *g = calloc(1, sizeof(*g));
	size_t n = cfg->nlisten * nshards;

	if (g == NULL || (g->lfd = malloc((n ? n : 1) * sizeof(int))) == NULL) {
		free(g);
		config_free(cfg);
		tls_ctx_free(tls);
		return NULL;
	}
	for (size_t i = 0; i < n; i++)
		g->lfd[i] = -1;
	atomic_fetch_add(&live, 1);
	g->nshards = nshards;
	atomic_init(&g->refs, 1);
	/* The next number; taken for good by gen_commit_id(). */
	g->id = atomic_load(&last_id) + 1;
	g->cfg = *cfg;
	memset(cfg, 0, sizeof(*cfg));
	cfg = &g->cfg;
	g->tls = tls;
	smtp_server_cfg_init(&g->scfg, cfg->hostname, cfg->limits.message_size,
	    cfg->limits.recipients, cfg->limits.line_length,
	    cfg->limits.errors);
	g->scfg.hops = cfg->limits.hops;
	g->scfg.junk_commands = cfg->limits.junk_commands;
	g->scfg.memory = memory;
	/* error: routes refuse at RCPT; delivery uses the rest. */
	g->scfg.rcpt_refused = inbound_rcpt_refused;
	g->scfg.rcpt_ctx = &cfg->routes;
	g->scfg.relay_domains = cfg->relay_domains;
	g->scfg.nrelay_domains = cfg->nrelay_domains;
	if (cfg->dkim_policy.nentries > 0) {
		g->scfg.data_tap = shard_dkim_tap;
		g->scfg.tap_ctx = cfg;
	}
	config_deliver_cfg(cfg, &g->dcfg);
	g->dcfg.generation = g->id;
	atomic_init(&g->dl_holds, 0);
	g->dcfg.holds = &g->dl_holds;
	return g;
}

void
gen_commit_id(const struct config_gen *g)
{
	assert(g->id == atomic_load(&last_id) + 1);
	atomic_store(&last_id, g->id);
}

struct config_gen *
gen_hold(struct config_gen *g)
{
	uint32_t was = atomic_fetch_add(&g->refs, 1);

	assert(was > 0);
	(void)was;
	return g;
}

void
gen_release(struct config_gen *g)
{
	uint32_t was;

	if (g == NULL)
		return;
	was = atomic_fetch_sub(&g->refs, 1);
	assert(was > 0);
	if (was != 1)
		return;
	/*
	 * Nobody serves a session with it any more: its keys go now. Its
	 * sessions' SSL objects are gone too (each holds OpenSSL's own
	 * reference to the context anyway).
	 */
	tls_ctx_free(g->tls);
	g->tls = NULL;
	for (size_t i = 0; i < g->cfg.nlisten * g->nshards; i++)
		if (g->lfd[i] >= 0)
			close(g->lfd[i]);
	free(g->lfd);
	g->lfd = NULL;
	log_debug("configuration generation %llu released",
	    (unsigned long long)g->id);
	pthread_mutex_lock(&retired_lock);
	g->retired_next = retired;
	retired = g;
	pthread_mutex_unlock(&retired_lock);
}

void
gen_discard(struct config_gen *g)
{
	assert(atomic_load(&g->refs) == 1);
	tls_ctx_free(g->tls);
	for (size_t i = 0; i < g->cfg.nlisten * g->nshards; i++)
		if (g->lfd[i] >= 0)
			close(g->lfd[i]);
	free(g->lfd);
	dkim_pool_stop(g->signers);
	deliver_tls_free(&g->dcfg);
	config_free(&g->cfg);
	free(g);
	atomic_fetch_sub(&live, 1);
}

int
gen_start_signers(struct config_gen *g, const int *efds)
{
	const struct config *cfg = &g->cfg;
	unsigned nw;
	int rc;

	if (cfg->dkim_policy.nentries == 0)
		return 0;
	nw = cfg->dkim_signing.workers != 0 ? cfg->dkim_signing.workers :
	    g->nshards;
	if ((rc = dkim_pool_start(&g->signers, &cfg->dkim_policy, nw,
	    g->nshards, efds)) < 0)
		return rc;
	log_info("dkim: %zu key(s), %u signer thread(s) (configuration "
	    "generation %llu)", cfg->dkim_policy.nentries, nw,
	    (unsigned long long)g->id);
	return 0;
}

void
gen_retired_sweep(void)
{
	struct config_gen *g, **pp, *gone = NULL;

	pthread_mutex_lock(&retired_lock);
	for (pp = &retired; (g = *pp) != NULL;) {
		/* No session of g is left, so no job of it: idle threads. */
		dkim_pool_stop(g->signers);
		g->signers = NULL;
		/*
		 * Retired: no shard runs under it and dispatch has a newer
		 * one, so a count of zero stays zero. Freed outside the lock.
		 */
		if (g->id != 1 && deliver_cfg_unused(&g->dcfg)) {
			*pp = g->retired_next;
			g->retired_next = gone;
			gone = g;
			continue;
		}
		pp = &g->retired_next;
	}
	pthread_mutex_unlock(&retired_lock);
	while ((g = gone) != NULL) {
		gone = g->retired_next;
		log_debug("configuration generation %llu freed",
		    (unsigned long long)g->id);
		deliver_tls_free(&g->dcfg);
		config_free(&g->cfg);
		free(g);
		atomic_fetch_sub(&live, 1);
	}
}

void
gen_retired_free(void)
{
	struct config_gen *g;

	pthread_mutex_lock(&retired_lock);
	while ((g = retired) != NULL) {
		retired = g->retired_next;
		dkim_pool_stop(g->signers);
		deliver_tls_free(&g->dcfg);
		config_free(&g->cfg);
		free(g);
		atomic_fetch_sub(&live, 1);
	}
	pthread_mutex_unlock(&retired_lock);
}

/* ---- what changed ------------------------------------------------------ */

static bool
str_eq(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

static bool
auth_eq(const struct auth_cfg *a, const struct auth_cfg *b)
{
	return str_eq(a->user, b->user) && str_eq(a->password, b->password) &&
	    str_eq(a->password_file, b->password_file);
}

static bool
route_cfg_eq(const struct route_cfg *a, const struct route_cfg *b)
{
	return str_eq(a->domain, b->domain) &&
	    str_eq(a->transport, b->transport) &&
	    str_eq(a->preset, b->preset) &&
	    str_eq(a->max_connections, b->max_connections) &&
	    str_eq(a->max_messages_per_connection,
	    b->max_messages_per_connection) &&
	    str_eq(a->max_rate, b->max_rate) && str_eq(a->retry, b->retry) &&
	    str_eq(a->max_age, b->max_age) &&
	    str_eq(a->max_attempts, b->max_attempts) &&
	    str_eq(a->auth_insecure, b->auth_insecure) &&
	    str_eq(a->tls, b->tls) && str_eq(a->tls_implicit, b->tls_implicit) &&
	    str_eq(a->tls_ca_file, b->tls_ca_file) &&
	    str_eq(a->tls_name, b->tls_name) && auth_eq(&a->auth, &b->auth);
}

static bool
routes_eq(const struct config *a, const struct config *b)
{
	if (a->nroute_cfgs != b->nroute_cfgs ||
	    !str_eq(a->relay_host, b->relay_host) ||
	    !str_eq(a->relay_tls, b->relay_tls) ||
	    !auth_eq(&a->relay_auth, &b->relay_auth) ||
	    !str_eq(a->dev_redirect, b->dev_redirect))
		return false;
	for (size_t i = 0; i < a->nroute_cfgs; i++)
		if (!route_cfg_eq(&a->route_cfgs[i], &b->route_cfgs[i]))
			return false;
	return true;
}

static bool
dkim_keys_eq(const struct config *a, const struct config *b)
{
	if (a->ndkim != b->ndkim)
		return false;
	for (size_t i = 0; i < a->ndkim; i++)
		if (!str_eq(a->dkim[i].domain, b->dkim[i].domain) ||
		    !str_eq(a->dkim[i].selector, b->dkim[i].selector) ||
		    !str_eq(a->dkim[i].key, b->dkim[i].key) ||
		    !str_eq(a->dkim[i].algorithm, b->dkim[i].algorithm))
			return false;
	return true;
}

static bool
dkim_signing_eq(const struct config *a, const struct config *b)
{
	const struct dkim_sign_cfg *x = &a->dkim_signing, *y = &b->dkim_signing;

	if (!str_eq(x->messages, y->messages) ||
	    !str_eq(x->domain, y->domain) ||
	    !str_eq(x->canonicalization, y->canonicalization) ||
	    x->expire_ms != y->expire_ms || x->workers != y->workers ||
	    x->nheaders != y->nheaders)
		return false;
	for (size_t i = 0; i < x->nheaders; i++)
		if (strcmp(x->headers[i].name, y->headers[i].name) != 0)
			return false;
	return true;
}

bool
gen_restart_key(const struct config *o, const struct config *n, char *why,
    size_t whylen)
{
	const char *key = NULL;

	/*
	 * Each of these was used once, at start: to open the spool, to
	 * size the shards' connection slots and the message budget, to
	 * create a resolver per shard, to open the delivery log, to start
	 * threads (signers, password workers, metrics).
	 */
	if (!str_eq(o->spool, n->spool))
		key = "spool";
	else if (o->shards != n->shards)
		key = "shards";
	else if (!str_eq(o->user, n->user))
		key = "user";
	else if (o->queue.index_size != n->queue.index_size)
		key = "queue.index_size";
	else if (o->limits.connections != n->limits.connections)
		key = "limits.connections";
	else if (o->limits.memory != n->limits.memory)
		key = "limits.memory";
	else if (!str_eq(o->dns.resolver, n->dns.resolver))
		key = "dns.resolver";
	else if (o->dns.timeout_ms != n->dns.timeout_ms)
		key = "dns.timeout";
	else if (o->dns.attempts != n->dns.attempts)
		key = "dns.attempts";
	else if (!str_eq(o->delivery.log, n->delivery.log))
		key = "delivery.log";
	else if (o->delivery.connections != n->delivery.connections)
		key = "delivery.connections";
	/* Which shard a destination's mail goes to (deliver_dispatch()). */
	else if (o->delivery.spread != n->delivery.spread)
		key = "delivery.spread";
	else if (!str_eq(o->metrics.listen, n->metrics.listen))
		key = "metrics.listen";
	/* The MTA-STS fetcher threads, their resolver and HTTPS context. */
	else if (o->mta_sts.enabled != n->mta_sts.enabled)
		key = "mta_sts.enabled";
	else if (!str_eq(o->mta_sts.ca_file, n->mta_sts.ca_file))
		key = "mta_sts.ca_file";
	else if (o->mta_sts.fetch_timeout_ms != n->mta_sts.fetch_timeout_ms)
		key = "mta_sts.fetch_timeout";
	else if (!auth_offered(o) && auth_offered(n))
		key = "listen[].auth (no listener offered AUTH at start)";
	if (key == NULL)
		return false;
	snprintf(why, whylen, "%s", key);
	return true;
}

int
gen_listener_find(const struct config *cfg, const struct sockaddr_storage *sa,
    socklen_t salen)
{
	for (size_t i = 0; i < cfg->nlisten; i++)
		if (cfg->listen[i].salen == salen &&
		    memcmp(&cfg->listen[i].sa, sa, salen) == 0)
			return (int)i;
	return -1;
}

static bool
users_eq(const struct config *a, const struct config *b)
{
	if (a->nusers != b->nusers || !str_eq(a->users_file, b->users_file) ||
	    !str_eq(a->sender_restrictions, b->sender_restrictions))
		return false;
	for (size_t i = 0; i < a->nusers; i++) {
		const struct user_cfg *x = &a->users[i], *y = &b->users[i];

		if (!str_eq(x->name, y->name) ||
		    !str_eq(x->password, y->password) ||
		    x->nallowed_from != y->nallowed_from ||
		    (x->nallowed_from > 0 && memcmp(x->allowed_from,
		    y->allowed_from, x->nallowed_from *
		    sizeof(*x->allowed_from)) != 0))
			return false;
	}
	return true;
}

static bool
networks_eq(const struct config *a, const struct config *b)
{
	return a->nallowed_networks == b->nallowed_networks &&
	    a->nrelay_domains == b->nrelay_domains &&
	    (a->nallowed_networks == 0 || memcmp(a->allowed_networks,
	    b->allowed_networks, a->nallowed_networks *
	    sizeof(*a->allowed_networks)) == 0) &&
	    (a->nrelay_domains == 0 || memcmp(a->relay_domains,
	    b->relay_domains, a->nrelay_domains *
	    sizeof(*a->relay_domains)) == 0);
}

static bool
delivery_eq(const struct delivery_cfg *a, const struct delivery_cfg *b)
{
	return a->paused == b->paused &&
	    a->connect_timeout_ms == b->connect_timeout_ms &&
	    a->reply_timeout_ms == b->reply_timeout_ms &&
	    a->data_timeout_ms == b->data_timeout_ms &&
	    a->idle_keep_ms == b->idle_keep_ms &&
	    a->connections == b->connections &&
	    a->connections_per_address == b->connections_per_address &&
	    a->active_messages == b->active_messages &&
	    a->active_recipients == b->active_recipients &&
	    a->destination_keep_ms == b->destination_keep_ms &&
	    a->chunking == b->chunking &&
	    a->pipeline_depth == b->pipeline_depth && str_eq(a->tls, b->tls) &&
	    str_eq(a->tls_ca_file, b->tls_ca_file) &&
	    a->ndenied_networks == b->ndenied_networks &&
	    (a->ndenied_networks == 0 || memcmp(a->denied_networks,
	    b->denied_networks, a->ndenied_networks *
	    sizeof(*a->denied_networks)) == 0);
}

static bool
tls_eq(const struct config *a, const struct config *b)
{
	if (!str_eq(a->tls.cert, b->tls.cert) ||
	    !str_eq(a->tls.key, b->tls.key) || a->tls.nextra != b->tls.nextra)
		return false;
	for (size_t i = 0; i < a->tls.nextra; i++)
		if (!str_eq(a->tls.extra[i].cert, b->tls.extra[i].cert) ||
		    !str_eq(a->tls.extra[i].key, b->tls.extra[i].key))
			return false;
	return true;
}

void
gen_summary(const struct config *o, const struct config *n, char *out,
    size_t outlen)
{
	size_t off = 0, added = 0, removed = 0, changed = 0;

#define PART(cond, ...) do { \
	if ((cond) && off < outlen) \
		off += (size_t)snprintf(out + off, outlen - off, "%s", \
		    off ? ", " : ""); \
	if ((cond) && off < outlen) \
		off += (size_t)snprintf(out + off, outlen - off, __VA_ARGS__); \
} while (0)

	assert(outlen > 0);
	out[0] = '\0';
	for (size_t i = 0; i < n->nlisten; i++) {
		int j = gen_listener_find(o, &n->listen[i].sa,
		    n->listen[i].salen);

		if (j < 0)
			added++;
		else if (!str_eq(o->listen[j].tls, n->listen[i].tls) ||
		    !str_eq(o->listen[j].auth, n->listen[i].auth) ||
		    o->listen[j].proxy_protocol != n->listen[i].proxy_protocol)
			changed++;
	}
	for (size_t i = 0; i < o->nlisten; i++)
		if (gen_listener_find(n, &o->listen[i].sa,
		    o->listen[i].salen) < 0)
			removed++;
	PART(added || removed || changed,
	    "listeners (+%zu -%zu ~%zu)", added, removed, changed);
	PART(!routes_eq(o, n), "routes");
	PART(!delivery_eq(&o->delivery, &n->delivery), "delivery");
	PART(memcmp(&o->limits, &n->limits, sizeof(o->limits)) != 0 ||
	    o->shutdown_timeout_ms != n->shutdown_timeout_ms, "limits");
	PART(!networks_eq(o, n), "networks");
	PART(!users_eq(o, n), "users");
	/* The files are read again whatever their names: say so. */
	PART(!tls_eq(o, n), "tls");
	PART(!str_eq(o->hostname, n->hostname), "hostname");
	PART(!dkim_keys_eq(o, n) || !dkim_signing_eq(o, n), "dkim");
	PART(!str_eq(o->log.level, n->log.level) ||
	    !str_eq(o->log.format, n->log.format), "log");
	PART(o->mta_sts.wait_ms != n->mta_sts.wait_ms, "mta_sts");
	if (off == 0)
		snprintf(out, outlen, "no setting changed (files read again)");
#undef PART
}

unsigned
gen_live(void)
{
	return atomic_load(&live);
}
