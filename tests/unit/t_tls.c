/*
 * Description: lib/tls over memory, no sockets: a client and a server
 * object handshake by handing each other what tls_take() gives, whole and
 * in pieces of every size down to one byte; application data of any size
 * arrives intact both ways; the self-signed certificate is made with its
 * key at mode 0600 and verifies for its host name and no other; a session
 * taken from one connection resumes on the next; close_notify is seen as
 * TLS_CLOSED; garbage, a wrong host name, a key that belongs to another
 * certificate and a missing file each fail with a reason that says so.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../lib/tls.h"
#include "check.h"

static char dir[] = "/tmp/sluice-t_tls-XXXXXX";
static char cert1[256], key1[256], cert2[256], key2[256];

/* Move what `from` wants to send into `to`, step bytes per input. */
static enum tls_status
pump(struct tls *from, struct tls *to, struct buf *plain, size_t step,
    size_t *moved)
{
	enum tls_status st = tls_established(to) ? TLS_OK : TLS_WANT;
	struct buf wire = { 0 };
	size_t off, n;

	tls_take(from, &wire);
	*moved = wire.len;
	for (off = 0; off < wire.len && st != TLS_ERROR; off += n) {
		n = wire.len - off < step ? wire.len - off : step;
		st = tls_input(to, wire.data + off, n, plain);
	}
	buf_free(&wire);
	return st;
}

/*
 * Handshake c with s, step bytes at a time; at most 10 flights. Returns
 * the client's last status; *sst the server's.
 */
static enum tls_status
handshake(struct tls *c, struct tls *s, size_t step, enum tls_status *sst,
    struct buf *cplain, struct buf *splain)
{
	enum tls_status cst;
	size_t m1, m2;
	int round;

	cst = tls_input(c, NULL, 0, cplain);	/* the ClientHello */
	*sst = TLS_WANT;
	for (round = 0; round < 10; round++) {
		*sst = pump(c, s, splain, step, &m1);
		if (*sst == TLS_ERROR)
			break;
		cst = pump(s, c, cplain, step, &m2);
		if (cst == TLS_ERROR)
			break;
		if (m1 == 0 && m2 == 0)
			break;
	}
	return cst;
}

static struct tls_ctx *
server_ctx(void)
{
	struct tls_server_cfg cfg = { .ncerts = 1 };
	char why[256];
	struct tls_ctx *ctx;

	cfg.cert[0] = cert1;
	cfg.key[0] = key1;
	ctx = tls_ctx_server(&cfg, why, sizeof(why));
	if (ctx == NULL)
		fprintf(stderr, "server ctx: %s\n", why);
	return ctx;
}

static struct tls_ctx *
client_ctx(bool verify)
{
	struct tls_client_cfg cfg = { .verify = verify, .cafile = cert1 };
	char why[256];
	struct tls_ctx *ctx;

	ctx = tls_ctx_client(&cfg, why, sizeof(why));
	if (ctx == NULL)
		fprintf(stderr, "client ctx: %s\n", why);
	return ctx;
}

static void
test_selfsigned(void)
{
	struct stat st;
	char why[256];

	printf("RUN selfsigned\n");
	CHECK_FATAL(tls_make_selfsigned("mx.test", cert1, key1, why,
	    sizeof(why)) == 0);
	CHECK_FATAL(tls_make_selfsigned("other.test", cert2, key2, why,
	    sizeof(why)) == 0);
	CHECK(stat(key1, &st) == 0 && (st.st_mode & 0777) == 0600);
	CHECK(stat(cert1, &st) == 0 && (st.st_mode & 0777) == 0644);
	CHECK(tls_check_pair(cert1, key1, why, sizeof(why)) == 0);
	CHECK(tls_check_pair(cert1, key2, why, sizeof(why)) == -1);
	CHECK(strstr(why, "does not belong") != NULL);
	fprintf(stderr, "  mismatch: %s\n", why);
	CHECK(tls_check_pair("/nonexistent/cert.pem", key1, why,
	    sizeof(why)) == -1);
	CHECK(strstr(why, "No such file") != NULL);
	CHECK(tls_check_pair(key1, key1, why, sizeof(why)) == -1);
	fprintf(stderr, "  key as cert: %s\n", why);
	CHECK(strstr(why, "not a PEM certificate") != NULL);
}

