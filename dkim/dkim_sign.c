/*
 * dkim_sign.c - the signing policy (which keys sign a message), the
 * DKIM-Signature field (RFC 6376 section 3.5) and the signature itself.
 *
 * A message is signed once per key its From: domain has (several keys:
 * several fields, e.g. RSA and Ed25519 side by side as RFC 8463 section 6
 * suggests). Every field covers the same header fields, so their
 * canonical form is computed once per message and only the
 * DKIM-Signature field itself is hashed per key.
 *
 * Signed fields (h=): every instance of each configured name present in
 * the message, so that none can be added without breaking the
 * signature, and From once more than it occurs (oversigned: a second
 * From added later breaks it too, RFC 6376 section 8.15). Names absent
 * from the message are left out of h=.
 *
 * Contract: dkim_sign_message() appends whole fields or nothing. The
 * signer's OpenSSL contexts are its own: one struct dkim_signer per
 * thread; the keys and the policy are shared read-only.
 */
#include "dkim_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/rsa.h>

/* RFC 6376 section 5.4.1's list, with the MIME fields and RFC 8058's. */
const char *const dkim_default_headers[] = {
	"from", "reply-to", "subject", "date", "to", "cc", "message-id",
	"in-reply-to", "references", "mime-version", "content-type",
	"content-transfer-encoding", "content-disposition",
	"list-unsubscribe", "list-unsubscribe-post", NULL,
};

#define FOLD_WIDTH 76		/* columns before a field line is folded */

/*
 * A key's signing context in one thread, set up at its first use and kept:
 * setting one up costs more than an Ed25519 signature (measured: 52 us a
 * signature with one set up each time, against 29 us for openssl speed).
 */
struct sign_slot {
	EVP_PKEY_CTX *rsa;		/* EVP_PKEY_sign() with SHA-256 */
	EVP_MD_CTX *ed;			/* one-shot EVP_DigestSign() */
};

struct dkim_signer {
	const struct dkim_policy *pol;
	EVP_MD_CTX *md;			/* the header hash */
	struct sign_slot *slots;	/* per policy entry */
	struct dkim_field fields[DKIM_FIELDS_MAX];
	struct buf canon;		/* the message's canonical fields */
	struct buf sig;			/* one DKIM-Signature being built */
	struct buf sigc;		/* ... canonicalised */
	struct buf hlist;		/* h= value */
};

int
dkim_b64_append(struct buf *out, const void *p, size_t n)
{
	size_t need = 4 * ((n + 2) / 3);
	int rc;

	if ((rc = buf_reserve(out, need + 1)) < 0)
		return rc;
	/* EVP_EncodeBlock writes a NUL after the text: reserved above. */
	EVP_EncodeBlock((unsigned char *)out->data + out->len, p, (int)n);
	out->len += need;
	return 0;
}

/* ---- policy ---------------------------------------------------------- */

static int
entry_cmp(const void *a, const void *b)
{
	const struct dkim_entry *x = a, *y = b;
	int c = strcmp(x->domain, y->domain);

	/* Same domain: keep the order written (then by address). */
	if (c != 0)
		return c;
	return x < y ? -1 : x > y;
}

int
dkim_policy_init(struct dkim_policy *pol, const struct dkim_entry *e,
    size_t n)
{
	memset(pol, 0, sizeof(*pol));
	if (n > 0) {
		pol->entries = calloc(n, sizeof(*e));
		if (pol->entries == NULL)
			return -ENOMEM;
		memcpy(pol->entries, e, n * sizeof(*e));
		/* qsort is not stable: the address tie-break above keeps the
		 * copied order, as the copy is in the order written. */
		qsort(pol->entries, n, sizeof(*e), entry_cmp);
	}
	pol->nentries = n;
	pol->mode = DKIM_DOMAIN_FROM;
	pol->hcanon = DKIM_RELAXED;
	pol->bcanon = DKIM_RELAXED;
	for (size_t i = 0; dkim_default_headers[i] != NULL; i++)
		pol->headers[pol->nheaders++] = dkim_default_headers[i];
	return 0;
}

void
dkim_policy_free(struct dkim_policy *pol)
{
	free(pol->entries);
	pol->entries = NULL;
	pol->nentries = 0;
}

int
dkim_policy_headers(struct dkim_policy *pol, const char *const *names,
    size_t n)
{
	bool from = false;

	if (n == 0 || n > DKIM_HEADERS_MAX)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (strcasecmp(names[i], "from") == 0)
			from = true;
		pol->headers[i] = names[i];
	}
	/* RFC 6376 section 5.4: From must be signed. */
	if (!from)
		return -EINVAL;
	pol->nheaders = n;
	return 0;
}

