/*
 * deliver.c - scheduler and outbound connections; see deliver.h.
 *
 * Per shard:
 *   items     one message's pending recipients for one destination
 *   dests     hash table by destination key; each has a FIFO of ready
 *             items, its connections, its effective connection limit
 *             (lowered by 421s and runs of 4xx, raised again one step per
 *             delivered message), a hold-off time, and a rate bucket
 *   heap      deferred items by retry time (monotonic ms)
 *   conns     fixed slots of outbound connections; each runs one
 *             smtp_client session and carries one item at a time
 *
 * deliver_run() (every loop iteration) drains the inbox, moves due items
 * from the heap to their destination, and for each destination with
 * ready items hands them to idle connections and opens new ones up to the
 * limit. A connection that cannot be had (DNS, connect, greeting) defers
 * the destination's ready items with the error and holds the
 * destination off for a while, so a dead destination costs one attempt
 * per retry, not one per message.
 *
 * Message bytes are read back from the spool segment (and verified) when
 * an item goes out, through the ring (conn_next(), handle_oread()), and
 * so are the records of a destination that cannot be reached at all, whose
 * results need their envelopes (item_fail_all(), handle_fread()): the
 * loop never waits on the disk.
 */
#include "deliver.h"

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

#include "../proto/smtp_client.h"
#include "dsn.h"
#include "route.h"
#include "dlog.h"
#include "../lib/clock.h"
#include "../lib/log.h"
#include "resolver.h"
#include "../lib/uring.h"

#define DL_CONNS 512		/* outbound connections per shard */
#define DL_RBUF 4096
#define DL_DEST_BUCKETS 4096	/* power of two */
#define DL_RESOLVE_FRESH_MS 30000
#define DL_HOLD_MIN_MS 1000
#define DL_HOLD_MAX_MS 60000
#define DL_INITIAL_CONNS 5	/* connections a new destination starts with */
#define DL_FAIL_RUN 3		/* consecutive 4xx that slow a destination */
#define DL_SEGFD_CACHE 16
#define DL_TARGETS_MAX 32	/* addresses tried per connection */
#define DL_FREADS_MAX 64	/* records read back at a time for items
				   failing without a connection */

enum {
	OP_DNS = DELIVER_OP_BASE,
	OP_CONNECT,
	OP_ORECV,
	OP_OSEND,
	OP_OCANCEL,
	OP_OREAD,		/* a record read back for a connection */
	OP_FREAD,		/* one read back for an item failing alone */
};

struct dl_dest;

struct dl_item {
	struct dl_item *next;
	struct dl_dest *dest;		/* on the owner; NULL in transit */
	const struct route *route;
	uint64_t qid;
	struct msg_meta mm;
	uint64_t arrival_us;
	uint64_t due_ms;		/* monotonic */
	uint32_t heap_idx;
	uint16_t attempts;
	uint16_t nrcpt;
	uint8_t ctl;			/* enum deliver_ctl; 0: an item */
	uint8_t upd;			/* DELIVER_CTL_UPDATE: the kind */
	bool redirect;			/* dev_redirect: one address for all */
	bool dropped;			/* held or deleted while on a connection */
	char *domain;			/* points into the allocation */
	uint16_t rcpt[];		/* recipient indices */
};

struct dl_target {
	char host[RESOLVE_HOST_MAX + 1];
	struct sockaddr_storage sa;
	socklen_t salen;
};

struct dl_dest {
	struct dl_dest *hnext;
	struct dl_dest *rnext;		/* run list */
	bool in_run;
	char key[ROUTE_DEST_MAX + 1];
	char lookup[ROUTE_HOST_MAX + 1];	/* name to resolve */
	const struct route *route;
	struct dl_item *head, *tail;
	uint32_t queued;
	unsigned nconn, nconnecting, nidle;
	unsigned eff_max;
	unsigned fails;			/* consecutive temporary failures */
	uint64_t hold_until_ms;
	uint64_t hold_ms;
	double tokens;
	uint64_t tokens_ms;
	bool resolving;
	bool literal;			/* an address or socket: no DNS */
	uint64_t resolved_ms;		/* 0: never */
	int rstatus;			/* enum resolve_status */
	char rwhy[160];
	struct dl_target *targets;
	unsigned ntargets;
	struct smtp_client_cfg ccfg;
};

struct dl_rres {			/* one recipient's reply this attempt */
	int code;
	char enhanced[12];
	char *text;
};

struct dl_conn {
	uint32_t gen;
	bool in_use;
	bool connected;
	bool closing;
	bool idle;
	bool timed_out;		/* connect cancelled by the deadline */
	bool recv_armed, send_armed;
	uint8_t inflight;
	int fd;
	struct deliver *d;
	struct dl_dest *dest;
	unsigned target;		/* index in dest->targets */
	char host[RESOLVE_HOST_MAX + 1];
	char addr[ROUTE_PATH_MAX + 8];	/* "a.b.c.d:p", "[v6]:p", a path */
	struct smtp_client cli;
	char rbuf[DL_RBUF];
	struct buf tx;
	size_t tx_off;
	uint64_t deadline_ms;
	unsigned msgs;
	/* The item whose record is being read (then sent), and the read's
	 * own descriptor of its segment. */
	struct dl_item *loading;
	int rfd;
	/* The item being sent. */
	struct dl_item *item;
	uint8_t *rec;			/* the record, read back */
	struct envelope env;
	const char **rcpts;
	struct dl_rres *res;
	uint32_t next_free;
};

struct deliver {
	const struct deliver_host *host;
	void *host_ctx;
	struct io_uring *ring;
	unsigned id;
	const struct deliver_cfg *cfg;
	struct resolver *res;
	char resolver_err[160];
	struct dl_dest *buckets[DL_DEST_BUCKETS];
	struct dl_dest *run;		/* dests with ready items */
	struct dl_item **heap;
	uint32_t nheap, heap_cap;
	struct dl_conn *conns;
	uint32_t free_head;
	uint32_t nactive;
	struct dl_fread **freads;	/* reads for failing items, by slot */
	uint32_t freads_cap, nfreads, fread_gen;
	struct dl_fwait *fwait_head, **fwait_tail;	/* and waiting */
	bool stopping;
	uint64_t now_ms;
	struct dlog log;
	struct buf logbuf;
	int segdir;
	struct { uint64_t seg; int fd; } segfd[DL_SEGFD_CACHE];
	struct route default_route;
};

/* ---- global: owners and their inboxes ------------------------------- */

struct inbox {
	_Atomic(struct dl_item *) head;
	int efd;
} __attribute__((aligned(64)));

static struct inbox inboxes[64];
static unsigned g_nshards;
static const struct deliver_cfg *g_cfg;
static struct route g_default_route;

void
deliver_global_init(const struct deliver_cfg *cfg, unsigned nshards,
    const int *efds)
{
	g_cfg = cfg;
	g_nshards = nshards;
	for (unsigned i = 0; i < nshards; i++) {
		atomic_init(&inboxes[i].head, NULL);
		inboxes[i].efd = efds[i];
	}
	memset(&g_default_route, 0, sizeof(g_default_route));
	strcpy(g_default_route.pattern, "*");
	g_default_route.transport.kind = ROUTE_SMTP;
	g_default_route.transport.mx_lookup = true;
	g_default_route.transport.port = ROUTE_PORT_SMTP;
	g_default_route.policy = route_policy_defaults();
}

