/*
 * efd.h - waking a thread that waits on an eventfd.
 *
 * Every hand-over between sluice's threads ends the same way: the work is
 * put where the other thread looks (a ring, a list, a flag), then one is
 * added to the eventfd that thread waits on. efd_wake() is that write.
 * An eventfd's counter only blocks a writer (or, nonblocking, refuses
 * with EAGAIN) at 2^64 - 2, which means the reader has not read for a
 * very long while and will wake anyway: that is no error. A signal that
 * interrupts the write makes it again.
 */
#ifndef SLUICE_EFD_H
#define SLUICE_EFD_H

#include <errno.h>
#include <stdint.h>
#include <unistd.h>

/* Wake fd's reader. 0, or -errno (EBADF: fd is closed; a bug). */
static inline int
efd_wake(int fd)
{
	uint64_t one = 1;

	while (write(fd, &one, sizeof(one)) < 0) {
		if (errno == EINTR)
			continue;
		return errno == EAGAIN ? 0 : -errno;
	}
	return 0;
}

#endif
