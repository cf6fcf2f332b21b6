/*
 * deliver.c - scheduler and outbound connections; see deliver.h.
 *
 * Per shard:
 *   items     one message's pending recipients for one destination
 *   dests     hash table by destination key; each has a FIFO of ready
 *             items, its connections, its effective connection limit
 *             (lowered by 421s and runs of 4xx, raised again one step per
 *             delivered message), a hold-off time, and a rate bucket
 *   heap      deferred items by retry time (monotonic ms)
 *   conns     fixed slots of outbound connections; each runs one
 *             smtp_client session and carries one item at a time
 *
 * deliver_run() (every loop iteration) drains the inbox, moves due items
 * from the heap to their destination, and for each destination with
 * ready items hands them to idle connections and opens new ones up to the
 * limit. A connection that cannot be had (DNS, connect, greeting) defers
 * the destination's ready items with the error and holds the
 * destination off for a while, so a dead destination costs one attempt
 * per retry, not one per message.
 *
 * Message bytes are read back from the spool segment (and verified) when
 * an item goes out, through the ring (conn_next(), handle_oread()), and
 * so are the records of a destination that cannot be reached at all, whose
 * results need their envelopes (item_fail_all(), handle_fread()): the
 * loop never waits on the disk.
 */
#include "deliver_int.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "../lib/clock.h"
#include "../lib/log.h"
#include "../lib/uring.h"
#include "dsn.h"
#include "../lib/efd.h"

/* ---- global: owners and their inboxes ------------------------------- */

struct inbox {
	_Atomic(struct dl_item *) head;
	int efd;
} __attribute__((aligned(64)));

static struct inbox inboxes[64];
static unsigned g_nshards;
/* The newest configuration: a reload swaps it (older ones stay valid
 * while items or destinations hold them, see deliver_cfg_unused()). */
static _Atomic(const struct deliver_cfg *) g_cfg;
/* Dispatches under way: each may have read g_cfg before a swap. */
static _Atomic unsigned g_dispatching;
static struct route g_default_route;
struct dl_feed dl_feeds[64];
struct queue_index *dl_index;
/* The shard this thread dispatches for (its lane), or -1: none. */
static _Thread_local int dl_here = -1;
/* The shard whose loop this thread runs, or -1 (deliver_create()). */
static _Thread_local int dl_loop = -1;

/* Say so, once, when a route may not have the connections it asks for. */
static void
cap_warn(const struct deliver_cfg *cfg)
{
	const struct route_table *t = cfg->routes;
	uint32_t cap = cfg->delivery->connections_per_address;

	for (size_t i = 0; cap > 0 && t != NULL && i <= t->cap; i++) {
		const struct route *r = i < t->cap ? t->slots[i] : t->wildcard;

		/* Spread, each shard's lane has its part of the limit. */
		if (r != NULL && r->policy.max_connections /
		    dl_lanes(cfg, r) > cap)
			log_warn("route %s: max_connections %u, but at most %u "
			    "to an address it shares with other destinations "
			    "(delivery.connections_per_address)",
			    r->pattern, r->policy.max_connections, cap);
	}
}

void
deliver_global_init(const struct deliver_cfg *cfg, unsigned nshards,
    const int *efds, struct queue_index *qi)
{
	atomic_store(&g_cfg, cfg);
	g_nshards = nshards;
	dl_index = qi;
	for (unsigned i = 0; i < nshards; i++) {
		atomic_init(&dl_feeds[i].submitted, 0);
		atomic_init(&dl_feeds[i].drained, 0);
		atomic_init(&dl_feeds[i].want, 0);
	}
	for (unsigned i = 0; i < nshards; i++) {
		atomic_init(&inboxes[i].head, NULL);
		inboxes[i].efd = efds[i];
	}
	memset(&g_default_route, 0, sizeof(g_default_route));
	strcpy(g_default_route.pattern, "*");
	g_default_route.transport.kind = ROUTE_SMTP;
	g_default_route.transport.mx_lookup = true;
	g_default_route.transport.port = ROUTE_PORT_SMTP;
	g_default_route.policy = route_policy_defaults();
	cap_warn(cfg);
}

void
deliver_global_reconfigure(const struct deliver_cfg *cfg)
{
	assert(cfg->generation > atomic_load(&g_cfg)->generation);
	atomic_store(&g_cfg, cfg);
	cap_warn(cfg);
}

void
dl_cfg_hold(const struct deliver_cfg *cfg)
{
	if (cfg != NULL && cfg->holds != NULL)
		atomic_fetch_add_explicit(cfg->holds, 1, memory_order_relaxed);
}

void
dl_cfg_drop(const struct deliver_cfg *cfg)
{
	uint64_t was;

	if (cfg == NULL || cfg->holds == NULL)
		return;
	/* Release: what this holder read of cfg is done before a free. */
	was = atomic_fetch_sub_explicit(cfg->holds, 1, memory_order_release);
	assert(was > 0);
	(void)was;
}

bool
deliver_cfg_unused(const struct deliver_cfg *cfg)
{
	/*
	 * Ordered (seq_cst) against deliver_dispatch(): a dispatch that
	 * read cfg as the newest has either taken its holds before its
	 * count went back down, or counts itself still; one that starts
	 * after this reads the newer configuration.
	 */
	if (atomic_load(&g_cfg) == cfg || atomic_load(&g_dispatching) != 0)
		return false;
	return cfg->holds == NULL ||
	    atomic_load_explicit(cfg->holds, memory_order_acquire) == 0;
}

void
dl_item_destroy(struct dl_item *it)
{
	dl_cfg_drop(it->cfg);
	rbuf_put(it->rec);
	free(it);
}

void
deliver_reconfigure(struct deliver *d)
{
	d->max_items = dl_share(d->cfg->delivery->active_messages);
	d->max_rcpts = dl_share(d->cfg->delivery->active_recipients);
}

void
deliver_global_free(void)
{
	dl_feed_free();
	for (unsigned i = 0; i < g_nshards; i++) {
		struct dl_item *it = atomic_exchange(&inboxes[i].head, NULL);

		while (it != NULL) {
			struct dl_item *next = it->next;

			if (it->ctl == DELIVER_CTL_STATS) {
				dl_stats_drop(it);
			} else {
				dl_pass_leave(it);
				dl_item_destroy(it);
			}
			it = next;
		}
	}
}

