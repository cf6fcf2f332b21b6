/*
 * dkim_body.c - the body hash (RFC 6376 section 3.4.3, 3.4.4, 3.7),
 * computed while the message streams in.
 *
 * The message arrives in pieces split anywhere: a CRLF may straddle two
 * pieces, and so may a run of white space. Nothing is decided about a
 * byte that the next one could change:
 *   - a CR is held (b->cr) until the next byte says whether it ends a
 *     line (CRLF) or is content (a bare CR);
 *   - line ends are owed (b->crlf), not hashed, until content follows:
 *     empty lines at the end of the body are dropped by both
 *     canonicalisations, and only the end of the message says which
 *     empty lines those are;
 *   - relaxed: white space inside a line is held (b->wsp) until content
 *     follows it on the same line (one SP), or the line ends (none).
 * At the end a non-empty body gets exactly one CRLF (whether or not it
 * ended in one, so a BDAT message without a final CRLF hashes as it will
 * read once delivered); an empty one is CRLF (simple) or nothing
 * (relaxed).
 *
 * The header section is skipped first, up to and including the empty
 * line that ends it (dkim_header_end()'s rule, byte by byte).
 */
#include "dkim.h"

#include <errno.h>
#include <string.h>

#include <openssl/evp.h>

/* Header-section states: where in a line the skip is. */
enum {
	HS_LINE = 0,		/* at a line start */
	HS_LINE_CR,		/* a CR at a line start: the empty line? */
	HS_MID,			/* inside a line */
	HS_MID_CR,		/* a CR inside a line */
};

static const EVP_MD *
sha256(void)
{
	static _Atomic(EVP_MD *) md;
	EVP_MD *m = atomic_load(&md), *none = NULL;

	/* Fetched once: an implicit fetch per init costs a lookup. */
	if (m == NULL) {
		m = EVP_MD_fetch(NULL, "SHA256", NULL);
		if (m == NULL)
			return EVP_sha256();
		if (!atomic_compare_exchange_strong(&md, &none, m)) {
			EVP_MD_free(m);
			m = none;
		}
	}
	return m;
}

const EVP_MD *dkim_sha256(void);
const EVP_MD *
dkim_sha256(void)
{
	return sha256();
}

int
dkim_body_start(struct dkim_body *b, enum dkim_canon c)
{
	if (b->md == NULL && (b->md = EVP_MD_CTX_new()) == NULL)
		return -ENOMEM;
	b->canon = c;
	b->hdr = HS_LINE;
	b->in_body = false;
	b->cr = false;
	b->wsp = false;
	b->any = false;
	b->crlf = 0;
	b->len = 0;
	b->stage_len = 0;
	b->failed = EVP_DigestInit_ex(b->md, sha256(), NULL) != 1;
	return b->failed ? -EIO : 0;
}

static void
flush(struct dkim_body *b)
{
	if (b->stage_len == 0)
		return;
	if (!b->failed && EVP_DigestUpdate(b->md, b->stage, b->stage_len) != 1)
		b->failed = true;
	if (b->copy != NULL && buf_append(b->copy, b->stage, b->stage_len) < 0)
		b->failed = true;
	b->len += b->stage_len;
	b->stage_len = 0;
}

static inline void
put(struct dkim_body *b, const char *p, size_t n)
{
	if (n > sizeof(b->stage) - b->stage_len) {
		flush(b);
		if (n > sizeof(b->stage)) {
			/* A long run: straight to the digest. */
			if (!b->failed && EVP_DigestUpdate(b->md, p, n) != 1)
				b->failed = true;
			if (b->copy != NULL && buf_append(b->copy, p, n) < 0)
				b->failed = true;
			b->len += n;
			return;
		}
	}
	memcpy(b->stage + b->stage_len, p, n);
	b->stage_len += n;
}

static inline void
put1(struct dkim_body *b, char c)
{
	if (b->stage_len == sizeof(b->stage))
		flush(b);
	b->stage[b->stage_len++] = c;
}

