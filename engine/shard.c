/*
 * shard.c - the per-core event loop; see shard.h.
 *
 * Every operation on the ring carries its kind, a slot index and the slot's
 * generation in user_data (op << 56 | idx << 32 | gen), and completions are
 * dispatched by one switch on the kind. Completions are reaped in batches
 * first and handled afterwards, so a handler never recurses into the ring.
 *
 * Connections live in a fixed array of slots allocated at start-up. Input
 * arrives through recv with a provided buffer ring: idle connections hold
 * no receive buffer, and a buffer goes back to the ring as soon as the
 * SMTP session has consumed (or stashed) its bytes. Only one recv and one
 * send are ever in flight per connection; a session waiting for the queue
 * gets no recv armed, which bounds what a pipelining client can push.
 *
 * The seam for TLS is handle_recv() and conn_flush(): on a TLS connection
 * shard_tls.c decrypts between the recv completion and
 * smtp_session_input(), and encrypts what conn_flush() takes from the
 * session's output. A connection starts in conn_begin(): the greeting,
 * or on an implicit-TLS listener the handshake first.
 *
 * On a listener with proxy_protocol the session does not exist yet when
 * the first bytes arrive: they are the load balancer's PROXY header
 * (conn_proxy(), shard_proxy.c), and the session starts, for the client
 * the header names, only once it is whole, with the bytes behind it.
 *
 * Spool segments: the shard gives each message's record its place at the
 * end of its current segment and hands the job to the committer, which
 * writes the records of a batch and fdatasyncs their segments (io_uring,
 * linked) while it indexes them; its verdict comes back through the
 * eventfd. A segment stays open while any job of it is away, and a
 * session's message buffer stays put while its job is. Delivery results
 * take the same way: the recipients an attempt delivered become a mark
 * record placed at the end of the current segment (job_journal() in
 * shard_commit.c), so
 * that once the committer synced it a crash cannot deliver them again.
 */
#include "shard.h"

#include "auth.h"
#include "shard_int.h"
#include "../lib/efd.h"

static _Atomic uint32_t total_conns;
static _Atomic uint32_t client_conns[1u << 16];

/* ---- listeners ------------------------------------------------------- */

/* ---- connections ----------------------------------------------------- */

static void conn_flush(struct shard *sh, struct conn *c);

static uint16_t
client_bucket(const struct sockaddr_storage *ss)
{
	const struct sockaddr_in6 *a6 = (const void *)ss;
	const struct sockaddr_in *a4 = (const void *)ss;

	if (ss->ss_family == AF_INET6) {
		if (IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr))
			return (uint16_t)XXH3_64bits(
			    &a6->sin6_addr.s6_addr[12], 4);
		return (uint16_t)XXH3_64bits(&a6->sin6_addr, 16);
	}
	return (uint16_t)XXH3_64bits(&a4->sin_addr, 4);
}

static void
arm_recv(struct shard *sh, struct conn *c)
{
	uint32_t idx = (uint32_t)(c - sh->conns);

	assert(!c->recv_armed);
	assert(!c->closing);
	uring_recv_bufs(&sh->ring, c->fd, &sh->bufs,
	    uring_ud(OP_RECV, idx, c->gen));
	c->recv_armed = true;
	c->inflight++;
}

static void
conn_free(struct shard *sh, struct conn *c)
{
	uint32_t idx = (uint32_t)(c - sh->conns);

	assert(c->in_use);
	assert(c->inflight == 0);
	assert(c->job == NULL);
	close(c->fd);
	if (c->client_counted)
		atomic_fetch_sub(&client_conns[c->client_bucket], 1);
	atomic_fetch_sub(&total_conns, 1);
	stats_add(&stats_shards[sh->id].conns_in_closed, 1);
	c->fd = -1;
	c->in_use = false;
	c->client_counted = false;
	shard_proxy_end(c);
	c->gen++;
	/* Its memory back to the budget; modest buffers stay for the next. */
	smtp_session_release(&c->smtp);
	buf_reset(&c->tx);
	tls_free(c->tls);
	c->tls = NULL;
	c->tls_plain_out = false;
	gen_release(c->cg);
	c->cg = NULL;
	c->next_free = sh->free_head;
	sh->free_head = idx;
	sh->nactive--;
}

/* Stop all I/O on the connection; it is freed once nothing is in flight. */
static void
conn_close(struct shard *sh, struct conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	/* Completes any recv or send in flight with an error or EOF. */
	shutdown(c->fd, SHUT_RDWR);
	if (c->inflight == 0)
		conn_free(sh, c);
}

