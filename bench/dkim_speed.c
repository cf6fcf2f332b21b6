/*
 * dkim_speed.c - `sluice-bench dkim-speed`: what DKIM signing costs here,
 * per core, through sluice's own code (dkim/), to set beside `openssl
 * speed rsa2048 ed25519`.
 *
 * One thread per --threads signs a generated message (--size bytes, the
 * header fields of a transactional message) again and again for
 * --seconds: dkim_sign_message() with a fresh key of each algorithm asked
 * for, which is the signer threads' whole job per message (header
 * selection and canonicalisation, the header hash, the signature, the
 * folded field). The body hash, done by the shards while the data
 * streams in, is timed apart, in MB/s. Reports signatures per second per
 * thread and in total, and the CPU time per signature (getrusage).
 *
 * Exit: 0 done, 1 a signature failed, 2 usage.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "../dkim/dkim.h"
#include "../lib/clock.h"
#include "bench.h"

#define SPEED_THREADS_MAX 64

static const char speed_usage[] =
    "usage: sluice-bench dkim-speed [options]\n"
    "\n"
    "Signs one generated message in a loop with sluice's DKIM code and\n"
    "reports signatures per second (per thread and in total).\n"
    "\n"
    "  --algorithm rsa|ed25519|both   (default both: each in turn)\n"
    "  --bits N          RSA key size (default 2048)\n"
    "  --seconds S       per algorithm (default 3)\n"
    "  --threads T       signing threads (default 1: per core)\n"
    "  --size BYTES      message size (default 1024)\n"
    "  --json            one JSON object per algorithm\n"
    "  --help            this text\n";

struct speed_thread {
	pthread_t th;
	const struct dkim_policy *pol;
	const char *msg;
	size_t len;
	double seconds;
	uint64_t count;
	int failed;
};

static void *
speed_run(void *arg)
{
	struct speed_thread *t = arg;
	struct dkim_signer *sg = dkim_signer_new(t->pol);
	struct dkim_pick pick;
	struct buf out = { 0 };
	uint8_t bh[DKIM_HASH_LEN] = { 0 };
	uint64_t end;

	if (sg == NULL ||
	    dkim_policy_pick(t->pol, t->msg, t->len, &pick) != DKIM_PICK_OK) {
		t->failed = 1;
		dkim_signer_free(sg);
		return NULL;
	}
	end = clock_mono_us() + (uint64_t)(t->seconds * 1e6);
	do {
		/* A batch between clock reads: the clock costs little, but
		 * nothing is cheaper than not reading it. */
		for (int i = 0; i < 16; i++) {
			buf_reset(&out);
			if (dkim_sign_message(sg, t->msg, &pick, bh, 1700000000,
			    &out) != 0) {
				t->failed = 1;
				goto done;
			}
			t->count++;
		}
	} while (clock_mono_us() < end);
done:
	buf_free(&out);
	dkim_signer_free(sg);
	return NULL;
}

static void
make_message(struct buf *m, size_t size)
{
	static const char head[] =
	    "Received: from app1.example.com ([10.0.0.7])\r\n"
	    "\tby relay.example.com (sluice) with ESMTP id 0562E09860C00000\r\n"
	    "\tfor <someone@example.net>; Mon, 13 Nov 2023 20:13:19 +0000\r\n"
	    "From: Example Receipts <receipts@example.com>\r\n"
	    "To: Someone <someone@example.net>\r\n"
	    "Subject: Your receipt for order 123456\r\n"
	    "Date: Mon, 13 Nov 2023 20:13:19 +0000\r\n"
	    "Message-ID: <20231113201319.123456@example.com>\r\n"
	    "MIME-Version: 1.0\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "List-Unsubscribe: <https://example.com/u/123456>\r\n"
	    "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
	    "\r\n";
	size_t k = 0;

	if (buf_puts(m, head) < 0)
		abort();
	while (m->len < size)
		if (buf_printf(m, "line %zu of the receipt, thank you for your "
		    "order\r\n", k++) < 0)
			abort();
}

