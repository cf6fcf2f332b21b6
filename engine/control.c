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
#include "../lib/clock.h"
#include "../lib/log.h"
#include "../lib/thread.h"
#include "control_parse.h"
#include "gen.h"
#include "reload.h"
#include "stats.h"
#include "status.h"

#define CONTROL_WAIT_MS 5000
#define CONTROL_IO_MS 2000
#define CONTROL_BOUNCE_SWEEPS 3	/* unparks of a bounced message */
#define CONTROL_BOUNCE_GAP_MS 100

static struct {
	const struct config *cfg;
	struct queue_index *qi;
	struct committer *committer;
	control_reload_fn reload;
	int fd;
	int stop_pipe[2];
	pthread_t thread;
	bool running;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct stats_ring ring;		/* the totals, once a second */
	uint64_t next_sample_ms;
} ctl = { .fd = -1, .stop_pipe = { -1, -1 } };

/* One more second of the totals in the ring (for the last minute). */
static void
sample(void)
{
	struct stats_view *v = calloc(1, sizeof(*v));
	uint64_t vals[STATS_R_VALS], now = clock_mono_ms();

	if (v == NULL)
		return;
	stats_sum(v, ctl.cfg->shards);
	stats_ring_vals(v, vals);
	stats_ring_add(&ctl.ring, now, vals);
	ctl.next_sample_ms = now + 1000;
	free(v);
}

/*
 * "status": the JSON document of engine/status.c, as "ok DOCUMENT\n" in
 * a malloc'd reply; NULL when out of memory.
 */
static char *
status_reply(void)
{
	struct stats_view *v = calloc(1, sizeof(*v));
	uint64_t vals[STATS_R_VALS], delta[STATS_R_VALS], window_ms;
	char *doc = NULL, *out = NULL;
	size_t len;

	if (v == NULL)
		return NULL;
	stats_sum(v, ctl.cfg->shards);
	if (stats_queue_scan(ctl.qi, &v->queue, STATS_SCAN_MS) < 0)
		log_warn("control: status: the queue index cannot be read");
	stats_dests(v, STATS_DEST_WAIT_MS);
	stats_ring_vals(v, vals);
	stats_ring_minute(&ctl.ring, clock_mono_ms(), vals, delta, &window_ms);
	{
		struct config_gen *g = reload_gen_hold();

		/* The generation in force: its listeners, its host name. */
		doc = status_json(g != NULL ? &g->cfg : ctl.cfg,
		    g != NULL ? g->id : 1, v, delta, window_ms);
		gen_release(g);
	}
	free(v);
	if (doc == NULL)
		return NULL;
	len = strlen(doc);
	if ((out = malloc(len + 5)) != NULL)
		snprintf(out, len + 5, "ok %s\n", doc);
	free(doc);
	return out;
}

static void
sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static void
all_shards(enum deliver_ctl what, uint64_t qid)
{
	for (unsigned i = 0; i < ctl.cfg->shards; i++)
		if (deliver_control(i, what, qid, 0) != 0)
			log_warn("control: out of memory");
}

/*
 * Wait, within one shared deadline, for every acted-on id to be gone
 * (want < 0) or in state want; the number that got there.
 */
static unsigned
wait_all(const uint64_t *qid, const bool *acted, unsigned n, int want)
{
	uint64_t deadline = clock_mono_ms() + CONTROL_WAIT_MS;
	unsigned done = 0;

	for (unsigned i = 0; i < n; i++) {
		if (!acted[i])
			continue;
		for (;;) {
			struct queue_msg m;
			int rc = queue_index_get(ctl.qi, qid[i], &m);
			bool there = rc == QUEUE_ENOTFOUND && want < 0;

			if (rc == 0) {
				there = want >= 0 && m.meta.state == (uint32_t)want;
				queue_msg_release(&m);
			}
			if (there) {
				done++;
				break;
			}
			if (clock_mono_ms() >= deadline)
				break;
			sleep_ms(20);
		}
	}
	return done;
}

/*
 * Why one message cannot take the verb (its state), or NULL; m is the
 * message as the index has it.
 */
static const char *
refusal(enum control_verb verb, const struct queue_msg *m)
{
	if (verb == CONTROL_RELEASE && m->meta.state != MSG_HOLD)
		return CONTROL_NOT_HELD;
	if ((verb == CONTROL_BOUNCE || verb == CONTROL_FLUSH) &&
	    m->meta.state == MSG_HOLD)
		return CONTROL_HELD;
	return NULL;
}

