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

/* Listeners a shard serves at once (conn.listener is 8 bits). */
#define SHARD_LISTEN_MAX 16

struct shard;
struct committer;
struct smtp_server_cfg;
struct tls_ctx;

/*
 * Create shard `id` running generation g (engine/gen.h; the shard takes
 * a reference of its own): its ring, its listening sockets, and its
 * first spool segment (sequence numbers continue after seg_seq). Fatal
 * errors (cannot bind, cannot create the ring) are reported and exit.
 */
struct config_gen;
struct shard *shard_create(unsigned id, struct config_gen *g,
    uint64_t seg_seq, uint64_t last_qid);

/*
 * Hand the shard generation g (a reference the caller took for it): it
 * switches at the next safe point of its loop, taking or closing
 * listening sockets as g's listeners say. A generation handed over
 * earlier and not yet taken is dropped. Any thread.
 */
void shard_reload(struct shard *sh, struct config_gen *g);
/* Has the shard taken the generation last handed to it? Any thread. */
bool shard_reload_taken(struct shard *sh);

/*
 * The TLS server context every shard shares, made once before privileges
 * are dropped: NULL when no listener has TLS. Without tls.cert, a
 * self-signed certificate for the host name is made in the spool at first
 * start and reused after (logged either way). Fatal errors exit.
 */
struct tls_ctx *shard_tls_setup(const struct config *cfg);
/*
 * The same for a reload (start false: the self-signed certificate is
 * not made, only read): NULL with why[0] == '\0' when no listener has
 * TLS, NULL with the reason in why when the files cannot be used.
 */
struct tls_ctx *shard_tls_load(const struct config *cfg, bool start,
    char *why, size_t whylen);

/*
 * A listening socket for l (SO_REUSEPORT: one per shard), or -errno.
 * Made by shard_create() at start, and by a reload for a listener it adds.
 */
int shard_listen_socket(const struct listen_cfg *l);

/*
 * Is a socket listening on this address and port, or on the wildcard
 * address and this port (/proc/net/tcp, tcp6)? With SO_REUSEPORT a second
 * daemon would otherwise share a port silently.
 */
bool shard_port_in_use(const struct sockaddr_storage *ss);

/* The eventfd that wakes this shard (committer results, stop). */
int shard_eventfd(const struct shard *sh);

/* Start the shard's thread; the committer must exist by then. */
int shard_start(struct shard *sh, struct committer *c);

/* Before any shard starts: the bytes that copies of freshly accepted
 * records (sent by delivery from memory) may take, all shards together;
 * 0: none are kept. */
void shard_kept_budget_init(uint64_t max);

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
