/*
 * http.h - an HTTP/1.x request head read without I/O: what the metrics
 * endpoint (engine/metrics.c) needs to know of a request, and the status
 * it must answer a bad one with.
 *
 * Purpose: the endpoint reads a request into a bounded buffer and calls
 * http_parse() on all it has after each read; this decides whether the
 * head is whole, and what it asks for. Only the head is read (request
 * line and header fields up to the empty line, RFC 9112 section 2.1);
 * the endpoint answers and closes, so a body is never read.
 *
 * Accepted: "METHOD SP origin-form SP HTTP/1.0|HTTP/1.1", line ends CRLF
 * or a bare LF (RFC 9112 section 2.2 lets a recipient take LF alone),
 * header fields "name: value" with a token name and a value without
 * control characters other than HTAB; HTTP/1.1 must carry one Host field
 * (RFC 9112 section 3.2).
 *
 * Rejected, with the status to answer:
 *   400  no request line, a malformed one, a target that is not
 *        origin-form ("/..."), a malformed header field, a field name
 *        followed by whitespace (RFC 9112 section 5.1), a NUL or other
 *        control byte, an obsolete line folding, HTTP/1.1 without Host
 *        or with two
 *   414  a target longer than HTTP_TARGET_MAX
 *   431  a head longer than HTTP_HEAD_MAX, or more than HTTP_FIELDS_MAX
 *        header fields
 *   501  a method longer than HTTP_METHOD_MAX
 *   505  an HTTP version other than 1.0 and 1.1
 *
 * Contract: pure (no I/O, no allocation, no globals); reads exactly
 * p[0..n); safe on any bytes. Returns HTTP_MORE (the head is not whole
 * yet and still within its limits: read more), HTTP_DONE (r is filled,
 * r->head_len bytes were the head) or HTTP_BAD (r->status says which
 * error, r->why a phrase for the log). On HTTP_MORE and HTTP_BAD only
 * r->status and r->why are meaningful.
 */
#ifndef SLUICE_HTTP_H
#define SLUICE_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#define HTTP_HEAD_MAX 8192
#define HTTP_TARGET_MAX 1024
#define HTTP_METHOD_MAX 16
#define HTTP_FIELDS_MAX 64

enum http_result {
	HTTP_MORE = 0,
	HTTP_DONE,
	HTTP_BAD,
};

struct http_req {
	char method[HTTP_METHOD_MAX + 1];
	char path[HTTP_TARGET_MAX + 1];		/* the target before '?' */
	unsigned minor;				/* HTTP/1.minor */
	unsigned nfields;
	size_t head_len;
	int status;				/* HTTP_BAD: 400, 414, ... */
	const char *why;			/* HTTP_BAD: static text */
};

enum http_result http_parse(const char *p, size_t n, struct http_req *r);

/* The reason phrase of a status this module or its user sends. */
const char *http_reason(int status);

#endif
