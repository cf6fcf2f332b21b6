/*
 * bench_sink.c - `sluice-bench sink`: an SMTP (or LMTP) server that takes
 * mail as fast as the machine allows, to stand in for MX hosts or a next
 * hop when measuring a relay, and that misbehaves on request (a reply mix,
 * delays, a connection cap, connections dropped mid-DATA). This file is
 * the run: set-up, the event loop, the stop and drain, teardown and
 * bench_sink_main(); sink_int.h lists the other files and what each holds.
 *
 * Contract: bench_sink_main(argc, argv) with argv[0] == "sink" runs until
 * --expect messages were accepted, --duration passed, or SIGINT/SIGTERM
 * (a second signal cuts the drain short), prints one report (text, or one
 * JSON object with --json) on stdout, and returns 0; 2 on a usage error,
 * 1 when it cannot start. SIGINT and SIGTERM are left blocked on return:
 * the caller is expected to exit.
 *
 * Design, after engine/shard.c (docs/architecture.md): one thread, one
 * io_uring ring; connection slots allocated at start; a multishot accept
 * per listener (--listen may be given up to SINK_LISTEN_MAX times); recv
 * through a provided buffer ring, so an idle connection holds no receive
 * buffer; at most one recv, one send and one timer in flight per
 * connection; user_data = op | slot | generation, completions reaped in a
 * batch and handled afterwards (uring_loop_step()). All input at hand is
 * processed before anything is sent, so a pipelined group gets its replies
 * in one send. A delayed reply holds the connection: the replies before it
 * leave now, processing stops (input already read is kept, no recv is
 * armed) and an IORING_OP_TIMEOUT resumes it, so replies always stay in
 * order.
 *
 * Hot path: a message costs no allocation once a slot's buffers have grown
 * and no syscall beyond recv/send. Without --store and --log only the first
 * SINK_HEAD_KEEP bytes of a message are kept (to find X-Sluice-Bench). With
 * --log the bytes are hashed as they arrive and the log is written in
 * blocks; with --store the whole message is kept and written through the
 * ring (open, write, close linked on a fixed-file slot), off the session.
 *
 * Diagnostics: startup failures are fatal (exit 1) on stderr; trouble at
 * run time is counted and shown in the report, and warned about on stderr
 * unless --quiet.
 */
#include "bench.h"
#include "sink_int.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../lib/clock.h"
#include "../lib/log.h"

/* ---- the stop --------------------------------------------------------- */

static void
begin_stop(struct sink *s)
{
	struct io_uring_sqe *sqe;
	unsigned i;

	s->stopping = true;
	s->stop_us = s->now_us;
	for (i = 0; i < s->nlisten; i++) {
		if (s->lst[i].accept_armed) {
			sqe = sink_get_sqe(s);
			io_uring_prep_cancel64(sqe,
			    uring_ud(SINK_OP_ACCEPT, i, 0), 0);
			io_uring_sqe_set_data64(sqe,
			    uring_ud(SINK_OP_CANCEL, 0, 0));
		}
		/* The kernel refuses new connections from here on. */
		close(s->lst[i].fd);
		s->lst[i].fd = -1;
	}
}

static void
tick(struct sink *s)
{
	unsigned i;

	if (s->o->duration_us > 0 && !s->stopping &&
	    s->now_us - s->start_us >= s->o->duration_us)
		s->stop_pending = true;
	if (s->log_fd >= 0 && s->logb.len > 0)
		sink_log_flush(s);
	for (i = 0; i < s->nlisten; i++) {
		if (s->lst[i].rearm && !s->stopping) {
			s->lst[i].rearm = false;
			sink_arm_accept(s, i);
		}
	}
}

/* ---- set-up and the loop ---------------------------------------------- */

