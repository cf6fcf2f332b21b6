/*
 * deliver_bounce.c - one DSN for the failures of one delivery pass of a
 * message, whichever shards its destinations belong to.
 *
 * Purpose: a message with recipients at several destinations becomes one
 * item per destination, each on its destination's shard, and each item
 * learns its results alone. Sending a DSN per item would give the sender
 * one bounce per failing domain; Postfix and OpenSMTPD send one listing
 * every failed recipient. So the items of one dispatch share a struct
 * dl_pass: an item that settles failures pushes a report of them (the DSN
 * recipient blocks, their index updates, their delivery log lines, the
 * original's header section) onto the pass, and the last item of the pass
 * to settle takes every report and sends one DSN. A pass is one dispatch
 * of the message: when it is accepted, put back at start, released from
 * hold, or brought back from the parked table; an item's first attempt
 * (or its end without one: dropped, parked) settles it, and later retries
 * of a deferred item are not part of the pass.
 *
 * Contract: no locks. The pass is shared by the shards of its items
 * through atomics only: `held` is a lock-free stack of reports, `inflight`
 * the items not yet settled, `refs` the items and waiters still holding
 * it (the last to let go frees it). A shard that pushed a report and was
 * not the last keeps a waiter (its own list, its own thread): when the
 * pass's stack is found empty the report went out with another shard's
 * DSN and the waiter goes; when delivery.bounce_wait has passed (a slow
 * destination keeps an item in flight) the waiter takes whatever the stack
 * holds and sends that as a DSN, so no failure notice waits longer than
 * the bound. Reports that arrive after that go out with the pass's last
 * item, or their own waiter's deadline.
 *
 * Durability: a held failure is in memory only. The index still holds
 * its recipients as pending, and their bounce is written in the one index
 * write that queues the DSN (as for any DSN, queue_dsn()). A crash while a
 * failure is held loses nothing: the recipients are tried again after the
 * restart, fail again and are reported then. Nothing is reported twice
 * except in the window every DSN has: between the DSN's record being
 * synced (and maybe delivered) and the index write of its bounces.
 *
 * Memory: a shard keeps at most DL_BOUNCE_WAITERS waiters and
 * DL_BOUNCE_BYTES of reports it pushed; beyond either an item's failures
 * go out at once in a DSN of their own, as before.
 */
#include "deliver_int.h"

#include <assert.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/clock.h"
#include "../lib/log.h"
#include "dsn.h"

struct dl_pass {
	_Atomic uint32_t refs;
	_Atomic uint32_t inflight;
	_Atomic(struct dl_bounce *) held;
};

/* One settled item's failures, waiting for the rest of its pass. */
struct dl_bounce {
	struct dl_bounce *next;
	uint64_t qid;
	uint64_t arrival_us;
	unsigned owner;			/* the shard that settled them */
	bool expired;
	unsigned max_age_days;
	uint32_t n;
	struct dsn_rcpt *rcpt;		/* n of each */
	struct queue_update *ups;
	struct dlog_entry *log;
	const char *sender;
	const char *received_from;
	const uint8_t *hdr;		/* the original's header section */
	size_t hdr_len;
	size_t bytes;			/* the whole allocation */
	char *arena, *end;		/* strings, after the arrays */
};

/* A pass this shard pushed a report onto, until it is seen sent. */
struct dl_bounce_wait {
	struct dl_bounce_wait *next;
	struct dl_pass *pass;
	uint64_t qid;
	uint64_t deadline_ms;
	size_t bytes;
};

struct dl_pass *
dl_pass_new(uint32_t items)
{
	struct dl_pass *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	assert(items >= 2);
	atomic_init(&p->refs, items);
	atomic_init(&p->inflight, items);
	atomic_init(&p->held, NULL);
	return p;
}

static void
bounce_free_list(struct dl_bounce *b)
{
	while (b != NULL) {
		struct dl_bounce *next = b->next;

		free(b);
		b = next;
	}
}