static void
post(unsigned owner, struct dl_item *it)
{
	struct dl_item *head = atomic_load(&inboxes[owner].head);
	int rc;

	do {
		it->next = head;
	} while (!atomic_compare_exchange_weak(&inboxes[owner].head, &head,
	    it));
	/*
	 * Posted by the owner's own loop (a shard's items for its own lanes,
	 * from a committer verdict it is handling): it takes the inbox in
	 * deliver_run() before it waits again, so no wake-up, which would
	 * cost a write here and a spurious turn of its loop after.
	 */
	if (head == NULL && (int)owner != dl_loop &&
	    (rc = efd_wake(inboxes[owner].efd)) < 0)
		log_warn("deliver: eventfd write: %s", strerror(-rc));
}

void
dl_post(unsigned owner, struct dl_item *it)
{
	post(owner, it);
}

static const char *
addr_domain(const char *addr)
{
	const char *at = strrchr(addr, '@');

	return at != NULL ? at + 1 : "";
}

/*
 * The name a destination is owned and limited by: route_destination(), or
 * the domain itself for routes that have none (error:, discard).
 */
static void
dest_key(const struct route *r, const char *domain,
    char key[ROUTE_DEST_MAX + 1])
{
	if (route_destination(r, domain, key, ROUTE_DEST_MAX + 1) != 0)
		snprintf(key, ROUTE_DEST_MAX + 1, "%s", domain);
}

const struct deliver_cfg *
dl_cfg(void)
{
	return atomic_load(&g_cfg);
}

unsigned
dl_nshards(void)
{
	return g_nshards;
}

void
dl_dispatch_as(int shard)
{
	dl_here = shard;
}

/*
 * Lanes: a next hop that takes all the mail (a relay_host) would keep one
 * shard's loop busy delivering while the others idle if it belonged to
 * one shard. So the destination of a route with a fixed next hop that
 * allows at least two connections per shard is delivered by every shard:
 * each delivers, in its own lane (its own struct dl_dest of that key),
 * the items dispatched on it, with max_connections / shards connections,
 * so the lanes together never exceed max_connections. Not spread: MX
 * delivery by recipient domain (many domains spread over the shards by
 * their hash already, and a lane each would double the connections and
 * handshakes of every small domain), serial and small limits, max_rate
 * (a rate split evenly would hold back the lane that gets more than its
 * part), oneshot routes, error and discard.
 */
unsigned
dl_lanes(const struct deliver_cfg *cfg, const struct route *r)
{
	const struct route_policy *p = &r->policy;

	if (g_nshards < 2 || cfg == NULL || !cfg->delivery->spread ||
	    (r->transport.kind != ROUTE_SMTP &&
	    r->transport.kind != ROUTE_LMTP) ||
	    r->transport.host[0] == '\0' ||
	    p->max_connections < 2 * g_nshards || p->max_rate > 0 ||
	    p->max_attempts == 1)
		return 1;
	return g_nshards;
}

/* A destination's connection limit: its route's, or its lane's part. */
unsigned
dl_dest_max(const struct dl_dest *ds)
{
	unsigned max = ds->route->policy.max_connections;

	if (ds->lanes > 1)
		max /= ds->lanes;
	return max > 0 ? max : 1;
}

/*
 * The shard that delivers an item: its lane's (the shard dispatching,
 * or for a dispatch from another thread, one picked by the message),
 * or the owner of its destination.
 */
static unsigned
item_owner(const struct deliver_cfg *cfg, const struct route *r,
    const char *key, uint64_t qid)
{
	if (dl_lanes(cfg, r) > 1) {
		if (dl_here >= 0 && (unsigned)dl_here < g_nshards)
			return (unsigned)dl_here;
		return (unsigned)(XXH3_64bits(&qid, sizeof(qid)) % g_nshards);
	}
	return (unsigned)(XXH3_64bits(key, strlen(key)) % g_nshards);
}

/* A shard's share of a limit of the whole daemon (at least 1). */
uint32_t
dl_share(uint32_t total)
{
	uint32_t n = (total + g_nshards - 1) / g_nshards;

	return n > 0 ? n : 1;
}

/* deliver_dispatch()'s notes on one recipient of the message. */
struct dispatch_rcpt {
	struct dl_item *item;		/* the items to post, once all are made */
	unsigned owner;			/* and their owners */
	uint16_t idx;			/* the current item's recipients */
	bool done;			/* in an item, or discarded */
};

/* Recipients whose notes fit on the stack: most messages have one. */
#define DISPATCH_STACK_RCPTS 16

int
deliver_dispatch(const struct msg_meta *mm, uint64_t qid,
    const struct envelope *env, const bool *pending, uint16_t attempts,
    uint64_t next_try_us, bool *discarded, struct rbuf *rec)
{
	const struct deliver_cfg *cfg;
	const char *redirect;
	uint64_t now_us = clock_real_us(), now_ms = clock_mono_ms();
	struct dispatch_rcpt small[DISPATCH_STACK_RCPTS], *nr = small;
	struct dl_pass *pass = NULL;
	int posted = 0, err = 0;

	if (env->nrcpt > DISPATCH_STACK_RCPTS &&
	    (nr = malloc(env->nrcpt * sizeof(*nr))) == NULL)
		return -ENOMEM;
	for (uint16_t i = 0; i < env->nrcpt; i++)
		nr[i].done = false;
	/* One configuration for the whole message, even across a reload;
	 * counted as under way until its items hold it. */
	atomic_fetch_add(&g_dispatching, 1);
	cfg = atomic_load(&g_cfg);
	redirect = cfg->dev_redirect;
	for (uint16_t i = 0; i < env->nrcpt; i++) {
		const char *dom;
		const struct route *r;
		char key[ROUTE_DEST_MAX + 1];
		struct dl_item *it;
		uint16_t n = 0;
		unsigned owner;
		size_t dlen;

		if (nr[i].done || (pending != NULL && !pending[i]))
			continue;
		dom = addr_domain(redirect != NULL ? redirect : env->rcpt[i]);
		r = route_lookup(cfg->routes, dom);
		if (r == NULL)
			r = &g_default_route;
		/* Without a caller to mark it (start-up), a discard becomes
		 * an item that its owner marks delivered. */
		if (r->transport.kind == ROUTE_DISCARD && redirect == NULL &&
		    discarded != NULL) {
			nr[i].done = true;
			discarded[i] = true;
			continue;
		}
		/* Everything else with the same route and domain joins. */
		for (uint16_t j = i; j < env->nrcpt; j++) {
			if (nr[j].done || (pending != NULL && !pending[j]))
				continue;
			if (redirect == NULL && j != i &&
			    strcasecmp(addr_domain(env->rcpt[j]), dom) != 0)
				continue;
			nr[j].done = true;
			nr[n++].idx = j;
		}
		dest_key(r, dom, key);
		dlen = strlen(dom) + 1;
		it = calloc(1, sizeof(*it) + n * sizeof(uint16_t) + dlen);
		if (it == NULL) {
			err = -ENOMEM;
			break;
		}
		it->route = r;
		it->cfg_gen = cfg->generation;
		it->rec = rec != NULL ? rbuf_ref(rec) : NULL;
		it->cfg = cfg;
		dl_cfg_hold(cfg);
		it->qid = qid;
		it->mm = *mm;
		it->arrival_us = env->arrival_us;
		it->attempts = attempts;
		it->nrcpt = n;
		it->redirect = redirect != NULL;
		for (uint16_t k = 0; k < n; k++)
			it->rcpt[k] = nr[k].idx;
		it->domain = (char *)(it->rcpt + n);
		memcpy(it->domain, dom, dlen);
		it->due_ms = next_try_us > now_us ?
		    now_ms + (next_try_us - now_us) / 1000 : 0;
		owner = item_owner(cfg, r, key, qid);
		if (dl_start_park(owner, it, next_try_us))
			continue;
		nr[posted].owner = owner;
		nr[posted++].item = it;
	}
	/*
	 * Items at several destinations (maybe several shards) are one
	 * pass: their failures go to the sender in one DSN. Without memory
	 * for it, each item reports its own.
	 */
	if (posted >= 2 && err == 0)
		pass = dl_pass_new((uint32_t)posted);
	for (int i = 0; i < posted; i++) {
		nr[i].item->pass = pass;
		post(nr[i].owner, nr[i].item);
	}
	atomic_fetch_sub(&g_dispatching, 1);
	if (nr != small)
		free(nr);
	return err != 0 ? err : posted;
}

