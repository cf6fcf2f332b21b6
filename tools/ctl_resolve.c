/*
 * ctl_resolve.c - sluicectl resolve: a destination's MX hosts, addresses
 * and TLSA records as delivery would find them, through the configured
 * resolver and DNSSEC mode, with each answer's DNSSEC status.
 */
#include "../engine/config.h"
#include "../deliver/resolver.h"
#include "sluicectl_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct resolve_out {
	const char *name;
	bool mx;
	int json;
	int rc;
};

static void
resolve_addr_text(const struct sockaddr_storage *ss, char *out, size_t len)
{
	const void *a = ss->ss_family == AF_INET ?
	    (const void *)&((const struct sockaddr_in *)ss)->sin_addr :
	    (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr;

	if (inet_ntop(ss->ss_family, a, out, (socklen_t)len) == NULL)
		snprintf(out, len, "?");
}

/* The association data in hex (at most DNS_TLSA_DATA_MAX octets). */
static void
tlsa_hex(const struct dns_tlsa *rr, char out[2 * DNS_TLSA_DATA_MAX + 1])
{
	static const char digits[] = "0123456789abcdef";
	unsigned n = rr->len < DNS_TLSA_DATA_MAX ? rr->len : DNS_TLSA_DATA_MAX;

	for (unsigned i = 0; i < n; i++) {
		out[2 * i] = digits[rr->data[i] >> 4];
		out[2 * i + 1] = digits[rr->data[i] & 15];
	}
	out[2 * n] = '\0';
}

static json_t *
tlsa_json(const struct resolve_target *t)
{
	json_t *a = json_array();
	char hex[2 * DNS_TLSA_DATA_MAX + 1];

	for (unsigned k = 0; a != NULL && k < t->ntlsa; k++) {
		json_t *r = json_object();

		tlsa_hex(&t->tlsa_rr[k], hex);
		json_object_set_new(r, "usage",
		    json_integer(t->tlsa_rr[k].usage));
		json_object_set_new(r, "selector",
		    json_integer(t->tlsa_rr[k].selector));
		json_object_set_new(r, "mtype",
		    json_integer(t->tlsa_rr[k].mtype));
		json_object_set_new(r, "data", json_string(hex));
		json_array_append_new(a, r);
	}
	return a;
}

static void
resolve_json(const struct resolve_out *ro, const struct resolve_result *res)
{
	json_t *o = json_object(), *ts = json_array();
	char addr[INET6_ADDRSTRLEN];

	for (unsigned i = 0; o != NULL && ts != NULL && i < res->ntargets;
	    i++) {
		const struct resolve_target *t = &res->targets[i];
		json_t *jt = json_object(), *as = json_array();

		for (unsigned k = 0; k < t->naddr; k++) {
			resolve_addr_text(&t->addr[k], addr, sizeof(addr));
			json_array_append_new(as, json_string(addr));
		}
		json_object_set_new(jt, "host", ctl_json_str(t->host));
		json_object_set_new(jt, "pref", json_integer(t->pref));
		json_object_set_new(jt, "addresses", as);
		json_object_set_new(jt, "dnssec",
		    json_string(resolve_sec_name(t->sec)));
		if (t->tlsa != RESOLVE_TLSA_UNASKED) {
			json_object_set_new(jt, "tlsa_status",
			    json_string(resolve_tlsa_name(t->tlsa)));
			json_object_set_new(jt, "tlsa", tlsa_json(t));
		}
		if (t->tlsa == RESOLVE_TLSA_FAIL)
			json_object_set_new(jt, "tlsa_why",
			    ctl_json_str(t->tlsa_why));
		json_array_append_new(ts, jt);
	}
	json_object_set_new(o, "name", ctl_json_str(ro->name));
	json_object_set_new(o, "lookup", json_string(ro->mx ? "mx" : "host"));
	json_object_set_new(o, "status",
	    json_string(resolve_status_name(res->status)));
	json_object_set_new(o, "authenticated",
	    json_boolean(res->authenticated));
	json_object_set_new(o, "mx_dnssec",
	    json_string(resolve_sec_name(res->mx_sec)));
	json_object_set_new(o, "why", ctl_json_str(res->why));
	json_object_set_new(o, "targets", ts);
	json_dumpf(o, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	putchar('\n');
	json_decref(o);
}

static void
resolve_print(void *arg, const struct resolve_result *res)
{
	struct resolve_out *ro = arg;
	char addr[INET6_ADDRSTRLEN];

	ro->rc = res->status == RESOLVE_OK ? 0 :
	    res->status == RESOLVE_TEMPFAIL ? CTL_EXIT_TEMPFAIL : CTL_EXIT_OPERATIONAL;
	if (ro->json) {
		resolve_json(ro, res);
		return;
	}
	ctl_put_str(ro->name);
	printf(": %s (%s lookup, %sauthenticated)",
	    resolve_status_name(res->status), ro->mx ? "mx" : "host",
	    res->authenticated ? "" : "not ");
	if (res->why[0] != '\0') {
		fputs(": ", stdout);
		ctl_put_str(res->why);
	}
	putchar('\n');
	for (unsigned i = 0; i < res->ntargets; i++) {
		const struct resolve_target *t = &res->targets[i];

		printf("  %u ", (unsigned)t->pref);
		ctl_put_str(t->host);
		for (unsigned k = 0; k < t->naddr; k++) {
			resolve_addr_text(&t->addr[k], addr, sizeof(addr));
			printf(" %s", addr);
		}
		/* Unmarked: not authenticated (the status line says so). */
		if (t->sec != RESOLVE_SEC_INSECURE)
			printf(" (%s", resolve_sec_name(t->sec));
		if (t->sec != RESOLVE_SEC_INSECURE &&
		    t->tlsa != RESOLVE_TLSA_UNASKED)
			printf(", TLSA %s", resolve_tlsa_name(t->tlsa));
		if (t->sec != RESOLVE_SEC_INSECURE)
			putchar(')');
		putchar('\n');
		for (unsigned k = 0; k < t->ntlsa; k++) {
			char hex[2 * DNS_TLSA_DATA_MAX + 1];

			tlsa_hex(&t->tlsa_rr[k], hex);
			printf("    TLSA %u %u %u %s\n", t->tlsa_rr[k].usage,
			    t->tlsa_rr[k].selector, t->tlsa_rr[k].mtype, hex);
		}
		if (t->tlsa == RESOLVE_TLSA_FAIL) {
			fputs("    ", stdout);
			ctl_put_str(t->tlsa_why);
			putchar('\n');
		}
	}
}

/*
 * resolve [--resolver HOST:PORT] [--mx|--host] [--port N] [--json] NAME:
 * the hosts and addresses delivery would use, in order, with what DNSSEC
 * said of them and, for secure hosts, their TLSA records for port N
 * (25). Exit 0 (RESOLVE_OK), 1 (permanent: mail would bounce), 75
 * (temporary: it would be deferred), 2 (usage).
 */
int
ctl_resolve(const struct config *cfg, int argc, char **argv)
{
	struct resolver_cfg rcfg;
	struct resolve_out ro = { NULL, true, 0, CTL_EXIT_OPERATIONAL };
	const char *server = NULL;
	char err[256], *end;
	unsigned long port = 25;
	int e;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--resolver") == 0 && i + 1 < argc)
			server = argv[++i];
		else if (strncmp(argv[i], "--resolver=", 11) == 0)
			server = argv[i] + 11;
		else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
			errno = 0;
			port = strtoul(argv[++i], &end, 10);
			if (errno != 0 || *end != '\0' || port == 0 ||
			    port > 65535)
				return ctl_usage_error("resolve: bad --port "
				    "'%s'", argv[i]);
		} else if (strcmp(argv[i], "--mx") == 0)
			ro.mx = true;
		else if (strcmp(argv[i], "--host") == 0)
			ro.mx = false;
		else if (strcmp(argv[i], "--json") == 0)
			ro.json = 1;
		else if (argv[i][0] != '-' && ro.name == NULL)
			ro.name = argv[i];
		else
			return ctl_usage_error("resolve: unexpected argument '%s'",
			    argv[i]);
	}
	if (ro.name == NULL)
		return ctl_usage_error("resolve needs a NAME");
	resolver_cfg_defaults(&rcfg);
	/* Without --resolver: the daemon's dns.resolver, else resolv.conf. */
	if (server == NULL)
		server = cfg->dns.resolver;
	rcfg.timeout_ms = cfg->dns.timeout_ms;
	rcfg.attempts = cfg->dns.attempts;
	if (resolver_cfg_server(&rcfg, server, "/etc/resolv.conf", err,
	    sizeof(err)) != 0) {
		ctl_error("%s", err);
		return server != NULL ? CTL_EXIT_USAGE : CTL_EXIT_TEMPFAIL;
	}
	resolver_cfg_dnssec(&rcfg, cfg->dns.dnssec_mode);
	rcfg.trust_anchor = cfg->dns.trust_anchor != NULL ?
	    cfg->dns.trust_anchor : RESOLVER_ROOT_KEY;
	e = resolver_lookup_sync(&rcfg, ro.name, ro.mx, (uint16_t)port, 0,
	    resolve_print, &ro);
	if (e < 0) {
		ctl_error("cannot start the resolver: %s", strerror(-e));
		return CTL_EXIT_TEMPFAIL;
	}
	if (ctl_finish_output() != 0)
		return CTL_EXIT_OPERATIONAL;
	return ro.rc;
}
