/*
 * tls.c - TLS over OpenSSL 3 from memory; see tls.h.
 *
 * The seam is one BIO of our own per connection, for both directions:
 * its read hands OpenSSL the ciphertext of the current tls_input() call
 * (a borrowed window, never copied into a BIO_s_mem() first) and says
 * "retry" when the window is used up, which is how the handshake and
 * SSL_read() return to us; its write appends records to t->out and never
 * refuses short of TLS_OUT_MAX, so OpenSSL never sees WANT_WRITE and
 * every write is whole. A record that arrives in pieces waits in
 * OpenSSL's own read buffer, so nothing of a window is left over when a
 * call returns (short of an error, after which nothing more is read).
 *
 * SSL_MODE_RELEASE_BUFFERS lets OpenSSL free its record buffers while a
 * connection is idle: what an idle TLS session costs is the SSL object.
 */
#include "tls.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* Room made in plain for one SSL_read(): a whole record's plaintext. */
#define TLS_READ_CHUNK 16384
/* Plaintext handed to one SSL_write(); it splits records itself. */
#define TLS_WRITE_CHUNK (1u << 20)
/* Self-signed certificates: ten years. */
#define TLS_SELFSIGNED_DAYS 3650

/*
 * TLS 1.2: ECDHE key exchange (forward secrecy) and AEAD ciphers only,
 * ECDSA before RSA, 256-bit first. TLS 1.3's suites are all strong and
 * stay OpenSSL's (AES-256-GCM, ChaCha20-Poly1305, AES-128-GCM).
 */
#define TLS12_CIPHERS \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:" \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"

struct tls_ctx {
	SSL_CTX *ctx;
	bool server;
};

struct tls {
	SSL *ssl;
	const unsigned char *in;	/* the window of this tls_input() */
	size_t in_len;
	struct buf out;			/* records waiting to be taken */
	SSL_SESSION *session;		/* client: newest offered, ours */
	bool established;
	bool closed;			/* close_notify queued */
	bool out_failed;		/* the BIO could not keep a record */
	bool dane;			/* SSL_dane_enable() done */
	char why[192];
};

/* ---- the BIO over the caller's buffers --------------------------------- */

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static int
bio_read(BIO *b, char *p, int len)
{
	struct tls *t = BIO_get_data(b);
	size_t n;

	BIO_clear_retry_flags(b);
	if (len <= 0)
		return 0;
	if (t->in_len == 0) {
		/* Used up: OpenSSL returns WANT_READ to tls_input(). */
		BIO_set_retry_read(b);
		return -1;
	}
	n = t->in_len < (size_t)len ? t->in_len : (size_t)len;
	memcpy(p, t->in, n);
	t->in += n;
	t->in_len -= n;
	return (int)n;
}

static int
bio_write(BIO *b, const char *p, int len)
{
	struct tls *t = BIO_get_data(b);

	BIO_clear_retry_flags(b);
	if (len <= 0)
		return 0;
	if ((size_t)len > TLS_OUT_MAX - t->out.len ||
	    buf_append(&t->out, p, (size_t)len) < 0) {
		t->out_failed = true;
		return -1;
	}
	return len;
}

static long
bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct tls *t = BIO_get_data(b);

	(void)num;
	(void)ptr;
	switch (cmd) {
	case BIO_CTRL_FLUSH:
		return 1;	/* the caller sends what is in out */
	case BIO_CTRL_PENDING:
		return t != NULL ? (long)t->in_len : 0;
	case BIO_CTRL_WPENDING:
		return 0;
	default:
		return 0;	/* no other control means anything here */
	}
}

static int
bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static void
bio_setup(void)
{
	BIO_METHOD *m;

	m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
	    "sluice memory");
	if (m == NULL)
		return;
	if (!BIO_meth_set_read(m, bio_read) ||
	    !BIO_meth_set_write(m, bio_write) ||
	    !BIO_meth_set_ctrl(m, bio_ctrl) ||
	    !BIO_meth_set_create(m, bio_create)) {
		BIO_meth_free(m);
		return;
	}
	bio_method = m;
}

/* ---- errors -------------------------------------------------------------- */

