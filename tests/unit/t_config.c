/*
 * Description: config_load() turns YAML, SLUICE_* environment variables and
 * -o overrides into struct config, or into a complete, ordered list of
 * "FILE:LINE: path: message" errors; cidr_parse(), cidr_match() and
 * address_parse() accept and reject exactly what config.h promises.
 *
 * Fixtures are written to temporary files (mkstemp) so that the expected
 * errors can name the file; "@" in an expected message stands for it.
 * Exit 0: all cases passed; 1: some failed.
 */
#ifndef _GNU_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "config_check.h"
#include "../../engine/config.h"

#define MAX_ERRS	24

static uint16_t
sa_port(const struct sockaddr_storage *sa)
{
	if (sa->ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)sa)->sin_port);
	return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
}

/* docs/configuration.md, delivery.denied_networks: the same list. */
static void
check_denied_defaults(const struct delivery_cfg *dc)
{
	static const char *const want[] = {
		"127.0.0.0/8", "::1/128", "0.0.0.0/8", "::/128",
		"169.254.0.0/16", "fe80::/10", "224.0.0.0/4", "ff00::/8",
	};
	struct cidr c;

	CHECK_FATAL(dc->ndenied_networks == NELEM(want));
	for (size_t i = 0; i < NELEM(want); i++) {
		CHECK(cidr_parse(want[i], &c) == 0);
		CHECK(memcmp(&dc->denied_networks[i], &c, sizeof c) == 0);
	}
}

static void
check_defaults(const struct config *cfg)
{
	char host[256];
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	const struct sockaddr_in *sin;
	struct cidr lo6;

	CHECK_FATAL(gethostname(host, sizeof host) == 0);
	host[sizeof host - 1] = '\0';
	CHECK(cfg->hostname != NULL && strcmp(cfg->hostname, host) == 0);
	CHECK(strcmp(cfg->spool, "./var/spool") == 0);
	if (ncpu < 1)
		ncpu = 1;
	if (ncpu > 64)
		ncpu = 64;
	CHECK(cfg->shards == (uint32_t)ncpu);
	CHECK_FATAL(cfg->nlisten == 1);
	CHECK(strcmp(cfg->listen[0].address, "127.0.0.1:2525") == 0);
	sin = (const struct sockaddr_in *)&cfg->listen[0].sa;
	CHECK(cfg->listen[0].salen == sizeof(struct sockaddr_in));
	CHECK(sin->sin_family == AF_INET);
	CHECK(ntohs(sin->sin_port) == 2525);
	CHECK(ntohl(sin->sin_addr.s_addr) == 0x7f000001);
	CHECK_FATAL(cfg->nallowed_networks == 2);
	CHECK(cfg->allowed_networks[0].family == AF_INET);
	CHECK(cfg->allowed_networks[0].prefix == 8);
	CHECK(cfg->allowed_networks[0].addr[0] == 127);
	CHECK(cidr_parse("::1/128", &lo6) == 0);
	CHECK(memcmp(&cfg->allowed_networks[1], &lo6, sizeof lo6) == 0);
	CHECK(cfg->limits.message_size == 10485760);
	CHECK(cfg->limits.recipients == 1000);
	CHECK(cfg->limits.line_length == 2048);
	CHECK(cfg->limits.errors == 20);
	CHECK(cfg->limits.idle_timeout_ms == 300000);
	CHECK(cfg->limits.connections == 1000);
	CHECK(cfg->limits.connections_per_client == 100);
	CHECK(cfg->queue.segment_size == 64ULL << 20);
	CHECK(cfg->queue.index_size == 4ULL << 30);
	CHECK(cfg->shutdown_timeout_ms == 30000);
	check_denied_defaults(&cfg->delivery);
	CHECK(cfg->listen[0].policy.auth == SMTP_AUTH_OFF);
	CHECK(!cfg->listen[0].policy.auth_insecure);
	CHECK(cfg->listen[0].policy.senders == SMTP_SENDER_ANY);
	CHECK(cfg->nusers == 0 && cfg->users_file == NULL);
	CHECK(cfg->nrelay_domains == 0);
	CHECK(cfg->limits.auth_failures == 5);
	CHECK(cfg->limits.auth_failure_window_ms == 900000);
}

/* ------------------------------------------------------------------ */

static void
test_embedded_default(void)
{
	struct config cfg;
	struct config_errors errs = { 0 };

	CHECK_FATAL(check_load(&cfg, &errs, NULL, NULL, NULL, NULL) == 0);
	CHECK(strcmp(cfg.source, "(embedded default)") == 0);
	check_defaults(&cfg);
	config_free(&cfg);
	CHECK(cfg.listen == NULL && cfg.hostname == NULL);
	config_free(&cfg);	/* twice is harmless */
	config_errors_free(&errs);
}

/* An empty file means all schema defaults: the embedded file must agree. */
static void
test_empty_file(void)
{
	static const char *const texts[] = { "", "# only a comment\n", "~\n" };
	struct config cfg;
	struct config_errors errs = { 0 };
	const char *file;
	size_t i;

	for (i = 0; i < NELEM(texts); i++) {
		CHECK_FATAL(check_load(&cfg, &errs, texts[i], NULL, NULL,
		    &file) == 0);
		CHECK(strcmp(cfg.source, file) == 0);
		check_defaults(&cfg);
		config_free(&cfg);
	}
	config_errors_free(&errs);
}