void
deliver_log_discard(struct deliver *d, uint64_t qid,
    const struct envelope *env, uint16_t idx, uint32_t size)
{
	const struct route *r;
	char q[QUEUE_ID_LEN + 1];
	uint64_t now = clock_real_us();
	struct dlog_entry e = {
		.time_us = now,
		.queue_id = q,
		.sender = env->sender,
		.rcpt = env->rcpt[idx],
		.destination = addr_domain(env->rcpt[idx]),
		.transport = "discard",
		.status = DLOG_DISCARDED,
		.code = 250,
		.attempt = 1,
		.delay_s = now > env->arrival_us ?
		    (double)(now - env->arrival_us) / 1e6 : 0,
		.size = size,
	};

	/* A shard's own configuration: it holds that one. */
	r = route_lookup((d != NULL ? d->cfg : dl_cfg())->routes,
	    e.destination);
	e.text = r != NULL && r->transport.text[0] ? r->transport.text :
	    "discarded";
	queue_id_format(qid, q);
	if (d != NULL && dlog_format(&d->logbuf, &e) != 0)
		log_warn("deliver: cannot format a log line");
	if (d != NULL)
		dl_stats_line(d, NULL, DLOG_DISCARDED, 250, e.text, 0);
}

/* ---- destinations ---------------------------------------------------- */

/* What a destination's connections take from its route and settings. */
static void
dest_apply_route(struct deliver *d, struct dl_dest *ds)
{
	const struct route *r = ds->route;

	/* The route's generation's name: the destination holds that one. */
	ds->ccfg.helo_name = ds->cfg != NULL ? ds->cfg->hostname :
	    d->cfg->hostname;
	ds->ccfg.lmtp = r->transport.kind == ROUTE_LMTP;
	ds->ccfg.chunking = d->cfg->delivery->chunking != 0;
	ds->ccfg.pipeline_depth = (uint8_t)d->cfg->delivery->pipeline_depth;
	ds->ccfg.auth_user = r->policy.auth ? r->policy.auth_user : NULL;
	ds->ccfg.auth_pass = r->policy.auth ? r->policy.auth_password : NULL;
	dl_tls_policy(ds);
}

/* A newer configuration's route for the same destination (held). */
static void
dest_adopt(struct deliver *d, struct dl_dest *ds, const struct route *r,
    const struct deliver_cfg *cfg)
{
	dl_cfg_hold(cfg);
	dl_cfg_drop(ds->cfg);
	ds->route = r;
	ds->cfg_gen = cfg->generation;
	ds->gen_seen = cfg->generation;
	ds->cfg = cfg;
	ds->lanes = dl_lanes(cfg, r);
	if (ds->eff_max > dl_dest_max(ds))
		ds->eff_max = dl_dest_max(ds);
	dest_apply_route(d, ds);
}

/*
 * A lane of a destination whose mail came before a reload: the items of
 * the newer configuration may all go to the other lanes (they are
 * dispatched on other shards), so the lane takes the newest route itself
 * when it is the same destination (the same key under the same pattern),
 * as an owner does with the first newer item (dest_get()): its mail
 * waiting for a retry goes with the new TLS contexts too. Once per
 * configuration this shard takes.
 */
static void
lane_refresh(struct deliver *d, struct dl_dest *ds)
{
	const struct deliver_cfg *cfg;
	const struct route *r;
	char key[ROUTE_DEST_MAX + 1];

	ds->gen_seen = d->cfg->generation;
	if (ds->head == NULL)
		return;
	/* Counted as a dispatch: the newest one stays while it is held. */
	atomic_fetch_add(&g_dispatching, 1);
	cfg = atomic_load(&g_cfg);
	if (cfg->generation > ds->cfg_gen) {
		r = route_lookup(cfg->routes, ds->head->domain);
		if (r == NULL)
			r = &g_default_route;
		dest_key(r, ds->head->domain, key);
		if (strcmp(key, ds->key) == 0 &&
		    strcmp(r->pattern, ds->route->pattern) == 0)
			dest_adopt(d, ds, r, cfg);
	}
	atomic_fetch_sub(&g_dispatching, 1);
}

