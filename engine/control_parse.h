/*
 * control_parse.h - the control socket's request line, read without I/O.
 *
 * Purpose: engine/control.c reads one line from a client and acts on it;
 * this is the part in between that decides what the line asks for, kept
 * pure so that it can be tested and fuzzed on its own.
 *
 * Grammar (what sluicectl sends, engine/control.h):
 *
 *   request = verb *( SP queue-id ) [ CR ] LF
 *   verb    = "sync"                                  ; no queue id
 *           / "flush"                   ; none (all), or the ids to retry
 *           / "delete" / "hold" / "release" / "bounce" ; at least one id
 *           / "status"                                ; no queue id
 *           / "reload"                                ; no queue id
 *
 * At most CONTROL_IDS_MAX ids a request: sluicectl sends a bulk operation
 * (every message a filter selected) in requests of that many.
 *
 * Spaces and tabs separate the words, and more than one of them is fine.
 * Only the bytes before the first LF count; a request without an LF (the
 * client closed or sent too much) is what it holds. Verbs are lower case,
 * a queue id is 16 hex digits of either case (queue_id_parse()). Rejected:
 * an empty line, a NUL byte, an unknown verb, a missing, extra or
 * malformed argument.
 *
 * Errors: control_parse() returns 0, or -EINVAL (cmd all-zero then)
 * with a reason in why:
 * one line of printable ASCII without the "error " prefix and without a
 * line end, at most whylen - 1 bytes; text from the client is quoted only
 * when it is printable and short.
 */
#ifndef SLUICE_CONTROL_PARSE_H
#define SLUICE_CONTROL_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../queue/queue.h"

/* Queue ids in one request, and the longest request line, LF included. */
#define CONTROL_IDS_MAX		1000
#define CONTROL_LINE_MAX	(16 + CONTROL_IDS_MAX * (QUEUE_ID_LEN + 1) + 2)
/*
 * What a one-id reply says after the id of a message the verb cannot take
 * ("error ID is not on hold"); a message not in the queue gets
 * queue_strerror(QUEUE_ENOTFOUND). sluicectl reads one-id replies by them.
 */
#define CONTROL_NOT_HELD	"is not on hold"
#define CONTROL_HELD		"is on hold: release it first"

/* Longest verb quoted back in "unknown command '...'". */
#define CONTROL_ECHO_MAX	32

enum control_verb {
	CONTROL_SYNC = 1,
	CONTROL_FLUSH,
	CONTROL_DELETE,
	CONTROL_HOLD,
	CONTROL_RELEASE,
	CONTROL_BOUNCE,
	CONTROL_STATUS,
	CONTROL_RELOAD,
};

struct control_cmd {
	enum control_verb verb;
	unsigned nqid;			/* ids given, 0..CONTROL_IDS_MAX */
	uint64_t qid[CONTROL_IDS_MAX];
	char arg[QUEUE_ID_LEN + 1];	/* the first id as written, or "" */
};

int control_parse(const char *line, size_t len, struct control_cmd *cmd,
    char *why, size_t whylen);

/* "sync", "flush", ...; NULL for a value outside the enum. */
const char *control_verb_name(enum control_verb verb);

/* Does the verb need at least one queue id? false outside the enum. */
bool control_verb_takes_id(enum control_verb verb);

#endif