static void
test_full_file(void)
{
	static const char yaml[] =
	    "hostname: mx.example.org\n"
	    "spool: /var/spool/sluice\n"
	    "shards: 4\n"
	    "listen:\n"
	    "  - address: 0.0.0.0:25\n"
	    "  - address: \"[::]:587\"\n"
	    "allowed_networks:\n"
	    "  - 10.0.0.0/8\n"
	    "  - 192.0.2.7\n"
	    "  - 2001:db8::/32\n"
	    "limits:\n"
	    "  message_size: 20M\n"
	    "  recipients: 50\n"
	    "  line_length: 4k\n"
	    "  errors: 5\n"
	    "  idle_timeout: 90\n"
	    "  connections: 2000\n"
	    "  connections_per_client: 10\n"
	    "queue:\n"
	    "  segment_size: 128M\n"
	    "  index_size: 1T\n"
	    "shutdown_timeout: 1500ms\n";
	struct config cfg;
	struct config_errors errs = { 0 };
	const struct sockaddr_in6 *sin6;

	CHECK_FATAL(check_load(&cfg, &errs, yaml, NULL, NULL, NULL) == 0);
	CHECK(strcmp(cfg.hostname, "mx.example.org") == 0);
	CHECK(strcmp(cfg.spool, "/var/spool/sluice") == 0);
	CHECK(cfg.shards == 4);
	CHECK_FATAL(cfg.nlisten == 2);
	CHECK(strcmp(cfg.listen[0].address, "0.0.0.0:25") == 0);
	CHECK(cfg.listen[0].sa.ss_family == AF_INET);
	CHECK(sa_port(&cfg.listen[0].sa) == 25);
	CHECK(strcmp(cfg.listen[1].address, "[::]:587") == 0);
	sin6 = (const struct sockaddr_in6 *)&cfg.listen[1].sa;
	CHECK(sin6->sin6_family == AF_INET6);
	CHECK(cfg.listen[1].salen == sizeof *sin6);
	CHECK(sa_port(&cfg.listen[1].sa) == 587);
	CHECK(IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr));
	CHECK_FATAL(cfg.nallowed_networks == 3);
	CHECK(cfg.allowed_networks[1].family == AF_INET);
	CHECK(cfg.allowed_networks[1].prefix == 32);
	CHECK(cfg.allowed_networks[2].family == AF_INET6);
	CHECK(cfg.allowed_networks[2].prefix == 32);
	CHECK(cfg.limits.message_size == 20ULL << 20);
	CHECK(cfg.limits.recipients == 50);
	CHECK(cfg.limits.line_length == 4096);
	CHECK(cfg.limits.errors == 5);
	CHECK(cfg.limits.idle_timeout_ms == 90000);
	CHECK(cfg.limits.connections == 2000);
	CHECK(cfg.limits.connections_per_client == 10);
	CHECK(cfg.queue.segment_size == 128ULL << 20);
	CHECK(cfg.queue.index_size == 1ULL << 40);
	CHECK(cfg.shutdown_timeout_ms == 1500);
	config_free(&cfg);
	config_errors_free(&errs);
}

/* ------------------------------------------------------------------ */
/* Errors, one table: input -> exact messages.                        */
/* ------------------------------------------------------------------ */

struct error_case {
	const char *name;
	const char *yaml;			/* NULL: embedded default */
	const char *ovr[8];
	const char *env[6];
	const char *want[MAX_ERRS];
};

