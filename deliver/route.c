/*
 * route.c - the routing table: transports, policies, domain lookup.
 *
 * Purpose: parse the transport and policy syntax of docs/routing.md and
 * answer "which route does this recipient domain take?" quickly for
 * tables of thousands of routes.
 *
 * Contract: see route.h. Routes live in an open-addressing hash table
 * (XXH3-64 of the lower-cased pattern, linear probing, at most half
 * full) so a lookup costs one probe for the exact domain plus one per
 * label for the ".parent" patterns, whatever the table size. "*" is kept
 * aside rather than hashed, since it is the last resort of every lookup.
 *
 * Diagnostics: parse and add errors return ROUTE_E* with a one-line
 * reason in err; programmer errors (NULL arguments, an unparsed
 * transport) fail an assertion.
 */
#include "route.h"

#include "../lib/errbuf.h"

#include <arpa/inet.h>
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <xxhash.h>

#define ROUTE_CONNECTIONS_MAX	10000
#define ROUTE_COUNT_MAX		1000000
#define ROUTE_SLOTS_MIN		64
#define ROUTE_LABEL_MAX		63	/* RFC 1035 section 2.3.4 */
#define DAY_S			86400u

static char
route_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool
route_is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Transports end up in SMTP replies and logs: printable ASCII only. */
static bool
route_printable(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			return false;
	return true;
}

/*
 * Copies a domain or host name of len bytes lower-cased into out (room
 * for ROUTE_DOMAIN_MAX + 1) and checks it: labels of 1..63 letters,
 * digits, '-' or '_', not starting or ending with '-'. '_' is allowed
 * because internal names use it and it harms nothing here.
 */
static bool
route_copy_name(const char *in, size_t len, char *out)
{
	size_t label = 0;

	if (len == 0 || len > ROUTE_DOMAIN_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = route_lower(in[i]);

		if (c == '.') {
			if (label == 0 || out[i - 1] == '-')
				return false;
			label = 0;
		} else if ((c >= 'a' && c <= 'z') || route_is_digit(c) ||
		    c == '_' || c == '-') {
			if (c == '-' && label == 0)
				return false;
			if (++label > ROUTE_LABEL_MAX)
				return false;
		} else {
			return false;
		}
		out[i] = c;
	}
	out[len] = '\0';
	return label > 0 && out[len - 1] != '-';
}

/* Only digits and dots: the operator meant an IPv4 address. */
static bool
route_looks_ipv4(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (!route_is_digit(s[i]) && s[i] != '.')
			return false;
	return len > 0;
}

/* "1".."65535", decimal digits only (no sign, no spaces). */
static int
route_parse_port(const char *s, uint16_t *port, char *err, size_t errlen)
{
	unsigned long v = 0;
	size_t n = strlen(s);

	if (n == 0 || n > 5)
		goto bad;
	for (size_t i = 0; i < n; i++) {
		if (!route_is_digit(s[i]))
			goto bad;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v == 0 || v > 65535)
		goto bad;
	*port = (uint16_t)v;
	return 0;
bad:
	errbuf_set(err, errlen, "bad port '%s'", s);
	return ROUTE_ESYNTAX;
}

/*
 * The inside of [...]: an IPv6 literal (with or without the RFC 5321
 * "IPv6:" tag, stored in inet_ntop() form so equal addresses give equal
 * destination keys), an IPv4 literal, or a host name.
 */