static int
listen_socket(const struct sink_listen *l, char *name, size_t namelen)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[INET6_ADDRSTRLEN];
	int fd, one = 1, err;

	fd = socket(l->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd < 0)
		return -errno;
	/* No SO_REUSEPORT: a second sink on the port must fail, not share. */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		goto fail;
	/* Accepted sockets inherit it: replies are never held back. */
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
		goto fail;
	if (l->sa.ss_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
		goto fail;
	if (bind(fd, (const struct sockaddr *)&l->sa, l->salen) < 0 ||
	    listen(fd, SINK_BACKLOG) < 0 ||
	    getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
		goto fail;
	/* The name with the port actually bound (--listen ...:0). */
	if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *a6 = (const void *)&ss;

		inet_ntop(AF_INET6, &a6->sin6_addr, host, sizeof(host));
		snprintf(name, namelen, "[%s]:%u", host, ntohs(a6->sin6_port));
	} else {
		const struct sockaddr_in *a4 = (const void *)&ss;

		inet_ntop(AF_INET, &a4->sin_addr, host, sizeof(host));
		snprintf(name, namelen, "%s:%u", host, ntohs(a4->sin_port));
	}
	return fd;
fail:
	err = -errno;
	close(fd);
	return err;
}

/* As many descriptors as the hard limit allows: one per connection. */
static void
raise_nofile(struct sink *s)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			return;
	}
	if (rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur < (rlim_t)s->o->max_connections && !s->o->quiet)
		log_warn("only %llu file descriptors (ulimit -Hn): fewer "
		    "than %u connections at once", (unsigned long long)
		    rl.rlim_cur, s->o->max_connections);
}

static void
build_replies(struct sink *s)
{
	const char *h = s->o->hostname;

	snprintf(s->greeting, sizeof(s->greeting),
	    "220 %s %s sluice-bench sink\r\n", h, s->o->lmtp ? "LMTP" :
	    "ESMTP");
	snprintf(s->helo, sizeof(s->helo), "250 %s\r\n", h);
	snprintf(s->ehlo, sizeof(s->ehlo),
	    "250-%s\r\n"
	    "250-PIPELINING\r\n"
	    "250-SIZE %llu\r\n"
	    "250-8BITMIME\r\n"
	    "250-SMTPUTF8\r\n"
	    "250-ENHANCEDSTATUSCODES\r\n"
	    "250 CHUNKING\r\n", h, (unsigned long long)SINK_MSG_MAX);
}

