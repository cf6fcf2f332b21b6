/*
 * bench_source.c - `sluice-bench source`: drive an SMTP or LMTP server as
 * hard as it will go (closed loop) or at a fixed rate (open loop), and say
 * what it did: transactions accepted and refused by stage, connection
 * errors by kind, throughput, and latency percentiles. This file is the
 * run: set-up, the event loop with its timers, and bench_source_main();
 * source_int.h lists the other files and what each holds.
 *
 * Contract: bench_source_main(argc, argv), argv[0] == "source", parses the
 * options (bench_source.h), opens --connections sessions to --to, runs
 * --messages transactions (or as many as fit in --duration), prints one
 * report on stdout (text, or one JSON object with --json and nothing else
 * there) and returns the exit status: 0 the run completed (refusals are
 * measurements, not failures; an interrupt drains and completes too), 1 it
 * could not run (nothing listens at --to, the server refuses the session
 * set-up, --max-errors connection errors), 2 usage error.
 * Diagnostics go to stderr; when stderr is a terminal, a progress line too.
 *
 * I/O: one thread, one io_uring ring, built like engine/shard.c. Every
 * operation carries op | slot | generation in user_data; completions are
 * reaped in a batch, then handled (uring_loop_step()); recv uses a
 * provided buffer ring, so an idle connection holds no receive buffer;
 * each connection has at most one connect, one recv and one send in
 * flight. Handlers never send: they mark the connection dirty, and before
 * the loop sleeps each dirty connection runs its send side once and
 * flushes, so everything decided in one batch leaves in one write per
 * connection.
 *
 * Per message the only work is the few hundred bytes of header: commands
 * and header are composed in a fixed per-connection buffer, and the body
 * (built once) or the corpus file is sent by reference with sendmsg
 * iovecs. No allocation per message. With --starttls, plaintext goes
 * through OpenSSL over memory (lib/tls.h) and the ciphertext is sent on
 * the same ring.
 */
#include "source_int.h"

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "../lib/clock.h"
#include "bench.h"

static volatile sig_atomic_t src_interrupts;

static void
on_interrupt(int sig)
{
	(void)sig;
	src_interrupts++;
}

/* ---- time ------------------------------------------------------------- */

/* Connections waiting too long for a reply, a connect or a handshake. */
static void
src_timeouts(struct src *s)
{
	const char *what;
	struct src_conn *c;
	uint32_t i;

	for (i = 0; i < s->o->connections; i++) {
		c = &s->conns[i];
		if (c->fd < 0 || c->closing || c->deadline_us == 0 ||
		    s->now < c->deadline_us)
			continue;
		if (c->connecting)
			what = "connect";
		else if (c->send_state == SRC_S_TLS)
			what = "TLS handshake";
		else if (c->ecount > 0)
			what = src_strstate(c->expect[c->ehead].kind);
		else
			what = "?";
		src_conn_fail(s, c, SRC_E_TIMEOUT, false,
		    "no reply to %s within %.1f s", what,
		    (double)s->o->timeout_us / 1e6);
	}
}

/* Reconnect the connections whose backoff is over. */
static void
src_wake(struct src *s)
{
	struct src_conn *c;
	uint64_t next = 0;
	uint32_t i;

	if (s->nsleeping == 0 || s->now < s->next_wake)
		return;
	for (i = 0; i < s->o->connections; i++) {
		c = &s->conns[i];
		if (!c->sleeping)
			continue;
		if (c->wake_us > s->now && !s->stopping && !s->aborting) {
			if (next == 0 || c->wake_us < next)
				next = c->wake_us;
			continue;
		}
		c->sleeping = false;
		s->nsleeping--;
		if (!s->stopping && !s->aborting)
			src_conn_start(s, c);
	}
	s->next_wake = next;
}

/* Open loop: hand the transactions now due to idle connections. */
static void
src_schedule(struct src *s)
{
	const struct bench_source_opts *o = s->o;
	uint64_t seq;
	struct src_conn *c;

	if (s->stopping || s->aborting)
		return;
	if (o->rate <= 0) {
		if (o->duration_us && s->now >= s->t0 + o->duration_us)
			src_stop(s);
		return;
	}
	seq = s->next_seq;
	if ((o->messages && seq >= o->messages) || (o->duration_us &&
	    src_sched_at(s, seq) >= s->t0 + o->duration_us)) {
		src_stop(s);
		return;
	}
	while (src_sched_at(s, seq) <= s->now &&
	    (o->messages == 0 || seq < o->messages) &&
	    (c = src_idle_pop(s)) != NULL) {
		src_conn_kick(s, c);
		seq++;
	}
}

