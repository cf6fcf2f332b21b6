/*
 * deliver_result.c - what an attempt's results become: index updates,
 * delivery log lines, a DSN for what bounced, and the retry schedule for
 * what was deferred. Also the records read back through the ring for
 * items that fail without a connection (a destination nothing can reach),
 * whose results need their envelopes.
 */
#include "deliver_int.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
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
#include "../lib/stats.h"
#include "../lib/uring.h"
#include "dsn.h"

/* ---- results: index updates, log, DSN -------------------------------- */

/*
 * A descriptor of segment seg for one read, or -1 (errno set); give it
 * back with dl_segfd_put() when the read is complete. The cache keeps
 * the segment open between reads, so a record read back costs no open,
 * dup or close: a slot is reused only when no read is in flight on it
 * (its descriptor cannot be closed, nor its number reused, under a read
 * not even submitted yet). When the segment's slot is busy with another
 * segment, this read gets a descriptor of its own, which the put closes.
 */
int
dl_segfd_get(struct deliver *d, uint64_t seg)
{
	unsigned i = (unsigned)(seg % DL_SEGFD_CACHE);
	char name[SEG_PATH_MAX];
	int fd;

	if (d->segfd[i].fd >= 0 && d->segfd[i].seg == seg) {
		d->segfd[i].refs++;
		return d->segfd[i].fd;
	}
	seg_path(seg, name, sizeof(name));
	fd = openat(d->segdir, strchr(name, '/') + 1, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || d->segfd[i].refs > 0)
		return fd;	/* -1, or one of its own */
	if (d->segfd[i].fd >= 0)
		close(d->segfd[i].fd);
	d->segfd[i].fd = fd;
	d->segfd[i].seg = seg;
	d->segfd[i].refs = 1;
	return fd;
}

void
dl_segfd_put(struct deliver *d, int fd)
{
	if (fd < 0)
		return;		/* the record came from memory */
	/* A cached descriptor is open as long as it is counted, so no
	 * descriptor of a read's own can have its number meanwhile. */
	for (unsigned i = 0; i < DL_SEGFD_CACHE; i++) {
		if (d->segfd[i].fd == fd && d->segfd[i].refs > 0) {
			d->segfd[i].refs--;
			return;
		}
	}
	close(fd);
}

/*
 * Check a record read back into buf (n bytes, or -errno): framing and
 * checksum against the item, then decode the envelope into env (pointing
 * into buf). NULL when sound, else the reason.
 */
const char *
dl_item_verify(const struct dl_item *it, const uint8_t *buf, ssize_t n,
    struct envelope *env)
{
	const struct seg_hdr *h = (const struct seg_hdr *)buf;
	struct seg_hdr chk;

	if (it->from_mem) {
		/*
		 * The bytes the accepting shard checksummed and had written
		 * (and synced) before the 250: no disk in between to check.
		 * Framing still, against the item.
		 */
		if (h->magic != SEG_MAGIC || h->qid != it->qid ||
		    h->env_len != it->mm.env_len ||
		    h->msg_len != it->mm.msg_len ||
		    h->checksum != it->mm.checksum)
			return "checksum mismatch";
		goto decode;
	}
	if (n < 0)
		return "cannot read the segment";
	if (n != (ssize_t)it->mm.rec_len)
		return "record cut short";
	if (h->magic != SEG_MAGIC || h->qid != it->qid ||
	    h->env_len != it->mm.env_len || h->msg_len != it->mm.msg_len ||
	    seg_hdr_fill(&chk, it->qid, buf + sizeof(*h), h->env_len,
	    buf + sizeof(*h) + h->env_len, h->msg_len) != h->checksum ||
	    h->checksum != it->mm.checksum)
		return "checksum mismatch";
decode:
	if (envelope_decode(buf + sizeof(*h), h->env_len, env) != 0)
		return "envelope damaged";
	return NULL;
}


/*
 * The item's record from memory, into *buf (*fd -1): a copy of the bytes
 * the accepting shard kept, whose reference the item gives up now (a
 * retry reads the spool, so a deferred item holds no memory budget). The
 * completion is a NOP with ud, so the caller's path is the same as for a
 * read. false when there is no memory for the copy: read it back.
 */
