/*
 * queue_envelope.c - the binary encoding of a message envelope.
 *
 * Purpose: one compact, versioned byte string per envelope, stored both in
 * the segment record (covered by its checksum) and in the index entry.
 *
 * Contract (version 1, all integers little-endian):
 *   off  0  u8   version (1)
 *        1  u8   body (enum queue_body, 0..2)
 *        2  u8   smtputf8 (0 or 1)
 *        3  u8   reserved, 0
 *        4  u16  nrcpt
 *        6  u16  reserved, 0
 *        8  u32  declared_size
 *       12  u64  qid
 *       20  u64  arrival_us
 *       28  strings: sender, client_addr, helo, protocol, then nrcpt
 *           recipients; each is u32 length, the bytes, and a NUL byte.
 * The NUL is stored so that a decoded envelope can point into the buffer
 * without copying. Decoding accepts exactly this and nothing else: every
 * read goes through a bounds-checked cursor, reserved bytes must be zero,
 * a string must end at its NUL and hold no other, and no byte may follow
 * the last recipient. A 256-byte address or a KiB-sized HELO fits; u32
 * lengths keep the code free of a second size limit.
 *
 * Diagnostics: decode returns QUEUE_ECORRUPT on any mismatch and never
 * reads outside the buffer; encoding a NULL string is a programmer error.
 */
#include "queue.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static_assert(ENVELOPE_FIXED_LEN == 28, "envelope fixed part");

/* The smallest encoded string: empty, length word plus NUL. */
#define ENV_STR_MIN 5

/* A read cursor: once err is set every read fails and returns zero. */
struct env_cursor {
	const uint8_t *buf;
	size_t len;
	size_t off;
	int err;
};

static const uint8_t *
cur_take(struct env_cursor *c, size_t n)
{
	const uint8_t *p;

	assert(c->off <= c->len);
	if (c->err || n > c->len - c->off) {
		c->err = 1;
		return NULL;
	}
	p = c->buf + c->off;
	c->off += n;
	return p;
}

static uint64_t
cur_le(struct env_cursor *c, size_t n)
{
	const uint8_t *p = cur_take(c, n);
	uint64_t v = 0;

	assert(n <= 8);
	if (p == NULL)
		return 0;
	while (n-- > 0)
		v = v << 8 | p[n];
	return v;
}

/* A length-prefixed, NUL-terminated string; NULL (and err) if malformed. */
static const char *
cur_str(struct env_cursor *c)
{
	uint64_t n = cur_le(c, 4);
	const uint8_t *p;

	if (c->err || n >= c->len - c->off) {
		c->err = 1;
		return NULL;
	}
	p = cur_take(c, (size_t)n + 1);
	assert(p != NULL);
	if (p[n] != '\0' || memchr(p, '\0', (size_t)n) != NULL) {
		c->err = 1;
		return NULL;
	}
	return (const char *)p;
}

static uint8_t *
put_le(uint8_t *p, uint64_t v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
	return p + n;
}

static uint8_t *
put_str(uint8_t *p, const char *s)
{
	size_t n = strlen(s);

	assert(n <= UINT32_MAX);
	p = put_le(p, n, 4);
	memcpy(p, s, n + 1);
	return p + n + 1;
}

static size_t
str_len(const char *s)
{
	assert(s != NULL);
	return 4 + strlen(s) + 1;
}

size_t
envelope_encoded_len(const struct envelope *e)
{
	size_t n = ENVELOPE_FIXED_LEN;

	assert(e->nrcpt == 0 || e->rcpt != NULL);
	n += str_len(e->sender) + str_len(e->client_addr) +
	    str_len(e->helo) + str_len(e->protocol);
	for (unsigned i = 0; i < e->nrcpt; i++)
		n += str_len(e->rcpt[i]);
	return n;
}

size_t
envelope_encode(const struct envelope *e, uint8_t *buf)
{
	uint8_t *p = buf;

	assert(e->body <= QUEUE_BODY_BINARYMIME);
	assert(e->smtputf8 <= 1);
	*p++ = ENVELOPE_VERSION;
	*p++ = e->body;
	*p++ = e->smtputf8;
	*p++ = 0;
	p = put_le(p, e->nrcpt, 2);
	p = put_le(p, 0, 2);
	p = put_le(p, e->declared_size, 4);
	p = put_le(p, e->qid, 8);
	p = put_le(p, e->arrival_us, 8);
	assert((size_t)(p - buf) == ENVELOPE_FIXED_LEN);
	p = put_str(p, e->sender);
	p = put_str(p, e->client_addr);
	p = put_str(p, e->helo);
	p = put_str(p, e->protocol);
	for (unsigned i = 0; i < e->nrcpt; i++)
		p = put_str(p, e->rcpt[i]);
	assert((size_t)(p - buf) == envelope_encoded_len(e));
	return (size_t)(p - buf);
}

int
envelope_decode(const uint8_t *buf, size_t len, struct envelope *e)
{
	struct env_cursor c = { .buf = buf, .len = len };
	unsigned version, reserved1, reserved2;
	int err = QUEUE_ECORRUPT;

	assert(buf != NULL || len == 0);
	memset(e, 0, sizeof(*e));
	version = (unsigned)cur_le(&c, 1);
	e->body = (uint8_t)cur_le(&c, 1);
	e->smtputf8 = (uint8_t)cur_le(&c, 1);
	reserved1 = (unsigned)cur_le(&c, 1);
	e->nrcpt = (uint16_t)cur_le(&c, 2);
	reserved2 = (unsigned)cur_le(&c, 2);
	e->declared_size = (uint32_t)cur_le(&c, 4);
	e->qid = cur_le(&c, 8);
	e->arrival_us = cur_le(&c, 8);
	if (c.err || version != ENVELOPE_VERSION || reserved1 != 0 ||
	    reserved2 != 0 || e->body > QUEUE_BODY_BINARYMIME ||
	    e->smtputf8 > 1)
		goto fail;
	e->sender = cur_str(&c);
	e->client_addr = cur_str(&c);
	e->helo = cur_str(&c);
	e->protocol = cur_str(&c);
	if (c.err)
		goto fail;
	/* Check the count against the bytes left before trusting it. */
	if (e->nrcpt > (c.len - c.off) / ENV_STR_MIN)
		goto fail;
	if (e->nrcpt > 0) {
		e->rcpt = malloc(e->nrcpt * sizeof(*e->rcpt));
		if (e->rcpt == NULL) {
			err = -ENOMEM;
			goto fail;
		}
	}
	for (unsigned i = 0; i < e->nrcpt; i++)
		e->rcpt[i] = cur_str(&c);
	if (c.err || c.off != c.len)
		goto fail;
	assert(e->sender != NULL);
	return 0;
fail:
	free(e->rcpt);
	memset(e, 0, sizeof(*e));
	return err;
}

void
envelope_release(struct envelope *e)
{
	assert(e != NULL);
	free(e->rcpt);
	e->rcpt = NULL;
	e->nrcpt = 0;
}

int
envelope_peek_nrcpt(const uint8_t *buf, size_t len)
{
	assert(buf != NULL || len == 0);
	if (len < ENVELOPE_FIXED_LEN || buf[0] != ENVELOPE_VERSION)
		return -1;
	return buf[4] | buf[5] << 8;
}
