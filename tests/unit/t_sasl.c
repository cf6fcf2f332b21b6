/*
 * Description: the AUTH response decoder (proto/sasl.c). Base64 is taken
 * only in its one padded spelling: EVP_DecodeBlock's leniencies (white
 * space, misplaced '=', padding counted in its length) never show. PLAIN
 * splits authzid/authcid/passwd with exactly two NULs, refuses empty and
 * overlong fields and an authzid naming another user; LOGIN takes one
 * field. The cases are a table; each prints RUN/PASS/FAIL.
 */
#include <string.h>

#include "../../proto/sasl.h"
#include "check.h"

struct b64_case {
	const char *in;
	int ok;
	const char *out;	/* expected bytes when ok */
	size_t outlen;
};

static const struct b64_case b64_cases[] = {
	{ "", 1, "", 0 },
	{ "QQ==", 1, "A", 1 },
	{ "QUI=", 1, "AB", 2 },
	{ "QUJD", 1, "ABC", 3 },
	{ "AGFsaWNlAHNlY3JldA==", 1, "\0alice\0secret", 13 },
	{ "QQ", 0, NULL, 0 },		/* padding is required */
	{ "QUI", 0, NULL, 0 },
	{ " QUJD", 0, NULL, 0 },	/* OpenSSL skips leading blanks */
	{ "QUJD ", 0, NULL, 0 },	/* and trailing ones */
	{ "QUJD\r\n", 0, NULL, 0 },
	{ "QU=D", 0, NULL, 0 },	/* '=' inside the last quantum */
	{ "Q=I=", 0, NULL, 0 },
	{ "=QUJ", 0, NULL, 0 },
	{ "====", 0, NULL, 0 },
	{ "QQ==QQ==", 0, NULL, 0 },	/* padding in the middle */
	{ "QUJ-", 0, NULL, 0 },	/* base64url is another alphabet */
	{ "QUJ_", 0, NULL, 0 },
	{ "QU\0D", 0, NULL, 0 },
	{ "*", 0, NULL, 0 },
	{ "=", 0, NULL, 0 },
};

static void
b64_table(void)
{
	unsigned char out[64];
	size_t i, n, len;

	for (i = 0; i < sizeof(b64_cases) / sizeof(b64_cases[0]); i++) {
		const struct b64_case *c = &b64_cases[i];
		int before = check_failures, rc;

		/* "QU\0D" is four bytes long. */
		len = strcmp(c->in, "QU") == 0 ? 4 : strlen(c->in);
		printf("RUN b64 '%s'\n", c->in);
		rc = sasl_b64_decode(c->in, len, out, sizeof(out), &n);
		CHECK((rc == 0) == (c->ok != 0));
		if (c->ok && rc == 0) {
			CHECK(n == c->outlen);
			CHECK(memcmp(out, c->out, c->outlen) == 0);
		}
		printf("%s b64 '%s'\n", check_failures == before ? "PASS" :
		    "FAIL", c->in);
	}
	/* The output must have room for what the text could hold. */
	printf("RUN b64 output too small\n");
	CHECK(sasl_b64_decode("QUJD", 4, out, 2, &n) != 0);
}

struct plain_case {
	const char *name;
	const char *b64;
	enum sasl_result res;
	const char *user, *pass;
};

/* The base64 strings were made with `printf 'a\0b\0c' | base64 -w0`. */
static const struct plain_case plain_cases[] = {
	{ "no authzid", "AGFsaWNlAHNlY3JldA==", SASL_OK, "alice",
	  "secret" },
	{ "authzid = authcid", "YWxpY2UAYWxpY2UAc2VjcmV0", SASL_OK, "alice",
	  "secret" },
	{ "authzid names another user", "Ym9iAGFsaWNlAHNlY3JldA==",
	  SASL_AUTHZID, "", "" },
	{ "authzid a prefix of authcid", "YWxpAGFsaWNlAHNlY3JldA==",
	  SASL_AUTHZID, "", "" },
	{ "one NUL only", "YWxpY2UAc2VjcmV0", SASL_BAD_MESSAGE, "", "" },
	{ "no NUL", "YWxpY2U=", SASL_BAD_MESSAGE, "", "" },
	{ "three NULs", "AGFsaWNlAHNlYwByZXQ=", SASL_BAD_MESSAGE, "", "" },
	{ "empty user", "AABzZWNyZXQ=", SASL_BAD_MESSAGE, "", "" },
	{ "empty password", "AGFsaWNlAA==", SASL_BAD_MESSAGE, "", "" },
	{ "empty response", "", SASL_BAD_MESSAGE, "", "" },
	{ "not base64", "AGFsaWNlAHNlY3JldA", SASL_BAD_BASE64, "", "" },
	{ "CR in the user name", "AGFsaQ1jZQBzZWNyZXQ=", SASL_BAD_MESSAGE,
	  "", "" },
	{ "not UTF-8", "AGFs/2ljZQBzZWNyZXQ=", SASL_BAD_MESSAGE, "", "" },
	{ "UTF-8 password", "AGFsaWNlAGdyw7zDnw==", SASL_OK, "alice",
	  "gr\xc3\xbc\xc3\x9f" },
	{ "password with spaces and colons", "AGFsaWNlAGEgYjpj", SASL_OK,
	  "alice", "a b:c" },
};

