/*
 * deliver_int.h - what the files of the deliverer share: its types and
 * limits, and the functions one file calls in another. Not for use
 * outside deliver/ (the interface is deliver.h).
 *
 * Every function here runs on the owning shard's thread.
 */
#ifndef SLUICE_DELIVER_INT_H
#define SLUICE_DELIVER_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "../lib/buf.h"
#include "../lib/rbuf.h"
#include "../proto/smtp_client.h"
#include "deliver.h"
#include "dlog.h"
#include "resolver.h"
#include "route.h"

#define DL_CONNS_MAX 65536	/* outbound connection slots per shard */
#define DL_PARK_LOG_MS 60000	/* "active set full" at most this often */
#define DL_BOUNCING 16		/* operator bounces remembered */
#define DL_BOUNCING_MS 10000	/* for this long */
#define DL_SLOT_WAKE 4		/* waiters woken per slot freed */
#define DL_DEST_SWEEP_MS 10000	/* idle destinations freed at least this often */
#define DL_HEAP_KEEP 4096	/* deferred heap slots kept when empty */
#define DL_ADDR_BUCKETS 1024	/* idle connections by address; power of 2 */
#define DL_ADDR_WAKE 4		/* waiters woken per connection closed */
#define DL_ADDR_SCAN 8		/* waiters looked at for a hand-over */
/* Transactions in flight on one connection (delivery.pipeline_depth). */
#define DL_PIPE_MAX SMTP_CLIENT_DEPTH_MAX
#define DL_RBUF 4096
#define DL_DEST_BUCKETS 4096	/* power of two */
#define DL_RESOLVE_FRESH_MS 30000
#define DL_HOLD_MIN_MS 1000
#define DL_HOLD_MAX_MS 60000
#define DL_INITIAL_CONNS 5	/* connections a new destination starts with */
#define DL_FAIL_RUN 3		/* consecutive 4xx that slow a destination */
#define DL_BROKEN_MIN_MS 5000	/* hold-off of a next hop that breaks the */
#define DL_BROKEN_MAX_MS 300000	/* protocol, doubling up to this */
#define DL_GATE_MIN_MS 250	/* no new connection after failures in a */
#define DL_GATE_MAX_MS 4000	/* row (421s), doubling up to this */
#define DL_RECENT 16		/* attempts whose outcome is remembered */
#define DL_RECENT_MIN 4		/* before failures can dominate */
#define DL_SEGFD_CACHE 16
#define DL_TARGETS_MAX 32	/* addresses tried per connection */
#define DL_FREADS_MAX 64	/* records read back at a time for items
				   failing without a connection */
#define DL_BOUNCE_WAITERS 4096	/* passes a shard holds failures for */
#define DL_BOUNCE_BYTES (16u << 20)	/* and the bytes of those failures */

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
struct dl_addr;
struct dl_tls_cache;
struct tls;
struct tls_ctx;

/* A destination's TLS, from its route and delivery.tls (deliver_tls.c). */
struct dl_tls_policy {
	uint8_t level;			/* enum route_tls, never DEFAULT */
	bool implicit;			/* handshake before the greeting */
	struct tls_ctx *ctx;		/* NULL with level none */
	uint64_t serial;		/* ctx's table, deliver_tls.c */
	const char *name;		/* tls_name, or NULL: the host's */
};

/* Who an attempt talked to, for the delivery log; NULL: no connection. */
struct dl_peer {
	const char *mx;
	const char *addr;
	const char *tls;		/* "TLSv1.3 TLS_AES_...", "none" */
	const char *tls_verify;		/* verify: "verified" or why not */
	const char *tls_auth;		/* "dane", "pkix", "none" */
	const char *tlsa;		/* DANE: "3 1 1", the record matched */
};

/* The same, copied, for items whose results come after the session. */
struct dl_peer_buf {
	char mx[RESOLVE_HOST_MAX + 1];
	char addr[ROUTE_PATH_MAX + 8];
	char tls[96];
	char tls_verify[128];
	char tls_auth[8];
	char tlsa[16];
};

