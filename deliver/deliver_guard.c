/*
 * deliver_guard.c - which of the addresses DNS gave a destination it may
 * dial, and what the destination's mail gets when it may dial none.
 *
 * A destination delivered by MX lookup (plain smtp, smtp:host) reaches
 * whatever the domain's owner put in DNS. Addresses in
 * delivery.denied_networks (loopback, unspecified, link-local, multicast
 * by default) are never dialled there: such an MX is a mistake or an
 * attempt to reach the relay's own host or network. When nothing else is
 * left, the mail bounces 5.4.4 naming the hosts.
 * A next hop in brackets (smtp:[host]:port, relay_host "[host]:port") and
 * every LMTP next hop are the operator's own choice and are not checked.
 */
#include "deliver_int.h"

#include <assert.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/log.h"

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
	bool guard = t->mx_lookup && t->kind == ROUTE_SMTP;
	bool denied[RESOLVE_MX_MAX] = { false };
	unsigned k = 0, n = 0, ndenied = 0;
	char hosts[160], why[256];

	assert(r->status == RESOLVE_OK && r->ntargets <= RESOLVE_MX_MAX);
	free(ds->targets);
	ds->targets = NULL;
	ds->ntargets = 0;
	for (unsigned i = 0; i < r->ntargets; i++)
		n += r->targets[i].naddr;
	if (n > DL_TARGETS_MAX)
		n = DL_TARGETS_MAX;
	ds->targets = calloc(n ? n : 1, sizeof(*ds->targets));
	if (ds->targets == NULL) {
		dl_dest_verdict(ds, RESOLVE_TEMPFAIL, "out of memory");
		return;
	}
	for (unsigned i = 0; i < r->ntargets; i++) {
		const struct resolve_target *rt = &r->targets[i];

		for (unsigned j = 0; j < rt->naddr && k < n; j++) {
			struct dl_target *x = &ds->targets[k];

			if (guard && cidr_match(deny, ndeny,
			    (const struct sockaddr *)&rt->addr[j])) {
				denied[i] = true;
				ndenied++;
				continue;
			}
			snprintf(x->host, sizeof(x->host), "%s", rt->host);
			x->sa = rt->addr[j];
			dl_set_port(&x->sa, port);
			x->salen = x->sa.ss_family == AF_INET ?
			    sizeof(struct sockaddr_in) :
			    sizeof(struct sockaddr_in6);
			k++;
		}
	}
	ds->ntargets = k;
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
	assert(ndenied > 0);
	snprintf(why, sizeof(why), "all addresses of %s are in "
	    "delivery.denied_networks", hosts);
	dl_dest_verdict(ds, RESOLVE_NOADDR, why);
	ds->rcode = 550;
	snprintf(ds->renh, sizeof(ds->renh), "5.4.4");
}
