/*
 * config.h - sluice configuration: one YAML file, overrides, typed schema.
 *
 * The configuration is read in three layers, later ones winning:
 *   1. the YAML file given with -c (or the embedded default when none),
 *   2. SLUICE_* environment variables (SLUICE_LIMITS_MESSAGE_SIZE=...,
 *      SLUICE_LISTEN_0_ADDRESS=...), matched against the schema,
 *   3. -o dotted.path=value options, in command-line order.
 * Every value is checked against a typed schema table; unknown keys, bad
 * types and out-of-range values are errors. All errors are collected, each
 * with the file and line it came from (or "-o" / "environment"), so that
 * `sluiced -n` can print every one of them at once.
 *
 * Contract: config_load() either fills *cfg completely and returns 0, or
 * returns the number of errors (> 0) and leaves *cfg freed. config_free()
 * releases everything config_load() allocated.
 */
#ifndef SLUICE_CONFIG_H
#define SLUICE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "../lib/net.h"
#include "../proto/smtp_server.h"
#include "../deliver/deliver_cfg.h"
#include "../deliver/route.h"
#include "../dkim/dkim.h"

struct listen_cfg {
	char *address;		/* as written: "127.0.0.1:2525", "[::1]:25" */
	char *tls;		/* as written; the mode is in policy.tls */
	struct sockaddr_storage sa;
	socklen_t salen;
	/* What its sessions ask of clients: TLS, AUTH, senders. */
	struct smtp_listen_policy policy;
	/*
	 * PROXY protocol: every connection starts with a header from a
	 * load balancer in proxy_trusted (never empty when on), read within
	 * proxy_timeout_ms, and the address in it is the client's.
	 */
	uint32_t proxy_protocol;	/* 0/1 */
	struct cidr *proxy_trusted;
	size_t nproxy_trusted;
	uint32_t proxy_timeout_ms;
	char *auth;		/* as written: none, optional, required */
	uint32_t auth_insecure;	/* copied into policy.auth_insecure */
};

/*
 * One SMTP AUTH user: an entry of "users" or a line of users_file. The
 * password is a crypt(3) hash (the loader refuses anything else).
 */
struct user_cfg {
	char *name;
	char *password;
	struct smtp_pat *allowed_from;	/* "user@domain", "@domain" */
	size_t nallowed_from;
};

/*
 * Upper ends of ranges that other code depends on; each is tied to what
 * depends on it by a static_assert there (shard.c, inbound.c, main.c).
 */
#define CONFIG_SHARDS_MAX	64		/* queue ids: 6 bits of shard */
#define CONFIG_MESSAGE_SIZE_MAX	(UINT64_C(1) << 30) /* 32-bit records */
#define CONFIG_RECIPIENTS_MAX	65535		/* 16-bit envelope count */
#define CONFIG_LINE_LENGTH_MAX	65536		/* the session's line buffer */
#define CONFIG_CONNECTIONS_MAX	1000000		/* the shards' counters */

struct limits_cfg {
	uint64_t message_size;		/* bytes, message after DATA/BDAT */
	uint32_t recipients;		/* RCPT per transaction */
	uint32_t line_length;		/* command line bytes incl. CRLF */
	uint32_t errors;		/* error replies before 421 */
	uint32_t hops;			/* Received: fields before 554 5.4.6 */
	uint32_t idle_timeout_ms;	/* no input for this long: 421 */
	uint32_t command_timeout_ms;	/* a command line this long: 421 */
	uint32_t junk_commands;		/* before each counts as an error */
	uint32_t connections;		/* inbound connections in total */
	uint32_t connections_per_client; /* per client IP address */
	uint64_t memory;		/* message bytes all sessions hold */
	uint32_t auth_failures;		/* failed logins per address, then
					   421 until the window passes */
	uint32_t auth_failure_window_ms; /* how long a failure counts */
};

/* A certificate chain and its key, PEM files. */
struct tls_pair_cfg {
	char *cert;
	char *key;
};

/*
 * The server's certificates (tls.cert, tls.key, tls.extra). Checked at
 * load: each pair must read and belong together. None given and a
 * listener with TLS: a self-signed one is made in the spool at start.
 */
struct tls_cfg {
	char *cert;
	char *key;
	struct tls_pair_cfg *extra;	/* more pairs: another key type */
	size_t nextra;
};

/* The Prometheus endpoint (engine/metrics.c); off while listen is NULL. */
struct metrics_cfg {
	char *listen;			/* as written: "127.0.0.1:9108" */
	struct sockaddr_storage sa;
	socklen_t salen;
};

struct queue_cfg {
	uint64_t segment_size;		/* bytes before a spool segment rolls */
	uint64_t index_size;		/* LMDB map size, bytes */
};

/*
 * Credentials for a next hop as written: the map {user, password_file}
 * (or {user, password}), or the one-line "user:password". Only the loader
 * reads these; the result is the route's policy.
 */
struct auth_cfg {
	char *user;
	char *password;
	char *password_file;	/* mode checked: no group or other access */
};

/*
 * One entry of "routes" as written; each string is NULL when absent. Only
 * the loader reads these: the result is config.routes.
 */