/* A handshake in pieces of `step` bytes, then data both ways. */
static void
test_exchange(size_t step)
{
	struct tls_ctx *sc = server_ctx(), *cc = client_ctx(true);
	struct buf cp = { 0 }, sp = { 0 }, big = { 0 };
	enum tls_status cst, sst;
	struct tls *c, *s;
	char why[128];
	size_t i, m;

	printf("RUN exchange step %zu\n", step);
	CHECK_FATAL(sc != NULL && cc != NULL);
	c = tls_new(cc, "mx.test");
	s = tls_new(sc, NULL);
	CHECK_FATAL(c != NULL && s != NULL);
	cst = handshake(c, s, step, &sst, &cp, &sp);
	CHECK(cst == TLS_OK && sst == TLS_OK);
	CHECK(tls_established(c) && tls_established(s));
	CHECK(strcmp(tls_version(s), "TLSv1.3") == 0);
	CHECK(strcmp(tls_cipher(s), "TLS_AES_256_GCM_SHA384") == 0);
	CHECK(tls_cipher_bits(s) == 256);
	/* OpenSSL's first group, on both sides. */
	CHECK(strcmp(tls_group(s), "x25519") == 0);
	CHECK(strcmp(tls_group(c), "x25519") == 0);
	CHECK(tls_peer_verified(c, why, sizeof(why)));
	CHECK(!tls_resumed(c) && !tls_resumed(s));
	CHECK(cp.len == 0 && sp.len == 0);

	/* 300 KB, more than a record, in one write; then a reply. */
	for (i = 0; i < 300000; i++)
		CHECK_FATAL(buf_append(&big, &"0123456789abcdef"[i % 16],
		    1) == 0);
	CHECK(tls_write(c, big.data, big.len) == 0);
	CHECK(tls_pending(c) > big.len);
	CHECK(pump(c, s, &sp, step * 1000, &m) == TLS_OK);
	CHECK(sp.len == big.len && memcmp(sp.data, big.data, big.len) == 0);
	CHECK(tls_write(s, "250 ok\r\n", 8) == 0);
	CHECK(pump(s, c, &cp, step, &m) == TLS_OK);
	CHECK(cp.len == 8 && memcmp(cp.data, "250 ok\r\n", 8) == 0);

	/* close_notify: the data before it arrives, then CLOSED. */
	buf_reset(&sp);
	CHECK(tls_write(c, "QUIT\r\n", 6) == 0);
	tls_close(c);
	CHECK(pump(c, s, &sp, step, &m) == TLS_CLOSED);
	CHECK(sp.len == 6 && memcmp(sp.data, "QUIT\r\n", 6) == 0);

	tls_free(c);
	tls_free(s);
	tls_ctx_free(cc);
	tls_ctx_free(sc);
	buf_free(&cp);
	buf_free(&sp);
	buf_free(&big);
}

static void
test_resume(void)
{
	struct tls_ctx *sc = server_ctx(), *cc = client_ctx(false);
	struct buf cp = { 0 }, sp = { 0 };
	struct tls_session *sess;
	enum tls_status sst;
	struct tls *c, *s;
	size_t m;

	printf("RUN resume\n");
	CHECK_FATAL(sc != NULL && cc != NULL);
	c = tls_new(cc, "mx.test");
	s = tls_new(sc, NULL);
	CHECK(handshake(c, s, 65536, &sst, &cp, &sp) == TLS_OK);
	/* TLS 1.3: the ticket follows the handshake; the client reads it. */
	CHECK(tls_write(s, "220 hi\r\n", 8) == 0);
	CHECK(pump(s, c, &cp, 65536, &m) == TLS_OK);
	sess = tls_session_take(c);
	CHECK_FATAL(sess != NULL);
	CHECK(tls_session_take(c) == NULL);
	tls_free(c);
	tls_free(s);

	c = tls_new(cc, "mx.test");
	s = tls_new(sc, NULL);
	CHECK(tls_session_set(c, sess) == 0);
	tls_session_free(sess);
	CHECK(handshake(c, s, 65536, &sst, &cp, &sp) == TLS_OK);
	CHECK(sst == TLS_OK);
	CHECK(tls_resumed(c) && tls_resumed(s));
	tls_free(c);
	tls_free(s);
	tls_ctx_free(cc);
	tls_ctx_free(sc);
	buf_free(&cp);
	buf_free(&sp);
}