/* An operation on c finished; free it if it was the last one. */
void
shard_conn_op_done(struct shard *sh, struct conn *c)
{
	assert(c->inflight > 0);
	c->inflight--;
	if (c->closing && c->inflight == 0)
		conn_free(sh, c);
}

/*
 * A best-effort one-line reply on a socket with nothing sent yet, logged
 * as every refusal is (proto/smtp_server.c's "reject:" lines).
 */
static void
refuse_reply(struct shard *sh, int fd, const struct sockaddr_storage *from,
    const char *why)
{
	char line[512], addr[INET6_ADDRSTRLEN];
	int n;

	if (shard_refusal_log_ok(sh))
		log_info("reject: CONNECT from [%s]: 421 4.7.0 %s",
		    net_addr_text((const struct sockaddr *)from, addr,
		    sizeof(addr)), why);
	/* Never blocks: what the socket buffer cannot take is lost. */
	n = snprintf(line, sizeof(line), "421 4.7.0 %s Error: %s\r\n",
	    sh->cfg->hostname, why);
	stats_add(&stats_shards[sh->id].conns_in_refused, 1);
	if (n > 0)
		stats_reply(&stats_shards[sh->id], line, (size_t)n);
	if (n > 0 && send(fd, line, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		log_debug("refused connection: send: %s", strerror(errno));
}

static void
refuse_connection(struct shard *sh, int fd,
    const struct sockaddr_storage *from, const char *why)
{
	refuse_reply(sh, fd, from, why);
	close(fd);
}

/*
 * Count one more connection from this client address, all shards
 * together; false, with nothing counted, past connections_per_client.
 */
static bool
client_take(struct shard *sh, const struct sockaddr_storage *ss,
    uint16_t *bucket)
{
	*bucket = client_bucket(ss);
	if (atomic_fetch_add(&client_conns[*bucket], 1) <
	    sh->cfg->limits.connections_per_client)
		return true;
	atomic_fetch_sub(&client_conns[*bucket], 1);
	return false;
}

/*
 * The session starts, for client ss (the socket's peer, or the one a
 * PROXY header named): its greeting, or on an implicit-TLS listener (port
 * 465) the handshake, which greets when it completes. The event for
 * shard_handle_event().
 */
static enum smtp_event
conn_begin(struct shard *sh, struct conn *c, const struct sockaddr_storage *ss)
{
	const struct config *cfg = &c->cg->cfg;
	bool relay_ok;

	relay_ok = cidr_match(cfg->allowed_networks, cfg->nallowed_networks,
	    (const struct sockaddr *)ss);
	smtp_session_init(&c->smtp, &c->cg->scfg, &cfg->listen[c->listener].policy,
	    (const struct sockaddr *)ss, relay_ok, &sh->ids);
	c->smtp.stats = &stats_shards[sh->id];
	if (c->smtp.pol->tls != SMTP_TLS_IMPLICIT)
		return smtp_session_greet(&c->smtp);
	if (!shard_tls_start(sh, c))
		return SMTP_EV_CLOSE;
	shard_command_deadline(sh, c);
	return SMTP_EV_NONE;
}

/*
 * A new connection. On a PROXY protocol listener only the load balancers
 * in proxy_trusted get a slot, and the session waits for the header
 * (conn_proxy()); the per-client limit then counts the client it names,
 * not the balancer, which carries every client.
 */
static void
handle_accept(struct shard *sh, int fd, unsigned slot)
{
	const struct listen_cfg *lc;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct conn *c;
	uint16_t bucket = 0;
	int one = 1, listener = sh->slot_lis[slot];

	/* Accepted just before a reload removed its listener. */
	if (listener < 0) {
		close(fd);
		return;
	}
	lc = &sh->cfg->listen[listener];
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) < 0) {
		close(fd);
		return;
	}
	if (lc->proxy_protocol && !cidr_match(lc->proxy_trusted,
	    lc->nproxy_trusted, (struct sockaddr *)&ss)) {
		shard_proxy_refused(sh, listener, &ss, "not in proxy_trusted");
		close(fd);
		return;
	}
	/* The flag, not only sh->stopping: this completion may come before
	 * the wake-up that makes the shard begin to stop. */
	if (sh->stopping || atomic_load(&sh->stop_requested)) {
		refuse_connection(sh, fd, &ss, "service shutting down");
		return;
	}
	if (sh->free_head == UINT32_MAX ||
	    atomic_fetch_add(&total_conns, 1) >= sh->cfg->limits.connections) {
		if (sh->free_head != UINT32_MAX)
			atomic_fetch_sub(&total_conns, 1);
		refuse_connection(sh, fd, &ss, "too many connections");
		return;
	}
	if (!lc->proxy_protocol && !client_take(sh, &ss, &bucket)) {
		atomic_fetch_sub(&total_conns, 1);
		refuse_connection(sh, fd, &ss, "too many connections");
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	stats_add(&stats_shards[sh->id].conns_in, 1);
	c = &sh->conns[sh->free_head];
	assert(!c->in_use);
	sh->free_head = c->next_free;
	sh->nactive++;
	c->in_use = true;
	c->fd = fd;
	c->closing = false;
	c->close_after_flush = false;
	c->recv_armed = false;
	c->send_armed = false;
	c->inflight = 0;
	c->client_bucket = bucket;
	c->client_counted = !lc->proxy_protocol;
	c->tx_off = 0;
	c->job = NULL;
	c->deadline_ms = sh->now_ms + sh->cfg->limits.idle_timeout_ms;
	c->cmd_deadline_ms = 0;
	c->auth_due_ms = 0;
	c->listener = (uint8_t)listener;
	c->cg = gen_hold(sh->gen);
	c->proxy_wait = lc->proxy_protocol;
	if (c->proxy_wait) {
		/* The header's deadline, from the connection's start. */
		c->deadline_ms = sh->now_ms + lc->proxy_timeout_ms;
		arm_recv(sh, c);
		return;
	}
	shard_handle_event(sh, c, conn_begin(sh, c, &ss));
}

/*
 * Bytes for a connection still waiting for its PROXY header. Once the
 * header is whole its client is counted and greeted, and the bytes
 * behind the header are the session's first input, before any later
 * read: nothing the client sent early is lost or reordered.
 */
static enum smtp_event
conn_proxy(struct shard *sh, struct conn *c, const char *data, size_t n)
{
	struct sockaddr_storage peer;
	enum proxy_status st;
	enum smtp_event ev;
	const char *rest;
	size_t nrest;

	st = shard_proxy_input(sh, c, data, n, &peer, &rest, &nrest);
	if (st == PROXY_MORE)
		return SMTP_EV_NONE;
	if (st == PROXY_BAD) {
		conn_close(sh, c);
		return SMTP_EV_NONE;
	}
	if (!client_take(sh, &peer, &c->client_bucket)) {
		/* The header is trusted: the client may be told why. */
		refuse_reply(sh, c->fd, &peer, "too many connections");
		conn_close(sh, c);
		return SMTP_EV_NONE;
	}
	c->client_counted = true;
	c->proxy_wait = false;
	c->deadline_ms = sh->now_ms + c->cg->cfg.limits.idle_timeout_ms;
	ev = conn_begin(sh, c, &peer);
	/* The client's first bytes: SMTP, or its TLS ClientHello (465). */
	if (ev == SMTP_EV_NONE && nrest > 0) {
		ev = c->tls != NULL ? shard_tls_input(sh, c, rest, nrest) :
		    smtp_session_input(&c->smtp, rest, nrest);
		shard_command_deadline(sh, c);
	}
	shard_proxy_end(c);
	return ev;
}

/*
 * Send what the session has written, if no send is in flight. The session
 * may go on appending to smtp.out while c->tx is on the wire.
 */
static void
conn_flush(struct shard *sh, struct conn *c)
{
	struct io_uring_sqe *sqe;
	struct buf t;
	int rc;

	if (c->send_armed || c->closing)
		return;
	if (c->tx_off == c->tx.len && c->tls != NULL && !c->tls_plain_out) {
		rc = shard_tls_fill_tx(c);
		if (rc < 0)
			conn_close(sh, c);
		if (rc <= 0)
			return;
	} else if (c->tx_off == c->tx.len) {
		if (c->smtp.out.len == 0)
			return;
		t = c->tx;
		c->tx = c->smtp.out;
		c->smtp.out = t;
		buf_reset(&c->smtp.out);
		c->tx_off = 0;
		/* The 220 to STARTTLS is out: the rest goes over TLS. */
		c->tls_plain_out = false;
	}
	sqe = get_sqe(sh);
	io_uring_prep_send(sqe, c->fd, c->tx.data + c->tx_off,
	    c->tx.len - c->tx_off, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, uring_ud(OP_SEND,
	    (uint32_t)(c - sh->conns), c->gen));
	c->send_armed = true;
	c->inflight++;
}

/*
 * After the session took input: a command line begun starts the command
 * deadline (once: it runs from the line's first byte, however slowly the
 * rest drips in); none under way stops it.
 */
void
shard_command_deadline(struct shard *sh, struct conn *c)
{
	/* A TLS handshake is held to the same deadline as a command. */
	if (!smtp_session_partial_command(&c->smtp) &&
	    (c->tls == NULL || tls_established(c->tls)))
		c->cmd_deadline_ms = 0;
	else if (c->cmd_deadline_ms == 0)
		c->cmd_deadline_ms = sh->now_ms +
		    c->cg->cfg.limits.command_timeout_ms;
}

/* A complete message: to the signers first when it is to be signed. */
static void
commit_or_sign(struct shard *sh, struct conn *c)
{
	int rc = shard_dkim_submit(sh, c);

	if (rc == 0)
		shard_start_commit(sh, c);
	else if (rc < 0)
		shard_handle_event(sh, c, smtp_session_commit_done(&c->smtp,
		    SMTP_COMMIT_SIGNFAIL));
}

/* React to what the session asked for, then keep I/O going. */
void
shard_handle_event(struct shard *sh, struct conn *c, enum smtp_event ev)
{
	/* A loop, not recursion: each AUTH answered at once may be
	 * followed by another the client pipelined. */
	if (ev == SMTP_EV_AUTH) {
		while (ev == SMTP_EV_AUTH)
			ev = shard_auth_start(sh, c);
		shard_command_deadline(sh, c);
	}
	/* No session yet: read the header, unless the server stops. */
	if (c->proxy_wait) {
		assert(ev == SMTP_EV_NONE);
		if (c->closing)
			return;
		if (sh->stopping)
			conn_close(sh, c);
		else if (!c->recv_armed)
			arm_recv(sh, c);
		return;
	}
	switch (ev) {
	case SMTP_EV_NONE:
		break;
	case SMTP_EV_COMMIT:
		commit_or_sign(sh, c);
		break;
	case SMTP_EV_CLOSE:
		if (!c->close_after_flush)
			c->deadline_ms = sh->now_ms + SHARD_FLUSH_GRACE_MS;
		c->close_after_flush = true;
		break;
	case SMTP_EV_STARTTLS:
		/* The 220 leaves in plaintext; the handshake follows it. */
		if (shard_tls_start(sh, c)) {
			c->tls_plain_out = true;
			shard_command_deadline(sh, c);
		} else if (!c->close_after_flush) {
			c->deadline_ms = sh->now_ms + SHARD_FLUSH_GRACE_MS;
			c->close_after_flush = true;
		}
		break;
	default:
		log_panic("bad smtp event %d", (int)ev);
	}
	if (c->closing)
		return;
	/* Every session learns of the stop: idle ones get 421 now, the
	 * others at their next command, pipelined or not. */
	if (sh->stopping && !c->smtp.shutting_down &&
	    smtp_session_shutdown(&c->smtp) == SMTP_EV_CLOSE &&
	    !c->close_after_flush) {
		c->close_after_flush = true;
		c->deadline_ms = sh->now_ms + SHARD_FLUSH_GRACE_MS;
	}
	conn_flush(sh, c);
	if (c->closing)
		return;
	if (c->close_after_flush) {
		if (!c->send_armed)
			conn_close(sh, c);
		return;
	}
	if (!c->recv_armed && !smtp_session_blocked(&c->smtp) &&
	    c->smtp.out.len < SHARD_OUT_HIGH)
		arm_recv(sh, c);
}

/* ---- completions ----------------------------------------------------- */

static void
arm_wake(struct shard *sh)
{
	struct io_uring_sqe *sqe = get_sqe(sh);

	io_uring_prep_read(sqe, sh->efd, &sh->efd_val, sizeof(sh->efd_val), 0);
	io_uring_sqe_set_data64(sqe, uring_ud(OP_WAKE, 0, 0));
}

static void
begin_stop(struct shard *sh)
{
	uint32_t i;

	sh->stopping = true;
	sh->stop_deadline_ms = sh->now_ms + sh->cfg->shutdown_timeout_ms;
	for (i = 0; i < sh->nlisten; i++)
		shard_slot_close(sh, i);
	sh->accepting = false;
	for (i = 0; i < sh->nconns; i++) {
		struct conn *c = &sh->conns[i];

		if (c->in_use && !c->closing)
			shard_handle_event(sh, c, SMTP_EV_NONE);
	}
}

/* Signature fields are back: in front of the message, then commit. */
static void
dkim_done(struct shard *sh, struct dkim_job *job)
{
	struct conn *c = &sh->conns[job->conn_idx];

	/* The slot was held for the job: it is still this connection. */
	assert(c->in_use && c->gen == job->conn_gen);
	if (!c->closing && c->smtp.state == SMTP_S_COMMIT) {
		if (shard_dkim_apply(sh, c, job) == 0)
			shard_start_commit(sh, c);
		else
			shard_handle_event(sh, c, smtp_session_commit_done(&c->smtp,
			    SMTP_COMMIT_SIGNFAIL));
	}
	shard_conn_op_done(sh, c);
}

/* A login's verdict reached the session: its next step. */
static void
auth_resume(struct shard *sh, struct conn *c, enum smtp_event ev)
{
	c->deadline_ms = sh->now_ms + c->cg->cfg.limits.idle_timeout_ms;
	shard_command_deadline(sh, c);
	shard_handle_event(sh, c, ev);
}

static void
handle_wake(struct shard *sh)
{
	struct auth_result *r, *rnext;
	struct dkim_job *dj, *next;
	struct config_gen *g;

	/* The committer's verdicts are taken at the top of the loop. */
	for (r = auth_reap(sh->id); r != NULL; r = rnext) {
		struct conn *c;
		enum smtp_event ev;

		rnext = r->next;
		if ((c = shard_auth_finish(sh, r, &ev)) != NULL)
			auth_resume(sh, c, ev);
		free(r);
	}
	for (dj = shard_dkim_reap(sh); dj != NULL; dj = next) {
		next = dj->next;
		dkim_done(sh, dj);
	}
	if ((g = atomic_exchange(&sh->gen_next, NULL)) != NULL)
		shard_swap_gen(sh, g);
	if (atomic_load(&sh->stop_requested) && !sh->stopping)
		begin_stop(sh);
	arm_wake(sh);
}

static void
handle_recv(struct shard *sh, struct conn *c, int res, uint32_t flags)
{
	enum smtp_event ev;
	unsigned bid;
	char *data;

	c->recv_armed = false;
	if (res == -ENOBUFS) {
		/* Every buffer is busy for the moment; try again. */
		shard_conn_op_done(sh, c);
		if (c->in_use && !c->closing)
			shard_handle_event(sh, c, SMTP_EV_NONE);
		return;
	}
	if (res <= 0) {
		if (c->proxy_wait && !c->closing)
			shard_proxy_eof(sh, c, res);
		conn_close(sh, c);
		shard_conn_op_done(sh, c);
		return;
	}
	data = uring_bufs_data(&sh->bufs, flags, &bid);
	if (c->closing) {
		ev = SMTP_EV_NONE;
	} else if (c->proxy_wait) {
		/* Bytes do not extend the header's deadline. */
		ev = conn_proxy(sh, c, data, (size_t)res);
	} else {
		c->deadline_ms = sh->now_ms + c->cg->cfg.limits.idle_timeout_ms;
		ev = c->tls != NULL ? shard_tls_input(sh, c, data, (size_t)res) :
		    smtp_session_input(&c->smtp, data, (size_t)res);
		shard_command_deadline(sh, c);
	}
	/* The session copied what it keeps: the buffer goes back now. */
	uring_bufs_recycle(&sh->bufs, bid);
	c->inflight--;
	if (c->closing) {
		if (c->inflight == 0)
			conn_free(sh, c);
		return;
	}
	shard_handle_event(sh, c, ev);
}

static void
handle_send(struct shard *sh, struct conn *c, int res)
{
	c->send_armed = false;
	if (res < 0) {
		conn_close(sh, c);
		shard_conn_op_done(sh, c);
		return;
	}
	c->tx_off += (size_t)res;
	c->inflight--;
	if (c->closing) {
		if (c->inflight == 0)
			conn_free(sh, c);
		return;
	}
	if (c->tx_off == c->tx.len) {
		buf_reset(&c->tx);
		c->tx_off = 0;
	}
	shard_handle_event(sh, c, SMTP_EV_NONE);
}

static void
dispatch(struct shard *sh, uint64_t ud, int res, uint32_t flags)
{
	uint32_t idx = URING_UD_IDX(ud);
	struct conn *c = NULL;

	switch ((enum op)URING_UD_OP(ud)) {
	case OP_RECV:
	case OP_SEND:
		c = &sh->conns[idx];
		/* A slot is only reused once nothing of it is in flight. */
		assert(c->in_use);
		assert(c->gen == URING_UD_GEN(ud));
		break;
	default:
		break;
	}
	switch ((enum op)URING_UD_OP(ud)) {
	case OP_ACCEPT:
		if (res >= 0) {
			handle_accept(sh, res, idx);
		} else if (res != -ECANCELED &&
		    sh->now_ms >= sh->accept_warn_ms + 1000) {
			/* Once a second at most: EMFILE can come in floods. */
			log_warn("shard %u: accept: %s", sh->id,
			    strerror(-res));
			sh->accept_warn_ms = sh->now_ms;
		}
		if (!(flags & IORING_CQE_F_MORE)) {
			sh->accepts--;
			sh->slot_armed[idx] = false;
			/* Not a slot a reload closed (or reused meanwhile). */
			if (!sh->accepting || sh->lfd[idx] < 0)
				break;
			if (res >= 0 || res == -ECANCELED) {
				shard_arm_accept(sh, idx);
			} else {
				/* Retrying at once would spin: wait a tick. */
				sh->accept_retry[idx] = true;
				sh->accept_retry_ms = sh->now_ms +
				    SHARD_ACCEPT_BACKOFF_MS;
			}
		}
		break;
	case OP_RECV:
		handle_recv(sh, c, res, flags);
		break;
	case OP_SEND:
		handle_send(sh, c, res);
		break;
	case OP_WAKE:
		handle_wake(sh);
		break;
	case OP_SEG_OPEN:
		shard_handle_seg_open(sh, res);
		break;
	case OP_SEG_ALLOC:
		shard_handle_seg_alloc(sh, idx, res);
		break;
	case OP_SEG_DIRSYNC:
		shard_handle_seg_dirsync(sh, idx, res);
		break;
	case OP_CANCEL:
		break;
	default:
		if (URING_UD_OP(ud) >= DELIVER_OP_BASE && sh->deliver != NULL) {
			deliver_complete(sh->deliver, ud, res, flags);
			break;
		}
		log_panic("shard %u: bad operation %llu", sh->id,
		    (unsigned long long)URING_UD_OP(ud));
	}
}

/* Idle timeouts, and the shutdown deadline. */
static void
tick(struct shard *sh)
{
	uint32_t i;

	for (i = 0; i < sh->nconns; i++) {
		struct conn *c = &sh->conns[i];

		if (!c->in_use || c->closing)
			continue;
		if (sh->stopping && sh->now_ms >= sh->stop_deadline_ms) {
			conn_close(sh, c);
			continue;
		}
		if (c->proxy_wait) {
			if (sh->now_ms >= c->deadline_ms) {
				shard_proxy_expired(sh, c);
				conn_close(sh, c);
			}
			continue;
		}
		/* A client that does not read its last reply is let go. */
		if (c->close_after_flush) {
			if (sh->now_ms >= c->deadline_ms)
				conn_close(sh, c);
			continue;
		}
		if (c->auth_due_ms != 0 && sh->now_ms >= c->auth_due_ms) {
			enum smtp_event ev;

			if (shard_auth_due(c, &ev))
				auth_resume(sh, c, ev);
			continue;
		}
		/* Waiting on our own queue is not the client's idleness. */
		if (smtp_session_blocked(&c->smtp))
			continue;
		if (sh->now_ms >= c->deadline_ms) {
			smtp_session_timeout(&c->smtp);
			shard_handle_event(sh, c, SMTP_EV_CLOSE);
		} else if (c->cmd_deadline_ms != 0 &&
		    sh->now_ms >= c->cmd_deadline_ms) {
			if (c->tls != NULL && !tls_established(c->tls))
				log_info("%s: TLS handshake failed: not "
				    "completed in time", c->smtp.client_addr);
			smtp_session_command_timeout(&c->smtp);
			shard_handle_event(sh, c, SMTP_EV_CLOSE);
		}
	}
	shard_refusal_log_tick(sh);
	/* Accepts that failed for want of descriptors are retried here. */
	for (i = 0; i < sh->nlisten; i++) {
		if (sh->accept_retry[i] && sh->accepting &&
		    sh->lfd[i] >= 0 && !sh->slot_armed[i] &&
		    sh->now_ms >= sh->accept_retry_ms) {
			sh->accept_retry[i] = false;
			shard_arm_accept(sh, i);
		}
	}
}

/*
 * The ring is created by the thread that uses it: with SINGLE_ISSUER the
 * creating task is the only one allowed to submit.
 */
/* Delivery's way back into this shard (deliver/deliver.h). */
static uint64_t
host_queue_dsn(void *ctx, const char *rcpt, struct buf *msg,
    struct queue_update *ups, uint32_t nups)
{
	return shard_queue_dsn(ctx, rcpt, msg, ups, nups);
}

static void
host_submit_updates(void *ctx, struct queue_update *ups, uint32_t nups)
{
	shard_submit_updates(ctx, ups, nups);
}

static const struct deliver_host shard_deliver_host = {
	.queue_dsn = host_queue_dsn,
	.submit_updates = host_submit_updates,
};

static void
setup_ring(struct shard *sh)
{
	unsigned i;
	int rc;

	if ((rc = uring_init(&sh->ring, SHARD_RING_ENTRIES, 0)) < 0)
		log_fatal("shard %u: io_uring_queue_init: %s", sh->id,
		    strerror(-rc));
	if ((rc = uring_bufs_setup(&sh->ring, &sh->bufs, SHARD_RECV_BUFS,
	    SHARD_RECV_BUF_SIZE, SHARD_BGID)) < 0)
		log_fatal("shard %u: provided buffers: %s", sh->id,
		    strerror(-rc));
	for (i = 0; i < sh->nlisten; i++)
		shard_arm_accept(sh, i);
	arm_wake(sh);
	sh->deliver = deliver_create(&shard_deliver_host, sh, &sh->ring, sh->id,
	    &sh->dcfg);
	if (sh->deliver == NULL)
		log_fatal("shard %u: cannot start delivery", sh->id);
}

/* The loop's dispatch: completions see the time of the wait they ended. */
static void
loop_dispatch(void *ctx, uint64_t ud, int res, uint32_t flags)
{
	struct shard *sh = ctx;

	sh->now_ms = sh->loop.now_us / 1000u;
	dispatch(sh, ud, res, flags);
}

static void *
shard_main(void *arg)
{
	struct shard *sh = arg;
	char name[32];

	thread_name("shard", (int)sh->id);
	setup_ring(sh);
	snprintf(name, sizeof(name), "shard %u", sh->id);
	if (uring_loop_init(&sh->loop, &sh->ring, SHARD_CQE_BATCH,
	    loop_dispatch, sh, name) != 0)
		log_fatal("out of memory");
	log_buffer_lines();
	sh->now_ms = clock_mono_ms();
	sh->next_tick_ms = sh->now_ms + SHARD_TICK_MS;
	for (;;) {
		struct commit_job *job;

		/* Verdicts come back without a wake-up while we run. */
		while ((job = committer_reap(sh->committer, sh->id)) != NULL)
			shard_job_finish(sh, job);
		shard_pending_flush(sh);
		/* Done when nothing is left in flight, accepts included:
		 * their completion releases the listening sockets. */
		if (sh->deliver != NULL)
			deliver_run(sh->deliver, sh->now_ms);
		shard_pending_flush(sh);
		if (sh->stopping && sh->nactive == 0 && sh->jobs_out == 0 &&
		    sh->seg_ops == 0 && sh->accepts == 0 &&
		    (sh->deliver == NULL || deliver_stop(sh->deliver,
		    sh->now_ms >= sh->stop_deadline_ms)))
			break;
		log_buffer_flush();
		/*
		 * The committer writes our eventfd only while we wait: say so,
		 * then look at its ring once more, and do not wait if a
		 * verdict came in between.
		 */
		committer_shard_waits(sh->committer, sh->id, true);
		uring_loop_step(&sh->loop, committer_has_results(sh->committer,
		    sh->id) ? 0 : SHARD_TICK_MS * 1000u);
		committer_shard_waits(sh->committer, sh->id, false);
		sh->now_ms = sh->loop.now_us / 1000u;
		if (sh->now_ms >= sh->next_tick_ms) {
			tick(sh);
			if (sh->deliver != NULL)
				deliver_tick(sh->deliver, sh->now_ms);
			sh->next_tick_ms = sh->now_ms + (sh->stopping ? 50 :
			    SHARD_TICK_MS);
		}
	}
	/* On this thread: the resolver cancels its requests on the ring. */
	deliver_destroy(sh->deliver);
	sh->deliver = NULL;
	uring_loop_free(&sh->loop);
	log_buffer_flush();
	return NULL;
}

/* ---- set-up ---------------------------------------------------------- */

struct shard *
shard_create(unsigned id, struct config_gen *g, uint64_t seg_seq,
    uint64_t last_qid)
{
	const struct config *cfg = &g->cfg;
	struct shard *sh;
	char path[4096];
	uint32_t i, per;
	int rc;

	sh = calloc(1, sizeof(*sh));
	if (sh == NULL)
		log_fatal("out of memory");
	sh->id = id;
	sh->gen = gen_hold(g);
	atomic_init(&sh->gen_next, NULL);
	sh->cfg = cfg;
	sh->dcfg = g->dcfg;
	sh->scfg = &g->scfg;
	sh->cur = sh->next = -1;
	sh->efd = -1;
	sh->segdir_fd = -1;
	sh->seg_seq = seg_seq;
	sh->idgen.shard = id;
	sh->idgen.last = last_qid;
	sh->ids = (struct smtp_id_source){ inbound_next_id, &sh->idgen };
	atomic_init(&sh->stop_requested, false);
	sh->efd = eventfd(0, EFD_CLOEXEC);
	if (sh->efd < 0)
		log_fatal("eventfd: %s", strerror(errno));
	/*
	 * Any shard may end up with every connection (the kernel spreads
	 * them by a hash of the addresses), so each gets slots for the whole
	 * limit; total_conns keeps the sum within it. Slots are small until
	 * used: buffers are allocated on demand.
	 */
	per = cfg->limits.connections;
	sh->nconns = per;
	sh->conns = calloc(per, sizeof(*sh->conns));
	if (sh->conns == NULL)
		log_fatal("out of memory for %u connection slots", per);
	for (i = 0; i < per; i++) {
		sh->conns[i].fd = -1;
		sh->conns[i].next_free = i + 1 < per ? i + 1 : UINT32_MAX;
	}
	sh->free_head = 0;
	if (cfg->nlisten > SHARD_LISTEN_MAX)
		log_fatal("at most %d listeners", SHARD_LISTEN_MAX);
	for (i = 0; i < SHARD_LISTEN_MAX; i++) {
		sh->lfd[i] = -1;
		sh->slot_lis[i] = -1;
	}
	for (i = 0; i < cfg->nlisten; i++) {
		rc = shard_listen_socket(&cfg->listen[i]);
		if (rc < 0)
			log_fatal("cannot listen on %s: %s",
			    cfg->listen[i].address, strerror(-rc));
		sh->lfd[i] = rc;
		sh->slot_lis[i] = (int)i;
	}
	sh->nlisten = (unsigned)cfg->nlisten;
	snprintf(path, sizeof(path), "%s/seg", cfg->spool);
	sh->segdir_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (sh->segdir_fd < 0)
		log_fatal("%s: %s", path, strerror(errno));
	if ((rc = shard_seg_open_sync(sh)) < 0)
		log_fatal("shard %u: cannot create a spool segment: %s", id,
		    strerror(-rc));
	sh->cur = rc;
	return sh;
}

int
shard_eventfd(const struct shard *sh)
{
	return sh->efd;
}

int
shard_start(struct shard *sh, struct committer *c)
{
	sh->committer = c;
	sh->accepting = true;
	return -pthread_create(&sh->thread, NULL, shard_main, sh);
}

void
shard_request_stop(struct shard *const *shards, unsigned n)
{
	int rc;

	/* Every flag before any wake: a shard woken first sends its 421s at
	 * once, and a client that then connects to another shard must be
	 * refused there even if this thread is not scheduled again yet. */
	for (unsigned i = 0; i < n; i++)
		atomic_store(&shards[i]->stop_requested, true);
	for (unsigned i = 0; i < n; i++)
		if ((rc = efd_wake(shards[i]->efd)) < 0)
			log_warn("shard %u: wake: %s", shards[i]->id,
			    strerror(-rc));
}

void
shard_join_thread(struct shard *sh)
{
	pthread_join(sh->thread, NULL);
}

void
shard_free(struct shard *sh)
{
	uint32_t i;

	for (i = 0; i < sh->nlisten; i++)
		if (sh->lfd[i] >= 0)
			close(sh->lfd[i]);
	for (i = 0; i < SHARD_SEGS; i++)
		if (sh->segs[i].in_use)
			close(sh->segs[i].fd);
	for (i = 0; i < sh->nconns; i++) {
		gen_release(sh->conns[i].cg);
		smtp_session_free(&sh->conns[i].smtp);
		buf_free(&sh->conns[i].tx);
		tls_free(sh->conns[i].tls);
		buf_free(&sh->conns[i].proxy_hdr);
		shard_dkim_conn_free(&sh->conns[i]);
	}
	buf_free(&sh->tls_plain);
	io_uring_queue_exit(&sh->ring);
	uring_bufs_free(&sh->bufs);
	free(sh->conns);
	gen_release(atomic_exchange(&sh->gen_next, NULL));
	gen_release(sh->gen);
	close(sh->efd);
	close(sh->segdir_fd);
	free(sh);
}

uint64_t
shard_messages(const struct shard *sh)
{
	return atomic_load(&sh->n_messages);
}
