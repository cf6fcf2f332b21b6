/*
 * config_int.h - what the two halves of the configuration loader share;
 * private to engine/config*.c (the public API is config.h).
 *
 *   config_tree.c  reading: the file, libyaml documents copied into a
 *                  generic tree (struct cnode), -o options and SLUICE_*
 *                  variables applied to that tree, and the error list
 *                  every step appends to (struct loader).
 *   config_convert.c  the schema's mechanism: the tree checked against the
 *                  key tables and converted into the structs they describe.
 *   config.c       meaning: the schema tables (struct cfg_key), the checks
 *                  of single values, the routing table, what needs the
 *                  whole configuration, machine-dependent defaults, the API.
 *   config_auth.c, config_dkim.c, config_metrics.c  the same for one
 *                  part each: SMTP AUTH and sender policy, DKIM signing,
 *                  the metrics endpoint.
 *
 * The tree half only reads the schema (to walk override paths and match
 * variable names); it never converts a value.
 */
#ifndef SLUICE_CONFIG_INT_H
#define SLUICE_CONFIG_INT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "config.h"

/* The units sizes and durations are written in (durations in ms). */
#define KiB	(UINT64_C(1) << 10)
#define MiB	(UINT64_C(1) << 20)
#define GiB	(UINT64_C(1) << 30)
#define TiB	(UINT64_C(1) << 40)
#define SEC_MS	UINT64_C(1000)
#define MIN_MS	(60 * SEC_MS)
#define HOUR_MS	(60 * MIN_MS)

#define CONFIG_FILE_MAX		(1024 * 1024)	/* bytes of YAML */
#define CONFIG_DEPTH_MAX	32		/* nested maps/lists */
#define CONFIG_NODES_MAX	65536		/* nodes per YAML document */
#define CONFIG_MAP_KEYS_MAX	1024		/* duplicate check is O(n^2) */
#define CONFIG_PATH_MAX		256		/* dotted path in messages */
#define CONFIG_INDEX_DIGITS	6		/* list index in a path */
#define CONFIG_WHY_MAX		256		/* reason text from a check */
#define CONFIG_QUOTE_MAX	64		/* user text quoted in messages */

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

/* Table entries: the key, then its field (or list and count) in st. */
#define KEY(nm, ty, df, lo, hi) \
	.name = (nm), .type = (ty), .def = (df), .min = (lo), .max = (hi)
#define FIELD(st, m) \
	.offset = offsetof(st, m), .size = sizeof(((st *)0)->m)
#define LIST(st, m, cnt) \
	.offset = offsetof(st, m), .count_offset = offsetof(st, cnt), \
	.elem_size = sizeof(*((st *)0)->m)

/* The top-level table (config.c). */
extern const struct cfg_key config_keys[];

/* ------------------------------------------------------------------ */
/* config_auth.c: SMTP AUTH users, sender and relay policy             */
/* ------------------------------------------------------------------ */

/* The keys of one "users" entry. */
extern const struct cfg_key config_user_keys[];
/* The "metrics" map (config_metrics.c). */
extern const struct cfg_key config_metrics_keys[];

/* Users in "users" and users_file together. */
#define CONFIG_USERS_MAX	100000

/* A path: not empty, shorter than PATH_MAX (config.c). */
cfg_check_fn cfg_check_path;

/* listen[].auth: none, optional, required (sets the listener's policy). */
cfg_check_fn cfg_check_auth_mode;
/* sender_restrictions: none, domain, email. */
cfg_check_fn cfg_check_sender_rule;
/* relay_domains[]: "example.com" or ".example.com", into a smtp_pat. */
cfg_check_fn cfg_check_domain_pattern;

/*
 * After the schema pass: read users_file into cfg->users, refuse
 * duplicate names, sort the users for config_user_find(), and give each
 * listener its policy's AUTH and sender settings. root: the tree, for
 * the lines of the messages.
 */
void cfg_auth_finish(struct loader *ld, struct config *cfg,
    const struct cnode *root);

static inline bool
cfg_type_is_list(enum cfg_type t)
{
	return t == CFG_LIST_MAP || t == CFG_LIST_SCALAR;
}

static inline bool
cfg_type_is_scalar(enum cfg_type t)
{
	return t == CFG_STRING || t == CFG_UINT || t == CFG_SIZE ||
	    t == CFG_DURATION || t == CFG_BOOL;
}


static inline const struct cfg_key *
cfg_key_find(const struct cfg_key *tbl, const char *s, size_t n)
{
	const struct cfg_key *k;

	for (k = tbl; k->name != NULL; k++)
		if (strlen(k->name) == n && memcmp(k->name, s, n) == 0)
			return k;
	return NULL;
}

/* ------------------------------------------------------------------ */
/* config_dkim.c: DKIM keys and signing                                */
/* ------------------------------------------------------------------ */

