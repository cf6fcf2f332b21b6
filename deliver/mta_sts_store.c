/*
 * mta_sts_store.c - the MTA-STS policies kept in the spool, so that a
 * restart does not forget them (RFC 8461 section 5.1 expects a sender to
 * keep its policies); see mta_sts.h.
 *
 * SPOOL/mta-sts/DOMAIN holds one policy as its host served it, after a
 * small head:
 *
 *	sluice-mta-sts 1
 *	id 20240101T000000
 *	fetched 1733529600
 *
 *	version: STSv1
 *	...
 *
 * A file is written under a temporary name and renamed over the old one,
 * without fsync: a policy lost in a crash is only fetched again. At start
 * the policy is parsed again, as if just fetched, and its max_age counted
 * from the time of its fetch; an expired one is removed. Whatever does
 * not parse is removed too: the cache never trusts a file more than the
 * network.
 */
#include "mta_sts.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../lib/log.h"

#define STORE_DIR "mta-sts"
#define STORE_MAGIC "sluice-mta-sts 1\n"
#define STORE_HEAD_MAX 256

static int g_dirfd = -1;

/* A domain as a file name: letters, digits, '-', '_', '.', not first. */
static bool
name_ok(const char *d)
{
	size_t n = strlen(d);

	if (n == 0 || n > MTA_STS_HOST_MAX || d[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = d[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '_' || c == '.'))
			return false;
	}
	return true;
}

int
mta_sts_store_open(const char *spool, char *why, size_t whylen)
{
	char path[4096];

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", spool, STORE_DIR) >=
	    sizeof(path)) {
		snprintf(why, whylen, "spool path too long");
		return -1;
	}
	if (mkdir(path, 0700) < 0 && errno != EEXIST) {
		snprintf(why, whylen, "cannot make %s: %s", path,
		    strerror(errno));
		return -1;
	}
	if ((g_dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		snprintf(why, whylen, "cannot open %s: %s", path,
		    strerror(errno));
		return -1;
	}
	return 0;
}

void
mta_sts_store_close(void)
{
	if (g_dirfd >= 0)
		close(g_dirfd);
	g_dirfd = -1;
}

void
mta_sts_store_save(const char *domain, const char *id, uint64_t fetched_s,
    const char *raw, size_t len)
{
	char tmp[MTA_STS_HOST_MAX + 16], head[STORE_HEAD_MAX];
	int fd, n;
	bool ok;

	if (g_dirfd < 0 || !name_ok(domain))
		return;
	snprintf(tmp, sizeof(tmp), ".%s.tmp", domain);
	n = snprintf(head, sizeof(head), STORE_MAGIC "id %s\nfetched %llu\n\n",
	    id, (unsigned long long)fetched_s);
	fd = openat(g_dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC |
	    O_NOFOLLOW, 0600);
	if (fd < 0) {
		log_warn("mta_sts: cannot keep the policy of %s: %s", domain,
		    strerror(errno));
		return;
	}
	ok = write(fd, head, (size_t)n) == n &&
	    write(fd, raw, len) == (ssize_t)len;
	ok = close(fd) == 0 && ok;
	if (!ok || renameat(g_dirfd, tmp, g_dirfd, domain) < 0) {
		log_warn("mta_sts: cannot keep the policy of %s: %s", domain,
		    strerror(errno));
		(void)unlinkat(g_dirfd, tmp, 0);
	}
}

void
mta_sts_store_remove(const char *domain)
{
	if (g_dirfd >= 0 && name_ok(domain))
		(void)unlinkat(g_dirfd, domain, 0);
}

/* One file: its id, time and policy; false when it is not usable. */
static bool
load_one(const char *name, char *buf, char id[MTA_STS_ID_MAX + 1],
    uint64_t *fetched, struct mta_sts_policy *pol)
{
	size_t cap = STORE_HEAD_MAX + MTA_STS_POLICY_MAX, n = 0;
	char *p, *end, idfmt[32];
	unsigned long long f;
	const char *why;
	ssize_t got;
	int fd;

	fd = openat(g_dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return false;
	while (n < cap && (got = read(fd, buf + n, cap - n)) > 0)
		n += (size_t)got;
	close(fd);
	if (n == cap)
		return false;
	buf[n] = '\0';
	if (strncmp(buf, STORE_MAGIC, strlen(STORE_MAGIC)) != 0 ||
	    (end = strstr(buf, "\n\n")) == NULL)
		return false;
	p = buf + strlen(STORE_MAGIC);
	*end = '\0';
	snprintf(idfmt, sizeof(idfmt), "id %%%ds\nfetched %%llu",
	    MTA_STS_ID_MAX);
	if (sscanf(p, idfmt, id, &f) != 2)
		return false;
	*fetched = f;
	end += 2;
	return mta_sts_policy_parse(end, n - (size_t)(end - buf), pol,
	    &why) == 0;
}

void
mta_sts_store_load(unsigned max, void (*fn)(const char *domain,
    const char *id, uint64_t fetched_s, const struct mta_sts_policy *pol,
    void *arg), void *arg)
{
	char *buf = malloc(STORE_HEAD_MAX + MTA_STS_POLICY_MAX + 1);
	struct mta_sts_policy *pol = malloc(sizeof(*pol));
	uint64_t now = (uint64_t)time(NULL), fetched;
	char id[MTA_STS_ID_MAX + 1];
	unsigned loaded = 0;
	struct dirent *de;
	DIR *dir = NULL;
	int fd;

	if (g_dirfd < 0 || buf == NULL || pol == NULL ||
	    (fd = dup(g_dirfd)) < 0)
		goto out;
	if ((dir = fdopendir(fd)) == NULL) {
		close(fd);
		goto out;
	}
	rewinddir(dir);		/* the offset is shared with g_dirfd */
	while ((de = readdir(dir)) != NULL) {
		if (de->d_name[0] == '.') {
			if (strcmp(de->d_name, ".") != 0 &&
			    strcmp(de->d_name, "..") != 0)
				(void)unlinkat(g_dirfd, de->d_name, 0);
			continue;
		}
		if (loaded < max && name_ok(de->d_name) &&
		    load_one(de->d_name, buf, id, &fetched, pol) &&
		    fetched + pol->max_age_s > now) {
			fn(de->d_name, id, fetched, pol, arg);
			loaded++;
			continue;
		}
		(void)unlinkat(g_dirfd, de->d_name, 0);
	}
	if (loaded > 0)
		log_info("mta_sts: %u policy(ies) kept from the last run",
		    loaded);
out:
	if (dir != NULL)
		closedir(dir);
	free(buf);
	free(pol);
}