static bool
item_read_mem(struct deliver *d, struct dl_item *it, uint64_t ud, int *fd,
    uint8_t **buf)
{
	struct rbuf *r = it->rec;
	struct io_uring_sqe *sqe;

	it->rec = NULL;
	if (r->len != it->mm.rec_len || (*buf = malloc(r->len)) == NULL) {
		rbuf_put(r);
		return false;
	}
	memcpy(*buf, r->data, r->len);
	rbuf_put(r);
	*fd = -1;
	it->from_mem = true;
	stats_add(&stats_shards[d->id].read_mem, 1);
	sqe = uring_get_sqe(d->ring);
	io_uring_prep_nop(sqe);
	io_uring_sqe_set_data64(sqe, ud);
	return true;
}

/*
 * Start reading the item's record: from memory when the accepting shard
 * kept it (item_read_mem()), else back through the ring, into *buf (the
 * record's size) on *fd, from dl_segfd_get(): the completion's handler
 * gives it back with dl_segfd_put() (a no-op for -1). The completion
 * comes with ud. false when it cannot even start: the item then went to
 * dl_item_unreadable().
 */
bool
dl_item_read_start(struct deliver *d, struct dl_item *it, uint64_t ud, int *fd,
    uint8_t **buf)
{
	struct io_uring_sqe *sqe;
	const char *why = NULL;

	*buf = NULL;
	it->from_mem = false;
	if (it->rec != NULL && item_read_mem(d, it, ud, fd, buf))
		return true;
	stats_add(&stats_shards[d->id].read_back, 1);
	*fd = dl_segfd_get(d, it->mm.seg);
	if (*fd < 0)
		why = errno == ENOENT ? "segment missing" :
		    "cannot open the segment";
	else if ((*buf = malloc(it->mm.rec_len)) == NULL)
		why = "out of memory";
	if (why != NULL) {
		if (*fd >= 0)
			dl_segfd_put(d, *fd);
		*fd = -1;
		dl_item_unreadable(d, it, why);
		return false;
	}
	sqe = uring_get_sqe(d->ring);
	io_uring_prep_read(sqe, *fd, *buf, it->mm.rec_len, it->mm.offset);
	io_uring_sqe_set_data64(sqe, ud);
	return true;
}

/* The delivery log line of one recipient's result, not yet written. */
static struct dlog_entry
log_entry(const struct dl_item *it, const char *qid, const char *sender,
    const char *rcpt, enum dlog_status st, int code, const char *enh,
    const char *text, const struct dl_peer *peer, uint64_t next_us,
    const char *dsn_qid)
{
	uint64_t now = clock_real_us();
	struct dlog_entry e = {
		.time_us = now,
		.queue_id = qid,
		.sender = sender,
		.rcpt = rcpt,
		.destination = it->dest != NULL ? it->dest->key : it->domain,
		.transport = it->route->transport.kind == ROUTE_LMTP ? "lmtp" :
		    it->route->transport.kind == ROUTE_DISCARD ? "discard" :
		    "smtp",
		.mx = peer != NULL ? peer->mx : NULL,
		.addr = peer != NULL ? peer->addr : NULL,
		.tls = peer != NULL ? peer->tls : NULL,
		.tls_verify = peer != NULL ? peer->tls_verify : NULL,
		.tls_policy = it->dest != NULL ?
		    dl_sts_policy_name(it->dest, peer != NULL ? peer->mx :
		    NULL) : NULL,
		.tls_auth = peer != NULL ? peer->tls_auth : NULL,
		.tlsa = peer != NULL ? peer->tlsa : NULL,
		.status = st,
		.code = code,
		.enhanced = enh,
		.text = text,
		.attempt = it->attempts,
		.delay_s = now > it->arrival_us ?
		    (double)(now - it->arrival_us) / 1e6 : 0,
		.next_try_us = next_us,
		.dsn_queue_id = dsn_qid,
		.size = it->mm.msg_len,
	};

	return e;
}