/* Act on one message without waiting; the caller holds the park lock. */
static void
act(enum control_verb verb, const struct queue_msg *m)
{
	switch (verb) {
	case CONTROL_DELETE:
		all_shards(DELIVER_CTL_DROP, m->qid);
		deliver_control(0, DELIVER_CTL_UPDATE, m->qid,
		    QUEUE_UPD_DELETE);
		break;
	case CONTROL_HOLD:
		all_shards(DELIVER_CTL_DROP, m->qid);
		deliver_control(0, DELIVER_CTL_UPDATE, m->qid, QUEUE_UPD_HOLD);
		break;
	case CONTROL_RELEASE:
		deliver_control(0, DELIVER_CTL_UPDATE, m->qid,
		    QUEUE_UPD_RELEASE);
		break;
	case CONTROL_BOUNCE:
		/* The owners bounce what they hold and, for a while, what
		 * arrives; parked recipients are swept after (run()). */
		all_shards(DELIVER_CTL_BOUNCE, m->qid);
		break;
	case CONTROL_FLUSH:
		/* Parked recipients come back first, then all are due. */
		if (deliver_unpark_qid(m->qid) != 0)
			log_warn("control: flush: parked recipients keep their "
			    "retry times");
		all_shards(DELIVER_CTL_FLUSH, m->qid);
		break;
	default:
		log_panic("control: bad verb %d", (int)verb);
	}
}

/*
 * The verb on each id: every message is acted on first, then the waits
 * for the index to show the changes share one deadline, so that a bulk
 * request of CONTROL_IDS_MAX ids costs about as long as one.
 */
static void
run_ids(const struct control_cmd *cmd, char *out, size_t outlen)
{
	static bool acted[CONTROL_IDS_MAX];
	static struct queue_msg m[CONTROL_IDS_MAX];
	const char *verb = control_verb_name(cmd->verb), *why = NULL;
	unsigned n = cmd->nqid, nact = 0, gone = 0, refused = 0, done;
	int rc = 0;

	for (unsigned i = 0; i < n; i++) {
		acted[i] = false;
		rc = queue_index_get(ctl.qi, cmd->qid[i], &m[i]);
		if (rc == QUEUE_ENOTFOUND) {
			gone++;
			continue;
		}
		if (rc != 0)
			break;
		if ((why = refusal(cmd->verb, &m[i])) != NULL) {
			refused++;
			queue_msg_release(&m[i]);
			continue;
		}
		acted[i] = true;
		nact++;
	}
	if (rc != 0 && rc != QUEUE_ENOTFOUND) {
		for (unsigned i = 0; i < n; i++)
			if (acted[i])
				queue_msg_release(&m[i]);
		snprintf(out, outlen, "error the queue index: %s\n",
		    queue_strerror(rc));
		return;
	}
	/* No unpark crosses a drop or a bounce: see deliver_park_lock(). */
	deliver_park_lock();
	for (unsigned i = 0; i < n; i++)
		if (acted[i])
			act(cmd->verb, &m[i]);
	switch (cmd->verb) {
	case CONTROL_DELETE:
		done = wait_all(cmd->qid, acted, n, -1);
		break;
	case CONTROL_HOLD:
		done = wait_all(cmd->qid, acted, n, MSG_HOLD);
		break;
	case CONTROL_RELEASE:
		done = wait_all(cmd->qid, acted, n, MSG_QUEUED);
		break;
	case CONTROL_BOUNCE:
		/* Parked recipients out of the index, a few times, to catch
		 * parks that were still on their way to it. */
		for (unsigned s = 0; s < CONTROL_BOUNCE_SWEEPS; s++) {
			if (s > 0) {
				sleep_ms(CONTROL_BOUNCE_GAP_MS);
				(void)committer_index_sync(ctl.committer,
				    CONTROL_WAIT_MS);
			}
			for (unsigned i = 0; i < n; i++)
				if (acted[i] &&
				    deliver_unpark_qid(cmd->qid[i]) != 0)
					log_warn("control: bounce: parked "
					    "recipients bounce when next tried");
		}
		done = nact;
		break;
	default:
		done = nact;
		break;
	}
	deliver_park_unlock();
	for (unsigned i = 0; i < n; i++) {
		if (!acted[i])
			continue;
		/* Scheduled only once the index says it is queued again. */
		if (cmd->verb == CONTROL_RELEASE &&
		    deliver_dispatch_msg(&m[i], NULL, 0) < 0)
			log_warn("control: a released message was not "
			    "scheduled (out of memory); a restart schedules it");
		queue_msg_release(&m[i]);
	}
	if (n == 1) {
		/* One id: the reply names it, as it always has. */
		if (gone)
			snprintf(out, outlen, "error %s: %s\n", cmd->arg,
			    queue_strerror(QUEUE_ENOTFOUND));
		else if (refused)
			snprintf(out, outlen, "error %s %s\n", cmd->arg, why);
		else if (done == 0)
			snprintf(out, outlen, "error %s: %s not done within "
			    "%u ms\n", cmd->arg, verb, CONTROL_WAIT_MS);
		else
			snprintf(out, outlen, "ok %s %s\n", verb, cmd->arg);
		if (done > 0)
			log_info("control: %s %s", verb, cmd->arg);
		return;
	}
	log_info("control: %s: %u of %u message(s) (%u not in the queue, "
	    "%u refused)", verb, done, n, gone, refused);
	snprintf(out, outlen, "%s %s %u %u %u %u\n",
	    done == nact ? "ok" : "error", verb, done, gone, refused,
	    nact - done);
}

