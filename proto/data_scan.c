/*
 * data_scan.c - see data_scan.h.
 *
 * The common case is whole CRLF-terminated lines that do not start with a
 * dot: plain_lines() finds them with memchr and copies a run of them with
 * one append. Anything else (a dot at a line start, a bare CR or LF, a line
 * cut by the end of the input) goes through the state machine one byte at
 * a time, which is what defines the behaviour.
 */
#include "data_scan.h"

#include <assert.h>
#include <errno.h>
#include <string.h>

/* The field a hop adds (RFC 5321 4.4), without its colon. */
static const char received_name[] = "received";
#define RECEIVED_NAME_LEN (sizeof(received_name) - 1)

static char
lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* A field name ended at its colon: count it if it is Received. */
static void
field_named(struct data_scan *ds)
{
	if (!ds->name_received || ds->name_len != RECEIVED_NAME_LEN)
		return;
	ds->received++;
	if (ds->hops_max != 0 && ds->received > ds->hops_max)
		ds->too_many_hops = true;
}

/*
 * Follow the header section through message bytes (as stored). Field
 * names are looked at byte by byte; the rest of each line is skipped with
 * memchr, so a header section costs little more than its names.
 */
static void
scan_headers(struct data_scan *ds, const char *p, size_t n)
{
	const char *lf;
	size_t i = 0;
	char c;

	while (i < n && ds->hdr != DS_HDR_BODY) {
		c = p[i];
		switch (ds->hdr) {
		case DS_HDR_LINE:
			if (c == '\r') {
				ds->hdr = DS_HDR_CR;
			} else if (c == ' ' || c == '\t') {
				ds->hdr = DS_HDR_REST;	/* continuation */
			} else if (c > ' ' && c < 0x7f && c != ':') {
				ds->hdr = DS_HDR_NAME;
				ds->name_len = 1;
				ds->name_received = lower(c) == received_name[0];
			} else {
				ds->hdr = DS_HDR_BODY;	/* not a header line */
			}
			i++;
			break;
		case DS_HDR_CR:
			/* CRLF alone: the empty line before the body. */
			ds->hdr = DS_HDR_BODY;
			break;
		case DS_HDR_NAME:
			if (c == ':') {
				field_named(ds);
				ds->hdr = DS_HDR_REST;
			} else if (c == ' ' || c == '\t') {
				ds->hdr = DS_HDR_NAME_WSP;
			} else if (c > ' ' && c < 0x7f) {
				if (ds->name_len < RECEIVED_NAME_LEN)
					ds->name_received &= lower(c) ==
					    received_name[ds->name_len];
				else
					ds->name_received = false;
				if (ds->name_len < UINT8_MAX)
					ds->name_len++;
			} else {
				ds->hdr = DS_HDR_BODY;
			}
			i++;
			break;
		case DS_HDR_NAME_WSP:
			if (c == ':') {
				field_named(ds);
				ds->hdr = DS_HDR_REST;
			} else if (c != ' ' && c != '\t') {
				ds->hdr = DS_HDR_BODY;
			}
			i++;
			break;
		case DS_HDR_REST:
			lf = memchr(p + i, '\n', n - i);
			if (lf == NULL)
				return;
			i = (size_t)(lf - p) + 1;
			ds->hdr = DS_HDR_LINE;
			break;
		case DS_HDR_BODY:
		default:
			assert(!"data_scan: bad header state");
			return;
		}
	}
}

static void
emit(struct data_scan *ds, struct buf *out, const char *p, size_t n)
{
	ds->size += n;
	if (ds->size > ds->max)
		ds->too_big = true;
	if (ds->too_big || ds->nomem || ds->no_room || ds->too_many_hops)
		return;
	/* Only flagged: a sink (bench/) keeps what it was sent. */
	if (!ds->nul && memchr(p, '\0', n) != NULL)
		ds->nul = true;
	if (ds->hdr != DS_HDR_BODY) {
		scan_headers(ds, p, n);
		if (ds->too_many_hops)
			return;	/* refused at the end: keep no more */
	}
	switch (buf_append(out, p, n)) {
	case 0:
		break;
	case -ENOBUFS:
		ds->no_room = true;
		break;
	default:
		ds->nomem = true;
		break;
	}
}