static const struct error_case error_cases[] = {
	{ "unknown_key_top", "hostnme: mx\n", {0}, {0},
	  { "@:1: hostnme: unknown configuration key" } },
	{ "unknown_key_nested", "limits:\n  errors: 3\n  recpients: 5\n", {0}, {0},
	  { "@:3: limits.recpients: unknown configuration key" } },
	{ "unknown_key_listener", "listen:\n  - address: 127.0.0.1:25\n    tsl: on\n",
	  {0}, {0},
	  { "@:3: listen.0.tsl: unknown configuration key" } },
	{ "bad_tls_mode", "listen:\n  - address: 127.0.0.1:25\n    tls: on\n",
	  {0}, {0},
	  { "@:3: listen.0.tls: invalid TLS mode 'on' (expected none, "
	    "starttls, required or implicit)" } },
	{ "dnssec_bad", "dns:\n  dnssec: yes\n", {0}, {0},
	  { "@:2: dns.dnssec: bad dnssec 'yes': want off, trust-ad or "
	    "validate" } },
	{ "trust_anchor_missing", "dns:\n  trust_anchor: /nonexistent/k\n",
	  {0}, {0},
	  { "@:2: dns.trust_anchor: trust anchor /nonexistent/k: cannot "
	    "open it" } },

	{ "delivery_tls_bad", "delivery:\n  tls: dane-ish\n", {0}, {0},
	  { "@:2: delivery.tls: bad tls 'dane-ish': want none, may, encrypt, "
	    "verify, dane or dane-only" } },
	{ "tls_cert_without_key", "tls:\n  cert: /etc/hostname\n", {0}, {0},
	  { "@:2: tls.key: required with tls.cert" } },
	{ "tls_cert_missing", "tls:\n  cert: /nonexistent/c.pem\n"
	  "  key: /nonexistent/k.pem\n", {0}, {0},
	  { "@:2: tls.cert: certificate /nonexistent/c.pem: No such file or "
	    "directory" } },
	{ "tls_cert_not_pem", "tls:\n  cert: /etc/hostname\n"
	  "  key: /etc/hostname\n", {0}, {0},
	  { "@:2: tls.cert: certificate /etc/hostname: not a PEM certificate "
	    "chain: no start line" } },
	{ "duplicate_key", "spool: /a\nlimits:\n  errors: 1\n  errors: 2\nspool: /b\n",
	  {0}, {0},
	  { "@:4: limits.errors: duplicate key (first defined at line 3)",
	    "@:5: spool: duplicate key (first defined at line 1)" } },
	{ "map_for_scalar", "spool:\n  dir: /a\n", {0}, {0},
	  { "@:2: spool: expected a string, got a map" } },
	{ "scalar_for_map", "limits: 5\n", {0}, {0},
	  { "@:1: limits: expected a map, got a scalar" } },
	{ "list_for_int", "shards: [1]\n", {0}, {0},
	  { "@:1: shards: expected an integer, got a list" } },
	{ "scalar_for_list", "allowed_networks: 10.0.0.0/8\n", {0}, {0},
	  { "@:1: allowed_networks: expected a list, got a scalar" } },
	{ "listener_not_map", "listen:\n  - 127.0.0.1:25\n", {0}, {0},
	  { "@:2: listen.0: expected a map, got a scalar" } },
	{ "out_of_range", "limits:\n  errors: 0\n", {0}, {0},
	  { "@:2: limits.errors: value must be between 1 and 1000" } },
	{ "shards_range", "shards: 65\n", {0}, {0},
	  { "@:1: shards: value must be between 0 and 64" } },
	{ "bad_integer", "limits:\n  recipients: 10k\n", {0}, {0},
	  { "@:2: limits.recipients: invalid integer '10k' (expected decimal digits)" } },
	{ "bad_size", "limits:\n  message_size: 10MB\n", {0}, {0},
	  { "@:2: limits.message_size: invalid size '10MB' (expected bytes, "
	    "or a number with suffix K, M, G or T)" } },
	{ "size_range", "limits: {message_size: 4G}\n", {0}, {0},
	  { "@:1: limits.message_size: value must be between 1K and 1G" } },
	{ "bad_duration", "limits:\n  idle_timeout: 5d\n", {0}, {0},
	  { "@:2: limits.idle_timeout: invalid duration '5d' (expected seconds, "
	    "or a number with suffix ms, s, m or h)" } },
	{ "duration_range", "limits:\n  idle_timeout: 99ms\nshutdown_timeout: 2h\n",
	  {0}, {0},
	  { "@:2: limits.idle_timeout: value must be between 100ms and 1h",
	    "@:3: shutdown_timeout: value must be between 0 and 1h" } },
	{ "bad_address", "listen:\n  - address: localhost:25\n", {0}, {0},
	  { "@:2: listen.0.address: invalid address 'localhost:25' (expected "
	    "IPv4:port or [IPv6]:port, numeric)" } },
	{ "missing_address", "listen:\n  - {}\n  - address: ~\n", {0}, {0},
	  { "@:2: listen.0.address: required key is missing",
	    "@:3: listen.1.address: required key is missing" } },
	{ "empty_listen", "listen: []\n", {0}, {0},
	  { "@:1: listen: list must have at least 1 entry" } },
	{ "bad_cidr", "allowed_networks:\n  - 10.0.0.1/8\n  - 10.0.0.0/33\n"
	  "  - example.org\n  - \"::1/129\"\n", {0}, {0},
	  { "@:2: allowed_networks.0: invalid network '10.0.0.1/8': host bits "
	    "set beyond the prefix",
	    "@:3: allowed_networks.1: invalid network '10.0.0.0/33': prefix "
	    "length must be at most 32",
	    "@:4: allowed_networks.2: invalid network 'example.org': not a "
	    "numeric IPv4 or IPv6 address",
	    "@:5: allowed_networks.3: invalid network '::1/129': prefix length "
	    "must be at most 128" } },
	{ "bad_hostname", "hostname: \"mx example\"\n", {0}, {0},
	  { "@:1: hostname: must not contain spaces, control characters or "
	    "non-ASCII bytes" } },
	{ "empty_spool", "spool: \"\"\n", {0}, {0},
	  { "@:1: spool: must not be empty" } },
	{ "nul_byte", "spool: \"/a\\0b\"\n", {0}, {0},
	  { "@:1: spool: value contains a NUL byte" } },
	{ "syntax_error", "spool: /a\nlimits:\n  errors: [1\nshards: 2\n", {0}, {0},
	  { "@:4: did not find expected ',' or ']' (while parsing a flow "
	    "sequence at line 3)" } },
	{ "syntax_error_stops", "bogus: 1\nspool: : :\n", { "limits.errors=0" }, {0},
	  { "@:2: mapping values are not allowed in this context" } },
	{ "bad_utf8", "spool: /a\nhostname: \"\xff\"\n", {0}, {0},
	  { "@:2: invalid leading UTF-8 octet" } },
	{ "two_documents", "spool: /a\n---\nspool: /b\n", {0}, {0},
	  { "@:3: only one YAML document is allowed" } },
	{ "alias", "limits: &l {errors: 3}\nqueue: *l\n", {0}, {0},
	  { "@:2: queue: YAML aliases are not supported" } },
	{ "root_not_map", "- spool\n- /a\n", {0}, {0},
	  { "@:1: the configuration must be a map of keys, got a list" } },
	{ "nested_too_deep", "limits: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]"
	  "]]]]]]]]]]]]]]]]]]]]\n", {0}, {0},
	  { "@:1: limits.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0."
	    "0.0.0.0: nested deeper than 32 levels" } },
	/* -o and environment: labels instead of file:line, all collected. */
	{ "override_errors", NULL,
	  { "limits.errors=0", "limits.recpients=5", "spool",
	    "listen.2.address=1.2.3.4:25", "spool.dir=/a",
	    "allowed_networks=[10.0.0.0/8, ::1/128]" }, {0},
	  { "-o limits.errors: value must be between 1 and 1000",
	    "-o limits.recpients: unknown configuration key",
	    "-o spool: expected dotted.path=value",
	    "-o listen.2.address: listen: index 2 is out of range (the list "
	    "has 1 entry; index 1 appends)",
	    "-o spool.dir: unknown configuration key",
	    "-o allowed_networks: invalid YAML value: did not find expected "
	    "node content (quote items such as \"::1/128\" or \"[::1]:25\")" } },
	{ "override_nested_errors", NULL,
	  { "limits={errors: 0, foo: 1}", "listen.1={}", "hostname=[a]",
	    "listen.x.address=1.2.3.4:25", "=5" }, {0},
	  { "-o limits: limits.foo: unknown configuration key",
	    "-o limits: limits.errors: value must be between 1 and 1000",
	    "-o listen.1: listen.1.address: required key is missing",
	    "-o hostname: expected a string, got a list",
	    "-o listen.x.address: listen: expected a list index, got 'x'",
	    "-o =5: expected dotted.path=value" } },
	{ "override_into_wrong_kind", "limits: 5\n", { "limits.errors=3" }, {0},
	  { "@:1: limits: expected a map, got a scalar",
	    "-o limits.errors: limits is a scalar (@:1), not a map" } },
	{ "env_errors", NULL, { "limits.recipients=0" },
	  { "SLUICE_SPOOL=", "SLUICE_LIMITS_ERRORS=0", "SLUICE_FOO=1",
	    "SLUICE_spool=/a", "SLUICE_LISTEN_=1", "SLUICE_LIMITS_MESSAGE_SIZE=1X" },
	  { "environment SLUICE_FOO: unknown configuration key",
	    "environment SLUICE_LIMITS_ERRORS: value must be between 1 and 1000",
	    "environment SLUICE_LIMITS_MESSAGE_SIZE: invalid size '1X' "
	    "(expected bytes, or a number with suffix K, M, G or T)",
	    "environment SLUICE_LISTEN_: unknown configuration key",
	    "environment SLUICE_spool: unknown configuration key",
	    "-o limits.recipients: value must be between 1 and 65535" } },
	/* A later layer replaces the value, and with it the earlier error. */
	{ "override_hides_fixed_value", "limits:\n  errors: 0\n  recipients: 0\n",
	  { "limits.errors=5" }, { "SLUICE_LIMITS_RECIPIENTS=7", "SLUICE_SHARDS=x" },
	  { "environment SLUICE_SHARDS: invalid integer 'x' (expected decimal "
	    "digits)" } },
	/* Checked in tree order, reported in file order, then overrides. */
	{ "many_errors_file_order",
	  "limits:\n"				/* 1 */
	  "  errors: 0\n"			/* 2 */
	  "spool: \"\"\n"			/* 3 */
	  "hostname: \"a b\"\n"			/* 4 */
	  "bogus: 1\n"				/* 5 */
	  "listen:\n"				/* 6 */
	  "  - address: nope\n"			/* 7 */
	  "    proxy: on\n"			/* 8 */
	  "  - {}\n"				/* 9 */
	  "allowed_networks: [10.0.0.1/8, x]\n"	/* 10 */
	  "queue: {segment_size: 1X, index_size: 8T}\n"	/* 11 */
	  "shutdown_timeout: 2h\n"		/* 12 */
	  "limits:\n"				/* 13 */
	  "  errors: 3\n",			/* 14 */
	  { "shards=999" }, { "SLUICE_LIMITS_RECIPIENTS=0" },
	  { "@:2: limits.errors: value must be between 1 and 1000",
	    "@:3: spool: must not be empty",
	    "@:4: hostname: must not contain spaces, control characters or "
	    "non-ASCII bytes",
	    "@:5: bogus: unknown configuration key",
	    "@:7: listen.0.address: invalid address 'nope' (expected IPv4:port "
	    "or [IPv6]:port, numeric)",
	    "@:8: listen.0.proxy: unknown configuration key",
	    "@:9: listen.1.address: required key is missing",
	    "@:10: allowed_networks.0: invalid network '10.0.0.1/8': host bits "
	    "set beyond the prefix",
	    "@:10: allowed_networks.1: invalid network 'x': not a numeric IPv4 "
	    "or IPv6 address",
	    "@:11: queue.segment_size: invalid size '1X' (expected bytes, or a "
	    "number with suffix K, M, G or T)",
	    "@:11: queue.index_size: value must be between 16M and 1T",
	    "@:12: shutdown_timeout: value must be between 0 and 1h",
	    "@:13: limits: duplicate key (first defined at line 1)",
	    "environment SLUICE_LIMITS_RECIPIENTS: value must be between 1 and "
	    "65535",
	    "-o shards: value must be between 0 and 64" } },
	{ "route_missing_keys", "routes:\n  - domain: example.com\n"
	  "  - transport: smtp\n", {0}, {0},
	  { "@:2: routes.0.transport: required key is missing",
	    "@:3: routes.1.domain: required key is missing" } },
	{ "route_unknown_key", "routes:\n  - domain: example.com\n"
	  "    transport: smtp\n    max_conections: 2\n", {0}, {0},
	  { "@:4: routes.0.max_conections: unknown configuration key" } },
	{ "route_bad_transport", "routes:\n  - domain: example.com\n"
	  "    transport: smtpx:[relay.example]\n", {0}, {0},
	  { "@:3: routes.0.transport: unknown transport 'smtpx'" } },
	{ "route_bad_policy", "routes:\n  - domain: example.com\n"
	  "    transport: smtp\n    max_rate: 10/d\n    preset: fast\n"
	  "    auth: nopassword\n", {0}, {0},
	  { "@:4: routes.0.max_rate: bad max_rate '10/d'",
	    "@:5: routes.0.preset: unknown preset 'fast'",
	    "@:6: routes.0.auth: bad auth: want 'user:password' or a map "
	    "{user: NAME, password_file: PATH}" } },
	{ "route_bad_domain", "routes:\n  - domain: \"exa mple.com\"\n"
	  "    transport: smtp\n", {0}, {0},
	  { "@:2: routes.0.domain: bad route pattern 'exa mple.com'" } },
	{ "route_duplicate", "routes:\n  - domain: example.com\n"
	  "    transport: smtp\n  - domain: Example.COM.\n"
	  "    transport: discard\n", {0}, {0},
	  { "@:4: routes.1.domain: duplicate route 'example.com'" } },
	{ "route_not_a_map", "routes:\n  - example.com\nrelay_host: [a]\n",
	  {0}, {0},
	  { "@:2: routes.0: expected a map, got a scalar",
	    "@:3: relay_host: expected a string, got a list" } },
	{ "relay_host_conflict", "relay_host: \"[smarthost.example]:587\"\n"
	  "routes:\n  - domain: example.com\n    transport: smtp\n"
	  "  - domain: \"*\"\n    transport: discard\n", {0}, {0},
	  { "@:1: relay_host: relay_host conflicts with the '*' route "
	    "(routes.1.domain at @:5)" } },
	{ "relay_host_bad", "relay_host: \"[smarthost.example]:0\"\n", {0}, {0},
	  { "@:1: relay_host: bad port '0'" } },
	{ "route_override_errors", NULL,
	  { "routes.0.domain=example.com", "routes.0.transport=error:no",
	    "routes.1.domain=example.com", "routes.1.transport=smtp",
	    "routes.1.max_attempts=x", "routes.2={domain: EXAMPLE.com, "
	    "transport: discard}", NULL },
	  { "SLUICE_RELAY_HOST=[h]:99999", NULL },
	  { "environment SLUICE_RELAY_HOST: bad port '99999'",
	    "-o routes.1.max_attempts: bad max_attempts 'x'",
	    "-o routes.2: routes.2.domain: duplicate route 'example.com'" } },
};

