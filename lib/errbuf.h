/*
 * errbuf.h - say why into a caller's buffer.
 *
 * Parsers that fail with a reason take (char *err, size_t errlen); err may
 * be NULL or errlen 0 when the caller does not want it. errbuf_set()
 * formats into it, cut to fit, always NUL-terminated.
 */
#ifndef SLUICE_ERRBUF_H
#define SLUICE_ERRBUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

static inline void __attribute__((format(printf, 3, 4)))
errbuf_set(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

#endif
