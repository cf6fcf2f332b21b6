/*
 * Description: a batch of messages written by hand into a segment and
 * indexed with queue_index_write() reads back whole through get,
 * foreach (in id order, across several read batches), read_message and
 * count; a failing batch indexes nothing; a read-only open sees the
 * writer's data; an index of another version is refused.
 */
#define QUEUE_INTERNAL
#include "check.h"
#include "../../queue/queue.h"
#include "queue_check.h"

#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAP_SIZE (64u << 20)
#define NMSG 150	/* more than one foreach batch */

static char spool[64];

/* Append one record for (qid, rcpts, body) to the segment; fill *p. */
static void
write_record(int fd, uint64_t seg, uint64_t *off, uint64_t qid,
    const char **rcpts, uint16_t nrcpt, const char *body,
    struct queue_put *p, uint8_t *envbuf, size_t envcap)
{
	struct envelope e = {
		.qid = qid,
		.arrival_us = 1700000000000000ULL + qid,
		.body = QUEUE_BODY_8BITMIME,
		.sender = qid % 2 ? "" : "sender@example.org",
		.client_addr = "192.0.2.7",
		.helo = "client.example.net",
		.protocol = "ESMTP",
		.rcpt = rcpts,
		.nrcpt = nrcpt,
	};
	struct seg_hdr h;
	size_t env_len = envelope_encoded_len(&e), msg_len = strlen(body);

	CHECK_FATAL(env_len <= envcap);
	CHECK_FATAL(envelope_encode(&e, envbuf) == env_len);
	seg_hdr_fill(&h, qid, envbuf, (uint32_t)env_len, body,
	    (uint32_t)msg_len);
	CHECK_FATAL(pwrite(fd, &h, sizeof(h), (off_t)*off) == sizeof(h));
	CHECK_FATAL(pwrite(fd, envbuf, env_len, (off_t)(*off + sizeof(h))) ==
	    (ssize_t)env_len);
	CHECK_FATAL(pwrite(fd, body, msg_len,
	    (off_t)(*off + sizeof(h) + env_len)) == (ssize_t)msg_len);
	*p = (struct queue_put){
		.qid = qid, .seg = seg, .offset = *off,
		.rec_len = (uint32_t)(sizeof(h) + env_len + msg_len),
		.msg_len = (uint32_t)msg_len, .checksum = h.checksum,
		.env = envbuf, .env_len = (uint32_t)env_len, .nrcpt = nrcpt,
		.result = 12345,
	};
	*off += p->rec_len;
}

struct walk {
	uint64_t prev;
	size_t n;
};

static int
walk_fn(void *arg, const struct queue_msg *m)
{
	struct walk *w = arg;

	CHECK(m->qid > w->prev);
	CHECK(m->env.qid == m->qid);
	CHECK(m->meta.nrcpt == m->env.nrcpt);
	CHECK(m->rcpt[0].state == RCPT_PENDING);
	w->prev = m->qid;
	w->n++;
	return 0;
}

static int
stop_fn(void *arg, const struct queue_msg *m)
{
	(void)m;
	return ++*(int *)arg == 3 ? 42 : 0;
}


