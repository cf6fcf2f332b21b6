/*
 * dkim.h - DKIM signing (RFC 6376) with RSA-SHA256 and Ed25519-SHA256
 * (RFC 8463): canonicalisation, the streaming body hash, header selection,
 * the DKIM-Signature field, keys, and a pool of signer threads.
 *
 * The pieces, in the order a message meets them:
 *   - struct dkim_body hashes the body while it streams in (the session's
 *     stored bytes, chunk by chunk, split anywhere), skipping the header
 *     section itself: no second pass over the message;
 *   - dkim_policy_pick() reads the complete header section, finds the
 *     From: domain and which configured keys sign it (none: unsigned);
 *   - dkim_sign_message() builds one DKIM-Signature field per key, hashes
 *     the selected header fields with it and signs the hash;
 *   - struct dkim_pool runs that on worker threads, fed in batches from the
 *     shards without locks, and hands each result back to its shard by an
 *     eventfd write: a shard never waits for a signature.
 *
 * Only dkim_key.c touches private key material; keys are parsed once, at
 * configuration time, and shared read-only by every signer thread (each
 * keeps its own OpenSSL contexts).
 *
 * Errors: functions returning int give 0 or -errno (-ENOMEM, -EINVAL for
 * bad arguments, -EIO for a failure inside OpenSSL); the key functions
 * also fill a reason for the configuration's error message.
 */
#ifndef SLUICE_DKIM_H
#define SLUICE_DKIM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/buf.h"

enum dkim_canon {
	DKIM_SIMPLE = 0,
	DKIM_RELAXED = 1,
};

enum dkim_alg {
	DKIM_RSA_SHA256 = 0,
	DKIM_ED25519_SHA256 = 1,
};

#define DKIM_HASH_LEN 32		/* SHA-256 */
#define DKIM_SIG_MAX 1024		/* RSA-8192: the largest signature */
#define DKIM_RSA_BITS_MIN 1024		/* RFC 8301 section 3.2 */
#define DKIM_RSA_BITS_MAX 4096		/* what verifiers must take (8301) */
#define DKIM_FIELDS_MAX 512		/* signed field instances a message */
#define DKIM_HEADERS_MAX 64		/* names in the signed-header list */
#define DKIM_KEY_FILE_MAX (64u << 10)	/* bytes of a PEM key file */
#define DKIM_NAME_MAX 63		/* a signed header field's name */

const char *dkim_alg_name(enum dkim_alg a);	/* "rsa-sha256" ... */
const char *dkim_canon_name(enum dkim_canon c);	/* "simple", "relaxed" */

/* ---- canonicalisation (dkim_canon.c), RFC 6376 section 3.4 ---------- */

/*
 * Append the canonical form of one header field to out: f[0..n) is the
 * field as it is in the message, name to the end of its last line,
 * without the CRLF that ends it (folding CRLFs inside are part of it).
 * simple: the bytes unchanged; relaxed: the name lower-cased, folding
 * undone, runs of WSP made one SP, WSP around the colon and at the end
 * dropped. CRLF is appended in both cases. 0, -ENOBUFS, -ENOMEM.
 */
int dkim_canon_header(enum dkim_canon c, const char *f, size_t n,
    struct buf *out);

/*
 * The header section of msg[0..len): its length up to (not including)
 * the empty line that ends it, or len when there is none (no body).
 * *body_off, if not NULL, is where the body starts (len when none).
 */
size_t dkim_header_end(const char *msg, size_t len, size_t *body_off);

/* One header field of a header section: offset and length, no CRLF. */
struct dkim_field {
	uint32_t off;
	uint32_t len;
	uint32_t name_len;	/* up to the colon, WSP before it dropped */
	bool used;		/* taken by a name of h= already */
};

/*
 * Split a header section into fields (a line that starts with WSP
 * continues the field before it; one before any field starts a field of
 * its own that no name matches). Only fields whose name is in names[]
 * (lower-case, NULL: every field) are kept. Returns how many, or -E2BIG
 * when more than max would be kept.
 */
int dkim_fields(const char *hdr, size_t len, const char *const *names,
    size_t nnames, struct dkim_field *f, size_t max);

/*
 * RFC 6376 section 5.4.2: the field for the next instance of name, from
 * the bottom up (the last unused one), marked used; NULL when none is
 * left (a name signed more often than it occurs: its null instance).
 */
struct dkim_field *dkim_field_take(const char *hdr, struct dkim_field *f,
    size_t n, const char *name, size_t name_len);

/* ---- the body hash (dkim_body.c) ------------------------------------ */

struct evp_md_ctx_st;

/*
 * Hashes the canonical body of a message fed to it in pieces. Feed it the
 * message as it is stored, from its first header line: it skips the
 * header section up to the empty line itself. Zero-initialise it, then
 * dkim_body_start() per message; dkim_body_free() at the end.
 */
