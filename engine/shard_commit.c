/*
 * shard_commit.c - a shard's side of the queue: the commit job of each
 * message (its record placed at the end of the current segment, handed to
 * the committer, its verdict back to the session), of each DSN the shard
 * makes, and of delivery results (the delivered recipients journaled as a
 * mark record); the copy of a fresh record kept for delivery to send from
 * memory; and the jobs' way to the committer and back (pending list,
 * wake-up). shard.c runs the connections and the loop around this.
 */
#include "shard_int.h"

static void
job_free(struct commit_job *job)
{
	free(job->ups);
	free(job->owner);
	free(job);
}

/*
 * A copy of the job's record (header, envelope, message: the bytes just
 * written and synced) for delivery to send from memory, or NULL (no room
 * in the budget, no memory: delivery reads the record back). Call only
 * while the message bytes are still valid, i.e. before the session that
 * owns them moves on. Copies are paid from a budget of their own
 * (shard_kept_budget_init(): a quarter of limits.memory), not from the
 * sessions': a copy waiting for a slow first attempt must never make a
 * client wait for memory.
 */
static struct budget kept_memory;

void
shard_kept_budget_init(uint64_t max)
{
	budget_init(&kept_memory, max);
}

static struct rbuf *
job_keep(const struct commit_job *job)
{
	struct rbuf *r;

	assert(job->kind == COMMIT_PUT);
	assert(job->head_len + (uint64_t)job->put.msg_len == job->put.rec_len);
	if (kept_memory.max == 0)
		return NULL;
	r = rbuf_new(&kept_memory, job->put.rec_len);
	if (r == NULL)
		return NULL;
	memcpy(r->data, job->head, job->head_len);
	memcpy(r->data + job->head_len, job->msg, job->put.msg_len);
	return r;
}

/*
 * A message is queued: hand its recipients to their owners. rec (may be
 * NULL): its record in memory, from job_keep(); this reference is
 * dropped here (the items hold their own).
 */
static void
job_dispatch(struct shard *sh, const struct commit_job *job, struct rbuf *rec)
{
	struct envelope env;
	struct msg_meta mm = {
		.version = MSG_META_VERSION,
		.seg = job->put.seg,
		.offset = job->put.offset,
		.rec_len = job->put.rec_len,
		.msg_len = job->put.msg_len,
		.checksum = job->put.checksum,
		.env_len = job->put.env_len,
		.nrcpt = job->put.nrcpt,
	};
	bool *discarded;
	int n;

	if (envelope_decode(job->put.env, job->put.env_len, &env) != 0) {
		log_warn("shard %u: cannot decode an envelope just queued",
		    sh->id);
		rbuf_put(rec);
		return;
	}
	discarded = calloc(env.nrcpt, sizeof(*discarded));
	n = discarded == NULL ? -ENOMEM :
	    deliver_dispatch(&mm, job->put.qid, &env, NULL, 0, 0, discarded,
	    rec);
	rbuf_put(rec);
	if (n < 0)
		log_warn("shard %u: out of memory scheduling a message; it "
		    "waits for a restart", sh->id);
	else if (discarded != NULL) {
		struct queue_update *ups = calloc(env.nrcpt, sizeof(*ups));
		uint32_t nd = 0;

		for (uint16_t i = 0; ups != NULL && i < env.nrcpt; i++)
			if (discarded[i]) {
				deliver_log_discard(sh->deliver,
				    job->put.qid, &env, i, job->put.msg_len);
				ups[nd].kind = QUEUE_UPD_RCPT;
				ups[nd].qid = job->put.qid;
				ups[nd].idx = i;
				ups[nd].state = RCPT_DELIVERED;
				ups[nd++].last_code = 250;
			}
		if (nd > 0)
			shard_submit_updates(sh, ups, nd);
		else
			free(ups);
	}
	free(discarded);
	envelope_release(&env);
}

static void job_leave_seg(struct shard *sh, struct commit_job *job);

/*
 * A DSN could not be queued. Its job carried the results of the attempt
 * that bounced: record the others (a delivered recipient must not be
 * delivered again), and leave the bounced ones pending in the index, to
 * be tried again (and bounced, with a DSN) after the next start: their
 * item is gone from the schedule.
 */
