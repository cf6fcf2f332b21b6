/*
 * auth.h - SMTP AUTH password checks, off the shards' event loops, and
 * the failed-login counts per client address that slow guessing down.
 *
 * A password hash is slow on purpose (yescrypt: tens of milliseconds), so
 * no shard computes one: a shard whose session returned SMTP_EV_AUTH
 * hands the credentials to auth_submit(), a small pool of worker threads
 * hashes them with crypt_rn() against the user's stored hash (an unknown
 * user against a dummy hash of the same method and cost, made for each
 * configuration generation from its first user's, so that the time taken
 * does not tell which users exist, before or after a reload that changed
 * the users' hashes) and compares in constant time, and
 * the verdict comes back through the shard's eventfd: the shard then
 * calls auth_reap() from handle_wake(), as it does for the committer.
 *
 * Failed logins are counted per client address (IPv6 per /64), all
 * shards together, in a table of atomic counters like the connection
 * counts: each failure within limits.auth_failure_window of the last
 * one adds one, and the shard holds the 535 back for 1, 2, 4 ... s
 * (auth_fail_delay_ms()); at limits.auth_failures the client gets 421
 * and is closed, and any AUTH from that address gets 421 at once until
 * the window has passed without a failure. A success does not clear
 * the count (one good account must not buy guesses at the others).
 *
 * Contract: auth_global_init() once, before the shards start, after the
 * process dropped root; auth_global_stop() after every shard has exited
 * and before their eventfds are closed. Passwords live in a request only
 * until it is hashed, and are wiped then; none is ever logged.
 */
#ifndef SLUICE_AUTH_H
#define SLUICE_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../proto/smtp_server.h"
#include "config.h"

/* Worker threads: at most this many, and no more than the shards. */
#define AUTH_WORKERS_MAX	4
/* Checks waiting for a worker, all shards together; then 454 4.7.0. */
#define AUTH_QUEUE_MAX		256
/* Room for a dummy hash (auth_dummy_make()): crypt's CRYPT_OUTPUT_SIZE. */
#define AUTH_DUMMY_MAX		384
/* The longest a 535 is held back. */
#define AUTH_DELAY_MAX_MS	30000

/* One verdict, back on the shard that asked. */
struct auth_result {
	struct auth_result *next;
	uint32_t conn_idx;
	uint32_t conn_gen;
	enum smtp_auth_result res;	/* OK or FAILED */
	const struct user_cfg *user;	/* with OK */
	uint64_t addr_key;		/* the client's, for the counts */
	char user_name[SASL_FIELD_MAX + 1];
	char client[64];
	const char *mech;
};

/*
 * Start the workers over cfg's users; efds[i] wakes shard i. 0, or
 * -errno (the workers could not start).
 */
int auth_global_init(const struct config *cfg, unsigned nshards,
    const int *efds);
void auth_global_stop(void);

/* Does any of cfg's listeners offer AUTH? */
bool auth_offered(const struct config *cfg);

/*
 * The hash of a random password at the method, cost and salt of cfg's
 * first user (yescrypt's default cost when it has none), into out (len
 * at least AUTH_DUMMY_MAX): an unknown user's login is checked against
 * it and takes as long as a known user's. When no listener offers AUTH,
 * out is left empty and no hash is made. 0 or -errno.
 */
int auth_dummy_make(const struct config *cfg, char *out, size_t len);

/* The key of a client address ("192.0.2.1", "2001:db8::1") for counts. */
uint64_t auth_addr_key(const char *client_addr);

/*
 * Hand s's credentials (state SMTP_S_AUTH_WAIT) to the workers for
 * shard's connection (idx, gen), to be checked against cfg's users, and
 * against dummy (auth_dummy_make() of cfg) for a name none of them has;
 * cfg and dummy must outlive the check (the session's generation holds
 * both). The password is copied, and wiped from s. Returns SMTP_AUTH_OK when the check is under way (the verdict comes
 * through auth_reap()), or a verdict to give at once: SMTP_AUTH_LOCKED
 * when the client's address is at its limit of failures, TEMPFAIL when
 * too many checks wait or memory is short.
 */
enum smtp_auth_result auth_submit(unsigned shard, uint32_t idx, uint32_t gen,
    const struct config *cfg, const char *dummy, struct smtp_session *s,
    uint64_t now_ms);

/*
 * A reload: the failure limits of cfg from now on (copied). Checks look
 * users up in the configuration of their session (auth_submit()'s cfg),
 * whose generation the session, and so the check, holds.
 */
void auth_reconfigure(const struct config *cfg);

/* The verdicts waiting for shard, oldest first; free each with free(). */
struct auth_result *auth_reap(unsigned shard);

/*
 * A failed login from key at now_ms: counted. Returns how long to hold
 * the 535 back (ms), or UINT64_MAX when this failure reaches the limit:
 * 421 and close instead.
 */
uint64_t auth_fail_delay_ms(uint64_t key, uint64_t now_ms);

#endif
