/*
 * shard.h - one event loop per core: an io_uring ring, its own listening
 * sockets (SO_REUSEPORT), its SMTP sessions and its spool segment.
 *
 * A shard shares nothing mutable with other shards. It talks to the
 * committer thread through queue_commit.h, and is told to stop through its
 * eventfd. Outbound connections (delivery) and the DNS socket will live on
 * the same ring, as further operation kinds in shard.c's dispatch.
 */
#ifndef SLUICE_SHARD_H
#define SLUICE_SHARD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"

struct shard;
struct committer;
struct smtp_server_cfg;
struct tls_ctx;

/*
 * Create shard `id`: its ring, its listening sockets, and its first spool
 * segment (sequence numbers continue after seg_seq). Fatal errors (cannot
 * bind, cannot create the ring) are reported and return NULL.
 */
struct shard *shard_create(unsigned id, const struct config *cfg,
    const struct smtp_server_cfg *scfg, struct tls_ctx *tls, uint64_t seg_seq,
    uint64_t last_qid);

/*
 * The TLS server context every shard shares, made once before privileges
 * are dropped: NULL when no listener has TLS. Without tls.cert, a
 * self-signed certificate for the host name is made in the spool at first
 * start and reused after (logged either way). Fatal errors exit.
 */
struct tls_ctx *shard_tls_setup(const struct config *cfg);

/* The eventfd that wakes this shard (committer results, stop). */
int shard_eventfd(const struct shard *sh);

/* Start the shard's thread; the committer must exist by then. */
int shard_start(struct shard *sh, struct committer *c);

/* Before shard_start(): sign messages through pool (dkim/dkim.h). */
struct dkim_pool;
void shard_set_signer(struct shard *sh, struct dkim_pool *pool);
/* smtp_server_cfg.data_tap over the loaded config (ctx): the body hash. */
struct smtp_session;
void shard_dkim_tap(void *ctx, struct smtp_session *s, const char *p,
    size_t n);

/* Ask shards[0..n) to stop (graceful, bounded by shutdown_timeout): every
 * one refuses new connections from the moment this returns. */
void shard_request_stop(struct shard *const *shards, unsigned n);

/* Wait for the thread to finish (it has stopped everything by then). */
void shard_join_thread(struct shard *sh);
/* Free what the shard holds; after shard_join_thread(). */
void shard_free(struct shard *sh);

/* Messages this shard acknowledged with 250. */
uint64_t shard_messages(const struct shard *sh);

#endif
