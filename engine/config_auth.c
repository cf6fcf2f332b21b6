/*
 * config_auth.c - the configuration of SMTP AUTH and of who may send what:
 * listen[].auth, users, users_file, sender_restrictions, relay_domains.
 * Part of the loader (config_int.h); the checks run from the schema tables,
 * cfg_auth_finish() after them.
 *
 * Passwords are stored only as crypt(3) hashes, and a value that is not
 * one is refused: a plaintext password in a file is the mistake this
 * catches, so no message ever repeats a password value. Which hash
 * methods are good enough is libxcrypt's call (crypt_checksalt()), among
 * those it can verify: yescrypt, gost-yescrypt, scrypt, bcrypt and
 * sha512-crypt. md5-crypt, sha256-crypt and DES are "legacy" there.
 *
 * users_file: one user a line, "name:hash[:pattern,pattern...]"; blank
 * lines and lines starting with '#' are skipped. It holds hashes, so a
 * file anyone may read (or write) is refused, like ssh refuses such keys.
 * It is read at load, that is before sluiced gives up root.
 */
#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config_int.h"
#include "../lib/secret.h"

#define USERS_LINE_MAX	4096		/* bytes in a users_file line */

/* ------------------------------------------------------------------ */
/* Checks                                                              */
/* ------------------------------------------------------------------ */

static int check_user_name(const char *s, void *obj, char *why,
    size_t whylen);
static int check_password(const char *s, void *obj, char *why,
    size_t whylen);
static int check_sender_pattern(const char *s, void *obj, char *why,
    size_t whylen);

const struct cfg_key config_user_keys[] = {
	{ .name = "name", .type = CFG_STRING,
	  .offset = offsetof(struct user_cfg, name),
	  .size = sizeof(char *), .check = check_user_name,
	  .flags = CFG_REQUIRED },
	{ .name = "password", .type = CFG_STRING,
	  .offset = offsetof(struct user_cfg, password),
	  .size = sizeof(char *), .check = check_password,
	  .flags = CFG_REQUIRED },
	{ .name = "allowed_from", .type = CFG_LIST_SCALAR, .def = "[]",
	  .min = 0, .max = 1024,
	  .offset = offsetof(struct user_cfg, allowed_from),
	  .count_offset = offsetof(struct user_cfg, nallowed_from),
	  .elem_size = sizeof(struct smtp_pat),
	  .check = check_sender_pattern },
	{ .name = NULL },
};

int
cfg_check_auth_mode(const char *s, void *obj, char *why, size_t whylen)
{
	struct listen_cfg *l = obj;

	if (strcmp(s, "none") == 0)
		l->policy.auth = SMTP_AUTH_OFF;
	else if (strcmp(s, "optional") == 0)
		l->policy.auth = SMTP_AUTH_OPTIONAL;
	else if (strcmp(s, "required") == 0)
		l->policy.auth = SMTP_AUTH_REQUIRED;
	else {
		snprintf(why, whylen, "invalid value '%.*s' (expected none, "
		    "optional or required)", CONFIG_QUOTE_MAX, s);
		return -1;
	}
	return 0;
}

static int
sender_rule(const char *s, enum smtp_sender_rule *out)
{
	if (strcmp(s, "none") == 0)
		*out = SMTP_SENDER_ANY;
	else if (strcmp(s, "domain") == 0)
		*out = SMTP_SENDER_DOMAIN;
	else if (strcmp(s, "email") == 0)
		*out = SMTP_SENDER_EMAIL;
	else
		return -1;
	return 0;
}

int
cfg_check_sender_rule(const char *s, void *obj, char *why, size_t whylen)
{
	enum smtp_sender_rule r;

	(void)obj;
	if (sender_rule(s, &r) < 0) {
		snprintf(why, whylen, "invalid value '%.*s' (expected none, "
		    "domain or email)", CONFIG_QUOTE_MAX, s);
		return -1;
	}
	return 0;
}

/*
 * A domain name as routing writes them (docs/routing.md): letters,
 * digits, '-' and '_', labels of 1 to 63, at most 253 in all, one
 * trailing dot allowed. Lower-cased into out when it is one.
 */
static bool
domain_name(const char *s, size_t n, char *out)
{
	size_t i, label = 0;

	if (n > 0 && s[n - 1] == '.')
		n--;
	if (n == 0 || n > 253)
		return false;
	for (i = 0; i < n; i++) {
		char c = s[i];

		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
		} else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '_') {
			if (++label > 63)
				return false;
		} else {
			return false;
		}
		if (out != NULL)
			out[i] = (c >= 'A' && c <= 'Z') ?
			    (char)(c - 'A' + 'a') : c;
	}
	if (out != NULL)
		out[n] = '\0';
	return label > 0;
}

