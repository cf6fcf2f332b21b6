/*
 * smtp_auth.c - the inbound session's AUTH (RFC 4954): the PLAIN and
 * LOGIN exchanges, the hand-over of the credentials to the engine
 * (SMTP_EV_AUTH, smtp_session_auth_done()), and what an authenticated
 * user may then put in From: (MAIL FROM is judged in cmd_mail()).
 *
 * The session never checks a password itself: hashing is slow on purpose
 * and belongs off the event loop. It decodes the response (proto/sasl.c),
 * keeps the user name and the password in the session, and blocks until
 * the engine's verdict; the password is wiped then, and whenever an
 * exchange ends otherwise.
 */
#include <assert.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "../lib/log.h"
#include "smtp_server_int.h"

bool
smtp_session_auth_offered(const struct smtp_session *s)
{
	/* RFC 4954 section 4: no plaintext passwords on a plain channel. */
	return s->pol->auth != SMTP_AUTH_OFF &&
	    (s->tls || s->pol->auth_insecure);
}

/* Which response SMTP_S_AUTH waits for. */
enum auth_step {
	AUTH_STEP_PLAIN = 1,	/* PLAIN without an initial response */
	AUTH_STEP_LOGIN_USER,	/* LOGIN: after "334 Username:" */
	AUTH_STEP_LOGIN_PASS,	/* LOGIN: after "334 Password:" */
};

/* Forget the credentials of an exchange that did not complete. */
static void
auth_forget(struct smtp_session *s)
{
	OPENSSL_cleanse(s->auth_pass, sizeof(s->auth_pass));
	s->auth_user[0] = '\0';
	s->auth_mech = NULL;
	s->auth_step = 0;
}

void
smtp_auth_abort(struct smtp_session *s, const char *line)
{
	auth_forget(s);
	smtp_enter_state(s, SMTP_S_READY);
	smtp_reply_error(s, "%s", line);
}

/*
 * A response was decoded into auth_user/auth_pass (or was not): on to
 * the engine's check, or the reply that says what was wrong with it.
 */
static void
auth_decoded(struct smtp_session *s, enum sasl_result r)
{
	switch (r) {
	case SASL_OK:
		/* consume() returns SMTP_EV_AUTH for this state. */
		smtp_enter_state(s, SMTP_S_AUTH_WAIT);
		break;
	case SASL_BAD_BASE64:
		smtp_auth_abort(s, "501 5.5.2 Error: cannot decode response");
		break;
	case SASL_BAD_MESSAGE:
		smtp_auth_abort(s, "501 5.5.2 Error: malformed authentication "
		    "response");
		break;
	case SASL_AUTHZID:
		/* RFC 4616 section 2: we may refuse to act for another. */
		smtp_auth_abort(s, "535 5.7.8 Error: authentication failed: "
		    "authorization identity must be empty or the user's own");
		break;
	default:
		log_panic("bad sasl result %d", (int)r);
	}
}

/* "334 Password:" (in base64) and the step that reads the answer. */
static void
auth_ask_password(struct smtp_session *s)
{
	s->auth_step = AUTH_STEP_LOGIN_PASS;
	smtp_enter_state(s, SMTP_S_AUTH);
	smtp_reply(s, "334 UGFzc3dvcmQ6");
}

/*
 * AUTH mechanism [initial-response]. Offered only as the listener says
 * (smtp_session_auth_offered()); "=" is an empty initial response.
 */
void
smtp_cmd_auth(struct smtp_session *s, char *arg)
{
	char *mech = arg, *resp = NULL, *sp;
	enum sasl_result r;

	if (s->pol->auth == SMTP_AUTH_OFF) {
		smtp_reply_error(s, "502 5.5.1 Error: command not supported");
		return;
	}
	if (!s->esmtp) {
		smtp_reply_error(s, "503 5.5.1 Error: send EHLO first");
		return;
	}
	if (!smtp_session_auth_offered(s)) {
		smtp_reply_error(s, "538 5.7.11 Encryption required for "
		    "requested authentication mechanism");
		return;
	}
	if (s->authenticated) {
		smtp_reply_error(s, "503 5.5.1 Error: already authenticated");
		return;
	}
	if (smtp_session_in_transaction(s)) {
		smtp_reply_error(s, "503 5.5.1 Error: MAIL transaction in "
		    "progress");
		return;
	}
	if ((sp = strchr(arg, ' ')) != NULL) {
		*sp++ = '\0';
		while (*sp == ' ')
			sp++;
		if (*sp != '\0')
			resp = strcmp(sp, "=") == 0 ? sp + 1 : sp;
	}
	if (*mech == '\0') {
		smtp_reply_error(s, "501 5.5.4 Syntax: AUTH mechanism");
		return;
	}
	if (strcasecmp(mech, "PLAIN") == 0) {
		s->auth_mech = "PLAIN";
		if (resp == NULL) {
			/* RFC 4616: the server's challenge is empty. */
			s->auth_step = AUTH_STEP_PLAIN;
			smtp_enter_state(s, SMTP_S_AUTH);
			smtp_reply(s, "334 ");
			return;
		}
		r = sasl_plain_decode(resp, strlen(resp), s->auth_user,
		    s->auth_pass);
		auth_decoded(s, r);
	} else if (strcasecmp(mech, "LOGIN") == 0) {
		s->auth_mech = "LOGIN";
		if (resp == NULL) {
			s->auth_step = AUTH_STEP_LOGIN_USER;
			smtp_enter_state(s, SMTP_S_AUTH);
			/* "Username:" */
			smtp_reply(s, "334 VXNlcm5hbWU6");
			return;
		}
		/* What Python's smtplib and others send: the user name. */
		r = sasl_login_decode(resp, strlen(resp), s->auth_user, 1);
		if (r == SASL_OK)
			auth_ask_password(s);
		else
			auth_decoded(s, r);
	} else {
		smtp_reply_error(s, "504 5.5.4 Unrecognized authentication "
		    "type");
	}
}

