/*
 * dkim_int.h - what the files of dkim/ share; not for use outside it.
 */
#ifndef SLUICE_DKIM_INT_H
#define SLUICE_DKIM_INT_H

#include <openssl/evp.h>

#include "dkim.h"

struct dkim_key {
	EVP_PKEY *pkey;
	enum dkim_alg alg;
	unsigned bits;
};

/* SHA-256, fetched once for the process (dkim_body.c). */
const EVP_MD *dkim_sha256(void);

/* Append base64 of p[0..n) (EVP_EncodeBlock). 0, -ENOBUFS, -ENOMEM. */
int dkim_b64_append(struct buf *out, const void *p, size_t n);

#endif