/* Run the send side of every connection touched, and send. */
static void
src_flush_dirty(struct src *s)
{
	struct src_conn *c;

	while (s->dirty_head != UINT32_MAX) {
		c = &s->conns[s->dirty_head];
		s->dirty_head = c->next_dirty;
		c->dirty = false;
		src_conn_send(s, c);
		src_conn_flush(s, c);
	}
}

/* How long the loop may sleep. */
static uint64_t
src_wait_us(const struct src *s)
{
	const struct bench_source_opts *o = s->o;
	uint64_t next = s->next_tick;

	if (s->progress && s->next_progress < next)
		next = s->next_progress;
	if (s->nsleeping && s->next_wake < next)
		next = s->next_wake;
	if (!s->stopping && o->rate > 0 && s->idle_count > 0 &&
	    src_sched_at(s, s->next_seq) < next)
		next = src_sched_at(s, s->next_seq);
	if (!s->stopping && o->rate <= 0 && o->duration_us &&
	    s->t0 + o->duration_us < next)
		next = s->t0 + o->duration_us;
	if (s->quit_deadline && s->quit_deadline < next)
		next = s->quit_deadline;
	return next > s->now ? next - s->now : 0;
}

/* ---- the loop --------------------------------------------------------- */

static bool
src_done(struct src *s)
{
	if (s->aborting)
		return true;
	if (!s->stopping || s->live > 0)
		return false;
	/* Measured; let the sessions QUIT, for a bounded time. */
	if (s->quit_deadline == 0)
		s->quit_deadline = s->now + SRC_QUIT_GRACE_US;
	return s->nopen == 0 || s->now >= s->quit_deadline;
}

static void
src_loop(struct src *s)
{
	int interrupts = 0;
	uint32_t ci;

	s->now = clock_mono_us();
	s->t0 = s->now;
	s->next_tick = s->now + SRC_TICK_US;
	s->next_progress = s->now + SRC_PROGRESS_US;
	for (ci = 0; ci < SRC_PROGRESS_SAMPLES; ci++)
		s->prog_t[ci] = s->t0;
	for (ci = 0; ci < s->o->connections; ci++)
		src_conn_start(s, &s->conns[ci]);
	for (;;) {
		if (src_interrupts != interrupts) {
			interrupts = src_interrupts;
			if (interrupts == 1) {
				if (!s->o->quiet) {
					src_progress_erase(s);
					log_info("interrupted: finishing the "
					    "transactions under way (again to "
					    "stop at once)");
				}
				src_stop(s);
			} else if (!s->aborting) {
				snprintf(s->error, sizeof(s->error),
				    "interrupted");
				s->aborting = true;
			}
		}
		src_schedule(s);
		src_flush_dirty(s);
		if (src_done(s))
			break;
		/* Reap every completion first, then run the handlers. */
		uring_loop_step(&s->loop, src_wait_us(s));
		s->now = s->loop.now_us;
		if (s->now >= s->next_tick) {
			src_timeouts(s);
			s->next_tick = s->now + SRC_TICK_US;
		}
		src_wake(s);
		if (s->progress && s->now >= s->next_progress) {
			src_progress_show(s);
			s->next_progress = s->now + SRC_PROGRESS_US;
		}
	}
	if (s->end_us == 0 || s->aborting)
		s->end_us = s->now;
}

/* ---- set-up ----------------------------------------------------------- */

/* base64 of n bytes into out (NUL-terminated), then CRLF. false if too long. */
static bool
b64_line(const void *in, size_t n, char *out, size_t outlen)
{
	size_t len = 4 * ((n + 2) / 3);

	if (n > (size_t)INT_MAX / 2 || len + 3 > outlen)
		return false;
	(void)EVP_EncodeBlock((unsigned char *)out, in, (int)n);
	memcpy(out + len, "\r\n", 3);
	return true;
}

