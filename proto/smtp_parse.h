/*
 * smtp_parse.h - parsing of SMTP command arguments (RFC 5321 section 4.1).
 *
 * These functions work in place on a NUL-terminated, writable line and
 * never read past its end. They accept what real clients send (a space
 * after "FROM:", lower-case verbs, source routes that RFC 5321 says to
 * ignore) and reject what would make an address ambiguous downstream:
 * control characters, unbalanced brackets, unquoted spaces.
 */
#ifndef SLUICE_SMTP_PARSE_H
#define SLUICE_SMTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>

/* Longest path we accept, without the angle brackets (RFC 5321 4.5.3.1.3). */
#define SMTP_PATH_MAX 254

enum smtp_path_result {
	SMTP_PATH_OK = 0,
	SMTP_PATH_SYNTAX,	/* not "KEYWORD:<...>" at all: 501 5.5.4 */
	SMTP_PATH_BAD_ADDR,	/* the address inside is malformed: 501 5.1.x */
	SMTP_PATH_NEEDS_UTF8,	/* non-ASCII without SMTPUTF8: 553 5.6.7 */
	SMTP_PATH_BAD_UTF8,	/* non-ASCII that is not UTF-8: 553 5.6.7 */
};

/*
 * Split "FROM:<a@b> SIZE=10" (keyword "FROM:") into the address (without
 * brackets, "" for <>) and the parameter string (or "" when none). Both
 * point into `arg`, which is modified. The address is checked with
 * smtp_address_ok(); allow_empty permits "<>" (MAIL only). Non-ASCII needs
 * utf8_ok (the transaction is SMTPUTF8, RFC 6531) and must be UTF-8.
 */
enum smtp_path_result smtp_parse_path(char *arg, const char *keyword,
    bool allow_empty, bool utf8_ok, char **addr, char **params);

/*
 * Is addr a usable mailbox? local@domain with a dot-atom or quoted local
 * part and a domain name or address literal; "postmaster" alone when
 * allow_postmaster. *eight_bit is set when it has non-ASCII octets.
 */
bool smtp_address_ok(const char *addr, bool allow_postmaster, bool *eight_bit);

/*
 * Is p[0..n) well-formed UTF-8 (RFC 3629 section 4)? Overlong forms,
 * surrogates (U+D800..U+DFFF) and code points above U+10FFFF are not.
 */
bool smtp_utf8_valid(const char *p, size_t n);

/*
 * Take the next "KEY[=VALUE]" from *cursor (space separated). Returns false
 * at the end. key and val (NULL when absent) point into the string.
 */
bool smtp_next_param(char **cursor, char **key, char **val);

/* Parse a decimal count without sign; false on overflow or junk. */
bool smtp_parse_u64(const char *s, unsigned long long *out);

#endif
