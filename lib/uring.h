/*
 * uring.h - the io_uring plumbing every event loop in sluice shares: the
 * daemon's shards and both halves of sluice-bench.
 *
 * - uring_init(): a ring for one thread (SINGLE_ISSUER, DEFER_TASKRUN when
 *   the kernel has them; they are hints, so older kernels get a plain ring).
 *   Call it from the thread that will submit: with SINGLE_ISSUER the
 *   creating task is the only one allowed to.
 * - uring_get_sqe(): never NULL; a full submission queue is submitted first.
 * - user_data layout: op (8 bits) | slot index (24 bits) | generation (32
 *   bits), so a completion names its handler and a stale one is detectable.
 * - uring_bufs: a provided-buffer ring for recv with IOSQE_BUFFER_SELECT, so
 *   an idle connection holds no receive buffer; a buffer goes back with
 *   uring_bufs_recycle() as soon as its bytes are consumed or copied.
 *
 * - uring_loop_step(): the reap-and-dispatch step every event loop runs:
 *   submit, sleep until a completion or a deadline, copy the completions
 *   out of the ring, then hand each to the loop's dispatch function.
 *
 * Errors are returned as -errno.
 */
#ifndef SLUICE_URING_H
#define SLUICE_URING_H

#include <assert.h>
#include <liburing.h>
#include <stddef.h>
#include <stdint.h>

static inline uint64_t
uring_ud(unsigned op, uint32_t idx, uint32_t gen)
{
	assert(op < 256);
	assert(idx < (1u << 24));
	return (uint64_t)op << 56 | (uint64_t)idx << 32 | gen;
}
#define URING_UD_OP(u) ((unsigned)((u) >> 56))
#define URING_UD_IDX(u) ((uint32_t)((u) >> 32) & 0xffffffu)
#define URING_UD_GEN(u) ((uint32_t)(u))

/* entries: submission queue size; cq_entries: 0 for the kernel default. */
int uring_init(struct io_uring *ring, unsigned entries, unsigned cq_entries);
struct io_uring_sqe *uring_get_sqe(struct io_uring *ring);

struct uring_bufs {
	struct io_uring_buf_ring *br;	/* shared with the kernel */
	char *base;			/* count buffers of size bytes */
	size_t ring_bytes;
	unsigned count;			/* a power of two */
	unsigned size;
	uint16_t bgid;
};

/* Register count buffers of size bytes as group bgid. 0 or -errno. */
int uring_bufs_setup(struct io_uring *ring, struct uring_bufs *b,
    unsigned count, unsigned size, uint16_t bgid);
/* Release the memory (the ring's own teardown unregisters the group). */
void uring_bufs_free(struct uring_bufs *b);

/*
 * Queue a recv of up to one buffer from b on fd, the kernel choosing the
 * buffer; ud comes back with the completion.
 */
static inline void
uring_recv_bufs(struct io_uring *ring, int fd, const struct uring_bufs *b,
    uint64_t ud)
{
	struct io_uring_sqe *sqe = uring_get_sqe(ring);

	io_uring_prep_recv(sqe, fd, NULL, b->size, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = b->bgid;
	io_uring_sqe_set_data64(sqe, ud);
}

/* The buffer a recv completion filled (cqe flags carry its id). */
static inline char *
uring_bufs_data(const struct uring_bufs *b, uint32_t cqe_flags, unsigned *bid)
{
	assert(cqe_flags & IORING_CQE_F_BUFFER);
	*bid = cqe_flags >> IORING_CQE_BUFFER_SHIFT;
	assert(*bid < b->count);
	return b->base + (size_t)*bid * b->size;
}

/* Give buffer bid back to the kernel. */
static inline void
uring_bufs_recycle(struct uring_bufs *b, unsigned bid)
{
	io_uring_buf_ring_add(b->br, b->base + (size_t)bid * b->size, b->size,
	    (uint16_t)bid, io_uring_buf_ring_mask(b->count), 0);
	io_uring_buf_ring_advance(b->br, 1);
}

/*
 * One event loop's wait and dispatch. Every thread with a ring runs its
 * loop as: do its own work (queue SQEs), then uring_loop_step(). A step
 * submits what is queued, waits until at least one completion arrives or
 * wait_us passes, reaps up to batch completions (copying them, so the
 * ring's CQ is free again before any handler runs and a handler may queue
 * and submit without recursion), reads the monotonic clock into now_us,
 * and calls dispatch(ctx, user_data, res, flags) for each, in order.
 */
struct uring_done {
	uint64_t ud;
	int res;
	uint32_t flags;
};

struct uring_loop {
	struct io_uring *ring;
	void (*dispatch)(void *ctx, uint64_t ud, int res, uint32_t flags);
	void *ctx;
	const char *name;		/* for the fatal message */
	unsigned batch;			/* completions reaped per step */
	struct uring_done *done;	/* batch entries */
	uint64_t now_us;		/* clock_mono_us() after the last wait */
};

/* 0 or -ENOMEM. batch 0 picks URING_LOOP_BATCH. */
#define URING_LOOP_BATCH 256
int uring_loop_init(struct uring_loop *l, struct io_uring *ring,
    unsigned batch, void (*dispatch)(void *, uint64_t, int, uint32_t),
    void *ctx, const char *name);
void uring_loop_free(struct uring_loop *l);
/*
 * Submit, wait (at most wait_us; 0 polls), reap, dispatch. Returns the
 * number of completions handled. A wait error other than a timeout or an
 * interruption is fatal: the ring is unusable.
 */
unsigned uring_loop_step(struct uring_loop *l, uint64_t wait_us);

#endif