static int
setup_auth(struct src *s)
{
	const struct bench_source_opts *o = s->o;
	char plain[2 * SRC_AUTH_MAX + 2];
	size_t ul = strlen(o->auth_user), pl = strlen(o->auth_pass);
	char *p = s->auth_plain;
	size_t cap = sizeof(s->auth_plain);

	/* RFC 4616: authzid (empty) NUL authcid NUL passwd. */
	plain[0] = '\0';
	memcpy(plain + 1, o->auth_user, ul);
	plain[1 + ul] = '\0';
	memcpy(plain + 2 + ul, o->auth_pass, pl);
	memcpy(p, "AUTH PLAIN ", 11);
	if (!b64_line(plain, 2 + ul + pl, p + 11, cap - 11) ||
	    !b64_line(o->auth_user, ul, s->auth_user64,
	    sizeof(s->auth_user64)) ||
	    !b64_line(o->auth_pass, pl, s->auth_pass64,
	    sizeof(s->auth_pass64)))
		return -1;
	/* An empty password is "=" in LOGIN, not an empty line. */
	if (pl == 0)
		memcpy(s->auth_pass64, "=\r\n", 4);
	return 0;
}

static void
setup_run_id(struct src *s)
{
	uint32_t v;
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);

	if (fd < 0 || read(fd, &v, sizeof(v)) != (ssize_t)sizeof(v))
		v = (uint32_t)getpid();
	if (fd >= 0)
		close(fd);
	snprintf(s->run_id, sizeof(s->run_id), "%08x", v);
}

/* Enough descriptors for every connection, raising the soft limit. */
static int
setup_fds(struct src *s, char *why, size_t whylen)
{
	rlim_t need = (rlim_t)s->o->connections + SRC_FD_SPARE;
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= need)
		return 0;
	rl.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
	setrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < need) {
		snprintf(why, whylen, "%u connections need %llu file "
		    "descriptors; the limit is %llu", s->o->connections,
		    (unsigned long long)need,
		    (unsigned long long)rl.rlim_cur);
		return -1;
	}
	return 0;
}

static int
setup_ring(struct src *s, char *why, size_t whylen)
{
	unsigned cq = 2 * SRC_RING_ENTRIES;
	int rc;

	/* Room for every completion that can be pending at once. */
	while (cq < 4 * s->o->connections)
		cq *= 2;
	if ((rc = uring_init(&s->ring, SRC_RING_ENTRIES, cq)) < 0) {
		snprintf(why, whylen, "io_uring_queue_init: %s", strerror(-rc));
		return -1;
	}
	s->ring_ok = true;
	if ((rc = uring_bufs_setup(&s->ring, &s->bufs, SRC_RECV_BUFS,
	    SRC_RECV_BUF_SIZE, SRC_BGID)) < 0) {
		snprintf(why, whylen, "provided buffers: %s", strerror(-rc));
		return -1;
	}
	if (uring_loop_init(&s->loop, &s->ring, SRC_CQE_BATCH, src_dispatch,
	    s, "event loop") < 0) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	return 0;
}