void
deliver_global_free(void)
{
	for (unsigned i = 0; i < g_nshards; i++) {
		struct dl_item *it = atomic_exchange(&inboxes[i].head, NULL);

		while (it != NULL) {
			struct dl_item *next = it->next;

			free(it);
			it = next;
		}
	}
}

static void
post(unsigned owner, struct dl_item *it)
{
	struct dl_item *head = atomic_load(&inboxes[owner].head);
	uint64_t one = 1;

	do {
		it->next = head;
	} while (!atomic_compare_exchange_weak(&inboxes[owner].head, &head,
	    it));
	if (head == NULL && write(inboxes[owner].efd, &one, sizeof(one)) < 0 &&
	    errno != EAGAIN)
		log_warn("deliver: eventfd write: %s", strerror(errno));
}

static const char *
addr_domain(const char *addr)
{
	const char *at = strrchr(addr, '@');

	return at != NULL ? at + 1 : "";
}

/*
 * The name a destination is owned and limited by: route_destination(), or
 * the domain itself for routes that have none (error:, discard).
 */
static void
dest_key(const struct route *r, const char *domain,
    char key[ROUTE_DEST_MAX + 1])
{
	if (route_destination(r, domain, key, ROUTE_DEST_MAX + 1) != 0)
		snprintf(key, ROUTE_DEST_MAX + 1, "%s", domain);
}

int
deliver_dispatch(const struct msg_meta *mm, uint64_t qid,
    const struct envelope *env, const bool *pending, uint16_t attempts,
    uint64_t next_try_us, bool *discarded)
{
	const char *redirect = g_cfg->dev_redirect;
	uint64_t now_us = clock_real_us(), now_ms = clock_mono_ms();
	uint16_t *idx;
	bool *done;
	int posted = 0;

	idx = malloc(env->nrcpt * sizeof(*idx));
	done = calloc(env->nrcpt, sizeof(*done));
	if (idx == NULL || done == NULL) {
		free(idx);
		free(done);
		return -ENOMEM;
	}
	for (uint16_t i = 0; i < env->nrcpt; i++) {
		const char *dom;
		const struct route *r;
		char key[ROUTE_DEST_MAX + 1];
		struct dl_item *it;
		uint16_t n = 0;
		size_t dlen;

		if (done[i] || (pending != NULL && !pending[i]))
			continue;
		dom = addr_domain(redirect != NULL ? redirect : env->rcpt[i]);
		r = route_lookup(g_cfg->routes, dom);
		if (r == NULL)
			r = &g_default_route;
		/* Without a caller to mark it (start-up), a discard becomes
		 * an item that its owner marks delivered. */
		if (r->transport.kind == ROUTE_DISCARD && redirect == NULL &&
		    discarded != NULL) {
			done[i] = true;
			discarded[i] = true;
			continue;
		}
		/* Everything else with the same route and domain joins. */
		for (uint16_t j = i; j < env->nrcpt; j++) {
			if (done[j] || (pending != NULL && !pending[j]))
				continue;
			if (redirect == NULL && j != i &&
			    strcasecmp(addr_domain(env->rcpt[j]), dom) != 0)
				continue;
			done[j] = true;
			idx[n++] = j;
		}
		dest_key(r, dom, key);
		dlen = strlen(dom) + 1;
		it = calloc(1, sizeof(*it) + n * sizeof(uint16_t) + dlen);
		if (it == NULL) {
			free(idx);
			free(done);
			return -ENOMEM;
		}
		it->route = r;
		it->qid = qid;
		it->mm = *mm;
		it->arrival_us = env->arrival_us;
		it->attempts = attempts;
		it->nrcpt = n;
		it->redirect = redirect != NULL;
		memcpy(it->rcpt, idx, n * sizeof(uint16_t));
		it->domain = (char *)(it->rcpt + n);
		memcpy(it->domain, dom, dlen);
		it->due_ms = next_try_us > now_us ?
		    now_ms + (next_try_us - now_us) / 1000 : 0;
		post((unsigned)(XXH3_64bits(key, strlen(key)) % g_nshards), it);
		posted++;
	}
	free(idx);
	free(done);
	return posted;
}

void
deliver_log_discard(struct deliver *d, uint64_t qid,
    const struct envelope *env, uint16_t idx, uint32_t size)
{
	const struct route *r;
	char q[QUEUE_ID_LEN + 1];
	uint64_t now = clock_real_us();
	struct dlog_entry e = {
		.time_us = now,
		.queue_id = q,
		.sender = env->sender,
		.rcpt = env->rcpt[idx],
		.destination = addr_domain(env->rcpt[idx]),
		.transport = "discard",
		.status = DLOG_DISCARDED,
		.code = 250,
		.attempt = 1,
		.delay_s = now > env->arrival_us ?
		    (double)(now - env->arrival_us) / 1e6 : 0,
		.size = size,
	};

	r = route_lookup(g_cfg->routes, e.destination);
	e.text = r != NULL && r->transport.text[0] ? r->transport.text :
	    "discarded";
	queue_id_format(qid, q);
	if (d != NULL && dlog_format(&d->logbuf, &e) != 0)
		log_warn("deliver: cannot format a log line");
}

/* ---- destinations ---------------------------------------------------- */

static struct dl_dest *
dest_get(struct deliver *d, struct dl_item *it)
{
	char key[ROUTE_DEST_MAX + 1];
	const struct route *r = it->route;
	struct dl_dest *ds;
	uint64_t h;

	dest_key(r, it->domain, key);
	h = XXH3_64bits(key, strlen(key)) & (DL_DEST_BUCKETS - 1);
	for (ds = d->buckets[h]; ds != NULL; ds = ds->hnext)
		if (strcmp(ds->key, key) == 0 && ds->route == r)
			return ds;
	ds = calloc(1, sizeof(*ds));
	if (ds == NULL)
		return NULL;
	snprintf(ds->key, sizeof(ds->key), "%s", key);
	snprintf(ds->lookup, sizeof(ds->lookup), "%s",
	    r->transport.host[0] != '\0' ? r->transport.host : it->domain);
	ds->route = r;
	/* Slow start, as Postfix's initial_destination_concurrency: a
	 * destination earns its full limit by accepting mail. */
	ds->eff_max = r->policy.max_connections < DL_INITIAL_CONNS ?
	    r->policy.max_connections : DL_INITIAL_CONNS;
	if (ds->eff_max == 0)
		ds->eff_max = 1;
	ds->tokens = 1;
	ds->ccfg.helo_name = d->cfg->hostname;
	ds->ccfg.lmtp = r->transport.kind == ROUTE_LMTP;
	ds->ccfg.chunking = d->cfg->delivery->chunking != 0;
	if (r->policy.auth) {
		ds->ccfg.auth_user = r->policy.auth_user;
		ds->ccfg.auth_pass = r->policy.auth_password;
	}
	ds->hnext = d->buckets[h];
	d->buckets[h] = ds;
	return ds;
}

static void
dest_run(struct deliver *d, struct dl_dest *ds)
{
	if (!ds->in_run) {
		ds->in_run = true;
		ds->rnext = d->run;
		d->run = ds;
	}
}

static void
dest_push(struct deliver *d, struct dl_dest *ds, struct dl_item *it)
{
	it->next = NULL;
	if (ds->tail != NULL)
		ds->tail->next = it;
	else
		ds->head = it;
	ds->tail = it;
	ds->queued++;
	dest_run(d, ds);
}

