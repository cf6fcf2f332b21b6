/*
 * secret.c - see secret.h.
 */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "secret.h"

int
secret_open(const char *path, const char *what, unsigned forbid, char *why,
    size_t whylen)
{
	struct stat st;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		snprintf(why, whylen, "cannot open %s %s: %s", what, path,
		    strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(why, whylen, "%s %s is not a regular file", what,
		    path);
		close(fd);
		return -1;
	}
	if (st.st_mode & forbid) {
		bool group = (forbid & S_IRWXG) != 0;

		snprintf(why, whylen, "%s %s has mode %04o: %s may read or "
		    "change it (chmod %s it)", what, path,
		    (unsigned)(st.st_mode & 07777),
		    group ? "group or others" : "others",
		    group ? "600" : "o-rw");
		close(fd);
		return -1;
	}
	return fd;
}

char *
secret_read(const char *path, const char *what, unsigned forbid, size_t max,
    size_t *lenp, char *why, size_t whylen)
{
	size_t len = 0;
	char *buf;
	ssize_t r;
	int fd;

	if ((fd = secret_open(path, what, forbid, why, whylen)) < 0)
		return NULL;
	if ((buf = malloc(max + 1)) == NULL) {
		snprintf(why, whylen, "out of memory");
		close(fd);
		return NULL;
	}
	/* One byte more than allowed tells a file that is too big. */
	while (len <= max && (r = read(fd, buf + len, max + 1 - len)) != 0) {
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			snprintf(why, whylen, "cannot read %s %s: %s", what,
			    path, strerror(errno));
			goto fail;
		}
		len += (size_t)r;
	}
	if (len > max) {
		snprintf(why, whylen, "%s %s is larger than %zu bytes", what,
		    path, max);
		goto fail;
	}
	close(fd);
	buf[len] = '\0';
	*lenp = len;
	return buf;
fail:
	close(fd);
	secret_free(buf, len);
	return NULL;
}

void
secret_free(char *buf, size_t len)
{
	if (buf == NULL)
		return;
	explicit_bzero(buf, len);
	free(buf);
}
