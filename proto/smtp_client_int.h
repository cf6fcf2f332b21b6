/*
 * smtp_client_int.h - what the two files of the outbound client share
 * (smtp_client.c: replies, transactions, the API; smtp_client_hello.c:
 * EHLO, STARTTLS, AUTH). Not for use outside proto/smtp_client*.c.
 */
#ifndef SLUICE_SMTP_CLIENT_INT_H
#define SLUICE_SMTP_CLIENT_INT_H

#include "smtp_client.h"

/* smtp_client.c */
void smtpc_enter_state(struct smtp_client *c, enum smtp_client_state st);
/* Append a command; false (and out_err, sticky) when it cannot be. */
bool smtpc_emit(struct smtp_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The same for a command in n pieces (buf_puts_all()): no format. */
bool smtpc_emit_all(struct smtp_client *c, const char *const *parts,
    size_t n);
void smtpc_local_reply(struct smtp_client_reply *r, int code,
    const char *enhanced, const char *text);
/* Printable copy of src[0..n) into dst (at most cap), its length. */
size_t smtpc_sanitize(char *dst, size_t cap, const char *src, size_t n);
/* A well-formed reply that makes no sense here: a protocol error. */
void smtpc_unexpected(struct smtp_client *c, const struct smtp_client_reply *r);
void smtpc_check_out(struct smtp_client *c);
void smtpc_fail_session(struct smtp_client *c, enum smtp_client_stage stage,
    const struct smtp_client_reply *r, bool quit);
void smtpc_go_ready(struct smtp_client *c);

/* smtp_client_hello.c */
void smtpc_ehlo_keyword(struct smtp_client *c, const char *t, size_t n);
void smtpc_send_hello(struct smtp_client *c, const char *verb,
    enum smtp_client_state st);
void smtpc_hello_done(struct smtp_client *c, bool esmtp);
void smtpc_starttls_reply(struct smtp_client *c,
    const struct smtp_client_reply *r);
void smtpc_auth_reply(struct smtp_client *c, const struct smtp_client_reply *r);

#endif