static struct dl_item *
dest_pop(struct dl_dest *ds)
{
	struct dl_item *it = ds->head;

	if (it != NULL) {
		ds->head = it->next;
		if (ds->head == NULL)
			ds->tail = NULL;
		ds->queued--;
		it->next = NULL;
	}
	return it;
}

/*
 * A temporary failure of the destination itself: fewer conns, a wait. The
 * failures of connections that were open when the destination was held
 * off (a server saying 421 to all of them at once) count as that one: a
 * burst halves the limit and doubles the wait once, not once per
 * connection.
 */
static void
dest_slow(struct deliver *d, struct dl_dest *ds)
{
	ds->fails++;
	if (d->now_ms < ds->hold_until_ms)
		return;
	if (ds->eff_max > 1)
		ds->eff_max = (ds->eff_max + 1) / 2;
	ds->hold_ms = ds->hold_ms ? ds->hold_ms * 2 : DL_HOLD_MIN_MS;
	if (ds->hold_ms > DL_HOLD_MAX_MS)
		ds->hold_ms = DL_HOLD_MAX_MS;
	ds->hold_until_ms = d->now_ms + ds->hold_ms;
}

static void
dest_ok(struct dl_dest *ds)
{
	unsigned max = ds->route->policy.max_connections;

	ds->fails = 0;
	ds->hold_ms = 0;
	if (ds->eff_max < max)
		ds->eff_max++;
}

/* ---- the deferred heap ----------------------------------------------- */

static void
heap_swap(struct deliver *d, uint32_t a, uint32_t b)
{
	struct dl_item *t = d->heap[a];

	d->heap[a] = d->heap[b];
	d->heap[b] = t;
	d->heap[a]->heap_idx = a;
	d->heap[b]->heap_idx = b;
}

static int
heap_push(struct deliver *d, struct dl_item *it)
{
	uint32_t i;

	if (d->nheap == d->heap_cap) {
		uint32_t cap = d->heap_cap ? d->heap_cap * 2 : 1024;
		struct dl_item **h = realloc(d->heap, cap * sizeof(*h));

		if (h == NULL)
			return -ENOMEM;
		d->heap = h;
		d->heap_cap = cap;
	}
	i = d->nheap++;
	d->heap[i] = it;
	it->heap_idx = i;
	while (i > 0 && d->heap[(i - 1) / 2]->due_ms > d->heap[i]->due_ms) {
		heap_swap(d, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
	return 0;
}

static struct dl_item *
heap_pop(struct deliver *d)
{
	struct dl_item *top;
	uint32_t i = 0;

	if (d->nheap == 0)
		return NULL;
	top = d->heap[0];
	d->heap[0] = d->heap[--d->nheap];
	d->heap[0]->heap_idx = 0;
	for (;;) {
		uint32_t l = 2 * i + 1, r = l + 1, m = i;

		if (l < d->nheap && d->heap[l]->due_ms < d->heap[m]->due_ms)
			m = l;
		if (r < d->nheap && d->heap[r]->due_ms < d->heap[m]->due_ms)
			m = r;
		if (m == i)
			break;
		heap_swap(d, i, m);
		i = m;
	}
	return top;
}

/* An item arrives on its owner, or comes back after a deferral. */
static void
item_schedule(struct deliver *d, struct dl_item *it)
{
	if (it->dest == NULL && (it->dest = dest_get(d, it)) == NULL) {
		log_warn("deliver: out of memory; %016llx waits for a restart",
		    (unsigned long long)it->qid);
		free(it);
		return;
	}
	if (it->due_ms > d->now_ms) {
		if (heap_push(d, it) == 0)
			return;
	}
	dest_push(d, it->dest, it);
}

/* ---- results: index updates, log, DSN -------------------------------- */

static int
segfd(struct deliver *d, uint64_t seg)
{
	unsigned i = (unsigned)(seg % DL_SEGFD_CACHE);
	char name[SEG_PATH_MAX];

	if (d->segfd[i].fd >= 0 && d->segfd[i].seg == seg)
		return d->segfd[i].fd;
	if (d->segfd[i].fd >= 0)
		close(d->segfd[i].fd);
	seg_path(seg, name, sizeof(name));
	d->segfd[i].fd = openat(d->segdir, strchr(name, '/') + 1,
	    O_RDONLY | O_CLOEXEC);
	d->segfd[i].seg = seg;
	return d->segfd[i].fd;
}

/*
 * Check a record read back into buf (n bytes, or -errno): framing and
 * checksum against the item, then decode the envelope into env (pointing
 * into buf). NULL when sound, else the reason.
 */
static const char *
item_verify(const struct dl_item *it, const uint8_t *buf, ssize_t n,
    struct envelope *env)
{
	const struct seg_hdr *h = (const struct seg_hdr *)buf;
	struct seg_hdr chk;

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
	if (envelope_decode(buf + sizeof(*h), h->env_len, env) != 0)
		return "envelope damaged";
	return NULL;
}

static void item_unreadable(struct deliver *d, struct dl_item *it,
    const char *why);

/*
 * Start reading the item's record back through the ring, into *buf (the
 * record's size) on *fd, a descriptor of its own: the cached one may be
 * closed (its slot reused, its file deleted) before the read is even
 * submitted, and the number reused. The completion comes with ud. false
 * when it cannot even start: the item then went to item_unreadable().
 */
static bool
item_read_start(struct deliver *d, struct dl_item *it, uint64_t ud, int *fd,
    uint8_t **buf)
{
	struct io_uring_sqe *sqe;
	const char *why = NULL;

	*buf = NULL;
	*fd = segfd(d, it->mm.seg);
	if (*fd < 0)
		why = errno == ENOENT ? "segment missing" :
		    "cannot open the segment";
	else if ((*buf = malloc(it->mm.rec_len)) == NULL)
		why = "out of memory";
	else if ((*fd = dup(*fd)) < 0)
		why = "cannot open the segment";
	if (why != NULL) {
		free(*buf);
		*buf = NULL;
		item_unreadable(d, it, why);
		return false;
	}
	sqe = uring_get_sqe(d->ring);
	io_uring_prep_read(sqe, *fd, *buf, it->mm.rec_len, it->mm.offset);
	io_uring_sqe_set_data64(sqe, ud);
	return true;
}

static void
log_line(struct deliver *d, const struct dl_item *it, const char *sender,
    const char *rcpt, enum dlog_status st, int code, const char *enh,
    const char *text, const char *mx, const char *addr, uint64_t next_us,
    const char *dsn_qid)
{
	char qid[QUEUE_ID_LEN + 1];
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
		.mx = mx,
		.addr = addr,
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

	queue_id_format(it->qid, qid);
	if (dlog_format(&d->logbuf, &e) != 0)
		log_warn("deliver: cannot format a log line");
}

/*
 * The outcome of one attempt of an item: res[i] is recipient i's reply
 * (i indexes it->rcpt; with redirect, res[0] stands for all). rec and env
 * are the loaded record (NULL when it could not be read: then no DSN).
 * Writes the index updates (with a DSN if anything bounced), the log
 * lines, and requeues what was deferred. Takes the item.
 */
static void
item_done(struct deliver *d, struct dl_item *it, const struct dl_rres *res,
    const uint8_t *rec, const struct envelope *env, const char *mx,
    const char *addr)
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
		free(it);
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
				b->remote_mta = mx;
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

		log_line(d, it, sender, rcpt, sts[i], r->code,
		    sts[i] == DLOG_EXPIRED ? "4.4.7" : r->enhanced, r->text,
		    mx, addr, sts[i] == DLOG_DEFERRED ? next_us : 0,
		    sts[i] == DLOG_BOUNCED || sts[i] == DLOG_EXPIRED ?
		    (dsnq[0] ? dsnq : NULL) : NULL);
	}
	free(sts);
	free(ridx);
	if (ups != NULL)
		d->host->submit_updates(d->host_ctx, ups, n);
	free(bounced);
	if (keep > 0 && !it->dropped) {
		it->nrcpt = keep;
		it->due_ms = d->now_ms + (uint64_t)delay_s * 1000u;
		item_schedule(d, it);
	} else {
		free(it);
	}
}

