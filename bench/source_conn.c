/*
 * source_conn.c - the connections of `sluice-bench source`: opening them
 * (one connect, one recv and one send in flight at most per connection),
 * closing them with a bounded backoff before the next, counting
 * connection errors by kind, driving STARTTLS through lib/tls, and the
 * completion handlers that src_dispatch() runs for each CQE.
 *
 * A connection slot is reused only once nothing of it is in flight: every
 * operation carries op | slot | generation (lib/uring.h) and a stale
 * completion fails an assertion.
 */
#include "source_int.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

const char *const src_err_names[SRC_E_COUNT] = {
	[SRC_E_REFUSED] = "refused", [SRC_E_CONNECT] = "connect",
	[SRC_E_RESET] = "reset", [SRC_E_CLOSED] = "closed",
	[SRC_E_TIMEOUT] = "timeout", [SRC_E_421] = "421",
	[SRC_E_SETUP] = "setup", [SRC_E_TLS] = "tls",
	[SRC_E_PROTOCOL] = "protocol",
};

/* Does c still have a transaction waiting for a reply? */
static bool
conn_txn_live(const struct src_conn *c)
{
	unsigned i;

	for (i = 0; i < SRC_TXN_MAX; i++)
		if (c->txn[i].live)
			return true;
	return false;
}

static void
arm_recv(struct src *s, struct src_conn *c)
{
	assert(!c->recv_armed);
	assert(!c->closing);
	uring_recv_bufs(&s->ring, c->fd, &s->bufs,
	    uring_ud(SRC_OP_RECV, src_conn_idx(s, c), c->gen));
	c->recv_armed = true;
	c->inflight++;
}

/*
 * Send what the send side composed, if no send is in flight; otherwise it
 * leaves when the one in flight completes (handle_send).
 */
void
src_conn_flush(struct src *s, struct src_conn *c)
{
	struct io_uring_sqe *sqe;
	struct src_out *o;
	unsigned i;

	if (c->send_armed || c->closing || c->fd < 0 || c->connecting)
		return;
	o = &c->out[c->fill];
	if (c->tls != NULL) {
		/* Commands wait for the handshake; its own output does not. */
		if (tls_established(c->tls) && o->niov > 0) {
			buf_reset(&s->tls_gather);
			for (i = 0; i < o->niov; i++)
				if (buf_append(&s->tls_gather, o->iov[i].iov_base,
				    o->iov[i].iov_len) < 0) {
					src_conn_fail(s, c, SRC_E_TLS, false,
					    "TLS: out of memory");
					return;
				}
			if (tls_write(c->tls, s->tls_gather.data,
			    s->tls_gather.len) < 0) {
				src_conn_fail(s, c, SRC_E_TLS, false, "TLS: %s",
				    tls_why(c->tls));
				return;
			}
			src_out_reset(o);
		}
		if (c->tls_tx_off == c->tls_tx.len) {
			buf_reset(&c->tls_tx);
			c->tls_tx_off = 0;
			if (tls_pending(c->tls) == 0)
				return;
			tls_take(c->tls, &c->tls_tx);
		}
		sqe = src_get_sqe(s);
		io_uring_prep_send(sqe, c->fd, c->tls_tx.data + c->tls_tx_off,
		    c->tls_tx.len - c->tls_tx_off, MSG_NOSIGNAL);
		c->send_tls = true;
	} else {
		if (o->niov == 0)
			return;
		memset(&c->msg, 0, sizeof(c->msg));
		c->msg.msg_iov = o->iov;
		c->msg.msg_iovlen = o->niov;
		c->fill ^= 1;
		assert(c->out[c->fill].niov == 0);
		sqe = src_get_sqe(s);
		io_uring_prep_sendmsg(sqe, c->fd, &c->msg, MSG_NOSIGNAL);
		c->send_tls = false;
	}
	io_uring_sqe_set_data64(sqe, uring_ud(SRC_OP_SEND, src_conn_idx(s, c),
	    c->gen));
	c->send_armed = true;
	c->inflight++;
}

/* ---- connections ------------------------------------------------------ */

