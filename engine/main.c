/*
 * main.c - sluiced: load the configuration, recover the queue, run the
 * shards and the committer, stop gracefully on SIGTERM or SIGINT.
 *
 * Threads: the main thread only waits for signals; one thread per shard
 * runs an io_uring event loop; one committer thread indexes durable
 * records in LMDB. See docs/architecture.md.
 *
 * Started as root, everything that needs root (binding the listeners,
 * opening and recovering the spool) happens before any thread starts;
 * then the process becomes the configured user (engine/privs.c) and
 * starts its threads as that user.
 *
 * Exit status: 0 after a graceful stop or a good `-n` check, 1 on a
 * fatal error at start-up, 2 on a usage or configuration error.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <malloc.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../proto/smtp_server.h"
#include "../queue/queue.h"
#include "../queue/queue_commit.h"
#include "auth.h"
#include "config.h"
#include "control.h"
#include "gen.h"
#include "inbound.h"
#include "metrics.h"
#include "privs.h"
#include "reload.h"
#include "../deliver/deliver.h"
#include "../deliver/mta_sts.h"
#include "../lib/log.h"
#include "../lib/sdnotify.h"
#include "../lib/tls.h"
#include "../lib/version.h"
#include "shard.h"

/* Queue ids carry 6 bits of shard number. */
static_assert(CONFIG_SHARDS_MAX == QUEUE_ID_SHARD_MAX + 1,
    "shards and queue ids disagree");

#define MAIN_TRIM_S 5				/* memory_return() period */
#define MAIN_TRIM_FREE ((size_t)4 << 20)	/* worth trimming */

extern char **environ;

/* limits.memory: message bytes held by sessions, all shards together. */
static struct budget inbound_memory;

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: sluiced [-c FILE] [-o key=value]... [-n]\n"
	    "       sluiced [-c FILE] [-o key=value]... --print-config [--all]\n"
	    "       sluiced --version | --help\n"
	    "  -c FILE        read the YAML configuration FILE (default: the\n"
	    "                 embedded configuration)\n"
	    "  -o key=value   override a configuration key by its dotted path,\n"
	    "                 e.g. -o spool=/tmp/q -o listen.0.address=127.0.0.1:2600\n"
	    "  -n             check the configuration, print \"configuration OK\"\n"
	    "                 or every error, and exit\n"
	    "  --print-config print the keys the file, -o and SLUICE_* set, as\n"
	    "                 YAML (with --all: every key, defaults included)\n"
	    "  -h, --help     this help\n"
	    "  --version      print the version and exit\n"
	    "SLUICE_* environment variables override keys too, e.g.\n"
	    "SLUICE_LIMITS_MESSAGE_SIZE=20M. See docs/configuration.md.\n");
}

/* Load the configuration and print every error; exits 2 on errors. */
static void
load_config(struct config *cfg, const char *path, char **ov, size_t nov)
{
	if (config_load_report(cfg, path, ov, nov, environ, stderr) != 0)
		exit(2);
	/* The configuration's own range check keeps this true. */
	if (cfg->shards == 0 || cfg->shards > CONFIG_SHARDS_MAX)
		log_panic("shards = %u after config_load", cfg->shards);
}

/*
 * The delivery log as the delivery code opens it: "-" is standard error,
 * an absolute path is itself, anything else is relative to the spool.
 */
static void
dlog_path(const struct config *cfg, char *out, size_t n)
{
	const char *log = cfg->delivery.log;

	if (log == NULL || strcmp(log, "-") == 0 || log[0] == '/')
		snprintf(out, n, "%s", log != NULL ? log : "-");
	else
		snprintf(out, n, "%s/%s", cfg->spool, log);
}

/*
 * Shards bind with SO_REUSEPORT, which would let a second sluiced share a
 * port silently and take part of the connections. Refuse to start instead.
 */