struct dl_item {
	struct dl_item *next;
	struct dl_dest *dest;		/* on the owner; NULL in transit */
	const struct route *route;
	uint64_t cfg_gen;		/* the configuration route came from */
	const struct deliver_cfg *cfg;	/* ... held: dl_item_destroy() */
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
	bool from_mem;			/* its record being read came from rec */
	struct rbuf *rec;		/* the record in memory (a reference),
					 * until its first read; NULL: read
					 * it back from the spool */
	struct dl_pass *pass;		/* the dispatch it is part of, until
					 * settled (deliver_bounce.c) */
	char *domain;			/* points into the allocation */
	uint16_t rcpt[];		/* recipient indices */
};

/* What MTA-STS made of a destination (mta_sts_dest.c). */
enum dl_sts_state {
	DL_STS_S_OFF = 0,	/* not an MX destination, or STS off */
	DL_STS_S_NONE,		/* no policy, or mode none */
	DL_STS_S_TESTING,
	DL_STS_S_ENFORCE,
};

struct mta_sts_policy;

/* A host's usable TLSA records (RFC 7672), shared by its addresses. */
struct dl_dane {
	unsigned n;
	struct dns_tlsa rr[RESOLVE_TLSA_MAX];
};

struct dl_target {
	char host[RESOLVE_HOST_MAX + 1];
	uint16_t pref;			/* MX preference; 0 when fixed */
	/* enum route_tls for this host (tls_policy_for_host()); 0: the
	 * destination's level, as it has no resolved host (a literal). */
	uint8_t tls_level;
	uint8_t dane;		/* 1 + index in dest->dane, 0: none */
	struct sockaddr_storage sa;
	socklen_t salen;
};

struct dl_dest {
	struct deliver *d;		/* the shard's deliverer */
	struct dl_dest *hnext;
	struct dl_dest *rnext;		/* run list */
	bool in_run;
	bool slot_wait;			/* on d->slot_waiters */
	struct dl_dest *wnext;
	struct dl_addr *await;		/* on its waiters, or NULL */
	struct dl_dest *awnext;
	char key[ROUTE_DEST_MAX + 1];
	char lookup[ROUTE_HOST_MAX + 1];	/* name to resolve */
	const struct route *route;
	uint64_t cfg_gen;		/* the configuration route came from */
	const struct deliver_cfg *cfg;	/* ... held while route is */
	unsigned lanes;			/* shards it is spread over, dl_lanes() */
	uint64_t gen_seen;		/* newest configuration looked at */
	struct dl_item *head, *tail;
	uint32_t queued;
	uint32_t nitems;		/* items pointing here, anywhere */
	uint64_t last_used_ms;
	unsigned nconn, nidle;
	unsigned nstarting;		/* connecting, or not yet ready */
	struct dl_conn *idle;		/* its idle connections */
	unsigned eff_max;
	unsigned fails;			/* consecutive temporary failures */
	uint64_t hold_until_ms;
	uint64_t hold_ms;
	uint64_t broken_ms;		/* 0, or the last broken hold-off */
	uint64_t gate_ms;		/* 0, or the last wait for new conns */
	uint64_t open_after_ms;		/* no new connection before */
	uint32_t recent;		/* outcomes, deliver_health.c */
	uint8_t nrecent;
	double tokens;
	uint64_t tokens_ms;
	bool resolving;
	bool literal;			/* an address or socket: no DNS */
	uint64_t resolved_ms;		/* 0: never */
	int rstatus;			/* enum resolve_status */
	int rcode;			/* what its mail gets when not OK */
	char renh[12];
	char rwhy[256];
	struct dl_target *targets;
	unsigned ntargets;
	struct dl_dane *dane;	/* hosts with usable TLSA records */
	unsigned ndane;
	struct smtp_client_cfg ccfg;
	struct dl_tls_policy tls;
	/* MTA-STS (mta_sts_dest.c): its state, the policy applied (NULL
	 * before the first look), how long it waits for a first fetch. */
	uint8_t sts_state;		/* enum dl_sts_state */
	bool sts_have;			/* sts_pol holds the policy */
	struct mta_sts_policy *sts_pol;
	uint64_t sts_wait_until_ms;
	uint64_t sts_got_ms;		/* the cache last asked; 0: never */
	/* What the operator sees of it (deliver_stats.c). */
	uint64_t n_delivered, n_deferred, n_bounced;
	uint64_t rate_ms;		/* start of the current minute */
	uint32_t rate_cur, rate_prev;	/* delivered in it, the one before */
	uint64_t last_err_us;
	char last_err[DELIVER_STATS_ERR_MAX];
};

