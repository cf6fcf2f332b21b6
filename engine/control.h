/*
 * control.h - the control socket: how `sluicectl queue flush|delete|hold|
 * release|bounce` reach the running daemon, and how sluicectl's reads of
 * the index see every message acknowledged before them ("sync").
 *
 * A thread accepts on SPOOL/control.sock (mode 0600, owner only). A client
 * sends one line, "COMMAND [QUEUE-ID...]\n" (grammar: control_parse.h),
 * and gets one line back: "ok TEXT" or "error TEXT". With one id, TEXT
 * names it ("ok hold ID", "error ID is not on hold"); with several it is
 * "VERB DONE GONE REFUSED LATE": messages done, not in the queue, in a
 * state that refuses the verb (release of one not held, bounce or flush
 * of one held) and not done in time ("ok" only when LATE is 0). A malformed line is
 * answered at once; every other command first waits until what was
 * acknowledged before it is indexed (the index follows the segments by a
 * few milliseconds); "sync" does only that. Commands act through the
 * shards' inboxes and the committer (engine/deliver.h), never on LMDB
 * behind the committer's back, and delete/hold/release answer once the
 * index shows the change (or after 5 s, with an error).
 *
 * "reload" reads the configuration again (engine/reload.h): "ok
 * generation N: WHAT CHANGED", or "error REASON" and the configuration's
 * errors on the lines after it.
 *
 * "status" is answered "ok DOCUMENT": the JSON object of engine/status.c
 * on one line (its keys: docs/operations.md), however long. For its
 * "last minute" the thread samples the counters once a second.
 */
#ifndef SLUICE_CONTROL_H
#define SLUICE_CONTROL_H

#include "../queue/queue.h"
#include "../queue/queue_commit.h"
#include "config.h"

/*
 * "reload" runs reload (engine/reload.h) on the control thread and
 * answers "ok LINE" or "error LINE", followed by any further lines of
 * its reply (a refused configuration's errors, one a line).
 */
typedef int (*control_reload_fn)(char *out, size_t outlen);

/* 0, or -errno (the socket cannot be created: reported, not fatal). */
int control_start(const struct config *cfg, struct queue_index *qi,
    struct committer *committer, control_reload_fn reload);
void control_stop(void);

#endif