int
cfg_check_domain_pattern(const char *s, void *obj, char *why, size_t whylen)
{
	struct smtp_pat *p = obj;
	size_t off = s[0] == '.';

	if (!domain_name(s + off, strlen(s + off), p->s + off)) {
		snprintf(why, whylen, "invalid domain '%.*s' (expected "
		    "example.com, or .example.com for its subdomains)",
		    CONFIG_QUOTE_MAX, s);
		return -1;
	}
	if (off)
		p->s[0] = '.';
	return 0;
}

/* "user@domain" or "@domain", into a smtp_pat. */
static int
check_sender_pattern(const char *s, void *obj, char *why, size_t whylen)
{
	struct smtp_pat *p = obj;
	const char *at = strrchr(s, '@');
	bool eight_bit;

	if (at == NULL || !domain_name(at + 1, strlen(at + 1), NULL) ||
	    (at != s && !smtp_address_ok(s, false, &eight_bit)) ||
	    strlen(s) >= sizeof(p->s)) {
		snprintf(why, whylen, "invalid sender '%.*s' (expected "
		    "user@example.com, or @example.com for the whole domain)",
		    CONFIG_QUOTE_MAX, s);
		return -1;
	}
	memcpy(p->s, s, strlen(s) + 1);
	return 0;
}

/*
 * A user name as clients send it (proto/sasl.h): 1 to 255 bytes, no
 * control characters (it is logged), and no ':' (users_file's separator,
 * so that every user could be written in either place).
 */
static int
check_user_name(const char *s, void *obj, char *why, size_t whylen)
{
	size_t n = strlen(s), i;

	(void)obj;
	if (n == 0 || n > SASL_FIELD_MAX) {
		snprintf(why, whylen, "a user name has 1 to %d bytes",
		    SASL_FIELD_MAX);
		return -1;
	}
	for (i = 0; i < n; i++) {
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f || s[i] == ':') {
			snprintf(why, whylen, "invalid user name '%.*s' (no "
			    "control characters, no ':')", CONFIG_QUOTE_MAX,
			    s);
			return -1;
		}
	}
	if (!smtp_utf8_valid(s, n)) {
		snprintf(why, whylen, "user name is not UTF-8");
		return -1;
	}
	return 0;
}

/* The hash methods sluice verifies, by their crypt(3) prefix. */
static const char *const hash_prefixes[] = {
	"$y$", "$gy$", "$7$", "$2b$", "$2y$", "$2a$", "$6$",
};

/*
 * Is s a whole crypt(3) hash of a method above? Only its shape is
 * looked at (hashing at load would cost each user a deliberately slow
 * hash); the text never appears in a message, since a value that is
 * not a hash may well be a password.
 */