struct dl_rres {			/* one recipient's reply this attempt */
	int code;
	char enhanced[12];
	char *text;
};

/* A transaction in flight on a connection: its item and what it borrows. */
struct dl_ptx {
	struct dl_item *item;
	uint8_t *rec;			/* the record, read back */
	struct envelope env;
	const char **rcpts;
	struct dl_rres *res;
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
	struct sockaddr_storage sa;	/* the address connected to */
	socklen_t salen;
	struct dl_addr *ad;		/* counted there; NULL: a socket */
	struct dl_conn *cnext, *cprev;	/* in ad->conns */
	bool yielding;			/* closing to give its slot away */
	bool starting;			/* not yet ready for its first item */
	/* While idle: in its destination's list, in the shard's list of
	 * idle connections (oldest first) and in an address bucket. */
	struct dl_conn *inext, *iprev;
	struct dl_conn *lnext, *lprev;
	struct dl_conn *anext, *aprev;
	char host[RESOLVE_HOST_MAX + 1];
	char addr[ROUTE_PATH_MAX + 8];	/* "a.b.c.d:p", "[v6]:p", a path */
	struct smtp_client cli;
	char rbuf[DL_RBUF];
	struct buf tx;
	size_t tx_off;
	uint64_t deadline_ms;
	uint64_t deadline_replies;	/* cli.replies when it was set */
	int deadline_wait;		/* and smtp_client_waiting() */
	unsigned msgs;
	/* The item whose record is being read (then sent), and the read's
	 * own descriptor of its segment. */
	struct dl_item *loading;
	int rfd;
	uint8_t *lrec;			/* the buffer it is read into */
	/* The item being sent. */
	struct dl_item *item;
	uint8_t *rec;			/* the record, read back */
	struct envelope env;
	const char **rcpts;
	struct dl_rres *res;
	/*
	 * Transactions pipelined behind `item` (smtp_client_can_pipeline()),
	 * oldest first: the client's callbacks are about `item`, and when it
	 * is done pq[0] takes its place. psending: a pipelined send is under
	 * way, its item sits in `item` meanwhile (conn_pipe_send()).
	 */
	struct dl_ptx pq[DL_PIPE_MAX - 1];
	uint8_t npq;
	bool psending;
	uint32_t next_free;
	/* The session failed through the peer's fault: what an item still
	 * being read for it gets (fail_code 0: it goes back unattempted). */
	int fail_code;
	char fail_enh[12];
	char fail_text[400];
	/*
	 * TLS (deliver_tls.c): NULL until the session asks for the
	 * handshake. tplain: what records decrypt to; ptx: the client's
	 * output being encrypted, from ptx_off.
	 */
	struct tls *tls;
	bool tls_up;			/* the handshake is over */
	bool tls_plain;			/* "may" host that failed: plaintext */
	struct buf tplain;
	struct buf ptx;
	size_t ptx_off;
	char tls_peer[RESOLVE_HOST_MAX + 1];	/* name sent and checked */
	char tls_desc[96];		/* "TLSv1.3 TLS_AES_256_GCM_SHA384" */
	char tls_verify[128];		/* verify level: the result */
	bool sts_counted;		/* its TLS-RPT result is counted */
	uint8_t tls_level;		/* this host's: dl_tls_host_level() */
	const char *tls_auth;		/* "dane", "pkix", "none" */
	char tlsa[16];		/* DANE: "3 1 1", the record matched */
};