/* First entry for domain and how many; 0 when none. */
static size_t
entries_for(const struct dkim_policy *pol, const char *domain, size_t *first)
{
	size_t lo = 0, hi = pol->nentries, n = 0;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (strcmp(pol->entries[mid].domain, domain) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	while (lo + n < pol->nentries &&
	    strcmp(pol->entries[lo + n].domain, domain) == 0)
		n++;
	*first = lo;
	return n;
}

/*
 * The domain of the one address in a From: field's value (RFC 5322
 * 3.4): comments and quoted strings skipped, the angle-addr if there is
 * one. -1 for no address, -2 for more than one.
 */
static int
from_domain(const char *v, size_t n, char *out, size_t outlen)
{
	char addr[512];
	size_t a = 0, i, depth = 0, angles = 0, o = 0;
	bool quoted = false, in_angle = false, have_angle = false;
	const char *at;

	for (i = 0; i < n; i++) {
		char c = v[i];

		if (quoted) {
			if (c == '\\')
				i++;
			else if (c == '"')
				quoted = false;
			continue;
		}
		if (depth > 0) {
			if (c == '\\')
				i++;
			else if (c == '(')
				depth++;
			else if (c == ')')
				depth--;
			continue;
		}
		if (c == '(') {
			depth++;
		} else if (c == '"' && !in_angle) {
			quoted = true;
		} else if (c == '<' && !in_angle) {
			if (++angles > 1)
				return -2;
			in_angle = have_angle = true;
			a = 0;
		} else if (c == '>' && in_angle) {
			in_angle = false;
		} else if (c == ',' && !in_angle) {
			return -2;
		} else if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			continue;
		} else if ((in_angle || !have_angle) && a + 1 < sizeof(addr)) {
			addr[a++] = c;
		}
	}
	addr[a] = '\0';
	at = strrchr(addr, '@');
	if (at == NULL || at[1] == '\0')
		return -1;
	for (at++; *at != '\0' && o + 1 < outlen; at++)
		out[o++] = *at >= 'A' && *at <= 'Z' ? (char)(*at - 'A' + 'a') :
		    *at;
	while (o > 0 && out[o - 1] == '.')
		o--;
	out[o] = '\0';
	return o > 0 ? 0 : -1;
}

enum dkim_pick_result
dkim_policy_pick(const struct dkim_policy *pol, const char *msg, size_t len,
    struct dkim_pick *pick)
{
	static const char *const from_name[] = { "from" };
	struct dkim_field f[2];
	const char *d;
	int nf, rc;

	memset(pick, 0, sizeof(*pick));
	pick->hdr_len = dkim_header_end(msg, len, NULL);
	nf = dkim_fields(msg, pick->hdr_len, from_name, 1, f, 2);
	if (pol->mode == DKIM_DOMAIN_FIXED) {
		snprintf(pick->from_domain, sizeof(pick->from_domain), "%s",
		    pol->fixed);
		pick->count = entries_for(pol, pol->fixed, &pick->first);
		return pick->count > 0 ? DKIM_PICK_OK : DKIM_PICK_NO_KEY;
	}
	if (nf < 0 || nf > 1)
		return DKIM_PICK_MANY_FROM;
	if (nf == 0)
		return DKIM_PICK_NO_FROM;
	rc = from_domain(msg + f[0].off + f[0].name_len + 1,
	    f[0].len - f[0].name_len - 1, pick->from_domain,
	    sizeof(pick->from_domain));
	if (rc == -2)
		return DKIM_PICK_MANY_FROM;
	if (rc < 0)
		return DKIM_PICK_NO_FROM;
	for (d = pick->from_domain; d != NULL; ) {
		pick->count = entries_for(pol, d, &pick->first);
		if (pick->count > 0 || pol->mode != DKIM_DOMAIN_PARENT)
			break;
		d = strchr(d, '.');
		if (d != NULL)
			d++;
	}
	return pick->count > 0 ? DKIM_PICK_OK : DKIM_PICK_NO_KEY;
}

const char *
dkim_pick_reason(enum dkim_pick_result r)
{
	switch (r) {
	case DKIM_PICK_OK:		return "signed";
	case DKIM_PICK_NO_KEY:		return "no key for the domain";
	case DKIM_PICK_NO_FROM:		return "no From: address";
	case DKIM_PICK_MANY_FROM:	return "more than one From: address";
	default:			return "?";
	}
}

