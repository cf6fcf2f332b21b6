/*
 * mta_sts_dest.c - MTA-STS applied to one destination on its shard: which
 * MX hosts it may use, the TLS it needs, and the TLS-RPT result of each
 * session (deliver/mta_sts.h keeps the counts).
 *
 * A destination is looked at once its MX hosts are known (dest_service()
 * in deliver.c, after DNS): its policy comes from the cache; while the
 * first fetch for its domain runs it waits, at most mta_sts.wait, then
 * goes on as if the domain had none (RFC 8461 section 5.1 allows that
 * when nothing is cached).
 *
 *   enforce  only MX hosts the policy names are used; TLS is required and
 *            the certificate must verify (PKIX) and carry the MX host's
 *            name; no host left, or a failure, defers with 4.7.5
 *            (the handshake's failure is smtp_client's 454 4.7.5, a
 *            missing STARTTLS its 451 4.7.4), never plaintext
 *   testing  delivery as before; what enforce would have refused is
 *            counted (an MX host not in the policy, a certificate that
 *            does not verify, no STARTTLS)
 *   none     as if there were no policy
 *
 * DANE comes first, host by host (RFC 8461 section 2): an MX host with
 * usable TLSA records in a signed zone is DANE's, whatever the policy
 * says of it (kept when enforce filters the hosts, its sessions not
 * counted here), and dl_tls_host_level() gives it DANE. The domain's
 * other MX hosts stay under the policy: a DANE host that is down must
 * not leave them to "may", where nothing protects them from a downgrade.
 */
#include "deliver_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../lib/log.h"
#include "../lib/tls.h"
#include "mta_sts.h"

/*
 * Does MTA-STS apply at all: MX delivery, the recipient's domain (smtp)
 * or a domain a route names (smtp:example.com), which is then the
 * policy domain. A fixed next hop (smtp:[host], relay_host) has no MX
 * lookup and no policy.
 */
static bool
applies(const struct dl_dest *ds)
{
	const struct route *r = ds->route;

	if (!mta_sts_running() || r->policy.mta_sts == ROUTE_STS_OFF)
		return false;
	return r->transport.kind == ROUTE_SMTP && r->transport.mx_lookup;
}

/* sts_wait_until_ms once a wait ran out, while the fetch still runs. */
#define DL_STS_WAITED 1

/* Is host one of the destination's DANE hosts (not under the policy)? */
static bool
dane_host(const struct dl_dest *ds, const char *host)
{
	for (unsigned i = 0; host != NULL && i < ds->ntargets; i++)
		if (ds->targets[i].tls_level == ROUTE_TLS_DANE &&
		    strcasecmp(ds->targets[i].host, host) == 0)
			return true;
	return false;
}

const char *
dl_sts_policy_name(const struct dl_dest *ds, const char *mx)
{
	if (ds->sts_state != DL_STS_S_OFF && dane_host(ds, mx))
		return "dane";
	switch (ds->sts_state) {
	case DL_STS_S_ENFORCE:
		return "sts-enforce";
	case DL_STS_S_TESTING:
		return "sts-testing";
	case DL_STS_S_NONE:
		return "none";
	default:
		return NULL;	/* not an MX destination, or STS off */
	}
}

void
dl_sts_free(struct dl_dest *ds)
{
	free(ds->sts_pol);
	ds->sts_pol = NULL;
}

