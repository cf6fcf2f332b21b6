/*
 * config.c - the meaning half of the configuration loader: the typed schema
 * and what it turns the tree into (see config_int.h for the split).
 *
 * The tree built by config_tree.c (file, then environment, then -o) is
 * checked against the schema tables below and converted into struct
 * config. Absent keys take their default from the table; a default is YAML
 * text and goes through the same conversion, so a default can never be
 * stored without passing its own range check. Routes are then built by
 * the routing module, and values that depend on the machine (host name,
 * shard count) are resolved last.
 *
 * Contract: see config.h. Nothing is printed here. A file that cannot be
 * read or is not valid YAML stops the load after that one error: checking
 * the rest against a half-read tree would only produce misleading
 * follow-up errors.
 *
 * Null values (plain "", "~", "null") mean "not set": the key takes its
 * default. That lets "-o limits.errors=" undo a file setting.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config_int.h"
#include "../lib/secret.h"
#include "../lib/log.h"
#include "../deliver/resolver.h"
#include "../lib/tls.h"

#define CONFIG_ROUTES_MAX	10000		/* entries in "routes" */
#define CONFIG_DKIM_MAX		10000		/* entries in "dkim" */

#define DEFAULT_SOURCE		"(embedded default)"



/* ------------------------------------------------------------------ */
/* Schema                                                              */
/* ------------------------------------------------------------------ */

static cfg_check_fn check_hostname, check_mailbox, check_user,
    check_address, check_network, check_resolver, check_dnssec, check_anchor,
    check_tls_mode,
    check_auth_line, check_delivery_tls, check_relay_tls, check_ca_file;


/*
 * Credentials for a next hop: a map, or the one-line "user:password"
 * (check_auth_line) that older configurations use.
 */
static const struct cfg_key auth_keys[] = {
	{ KEY("user", CFG_STRING, NULL, 0, 0), FIELD(struct auth_cfg, user) },
	{ KEY("password", CFG_STRING, NULL, 0, 0),
	  FIELD(struct auth_cfg, password) },
	{ KEY("password_file", CFG_STRING, NULL, 0, 0),
	  FIELD(struct auth_cfg, password_file), .check = cfg_check_path },
	{ .name = NULL },
};

/*
 * One listener: its address, TLS, PROXY protocol and AUTH.
 */
static const struct cfg_key listen_keys[] = {
	{ KEY("address", CFG_STRING, NULL, 0, 0), FIELD(struct listen_cfg, address),
	  .check = check_address, .flags = CFG_REQUIRED },
	{ KEY("tls", CFG_STRING, "none", 0, 0), FIELD(struct listen_cfg, tls),
	  .check = check_tls_mode },
	/* check_listeners(): proxy_trusted may not be empty when it is on. */
	{ KEY("proxy_protocol", CFG_BOOL, "false", 0, 1),
	  FIELD(struct listen_cfg, proxy_protocol) },
	{ KEY("proxy_trusted", CFG_LIST_SCALAR, "[]", 0, 1024),
	  LIST(struct listen_cfg, proxy_trusted, nproxy_trusted),
	  .check = check_network },
	/* Postfix's smtpd_upstream_proxy_timeout, and its default. */
	{ KEY("proxy_timeout", CFG_DURATION, "5s", 100, 5 * MIN_MS),
	  FIELD(struct listen_cfg, proxy_timeout_ms) },
	{ KEY("auth", CFG_STRING, "none", 0, 0), FIELD(struct listen_cfg, auth),
	  .check = cfg_check_auth_mode },
	{ KEY("auth_insecure", CFG_BOOL, "false", 0, 1),
	  FIELD(struct listen_cfg, auth_insecure) },
	{ .name = NULL },
};

static const struct cfg_key tls_pair_keys[] = {
	{ KEY("cert", CFG_STRING, NULL, 0, 0), FIELD(struct tls_pair_cfg, cert),
	  .check = cfg_check_path, .flags = CFG_REQUIRED },
	{ KEY("key", CFG_STRING, NULL, 0, 0), FIELD(struct tls_pair_cfg, key),
	  .check = cfg_check_path, .flags = CFG_REQUIRED },
	{ .name = NULL },
};

/* Loaded and matched by check_tls() once the whole file is read. */
static const struct cfg_key tls_keys[] = {
	{ KEY("cert", CFG_STRING, NULL, 0, 0), FIELD(struct tls_cfg, cert),
	  .check = cfg_check_path },
	{ KEY("key", CFG_STRING, NULL, 0, 0), FIELD(struct tls_cfg, key),
	  .check = cfg_check_path },
	{ KEY("extra", CFG_LIST_MAP, "[]", 0, TLS_CERTS_MAX - 1),
	  LIST(struct tls_cfg, extra, nextra), .sub = tls_pair_keys },
	{ .name = NULL },
};

/*
 * One route. Values are only stored here; build_routes() parses them with
 * the route module, so its syntax is not repeated in this file. preset
 * stays ahead of the CFG_POLICY keys: they are applied in table order.
 */