static void
pass_put(struct dl_pass *p)
{
	if (atomic_fetch_sub(&p->refs, 1) != 1)
		return;
	/* Every item settled, and the last one took the stack. */
	bounce_free_list(atomic_exchange(&p->held, NULL));
	free(p);
}

/* ---- reports --------------------------------------------------------- */

/* Copy s into b's arena (NULL stays NULL). */
static const char *
arena_dup(struct dl_bounce *b, const char *s)
{
	size_t n;
	char *p;

	if (s == NULL)
		return NULL;
	n = strlen(s) + 1;
	assert(b->arena + n <= b->end);
	p = memcpy(b->arena, s, n);
	b->arena += n;
	return p;
}

static size_t
slen(const char *s)
{
	return s != NULL ? strlen(s) + 1 : 0;
}

/* The header section of msg: up to and with its empty line, bounded. */
static size_t
header_len(const uint8_t *msg, size_t len)
{
	size_t max = len < DSN_HEADERS_MAX + DSN_LINE_MAX + 4 ? len :
	    DSN_HEADERS_MAX + DSN_LINE_MAX + 4;

	if (max > 0 && (msg[0] == '\n' || (msg[0] == '\r' && max > 1 &&
	    msg[1] == '\n')))
		return 0;	/* no header section at all */
	for (size_t i = 0; i + 1 < max; i++)
		if (msg[i] == '\n' && (msg[i + 1] == '\n' ||
		    (msg[i + 1] == '\r' && i + 2 < max && msg[i + 2] == '\n')))
			return i + 1;
	return max;
}

struct dl_bounce *
dl_bounce_new(struct deliver *d, const struct dl_bounce_src *src)
{
	size_t hl = header_len(src->orig, src->orig_len);
	size_t sz = sizeof(struct dl_bounce), strs = 0;
	struct dl_bounce *b;

	for (uint32_t i = 0; i < src->n; i++) {
		const struct dsn_rcpt *r = &src->rcpt[i];
		const struct dlog_entry *e = &src->log[i];

		strs += slen(r->addr) + slen(r->orig_rcpt) + slen(r->status) +
		    slen(r->remote_mta) + slen(r->diagnostic);
#define ENTRY_LEN(f) strs += slen(e->f);
		DLOG_ENTRY_STRINGS(ENTRY_LEN)
#undef ENTRY_LEN
	}
	strs += slen(src->sender) + slen(src->received_from) + hl;
	sz += src->n * (sizeof(struct dsn_rcpt) + sizeof(struct queue_update) +
	    sizeof(struct dlog_entry)) + strs;
	if ((b = calloc(1, sz)) == NULL)
		return NULL;
	b->bytes = sz;
	b->qid = src->qid;
	b->arrival_us = src->arrival_us;
	b->owner = d->id;
	b->expired = src->expired;
	b->max_age_days = src->max_age_days;
	b->n = src->n;
	b->rcpt = (struct dsn_rcpt *)(b + 1);
	b->ups = (struct queue_update *)(b->rcpt + src->n);
	b->log = (struct dlog_entry *)(b->ups + src->n);
	b->arena = (char *)(b->log + src->n);
	b->end = (char *)b + sz;
	memcpy(b->ups, src->ups, src->n * sizeof(*b->ups));
	for (uint32_t i = 0; i < src->n; i++) {
		const struct dsn_rcpt *r = &src->rcpt[i];
		const struct dlog_entry *e = &src->log[i];
		struct dsn_rcpt *br = &b->rcpt[i];
		struct dlog_entry *be = &b->log[i];

		*br = *r;
		br->addr = arena_dup(b, r->addr);
		br->orig_rcpt = arena_dup(b, r->orig_rcpt);
		br->status = arena_dup(b, r->status);
		br->remote_mta = arena_dup(b, r->remote_mta);
		br->diagnostic = arena_dup(b, r->diagnostic);
		*be = *e;
#define ENTRY_DUP(f) be->f = arena_dup(b, e->f);
		DLOG_ENTRY_STRINGS(ENTRY_DUP)
#undef ENTRY_DUP
	}
	b->sender = arena_dup(b, src->sender);
	b->received_from = arena_dup(b, src->received_from);
	assert(b->arena + hl <= b->end);
	b->hdr = memcpy(b->arena, src->orig, hl);
	b->hdr_len = hl;
	b->arena += hl;
	return b;
}

