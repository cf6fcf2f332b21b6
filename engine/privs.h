/*
 * privs.h - running as an unprivileged user (config key `user`).
 *
 * Started as root, sluiced does what needs root first (bind the
 * listeners, open and recover the spool), then hands the spool to the
 * user and becomes that user for good: real, effective and saved ids and
 * the supplementary groups, so nothing can take root back. Everything it
 * opens later by path (spool segments, the control socket, the delivery
 * log) must be reachable by that user; privs_check_access() says so at
 * start rather than at the first failed delivery.
 *
 * Not started as root, sluiced runs as whoever started it and `user` is
 * not used. `user: root` keeps root (it must be written out: the default
 * is "sluice").
 */
#ifndef SLUICE_PRIVS_H
#define SLUICE_PRIVS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct privs {
	bool drop;		/* root now, and `user` is not root */
	const char *name;	/* the configured user */
	uid_t uid;
	gid_t gid;		/* the user's primary group */
};

/*
 * Decide what to become. 0; or -1 with a reason in why (the user does not
 * exist, or the lookup failed), which only happens when started as root.
 */
int privs_lookup(struct privs *p, const char *user, char *why, size_t whylen);

/*
 * Create the spool's missing directories before the queue does: those
 * above it searchable by all (0755, so the user can reach the spool), the
 * spool itself 0700. Fatal on errors. A no-op unless p->drop.
 */
void privs_make_spool(const struct privs *p, const char *spool);

/*
 * Give the spool tree (not following symlinks) to the user, and create
 * the delivery log (path as the delivery code resolves it; NULL or "-":
 * none) as the user's if it does not exist. Fatal errors are logged and
 * exit. A no-op unless p->drop.
 */
void privs_prepare(const struct privs *p, const char *spool,
    const char *dlog_path);

/* Become the user, irrevocably; fatal on any failure. No-op unless drop. */
void privs_drop(const struct privs *p);

/*
 * After privs_drop(): can the user reach the spool and the delivery log?
 * Fatal, naming the path and the user, when not.
 */
void privs_check_access(const struct privs *p, const char *spool,
    const char *dlog_path);

#endif
