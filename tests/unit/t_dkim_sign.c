/*
 * Description: DKIM keys, the signing policy and the DKIM-Signature field.
 *   - keys: a file readable by group or others, an RSA key under 1024
 *     bits, a key of the other algorithm, an encrypted key and junk are
 *     refused with a reason; inline PEM loads, also with its line ends
 *     turned into spaces; written keys are mode 0600 and never
 *     overwrite a file;
 *   - pick: the From: domain (display names, comments, quoted commas,
 *     case), none or two From: fields, a parent domain, a fixed domain;
 *   - signing: one field per key, lines under 78 columns, t= and x=,
 *     From oversigned, every instance of a repeated field signed, and
 *     each b= verifies with OpenSSL against the header hash (RSA PKCS#1
 *     v1.5 with SHA-256; Ed25519 over the hash); a changed header fails;
 *   - the pool: 200 jobs through two workers come back to their shard's
 *     eventfd, each with the fields dkim_sign_message() gives directly.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "../../dkim/dkim.h"
#include "../../dkim/dkim_int.h"
#include "check.h"

static char tmpdir[] = "/tmp/t_dkim_sign.XXXXXX";

static void
write_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);

	CHECK_FATAL(fd >= 0);
	CHECK_FATAL(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
	close(fd);
	CHECK_FATAL(chmod(path, mode) == 0);
}

static char *
pem_of(EVP_PKEY *pk, const EVP_CIPHER *enc)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *data, *copy;
	long n;

	CHECK_FATAL(PEM_write_bio_PrivateKey(b, pk, enc,
	    (unsigned char *)(enc ? "pw" : NULL), enc ? 2 : 0, NULL, NULL) == 1);
	n = BIO_get_mem_data(b, &data);
	copy = strndup(data, (size_t)n);
	BIO_free(b);
	return copy;
}

static void
test_keys(void)
{
	char path[256], why[256];
	struct dkim_key *k = NULL, *gen = NULL;
	EVP_PKEY *small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)512);
	EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	char *pem;
	struct stat st;

	CHECK_FATAL(small != NULL && ed != NULL);
	/* Ed25519 in a 0600 file: fine; 0640 or 0604: refused. */
	pem = pem_of(ed, NULL);
	snprintf(path, sizeof(path), "%s/ed.pem", tmpdir);
	write_file(path, pem, 0600);
	CHECK(dkim_key_load(path, DKIM_ED25519_SHA256, &k, why,
	    sizeof(why)) == 0);
	dkim_key_free(k);
	CHECK(dkim_key_load(path, DKIM_RSA_SHA256, &k, why, sizeof(why)) < 0);
	CHECK(strstr(why, "not an RSA key") != NULL);
	write_file(path, pem, 0640);
	CHECK(dkim_key_load(path, DKIM_ED25519_SHA256, &k, why,
	    sizeof(why)) < 0);
	CHECK(strstr(why, "chmod 600") != NULL);
	write_file(path, pem, 0604);
	CHECK(dkim_key_load(path, DKIM_ED25519_SHA256, &k, why,
	    sizeof(why)) < 0);
	CHECK(k == NULL);
	/* Inline PEM; also with its line ends folded into spaces (YAML,
	 * an environment variable). */
	CHECK(dkim_key_load(pem, DKIM_ED25519_SHA256, &k, why,
	    sizeof(why)) == 0);
	dkim_key_free(k);
	for (char *p = pem; *p != '\0'; p++)
		if (*p == '\n')
			*p = ' ';
	CHECK(dkim_key_load(pem, DKIM_ED25519_SHA256, &k, why,
	    sizeof(why)) == 0);
	dkim_key_free(k);
	free(pem);
	/* RSA-512: too weak. */
	pem = pem_of(small, NULL);
	CHECK(dkim_key_load(pem, DKIM_RSA_SHA256, &k, why, sizeof(why)) < 0);
	CHECK(strstr(why, "too weak") != NULL);
	free(pem);
	/* Encrypted: refused, and no prompt. */
	pem = pem_of(ed, EVP_aes_128_cbc());
	CHECK(dkim_key_load(pem, DKIM_ED25519_SHA256, &k, why,
	    sizeof(why)) < 0);
	free(pem);
	/* Junk, a missing file. */
	CHECK(dkim_key_load("-----BEGIN junk", DKIM_RSA_SHA256, &k, why,
	    sizeof(why)) < 0);
	CHECK(dkim_key_load("/nonexistent/key.pem", DKIM_RSA_SHA256, &k, why,
	    sizeof(why)) < 0);
	CHECK(strstr(why, "cannot open") != NULL);
	/* Generated and written: 0600, loadable, never over a file. */
	CHECK(dkim_key_generate(DKIM_ED25519_SHA256, 0, &gen, why,
	    sizeof(why)) == 0);
	snprintf(path, sizeof(path), "%s/gen.pem", tmpdir);
	CHECK(dkim_key_write(gen, path, why, sizeof(why)) == 0);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
	CHECK(dkim_key_write(gen, path, why, sizeof(why)) < 0);
	CHECK(dkim_key_load(path, DKIM_ED25519_SHA256, &k, why,
	    sizeof(why)) == 0);
	dkim_key_free(k);
	dkim_key_free(gen);
	CHECK(dkim_key_generate(DKIM_RSA_SHA256, 512, &gen, why,
	    sizeof(why)) < 0);
	EVP_PKEY_free(small);
	EVP_PKEY_free(ed);
}

