/*
 * dsn.c - delivery status notifications (RFC 3464); see dsn.h.
 *
 * Purpose: turn "these recipients failed" into the multipart/report
 * message that goes back to the envelope sender.
 *
 * Contract: see dsn.h. The three part bodies are built first, each in its
 * own scratch buffer, so that the MIME boundary can be checked against
 * everything it will delimit before any of it is written to the caller's
 * buffer. Every line goes through one of two writers: put_folded() for
 * text we compose (header fields and the human explanation, folded at
 * spaces to DSN_LINE_SOFT when possible and cut at DSN_LINE_MAX always)
 * and put_headers() for the original header section (kept as it is,
 * except line ends and over-long lines).
 *
 * Diagnostics: argument errors return -EINVAL before anything is written;
 * allocation failures are sticky in struct dsn_w and reported once at the
 * end as -ENOMEM, with the caller's buffer cut back to its old length.
 */
#include "dsn.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define DSN_HOST_MAX		255
#define DSN_INDENT		"    "
#define DSN_BOUNDARY_MAX	70	/* RFC 2046 section 5.1.1 */

/* A writer with a sticky error: after the first failure every call is a
 * no-op, and the caller looks at err once at the end. */
struct dsn_w {
	struct buf *b;
	int err;
};

static void
w_put(struct dsn_w *w, const void *p, size_t n)
{
	if (w->err == 0)
		w->err = buf_append(w->b, p, n);
}

static void
w_puts(struct dsn_w *w, const char *s)
{
	w_put(w, s, strlen(s));
}

static void w_printf(struct dsn_w *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
w_printf(struct dsn_w *w, const char *fmt, ...)
{
	va_list ap;

	if (w->err != 0)
		return;
	va_start(ap, fmt);
	w->err = buf_vprintf(w->b, fmt, ap);
	va_end(ap);
}

/* ---- small predicates ----------------------------------------------- */

static bool
dsn_is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool
dsn_is_hex(char c)
{
	return dsn_is_digit(c) || (c >= 'a' && c <= 'f') ||
	    (c >= 'A' && c <= 'F');
}

/* Letters, digits and the punctuation of host names and address
 * literals ("mx.example.org", "[192.0.2.1]", "[IPv6:2001:db8::1]"). */
static bool
dsn_host_ok(const char *h)
{
	size_t i;

	if (h == NULL || h[0] == '\0')
		return false;
	for (i = 0; h[i] != '\0'; i++) {
		char c = h[i];

		if (i >= DSN_HOST_MAX)
			return false;
		if (!(dsn_is_digit(c) || (c >= 'a' && c <= 'z') ||
		    (c >= 'A' && c <= 'Z') || c == '.' || c == '-' ||
		    c == '_' || c == ':' || c == '[' || c == ']'))
			return false;
	}
	return true;
}

static bool
dsn_qid_ok(const char *q)
{
	size_t i;

	if (q == NULL)
		return false;
	for (i = 0; i < 16; i++)
		if (!dsn_is_hex(q[i]))
			return false;
	return q[16] == '\0';
}

/* Digits at s, 1 to 3 of them; returns how many (0: not a match). */
static size_t
dsn_digits13(const char *s)
{
	size_t n = 0;

	while (n < 4 && dsn_is_digit(s[n]))
		n++;
	return n >= 1 && n <= 3 ? n : 0;
}

/* Length of the enhanced status code at s (RFC 3463 section 2), 0 if
 * there is none. The code must be followed by end, space or tab. */
static size_t
dsn_status_len(const char *s)
{
	size_t a, b;

	if (s[0] != '2' && s[0] != '4' && s[0] != '5')
		return 0;
	if (s[1] != '.' || (a = dsn_digits13(s + 2)) == 0)
		return 0;
	if (s[2 + a] != '.' || (b = dsn_digits13(s + 3 + a)) == 0)
		return 0;
	if (s[3 + a + b] != '\0' && s[3 + a + b] != ' ' &&
	    s[3 + a + b] != '\t')
		return 0;
	return 3 + a + b;
}

bool
dsn_status_valid(const char *status)
{
	size_t n;

	if (status == NULL)
		return false;
	n = dsn_status_len(status);
	return n > 0 && status[n] == '\0';
}

bool
dsn_is_bounce(const char *sender)
{
	return sender == NULL || sender[0] == '\0' ||
	    strcmp(sender, "<>") == 0;
}

int
dsn_parse_reply(const char *reply, int *code, char status[DSN_STATUS_MAX + 1])
{
	const char *p;
	size_t n;

	assert(code != NULL);
	assert(status != NULL);
	*code = 0;
	status[0] = '\0';
	if (reply == NULL || reply[0] < '2' || reply[0] > '5' ||
	    !dsn_is_digit(reply[1]) || !dsn_is_digit(reply[2]))
		return -EINVAL;
	if (reply[3] != '\0' && reply[3] != ' ' && reply[3] != '-')
		return -EINVAL;
	*code = (reply[0] - '0') * 100 + (reply[1] - '0') * 10 +
	    (reply[2] - '0');
	if (reply[3] == '\0')
		return 0;
	p = reply + 4;
	/* RFC 2034 section 4: the status class matches the reply's. */
	n = dsn_status_len(p);
	if (n > 0 && n <= DSN_STATUS_MAX && p[0] == reply[0]) {
		memcpy(status, p, n);
		status[n] = '\0';
	}
	return 0;
}

/* ---- text cleaning -------------------------------------------------- */

/*
 * Decodes one UTF-8 sequence from s (n > 0 bytes). Returns its length and
 * the code point in *cp; a byte that does not start a well-formed
 * sequence (RFC 3629 section 4: no overlongs, no surrogates, nothing past
 * U+10FFFF) is length 1 and U+FFFD.
 */
static size_t
dsn_utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
	uint32_t c = s[0], min;
	size_t len, i;

	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2, c &= 0x1f, min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3, c &= 0x0f, min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4, c &= 0x07, min = 0x10000;
	} else {
		*cp = 0xfffd;
		return 1;
	}
	if (n < len) {
		*cp = 0xfffd;
		return 1;
	}
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80) {
			*cp = 0xfffd;
			return 1;
		}
		c = (c << 6) | (s[i] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) {
		*cp = 0xfffd;
		return 1;
	}
	*cp = c;
	return len;
}

