/*
 * dkim_key.c - DKIM private keys: loading (PEM, once, at configuration
 * time), generating, writing, and the public half as a DNS TXT record.
 *
 * The only file that reads key material. A key file must be a regular
 * file that neither group nor others can access: a signing key readable
 * by every local user lets any of them sign as the domain. RSA keys below
 * 1024 bits are refused (RFC 8301 section 3.2: verifiers must not accept
 * them), and above 4096 (verifiers need not take them). The PEM text read
 * is wiped from memory once parsed. An encrypted key is refused rather
 * than prompting: nobody is at a terminal when sluiced starts.
 */
#include "dkim.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "dkim_int.h"
#include "../lib/secret.h"

/* A passphrase callback that has none: encrypted keys fail to load. */
static int
no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

static void
openssl_reason(char *buf, size_t len)
{
	unsigned long e = ERR_peek_last_error();

	if (e == 0)
		snprintf(buf, len, "unknown error");
	else
		ERR_error_string_n(e, buf, len);
	ERR_clear_error();
}

/* A key file's text (lib/secret.h: owner only), NUL-terminated. */
static char *
read_key_file(const char *path, size_t *lenp, char *why, size_t whylen)
{
	char *buf = secret_read(path, "key file", SECRET_OWNER_ONLY,
	    DKIM_KEY_FILE_MAX, lenp, why, whylen);

	if (buf != NULL && *lenp == 0) {
		snprintf(why, whylen, "key file %s is empty", path);
		secret_free(buf, 0);
		return NULL;
	}
	return buf;
}

/* The checks every key passes, loaded or generated. */
static int
key_check(EVP_PKEY *pk, enum dkim_alg alg, char *why, size_t whylen)
{
	int id = EVP_PKEY_get_base_id(pk), bits = EVP_PKEY_get_bits(pk);

	if (alg == DKIM_RSA_SHA256) {
		if (id != EVP_PKEY_RSA) {
			snprintf(why, whylen, "not an RSA key (algorithm "
			    "rsa-sha256 needs one)");
			return -1;
		}
		if (bits < DKIM_RSA_BITS_MIN) {
			snprintf(why, whylen, "RSA key of %d bits is too weak: "
			    "at least %d (2048 recommended)", bits,
			    DKIM_RSA_BITS_MIN);
			return -1;
		}
		if (bits > DKIM_RSA_BITS_MAX) {
			snprintf(why, whylen, "RSA key of %d bits: verifiers "
			    "need only take up to %d (RFC 8301)", bits,
			    DKIM_RSA_BITS_MAX);
			return -1;
		}
		return 0;
	}
	if (id != EVP_PKEY_ED25519) {
		snprintf(why, whylen, "not an Ed25519 key (algorithm "
		    "ed25519-sha256 needs one)");
		return -1;
	}
	return 0;
}

static struct dkim_key *
key_wrap(EVP_PKEY *pk, enum dkim_alg alg)
{
	struct dkim_key *k = calloc(1, sizeof(*k));

	if (k == NULL)
		return NULL;
	k->pkey = pk;
	k->alg = alg;
	k->bits = (unsigned)EVP_PKEY_get_bits(pk);
	return k;
}

/*
 * Inline PEM whose line ends became spaces (a YAML plain scalar folds
 * them, an environment variable set from one line): put the line ends
 * back, after the BEGIN line, between the base64 words and before the
 * END line, so that the PEM reader takes it. A malloc'd copy; NULL when
 * spec needs none (it has line ends) or has no END line.
 */
static char *
pem_unfold(const char *spec)
{
	const char *body, *end;
	char *copy, *o;

	if (strchr(spec, '\n') != NULL)
		return NULL;
	body = strstr(spec + 10, "-----");	/* the BEGIN line's end */
	end = body != NULL ? strstr(body + 5, "-----END") : NULL;
	if (end == NULL)
		return NULL;
	body += 5;
	copy = malloc(strlen(spec) + 3);
	if (copy == NULL)
		return NULL;
	o = copy;
	memcpy(o, spec, (size_t)(body - spec));
	o += body - spec;
	*o++ = '\n';
	for (const char *p = body; p < end; p++) {
		if (*p == ' ' || *p == '\t') {
			if (o[-1] != '\n')
				*o++ = '\n';
		} else {
			*o++ = *p;
		}
	}
	if (o[-1] != '\n')
		*o++ = '\n';
	strcpy(o, end);
	return copy;
}