/*
 * The first error on this thread's queue (the cause; later ones are
 * consequences), and the queue emptied. 0 when there was none.
 */
static unsigned long
drain_errors(void)
{
	unsigned long e, first = 0;

	while ((e = ERR_get_error()) != 0)
		if (first == 0)
			first = e;
	return first;
}

static void
err_text(unsigned long e, char *out, size_t n)
{
	const char *r = ERR_reason_error_string(e);

	if (r != NULL)
		snprintf(out, n, "%s", r);
	else
		ERR_error_string_n(e, out, n);
}

/* why := "what: reason" from the error queue (or the SSL error kind). */
static void
set_why(struct tls *t, const char *what, int ssl_err)
{
	unsigned long e = drain_errors();
	char text[128];
	long v;

	if (e != 0)
		err_text(e, text, sizeof(text));
	else if (t->out_failed)
		snprintf(text, sizeof(text), "output past %u bytes or out "
		    "of memory", TLS_OUT_MAX);
	else if (ssl_err == SSL_ERROR_SYSCALL)
		snprintf(text, sizeof(text), "unexpected end of input");
	else
		snprintf(text, sizeof(text), "SSL error %d", ssl_err);
	v = SSL_get_verify_result(t->ssl);
	if (e != 0 && ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED &&
	    v != X509_V_OK)
		snprintf(t->why, sizeof(t->why), "%s: %s: %s", what, text,
		    X509_verify_cert_error_string(v));
	else
		snprintf(t->why, sizeof(t->why), "%s: %s", what, text);
}

/* why := "what: reason" for a failure outside any connection. */
static void
ctx_why(char *why, size_t whylen, const char *what)
{
	unsigned long e = drain_errors();
	char text[128];

	if (e != 0) {
		err_text(e, text, sizeof(text));
		snprintf(why, whylen, "%s: %s", what, text);
	} else {
		snprintf(why, whylen, "%s", what);
	}
}

/* ---- contexts ------------------------------------------------------------ */

/* A file OpenSSL will read: say plainly when it cannot even be opened. */
static bool
readable(const char *path, const char *what, char *why, size_t whylen)
{
	FILE *f = fopen(path, "r");

	if (f == NULL) {
		snprintf(why, whylen, "%s %s: %s", what, path, strerror(errno));
		return false;
	}
	fclose(f);
	return true;
}

/* Load one certificate chain and its key into ctx, and check they match. */
static int
load_pair(SSL_CTX *ctx, const char *cert, const char *key, char *why,
    size_t whylen)
{
	char what[PATH_MAX + 64];

	if (!readable(cert, "certificate", why, whylen) ||
	    !readable(key, "key", why, whylen))
		return -1;
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		snprintf(what, sizeof(what), "certificate %s: not a PEM "
		    "certificate chain", cert);
		ctx_why(why, whylen, what);
		return -1;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		if (ERR_GET_REASON(ERR_peek_last_error()) ==
		    X509_R_KEY_VALUES_MISMATCH)
			snprintf(what, sizeof(what), "key %s does not belong "
			    "to certificate %s", key, cert);
		else
			snprintf(what, sizeof(what), "key %s: not a usable PEM "
			    "private key", key);
		ctx_why(why, whylen, what);
		return -1;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(what, sizeof(what), "key %s does not belong to "
		    "certificate %s", key, cert);
		ctx_why(why, whylen, what);
		return -1;
	}
	return 0;
}

static struct tls_ctx *
ctx_new(bool server, char *why, size_t whylen)
{
	struct tls_ctx *c;

	pthread_once(&bio_once, bio_setup);
	if (bio_method == NULL) {
		snprintf(why, whylen, "cannot set up the TLS I/O layer");
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		snprintf(why, whylen, "out of memory");
		return NULL;
	}
	c->server = server;
	c->ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	if (c->ctx == NULL) {
		ctx_why(why, whylen, "cannot create a TLS context");
		free(c);
		return NULL;
	}
	/* TLS 1.2 and 1.3 only; ECDHE + AEAD for 1.2. */
	if (SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION) != 1 ||
	    SSL_CTX_set_cipher_list(c->ctx, TLS12_CIPHERS) != 1) {
		ctx_why(why, whylen, "cannot restrict TLS versions and ciphers");
		tls_ctx_free(c);
		return NULL;
	}
	/*
	 * No renegotiation (a CPU sink a client could trigger at will); no
	 * compression (CRIME). Record buffers go back while idle.
	 */
	SSL_CTX_set_options(c->ctx, SSL_OP_NO_RENEGOTIATION |
	    SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_mode(c->ctx, SSL_MODE_RELEASE_BUFFERS);
	return c;
}

