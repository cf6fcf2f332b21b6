/*
 * Description: `sluice-bench source` option parsing: the defaults, every
 * option in both "--opt value" and "--opt=value" form, each rejected
 * value, the options that exclude each other, the expansion of the {n}
 * recipient counter with --rcpt-mod, and --domains: the {d} domain number
 * of each recipient, round robin over N domains; the TLS options (--tls,
 * --starttls, --tls-verify, --tls-resume) and --auth-mech, alone and
 * together.
 */
#include <netinet/in.h>
#include <string.h>

#include "../../bench/bench_source.h"
#include "check.h"

#define ARGS_MAX 64

static struct bench_source_opts o;
static char why[256];

/*
 * Parse "source" followed by the words of line, split at spaces (so no
 * value here may contain one; see parse_argv for those).
 */
static enum bench_source_parse
parse(const char *line)
{
	static char copy[1024];
	char *argv[ARGS_MAX], *p;
	int argc = 0;

	snprintf(copy, sizeof(copy), "%s", line);
	argv[argc++] = "source";
	for (p = strtok(copy, " "); p != NULL && argc < ARGS_MAX;
	    p = strtok(NULL, " "))
		argv[argc++] = p;
	return bench_source_opts_parse(&o, argc, argv, why, sizeof(why));
}

static enum bench_source_parse
parse_argv(int argc, char **argv)
{
	return bench_source_opts_parse(&o, argc, argv, why, sizeof(why));
}

/* Rejected, with a reason that mentions want. */
static int
refused(const char *line, const char *want)
{
	if (parse(line) != BENCH_SOURCE_USAGE) {
		fprintf(stderr, "accepted: %s\n", line);
		return 0;
	}
	if (strstr(why, want) == NULL) {
		fprintf(stderr, "'%s': reason '%s' lacks '%s'\n", line, why,
		    want);
		return 0;
	}
	return 1;
}

/* Print the verdict of a case that started with before failures. */
static void
verdict(const char *name, int before)
{
	printf("%s %s\n", check_failures == before ? "PASS" : "FAIL", name);
}

static void
test_defaults(void)
{
	const struct sockaddr_in *sin = (const struct sockaddr_in *)&o.to;
	int before = check_failures;

	printf("RUN defaults\n");
	CHECK(parse("--to 127.0.0.1:2525") == BENCH_SOURCE_RUN);
	CHECK(why[0] == '\0');
	CHECK(o.to.ss_family == AF_INET);
	CHECK(ntohs(sin->sin_port) == 2525);
	CHECK(o.to_len == sizeof(struct sockaddr_in));
	CHECK(strcmp(o.to_text, "127.0.0.1:2525") == 0);
	CHECK(o.connections == 10);
	CHECK(o.messages == 1000);
	CHECK(o.duration_us == 0);
	CHECK(o.size == 1024);
	CHECK(o.corpus == NULL);
	CHECK(o.recipients == 1);
	CHECK(o.per_connection == 0);
	CHECK(o.pipelining);
	CHECK(o.rate == 0);
	CHECK(strcmp(o.from, "bench@example.com") == 0);
	CHECK(strcmp(o.rcpt, "rcpt{n}@example.net") == 0);
	CHECK(o.rcpt_mod == 1000);
	CHECK(o.domains == 0);
	CHECK(strcmp(o.helo, SRC_DEF_HELO) == 0);
	CHECK(!o.lmtp);
	CHECK(!o.starttls);
	CHECK(!o.tls);
	CHECK(o.tls_resume);
	CHECK(o.tls_verify == NULL);
	CHECK(!o.auth);
	CHECK(o.auth_mech == SRC_AUTH_ANY);
	CHECK(o.timeout_us == 30000000);
	CHECK(o.max_errors == 1000);
	CHECK(!o.json);
	CHECK(!o.quiet);
	verdict("defaults", before);
}

