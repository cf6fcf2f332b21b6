/*
 * deliver_conn.c - outbound connections: connecting through the ring to a
 * destination's addresses in order, the smtp_client session on each, an
 * item's record read back and sent, replies handed to the results, and
 * the DNS answers that give a destination its addresses.
 */
#include "deliver_int.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "../lib/clock.h"
#include "../lib/log.h"
#include "../lib/uring.h"
#include "dsn.h"

/* ---- outbound connections -------------------------------------------- */


/* The client declares the body the queue recorded, value for value. */
static_assert(SMTP_BODY_7BIT == (int)QUEUE_BODY_7BIT, "body 7bit");
static_assert(SMTP_BODY_8BITMIME == (int)QUEUE_BODY_8BITMIME, "body 8bit");
static_assert(SMTP_BODY_BINARYMIME == (int)QUEUE_BODY_BINARYMIME,
    "body binarymime");
static_assert(DELIVERY_PIPELINE_DEPTH_MAX == SMTP_CLIENT_DEPTH_MAX,
    "delivery.pipeline_depth within the client's limit");

uint64_t
dl_cud(unsigned op, struct dl_conn *c)
{
	return uring_ud(op, (uint32_t)(c - c->d->conns), c->gen);
}

void
dl_conn_free(struct dl_conn *c)
{
	struct deliver *d = c->d;
	struct dl_dest *ds = c->dest;

	assert(c->inflight == 0);
	/* The client settles every transaction before the session ends. */
	assert(c->npq == 0);
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	smtp_client_free(&c->cli);
	buf_free(&c->tx);
	dl_tls_conn_free(c);
	dl_conn_addr_release(c);
	if (ds != NULL) {
		dl_set_idle(c, false);
		ds->nconn--;
		if (c->starting)
			ds->nstarting--;
		if (ds->queued > 0)
			dl_dest_run(d, ds);
	}
	if (c->yielding) {
		c->yielding = false;
		d->nyielding--;
	}
	c->dest = NULL;
	c->in_use = false;
	c->gen++;
	c->next_free = d->free_head;
	d->free_head = (uint32_t)(c - d->conns);
	d->nactive--;
	/* A slot is free: a few of those waiting for one look again
	 * (deliver_run() wakes the rest while slots stay free). */
	dl_slot_wake(d, DL_SLOT_WAKE);
}

void
dl_conn_close(struct dl_conn *c)
{
	struct io_uring_sqe *sqe;

	if (c->closing)
		return;
	c->closing = true;
	if (c->inflight == 0) {
		dl_conn_free(c);
		return;
	}
	if (c->fd >= 0)
		shutdown(c->fd, SHUT_RDWR);
	sqe = uring_get_sqe(c->d->ring);
	io_uring_prep_cancel_fd(sqe, c->fd, IORING_ASYNC_CANCEL_ALL);
	io_uring_sqe_set_data64(sqe, uring_ud(OP_OCANCEL, 0, 0));
}

/*
 * The deadline for what the client waits for now, from now: when a reply
 * became expected (the connection is up, a command went out, the previous
 * reply was taken), never when bytes arrive (conn_deadline_input()).
 */
void
dl_conn_deadline(struct dl_conn *c)
{
	const struct delivery_cfg *dc = c->d->cfg->delivery;

	c->deadline_replies = c->cli.replies;
	c->deadline_wait = (int)smtp_client_waiting(&c->cli);
	switch (smtp_client_waiting(&c->cli)) {
	case SMTP_CLIENT_WAIT_DATA_END:
		c->deadline_ms = c->d->now_ms + dc->data_timeout_ms;
		break;
	case SMTP_CLIENT_WAIT_NONE:
		c->deadline_ms = c->d->now_ms + dc->idle_keep_ms;
		break;
	case SMTP_CLIENT_WAIT_QUIT:
		c->deadline_ms = c->d->now_ms + 2000;
		break;
	default:
		c->deadline_ms = c->d->now_ms + dc->reply_timeout_ms;
		break;
	}
}

/*
 * After input: a new deadline only if the client took a whole reply or
 * now waits for something else. A reply that trickles in a byte at a time
 * must still be complete within reply_timeout (data_timeout) of when it
 * became expected; restarting on every byte let a peer hold a connection
 * and its message for as long as it liked.
 */
static void
conn_deadline_input(struct dl_conn *c)
{
	if (c->cli.replies != c->deadline_replies ||
	    (int)smtp_client_waiting(&c->cli) != c->deadline_wait)
		dl_conn_deadline(c);
}

/* The bytes of an address that name the peer: family, port, address. */
size_t
dl_sa_key(const struct sockaddr_storage *sa, uint8_t key[20])
{
	const struct sockaddr_in *v4 = (const struct sockaddr_in *)sa;
	const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)sa;

	key[0] = (uint8_t)sa->ss_family;
	if (sa->ss_family == AF_INET) {
		memcpy(key + 1, &v4->sin_port, 2);
		memcpy(key + 3, &v4->sin_addr, 4);
		return 7;
	}
	if (sa->ss_family == AF_INET6) {
		memcpy(key + 1, &v6->sin6_port, 2);
		memcpy(key + 3, &v6->sin6_addr, 16);
		return 19;
	}
	return 1;	/* a unix socket: never shared across destinations */
}

uint32_t
dl_sa_bucket(const struct sockaddr_storage *sa)
{
	uint8_t key[20];
	size_t n = dl_sa_key(sa, key);

	return (uint32_t)XXH3_64bits(key, n) & (DL_ADDR_BUCKETS - 1);
}

