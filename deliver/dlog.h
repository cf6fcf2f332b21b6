/*
 * dlog.h - the delivery log: one JSON object per line, per delivery
 * attempt per recipient.
 *
 * Purpose: a record an operator can grep, jq and ship, separate from the
 * diagnostics of log.h. Every key is listed in docs/delivery-log.md; keys
 * are short and stable, and new keys may appear, old ones do not change.
 *
 * Contract: dlog_format() is pure (no I/O, no clock, no globals) and safe
 * from any thread (a per-thread cache of the current second is its only
 * state). A struct dlog is
 * a file descriptor owned by one thread (each shard may have its own, on
 * the same path: O_APPEND keeps whole writes whole). The engine batches
 * the lines of one event-loop iteration in one buffer and hands it to
 * dlog_write() once.
 *
 * Error returns: 0 or -errno. The delivery log is a record, not the
 * queue's truth: a failed write loses those lines and says so by its
 * return value, it never stops delivery.
 */
#ifndef SLUICE_DLOG_H
#define SLUICE_DLOG_H

#include <stdbool.h>
#include <stdint.h>

#include "../lib/buf.h"

enum dlog_status {
	DLOG_DELIVERED = 0,	/* "delivered": accepted by the next hop */
	DLOG_DEFERRED,		/* "deferred": temporary failure, retried */
	DLOG_BOUNCED,		/* "bounced": permanent failure, DSN sent */
	DLOG_EXPIRED,		/* "expired": too long in the queue, DSN sent */
	DLOG_DISCARDED,		/* "discarded": discard transport */
};

/*
 * Every string field of struct dlog_entry, for code that copies an entry
 * (a bounce held for its DSN keeps its lines): X(field) for each. A new
 * string field goes here too, or the copy keeps the caller's pointer.
 */
#define DLOG_ENTRY_STRINGS(X) X(queue_id) X(sender) X(rcpt) \
	X(destination) X(transport) X(mx) X(addr) X(tls) X(tls_verify) \
	X(tls_policy) X(tls_auth) X(tlsa) X(enhanced) X(text)

struct dlog_entry {
	uint64_t time_us;		/* CLOCK_REALTIME microseconds */
	const char *queue_id;		/* 16 hex digits */
	const char *sender;		/* "" for the null sender */
	const char *rcpt;
	const char *destination;	/* routing destination key */
	const char *transport;		/* "smtp", "lmtp", "discard" */
	const char *mx;			/* host name tried, or NULL */
	const char *addr;		/* "192.0.2.1:25", "[2001:db8::1]:25", path */
	const char *tls;		/* "TLSv1.3 TLS_AES_256_GCM_SHA384", "none" */
	const char *tls_verify;		/* tls verify: "verified" or why not */
	const char *tls_policy;		/* "sts-enforce", "sts-testing", "none",
					 * "dane" (a DANE host); NULL: not MX
					 * delivery, or STS off */
	const char *tls_auth;		/* "dane", "pkix", "none"; NULL: no
					 * connection */
	const char *tlsa;		/* DANE: the TLSA record that matched,
					 * "usage selector mtype" ("3 1 1") */
	enum dlog_status status;
	int code;			/* SMTP reply code, 0: none */
	const char *enhanced;		/* "2.0.0", or NULL */
	const char *text;		/* reply text or our reason, or NULL */
	unsigned attempt;		/* 1-based, 0: omitted */
	double delay_s;			/* since arrival */
	uint64_t next_try_us;		/* deferred: when, else 0 */
	const char *dsn_queue_id;	/* bounced/expired: the DSN's id, or NULL */
	uint32_t size;			/* message bytes, 0: omitted */
};

/* "delivered", "deferred", ...; NULL for a value outside the enum. */
const char *
dlog_status_name(enum dlog_status s);

/*
 * Appends one line to out: a JSON object and "\n". "ts" and "status" are
 * always there, "delay" too; string fields that are NULL and numbers that
 * are 0 are left out. Strings that are not valid UTF-8 have the bad bytes
 * replaced by U+FFFD; control characters, quotes and backslashes are
 * escaped as jansson escapes them, valid UTF-8 is kept as it is. On error out is
 * unchanged. Returns 0, -ENOMEM, or -EINVAL for a status outside the enum.
 */
int
dlog_format(struct buf *out, const struct dlog_entry *e);

/*
 * The writer. All-zero is closed; after dlog_open() fd is the log's
 * descriptor (STDERR_FILENO for "-", which dlog_close() leaves open).
 */
struct dlog {
	int fd;
	bool open;
	bool owned;	/* we opened fd and close it */
};

/*
 * Opens path for appending (O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
 * mode 0640), or standard error for "-". 0, -EINVAL (path NULL or ""),
 * or -errno from open(2).
 */
int
dlog_open(struct dlog *d, const char *path);

/*
 * Writes all of b with write(2) (one call unless the kernel takes less;
 * short writes and EINTR continue where they stopped) and empties b
 * whether or not it succeeded, so a full disk cannot make the buffer
 * grow. 0, -EBADF (not open), or -errno of the failed write (those lines
 * are lost).
 */
int
dlog_write(struct dlog *d, struct buf *b);

/* Closes the descriptor if it is ours; d is all-zero (closed) after.
 * Safe on a closed dlog. */
void
dlog_close(struct dlog *d);

#endif
