/*
 * commit_check.h - helpers the committer's unit tests share: a put job of
 * a real record, a mark job, whether a message is indexed, and one batch
 * submitted and waited for. Needs check.h
 * first; the tests run one shard (0).
 */
#ifndef SLUICE_COMMIT_CHECK_H
#define SLUICE_COMMIT_CHECK_H

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "../../queue/queue.h"
#include "../../queue/queue_commit.h"

/*
 * A put of a real record (header, envelope, body) for qid at off of seg,
 * written to fd, with the nrcpt recipients rcpts; body must outlive the
 * job. Free it with free().
 */
static inline struct commit_job *
check_put_job(uint64_t qid, uint64_t seg, uint64_t off, int fd,
    const char **rcpts, uint16_t nrcpt, const char *body, size_t body_len)
{
	struct envelope e = { .qid = qid, .arrival_us = 1, .nrcpt = nrcpt,
	    .sender = "a@example.com", .client_addr = "127.0.0.1",
	    .helo = "x", .protocol = "ESMTP", .rcpt = rcpts };
	size_t el = envelope_encoded_len(&e);
	struct commit_job *j = calloc(1, sizeof(*j) + sizeof(struct seg_hdr) +
	    el);
	uint8_t *env;

	CHECK_FATAL(j != NULL);
	env = j->head + sizeof(struct seg_hdr);
	envelope_encode(&e, env);
	j->kind = COMMIT_PUT;
	j->put = (struct queue_put){ .qid = qid, .seg = seg, .offset = off,
	    .rec_len = (uint32_t)(sizeof(struct seg_hdr) + el + body_len),
	    .msg_len = (uint32_t)body_len, .env = env,
	    .env_len = (uint32_t)el, .nrcpt = nrcpt };
	j->put.checksum = seg_hdr_fill((struct seg_hdr *)j->head, qid, env,
	    (uint32_t)el, body, (uint32_t)body_len);
	j->head_len = (uint32_t)(sizeof(struct seg_hdr) + el);
	j->iov[0].iov_base = j->head;
	j->iov[0].iov_len = j->head_len;
	j->iov[1].iov_base = (void *)body;
	j->iov[1].iov_len = body_len;
	j->seg_fd = fd;
	j->conn_idx = COMMIT_NO_CONN;
	return j;
}

/*
 * A journaled update: recipients 0..n-1 of qid delivered, its mark record
 * at off of seg written to fd (the shard's way: engine/shard_commit.c).
 * Free it with check_job_free().
 */
static inline struct commit_job *
check_mark_job(uint64_t qid, uint16_t n, uint64_t seg, uint64_t off, int fd)
{
	struct commit_job *j = calloc(1, sizeof(*j));
	struct queue_update *u = calloc(n, sizeof(*u));
	uint8_t *rec;
	uint64_t len;

	CHECK_FATAL(j != NULL && u != NULL);
	for (uint16_t i = 0; i < n; i++)
		u[i] = (struct queue_update){ .kind = QUEUE_UPD_RCPT,
		    .qid = qid, .idx = i, .state = RCPT_DELIVERED,
		    .attempts = 1, .last_code = 250 };
	len = seg_mark_len(seg_mark_count(u, n));
	rec = malloc(len);
	CHECK_FATAL(rec != NULL);
	CHECK_FATAL(seg_mark_encode(rec, seg, off, u, n) == len);
	j->kind = COMMIT_UPDATE;
	j->ups = u;
	j->nups = n;
	j->owner = rec;
	j->put.seg = seg;
	j->put.offset = off;
	j->put.rec_len = (uint32_t)len;
	j->iov[0] = (struct iovec){ rec, len };
	j->seg_fd = fd;
	j->conn_idx = COMMIT_NO_CONN;
	return j;
}

/* A job of check_put_job() or check_mark_job(), with what it owns. */
static inline void
check_job_free(struct commit_job *j)
{
	free(j->ups);
	free(j->owner);
	free(j);
}

/* Is qid in the index now? */
static inline bool
check_indexed(struct queue_index *qi, uint64_t qid)
{
	struct queue_msg m;

	if (queue_index_get(qi, qid, &m) != 0)
		return false;
	queue_msg_release(&m);
	return true;
}

/*
 * Submit jobs[0..n) as one batch of shard 0 and wait (bounded) for all of
 * them to come back; efd is shard 0's eventfd.
 */
static inline void
check_commit_run(struct committer *cm, int efd, struct commit_job **jobs,
    int n)
{
	time_t deadline = time(NULL) + 10;
	int back = 0;
	uint64_t v;

	for (int i = 0; i < n; i++)
		CHECK_FATAL(committer_submit(cm, 0, jobs[i]));
	committer_wake(cm);
	while (back < n && time(NULL) < deadline) {
		struct pollfd p = { .fd = efd, .events = POLLIN };

		if (poll(&p, 1, 100) == 1) {
			CHECK(read(efd, &v, sizeof(v)) == sizeof(v));
			while (committer_reap(cm, 0) != NULL)
				back++;
		}
	}
	CHECK_FATAL(back == n);
}

#endif
