/*
 * mta_sts.h - MTA-STS (RFC 8461) without I/O: the _mta-sts TXT record,
 * the policy file, and which MX hosts a policy allows.
 *
 * Purpose: deliver/mta_sts.c fetches the TXT record and the policy and
 * hands their bytes here; what comes back is all delivery needs: the
 * policy's id, its mode, how long it may be cached, and its mx patterns.
 *
 * TXT record (RFC 8461 section 3.1): "v=STSv1; id=ID;" with fields
 * separated by ';' and optional spaces or tabs around them; the first
 * field must be v=STSv1, id is 1 to 32 letters and digits; fields this
 * module does not know are ignored, a field without '=' or a bad name
 * makes the record invalid.
 *
 * Policy (section 3.2): lines "key: value" ending in LF or CRLF (the
 * last may end without one). version must be STSv1, mode enforce,
 * testing or none, max_age 1 to 10 digits (capped at
 * MTA_STS_MAX_AGE_MAX seconds), and enforce and testing need at least
 * one mx. Keys are case-sensitive as in the RFC's grammar; unknown keys
 * are ignored; of a key given twice (but mx) the first counts. A value
 * has no control bytes; spaces after it are dropped.
 *
 * mx patterns (section 4.1): a host name, or "*." and a host name, which
 * matches exactly one more label on the left ("*.example.com" matches
 * "mx.example.com", not "example.com" nor "a.b.example.com"). Matching
 * ignores case and one trailing dot of the host.
 *
 * Contract: pure (no I/O, no allocation, no globals); reads exactly
 * p[0..n) of whatever bytes it is given. Returns 0, or -1 with a static
 * phrase for the log in *why.
 */
#ifndef SLUICE_MTA_STS_H
#define SLUICE_MTA_STS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MTA_STS_ID_MAX		32
#define MTA_STS_POLICY_MAX	65536		/* bytes of policy, RFC 8461 3.3 */
#define MTA_STS_MX_MAX		32		/* mx patterns kept */
#define MTA_STS_HOST_MAX	253
#define MTA_STS_MAX_AGE_MAX	31557600u	/* one year, section 3.2 */

enum mta_sts_mode {
	MTA_STS_NONE = 0,
	MTA_STS_TESTING,
	MTA_STS_ENFORCE,
};

struct mta_sts_policy {
	enum mta_sts_mode mode;
	uint32_t max_age_s;
	unsigned nmx;
	char mx[MTA_STS_MX_MAX][MTA_STS_HOST_MAX + 1];	/* lower case */
};

/* The id of one TXT record's text (the strings already joined). */
int mta_sts_txt_parse(const char *p, size_t n, char id[MTA_STS_ID_MAX + 1],
    const char **why);

/* Does the text start with "v=STSv1" (so that it counts as a record)? */
bool mta_sts_txt_is_sts(const char *p, size_t n);

int mta_sts_policy_parse(const char *p, size_t n, struct mta_sts_policy *out,
    const char **why);

/* Does host match one of the policy's mx patterns? */
bool mta_sts_mx_match(const struct mta_sts_policy *pol, const char *host);

/* Does host match the one pattern? */
bool mta_sts_pattern_match(const char *pattern, const char *host);

/*
 * The response to the policy's GET (sent as HTTP/1.0, so the body is
 * neither chunked nor kept alive: it ends at EOF or Content-Length).
 * Given everything read, p[0..n) (eof: the peer closed), fills *body and
 * *body_len and returns 0 when the response is whole and acceptable
 * (RFC 8461 section 3.3): status 200 (a redirect is not followed), a
 * media type text/plain, a body of at most MTA_STS_POLICY_MAX bytes.
 * Returns 1 when more must be read, -1 with why when it is refused (or
 * the head is longer than MTA_STS_HEAD_MAX).
 */
#define MTA_STS_HEAD_MAX 8192
int mta_sts_http_response(const char *p, size_t n, bool eof,
    const char **body, size_t *body_len, const char **why);

/* "none", "testing", "enforce". */
const char *mta_sts_mode_name(enum mta_sts_mode m);

#endif
