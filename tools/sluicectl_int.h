/*
 * sluicectl_int.h - what sluicectl's files share: exit codes, messages.
 */
#ifndef SLUICE_SLUICECTL_INT_H
#define SLUICE_SLUICECTL_INT_H

#define CTL_EXIT_OPERATIONAL 1
#define CTL_EXIT_USAGE 2
#define CTL_EXIT_TEMPFAIL 75	/* sysexits EX_TEMPFAIL: try again later */

#include <stddef.h>

struct config;
typedef struct json_t json_t;

void ctl_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int ctl_usage_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
/* Flush stdout; 0, or CTL_EXIT_OPERATIONAL with a message. */
int ctl_finish_output(void);
/* A JSON string of s; bytes that are not UTF-8 become '?'. */
json_t *ctl_json_str(const char *s);
/* s on stdout, control characters made harmless. */
void ctl_put_str(const char *s);

/*
 * ctl_status.c: send cmd (one line, with its LF) on the running daemon's
 * control socket and read its whole answer, waiting at most wait_ms:
 * NUL-terminated and malloc'd in *out. 0, or 1 with why filled (no
 * daemon, no answer in time).
 */
int ctl_ask(const struct config *cfg, const char *cmd, unsigned wait_ms,
    char **out, char *why, size_t whylen);

/* ctl_reload.c: `sluicectl reload` */
int ctl_reload(const struct config *cfg, int argc, char **argv);

/* ctl_resolve.c: sluicectl resolve DOMAIN [--json] [--port N]. */
int ctl_resolve(const struct config *cfg, int argc, char **argv);

/* sluicectl_dkim.c */
int ctl_dkim_keygen(int argc, char **argv);
int ctl_dkim_check(const struct config *cfg, int argc, char **argv);

#endif
