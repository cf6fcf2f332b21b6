/*
 * deliver_health.c - how a destination's results slow it down and let it
 * go again. deliver.c keeps the basic levers (dl_dest_slow: halve the
 * connection limit and hold the whole destination off, 1 s doubling to
 * 60 s; dl_dest_ok: one more connection, no more hold); this file decides
 * which results pull which lever, in proportion to how often they come.
 *
 * AIMD, as TCP's congestion control. Additive increase: every delivered
 * message raises the connection limit by one (up to max_connections).
 * Decrease in proportion to the trouble:
 *   - one temporary failure of one session (a 421 that closes it; a run
 *     of DL_FAIL_RUN transactions deferred in a row; a greeting refused
 *     while other sessions of the destination are up) lowers the limit by
 *     one. A failure that follows a failure also keeps new connections
 *     back for a while (DL_GATE_MIN_MS, doubling while failures follow
 *     each other without a success in between, up to DL_GATE_MAX_MS); a
 *     lone failure among successes does not, or a next hop that says 421
 *     to 2% of MAIL at 2,000 messages a second would have a new
 *     connection held back all the time. The sessions already open go on
 *     delivering: such a next hop loses 2% of its sessions (each replaced
 *     at once), not the destination's whole throughput;
 *   - when failures dominate (at least 3 in 4 of the last DL_RECENT
 *     attempts, once there were DL_RECENT_MIN) or nothing gets through at
 *     all (every address refuses, no session of the destination is up),
 *     the destination is held off entirely and its limit halved
 *     (dl_dest_slow): that is a server that is down or overloaded;
 *   - a broken next hop (it breaks the protocol: lines nothing asked for,
 *     malformed or over-long replies, mixed codes) is not busy: it will
 *     break again on the next connection, at once. It is held off for
 *     DL_BROKEN_MIN_MS, doubling with every broken session up to
 *     DL_BROKEN_MAX_MS (a handful of connections a minute at most), with
 *     one connection at a time, until a message gets through.
 * An attempt here is a transaction, or a session that failed outside one.
 */
#include "deliver_int.h"

#include <assert.h>

/* The last DL_RECENT attempts, newest in bit 0; 1: it failed. */
static void
record(struct dl_dest *ds, bool failed)
{
	ds->recent = ds->recent << 1 | (failed ? 1u : 0u);
	if (ds->nrecent < DL_RECENT)
		ds->nrecent++;
}

static unsigned
recent_failures(const struct dl_dest *ds)
{
	static_assert(DL_RECENT < 32, "the window fits the bits");
	return (unsigned)__builtin_popcount(ds->recent &
	    ((1u << ds->nrecent) - 1));
}

static bool
failures_dominate(const struct dl_dest *ds)
{
	return ds->nrecent >= DL_RECENT_MIN &&
	    recent_failures(ds) * 4 >= ds->nrecent * 3u;
}

void
dl_health_ok(struct dl_dest *ds)
{
	record(ds, false);
	ds->gate_ms = 0;
	ds->broken_ms = 0;
	dl_dest_ok(ds);
}

/*
 * One connection less, and after a failure that followed a failure a
 * wait for new ones; or the hold when failures dominate (true). The
 * failure is recorded already: bit 1 of recent is the attempt before it.
 */
static bool
decrease(struct deliver *d, struct dl_dest *ds)
{
	bool again = ds->nrecent >= 2 && (ds->recent & 2u) != 0;

	if (failures_dominate(ds)) {
		dl_dest_slow(d, ds);
		return true;
	}
	if (ds->eff_max > 1)
		ds->eff_max--;
	if (!again)
		ds->gate_ms = 0;
	else if (ds->gate_ms == 0)
		ds->gate_ms = DL_GATE_MIN_MS;
	else if ((ds->gate_ms *= 2) > DL_GATE_MAX_MS)
		ds->gate_ms = DL_GATE_MAX_MS;
	ds->open_after_ms = d->now_ms + ds->gate_ms;
	return false;
}

bool
dl_health_soft(struct deliver *d, struct dl_dest *ds)
{
	record(ds, true);
	return decrease(d, ds);
}

/*
 * A transaction with nothing delivered and something deferred (not by
 * a 421: dl_health_soft() has that). A run of them slows the destination.
 */
void
dl_health_tx_failed(struct deliver *d, struct dl_dest *ds)
{
	record(ds, true);
	if (failures_dominate(ds)) {
		dl_dest_slow(d, ds);
		return;
	}
	if (++ds->fails >= DL_FAIL_RUN) {
		ds->fails = 0;
		(void)decrease(d, ds);
	}
}

void
dl_health_down(struct deliver *d, struct dl_dest *ds)
{
	record(ds, true);
	dl_dest_slow(d, ds);
}

bool
dl_health_may_open(const struct deliver *d, const struct dl_dest *ds)
{
	return d->now_ms >= ds->open_after_ms;
}

/*
 * The next hop broke the protocol. Sessions that break while it is held
 * off for that (the other connections of the same burst) count as one.
 */
void
dl_health_broken(struct deliver *d, struct dl_dest *ds)
{
	record(ds, true);
	ds->fails++;
	ds->eff_max = 1;
	if (ds->broken_ms > 0 && d->now_ms < ds->hold_until_ms)
		return;
	ds->broken_ms = ds->broken_ms ? ds->broken_ms * 2 : DL_BROKEN_MIN_MS;
	if (ds->broken_ms > DL_BROKEN_MAX_MS)
		ds->broken_ms = DL_BROKEN_MAX_MS;
	if (ds->hold_until_ms < d->now_ms + ds->broken_ms)
		ds->hold_until_ms = d->now_ms + ds->broken_ms;
	assert(ds->hold_until_ms > d->now_ms);
}