struct deliver {
	const struct deliver_host *host;
	void *host_ctx;
	struct io_uring *ring;
	unsigned id;
	const struct deliver_cfg *cfg;
	struct resolver *res;
	bool dnssec;			/* its answers say secure or not */
	char resolver_err[160];
	struct dl_dest *buckets[DL_DEST_BUCKETS];
	struct dl_dest *run;		/* dests with ready items */
	struct dl_dest *slot_waiters;	/* dests waiting for a free slot */
	uint32_t ndests;
	uint64_t dest_sweep_ms;
	struct dl_item **heap;
	uint32_t nheap, heap_cap;
	/*
	 * Connection slots: conn_max of them (this shard's part of
	 * delivery.connections); those below conn_hw have been used, and
	 * free ones among them are on the free list.
	 */
	struct dl_conn *conns;
	uint32_t conn_max, conn_hw;
	uint32_t free_head;
	uint32_t nactive;
	struct dl_conn *idle_old, *idle_new;	/* idle, oldest first */
	struct dl_conn *addr_idle[DL_ADDR_BUCKETS];
	struct dl_addr *addrs[DL_ADDR_BUCKETS];	/* connections by address */
	uint64_t addr_waits;		/* dests that waited for an address */
	uint32_t nyielding;		/* idle ones closing for a waiter */
	uint32_t nwaiting;		/* dests waiting for a slot, this pass */
	uint64_t opened, reused;	/* connections: new, moved by address */
	uint64_t pipelined;		/* items sent behind another in flight */
	uint64_t delivered;		/* recipients, for the log at the end */
	/* The active set: items and their recipients in memory, limits. */
	uint32_t nitems, max_items;
	uint32_t nrcpts, max_rcpts;
	uint64_t parked;		/* recipients parked (a counter) */
	uint64_t parked_logged, park_log_ms;	/* said so, once a minute */
	uint64_t feed_next_ms;		/* not before: the next ask */
	/* Messages the operator bounced lately: their late items bounce. */
	struct { uint64_t qid, until_ms; } bouncing[DL_BOUNCING];
	unsigned nbouncing;
	struct dl_fread **freads;	/* reads for failing items, by slot */
	uint32_t freads_cap, nfreads, fread_gen;
	struct dl_fwait *fwait_head, **fwait_tail;	/* and waiting */
	/* Passes this shard holds failures for (deliver_bounce.c). */
	struct dl_bounce_wait *bwait;
	uint32_t nbwait;
	size_t bwait_bytes;
	bool stopping;
	uint64_t now_ms;
	struct dlog log;
	struct buf logbuf;
	int segdir;
	/* Open segments, each with the reads in flight on it (refs): one
	 * is closed only when none is (dl_segfd_get()/dl_segfd_put()). */
	struct { uint64_t seg; int fd; unsigned refs; } segfd[DL_SEGFD_CACHE];
	struct route default_route;
	struct dl_tls_cache *tls_cache;	/* sessions, hosts without TLS */
	uint64_t tls_handshakes, tls_resumed, tls_failed;
};

/*
 * A remote address (family, address, port) this shard has connections
 * to, of every destination together, for delivery.connections_per_address
 * (deliver_conn.c). It lives while connections or waiters refer to it;
 * a destination waits on one list at a time, so a list is never longer
 * than the shard's destinations.
 */