#define ROUTE_KEY(nm, fl) \
	{ KEY(#nm, CFG_STRING, NULL, 0, 0), FIELD(struct route_cfg, nm), \
	  .flags = (fl) }
static const struct cfg_key route_keys[] = {
	ROUTE_KEY(domain, CFG_REQUIRED),
	ROUTE_KEY(transport, CFG_REQUIRED),
	ROUTE_KEY(preset, 0),
	ROUTE_KEY(max_connections, CFG_POLICY),
	ROUTE_KEY(max_messages_per_connection, CFG_POLICY),
	ROUTE_KEY(max_rate, CFG_POLICY),
	ROUTE_KEY(retry, CFG_POLICY),
	ROUTE_KEY(max_age, CFG_POLICY),
	ROUTE_KEY(max_attempts, CFG_POLICY),
	ROUTE_KEY(tls, CFG_POLICY),
	ROUTE_KEY(tls_implicit, CFG_POLICY),
	ROUTE_KEY(tls_ca_file, CFG_POLICY),
	ROUTE_KEY(tls_name, CFG_POLICY),
	ROUTE_KEY(mta_sts, CFG_POLICY),
	ROUTE_KEY(auth_insecure, CFG_POLICY),
	{ KEY("auth", CFG_MAP, NULL, 0, 0),
	  .offset = offsetof(struct route_cfg, auth), .sub = auth_keys,
	  .check = check_auth_line },
	{ .name = NULL },
};
#undef ROUTE_KEY

static const struct cfg_key limits_keys[] = {
	/* Spool records carry 32-bit lengths: stay well inside them. */
	{ KEY("message_size", CFG_SIZE, "10M", 1024, CONFIG_MESSAGE_SIZE_MAX),
	  FIELD(struct limits_cfg, message_size) },
	/* The envelope counts recipients in 16 bits. */
	{ KEY("recipients", CFG_UINT, "1000", 1, CONFIG_RECIPIENTS_MAX),
	  FIELD(struct limits_cfg, recipients) },
	{ KEY("line_length", CFG_SIZE, "2048", 512, CONFIG_LINE_LENGTH_MAX),
	  FIELD(struct limits_cfg, line_length) },
	{ KEY("errors", CFG_UINT, "20", 1, 1000),
	  FIELD(struct limits_cfg, errors) },
	/* Postfix's hopcount_limit, and its default. */
	{ KEY("hops", CFG_UINT, "50", 1, 1000),
	  FIELD(struct limits_cfg, hops) },
	{ KEY("idle_timeout", CFG_DURATION, "300s", 100, HOUR_MS),
	  FIELD(struct limits_cfg, idle_timeout_ms) },
	/* Postfix's smtpd_timeout, applied to a whole command line. */
	{ KEY("command_timeout", CFG_DURATION, "300s", 100, HOUR_MS),
	  FIELD(struct limits_cfg, command_timeout_ms) },
	/* Postfix's smtpd_junk_command_limit, and its default. */
	{ KEY("junk_commands", CFG_UINT, "100", 1, 100000),
	  FIELD(struct limits_cfg, junk_commands) },
	{ KEY("connections", CFG_UINT, "1000", 1, CONFIG_CONNECTIONS_MAX),
	  FIELD(struct limits_cfg, connections) },
	{ KEY("connections_per_client", CFG_UINT, "100", 1,
	  CONFIG_CONNECTIONS_MAX),
	  FIELD(struct limits_cfg, connections_per_client) },
	/*
	 * At least message_size (check_limits()); not set: 512M, or
	 * message_size when that is more (resolve()).
	 */
	{ KEY("memory", CFG_SIZE, NULL, MiB, TiB),
	  FIELD(struct limits_cfg, memory) },
	/* Failed logins from one address before 421 (engine/auth.c). */
	{ KEY("auth_failures", CFG_UINT, "5", 1, 1000),
	  FIELD(struct limits_cfg, auth_failures) },
	{ KEY("auth_failure_window", CFG_DURATION, "15m", SEC_MS, 24 * HOUR_MS),
	  FIELD(struct limits_cfg, auth_failure_window_ms) },
	{ .name = NULL },
};

static const struct cfg_key queue_keys[] = {
	{ KEY("segment_size", CFG_SIZE, "64M", MiB, 4 * GiB),
	  FIELD(struct queue_cfg, segment_size) },
	{ KEY("index_size", CFG_SIZE, "4G", 16 * MiB, TiB),
	  FIELD(struct queue_cfg, index_size) },
	{ .name = NULL },
};

static int
check_log_level(const char *s, void *obj, char *why, size_t whylen)
{
	(void)obj;
	if (log_level_parse(s) < 0) {
		snprintf(why, whylen, "must be error, warn, info or debug");
		return -1;
	}
	return 0;
}

static int
check_log_format(const char *s, void *obj, char *why, size_t whylen)
{
	(void)obj;
	if (strcmp(s, "text") != 0 && strcmp(s, "json") != 0) {
		snprintf(why, whylen, "must be text or json");
		return -1;
	}
	return 0;
}

static const struct cfg_key log_keys[] = {
	{ KEY("level", CFG_STRING, "info", 0, 0), FIELD(struct log_cfg, level),
	  .check = check_log_level },
	{ KEY("format", CFG_STRING, "text", 0, 0),
	  FIELD(struct log_cfg, format), .check = check_log_format },
	{ .name = NULL },
};

static const struct cfg_key dns_keys[] = {
	{ KEY("resolver", CFG_STRING, NULL, 0, 0),
	  FIELD(struct dns_cfg, resolver), .check = check_resolver },
	{ KEY("timeout", CFG_DURATION, "2s", 100, 60000),
	  FIELD(struct dns_cfg, timeout_ms) },
	{ KEY("attempts", CFG_UINT, "3", 1, 10),
	  FIELD(struct dns_cfg, attempts) },
	{ KEY("dnssec", CFG_STRING, NULL, 0, 0),
	  FIELD(struct dns_cfg, dnssec), .check = check_dnssec },
	{ KEY("trust_anchor", CFG_STRING, NULL, 0, 0),
	  FIELD(struct dns_cfg, trust_anchor), .check = check_anchor },
	{ .name = NULL },
};

static const struct cfg_key delivery_keys[] = {
	{ KEY("paused", CFG_BOOL, "false", 0, 1),
	  FIELD(struct delivery_cfg, paused) },
	{ KEY("log", CFG_STRING, "delivery.log", 0, 0),
	  FIELD(struct delivery_cfg, log) },
	{ KEY("connect_timeout", CFG_DURATION, "30s", 100, HOUR_MS),
	  FIELD(struct delivery_cfg, connect_timeout_ms) },
	{ KEY("reply_timeout", CFG_DURATION, "300s", 100, HOUR_MS),
	  FIELD(struct delivery_cfg, reply_timeout_ms) },
	{ KEY("data_timeout", CFG_DURATION, "600s", 100, HOUR_MS),
	  FIELD(struct delivery_cfg, data_timeout_ms) },
	{ KEY("idle_keep", CFG_DURATION, "5s", 0, HOUR_MS),
	  FIELD(struct delivery_cfg, idle_keep_ms) },
	{ KEY("connections", CFG_UINT, "4096", 1, 1000000),
	  FIELD(struct delivery_cfg, connections) },
	{ KEY("connections_per_address", CFG_UINT, "32", 0, 1000000),
	  FIELD(struct delivery_cfg, connections_per_address) },
	{ KEY("active_messages", CFG_UINT, "100000", 1, 100000000),
	  FIELD(struct delivery_cfg, active_messages) },
	{ KEY("active_recipients", CFG_UINT, "200000", 1, 100000000),
	  FIELD(struct delivery_cfg, active_recipients) },
	{ KEY("destination_keep", CFG_DURATION, "60s", 100, HOUR_MS),
	  FIELD(struct delivery_cfg, destination_keep_ms) },
	{ KEY("bounce_wait", CFG_DURATION, "5m", 0, HOUR_MS),
	  FIELD(struct delivery_cfg, bounce_wait_ms) },
	{ KEY("chunking", CFG_BOOL, "true", 0, 1),
	  FIELD(struct delivery_cfg, chunking) },
	{ KEY("pipeline_depth", CFG_UINT, "2", 1, DELIVERY_PIPELINE_DEPTH_MAX),
	  FIELD(struct delivery_cfg, pipeline_depth) },
	{ KEY("spread", CFG_BOOL, "false", 0, 1),
	  FIELD(struct delivery_cfg, spread) },
	/* Postfix's smtp_tls_security_level, and its usual setting. */
	{ KEY("tls", CFG_STRING, "dane", 0, 0), FIELD(struct delivery_cfg, tls),
	  .check = check_delivery_tls },
	{ KEY("tls_ca_file", CFG_STRING, NULL, 0, 0),
	  FIELD(struct delivery_cfg, tls_ca_file), .check = check_ca_file },
	/* docs/configuration.md lists them; "::" needs quotes in YAML. */
	{ KEY("denied_networks", CFG_LIST_SCALAR, "[127.0.0.0/8, \"::1/128\", "
	  "0.0.0.0/8, \"::/128\", 169.254.0.0/16, \"fe80::/10\", 224.0.0.0/4, "
	  "\"ff00::/8\"]", 0, 1024),
	  LIST(struct delivery_cfg, denied_networks, ndenied_networks),
	  .check = check_network },
	{ .name = NULL },
};

/* MTA-STS for MX delivery: docs/tls.md. */
static const struct cfg_key mta_sts_keys[] = {
	{ KEY("enabled", CFG_BOOL, "true", 0, 1),
	  FIELD(struct mta_sts_cfg, enabled) },
	{ KEY("ca_file", CFG_STRING, NULL, 0, 0),
	  FIELD(struct mta_sts_cfg, ca_file), .check = check_ca_file },
	{ KEY("fetch_timeout", CFG_DURATION, "10s", 1000, 60000),
	  FIELD(struct mta_sts_cfg, fetch_timeout_ms) },
	{ KEY("wait", CFG_DURATION, "5s", 0, 60000),
	  FIELD(struct mta_sts_cfg, wait_ms) },
	{ .name = NULL },
};

/*
 * The "::1/128" default is quoted: in a YAML flow list a plain scalar may
 * not start with ':'.
 */
const struct cfg_key config_keys[] = {
	{ KEY("hostname", CFG_STRING, NULL, 0, 0), FIELD(struct config, hostname),
	  .check = check_hostname },
	{ KEY("spool", CFG_STRING, "./var/spool", 0, 0), FIELD(struct config, spool),
	  .check = cfg_check_path },
	{ KEY("user", CFG_STRING, "sluice", 0, 0), FIELD(struct config, user),
	  .check = check_user },
	{ KEY("shards", CFG_UINT, "0", 0, CONFIG_SHARDS_MAX),
	  FIELD(struct config, shards) },
	{ KEY("listen", CFG_LIST_MAP, "[{address: \"127.0.0.1:2525\"}]", 1,
	  DELIVER_LISTEN_MAX),
	  LIST(struct config, listen, nlisten), .sub = listen_keys },
	{ KEY("allowed_networks", CFG_LIST_SCALAR, "[127.0.0.0/8, \"::1/128\"]", 0, 1024),
	  LIST(struct config, allowed_networks, nallowed_networks),
	  .check = check_network },
	{ KEY("relay_domains", CFG_LIST_SCALAR, "[]", 0, 1024),
	  LIST(struct config, relay_domains, nrelay_domains),
	  .check = cfg_check_domain_pattern },
	{ KEY("users", CFG_LIST_MAP, "[]", 0, CONFIG_USERS_MAX),
	  LIST(struct config, users, nusers), .sub = config_user_keys },
	{ KEY("users_file", CFG_STRING, NULL, 0, 0),
	  FIELD(struct config, users_file), .check = cfg_check_path },
	{ KEY("sender_restrictions", CFG_STRING, "none", 0, 0),
	  FIELD(struct config, sender_restrictions),
	  .check = cfg_check_sender_rule },
	{ KEY("limits", CFG_MAP, NULL, 0, 0), .offset = offsetof(struct config, limits),
	  .sub = limits_keys },
	{ KEY("queue", CFG_MAP, NULL, 0, 0), .offset = offsetof(struct config, queue),
	  .sub = queue_keys },
	{ KEY("tls", CFG_MAP, NULL, 0, 0), .offset = offsetof(struct config, tls),
	  .sub = tls_keys },
	{ KEY("shutdown_timeout", CFG_DURATION, "30s", 0, HOUR_MS),
	  FIELD(struct config, shutdown_timeout_ms) },
	{ KEY("routes", CFG_LIST_MAP, "[]", 0, CONFIG_ROUTES_MAX),
	  LIST(struct config, route_cfgs, nroute_cfgs), .sub = route_keys },
	{ KEY("relay_host", CFG_STRING, NULL, 0, 0),
	  FIELD(struct config, relay_host) },
	{ KEY("relay_tls", CFG_STRING, NULL, 0, 0),
	  FIELD(struct config, relay_tls), .check = check_relay_tls },
	{ KEY("relay_auth", CFG_MAP, NULL, 0, 0),
	  .offset = offsetof(struct config, relay_auth), .sub = auth_keys,
	  .check = check_auth_line },
	{ KEY("dev_redirect", CFG_STRING, NULL, 0, 0),
	  FIELD(struct config, dev_redirect), .check = check_mailbox },
	{ KEY("dns", CFG_MAP, NULL, 0, 0), .offset = offsetof(struct config, dns),
	  .sub = dns_keys },
	{ KEY("log", CFG_MAP, NULL, 0, 0), .offset = offsetof(struct config, log),
	  .sub = log_keys },
	{ KEY("delivery", CFG_MAP, NULL, 0, 0),
	  .offset = offsetof(struct config, delivery), .sub = delivery_keys },
	{ KEY("mta_sts", CFG_MAP, NULL, 0, 0),
	  .offset = offsetof(struct config, mta_sts), .sub = mta_sts_keys },
	{ KEY("dkim", CFG_LIST_MAP, "[]", 0, CONFIG_DKIM_MAX),
	  LIST(struct config, dkim, ndkim), .sub = config_dkim_keys },
	{ KEY("dkim_signing", CFG_MAP, NULL, 0, 0),
	  .offset = offsetof(struct config, dkim_signing),
	  .sub = config_dkim_signing_keys },
	{ KEY("metrics", CFG_MAP, NULL, 0, 0),
	  .offset = offsetof(struct config, metrics),
	  .sub = config_metrics_keys },
	{ .name = NULL },
};

/* ------------------------------------------------------------------ */
/* Checks                                                              */
/* ------------------------------------------------------------------ */

/* Used in the SMTP greeting and EHLO: printable ASCII, no spaces. */
static int
check_hostname(const char *s, void *obj, char *why, size_t whylen)
{
	const unsigned char *p;

	(void)obj;
	if (s[0] == '\0') {
		snprintf(why, whylen, "must not be empty");
		return -1;
	}
	if (strlen(s) > 253) {
		snprintf(why, whylen, "must be at most 253 characters");
		return -1;
	}
	for (p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p <= ' ' || *p >= 0x7f) {
			snprintf(why, whylen, "must not contain spaces, control "
			    "characters or non-ASCII bytes");
			return -1;
		}
	}
	return 0;
}

