#!/usr/bin/python3
# timeout: 150
# Description: delivery.connections_per_address caps a shard's connections
# to one remote address, all destinations together. (1) Fifty domains
# routed to one address, four messages each, a server slow to answer the
# data: with the cap at 4 (one shard) the server never sees more than four
# connections at once, and every message arrives; with no cap (0) the same
# load opens more than four, so the assertion can fail (each domain's own
# max_connections is 4 too: one domain alone at an address is held by its
# own limit only, and this keeps that out of the count). (2) With the cap at
# 1 and a long idle_keep, a destination that cannot take over the idle
# connection at the address (another TLS policy) does not wait for
# idle_keep: the idle one says QUIT and makes room. (3) The cap is on
# sharing: one domain alone at its address, cap 2, opens more than two
# (up to its own max_connections); sluiced warns at start that its route
# allows more than the cap.
import time

import sluice
from sluice import T

import deliverlib as dl

N = 50
PER = 4
CAP = 4


def run(cap):
    srv = dl.Server("cap%s" % cap, data_delay=0.15)
    routes = [{"domain": "d%d.test" % k, "transport": "smtp:[127.0.0.1]:%d" % srv.port,
               "max_connections": str(CAP)} for k in range(N)]
    relay = dl.Relay(routes, delivery={"connections_per_address": str(cap),
                                       "idle_keep": "2s"}, shards=1)
    items = []
    for i in range(PER):
        for k in range(N):
            rcpt = "u%d@d%d.test" % (i, k)
            items.append(("alice@sender.test", [rcpt],
                          dl.make_message("cap-%s-%d-%d" % (cap, i, k),
                                          "alice@sender.test", [rcpt])))
    dl.submit_many(relay.port, items, conns=4)
    T.ok(dl.wait_until(lambda: srv.count() == N * PER, 90),
         "cap %s: all %d messages delivered (%d)" % (cap, N * PER, srv.count()),
         relay.dlog.dump(10))
    got = sorted(r for m in srv.msgs() for r in m.rcpts)
    T.eq(got, sorted(rc[0] for _, rc, _ in items), "cap %s: each recipient once" % cap)
    most = srv.max_concurrent()
    T.eq(relay.stop(), 0, "cap %s: sluiced exits 0 on SIGTERM" % cap)
    srv.stop()
    return most, relay.d.log_tail(20)


# ---- (1) the cap holds, and without it the load opens more
most, tail = run(CAP)
T.ok(1 <= most <= CAP, "cap %d: at most %d connections at once (%d)" % (CAP, CAP, most))
T.ok("wait(s) for room at an address" in tail, "the stop line counts the waits", tail)
most_off, _ = run(0)
T.ok(most_off > CAP, "no cap: the same load opens more than %d at once (%d)"
     % (CAP, most_off))

# ---- (2) a waiter the idle connection cannot serve gets room at once
srv = dl.Server("one")
relay = dl.Relay([
    {"domain": "may.test", "transport": "smtp:[127.0.0.1]:%d" % srv.port},
    {"domain": "plain.test", "transport": "smtp:[127.0.0.1]:%d" % srv.port, "tls": "none"},
], delivery={"connections_per_address": "1", "idle_keep": "60s"}, shards=1)
data = dl.make_message("cap-may", "alice@sender.test", ["x@may.test"])
dl.submit(relay.port, "alice@sender.test", ["x@may.test"], data)
T.ok(dl.wait_until(lambda: srv.count() == 1, 10), "may.test delivered", relay.dlog.dump(10))
time.sleep(0.3)
T.eq(len([c for c in srv.conns() if c.t_close is None]), 1,
     "may.test's connection stays open, idle (idle_keep 60s)")
t0 = time.monotonic()
data = dl.make_message("cap-plain", "alice@sender.test", ["y@plain.test"])
dl.submit(relay.port, "alice@sender.test", ["y@plain.test"], data)
T.ok(dl.wait_until(lambda: srv.count() == 2, 10), "plain.test delivered with a cap of 1",
     relay.dlog.dump(10))
T.ok(time.monotonic() - t0 < 5, "plain.test did not wait for idle_keep (%.1fs)"
     % (time.monotonic() - t0))
T.ok(dl.wait_until(lambda: srv.conns()[0].t_close is not None, 5),
     "the idle connection closed to make room")
T.ok(srv.conns()[0].quit, "it said QUIT first")
T.ok(srv.max_concurrent() <= 1, "never two at once (%d)" % srv.max_concurrent())
T.eq(relay.stop(), 0, "sluiced exits 0 on SIGTERM")
srv.stop()

# ---- (3) a destination alone at its address is held by its own limit
srv = dl.Server("alone", data_delay=0.2)
relay = dl.Relay([{"domain": "big.test", "transport": "smtp:[127.0.0.1]:%d" % srv.port,
                   "max_connections": "30"}],
                 delivery={"connections_per_address": "2"}, shards=1)
T.ok("route big.test: max_connections 30, but at most 2" in relay.d.log_tail(50),
     "sluiced warns of a route allowed more than the cap", relay.d.log_tail(5))
items = [("alice@sender.test", ["u%d@big.test" % i],
          dl.make_message("alone-%d" % i, "alice@sender.test", ["u%d@big.test" % i]))
         for i in range(40)]
dl.submit_many(relay.port, items, conns=4)
T.ok(dl.wait_until(lambda: srv.count() == len(items), 60),
     "big.test: all %d delivered (%d)" % (len(items), srv.count()), relay.dlog.dump(10))
T.ok(srv.max_concurrent() > 2, "big.test alone at its address: more than the cap of 2 "
     "at once (%d)" % srv.max_concurrent())
T.eq(relay.stop(), 0, "sluiced exits 0 on SIGTERM")
srv.stop()
sluice.finish()