struct dkim_body {
	struct evp_md_ctx_st *md;	/* allocated at the first start */
	enum dkim_canon canon;
	uint8_t hdr;		/* header-section state (dkim_body.c) */
	bool in_body;
	bool cr;		/* a CR is pending: line end or not? */
	bool wsp;		/* relaxed: WSP pending inside a line */
	bool any;		/* some body content was hashed */
	bool failed;		/* an OpenSSL call failed: sticky */
	uint64_t crlf;		/* line ends owed until more content */
	uint64_t len;		/* canonical bytes hashed */
	struct buf *copy;	/* tests: the canonical bytes, appended */
	size_t stage_len;
	char stage[4096];	/* batched into few digest updates */
};

/* Begin a message. 0, -ENOMEM, -EIO. */
int dkim_body_start(struct dkim_body *b, enum dkim_canon c);
/* Feed the next n bytes of the message (any split). */
void dkim_body_feed(struct dkim_body *b, const char *p, size_t n);
/* The body hash of everything fed since the start. 0 or -EIO. */
int dkim_body_final(struct dkim_body *b, uint8_t out[DKIM_HASH_LEN]);
void dkim_body_free(struct dkim_body *b);

/* ---- keys (dkim_key.c) ---------------------------------------------- */

struct dkim_key;

/*
 * Load a private key for alg from spec: inline PEM (text that starts
 * with "-----BEGIN") or the path of a PEM file, which must be a regular
 * file not accessible by group or others. RSA keys must have
 * DKIM_RSA_BITS_MIN to DKIM_RSA_BITS_MAX bits. Encrypted keys are
 * refused (nobody could type the passphrase). 0, or -1 with a reason.
 */
int dkim_key_load(const char *spec, enum dkim_alg alg, struct dkim_key **out,
    char *why, size_t whylen);
/* A new key: RSA of bits bits, or Ed25519 (bits ignored). 0 or -1. */
int dkim_key_generate(enum dkim_alg alg, unsigned bits, struct dkim_key **out,
    char *why, size_t whylen);
/* From a raw 32-byte Ed25519 seed (tests, RFC 8463's example key). */
int dkim_key_ed25519_seed(const uint8_t seed[32], struct dkim_key **out);
/* Write the private key as PKCS#8 PEM to a new file, mode 0600. 0/-1. */
int dkim_key_write(const struct dkim_key *k, const char *path, char *why,
    size_t whylen);
void dkim_key_free(struct dkim_key *k);
enum dkim_alg dkim_key_alg(const struct dkim_key *k);
unsigned dkim_key_bits(const struct dkim_key *k);

/*
 * Append the key's DNS TXT record text (RFC 6376 section 3.6.1):
 * "v=DKIM1; k=rsa; p=BASE64" (p: the SubjectPublicKeyInfo), or k=ed25519
 * with the raw 32-byte public key (RFC 8463 section 4.2). 0, -ENOMEM,
 * -EIO.
 */
int dkim_key_record(const struct dkim_key *k, struct buf *out);

/*
 * Does a published TXT record (its strings joined) carry this key's
 * public key? 1 yes, 0 no (reason in why), -1 not a DKIM key record.
 */
int dkim_key_record_matches(const struct dkim_key *k, const char *txt,
    char *why, size_t whylen);

/* ---- policy and signing (dkim_sign.c) ------------------------------- */

/* One key a domain signs with. The strings and key are borrowed. */
struct dkim_entry {
	const char *domain;	/* lower-case */
	const char *selector;
	const struct dkim_key *key;
};

enum dkim_domain_mode {
	DKIM_DOMAIN_FROM = 0,	/* the From: domain's own keys */
	DKIM_DOMAIN_PARENT,	/* ... or its nearest parent's */
	DKIM_DOMAIN_FIXED,	/* always the keys of one domain */
};

/*
 * What and how to sign; built once from the configuration and read-only
 * afterwards (shared by the shards and the signer threads).
 */
struct dkim_policy {
	struct dkim_entry *entries;	/* sorted by domain (policy_init) */
	size_t nentries;
	enum dkim_domain_mode mode;
	const char *fixed;		/* DKIM_DOMAIN_FIXED: the domain */
	const char *headers[DKIM_HEADERS_MAX];	/* lower-case names */
	size_t nheaders;
	enum dkim_canon hcanon, bcanon;
	uint32_t expire_s;		/* x= t + this; 0: no x= */
};

/*
 * Set pol up with the given entries (copied, then sorted) and the default
 * rest: From domain, relaxed/relaxed, the default header list, no x=.
 * 0 or -ENOMEM. dkim_policy_free() releases the copy.
 */
int dkim_policy_init(struct dkim_policy *pol, const struct dkim_entry *e,
    size_t n);