enum dsn_clean {
	DSN_CLEAN_8BIT,		/* keep bytes >= 0x80 (headers, human text) */
	DSN_CLEAN_ASCII,	/* replace them (message/delivery-status) */
};

/*
 * Appends s with every CR, LF and tab turned into a space and every other
 * control character into '?': whatever the input, no line break and no
 * header injection. DSN_CLEAN_8BIT keeps well-formed UTF-8 (but C1
 * controls); DSN_CLEAN_ASCII writes '?' for each non-ASCII character.
 * A byte that is not part of well-formed UTF-8 is '?' in both.
 */
static void
put_clean(struct dsn_w *w, const char *s, enum dsn_clean mode)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s), i = 0, run, len;
	uint32_t cp;

	while (i < n) {
		for (run = 0; i + run < n && p[i + run] >= 0x20 &&
		    p[i + run] < 0x7f; run++)
			;
		w_put(w, s + i, run);
		if ((i += run) >= n)
			break;
		if (p[i] < 0x80) {
			w_put(w, p[i] == '\r' || p[i] == '\n' || p[i] == '\t' ?
			    " " : "?", 1);
			i++;
			continue;
		}
		len = dsn_utf8_next(p + i, n - i, &cp);
		if (mode == DSN_CLEAN_8BIT && len > 1 && cp >= 0xa0)
			w_put(w, s + i, len);
		else
			w_put(w, "?", 1);
		i += len;
	}
}

/* Every byte of s printable ASCII (space included)? */
static bool
dsn_printable(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
			return false;
	return true;
}

/*
 * An address for Final-Recipient / Original-Recipient: "rfc822; addr"
 * when it is printable ASCII, otherwise "utf-8; " and the RFC 6533
 * section 3 utf-8-addr-xtext form, in which every character outside
 * QCHAR (printable ASCII but "+", "=", "\", space) is written \x{HEX}.
 * Bytes that are not UTF-8 become U+FFFD, so nothing but ASCII results.
 */