struct tls_ctx *
tls_ctx_server(const struct tls_server_cfg *cfg, char *why, size_t whylen)
{
	struct tls_ctx *c;
	unsigned i;

	assert(cfg->ncerts <= TLS_CERTS_MAX);
	if (cfg->ncerts == 0) {
		snprintf(why, whylen, "no certificate");
		return NULL;
	}
	if ((c = ctx_new(true, why, whylen)) == NULL)
		return NULL;
	SSL_CTX_set_options(c->ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
	/*
	 * Resumption by stateless tickets only: the keys live in the
	 * context, so every thread can resume every other's sessions, and
	 * no handshake takes the lock a shared session cache would need.
	 * One ticket per handshake: the clients that resume keep one.
	 */
	SSL_CTX_set_session_cache_mode(c->ctx, SSL_SESS_CACHE_OFF);
	if (SSL_CTX_set_num_tickets(c->ctx, 1) != 1) {
		ctx_why(why, whylen, "cannot set the number of tickets");
		goto fail;
	}
	for (i = 0; i < cfg->ncerts; i++)
		if (load_pair(c->ctx, cfg->cert[i], cfg->key[i], why,
		    whylen) < 0)
			goto fail;
	return c;
fail:
	tls_ctx_free(c);
	return NULL;
}

static int
new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
	struct tls *t = SSL_get_app_data(ssl);

	if (t == NULL)
		return 0;	/* not ours to keep: OpenSSL frees it */
	if (t->session != NULL)
		SSL_SESSION_free(t->session);
	t->session = sess;
	return 1;		/* we keep the reference */
}

