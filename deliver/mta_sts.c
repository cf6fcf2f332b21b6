/*
 * mta_sts.c - the MTA-STS policy cache, its fetch threads and the
 * TLS-RPT counts; see mta_sts.h.
 *
 * One mutex guards the table. Shards hold it for a lookup, a copy of a
 * policy or an increment; a fetch thread holds it to take a job and to
 * store a result, never while it talks to the network. Jobs are the
 * entries themselves, on a FIFO (an entry is queued at most once: its
 * `queued` flag), so the queue is bounded by the table.
 */
#include "mta_sts.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <xxhash.h>

#include "../lib/clock.h"
#include "../lib/log.h"
#include "../lib/thread.h"

#define STS_BUCKETS 4096	/* power of two */

struct sts_entry {
	struct sts_entry *hnext;
	struct sts_entry *qnext;	/* on the job FIFO */
	char domain[MTA_STS_HOST_MAX + 1];
	bool known;			/* a fetch has finished once */
	bool queued;			/* on the FIFO or being fetched */
	bool have;			/* a policy is cached: pol */
	char id[MTA_STS_ID_MAX + 1];
	struct mta_sts_policy *pol;	/* allocated with the first policy */
	uint64_t fetched_us;		/* real time of the policy's fetch */
	uint64_t expires_ms;		/* monotonic */
	uint64_t next_check_ms;		/* the TXT record again */
	uint64_t fetches, fetch_failures;
	char last_error[200];
	/* RFC 8460: sessions with this policy domain. */
	uint64_t n_ok;
	uint64_t n_fail[MTA_STS_R_MAX];
};

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool running, stopping;
	struct sts_entry *buckets[STS_BUCKETS];
	unsigned nentries;
	bool full_logged;
	struct sts_entry *qhead, **qtail;
	struct mta_sts_fetcher *fetcher;
	pthread_t th[MTA_STS_WORKERS];
	unsigned nth;
} g = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

static const char *const result_names[MTA_STS_R_MAX] = {
	[MTA_STS_R_STARTTLS_NOT_SUPPORTED] = "starttls-not-supported",
	[MTA_STS_R_HOST_MISMATCH] = "certificate-host-mismatch",
	[MTA_STS_R_EXPIRED] = "certificate-expired",
	[MTA_STS_R_NOT_TRUSTED] = "certificate-not-trusted",
	[MTA_STS_R_VALIDATION_FAILURE] = "validation-failure",
	[MTA_STS_R_FETCH_ERROR] = "sts-policy-fetch-error",
	[MTA_STS_R_POLICY_INVALID] = "sts-policy-invalid",
	[MTA_STS_R_WEBPKI_INVALID] = "sts-webpki-invalid",
};

const char *
mta_sts_result_name(enum mta_sts_result r)
{
	return r < MTA_STS_R_MAX ? result_names[r] : "validation-failure";
}

enum mta_sts_result
mta_sts_result_of_verify(enum tls_verify_kind k)
{
	switch (k) {
	case TLS_VERIFY_NAME:
		return MTA_STS_R_HOST_MISMATCH;
	case TLS_VERIFY_EXPIRED:
		return MTA_STS_R_EXPIRED;
	case TLS_VERIFY_UNTRUSTED:
		return MTA_STS_R_NOT_TRUSTED;
	default:
		return MTA_STS_R_VALIDATION_FAILURE;
	}
}

static uint64_t
hash(const char *domain)
{
	char k[MTA_STS_HOST_MAX + 1];
	size_t n = 0;

	for (; domain[n] != '\0' && n < MTA_STS_HOST_MAX; n++)
		k[n] = (char)(domain[n] >= 'A' && domain[n] <= 'Z' ?
		    domain[n] - 'A' + 'a' : domain[n]);
	return XXH3_64bits(k, n);
}

/*
 * Under g.mu, the table full: make room in bucket b by forgetting a
 * domain that has no policy and no fetch under way (most domains publish
 * none; forgetting one costs a TXT query when it is mailed again). Its
 * counts go with it. false when the bucket has none.
 */
static bool
evict(struct sts_entry **b)
{
	for (struct sts_entry **pp = b, *e; (e = *pp) != NULL;
	    pp = &e->hnext) {
		if (e->have || e->queued)
			continue;
		*pp = e->hnext;
		free(e->pol);
		free(e);
		g.nentries--;
		return true;
	}
	return false;
}

