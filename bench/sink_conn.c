/*
 * sink_conn.c - the connections of `sluice-bench sink`: accepting them
 * into preallocated slots (or refusing them over the cap), one recv, one
 * send and one timer in flight at most per connection, replies held for a
 * delay or a --store write, closing, and sink_dispatch(), which hands each
 * completion to its handler.
 *
 * A slot is reused only once nothing of it is in flight: every operation
 * carries op | slot | generation (lib/uring.h) and a stale completion
 * fails an assertion. A handler that processes input keeps an in-flight
 * count on the connection until it is done with it.
 */
#include "sink_int.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../lib/log.h"

static void conn_kick(struct sink *s, struct sink_conn *c);

static void
arm_recv(struct sink *s, struct sink_conn *c)
{
	assert(!c->recv_armed);
	assert(!c->closing);
	uring_recv_bufs(&s->ring, c->fd, &s->bufs,
	    uring_ud(SINK_OP_RECV, sink_conn_idx(s, c), c->gen));
	c->recv_armed = true;
	c->inflight++;
}

/*
 * Hold c's output from out[mark] on: what comes before may leave, the
 * rest waits until sink_conn_resume() finds nothing left to wait for.
 */
void
sink_hold_at(struct sink_conn *c, size_t mark)
{
	assert(mark <= c->out.len);
	if (!c->hold) {
		c->hold = true;
		c->hold_off = mark;
	}
	assert(c->hold_off <= mark);
}

/* Hold the reply about to be written for us microseconds. */
void
sink_hold_begin(struct sink *s, struct sink_conn *c, uint64_t us)
{
	struct io_uring_sqe *sqe;

	assert(!c->timer_armed);
	sink_hold_at(c, c->out.len);
	c->ts.tv_sec = (long long)(us / 1000000u);
	c->ts.tv_nsec = (long long)(us % 1000000u) * 1000;
	sqe = sink_get_sqe(s);
	io_uring_prep_timeout(sqe, &c->ts, 0, 0);
	io_uring_sqe_set_data64(sqe, uring_ud(SINK_OP_TIMER,
	    sink_conn_idx(s, c), c->gen));
	c->timer_armed = true;
	c->inflight++;
}

void
sink_conn_free(struct sink *s, struct sink_conn *c)
{
	assert(c->in_use);
	assert(c->inflight == 0);
	if (s->log_fd >= 0)
		sink_log_close(s, c);
	close(c->fd);
	c->fd = -1;
	c->in_use = false;
	c->gen++;
	/* Keep modest buffers for the slot's next connection. */
	if (c->msg.cap > SINK_KEEP_MSG)
		buf_free(&c->msg);
	if (c->in.cap > SINK_KEEP_IO)
		buf_free(&c->in);
	if (c->out.cap > SINK_KEEP_IO)
		buf_free(&c->out);
	if (c->tx.cap > SINK_KEEP_IO)
		buf_free(&c->tx);
	if (c->env.cap > SINK_KEEP_IO)
		buf_free(&c->env);
	buf_reset(&c->in);
	buf_reset(&c->out);
	buf_reset(&c->tx);
	buf_reset(&c->msg);
	buf_reset(&c->env);
	c->next_free = s->free_head;
	s->free_head = sink_conn_idx(s, c);
	assert(s->nactive > 0);
	s->nactive--;
}

/*
 * Stop all I/O on c; it is freed once nothing of it is in flight. Safe to
 * call more than once, and from inside input processing: the handler that
 * runs it holds an in-flight count until it is done with c.
 */
void
sink_conn_close(struct sink *s, struct sink_conn *c)
{
	struct io_uring_sqe *sqe;

	if (!c->closing) {
		c->closing = true;
		/* Completes a recv or send in flight with an error or EOF. */
		if (c->recv_armed || c->send_armed)
			shutdown(c->fd, SHUT_RDWR);
		if (c->timer_armed) {
			sqe = sink_get_sqe(s);
			io_uring_prep_timeout_remove(sqe,
			    uring_ud(SINK_OP_TIMER, sink_conn_idx(s, c), c->gen),
			    0);
			io_uring_sqe_set_data64(sqe,
			    uring_ud(SINK_OP_CANCEL, 0, 0));
		}
	}
	if (c->inflight == 0)
		sink_conn_free(s, c);
}