/*
 * The record could not be read back. Damage (checksum, envelope) is for
 * recovery to quarantine: the item waits for a restart. Anything else
 * (no descriptor, memory, I/O) is tried again in a minute.
 */
static void
item_unreadable(struct deliver *d, struct dl_item *it, const char *why)
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
		free(it);
		return;
	}
	it->due_ms = d->now_ms + 60000;
	item_schedule(d, it);
}

/*
 * A record read back for an item that fails without a connection (its
 * destination cannot be reached): the results need the envelope, and a
 * 5xx the message for its DSN. Through the ring like a connection's read,
 * so the loop never waits on the disk.
 */
struct dl_fread {
	struct dl_item *it;
	uint8_t *buf;
	char *text;
	int fd;
	int code;
	char enhanced[12];
	uint32_t gen;
};

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

/*
 * An item failing alone that waits for a read slot: at most
 * DL_FREADS_MAX records are read back (and held in memory) at a time.
 */
struct dl_fwait {
	struct dl_fwait *next;
	struct dl_item *it;
	int code;
	char enhanced[12];
	char text[];
};

static void fread_begin(struct deliver *d, struct dl_item *it, int code,
    const char *enh, const char *text);

/* Every recipient of the item gets the same reply (no session). */
static void
item_fail_all(struct deliver *d, struct dl_item *it, int code,
    const char *enh, const char *text)
{
	struct dl_fwait *w;
	size_t tl;

	if (d->nfreads < DL_FREADS_MAX && d->fwait_head == NULL) {
		fread_begin(d, it, code, enh, text);
		return;
	}
	tl = strlen(text);
	if ((w = malloc(sizeof(*w) + tl + 1)) == NULL) {
		item_unreadable(d, it, "out of memory");
		return;
	}
	w->next = NULL;
	w->it = it;
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
		fread_begin(d, w->it, w->code, w->enhanced, w->text);
		free(w);
	}
}

/* Read the item's record back through the ring; handle_fread() goes on. */
static void
fread_begin(struct deliver *d, struct dl_item *it, int code,
    const char *enh, const char *text)
{
	struct dl_fread *f = calloc(1, sizeof(*f));
	uint32_t slot = f != NULL ? fread_slot(d) : UINT32_MAX;

	if (f == NULL || slot == UINT32_MAX ||
	    (f->text = strdup(text)) == NULL) {
		free(f);
		item_unreadable(d, it, "out of memory");
		return;
	}
	f->gen = ++d->fread_gen;
	if (!item_read_start(d, it, uring_ud(OP_FREAD, slot, f->gen), &f->fd,
	    &f->buf)) {
		free(f->text);
		free(f);
		return;
	}
	f->it = it;
	f->code = code;
	snprintf(f->enhanced, sizeof(f->enhanced), "%s", enh);
	d->freads[slot] = f;
	d->nfreads++;
}

/* item_fail_all()'s read came back (res bytes or -errno): the results. */
static void
handle_fread(struct deliver *d, uint64_t ud, int res)
{
	uint32_t slot = URING_UD_IDX(ud);
	struct dl_fread *f;
	struct dl_rres *rr = NULL;
	struct envelope env = { 0 };
	const char *why;

	assert(slot < d->freads_cap && d->freads[slot] != NULL &&
	    d->freads[slot]->gen == URING_UD_GEN(ud));
	f = d->freads[slot];
	d->freads[slot] = NULL;
	d->nfreads--;
	close(f->fd);
	if (f->it->dropped) {
		free(f->it);	/* held or deleted meanwhile: no results */
	} else if ((why = item_verify(f->it, f->buf, res, &env)) != NULL ||
	    (rr = calloc(f->it->nrcpt ? f->it->nrcpt : 1,
	    sizeof(*rr))) == NULL) {
		item_unreadable(d, f->it, why != NULL ? why : "out of memory");
	} else {
		for (uint16_t i = 0; i < f->it->nrcpt; i++) {
			rr[i].code = f->code;
			memcpy(rr[i].enhanced, f->enhanced,
			    sizeof(rr[i].enhanced));
			rr[i].text = f->text;
		}
		item_done(d, f->it, rr, f->buf, &env, NULL, NULL);
	}
	envelope_release(&env);
	free(rr);
	free(f->buf);
	free(f->text);
	free(f);
	fwait_run(d);
}

/* Defer (or bounce, if 5xx) every ready item of a destination. */
static void
dest_fail_ready(struct deliver *d, struct dl_dest *ds, int code,
    const char *enh, const char *text)
{
	struct dl_item *it;

	while ((it = dest_pop(ds)) != NULL)
		item_fail_all(d, it, code, enh, text);
}

/* The rate bucket: max_rate tokens a second, at most a second's worth. */
static void
dest_refill(struct deliver *d, struct dl_dest *ds)
{
	double rate = ds->route->policy.max_rate;

	if (rate <= 0)
		return;
	ds->tokens += (double)(d->now_ms - ds->tokens_ms) * rate / 1000.0;
	ds->tokens_ms = d->now_ms;
	if (ds->tokens > (rate < 1 ? 1 : rate))
		ds->tokens = rate < 1 ? 1 : rate;
}

/* ---- outbound connections -------------------------------------------- */

static void conn_close(struct dl_conn *c);
static void conn_flush(struct dl_conn *c);
static void set_idle(struct dl_conn *c, bool idle);

static uint64_t
cud(unsigned op, struct dl_conn *c)
{
	return uring_ud(op, (uint32_t)(c - c->d->conns), c->gen);
}

static void
conn_free(struct dl_conn *c)
{
	struct deliver *d = c->d;
	struct dl_dest *ds = c->dest;

	assert(c->inflight == 0);
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	smtp_client_free(&c->cli);
	buf_free(&c->tx);
	if (ds != NULL) {
		set_idle(c, false);
		ds->nconn--;
		if (!c->connected)
			ds->nconnecting--;
		if (ds->queued > 0)
			dest_run(d, ds);
	}
	c->in_use = false;
	c->gen++;
	c->next_free = d->free_head;
	d->free_head = (uint32_t)(c - d->conns);
	d->nactive--;
}

static void
conn_close(struct dl_conn *c)
{
	struct io_uring_sqe *sqe;

	if (c->closing)
		return;
	c->closing = true;
	if (c->inflight == 0) {
		conn_free(c);
		return;
	}
	if (c->fd >= 0)
		shutdown(c->fd, SHUT_RDWR);
	sqe = uring_get_sqe(c->d->ring);
	io_uring_prep_cancel_fd(sqe, c->fd, IORING_ASYNC_CANCEL_ALL);
	io_uring_sqe_set_data64(sqe, uring_ud(OP_OCANCEL, 0, 0));
}