static double
cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	    (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* Body hash throughput, one thread, relaxed: MB/s. */
static double
body_speed(const struct buf *m)
{
	struct dkim_body b = { 0 };
	uint8_t h[DKIM_HASH_LEN];
	uint64_t t0 = clock_mono_us(), n = 0, dt;

	do {
		if (dkim_body_start(&b, DKIM_RELAXED) != 0)
			break;
		dkim_body_feed(&b, m->data, m->len);
		(void)dkim_body_final(&b, h);
		n++;
	} while ((dt = clock_mono_us() - t0) < 500000);
	dkim_body_free(&b);
	return (double)(n * m->len) / (double)(clock_mono_us() - t0);
}

static int
run_alg(enum dkim_alg alg, unsigned bits, double seconds, unsigned nthreads,
    const struct buf *m, int json)
{
	static struct speed_thread th[SPEED_THREADS_MAX];
	struct dkim_key *key = NULL;
	struct dkim_entry e;
	struct dkim_policy pol;
	char why[256];
	uint64_t total = 0, t0;
	double c0, wall, cpu;
	int failed = 0;

	if (dkim_key_generate(alg, bits, &key, why, sizeof(why)) < 0) {
		fprintf(stderr, "sluice-bench dkim-speed: %s\n", why);
		return 1;
	}
	e = (struct dkim_entry){ "example.com", "s1", key };
	if (dkim_policy_init(&pol, &e, 1) != 0)
		return 1;
	c0 = cpu_s();
	t0 = clock_mono_us();
	for (unsigned i = 0; i < nthreads; i++) {
		th[i] = (struct speed_thread){ .pol = &pol, .msg = m->data,
		    .len = m->len, .seconds = seconds };
		if (pthread_create(&th[i].th, NULL, speed_run, &th[i]) != 0)
			abort();
	}
	for (unsigned i = 0; i < nthreads; i++) {
		pthread_join(th[i].th, NULL);
		total += th[i].count;
		failed |= th[i].failed;
	}
	wall = (double)(clock_mono_us() - t0) / 1e6;
	cpu = cpu_s() - c0;
	if (json)
		printf("{\"algorithm\": \"%s\", \"bits\": %u, \"threads\": %u, "
		    "\"size\": %zu, \"seconds\": %.3f, \"signatures\": %llu, "
		    "\"per_s\": %.1f, \"per_s_per_thread\": %.1f, "
		    "\"cpu_us_per_signature\": %.2f}\n", dkim_alg_name(alg),
		    dkim_key_bits(key), nthreads, m->len, wall,
		    (unsigned long long)total, (double)total / wall,
		    (double)total / wall / nthreads,
		    total ? cpu * 1e6 / (double)total : 0.0);
	else
		printf("%-15s %5u bits  %u thread(s)  %10.1f sign/s  "
		    "%10.1f per thread  %7.2f us CPU each\n", dkim_alg_name(alg),
		    dkim_key_bits(key), nthreads, (double)total / wall,
		    (double)total / wall / nthreads,
		    total ? cpu * 1e6 / (double)total : 0.0);
	dkim_policy_free(&pol);
	dkim_key_free(key);
	return failed;
}

int
bench_dkim_speed_main(int argc, char **argv)
{
	const char *alg = "both";
	unsigned long bits = 2048, threads = 1, size = 1024;
	double seconds = 3;
	struct buf m = { 0 };
	int json = 0, rc = 0;

	for (int i = 1; i < argc; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(argv[i], "--help") == 0) {
			fputs(speed_usage, stdout);
			return 0;
		} else if (strcmp(argv[i], "--json") == 0) {
			json = 1;
			continue;
		}
		if (v == NULL)
			goto usage;
		if (strcmp(argv[i], "--algorithm") == 0)
			alg = v;
		else if (strcmp(argv[i], "--bits") == 0)
			bits = strtoul(v, NULL, 10);
		else if (strcmp(argv[i], "--seconds") == 0)
			seconds = strtod(v, NULL);
		else if (strcmp(argv[i], "--threads") == 0)
			threads = strtoul(v, NULL, 10);
		else if (strcmp(argv[i], "--size") == 0)
			size = strtoul(v, NULL, 10);
		else
			goto usage;
		i++;
	}
	if ((strcmp(alg, "rsa") != 0 && strcmp(alg, "ed25519") != 0 &&
	    strcmp(alg, "both") != 0) || threads < 1 ||
	    threads > SPEED_THREADS_MAX || seconds <= 0 || seconds > 3600 ||
	    size > (64u << 20))
		goto usage;
	make_message(&m, size);
	if (!json)
		printf("body hash (relaxed, one thread): %.0f MB/s\n",
		    body_speed(&m));
	if (strcmp(alg, "ed25519") != 0)
		rc |= run_alg(DKIM_RSA_SHA256, (unsigned)bits, seconds,
		    (unsigned)threads, &m, json);
	if (strcmp(alg, "rsa") != 0)
		rc |= run_alg(DKIM_ED25519_SHA256, 0, seconds,
		    (unsigned)threads, &m, json);
	buf_free(&m);
	return rc;
usage:
	fputs(speed_usage, stderr);
	return 2;
}