/* Under g.mu. create: make it when missing (NULL when the table is full). */
static struct sts_entry *
find(const char *domain, bool create)
{
	uint64_t h = hash(domain);
	struct sts_entry **b = &g.buckets[h & (STS_BUCKETS - 1)], *e;

	for (e = *b; e != NULL; e = e->hnext)
		if (strcasecmp(e->domain, domain) == 0)
			return e;
	if (!create || strlen(domain) > MTA_STS_HOST_MAX)
		return NULL;
	if (g.nentries >= MTA_STS_ENTRIES && !evict(b)) {
		if (!g.full_logged)
			log_warn("mta_sts: %u policy domains cached: no more "
			    "are looked up", g.nentries);
		g.full_logged = true;
		return NULL;
	}
	if ((e = calloc(1, sizeof(*e))) == NULL)
		return NULL;
	for (size_t i = 0; domain[i] != '\0'; i++)
		e->domain[i] = (char)(domain[i] >= 'A' && domain[i] <= 'Z' ?
		    domain[i] - 'A' + 'a' : domain[i]);
	e->hnext = *b;
	*b = e;
	g.nentries++;
	return e;
}

/* Under g.mu: a fetch for e, unless one is on its way. */
static void
enqueue(struct sts_entry *e)
{
	if (e->queued || !g.running)
		return;
	e->queued = true;
	e->qnext = NULL;
	*g.qtail = e;
	g.qtail = &e->qnext;
	pthread_cond_signal(&g.cv);
}

enum mta_sts_state
mta_sts_get(const char *domain, struct mta_sts_policy *out)
{
	uint64_t now = clock_mono_ms();
	enum mta_sts_state st;
	struct sts_entry *e;

	pthread_mutex_lock(&g.mu);
	if (!g.running || (e = find(domain, true)) == NULL) {
		pthread_mutex_unlock(&g.mu);
		return MTA_STS_S_NONE;
	}
	if (!e->known || now >= e->next_check_ms ||
	    (e->have && now >= e->expires_ms))
		enqueue(e);
	if (!e->known) {
		st = e->queued ? MTA_STS_S_PENDING : MTA_STS_S_NONE;
	} else if (e->have) {
		/* Expired: still applied while its refresh runs. */
		*out = *e->pol;
		st = MTA_STS_S_POLICY;
	} else {
		st = MTA_STS_S_NONE;
	}
	pthread_mutex_unlock(&g.mu);
	return st;
}

void
mta_sts_count(const char *domain, bool ok, enum mta_sts_result r)
{
	struct sts_entry *e;

	pthread_mutex_lock(&g.mu);
	if ((e = find(domain, false)) != NULL) {
		if (ok)
			e->n_ok++;
		else if (r < MTA_STS_R_MAX)
			e->n_fail[r]++;
	}
	pthread_mutex_unlock(&g.mu);
}

/* Fetch the policy only when the id changed or the cached one expired. */
struct want_arg {
	bool have;
	char id[MTA_STS_ID_MAX + 1];
	uint64_t expires_ms;
};

static bool
want_policy(const char *id, void *arg)
{
	struct want_arg *w = arg;

	return !w->have || strcmp(w->id, id) != 0 ||
	    clock_mono_ms() >= w->expires_ms;
}

/* What the spool's copy of a policy needs after store(). */
enum keep { KEEP_AS_IS, KEEP_SAVE, KEEP_REMOVE };

static enum keep
store(struct sts_entry *e, const struct mta_sts_fetched *r, bool fetched)
{
	uint64_t now = clock_mono_ms();
	bool had = e->have;

	e->known = true;
	e->next_check_ms = now + MTA_STS_RECHECK_S * 1000ull;
	if (r->txt == 1 && r->have_policy && (e->pol != NULL ||
	    (e->pol = malloc(sizeof(*e->pol))) != NULL)) {
		e->have = true;
		*e->pol = r->pol;
		snprintf(e->id, sizeof(e->id), "%s", r->id);
		e->fetched_us = clock_real_us();
		e->expires_ms = now + r->pol.max_age_s * 1000ull;
		e->last_error[0] = '\0';
		log_info("mta_sts: %s: policy %s, mode %s, max_age %u, %u mx",
		    e->domain, e->id, mta_sts_mode_name(e->pol->mode),
		    e->pol->max_age_s, e->pol->nmx);
		return KEEP_SAVE;
	}
	if (r->txt == 1 && !fetched) {
		/* Same id, policy still valid: nothing to fetch. */
		return KEEP_AS_IS;
	}
	if (r->txt == 0 && r->why[0] == '\0') {
		/* No record: a cached policy lives on until it expires
		 * (RFC 8461 section 10.2: removing the record does not
		 * remove a policy). */
		if (e->have && now >= e->expires_ms)
			e->have = false;
		return had && !e->have ? KEEP_REMOVE : KEEP_AS_IS;
	}
	/* A failure: the record (TXT lookup failed, or two records), the
	 * fetch, or the policy. An expired policy goes; a valid one stays. */
	e->fetch_failures++;
	snprintf(e->last_error, sizeof(e->last_error), "%.199s", r->why);
	e->n_fail[r->txt == 1 ? r->fail : r->txt == 0 ?
	    MTA_STS_R_POLICY_INVALID : MTA_STS_R_FETCH_ERROR]++;
	if (e->have && now >= e->expires_ms)
		e->have = false;
	e->next_check_ms = now + MTA_STS_RETRY_S * 1000ull;
	log_info("mta_sts: %s: no policy fetched: %s", e->domain, r->why);
	return had && !e->have ? KEEP_REMOVE : KEEP_AS_IS;
}