static void
check_listeners(const struct config *cfg)
{
	struct timespec pause = { 0, 50 * 1000000L };
	size_t i;
	int tries;

	for (i = 0; i < cfg->nlisten; i++) {
		/*
		 * A daemon that has just exited may hold its sockets a moment
		 * longer (the kernel tears an io_uring down asynchronously):
		 * give it up to three seconds.
		 */
		for (tries = 0; tries < 60; tries++) {
			if (!shard_port_in_use(&cfg->listen[i].sa))
				break;
			nanosleep(&pause, NULL);
		}
		if (tries == 60)
			log_fatal("cannot listen on %s: address already in "
			    "use (is another sluiced running?)",
			    cfg->listen[i].address);
	}
}

/*
 * One daemon per spool: a second one would run recovery over segments the
 * first is still writing. The lock lives as long as the process.
 */
static void
lock_spool(const char *spool)
{
	char path[4096];
	int fd;

	snprintf(path, sizeof(path), "%s/sluiced.lock", spool);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		log_fatal("%s: %s", path, strerror(errno));
	if (flock(fd, LOCK_EX | LOCK_NB) < 0)
		log_fatal("spool %s is in use by another sluiced (%s)", spool,
		    errno == EWOULDBLOCK ? "locked" : strerror(errno));
	/* Deliberately kept open: closing it would drop the lock. */
}

/*
 * Every connection is a descriptor, and the common soft limit of 1024 is
 * below the default limits.connections: raise it to the hard limit, and
 * say so if even that is too low.
 */
static void
raise_fd_limit(const struct config *cfg)
{
	struct rlimit rl;
	rlim_t want = (rlim_t)cfg->limits.connections + 64u * cfg->shards + 64;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			log_warn("cannot raise the file descriptor limit: %s",
			    strerror(errno));
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur < want)
		log_warn("file descriptor limit %llu is below what "
		    "limits.connections = %u needs (%llu); connections beyond "
		    "it will be refused by the kernel",
		    (unsigned long long)rl.rlim_cur, cfg->limits.connections,
		    (unsigned long long)want);
}

static void
listen_summary(const struct config *cfg, char *out, size_t n)
{
	size_t i, off = 0;

	out[0] = '\0';
	for (i = 0; i < cfg->nlisten && off < n; i++)
		off += (size_t)snprintf(out + off, n - off, "%s%s%s",
		    i ? ", " : "", cfg->listen[i].address,
		    cfg->listen[i].proxy_protocol ? " (PROXY protocol)" : "");
}

struct sched_count {
	uint64_t messages, held, items;
};

/* One indexed message back into the delivery schedule. */
static int
schedule_msg(void *arg, const struct queue_msg *m)
{
	struct sched_count *sc = arg;
	int n;

	if (m->meta.state == MSG_HOLD) {
		sc->held++;
		return 0;
	}
	n = deliver_dispatch_msg(m, NULL, UINT64_MAX);
	if (n < 0)
		log_fatal("out of memory scheduling the queue");
	sc->messages++;
	sc->items += (uint64_t)n;
	return 0;
}

/* Start-up: every queued message goes back to its destinations' owners. */
static void
schedule_queue(struct queue_index *qi)
{
	struct sched_count sc = { 0 };
	int rc;

	/* What exceeds the active set is parked, not kept in memory. */
	if ((rc = deliver_start_begin()) != 0)
		log_fatal("queue: clearing the parked table: %s",
		    queue_strerror(rc));
	rc = queue_index_foreach(qi, schedule_msg, &sc);
	if (rc != 0)
		log_fatal("queue: reading the index: %s", queue_strerror(rc));
	if ((rc = deliver_start_end()) != 0)
		log_fatal("queue: parking at start-up: %s",
		    queue_strerror(rc));
	log_info("queue: %llu message(s) scheduled for delivery, %llu on "
	    "hold", (unsigned long long)sc.messages,
	    (unsigned long long)sc.held);
}