static void
plain_table(void)
{
	char user[SASL_FIELD_MAX + 1], pass[SASL_FIELD_MAX + 1];
	size_t i;

	for (i = 0; i < sizeof(plain_cases) / sizeof(plain_cases[0]); i++) {
		const struct plain_case *c = &plain_cases[i];
		int before = check_failures;

		printf("RUN plain %s\n", c->name);
		CHECK(sasl_plain_decode(c->b64, strlen(c->b64), user, pass) ==
		    c->res);
		CHECK(strcmp(user, c->user) == 0);
		CHECK(strcmp(pass, c->pass) == 0);
		printf("%s plain %s\n", check_failures == before ? "PASS" :
		    "FAIL", c->name);
	}
}

/* Base64 of s[0..n) the slow way, for the length cases. */
static void
encode(const unsigned char *s, size_t n, char *out)
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i, o = 0;

	for (i = 0; i < n; i += 3) {
		unsigned v = (unsigned)s[i] << 16;

		if (i + 1 < n)
			v |= (unsigned)s[i + 1] << 8;
		if (i + 2 < n)
			v |= s[i + 2];
		out[o++] = a[v >> 18 & 63];
		out[o++] = a[v >> 12 & 63];
		out[o++] = i + 1 < n ? a[v >> 6 & 63] : '=';
		out[o++] = i + 2 < n ? a[v & 63] : '=';
	}
	out[o] = '\0';
}

static void
lengths(void)
{
	unsigned char msg[1024];
	char b64[2048], user[SASL_FIELD_MAX + 1], pass[SASL_FIELD_MAX + 1];
	size_t n;

	printf("RUN plain fields of 255 bytes each\n");
	n = 0;
	memset(msg + n, 'u', 255), n += 255;
	msg[n++] = '\0';
	memset(msg + n, 'u', 255), n += 255;
	msg[n++] = '\0';
	memset(msg + n, 'p', 255), n += 255;
	encode(msg, n, b64);
	CHECK(strlen(b64) <= SASL_B64_MAX);
	CHECK(sasl_plain_decode(b64, strlen(b64), user, pass) == SASL_OK);
	CHECK(strlen(user) == 255 && strlen(pass) == 255);

	printf("RUN plain password of 256 bytes\n");
	n = 0;
	msg[n++] = '\0';
	memcpy(msg + n, "alice", 5), n += 5;
	msg[n++] = '\0';
	memset(msg + n, 'p', 256), n += 256;
	encode(msg, n, b64);
	CHECK(sasl_plain_decode(b64, strlen(b64), user, pass) ==
	    SASL_BAD_MESSAGE);
	CHECK(pass[0] == '\0');

	printf("RUN plain response past the longest possible\n");
	memset(b64, 'A', SASL_B64_MAX + 4);
	b64[SASL_B64_MAX + 4] = '\0';
	CHECK(sasl_plain_decode(b64, strlen(b64), user, pass) ==
	    SASL_BAD_MESSAGE);

	printf("RUN login fields\n");
	CHECK(sasl_login_decode("YWxpY2U=", 8, user, 1) == SASL_OK);
	CHECK(strcmp(user, "alice") == 0);
	CHECK(sasl_login_decode("", 0, user, 1) == SASL_BAD_MESSAGE);
	CHECK(sasl_login_decode("YWxpY2U", 7, user, 1) == SASL_BAD_BASE64);
	/* "al\0ice" */
	CHECK(sasl_login_decode("YWwAaWNl", 8, user, 1) == SASL_BAD_MESSAGE);
	/* "a\tb": a tab is fine in a password, not in a user name */
	CHECK(sasl_login_decode("YQli", 4, pass, 0) == SASL_OK);
	CHECK(strcmp(pass, "a\tb") == 0);
	CHECK(sasl_login_decode("YQli", 4, user, 1) == SASL_BAD_MESSAGE);
	memset(msg, 'p', 256);
	encode(msg, 256, b64);
	CHECK(sasl_login_decode(b64, strlen(b64), pass, 0) ==
	    SASL_BAD_MESSAGE);
	encode(msg, 255, b64);
	CHECK(sasl_login_decode(b64, strlen(b64), pass, 0) == SASL_OK);
}

int
main(void)
{
	b64_table();
	plain_table();
	lengths();
	return check_done();
}
