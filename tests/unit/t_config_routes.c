/*
 * Description: the "routes" list and relay_host in the configuration:
 * routes from a file and from -o, presets applied before the keys beside
 * them, relay_host alone as the "*" route, a route's tls and auth keys
 * and relay_tls/relay_auth (password files and their modes, the one-line
 * form), mta_sts and a route's override of it, and the exact errors for
 * values and keys that do not go together.
 *
 * Fixtures are written to temporary files (config_check.h); "@" in an
 * expected message stands for the file. Exit 0: all cases passed.
 */
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
#include "../../deliver/resolver.h"

static void
test_routes_file(void)
{
	/* preset comes last in the file but applies before max_connections. */
	static const char yaml[] =
	    "routes:\n"
	    "  - domain: legacy.example\n"
	    "    transport: smtp:[old-relay.example]:25\n"
	    "    max_connections: 4\n"
	    "    preset: relaylim\n"
	    "  - domain: .alerts.example\n"
	    "    transport: smtp\n"
	    "    preset: oneshot\n"
	    "    max_rate: 600/m\n"
	    "    retry: 1m, 5m, 15m\n"
	    "  - domain: \"*\"\n"
	    "    transport: lmtp:unix:/run/lmtp.sock\n"
	    "    max_age: 12h\n"
	    "    auth: \"user:pa:ss\"\n";
	struct config cfg;
	struct config_errors errs = { 0 };
	const struct route *r;

	CHECK_FATAL(check_load(&cfg, &errs, yaml, NULL, NULL, NULL) == 0);
	CHECK(cfg.nroute_cfgs == 3);
	CHECK(cfg.relay_host == NULL);
	CHECK(cfg.routes.count == 2);
	r = route_lookup(&cfg.routes, "LEGACY.example.");
	CHECK_FATAL(r != NULL);
	CHECK(strcmp(r->pattern, "legacy.example") == 0);
	CHECK(r->transport.kind == ROUTE_SMTP && !r->transport.mx_lookup);
	CHECK(strcmp(r->transport.host, "old-relay.example") == 0);
	CHECK(r->policy.max_connections == 4);
	CHECK(r->policy.max_attempts == 0);
	r = route_lookup(&cfg.routes, "pager.alerts.example");
	CHECK_FATAL(r != NULL);
	CHECK(strcmp(r->pattern, ".alerts.example") == 0);
	CHECK(r->policy.max_attempts == 1);
	CHECK(r->policy.max_connections == 20);
	CHECK(r->policy.max_rate == 10.0);
	CHECK(!r->policy.retry.exponential && r->policy.retry.count == 3);
	CHECK(route_retry_delay(&r->policy.retry, 3) == 900);
	/* ".alerts.example" does not match alerts.example itself. */
	r = route_lookup(&cfg.routes, "alerts.example");
	CHECK_FATAL(r != NULL);
	CHECK(r == cfg.routes.wildcard);
	CHECK(r->transport.kind == ROUTE_LMTP && r->transport.unix_socket);
	CHECK(strcmp(r->transport.host, "/run/lmtp.sock") == 0);
	CHECK(r->policy.max_age_s == 12 * 3600);
	CHECK(r->policy.auth && strcmp(r->policy.auth_password, "pa:ss") == 0);
	config_free(&cfg);
	CHECK(cfg.routes.wildcard == NULL && cfg.routes.slots == NULL);
	config_errors_free(&errs);
}

/* No routes: an empty table; relay_host alone is the "*" route. */
static void
test_routes_relay_host(void)
{
	static const char *const ovr[] = { "relay_host=[h]:25", NULL };
	static const char *const env[] = {
		"SLUICE_RELAY_HOST=[smarthost.example]:587", NULL,
	};
	struct config cfg;
	struct config_errors errs = { 0 };
	const struct route *r;

	CHECK_FATAL(check_load(&cfg, &errs, NULL, NULL, NULL, NULL) == 0);
	CHECK(cfg.routes.count == 0 && cfg.routes.wildcard == NULL);
	CHECK(route_lookup(&cfg.routes, "example.com") == NULL);
	config_free(&cfg);

	CHECK_FATAL(check_load(&cfg, &errs,
	    "relay_host: \"[smarthost.example]:587\"\n", NULL, NULL,
	    NULL) == 0);
	r = route_lookup(&cfg.routes, "example.com");
	CHECK_FATAL(r != NULL && r == cfg.routes.wildcard);
	CHECK(r->transport.kind == ROUTE_SMTP && r->transport.bracketed);
	CHECK(strcmp(r->transport.host, "smarthost.example") == 0);
	CHECK(r->transport.port == 587);
	CHECK(r->policy.max_connections == 20);
	config_free(&cfg);

	/* The environment, then -o on top of it. */
	CHECK_FATAL(check_load(&cfg, &errs, NULL, NULL, env, NULL) == 0);
	CHECK(strcmp(cfg.relay_host, "[smarthost.example]:587") == 0);
	CHECK(cfg.routes.wildcard != NULL &&
	    cfg.routes.wildcard->transport.port == 587);
	config_free(&cfg);
	CHECK_FATAL(check_load(&cfg, &errs, NULL, ovr, env, NULL) == 0);
	CHECK_FATAL(cfg.routes.wildcard != NULL);
	CHECK(strcmp(cfg.routes.wildcard->transport.host, "h") == 0);
	CHECK(cfg.routes.wildcard->transport.port == 25);
	config_free(&cfg);
	config_errors_free(&errs);
}

