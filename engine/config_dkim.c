/*
 * config_dkim.c - the configuration of DKIM signing: the "dkim" keys and
 * the "dkim_signing" map, the checks of their values, and what is built
 * from them once the whole file is read (the keys loaded, the signing
 * policy of dkim/). Part of the loader (config_int.h).
 *
 * Keys are loaded here, at load, and only once: the signer threads of a
 * configuration generation share them, and a key that does not load is a
 * configuration error at its line, not a failure at the first message.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config_int.h"

/* ------------------------------------------------------------------ */
/* Schema                                                              */
/* ------------------------------------------------------------------ */

static cfg_check_fn check_dkim_alg, check_dkim_name, check_dkim_domain,
    check_dkim_selector, check_dkim_messages, check_dkim_canon;

/* One DKIM key; the key itself is loaded by cfg_dkim_build(). */
const struct cfg_key config_dkim_keys[] = {
	{ KEY("domain", CFG_STRING, NULL, 0, 0), FIELD(struct dkim_key_cfg, domain),
	  .check = check_dkim_domain, .flags = CFG_REQUIRED },
	{ KEY("selector", CFG_STRING, NULL, 0, 0),
	  FIELD(struct dkim_key_cfg, selector), .check = check_dkim_selector,
	  .flags = CFG_REQUIRED },
	{ KEY("key", CFG_STRING, NULL, 0, 0), FIELD(struct dkim_key_cfg, key),
	  .flags = CFG_REQUIRED },
	{ KEY("algorithm", CFG_STRING, "rsa-sha256", 0, 0),
	  FIELD(struct dkim_key_cfg, algorithm), .check = check_dkim_alg },
	{ .name = NULL },
};

/* The default signed headers: dkim_default_headers[] (dkim/dkim_sign.c). */
const struct cfg_key config_dkim_signing_keys[] = {
	{ KEY("messages", CFG_STRING, "ours", 0, 0),
	  FIELD(struct dkim_sign_cfg, messages), .check = check_dkim_messages },
	{ KEY("domain", CFG_STRING, "from", 0, 0),
	  FIELD(struct dkim_sign_cfg, domain) },
	{ KEY("headers", CFG_LIST_SCALAR, NULL, 1, DKIM_HEADERS_MAX),
	  LIST(struct dkim_sign_cfg, headers, nheaders),
	  .check = check_dkim_name },
	{ KEY("canonicalization", CFG_STRING, "relaxed/relaxed", 0, 0),
	  FIELD(struct dkim_sign_cfg, canonicalization),
	  .check = check_dkim_canon },
	{ KEY("expire", CFG_DURATION, "0", 0, 10 * 366 * 24 * HOUR_MS),
	  FIELD(struct dkim_sign_cfg, expire_ms) },
	{ KEY("workers", CFG_UINT, "0", 0, CONFIG_SHARDS_MAX),
	  FIELD(struct dkim_sign_cfg, workers) },
	{ .name = NULL },
};

/* ------------------------------------------------------------------ */
/* Checks                                                              */
/* ------------------------------------------------------------------ */

/* dkim.N.algorithm: fills alg next to it. */
static int
check_dkim_alg(const char *s, void *obj, char *why, size_t whylen)
{
	struct dkim_key_cfg *k = obj;

	if (strcmp(s, "rsa-sha256") == 0 || strcmp(s, "rsa") == 0) {
		k->alg = DKIM_RSA_SHA256;
	} else if (strcmp(s, "ed25519-sha256") == 0 ||
	    strcmp(s, "ed25519") == 0) {
		k->alg = DKIM_ED25519_SHA256;
	} else {
		snprintf(why, whylen, "unknown algorithm '%.*s' (expected "
		    "rsa-sha256 or ed25519-sha256; rsa-sha1 is never used)",
		    CONFIG_QUOTE_MAX, s);
		return -1;
	}
	return 0;
}

/* A domain as DKIM's d= takes it: LDH labels, dots, at most 253. */
static bool
dkim_domain_ok(const char *s)
{
	size_t n = strlen(s), label = 0;

	if (n == 0 || n > 253 || s[0] == '.' || s[n - 1] == '.')
		return false;
	for (; *s != '\0'; s++) {
		char c = *s;

		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '_') ||
		    ++label > 63)
			return false;
	}
	return true;
}