/*
 * A mailbox to send mail to: local@domain, both parts non-empty, no
 * spaces or control characters (the SMTP client writes it into RCPT TO
 * as it is). A bare "root" would be sent nowhere useful: say so here.
 */
static int
check_mailbox(const char *s, void *obj, char *why, size_t whylen)
{
	const char *at = strrchr(s, '@');

	(void)obj;
	if (at == NULL || at == s || at[1] == '\0') {
		snprintf(why, whylen, "must be an address with a domain, "
		    "like user@example.org");
		return -1;
	}
	if (strlen(s) > 254) {
		snprintf(why, whylen, "must be at most 254 characters");
		return -1;
	}
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p <= ' ' || *p == 0x7f || *p == '<' || *p == '>') {
			snprintf(why, whylen, "must not contain spaces, "
			    "control characters or angle brackets");
			return -1;
		}
	}
	return 0;
}

/*
 * A user name as useradd(8) takes it: letters, digits, '_', '.', '-', not
 * starting with '-', at most 32. Whether it exists is for the daemon to
 * find out at start (engine/privs.c): the machine that checks a file may
 * not be the one that runs it.
 */
static int
check_user(const char *s, void *obj, char *why, size_t whylen)
{
	size_t n = strlen(s), i;

	(void)obj;
	if (n == 0 || n > 32 || s[0] == '-') {
		snprintf(why, whylen, "invalid user name '%.*s' (1 to 32 "
		    "characters, not starting with '-')", CONFIG_QUOTE_MAX, s);
		return -1;
	}
	for (i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '_' || c == '.' ||
		    c == '-')) {
			snprintf(why, whylen, "invalid user name '%.*s' "
			    "(letters, digits, '_', '.' and '-' only)",
			    CONFIG_QUOTE_MAX, s);
			return -1;
		}
	}
	return 0;
}