static bool
sa_same(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	uint8_t ka[20], kb[20];
	size_t na = dl_sa_key(a, ka), nb = dl_sa_key(b, kb);

	return a->ss_family != AF_UNIX && na == nb && memcmp(ka, kb, na) == 0;
}

/*
 * An idle connection is on three lists: its destination's (to take its
 * next item), the shard's, oldest first (to give its slot to a destination
 * that waits for one), and an address bucket (for another destination
 * whose mail goes to the same host).
 */
void
dl_set_idle(struct dl_conn *c, bool idle)
{
	struct deliver *d = c->d;
	struct dl_dest *ds = c->dest;
	uint32_t b;

	if (c->idle == idle)
		return;
	c->idle = idle;
	b = dl_sa_bucket(&c->sa);
	if (idle) {
		ds->nidle++;
		c->iprev = NULL;
		c->inext = ds->idle;
		if (ds->idle != NULL)
			ds->idle->iprev = c;
		ds->idle = c;
		c->lnext = NULL;
		c->lprev = d->idle_new;
		if (d->idle_new != NULL)
			d->idle_new->lnext = c;
		else
			d->idle_old = c;
		d->idle_new = c;
		c->aprev = NULL;
		c->anext = d->addr_idle[b];
		if (d->addr_idle[b] != NULL)
			d->addr_idle[b]->aprev = c;
		d->addr_idle[b] = c;
		return;
	}
	ds->nidle--;
	if (c->iprev != NULL)
		c->iprev->inext = c->inext;
	else
		ds->idle = c->inext;
	if (c->inext != NULL)
		c->inext->iprev = c->iprev;
	if (c->lprev != NULL)
		c->lprev->lnext = c->lnext;
	else
		d->idle_old = c->lnext;
	if (c->lnext != NULL)
		c->lnext->lprev = c->lprev;
	else
		d->idle_new = c->lprev;
	if (c->aprev != NULL)
		c->aprev->anext = c->anext;
	else
		d->addr_idle[b] = c->anext;
	if (c->anext != NULL)
		c->anext->aprev = c->aprev;
	c->inext = c->iprev = c->lnext = c->lprev = c->anext = c->aprev =
	    NULL;
}

/* Would a session set up for a serve b the same way? */
static bool
ccfg_same(const struct smtp_client_cfg *a, const struct smtp_client_cfg *b)
{
	const char *au = a->auth_user ? a->auth_user : "";
	const char *bu = b->auth_user ? b->auth_user : "";
	const char *ap = a->auth_pass ? a->auth_pass : "";
	const char *bp = b->auth_pass ? b->auth_pass : "";

	return a->lmtp == b->lmtp && a->chunking == b->chunking &&
	    a->starttls == b->starttls &&
	    a->auth_insecure == b->auth_insecure &&
	    strcmp(a->helo_name, b->helo_name) == 0 && strcmp(au, bu) == 0 &&
	    strcmp(ap, bp) == 0;
}

/* Could c, ready, serve ds as it is at ds's target k? */
bool
dl_conn_fits(const struct dl_conn *c, const struct dl_dest *ds, unsigned k)
{
	const struct dl_dest *old = c->dest;
	const struct dl_target *t = &ds->targets[k];

	return old != ds && !c->closing && sa_same(&c->sa, &t->sa) &&
	    ccfg_same(&old->ccfg, &ds->ccfg) && dl_tls_same(c, old, ds, t) &&
	    smtp_client_ready(&c->cli);
}

/* c, idle or between two messages, now serves ds at its target k. */
void
dl_conn_move(struct dl_conn *c, struct dl_dest *ds, unsigned k)
{
	dl_set_idle(c, false);
	c->dest->nconn--;
	c->dest = ds;
	c->target = k;
	c->cli.cfg = &ds->ccfg;
	snprintf(c->host, sizeof(c->host), "%s", ds->targets[k].host);
	ds->nconn++;
	c->d->reused++;
}

/*
 * An idle connection of another destination to one of ds's best hosts
 * (the addresses of its lowest MX preference), set up the same way (the
 * same client settings, the same TLS policy, and under verify a session
 * verified for the name ds would check), moved
 * to ds, as Postfix's connection cache reuses a session by address: many
 * domains share their provider's MX hosts. NULL when there is none.
 */
struct dl_conn *
dl_conn_reuse(struct deliver *d, struct dl_dest *ds)
{
	for (unsigned k = 0; k < ds->ntargets; k++) {
		const struct dl_target *t = &ds->targets[k];
		struct dl_conn *c;

		if (t->pref != ds->targets[0].pref)
			break;
		for (c = d->addr_idle[dl_sa_bucket(&t->sa)]; c; c = c->anext) {
			if (!dl_conn_fits(c, ds, k))
				continue;
			dl_conn_move(c, ds, k);
			return c;
		}
	}
	return NULL;
}











/* Put up to n destinations waiting for a slot back on the run list. */
void
dl_slot_wake(struct deliver *d, unsigned n)
{
	while (d->slot_waiters != NULL && n-- > 0) {
		struct dl_dest *w = d->slot_waiters;

		d->slot_waiters = w->wnext;
		w->slot_wait = false;
		if (w->queued > 0)
			dl_dest_run(d, w);
	}
}

