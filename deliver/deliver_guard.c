/*
 * deliver_guard.c - which of the addresses DNS gave a destination it may
 * dial, and what the destination's mail gets when it may dial none.
 *
 * Whatever DNS gives a destination is what the zone's owner put there,
 * even for a next-hop name the operator chose (smtp:[mx.partner.example]
 * is in the partner's zone). Two kinds of address are never dialled:
 *   - delivery.denied_networks (loopback, unspecified, link-local,
 *     multicast by default), for every address found in DNS: MX hosts'
 *     and next-hop names' alike. Such an address is a mistake or an
 *     attempt to reach the relay's own host or network. When nothing else
 *     is left, the mail bounces 5.4.4 naming the hosts;
 *   - sluice's own listeners, for MX hosts (plain smtp, smtp:host): an
 *     MX host that is ourselves is a mail loop. RFC 5321 section 5.1: an
 *     MX host that is the client itself is discarded together with every
 *     MX host of the same or a higher preference (we may still be a backup
 *     MX for the domain). When nothing is left, the mail bounces 5.4.6
 *     "mail for D loops back to myself", as Postfix says it. A next hop
 *     in brackets is an explicit choice: a route may send mail to our
 *     own listener on purpose.
 * Next hops written as addresses ([192.0.2.1]:port, relay_host
 * "[::1]:25") and unix sockets never reach this file: they need no DNS and
 * are the operator's own choice.
 *
 * A listener on 0.0.0.0 or :: accepts on every local address: those are
 * the interfaces' addresses (getifaddrs(), re-read at most once a minute
 * per shard thread), all of 127.0.0.0/8, ::1 and the unspecified addresses
 * themselves (a connect to 0.0.0.0 reaches this host).
 */
#include "deliver_int.h"
#include "tls_policy.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/log.h"

#define GUARD_LOCAL_MAX 64		/* interface addresses kept */
#define GUARD_LOCAL_REFRESH_MS 60000

/* This shard thread's interface addresses (v4 as v4, v6 as v6). */
static _Thread_local struct {
	struct sockaddr_storage a[GUARD_LOCAL_MAX];
	unsigned n;
	uint64_t loaded_ms;
	bool loaded;
} local;

/* An address as 16 octets, IPv4 in its mapped form; false if neither. */
static bool
addr16(const struct sockaddr_storage *sa, uint8_t out[16])
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
		0xff, 0xff };

	if (sa->ss_family == AF_INET) {
		memcpy(out, mapped, 12);
		memcpy(out + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		return true;
	}
	if (sa->ss_family == AF_INET6) {
		memcpy(out, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
		return true;
	}
	return false;
}

static uint16_t
addr_port(const struct sockaddr_storage *sa)
{
	if (sa->ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)sa)->sin_port);
	if (sa->ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
	return 0;
}

static bool
is_mapped(const uint8_t a[16])
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
		0xff, 0xff };

	return memcmp(a, mapped, 12) == 0;
}

/* 0.0.0.0 or :: (the wildcard of a listener, "this host" to connect). */
static bool
is_unspecified(const uint8_t a[16])
{
	static const uint8_t zero[16];

	return memcmp(a, zero, 16) == 0 ||
	    (is_mapped(a) && memcmp(a + 12, zero, 4) == 0);
}