void
smtp_auth_response(struct smtp_session *s, const char *line)
{
	size_t n = strlen(line);
	enum sasl_result r;

	if (strcmp(line, "*") == 0) {
		smtp_auth_abort(s, "501 5.0.0 Error: authentication aborted");
		return;
	}
	switch (s->auth_step) {
	case AUTH_STEP_PLAIN:
		r = sasl_plain_decode(line, n, s->auth_user, s->auth_pass);
		auth_decoded(s, r);
		break;
	case AUTH_STEP_LOGIN_USER:
		r = sasl_login_decode(line, n, s->auth_user, 1);
		if (r == SASL_OK)
			auth_ask_password(s);
		else
			auth_decoded(s, r);
		break;
	case AUTH_STEP_LOGIN_PASS:
		r = sasl_login_decode(line, n, s->auth_pass, 0);
		auth_decoded(s, r);
		break;
	default:
		log_panic("bad auth step %u", (unsigned)s->auth_step);
	}
}

enum smtp_event
smtp_session_auth_done(struct smtp_session *s, enum smtp_auth_result res,
    const struct smtp_sender_id *id)
{
	assert(s->state == SMTP_S_AUTH_WAIT);
	OPENSSL_cleanse(s->auth_pass, sizeof(s->auth_pass));
	s->auth_step = 0;
	smtp_enter_state(s, SMTP_S_READY);
	switch (res) {
	case SMTP_AUTH_OK:
		assert(id != NULL);
		s->authenticated = true;
		s->sender_id = *id;
		s->sender_id.name = s->auth_user;
		smtp_reply(s, "235 2.7.0 Authentication successful");
		break;
	case SMTP_AUTH_FAILED:
		s->auth_user[0] = '\0';
		smtp_reply_error(s, "535 5.7.8 Error: authentication failed");
		break;
	case SMTP_AUTH_TEMPFAIL:
		s->auth_user[0] = '\0';
		smtp_reply(s, "454 4.7.0 Temporary authentication failure");
		break;
	case SMTP_AUTH_LOCKED:
		s->auth_user[0] = '\0';
		smtp_reply(s, "421 4.7.0 %s Error: too many failed logins",
		    s->cfg->hostname);
		smtp_enter_state(s, SMTP_S_QUIT);
		break;
	default:
		log_panic("bad auth result %d", (int)res);
	}
	/* Carry on with whatever the client pipelined meanwhile. */
	return smtp_session_input(s, NULL, 0);
}

static bool
from_allowed(void *ctx, const char *addr)
{
	const struct smtp_session *s = ctx;

	/* In a header, "<>" names nobody: not the null sender's pass. */
	return addr[0] != '\0' &&
	    smtp_sender_allowed(s->pol->senders, &s->sender_id, addr);
}

/*
 * An authenticated user's message under sender_restrictions: every From:
 * address must be its own, as MAIL FROM must. After DATA, RFC 5321 4.3.2
 * has 550 for a policy refusal (553 is not among DATA's replies). NULL:
 * no objection; else the reply line, in line[0..n).
 */
const char *
smtp_from_refusal(struct smtp_session *s, char *line, size_t n)
{
	char bad[SMTP_PATH_MAX + 1];

	if (!s->authenticated || s->pol->senders == SMTP_SENDER_ANY)
		return NULL;
	assert(s->data_off <= s->msg.len);
	switch (smtp_from_check(s->msg.data + s->data_off,
	    s->msg.len - s->data_off, from_allowed, s, bad, sizeof(bad))) {
	case SMTP_FROM_OK:
		return NULL;
	case SMTP_FROM_FORBIDDEN:
		snprintf(line, n, "550 5.7.1 <%s>: From: address rejected: "
		    "not owned by user %s", bad, s->auth_user);
		return line;
	case SMTP_FROM_MALFORMED:
		snprintf(line, n, "550 5.7.1 Error: From: header not "
		    "understood; user %s may only send as its own "
		    "addresses", s->auth_user);
		return line;
	default:
		log_panic("bad From: result");
	}
}
