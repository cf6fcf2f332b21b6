/*
 * inbound.c - the engine's side of the inbound session; see inbound.h.
 *
 * The session keeps its own names for what the queue stores (body types,
 * the printed id); the static_asserts below are where the two must agree,
 * so a change on either side fails the build rather than the spool.
 */
#include "inbound.h"

#include <assert.h>
#include <string.h>

#include "../deliver/route.h"
#include "config.h"

static_assert(SMTP_BODY_7BIT == (int)QUEUE_BODY_7BIT, "body types differ");
static_assert(SMTP_BODY_8BITMIME == (int)QUEUE_BODY_8BITMIME,
    "body types differ");
static_assert(SMTP_BODY_BINARYMIME == (int)QUEUE_BODY_BINARYMIME,
    "body types differ");
static_assert(SMTP_ID_LEN == QUEUE_ID_LEN, "printed ids differ in length");
static_assert(CONFIG_LINE_LENGTH_MAX <= SMTP_LINE_MAX,
    "limits.line_length may pass the session's line buffer");
static_assert(CONFIG_RECIPIENTS_MAX <= UINT16_MAX,
    "limits.recipients may pass the envelope's 16-bit count");

void
inbound_envelope(const struct smtp_session *s, struct envelope *e,
    const char **rcpt_array)
{
	const char *p = s->env.data + s->rcpt_off0;
	uint32_t i;

	assert(s->state == SMTP_S_COMMIT);
	assert(s->nrcpt > 0);
	assert(s->nrcpt <= UINT16_MAX);
	memset(e, 0, sizeof(*e));
	e->qid = s->qid;
	e->arrival_us = s->arrival_us;
	e->body = s->body;
	e->smtputf8 = s->smtputf8;
	e->nrcpt = (uint16_t)s->nrcpt;
	e->declared_size = s->declared_size;
	e->sender = s->env.data + s->sender_off;
	e->client_addr = s->client_addr;
	e->helo = s->env.data;
	e->protocol = smtp_session_protocol(s);
	for (i = 0; i < s->nrcpt; i++) {
		rcpt_array[i] = p;
		p += strlen(p) + 1;
	}
	e->rcpt = rcpt_array;
}

uint64_t
inbound_next_id(void *idgen, uint64_t now_ms)
{
	return queue_id_next(idgen, now_ms);
}

const char *
inbound_rcpt_refused(void *routes, const char *addr)
{
	const char *at = strrchr(addr, '@');
	const struct route *r;

	/* A bare "postmaster" has no domain to route by. */
	if (at == NULL)
		return NULL;
	r = route_lookup(routes, at + 1);
	if (r == NULL || r->transport.kind != ROUTE_ERROR)
		return NULL;
	return r->transport.text;
}
