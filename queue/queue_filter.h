/*
 * queue_filter.h - which queued messages an operator means: the filters
 * of `sluicectl queue list|delete|hold|release|bounce|flush` (like
 * postsuper's and postqueue's selections), judged on a message as the
 * index holds it. Pure: no I/O, no allocation.
 *
 * Every filter that is set must match (AND). Addresses compare without
 * regard to case. "Pending" recipients are those neither delivered nor
 * bounced: they are what an operation on the message still affects.
 *
 *   from      the sender: "user@domain", "@domain" (any sender there), or
 *             "<>" (the null sender of bounces)
 *   to        a pending recipient, same forms
 *   domain    a pending recipient's domain ("example.com" = "@example.com")
 *   status    held (put on hold), deferred (not held, a pending recipient
 *             was tried), queued (not held, no pending recipient tried yet)
 *   before_us arrived before this time (CLOCK_REALTIME us): --older-than
 *   code      a pending recipient's last reply: 421 exactly, or 4 / 5 for
 *             the class
 *   reason    a recipient's last reply text (4xx or 5xx, kept in the
 *             index's "reply") contains this, without regard to case:
 *             "greylist", "mailbox full". Needs m->reply loaded
 *             (queue_index_replies()); without it nothing matches.
 */
#ifndef SLUICE_QUEUE_FILTER_H
#define SLUICE_QUEUE_FILTER_H

#include <stdbool.h>
#include <stdint.h>

#include "queue.h"

enum queue_filter_status {
	QUEUE_FILTER_ANY = 0,
	QUEUE_FILTER_QUEUED,
	QUEUE_FILTER_DEFERRED,
	QUEUE_FILTER_HELD,
};

struct queue_filter {
	const char *from;
	const char *to;
	const char *domain;
	enum queue_filter_status status;
	uint64_t before_us;	/* 0: any age */
	unsigned code;		/* 0: any; 4 or 5: the class; else exact */
	const char *reason;	/* NULL: any */
};

/* "queued", "deferred", "held" (also "hold", "active"): 0; else -1. */
int queue_filter_status_parse(const char *s, enum queue_filter_status *out);

/* No filter set: every message matches. */
bool queue_filter_empty(const struct queue_filter *f);

bool queue_filter_match(const struct queue_filter *f, const struct queue_msg *m);

#endif