/*
 * Give freed heap memory back to the system. After a large queue drains
 * the shards have freed its items, but malloc keeps the pages for reuse,
 * so the resident size would stay at its peak. Every MAIN_TRIM_S seconds,
 * on this otherwise idle thread (never on a shard): when more than
 * MAIN_TRIM_FREE bytes lie free in malloc's arenas, trim them.
 */
static void
memory_return(void)
{
	struct mallinfo2 mi = mallinfo2();

	if (mi.fordblks < MAIN_TRIM_FREE)
		return;
	malloc_trim(0);
	log_debug("memory: %zu free byte(s) in the heap, trimmed", mi.fordblks);
}

int
main(int argc, char **argv)
{
	struct queue_recovery_report rep;
	struct committer_stats cst;
	struct queue_index *qi = NULL;
	struct committer *committer;
	struct shard **shards;
	struct config loaded;
	struct config_gen *gen;
	const struct config *cfg;
	const char *path = NULL;
	char **ov = NULL, lsum[512], why[512], dlog[4096];
	char ready[sizeof(lsum) + 64];
	struct privs pv;
	size_t nov = 0;
	uint64_t last_qid = 0, total = 0;
	int *efds, opt, check = 0, rc, sig;
	unsigned i;
	sigset_t set;

	log_progname = "sluiced";
	ov = calloc((size_t)argc, sizeof(*ov));
	if (ov == NULL)
		log_fatal("out of memory");
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ "print-config", no_argument, NULL, 'P' },
		{ "all", no_argument, NULL, 'A' },
		{ NULL, 0, NULL, 0 },
	};
	int print = 0, print_all = 0;

	while ((opt = getopt_long(argc, argv, "c:o:nh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'V':
			printf("sluiced %s\n", SLUICE_VERSION);
			free(ov);
			return 0;
		case 'P':
			print = 1;
			break;
		case 'A':
			print_all = 1;
			break;
		case 'c':
			path = optarg;
			break;
		case 'o':
			ov[nov++] = optarg;
			break;
		case 'n':
			check = 1;
			break;
		case 'h':
			usage(stdout);
			free(ov);
			return 0;
		default:
			free(ov);
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc || (print_all && !print)) {
		usage(stderr);
		free(ov);
		return 2;
	}
	if (print) {
		rc = config_print(path, ov, nov, environ, print_all, stdout,
		    stderr);
		free(ov);
		return rc != 0 || fflush(stdout) != 0 ? 2 : 0;
	}
	load_config(&loaded, path, ov, nov);
	log_min_level = log_level_parse(loaded.log.level);
	log_json = strcmp(loaded.log.format, "json") == 0;
	/* A missing user is the configuration's fault: report it as such. */
	if (privs_lookup(&pv, loaded.user, why, sizeof(why)) < 0) {
		fprintf(stderr, "%s: user: %s\n", loaded.source, why);
		exit(2);
	}
	/* Receivers judge HELO names; a bare host name looks misconfigured. */
	if (strchr(loaded.hostname, '.') == NULL)
		fprintf(stderr, "%s: warning: hostname '%s' is not a fully "
		    "qualified domain name; servers that receive mail from "
		    "sluice expect one in EHLO (set hostname)\n", loaded.source,
		    loaded.hostname);
	if (check) {
		printf("configuration OK\n");
		config_free(&loaded);
		free(ov);
		return 0;
	}
	/* From here on the configuration is generation 1 (engine/gen.h). */
	budget_init(&inbound_memory, loaded.limits.memory);
	shard_kept_budget_init(loaded.limits.memory / 4);
	if ((gen = gen_create(&loaded, NULL, &inbound_memory,
	    loaded.shards)) == NULL)
		log_fatal("out of memory");
	gen_commit_id(gen);
	cfg = &gen->cfg;

	/* Before any thread starts: it edits the environment. */
	if ((rc = sdnotify_init()) < 0)
		log_warn("NOTIFY_SOCKET: %s; not notifying", strerror(-rc));

	/* Signals are taken by sigwait() here; every thread inherits this. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	check_listeners(cfg);
	raise_fd_limit(cfg);
	privs_make_spool(&pv, cfg->spool);
	if ((rc = queue_index_open(&qi, cfg->spool, cfg->queue.index_size, 0)) < 0)
		log_fatal("cannot open the queue in %s: %s", cfg->spool,
		    queue_strerror(rc));
	lock_spool(cfg->spool);
	memset(&rep, 0, sizeof(rep));
	if ((rc = queue_recover(qi, cfg->spool, &rep)) < 0)
		log_fatal("queue recovery failed: %s",
		    queue_strerror(rc));
	if ((rc = queue_index_max_id(qi, &last_qid)) < 0)
		log_fatal("queue: %s", queue_strerror(rc));
	log_info("queue: %llu message(s) (%llu replayed from the log), "
	    "%llu delivered mark(s) replayed (%llu message(s) done), "
	    "%llu segment(s) kept, %llu removed, %llu byte(s) reclaimed, "
	    "%llu quarantined, %llu DSN(s) not replayed, "
	    "%llu torn log end(s) never acknowledged",
	    (unsigned long long)rep.messages, (unsigned long long)rep.replayed,
	    (unsigned long long)rep.marks, (unsigned long long)rep.marks_done,
	    (unsigned long long)rep.segments,
	    (unsigned long long)rep.segments_removed,
	    (unsigned long long)rep.bytes_reclaimed,
	    (unsigned long long)rep.quarantined,
	    (unsigned long long)rep.dsn_dropped,
	    (unsigned long long)rep.unacknowledged);

	shards = calloc(cfg->shards, sizeof(*shards));
	efds = calloc(cfg->shards, sizeof(*efds));
	if (shards == NULL || efds == NULL)
		log_fatal("out of memory");
	/* Keys are read (or made in the spool) while we are still root. */
	gen->tls = shard_tls_setup(cfg);
	for (i = 0; i < cfg->shards; i++) {
		shards[i] = shard_create(i, gen, rep.max_seq[i], last_qid);
		efds[i] = shard_eventfd(shards[i]);
	}
	/* Root's part is done: listeners bound, spool open and recovered. */
	dlog_path(cfg, dlog, sizeof(dlog));
	/* CA files (outbound TLS) may be root's: read while root. */
	{
		char twhy[256];

		/* MTA-STS's CA file first: its contexts depend on it; its
		 * threads start below. */
		if (mta_sts_start(&gen->dcfg, twhy, sizeof twhy) < 0)
			log_fatal("MTA-STS: %s", twhy);
		if (deliver_tls_init(&gen->dcfg, twhy, sizeof twhy) < 0)
			log_fatal("outbound TLS: %s", twhy);
	}
	if ((rc = metrics_bind(cfg)) < 0)
		log_fatal("cannot listen on %s (metrics.listen): %s",
		    cfg->metrics.listen, strerror(-rc));
	privs_prepare(&pv, cfg->spool, dlog);
	privs_drop(&pv);
	privs_check_access(&pv, cfg->spool, dlog);
	{
		char swhy[256];

		if (mta_sts_run(swhy, sizeof swhy) < 0)
			log_fatal("MTA-STS: %s", swhy);
	}

	deliver_global_init(&gen->dcfg, cfg->shards, efds, qi);
	schedule_queue(qi);
	if ((rc = auth_dummy_make(cfg, gen->auth_dummy,
	    sizeof(gen->auth_dummy))) < 0)
		log_fatal("cannot hash a password for unknown users: %s",
		    strerror(-rc));
	if ((rc = auth_global_init(cfg, cfg->shards, efds)) < 0)
		log_fatal("cannot start the password workers: %s",
		    strerror(-rc));
	if ((rc = committer_start(&committer, qi, cfg->shards, efds,
	    cfg->spool)) < 0)
		log_fatal("cannot start the committer: %s",
		    queue_strerror(rc));
	if ((rc = gen_start_signers(gen, efds)) < 0)
		log_fatal("cannot start the DKIM signers: %s", strerror(-rc));
	for (i = 0; i < cfg->shards; i++)
		if ((rc = shard_start(shards[i], committer)) < 0)
			log_fatal("cannot start shard %u: %s", i,
			    strerror(-rc));
	if ((rc = deliver_feed_start()) != 0)
		log_fatal("cannot start the delivery feeder: %s",
		    strerror(-rc));
	reload_init(path, ov, nov, environ, gen, shards, cfg->shards);
	control_start(cfg, qi, committer, reload_run);
	if ((rc = metrics_start(cfg, qi)) < 0)
		log_fatal("cannot start the metrics thread: %s", strerror(-rc));
	listen_summary(cfg, lsum, sizeof(lsum));
	log_info("ready: listening on %s, %u shard(s), spool %s, "
	    "hostname %s", lsum, cfg->shards, cfg->spool, cfg->hostname);
	snprintf(ready, sizeof(ready), "READY=1\nSTATUS=listening on %s", lsum);
	if ((rc = sdnotify(ready)) < 0)
		log_warn("NOTIFY_SOCKET: %s", strerror(-rc));

	for (;;) {
		struct timespec every = { MAIN_TRIM_S, 0 };

		sig = sigtimedwait(&set, NULL, &every);
		if (sig < 0) {
			/* Signers and configurations of replaced generations,
			 * now unused; then what they freed goes back. */
			gen_retired_sweep();
			memory_return();
			continue;
		}
		if (sig == SIGHUP) {
			char *out = malloc(RELOAD_REPLY_MAX);

			if (out == NULL) {
				log_warn("SIGHUP: out of memory; not reloaded");
				continue;
			}
			/* Logged by reload_run() itself, line by line. */
			(void)reload_run(out, RELOAD_REPLY_MAX);
			free(out);
			continue;
		}
		break;
	}
	log_info("stopping (signal %d): no new connections, up to %u ms "
	    "for sessions to finish", sig, cfg->shutdown_timeout_ms);
	sdnotify("STOPPING=1\nSTATUS=stopping");
	metrics_stop();
	control_stop();
	deliver_feed_stop();
	shard_request_stop(shards, cfg->shards);
	/* Join all before freeing any: a shard still running may post
	 * to another's inbox and write its eventfd. */
	for (i = 0; i < cfg->shards; i++)
		shard_join_thread(shards[i]);
	/* Before the shards' eventfds close: a worker may still write. */
	auth_global_stop();
	for (i = 0; i < cfg->shards; i++) {
		total += shard_messages(shards[i]);
		shard_free(shards[i]);
	}
	reload_fini();
	committer_stats(committer, &cst);
	committer_stop(committer);
	deliver_global_free();
	mta_sts_stop();
	queue_index_close(qi);
	log_info("stopped: %llu message(s) queued in this run, "
	    "%llu sync batch(es) (%.0f us each), "
	    "%llu index commit(s) (%llu updates, %.0f us each), "
	    "%llu delivered before indexing (never indexed), "
	    "%llu failed message(s)",
	    (unsigned long long)total, (unsigned long long)cst.batches,
	    cst.batches ? (double)cst.sync_us / (double)cst.batches : 0.0,
	    (unsigned long long)cst.index_writes,
	    (unsigned long long)cst.updates,
	    cst.index_writes ? (double)cst.write_us / (double)cst.index_writes : 0.0,
	    (unsigned long long)cst.cancelled,
	    (unsigned long long)cst.failures);
	free(shards);
	free(efds);
	gen_retired_free();
	free(ov);
	return 0;
}