/* ---- the signer ------------------------------------------------------ */

struct dkim_signer *
dkim_signer_new(const struct dkim_policy *pol)
{
	struct dkim_signer *sg = calloc(1, sizeof(*sg));

	if (sg == NULL)
		return NULL;
	sg->pol = pol;
	sg->md = EVP_MD_CTX_new();
	if (pol != NULL && pol->nentries > 0)
		sg->slots = calloc(pol->nentries, sizeof(*sg->slots));
	if (sg->md == NULL ||
	    (pol != NULL && pol->nentries > 0 && sg->slots == NULL)) {
		dkim_signer_free(sg);
		return NULL;
	}
	return sg;
}

void
dkim_signer_free(struct dkim_signer *sg)
{
	if (sg == NULL)
		return;
	for (size_t i = 0; sg->slots != NULL && i < sg->pol->nentries; i++) {
		EVP_PKEY_CTX_free(sg->slots[i].rsa);
		EVP_MD_CTX_free(sg->slots[i].ed);
	}
	free(sg->slots);
	EVP_MD_CTX_free(sg->md);
	buf_free(&sg->canon);
	buf_free(&sg->sig);
	buf_free(&sg->sigc);
	buf_free(&sg->hlist);
	free(sg);
}

/*
 * Canonicalise, into sg->canon, the fields h_list names, each taken
 * bottom-up from f[0..nf) (RFC 6376 5.4.2); a name with no instance
 * left contributes nothing (its null string).
 */
static int
canon_fields(struct dkim_signer *sg, enum dkim_canon c, const char *hdr,
    struct dkim_field *f, size_t nf, const char *h_list)
{
	const char *p = h_list;
	int rc;

	buf_reset(&sg->canon);
	for (size_t i = 0; i < nf; i++)
		f[i].used = false;
	while (*p != '\0') {
		const char *end = strchr(p, ':'), *ne;
		struct dkim_field *fl;

		if (end == NULL)
			end = p + strlen(p);
		while (p < end && strchr(" \t\r\n", *p) != NULL)
			p++;
		ne = end;
		while (ne > p && strchr(" \t\r\n", ne[-1]) != NULL)
			ne--;
		if (ne > p) {
			fl = dkim_field_take(hdr, f, nf, p, (size_t)(ne - p));
			if (fl != NULL &&
			    (rc = dkim_canon_header(c, hdr + fl->off, fl->len,
			    &sg->canon)) < 0)
				return rc;
		}
		p = *end == ':' ? end + 1 : end;
	}
	return 0;
}

/* The hash of sg->canon then the signature field sig, canonicalised. */
static int
hash_with_sig(struct dkim_signer *sg, enum dkim_canon c, const char *sig,
    size_t sig_len, uint8_t out[DKIM_HASH_LEN])
{
	unsigned int len = 0;
	int rc;

	buf_reset(&sg->sigc);
	if ((rc = dkim_canon_header(c, sig, sig_len, &sg->sigc)) < 0)
		return rc;
	sg->sigc.len -= 2;	/* section 3.7: without its final CRLF */
	if (EVP_DigestInit_ex(sg->md, dkim_sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(sg->md, sg->canon.data, sg->canon.len) != 1 ||
	    EVP_DigestUpdate(sg->md, sg->sigc.data, sg->sigc.len) != 1 ||
	    EVP_DigestFinal_ex(sg->md, out, &len) != 1 || len != DKIM_HASH_LEN)
		return -EIO;
	return 0;
}

int
dkim_hash_headers(struct dkim_signer *sg, enum dkim_canon c,
    const char *hdr, size_t hdr_len, const char *h_list, const char *sig,
    size_t sig_len, uint8_t out[DKIM_HASH_LEN])
{
	int nf, rc;

	nf = dkim_fields(hdr, hdr_len, NULL, 0, sg->fields, DKIM_FIELDS_MAX);
	if (nf < 0)
		return nf;
	if ((rc = canon_fields(sg, c, hdr, sg->fields, (size_t)nf,
	    h_list)) < 0)
		return rc;
	return hash_with_sig(sg, c, sig, sig_len, out);
}

static int
sign_with(struct sign_slot *slot, const struct dkim_key *key,
    const uint8_t hash[DKIM_HASH_LEN], uint8_t *sig, size_t *sig_len)
{
	EVP_PKEY_CTX *ctx;
	size_t len = DKIM_SIG_MAX;

	if (key->alg == DKIM_ED25519_SHA256) {
		/*
		 * RFC 8463 section 3: PureEdDSA over the SHA-256 hash. A
		 * one-shot EVP_DigestSign() leaves its context ready for the
		 * next: it is set up once per thread and key.
		 */
		if (slot->ed == NULL) {
			slot->ed = EVP_MD_CTX_new();
			if (slot->ed == NULL ||
			    EVP_DigestSignInit(slot->ed, NULL, NULL, NULL,
			    key->pkey) != 1) {
				EVP_MD_CTX_free(slot->ed);
				slot->ed = NULL;
				return -EIO;
			}
		}
		if (EVP_DigestSign(slot->ed, sig, &len, hash,
		    DKIM_HASH_LEN) != 1)
			return -EIO;
		*sig_len = len;
		return 0;
	}
	/*
	 * RSASSA-PKCS1-v1_5 of a SHA-256 hash made already: the same
	 * signature EVP_DigestSign() would give over the data, without a
	 * context set up per message. The context is the thread's own.
	 */
	if ((ctx = slot->rsa) == NULL) {
		ctx = EVP_PKEY_CTX_new(key->pkey, NULL);
		if (ctx == NULL || EVP_PKEY_sign_init(ctx) != 1 ||
		    EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) != 1 ||
		    EVP_PKEY_CTX_set_signature_md(ctx, dkim_sha256()) != 1) {
			EVP_PKEY_CTX_free(ctx);
			return -EIO;
		}
		slot->rsa = ctx;
	}
	if (EVP_PKEY_sign(ctx, sig, &len, hash, DKIM_HASH_LEN) != 1)
		return -EIO;
	*sig_len = len;
	return 0;
}