static int
route_parse_bracketed(const char *in, size_t len, struct route_transport *tr,
    char *err, size_t errlen)
{
	char buf[INET6_ADDRSTRLEN + 8];
	unsigned char addr[16];

	if (len >= 5 && strncasecmp(in, "ipv6:", 5) == 0) {
		in += 5;
		len -= 5;
	} else if (memchr(in, ':', len) == NULL) {
		if (route_looks_ipv4(in, len)) {
			if (len >= sizeof(buf))
				goto bad4;
			memcpy(buf, in, len);
			buf[len] = '\0';
			if (inet_pton(AF_INET, buf, addr) != 1)
				goto bad4;
		}
		if (!route_copy_name(in, len, tr->host)) {
			errbuf_set(err, errlen, "bad host '%.*s'", (int)len, in);
			return ROUTE_ESYNTAX;
		}
		return 0;
	}
	if (len == 0 || len >= sizeof(buf))
		goto bad6;
	memcpy(buf, in, len);
	buf[len] = '\0';
	if (inet_pton(AF_INET6, buf, addr) != 1)
		goto bad6;
	if (inet_ntop(AF_INET6, addr, tr->host, sizeof(tr->host)) == NULL)
		goto bad6;
	tr->ipv6 = true;
	return 0;
bad4:
	errbuf_set(err, errlen, "bad IPv4 address '%.*s'", (int)len, in);
	return ROUTE_ESYNTAX;
bad6:
	errbuf_set(err, errlen, "bad IPv6 address '%.*s'", (int)len, in);
	return ROUTE_ESYNTAX;
}

/* "[host]", "[host]:port", "host", "host:port" after "smtp:"/"lmtp:". */
static int
route_parse_next_hop(const char *arg, uint16_t default_port,
    struct route_transport *tr, char *err, size_t errlen)
{
	const char *rest;
	int rc;

	if (arg[0] == '[') {
		const char *close = strchr(arg, ']');

		if (close == NULL) {
			errbuf_set(err, errlen, "missing ']' in '%s'", arg);
			return ROUTE_ESYNTAX;
		}
		rc = route_parse_bracketed(arg + 1, (size_t)(close - arg - 1),
		    tr, err, errlen);
		if (rc != 0)
			return rc;
		tr->bracketed = true;
		rest = close + 1;
	} else {
		size_t len = strcspn(arg, ":");

		if (len == 0) {
			errbuf_set(err, errlen, "empty next hop");
			return ROUTE_ESYNTAX;
		}
		/* An MX lookup of an address makes no sense: say so. */
		if (route_looks_ipv4(arg, len)) {
			errbuf_set(err, errlen,
			    "address '%.*s' needs brackets: '[%.*s]'",
			    (int)len, arg, (int)len, arg);
			return ROUTE_ESYNTAX;
		}
		if (!route_copy_name(arg, len, tr->host)) {
			errbuf_set(err, errlen, "bad host '%.*s'", (int)len,
			    arg);
			return ROUTE_ESYNTAX;
		}
		tr->mx_lookup = true;
		rest = arg + len;
	}
	if (*rest == '\0') {
		tr->port = default_port;
		return 0;
	}
	if (*rest != ':') {
		errbuf_set(err, errlen, "unexpected '%s' after next hop", rest);
		return ROUTE_ESYNTAX;
	}
	return route_parse_port(rest + 1, &tr->port, err, errlen);
}

/* RFC 3463 section 2: class "." subject "." detail, 1-3 digits each. */
static size_t
route_enhanced_len(const char *s)
{
	size_t i = 0, n;

	if (s[0] != '2' && s[0] != '4' && s[0] != '5')
		return 0;
	i = 1;
	for (int part = 0; part < 2; part++) {
		if (s[i++] != '.')
			return 0;
		for (n = 0; route_is_digit(s[i]); n++)
			i++;
		if (n < 1 || n > 3)
			return 0;
	}
	return s[i] == ' ' || s[i] == '\0' ? i : 0;
}

/*
 * error:TEXT. TEXT may start with a 4xx/5xx code and an enhanced status
 * code, or just one of them; what is missing is filled in so the RCPT
 * reply is always "CODE X.Y.Z text". No code at all means
 * "550 5.7.1 TEXT" (delivery not authorized, RFC 3463 section 3.8).
 */
