/*
 * Description: delivery log lines. A full entry parses back with jansson
 * to the same values; quotes, backslashes, control characters, UTF-8 and
 * bytes that are not UTF-8 come out as valid JSON on one line; NULL and 0
 * fields are left out; every status has its name and a bad one is
 * refused; delays are rounded to the millisecond. The writer appends
 * whole buffers, shares a file through O_APPEND, reports a full disk and
 * a closed log, and empties the buffer either way. The line is written by
 * hand, not by jansson: a reference built with jansson (as the log once
 * was) must give the same bytes for every field over a corpus of
 * awkward strings (every byte value, quotes, backslashes, control
 * characters, valid and broken UTF-8, long texts), delays, integers and
 * times, and jansson must parse every line back to the values. Ends with
 * the cost per line of both (printed, not asserted).
 */
#include "check.h"
#include "../../deliver/dlog.h"
#include "../fuzz/fuzz_util.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NOW_US		1700000000123456ULL	/* 2023-11-14 22:13:20.123456 */

static const struct dlog_entry full = {
	.time_us = NOW_US,
	.queue_id = "018BD2C3A4F50001",
	.sender = "alice@sender.example",
	.rcpt = "bob@rcpt.example",
	.destination = "rcpt.example",
	.transport = "smtp",
	.mx = "mx1.rcpt.example",
	.addr = "[2001:db8::25]:25",
	.tls = "TLSv1.3",
	.tls_verify = "verified",
	.tls_policy = "sts-enforce",
	.status = DLOG_DEFERRED,
	.code = 451,
	.enhanced = "4.7.1",
	.text = "451 4.7.1 Greylisted, try again later",
	.attempt = 3,
	.delay_s = 3723.5,
	.next_try_us = NOW_US + 900000000ULL,
	.dsn_queue_id = "018BD2C3A4F50002",
	.size = 48213,
};

/* Parses the only line in b: exactly one '\n', at the end. */
static json_t *
parse_line(const struct buf *b)
{
	json_error_t jerr;
	json_t *j;

	CHECK_FATAL(b->len > 1 && b->data[b->len - 1] == '\n');
	CHECK(memchr(b->data, '\n', b->len - 1) == NULL);
	j = json_loadb(b->data, b->len - 1, 0, &jerr);
	if (j == NULL)
		fprintf(stderr, "json: %s: %.*s\n", jerr.text, (int)b->len,
		    b->data);
	CHECK_FATAL(j != NULL);
	CHECK_FATAL(json_is_object(j));
	return j;
}