static enum dkim_pick_result
pick(const struct dkim_policy *pol, const char *msg, struct dkim_pick *p)
{
	return dkim_policy_pick(pol, msg, strlen(msg), p);
}

static void
test_pick(const struct dkim_key *key)
{
	struct dkim_entry e[] = {
		{ "example.com", "s1", key },
		{ "a.example.org", "s1", key },
		{ "example.com", "s2", key },
		{ "example.net", "s1", key },
	};
	struct dkim_policy pol;
	struct dkim_pick p;

	CHECK_FATAL(dkim_policy_init(&pol, e, 4) == 0);
	CHECK(pick(&pol, "From: \"Doe, Joe\" <Joe@Example.COM>\r\n\r\nx",
	    &p) == DKIM_PICK_OK);
	CHECK(p.count == 2 && strcmp(p.from_domain, "example.com") == 0);
	/* Written order kept within a domain: s1 then s2. */
	CHECK(strcmp(pol.entries[p.first].selector, "s1") == 0);
	CHECK(strcmp(pol.entries[p.first + 1].selector, "s2") == 0);
	CHECK(pick(&pol, "Subject: x\r\nFROM:joe@example.net (Joe "
	    "<x@evil.test>)\r\n\r\n", &p) == DKIM_PICK_OK);
	CHECK(p.count == 1 && strcmp(p.from_domain, "example.net") == 0);
	CHECK(pick(&pol, "From: Joe\r\n <joe@example.net.>\r\n\r\n", &p) ==
	    DKIM_PICK_OK);
	CHECK(pick(&pol, "From: joe@other.test\r\n\r\n", &p) ==
	    DKIM_PICK_NO_KEY);
	CHECK(pick(&pol, "Subject: none\r\n\r\n", &p) == DKIM_PICK_NO_FROM);
	CHECK(pick(&pol, "From: undisclosed\r\n\r\n", &p) ==
	    DKIM_PICK_NO_FROM);
	CHECK(pick(&pol, "From: a@example.com\r\nFrom: b@example.com\r\n\r\n",
	    &p) == DKIM_PICK_MANY_FROM);
	CHECK(pick(&pol, "From: a@example.com, b@example.com\r\n\r\n", &p) ==
	    DKIM_PICK_MANY_FROM);
	/* The From: of the body is not a header. */
	CHECK(pick(&pol, "Subject: x\r\n\r\nFrom: a@example.com\r\n", &p) ==
	    DKIM_PICK_NO_FROM);
	/* Parent domains only when asked. */
	CHECK(pick(&pol, "From: a@mail.example.com\r\n\r\n", &p) ==
	    DKIM_PICK_NO_KEY);
	pol.mode = DKIM_DOMAIN_PARENT;
	CHECK(pick(&pol, "From: a@x.mail.example.com\r\n\r\n", &p) ==
	    DKIM_PICK_OK);
	CHECK(p.count == 2 &&
	    strcmp(pol.entries[p.first].domain, "example.com") == 0);
	CHECK(pick(&pol, "From: a@b.a.example.org\r\n\r\n", &p) ==
	    DKIM_PICK_OK);
	CHECK(strcmp(pol.entries[p.first].domain, "a.example.org") == 0);
	CHECK(pick(&pol, "From: a@example.org\r\n\r\n", &p) ==
	    DKIM_PICK_NO_KEY);
	pol.mode = DKIM_DOMAIN_FIXED;
	pol.fixed = "example.net";
	CHECK(pick(&pol, "From: a@anything.test\r\n\r\n", &p) ==
	    DKIM_PICK_OK);
	CHECK(p.count == 1 &&
	    strcmp(pol.entries[p.first].domain, "example.net") == 0);
	dkim_policy_free(&pol);
}