/* One recipient's result: written to the log and counted. */
static void
log_line(struct deliver *d, const struct dl_item *it, const char *sender,
    const char *rcpt, enum dlog_status st, int code, const char *enh,
    const char *text, const struct dl_peer *peer, uint64_t next_us,
    const char *dsn_qid)
{
	char qid[QUEUE_ID_LEN + 1];
	struct dlog_entry e;
	uint64_t now = clock_real_us();

	queue_id_format(it->qid, qid);
	e = log_entry(it, qid, sender, rcpt, st, code, enh, text, peer,
	    next_us, dsn_qid);
	if (dlog_format(&d->logbuf, &e) != 0)
		log_warn("deliver: cannot format a log line");
	dl_stats_line(d, it->dest, st, code, text,
	    now > it->arrival_us ? now - it->arrival_us : 0);
}

/*
 * The failures of an item that is part of a pass, held for the pass's one
 * DSN (and the item settled): the report copies the bounced updates (the
 * ups[i] with state RCPT_BOUNCED, which the caller then leaves out of its
 * own), their DSN blocks and their log lines, written when the DSN is
 * queued. false when they cannot be held (no room, no memory): they go
 * out now, as for an item alone.
 */
static bool
hold_failures(struct deliver *d, struct dl_item *it, uint16_t n,
    const struct queue_update *ups, const enum dlog_status *sts,
    const uint16_t *ridx, const struct dl_rres *res,
    const struct dsn_rcpt *bounced, size_t nb, const uint8_t *rec,
    const struct envelope *env, const struct dl_peer *peer, bool expired)
{
	struct queue_update *bu = calloc(nb, sizeof(*bu));
	struct dlog_entry *le = calloc(nb, sizeof(*le));
	char qid[QUEUE_ID_LEN + 1], from[600];
	struct dl_bounce *b = NULL;
	size_t k = 0;

	if (bu != NULL && le != NULL && dl_pass_room(d)) {
		struct dl_bounce_src src = {
			.qid = it->qid,
			.arrival_us = it->arrival_us,
			.expired = expired,
			.max_age_days = it->route->policy.max_age_s / 86400,
			.n = (uint32_t)nb,
			.rcpt = bounced,
			.ups = bu,
			.log = le,
			.sender = env->sender,
			.received_from = from,
			.orig = rec + sizeof(struct seg_hdr) + it->mm.env_len,
			.orig_len = it->mm.msg_len,
		};

		queue_id_format(it->qid, qid);
		snprintf(from, sizeof(from), "%s ([%s])", env->helo,
		    env->client_addr);
		for (uint16_t i = 0; i < n; i++) {
			const struct dl_rres *r = &res[it->redirect ? 0 : i];

			if (ups[i].state != RCPT_BOUNCED)
				continue;
			assert(k < nb);
			bu[k] = ups[i];
			le[k] = log_entry(it, qid, env->sender,
			    env->rcpt[ridx[i]], sts[i], r->code,
			    sts[i] == DLOG_EXPIRED ? "4.4.7" : r->enhanced,
			    r->text, peer, 0, NULL);
			k++;
		}
		assert(k == nb);
		b = dl_bounce_new(d, &src);
	}
	free(bu);
	free(le);
	if (b == NULL)
		return false;
	dl_pass_settle(d, it, b);
	return true;
}

/*
 * The reply kept for the operator: one line, control characters as
 * spaces, cut to fit (sluicectl queue list shows it, --reason searches it).
 */
static void
reply_text(char out[QUEUE_REPLY_MAX], const char *text)
{
	size_t i = 0;

	for (; text != NULL && text[i] != '\0' && i < QUEUE_REPLY_MAX - 1; i++)
		out[i] = (unsigned char)text[i] < 0x20 ||
		    text[i] == 0x7f ? ' ' : text[i];
	out[i] = '\0';
}

/*
 * The outcome of one attempt of an item: res[i] is recipient i's reply
 * (i indexes it->rcpt; with redirect, res[0] stands for all). rec and env
 * are the loaded record (NULL when it could not be read: then no DSN).
 * Writes the index updates (with a DSN if anything bounced), the log
 * lines, and requeues what was deferred. Takes the item.
 */
