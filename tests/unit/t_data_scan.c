/*
 * Description: the DATA scanner gives the same message, flags and end
 * position whether the input arrives whole, split at every byte offset, or
 * one byte at a time (dot-stuffing, CRLF.CRLF across reads, bare CR/LF,
 * smuggling attempts, the size limit), and counts Received: fields in the
 * header section only, refusing more than the hop limit.
 */
#include <string.h>

#include "../../proto/data_scan.h"
#include "check.h"

struct scan_case {
	const char *name;
	const char *in;		/* DATA content as sent */
	const char *msg;	/* expected message bytes */
	int bare_cr, bare_lf, too_big;
	const char *rest;	/* input left after the end ("" if none) */
	size_t max;		/* 0: no limit */
};

static const struct scan_case cases[] = {
	{ "empty message", ".\r\n", "", 0, 0, 0, "", 0 },
	{ "one line", "Hello\r\n.\r\n", "Hello\r\n", 0, 0, 0, "", 0 },
	{ "no final CRLF is still data", "a\r\nb.\r\n.\r\n", "a\r\nb.\r\n",
	    0, 0, 0, "", 0 },
	{ "dot-stuffed line", "..hidden\r\n.\r\n", ".hidden\r\n", 0, 0, 0,
	    "", 0 },
	{ "dot then text", ".x\r\n.\r\n", "x\r\n", 0, 0, 0, "", 0 },
	{ "double dot alone", "..\r\n.\r\n", ".\r\n", 0, 0, 0, "", 0 },
	{ "pipelined command after end", "x\r\n.\r\nQUIT\r\n", "x\r\n", 0,
	    0, 0, "QUIT\r\n", 0 },
	{ "bare LF", "a\nb\r\n.\r\n", "a\nb\r\n", 0, 1, 0, "", 0 },
	{ "bare CR", "a\rb\r\n.\r\n", "a\rb\r\n", 1, 0, 0, "", 0 },
	{ "smuggle LF.LF", "a\r\n\n.\nMAIL FROM:<x@y>\r\n.\r\n",
	    "a\r\n\n.\nMAIL FROM:<x@y>\r\n", 0, 1, 0, "", 0 },
	{ "smuggle CRLF.LF", "a\r\n.\nMAIL FROM:<x@y>\r\n.\r\n",
	    "a\r\n\nMAIL FROM:<x@y>\r\n", 0, 1, 0, "", 0 },
	{ "smuggle LF.CRLF", "a\n.\r\nMAIL FROM:<x@y>\r\n.\r\n",
	    "a\n.\r\nMAIL FROM:<x@y>\r\n", 0, 1, 0, "", 0 },
	{ "smuggle CR.CR", "a\r.\rMAIL\r\n.\r\n", "a\r.\rMAIL\r\n", 1, 0, 0,
	    "", 0 },
	{ "dot CR then text", ".\rx\r\n.\r\n", "\rx\r\n", 1, 0, 0, "", 0 },
	{ "CR at end of line before CRLF", "a\r\r\n.\r\n", "a\r\r\n", 1, 0,
	    0, "", 0 },
	{ "binary bytes", "\x01\x02\xff\x80\r\n.\r\n", "\x01\x02\xff\x80\r\n",
	    0, 0, 0, "", 0 },
	{ "over the limit", "0123456789\r\n.\r\n", "", 0, 0, 1, "", 8 },
	{ "at the limit", "012345\r\n.\r\n", "012345\r\n", 0, 0, 0, "", 8 },
};

struct result {
	struct buf out;
	struct data_scan ds;
	size_t used;
	int done;
};

/* Feed `in` in pieces: cut at `cut` (if non-zero), or byte by byte. */
static void
run(const struct scan_case *c, size_t cut, int bytewise, struct result *r)
{
	size_t n = strlen(c->in), off = 0, step, got;

	memset(r, 0, sizeof(*r));
	data_scan_init(&r->ds, c->max ? c->max : 1u << 20);
	while (off < n && r->ds.state != DS_DONE) {
		step = bytewise ? 1 : (cut && off < cut ? cut - off : n - off);
		got = data_scan(&r->ds, c->in + off, step, &r->out);
		CHECK(got <= step);
		if (got < step)
			CHECK(r->ds.state == DS_DONE);
		off += got;
	}
	r->used = off;
	r->done = r->ds.state == DS_DONE;
}

