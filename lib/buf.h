/*
 * buf.h - a growable byte buffer with a hard ceiling.
 *
 * All-zero is a valid empty buffer without a ceiling. data[0..len) holds
 * bytes; cap is the allocation. `max`, when not 0, is the ceiling on len:
 * an append that would pass it fails with -ENOBUFS and changes nothing, so
 * a buffer fed by a peer cannot grow without bound. The allocation stays
 * within max + 1 (room for buf_printf's terminating NUL). Set max at any
 * time; buf_reset() and buf_free() keep it. Pointers into data stay valid
 * until the next append, consume or free on the same buffer.
 *
 * Every append can fail, so its result must be looked at. Code built with
 * SLUICE_BUF_CHECKED (the Makefile defines it for proto/ and engine/) gets
 * a compiler error when it ignores one.
 */
#ifndef SLUICE_BUF_H
#define SLUICE_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef SLUICE_BUF_CHECKED
#define BUF_MUST_CHECK __attribute__((warn_unused_result))
#else
#define BUF_MUST_CHECK
#endif

struct buf {
	char *data;
	size_t len;
	size_t cap;
	size_t max;		/* ceiling on len; 0: none */
};

/* Make room for `extra` more bytes. 0, -ENOBUFS (past max), -ENOMEM. */
int buf_reserve(struct buf *b, size_t extra) BUF_MUST_CHECK;
/* Append n bytes. 0, -ENOBUFS (past max), -ENOMEM. */
int buf_append(struct buf *b, const void *p, size_t n) BUF_MUST_CHECK;
static inline int buf_puts(struct buf *b, const char *s) BUF_MUST_CHECK;
static inline int
buf_puts(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}
/*
 * Append the n strings of parts one after the other, all or none (for
 * a hot path, where printf's parsing of a format would cost more than
 * the copying). 0, -ENOBUFS (past max), -ENOMEM.
 */
int buf_puts_all(struct buf *b, const char *const *parts, size_t n)
    BUF_MUST_CHECK;
/*
 * The decimal digits of v, right-aligned to end (no NUL is written);
 * returns the first. end needs 20 bytes before it.
 */
static inline char *
dec_digits(uint64_t v, char *end)
{
	do {
		*--end = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	return end;
}
/* Append formatted text. 0, -ENOBUFS (past max), -ENOMEM, -EINVAL. */
int buf_printf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3))) BUF_MUST_CHECK;
int buf_vprintf(struct buf *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0))) BUF_MUST_CHECK;
/* Drop the first n bytes (n <= len). */
void buf_consume(struct buf *b, size_t n);
/* Keep the allocation, drop the contents. */
static inline void
buf_reset(struct buf *b)
{
	b->len = 0;
}
/* Release the allocation; the buffer is empty (max kept) and reusable. */
void buf_free(struct buf *b);

#endif
