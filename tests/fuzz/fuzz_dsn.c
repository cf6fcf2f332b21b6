/*
 * fuzz_dsn.c - libFuzzer target: arbitrary envelopes, reply texts and
 * original messages through the DSN builder, deliver/dsn.c's dsn_build().
 *
 * Description: the first 17 input bytes are flags (bit 0: expired; bit 1:
 * "sane" - a valid reporting MTA, queue id and statuses replace what the
 * input gives, so that most runs get past argument checks; bits 2-3: one
 * to four recipients), then now, arrival and last-attempt times. The rest,
 * split at 0xFE bytes, gives reporting MTA, queue id, sender, received
 * from, then per recipient address, ORCPT, status, remote MTA and
 * diagnostic (an empty optional field is NULL), and last the original
 * message (all that is left, 0xFE bytes included).
 *
 * Properties checked beyond "no crash":
 * - -EINVAL exactly when an argument is invalid by dsn.h's rules (checked
 *   here independently), with the buffer as it was;
 * - what is appended is a well-formed message: no NUL, every line ends in
 *   CRLF (no bare CR or LF), no line over 998 octets, a header section of
 *   "Name: value" fields and non-blank continuation lines, and From, To,
 *   Subject, Date, Message-ID, MIME-Version, Auto-Submitted and
 *   Content-Type present exactly once;
 * - the multipart/report structure holds: the boundary of Content-Type
 *   occurs only as the three delimiter lines and the closing one, which
 *   is the last line; the parts are text/plain, message/delivery-status
 *   and text/rfc822-headers in that order;
 * - the delivery-status part is 7-bit ASCII, groups of fields as above,
 *   with one Final-Recipient, "Action: failed" and "Status: " line per
 *   recipient, in order;
 * - the human part is valid UTF-8; the body carries 8-bit bytes only if
 *   some input did, and then the header section says
 *   Content-Transfer-Encoding: 8bit; the header section only if the
 *   sender did;
 * - the third part is the original's header section, unchanged except
 *   for line ends, NUL as '?' and folding of long lines.
 */
#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../deliver/dsn.h"
#include "fuzz_util.h"

#define RCPT_MAX	4
#define NFIELDS		(4 + 5 * RCPT_MAX)

struct line {
	const char *p;
	size_t n;		/* without the CRLF */
};

struct lines {
	struct line *l;
	size_t n;
};

static bool
has_8bit(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] >= 0x80)
			return true;
	return false;
}

/* ---- the rules of dsn.h, written out again ------------------------- */

static bool
valid_host(const char *h)
{
	size_t n = h ? strlen(h) : 0;

	if (n == 0 || n > 255)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!strchr("abcdefghijklmnopqrstuvwxyz"
		    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:[]", h[i]))
			return false;
	return true;
}

static bool
valid_qid(const char *q)
{
	if (q == NULL || strlen(q) != 16)
		return false;
	for (int i = 0; i < 16; i++)
		if (!strchr("0123456789abcdefABCDEF", q[i]))
			return false;
	return true;
}

/* 1 to 3 digits at *s, advancing it. */
static bool
digits13(const char **s)
{
	int n = 0;

	while (n < 4 && **s >= '0' && **s <= '9')
		(*s)++, n++;
	return n >= 1 && n <= 3;
}

/* A 4.x.x or 5.x.x enhanced status code, nothing after it. */
static bool
valid_failure_status(const char *s)
{
	if (s == NULL || (s[0] != '4' && s[0] != '5') || s[1] != '.')
		return false;
	s += 2;
	if (!digits13(&s) || *s++ != '.' || !digits13(&s))
		return false;
	return *s == '\0';
}

/* ---- output checks ---------------------------------------------------- */

/* Every line ends in CRLF, no bare CR or LF, no NUL, none too long. */
static void
split_lines(const char *s, size_t n, struct lines *out)
{
	size_t i = 0, start = 0;

	out->l = malloc((n / 2 + 1) * sizeof(*out->l));
	out->n = 0;
	assert(out->l != NULL);
	assert(n >= 2 && s[n - 2] == '\r' && s[n - 1] == '\n');
	assert(memchr(s, '\0', n) == NULL);
	for (i = 0; i < n; i++) {
		if (s[i] == '\r') {
			assert(i + 1 < n && s[i + 1] == '\n');
			assert(i - start <= DSN_LINE_MAX);
			out->l[out->n].p = s + start;
			out->l[out->n++].n = i - start;
			start = i + 2;
			i++;
		} else {
			assert(s[i] != '\n');
		}
	}
	assert(start == n);
}

static bool
line_is(const struct line *l, const char *s)
{
	return l->n == strlen(s) && memcmp(l->p, s, l->n) == 0;
}

static bool
line_starts(const struct line *l, const char *s)
{
	return l->n >= strlen(s) && memcmp(l->p, s, strlen(s)) == 0;
}

static bool
blank(const struct line *l)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->p[i] != ' ' && l->p[i] != '\t')
			return false;
	return true;
}

