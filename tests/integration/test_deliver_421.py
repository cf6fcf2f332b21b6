#!/usr/bin/python3
# timeout: 180
# Description: temporary failures slow a next hop in proportion. One next
# hop (a fast raw-socket server) takes mail for two destinations:
# clean.test's messages are always accepted, p421.test's get "421 4.7.0"
# to every 50th MAIL (2%), which closes that connection. N messages for
# each are queued with delivery paused, then sluiced restarts delivering
# and both drain side by side. p421.test must drain 90% of its messages
# within 15 s and at no less than 40% of clean.test's rate (before, each
# 421 held the whole destination for 1 s or more: about 47 messages a
# second against 2,000, 30 s for 1,500). Every message is delivered
# exactly once in the end (the deferred ones on retry, 1s), and the 421s
# cost about one connection each.
import time

import sluice
from sluice import T

import deliverlib as dl

N = 1500
_n421 = [0]


def mail_hook(n, sender):
    """421 to every 50th MAIL from p421.test (runs on the server's loop)."""
    if not sender.endswith("@p421.test"):
        return None
    _n421[0] += 1
    return "421 4.7.0 p421.sink.test slow down, closing" if _n421[0] % 50 == 17 else None


srv = dl.RawServer("p421", mail=mail_hook)
relay = dl.Relay([
    {"domain": "clean.test", "transport": "smtp:[127.0.0.1]:%d" % srv.port, "retry": "1s"},
    {"domain": "p421.test", "transport": "smtp:[127.0.0.1]:%d" % srv.port, "retry": "1s"},
], delivery={"paused": "true"})
L = relay.dlog

items = []
for dom in ("clean.test", "p421.test"):
    for i in range(N):
        tag = "%s-%04d" % (dom.split(".")[0], i)
        rc = ["u%d@%s" % (i, dom)]
        items.append(("s@%s" % dom, rc, dl.make_message(tag, "s@%s" % dom, rc, size=800)))
qids, errs = dl.submit_many(relay.port, items, conns=8)
T.eq(errs, [], "%d messages queued" % len(items))
T.eq(relay.stop(), 0, "sluiced (paused) exits 0")
with open(relay.conf) as f:
    conf = f.read()
with open(relay.conf, "w") as f:
    f.write(conf.replace('paused: "true"', 'paused: "false"'))

t0 = time.monotonic()
relay.start()
done = {"clean": None, "p421": None}
deadline = t0 + 120
while time.monotonic() < deadline:
    ids = [m[1] or "" for m in srv.msgs()]
    for k in done:
        if done[k] is None and len({i for i in ids if i.startswith("<%s-" % k)}) >= 0.9 * N:
            done[k] = time.monotonic() - t0
    if all(done.values()):
        break
    time.sleep(0.02)
print("90%% drained after: %r (s)" % done)

with T.case("a 2% rate of 421 costs at most about half the throughput"):
    T.ok(done["clean"] is not None, "clean.test drains 90%% of %d" % N)
    T.ok(done["p421"] is not None and done["p421"] <= 15.0,
         "p421.test drains 90%% of %d within 15 s" % N, repr(done))
    if done["clean"] and done["p421"]:
        r0, r2 = 0.9 * N / done["clean"], 0.9 * N / done["p421"]
        print("rates: clean %.0f msg/s, 2%% 421 %.0f msg/s (%.2f)" % (r0, r2, r2 / r0))
        T.ok(r2 >= 0.4 * r0, "p421.test drains at >= 40% of clean.test's rate",
             "%.0f vs %.0f msg/s" % (r2, r0))

with T.case("every message delivered exactly once in the end"):
    ok = dl.wait_until(lambda: len({m[1] for m in srv.msgs()}) >= 2 * N, 60, 0.2)
    ms = srv.msgs()
    T.ok(ok, "all %d arrived" % (2 * N), "%d distinct" % len({m[1] for m in ms}))
    T.eq(len(ms), len({m[1] for m in ms}), "no message arrived twice")
    n421 = len([x for x in L.lines() if x.get("status") == "deferred" and x.get("code") == 421])
    T.ok(n421 == (srv.mail_count() - 2 * N), "one deferred line per 421 (%d)" % n421,
         "%d lines, %d MAILs" % (n421, srv.mail_count()))
    T.ok(all(x.get("to", "").endswith("@p421.test") for x in L.lines() if x.get("status") == "deferred"),
         "only p421.test's mail was deferred")
    conns = len(srv.conns())
    T.ok(conns <= n421 + 2 * 20 + 5, "about one connection per 421 (%d connections, %d 421s)" % (conns, n421))
    T.ok(relay.wait_empty(20), "the queue is empty")

T.eq(relay.stop(), 0, "sluiced exits 0 on SIGTERM")
sluice.finish()