static int
check_result(const struct scan_case *c, const struct result *r)
{
	size_t n = strlen(c->in);
	int ok = 1;

	ok &= r->done;
	ok &= r->used == n - strlen(c->rest);
	ok &= r->ds.bare_cr == (c->bare_cr != 0);
	ok &= r->ds.bare_lf == (c->bare_lf != 0);
	ok &= r->ds.too_big == (c->too_big != 0);
	if (!c->too_big)
		ok &= r->out.len == strlen(c->msg) &&
		    memcmp(r->out.data ? r->out.data : "", c->msg,
		    r->out.len) == 0;
	return ok;
}

struct hop_case {
	const char *name;
	const char *in;		/* DATA content as sent, up to the end */
	uint32_t hops_max;
	uint32_t received;	/* Received: fields counted */
	int too_many;
};

static const struct hop_case hop_cases[] = {
	{ "no headers", "hello\r\n.\r\n", 2, 0, 0 },
	{ "two Received, limit 2",
	    "Received: a\r\nreceived :b\r\n\tcont\r\nSubject: x\r\n\r\n"
	    "body\r\n.\r\n", 2, 2, 0 },
	{ "three Received, limit 2",
	    "Received: a\r\nRECEIVED: b\r\nReceived:c\r\n\r\n.\r\n", 2, 3,
	    1 },
	{ "Received in the body is not counted",
	    "Subject: x\r\n\r\nReceived: a\r\nReceived: b\r\n"
	    "Received: c\r\n.\r\n", 2, 0, 0 },
	{ "a line that is not a field ends the headers",
	    "Received: a\r\nnot a header\r\nReceived: b\r\nReceived: c\r\n"
	    ".\r\n", 2, 1, 0 },
	{ "look-alike names",
	    "Received-SPF: a\r\nXReceived: b\r\nReceive: c\r\n"
	    " Received: d\r\n..Received: e\r\n\r\n.\r\n", 1, 0, 0 },
	{ "dot-stuffed field name",
	    "..x: 1\r\nReceived: a\r\n.\r\n", 0, 1, 0 },
	{ "no limit", "Received: a\r\nReceived: b\r\n.\r\n", 0, 2, 0 },
};

/* The count and verdict must not depend on where the input is cut. */
static int
check_hops(const struct hop_case *c)
{
	size_t n = strlen(c->in), cut, off, step;
	struct data_scan ds;
	struct buf out = { 0 };
	int ok = 1;

	for (cut = 0; cut <= n; cut++) {
		data_scan_init(&ds, 1u << 20);
		ds.hops_max = c->hops_max;
		for (off = 0; off < n && ds.state != DS_DONE; off += step) {
			step = cut == 0 ? 1 : (off < cut ? cut - off : n - off);
			step = data_scan(&ds, c->in + off, step, &out);
		}
		if (ds.state != DS_DONE || ds.received != c->received ||
		    ds.too_many_hops != (c->too_many != 0)) {
			fprintf(stderr, "  cut %zu: received %u, too many %d\n",
			    cut, ds.received, ds.too_many_hops);
			ok = 0;
		}
		/* Refused: nothing more is kept once the limit is passed. */
		if (c->too_many && out.len >= n)
			ok = 0;
		buf_free(&out);
	}
	/* The same watch over a BDAT chunk (no dot-stuffing there). */
	data_scan_init(&ds, 1u << 20);
	ds.hops_max = c->hops_max;
	data_scan_raw(&ds, c->in, n, &out);
	if (strstr(c->in, "..") == NULL &&
	    (ds.received != c->received ||
	    ds.too_many_hops != (c->too_many != 0)))
		ok = 0;
	buf_free(&out);
	return ok;
}

int
main(void)
{
	size_t i, cut, n;
	struct result r;
	int ok;

	for (i = 0; i < sizeof(hop_cases) / sizeof(hop_cases[0]); i++) {
		printf("RUN %s\n", hop_cases[i].name);
		ok = check_hops(&hop_cases[i]);
		printf("%s %s\n", ok ? "PASS" : "FAIL", hop_cases[i].name);
		if (!ok)
			check_failures++;
	}

	for (i = 0; i < NELEM(cases); i++) {
		const struct scan_case *c = &cases[i];

		printf("RUN %s\n", c->name);
		n = strlen(c->in);
		ok = 1;
		run(c, 0, 0, &r);
		ok &= check_result(c, &r);
		buf_free(&r.out);
		run(c, 0, 1, &r);
		ok &= check_result(c, &r);
		buf_free(&r.out);
		for (cut = 1; cut < n; cut++) {
			run(c, cut, 0, &r);
			if (!check_result(c, &r)) {
				fprintf(stderr, "  differs when cut at %zu\n",
				    cut);
				ok = 0;
			}
			buf_free(&r.out);
		}
		printf("%s %s\n", ok ? "PASS" : "FAIL", c->name);
		if (!ok)
			check_failures++;
	}
	return check_done();
}
