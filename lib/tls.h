/*
 * tls.h - TLS 1.2 and 1.3 over OpenSSL 3, driven from memory: the layer
 * never sees a file descriptor, never makes a system call and never
 * blocks, so that every socket operation stays on the caller's io_uring
 * ring.
 *
 * The caller moves ciphertext; the layer turns it into plaintext and back:
 *
 *	recv completion (ciphertext)          plaintext to send
 *	        |                                     |
 *	  tls_input(t, p, n, &plain)            tls_write(t, p, n)
 *	        |  handshake, records                 |  records
 *	        v                                     v
 *	  plaintext appended to `plain`     ciphertext kept in the connection:
 *	                                    tls_take(t, &tx), then a send
 *
 * OpenSSL reads the ciphertext straight from the caller's buffer (a BIO of
 * our own over it, not a BIO_s_mem() copy) and writes its records into a
 * struct buf that tls_take() swaps out, so the only copies are the ones
 * the ciphers make. Whatever OpenSSL wants to send on its own (handshake
 * flights, session tickets, alerts, close_notify) lands in the same place:
 * after every call, send what tls_pending() says waits.
 *
 * One connection, server side (inbound SMTP):
 *	ctx = tls_ctx_server(&cfg, why, sizeof why);	once, shared by threads
 *	t = tls_new(ctx, NULL);
 *	st = tls_input(t, data, len, &plain);	from each recv completion;
 *						TLS_WANT while the handshake
 *						waits, TLS_OK once done
 *	tls_established(t)	just turned true: the handshake finished
 *	tls_write(t, reply, n);	encrypt; tls_take(t, &tx); send tx
 *	tls_close(t);		close_notify, then send and close
 *	tls_free(t);
 *
 * Client side (outbound SMTP, sluice-bench) is the same, with a client
 * context and the peer's host name; the first tls_input(t, NULL, 0, &plain)
 * writes the ClientHello. Per next hop session resumption:
 * tls_session_set() before the first tls_input(), tls_session_take() once
 * established (and again later: TLS 1.3 servers send their tickets after
 * the handshake), kept by the caller with the next hop.
 *
 * Threads: a context is read-only once made and may be shared by every
 * thread (OpenSSL counts its references atomically); a connection belongs
 * to one thread at a time. The server context keeps no session cache
 * (resumption is by stateless tickets, whose keys the context holds), so
 * no handshake takes a lock shared with other threads.
 *
 * Diagnostics: a call that fails leaves a one-line reason in tls_why(),
 * taken from OpenSSL's error queue (which is drained, so that a stale
 * error cannot be blamed on the next connection of this thread).
 */
#ifndef SLUICE_TLS_H
#define SLUICE_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

/* Ciphertext waiting to be sent, at most: past it the connection fails. */
#define TLS_OUT_MAX (64u << 20)
/* Certificate and key pairs a server context takes (RSA and ECDSA). */
#define TLS_CERTS_MAX 4

enum tls_status {
	TLS_ERROR = -1,	/* fatal: tls_why(); send what is pending, close */
	TLS_OK = 0,	/* established; all input used */
	TLS_WANT = 1,	/* the handshake waits for the peer's next bytes */
	TLS_CLOSED = 2,	/* the peer sent close_notify: no more input */
};

struct tls_server_cfg {
	/*
	 * PEM files: each certificate file holds the chain, leaf first;
	 * each key file the leaf's private key. One pair per key type (an
	 * RSA and an ECDSA certificate may be served side by side; OpenSSL
	 * picks by what the client supports).
	 */
	const char *cert[TLS_CERTS_MAX];
	const char *key[TLS_CERTS_MAX];
	unsigned ncerts;
};

