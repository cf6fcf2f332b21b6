/*
 * buf.c - growable byte buffer; see buf.h.
 */
#include "buf.h"

#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Would len + extra pass the ceiling? */
static bool
past_max(const struct buf *b, size_t extra)
{
	return b->max != 0 && (extra > b->max || b->len > b->max - extra);
}

/* Capacity for need bytes (need may be max + 1: a printf's NUL). */
static int
grow(struct buf *b, size_t need)
{
	size_t cap, limit = b->max != 0 ? b->max + 1 : SIZE_MAX;
	char *p;

	assert(b->len <= b->cap);
	if (b->cap >= need)
		return 0;
	assert(need <= limit);
	cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap = cap * 2 > cap ? cap * 2 : need;
	if (cap > limit)
		cap = limit;
	p = realloc(b->data, cap);
	if (p == NULL)
		return -ENOMEM;
	b->data = p;
	b->cap = cap;
	return 0;
}

int
buf_reserve(struct buf *b, size_t extra)
{
	if (past_max(b, extra))
		return -ENOBUFS;
	if (b->len + extra < b->len)
		return -ENOMEM;
	return grow(b, b->len + extra);
}

int
buf_append(struct buf *b, const void *p, size_t n)
{
	int rc;

	if (n == 0)
		return 0;
	if ((rc = buf_reserve(b, n)) < 0)
		return rc;
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

int
buf_puts_all(struct buf *b, const char *const *parts, size_t n)
{
	size_t len[32], total = 0, i;
	int rc;

	assert(n <= sizeof(len) / sizeof(len[0]));
	for (i = 0; i < n; i++)
		total += len[i] = strlen(parts[i]);
	if (total == 0)
		return 0;
	if ((rc = buf_reserve(b, total)) < 0)
		return rc;
	for (i = 0; i < n; i++) {
		memcpy(b->data + b->len, parts[i], len[i]);
		b->len += len[i];
	}
	return 0;
}

int
buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
	va_list ap2;
	int n, rc;

	va_copy(ap2, ap);
	n = vsnprintf(b->data ? b->data + b->len : NULL,
	    b->data ? b->cap - b->len : 0, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		return -EINVAL;
	if (past_max(b, (size_t)n))
		return -ENOBUFS;
	if ((size_t)n >= b->cap - b->len || b->data == NULL) {
		/* n bytes and vsnprintf's NUL, which may sit at max. */
		if ((rc = grow(b, b->len + (size_t)n + 1)) < 0)
			return rc;
		n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
		assert(n >= 0 && (size_t)n < b->cap - b->len);
	}
	b->len += (size_t)n;
	return 0;
}

int
buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = buf_vprintf(b, fmt, ap);
	va_end(ap);
	return rc;
}

void
buf_consume(struct buf *b, size_t n)
{
	assert(n <= b->len);
	if (n == b->len) {
		b->len = 0;
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
}

void
buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;	/* max stays: it is the buffer's contract */
}
