/*
 * sink_record.c - what `sluice-bench sink` records besides its report:
 * --log, one JSON line per accepted message and per closed connection,
 * buffered and written in blocks; and --store, each accepted message as
 * DIR/ID.eml, written through the ring (open, write, close linked on a
 * fixed-file slot) while the connection holds the reply that accepts it.
 *
 * Write errors are counted for the report and warned about once; they
 * never fail a session. Formats: docs/sluice-bench-sink.md.
 */
#include "sink_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../lib/log.h"

#define SHA256_LEN 32	/* bytes of a SHA-256 digest */

/*
 * Append p[0..n) to b as the body of a JSON string: quote, backslash and
 * control characters escaped, valid UTF-8 kept, any other byte written as
 * \u00XX so the line stays valid JSON whatever the client sent.
 */
static int
json_str(struct buf *b, const char *p, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *u = (const unsigned char *)p;
	size_t i = 0, run, k;
	char esc[6];
	int rc;

	if ((rc = buf_reserve(b, n + 2)) < 0)
		return rc;
	b->data[b->len++] = '"';
	while (i < n) {
		for (run = i; run < n && u[run] >= 0x20 && u[run] < 0x80 &&
		    u[run] != '"' && u[run] != '\\'; run++)
			;
		if (run > i) {
			if ((rc = buf_append(b, p + i, run - i)) < 0)
				return rc;
			i = run;
			continue;
		}
		k = 0;
		if (u[i] >= 0xc2 && u[i] <= 0xdf)
			k = 1;
		else if (u[i] >= 0xe0 && u[i] <= 0xef)
			k = 2;
		else if (u[i] >= 0xf0 && u[i] <= 0xf4)
			k = 3;
		if (k > 0 && i + k < n) {
			size_t j;

			for (j = 1; j <= k; j++)
				if ((u[i + j] & 0xc0) != 0x80)
					break;
			if (j > k) {
				if ((rc = buf_append(b, p + i, k + 1)) < 0)
					return rc;
				i += k + 1;
				continue;
			}
		}
		if (u[i] == '"' || u[i] == '\\') {
			esc[0] = '\\';
			esc[1] = (char)u[i];
			rc = buf_append(b, esc, 2);
		} else {
			memcpy(esc, "\\u00", 4);
			esc[4] = hex[u[i] >> 4];
			esc[5] = hex[u[i] & 15];
			rc = buf_append(b, esc, 6);
		}
		if (rc < 0)
			return rc;
		i++;
	}
	return buf_append(b, "\"", 1);
}

/* ---- --log ------------------------------------------------------------ */

void
sink_log_flush(struct sink *s)
{
	size_t off = 0;
	ssize_t n;

	while (off < s->logb.len) {
		n = write(s->log_fd, s->logb.data + off, s->logb.len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (s->log_errors++ == 0)
				log_warn("--log: write: %s", n < 0 ?
				    strerror(errno) : "nothing written");
			break;
		}
		off += (size_t)n;
	}
	buf_reset(&s->logb);
}

/* A line was appended: write the block once it is big enough. */
static void
log_line_done(struct sink *s, int rc)
{
	if (rc < 0 && s->log_errors++ == 0)
		log_warn("--log: out of memory");
	if (s->logb.len >= SINK_LOG_FLUSH)
		sink_log_flush(s);
}

/*
 * The envelope kept for --log: each string as a 16-bit length and its
 * bytes, the sender first. Lines are shorter than 64 KiB.
 */
static_assert(SINK_LINE_MAX < 65536, "envelope lengths fit 16 bits");

void
sink_env_add(struct sink *s, struct sink_conn *c, const char *p, size_t n)
{
	uint16_t len = (uint16_t)n;

	if (s->log_fd < 0)
		return;
	if (buf_append(&c->env, &len, sizeof(len)) < 0 ||
	    buf_append(&c->env, p, n) < 0)
		sink_conn_close(s, c);
}

