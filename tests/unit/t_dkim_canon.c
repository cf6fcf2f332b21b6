/*
 * Description: DKIM canonicalisation (RFC 6376 section 3.4) against
 * golden files. Each tests/golden/dkim/NAME.in is a message; NAME.ref
 * holds every header field canonicalised simple and relaxed, the body
 * canonicalised both ways, and both body hashes. The body is fed whole,
 * one byte at a time and in pieces of 2, 3, 7 and 64 bytes: every way
 * must give the .ref text.
 *
 * .in format: each line gets CRLF appended unless it ends in \c;
 * escapes \r \n \t \\ \xHH; lines starting "# " are comments.
 * .ref format: the output bytes with CR, LF, TAB, backslash and bytes
 * outside 0x20..0x7e escaped the same way, a real newline after each \n.
 * SLUICE_GOLDEN_UPDATE=1 rewrites the .ref files from the current output.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "../../dkim/dkim.h"
#include "check.h"

#define GOLDEN_DIR "tests/golden/dkim"

/* The .in text as message bytes. */
static void
parse_in(const char *text, struct buf *msg)
{
	const char *p = text;

	while (*p != '\0') {
		const char *eol = strchr(p, '\n');
		size_t n = eol != NULL ? (size_t)(eol - p) : strlen(p);

		if (n >= 2 && p[0] == '#' && p[1] == ' ') {
			p += n + (eol != NULL);
			continue;
		}
		check_unescape(msg, p, n);
		p += n + (eol != NULL);
	}
}

static void
render(struct buf *out, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c == '\r')
			CHECK(buf_puts(out, "\\r") == 0);
		else if (c == '\n')
			CHECK(buf_puts(out, "\\n\n") == 0);
		else if (c == '\t')
			CHECK(buf_puts(out, "\\t") == 0);
		else if (c == '\\')
			CHECK(buf_puts(out, "\\\\") == 0);
		else if (c < 0x20 || c > 0x7e)
			CHECK(buf_printf(out, "\\x%02x", c) == 0);
		else
			CHECK(buf_append(out, &p[i], 1) == 0);
	}
	if (n == 0 || p[n - 1] != '\n')
		CHECK(buf_puts(out, "\n") == 0);
}

/* Body canonicalisation of msg fed in pieces of step bytes (0: whole). */
static void
body(const struct buf *msg, enum dkim_canon c, size_t step, struct buf *copy,
    char b64[64])
{
	struct dkim_body b = { 0 };
	uint8_t h[DKIM_HASH_LEN];

	buf_reset(copy);
	b.copy = copy;
	CHECK(dkim_body_start(&b, c) == 0);
	if (step == 0) {
		dkim_body_feed(&b, msg->data, msg->len);
	} else {
		for (size_t i = 0; i < msg->len; i += step)
			dkim_body_feed(&b, msg->data + i,
			    msg->len - i < step ? msg->len - i : step);
	}
	CHECK(dkim_body_final(&b, h) == 0);
	EVP_EncodeBlock((unsigned char *)b64, h, DKIM_HASH_LEN);
	dkim_body_free(&b);
}

static int
run_case(const char *name)
{
	static const size_t steps[] = { 1, 2, 3, 7, 64 };
	char path[512], b64[64], b64s[64];
	struct buf msg = { 0 }, out = { 0 }, copy = { 0 }, c2 = { 0 };
	struct dkim_field f[64];
	char *in;
	size_t hlen;
	int nf, fails = check_failures;

	snprintf(path, sizeof(path), "%s/%s.in", GOLDEN_DIR, name);
	in = check_slurp(path, NULL);
	CHECK_FATAL(in != NULL);
	parse_in(in, &msg);
	hlen = dkim_header_end(msg.data, msg.len, NULL);
	nf = dkim_fields(msg.data, hlen, NULL, 0, f, 64);
	CHECK(nf >= 0);
	for (int c = DKIM_SIMPLE; c <= DKIM_RELAXED; c++) {
		CHECK(buf_printf(&out, "== header %s ==\n",
		    dkim_canon_name((enum dkim_canon)c)) == 0);
		buf_reset(&copy);
		for (int i = 0; i < nf; i++)
			CHECK(dkim_canon_header((enum dkim_canon)c,
			    msg.data + f[i].off, f[i].len, &copy) == 0);
		render(&out, copy.data, copy.len);
	}
	for (int c = DKIM_SIMPLE; c <= DKIM_RELAXED; c++) {
		body(&msg, (enum dkim_canon)c, 0, &copy, b64);
		CHECK(buf_printf(&out, "== body %s ==\n",
		    dkim_canon_name((enum dkim_canon)c)) == 0);
		render(&out, copy.data, copy.len);
		CHECK(buf_printf(&out, "== bh %s: %s\n",
		    dkim_canon_name((enum dkim_canon)c), b64) == 0);
		for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
			body(&msg, (enum dkim_canon)c, steps[s], &c2, b64s);
			CHECK(c2.len == copy.len &&
			    memcmp(c2.data, copy.data, c2.len) == 0);
			CHECK(strcmp(b64, b64s) == 0);
		}
	}
	snprintf(path, sizeof(path), "%s/%s.ref", GOLDEN_DIR, name);
	CHECK(check_golden(name, path, out.data, out.len));
	free(in);
	buf_free(&msg);
	buf_free(&out);
	buf_free(&copy);
	buf_free(&c2);
	return check_failures == fails;
}

int
main(void)
{
	DIR *d = opendir(GOLDEN_DIR);
	char name[256];
	int ncases = 0;

	CHECK_FATAL(d != NULL);
	while (check_golden_next(d, name, sizeof(name))) {
		printf("RUN %s\n", name);
		printf("%s %s\n", run_case(name) ? "PASS" : "FAIL", name);
		ncases++;
	}
	closedir(d);
	CHECK(ncases >= 8);
	return check_done();
}
