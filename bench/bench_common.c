/*
 * bench_common.c - see bench_common.h.
 */
#include "bench_common.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "../lib/net.h"

bool
bench_header_parse(const char *msg, size_t len, uint64_t *sent_us, char *id,
    size_t idlen)
{
	static const char name[] = BENCH_HEADER ":";
	const size_t nl = sizeof(name) - 1;
	const char *p = msg, *end = msg + len, *eol, *v, *s;
	size_t n;

	while (p < end) {
		eol = memchr(p, '\n', (size_t)(end - p));
		if (eol == NULL)
			eol = end;
		if (eol == p || (eol == p + 1 && *p == '\r'))
			return false;		/* end of the header section */
		if ((size_t)(eol - p) > nl && strncasecmp(p, name, nl) == 0)
			break;
		p = eol + 1;
	}
	if (p >= end)
		return false;
	/* The value runs to the end of the line; no folding is produced. */
	v = p + nl;
	while (v < eol && (*v == ' ' || *v == '\t'))
		v++;
	if ((size_t)(eol - v) < 4 || strncmp(v, "id=", 3) != 0)
		return false;
	v += 3;
	for (s = v; s < eol && *s != ';'; s++)
		;
	n = (size_t)(s - v);
	if (s >= eol || n == 0 || n >= idlen)
		return false;
	memcpy(id, v, n);
	id[n] = '\0';
	for (s++; s < eol && *s == ' '; s++)
		;
	if ((size_t)(eol - s) < 6 || strncmp(s, "sent=", 5) != 0)
		return false;
	s += 5;
	if (!isdigit((unsigned char)*s))
		return false;
	*sent_us = 0;
	for (; s < eol && isdigit((unsigned char)*s); s++) {
		if (*sent_us > (UINT64_MAX - 9) / 10)
			return false;
		*sent_us = *sent_us * 10 + (uint64_t)(*s - '0');
	}
	return true;
}

bool
bench_parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	uint64_t mul = 1;

	if (!isdigit((unsigned char)*s))
		return false;
	v = strtoull(s, &end, 10);
	switch (*end) {
	case '\0':
		break;
	case 'k': case 'K':
		mul = 1024;
		end++;
		break;
	case 'm': case 'M':
		mul = 1024 * 1024;
		end++;
		break;
	case 'g': case 'G':
		mul = 1024ull * 1024 * 1024;
		end++;
		break;
	default:
		return false;
	}
	if (*end != '\0' || v > UINT64_MAX / mul)
		return false;
	*out = v * mul;
	return true;
}

bool
bench_parse_duration(const char *s, uint64_t *out_us)
{
	char *end;
	double v;
	double mul = 1e6;

	if (!isdigit((unsigned char)*s))
		return false;
	v = strtod(s, &end);
	if (strcmp(end, "ms") == 0)
		mul = 1e3;
	else if (strcmp(end, "s") == 0 || *end == '\0')
		mul = 1e6;
	else if (strcmp(end, "m") == 0)
		mul = 60e6;
	else if (strcmp(end, "h") == 0)
		mul = 3600e6;
	else if (strcmp(end, "us") == 0)
		mul = 1;
	else
		return false;
	if (v < 0 || v * mul > 1e15)
		return false;
	*out_us = (uint64_t)(v * mul + 0.5);
	return true;
}

bool
bench_parse_percent(const char *s, uint32_t *out_ppm)
{
	char *end;
	double v;

	if (!isdigit((unsigned char)*s))
		return false;
	v = strtod(s, &end);
	if (strcmp(end, "%") != 0 || v < 0 || v > 100)
		return false;
	*out_ppm = (uint32_t)(v * 10000.0 + 0.5);
	return true;
}

bool
bench_parse_hostport(const char *s, struct sockaddr_storage *sa,
    socklen_t *len)
{
	return address_parse(s, sa, len) == 0;
}
