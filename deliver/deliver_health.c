/*
 * deliver_health.c - how a destination's results slow it down and let it
 * go again. deliver.c keeps the basic levers (dl_dest_slow: halve the
 * connection limit and hold the destination off, 1 s doubling to 60 s;
 * dl_dest_ok: one more connection, no more hold); this file decides
 * which results pull which lever.
 *
 * A broken next hop (it breaks the protocol: lines nothing asked for,
 * malformed or over-long replies, mixed codes) is not busy: it will break
 * again on the next connection, at once. Left alone it costs a connection
 * per item and never gives an item a result. So it is held off for
 * DL_BROKEN_MIN_MS, doubling with every broken session up to
 * DL_BROKEN_MAX_MS (a handful of connections a minute at most), with one
 * connection at a time, until a message gets through.
 */
#include "deliver_int.h"

#include <assert.h>

void
dl_health_ok(struct dl_dest *ds)
{
	ds->broken_ms = 0;
	dl_dest_ok(ds);
}

/*
 * The next hop broke the protocol. Sessions that break while it is held
 * off for that (the other connections of the same burst) count as one.
 */
void
dl_health_broken(struct deliver *d, struct dl_dest *ds)
{
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
