/*
 * smtp_policy.c - relay domains, sender ownership, From: addresses; see
 * smtp_policy.h.
 */
#include "smtp_policy.h"

#include <assert.h>
#include <string.h>
#include <strings.h>

/* The length of name[0..n) without its one trailing dot. */
static size_t
undot(const char *name, size_t n)
{
	return n > 0 && name[n - 1] == '.' ? n - 1 : n;
}

/* a[0..an) and b[0..bn) the same name, ignoring case and a final dot. */
static bool
name_eq(const char *a, size_t an, const char *b, size_t bn)
{
	an = undot(a, an);
	bn = undot(b, bn);
	return an == bn && an > 0 && strncasecmp(a, b, an) == 0;
}

bool
smtp_domain_listed(const struct smtp_pat *pats, size_t n, const char *domain)
{
	size_t dl = undot(domain, strlen(domain)), pl, i;
	const char *p;

	/* "a.example.." is not a.example: only one dot is forgiven. */
	if (dl == 0 || domain[0] == '[' || domain[0] == '.' ||
	    domain[dl - 1] == '.')
		return false;
	for (i = 0; i < n; i++) {
		p = pats[i].s;
		pl = undot(p, strlen(p));
		if (p[0] != '.') {
			if (pl == dl && strncasecmp(p, domain, dl) == 0)
				return true;
			continue;
		}
		/* ".example.com": a.example.com, a.b.example.com, not
		 * example.com itself. */
		if (pl > 1 && dl > pl && domain[dl - pl] == '.' &&
		    strncasecmp(p + 1, domain + dl - pl + 1, pl - 1) == 0)
			return true;
	}
	return false;
}

bool
smtp_rcpt_local(const struct smtp_pat *domains, size_t n, const char *addr)
{
	const char *at = strrchr(addr, '@');

	if (at == NULL)
		return false;
	/* The local part, quoted or not, must not route anywhere. */
	if (memchr(addr, '%', (size_t)(at - addr)) != NULL ||
	    memchr(addr, '!', (size_t)(at - addr)) != NULL ||
	    memchr(addr, '@', (size_t)(at - addr)) != NULL)
		return false;
	return smtp_domain_listed(domains, n, at + 1);
}

/* Does addr match pattern p (see smtp_sender_allowed())? */
static bool
pat_match(enum smtp_sender_rule rule, const char *p, const char *addr)
{
	const char *pat_at = strrchr(p, '@'), *at = strrchr(addr, '@');

	if (pat_at == NULL || at == NULL)
		return false;
	if (!name_eq(pat_at + 1, strlen(pat_at + 1), at + 1, strlen(at + 1)))
		return false;
	if (rule == SMTP_SENDER_DOMAIN || pat_at == p)
		return true;
	return pat_at - p == at - addr &&
	    strncasecmp(p, addr, (size_t)(at - addr)) == 0;
}

bool
smtp_sender_allowed(enum smtp_sender_rule rule,
    const struct smtp_sender_id *id, const char *addr)
{
	size_t i;

	if (rule == SMTP_SENDER_ANY || addr[0] == '\0')
		return true;
	assert(rule == SMTP_SENDER_DOMAIN || rule == SMTP_SENDER_EMAIL);
	if (id->npats == 0)
		return id->name != NULL && pat_match(rule, id->name, addr);
	for (i = 0; i < id->npats; i++)
		if (pat_match(rule, id->pats[i].s, addr))
			return true;
	return false;
}

/* ---- From: ----------------------------------------------------------- */

/*
 * The mailbox being read: the text outside comments and quoted-string
 * delimiters kept, white space dropped (the addr-spec of a bare mailbox),
 * or, once '<' was seen, what stands inside the brackets.
 */
struct from_mbox {
	char acc[SMTP_PATH_MAX + 1];
	size_t len;
	bool overflow;
	int angle;		/* 0 none yet, 1 inside, 2 closed */
	bool any;		/* anything but white space seen */
	bool junk;		/* text after "<addr>" */
};

static void
mbox_add(struct from_mbox *m, char c)
{
	m->any = true;
	if (m->angle == 2) {
		m->junk = true;	/* "<a@b> c@d": which one is meant? */
		return;
	}
	if (m->len + 1 >= sizeof(m->acc)) {
		m->overflow = true;
		return;
	}
	m->acc[m->len++] = c;
}

/*
 * A mailbox ended (',' or ';' or the field's end). Returns the result so
 * far: an address is judged by ok(); an empty mailbox (", ,", a group's
 * name) is skipped.
 */
static enum smtp_from_result
mbox_end(struct from_mbox *m, bool (*ok)(void *, const char *), void *ctx,
    char *bad, size_t badlen, unsigned *naddr)
{
	const char *addr = m->acc, *colon;
	enum smtp_from_result res = SMTP_FROM_OK;
	size_t i;

	if (m->angle == 1 || m->junk)
		return SMTP_FROM_MALFORMED;	/* "<" never closed */
	if (!m->any && m->angle == 0)
		goto reset;
	m->acc[m->len] = '\0';
	/* RFC 5322 4.4 obs-route inside the brackets: "<@a,@b:u@d>". */
	if (m->angle == 2 && addr[0] == '@' &&
	    (colon = strchr(addr, ':')) != NULL)
		addr = colon + 1;
	(*naddr)++;
	if (m->overflow || !ok(ctx, addr)) {
		/* For a reply line: no control characters. */
		for (i = 0; badlen > 0 && i < badlen - 1 && addr[i]; i++)
			bad[i] = (unsigned char)addr[i] < 0x20 ||
			    addr[i] == 0x7f ? '?' : addr[i];
		if (badlen > 0)
			bad[i] = '\0';
		res = SMTP_FROM_FORBIDDEN;
	}
reset:
	memset(m, 0, sizeof(*m));
	return res;
}