static struct dl_dest *
dest_get(struct deliver *d, struct dl_item *it)
{
	char key[ROUTE_DEST_MAX + 1];
	const struct route *r = it->route;
	struct dl_dest *ds;
	uint64_t h;

	dest_key(r, it->domain, key);
	h = XXH3_64bits(key, strlen(key)) & (DL_DEST_BUCKETS - 1);
	/*
	 * The same destination across a reload: the same key under the
	 * same route pattern (two routes may share a next hop, each with
	 * its own limits). Its queue, backoff and connections stay; its
	 * policy becomes the newest route an item brought.
	 */
	for (ds = d->buckets[h]; ds != NULL; ds = ds->hnext)
		if (strcmp(ds->key, key) == 0 && (ds->route == r ||
		    strcmp(ds->route->pattern, r->pattern) == 0)) {
			ds->last_used_ms = d->now_ms;
			/* Newer, even with the same route (the default one):
			 * its TLS contexts, and the older one can go. */
			if (it->cfg_gen > ds->cfg_gen)
				dest_adopt(d, ds, r, it->cfg);
			return ds;
		}
	ds = calloc(1, sizeof(*ds));
	if (ds == NULL)
		return NULL;
	ds->d = d;
	snprintf(ds->key, sizeof(ds->key), "%s", key);
	snprintf(ds->lookup, sizeof(ds->lookup), "%s",
	    r->transport.host[0] != '\0' ? r->transport.host : it->domain);
	ds->route = r;
	ds->cfg_gen = it->cfg_gen;
	ds->gen_seen = it->cfg_gen;
	ds->cfg = it->cfg;
	dl_cfg_hold(ds->cfg);
	ds->d = d;
	ds->last_used_ms = d->now_ms;
	/* Slow start, as Postfix's initial_destination_concurrency: a
	 * destination earns its full limit by accepting mail. Its lanes
	 * together start with no more (one each at least). */
	ds->lanes = dl_lanes(it->cfg, r);
	ds->eff_max = DL_INITIAL_CONNS / (ds->lanes > 0 ? ds->lanes : 1);
	if (ds->eff_max == 0)
		ds->eff_max = 1;
	if (ds->eff_max > dl_dest_max(ds))
		ds->eff_max = dl_dest_max(ds);
	ds->tokens = 1;
	dest_apply_route(d, ds);
	ds->hnext = d->buckets[h];
	d->buckets[h] = ds;
	d->ndests++;
	return ds;
}

void
dl_dest_run(struct deliver *d, struct dl_dest *ds)
{
	if (!ds->in_run) {
		ds->in_run = true;
		ds->rnext = d->run;
		d->run = ds;
	}
}

static void
dest_push(struct deliver *d, struct dl_dest *ds, struct dl_item *it)
{
	it->next = NULL;
	if (ds->tail != NULL)
		ds->tail->next = it;
	else
		ds->head = it;
	ds->tail = it;
	ds->queued++;
	dl_dest_run(d, ds);
}

struct dl_item *
dl_dest_pop(struct dl_dest *ds)
{
	struct dl_item *it = ds->head;

	if (it != NULL) {
		ds->head = it->next;
		if (ds->head == NULL)
			ds->tail = NULL;
		ds->queued--;
		it->next = NULL;
	}
	return it;
}

/*
 * A temporary failure of the destination itself: fewer conns, a wait. The
 * failures of connections that were open when the destination was held
 * off (a server saying 421 to all of them at once) count as that one: a
 * burst halves the limit and doubles the wait once, not once per
 * connection.
 */
void
dl_dest_slow(struct deliver *d, struct dl_dest *ds)
{
	ds->fails++;
	if (d->now_ms < ds->hold_until_ms)
		return;
	if (ds->eff_max > 1)
		ds->eff_max = (ds->eff_max + 1) / 2;
	ds->hold_ms = ds->hold_ms ? ds->hold_ms * 2 : DL_HOLD_MIN_MS;
	if (ds->hold_ms > DL_HOLD_MAX_MS)
		ds->hold_ms = DL_HOLD_MAX_MS;
	ds->hold_until_ms = d->now_ms + ds->hold_ms;
}

void
dl_dest_ok(struct dl_dest *ds)
{
	unsigned max = dl_dest_max(ds);

	ds->fails = 0;
	ds->hold_ms = 0;
	if (ds->eff_max < max) {
		ds->eff_max++;
		/* One more connection may open for what waits. */
		if (ds->queued > ds->nstarting)
			dl_dest_run(ds->d, ds);
	}
}

/* An item leaves memory, counted out of the active set. */
void
dl_item_free(struct deliver *d, struct dl_item *it)
{
	assert(d->nitems > 0 && d->nrcpts >= it->nrcpt);
	d->nitems--;
	d->nrcpts -= it->nrcpt;
	if (it->dest != NULL) {
		assert(it->dest->nitems > 0);
		it->dest->nitems--;
	}
	if (it->pass != NULL)
		dl_pass_settle(d, it, NULL);	/* dropped, parked: no result */
	dl_item_destroy(it);
}

/* Over this shard's share of the active set? */
static bool
over_limit(const struct deliver *d)
{
	return d->nitems > d->max_items || d->nrcpts > d->max_rcpts;
}

/*
 * Park it: its recipients wait in the index (QUEUE_UPD_PARK, through the
 * committer, after every earlier result of this shard) with its due time,
 * and it leaves memory. false when the updates cannot be had (memory):
 * the item then stays, over the limit.
 */
static bool
item_park(struct deliver *d, struct dl_item *it)
{
	struct queue_update *u = calloc(it->nrcpt, sizeof(*u));
	uint64_t due_us = 0;

	if (u == NULL)
		return false;
	if (it->due_ms > d->now_ms)
		due_us = clock_real_us() + (it->due_ms - d->now_ms) * 1000u;
	for (uint16_t i = 0; i < it->nrcpt; i++) {
		u[i].kind = QUEUE_UPD_PARK;
		u[i].qid = it->qid;
		u[i].idx = it->rcpt[i];
		u[i].state = (uint8_t)d->id;
		u[i].next_try_us = due_us;
	}
	atomic_fetch_add(&dl_feeds[d->id].submitted, it->nrcpt);
	d->host->submit_updates(d->host_ctx, u, it->nrcpt);
	d->parked += it->nrcpt;
	dl_item_free(d, it);
	return true;
}

/* Did the operator bounce qid a moment ago? */
static bool
bouncing(const struct deliver *d, uint64_t qid)
{
	for (unsigned i = 0; i < DL_BOUNCING && i < d->nbouncing; i++)
		if (d->bouncing[i].qid == qid &&
		    d->now_ms < d->bouncing[i].until_ms)
			return true;
	return false;
}

/* An item arrives on its owner, or comes back after a deferral. */
void
dl_item_schedule(struct deliver *d, struct dl_item *it)
{
	if (it->dest == NULL) {
		if ((it->dest = dest_get(d, it)) == NULL) {
			log_warn("deliver: out of memory; %016llx waits for a "
			    "restart", (unsigned long long)it->qid);
			dl_item_free(d, it);
			return;
		}
		it->dest->nitems++;
	}
	if (d->nbouncing > 0 && bouncing(d, it->qid)) {
		dl_item_fail_all(d, it, 550, "5.0.0",
		    "550 5.0.0 message bounced by the operator", NULL);
		return;
	}
	/*
	 * Over the limits: an item due now takes the place of a deferred
	 * one (a leaf of the heap: due late rather than soon), else it is
	 * parked itself. One for one, so the set stays at its size.
	 */
	if (over_limit(d) && !d->stopping) {
		if (it->due_ms <= d->now_ms && d->nheap > 0) {
			struct dl_item *victim = d->heap[--d->nheap];

			if (!item_park(d, victim))
				d->heap[d->nheap++] = victim;
		} else if (item_park(d, it)) {
			return;
		}
	}
	if (it->due_ms > d->now_ms) {
		if (dl_heap_push(d, it) == 0)
			return;
	}
	dest_push(d, it->dest, it);
}