static void
conn_deadline(struct dl_conn *c)
{
	const struct delivery_cfg *dc = c->d->cfg->delivery;

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

static void
set_idle(struct dl_conn *c, bool idle)
{
	if (c->idle != idle)
		c->dest->nidle += idle ? 1 : -1;
	c->idle = idle;
}

static void
arm_orecv(struct dl_conn *c)
{
	struct io_uring_sqe *sqe;

	if (c->recv_armed || c->closing)
		return;
	sqe = uring_get_sqe(c->d->ring);
	io_uring_prep_recv(sqe, c->fd, c->rbuf, sizeof(c->rbuf), 0);
	io_uring_sqe_set_data64(sqe, cud(OP_ORECV, c));
	c->recv_armed = true;
	c->inflight++;
}

static void
conn_flush(struct dl_conn *c)
{
	struct io_uring_sqe *sqe;

	if (c->send_armed || c->closing)
		return;
	if (c->tx_off == c->tx.len) {
		buf_reset(&c->tx);
		c->tx_off = 0;
		if (c->cli.out.len == 0)
			return;
		/* Swap: the client appends to an empty buffer meanwhile. */
		struct buf t = c->tx;

		c->tx = c->cli.out;
		c->cli.out = t;
	}
	sqe = uring_get_sqe(c->d->ring);
	io_uring_prep_send(sqe, c->fd, c->tx.data + c->tx_off,
	    c->tx.len - c->tx_off, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, cud(OP_OSEND, c));
	c->send_armed = true;
	c->inflight++;
}

/* Release what the current item borrowed; the item itself is passed on. */
static void
conn_item_clear(struct dl_conn *c)
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
	set_idle(c, false);
	c->msgs++;
	c->res = calloc(it->nrcpt, sizeof(*c->res));
	c->rcpts = calloc(it->nrcpt, sizeof(*c->rcpts));
	if (c->res == NULL || c->rcpts == NULL) {
		conn_item_clear(c);
		it->due_ms = d->now_ms + 1000;
		item_schedule(d, it);
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
	m.body = c->env.body;
	m.smtputf8 = c->env.smtputf8;
	rc = smtp_client_send(&c->cli, &m);
	if (rc == 0)
		return true;
	if (rc == 1)
		return false;	/* refused here; results are in */
	/* A message the client cannot send at all: bounce it. */
	{
		struct dl_rres *res;
		uint8_t *rec;
		struct envelope env;

		conn_item_detach(c, &res, &rec, &env);
		for (uint16_t i = 0; i < it->nrcpt; i++) {
			res[i].code = 554;
			strcpy(res[i].enhanced, "5.6.0");
			res[i].text = NULL;
		}
		res[0].text = strdup("message cannot be sent as is");
		item_done(d, it, res, rec, &env, NULL, NULL);
		free(res[0].text);
		free(res);
		envelope_release(&env);
		free(rec);
	}
	return false;
}

/*
 * Give the connection its next item, or leave it idle. The item's record
 * is read through the ring (the loop never waits on the disk); the send
 * continues in handle_oread().
 */
static void
conn_next(struct dl_conn *c)
{
	struct deliver *d = c->d;
	struct dl_dest *ds = c->dest;
	const struct route_policy *pol = &ds->route->policy;
	struct dl_item *it;
	uint8_t *buf;
	int fd;

	assert(c->loading == NULL);
	for (;;) {
		if (d->stopping || (pol->max_messages_per_connection &&
		    c->msgs >= pol->max_messages_per_connection) ||
		    ds->nconn > ds->eff_max) {
			set_idle(c, false);
			smtp_client_quit(&c->cli);
			return;
		}
		dest_refill(d, ds);
		/* Held off (421s, a run of 4xx): open ones wait too. */
		if (ds->queued == 0 || (pol->max_rate > 0 && ds->tokens < 1) ||
		    d->now_ms < ds->hold_until_ms) {
			set_idle(c, true);
			return;
		}
		it = dest_pop(ds);
		if (pol->max_rate > 0)
			ds->tokens -= 1;
		if (!item_read_start(d, it, cud(OP_OREAD, c), &fd, &buf))
			continue;
		c->inflight++;
		c->loading = it;
		c->rec = buf;
		c->rfd = fd;
		set_idle(c, false);
		return;
	}
}

/*
 * The record of c->loading was read (res bytes, or -errno). Sound: send
 * it. Damaged: as item_unreadable() says, then the next item. If the
 * connection cannot take it any more (closing, or no longer ready), the
 * item goes back to its destination.
 */
static void
handle_oread(struct dl_conn *c, int res)
{
	struct deliver *d = c->d;
	struct dl_item *it = c->loading;
	uint8_t *rec = c->rec;
	const char *why;
	bool sent = false;

	assert(it != NULL);
	close(c->rfd);
	c->rfd = -1;
	c->loading = NULL;
	c->rec = NULL;
	if (c->closing || !smtp_client_ready(&c->cli)) {
		free(rec);
		if (it->dropped) {
			free(it);	/* held or deleted while it was read */
			return;
		}
		it->due_ms = 0;
		item_schedule(d, it);
		return;
	}
	if (it->dropped) {
		free(rec);
		free(it);
	} else if ((why = item_verify(it, rec, res, &c->env)) != NULL) {
		free(rec);
		memset(&c->env, 0, sizeof(c->env));
		item_unreadable(d, it, why);
	} else {
		c->rec = rec;
		sent = item_send(c, it);
	}
	if (!sent)
		conn_next(c);
	conn_flush(c);
	conn_deadline(c);
}

static bool conn_open(struct deliver *d, struct dl_dest *ds, unsigned first);
static void handle_connect(struct dl_conn *c, int res);

/* ---- smtp_client callbacks ------------------------------------------- */

static void
cb_ready(void *arg)
{
	struct dl_conn *c = arg;

	conn_next(c);
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
	uint16_t n;

	(void)r;
	if (it == NULL)
		return;
	n = it->nrcpt;
	if (t->delivered > 0)
		dest_ok(ds);
	else if (t->deferred > 0 && ++ds->fails >= DL_FAIL_RUN) {
		ds->fails = 0;
		dest_slow(d, ds);
	}
	conn_item_detach(c, &res, &rec, &env);
	item_done(d, it, res, rec, &env, c->host, c->addr);
	envelope_release(&env);
	free(rec);
	for (uint16_t i = 0; res != NULL && i < n; i++)
		free(res[i].text);
	free(res);
}

static void
cb_failed(void *arg, enum smtp_client_stage stage,
    const struct smtp_client_reply *r)
{
	struct dl_conn *c = arg;
	struct dl_dest *ds = c->dest;
	char text[1100];

	log_info("deliver: %s [%s]: session failed at %s: %d %s", c->host,
	    c->addr, smtp_client_strstage(stage), r->code, r->text);
	if (stage <= SMTP_CLIENT_STAGE_AUTH && c->target + 1 < ds->ntargets &&
	    !c->d->stopping) {
		/* Refused before any mail: the next MX host gets a try. */
		conn_open(c->d, ds, c->target + 1);
		return;
	}
	if (r->code == 421 || stage <= SMTP_CLIENT_STAGE_AUTH)
		dest_slow(c->d, ds);
	if (stage <= SMTP_CLIENT_STAGE_AUTH && ds->nconn <= 1) {
		/* Nothing got through: what waits here waits longer. */
		snprintf(text, sizeof(text), "%d %s host %s[%s] said: %s",
		    r->code, r->enhanced, c->host, c->addr, r->text);
		dest_fail_ready(c->d, ds, r->code >= 500 ? 451 : r->code,
		    r->code >= 500 ? "4.4.0" : r->enhanced, text);
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
	if (c->fd >= 0)
		close(c->fd);
	c->fd = socket(t->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		/* As a failed connect: next target, else the dest waits. */
		handle_connect(c, -errno);
		return;
	}
	if (t->sa.ss_family != AF_UNIX)
		setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	sqe = uring_get_sqe(c->d->ring);
	io_uring_prep_connect(sqe, c->fd, (struct sockaddr *)&t->sa, t->salen);
	io_uring_sqe_set_data64(sqe, cud(OP_CONNECT, c));
	c->inflight++;
	c->deadline_ms = c->d->now_ms + c->d->cfg->delivery->connect_timeout_ms;
}

/* false when no connection could be started (the caller stops trying). */
static bool
conn_open(struct deliver *d, struct dl_dest *ds, unsigned first)
{
	struct dl_conn *c;
	uint32_t i = d->free_head;

	if (i == UINT32_MAX || first >= ds->ntargets)
		return false;
	c = &d->conns[i];
	d->free_head = c->next_free;
	d->nactive++;
	c->in_use = true;
	c->connected = c->closing = c->idle = c->timed_out = false;
	c->recv_armed = c->send_armed = false;
	c->inflight = 0;
	c->fd = -1;
	c->dest = ds;
	c->target = first;
	c->msgs = 0;
	c->tx_off = 0;
	ds->nconn++;
	ds->nconnecting++;
	conn_connect(c);
	return c->in_use && c->dest == ds && !c->closing;
}

static void
handle_connect(struct dl_conn *c, int res)
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
		dest_slow(c->d, ds);
		if (ds->nconn <= 1) {
			char text[600];

			snprintf(text, sizeof(text),
			    "connect to %s[%s]: %s", c->host, c->addr,
			    strerror(-res));
			dest_fail_ready(c->d, ds, 451, "4.4.1", text);
		}
		conn_close(c);
		return;
	}
	c->connected = true;
	ds->nconnecting--;
	smtp_client_init(&c->cli, &ds->ccfg, &client_cb, c);
	conn_deadline(c);
	arm_orecv(c);
}

