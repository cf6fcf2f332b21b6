/*
 * resolver_int.h - what the two files of the resolver share: its tables'
 * types and limits, and the functions one calls in the other. Not for
 * use outside deliver/ (the interface is resolver.h).
 */
#ifndef SLUICE_RESOLVER_INT_H
#define SLUICE_RESOLVER_INT_H

#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "../proto/dns.h"
#include "resolver.h"

#define RESOLVER_QUERIES_MAX	256	/* (name, type) queries in flight */
#define RESOLVER_LOOKUPS_MAX	1024	/* lookups in progress */
#define RESOLVER_TCP_MAX	8	/* TCP connections at once */
#define RESOLVER_TTL_MAX_S	3600	/* cap on positive answers */
#define RESOLVER_NEG_TTL_MAX_S	3600	/* cap on NXDOMAIN / NODATA */
#define RESOLVER_FAIL_TTL_S	5	/* SERVFAIL, REFUSED, ... */
#define RESOLVER_UDP_BUF	65536	/* any UDP datagram fits */
#define RESOLVER_TCP_BUF_MIN	1024
#define RESOLVER_TIMEOUT_MS_MAX	60000
/*
 * A burst of RESOLVER_QUERIES_MAX answers must fit the UDP socket's
 * receive buffer while the shard is busy elsewhere, or the kernel drops
 * them (each small datagram costs about 2 KiB of buffer on loopback).
 */
#define RESOLVER_UDP_RCVBUF	(RESOLVER_QUERIES_MAX * 4096)
/*
 * Within a try a UDP query is sent again after the retransmission timeout
 * (from the server's measured round trip, RFC 6298's way), doubling each
 * time, at most RESOLVER_RESENDS_MAX times: a lost datagram costs about
 * a round trip or two, not the try's whole timeout_ms. Never sooner than
 * RESOLVER_RTO_MIN_MS (a recursive server may be working on it), never
 * later than half the try's timeout.
 */
#define RESOLVER_RESENDS_MAX	3
#define RESOLVER_RTO_MIN_MS	200
#define RESOLVER_RTO_INIT_MS	500
#define RESOLVER_ATTEMPTS_MAX	10
#define RESOLVER_CACHE_MAX	1000000
#define RESOLVER_SYNC_OP	1	/* the op of resolver_lookup_sync's ring */
#define RESOLVER_RESOLV_LINES	1000	/* lines read from resolv.conf */

#define RSLV_KIND_SHIFT		20
#define RSLV_SLOT_MASK		((1u << RSLV_KIND_SHIFT) - 1)
#define RSLV_GEN_MASK		0xffffffu	/* generation bits of gen */
#define RSLV_INSTANCE_SHIFT	24

/* Tags resolvers apart (see user_data above); shared by every shard. */

static_assert(RESOLVER_QUERIES_MAX <= RSLV_SLOT_MASK, "slot fits user_data");
static_assert(RESOLVE_HOST_MAX >= DNS_NAME_MAX, "a DNS name fits a host");

/* What a completion is for (the slot part of user_data says which). */
enum rslv_kind {
	K_UDP_RECV = 1,
	K_UDP_SEND,	/* slot: query */
	K_TCP,		/* slot: TCP connection (one operation at a time) */
	K_WAKE,		/* a NOP that brings finished lookups to the loop */
	K_CANCEL,	/* result of a cancellation; nothing to do */
};

/* Per-host address lookup state. */
enum addr_state {
	AS_WAIT = 0,
	AS_DATA,
	AS_NODATA,
	AS_NXDOMAIN,
	AS_FAIL,
};

/* A rslv_request's sub: the MX of the lookup's name, or A/AAAA of target i. */
#define SUB_MX		(-1)
#define SUB_A(i)	((int)(i) * 2)
#define SUB_AAAA(i)	((int)(i) * 2 + 1)
#define SUB_TLSA(i)	((int)(i) + 2 * RESOLVE_MX_MAX)
#define SUB_IS_TLSA(s)	((s) >= 2 * RESOLVE_MX_MAX && (s) < SUB_VAL(0))
/* validate: the DS and DNSKEY records fetched to check the answers. */
#define VAL_FETCH_MAX	32
#define VAL_ANS_MAX	64
#define SUB_VAL(k)	((int)(k) + 3 * RESOLVE_MX_MAX)
#define SUB_IS_VAL(s)	((s) >= SUB_VAL(0))