static void
test_every_option(void)
{
	int before = check_failures;

	printf("RUN every option\n");
	CHECK(parse("--to [::1]:25 --connections 50 --messages 20000 "
	    "--size 20k --recipients 3 --per-connection 7 --pipelining off "
	    "--rate 1500.5 --from a@b.c --rcpt user@d{n}.example "
	    "--rcpt-mod 10 --helo client.example --lmtp --starttls "
	    "--tls-verify /tmp/ca.pem --auth bob:se:cr:et --timeout 500ms "
	    "--max-errors 3 --json --quiet") == BENCH_SOURCE_RUN);
	CHECK(o.to.ss_family == AF_INET6);
	CHECK(o.connections == 50);
	CHECK(o.messages == 20000);
	CHECK(o.size == 20480);
	CHECK(o.recipients == 3);
	CHECK(o.per_connection == 7);
	CHECK(!o.pipelining);
	CHECK(o.rate == 1500.5);
	CHECK(strcmp(o.from, "a@b.c") == 0);
	CHECK(strcmp(o.rcpt, "user@d{n}.example") == 0);
	CHECK(o.rcpt_mod == 10);
	CHECK(strcmp(o.helo, "client.example") == 0);
	CHECK(o.lmtp);
	CHECK(o.starttls);
	CHECK(strcmp(o.tls_verify, "/tmp/ca.pem") == 0);
	CHECK(o.auth);
	CHECK(strcmp(o.auth_user, "bob") == 0);
	CHECK(strcmp(o.auth_pass, "se:cr:et") == 0);	/* first ':' splits */
	CHECK(o.timeout_us == 500000);
	CHECK(o.max_errors == 3);
	CHECK(o.json);
	CHECK(o.quiet);

	/* "--opt=value", and the later of two wins. */
	CHECK(parse("--to=127.0.0.1:25 --connections=2 --connections=3 "
	    "--size=1M --pipelining=on --rcpt-mod=0") == BENCH_SOURCE_RUN);
	CHECK(o.connections == 3);
	CHECK(o.size == 1048576);
	CHECK(o.pipelining);
	CHECK(o.rcpt_mod == 0);

	/* --duration replaces the message count; --tls-verify implies
	 * --starttls; --corpus replaces the size. */
	CHECK(parse("--to 127.0.0.1:25 --duration 30s --tls-verify ca.pem "
	    "--corpus /tmp/c") == BENCH_SOURCE_RUN);
	CHECK(o.duration_us == 30000000);
	CHECK(o.messages == 0);
	CHECK(o.starttls);
	CHECK(strcmp(o.corpus, "/tmp/c") == 0);
	CHECK(parse("--to 127.0.0.1:25 --size 0") == BENCH_SOURCE_RUN);
	CHECK(o.size == 0);
	CHECK(parse("--to 127.0.0.1:25 --per-connection 0") ==
	    BENCH_SOURCE_RUN);
	CHECK(parse("--to 127.0.0.1:25 --connections 20000 "
	    "--recipients 1000") == BENCH_SOURCE_RUN);

	/* The null sender, and an empty password. */
	{
		char *argv[] = { "source", "--to", "127.0.0.1:25", "--from",
		    "", "--auth", "bob:" };

		CHECK(parse_argv(7, argv) == BENCH_SOURCE_RUN);
		CHECK(o.from[0] == '\0');
		CHECK(o.auth && strcmp(o.auth_user, "bob") == 0);
		CHECK(o.auth_pass[0] == '\0');
	}

	/* --help wins wherever it is, once the options before it parse. */
	CHECK(parse("--help") == BENCH_SOURCE_HELP);
	CHECK(parse("--to 127.0.0.1:25 --help --bogus") == BENCH_SOURCE_HELP);
	CHECK(strstr(bench_source_usage, "--rcpt-mod") != NULL);
	verdict("every option", before);
}

