/*
 * config.c - load the sluice configuration: YAML file, SLUICE_* environment,
 * -o overrides, typed schema.
 *
 * Pipeline:
 *   1. libyaml loads the file as a yaml_document_t, which is copied into a
 *      small generic tree (struct cnode: map, list or scalar). Each node
 *      remembers its origin (struct corigin: file, "environment SLUICE_X"
 *      or "-o path") and, for files, its line.
 *   2. SLUICE_* variables (sorted by name, so SLUICE_LISTEN is applied
 *      before SLUICE_LISTEN_0_ADDRESS) and then -o options (in command-line
 *      order) are applied to the tree. Their values are YAML fragments,
 *      parsed by libyaml as well.
 *   3. The tree is checked against the schema tables below and converted
 *      into struct config. Absent keys take their default from the table;
 *      a default is YAML text and goes through the same conversion, so a
 *      default can never be stored without passing its own range check.
 *
 * Contract: see config.h. Nothing is printed here. Each error is one string
 * "FILE:LINE: path: message", "-o path: message" or "environment SLUICE_X:
 * message"; all of them are collected, then sorted by origin (file, then
 * environment, then -o) and line, so a file's errors come out in file order.
 * A file that cannot be read or is not valid YAML stops the load after that
 * one error: checking the rest against a half-read tree would only produce
 * misleading follow-up errors.
 *
 * Null values (plain "", "~", "null") mean "not set": the key takes its
 * default. That lets "-o limits.errors=" undo a file setting.
 *
 * Limits: the file is at most CONFIG_FILE_MAX bytes, YAML nesting at most
 * CONFIG_DEPTH_MAX, CONFIG_NODES_MAX nodes per document and CONFIG_MAP_KEYS_MAX
 * keys per map, so a hostile file costs bounded time and memory. YAML
 * aliases are rejected: they would turn the tree into a graph.
 */
#ifndef _GNU_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/stat.h>

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <yaml.h>

#include "config.h"
#include "../deliver/resolver.h"

#define CONFIG_FILE_MAX		(1024 * 1024)	/* bytes of YAML */
#define CONFIG_DEPTH_MAX	32		/* nested maps/lists */
#define CONFIG_NODES_MAX	65536		/* nodes per YAML document */
#define CONFIG_MAP_KEYS_MAX	1024		/* duplicate check is O(n^2) */
#define CONFIG_PATH_MAX		256		/* dotted path in messages */
#define CONFIG_INDEX_DIGITS	6		/* list index in a path */
#define CONFIG_WHY_MAX		256		/* reason text from a check */
#define CONFIG_QUOTE_MAX	64		/* user text quoted in messages */
#define CONFIG_SHARDS_MAX	64		/* queue ids carry 6 bits of shard */
#define CONFIG_ROUTES_MAX	10000		/* entries in "routes" */

#define ENV_PREFIX		"SLUICE_"
#define DEFAULT_SOURCE		"(embedded default)"

/*
 * SLUICE_* variables that belong to tooling (test runners, scripts), not to
 * the configuration. They are skipped instead of being reported as unknown
 * keys. Keep the list short and exact: a typo in a real key must still be
 * an error.
 */
static const char *const env_ignore[] = {
	"SLUICE_BIN",		/* the test harness: where the binaries are */
	"SLUICE_UNIT",		/* the test harness: unit test binaries */
	"SLUICE_GOLDEN_UPDATE",	/* t_smtp_golden: rewrite .ref files */
	NULL
};

/* ------------------------------------------------------------------ */
/* Generic tree                                                        */
/* ------------------------------------------------------------------ */

/* Where nodes came from. Lives until the end of config_load(). */
struct corigin {
	char *label;		/* "FILE", "-o limits.errors", "environment X" */
	char *path;		/* override target; NULL for files */
	unsigned rank;		/* sort key for errors: file 0, then overrides */
	bool lines;		/* label takes a ":LINE" suffix */
	struct corigin *next;
};

enum cnode_kind {
	CNODE_SCALAR,
	CNODE_MAP,
	CNODE_LIST,
};

struct cnode {
	enum cnode_kind kind;
	const struct corigin *origin;
	unsigned long line;	/* 1-based; 0 when the origin has no lines */
	char *text;		/* scalar: NUL-terminated copy */
	size_t len;		/* scalar: length, may include NUL bytes */
	bool null;		/* scalar: plain "", "~", "null": not set */
	struct cnode **keys;	/* map: key scalars, parallel to kids */
	struct cnode **kids;	/* map values or list items; may hold NULL */
	size_t n, cap;
};

struct cerr {
	char *msg;
	unsigned rank;
	unsigned long line;
	size_t seq;
};

struct loader {
	struct cerr *errs;
	size_t nerrs, caperrs;
	size_t nfail;		/* errors, even those whose text was lost */
	bool oom;		/* sticky: some allocation failed */
	unsigned next_rank;
	struct corigin *origins;
	struct corigin def_origin;
};

/* ------------------------------------------------------------------ */
/* Schema                                                              */
/* ------------------------------------------------------------------ */

enum cfg_type {
	CFG_STRING,		/* char * */
	CFG_UINT,		/* uint32_t or uint64_t, decimal */
	CFG_SIZE,		/* bytes, suffix K M G T (binary) */
	CFG_DURATION,		/* stored in milliseconds, suffix ms s m h */
	CFG_BOOL,		/* uint32_t 0/1: true/false, yes/no, on/off */
	CFG_MAP,		/* nested struct, keys in sub */
	CFG_LIST_MAP,		/* array of structs, keys in sub */
	CFG_LIST_SCALAR,	/* array of elements parsed by check */
};

#define CFG_REQUIRED	0x1
#define CFG_POLICY	0x2	/* routes: a route_policy_set() key */

/*
 * Strings: validate s; may also fill derived fields of obj (the struct that
 * holds the field). Scalar lists: parse s into the element obj.
 * Returns 0, or -1 with a complete reason in why.
 */
typedef int cfg_check_fn(const char *s, void *obj, char *why, size_t whylen);

struct cfg_key {
	const char *name;
	enum cfg_type type;
	const char *def;	/* YAML text; NULL: resolved after load */
	uint64_t min, max;	/* values (durations in ms); list lengths */
	size_t offset;		/* field in the enclosing struct */
	size_t size;		/* integer fields: 4 or 8 bytes */
	size_t count_offset;	/* lists: size_t element count */
	size_t elem_size;	/* lists: one element */
	const struct cfg_key *sub;	/* maps and lists of maps */
	cfg_check_fn *check;
	unsigned flags;
};

#define KEY(nm, ty, df, lo, hi) \
	.name = (nm), .type = (ty), .def = (df), .min = (lo), .max = (hi)
#define FIELD(st, m) \
	.offset = offsetof(st, m), .size = sizeof(((st *)0)->m)
#define LIST(st, m, cnt) \
	.offset = offsetof(st, m), .count_offset = offsetof(st, cnt), \
	.elem_size = sizeof(*((st *)0)->m)

#define KiB	(UINT64_C(1) << 10)
#define MiB	(UINT64_C(1) << 20)
#define GiB	(UINT64_C(1) << 30)
#define TiB	(UINT64_C(1) << 40)
#define SEC_MS	UINT64_C(1000)
#define MIN_MS	(60 * SEC_MS)
#define HOUR_MS	(60 * MIN_MS)

static cfg_check_fn check_hostname, check_path, check_address, check_network,
    check_resolver;

/*
 * One listener. tls, proxy and auth will become keys here; until then they
 * are unknown keys, so a config written for a later version fails loudly.
 */
static const struct cfg_key listen_keys[] = {
	{ KEY("address", CFG_STRING, NULL, 0, 0), FIELD(struct listen_cfg, address),
	  .check = check_address, .flags = CFG_REQUIRED },
	{ .name = NULL },
};

/*
 * One route. Values are only stored here; build_routes() parses them with
 * the route module, so its syntax is not repeated in this file. preset
 * stays ahead of the CFG_POLICY keys: they are applied in table order.
 */