static int
route_parse_error(const char *arg, struct route_transport *tr, char *err,
    size_t errlen)
{
	const char *p = arg;
	char enhanced[16] = "5.7.1";
	size_t n;
	int code = 550, len;

	if (route_is_digit(p[0]) && route_is_digit(p[1]) &&
	    route_is_digit(p[2]) && (p[3] == ' ' || p[3] == '\0')) {
		code = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
		if (code < 400 || code > 599) {
			errbuf_set(err, errlen,
			    "error code must be 4xx or 5xx, not '%.3s'", p);
			return ROUTE_ESYNTAX;
		}
		p += 3;
		while (*p == ' ')
			p++;
		snprintf(enhanced, sizeof(enhanced), "%d.0.0", code / 100);
		if ((n = route_enhanced_len(p)) > 0) {
			if (p[0] - '0' != code / 100) {
				errbuf_set(err, errlen, "enhanced code '%.*s' "
				    "does not match %d", (int)n, p, code);
				return ROUTE_ESYNTAX;
			}
			snprintf(enhanced, sizeof(enhanced), "%.*s", (int)n, p);
			p += n;
		}
	} else if ((n = route_enhanced_len(p)) > 0) {
		if (p[0] == '2') {
			errbuf_set(err, errlen, "error code must be 4xx or 5xx, "
			    "not '%.*s'", (int)n, p);
			return ROUTE_ESYNTAX;
		}
		code = p[0] == '4' ? 450 : 550;
		snprintf(enhanced, sizeof(enhanced), "%.*s", (int)n, p);
		p += n;
	}
	while (*p == ' ')
		p++;
	if (*p == '\0') {
		errbuf_set(err, errlen, "error transport needs a text");
		return ROUTE_ESYNTAX;
	}
	len = snprintf(tr->text, sizeof(tr->text), "%d %s %s", code, enhanced,
	    p);
	if (len < 0 || (size_t)len >= sizeof(tr->text)) {
		errbuf_set(err, errlen, "error text longer than %d characters",
		    ROUTE_TEXT_MAX);
		return ROUTE_ESYNTAX;
	}
	tr->code = code;
	return 0;
}

static int
route_parse_lmtp(const char *arg, struct route_transport *tr, char *err,
    size_t errlen)
{
	int rc;

	if (strncmp(arg, "unix:", 5) == 0) {
		const char *path = arg + 5;

		if (path[0] != '/') {
			errbuf_set(err, errlen,
			    "socket path '%s' is not absolute", path);
			return ROUTE_ESYNTAX;
		}
		if (strlen(path) > ROUTE_PATH_MAX) {
			errbuf_set(err, errlen,
			    "socket path longer than %d bytes", ROUTE_PATH_MAX);
			return ROUTE_ESYNTAX;
		}
		strcpy(tr->host, path);
		tr->unix_socket = true;
		return 0;
	}
	/* Postfix spells TCP "inet:"; accept it so its tables carry over. */
	if (strncmp(arg, "inet:", 5) == 0)
		arg += 5;
	rc = route_parse_next_hop(arg, ROUTE_PORT_LMTP, tr, err, errlen);
	/* LMTP goes to the host named, never its MX (as Postfix lmtp(8)). */
	tr->mx_lookup = false;
	return rc;
}

int
route_parse_transport(const char *text, struct route_transport *out,
    char *err, size_t errlen)
{
	struct route_transport tr = { 0 };
	const char *colon, *arg;
	size_t namelen;
	int rc = 0;

	assert(text != NULL);
	assert(out != NULL);
	if (!route_printable(text)) {
		errbuf_set(err, errlen,
		    "control or non-ASCII character in transport");
		return ROUTE_ESYNTAX;
	}
	colon = strchr(text, ':');
	namelen = colon != NULL ? (size_t)(colon - text) : strlen(text);
	arg = colon != NULL ? colon + 1 : NULL;
#define NAME_IS(s) (namelen == sizeof(s) - 1 && memcmp(text, s, namelen) == 0)
	if (NAME_IS("smtp")) {
		tr.kind = ROUTE_SMTP;
		if (arg == NULL)
			tr.mx_lookup = true;
		else
			rc = route_parse_next_hop(arg, ROUTE_PORT_SMTP, &tr,
			    err, errlen);
	} else if (NAME_IS("lmtp")) {
		tr.kind = ROUTE_LMTP;
		if (arg == NULL) {
			errbuf_set(err, errlen, "lmtp needs a next hop");
			rc = ROUTE_ESYNTAX;
		} else {
			rc = route_parse_lmtp(arg, &tr, err, errlen);
		}
	} else if (NAME_IS("error")) {
		tr.kind = ROUTE_ERROR;
		if (arg == NULL) {
			errbuf_set(err, errlen, "error transport needs a text");
			rc = ROUTE_ESYNTAX;
		} else {
			rc = route_parse_error(arg, &tr, err, errlen);
		}
	} else if (NAME_IS("discard")) {
		tr.kind = ROUTE_DISCARD;
		if (arg != NULL) {
			if (strlen(arg) > ROUTE_TEXT_MAX) {
				errbuf_set(err, errlen, "discard text longer "
				    "than %d characters", ROUTE_TEXT_MAX);
				rc = ROUTE_ESYNTAX;
			} else {
				strcpy(tr.text, arg);
			}
		}
	} else {
		errbuf_set(err, errlen, "unknown transport '%.*s'",
		    (int)(namelen > 64 ? 64 : namelen), text);
		rc = ROUTE_ESYNTAX;
	}
#undef NAME_IS
	if (rc == 0)
		*out = tr;
	return rc;
}