static void
put_addr_typed(struct dsn_w *w, const char *addr)
{
	const unsigned char *p = (const unsigned char *)addr;
	size_t n = strlen(addr), i = 0, len;
	uint32_t cp;

	if (dsn_printable(addr)) {
		w_puts(w, "rfc822; ");
		w_puts(w, addr);
		return;
	}
	w_puts(w, "utf-8; ");
	while (i < n) {
		len = dsn_utf8_next(p + i, n - i, &cp);
		i += len;
		if (cp > 0x20 && cp < 0x7f && cp != '+' && cp != '=' &&
		    cp != '\\') {
			char c = (char)cp;
			w_put(w, &c, 1);
		} else {
			w_printf(w, "\\x{%02" PRIX32 "}", cp);
		}
	}
}

/* ---- line writers --------------------------------------------------- */

/* The longest prefix of s[0..n) not over max bytes that does not end in
 * the middle of a UTF-8 sequence (when one can be avoided). */
static size_t
dsn_cut(const char *s, size_t n, size_t max)
{
	size_t k = n < max ? n : max, back = 0;

	if (k == n)
		return k;
	while (back < 3 && k - back > 1 &&
	    ((unsigned char)s[k - back] & 0xc0) == 0x80)
		back++;
	if (((unsigned char)s[k - back] & 0xc0) == 0x80)
		return k;	/* not UTF-8 after all: cut anywhere */
	return k - back;
}

/* A space at s[j] between two non-spaces: a place to break a line that
 * leaves no line of white space only. */
static bool
dsn_breakable(const char *s, size_t n, size_t j)
{
	return j > 0 && j + 1 < n && s[j] == ' ' && s[j - 1] != ' ' &&
	    s[j + 1] != ' ';
}

/*
 * Appends s[0..n) (which holds no CR or LF) starting at column col and
 * ending the last line with CRLF. Lines break at spaces to stay within
 * DSN_LINE_SOFT octets when a space allows it, and are cut to stay within
 * DSN_LINE_MAX always. cont NULL: header folding (RFC 5322 section 2.2.3),
 * the space stays and starts the next line (a cut adds one, and drops
 * the spaces it lands on, which would make a line of white space only:
 * the value keeps its words, not every space of a long run). Otherwise
 * body text: the space becomes the line end and the next line starts
 * with cont.
 */
static void
put_folded(struct dsn_w *w, size_t col, const char *s, size_t n,
    const char *cont)
{
	size_t i = 0, j, b, k;
	size_t indent = cont != NULL ? strlen(cont) : 0;

	assert(col < DSN_LINE_SOFT);
	assert(indent < DSN_LINE_SOFT);
	if (n == 0) {
		w_puts(w, "\r\n");
		return;
	}
	while (col + (n - i) > DSN_LINE_SOFT) {
		b = 0;
		for (j = i + 1; j < n && col + (j - i) <= DSN_LINE_SOFT; j++)
			if (dsn_breakable(s, n, j))
				b = j;
		for (; b == 0 && j < n && col + (j - i) <= DSN_LINE_MAX; j++)
			if (dsn_breakable(s, n, j))
				b = j;
		if (b == 0 && col + (n - i) <= DSN_LINE_MAX)
			break;
		if (b != 0) {
			w_put(w, s + i, b - i);
			w_puts(w, "\r\n");
			i = cont == NULL ? b : b + 1;
		} else {
			k = dsn_cut(s + i, n - i, DSN_LINE_MAX - col);
			w_put(w, s + i, k);
			i += k;
			/* RFC 5322 section 3.2.2: no line of a folded field may
			 * be white space only, so the spaces at a cut go. */
			while (cont == NULL && i < n && s[i] == ' ')
				i++;
			if (i == n) {
				w_puts(w, "\r\n");
				return;
			}
			w_puts(w, cont == NULL ? "\r\n " : "\r\n");
		}
		if (cont != NULL)
			w_puts(w, cont);
		col = cont != NULL ? indent : (b != 0 ? 0 : 1);
	}
	w_put(w, s + i, n - i);
	w_puts(w, "\r\n");
}

