/*
 * mta_sts.h - MTA-STS (RFC 8461) for MX delivery: the process-wide cache
 * of policies, the threads that fetch them, and the TLS-RPT (RFC 8460)
 * counts kept per policy domain.
 *
 * Threads: mta_sts_start()/mta_sts_stop() on the main thread (before the
 * shards start, after they are gone). mta_sts_get() and mta_sts_count()
 * from any shard: they only take the cache's mutex for a lookup or an
 * increment, never across I/O. The fetches (a TXT query, an HTTPS GET)
 * run on MTA_STS_WORKERS threads of their own, bounded in time by
 * mta_sts.fetch_timeout; a shard never waits for one, it looks again.
 *
 * Cache (in memory, and a copy of each policy in the spool: docs/tls.md):
 * one entry per policy domain (the recipient domain), at most
 * MTA_STS_ENTRIES; when full, a domain without a policy makes room. An entry is fetched when first asked for, when its
 * TXT record was last looked at MTA_STS_RECHECK_S ago, or when its
 * policy expired (max_age). The TXT id decides whether the policy is
 * fetched again. An expired policy is still used while its refresh runs;
 * a refresh that fails leaves no policy (RFC 8461 section 5.1: only a
 * policy not expired may be applied).
 */
#ifndef SLUICE_MTA_STS_DELIVER_H
#define SLUICE_MTA_STS_DELIVER_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "../lib/tls.h"
#include "../proto/mta_sts.h"
#include "deliver_cfg.h"

#define MTA_STS_WORKERS		8
#define MTA_STS_ENTRIES		16384
#define MTA_STS_RECHECK_S	3600	/* TXT looked at again after */
#define MTA_STS_RETRY_S		300	/* after a failed fetch */

/* RFC 8460 section 4.3 result types that sluice counts. */
enum mta_sts_result {
	MTA_STS_R_STARTTLS_NOT_SUPPORTED = 0,
	MTA_STS_R_HOST_MISMATCH,
	MTA_STS_R_EXPIRED,
	MTA_STS_R_NOT_TRUSTED,
	MTA_STS_R_VALIDATION_FAILURE,
	MTA_STS_R_FETCH_ERROR,
	MTA_STS_R_POLICY_INVALID,
	MTA_STS_R_WEBPKI_INVALID,
	MTA_STS_R_MAX,
};

/* "starttls-not-supported", "certificate-host-mismatch", ... */
const char *mta_sts_result_name(enum mta_sts_result r);

/*
 * The result type (RFC 8460 4.3) of a failed certificate check; a check
 * that passed, for a session that failed all the same, is a
 * validation-failure.
 */
enum mta_sts_result mta_sts_result_of_verify(enum tls_verify_kind k);

/*
 * mta_sts_start() reads the CA file and the resolver's address (as root,
 * before privileges are dropped; nothing when cfg->mta_sts is off): 0,
 * or -1 with why when mta_sts.ca_file does not load (without ca_file, a
 * system store that does not load or no resolver only turns MTA-STS off,
 * with a warning). mta_sts_run() then starts the fetch threads (after
 * privileges are dropped, before the shards run).
 */
int mta_sts_start(const struct deliver_cfg *cfg, char *why, size_t whylen);
int mta_sts_run(char *why, size_t whylen);
/* After mta_sts_start(): will policies be fetched (the threads run)? */
bool mta_sts_prepared(void);
void mta_sts_stop(void);
bool mta_sts_running(void);

enum mta_sts_state {
	MTA_STS_S_PENDING = 0,	/* never fetched yet: a fetch runs */
	MTA_STS_S_NONE,		/* no policy (or none that may be used) */
	MTA_STS_S_POLICY,	/* *out holds it */
};

/* domain's policy now; starts a fetch when one is due. */
enum mta_sts_state mta_sts_get(const char *domain,
    struct mta_sts_policy *out);

/* One TLS-RPT result for domain: ok, or a failure of type r. */
void mta_sts_count(const char *domain, bool ok, enum mta_sts_result r);

/* The operator's view: an array of one object per policy domain. */
json_t *mta_sts_status(void);

/*
 * The copy in the spool (mta_sts_store.c), for mta_sts.c only: one file
 * per policy domain in SPOOL/mta-sts, written by the fetch threads
 * (blocking, never under the cache's mutex), read at start.
 *   open    the directory (made if missing), as root before the spool
 *           is given to the user; 0 or -1 with why
 *   save    domain's policy as served (id, real time of the fetch)
 *   remove  domain's file (its policy expired and could not be had)
 *   load    fn for each file whose policy has not expired (max_age
 *           counted from its fetch), at most max; the rest removed
 */
int mta_sts_store_open(const char *spool, char *why, size_t whylen);
void mta_sts_store_close(void);
void mta_sts_store_save(const char *domain, const char *id,
    uint64_t fetched_s, const char *raw, size_t len);
void mta_sts_store_remove(const char *domain);
void mta_sts_store_load(unsigned max, void (*fn)(const char *domain,
    const char *id, uint64_t fetched_s, const struct mta_sts_policy *pol,
    void *arg), void *arg);

/* Worker side (mta_sts_fetch.c), for mta_sts.c only. */
struct mta_sts_fetcher;
struct mta_sts_fetched {
	int txt;			/* 1: one STS record, 0: none, -1: failed */
	char id[MTA_STS_ID_MAX + 1];
	bool asked;			/* want_policy() said yes: the policy
					 * was asked for (have_policy: got) */
	bool have_policy;		/* the policy was fetched and parsed */
	struct mta_sts_policy pol;
	enum mta_sts_result fail;	/* when it was not */
	char why[600];
	size_t raw_len;			/* the policy as served, for the */
	char raw[MTA_STS_POLICY_MAX];	/* copy kept in the spool */
};
struct mta_sts_fetcher *mta_sts_fetcher_new(const struct deliver_cfg *cfg,
    char *why, size_t whylen);
void mta_sts_fetcher_free(struct mta_sts_fetcher *f);
/* The TXT record, then (want_policy(id, arg)) the policy, of domain. */
void mta_sts_fetch(struct mta_sts_fetcher *f, const char *domain,
    bool (*want_policy)(const char *id, void *arg), void *arg,
    struct mta_sts_fetched *out);

#endif
