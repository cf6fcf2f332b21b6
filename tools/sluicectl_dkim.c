/*
 * sluicectl_dkim.c - sluicectl's DKIM commands.
 *
 *   dkim-keygen --domain D --selector S [--algorithm rsa|ed25519]
 *               [--bits N] [--out FILE]
 *       a new private key in FILE (default D.S.pem; created mode 0600,
 *       never over an existing file) and the DNS TXT record to publish
 *       for it, split into strings of at most 255 bytes (RFC 1035
 *       3.3.14; RFC 6376 3.6.2.2), with the lines to add to the config.
 *   dkim-check [--resolver HOST:PORT] [--domain D] [--selector S]
 *       for each configured key (or those of D / S), looks up
 *       S._domainkey.D TXT through the configured resolver (dns.resolver,
 *       else /etc/resolv.conf) and says whether the published key is
 *       this one.
 *
 * Exit: 0 all good; 1 a key is missing, different or revoked in DNS (or
 * the key could not be written); 2 usage or configuration; 75 DNS did not
 * answer (try later). The lookup is blocking, with ldns's resolver: a
 * tool may wait, a shard never does.
 */
#include <errno.h>
#include <ldns/ldns.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../deliver/resolver.h"
#include "../dkim/dkim.h"
#include "../engine/config.h"
#include "sluicectl_int.h"

#define TXT_STRING_MAX 255	/* one character-string of a TXT record */

int
ctl_dkim_keygen(int argc, char **argv)
{
	const char *domain = NULL, *selector = NULL, *alg = "rsa", *out = NULL;
	unsigned long bits = 2048;
	enum dkim_alg a;
	struct dkim_key *k = NULL;
	struct buf rec = { 0 }, path = { 0 };
	char why[256], *end, *abs = NULL;
	int rc = CTL_EXIT_OPERATIONAL;

	for (int i = 1; i < argc; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (v == NULL)
			return ctl_usage_error("dkim-keygen: %s needs a value",
			    argv[i]);
		if (strcmp(argv[i], "--domain") == 0)
			domain = v;
		else if (strcmp(argv[i], "--selector") == 0)
			selector = v;
		else if (strcmp(argv[i], "--algorithm") == 0)
			alg = v;
		else if (strcmp(argv[i], "--out") == 0)
			out = v;
		else if (strcmp(argv[i], "--bits") == 0) {
			errno = 0;
			bits = strtoul(v, &end, 10);
			if (errno != 0 || *end != '\0' || v[0] == '\0')
				return ctl_usage_error("dkim-keygen: bad --bits "
				    "'%s'", v);
		} else
			return ctl_usage_error("dkim-keygen: unexpected "
			    "argument '%s'", argv[i]);
		i++;
	}
	if (domain == NULL || selector == NULL)
		return ctl_usage_error("dkim-keygen needs --domain and "
		    "--selector");
	if (strcmp(alg, "rsa") == 0 || strcmp(alg, "rsa-sha256") == 0)
		a = DKIM_RSA_SHA256;
	else if (strcmp(alg, "ed25519") == 0 ||
	    strcmp(alg, "ed25519-sha256") == 0)
		a = DKIM_ED25519_SHA256;
	else
		return ctl_usage_error("dkim-keygen: --algorithm is rsa or "
		    "ed25519, not '%s'", alg);
	if (a == DKIM_RSA_SHA256 &&
	    (bits < DKIM_RSA_BITS_MIN || bits > DKIM_RSA_BITS_MAX))
		return ctl_usage_error("dkim-keygen: --bits must be %d to %d "
		    "(2048 recommended)", DKIM_RSA_BITS_MIN, DKIM_RSA_BITS_MAX);
	if (out == NULL) {
		if (buf_printf(&path, "%s.%s.pem", domain, selector) < 0 ||
		    buf_append(&path, "", 1) < 0) {
			ctl_error("out of memory");
			goto done;
		}
		out = path.data;
	}
	if (dkim_key_generate(a, (unsigned)bits, &k, why, sizeof(why)) < 0 ||
	    dkim_key_write(k, out, why, sizeof(why)) < 0) {
		ctl_error("%s", why);
		goto done;
	}
	if (dkim_key_record(k, &rec) < 0) {
		ctl_error("cannot encode the public key");
		goto done;
	}
	/* The configuration wants a path that holds from anywhere. */
	abs = realpath(out, NULL);
	if (abs != NULL)
		out = abs;
	printf("# private key: %s (%s, mode 0600)\n", out,
	    a == DKIM_RSA_SHA256 ? "rsa-sha256" : "ed25519-sha256");
	printf("# publish this TXT record:\n%s._domainkey.%s. IN TXT (",
	    selector, domain);
	for (size_t at = 0; at < rec.len; at += TXT_STRING_MAX) {
		size_t n = rec.len - at < TXT_STRING_MAX ? rec.len - at :
		    TXT_STRING_MAX;

		printf("%s\"%.*s\"", at == 0 ? " " : "\n    ", (int)n,
		    rec.data + at);
	}
	printf(" )\n# and add to the configuration:\n"
	    "dkim:\n  - {domain: %s, selector: %s, key: %s, algorithm: %s}\n",
	    domain, selector, out,
	    a == DKIM_RSA_SHA256 ? "rsa-sha256" : "ed25519-sha256");
	rc = ctl_finish_output();
done:
	free(abs);
	dkim_key_free(k);
	buf_free(&rec);
	buf_free(&path);
	return rc;
}