struct route_policy
route_policy_defaults(void)
{
	struct route_policy p = {
		.max_connections = 20,		/* as Postfix's default */
		.retry = { .exponential = true, .min_s = 300, .max_s = 14400 },
		.max_age_s = 5 * DAY_S,
	};

	return p;
}

/* Decimal digits only, at most max. */
static bool
route_parse_uint(const char *s, unsigned long max, unsigned long *out)
{
	unsigned long v = 0;

	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++) {
		if (!route_is_digit(*s))
			return false;
		v = v * 10 + (unsigned long)(*s - '0');
		if (v > max)
			return false;
	}
	*out = v;
	return true;
}

/* "30s", "5m", "4h", "5d" or bare seconds; positive, fits 32 bits. */
static bool
route_parse_duration(const char *s, size_t len, uint32_t *out)
{
	char num[16];
	unsigned long v, mult = 1;

	if (len > 0) {
		switch (s[len - 1]) {
		case 's': mult = 1; len--; break;
		case 'm': mult = 60; len--; break;
		case 'h': mult = 3600; len--; break;
		case 'd': mult = DAY_S; len--; break;
		default: break;
		}
	}
	if (len == 0 || len >= sizeof(num))
		return false;
	memcpy(num, s, len);
	num[len] = '\0';
	if (!route_parse_uint(num, UINT32_MAX, &v) || v == 0 ||
	    v > UINT32_MAX / mult)
		return false;
	*out = (uint32_t)(v * mult);
	return true;
}

/* "10", "10/s", "600/m", "36000/h", "0.5/s"; 0 turns the limit off. */
static bool
route_parse_rate(const char *s, double *out)
{
	double v = 0, scale = 1, per = 1;
	bool digits = false, dot = false;

	for (; route_is_digit(*s) || (*s == '.' && !dot); s++) {
		if (*s == '.') {
			dot = true;
			continue;
		}
		digits = true;
		if (dot) {
			scale /= 10;
			v += (*s - '0') * scale;
		} else {
			v = v * 10 + (*s - '0');
		}
		if (v > 1e9)
			return false;
	}
	if (!digits)
		return false;
	if (*s == '/') {
		if (strcmp(s + 1, "s") == 0)
			per = 1;
		else if (strcmp(s + 1, "m") == 0)
			per = 60;
		else if (strcmp(s + 1, "h") == 0)
			per = 3600;
		else
			return false;
	} else if (*s != '\0') {
		return false;
	}
	*out = v / per;
	return true;
}

/* "exponential", "exponential:MIN:MAX" or "1m, 5m, 15m, 1h". */
static bool
route_parse_retry(const char *s, struct route_retry *r)
{
	struct route_retry tmp = { 0 };

	if (strcmp(s, "exponential") == 0) {
		tmp = route_policy_defaults().retry;
	} else if (strncmp(s, "exponential:", 12) == 0) {
		const char *a = s + 12, *b = strchr(a, ':');

		if (b == NULL || !route_parse_duration(a, (size_t)(b - a),
		    &tmp.min_s) || !route_parse_duration(b + 1, strlen(b + 1),
		    &tmp.max_s) || tmp.min_s > tmp.max_s)
			return false;
		tmp.exponential = true;
	} else {
		while (*s != '\0') {
			size_t len;

			while (*s == ' ')
				s++;
			len = strcspn(s, ", ");
			if (tmp.count == ROUTE_RETRY_MAX ||
			    !route_parse_duration(s, len,
			    &tmp.delay_s[tmp.count]))
				return false;
			tmp.count++;
			s += len;
			while (*s == ' ')
				s++;
			if (*s == ',' && *++s == '\0')
				return false;	/* trailing comma */
		}
		if (tmp.count == 0)
			return false;
	}
	*r = tmp;
	return true;
}

