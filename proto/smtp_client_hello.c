/*
 * smtp_client_hello.c - the outbound client's session set-up: the EHLO
 * reply's extensions, STARTTLS (RFC 3207) and AUTH (RFC 4954), from the
 * greeting to the first `ready'. The rest of the client, and the shared
 * helpers (smtp_client_int.h), are in smtp_client.c.
 */
#include "smtp_client.h"

#include <assert.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "../lib/log.h"
#include "smtp_client_int.h"
#include "smtp_parse.h"

/* AUTH progress (c->auth_step). */
enum {
	AUTH_NONE = 0,
	AUTH_PLAIN_SENT,	/* AUTH PLAIN <initial response>: want 235 */
	AUTH_LOGIN_SENT,	/* AUTH LOGIN: want 334 (user name) */
	AUTH_USER_SENT,		/* user name sent: want 334 (password) */
	AUTH_PASS_SENT,		/* password sent: want 235 */
};

/* ---- greeting, EHLO, AUTH ----------------------------------------------- */

static bool
keyword_is(const char *t, size_t n, const char *kw)
{
	return strlen(kw) == n && strncasecmp(t, kw, n) == 0;
}

/* One line (not the first) of a positive EHLO/LHLO reply (RFC 5321 4.1.1.1). */
void
smtpc_ehlo_keyword(struct smtp_client *c, const char *t, size_t n)
{
	size_t kl = 0, i, j;
	const char *arg;
	size_t an;
	char num[24];
	unsigned long long v;

	while (kl < n && t[kl] != ' ' && t[kl] != '=')
		kl++;
	arg = t + (kl < n ? kl + 1 : kl);
	an = n - (size_t)(arg - t);
	if (keyword_is(t, kl, "PIPELINING")) {
		c->ext_pending |= SMTP_CLIENT_EXT_PIPELINING;
	} else if (keyword_is(t, kl, "SIZE")) {
		/* RFC 1870: "SIZE" alone or "SIZE 0" announce no fixed limit. */
		c->ext_pending |= SMTP_CLIENT_EXT_SIZE;
		for (i = 0; i < an && i < sizeof(num) - 1 && arg[i] != ' '; i++)
			num[i] = arg[i];
		num[i] = '\0';
		c->size_pending = smtp_parse_u64(num, &v) ? v : 0;
	} else if (keyword_is(t, kl, "8BITMIME")) {
		c->ext_pending |= SMTP_CLIENT_EXT_8BITMIME;
	} else if (keyword_is(t, kl, "SMTPUTF8")) {
		c->ext_pending |= SMTP_CLIENT_EXT_SMTPUTF8;
	} else if (keyword_is(t, kl, "ENHANCEDSTATUSCODES")) {
		c->ext_pending |= SMTP_CLIENT_EXT_ENHANCEDSTATUSCODES;
	} else if (keyword_is(t, kl, "CHUNKING")) {
		c->ext_pending |= SMTP_CLIENT_EXT_CHUNKING;
	} else if (keyword_is(t, kl, "STARTTLS")) {
		c->ext_pending |= SMTP_CLIENT_EXT_STARTTLS;
	} else if (keyword_is(t, kl, "DSN")) {
		c->ext_pending |= SMTP_CLIENT_EXT_DSN;
	} else if (keyword_is(t, kl, "AUTH")) {
		/* "AUTH PLAIN LOGIN", or the old "AUTH=PLAIN LOGIN". */
		c->ext_pending |= SMTP_CLIENT_EXT_AUTH;
		for (i = 0; i < an; i = j) {
			while (i < an && arg[i] == ' ')
				i++;
			for (j = i; j < an && arg[j] != ' '; j++)
				;
			if (keyword_is(arg + i, j - i, "PLAIN"))
				c->mechs_pending |= SMTP_CLIENT_AUTH_PLAIN;
			else if (keyword_is(arg + i, j - i, "LOGIN"))
				c->mechs_pending |= SMTP_CLIENT_AUTH_LOGIN;
		}
	}
}

void
smtpc_send_hello(struct smtp_client *c, const char *verb, enum smtp_client_state st)
{
	c->ext_pending = 0;
	c->mechs_pending = 0;
	c->size_pending = 0;
	(void)smtpc_emit(c, "%s %s\r\n", verb, c->cfg->helo_name);
	smtpc_enter_state(c, st);
}

/* base64 (RFC 4648) of in[0..n) into out, NUL-terminated; false if no room. */
static bool
b64(const void *in, size_t n, char *out, size_t cap)
{
	assert(cap > 1);
	/* EVP_EncodeBlock writes 4 bytes per 3 (the last padded) and a NUL. */
	if (n > (size_t)INT_MAX / 2 || 4 * ((n + 2) / 3) >= cap)
		return false;
	(void)EVP_EncodeBlock((unsigned char *)out, in, (int)n);
	return true;
}

