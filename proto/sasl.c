/*
 * sasl.c - SMTP AUTH response decoding; see sasl.h.
 */
#include "sasl.h"

#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "smtp_parse.h"

static bool
b64_char(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	    (c >= '0' && c <= '9') || c == '+' || c == '/';
}

int
sasl_b64_decode(const char *in, size_t len, unsigned char *out, size_t cap,
    size_t *outlen)
{
	size_t i, pad = 0;
	int n;

	*outlen = 0;
	if (len == 0)
		return 0;
	/*
	 * EVP_DecodeBlock skips white space at both ends and takes '=' for
	 * zero bits wherever it stands in the last quantum: check the text
	 * first, so that exactly one spelling of each response is accepted.
	 */
	if (len % 4 != 0 || len / 4 * 3 > cap || len > INT32_MAX)
		return -1;
	if (in[len - 1] == '=')
		pad = in[len - 2] == '=' ? 2 : 1;
	for (i = 0; i < len - pad; i++)
		if (!b64_char((unsigned char)in[i]))
			return -1;
	n = EVP_DecodeBlock(out, (const unsigned char *)in, (int)len);
	if (n < 0 || (size_t)n != len / 4 * 3) {
		OPENSSL_cleanse(out, cap);
		return -1;
	}
	/* Its length counts the padding's zero bytes too. */
	*outlen = (size_t)n - pad;
	return 0;
}

/* A field of a response: UTF-8, no NUL; a user name no controls either. */
static bool
field_ok(const unsigned char *p, size_t n, bool is_user)
{
	size_t i;

	if (n == 0 || n > SASL_FIELD_MAX)
		return false;
	for (i = 0; i < n; i++) {
		if (p[i] == '\0')
			return false;
		if (is_user && (p[i] < 0x20 || p[i] == 0x7f))
			return false;
	}
	return smtp_utf8_valid((const char *)p, n);
}

enum sasl_result
sasl_plain_decode(const char *in, size_t len, char user[SASL_FIELD_MAX + 1],
    char pass[SASL_FIELD_MAX + 1])
{
	unsigned char buf[SASL_B64_MAX / 4 * 3];
	const unsigned char *authz, *authc, *pw, *nul1, *nul2, *end;
	enum sasl_result res = SASL_BAD_MESSAGE;
	size_t n;

	user[0] = pass[0] = '\0';
	if (len > SASL_B64_MAX)
		return SASL_BAD_MESSAGE;
	if (sasl_b64_decode(in, len, buf, sizeof(buf), &n) != 0)
		return SASL_BAD_BASE64;
	end = buf + n;
	authz = buf;
	nul1 = memchr(buf, '\0', n);
	if (nul1 == NULL)
		goto out;
	authc = nul1 + 1;
	nul2 = memchr(authc, '\0', (size_t)(end - authc));
	if (nul2 == NULL)
		goto out;
	pw = nul2 + 1;
	/* A third NUL is caught by field_ok() on the password. */
	if (nul1 - authz > SASL_FIELD_MAX ||
	    !field_ok(authc, (size_t)(nul2 - authc), true) ||
	    !field_ok(pw, (size_t)(end - pw), false))
		goto out;
	if (nul1 != authz && (nul1 - authz != nul2 - authc ||
	    memcmp(authz, authc, (size_t)(nul1 - authz)) != 0)) {
		res = SASL_AUTHZID;
		goto out;
	}
	memcpy(user, authc, (size_t)(nul2 - authc));
	user[nul2 - authc] = '\0';
	memcpy(pass, pw, (size_t)(end - pw));
	pass[end - pw] = '\0';
	res = SASL_OK;
out:
	OPENSSL_cleanse(buf, sizeof(buf));
	return res;
}

enum sasl_result
sasl_login_decode(const char *in, size_t len, char out[SASL_FIELD_MAX + 1],
    int is_user)
{
	unsigned char buf[SASL_B64_MAX / 4 * 3];
	enum sasl_result res = SASL_BAD_MESSAGE;
	size_t n;

	out[0] = '\0';
	if (len > SASL_B64_MAX)
		return SASL_BAD_MESSAGE;
	if (sasl_b64_decode(in, len, buf, sizeof(buf), &n) != 0)
		return SASL_BAD_BASE64;
	if (field_ok(buf, n, is_user != 0)) {
		memcpy(out, buf, n);
		out[n] = '\0';
		res = SASL_OK;
	}
	OPENSSL_cleanse(buf, sizeof(buf));
	return res;
}