static bool
route_parse_auth(const char *s, struct route_policy *p)
{
	const char *colon = strchr(s, ':');
	size_t ulen;

	if (colon == NULL)
		return false;
	ulen = (size_t)(colon - s);
	if (ulen == 0 || ulen > ROUTE_AUTH_MAX || colon[1] == '\0' ||
	    strlen(colon + 1) > ROUTE_AUTH_MAX)
		return false;
	memcpy(p->auth_user, s, ulen);
	p->auth_user[ulen] = '\0';
	strcpy(p->auth_password, colon + 1);
	p->auth = true;
	return true;
}

static const char *const route_tls_names[] = {
	[ROUTE_TLS_NONE] = "none",
	[ROUTE_TLS_MAY] = "may",
	[ROUTE_TLS_ENCRYPT] = "encrypt",
	[ROUTE_TLS_VERIFY] = "verify",
	[ROUTE_TLS_DANE] = "dane",
	[ROUTE_TLS_DANE_ONLY] = "dane-only",
};

const char *
route_tls_name(unsigned tls)
{
	if (tls == ROUTE_TLS_DEFAULT ||
	    tls >= sizeof(route_tls_names) / sizeof(route_tls_names[0]))
		return NULL;
	return route_tls_names[tls];
}

int
route_tls_parse(const char *s)
{
	for (unsigned i = ROUTE_TLS_NONE; i <= ROUTE_TLS_DANE_ONLY; i++)
		if (strcmp(s, route_tls_names[i]) == 0)
			return (int)i;
	return -1;
}

static bool
route_parse_bool(const char *s, bool *out)
{
	if (strcmp(s, "true") == 0 || strcmp(s, "yes") == 0 ||
	    strcmp(s, "on") == 0)
		*out = true;
	else if (strcmp(s, "false") == 0 || strcmp(s, "no") == 0 ||
	    strcmp(s, "off") == 0)
		*out = false;
	else
		return false;
	return true;
}

int
route_policy_auth(struct route_policy *p, const char *user,
    const char *password, char *err, size_t errlen)
{
	size_t ul = strlen(user), pl = strlen(password);

	assert(p != NULL);
	if (ul == 0 || ul > ROUTE_AUTH_MAX || !route_printable(user)) {
		errbuf_set(err, errlen, "bad auth user: 1 to %d printable "
		    "characters", ROUTE_AUTH_MAX);
		return ROUTE_ESYNTAX;
	}
	if (pl == 0 || pl > ROUTE_AUTH_MAX ||
	    strpbrk(password, "\r\n") != NULL) {
		errbuf_set(err, errlen, "bad auth password: 1 to %d bytes, no "
		    "line break", ROUTE_AUTH_MAX);
		return ROUTE_ESYNTAX;
	}
	memcpy(p->auth_user, user, ul + 1);
	memcpy(p->auth_password, password, pl + 1);
	p->auth = true;
	return 0;
}

int
route_policy_check(const struct route_policy *p,
    const struct route_transport *t, char *err, size_t errlen)
{
	if (p->tls_implicit && (p->tls == ROUTE_TLS_NONE ||
	    p->tls == ROUTE_TLS_MAY || p->tls == ROUTE_TLS_DANE ||
	    p->tls == ROUTE_TLS_DANE_ONLY)) {
		errbuf_set(err, errlen, "tls_implicit needs tls: encrypt or "
		    "verify, not %s", route_tls_name(p->tls));
		return ROUTE_ESYNTAX;
	}
	if (t != NULL && t->unix_socket && (p->tls_implicit ||
	    p->tls == ROUTE_TLS_ENCRYPT || p->tls == ROUTE_TLS_VERIFY ||
	    p->tls == ROUTE_TLS_DANE_ONLY)) {
		errbuf_set(err, errlen, "no TLS over a unix socket: tls must "
		    "be none or may");
		return ROUTE_ESYNTAX;
	}
	if (p->auth && p->tls == ROUTE_TLS_NONE && !p->auth_insecure) {
		errbuf_set(err, errlen, "auth with tls: none would send the "
		    "password in plaintext; use tls: may, encrypt or verify, "
		    "or set auth_insecure: true");
		return ROUTE_ESYNTAX;
	}
	return 0;
}