struct dl_addr {
	struct dl_addr *next;		/* in d->addrs[bucket] */
	uint8_t key[20];		/* dl_sa_key() */
	uint8_t klen;
	uint32_t nconn;
	struct dl_conn *conns;		/* those nconn */
	struct dl_dest *whead, *wtail;	/* waiting for room, oldest first */
};

/*
 * A record read back for an item that fails without a connection (its
 * destination cannot be reached): the results need the envelope, and a
 * 5xx the message for its DSN. Through the ring like a connection's read,
 * so the loop never waits on the disk.
 */
struct dl_fread {
	struct dl_item *it;
	struct dl_peer_buf *peer;	/* NULL: no session */
	uint8_t *buf;
	char *text;
	int fd;
	int code;
	char enhanced[12];
	uint32_t gen;
};

/*
 * An item failing alone that waits for a read slot: at most
 * DL_FREADS_MAX records are read back (and held in memory) at a time.
 */
struct dl_fwait {
	struct dl_fwait *next;
	struct dl_item *it;
	struct dl_peer_buf *peer;
	int code;
	char enhanced[12];
	char text[];
};

/*
 * A shard's exchange with the feeder (deliver_feed.c). The shard counts
 * the recipients it parked (submitted); the feeder, when a scan of the
 * shard's parked table found nothing left, stores how many of them the
 * index had written before that scan (drained): submitted == drained
 * means nothing is parked. want: room the shard asks the feeder to fill.
 */
struct dl_feed {
	_Atomic uint64_t submitted;
	_Atomic uint64_t drained;
	_Atomic uint32_t want;
} __attribute__((aligned(64)));
extern struct dl_feed dl_feeds[64];
extern struct queue_index *dl_index;

/*
 * deliver_bounce.c: one DSN for the failures of a pass (the items of one
 * dispatch of a message).
 *   dl_pass_new     a pass of `items` items (>= 2), or NULL (memory)
 *   dl_pass_room    may this shard hold one more report?
 *   dl_bounce_new   a report, everything copied out of src; NULL: memory
 *   dl_pass_settle  the item's first attempt (or its end) settled it, with
 *                   a report of its failures or NULL; the pass's last
 *                   item sends one DSN of every report
 *   dl_pass_leave   an item goes without settling (the shard stops)
 *   dl_bounce_tick  reports past delivery.bounce_wait go (force: all)
 *   dl_bounce_drop  forget qid's reports (held or deleted)
 *   dl_bounce_free  forget every report (the shard is gone)
 */
struct dl_pass;
struct dl_bounce;
struct dl_bounce_wait;
struct dsn_rcpt;
struct dl_bounce_src {
	uint64_t qid;
	uint64_t arrival_us;
	bool expired;
	unsigned max_age_days;
	uint32_t n;
	const struct dsn_rcpt *rcpt;	/* n of each */
	const struct queue_update *ups;
	const struct dlog_entry *log;
	const char *sender;
	const char *received_from;
	const uint8_t *orig;		/* the message as stored */
	size_t orig_len;
};
struct dl_pass *dl_pass_new(uint32_t items);
bool dl_pass_room(const struct deliver *d);
struct dl_bounce *dl_bounce_new(struct deliver *d,
    const struct dl_bounce_src *src);
void dl_pass_settle(struct deliver *d, struct dl_item *it,
    struct dl_bounce *b);
void dl_pass_leave(struct dl_item *it);
void dl_bounce_tick(struct deliver *d, bool force);
void dl_bounce_drop(struct deliver *d, uint64_t qid);
void dl_bounce_free(struct deliver *d);

/* deliver.c: destinations, the deferred heap, the scheduler */
uint32_t dl_share(uint32_t total);
const struct deliver_cfg *dl_cfg(void);
unsigned dl_nshards(void);
/*
 * Lanes (deliver.c): how many shards deliver r's destinations (1: its
 * owner alone; else every shard, each what it dispatched), the limit of
 * one lane, and which shard this thread dispatches for (-1: none; the
 * feeder sets the shard it refills).
 */
