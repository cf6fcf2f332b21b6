/*
 * data_scan.h - the SMTP DATA scanner: finds the end of data, undoes dot
 * stuffing, and spots bare CR and bare LF (RFC 5321 section 4.5.2, 2.3.8).
 *
 * Only <CRLF>.<CRLF> ends the data (the CRLF before the dot belongs to the
 * message; at the very start of DATA the preceding CRLF is the one that
 * ended the DATA command). A CR not followed by LF, or an LF not preceded
 * by CR, sets a sticky flag and scanning goes on to the real end, so the
 * client and server stay in step and no "\n.\n" smuggles a second message.
 *
 * The scanner keeps its state between calls, so input may be split at any
 * byte. Message bytes go to `out`; once the message would pass `max` bytes
 * the scanner stops storing and sets `too_big`, but goes on counting.
 */
#ifndef SLUICE_DATA_SCAN_H
#define SLUICE_DATA_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/buf.h"

enum data_scan_state {
	DS_LINE_START = 0,	/* at the start of a line */
	DS_MID,			/* inside a line */
	DS_CR,			/* after a CR inside a line */
	DS_DOT,			/* line began with a dot */
	DS_DOT_CR,		/* line is ".", then CR */
	DS_DONE,		/* saw <CRLF>.<CRLF> */
};

struct data_scan {
	enum data_scan_state state;
	bool bare_cr;		/* a CR not followed by LF */
	bool bare_lf;		/* an LF not preceded by CR */
	bool too_big;		/* message passed max */
	bool nomem;		/* could not grow out */
	uint64_t size;		/* message bytes seen, stored or not */
	uint64_t max;		/* bytes to store at most */
};

static inline void
data_scan_init(struct data_scan *ds, uint64_t max)
{
	*ds = (struct data_scan){ .state = DS_LINE_START, .max = max };
}

/*
 * Scan n bytes at p, appending message bytes to out. Returns the number of
 * bytes consumed: all n, or fewer when the end of data was found (state is
 * then DS_DONE and the rest of the input is the next command).
 */
size_t data_scan(struct data_scan *ds, const char *p, size_t n,
    struct buf *out);

#endif