static void
handle_orecv(struct dl_conn *c, int res)
{
	enum smtp_client_event ev;

	c->recv_armed = false;
	if (c->closing)
		return;
	if (res <= 0) {
		smtp_client_eof(&c->cli);
		conn_close(c);
		return;
	}
	ev = smtp_client_input(&c->cli, c->rbuf, (size_t)res);
	conn_flush(c);
	if (ev == SMTP_CLIENT_EV_CLOSE || smtp_client_closed(&c->cli)) {
		if (!c->send_armed)
			conn_close(c);
		return;
	}
	conn_deadline(c);
	arm_orecv(c);
}

static void
handle_osend(struct dl_conn *c, int res)
{
	c->send_armed = false;
	if (c->closing)
		return;
	if (res < 0) {
		smtp_client_eof(&c->cli);
		conn_close(c);
		return;
	}
	c->tx_off += (size_t)res;
	conn_flush(c);
	if (!c->send_armed && smtp_client_closed(&c->cli))
		conn_close(c);
}

/* ---- DNS ------------------------------------------------------------- */

static void
set_port(struct sockaddr_storage *sa, uint16_t port)
{
	if (sa->ss_family == AF_INET)
		((struct sockaddr_in *)sa)->sin_port = htons(port);
	else if (sa->ss_family == AF_INET6)
		((struct sockaddr_in6 *)sa)->sin6_port = htons(port);
}

static void
dest_resolved(void *arg, const struct resolve_result *r)
{
	struct dl_dest *ds = arg;
	unsigned n = 0;

	ds->resolving = false;
	ds->rstatus = (int)r->status;
	snprintf(ds->rwhy, sizeof(ds->rwhy), "%s", r->why);
	ds->resolved_ms = clock_mono_ms();
	free(ds->targets);
	ds->targets = NULL;
	ds->ntargets = 0;
	if (r->status == RESOLVE_OK) {
		for (unsigned i = 0; i < r->ntargets; i++)
			n += r->targets[i].naddr;
		if (n > DL_TARGETS_MAX)
			n = DL_TARGETS_MAX;
		ds->targets = calloc(n ? n : 1, sizeof(*ds->targets));
		for (unsigned i = 0, k = 0; ds->targets && i < r->ntargets;
		    i++)
			for (unsigned j = 0; j < r->targets[i].naddr && k < n;
			    j++, k++) {
				struct dl_target *t = &ds->targets[k];

				snprintf(t->host, sizeof(t->host), "%s",
				    r->targets[i].host);
				t->sa = r->targets[i].addr[j];
				/* Plain smtp routes leave the port 0. */
				set_port(&t->sa, ds->route->transport.port ?
				    ds->route->transport.port :
				    ROUTE_PORT_SMTP);
				t->salen = t->sa.ss_family == AF_INET ?
				    sizeof(struct sockaddr_in) :
				    sizeof(struct sockaddr_in6);
				ds->ntargets = k + 1;
			}
	}
}

/* Fixed targets need no DNS: an address literal or a unix socket. */
static bool
dest_literal(struct dl_dest *ds)
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
	set_port(&x->sa, t->port);
	free(ds->targets);
	ds->targets = x;
	ds->ntargets = 1;
	ds->literal = true;
	ds->rstatus = RESOLVE_OK;
	ds->resolved_ms = UINT64_MAX;
	return true;
}

/* ---- the scheduler --------------------------------------------------- */

/* One destination: use idle connections, open new ones. */
static bool
dest_service(struct deliver *d, struct dl_dest *ds)
{
	const struct route_transport *t = &ds->route->transport;
	char text[300];

	if (ds->queued == 0)
		return false;
	if (t->kind == ROUTE_ERROR || t->kind == ROUTE_DISCARD) {
		/* Routes changed since the message was accepted. */
		dest_fail_ready(d, ds, t->kind == ROUTE_ERROR ? t->code : 250,
		    t->kind == ROUTE_ERROR ? "5.0.0" : "2.0.0",
		    t->kind == ROUTE_ERROR ? t->text : "discarded");
		return false;
	}
	if (d->now_ms < ds->hold_until_ms)
		return true;
	/* Idle connections first. */
	for (uint32_t i = 0; i < DL_CONNS && ds->queued > 0 && ds->nidle > 0;
	    i++) {
		struct dl_conn *c = &d->conns[i];

		if (c->in_use && c->dest == ds && c->idle && !c->closing &&
		    smtp_client_ready(&c->cli)) {
			conn_next(c);
			conn_deadline(c);
			conn_flush(c);
			if (c->item == NULL && c->idle)
				break;	/* rate limit */
		}
	}
	if (ds->queued == 0 || d->stopping)
		return ds->queued > 0;
	if (!dest_literal(ds) &&
	    (ds->resolved_ms == 0 ||
	    d->now_ms > ds->resolved_ms + DL_RESOLVE_FRESH_MS)) {
		if (!ds->resolving) {
			if (d->res == NULL) {
				dest_fail_ready(d, ds, 451, "4.4.3",
				    d->resolver_err);
				return false;
			}
			ds->resolving = true;
			resolver_lookup(d->res, ds->lookup, t->mx_lookup,
			    dest_resolved, ds);
		}
		if (ds->resolved_ms == 0 || ds->resolving)
			return true;
	}
	if (ds->rstatus != RESOLVE_OK) {
		bool perm = ds->rstatus != RESOLVE_TEMPFAIL;

		snprintf(text, sizeof(text), "%s", ds->rwhy[0] ? ds->rwhy :
		    resolve_status_name((enum resolve_status)ds->rstatus));
		ds->resolved_ms = 0;	/* ask again next time */
		dest_fail_ready(d, ds, perm ? 550 : 451,
		    perm ? (ds->rstatus == RESOLVE_NULLMX ? "5.1.10" :
		    "5.1.2") : "4.4.3", text);
		if (!perm)
			dest_slow(d, ds);
		return false;
	}
	/* No token: no new connection either (it would only idle). */
	dest_refill(d, ds);
	if (ds->route->policy.max_rate > 0 && ds->tokens < 1)
		return true;
	while (ds->queued > ds->nconnecting && ds->nconn < ds->eff_max &&
	    d->free_head != UINT32_MAX)
		if (!conn_open(d, ds, 0))
			break;
	return ds->queued > 0;
}