/* A slot can be had: a free one, or one never used yet. */
bool
dl_conn_slot_free(const struct deliver *d)
{
	return d->free_head != UINT32_MAX || d->conn_hw < d->conn_max;
}

/*
 * ds waits for a slot: the idle connection of another destination that
 * has been idle longest says QUIT and gives its slot up when it closes
 * (idle_keep holds only while nobody waits). Once per waiting destination:
 * a closing one counts for one waiter. false when none is idle.
 */
bool
dl_conn_yield(struct deliver *d, struct dl_dest *ds)
{
	struct dl_conn *c;

	if (d->nyielding >= d->nwaiting)
		return true;
	for (c = d->idle_old; c != NULL; c = c->lnext)
		if (c->dest != ds && !c->closing && smtp_client_ready(&c->cli))
			break;
	if (c == NULL)
		return false;
	dl_set_idle(c, false);
	c->yielding = true;
	d->nyielding++;
	smtp_client_quit(&c->cli);
	dl_conn_flush(c);
	dl_conn_deadline(c);
	return true;
}

static void
arm_orecv(struct dl_conn *c)
{
	struct io_uring_sqe *sqe;

	if (c->recv_armed || c->closing)
		return;
	sqe = uring_get_sqe(c->d->ring);
	io_uring_prep_recv(sqe, c->fd, c->rbuf, sizeof(c->rbuf), 0);
	io_uring_sqe_set_data64(sqe, dl_cud(OP_ORECV, c));
	c->recv_armed = true;
	c->inflight++;
}

void
dl_conn_flush(struct dl_conn *c)
{
	struct io_uring_sqe *sqe;

	if (c->send_armed || c->closing)
		return;
	if (c->tx_off == c->tx.len) {
		buf_reset(&c->tx);
		c->tx_off = 0;
		if (c->tls != NULL) {
			/* Records, not the client's bytes (deliver_tls.c). */
			if (dl_tls_output(c) < 0 || c->tx.len == 0)
				return;
			goto send;
		}
		if (c->cli.out.len == 0)
			return;
		/* Swap: the client appends to an empty buffer meanwhile. */
		struct buf t = c->tx;

		c->tx = c->cli.out;
		c->cli.out = t;
	}
send:
	sqe = uring_get_sqe(c->d->ring);
	io_uring_prep_send(sqe, c->fd, c->tx.data + c->tx_off,
	    c->tx.len - c->tx_off, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, dl_cud(OP_OSEND, c));
	c->send_armed = true;
	c->inflight++;
}

/* Release what the current item borrowed; the item itself is passed on. */
void
dl_conn_item_clear(struct dl_conn *c)
{
	if (c->res != NULL) {
		for (uint16_t i = 0; c->item && i < c->item->nrcpt; i++)
			free(c->res[i].text);
		free(c->res);
	}
	c->res = NULL;
	free(c->rcpts);
	c->rcpts = NULL;
	envelope_release(&c->env);
	free(c->rec);
	c->rec = NULL;
	c->item = NULL;
}

/*
 * Take the current item's results, record and envelope off the connection
 * (the caller frees them); the connection is free for the next item.
 */
static struct dl_item *
conn_item_detach(struct dl_conn *c, struct dl_rres **res, uint8_t **rec,
    struct envelope *env)
{
	struct dl_item *it = c->item;

	*res = c->res;
	*rec = c->rec;
	*env = c->env;
	memset(&c->env, 0, sizeof(c->env));
	c->res = NULL;
	c->rec = NULL;
	c->item = NULL;
	free(c->rcpts);
	c->rcpts = NULL;
	return it;
}

/*
 * The item's record is loaded (c->rec, c->env): hand it to the client.
 * true: under way; false: it is already done with (refused locally,
 * bounced, or put back), take the next.
 */
static bool
item_send(struct dl_conn *c, struct dl_item *it)
{
	struct deliver *d = c->d;
	struct smtp_client_msg m;
	int rc;

	c->item = it;
	dl_set_idle(c, false);
	c->msgs++;
	c->res = calloc(it->nrcpt, sizeof(*c->res));
	c->rcpts = calloc(it->nrcpt, sizeof(*c->rcpts));
	if (c->res == NULL || c->rcpts == NULL) {
		dl_conn_item_clear(c);
		it->due_ms = d->now_ms + 1000;
		dl_item_schedule(d, it);
		if (smtp_client_ready(&c->cli))
			smtp_client_quit(&c->cli);
		return true;
	}
	for (uint16_t i = 0; i < it->nrcpt; i++)
		c->rcpts[i] = it->redirect ? d->cfg->dev_redirect :
		    c->env.rcpt[it->rcpt[i]];
	memset(&m, 0, sizeof(m));
	m.sender = c->env.sender;
	m.rcpt = c->rcpts;
	m.nrcpt = it->redirect ? 1 : it->nrcpt;
	m.data = (const char *)c->rec + sizeof(struct seg_hdr) +
	    it->mm.env_len;
	m.len = it->mm.msg_len;
	m.body = c->env.body;	/* enum queue_body == enum smtp_body */
	m.smtputf8 = c->env.smtputf8;
	rc = smtp_client_send(&c->cli, &m);
	if (rc == 0)
		return true;
	if (rc == 1)
		return false;	/* refused here; results are in */
	if (rc == -EAGAIN || rc == -ENOMEM) {
		/* Not behind the others after all (too many commands in
		 * flight): back to its destination, untried. */
		dl_conn_item_clear(c);
		c->msgs--;
		it->due_ms = 0;
		dl_item_schedule(d, it);
		return false;
	}
	/* A message the client cannot send at all: bounce it. */
	{
		struct dl_rres *res;
		uint8_t *rec;
		struct envelope env;
		char why[] = "message cannot be sent as is";

		conn_item_detach(c, &res, &rec, &env);
		free(res);
		dl_item_done_all(d, it, 554, "5.6.0", why, rec, &env, NULL);
		envelope_release(&env);
		free(rec);
	}
	return false;
}