/* Send what is due, if no send is in flight. */
static void
conn_flush(struct sink *s, struct sink_conn *c)
{
	struct io_uring_sqe *sqe;
	size_t n;
	struct buf t;

	if (c->send_armed || c->closing)
		return;
	if (c->tx_off == c->tx.len) {
		buf_reset(&c->tx);
		c->tx_off = 0;
		n = c->hold ? c->hold_off : c->out.len;
		if (n == 0)
			return;
		if (n == c->out.len) {
			t = c->tx;
			c->tx = c->out;
			c->out = t;
		} else {
			/* Only on the delay path: move the part not held. */
			if (buf_append(&c->tx, c->out.data, n) < 0) {
				sink_conn_close(s, c);
				return;
			}
			buf_consume(&c->out, n);
		}
		/* What is held, if anything, now starts out. */
		c->hold_off = 0;
	}
	sqe = sink_get_sqe(s);
	io_uring_prep_send(sqe, c->fd, c->tx.data + c->tx_off,
	    c->tx.len - c->tx_off, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, uring_ud(SINK_OP_SEND, sink_conn_idx(s, c),
	    c->gen));
	c->send_armed = true;
	c->inflight++;
}

/* After any event on c: send what is due, close, or read more. */
static void
conn_kick(struct sink *s, struct sink_conn *c)
{
	if (c->closing)
		return;
	conn_flush(s, c);
	if (c->closing)
		return;
	if (c->close_after_flush) {
		if (!c->send_armed && !c->hold && c->out.len == 0)
			sink_conn_close(s, c);
		return;
	}
	if (!c->recv_armed && !c->hold && c->out.len < SINK_OUT_HIGH)
		arm_recv(s, c);
}

/* ---- completions ------------------------------------------------------ */

