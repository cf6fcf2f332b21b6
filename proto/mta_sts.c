/*
 * mta_sts.c - the MTA-STS TXT record, policy file and mx patterns; see
 * mta_sts.h.
 */
#include "mta_sts.h"

#include <string.h>

static bool
is_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool
is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool
is_wsp(unsigned char c)
{
	return c == ' ' || c == '\t';
}

static char
lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static int
fail(const char **why, const char *text)
{
	if (why != NULL)
		*why = text;
	return -1;
}

bool
mta_sts_txt_is_sts(const char *p, size_t n)
{
	return n >= 7 && memcmp(p, "v=STSv1", 7) == 0 &&
	    (n == 7 || p[7] == ';' || is_wsp((unsigned char)p[7]));
}

int
mta_sts_txt_parse(const char *p, size_t n, char id[MTA_STS_ID_MAX + 1],
    const char **why)
{
	size_t i = 0, nfield = 0;
	bool have_id = false;

	id[0] = '\0';
	if (!mta_sts_txt_is_sts(p, n))
		return fail(why, "TXT record does not start with v=STSv1");
	while (i < n) {
		size_t k0, k1, v0, v1;

		while (i < n && is_wsp((unsigned char)p[i]))
			i++;
		if (i == n)
			break;
		/* sts-field-name = ALPHA *(ALPHA / DIGIT / "_" / "-" / ".") */
		k0 = i;
		if (!is_alpha((unsigned char)p[i]))
			return fail(why, "bad field name in TXT record");
		while (i < n && (is_alpha((unsigned char)p[i]) ||
		    is_digit((unsigned char)p[i]) || p[i] == '_' ||
		    p[i] == '-' || p[i] == '.'))
			i++;
		k1 = i;
		if (i == n || p[i] != '=')
			return fail(why, "field without '=' in TXT record");
		v0 = ++i;
		/* sts-field-value: printable ASCII but ';' and '=' */
		while (i < n && p[i] > 0x20 && p[i] < 0x7f && p[i] != ';' &&
		    p[i] != '=')
			i++;
		v1 = i;
		while (i < n && is_wsp((unsigned char)p[i]))
			i++;
		if (i < n && p[i] != ';')
			return fail(why, "bad field value in TXT record");
		if (i < n)
			i++;
		nfield++;
		if (nfield == 1)
			continue;	/* v=STSv1, checked above */
		if (k1 - k0 == 2 && memcmp(p + k0, "id", 2) == 0 && !have_id) {
			if (v1 == v0 || v1 - v0 > MTA_STS_ID_MAX)
				return fail(why, "bad id in TXT record");
			for (size_t j = v0; j < v1; j++)
				if (!is_alpha((unsigned char)p[j]) &&
				    !is_digit((unsigned char)p[j]))
					return fail(why,
					    "bad id in TXT record");
			memcpy(id, p + v0, v1 - v0);
			id[v1 - v0] = '\0';
			have_id = true;
		}
	}
	if (!have_id)
		return fail(why, "no id in TXT record");
	return 0;
}