/*
 * The record of it was read (res bytes, or -errno): an item dropped
 * meanwhile is let go, a damaged record gives the item up (as
 * dl_item_unreadable() says), a sound one is sent. What item_send()
 * says, or false when nothing was sent.
 */
static bool
record_send(struct dl_conn *c, struct dl_item *it, uint8_t *rec, int res)
{
	const char *why;

	if (it->dropped) {
		free(rec);
		dl_item_free(c->d, it);
		return false;
	}
	if ((why = dl_item_verify(it, rec, res, &c->env)) != NULL) {
		free(rec);
		memset(&c->env, 0, sizeof(c->env));
		dl_item_unreadable(c->d, it, why);
		return false;
	}
	c->rec = rec;
	return item_send(c, it);
}

/*
 * Take the destination's next item (and a rate token) and start reading
 * its record for c, which then waits for it in c->loading. false when
 * the read could not even start (the item went to dl_item_unreadable()):
 * the caller tries the next one.
 */
static bool
conn_load(struct dl_conn *c)
{
	struct dl_dest *ds = c->dest;
	struct dl_item *it = dl_dest_pop(ds);
	uint8_t *buf;
	int fd;

	if (ds->route->policy.max_rate > 0)
		ds->tokens -= 1;
	if (!dl_item_read_start(c->d, it, dl_cud(OP_OREAD, c), &fd, &buf))
		return false;
	c->inflight++;
	c->loading = it;
	c->lrec = buf;
	c->rfd = fd;
	return true;
}

/*
 * Give the connection its next item, or leave it idle. The item's record
 * is read through the ring (the loop never waits on the disk); the send
 * continues in dl_handle_oread().
 */
void
dl_conn_next(struct dl_conn *c)
{
	struct deliver *d = c->d;
	struct dl_dest *ds;
	const struct route_policy *pol;

	assert(c->loading == NULL);
	dl_conn_hand_over(c);
	ds = c->dest;
	pol = &ds->route->policy;
	for (;;) {
		if (d->stopping || (pol->max_messages_per_connection &&
		    c->msgs >= pol->max_messages_per_connection) ||
		    ds->nconn > ds->eff_max) {
			dl_set_idle(c, false);
			smtp_client_quit(&c->cli);
			return;
		}
		dl_dest_refill(d, ds);
		/* Held off (421s, a run of 4xx): open ones wait too. */
		if (ds->queued == 0 || (pol->max_rate > 0 && ds->tokens < 1) ||
		    d->now_ms < ds->hold_until_ms) {
			/* Others wait for room at its address and none of
			 * them could take it: it makes room. */
			if (c->ad != NULL && c->ad->whead != NULL) {
				dl_set_idle(c, false);
				smtp_client_quit(&c->cli);
				return;
			}
			dl_set_idle(c, true);
			return;
		}
		if (!conn_load(c))
			continue;
		dl_set_idle(c, false);
		return;
	}
}

/* Swap the current transaction's fields with p's. */
static void
ptx_swap(struct dl_conn *c, struct dl_ptx *p)
{
	struct dl_ptx t = *p;

	p->item = c->item;
	p->rec = c->rec;
	p->env = c->env;
	p->rcpts = c->rcpts;
	p->res = c->res;
	c->item = t.item;
	c->rec = t.rec;
	c->env = t.env;
	c->rcpts = t.rcpts;
	c->res = t.res;
}

/*
 * While a transaction is in flight and the client can take another behind
 * it (smtp_client_can_pipeline()), read the next item of the destination,
 * so that it goes out before the replies to the first come back: a
 * connection then always has a message on the wire, and one write and one
 * wake-up carry the end of one message and the start of the next. The
 * limits are those of dl_conn_next(); when one of them says no, the
 * connection takes no more now and dl_conn_next() decides at `ready`.
 */
static void
conn_pipe_more(struct dl_conn *c)
{
	struct deliver *d = c->d;
	struct dl_dest *ds = c->dest;
	const struct route_policy *pol = &ds->route->policy;

	if (c->closing || c->loading != NULL || c->item == NULL ||
	    c->npq + 1 >= DL_PIPE_MAX || !smtp_client_can_pipeline(&c->cli))
		return;
	if (d->stopping || (pol->max_messages_per_connection &&
	    c->msgs >= pol->max_messages_per_connection) ||
	    ds->nconn > ds->eff_max || (c->ad != NULL && c->ad->whead != NULL))
		return;
	dl_dest_refill(d, ds);
	while (ds->queued > 0 && (pol->max_rate == 0 || ds->tokens >= 1) &&
	    d->now_ms >= ds->hold_until_ms) {
		if (conn_load(c))
			return;
	}
}

/*
 * The record of an item to pipeline behind c->item was read: it takes the
 * current fields for the send (the callbacks of a local refusal are about
 * it), then goes behind the others.
 */
