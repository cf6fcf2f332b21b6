/*
 * inbound.h - what the engine lends the inbound SMTP session (proto/
 * smtp_server.h), which knows nothing of the queue or of routing: the
 * envelope of a finished message in the queue's terms, message ids from
 * the shard's queue id generator, and routing's refusals at RCPT.
 *
 * Contract: inbound_envelope() only on a session that returned
 * SMTP_EV_COMMIT and has not been given its verdict yet; what it fills
 * points into the session and lives as long as that state.
 */
#ifndef SLUICE_INBOUND_H
#define SLUICE_INBOUND_H

#include <stdint.h>

#include "../proto/smtp_server.h"
#include "../queue/queue.h"

/*
 * Fill e from the complete message's envelope. rcpt_array must have room
 * for s->nrcpt pointers; e->rcpt points at it.
 */
void inbound_envelope(const struct smtp_session *s, struct envelope *e,
    const char **rcpt_array);

/* smtp_id_source.next over a struct queue_id_gen (ctx). */
uint64_t inbound_next_id(void *idgen, uint64_t now_ms);

/*
 * smtp_server_cfg.rcpt_refused over a struct route_table (ctx): the reply
 * line of an error: route for addr's domain, else NULL.
 */
const char *inbound_rcpt_refused(void *routes, const char *addr);

#endif
