/*
 * bench_tls.h - wolfSSL over memory buffers, so that every socket
 * operation stays on the caller's io_uring ring.
 *
 * wolfSSL never sees a file descriptor. Its I/O callbacks read ciphertext
 * that the caller has fed in (bench_tls_feed(), from a recv completion) and
 * write ciphertext into an output buffer that the caller takes and sends
 * (bench_tls_take(), then a send on the ring). Nothing here blocks or makes
 * a system call; a function that needs more input says so and the caller
 * comes back after its next recv.
 *
 * Usage, one connection:
 *	t = bench_tls_new(ctx);
 *	bench_tls_handshake(t);	-> BENCH_TLS_WANT: take and send output,
 *				   feed what arrives, call again
 *	bench_tls_write(t, p, n);	   plaintext in, ciphertext to take
 *	bench_tls_feed(t, p, n); bench_tls_read(t, buf, len);
 *	bench_tls_free(t);
 *
 * TLS 1.2 and 1.3 only. A client context verifies the server's chain only
 * when given a CA file (no host name check: connections are by address);
 * a server context holds a certificate chain and key.
 *
 * Diagnostics: functions that fail leave a one-line reason in
 * bench_tls_why(), valid until the next call on the same connection.
 */
#ifndef SLUICE_BENCH_TLS_H
#define SLUICE_BENCH_TLS_H

#include <stddef.h>
#include <sys/types.h>

#include "../lib/buf.h"

/* Ciphertext waiting to be taken, at most; past it writes fail. */
#define BENCH_TLS_OUT_MAX (64u << 20)
/* Ciphertext fed but not yet consumed by wolfSSL, at most. */
#define BENCH_TLS_IN_MAX (1u << 20)

enum bench_tls_status {
	BENCH_TLS_ERROR = -1,	/* fatal: the connection must be closed */
	BENCH_TLS_DONE = 0,	/* the handshake is complete */
	BENCH_TLS_WANT = 1,	/* needs more input from the peer */
};

struct bench_tls_ctx;
struct bench_tls;

/*
 * A client context. cafile NULL: no certificate verification (a benchmark
 * must work against any test server); otherwise the server's chain must
 * verify against it. NULL on failure, with the reason in why.
 */
struct bench_tls_ctx *bench_tls_client_ctx(const char *cafile, char *why,
    size_t whylen);
/* A server context with a PEM certificate chain and key. */
struct bench_tls_ctx *bench_tls_server_ctx(const char *certfile,
    const char *keyfile, char *why, size_t whylen);
void bench_tls_ctx_free(struct bench_tls_ctx *ctx);

/* A connection in its initial state. NULL when out of memory. */
struct bench_tls *bench_tls_new(struct bench_tls_ctx *ctx);
void bench_tls_free(struct bench_tls *t);

/*
 * Hand ciphertext received from the peer to the TLS layer (copied).
 * 0, or -ENOBUFS past BENCH_TLS_IN_MAX, -ENOMEM.
 */
int bench_tls_feed(struct bench_tls *t, const void *p, size_t n);

/* Advance the handshake. BENCH_TLS_DONE, BENCH_TLS_WANT or BENCH_TLS_ERROR. */
enum bench_tls_status bench_tls_handshake(struct bench_tls *t);

/*
 * Plaintext from what was fed: > 0 bytes read into p, 0 when more input is
 * needed, -1 on a fatal error, -2 when the peer closed the TLS session
 * (close_notify).
 */
ssize_t bench_tls_read(struct bench_tls *t, void *p, size_t n);

/* Encrypt all n bytes of plaintext into the output. 0, or -1. */
int bench_tls_write(struct bench_tls *t, const void *p, size_t n);

/*
 * Move the ciphertext waiting to be sent into *dst, which must be empty:
 * the two buffers are swapped, so nothing is copied and dst's old
 * allocation is reused for the next output.
 */
void bench_tls_take(struct bench_tls *t, struct buf *dst);
/* Bytes of ciphertext waiting to be taken. */
size_t bench_tls_pending_out(const struct bench_tls *t);

/* The last failure, negotiated version ("TLSv1.3") and cipher suite. */
const char *bench_tls_why(const struct bench_tls *t);
const char *bench_tls_version(struct bench_tls *t);
const char *bench_tls_cipher(struct bench_tls *t);

#endif
