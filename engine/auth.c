/*
 * auth.c - password checks on worker threads, failed-login counts; see
 * auth.h.
 *
 * The queue of checks is a list under a mutex with a condition variable:
 * checks are few (one per login, not per message) and each costs a hash,
 * so a lock-free ring would buy nothing. The verdicts go back to each
 * shard through a list of its own under a mutex, then a write to the
 * shard's eventfd, which the shard reads through its ring.
 */
#include "auth.h"

#include <arpa/inet.h>
#include <assert.h>
#include <crypt.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <xxhash.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "../lib/log.h"
#include "../lib/thread.h"
#include "../lib/efd.h"

/* Workers run this much nicer than the shards: mail flow comes first. */
#define AUTH_NICE 5

/* One check on its way to a worker. */
struct auth_request {
	struct auth_request *next;
	unsigned shard;
	const struct config *cfg;	/* the session's: its users */
	const char *dummy;		/* and its dummy hash */
	char pass[SASL_FIELD_MAX + 1];
	struct auth_result r;
};

struct auth_inbox {
	pthread_mutex_t lock;
	struct auth_result *head, *tail;
};

static struct {
	/* The newest configuration's failure limits (a reload sets them:
	 * copies, as an older configuration is freed once unused). */
	_Atomic uint32_t failures;
	_Atomic uint64_t failure_window_ms;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct auth_request *head, *tail;
	unsigned queued;
	bool stop;
	pthread_t workers[AUTH_WORKERS_MAX];
	unsigned nworkers;
	unsigned nshards;
	const int *efds;
	struct auth_inbox *inbox;
} pool = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.cond = PTHREAD_COND_INITIALIZER,
};

/*
 * Failed logins per client address: (count << 48) | time of the last
 * failure (monotonic ms, 48 bits), indexed by 16 bits of the address
 * key. A collision only makes the limit stricter for the unlucky pair.
 */
#define FAIL_SLOTS	(1u << 16)
#define FAIL_TIME_BITS	48
#define FAIL_TIME_MASK	((UINT64_C(1) << FAIL_TIME_BITS) - 1)
static _Atomic uint64_t fail_table[FAIL_SLOTS];

uint64_t
auth_addr_key(const char *client_addr)
{
	struct in6_addr a6;

	/* One IPv6 client usually holds a whole /64: count it as one. */
	if (strchr(client_addr, ':') != NULL &&
	    inet_pton(AF_INET6, client_addr, &a6) == 1)
		return XXH3_64bits(&a6, 8);
	return XXH3_64bits(client_addr, strlen(client_addr));
}

/*
 * Does the failure record v still count at now_ms? Each shard has its
 * own idea of now (its loop's last wake-up), so another shard may have
 * stored a time a little ahead of ours: that is "just now", not "long
 * ago" (an unsigned wrap here would forgive every failure).
 */
static bool
fail_recent(uint64_t v, uint64_t now_ms)
{
	uint64_t last = v & FAIL_TIME_MASK;

	if (v == 0)
		return false;
	return now_ms <= last ||
	    now_ms - last < atomic_load_explicit(&pool.failure_window_ms,
	    memory_order_relaxed);
}

/* Failures from key still within the window at now_ms. */
static uint32_t
fail_count(uint64_t key, uint64_t now_ms)
{
	uint64_t v = atomic_load(&fail_table[key % FAIL_SLOTS]);

	return fail_recent(v, now_ms) ? (uint32_t)(v >> FAIL_TIME_BITS) : 0;
}

uint64_t
auth_fail_delay_ms(uint64_t key, uint64_t now_ms)
{
	_Atomic uint64_t *slot = &fail_table[key % FAIL_SLOTS];
	uint64_t v = atomic_load(slot), nv, delay;
	uint32_t n;

	do {
		n = 1;
		if (fail_recent(v, now_ms))
			n = (uint32_t)(v >> FAIL_TIME_BITS) + 1;
		if (n > 0xffff)
			n = 0xffff;
		nv = (uint64_t)n << FAIL_TIME_BITS | (now_ms & FAIL_TIME_MASK);
	} while (!atomic_compare_exchange_weak(slot, &v, nv));
	if (n >= atomic_load_explicit(&pool.failures, memory_order_relaxed))
		return UINT64_MAX;
	/* 1 s, 2 s, 4 s ...: cheap for a typo, dear for a guesser. */
	delay = n >= 16 ? AUTH_DELAY_MAX_MS : UINT64_C(1000) << (n - 1);
	return delay < AUTH_DELAY_MAX_MS ? delay : AUTH_DELAY_MAX_MS;
}

