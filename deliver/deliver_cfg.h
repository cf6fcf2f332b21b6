/*
 * deliver_cfg.h - the settings delivery reads, as the configuration holds
 * them. engine/config.h embeds these structs in struct config and hands
 * delivery a struct deliver_cfg of pointers into it, so that deliver/
 * never includes the runtime that loads them.
 */
#ifndef SLUICE_DELIVER_CFG_H
#define SLUICE_DELIVER_CFG_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "../lib/net.h"

/* Listeners delivery knows of (the configuration allows as many). */
#define DELIVER_LISTEN_MAX 64

struct route_table;
struct deliver_tls_ctxs;

struct dns_cfg {
	char *resolver;			/* "host:port"; NULL: resolv.conf */
	uint32_t timeout_ms;		/* per try */
	uint32_t attempts;		/* tries before a temporary failure */
	char *dnssec;			/* NULL: auto (docs/dns.md) */
	uint32_t dnssec_mode;		/* enum resolve_dnssec_cfg */
	char *trust_anchor;		/* NULL: RESOLVER_ROOT_KEY */
};

/* The client's SMTP_CLIENT_DEPTH_MAX (static_assert in deliver_conn.c). */
#define DELIVERY_PIPELINE_DEPTH_MAX 4

struct delivery_cfg {
	uint32_t paused;		/* accept and queue, deliver nothing */
	char *log;			/* delivery log path, "-": stderr */
	uint32_t connect_timeout_ms;
	uint32_t reply_timeout_ms;	/* greeting and command replies */
	uint32_t data_timeout_ms;	/* reply after the final dot */
	uint32_t idle_keep_ms;		/* idle connection kept for reuse */
	uint32_t connections;		/* outbound, all shards together */
	uint32_t connections_per_address;	/* per shard; 0: no cap */
	uint32_t active_messages;	/* items in memory, all shards */
	uint32_t active_recipients;	/* their recipients */
	uint32_t destination_keep_ms;	/* an unused destination's state */
	uint32_t bounce_wait_ms;	/* failures held for one DSN a pass */
	uint32_t chunking;		/* BDAT to servers offering CHUNKING */
	uint32_t pipeline_depth;	/* transactions in flight per connection,
					 * 1..DELIVERY_PIPELINE_DEPTH_MAX */
	uint32_t spread;		/* big destinations: a lane per shard */
	char *tls;			/* none, may, encrypt, verify */
	uint32_t tls_level;		/* the same as an enum route_tls */
	char *tls_ca_file;		/* NULL: the system's CA store */
	/* Never dialled when found through an MX lookup (deliver_guard.c). */
	struct cidr *denied_networks;
	size_t ndenied_networks;
};

/* MTA-STS for MX delivery (deliver/mta_sts.h, docs/tls.md). */
struct mta_sts_cfg {
	uint32_t enabled;
	char *ca_file;			/* NULL: the system's CA store */
	uint32_t fetch_timeout_ms;	/* a whole fetch: TXT and HTTPS */
	uint32_t wait_ms;		/* mail waits for a first fetch */
};

/*
 * Everything delivery is configured with. The pointees stay as long as
 * this does: for the whole run, or (a reload's) while it is held.
 */
struct deliver_cfg {
	const char *hostname;		/* EHLO name, DSN reporting MTA */
	const char *spool;		/* segments and a relative log path */
	const char *dev_redirect;	/* NULL: off */
	const struct route_table *routes;
	const struct dns_cfg *dns;
	const struct delivery_cfg *delivery;
	const struct mta_sts_cfg *mta_sts;	/* NULL: off */
	/* sluice's own listeners: an MX host among them is a loop. */
	struct sockaddr_storage listen[DELIVER_LISTEN_MAX];
	unsigned nlisten;
	/*
	 * Which configuration this is: a reload makes a newer one. A
	 * destination follows the route of the newest configuration it has
	 * seen an item of.
	 */
	uint64_t generation;
	/*
	 * Items and destinations that point into this configuration (their
	 * routes, its TLS contexts) count themselves here, so that its owner
	 * knows when an older one can go (deliver_cfg_unused()). NULL: not
	 * counted, it lives as long as delivery.
	 */
	_Atomic uint64_t *holds;
	/* Outbound TLS contexts, deliver_tls_init(); read-only after. */
	struct deliver_tls_ctxs *tls;
};

#endif
