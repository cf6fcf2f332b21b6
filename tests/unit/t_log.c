/*
 * Description: a thread that buffers its log lines (log_buffer_lines)
 * writes nothing until log_buffer_flush(), then every line whole and in
 * order; when the lines outgrow the 4 KiB buffer, what is written early
 * ends at a line boundary; a thread that does not buffer writes each line
 * at once. Standard error goes to a file while the lines are logged.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../lib/log.h"
#include "check.h"

static char path[] = "/tmp/sluice-t-log-XXXXXX";

static off_t
size_now(void)
{
	struct stat st;

	return stat(path, &st) == 0 ? st.st_size : -1;
}

static void *
plain_thread(void *arg)
{
	off_t *after = arg;

	log_info("from a thread that does not buffer");
	*after = size_now();
	return NULL;
}

int
main(void)
{
	char want[16384], got[16384];
	size_t wlen = 0;
	off_t before_flush, after_first, early, plain;
	pthread_t th;
	ssize_t n;
	int fd, saved, i, rfd;

	fd = mkstemp(path);
	CHECK_FATAL(fd >= 0);
	saved = dup(STDERR_FILENO);
	CHECK_FATAL(saved >= 0 && dup2(fd, STDERR_FILENO) >= 0);

	log_buffer_lines();
	for (i = 0; i < 10; i++) {
		log_info("line %d of the first group", i);
		wlen += (size_t)snprintf(want + wlen, sizeof(want) - wlen,
		    "sluiced: line %d of the first group\n", i);
	}
	before_flush = size_now();
	log_buffer_flush();
	after_first = size_now();
	/* About 6 KiB of lines: the buffer must write some before a flush. */
	for (i = 0; i < 100; i++) {
		log_warn("line %03d of the second group, long enough to fill "
		    "the buffer", i);
		wlen += (size_t)snprintf(want + wlen, sizeof(want) - wlen,
		    "sluiced: warning: line %03d of the second group, long "
		    "enough to fill the buffer\n", i);
	}
	early = size_now();
	pthread_create(&th, NULL, plain_thread, &plain);
	pthread_join(th, NULL);
	log_buffer_flush();

	CHECK_FATAL(dup2(saved, STDERR_FILENO) >= 0);
	close(saved);
	rfd = open(path, O_RDONLY);
	CHECK_FATAL(rfd >= 0);
	n = read(rfd, got, sizeof(got) - 1);
	CHECK_FATAL(n >= 0);
	got[n] = '\0';
	close(rfd);
	close(fd);
	unlink(path);

	CHECK(before_flush == 0);
	CHECK(after_first > 0 && (size_t)after_first == strlen(
	    "sluiced: line 0 of the first group\n") * 10);
	CHECK(early > after_first && early < (off_t)wlen);
	CHECK(early <= after_first + 4096 * 2);
	CHECK(got[early - 1] == '\n');		/* written early: whole lines */
	CHECK(plain > early);			/* the other thread: at once */
	/* Everything, in order, with the plain thread's line at the point
	 * where the early writes had stopped. */
	CHECK((size_t)n == wlen + strlen(
	    "sluiced: from a thread that does not buffer\n"));
	CHECK(memcmp(got, want, (size_t)early) == 0);
	CHECK(strncmp(got + early, "sluiced: from a thread that does not "
	    "buffer\n", 44) == 0);
	CHECK(memcmp(got + early + 44, want + early, wlen - (size_t)early) == 0);
	return check_done();
}
