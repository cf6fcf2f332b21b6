/*
 * sdnotify.c - the NOTIFY_SOCKET protocol (see sdnotify.h): one datagram
 * per state change on an AF_UNIX socket, a path or, with a leading '@',
 * an abstract name.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "sdnotify.h"

static int notify_fd = -1;
static struct sockaddr_un notify_sa;
static socklen_t notify_salen;

int
sdnotify_init(void)
{
	const char *path = getenv("NOTIFY_SOCKET");
	size_t n;

	if (path == NULL)
		return 0;
	n = strlen(path);
	if (n < 2 || n >= sizeof(notify_sa.sun_path) ||
	    (path[0] != '/' && path[0] != '@')) {
		unsetenv("NOTIFY_SOCKET");
		return -EINVAL;
	}
	memset(&notify_sa, 0, sizeof(notify_sa));
	notify_sa.sun_family = AF_UNIX;
	memcpy(notify_sa.sun_path, path, n);
	if (path[0] == '@')
		notify_sa.sun_path[0] = '\0';	/* abstract: no NUL at the end */
	notify_salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n +
	    (path[0] == '/'));
	unsetenv("NOTIFY_SOCKET");
	notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
	    0);
	return notify_fd < 0 ? -errno : 0;
}

int
sdnotify(const char *state)
{
	if (notify_fd < 0)
		return 0;
	if (sendto(notify_fd, state, strlen(state), MSG_NOSIGNAL,
	    (const struct sockaddr *)&notify_sa, notify_salen) < 0)
		return -errno;
	return 0;
}
