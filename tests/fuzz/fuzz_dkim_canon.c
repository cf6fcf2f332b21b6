/*
 * fuzz_dkim_canon.c - libFuzzer target: arbitrary messages through the
 * DKIM header canonicaliser, field splitter, From: parser and body hash.
 *
 * Description: the first input byte picks a split point for the body
 * hash; the rest is a message. Properties checked beyond "no crash":
 * - every field dkim_fields() returns lies inside the header section and
 *   the fields come in order without overlapping;
 * - simple canonicalisation is the field unchanged plus CRLF;
 * - relaxed canonicalisation ends in its one CRLF, has no other CR or
 *   LF, and its value (after the first colon) has no TAB, no two spaces
 *   in a row, and no space at either end; applied to its own output it
 *   changes nothing (idempotent);
 * - the body hash is the same fed whole or in two pieces, both ways;
 * - dkim_policy_pick() on the message answers without crashing.
 */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../dkim/dkim.h"

static void
check_relaxed(const char *f, size_t n)
{
	struct buf a = { 0 }, b = { 0 };
	const char *colon;

	assert(dkim_canon_header(DKIM_RELAXED, f, n, &a) == 0);
	assert(a.len >= 2 && a.data[a.len - 2] == '\r' &&
	    a.data[a.len - 1] == '\n');
	assert(memchr(a.data, '\r', a.len - 2) == NULL);
	assert(memchr(a.data, '\n', a.len - 2) == NULL);
	colon = memchr(a.data, ':', a.len - 2);
	if (colon != NULL) {
		const char *v = colon + 1, *end = a.data + a.len - 2;

		assert(memchr(v, '\t', (size_t)(end - v)) == NULL);
		if (end > v) {
			assert(v[0] != ' ');
			assert(end[-1] != ' ');
		}
		for (const char *p = v; p + 1 < end; p++)
			assert(!(p[0] == ' ' && p[1] == ' '));
	}
	assert(dkim_canon_header(DKIM_RELAXED, a.data, a.len - 2, &b) == 0);
	assert(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
	buf_free(&a);
	buf_free(&b);
}

static void
body_hash(const char *m, size_t n, size_t cut, enum dkim_canon c,
    uint8_t out[DKIM_HASH_LEN])
{
	struct dkim_body b = { 0 };

	assert(dkim_body_start(&b, c) == 0);
	dkim_body_feed(&b, m, cut);
	dkim_body_feed(&b, m + cut, n - cut);
	assert(dkim_body_final(&b, out) == 0);
	dkim_body_free(&b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct dkim_field f[DKIM_FIELDS_MAX];
	static const struct dkim_entry e[] = {
		{ "example.com", "s", NULL },
	};
	struct dkim_policy pol;
	struct dkim_pick pick;
	uint8_t h1[DKIM_HASH_LEN], h2[DKIM_HASH_LEN];
	const char *m;
	size_t n, hlen, cut, prev_end = 0;
	int nf;

	if (size < 1)
		return 0;
	m = (const char *)data + 1;
	n = size - 1;
	cut = n == 0 ? 0 : data[0] % (n + 1);
	hlen = dkim_header_end(m, n, NULL);
	assert(hlen <= n);
	nf = dkim_fields(m, hlen, NULL, 0, f, DKIM_FIELDS_MAX);
	assert(nf >= 0 || nf == -E2BIG);
	for (int i = 0; i < nf; i++) {
		struct buf s = { 0 };

		assert(f[i].off >= prev_end);
		assert(f[i].off + f[i].len <= hlen);
		assert(f[i].name_len > 0 && f[i].name_len <= f[i].len);
		prev_end = f[i].off + f[i].len;
		assert(dkim_canon_header(DKIM_SIMPLE, m + f[i].off, f[i].len,
		    &s) == 0);
		assert(s.len == f[i].len + 2);
		assert(memcmp(s.data, m + f[i].off, f[i].len) == 0);
		buf_free(&s);
		check_relaxed(m + f[i].off, f[i].len);
	}
	/* The whole input as one field, whatever it holds. */
	check_relaxed(m, n);
	for (int c = DKIM_SIMPLE; c <= DKIM_RELAXED; c++) {
		body_hash(m, n, 0, (enum dkim_canon)c, h1);
		body_hash(m, n, cut, (enum dkim_canon)c, h2);
		assert(memcmp(h1, h2, sizeof(h1)) == 0);
	}
	if (dkim_policy_init(&pol, e, 1) == 0) {
		(void)dkim_policy_pick(&pol, m, n, &pick);
		assert(pick.hdr_len == hlen);
		pol.mode = DKIM_DOMAIN_PARENT;
		(void)dkim_policy_pick(&pol, m, n, &pick);
		dkim_policy_free(&pol);
	}
	return 0;
}
