/*
 * fuzz_sasl.c - libFuzzer target: arbitrary AUTH responses into the
 * decoder (proto/sasl.c).
 *
 * The whole input is one response. Properties beyond "no crash": base64
 * is accepted only when its length is a multiple of four and every byte
 * before the padding is of the alphabet, and the length decoded is what
 * the text's length and padding say; a PLAIN response that decodes gives
 * a user name without control characters and a password without NUL,
 * which are the tail of the decoded bytes ("\0user\0pass"); LOGIN fields
 * agree with the plain base64 decoding.
 */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "../../proto/sasl.h"

static int
alphabet(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	    (c >= '0' && c <= '9') || c == '+' || c == '/';
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	unsigned char raw[8192 / 4 * 3 + 4];
	char user[SASL_FIELD_MAX + 1], pass[SASL_FIELD_MAX + 1];
	char field[SASL_FIELD_MAX + 1];
	size_t n, pad = 0, i, ul, pl;
	enum sasl_result r;
	int rc;

	if (size > 8192)
		return 0;
	rc = sasl_b64_decode(in, size, raw, sizeof(raw), &n);
	if (rc == 0 && size > 0) {
		assert(size % 4 == 0);
		if (in[size - 1] == '=')
			pad = in[size - 2] == '=' ? 2 : 1;
		for (i = 0; i < size - pad; i++)
			assert(alphabet((unsigned char)in[i]));
		assert(n == size / 4 * 3 - pad);
	}
	r = sasl_plain_decode(in, size, user, pass);
	if (r == SASL_OK) {
		assert(rc == 0);
		ul = strlen(user);
		pl = strlen(pass);
		assert(ul > 0 && ul <= SASL_FIELD_MAX);
		assert(pl > 0 && pl <= SASL_FIELD_MAX);
		for (i = 0; i < ul; i++)
			assert((unsigned char)user[i] >= 0x20 && user[i] != 0x7f);
		assert(n >= ul + pl + 2);
		assert(raw[n - pl - 1] == '\0' && raw[n - pl - ul - 2] == '\0');
		assert(memcmp(raw + n - pl, pass, pl) == 0);
		assert(memcmp(raw + n - pl - ul - 1, user, ul) == 0);
	} else {
		assert(user[0] == '\0' && pass[0] == '\0');
		if (rc != 0 && size <= SASL_B64_MAX)
			assert(r == SASL_BAD_BASE64);
	}
	if (sasl_login_decode(in, size, field, 0) == SASL_OK) {
		assert(rc == 0);
		assert(strlen(field) == n && memcmp(field, raw, n) == 0);
	}
	if (sasl_login_decode(in, size, field, 1) == SASL_OK)
		for (i = 0; field[i] != '\0'; i++)
			assert((unsigned char)field[i] >= 0x20);
	return 0;
}