/*
 * Send one DSN for the reports of list (one message), from this shard:
 * their bounces go to the index with it, their log lines name it. When it
 * cannot be queued, the recipients wait in the parked table of the shard
 * that settled them and are tried again in a minute (the index still has
 * them pending). Takes list.
 */
static void
bounce_send(struct deliver *d, struct dl_bounce *list)
{
	struct dl_bounce *b, *rev = NULL, *next;
	struct dsn_rcpt *rc = NULL;
	struct queue_update *ups = NULL;
	struct buf msg = { 0 };
	char qid[QUEUE_ID_LEN + 1], dsnq[QUEUE_ID_LEN + 1] = "";
	uint64_t now_us = clock_real_us(), dq = 0;
	size_t n = 0, k = 0;
	bool expired = true;
	unsigned days = 0;

	for (b = list; b != NULL; b = next) {	/* in the order settled */
		next = b->next;
		b->next = rev;
		rev = b;
		n += b->n;
		expired = expired && b->expired;
		if (b->expired && b->max_age_days > days)
			days = b->max_age_days;
	}
	list = rev;
	assert(list != NULL && n > 0);
	queue_id_format(list->qid, qid);
	rc = calloc(n, sizeof(*rc));
	ups = calloc(n, sizeof(*ups));
	if (rc != NULL && ups != NULL) {
		struct dsn_info info = {
			.reporting_mta = d->cfg->hostname,
			.queue_id = qid,
			.arrival_us = list->arrival_us,
			.now_us = now_us,
			.sender = list->sender,
			.received_from = list->received_from,
			.expired = expired,
			.max_age_days = days,
		};

		for (b = list; b != NULL; b = b->next) {
			memcpy(rc + k, b->rcpt, b->n * sizeof(*rc));
			memcpy(ups + k, b->ups, b->n * sizeof(*ups));
			k += b->n;
		}
		if (dsn_build(&info, rc, n, list->hdr, list->hdr_len,
		    &msg) == 0)
			dq = d->host->queue_dsn(d->host_ctx, list->sender,
			    &msg, ups, (uint32_t)n);
		buf_free(&msg);
	}
	if (dq != 0) {
		ups = NULL;	/* the DSN's job owns them */
		queue_id_format(dq, dsnq);
		log_info("%s: sender non-delivery notification: %s (%zu "
		    "recipient(s))", qid, dsnq, n);
	} else {
		log_warn("%s: cannot queue a DSN now; %zu recipient(s) try "
		    "again in a minute", qid, n);
	}
	for (b = list; b != NULL; b = b->next)
		for (uint32_t i = 0; i < b->n; i++) {
			struct dlog_entry e = b->log[i];

			e.time_us = clock_real_us();
			if (dq != 0) {
				e.dsn_queue_id = dsnq;
			} else {
				e.status = DLOG_DEFERRED;
				e.next_try_us = e.time_us + 60000000u;
			}
			if (dlog_format(&d->logbuf, &e) != 0)
				log_warn("deliver: cannot format a log line");
		}
	if (dq == 0) {
		/* Parked with their owner, due in a minute: the feeder
		 * brings them back. */
		for (b = list; b != NULL; b = b->next) {
			struct queue_update *u = calloc(b->n, sizeof(*u));

			if (u == NULL)
				continue;	/* pending: at the next start */
			for (uint32_t i = 0; i < b->n; i++) {
				u[i].kind = QUEUE_UPD_PARK;
				u[i].qid = b->qid;
				u[i].idx = b->ups[i].idx;
				u[i].state = (uint8_t)b->owner;
				u[i].next_try_us = now_us + 60000000u;
			}
			atomic_fetch_add(&dl_feeds[b->owner].submitted, b->n);
			d->host->submit_updates(d->host_ctx, u, b->n);
		}
	}
	free(ups);
	free(rc);
	bounce_free_list(list);
}