static int
check_password(const char *s, void *obj, char *why, size_t whylen)
{
	size_t n = strlen(s), i, k, plen = 0;
	int cs;

	(void)obj;
	if (s[0] != '$') {
		snprintf(why, whylen, "not a crypt(3) hash (a plaintext "
		    "password?); store the output of `sluicectl "
		    "hash-password` (the value is not shown)");
		return -1;
	}
	for (i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '.' || c == '/' ||
		    c == '$' || c == '=')) {
			snprintf(why, whylen, "not a crypt(3) hash (unexpected "
			    "characters; the value is not shown)");
			return -1;
		}
	}
	for (k = 0; k < sizeof(hash_prefixes) / sizeof(hash_prefixes[0]); k++)
		if (strncmp(s, hash_prefixes[k], strlen(hash_prefixes[k])) == 0)
			plen = strlen(hash_prefixes[k]);
	cs = crypt_checksalt(s);
	if (plen == 0 || (cs != CRYPT_SALT_OK && cs != CRYPT_SALT_TOO_CHEAP)) {
		snprintf(why, whylen, "hash method not accepted (use "
		    "yescrypt $y$, bcrypt $2b$ or sha512-crypt $6$, as "
		    "`sluicectl hash-password` writes)");
		return -1;
	}
	/* A setting alone ("$6$salt$") has nothing to compare with. */
	if (s[n - 1] == '$' || (s[1] == '2' && n != 60) ||
	    (s[1] != '2' && strrchr(s, '$') - s < (ptrdiff_t)plen + 1)) {
		snprintf(why, whylen, "not a whole crypt(3) hash (a salt "
		    "without its hash?)");
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* users_file                                                          */
/* ------------------------------------------------------------------ */

/* Where each user was written, for the duplicate messages. */
struct user_src {
	const struct corigin *o;
	unsigned long line;
};

/* One more user slot in cfg->users (zeroed), or NULL when out of memory. */
static struct user_cfg *
user_append(struct loader *ld, struct config *cfg, struct user_src **src,
    const struct corigin *o, unsigned long line)
{
	struct user_cfg *u;
	struct user_src *s;

	u = realloc(cfg->users, (cfg->nusers + 1) * sizeof(*u));
	if (u == NULL) {
		ld->oom = true;
		return NULL;
	}
	cfg->users = u;
	s = realloc(*src, (cfg->nusers + 1) * sizeof(*s));
	if (s == NULL) {
		ld->oom = true;
		return NULL;
	}
	*src = s;
	s[cfg->nusers] = (struct user_src){ o, line };
	memset(&u[cfg->nusers], 0, sizeof(*u));
	return &u[cfg->nusers++];
}

/* One users_file line (without its newline) into a new user. */
static void
users_line(struct loader *ld, struct config *cfg, struct user_src **src,
    const struct corigin *o, unsigned long line, char *text)
{
	char why[CONFIG_WHY_MAX], *pw, *pats, *p, *next;
	struct user_cfg *u;
	struct smtp_pat pat;
	size_t n = 0;

	pw = strchr(text, ':');
	if (pw == NULL) {
		cfg_error(ld, o, line, NULL, "expected name:hash[:senders]");
		return;
	}
	*pw++ = '\0';
	pats = strchr(pw, ':');
	if (pats != NULL)
		*pats++ = '\0';
	if (check_user_name(text, NULL, why, sizeof(why)) < 0 ||
	    check_password(pw, NULL, why, sizeof(why)) < 0) {
		cfg_error(ld, o, line, NULL, "%s", why);
		return;
	}
	u = user_append(ld, cfg, src, o, line);
	if (u == NULL)
		return;
	u->name = cfg_str_dup(ld, text, strlen(text));
	u->password = cfg_str_dup(ld, pw, strlen(pw));
	for (p = pats; p != NULL && *p != '\0'; p = next) {
		next = strchr(p, ',');
		if (next != NULL)
			*next++ = '\0';
		p += strspn(p, " \t");
		p[strcspn(p, " \t")] = '\0';
		if (*p == '\0')
			continue;
		if (check_sender_pattern(p, &pat, why, sizeof(why)) < 0) {
			cfg_error(ld, o, line, NULL, "%s", why);
			continue;
		}
		if (n == u->nallowed_from) {
			struct smtp_pat *a = realloc(u->allowed_from,
			    (n ? 2 * n : 4) * sizeof(*a));

			if (a == NULL) {
				ld->oom = true;
				return;
			}
			u->allowed_from = a;
			n = n ? 2 * n : 4;
		}
		u->allowed_from[u->nallowed_from++] = pat;
	}
}

static void
load_users_file(struct loader *ld, struct config *cfg, struct user_src **src,
    const struct cnode *where)
{
	const char *path = cfg->users_file;
	const struct corigin *o;
	unsigned long line = 0;
	char *buf = NULL, why[CONFIG_WHY_MAX + 4096];
	size_t cap = 0;
	ssize_t len;
	FILE *f;
	int fd;

	o = cfg_origin_new(ld, cfg_str_fmt("%s", path), NULL, true);
	if (o == NULL)
		return;
	/* Password hashes: the owner's group (a mail admin's) may read. */
	fd = secret_open(path, "users file", SECRET_NOT_OTHERS, why,
	    sizeof(why));
	if (fd < 0) {
		cfg_error(ld, where->origin, where->line, "users_file", "%s",
		    why);
		return;
	}
	f = fdopen(fd, "r");
	if (f == NULL) {
		ld->oom = true;
		close(fd);
		return;
	}
	while ((len = getline(&buf, &cap, f)) >= 0) {
		line++;
		if (len > 0 && buf[len - 1] == '\n')
			buf[--len] = '\0';
		if (len > 0 && buf[len - 1] == '\r')
			buf[--len] = '\0';
		if ((size_t)len != strlen(buf)) {
			cfg_error(ld, o, line, NULL, "NUL byte in the line");
			continue;
		}
		if (len > USERS_LINE_MAX) {
			cfg_error(ld, o, line, NULL, "line longer than %d "
			    "bytes", USERS_LINE_MAX);
			continue;
		}
		if (buf[strspn(buf, " \t")] == '\0' || buf[0] == '#')
			continue;
		if (cfg->nusers >= CONFIG_USERS_MAX) {
			cfg_error(ld, o, line, NULL, "more than %d users",
			    CONFIG_USERS_MAX);
			break;
		}
		users_line(ld, cfg, src, o, line, buf);
		if (ld->oom)
			break;
	}
	if (ferror(f))
		cfg_error(ld, o, line, NULL, "cannot read: %s",
		    strerror(errno));
	free(buf);
	fclose(f);
}

/* ------------------------------------------------------------------ */
/* After the schema pass                                               */
/* ------------------------------------------------------------------ */

static int
user_cmp(const void *a, const void *b)
{
	return strcmp(((const struct user_cfg *)a)->name,
	    ((const struct user_cfg *)b)->name);
}

/* Indices into the users (ctx) by name, then by where they were written. */
static int
order_cmp(const void *a, const void *b, void *ctx)
{
	const struct user_cfg *u = ctx;
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	int c = strcmp(u[x].name, u[y].name);

	return c != 0 ? c : (x > y) - (x < y);
}

/* Sort cfg->users by name (for bsearch), refusing a name given twice. */
static void
sort_users(struct loader *ld, struct config *cfg, const struct user_src *src)
{
	size_t *order, i;
	struct user_cfg *sorted;

	/* A user whose name was refused is reported already. */
	for (i = 0; i < cfg->nusers; i++)
		if (cfg->users[i].name == NULL)
			return;
	if (cfg->nusers == 0)
		return;
	order = malloc(cfg->nusers * sizeof(*order));
	sorted = malloc(cfg->nusers * sizeof(*sorted));
	if (order == NULL || sorted == NULL) {
		ld->oom = true;
		goto out;
	}
	for (i = 0; i < cfg->nusers; i++)
		order[i] = i;
	/* Equal names in the order written: the later one is the dup. */
	qsort_r(order, cfg->nusers, sizeof(*order), order_cmp, cfg->users);
	for (i = 1; i < cfg->nusers; i++) {
		const struct user_cfg *u = &cfg->users[order[i]];

		if (strcmp(u->name, cfg->users[order[i - 1]].name) == 0)
			cfg_error(ld, src[order[i]].o, src[order[i]].line,
			    NULL, "user '%.*s' is defined twice",
			    CONFIG_QUOTE_MAX, u->name);
	}
	for (i = 0; i < cfg->nusers; i++)
		sorted[i] = cfg->users[order[i]];
	memcpy(cfg->users, sorted, cfg->nusers * sizeof(*sorted));
out:
	free(order);
	free(sorted);
}

void
cfg_auth_finish(struct loader *ld, struct config *cfg, const struct cnode *root)
{
	const struct cnode *users = cnode_map_value(root, "users");
	const struct cnode *listen, *l, *v;
	struct user_src *src = NULL;
	enum smtp_sender_rule rule = SMTP_SENDER_ANY;
	char path[CONFIG_PATH_MAX];
	size_t i;

	/* The users of the file where they were written, for messages. */
	if (cfg->nusers > 0) {
		src = calloc(cfg->nusers, sizeof(*src));
		if (src == NULL) {
			ld->oom = true;
			return;
		}
		for (i = 0; i < cfg->nusers; i++) {
			v = users != NULL && users->kind == CNODE_LIST &&
			    i < users->n ?
			    cnode_map_value(users->kids[i], "name") : NULL;
			src[i] = v != NULL ? (struct user_src){ v->origin,
			    v->line } : (struct user_src){ root->origin, 0 };
		}
	}
	if (cfg->users_file != NULL) {
		v = cnode_map_value(root, "users_file");
		load_users_file(ld, cfg, &src, v != NULL ? v : root);
	}
	if (!ld->oom)
		sort_users(ld, cfg, src);
	free(src);
	if (cfg->sender_restrictions != NULL)
		(void)sender_rule(cfg->sender_restrictions, &rule);
	listen = cnode_map_value(root, "listen");
	for (i = 0; i < cfg->nlisten; i++) {
		struct listen_cfg *lc = &cfg->listen[i];

		lc->policy.auth_insecure = lc->auth_insecure != 0;
		lc->policy.senders = rule;
		if (lc->policy.auth == SMTP_AUTH_OFF || cfg->nusers > 0)
			continue;
		l = listen != NULL && listen->kind == CNODE_LIST &&
		    i < listen->n ? listen->kids[i] : NULL;
		v = cnode_map_value(l, "auth");
		if (v == NULL)
			v = l != NULL ? l : root;
		cfg_path_index(path, sizeof(path), "listen", i);
		cfg_path_append(path, sizeof(path), "auth", 4);
		cfg_error(ld, v->origin, v->line, path, "AUTH is on but no "
		    "user is configured (users, users_file)");
	}
}

const struct user_cfg *
config_user_find(const struct config *cfg, const char *name)
{
	struct user_cfg key = { .name = (char *)name };

	if (cfg->nusers == 0)
		return NULL;
	return bsearch(&key, cfg->users, cfg->nusers, sizeof(key), user_cmp);
}
