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
 *
 * While the message streams, its header section (RFC 5322 2.2: header
 * fields from the first line up to the first empty line, or the first line
 * that is neither a field nor a continuation) is watched for Received:
 * fields: more than `hops_max` of them is a mail loop (RFC 5321 6.3), which
 * sets `too_many_hops` and stops storing. The body is not looked at.
 *
 * When out cannot grow (no memory, or its own ceiling: lib/buf.h), the
 * scanner sets `nomem` or `no_room` and stops storing, and goes on
 * scanning to the end, so the session can answer then.
 *
 * A NUL byte anywhere sets `nul`: no body type the server offers may carry
 * one (RFC 6152 section 2; only BINARYMIME could), so it refuses such a
 * message at its end. Storing goes on: other users keep what they got.
 *
 * BDAT chunks carry the message as it is (no dot-stuffing, no end marker):
 * data_scan_raw() gives them the same checks and the same storing.
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

/* Where the header watch is, in the message as stored (unstuffed). */
enum data_scan_hdr {
	DS_HDR_LINE = 0,	/* at the start of a line */
	DS_HDR_CR,		/* the line is a CR so far (an empty line?) */
	DS_HDR_NAME,		/* in a field name */
	DS_HDR_NAME_WSP,	/* white space after the name (RFC 5322 4.5) */
	DS_HDR_REST,		/* rest of a field or continuation line */
	DS_HDR_BODY,		/* the header section has ended */
};

struct data_scan {
	enum data_scan_state state;
	enum data_scan_hdr hdr;
	bool bare_cr;		/* a CR not followed by LF */
	bool bare_lf;		/* an LF not preceded by CR */
	bool too_big;		/* message passed max */
	bool nomem;		/* could not grow out: no memory */
	bool no_room;		/* could not grow out: its ceiling (max) */
	bool too_many_hops;	/* more than hops_max Received: fields */
	bool nul;		/* a NUL byte */
	bool name_received;	/* the field name so far is a prefix of
				 * "Received" */
	uint8_t name_len;	/* bytes of the field name so far (capped) */
	uint32_t received;	/* Received: fields in the header section */
	uint32_t hops_max;	/* 0 (after init): no limit; set it after */
	uint64_t size;		/* message bytes seen, stored or not */
	uint64_t max;		/* bytes to store at most */
};

/* Start a message: at most max bytes stored, no hop limit yet. */
static inline void
data_scan_init(struct data_scan *ds, uint64_t max)
{
	*ds = (struct data_scan){ .state = DS_LINE_START, .hdr = DS_HDR_LINE,
	    .max = max };
}

/*
 * Scan n bytes at p, appending message bytes to out. Returns the number of
 * bytes consumed: all n, or fewer when the end of data was found (state is
 * then DS_DONE and the rest of the input is the next command).
 */
size_t data_scan(struct data_scan *ds, const char *p, size_t n,
    struct buf *out);

/*
 * Take n bytes of a BDAT chunk, all of them: bare CR and LF are flagged
 * (state is DS_CR after a CR, else DS_MID; a CR ending the last chunk is
 * bare, which the caller checks), headers watched and bytes stored as by
 * data_scan().
 */
void data_scan_raw(struct data_scan *ds, const char *p, size_t n,
    struct buf *out);

#endif