unsigned dl_lanes(const struct deliver_cfg *cfg, const struct route *r);
unsigned dl_dest_max(const struct dl_dest *ds);
void dl_dispatch_as(int shard);
void dl_item_free(struct deliver *d, struct dl_item *it);
/* An item's memory and its hold on its configuration, not counted. */
void dl_item_destroy(struct dl_item *it);
/* A hold on cfg's memory (its routes, TLS contexts); NULL: none. */
void dl_cfg_hold(const struct deliver_cfg *cfg);
void dl_cfg_drop(const struct deliver_cfg *cfg);
void dl_dest_run(struct deliver *d, struct dl_dest *ds);
struct dl_item *dl_dest_pop(struct dl_dest *ds);
void dl_dest_slow(struct deliver *d, struct dl_dest *ds);
void dl_dest_ok(struct dl_dest *ds);
void dl_item_schedule(struct deliver *d, struct dl_item *it);

/*
 * deliver_heap.c: the deferred heap, by due time
 *   dl_heap_push     0, or -ENOMEM
 *   dl_heap_pop      the item due first, or NULL
 *   dl_heap_take_if  every item for which take(it, arg) holds, at most
 *                    max of them, as a list; the rest heapified again
 *   dl_heap_take     every item of qid (0: all), as a list
 */
int dl_heap_push(struct deliver *d, struct dl_item *it);
struct dl_item *dl_heap_pop(struct deliver *d);
struct dl_item *dl_heap_take_if(struct deliver *d,
    bool (*take)(const struct dl_item *, void *), void *arg, uint32_t max);
struct dl_item *dl_heap_take(struct deliver *d, uint64_t qid);

/*
 * deliver_result.c: results (index updates, the delivery log, DSNs),
 * records read back for failing items
 */
int dl_segfd_get(struct deliver *d, uint64_t seg);
void dl_segfd_put(struct deliver *d, int fd);
const char *dl_item_verify(const struct dl_item *it, const uint8_t *buf,
    ssize_t n, struct envelope *env);
bool dl_item_read_start(struct deliver *d, struct dl_item *it, uint64_t ud,
    int *fd, uint8_t **buf);
void dl_item_done(struct deliver *d, struct dl_item *it, const struct dl_rres
    *res, const uint8_t *rec, const struct envelope *env,
    const struct dl_peer *peer);
void dl_item_done_all(struct deliver *d, struct dl_item *it, int code,
    const char *enh, char *text, const uint8_t *rec,
    const struct envelope *env, const struct dl_peer *peer);
void dl_item_unreadable(struct deliver *d, struct dl_item *it, const char
    *why);
void dl_item_fail_all(struct deliver *d, struct dl_item *it, int code, const
    char *enh, const char *text, const struct dl_peer *peer);
void dl_handle_fread(struct deliver *d, uint64_t ud, int res);
void dl_dest_fail_ready(struct deliver *d, struct dl_dest *ds, int code, const
    char *enh, const char *text, const struct dl_peer *peer);
void dl_dest_refill(struct deliver *d, struct dl_dest *ds);

/*
 * deliver_conn.c: outbound connections, the smtp_client callbacks,
 * connecting, DNS answers
 */
uint64_t dl_cud(unsigned op, struct dl_conn *c);
void dl_conn_free(struct dl_conn *c);
void dl_conn_close(struct dl_conn *c);
void dl_conn_deadline(struct dl_conn *c);
void dl_set_idle(struct dl_conn *c, bool idle);
void dl_conn_flush(struct dl_conn *c);
void dl_conn_item_clear(struct dl_conn *c);
/* The items pipelined behind the current one: marked dropped (qid), or
 * released at shutdown (their attempts never finish). */
