/*
 * fuzz_tls.c - libFuzzer target: arbitrary client bytes into the server
 * side of lib/tls, as a shard feeds them from its recv completions.
 *
 * The first byte picks the mode. Even: the bytes go to a fresh server
 * connection, so the fuzzer drives the handshake parser (ClientHello and
 * what follows). Odd: an in-process client first completes a real
 * handshake with the server (TLS 1.3, the certificate made once in
 * LLVMFuzzerInitialize), and the fuzzer's bytes then arrive as if they
 * were the client's records, so the record layer (decryption, alerts,
 * post-handshake messages) gets them. After the mode byte, each 0xFE byte
 * marks a read boundary.
 *
 * Properties checked beyond "no crash": no plaintext before the handshake
 * completes; plaintext never passes the ceiling of its buffer; nothing is
 * fed after TLS_ERROR or TLS_CLOSED (as the engine closes then); what the
 * server wants to send stays within TLS_OUT_MAX; tls_why() is set after
 * an error.
 */
#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../lib/tls.h"

#define FZ_PLAIN_MAX 65536

static struct tls_ctx *server, *client;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char dir[] = "/tmp/sluice-fuzz-tls-XXXXXX", cert[64], key[64];
	char why[512];
	struct tls_server_cfg sc = { .ncerts = 1 };
	struct tls_client_cfg cc = { .verify = false };

	(void)argc;
	(void)argv;
	if (mkdtemp(dir) == NULL)
		abort();
	snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
	snprintf(key, sizeof(key), "%s/key.pem", dir);
	if (tls_make_selfsigned("fuzz.test", cert, key, why, sizeof(why)) < 0) {
		fprintf(stderr, "fuzz_tls: %s\n", why);
		abort();
	}
	sc.cert[0] = cert;
	sc.key[0] = key;
	server = tls_ctx_server(&sc, why, sizeof(why));
	client = tls_ctx_client(&cc, why, sizeof(why));
	if (server == NULL || client == NULL) {
		fprintf(stderr, "fuzz_tls: %s\n", why);
		abort();
	}
	unlink(cert);
	unlink(key);
	rmdir(dir);
	return 0;
}

/* Hand what from wants to send to to; the status of the last input. */
static enum tls_status
pump(struct tls *from, struct tls *to, struct buf *plain)
{
	struct buf wire = { 0 };
	enum tls_status st;

	tls_take(from, &wire);
	st = tls_input(to, wire.data, wire.len, plain);
	buf_free(&wire);
	return st;
}

/* A real handshake; false if it did not complete (it always should). */
static bool
handshake(struct tls *c, struct tls *s, struct buf *plain)
{
	enum tls_status cst, sst = TLS_WANT;

	cst = tls_input(c, NULL, 0, plain);
	for (int i = 0; i < 6 && (cst == TLS_WANT || sst == TLS_WANT); i++) {
		sst = pump(c, s, plain);
		cst = pump(s, c, plain);
	}
	return cst == TLS_OK && sst == TLS_OK && plain->len == 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf plain = { .max = FZ_PLAIN_MAX }, out = { 0 };
	struct tls *s, *c = NULL;
	enum tls_status st = TLS_WANT;
	size_t off = 1, end;

	if (size < 1)
		return 0;
	s = tls_new(server, NULL);
	assert(s != NULL);
	if (data[0] & 1) {
		c = tls_new(client, "fuzz.test");
		assert(c != NULL);
		if (!handshake(c, s, &plain))
			abort();
		st = TLS_OK;
	}
	while (off < size && st != TLS_ERROR && st != TLS_CLOSED) {
		const uint8_t *cut = memchr(data + off, 0xfe, size - off);
		bool was = tls_established(s);

		end = cut ? (size_t)(cut - data) : size;
		st = tls_input(s, data + off, end - off, &plain);
		off = cut ? end + 1 : size;
		assert(plain.len <= plain.max);
		if (!was && !tls_established(s))
			assert(plain.len == 0);
		if (st == TLS_ERROR)
			assert(strcmp(tls_why(s), "no error") != 0);
		assert(tls_pending(s) <= TLS_OUT_MAX);
		/* The engine sends what waits; so does this. */
		tls_take(s, &out);
		buf_reset(&out);
		if (plain.len > FZ_PLAIN_MAX / 2)
			buf_reset(&plain);
	}
	if (st == TLS_OK && tls_established(s)) {
		assert(tls_write(s, "250 ok\r\n", 8) == 0);
		tls_close(s);
		assert(tls_pending(s) > 0);
	}
	tls_free(c);
	tls_free(s);
	buf_free(&plain);
	buf_free(&out);
	return 0;
}