void
dl_item_done(struct deliver *d, struct dl_item *it, const struct dl_rres *res,
    const uint8_t *rec, const struct envelope *env, const struct dl_peer *peer)
{
	const struct route_policy *pol = &it->route->policy;
	uint64_t now_us = clock_real_us();
	bool expired = now_us > it->arrival_us &&
	    (now_us - it->arrival_us) / 1000000u >= pol->max_age_s;
	uint16_t attempts = (uint16_t)(it->attempts < UINT16_MAX ?
	    it->attempts + 1 : UINT16_MAX);
	uint32_t delay_s = route_retry_delay(&pol->retry, attempts);
	uint64_t next_us = now_us + (uint64_t)delay_s * 1000000u;
	struct queue_update *ups;
	enum dlog_status *sts;
	uint16_t *ridx;			/* the recipients as they came in */
	struct dsn_rcpt *bounced = NULL;
	size_t nb = 0;
	char dsnq[QUEUE_ID_LEN + 1] = "";
	const char *sender = env != NULL ? env->sender : NULL;
	uint16_t n = it->nrcpt, keep = 0;
	bool held = false;
	bool give_up = (pol->max_attempts != 0 && attempts >= pol->max_attempts)
	    || expired;

	it->attempts = attempts;
	ups = calloc(n, sizeof(*ups));
	sts = calloc(n, sizeof(*sts));
	ridx = malloc(n * sizeof(*ridx));
	if (env != NULL && sender[0] != '\0')
		bounced = calloc(n, sizeof(*bounced));
	if (ups == NULL || sts == NULL || ridx == NULL) {
		log_warn("deliver: out of memory recording results");
		free(bounced);
		free(ups);
		free(sts);
		free(ridx);
		dl_item_free(d, it);
		return;
	}
	memcpy(ridx, it->rcpt, n * sizeof(*ridx));
	for (uint16_t i = 0; i < n; i++) {
		const struct dl_rres *r = &res[it->redirect ? 0 : i];
		const char *rcpt = env != NULL ? env->rcpt[it->rcpt[i]] : "";
		struct queue_update *u = &ups[i];
		enum dlog_status st;

		u->kind = QUEUE_UPD_RCPT;
		u->qid = it->qid;
		u->idx = it->rcpt[i];
		u->attempts = attempts;
		u->last_code = (uint32_t)r->code;
		if (r->code >= 400)
			reply_text(u->text, r->text);
		if (r->code >= 200 && r->code < 300) {
			u->state = RCPT_DELIVERED;
			st = DLOG_DELIVERED;
		} else if (r->code >= 500 || give_up) {
			u->state = RCPT_BOUNCED;
			st = r->code < 500 && expired ? DLOG_EXPIRED :
			    DLOG_BOUNCED;
			if (bounced != NULL) {
				struct dsn_rcpt *b = &bounced[nb++];

				b->addr = rcpt;
				b->status = r->code >= 500 ? r->enhanced :
				    expired ? "4.4.7" : r->enhanced;
				if (!dsn_status_valid(b->status))
					b->status = r->code >= 500 ? "5.0.0" :
					    "4.0.0";
				b->remote_mta = peer != NULL ? peer->mx : NULL;
				b->diagnostic = r->text;
				b->last_attempt_us = now_us;
			}
		} else {
			u->state = RCPT_PENDING;
			u->next_try_us = next_us;
			st = DLOG_DEFERRED;
			it->rcpt[keep++] = it->rcpt[i];
		}
		sts[i] = st;
	}
	/* An item the operator held or deleted meanwhile reports at once,
	 * as it always did: its pass's held failures were dropped. */
	if (nb > 0 && it->pass != NULL && !it->dropped &&
	    hold_failures(d, it, n, ups, sts, ridx, res, bounced, nb, rec, env,
	    peer, expired)) {
		/* Held for the pass's one DSN, which writes them. */
		held = true;
		nb = 0;
	}
	if (nb > 0) {
		/* One DSN for what bounced this attempt, with the updates. */
		struct buf msg = { 0 };
		char qid[QUEUE_ID_LEN + 1], from[600];
		struct dsn_info info = {
			.reporting_mta = d->cfg->hostname,
			.queue_id = qid,
			.arrival_us = it->arrival_us,
			.now_us = now_us,
			.sender = sender,
			.received_from = from,
			.expired = expired,
			.max_age_days = pol->max_age_s / 86400,
		};
		const uint8_t *orig = rec + sizeof(struct seg_hdr) +
		    it->mm.env_len;

		queue_id_format(it->qid, qid);
		snprintf(from, sizeof(from), "%s ([%s])", env->helo,
		    env->client_addr);
		if (dsn_build(&info, bounced, nb, orig, it->mm.msg_len,
		    &msg) == 0) {
			uint64_t dq = d->host->queue_dsn(d->host_ctx, sender, &msg, ups,
			    n);

			if (dq != 0) {
				queue_id_format(dq, dsnq);
				ups = NULL;	/* the DSN's job owns them */
				log_info("%s: sender non-delivery "
				    "notification: %s", qid, dsnq);
			}
		}
		if (ups != NULL) {
			/* No DSN, no bounce: those try again later. */
			for (uint16_t i = 0; i < n; i++)
				if (ups[i].state == RCPT_BOUNCED) {
					ups[i].state = RCPT_PENDING;
					ups[i].next_try_us = next_us;
					sts[i] = DLOG_DEFERRED;
					it->rcpt[keep++] = ups[i].idx;
				}
		}
		if (ups != NULL)
			log_warn("%s: cannot queue a DSN now", qid);
		buf_free(&msg);
	}
	/* Logged once the DSN (if any) has its queue id. */
	for (uint16_t i = 0; i < n; i++) {
		const struct dl_rres *r = &res[it->redirect ? 0 : i];
		const char *rcpt = env != NULL ? env->rcpt[ridx[i]] : "";

		if (held && ups[i].state == RCPT_BOUNCED) {
			dl_stats_line(d, it->dest, sts[i], r->code, r->text,
			    now_us > it->arrival_us ? now_us - it->arrival_us :
			    0);
			continue;
		}
		log_line(d, it, sender, rcpt, sts[i], r->code,
		    sts[i] == DLOG_EXPIRED ? "4.4.7" : r->enhanced, r->text,
		    peer, sts[i] == DLOG_DEFERRED ? next_us : 0,
		    sts[i] == DLOG_BOUNCED || sts[i] == DLOG_EXPIRED ?
		    (dsnq[0] ? dsnq : NULL) : NULL);
	}
	free(sts);
	free(ridx);
	if (ups != NULL && held) {
		/* The pass's DSN writes the bounced ones. */
		uint16_t k = 0;

		for (uint16_t i = 0; i < n; i++)
			if (ups[i].state != RCPT_BOUNCED)
				ups[k++] = ups[i];
		n = k;
	}
	if (ups != NULL && n > 0)
		d->host->submit_updates(d->host_ctx, ups, n);
	else
		free(ups);
	free(bounced);
	if (it->pass != NULL)
		dl_pass_settle(d, it, NULL);
	if (keep > 0 && !it->dropped) {
		d->nrcpts -= it->nrcpt - keep;
		it->nrcpt = keep;
		it->due_ms = d->now_ms + (uint64_t)delay_s * 1000u;
		dl_item_schedule(d, it);
	} else {
		dl_item_free(d, it);
	}
}

