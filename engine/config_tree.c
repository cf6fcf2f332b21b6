/*
 * config_tree.c - the reading half of the configuration loader (see
 * config_int.h): from YAML text, -o options and SLUICE_* variables to one
 * generic tree, and the error list.
 *
 *   1. libyaml loads the file as a yaml_document_t, which is copied into a
 *      small generic tree (struct cnode: map, list or scalar). Each node
 *      remembers its origin (struct corigin: file, "environment SLUICE_X"
 *      or "-o path") and, for files, its line.
 *   2. SLUICE_* variables (sorted by name, so SLUICE_LISTEN is applied
 *      before SLUICE_LISTEN_0_ADDRESS) and then -o options (in command-line
 *      order) are applied to the tree. Their values are YAML fragments,
 *      parsed by libyaml as well. Paths and variable names are matched
 *      against the schema (config_keys), which is only read here.
 *
 * Errors: each one is a string "FILE:LINE: path: message", "-o path:
 * message" or "environment SLUICE_X: message"; all of them are collected,
 * then sorted by origin (file, then environment, then -o) and line.
 *
 * Limits: the file is at most CONFIG_FILE_MAX bytes, YAML nesting at most
 * CONFIG_DEPTH_MAX, CONFIG_NODES_MAX nodes per document and
 * CONFIG_MAP_KEYS_MAX keys per map, so a hostile file costs bounded time
 * and memory. YAML aliases are rejected: they would turn the tree into a
 * graph.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <yaml.h>

#include "config_int.h"

#define ENV_PREFIX		"SLUICE_"

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
/* Strings and errors                                                  */
/* ------------------------------------------------------------------ */

static char *cfg_str_vfmt(const char *fmt, va_list ap)
    __attribute__((format(printf, 1, 0)));

static char *
cfg_str_vfmt(const char *fmt, va_list ap)
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

char *
cfg_str_fmt(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	s = cfg_str_vfmt(fmt, ap);
	va_end(ap);
	return s;
}

