/*
 * queue_check.h - helpers the queue's unit tests share: reading a
 * segment's log position and reading or writing the index's format
 * version behind the queue code's back, the put of a message the index
 * alone knows, writing a whole record, opening a segment file of a
 * spool, and running recovery with its stderr captured. Needs
 * QUEUE_INTERNAL and check.h first.
 */
#ifndef SLUICE_QUEUE_CHECK_H
#define SLUICE_QUEUE_CHECK_H

#include <fcntl.h>
#include <lmdb.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../queue/queue.h"

/* Segment seg's log position, 0 when it has none. */
static inline uint64_t
check_log_pos(struct queue_index *qi, uint64_t seg)
{
	MDB_txn *txn;
	uint64_t end = 0;

	CHECK_FATAL(queue_txn_begin(qi, MDB_RDONLY, &txn) == 0);
	CHECK(queue_log_get(qi, txn, seg, &end) == 0);
	mdb_txn_abort(txn);
	return end;
}

/*
 * The "meta" version of the index under spool, written (set) or read,
 * through LMDB directly; the index must not be open in this process.
 */
static inline uint32_t
check_index_version(const char *spool, bool set, uint32_t version)
{
	char path[256];
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k = { 7, "version" }, v = { sizeof(version), &version };

	snprintf(path, sizeof(path), "%s/index", spool);
	CHECK_FATAL(mdb_env_create(&env) == 0);
	CHECK_FATAL(mdb_env_set_maxdbs(env, 8) == 0);
	CHECK_FATAL(mdb_env_open(env, path, 0, 0600) == 0);
	CHECK_FATAL(mdb_txn_begin(env, NULL, 0, &txn) == 0);
	CHECK_FATAL(mdb_dbi_open(txn, "meta", 0, &dbi) == 0);
	if (set) {
		CHECK_FATAL(mdb_put(txn, dbi, &k, &v, 0) == 0);
	} else {
		CHECK_FATAL(mdb_get(txn, dbi, &k, &v) == 0 &&
		    v.mv_size == sizeof(version));
		memcpy(&version, v.mv_data, sizeof(version));
	}
	CHECK_FATAL(mdb_txn_commit(txn) == 0);
	mdb_env_close(env);
	return version;
}

/*
 * The put of a message known only to the index (no record is written:
 * the index never reads the segment): its envelope, with the recipients
 * rcpt[0..n), encoded into env[0..cap), which must outlive the put.
 */
static inline struct queue_put
check_index_put(uint8_t *env, size_t cap, uint64_t qid, uint64_t seg,
    const char **rcpt, uint16_t n)
{
	struct envelope e = {
		.qid = qid, .arrival_us = 1, .sender = "s@example.org",
		.client_addr = "127.0.0.1", .helo = "h", .protocol = "ESMTP",
		.rcpt = rcpt, .nrcpt = n,
	};
	size_t len = envelope_encoded_len(&e);

	CHECK_FATAL(len <= cap);
	CHECK_FATAL(envelope_encode(&e, env) == len);
	return (struct queue_put){
		.qid = qid, .seg = seg, .offset = 0,
		.rec_len = (uint32_t)(32 + len + 10), .msg_len = 10,
		.checksum = 1, .env = env, .env_len = (uint32_t)len,
		.nrcpt = n,
	};
}

/* A message record a test writes (two recipients) and its put. */
struct check_rec {
	uint64_t qid;
	bool local;		/* made by sluice: a DSN */
	uint8_t env[512];
	struct queue_put put;	/* set by check_append_record() */
};

/* Append a whole record for r->qid at *off in fd; fill r->put. */
static inline void
check_append_record(int fd, uint64_t seg, uint64_t *off,
    struct check_rec *r, const char *body)
{
	static const char *rcpts[] = { "one@example.com", "two@example.com" };
	struct envelope e = {
		.qid = r->qid, .arrival_us = 1,
		.sender = r->local ? "" : "s@example.org",
		.client_addr = "127.0.0.1", .helo = "h",
		.protocol = r->local ? "local" : "SMTP",
		.rcpt = rcpts, .nrcpt = 2,
	};
	size_t env_len = envelope_encoded_len(&e), msg_len = strlen(body);
	struct seg_hdr h;

	CHECK_FATAL(env_len <= sizeof(r->env));
	envelope_encode(&e, r->env);
	seg_hdr_fill(&h, r->qid, r->env, (uint32_t)env_len, body,
	    (uint32_t)msg_len);
	CHECK_FATAL(pwrite(fd, &h, sizeof(h), (off_t)*off) == sizeof(h));
	CHECK_FATAL(pwrite(fd, r->env, env_len, (off_t)(*off + sizeof(h))) ==
	    (ssize_t)env_len);
	CHECK_FATAL(pwrite(fd, body, msg_len,
	    (off_t)(*off + sizeof(h) + env_len)) == (ssize_t)msg_len);
	r->put = (struct queue_put){
		.qid = r->qid, .seg = seg, .offset = *off,
		.rec_len = (uint32_t)(sizeof(h) + env_len + msg_len),
		.msg_len = (uint32_t)msg_len, .checksum = h.checksum,
		.env = r->env, .env_len = (uint32_t)env_len, .nrcpt = 2,
	};
	*off += r->put.rec_len;
}

/* Segment seg of spool, opened read-write (created if need be). */
static inline int
check_seg_open(const char *spool, uint64_t seg)
{
	char rel[SEG_PATH_MAX], path[256];
	int fd;

	seg_path(seg, rel, sizeof(rel));
	snprintf(path, sizeof(path), "%s/%s", spool, rel);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	CHECK_FATAL(fd >= 0);
	return fd;
}

/* The size of segment seg of spool, -1 when it does not exist. */
static inline off_t
check_seg_size(const char *spool, uint64_t seg)
{
	char rel[SEG_PATH_MAX], path[256];
	struct stat st;

	seg_path(seg, rel, sizeof(rel));
	snprintf(path, sizeof(path), "%s/%s", spool, rel);
	return stat(path, &st) == 0 ? st.st_size : -1;
}

/* queue_recover() with its stderr captured into out (NUL-terminated). */
static inline int
check_recover(struct queue_index *qi, const char *spool,
    struct queue_recovery_report *rep, char *out, size_t outlen)
{
	char path[256];
	int saved, fd, err;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/stderr", spool);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	CHECK_FATAL(fd >= 0);
	saved = dup(STDERR_FILENO);
	CHECK_FATAL(saved >= 0 && dup2(fd, STDERR_FILENO) >= 0);
	err = queue_recover(qi, spool, rep);
	CHECK_FATAL(dup2(saved, STDERR_FILENO) >= 0);
	close(saved);
	n = pread(fd, out, outlen - 1, 0);
	out[n > 0 ? n : 0] = '\0';
	close(fd);
	return err;
}

#endif