static int
check_dkim_domain(const char *s, void *obj, char *why, size_t whylen)
{
	(void)obj;
	if (!dkim_domain_ok(s)) {
		snprintf(why, whylen, "invalid domain '%.*s' (letters, digits, "
		    "'-' and dots; IDNs in their xn-- form)", CONFIG_QUOTE_MAX,
		    s);
		return -1;
	}
	return 0;
}

/* RFC 6376 3.1: a selector is a sub-domain of labels. */
static int
check_dkim_selector(const char *s, void *obj, char *why, size_t whylen)
{
	(void)obj;
	if (!dkim_domain_ok(s) || strlen(s) > 63) {
		snprintf(why, whylen, "invalid selector '%.*s' (letters, "
		    "digits, '-', dots)", CONFIG_QUOTE_MAX, s);
		return -1;
	}
	return 0;
}

static int
check_dkim_messages(const char *s, void *obj, char *why, size_t whylen)
{
	struct dkim_sign_cfg *d = obj;

	if (strcmp(s, "ours") == 0) {
		d->all = 0;
	} else if (strcmp(s, "all") == 0) {
		d->all = 1;
	} else {
		snprintf(why, whylen, "expected 'ours' (authenticated clients "
		    "and allowed_networks) or 'all', not '%.*s'",
		    CONFIG_QUOTE_MAX, s);
		return -1;
	}
	return 0;
}

static int
check_dkim_canon(const char *s, void *obj, char *why, size_t whylen)
{
	(void)obj;
	if (strcmp(s, "relaxed/relaxed") != 0 &&
	    strcmp(s, "relaxed/simple") != 0 &&
	    strcmp(s, "simple/relaxed") != 0 &&
	    strcmp(s, "simple/simple") != 0) {
		snprintf(why, whylen, "expected header/body, each simple or "
		    "relaxed (e.g. relaxed/relaxed), not '%.*s'",
		    CONFIG_QUOTE_MAX, s);
		return -1;
	}
	return 0;
}

/* A header field name (RFC 5322 2.2: printable ASCII but ':'), lowered. */
static int
check_dkim_name(const char *s, void *obj, char *why, size_t whylen)
{
	struct dkim_header_cfg *h = obj;
	size_t n = strlen(s), i;

	if (n == 0 || n > DKIM_NAME_MAX) {
		snprintf(why, whylen, "a header name has 1 to %d characters",
		    DKIM_NAME_MAX);
		return -1;
	}
	for (i = 0; i < n; i++) {
		if (s[i] <= ' ' || s[i] >= 0x7f || s[i] == ':') {
			snprintf(why, whylen, "invalid header name '%.*s'",
			    CONFIG_QUOTE_MAX, s);
			return -1;
		}
		h->name[i] = s[i] >= 'A' && s[i] <= 'Z' ?
		    (char)(s[i] - 'A' + 'a') : s[i];
	}
	h->name[n] = '\0';
	return 0;
}

/* ------------------------------------------------------------------ */
/* DKIM: keys loaded once, the policy built                            */
/* ------------------------------------------------------------------ */

/* An error about dkim.IDX.NAME, at the line that key (or the list) is on. */
static void
dkim_error(struct loader *ld, const struct cnode *root, size_t idx,
    const char *name, const char *why)
{
	const struct cnode *list = cnode_map_value(root, "dkim"), *v = NULL;
	char path[CONFIG_PATH_MAX];

	if (list != NULL && list->kind == CNODE_LIST && idx < list->n)
		v = cnode_map_value(list->kids[idx], name);
	if (v == NULL)
		v = list != NULL ? list : root;
	cfg_path_index(path, sizeof path, "dkim", idx);
	cfg_path_append(path, sizeof path, name, strlen(name));
	cfg_error(ld, v->origin, v->line, path, "%s", why);
}

