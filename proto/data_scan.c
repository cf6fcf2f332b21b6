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
#include <string.h>

static void
emit(struct data_scan *ds, struct buf *out, const char *p, size_t n)
{
	ds->size += n;
	if (ds->too_big || ds->nomem)
		return;
	if (ds->size > ds->max) {
		ds->too_big = true;
		return;
	}
	if (buf_append(out, p, n) < 0)
		ds->nomem = true;
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