/* The string at *off in env, advancing *off. */
static const char *
env_next(const struct sink_conn *c, size_t *off, size_t *n)
{
	uint16_t len;
	const char *p;

	assert(*off + sizeof(len) <= c->env.len);
	memcpy(&len, c->env.data + *off, sizeof(len));
	p = c->env.data + *off + sizeof(len);
	*off += sizeof(len) + len;
	assert(*off <= c->env.len);
	*n = len;
	return p;
}

void
sink_log_message(struct sink *s, struct sink_conn *c, const char *id,
    const char *bench_id, uint64_t latency_us, uint64_t wall_us)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char digest[SHA256_LEN];
	char dhex[2 * SHA256_LEN + 1];
	struct buf *b = &s->logb;
	const char *p;
	size_t off = 0, n;
	uint32_t i;
	bool first = true;
	int rc;

	if (c->sha == NULL || EVP_DigestFinal_ex(c->sha, digest, NULL) != 1)
		memset(digest, 0, sizeof(digest));
	for (i = 0; i < SHA256_LEN; i++) {
		dhex[2 * i] = hex[digest[i] >> 4];
		dhex[2 * i + 1] = hex[digest[i] & 15];
	}
	dhex[2 * SHA256_LEN] = '\0';
	rc = buf_printf(b, "{\"id\":\"%s\",\"listener\":\"%s\",\"conn\":%llu,"
	    "\"mail_from\":", id, s->lst[c->listener].addr,
	    (unsigned long long)c->serial);
	p = env_next(c, &off, &n);
	if (rc == 0)
		rc = json_str(b, p, n);
	if (rc == 0)
		rc = buf_puts(b, ",\"rcpt\":[");
	for (i = 0; i < c->nrcpt && rc == 0; i++) {
		p = env_next(c, &off, &n);
		if (s->o->lmtp && !s->rcpt_ok[i])
			continue;
		if (!first)
			rc = buf_puts(b, ",");
		if (rc == 0)
			rc = json_str(b, p, n);
		first = false;
	}
	if (rc == 0)
		rc = buf_printf(b, "],\"size\":%llu,\"sha256\":\"%s\","
		    "\"via\":\"%s\"", (unsigned long long)c->msg_size, dhex,
		    c->bdat_started ? "bdat" : "data");
	if (rc == 0 && bench_id != NULL) {
		rc = buf_puts(b, ",\"bench_id\":");
		if (rc == 0)
			rc = json_str(b, bench_id, strlen(bench_id));
		if (rc == 0)
			rc = buf_printf(b, ",\"latency_us\":%llu",
			    (unsigned long long)latency_us);
	}
	if (rc == 0)
		rc = buf_printf(b, ",\"time\":%llu.%06llu}\n",
		    (unsigned long long)(wall_us / 1000000u),
		    (unsigned long long)(wall_us % 1000000u));
	log_line_done(s, rc);
}

/* The line for a closed connection: tests count connections with it. */
void
sink_log_close(struct sink *s, const struct sink_conn *c)
{
	log_line_done(s, buf_printf(&s->logb, "{\"event\":\"close\","
	    "\"conn\":%llu,\"listener\":\"%s\",\"messages\":%u}\n",
	    (unsigned long long)c->serial, s->lst[c->listener].addr,
	    c->messages));
}

/* ---- --store ---------------------------------------------------------- */

