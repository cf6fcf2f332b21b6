/*
 * deliver_feed.c - the active set's feeder; see deliver.h ("The active
 * set").
 *
 * One thread. A shard with room asks (dl_feed_ask(): dl_feeds[].want and
 * an eventfd write, never a wait); the feeder takes up to that many of the
 * shard's parked recipients out of the index (queue_index_unpark(), one
 * short LMDB write transaction per FEED_BATCH) and dispatches their
 * messages again, which posts the items to the shard's inbox. A shard
 * whose parked recipients are all due later than the horizon is looked at
 * again at most once a second.
 *
 * Nothing is lost if the feeder stops with work undone: a parked
 * recipient stays pending in the index, and every start clears "parked"
 * and schedules every pending recipient again.
 */
#include "deliver_int.h"

#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../lib/clock.h"
#include "../lib/log.h"
#include "../lib/thread.h"
#include "../queue/queue.h"
#include "../lib/efd.h"

#define FEED_BATCH 1024		/* recipients per unpark transaction */
#define FEED_IDLE_MS 1000	/* a shard with nothing due: looked at again */
#define FEED_ASK_MS 100		/* a shard asks at most this often */
#define START_PARK_BATCH 8192	/* parks per index write at start-up */

static struct {
	pthread_t thread;
	bool running;
	_Atomic int efd;		/* closed only after the shards end */
	pthread_mutex_t lock;		/* an unpark and its posts vs. control */
	_Atomic bool stop;
	uint64_t next_ms[64];		/* per shard: not before */
	/* Start-up: items posted per owner, parks waiting to be written. */
	bool starting;
	uint64_t start_horizon_us;
	uint32_t start_items[64], start_rcpts[64];
	struct queue_update *start_ups;
	size_t nstart_ups;
	uint64_t start_parked;
} feed = { .efd = -1, .lock = PTHREAD_MUTEX_INITIALIZER };

int
deliver_dispatch_msg(const struct queue_msg *m, const bool *pending,
    uint64_t next_try_us)
{
	uint16_t attempts = 0;
	uint64_t next = 0;
	bool *want, any = false;
	int n;

	want = calloc(m->meta.nrcpt, sizeof(*want));
	if (want == NULL)
		return -ENOMEM;
	for (uint32_t i = 0; i < m->meta.nrcpt; i++) {
		const struct rcpt_meta *r = &m->rcpt[i];

		if (r->state != RCPT_PENDING || (pending != NULL && !pending[i]))
			continue;
		want[i] = any = true;
		if (r->attempts > attempts)
			attempts = r->attempts;
		if (r->next_try_us > next)
			next = r->next_try_us;
	}
	if (next_try_us != UINT64_MAX)
		next = next_try_us;
	n = any ? deliver_dispatch(&m->meta, m->qid, &m->env, want, attempts,
	    next, NULL, NULL) : 0;
	free(want);
	return n;
}

/* ---- start-up -------------------------------------------------------- */

/* Put back into the schedule the recipients of ups[0..n) (start-up). */
static void
start_unpark(const struct queue_update *ups, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct queue_msg m;
		bool *pending;

		if (i > 0 && ups[i].qid == ups[i - 1].qid)
			continue;	/* one message's run */
		if (queue_index_get(dl_index, ups[i].qid, &m) != 0)
			continue;
		pending = calloc(m.meta.nrcpt, sizeof(*pending));
		for (size_t j = i; pending && j < n && ups[j].qid == ups[i].qid;
		    j++)
			if (ups[j].idx < m.meta.nrcpt)
				pending[ups[j].idx] = true;
		if (pending == NULL || deliver_dispatch_msg(&m, pending,
		    UINT64_MAX) < 0)
			log_fatal("out of memory scheduling the queue");
		free(pending);
		queue_msg_release(&m);
	}
}

/*
 * Write the start-up parks. When the index cannot take them (a full
 * map), they go to memory instead, and so does everything after: parking
 * is a saving, never a reason not to start.
 */
static void
start_flush(void)
{
	struct queue_removed *rem;
	size_t nrem;
	int rc = -ENOMEM;

	if (feed.nstart_ups == 0)
		return;
	rem = calloc(feed.nstart_ups, sizeof(*rem));
	if (rem != NULL)
		rc = queue_index_write(dl_index, NULL, 0, feed.start_ups,
		    feed.nstart_ups, NULL, 0, rem, &nrem);
	free(rem);
	if (rc != 0) {
		log_warn("queue: cannot park recipients at start-up (%s): "
		    "the whole queue is scheduled in memory",
		    queue_strerror(rc));
		feed.starting = false;
		for (size_t i = 0; i < feed.nstart_ups; i++)
			atomic_fetch_sub(&dl_feeds[feed.start_ups[i].state]
			    .submitted, 1);
		start_unpark(feed.start_ups, feed.nstart_ups);
	}
	feed.nstart_ups = 0;
}