static int
sink_setup(struct sink *s, const struct sink_opts *o)
{
	unsigned i;
	uint32_t j;
	int rc;

	s->o = o;
	s->sigfd = s->log_fd = s->store_dirfd = -1;
	for (i = 0; i < SINK_LISTEN_MAX; i++)
		s->lst[i].fd = -1;
	for (i = 0; i < o->nrule; i++)
		s->has_mix[o->rule[i].stage] = true;
	s->now_us = s->start_us = clock_mono_us();
	s->wall_start_us = clock_real_us();
	/* Ids: 24 bits of the start time, then a 40-bit sequence. */
	s->id_prefix = ((s->wall_start_us / 1000000u) & 0xffffffu) << 40;
	build_replies(s);
	raise_nofile(s);
	if ((s->lat = malloc(sizeof(*s->lat))) == NULL)
		return -ENOMEM;
	hist_init(s->lat);

	s->nslots = o->max_slots;
	s->conns = calloc(s->nslots, sizeof(*s->conns));
	if (s->conns == NULL) {
		log_warn("out of memory for %u connection slots", s->nslots);
		return -ENOMEM;
	}
	for (j = 0; j < s->nslots; j++) {
		s->conns[j].fd = -1;
		s->conns[j].next_free = j + 1 < s->nslots ? j + 1 : UINT32_MAX;
	}
	s->free_head = 0;

	if ((rc = uring_init(&s->ring, SINK_RING_ENTRIES, SINK_CQ_ENTRIES)) < 0) {
		log_warn("io_uring_queue_init: %s", strerror(-rc));
		return rc;
	}
	s->ring_ok = true;
	if ((rc = uring_bufs_setup(&s->ring, &s->bufs, SINK_RECV_BUFS,
	    SINK_RECV_BUF_SIZE, SINK_BGID)) < 0) {
		log_warn("provided buffers: %s", strerror(-rc));
		return rc;
	}
	if ((rc = uring_loop_init(&s->loop, &s->ring, SINK_CQE_BATCH,
	    sink_dispatch, s, "event loop")) < 0) {
		log_warn("out of memory");
		return rc;
	}

	if (o->log_path != NULL) {
		s->log_fd = open(o->log_path, O_WRONLY | O_CREAT | O_TRUNC |
		    O_APPEND | O_CLOEXEC, 0644);
		if (s->log_fd < 0) {
			rc = -errno;
			log_warn("--log %s: %s", o->log_path, strerror(errno));
			return rc;
		}
		if ((rc = buf_reserve(&s->logb, SINK_LOG_FLUSH + 4096)) < 0)
			return rc;
	}
	s->store_free = UINT32_MAX;
	if (o->store_dir != NULL) {
		s->store_dirfd = open(o->store_dir, O_RDONLY | O_DIRECTORY |
		    O_CLOEXEC);
		if (s->store_dirfd < 0) {
			rc = -errno;
			log_warn("--store %s: %s", o->store_dir,
			    strerror(errno));
			return rc;
		}
		rc = io_uring_register_files_sparse(&s->ring, SINK_STORE_JOBS);
		if (rc == 0) {
			s->store_ring = true;
			for (j = SINK_STORE_JOBS; j-- > 0;) {
				s->jobs[j].next_free = s->store_free;
				s->store_free = j;
			}
		} else if (!o->quiet) {
			log_warn("--store: no fixed files (%s): writing "
			    "synchronously", strerror(-rc));
		}
	}

	/* Signals arrive as reads on the ring, never as interruptions;
	 * blocked before "listening on" tells anyone we are up. */
	sigemptyset(&s->sigmask);
	sigaddset(&s->sigmask, SIGINT);
	sigaddset(&s->sigmask, SIGTERM);
	if (sigprocmask(SIG_BLOCK, &s->sigmask, NULL) < 0)
		return -errno;
	s->sigfd = signalfd(-1, &s->sigmask, SFD_CLOEXEC);
	if (s->sigfd < 0) {
		rc = -errno;
		log_warn("signalfd: %s", strerror(errno));
		return rc;
	}
	for (i = 0; i < o->nlisten; i++) {
		rc = listen_socket(&o->listen[i], s->lst[i].addr,
		    sizeof(s->lst[i].addr));
		if (rc < 0) {
			log_warn("cannot listen on %s: %s", o->listen[i].text,
			    strerror(-rc));
			return rc;
		}
		s->lst[i].fd = rc;
		s->nlisten = i + 1;
		if (!o->quiet)
			log_info("listening on %s%s", s->lst[i].addr,
			    o->lmtp ? " (LMTP)" : "");
	}

	sink_arm_signal(s);
	for (i = 0; i < s->nlisten; i++)
		sink_arm_accept(s, i);
	return 0;
}

