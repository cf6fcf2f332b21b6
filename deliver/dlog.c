/*
 * dlog.c - the delivery log line and its writer; see dlog.h.
 *
 * Purpose: format one delivery attempt as a JSON line and append batches
 * of lines to a file.
 *
 * Contract: see dlog.h. dlog_format() runs per recipient at tens of
 * thousands of lines a second, so it writes the line straight into the
 * caller's buffer: one reservation per field, strings escaped in one pass
 * that also replaces bytes that are not UTF-8, numbers without printf,
 * and the date and time of day formatted once a second per thread. The
 * bytes are those jansson wrote when it built these lines (the same
 * escapes, the same real-number form); tests/unit/t_dlog.c holds the two
 * side by side over a corpus of awkward strings and prints the cost per
 * line.
 *
 * Diagnostics: -ENOMEM when the buffer cannot grow, -EINVAL for a status
 * outside the enum; write errors as -errno.
 */
#include "dlog.h"

#include "../lib/wback.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* "2024-01-02T03:04:05.123456Z" is 27; room for what the compiler
 * thinks %d of an int may print. */
#define DLOG_TS_SIZE		80
/* Delays are printed to the millisecond and capped here. */
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

/*
 * The line under construction. Each field reserves its worst case first
 * (a byte of a string becomes at most 6: "\u001F"), so the writers below
 * never check bounds; the first failed reservation is sticky and the
 * caller cuts the line back.
 */
struct dlog_w {
	struct buf *b;
	int err;
};

/* Worst case of a key's frame: ,"key": and the value's quotes. */
#define DLOG_KEY_FRAME		8
/* An integer or a delay: 20 digits, sign, point, three decimals. */
#define DLOG_NUM_MAX		32

static bool
dlog_room(struct dlog_w *w, size_t n)
{
	if (w->err == 0 && buf_reserve(w->b, n) < 0)
		w->err = -ENOMEM;
	return w->err == 0;
}

static void
dlog_raw(struct dlog_w *w, const char *s, size_t n)
{
	memcpy(w->b->data + w->b->len, s, n);
	w->b->len += n;
}

/* ,"key": (no comma before the first key); room already reserved. */
static void
dlog_key(struct dlog_w *w, const char *key, size_t klen)
{
	char *p = w->b->data + w->b->len;

	if (w->b->data[w->b->len - 1] != '{')
		*p++ = ',';
	*p++ = '"';
	memcpy(p, key, klen);
	p += klen;
	*p++ = '"';
	*p++ = ':';
	w->b->len = (size_t)(p - w->b->data);
}

/*
 * s[0..n) as the inside of a JSON string, the way jansson wrote it before:
 * quotes and backslashes escaped, \b \f \n \r \t short, other bytes below
 * 0x20 as \u00XX (upper-case hex), DEL and '/' as they are, well-formed
 * UTF-8 as it is, and every byte that does not start a well-formed
 * sequence as U+FFFD. dst holds 6 * n bytes; returns the length written.
 */
static size_t
dlog_escape(const char *s, size_t n, char *dst)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, o = 0, k;
	unsigned char c;

	while (i < n) {
		c = p[i];
		if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
			dst[o++] = (char)c;
			i++;
			continue;
		}
		if (c >= 0x80) {
			if ((k = dlog_utf8_len(p + i, n - i)) == 0) {
				memcpy(dst + o, "\xef\xbf\xbd", 3);
				o += 3;
				i++;
			} else {
				memcpy(dst + o, s + i, k);
				o += k;
				i += k;
			}
			continue;
		}
		dst[o++] = '\\';
		switch (c) {
		case '"':  dst[o++] = '"'; break;
		case '\\': dst[o++] = '\\'; break;
		case '\b': dst[o++] = 'b'; break;
		case '\f': dst[o++] = 'f'; break;
		case '\n': dst[o++] = 'n'; break;
		case '\r': dst[o++] = 'r'; break;
		case '\t': dst[o++] = 't'; break;
		default:
			memcpy(dst + o, "u00", 3);
			dst[o + 3] = hex[c >> 4];
			dst[o + 4] = hex[c & 15];
			o += 5;
			break;
		}
		i++;
	}
	return o;
}