static void
run_error_case(const struct error_case *c)
{
	struct config cfg;
	struct config_errors errs = { 0 };
	const char *file = NULL;
	char saved[sizeof check_tmp_path];
	int n;

	n = check_load(&cfg, &errs, c->yaml, c->ovr, c->env, &file);
	snprintf(saved, sizeof saved, "%s", file ? file : "(embedded default)");
	CHECK(n > 0);
	check_errors(&errs, saved, c->want);
	config_errors_free(&errs);
	CHECK(errs.msg == NULL && errs.n == 0);
}

static void
test_cannot_open(void)
{
	struct config cfg;
	struct config_errors errs = { 0 };
	static const char *const want_missing[] = {
		"/nonexistent/sluice.yaml: cannot open: No such file or directory",
		NULL,
	};
	static const char *const want_dir[] = {
		"/: cannot read: Is a directory", NULL,
	};
	static const char *const ovr[] = { "limits.errors=0" };

	CHECK(config_load(&cfg, "/nonexistent/sluice.yaml", (char *const *)ovr,
	    1, NULL, &errs) == 1);
	check_errors(&errs, "", want_missing);
	config_errors_free(&errs);
	CHECK(config_load(&cfg, "/", NULL, 0, NULL, &errs) == 1);
	check_errors(&errs, "", want_dir);
	config_errors_free(&errs);
}

static void
test_file_too_large(void)
{
	static const char *const want[] = {
		"@: file is larger than 1048576 bytes", NULL,
	};
	struct config cfg;
	struct config_errors errs = { 0 };
	size_t len = 1024 * 1024 + 1;
	char *big = malloc(len), path[sizeof check_tmp_path];

	CHECK_FATAL(big != NULL);
	memset(big, '#', len);
	check_write_tmp(big, len);
	snprintf(path, sizeof path, "%s", check_tmp_path);
	CHECK(config_load(&cfg, path, NULL, 0, NULL, &errs) == 1);
	check_errors(&errs, path, want);
	unlink(path);
	free(big);
	config_errors_free(&errs);
}

