/*
 * tls_handshake.c - `sluice-bench tls-handshake`: what a TLS handshake
 * costs the server when nothing else is done, the baseline that sluiced's
 * CPU per handshake is held against (docs/performance.md, "TLS").
 *
 * A client and a server connection of lib/tls (OpenSSL 3 over memory, as
 * sluiced and `sluice-bench source` use it) run whole handshakes against
 * each other in this one thread, each flight handed from one to the other
 * in memory: no sockets, no system calls, no other process. Only the
 * server's calls are timed (tls_new, tls_input, tls_take, tls_free), in
 * the thread's CPU time (CLOCK_THREAD_CPUTIME_ID), so the client's half
 * and the shuttling cost nothing in the figures. A full handshake is TLS
 * 1.3 with the server's certificate (ECDSA P-256 unless --cert says
 * otherwise) and OpenSSL's default key exchange (X25519); a resumed one
 * offers the ticket the server sent on the handshake before (PSK with
 * (EC)DHE: a key exchange, no signature). With --tls12 the client offers
 * TLS 1.2 at most, whose resumption is symmetric cryptography alone.
 *
 * Each round runs --count handshakes of each kind after a few not
 * counted; the report gives per round and as the median of the rounds
 * the server's CPU time per handshake in microseconds. Exit status: 0,
 * 1 when a handshake failed or a resumption was refused, 2 usage.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../lib/buf.h"
#include "../lib/tls.h"
#include "bench.h"

#define HS_DEF_COUNT 2000
#define HS_DEF_ROUNDS 5
#define HS_COUNT_MAX 10000000ul
#define HS_ROUNDS_MAX 1000ul
#define HS_WARMUP 20		/* handshakes before a round, not counted */
#define HS_FLIGHTS_MAX 8	/* a TLS 1.3 handshake takes 3; bounded */

static const char usage_text[] =
"usage: sluice-bench tls-handshake [--count N] [--rounds R] [--tls12]\n"
"                                  [--cert PEM --key PEM] [--json]\n"
"\n"
"Runs N full and N resumed TLS 1.3 handshakes per round between a client\n"
"and a server of lib/tls (OpenSSL 3 over memory) in one thread, and\n"
"reports the server's CPU time per handshake (its calls only).\n"
"\n"
"  --count N      handshakes of each kind per round (default 2000)\n"
"  --rounds R     rounds; the report gives their median (default 5)\n"
"  --tls12        the client offers TLS 1.2 at most (a TLS 1.2 resumption\n"
"                 has no key exchange; a TLS 1.3 one has)\n"
"  --cert PEM     the server's chain (default: a new self-signed ECDSA\n"
"  --key PEM      P-256 certificate, made in a temporary directory)\n"
"  --json         the report as one JSON object\n";

struct hs_opts {
	unsigned long count;
	unsigned long rounds;
	const char *cert;
	const char *key;
	bool tls12;
	bool json;
};

/* One kind of handshake over a round: sums over its handshakes. */
struct hs_sum {
	uint64_t server_ns;	/* server CPU */
	uint64_t total_ns;	/* thread CPU, both sides and the shuttling */
	unsigned long resumed;	/* handshakes the server resumed */
};

struct hs {
	struct tls_ctx *server;
	struct tls_ctx *client;
	struct tls_session *session;	/* the newest ticket, for resumption */
	struct buf c2s, s2c, plain;
	char version[32], cipher[64], group[32];
	char why[256];
};

static uint64_t
cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static bool
parse_count(const char *s, unsigned long max, unsigned long *out)
{
	unsigned long v;
	char *end;

	if (!isdigit((unsigned char)*s))
		return false;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || v == 0 || v > max)
		return false;
	*out = v;
	return true;
}