/* As dl_item_done(), with the same reply for every recipient. */
void
dl_item_done_all(struct deliver *d, struct dl_item *it, int code,
    const char *enh, char *text, const uint8_t *rec,
    const struct envelope *env, const struct dl_peer *peer)
{
	struct dl_rres *rr = calloc(it->nrcpt ? it->nrcpt : 1, sizeof(*rr));

	if (rr == NULL) {
		dl_item_unreadable(d, it, "out of memory");
		return;
	}
	for (uint16_t i = 0; i < (it->nrcpt ? it->nrcpt : 1); i++) {
		rr[i].code = code;
		snprintf(rr[i].enhanced, sizeof(rr[i].enhanced), "%s", enh);
		rr[i].text = text;
	}
	dl_item_done(d, it, rr, rec, env, peer);
	free(rr);
}

/*
 * The record could not be read back. Damage (checksum, envelope) is for
 * recovery to quarantine: the item waits for a restart. Anything else
 * (no descriptor, memory, I/O) is tried again in a minute.
 */
void
dl_item_unreadable(struct deliver *d, struct dl_item *it, const char *why)
{
	char qid[QUEUE_ID_LEN + 1];
	bool damaged = strcmp(why, "checksum mismatch") == 0 ||
	    strcmp(why, "envelope damaged") == 0 ||
	    strcmp(why, "segment missing") == 0;

	queue_id_format(it->qid, qid);
	log_warn("%s: cannot read the message back: %s%s", qid, why,
	    damaged ? "; left for recovery at the next start" :
	    "; trying again in a minute");
	if (damaged) {
		dl_item_free(d, it);
		return;
	}
	it->due_ms = d->now_ms + 60000;
	dl_item_schedule(d, it);
}