static void *
worker(void *arg)
{
	struct mta_sts_fetched *r = malloc(sizeof(*r));

	(void)arg;
	thread_name("sts", -1);
	if (r == NULL)
		return NULL;
	pthread_mutex_lock(&g.mu);
	for (;;) {
		struct want_arg w;
		struct sts_entry *e;
		char domain[MTA_STS_HOST_MAX + 1];
		enum keep keep;
		bool fetched;

		while (!g.stopping && g.qhead == NULL)
			pthread_cond_wait(&g.cv, &g.mu);
		if (g.stopping)
			break;
		e = g.qhead;
		if ((g.qhead = e->qnext) == NULL)
			g.qtail = &g.qhead;
		w.have = e->have;
		memcpy(w.id, e->id, sizeof(w.id));
		w.expires_ms = e->expires_ms;
		memcpy(domain, e->domain, sizeof(domain));
		e->fetches++;
		pthread_mutex_unlock(&g.mu);

		mta_sts_fetch(g.fetcher, domain, want_policy, &w, r);
		/* Its answer, not a second one against a later clock. */
		fetched = r->asked;

		pthread_mutex_lock(&g.mu);
		keep = store(e, r, fetched);
		e->queued = false;
		if (keep == KEEP_AS_IS)
			continue;
		/* The spool's copy: file I/O, without the mutex. */
		pthread_mutex_unlock(&g.mu);
		if (keep == KEEP_SAVE)
			mta_sts_store_save(domain, r->id,
			    (uint64_t)(clock_real_us() / 1000000u), r->raw,
			    r->raw_len);
		else
			mta_sts_store_remove(domain);
		pthread_mutex_lock(&g.mu);
	}
	pthread_mutex_unlock(&g.mu);
	free(r);
	return NULL;
}

/* A policy kept in the spool: cached as if just fetched then. */
static void
loaded(const char *domain, const char *id, uint64_t fetched_s,
    const struct mta_sts_policy *pol, void *arg)
{
	uint64_t now_s = clock_real_us() / 1000000u, left_s;
	struct sts_entry *e;

	(void)arg;
	left_s = fetched_s + pol->max_age_s > now_s ?
	    fetched_s + pol->max_age_s - now_s : 0;
	pthread_mutex_lock(&g.mu);
	if ((e = find(domain, true)) != NULL && !e->known &&
	    (e->pol = malloc(sizeof(*e->pol))) != NULL) {
		e->known = true;
		e->have = true;
		*e->pol = *pol;
		snprintf(e->id, sizeof(e->id), "%s", id);
		e->fetched_us = fetched_s * 1000000u;
		e->expires_ms = clock_mono_ms() + left_s * 1000u;
		/* Its TXT record is looked at on first use, without waiting. */
		e->next_check_ms = 0;
	}
	pthread_mutex_unlock(&g.mu);
}

int
mta_sts_start(const struct deliver_cfg *cfg, char *why, size_t whylen)
{
	char swhy[300];

	if (cfg->mta_sts == NULL || !cfg->mta_sts->enabled || g.running)
		return 0;
	if ((g.fetcher = mta_sts_fetcher_new(cfg, why, whylen)) == NULL) {
		/*
		 * A CA file the operator named must load (sluicectl check
		 * says so too). Without one (the system's store missing, no
		 * ca-certificates) or without a resolver, sluiced still
		 * delivers, as it did before MTA-STS: no policy is applied.
		 */
		if (cfg->mta_sts->ca_file != NULL &&
		    strstr(why, "CA file") != NULL)
			return -1;
		log_warn("MTA-STS is off: %s", why);
		return 0;
	}
	if (mta_sts_store_open(cfg->spool, swhy, sizeof(swhy)) < 0)
		log_warn("mta_sts: policies are not kept across restarts: %s",
		    swhy);
	else
		mta_sts_store_load(MTA_STS_ENTRIES, loaded, NULL);
	return 0;
}