/* 0 run, 1 help, 2 usage error (said on stderr). */
static int
opts_parse(struct hs_opts *o, int argc, char **argv)
{
	const char *a, *v;
	int i;

	memset(o, 0, sizeof(*o));
	o->count = HS_DEF_COUNT;
	o->rounds = HS_DEF_ROUNDS;
	for (i = 1; i < argc; i++) {
		a = argv[i];
		if (strcmp(a, "--help") == 0)
			return 1;
		if (strcmp(a, "--json") == 0) {
			o->json = true;
			continue;
		}
		if (strcmp(a, "--tls12") == 0) {
			o->tls12 = true;
			continue;
		}
		if (strcmp(a, "--count") != 0 && strcmp(a, "--rounds") != 0 &&
		    strcmp(a, "--cert") != 0 && strcmp(a, "--key") != 0) {
			fprintf(stderr, "sluice-bench tls-handshake: unknown "
			    "argument '%s'\n", a);
			return 2;
		}
		if (i + 1 >= argc) {
			fprintf(stderr, "sluice-bench tls-handshake: %s needs "
			    "a value\n", a);
			return 2;
		}
		v = argv[++i];
		if ((strcmp(a, "--count") == 0 &&
		    !parse_count(v, HS_COUNT_MAX, &o->count)) ||
		    (strcmp(a, "--rounds") == 0 &&
		    !parse_count(v, HS_ROUNDS_MAX, &o->rounds))) {
			fprintf(stderr, "sluice-bench tls-handshake: %s: '%s' "
			    "is not a number from 1 to %lu\n", a, v,
			    strcmp(a, "--count") == 0 ? HS_COUNT_MAX :
			    HS_ROUNDS_MAX);
			return 2;
		}
		if (strcmp(a, "--cert") == 0)
			o->cert = v;
		else if (strcmp(a, "--key") == 0)
			o->key = v;
	}
	if ((o->cert == NULL) != (o->key == NULL)) {
		fprintf(stderr, "sluice-bench tls-handshake: --cert and --key "
		    "go together\n");
		return 2;
	}
	return 0;
}

/* Move what t has to send into dst (emptied first). */
static void
take(struct tls *t, struct buf *dst)
{
	buf_reset(dst);
	if (tls_pending(t) > 0)
		tls_take(t, dst);
}

/*
 * One handshake, resumed when resume and a session is at hand. Adds the
 * server's CPU to sum. 0, or -1 with h->why.
 */