/* Length of the run of bytes that are neither CR nor LF. */
static size_t
plain_run(const char *p, size_t n)
{
	const char *cr = memchr(p, '\r', n), *lf;
	size_t lim = cr != NULL ? (size_t)(cr - p) : n;

	lf = memchr(p, '\n', lim);
	return lf != NULL ? (size_t)(lf - p) : lim;
}

/*
 * From a line start (or mid-line, in DS_MID), the length of the run of
 * complete lines that end in CRLF, hold no other CR or LF, and (after the
 * first) do not start with a dot. *state is left at DS_LINE_START when at
 * least one line was taken, unchanged otherwise.
 */
static size_t
plain_lines(const char *p, size_t n, enum data_scan_state *state)
{
	size_t i = 0, l;
	const char *lf;

	for (;;) {
		if (*state == DS_LINE_START && (i >= n || p[i] == '.'))
			return i;
		lf = memchr(p + i, '\n', n - i);
		if (lf == NULL)
			return i;
		l = (size_t)(lf - p);
		if (l == i || p[l - 1] != '\r' ||
		    memchr(p + i, '\r', l - 1 - i) != NULL)
			return i;
		i = l + 1;
		*state = DS_LINE_START;
	}
}

size_t
data_scan(struct data_scan *ds, const char *p, size_t n, struct buf *out)
{
	size_t i = 0, run;
	char c;

	assert(ds->state != DS_DONE);
	while (i < n) {
		if (ds->state == DS_LINE_START || ds->state == DS_MID) {
			run = plain_lines(p + i, n - i, &ds->state);
			if (run > 0) {
				emit(ds, out, p + i, run);
				i += run;
				continue;
			}
		}
		c = p[i];
		switch (ds->state) {
		case DS_LINE_START:
			if (c == '.') {
				ds->state = DS_DOT;
				i++;
				break;
			}
			ds->state = DS_MID;
			break;	/* reprocess c as inside a line */
		case DS_MID:
			run = plain_run(p + i, n - i);
			if (run > 0) {
				emit(ds, out, p + i, run);
				i += run;
				break;
			}
			if (c == '\r') {
				ds->state = DS_CR;
			} else {
				/*
				 * RFC 5321 2.3.8: LF alone is not a line end,
				 * so what follows is not a line start either:
				 * "\n.\r\n" must not end the data.
				 */
				ds->bare_lf = true;
				emit(ds, out, "\n", 1);
			}
			i++;
			break;
		case DS_CR:
			if (c == '\n') {
				emit(ds, out, "\r\n", 2);
				ds->state = DS_LINE_START;
				i++;
			} else {
				ds->bare_cr = true;
				emit(ds, out, "\r", 1);
				ds->state = DS_MID;
			}
			break;
		case DS_DOT:
			/*
			 * RFC 5321 4.5.2: a leading dot on a line with more
			 * on it is removed; "." alone (then CRLF) ends data.
			 */
			if (c == '\r') {
				ds->state = DS_DOT_CR;
				i++;
			} else {
				ds->state = DS_MID;
			}
			break;
		case DS_DOT_CR:
			if (c == '\n') {
				ds->state = DS_DONE;
				return i + 1;
			}
			/* ".\r" then not LF: a bare CR on a stuffed line. */
			ds->bare_cr = true;
			emit(ds, out, "\r", 1);
			ds->state = DS_MID;
			break;
		case DS_DONE:
		default:
			assert(!"data_scan: bad state");
			return i;
		}
	}
	return n;
}

void
data_scan_raw(struct data_scan *ds, const char *p, size_t n, struct buf *out)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (p[i] == '\n' && ds->state != DS_CR)
			ds->bare_lf = true;
		else if (ds->state == DS_CR && p[i] != '\n')
			ds->bare_cr = true;
		ds->state = p[i] == '\r' ? DS_CR : DS_MID;
	}
	emit(ds, out, p, n);
}
