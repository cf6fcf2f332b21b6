/*
 * smtp_parse.c - see smtp_parse.h.
 */
#include "smtp_parse.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* RFC 5322 atext, plus the dot of a dot-atom. */
static bool
is_atext(unsigned char c)
{
	if (c >= 0x80)
		return true;	/* UTF-8, checked separately (RFC 6531) */
	if (isalnum(c))
		return true;
	return strchr("!#$%&'*+-/=?^_`{|}~.", c) != NULL && c != '\0';
}

static bool
local_part_ok(const char *p, size_t n, bool *eight_bit)
{
	size_t i;

	if (n == 0 || n > 64 * 4)
		return false;
	if (p[0] == '"') {
		/* Quoted string: printable, with \-escapes. */
		if (n < 2 || p[n - 1] != '"')
			return false;
		for (i = 1; i < n - 1; i++) {
			unsigned char c = (unsigned char)p[i];
			if (c < 0x20 || c == 0x7f)
				return false;
			if (c >= 0x80)
				*eight_bit = true;
			if (c == '\\') {
				if (++i >= n - 1)
					return false;
			} else if (c == '"') {
				return false;
			}
		}
		return true;
	}
	if (p[0] == '.' || p[n - 1] == '.')
		return false;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		if (!is_atext(c))
			return false;
		if (c >= 0x80)
			*eight_bit = true;
		if (c == '.' && p[i + 1] == '.')
			return false;
	}
	return true;
}

static bool
domain_ok(const char *p, size_t n, bool *eight_bit)
{
	size_t i, label = 0;

	if (n == 0 || n > 255)
		return false;
	if (p[0] == '[') {
		/* Address literal: [1.2.3.4] or [IPv6:...]; kept as text. */
		if (p[n - 1] != ']' || n < 3)
			return false;
		for (i = 1; i < n - 1; i++)
			if (!isalnum((unsigned char)p[i]) && p[i] != '.' &&
			    p[i] != ':')
				return false;
		return true;
	}
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		if (c >= 0x80)
			*eight_bit = true;
		else if (!isalnum(c) && c != '-' && c != '_')
			return false;
		if (++label > 63)
			return false;
	}
	return label > 0 || n > 1;
}

bool
smtp_address_ok(const char *addr, bool allow_postmaster, bool *eight_bit)
{
	const char *at;
	size_t n = strlen(addr);

	*eight_bit = false;
	if (n == 0 || n > SMTP_PATH_MAX)
		return false;
	if (allow_postmaster && strcasecmp(addr, "postmaster") == 0)
		return true;
	at = strrchr(addr, '@');
	if (at == NULL)
		return false;
	return local_part_ok(addr, (size_t)(at - addr), eight_bit) &&
	    domain_ok(at + 1, n - (size_t)(at - addr) - 1, eight_bit);
}

enum smtp_path_result
smtp_parse_path(char *arg, const char *keyword, bool allow_empty,
    bool utf8_ok, char **addr, char **params)
{
	size_t kl = strlen(keyword);
	char *p, *end, *colon;
	bool quoted = false, eight_bit;

	if (strncasecmp(arg, keyword, kl) != 0)
		return SMTP_PATH_SYNTAX;
	p = arg + kl;
	while (*p == ' ')	/* "MAIL FROM: <a@b>" is common; tolerate */
		p++;
	if (*p != '<')
		return SMTP_PATH_SYNTAX;
	p++;
	/* Find the closing bracket, skipping quoted strings. */
	for (end = p; *end; end++) {
		if (*end == '\\' && quoted && end[1]) {
			end++;
			continue;
		}
		if (*end == '"')
			quoted = !quoted;
		else if (*end == '>' && !quoted)
			break;
	}
	if (*end != '>')
		return SMTP_PATH_SYNTAX;
	*end = '\0';
	if (end[1] != '\0' && end[1] != ' ')
		return SMTP_PATH_SYNTAX;
	*params = end + 1;
	while (**params == ' ')
		(*params)++;
	/* RFC 5321 4.1.2: source routes "@a,@b:" are to be ignored. */
	if (*p == '@' && (colon = strchr(p, ':')) != NULL)
		p = colon + 1;
	*addr = p;
	if (*p == '\0')
		return allow_empty ? SMTP_PATH_OK : SMTP_PATH_BAD_ADDR;
	if (!smtp_address_ok(p, !allow_empty, &eight_bit))
		return SMTP_PATH_BAD_ADDR;
	if (eight_bit && !utf8_ok)
		return SMTP_PATH_NEEDS_UTF8;
	if (eight_bit && !smtp_utf8_valid(p, strlen(p)))
		return SMTP_PATH_BAD_UTF8;
	return SMTP_PATH_OK;
}

bool
smtp_utf8_valid(const char *p, size_t n)
{
	const unsigned char *s = (const unsigned char *)p;
	size_t i = 0, k, len;
	uint32_t cp, min;

	while (i < n) {
		if (s[i] < 0x80) {
			i++;
			continue;
		}
		if (s[i] >= 0xc2 && s[i] <= 0xdf) {
			len = 2, cp = s[i] & 0x1f, min = 0x80;
		} else if (s[i] >= 0xe0 && s[i] <= 0xef) {
			len = 3, cp = s[i] & 0x0f, min = 0x800;
		} else if (s[i] >= 0xf0 && s[i] <= 0xf4) {
			len = 4, cp = s[i] & 0x07, min = 0x10000;
		} else {
			return false;	/* continuation byte, C0, C1, F5..FF */
		}
		if (n - i < len)
			return false;
		for (k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += len;
	}
	return true;
}

bool
smtp_next_param(char **cursor, char **key, char **val)
{
	char *p = *cursor, *eq;

	while (*p == ' ')
		p++;
	if (*p == '\0') {
		*cursor = p;
		return false;
	}
	*key = p;
	while (*p && *p != ' ')
		p++;
	if (*p)
		*p++ = '\0';
	*cursor = p;
	eq = strchr(*key, '=');
	if (eq != NULL) {
		*eq = '\0';
		*val = eq + 1;
	} else {
		*val = NULL;
	}
	return true;
}

bool
smtp_parse_u64(const char *s, unsigned long long *out)
{
	unsigned long long v = 0;

	if (*s == '\0')
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		if (v > (~0ULL - 9) / 10)
			return false;
		v = v * 10 + (unsigned)(*s - '0');
	}
	*out = v;
	return true;
}