static void
dsn_failed(struct shard *sh, struct commit_job *job, const char *dsn_qid)
{
	char qid[QUEUE_ID_LEN + 1] = "?";
	uint32_t kept = 0, bounced = 0;

	for (uint32_t i = 0; i < job->nups; i++) {
		if (job->ups[i].kind == QUEUE_UPD_RCPT &&
		    job->ups[i].state == RCPT_BOUNCED) {
			queue_id_format(job->ups[i].qid, qid);
			bounced++;
			continue;
		}
		job->ups[kept++] = job->ups[i];
	}
	log_warn("%s: DSN not queued: %s; %u bounced recipient(s) of %s stay "
	    "queued until the next start", dsn_qid,
	    queue_strerror(job->put.result), bounced, qid);
	if (kept > 0) {
		shard_submit_updates(sh, job->ups, kept);
		job->ups = NULL;	/* the update job owns them now */
	}
}

/* Deliver a job's verdict to its connection (if it is still there). */
void
shard_job_finish(struct shard *sh, struct commit_job *job)
{
	struct conn *c;
	enum smtp_commit_result res;
	char qid[QUEUE_ID_LEN + 1];
	enum smtp_event ev;
	struct rbuf *rec = NULL;
	bool live, held;

	assert(sh->jobs_out > 0);
	sh->jobs_out--;
	if (job->seg != NULL) {
		/* Back from the committer: the segment may close now. */
		if (job->seg_failed)
			job->seg->broken = true;
		job_leave_seg(sh, job);
	}
	if (job->kind != COMMIT_PUT || job->conn_idx == COMMIT_NO_CONN) {
		if (job->kind == COMMIT_PUT) {
			queue_id_format(job->put.qid, qid);
			/* A DSN: its bytes are the job's until job_free(). */
			if (job->put.result == 0)
				job_dispatch(sh, job, job->msg != NULL ?
				    job_keep(job) : NULL);
			else
				dsn_failed(sh, job, qid);
		} else if (job->put.result != 0) {
			log_warn("shard %u: queue update failed: %s", sh->id,
			    queue_strerror(job->put.result));
		}
		job_free(job);
		return;
	}
	c = &sh->conns[job->conn_idx];
	/* The committer wrote from the session's buffer: the slot was held. */
	held = c->in_use && c->job == job;
	if (held)
		c->job = NULL;
	if (job->put.result == 0)
		res = SMTP_COMMIT_OK;
	else if (job->put.result == QUEUE_EFULL ||
	    job->put.result == -ENOSPC || job->put.result == -EDQUOT)
		res = SMTP_COMMIT_NOSPACE;
	else
		res = SMTP_COMMIT_IOERR;
	queue_id_format(job->put.qid, qid);
	live = c->in_use && c->gen == job->conn_gen;
	if (res == SMTP_COMMIT_OK) {
		atomic_fetch_add(&sh->n_messages, 1);
		stats_accepted(&stats_shards[sh->id], job->put.nrcpt,
		    job->put.msg_len, live ? c->smtp.arrival_us : 0);
		bool tls = live && c->smtp.tls;
		bool auth = live && c->smtp.authenticated;

		/* As Postfix's: the user a message came from, if any. */
		log_info("%s: client=[%s], size=%u, nrcpt=%u%s%s%s%s%s%s", qid,
		    live ? c->smtp.client_addr : "gone", job->put.msg_len,
		    job->put.nrcpt, tls ? ", tls=" : "",
		    tls ? c->smtp.tls_version : "", tls ? ", cipher=" : "",
		    tls ? c->smtp.tls_cipher : "",
		    auth ? ", sasl_username=" : "",
		    auth ? c->smtp.auth_user : "");
	} else {
		log_warn("%s: not queued: %s", qid,
		    queue_strerror(job->put.result));
	}
	/* Keep the record for delivery before the session moves on (its
	 * next transaction reuses the message buffer). */
	if (res == SMTP_COMMIT_OK && held)
		rec = job_keep(job);
	if (live && !c->closing && c->smtp.state == SMTP_S_COMMIT) {
		c->deadline_ms = sh->now_ms + c->cg->cfg.limits.idle_timeout_ms;
		ev = smtp_session_commit_done(&c->smtp, res);
		shard_command_deadline(sh, c);
		shard_handle_event(sh, c, ev);
	}
	if (res == SMTP_COMMIT_OK)
		job_dispatch(sh, job, rec);
	if (held)
		shard_conn_op_done(sh, c);
	free(job);
}