static void
refuse_connection(struct sink *s, int fd)
{
	char line[SINK_HOSTNAME_MAX + 64];
	int n;

	/* A best-effort one-line reply on a fresh socket; never blocks. */
	n = snprintf(line, sizeof(line), "421 4.7.0 %s too many connections\r\n",
	    s->o->hostname);
	if (n > 0)
		(void)send(fd, line, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
	close(fd);
}

static void
handle_accept(struct sink *s, unsigned li, int fd)
{
	struct sink_listener *l = &s->lst[li];
	struct sink_conn *c;
	unsigned code;

	if (s->stopping) {
		close(fd);
		return;
	}
	if (s->first_us == 0)
		s->first_us = s->now_us;
	if (s->nactive >= s->o->max_connections ||
	    s->free_head == UINT32_MAX) {
		s->conn_refused_cap++;
		l->refused_cap++;
		refuse_connection(s, fd);
		return;
	}
	c = &s->conns[s->free_head];
	assert(!c->in_use);
	assert(c->inflight == 0);
	s->free_head = c->next_free;
	s->nactive++;
	if (s->nactive > s->conn_max)
		s->conn_max = s->nactive;
	s->conn_accepted++;
	l->conns++;
	c->in_use = true;
	c->fd = fd;
	c->listener = (uint16_t)li;
	c->state = SINK_CS_CMD;
	c->closing = c->close_after_flush = false;
	c->recv_armed = c->send_armed = c->timer_armed = false;
	c->hold = c->store_wait = c->no_service = c->helo = false;
	c->messages = 0;
	c->tx_off = 0;
	c->serial = ++s->serial;
	c->rng = s->o->seed * 0xd1342543de82ef95ull ^ c->serial;
	sink_txn_reset(c);
	if (s->o->delay_us[SINK_STAGE_CONNECT] > 0)
		sink_hold_begin(s, c, s->o->delay_us[SINK_STAGE_CONNECT]);
	if ((code = sink_mix(s, c, SINK_STAGE_CONNECT)) != 0) {
		s->conn_refused_connect++;
		sink_inject(s, c, SINK_STAGE_CONNECT, code);
		c->no_service = true;
	} else {
		sink_reply_str(s, c, s->greeting);
	}
	conn_kick(s, c);
}

static void
handle_recv(struct sink *s, struct sink_conn *c, int res, uint32_t flags)
{
	unsigned bid;
	char *data;

	c->recv_armed = false;
	if ((res == -ENOBUFS || res == 0) && !c->closing) {
		/*
		 * No buffer free for the moment: try again. End of input: a
		 * client that half-closes after its last command still gets
		 * the replies, then the connection closes.
		 */
		if (res == 0)
			c->close_after_flush = true;
		c->inflight--;
		conn_kick(s, c);
		return;
	}
	if (res <= 0) {
		c->inflight--;
		sink_conn_close(s, c);
		return;
	}
	data = uring_bufs_data(&s->bufs, flags, &bid);
	s->bytes += (uint64_t)res;
	s->lst[c->listener].bytes += (uint64_t)res;
	if (!c->closing)
		sink_conn_feed(s, c, data, (size_t)res);
	/* What is kept was copied: the buffer goes back now. */
	uring_bufs_recycle(&s->bufs, bid);
	c->inflight--;
	if (c->closing) {
		if (c->inflight == 0)
			sink_conn_free(s, c);
		return;
	}
	conn_kick(s, c);
}

static void
handle_send(struct sink *s, struct sink_conn *c, int res)
{
	c->send_armed = false;
	c->inflight--;
	if (res < 0 || c->closing) {
		sink_conn_close(s, c);
		return;
	}
	c->tx_off += (size_t)res;
	conn_kick(s, c);
}

/*
 * Nothing more to wait for: release the held replies and go on with the
 * input kept meanwhile (which may hold c again).
 */
void
sink_conn_resume(struct sink *s, struct sink_conn *c)
{
	size_t used;

	if (c->closing || c->timer_armed || c->store_wait)
		return;
	c->hold = false;
	if (c->in.len > 0) {
		used = sink_conn_input(s, c, c->in.data, c->in.len);
		if (c->closing || c->close_after_flush)
			buf_reset(&c->in);
		else
			buf_consume(&c->in, used);
	}
	conn_kick(s, c);
}

/* A delayed reply is due. */
static void
handle_timer(struct sink *s, struct sink_conn *c)
{
	c->timer_armed = false;
	/* The in-flight count keeps c while its input is processed. */
	sink_conn_resume(s, c);
	c->inflight--;
	if (c->closing && c->inflight == 0)
		sink_conn_free(s, c);
}

void
sink_arm_accept(struct sink *s, unsigned li)
{
	struct io_uring_sqe *sqe = sink_get_sqe(s);

	io_uring_prep_multishot_accept(sqe, s->lst[li].fd, NULL, NULL,
	    SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, uring_ud(SINK_OP_ACCEPT, li, 0));
	s->lst[li].accept_armed = true;
}

void
sink_arm_signal(struct sink *s)
{
	struct io_uring_sqe *sqe = sink_get_sqe(s);

	io_uring_prep_read(sqe, s->sigfd, &s->si, sizeof(s->si), 0);
	io_uring_sqe_set_data64(sqe, uring_ud(SINK_OP_SIGNAL, 0, 0));
}

void
sink_dispatch(void *ctx, uint64_t ud, int res, uint32_t flags)
{
	struct sink *s = ctx;
	uint32_t idx = URING_UD_IDX(ud);
	struct sink_conn *c = NULL;

	/* The handlers read the time of this batch. */
	s->now_us = s->loop.now_us;

	switch ((enum sink_op)URING_UD_OP(ud)) {
	case SINK_OP_RECV:
	case SINK_OP_SEND:
	case SINK_OP_TIMER:
		assert(idx < s->nslots);
		c = &s->conns[idx];
		/* A slot is reused only once nothing of it is in flight. */
		assert(c->in_use);
		assert(c->gen == URING_UD_GEN(ud));
		assert(c->inflight > 0);
		break;
	default:
		break;
	}
	switch ((enum sink_op)URING_UD_OP(ud)) {
	case SINK_OP_ACCEPT:
		assert(idx < s->nlisten);
		if (res >= 0) {
			handle_accept(s, idx, res);
		} else if (res != -ECANCELED && !s->stopping) {
			if (!s->o->quiet)
				log_warn("accept on %s: %s", s->lst[idx].addr,
				    strerror(-res));
		}
		if (!(flags & IORING_CQE_F_MORE)) {
			s->lst[idx].accept_armed = false;
			/* After an error (EMFILE...) wait a tick: no spin. */
			if (!s->stopping && res >= 0)
				sink_arm_accept(s, idx);
			else if (!s->stopping)
				s->lst[idx].rearm = true;
		}
		break;
	case SINK_OP_RECV:
		handle_recv(s, c, res, flags);
		break;
	case SINK_OP_SEND:
		handle_send(s, c, res);
		break;
	case SINK_OP_TIMER:
		handle_timer(s, c);
		break;
	case SINK_OP_SIGNAL:
		if (res > 0) {
			s->signals++;
			s->stop_pending = true;
			sink_arm_signal(s);
		}
		break;
	case SINK_OP_STORE:
		sink_handle_store(s, idx, URING_UD_GEN(ud), res);
		break;
	case SINK_OP_CANCEL:
		break;
	default:
		log_panic("sink: bad operation %u in completion",
		    URING_UD_OP(ud));
	}
}

/* Stop: no new connections; sessions get 421 at their next command. */