/* A password file of mode mode holding text; its name in out. */
static void
password_file(char *out, size_t len, const char *text, mode_t mode)
{
	int fd;

	snprintf(out, len, "/tmp/t_config_pw.XXXXXX");
	fd = mkstemp(out);
	CHECK_FATAL(fd >= 0);
	CHECK_FATAL(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
	CHECK_FATAL(fchmod(fd, mode) == 0);
	CHECK_FATAL(close(fd) == 0);
}

/*
 * Outbound TLS and credentials: delivery.tls, the route keys, relay_tls
 * and relay_auth (a map with a password file whose mode is checked, or
 * the one-line form), and the errors for keys that do not go together.
 */
static void
test_routes_tls_auth(void)
{
	char pw[64], pw_open[64], yaml[1024], want[256];
	struct config cfg;
	struct config_errors errs = { 0 };
	const struct route *r;
	const char *file;

	password_file(pw, sizeof pw, "s3cr:et\n", 0600);
	password_file(pw_open, sizeof pw_open, "s3cret\n", 0644);

	CHECK_FATAL(check_load(&cfg, &errs, NULL, NULL, NULL, NULL) == 0);
	/* MX delivery: DANE where DNSSEC says so, may elsewhere. */
	CHECK(strcmp(cfg.delivery.tls, "dane") == 0);
	CHECK(cfg.delivery.tls_level == ROUTE_TLS_DANE);
	CHECK(cfg.delivery.tls_ca_file == NULL);
	CHECK(cfg.dns.dnssec == NULL);
	CHECK(cfg.dns.dnssec_mode == RESOLVE_DNSSEC_CFG_AUTO);
	config_free(&cfg);

	snprintf(yaml, sizeof yaml,
	    "delivery: {tls: encrypt}\n"
	    "relay_host: \"[smtp.provider.example]:587\"\n"
	    "relay_tls: verify\n"
	    "relay_auth:\n"
	    "  user: apikey\n"
	    "  password_file: %s\n"
	    "routes:\n"
	    "  - domain: partner.example\n"
	    "    transport: \"smtp:[mx.partner.example]:465\"\n"
	    "    tls: implicit\n"
	    "    tls_name: mail.partner.example\n"
	    "    auth: \"u:p:w\"\n"
	    "  - domain: lan.example\n"
	    "    transport: \"smtp:[10.0.0.1]:25\"\n"
	    "    tls: none\n"
	    "    auth: {user: u, password: pw}\n"
	    "    auth_insecure: true\n", pw);
	CHECK_FATAL(check_load(&cfg, &errs, yaml, NULL, NULL, NULL) == 0);
	CHECK(cfg.delivery.tls_level == ROUTE_TLS_ENCRYPT);
	r = cfg.routes.wildcard;
	CHECK_FATAL(r != NULL);
	CHECK(r->policy.tls == ROUTE_TLS_VERIFY && !r->policy.tls_implicit);
	CHECK(r->policy.auth && strcmp(r->policy.auth_user, "apikey") == 0);
	/* The final newline is not part of the password. */
	CHECK(strcmp(r->policy.auth_password, "s3cr:et") == 0);
	r = route_lookup(&cfg.routes, "partner.example");
	CHECK_FATAL(r != NULL);
	CHECK(r->policy.tls == ROUTE_TLS_ENCRYPT && r->policy.tls_implicit);
	CHECK(strcmp(r->policy.tls_name, "mail.partner.example") == 0);
	CHECK(strcmp(r->policy.auth_user, "u") == 0);
	CHECK(strcmp(r->policy.auth_password, "p:w") == 0);
	r = route_lookup(&cfg.routes, "lan.example");
	CHECK_FATAL(r != NULL);
	CHECK(r->policy.tls == ROUTE_TLS_NONE && r->policy.auth_insecure);
	CHECK(strcmp(r->policy.auth_password, "pw") == 0);
	config_free(&cfg);

	/* The environment reaches into the map. */
	{
		char e1[96];
		const char *env[] = {
			"SLUICE_RELAY_HOST=[smtp.provider.example]:465",
			"SLUICE_RELAY_TLS=implicit",
			"SLUICE_RELAY_AUTH_USER=apikey",
			e1, NULL,
		};

		snprintf(e1, sizeof e1, "SLUICE_RELAY_AUTH_PASSWORD_FILE=%s",
		    pw);
		CHECK_FATAL(check_load(&cfg, &errs, NULL, NULL, env,
		    NULL) == 0);
		r = cfg.routes.wildcard;
		CHECK_FATAL(r != NULL);
		CHECK(r->policy.tls_implicit && r->policy.auth);
		CHECK(strcmp(r->policy.auth_password, "s3cr:et") == 0);
		config_free(&cfg);
	}

	/* A password file others can read is refused, at its line. */
	snprintf(yaml, sizeof yaml,
	    "relay_host: \"[smtp.provider.example]:587\"\n"
	    "relay_auth:\n"
	    "  user: apikey\n"
	    "  password_file: %s\n", pw_open);
	CHECK(check_load(&cfg, &errs, yaml, NULL, NULL, &file) == 1);
	snprintf(want, sizeof want, "@:4: relay_auth.password_file: password "
	    "file %s has mode 0644: group or others may read or change it "
	    "(chmod 600 it)", pw_open);
	{
		const char *w[] = { want, NULL };

		check_errors(&errs, file, w);
	}
	config_errors_free(&errs);

	snprintf(yaml, sizeof yaml,
	    "delivery: {tls: none, tls_ca_file: /nonexistent/ca.pem}\n"
	    "relay_tls: encrypt\n"
	    "routes:\n"
	    "  - domain: a.example\n"
	    "    transport: smtp\n"
	    "    auth: {user: u, password_file: /nonexistent/pw}\n"
	    "  - domain: b.example\n"
	    "    transport: smtp\n"
	    "    tls: may\n"
	    "    tls_implicit: true\n"
	    "  - domain: c.example\n"
	    "    transport: smtp\n"
	    "    auth: {password: x}\n"
	    "  - domain: d.example\n"
	    "    transport: smtp\n"
	    "    auth: u:p\n"
	    "  - domain: e.example\n"
	    "    transport: lmtp:unix:/run/x.sock\n"
	    "    tls: encrypt\n"
	    "  - domain: f.example\n"
	    "    transport: smtp\n"
	    "    tls: sometimes\n");
	CHECK(check_load(&cfg, &errs, yaml, NULL, NULL, &file) > 0);
	{
		const char *w[] = {
			"@:1: delivery.tls_ca_file: CA file "
			    "/nonexistent/ca.pem: No such file or directory",
			"@:2: relay_tls: only with relay_host (for a route, "
			    "use its own tls and auth keys)",
			"@:6: routes.0.auth.password_file: cannot open "
			    "password file /nonexistent/pw: No such file or "
			    "directory",
			"@:9: routes.1: tls_implicit needs tls: encrypt or "
			    "verify, not may",
			"@:13: routes.2.auth: auth needs a user and one of "
			    "password_file and password",
			"@:14: routes.3: auth with tls: none would send the "
			    "password in plaintext; use tls: may, encrypt or "
			    "verify, or set auth_insecure: true",
			"@:19: routes.4: no TLS over a unix socket: tls must "
			    "be none or may",
			"@:22: routes.5.tls: bad tls 'sometimes': want none, "
			    "may, encrypt, verify, dane, dane-only or "
			    "implicit",
			NULL,
		};

		check_errors(&errs, file, w);
	}
	config_errors_free(&errs);
	unlink(pw);
	unlink(pw_open);
}

/* mta_sts: its defaults, its keys, a route's override, its errors. */
static void
test_mta_sts(void)
{
	struct config cfg;
	struct config_errors errs = { 0 };
	const struct route *r;
	const char *file;

	CHECK(check_load(&cfg, &errs, "hostname: x.example\n", NULL, NULL,
	    &file) == 0);
	CHECK(cfg.mta_sts.enabled == 1 && cfg.mta_sts.ca_file == NULL);
	CHECK(cfg.mta_sts.wait_ms == 5000);
	CHECK(cfg.mta_sts.fetch_timeout_ms == 10000);
	config_free(&cfg);
	config_errors_free(&errs);

	CHECK(check_load(&cfg, &errs, "mta_sts: {enabled: false, wait: 2s, "
	    "fetch_timeout: 3s}\n"
	    "routes:\n"
	    "  - {domain: a.example, transport: smtp, mta_sts: false}\n"
	    "  - {domain: b.example, transport: smtp, mta_sts: true}\n",
	    NULL, NULL, &file) == 0);
	CHECK(cfg.mta_sts.enabled == 0 && cfg.mta_sts.wait_ms == 2000);
	CHECK(cfg.mta_sts.fetch_timeout_ms == 3000);
	r = route_lookup(&cfg.routes, "a.example");
	CHECK(r != NULL && r->policy.mta_sts == ROUTE_STS_OFF);
	r = route_lookup(&cfg.routes, "b.example");
	CHECK(r != NULL && r->policy.mta_sts == ROUTE_STS_ON);
	config_free(&cfg);
	config_errors_free(&errs);

	CHECK(check_load(&cfg, &errs, "mta_sts: {ca_file: /nonexistent/ca.pem, "
	    "fetch_timeout: 0}\n"
	    "routes:\n"
	    "  - {domain: a.example, transport: smtp, mta_sts: maybe}\n",
	    NULL, NULL, &file) > 0);
	{
		const char *w[] = {
			"@:1: mta_sts.ca_file: CA file /nonexistent/ca.pem: "
			    "No such file or directory",
			"@:1: mta_sts.fetch_timeout: value must be between "
			    "1s and 1m",
			"@:3: routes.0.mta_sts: bad mta_sts 'maybe'",
			NULL,
		};

		check_errors(&errs, file, w);
	}
	config_free(&cfg);
	config_errors_free(&errs);
}

static void
test_routes_override(void)
{
	static const char yaml[] =
	    "routes:\n"
	    "  - domain: example.org\n"
	    "    transport: smtp\n";
	static const char *const ovr[] = {
		"routes.0.preset=relaylim",
		"routes.1.domain=example.com",
		"routes.1.transport=error:no such domain",
		"routes.2={domain: \"*\", transport: \"smtp:[relay.example]:587\"}",
		"routes.2.max_messages_per_connection=100",
		NULL,
	};
	static const char *const ovr0[] = {
		"routes.0.domain=example.com", "routes.0.transport=error:no", NULL,
	};
	static const char *const env[] = {
		"SLUICE_ROUTES_0_MAX_RATE=5", NULL,
	};
	struct config cfg;
	struct config_errors errs = { 0 };
	const struct route *r;

	CHECK_FATAL(check_load(&cfg, &errs, yaml, ovr, env, NULL) == 0);
	CHECK_FATAL(cfg.nroute_cfgs == 3);
	r = route_lookup(&cfg.routes, "example.org");
	CHECK_FATAL(r != NULL);
	CHECK(r->policy.max_connections == 1);
	CHECK(r->policy.max_rate == 5.0);
	r = route_lookup(&cfg.routes, "example.com");
	CHECK_FATAL(r != NULL);
	CHECK(r->transport.kind == ROUTE_ERROR && r->transport.code == 550);
	r = route_lookup(&cfg.routes, "example.net");
	CHECK_FATAL(r != NULL && r == cfg.routes.wildcard);
	CHECK(r->transport.port == 587);
	CHECK(r->policy.max_messages_per_connection == 100);
	config_free(&cfg);

	/* On the embedded default: index 0 appends to the empty list. */
	CHECK_FATAL(check_load(&cfg, &errs, NULL, ovr0, NULL, NULL) == 0);
	r = route_lookup(&cfg.routes, "example.com");
	CHECK_FATAL(r != NULL);
	CHECK(r->transport.kind == ROUTE_ERROR);
	CHECK(r->transport.code == 550);
	CHECK(route_lookup(&cfg.routes, "example.org") == NULL);
	config_free(&cfg);
	config_errors_free(&errs);
}

int
main(void)
{
	static const struct check_case tests[] = {
		{ "routes_file", test_routes_file },
		{ "routes_relay_host", test_routes_relay_host },
		{ "routes_override", test_routes_override },
		{ "routes_tls_auth", test_routes_tls_auth },
		{ "mta_sts", test_mta_sts },
	};

	printf("%d failed\n", check_run_table(tests, NELEM(tests)));
	return check_done();
}