/* Hash and compare; wipes the password. OK or FAILED. */
static enum smtp_auth_result
check(struct auth_request *rq, struct crypt_data *cd)
{
	const struct user_cfg *u = config_user_find(rq->cfg, rq->r.user_name);
	const char *stored = u != NULL ? u->password : rq->dummy;
	size_t len = strlen(stored);
	const char *out;
	bool ok;

	memset(cd, 0, sizeof(*cd));
	out = crypt_rn(rq->pass, stored, cd, (int)sizeof(*cd));
	OPENSSL_cleanse(rq->pass, sizeof(rq->pass));
	/* The hash's length is no secret; its bytes are compared in full. */
	ok = u != NULL && out != NULL && strlen(out) == len &&
	    CRYPTO_memcmp(out, stored, len) == 0;
	OPENSSL_cleanse(cd, sizeof(*cd));
	rq->r.user = ok ? u : NULL;
	return ok ? SMTP_AUTH_OK : SMTP_AUTH_FAILED;
}

static void
deliver_result(unsigned shard, struct auth_result *r)
{
	struct auth_inbox *in = &pool.inbox[shard];
	int rc;

	r->next = NULL;
	pthread_mutex_lock(&in->lock);
	if (in->tail != NULL)
		in->tail->next = r;
	else
		in->head = r;
	in->tail = r;
	pthread_mutex_unlock(&in->lock);
	if ((rc = efd_wake(pool.efds[shard])) < 0)
		log_warn("auth: cannot wake shard %u: %s", shard,
		    strerror(-rc));
}

static void *
worker_main(void *arg)
{
	struct crypt_data *cd = malloc(sizeof(*cd));
	struct auth_request *rq;
	struct auth_result *r;

	(void)arg;
	thread_name("auth", -1);
	if (cd == NULL)
		log_fatal("auth: out of memory");
	/* Per thread on Linux; failing to be nicer is no error. */
	(void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), AUTH_NICE);
	for (;;) {
		pthread_mutex_lock(&pool.lock);
		while (pool.head == NULL && !pool.stop)
			pthread_cond_wait(&pool.cond, &pool.lock);
		if (pool.stop) {
			pthread_mutex_unlock(&pool.lock);
			break;
		}
		rq = pool.head;
		pool.head = rq->next;
		if (pool.head == NULL)
			pool.tail = NULL;
		pool.queued--;
		pthread_mutex_unlock(&pool.lock);
		rq->r.res = check(rq, cd);
		/* The result outlives the request, which held the password. */
		r = malloc(sizeof(*r));
		if (r == NULL) {
			log_warn("auth: out of memory: a login of %s is not "
			    "answered", rq->r.client);
			free(rq);
			continue;
		}
		*r = rq->r;
		deliver_result(rq->shard, r);
		free(rq);
	}
	free(cd);
	return NULL;
}

_Static_assert(AUTH_DUMMY_MAX >= CRYPT_OUTPUT_SIZE, "AUTH_DUMMY_MAX");

bool
auth_offered(const struct config *cfg)
{
	for (size_t i = 0; i < cfg->nlisten; i++)
		if (cfg->listen[i].policy.auth != SMTP_AUTH_OFF)
			return true;
	return false;
}

int
auth_dummy_make(const struct config *cfg, char *out, size_t len)
{
	struct crypt_data *cd;
	unsigned char rnd[24];
	char pw[sizeof(rnd) * 2 + 1], setting[CRYPT_GENSALT_OUTPUT_SIZE];
	const char *base, *h;
	size_t i;

	if (len > 0)
		out[0] = '\0';
	if (!auth_offered(cfg))
		return 0;	/* no login is ever checked */
	if ((cd = calloc(1, sizeof(*cd))) == NULL)
		return -ENOMEM;
	if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
		free(cd);
		return -EIO;
	}
	for (i = 0; i < sizeof(rnd); i++)
		snprintf(pw + 2 * i, 3, "%02x", rnd[i]);
	/* The first user's hash as the setting: its method, cost and salt. */
	base = cfg->nusers > 0 ? cfg->users[0].password : NULL;
	if (base == NULL && crypt_gensalt_rn("$y$", 0, NULL, 0, setting,
	    sizeof(setting)) != NULL)
		base = setting;
	h = base != NULL ? crypt_rn(pw, base, cd, (int)sizeof(*cd)) : NULL;
	if (h != NULL && (size_t)snprintf(out, len, "%s", h) >= len)
		h = NULL;
	OPENSSL_cleanse(cd, sizeof(*cd));
	OPENSSL_cleanse(pw, sizeof(pw));
	free(cd);
	return h != NULL ? 0 : -EINVAL;
}

