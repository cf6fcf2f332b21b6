/*
 * queue_id.c - queue ids: time-ordered, per-shard, strictly increasing.
 *
 * Purpose: give every accepted message a 64-bit id that is unique across
 * shards without coordination and sorts by arrival, so LMDB cursor order,
 * the text form and arrival order all agree.
 *
 * Contract: id = ms << 22 | shard << 16 | seq, where ms counts milliseconds
 * since QUEUE_ID_EPOCH_MS (42 bits), shard is 0..63 and seq restarts at 0
 * each millisecond. queue_id_next() never goes backwards: if the clock
 * steps back it keeps using the last millisecond, and when a millisecond's
 * 65536 sequence numbers are used up it borrows the next millisecond (the
 * clock catches up on its own). The shard bits make two shards' ids differ
 * even in the same millisecond.
 *
 * Diagnostics: none; programmer errors (shard out of range, the 42-bit
 * clock running out in the year 2163) fail an assertion.
 */
#include "queue.h"

#include <assert.h>
#include <errno.h>

#include "../lib/hex.h"

#define ID_SEQ_BITS 16
#define ID_SHARD_BITS 6
#define ID_MS_SHIFT (ID_SEQ_BITS + ID_SHARD_BITS)
#define ID_SEQ_MAX ((1u << ID_SEQ_BITS) - 1)
#define ID_MS_MAX ((UINT64_C(1) << (64 - ID_MS_SHIFT)) - 1)

static_assert(QUEUE_ID_SHARD_MAX == (1 << ID_SHARD_BITS) - 1,
    "shard field width");
static_assert(ID_MS_SHIFT + 42 == 64, "42 bits of milliseconds");

static uint64_t
id_make(uint64_t ms, unsigned shard, unsigned seq)
{
	assert(ms <= ID_MS_MAX);
	assert(shard <= QUEUE_ID_SHARD_MAX);
	assert(seq <= ID_SEQ_MAX);
	return ms << ID_MS_SHIFT | (uint64_t)shard << ID_SEQ_BITS | seq;
}

uint64_t
queue_id_next(struct queue_id_gen *g, uint64_t now_ms)
{
	uint64_t last = g->last;
	uint64_t last_ms = last >> ID_MS_SHIFT;
	unsigned last_shard = (unsigned)(last >> ID_SEQ_BITS) &
	    QUEUE_ID_SHARD_MAX;
	unsigned last_seq = (unsigned)last & ID_SEQ_MAX;
	uint64_t ms, id;

	assert(g->shard <= QUEUE_ID_SHARD_MAX);
	/* A clock before the epoch is wrong; the ids still come out ordered. */
	ms = now_ms > QUEUE_ID_EPOCH_MS ? now_ms - QUEUE_ID_EPOCH_MS : 0;
	if (ms > last_ms) {
		id = id_make(ms, g->shard, 0);
	} else if (g->shard == last_shard && last_seq < ID_SEQ_MAX) {
		/* Same or earlier millisecond: continue the last one. */
		id = id_make(last_ms, g->shard, last_seq + 1);
	} else if (g->shard > last_shard) {
		/* last was preset from a lower shard: our shard bits win. */
		id = id_make(last_ms, g->shard, 0);
	} else {
		/* Sequence used up, or last is a higher shard's: borrow. */
		id = id_make(last_ms + 1, g->shard, 0);
	}
	assert(id > last);
	g->last = id;
	return id;
}

static_assert(QUEUE_ID_LEN == HEX64_LEN, "ids are printed in full");

void
queue_id_format(uint64_t id, char out[QUEUE_ID_LEN + 1])
{
	hex64_format(id, out);
}

int
queue_id_parse(const char *s, uint64_t *id)
{
	uint64_t v = 0;
	int i;

	assert(s != NULL);
	assert(id != NULL);
	for (i = 0; i < QUEUE_ID_LEN; i++) {
		char c = s[i];
		unsigned d;

		if (c >= '0' && c <= '9')
			d = (unsigned)(c - '0');
		else if (c >= 'A' && c <= 'F')
			d = (unsigned)(c - 'A' + 10);
		else if (c >= 'a' && c <= 'f')
			d = (unsigned)(c - 'a' + 10);
		else
			return -EINVAL;	/* also ends a string that is too short */
		v = v << 4 | d;
	}
	if (s[i] != '\0')
		return -EINVAL;
	*id = v;
	return 0;
}
