/*
 * sluicectl_int.h - what sluicectl's files share: exit codes, messages.
 */
#ifndef SLUICE_SLUICECTL_INT_H
#define SLUICE_SLUICECTL_INT_H

#define CTL_EXIT_OPERATIONAL 1
#define CTL_EXIT_USAGE 2
#define CTL_EXIT_TEMPFAIL 75	/* sysexits EX_TEMPFAIL: try again later */

struct config;

void ctl_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int ctl_usage_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
/* Flush stdout; 0, or CTL_EXIT_OPERATIONAL with a message. */
int ctl_finish_output(void);

/* sluicectl_dkim.c */
int ctl_dkim_keygen(int argc, char **argv);
int ctl_dkim_check(const struct config *cfg, int argc, char **argv);

#endif