/* A job for a record of (env, msg); NULL when out of memory. */
static struct commit_job *
job_new(const struct envelope *env, const void *msg, size_t msg_len)
{
	struct commit_job *job;
	size_t env_len = envelope_encoded_len(env);
	uint64_t rec_len;

	job = malloc(sizeof(*job) + sizeof(struct seg_hdr) + env_len);
	if (job == NULL)
		return NULL;
	memset(job, 0, sizeof(*job));
	envelope_encode(env, job->head + sizeof(struct seg_hdr));
	job->head_len = (uint32_t)(sizeof(struct seg_hdr) + env_len);
	rec_len = (uint64_t)job->head_len + msg_len;
	/* Records carry 32-bit lengths; config keeps messages far below. */
	if (rec_len > UINT32_MAX)
		log_panic("record of %llu bytes", (unsigned long long)rec_len);
	job->kind = COMMIT_PUT;
	job->put.qid = env->qid;
	job->put.msg_len = (uint32_t)msg_len;
	job->put.rec_len = (uint32_t)rec_len;
	job->put.env = job->head + sizeof(struct seg_hdr);
	job->put.env_len = (uint32_t)env_len;
	job->put.nrcpt = env->nrcpt;
	job->put.checksum = seg_hdr_fill((struct seg_hdr *)job->head, env->qid,
	    job->put.env, (uint32_t)env_len, msg, (uint32_t)msg_len);
	job->msg = msg;
	job->iov[0].iov_base = job->head;
	job->iov[0].iov_len = job->head_len;
	job->iov[1].iov_base = (void *)msg;
	job->iov[1].iov_len = msg_len;
	return job;
}

/*
 * Give the job's record its place at the end of the current segment and
 * hand it to the committer, which writes it there (one writev) and syncs
 * it; the segment stays open until the job is back. -errno when no
 * segment can be had: the job is untouched then.
 */
static int
job_write(struct shard *sh, struct commit_job *job)
{
	struct seg *s;
	int err = -EIO;

	/* The index cannot take more now: refuse before placing it. */
	if (sh->committer != NULL &&
	    (err = committer_refusing(sh->committer)) != 0)
		return err;
	err = -EIO;
	s = shard_seg_for_append(sh, job->put.rec_len, &err);
	if (s == NULL)
		return err;
	job->shard = sh->id;
	job->seg = s;
	job->seg_fd = s->fd;
	job->put.seg = s->id;
	job->put.offset = s->end;
	s->end += job->put.rec_len;
	s->refs++;
	sh->jobs_out++;
	shard_pending_push(sh, job);
	return 0;
}

void
shard_start_commit(struct shard *sh, struct conn *c)
{
	struct smtp_session *ss = &c->smtp;
	struct commit_job *job;
	struct envelope env;
	const char **rcpt;
	int err;

	rcpt = malloc(ss->nrcpt * sizeof(*rcpt));
	if (rcpt == NULL)
		goto nomem;
	inbound_envelope(ss, &env, rcpt);
	job = job_new(&env, ss->msg.data, ss->msg.len);
	free(rcpt);
	if (job == NULL)
		goto nomem;
	job->conn_idx = (uint32_t)(c - sh->conns);
	job->conn_gen = c->gen;
	job->shard = sh->id;
	err = job_write(sh, job);
	if (err != 0) {
		sh->jobs_out++;		/* job_finish counts it back */
		job->put.result = err;
		shard_job_finish(sh, job);
		return;
	}
	/* The message bytes are the session's until the job is back. */
	c->job = job;
	c->inflight++;
	return;
nomem:
	shard_handle_event(sh, c, smtp_session_commit_done(ss, SMTP_COMMIT_IOERR));
}

static bool
is_ascii(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)p[i] >= 0x80)
			return false;
	return true;
}

uint64_t
shard_queue_dsn(struct shard *sh, const char *rcpt, struct buf *msg,
    struct queue_update *ups, uint32_t nups)
{
	const char *rcpts[1] = { rcpt };
	struct commit_job *job;
	struct envelope env = {
		.body = is_ascii(msg->data, msg->len) ? QUEUE_BODY_7BIT :
		    QUEUE_BODY_8BITMIME,
		.smtputf8 = !is_ascii(rcpt, strlen(rcpt)),
		.nrcpt = 1,
		.sender = "",
		.client_addr = "127.0.0.1",
		.helo = sh->cfg->hostname,
		.protocol = "local",
		.rcpt = rcpts,
	};