static void
store_sync(struct sink *s, const char *name, const char *data, size_t len)
{
	size_t off = 0;
	ssize_t n;
	int fd;

	fd = openat(s->store_dirfd, name, O_WRONLY | O_CREAT | O_TRUNC |
	    O_CLOEXEC, 0644);
	if (fd < 0)
		goto fail;
	while (off < len) {
		n = write(fd, data + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			goto fail;
		off += (size_t)n;
	}
	if (close(fd) < 0) {
		fd = -1;
		goto fail;
	}
	s->stored++;
	return;
fail:
	if (s->store_errors++ == 0 && !s->o->quiet)
		log_warn("--store: %s: %s", name, strerror(errno));
	if (fd >= 0)
		close(fd);
}

/*
 * Write c's message as DIR/<id>.eml before its reply (which starts at
 * out[mark]) leaves, so a client that saw 250 finds the file. Through the
 * ring when a job is free: the message buffer moves to the job (the
 * connection takes the job's old buffer, so neither allocates in steady
 * state), open, write and close go as one linked chain on the job's
 * fixed-file slot, and the connection holds its reply meanwhile.
 * Otherwise, plainly.
 */
void
sink_store_message(struct sink *s, struct sink_conn *c, const char *id,
    size_t mark)
{
	struct io_uring_sqe *sqe;
	struct sink_store_job *job;
	uint32_t j;
	struct buf t;

	if (!s->store_ring || s->store_free == UINT32_MAX) {
		char name[SINK_ID_LEN + 8];

		snprintf(name, sizeof(name), "%s.eml", id);
		store_sync(s, name, c->msg.data, c->msg.len);
		return;
	}
	j = s->store_free;
	job = &s->jobs[j];
	assert(!job->busy);
	s->store_free = job->next_free;
	job->busy = true;
	job->failed = false;
	t = job->msg;
	job->msg = c->msg;
	c->msg = t;
	buf_reset(&c->msg);
	job->len = job->msg.len;
	job->conn = (uint32_t)(c - s->conns);
	job->conn_gen = c->gen;
	snprintf(job->name, sizeof(job->name), "%s.eml", id);
	sink_hold_at(c, mark);
	c->store_wait = true;
	/* The chain must reach the kernel in one submission. */
	if (io_uring_sq_space_left(&s->ring) < 3)
		io_uring_submit(&s->ring);
	sqe = sink_get_sqe(s);
	io_uring_prep_openat_direct(sqe, s->store_dirfd, job->name,
	    O_WRONLY | O_CREAT | O_TRUNC, 0644, j);
	sqe->flags |= IOSQE_IO_LINK | IOSQE_CQE_SKIP_SUCCESS;
	io_uring_sqe_set_data64(sqe, uring_ud(SINK_OP_STORE, j, 0));
	sqe = sink_get_sqe(s);
	io_uring_prep_write(sqe, (int)j, job->msg.data, (unsigned)job->len, 0);
	sqe->flags |= IOSQE_FIXED_FILE | IOSQE_IO_LINK | IOSQE_CQE_SKIP_SUCCESS;
	io_uring_sqe_set_data64(sqe, uring_ud(SINK_OP_STORE, j, 1));
	sqe = sink_get_sqe(s);
	io_uring_prep_close_direct(sqe, j);
	io_uring_sqe_set_data64(sqe, uring_ud(SINK_OP_STORE, j, 2));
	s->store_inflight++;
}

void
sink_handle_store(struct sink *s, uint32_t j, uint32_t step, int res)
{
	struct sink_store_job *job = &s->jobs[j];
	struct sink_conn *c;

	assert(j < SINK_STORE_JOBS);
	assert(job->busy);
	/* A failed step cancels the rest of the chain: report it once. */
	if ((res < 0 && res != -ECANCELED) ||
	    (step == 1 && res >= 0 && (size_t)res != job->len)) {
		if (!job->failed && s->store_errors++ == 0 && !s->o->quiet)
			log_warn("--store: %s: %s", job->name, res < 0 ?
			    strerror(-res) : "short write");
		job->failed = true;
	} else if (res == -ECANCELED && !job->failed) {
		job->failed = true;
		s->store_errors++;
	}
	if (step != 2)
		return;
	if (!job->failed)
		s->stored++;
	job->busy = false;
	if (job->msg.cap > SINK_KEEP_MSG)
		buf_free(&job->msg);
	buf_reset(&job->msg);
	job->next_free = s->store_free;
	s->store_free = j;
	assert(s->store_inflight > 0);
	s->store_inflight--;
	/* The reply may go now, if its connection is still there. */
	c = &s->conns[job->conn];
	if (c->in_use && c->gen == job->conn_gen && c->store_wait) {
		c->store_wait = false;
		/* Counted in flight so that input processing cannot free c. */
		c->inflight++;
		sink_conn_resume(s, c);
		c->inflight--;
		if (c->closing && c->inflight == 0)
			sink_conn_free(s, c);
	}
}