static void
auth_fail_local(struct smtp_client *c, const char *text)
{
	struct smtp_client_reply r;

	/*
	 * 4xx: the remote host may offer a mechanism later (typically only
	 * after STARTTLS), and a credentials problem is the operator's to
	 * fix, not a reason to bounce mail (cf. Postfix's
	 * smtp_sasl_auth_soft_bounce).
	 */
	smtpc_local_reply(&r, 454, "4.7.0", text);
	smtpc_fail_session(c, SMTP_CLIENT_STAGE_AUTH, &r, true);
}

/* RFC 4954: PLAIN (RFC 4616) with an initial response if offered, else LOGIN. */
static void
start_auth(struct smtp_client *c)
{
	const char *user = c->cfg->auth_user, *pass = c->cfg->auth_pass;
	size_t ul = strlen(user), pl = pass ? strlen(pass) : 0;
	char plain[2 * SMTP_CLIENT_AUTH_MAX + 2];
	char enc[4 * (sizeof(plain) / 3 + 1) + 1];

	if (ul > SMTP_CLIENT_AUTH_MAX || pl > SMTP_CLIENT_AUTH_MAX) {
		auth_fail_local(c, "authentication user name or password "
		    "too long");
		return;
	}
	if (!(c->ext & SMTP_CLIENT_EXT_AUTH) ||
	    !(c->auth_mechs & (SMTP_CLIENT_AUTH_PLAIN | SMTP_CLIENT_AUTH_LOGIN))) {
		auth_fail_local(c, "authentication is configured but the "
		    "remote host offers no supported mechanism (PLAIN, LOGIN)");
		return;
	}
	if (c->auth_mechs & SMTP_CLIENT_AUTH_PLAIN) {
		/* authzid (empty) NUL authcid NUL passwd */
		plain[0] = '\0';
		memcpy(plain + 1, user, ul);
		plain[1 + ul] = '\0';
		if (pl > 0)
			memcpy(plain + 2 + ul, pass, pl);
		if (!b64(plain, 2 + ul + pl, enc, sizeof(enc)))
			log_panic("base64 of %zu bytes failed", 2 + ul + pl);
		(void)smtpc_emit(c, "AUTH PLAIN %s\r\n", enc);
		explicit_bzero(plain, sizeof(plain));
		explicit_bzero(enc, sizeof(enc));
		c->auth_step = AUTH_PLAIN_SENT;
	} else {
		(void)smtpc_emit(c, "AUTH LOGIN\r\n");
		c->auth_step = AUTH_LOGIN_SENT;
	}
	smtpc_enter_state(c, SMTP_C_AUTH);
}

/* A LOGIN step: the user name or password, base64, as a line of its own. */
static void
auth_login_send(struct smtp_client *c, const char *s)
{
	char enc[4 * (SMTP_CLIENT_AUTH_MAX / 3 + 1) + 1];

	if (!b64(s, s ? strlen(s) : 0, enc, sizeof(enc)))
		log_panic("base64 of a credential failed");
	(void)smtpc_emit(c, "%s\r\n", enc);
	explicit_bzero(enc, sizeof(enc));
}

/* TLS is settled (used, refused, or not wanted): AUTH if configured. */
static void
tls_settled(struct smtp_client *c)
{
	if (c->cfg->auth_user == NULL || c->cfg->auth_user[0] == '\0') {
		smtpc_go_ready(c);
		return;
	}
	/*
	 * Credentials are for encrypted sessions only, unless the operator
	 * said otherwise: a 4xx, so the mail waits for the operator or for
	 * the server to offer STARTTLS again, never bounces.
	 */
	if (!c->tls && !c->cfg->auth_insecure) {
		auth_fail_local(c, (c->ext & SMTP_CLIENT_EXT_STARTTLS) ?
		    "authentication is configured but the session is not "
		    "encrypted (TLS is off for this host; auth_insecure is "
		    "not set)" : "authentication is configured but the remote "
		    "host offers no STARTTLS, and credentials are not sent in "
		    "plaintext (auth_insecure is not set)");
		return;
	}
	start_auth(c);
}

/* TLS is required and cannot be had: 4.7.4, as Postfix says it. */
static void
tls_missing(struct smtp_client *c, const char *text)
{
	struct smtp_client_reply r;

	smtpc_local_reply(&r, 451, "4.7.4", text);
	smtpc_fail_session(c, SMTP_CLIENT_STAGE_TLS, &r, true);
}

