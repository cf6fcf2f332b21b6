/*
 * fuzz_http.c - libFuzzer target: arbitrary bytes as what a client sent
 * the metrics endpoint, for proto/http.c's http_parse().
 *
 * Description: the whole input is the bytes read so far. Properties
 * checked beyond "no crash":
 * - "more" is asked for only within HTTP_HEAD_MAX bytes;
 * - a refusal has one of the statuses http.h lists, a reason of
 *   printable ASCII, and a reason phrase;
 * - an accepted head is no longer than the input, has a token method, a
 *   path starting with '/' within HTTP_TARGET_MAX, version 1.0 or 1.1;
 *   the head alone gives the same result, and every shorter prefix of
 *   it asks for more (prefixes sampled on long heads);
 * - a refusal of a prefix holds for the whole input: the verdict does
 *   not depend on how the bytes were cut.
 */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "../../proto/http.h"

static void
check_bad(const struct http_req *r)
{
	assert(r->status == 400 || r->status == 414 || r->status == 431 ||
	    r->status == 501 || r->status == 505);
	assert(r->why != NULL && r->why[0] != '\0');
	for (const char *p = r->why; *p != '\0'; p++)
		assert((unsigned char)*p >= 0x20 && (unsigned char)*p <= 0x7e);
	assert(strcmp(http_reason(r->status), "Error") != 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data;
	struct http_req r, r2;
	enum http_result res = http_parse(p, size, &r);
	size_t step;

	switch (res) {
	case HTTP_MORE:
		assert(size <= HTTP_HEAD_MAX);
		break;
	case HTTP_BAD:
		check_bad(&r);
		break;
	case HTTP_DONE:
		assert(r.head_len > 0 && r.head_len <= size);
		assert(r.head_len <= HTTP_HEAD_MAX);
		assert(r.method[0] != '\0' && strlen(r.method) <= HTTP_METHOD_MAX);
		assert(r.path[0] == '/' && strlen(r.path) <= HTTP_TARGET_MAX);
		assert(r.minor <= 1);
		assert(http_parse(p, r.head_len, &r2) == HTTP_DONE);
		assert(r2.head_len == r.head_len);
		assert(strcmp(r2.method, r.method) == 0);
		assert(strcmp(r2.path, r.path) == 0);
		step = r.head_len > 256 ? r.head_len / 64 : 1;
		for (size_t n = 0; n < r.head_len; n += step)
			assert(http_parse(p, n, &r2) == HTTP_MORE);
		break;
	default:
		assert(!"bad result");
	}
	/* A refusal of a prefix stands for the whole. */
	step = size > 256 ? size / 64 : 1;
	for (size_t n = 0; n < size; n += step)
		if (http_parse(p, n, &r2) == HTTP_BAD)
			assert(res == HTTP_BAD);
	return 0;
}