/* The TXT records at name, each's strings joined; count in *n. */
static int
lookup_txt(ldns_resolver *res, const char *name, char ***txt, size_t *n,
    char *why, size_t whylen)
{
	ldns_rdf *qname = ldns_dname_new_frm_str(name);
	ldns_rr_list *rrs = NULL;
	ldns_pkt *pkt;
	int rc = 0;

	*txt = NULL;
	*n = 0;
	if (qname == NULL) {
		snprintf(why, whylen, "'%.200s' is not a domain name", name);
		return CTL_EXIT_OPERATIONAL;
	}
	pkt = ldns_resolver_query(res, qname, LDNS_RR_TYPE_TXT, LDNS_RR_CLASS_IN,
	    LDNS_RD);
	ldns_rdf_deep_free(qname);
	if (pkt == NULL) {
		snprintf(why, whylen, "no answer from the resolver");
		return CTL_EXIT_TEMPFAIL;
	}
	if (ldns_pkt_get_rcode(pkt) == LDNS_RCODE_SERVFAIL) {
		snprintf(why, whylen, "SERVFAIL");
		rc = CTL_EXIT_TEMPFAIL;
		goto done;
	}
	rrs = ldns_pkt_rr_list_by_type(pkt, LDNS_RR_TYPE_TXT,
	    LDNS_SECTION_ANSWER);
	if (rrs == NULL || ldns_rr_list_rr_count(rrs) == 0) {
		snprintf(why, whylen, "no TXT record (%s)",
		    ldns_pkt_get_rcode(pkt) == LDNS_RCODE_NXDOMAIN ?
		    "NXDOMAIN" : "no data");
		rc = CTL_EXIT_OPERATIONAL;
		goto done;
	}
	*txt = calloc(ldns_rr_list_rr_count(rrs), sizeof(**txt));
	if (*txt == NULL) {
		snprintf(why, whylen, "out of memory");
		rc = CTL_EXIT_OPERATIONAL;
		goto done;
	}
	for (size_t i = 0; i < ldns_rr_list_rr_count(rrs); i++) {
		ldns_rr *rr = ldns_rr_list_rr(rrs, i);
		struct buf b = { 0 };
		int e = 0;

		/* Each rdf is one character-string: a length byte first. */
		for (size_t j = 0; j < ldns_rr_rd_count(rr) && e == 0; j++) {
			ldns_rdf *rd = ldns_rr_rdf(rr, j);
			const uint8_t *d = ldns_rdf_data(rd);

			if (ldns_rdf_size(rd) >= 1 &&
			    (size_t)d[0] + 1 <= ldns_rdf_size(rd))
				e = buf_append(&b, d + 1, d[0]);
		}
		if (e == 0)
			e = buf_append(&b, "", 1);
		(*txt)[(*n)++] = b.data != NULL ? b.data : strdup("");
	}
done:
	ldns_rr_list_deep_free(rrs);
	ldns_pkt_free(pkt);
	return rc;
}

