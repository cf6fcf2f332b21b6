/*
 * dlog.c - the delivery log line and its writer; see dlog.h.
 *
 * Purpose: format one delivery attempt as a JSON line (jansson builds and
 * escapes it; nothing here writes JSON syntax by hand) and append batches
 * of lines to a file.
 *
 * Contract: see dlog.h. dlog_format() runs per recipient at tens of
 * thousands of lines a second, so it keeps the work small: keys are
 * literals set without jansson's key check, strings are checked for UTF-8
 * once here (an ASCII fast path) and handed over without a second check,
 * and the object is dumped straight into the caller's buffer (one retry
 * with the exact size if it did not fit). tests/unit/t_dlog.c prints the
 * cost per line.
 *
 * Diagnostics: -ENOMEM when jansson or the buffer cannot allocate,
 * -EINVAL for a status outside the enum; write errors as -errno.
 */
#include "dlog.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Enough for a typical line, so one dump does it. */
#define DLOG_LINE_GUESS		512
/* Repairs of strings up to this many bytes happen on the stack. */
#define DLOG_FIX_STACK		1024
/* "2024-01-02T03:04:05.123456Z" is 27; room for what the compiler
 * thinks %d of an int may print. */
#define DLOG_TS_SIZE		80
/* Delays are printed to the millisecond; 12 digits cover 31 years. */
#define DLOG_REAL_DIGITS	12
#define DLOG_DELAY_MAX_S	1e9

static const char *const dlog_names[] = {
	[DLOG_DELIVERED] = "delivered",
	[DLOG_DEFERRED] = "deferred",
	[DLOG_BOUNCED] = "bounced",
	[DLOG_EXPIRED] = "expired",
	[DLOG_DISCARDED] = "discarded",
};

const char *
dlog_status_name(enum dlog_status s)
{
	if ((unsigned)s >= sizeof(dlog_names) / sizeof(dlog_names[0]))
		return NULL;
	return dlog_names[s];
}

/*
 * Length of the well-formed UTF-8 sequence at s (n > 0 bytes left), or 0
 * if s does not start one (RFC 3629 section 4: no overlong forms, no
 * surrogates, nothing above U+10FFFF).
 */
static size_t
dlog_utf8_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		return n >= 2 && (s[1] & 0xc0) == 0x80 ? 2 : 0;
	if (c >= 0xe0 && c <= 0xef) {
		if (n < 3 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80)
			return 0;
		if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f))
			return 0;
		return 3;
	}
	if (c >= 0xf0 && c <= 0xf4) {
		if (n < 4 || (s[1] & 0xc0) != 0x80 ||
		    (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80)
			return 0;
		if ((c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] > 0x8f))
			return 0;
		return 4;
	}
	return 0;
}

/* Byte length of s, and whether all of it is well-formed UTF-8. */
static size_t
dlog_scan(const char *s, bool *valid)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, n, k;

	while (p[i] != '\0' && p[i] < 0x80)
		i++;
	if (p[i] == '\0') {
		*valid = true;
		return i;
	}
	n = i + strlen(s + i);
	*valid = true;
	while (i < n) {
		if ((k = dlog_utf8_len(p + i, n - i)) == 0) {
			*valid = false;
			return n;
		}
		i += k;
	}
	return n;
}

/* s[0..n) with every byte that does not start a well-formed sequence
 * replaced by U+FFFD (EF BF BD); dst holds at least 3 * n bytes. */
static size_t
dlog_repair(const char *s, size_t n, char *dst)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, o = 0, k;

	while (i < n) {
		if ((k = dlog_utf8_len(p + i, n - i)) == 0) {
			memcpy(dst + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		} else {
			memcpy(dst + o, s + i, k);
			o += k;
			i += k;
		}
	}
	return o;
}

/* A jansson string for s, repaired when it is not UTF-8. NULL: ENOMEM. */
static json_t *
dlog_string(const char *s)
{
	char stack[DLOG_FIX_STACK], *fix;
	bool valid;
	size_t n = dlog_scan(s, &valid), m;
	json_t *j;

	if (valid)
		return json_stringn_nocheck(s, n);
	if (n > SIZE_MAX / 3)
		return NULL;
	fix = n * 3 <= sizeof(stack) ? stack : malloc(n * 3);
	if (fix == NULL)
		return NULL;
	m = dlog_repair(s, n, fix);
	j = json_stringn_nocheck(fix, m);
	if (fix != stack)
		free(fix);
	return j;
}

/* RFC 3339 UTC with microseconds; returns the length. */
static size_t
dlog_ts(uint64_t us, char out[DLOG_TS_SIZE])
{
	time_t t = (time_t)(us / 1000000);
	struct tm tm;
	int n;

	if (gmtime_r(&t, &tm) == NULL)
		memset(&tm, 0, sizeof(tm));
	n = snprintf(out, DLOG_TS_SIZE, "%04d-%02d-%02dT%02d:%02d:%02d.%06uZ",
	    (tm.tm_year + 1900) % 10000, tm.tm_mon + 1, tm.tm_mday,
	    tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(us % 1000000));
	assert(n > 0 && n < DLOG_TS_SIZE);
	return (size_t)n;
}