/*
 * An answer, cached or not. kind is a dns_kind; DNS_KIND_ERROR covers
 * every temporary failure (RCODE, timeout, network), explained in why.
 */
struct centry {
	struct centry *hnext;		/* hash chain */
	struct centry *lprev, *lnext;	/* LRU, head = most recent */
	uint64_t hash;
	uint64_t expires_ms;
	uint32_t ttl_s;			/* 0: not to be cached */
	uint16_t type;
	uint8_t kind;
	bool ad;
	bool bogus;	/* SERVFAIL to our DO query (DNSSEC on) */
	uint8_t *wire;	/* validate: the message itself, for its RRSIGs */
	size_t wirelen;
	bool null_mx;
	uint8_t ncname;	/* CNAMEs the answer followed */
	char *cname;	/* their last target, when the chain ends without the
			 * records asked for (NODATA: chase it) or in NXDOMAIN */
	unsigned n;
	void *recs;	/* n struct dns_mx, n addresses of 16 octets, or n
			 * struct dns_tlsa */
	char name[DNS_NAME_MAX + 1];
	char why[96];
};

struct target_state {
	uint8_t a, aaaa;		/* enum addr_state */
	bool insecure;			/* an address answer without AD */
	bool bogus;			/* an address answer was SERVFAIL */
	unsigned na, n6;
	uint8_t a4[RESOLVE_ADDR_MAX][4];
	uint8_t a6[RESOLVE_ADDR_MAX][16];
};

struct lookup {
	struct lookup *next;		/* done FIFO */
	struct lookup *aprev, *anext;	/* every lookup, for destroy */
	resolve_cb cb;
	void *arg;
	char name[DNS_NAME_MAX + 1];
	bool mx;
	bool implicit;			/* MX NODATA: the name itself */
	bool decided;			/* status set before the address phase */
	bool authenticated;
	uint8_t mx_sec;			/* enum resolve_sec */
	uint16_t tlsa_port;		/* 0: no TLSA lookups */
	bool dnssec;			/* the resolver's DNSSEC is on */
	unsigned outstanding;		/* requests not answered yet */
	/* CNAMEs followed so far for each request (index sub + 1), over
	 * every answer of its chain: at most DNS_CNAME_MAX in all. */
	uint8_t hops[1 + 3 * RESOLVE_MX_MAX + VAL_FETCH_MAX];
	struct rslv_val *val;		/* validate mode, else NULL */
	char mx_alias[DNS_NAME_MAX + 1];	/* the MX chain's last target */
	enum resolve_status status;
	char why[160];
	char fail[96];			/* first temporary failure seen */
	unsigned ntargets;
	struct target_state ts[RESOLVE_MX_MAX];
	struct resolve_target targets[RESOLVE_MX_MAX];
};

/* A lookup finished before it started (bad name, too many lookups). */
struct early {
	struct early *next;
	resolve_cb cb;
	void *arg;
	enum resolve_status status;
	char why[160];
};

struct waiter {
	struct waiter *next;
	struct lookup *lk;
	int sub;
};

/* A rslv_request waiting for a free query slot. */
struct pending {
	struct pending *next;
	struct lookup *lk;
	int sub;
	uint16_t type;
	char name[DNS_NAME_MAX + 1];
};

struct rquery {
	uint32_t gen;
	bool used;
	bool finished;		/* answered or failed; waits for its send */
	bool sending;		/* a UDP send of wire is in flight */
	bool resend;		/* send again when that send completes */
	bool tcp;		/* truncated over UDP: now over TCP */
	bool tcp_wait;		/* waiting for a free TCP connection */
	int tconn;		/* TCP connection, -1: none (yet) */
	uint16_t type;
	uint16_t id;
	unsigned tries;
	unsigned resends;	/* early resends in the current try */
	uint64_t sent_ms;	/* the current try's first send */
	uint64_t deadline_ms;	/* of the current try */
	int last_err;		/* errno of the last failed try */
	struct waiter *waiters;
	char name[DNS_NAME_MAX + 1];
	size_t wirelen;		/* of the message, after the 2-octet prefix */
	uint8_t wire[2 + DNS_QUERY_MAX];
};

enum tcp_state {
	T_CONNECT = 1,
	T_SEND,
	T_RECV,
};