/* The value of tag in a DKIM-Signature field, FWS removed. */
static void
tag(const char *field, const char *name, char *out, size_t outlen)
{
	char pat[16];
	const char *p;
	size_t o = 0;

	snprintf(pat, sizeof(pat), " %s=", name);
	p = strstr(field, pat);
	if (p == NULL) {
		snprintf(pat, sizeof(pat), "\t%s=", name);
		p = strstr(field, pat);
	}
	out[0] = '\0';
	if (p == NULL)
		return;
	for (p += strlen(pat); *p != '\0' && *p != ';'; p++) {
		if (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
			continue;
		if (o + 1 < outlen)
			out[o++] = *p;
	}
	out[o] = '\0';
}

/* Verify one signature field over hdr with OpenSSL; 1 good, 0 bad. */
static int
verify(struct dkim_signer *sg, const struct dkim_key *key, const char *field,
    const char *hdr, size_t hdr_len, enum dkim_canon c)
{
	char h[1024], b[2048], unsigned_field[4096];
	const char *bpos = strstr(field, "b=");
	uint8_t hash[DKIM_HASH_LEN], sig[1024];
	EVP_PKEY_CTX *pc;
	EVP_MD_CTX *mc;
	int n, ok;

	/* bh= comes before b=: find the b= that is not bh=. */
	while (bpos != NULL && bpos[-1] == 'b')
		bpos = strstr(bpos + 1, "b=");
	CHECK_FATAL(bpos != NULL);
	tag(field, "h", h, sizeof(h));
	tag(bpos - 1, "b", b, sizeof(b));
	n = (int)(bpos + 2 - field);
	memcpy(unsigned_field, field, (size_t)n);
	CHECK_FATAL(dkim_hash_headers(sg, c, hdr, hdr_len, h, unsigned_field,
	    (size_t)n, hash) == 0);
	n = EVP_DecodeBlock(sig, (const unsigned char *)b, (int)strlen(b));
	CHECK_FATAL(n > 0);
	while (b[0] != '\0' && b[strlen(b) - 1] == '=') {
		b[strlen(b) - 1] = '\0';
		n--;
	}
	if (key->alg == DKIM_ED25519_SHA256) {
		mc = EVP_MD_CTX_new();
		ok = EVP_DigestVerifyInit(mc, NULL, NULL, NULL, key->pkey) == 1 &&
		    EVP_DigestVerify(mc, sig, (size_t)n, hash, sizeof(hash)) == 1;
		EVP_MD_CTX_free(mc);
		return ok;
	}
	pc = EVP_PKEY_CTX_new(key->pkey, NULL);
	ok = EVP_PKEY_verify_init(pc) == 1 &&
	    EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PADDING) == 1 &&
	    EVP_PKEY_CTX_set_signature_md(pc, EVP_sha256()) == 1 &&
	    EVP_PKEY_verify(pc, sig, (size_t)n, hash, sizeof(hash)) == 1;
	EVP_PKEY_CTX_free(pc);
	return ok;
}