int
route_policy_set(struct route_policy *p, const char *key, const char *value,
    char *err, size_t errlen)
{
	int lvl;

	struct route_policy tmp;
	unsigned long v = 0;
	bool ok;

	assert(p != NULL);
	assert(key != NULL && value != NULL);
	tmp = *p;
	if (strcmp(key, "max_connections") == 0) {
		ok = route_parse_uint(value, ROUTE_CONNECTIONS_MAX, &v) &&
		    v > 0;
		tmp.max_connections = (unsigned)v;
	} else if (strcmp(key, "max_messages_per_connection") == 0) {
		ok = route_parse_uint(value, ROUTE_COUNT_MAX, &v);
		tmp.max_messages_per_connection = (unsigned)v;
	} else if (strcmp(key, "max_rate") == 0) {
		ok = route_parse_rate(value, &tmp.max_rate);
	} else if (strcmp(key, "retry") == 0) {
		ok = route_parse_retry(value, &tmp.retry);
	} else if (strcmp(key, "max_age") == 0) {
		ok = route_parse_duration(value, strlen(value), &tmp.max_age_s);
	} else if (strcmp(key, "max_attempts") == 0) {
		ok = route_parse_uint(value, ROUTE_COUNT_MAX, &v);
		tmp.max_attempts = (unsigned)v;
	} else if (strcmp(key, "auth") == 0) {
		/* Never echo the value: it holds a password. */
		if (!route_parse_auth(value, &tmp)) {
			errbuf_set(err, errlen,
			    "bad auth: want 'user:password'");
			return ROUTE_ESYNTAX;
		}
		ok = true;
	} else if (strcmp(key, "auth_insecure") == 0) {
		ok = route_parse_bool(value, &tmp.auth_insecure);
	} else if (strcmp(key, "tls") == 0) {
		/* "implicit" (also "smtps"): port 465 style, encrypted. */
		if (strcmp(value, "implicit") == 0 ||
		    strcmp(value, "smtps") == 0) {
			tmp.tls = ROUTE_TLS_ENCRYPT;
			tmp.tls_implicit = true;
			ok = true;
		} else if ((lvl = route_tls_parse(value)) < 0) {
			errbuf_set(err, errlen, "bad tls '%.64s': want none, "
			    "may, encrypt, verify, dane, dane-only or "
			    "implicit", value);
			return ROUTE_ESYNTAX;
		} else {
			tmp.tls = (uint8_t)lvl;
			ok = true;
		}
	} else if (strcmp(key, "tls_implicit") == 0) {
		ok = route_parse_bool(value, &tmp.tls_implicit);
	} else if (strcmp(key, "tls_ca_file") == 0) {
		ok = value[0] == '/' && strlen(value) <= ROUTE_CAFILE_MAX &&
		    route_printable(value);
		if (ok)
			strcpy(tmp.tls_ca_file, value);
	} else if (strcmp(key, "mta_sts") == 0) {
		bool on = false;

		ok = route_parse_bool(value, &on);
		tmp.mta_sts = on ? ROUTE_STS_ON : ROUTE_STS_OFF;
	} else if (strcmp(key, "tls_name") == 0) {
		ok = route_copy_name(value, strlen(value), tmp.tls_name);
	} else {
		errbuf_set(err, errlen, "unknown policy '%.64s'", key);
		return ROUTE_ESYNTAX;
	}
	if (!ok) {
		errbuf_set(err, errlen, "bad %s '%.64s'", key, value);
		return ROUTE_ESYNTAX;
	}
	*p = tmp;
	return 0;
}