enum dl_sts_step
dl_sts_apply(struct deliver *d, struct dl_dest *ds, char *text, size_t len)
{
	const struct mta_sts_cfg *sc = d->cfg->mta_sts;
	enum mta_sts_state st;
	unsigned keep = 0;

	if (!applies(ds)) {
		if (ds->sts_state != DL_STS_S_OFF)
			dl_tls_policy(ds);	/* the route's TLS again */
		ds->sts_state = DL_STS_S_OFF;
		return DL_STS_GO;
	}
	if (ds->sts_pol == NULL &&
	    (ds->sts_pol = malloc(sizeof(*ds->sts_pol))) == NULL) {
		snprintf(text, len, "out of memory for the MTA-STS policy of "
		    "%s", ds->lookup);
		return DL_STS_FAIL;
	}
	/*
	 * The cache at most once a second per destination: a busy one
	 * passes here for every batch of connections, and the cache's
	 * mutex is shared by every shard.
	 */
	if (ds->sts_got_ms != 0 && d->now_ms < ds->sts_got_ms + 1000 &&
	    ds->sts_wait_until_ms <= DL_STS_WAITED) {
		st = ds->sts_have ? MTA_STS_S_POLICY : MTA_STS_S_NONE;
	} else {
		st = mta_sts_get(ds->lookup, ds->sts_pol);
		ds->sts_got_ms = d->now_ms;
		ds->sts_have = st == MTA_STS_S_POLICY;
	}
	if (st == MTA_STS_S_PENDING) {
		if (ds->sts_wait_until_ms == 0)
			ds->sts_wait_until_ms = d->now_ms + sc->wait_ms;
		if (ds->sts_wait_until_ms != DL_STS_WAITED &&
		    d->now_ms < ds->sts_wait_until_ms)
			return DL_STS_WAIT;
		if (ds->sts_wait_until_ms != DL_STS_WAITED)
			log_info("deliver: %s: no MTA-STS policy after %u ms: "
			    "delivering as without one", ds->lookup,
			    sc->wait_ms);
		/* Waited once: not again while this fetch runs. */
		ds->sts_wait_until_ms = DL_STS_WAITED;
		st = MTA_STS_S_NONE;
	} else {
		ds->sts_wait_until_ms = 0;
	}
	/* The route's TLS first; a policy then raises it. */
	dl_tls_policy(ds);
	if (st != MTA_STS_S_POLICY || ds->sts_pol->mode == MTA_STS_NONE) {
		ds->sts_state = DL_STS_S_NONE;
		return DL_STS_GO;
	}
	if (ds->sts_pol->mode == MTA_STS_TESTING) {
		ds->sts_state = DL_STS_S_TESTING;
		dl_tls_sts(ds, false);
		return DL_STS_GO;
	}
	ds->sts_state = DL_STS_S_ENFORCE;
	for (unsigned i = 0; i < ds->ntargets; i++)
		if (ds->targets[i].tls_level == ROUTE_TLS_DANE ||
		    mta_sts_mx_match(ds->sts_pol, ds->targets[i].host))
			ds->targets[keep++] = ds->targets[i];
	if (keep == 0) {
		mta_sts_count(ds->lookup, false, MTA_STS_R_VALIDATION_FAILURE);
		snprintf(text, len, "no MX host of %s matches its "
		    "MTA-STS policy (mode enforce)", ds->lookup);
		ds->resolved_ms = 0;	/* ask DNS again next time */
		return DL_STS_FAIL;
	}
	ds->ntargets = keep;
	dl_tls_sts(ds, true);
	return DL_STS_GO;
}

/* One session's result, once (c->sts_counted). */
static void
count(struct dl_conn *c, bool ok, enum mta_sts_result r)
{
	if (c->sts_counted)
		return;
	c->sts_counted = true;
	mta_sts_count(c->dest->lookup, ok, r);
}

/* A DANE host's sessions are DANE's, not the policy's. */
static bool
counted_here(const struct dl_conn *c)
{
	return !c->sts_counted && c->tls_level != ROUTE_TLS_DANE &&
	    (c->dest->sts_state == DL_STS_S_ENFORCE ||
	    c->dest->sts_state == DL_STS_S_TESTING);
}

void
dl_sts_tls_done(struct dl_conn *c)
{
	char why[128];

	if (!counted_here(c))
		return;
	if (!tls_peer_verified(c->tls, why, sizeof(why))) {
		count(c, false, mta_sts_result_of_verify(tls_verify_kind(
		    c->tls)));
		if (c->dest->sts_state == DL_STS_S_TESTING)
			log_info("deliver: %s [%s]: MTA-STS (testing) would "
			    "refuse: %s", c->host, c->addr, why);
		return;
	}
	if (c->dest->sts_pol != NULL &&
	    !mta_sts_mx_match(c->dest->sts_pol, c->host)) {
		count(c, false, MTA_STS_R_VALIDATION_FAILURE);
		log_info("deliver: %s [%s]: MTA-STS (testing) would refuse: "
		    "MX host not in the policy", c->host, c->addr);
		return;
	}
	count(c, true, MTA_STS_R_MAX);
}

void
dl_sts_tls_failed(struct dl_conn *c)
{
	if (counted_here(c))
		count(c, false, mta_sts_result_of_verify(tls_verify_kind(
		    c->tls)));
}

void
dl_sts_plain(struct dl_conn *c)
{
	if (counted_here(c) && !c->tls_up && c->tls == NULL)
		count(c, false, MTA_STS_R_STARTTLS_NOT_SUPPORTED);
}