/* A free slot in d->freads (grown as needed), or UINT32_MAX. */
static uint32_t
fread_slot(struct deliver *d)
{
	uint32_t i, cap;
	struct dl_fread **n;

	for (i = 0; i < d->freads_cap; i++)
		if (d->freads[i] == NULL)
			return i;
	cap = d->freads_cap ? d->freads_cap * 2 : 16;
	if (cap > URING_UD_IDX(UINT64_MAX) ||
	    (n = realloc(d->freads, cap * sizeof(*n))) == NULL)
		return UINT32_MAX;
	memset(n + d->freads_cap, 0, (cap - d->freads_cap) * sizeof(*n));
	d->freads = n;
	i = d->freads_cap;
	d->freads_cap = cap;
	return i;
}

static void fread_begin(struct deliver *d, struct dl_item *it, int code,
    const char *enh, const char *text, struct dl_peer_buf *peer);

/* A copy of p that outlives its connection (NULL for none, or no memory). */
static struct dl_peer_buf *
peer_copy(const struct dl_peer *p)
{
	struct dl_peer_buf *b;

	if (p == NULL || (b = malloc(sizeof(*b))) == NULL)
		return NULL;
	snprintf(b->mx, sizeof(b->mx), "%s", p->mx ? p->mx : "");
	snprintf(b->addr, sizeof(b->addr), "%s", p->addr ? p->addr : "");
	snprintf(b->tls, sizeof(b->tls), "%s", p->tls ? p->tls : "");
	snprintf(b->tls_verify, sizeof(b->tls_verify), "%s",
	    p->tls_verify ? p->tls_verify : "");
	snprintf(b->tls_auth, sizeof(b->tls_auth), "%s",
	    p->tls_auth ? p->tls_auth : "");
	snprintf(b->tlsa, sizeof(b->tlsa), "%s", p->tlsa ? p->tlsa : "");
	return b;
}

static const struct dl_peer *
peer_view(const struct dl_peer_buf *b, struct dl_peer *p)
{
	if (b == NULL)
		return NULL;
	p->mx = b->mx[0] ? b->mx : NULL;
	p->addr = b->addr[0] ? b->addr : NULL;
	p->tls = b->tls[0] ? b->tls : NULL;
	p->tls_verify = b->tls_verify[0] ? b->tls_verify : NULL;
	p->tls_auth = b->tls_auth[0] ? b->tls_auth : NULL;
	p->tlsa = b->tlsa[0] ? b->tlsa : NULL;
	return p;
}

/*
 * Every recipient of the item gets the same reply; peer: the session
 * that failed so, or NULL (no connection).
 */
