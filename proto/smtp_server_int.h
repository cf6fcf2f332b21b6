/*
 * smtp_server_int.h - what the inbound session's files share: the reply
 * and state helpers of smtp_server.c, and the AUTH half (smtp_auth.c:
 * the exchange, and what an authenticated user may send as). Private to
 * proto/smtp_*.c; the interface is smtp_server.h.
 */
#ifndef SLUICE_SMTP_SERVER_INT_H
#define SLUICE_SMTP_SERVER_INT_H

#include <stddef.h>

#include "smtp_server.h"

/* smtp_server.c */

/* Append one reply line (CRLF added); see vreply() for a full out. */
void smtp_reply(struct smtp_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The same, counted as an error: limits.errors ends the session. */
void smtp_reply_error(struct smtp_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void smtp_enter_state(struct smtp_session *s, enum smtp_state st);

/* smtp_auth.c */

/* The AUTH command (RFC 4954 section 4). */
void smtp_cmd_auth(struct smtp_session *s, char *arg);
/* A line read in SMTP_S_AUTH: the response to our 334. */
void smtp_auth_response(struct smtp_session *s, const char *line);
/* End an AUTH exchange with `line` (counted), credentials forgotten. */
void smtp_auth_abort(struct smtp_session *s, const char *line);
/*
 * At the end of a message: NULL when its From: addresses are the user's
 * own (or nobody asks), else the refusal, written into line[0..n).
 */
const char *smtp_from_refusal(struct smtp_session *s, char *line, size_t n);

#endif