/* "Name: value" with value built in scratch, folded. */
static void
put_field(struct dsn_w *w, const char *name, const struct buf *value)
{
	w_puts(w, name);
	w_puts(w, ": ");
	put_folded(w, strlen(name) + 2, value->data ? value->data : "",
	    value->len, NULL);
}

/* RFC 5322 section 3.3 date-time, in UTC. */
static void
put_date(struct dsn_w *w, uint64_t us)
{
	static const char wday[7][4] = {
		"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char mon[12][4] = { "Jan", "Feb", "Mar", "Apr", "May",
		"Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	time_t t = (time_t)(us / 1000000);
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL) {
		w->err = w->err ? w->err : -EINVAL;
		return;
	}
	w_printf(w, "%s, %d %s %04d %02d:%02d:%02d +0000", wday[tm.tm_wday],
	    tm.tm_mday, mon[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour,
	    tm.tm_min, tm.tm_sec);
}

/*
 * The original's header section, up to its first empty line or its end,
 * one CRLF-terminated line per line: a bare CR or bare LF ends a line as
 * CRLF does (never passed on alone), NUL becomes '?', a line longer than
 * DSN_LINE_MAX continues on a line that starts with a space (a folded
 * header line, RFC 5322 section 2.2.3). 8-bit bytes (RFC 6532 headers of
 * SMTPUTF8 mail) are kept as they are. Stops before the line that would
 * take the section past DSN_HEADERS_MAX and sets *cut.
 */
static void
put_headers(struct dsn_w *w, const uint8_t *p, size_t len, bool *cut)
{
	const char *s = (const char *)p;
	size_t i = 0, j, k, col, start;

	*cut = false;
	while (i < len && w->err == 0) {
		for (j = i; j < len && p[j] != '\r' && p[j] != '\n'; j++)
			;
		if (j == i)
			break;		/* the empty line ending the section */
		start = w->b->len;
		col = 0;
		while (i < j) {
			k = dsn_cut(s + i, j - i, DSN_LINE_MAX - col);
			if (memchr(s + i, '\0', k) == NULL) {
				w_put(w, s + i, k);
			} else {
				size_t m;
				for (m = 0; m < k; m++)
					w_put(w, s[i + m] ? s + i + m : "?", 1);
			}
			i += k;
			if (i < j) {
				w_puts(w, "\r\n ");
				col = 1;
			}
		}
		w_puts(w, "\r\n");
		if (w->err == 0 && w->b->len > DSN_HEADERS_MAX) {
			w->b->len = start;
			*cut = true;
			break;
		}
		if (j < len)
			i = p[j] == '\r' && j + 1 < len && p[j + 1] == '\n' ?
			    j + 2 : j + 1;
	}
}

/* ---- the parts ------------------------------------------------------ */

/* A few words on an enhanced status code for the human text (RFC 3463
 * section 3, RFC 7505 section 4.2); by its subject when not listed. */
static const char *
dsn_status_words(const char *status)
{
	static const struct {
		const char *code;	/* subject.detail */
		const char *words;
	} known[] = {
		{ "1.1", "the mailbox does not exist" },
		{ "1.2", "the recipient's domain does not exist" },
		{ "1.3", "the address is not valid" },
		{ "1.10", "the recipient's domain accepts no mail" },
		{ "2.1", "the mailbox is disabled" },
		{ "2.2", "the mailbox is full" },
		{ "3.4", "the message is too big" },
		{ "4.4", "no way to reach the recipient's mail system" },
		{ "4.6", "the message was passed around in a loop" },
		{ "4.7", "the message was too long in the queue" },
		{ "7.1", "refused by the receiver's policy" },
	};
	static const char *const subject[] = {
		"other trouble", "an addressing problem",
		"a mailbox problem", "a mail system problem",
		"a network or routing problem", "a mail protocol problem",
		"a problem with the message content",
		"a security or policy problem",
	};
	const char *sd = status + 2;
	size_t i;

	for (i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (strcmp(sd, known[i].code) == 0)
			return known[i].words;
	if (sd[1] == '.' && sd[0] >= '0' && sd[0] <= '7')
		return subject[sd[0] - '0'];
	return subject[0];
}

/* Part 1: text/plain for people. */
static void
put_human(struct dsn_w *w, struct buf *tmp, const struct dsn_info *info,
    const struct dsn_rcpt *rcpts, size_t n, bool cut)
{
	struct dsn_w t = { tmp, 0 };
	size_t i;

#define PARA(...)							\
	do {								\
		buf_reset(tmp);						\
		w_printf(&t, __VA_ARGS__);				\
		put_folded(w, 0, tmp->data, tmp->len, "");		\
		w_puts(w, "\r\n");					\
	} while (0)

	PARA("This is the mail delivery system at %s.", info->reporting_mta);
	if (!info->expired)
		PARA("Your message could not be delivered to %s. The "
		    "failure is permanent, so delivery will not be tried "
		    "again.", n == 1 ? "the recipient below" :
		    "the recipients below");
	else if (info->max_age_days > 0)
		PARA("Your message could not be delivered to %s within %u "
		    "day%s, the longest time this system keeps a message and "
		    "retries. It has been taken out of the queue.",
		    n == 1 ? "the recipient below" : "the recipients below",
		    info->max_age_days, info->max_age_days == 1 ? "" : "s");
	else
		PARA("Your message could not be delivered to %s within the "
		    "time this system keeps a message and retries. It has "
		    "been taken out of the queue.", n == 1 ?
		    "the recipient below" : "the recipients below");

	for (i = 0; i < n; i++) {
		const struct dsn_rcpt *r = &rcpts[i];

		buf_reset(tmp);
		w_puts(&t, "<");
		put_clean(&t, r->addr, DSN_CLEAN_8BIT);
		w_puts(&t, ">");
		if (r->orig_rcpt != NULL && strcmp(r->orig_rcpt, r->addr)) {
			w_puts(&t, " (originally <");
			put_clean(&t, r->orig_rcpt, DSN_CLEAN_8BIT);
			w_puts(&t, ">)");
		}
		w_printf(&t, ": %s (%s)", dsn_status_words(r->status),
		    r->status);
		put_folded(w, 0, tmp->data, tmp->len, DSN_INDENT);
		if (r->diagnostic == NULL && r->remote_mta == NULL)
			continue;
		buf_reset(tmp);
		if (r->remote_mta != NULL) {
			put_clean(&t, r->remote_mta, DSN_CLEAN_8BIT);
			w_puts(&t, r->diagnostic != NULL ? " said: " :
			    " was the last host tried");
		}
		if (r->diagnostic != NULL)
			put_clean(&t, r->diagnostic, DSN_CLEAN_8BIT);
		w_puts(w, DSN_INDENT);
		put_folded(w, strlen(DSN_INDENT), tmp->data, tmp->len,
		    DSN_INDENT);
	}
	w_puts(w, "\r\n");

	buf_reset(tmp);
	w_puts(&t, "The message had queue id ");
	w_puts(&t, info->queue_id);
	if (info->arrival_us != 0) {
		w_puts(&t, " and arrived on ");
		put_date(&t, info->arrival_us);
	}
	w_puts(&t, ". Its header section is attached below, after the "
	    "report for mail software.");
	if (cut)
		w_printf(&t, " It was longer than %d bytes and has been cut "
		    "short.", DSN_HEADERS_MAX);
	put_folded(w, 0, tmp->data, tmp->len, "");
#undef PARA
	if (t.err != 0 && w->err == 0)
		w->err = t.err;
}

/* Part 2: message/delivery-status, RFC 3464 section 2.2 and 2.3. Always
 * ASCII: the part is 7bit (RFC 3464 section 2.1). */
static void
put_status(struct dsn_w *w, struct buf *tmp, const struct dsn_info *info,
    const struct dsn_rcpt *rcpts, size_t n)
{
	struct dsn_w t = { tmp, 0 };
	size_t i;

	w_printf(w, "Reporting-MTA: dns; %s\r\n", info->reporting_mta);
	w_printf(w, "X-Sluice-Queue-ID: %s\r\n", info->queue_id);
	if (info->received_from != NULL) {
		buf_reset(tmp);
		w_puts(&t, "dns; ");
		put_clean(&t, info->received_from, DSN_CLEAN_ASCII);
		put_field(w, "Received-From-MTA", tmp);
	}
	if (info->arrival_us != 0) {
		w_puts(w, "Arrival-Date: ");
		put_date(w, info->arrival_us);
		w_puts(w, "\r\n");
	}
	for (i = 0; i < n; i++) {
		const struct dsn_rcpt *r = &rcpts[i];

		w_puts(w, "\r\n");
		if (r->orig_rcpt != NULL && strcmp(r->orig_rcpt, r->addr)) {
			buf_reset(tmp);
			put_addr_typed(&t, r->orig_rcpt);
			put_field(w, "Original-Recipient", tmp);
		}
		buf_reset(tmp);
		put_addr_typed(&t, r->addr);
		put_field(w, "Final-Recipient", tmp);
		w_puts(w, "Action: failed\r\n");
		w_printf(w, "Status: %s\r\n", r->status);
		if (r->remote_mta != NULL) {
			buf_reset(tmp);
			w_puts(&t, "dns; ");
			put_clean(&t, r->remote_mta, DSN_CLEAN_ASCII);
			put_field(w, "Remote-MTA", tmp);
		}
		if (r->diagnostic != NULL) {
			buf_reset(tmp);
			w_puts(&t, "smtp; ");
			put_clean(&t, r->diagnostic, DSN_CLEAN_ASCII);
			put_field(w, "Diagnostic-Code", tmp);
		}
		if (r->last_attempt_us != 0) {
			w_puts(w, "Last-Attempt-Date: ");
			put_date(w, r->last_attempt_us);
			w_puts(w, "\r\n");
		}
	}
	if (t.err != 0 && w->err == 0)
		w->err = t.err;
}

static bool
dsn_has_8bit(const struct buf *b)
{
	size_t i;

	for (i = 0; i < b->len; i++)
		if ((unsigned char)b->data[i] >= 0x80)
			return true;
	return false;
}

static bool
dsn_contains(const struct buf *b, const char *s)
{
	return b->len > 0 && memmem(b->data, b->len, s, strlen(s)) != NULL;
}

/*
 * A boundary that occurs nowhere in the parts (RFC 2046 section 5.1.1
 * only forbids it at a line start; anywhere is simpler and stricter).
 * "=_" cannot come out of quoted-printable, and the queue id and time
 * make it differ from message to message. If a part holds the candidate,
 * a counter is added; a finite text holds finitely many candidates, so
 * the loop ends.
 */
static void
dsn_boundary(char *out, size_t outlen, const struct dsn_info *info,
    const struct buf *parts[3])
{
	unsigned k;
	int len;

	for (k = 0;; k++) {
		if (k == 0)
			len = snprintf(out, outlen, "=_sluice_%s_%" PRIu64,
			    info->queue_id, info->now_us);
		else
			len = snprintf(out, outlen, "=_sluice_%s_%" PRIu64
			    ".%u", info->queue_id, info->now_us, k);
		assert(len > 0 && (size_t)len < outlen);
		if (!dsn_contains(parts[0], out) &&
		    !dsn_contains(parts[1], out) &&
		    !dsn_contains(parts[2], out))
			return;
	}
}

static bool
dsn_args_ok(const struct dsn_info *info, const struct dsn_rcpt *rcpts,
    size_t n, const uint8_t *orig, size_t orig_len)
{
	size_t i;

	if (info == NULL || rcpts == NULL || n == 0)
		return false;
	if (!dsn_host_ok(info->reporting_mta) || !dsn_qid_ok(info->queue_id))
		return false;
	if (info->sender == NULL || dsn_is_bounce(info->sender))
		return false;
	if (orig == NULL && orig_len > 0)
		return false;
	for (i = 0; i < n; i++) {
		if (rcpts[i].addr == NULL || rcpts[i].addr[0] == '\0')
			return false;
		if (!dsn_status_valid(rcpts[i].status) ||
		    rcpts[i].status[0] == '2')
			return false;
	}
	return true;
}

int
dsn_build(const struct dsn_info *info, const struct dsn_rcpt *rcpts,
    size_t n, const uint8_t *orig, size_t orig_len, struct buf *out)
{
	struct buf human = { 0 }, status = { 0 }, hdrs = { 0 }, tmp = { 0 };
	const struct buf *parts[3] = { &human, &status, &hdrs };
	char boundary[DSN_BOUNDARY_MAX + 1];
	struct dsn_w w;
	size_t saved;
	bool cut, human8, hdrs8;
	int err;

	if (out == NULL || !dsn_args_ok(info, rcpts, n, orig, orig_len))
		return -EINVAL;
	saved = out->len;

	w = (struct dsn_w){ &hdrs, 0 };
	put_headers(&w, orig, orig_len, &cut);
	err = w.err;
	w = (struct dsn_w){ &status, err };
	put_status(&w, &tmp, info, rcpts, n);
	err = w.err;
	w = (struct dsn_w){ &human, err };
	put_human(&w, &tmp, info, rcpts, n, cut);
	if (w.err != 0)
		goto done;
	assert(!dsn_has_8bit(&status));
	human8 = dsn_has_8bit(&human);
	hdrs8 = dsn_has_8bit(&hdrs);
	dsn_boundary(boundary, sizeof(boundary), info, parts);

	/* The header section; RFC 3464 section 2 and RFC 3834 section 5. */
	w = (struct dsn_w){ out, 0 };
	w_printf(&w, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n",
	    info->reporting_mta);
	buf_reset(&tmp);
	{
		struct dsn_w t = { &tmp, 0 };

		w_puts(&t, "<");
		put_clean(&t, info->sender, DSN_CLEAN_8BIT);
		w_puts(&t, ">");
		w.err = w.err ? w.err : t.err;
	}
	put_field(&w, "To", &tmp);
	w_printf(&w, "Subject: Undelivered Mail Returned to Sender%s\r\n",
	    info->expired ? ": delivery time expired" : "");
	w_puts(&w, "Date: ");
	put_date(&w, info->now_us);
	w_puts(&w, "\r\n");
	w_printf(&w, "Message-ID: <dsn.%s.%" PRIu64 "@%s>\r\n",
	    info->queue_id, info->now_us, info->reporting_mta);
	w_puts(&w, "Auto-Submitted: auto-replied\r\n");
	w_puts(&w, "MIME-Version: 1.0\r\n");
	w_printf(&w, "Content-Type: multipart/report; "
	    "report-type=delivery-status;\r\n\tboundary=\"%s\"\r\n", boundary);
	if (human8 || hdrs8)
		w_puts(&w, "Content-Transfer-Encoding: 8bit\r\n");
	w_puts(&w, "\r\nThis is a MIME-encapsulated message.\r\n");

	w_printf(&w, "\r\n--%s\r\n", boundary);
	w_puts(&w, "Content-Description: Notification\r\n");
	w_printf(&w, "Content-Type: text/plain; charset=%s\r\n",
	    human8 ? "utf-8" : "us-ascii");
	if (human8)
		w_puts(&w, "Content-Transfer-Encoding: 8bit\r\n");
	w_puts(&w, "\r\n");
	w_put(&w, human.data, human.len);

	w_printf(&w, "\r\n--%s\r\n", boundary);
	w_puts(&w, "Content-Description: Delivery report\r\n");
	w_puts(&w, "Content-Type: message/delivery-status\r\n\r\n");
	w_put(&w, status.data, status.len);

	w_printf(&w, "\r\n--%s\r\n", boundary);
	w_puts(&w, "Content-Description: Undelivered message headers\r\n");
	w_puts(&w, "Content-Type: text/rfc822-headers\r\n");
	if (hdrs8)
		w_puts(&w, "Content-Transfer-Encoding: 8bit\r\n");
	w_puts(&w, "\r\n");
	w_put(&w, hdrs.data, hdrs.len);
	w_printf(&w, "\r\n--%s--\r\n", boundary);
done:
	err = w.err;
	if (err != 0)
		out->len = saved;
	buf_free(&human);
	buf_free(&status);
	buf_free(&hdrs);
	buf_free(&tmp);
	return err;
}
