/*
 * resolver_wire.c - the resolver's queries on the wire: one (name, type)
 * per slot, coalesced, sent over the connected UDP socket with retries,
 * moved to TCP when an answer is truncated, answered into the cache.
 * See resolver.c for the layers and the user_data layout.
 */
#include "resolver_int.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "../lib/clock.h"
#include "../lib/log.h"
#include "../lib/uring.h"

static void tcp_connect(struct resolver *r, struct rquery *q);

/* ------------------------------------------------------------------ */
/* queries                                                             */
/* ------------------------------------------------------------------ */

static struct rquery *
query_find(struct resolver *r, const char *name, uint16_t type)
{
	for (unsigned i = 0; i < RESOLVER_QUERIES_MAX; i++) {
		struct rquery *q = &r->q[i];

		if (q->used && !q->finished && q->type == type &&
		    strcmp(q->name, name) == 0)
			return q;
	}
	return NULL;
}

/* A random id that no live query uses. */
static uint16_t
query_id(struct resolver *r)
{
	uint16_t id = 0;

	for (int tries = 0; tries < 64; tries++) {
		bool clash = false;

		id = (uint16_t)rslv_rnd32(r);
		for (unsigned i = 0; i < RESOLVER_QUERIES_MAX && !clash; i++)
			clash = r->q[i].used && !r->q[i].finished &&
			    r->q[i].id == id;
		if (!clash)
			break;
	}
	return id;
}

static void
udp_send(struct resolver *r, struct rquery *q)
{
	struct io_uring_sqe *sqe;

	assert(!q->sending);
	sqe = uring_get_sqe(r->ring);
	io_uring_prep_send(sqe, r->udp_fd, q->wire + 2, q->wirelen, 0);
	io_uring_sqe_set_data64(sqe, rslv_ud_make(r, K_UDP_SEND,
	    (uint32_t)(q - r->q), q->gen));
	q->sending = true;
}

/* The retransmission timeout now; see RESOLVER_RESENDS_MAX. */
static uint64_t
udp_rto(const struct resolver *r)
{
	uint64_t rto = r->srtt_ms == 0 ? RESOLVER_RTO_INIT_MS :
	    (uint64_t)r->srtt_ms + 4u * r->rttvar_ms;

	if (rto > r->cfg.timeout_ms / 2)
		rto = r->cfg.timeout_ms / 2;
	return rto < RESOLVER_RTO_MIN_MS ? RESOLVER_RTO_MIN_MS : rto;
}

/* An answer to a query sent once: a clean round-trip sample (Karn). */
static void
rtt_sample(struct resolver *r, uint64_t rtt)
{
	uint32_t m = rtt > 60000 ? 60000 : (uint32_t)rtt;

	if (r->srtt_ms == 0) {
		r->srtt_ms = m > 0 ? m : 1;
		r->rttvar_ms = m / 2;
	} else {
		uint32_t err = m > r->srtt_ms ? m - r->srtt_ms : r->srtt_ms - m;

		r->rttvar_ms = (3 * r->rttvar_ms + err) / 4;
		r->srtt_ms = (7 * r->srtt_ms + m) / 8;
		if (r->srtt_ms == 0)
			r->srtt_ms = 1;
	}
}

/*
 * From resolver_tick(): the current try's datagram may be lost; send it
 * again when the (doubling) retransmission timeout has passed.
 */
void
rslv_udp_resend_due(struct resolver *r, struct rquery *q)
{
	if (q->tcp || q->sending || q->resends >= RESOLVER_RESENDS_MAX ||
	    r->now_ms < q->sent_ms + (udp_rto(r) << q->resends))
		return;
	q->resends++;
	udp_send(r, q);
}

/* Starts one more try over UDP. */
static void
query_try_udp(struct resolver *r, struct rquery *q)
{
	q->tries++;
	q->resends = 0;
	q->sent_ms = r->now_ms;
	q->deadline_ms = r->now_ms + r->cfg.timeout_ms;
	if (q->sending)
		q->resend = true;	/* the previous send still holds wire */
	else
		udp_send(r, q);
}

