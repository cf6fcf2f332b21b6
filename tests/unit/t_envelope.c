/*
 * Description: envelopes survive an encode/decode round trip (null sender,
 * 256-byte recipients, a 4 KiB HELO, many recipients), and decoding any
 * truncated, extended, bit-flipped or random buffer never crashes: a cut
 * or extended buffer is always QUEUE_ECORRUPT.
 */
#include "check.h"
#include "../../queue/queue.h"

#include <stdlib.h>
#include <string.h>

static void
check_same(const struct envelope *a, const struct envelope *b)
{
	CHECK(a->qid == b->qid);
	CHECK(a->arrival_us == b->arrival_us);
	CHECK(a->body == b->body);
	CHECK(a->smtputf8 == b->smtputf8);
	CHECK(a->declared_size == b->declared_size);
	CHECK(strcmp(a->sender, b->sender) == 0);
	CHECK(strcmp(a->client_addr, b->client_addr) == 0);
	CHECK(strcmp(a->helo, b->helo) == 0);
	CHECK(strcmp(a->protocol, b->protocol) == 0);
	CHECK_FATAL(a->nrcpt == b->nrcpt);
	for (unsigned i = 0; i < a->nrcpt; i++)
		CHECK(strcmp(a->rcpt[i], b->rcpt[i]) == 0);
}

/* Encode e into a malloc'd buffer of exactly the encoded length. */
static uint8_t *
encode(const struct envelope *e, size_t *len)
{
	uint8_t *buf;

	*len = envelope_encoded_len(e);
	buf = malloc(*len);
	CHECK_FATAL(buf != NULL);
	CHECK_FATAL(envelope_encode(e, buf) == *len);
	return buf;
}

/* Every prefix and every one-byte extension must be refused. */
static void
check_truncations(const uint8_t *buf, size_t len)
{
	struct envelope d;
	uint8_t *big;

	for (size_t n = 0; n < len; n++) {
		/* A copy of exactly n bytes, so ASan sees any over-read. */
		uint8_t *cut = malloc(n ? n : 1);

		CHECK_FATAL(cut != NULL);
		memcpy(cut, buf, n);
		CHECK(envelope_decode(cut, n, &d) == QUEUE_ECORRUPT);
		CHECK(d.rcpt == NULL);
		free(cut);
	}
	big = malloc(len + 1);
	CHECK_FATAL(big != NULL);
	memcpy(big, buf, len);
	big[len] = 0;
	CHECK(envelope_decode(big, len + 1, &d) == QUEUE_ECORRUPT);
	free(big);
}

static void
test_round_trip(void)
{
	char long_rcpt[257], helo[4097];
	const char *rcpts[300];
	struct envelope e = {
		.qid = 0x0123456789abcdefULL,
		.arrival_us = 1717171717123456ULL,
		.body = QUEUE_BODY_8BITMIME,
		.smtputf8 = 1,
		.declared_size = 123456,
		.sender = "",
		.client_addr = "2001:db8::1",
		.protocol = "ESMTPSA",
	}, d;
	uint8_t *buf;
	size_t len;

	memset(long_rcpt, 'r', 256);
	memcpy(long_rcpt + 250, "@x.org", 7);	/* 256 bytes + NUL */
	memset(helo, 'h', 4096);
	helo[4096] = '\0';
	e.helo = helo;
	for (unsigned i = 0; i < 300; i++)
		rcpts[i] = i % 2 ? long_rcpt : "user@example.com";
	e.rcpt = rcpts;
	e.nrcpt = 300;

	buf = encode(&e, &len);
	CHECK(envelope_peek_nrcpt(buf, len) == 300);
	CHECK(envelope_decode(buf, len, &d) == 0);
	check_same(&e, &d);
	/* Strings point into the buffer: no copies. */
	CHECK((const uint8_t *)d.helo > buf);
	CHECK((const uint8_t *)d.helo < buf + len);
	envelope_release(&d);
	CHECK(d.rcpt == NULL);
	envelope_release(&d);	/* twice is harmless */
	free(buf);

	/* A small one, checked at every length. */
	e.nrcpt = 2;
	e.helo = "mail.example.com";
	e.sender = "bounce@example.com";
	e.body = QUEUE_BODY_BINARYMIME;
	e.smtputf8 = 0;
	buf = encode(&e, &len);
	CHECK(envelope_decode(buf, len, &d) == 0);
	check_same(&e, &d);
	envelope_release(&d);
	check_truncations(buf, len);
	free(buf);

	/* Truncation of the big one, at a stride to keep it quick. */
	e.nrcpt = 300;
	e.helo = helo;
	buf = encode(&e, &len);
	for (size_t n = 0; n < len; n += 97) {
		CHECK(envelope_decode(buf, n, &d) == QUEUE_ECORRUPT);
		CHECK(d.rcpt == NULL);
	}
	free(buf);
}