static const char *
str(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

static bool
str_is(json_t *o, const char *key, const char *want)
{
	const char *got = str(o, key);

	if (got == NULL || strcmp(got, want) != 0) {
		fprintf(stderr, "key %s: got '%s', want '%s'\n", key,
		    got ? got : "(none)", want);
		return false;
	}
	return true;
}

static json_int_t
num(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	return json_is_integer(v) ? json_integer_value(v) : -1;
}

/*
 * The reference: the line as jansson builds it (compact, in order, reals
 * at 12 significant digits), with strings repaired to UTF-8 the way the
 * log documents (each byte that does not start a well-formed sequence
 * becomes U+FFFD), judged by the fuzz targets' UTF-8 oracle, which is
 * written apart from dlog.c's check.
 */
static json_t *
ref_string(const char *s)
{
	size_t n = strlen(s), i = 0, o = 0, k;
	char *fix = malloc(n * 3 + 1);
	json_t *j;

	CHECK_FATAL(fix != NULL);
	while (i < n) {
		k = fz_utf8_len((const unsigned char *)s + i, n - i);
		if (k == 0) {
			memcpy(fix + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		} else {
			memcpy(fix + o, s + i, k);
			o += k;
			i += k;
		}
	}
	j = json_stringn(fix, o);
	CHECK_FATAL(j != NULL);
	free(fix);
	return j;
}

static json_t *
ref_time(uint64_t us)
{
	time_t t = (time_t)(us / 1000000);
	struct tm tm;
	char ts[80];

	if (gmtime_r(&t, &tm) == NULL)
		memset(&tm, 0, sizeof(tm));
	snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%06uZ",
	    (tm.tm_year + 1900) % 10000, tm.tm_mon + 1, tm.tm_mday,
	    tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(us % 1000000));
	return json_string(ts);
}

static void
ref_str(json_t *o, const char *key, const char *s)
{
	if (s != NULL)
		json_object_set_new(o, key, ref_string(s));
}

static void
ref_int(json_t *o, const char *key, json_int_t v)
{
	if (v != 0)
		json_object_set_new(o, key, json_integer(v));
}

/* The reference line, malloc'd, with its "\n". */
static char *
ref_format(const struct dlog_entry *e)
{
	json_t *o = json_object();
	double delay = e->delay_s;
	char *s, *line;
	size_t n;

	CHECK_FATAL(o != NULL);
	if (!(delay >= 0))
		delay = 0;
	if (delay > 1e9)
		delay = 1e9;
	delay = (double)(int64_t)(delay * 1000.0 + 0.5) / 1000.0;
	json_object_set_new(o, "ts", ref_time(e->time_us));
	ref_str(o, "qid", e->queue_id);
	ref_str(o, "from", e->sender);
	ref_str(o, "to", e->rcpt);
	ref_str(o, "status", dlog_status_name(e->status));
	ref_str(o, "dest", e->destination);
	ref_str(o, "transport", e->transport);
	ref_str(o, "mx", e->mx);
	ref_str(o, "addr", e->addr);
	ref_str(o, "tls", e->tls);
	ref_str(o, "tls_verify", e->tls_verify);
	ref_str(o, "tls_auth", e->tls_auth);
	ref_str(o, "tlsa", e->tlsa);
	ref_str(o, "tls_policy", e->tls_policy);
	ref_int(o, "code", e->code);
	ref_str(o, "enhanced", e->enhanced);
	ref_str(o, "text", e->text);
	ref_int(o, "attempt", e->attempt);
	json_object_set_new(o, "delay", json_real(delay));
	if (e->next_try_us != 0)
		json_object_set_new(o, "next", ref_time(e->next_try_us));
	ref_str(o, "dsn_qid", e->dsn_queue_id);
	ref_int(o, "size", e->size);
	s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER |
	    JSON_REAL_PRECISION(12));
	CHECK_FATAL(s != NULL);
	json_decref(o);
	n = strlen(s);
	line = malloc(n + 2);
	CHECK_FATAL(line != NULL);
	memcpy(line, s, n);
	memcpy(line + n, "\n", 2);
	free(s);
	return line;
}

static unsigned same_failures;

/* e formatted must be the reference's bytes and parse back. */
static void
same_as_ref(const struct dlog_entry *e)
{
	struct buf b = { 0 };
	char *want = ref_format(e);
	json_t *o;

	CHECK_FATAL(dlog_format(&b, e) == 0);
	if (b.len != strlen(want) || memcmp(b.data, want, b.len) != 0) {
		if (same_failures++ < 5)
			fprintf(stderr, "got:  %.*s\nwant: %s", (int)b.len,
			    b.data, want);
		check_failures++;
	}
	o = parse_line(&b);
	json_decref(o);
	free(want);
	buf_free(&b);
}