/*
 * Lines [from, to) as a header section (RFC 5322 section 2.2): fields
 * "Name: value", continuations starting with a space or tab that are not
 * blank. Returns how many fields are named name.
 */
static unsigned
check_fields(const struct lines *ls, size_t from, size_t to, const char *name)
{
	unsigned count = 0;

	for (size_t i = from; i < to; i++) {
		const struct line *l = &ls->l[i];
		const char *colon;

		assert(l->n > 0);
		if (l->p[0] == ' ' || l->p[0] == '\t') {
			assert(i > from && !blank(l));
			continue;
		}
		colon = memchr(l->p, ':', l->n);
		assert(colon != NULL && colon > l->p);
		for (const char *c = l->p; c < colon; c++)
			assert(*c > ' ' && *c < 0x7f);
		if (name != NULL && (size_t)(colon - l->p) == strlen(name) &&
		    memcmp(l->p, name, strlen(name)) == 0)
			count++;
	}
	return count;
}

/* Index of the first empty line at or after from. */
static size_t
empty_after(const struct lines *ls, size_t from)
{
	while (from < ls->n && ls->l[from].n != 0)
		from++;
	assert(from < ls->n);
	return from;
}

/*
 * s without every "\r\n " (a fold, ours or the original's) - so that the
 * original's header section and the third part compare equal however
 * long lines were folded.
 */
static size_t
unfold(char *s, size_t n)
{
	size_t i, o = 0;

	for (i = 0; i < n; i++) {
		if (i + 2 < n && s[i] == '\r' && s[i + 1] == '\n' &&
		    s[i + 2] == ' ') {
			i += 2;
			continue;
		}
		s[o++] = s[i];
	}
	return o;
}

/* The original's header section as the DSN must return it, unfolded. */
static char *
orig_headers(const uint8_t *p, size_t len, size_t *outlen)
{
	char *out = malloc(len * 2 + 2);
	size_t i = 0, o = 0, j;

	assert(out != NULL);
	while (i < len) {
		for (j = i; j < len && p[j] != '\r' && p[j] != '\n'; j++)
			;
		if (j == i)
			break;
		for (; i < j; i++)
			out[o++] = p[i] ? (char)p[i] : '?';
		out[o++] = '\r';
		out[o++] = '\n';
		if (j < len)
			i = p[j] == '\r' && j + 1 < len && p[j + 1] == '\n' ?
			    j + 2 : j + 1;
	}
	*outlen = unfold(out, o);
	return out;
}