int
dkim_key_load(const char *spec, enum dkim_alg alg, struct dkim_key **out,
    char *why, size_t whylen)
{
	static const char pem_start[] = "-----BEGIN";
	bool inline_pem = strncmp(spec, pem_start, sizeof(pem_start) - 1) == 0;
	char *text = NULL, reason[160];
	EVP_PKEY *pk = NULL;
	size_t len;
	BIO *bio;

	*out = NULL;
	if (inline_pem) {
		/* Kept in text, wiped below like a file's contents. */
		text = pem_unfold(spec);
		if (text != NULL)
			spec = text;
		len = strlen(spec);
	} else {
		text = read_key_file(spec, &len, why, whylen);
		if (text == NULL)
			return -1;
	}
	bio = BIO_new_mem_buf(inline_pem ? spec : text, (int)len);
	if (inline_pem && text != NULL)
		spec = "inline";	/* no pointer into what is wiped */
	if (bio != NULL)
		pk = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
	BIO_free(bio);
	if (text != NULL) {
		OPENSSL_cleanse(text, len);
		free(text);
	}
	if (pk == NULL) {
		openssl_reason(reason, sizeof(reason));
		snprintf(why, whylen, "%s%s: no unencrypted PEM private key "
		    "(%s)", inline_pem ? "inline key" : "key file ",
		    inline_pem ? "" : spec, reason);
		return -1;
	}
	if (key_check(pk, alg, why, whylen) < 0 ||
	    (*out = key_wrap(pk, alg)) == NULL) {
		if (*out == NULL && why[0] == '\0')
			snprintf(why, whylen, "out of memory");
		EVP_PKEY_free(pk);
		return -1;
	}
	return 0;
}

int
dkim_key_generate(enum dkim_alg alg, unsigned bits, struct dkim_key **out,
    char *why, size_t whylen)
{
	EVP_PKEY *pk;
	char reason[160];

	*out = NULL;
	if (alg == DKIM_RSA_SHA256 &&
	    (bits < DKIM_RSA_BITS_MIN || bits > DKIM_RSA_BITS_MAX)) {
		snprintf(why, whylen, "RSA keys have %d to %d bits",
		    DKIM_RSA_BITS_MIN, DKIM_RSA_BITS_MAX);
		return -1;
	}
	pk = alg == DKIM_RSA_SHA256 ?
	    EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits) :
	    EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	if (pk == NULL) {
		openssl_reason(reason, sizeof(reason));
		snprintf(why, whylen, "key generation failed: %s", reason);
		return -1;
	}
	if ((*out = key_wrap(pk, alg)) == NULL) {
		EVP_PKEY_free(pk);
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	return 0;
}

int
dkim_key_ed25519_seed(const uint8_t seed[32], struct dkim_key **out)
{
	EVP_PKEY *pk = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL,
	    seed, 32);

	*out = NULL;
	if (pk == NULL)
		return -EIO;
	if ((*out = key_wrap(pk, DKIM_ED25519_SHA256)) == NULL) {
		EVP_PKEY_free(pk);
		return -ENOMEM;
	}
	return 0;
}

int
dkim_key_write(const struct dkim_key *k, const char *path, char *why,
    size_t whylen)
{
	char reason[160];
	BIO *bio;
	int fd, ok;

	/* Created 0600 and never over an existing file: no window in which
	 * the key is readable, and no key lost by a typo. */
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(why, whylen, "cannot create %s: %s", path,
		    strerror(errno));
		return -1;
	}
	bio = BIO_new_fd(fd, BIO_NOCLOSE);
	ok = bio != NULL && PEM_write_bio_PrivateKey(bio, k->pkey, NULL, NULL,
	    0, NULL, NULL) == 1 && BIO_flush(bio) == 1;
	BIO_free(bio);
	if (ok && fsync(fd) < 0)
		ok = 0;
	if (close(fd) < 0)
		ok = 0;
	if (!ok) {
		openssl_reason(reason, sizeof(reason));
		snprintf(why, whylen, "cannot write %s: %s", path, reason);
		unlink(path);
		return -1;
	}
	return 0;
}