/* 0, -1 (could not set up: exit 1) or -2 (bad argument: exit 2). */
static int
src_init(struct src *s, const struct bench_source_opts *o, char *why,
    size_t whylen)
{
	size_t cap, i;
	int n;

	s->o = o;
	s->dirty_head = UINT32_MAX;
	hist_init(&s->st.lat_txn);
	hist_init(&s->st.lat_greet);
	hist_init(&s->st.lat_tls);
	s->real_off = (int64_t)clock_real_us() - (int64_t)clock_mono_us();
	setup_run_id(s);
	n = snprintf(s->mail_cmd, sizeof(s->mail_cmd), "MAIL FROM:<%s>\r\n",
	    o->from);
	assert(n > 0 && (size_t)n < sizeof(s->mail_cmd));
	s->mail_cmd_len = (size_t)n;
	if (o->from[0])
		snprintf(s->from_hdr, sizeof(s->from_hdr), "From: <%s>\r\n",
		    o->from);
	else
		snprintf(s->from_hdr, sizeof(s->from_hdr),
		    "From: <MAILER-DAEMON@sluice-bench.invalid>\r\n");
	if (o->auth && setup_auth(s) < 0) {
		snprintf(why, whylen, "--auth: cannot encode");
		return -2;
	}
	if (o->corpus != NULL) {
		if (src_corpus_load(s, o->corpus, why, whylen) < 0)
			return -2;
	} else if (src_body_setup(s, why, whylen) < 0) {
		return -1;
	}
	if (setup_fds(s, why, whylen) < 0)
		return -1;
	if (o->starttls || o->tls) {
		struct tls_client_cfg tc = {
			.verify = o->tls_verify != NULL,
			.cafile = o->tls_verify,
		};

		s->tls_ctx = tls_ctx_client(&tc, why, whylen);
		if (s->tls_ctx == NULL)
			return o->tls_verify ? -2 : -1;
	}
	/*
	 * One connection's output between two sends is at most: the header
	 * of a message, the dot, RSET, MAIL, every RCPT, DATA and QUIT (see
	 * the send side). Rounded generously; src_out_room() checks.
	 */
	cap = SRC_HEAD_BASE + strlen(s->from_hdr) + s->mail_cmd_len +
	    strlen(s->auth_plain) + (size_t)(o->recipients + 1) *
	    (SRC_ADDR_MAX + 32);
	s->heads_size = 2 * cap * o->connections;
	s->heads = mmap(NULL, s->heads_size, PROT_READ | PROT_WRITE,
	    MAP_ANONYMOUS | MAP_PRIVATE | MAP_NORESERVE, -1, 0);
	s->conns = calloc(o->connections, sizeof(*s->conns));
	s->idleq = calloc(o->connections, sizeof(*s->idleq));
	if (s->heads == MAP_FAILED || s->conns == NULL || s->idleq == NULL) {
		if (s->heads == MAP_FAILED)
			s->heads = NULL;
		snprintf(why, whylen, "out of memory for %u connections",
		    o->connections);
		return -1;
	}
	for (i = 0; i < o->connections; i++) {
		s->conns[i].fd = -1;
		s->conns[i].out[0].head = s->heads + 2 * i * cap;
		s->conns[i].out[0].cap = cap;
		s->conns[i].out[1].head = s->heads + (2 * i + 1) * cap;
		s->conns[i].out[1].cap = cap;
	}
	if (setup_ring(s, why, whylen) < 0)
		return -1;
	s->progress = !o->quiet && isatty(STDERR_FILENO);
	return 0;
}

static void
src_free(struct src *s)
{
	size_t i;

	if (s->conns != NULL) {
		for (i = 0; i < s->o->connections; i++) {
			if (s->conns[i].fd >= 0)
				close(s->conns[i].fd);
			tls_free(s->conns[i].tls);
			if (s->conns[i].tls_session != NULL)
				tls_session_free(s->conns[i].tls_session);
			buf_free(&s->conns[i].tls_tx);
		}
	}
	uring_loop_free(&s->loop);
	if (s->ring_ok)
		io_uring_queue_exit(&s->ring);
	uring_bufs_free(&s->bufs);
	if (s->heads != NULL)
		munmap(s->heads, s->heads_size);
	free(s->conns);
	free(s->idleq);
	free(s->body);
	for (i = 0; i < s->ncorpus; i++)
		free(s->corpus[i].data);
	free(s->corpus);
	tls_ctx_free(s->tls_ctx);
	buf_free(&s->tls_plain);
	buf_free(&s->tls_gather);
	free(s);
}

int
bench_source_main(int argc, char **argv)
{
	struct sigaction sa, old_int, old_term, old_pipe;
	struct bench_source_opts o;
	char why[SRC_WHY_MAX];
	struct src *s;
	int rc, status;

	log_progname = "sluice-bench source";
	switch (bench_source_opts_parse(&o, argc, argv, why, sizeof(why))) {
	case BENCH_SOURCE_HELP:
		fputs(bench_source_usage, stdout);
		return 0;
	case BENCH_SOURCE_USAGE:
		fprintf(stderr, "sluice-bench source: %s\n"
		    "Run 'sluice-bench source --help' for the options.\n", why);
		return 2;
	case BENCH_SOURCE_RUN:
		break;
	default:
		log_panic("bad parse result");
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		fprintf(stderr, "sluice-bench source: out of memory\n");
		return 1;
	}
	rc = src_init(s, &o, why, sizeof(why));
	if (rc < 0) {
		fprintf(stderr, "sluice-bench source: %s\n", why);
		src_free(s);
		return rc == -2 ? 2 : 1;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_interrupt;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, &old_pipe);
	src_interrupts = 0;

	src_loop(s);

	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	sigaction(SIGPIPE, &old_pipe, NULL);
	src_progress_erase(s);
	status = s->aborting ? 1 : 0;
	if (s->error[0])
		fprintf(stderr, "sluice-bench source: %s\n", s->error);
	if (o.json)
		src_report_json(s, status);
	else
		src_report_text(s);
	fflush(stdout);
	src_free(s);
	return status;
}