/* Frees the slot (nothing of it in flight) and starts waiting requests. */
static void
query_release(struct resolver *r, struct rquery *q)
{
	assert(q->used && q->finished && !q->sending);
	assert(q->waiters == NULL);
	q->used = false;
	assert(r->nquery > 0);
	r->nquery--;
	while (r->pend_head != NULL && r->nquery < RESOLVER_QUERIES_MAX) {
		struct pending *p = r->pend_head;

		r->pend_head = p->next;
		if (r->pend_head == NULL)
			r->pend_tail = NULL;
		rslv_submit_req(r, p->lk, p->sub, p->name, p->type);
		free(p);
	}
}

static void
tcp_close(struct resolver *r, struct tconn *c)
{
	assert(c->used && !c->inflight);
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	free(c->buf);
	c->buf = NULL;
	c->len = c->cap = 0;
	c->used = false;
	c->aborting = false;
	/* Queries waiting for a connection take the free one. */
	for (unsigned i = 0; i < RESOLVER_QUERIES_MAX; i++) {
		struct rquery *q = &r->q[i];

		if (q->used && !q->finished && q->tcp_wait) {
			tcp_connect(r, q);
			break;
		}
	}
}

/* Stops a connection whatever it is doing; its query is not told. */
void
rslv_tcp_abort(struct resolver *r, struct tconn *c)
{
	if (c->aborting)
		return;
	if (c->inflight) {
		struct io_uring_sqe *sqe = uring_get_sqe(r->ring);

		io_uring_prep_cancel64(sqe, rslv_ud_make(r, K_TCP,
		    (uint32_t)(c - r->tc), c->gen), 0);
		io_uring_sqe_set_data64(sqe, rslv_ud_make(r, K_CANCEL, 0, 0));
		c->aborting = true;
	} else {
		tcp_close(r, c);
	}
}

/*
 * The query has its outcome: cache it if it may be, tell every waiter,
 * free the slot once no send holds it. Takes e.
 */
static void
query_finish(struct resolver *r, struct rquery *q, struct centry *e)
{
	struct waiter *w = q->waiters;
	bool cached;

	assert(q->used && !q->finished);
	q->finished = true;
	q->waiters = NULL;
	if (q->tcp && q->tconn >= 0) {
		struct tconn *c = &r->tc[q->tconn];

		q->tconn = -1;
		rslv_tcp_abort(r, c);
	}
	cached = rslv_cache_put(r, e);
	while (w != NULL) {
		struct waiter *next = w->next;

		rslv_feed(r, w->lk, w->sub, e);
		free(w);
		w = next;
	}
	if (!cached)
		rslv_centry_free(e);
	if (!q->sending)
		query_release(r, q);
}

static struct centry *
centry_new(const struct rquery *q)
{
	struct centry *e = calloc(1, sizeof(*e));

	if (e == NULL)
		return NULL;
	e->type = q->type;
	memcpy(e->name, q->name, sizeof(e->name));
	return e;
}

static void
query_fail(struct resolver *r, struct rquery *q, const char *why)
{
	struct centry *e = centry_new(q);
	struct centry local;

	if (e == NULL) {
		/* Tell the waiters from the stack; rslv_cache_put refuses ttl 0. */
		memset(&local, 0, sizeof(local));
		local.type = q->type;
		memcpy(local.name, q->name, sizeof(local.name));
		e = &local;
	}
	e->kind = DNS_KIND_ERROR;
	snprintf(e->why, sizeof(e->why), "%s", why);
	if (e == &local) {
		struct waiter *w = q->waiters;

		q->finished = true;
		q->waiters = NULL;
		if (q->tcp && q->tconn >= 0) {
			rslv_tcp_abort(r, &r->tc[q->tconn]);
			q->tconn = -1;
		}
		while (w != NULL) {
			struct waiter *next = w->next;

			rslv_feed(r, w->lk, w->sub, e);
			free(w);
			w = next;
		}
		if (!q->sending)
			query_release(r, q);
		return;
	}
	query_finish(r, q, e);
}

