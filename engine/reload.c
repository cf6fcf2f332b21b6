/*
 * reload.c - configuration reload; see reload.h.
 *
 * The order matters: everything that can fail (parse, restart-only keys,
 * TLS files, binding new listeners, outbound TLS contexts) is done
 * before anything is published, so that a refused reload leaves no trace
 * but its log lines. Publishing is: delivery's routes, the AUTH limits,
 * the log settings, then each shard's hand-over; the daemon's reference
 * to the old generation is dropped once every shard has taken the new
 * one (its sessions still hold it until they end).
 */
#include "reload.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../deliver/deliver.h"
#include "../lib/clock.h"
#include "../lib/log.h"
#include "../lib/sdnotify.h"
#include "../lib/tls.h"
#include "auth.h"
#include "config.h"
#include "gen.h"
#include "shard.h"

static struct {
	pthread_mutex_t lock;
	const char *path;
	char *const *ov;
	size_t nov;
	char *const *envp;
	struct config_gen *cur;		/* the daemon's reference */
	/* cur, for readers: taken with a hold under shown_lock, never
	 * under lock (held across a whole reload). */
	pthread_mutex_t shown_lock;
	struct config_gen *shown;
	struct shard *const *shards;
	unsigned nshards;
	int efds[CONFIG_SHARDS_MAX];	/* the shards': for DKIM signers */
} rl = { .lock = PTHREAD_MUTEX_INITIALIZER,
	.shown_lock = PTHREAD_MUTEX_INITIALIZER };

static void
show(struct config_gen *g)
{
	pthread_mutex_lock(&rl.shown_lock);
	rl.shown = g;
	pthread_mutex_unlock(&rl.shown_lock);
}

void
reload_init(const char *path, char *const *overrides, size_t noverrides,
    char *const *envp, struct config_gen *g, struct shard *const *shards,
    unsigned nshards)
{
	rl.path = path;
	rl.ov = overrides;
	rl.nov = noverrides;
	rl.envp = envp;
	rl.cur = g;
	show(g);
	rl.shards = shards;
	rl.nshards = nshards;
	for (unsigned i = 0; i < nshards && i < CONFIG_SHARDS_MAX; i++)
		rl.efds[i] = shard_eventfd(shards[i]);
}

struct config_gen *
reload_gen_hold(void)
{
	struct config_gen *g;

	/* shown is replaced before the daemon's reference to it goes. */
	pthread_mutex_lock(&rl.shown_lock);
	g = rl.shown != NULL ? gen_hold(rl.shown) : NULL;
	pthread_mutex_unlock(&rl.shown_lock);
	return g;
}

void
reload_fini(void)
{
	pthread_mutex_lock(&rl.lock);
	show(NULL);
	gen_release(rl.cur);
	rl.cur = NULL;
	pthread_mutex_unlock(&rl.lock);
}