static const char msg[] =
    "Received: from x by y; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
    "From: Joe <joe@example.com>\r\n"
    "To: a@example.net,\r\n\t b@example.net\r\n"
    "Subject:   Hello   there  \r\n"
    "To: c@example.net\r\n"
    "X-Unsigned: yes\r\n"
    "\r\n"
    "Body.\r\n";

static void
test_sign(struct dkim_key *rsa, struct dkim_key *ed)
{
	struct dkim_entry e[] = {
		{ "example.com", "rsa1", rsa },
		{ "example.com", "ed1", ed },
	};
	struct dkim_policy pol;
	struct dkim_signer *sg;
	struct dkim_pick p;
	struct buf out = { 0 }, tampered = { 0 };
	uint8_t bh[DKIM_HASH_LEN] = { 1, 2, 3 };
	char *f2, v[1024];
	size_t hdr_len = dkim_header_end(msg, strlen(msg), NULL);

	for (int c = DKIM_SIMPLE; c <= DKIM_RELAXED; c++) {
		CHECK_FATAL(dkim_policy_init(&pol, e, 2) == 0);
		pol.hcanon = pol.bcanon = (enum dkim_canon)c;
		pol.expire_s = c == DKIM_RELAXED ? 86400 : 0;
		sg = dkim_signer_new(&pol);
		CHECK_FATAL(sg != NULL);
		CHECK(pick(&pol, msg, &p) == DKIM_PICK_OK);
		buf_reset(&out);
		CHECK(dkim_sign_message(sg, msg, &p, bh, 1700000000, &out) == 0);
		CHECK(buf_append(&out, "", 1) == 0);
		printf("%s", out.data);
		/* Two fields; lines at most 78 columns. */
		f2 = strstr(out.data + 1, "DKIM-Signature:");
		CHECK_FATAL(f2 != NULL && strncmp(out.data, "DKIM-Signature:",
		    15) == 0);
		for (const char *l = out.data; *l != '\0'; ) {
			const char *eol = strstr(l, "\r\n");

			CHECK_FATAL(eol != NULL);
			CHECK(eol - l <= 78);
			l = eol + 2;
		}
		tag(out.data, "h", v, sizeof(v));
		CHECK(strcmp(v, "from:from:subject:to:to") == 0);
		tag(out.data, "t", v, sizeof(v));
		CHECK(strcmp(v, "1700000000") == 0);
		tag(out.data, "x", v, sizeof(v));
		CHECK(strcmp(v, c == DKIM_RELAXED ? "1700086400" : "") == 0);
		tag(out.data, "a", v, sizeof(v));
		CHECK(strcmp(v, "rsa-sha256") == 0);
		tag(f2, "a", v, sizeof(v));
		CHECK(strcmp(v, "ed25519-sha256") == 0);
		tag(out.data, "bh", v, sizeof(v));
		CHECK(strcmp(v, "AQIDAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=") ==
		    0);
		f2[-2] = '\0';	/* the first field alone */
		CHECK(verify(sg, rsa, out.data, msg, hdr_len,
		    (enum dkim_canon)c) == 1);
		CHECK(verify(sg, ed, f2, msg, hdr_len, (enum dkim_canon)c) == 1);
		/* A changed signed field fails; an unsigned one does not. */
		buf_reset(&tampered);
		CHECK(buf_puts(&tampered, msg) == 0);
		memcpy(strstr(tampered.data, "Hello"), "Jello", 5);
		CHECK(verify(sg, rsa, out.data, tampered.data, hdr_len,
		    (enum dkim_canon)c) == 0);
		CHECK(verify(sg, ed, f2, tampered.data, hdr_len,
		    (enum dkim_canon)c) == 0);
		memcpy(strstr(tampered.data, "Jello"), "Hello", 5);
		memcpy(strstr(tampered.data, "yes"), "no!", 3);
		CHECK(verify(sg, ed, f2, tampered.data, hdr_len,
		    (enum dkim_canon)c) == 1);
		dkim_signer_free(sg);
		dkim_policy_free(&pol);
	}
	buf_free(&out);
	buf_free(&tampered);
}