/* "key":"s" (escaped); NULL leaves the key out, "" is kept. */
static void
dlog_str(struct dlog_w *w, const char *key, const char *s)
{
	size_t klen, n;

	if (s == NULL)
		return;
	klen = strlen(key);
	n = strlen(s);
	if (n > (SIZE_MAX - DLOG_KEY_FRAME - klen) / 6) {
		w->err = -ENOMEM;
		return;
	}
	if (!dlog_room(w, DLOG_KEY_FRAME + klen + 6 * n))
		return;
	dlog_key(w, key, klen);
	w->b->data[w->b->len++] = '"';
	w->b->len += dlog_escape(s, n, w->b->data + w->b->len);
	w->b->data[w->b->len++] = '"';
}

/* "key":v; 0 leaves the key out (every integer field means "none"). */
static void
dlog_int(struct dlog_w *w, const char *key, int64_t v)
{
	char num[DLOG_NUM_MAX], *end = num + sizeof(num), *p;
	size_t klen = strlen(key);

	if (v == 0 || !dlog_room(w, DLOG_KEY_FRAME + klen + DLOG_NUM_MAX))
		return;
	p = dec_digits(v < 0 ? 0 - (uint64_t)v : (uint64_t)v, end);
	if (v < 0)
		*--p = '-';
	dlog_key(w, key, klen);
	dlog_raw(w, p, (size_t)(end - p));
}

/*
 * "key":seconds from a count of milliseconds, printed as jansson printed
 * the double ms / 1000 at 12 significant digits: no trailing zeros, and
 * ".0" when there is no fraction ("1.235", "2.0", "0.0").
 */
static void
dlog_ms(struct dlog_w *w, const char *key, int64_t ms)
{
	char num[DLOG_NUM_MAX], *end = num + sizeof(num), *p;
	size_t klen = strlen(key);
	unsigned frac;

	assert(ms >= 0 && ms <= (int64_t)(DLOG_DELAY_MAX_S * 1000));
	if (!dlog_room(w, DLOG_KEY_FRAME + klen + DLOG_NUM_MAX))
		return;
	frac = (unsigned)(ms % 1000);
	if (frac == 0) {
		end -= 2;
		memcpy(end, ".0", 2);
	} else {
		/* Three decimals, trailing zeros dropped. */
		char d[3] = { (char)('0' + frac / 100),
		    (char)('0' + frac / 10 % 10), (char)('0' + frac % 10) };
		size_t nd = d[2] != '0' ? 3 : d[1] != '0' ? 2 : 1;

		end -= nd;
		memcpy(end, d, nd);
		*--end = '.';
	}
	p = dec_digits((uint64_t)ms / 1000, end);
	/* 1e9 s, the cap, is the only value of 10 integer digits, and it
	 * has no fraction: 12 significant digits always suffice. */
	dlog_key(w, key, klen);
	dlog_raw(w, p, (size_t)(num + sizeof(num) - p));
}

/*
 * The timestamp's "YYYY-MM-DDTHH:MM:SS" is the same for every line of a
 * second: each thread keeps the last one it formatted (one for "ts", one
 * for "next", which differ), so gmtime and printf run once a second, not
 * once a line.
 */
struct dlog_tscache {
	uint64_t sec;
	bool valid;
	char head[DLOG_TS_SIZE];
	size_t len;
};

static _Thread_local struct dlog_tscache dlog_ts_now, dlog_ts_next;