/* New errors are appended after what errs already holds. */
static void
test_errors_append(void)
{
	struct config cfg;
	struct config_errors errs = { 0 };
	static const char *const a[] = { "limits.errors=0" };
	static const char *const b[] = { "shards=-1", "limits.errors=x" };

	CHECK(config_load(&cfg, NULL, (char *const *)a, 1, NULL, &errs) == 1);
	CHECK(config_load(&cfg, NULL, (char *const *)b, 2, NULL, &errs) == 2);
	CHECK_FATAL(errs.n == 3);
	CHECK(strcmp(errs.msg[0], "-o limits.errors: value must be between 1 "
	    "and 1000") == 0);
	CHECK(strcmp(errs.msg[1], "-o shards: invalid integer '-1' (expected "
	    "decimal digits)") == 0);
	CHECK(strcmp(errs.msg[2], "-o limits.errors: invalid integer 'x' "
	    "(expected decimal digits)") == 0);
	config_errors_free(&errs);
	/* errs may be NULL: the count is still returned. */
	CHECK(config_load(&cfg, NULL, (char *const *)b, 2, NULL, NULL) == 2);
}

/* ------------------------------------------------------------------ */
/* Overrides and environment that succeed.                            */
/* ------------------------------------------------------------------ */

static const char base_yaml[] =
    "spool: /var/spool/sluice\n"
    "listen:\n"
    "  - address: 127.0.0.1:25\n"
    "  - address: 127.0.0.1:587\n"
    "allowed_networks: [10.0.0.0/8]\n"
    "limits:\n"
    "  errors: 5\n"
    "  recipients: 50\n";

static void
test_override_scalar_nested(void)
{
	static const char *const ovr[] = {
		"spool=/tmp/spool", "limits.errors=7", "shards=3",
		" limits.line_length = 1k", "limits.recipients=", NULL,
	};
	struct config cfg;
	struct config_errors errs = { 0 };

	CHECK_FATAL(check_load(&cfg, &errs, base_yaml, ovr, NULL, NULL) == 0);
	CHECK(strcmp(cfg.spool, "/tmp/spool") == 0);
	CHECK(cfg.limits.errors == 7);
	CHECK(cfg.shards == 3);
	CHECK(cfg.limits.line_length == 1024);
	/* An empty value means "not set": back to the default. */
	CHECK(cfg.limits.recipients == 1000);
	config_free(&cfg);
	config_errors_free(&errs);
}

static void
test_override_lists(void)
{
	static const char *const ovr[] = {
		"listen.0.address=0.0.0.0:2500",	/* replace in place */
		"listen.2.address=[::1]:2526",		/* append, literal */
		"listen.3={address: \"[::]:465\"}",	/* append a map */
		"allowed_networks=[192.168.0.0/16, \"::1/128\"]",
		"allowed_networks.2=172.16.0.0/12",	/* append a scalar */
		NULL,
	};
	struct config cfg;
	struct config_errors errs = { 0 };

	CHECK_FATAL(check_load(&cfg, &errs, base_yaml, ovr, NULL, NULL) == 0);
	CHECK_FATAL(cfg.nlisten == 4);
	CHECK(strcmp(cfg.listen[0].address, "0.0.0.0:2500") == 0);
	CHECK(sa_port(&cfg.listen[0].sa) == 2500);
	CHECK(strcmp(cfg.listen[1].address, "127.0.0.1:587") == 0);
	CHECK(strcmp(cfg.listen[2].address, "[::1]:2526") == 0);
	CHECK(cfg.listen[2].sa.ss_family == AF_INET6);
	CHECK(sa_port(&cfg.listen[2].sa) == 2526);
	CHECK(strcmp(cfg.listen[3].address, "[::]:465") == 0);
	CHECK_FATAL(cfg.nallowed_networks == 3);
	CHECK(cfg.allowed_networks[0].family == AF_INET);
	CHECK(cfg.allowed_networks[0].prefix == 16);
	CHECK(cfg.allowed_networks[1].family == AF_INET6);
	CHECK(cfg.allowed_networks[2].prefix == 12);
	config_free(&cfg);
	config_errors_free(&errs);
}

/* With no listen in the file, index 0 edits the default listener. */
static void
test_override_default_list(void)
{
	static const char *const ovr[] = {
		"listen.0.address=10.1.1.1:25", "listen.1.address=10.1.1.2:25",
		"allowed_networks.2=192.0.2.0/24", NULL,
	};
	struct config cfg;
	struct config_errors errs = { 0 };

	CHECK_FATAL(check_load(&cfg, &errs, "spool: /a\n", ovr, NULL,
	    NULL) == 0);
	CHECK_FATAL(cfg.nlisten == 2);
	CHECK(strcmp(cfg.listen[0].address, "10.1.1.1:25") == 0);
	CHECK(strcmp(cfg.listen[1].address, "10.1.1.2:25") == 0);
	CHECK_FATAL(cfg.nallowed_networks == 3);
	CHECK(cfg.allowed_networks[0].family == AF_INET);
	CHECK(cfg.allowed_networks[1].family == AF_INET6);
	CHECK(cfg.allowed_networks[2].prefix == 24);
	config_free(&cfg);
	config_errors_free(&errs);
}

/*
 * delivery.denied_networks: may be emptied, takes networks only; and the
 * listeners reach delivery's view of the configuration.
 */
static void
test_denied_networks(void)
{
	static const char *const empty[] = { "delivery.denied_networks=[]",
		"listen.1.address=[::]:25", NULL };
	static const char *const bad[] = {
		"delivery.denied_networks=[10.0.0.1/8]", NULL };
	struct config cfg;
	struct config_errors errs = { 0 };
	struct deliver_cfg dc;

	CHECK_FATAL(check_load(&cfg, &errs, "spool: /a\n", empty, NULL,
	    NULL) == 0);
	CHECK(cfg.delivery.ndenied_networks == 0);
	config_deliver_cfg(&cfg, &dc);
	CHECK_FATAL(dc.nlisten == 2);
	CHECK(dc.listen[0].ss_family == AF_INET && sa_port(&dc.listen[0]) == 2525);
	CHECK(dc.listen[1].ss_family == AF_INET6 && sa_port(&dc.listen[1]) == 25);
	config_free(&cfg);
	CHECK(check_load(&cfg, &errs, "spool: /a\n", bad, NULL, NULL) == 1);
	CHECK(errs.n == 1 && strstr(errs.msg[0], "delivery.denied_networks.0") &&
	    strstr(errs.msg[0], "host bits set"));
	config_errors_free(&errs);
}

/* A map assigned to a map merges; it does not reset the other keys. */
static void
test_override_map_merge(void)
{
	static const char *const ovr[] = {
		"limits={recipients: 7, connections: 9}", "queue={}", NULL,
	};
	struct config cfg;
	struct config_errors errs = { 0 };

	CHECK_FATAL(check_load(&cfg, &errs, base_yaml, ovr, NULL, NULL) == 0);
	CHECK(cfg.limits.errors == 5);
	CHECK(cfg.limits.recipients == 7);
	CHECK(cfg.limits.connections == 9);
	CHECK(cfg.queue.segment_size == 64ULL << 20);
	config_free(&cfg);
	config_errors_free(&errs);
}

