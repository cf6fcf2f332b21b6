/*
 * dsn.h - delivery status notifications (bounces), RFC 3464.
 *
 * Purpose: build the message sluice sends back to an envelope sender when
 * recipients failed permanently or their message expired in the queue: a
 * multipart/report (RFC 6522) with a human explanation, a
 * message/delivery-status part (RFC 3464) and the original message's
 * header section as text/rfc822-headers. The operator's view is
 * docs/bounces.md.
 *
 * Contract: pure functions, no I/O, no clock, no globals; the caller gives
 * every time and id, so output is a function of the input alone (the
 * golden tests rely on that). Safe from any thread. The caller queues the
 * result as a new message from the null sender <> to info->sender, and
 * never asks for a DSN about a message whose sender is the null sender
 * (dsn_is_bounce()): a bounce is never bounced (RFC 5321 section 6.1,
 * RFC 3464 section 2).
 *
 * The result is 7-bit ASCII unless the original header section, the
 * sender or a recipient address holds 8-bit bytes (SMTPUTF8 mail); such
 * parts are marked Content-Transfer-Encoding: 8bit and the DSN then needs
 * BODY=8BITMIME (and SMTPUTF8 if the sender address is not ASCII) when it
 * is relayed. The message/delivery-status part itself is always ASCII.
 *
 * Error returns: 0 on success, -EINVAL for a bad argument (said per
 * function), -ENOMEM when the output buffer cannot grow. On error the
 * output buffer holds what it held before the call.
 */
#ifndef SLUICE_DSN_H
#define SLUICE_DSN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/buf.h"

/* At most this much of the original header section is returned, cut at
 * a line boundary (RFC 3462 / RFC 6522 leave the amount to the MTA). */
#define DSN_HEADERS_MAX		(64 * 1024)
/* RFC 5322 section 2.1.1: lines are at most 998 octets before CRLF, and
 * should be at most 78. */
#define DSN_LINE_MAX		998
#define DSN_LINE_SOFT		78
/* An enhanced status code "5.123.456" (RFC 3463 section 2). */
#define DSN_STATUS_MAX		9

struct dsn_rcpt {
	const char *addr;		/* as given in RCPT TO, no brackets */
	const char *orig_rcpt;		/* ORCPT address; NULL: same as addr */
	const char *status;		/* "5.1.1", or "4.4.7" for expiry */
	const char *remote_mta;		/* host the reply came from, or NULL */
	const char *diagnostic;		/* the remote reply on one line, or NULL */
	uint64_t last_attempt_us;	/* CLOCK_REALTIME microseconds, 0: none */
};

struct dsn_info {
	const char *reporting_mta;	/* our host name */
	const char *queue_id;		/* the original's, 16 hex digits */
	uint64_t arrival_us;		/* when we accepted the original, 0: unknown */
	uint64_t now_us;		/* Date:, Message-ID, boundary */
	const char *sender;		/* original envelope sender, never "" */
	/* Text after "Received-From-MTA: dns; ", e.g. "client.example
	 * ([192.0.2.1])", or NULL to leave the field out. */
	const char *received_from;
	bool expired;			/* timed out in the queue, vs. refused */
	unsigned max_age_days;		/* for the human text when expired */
};

/*
 * Appends a whole DSN message to out: header section and body, CRLF line
 * ends, no line over DSN_LINE_MAX octets. n recipients are reported (each
 * with Action: failed). orig/orig_len is the original message as stored;
 * only its header section is used (up to the first empty line, or all of
 * it when there is none), bare CR and bare LF become CRLF, and at most
 * DSN_HEADERS_MAX bytes are kept.
 *
 * Addresses and texts are made safe for where they go: control characters
 * never reach a header line (no header injection even if CR/LF slip into
 * an address), and the delivery-status part stays ASCII: an address that
 * is not printable ASCII is given as "utf-8; " with RFC 6533 xtext
 * escapes, and other 8-bit bytes become '?'.
 *
 * -EINVAL: info, rcpts or out NULL, n == 0, reporting_mta NULL or not a
 * host name, queue_id not 16 hex digits, sender NULL or the null sender
 * ("" or "<>", see dsn_is_bounce()), a recipient
 * addr NULL or "", a status that is not a valid 4.x.x or 5.x.x code, or
 * orig NULL with orig_len > 0. -ENOMEM.
 */
int
dsn_build(const struct dsn_info *info, const struct dsn_rcpt *rcpts,
    size_t n, const uint8_t *orig, size_t orig_len, struct buf *out);

/*
 * Is a message from this envelope sender a bounce that must never be
 * bounced again? True for the null sender ("" or "<>") and for NULL.
 */
bool
dsn_is_bounce(const char *sender);

/*
 * Is status an RFC 3463 enhanced status code: class 2, 4 or 5, then
 * subject and detail of 1 to 3 digits each ("5.1.1", "4.4.7")?
 */
bool
dsn_status_valid(const char *status);

/*
 * Reads an SMTP reply line ("550 5.1.1 <x@y>: no such user", also
 * "550-5.1.1 ..." or a bare "554"). *code gets the reply code (200..599).
 * status gets the enhanced status code that follows it when there is one
 * and its class matches the code's first digit (RFC 2034 section 4), else
 * "" (a caller that needs one uses RFC 3463's "4.0.0" / "5.0.0").
 * Returns 0, or -EINVAL when reply does not start with a reply code
 * (*code is 0 and status "" then).
 */
int
dsn_parse_reply(const char *reply, int *code,
    char status[DSN_STATUS_MAX + 1]);

#endif