void dl_conn_pipe_drop(struct dl_conn *c, uint64_t qid);
void dl_conn_pipe_free(struct dl_conn *c);
void dl_conn_next(struct dl_conn *c);
void dl_handle_oread(struct dl_conn *c, int res);
bool dl_conn_open(struct deliver *d, struct dl_dest *ds, unsigned first);
bool dl_conn_slot_free(const struct deliver *d);
void dl_slot_wake(struct deliver *d, unsigned n);
struct dl_conn *dl_conn_reuse(struct deliver *d, struct dl_dest *ds);
bool dl_conn_fits(const struct dl_conn *c, const struct dl_dest *ds,
    unsigned k);
void dl_conn_move(struct dl_conn *c, struct dl_dest *ds, unsigned k);
bool dl_conn_yield(struct deliver *d, struct dl_dest *ds);
void dl_handle_connect(struct dl_conn *c, int res);
void dl_handle_orecv(struct dl_conn *c, int res);
void dl_handle_osend(struct dl_conn *c, int res);
void dl_dest_resolved(void *arg, const struct resolve_result *r);
bool dl_dest_literal(struct dl_dest *ds);
void dl_set_port(struct sockaddr_storage *sa, uint16_t port);
size_t dl_sa_key(const struct sockaddr_storage *sa, uint8_t key[20]);
uint32_t dl_sa_bucket(const struct sockaddr_storage *sa);
void dl_conn_timeout(struct dl_conn *c);

/*
 * deliver_addr.c: connections by address (connections_per_address)
 *   dl_addr_full/wait    is ds's address at its cap; wait on it
 *   dl_conn_addr_set     count c against its address (on connect)
 *   dl_conn_addr_release give c's place back, waking a waiter
 *   dl_conn_hand_over    move c to a destination waiting on its address
 */
bool dl_addr_full(struct deliver *d, const struct dl_dest *ds);
void dl_addr_wait(struct deliver *d, struct dl_dest *ds);
void dl_addr_free_all(struct deliver *d);
void dl_conn_addr_set(struct dl_conn *c);
void dl_conn_addr_release(struct dl_conn *c);
bool dl_conn_hand_over(struct dl_conn *c);

/*
 * deliver_tls.c: TLS to next hops
 *   dl_tls_policy        ds->tls and the TLS bits of ds->ccfg
 *   dl_tls_peer_name     the name a certificate must carry for host
 *   dl_tls_same          may c (of old) serve ds at target t as it is?
 *   dl_tls_conn_start    after smtp_client_init(): plaintext fallback,
 *                        implicit TLS
 *   dl_tls_handshake     start the handshake (the ClientHello waits)
 *   dl_tls_input         records in, plaintext to the client
 *   dl_tls_output        records for c->tx (empty), 0 or -1
 *   dl_tls_conn_free     the session kept, the TLS state freed
 *   dl_tls_plain_*       hosts whose handshake failed under "may"
 *   dl_conn_peer         the delivery log's view of c
 */
void dl_tls_policy(struct dl_dest *ds);
unsigned dl_tls_host_level(const struct dl_dest *ds,
    const struct dl_target *t);
uint16_t dl_tls_tlsa_port(const struct dl_dest *ds);
const char *dl_tls_peer_name(const struct dl_dest *ds, const char *host);
bool dl_tls_same(const struct dl_conn *c, const struct dl_dest *old,
    const struct dl_dest *ds, const struct dl_target *t);
void dl_tls_conn_start(struct dl_conn *c);
void dl_tls_handshake(struct dl_conn *c);
enum smtp_client_event dl_tls_input(struct dl_conn *c, const char *p,
    size_t n);
int dl_tls_output(struct dl_conn *c);
void dl_tls_conn_free(struct dl_conn *c);
bool dl_tls_plain_wanted(struct deliver *d, const struct sockaddr_storage *sa);
void dl_tls_plain_remember(struct deliver *d,
    const struct sockaddr_storage *sa);
void dl_tls_cache_free(struct deliver *d);
void dl_conn_peer(const struct dl_conn *c, struct dl_peer *p);

