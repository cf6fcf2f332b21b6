/*
 * shard_dkim.c - a shard's side of DKIM signing: the body hash while the
 * data streams in, the hand-over to the signer pool at the end of the
 * message, and the signature fields put in front of it when they come
 * back; shard.c then commits the message as any other.
 *
 * Which messages are signed: with dkim_signing.messages "ours" (the
 * default), those of clients that may relay (allowed_networks) or that
 * authenticated; "all" signs every message. Of those, a message whose
 * From: domain has keys (dkim_policy_pick()) is signed; one with no key
 * is queued unsigned, as it is nobody's to sign. One that should be
 * signed but cannot be (no memory, a failure in OpenSSL, too many header
 * fields) gets 451 4.3.0 and is not queued: unsigned mail from a domain
 * that publishes keys would fail DMARC downstream.
 *
 * Memory: a connection's hasher and job are allocated once, at its first
 * signed message, and kept with the slot; the job's fields buffer keeps
 * its allocation. While the job is at the pool the connection holds one
 * operation in flight (the slot is not freed or reused under the signer,
 * which reads the session's message).
 */
#include "shard_int.h"

#include "../dkim/dkim.h"
#include "config.h"

/* A connection's DKIM state, made at its first message to sign. */
struct shard_dkim {
	struct dkim_body body;
	bool hashing;		/* this message is to be signed */
	bool failed;		/* hasher could not start: 451 at the end */
	struct dkim_job job;
};

/*
 * Is the session's client one of ours (see the file's comment): in an
 * allowed network, or authenticated?
 */
static bool
session_ours(const struct smtp_session *s)
{
	return s->relay_ok || s->authenticated;
}

void
shard_dkim_tap(void *ctx, struct smtp_session *s, const char *p, size_t n)
{
	const struct config *cfg = ctx;
	struct conn *c = (struct conn *)((char *)s -
	    offsetof(struct conn, smtp));
	struct shard_dkim *dk = c->dk;

	if (p == NULL) {
		/* A message begins: is it one to sign? */
		if (dk != NULL)
			dk->hashing = false;
		if (cfg->dkim_policy.nentries == 0 ||
		    (!cfg->dkim_signing.all && !session_ours(s)))
			return;
		if (dk == NULL) {
			dk = c->dk = calloc(1, sizeof(*dk));
			if (dk == NULL) {
				c->dk_nomem = true;
				return;
			}
		}
		c->dk_nomem = false;
		dk->hashing = true;
		dk->failed = dkim_body_start(&dk->body,
		    cfg->dkim_policy.bcanon) != 0;
		return;
	}
	if (dk != NULL && dk->hashing && !dk->failed)
		dkim_body_feed(&dk->body, p, n);
}

/*
 * The slot of pool in the shard's list, added when missing; -1 when the
 * list is full (as many reloads that changed DKIM as slots, each with a
 * job still out: the message gets a 451 and is sent again).
 */
static int
pool_slot(struct shard *sh, struct dkim_pool *pool)
{
	int free_slot = -1;

	for (int i = 0; i < SHARD_DKIM_POOLS; i++) {
		if (sh->dk_pools[i].pool == pool)
			return i;
		if (sh->dk_pools[i].pool == NULL && free_slot < 0)
			free_slot = i;
	}
	if (free_slot >= 0) {
		sh->dk_pools[free_slot].pool = pool;
		sh->dk_pools[free_slot].out = 0;
	}
	return free_slot;
}

/*
 * Forget the pools with no job out that are not the current
 * generation's: once that generation is retired the main thread stops
 * them, and this shard must not be reaping them then.
 */
void
shard_dkim_prune(struct shard *sh)
{
	for (int i = 0; i < SHARD_DKIM_POOLS; i++)
		if (sh->dk_pools[i].pool != NULL && sh->dk_pools[i].out == 0 &&
		    sh->dk_pools[i].pool != sh->gen->signers)
			sh->dk_pools[i].pool = NULL;
}

int
shard_dkim_submit(struct shard *sh, struct conn *c)
{
	/* The session's generation: its keys sign its messages. */
	const struct dkim_policy *pol = &c->cg->cfg.dkim_policy;
	struct dkim_pool *pool = c->cg->signers;
	struct smtp_session *s = &c->smtp;
	struct shard_dkim *dk = c->dk;
	enum dkim_pick_result pr;
	char qid[SMTP_ID_LEN + 1];
	struct dkim_job *job;
	int slot;

	if (pool == NULL)
		return 0;
	smtp_id_format(s->qid, qid);
	if (c->dk_nomem) {
		log_warn("%s: not signed: out of memory", qid);
		return -1;
	}
	if (dk == NULL || !dk->hashing)
		return 0;
	dk->hashing = false;
	job = &dk->job;
	pr = dkim_policy_pick(pol, s->msg.data, s->msg.len, &job->pick);
	if (pr != DKIM_PICK_OK) {
		log_debug("%s: not signed: %s%s%s", qid, dkim_pick_reason(pr),
		    job->pick.from_domain[0] != '\0' ? " " : "",
		    job->pick.from_domain);
		return 0;
	}
	if (dk->failed || dkim_body_final(&dk->body, job->bh) != 0) {
		log_warn("%s: not signed: the body hash failed", qid);
		return -1;
	}
	if ((slot = pool_slot(sh, pool)) < 0) {
		log_warn("%s: not signed now: too many configurations' signers "
		    "busy", qid);
		return -1;
	}
	sh->dk_pools[slot].out++;
	job->msg = s->msg.data;
	job->now = (int64_t)(clock_real_us() / 1000000u);
	job->shard = sh->id;
	job->conn_idx = (uint32_t)(c - sh->conns);
	job->conn_gen = c->gen;
	job->result = 0;
	job->submit_us = clock_mono_us();
	c->inflight++;		/* the signer reads s->msg */
	dkim_pool_submit(pool, job);
	return 1;
}

struct dkim_job *
shard_dkim_reap(struct shard *sh)
{
	struct dkim_job *head = NULL, **tail = &head;

	for (int i = 0; i < SHARD_DKIM_POOLS; i++) {
		struct dkim_job *j;

		if (sh->dk_pools[i].out == 0)
			continue;
		*tail = dkim_pool_reap(sh->dk_pools[i].pool, sh->id);
		for (j = *tail; j != NULL; j = j->next) {
			assert(sh->dk_pools[i].out > 0);
			sh->dk_pools[i].out--;
			tail = &j->next;
		}
	}
	shard_dkim_prune(sh);
	return head;
}

int
shard_dkim_apply(struct shard *sh, struct conn *c, struct dkim_job *job)
{
	char qid[SMTP_ID_LEN + 1];

	stats_observe(&stats_shards[sh->id].sign, STATS_H_SIGN_US,
	    clock_mono_us() - job->submit_us);
	smtp_id_format(c->smtp.qid, qid);
	if (job->result != 0) {
		log_warn("%s: not signed: %s", qid, strerror(-job->result));
		return -1;
	}
	if (!smtp_session_prepend(&c->smtp, job->sig.data, job->sig.len)) {
		log_warn("%s: not signed: no memory for the signature", qid);
		return -1;
	}
	log_debug("%s: signed for %s, %zu signature(s)", qid,
	    job->pick.from_domain, job->pick.count);
	return 0;
}

void
shard_dkim_conn_free(struct conn *c)
{
	if (c->dk == NULL)
		return;
	dkim_body_free(&c->dk->body);
	buf_free(&c->dk->job.sig);
	free(c->dk);
	c->dk = NULL;
}