static void
test_refusals(void)
{
	const char *rcpts[] = { "a@b" };
	struct envelope e = {
		.qid = 1, .sender = "s@x", .client_addr = "127.0.0.1",
		.helo = "h", .protocol = "SMTP", .rcpt = rcpts, .nrcpt = 1,
	}, d;
	uint8_t *buf, saved;
	size_t len;

	buf = encode(&e, &len);
	CHECK(envelope_decode(buf, len, &d) == 0);
	envelope_release(&d);
	/* Each fixed field's bad values. */
	buf[0] = 2;
	CHECK(envelope_decode(buf, len, &d) == QUEUE_ECORRUPT);
	CHECK(envelope_peek_nrcpt(buf, len) == -1);
	buf[0] = ENVELOPE_VERSION;
	buf[1] = 3;
	CHECK(envelope_decode(buf, len, &d) == QUEUE_ECORRUPT);
	buf[1] = 0;
	buf[2] = 2;
	CHECK(envelope_decode(buf, len, &d) == QUEUE_ECORRUPT);
	buf[2] = 0;
	buf[3] = 1;
	CHECK(envelope_decode(buf, len, &d) == QUEUE_ECORRUPT);
	buf[3] = 0;
	buf[6] = 1;
	CHECK(envelope_decode(buf, len, &d) == QUEUE_ECORRUPT);
	buf[6] = 0;
	/* A recipient count larger than the bytes could hold. */
	buf[4] = 0xff;
	buf[5] = 0xff;
	CHECK(envelope_decode(buf, len, &d) == QUEUE_ECORRUPT);
	buf[4] = 1;
	buf[5] = 0;
	/* A missing NUL, and an embedded NUL. */
	saved = buf[len - 1];
	buf[len - 1] = 'x';
	CHECK(envelope_decode(buf, len, &d) == QUEUE_ECORRUPT);
	buf[len - 1] = saved;
	buf[len - 2] = '\0';
	CHECK(envelope_decode(buf, len, &d) == QUEUE_ECORRUPT);
	/* A huge string length. */
	memset(buf + ENVELOPE_FIXED_LEN, 0xff, 4);
	CHECK(envelope_decode(buf, len, &d) == QUEUE_ECORRUPT);
	CHECK(envelope_peek_nrcpt(buf, 3) == -1);
	free(buf);
}

static void
test_garbage(void)
{
	const char *rcpts[] = { "a@example.com", "b@example.com" };
	struct envelope e = {
		.qid = 77, .sender = "s@x", .client_addr = "10.0.0.1",
		.helo = "client", .protocol = "ESMTP", .rcpt = rcpts,
		.nrcpt = 2,
	}, d;
	uint8_t *buf;
	size_t len;
	int rc;

	/* Every single-byte flip: decodes or is refused, never crashes. */
	buf = encode(&e, &len);
	for (size_t i = 0; i < len; i++) {
		for (unsigned bit = 0; bit < 8; bit++) {
			buf[i] ^= (uint8_t)(1u << bit);
			rc = envelope_decode(buf, len, &d);
			CHECK(rc == 0 || rc == QUEUE_ECORRUPT);
			envelope_release(&d);
			buf[i] ^= (uint8_t)(1u << bit);
		}
	}
	free(buf);
	/* Random buffers of every length up to 512. */
	for (unsigned round = 0; round < 20; round++) {
		for (size_t n = 0; n <= 512; n++) {
			uint8_t *p = malloc(n ? n : 1);

			CHECK_FATAL(p != NULL);
			for (size_t i = 0; i < n; i++)
				p[i] = (uint8_t)check_rand();
			/* Make some pass the version check to go deeper. */
			if (n > 0 && round % 2)
				p[0] = ENVELOPE_VERSION;
			rc = envelope_decode(p, n, &d);
			CHECK(rc == 0 || rc == QUEUE_ECORRUPT);
			envelope_release(&d);
			free(p);
		}
	}
	CHECK(envelope_decode(NULL, 0, &d) == QUEUE_ECORRUPT);
}

int
main(void)
{
	test_round_trip();
	test_refusals();
	test_garbage();
	return check_done();
}