int
cfg_check_path(const char *s, void *obj, char *why, size_t whylen)
{
	(void)obj;
	if (s[0] == '\0') {
		snprintf(why, whylen, "must not be empty");
		return -1;
	}
	if (strlen(s) >= PATH_MAX) {
		snprintf(why, whylen, "path is longer than %d bytes", PATH_MAX - 1);
		return -1;
	}
	return 0;
}

/* dns.dnssec: fills dnssec_mode of the dns_cfg next to the string. */
static int
check_dnssec(const char *s, void *obj, char *why, size_t whylen)
{
	struct dns_cfg *dc = obj;
	int m;

	if ((m = resolver_dnssec_parse(s)) < 0) {
		snprintf(why, whylen, "bad dnssec '%.*s': want off, trust-ad "
		    "or validate", CONFIG_QUOTE_MAX, s);
		return -1;
	}
	dc->dnssec_mode = (uint32_t)m;
	return 0;
}

/* dns.trust_anchor: DS or DNSKEY records that load. */
static int
check_anchor(const char *s, void *obj, char *why, size_t whylen)
{
	(void)obj;
	return resolver_anchor_check(s, why, whylen);
}

/* dns.resolver: what the resolver itself accepts. */
static int
check_resolver(const char *s, void *obj, char *why, size_t whylen)
{
	struct resolver_cfg rc;

	(void)obj;
	if (s[0] == '\0' || resolver_cfg_server(&rc, s, NULL, why, whylen) != 0) {
		if (s[0] == '\0')
			snprintf(why, whylen, "must not be empty (leave it out "
			    "for /etc/resolv.conf)");
		return -1;
	}
	return 0;
}

/*
 * The one-line form of auth, "user:password" (the password may hold ':').
 * Never quotes the value: it holds a password.
 */
static int
check_auth_line(const char *s, void *obj, char *why, size_t whylen)
{
	struct auth_cfg *a = obj;
	const char *colon = strchr(s, ':');

	if (colon == NULL || colon == s || colon[1] == '\0') {
		snprintf(why, whylen, "bad auth: want 'user:password' or a map "
		    "{user: NAME, password_file: PATH}");
		return -1;
	}
	free(a->user);
	free(a->password);
	a->user = strndup(s, (size_t)(colon - s));
	a->password = strdup(colon + 1);
	if (a->user == NULL || a->password == NULL) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	return 0;
}

