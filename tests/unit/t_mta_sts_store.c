/*
 * Description: the MTA-STS policies kept in the spool
 * (deliver/mta_sts_store.c) and the TLS-RPT result types
 * (deliver/mta_sts.c). A policy saved is loaded back with its id, time
 * and parsed policy; one whose max_age has run out since its fetch is not
 * loaded and its file is removed, as are a file that does not parse, a
 * file with a bad head and a leftover temporary file; a domain unfit as a
 * file name is never written; remove() removes; load() stops at max.
 * OpenSSL's verify results (codes, not texts) map to RFC 8460's result
 * types; a session that failed with its certificate verified is a
 * validation-failure.
 */
#include "check.h"
#include "../../deliver/mta_sts.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/x509_vfy.h>

#define POL "version: STSv1\nmode: enforce\nmx: mx.a.test\nmax_age: 600\n"

struct seen {
	unsigned n;
	char domain[8][64];
	char id[8][40];
	uint64_t fetched[8];
	enum mta_sts_mode mode[8];
};

static void
seen_one(const char *domain, const char *id, uint64_t fetched_s,
    const struct mta_sts_policy *pol, void *arg)
{
	struct seen *s = arg;

	if (s->n == 8)
		return;
	snprintf(s->domain[s->n], sizeof(s->domain[0]), "%s", domain);
	snprintf(s->id[s->n], sizeof(s->id[0]), "%s", id);
	s->fetched[s->n] = fetched_s;
	s->mode[s->n] = pol->mode;
	s->n++;
}

static bool
exists(const char *dir, const char *name)
{
	char p[512];
	struct stat st;

	snprintf(p, sizeof(p), "%s/mta-sts/%s", dir, name);
	return stat(p, &st) == 0;
}

static void
put(const char *dir, const char *name, const char *text)
{
	char p[512];
	FILE *f;

	snprintf(p, sizeof(p), "%s/mta-sts/%s", dir, name);
	CHECK_FATAL((f = fopen(p, "w")) != NULL);
	fputs(text, f);
	fclose(f);
}

static void
test_store(void)
{
	char dir[] = "/tmp/t_mta_sts_store.XXXXXX", why[200], cmd[300];
	uint64_t now = (uint64_t)time(NULL);
	struct seen s;

	CHECK_FATAL(mkdtemp(dir) != NULL);
	CHECK_FATAL(mta_sts_store_open(dir, why, sizeof(why)) == 0);
	mta_sts_store_save("a.test", "id1", now - 10, POL, strlen(POL));
	mta_sts_store_save("old.test", "id2", now - 601, POL, strlen(POL));
	mta_sts_store_save("../evil", "id3", now, POL, strlen(POL));
	mta_sts_store_save("gone.test", "id4", now, POL, strlen(POL));
	mta_sts_store_remove("gone.test");
	CHECK(exists(dir, "a.test") && exists(dir, "old.test"));
	CHECK(!exists(dir, "gone.test") && !exists(dir, "../evil"));
	put(dir, "bad.test", "sluice-mta-sts 1\nid x\nfetched 1\n\nnonsense\n");
	put(dir, "head.test", "something else\n\n" POL);
	put(dir, ".half.test.tmp", "sluice-mta-sts 1\n");

	memset(&s, 0, sizeof(s));
	mta_sts_store_load(10, seen_one, &s);
	CHECK(s.n == 1);
	CHECK(strcmp(s.domain[0], "a.test") == 0 &&
	    strcmp(s.id[0], "id1") == 0);
	CHECK(s.fetched[0] == now - 10 && s.mode[0] == MTA_STS_ENFORCE);
	CHECK(exists(dir, "a.test"));
	CHECK(!exists(dir, "old.test") && !exists(dir, "bad.test") &&
	    !exists(dir, "head.test") && !exists(dir, ".half.test.tmp"));

	/* A second domain, and a limit of one: one is loaded. */
	mta_sts_store_save("b.test", "id5", now, POL, strlen(POL));
	memset(&s, 0, sizeof(s));
	mta_sts_store_load(1, seen_one, &s);
	CHECK(s.n == 1);
	mta_sts_store_close();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	CHECK(system(cmd) == 0);
}

static void
test_results(void)
{
	CHECK(mta_sts_result_of_verify(tls_verify_kind_of(
	    X509_V_ERR_HOSTNAME_MISMATCH)) == MTA_STS_R_HOST_MISMATCH);
	CHECK(mta_sts_result_of_verify(tls_verify_kind_of(
	    X509_V_ERR_CERT_HAS_EXPIRED)) == MTA_STS_R_EXPIRED);
	CHECK(mta_sts_result_of_verify(tls_verify_kind_of(
	    X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY)) ==
	    MTA_STS_R_NOT_TRUSTED);
	CHECK(mta_sts_result_of_verify(tls_verify_kind_of(
	    X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT)) == MTA_STS_R_NOT_TRUSTED);
	CHECK(mta_sts_result_of_verify(tls_verify_kind_of(
	    X509_V_ERR_CERT_SIGNATURE_FAILURE)) ==
	    MTA_STS_R_VALIDATION_FAILURE);
	/* A session that failed with its certificate verified. */
	CHECK(mta_sts_result_of_verify(tls_verify_kind_of(X509_V_OK)) ==
	    MTA_STS_R_VALIDATION_FAILURE);
	CHECK(mta_sts_result_of_verify(TLS_VERIFY_NO_CERT) ==
	    MTA_STS_R_VALIDATION_FAILURE);
	CHECK(strcmp(mta_sts_result_name(MTA_STS_R_FETCH_ERROR),
	    "sts-policy-fetch-error") == 0);
	CHECK(strcmp(mta_sts_result_name(MTA_STS_R_STARTTLS_NOT_SUPPORTED),
	    "starttls-not-supported") == 0);
}

int
main(void)
{
	test_store();
	test_results();
	return check_done();
}
