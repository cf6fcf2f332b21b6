/*
 * bench_tls.c - wolfSSL over memory buffers; see bench_tls.h.
 *
 * The two wolfSSL I/O callbacks are the whole seam: tls_recv_cb() hands
 * wolfSSL the ciphertext fed so far and answers WANT_READ when it runs out
 * (wolfSSL then returns to the caller, who resumes after the next recv);
 * tls_send_cb() appends to t->out and never refuses short of the limit, so
 * wolfSSL never sees WANT_WRITE and a write is always complete.
 */
#include "bench_tls.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

/* Plaintext handed to one wolfSSL_write(): it splits into records itself. */
#define BENCH_TLS_WRITE_CHUNK (1u << 20)

struct bench_tls_ctx {
	WOLFSSL_CTX *ctx;
	bool server;
};

struct bench_tls {
	WOLFSSL *ssl;
	bool server;
	struct buf in;		/* fed ciphertext, unread from in_off */
	size_t in_off;
	struct buf out;		/* ciphertext for the caller to send */
	char why[160];
};

static int
tls_recv_cb(WOLFSSL *ssl, char *p, int sz, void *arg)
{
	struct bench_tls *t = arg;
	size_t avail = t->in.len - t->in_off, n;

	(void)ssl;
	assert(sz >= 0);
	if (avail == 0)
		return WOLFSSL_CBIO_ERR_WANT_READ;
	n = avail < (size_t)sz ? avail : (size_t)sz;
	memcpy(p, t->in.data + t->in_off, n);
	t->in_off += n;
	if (t->in_off == t->in.len) {
		buf_reset(&t->in);
		t->in_off = 0;
	}
	return (int)n;
}

static int
tls_send_cb(WOLFSSL *ssl, char *p, int sz, void *arg)
{
	struct bench_tls *t = arg;

	(void)ssl;
	assert(sz >= 0);
	if (t->out.len + (size_t)sz > BENCH_TLS_OUT_MAX ||
	    buf_append(&t->out, p, (size_t)sz) < 0)
		return WOLFSSL_CBIO_ERR_GENERAL;
	return sz;
}

/* A file wolfSSL could not load: its return code, when it says more. */
static void
ctx_why(char *why, size_t whylen, const char *what, int rc)
{
	char text[WOLFSSL_MAX_ERROR_SZ];

	if (rc < 0) {
		wolfSSL_ERR_error_string_n((unsigned long)rc, text,
		    sizeof(text));
		snprintf(why, whylen, "%s: cannot load: %s", what, text);
	} else {
		snprintf(why, whylen, "%s: cannot load (missing, unreadable "
		    "or not PEM)", what);
	}
}

static struct bench_tls_ctx *
ctx_new(bool server, char *why, size_t whylen)
{
	struct bench_tls_ctx *c;
	WOLFSSL_METHOD *m;

	if (wolfSSL_Init() != WOLFSSL_SUCCESS) {
		snprintf(why, whylen, "wolfSSL_Init failed");
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		snprintf(why, whylen, "out of memory");
		goto fail;
	}
	c->server = server;
	m = server ? wolfSSLv23_server_method() : wolfSSLv23_client_method();
	if (m == NULL || (c->ctx = wolfSSL_CTX_new(m)) == NULL) {
		snprintf(why, whylen, "cannot create a TLS context");
		goto fail;
	}
	/* TLS 1.2 and 1.3 only: nothing older is worth measuring. */
	if (wolfSSL_CTX_SetMinVersion(c->ctx, WOLFSSL_TLSV1_2) !=
	    WOLFSSL_SUCCESS) {
		snprintf(why, whylen, "cannot require TLS 1.2");
		goto fail;
	}
	wolfSSL_CTX_SetIORecv(c->ctx, tls_recv_cb);
	wolfSSL_CTX_SetIOSend(c->ctx, tls_send_cb);
	return c;
fail:
	if (c != NULL && c->ctx != NULL)
		wolfSSL_CTX_free(c->ctx);
	free(c);
	wolfSSL_Cleanup();
	return NULL;
}

struct bench_tls_ctx *
bench_tls_client_ctx(const char *cafile, char *why, size_t whylen)
{
	struct bench_tls_ctx *c = ctx_new(false, why, whylen);
	int rc;

	if (c == NULL)
		return NULL;
	if (cafile == NULL) {
		wolfSSL_CTX_set_verify(c->ctx, WOLFSSL_VERIFY_NONE, NULL);
		return c;
	}
	rc = wolfSSL_CTX_load_verify_locations(c->ctx, cafile, NULL);
	if (rc != WOLFSSL_SUCCESS) {
		ctx_why(why, whylen, cafile, rc);
		bench_tls_ctx_free(c);
		return NULL;
	}
	wolfSSL_CTX_set_verify(c->ctx, WOLFSSL_VERIFY_PEER, NULL);
	return c;
}