/* delivery.tls: a level, kept as its enum route_tls value too. */
static int
check_delivery_tls(const char *s, void *obj, char *why, size_t whylen)
{
	struct delivery_cfg *dc = obj;
	int lvl = route_tls_parse(s);

	if (lvl < 0) {
		snprintf(why, whylen, "bad tls '%.*s': want none, may, "
		    "encrypt, verify, dane or dane-only", CONFIG_QUOTE_MAX, s);
		return -1;
	}
	dc->tls_level = (uint32_t)lvl;
	return 0;
}

/* relay_tls: what a route's tls takes. */
static int
check_relay_tls(const char *s, void *obj, char *why, size_t whylen)
{
	struct route_policy p = route_policy_defaults();

	(void)obj;
	return route_policy_set(&p, "tls", s, why, whylen) == 0 ? 0 : -1;
}

/*
 * A CA file must load now: delivery would otherwise find out at its
 * first verified connection (and read the disk on a shard to do it).
 */
static int
check_ca_file(const char *s, void *obj, char *why, size_t whylen)
{
	struct tls_client_cfg tc = { .verify = true, .cafile = s };
	struct tls_ctx *ctx;

	(void)obj;
	if (cfg_check_path(s, NULL, why, whylen) < 0)
		return -1;
	if ((ctx = tls_ctx_client(&tc, why, whylen)) == NULL)
		return -1;
	tls_ctx_free(ctx);
	return 0;
}

/* Fills sa/salen of the listen_cfg next to the address string. */
static int
check_address(const char *s, void *obj, char *why, size_t whylen)
{
	struct listen_cfg *l = obj;

	if (address_parse(s, &l->sa, &l->salen) < 0) {
		snprintf(why, whylen, "invalid address '%.*s' (expected "
		    "IPv4:port or [IPv6]:port, numeric)", CONFIG_QUOTE_MAX, s);
		return -1;
	}
	return 0;
}

/* listen.N.tls: fills policy.tls of the listen_cfg next to the string. */
static int
check_tls_mode(const char *s, void *obj, char *why, size_t whylen)
{
	static const struct {
		const char *name;
		enum smtp_tls_mode mode;
	} modes[] = {
		{ "none", SMTP_TLS_NONE },
		{ "starttls", SMTP_TLS_STARTTLS },
		{ "required", SMTP_TLS_REQUIRED },
		{ "implicit", SMTP_TLS_IMPLICIT },
	};
	struct listen_cfg *l = obj;

	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		if (strcmp(s, modes[i].name) == 0) {
			l->policy.tls = modes[i].mode;
			return 0;
		}
	}
	snprintf(why, whylen, "invalid TLS mode '%.*s' (expected none, "
	    "starttls, required or implicit)", CONFIG_QUOTE_MAX, s);
	return -1;
}