int
dkim_sign_hash(struct dkim_signer *sg, const struct dkim_key *key,
    const uint8_t hash[DKIM_HASH_LEN], uint8_t *sig, size_t *sig_len)
{
	struct sign_slot tmp = { 0 }, *slot = &tmp;
	int rc;

	for (size_t i = 0; sg->pol != NULL && sg->slots != NULL &&
	    i < sg->pol->nentries; i++)
		if (sg->pol->entries[i].key == key)
			slot = &sg->slots[i];
	rc = sign_with(slot, key, hash, sig, sig_len);
	EVP_PKEY_CTX_free(tmp.rsa);
	EVP_MD_CTX_free(tmp.ed);
	return rc;
}

/* Folding: tokens go on the line while it has room, else on a new one. */
struct fold {
	struct buf *b;
	size_t col;
	int rc;
};

static void
fold_add(struct fold *f, bool space, const char *s, size_t n)
{
	if (f->rc < 0)
		return;
	if (f->col + (space ? 1 : 0) + n > FOLD_WIDTH && f->col > 1) {
		f->rc = buf_append(f->b, "\r\n\t", 3);
		f->col = 1;
	} else if (space) {
		f->rc = buf_append(f->b, " ", 1);
		f->col++;
	}
	if (f->rc == 0)
		f->rc = buf_append(f->b, s, n);
	f->col += n;
}

