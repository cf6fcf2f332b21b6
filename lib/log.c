/*
 * log.c - see log.h.
 */
#include "log.h"

#include <assert.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>

int log_min_level = LOG_INFO;
const char *log_progname = "sluiced";

/*
 * A thread that called log_buffer_lines() collects its lines here and
 * writes them with log_buffer_flush(): whole lines, at most LOG_WRITE_MAX
 * bytes a write, so that even on a pipe (where writes up to PIPE_BUF are
 * atomic) no line of another thread lands in the middle of one.
 */
#define LOG_WRITE_MAX 4096
static _Thread_local struct {
	bool on;
	size_t len;
	char buf[LOG_WRITE_MAX];
} tl;

void
log_buffer_lines(void)
{
	tl.on = true;
}

void
log_buffer_flush(void)
{
	if (tl.len > 0 && write(STDERR_FILENO, tl.buf, tl.len) < 0) {
		/* Nowhere to report it. */
	}
	tl.len = 0;
}

static void
log_vline(const char *tag, const char *fmt, va_list ap)
{
	char line[2048];
	int n, m;

	n = snprintf(line, sizeof(line), "%s: %s", log_progname, tag);
	if (n < 0 || (size_t)n >= sizeof(line))
		n = 0;
	m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	if (m < 0)
		m = 0;
	n += m;
	if ((size_t)n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	static_assert(sizeof(line) <= LOG_WRITE_MAX, "a line fits the buffer");
	if (tl.on) {
		if (tl.len + (size_t)n > sizeof(tl.buf))
			log_buffer_flush();
		memcpy(tl.buf + tl.len, line, (size_t)n);
		tl.len += (size_t)n;
		return;
	}
	/* One write per line keeps lines whole across threads. */
	if (write(STDERR_FILENO, line, (size_t)n) < 0)
		return;
}

void
log_msg(enum log_level lvl, const char *fmt, ...)
{
	va_list ap;

	if ((int)lvl < log_min_level)
		return;
	va_start(ap, fmt);
	log_vline(lvl == LOG_WARN ? "warning: " : "", fmt, ap);
	va_end(ap);
}

void
log_fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vline("fatal: ", fmt, ap);
	va_end(ap);
	log_buffer_flush();
	exit(1);
}

void
log_panic_at(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	log_buffer_flush();
	fprintf(stderr, "%s: panic at %s:%d: ", log_progname, file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}
