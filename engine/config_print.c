/*
 * config_print.c - the effective configuration as YAML, for
 * `sluiced --print-config` (like Postfix's `postconf -n`): the keys the
 * file, -o options and SLUICE_* variables set, as the loader merged them;
 * with all, every key, a default where nothing set it.
 *
 * It prints from the merged tree, not from struct config, so that values
 * come out as they were written ("10M", not 10485760) and lists of
 * networks or routes need no formatter of their own. Keys whose default
 * is only known after loading (hostname, limits.memory, ...) print the
 * value the loader settled on.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_int.h"

/* A scalar YAML reads back as the same string without quotes? */
static bool
plain_ok(const char *s, size_t n)
{
	if (n == 0 || strchr("-?:,[]{}#&*!|>'\"%@`~", s[0]) != NULL ||
	    s[n - 1] == ':')
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || strchr("._/:@+-", c) != NULL))
			return false;
	}
	/* "1:2" style values would read as sexagesimal in YAML 1.1. */
	return strchr(s, ':') == NULL || strchr(s, '.') != NULL ||
	    strchr(s, '/') != NULL;
}

static void
put_scalar(FILE *out, const char *s, size_t n)
{
	if (plain_ok(s, n)) {
		fwrite(s, 1, n, out);
		return;
	}
	fputc('"', out);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"' || c == '\\')
			fprintf(out, "\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			fprintf(out, "\\x%02x", c);
		else
			fputc(c, out);
	}
	fputc('"', out);
}

static void put_block(FILE *out, const struct cnode *n, unsigned indent);

/* After "key:" or "-": the value, inline when it fits on the line. */
static void
put_value(FILE *out, const struct cnode *n, unsigned indent)
{
	if (n == NULL || (n->kind == CNODE_SCALAR && n->null)) {
		fputs(" ~\n", out);
	} else if (n->kind == CNODE_SCALAR) {
		fputc(' ', out);
		put_scalar(out, n->text, n->len);
		fputc('\n', out);
	} else if (n->n == 0) {
		fputs(n->kind == CNODE_MAP ? " {}\n" : " []\n", out);
	} else if (n->kind == CNODE_LIST) {
		bool flat = true;

		for (size_t i = 0; i < n->n; i++)
			flat = flat && n->kids[i] != NULL &&
			    n->kids[i]->kind == CNODE_SCALAR;
		if (!flat) {
			fputc('\n', out);
			put_block(out, n, indent);
			return;
		}
		fputs(" [", out);
		for (size_t i = 0; i < n->n; i++) {
			if (i > 0)
				fputs(", ", out);
			put_scalar(out, n->kids[i]->text, n->kids[i]->len);
		}
		fputs("]\n", out);
	} else {
		fputc('\n', out);
		put_block(out, n, indent);
	}
}

/* A map's entries or a list's items, one per line, at indent. */
static void
put_block(FILE *out, const struct cnode *n, unsigned indent)
{
	for (size_t i = 0; i < n->n; i++) {
		const struct cnode *kid = n->kids[i];

		if (n->kind == CNODE_MAP) {
			fprintf(out, "%*s", (int)indent, "");
			put_scalar(out, n->keys[i]->text, n->keys[i]->len);
			fputc(':', out);
			put_value(out, kid, indent + 2);
			continue;
		}
		fprintf(out, "%*s-", (int)indent, "");
		if (kid != NULL && kid->kind == CNODE_MAP && kid->n > 0) {
			/* "- key: value" with the rest under the first key. */
			for (size_t j = 0; j < kid->n; j++) {
				if (j > 0)
					fprintf(out, "%*s", (int)indent + 2, "");
				else
					fputc(' ', out);
				put_scalar(out, kid->keys[j]->text,
				    kid->keys[j]->len);
				fputc(':', out);
				put_value(out, kid->kids[j], indent + 4);
			}
		} else {
			put_value(out, kid, indent + 2);
		}
	}
}

/*
 * The value the loader settled on for a key with no written default; a
 * string that stayed unset prints as a comment ("#relay_host: ~"), so the
 * output still loads as the same configuration. 1 when a value printed.
 */
static int
put_resolved(FILE *out, const struct cfg_key *k, const void *base,
    unsigned indent)
{
	const char *field = (const char *)base + k->offset;
	char text[64];
	uint64_t x;

	if (k->type == CFG_STRING) {
		const char *s = *(char *const *)(const void *)field;

		if (s == NULL) {
			fprintf(out, "%*s#%s: ~\n", (int)indent, "", k->name);
			return 0;
		}
		fprintf(out, "%*s%s: ", (int)indent, "", k->name);
		put_scalar(out, s, strlen(s));
		fputc('\n', out);
		return 1;
	}
	if (k->size == 8)
		memcpy(&x, field, 8);
	else {
		uint32_t y;

		memcpy(&y, field, 4);
		x = y;
	}
	if (k->type == CFG_BOOL)
		snprintf(text, sizeof(text), "%s", x ? "true" : "false");
	else
		cfg_fmt_value(k->type, x, text, sizeof(text));
	fprintf(out, "%*s%s: %s\n", (int)indent, "", k->name, text);
	return 1;
}

/* The keys of tbl; the number of lines that are not comments. */
static int
put_table(FILE *out, const struct cfg_key *tbl, const struct cnode *map,
    const void *base, const struct corigin *skip, bool all, unsigned indent)
{
	int lines = 0;

	for (const struct cfg_key *k = tbl; k->name != NULL; k++) {
		const struct cnode *v = NULL;
		int j;

		if (map != NULL &&
		    (j = cnode_map_find(map, k->name, strlen(k->name))) >= 0)
			v = map->kids[j];
		if (k->type == CFG_MAP) {
			char *sub = NULL;
			size_t sublen = 0;
			FILE *s = open_memstream(&sub, &sublen);
			int n;

			if (s == NULL)
				continue;
			n = put_table(s, k->sub, v != NULL &&
			    v->kind == CNODE_MAP ? v : NULL,
			    (const char *)base + k->offset, skip, all,
			    indent + 2);
			fclose(s);
			/* A map with nothing set stays a comment too. */
			if (sublen > 0)
				fprintf(out, "%*s%s%s:\n%s", (int)indent, "",
				    n > 0 ? "" : "#", k->name, sub);
			lines += n;
			free(sub);
			continue;
		}
		if (!cnode_is_null(v) && (skip == NULL || v->origin != skip)) {
			fprintf(out, "%*s%s:", (int)indent, "", k->name);
			put_value(out, v, indent + 2);
			lines++;
		} else if (all && k->def != NULL) {
			fprintf(out, "%*s%s: %s\n", (int)indent, "", k->name,
			    k->def);
			lines++;
		} else if (all && !cfg_type_is_list(k->type)) {
			lines += put_resolved(out, k, base, indent);
		}
	}
	return lines;
}

void
cfg_print_tree(FILE *out, const struct cnode *root, const struct config *cfg,
    const struct corigin *skip, bool all)
{
	(void)put_table(out, config_keys, root, cfg, skip, all, 0);
}