static void
test_environment(void)
{
	/* Deliberately unsorted: SLUICE_LISTEN must apply before _0_ADDRESS. */
	static const char *const env[] = {
		"SLUICE_LISTEN_0_ADDRESS=[::1]:2525",
		"SLUICE_LIMITS_MESSAGE_SIZE=20M",
		"SLUICE_LISTEN=[{address: 10.0.0.1:25}, {address: 10.0.0.2:25}]",
		"SLUICE_LIMITS_CONNECTIONS_PER_CLIENT=7",
		"SLUICE_LIMITS_CONNECTIONS=70",
		"SLUICE_ALLOWED_NETWORKS=[10.0.0.0/8]",
		"SLUICE_ALLOWED_NETWORKS_1=192.168.0.0/16",
		"SLUICE_QUEUE_INDEX_SIZE=16M",
		"SLUICE_SPOOL=/env/spool",
		"SLUICE_LIMITS_ERRORS=9",
		"PATH=/usr/bin:/bin",
		"SLUICEFOO=ignored",
		"sluice_spool=ignored",
		"SLUICE_NO_EQUALS_SIGN",
		NULL,
	};
	/* -o comes after the environment and wins. */
	static const char *const ovr[] = { "limits.errors=11", NULL };
	struct config cfg;
	struct config_errors errs = { 0 };

	CHECK_FATAL(check_load(&cfg, &errs, base_yaml, ovr, env, NULL) == 0);
	CHECK(cfg.limits.message_size == 20ULL << 20);
	CHECK(cfg.limits.connections_per_client == 7);
	CHECK(cfg.limits.connections == 70);
	CHECK(cfg.limits.errors == 11);
	CHECK(cfg.limits.recipients == 50);
	CHECK(cfg.queue.index_size == 16ULL << 20);
	CHECK(strcmp(cfg.spool, "/env/spool") == 0);
	CHECK_FATAL(cfg.nlisten == 2);
	CHECK(strcmp(cfg.listen[0].address, "[::1]:2525") == 0);
	CHECK(cfg.listen[0].sa.ss_family == AF_INET6);
	CHECK(strcmp(cfg.listen[1].address, "10.0.0.2:25") == 0);
	CHECK_FATAL(cfg.nallowed_networks == 2);
	CHECK(cfg.allowed_networks[0].prefix == 8);
	CHECK(cfg.allowed_networks[1].prefix == 16);
	config_free(&cfg);
	config_errors_free(&errs);
}

/* ------------------------------------------------------------------ */
/* Sizes and durations, through -o on the embedded default.           */
/* ------------------------------------------------------------------ */

struct value_case {
	const char *ovr;
	size_t offset, size;		/* field in struct config */
	uint64_t want;
	const char *err;		/* expected error instead */
};

#define F(m)	offsetof(struct config, m), sizeof(((struct config *)0)->m)

static const struct value_case value_cases[] = {
	{ "dns.dnssec=off", F(dns.dnssec_mode), 1, NULL },
	{ "dns.dnssec=trust-ad", F(dns.dnssec_mode), 2, NULL },
	{ "dns.dnssec=validate", F(dns.dnssec_mode), 3, NULL },
	{ "delivery.tls=dane-only", F(delivery.tls_level), 6, NULL },
	{ "limits.message_size=1024", F(limits.message_size), 1024, NULL },
	{ "limits.message_size=1k", F(limits.message_size), 1024, NULL },
	{ "limits.message_size=1K", F(limits.message_size), 1024, NULL },
	{ "limits.message_size=20M", F(limits.message_size), 20ULL << 20, NULL },
	{ "limits.message_size=20m", F(limits.message_size), 20ULL << 20, NULL },
	{ "limits.message_size=1G", F(limits.message_size), 1ULL << 30, NULL },
	{ "limits.message_size=1073741824", F(limits.message_size), 1ULL << 30, NULL },
	{ "limits.line_length=64K", F(limits.line_length), 65536, NULL },
	{ "queue.segment_size=4G", F(queue.segment_size), 4ULL << 30, NULL },
	{ "queue.segment_size=1m", F(queue.segment_size), 1ULL << 20, NULL },
	{ "queue.index_size=1T", F(queue.index_size), 1ULL << 40, NULL },
	{ "queue.index_size=2g", F(queue.index_size), 2ULL << 30, NULL },
	{ "limits.idle_timeout=500ms", F(limits.idle_timeout_ms), 500, NULL },
	{ "limits.idle_timeout=100ms", F(limits.idle_timeout_ms), 100, NULL },
	{ "limits.idle_timeout=30s", F(limits.idle_timeout_ms), 30000, NULL },
	{ "limits.idle_timeout=45", F(limits.idle_timeout_ms), 45000, NULL },
	{ "limits.idle_timeout=5m", F(limits.idle_timeout_ms), 300000, NULL },
	{ "limits.idle_timeout=1h", F(limits.idle_timeout_ms), 3600000, NULL },
	{ "shutdown_timeout=0", F(shutdown_timeout_ms), 0, NULL },
	{ "shutdown_timeout=0ms", F(shutdown_timeout_ms), 0, NULL },
	{ "shutdown_timeout=\"90\"", F(shutdown_timeout_ms), 90000, NULL },
	{ "limits.recipients=65535", F(limits.recipients), 65535, NULL },
	{ "limits.connections=1000000", F(limits.connections), 1000000, NULL },
	{ "limits.message_size=1023", 0, 0, 0,
	  "-o limits.message_size: value must be between 1K and 1G" },
	{ "limits.message_size=1025M", 0, 0, 0,
	  "-o limits.message_size: value must be between 1K and 1G" },
	{ "limits.message_size=1.5M", 0, 0, 0,
	  "-o limits.message_size: invalid size '1.5M' (expected bytes, or a "
	  "number with suffix K, M, G or T)" },
	{ "limits.message_size=-1", 0, 0, 0,
	  "-o limits.message_size: invalid size '-1' (expected bytes, or a "
	  "number with suffix K, M, G or T)" },
	{ "limits.message_size=M", 0, 0, 0,
	  "-o limits.message_size: invalid size 'M' (expected bytes, or a "
	  "number with suffix K, M, G or T)" },
	{ "limits.message_size=99999999999999999999", 0, 0, 0,
	  "-o limits.message_size: invalid size '99999999999999999999' "
	  "(expected bytes, or a number with suffix K, M, G or T)" },
	{ "limits.message_size=16777216T", 0, 0, 0,	/* 2^64: overflows */
	  "-o limits.message_size: invalid size '16777216T' (expected bytes, "
	  "or a number with suffix K, M, G or T)" },
	{ "limits.line_length=511", 0, 0, 0,
	  "-o limits.line_length: value must be between 512 and 64K" },
	{ "queue.segment_size=4097M", 0, 0, 0,
	  "-o queue.segment_size: value must be between 1M and 4G" },
	{ "limits.idle_timeout=99ms", 0, 0, 0,
	  "-o limits.idle_timeout: value must be between 100ms and 1h" },
	{ "limits.idle_timeout=61m", 0, 0, 0,
	  "-o limits.idle_timeout: value must be between 100ms and 1h" },
	{ "limits.idle_timeout=5H", 0, 0, 0,
	  "-o limits.idle_timeout: invalid duration '5H' (expected seconds, or "
	  "a number with suffix ms, s, m or h)" },
	{ "limits.idle_timeout=1.5s", 0, 0, 0,
	  "-o limits.idle_timeout: invalid duration '1.5s' (expected seconds, "
	  "or a number with suffix ms, s, m or h)" },
	{ "shutdown_timeout=3601s", 0, 0, 0,
	  "-o shutdown_timeout: value must be between 0 and 1h" },
	{ "limits.recipients=100001", 0, 0, 0,
	  "-o limits.recipients: value must be between 1 and 65535" },
	{ "limits.memory=1023K", 0, 0, 0,
	  "-o limits.memory: value must be between 1M and 1T" },
	{ "limits.recipients=1e3", 0, 0, 0,
	  "-o limits.recipients: invalid integer '1e3' (expected decimal digits)" },
};