static void
test_errors(void)
{
	static const struct {
		const char *line;
		const char *why;
	} cases[] = {
		{ "", "--to HOST:PORT is required" },
		{ "--connections 5", "--to HOST:PORT is required" },
		{ "--to localhost:25", "--to" },
		{ "--to 127.0.0.1", "--to" },
		{ "--to", "--to needs a value" },
		{ "--to 127.0.0.1:25 --bogus", "unknown option '--bogus'" },
		{ "--to 127.0.0.1:25 stray", "unexpected argument 'stray'" },
		{ "--to 127.0.0.1:25 -c 5", "unexpected argument '-c'" },
		{ "--to 127.0.0.1:25 --json=yes", "--json takes no value" },
		{ "--to 127.0.0.1:25 --connections 0", "--connections" },
		{ "--to 127.0.0.1:25 --connections 20001", "--connections" },
		{ "--to 127.0.0.1:25 --connections x", "--connections" },
		{ "--to 127.0.0.1:25 --connections -1", "--connections" },
		{ "--to 127.0.0.1:25 --connections 5x", "--connections" },
		{ "--to 127.0.0.1:25 --messages 0", "--messages" },
		{ "--to 127.0.0.1:25 --messages 99999999999999999999",
		    "--messages" },
		{ "--to 127.0.0.1:25 --duration 0", "--duration" },
		{ "--to 127.0.0.1:25 --duration 5x", "--duration" },
		{ "--to 127.0.0.1:25 --size 1X", "--size" },
		{ "--to 127.0.0.1:25 --size 2G", "--size" },
		{ "--to 127.0.0.1:25 --recipients 0", "--recipients" },
		{ "--to 127.0.0.1:25 --recipients 1001", "--recipients" },
		{ "--to 127.0.0.1:25 --per-connection -1", "--per-connection" },
		{ "--to 127.0.0.1:25 --pipelining yes", "--pipelining" },
		{ "--to 127.0.0.1:25 --rate 0", "--rate" },
		{ "--to 127.0.0.1:25 --rate -5", "--rate" },
		{ "--to 127.0.0.1:25 --rate fast", "--rate" },
		{ "--to 127.0.0.1:25 --rate 1e99", "--rate" },
		{ "--to 127.0.0.1:25 --from <a@b>", "--from" },
		{ "--to 127.0.0.1:25 --rcpt a<b", "--rcpt" },
		{ "--to 127.0.0.1:25 --rcpt-mod x", "--rcpt-mod" },
		{ "--to 127.0.0.1:25 --timeout 0", "--timeout" },
		{ "--to 127.0.0.1:25 --timeout soon", "--timeout" },
		{ "--to 127.0.0.1:25 --max-errors 0", "--max-errors" },
		{ "--to 127.0.0.1:25 --auth bob", "--auth" },
		{ "--to 127.0.0.1:25 --auth :pw", "--auth" },
		{ "--to 127.0.0.1:25 --messages 5 --duration 1s",
		    "exclude each other" },
		{ "--to 127.0.0.1:25 --duration 1s --messages 5",
		    "exclude each other" },
		{ "--to 127.0.0.1:25 --size 5k --corpus /tmp",
		    "exclude each other" },
		{ "--to 127.0.0.1:25 --tls --starttls",
		    "--tls and --starttls exclude each other" },
		{ "--to 127.0.0.1:25 --starttls --tls",
		    "--tls and --starttls exclude each other" },
		{ "--to 127.0.0.1:25 --tls=yes", "--tls takes no value" },
		{ "--to 127.0.0.1:25 --tls-resume", "--tls-resume needs a "
		    "value" },
		{ "--to 127.0.0.1:25 --tls-resume yes", "--tls-resume: 'yes' "
		    "is not on or off" },
		{ "--to 127.0.0.1:25 --auth-mech CRAM-MD5 --auth a:b",
		    "--auth-mech: 'CRAM-MD5' is not PLAIN or LOGIN" },
		{ "--to 127.0.0.1:25 --auth-mech plain",
		    "--auth-mech needs --auth" },
	};
	int before = check_failures;
	size_t i;

	printf("RUN errors\n");
	for (i = 0; i < NELEM(cases); i++)
		CHECK(refused(cases[i].line, cases[i].why));

	/* Values that need an argv of their own: empty, spaces, length. */
	{
		char helo[SRC_HELO_MAX + 2], user[SRC_AUTH_MAX + 8];
		char rcpt[SRC_ADDR_MAX + 2];
		char *a1[] = { "source", "--to", "127.0.0.1:25", "--rcpt", "" };
		char *a2[] = { "source", "--to", "127.0.0.1:25", "--helo",
		    "a b" };
		char *a3[] = { "source", "--to", "127.0.0.1:25", "--helo", "" };
		char *a4[] = { "source", "--to", "127.0.0.1:25", "--helo",
		    helo };
		char *a5[] = { "source", "--to", "127.0.0.1:25", "--auth",
		    user };
		char *a6[] = { "source", "--to", "127.0.0.1:25", "--rcpt",
		    rcpt };
		char *a7[] = { "source", "--to", "127.0.0.1:25", "--from",
		    "a b@c" };
		char *a8[] = { "source", "--to", "127.0.0.1:25", "--corpus",
		    "" };

		memset(helo, 'h', sizeof(helo) - 1);
		helo[sizeof(helo) - 1] = '\0';
		memset(user, 'u', SRC_AUTH_MAX + 1);
		strcpy(user + SRC_AUTH_MAX + 1, ":pw");
		/* Fits as written, but not once {n} grows to 20 digits. */
		memset(rcpt, 'r', SRC_ADDR_MAX - 10);
		strcpy(rcpt + SRC_ADDR_MAX - 10, "{n}@x");
		CHECK(parse_argv(5, a1) == BENCH_SOURCE_USAGE);
		CHECK(parse_argv(5, a2) == BENCH_SOURCE_USAGE);
		CHECK(parse_argv(5, a3) == BENCH_SOURCE_USAGE);
		CHECK(parse_argv(5, a4) == BENCH_SOURCE_USAGE);
		CHECK(parse_argv(5, a5) == BENCH_SOURCE_USAGE);
		CHECK(parse_argv(5, a6) == BENCH_SOURCE_USAGE);
		CHECK(parse_argv(5, a7) == BENCH_SOURCE_USAGE);
		CHECK(parse_argv(5, a8) == BENCH_SOURCE_USAGE);
		/* One byte shorter than the limit: accepted. */
		helo[SRC_HELO_MAX] = '\0';
		CHECK(parse_argv(5, a4) == BENCH_SOURCE_RUN);
	}
	verdict("errors", before);
}

