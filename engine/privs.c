/*
 * privs.c - become the configured user; see privs.h.
 *
 * The order matters: supplementary groups, then the group, then the user
 * (after setresuid() there is no right left to change groups), each for
 * real, effective and saved ids. The result is checked, not assumed.
 */
#include "privs.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/log.h"

/* Descriptors nftw() may hold open while it walks the spool. */
#define PRIVS_WALK_FDS 16

int
privs_lookup(struct privs *p, const char *user, char *why, size_t whylen)
{
	struct passwd pw, *res = NULL;
	char buf[4096];
	int rc;

	*p = (struct privs){ .name = user, .uid = getuid(), .gid = getgid() };
	if (geteuid() != 0 || strcmp(user, "root") == 0)
		return 0;
	rc = getpwnam_r(user, &pw, buf, sizeof(buf), &res);
	if (res == NULL) {
		if (rc == 0 || rc == ENOENT || rc == ESRCH)
			snprintf(why, whylen, "'%s' does not exist: create it "
			    "(useradd --system --no-create-home --shell "
			    "/usr/sbin/nologin %s) or set user: root to stay "
			    "root", user, user);
		else
			snprintf(why, whylen, "user '%s': cannot look it up: %s",
			    user, strerror(rc));
		return -1;
	}
	if (pw.pw_uid == 0) {
		/* Another name for root: nothing to drop. */
		return 0;
	}
	p->drop = true;
	p->uid = pw.pw_uid;
	p->gid = pw.pw_gid;
	return 0;
}

static uid_t walk_uid;
static gid_t walk_gid;
static int walk_err;
static char walk_path[4096];

static int
give_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)ftw;
	if (flag == FTW_NS || flag == FTW_DNR) {
		walk_err = errno ? errno : EACCES;
		snprintf(walk_path, sizeof(walk_path), "%s", path);
		return 1;
	}
	if (st->st_uid == walk_uid && st->st_gid == walk_gid)
		return 0;
	if (lchown(path, walk_uid, walk_gid) < 0) {
		walk_err = errno;
		snprintf(walk_path, sizeof(walk_path), "%s", path);
		return 1;
	}
	return 0;
}

void
privs_make_spool(const struct privs *p, const char *spool)
{
	char path[4096];
	size_t i, n = strlen(spool);

	if (!p->drop)
		return;
	if (n >= sizeof(path))
		log_fatal("spool %s: path too long", spool);
	memcpy(path, spool, n + 1);
	for (i = 1; i <= n; i++) {
		if (path[i] != '/' && path[i] != '\0')
			continue;
		if (path[i - 1] == '/')
			continue;	/* "a//b" */
		path[i] = '\0';
		if (mkdir(path, i == n ? 0700 : 0755) < 0 && errno != EEXIST)
			log_fatal("spool %s: cannot create %s: %s", spool, path,
			    strerror(errno));
		if (i < n)
			path[i] = '/';
	}
}

void
privs_prepare(const struct privs *p, const char *spool, const char *dlog_path)
{
	int fd;

	if (!p->drop)
		return;
	walk_uid = p->uid;
	walk_gid = p->gid;
	walk_err = 0;
	if (nftw(spool, give_one, PRIVS_WALK_FDS, FTW_PHYS) != 0)
		log_fatal("cannot give the spool to user %s: %s: %s", p->name,
		    walk_err ? walk_path : spool,
		    strerror(walk_err ? walk_err : errno));
	if (dlog_path == NULL || strcmp(dlog_path, "-") == 0)
		return;
	/* Created here, so that the user may open it; never truncated. */
	fd = open(dlog_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC |
	    O_NOFOLLOW, 0640);
	if (fd < 0)
		log_fatal("delivery log %s: %s", dlog_path, strerror(errno));
	if (fchown(fd, p->uid, p->gid) < 0)
		log_fatal("delivery log %s: cannot give it to user %s: %s",
		    dlog_path, p->name, strerror(errno));
	close(fd);
}

void
privs_drop(const struct privs *p)
{
	uid_t r, e, s;
	gid_t rg, eg, sg;

	if (!p->drop)
		return;
	if (initgroups(p->name, p->gid) < 0)
		log_fatal("user %s: cannot set its groups: %s", p->name,
		    strerror(errno));
	if (setresgid(p->gid, p->gid, p->gid) < 0)
		log_fatal("user %s: cannot set group %u: %s", p->name,
		    (unsigned)p->gid, strerror(errno));
	if (setresuid(p->uid, p->uid, p->uid) < 0)
		log_fatal("user %s: cannot set uid %u: %s", p->name,
		    (unsigned)p->uid, strerror(errno));
	if (getresuid(&r, &e, &s) < 0 || getresgid(&rg, &eg, &sg) < 0 ||
	    r != p->uid || e != p->uid || s != p->uid || rg != p->gid ||
	    eg != p->gid || sg != p->gid)
		log_panic("user %s: ids are not what was set", p->name);
	/* No way back: root must be gone, not just out of sight. */
	if (setuid(0) == 0)
		log_panic("user %s: could become root again", p->name);
	/*
	 * Changing ids made the process non-dumpable: no core files, and
	 * the sanitizers' leak check (which ptraces its own threads) fails.
	 * Same-user access is all this allows back.
	 */
	if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) < 0)
		log_warn("prctl(PR_SET_DUMPABLE): %s", strerror(errno));
	log_info("running as user %s (uid %u, gid %u)", p->name,
	    (unsigned)p->uid, (unsigned)p->gid);
}

void
privs_check_access(const struct privs *p, const char *spool,
    const char *dlog_path)
{
	char seg[4096];

	if (!p->drop)
		return;
	snprintf(seg, sizeof(seg), "%s/seg", spool);
	if (access(spool, R_OK | W_OK | X_OK) < 0 ||
	    access(seg, R_OK | W_OK | X_OK) < 0)
		log_fatal("spool %s is not accessible to user %s: %s (every "
		    "directory above it must be searchable by the user; or "
		    "set user: root)", spool, p->name, strerror(errno));
	if (dlog_path != NULL && strcmp(dlog_path, "-") != 0 &&
	    access(dlog_path, W_OK) < 0)
		log_fatal("delivery log %s is not writable by user %s: %s",
		    dlog_path, p->name, strerror(errno));
}
