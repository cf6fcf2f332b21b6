/*
 * uring.c - see uring.h.
 */
#include "uring.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "clock.h"
#include "log.h"

int
uring_init(struct io_uring *ring, unsigned entries, unsigned cq_entries)
{
	struct io_uring_params p;
	int rc;

	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
	if (cq_entries) {
		p.flags |= IORING_SETUP_CQSIZE;
		p.cq_entries = cq_entries;
	}
	rc = io_uring_queue_init_params(entries, ring, &p);
	if (rc == -EINVAL) {
		/* Older kernels lack the task-run flags; they are hints. */
		p.flags &= ~(IORING_SETUP_SINGLE_ISSUER |
		    IORING_SETUP_DEFER_TASKRUN);
		rc = io_uring_queue_init_params(entries, ring, &p);
	}
	return rc;
}

struct io_uring_sqe *
uring_get_sqe(struct io_uring *ring)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

	if (sqe == NULL) {
		/* SQ full: hand what we have to the kernel, then retry. */
		io_uring_submit(ring);
		sqe = io_uring_get_sqe(ring);
	}
	if (sqe == NULL)
		log_panic("no submission queue entry after a submit");
	return sqe;
}

int
uring_bufs_setup(struct io_uring *ring, struct uring_bufs *b, unsigned count,
    unsigned size, uint16_t bgid)
{
	struct io_uring_buf_reg reg;
	unsigned i;
	int rc;

	assert(count > 0 && (count & (count - 1)) == 0 && count <= 32768);
	memset(b, 0, sizeof(*b));
	b->count = count;
	b->size = size;
	b->bgid = bgid;
	b->ring_bytes = count * sizeof(struct io_uring_buf);
	b->br = mmap(NULL, b->ring_bytes, PROT_READ | PROT_WRITE,
	    MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (b->br == MAP_FAILED) {
		b->br = NULL;
		return -errno;
	}
	b->base = malloc((size_t)count * size);
	if (b->base == NULL)
		return -ENOMEM;
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (uint64_t)(uintptr_t)b->br;
	reg.ring_entries = count;
	reg.bgid = bgid;
	if ((rc = io_uring_register_buf_ring(ring, &reg, 0)) < 0)
		return rc;
	io_uring_buf_ring_init(b->br);
	for (i = 0; i < count; i++)
		io_uring_buf_ring_add(b->br, b->base + (size_t)i * size, size,
		    (uint16_t)i, io_uring_buf_ring_mask(count), (int)i);
	io_uring_buf_ring_advance(b->br, (int)count);
	return 0;
}

void
uring_bufs_free(struct uring_bufs *b)
{
	if (b->br != NULL)
		munmap(b->br, b->ring_bytes);
	free(b->base);
	memset(b, 0, sizeof(*b));
}

int
uring_loop_init(struct uring_loop *l, struct io_uring *ring, unsigned batch,
    void (*dispatch)(void *, uint64_t, int, uint32_t), void *ctx,
    const char *name)
{
	assert(ring != NULL && dispatch != NULL);
	memset(l, 0, sizeof(*l));
	l->ring = ring;
	l->dispatch = dispatch;
	l->ctx = ctx;
	l->name = name;
	l->batch = batch != 0 ? batch : URING_LOOP_BATCH;
	l->done = calloc(l->batch, sizeof(*l->done));
	if (l->done == NULL)
		return -ENOMEM;
	l->now_us = clock_mono_us();
	return 0;
}

void
uring_loop_free(struct uring_loop *l)
{
	free(l->done);
	l->done = NULL;
}

unsigned
uring_loop_step(struct uring_loop *l, uint64_t wait_us)
{
	struct __kernel_timespec ts = {
		.tv_sec = (long long)(wait_us / 1000000u),
		.tv_nsec = (long long)(wait_us % 1000000u) * 1000,
	};
	struct io_uring_cqe *cqe;
	unsigned head, n = 0, i;
	int rc;

	rc = io_uring_submit_and_wait_timeout(l->ring, &cqe, 1, &ts, NULL);
	if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY)
		log_fatal("%s: io_uring wait: %s", l->name, strerror(-rc));
	io_uring_for_each_cqe(l->ring, head, cqe) {
		l->done[n].ud = cqe->user_data;
		l->done[n].res = cqe->res;
		l->done[n].flags = cqe->flags;
		if (++n == l->batch)
			break;
	}
	io_uring_cq_advance(l->ring, n);
	l->now_us = clock_mono_us();
	for (i = 0; i < n; i++)
		l->dispatch(l->ctx, l->done[i].ud, l->done[i].res,
		    l->done[i].flags);
	return n;
}