void
smtpc_hello_done(struct smtp_client *c, bool esmtp)
{
	c->esmtp = esmtp;
	c->ext = esmtp ? c->ext_pending : 0;
	c->auth_mechs = esmtp ? c->mechs_pending : 0;
	c->size_max = esmtp ? c->size_pending : 0;
	if (!c->tls && c->starttls != SMTP_CLIENT_STARTTLS_NEVER) {
		if (c->ext & SMTP_CLIENT_EXT_STARTTLS) {
			(void)smtpc_emit(c, "STARTTLS\r\n");
			smtpc_enter_state(c, SMTP_C_STARTTLS);
			return;
		}
		if (c->starttls == SMTP_CLIENT_STARTTLS_MUST) {
			tls_missing(c, "TLS is required, but was not offered "
			    "by the remote host");
			return;
		}
	}
	tls_settled(c);
}

/* The reply to STARTTLS: 220, go; else plaintext (may) or give up. */
void
smtpc_starttls_reply(struct smtp_client *c, const struct smtp_client_reply *r)
{
	char text[SMTP_CLIENT_TEXT_MAX + 1];
	int cls = r->code / 100;

	if (cls == 2) {
		/* The engine takes over until smtp_client_tls_done(). */
		smtpc_enter_state(c, SMTP_C_TLS);
		buf_reset(&c->in);
		return;
	}
	if (cls != 4 && cls != 5) {
		smtpc_unexpected(c, r);
		return;
	}
	if (c->starttls == SMTP_CLIENT_STARTTLS_MUST) {
		snprintf(text, sizeof(text), "TLS is required, but the remote "
		    "host refused STARTTLS: %d %s %s", r->code, r->enhanced,
		    r->text);
		tls_missing(c, text);
		return;
	}
	/* Opportunistic: the session is still in step, go on without. */
	c->ext &= ~(uint32_t)SMTP_CLIENT_EXT_STARTTLS;
	c->starttls = SMTP_CLIENT_STARTTLS_NEVER;
	tls_settled(c);
}

void
smtpc_auth_reply(struct smtp_client *c, const struct smtp_client_reply *r)
{
	char text[SMTP_CLIENT_TEXT_MAX + 1];
	struct smtp_client_reply f;
	int cls = r->code / 100;

	if (cls == 4 || cls == 5) {
		snprintf(text, sizeof(text), "authentication failed: %s",
		    r->text);
		f = *r;
		f.text = text;
		smtpc_fail_session(c, SMTP_CLIENT_STAGE_AUTH, &f, true);
		return;
	}
	switch (c->auth_step) {
	case AUTH_PLAIN_SENT:
	case AUTH_PASS_SENT:
		if (cls != 2)
			break;
		c->auth_step = AUTH_NONE;
		smtpc_go_ready(c);
		return;
	case AUTH_LOGIN_SENT:
		if (r->code != 334)
			break;
		auth_login_send(c, c->cfg->auth_user);
		c->auth_step = AUTH_USER_SENT;
		return;
	case AUTH_USER_SENT:
		if (r->code != 334)
			break;
		auth_login_send(c, c->cfg->auth_pass);
		c->auth_step = AUTH_PASS_SENT;
		return;
	default:
		log_panic("bad auth step %d", (int)c->auth_step);
	}
	smtpc_unexpected(c, r);
}

void
smtp_client_set_starttls(struct smtp_client *c, enum smtp_client_starttls s)
{
	assert(c->state == SMTP_C_GREETING);
	c->starttls = (uint8_t)s;
}

void
smtp_client_tls_done(struct smtp_client *c)
{
	if (c->state == SMTP_C_GREETING) {
		/* Implicit TLS: the greeting comes encrypted. */
		c->tls = true;
		return;
	}
	assert(c->state == SMTP_C_TLS);
	c->tls = true;
	/* RFC 3207 4.2: discard what the server said in plaintext. */
	c->esmtp = false;
	c->ext = 0;
	c->auth_mechs = 0;
	c->size_max = 0;
	smtpc_send_hello(c, c->cfg->lmtp ? "LHLO" : "EHLO",
	    c->cfg->lmtp ? SMTP_C_LHLO : SMTP_C_EHLO);
	smtpc_check_out(c);
}

void
smtp_client_tls_failed(struct smtp_client *c, const char *why)
{
	char text[SMTP_CLIENT_TEXT_MAX + 1];
	struct smtp_client_reply r;
	size_t n;

	if (c->state == SMTP_C_CLOSED)
		return;
	n = (size_t)snprintf(text, sizeof(text), "TLS handshake failed: ");
	if (n < sizeof(text) - 1) {
		n += smtpc_sanitize(text + n, sizeof(text) - 1 - n, why, strlen(why));
		text[n] = '\0';
	}
	smtpc_local_reply(&r, 454, "4.7.5", text);
	smtpc_fail_session(c, SMTP_CLIENT_STAGE_TLS, &r, false);
}
