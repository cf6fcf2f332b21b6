/*
 * config_convert.c - the schema's mechanism: a YAML tree checked against
 * the key tables (struct cfg_key) and converted into the structs they
 * describe, scalar by scalar (sizes, durations, booleans, integers with
 * their ranges), lists and maps by recursion, defaults where nothing was
 * written; and freeing what that allocated. config.c holds the tables, the
 * checks of single values and what needs the whole configuration.
 */
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_int.h"


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
void
cfg_fmt_value(enum cfg_type t, uint64_t x, char *buf, size_t len)
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
/* Validation: tree -> struct config                                   */
/* ------------------------------------------------------------------ */


static bool
want_kind(struct loader *ld, const struct cfg_key *k, const struct cnode *v,
    enum cnode_kind kind, const char *path)
{
	if (v->kind == kind && !cnode_is_null(v))
		return true;
	cfg_error(ld, v->origin, v->line, path, "expected %s, got %s",
	    type_name(k->type), cnode_kind_name(v));
	return false;
}

/* Text of a scalar that is about to be used as a C string. */
static bool
want_text(struct loader *ld, const struct cnode *v, const char *path)
{
	if (strlen(v->text) == v->len)
		return true;
	cfg_error(ld, v->origin, v->line, path, "value contains a NUL byte");
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
		cfg_error(ld, v->origin, v->line, path,
		    "list must have at least %llu %s", (unsigned long long)k->min,
		    k->min == 1 ? "entry" : "entries");
		return;
	}
	if (v->n > k->max) {
		cfg_error(ld, v->origin, v->line, path,
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
		cfg_path_index(ipath, sizeof ipath, path, i);
		if (k->type == CFG_LIST_MAP) {
			if (it->kind != CNODE_MAP) {
				cfg_error(ld, it->origin, it->line, ipath,
				    "expected a map, got %s", cnode_kind_name(it));
				continue;
			}
			validate_map(ld, k->sub, it, ipath, elem);
			continue;
		}
		if (it->kind != CNODE_SCALAR || it->null) {
			cfg_error(ld, it->origin, it->line, ipath,
			    "expected a scalar, got %s", cnode_kind_name(it));
			continue;
		}
		if (!want_text(ld, it, ipath))
			continue;
		if (k->check(it->text, elem, why, sizeof why) < 0)
			cfg_error(ld, it->origin, it->line, ipath, "%s", why);
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
			cfg_error(ld, v->origin, v->line, path, "%s", why);
			return;
		}
		s = cfg_str_dup(ld, v->text, v->len);
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
				cfg_error(ld, v->origin, v->line, path,
				    "invalid integer '%.*s' (expected decimal "
				    "digits)", CONFIG_QUOTE_MAX, v->text);
			else if (k->type == CFG_SIZE)
				cfg_error(ld, v->origin, v->line, path,
				    "invalid size '%.*s' (expected bytes, or a "
				    "number with suffix K, M, G or T)",
				    CONFIG_QUOTE_MAX, v->text);
			else
				cfg_error(ld, v->origin, v->line, path,
				    "invalid duration '%.*s' (expected seconds, "
				    "or a number with suffix ms, s, m or h)",
				    CONFIG_QUOTE_MAX, v->text);
			return;
		}
		if (x < k->min || x > k->max) {
			cfg_fmt_value(k->type, k->min, lo, sizeof lo);
			cfg_fmt_value(k->type, k->max, hi, sizeof hi);
			cfg_error(ld, v->origin, v->line, path,
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
			cfg_error(ld, v->origin, v->line, path,
			    "invalid boolean '%.*s' (expected true or false)",
			    CONFIG_QUOTE_MAX, v->text);
			return;
		}
		store_uint(field, k->size, x);
		return;

	case CFG_MAP:
		/* A map that also takes a one-line form (auth). */
		if (k->check != NULL && v->kind == CNODE_SCALAR) {
			if (!want_text(ld, v, path))
				return;
			if (k->check(v->text, field, why, sizeof why) < 0)
				cfg_error(ld, v->origin, v->line, path, "%s", why);
			return;
		}
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
void
validate_map(struct loader *ld, const struct cfg_key *tbl,
    const struct cnode *map, const char *path, void *base)
{
	char cpath[CONFIG_PATH_MAX];
	const struct cfg_key *k;
	size_t i;

	assert(map == NULL || map->kind == CNODE_MAP);
	for (i = 0; map != NULL && i < map->n; i++) {
		const struct cnode *key = map->keys[i];

		if (cfg_key_find(tbl, key->text, key->len) == NULL) {
			cfg_path_child(cpath, sizeof cpath, path, key->text);
			cfg_error(ld, key->origin, key->line, cpath,
			    "unknown configuration key");
		}
	}
	for (k = tbl; k->name != NULL; k++) {
		const struct cnode *v = NULL;
		struct cnode *d;
		int j;

		cfg_path_child(cpath, sizeof cpath, path, k->name);
		if (map != NULL && (j = cnode_map_find(map, k->name, strlen(k->name))) >= 0)
			v = map->kids[j];
		if (!cnode_is_null(v)) {
			convert(ld, k, v, cpath, base);
			continue;
		}
		if (k->flags & CFG_REQUIRED) {
			const struct cnode *at = v != NULL ? v : map;

			assert(at != NULL);
			cfg_error(ld, at->origin, at->line, cpath,
			    "required key is missing");
			continue;
		}
		if (k->type == CFG_MAP) {
			validate_map(ld, k->sub, NULL, cpath,
			    (char *)base + k->offset);
			continue;
		}
		d = cfg_default_node(ld, k);
		if (d != NULL)
			convert(ld, k, d, cpath, base);
		cnode_free(d);
	}
}

/* Free what the schema says was allocated: strings and lists. */
void
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