/*
 * The value of one From: field, v[0..n) (folding included). Walks it once:
 * quoted strings and comments (nested, with quoted pairs) are skipped over
 * as RFC 5322 3.2 says, so a ',' or '<' inside them means nothing.
 */
static enum smtp_from_result
from_field(const char *v, size_t n, bool (*ok)(void *, const char *),
    void *ctx, char *bad, size_t badlen)
{
	struct from_mbox m;
	enum smtp_from_result res;
	unsigned naddr = 0, depth;
	size_t i;
	char c;

	memset(&m, 0, sizeof(m));
	for (i = 0; i < n; i++) {
		c = v[i];
		switch (c) {
		case ' ': case '\t': case '\r': case '\n':
			break;
		case '(':
			for (depth = 1, i++; i < n && depth > 0; i++) {
				if (v[i] == '\\')
					i++;
				else if (v[i] == '(')
					depth++;
				else if (v[i] == ')')
					depth--;
			}
			if (depth > 0)
				return SMTP_FROM_MALFORMED;
			i--;	/* the loop's i++ passes the ')' */
			break;
		case '"':
			mbox_add(&m, c);
			for (i++; i < n && v[i] != '"'; i++) {
				if (v[i] == '\\' && i + 1 < n)
					mbox_add(&m, v[i++]);
				if (v[i] != '\r' && v[i] != '\n')
					mbox_add(&m, v[i]);
			}
			if (i >= n)
				return SMTP_FROM_MALFORMED;
			mbox_add(&m, '"');
			break;
		case '<':
			if (m.angle != 0)
				return SMTP_FROM_MALFORMED;
			/* The display name is not the address. */
			m.len = 0;
			m.overflow = false;
			m.angle = 1;
			m.any = true;
			break;
		case '>':
			if (m.angle != 1)
				return SMTP_FROM_MALFORMED;
			m.angle = 2;
			break;
		case ':':
			if (m.angle == 1) {	/* obs-route */
				mbox_add(&m, c);
				break;
			}
			/* A group's name ("friends: a@b, c@d;"): no address. */
			if (m.angle == 2)
				return SMTP_FROM_MALFORMED;
			memset(&m, 0, sizeof(m));
			break;
		case ',':
		case ';':
			if (m.angle == 1) {	/* "<@a,@b:u@d>" */
				mbox_add(&m, c);
				break;
			}
			res = mbox_end(&m, ok, ctx, bad, badlen, &naddr);
			if (res != SMTP_FROM_OK)
				return res;
			break;
		default:
			mbox_add(&m, c);
			break;
		}
	}
	res = mbox_end(&m, ok, ctx, bad, badlen, &naddr);
	if (res == SMTP_FROM_OK && naddr == 0)
		return SMTP_FROM_MALFORMED;
	return res;
}

/* Does the line at p[0..n) start a From: field? Sets *value past ':'. */
static bool
is_from(const char *p, size_t n, size_t *value)
{
	size_t i = 4;

	if (n < 5 || strncasecmp(p, "From", 4) != 0)
		return false;
	/* RFC 5322 4.5: obsolete white space before the colon. */
	while (i < n && (p[i] == ' ' || p[i] == '\t'))
		i++;
	if (i >= n || p[i] != ':')
		return false;
	*value = i + 1;
	return true;
}

/* Does the line p[0..n) start a header field ("name:")? */
static bool
is_field(const char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c == ':')
			return i > 0;
		if (c < 33 || c > 126)
			break;
	}
	/* "From :" is a field too (obsolete syntax). */
	return i > 0 && is_from(p, n, &i);
}

enum smtp_from_result
smtp_from_check(const char *msg, size_t len,
    bool (*ok)(void *ctx, const char *addr), void *ctx, char *bad,
    size_t badlen)
{
	const char *p = msg, *end = msg + len, *eol, *fend;
	enum smtp_from_result res;
	size_t voff;

	while (p < end) {
		eol = memchr(p, '\n', (size_t)(end - p));
		eol = eol != NULL ? eol + 1 : end;
		if (!is_field(p, (size_t)(eol - p)))
			break;	/* an empty line, or the body began */
		/* The field runs on over lines that start with WSP. */
		fend = eol;
		while (fend < end && (*fend == ' ' || *fend == '\t')) {
			fend = memchr(fend, '\n', (size_t)(end - fend));
			fend = fend != NULL ? fend + 1 : end;
		}
		if (is_from(p, (size_t)(eol - p), &voff)) {
			res = from_field(p + voff, (size_t)(fend - p - voff),
			    ok, ctx, bad, badlen);
			if (res != SMTP_FROM_OK)
				return res;
		}
		p = fend;
	}
	return SMTP_FROM_OK;
}