/* Append one line to the reply (cut short rather than overflow). */
static void __attribute__((format(printf, 4, 5)))
say(char *out, size_t outlen, size_t *off, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (*off + 1 >= outlen)
		return;
	va_start(ap, fmt);
	n = vsnprintf(out + *off, outlen - *off - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	*off += (size_t)n < outlen - *off - 1 ? (size_t)n : outlen - *off - 2;
	out[(*off)++] = '\n';
	out[*off] = '\0';
}

/*
 * Sockets for the listeners g adds (by address, against the generation
 * in force), one per shard. 0, or -1 with the reason in why. Bound as
 * the unprivileged user: a port below 1024 fails here, and says so.
 */
static int
bind_added(struct config_gen *g, const struct config *old, char *why,
    size_t whylen)
{
	const struct config *cfg = &g->cfg;

	for (size_t j = 0; j < cfg->nlisten; j++) {
		if (gen_listener_find(old, &cfg->listen[j].sa,
		    cfg->listen[j].salen) >= 0)
			continue;
		/* Someone else's (another sluiced?): do not share it. */
		if (shard_port_in_use(&cfg->listen[j].sa)) {
			snprintf(why, whylen, "%s:%s: cannot listen on %s: "
			    "address already in use", cfg->source, "listen",
			    cfg->listen[j].address);
			return -1;
		}
		for (unsigned s = 0; s < g->nshards; s++) {
			int fd = shard_listen_socket(&cfg->listen[j]);

			if (fd < 0) {
				snprintf(why, whylen, "%s:%s: cannot listen on "
				    "%s: %s%s", cfg->source, "listen",
				    cfg->listen[j].address, strerror(-fd),
				    fd == -EACCES ? " (sluiced no longer runs "
				    "as root: a privileged port needs a "
				    "restart)" : "");
				return -1;
			}
			g->lfd[j * g->nshards + s] = fd;
		}
	}
	return 0;
}

/*
 * What g needs of its own before it can be published, each of which can
 * fail: the listeners added, its DKIM signer threads (the load read the
 * keys), its outbound TLS contexts (every CA file read again). -1 with
 * why set to what failed.
 */
static int
gen_prepare(struct config_gen *g, const struct config *old, char *why,
    size_t len)
{
	char e[512];
	int n;

	if (bind_added(g, old, why, len) < 0)
		return -1;
	if ((n = gen_start_signers(g, rl.efds)) < 0) {
		snprintf(why, len, "cannot start the DKIM signers: %s",
		    strerror(-n));
		return -1;
	}
	if (deliver_tls_init(&g->dcfg, e, sizeof(e)) < 0) {
		snprintf(why, len, "outbound TLS: %.*s", (int)sizeof(e), e);
		return -1;
	}
	if ((n = auth_dummy_make(&g->cfg, g->auth_dummy,
	    sizeof(g->auth_dummy))) < 0) {
		snprintf(why, len, "cannot hash a password for unknown users: "
		    "%s", strerror(-n));
		return -1;
	}
	return 0;
}

/* Wait (bounded) until every shard runs g: then the old one is unused. */
static void
wait_taken(const struct config_gen *g)
{
	struct timespec pause = { 0, 2 * 1000000L };
	uint64_t until = clock_mono_ms() + RELOAD_WAIT_MS;
	unsigned i = 0;

	while (i < rl.nshards) {
		if (shard_reload_taken(rl.shards[i])) {
			i++;
			continue;
		}
		if (clock_mono_ms() >= until) {
			log_warn("reload: shard %u has not taken generation "
			    "%llu after %d ms; it will at its next wake-up", i,
			    (unsigned long long)g->id, RELOAD_WAIT_MS);
			return;
		}
		nanosleep(&pause, NULL);
	}
}

static void
notify(const char *state)
{
	int rc = sdnotify(state);

	if (rc < 0)
		log_warn("NOTIFY_SOCKET: %s", strerror(-rc));
}

int
reload_run(char *out, size_t outlen)
{
	struct config_errors errs = { 0 };
	struct config cfg;
	struct config_gen *g = NULL, *old;
	struct tls_ctx *tls = NULL;
	char why[1024], summary[512], state[128];
	size_t off = 0;
	bool denied = false;
	int n;

	out[0] = '\0';
	pthread_mutex_lock(&rl.lock);
	old = rl.cur;
	if (old == NULL) {
		say(out, outlen, &off, "sluiced is stopping: not reloaded");
		pthread_mutex_unlock(&rl.lock);
		return -1;
	}
	/* systemd's notify-reload protocol asks for the monotonic time. */
	snprintf(state, sizeof(state), "RELOADING=1\nMONOTONIC_USEC=%llu\n"
	    "STATUS=reloading the configuration",
	    (unsigned long long)clock_mono_us());
	notify(state);
	log_info("reload: reading %s", rl.path != NULL ? rl.path :
	    "the embedded default configuration");
	n = config_load(&cfg, rl.path, rl.ov, rl.nov, rl.envp, &errs);
	if (n != 0) {
		say(out, outlen, &off, "configuration refused (%d error(s)); "
		    "generation %llu stays in force", n,
		    (unsigned long long)old->id);
		for (size_t i = 0; i < errs.n; i++) {
			say(out, outlen, &off, "%s", errs.msg[i]);
			log_warn("reload: %s", errs.msg[i]);
			denied |= strstr(errs.msg[i], "Permission denied") !=
			    NULL;
		}
		if (denied)
			say(out, outlen, &off, "(a reload reads files as the "
			    "user sluiced runs as, not as root: see "
			    "\"Reloading the configuration\" in "
			    "docs/operations.md)");
		config_errors_free(&errs);
		goto refused;
	}
	if (gen_restart_key(&old->cfg, &cfg, why, sizeof(why))) {
		say(out, outlen, &off, "configuration refused: %s: %s cannot "
		    "change without a restart (restart sluiced, or set it "
		    "back); generation %llu stays in force", cfg.source, why,
		    (unsigned long long)old->id);
		log_warn("reload: %s cannot change without a restart", why);
		config_free(&cfg);
		goto refused;
	}
	if (cfg.nlisten > SHARD_LISTEN_MAX) {
		say(out, outlen, &off, "configuration refused: %s: at most %d "
		    "listeners", cfg.source, SHARD_LISTEN_MAX);
		config_free(&cfg);
		goto refused;
	}
	tls = shard_tls_load(&cfg, false, why, sizeof(why));
	if (tls == NULL && why[0] != '\0') {
		say(out, outlen, &off, "configuration refused: %s: TLS: %s; "
		    "generation %llu stays in force", cfg.source, why,
		    (unsigned long long)old->id);
		log_warn("reload: TLS: %s", why);
		config_free(&cfg);
		goto refused;
	}
	if ((g = gen_create(&cfg, tls, old->scfg.memory, rl.nshards)) == NULL) {
		say(out, outlen, &off, "out of memory: not reloaded");
		goto refused;
	}
	if (gen_prepare(g, &old->cfg, why, sizeof(why)) < 0) {
		say(out, outlen, &off, "configuration refused: %s; "
		    "generation %llu stays in force", why,
		    (unsigned long long)old->id);
		log_warn("reload: %s", why);
		gen_discard(g);
		goto refused;
	}
	gen_summary(&old->cfg, &g->cfg, summary, sizeof(summary));

	/* Published: from here on nothing fails. */
	gen_commit_id(g);
	deliver_global_reconfigure(&g->dcfg);
	auth_reconfigure(&g->cfg);
	atomic_store_explicit(&log_min_level, log_level_parse(g->cfg.log.level),
	    memory_order_relaxed);
	atomic_store_explicit(&log_json, strcmp(g->cfg.log.format, "json") == 0,
	    memory_order_relaxed);
	for (unsigned i = 0; i < rl.nshards; i++)
		shard_reload(rl.shards[i], gen_hold(g));
	rl.cur = g;
	show(g);
	wait_taken(g);
	gen_release(old);
	say(out, outlen, &off, "generation %llu: %s", (unsigned long long)g->id,
	    summary);
	log_info("reload: configuration generation %llu in force: %s",
	    (unsigned long long)g->id, summary);
	snprintf(state, sizeof(state), "READY=1\nSTATUS=configuration "
	    "generation %llu", (unsigned long long)g->id);
	notify(state);
	pthread_mutex_unlock(&rl.lock);
	return 0;
refused:
	log_warn("reload: refused; configuration generation %llu stays in "
	    "force", (unsigned long long)old->id);
	notify("READY=1\nSTATUS=reload refused: see the log");
	pthread_mutex_unlock(&rl.lock);
	return -1;
}