/* A host name: labels of letters, digits, '-', 1..63 long, no dot last. */
static bool
host_ok(const char *p, size_t n)
{
	size_t label = 0;

	if (n == 0 || n > MTA_STS_HOST_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c == '.') {
			if (label == 0 || p[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (!is_alpha(c) && !is_digit(c) && c != '-' && c != '_')
			return false;
		if (label == 0 && c == '-')
			return false;
		if (++label > 63)
			return false;
	}
	return label > 0;
}

static bool
key_is(const char *p, size_t n, const char *key)
{
	return strlen(key) == n && memcmp(p, key, n) == 0;
}

static bool
value_is(const char *p, size_t n, const char *v)
{
	return strlen(v) == n && memcmp(p, v, n) == 0;
}

int
mta_sts_policy_parse(const char *p, size_t n, struct mta_sts_policy *out,
    const char **why)
{
	bool have_version = false, have_mode = false, have_age = false;
	size_t i = 0;

	memset(out, 0, sizeof(*out));
	if (n > MTA_STS_POLICY_MAX)
		return fail(why, "policy larger than 64 KiB");
	while (i < n) {
		size_t l0 = i, l1, k1, v0, v1;

		while (i < n && p[i] != '\n')
			i++;
		l1 = i;
		if (i < n)
			i++;	/* the LF */
		if (l1 > l0 && p[l1 - 1] == '\r')
			l1--;
		if (l1 == l0)
			continue;	/* an empty line, e.g. at the end */
		/* sts-policy-field-name = ALPHA *(ALPHA / DIGIT / "_") */
		k1 = l0;
		if (!is_alpha((unsigned char)p[k1]))
			return fail(why, "bad key in policy");
		while (k1 < l1 && (is_alpha((unsigned char)p[k1]) ||
		    is_digit((unsigned char)p[k1]) || p[k1] == '_'))
			k1++;
		if (k1 == l1 || p[k1] != ':')
			return fail(why, "policy line without ':'");
		v0 = k1 + 1;
		while (v0 < l1 && is_wsp((unsigned char)p[v0]))
			v0++;
		v1 = l1;
		while (v1 > v0 && is_wsp((unsigned char)p[v1 - 1]))
			v1--;
		for (size_t j = v0; j < v1; j++)
			if ((unsigned char)p[j] < 0x20 && p[j] != '\t')
				return fail(why, "control byte in policy");
		if (key_is(p + l0, k1 - l0, "version")) {
			if (have_version)
				continue;
			if (!value_is(p + v0, v1 - v0, "STSv1"))
				return fail(why, "policy version is not STSv1");
			have_version = true;
		} else if (key_is(p + l0, k1 - l0, "mode")) {
			if (have_mode)
				continue;
			if (value_is(p + v0, v1 - v0, "enforce"))
				out->mode = MTA_STS_ENFORCE;
			else if (value_is(p + v0, v1 - v0, "testing"))
				out->mode = MTA_STS_TESTING;
			else if (value_is(p + v0, v1 - v0, "none"))
				out->mode = MTA_STS_NONE;
			else
				return fail(why, "bad mode in policy");
			have_mode = true;
		} else if (key_is(p + l0, k1 - l0, "max_age")) {
			uint64_t v = 0;

			if (have_age)
				continue;
			if (v1 == v0 || v1 - v0 > 10)
				return fail(why, "bad max_age in policy");
			for (size_t j = v0; j < v1; j++) {
				if (!is_digit((unsigned char)p[j]))
					return fail(why,
					    "bad max_age in policy");
				v = v * 10 + (uint64_t)(p[j] - '0');
			}
			out->max_age_s = v > MTA_STS_MAX_AGE_MAX ?
			    MTA_STS_MAX_AGE_MAX : (uint32_t)v;
			have_age = true;
		} else if (key_is(p + l0, k1 - l0, "mx")) {
			size_t h0 = v0;
			char *dst;

			if (v1 - v0 >= 2 && p[v0] == '*' && p[v0 + 1] == '.')
				h0 = v0 + 2;
			if (!host_ok(p + h0, v1 - h0))
				return fail(why, "bad mx pattern in policy");
			if (out->nmx == MTA_STS_MX_MAX)
				return fail(why, "too many mx patterns in "
				    "policy");
			dst = out->mx[out->nmx++];
			for (size_t j = v0; j < v1; j++)
				*dst++ = lower(p[j]);
			*dst = '\0';
		}
		/* Other keys: extensions, ignored (section 3.2). */
	}
	if (!have_version)
		return fail(why, "policy without version");
	if (!have_mode)
		return fail(why, "policy without mode");
	if (!have_age)
		return fail(why, "policy without max_age");
	if (out->mode != MTA_STS_NONE && out->nmx == 0)
		return fail(why, "policy without mx");
	return 0;
}

/* Case-insensitive equality of p[0..n) and the lower-case pattern q. */
static bool
same(const char *p, size_t n, const char *q)
{
	if (strlen(q) != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (lower(p[i]) != q[i])
			return false;
	return true;
}

bool
mta_sts_pattern_match(const char *pattern, const char *host)
{
	size_t n = strlen(host);
	const char *dot;

	if (n > 0 && host[n - 1] == '.')
		n--;
	if (n == 0)
		return false;
	if (pattern[0] != '*')
		return same(host, n, pattern);
	if (pattern[1] != '.')
		return false;
	/* One label, then the rest exactly. */
	dot = memchr(host, '.', n);
	if (dot == NULL || dot == host)
		return false;
	return same(dot + 1, n - (size_t)(dot + 1 - host), pattern + 2);
}

bool
mta_sts_mx_match(const struct mta_sts_policy *pol, const char *host)
{
	for (unsigned i = 0; i < pol->nmx; i++)
		if (mta_sts_pattern_match(pol->mx[i], host))
			return true;
	return false;
}

const char *
mta_sts_mode_name(enum mta_sts_mode m)
{
	switch (m) {
	case MTA_STS_ENFORCE:
		return "enforce";
	case MTA_STS_TESTING:
		return "testing";
	default:
		return "none";
	}
}

/* Case-insensitive: does p[0..n) start with the lower-case word w? */
static bool
starts(const char *p, size_t n, const char *w)
{
	size_t k = strlen(w);

	if (n < k)
		return false;
	for (size_t i = 0; i < k; i++)
		if (lower(p[i]) != w[i])
			return false;
	return true;
}

int
mta_sts_http_response(const char *p, size_t n, bool eof, const char **body,
    size_t *body_len, const char **why)
{
	size_t i, head = 0, clen = 0;
	bool have_len = false, have_type = false, line1 = true;
	int status = 0;

	/* The head ends at an empty line (CRLF or bare LF). */
	for (i = 0; i < n && i < MTA_STS_HEAD_MAX; i++)
		if (p[i] == '\n' && ((i >= 1 && p[i - 1] == '\n') ||
		    (i >= 2 && p[i - 1] == '\r' && p[i - 2] == '\n'))) {
			head = i + 1;
			break;
		}
	if (head == 0) {
		if (n >= MTA_STS_HEAD_MAX)
			return fail(why, "HTTP response head too long");
		return eof ? fail(why, "HTTP response cut short") : 1;
	}
	for (i = 0; i < head;) {
		size_t l0 = i, l1;

		while (p[i] != '\n')
			i++;
		l1 = i++;
		if (l1 > l0 && p[l1 - 1] == '\r')
			l1--;
		if (l1 == l0)
			break;
		if (line1) {
			/* HTTP/1.x SP 3DIGIT ... */
			if (l1 - l0 < 12 || !starts(p + l0, l1 - l0, "http/1.") ||
			    p[l0 + 8] != ' ' ||
			    !is_digit((unsigned char)p[l0 + 9]) ||
			    !is_digit((unsigned char)p[l0 + 10]) ||
			    !is_digit((unsigned char)p[l0 + 11]))
				return fail(why, "malformed HTTP status line");
			status = (p[l0 + 9] - '0') * 100 +
			    (p[l0 + 10] - '0') * 10 + (p[l0 + 11] - '0');
			line1 = false;
			continue;
		}
		if (starts(p + l0, l1 - l0, "content-type:")) {
			size_t v = l0 + 13;

			while (v < l1 && is_wsp((unsigned char)p[v]))
				v++;
			/* "text/plain", then nothing or parameters. */
			if (!starts(p + v, l1 - v, "text/plain") ||
			    (v + 10 < l1 && p[v + 10] != ';' &&
			    !is_wsp((unsigned char)p[v + 10])))
				return fail(why, "policy is not text/plain");
			have_type = true;
		} else if (starts(p + l0, l1 - l0, "content-length:")) {
			size_t v = l0 + 15;

			while (v < l1 && is_wsp((unsigned char)p[v]))
				v++;
			if (v == l1)
				return fail(why, "bad Content-Length");
			clen = 0;
			for (; v < l1 && !is_wsp((unsigned char)p[v]); v++) {
				if (!is_digit((unsigned char)p[v]) ||
				    clen > MTA_STS_POLICY_MAX)
					return fail(why, "bad Content-Length");
				clen = clen * 10 + (size_t)(p[v] - '0');
			}
			have_len = true;
		} else if (starts(p + l0, l1 - l0, "transfer-encoding:")) {
			return fail(why, "HTTP transfer coding not supported");
		}
	}
	if (status >= 300 && status < 400)
		return fail(why, "HTTP redirect (not followed)");
	if (status != 200)
		return fail(why, "HTTP status is not 200");
	if (!have_type)
		return fail(why, "policy is not text/plain");
	if (have_len && clen > MTA_STS_POLICY_MAX)
		return fail(why, "policy larger than 64 KiB");
	if (n - head > MTA_STS_POLICY_MAX)
		return fail(why, "policy larger than 64 KiB");
	if (have_len) {
		if (n - head < clen)
			return eof ? fail(why, "HTTP body cut short") : 1;
		*body = p + head;
		*body_len = clen;
		return 0;
	}
	if (!eof)
		return 1;
	*body = p + head;
	*body_len = n - head;
	return 0;
}