/* ---- the scheduler --------------------------------------------------- */

/*
 * What dest_service() leaves a destination to:
 *   DS_STAY  stay on the run list: looked at again next pass (held off,
 *            short of rate tokens, no connection that would wake it)
 *   DS_WAIT  off the run list: an event puts it back (a connection of its
 *            own becoming ready or closing, its DNS answer, a free slot)
 *   DS_DONE  off the run list, back on it if items came meanwhile
 * With a thousand destinations waiting for their connections, polling
 * them all on every pass of the loop cost more than delivering.
 */
enum ds_next { DS_STAY, DS_WAIT, DS_DONE };

/* One destination: use idle connections, open new ones. */
static enum ds_next
dest_service(struct deliver *d, struct dl_dest *ds)
{
	const struct route_transport *t = &ds->route->transport;
	char text[300];

	if (ds->queued == 0)
		return DS_DONE;
	if (ds->lanes > 1 && d->cfg->generation > ds->gen_seen) {
		lane_refresh(d, ds);
		t = &ds->route->transport;
	}
	if (t->kind == ROUTE_ERROR || t->kind == ROUTE_DISCARD) {
		/* Routes changed since the message was accepted. */
		dl_dest_fail_ready(d, ds, t->kind == ROUTE_ERROR ? t->code : 250,
		    t->kind == ROUTE_ERROR ? "5.0.0" : "2.0.0",
		    t->kind == ROUTE_ERROR ? t->text : "discarded", NULL);
		return DS_DONE;
	}
	if (d->now_ms < ds->hold_until_ms)
		return DS_STAY;
	/* Idle connections first. */
	for (struct dl_conn *c = ds->idle, *next; c != NULL && ds->queued > 0;
	    c = next) {
		next = c->inext;
		if (c->closing || !smtp_client_ready(&c->cli))
			continue;
		dl_conn_next(c);
		dl_conn_deadline(c);
		dl_conn_flush(c);
		if (c->item == NULL && c->idle)
			break;	/* rate limit */
	}
	if (ds->queued == 0 || d->stopping)
		return ds->queued > 0 ? DS_STAY : DS_DONE;
	if (!dl_dest_literal(ds) &&
	    (ds->resolved_ms == 0 ||
	    d->now_ms > ds->resolved_ms + DL_RESOLVE_FRESH_MS)) {
		if (!ds->resolving) {
			if (d->res == NULL) {
				dl_dest_fail_ready(d, ds, 451, "4.4.3",
				    d->resolver_err, NULL);
				return DS_DONE;
			}
			ds->resolving = true;
			resolver_lookup_tlsa(d->res, ds->lookup, t->mx_lookup,
			    dl_tls_tlsa_port(ds), dl_dest_resolved, ds);
		}
		/* The answer puts it back (dl_dest_resolved()). */
		if (ds->resolved_ms == 0 || ds->resolving)
			return ds->resolving ? DS_WAIT : DS_STAY;
	}
	if (ds->rstatus != RESOLVE_OK) {
		/* The verdict (dl_dest_verdict): DNS, or nothing to dial. */
		snprintf(text, sizeof(text), "%s", ds->rwhy[0] ? ds->rwhy :
		    resolve_status_name((enum resolve_status)ds->rstatus));
		ds->resolved_ms = 0;	/* ask again next time */
		dl_dest_fail_ready(d, ds, ds->rcode, ds->renh, text, NULL);
		if (ds->rcode < 500)
			dl_dest_slow(d, ds);
		return DS_DONE;
	}
	switch (dl_sts_apply(d, ds, text, sizeof(text))) {
	case DL_STS_WAIT:
		return DS_STAY;	/* its first policy fetch, mta_sts.wait */
	case DL_STS_FAIL:
		dl_dest_fail_ready(d, ds, 451, "4.7.5", text, NULL);
		dl_dest_slow(d, ds);
		return DS_DONE;
	case DL_STS_GO:
		break;
	}
	/* No token: no new connection either (it would only idle). */
	dl_dest_refill(d, ds);
	if (ds->route->policy.max_rate > 0 && ds->tokens < 1)
		return DS_STAY;
	while (ds->queued > ds->nstarting && ds->nconn < ds->eff_max) {
		struct dl_conn *c = dl_conn_reuse(d, ds);

		if (c != NULL) {
			dl_conn_next(c);
			dl_conn_deadline(c);
			dl_conn_flush(c);
			if (c->idle)
				break;
			continue;
		}
		if (dl_addr_full(d, ds)) {
			/* Its host has all the connections this shard gives
			 * one address: one moves here between two messages,
			 * or one closing wakes it (deliver_conn.c). */
			dl_addr_wait(d, ds);
			return DS_WAIT;
		}
		if (!dl_conn_slot_free(d)) {
			/* Every slot is taken: an idle one elsewhere yields,
			 * and the next slot freed puts this one back. */
			d->nwaiting++;
			dl_conn_yield(d, ds);
			if (!ds->slot_wait) {
				ds->slot_wait = true;
				ds->wnext = d->slot_waiters;
				d->slot_waiters = ds;
			}
			return DS_WAIT;
		}
		if (!dl_conn_open(d, ds, 0))
			break;
		d->opened++;
	}
	if (ds->queued == 0)
		return DS_DONE;
	/* Its connections take the items as they get ready or free, and a
	 * closing one puts it back (dl_conn_free()). */
	return ds->nconn > 0 ? DS_WAIT : DS_STAY;
}

static bool
due_after(const struct dl_item *it, void *arg)
{
	return it->due_ms > *(const uint64_t *)arg;
}

/*
 * While recipients are parked, a set full of mail deferred for long must
 * not keep them out: items due beyond the feeder's horizon are parked
 * until a quarter of the share is free (the feeder brings them back when
 * they come due), so parked mail due now gets its turn.
 */