static void
reference(void)
{
	/* Every byte value alone and between others, then the hard cases. */
	static const char *const corpus[] = {
		"", "plain", "say \"hi\" \\ bye", "\\\\\"\"", "/slash/",
		"a\r\nb\tc\bd\fe\x01" "f\x1f\x7fg", "\x1b[31mred\x1b[0m",
		"Gr\xc3\xbc\xc3\x9f" "e \xe7\x94\xa8 \xf0\x9f\x98\x80",
		"\xe2\x80\xa8\xe2\x80\xa9 line separators",
		"\xef\xbb\xbf" "bom", "\xef\xbf\xbf\xf4\x8f\xbf\xbf max",
		"bad \xff end", "cut \xe4\xbd", "\xe4\xbd", "\xc3",
		"overlong \xc0\xaf \xe0\x80\xaf \xf0\x80\x80\xaf",
		"surrogate \xed\xa0\x80 \xed\xbf\xbf",
		"too big \xf4\x90\x80\x80 \xf5\x80\x80\x80",
		"lone \x80\xbf continuation", "\xc2\xa0nbsp\xc2",
		"mixed \"\xff\\\x01\xc3\xa9\"",
		"<bob@\xd0\xbf\xd1\x80\xd0\xb8\xd0\xbc\xd0\xb5\xd1\x80.\xd1\x80\xd1\x84>",
	};
	static const double delays[] = {
		0, 0.0004, 0.0005, 0.001, 0.01, 0.1, 0.5, 1, 1.2345, 1.2355,
		2.05, 9.999, 59.9996, 300.2, 301.0, 3723.5, 86400.125,
		432000.1234, 99999999.999, 123456789.123, 999999999.999,
		1e9, 2e9, -1, -0.0, NAN, INFINITY, -INFINITY,
	};
	static const uint64_t times[] = {
		0, 1, 999999, 1000000, NOW_US, 951782400000000ULL,
		4102444799999999ULL, 253402300799999999ULL,
		253402300800000000ULL, UINT64_MAX,
	};
	static const int64_t ints[] = { 1, 9, 10, 250, 451, 999, 65535,
		4294967295LL, -1, -451 };
	char bytes[8];
	size_t i, f;

	printf("RUN reference\n");
	for (i = 1; i < 256; i++) {
		struct dlog_entry e = full;

		snprintf(bytes, sizeof(bytes), "a%cb", (int)i);
		e.text = bytes;
		same_as_ref(&e);
		snprintf(bytes, sizeof(bytes), "%c", (int)i);
		e.rcpt = bytes;
		e.text = NULL;
		same_as_ref(&e);
	}
	for (i = 0; i < NELEM(corpus); i++) {
		/* Every string field takes every corpus entry. */
		for (f = 0; f < 16; f++) {
			struct dlog_entry e = full;
			const char **fields[] = { &e.queue_id, &e.sender,
				&e.rcpt, &e.destination, &e.transport, &e.mx,
				&e.addr, &e.tls, &e.tls_verify, &e.tls_auth,
				&e.tlsa, &e.tls_policy, &e.enhanced, &e.text,
				&e.dsn_queue_id, &e.text };

			*fields[f] = corpus[i];
			if (f == 15)
				e.rcpt = e.sender = e.mx = NULL;
			same_as_ref(&e);
		}
	}
	for (i = 0; i < NELEM(delays); i++) {
		struct dlog_entry e = full;

		e.delay_s = delays[i];
		same_as_ref(&e);
	}
	for (i = 0; i < 20000; i++) {
		struct dlog_entry e = full;

		/* Milliseconds across the range, and halves between. */
		e.delay_s = (double)(i * 7919 % 1000000) / 1000.0 +
		    (double)(i % 3) * 0.0005 + (double)(i % 11) * 1e5;
		same_as_ref(&e);
	}
	for (i = 0; i < NELEM(times); i++) {
		struct dlog_entry e = full;

		e.time_us = times[i];
		e.next_try_us = times[NELEM(times) - 1 - i];
		same_as_ref(&e);
	}
	for (i = 0; i < NELEM(ints); i++) {
		struct dlog_entry e = full;

		e.code = (int)ints[i];
		e.attempt = (unsigned)ints[i];
		e.size = (uint32_t)ints[i];
		same_as_ref(&e);
	}
	/* Long texts: all kinds of bytes, past any fixed buffer. */
	{
		struct dlog_entry e = full;
		char *text = malloc(70001);

		CHECK_FATAL(text != NULL);
		for (i = 0; i < 70000; i++)
			text[i] = (char)(i * 131 % 255 + 1);
		text[i] = '\0';
		e.text = text;
		same_as_ref(&e);
		memset(text, '"', 70000);
		same_as_ref(&e);
		memset(text, '\x01', 70000);
		same_as_ref(&e);
		free(text);
	}
	/* A minimal line, and the null sender. */
	{
		struct dlog_entry e = { .time_us = NOW_US,
			.status = DLOG_DISCARDED, .sender = "" };

		same_as_ref(&e);
	}
	printf("PASS reference\n");
}