/*
 * "reload": the verdict's first line after "ok " or "error ", the rest
 * (a refused configuration's errors) as it is; malloc'd, NULL when out
 * of memory. The reload itself is logged.
 */
static char *
reload_reply(void)
{
	size_t max = 16384;
	char *text = malloc(max), *reply;
	int rc;

	if (text == NULL)
		return NULL;
	if (ctl.reload == NULL) {
		snprintf(text, max, "reload is not available\n");
		rc = -1;
	} else {
		log_info("control: reload");
		rc = ctl.reload(text, max);
	}
	reply = malloc(strlen(text) + 8);
	if (reply != NULL)
		sprintf(reply, "%s %s", rc == 0 ? "ok" : "error", text);
	free(text);
	return reply;
}

/*
 * Run one command; the reply goes to out, or for "status" (longer) to a
 * malloc'd *big.
 */
static void
run(const char *line, size_t len, char *out, size_t outlen, char **big)
{
	static struct control_cmd cmd;
	char why[128];

	if (control_parse(line, len, &cmd, why, sizeof(why)) != 0) {
		snprintf(out, outlen, "error %s\n", why);
		return;
	}
	if (cmd.verb == CONTROL_RELOAD) {
		*big = reload_reply();
		if (*big == NULL)
			snprintf(out, outlen, "error out of memory\n");
		return;
	}
	if (cmd.verb == CONTROL_STATUS) {
		/* What was acknowledged is counted as queued: if the index
		 * cannot be written now, the status says so itself. */
		(void)committer_index_sync(ctl.committer, CONTROL_WAIT_MS);
		if ((*big = status_reply()) == NULL)
			snprintf(out, outlen, "error out of memory\n");
		return;
	}
	/* Whatever was acknowledged before the command is in the index. */
	if (committer_index_sync(ctl.committer, CONTROL_WAIT_MS) != 0) {
		snprintf(out, outlen, "error the queue index cannot be "
		    "written now (see the log)\n");
		return;
	}
	if (cmd.verb == CONTROL_SYNC) {
		snprintf(out, outlen, "ok index up to date\n");
		return;
	}
	if (cmd.verb == CONTROL_FLUSH && cmd.nqid == 0) {
		if (deliver_unpark_all_now() != 0)
			log_warn("control: flush: parked recipients keep their "
			    "retry times");
		all_shards(DELIVER_CTL_FLUSH, 0);
		snprintf(out, outlen, "ok deferred mail is due now\n");
		log_info("control: flush");
		return;
	}
	run_ids(&cmd, out, outlen);
}

static void
serve(int fd)
{
	char line[CONTROL_LINE_MAX], out[512], *big = NULL;
	const char *reply = out;
	size_t n = 0, left;
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
	run(line, n, out, sizeof(out), &big);
	if (big != NULL)
		reply = big;
	/* Bounded: a client that does not read is given up on. */
	for (left = strlen(reply); left > 0;) {
		struct pollfd w = { .fd = fd, .events = POLLOUT };
		ssize_t r;

		if (poll(&w, 1, CONTROL_IO_MS) <= 0)
			break;
		if ((r = write(fd, reply, left)) < 0) {
			log_warn("control: reply: %s", strerror(errno));
			break;
		}
		reply += r;
		left -= (size_t)r;
	}
	free(big);
}

static void *
control_main(void *arg)
{
	struct pollfd p[2] = {
		{ .fd = ctl.fd, .events = POLLIN },
		{ .fd = ctl.stop_pipe[0], .events = POLLIN },
	};

	(void)arg;
	thread_name("control", -1);
	sample();
	for (;;) {
		uint64_t now = clock_mono_ms();
		int c, wait = now >= ctl.next_sample_ms ? 0 :
		    (int)(ctl.next_sample_ms - now);

		if (wait == 0) {
			sample();
			continue;
		}
		if ((c = poll(p, 2, wait)) < 0) {
			if (errno == EINTR)
				continue;
			log_warn("control: poll: %s", strerror(errno));
			break;
		}
		if (p[1].revents)
			break;
		if (c == 0)
			continue;
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
    struct committer *committer, control_reload_fn reload)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int rc;

	ctl.cfg = cfg;
	ctl.qi = qi;
	ctl.committer = committer;
	ctl.reload = reload;
	(void)stats_started_us();
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
