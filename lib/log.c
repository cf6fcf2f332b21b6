/*
 * log.c - see log.h.
 */
#include "log.h"
#include "wback.h"

#include <assert.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <stdlib.h>
#include <unistd.h>

_Atomic int log_min_level = LOG_INFO;
_Atomic bool log_json;

int
log_level_parse(const char *s)
{
	static const char *const names[] = {
		[LOG_DEBUG] = "debug", [LOG_INFO] = "info",
		[LOG_WARN] = "warn", [LOG_ERROR] = "error",
	};

	for (int i = 0; i < (int)(sizeof(names) / sizeof(names[0])); i++)
		if (strcmp(s, names[i]) == 0)
			return i;
	return -1;
}
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

/*
 * Every write to standard error goes through here. When that is a file,
 * its writeback is started early and in small pieces (wback.h); the
 * first write registers it.
 */
static void
log_write(const char *p, size_t n)
{
	static atomic_bool seen;

	if (!atomic_load_explicit(&seen, memory_order_relaxed) &&
	    !atomic_exchange(&seen, true))
		wback_add(STDERR_FILENO);
	if (write(STDERR_FILENO, p, n) < 0)
		return;		/* nowhere to report it */
	wback_wrote(n);
}

void
log_buffer_flush(void)
{
	if (tl.len > 0)
		log_write(tl.buf, tl.len);
	tl.len = 0;
}

/*
 * The JSON form of a line: text (already formatted, n bytes) escaped into
 * the "msg" string. Returns the length written into out (cap >= 128).
 */
static int
json_line(char *out, size_t cap, const char *level, const char *text,
    size_t n)
{
	struct timespec ts;
	struct tm tm;
	size_t o;
	int k;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	k = snprintf(out, cap, "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\","
	    "\"level\":\"%s\",\"program\":\"%s\",\"msg\":\"",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	    tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, level, log_progname);
	o = k > 0 && (size_t)k < cap ? (size_t)k : 0;
	/* Room kept for the closing "}\n" and one escape. */
	for (size_t i = 0; i < n && o + 10 < cap; i++) {
		unsigned char c = (unsigned char)text[i];

		if (c == '"' || c == '\\') {
			out[o++] = '\\';
			out[o++] = (char)c;
		} else if (c < 0x20 || c == 0x7f) {
			o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c);
		} else {
			out[o++] = (char)c;
		}
	}
	memcpy(out + o, "\"}\n", 3);
	return (int)(o + 3);
}

/* tag: the text form's prefix ("warning: "); level: the JSON form's. */
static void
log_vline(const char *tag, const char *level, const char *fmt, va_list ap)
{
	char line[2048], text[1536];
	int n, m;

	if (atomic_load_explicit(&log_json, memory_order_relaxed)) {
		m = vsnprintf(text, sizeof(text), fmt, ap);
		if (m < 0)
			m = 0;
		if ((size_t)m >= sizeof(text))
			m = sizeof(text) - 1;
		n = json_line(line, sizeof(line), level, text, (size_t)m);
	} else {
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
	}
	static_assert(sizeof(line) <= LOG_WRITE_MAX, "a line fits the buffer");
	if (tl.on) {
		if (tl.len + (size_t)n > sizeof(tl.buf))
			log_buffer_flush();
		memcpy(tl.buf + tl.len, line, (size_t)n);
		tl.len += (size_t)n;
		return;
	}
	/* One write per line keeps lines whole across threads. */
	log_write(line, (size_t)n);
}

void
log_msg(enum log_level lvl, const char *fmt, ...)
{
	va_list ap;

	if ((int)lvl < atomic_load_explicit(&log_min_level,
	    memory_order_relaxed))
		return;
	va_start(ap, fmt);
	log_vline(lvl >= LOG_WARN ? "warning: " : "", lvl >= LOG_WARN ? "warning" :
	    lvl == LOG_INFO ? "info" : "debug", fmt, ap);
	va_end(ap);
}

void
log_fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vline("fatal: ", "fatal", fmt, ap);
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