/*
 * deliver_tls.c, for MTA-STS: ds->tls raised to what a policy needs:
 * enforce, verify (PKIX and the MX host's name) against mta_sts.ca_file;
 * testing, the certificate checked against it without failing.
 */
void dl_tls_sts(struct dl_dest *ds, bool enforce);

/*
 * mta_sts_dest.c: MTA-STS on a destination and its sessions
 *   dl_sts_apply       after DNS: GO, WAIT (a first fetch runs: stay on
 *                      the run list) or FAIL (text: the reply for its mail)
 *   dl_sts_policy_name the delivery log's tls_policy of an attempt to MX
 *                      host mx (NULL: none made), or NULL
 *   dl_sts_tls_done    a handshake finished: counted for TLS-RPT
 *   dl_sts_tls_failed  a handshake failed: counted, by what failed
 *   dl_sts_plain       a session went on (or failed) without TLS
 *   dl_sts_free        the destination goes
 */
enum dl_sts_step { DL_STS_GO, DL_STS_WAIT, DL_STS_FAIL };
enum dl_sts_step dl_sts_apply(struct deliver *d, struct dl_dest *ds,
    char *text, size_t len);
const char *dl_sts_policy_name(const struct dl_dest *ds, const char *mx);
void dl_sts_tls_done(struct dl_conn *c);
void dl_sts_tls_failed(struct dl_conn *c);
void dl_sts_plain(struct dl_conn *c);
void dl_sts_free(struct dl_dest *ds);

/*
 * deliver_health.c: which results slow a destination down
 *   ok         a message was delivered
 *   soft       one session failed (a 421): one connection less; true
 *              when failures dominate and the destination is held off
 *   tx_failed  a transaction deferred everything (not by a 421)
 *   down       nothing gets through (connects, greetings all refused)
 *   broken     the peer broke the protocol
 *   may_open   whether a new connection may be opened now
 */
void dl_health_ok(struct dl_dest *ds);
bool dl_health_soft(struct deliver *d, struct dl_dest *ds);
void dl_health_tx_failed(struct deliver *d, struct dl_dest *ds);
void dl_health_down(struct deliver *d, struct dl_dest *ds);
void dl_health_broken(struct deliver *d, struct dl_dest *ds);
bool dl_health_may_open(const struct deliver *d, const struct dl_dest *ds);

/*
 * deliver_guard.c: what a destination may dial of what DNS gave it
 *   dl_dest_verdict  set status, the reply its mail gets (rcode, renh)
 *                    and why
 *   dl_dest_targets  ds->targets from r (RESOLVE_OK), without what the
 *                    guard refuses; the verdict when nothing is left
 */
void dl_dest_verdict(struct dl_dest *ds, int status, const char *why);
void dl_dest_targets(struct deliver *d, struct dl_dest *ds,
    const struct resolve_result *r);

/*
 * deliver_stats.c: the counters of lib/stats.h and the operator's view
 *   dl_stats_line     one delivery log line (enum dlog_status st) of it
 *   dl_stats_publish  the shard's gauges, from the tick
 *   dl_stats_answer   a DELIVER_CTL_STATS request (takes ctl)
 *   dl_stats_drop     one never answered (the shard is gone; takes ctl)
 *   dl_post           an item into a shard's inbox
 */
void dl_stats_line(struct deliver *d, struct dl_dest *ds, int st, int code,
    const char *text, uint64_t delay_us);
void dl_stats_publish(const struct deliver *d);
void dl_stats_answer(struct deliver *d, struct dl_item *ctl);
void dl_stats_drop(struct dl_item *ctl);
void dl_post(unsigned owner, struct dl_item *it);

/* deliver_feed.c: the active set's feeder */
bool dl_start_park(unsigned owner, struct dl_item *it, uint64_t next_try_us);
void dl_feed_ask(struct deliver *d);
bool dl_feed_parked(const struct deliver *d);
void dl_feed_free(void);

#endif