void
dl_item_fail_all(struct deliver *d, struct dl_item *it, int code,
    const char *enh, const char *text, const struct dl_peer *peer)
{
	struct dl_fwait *w;
	size_t tl;

	if (d->nfreads < DL_FREADS_MAX && d->fwait_head == NULL) {
		fread_begin(d, it, code, enh, text, peer_copy(peer));
		return;
	}
	tl = strlen(text);
	if ((w = malloc(sizeof(*w) + tl + 1)) == NULL) {
		dl_item_unreadable(d, it, "out of memory");
		return;
	}
	w->next = NULL;
	w->it = it;
	w->peer = peer_copy(peer);
	w->code = code;
	snprintf(w->enhanced, sizeof(w->enhanced), "%s", enh);
	memcpy(w->text, text, tl + 1);
	*d->fwait_tail = w;
	d->fwait_tail = &w->next;
}

/* Start the waiting ones while there are slots. */
static void
fwait_run(struct deliver *d)
{
	struct dl_fwait *w;

	while (d->nfreads < DL_FREADS_MAX && (w = d->fwait_head) != NULL) {
		if ((d->fwait_head = w->next) == NULL)
			d->fwait_tail = &d->fwait_head;
		fread_begin(d, w->it, w->code, w->enhanced, w->text, w->peer);
		free(w);
	}
}

/* Read the item's record back through the ring; dl_handle_fread() goes on. */
static void
fread_begin(struct deliver *d, struct dl_item *it, int code,
    const char *enh, const char *text, struct dl_peer_buf *peer)
{
	struct dl_fread *f = calloc(1, sizeof(*f));
	uint32_t slot = f != NULL ? fread_slot(d) : UINT32_MAX;

	if (f == NULL || slot == UINT32_MAX ||
	    (f->text = strdup(text)) == NULL) {
		free(f);
		free(peer);
		dl_item_unreadable(d, it, "out of memory");
		return;
	}
	f->gen = ++d->fread_gen;
	if (!dl_item_read_start(d, it, uring_ud(OP_FREAD, slot, f->gen), &f->fd,
	    &f->buf)) {
		free(f->text);
		free(f);
		free(peer);
		return;
	}
	f->peer = peer;
	f->it = it;
	f->code = code;
	snprintf(f->enhanced, sizeof(f->enhanced), "%s", enh);
	d->freads[slot] = f;
	d->nfreads++;
}

/* dl_item_fail_all()'s read came back (res bytes or -errno): the results. */
void
dl_handle_fread(struct deliver *d, uint64_t ud, int res)
{
	uint32_t slot = URING_UD_IDX(ud);
	struct dl_fread *f;
	struct envelope env = { 0 };
	struct dl_peer pv;
	const char *why;

	assert(slot < d->freads_cap && d->freads[slot] != NULL &&
	    d->freads[slot]->gen == URING_UD_GEN(ud));
	f = d->freads[slot];
	d->freads[slot] = NULL;
	d->nfreads--;
	dl_segfd_put(d, f->fd);
	if (f->it->dropped)
		dl_item_free(d, f->it);	/* held or deleted: no results */
	else if ((why = dl_item_verify(f->it, f->buf, res, &env)) != NULL)
		dl_item_unreadable(d, f->it, why);
	else
		dl_item_done_all(d, f->it, f->code, f->enhanced, f->text,
		    f->buf, &env, peer_view(f->peer, &pv));
	envelope_release(&env);
	free(f->buf);
	free(f->text);
	free(f->peer);
	free(f);
	fwait_run(d);
}

/* Defer (or bounce, if 5xx) every ready item of a destination. */
void
dl_dest_fail_ready(struct deliver *d, struct dl_dest *ds, int code,
    const char *enh, const char *text, const struct dl_peer *peer)
{
	struct dl_item *it;

	while ((it = dl_dest_pop(ds)) != NULL)
		dl_item_fail_all(d, it, code, enh, text, peer);
}

/* The rate bucket: max_rate tokens a second, at most a second's worth. */
void
dl_dest_refill(struct deliver *d, struct dl_dest *ds)
{
	double rate = ds->route->policy.max_rate;

	if (rate <= 0)
		return;
	ds->tokens += (double)(d->now_ms - ds->tokens_ms) * rate / 1000.0;
	ds->tokens_ms = d->now_ms;
	if (ds->tokens > (rate < 1 ? 1 : rate))
		ds->tokens = rate < 1 ? 1 : rate;
}