/* The TLS fields: after addr, tls_auth and tlsa (DANE) after tls. */
static void
tls_fields(void)
{
	struct buf b = { 0 };
	struct dlog_entry e = full;
	json_t *o;
	const char *k;
	json_t *v;
	size_t i = 0;
	static const char *const order[] = { "addr", "tls", "tls_auth",
		"tlsa", "code" };

	printf("RUN tls_fields\n");
	e.tls = "TLSv1.3 TLS_AES_256_GCM_SHA384";
	e.tls_auth = "dane";
	e.tlsa = "3 1 1";
	CHECK_FATAL(dlog_format(&b, &e) == 0);
	o = parse_line(&b);
	CHECK(str_is(o, "tls_auth", "dane"));
	CHECK(str_is(o, "tlsa", "3 1 1"));
	json_object_foreach(o, k, v) {
		(void)v;
		if (i < NELEM(order) && strcmp(k, order[i]) == 0)
			i++;
	}
	CHECK(i == NELEM(order));
	json_decref(o);
	buf_free(&b);
	/* Without a connection neither appears. */
	e.tls_auth = NULL;
	e.tlsa = NULL;
	CHECK_FATAL(dlog_format(&b, &e) == 0);
	o = parse_line(&b);
	CHECK(json_object_get(o, "tls_auth") == NULL);
	CHECK(json_object_get(o, "tlsa") == NULL);
	json_decref(o);
	buf_free(&b);
	printf("PASS tls_fields\n");
}

static void
round_trip(void)
{
	struct buf b = { 0 };
	json_t *o;
	const char *k;
	json_t *v;
	size_t i = 0;
	static const char *const order[] = { "ts", "qid", "from", "to",
		"status", "dest", "transport", "mx", "addr", "tls",
		"tls_verify", "tls_policy", "code", "enhanced", "text", "attempt", "delay", "next", "dsn_qid",
		"size" };

	printf("RUN round_trip\n");
	CHECK_FATAL(dlog_format(&b, &full) == 0);
	o = parse_line(&b);
	CHECK(str_is(o, "ts", "2023-11-14T22:13:20.123456Z"));
	CHECK(str_is(o, "qid", "018BD2C3A4F50001"));
	CHECK(str_is(o, "from", "alice@sender.example"));
	CHECK(str_is(o, "to", "bob@rcpt.example"));
	CHECK(str_is(o, "status", "deferred"));
	CHECK(str_is(o, "dest", "rcpt.example"));
	CHECK(str_is(o, "transport", "smtp"));
	CHECK(str_is(o, "mx", "mx1.rcpt.example"));
	CHECK(str_is(o, "addr", "[2001:db8::25]:25"));
	CHECK(str_is(o, "tls", "TLSv1.3"));
	CHECK(str_is(o, "tls_verify", "verified"));
	CHECK(str_is(o, "tls_policy", "sts-enforce"));
	CHECK(num(o, "code") == 451);
	CHECK(str_is(o, "enhanced", "4.7.1"));
	CHECK(str_is(o, "text", "451 4.7.1 Greylisted, try again later"));
	CHECK(num(o, "attempt") == 3);
	CHECK(json_real_value(json_object_get(o, "delay")) == 3723.5);
	CHECK(str_is(o, "next", "2023-11-14T22:28:20.123456Z"));
	CHECK(str_is(o, "dsn_qid", "018BD2C3A4F50002"));
	CHECK(num(o, "size") == 48213);
	CHECK(json_object_size(o) == NELEM(order));
	/* Keys come out in a stable, documented order. */
	json_object_foreach(o, k, v) {
		(void)v;
		CHECK(i < NELEM(order) && strcmp(k, order[i]) == 0);
		i++;
	}
	json_decref(o);
	/* Compact: no spaces between tokens. */
	{
		static const char head[] =
		    "{\"ts\":\"2023-11-14T22:13:20.123456Z\",\"qid\":";

		CHECK(memcmp(b.data, head, sizeof(head) - 1) == 0);
	}
	buf_free(&b);
	printf("PASS round_trip\n");
}

