/*
 * shard_seg.c - a shard's spool segments: the current one records are
 * placed at the end of, the next one opened ahead through the ring (its
 * directory entry synced before any record goes in), and their release
 * once sealed and every job placed in them is back from the committer.
 * See shard.c for the records' way to the committer.
 */
#include "shard_int.h"

/* ---- the record write and its fsync ---------------------------------- */

int
shard_seg_open_sync(struct shard *sh)
{
	char name[64];
	struct seg *s;
	int i, fd;
	uint64_t id;

	for (i = 0; i < SHARD_SEGS; i++)
		if (!sh->segs[i].in_use)
			break;
	if (i == SHARD_SEGS)
		return -ENOSPC;
	id = SEG_ID(sh->id, ++sh->seg_seq);
	seg_path(id, name, sizeof(name));
	fd = openat(sh->segdir_fd, strchr(name, '/') + 1,
	    O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
	if (fd < 0)
		return -errno;
	/* Allocated whole, as shard_handle_seg_open() says; this path runs
	 * at start and after a failure, where a wait is no harm. */
	if (fallocate(fd, 0, 0, (off_t)sh->cfg->queue.segment_size) < 0 &&
	    errno != EOPNOTSUPP)
		log_debug("shard %u: segment %s not allocated ahead: %s",
		    sh->id, name, strerror(errno));
	/* The new name must be durable before any record in it is. */
	if (fsync(sh->segdir_fd) < 0) {
		close(fd);
		return -errno;
	}
	s = &sh->segs[i];
	memset(s, 0, sizeof(*s));
	s->in_use = true;
	s->id = id;
	s->fd = fd;
	return i;
}

/* Open the next segment in the background, before the current fills. */
void
shard_seg_preopen(struct shard *sh)
{
	struct io_uring_sqe *sqe;
	char name[64];

	if (sh->next >= 0 || sh->next_opening || sh->stopping)
		return;
	/* Reserve the number now: a synchronous open meanwhile must not
	 * pick the same name. */
	sh->next_seq = ++sh->seg_seq;
	seg_path(SEG_ID(sh->id, sh->next_seq), name, sizeof(name));
	snprintf(sh->next_name, sizeof(sh->next_name), "%s",
	    strchr(name, '/') + 1);
	sqe = get_sqe(sh);
	io_uring_prep_openat(sqe, sh->segdir_fd, sh->next_name,
	    O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
	io_uring_sqe_set_data64(sqe, uring_ud(OP_SEG_OPEN, 0, 0));
	sh->next_opening = true;
	sh->seg_ops++;
}

void
shard_handle_seg_open(struct shard *sh, int res)
{
	struct io_uring_sqe *sqe;
	int i;

	sh->seg_ops--;
	if (res < 0) {
		log_warn("shard %u: cannot create segment %s: %s", sh->id,
		    sh->next_name, strerror(-res));
		sh->next_opening = false;
		return;
	}
	for (i = 0; i < SHARD_SEGS; i++)
		if (!sh->segs[i].in_use)
			break;
	if (i == SHARD_SEGS) {
		close(res);
		sh->next_opening = false;
		return;
	}
	memset(&sh->segs[i], 0, sizeof(sh->segs[i]));
	sh->segs[i].in_use = true;
	sh->segs[i].id = SEG_ID(sh->id, sh->next_seq);
	sh->segs[i].fd = res;
	/*
	 * Allocate the whole segment now (its size too), so that a group
	 * commit's fdatasync has no file size to write: each sync of an
	 * appended record took about a third more time and CPU than one of
	 * a record written into allocated space (docs/performance.md).
	 * Where that cannot be done (no room, a file system without
	 * fallocate) the segment grows by its appends as before.
	 */
	sqe = get_sqe(sh);
	io_uring_prep_fallocate(sqe, res, 0, 0,
	    (off_t)sh->cfg->queue.segment_size);
	io_uring_sqe_set_data64(sqe, uring_ud(OP_SEG_ALLOC, (uint32_t)i, 0));
	sh->seg_ops++;
}

void
shard_handle_seg_alloc(struct shard *sh, uint32_t i, int res)
{
	struct io_uring_sqe *sqe;

	sh->seg_ops--;
	if (res < 0 && res != -EOPNOTSUPP)
		log_debug("shard %u: segment %s not allocated ahead: %s",
		    sh->id, sh->next_name, strerror(-res));
	sqe = get_sqe(sh);
	io_uring_prep_fsync(sqe, sh->segdir_fd, 0);
	io_uring_sqe_set_data64(sqe, uring_ud(OP_SEG_DIRSYNC, i, 0));
	sh->seg_ops++;
}

void
shard_handle_seg_dirsync(struct shard *sh, uint32_t i, int res)
{
	sh->seg_ops--;
	sh->next_opening = false;
	if (res < 0) {
		log_warn("shard %u: fsync of the segment directory: %s",
		    sh->id, strerror(-res));
		close(sh->segs[i].fd);
		sh->segs[i].in_use = false;
		return;
	}
	sh->next = (int)i;
}


/*
 * A sealed segment nothing is in flight for is closed, and the committer
 * told (after every record of it, in order) so that it can delete the
 * file once no indexed message lives in it.
 */
void
shard_seg_release(struct shard *sh, struct seg *s)
{
	struct commit_job *job;

	if (s->sealed && s->refs == 0) {
		close(s->fd);
		s->in_use = false;
		job = calloc(1, sizeof(*job));
		if (job == NULL)
			return;	/* the file stays until a restart */
		job->kind = COMMIT_SEAL;
		job->put.seg = s->id;
		job->shard = sh->id;
		job->conn_idx = COMMIT_NO_CONN;
		sh->jobs_out++;
		shard_pending_push(sh, job);
	}
}

/*
 * The segment the next record of rec_len bytes goes to, or NULL with *err
 * set to why no segment could be had.
 */
struct seg *
shard_seg_for_append(struct shard *sh, uint64_t rec_len, int *err)
{
	struct seg *cur = sh->cur >= 0 ? &sh->segs[sh->cur] : NULL;
	int i;

	if (cur != NULL && !cur->broken &&
	    (cur->end == 0 || cur->end + rec_len <= sh->cfg->queue.segment_size
	    || (sh->next < 0 && sh->next_opening)))
		goto ok;
	if (sh->next >= 0) {
		i = sh->next;
		sh->next = -1;
	} else if ((i = shard_seg_open_sync(sh)) < 0) {
		log_warn("shard %u: cannot create a segment: %s", sh->id,
		    strerror(-i));
		*err = i;
		return cur != NULL && !cur->broken ? cur : NULL;
	}
	if (cur != NULL) {
		cur->sealed = true;
		shard_seg_release(sh, cur);
	}
	sh->cur = i;
	cur = &sh->segs[i];
ok:
	if (cur->end + rec_len > sh->cfg->queue.segment_size / 2)
		shard_seg_preopen(sh);
	return cur;
}