struct tls_client_cfg {
	/*
	 * Verify the server's chain (against cafile, or the system's store
	 * when cafile is NULL) and the host name given to tls_new(); a
	 * failure fails the handshake. When false the chain is still
	 * checked if a host name and CA are at hand, and
	 * tls_peer_verified() tells the result without failing anything.
	 */
	bool verify;
	const char *cafile;
	/*
	 * Offer TLS 1.2 at most: for measurements (a TLS 1.2 resumption
	 * needs no key exchange, a TLS 1.3 one does) and peers that need it.
	 */
	bool max_tls12;
	/*
	 * DANE (RFC 7672): the context can take TLSA records per connection
	 * (tls_dane_add()); a connection given usable records verifies the
	 * server against them and fails the handshake when none matches.
	 * No CA store is loaded for it: PKIX plays no part in SMTP DANE.
	 */
	bool dane;
};

struct tls_ctx;
struct tls;
struct tls_session;

/*
 * A server context: TLS 1.2 and 1.3 only, ECDHE with AEAD ciphers only,
 * the server's preference, no renegotiation, stateless session tickets
 * (one per handshake). Each pair is loaded and checked: a key that does
 * not belong to its certificate is an error. NULL on failure, with the
 * reason (naming the file) in why.
 */
struct tls_ctx *tls_ctx_server(const struct tls_server_cfg *cfg, char *why,
    size_t whylen);
/* A client context (see struct tls_client_cfg). NULL on failure, why. */
struct tls_ctx *tls_ctx_client(const struct tls_client_cfg *cfg, char *why,
    size_t whylen);
/*
 * The file of the system's CA certificates as OpenSSL was built to find
 * it (Debian: /usr/lib/ssl/cert.pem, the ca-certificates bundle). Given
 * as cafile it is read whole when the context is made, where the
 * directory of the default paths would be read certificate by
 * certificate during handshakes.
 */
const char *tls_default_ca_file(void);

/* Drop the caller's reference; connections made from it keep theirs. */
void tls_ctx_free(struct tls_ctx *ctx);

/*
 * Check that cert and key (PEM files) load and belong together, without
 * keeping anything: for configuration checks. 0, or -1 with why.
 */
int tls_check_pair(const char *cert, const char *key, char *why,
    size_t whylen);

/*
 * Write a new self-signed ECDSA P-256 certificate for host (subject CN and
 * DNS subjectAltName; valid for ten years) to certfile, and its key to
 * keyfile with mode 0600. Each file is written under a temporary name and
 * renamed, so a crash leaves either the old file or the new one. 0, or
 * -1 with why.
 */
int tls_make_selfsigned(const char *host, const char *certfile,
    const char *keyfile, char *why, size_t whylen);

/*
 * A connection in its initial state. host: client side, the server's
 * name, sent as SNI (unless it is an address) and checked against the
 * certificate; NULL for none (and always NULL on the server side). NULL
 * when out of memory.
 */
struct tls *tls_new(struct tls_ctx *ctx, const char *host);
void tls_free(struct tls *t);

/*
 * The peer's ciphertext p[0..n) (n may be 0: a client starts its
 * handshake so). While the handshake runs it is advanced; then every
 * complete record is decrypted and its plaintext appended to plain (which
 * may also receive plaintext that followed the handshake in the same
 * input). Every byte given is used or kept inside OpenSSL: p need not
 * stay valid after the call.
 *
 * TLS_WANT: handshake under way, waiting for the peer. TLS_OK: established
 * (plaintext, if any, appended). TLS_CLOSED: the peer closed the TLS
 * session (plaintext before its close_notify is in plain). TLS_ERROR:
 * handshake failure, bad record, or plain past its ceiling (lib/buf.h);
 * reason in tls_why(). Output may be pending after any of them.
 */
enum tls_status tls_input(struct tls *t, const void *p, size_t n,
    struct buf *plain);

/*
 * Encrypt p[0..n) into records waiting to be sent. Only once established.
 * 0, or -1 (tls_why(): output past TLS_OUT_MAX, out of memory).
 */
int tls_write(struct tls *t, const void *p, size_t n);

/* Queue a close_notify (once; nothing may be written after it). */
void tls_close(struct tls *t);

/* Bytes of ciphertext waiting to be sent. */
size_t tls_pending(const struct tls *t);

