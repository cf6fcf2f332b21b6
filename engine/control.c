/*
 * control.c - the control socket; see control.h.
 *
 * One thread, one client at a time: operator commands are rare and each
 * is answered within a few seconds, so there is nothing to multiplex.
 */
#include "control.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../deliver/deliver.h"
#include "../lib/log.h"
#include "control_parse.h"

#define CONTROL_WAIT_MS 5000
#define CONTROL_IO_MS 2000
#define CONTROL_BOUNCE_SWEEPS 3	/* unparks of a bounced message */
#define CONTROL_BOUNCE_GAP_MS 100

static struct {
	const struct config *cfg;
	struct queue_index *qi;
	struct committer *committer;
	int fd;
	int stop_pipe[2];
	pthread_t thread;
	bool running;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
} ctl = { .fd = -1, .stop_pipe = { -1, -1 } };

static void
sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/*
 * Wait until the message is gone (want < 0) or in state want; bounded.
 * true when it got there.
 */
static bool
wait_state(uint64_t qid, int want)
{
	for (unsigned waited = 0; waited < CONTROL_WAIT_MS; waited += 20) {
		struct queue_msg m;
		int rc = queue_index_get(ctl.qi, qid, &m);

		if (rc == QUEUE_ENOTFOUND && want < 0)
			return true;
		if (rc == 0) {
			bool there = want >= 0 && m.meta.state == (uint32_t)want;

			queue_msg_release(&m);
			if (there)
				return true;
		}
		sleep_ms(20);
	}
	return false;
}

static void
all_shards(enum deliver_ctl what, uint64_t qid)
{
	for (unsigned i = 0; i < ctl.cfg->shards; i++)
		if (deliver_control(i, what, qid, 0) != 0)
			log_warn("control: out of memory");
}

/* Run one command; the reply goes to out. */
static void
run(const char *line, size_t len, char *out, size_t outlen)
{
	struct control_cmd cmd;
	struct queue_msg m;
	const char *verb, *arg;
	char why[128];
	int rc;

	if (control_parse(line, len, &cmd, why, sizeof(why)) != 0) {
		snprintf(out, outlen, "error %s\n", why);
		return;
	}
	verb = control_verb_name(cmd.verb);
	arg = cmd.arg;
	/* Whatever was acknowledged before the command is in the index. */
	if (committer_index_sync(ctl.committer, CONTROL_WAIT_MS) != 0) {
		snprintf(out, outlen, "error the queue index cannot be "
		    "written now (see the log)\n");
		return;
	}
	switch (cmd.verb) {
	case CONTROL_SYNC:
		snprintf(out, outlen, "ok index up to date\n");
		return;
	case CONTROL_FLUSH:
		if (deliver_unpark_all_now() != 0)
			log_warn("control: flush: parked recipients keep their "
			    "retry times");
		all_shards(DELIVER_CTL_FLUSH, 0);
		snprintf(out, outlen, "ok deferred mail is due now\n");
		log_info("control: flush");
		return;
	case CONTROL_DELETE:
	case CONTROL_HOLD:
	case CONTROL_RELEASE:
	case CONTROL_BOUNCE:
		break;
	default:
		log_panic("control: bad verb %d", (int)cmd.verb);
	}
	rc = queue_index_get(ctl.qi, cmd.qid, &m);
	if (rc != 0) {
		snprintf(out, outlen, "error %s: %s\n", arg,
		    queue_strerror(rc));
		return;
	}
	if (cmd.verb == CONTROL_DELETE) {
		/* No unpark crosses it: see deliver_park_lock(). */
		deliver_park_lock();
		all_shards(DELIVER_CTL_DROP, cmd.qid);
		deliver_control(0, DELIVER_CTL_UPDATE, cmd.qid,
		    QUEUE_UPD_DELETE);
		rc = wait_state(cmd.qid, -1);
		deliver_park_unlock();
	} else if (cmd.verb == CONTROL_HOLD) {
		deliver_park_lock();
		all_shards(DELIVER_CTL_DROP, cmd.qid);
		deliver_control(0, DELIVER_CTL_UPDATE, cmd.qid, QUEUE_UPD_HOLD);
		rc = wait_state(cmd.qid, MSG_HOLD);
		deliver_park_unlock();
	} else if (cmd.verb == CONTROL_RELEASE) {
		if (m.meta.state != MSG_HOLD) {
			snprintf(out, outlen, "error %s is not on hold\n", arg);
			queue_msg_release(&m);
			return;
		}
		deliver_control(0, DELIVER_CTL_UPDATE, cmd.qid,
		    QUEUE_UPD_RELEASE);
		rc = wait_state(cmd.qid, MSG_QUEUED);
		if (rc && deliver_dispatch_msg(&m, NULL, 0) < 0)
			log_warn("control: %s released but not scheduled (out "
			    "of memory); a restart schedules it", arg);
	} else {
		if (m.meta.state == MSG_HOLD) {
			snprintf(out, outlen, "error %s is on hold: release it "
			    "first\n", arg);
			queue_msg_release(&m);
			return;
		}
		/*
		 * The owners bounce what they hold and, for a while, what
		 * arrives: then the message's parked recipients are taken
		 * out of the index, a few times, to catch parks that were
		 * still on their way to it.
		 */
		deliver_park_lock();
		all_shards(DELIVER_CTL_BOUNCE, cmd.qid);
		for (unsigned i = 0; i < CONTROL_BOUNCE_SWEEPS; i++) {
			if (i > 0) {
				sleep_ms(CONTROL_BOUNCE_GAP_MS);
				(void)committer_index_sync(ctl.committer,
				    CONTROL_WAIT_MS);
			}
			if (deliver_unpark_qid(cmd.qid) != 0)
				log_warn("control: bounce %s: its parked "
				    "recipients bounce when next tried", arg);
		}
		deliver_park_unlock();
		rc = true;
	}
	queue_msg_release(&m);
	if (!rc) {
		snprintf(out, outlen, "error %s: %s not done within %u ms\n",
		    arg, verb, CONTROL_WAIT_MS);
		return;
	}
	log_info("control: %s %s", verb, arg);
	snprintf(out, outlen, "ok %s %s\n", verb, arg);
}