static int
check_one(ldns_resolver *res, const struct dkim_key_cfg *k)
{
	char name[512], why[256];
	char **txt = NULL;
	size_t n = 0, dkim_records = 0;
	int rc, match = 0;

	snprintf(name, sizeof(name), "%s._domainkey.%s.", k->selector,
	    k->domain);
	rc = lookup_txt(res, name, &txt, &n, why, sizeof(why));
	if (rc == 0) {
		rc = CTL_EXIT_OPERATIONAL;
		for (size_t i = 0; i < n; i++) {
			int m = dkim_key_record_matches(k->loaded, txt[i], why,
			    sizeof(why));

			if (m >= 0)
				dkim_records++;
			if (m == 1)
				match = 1;
		}
		if (dkim_records > 1) {
			/* A verifier may take any of them (RFC 6376 3.6.2.2). */
			snprintf(why, sizeof(why), "%zu DKIM key records: "
			    "publish exactly one", dkim_records);
		} else if (match) {
			rc = 0;
		} else if (dkim_records == 0) {
			snprintf(why, sizeof(why), "no DKIM key record among "
			    "%zu TXT record(s)", n);
		}
	}
	printf("%s %s (%s): %s%s%s\n", k->domain, k->selector,
	    dkim_alg_name(k->alg), rc == 0 ? "OK, the published key matches" :
	    rc == CTL_EXIT_TEMPFAIL ? "cannot tell: " : "MISMATCH: ",
	    rc == 0 ? "" : why, rc == 0 ? "" : "");
	for (size_t i = 0; i < n; i++)
		free(txt[i]);
	free(txt);
	return rc;
}

int
ctl_dkim_check(const struct config *cfg, int argc, char **argv)
{
	const char *server = NULL, *domain = NULL, *selector = NULL;
	struct resolver_cfg rcfg;
	ldns_resolver *res = NULL;
	ldns_rdf *ns = NULL;
	uint16_t port = 53;
	struct timeval tv;
	char err[256];
	int rc = 0, worst = 0;
	size_t done = 0;

	for (int i = 1; i < argc; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (v == NULL)
			return ctl_usage_error("dkim-check: %s needs a value",
			    argv[i]);
		if (strcmp(argv[i], "--resolver") == 0)
			server = v;
		else if (strcmp(argv[i], "--domain") == 0)
			domain = v;
		else if (strcmp(argv[i], "--selector") == 0)
			selector = v;
		else
			return ctl_usage_error("dkim-check: unexpected "
			    "argument '%s'", argv[i]);
		i++;
	}
	if (cfg->ndkim == 0) {
		ctl_error("no dkim keys in the configuration");
		return CTL_EXIT_USAGE;
	}
	resolver_cfg_defaults(&rcfg);
	if (server == NULL)
		server = cfg->dns.resolver;
	if (resolver_cfg_server(&rcfg, server, "/etc/resolv.conf", err,
	    sizeof(err)) != 0) {
		ctl_error("%s", err);
		return server != NULL ? CTL_EXIT_USAGE : CTL_EXIT_TEMPFAIL;
	}
	res = ldns_resolver_new();
	ns = ldns_sockaddr_storage2rdf(&rcfg.server, &port);
	if (res == NULL || ns == NULL ||
	    ldns_resolver_push_nameserver(res, ns) != LDNS_STATUS_OK) {
		ctl_error("cannot set the resolver up");
		rc = CTL_EXIT_OPERATIONAL;
		goto done;
	}
	ldns_resolver_set_port(res, port);
	tv.tv_sec = cfg->dns.timeout_ms / 1000;
	tv.tv_usec = (cfg->dns.timeout_ms % 1000) * 1000;
	ldns_resolver_set_timeout(res, tv);
	ldns_resolver_set_retry(res, (uint8_t)cfg->dns.attempts);
	ldns_resolver_set_recursive(res, true);
	for (size_t i = 0; i < cfg->ndkim; i++) {
		const struct dkim_key_cfg *k = &cfg->dkim[i];

		if ((domain != NULL && strcasecmp(domain, k->domain) != 0) ||
		    (selector != NULL && strcasecmp(selector, k->selector) != 0))
			continue;
		rc = check_one(res, k);
		done++;
		/* Temporary beats nothing; a mismatch beats both. */
		if (rc == CTL_EXIT_OPERATIONAL || (rc != 0 && worst == 0))
			worst = rc;
	}
	if (done == 0) {
		ctl_error("no configured key matches the --domain/--selector "
		    "given");
		worst = CTL_EXIT_USAGE;
	}
	rc = worst;
	if (ctl_finish_output() != 0)
		rc = CTL_EXIT_OPERATIONAL;
done:
	ldns_rdf_deep_free(ns);
	ldns_resolver_deep_free(res);
	return rc;
}