/* A parsed answer (not truncated) to q. */
static void
query_answered(struct resolver *r, struct rquery *q,
    const struct dns_answer *a, const uint8_t *msg, size_t len)
{
	struct centry *e = centry_new(q);
	size_t each;

	if (e == NULL) {
		query_fail(r, q, "out of memory");
		return;
	}
	/* validate: the signatures are checked from the message itself. */
	if (r->cfg.dnssec == RESOLVE_DNSSEC_VALIDATE) {
		if ((e->wire = malloc(len)) == NULL) {
			free(e);
			query_fail(r, q, "out of memory");
			return;
		}
		memcpy(e->wire, msg, len);
		e->wirelen = len;
	}
	e->kind = (uint8_t)a->kind;
	e->ad = a->ad;
	e->null_mx = a->null_mx;
	e->ncname = (uint8_t)a->ncname;
	if (a->ncname > 0 && !a->chain_too_long &&
	    (a->kind == DNS_KIND_NODATA || a->kind == DNS_KIND_NXDOMAIN) &&
	    strcmp(a->name, q->name) != 0 &&
	    (e->cname = strdup(a->name)) == NULL) {
		free(e);
		query_fail(r, q, "out of memory");
		return;
	}
	switch (a->kind) {
	case DNS_KIND_DATA:
		e->ttl_s = a->ttl < RESOLVER_TTL_MAX_S ? a->ttl :
		    RESOLVER_TTL_MAX_S;
		each = q->type == DNS_T_MX ? sizeof(a->rr.mx[0]) :
		    q->type == DNS_T_TLSA ? sizeof(a->rr.tlsa[0]) :
		    sizeof(a->rr.addr[0]);
		if (a->n > 0) {
			if ((e->recs = malloc(a->n * each)) == NULL) {
				free(e);
				query_fail(r, q, "out of memory");
				return;
			}
			memcpy(e->recs, q->type == DNS_T_MX ?
			    (const void *)a->rr.mx : q->type == DNS_T_TLSA ?
			    (const void *)a->rr.tlsa : (const void *)a->rr.addr,
			    a->n * each);
			e->n = a->n;
		}
		break;
	case DNS_KIND_NODATA:
	case DNS_KIND_NXDOMAIN:
		e->ttl_s = a->ttl < RESOLVER_NEG_TTL_MAX_S ? a->ttl :
		    RESOLVER_NEG_TTL_MAX_S;
		break;
	default:
		/* SERVFAIL and friends: briefly, so a broken domain is not
		 * asked again for every message queued to it. */
		e->kind = DNS_KIND_ERROR;
		/* A validating resolver answers SERVFAIL to a DO query whose
		 * answer failed validation: bogus, as far as we can tell. */
		e->bogus = r->cfg.dnssec != RESOLVE_DNSSEC_OFF &&
		    a->rcode == 2 && !a->chain_too_long &&
		    (a->ede == DNS_EDE_NONE || dns_ede_dnssec(a->ede));
		e->ttl_s = a->chain_too_long ? 0 : RESOLVER_FAIL_TTL_S;
		if (a->chain_too_long)
			snprintf(e->why, sizeof(e->why), "CNAME chain longer "
			    "than %d", DNS_CNAME_MAX);
		else if (a->ede != DNS_EDE_NONE)
			/* RFC 8914: the resolver says why, e.g. "DNSSEC
			 * Bogus" or "Signature Expired" (unbound: ede: yes). */
			snprintf(e->why, sizeof(e->why), "%s (%s) from %s",
			    dns_rcode_name(a->rcode), dns_ede_name(a->ede),
			    r->server_text);
		else
			snprintf(e->why, sizeof(e->why), "%s from %s%s",
			    dns_rcode_name(a->rcode), r->server_text,
			    e->bogus ? " (DNSSEC validation failure?)" : "");
		break;
	}
	query_finish(r, q, e);
}