/* --tls, --starttls, --tls-verify, --tls-resume, --auth-mech. */
static void
test_tls_auth(void)
{
	int before = check_failures;

	printf("RUN tls and auth\n");
	/* Implicit TLS: not STARTTLS, resumption on by default. */
	CHECK(parse("--to 127.0.0.1:465 --tls") == BENCH_SOURCE_RUN);
	CHECK(o.tls);
	CHECK(!o.starttls);
	CHECK(o.tls_resume);
	CHECK(o.tls_verify == NULL);
	/* --tls-verify with --tls verifies the implicit handshake only. */
	CHECK(parse("--to 127.0.0.1:465 --tls-verify ca.pem --tls") ==
	    BENCH_SOURCE_RUN);
	CHECK(o.tls && !o.starttls);
	CHECK(strcmp(o.tls_verify, "ca.pem") == 0);
	CHECK(parse("--to 127.0.0.1:465 --tls --tls-verify=ca.pem") ==
	    BENCH_SOURCE_RUN);
	CHECK(o.tls && !o.starttls);
	/* Without --tls it still means STARTTLS, in either order. */
	CHECK(parse("--to 127.0.0.1:25 --tls-verify ca.pem --starttls") ==
	    BENCH_SOURCE_RUN);
	CHECK(o.starttls && !o.tls);
	/* --tls-resume off|on, the later wins. */
	CHECK(parse("--to 127.0.0.1:25 --starttls --tls-resume off") ==
	    BENCH_SOURCE_RUN);
	CHECK(!o.tls_resume);
	CHECK(parse("--to 127.0.0.1:25 --tls --tls-resume=off "
	    "--tls-resume on") == BENCH_SOURCE_RUN);
	CHECK(o.tls_resume);
	/* The mechanism, in any case; it needs --auth. */
	CHECK(parse("--to 127.0.0.1:587 --starttls --auth u:p --auth-mech "
	    "LOGIN") == BENCH_SOURCE_RUN);
	CHECK(o.auth && o.auth_mech == SRC_AUTH_LOGIN);
	CHECK(parse("--to 127.0.0.1:587 --auth-mech=plain --auth u:p") ==
	    BENCH_SOURCE_RUN);
	CHECK(o.auth_mech == SRC_AUTH_PLAIN);
	CHECK(parse("--to 127.0.0.1:587 --auth u:p") == BENCH_SOURCE_RUN);
	CHECK(o.auth_mech == SRC_AUTH_ANY);
	CHECK(strstr(bench_source_usage, "--tls-resume") != NULL);
	CHECK(strstr(bench_source_usage, "--auth-mech") != NULL);
	verdict("tls and auth", before);
}