static void
local_refresh(uint64_t now_ms)
{
	struct ifaddrs *ifa = NULL, *i;

	if (local.loaded && now_ms < local.loaded_ms + GUARD_LOCAL_REFRESH_MS)
		return;
	local.loaded = true;
	local.loaded_ms = now_ms;
	local.n = 0;
	if (getifaddrs(&ifa) != 0) {
		log_warn("deliver: cannot list the local addresses: %s",
		    strerror(errno));
		return;
	}
	for (i = ifa; i != NULL && local.n < GUARD_LOCAL_MAX; i = i->ifa_next) {
		if (i->ifa_addr == NULL || (i->ifa_addr->sa_family != AF_INET &&
		    i->ifa_addr->sa_family != AF_INET6))
			continue;
		memset(&local.a[local.n], 0, sizeof(local.a[0]));
		memcpy(&local.a[local.n], i->ifa_addr,
		    i->ifa_addr->sa_family == AF_INET ?
		    sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
		local.n++;
	}
	freeifaddrs(ifa);
}

/* Is a (16 octets) an address of this host? */
static bool
addr_local(const uint8_t a[16], uint64_t now_ms)
{
	static const uint8_t loop6[16] = { [15] = 1 };
	uint8_t b[16];

	if (is_unspecified(a) || memcmp(a, loop6, 16) == 0 ||
	    (is_mapped(a) && a[12] == 127))
		return true;
	local_refresh(now_ms);
	for (unsigned i = 0; i < local.n; i++)
		if (addr16(&local.a[i], b) && memcmp(a, b, 16) == 0)
			return true;
	return false;
}

/* Would a connection to sa reach one of our own listeners? */
static bool
addr_self(const struct deliver_cfg *cfg, const struct sockaddr_storage *sa,
    uint64_t now_ms)
{
	uint16_t port = addr_port(sa);
	uint8_t a[16], l[16];

	if (!addr16(sa, a))
		return false;
	for (unsigned i = 0; i < cfg->nlisten; i++) {
		const struct sockaddr_storage *ls = &cfg->listen[i];

		if (addr_port(ls) != port || !addr16(ls, l))
			continue;
		if (memcmp(a, l, 16) == 0)
			return true;
		/* 0.0.0.0 takes IPv4 only; :: both (unless V6ONLY: a loop
		 * wrongly seen costs a bounce, one missed costs a storm). */
		if (is_unspecified(l) && (ls->ss_family == AF_INET6 ||
		    is_mapped(a)) && addr_local(a, now_ms))
			return true;
	}
	return false;
}

void
dl_dest_verdict(struct dl_dest *ds, int status, const char *why)
{
	ds->rstatus = status;
	snprintf(ds->rwhy, sizeof(ds->rwhy), "%.*s", (int)sizeof(ds->rwhy) - 1,
	    why);
	switch (status) {
	case RESOLVE_OK:
		ds->rcode = 250;
		snprintf(ds->renh, sizeof(ds->renh), "2.0.0");
		break;
	case RESOLVE_TEMPFAIL:
		ds->rcode = 451;
		snprintf(ds->renh, sizeof(ds->renh), "4.4.3");
		break;
	case RESOLVE_NULLMX:
		ds->rcode = 550;
		snprintf(ds->renh, sizeof(ds->renh), "5.1.10");
		break;
	case RESOLVE_NXDOMAIN:
	case RESOLVE_NOADDR:
		ds->rcode = 550;
		snprintf(ds->renh, sizeof(ds->renh), "5.1.2");
		break;
	default:
		log_panic("deliver: bad resolve status %d", status);
	}
}

/* "a, b, c" of the hosts marked in which (at most 120 characters). */
static void
host_list(const struct resolve_result *r, const bool *which, char *out,
    size_t cap)
{
	size_t n = 0;
	unsigned more = 0;

	out[0] = '\0';
	for (unsigned i = 0; i < r->ntargets; i++) {
		if (!which[i])
			continue;
		if (n + strlen(r->targets[i].host) + 2 < cap && n < 120)
			n += (size_t)snprintf(out + n, cap - n, "%s%s",
			    n > 0 ? ", " : "", r->targets[i].host);
		else
			more++;
	}
	if (more > 0 && n + 16 < cap)
		snprintf(out + n, cap - n, " and %u more", more);
}

void
dl_dest_targets(struct deliver *d, struct dl_dest *ds,
    const struct resolve_result *r)
{
	const struct route_transport *t = &ds->route->transport;
	const struct deliver_cfg *cfg = d->cfg;
	const struct cidr *deny = cfg->delivery->denied_networks;
	size_t ndeny = cfg->delivery->ndenied_networks;
	uint16_t port = t->port ? t->port : ROUTE_PORT_SMTP;
	bool mx = t->mx_lookup && t->kind == ROUTE_SMTP;
	bool self[RESOLVE_MX_MAX] = { false }, denied[RESOLVE_MX_MAX] = { false };
	unsigned self_pref = UINT32_MAX, k = 0, n = 0, ndenied = 0;
	unsigned nskipped = 0;
	struct tls_host_decision dec;
	char hosts[160], why[256], skipped[160] = "", skipped_enh[12] = "";

	assert(r->status == RESOLVE_OK && r->ntargets <= RESOLVE_MX_MAX);
	free(ds->targets);
	ds->targets = NULL;
	ds->ntargets = 0;
	for (unsigned i = 0; i < r->ntargets; i++)
		n += r->targets[i].naddr;
	if (n > DL_TARGETS_MAX)
		n = DL_TARGETS_MAX;
	ds->targets = calloc(n ? n : 1, sizeof(*ds->targets));
	free(ds->dane);
	ds->ndane = 0;
	ds->dane = calloc(r->ntargets ? r->ntargets : 1, sizeof(*ds->dane));
	if (ds->targets == NULL || ds->dane == NULL) {
		dl_dest_verdict(ds, RESOLVE_TEMPFAIL, "out of memory");
		return;
	}
	/* RFC 5321 section 5.1: ourselves, and every MX host not better. */
	for (unsigned i = 0; mx && i < r->ntargets; i++)
		for (unsigned j = 0; j < r->targets[i].naddr; j++) {
			struct sockaddr_storage sa = r->targets[i].addr[j];

			dl_set_port(&sa, port);
			if (addr_self(cfg, &sa, d->now_ms)) {
				self[i] = true;
				if (r->targets[i].pref < self_pref)
					self_pref = r->targets[i].pref;
			}
		}
	for (unsigned i = 0; i < r->ntargets; i++) {
		const struct resolve_target *rt = &r->targets[i];
		uint8_t di = 0;	/* 1 + its entry in ds->dane */

		if (mx && rt->pref >= self_pref)
			continue;
		/* DANE first (deliver/tls_policy.c): a host may be skipped. */
		tls_policy_for_host(ds->tls.level, d->dnssec, rt, &dec);
		if (dec.action != TLS_HOST_DIAL) {
			log_info("deliver: %s: MX host %s not used: %s",
			    ds->lookup, rt->host, dec.why);
			if (nskipped++ == 0) {
				snprintf(skipped, sizeof(skipped), "%s",
				    dec.why);
				snprintf(skipped_enh, sizeof(skipped_enh), "%s",
				    dec.action == TLS_HOST_DEFER_DNS ?
				    "4.4.3" : "4.7.5");
			}
			continue;
		}
		if (dec.level == ROUTE_TLS_DANE) {
			struct dl_dane *dn = &ds->dane[ds->ndane++];

			for (unsigned j = 0; j < rt->ntlsa; j++)
				if (tls_tlsa_usable(&rt->tlsa_rr[j]))
					dn->rr[dn->n++] = rt->tlsa_rr[j];
			di = (uint8_t)ds->ndane;
		}
		for (unsigned j = 0; j < rt->naddr && k < n; j++) {
			struct dl_target *x = &ds->targets[k];

			if (cidr_match(deny, ndeny,
			    (const struct sockaddr *)&rt->addr[j])) {
				denied[i] = true;
				ndenied++;
				continue;
			}
			snprintf(x->host, sizeof(x->host), "%s", rt->host);
			x->tls_level = (uint8_t)dec.level;
			x->dane = di;
			x->sa = rt->addr[j];
			dl_set_port(&x->sa, port);
			x->salen = x->sa.ss_family == AF_INET ?
			    sizeof(struct sockaddr_in) :
			    sizeof(struct sockaddr_in6);
			k++;
		}
	}
	ds->ntargets = k;
	if (self_pref != UINT32_MAX) {
		/* A backup MX sees this all the time: news only if it is all. */
		host_list(r, self, hosts, sizeof(hosts));
		log_msg(k > 0 ? LOG_DEBUG : LOG_INFO, "deliver: %s: MX host %s "
		    "is this host (port %u): it and the MX hosts not better "
		    "than it are not used", ds->lookup, hosts, port);
	}
	if (ndenied > 0) {
		host_list(r, denied, hosts, sizeof(hosts));
		log_info("deliver: %s: %u address(es) of %s in "
		    "delivery.denied_networks: not used", ds->lookup, ndenied,
		    hosts);
	}
	if (k > 0) {
		dl_dest_verdict(ds, RESOLVE_OK, "");
		return;
	}
	if (nskipped > 0) {
		/* DNSSEC or DANE left no host to try: later, never without. */
		snprintf(why, sizeof(why), "%s%s", skipped, nskipped > 1 ?
		    " (and the other MX hosts likewise)" : "");
		dl_dest_verdict(ds, RESOLVE_TEMPFAIL, why);
		snprintf(ds->renh, sizeof(ds->renh), "%s", skipped_enh);
		return;
	}
	if (self_pref != UINT32_MAX) {
		snprintf(why, sizeof(why), "mail for %.200s loops back to myself",
		    ds->lookup);
		dl_dest_verdict(ds, RESOLVE_NOADDR, why);
		ds->rcode = 554;
		snprintf(ds->renh, sizeof(ds->renh), "5.4.6");
		return;
	}
	assert(ndenied > 0);
	snprintf(why, sizeof(why), "all addresses of %s are in "
	    "delivery.denied_networks", hosts);
	dl_dest_verdict(ds, RESOLVE_NOADDR, why);
	ds->rcode = 550;
	snprintf(ds->renh, sizeof(ds->renh), "5.4.4");
}