static void
conn_pipe_send(struct dl_conn *c, struct dl_item *it, uint8_t *rec, int res)
{
	struct deliver *d = c->d;
	struct dl_ptx *p = &c->pq[c->npq];

	assert(c->npq + 1 < DL_PIPE_MAX);
	memset(p, 0, sizeof(*p));
	ptx_swap(c, p);
	c->psending = true;
	(void)record_send(c, it, rec, res);
	c->psending = false;
	ptx_swap(c, p);
	if (p->item != NULL) {
		c->npq++;	/* under way */
		d->pipelined++;
	}
}

void
dl_conn_pipe_drop(struct dl_conn *c, uint64_t qid)
{
	for (unsigned i = 0; i < c->npq; i++)
		if (c->pq[i].item != NULL && c->pq[i].item->qid == qid)
			c->pq[i].item->dropped = true;
}

void
dl_conn_pipe_free(struct dl_conn *c)
{
	for (unsigned i = 0; i < c->npq; i++) {
		struct dl_ptx *p = &c->pq[i];
		struct dl_item *it = p->item;

		ptx_swap(c, p);
		dl_conn_item_clear(c);
		ptx_swap(c, p);
		if (it != NULL) {
			dl_pass_leave(it);
			dl_item_destroy(it);
		}
	}
	c->npq = 0;
	free(c->lrec);
	c->lrec = NULL;
}

/*
 * The record of c->loading was read (res bytes, or -errno). Sound: send
 * it. Damaged: as dl_item_unreadable() says, then the next item. If the
 * connection cannot take it any more (closing, or no longer ready), the
 * item goes back to its destination.
 */
void
dl_handle_oread(struct dl_conn *c, int res)
{
	struct deliver *d = c->d;
	struct dl_item *it = c->loading;
	uint8_t *rec = c->lrec;
	bool sent = false;

	assert(it != NULL);
	dl_segfd_put(d, c->rfd);
	c->rfd = -1;
	c->loading = NULL;
	c->lrec = NULL;
	if (c->item != NULL) {
		/* Read to go behind the transaction in flight. */
		if (c->closing || !smtp_client_can_pipeline(&c->cli)) {
			/* It cannot now (its predecessor failed, or the
			 * session did): back, untried, for `ready`. */
			free(rec);
			if (it->dropped) {
				dl_item_free(d, it);
				return;
			}
			it->due_ms = 0;
			dl_item_schedule(d, it);
			if (!c->closing && smtp_client_ready(&c->cli))
				dl_conn_next(c);
		} else {
			conn_pipe_send(c, it, rec, res);
			conn_pipe_more(c);
		}
		if (!c->closing) {
			dl_conn_flush(c);
			dl_conn_deadline(c);
		}
		return;
	}
	if (c->closing || !smtp_client_ready(&c->cli)) {
		if (it->dropped) {
			free(rec);
			dl_item_free(d, it);	/* held or deleted while read */
			return;
		}
		/* The session failed through the peer's fault (cb_failed()):
		 * this was the item's attempt. */
		if (c->fail_code != 0 && dl_item_verify(it, rec, res,
		    &c->env) == NULL) {
			struct dl_peer peer;

			dl_conn_peer(c, &peer);
			dl_item_done_all(d, it, c->fail_code, c->fail_enh,
			    c->fail_text, rec, &c->env, &peer);
			envelope_release(&c->env);
			memset(&c->env, 0, sizeof(c->env));
			free(rec);
			return;
		}
		memset(&c->env, 0, sizeof(c->env));
		free(rec);
		it->due_ms = 0;
		dl_item_schedule(d, it);
		return;
	}
	sent = record_send(c, it, rec, res);
	if (!sent)
		dl_conn_next(c);
	else
		conn_pipe_more(c);
	dl_conn_flush(c);
	dl_conn_deadline(c);
}


/* ---- smtp_client callbacks ------------------------------------------- */

static void
cb_ready(void *arg)
{
	struct dl_conn *c = arg;

	/*
	 * Until its session is ready a connection counts as one on its way
	 * to an item, so that one item waiting for a greeting does not open
	 * one connection per loop pass (a broken peer got five at once).
	 */
	if (c->starting) {
		c->starting = false;
		c->dest->nstarting--;
	}
	/* An item read to go behind the last transaction: it goes now,
	 * when the read completes (dl_handle_oread()). */
	if (c->loading != NULL)
		return;
	dl_conn_next(c);
}

static void
cb_rcpt_done(void *arg, uint32_t index, const struct smtp_client_reply *r)
{
	struct dl_conn *c = arg;
	struct dl_rres *x;

	if (c->res == NULL || c->item == NULL || index >= c->item->nrcpt)
		return;
	x = &c->res[index];
	x->code = r->code;
	snprintf(x->enhanced, sizeof(x->enhanced), "%s", r->enhanced);
	free(x->text);
	x->text = malloc(strlen(r->text) + 16);
	if (x->text != NULL)
		sprintf(x->text, "%d %s %s", r->code, r->enhanced, r->text);
}