/* Content follows: pay the line ends owed, then the held space. */
static inline void
content(struct dkim_body *b)
{
	for (; b->crlf > 0; b->crlf--) {
		put1(b, '\r');
		put1(b, '\n');
	}
	if (b->wsp) {
		put1(b, ' ');
		b->wsp = false;
	}
	b->any = true;
}

/* Skip header bytes; returns how many of p[0..n) were header. */
static size_t
skip_header(struct dkim_body *b, const char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		char c = p[i];

		switch (b->hdr) {
		case HS_LINE:
			b->hdr = c == '\r' ? HS_LINE_CR : HS_MID;
			break;
		case HS_LINE_CR:
			if (c == '\n') {
				b->in_body = true;
				return i + 1;
			}
			b->hdr = c == '\r' ? HS_MID_CR : HS_MID;
			break;
		case HS_MID:
			if (c == '\r') {
				b->hdr = HS_MID_CR;
			} else {
				const char *cr = memchr(p + i, '\r', n - i);

				/* The rest of the line up to its CR at once. */
				if (cr == NULL)
					return n;
				i = (size_t)(cr - p);
				b->hdr = HS_MID_CR;
			}
			break;
		case HS_MID_CR:
			b->hdr = c == '\n' ? HS_LINE : c == '\r' ? HS_MID_CR :
			    HS_MID;
			break;
		default:
			b->failed = true;
			return n;
		}
	}
	return n;
}

/* simple (3.4.3): runs of bytes without CR go to the digest whole. */
static void
feed_simple(struct dkim_body *b, const char *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		if (b->cr) {
			b->cr = false;
			if (p[i] == '\n') {
				b->crlf++;
				i++;
				continue;
			}
			content(b);
			put1(b, '\r');
		}
		if (p[i] == '\r') {
			b->cr = true;
			i++;
			continue;
		}
		const char *cr = memchr(p + i, '\r', n - i);
		size_t run = cr != NULL ? (size_t)(cr - (p + i)) : n - i;

		content(b);
		put(b, p + i, run);
		i += run;
	}
}

/*
 * relaxed (3.4.4): runs of WSP become one held SP; the bytes between
 * (neither CR nor WSP, most of a body) go on as whole runs.
 */
static void
feed_relaxed(struct dkim_body *b, const char *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		char c = p[i];

		if (b->cr) {
			b->cr = false;
			if (c == '\n') {
				b->wsp = false;	/* WSP at a line end goes */
				b->crlf++;
				i++;
				continue;
			}
			content(b);
			put1(b, '\r');
		}
		if (c == '\r') {
			b->cr = true;
			i++;
		} else if (c == ' ' || c == '\t') {
			b->wsp = true;
			i++;
		} else {
			size_t j = i + 1;

			while (j < n && p[j] != '\r' && p[j] != ' ' &&
			    p[j] != '\t')
				j++;
			content(b);
			put(b, p + i, j - i);
			i = j;
		}
	}
}

void
dkim_body_feed(struct dkim_body *b, const char *p, size_t n)
{
	if (b->md == NULL || n == 0)
		return;
	if (!b->in_body) {
		size_t h = skip_header(b, p, n);

		p += h;
		n -= h;
		if (!b->in_body || n == 0)
			return;
	}
	if (b->canon == DKIM_SIMPLE)
		feed_simple(b, p, n);
	else
		feed_relaxed(b, p, n);
}

int
dkim_body_final(struct dkim_body *b, uint8_t out[DKIM_HASH_LEN])
{
	unsigned int len = 0;

	if (b->md == NULL)
		return -EIO;
	if (b->cr) {		/* a CR at the very end is content */
		b->cr = false;
		content(b);
		put1(b, '\r');
	}
	/* Relaxed drops WSP at the end of the last line too. */
	b->wsp = false;
	if (b->any || b->canon == DKIM_SIMPLE) {
		put1(b, '\r');
		put1(b, '\n');
	}
	b->crlf = 0;
	flush(b);
	if (b->failed || EVP_DigestFinal_ex(b->md, out, &len) != 1 ||
	    len != DKIM_HASH_LEN)
		return -EIO;
	return 0;
}

void
dkim_body_free(struct dkim_body *b)
{
	EVP_MD_CTX_free(b->md);
	b->md = NULL;
}