	if (sh->stopping)
		return 0;
	env.arrival_us = clock_real_us();
	env.qid = queue_id_next(&sh->idgen, env.arrival_us / 1000u);
	job = job_new(&env, msg->data, msg->len);
	if (job == NULL)
		return 0;
	job->conn_idx = COMMIT_NO_CONN;
	job->ups = ups;
	job->nups = nups;
	if (job_write(sh, job) != 0) {
		free(job);
		return 0;
	}
	/* The job owns the message bytes and the updates from here. */
	job->owner = msg->data;
	*msg = (struct buf){ 0 };
	/* The recipients delivered in the same attempt are journaled too. */
	if (seg_mark_count(ups, nups) > 0) {
		struct queue_update *d = malloc(nups * sizeof(*d));
		uint32_t nd = 0;

		for (uint32_t i = 0; d != NULL && i < nups; i++)
			if (seg_mark_count(&ups[i], 1) > 0)
				d[nd++] = ups[i];
		if (d != NULL)
			shard_submit_updates(sh, d, nd);
	}
	return env.qid;
}

/*
 * Would shard_seg_for_append() find a segment for rec_len bytes without opening
 * one synchronously (a directory fsync on this thread)?
 */
static bool
seg_ready(const struct shard *sh, uint64_t rec_len)
{
	const struct seg *cur = sh->cur >= 0 ? &sh->segs[sh->cur] : NULL;

	if (sh->next >= 0)
		return true;
	return cur != NULL && !cur->broken && (cur->end == 0 ||
	    cur->end + rec_len <= sh->cfg->queue.segment_size ||
	    sh->next_opening);
}

/*
 * Journal the delivered recipients of an update job: a mark record at the
 * end of the current segment, which the committer writes and syncs with
 * its next batch, so that once the job is back a crash cannot deliver
 * them again (recovery replays the mark). Without a segment at hand (a
 * shard that has only delivered since it started: one is opened through
 * the ring for the next marks), or memory, the updates go unjournaled:
 * the index still gets them, a little later.
 */
static void
job_journal(struct shard *sh, struct commit_job *job)
{
	uint32_t n = seg_mark_count(job->ups, job->nups);
	uint8_t *rec;
	struct seg *s;
	uint64_t len;
	int err;

	if (n == 0)
		return;
	assert(n <= SEG_MARKS_MAX);	/* one message's recipients */
	len = seg_mark_len(n);
	if (!seg_ready(sh, len)) {
		shard_seg_preopen(sh);
		return;
	}
	if ((rec = malloc(len)) == NULL)
		return;
	if ((s = shard_seg_for_append(sh, len, &err)) == NULL) {
		free(rec);
		return;
	}
	seg_mark_encode(rec, s->id, s->end, job->ups, job->nups);
	job->owner = rec;
	job->iov[0].iov_base = rec;
	job->iov[0].iov_len = len;
	job->seg = s;
	job->seg_fd = s->fd;
	job->put.seg = s->id;
	job->put.offset = s->end;
	job->put.rec_len = (uint32_t)len;
	s->end += len;
	s->refs++;
}

void
shard_submit_updates(struct shard *sh, struct queue_update *ups,
    uint32_t nups)
{
	struct commit_job *job = calloc(1, sizeof(*job));

	if (job == NULL) {
		log_warn("shard %u: out of memory: %u delivery result(s) "
		    "not recorded", sh->id, nups);
		free(ups);
		return;
	}
	job->kind = COMMIT_UPDATE;
	job->ups = ups;
	job->nups = nups;
	job->shard = sh->id;
	job->conn_idx = COMMIT_NO_CONN;
	job_journal(sh, job);
	sh->jobs_out++;
	shard_pending_push(sh, job);
}

/* A job leaves its segment: failed, or durable and off to the committer. */
static void
job_leave_seg(struct shard *sh, struct commit_job *job)
{
	struct seg *s = job->seg;

	assert(s->refs > 0);
	s->refs--;
	job->seg = NULL;
	shard_seg_release(sh, s);
}

void
shard_pending_push(struct shard *sh, struct commit_job *job)
{
	job->next = NULL;
	if (sh->pending_tail)
		sh->pending_tail->next = job;
	else
		sh->pending_head = job;
	sh->pending_tail = job;
}

/* Hand durable jobs to the committer; what does not fit waits. */
void
shard_pending_flush(struct shard *sh)
{
	struct commit_job *job;
	bool any = false;

	while ((job = sh->pending_head) != NULL) {
		struct commit_job *next = job->next;

		if (!committer_submit(sh->committer, sh->id, job))
			break;
		sh->pending_head = next;
		if (next == NULL)
			sh->pending_tail = NULL;
		any = true;
	}
	if (any)
		committer_wake(sh->committer);
}