struct bench_tls_ctx *
bench_tls_server_ctx(const char *certfile, const char *keyfile, char *why,
    size_t whylen)
{
	struct bench_tls_ctx *c = ctx_new(true, why, whylen);
	int rc;

	if (c == NULL)
		return NULL;
	rc = wolfSSL_CTX_use_certificate_chain_file(c->ctx, certfile);
	if (rc != WOLFSSL_SUCCESS) {
		ctx_why(why, whylen, certfile, rc);
		goto fail;
	}
	rc = wolfSSL_CTX_use_PrivateKey_file(c->ctx, keyfile,
	    WOLFSSL_FILETYPE_PEM);
	if (rc != WOLFSSL_SUCCESS) {
		ctx_why(why, whylen, keyfile, rc);
		goto fail;
	}
	return c;
fail:
	bench_tls_ctx_free(c);
	return NULL;
}

void
bench_tls_ctx_free(struct bench_tls_ctx *c)
{
	if (c == NULL)
		return;
	wolfSSL_CTX_free(c->ctx);
	c->ctx = NULL;
	free(c);
	/* wolfSSL counts Init and Cleanup calls; this matches ctx_new's. */
	wolfSSL_Cleanup();
}

struct bench_tls *
bench_tls_new(struct bench_tls_ctx *c)
{
	struct bench_tls *t;

	assert(c != NULL);
	t = calloc(1, sizeof(*t));
	if (t == NULL)
		return NULL;
	t->ssl = wolfSSL_new(c->ctx);
	if (t->ssl == NULL) {
		free(t);
		return NULL;
	}
	t->server = c->server;
	wolfSSL_SetIOReadCtx(t->ssl, t);
	wolfSSL_SetIOWriteCtx(t->ssl, t);
	return t;
}

void
bench_tls_free(struct bench_tls *t)
{
	if (t == NULL)
		return;
	wolfSSL_free(t->ssl);
	t->ssl = NULL;
	buf_free(&t->in);
	buf_free(&t->out);
	free(t);
}

int
bench_tls_feed(struct bench_tls *t, const void *p, size_t n)
{
	if (t->in_off > 0) {
		buf_consume(&t->in, t->in_off);
		t->in_off = 0;
	}
	if (t->in.len + n > BENCH_TLS_IN_MAX)
		return -ENOBUFS;
	return buf_append(&t->in, p, n);
}

/* Record why the last call failed, from wolfSSL's error queue. */
static void
set_why(struct bench_tls *t, const char *what, int ret)
{
	int err = wolfSSL_get_error(t->ssl, ret);
	char text[WOLFSSL_MAX_ERROR_SZ];

	wolfSSL_ERR_error_string_n((unsigned long)err, text, sizeof(text));
	snprintf(t->why, sizeof(t->why), "%s: %s (%d)", what, text, err);
}

enum bench_tls_status
bench_tls_handshake(struct bench_tls *t)
{
	int ret, err;

	ret = t->server ? wolfSSL_accept(t->ssl) : wolfSSL_connect(t->ssl);
	if (ret == WOLFSSL_SUCCESS)
		return BENCH_TLS_DONE;
	err = wolfSSL_get_error(t->ssl, ret);
	if (err == WOLFSSL_ERROR_WANT_READ || err == WOLFSSL_ERROR_WANT_WRITE)
		return BENCH_TLS_WANT;
	set_why(t, "handshake", ret);
	return BENCH_TLS_ERROR;
}

ssize_t
bench_tls_read(struct bench_tls *t, void *p, size_t n)
{
	int ret, err;

	if (n > INT_MAX)
		n = INT_MAX;
	ret = wolfSSL_read(t->ssl, p, (int)n);
	if (ret > 0)
		return ret;
	err = wolfSSL_get_error(t->ssl, ret);
	if (err == WOLFSSL_ERROR_WANT_READ || err == WOLFSSL_ERROR_WANT_WRITE)
		return 0;
	if (err == WOLFSSL_ERROR_ZERO_RETURN)
		return -2;
	set_why(t, "read", ret);
	return -1;
}

int
bench_tls_write(struct bench_tls *t, const void *p, size_t n)
{
	const char *s = p;
	size_t chunk;
	int ret;

	while (n > 0) {
		chunk = n < BENCH_TLS_WRITE_CHUNK ? n : BENCH_TLS_WRITE_CHUNK;
		ret = wolfSSL_write(t->ssl, s, (int)chunk);
		/* The send callback takes everything, so a write is whole. */
		if (ret != (int)chunk) {
			set_why(t, "write", ret);
			return -1;
		}
		s += chunk;
		n -= chunk;
	}
	return 0;
}

void
bench_tls_take(struct bench_tls *t, struct buf *dst)
{
	struct buf tmp;

	assert(dst->len == 0);
	tmp = *dst;
	*dst = t->out;
	t->out = tmp;
}

size_t
bench_tls_pending_out(const struct bench_tls *t)
{
	return t->out.len;
}

const char *
bench_tls_why(const struct bench_tls *t)
{
	return t->why[0] ? t->why : "no error";
}

const char *
bench_tls_version(struct bench_tls *t)
{
	return wolfSSL_get_version(t->ssl);
}

const char *
bench_tls_cipher(struct bench_tls *t)
{
	const char *s = wolfSSL_get_cipher_name(t->ssl);

	return s ? s : "?";
}