/* "key":"<RFC 3339 UTC with microseconds>" */
static void
dlog_time(struct dlog_w *w, const char *key, uint64_t us,
    struct dlog_tscache *c)
{
	uint64_t sec = us / 1000000;
	unsigned frac = (unsigned)(us % 1000000);
	size_t klen = strlen(key);
	char *p;

	if (!c->valid || c->sec != sec) {
		time_t t = (time_t)sec;
		struct tm tm;
		int n;

		if (gmtime_r(&t, &tm) == NULL)
			memset(&tm, 0, sizeof(tm));
		n = snprintf(c->head, sizeof(c->head),
		    "%04d-%02d-%02dT%02d:%02d:%02d",
		    (tm.tm_year + 1900) % 10000, tm.tm_mon + 1, tm.tm_mday,
		    tm.tm_hour, tm.tm_min, tm.tm_sec);
		assert(n > 0 && (size_t)n < sizeof(c->head));
		c->len = (size_t)n;
		c->sec = sec;
		c->valid = true;
	}
	if (!dlog_room(w, DLOG_KEY_FRAME + klen + c->len + 8))
		return;
	dlog_key(w, key, klen);
	p = w->b->data + w->b->len;
	*p++ = '"';
	memcpy(p, c->head, c->len);
	p += c->len;
	*p++ = '.';
	for (int i = 5; i >= 0; i--, frac /= 10)
		p[i] = (char)('0' + frac % 10);
	p += 6;
	*p++ = 'Z';
	*p++ = '"';
	w->b->len = (size_t)(p - w->b->data);
}

int
dlog_format(struct buf *out, const struct dlog_entry *e)
{
	struct dlog_w w = { .b = out };
	const char *status;
	size_t saved;
	double delay;
	int64_t ms;

	assert(out != NULL);
	assert(e != NULL);
	if ((status = dlog_status_name(e->status)) == NULL)
		return -EINVAL;

	/* A clock step back or a NaN is no reason to lose the line. */
	delay = e->delay_s;
	if (!(delay >= 0))
		delay = 0;
	if (delay > DLOG_DELAY_MAX_S)
		delay = DLOG_DELAY_MAX_S;
	ms = (int64_t)(delay * 1000.0 + 0.5);

	saved = out->len;
	if (!dlog_room(&w, 2))
		return w.err;
	out->data[out->len++] = '{';
	/* One line per key, in the order of docs/delivery-log.md; string
	 * and integer fields that are NULL or 0 are left out. */
	dlog_time(&w, "ts", e->time_us, &dlog_ts_now);
	dlog_str(&w, "qid", e->queue_id);
	dlog_str(&w, "from", e->sender);
	dlog_str(&w, "to", e->rcpt);
	dlog_str(&w, "status", status);
	dlog_str(&w, "dest", e->destination);
	dlog_str(&w, "transport", e->transport);
	dlog_str(&w, "mx", e->mx);
	dlog_str(&w, "addr", e->addr);
	dlog_str(&w, "tls", e->tls);
	dlog_str(&w, "tls_verify", e->tls_verify);
	dlog_str(&w, "tls_auth", e->tls_auth);
	dlog_str(&w, "tlsa", e->tlsa);
	dlog_str(&w, "tls_policy", e->tls_policy);
	dlog_int(&w, "code", e->code);
	dlog_str(&w, "enhanced", e->enhanced);
	dlog_str(&w, "text", e->text);
	dlog_int(&w, "attempt", e->attempt);
	dlog_ms(&w, "delay", ms);
	if (e->next_try_us != 0)
		dlog_time(&w, "next", e->next_try_us, &dlog_ts_next);
	dlog_str(&w, "dsn_qid", e->dsn_queue_id);
	dlog_int(&w, "size", e->size);
	if (w.err == 0 && dlog_room(&w, 2)) {
		out->data[out->len++] = '}';
		out->data[out->len++] = '\n';
	}
	if (w.err != 0)
		out->len = saved;
	return w.err;
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
	wback_add(fd);
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
	wback_wrote(off);
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