static void
test_pool(struct dkim_key *rsa, struct dkim_key *ed)
{
	struct dkim_entry e[] = {
		{ "example.com", "rsa1", rsa },
		{ "example.com", "ed1", ed },
	};
	enum { NJOBS = 200 };
	static struct dkim_job jobs[NJOBS];
	struct dkim_policy pol;
	struct dkim_signer *sg;
	struct dkim_pool *pool;
	struct buf want = { 0 };
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	unsigned back = 0;
	uint64_t v;

	CHECK_FATAL(efd >= 0);
	CHECK_FATAL(dkim_policy_init(&pol, e, 2) == 0);
	sg = dkim_signer_new(&pol);
	CHECK_FATAL(dkim_pool_start(&pool, &pol, 2, 1, &efd) == 0);
	for (unsigned i = 0; i < NJOBS; i++) {
		jobs[i].msg = msg;
		CHECK(pick(&pol, msg, &jobs[i].pick) == DKIM_PICK_OK);
		jobs[i].bh[0] = (uint8_t)i;
		jobs[i].now = 1700000000 + i;
		jobs[i].conn_idx = i;
		dkim_pool_submit(pool, &jobs[i]);
	}
	/* Bounded: 200 x 2 signatures take well under the 30 s here. */
	for (int t = 0; back < NJOBS && t < 300; t++) {
		struct pollfd pfd = { .fd = efd, .events = POLLIN };
		struct dkim_job *j, *next;

		(void)poll(&pfd, 1, 100);
		(void)read(efd, &v, sizeof(v));
		for (j = dkim_pool_reap(pool, 0); j != NULL; j = next) {
			next = j->next;
			CHECK(j->result == 0);
			buf_reset(&want);
			CHECK(dkim_sign_message(sg, msg, &j->pick, j->bh, j->now,
			    &want) == 0);
			CHECK(want.len == j->sig.len &&
			    memcmp(want.data, j->sig.data, want.len) == 0);
			back++;
		}
	}
	CHECK(back == NJOBS);
	dkim_pool_stop(pool);
	for (unsigned i = 0; i < NJOBS; i++)
		buf_free(&jobs[i].sig);
	buf_free(&want);
	dkim_signer_free(sg);
	dkim_policy_free(&pol);
	close(efd);
}

int
main(void)
{
	struct dkim_key *rsa = NULL, *ed = NULL;
	char why[256];

	CHECK_FATAL(mkdtemp(tmpdir) != NULL);
	test_keys();
	CHECK_FATAL(dkim_key_generate(DKIM_RSA_SHA256, 2048, &rsa, why,
	    sizeof(why)) == 0);
	CHECK_FATAL(dkim_key_generate(DKIM_ED25519_SHA256, 0, &ed, why,
	    sizeof(why)) == 0);
	test_pick(ed);
	test_sign(rsa, ed);
	test_pool(rsa, ed);
	dkim_key_free(rsa);
	dkim_key_free(ed);
	{
		char cmd[300];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
		CHECK(system(cmd) == 0);
	}
	return check_done();
}