/* The keys of one "dkim" entry, and the "dkim_signing" map. */
extern const struct cfg_key config_dkim_keys[];
extern const struct cfg_key config_dkim_signing_keys[];

/*
 * After the schema pass: load every key (once: the signer threads share
 * them) and build cfg->dkim_policy. Every string is there by then; root:
 * the tree, for the lines of the messages.
 */
void cfg_dkim_build(struct loader *ld, struct config *cfg,
    const struct cnode *root);

/* ------------------------------------------------------------------ */
/* config_tree.c                                                       */
/* ------------------------------------------------------------------ */

/* Results of cfg_yaml_to_tree(). */
enum {
	YT_OK = 0,
	YT_FAIL = -1,		/* error recorded (or out of memory) */
	YT_SYNTAX = -2,		/* not YAML; nothing recorded (quiet mode) */
};

/* malloc'd formatted text; NULL when out of memory. */
char *cfg_str_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A copy of s[0..n) with a NUL; NULL (and ld->oom) when out of memory. */
char *cfg_str_dup(struct loader *ld, const char *s, size_t n);
/*
 * Record one error at o (and line, 0 for none) about the dotted path
 * (NULL: none). Never fails: without memory, ld->oom is set instead.
 */
void cfg_error(struct loader *ld, const struct corigin *o, unsigned long line,
    const char *path, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* Sort the errors, move them to errs, return how many there were. */
int cfg_flush_errors(struct loader *ld, struct config_errors *errs);
/* A new origin, owned by ld; takes label (malloc'd). NULL when out of memory. */
struct corigin *cfg_origin_new(struct loader *ld, char *label,
    const char *path, bool lines);

/* Dotted paths, truncated at cap: "a" + "b" = "a.b", "a" + 0 = "a.0". */
void cfg_path_append(char *buf, size_t cap, const char *comp, size_t n);
void cfg_path_child(char *dst, size_t cap, const char *parent,
    const char *comp);
void cfg_path_index(char *dst, size_t cap, const char *parent, size_t idx);

void cnode_free(struct cnode *n);
struct cnode *cnode_new(struct loader *ld, enum cnode_kind kind,
    const struct corigin *o, unsigned long line);
/* Index of key s[0..n) in a map, or -1. */
int cnode_map_find(const struct cnode *map, const char *s, size_t n);
/* The value of key name in map; NULL if map is not a map or lacks it. */
const struct cnode *cnode_map_value(const struct cnode *map, const char *name);
/* Absent, or a null scalar: the key takes its default. */
bool cnode_is_null(const struct cnode *n);
/* "a map", "a list", "a scalar", "an empty value": for messages. */
const char *cnode_kind_name(const struct cnode *n);
/* "FILE:LINE" or the origin's label: where n was written. */
void cnode_where(const struct cnode *n, char *buf, size_t len);

/*
 * Parse one YAML document into a tree. *out is NULL for an empty document.
 * base is the dotted path the document sits at (NULL for a whole file).
 * quiet: do not report a syntax error, return YT_SYNTAX instead.
 */
int cfg_yaml_to_tree(struct loader *ld, const struct corigin *o,
    const char *base, const char *text, size_t len, bool quiet,
    struct cnode **out);
/* A key's default value as a tree; NULL when it has none or out of memory. */
struct cnode *cfg_default_node(struct loader *ld, const struct cfg_key *k);

/* Apply the SLUICE_* variables of envp, then the -o options, to root. */
void cfg_apply_environment(struct loader *ld, struct cnode *root,
    char *const *envp);
void cfg_apply_options(struct loader *ld, struct cnode *root,
    char *const *overrides, size_t noverrides);

/*
 * config_convert.c: map (NULL: every key takes its default) checked
 * against tbl and converted into base, errors under path; and freeing
 * what a table's conversion allocated.
 */
void validate_map(struct loader *ld, const struct cfg_key *tbl,
    const struct cnode *map, const char *path, void *base);
void free_table(const struct cfg_key *tbl, void *base);

/* "64K", "5m": x in the unit a user would write it (config_convert.c). */
void cfg_fmt_value(enum cfg_type t, uint64_t x, char *buf, size_t len);

/*
 * config_print.c: the merged tree as YAML; keys set only by nodes of
 * origin skip (the embedded default) count as unset; all: unset keys too,
 * with their defaults (or, lacking one, their value in cfg).
 */
void cfg_print_tree(FILE *out, const struct cnode *root,
    const struct config *cfg, const struct corigin *skip, bool all);

/* Read a whole file of at most CONFIG_FILE_MAX bytes. 0, or -1 (reported). */
int cfg_read_file(struct loader *ld, const struct corigin *fo,
    const char *path, char **bufp, size_t *lenp);

#endif
