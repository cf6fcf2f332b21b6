/*
 * deliver_addr.c - connections by address: delivery.connections_per_address
 * caps how many connections this shard has to one remote address, the
 * connections of every destination together, however many destinations
 * share the host; a destination over the cap waits on the address, and a
 * connection there moves to it between two messages. deliver_conn.c runs
 * the connections themselves.
 */
#include "deliver_int.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/*
 * delivery.connections_per_address: however many destinations mail one
 * host (a provider's MX hosts serve millions of domains), this shard has
 * at most so many connections to one of its addresses, the connections
 * of every destination together (0: no cap). Over the cap a destination
 * waits on the address: a connection there moves to it between two
 * messages (dl_conn_hand_over()), or one closes and makes room.
 */
static unsigned
addr_cap(const struct deliver *d)
{
	unsigned cap = d->cfg->delivery->connections_per_address;

	return cap == 0 ? UINT_MAX : cap;
}

static struct dl_addr *
addr_find(struct deliver *d, const struct sockaddr_storage *sa, bool create)
{
	uint8_t key[20];
	size_t n;
	uint32_t b;
	struct dl_addr *a;

	if (sa->ss_family != AF_INET && sa->ss_family != AF_INET6)
		return NULL;	/* a unix socket: never shared, never capped */
	n = dl_sa_key(sa, key);
	b = dl_sa_bucket(sa);
	for (a = d->addrs[b]; a != NULL; a = a->next)
		if (a->klen == n && memcmp(a->key, key, n) == 0)
			return a;
	if (!create)
		return NULL;
	/* Without memory the connection goes uncounted: the cap is a
	 * courtesy to the peer, nothing here depends on it. */
	a = calloc(1, sizeof(*a));
	if (a == NULL)
		return NULL;
	memcpy(a->key, key, n);
	a->klen = (uint8_t)n;
	a->next = d->addrs[b];
	d->addrs[b] = a;
	return a;
}

/* Free a when nothing refers to it any more. */
static void
addr_put(struct deliver *d, struct dl_addr *a)
{
	struct dl_addr **pp;
	uint32_t b;

	if (a->nconn > 0 || a->whead != NULL)
		return;
	b = (uint32_t)XXH3_64bits(a->key, a->klen) & (DL_ADDR_BUCKETS - 1);
	for (pp = &d->addrs[b]; *pp != a; pp = &(*pp)->next)
		assert(*pp != NULL);
	*pp = a->next;
	free(a);
}

/* Take w off a's waiters; prev is the one before it, or NULL. */
static void
addr_unwait(struct dl_addr *a, struct dl_dest *prev, struct dl_dest *w)
{
	assert(w->await == a);
	if (prev != NULL)
		prev->awnext = w->awnext;
	else
		a->whead = w->awnext;
	if (a->wtail == w)
		a->wtail = prev;
	w->awnext = NULL;
	w->await = NULL;
}

/* Put up to n of a's waiters back on the run list, oldest first. */
static void
addr_wake(struct deliver *d, struct dl_addr *a, unsigned n)
{
	while (a->whead != NULL && n-- > 0) {
		struct dl_dest *w = a->whead;

		addr_unwait(a, NULL, w);
		if (w->queued > 0)
			dl_dest_run(d, w);
	}
}

/* c is no longer connected (or connecting) where it was counted. */
void
dl_conn_addr_release(struct dl_conn *c)
{
	struct dl_addr *a = c->ad;

	if (a == NULL)
		return;
	c->ad = NULL;
	assert(a->nconn > 0);
	a->nconn--;
	if (c->cprev != NULL)
		c->cprev->cnext = c->cnext;
	else
		a->conns = c->cnext;
	if (c->cnext != NULL)
		c->cnext->cprev = c->cprev;
	c->cnext = c->cprev = NULL;
	/* Room for one: a few waiters look. With no connection left there
	 * nothing else would wake the others. */
	addr_wake(c->d, a, a->nconn == 0 ? UINT_MAX : DL_ADDR_WAKE);
	addr_put(c->d, a);
}

/* c connects to c->sa now: counted there. */
void
dl_conn_addr_set(struct dl_conn *c)
{
	struct dl_addr *a = addr_find(c->d, &c->sa, true);

	if (a == c->ad)
		return;
	if (a != NULL)
		a->nconn++;	/* before the release: a is not freed */
	dl_conn_addr_release(c);
	c->ad = a;
	if (a != NULL) {
		c->cprev = NULL;
		c->cnext = a->conns;
		if (a->conns != NULL)
			a->conns->cprev = c;
		a->conns = c;
	}
}

/*
 * May ds not open another connection to its first address? The cap is
 * on sharing: a destination alone at an address (every connection there
 * is its own) is held by its own max_connections only, so a low cap
 * costs a big destination with a host of its own nothing. The walk ends
 * at the first connection of another destination when the host is
 * shared, and is at most max_connections long when it is not.
 */
bool
dl_addr_full(struct deliver *d, const struct dl_dest *ds)
{
	const struct dl_addr *a;

	if (ds->ntargets == 0)
		return false;
	a = addr_find(d, &ds->targets[0].sa, false);
	if (a == NULL || a->nconn < addr_cap(d))
		return false;
	for (const struct dl_conn *c = a->conns; c != NULL; c = c->cnext)
		if (c->dest != ds)
			return true;
	return false;
}

/*
 * ds waits for room at its first address (dl_addr_full()). An idle
 * connection there that it could not take over (other client settings,
 * another TLS policy) says QUIT: its room is worth more to a destination
 * with mail than to one without.
 */
void
dl_addr_wait(struct deliver *d, struct dl_dest *ds)
{
	const struct sockaddr_storage *sa = &ds->targets[0].sa;
	struct dl_addr *a = addr_find(d, sa, false);
	struct dl_conn *c;

	assert(a != NULL);
	if (ds->await != NULL)
		return;		/* its connections' events will wake it */
	ds->await = a;
	ds->awnext = NULL;
	if (a->wtail != NULL)
		a->wtail->awnext = ds;
	else
		a->whead = ds;
	a->wtail = ds;
	d->addr_waits++;
	for (c = d->addr_idle[dl_sa_bucket(sa)]; c != NULL; c = c->anext)
		if (c->ad == a && c->dest != ds && !c->closing &&
		    smtp_client_ready(&c->cli)) {
			dl_set_idle(c, false);
			smtp_client_quit(&c->cli);
			dl_conn_flush(c);
			dl_conn_deadline(c);
			break;
		}
}

/*
 * Between two messages, while destinations wait for room at c's address:
 * c moves to the first of them it can serve as it is, and its own
 * destination, if it has more mail, waits its turn behind them. So a few
 * busy destinations cannot keep every connection to a shared host while
 * others wait. true when it moved.
 */
bool
dl_conn_hand_over(struct dl_conn *c)
{
	struct dl_addr *a = c->ad;
	struct dl_dest *old = c->dest, *prev = NULL, *w, *wn;
	unsigned max = old->route->policy.max_messages_per_connection, n = 0;

	if (a == NULL || a->whead == NULL || c->closing || c->starting ||
	    c->item != NULL || c->d->stopping || !smtp_client_ready(&c->cli))
		return false;
	if (max > 0 && c->msgs >= max)
		return false;	/* it says QUIT (dl_conn_next()) */
	for (w = a->whead; w != NULL && n < DL_ADDR_SCAN; w = wn, n++) {
		wn = w->awnext;
		if (w->queued == 0) {
			addr_unwait(a, prev, w);	/* nothing to send */
			continue;
		}
		if (w->nconn < w->eff_max && c->d->now_ms >= w->hold_until_ms)
			for (unsigned k = 0; k < w->ntargets &&
			    w->targets[k].pref == w->targets[0].pref; k++) {
				if (!dl_conn_fits(c, w, k))
					continue;
				addr_unwait(a, prev, w);
				dl_conn_move(c, w, k);
				if (old->queued > 0)
					dl_dest_run(c->d, old);
				return true;
			}
		prev = w;
	}
	return false;
}

/* At the end: every connection and destination is gone with the shard. */
void
dl_addr_free_all(struct deliver *d)
{
	for (unsigned b = 0; b < DL_ADDR_BUCKETS; b++) {
		struct dl_addr *a = d->addrs[b], *n;

		for (; a != NULL; a = n) {
			n = a->next;
			free(a);
		}
		d->addrs[b] = NULL;
	}
}