#define ROUTE_KEY(nm, fl) \
	{ KEY(#nm, CFG_STRING, NULL, 0, 0), FIELD(struct route_cfg, nm), \
	  .flags = (fl) }
static const struct cfg_key route_keys[] = {
	ROUTE_KEY(domain, CFG_REQUIRED),
	ROUTE_KEY(transport, CFG_REQUIRED),
	ROUTE_KEY(preset, 0),
	ROUTE_KEY(max_connections, CFG_POLICY),
	ROUTE_KEY(max_messages_per_connection, CFG_POLICY),
	ROUTE_KEY(max_rate, CFG_POLICY),
	ROUTE_KEY(retry, CFG_POLICY),
	ROUTE_KEY(max_age, CFG_POLICY),
	ROUTE_KEY(max_attempts, CFG_POLICY),
	ROUTE_KEY(auth, CFG_POLICY),
	{ .name = NULL },
};
#undef ROUTE_KEY

static const struct cfg_key limits_keys[] = {
	/* Spool records carry 32-bit lengths: stay well inside them. */
	{ KEY("message_size", CFG_SIZE, "10M", 1024, 1ULL << 30),
	  FIELD(struct limits_cfg, message_size) },
	/* The envelope counts recipients in 16 bits. */
	{ KEY("recipients", CFG_UINT, "1000", 1, 65535),
	  FIELD(struct limits_cfg, recipients) },
	{ KEY("line_length", CFG_SIZE, "2048", 512, 65536),
	  FIELD(struct limits_cfg, line_length) },
	{ KEY("errors", CFG_UINT, "20", 1, 1000),
	  FIELD(struct limits_cfg, errors) },
	{ KEY("idle_timeout", CFG_DURATION, "300s", 100, HOUR_MS),
	  FIELD(struct limits_cfg, idle_timeout_ms) },
	{ KEY("connections", CFG_UINT, "1000", 1, 1000000),
	  FIELD(struct limits_cfg, connections) },
	{ KEY("connections_per_client", CFG_UINT, "100", 1, 1000000),
	  FIELD(struct limits_cfg, connections_per_client) },
	{ .name = NULL },
};

static const struct cfg_key queue_keys[] = {
	{ KEY("segment_size", CFG_SIZE, "64M", MiB, 4 * GiB),
	  FIELD(struct queue_cfg, segment_size) },
	{ KEY("index_size", CFG_SIZE, "4G", 16 * MiB, TiB),
	  FIELD(struct queue_cfg, index_size) },
	{ .name = NULL },
};

static const struct cfg_key dns_keys[] = {
	{ KEY("resolver", CFG_STRING, NULL, 0, 0),
	  FIELD(struct dns_cfg, resolver), .check = check_resolver },
	{ KEY("timeout", CFG_DURATION, "2s", 100, 60000),
	  FIELD(struct dns_cfg, timeout_ms) },
	{ KEY("attempts", CFG_UINT, "3", 1, 10),
	  FIELD(struct dns_cfg, attempts) },
	{ .name = NULL },
};

static const struct cfg_key delivery_keys[] = {
	{ KEY("paused", CFG_BOOL, "false", 0, 1),
	  FIELD(struct delivery_cfg, paused) },
	{ KEY("log", CFG_STRING, "delivery.log", 0, 0),
	  FIELD(struct delivery_cfg, log) },
	{ KEY("connect_timeout", CFG_DURATION, "30s", 100, HOUR_MS),
	  FIELD(struct delivery_cfg, connect_timeout_ms) },
	{ KEY("reply_timeout", CFG_DURATION, "300s", 100, HOUR_MS),
	  FIELD(struct delivery_cfg, reply_timeout_ms) },
	{ KEY("data_timeout", CFG_DURATION, "600s", 100, HOUR_MS),
	  FIELD(struct delivery_cfg, data_timeout_ms) },
	{ KEY("idle_keep", CFG_DURATION, "5s", 0, HOUR_MS),
	  FIELD(struct delivery_cfg, idle_keep_ms) },
	{ KEY("chunking", CFG_BOOL, "true", 0, 1),
	  FIELD(struct delivery_cfg, chunking) },
	/* docs/configuration.md lists them; "::" needs quotes in YAML. */
	{ KEY("denied_networks", CFG_LIST_SCALAR, "[127.0.0.0/8, \"::1/128\", "
	  "0.0.0.0/8, \"::/128\", 169.254.0.0/16, \"fe80::/10\", 224.0.0.0/4, "
	  "\"ff00::/8\"]", 0, 1024),
	  LIST(struct delivery_cfg, denied_networks, ndenied_networks),
	  .check = check_network },
	{ .name = NULL },
};

/*
 * The "::1/128" default is quoted: in a YAML flow list a plain scalar may
 * not start with ':'.
 */
static const struct cfg_key config_keys[] = {
	{ KEY("hostname", CFG_STRING, NULL, 0, 0), FIELD(struct config, hostname),
	  .check = check_hostname },
	{ KEY("spool", CFG_STRING, "./var/spool", 0, 0), FIELD(struct config, spool),
	  .check = check_path },
	{ KEY("shards", CFG_UINT, "0", 0, CONFIG_SHARDS_MAX),
	  FIELD(struct config, shards) },
	{ KEY("listen", CFG_LIST_MAP, "[{address: \"127.0.0.1:2525\"}]", 1,
	  DELIVER_LISTEN_MAX),
	  LIST(struct config, listen, nlisten), .sub = listen_keys },
	{ KEY("allowed_networks", CFG_LIST_SCALAR, "[127.0.0.0/8, \"::1/128\"]", 0, 1024),
	  LIST(struct config, allowed_networks, nallowed_networks),
	  .check = check_network },
	{ KEY("limits", CFG_MAP, NULL, 0, 0), .offset = offsetof(struct config, limits),
	  .sub = limits_keys },
	{ KEY("queue", CFG_MAP, NULL, 0, 0), .offset = offsetof(struct config, queue),
	  .sub = queue_keys },
	{ KEY("shutdown_timeout", CFG_DURATION, "30s", 0, HOUR_MS),
	  FIELD(struct config, shutdown_timeout_ms) },
	{ KEY("routes", CFG_LIST_MAP, "[]", 0, CONFIG_ROUTES_MAX),
	  LIST(struct config, route_cfgs, nroute_cfgs), .sub = route_keys },
	{ KEY("relay_host", CFG_STRING, NULL, 0, 0),
	  FIELD(struct config, relay_host) },
	{ KEY("dev_redirect", CFG_STRING, NULL, 0, 0),
	  FIELD(struct config, dev_redirect) },
	{ KEY("dns", CFG_MAP, NULL, 0, 0), .offset = offsetof(struct config, dns),
	  .sub = dns_keys },
	{ KEY("delivery", CFG_MAP, NULL, 0, 0),
	  .offset = offsetof(struct config, delivery), .sub = delivery_keys },
	{ .name = NULL },
};

static bool
type_is_list(enum cfg_type t)
{
	return t == CFG_LIST_MAP || t == CFG_LIST_SCALAR;
}

static bool
type_is_scalar(enum cfg_type t)
{
	return t == CFG_STRING || t == CFG_UINT || t == CFG_SIZE ||
	    t == CFG_DURATION || t == CFG_BOOL;
}

static const char *
type_name(enum cfg_type t)
{
	switch (t) {
	case CFG_STRING:	return "a string";
	case CFG_UINT:		return "an integer";
	case CFG_SIZE:		return "a size";
	case CFG_DURATION:	return "a duration";
	case CFG_BOOL:		return "true or false";
	case CFG_MAP:		return "a map";
	case CFG_LIST_MAP:
	case CFG_LIST_SCALAR:	return "a list";
	default:
		fprintf(stderr, "config: bad schema type %d\n", (int)t);
		abort();
	}
}

static const struct cfg_key *
key_find(const struct cfg_key *tbl, const char *s, size_t n)
{
	const struct cfg_key *k;

	for (k = tbl; k->name != NULL; k++)
		if (strlen(k->name) == n && memcmp(k->name, s, n) == 0)
			return k;
	return NULL;
}

/* ------------------------------------------------------------------ */
/* Strings and errors                                                  */
/* ------------------------------------------------------------------ */

static char *str_vfmt(const char *fmt, va_list ap)
    __attribute__((format(printf, 1, 0)));
static char *str_fmt(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
static void ld_error(struct loader *ld, const struct corigin *o,
    unsigned long line, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static char *
str_vfmt(const char *fmt, va_list ap)
{
	va_list ap2;
	char *s;
	int n;

	va_copy(ap2, ap);
	n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		return NULL;
	s = malloc((size_t)n + 1);
	if (s == NULL)
		return NULL;
	vsnprintf(s, (size_t)n + 1, fmt, ap);
	return s;
}

static char *
str_fmt(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	s = str_vfmt(fmt, ap);
	va_end(ap);
	return s;
}

static char *
str_dup(struct loader *ld, const char *s, size_t n)
{
	char *d = malloc(n + 1);

	if (d == NULL) {
		ld->oom = true;
		return NULL;
	}
	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

/*
 * Record one error. The dotted path is left out when it is exactly what the
 * origin's label already names ("-o limits.errors: ..."). Control bytes from
 * the input are replaced so that a message is always one printable line.
 */
static void
ld_error(struct loader *ld, const struct corigin *o, unsigned long line,
    const char *path, const char *fmt, ...)
{
	char *msg = NULL, *full = NULL, loc[32] = "";
	bool show_path;
	struct cerr *e;
	va_list ap;
	size_t i;

	ld->nfail++;
	va_start(ap, fmt);
	msg = str_vfmt(fmt, ap);
	va_end(ap);
	if (msg == NULL)
		goto oom;
	show_path = path != NULL && path[0] != '\0' &&
	    !(o->path != NULL && strcmp(o->path, path) == 0);
	if (o->lines && line > 0)
		snprintf(loc, sizeof loc, ":%lu", line);
	full = str_fmt("%s%s: %s%s%s", o->label, loc, show_path ? path : "",
	    show_path ? ": " : "", msg);
	if (full == NULL)
		goto oom;
	for (i = 0; full[i] != '\0'; i++)
		if ((unsigned char)full[i] < 0x20 || full[i] == 0x7f)
			full[i] = '?';
	if (ld->nerrs == ld->caperrs) {
		size_t cap = ld->caperrs ? 2 * ld->caperrs : 8;

		e = realloc(ld->errs, cap * sizeof *e);
		if (e == NULL)
			goto oom;
		ld->errs = e;
		ld->caperrs = cap;
	}
	e = &ld->errs[ld->nerrs];
	e->msg = full;
	e->rank = o->rank;
	e->line = line;
	e->seq = ld->nerrs;
	ld->nerrs++;
	free(msg);
	return;
oom:
	ld->oom = true;
	free(msg);
	free(full);
}

static int
cerr_cmp(const void *a, const void *b)
{
	const struct cerr *x = a, *y = b;

	if (x->rank != y->rank)
		return x->rank < y->rank ? -1 : 1;
	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Sort, hand the messages over to errs, return the error count. */
static int
ld_flush_errors(struct loader *ld, struct config_errors *errs)
{
	size_t i, total = ld->nfail;
	char **msg;

	if (ld->oom) {
		/* Last in the list: the other errors may be why memory ran out. */
		static const struct corigin oom_origin = {
			.label = "config", .rank = UINT_MAX,
		};

		ld_error(ld, &oom_origin, 0, NULL, "out of memory");
		total = ld->nfail;
	}
	if (ld->nerrs > 1)
		qsort(ld->errs, ld->nerrs, sizeof *ld->errs, cerr_cmp);
	if (errs != NULL && ld->nerrs > 0) {
		msg = realloc(errs->msg, (errs->n + ld->nerrs) * sizeof *msg);
		if (msg != NULL) {
			errs->msg = msg;
			for (i = 0; i < ld->nerrs; i++) {
				msg[errs->n++] = ld->errs[i].msg;
				ld->errs[i].msg = NULL;
			}
		}
	}
	for (i = 0; i < ld->nerrs; i++)
		free(ld->errs[i].msg);
	free(ld->errs);
	ld->errs = NULL;
	ld->nerrs = ld->caperrs = 0;
	return total > INT_MAX ? INT_MAX : (int)total;
}

static struct corigin *
origin_new(struct loader *ld, char *label, const char *path, bool lines)
{
	struct corigin *o = NULL;

	if (label == NULL)
		goto oom;
	o = calloc(1, sizeof *o);
	if (o == NULL)
		goto oom;
	o->label = label;
	if (path != NULL) {
		o->path = str_dup(ld, path, strlen(path));
		if (o->path == NULL)
			goto oom;
	}
	o->lines = lines;
	o->rank = ld->next_rank++;
	o->next = ld->origins;
	ld->origins = o;
	return o;
oom:
	ld->oom = true;
	free(label);
	free(o);
	return NULL;
}

/* Append ".comp" (or "comp" at the top) to a dotted path, truncating. */
static void
path_append(char *buf, size_t cap, const char *comp, size_t n)
{
	size_t len = strlen(buf);

	assert(cap > 0 && len < cap);
	if (len > 0 && len + 1 < cap)
		buf[len++] = '.';
	if (n > cap - 1 - len)
		n = cap - 1 - len;
	memcpy(buf + len, comp, n);
	buf[len + n] = '\0';
}

static void
path_child(char *dst, size_t cap, const char *parent, const char *comp)
{
	snprintf(dst, cap, "%s", parent);
	path_append(dst, cap, comp, strlen(comp));
}

static void
path_index(char *dst, size_t cap, const char *parent, size_t idx)
{
	char num[24];

	snprintf(num, sizeof num, "%zu", idx);
	if (dst != parent)
		snprintf(dst, cap, "%s", parent);
	path_append(dst, cap, num, strlen(num));
}

/* ------------------------------------------------------------------ */
/* Tree nodes                                                          */
/* ------------------------------------------------------------------ */

static void
cnode_free(struct cnode *n)
{
	size_t i;

	if (n == NULL)
		return;
	for (i = 0; i < n->n; i++) {
		if (n->keys != NULL)
			cnode_free(n->keys[i]);
		cnode_free(n->kids[i]);
	}
	free(n->keys);
	free(n->kids);
	free(n->text);
	free(n);
}

static struct cnode *
cnode_new(struct loader *ld, enum cnode_kind kind, const struct corigin *o,
    unsigned long line)
{
	struct cnode *n = calloc(1, sizeof *n);

	if (n == NULL) {
		ld->oom = true;
		return NULL;
	}
	n->kind = kind;
	n->origin = o;
	n->line = line;
	return n;
}

static struct cnode *
cnode_scalar(struct loader *ld, const struct corigin *o, unsigned long line,
    const char *text, size_t len, bool null)
{
	struct cnode *n = cnode_new(ld, CNODE_SCALAR, o, line);

	if (n == NULL)
		return NULL;
	n->text = str_dup(ld, text, len);
	if (n->text == NULL) {
		free(n);
		return NULL;
	}
	n->len = len;
	n->null = null;
	return n;
}

/* Append to a map (key != NULL) or list. Takes ownership, even on failure. */
static int
cnode_push(struct loader *ld, struct cnode *parent, struct cnode *key,
    struct cnode *kid)
{
	assert(parent->kind != CNODE_SCALAR);
	assert((parent->kind == CNODE_MAP) == (key != NULL));
	if (parent->n == parent->cap) {
		size_t cap = parent->cap ? 2 * parent->cap : 4;
		struct cnode **kids, **keys;

		kids = realloc(parent->kids, cap * sizeof *kids);
		if (kids == NULL)
			goto oom;
		parent->kids = kids;
		if (parent->kind == CNODE_MAP) {
			keys = realloc(parent->keys, cap * sizeof *keys);
			if (keys == NULL)
				goto oom;
			parent->keys = keys;
		}
		parent->cap = cap;
	}
	if (parent->kind == CNODE_MAP)
		parent->keys[parent->n] = key;
	parent->kids[parent->n++] = kid;
	return 0;
oom:
	ld->oom = true;
	cnode_free(key);
	cnode_free(kid);
	return -1;
}

static int
map_find(const struct cnode *map, const char *s, size_t n)
{
	size_t i;

	assert(map->kind == CNODE_MAP);
	for (i = 0; i < map->n; i++)
		if (map->keys[i]->len == n && memcmp(map->keys[i]->text, s, n) == 0)
			return (int)i;
	return -1;
}

static bool
cnode_is_null(const struct cnode *n)
{
	return n == NULL || (n->kind == CNODE_SCALAR && n->null);
}

static const char *
kind_name(const struct cnode *n)
{
	if (cnode_is_null(n))
		return "an empty value";
	switch (n->kind) {
	case CNODE_SCALAR:	return "a scalar";
	case CNODE_MAP:		return "a map";
	case CNODE_LIST:	return "a list";
	default:
		fprintf(stderr, "config: bad node kind %d\n", (int)n->kind);
		abort();
	}
}

/* ------------------------------------------------------------------ */
/* YAML to tree                                                        */
/* ------------------------------------------------------------------ */

enum {
	YT_OK = 0,
	YT_FAIL = -1,		/* error recorded (or out of memory) */
	YT_SYNTAX = -2,		/* not YAML; nothing recorded (quiet mode) */
};

struct yconv {
	struct loader *ld;
	yaml_document_t *doc;
	const struct corigin *o;
	unsigned char *seen;	/* per node: an alias would visit it twice */
	size_t nodes;
};

static bool
yaml_scalar_is_null(const yaml_node_t *y)
{
	const char *v = (const char *)y->data.scalar.value;
	size_t len = y->data.scalar.length;

	if (y->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	return len == 0 || (len == 1 && v[0] == '~') ||
	    (len == 4 && (memcmp(v, "null", 4) == 0 ||
	    memcmp(v, "Null", 4) == 0 || memcmp(v, "NULL", 4) == 0));
}

/*
 * ref_line: where the reference to this node is (the key line of a map
 * value, the line of a list): for an alias, the node's own line is the
 * anchor's, which is not where the mistake is.
 */
static struct cnode *
yconv_node(struct yconv *yc, int id, const char *path, unsigned depth,
    unsigned long ref_line)
{
	struct loader *ld = yc->ld;
	yaml_node_t *y = yaml_document_get_node(yc->doc, id);
	unsigned long line;
	struct cnode *n = NULL;
	char cpath[CONFIG_PATH_MAX];

	assert(y != NULL);
	line = yc->o->lines ? (unsigned long)y->start_mark.line + 1 : 0;
	if (yc->seen[id - 1]) {
		ld_error(ld, yc->o, ref_line, path, "YAML aliases are not supported");
		return NULL;
	}
	yc->seen[id - 1] = 1;
	if (depth > CONFIG_DEPTH_MAX) {
		ld_error(ld, yc->o, line, path, "nested deeper than %d levels",
		    CONFIG_DEPTH_MAX);
		return NULL;
	}
	if (++yc->nodes > CONFIG_NODES_MAX) {
		ld_error(ld, yc->o, line, NULL, "more than %d YAML nodes",
		    CONFIG_NODES_MAX);
		return NULL;
	}

	switch (y->type) {
	case YAML_SCALAR_NODE:
		return cnode_scalar(ld, yc->o, line,
		    (const char *)y->data.scalar.value, y->data.scalar.length,
		    yaml_scalar_is_null(y));

	case YAML_SEQUENCE_NODE: {
		yaml_node_item_t *it;

		n = cnode_new(ld, CNODE_LIST, yc->o, line);
		if (n == NULL)
			return NULL;
		for (it = y->data.sequence.items.start;
		    it < y->data.sequence.items.top; it++) {
			struct cnode *kid;

			path_index(cpath, sizeof cpath, path, n->n);
			kid = yconv_node(yc, *it, cpath, depth + 1, line);
			if (kid == NULL || cnode_push(ld, n, NULL, kid) < 0)
				goto fail;
		}
		return n;
	}

	case YAML_MAPPING_NODE: {
		yaml_node_pair_t *p;

		n = cnode_new(ld, CNODE_MAP, yc->o, line);
		if (n == NULL)
			return NULL;
		for (p = y->data.mapping.pairs.start;
		    p < y->data.mapping.pairs.top; p++) {
			yaml_node_t *yk = yaml_document_get_node(yc->doc, p->key);
			unsigned long kline;
			struct cnode *key, *val;
			int dup;

			assert(yk != NULL);
			kline = yc->o->lines ? (unsigned long)yk->start_mark.line + 1 : 0;
			if (yk->type != YAML_SCALAR_NODE) {
				/* Reported, skipped: the other keys still get checked. */
				ld_error(ld, yc->o, kline, path,
				    "map keys must be scalars");
				continue;
			}
			if (n->n >= CONFIG_MAP_KEYS_MAX) {
				ld_error(ld, yc->o, kline, path,
				    "more than %d keys in one map",
				    CONFIG_MAP_KEYS_MAX);
				goto fail;
			}
			key = cnode_scalar(ld, yc->o, kline,
			    (const char *)yk->data.scalar.value,
			    yk->data.scalar.length, false);
			if (key == NULL)
				goto fail;
			path_child(cpath, sizeof cpath, path, key->text);
			dup = map_find(n, key->text, key->len);
			if (dup >= 0) {
				if (yc->o->lines)
					ld_error(ld, yc->o, kline, cpath,
					    "duplicate key (first defined at line %lu)",
					    n->keys[dup]->line);
				else
					ld_error(ld, yc->o, kline, cpath,
					    "duplicate key");
				cnode_free(key);
				continue;
			}
			val = yconv_node(yc, p->value, cpath, depth + 1, kline);
			if (val == NULL) {
				cnode_free(key);
				goto fail;
			}
			if (cnode_push(ld, n, key, val) < 0)
				goto fail;
		}
		return n;
	}

	default:
		fprintf(stderr, "config: bad YAML node type %d\n", (int)y->type);
		abort();
	}
fail:
	cnode_free(n);
	return NULL;
}

static unsigned long
line_at(const char *text, size_t len, size_t offset)
{
	unsigned long line = 1;
	size_t i;

	for (i = 0; i < offset && i < len; i++)
		if (text[i] == '\n')
			line++;
	return line;
}

static int
yaml_failed(struct loader *ld, const struct corigin *o,
    const yaml_parser_t *parser, const char *text, size_t len,
    const char *base, bool quiet)
{
	const char *problem = parser->problem ? parser->problem : "syntax error";
	unsigned long line;

	if (parser->error == YAML_MEMORY_ERROR) {
		ld->oom = true;
		return YT_FAIL;
	}
	if (quiet)
		return YT_SYNTAX;
	if (!o->lines) {
		/*
		 * The usual cause: in a flow list, a plain scalar may not start
		 * with ':' or '[', so [10.0.0.0/8, ::1/128] is not YAML.
		 */
		ld_error(ld, o, 0, base, "invalid YAML value: %s (quote items "
		    "such as \"::1/128\" or \"[::1]:25\")", problem);
		return YT_FAIL;
	}
	/* Reader errors (bad UTF-8) carry an offset, not a mark. */
	if (parser->error == YAML_READER_ERROR)
		line = line_at(text, len, parser->problem_offset);
	else
		line = (unsigned long)parser->problem_mark.line + 1;
	if (parser->context != NULL)
		ld_error(ld, o, line, NULL, "%s (%s at line %lu)", problem,
		    parser->context,
		    (unsigned long)parser->context_mark.line + 1);
	else
		ld_error(ld, o, line, NULL, "%s", problem);
	return YT_FAIL;
}

/*
 * Parse one YAML document into a tree. *out is NULL for an empty document.
 * base is the dotted path the document sits at (NULL for a whole file).
 * quiet: do not report a syntax error, return YT_SYNTAX instead.
 */
static int
yaml_to_tree(struct loader *ld, const struct corigin *o, const char *base,
    const char *text, size_t len, bool quiet, struct cnode **out)
{
	yaml_parser_t parser;
	yaml_document_t doc;
	yaml_node_t *root;
	struct yconv yc = { .ld = ld, .doc = &doc, .o = o };
	bool have_doc = false;
	int rc = YT_FAIL;

	*out = NULL;
	if (!yaml_parser_initialize(&parser)) {
		ld->oom = true;
		return YT_FAIL;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	if (!yaml_parser_load(&parser, &doc)) {
		rc = yaml_failed(ld, o, &parser, text, len, base, quiet);
		goto done;
	}
	have_doc = true;
	root = yaml_document_get_root_node(&doc);
	if (root != NULL) {
		yc.seen = calloc((size_t)(doc.nodes.top - doc.nodes.start), 1);
		if (yc.seen == NULL) {
			ld->oom = true;
			goto done;
		}
		*out = yconv_node(&yc, 1, base ? base : "", 0, 0);
		if (*out == NULL)
			goto done;
	}
	yaml_document_delete(&doc);
	have_doc = false;

	/*
	 * Only one document: a second one is an error, not ignored. In quiet
	 * mode a failure here is a syntax error like any other: "[h]:25"
	 * loads "[h]" as a first document, then fails at ":25".
	 */
	if (!yaml_parser_load(&parser, &doc)) {
		rc = yaml_failed(ld, o, &parser, text, len, base, quiet);
		goto done;
	}
	have_doc = true;
	root = yaml_document_get_root_node(&doc);
	if (root != NULL)
		ld_error(ld, o, o->lines ? (unsigned long)root->start_mark.line + 1 : 0,
		    base, "only one YAML document is allowed");
	rc = YT_OK;
done:
	if (have_doc)
		yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	free(yc.seen);
	if (rc != YT_OK) {
		cnode_free(*out);
		*out = NULL;
	}
	return rc;
}

/* A key's default value as a tree; NULL when it has none or out of memory. */
static struct cnode *
default_node(struct loader *ld, const struct cfg_key *k)
{
	struct cnode *n = NULL;
	int rc;

	if (k->def == NULL)
		return NULL;
	rc = yaml_to_tree(ld, &ld->def_origin, k->name, k->def, strlen(k->def),
	    false, &n);
	/* A default that does not parse is a bug in the table above. */
	assert(rc == YT_OK || ld->oom);
	(void)rc;
	return n;
}

/* ------------------------------------------------------------------ */
/* Overrides: -o and environment                                       */
/* ------------------------------------------------------------------ */

/* "0".."999999" as a list index; -1 for anything else. */
static int
parse_index(const char *s, size_t n, size_t *idx)
{
	size_t i;

	if (n == 0 || n > CONFIG_INDEX_DIGITS)
		return -1;
	*idx = 0;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		*idx = *idx * 10 + (size_t)(s[i] - '0');
	}
	return 0;
}

/*
 * Does path name a scalar in the schema? Used to decide whether a value
 * that libyaml rejects ("[::1]:2525") may be taken as a literal string.
 */
static bool
schema_scalar_target(const char *path)
{
	const struct cfg_key *tbl = config_keys, *lk = NULL, *k = NULL;
	const char *c = path;
	bool item = false;
	size_t idx;

	for (;;) {
		size_t n = strcspn(c, ".");

		if (tbl != NULL) {
			k = key_find(tbl, c, n);
			item = false;
		} else {
			k = parse_index(c, n, &idx) == 0 ? lk : NULL;
			item = true;
		}
		if (k == NULL)
			return false;
		if (c[n] == '\0')
			break;
		c += n + 1;
		tbl = lk = NULL;
		if (!item && k->type == CFG_MAP)
			tbl = k->sub;
		else if (!item && type_is_list(k->type))
			lk = k;
		else if (item && k->type == CFG_LIST_MAP)
			tbl = k->sub;
		else
			return false;
	}
	return item ? k->type == CFG_LIST_SCALAR : type_is_scalar(k->type);
}

static void map_merge(struct loader *ld, struct cnode *dst, struct cnode *src);

/*
 * Store val in *slot. A map assigned onto a map is merged key by key, so
 * "-o limits={errors: 5}" means the same as "-o limits.errors=5" and does
 * not reset the other limits; anything else replaces the old value.
 */
static void
set_value(struct loader *ld, struct cnode **slot, struct cnode *val)
{
	if (*slot != NULL && (*slot)->kind == CNODE_MAP &&
	    val->kind == CNODE_MAP) {
		map_merge(ld, *slot, val);
		return;
	}
	cnode_free(*slot);
	*slot = val;
}

static void
map_merge(struct loader *ld, struct cnode *dst, struct cnode *src)
{
	size_t i;

	for (i = 0; i < src->n; i++) {
		struct cnode *key = src->keys[i], *val = src->kids[i];
		int j;

		src->keys[i] = src->kids[i] = NULL;
		j = map_find(dst, key->text, key->len);
		if (j >= 0) {
			cnode_free(key);
			set_value(ld, &dst->kids[j], val);
		} else {
			cnode_push(ld, dst, key, val);
		}
	}
	cnode_free(src);
}

static void
node_where(const struct cnode *n, char *buf, size_t len)
{
	if (n->origin->lines)
		snprintf(buf, len, "%s:%lu", n->origin->label, n->line);
	else
		snprintf(buf, len, "%s", n->origin->label);
}

/*
 * Set dotted path to val in the tree (takes ownership of val). The path is
 * walked through the schema and the tree together: map keys must be schema
 * keys, list components are indices, and index == length appends. Maps and
 * lists missing on the way are created, a list from its default, so that
 * "listen.0.address" edits the default listener and "listen.1.address" adds
 * a second one.
 */
static void
apply_override(struct loader *ld, struct cnode *root, const char *path,
    struct cnode *val, const struct corigin *o)
{
	const struct cfg_key *tbl = config_keys;	/* node: map of these */
	const struct cfg_key *lk = NULL;		/* node: list of lk */
	struct cnode *node = root, **slot;
	char where[CONFIG_PATH_MAX] = "", loc[CONFIG_PATH_MAX];
	const char *c = path;

	for (;;) {
		size_t n = strcspn(c, "."), idx;
		const struct cfg_key *k, *ntbl = NULL, *nlk = NULL;
		enum cnode_kind want;
		bool item;

		if (tbl != NULL) {
			int i;

			k = key_find(tbl, c, n);
			if (k == NULL) {
				ld_error(ld, o, 0, NULL, "unknown configuration key");
				goto done;
			}
			path_append(where, sizeof where, k->name, strlen(k->name));
			i = map_find(node, k->name, strlen(k->name));
			if (i < 0) {
				struct cnode *key = cnode_scalar(ld, o, 0, k->name,
				    strlen(k->name), false);

				if (key == NULL || cnode_push(ld, node, key, NULL) < 0)
					goto done;
				i = (int)node->n - 1;
			}
			slot = &node->kids[i];
			item = false;
		} else {
			if (parse_index(c, n, &idx) < 0) {
				ld_error(ld, o, 0, NULL,
				    "%s: expected a list index, got '%.*s'", where,
				    (int)(n < CONFIG_QUOTE_MAX ? n : CONFIG_QUOTE_MAX), c);
				goto done;
			}
			if (idx > node->n) {
				ld_error(ld, o, 0, NULL,
				    "%s: index %zu is out of range (the list has %zu "
				    "%s; index %zu appends)", where, idx, node->n,
				    node->n == 1 ? "entry" : "entries", node->n);
				goto done;
			}
			if (idx == node->n && cnode_push(ld, node, NULL, NULL) < 0)
				goto done;
			path_index(where, sizeof where, where, idx);
			slot = &node->kids[idx];
			k = lk;
			item = true;
		}
		if (c[n] == '\0') {
			set_value(ld, slot, val);
			val = NULL;
			goto done;
		}

		if (!item && k->type == CFG_MAP) {
			want = CNODE_MAP;
			ntbl = k->sub;
		} else if (!item && type_is_list(k->type)) {
			want = CNODE_LIST;
			nlk = k;
		} else if (item && k->type == CFG_LIST_MAP) {
			want = CNODE_MAP;
			ntbl = k->sub;
		} else {
			/* Path continues below a scalar. */
			ld_error(ld, o, 0, NULL, "unknown configuration key");
			goto done;
		}
		if (cnode_is_null(*slot)) {
			struct cnode *fresh = want == CNODE_MAP ?
			    cnode_new(ld, CNODE_MAP, o, 0) : default_node(ld, k);

			if (fresh == NULL) {
				assert(ld->oom);
				goto done;
			}
			cnode_free(*slot);
			*slot = fresh;
		}
		if ((*slot)->kind != want) {
			node_where(*slot, loc, sizeof loc);
			ld_error(ld, o, 0, NULL, "%s is %s (%s), not %s", where,
			    kind_name(*slot), loc,
			    want == CNODE_MAP ? "a map" : "a list");
			goto done;
		}
		node = *slot;
		tbl = ntbl;
		lk = nlk;
		c += n + 1;
	}
done:
	cnode_free(val);
}

/*
 * Parse an override value as YAML and apply it. For a scalar key a value
 * libyaml rejects is taken literally, because the natural spellings of an
 * IPv6 listener ("[::1]:2525") are not valid plain YAML scalars.
 */
static void
apply_text(struct loader *ld, struct cnode *root, const struct corigin *o,
    const char *path, const char *text)
{
	struct cnode *val = NULL;
	bool scalar = schema_scalar_target(path);
	int rc;

	rc = yaml_to_tree(ld, o, path, text, strlen(text), scalar, &val);
	if (rc == YT_SYNTAX)
		val = cnode_scalar(ld, o, 0, text, strlen(text), false);
	else if (rc == YT_OK && val == NULL)
		val = cnode_scalar(ld, o, 0, "", 0, true);
	if (val == NULL)
		return;
	apply_override(ld, root, path, val, o);
}

static void
apply_options(struct loader *ld, struct cnode *root, char *const *overrides,
    size_t noverrides)
{
	size_t i;

	for (i = 0; i < noverrides; i++) {
		const char *arg = overrides[i], *eq = strchr(arg, '=');
		const char *p = arg, *e = eq ? eq : arg + strlen(arg);
		struct corigin *o;
		char *path;

		/* Tolerate "limits.errors = 5" from a quoted argument. */
		while (p < e && (*p == ' ' || *p == '\t'))
			p++;
		while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		path = str_dup(ld, p, (size_t)(e - p));
		if (path == NULL)
			return;
		if (eq == NULL || path[0] == '\0') {
			o = origin_new(ld, str_fmt("-o %s", arg), NULL, false);
			if (o != NULL)
				ld_error(ld, o, 0, NULL, "expected dotted.path=value");
		} else {
			o = origin_new(ld, str_fmt("-o %s", path), path, false);
			if (o != NULL)
				apply_text(ld, root, o, path, eq + 1);
		}
		free(path);
	}
}

static bool
upper_eq(const char *s, const char *name, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		char u = name[i] >= 'a' && name[i] <= 'z' ?
		    (char)(name[i] - 'a' + 'A') : name[i];

		if (s[i] != u)
			return false;
	}
	return true;
}

static bool env_match_table(const struct cfg_key *tbl, const char *s,
    char *path, size_t cap);

/* s: what follows "KEY_" for key k. */
static bool
env_match_key(const struct cfg_key *k, const char *s, char *path, size_t cap)
{
	size_t base = strlen(path), n, idx;
	char num[24];

	switch (k->type) {
	case CFG_MAP:
		return env_match_table(k->sub, s, path, cap);
	case CFG_LIST_MAP:
	case CFG_LIST_SCALAR:
		n = strspn(s, "0123456789");
		if (parse_index(s, n, &idx) < 0 || (s[n] != '\0' && s[n] != '_'))
			return false;
		snprintf(num, sizeof num, "%zu", idx);
		path_append(path, cap, num, strlen(num));
		if (s[n] == '\0')
			return true;
		if (k->type == CFG_LIST_MAP &&
		    env_match_table(k->sub, s + n + 1, path, cap))
			return true;
		path[base] = '\0';
		return false;
	default:
		return false;
	}
}

/*
 * Key names contain '_' themselves, so "CONNECTIONS_PER_CLIENT" cannot be
 * split blindly: try every key whose upper-cased name is a prefix followed
 * by '_' or the end, and backtrack when the rest does not match.
 */
static bool
env_match_table(const struct cfg_key *tbl, const char *s, char *path,
    size_t cap)
{
	size_t base = strlen(path);
	const struct cfg_key *k;

	for (k = tbl; k->name != NULL; k++) {
		size_t n = strlen(k->name);

		if (!upper_eq(s, k->name, n) || (s[n] != '\0' && s[n] != '_'))
			continue;
		path_append(path, cap, k->name, n);
		if (s[n] == '\0')
			return true;
		if (env_match_key(k, s + n + 1, path, cap))
			return true;
		path[base] = '\0';
	}
	return false;
}

struct env_var {
	char *name;
	const char *value;
};

static int
env_var_cmp(const void *a, const void *b)
{
	return strcmp(((const struct env_var *)a)->name,
	    ((const struct env_var *)b)->name);
}

static void
apply_environment(struct loader *ld, struct cnode *root, char *const *envp)
{
	struct env_var *vars = NULL;
	size_t i, nvars = 0, cap = 0;
	const char *const *ign;

	if (envp == NULL)
		return;
	for (i = 0; envp[i] != NULL; i++) {
		const char *eq = strchr(envp[i], '=');

		if (strncmp(envp[i], ENV_PREFIX, strlen(ENV_PREFIX)) != 0 ||
		    eq == NULL)
			continue;
		if (nvars == cap) {
			struct env_var *v;

			cap = cap ? 2 * cap : 8;
			v = realloc(vars, cap * sizeof *v);
			if (v == NULL) {
				ld->oom = true;
				goto done;
			}
			vars = v;
		}
		vars[nvars].name = str_dup(ld, envp[i], (size_t)(eq - envp[i]));
		if (vars[nvars].name == NULL)
			goto done;
		vars[nvars++].value = eq + 1;
	}
	/* envp order is arbitrary; name order is stable and puts parents first. */
	if (nvars > 0)
		qsort(vars, nvars, sizeof *vars, env_var_cmp);

	for (i = 0; i < nvars; i++) {
		char path[CONFIG_PATH_MAX] = "";
		const char *name = vars[i].name;
		struct corigin *o;
		bool skip = false;

		for (ign = env_ignore; *ign != NULL; ign++)
			if (strcmp(*ign, name) == 0)
				skip = true;
		if (skip)
			continue;
		if (!env_match_table(config_keys, name + strlen(ENV_PREFIX),
		    path, sizeof path)) {
			o = origin_new(ld, str_fmt("environment %s", name), NULL,
			    false);
			if (o != NULL)
				ld_error(ld, o, 0, NULL, "unknown configuration key");
			continue;
		}
		o = origin_new(ld, str_fmt("environment %s", name), path, false);
		if (o != NULL)
			apply_text(ld, root, o, path, vars[i].value);
	}
done:
	for (i = 0; i < nvars; i++)
		free(vars[i].name);
	free(vars);
}

/* ------------------------------------------------------------------ */
/* Scalar conversion                                                   */
/* ------------------------------------------------------------------ */

/* Decimal digits, at least one, no sign, no overflow. */
static int
parse_digits(const char *s, const char **end, uint64_t *out)
{
	uint64_t x = 0;
	const char *p = s;

	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');

		if (x > (UINT64_MAX - d) / 10)
			return -1;
		x = x * 10 + d;
	}
	if (p == s)
		return -1;
	*end = p;
	*out = x;
	return 0;
}

static int
parse_scaled(const char *s, enum cfg_type t, uint64_t *out)
{
	const char *end;
	uint64_t x, mult;

	if (parse_digits(s, &end, &x) < 0)
		return -1;
	if (t == CFG_UINT) {
		mult = 1;
		if (*end != '\0')
			return -1;
	} else if (t == CFG_SIZE) {
		if (end[0] != '\0' && end[1] != '\0')
			return -1;
		switch (end[0]) {
		case '\0':		mult = 1; break;
		case 'k': case 'K':	mult = KiB; break;
		case 'm': case 'M':	mult = MiB; break;
		case 'g': case 'G':	mult = GiB; break;
		case 't': case 'T':	mult = TiB; break;
		default:		return -1;
		}
	} else {
		assert(t == CFG_DURATION);
		if (strcmp(end, "") == 0 || strcmp(end, "s") == 0)
			mult = SEC_MS;
		else if (strcmp(end, "ms") == 0)
			mult = 1;
		else if (strcmp(end, "m") == 0)
			mult = MIN_MS;
		else if (strcmp(end, "h") == 0)
			mult = HOUR_MS;
		else
			return -1;
	}
	if (x > UINT64_MAX / mult)
		return -1;
	*out = x * mult;
	return 0;
}

/* Range ends in the unit the user writes: "1K", "64K", "100ms", "1h". */
static void
fmt_value(enum cfg_type t, uint64_t x, char *buf, size_t len)
{
	static const struct {
		uint64_t mult;
		const char *suffix;
	} sizes[] = {
		{ TiB, "T" }, { GiB, "G" }, { MiB, "M" }, { KiB, "K" },
	}, durations[] = {
		{ HOUR_MS, "h" }, { MIN_MS, "m" }, { SEC_MS, "s" }, { 1, "ms" },
	};
	size_t i;

	if (x != 0 && t == CFG_SIZE) {
		for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
			if (x % sizes[i].mult == 0) {
				snprintf(buf, len, "%llu%s",
				    (unsigned long long)(x / sizes[i].mult),
				    sizes[i].suffix);
				return;
			}
		}
	}
	if (x != 0 && t == CFG_DURATION) {
		for (i = 0; i < sizeof durations / sizeof durations[0]; i++) {
			if (x % durations[i].mult == 0) {
				snprintf(buf, len, "%llu%s",
				    (unsigned long long)(x / durations[i].mult),
				    durations[i].suffix);
				return;
			}
		}
	}
	snprintf(buf, len, "%llu", (unsigned long long)x);
}

static void
store_uint(void *field, size_t size, uint64_t x)
{
	if (size == sizeof(uint32_t)) {
		uint32_t v = (uint32_t)x;

		assert(x <= UINT32_MAX);
		memcpy(field, &v, sizeof v);
	} else {
		assert(size == sizeof(uint64_t));
		memcpy(field, &x, sizeof x);
	}
}

/* ------------------------------------------------------------------ */
/* Checks                                                              */
/* ------------------------------------------------------------------ */

/* Used in the SMTP greeting and EHLO: printable ASCII, no spaces. */
static int
check_hostname(const char *s, void *obj, char *why, size_t whylen)
{
	const unsigned char *p;

	(void)obj;
	if (s[0] == '\0') {
		snprintf(why, whylen, "must not be empty");
		return -1;
	}
	if (strlen(s) > 253) {
		snprintf(why, whylen, "must be at most 253 characters");
		return -1;
	}
	for (p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p <= ' ' || *p >= 0x7f) {
			snprintf(why, whylen, "must not contain spaces, control "
			    "characters or non-ASCII bytes");
			return -1;
		}
	}
	return 0;
}

static int
check_path(const char *s, void *obj, char *why, size_t whylen)
{
	(void)obj;
	if (s[0] == '\0') {
		snprintf(why, whylen, "must not be empty");
		return -1;
	}
	if (strlen(s) >= PATH_MAX) {
		snprintf(why, whylen, "path is longer than %d bytes", PATH_MAX - 1);
		return -1;
	}
	return 0;
}

/* dns.resolver: what the resolver itself accepts. */
static int
check_resolver(const char *s, void *obj, char *why, size_t whylen)
{
	struct resolver_cfg rc;

	(void)obj;
	if (s[0] == '\0' || resolver_cfg_server(&rc, s, NULL, why, whylen) != 0) {
		if (s[0] == '\0')
			snprintf(why, whylen, "must not be empty (leave it out "
			    "for /etc/resolv.conf)");
		return -1;
	}
	return 0;
}

/* Fills sa/salen of the listen_cfg next to the address string. */
static int
check_address(const char *s, void *obj, char *why, size_t whylen)
{
	struct listen_cfg *l = obj;

	if (address_parse(s, &l->sa, &l->salen) < 0) {
		snprintf(why, whylen, "invalid address '%.*s' (expected "
		    "IPv4:port or [IPv6]:port, numeric)", CONFIG_QUOTE_MAX, s);
		return -1;
	}
	return 0;
}

static int
check_network(const char *s, void *obj, char *why, size_t whylen)
{
	const char *reason = cidr_parse_why(s, obj);

	if (reason != NULL) {
		snprintf(why, whylen, "invalid network '%.*s': %s",
		    CONFIG_QUOTE_MAX, s, reason);
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Validation: tree -> struct config                                   */
/* ------------------------------------------------------------------ */

static void validate_map(struct loader *ld, const struct cfg_key *tbl,
    const struct cnode *map, const char *path, void *base);

static bool
want_kind(struct loader *ld, const struct cfg_key *k, const struct cnode *v,
    enum cnode_kind kind, const char *path)
{
	if (v->kind == kind && !cnode_is_null(v))
		return true;
	ld_error(ld, v->origin, v->line, path, "expected %s, got %s",
	    type_name(k->type), kind_name(v));
	return false;
}

/* Text of a scalar that is about to be used as a C string. */
static bool
want_text(struct loader *ld, const struct cnode *v, const char *path)
{
	if (strlen(v->text) == v->len)
		return true;
	ld_error(ld, v->origin, v->line, path, "value contains a NUL byte");
	return false;
}

static void
convert_list(struct loader *ld, const struct cfg_key *k, const struct cnode *v,
    const char *path, void *base)
{
	char ipath[CONFIG_PATH_MAX], why[CONFIG_WHY_MAX];
	unsigned char *arr;
	size_t i;

	if (!want_kind(ld, k, v, CNODE_LIST, path))
		return;
	if (v->n < k->min) {
		ld_error(ld, v->origin, v->line, path,
		    "list must have at least %llu %s", (unsigned long long)k->min,
		    k->min == 1 ? "entry" : "entries");
		return;
	}
	if (v->n > k->max) {
		ld_error(ld, v->origin, v->line, path,
		    "list must have at most %llu entries, not %zu",
		    (unsigned long long)k->max, v->n);
		return;
	}
	if (v->n == 0)
		return;
	arr = calloc(v->n, k->elem_size);
	if (arr == NULL) {
		ld->oom = true;
		return;
	}
	/* Stored at once so that config_free() finds it whatever happens. */
	memcpy((char *)base + k->offset, &arr, sizeof arr);
	memcpy((char *)base + k->count_offset, &v->n, sizeof v->n);
	for (i = 0; i < v->n; i++) {
		const struct cnode *it = v->kids[i];
		void *elem = arr + i * k->elem_size;

		if (it == NULL)
			continue;
		path_index(ipath, sizeof ipath, path, i);
		if (k->type == CFG_LIST_MAP) {
			if (it->kind != CNODE_MAP) {
				ld_error(ld, it->origin, it->line, ipath,
				    "expected a map, got %s", kind_name(it));
				continue;
			}
			validate_map(ld, k->sub, it, ipath, elem);
			continue;
		}
		if (it->kind != CNODE_SCALAR || it->null) {
			ld_error(ld, it->origin, it->line, ipath,
			    "expected a scalar, got %s", kind_name(it));
			continue;
		}
		if (!want_text(ld, it, ipath))
			continue;
		if (k->check(it->text, elem, why, sizeof why) < 0)
			ld_error(ld, it->origin, it->line, ipath, "%s", why);
	}
}

/* v is present and not null. base: the struct that holds k's field. */
static void
convert(struct loader *ld, const struct cfg_key *k, const struct cnode *v,
    const char *path, void *base)
{
	char *field = (char *)base + k->offset;
	char why[CONFIG_WHY_MAX], lo[32], hi[32];
	uint64_t x;
	char *s;

	switch (k->type) {
	case CFG_STRING:
		if (!want_kind(ld, k, v, CNODE_SCALAR, path) ||
		    !want_text(ld, v, path))
			return;
		if (k->check != NULL && k->check(v->text, base, why, sizeof why) < 0) {
			ld_error(ld, v->origin, v->line, path, "%s", why);
			return;
		}
		s = str_dup(ld, v->text, v->len);
		memcpy(field, &s, sizeof s);
		return;

	case CFG_UINT:
	case CFG_SIZE:
	case CFG_DURATION:
		if (!want_kind(ld, k, v, CNODE_SCALAR, path) ||
		    !want_text(ld, v, path))
			return;
		if (parse_scaled(v->text, k->type, &x) < 0) {
			if (k->type == CFG_UINT)
				ld_error(ld, v->origin, v->line, path,
				    "invalid integer '%.*s' (expected decimal "
				    "digits)", CONFIG_QUOTE_MAX, v->text);
			else if (k->type == CFG_SIZE)
				ld_error(ld, v->origin, v->line, path,
				    "invalid size '%.*s' (expected bytes, or a "
				    "number with suffix K, M, G or T)",
				    CONFIG_QUOTE_MAX, v->text);
			else
				ld_error(ld, v->origin, v->line, path,
				    "invalid duration '%.*s' (expected seconds, "
				    "or a number with suffix ms, s, m or h)",
				    CONFIG_QUOTE_MAX, v->text);
			return;
		}
		if (x < k->min || x > k->max) {
			fmt_value(k->type, k->min, lo, sizeof lo);
			fmt_value(k->type, k->max, hi, sizeof hi);
			ld_error(ld, v->origin, v->line, path,
			    "value must be between %s and %s", lo, hi);
			return;
		}
		store_uint(field, k->size, x);
		return;

	case CFG_BOOL:
		if (!want_kind(ld, k, v, CNODE_SCALAR, path) ||
		    !want_text(ld, v, path))
			return;
		if (strcmp(v->text, "true") == 0 || strcmp(v->text, "yes") == 0 ||
		    strcmp(v->text, "on") == 0)
			x = 1;
		else if (strcmp(v->text, "false") == 0 ||
		    strcmp(v->text, "no") == 0 || strcmp(v->text, "off") == 0)
			x = 0;
		else {
			ld_error(ld, v->origin, v->line, path,
			    "invalid boolean '%.*s' (expected true or false)",
			    CONFIG_QUOTE_MAX, v->text);
			return;
		}
		store_uint(field, k->size, x);
		return;

	case CFG_MAP:
		if (want_kind(ld, k, v, CNODE_MAP, path))
			validate_map(ld, k->sub, v, path, field);
		return;

	case CFG_LIST_MAP:
	case CFG_LIST_SCALAR:
		convert_list(ld, k, v, path, base);
		return;

	default:
		fprintf(stderr, "config: bad schema type %d\n", (int)k->type);
		abort();
	}
}

/* map may be NULL: every key takes its default. */
static void
validate_map(struct loader *ld, const struct cfg_key *tbl,
    const struct cnode *map, const char *path, void *base)
{
	char cpath[CONFIG_PATH_MAX];
	const struct cfg_key *k;
	size_t i;

	assert(map == NULL || map->kind == CNODE_MAP);
	for (i = 0; map != NULL && i < map->n; i++) {
		const struct cnode *key = map->keys[i];

		if (key_find(tbl, key->text, key->len) == NULL) {
			path_child(cpath, sizeof cpath, path, key->text);
			ld_error(ld, key->origin, key->line, cpath,
			    "unknown configuration key");
		}
	}
	for (k = tbl; k->name != NULL; k++) {
		const struct cnode *v = NULL;
		struct cnode *d;
		int j;

		path_child(cpath, sizeof cpath, path, k->name);
		if (map != NULL && (j = map_find(map, k->name, strlen(k->name))) >= 0)
			v = map->kids[j];
		if (!cnode_is_null(v)) {
			convert(ld, k, v, cpath, base);
			continue;
		}
		if (k->flags & CFG_REQUIRED) {
			const struct cnode *at = v != NULL ? v : map;

			assert(at != NULL);
			ld_error(ld, at->origin, at->line, cpath,
			    "required key is missing");
			continue;
		}
		if (k->type == CFG_MAP) {
			validate_map(ld, k->sub, NULL, cpath,
			    (char *)base + k->offset);
			continue;
		}
		d = default_node(ld, k);
		if (d != NULL)
			convert(ld, k, d, cpath, base);
		cnode_free(d);
	}
}

/* Free what the schema says was allocated: strings and lists. */
static void
free_table(const struct cfg_key *tbl, void *base)
{
	const struct cfg_key *k;

	for (k = tbl; k->name != NULL; k++) {
		char *field = (char *)base + k->offset;
		unsigned char *arr;
		size_t i, n;
		char *s;

		switch (k->type) {
		case CFG_STRING:
			memcpy(&s, field, sizeof s);
			free(s);
			s = NULL;
			memcpy(field, &s, sizeof s);
			break;
		case CFG_MAP:
			free_table(k->sub, field);
			break;
		case CFG_LIST_MAP:
		case CFG_LIST_SCALAR:
			memcpy(&arr, field, sizeof arr);
			memcpy(&n, (char *)base + k->count_offset, sizeof n);
			for (i = 0; arr != NULL && k->sub != NULL && i < n; i++)
				free_table(k->sub, arr + i * k->elem_size);
			free(arr);
			arr = NULL;
			n = 0;
			memcpy(field, &arr, sizeof arr);
			memcpy((char *)base + k->count_offset, &n, sizeof n);
			break;
		default:
			break;
		}
	}
}

/* ------------------------------------------------------------------ */
/* Routes: struct route_cfg -> struct route_table                      */
/* ------------------------------------------------------------------ */

/* The value of key name in map; NULL if map is not a map or lacks it. */
static const struct cnode *
map_value(const struct cnode *map, const char *name)
{
	int j;

	if (map == NULL || map->kind != CNODE_MAP)
		return NULL;
	j = map_find(map, name, strlen(name));
	return j < 0 ? NULL : map->kids[j];
}

/* A route module error about the value of item.name (which was stored). */
static void
route_error(struct loader *ld, const struct cnode *item, size_t idx,
    const char *name, const char *why)
{
	const struct cnode *v = map_value(item, name);
	char path[CONFIG_PATH_MAX];

	assert(v != NULL);
	path_index(path, sizeof path, "routes", idx);
	path_append(path, sizeof path, name, strlen(name));
	ld_error(ld, v->origin, v->line, path, "%s", why);
}

/*
 * Parse route i and add it to cfg->routes. Every bad value is reported;
 * the route is added only when all of them are good, so that a duplicate
 * is only ever reported against a route that would otherwise load.
 */
static void
build_route(struct loader *ld, struct config *cfg, const struct cnode *item,
    size_t i)
{
	const struct route_cfg *rc = &cfg->route_cfgs[i];
	struct route_policy pol = route_policy_defaults();
	struct route_transport tr;
	char why[CONFIG_WHY_MAX];
	const struct cfg_key *k;
	bool ok = true;
	int rv;

	/* A missing or mistyped domain or transport is reported already. */
	if (rc->domain == NULL || rc->transport == NULL)
		return;
	if (route_parse_transport(rc->transport, &tr, why, sizeof why) != 0) {
		route_error(ld, item, i, "transport", why);
		ok = false;
	}
	if (rc->preset != NULL &&
	    route_policy_preset(&pol, rc->preset, why, sizeof why) != 0) {
		route_error(ld, item, i, "preset", why);
		ok = false;
	}
	for (k = route_keys; k->name != NULL; k++) {
		char *val;

		if (!(k->flags & CFG_POLICY))
			continue;
		memcpy(&val, (const char *)rc + k->offset, sizeof val);
		if (val != NULL &&
		    route_policy_set(&pol, k->name, val, why, sizeof why) != 0) {
			route_error(ld, item, i, k->name, why);
			ok = false;
		}
	}
	if (!ok)
		return;
	rv = route_table_add(&cfg->routes, rc->domain, &tr, &pol, why,
	    sizeof why);
	if (rv == ROUTE_ENOMEM)
		ld->oom = true;
	else if (rv != 0)
		route_error(ld, item, i, "domain", why);
}

/*
 * Fill cfg->routes from the validated "routes" entries, then relay_host.
 * root is the tree they came from: it has the lines for the messages.
 */
static void
build_routes(struct loader *ld, struct config *cfg, const struct cnode *root)
{
	const struct cnode *list = map_value(root, "routes"), *v;
	char why[CONFIG_WHY_MAX], loc[CONFIG_PATH_MAX];
	size_t i, wild = SIZE_MAX;
	int rv;

	/* Stored entries exist only when the list itself was valid. */
	assert(cfg->nroute_cfgs == 0 ||
	    (list != NULL && list->kind == CNODE_LIST &&
	    list->n == cfg->nroute_cfgs));
	for (i = 0; i < cfg->nroute_cfgs; i++) {
		const struct route *before = cfg->routes.wildcard;

		if (list->kids[i] == NULL || list->kids[i]->kind != CNODE_MAP)
			continue;
		build_route(ld, cfg, list->kids[i], i);
		if (before == NULL && cfg->routes.wildcard != NULL)
			wild = i;
	}
	if (cfg->relay_host == NULL)
		return;
	v = map_value(root, "relay_host");
	assert(v != NULL);
	rv = route_relay_host(&cfg->routes, cfg->relay_host, why, sizeof why);
	if (rv == ROUTE_ENOMEM) {
		ld->oom = true;
	} else if (rv == ROUTE_EDUP && wild != SIZE_MAX) {
		node_where(map_value(list->kids[wild], "domain"), loc, sizeof loc);
		ld_error(ld, v->origin, v->line, "relay_host",
		    "%s (routes.%zu.domain at %s)", why, wild, loc);
	} else if (rv != 0) {
		ld_error(ld, v->origin, v->line, "relay_host", "%s", why);
	}
}

/* Values whose default depends on the machine. */
static void
resolve(struct loader *ld, struct config *cfg, const struct corigin *fo)
{
	char host[256], why[CONFIG_WHY_MAX];
	long ncpu;

	if (cfg->hostname == NULL) {
		if (gethostname(host, sizeof host) < 0) {
			ld_error(ld, fo, 0, "hostname", "cannot get the system "
			    "host name: %s; set hostname", strerror(errno));
		} else {
			host[sizeof host - 1] = '\0';
			if (check_hostname(host, NULL, why, sizeof why) < 0)
				ld_error(ld, fo, 0, "hostname", "system host name "
				    "'%.*s' %s; set hostname", CONFIG_QUOTE_MAX,
				    host, why);
			else
				cfg->hostname = str_dup(ld, host, strlen(host));
		}
	}
	if (cfg->shards == 0) {
		ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		if (ncpu < 1)
			ncpu = 1;
		if (ncpu > CONFIG_SHARDS_MAX)
			ncpu = CONFIG_SHARDS_MAX;
		cfg->shards = (uint32_t)ncpu;
	}
}

static int
read_file(struct loader *ld, const struct corigin *fo, const char *path,
    char **bufp, size_t *lenp)
{
	char *buf = NULL;
	size_t len = 0;
	ssize_t r;
	int fd, rc = -1;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ld_error(ld, fo, 0, NULL, "cannot open: %s", strerror(errno));
		return -1;
	}
	/* One byte more than the limit tells "too large" from "exactly". */
	buf = malloc(CONFIG_FILE_MAX + 1);
	if (buf == NULL) {
		ld->oom = true;
		goto done;
	}
	for (;;) {
		r = read(fd, buf + len, CONFIG_FILE_MAX + 1 - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			ld_error(ld, fo, 0, NULL, "cannot read: %s", strerror(errno));
			goto done;
		}
		if (r == 0)
			break;
		len += (size_t)r;
		if (len > CONFIG_FILE_MAX) {
			ld_error(ld, fo, 0, NULL, "file is larger than %d bytes",
			    CONFIG_FILE_MAX);
			goto done;
		}
	}
	*bufp = buf;
	*lenp = len;
	buf = NULL;
	rc = 0;
done:
	free(buf);
	close(fd);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Public API                                                          */
/* ------------------------------------------------------------------ */

int
config_load(struct config *cfg, const char *path, char *const *overrides,
    size_t noverrides, char *const *envp, struct config_errors *errs)
{
	struct loader ld;
	struct corigin *fo, *o;
	struct cnode *root = NULL;
	const char *name = path != NULL ? path : DEFAULT_SOURCE;
	const char *text = config_default_yaml;
	char *buf = NULL;
	size_t len = strlen(config_default_yaml);
	int n;

	assert(cfg != NULL);
	assert(noverrides == 0 || overrides != NULL);
	memset(cfg, 0, sizeof *cfg);
	memset(&ld, 0, sizeof ld);
	ld.def_origin.label = "(default)";
	ld.def_origin.rank = UINT_MAX;

	fo = origin_new(&ld, str_fmt("%s", name), NULL, true);
	if (fo == NULL)
		goto finish;
	if (path != NULL) {
		if (read_file(&ld, fo, path, &buf, &len) < 0)
			goto finish;
		text = buf;
	}
	if (yaml_to_tree(&ld, fo, NULL, text, len, false, &root) != YT_OK)
		goto finish;
	if (root != NULL && !cnode_is_null(root) && root->kind != CNODE_MAP)
		ld_error(&ld, fo, root->line, NULL,
		    "the configuration must be a map of keys, got %s",
		    kind_name(root));
	if (root == NULL || root->kind != CNODE_MAP) {
		/* Go on with an empty map so overrides are still checked. */
		cnode_free(root);
		root = cnode_new(&ld, CNODE_MAP, fo, 1);
		if (root == NULL)
			goto finish;
	}

	apply_environment(&ld, root, envp);
	apply_options(&ld, root, overrides, noverrides);
	if (ld.oom)
		goto finish;
	validate_map(&ld, config_keys, root, "", cfg);
	if (!ld.oom)
		build_routes(&ld, cfg, root);
	if (ld.nfail == 0 && !ld.oom)
		resolve(&ld, cfg, fo);
	cfg->source = str_dup(&ld, name, strlen(name));
finish:
	n = ld_flush_errors(&ld, errs);
	cnode_free(root);
	free(buf);
	while ((o = ld.origins) != NULL) {
		ld.origins = o->next;
		free(o->label);
		free(o->path);
		free(o);
	}
	if (n > 0)
		config_free(cfg);
	return n;
}

void
config_free(struct config *cfg)
{
	if (cfg == NULL)
		return;
	free_table(config_keys, cfg);
	route_table_free(&cfg->routes);
	free(cfg->source);
	memset(cfg, 0, sizeof *cfg);
}

void
config_errors_free(struct config_errors *errs)
{
	size_t i;

	if (errs == NULL)
		return;
	for (i = 0; i < errs->n; i++)
		free(errs->msg[i]);
	free(errs->msg);
	errs->msg = NULL;
	errs->n = 0;
}

void
config_deliver_cfg(const struct config *cfg, struct deliver_cfg *out)
{
	*out = (struct deliver_cfg){
		.hostname = cfg->hostname,
		.spool = cfg->spool,
		.dev_redirect = cfg->dev_redirect,
		.routes = &cfg->routes,
		.dns = &cfg->dns,
		.delivery = &cfg->delivery,
	};
	assert(cfg->nlisten <= DELIVER_LISTEN_MAX);
	for (size_t i = 0; i < cfg->nlisten; i++)
		out->listen[out->nlisten++] = cfg->listen[i].sa;
}

int
config_load_report(struct config *cfg, const char *path,
    char *const *overrides, size_t noverrides, char *const *envp, FILE *err)
{
	struct config_errors errs = { 0 };
	size_t i;
	int n;

	n = config_load(cfg, path, overrides, noverrides, envp, &errs);
	for (i = 0; i < errs.n; i++)
		fprintf(err, "%s\n", errs.msg[i]);
	config_errors_free(&errs);
	return n;
}