static void
serve(int fd)
{
	char line[CONTROL_LINE_MAX], out[512];
	size_t n = 0;
	struct pollfd p = { .fd = fd, .events = POLLIN };

	/* One line, bounded in length and time. */
	while (n < CONTROL_LINE_MAX && memchr(line, '\n', n) == NULL) {
		ssize_t r;

		if (poll(&p, 1, CONTROL_IO_MS) <= 0)
			return;
		r = read(fd, line + n, CONTROL_LINE_MAX - n);
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	run(line, n, out, sizeof(out));
	if (write(fd, out, strlen(out)) < 0)
		log_warn("control: reply: %s", strerror(errno));
}

static void *
control_main(void *arg)
{
	struct pollfd p[2] = {
		{ .fd = ctl.fd, .events = POLLIN },
		{ .fd = ctl.stop_pipe[0], .events = POLLIN },
	};

	(void)arg;
	for (;;) {
		int c;

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			log_warn("control: poll: %s", strerror(errno));
			break;
		}
		if (p[1].revents)
			break;
		c = accept4(ctl.fd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0)
			continue;
		serve(c);
		close(c);
	}
	return NULL;
}

int
control_start(const struct config *cfg, struct queue_index *qi,
    struct committer *committer)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int rc;

	ctl.cfg = cfg;
	ctl.qi = qi;
	ctl.committer = committer;
	if ((size_t)snprintf(ctl.path, sizeof(ctl.path), "%s/control.sock",
	    cfg->spool) >= sizeof(ctl.path)) {
		log_warn("control: spool path too long for a socket; "
		    "sluicectl queue commands are unavailable");
		return -ENAMETOOLONG;
	}
	memcpy(sa.sun_path, ctl.path, sizeof(ctl.path));
	unlink(ctl.path);	/* a stale one: the spool lock is ours */
	ctl.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (ctl.fd < 0 || pipe2(ctl.stop_pipe, O_CLOEXEC) < 0)
		goto fail;
	if (bind(ctl.fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    chmod(ctl.path, 0600) < 0 || listen(ctl.fd, 16) < 0)
		goto fail;
	if ((rc = pthread_create(&ctl.thread, NULL, control_main, NULL)) != 0) {
		errno = rc;
		goto fail;
	}
	ctl.running = true;
	return 0;
fail:
	rc = -errno;
	log_warn("control: %s: %s", ctl.path, strerror(errno));
	if (ctl.fd >= 0)
		close(ctl.fd);
	ctl.fd = -1;
	return rc;
}

void
control_stop(void)
{
	if (!ctl.running)
		return;
	if (write(ctl.stop_pipe[1], "x", 1) < 0)
		log_warn("control: stop: %s", strerror(errno));
	pthread_join(ctl.thread, NULL);
	close(ctl.fd);
	close(ctl.stop_pipe[0]);
	close(ctl.stop_pipe[1]);
	unlink(ctl.path);
	ctl.running = false;
}