static void
make_room(struct deliver *d)
{
	uint32_t want_i = d->max_items / 4, want_r = d->max_rcpts / 4;
	uint32_t free_i = d->max_items > d->nitems ? d->max_items - d->nitems : 0;
	uint32_t free_r = d->max_rcpts > d->nrcpts ? d->max_rcpts - d->nrcpts : 0;
	uint64_t after = d->now_ms + DELIVER_FEED_HORIZON_S * 1000u;
	struct dl_item *list, *it, *next;

	if (d->stopping || !dl_feed_parked(d) ||
	    (free_i >= want_i && free_r >= want_r))
		return;
	list = dl_heap_take_if(d, due_after, &after,
	    want_i > free_i ? want_i - free_i : 1);
	for (it = list; it != NULL; it = next) {
		next = it->next;
		if (!item_park(d, it) && dl_heap_push(d, it) != 0)
			dest_push(d, it->dest, it);
	}
}

/* Take out of every destination's FIFO the items of qid. */
static struct dl_item *
fifo_take(struct deliver *d, uint64_t qid)
{
	struct dl_item *out = NULL;

	for (unsigned b = 0; b < DL_DEST_BUCKETS; b++)
		for (struct dl_dest *ds = d->buckets[b]; ds; ds = ds->hnext) {
			struct dl_item **pp = &ds->head, *it, *last = NULL;

			while ((it = *pp) != NULL) {
				if (it->qid == qid) {
					*pp = it->next;
					ds->queued--;
					it->next = out;
					out = it;
				} else {
					last = it;
					pp = &it->next;
				}
			}
			ds->tail = last;
		}
	return out;
}

/* The destination's backoff and cached DNS answer end now. */
static void
dest_flush(struct dl_dest *ds)
{
	ds->hold_until_ms = 0;
	ds->hold_ms = 0;
	ds->resolved_ms = ds->resolved_ms == UINT64_MAX ? UINT64_MAX : 0;
}

static void
handle_ctl(struct deliver *d, struct dl_item *ctl)
{
	struct dl_item *list = NULL, *it, *next;

	switch (ctl->ctl) {
	case DELIVER_CTL_STATS:
		dl_stats_answer(d, ctl);	/* takes it */
		return;
	case DELIVER_CTL_FLUSH:
		/*
		 * Every deferred item (qid 0), or those of one message, is
		 * due now; their destinations stop waiting too (a flush is
		 * the operator saying "try again now").
		 */
		list = dl_heap_take(d, ctl->qid);
		if (ctl->qid == 0)
			for (unsigned b = 0; b < DL_DEST_BUCKETS; b++)
				for (struct dl_dest *ds = d->buckets[b]; ds;
				    ds = ds->hnext)
					dest_flush(ds);
		for (it = list; it != NULL; it = next) {
			next = it->next;
			if (ctl->qid != 0)
				dest_flush(it->dest);
			dest_push(d, it->dest, it);
		}
		break;
	case DELIVER_CTL_DROP:
		dl_bounce_drop(d, ctl->qid);
		/* An attempt under way finishes, but is not tried again;
		 * nor is one whose record is being read back. */
		for (uint32_t i = 0; i < d->conn_hw; i++) {
			struct dl_conn *c = &d->conns[i];

			if (c->in_use && c->item != NULL &&
			    c->item->qid == ctl->qid)
				c->item->dropped = true;
			if (c->in_use && c->loading != NULL &&
			    c->loading->qid == ctl->qid)
				c->loading->dropped = true;
			if (c->in_use)
				dl_conn_pipe_drop(c, ctl->qid);
		}
		for (uint32_t i = 0; i < d->freads_cap; i++)
			if (d->freads[i] != NULL &&
			    d->freads[i]->it->qid == ctl->qid)
				d->freads[i]->it->dropped = true;
		for (struct dl_fwait *w = d->fwait_head; w; w = w->next)
			if (w->it->qid == ctl->qid)
				w->it->dropped = true;
		list = dl_heap_take(d, ctl->qid);
		for (it = list; it != NULL; it = next) {
			next = it->next;
			dl_item_free(d, it);
		}
		list = fifo_take(d, ctl->qid);
		for (it = list; it != NULL; it = next) {
			next = it->next;
			dl_item_free(d, it);
		}
		break;
	case DELIVER_CTL_BOUNCE:
		/* Items that arrive a little later (taken out of the parked
		 * table, or parked just before) are bounced as they come. */
		d->bouncing[d->nbouncing % DL_BOUNCING].qid = ctl->qid;
		d->bouncing[d->nbouncing % DL_BOUNCING].until_ms =
		    d->now_ms + DL_BOUNCING_MS;
		d->nbouncing++;
		list = dl_heap_take(d, ctl->qid);
		for (it = list; it != NULL; it = next) {
			next = it->next;
			dest_push(d, it->dest, it);
		}
		for (it = fifo_take(d, ctl->qid); it != NULL; it = next) {
			next = it->next;
			/* Gives up at once: counts as the last attempt. */
			dl_item_fail_all(d, it, 550, "5.0.0",
			    "550 5.0.0 message bounced by the operator", NULL);
		}
		break;
	case DELIVER_CTL_UPDATE: {
		struct queue_update *u = calloc(1, sizeof(*u));

		if (u != NULL) {
			u->kind = ctl->upd;
			u->qid = ctl->qid;
			d->host->submit_updates(d->host_ctx, u, 1);
		}
		break;
	}
	}
	free(ctl);
}

int
deliver_control(unsigned shard, enum deliver_ctl what, uint64_t qid,
    unsigned upd)
{
	struct dl_item *it;

	if (shard >= g_nshards)
		return -EINVAL;
	it = calloc(1, sizeof(*it));
	if (it == NULL)
		return -ENOMEM;
	it->ctl = (uint8_t)what;
	it->upd = (uint8_t)upd;
	it->qid = qid;
	post(shard, it);
	return 0;
}