static void
test_failures(void)
{
	struct tls_ctx *sc = server_ctx(), *cc = client_ctx(true);
	struct tls_ctx *lax = client_ctx(false);
	struct buf cp = { 0 }, sp = { 0 };
	static const char http[] = "GET / HTTP/1.0\r\n\r\n";
	enum tls_status sst;
	struct tls *c, *s;
	char why[128];

	printf("RUN failures\n");
	CHECK_FATAL(sc != NULL && cc != NULL && lax != NULL);
	/* Garbage instead of a ClientHello. */
	s = tls_new(sc, NULL);
	CHECK(tls_input(s, http, sizeof(http) - 1, &sp) == TLS_ERROR);
	fprintf(stderr, "  garbage: %s\n", tls_why(s));
	CHECK(strncmp(tls_why(s), "handshake failed: ", 18) == 0);
	CHECK(sp.len == 0);
	tls_free(s);

	/* The wrong host name, verified: the handshake fails. */
	c = tls_new(cc, "wrong.test");
	s = tls_new(sc, NULL);
	CHECK(handshake(c, s, 65536, &sst, &cp, &sp) == TLS_ERROR);
	fprintf(stderr, "  wrong host: %s\n", tls_why(c));
	CHECK(strstr(tls_why(c), "hostname mismatch") != NULL);
	tls_free(c);
	tls_free(s);

	/* Not verified: it succeeds, and says what did not verify. */
	c = tls_new(lax, "wrong.test");
	s = tls_new(sc, NULL);
	CHECK(handshake(c, s, 65536, &sst, &cp, &sp) == TLS_OK);
	CHECK(!tls_peer_verified(c, why, sizeof(why)));
	CHECK(strstr(why, "hostname mismatch") != NULL);
	tls_free(c);
	tls_free(s);

	/* Plaintext past its ceiling is an error, not an overflow. */
	c = tls_new(lax, NULL);
	s = tls_new(sc, NULL);
	CHECK(handshake(c, s, 65536, &sst, &cp, &sp) == TLS_OK);
	CHECK(tls_write(c, "0123456789", 10) == 0);
	sp.max = 4;
	{
		size_t m;

		CHECK(pump(c, s, &sp, 65536, &m) == TLS_ERROR);
	}
	CHECK(sp.len <= 4);
	tls_free(c);
	tls_free(s);

	tls_ctx_free(lax);
	tls_ctx_free(cc);
	tls_ctx_free(sc);
	buf_free(&cp);
	buf_free(&sp);
}

int
main(void)
{
	static const size_t steps[] = { 1, 7, 100, 1500, 65536 };
	size_t i;

	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return T_EXIT_FAIL;
	}
	snprintf(cert1, sizeof(cert1), "%s/cert1.pem", dir);
	snprintf(key1, sizeof(key1), "%s/key1.pem", dir);
	snprintf(cert2, sizeof(cert2), "%s/cert2.pem", dir);
	snprintf(key2, sizeof(key2), "%s/key2.pem", dir);
	test_selfsigned();
	for (i = 0; i < sizeof(steps) / sizeof(steps[0]); i++)
		test_exchange(steps[i]);
	test_resume();
	test_failures();
	unlink(cert1);
	unlink(key1);
	unlink(cert2);
	unlink(key2);
	rmdir(dir);
	return check_done();
}
