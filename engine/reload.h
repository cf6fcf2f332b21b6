/*
 * reload.h - read sluice.yaml again without a restart (SIGHUP, or
 * `sluicectl reload` through the control socket).
 *
 * A reload loads the configuration the way start-up did (the same file,
 * -o options and SLUICE_* environment), as the unprivileged user, off
 * every shard (on the main thread for SIGHUP, the control thread for
 * sluicectl). It is refused whole, and the running generation stays in
 * force, when the file has errors, a key or certificate file cannot be
 * read or used, a new listener cannot be bound, its DKIM signer threads
 * cannot start, or a setting changed
 * that only a restart can change (gen_restart_key()). Otherwise it
 * becomes the next generation (engine/gen.h): delivery routes by it at
 * once, and every shard takes it at its next safe point; reload_run()
 * returns once every shard has (or after RELOAD_WAIT_MS, logged).
 *
 * Reloads are serialised: one at a time, whoever asks.
 */
#ifndef SLUICE_RELOAD_H
#define SLUICE_RELOAD_H

#include <stddef.h>
#include <stdint.h>

struct config;

struct config_gen;
struct shard;

/* Room for a reply: the verdict line and the configuration's errors. */
#define RELOAD_REPLY_MAX	16384
/* How long a reload waits for the shards to take the new generation. */
#define RELOAD_WAIT_MS		5000

/*
 * Once, before anything may ask for a reload: how the configuration was
 * loaded (kept by pointer: they live as long as the process), generation
 * g (its reference is the daemon's from now on) and the shards.
 */
void reload_init(const char *path, char *const *overrides, size_t noverrides,
    char *const *envp, struct config_gen *g, struct shard *const *shards,
    unsigned nshards);

/*
 * Reload. 0: the new generation is in force, out holds "generation N:
 * WHAT CHANGED"; -1: refused, out holds the reason, then each error of
 * the configuration on a line of its own ("FILE:LINE: message"). Every
 * line is logged too. out has at least outlen bytes, newline-terminated
 * lines, NUL-terminated.
 */
int reload_run(char *out, size_t outlen);

/*
 * The generation in force (for status), held: gen_release() it when
 * done (an older generation is freed once nothing holds it). NULL
 * before reload_init() and once the daemon stops.
 */
struct config_gen *reload_gen_hold(void);

/* At stop, after the shards are gone: the daemon's reference dropped. */
void reload_fini(void);

#endif
