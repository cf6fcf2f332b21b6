/*
 * gen.h - configuration generations: what a reload swaps.
 *
 * Every configuration sluiced runs with is a generation: the loaded
 * struct config plus what is built from it once (the SMTP sessions'
 * settings, the inbound TLS context, delivery's view, and the listening
 * sockets of listeners the generation adds). Generation 1 is the one
 * sluiced starts with; each successful reload makes the next.
 *
 * A generation is reference-counted. The daemon holds the current one;
 * each shard holds the one it runs with (it takes a new one at a safe
 * point of its loop, handed over through gen_next and its eventfd);
 * each inbound connection holds the one it was accepted under until it
 * closes, and an AUTH check in flight holds its session's. So a session
 * keeps the settings, certificates and users it started with, and new
 * sessions get the new ones.
 *
 * When the last holder lets go, the generation's inbound TLS context
 * (its private keys) and its listening sockets are released at once; the
 * parsed configuration itself (and delivery's TLS contexts) goes once
 * delivery no longer points into it: queued items and destinations hold
 * the configuration their route came from (dcfg.holds), and the main
 * thread frees a retired generation whose count is down to zero
 * (gen_retired_sweep()). Generation 1 is never freed before the stop:
 * the start-up code, control and metrics keep its settings (only ones a
 * reload cannot change) for the daemon's life.
 *
 * Contract: gen_create() and gen_release() of the last reference run on
 * any thread; loading (files, keys, sockets) is done by the caller of
 * gen_create(), never on a shard.
 */
#ifndef SLUICE_GEN_H
#define SLUICE_GEN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../deliver/deliver_cfg.h"
#include "../proto/smtp_server.h"
#include "auth.h"
#include "config.h"

struct tls_ctx;
struct budget;

struct config_gen {
	_Atomic uint32_t refs;
	uint64_t id;			/* 1 at start, +1 per reload */
	struct config cfg;
	struct smtp_server_cfg scfg;	/* the sessions' settings */
	struct tls_ctx *tls;		/* NULL: no listener has TLS */
	struct deliver_cfg dcfg;	/* delivery's view of cfg */
	/* With AUTH offered: the check's hash for unknown users (auth.h). */
	char auth_dummy[AUTH_DUMMY_MAX];
	/*
	 * Listening sockets made for this generation, one per listener and
	 * shard (lfd[listener * nshards + shard]), -1 where the shard keeps
	 * the socket it has (same address) or none was made (generation 1:
	 * the shards bind their own). A shard takes its own out (sets -1).
	 */
	int *lfd;
	unsigned nshards;
	/*
	 * Its DKIM signer threads over cfg.dkim_policy (NULL: no keys). A
	 * session's message is signed by its generation's pool; a pool is
	 * stopped once its generation is retired, by gen_retired_sweep()
	 * on the main thread (stopping joins threads: never on a shard).
	 */
	struct dkim_pool *signers;
	/* Items and destinations pointing into cfg: dcfg.holds. */
	_Atomic uint64_t dl_holds;
	struct config_gen *retired_next;	/* on the retired list */
};

/*
 * A generation around *cfg (moved in: *cfg is left zeroed), one
 * reference held by the caller. tls: the inbound context made from it
 * (owned from now on). memory: limits.memory's budget, shared by every
 * generation. NULL when out of memory (cfg and tls freed).
 */
struct config_gen *gen_create(struct config *cfg, struct tls_ctx *tls,
    struct budget *memory, unsigned nshards);

/*
 * g is in force: its number is taken (a generation refused before this
 * leaves no gap). gen_create() numbers a generation one more than the
 * last committed, so generations are made one at a time.
 */
void gen_commit_id(const struct config_gen *g);

/* One more reference to g (which must hold one already). Returns g. */
struct config_gen *gen_hold(struct config_gen *g);

/* Drop a reference; the last one releases g's keys and sockets. */
void gen_release(struct config_gen *g);

/*
 * Free a generation nothing ever saw (a refused reload's): the caller's
 * is its only reference, and nothing points into its configuration.
 */
void gen_discard(struct config_gen *g);

/*
 * Start g's DKIM signers when it has keys (efds: the shards' eventfds).
 * 0, or -errno. Logs the key and thread counts.
 */
int gen_start_signers(struct config_gen *g, const int *efds);

/*
 * Main thread: stop the signers of generations nobody holds any more,
 * and free those delivery no longer points into (not generation 1).
 */
void gen_retired_sweep(void);

/* At stop, after every holder is gone: free the parsed configurations. */
void gen_retired_free(void);

/* How many generations are in memory: the one in force and the retired
 * ones not yet freed (sluicectl status: config_generations_kept). */
unsigned gen_live(void);

/*
 * Settings a running daemon cannot change: the first one whose value
 * differs between old and new is named in why ("spool"); false when
 * none does.
 */
bool gen_restart_key(const struct config *old, const struct config *new,
    char *why, size_t whylen);

/*
 * One line of what changed between old and new, at a coarse level
 * ("routes, listeners (+1 -0), tls"), or "no change".
 */
void gen_summary(const struct config *old, const struct config *new,
    char *out, size_t outlen);

/* Is listener l of cfg at the same address as some listener of other? */
int gen_listener_find(const struct config *cfg,
    const struct sockaddr_storage *sa, socklen_t salen);

#endif