int
deliver_start_begin(void)
{
	assert(dl_index != NULL);
	feed.starting = true;
	memset(feed.start_items, 0, sizeof(feed.start_items));
	memset(feed.start_rcpts, 0, sizeof(feed.start_rcpts));
	feed.start_parked = 0;
	feed.start_horizon_us = clock_real_us() +
	    DELIVER_FEED_HORIZON_S * 1000000ull;
	feed.start_ups = calloc(START_PARK_BATCH + 65536,
	    sizeof(*feed.start_ups));
	if (feed.start_ups == NULL)
		return -ENOMEM;
	return queue_index_park_clear(dl_index);
}

/*
 * At start-up, instead of posting: is owner's share already posted? Then
 * it's recipients are parked straight into the index (and it is freed).
 */
bool
dl_start_park(unsigned owner, struct dl_item *it, uint64_t next_try_us)
{
	const struct delivery_cfg *dc;

	if (!feed.starting)
		return false;
	dc = dl_cfg()->delivery;
	/* Due within the horizon, while the share lasts: into memory. Due
	 * later: parked whatever the room, so that a backlog for a dead
	 * destination never fills the set ahead of live mail. */
	if (next_try_us <= feed.start_horizon_us &&
	    feed.start_items[owner] < dl_share(dc->active_messages) &&
	    feed.start_rcpts[owner] + it->nrcpt <=
	    dl_share(dc->active_recipients)) {
		feed.start_items[owner]++;
		feed.start_rcpts[owner] += it->nrcpt;
		return false;
	}
	for (uint16_t i = 0; i < it->nrcpt; i++) {
		struct queue_update *u = &feed.start_ups[feed.nstart_ups++];

		memset(u, 0, sizeof(*u));
		u->kind = QUEUE_UPD_PARK;
		u->qid = it->qid;
		u->idx = it->rcpt[i];
		u->state = (uint8_t)owner;
		u->next_try_us = next_try_us;
	}
	atomic_fetch_add(&dl_feeds[owner].submitted, it->nrcpt);
	feed.start_parked += it->nrcpt;
	dl_item_destroy(it);
	if (feed.nstart_ups >= START_PARK_BATCH)
		start_flush();
	return true;
}

int
deliver_start_end(void)
{
	start_flush();
	feed.starting = false;
	free(feed.start_ups);
	feed.start_ups = NULL;
	if (feed.start_parked > 0)
		log_info("queue: %llu recipient(s) parked beyond the active "
		    "set (delivery.active_messages/active_recipients)",
		    (unsigned long long)feed.start_parked);
	return 0;
}

/* ---- shards ask ------------------------------------------------------ */

void
dl_feed_ask(struct deliver *d)
{
	struct dl_feed *f = &dl_feeds[d->id];
	uint32_t room_i, room_r, room;
	int rc;
	int efd;

	if (d->stopping || d->now_ms < d->feed_next_ms ||
	    !dl_feed_parked(d) || atomic_load(&f->want) != 0)
		return;
	room_i = d->max_items > d->nitems ? d->max_items - d->nitems : 0;
	room_r = d->max_rcpts > d->nrcpts ? d->max_rcpts - d->nrcpts : 0;
	room = room_i < room_r ? room_i : room_r;
	/* Refill in quarters of each limit, not one by one. */
	if (room == 0 || room_i < d->max_items / 4 ||
	    room_r < d->max_rcpts / 4)
		return;
	d->feed_next_ms = d->now_ms + FEED_ASK_MS;
	atomic_store(&f->want, room);
	efd = atomic_load(&feed.efd);
	if (efd >= 0 && (rc = efd_wake(efd)) < 0)
		log_warn("deliver: feeder eventfd write: %s", strerror(-rc));
}

/* Has this shard parked recipients the feeder has not found drained? */
bool
dl_feed_parked(const struct deliver *d)
{
	const struct dl_feed *f = &dl_feeds[d->id];

	return atomic_load(&f->submitted) != atomic_load(&f->drained);
}

/* ---- the feeder thread ----------------------------------------------- */