/* Sticky: after the first failure the later sets are skipped. */
static void
dlog_set(json_t *o, const char *key, json_t *v, int *err)
{
	if (*err != 0) {
		json_decref(v);
		return;
	}
	if (v == NULL || json_object_set_new_nocheck(o, key, v) != 0)
		*err = -ENOMEM;
}

static void
dlog_set_str(json_t *o, const char *key, const char *s, int *err)
{
	if (s != NULL && *err == 0)
		dlog_set(o, key, dlog_string(s), err);
}

static void
dlog_set_int(json_t *o, const char *key, json_int_t v, int *err)
{
	if (v != 0 && *err == 0)
		dlog_set(o, key, json_integer(v), err);
}

int
dlog_format(struct buf *out, const struct dlog_entry *e)
{
	const size_t flags = JSON_COMPACT | JSON_PRESERVE_ORDER |
	    JSON_REAL_PRECISION(DLOG_REAL_DIGITS);
	const char *status;
	char ts[DLOG_TS_SIZE];
	size_t tslen;
	double delay;
	size_t n, saved;
	json_t *o;
	int err = 0;

	assert(out != NULL);
	assert(e != NULL);
	if ((status = dlog_status_name(e->status)) == NULL)
		return -EINVAL;
	if ((o = json_object()) == NULL)
		return -ENOMEM;

	tslen = dlog_ts(e->time_us, ts);
	/* A clock step back or a NaN is no reason to lose the line. */
	delay = e->delay_s;
	if (!(delay >= 0))
		delay = 0;
	if (delay > DLOG_DELAY_MAX_S)
		delay = DLOG_DELAY_MAX_S;
	delay = (double)(int64_t)(delay * 1000.0 + 0.5) / 1000.0;

	dlog_set(o, "ts", json_stringn_nocheck(ts, tslen), &err);
	dlog_set_str(o, "qid", e->queue_id, &err);
	dlog_set_str(o, "from", e->sender, &err);
	dlog_set_str(o, "to", e->rcpt, &err);
	dlog_set(o, "status", json_string_nocheck(status), &err);
	dlog_set_str(o, "dest", e->destination, &err);
	dlog_set_str(o, "transport", e->transport, &err);
	dlog_set_str(o, "mx", e->mx, &err);
	dlog_set_str(o, "addr", e->addr, &err);
	dlog_set_str(o, "tls", e->tls, &err);
	dlog_set_str(o, "tls_verify", e->tls_verify, &err);
	dlog_set_str(o, "tls_auth", e->tls_auth, &err);
	dlog_set_str(o, "tlsa", e->tlsa, &err);
	dlog_set_int(o, "code", e->code, &err);
	dlog_set_str(o, "enhanced", e->enhanced, &err);
	dlog_set_str(o, "text", e->text, &err);
	dlog_set_int(o, "attempt", e->attempt, &err);
	dlog_set(o, "delay", json_real(delay), &err);
	if (e->next_try_us != 0 && err == 0) {
		char next[DLOG_TS_SIZE];
		size_t nextlen = dlog_ts(e->next_try_us, next);

		dlog_set(o, "next", json_stringn_nocheck(next, nextlen), &err);
	}
	dlog_set_str(o, "dsn_qid", e->dsn_queue_id, &err);
	dlog_set_int(o, "size", e->size, &err);
	if (err != 0)
		goto done;

	saved = out->len;
	if ((err = buf_reserve(out, DLOG_LINE_GUESS)) < 0)
		goto done;
	n = json_dumpb(o, out->data + out->len, out->cap - out->len, flags);
	if (n == 0) {
		err = -ENOMEM;
		goto done;
	}
	if (n + 1 > out->cap - out->len) {
		if ((err = buf_reserve(out, n + 1)) < 0)
			goto done;
		if (json_dumpb(o, out->data + out->len, out->cap - out->len,
		    flags) != n) {
			out->len = saved;
			err = -ENOMEM;
			goto done;
		}
	}
	out->len += n;
	out->data[out->len++] = '\n';
done:
	json_decref(o);
	return err;
}

int
dlog_open(struct dlog *d, const char *path)
{
	int fd;

	assert(d != NULL);
	memset(d, 0, sizeof(*d));
	if (path == NULL || path[0] == '\0')
		return -EINVAL;
	if (strcmp(path, "-") == 0) {
		d->fd = STDERR_FILENO;
		d->open = true;
		return 0;
	}
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0)
		return -errno;
	d->fd = fd;
	d->open = true;
	d->owned = true;
	return 0;
}

int
dlog_write(struct dlog *d, struct buf *b)
{
	size_t off = 0;
	ssize_t n;
	int err = 0;

	assert(d != NULL);
	assert(b != NULL);
	if (!d->open) {
		buf_reset(b);
		return -EBADF;
	}
	while (off < b->len) {
		n = write(d->fd, b->data + off, b->len - off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			err = -errno;
			break;
		}
		if (n == 0) {
			err = -EIO;	/* cannot happen for a file */
			break;
		}
		off += (size_t)n;
	}
	buf_reset(b);
	return err;
}

void
dlog_close(struct dlog *d)
{
	assert(d != NULL);
	if (d->open && d->owned)
		close(d->fd);
	memset(d, 0, sizeof(*d));
}