void dkim_policy_free(struct dkim_policy *pol);
/* Replace the signed-header list (names copied lower-case). 0/-EINVAL. */
int dkim_policy_headers(struct dkim_policy *pol, const char *const *names,
    size_t n);
extern const char *const dkim_default_headers[];

enum dkim_pick_result {
	DKIM_PICK_OK = 0,	/* first/count: the keys to sign with */
	DKIM_PICK_NO_KEY,	/* no key for the domain: not signed */
	DKIM_PICK_NO_FROM,	/* no From: field, or no domain in it */
	DKIM_PICK_MANY_FROM,	/* more than one From: field or address */
};

struct dkim_pick {
	size_t first, count;	/* entries[first .. first + count) */
	size_t hdr_len;		/* the header section of the message */
	char from_domain[256];	/* lower-case, for the log */
};

/* Which keys sign msg[0..len) (a whole message, headers first). */
enum dkim_pick_result dkim_policy_pick(const struct dkim_policy *pol,
    const char *msg, size_t len, struct dkim_pick *pick);
const char *dkim_pick_reason(enum dkim_pick_result r);

/* A signer thread's own OpenSSL state and scratch buffers. */
struct dkim_signer;

struct dkim_signer *dkim_signer_new(const struct dkim_policy *pol);
void dkim_signer_free(struct dkim_signer *sg);

/*
 * The header hash of RFC 6376 section 3.7: the fields h_list names (the
 * value of an h= tag, colon-separated, FWS allowed) taken from hdr
 * bottom-up and canonicalised, then sig[0..sig_len) (a DKIM-Signature
 * field, no final CRLF, with an empty b= value) canonicalised without its
 * CRLF. 0, -E2BIG (too many fields), -ENOMEM, -EIO.
 */
int dkim_hash_headers(struct dkim_signer *sg, enum dkim_canon c,
    const char *hdr, size_t hdr_len, const char *h_list, const char *sig,
    size_t sig_len, uint8_t out[DKIM_HASH_LEN]);

/*
 * Sign a header hash with key: RSASSA-PKCS1-v1_5 with SHA-256, or
 * PureEdDSA Ed25519 over the 32 hash bytes (RFC 8463 section 3). The
 * signature goes to sig (DKIM_SIG_MAX bytes), its length to *sig_len.
 * 0, -EIO.
 */
int dkim_sign_hash(struct dkim_signer *sg, const struct dkim_key *key,
    const uint8_t hash[DKIM_HASH_LEN], uint8_t *sig, size_t *sig_len);

/*
 * Append one DKIM-Signature field per key of pick to out (each ending in
 * CRLF, folded under 78 columns), signing the header section
 * msg[0..pick->hdr_len) with body hash bh at time now (t=, and x= when
 * the policy sets an expiry). 0, -E2BIG, -ENOMEM, -EIO; out is left as it
 * was on failure.
 */
int dkim_sign_message(struct dkim_signer *sg, const char *msg,
    const struct dkim_pick *pick, const uint8_t bh[DKIM_HASH_LEN],
    int64_t now, struct buf *out);

/* ---- the signer pool (dkim_pool.c) ----------------------------------- */

/*
 * One message to sign: the shard fills the input, the pool the output.
 * The message bytes are borrowed: they must stay put until the job is
 * back. A job belongs to the pool from dkim_pool_submit() until the
 * shard takes it back with dkim_pool_reap().
 */
struct dkim_job {
	struct dkim_job *next;		/* pool-private while submitted */
	const char *msg;
	struct dkim_pick pick;
	uint8_t bh[DKIM_HASH_LEN];
	int64_t now;
	unsigned shard;			/* whose eventfd to write */
	int result;			/* 0 or -errno */
	struct buf sig;			/* the fields to prepend */
	uint32_t conn_idx, conn_gen;	/* the shard's, untouched */
	uint64_t submit_us;		/* the shard's, untouched */
};

struct dkim_pool;

/*
 * Start nworkers signer threads for nshards shards; shard_efd[i] is
 * written when results wait for shard i. 0 or -errno.
 */
int dkim_pool_start(struct dkim_pool **pp, const struct dkim_policy *pol,
    unsigned nworkers, unsigned nshards, const int *shard_efd);
/*
 * Shard side, never blocks: hand one job over (to the least busy worker,
 * woken if it sleeps).
 */
void dkim_pool_submit(struct dkim_pool *p, struct dkim_job *job);
/* Shard side: every finished job of shard, oldest first; NULL: none. */
struct dkim_job *dkim_pool_reap(struct dkim_pool *p, unsigned shard);
/* After every shard has stopped: finish what is queued, join, free. */
void dkim_pool_stop(struct dkim_pool *p);

struct dkim_pool_stats {
	uint64_t signed_msgs;
	uint64_t signatures;
	uint64_t failed;
};
void dkim_pool_stats(struct dkim_pool *p, struct dkim_pool_stats *st);

#endif