static void
cb_message_done(void *arg, const struct smtp_client_reply *r,
    const struct smtp_client_tally *t)
{
	struct dl_conn *c = arg;
	struct deliver *d = c->d;
	struct dl_item *it = c->item;
	struct dl_dest *ds = c->dest;
	struct dl_rres *res;
	uint8_t *rec;
	struct envelope env;
	struct dl_peer peer;
	uint16_t n;

	if (it == NULL)
		return;
	n = it->nrcpt;
	/* A 421 ends the session: cb_failed() counts it, once. */
	if (t->delivered > 0)
		dl_health_ok(ds);
	else if (t->deferred > 0 && r->code != 421)
		dl_health_tx_failed(d, ds);
	conn_item_detach(c, &res, &rec, &env);
	dl_sts_plain(c);
	dl_conn_peer(c, &peer);
	dl_item_done(d, it, res, rec, &env, &peer);
	envelope_release(&env);
	free(rec);
	for (uint16_t i = 0; res != NULL && i < n; i++)
		free(res[i].text);
	free(res);
	/* The next one in flight is now the one the callbacks are about. */
	if (!c->psending && c->npq > 0) {
		ptx_swap(c, &c->pq[0]);
		memmove(&c->pq[0], &c->pq[1], (size_t)(c->npq - 1) *
		    sizeof(c->pq[0]));
		c->npq--;
		memset(&c->pq[c->npq], 0, sizeof(c->pq[0]));
	}
}

/* What an item being read for c gets, the session having failed so. */
static void
conn_fail_items(struct dl_conn *c, int code, const char *enh,
    const char *text)
{
	c->fail_code = code;
	snprintf(c->fail_enh, sizeof(c->fail_enh), "%s", enh);
	snprintf(c->fail_text, sizeof(c->fail_text), "%.*s",
	    (int)sizeof(c->fail_text) - 1, text);
}

/*
 * The session is over, not by our QUIT. Three cases:
 *  - the peer closed (or said 421 on) a connection kept idle for reuse,
 *    or one that had carried mail: its idle timeout, perhaps shorter than
 *    idle_keep. Not a failure: logged at debug level only, and an item
 *    being read for it goes back to its destination untried;
 *  - it failed before any mail (greeting, EHLO, AUTH refused or timed
 *    out, closed or broken right after them): the next MX host gets a
 *    try. At the last one the destination may be down: the item being
 *    read for it and, if no other session is up, the ready items get
 *    this reply;
 *  - it failed in or between transactions (a 421, a broken peer, a lost
 *    connection). The transaction's recipients have their replies
 *    already (message_done came first).
 * deliver_health.c decides how much each slows the destination down.
 */
static void
cb_failed(void *arg, enum smtp_client_stage stage,
    const struct smtp_client_reply *r)
{
	struct dl_conn *c = arg;
	struct dl_dest *ds = c->dest;
	bool idle = stage == SMTP_CLIENT_STAGE_IDLE && !r->protocol_error &&
	    (r->code == 421 || r->local);
	bool idle_close = idle && (c->idle || c->msgs > 0);
	bool before_mail = stage <= SMTP_CLIENT_STAGE_AUTH ||
	    (idle && !idle_close);
	/* A session's failure defers, even a 5xx greeting: the mail is
	 * fine, the destination may take it later (or another MX host). */
	int code = r->code >= 500 ? 451 : r->code;
	const char *enh = r->code >= 500 ? "4.4.0" : r->enhanced;
	struct dl_peer peer;
	char text[1100];

	if (stage == SMTP_CLIENT_STAGE_TLS)
		dl_sts_plain(c);	/* no STARTTLS (enforce) */
	dl_conn_peer(c, &peer);
	if (idle_close) {
		log_debug("deliver: %s [%s]: closed while idle after %u "
		    "message(s): %d %s", c->host, c->addr, c->msgs, r->code,
		    r->text);
		return;
	}
	if (stage == SMTP_CLIENT_STAGE_TLS && c->tls_level == ROUTE_TLS_MAY &&
	    !c->tls_plain) {
		/*
		 * Opportunistic TLS that failed (a broken handshake, a
		 * STARTTLS that never completes): the same host again in
		 * plaintext on a new connection, as Postfix does, and in
		 * plaintext for a while (deliver_tls.c) rather than failing
		 * the same way every time.
		 */
		dl_tls_plain_remember(c->d, &c->sa);
		log_info("deliver: %s [%s]: %s; again without TLS", c->host,
		    c->addr, r->text);
		if (!c->d->stopping && dl_conn_open(c->d, ds, c->target))
			return;
	}
	log_info("deliver: %s [%s]: session failed at %s: %d %s", c->host,
	    c->addr, smtp_client_strstage(stage), r->code, r->text);
	/* "said" only for what the server said (docs/smtp-client.md). */
	snprintf(text, sizeof(text), "%d %s host %s[%s]%s %s", r->code,
	    r->enhanced, c->host, c->addr, r->local ? ":" : " said:", r->text);
	if (c->msgs == 0 && stage <= SMTP_CLIENT_STAGE_IDLE &&
	    c->target + 1 < ds->ntargets && !c->d->stopping &&
	    dl_conn_open(c->d, ds, c->target + 1)) {
		/*
		 * Refused, closed or broken before any mail: the next MX
		 * host gets a try, and an item being read for this session
		 * goes back untried for it to take. Without a slot for it
		 * (every one taken), this counts as a failure below, so the
		 * destination backs off instead of redialling the primary.
		 */
		return;
	}
	if (r->protocol_error) {
		/*
		 * Broken, not busy: it will break the next session too. The
		 * item being read for this one gets this attempt's result,
		 * the destination waits (deliver_health.c).
		 */
		conn_fail_items(c, 451, "4.5.0", text);
		dl_health_broken(c->d, ds);
		if (ds->nconn <= 1)
			dl_dest_fail_ready(c->d, ds, 451, "4.5.0", text, &peer);
		return;
	}
	if (before_mail)
		conn_fail_items(c, code, enh, text);
	if (before_mail && ds->nconn <= 1) {
		/* Nothing got through: what waits here waits longer. */
		dl_health_down(c->d, ds);
		dl_dest_fail_ready(c->d, ds, code, enh, text, &peer);
	} else if (before_mail || r->code == 421) {
		/*
		 * Refused beside sessions that work, or a 421 in one: in
		 * proportion (deliver_health.c). When such failures dominate
		 * and this was the last session, what waits is deferred, as
		 * for a destination nothing reaches.
		 */
		if (dl_health_soft(c->d, ds) && ds->nconn <= 1)
			dl_dest_fail_ready(c->d, ds, code, enh, text, &peer);
	}
}