/* ---- the pass -------------------------------------------------------- */

static void
waiter_add(struct deliver *d, struct dl_pass *p, uint64_t qid, size_t bytes)
{
	struct dl_bounce_wait *w = malloc(sizeof(*w));

	if (w == NULL) {
		/* Without a waiter, the pass's last item still sends it. */
		return;
	}
	atomic_fetch_add(&p->refs, 1);
	w->pass = p;
	w->qid = qid;
	w->bytes = bytes;
	w->deadline_ms = d->now_ms + d->cfg->delivery->bounce_wait_ms;
	w->next = d->bwait;
	d->bwait = w;
	d->nbwait++;
	d->bwait_bytes += bytes;
}

bool
dl_pass_room(const struct deliver *d)
{
	return d->cfg->delivery->bounce_wait_ms > 0 &&
	    d->nbwait < DL_BOUNCE_WAITERS && d->bwait_bytes < DL_BOUNCE_BYTES;
}

void
dl_pass_settle(struct deliver *d, struct dl_item *it, struct dl_bounce *b)
{
	struct dl_pass *p = it->pass;
	struct dl_bounce *head;

	assert(p != NULL);
	it->pass = NULL;
	if (b != NULL) {
		head = atomic_load(&p->held);
		do {
			b->next = head;
		} while (!atomic_compare_exchange_weak(&p->held, &head, b));
	}
	if (atomic_fetch_sub(&p->inflight, 1) == 1) {
		/* The last of the pass: everything reported goes now. */
		head = atomic_exchange(&p->held, NULL);
		if (head != NULL)
			bounce_send(d, head);
	} else if (b != NULL) {
		waiter_add(d, p, it->qid, b->bytes);
	}
	pass_put(p);
}

/* Forget a waiter (its pass may be freed by this). */
static void
waiter_drop(struct deliver *d, struct dl_bounce_wait **pp)
{
	struct dl_bounce_wait *w = *pp;

	*pp = w->next;
	assert(d->nbwait > 0 && d->bwait_bytes >= w->bytes);
	d->nbwait--;
	d->bwait_bytes -= w->bytes;
	pass_put(w->pass);
	free(w);
}

/*
 * From the tick (and at stop, with force): waiters whose reports went
 * with another shard's DSN go; those past their deadline (all, with
 * force) send what their pass holds.
 */
void
dl_bounce_tick(struct deliver *d, bool force)
{
	struct dl_bounce_wait **pp = &d->bwait, *w;
	struct dl_bounce *list;

	while ((w = *pp) != NULL) {
		if (atomic_load(&w->pass->held) == NULL) {
			waiter_drop(d, pp);
		} else if (force || d->now_ms >= w->deadline_ms) {
			list = atomic_exchange(&w->pass->held, NULL);
			if (list != NULL)
				bounce_send(d, list);
			waiter_drop(d, pp);
		} else {
			pp = &w->next;
		}
	}
}

/*
 * The operator deleted qid or put it on hold: its held failures are not
 * reported (held, its recipients are still pending in the index and are
 * tried again when it is released).
 */
void
dl_bounce_drop(struct deliver *d, uint64_t qid)
{
	struct dl_bounce_wait **pp = &d->bwait, *w;

	while ((w = *pp) != NULL) {
		if (w->qid == qid) {
			bounce_free_list(atomic_exchange(&w->pass->held,
			    NULL));
			waiter_drop(d, pp);
		} else {
			pp = &w->next;
		}
	}
}

/* An item leaves without settling (shut down): only its reference. */
void
dl_pass_leave(struct dl_item *it)
{
	struct dl_pass *p = it->pass;

	if (p == NULL)
		return;
	it->pass = NULL;
	atomic_fetch_sub(&p->inflight, 1);
	pass_put(p);
}

/* The shard is going: its waiters' reports are not sent. */
void
dl_bounce_free(struct deliver *d)
{
	while (d->bwait != NULL) {
		bounce_free_list(atomic_exchange(&d->bwait->pass->held, NULL));
		waiter_drop(d, &d->bwait);
	}
}