static void
sink_loop(struct sink *s)
{
	uint64_t wait_us, deadline = 0, end;

	s->next_tick_us = s->now_us + SINK_TICK_US;
	for (;;) {
		if (s->stop_pending && !s->stopping) {
			begin_stop(s);
			deadline = s->now_us + SINK_DRAIN_US;
		}
		if (s->stopping && s->signals >= 2)
			deadline = s->now_us;	/* asked twice: go now */
		if (s->stopping && (s->nactive == 0 || s->now_us >= deadline)) {
			/* Files promised to --store are written first. */
			if (s->store_inflight == 0 ||
			    s->now_us >= s->stop_us + SINK_STORE_WAIT_US)
				break;
		}
		wait_us = s->next_tick_us > s->now_us ?
		    s->next_tick_us - s->now_us : 0;
		if (s->stopping && deadline > s->now_us &&
		    deadline - s->now_us < wait_us)
			wait_us = deadline - s->now_us;
		if (s->o->duration_us > 0 && !s->stopping) {
			end = s->start_us + s->o->duration_us;
			if (end > s->now_us && end - s->now_us < wait_us)
				wait_us = end - s->now_us;
		}
		/* Reap every completion first, then run the handlers. */
		uring_loop_step(&s->loop, wait_us);
		s->now_us = s->loop.now_us;
		if (s->now_us >= s->next_tick_us ||
		    (s->o->duration_us > 0 &&
		    s->now_us - s->start_us >= s->o->duration_us)) {
			tick(s);
			s->next_tick_us = s->now_us + SINK_TICK_US;
		}
	}
	if (!s->stopping)
		s->stop_us = s->now_us;
}

static void
sink_teardown(struct sink *s)
{
	uint32_t j;
	unsigned i;

	/* Exiting the ring cancels whatever is still in flight. */
	uring_loop_free(&s->loop);
	if (s->ring_ok)
		io_uring_queue_exit(&s->ring);
	if (s->log_fd >= 0) {
		/* Close lines for the connections still open. */
		for (j = 0; j < s->nslots; j++)
			if (s->conns[j].in_use)
				sink_log_close(s, &s->conns[j]);
		sink_log_flush(s);
		close(s->log_fd);
	}
	for (j = 0; s->conns != NULL && j < s->nslots; j++) {
		struct sink_conn *c = &s->conns[j];

		if (c->fd >= 0)
			close(c->fd);
		buf_free(&c->in);
		buf_free(&c->out);
		buf_free(&c->tx);
		buf_free(&c->msg);
		buf_free(&c->env);
		EVP_MD_CTX_free(c->sha);
		c->sha = NULL;
	}
	for (i = 0; i < SINK_STORE_JOBS; i++)
		buf_free(&s->jobs[i].msg);
	for (i = 0; i < SINK_LISTEN_MAX; i++)
		if (s->lst[i].fd >= 0)
			close(s->lst[i].fd);
	if (s->store_dirfd >= 0)
		close(s->store_dirfd);
	/*
	 * SIGINT and SIGTERM stay blocked: unblocking them would let one sent
	 * while the sink stops on its own (--expect) kill the process before
	 * it exits 0. The caller is about to exit anyway.
	 */
	if (s->sigfd >= 0)
		close(s->sigfd);
	uring_bufs_free(&s->bufs);
	free(s->conns);
	free(s->lat);
	free(s->per_sec);
	buf_free(&s->logb);
}

/* ---- entry ------------------------------------------------------------ */

int
bench_sink_main(int argc, char **argv)
{
	struct sink_opts o;
	struct sink *s;
	char why[512];
	int rc = 1;

	log_progname = "sluice-bench sink";
	sink_opts_init(&o);
	switch (sink_opts_parse(&o, argc, argv, why, sizeof(why))) {
	case SINK_PARSE_OK:
		break;
	case SINK_PARSE_HELP:
		fputs(sink_usage, stdout);
		return 0;
	case SINK_PARSE_ERROR:
		fprintf(stderr, "sluice-bench sink: %s\n"
		    "Run `sluice-bench sink --help` for the options.\n", why);
		return 2;
	default:
		log_panic("bad parse result");
	}
	if (o.quiet)
		log_min_level = LOG_WARN;
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		log_warn("out of memory");
		return 1;
	}
	if (sink_setup(s, &o) < 0)
		goto fail;
	sink_loop(s);
	if (o.json ? sink_report_json(s, stdout) < 0 :
	    (sink_report_text(s, stdout), 0))
		log_warn("cannot write the report");
	fflush(stdout);
	rc = 0;
fail:
	sink_teardown(s);
	free(s);
	return rc;
}