static const struct smtp_client_cb client_cb = {
	.ready = cb_ready,
	.rcpt_done = cb_rcpt_done,
	.message_done = cb_message_done,
	.failed = cb_failed,
};

/* ---- connecting ------------------------------------------------------ */

static void
conn_connect(struct dl_conn *c)
{
	struct dl_dest *ds = c->dest;
	struct dl_target *t = &ds->targets[c->target];
	struct io_uring_sqe *sqe;
	int one = 1;

	snprintf(c->host, sizeof(c->host), "%s", t->host);
	if (t->sa.ss_family == AF_UNIX) {
		snprintf(c->addr, sizeof(c->addr), "%s",
		    ((struct sockaddr_un *)&t->sa)->sun_path);
	} else {
		char a[INET6_ADDRSTRLEN];
		const void *p = t->sa.ss_family == AF_INET ?
		    (const void *)&((struct sockaddr_in *)&t->sa)->sin_addr :
		    (const void *)&((struct sockaddr_in6 *)&t->sa)->sin6_addr;

		inet_ntop(t->sa.ss_family, p, a, sizeof(a));
		snprintf(c->addr, sizeof(c->addr),
		    t->sa.ss_family == AF_INET ? "%s:%u" : "[%s]:%u", a,
		    ds->route->transport.port ? ds->route->transport.port :
		    ROUTE_PORT_SMTP);
	}
	c->sa = t->sa;
	c->salen = t->salen;
	dl_conn_addr_set(c);
	if (c->fd >= 0)
		close(c->fd);
	c->fd = socket(t->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		/* As a failed connect: next target, else the dest waits. */
		dl_handle_connect(c, -errno);
		return;
	}
	if (t->sa.ss_family != AF_UNIX)
		setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	sqe = uring_get_sqe(c->d->ring);
	io_uring_prep_connect(sqe, c->fd, (struct sockaddr *)&t->sa, t->salen);
	io_uring_sqe_set_data64(sqe, dl_cud(OP_CONNECT, c));
	c->inflight++;
	c->deadline_ms = c->d->now_ms + c->d->cfg->delivery->connect_timeout_ms;
}

/* false when no connection could be started (the caller stops trying). */
bool
dl_conn_open(struct deliver *d, struct dl_dest *ds, unsigned first)
{
	struct dl_conn *c;
	uint32_t i = d->free_head;

	if (!dl_conn_slot_free(d) || first >= ds->ntargets)
		return false;
	/* After a 421, new connections wait a little (deliver_health.c). */
	if (first == 0 && !dl_health_may_open(d, ds))
		return false;
	if (i != UINT32_MAX) {
		c = &d->conns[i];
		d->free_head = c->next_free;
	} else {
		c = &d->conns[d->conn_hw++];
		c->d = d;
		c->fd = -1;
	}
	d->nactive++;
	c->in_use = true;
	c->connected = c->closing = c->idle = c->timed_out = false;
	c->yielding = false;
	c->starting = true;
	c->recv_armed = c->send_armed = false;
	c->inflight = 0;
	c->fd = -1;
	c->dest = ds;
	c->target = first;
	c->msgs = 0;
	c->tx_off = 0;
	c->fail_code = 0;
	ds->nconn++;
	ds->nstarting++;
	conn_connect(c);
	return c->in_use && c->dest == ds && !c->closing;
}

void
dl_handle_connect(struct dl_conn *c, int res)
{
	struct dl_dest *ds = c->dest;

	if (c->closing)
		return;
	if (c->timed_out) {
		c->timed_out = false;
		if (res == -ECANCELED || res == 0)
			res = -ETIMEDOUT;
	}
	if (res < 0) {
		log_info("deliver: connect to %s[%s]: %s", c->host, c->addr,
		    strerror(-res));
		if (c->target + 1 < ds->ntargets) {
			c->target++;
			conn_connect(c);
			return;
		}
		if (ds->nconn > 1) {
			/* Others are up or on their way: in proportion. */
			dl_health_soft(c->d, ds);
		} else {
			char text[600];

			snprintf(text, sizeof(text),
			    "connect to %s[%s]: %s", c->host, c->addr,
			    strerror(-res));
			dl_health_down(c->d, ds);
			dl_dest_fail_ready(c->d, ds, 451, "4.4.1", text, NULL);
		}
		dl_conn_close(c);
		return;
	}
	c->connected = true;
	smtp_client_init(&c->cli, &ds->ccfg, &client_cb, c);
	dl_tls_conn_start(c);
	dl_conn_deadline(c);
	dl_conn_flush(c);
	if (smtp_client_closed(&c->cli)) {
		dl_conn_close(c);
		return;
	}
	arm_orecv(c);
}

