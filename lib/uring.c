/*
 * uring.c - see uring.h.
 */
#include "uring.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

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