static void
test_rcpt_expand(void)
{
	int before = check_failures;
	char out[64];

	printf("RUN rcpt expansion\n");
	CHECK(bench_source_rcpt_expand("rcpt{n}@example.net", 5, 0, out,
	    sizeof(out)) == 17);
	CHECK(strcmp(out, "rcpt5@example.net") == 0);
	CHECK(bench_source_rcpt_expand("user@d{n}.example", 123, 0, out,
	    sizeof(out)) == 17);
	CHECK(strcmp(out, "user@d123.example") == 0);
	/* Every occurrence, and braces that are not {n} stay. */
	CHECK(bench_source_rcpt_expand("{n}.{n}@{x}{n", 42, 0, out,
	    sizeof(out)) > 0);
	CHECK(strcmp(out, "42.42@{x}{n") == 0);
	CHECK(bench_source_rcpt_expand("fixed@example.net", 9, 0, out,
	    sizeof(out)) > 0);
	CHECK(strcmp(out, "fixed@example.net") == 0);
	CHECK(bench_source_rcpt_expand("a{n}", UINT64_MAX, 0, out,
	    sizeof(out)) == 21);
	CHECK(strcmp(out, "a18446744073709551615") == 0);
	/* Exactly fitting (with its NUL), and one byte short. */
	CHECK(bench_source_rcpt_expand("ab{n}", 7, 0, out, 4) == 3);
	CHECK(strcmp(out, "ab7") == 0);
	CHECK(bench_source_rcpt_expand("ab{n}", 10, 0, out, 4) == 0);
	/* {d} is the second value, {n} the first, each wherever it is. */
	CHECK(bench_source_rcpt_expand("r{n}@d{d}.x{d}", 12, 345, out,
	    sizeof(out)) == 13);
	CHECK(strcmp(out, "r12@d345.x345") == 0);
	CHECK(bench_source_rcpt_expand("{d}", 10, 100, out, 4) == 3);
	CHECK(bench_source_rcpt_expand("{d}", 10, 1000, out, 4) == 0);
	CHECK(bench_source_rcpt_expand("abcd", 0, 0, out, 4) == 0);

	/* The counter advances per recipient and wraps at --rcpt-mod. */
	CHECK(bench_source_rcpt_n(0, 1000) == 0);
	CHECK(bench_source_rcpt_n(999, 1000) == 999);
	CHECK(bench_source_rcpt_n(1000, 1000) == 0);
	CHECK(bench_source_rcpt_n(2005, 1000) == 5);
	CHECK(bench_source_rcpt_n(7, 1) == 0);
	CHECK(bench_source_rcpt_n(123456789, 0) == 123456789);
	verdict("rcpt expansion", before);
}