void
rslv_try_failed(struct resolver *r, struct rquery *q, int err)
{
	char why[96];

	assert(q->used && !q->finished);
	q->last_err = err;
	if (q->tries < r->cfg.attempts) {
		if (q->tcp) {
			q->tries++;
			q->deadline_ms = r->now_ms + r->cfg.timeout_ms;
			tcp_connect(r, q);
		} else {
			query_try_udp(r, q);
		}
		return;
	}
	if (err == ETIMEDOUT)
		snprintf(why, sizeof(why), "no answer from %s%s after %u "
		    "tries", r->server_text, q->tcp ? " over TCP" : "",
		    q->tries);
	else
		snprintf(why, sizeof(why), "%s%s: %s", r->server_text,
		    q->tcp ? " over TCP" : "", strerror(err));
	query_fail(r, q, why);
}

/*
 * Puts lk's rslv_request for (name, type) on its way: from the cache, onto a
 * query already in flight, a new query, or the FIFO of requests waiting
 * for a query slot. lk->outstanding already counts it.
 */
void
rslv_submit_req(struct resolver *r, struct lookup *lk, int sub, const char *name,
    uint16_t type)
{
	struct centry *e;
	struct rquery *q;
	struct waiter *w;
	uint32_t gen;
	int rc;

	if ((e = rslv_cache_get(r, name, type)) != NULL) {
		rslv_feed(r, lk, sub, e);
		return;
	}
	if ((q = query_find(r, name, type)) == NULL &&
	    r->nquery >= RESOLVER_QUERIES_MAX) {
		struct pending *p = calloc(1, sizeof(*p));

		if (p == NULL) {
			rslv_feed_local_fail(r, lk, sub, name, type,
			    "out of memory");
			return;
		}
		p->lk = lk;
		p->sub = sub;
		p->type = type;
		snprintf(p->name, sizeof(p->name), "%s", name);
		if (r->pend_tail != NULL)
			r->pend_tail->next = p;
		else
			r->pend_head = p;
		r->pend_tail = p;
		return;
	}
	if ((w = calloc(1, sizeof(*w))) == NULL) {
		rslv_feed_local_fail(r, lk, sub, name, type, "out of memory");
		return;
	}
	w->lk = lk;
	w->sub = sub;
	if (q != NULL) {
		w->next = q->waiters;
		q->waiters = w;
		return;
	}
	for (q = r->q; q->used; q++)
		assert(q < r->q + RESOLVER_QUERIES_MAX - 1);
	gen = q->gen + 1;	/* generations survive reuse */
	memset(q, 0, offsetof(struct rquery, wire));
	q->gen = gen;
	q->used = true;
	q->tconn = -1;
	q->type = type;
	snprintf(q->name, sizeof(q->name), "%s", name);
	q->id = query_id(r);
	rc = dns_query_build_flags(q->wire + 2, sizeof(q->wire) - 2, q->id,
	    name, type, r->cfg.dnssec == RESOLVE_DNSSEC_VALIDATE ? DNS_QF_CD :
	    0, &q->wirelen);
	q->waiters = w;
	r->nquery++;
	if (rc != 0) {
		query_fail(r, q, "cannot build the query");
		return;
	}
	/* RFC 1035 section 4.2.2: the TCP length prefix, ready for later. */
	q->wire[0] = (uint8_t)(q->wirelen >> 8);
	q->wire[1] = (uint8_t)q->wirelen;
	query_try_udp(r, q);
}

/* ------------------------------------------------------------------ */
/* UDP                                                                 */
/* ------------------------------------------------------------------ */

void
rslv_arm_recv(struct resolver *r)
{
	struct io_uring_sqe *sqe;

	if (r->recv_armed)
		return;
	sqe = uring_get_sqe(r->ring);
	io_uring_prep_recv(sqe, r->udp_fd, r->udp_buf, RESOLVER_UDP_BUF, 0);
	io_uring_sqe_set_data64(sqe, rslv_ud_make(r, K_UDP_RECV, 0, 0));
	r->recv_armed = true;
}