static void
escaping(void)
{
	static const struct {
		const char *in, *out;
	} t[] = {
		{ "say \"hi\" \\ bye", "say \"hi\" \\ bye" },
		{ "a\r\nb\tc\x01" "d\x1f\x7f", "a\r\nb\tc\x01" "d\x1f\x7f" },
		{ "Gr\xc3\xbc\xc3\x9f" "e \xe7\x94\xa8 \xf0\x9f\x98\x80",
		    "Gr\xc3\xbc\xc3\x9f" "e \xe7\x94\xa8 \xf0\x9f\x98\x80" },
		{ "bad \xff end", "bad \xef\xbf\xbd end" },
		{ "cut \xe4\xbd", "cut \xef\xbf\xbd\xef\xbf\xbd" },
		{ "overlong \xc0\xaf", "overlong \xef\xbf\xbd\xef\xbf\xbd" },
		{ "surrogate \xed\xa0\x80",
		    "surrogate \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },
		{ "too big \xf4\x90\x80\x80", "too big \xef\xbf\xbd\xef\xbf\xbd"
		    "\xef\xbf\xbd\xef\xbf\xbd" },
		{ "", "" },
	};
	size_t i, j;

	printf("RUN escaping\n");
	for (i = 0; i < NELEM(t); i++) {
		struct dlog_entry e = full;
		struct buf b = { 0 };
		json_t *o;

		e.text = t[i].in;
		e.rcpt = t[i].in;	/* every string goes the same way */
		CHECK_FATAL(dlog_format(&b, &e) == 0);
		/* No raw control byte but the final newline. */
		for (j = 0; j + 1 < b.len; j++)
			CHECK((unsigned char)b.data[j] >= 0x20);
		o = parse_line(&b);
		CHECK(str_is(o, "text", t[i].out));
		CHECK(str_is(o, "to", t[i].out));
		json_decref(o);
		buf_free(&b);
	}
	/* Valid UTF-8 stays as it is, not \u-escaped. */
	{
		struct dlog_entry e = full;
		struct buf b = { 0 };

		e.text = "K\xc3\xb6ln";
		CHECK(dlog_format(&b, &e) == 0);
		CHECK(memmem(b.data, b.len, "\"text\":\"K\xc3\xb6ln\"", 14) !=
		    NULL);
		buf_free(&b);
	}
	printf("PASS escaping\n");
}

/* Long strings: past the first dump guess and the stack repair buffer. */
static void
long_strings(void)
{
	struct dlog_entry e = full;
	struct buf b = { 0 };
	char *text = malloc(20001), *want = malloc(20001 * 3);
	size_t i, o = 0;
	json_t *j;

	printf("RUN long_strings\n");
	CHECK_FATAL(text != NULL && want != NULL);
	for (i = 0; i < 20000; i++) {
		text[i] = i % 1000 == 999 ? (char)0xfe : (char)('a' + i % 26);
		if (i % 1000 == 999) {
			memcpy(want + o, "\xef\xbf\xbd", 3);
			o += 3;
		} else {
			want[o++] = text[i];
		}
	}
	text[i] = '\0';
	want[o] = '\0';
	e.text = text;
	buf_puts(&b, "x");	/* appends after what is there */
	CHECK_FATAL(dlog_format(&b, &e) == 0);
	CHECK(b.data[0] == 'x');
	buf_consume(&b, 1);
	j = parse_line(&b);
	CHECK(str_is(j, "text", want));
	json_decref(j);
	buf_free(&b);
	free(text);
	free(want);
	printf("PASS long_strings\n");
}

static void
omitted(void)
{
	struct dlog_entry e = { .time_us = NOW_US, .status = DLOG_DELIVERED };
	struct buf b = { 0 };
	json_t *o;

	printf("RUN omitted\n");
	CHECK_FATAL(dlog_format(&b, &e) == 0);
	o = parse_line(&b);
	CHECK(json_object_size(o) == 3);
	CHECK(str_is(o, "ts", "2023-11-14T22:13:20.123456Z"));
	CHECK(str_is(o, "status", "delivered"));
	CHECK(json_real_value(json_object_get(o, "delay")) == 0.0);
	json_decref(o);
	buf_reset(&b);
	/* The null sender is "", which is kept: it means something. */
	e.sender = "";
	CHECK_FATAL(dlog_format(&b, &e) == 0);
	o = parse_line(&b);
	CHECK(str_is(o, "from", ""));
	json_decref(o);
	buf_free(&b);
	printf("PASS omitted\n");
}

static void
statuses(void)
{
	static const struct {
		enum dlog_status s;
		const char *name;
	} t[] = {
		{ DLOG_DELIVERED, "delivered" },
		{ DLOG_DEFERRED, "deferred" },
		{ DLOG_BOUNCED, "bounced" },
		{ DLOG_EXPIRED, "expired" },
		{ DLOG_DISCARDED, "discarded" },
	};
	struct buf b = { 0 };
	struct dlog_entry e = full;
	size_t i, lines = 0;

	printf("RUN statuses\n");
	for (i = 0; i < NELEM(t); i++) {
		CHECK(strcmp(dlog_status_name(t[i].s), t[i].name) == 0);
		e.status = t[i].s;
		CHECK(dlog_format(&b, &e) == 0);
	}
	/* Five lines in one buffer, each one object. */
	for (i = 0; i < b.len; i++) {
		if (b.data[i] == '\n') {
			lines++;
		}
	}
	CHECK(lines == NELEM(t));
	{
		const char *p = b.data, *nl;

		for (i = 0; i < NELEM(t); i++) {
			struct buf one = { 0 };
			json_t *o;

			nl = memchr(p, '\n', (size_t)(b.data + b.len - p));
			CHECK_FATAL(nl != NULL);
			buf_append(&one, p, (size_t)(nl - p + 1));
			o = parse_line(&one);
			CHECK(str_is(o, "status", t[i].name));
			json_decref(o);
			buf_free(&one);
			p = nl + 1;
		}
	}
	CHECK(dlog_status_name((enum dlog_status)99) == NULL);
	e.status = (enum dlog_status)99;
	i = b.len;
	CHECK(dlog_format(&b, &e) == -EINVAL);
	CHECK(b.len == i);
	buf_free(&b);
	printf("PASS statuses\n");
}

static void
delays(void)
{
	static const struct {
		double in, out;
	} t[] = {
		{ 1.23456, 1.235 },
		{ 0.0004, 0.0 },
		{ 2.0, 2.0 },
		{ 432000.1234, 432000.123 },
		{ -5.0, 0.0 },
		{ NAN, 0.0 },
		{ INFINITY, 1e9 },
	};
	size_t i;

	printf("RUN delays\n");
	for (i = 0; i < NELEM(t); i++) {
		struct dlog_entry e = full;
		struct buf b = { 0 };
		json_t *o, *v;

		e.delay_s = t[i].in;
		CHECK_FATAL(dlog_format(&b, &e) == 0);
		o = parse_line(&b);
		v = json_object_get(o, "delay");
		CHECK(json_is_real(v));
		if (json_real_value(v) != t[i].out) {
			fprintf(stderr, "delay %g: got %.17g\n", t[i].in,
			    json_real_value(v));
			check_failures++;
		}
		json_decref(o);
		buf_free(&b);
	}
	/* Printed short, not as 1.2350000000000001. */
	{
		struct dlog_entry e = full;
		struct buf b = { 0 };

		e.delay_s = 1.23456;
		CHECK(dlog_format(&b, &e) == 0);
		CHECK(memmem(b.data, b.len, "\"delay\":1.235,", 14) != NULL);
		buf_free(&b);
	}
	printf("PASS delays\n");
}

static char *
slurp_fd(int fd, size_t *len)
{
	struct buf b = { 0 };
	char tmp[4096];
	ssize_t n;

	lseek(fd, 0, SEEK_SET);
	while ((n = read(fd, tmp, sizeof(tmp))) > 0)
		buf_append(&b, tmp, (size_t)n);
	*len = b.len;
	buf_append(&b, "", 1);
	return b.data;
}

static void
writer(void)
{
	char dir[] = "/tmp/t_dlog.XXXXXX", path[256];
	struct dlog a = { 0 }, c = { 0 }, closed = { 0 };
	struct buf b = { 0 };
	char *text;
	size_t len;
	int fd;

	printf("RUN writer\n");
	CHECK_FATAL(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/delivery.log", dir);
	CHECK_FATAL(dlog_open(&a, path) == 0);
	CHECK_FATAL(dlog_open(&c, path) == 0);
	CHECK(a.open && a.owned && a.fd > 2);
	buf_puts(&b, "one\ntwo\n");
	CHECK(dlog_write(&a, &b) == 0);
	CHECK(b.len == 0);
	buf_puts(&b, "three\n");
	CHECK(dlog_write(&c, &b) == 0);	/* O_APPEND: after a's lines */
	buf_puts(&b, "four\n");
	CHECK(dlog_write(&a, &b) == 0);
	CHECK(dlog_write(&a, &b) == 0);		/* empty: nothing */
	fd = open(path, O_RDONLY);
	CHECK_FATAL(fd >= 0);
	text = slurp_fd(fd, &len);
	CHECK(strcmp(text, "one\ntwo\nthree\nfour\n") == 0);
	free(text);
	close(fd);
	dlog_close(&a);
	dlog_close(&c);
	CHECK(!a.open && a.fd == 0);
	dlog_close(&a);		/* twice is fine */
	unlink(path);

	/* Closed, missing directory, bad path. */
	buf_puts(&b, "lost\n");
	CHECK(dlog_write(&closed, &b) == -EBADF);
	CHECK(b.len == 0);
	snprintf(path, sizeof(path), "%s/no/such/dir/log", dir);
	CHECK(dlog_open(&a, path) == -ENOENT);
	CHECK(!a.open);
	CHECK(dlog_open(&a, "") == -EINVAL);
	CHECK(dlog_open(&a, NULL) == -EINVAL);

	/* A full disk: the error comes back and the buffer is emptied. */
	if (access("/dev/full", W_OK) == 0) {
		CHECK_FATAL(dlog_open(&a, "/dev/full") == 0);
		buf_puts(&b, "nowhere\n");
		CHECK(dlog_write(&a, &b) == -ENOSPC);
		CHECK(b.len == 0);
		dlog_close(&a);
	}

	/* "-" is standard error, and closing leaves it open. */
	CHECK_FATAL(dlog_open(&a, "-") == 0);
	CHECK(a.fd == STDERR_FILENO && a.open && !a.owned);
	buf_puts(&b, "{\"stderr\":true}\n");
	CHECK(dlog_write(&a, &b) == 0);
	dlog_close(&a);
	CHECK(fcntl(STDERR_FILENO, F_GETFD) >= 0);

	rmdir(dir);
	buf_free(&b);
	printf("PASS writer\n");
}

static void
bench(void)
{
	const unsigned n = 200000;
	struct dlog_entry e = full;
	struct buf b = { 0 };
	struct timespec t0, t1;
	unsigned i;
	double ns;

	printf("RUN bench\n");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; i < n; i++) {
		e.time_us = NOW_US + i;
		e.attempt = i % 7 + 1;
		CHECK_FATAL(dlog_format(&b, &e) == 0);
		if (b.len > 256 * 1024)
			buf_reset(&b);	/* what dlog_write() does */
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ns = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 +
	    (double)(t1.tv_nsec - t0.tv_nsec)) / n;
	printf("bench: dlog_format %.0f ns/line (%.0f lines/s), %u lines\n",
	    ns, 1e9 / ns, n);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; i < n / 10; i++) {
		e.time_us = NOW_US + i;
		free(ref_format(&e));
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("bench: the jansson reference %.0f ns/line\n",
	    ((double)(t1.tv_sec - t0.tv_sec) * 1e9 +
	    (double)(t1.tv_nsec - t0.tv_nsec)) / (n / 10));
	buf_free(&b);
	printf("PASS bench\n");
}

int
main(void)
{
	reference();
	round_trip();
	tls_fields();
	escaping();
	long_strings();
	omitted();
	statuses();
	delays();
	writer();
	bench();
	return check_done();
}