static void
run_value_case(const struct value_case *c)
{
	const char *ovr[] = { c->ovr, NULL };
	const char *want[] = { c->err, NULL };
	struct config cfg;
	struct config_errors errs = { 0 };
	uint64_t got = 0;
	uint32_t got32;
	int n;

	n = check_load(&cfg, &errs, NULL, ovr, NULL, NULL);
	if (c->err != NULL) {
		CHECK(n == 1);
		check_errors(&errs, "", want);
	} else {
		CHECK_FATAL(n == 0);
		if (c->size == sizeof got32) {
			memcpy(&got32, (char *)&cfg + c->offset, sizeof got32);
			got = got32;
		} else {
			memcpy(&got, (char *)&cfg + c->offset, sizeof got);
		}
		if (got != c->want)
			fprintf(stderr, "  got %llu, want %llu\n",
			    (unsigned long long)got, (unsigned long long)c->want);
		CHECK(got == c->want);
	}
	config_free(&cfg);
	config_errors_free(&errs);
}

/* ------------------------------------------------------------------ */
/* cidr_parse, cidr_match, address_parse                              */
/* ------------------------------------------------------------------ */

/* limits.memory: follows message_size when not set, never below it. */
static void
test_limits_memory(void)
{
	static const char *const big[] = { "limits.message_size=1G", NULL };
	static const char *const set[] = { "limits.memory=64M", NULL };
	static const char *const low[] = { "limits.memory=5M", NULL };
	static const char *const want_low[] = {
		"-o limits.memory: 5M is below limits.message_size (10M): no "
		"message that large could ever be taken", NULL };
	struct config cfg;
	struct config_errors errs = { 0 };

	CHECK_FATAL(check_load(&cfg, &errs, "", NULL, NULL, NULL) == 0);
	CHECK(cfg.limits.memory == 512ULL << 20);
	config_free(&cfg);
	CHECK_FATAL(check_load(&cfg, &errs, "", big, NULL, NULL) == 0);
	CHECK(cfg.limits.memory == 1ULL << 30);
	config_free(&cfg);
	CHECK_FATAL(check_load(&cfg, &errs, "", set, NULL, NULL) == 0);
	CHECK(cfg.limits.memory == 64ULL << 20);
	config_free(&cfg);
	CHECK(check_load(&cfg, &errs, "", low, NULL, NULL) == 1);
	check_errors(&errs, "", want_low);
	config_errors_free(&errs);
}

static void
test_cidr_parse(void)
{
	static const struct {
		const char *s;
		int rc, family;
		unsigned prefix;
	} cases[] = {
		{ "10.0.0.0/8", 0, AF_INET, 8 },
		{ "10.0.0.1", 0, AF_INET, 32 },
		{ "0.0.0.0/0", 0, AF_INET, 0 },
		{ "192.168.1.128/25", 0, AF_INET, 25 },
		{ "::1", 0, AF_INET6, 128 },
		{ "::/0", 0, AF_INET6, 0 },
		{ "fe80::/10", 0, AF_INET6, 10 },
		{ "::ffff:10.0.0.0/104", 0, AF_INET6, 104 },
		{ "10.0.0.1/8", -1, 0, 0 },
		{ "192.168.1.129/25", -1, 0, 0 },
		{ "fe80::1/10", -1, 0, 0 },
		{ "10.0.0.0/33", -1, 0, 0 },
		{ "::/129", -1, 0, 0 },
		{ "10.0.0.0/", -1, 0, 0 },
		{ "/8", -1, 0, 0 },
		{ "10.0.0.0/8x", -1, 0, 0 },
		{ "10.0.0.0/-1", -1, 0, 0 },
		{ "10.0.0.0/0008", -1, 0, 0 },
		{ "10.0.0/8", -1, 0, 0 },
		{ "example.org", -1, 0, 0 },
		{ "", -1, 0, 0 },
		{ "fe80::1%eth0", -1, 0, 0 },
	};
	struct cidr c;
	size_t i;

	for (i = 0; i < NELEM(cases); i++) {
		int rc = cidr_parse(cases[i].s, &c);

		if (rc != cases[i].rc)
			fprintf(stderr, "  cidr_parse(\"%s\") = %d\n", cases[i].s, rc);
		CHECK(rc == cases[i].rc);
		if (rc == 0 && cases[i].rc == 0) {
			CHECK(c.family == cases[i].family);
			CHECK(c.prefix == cases[i].prefix);
		}
	}
	CHECK(cidr_parse("172.16.0.0/12", &c) == 0);
	CHECK(c.addr[0] == 172 && c.addr[1] == 16 && c.addr[2] == 0 &&
	    c.addr[3] == 0);
}

static int
match_str(const struct cidr *nets, size_t n, const char *addr)
{
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;

	memset(&sin, 0, sizeof sin);
	memset(&sin6, 0, sizeof sin6);
	if (inet_pton(AF_INET, addr, &sin.sin_addr) == 1) {
		sin.sin_family = AF_INET;
		return cidr_match(nets, n, (const struct sockaddr *)&sin);
	}
	CHECK_FATAL(inet_pton(AF_INET6, addr, &sin6.sin6_addr) == 1);
	sin6.sin6_family = AF_INET6;
	return cidr_match(nets, n, (const struct sockaddr *)&sin6);
}