/* --domains N: recipient k goes to domain k mod N, named by {d}. */
static void
test_domains(void)
{
	int before = check_failures;
	unsigned seen[7];
	char out[128], want[128];
	uint64_t k;
	unsigned d;

	printf("RUN domains\n");
	/* Without --rcpt the template names the domains d0..d{N-1}. */
	CHECK(parse("--to 127.0.0.1:25 --domains 1000") == BENCH_SOURCE_RUN);
	CHECK(o.domains == 1000);
	CHECK(strcmp(o.rcpt, SRC_DEF_RCPT_DOMAINS) == 0);
	CHECK(strcmp(o.rcpt, "rcpt{n}@d{d}.bench.test") == 0);
	CHECK(bench_source_rcpt(&o, 0, out, sizeof(out)) > 0);
	CHECK(strcmp(out, "rcpt0@d0.bench.test") == 0);
	CHECK(bench_source_rcpt(&o, 999, out, sizeof(out)) > 0);
	CHECK(strcmp(out, "rcpt999@d999.bench.test") == 0);
	CHECK(bench_source_rcpt(&o, 1000, out, sizeof(out)) > 0);
	CHECK(strcmp(out, "rcpt0@d0.bench.test") == 0);
	CHECK(bench_source_rcpt(&o, 123456, out, sizeof(out)) > 0);
	CHECK(strcmp(out, "rcpt456@d456.bench.test") == 0);

	/* A template of one's own, before or after --domains, "=" form;
	 * {n} keeps its own modulus. */
	CHECK(parse("--rcpt u{n}@m{d}.example --to 127.0.0.1:25 "
	    "--domains=7 --rcpt-mod 3") == BENCH_SOURCE_RUN);
	CHECK(o.domains == 7);
	CHECK(strcmp(o.rcpt, "u{n}@m{d}.example") == 0);
	memset(seen, 0, sizeof(seen));
	for (k = 0; k < 70; k++) {
		CHECK(bench_source_rcpt(&o, k, out, sizeof(out)) > 0);
		snprintf(want, sizeof(want), "u%u@m%u.example",
		    (unsigned)(k % 3), (unsigned)(k % 7));
		CHECK(strcmp(out, want) == 0);
		d = (unsigned)bench_source_rcpt_d(k, o.domains);
		CHECK(d < 7);
		if (d < 7)
			seen[d]++;
	}
	/* Round robin: 70 recipients, every one of 7 domains 10 times. */
	for (d = 0; d < 7; d++)
		CHECK(seen[d] == 10);
	CHECK(bench_source_rcpt_d(5, 0) == 0);
	CHECK(bench_source_rcpt_d(5, 1) == 0);
	CHECK(bench_source_rcpt_d(8, 7) == 1);

	/* One domain, and the largest count. */
	CHECK(parse("--to 127.0.0.1:25 --domains 1") == BENCH_SOURCE_RUN);
	CHECK(bench_source_rcpt(&o, 41, out, sizeof(out)) > 0);
	CHECK(strcmp(out, "rcpt41@d0.bench.test") == 0);
	CHECK(parse("--to 127.0.0.1:25 --domains 1000000") ==
	    BENCH_SOURCE_RUN);
	CHECK(o.domains == SRC_DOMAINS_MAX);
	/* Without --domains the default template is untouched. */
	CHECK(parse("--to 127.0.0.1:25") == BENCH_SOURCE_RUN);
	CHECK(strcmp(o.rcpt, SRC_DEF_RCPT) == 0);
	CHECK(bench_source_rcpt(&o, 1005, out, sizeof(out)) > 0);
	CHECK(strcmp(out, "rcpt5@example.net") == 0);

	CHECK(refused("--to 127.0.0.1:25 --domains 0", "--domains"));
	CHECK(refused("--to 127.0.0.1:25 --domains 1000001", "--domains"));
	CHECK(refused("--to 127.0.0.1:25 --domains many", "--domains"));
	CHECK(refused("--to 127.0.0.1:25 --domains -3", "--domains"));
	CHECK(refused("--to 127.0.0.1:25 --domains", "--domains needs a "
	    "value"));
	CHECK(refused("--to 127.0.0.1:25 --domains 5 --rcpt a{n}@b.c",
	    "has no {d}"));
	CHECK(refused("--to 127.0.0.1:25 --rcpt a@d{d}.c",
	    "{d} needs --domains"));
	CHECK(strstr(bench_source_usage, "--domains N") != NULL);
	verdict("domains", before);
}

int
main(void)
{
	test_defaults();
	test_every_option();
	test_errors();
	test_tls_auth();
	test_rcpt_expand();
	test_domains();
	return check_done();
}