char *
cfg_str_dup(struct loader *ld, const char *s, size_t n)
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
void
cfg_error(struct loader *ld, const struct corigin *o, unsigned long line,
    const char *path, const char *fmt, ...)
{
	char *msg = NULL, *full = NULL, loc[32] = "";
	bool show_path;
	struct cerr *e;
	va_list ap;
	size_t i;

	ld->nfail++;
	va_start(ap, fmt);
	msg = cfg_str_vfmt(fmt, ap);
	va_end(ap);
	if (msg == NULL)
		goto oom;
	show_path = path != NULL && path[0] != '\0' &&
	    !(o->path != NULL && strcmp(o->path, path) == 0);
	if (o->lines && line > 0)
		snprintf(loc, sizeof loc, ":%lu", line);
	full = cfg_str_fmt("%s%s: %s%s%s", o->label, loc, show_path ? path : "",
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
int
cfg_flush_errors(struct loader *ld, struct config_errors *errs)
{
	size_t i, total = ld->nfail;
	char **msg;

	if (ld->oom) {
		/* Last in the list: the other errors may be why memory ran out. */
		static const struct corigin oom_origin = {
			.label = "config", .rank = UINT_MAX,
		};

		cfg_error(ld, &oom_origin, 0, NULL, "out of memory");
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

struct corigin *
cfg_origin_new(struct loader *ld, char *label, const char *path, bool lines)
{
	struct corigin *o = NULL;

	if (label == NULL)
		goto oom;
	o = calloc(1, sizeof *o);
	if (o == NULL)
		goto oom;
	o->label = label;
	if (path != NULL) {
		o->path = cfg_str_dup(ld, path, strlen(path));
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
void
cfg_path_append(char *buf, size_t cap, const char *comp, size_t n)
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

void
cfg_path_child(char *dst, size_t cap, const char *parent, const char *comp)
{
	snprintf(dst, cap, "%s", parent);
	cfg_path_append(dst, cap, comp, strlen(comp));
}

void
cfg_path_index(char *dst, size_t cap, const char *parent, size_t idx)
{
	char num[24];

	snprintf(num, sizeof num, "%zu", idx);
	if (dst != parent)
		snprintf(dst, cap, "%s", parent);
	cfg_path_append(dst, cap, num, strlen(num));
}

/* ------------------------------------------------------------------ */
/* Tree nodes                                                          */
/* ------------------------------------------------------------------ */

void
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

struct cnode *
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

struct cnode *
cnode_scalar(struct loader *ld, const struct corigin *o, unsigned long line,
    const char *text, size_t len, bool null)
{
	struct cnode *n = cnode_new(ld, CNODE_SCALAR, o, line);

	if (n == NULL)
		return NULL;
	n->text = cfg_str_dup(ld, text, len);
	if (n->text == NULL) {
		free(n);
		return NULL;
	}
	n->len = len;
	n->null = null;
	return n;
}

/* Append to a map (key != NULL) or list. Takes ownership, even on failure. */
int
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

int
cnode_map_find(const struct cnode *map, const char *s, size_t n)
{
	size_t i;

	assert(map->kind == CNODE_MAP);
	for (i = 0; i < map->n; i++)
		if (map->keys[i]->len == n && memcmp(map->keys[i]->text, s, n) == 0)
			return (int)i;
	return -1;
}

const struct cnode *
cnode_map_value(const struct cnode *map, const char *name)
{
	int j;

	if (map == NULL || map->kind != CNODE_MAP)
		return NULL;
	j = cnode_map_find(map, name, strlen(name));
	return j < 0 ? NULL : map->kids[j];
}

bool
cnode_is_null(const struct cnode *n)
{
	return n == NULL || (n->kind == CNODE_SCALAR && n->null);
}

const char *
cnode_kind_name(const struct cnode *n)
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
		cfg_error(ld, yc->o, ref_line, path, "YAML aliases are not supported");
		return NULL;
	}
	yc->seen[id - 1] = 1;
	if (depth > CONFIG_DEPTH_MAX) {
		cfg_error(ld, yc->o, line, path, "nested deeper than %d levels",
		    CONFIG_DEPTH_MAX);
		return NULL;
	}
	if (++yc->nodes > CONFIG_NODES_MAX) {
		cfg_error(ld, yc->o, line, NULL, "more than %d YAML nodes",
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

			cfg_path_index(cpath, sizeof cpath, path, n->n);
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
				cfg_error(ld, yc->o, kline, path,
				    "map keys must be scalars");
				continue;
			}
			if (n->n >= CONFIG_MAP_KEYS_MAX) {
				cfg_error(ld, yc->o, kline, path,
				    "more than %d keys in one map",
				    CONFIG_MAP_KEYS_MAX);
				goto fail;
			}
			key = cnode_scalar(ld, yc->o, kline,
			    (const char *)yk->data.scalar.value,
			    yk->data.scalar.length, false);
			if (key == NULL)
				goto fail;
			cfg_path_child(cpath, sizeof cpath, path, key->text);
			dup = cnode_map_find(n, key->text, key->len);
			if (dup >= 0) {
				if (yc->o->lines)
					cfg_error(ld, yc->o, kline, cpath,
					    "duplicate key (first defined at line %lu)",
					    n->keys[dup]->line);
				else
					cfg_error(ld, yc->o, kline, cpath,
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
		cfg_error(ld, o, 0, base, "invalid YAML value: %s (quote items "
		    "such as \"::1/128\" or \"[::1]:25\")", problem);
		return YT_FAIL;
	}
	/* Reader errors (bad UTF-8) carry an offset, not a mark. */
	if (parser->error == YAML_READER_ERROR)
		line = line_at(text, len, parser->problem_offset);
	else
		line = (unsigned long)parser->problem_mark.line + 1;
	if (parser->context != NULL)
		cfg_error(ld, o, line, NULL, "%s (%s at line %lu)", problem,
		    parser->context,
		    (unsigned long)parser->context_mark.line + 1);
	else
		cfg_error(ld, o, line, NULL, "%s", problem);
	return YT_FAIL;
}

/*
 * Parse one YAML document into a tree. *out is NULL for an empty document.
 * base is the dotted path the document sits at (NULL for a whole file).
 * quiet: do not report a syntax error, return YT_SYNTAX instead.
 */
int
cfg_yaml_to_tree(struct loader *ld, const struct corigin *o, const char *base,
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
		cfg_error(ld, o, o->lines ? (unsigned long)root->start_mark.line + 1 : 0,
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
struct cnode *
cfg_default_node(struct loader *ld, const struct cfg_key *k)
{
	struct cnode *n = NULL;
	int rc;

	if (k->def == NULL)
		return NULL;
	rc = cfg_yaml_to_tree(ld, &ld->def_origin, k->name, k->def, strlen(k->def),
	    false, &n);
	/* A default that does not parse is a bug in config.c's tables. */
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
			k = cfg_key_find(tbl, c, n);
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
		else if (!item && cfg_type_is_list(k->type))
			lk = k;
		else if (item && k->type == CFG_LIST_MAP)
			tbl = k->sub;
		else
			return false;
	}
	return item ? k->type == CFG_LIST_SCALAR : cfg_type_is_scalar(k->type);
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
		j = cnode_map_find(dst, key->text, key->len);
		if (j >= 0) {
			cnode_free(key);
			set_value(ld, &dst->kids[j], val);
		} else {
			cnode_push(ld, dst, key, val);
		}
	}
	cnode_free(src);
}

void
cnode_where(const struct cnode *n, char *buf, size_t len)
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

			k = cfg_key_find(tbl, c, n);
			if (k == NULL) {
				cfg_error(ld, o, 0, NULL, "unknown configuration key");
				goto done;
			}
			cfg_path_append(where, sizeof where, k->name, strlen(k->name));
			i = cnode_map_find(node, k->name, strlen(k->name));
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
				cfg_error(ld, o, 0, NULL,
				    "%s: expected a list index, got '%.*s'", where,
				    (int)(n < CONFIG_QUOTE_MAX ? n : CONFIG_QUOTE_MAX), c);
				goto done;
			}
			if (idx > node->n) {
				cfg_error(ld, o, 0, NULL,
				    "%s: index %zu is out of range (the list has %zu "
				    "%s; index %zu appends)", where, idx, node->n,
				    node->n == 1 ? "entry" : "entries", node->n);
				goto done;
			}
			if (idx == node->n && cnode_push(ld, node, NULL, NULL) < 0)
				goto done;
			cfg_path_index(where, sizeof where, where, idx);
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
		} else if (!item && cfg_type_is_list(k->type)) {
			want = CNODE_LIST;
			nlk = k;
		} else if (item && k->type == CFG_LIST_MAP) {
			want = CNODE_MAP;
			ntbl = k->sub;
		} else {
			/* Path continues below a scalar. */
			cfg_error(ld, o, 0, NULL, "unknown configuration key");
			goto done;
		}
		if (cnode_is_null(*slot)) {
			struct cnode *fresh = want == CNODE_MAP ?
			    cnode_new(ld, CNODE_MAP, o, 0) : cfg_default_node(ld, k);

			if (fresh == NULL) {
				assert(ld->oom);
				goto done;
			}
			cnode_free(*slot);
			*slot = fresh;
		}
		if ((*slot)->kind != want) {
			cnode_where(*slot, loc, sizeof loc);
			cfg_error(ld, o, 0, NULL, "%s is %s (%s), not %s", where,
			    cnode_kind_name(*slot), loc,
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

	rc = cfg_yaml_to_tree(ld, o, path, text, strlen(text), scalar, &val);
	if (rc == YT_SYNTAX)
		val = cnode_scalar(ld, o, 0, text, strlen(text), false);
	else if (rc == YT_OK && val == NULL)
		val = cnode_scalar(ld, o, 0, "", 0, true);
	if (val == NULL)
		return;
	apply_override(ld, root, path, val, o);
}

void
cfg_apply_options(struct loader *ld, struct cnode *root, char *const *overrides,
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
		path = cfg_str_dup(ld, p, (size_t)(e - p));
		if (path == NULL)
			return;
		if (eq == NULL || path[0] == '\0') {
			o = cfg_origin_new(ld, cfg_str_fmt("-o %s", arg), NULL, false);
			if (o != NULL)
				cfg_error(ld, o, 0, NULL, "expected dotted.path=value");
		} else {
			o = cfg_origin_new(ld, cfg_str_fmt("-o %s", path), path, false);
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
		cfg_path_append(path, cap, num, strlen(num));
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
		cfg_path_append(path, cap, k->name, n);
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

void
cfg_apply_environment(struct loader *ld, struct cnode *root, char *const *envp)
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
		vars[nvars].name = cfg_str_dup(ld, envp[i], (size_t)(eq - envp[i]));
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
			o = cfg_origin_new(ld, cfg_str_fmt("environment %s", name), NULL,
			    false);
			if (o != NULL)
				cfg_error(ld, o, 0, NULL, "unknown configuration key");
			continue;
		}
		o = cfg_origin_new(ld, cfg_str_fmt("environment %s", name), path, false);
		if (o != NULL)
			apply_text(ld, root, o, path, vars[i].value);
	}
done:
	for (i = 0; i < nvars; i++)
		free(vars[i].name);
	free(vars);
}


int
cfg_read_file(struct loader *ld, const struct corigin *fo, const char *path,
    char **bufp, size_t *lenp)
{
	char *buf = NULL;
	size_t len = 0;
	ssize_t r;
	int fd, rc = -1;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		cfg_error(ld, fo, 0, NULL, "cannot open: %s", strerror(errno));
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
			cfg_error(ld, fo, 0, NULL, "cannot read: %s", strerror(errno));
			goto done;
		}
		if (r == 0)
			break;
		len += (size_t)r;
		if (len > CONFIG_FILE_MAX) {
			cfg_error(ld, fo, 0, NULL, "file is larger than %d bytes",
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