int
mta_sts_run(char *why, size_t whylen)
{
	if (g.fetcher == NULL || g.running)
		return 0;
	g.qhead = NULL;
	g.qtail = &g.qhead;
	g.stopping = false;
	for (unsigned i = 0; i < MTA_STS_WORKERS; i++) {
		if (pthread_create(&g.th[i], NULL, worker, NULL) != 0)
			break;
		g.nth++;
	}
	if (g.nth == 0) {
		snprintf(why, whylen, "mta_sts: cannot start a thread");
		mta_sts_fetcher_free(g.fetcher);
		g.fetcher = NULL;
		return -1;
	}
	g.running = true;
	return 0;
}

bool
mta_sts_prepared(void)
{
	return g.fetcher != NULL;
}

bool
mta_sts_running(void)
{
	return g.running;
}

void
mta_sts_stop(void)
{
	pthread_mutex_lock(&g.mu);
	g.stopping = true;
	g.running = false;
	pthread_cond_broadcast(&g.cv);
	pthread_mutex_unlock(&g.mu);
	/* A fetch under way ends within mta_sts.fetch_timeout. */
	for (unsigned i = 0; i < g.nth; i++)
		pthread_join(g.th[i], NULL);
	g.nth = 0;
	for (unsigned i = 0; i < STS_BUCKETS; i++) {
		for (struct sts_entry *e = g.buckets[i], *n; e != NULL; e = n) {
			n = e->hnext;
			free(e->pol);
			free(e);
		}
		g.buckets[i] = NULL;
	}
	g.nentries = 0;
	g.qhead = NULL;
	g.qtail = &g.qhead;
	mta_sts_fetcher_free(g.fetcher);
	g.fetcher = NULL;
	mta_sts_store_close();
}

/* One policy domain, as sluicectl status shows it. */
static json_t *
entry_json(const struct sts_entry *e, uint64_t now)
{
	json_t *o = json_object(), *fails = json_object(), *mx = json_array();
	uint64_t nfail = 0;

	if (o == NULL || fails == NULL || mx == NULL) {
		json_decref(o);
		json_decref(fails);
		json_decref(mx);
		return NULL;
	}
	json_object_set_new(o, "domain", json_string(e->domain));
	json_object_set_new(o, "policy", json_boolean(e->have));
	json_object_set_new(o, "mode", json_string(e->have ?
	    mta_sts_mode_name(e->pol->mode) : "none"));
	json_object_set_new(o, "id", e->have ? json_string(e->id) :
	    json_null());
	json_object_set_new(o, "max_age", json_integer(e->have ?
	    e->pol->max_age_s : 0));
	json_object_set_new(o, "expired", json_boolean(e->have &&
	    now >= e->expires_ms));
	for (unsigned i = 0; e->have && i < e->pol->nmx; i++)
		json_array_append_new(mx, json_string(e->pol->mx[i]));
	json_object_set_new(o, "mx", mx);
	json_object_set_new(o, "fetches", json_integer((json_int_t)e->fetches));
	json_object_set_new(o, "fetch_failures",
	    json_integer((json_int_t)e->fetch_failures));
	json_object_set_new(o, "last_error", e->last_error[0] != '\0' ?
	    json_string(e->last_error) : json_null());
	json_object_set_new(o, "successful_sessions",
	    json_integer((json_int_t)e->n_ok));
	for (unsigned i = 0; i < MTA_STS_R_MAX; i++) {
		if (e->n_fail[i] == 0)
			continue;
		nfail += e->n_fail[i];
		json_object_set_new(fails, result_names[i],
		    json_integer((json_int_t)e->n_fail[i]));
	}
	json_object_set_new(o, "failed_sessions",
	    json_integer((json_int_t)nfail));
	json_object_set_new(o, "failures", fails);
	return o;
}

json_t *
mta_sts_status(void)
{
	json_t *a = json_array();
	uint64_t now = clock_mono_ms();
	unsigned shown = 0;

	if (a == NULL)
		return NULL;
	pthread_mutex_lock(&g.mu);
	/* Domains without a policy and without counts are left out: most
	 * domains publish none, and the table would only list them. */
	for (unsigned i = 0; i < STS_BUCKETS && shown < 1000; i++)
		for (const struct sts_entry *e = g.buckets[i]; e != NULL &&
		    shown < 1000; e = e->hnext) {
			bool counted = e->n_ok > 0 || e->fetch_failures > 0;

			for (unsigned k = 0; k < MTA_STS_R_MAX; k++)
				counted = counted || e->n_fail[k] > 0;
			if (!e->have && !counted)
				continue;
			json_array_append_new(a, entry_json(e, now));
			shown++;
		}
	pthread_mutex_unlock(&g.mu);
	return a;
}
