/*
 * http.c - an HTTP/1.x request head; see http.h.
 *
 * The head is parsed from its first byte on every call: it is at most
 * HTTP_HEAD_MAX bytes, and a parser without state between calls cannot
 * get out of step with the buffer it is given.
 */
#include "http.h"

#include <string.h>
#include <strings.h>

static bool
tchar(unsigned char c)
{
	/* RFC 9110 section 5.6.2: token characters. */
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || (c != 0 && strchr("!#$%&'*+-.^_`|~",
	    c) != NULL);
}

static enum http_result
bad(struct http_req *r, int status, const char *why)
{
	r->status = status;
	r->why = why;
	return HTTP_BAD;
}

/* Control bytes (but HTAB), which no part of a head may hold. */
static bool
has_ctl(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];

		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return true;
	}
	return false;
}

static enum http_result
request_line(struct http_req *r, const char *p, size_t n)
{
	size_t m = 0, t0, t;

	while (m < n && tchar((unsigned char)p[m]))
		m++;
	if (m == 0 || m == n || p[m] != ' ')
		return bad(r, 400, "malformed request line");
	if (m > HTTP_METHOD_MAX)
		return bad(r, 501, "method too long");
	memcpy(r->method, p, m);
	r->method[m] = '\0';
	t0 = t = m + 1;
	while (t < n && p[t] > 0x20 && p[t] < 0x7f)
		t++;
	if (t - t0 > HTTP_TARGET_MAX)
		return bad(r, 414, "request target too long");
	if (t == t0 || p[t0] != '/')
		return bad(r, 400, "request target not a path");
	if (t == n || p[t] != ' ')
		return bad(r, 400, "malformed request line");
	{
		const char *q = memchr(p + t0, '?', t - t0);
		size_t plen = q != NULL ? (size_t)(q - (p + t0)) : t - t0;

		memcpy(r->path, p + t0, plen);
		r->path[plen] = '\0';
	}
	p += t + 1;
	n -= t + 1;
	if (n == 8 && memcmp(p, "HTTP/1.", 7) == 0 &&
	    (p[7] == '0' || p[7] == '1')) {
		r->minor = (unsigned)(p[7] - '0');
		return HTTP_DONE;
	}
	if (n == 8 && memcmp(p, "HTTP/", 5) == 0 && p[5] >= '0' &&
	    p[5] <= '9' && p[6] == '.' && p[7] >= '0' && p[7] <= '9')
		return bad(r, 505, "HTTP version not supported");
	return bad(r, 400, "malformed request line");
}

/* One header field line; *host counts Host fields. */
static enum http_result
field(struct http_req *r, const char *p, size_t n, unsigned *host)
{
	size_t m = 0;

	if (p[0] == ' ' || p[0] == '\t')
		return bad(r, 400, "obsolete line folding");
	while (m < n && tchar((unsigned char)p[m]))
		m++;
	if (m == 0 || m == n || p[m] != ':')
		return bad(r, 400, "malformed header field");
	if (++r->nfields > HTTP_FIELDS_MAX)
		return bad(r, 431, "too many header fields");
	if (m == 4 && strncasecmp(p, "host", 4) == 0)
		(*host)++;
	return HTTP_DONE;
}

/*
 * The request line is not whole yet: is it already past what any good
 * one could be? The status it then gets, or 0.
 */
static int
line_too_long(const char *p, size_t n)
{
	size_t m = 0;

	if (n <= HTTP_METHOD_MAX + HTTP_TARGET_MAX + 12)
		return 0;
	while (m < n && tchar((unsigned char)p[m]))
		m++;
	if (m > HTTP_METHOD_MAX)
		return m == n ? 501 : 400;
	return m < n && p[m] == ' ' ? 414 : 400;
}

enum http_result
http_parse(const char *p, size_t n, struct http_req *r)
{
	size_t pos = 0;
	unsigned line = 0, host = 0;
	int st;

	memset(r, 0, sizeof(*r));
	for (;;) {
		const char *lf = memchr(p + pos, '\n', n - pos);
		size_t end, len;
		enum http_result res;

		if (lf == NULL) {
			len = n - pos;
			/* A CR at the end may be its line's, before the LF. */
			if (len > 0 && p[n - 1] == '\r')
				len--;
			if (has_ctl(p + pos, len))
				return bad(r, 400, "control character");
			if (n > HTTP_HEAD_MAX)
				return bad(r, 431, "request head too large");
			if (line == 0 && (st = line_too_long(p, n)) != 0)
				return bad(r, st, st == 414 ?
				    "request target too long" : st == 501 ?
				    "method too long" : "malformed request line");
			return HTTP_MORE;
		}
		end = (size_t)(lf - p);
		if (end + 1 > HTTP_HEAD_MAX)
			return bad(r, 431, "request head too large");
		len = end - pos;
		if (len > 0 && p[end - 1] == '\r')
			len--;
		if (has_ctl(p + pos, len))
			return bad(r, 400, "control character");
		if (line == 0) {
			if (len == 0)
				return bad(r, 400, "no request line");
			res = request_line(r, p + pos, len);
		} else if (len == 0) {
			if (r->minor == 1 && host != 1)
				return bad(r, 400, host == 0 ? "no Host field" :
				    "more than one Host field");
			r->head_len = end + 1;
			return HTTP_DONE;
		} else {
			res = field(r, p + pos, len, &host);
		}
		if (res == HTTP_BAD)
			return res;
		line++;
		pos = end + 1;
	}
}

const char *
http_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 414: return "URI Too Long";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	default: return "Error";
	}
}
