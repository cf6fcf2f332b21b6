/*
 * Description: the listeners' PROXY protocol keys. Off by default with
 * no trusted networks and a 5 s header deadline; proxy_protocol,
 * proxy_trusted and proxy_timeout are read per listener (from the file,
 * -o and the environment); proxy_protocol: true with proxy_trusted
 * absent, empty or null is an error at the line that turned it on, for
 * every listener that does it; bad networks and timeouts are errors with
 * file and line.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "config_check.h"
#include "../../engine/config.h"

static void
test_defaults(void)
{
	struct config cfg;
	struct config_errors errs = { 0 };

	printf("RUN defaults\n");
	CHECK_FATAL(check_load(&cfg, &errs,
	    "listen:\n  - address: 127.0.0.1:25\n", NULL, NULL, NULL) == 0);
	CHECK(cfg.listen[0].proxy_protocol == 0);
	CHECK(cfg.listen[0].nproxy_trusted == 0);
	CHECK(cfg.listen[0].proxy_trusted == NULL);
	CHECK(cfg.listen[0].proxy_timeout_ms == 5000);
	config_free(&cfg);
}

static void
test_values(void)
{
	static const char yaml[] =
	    "listen:\n"
	    "  - address: 127.0.0.1:25\n"
	    "  - address: 127.0.0.1:2526\n"
	    "    proxy_protocol: true\n"
	    "    proxy_trusted: [10.0.0.0/8, \"fd00::/8\"]\n"
	    "    proxy_timeout: 3s\n";
	static const char *const ovr[] = {
		"listen.0.proxy_protocol=yes",
		"listen.0.proxy_trusted=[127.0.0.1]",
		NULL,
	};
	static const char *const env[] = {
		"SLUICE_LISTEN_1_PROXY_TIMEOUT=1500ms", NULL,
	};
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct config cfg;
	struct config_errors errs = { 0 };
	struct cidr c;

	printf("RUN values from the file, -o and the environment\n");
	CHECK_FATAL(check_load(&cfg, &errs, yaml, ovr, env, NULL) == 0);
	CHECK_FATAL(cfg.nlisten == 2);
	CHECK(cfg.listen[0].proxy_protocol == 1);
	CHECK_FATAL(cfg.listen[0].nproxy_trusted == 1);
	CHECK(cidr_parse("127.0.0.1/32", &c) == 0);
	CHECK(memcmp(&cfg.listen[0].proxy_trusted[0], &c, sizeof(c)) == 0);
	CHECK(cfg.listen[1].proxy_protocol == 1);
	CHECK_FATAL(cfg.listen[1].nproxy_trusted == 2);
	CHECK(cidr_parse("fd00::/8", &c) == 0);
	CHECK(memcmp(&cfg.listen[1].proxy_trusted[1], &c, sizeof(c)) == 0);
	CHECK(cfg.listen[1].proxy_timeout_ms == 1500);
	inet_pton(AF_INET, "10.20.30.40", &sin.sin_addr);
	CHECK(cidr_match(cfg.listen[1].proxy_trusted,
	    cfg.listen[1].nproxy_trusted, (struct sockaddr *)&sin));
	CHECK(!cidr_match(cfg.listen[0].proxy_trusted,
	    cfg.listen[0].nproxy_trusted, (struct sockaddr *)&sin));
	config_free(&cfg);
}

static void
test_errors(void)
{
	static const char untrusted[] =
	    "listen:\n"
	    "  - address: 127.0.0.1:25\n"
	    "    proxy_protocol: true\n"
	    "  - address: 127.0.0.1:26\n"
	    "    proxy_protocol: on\n"
	    "    proxy_trusted: []\n"
	    "  - address: 127.0.0.1:27\n"
	    "    proxy_trusted: ~\n"
	    "    proxy_protocol: true\n"
	    "  - address: 127.0.0.1:28\n"
	    "    proxy_protocol: false\n";
	static const char *const want_untrusted[] = {
		"@:3: listen.0.proxy_trusted: must list the load balancers' "
		"networks (CIDR) when proxy_protocol is true",
		"@:5: listen.1.proxy_trusted: must list the load balancers' "
		"networks (CIDR) when proxy_protocol is true",
		"@:9: listen.2.proxy_trusted: must list the load balancers' "
		"networks (CIDR) when proxy_protocol is true",
		NULL,
	};
	static const char *const ovr_on[] = {
		"listen.0.proxy_protocol=true", NULL,
	};
	static const char *const want_ovr[] = {
		"-o listen.0.proxy_protocol: listen.0.proxy_trusted: must list "
		"the load balancers' networks (CIDR) when proxy_protocol is "
		"true",
		NULL,
	};
	static const char bad_values[] =
	    "listen:\n"
	    "  - address: 127.0.0.1:25\n"
	    "    proxy_protocol: maybe\n"
	    "    proxy_trusted: [10.0.0.1/8, haproxy.example]\n"
	    "    proxy_timeout: 2h\n"
	    "hostname: mx.example\n";
	static const char *const want_bad[] = {
		"@:3: listen.0.proxy_protocol: invalid boolean 'maybe' "
		"(expected true or false)",
		"@:4: listen.0.proxy_trusted.0: invalid network '10.0.0.1/8': "
		"host bits set beyond the prefix",
		"@:4: listen.0.proxy_trusted.1: invalid network "
		"'haproxy.example': not a numeric IPv4 or IPv6 address",
		"@:5: listen.0.proxy_timeout: value must be between 100ms and "
		"5m",
		NULL,
	};
	static const char *const want_dup[] = {
		"@:4: listen.2.address: '127.0.0.1:25' is listen.0's address "
		"too",
		NULL,
	};
	struct config cfg;
	struct config_errors errs = { 0 };
	const char *file = NULL;

	printf("RUN proxy_protocol without proxy_trusted\n");
	CHECK(check_load(&cfg, &errs, untrusted, NULL, NULL,
	    &file) == 3);
	check_errors(&errs, file, want_untrusted);
	config_errors_free(&errs);

	printf("RUN turned on by -o\n");
	CHECK(check_load(&cfg, &errs, "hostname: mx.example\n", ovr_on,
	    NULL, &file) == 1);
	check_errors(&errs, file, want_ovr);
	config_errors_free(&errs);

	printf("RUN bad values\n");
	CHECK(check_load(&cfg, &errs, bad_values, NULL, NULL,
	    &file) == 4);
	check_errors(&errs, file, want_bad);
	config_errors_free(&errs);

	/* Not only a PROXY matter: two listeners on one address. */
	printf("RUN the same address twice\n");
	CHECK(check_load(&cfg, &errs,
	    "listen:\n  - address: 127.0.0.1:25\n"
	    "  - address: \"[::1]:25\"\n  - address: 127.0.0.1:25\n"
	    "hostname: mx.example\n", NULL, NULL, &file) == 1);
	check_errors(&errs, file, want_dup);
	config_errors_free(&errs);
}

int
main(void)
{
	test_defaults();
	test_values();
	test_errors();
	return check_done();
}