/* Count a connection error; stop the run if it was the last allowed. */
static void
count_error(struct src *s, enum src_err kind, bool fatal_first,
    const char *text)
{
	bool fatal;

	s->st.err[kind]++;
	s->st.errors++;
	if (s->first_conn_error[0] == '\0')
		snprintf(s->first_conn_error, sizeof(s->first_conn_error),
		    "%s: %s", src_err_names[kind], text);
	/*
	 * "Cannot run at all": nothing accepts connections at --to, or the
	 * server refuses the session set-up permanently, before a single
	 * connection (or session) worked. Retrying cannot help there.
	 */
	if (kind == SRC_E_REFUSED || kind == SRC_E_CONNECT)
		fatal = fatal_first && s->st.connects == 0;
	else
		fatal = fatal_first && s->st.sessions == 0;
	if (fatal && !s->aborting) {
		snprintf(s->error, sizeof(s->error), "%s", text);
		s->aborting = true;
	} else if (s->st.errors >= s->o->max_errors && !s->aborting) {
		snprintf(s->error, sizeof(s->error), "%llu connection errors "
		    "(--max-errors); the first: %.180s",
		    (unsigned long long)s->st.errors, s->first_conn_error);
		s->aborting = true;
	}
}

/*
 * The connection failed: count the error, lose its transactions in flight,
 * close it and, while there is work, reconnect after a backoff.
 */
void
src_conn_fail(struct src *s, struct src_conn *c, enum src_err kind,
    bool fatal_first, const char *fmt, ...)
{
	char text[SRC_WHY_MAX];
	va_list ap;
	unsigned i;

	if (c->fd < 0 || c->closing)
		return;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	count_error(s, kind, fatal_first, text);
	for (i = 0; i < SRC_TXN_MAX; i++) {
		if (!c->txn[i].live)
			continue;
		c->txn[i].live = false;
		assert(s->live > 0);
		s->live--;
		s->st.lost++;
		s->end_us = s->now;
	}
	src_conn_close(s, c, SRC_AFTER_BACKOFF);
}

/* c reconnects at wake_us (src_wake() in the loop). */
static void
sleep_until(struct src *s, struct src_conn *c, uint64_t wake_us)
{
	assert(!c->sleeping);
	c->wake_us = wake_us;
	c->sleeping = true;
	s->nsleeping++;
	if (s->next_wake == 0 || c->wake_us < s->next_wake)
		s->next_wake = c->wake_us;
}

static void
conn_release(struct src *s, struct src_conn *c)
{
	uint64_t delay;
	unsigned i;

	assert(c->fd >= 0);
	assert(c->inflight == 0);
	close(c->fd);
	c->fd = -1;
	c->closing = false;
	c->gen++;
	s->nopen--;
	tls_free(c->tls);
	c->tls = NULL;
	buf_reset(&c->tls_tx);
	c->tls_tx_off = 0;
	src_out_reset(&c->out[0]);
	src_out_reset(&c->out[1]);
	c->ecount = 0;
	for (i = 0; i < SRC_TXN_MAX; i++)
		assert(!c->txn[i].live);
	if (s->stopping || s->aborting)
		return;
	switch ((enum src_after)c->after) {
	case SRC_AFTER_NONE:
		break;
	case SRC_AFTER_RECONNECT:
		/*
		 * A new session only if messages are left that no session
		 * being set up will take: otherwise it would greet and quit.
		 */
		if (s->o->messages &&
		    s->next_seq + s->reserved >= s->o->messages) {
			if (s->next_seq >= s->o->messages)
				src_stop(s);
			break;
		}
		c->reserved = s->o->per_connection ? s->o->per_connection :
		    (uint32_t)(s->o->messages - s->next_seq);
		s->reserved += c->reserved;
		src_conn_start(s, c);
		break;
	case SRC_AFTER_BACKOFF:
		/* Bounded exponential backoff: a dead server ends the run
		 * at --max-errors rather than being hammered. */
		delay = c->backoff_n >= 7 ? SRC_BACKOFF_MAX_US :
		    (uint64_t)SRC_BACKOFF_MIN_US << c->backoff_n;
		if (delay > SRC_BACKOFF_MAX_US)
			delay = SRC_BACKOFF_MAX_US;
		c->backoff_n++;
		sleep_until(s, c, s->now + delay);
		break;
	default:
		log_panic("bad after-close action %d", (int)c->after);
	}
}