struct tconn {
	bool used;
	bool inflight;		/* one operation on the ring */
	bool aborting;		/* cancelled: close when it completes */
	uint32_t gen;
	int fd;
	enum tcp_state state;
	uint32_t qidx, qgen;	/* the query it serves */
	size_t sent;
	uint8_t *buf;		/* the answer, with its length prefix */
	size_t len, cap;
};

/* One answer used by a lookup, or one record set fetched to check them. */
struct val_msg {
	int sub;		/* the request it answered */
	uint8_t *wire;		/* NULL: the query failed */
	size_t len;
};

struct val_fetch {
	char name[DNS_NAME_MAX + 1];
	uint16_t type;		/* DS or DNSKEY */
	bool done;
	struct val_msg m;
};

/* A lookup's validation (resolver_dnssec.c). */
struct rslv_val {
	struct val_msg ans[VAL_ANS_MAX];
	unsigned nans;
	bool overflow;		/* more answers than kept: bogus */
	struct val_fetch f[VAL_FETCH_MAX];
	unsigned nf;
	bool done;
	/* What the walks so far worked out (resolver_dnssec.c). */
	struct val_memo *memo;
};

struct resolver {
	struct io_uring *ring;
	unsigned op;
	uint32_t instance;	/* 1..255 */
	struct resolver_cfg cfg;
	char server_text[INET6_ADDRSTRLEN + 8];
	int udp_fd;
	bool recv_armed;
	bool recv_retry;	/* re-arm at the next tick */
	bool wake_armed;
	uint64_t now_ms;
	uint32_t srtt_ms, rttvar_ms;	/* the server's round trip; 0: none yet */
	uint8_t *udp_buf;
	struct dns_answer *ans;	/* parse scratch */
	struct rquery *q;	/* RESOLVER_QUERIES_MAX */
	unsigned nquery;
	struct tconn tc[RESOLVER_TCP_MAX];
	struct pending *pend_head, *pend_tail;
	struct lookup *done_head, *done_tail;
	struct early *early_head, *early_tail;
	struct lookup *all;
	unsigned nlookups;
	struct centry **bucket;
	size_t nbucket;		/* power of two, 0: no cache */
	unsigned ncache;
	struct centry *lru_head, *lru_tail;
	void *anchors;		/* validate: an ldns_rr_list */
	uint8_t rnd[256];
	size_t rnd_left;
	uint64_t rnd_counter;
};

/* resolver_wire.c */
void rslv_udp_resend_due(struct resolver *r, struct rquery *q);

/* resolver.c: helpers, the cache, lookups */
uint32_t rslv_rnd32(struct resolver *r);
uint64_t rslv_ud_make(const struct resolver *r, enum rslv_kind kind,
    uint32_t slot, uint32_t gen);
void rslv_centry_free(struct centry *e);
struct centry *rslv_cache_get(struct resolver *r, const char *name,
    uint16_t type);
bool rslv_cache_put(struct resolver *r, struct centry *e);
void rslv_request(struct resolver *r, struct lookup *lk, int sub,
    const char *name, uint16_t type);
void rslv_feed(struct resolver *r, struct lookup *lk, int sub,
    const struct centry *e);
void rslv_feed_local_fail(struct resolver *r, struct lookup *lk, int sub,
    const char *name, uint16_t type, const char *why);

/* resolver_dnssec.c: validate mode */
void *rslv_anchor_load(const char *path, char *why, size_t whylen);
void rslv_anchor_free(void *anchors);
void rslv_val_record(struct lookup *lk, int sub, const struct centry *e);
unsigned rslv_val_step(struct resolver *r, struct lookup *lk);
void rslv_val_apply(struct resolver *r, struct lookup *lk);
void rslv_val_free(struct lookup *lk);

/* resolver_wire.c: queries on the wire, UDP and TCP */
void rslv_tcp_abort(struct resolver *r, struct tconn *c);
void rslv_try_failed(struct resolver *r, struct rquery *q, int err);
void rslv_submit_req(struct resolver *r, struct lookup *lk, int sub,
    const char *name, uint16_t type);
void rslv_arm_recv(struct resolver *r);
void rslv_udp_recv_done(struct resolver *r, int res);
void rslv_udp_send_done(struct resolver *r, struct rquery *q, int res);
void rslv_tcp_done(struct resolver *r, struct tconn *c, int res);

#endif