static void
udp_answer(struct resolver *r, const uint8_t *msg, size_t len)
{
	struct rquery *q = NULL;
	uint16_t id;
	int rc;

	if (dns_message_id(msg, len, &id) != 0)
		return;
	for (unsigned i = 0; i < RESOLVER_QUERIES_MAX; i++) {
		struct rquery *c = &r->q[i];

		if (c->used && !c->finished && !c->tcp && c->tries > 0 &&
		    c->id == id) {
			q = c;
			break;
		}
	}
	if (q == NULL)
		return;		/* late, duplicate or forged */
	if (q->tries == 1 && q->resends == 0 && r->now_ms >= q->sent_ms)
		rtt_sample(r, r->now_ms - q->sent_ms);
	rc = dns_answer_parse(msg, len, q->id, q->name, q->type, r->ans);
	if (rc != 0) {
		/* Not an answer to q: keep waiting for the real one. */
		log_debug("resolver: ignored a reply for %s/%s: error %d",
		    q->name, dns_type_name(q->type), rc);
		return;
	}
	if (r->ans->tc) {
		/* RFC 7766 section 5: truncated over UDP, ask over TCP. */
		q->tcp = true;
		q->resend = false;
		if (q->tries >= r->cfg.attempts)
			q->tries = r->cfg.attempts - 1;
		q->tries++;
		q->deadline_ms = r->now_ms + r->cfg.timeout_ms;
		tcp_connect(r, q);
		return;
	}
	query_answered(r, q, r->ans, msg, len);
}

/* ICMP port unreachable: every UDP query in flight lost this try. */
static void
udp_refused(struct resolver *r)
{
	for (unsigned i = 0; i < RESOLVER_QUERIES_MAX; i++) {
		struct rquery *q = &r->q[i];

		if (q->used && !q->finished && !q->tcp && q->tries > 0 &&
		    !q->sending && !q->resend)
			rslv_try_failed(r, q, ECONNREFUSED);
	}
}

void
rslv_udp_recv_done(struct resolver *r, int res)
{
	r->recv_armed = false;
	if (res > 0) {
		udp_answer(r, r->udp_buf, (size_t)res);
	} else if (res == -ECONNREFUSED) {
		udp_refused(r);
	} else if (res < 0 && res != -ECANCELED && res != -EINTR &&
	    res != -EAGAIN) {
		/* Re-arming at once could spin on a persistent error. */
		log_warn("resolver: recv from %s: %s", r->server_text,
		    strerror(-res));
		r->recv_retry = true;
		return;
	}
	rslv_arm_recv(r);
}

void
rslv_udp_send_done(struct resolver *r, struct rquery *q, int res)
{
	assert(q->used && q->sending);
	q->sending = false;
	if (q->finished) {
		query_release(r, q);
		return;
	}
	if (q->tcp)
		return;		/* moved to TCP meanwhile */
	if (q->resend) {
		q->resend = false;
		udp_send(r, q);
		return;
	}
	if (res < 0)
		rslv_try_failed(r, q, -res);
}

/* ------------------------------------------------------------------ */
/* TCP                                                                 */
/* ------------------------------------------------------------------ */

static void
tcp_submit(struct resolver *r, struct tconn *c)
{
	struct io_uring_sqe *sqe = uring_get_sqe(r->ring);
	const struct rquery *q = &r->q[c->qidx];

	switch (c->state) {
	case T_CONNECT:
		io_uring_prep_connect(sqe, c->fd,
		    (const struct sockaddr *)&r->cfg.server,
		    r->cfg.server_len);
		break;
	case T_SEND:
		io_uring_prep_send(sqe, c->fd, q->wire + c->sent,
		    q->wirelen + 2 - c->sent, MSG_NOSIGNAL);
		break;
	case T_RECV:
		io_uring_prep_recv(sqe, c->fd, c->buf + c->len,
		    c->cap - c->len, 0);
		break;
	default:
		log_panic("resolver: bad TCP state %d", (int)c->state);
	}
	io_uring_sqe_set_data64(sqe, rslv_ud_make(r, K_TCP, (uint32_t)(c - r->tc),
	    c->gen));
	c->inflight = true;
}

