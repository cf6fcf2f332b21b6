/*
 * fuzz_util.h - what several libFuzzer targets need: reading numbers out
 * of the input, a UTF-8 oracle of their own (written apart from the code
 * under test, so that a shared mistake cannot hide), and the check that
 * a protocol engine's output is whole CRLF lines.
 */
#ifndef SLUICE_FUZZ_UTIL_H
#define SLUICE_FUZZ_UTIL_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#include "../../lib/buf.h"

/* Eight input bytes as a big-endian number. */
static inline uint64_t
fz_get64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

/*
 * The length of the UTF-8 sequence at s[0..n), or 0 when s does not
 * start a well-formed one (RFC 3629: shortest form, no surrogates, at
 * most U+10FFFF). Decodes first, judges after.
 */
static inline size_t
fz_utf8_len(const unsigned char *s, size_t n)
{
	size_t len, i;
	uint32_t cp;

	if (s[0] < 0x80)
		return 1;
	if ((s[0] & 0xe0) == 0xc0)
		len = 2, cp = s[0] & 0x1f;
	else if ((s[0] & 0xf0) == 0xe0)
		len = 3, cp = s[0] & 0x0f;
	else if ((s[0] & 0xf8) == 0xf0)
		len = 4, cp = s[0] & 0x07;
	else
		return 0;
	if (n < len)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
	    (len == 4 && cp < 0x10000))
		return 0;
	if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

/* Is all of s[0..n) well-formed UTF-8? */
static inline int
fz_utf8_valid(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, k;

	while (i < n) {
		if ((k = fz_utf8_len(p + i, n - i)) == 0)
			return 0;
		i += k;
	}
	return 1;
}

/* What a protocol engine wrote is whole CRLF lines; then it is sent. */
static inline void
fz_check_out(struct buf *o)
{
	if (o->len > 0)
		assert(o->len >= 2 && o->data[o->len - 2] == '\r' &&
		    o->data[o->len - 1] == '\n');
	buf_reset(o);
}

#endif