int
route_policy_preset(struct route_policy *p, const char *name, char *err,
    size_t errlen)
{
	assert(p != NULL);
	assert(name != NULL);
	if (strcmp(name, "relaylim") == 0) {
		p->max_connections = 1;
	} else if (strcmp(name, "oneshot") == 0) {
		p->max_attempts = 1;
	} else {
		errbuf_set(err, errlen, "unknown preset '%.64s'", name);
		return ROUTE_ESYNTAX;
	}
	return 0;
}

uint32_t
route_retry_delay(const struct route_retry *r, unsigned attempt)
{
	uint64_t d;

	assert(r != NULL);
	assert(attempt >= 1);
	if (r->exponential) {
		d = r->min_s;
		/* Doubling stops at the cap, so this never overflows. */
		for (unsigned i = 1; i < attempt && d < r->max_s; i++)
			d *= 2;
		return d < r->max_s ? (uint32_t)d : r->max_s;
	}
	assert(r->count > 0 && r->count <= ROUTE_RETRY_MAX);
	return r->delay_s[attempt <= r->count ? attempt - 1 : r->count - 1];
}

static uint64_t
route_hash(const char *key, size_t len)
{
	return XXH3_64bits(key, len);
}

static struct route *
route_probe(const struct route_table *t, const char *key, size_t len)
{
	uint64_t h;
	size_t i;

	if (t->cap == 0)
		return NULL;
	h = route_hash(key, len);
	for (i = h & (t->cap - 1); t->slots[i] != NULL;
	    i = (i + 1) & (t->cap - 1)) {
		struct route *r = t->slots[i];

		if (r->hash == h && memcmp(r->pattern, key, len) == 0 &&
		    r->pattern[len] == '\0')
			return r;
	}
	return NULL;
}

static void
route_insert_slot(struct route **slots, size_t cap, struct route *r)
{
	size_t i;

	for (i = r->hash & (cap - 1); slots[i] != NULL; i = (i + 1) & (cap - 1))
		;
	slots[i] = r;
}

static int
route_grow(struct route_table *t)
{
	size_t cap = t->cap == 0 ? ROUTE_SLOTS_MIN : t->cap * 2;
	struct route **slots = calloc(cap, sizeof(*slots));

	if (slots == NULL)
		return ROUTE_ENOMEM;
	for (size_t i = 0; i < t->cap; i++)
		if (t->slots[i] != NULL)
			route_insert_slot(slots, cap, t->slots[i]);
	free(t->slots);
	t->slots = slots;
	t->cap = cap;
	return 0;
}

int
route_table_add(struct route_table *t, const char *pattern,
    const struct route_transport *transport,
    const struct route_policy *policy, char *err, size_t errlen)
{
	char key[ROUTE_DOMAIN_MAX + 2];
	size_t len, off;
	struct route *r;

	assert(t != NULL && pattern != NULL);
	assert(transport != NULL && policy != NULL);
	assert(transport->kind >= ROUTE_SMTP);
	assert(transport->kind <= ROUTE_DISCARD);
	if (strcmp(pattern, "*") == 0) {
		if (t->wildcard != NULL) {
			errbuf_set(err, errlen, "duplicate route '*'");
			return ROUTE_EDUP;
		}
		strcpy(key, "*");
		len = 1;
	} else {
		off = pattern[0] == '.';
		len = strlen(pattern);
		if (len > off && pattern[len - 1] == '.')
			len--;
		if (!route_copy_name(pattern + off, len - off, key + off)) {
			errbuf_set(err, errlen, "bad route pattern '%.64s'",
			    pattern);
			return ROUTE_ESYNTAX;
		}
		key[0] = off ? '.' : key[0];
		if (route_probe(t, key, len) != NULL) {
			errbuf_set(err, errlen, "duplicate route '%s'", key);
			return ROUTE_EDUP;
		}
		if (t->count >= ROUTE_TABLE_MAX) {
			errbuf_set(err, errlen, "more than %u routes",
			    ROUTE_TABLE_MAX);
			return ROUTE_ELIMIT;
		}
		if ((t->count + 1) * 2 > t->cap && route_grow(t) != 0)
			goto nomem;
	}
	r = calloc(1, sizeof(*r));
	if (r == NULL)
		goto nomem;
	memcpy(r->pattern, key, len + 1);
	r->hash = route_hash(key, len);
	r->transport = *transport;
	r->policy = *policy;
	if (len == 1 && key[0] == '*') {
		t->wildcard = r;
	} else {
		route_insert_slot(t->slots, t->cap, r);
		t->count++;
	}
	return 0;
nomem:
	errbuf_set(err, errlen, "out of memory");
	return ROUTE_ENOMEM;
}