void
cfg_dkim_build(struct loader *ld, struct config *cfg, const struct cnode *root)
{
	struct dkim_sign_cfg *ds = &cfg->dkim_signing;
	const struct cnode *sv = cnode_map_value(root, "dkim_signing");
	struct dkim_entry *e = NULL;
	const char *names[DKIM_HEADERS_MAX];
	char why[CONFIG_WHY_MAX];
	size_t i, j;

	for (i = 0; i < cfg->ndkim; i++) {
		struct dkim_key_cfg *k = &cfg->dkim[i];

		if (k->domain == NULL || k->selector == NULL ||
		    k->key == NULL || k->algorithm == NULL)
			continue;	/* reported already */
		for (char *p = k->domain; *p != '\0'; p++)
			if (*p >= 'A' && *p <= 'Z')
				*p = (char)(*p - 'A' + 'a');
		for (j = 0; j < i; j++)
			if (cfg->dkim[j].domain != NULL &&
			    cfg->dkim[j].selector != NULL &&
			    strcmp(cfg->dkim[j].domain, k->domain) == 0 &&
			    strcasecmp(cfg->dkim[j].selector, k->selector) == 0) {
				snprintf(why, sizeof why, "domain %s has selector "
				    "%s already (dkim.%zu)", k->domain,
				    k->selector, j);
				dkim_error(ld, root, i, "selector", why);
			}
		why[0] = '\0';
		if (dkim_key_load(k->key, k->alg, &k->loaded, why,
		    sizeof why) < 0)
			dkim_error(ld, root, i, "key", why);
	}
	if (ld->nfail > 0 || ld->oom)
		return;
	if (cfg->ndkim > 0 && (e = calloc(cfg->ndkim, sizeof(*e))) == NULL) {
		ld->oom = true;
		return;
	}
	for (i = 0; i < cfg->ndkim; i++)
		e[i] = (struct dkim_entry){ .domain = cfg->dkim[i].domain,
		    .selector = cfg->dkim[i].selector,
		    .key = cfg->dkim[i].loaded };
	if (dkim_policy_init(&cfg->dkim_policy, e, cfg->ndkim) != 0) {
		free(e);
		ld->oom = true;
		return;
	}
	free(e);
	if (strcmp(ds->domain, "from") == 0) {
		cfg->dkim_policy.mode = DKIM_DOMAIN_FROM;
	} else if (strcmp(ds->domain, "parent") == 0) {
		cfg->dkim_policy.mode = DKIM_DOMAIN_PARENT;
	} else {
		const struct cnode *v = cnode_map_value(sv, "domain");
		size_t first;

		for (char *p = ds->domain; *p != '\0'; p++)
			if (*p >= 'A' && *p <= 'Z')
				*p = (char)(*p - 'A' + 'a');
		cfg->dkim_policy.mode = DKIM_DOMAIN_FIXED;
		cfg->dkim_policy.fixed = ds->domain;
		for (first = 0; first < cfg->ndkim; first++)
			if (strcmp(cfg->dkim[first].domain, ds->domain) == 0)
				break;
		if (first == cfg->ndkim)
			cfg_error(ld, v != NULL ? v->origin : &ld->def_origin,
			    v != NULL ? v->line : 0, "dkim_signing.domain",
			    "'%.*s' is not 'from' or 'parent', nor a domain "
			    "with a key in dkim", CONFIG_QUOTE_MAX, ds->domain);
	}
	if (ds->nheaders > 0) {
		for (i = 0; i < ds->nheaders; i++)
			names[i] = ds->headers[i].name;
		if (dkim_policy_headers(&cfg->dkim_policy, names,
		    ds->nheaders) != 0) {
			const struct cnode *v = cnode_map_value(sv, "headers");

			cfg_error(ld, v != NULL ? v->origin : &ld->def_origin,
			    v != NULL ? v->line : 0, "dkim_signing.headers",
			    "must include from (RFC 6376 section 5.4)");
		}
	}
	cfg->dkim_policy.hcanon = strncmp(ds->canonicalization, "simple/", 7) ==
	    0 ? DKIM_SIMPLE : DKIM_RELAXED;
	cfg->dkim_policy.bcanon = strcmp(strchr(ds->canonicalization, '/') + 1,
	    "simple") == 0 ? DKIM_SIMPLE : DKIM_RELAXED;
	cfg->dkim_policy.expire_s = (uint32_t)(ds->expire_ms / SEC_MS);
	if (ds->expire_ms != 0 && ds->expire_ms < SEC_MS) {
		const struct cnode *v = cnode_map_value(sv, "expire");

		cfg_error(ld, v != NULL ? v->origin : &ld->def_origin,
		    v != NULL ? v->line : 0, "dkim_signing.expire",
		    "x= counts seconds: 0 (none) or at least 1s");
	}
}
