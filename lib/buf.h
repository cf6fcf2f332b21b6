/*
 * buf.h - a growable byte buffer with a hard ceiling.
 *
 * All-zero is a valid empty buffer. data[0..len) holds bytes; cap is the
 * allocation. Appends that would pass `max` (when non-zero) fail with
 * -ENOBUFS rather than grow without bound: every buffer in sluice has a
 * limit. Pointers into data stay valid until the next append, consume or
 * free on the same buffer.
 */
#ifndef SLUICE_BUF_H
#define SLUICE_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <string.h>

struct buf {
	char *data;
	size_t len;
	size_t cap;
};

/* Make room for `extra` more bytes. 0, -ENOMEM. */
int buf_reserve(struct buf *b, size_t extra);
/* Append n bytes. 0, -ENOMEM. */
int buf_append(struct buf *b, const void *p, size_t n);
static inline int
buf_puts(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}
/* Append formatted text. 0, -ENOMEM. */
int buf_printf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
/* Drop the first n bytes (n <= len). */
void buf_consume(struct buf *b, size_t n);
/* Keep the allocation, drop the contents. */
static inline void
buf_reset(struct buf *b)
{
	b->len = 0;
}
/* Release the allocation; the buffer is empty and reusable after. */
void buf_free(struct buf *b);

#endif