/*
 * The deadline passed (deliver_tick()). A handshake that never ends is a
 * TLS failure (under "may", plaintext next), whatever the client waited
 * for: with implicit TLS it still waits for the greeting.
 */
void
dl_conn_timeout(struct dl_conn *c)
{
	if (c->tls != NULL && !c->tls_up)
		smtp_client_tls_failed(&c->cli, "timed out");
	else
		smtp_client_timeout(&c->cli);
}

void
dl_handle_orecv(struct dl_conn *c, int res)
{
	enum smtp_client_event ev;

	c->recv_armed = false;
	if (c->closing)
		return;
	if (res <= 0) {
		if (c->tls != NULL && !c->tls_up)
			smtp_client_tls_failed(&c->cli, res == 0 ? "the remote "
			    "host closed the connection" : strerror(-res));
		else
			smtp_client_eof(&c->cli);
		dl_conn_close(c);
		return;
	}
	if (c->tls != NULL) {
		ev = dl_tls_input(c, c->rbuf, (size_t)res);
	} else {
		ev = smtp_client_input(&c->cli, c->rbuf, (size_t)res);
		/*
		 * 220 to STARTTLS: whatever else came in this read was sent
		 * before our ClientHello and is not TLS (RFC 3207 5): it is
		 * dropped with the rest of the read.
		 */
		if (ev == SMTP_CLIENT_EV_STARTTLS) {
			dl_tls_handshake(c);
			ev = smtp_client_closed(&c->cli) ?
			    SMTP_CLIENT_EV_CLOSE : SMTP_CLIENT_EV_NONE;
		}
	}
	if (ev == SMTP_CLIENT_EV_NONE)
		conn_pipe_more(c);
	dl_conn_flush(c);
	if (ev == SMTP_CLIENT_EV_CLOSE || smtp_client_closed(&c->cli)) {
		if (!c->send_armed)
			dl_conn_close(c);
		return;
	}
	conn_deadline_input(c);
	arm_orecv(c);
}

void
dl_handle_osend(struct dl_conn *c, int res)
{
	c->send_armed = false;
	if (c->closing)
		return;
	if (res < 0) {
		smtp_client_eof(&c->cli);
		dl_conn_close(c);
		return;
	}
	c->tx_off += (size_t)res;
	dl_conn_flush(c);
	if (!c->send_armed && smtp_client_closed(&c->cli)) {
		dl_conn_close(c);
		return;
	}
	/* All of it is out: the reply to the last command is expected now
	 * (a large message may have taken a while to send). */
	if (!c->send_armed && c->loading == NULL &&
	    smtp_client_waiting(&c->cli) != SMTP_CLIENT_WAIT_NONE)
		dl_conn_deadline(c);
}

/* ---- DNS ------------------------------------------------------------- */

void
dl_set_port(struct sockaddr_storage *sa, uint16_t port)
{
	if (sa->ss_family == AF_INET)
		((struct sockaddr_in *)sa)->sin_port = htons(port);
	else if (sa->ss_family == AF_INET6)
		((struct sockaddr_in6 *)sa)->sin6_port = htons(port);
}

/* The resolver's answer for a destination (DL_RESOLVE_FRESH_MS fresh). */
void
dl_dest_resolved(void *arg, const struct resolve_result *r)
{
	struct dl_dest *ds = arg;

	ds->resolving = false;
	ds->resolved_ms = clock_mono_ms();
	free(ds->targets);
	ds->targets = NULL;
	free(ds->dane);
	ds->dane = NULL;
	ds->ndane = 0;
	ds->ntargets = 0;
	if (r->status == RESOLVE_OK)
		dl_dest_targets(ds->d, ds, r);
	else
		dl_dest_verdict(ds, (int)r->status, r->why);
	/* Whatever waited for the answer looks again. */
	if (ds->queued > 0)
		dl_dest_run(ds->d, ds);
}

/* Fixed targets need no DNS: an address literal or a unix socket. */
bool
dl_dest_literal(struct dl_dest *ds)
{
	const struct route_transport *t = &ds->route->transport;
	struct dl_target *x;

	if (ds->literal)
		return true;
	x = calloc(1, sizeof(*x));
	if (x == NULL)
		return false;
	snprintf(x->host, sizeof(x->host), "%s", t->host);
	if (t->unix_socket) {
		struct sockaddr_un *un = (struct sockaddr_un *)&x->sa;

		un->sun_family = AF_UNIX;
		/* route.c keeps unix paths within ROUTE_PATH_MAX. */
		memcpy(un->sun_path, t->host,
		    strnlen(t->host, sizeof(un->sun_path) - 1));
		x->salen = sizeof(*un);
	} else if (inet_pton(AF_INET, t->host,
	    &((struct sockaddr_in *)&x->sa)->sin_addr) == 1) {
		x->sa.ss_family = AF_INET;
		x->salen = sizeof(struct sockaddr_in);
	} else if (inet_pton(AF_INET6, t->host,
	    &((struct sockaddr_in6 *)&x->sa)->sin6_addr) == 1) {
		x->sa.ss_family = AF_INET6;
		x->salen = sizeof(struct sockaddr_in6);
	} else {
		free(x);
		return false;
	}
	dl_set_port(&x->sa, t->port);
	free(ds->targets);
	ds->targets = x;
	ds->ntargets = 1;
	ds->literal = true;
	ds->rstatus = RESOLVE_OK;
	ds->resolved_ms = UINT64_MAX;
	return true;
}