/* Lower-cased domain without its trailing dot; 0 if empty or too long. */
static size_t
route_normalize(const char *domain, char *out)
{
	size_t len = strlen(domain);

	if (len > 0 && domain[len - 1] == '.')
		len--;
	if (len == 0 || len > ROUTE_DOMAIN_MAX)
		return 0;
	for (size_t i = 0; i < len; i++)
		out[i] = route_lower(domain[i]);
	out[len] = '\0';
	return len;
}

const struct route *
route_lookup(const struct route_table *t, const char *domain)
{
	char key[ROUTE_DOMAIN_MAX + 1];
	const struct route *r;
	size_t len;

	assert(t != NULL);
	assert(domain != NULL);
	len = route_normalize(domain, key);
	if (len == 0)
		return t->wildcard;
	if ((r = route_probe(t, key, len)) != NULL)
		return r;
	/* Each dot starts a ".parent" key, longest (nearest parent) first. */
	for (size_t i = 0; i < len; i++)
		if (key[i] == '.' && (r = route_probe(t, key + i, len - i)))
			return r;
	return t->wildcard;
}

int
route_relay_host(struct route_table *t, const char *next_hop, char *err,
    size_t errlen)
{
	struct route_transport tr;
	struct route_policy p = route_policy_defaults();
	char text[ROUTE_DEST_MAX + 16];
	int rc;

	assert(t != NULL);
	assert(next_hop != NULL);
	if (t->wildcard != NULL) {
		errbuf_set(err, errlen,
		    "relay_host conflicts with the '*' route");
		return ROUTE_EDUP;
	}
	if (next_hop[0] == '\0' ||
	    (size_t)snprintf(text, sizeof(text), "smtp:%s", next_hop) >=
	    sizeof(text)) {
		errbuf_set(err, errlen, "bad relay_host '%.64s'", next_hop);
		return ROUTE_ESYNTAX;
	}
	rc = route_parse_transport(text, &tr, err, errlen);
	if (rc != 0)
		return rc;
	return route_table_add(t, "*", &tr, &p, err, errlen);
}

int
route_destination(const struct route *r, const char *domain, char *out,
    size_t outlen)
{
	const struct route_transport *tr;
	char key[ROUTE_DOMAIN_MAX + 1];
	int n;

	assert(r != NULL && domain != NULL);
	assert(out != NULL);
	tr = &r->transport;
	switch (tr->kind) {
	case ROUTE_SMTP:
		if (tr->host[0] == '\0') {
			if (route_normalize(domain, key) == 0)
				return ROUTE_ENODEST;
			n = snprintf(out, outlen, "%s", key);
		} else if (tr->bracketed) {
			n = snprintf(out, outlen, "[%s]:%u", tr->host,
			    (unsigned)tr->port);
		} else {
			n = snprintf(out, outlen, "%s:%u", tr->host,
			    (unsigned)tr->port);
		}
		break;
	case ROUTE_LMTP:
		if (tr->unix_socket)
			n = snprintf(out, outlen, "%s", tr->host);
		else
			n = snprintf(out, outlen, "[%s]:%u", tr->host,
			    (unsigned)tr->port);
		break;
	case ROUTE_ERROR:
	case ROUTE_DISCARD:
		return ROUTE_ENODEST;
	default:
		fprintf(stderr, "%s:%d: bad route kind %d\n", __FILE__,
		    __LINE__, (int)tr->kind);
		abort();
	}
	if (n < 0 || (size_t)n >= outlen)
		return ROUTE_ESPACE;
	return 0;
}

void
route_table_free(struct route_table *t)
{
	assert(t != NULL);
	for (size_t i = 0; i < t->cap; i++)
		free(t->slots[i]);
	free(t->slots);
	free(t->wildcard);
	memset(t, 0, sizeof(*t));
}