static int
handshake(struct hs *h, bool resume, struct hs_sum *sum)
{
	struct tls *c, *s = NULL;
	struct tls_session *ns;
	uint64_t t0, t_all = cpu_ns(), srv = 0;
	enum tls_status cst = TLS_WANT, sst = TLS_WANT;
	unsigned flight;
	int rc = -1;

	if ((c = tls_new(h->client, NULL)) == NULL) {
		snprintf(h->why, sizeof(h->why), "out of memory");
		return -1;
	}
	if (resume && h->session != NULL &&
	    tls_session_set(c, h->session) < 0) {
		snprintf(h->why, sizeof(h->why), "the session cannot be "
		    "offered");
		goto out;
	}
	t0 = cpu_ns();
	s = tls_new(h->server, NULL);
	srv += cpu_ns() - t0;
	if (s == NULL) {
		snprintf(h->why, sizeof(h->why), "out of memory");
		goto out;
	}
	buf_reset(&h->plain);
	cst = tls_input(c, NULL, 0, &h->plain);		/* ClientHello */
	take(c, &h->c2s);
	for (flight = 0; flight < HS_FLIGHTS_MAX; flight++) {
		if (h->c2s.len > 0 || !tls_established(s)) {
			t0 = cpu_ns();
			sst = tls_input(s, h->c2s.data, h->c2s.len, &h->plain);
			take(s, &h->s2c);
			srv += cpu_ns() - t0;
			if (sst == TLS_ERROR) {
				snprintf(h->why, sizeof(h->why), "server: %s",
				    tls_why(s));
				goto out;
			}
		}
		buf_reset(&h->c2s);
		if (h->s2c.len > 0) {
			cst = tls_input(c, h->s2c.data, h->s2c.len,
			    &h->plain);
			take(c, &h->c2s);
			if (cst == TLS_ERROR) {
				snprintf(h->why, sizeof(h->why), "client: %s",
				    tls_why(c));
				goto out;
			}
		}
		if (tls_established(s) && tls_established(c) &&
		    h->c2s.len == 0)
			break;
	}
	if (!tls_established(s) || !tls_established(c)) {
		snprintf(h->why, sizeof(h->why), "no handshake after %d "
		    "flights", HS_FLIGHTS_MAX);
		goto out;
	}
	if (tls_resumed(s))
		sum->resumed++;
	if (h->version[0] == '\0') {
		snprintf(h->version, sizeof(h->version), "%s", tls_version(s));
		snprintf(h->cipher, sizeof(h->cipher), "%s", tls_cipher(s));
		snprintf(h->group, sizeof(h->group), "%s", tls_group(s));
	}
	/* The ticket came after the server's Finished: the newest is kept. */
	if ((ns = tls_session_take(c)) != NULL) {
		if (h->session != NULL)
			tls_session_free(h->session);
		h->session = ns;
	}
	rc = 0;
out:
	t0 = cpu_ns();
	tls_free(s);
	srv += cpu_ns() - t0;
	tls_free(c);
	sum->server_ns += srv;
	sum->total_ns += cpu_ns() - t_all;
	return rc;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double
median(double *v, unsigned long n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* A self-signed ECDSA P-256 pair in a new directory under TMPDIR. */
static int
make_cert(char *dir, size_t dirlen, char *cert, char *key, char *why,
    size_t whylen)
{
	const char *tmp = getenv("TMPDIR");

	snprintf(dir, dirlen, "%s/sluice-bench-tls.XXXXXX",
	    tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
	if (mkdtemp(dir) == NULL) {
		snprintf(why, whylen, "%.200s: %s", dir, strerror(errno));
		return -1;
	}
	snprintf(cert, PATH_MAX, "%s/cert.pem", dir);
	snprintf(key, PATH_MAX, "%s/key.pem", dir);
	return tls_make_selfsigned("bench.invalid", cert, key, why, whylen);
}

static void
report(const struct hs_opts *o, const struct hs *h, double *full,
    double *resumed, double *total_full, double *total_res)
{
	unsigned long r;

	if (o->json) {
		printf("{\n  \"count\": %lu,\n  \"rounds\": %lu,\n"
		    "  \"version\": \"%s\",\n  \"cipher\": \"%s\",\n"
		    "  \"group\": \"%s\",\n  \"certificate\": \"%s\",\n",
		    o->count, o->rounds, h->version, h->cipher, h->group,
		    o->cert != NULL ? o->cert : "self-signed ECDSA P-256");
		printf("  \"server_us_full\": [");
		for (r = 0; r < o->rounds; r++)
			printf("%s%.2f", r ? ", " : "", full[r]);
		printf("],\n  \"server_us_resumed\": [");
		for (r = 0; r < o->rounds; r++)
			printf("%s%.2f", r ? ", " : "", resumed[r]);
		printf("],\n");
	} else {
		printf("sluice-bench tls-handshake: %lu full and %lu resumed "
		    "handshakes per round, %lu round%s\n", o->count,
		    o->count, o->rounds, o->rounds == 1 ? "" : "s");
		printf("%-20s %s %s %s, %s\n", "tls", h->version, h->cipher,
		    h->group, o->cert != NULL ? o->cert :
		    "self-signed ECDSA P-256");
		printf("%-20s %12s %12s %14s %14s\n", "round",
		    "server full", "resumed", "both full", "both resumed");
		for (r = 0; r < o->rounds; r++)
			printf("%-20lu %9.1f us %9.1f us %11.1f us %11.1f us\n",
			    r + 1, full[r], resumed[r], total_full[r],
			    total_res[r]);
	}
	/* median() sorts: each array in place, after it was printed. */
	if (o->json)
		printf("  \"median_server_us_full\": %.2f,\n"
		    "  \"median_server_us_resumed\": %.2f,\n"
		    "  \"median_both_us_full\": %.2f,\n"
		    "  \"median_both_us_resumed\": %.2f\n}\n",
		    median(full, o->rounds), median(resumed, o->rounds),
		    median(total_full, o->rounds),
		    median(total_res, o->rounds));
	else
		printf("%-20s %9.1f us %9.1f us %11.1f us %11.1f us\n",
		    "median", median(full, o->rounds),
		    median(resumed, o->rounds), median(total_full, o->rounds),
		    median(total_res, o->rounds));
}

int
bench_tls_handshake_main(int argc, char **argv)
{
	struct tls_server_cfg sc = { .ncerts = 1 };
	struct tls_client_cfg cc = { .verify = false };
	char dir[PATH_MAX - 32] = "", cert[PATH_MAX], key[PATH_MAX];
	double *full = NULL, *res = NULL, *tfull = NULL, *tres = NULL;
	struct hs h;
	struct hs_opts o;
	struct hs_sum sf, sr;
	unsigned long r, i;
	int status = 1;

	switch (opts_parse(&o, argc, argv)) {
	case 0:
		break;
	case 1:
		fputs(usage_text, stdout);
		return 0;
	default:
		fputs(usage_text, stderr);
		return 2;
	}
	memset(&h, 0, sizeof(h));
	if (o.cert == NULL) {
		if (make_cert(dir, sizeof(dir), cert, key, h.why,
		    sizeof(h.why)) < 0)
			goto out;
		sc.cert[0] = cert;
		sc.key[0] = key;
	} else {
		sc.cert[0] = o.cert;
		sc.key[0] = o.key;
	}
	h.server = tls_ctx_server(&sc, h.why, sizeof(h.why));
	if (h.server == NULL)
		goto out;
	cc.max_tls12 = o.tls12;
	h.client = tls_ctx_client(&cc, h.why, sizeof(h.why));
	if (h.client == NULL)
		goto out;
	full = calloc(o.rounds, sizeof(*full));
	res = calloc(o.rounds, sizeof(*res));
	tfull = calloc(o.rounds, sizeof(*tfull));
	tres = calloc(o.rounds, sizeof(*tres));
	if (full == NULL || res == NULL || tfull == NULL || tres == NULL) {
		snprintf(h.why, sizeof(h.why), "out of memory");
		goto out;
	}
	for (r = 0; r < o.rounds; r++) {
		memset(&sf, 0, sizeof(sf));
		memset(&sr, 0, sizeof(sr));
		/* Warm the caches (and get a ticket); not counted. */
		for (i = 0; i < HS_WARMUP; i++)
			if (handshake(&h, i % 2, &sf) < 0)
				goto out;
		memset(&sf, 0, sizeof(sf));
		for (i = 0; i < o.count; i++)
			if (handshake(&h, false, &sf) < 0)
				goto out;
		for (i = 0; i < o.count; i++)
			if (handshake(&h, true, &sr) < 0)
				goto out;
		if (sf.resumed != 0 || sr.resumed != o.count) {
			snprintf(h.why, sizeof(h.why), "%lu of %lu full "
			    "handshakes resumed, %lu of %lu offered tickets "
			    "taken", sf.resumed, o.count, sr.resumed, o.count);
			goto out;
		}
		full[r] = (double)sf.server_ns / 1e3 / (double)o.count;
		res[r] = (double)sr.server_ns / 1e3 / (double)o.count;
		tfull[r] = (double)sf.total_ns / 1e3 / (double)o.count;
		tres[r] = (double)sr.total_ns / 1e3 / (double)o.count;
	}
	report(&o, &h, full, res, tfull, tres);
	status = 0;
out:
	if (status != 0)
		fprintf(stderr, "sluice-bench tls-handshake: %s\n", h.why);
	if (dir[0] != '\0') {
		unlink(cert);
		unlink(key);
		rmdir(dir);
	}
	if (h.session != NULL)
		tls_session_free(h.session);
	tls_ctx_free(h.server);
	tls_ctx_free(h.client);
	buf_free(&h.c2s);
	buf_free(&h.s2c);
	buf_free(&h.plain);
	free(full);
	free(res);
	free(tfull);
	free(tres);
	return status;
}
