/*
 * dkim_canon.c - header canonicalisation (RFC 6376 section 3.4.1, 3.4.2),
 * splitting a header section into fields, and picking field instances
 * bottom-up (section 5.4.2). Pure functions over bytes: any input is
 * taken (8-bit and UTF-8 bytes are copied as they are), nothing is
 * allocated but the output's growth.
 */
#include "dkim.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

static inline bool
is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

static inline char
lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

const char *
dkim_canon_name(enum dkim_canon c)
{
	return c == DKIM_SIMPLE ? "simple" : "relaxed";
}

const char *
dkim_alg_name(enum dkim_alg a)
{
	return a == DKIM_RSA_SHA256 ? "rsa-sha256" : "ed25519-sha256";
}

/*
 * Relaxed (3.4.2): lower-case the name, unfold (every CR and LF inside a
 * field is part of a fold), runs of WSP become one SP, WSP at the ends of
 * the value and around the colon goes. Written straight into out's
 * allocation: the result is never longer than the field plus CRLF.
 */
static int
canon_relaxed(const char *f, size_t n, struct buf *out)
{
	const char *colon = memchr(f, ':', n);
	size_t name_n = colon != NULL ? (size_t)(colon - f) : n;
	size_t i, start;
	bool wsp = false, started = false;
	char *o;
	int rc;

	if ((rc = buf_reserve(out, n + 3)) < 0)
		return rc;
	o = out->data + out->len;
	start = out->len;
	/* The name: up to the colon, without the WSP before it. */
	while (name_n > 0 && (is_wsp(f[name_n - 1]) || f[name_n - 1] == '\r' ||
	    f[name_n - 1] == '\n'))
		name_n--;
	for (i = 0; i < name_n; i++)
		if (f[i] != '\r' && f[i] != '\n')
			*o++ = lower(f[i]);
	if (colon != NULL) {
		*o++ = ':';
		i = (size_t)(colon - f) + 1;
		/* WSP before the value's first content is dropped. */
		for (; i < n; i++) {
			char c = f[i];

			if (c == '\r' || c == '\n')
				continue;
			if (is_wsp(c)) {
				wsp = true;
				continue;
			}
			if (wsp && started)
				*o++ = ' ';
			wsp = false;
			started = true;
			*o++ = c;
		}
	}
	*o++ = '\r';
	*o++ = '\n';
	out->len = start + (size_t)(o - (out->data + start));
	return 0;
}

int
dkim_canon_header(enum dkim_canon c, const char *f, size_t n,
    struct buf *out)
{
	int rc;

	if (c == DKIM_RELAXED)
		return canon_relaxed(f, n, out);
	if ((rc = buf_append(out, f, n)) < 0)
		return rc;
	return buf_append(out, "\r\n", 2);
}

size_t
dkim_header_end(const char *msg, size_t len, size_t *body_off)
{
	const char *p;
	size_t at;

	if (len >= 2 && msg[0] == '\r' && msg[1] == '\n') {
		if (body_off != NULL)
			*body_off = 2;
		return 0;
	}
	for (at = 0; at + 4 <= len; at = (size_t)(p - msg) + 1) {
		p = memchr(msg + at, '\r', len - at);
		if (p == NULL || (size_t)(p - msg) + 4 > len)
			break;
		if (p[1] == '\n' && p[2] == '\r' && p[3] == '\n') {
			if (body_off != NULL)
				*body_off = (size_t)(p - msg) + 4;
			return (size_t)(p - msg) + 2;
		}
	}
	if (body_off != NULL)
		*body_off = len;
	return len;
}

/* End of the line at i: the index of its CRLF, or len. */
static size_t
line_end(const char *h, size_t len, size_t i)
{
	for (;;) {
		const char *cr = memchr(h + i, '\r', len - i);

		if (cr == NULL)
			return len;
		i = (size_t)(cr - h);
		if (i + 1 < len && h[i + 1] == '\n')
			return i;
		i++;
		if (i >= len)
			return len;
	}
}

static bool
name_wanted(const char *h, size_t off, size_t name_len,
    const char *const *names, size_t nnames)
{
	if (names == NULL)
		return true;
	for (size_t k = 0; k < nnames; k++)
		if (strlen(names[k]) == name_len &&
		    strncasecmp(h + off, names[k], name_len) == 0)
			return true;
	return false;
}

int
dkim_fields(const char *hdr, size_t len, const char *const *names,
    size_t nnames, struct dkim_field *f, size_t max)
{
	size_t i = 0, n = 0;

	while (i < len) {
		size_t start = i, end = line_end(hdr, len, i), name_len;
		const char *colon;

		/* Continuation lines (leading WSP) belong to this field. */
		while (end + 2 < len && is_wsp(hdr[end + 2]))
			end = line_end(hdr, len, end + 2);
		colon = memchr(hdr + start, ':', end - start);
		name_len = colon != NULL ? (size_t)(colon - (hdr + start)) : 0;
		while (name_len > 0 && is_wsp(hdr[start + name_len - 1]))
			name_len--;
		i = end + 2 > len ? len : end + 2;
		if (colon == NULL || name_len == 0 ||
		    !name_wanted(hdr, start, name_len, names, nnames))
			continue;
		if (n == max)
			return -E2BIG;
		f[n].off = (uint32_t)start;
		f[n].len = (uint32_t)(end - start);
		f[n].name_len = (uint32_t)name_len;
		f[n].used = false;
		n++;
	}
	return (int)n;
}

struct dkim_field *
dkim_field_take(const char *hdr, struct dkim_field *f, size_t n,
    const char *name, size_t name_len)
{
	while (n-- > 0) {
		if (f[n].used || f[n].name_len != name_len ||
		    strncasecmp(hdr + f[n].off, name, name_len) != 0)
			continue;
		f[n].used = true;
		return &f[n];
	}
	return NULL;
}