struct route_cfg {
	char *domain;		/* "example.com", ".example.com" or "*" */
	char *transport;	/* route_parse_transport() syntax */
	char *preset;		/* applied before the keys below */
	char *max_connections;
	char *max_messages_per_connection;
	char *max_rate;
	char *retry;
	char *max_age;
	char *max_attempts;
	char *auth_insecure;
	char *tls;
	char *tls_implicit;
	char *tls_ca_file;
	char *tls_name;
	char *mta_sts;
	struct auth_cfg auth;
};

/* The daemon's own log on standard error (not the delivery log). */
struct log_cfg {
	char *level;		/* error, warn, info, debug */
	char *format;		/* text, json */
};

/* One entry of "dkim": a key a domain signs with. */
struct dkim_key_cfg {
	char *domain;		/* lower-cased by the loader */
	char *selector;
	char *key;		/* a PEM file's path, or inline PEM */
	char *algorithm;	/* rsa-sha256 (rsa), ed25519-sha256 (ed25519) */
	enum dkim_alg alg;	/* from algorithm */
	struct dkim_key *loaded;	/* parsed once, by the loader */
};

/* One name of dkim_signing.headers. */
struct dkim_header_cfg {
	char name[DKIM_NAME_MAX + 1];	/* lower-case */
};

/* "dkim_signing": what is signed, and how. */
struct dkim_sign_cfg {
	char *messages;		/* "ours" or "all" */
	char *domain;		/* "from", "parent" or one domain */
	struct dkim_header_cfg *headers;
	size_t nheaders;
	char *canonicalization;	/* header/body */
	uint64_t expire_ms;	/* x= after t=; 0: none */
	uint32_t workers;	/* signer threads; 0: one per shard */
	uint32_t all;		/* messages: all (derived) */
};

struct config {
	char *source;			/* file name, or "(embedded default)" */
	char *hostname;
	char *spool;
	char *user;			/* run as this user when started as
					   root; "root" stays root */
	uint32_t shards;		/* resolved: never 0 after load */
	struct listen_cfg *listen;
	size_t nlisten;
	struct cidr *allowed_networks;
	size_t nallowed_networks;
	struct smtp_pat *relay_domains;	/* anyone may send to these */
	size_t nrelay_domains;
	/* SMTP AUTH: "users", then users_file's; sorted by name once loaded. */
	struct user_cfg *users;
	size_t nusers;
	char *users_file;
	char *sender_restrictions;	/* as written; each listener's
					   policy.senders has its value */
	struct limits_cfg limits;
	struct tls_cfg tls;
	struct queue_cfg queue;
	uint32_t shutdown_timeout_ms;
	struct route_cfg *route_cfgs;	/* "routes" as written */
	size_t nroute_cfgs;
	char *relay_host;		/* NULL: not set */
	char *relay_tls;		/* its tls policy, NULL: delivery.tls */
	struct auth_cfg relay_auth;	/* its credentials */
	char *dev_redirect;		/* NULL: off; else every message goes
					   to this one address */
	struct dns_cfg dns;
	struct log_cfg log;
	struct delivery_cfg delivery;
	struct mta_sts_cfg mta_sts;
	struct metrics_cfg metrics;
	struct route_table routes;	/* built from both; see docs/routing.md */
	struct dkim_key_cfg *dkim;	/* "dkim" as written, keys loaded */
	size_t ndkim;
	struct dkim_sign_cfg dkim_signing;
	struct dkim_policy dkim_policy;	/* built from both; nentries 0: off */
};

/* Errors collected while loading; each line is "FILE:LINE: message". */
struct config_errors {
	char **msg;
	size_t n;
};

/*
 * Load the configuration. path == NULL selects the embedded default.
 * overrides: "dotted.path=value" strings (values are parsed as YAML, so
 * "[10.0.0.0/8, 127.0.0.1/32]" is a list). envp: the environment (may be
 * NULL); only SLUICE_* names are considered.
 * Returns 0 on success, else the number of errors appended to *errs.
 */
int config_load(struct config *cfg, const char *path, char *const *overrides,
    size_t noverrides, char *const *envp, struct config_errors *errs);
void config_free(struct config *cfg);

/*
 * config_load(), then print every error, one per line, to err. What the
 * daemon and sluicectl both do with -c, -o and the environment. Returns
 * the number of errors (0: *cfg is loaded).
 */
int config_load_report(struct config *cfg, const char *path,
    char *const *overrides, size_t noverrides, char *const *envp, FILE *err);
void config_errors_free(struct config_errors *errs);

/*
 * Load as config_load_report() does, then print the configuration as YAML
 * to out: the keys that the file, -o options or SLUICE_* variables set
 * (`sluiced --print-config`), or with all every key, defaults included.
 * Returns the number of errors (printed to err; nothing goes to out).
 */
int config_print(const char *path, char *const *overrides, size_t noverrides,
    char *const *envp, bool all, FILE *out, FILE *err);
/* The AUTH user called name (exactly, case and all), or NULL. */
const struct user_cfg *config_user_find(const struct config *cfg,
    const char *name);

/* Delivery's view of cfg: pointers into it, valid while it is loaded. */
void config_deliver_cfg(const struct config *cfg, struct deliver_cfg *out);

/* The embedded default configuration, YAML text. */
extern const char config_default_yaml[];

#endif