static void
check_dsn(const char *s, size_t n, const struct dsn_info *info,
    const struct dsn_rcpt *rcpts, size_t nrcpt, const uint8_t *orig,
    size_t orig_len, bool input_8bit)
{
	static const char *const once[] = { "From", "To", "Subject", "Date",
		"Message-ID", "MIME-Version", "Auto-Submitted",
		"Content-Type" };
	struct lines ls;
	size_t hend, i, delim[4], nd = 0, blen, k;
	char boundary[96], dl[100];
	const char *b, *q;
	bool cte8 = false;

	split_lines(s, n, &ls);
	hend = empty_after(&ls, 0);
	for (i = 0; i < sizeof(once) / sizeof(once[0]); i++)
		assert(check_fields(&ls, 0, hend, once[i]) == 1);
	for (i = 0; i < hend; i++)
		if (line_is(&ls.l[i], "Content-Transfer-Encoding: 8bit"))
			cte8 = true;
	/* The boundary, from the Content-Type field's continuation line. */
	for (i = 0; i < hend; i++)
		if (line_starts(&ls.l[i], "Content-Type: multipart/report;"))
			break;
	assert(i + 1 < hend);
	b = ls.l[i + 1].p;
	assert(line_starts(&ls.l[i + 1], "\tboundary=\""));
	b += 11;
	q = memchr(b, '"', ls.l[i + 1].n - 11);
	assert(q != NULL);
	blen = (size_t)(q - b);
	assert(blen > 0 && blen <= 70 && blen + 4 < sizeof(boundary));
	memcpy(boundary, b, blen);
	boundary[blen] = '\0';
	/* It occurs as the delimiters and nowhere else in the body. */
	snprintf(dl, sizeof(dl), "--%s", boundary);
	for (i = hend + 1; i < ls.n; i++) {
		const struct line *l = &ls.l[i];

		if (line_is(l, dl)) {
			assert(nd < 3);
			delim[nd++] = i;
		} else if (memmem(l->p, l->n, boundary, blen) != NULL) {
			assert(i == ls.n - 1 && l->n == blen + 4 &&
			    line_starts(l, dl) &&
			    memcmp(l->p + 2 + blen, "--", 2) == 0);
			delim[nd++] = i;
		}
	}
	assert(nd == 4 && delim[3] == ls.n - 1);

	/* Part 1: the human text. */
	{
		size_t ph = empty_after(&ls, delim[0] + 1);
		const char *from = ls.l[ph].p + 2, *to = ls.l[delim[1]].p;

		check_fields(&ls, delim[0] + 1, ph, NULL);
		assert(check_fields(&ls, delim[0] + 1, ph, "Content-Type") ==
		    1);
		assert(line_starts(&ls.l[delim[0] + 2],
		    "Content-Type: text/plain; charset=") ||
		    line_starts(&ls.l[delim[0] + 1],
		    "Content-Type: text/plain; charset="));
		assert(fz_utf8_valid(from, (size_t)(to - from)));
	}
	/* Part 2: the delivery status, ASCII, one group per recipient. */
	{
		size_t ph = empty_after(&ls, delim[1] + 1), r = 0;
		const char *from = ls.l[ph].p, *to = ls.l[delim[2]].p;
		char st[300];

		assert(line_is(&ls.l[ph - 1],
		    "Content-Type: message/delivery-status"));
		assert(!has_8bit(from, (size_t)(to - from)));
		/* Groups of fields (RFC 3464 section 2.1), each one a header
		 * section, separated by empty lines; the part's own CRLF last. */
		for (i = ph + 1; i + 1 < delim[2]; i = k + 1) {
			for (k = i; k + 1 < delim[2] && ls.l[k].n != 0; k++)
				;
			check_fields(&ls, i, k, NULL);
		}
		k = 0;
		for (i = ph + 1; i < delim[2]; i++) {
			const struct line *l = &ls.l[i];

			if (line_starts(l, "Final-Recipient: "))
				k++;
			if (line_is(l, "Action: failed"))
				assert(k == r + 1);
			if (line_starts(l, "Status: ")) {
				assert(r < nrcpt && k == r + 1);
				snprintf(st, sizeof(st), "Status: %s",
				    rcpts[r].status);
				assert(line_is(l, st));
				r++;
			}
		}
		assert(k == nrcpt && r == nrcpt);
		snprintf(st, sizeof(st), "Reporting-MTA: dns; %s",
		    info->reporting_mta);
		assert(line_is(&ls.l[ph + 1], st));
	}
	/* Part 3: the original's header section. */
	{
		size_t ph = empty_after(&ls, delim[2] + 1), wl, gl;
		const char *from = ls.l[ph].p + 2, *to = ls.l[delim[3]].p;
		char *want, *got;

		assert(line_is(&ls.l[delim[2] + 2],
		    "Content-Type: text/rfc822-headers"));
		want = orig_headers(orig, orig_len, &wl);
		/* The part ends with its own CRLF before the delimiter. */
		assert(to - from >= 2);
		gl = (size_t)(to - from) - 2;
		got = malloc(gl + 1);
		assert(got != NULL);
		memcpy(got, from, gl);
		gl = unfold(got, gl);
		/* (A section cut at DSN_HEADERS_MAX is not compared.) */
		if (wl <= DSN_HEADERS_MAX / 2)
			assert(gl == wl && memcmp(got, want, wl) == 0);
		free(want);
		free(got);
	}
	/* 8-bit in the header section only through the sender (To:). */
	if (has_8bit(s, (size_t)(ls.l[hend].p - s)))
		assert(has_8bit(info->sender, strlen(info->sender)));
	if (has_8bit(ls.l[hend].p, n - (size_t)(ls.l[hend].p - s)))
		assert(input_8bit && cte8);
	free(ls.l);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *field[NFIELDS] = { NULL };
	char *copy = NULL;
	struct dsn_info info;
	struct dsn_rcpt rcpts[RCPT_MAX];
	struct buf out = { 0 };
	size_t m, p = 0, nrcpt, prefix, orig_len, i;
	const uint8_t *orig;
	bool sane, valid, in8 = false;
	int rc;

	if (size < 17)
		return 0;
	sane = data[0] & 2;
	nrcpt = 1 + ((data[0] >> 2) & 3);
	/* Fields: a copy, each 0xFE made a NUL; the original is the rest. */
	m = size - 17;
	copy = malloc(m + 1);
	assert(copy != NULL);
	memcpy(copy, data + 17, m);
	copy[m] = '\0';
	for (i = 0; i < 4 + 5 * nrcpt; i++) {
		char *cut = memchr(copy + p, 0xfe, m - p);

		field[i] = copy + p;
		if (cut == NULL) {
			p = m;
			break;
		}
		*cut = '\0';
		p = (size_t)(cut - copy) + 1;
	}
	orig = data + 17 + p;
	orig_len = m - p;

	memset(&info, 0, sizeof(info));
	info.expired = data[0] & 1;
	info.max_age_days = data[1];
	info.now_us = fz_get64(data + 1);
	info.arrival_us = data[0] & 0x10 ? fz_get64(data + 9) : 0;
	info.reporting_mta = sane ? "mx.sluice.test" : field[0] ? field[0] : "";
	info.queue_id = sane ? "018BD2C3A4F50001" : field[1];
	info.sender = field[2] ? field[2] : "";
	info.received_from = field[3] && field[3][0] ? field[3] : NULL;
	memset(rcpts, 0, sizeof(rcpts));
	for (i = 0; i < nrcpt; i++) {
		const char **f = field + 4 + 5 * i;
		struct dsn_rcpt *r = &rcpts[i];

		r->addr = f[0] ? f[0] : "";
		r->orig_rcpt = f[1] && f[1][0] ? f[1] : NULL;
		r->status = f[2] ? f[2] : "";
		if (sane && !valid_failure_status(r->status))
			r->status = i & 1 ? "4.4.7" : "5.1.1";
		r->remote_mta = f[3] && f[3][0] ? f[3] : NULL;
		r->diagnostic = f[4] && f[4][0] ? f[4] : NULL;
		r->last_attempt_us = data[0] & 0x20 ?
		    fz_get64(data + 9) + i * 1000000u : 0;
	}

	valid = valid_host(info.reporting_mta) && valid_qid(info.queue_id) &&
	    info.sender[0] != '\0' && strcmp(info.sender, "<>") != 0;
	for (i = 0; i < nrcpt; i++)
		valid = valid && rcpts[i].addr[0] != '\0' &&
		    valid_failure_status(rcpts[i].status);

	assert(buf_puts(&out, "kept\r\n") == 0);
	prefix = out.len;
	rc = dsn_build(&info, rcpts, nrcpt, orig, orig_len, &out);
	if (!valid) {
		assert(rc == -EINVAL);
		assert(out.len == prefix);
		goto done;
	}
	assert(rc == 0);
	assert(memcmp(out.data, "kept\r\n", prefix) == 0);

	in8 = has_8bit(info.sender, strlen(info.sender)) ||
	    has_8bit((const char *)orig, orig_len) ||
	    (info.received_from && has_8bit(info.received_from,
	    strlen(info.received_from)));
	for (i = 0; i < nrcpt; i++) {
		const struct dsn_rcpt *r = &rcpts[i];

		in8 = in8 || has_8bit(r->addr, strlen(r->addr)) ||
		    (r->orig_rcpt && has_8bit(r->orig_rcpt,
		    strlen(r->orig_rcpt))) ||
		    (r->remote_mta && has_8bit(r->remote_mta,
		    strlen(r->remote_mta))) ||
		    (r->diagnostic && has_8bit(r->diagnostic,
		    strlen(r->diagnostic)));
	}
	check_dsn(out.data + prefix, out.len - prefix, &info, rcpts, nrcpt,
	    orig, orig_len, in8);
done:
	buf_free(&out);
	free(copy);
	return 0;
}