static void
unparked(void *arg, const struct queue_msg *m, const bool *pending,
    uint64_t next_try_us)
{
	(void)arg;
	if (deliver_dispatch_msg(m, pending, next_try_us) < 0) {
		char q[QUEUE_ID_LEN + 1];

		queue_id_format(m->qid, q);
		log_warn("%s: out of memory taking it back from the parked "
		    "table; a restart schedules it", q);
	}
}

/* Fill shard s's room (want) from its parked recipients. */
static void
feed_shard(unsigned s, uint64_t now_ms)
{
	struct dl_feed *f = &dl_feeds[s];
	uint32_t want = atomic_load(&f->want);
	uint64_t written, horizon;
	bool left = true;
	size_t done = 0;

	if (want == 0 || now_ms < feed.next_ms[s])
		return;
	/* Parks the index wrote before this scan: if it finds the table
	 * empty, all of those are taken out. */
	written = queue_index_parks_written(dl_index, s);
	horizon = clock_real_us() + DELIVER_FEED_HORIZON_S * 1000000ull;
	/* What s parked comes back to s, its lanes' mail included. */
	dl_dispatch_as((int)s);
	while (done < want && left) {
		size_t n = want - done < FEED_BATCH ? want - done : FEED_BATCH;
		int rc;

		pthread_mutex_lock(&feed.lock);
		rc = queue_index_unpark(dl_index, s, n, horizon, unparked,
		    NULL, &left);
		pthread_mutex_unlock(&feed.lock);
		if (rc < 0) {
			log_warn("deliver: taking parked recipients of shard "
			    "%u: %s", s, queue_strerror(rc));
			feed.next_ms[s] = now_ms + FEED_IDLE_MS;
			left = true;	/* never "drained" on an error */
			break;
		}
		if (rc == 0)
			break;
		done += (size_t)rc;
	}
	dl_dispatch_as(-1);
	if (!left)
		atomic_store(&f->drained, written);
	else if (done == 0)
		feed.next_ms[s] = now_ms + FEED_IDLE_MS;
	atomic_store(&f->want, 0);
}

static void *
feed_main(void *arg)
{
	(void)arg;
	thread_name("feed", -1);
	while (!atomic_load(&feed.stop)) {
		struct pollfd p = { .fd = atomic_load(&feed.efd),
		    .events = POLLIN };
		uint64_t v, now;

		if (poll(&p, 1, FEED_IDLE_MS) > 0 &&
		    read(p.fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
			log_warn("deliver: feeder eventfd read: %s",
			    strerror(errno));
		now = clock_mono_ms();
		for (unsigned s = 0; s < dl_nshards() &&
		    !atomic_load(&feed.stop); s++)
			feed_shard(s, now);
	}
	return NULL;
}

int
deliver_feed_start(void)
{
	int rc;

	assert(dl_index != NULL && !feed.running);
	if (atomic_load(&feed.efd) < 0) {
		int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

		if (fd < 0)
			return -errno;
		atomic_store(&feed.efd, fd);
	}
	atomic_store(&feed.stop, false);
	rc = pthread_create(&feed.thread, NULL, feed_main, NULL);
	if (rc != 0)
		return -rc;
	feed.running = true;
	return 0;
}

void
deliver_feed_stop(void)
{
	int rc;

	if (!feed.running)
		return;
	atomic_store(&feed.stop, true);
	if ((rc = efd_wake(atomic_load(&feed.efd))) < 0)
		log_warn("deliver: feeder eventfd write: %s", strerror(-rc));
	pthread_join(feed.thread, NULL);
	feed.running = false;
	/* The eventfd stays open: a shard may still write it. */
}

/* After every shard has ended. */
void
dl_feed_free(void)
{
	int fd = atomic_exchange(&feed.efd, -1);

	if (fd >= 0)
		close(fd);
}

void
deliver_park_lock(void)
{
	pthread_mutex_lock(&feed.lock);
}

void
deliver_park_unlock(void)
{
	pthread_mutex_unlock(&feed.lock);
}

/* ---- operator commands ----------------------------------------------- */

int
deliver_unpark_all_now(void)
{
	if (dl_index == NULL)
		return 0;
	return queue_index_park_due_now(dl_index);
}

int
deliver_unpark_qid(uint64_t qid)
{
	int rc;

	if (dl_index == NULL)
		return 0;
	rc = queue_index_unpark_qid(dl_index, qid, unparked, NULL);
	return rc < 0 ? rc : 0;
}
