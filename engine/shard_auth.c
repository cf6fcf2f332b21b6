/*
 * shard_auth.c - SMTP AUTH on a shard: credentials to the password
 * workers (engine/auth.c), verdicts back to their sessions, and failed
 * logins answered late, by the tick, never by a sleep. See shard_int.h.
 */
#include "auth.h"
#include "shard_int.h"

enum smtp_event
shard_auth_start(struct shard *sh, struct conn *c)
{
	struct smtp_session *s = &c->smtp;
	enum smtp_auth_result now;

	now = auth_submit(sh->id, (uint32_t)(c - sh->conns), c->gen,
	    &c->cg->cfg, c->cg->auth_dummy, s, sh->now_ms);
	if (now == SMTP_AUTH_OK)
		return SMTP_EV_NONE;	/* the workers answer */
	log_warn("auth refused: client=[%s], sasl_method=%s, "
	    "sasl_username=%s: %s", s->client_addr, s->auth_mech, s->auth_user,
	    now == SMTP_AUTH_LOCKED ? "too many failed logins" :
	    "too many logins waiting");
	return smtp_session_auth_done(s, now, NULL);
}

struct conn *
shard_auth_finish(struct shard *sh, const struct auth_result *r,
    enum smtp_event *ev)
{
	struct conn *c = &sh->conns[r->conn_idx];
	struct smtp_sender_id id;
	uint64_t delay;
	bool live;

	assert(r->conn_idx < sh->nconns);
	live = c->in_use && c->gen == r->conn_gen && !c->closing &&
	    c->smtp.state == SMTP_S_AUTH_WAIT;
	if (r->res == SMTP_AUTH_OK) {
		log_info("client=[%s], sasl_method=%s, sasl_username=%s",
		    r->client, r->mech, r->user_name);
		if (!live)
			return NULL;
		id = (struct smtp_sender_id){ NULL, r->user->allowed_from,
		    r->user->nallowed_from };
		*ev = smtp_session_auth_done(&c->smtp, SMTP_AUTH_OK, &id);
		return c;
	}
	/* Counted even when the client has left: hanging up early must not
	 * be a way around the limit. */
	delay = auth_fail_delay_ms(r->addr_key, sh->now_ms);
	log_warn("auth failed: client=[%s], sasl_method=%s, sasl_username=%s%s",
	    r->client, r->mech, r->user_name,
	    delay == UINT64_MAX ? ": too many failed logins, closing" : "");
	if (!live)
		return NULL;
	if (delay != UINT64_MAX) {
		c->auth_due_ms = sh->now_ms + delay;
		return NULL;
	}
	*ev = smtp_session_auth_done(&c->smtp, SMTP_AUTH_LOCKED, NULL);
	return c;
}

bool
shard_auth_due(struct conn *c, enum smtp_event *ev)
{
	c->auth_due_ms = 0;
	if (c->smtp.state != SMTP_S_AUTH_WAIT)
		return false;
	*ev = smtp_session_auth_done(&c->smtp, SMTP_AUTH_FAILED, NULL);
	return true;
}