/* Take out of the heap every item that matches (qid 0: all). */
static struct dl_item *
heap_take(struct deliver *d, uint64_t qid)
{
	struct dl_item *out = NULL;
	uint32_t i, n = 0;

	for (i = 0; i < d->nheap; i++) {
		struct dl_item *it = d->heap[i];

		if (qid == 0 || it->qid == qid) {
			it->next = out;
			out = it;
		} else {
			d->heap[n] = it;
			it->heap_idx = n++;
		}
	}
	d->nheap = n;
	/* Heapify what is left: sift every parent down. */
	for (i = n / 2; i-- > 0;) {
		uint32_t j = i;

		for (;;) {
			uint32_t l = 2 * j + 1, r = l + 1, m = j;

			if (l < n && d->heap[l]->due_ms < d->heap[m]->due_ms)
				m = l;
			if (r < n && d->heap[r]->due_ms < d->heap[m]->due_ms)
				m = r;
			if (m == j)
				break;
			heap_swap(d, j, m);
			j = m;
		}
	}
	return out;
}

/* Take out of every destination's FIFO the items of qid. */
static struct dl_item *
fifo_take(struct deliver *d, uint64_t qid)
{
	struct dl_item *out = NULL;

	for (unsigned b = 0; b < DL_DEST_BUCKETS; b++)
		for (struct dl_dest *ds = d->buckets[b]; ds; ds = ds->hnext) {
			struct dl_item **pp = &ds->head, *it, *last = NULL;

			while ((it = *pp) != NULL) {
				if (it->qid == qid) {
					*pp = it->next;
					ds->queued--;
					it->next = out;
					out = it;
				} else {
					last = it;
					pp = &it->next;
				}
			}
			ds->tail = last;
		}
	return out;
}

static void
handle_ctl(struct deliver *d, struct dl_item *ctl)
{
	struct dl_item *list = NULL, *it, *next;

	switch (ctl->ctl) {
	case DELIVER_CTL_FLUSH:
		/* Every deferred item is due now; no destination waits. */
		list = heap_take(d, 0);
		for (unsigned b = 0; b < DL_DEST_BUCKETS; b++)
			for (struct dl_dest *ds = d->buckets[b]; ds;
			    ds = ds->hnext) {
				ds->hold_until_ms = 0;
				ds->hold_ms = 0;
				ds->resolved_ms = ds->resolved_ms == UINT64_MAX ?
				    UINT64_MAX : 0;
			}
		for (it = list; it != NULL; it = next) {
			next = it->next;
			dest_push(d, it->dest, it);
		}
		break;
	case DELIVER_CTL_DROP:
		/* An attempt under way finishes, but is not tried again;
		 * nor is one whose record is being read back. */
		for (uint32_t i = 0; i < DL_CONNS; i++) {
			struct dl_conn *c = &d->conns[i];

			if (c->in_use && c->item != NULL &&
			    c->item->qid == ctl->qid)
				c->item->dropped = true;
			if (c->in_use && c->loading != NULL &&
			    c->loading->qid == ctl->qid)
				c->loading->dropped = true;
		}
		for (uint32_t i = 0; i < d->freads_cap; i++)
			if (d->freads[i] != NULL &&
			    d->freads[i]->it->qid == ctl->qid)
				d->freads[i]->it->dropped = true;
		for (struct dl_fwait *w = d->fwait_head; w; w = w->next)
			if (w->it->qid == ctl->qid)
				w->it->dropped = true;
		list = heap_take(d, ctl->qid);
		for (it = list; it != NULL; it = next) {
			next = it->next;
			free(it);
		}
		list = fifo_take(d, ctl->qid);
		for (it = list; it != NULL; it = next) {
			next = it->next;
			free(it);
		}
		break;
	case DELIVER_CTL_BOUNCE:
		list = heap_take(d, ctl->qid);
		for (it = list; it != NULL; it = next) {
			next = it->next;
			dest_push(d, it->dest, it);
		}
		for (it = fifo_take(d, ctl->qid); it != NULL; it = next) {
			next = it->next;
			/* Gives up at once: counts as the last attempt. */
			item_fail_all(d, it, 550, "5.0.0",
			    "550 5.0.0 message bounced by the operator");
		}
		break;
	case DELIVER_CTL_UPDATE: {
		struct queue_update *u = calloc(1, sizeof(*u));

		if (u != NULL) {
			u->kind = ctl->upd;
			u->qid = ctl->qid;
			d->host->submit_updates(d->host_ctx, u, 1);
		}
		break;
	}
	}
	free(ctl);
}

int
deliver_control(unsigned shard, enum deliver_ctl what, uint64_t qid,
    unsigned upd)
{
	struct dl_item *it;

	if (shard >= g_nshards)
		return -EINVAL;
	it = calloc(1, sizeof(*it));
	if (it == NULL)
		return -ENOMEM;
	it->ctl = (uint8_t)what;
	it->upd = (uint8_t)upd;
	it->qid = qid;
	post(shard, it);
	return 0;
}

void
deliver_run(struct deliver *d, uint64_t now_ms)
{
	struct dl_item *it, *next, *rev = NULL;
	struct dl_dest *ds, **pp;

	d->now_ms = now_ms;
	it = atomic_exchange(&inboxes[d->id].head, NULL);
	for (; it != NULL; it = next) {	/* oldest first */
		next = it->next;
		it->next = rev;
		rev = it;
	}
	for (it = rev; it != NULL; it = next) {
		next = it->next;
		if (it->ctl != 0)
			handle_ctl(d, it);
		else
			item_schedule(d, it);
	}
	while (d->nheap > 0 && d->heap[0]->due_ms <= now_ms) {
		it = heap_pop(d);
		dest_push(d, it->dest, it);
	}
	for (pp = &d->run; !d->cfg->delivery->paused && (ds = *pp) != NULL;) {
		if (dest_service(d, ds)) {
			pp = &ds->rnext;
		} else {
			*pp = ds->rnext;
			ds->in_run = false;
			if (ds->queued > 0)
				dest_run(d, ds);	/* came back */
		}
	}
	if (d->logbuf.len > 0 && dlog_write(&d->log, &d->logbuf) < 0)
		log_warn("deliver: writing the delivery log failed");
}