void
deliver_run(struct deliver *d, uint64_t now_ms)
{
	struct dl_item *it, *next, *rev = NULL;
	struct dl_dest *ds, **pp;

	d->now_ms = now_ms;
	it = atomic_exchange(&inboxes[d->id].head, NULL);
	for (; it != NULL; it = next) {	/* oldest first */
		next = it->next;
		it->next = rev;
		rev = it;
	}
	for (it = rev; it != NULL; it = next) {
		next = it->next;
		if (it->ctl != 0) {
			handle_ctl(d, it);
			continue;
		}
		d->nitems++;
		d->nrcpts += it->nrcpt;
		dl_item_schedule(d, it);
	}
	while (d->nheap > 0 && d->heap[0]->due_ms <= now_ms) {
		it = dl_heap_pop(d);
		dest_push(d, it->dest, it);
	}
	d->nwaiting = 0;
	for (pp = &d->run; !d->cfg->delivery->paused && (ds = *pp) != NULL;) {
		enum ds_next next_step = dest_service(d, ds);

		/* Woken meanwhile (a connection closed, one moved): in
		 * front of it, for the next pass. */
		while (*pp != ds)
			pp = &(*pp)->rnext;
		if (next_step == DS_STAY) {
			pp = &ds->rnext;
		} else {
			*pp = ds->rnext;
			ds->in_run = false;
			if (next_step == DS_DONE && ds->queued > 0)
				dl_dest_run(d, ds);	/* came back */
		}
	}
	/* Slots left free after this pass: every waiter may try. */
	if (d->slot_waiters != NULL && dl_conn_slot_free(d))
		dl_slot_wake(d, UINT32_MAX);
	dl_feed_ask(d);
	if (d->parked != d->parked_logged && now_ms >= d->park_log_ms) {
		log_info("deliver: shard %u: active set full (%u item(s), %u "
		    "recipient(s)): %llu recipient(s) parked in the index so "
		    "far", d->id, d->max_items, d->max_rcpts,
		    (unsigned long long)d->parked);
		d->parked_logged = d->parked;
		d->park_log_ms = now_ms + DL_PARK_LOG_MS;
	}
	if (d->logbuf.len > 0 && dlog_write(&d->log, &d->logbuf) < 0)
		log_warn("deliver: writing the delivery log failed");
}

/*
 * Free destinations nothing refers to any more (no item, no connection,
 * no DNS lookup, not on a list) and that hold no back-off: a relay that
 * has mailed a million domains keeps the state of those it still mails.
 * One sweep of the table every DL_DEST_SWEEP_MS.
 */
static void
dest_sweep(struct deliver *d)
{
	uint32_t sweep = d->cfg->delivery->destination_keep_ms / 4;

	if (d->now_ms < d->dest_sweep_ms)
		return;
	d->dest_sweep_ms = d->now_ms + (sweep < DL_DEST_SWEEP_MS ?
	    sweep : DL_DEST_SWEEP_MS);
	for (unsigned b = 0; b < DL_DEST_BUCKETS; b++) {
		struct dl_dest **pp = &d->buckets[b], *ds;

		while ((ds = *pp) != NULL) {
			if (ds->nitems > 0 || ds->queued > 0 || ds->nconn > 0 ||
			    ds->resolving || ds->in_run || ds->slot_wait ||
			    ds->await != NULL ||
			    d->now_ms < ds->hold_until_ms ||
			    d->now_ms < ds->last_used_ms +
			    d->cfg->delivery->destination_keep_ms) {
				pp = &ds->hnext;
				continue;
			}
			*pp = ds->hnext;
			free(ds->targets);
			dl_sts_free(ds);
			free(ds->dane);
			ds->dane = NULL;
			ds->ndane = 0;
			dl_cfg_drop(ds->cfg);
			free(ds);
			d->ndests--;
		}
	}
}

void
deliver_tick(struct deliver *d, uint64_t now_ms)
{
	d->now_ms = now_ms;
	make_room(d);
	dest_sweep(d);
	if (d->bwait != NULL)
		dl_bounce_tick(d, false);
	dl_stats_publish(d);
	/* A drained backlog leaves no big array behind (see also main's
	 * memory_return()). */
	if (d->nheap == 0 && d->heap_cap > DL_HEAP_KEEP) {
		free(d->heap);
		d->heap = NULL;
		d->heap_cap = 0;
	}
	if (d->res != NULL)
		resolver_tick(d->res, now_ms);
	/*
	 * A cached segment the committer has unlinked (nothing lives in it
	 * any more) would keep its disk space until its slot is reused; one
	 * with reads in flight is closed at a later tick.
	 */
	for (unsigned i = 0; i < DL_SEGFD_CACHE; i++) {
		struct stat st;

		if (d->segfd[i].fd >= 0 && d->segfd[i].refs == 0 &&
		    fstat(d->segfd[i].fd, &st) == 0 &&
		    st.st_nlink == 0) {
			close(d->segfd[i].fd);
			d->segfd[i].fd = -1;
		}
	}
	for (uint32_t i = 0; i < d->conn_hw; i++) {
		struct dl_conn *c = &d->conns[i];

		if (!c->in_use || c->closing || now_ms < c->deadline_ms ||
		    c->loading != NULL)
			continue;
		if (!c->connected) {
			/* The connect completes cancelled: try the next. */
			struct io_uring_sqe *sqe = uring_get_sqe(d->ring);

			io_uring_prep_cancel64(sqe, dl_cud(OP_CONNECT, c), 0);
			io_uring_sqe_set_data64(sqe, uring_ud(OP_OCANCEL, 0, 0));
			c->timed_out = true;
			c->deadline_ms = UINT64_MAX;
			continue;
		}
		if (smtp_client_waiting(&c->cli) == SMTP_CLIENT_WAIT_NONE &&
		    !smtp_client_closed(&c->cli)) {
			smtp_client_quit(&c->cli);
			dl_conn_flush(c);
			dl_conn_deadline(c);
			continue;
		}
		dl_conn_timeout(c);
		dl_conn_close(c);
	}
}

void
deliver_complete(struct deliver *d, uint64_t ud, int res, uint32_t flags)
{
	unsigned op = URING_UD_OP(ud);
	struct dl_conn *c;

	(void)flags;
	if (op == OP_DNS) {
		if (d->res != NULL)
			resolver_complete(d->res, ud, res, flags);
		return;
	}
	if (op == OP_OCANCEL)
		return;
	if (op == OP_FREAD) {
		dl_handle_fread(d, ud, res);
		return;
	}
	c = &d->conns[URING_UD_IDX(ud)];
	assert(c->in_use && c->gen == URING_UD_GEN(ud));
	assert(c->inflight > 0);
	c->inflight--;
	switch (op) {
	case OP_CONNECT:
		dl_handle_connect(c, res);
		break;
	case OP_ORECV:
		dl_handle_orecv(c, res);
		break;
	case OP_OSEND:
		dl_handle_osend(c, res);
		break;
	case OP_OREAD:
		dl_handle_oread(c, res);
		break;
	default:
		log_panic("deliver: unknown op %u", op);
	}
	if (c->in_use && c->closing && c->inflight == 0)
		dl_conn_free(c);
}

bool
deliver_stop(struct deliver *d, bool force)
{
	d->stopping = true;
	for (uint32_t i = 0; i < d->conn_hw; i++) {
		struct dl_conn *c = &d->conns[i];

		if (!c->in_use || c->closing)
			continue;
		if (force) {
			if (c->connected)
				smtp_client_eof(&c->cli);
			dl_conn_close(c);
		} else if (c->idle && smtp_client_ready(&c->cli)) {
			dl_set_idle(c, false);
			smtp_client_quit(&c->cli);
			dl_conn_flush(c);
		}
	}
	if (d->logbuf.len > 0)
		dlog_write(&d->log, &d->logbuf);
	return d->nactive == 0 && d->nfreads == 0 && d->fwait_head == NULL;
}