static void
test_cidr_match(void)
{
	static const char *const net_text[] = {
		"10.0.0.0/8", "192.168.1.0/24", "172.16.0.0/12",
		"2001:db8::/32", "::1/128", "198.51.100.7",
	};
	static const struct {
		const char *addr;
		int want;
	} cases[] = {
		{ "10.1.2.3", 1 },
		{ "10.255.255.255", 1 },
		{ "11.0.0.1", 0 },
		{ "9.255.255.255", 0 },
		{ "192.168.1.255", 1 },
		{ "192.168.2.1", 0 },
		{ "172.31.255.255", 1 },
		{ "172.32.0.0", 0 },
		{ "198.51.100.7", 1 },
		{ "198.51.100.8", 0 },
		{ "::ffff:10.9.9.9", 1 },	/* v4-mapped: IPv4 networks */
		{ "::ffff:172.20.0.1", 1 },
		{ "::ffff:11.0.0.1", 0 },
		{ "::10.9.9.9", 0 },		/* v4-compatible is not mapped */
		{ "2001:db8::5", 1 },
		{ "2001:db8:ffff::1", 1 },
		{ "2001:db9::1", 0 },
		{ "::1", 1 },
		{ "::2", 0 },
	};
	struct cidr nets[NELEM(net_text)], any4, mapped;
	struct sockaddr_un sun;
	size_t i;

	for (i = 0; i < NELEM(net_text); i++)
		CHECK_FATAL(cidr_parse(net_text[i], &nets[i]) == 0);
	for (i = 0; i < NELEM(cases); i++) {
		int got = match_str(nets, NELEM(nets), cases[i].addr);

		if (got != cases[i].want)
			fprintf(stderr, "  cidr_match(%s) = %d\n", cases[i].addr, got);
		CHECK(got == cases[i].want);
	}
	CHECK(match_str(nets, 0, "10.1.2.3") == 0);
	CHECK(cidr_match(nets, NELEM(nets), NULL) == 0);
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	CHECK(cidr_match(nets, NELEM(nets), (const struct sockaddr *)&sun) == 0);
	CHECK(cidr_parse("0.0.0.0/0", &any4) == 0);
	CHECK(match_str(&any4, 1, "203.0.113.1") == 1);
	CHECK(match_str(&any4, 1, "::ffff:203.0.113.1") == 1);
	CHECK(match_str(&any4, 1, "2001:db8::1") == 0);
	/* An IPv6 network written in mapped form also covers IPv4 clients. */
	CHECK(cidr_parse("::ffff:10.0.0.0/104", &mapped) == 0);
	CHECK(match_str(&mapped, 1, "10.2.3.4") == 1);
	CHECK(match_str(&mapped, 1, "11.2.3.4") == 0);
}

static void
test_address_parse(void)
{
	static const struct {
		const char *s;
		int rc, family;
		uint16_t port;
	} cases[] = {
		{ "127.0.0.1:2525", 0, AF_INET, 2525 },
		{ "0.0.0.0:25", 0, AF_INET, 25 },
		{ "0.0.0.0:0", 0, AF_INET, 0 },
		{ "[::1]:25", 0, AF_INET6, 25 },
		{ "[::]:65535", 0, AF_INET6, 65535 },
		{ "[2001:db8::1]:587", 0, AF_INET6, 587 },
		{ "[::ffff:127.0.0.1]:25", 0, AF_INET6, 25 },
		{ "localhost:25", -1, 0, 0 },
		{ "127.0.0.1", -1, 0, 0 },
		{ "127.0.0.1:", -1, 0, 0 },
		{ "127.0.0.1:65536", -1, 0, 0 },
		{ "127.0.0.1:100000", -1, 0, 0 },
		{ "127.0.0.1:-1", -1, 0, 0 },
		{ "127.0.0.1:25x", -1, 0, 0 },
		{ "127.0.0.1: 25", -1, 0, 0 },
		{ "1.2.3:25", -1, 0, 0 },
		{ "::1:25", -1, 0, 0 },
		{ "[::1]25", -1, 0, 0 },
		{ "[::1]:", -1, 0, 0 },
		{ "[::1", -1, 0, 0 },
		{ "[127.0.0.1]:25", -1, 0, 0 },
		{ "[]:25", -1, 0, 0 },
		{ ":25", -1, 0, 0 },
		{ "[fe80::1%eth0]:25", -1, 0, 0 },
		{ "", -1, 0, 0 },
	};
	struct sockaddr_storage sa;
	socklen_t len;
	size_t i;

	for (i = 0; i < NELEM(cases); i++) {
		int rc = address_parse(cases[i].s, &sa, &len);

		if (rc != cases[i].rc)
			fprintf(stderr, "  address_parse(\"%s\") = %d\n",
			    cases[i].s, rc);
		CHECK(rc == cases[i].rc);
		if (rc != 0 || cases[i].rc != 0)
			continue;
		CHECK(sa.ss_family == cases[i].family);
		CHECK(sa_port(&sa) == cases[i].port);
		CHECK(len == (cases[i].family == AF_INET ?
		    sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6)));
	}
	CHECK(address_parse("[2001:db8::1]:587", &sa, &len) == 0);
	CHECK(((const struct sockaddr_in6 *)&sa)->sin6_addr.s6_addr[3] == 0xb8);
}

/* ------------------------------------------------------------------ */

static int failed;

int
main(void)
{
	static const struct check_case tests[] = {
		{ "embedded_default", test_embedded_default },
		{ "empty_file", test_empty_file },
		{ "full_file", test_full_file },
		{ "cannot_open", test_cannot_open },
		{ "file_too_large", test_file_too_large },
		{ "errors_append", test_errors_append },
		{ "override_scalar_nested", test_override_scalar_nested },
		{ "override_lists", test_override_lists },
		{ "override_default_list", test_override_default_list },
		{ "override_map_merge", test_override_map_merge },
		{ "denied_networks", test_denied_networks },
		{ "environment", test_environment },
		{ "limits_memory", test_limits_memory },
		{ "cidr_parse", test_cidr_parse },
		{ "cidr_match", test_cidr_match },
		{ "address_parse", test_address_parse },
	};
	size_t i;

	failed = check_run_table(tests, NELEM(tests));
	for (i = 0; i < NELEM(error_cases); i++) {
		int before = check_failures;

		printf("RUN error/%s\n", error_cases[i].name);
		run_error_case(&error_cases[i]);
		printf("%s error/%s\n", check_failures != before ? "FAIL" : "PASS",
		    error_cases[i].name);
		failed += check_failures != before;
	}
	for (i = 0; i < NELEM(value_cases); i++) {
		int before = check_failures;

		printf("RUN value/%s\n", value_cases[i].ovr);
		run_value_case(&value_cases[i]);
		printf("%s value/%s\n", check_failures != before ? "FAIL" : "PASS",
		    value_cases[i].ovr);
		failed += check_failures != before;
	}
	printf("%d failed\n", failed);
	return check_done();
}
