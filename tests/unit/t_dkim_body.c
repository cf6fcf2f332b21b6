/*
 * Description: the streaming DKIM body hash across chunk boundaries. Every
 * message below is fed split at every single point, at every pair of
 * points, and byte by byte, for both canonicalisations: each way must give
 * the hash of the message fed whole. Known hashes pin the whole-message
 * results: the empty body (RFC 6376 section 3.4.3 and 3.4.4: CRLF for
 * simple, nothing for relaxed) and RFC 8463's example body.
 */
#include <string.h>

#include <openssl/evp.h>

#include "../../dkim/dkim.h"
#include "check.h"

static void
hash_pieces(const char *m, size_t n, enum dkim_canon c, const size_t *cuts,
    size_t ncuts, char out[64])
{
	struct dkim_body b = { 0 };
	uint8_t h[DKIM_HASH_LEN];
	size_t at = 0;

	CHECK_FATAL(dkim_body_start(&b, c) == 0);
	for (size_t i = 0; i < ncuts; i++) {
		dkim_body_feed(&b, m + at, cuts[i] - at);
		at = cuts[i];
	}
	dkim_body_feed(&b, m + at, n - at);
	CHECK(dkim_body_final(&b, h) == 0);
	EVP_EncodeBlock((unsigned char *)out, h, DKIM_HASH_LEN);
	dkim_body_free(&b);
}

static const char *const msgs[] = {
	"From: a@b\r\n\r\nHi.\r\n\r\nWe lost the game.  Are you hungry "
	    "yet?\r\n\r\nJoe.\r\n",
	"From: a@b\r\n\r\n",
	"From: a@b\r\n\r\n\r\n\r\n\r\n",
	"From: a@b\r\n\r\n \t \r\n  x  \t\r\n\r\n\t\r\n",
	"From: a@b\r\n\r\nno final crlf  ",
	"From: a@b\r\n\r\nbare\rcr\r\r\n\r",
	"\r\n\r\n  body after an empty header section \r\n",
	"Subject: no body\r\nFrom: a@b",
	"From: a@b\r\n\r\n.\r\n..\r\n.x\r\n",
	"X: \xc3\xa9\r\n\r\n\xc3\xa9  \xe2\x80\x94\t\r\n\r\n",
};

int
main(void)
{
	char whole[64], part[64];

	for (size_t k = 0; k < sizeof(msgs) / sizeof(msgs[0]); k++) {
		const char *m = msgs[k];
		size_t n = strlen(m);

		for (int c = DKIM_SIMPLE; c <= DKIM_RELAXED; c++) {
			size_t cuts[2], bytes[512];

			hash_pieces(m, n, (enum dkim_canon)c, NULL, 0, whole);
			for (cuts[0] = 0; cuts[0] <= n; cuts[0]++) {
				hash_pieces(m, n, (enum dkim_canon)c, cuts, 1,
				    part);
				CHECK(strcmp(whole, part) == 0);
				for (cuts[1] = cuts[0]; cuts[1] <= n;
				    cuts[1]++) {
					hash_pieces(m, n, (enum dkim_canon)c,
					    cuts, 2, part);
					CHECK(strcmp(whole, part) == 0);
				}
			}
			CHECK_FATAL(n < sizeof(bytes) / sizeof(bytes[0]));
			for (size_t i = 0; i < n; i++)
				bytes[i] = i + 1;
			hash_pieces(m, n, (enum dkim_canon)c, bytes, n - 1,
			    part);
			CHECK(strcmp(whole, part) == 0);
		}
	}

	/* The empty body, both ways (RFC 6376 3.4.3, 3.4.4). */
	hash_pieces(msgs[1], strlen(msgs[1]), DKIM_SIMPLE, NULL, 0, whole);
	CHECK(strcmp(whole, "frcCV1k9oG9oKj3dpUqdJg1PxRT2RSN/XKdLCPjaYaY=") ==
	    0);
	hash_pieces(msgs[1], strlen(msgs[1]), DKIM_RELAXED, NULL, 0, whole);
	CHECK(strcmp(whole, "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=") ==
	    0);
	/* Only empty lines: the same as no body. */
	hash_pieces(msgs[2], strlen(msgs[2]), DKIM_SIMPLE, NULL, 0, part);
	CHECK(strcmp(part, "frcCV1k9oG9oKj3dpUqdJg1PxRT2RSN/XKdLCPjaYaY=") ==
	    0);
	/* RFC 8463 appendix A: bh= of the example message, relaxed. */
	hash_pieces(msgs[0], strlen(msgs[0]), DKIM_RELAXED, NULL, 0, whole);
	CHECK(strcmp(whole, "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=") ==
	    0);
	/* A body without its final CRLF hashes as one with it. */
	{
		static const char a[] = "From: a@b\r\n\r\nx y\r\n";
		static const char b[] = "From: a@b\r\n\r\nx y";

		for (int c = DKIM_SIMPLE; c <= DKIM_RELAXED; c++) {
			hash_pieces(a, strlen(a), (enum dkim_canon)c, NULL, 0,
			    whole);
			hash_pieces(b, strlen(b), (enum dkim_canon)c, NULL, 0,
			    part);
			CHECK(strcmp(whole, part) == 0);
		}
	}
	return check_done();
}