struct deliver *
deliver_create(const struct deliver_host *host, void *host_ctx,
    struct io_uring *ring, unsigned shard_id, const struct deliver_cfg *cfg)
{
	struct deliver *d = calloc(1, sizeof(*d));
	struct resolver_cfg rc;
	char path[4096];

	if (d == NULL)
		return NULL;
	d->host = host;
	d->host_ctx = host_ctx;
	d->ring = ring;
	d->id = shard_id;
	d->cfg = cfg;
	d->fwait_tail = &d->fwait_head;
	/* On the shard's thread: what it dispatches goes to its lanes. */
	dl_dispatch_as((int)shard_id);
	dl_loop = (int)shard_id;
	/* This shard's part of the budget; slots are set up when first
	 * used, so an unused one costs no memory. */
	d->conn_max = (cfg->delivery->connections + g_nshards - 1) / g_nshards;
	if (d->conn_max > DL_CONNS_MAX)
		d->conn_max = DL_CONNS_MAX;
	if (d->conn_max == 0)
		d->conn_max = 1;
	d->conns = calloc(d->conn_max, sizeof(*d->conns));
	if (d->conns == NULL) {
		free(d);
		return NULL;
	}
	d->free_head = UINT32_MAX;
	d->max_items = dl_share(cfg->delivery->active_messages);
	d->max_rcpts = dl_share(cfg->delivery->active_recipients);
	for (unsigned i = 0; i < DL_SEGFD_CACHE; i++)
		d->segfd[i].fd = -1;
	snprintf(path, sizeof(path), "%s/seg", cfg->spool);
	d->segdir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	resolver_cfg_defaults(&rc);
	rc.timeout_ms = cfg->dns->timeout_ms;
	rc.attempts = cfg->dns->attempts;
	if (resolver_cfg_server(&rc, cfg->dns->resolver, "/etc/resolv.conf",
	    d->resolver_err, sizeof(d->resolver_err)) == 0)
		resolver_cfg_dnssec(&rc, cfg->dns->dnssec_mode);
	rc.trust_anchor = cfg->dns->trust_anchor != NULL ?
	    cfg->dns->trust_anchor : RESOLVER_ROOT_KEY;
	if (d->resolver_err[0] != '\0' ||
	    resolver_create(&d->res, ring, OP_DNS, &rc) != 0) {
		rc.dnssec = RESOLVE_DNSSEC_OFF;
		if (d->resolver_err[0] == '\0')
			snprintf(d->resolver_err, sizeof(d->resolver_err),
			    "no DNS resolver");
		log_warn("shard %u: DNS unavailable: %s", shard_id,
		    d->resolver_err);
		d->res = NULL;
	}
	d->dnssec = rc.dnssec != RESOLVE_DNSSEC_OFF;
	if (strcmp(cfg->delivery->log, "-") == 0 || cfg->delivery->log[0] == '/')
		snprintf(path, sizeof(path), "%s", cfg->delivery->log);
	else
		snprintf(path, sizeof(path), "%s/%s", cfg->spool,
		    cfg->delivery->log);
	if (dlog_open(&d->log, path) != 0)
		log_warn("cannot open the delivery log %s: %s", path,
		    strerror(errno));
	return d;
}

void
deliver_destroy(struct deliver *d)
{
	struct dl_item *it;

	if (d == NULL)
		return;
	if (d->opened > 0 || d->parked > 0 || d->delivered > 0)
		log_info("deliver: shard %u: %llu recipient(s) delivered, %llu "
		    "connection(s) opened, %llu "
		    "taken over from another destination by address, %llu "
		    "wait(s) for room at an address, %llu "
		    "recipient(s) parked, %u destination(s) in memory", d->id,
		    (unsigned long long)d->delivered,
		    (unsigned long long)d->opened,
		    (unsigned long long)d->reused,
		    (unsigned long long)d->addr_waits,
		    (unsigned long long)d->parked, d->ndests);
	if (d->pipelined > 0)
		log_info("deliver: shard %u: %llu message(s) sent behind "
		    "another on its connection (delivery.pipeline_depth)",
		    d->id, (unsigned long long)d->pipelined);
	if (d->tls_handshakes > 0 || d->tls_failed > 0)
		log_info("deliver: shard %u: %llu TLS handshake(s), %llu "
		    "resumed, %llu failed", d->id,
		    (unsigned long long)d->tls_handshakes,
		    (unsigned long long)d->tls_resumed,
		    (unsigned long long)d->tls_failed);
	resolver_destroy(d->res);
	d->res = NULL;
	for (uint32_t i = 0; i < d->conn_hw; i++) {
		struct dl_conn *c = &d->conns[i];

		if (c->in_use) {
			struct dl_item *cur = c->item;

			dl_conn_item_clear(c);
			if (cur != NULL)
				dl_pass_leave(cur);
			if (cur != NULL)
				dl_item_destroy(cur);
			dl_conn_pipe_free(c);
			smtp_client_free(&c->cli);
			buf_free(&c->tx);
			dl_tls_conn_free(c);
			if (c->fd >= 0)
				close(c->fd);
		}
	}
	while ((it = dl_heap_pop(d)) != NULL) {
		dl_pass_leave(it);
		dl_item_destroy(it);
	}
	/* deliver_stop() waited for these: none is in flight any more. */
	assert(d->nfreads == 0 && d->fwait_head == NULL);
	free(d->freads);
	for (unsigned b = 0; b < DL_DEST_BUCKETS; b++) {
		struct dl_dest *ds = d->buckets[b], *n;

		for (; ds != NULL; ds = n) {
			n = ds->hnext;
			while ((it = dl_dest_pop(ds)) != NULL) {
				dl_pass_leave(it);
				dl_item_destroy(it);
			}
			free(ds->targets);
			dl_sts_free(ds);
			free(ds->dane);
			dl_cfg_drop(ds->cfg);
			free(ds);
		}
	}
	dl_addr_free_all(d);
	dl_bounce_free(d);
	for (unsigned i = 0; i < DL_SEGFD_CACHE; i++)
		if (d->segfd[i].fd >= 0)
			close(d->segfd[i].fd);
	if (d->segdir >= 0)
		close(d->segdir);
	if (d->logbuf.len > 0)
		dlog_write(&d->log, &d->logbuf);
	buf_free(&d->logbuf);
	dlog_close(&d->log);
	dl_tls_cache_free(d);
	free(d->heap);
	free(d->conns);
	free(d);
}

