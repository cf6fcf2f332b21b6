/*
 * bench_source.h - `sluice-bench source`, the load generator: its options,
 * exposed so that a unit test can check the parser without running a load.
 *
 * bench_source_main() (in bench.h) is the program; everything here is what
 * it parses from the command line before it opens a single socket.
 */
#ifndef SLUICE_BENCH_SOURCE_H
#define SLUICE_BENCH_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Limits on option values; each is checked by the parser. */
#define SRC_CONNECTIONS_MAX 20000
#define SRC_RECIPIENTS_MAX 1000
#define SRC_SIZE_MAX (1024ull * 1024 * 1024)	/* one message, 1 GiB */
#define SRC_ADDR_MAX 254	/* RFC 5321 4.5.3.1.3: a path, less <> */
#define SRC_HELO_MAX 255
#define SRC_AUTH_MAX 255	/* user or password */
#define SRC_HOSTPORT_MAX 64
#define SRC_RATE_MAX 10000000.0	/* --rate, messages per second */
#define SRC_DOMAINS_MAX 1000000	/* --domains */

/* Defaults, as --help states them. */
#define SRC_DEF_CONNECTIONS 10
#define SRC_DEF_MESSAGES 1000
#define SRC_DEF_SIZE 1024
#define SRC_DEF_RECIPIENTS 1
#define SRC_DEF_FROM "bench@example.com"
#define SRC_DEF_RCPT "rcpt{n}@example.net"
#define SRC_DEF_RCPT_MOD 1000
#define SRC_DEF_RCPT_DOMAINS "rcpt{n}@d{d}.bench.test"	/* with --domains */
#define SRC_DEF_HELO "sluice-bench.localdomain"
#define SRC_DEF_TIMEOUT_US 30000000ull
#define SRC_DEF_MAX_ERRORS 1000

/* --auth-mech: the server's offer decides, or one mechanism only. */
enum src_auth_mech {
	SRC_AUTH_ANY,		/* PLAIN if offered, else LOGIN */
	SRC_AUTH_PLAIN,
	SRC_AUTH_LOGIN,
};

struct bench_source_opts {
	struct sockaddr_storage to;	/* --to, numeric */
	socklen_t to_len;
	char to_text[SRC_HOSTPORT_MAX];
	uint32_t connections;		/* --connections */
	uint64_t messages;		/* --messages; 0 with --duration */
	uint64_t duration_us;		/* --duration; 0 with --messages */
	uint64_t size;			/* --size: bytes per message */
	const char *corpus;		/* --corpus DIR, or NULL */
	uint32_t recipients;		/* --recipients per message */
	uint32_t per_connection;	/* --per-connection; 0: unlimited */
	bool pipelining;		/* --pipelining on|off */
	double rate;			/* --rate msgs/s; 0: closed loop */
	const char *from;		/* --from; "" is the null sender */
	const char *rcpt;		/* --rcpt template, {n} = counter */
	uint64_t rcpt_mod;		/* --rcpt-mod; 0: never wraps */
	uint32_t domains;		/* --domains; 0: no {d} in --rcpt */
	const char *helo;		/* --helo */
	bool lmtp;			/* --lmtp */
	bool starttls;			/* --starttls */
	bool tls;			/* --tls: TLS from the first byte */
	bool tls_resume;		/* --tls-resume on|off */
	const char *tls_verify;		/* --tls-verify CAFILE, or NULL */
	bool auth;			/* --auth given */
	enum src_auth_mech auth_mech;	/* --auth-mech */
	char auth_user[SRC_AUTH_MAX + 1];
	char auth_pass[SRC_AUTH_MAX + 1];
	uint64_t timeout_us;		/* --timeout, per reply */
	uint64_t max_errors;		/* --max-errors */
	bool json;			/* --json */
	bool quiet;			/* --quiet */
};

enum bench_source_parse {
	BENCH_SOURCE_USAGE = -1,	/* an error, described in why */
	BENCH_SOURCE_RUN = 0,		/* options valid: run */
	BENCH_SOURCE_HELP = 1,		/* --help: print the usage, exit 0 */
};

/*
 * Parse argv[1..argc) (argv[0] is "source") into o, defaults first.
 * Options take their value as the next argument or after '='
 * ("--size 20k", "--size=20k"). String values point into argv. Rejects
 * unknown options, missing or malformed values, values out of range,
 * --messages with --duration, --size with --corpus, --tls with
 * --starttls, --auth-mech without --auth, a missing --to, a
 * --rcpt with {d} but no --domains, and --domains with a --rcpt that has
 * no {d}. --domains without --rcpt makes the template
 * SRC_DEF_RCPT_DOMAINS. --tls-verify implies --starttls unless --tls
 * is given.
 */
enum bench_source_parse bench_source_opts_parse(struct bench_source_opts *o,
    int argc, char **argv, char *why, size_t whylen);

/* The --help text. */
extern const char bench_source_usage[];

/*
 * Expand a --rcpt template: every "{n}" becomes n and every "{d}" becomes
 * d, in decimal. Writes a NUL-terminated address into out and returns its
 * length, or 0 when it does not fit in outlen.
 */
size_t bench_source_rcpt_expand(const char *tmpl, uint64_t n, uint64_t d,
    char *out, size_t outlen);

/* The {n} value of the counter-th recipient of the run, after --rcpt-mod. */
static inline uint64_t
bench_source_rcpt_n(uint64_t counter, uint64_t mod)
{
	return mod ? counter % mod : counter;
}

/*
 * The {d} value of the counter-th recipient: its domain's number, the
 * domains taking turns (round robin), so any run of `domains` consecutive
 * recipients covers every domain once. 0 without --domains.
 */
static inline uint64_t
bench_source_rcpt_d(uint64_t counter, uint32_t domains)
{
	return domains ? counter % domains : 0;
}

/* The address of the counter-th recipient of the run under o: as above. */
size_t bench_source_rcpt(const struct bench_source_opts *o, uint64_t counter,
    char *out, size_t outlen);

#endif