static int
check_network(const char *s, void *obj, char *why, size_t whylen)
{
	const char *reason = cidr_parse_why(s, obj);

	if (reason != NULL) {
		snprintf(why, whylen, "invalid network '%.*s': %s",
		    CONFIG_QUOTE_MAX, s, reason);
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Routes: struct route_cfg -> struct route_table                      */
/* ------------------------------------------------------------------ */

/* A route module error about the value of item.name (which was stored). */
static void
route_error(struct loader *ld, const struct cnode *item, size_t idx,
    const char *name, const char *why)
{
	const struct cnode *v = cnode_map_value(item, name);
	char path[CONFIG_PATH_MAX];

	assert(v != NULL);
	cfg_path_index(path, sizeof path, "routes", idx);
	cfg_path_append(path, sizeof path, name, strlen(name));
	cfg_error(ld, v->origin, v->line, path, "%s", why);
}

/*
 * A password file: one line (a final newline is not part of it), a
 * regular file nobody but its owner may read or write, as ssh asks of a
 * private key; the secret never appears in a message.
 */
static int
read_password_file(const char *path, char *out, size_t cap, char *why,
    size_t whylen)
{
	size_t len;
	char *buf = secret_read(path, "password file", SECRET_OWNER_ONLY,
	    cap - 1, &len, why, whylen);

	if (buf == NULL)
		return -1;
	memcpy(out, buf, len + 1);
	secret_free(buf, len);
	if (len > 0 && out[len - 1] == '\n')
		out[--len] = '\0';
	if (len > 0 && out[len - 1] == '\r')
		out[--len] = '\0';
	if (len == 0 || len > ROUTE_AUTH_MAX || strlen(out) != len ||
	    strpbrk(out, "\r\n") != NULL) {
		snprintf(why, whylen, "password file %s must hold one line of "
		    "1 to %d bytes", path, ROUTE_AUTH_MAX);
		explicit_bzero(out, cap);
		return -1;
	}
	return 0;
}

/*
 * Credentials a (written at node, under path) into pol. Every error is
 * reported at the line of the key it is about; false if there was one.
 */
static bool
apply_auth(struct loader *ld, const struct cnode *node, const char *path,
    const struct auth_cfg *a, struct route_policy *pol)
{
	char pw[ROUTE_AUTH_MAX + 3], why[CONFIG_WHY_MAX], kpath[CONFIG_PATH_MAX];
	const struct cnode *at = node;
	int rv;

	if (a->user == NULL && a->password == NULL && a->password_file == NULL)
		return true;
	if (a->user == NULL ||
	    (a->password == NULL) == (a->password_file == NULL)) {
		cfg_error(ld, node->origin, node->line, path, "auth needs a "
		    "user and one of password_file and password");
		return false;
	}
	if (a->password_file != NULL) {
		if (node->kind == CNODE_MAP && cnode_map_value(node,
		    "password_file") != NULL)
			at = cnode_map_value(node, "password_file");
		cfg_path_child(kpath, sizeof kpath, path, "password_file");
		if (read_password_file(a->password_file, pw, sizeof pw, why,
		    sizeof why) < 0) {
			cfg_error(ld, at->origin, at->line, kpath, "%s", why);
			return false;
		}
	} else {
		snprintf(pw, sizeof pw, "%s", a->password);
	}
	rv = route_policy_auth(pol, a->user, pw, why, sizeof why);
	explicit_bzero(pw, sizeof pw);
	if (rv != 0) {
		cfg_error(ld, node->origin, node->line, path, "%s", why);
		return false;
	}
	return true;
}

/*
 * The route's keys together (route_policy_check()), with the tls level
 * delivery.tls gives a route that sets none; a tls_ca_file must load.
 */
static bool
check_policy(struct loader *ld, const struct config *cfg,
    const struct cnode *at, const char *path, const struct route_policy *pol,
    const struct route_transport *tr)
{
	struct route_policy eff = *pol;
	char why[CONFIG_WHY_MAX];

	if (eff.tls == ROUTE_TLS_DEFAULT && !eff.tls_implicit)
		eff.tls = (uint8_t)cfg->delivery.tls_level;
	if (route_policy_check(&eff, tr, why, sizeof why) != 0 ||
	    (pol->tls_ca_file[0] != '\0' &&
	    check_ca_file(pol->tls_ca_file, NULL, why, sizeof why) < 0)) {
		cfg_error(ld, at->origin, at->line, path, "%s", why);
		return false;
	}
	return true;
}

/*
 * Parse route i and add it to cfg->routes. Every bad value is reported;
 * the route is added only when all of them are good, so that a duplicate
 * is only ever reported against a route that would otherwise load.
 */
static void
build_route(struct loader *ld, struct config *cfg, const struct cnode *item,
    size_t i)
{
	const struct route_cfg *rc = &cfg->route_cfgs[i];
	struct route_policy pol = route_policy_defaults();
	struct route_transport tr;
	char why[CONFIG_WHY_MAX], path[CONFIG_PATH_MAX], kpath[CONFIG_PATH_MAX];
	const struct cfg_key *k;
	bool ok = true;
	int rv;

	/* A missing or mistyped domain or transport is reported already. */
	if (rc->domain == NULL || rc->transport == NULL)
		return;
	if (route_parse_transport(rc->transport, &tr, why, sizeof why) != 0) {
		route_error(ld, item, i, "transport", why);
		ok = false;
	}
	if (rc->preset != NULL &&
	    route_policy_preset(&pol, rc->preset, why, sizeof why) != 0) {
		route_error(ld, item, i, "preset", why);
		ok = false;
	}
	for (k = route_keys; k->name != NULL; k++) {
		char *val;

		if (!(k->flags & CFG_POLICY))
			continue;
		memcpy(&val, (const char *)rc + k->offset, sizeof val);
		if (val != NULL &&
		    route_policy_set(&pol, k->name, val, why, sizeof why) != 0) {
			route_error(ld, item, i, k->name, why);
			ok = false;
		}
	}
	cfg_path_index(path, sizeof path, "routes", i);
	if (cnode_map_value(item, "auth") != NULL) {
		cfg_path_child(kpath, sizeof kpath, path, "auth");
		ok = apply_auth(ld, cnode_map_value(item, "auth"), kpath,
		    &rc->auth, &pol) && ok;
	}
	if (ok && !check_policy(ld, cfg, cnode_map_value(item, "tls") ?
	    cnode_map_value(item, "tls") : item, path, &pol, &tr))
		ok = false;
	if (!ok)
		return;
	rv = route_table_add(&cfg->routes, rc->domain, &tr, &pol, why,
	    sizeof why);
	if (rv == ROUTE_ENOMEM)
		ld->oom = true;
	else if (rv != 0)
		route_error(ld, item, i, "domain", why);
}

/* relay_tls and relay_auth: the policy of the "*" route relay_host made. */
static void
relay_policy(struct loader *ld, const struct config *cfg,
    const struct cnode *root, struct route *r)
{
	struct route_policy pol = r->policy;
	const struct cnode *at = cnode_map_value(root, "relay_host");
	char why[CONFIG_WHY_MAX];

	if (cfg->relay_tls != NULL) {
		at = cnode_map_value(root, "relay_tls");
		/* Checked already (check_relay_tls()). */
		if (route_policy_set(&pol, "tls", cfg->relay_tls, why,
		    sizeof why) != 0)
			return;
	}
	if (cnode_map_value(root, "relay_auth") != NULL &&
	    !apply_auth(ld, cnode_map_value(root, "relay_auth"), "relay_auth",
	    &cfg->relay_auth, &pol))
		return;
	if (check_policy(ld, cfg, at, cfg->relay_tls ? "relay_tls" :
	    "relay_host", &pol, &r->transport))
		r->policy = pol;
}

/*
 * Fill cfg->routes from the validated "routes" entries, then relay_host.
 * root is the tree they came from: it has the lines for the messages.
 */
static void
build_routes(struct loader *ld, struct config *cfg, const struct cnode *root)
{
	const struct cnode *list = cnode_map_value(root, "routes"), *v;
	char why[CONFIG_WHY_MAX], loc[CONFIG_PATH_MAX];
	size_t i, wild = SIZE_MAX;
	int rv;

	/* Stored entries exist only when the list itself was valid. */
	assert(cfg->nroute_cfgs == 0 ||
	    (list != NULL && list->kind == CNODE_LIST &&
	    list->n == cfg->nroute_cfgs));
	for (i = 0; i < cfg->nroute_cfgs; i++) {
		const struct route *before = cfg->routes.wildcard;

		if (list->kids[i] == NULL || list->kids[i]->kind != CNODE_MAP)
			continue;
		build_route(ld, cfg, list->kids[i], i);
		if (before == NULL && cfg->routes.wildcard != NULL)
			wild = i;
	}
	if (cfg->relay_host == NULL) {
		if ((v = cnode_map_value(root, "relay_tls")) != NULL ||
		    (v = cnode_map_value(root, "relay_auth")) != NULL)
			cfg_error(ld, v->origin, v->line, cfg->relay_tls ?
			    "relay_tls" : "relay_auth", "only with relay_host "
			    "(for a route, use its own tls and auth keys)");
		return;
	}
	v = cnode_map_value(root, "relay_host");
	assert(v != NULL);
	rv = route_relay_host(&cfg->routes, cfg->relay_host, why, sizeof why);
	if (rv == ROUTE_ENOMEM) {
		ld->oom = true;
	} else if (rv == ROUTE_EDUP && wild != SIZE_MAX) {
		cnode_where(cnode_map_value(list->kids[wild], "domain"), loc,
		    sizeof loc);
		cfg_error(ld, v->origin, v->line, "relay_host",
		    "%s (routes.%zu.domain at %s)", why, wild, loc);
	} else if (rv != 0) {
		cfg_error(ld, v->origin, v->line, "relay_host", "%s", why);
	} else {
		relay_policy(ld, cfg, root, cfg->routes.wildcard);
	}
}

/* Limits that must agree with each other. */
static void
check_limits(struct loader *ld, struct config *cfg, const struct cnode *root)
{
	const struct cnode *v = cnode_map_value(cnode_map_value(root, "limits"),
	    "memory");
	char mem[32], size[32];

	/* Not set (0 until resolve()): it follows message_size. */
	if (cfg->limits.memory == 0 ||
	    cfg->limits.memory >= cfg->limits.message_size)
		return;
	assert(v != NULL);
	cfg_fmt_value(CFG_SIZE, cfg->limits.memory, mem, sizeof mem);
	cfg_fmt_value(CFG_SIZE, cfg->limits.message_size, size, sizeof size);
	cfg_error(ld, v->origin, v->line, "limits.memory", "%s is below "
	    "limits.message_size (%s): no message that large could ever be "
	    "taken", mem, size);
}

/*
 * One certificate and key pair: both given, both readable, and the key
 * the certificate's. Reported at the line of the certificate (or of
 * whichever of the two was given). at: the map that holds them.
 */
static void
check_tls_pair(struct loader *ld, const struct cnode *at, const char *path,
    const char *cert, const char *key)
{
	const struct cnode *vc = cnode_map_value(at, "cert");
	const struct cnode *vk = cnode_map_value(at, "key");
	const struct cnode *v = vc != NULL ? vc : vk;
	char why[CONFIG_WHY_MAX + PATH_MAX], p[CONFIG_PATH_MAX];

	if (cert == NULL && key == NULL)
		return;
	assert(v != NULL);
	if (cert == NULL || key == NULL) {
		cfg_path_child(p, sizeof p, path, cert == NULL ? "cert" : "key");
		cfg_error(ld, v->origin, v->line, p, "required with %s.%s",
		    path, cert == NULL ? "key" : "cert");
		return;
	}
	if (tls_check_pair(cert, key, why, sizeof why) < 0) {
		cfg_path_child(p, sizeof p, path, "cert");
		cfg_error(ld, v->origin, v->line, p, "%s", why);
	}
}

/* tls.cert, tls.key and tls.extra: each pair loads and matches. */
static void
check_tls(struct loader *ld, struct config *cfg, const struct cnode *root)
{
	const struct cnode *tls = cnode_map_value(root, "tls");
	const struct cnode *extra = cnode_map_value(tls, "extra");
	char path[CONFIG_PATH_MAX];

	check_tls_pair(ld, tls, "tls", cfg->tls.cert, cfg->tls.key);
	if (cfg->tls.nextra > 0 && cfg->tls.cert == NULL) {
		cfg_error(ld, extra->origin, extra->line, "tls.extra", "needs "
		    "tls.cert and tls.key too");
		return;
	}
	for (size_t i = 0; i < cfg->tls.nextra; i++) {
		cfg_path_index(path, sizeof path, "tls.extra", i);
		check_tls_pair(ld, extra->kids[i], path, cfg->tls.extra[i].cert,
		    cfg->tls.extra[i].key);
	}
}

/*
 * A PROXY protocol listener trusts the header's address only from the
 * load balancers it names: with none named it could trust nobody, or
 * (worse, if read as "anybody") let any client choose its own address.
 */
static void
check_listeners(struct loader *ld, struct config *cfg, const struct cnode *root)
{
	const struct cnode *list = cnode_map_value(root, "listen");
	char path[CONFIG_PATH_MAX];

	for (size_t i = 0; i < cfg->nlisten; i++) {
		const struct listen_cfg *l = &cfg->listen[i];
		const struct cnode *item = NULL, *v;

		if (list != NULL && list->kind == CNODE_LIST && i < list->n)
			item = list->kids[i];
		/*
		 * Two listeners on one address would both bind it (each
		 * shard's socket has SO_REUSEPORT) and split its clients
		 * between two policies: an error, not a surprise.
		 */
		for (size_t j = 0; j < i && l->salen > 0; j++) {
			if (l->salen != cfg->listen[j].salen || memcmp(&l->sa,
			    &cfg->listen[j].sa, l->salen) != 0)
				continue;
			v = item != NULL ? item : list != NULL ? list : root;
			cfg_path_index(path, sizeof path, "listen", i);
			cfg_path_append(path, sizeof path, "address",
			    strlen("address"));
			cfg_error(ld, v->origin, v->line, path, "'%s' is "
			    "listen.%zu's address too", l->address, j);
			break;
		}
		if (!l->proxy_protocol || l->nproxy_trusted > 0)
			continue;
		/* Only a value written somewhere turns it on: say where. */
		v = cnode_map_value(item, "proxy_protocol");
		if (v == NULL)
			v = item != NULL ? item : list != NULL ? list : root;
		cfg_path_index(path, sizeof path, "listen", i);
		cfg_path_append(path, sizeof path, "proxy_trusted",
		    strlen("proxy_trusted"));
		cfg_error(ld, v->origin, v->line, path, "must list the load "
		    "balancers' networks (CIDR) when proxy_protocol is true");
	}
}

/* Values whose default depends on the machine. */
static void
resolve(struct loader *ld, struct config *cfg, const struct corigin *fo)
{
	char host[256], why[CONFIG_WHY_MAX];
	long ncpu;

	if (cfg->hostname == NULL) {
		if (gethostname(host, sizeof host) < 0) {
			cfg_error(ld, fo, 0, "hostname", "cannot get the system "
			    "host name: %s; set hostname", strerror(errno));
		} else {
			host[sizeof host - 1] = '\0';
			if (check_hostname(host, NULL, why, sizeof why) < 0)
				cfg_error(ld, fo, 0, "hostname", "system host name "
				    "'%.*s' %s; set hostname", CONFIG_QUOTE_MAX,
				    host, why);
			else
				cfg->hostname = cfg_str_dup(ld, host, strlen(host));
		}
	}
	if (cfg->limits.memory == 0)
		cfg->limits.memory = cfg->limits.message_size > 512 * MiB ?
		    cfg->limits.message_size : 512 * MiB;
	if (cfg->shards == 0) {
		ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		if (ncpu < 1)
			ncpu = 1;
		if (ncpu > CONFIG_SHARDS_MAX)
			ncpu = CONFIG_SHARDS_MAX;
		cfg->shards = (uint32_t)ncpu;
	}
}

/* ------------------------------------------------------------------ */
/* Public API                                                          */
/* ------------------------------------------------------------------ */

/* config_load(), and when print is not NULL, the result printed to it. */
static int
load(struct config *cfg, const char *path, char *const *overrides,
    size_t noverrides, char *const *envp, struct config_errors *errs,
    FILE *print, bool print_all)
{
	struct loader ld;
	struct corigin *fo, *o;
	struct cnode *root = NULL;
	const char *name = path != NULL ? path : DEFAULT_SOURCE;
	const char *text = config_default_yaml;
	char *buf = NULL;
	size_t len = strlen(config_default_yaml);
	int n;

	assert(cfg != NULL);
	assert(noverrides == 0 || overrides != NULL);
	memset(cfg, 0, sizeof *cfg);
	memset(&ld, 0, sizeof ld);
	ld.def_origin.label = "(default)";
	ld.def_origin.rank = UINT_MAX;

	fo = cfg_origin_new(&ld, cfg_str_fmt("%s", name), NULL, true);
	if (fo == NULL)
		goto finish;
	if (path != NULL) {
		if (cfg_read_file(&ld, fo, path, &buf, &len) < 0)
			goto finish;
		text = buf;
	}
	if (cfg_yaml_to_tree(&ld, fo, NULL, text, len, false, &root) != YT_OK)
		goto finish;
	if (root != NULL && !cnode_is_null(root) && root->kind != CNODE_MAP)
		cfg_error(&ld, fo, root->line, NULL,
		    "the configuration must be a map of keys, got %s",
		    cnode_kind_name(root));
	if (root == NULL || root->kind != CNODE_MAP) {
		/* Go on with an empty map so overrides are still checked. */
		cnode_free(root);
		root = cnode_new(&ld, CNODE_MAP, fo, 1);
		if (root == NULL)
			goto finish;
	}

	cfg_apply_environment(&ld, root, envp);
	cfg_apply_options(&ld, root, overrides, noverrides);
	if (ld.oom)
		goto finish;
	validate_map(&ld, config_keys, root, "", cfg);
	if (!ld.oom)
		build_routes(&ld, cfg, root);
	if (!ld.oom)
		cfg_auth_finish(&ld, cfg, root);
	if (ld.nfail == 0 && !ld.oom)
		check_limits(&ld, cfg, root);
	/* Safe on a partial load: a listener that failed is all zero. */
	if (!ld.oom)
		check_listeners(&ld, cfg, root);
	if (ld.nfail == 0 && !ld.oom)
		check_tls(&ld, cfg, root);
	if (!ld.oom)
		cfg_dkim_build(&ld, cfg, root);
	if (ld.nfail == 0 && !ld.oom)
		resolve(&ld, cfg, fo);
	cfg->source = cfg_str_dup(&ld, name, strlen(name));
	if (print != NULL && ld.nfail == 0 && !ld.oom)
		cfg_print_tree(print, root, cfg, path == NULL ? fo : NULL,
		    print_all);
finish:
	n = cfg_flush_errors(&ld, errs);
	cnode_free(root);
	free(buf);
	while ((o = ld.origins) != NULL) {
		ld.origins = o->next;
		free(o->label);
		free(o->path);
		free(o);
	}
	if (n > 0)
		config_free(cfg);
	return n;
}

int
config_load(struct config *cfg, const char *path, char *const *overrides,
    size_t noverrides, char *const *envp, struct config_errors *errs)
{
	return load(cfg, path, overrides, noverrides, envp, errs, NULL, false);
}

int
config_print(const char *path, char *const *overrides, size_t noverrides,
    char *const *envp, bool all, FILE *out, FILE *err)
{
	struct config_errors errs = { 0 };
	struct config cfg;
	int n;

	n = load(&cfg, path, overrides, noverrides, envp, &errs, out, all);
	for (size_t i = 0; i < errs.n; i++)
		fprintf(err, "%s\n", errs.msg[i]);
	config_errors_free(&errs);
	if (n == 0)
		config_free(&cfg);
	return n;
}

void
config_free(struct config *cfg)
{
	if (cfg == NULL)
		return;
	dkim_policy_free(&cfg->dkim_policy);
	for (size_t i = 0; i < cfg->ndkim; i++) {
		dkim_key_free(cfg->dkim[i].loaded);
		cfg->dkim[i].loaded = NULL;
	}
	free_table(config_keys, cfg);
	route_table_free(&cfg->routes);
	free(cfg->source);
	memset(cfg, 0, sizeof *cfg);
}

void
config_errors_free(struct config_errors *errs)
{
	size_t i;

	if (errs == NULL)
		return;
	for (i = 0; i < errs->n; i++)
		free(errs->msg[i]);
	free(errs->msg);
	errs->msg = NULL;
	errs->n = 0;
}

void
config_deliver_cfg(const struct config *cfg, struct deliver_cfg *out)
{
	*out = (struct deliver_cfg){
		.hostname = cfg->hostname,
		.spool = cfg->spool,
		.dev_redirect = cfg->dev_redirect,
		.routes = &cfg->routes,
		.dns = &cfg->dns,
		.delivery = &cfg->delivery,
		.mta_sts = &cfg->mta_sts,
	};
	assert(cfg->nlisten <= DELIVER_LISTEN_MAX);
	for (size_t i = 0; i < cfg->nlisten; i++)
		out->listen[out->nlisten++] = cfg->listen[i].sa;
}

int
config_load_report(struct config *cfg, const char *path,
    char *const *overrides, size_t noverrides, char *const *envp, FILE *err)
{
	struct config_errors errs = { 0 };
	size_t i;
	int n;

	n = config_load(cfg, path, overrides, noverrides, envp, &errs);
	for (i = 0; i < errs.n; i++)
		fprintf(err, "%s\n", errs.msg[i]);
	config_errors_free(&errs);
	return n;
}