struct tls_ctx *
tls_ctx_client(const struct tls_client_cfg *cfg, char *why, size_t whylen)
{
	struct tls_ctx *c;
	char what[PATH_MAX + 64];
	int ok;

	if ((c = ctx_new(false, why, whylen)) == NULL)
		return NULL;
	if (cfg->cafile != NULL) {
		if (!readable(cfg->cafile, "CA file", why, whylen))
			goto fail;
		ok = SSL_CTX_load_verify_locations(c->ctx, cfg->cafile, NULL);
		snprintf(what, sizeof(what), "CA file %s: no PEM certificates",
		    cfg->cafile);
	} else if (cfg->verify) {
		ok = SSL_CTX_set_default_verify_paths(c->ctx);
		snprintf(what, sizeof(what), "cannot load the system's CA "
		    "certificates");
	} else {
		ok = 1;
	}
	if (ok != 1) {
		ctx_why(why, whylen, what);
		goto fail;
	}
	if (cfg->dane && SSL_CTX_dane_enable(c->ctx) <= 0) {
		ctx_why(why, whylen, "cannot enable DANE");
		goto fail;
	}
	/* DANE: a connection with TLSA records must match one of them. */
	SSL_CTX_set_verify(c->ctx, cfg->verify || cfg->dane ? SSL_VERIFY_PEER :
	    SSL_VERIFY_NONE, NULL);
	if (cfg->max_tls12 &&
	    SSL_CTX_set_max_proto_version(c->ctx, TLS1_2_VERSION) != 1) {
		ctx_why(why, whylen, "cannot limit the TLS version to 1.2");
		goto fail;
	}
	/* The caller keeps sessions per next hop: hand each one over. */
	SSL_CTX_set_session_cache_mode(c->ctx, SSL_SESS_CACHE_CLIENT |
	    SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(c->ctx, new_session_cb);
	return c;
fail:
	tls_ctx_free(c);
	return NULL;
}

const char *
tls_default_ca_file(void)
{
	return X509_get_default_cert_file();
}

void
tls_ctx_free(struct tls_ctx *c)
{
	if (c == NULL)
		return;
	SSL_CTX_free(c->ctx);
	c->ctx = NULL;
	free(c);
}

int
tls_check_pair(const char *cert, const char *key, char *why, size_t whylen)
{
	struct tls_server_cfg cfg = { .ncerts = 1 };
	struct tls_ctx *c;

	cfg.cert[0] = cert;
	cfg.key[0] = key;
	if ((c = tls_ctx_server(&cfg, why, whylen)) == NULL)
		return -1;
	tls_ctx_free(c);
	return 0;
}

/* ---- self-signed certificates ------------------------------------------ */

static int
add_ext(X509 *x, int nid, const char *value)
{
	X509V3_CTX v3;
	X509_EXTENSION *ext;
	int ok;

	X509V3_set_ctx_nodb(&v3);
	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
	if (ext == NULL)
		return -1;
	ok = X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return ok == 1 ? 0 : -1;
}

/* A random positive 63-bit serial number (RFC 5280 4.1.2.2). */
static int
set_serial(X509 *x)
{
	unsigned char r[8];
	BIGNUM *bn;
	int ok;

	if (RAND_bytes(r, sizeof(r)) != 1)
		return -1;
	r[0] &= 0x7f;
	r[0] |= 0x01;	/* never zero, never shorter than it looks */
	if ((bn = BN_bin2bn(r, sizeof(r), NULL)) == NULL)
		return -1;
	ok = BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
	BN_free(bn);
	return ok ? 0 : -1;
}

static X509 *
make_cert(EVP_PKEY *pkey, const char *host)
{
	char san[300];
	X509_NAME *name;
	X509 *x;

	if ((x = X509_new()) == NULL)
		return NULL;
	snprintf(san, sizeof(san), "DNS:%s", host);
	name = X509_get_subject_name(x);
	if (X509_set_version(x, 2) != 1 || set_serial(x) < 0 ||
	    X509_gmtime_adj(X509_getm_notBefore(x), 0) == NULL ||
	    X509_gmtime_adj(X509_getm_notAfter(x),
	    (long)TLS_SELFSIGNED_DAYS * 86400) == NULL ||
	    X509_set_pubkey(x, pkey) != 1 ||
	    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
	    (const unsigned char *)host, -1, -1, 0) != 1 ||
	    X509_set_issuer_name(x, name) != 1 ||
	    add_ext(x, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
	    add_ext(x, NID_key_usage, "critical,digitalSignature") < 0 ||
	    add_ext(x, NID_ext_key_usage, "serverAuth") < 0 ||
	    add_ext(x, NID_subject_key_identifier, "hash") < 0 ||
	    add_ext(x, NID_subject_alt_name, san) < 0 ||
	    X509_sign(x, pkey, EVP_sha256()) <= 0) {
		X509_free(x);
		return NULL;
	}
	return x;
}

/*
 * Write path through a temporary file in the same directory and a
 * rename, synced, so a crash never leaves half a file under path.
 */
static int
write_pem(const char *path, mode_t mode, EVP_PKEY *pkey, X509 *x, char *why,
    size_t whylen)
{
	char tmp[PATH_MAX];
	FILE *f;
	int fd, ok;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
		snprintf(why, whylen, "%s: path too long", path);
		return -1;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0 || fchmod(fd, mode) < 0 || (f = fdopen(fd, "w")) == NULL) {
		snprintf(why, whylen, "%s: %s", tmp, strerror(errno));
		if (fd >= 0)
			close(fd);
		unlink(tmp);
		return -1;
	}
	ok = pkey != NULL ?
	    PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL) :
	    PEM_write_X509(f, x);
	if (ok != 1 || fflush(f) != 0 || fsync(fileno(f)) != 0) {
		snprintf(why, whylen, "%s: cannot write: %s", tmp,
		    ok != 1 ? "PEM encoding failed" : strerror(errno));
		fclose(f);
		unlink(tmp);
		drain_errors();
		return -1;
	}
	if (fclose(f) != 0 || rename(tmp, path) != 0) {
		snprintf(why, whylen, "%s: %s", path, strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}

int
tls_make_selfsigned(const char *host, const char *certfile,
    const char *keyfile, char *why, size_t whylen)
{
	EVP_PKEY *pkey;
	X509 *x = NULL;
	int rc = -1;

	if (strlen(host) > 253) {
		snprintf(why, whylen, "host name too long for a certificate");
		return -1;
	}
	if ((pkey = EVP_EC_gen("P-256")) == NULL) {
		ctx_why(why, whylen, "cannot generate an ECDSA P-256 key");
		return -1;
	}
	if ((x = make_cert(pkey, host)) == NULL) {
		ctx_why(why, whylen, "cannot make a self-signed certificate");
		goto out;
	}
	/* The key first: a certificate without its key would be useless. */
	if (write_pem(keyfile, 0600, pkey, NULL, why, whylen) < 0 ||
	    write_pem(certfile, 0644, NULL, x, why, whylen) < 0)
		goto out;
	rc = 0;
out:
	X509_free(x);
	EVP_PKEY_free(pkey);
	return rc;
}

/* ---- connections --------------------------------------------------------- */

struct tls *
tls_new(struct tls_ctx *c, const char *host)
{
	unsigned char addr[16];
	struct tls *t;
	BIO *bio;

	assert(c != NULL);
	assert(host == NULL || !c->server);
	if ((t = calloc(1, sizeof(*t))) == NULL)
		return NULL;
	t->out.max = TLS_OUT_MAX;
	if ((t->ssl = SSL_new(c->ctx)) == NULL)
		goto fail;
	if ((bio = BIO_new(bio_method)) == NULL)
		goto fail;
	BIO_set_data(bio, t);
	/* One BIO both ways: SSL_set_bio() takes the one reference. */
	SSL_set_bio(t->ssl, bio, bio);
	SSL_set_app_data(t->ssl, t);
	if (c->server) {
		SSL_set_accept_state(t->ssl);
	} else {
		SSL_set_connect_state(t->ssl);
		if (host != NULL) {
			bool literal = inet_pton(AF_INET, host, addr) == 1 ||
			    inet_pton(AF_INET6, host, addr) == 1;

			/* RFC 6066 3: no SNI for an address literal. */
			if (literal && X509_VERIFY_PARAM_set1_ip_asc(
			    SSL_get0_param(t->ssl), host) != 1)
				goto fail;
			if (!literal && (SSL_set_tlsext_host_name(t->ssl,
			    host) != 1 || SSL_set1_host(t->ssl, host) != 1))
				goto fail;
		}
	}
	return t;
fail:
	drain_errors();
	tls_free(t);
	return NULL;
}

int
tls_dane_add(struct tls *t, const char *host, unsigned usage,
    unsigned selector, unsigned mtype, const unsigned char *data,
    size_t len)
{
	/* Digest lengths by matching type: SHA2-256, SHA2-512. */
	static const size_t digest[] = { 0, 32, 64 };
	int rc;

	assert(t != NULL && host != NULL);
	/* RFC 7672 section 3.1.3: PKIX-TA(0) and PKIX-EE(1) are unusable. */
	if ((usage != 2 && usage != 3) || selector > 1 || mtype > 2 ||
	    len == 0 || (mtype > 0 && len != digest[mtype]))
		return 0;
	if (!t->dane) {
		/* The first record: DANE on for this connection. */
		if (SSL_dane_enable(t->ssl, host) <= 0) {
			set_why(t, "cannot enable DANE on the connection", 0);
			return -1;
		}
		t->dane = true;
		/* RFC 7672 section 3.1.1: DANE-EE binds the key, not a name. */
		SSL_dane_set_flags(t->ssl, DANE_FLAG_NO_DANE_EE_NAMECHECKS);
	}
	rc = SSL_dane_tlsa_add(t->ssl, (uint8_t)usage, (uint8_t)selector,
	    (uint8_t)mtype, data, len);
	if (rc < 0) {
		set_why(t, "cannot add a TLSA record", 0);
		return -1;
	}
	/* 0: OpenSSL found it unusable (an unknown digest, say). */
	drain_errors();
	return rc > 0 ? 1 : 0;
}

bool
tls_dane_matched(const struct tls *t, unsigned *usage, unsigned *selector,
    unsigned *mtype)
{
	uint8_t u, s, m;

	if (!t->established || !t->dane ||
	    SSL_get0_dane_authority(t->ssl, NULL, NULL) < 0 ||
	    SSL_get0_dane_tlsa(t->ssl, &u, &s, &m, NULL, NULL) < 0)
		return false;
	*usage = u;
	*selector = s;
	*mtype = m;
	return true;
}

void
tls_free(struct tls *t)
{
	if (t == NULL)
		return;
	if (t->ssl != NULL) {
		SSL_set_app_data(t->ssl, NULL);
		/*
		 * SMTP peers close after QUIT without close_notify, which
		 * OpenSSL would take as a truncation and spoil the session
		 * for resumption (a TLS 1.0 rule; RFC 8446 6.1 and RFC 5246
		 * 7.2.1 no longer ask it). A fatal alert still spoils it.
		 */
		SSL_set_shutdown(t->ssl, SSL_SENT_SHUTDOWN);
		SSL_free(t->ssl);	/* and the BIO */
		t->ssl = NULL;
	}
	if (t->session != NULL)
		SSL_SESSION_free(t->session);
	t->session = NULL;
	buf_free(&t->out);
	free(t);
}

/*
 * Room in plain for one SSL_read(): a record's worth when the ceiling
 * allows, else what is left under it. 0 when there is none.
 */
static size_t
plain_room(struct buf *plain)
{
	size_t want = TLS_READ_CHUNK;

	if (plain->max != 0) {
		if (plain->len >= plain->max)
			return 0;
		if (plain->max - plain->len < want)
			want = plain->max - plain->len;
	}
	if (buf_reserve(plain, want) < 0)
		return 0;
	return want;
}

enum tls_status
tls_input(struct tls *t, const void *p, size_t n, struct buf *plain)
{
	enum tls_status st = TLS_OK;
	size_t room;
	int r, err;

	t->in = p;
	t->in_len = n;
	ERR_clear_error();	/* another library's leftovers are not ours */
	if (!t->established) {
		r = SSL_do_handshake(t->ssl);
		if (r != 1) {
			err = SSL_get_error(t->ssl, r);
			if (err == SSL_ERROR_WANT_READ) {
				st = TLS_WANT;
			} else {
				set_why(t, "handshake failed", err);
				st = TLS_ERROR;
			}
			goto out;
		}
		t->established = true;
	}
	for (;;) {
		if ((room = plain_room(plain)) == 0) {
			snprintf(t->why, sizeof(t->why), "read: plaintext past "
			    "its limit or out of memory");
			st = TLS_ERROR;
			break;
		}
		r = SSL_read(t->ssl, plain->data + plain->len, (int)room);
		if (r > 0) {
			plain->len += (size_t)r;
			continue;
		}
		err = SSL_get_error(t->ssl, r);
		if (err == SSL_ERROR_WANT_READ)
			break;		/* the window is used up */
		if (err == SSL_ERROR_ZERO_RETURN) {
			st = TLS_CLOSED;
			break;
		}
		set_why(t, "read failed", err);
		st = TLS_ERROR;
		break;
	}
out:
	/* Whatever is left (only after a failure) is not read again. */
	t->in = NULL;
	t->in_len = 0;
	return st;
}

int
tls_write(struct tls *t, const void *p, size_t n)
{
	const char *s = p;
	size_t chunk;
	int r;

	assert(t->established);
	if (t->closed) {
		snprintf(t->why, sizeof(t->why), "write: after close_notify");
		return -1;
	}
	ERR_clear_error();
	while (n > 0) {
		chunk = n < TLS_WRITE_CHUNK ? n : TLS_WRITE_CHUNK;
		r = SSL_write(t->ssl, s, (int)chunk);
		/* The BIO takes every record, so a write is whole or fails. */
		if (r != (int)chunk) {
			set_why(t, "write failed", SSL_get_error(t->ssl, r));
			return -1;
		}
		s += chunk;
		n -= chunk;
	}
	return 0;
}

void
tls_close(struct tls *t)
{
	if (t->closed || !t->established)
		return;
	t->closed = true;
	/* 0: our close_notify is written; the peer's need not come. */
	(void)SSL_shutdown(t->ssl);
	drain_errors();
}

size_t
tls_pending(const struct tls *t)
{
	return t->out.len;
}

void
tls_take(struct tls *t, struct buf *dst)
{
	struct buf tmp;

	assert(dst->len == 0);
	tmp = *dst;
	*dst = t->out;
	t->out = tmp;
	t->out.max = TLS_OUT_MAX;
}

bool
tls_established(const struct tls *t)
{
	return t->established;
}

bool
tls_resumed(const struct tls *t)
{
	return SSL_session_reused(t->ssl) == 1;
}

const char *
tls_version(const struct tls *t)
{
	return SSL_get_version(t->ssl);
}

const char *
tls_cipher(const struct tls *t)
{
	const SSL_CIPHER *c = SSL_get_current_cipher(t->ssl);

	return c != NULL ? SSL_CIPHER_get_name(c) : "none";
}

int
tls_cipher_bits(const struct tls *t)
{
	const SSL_CIPHER *c = SSL_get_current_cipher(t->ssl);

	return c != NULL ? SSL_CIPHER_get_bits(c, NULL) : 0;
}

const char *
tls_group(const struct tls *t)
{
	int id = SSL_get_negotiated_group(t->ssl);
	const char *name = id > 0 ? SSL_group_to_name(t->ssl, id) : NULL;

	return name != NULL ? name : "none";
}

bool
tls_peer_verified(const struct tls *t, char *why, size_t whylen)
{
	long v;

	if (SSL_get0_peer_certificate(t->ssl) == NULL) {
		snprintf(why, whylen, "no certificate");
		return false;
	}
	v = SSL_get_verify_result(t->ssl);
	if (v != X509_V_OK) {
		snprintf(why, whylen, "%s", X509_verify_cert_error_string(v));
		return false;
	}
	snprintf(why, whylen, "verified");
	return true;
}

enum tls_verify_kind
tls_verify_kind_of(long v)
{
	switch (v) {
	case X509_V_OK:
		return TLS_VERIFY_PASSED;
	case X509_V_ERR_HOSTNAME_MISMATCH:
		return TLS_VERIFY_NAME;
	case X509_V_ERR_CERT_HAS_EXPIRED:
	case X509_V_ERR_CERT_NOT_YET_VALID:
		return TLS_VERIFY_EXPIRED;
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
	case X509_V_ERR_CERT_UNTRUSTED:
	case X509_V_ERR_CERT_REJECTED:
		return TLS_VERIFY_UNTRUSTED;
	default:
		return TLS_VERIFY_OTHER;
	}
}

enum tls_verify_kind
tls_verify_kind(const struct tls *t)
{
	long v = SSL_get_verify_result(t->ssl);

	if (v == X509_V_OK && tls_established(t) &&
	    SSL_get0_peer_certificate(t->ssl) == NULL)
		return TLS_VERIFY_NO_CERT;
	return tls_verify_kind_of(v);
}

const char *
tls_verify_error(const struct tls *t)
{
	long v = SSL_get_verify_result(t->ssl);

	return v == X509_V_OK ? NULL : X509_verify_cert_error_string(v);
}

const char *
tls_why(const struct tls *t)
{
	return t->why[0] != '\0' ? t->why : "no error";
}

struct tls_session *
tls_session_take(struct tls *t)
{
	SSL_SESSION *s = t->session;

	t->session = NULL;
	return (struct tls_session *)s;
}

int
tls_session_set(struct tls *t, struct tls_session *s)
{
	SSL_SESSION *ss = (SSL_SESSION *)s;

	if (SSL_SESSION_is_resumable(ss) != 1 || SSL_set_session(t->ssl,
	    ss) != 1) {
		drain_errors();
		return -1;
	}
	return 0;
}

void
tls_session_free(struct tls_session *s)
{
	SSL_SESSION_free((SSL_SESSION *)s);
}