/*
 * Move the waiting ciphertext to dst, which must be empty: the two
 * buffers are swapped, so nothing is copied and dst's old allocation
 * takes the next output.
 */
void tls_take(struct tls *t, struct buf *dst);

/* Has the handshake completed? */
bool tls_established(const struct tls *t);
/* Was the session resumed (ticket or cache) rather than made afresh? */
bool tls_resumed(const struct tls *t);

/*
 * What was negotiated, once established: "TLSv1.3", the cipher suite's
 * standard name (RFC 8446 / IANA: "TLS_AES_256_GCM_SHA384"), the
 * cipher's key bits. Static strings.
 */
const char *tls_version(const struct tls *t);
const char *tls_cipher(const struct tls *t);
int tls_cipher_bits(const struct tls *t);
/*
 * The key exchange group, once established ("X25519", "secp256r1"), or
 * "none" (a TLS 1.2 session resumed without one). Static string.
 */
const char *tls_group(const struct tls *t);

/*
 * Client side, once established: did the server's chain and name verify?
 * When not, why says what failed ("certificate has expired", "hostname
 * mismatch", "no certificate").
 */
bool tls_peer_verified(const struct tls *t, char *why, size_t whylen);

/*
 * Client side, also after a failed handshake: why the server's chain or
 * name did not verify ("hostname mismatch", "certificate has expired"),
 * or NULL when nothing failed verification.
 */
const char *tls_verify_error(const struct tls *t);

/* What a failed check of the server's certificate found, by kind. */
enum tls_verify_kind {
	TLS_VERIFY_PASSED,	/* nothing failed verification */
	TLS_VERIFY_NO_CERT,	/* the server sent none */
	TLS_VERIFY_NAME,	/* it is for another name */
	TLS_VERIFY_EXPIRED,	/* out of its validity period */
	TLS_VERIFY_UNTRUSTED,	/* no chain to a trusted root */
	TLS_VERIFY_OTHER,	/* anything else (a bad signature, ...) */
};

/*
 * Client side, also after a failed handshake: the kind of what failed,
 * from OpenSSL's verify result (never its text); tls_verify_kind_of()
 * maps one X509_V_ERR_* code.
 */
enum tls_verify_kind tls_verify_kind(const struct tls *t);
enum tls_verify_kind tls_verify_kind_of(long verify_result);

/*
 * DANE, client side, before the first tls_input() on a connection of a
 * context made with dane: one TLSA record (usage, selector, matching
 * type, association data) for the server named host (the MX host: the
 * reference name for DANE-TA, RFC 7672 section 3.2.3; DANE-EE checks no
 * name, section 3.1.1). Returns 1 when the record was taken, 0 when it is
 * unusable (PKIX-TA/PKIX-EE, RFC 7672 section 3.1.3; an unknown
 * selector or matching type; data of the wrong length), -1 on failure
 * (tls_why()). A connection given no usable record is not verified.
 */
int tls_dane_add(struct tls *t, const char *host, unsigned usage,
    unsigned selector, unsigned mtype, const unsigned char *data,
    size_t len);
/*
 * Once established: did a TLSA record authenticate the server? When so,
 * its usage, selector and matching type.
 */
bool tls_dane_matched(const struct tls *t, unsigned *usage,
    unsigned *selector, unsigned *mtype);

/* The last failure, "no error" when there was none. */
const char *tls_why(const struct tls *t);

/*
 * Client sessions, for resumption per next hop. tls_session_take(): the
 * newest session the server offered on t (a TLS 1.3 ticket or a TLS 1.2
 * session), or NULL; the caller owns it. tls_session_set(): offer s
 * on t's handshake (before the first tls_input()); t takes its own
 * reference, the caller keeps s. 0, or -1 when s cannot be used.
 */
struct tls_session *tls_session_take(struct tls *t);
int tls_session_set(struct tls *t, struct tls_session *s);
void tls_session_free(struct tls_session *s);

#endif
