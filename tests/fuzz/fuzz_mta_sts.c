/*
 * fuzz_mta_sts.c - libFuzzer target: arbitrary bytes as an MTA-STS
 * policy file and as an _mta-sts TXT record (proto/mta_sts.c).
 *
 * Description: properties checked beyond "no crash":
 * - an accepted policy has a known mode, max_age within one year, at
 *   most MTA_STS_MX_MAX patterns, each a lower-case name of at most
 *   MTA_STS_HOST_MAX bytes (plus "*."), and enforce/testing have one;
 *   every pattern without "*" matches itself, and a "*." one matches
 *   "x" + its name after the '*';
 * - a refusal comes with a reason; parsing is deterministic;
 * - an accepted TXT record starts with v=STSv1 and has an id of 1..32
 *   letters and digits;
 * - as an HTTP response, an accepted body lies inside the input and
 *   within 64 KiB, and with EOF the answer is never "read more".
 */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "../../proto/mta_sts.h"

static struct mta_sts_policy p, p2;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	const char *why = NULL;
	char id[MTA_STS_ID_MAX + 1], host[MTA_STS_HOST_MAX + 2];
	int rc = mta_sts_policy_parse(s, size, &p, &why);

	assert(rc == mta_sts_policy_parse(s, size, &p2, NULL));
	/* Deterministic: the same input gives the same policy. */
	assert(rc < 0 || (p.mode == p2.mode && p.max_age_s == p2.max_age_s &&
	    p.nmx == p2.nmx));
	for (unsigned i = 0; rc >= 0 && i < p.nmx; i++)
		assert(strcmp(p.mx[i], p2.mx[i]) == 0);
	if (rc < 0) {
		assert(why != NULL && why[0] != '\0');
	} else {
		assert(p.mode <= MTA_STS_ENFORCE);
		assert(p.max_age_s <= MTA_STS_MAX_AGE_MAX);
		assert(p.nmx <= MTA_STS_MX_MAX);
		assert(p.mode == MTA_STS_NONE || p.nmx > 0);
		for (unsigned i = 0; i < p.nmx; i++) {
			size_t n = strlen(p.mx[i]);

			assert(n > 0 && n <= MTA_STS_HOST_MAX + 2);
			for (size_t j = 0; j < n; j++)
				assert(!(p.mx[i][j] >= 'A' &&
				    p.mx[i][j] <= 'Z'));
			if (p.mx[i][0] != '*') {
				assert(mta_sts_mx_match(&p, p.mx[i]));
			} else if (n - 1 <= MTA_STS_HOST_MAX) {
				host[0] = 'x';
				memcpy(host + 1, p.mx[i] + 1, n);
				assert(mta_sts_pattern_match(p.mx[i], host));
			}
		}
	}
	why = NULL;
	if (mta_sts_txt_parse(s, size, id, &why) == 0) {
		size_t n = strlen(id);

		assert(mta_sts_txt_is_sts(s, size));
		assert(n >= 1 && n <= MTA_STS_ID_MAX);
		for (size_t j = 0; j < n; j++)
			assert((id[j] >= '0' && id[j] <= '9') ||
			    (id[j] >= 'a' && id[j] <= 'z') ||
			    (id[j] >= 'A' && id[j] <= 'Z'));
	} else {
		assert(why != NULL);
	}
	/* As an HTTP response: an accepted body lies within the input. */
	for (int eof = 0; eof < 2; eof++) {
		const char *body = NULL;
		size_t blen = 0;

		why = NULL;
		rc = mta_sts_http_response(s, size, eof != 0, &body, &blen,
		    &why);
		if (rc == 0)
			assert(body >= s && body + blen <= s + size &&
			    blen <= MTA_STS_POLICY_MAX);
		else if (rc < 0)
			assert(why != NULL);
		else
			assert(!eof);
	}
	return 0;
}