int
main(void)
{
	static uint8_t envbuf[NMSG][1024];
	static struct queue_put puts[NMSG];
	const char *rcpts[] = { "a@example.com", "b@example.com",
	    "c@example.com" };
	struct queue_index *qi, *ro;
	struct queue_msg m;
	struct walk w = { 0 };
	char segfile[128], rel[SEG_PATH_MAX], body[256], cmd[160];
	uint64_t seg = SEG_ID(2, 9), off = 0, n, max;
	uint8_t *msg;
	size_t len;
	int fd, stops = 0, status;
	pid_t pid;

	strcpy(spool, "/tmp/t_queue_index.XXXXXX");
	CHECK_FATAL(mkdtemp(spool) != NULL);
	strcat(spool, "/spool");	/* open must create it */
	CHECK_FATAL(queue_index_open(&qi, spool, MAP_SIZE, 0) == 0);
	CHECK(queue_index_count(qi, &n) == 0 && n == 0);
	CHECK(queue_index_max_id(qi, &max) == 0 && max == 0);

	seg_path(seg, rel, sizeof(rel));
	CHECK(strcmp(rel, "seg/002-0000000009.seg") == 0);
	snprintf(segfile, sizeof(segfile), "%s/%s", spool, rel);
	fd = open(segfile, O_RDWR | O_CREAT | O_EXCL, 0600);
	CHECK_FATAL(fd >= 0);
	/* Ids out of order on purpose: the index must still sort them. */
	for (unsigned i = 0; i < NMSG; i++) {
		uint64_t qid = 1000 + (uint64_t)((i * 37) % NMSG);

		snprintf(body, sizeof(body), "Subject: m%u\r\nX: y\r\n\r\n"
		    "body %u\r\n", i, i);
		write_record(fd, seg, &off, qid, rcpts, (uint16_t)(1 + i % 3),
		    body, &puts[i], envbuf[i], sizeof(envbuf[i]));
	}
	CHECK_FATAL(fdatasync(fd) == 0);
	CHECK(queue_index_write(qi, puts, NMSG, NULL, 0, NULL, 0, NULL, NULL) == 0);
	for (unsigned i = 0; i < NMSG; i++)
		CHECK(puts[i].result == 0);
	CHECK(queue_index_count(qi, &n) == 0 && n == NMSG);
	CHECK(queue_index_count_quarantine(qi, &n) == 0 && n == 0);
	CHECK(queue_index_max_id(qi, &max) == 0 && max == 1000 + NMSG - 1);

	/* get: every field as written. */
	CHECK_FATAL(queue_index_get(qi, puts[7].qid, &m) == 0);
	CHECK(m.qid == puts[7].qid);
	CHECK(m.meta.state == MSG_QUEUED);
	CHECK(m.meta.seg == seg);
	CHECK(m.meta.offset == puts[7].offset);
	CHECK(m.meta.rec_len == puts[7].rec_len);
	CHECK(m.meta.checksum == puts[7].checksum);
	CHECK(m.env.nrcpt == 2);
	CHECK(strcmp(m.env.rcpt[1], "b@example.com") == 0);
	CHECK(strcmp(m.env.helo, "client.example.net") == 0);
	CHECK(m.rcpt[1].state == RCPT_PENDING && m.rcpt[1].attempts == 0);
	CHECK(queue_read_message(spool, &m, &msg, &len) == 0);
	CHECK(len == m.meta.msg_len);
	CHECK(memcmp(msg, "Subject: m7\r\n", 13) == 0);
	free(msg);
	CHECK(queue_read_verify(spool, &m, NULL, NULL, NULL) == 0);
	queue_msg_release(&m);
	CHECK(m.storage == NULL && m.rcpt == NULL);

	CHECK(queue_index_get(qi, 999, &m) == QUEUE_ENOTFOUND);
	CHECK(queue_index_foreach(qi, walk_fn, &w) == 0);
	CHECK(w.n == NMSG);
	CHECK(queue_index_foreach(qi, stop_fn, &stops) == 42);

	/* A batch with a duplicate id: nothing of it is indexed. */
	{
		struct queue_put two[2];
		static uint8_t eb[2][1024];

		write_record(fd, seg, &off, 5000, rcpts, 1, "x\r\n", &two[0],
		    eb[0], sizeof(eb[0]));
		write_record(fd, seg, &off, 1003, rcpts, 1, "y\r\n", &two[1],
		    eb[1], sizeof(eb[1]));
		CHECK(queue_index_write(qi, two, 2, NULL, 0, NULL, 0, NULL, NULL) == QUEUE_EINDEX);
		CHECK(two[0].result == QUEUE_EINDEX);
		CHECK(two[1].result == QUEUE_EINDEX);
		CHECK(queue_index_get(qi, 5000, &m) == QUEUE_ENOTFOUND);
		CHECK(queue_index_count(qi, &n) == 0 && n == NMSG);
	}

	/*
	 * A reader alongside the writer, as sluicectl next to sluiced: in
	 * another process, since LMDB allows one open per process.
	 */
	pid = fork();
	CHECK_FATAL(pid >= 0);
	if (pid == 0) {
		if (queue_index_open(&ro, spool, 0, 1) != 0)
			_exit(2);
		if (queue_index_count(ro, &n) != 0 || n != NMSG)
			_exit(3);
		if (queue_index_get(ro, 1000, &m) != 0)
			_exit(4);
		queue_msg_release(&m);
		queue_index_close(ro);
		_exit(0);
	}
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	queue_index_close(qi);
	close(fd);

	/* A read-only open of a spool that has no index is an error. */
	CHECK(queue_index_open(&ro, "/nonexistent/spool", 0, 1) == -ENOENT);

	/* Another on-disk version is refused (1 is migrated at recovery). */
	check_index_version(spool, true, QUEUE_INDEX_VERSION + 1);
	CHECK(queue_index_open(&qi, spool, MAP_SIZE, 0) == QUEUE_EFORMAT);
	CHECK(queue_index_open(&qi, spool, MAP_SIZE, 1) == QUEUE_EFORMAT);
	check_index_version(spool, true, QUEUE_INDEX_VERSION);
	CHECK(queue_index_open(&qi, spool, MAP_SIZE, 0) == 0);
	queue_index_close(qi);

	CHECK(strlen(queue_strerror(QUEUE_ECORRUPT)) > 0);
	CHECK(strcmp(queue_strerror(-ENOENT), strerror(ENOENT)) == 0);

	snprintf(cmd, sizeof(cmd), "rm -rf '%.*s'", (int)(strlen(spool) - 6),
	    spool);
	CHECK(system(cmd) == 0);
	return check_done();
}