static void
fold_printf(struct fold *f, bool space, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void
fold_printf(struct fold *f, bool space, const char *fmt, ...)
{
	char tmp[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(tmp)) {
		f->rc = -EINVAL;
		return;
	}
	fold_add(f, space, tmp, (size_t)n);
}

/*
 * The field up to "b=" for entry e, into sg->sig: tags in a fixed
 * order, b= last so that its value can follow once it is known.
 */
static int
build_field(struct dkim_signer *sg, const struct dkim_entry *e,
    const uint8_t bh[DKIM_HASH_LEN], int64_t now, size_t *col)
{
	const struct dkim_policy *pol = sg->pol;
	struct fold f = { .b = &sg->sig };
	char bh64[64];
	const char *p, *colon;

	buf_reset(&sg->sig);
	EVP_EncodeBlock((unsigned char *)bh64, bh, DKIM_HASH_LEN);
	fold_add(&f, false, "DKIM-Signature:", 15);
	fold_add(&f, true, "v=1;", 4);
	fold_printf(&f, true, "a=%s;", dkim_alg_name(e->key->alg));
	fold_printf(&f, true, "c=%s/%s;", dkim_canon_name(pol->hcanon),
	    dkim_canon_name(pol->bcanon));
	fold_printf(&f, true, "d=%s;", e->domain);
	fold_printf(&f, true, "s=%s;", e->selector);
	fold_printf(&f, true, "t=%lld;", (long long)now);
	if (pol->expire_s > 0)
		fold_printf(&f, true, "x=%lld;",
		    (long long)now + pol->expire_s);
	/* h=: one name at a time, folded between names if need be. */
	for (p = sg->hlist.data; f.rc == 0 && p != NULL; p = colon) {
		colon = strchr(p, ':');
		if (p == sg->hlist.data)
			fold_printf(&f, true, "h=%.*s%s",
			    (int)(colon ? colon - p : (long)strlen(p)), p,
			    colon ? ":" : ";");
		else
			fold_printf(&f, false, "%.*s%s",
			    (int)(colon ? colon - p : (long)strlen(p)), p,
			    colon ? ":" : ";");
		if (colon != NULL)
			colon++;
	}
	fold_printf(&f, true, "bh=%s;", bh64);
	fold_add(&f, true, "b=", 2);
	*col = f.col;
	return f.rc;
}

/* The h= value for this message: see the file's header comment. */
static int
build_hlist(struct dkim_signer *sg, const char *hdr, size_t nf)
{
	const struct dkim_policy *pol = sg->pol;
	int rc = 0;

	buf_reset(&sg->hlist);
	for (size_t i = 0; i < pol->nheaders && rc == 0; i++) {
		const char *name = pol->headers[i];
		size_t nl = strlen(name), count = 0;

		for (size_t j = 0; j < nf; j++)
			if (sg->fields[j].name_len == nl &&
			    strncasecmp(hdr + sg->fields[j].off, name, nl) == 0)
				count++;
		if (strcmp(name, "from") == 0)
			count++;
		while (count-- > 0 && rc == 0)
			rc = buf_printf(&sg->hlist, "%s%s",
			    sg->hlist.len > 0 ? ":" : "", name);
	}
	if (rc == 0)
		rc = buf_append(&sg->hlist, "", 1);	/* NUL-terminated */
	if (rc == 0)
		sg->hlist.len--;
	return rc;
}

/* Append the base64 signature to the field, folded. */
static int
append_b(struct buf *out, size_t col, const uint8_t *sig, size_t sig_len)
{
	char b64[DKIM_SIG_MAX * 4 / 3 + 8];
	size_t n = (size_t)EVP_EncodeBlock((unsigned char *)b64, sig,
	    (int)sig_len), at = 0;
	int rc = 0;

	while (at < n && rc == 0) {
		size_t room = col < FOLD_WIDTH ? FOLD_WIDTH - col : 0, take;

		if (room < 8) {
			rc = buf_append(out, "\r\n\t", 3);
			col = 1;
			continue;
		}
		take = n - at < room ? n - at : room;
		rc = buf_append(out, b64 + at, take);
		at += take;
		col += take;
	}
	if (rc == 0)
		rc = buf_append(out, "\r\n", 2);
	return rc;
}

int
dkim_sign_message(struct dkim_signer *sg, const char *msg,
    const struct dkim_pick *pick, const uint8_t bh[DKIM_HASH_LEN],
    int64_t now, struct buf *out)
{
	const struct dkim_policy *pol = sg->pol;
	uint8_t hash[DKIM_HASH_LEN], sig[DKIM_SIG_MAX];
	size_t len0 = out->len, sig_len, col;
	int nf, rc;

	if (pick->first + pick->count > pol->nentries)
		return -EINVAL;
	nf = dkim_fields(msg, pick->hdr_len, pol->headers, pol->nheaders,
	    sg->fields, DKIM_FIELDS_MAX);
	if (nf < 0)
		return nf;
	if ((rc = build_hlist(sg, msg, (size_t)nf)) < 0 ||
	    (rc = canon_fields(sg, pol->hcanon, msg, sg->fields, (size_t)nf,
	    sg->hlist.data)) < 0)
		return rc;
	for (size_t i = pick->first; i < pick->first + pick->count; i++) {
		const struct dkim_entry *e = &pol->entries[i];

		if ((rc = build_field(sg, e, bh, now, &col)) < 0 ||
		    (rc = hash_with_sig(sg, pol->hcanon, sg->sig.data,
		    sg->sig.len, hash)) < 0 ||
		    (rc = sign_with(&sg->slots[i], e->key, hash, sig,
		    &sig_len)) < 0 ||
		    (rc = buf_append(out, sg->sig.data, sg->sig.len)) < 0 ||
		    (rc = append_b(out, col, sig, sig_len)) < 0)
			break;
	}
	OPENSSL_cleanse(hash, sizeof(hash));
	if (rc < 0)
		out->len = len0;
	return rc;
}