void
deliver_tick(struct deliver *d, uint64_t now_ms)
{
	d->now_ms = now_ms;
	if (d->res != NULL)
		resolver_tick(d->res, now_ms);
	/*
	 * A cached segment the committer has unlinked (nothing lives in it
	 * any more) would keep its disk space until its slot is reused.
	 */
	for (unsigned i = 0; i < DL_SEGFD_CACHE; i++) {
		struct stat st;

		if (d->segfd[i].fd >= 0 && fstat(d->segfd[i].fd, &st) == 0 &&
		    st.st_nlink == 0) {
			close(d->segfd[i].fd);
			d->segfd[i].fd = -1;
		}
	}
	for (uint32_t i = 0; i < DL_CONNS; i++) {
		struct dl_conn *c = &d->conns[i];

		if (!c->in_use || c->closing || now_ms < c->deadline_ms ||
		    c->loading != NULL)
			continue;
		if (!c->connected) {
			/* The connect completes cancelled: try the next. */
			struct io_uring_sqe *sqe = uring_get_sqe(d->ring);

			io_uring_prep_cancel64(sqe, cud(OP_CONNECT, c), 0);
			io_uring_sqe_set_data64(sqe, uring_ud(OP_OCANCEL, 0, 0));
			c->timed_out = true;
			c->deadline_ms = UINT64_MAX;
			continue;
		}
		if (smtp_client_waiting(&c->cli) == SMTP_CLIENT_WAIT_NONE &&
		    !smtp_client_closed(&c->cli)) {
			smtp_client_quit(&c->cli);
			conn_flush(c);
			conn_deadline(c);
			continue;
		}
		smtp_client_timeout(&c->cli);
		conn_close(c);
	}
}

void
deliver_complete(struct deliver *d, uint64_t ud, int res, uint32_t flags)
{
	unsigned op = URING_UD_OP(ud);
	struct dl_conn *c;

	(void)flags;
	if (op == OP_DNS) {
		if (d->res != NULL)
			resolver_complete(d->res, ud, res, flags);
		return;
	}
	if (op == OP_OCANCEL)
		return;
	if (op == OP_FREAD) {
		handle_fread(d, ud, res);
		return;
	}
	c = &d->conns[URING_UD_IDX(ud)];
	assert(c->in_use && c->gen == URING_UD_GEN(ud));
	assert(c->inflight > 0);
	c->inflight--;
	switch (op) {
	case OP_CONNECT:
		handle_connect(c, res);
		break;
	case OP_ORECV:
		handle_orecv(c, res);
		break;
	case OP_OSEND:
		handle_osend(c, res);
		break;
	case OP_OREAD:
		handle_oread(c, res);
		break;
	default:
		log_panic("deliver: unknown op %u", op);
	}
	if (c->in_use && c->closing && c->inflight == 0)
		conn_free(c);
}

bool
deliver_stop(struct deliver *d, bool force)
{
	d->stopping = true;
	for (uint32_t i = 0; i < DL_CONNS; i++) {
		struct dl_conn *c = &d->conns[i];

		if (!c->in_use || c->closing)
			continue;
		if (force) {
			if (c->connected)
				smtp_client_eof(&c->cli);
			conn_close(c);
		} else if (c->idle && smtp_client_ready(&c->cli)) {
			set_idle(c, false);
			smtp_client_quit(&c->cli);
			conn_flush(c);
		}
	}
	if (d->logbuf.len > 0)
		dlog_write(&d->log, &d->logbuf);
	return d->nactive == 0 && d->nfreads == 0 && d->fwait_head == NULL;
}

struct deliver *
deliver_create(const struct deliver_host *host, void *host_ctx,
    struct io_uring *ring, unsigned shard_id, const struct deliver_cfg *cfg)
{
	struct deliver *d = calloc(1, sizeof(*d));
	struct resolver_cfg rc;
	char path[4096];

	if (d == NULL)
		return NULL;
	d->host = host;
	d->host_ctx = host_ctx;
	d->ring = ring;
	d->id = shard_id;
	d->cfg = cfg;
	d->fwait_tail = &d->fwait_head;
	d->conns = calloc(DL_CONNS, sizeof(*d->conns));
	if (d->conns == NULL) {
		free(d);
		return NULL;
	}
	for (uint32_t i = 0; i < DL_CONNS; i++) {
		d->conns[i].d = d;
		d->conns[i].fd = -1;
		d->conns[i].next_free = i + 1 < DL_CONNS ? i + 1 : UINT32_MAX;
	}
	d->free_head = 0;
	for (unsigned i = 0; i < DL_SEGFD_CACHE; i++)
		d->segfd[i].fd = -1;
	snprintf(path, sizeof(path), "%s/seg", cfg->spool);
	d->segdir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	resolver_cfg_defaults(&rc);
	rc.timeout_ms = cfg->dns->timeout_ms;
	rc.attempts = cfg->dns->attempts;
	if (resolver_cfg_server(&rc, cfg->dns->resolver, "/etc/resolv.conf",
	    d->resolver_err, sizeof(d->resolver_err)) != 0 ||
	    resolver_create(&d->res, ring, OP_DNS, &rc) != 0) {
		if (d->resolver_err[0] == '\0')
			snprintf(d->resolver_err, sizeof(d->resolver_err),
			    "no DNS resolver");
		log_warn("shard %u: DNS unavailable: %s", shard_id,
		    d->resolver_err);
		d->res = NULL;
	}
	if (strcmp(cfg->delivery->log, "-") == 0 || cfg->delivery->log[0] == '/')
		snprintf(path, sizeof(path), "%s", cfg->delivery->log);
	else
		snprintf(path, sizeof(path), "%s/%s", cfg->spool,
		    cfg->delivery->log);
	if (dlog_open(&d->log, path) != 0)
		log_warn("cannot open the delivery log %s: %s", path,
		    strerror(errno));
	return d;
}

void
deliver_destroy(struct deliver *d)
{
	struct dl_item *it;

	if (d == NULL)
		return;
	resolver_destroy(d->res);
	d->res = NULL;
	for (uint32_t i = 0; i < DL_CONNS; i++) {
		struct dl_conn *c = &d->conns[i];

		if (c->in_use) {
			struct dl_item *cur = c->item;

			conn_item_clear(c);
			free(cur);
			smtp_client_free(&c->cli);
			buf_free(&c->tx);
			if (c->fd >= 0)
				close(c->fd);
		}
	}
	while ((it = heap_pop(d)) != NULL)
		free(it);
	/* deliver_stop() waited for these: none is in flight any more. */
	assert(d->nfreads == 0 && d->fwait_head == NULL);
	free(d->freads);
	for (unsigned b = 0; b < DL_DEST_BUCKETS; b++) {
		struct dl_dest *ds = d->buckets[b], *n;

		for (; ds != NULL; ds = n) {
			n = ds->hnext;
			while ((it = dest_pop(ds)) != NULL)
				free(it);
			free(ds->targets);
			free(ds);
		}
	}
	for (unsigned i = 0; i < DL_SEGFD_CACHE; i++)
		if (d->segfd[i].fd >= 0)
			close(d->segfd[i].fd);
	if (d->segdir >= 0)
		close(d->segdir);
	if (d->logbuf.len > 0)
		dlog_write(&d->log, &d->logbuf);
	buf_free(&d->logbuf);
	dlog_close(&d->log);
	free(d->heap);
	free(d->conns);
	free(d);
}
