#!/usr/bin/python3
# timeout: 120
# Description: outbound connections are one shared budget, reused across
# destinations. (1) Ten domains whose MX hosts (ten names) all resolve to
# 127.0.0.3 (a real nsd on loopback): mail sent to them one after another
# travels over one connection, moved from domain to domain by address.
# A domain routed with AUTH (another session set-up) does not take it over.
# (2) With delivery.connections 1 and a long idle_keep, a connection left
# idle by one destination gives its slot up at once when another waits:
# the second destination's mail arrives within seconds, not after idle_keep.
# (3) With destination_keep 1s, destinations nothing uses are freed (the
# stop line counts 0 in memory) and come back when mail for them does.
import time

import sluice
from sluice import T

try:
    import dnslib
except ImportError as e:
    sluice.skip("dnslib needs dnspython: %s" % e)
if not dnslib.have_nsd():
    sluice.skip("nsd is not installed")

import deliverlib as dl

ADDRS = ("127.0.0.1", "127.0.0.3")
try:
    PORT = dl.free_port(ADDRS)
except (RuntimeError, OSError) as e:
    sluice.skip("cannot bind 127.0.0.3: %s" % e)

N = 10
shared = dl.Server("shared", addr="127.0.0.3", port=PORT)
zones = {}
for k in range(N):
    zones["d%d.test" % k] = dnslib.zone_text("d%d.test" % k, [
        "@ IN MX 10 mx%d" % k, "mx%d IN A 127.0.0.3" % k])
zones["authd.test"] = dnslib.zone_text("authd.test", ["@ IN MX 10 mx", "mx IN A 127.0.0.3"])
ns = dnslib.NSD(sluice.tmpdir(), zones)

# ---- (1) reuse by address
routes = [{"domain": "d%d.test" % k, "transport": "smtp:d%d.test:%d" % (k, PORT)}
          for k in range(N)]
routes.append({"domain": "authd.test", "transport": "smtp:authd.test:%d" % PORT,
               "auth": "user:secret"})
relay = dl.Relay(routes, dns={"resolver": ns.spec, "timeout": "1s"},
                 delivery={"idle_keep": "30s", "denied_networks": []}, shards=1)
for k in range(N):
    data = dl.make_message("share-%d" % k, "alice@sender.test", ["bob@d%d.test" % k])
    dl.submit(relay.port, "alice@sender.test", ["bob@d%d.test" % k], data)
    T.ok(dl.wait_until(lambda: shared.count() == k + 1, 10),
         "message %d (d%d.test) delivered" % (k, k), relay.dlog.dump(10))
got = sorted(r for m in shared.msgs() for r in m.rcpts)
T.eq(got, sorted("bob@d%d.test" % k for k in range(N)), "each domain's recipient arrived once")
T.eq(shared.attempts(), 1, "ten domains, one connection (reused by address)")
hosts = sorted({ln.get("mx") for ln in relay.dlog.lines() if ln.get("status") == "delivered"})
T.eq(hosts, sorted("mx%d.d%d.test" % (k, k) for k in range(N)),
     "the delivery log names each domain's own MX host")

# The AUTH route needs a session of its own: a new connection (the test
# server offers no AUTH, so the attempt is deferred; what counts here is
# that the shared plain session was not taken over).
before = shared.attempts()
data = dl.make_message("share-auth", "alice@sender.test", ["bob@authd.test"])
dl.submit(relay.port, "alice@sender.test", ["bob@authd.test"], data)
T.ok(dl.wait_until(lambda: shared.attempts() > before, 10),
     "a route with AUTH opens its own connection", relay.dlog.dump(10))
T.ok(not any("bob@authd.test" in m.rcpts for m in shared.msgs()),
     "nothing for the AUTH route went over the plain session")
relay.stop()

# ---- (2) one slot: an idle connection yields to a waiting destination
a = dl.Server("a")
b = dl.Server("b")
relay2 = dl.Relay([
    {"domain": "a.test", "transport": "smtp:[127.0.0.1]:%d" % a.port},
    {"domain": "b.test", "transport": "smtp:[127.0.0.1]:%d" % b.port},
], delivery={"idle_keep": "60s", "connections": "1"}, shards=1)
data = dl.make_message("yield-a", "alice@sender.test", ["x@a.test"])
dl.submit(relay2.port, "alice@sender.test", ["x@a.test"], data)
T.ok(dl.wait_until(lambda: a.count() == 1, 10), "a.test delivered", relay2.dlog.dump(10))
time.sleep(0.3)
T.eq(len([c for c in a.conns() if c.t_close is None]), 1,
     "a.test's connection stays open, idle (idle_keep 60s)")
t0 = time.monotonic()
data = dl.make_message("yield-b", "alice@sender.test", ["y@b.test"])
dl.submit(relay2.port, "alice@sender.test", ["y@b.test"], data)
T.ok(dl.wait_until(lambda: b.count() == 1, 10), "b.test delivered with one slot",
     relay2.dlog.dump(10))
T.ok(time.monotonic() - t0 < 5, "b.test did not wait for a.test's idle_keep (%.1fs)"
     % (time.monotonic() - t0))
T.ok(dl.wait_until(lambda: all(c.t_close is not None for c in a.conns()), 5),
     "a.test's idle connection was closed to free the slot")
T.ok(all(c.quit for c in a.conns()), "it said QUIT first")
T.eq(relay2.stop(), 0, "sluiced exits 0 on SIGTERM")

# ---- (3) idle destinations are freed, and made again when needed
relay3 = dl.Relay(routes, dns={"resolver": ns.spec, "timeout": "1s"},
                  delivery={"idle_keep": "200ms", "destination_keep": "1s",
                            "denied_networks": []}, shards=1)
before = shared.count()
for rnd in range(2):
    for k in range(N):
        data = dl.make_message("keep-%d-%d" % (rnd, k), "alice@sender.test", ["z@d%d.test" % k])
        dl.submit(relay3.port, "alice@sender.test", ["z@d%d.test" % k], data)
    T.ok(dl.wait_until(lambda: shared.count() == before + (rnd + 1) * N, 10),
         "round %d: all ten delivered" % rnd, relay3.dlog.dump(5))
    time.sleep(3)       # idle connections close, then the destinations go
T.eq(relay3.stop(), 0, "sluiced exits 0 on SIGTERM")
T.ok("0 destination(s) in memory" in relay3.d.log_tail(20),
     "idle destinations were freed", relay3.d.log_tail(5))
ns.stop()
sluice.finish()
