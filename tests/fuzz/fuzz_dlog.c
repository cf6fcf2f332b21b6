/*
 * fuzz_dlog.c - libFuzzer target: arbitrary field strings for the
 * delivery log line, deliver/dlog.c's dlog_format().
 *
 * Description: the first 24 input bytes set the numbers (time, next try,
 * code, attempt, size, delay - any double, NaN and infinities included -
 * and the status, sometimes outside the enum) and which string fields are
 * NULL; the rest, split at 0xFE bytes, gives the strings in field order
 * (invalid UTF-8, control characters, quotes, anything but NUL, which
 * ends a C string). Properties checked beyond "no crash":
 * - a bad status is refused with -EINVAL and the buffer untouched;
 * - otherwise the bytes appended (after a prefix already in the buffer)
 *   are exactly one line: one '\n', at the end;
 * - that line parses with jansson's json_loadb() as an object whose keys
 *   are the documented ones: "ts", "status" and "delay" always, each
 *   string field exactly when it is not NULL, each number exactly when it
 *   is not 0, "next" exactly when next_try_us is not 0;
 * - every string round-trips: a valid UTF-8 field comes back byte for
 *   byte, an invalid one comes back as the input with each byte that does
 *   not start a well-formed sequence replaced by U+FFFD (checked against
 *   a decoder written here, not dlog.c's);
 * - numbers come back as given; the delay is finite, in [0, 1e9], and
 *   within half a millisecond of the input when that was in range;
 *   timestamps have the RFC 3339 shape.
 */
#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../deliver/dlog.h"
#include "fuzz_util.h"

#define NSTR		10
#define FIELD_MAX	4096

static const char *const keys[NSTR] = {
	"qid", "from", "to", "dest", "transport", "mx", "addr", "enhanced",
	"text", "dsn_qid",
};

/* What the log must show for s: s, with bad bytes as U+FFFD. */
static char *
expected(const char *s, size_t *outlen)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s), i = 0, o = 0, k;
	char *out = malloc(3 * n + 1);

	assert(out != NULL);
	while (i < n) {
		k = fz_utf8_len(p + i, n - i);
		if (k == 0) {
			memcpy(out + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		} else {
			memcpy(out + o, s + i, k);
			o += k;
			i += k;
		}
	}
	*outlen = o;
	return out;
}

static void
check_ts(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	const char *s;
	static const char shape[] = "dddd-dd-ddTdd:dd:dd.ddddddZ";

	assert(json_is_string(v));
	s = json_string_value(v);
	assert(json_string_length(v) == sizeof(shape) - 1);
	for (size_t i = 0; i < sizeof(shape) - 1; i++)
		if (shape[i] == 'd')
			assert(s[i] >= '0' && s[i] <= '9');
		else
			assert(s[i] == shape[i]);
}

static void
check_int(json_t *o, const char *key, long long want)
{
	json_t *v = json_object_get(o, key);

	if (want == 0) {
		assert(v == NULL);
		return;
	}
	assert(json_is_integer(v));
	assert(json_integer_value(v) == want);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *str[NSTR] = { NULL };
	const char **field[NSTR];
	struct dlog_entry e;
	struct buf b = { 0 };
	json_error_t jerr;
	json_t *o, *v;
	size_t off = 24, prefix, keys_seen = 0;
	uint16_t nullmask;
	double delay;
	int rc;

	if (size < 24)
		return 0;
	memset(&e, 0, sizeof(e));
	e.time_us = fz_get64(data);
	e.next_try_us = data[8] & 1 ? fz_get64(data + 9) & 0xffffffffffffull : 0;
	memcpy(&delay, data + 9, sizeof(delay));
	e.delay_s = data[8] & 2 ? delay : (double)(data[17] * 3600 + data[18]);
	e.code = data[8] & 4 ? (int)(data[19] % 4 + 2) * 100 + data[20] % 100 :
	    0;
	e.attempt = data[20];
	e.size = data[8] & 8 ? (uint32_t)fz_get64(data + 13) : 0;
	e.status = (enum dlog_status)(data[21] % 7);
	nullmask = (uint16_t)(data[22] << 8 | data[23]);

	field[0] = &e.queue_id;
	field[1] = &e.sender;
	field[2] = &e.rcpt;
	field[3] = &e.destination;
	field[4] = &e.transport;
	field[5] = &e.mx;
	field[6] = &e.addr;
	field[7] = &e.enhanced;
	field[8] = &e.text;
	field[9] = &e.dsn_queue_id;
	for (int i = 0; i < NSTR; i++) {
		const uint8_t *cut = off < size ?
		    memchr(data + off, 0xfe, size - off) : NULL;
		size_t end = cut ? (size_t)(cut - data) : size, n;

		n = end > off ? end - off : 0;
		if (n > FIELD_MAX)
			n = FIELD_MAX;
		if (!(nullmask & (1u << i))) {
			str[i] = malloc(n + 1);
			assert(str[i] != NULL);
			memcpy(str[i], data + off, n);
			str[i][n] = '\0';
			*field[i] = str[i];
		}
		off = end < size ? end + 1 : size;
	}

	/* Something already in the buffer stays as it is. */
	assert(buf_puts(&b, "previous line\n") == 0);
	prefix = b.len;
	rc = dlog_format(&b, &e);
	if (dlog_status_name(e.status) == NULL) {
		assert(rc == -EINVAL);
		assert(b.len == prefix);
		goto done;
	}
	assert(rc == 0);
	assert(memcmp(b.data, "previous line\n", prefix) == 0);
	assert(b.len > prefix + 1 && b.data[b.len - 1] == '\n');
	assert(memchr(b.data + prefix, '\n', b.len - prefix - 1) == NULL);

	o = json_loadb(b.data + prefix, b.len - prefix - 1, 0, &jerr);
	assert(o != NULL);
	assert(json_is_object(o));

	check_ts(o, "ts");
	keys_seen++;
	v = json_object_get(o, "status");
	assert(json_is_string(v));
	assert(strcmp(json_string_value(v), dlog_status_name(e.status)) == 0);
	keys_seen++;
	v = json_object_get(o, "delay");
	assert(json_is_real(v) || json_is_integer(v));
	{
		double d = json_number_value(v);

		assert(isfinite(d) && d >= 0 && d <= 1e9);
		if (e.delay_s >= 0 && e.delay_s <= 1e9)
			assert(fabs(d - e.delay_s) <= 0.0005 + 1e-9 * d);
	}
	keys_seen++;
	if (e.next_try_us != 0) {
		check_ts(o, "next");
		keys_seen++;
	} else {
		assert(json_object_get(o, "next") == NULL);
	}
	check_int(o, "code", e.code);
	check_int(o, "attempt", e.attempt);
	check_int(o, "size", e.size);
	keys_seen += (e.code != 0) + (e.attempt != 0) + (e.size != 0);

	for (int i = 0; i < NSTR; i++) {
		v = json_object_get(o, keys[i]);
		if (str[i] == NULL) {
			assert(v == NULL);
			continue;
		}
		{
			size_t wantlen;
			char *want = expected(str[i], &wantlen);

			assert(json_is_string(v));
			assert(json_string_length(v) == wantlen);
			assert(memcmp(json_string_value(v), want, wantlen) == 0);
			free(want);
		}
		keys_seen++;
	}
	/* Nothing but the documented keys. */
	assert(json_object_size(o) == keys_seen);
	json_decref(o);
done:
	buf_free(&b);
	for (int i = 0; i < NSTR; i++)
		free(str[i]);
	return 0;
}