/* End the session: no more I/O; released once nothing is in flight. */
void
src_conn_close(struct src *s, struct src_conn *c, enum src_after after)
{
	struct io_uring_sqe *sqe;

	if (c->fd < 0 || c->closing)
		return;
	c->closing = true;
	c->after = (uint8_t)after;
	/* What this session was to send is free for another. */
	s->reserved -= c->reserved;
	c->reserved = 0;
	c->idle = false;
	c->deadline_us = 0;
	if (c->inflight == 0) {
		conn_release(s, c);
		return;
	}
	/* Completes the recv and send in flight (and a connect under way). */
	shutdown(c->fd, SHUT_RDWR);
	if (c->connecting) {
		sqe = src_get_sqe(s);
		io_uring_prep_cancel64(sqe, uring_ud(SRC_OP_CONNECT,
		    src_conn_idx(s, c), c->gen), 0);
		io_uring_sqe_set_data64(sqe, uring_ud(SRC_OP_CANCEL,
		    src_conn_idx(s, c), c->gen));
	}
}

void
src_conn_start(struct src *s, struct src_conn *c)
{
	const struct bench_source_opts *o = s->o;
	struct io_uring_sqe *sqe;
	int fd, one = 1;

	assert(c->fd < 0);
	fd = socket(o->to.ss_family, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);
	if (fd < 0) {
		char text[SRC_WHY_MAX];

		snprintf(text, sizeof(text), "socket: %s", strerror(errno));
		count_error(s, SRC_E_CONNECT, false, text);
		c->fd = -1;
		c->after = SRC_AFTER_BACKOFF;
		/* As if released: schedule the retry. */
		sleep_until(s, c, s->now + SRC_BACKOFF_MAX_US);
		return;
	}
	/* Each write is a whole group: Nagle would only delay it. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->fd = fd;
	c->serial = ++s->conn_serial;
	c->send_state = SRC_S_GREETING;
	c->connecting = true;
	c->recv_armed = c->send_armed = c->send_tls = false;
	c->closing = c->idle = false;
	c->pipelining = c->cap_pipelining = c->cap_starttls = false;
	c->cap_plain = c->cap_login = c->ehlo_refused = false;
	c->tls_pending = c->tls_on = c->authed = c->quit_sent = false;
	c->auth_login = false;
	c->after = SRC_AFTER_NONE;
	c->msgs = c->rcpt_next = c->reply_lines = c->tsend = 0;
	c->ehead = c->ecount = 0;
	c->line_len = 0;
	c->fill = 0;
	c->connect_us = s->now;
	c->deadline_us = s->now + o->timeout_us;
	s->nopen++;
	sqe = src_get_sqe(s);
	io_uring_prep_connect(sqe, fd, (const struct sockaddr *)&o->to,
	    o->to_len);
	io_uring_sqe_set_data64(sqe, uring_ud(SRC_OP_CONNECT,
	    src_conn_idx(s, c), c->gen));
	c->inflight++;
}

static void conn_tls_input(struct src *s, struct src_conn *c, const void *p,
    size_t n);

/*
 * The server answered STARTTLS with 220, or (--tls) the connection is
 * up: begin the handshake, offering the slot's last session if any.
 */
static void
tls_start(struct src *s, struct src_conn *c)
{
	c->tls_pending = false;
	c->tls = tls_new(s->tls_ctx, NULL);
	if (c->tls == NULL) {
		src_conn_fail(s, c, SRC_E_TLS, false, "TLS: out of memory");
		return;
	}
	/*
	 * Offered once: the connection holds its own reference, and a
	 * ticket that is used up is replaced by the one this handshake
	 * brings. One the library will not take costs a full handshake.
	 */
	if (c->tls_session != NULL) {
		(void)tls_session_set(c->tls, c->tls_session);
		tls_session_free(c->tls_session);
		c->tls_session = NULL;
	}
	c->tls_start_us = s->now;
	c->send_state = SRC_S_TLS;
	c->deadline_us = s->now + s->o->timeout_us;
	conn_tls_input(s, c, NULL, 0);	/* the ClientHello */
}

/* Keep the newest session the server gave c, for the next handshake. */
static void
tls_keep_session(struct src *s, struct src_conn *c)
{
	struct tls_session *ns;

	if (!s->o->tls_resume || (ns = tls_session_take(c->tls)) == NULL)
		return;
	if (c->tls_session != NULL)
		tls_session_free(c->tls_session);
	c->tls_session = ns;
}

/* The handshake just completed. */
static void
tls_established_now(struct src *s, struct src_conn *c)
{
	c->tls_on = true;
	hist_add(&s->st.lat_tls, s->now - c->tls_start_us);
	if (tls_resumed(c->tls))
		s->st.tls_resumed++;
	else
		s->st.tls_full++;
	if (s->tls_version[0] == '\0') {
		snprintf(s->tls_version, sizeof(s->tls_version), "%s",
		    tls_version(c->tls));
		snprintf(s->tls_cipher, sizeof(s->tls_cipher), "%s",
		    tls_cipher(c->tls));
	}
	if (s->o->tls) {
		/* Implicit TLS: the greeting comes now, over TLS. */
		c->send_state = SRC_S_GREETING;
		c->deadline_us = s->now + s->o->timeout_us;
		return;
	}
	/* RFC 3207 4.2: forget what was learnt before TLS. */
	c->cap_pipelining = c->cap_starttls = false;
	c->cap_plain = c->cap_login = false;
	c->send_state = SRC_S_EHLO;
	c->deadline_us = 0;
}

/* Ciphertext arrived: advance the handshake, then read replies. */
static void
conn_tls_input(struct src *s, struct src_conn *c, const void *p, size_t n)
{
	bool was = tls_established(c->tls);
	struct buf *plain = &s->tls_plain;
	enum tls_status st;

	buf_reset(plain);
	st = tls_input(c->tls, p, n, plain);
	src_conn_kick(s, c);	/* handshake output, if any */
	tls_keep_session(s, c);
	if (st == TLS_ERROR) {
		src_conn_fail(s, c, SRC_E_TLS, !was, "TLS%s: %s",
		    was ? "" : " handshake", tls_why(c->tls));
		return;
	}
	if (st == TLS_WANT)
		return;
	if (!was)
		tls_established_now(s, c);
	if (plain->len > 0) {
		src_replies_parse(s, c, plain->data, plain->len);
		if (c->closing)
			return;
	}
	if (st == TLS_CLOSED) {
		if (c->quit_sent && !conn_txn_live(c))
			src_conn_close(s, c, SRC_AFTER_RECONNECT);
		else
			src_conn_fail(s, c, SRC_E_CLOSED, false, "the "
			    "server closed the TLS session");
		return;
	}
	src_conn_kick(s, c);
}

/* ---- completions ------------------------------------------------------ */

/*
 * One operation of c is no longer in flight. false when c is closing (it
 * is released once nothing else is in flight): the handler stops there.
 */
static bool
op_done(struct src *s, struct src_conn *c)
{
	assert(c->inflight > 0);
	c->inflight--;
	if (!c->closing)
		return true;
	if (c->inflight == 0)
		conn_release(s, c);
	return false;
}

static void
handle_connect(struct src *s, struct src_conn *c, int res)
{
	c->connecting = false;
	if (!op_done(s, c))
		return;
	if (res < 0) {
		src_conn_fail(s, c, res == -ECONNREFUSED ? SRC_E_REFUSED :
		    SRC_E_CONNECT, true, "connect to %s: %s", s->o->to_text,
		    strerror(-res));
		return;
	}
	s->st.connects++;
	src_expect_push(s, c, SRC_S_GREETING, 0, 1);
	arm_recv(s, c);
	/* --tls: the greeting comes after the handshake, over TLS. */
	if (s->o->tls)
		tls_start(s, c);
}

static void
handle_recv(struct src *s, struct src_conn *c, int res, uint32_t flags)
{
	char *data = NULL;
	unsigned bid = 0;

	c->recv_armed = false;
	if (flags & IORING_CQE_F_BUFFER)
		data = uring_bufs_data(&s->bufs, flags, &bid);
	if (!c->closing) {
		if (res == -ENOBUFS) {
			/* Every buffer is busy for now: just ask again. */
		} else if (res < 0) {
			src_conn_fail(s, c, SRC_E_RESET, false, "recv: %s",
			    strerror(-res));
		} else if (res == 0) {
			/* A close after QUIT is normal only once every
			 * transaction has its reply: the last message may
			 * have left in the same write as the QUIT. */
			if (c->quit_sent && !conn_txn_live(c))
				src_conn_close(s, c, SRC_AFTER_RECONNECT);
			else
				src_conn_fail(s, c, SRC_E_CLOSED, false, "the "
				    "server closed the connection%s",
				    c->ecount ? " while replies were due" :
				    "");
		} else if (c->tls != NULL) {
			assert(data != NULL);
			conn_tls_input(s, c, data, (size_t)res);
		} else {
			assert(data != NULL);
			src_replies_parse(s, c, data, (size_t)res);
			if (c->tls_pending && !c->closing)
				tls_start(s, c);
		}
	}
	if (data != NULL) {
		/* Everything kept was copied: the buffer goes back now. */
		uring_bufs_recycle(&s->bufs, bid);
	}
	if (op_done(s, c))
		arm_recv(s, c);
}

/* Drop the first n bytes of the iovecs in m; true when none are left. */
static bool
iov_advance(struct msghdr *m, size_t n)
{
	while (m->msg_iovlen > 0) {
		if (n < m->msg_iov[0].iov_len) {
			m->msg_iov[0].iov_base = (char *)m->msg_iov[0].iov_base
			    + n;
			m->msg_iov[0].iov_len -= n;
			return false;
		}
		n -= m->msg_iov[0].iov_len;
		m->msg_iov++;
		m->msg_iovlen--;
	}
	assert(n == 0);
	return true;
}

static void
handle_send(struct src *s, struct src_conn *c, int res)
{
	struct io_uring_sqe *sqe;

	c->send_armed = false;
	if (!op_done(s, c))
		return;
	if (res <= 0) {
		src_conn_fail(s, c, SRC_E_RESET, false, "send: %s",
		    res == 0 ? "no progress" : strerror(-res));
		return;
	}
	if (c->deadline_us)
		c->deadline_us = s->now + s->o->timeout_us;
	if (c->send_tls) {
		c->tls_tx_off += (size_t)res;
		assert(c->tls_tx_off <= c->tls_tx.len);
	} else if (iov_advance(&c->msg, (size_t)res)) {
		src_out_reset(&c->out[c->fill ^ 1]);
	} else {
		/* A short send: the rest of the same buffer goes first. */
		sqe = src_get_sqe(s);
		io_uring_prep_sendmsg(sqe, c->fd, &c->msg, MSG_NOSIGNAL);
		io_uring_sqe_set_data64(sqe, uring_ud(SRC_OP_SEND,
		    src_conn_idx(s, c), c->gen));
		c->send_armed = true;
		c->inflight++;
		return;
	}
	src_conn_kick(s, c);
}

void
src_dispatch(void *ctx, uint64_t ud, int res, uint32_t flags)
{
	struct src *s = ctx;
	struct src_conn *c = NULL;

	/* The handlers read the time of this batch. */
	s->now = s->loop.now_us;

	switch ((enum src_op)URING_UD_OP(ud)) {
	case SRC_OP_CONNECT:
	case SRC_OP_RECV:
	case SRC_OP_SEND:
		c = &s->conns[URING_UD_IDX(ud)];
		/* A slot is reused only once nothing of it is in flight. */
		assert(c->fd >= 0);
		assert(c->gen == URING_UD_GEN(ud));
		break;
	default:
		break;
	}
	switch ((enum src_op)URING_UD_OP(ud)) {
	case SRC_OP_CONNECT:
		handle_connect(s, c, res);
		break;
	case SRC_OP_RECV:
		handle_recv(s, c, res, flags);
		break;
	case SRC_OP_SEND:
		handle_send(s, c, res);
		break;
	case SRC_OP_CANCEL:
		break;
	default:
		log_panic("bad operation %llu",
		    (unsigned long long)URING_UD_OP(ud));
	}
}