int
auth_global_init(const struct config *cfg, unsigned nshards, const int *efds)
{
	unsigned i, want;
	int rc;

	auth_reconfigure(cfg);
	pool.nshards = nshards;
	pool.efds = efds;
	pool.stop = false;
	pool.inbox = calloc(nshards, sizeof(*pool.inbox));
	if (pool.inbox == NULL)
		return -ENOMEM;
	for (i = 0; i < nshards; i++)
		pthread_mutex_init(&pool.inbox[i].lock, NULL);
	/* No listener offers AUTH: no thread, and no check ever comes. */
	if (!auth_offered(cfg))
		return 0;
	want = nshards < AUTH_WORKERS_MAX ? nshards : AUTH_WORKERS_MAX;
	for (i = 0; i < want; i++) {
		rc = pthread_create(&pool.workers[i], NULL, worker_main, NULL);
		if (rc != 0)
			return -rc;
		pool.nworkers++;
	}
	log_info("auth: %zu user(s), %u password worker(s)", cfg->nusers,
	    pool.nworkers);
	return 0;
}

void
auth_global_stop(void)
{
	struct auth_request *rq;
	struct auth_result *r;
	unsigned i;

	pthread_mutex_lock(&pool.lock);
	pool.stop = true;
	pthread_cond_broadcast(&pool.cond);
	pthread_mutex_unlock(&pool.lock);
	for (i = 0; i < pool.nworkers; i++)
		pthread_join(pool.workers[i], NULL);
	pool.nworkers = 0;
	while ((rq = pool.head) != NULL) {
		pool.head = rq->next;
		OPENSSL_cleanse(rq->pass, sizeof(rq->pass));
		free(rq);
	}
	pool.tail = NULL;
	pool.queued = 0;
	for (i = 0; i < pool.nshards; i++) {
		while ((r = pool.inbox[i].head) != NULL) {
			pool.inbox[i].head = r->next;
			free(r);
		}
		pthread_mutex_destroy(&pool.inbox[i].lock);
	}
	free(pool.inbox);
	pool.inbox = NULL;
}

void
auth_reconfigure(const struct config *cfg)
{
	atomic_store_explicit(&pool.failures, cfg->limits.auth_failures,
	    memory_order_relaxed);
	atomic_store_explicit(&pool.failure_window_ms,
	    cfg->limits.auth_failure_window_ms, memory_order_relaxed);
}

enum smtp_auth_result
auth_submit(unsigned shard, uint32_t idx, uint32_t gen,
    const struct config *cfg, const char *dummy, struct smtp_session *s,
    uint64_t now_ms)
{
	struct auth_request *rq;
	uint64_t key = auth_addr_key(s->client_addr);

	assert(s->state == SMTP_S_AUTH_WAIT);
	assert(shard < pool.nshards);
	/* Over the limit: no hash at all, the guessing stops here. */
	if (fail_count(key, now_ms) >=
	    atomic_load_explicit(&pool.failures, memory_order_relaxed)) {
		OPENSSL_cleanse(s->auth_pass, sizeof(s->auth_pass));
		return SMTP_AUTH_LOCKED;
	}
	rq = malloc(sizeof(*rq));
	if (rq == NULL) {
		OPENSSL_cleanse(s->auth_pass, sizeof(s->auth_pass));
		return SMTP_AUTH_TEMPFAIL;
	}
	memset(rq, 0, sizeof(*rq));
	rq->shard = shard;
	rq->cfg = cfg;
	rq->dummy = dummy;
	rq->r.conn_idx = idx;
	rq->r.conn_gen = gen;
	rq->r.addr_key = key;
	rq->r.mech = s->auth_mech;
	memcpy(rq->r.user_name, s->auth_user, sizeof(rq->r.user_name));
	memcpy(rq->r.client, s->client_addr, sizeof(rq->r.client));
	memcpy(rq->pass, s->auth_pass, sizeof(rq->pass));
	OPENSSL_cleanse(s->auth_pass, sizeof(s->auth_pass));
	pthread_mutex_lock(&pool.lock);
	if (pool.nworkers == 0 || pool.queued >= AUTH_QUEUE_MAX) {
		pthread_mutex_unlock(&pool.lock);
		OPENSSL_cleanse(rq->pass, sizeof(rq->pass));
		free(rq);
		return SMTP_AUTH_TEMPFAIL;
	}
	rq->next = NULL;
	if (pool.tail != NULL)
		pool.tail->next = rq;
	else
		pool.head = rq;
	pool.tail = rq;
	pool.queued++;
	pthread_cond_signal(&pool.cond);
	pthread_mutex_unlock(&pool.lock);
	return SMTP_AUTH_OK;
}

struct auth_result *
auth_reap(unsigned shard)
{
	struct auth_inbox *in;
	struct auth_result *r;

	if (pool.inbox == NULL || shard >= pool.nshards)
		return NULL;
	in = &pool.inbox[shard];
	pthread_mutex_lock(&in->lock);
	r = in->head;
	in->head = in->tail = NULL;
	pthread_mutex_unlock(&in->lock);
	return r;
}
