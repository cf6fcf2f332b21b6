/*
 * Description: early writeback of an append-only log. After a few MiB
 * appended and reported through wback_wrote(), the file's older pages
 * leave the page cache (written back, then dropped) within a few
 * seconds, while its bytes read back unchanged; the writer's descriptor
 * may be closed at once (wback keeps its own); a truncated file
 * (copytruncate) is written and dropped again from its new start; a pipe
 * is not registered and costs nothing.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "../../lib/wback.h"
#include "check.h"

#define MIB		(1u << 20)
#define WAIT_MS		8000

static char dir[] = "/tmp/sluice-t-wback-XXXXXX";

/* Pages of [0, len) of path that are in the page cache. */
static size_t
resident(const char *path, size_t len)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE), n = len / page, in = 0;
	unsigned char *vec = malloc(n);
	void *m;
	int fd = open(path, O_RDONLY);

	CHECK_FATAL(fd >= 0 && vec != NULL);
	m = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
	CHECK_FATAL(m != MAP_FAILED);
	CHECK_FATAL(mincore(m, len, vec) == 0);
	for (size_t i = 0; i < n; i++)
		in += vec[i] & 1;
	munmap(m, len);
	close(fd);
	free(vec);
	return in;
}

/* Appends mib MiB of a known pattern through fd, a line at a time. */
static void
append(int fd, unsigned mib, unsigned seed)
{
	char line[128];

	for (size_t done = 0; done < (size_t)mib * MIB; done += sizeof(line)) {
		for (size_t i = 0; i < sizeof(line) - 1; i++)
			line[i] = (char)('a' + (done / sizeof(line) + i +
			    seed) % 26);
		line[sizeof(line) - 1] = '\n';
		CHECK_FATAL(write(fd, line, sizeof(line)) ==
		    (ssize_t)sizeof(line));
		wback_wrote(sizeof(line));
	}
}

/* Waits (bounded) until at most max of the first len bytes' pages are
 * cached; returns how many still are. */
static size_t
wait_dropped(const char *path, size_t len, size_t max)
{
	struct timespec ms = { 0, 20 * 1000000 };
	size_t in = 0;

	for (int t = 0; t < WAIT_MS / 20; t++) {
		if ((in = resident(path, len)) <= max)
			break;
		/* More bytes keep the rounds going, as a busy log does. */
		nanosleep(&ms, NULL);
	}
	return in;
}

static void
check_pattern(const char *path, size_t from, size_t len, unsigned seed)
{
	char *b = malloc(len);
	int fd = open(path, O_RDONLY);
	size_t bad = 0;

	CHECK_FATAL(fd >= 0 && b != NULL);
	CHECK_FATAL(pread(fd, b, len, (off_t)from) == (ssize_t)len);
	for (size_t o = 0; o < len; o++) {
		size_t at = from + o, ln = at / 128, i = at % 128;
		char want = i == 127 ? '\n' : (char)('a' + (ln + i + seed) % 26);

		bad += b[o] != want;
	}
	CHECK(bad == 0);
	close(fd);
	free(b);
}

static void
drops_written_pages(void)
{
	char path[128];
	size_t in, pages = 4 * MIB / (size_t)sysconf(_SC_PAGESIZE);
	int fd, p[2];

	printf("RUN drops_written_pages\n");
	snprintf(path, sizeof(path), "%s/delivery.log", dir);
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	CHECK_FATAL(fd >= 0);
	wback_add(fd);
	wback_add(fd);		/* the same file twice: one entry */
	CHECK_FATAL(pipe(p) == 0);
	wback_add(p[1]);	/* not a file: ignored */
	close(p[0]);
	close(p[1]);
	append(fd, 6, 0);
	close(fd);		/* wback holds its own descriptor */
	/* Two rounds past the first 4 MiB: they were written back and
	 * dropped. Without wback they would all still be cached (the test
	 * reads them as resident right after writing). */
	in = wait_dropped(path, 4 * MIB, pages / 8);
	if (in > pages / 8)
		fprintf(stderr, "%zu of %zu pages still cached\n", in, pages);
	CHECK(in <= pages / 8);
	check_pattern(path, 0, 6 * MIB, 0);
	printf("PASS drops_written_pages\n");
}

static void
after_truncation(void)
{
	char path[128];
	size_t in, pages = 2 * MIB / (size_t)sysconf(_SC_PAGESIZE);
	int fd;

	printf("RUN after_truncation\n");
	snprintf(path, sizeof(path), "%s/delivery.log", dir);
	/* What logrotate's copytruncate does, then more lines. */
	CHECK_FATAL(truncate(path, 0) == 0);
	fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
	CHECK_FATAL(fd >= 0);
	append(fd, 2, 7);
	/* The first round after the shrink starts over; a little more
	 * gives it the next one. */
	for (int i = 0; i < 3; i++)
		append(fd, 1, 7);
	close(fd);
	in = wait_dropped(path, 2 * MIB, pages / 8);
	CHECK(in <= pages / 8);
	check_pattern(path, 0, 2 * MIB, 7);
	printf("PASS after_truncation\n");
}

int
main(void)
{
	char path[128];

	CHECK_FATAL(mkdtemp(dir) != NULL);
	drops_written_pages();
	after_truncation();
	snprintf(path, sizeof(path), "%s/delivery.log", dir);
	unlink(path);
	rmdir(dir);
	return check_done();
}