/* Gives q a TCP connection, or leaves it waiting for one (tconn -1). */
static void
tcp_connect(struct resolver *r, struct rquery *q)
{
	struct tconn *c = NULL;
	int fd;

	assert(q->tcp && q->tconn < 0);
	for (unsigned i = 0; i < RESOLVER_TCP_MAX && c == NULL; i++)
		if (!r->tc[i].used)
			c = &r->tc[i];
	q->tcp_wait = c == NULL;
	if (c == NULL)
		return;		/* tcp_close() starts it later */
	fd = socket(r->cfg.server.ss_family,
	    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rslv_try_failed(r, q, errno);
		return;
	}
	c->used = true;
	c->gen++;
	c->fd = fd;
	c->state = T_CONNECT;
	c->qidx = (uint32_t)(q - r->q);
	c->qgen = q->gen;
	c->sent = 0;
	c->len = 0;
	q->tconn = (int)(c - r->tc);
	tcp_submit(r, c);
}

/* The connection failed q's try. */
static void
tcp_fail(struct resolver *r, struct tconn *c, struct rquery *q, int err)
{
	q->tconn = -1;
	tcp_close(r, c);
	if (!q->finished)
		rslv_try_failed(r, q, err);
}

void
rslv_tcp_done(struct resolver *r, struct tconn *c, int res)
{
	struct rquery *q = &r->q[c->qidx];
	uint8_t *copy = NULL;
	size_t need;
	int rc;

	assert(c->used && c->inflight);
	c->inflight = false;
	if (c->aborting || !q->used || q->gen != c->qgen || q->finished ||
	    q->tconn != (int)(c - r->tc)) {
		tcp_close(r, c);
		return;
	}
	if (res < 0) {
		tcp_fail(r, c, q, -res);
		return;
	}
	switch (c->state) {
	case T_CONNECT:
		c->state = T_SEND;
		c->sent = 0;
		break;
	case T_SEND:
		c->sent += (size_t)res;
		if (c->sent < q->wirelen + 2)
			break;
		c->state = T_RECV;
		if (c->buf == NULL) {
			c->buf = malloc(RESOLVER_TCP_BUF_MIN);
			if (c->buf == NULL) {
				tcp_fail(r, c, q, ENOMEM);
				return;
			}
			c->cap = RESOLVER_TCP_BUF_MIN;
		}
		c->len = 0;
		break;
	case T_RECV:
		if (res == 0) {
			tcp_fail(r, c, q, ECONNRESET);
			return;
		}
		c->len += (size_t)res;
		if (c->len < 2)
			break;
		need = 2 + ((size_t)c->buf[0] << 8 | c->buf[1]);
		if (need > c->cap) {
			/* Bounded by the 16-bit prefix: at most 65537. */
			uint8_t *nb = realloc(c->buf, need);

			if (nb == NULL) {
				tcp_fail(r, c, q, ENOMEM);
				return;
			}
			c->buf = nb;
			c->cap = need;
		}
		if (c->len < need)
			break;
		rc = dns_answer_parse(c->buf + 2, need - 2, q->id, q->name,
		    q->type, r->ans);
		/* validate keeps the message: copied before the buffer goes. */
		if (rc == 0 && r->cfg.dnssec == RESOLVE_DNSSEC_VALIDATE &&
		    (copy = malloc(need - 2)) != NULL)
			memcpy(copy, c->buf + 2, need - 2);
		q->tconn = -1;
		tcp_close(r, c);
		if (rc != 0) {
			rslv_try_failed(r, q, EPROTO);
		} else if (r->ans->tc) {
			query_fail(r, q, "answer truncated over TCP too");
		} else if (r->cfg.dnssec == RESOLVE_DNSSEC_VALIDATE &&
		    copy == NULL) {
			query_fail(r, q, "out of memory");
		} else {
			query_answered(r, q, r->ans, copy, need - 2);
		}
		free(copy);
		return;
	default:
		log_panic("resolver: bad TCP state %d", (int)c->state);
	}
	tcp_submit(r, c);
}
