/*
 * sasl.h - decoding of SMTP AUTH client responses (RFC 4954) for the PLAIN
 * (RFC 4616) and LOGIN mechanisms. Pure functions, no I/O, no state.
 *
 * A client response is base64 (RFC 4648 section 4, padded, no white
 * space); the decoding itself is OpenSSL's (EVP_DecodeBlock), wrapped so
 * that what it tolerates (white space around the text, '=' anywhere in
 * the last quantum, the padding bytes counted in its length) never
 * reaches the caller. What these functions accept:
 *   - PLAIN: "[authzid] NUL authcid NUL passwd", exactly two NULs, authcid
 *     and passwd not empty, each field at most SASL_FIELD_MAX bytes of
 *     UTF-8; authzid empty or equal to authcid (sluice does not let one
 *     user act for another);
 *   - LOGIN: one field per response, the same rules, no NUL.
 * A user name also may not hold control characters: it is logged.
 * Decoded bytes that are not returned are wiped before returning.
 */
#ifndef SLUICE_SASL_H
#define SLUICE_SASL_H

#include <stddef.h>

/* RFC 4616 section 2: each field is at most 255 octets. */
#define SASL_FIELD_MAX 255

/* The longest base64 response a PLAIN or LOGIN exchange can need. */
#define SASL_B64_MAX (((3 * SASL_FIELD_MAX + 2 + 2) / 3) * 4)

enum sasl_result {
	SASL_OK = 0,
	SASL_BAD_BASE64,	/* not base64: 501 5.5.2 */
	SASL_BAD_MESSAGE,	/* decodes, but not a valid response: 501 5.5.2 */
	SASL_AUTHZID,		/* PLAIN authzid names another user: 535 5.7.8 */
};

/*
 * Decode base64 text in[0..len) into out (room for cap bytes); the length
 * decoded goes to *outlen. Padding is required and only '=' at the end is
 * padding; "" decodes to nothing. -1 on anything else, or when out is too
 * small (cap >= len / 4 * 3 always is).
 */
int sasl_b64_decode(const char *in, size_t len, unsigned char *out,
    size_t cap, size_t *outlen);

/*
 * A PLAIN response (base64 text in[0..len)): the authentication identity
 * into user and the password into pass, each NUL-terminated.
 */
enum sasl_result sasl_plain_decode(const char *in, size_t len,
    char user[SASL_FIELD_MAX + 1], char pass[SASL_FIELD_MAX + 1]);

/*
 * A LOGIN response (base64 text in[0..len)) into out, NUL-terminated.
 * is_user: a user name (no control characters) rather than a password.
 */
enum sasl_result sasl_login_decode(const char *in, size_t len,
    char out[SASL_FIELD_MAX + 1], int is_user);

#endif
