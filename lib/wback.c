/*
 * wback.c - see wback.h.
 *
 * The table of files only grows (WBACK_FILES entries, never removed
 * while the process runs), so the thread reads it without the lock: an
 * entry is complete before the count that makes it visible is stored
 * (release), and only the thread touches an entry's offsets after that.
 */
#include "wback.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "thread.h"
#include "efd.h"

/* With less than a chunk written, the rest is pushed after this long. */
#define WBACK_IDLE_MS	1000

struct wback_file {
	int fd;			/* our duplicate */
	dev_t dev;
	ino_t ino;
	off_t started;		/* writeback started up to here */
	off_t dropped;		/* page cache dropped up to here */
};

static struct {
	pthread_mutex_t mu;
	struct wback_file f[WBACK_FILES];
	atomic_uint n;
	atomic_int efd;		/* -1: no thread (yet, or it failed) */
	bool tried;
	atomic_uint_fast64_t total;	/* bytes written over all files */
} wb = { .mu = PTHREAD_MUTEX_INITIALIZER, .efd = -1 };

/*
 * One round for one file: drop what the previous round started writing
 * back (waiting for it here, off every writer's path), then start
 * writeback of what the file grew by since. true: this round started
 * some, for the next one to drop.
 */
static bool
wback_push(struct wback_file *f, off_t page)
{
	struct stat st;
	off_t end;

	if (fstat(f->fd, &st) != 0)
		return false;
	if (st.st_size < f->started) {
		/* Truncated (copytruncate): start over from the start. */
		f->started = f->dropped = 0;
	}
	end = f->started & ~(page - 1);
	if (end > f->dropped) {
		if (sync_file_range(f->fd, f->dropped, end - f->dropped,
		    SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
		    SYNC_FILE_RANGE_WAIT_AFTER) == 0)
			(void)posix_fadvise(f->fd, f->dropped,
			    end - f->dropped, POSIX_FADV_DONTNEED);
		f->dropped = end;
	}
	if (st.st_size <= f->started)
		return false;
	(void)sync_file_range(f->fd, f->started, st.st_size - f->started,
	    SYNC_FILE_RANGE_WRITE);
	f->started = st.st_size;
	return true;
}

static void *
wback_main(void *arg)
{
	int efd = atomic_load(&wb.efd);
	off_t page = (off_t)sysconf(_SC_PAGESIZE);
	uint_fast64_t seen = 0, now;
	bool more = false;
	uint64_t v;

	(void)arg;
	thread_name("wback", -1);
	if (page <= 0)
		page = 4096;
	for (;;) {
		struct pollfd p = { .fd = efd, .events = POLLIN };

		now = atomic_load_explicit(&wb.total, memory_order_relaxed);
		/* Asleep for good while nothing is written and nothing is
		 * left to drop. */
		if (poll(&p, 1, now != seen || more ? WBACK_IDLE_MS : -1) < 0 &&
		    errno != EINTR)
			break;
		while (read(efd, &v, sizeof(v)) > 0)
			;
		seen = atomic_load_explicit(&wb.total, memory_order_relaxed);
		more = false;
		for (unsigned i = 0, n = atomic_load_explicit(&wb.n,
		    memory_order_acquire); i < n; i++)
			more |= wback_push(&wb.f[i], page);
	}
	return NULL;
}

/* Under wb.mu, once. The thread takes no signal: they are the
 * process's to handle where it chose to. */
static void
wback_start(void)
{
	sigset_t all, old;
	pthread_attr_t attr;
	pthread_t t;
	int efd;

	wb.tried = true;
	efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (efd < 0)
		return;
	atomic_store(&wb.efd, efd);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	if (pthread_attr_init(&attr) != 0 ||
	    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED) != 0 ||
	    pthread_create(&t, &attr, wback_main, NULL) != 0) {
		atomic_store(&wb.efd, -1);
		close(efd);
	}
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

void
wback_add(int fd)
{
	struct wback_file *f;
	struct stat st;
	unsigned n;
	int dup;

	if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
		return;
	pthread_mutex_lock(&wb.mu);
	n = atomic_load_explicit(&wb.n, memory_order_relaxed);
	for (unsigned i = 0; i < n; i++)
		if (wb.f[i].dev == st.st_dev && wb.f[i].ino == st.st_ino)
			goto out;
	if (n == WBACK_FILES)
		goto out;
	if ((dup = fcntl(fd, F_DUPFD_CLOEXEC, 3)) < 0)
		goto out;
	f = &wb.f[n];
	f->fd = dup;
	f->dev = st.st_dev;
	f->ino = st.st_ino;
	/* What is there already is the kernel's to write back. */
	f->started = f->dropped = st.st_size;
	atomic_store_explicit(&wb.n, n + 1, memory_order_release);
	if (!wb.tried)
		wback_start();
out:
	pthread_mutex_unlock(&wb.mu);
}

void
wback_wrote(size_t n)
{
	uint_fast64_t old = atomic_fetch_add_explicit(&wb.total, n,
	    memory_order_relaxed);
	int efd;

	if (old / WBACK_CHUNK == (old + n) / WBACK_CHUNK)
		return;
	/* A chunk boundary crossed: wake the thread (an eventfd write
	 * does not block while its counter is below 2^64 - 2). */
	if ((efd = atomic_load_explicit(&wb.efd, memory_order_relaxed)) >= 0)
		(void)efd_wake(efd);	/* a log's writeback: no more to do */
}
