/*
 * log.h - one-line diagnostics on standard error.
 *
 * Each call writes one whole line with a single write(2), so lines from
 * different shard threads never interleave. A thread that logs a line per
 * message (a shard) may call log_buffer_lines() once: its lines then
 * collect in a thread-local buffer and go out with log_buffer_flush()
 * (call it before the thread sleeps), many whole lines a write; fatal and
 * panic flush first. Levels follow Postfix: info for events an operator
 * reads, warn for handled trouble, fatal exits(1), and panic is for
 * "cannot happen" (it aborts, for a core file).
 */
#ifndef SLUICE_LOG_H
#define SLUICE_LOG_H

#include <stdatomic.h>
#include <stdbool.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/*
 * Lines below this level are not written (fatal and panic always are).
 * Both settings are atomics: a reload changes them while every thread
 * logs. Each is read on its own (relaxed is enough: a line written just
 * after a reload in the old format is fine, a torn value is not).
 */
extern _Atomic int log_min_level;
/*
 * false: "sluiced: warning: TEXT" lines; true: one JSON object a line,
 * {"ts":"2026-12-06T23:48:09.123Z","level":"warning","program":"sluiced",
 * "msg":"TEXT"}, for log shippers.
 */
extern _Atomic bool log_json;

/* "error", "warn", "info", "debug": the level; -1 for anything else. */
int log_level_parse(const char *s);

void log_msg(enum log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
void log_fatal(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));
void log_panic_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));
#define log_panic(...) log_panic_at(__FILE__, __LINE__, __VA_ARGS__)

void log_buffer_lines(void);
void log_buffer_flush(void);

/* Name of this program, prefixed to every line. */
extern const char *log_progname;

#endif