void
dkim_key_free(struct dkim_key *k)
{
	if (k == NULL)
		return;
	EVP_PKEY_free(k->pkey);
	free(k);
}

enum dkim_alg
dkim_key_alg(const struct dkim_key *k)
{
	return k->alg;
}

unsigned
dkim_key_bits(const struct dkim_key *k)
{
	return k->bits;
}

/* The p= value: base64 of what the record publishes. -ENOMEM, -EIO. */
static int
public_b64(const struct dkim_key *k, struct buf *out)
{
	unsigned char raw[32], *der = NULL;
	const unsigned char *pub;
	size_t len = sizeof(raw);
	int n, rc;

	if (k->alg == DKIM_ED25519_SHA256) {
		if (EVP_PKEY_get_raw_public_key(k->pkey, raw, &len) != 1)
			return -EIO;
		pub = raw;
	} else {
		n = i2d_PUBKEY(k->pkey, &der);
		if (n <= 0)
			return -EIO;
		pub = der;
		len = (size_t)n;
	}
	rc = dkim_b64_append(out, pub, len);
	OPENSSL_free(der);
	return rc;
}

int
dkim_key_record(const struct dkim_key *k, struct buf *out)
{
	size_t len0 = out->len;
	int rc;

	rc = buf_printf(out, "v=DKIM1; k=%s; p=",
	    k->alg == DKIM_RSA_SHA256 ? "rsa" : "ed25519");
	if (rc == 0)
		rc = public_b64(k, out);
	if (rc < 0)
		out->len = len0;
	return rc;
}

/* Copy of a tag's value from a tag=value list, WSP removed; or -1. */
static int
tag_value(const char *txt, const char *tag, char *val, size_t vlen)
{
	size_t tl = strlen(tag);
	const char *p = txt;

	while (*p != '\0') {
		const char *semi = strchr(p, ';'), *end, *eq;
		size_t o = 0;

		end = semi != NULL ? semi : p + strlen(p);
		while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' ||
		    *p == '\n'))
			p++;
		eq = memchr(p, '=', (size_t)(end - p));
		if (eq != NULL) {
			const char *ne = eq;

			while (ne > p && (ne[-1] == ' ' || ne[-1] == '\t'))
				ne--;
			if ((size_t)(ne - p) == tl && memcmp(p, tag, tl) == 0) {
				for (const char *q = eq + 1; q < end; q++) {
					if (*q == ' ' || *q == '\t' ||
					    *q == '\r' || *q == '\n')
						continue;
					if (o + 1 >= vlen)
						return -1;
					val[o++] = *q;
				}
				val[o] = '\0';
				return 0;
			}
		}
		p = semi != NULL ? semi + 1 : end;
	}
	return -1;
}

int
dkim_key_record_matches(const struct dkim_key *k, const char *txt,
    char *why, size_t whylen)
{
	char v[16], kt[16], p[2048];
	struct buf mine = { 0 };
	int rc;

	if (tag_value(txt, "p", p, sizeof(p)) < 0) {
		snprintf(why, whylen, "no p= tag: not a DKIM key record");
		return -1;
	}
	if (tag_value(txt, "v", v, sizeof(v)) == 0 && strcmp(v, "DKIM1") != 0) {
		snprintf(why, whylen, "v=%s: not a DKIM key record", v);
		return -1;
	}
	if (tag_value(txt, "k", kt, sizeof(kt)) < 0)
		strcpy(kt, "rsa");	/* the default (RFC 6376 3.6.1) */
	if (strcmp(kt, k->alg == DKIM_RSA_SHA256 ? "rsa" : "ed25519") != 0) {
		snprintf(why, whylen, "the record is for k=%s, the key is %s",
		    kt, k->alg == DKIM_RSA_SHA256 ? "rsa" : "ed25519");
		return 0;
	}
	if (p[0] == '\0') {
		snprintf(why, whylen, "the record's key is revoked (empty p=)");
		return 0;
	}
	if ((rc = public_b64(k, &mine)) < 0) {
		snprintf(why, whylen, "cannot encode the public key");
		buf_free(&mine);
		return -1;
	}
	rc = mine.len == strlen(p) && memcmp(mine.data, p, mine.len) == 0;
	if (!rc)
		snprintf(why, whylen, "the published p= is another key");
	buf_free(&mine);
	return rc;
}
