#!/usr/bin/python3
# timeout: 180
# Description: `sluicectl status` tells what the sink and the delivery
# log tell. Mail to four next hops: one takes everything (12 messages),
# one greylists for an hour (4 stay deferred), one refuses (2 bounce,
# their DSNs reach the sender's server), one greylists a message that the
# operator then holds. status --json then shows: accepted 19, delivered,
# deferred and bounced equal to the delivery log's lines of each status
# and to what the servers received, the same over the last minute; the
# queue as `queue list --status` counts it (4 deferred, 1 held, none
# queued; the oldest message by id); the greylisting hop first in the
# destination table with 4 queued, its state and its last error (the
# 451 text); the accepting hop with 12 delivered and a rate; listeners,
# shards, connections. The text form shows the same numbers. Without a
# daemon status fails with exit 1 and says sluiced is not running; a
# daemon without metrics.listen says metrics null.
import json
import re
import time

import sluice
from sluice import T

import deliverlib as dl
import metricslib as ml

GREY = "451 4.7.1 Greylisted, come back in an hour"
ok = dl.Server("ok")
grey = dl.Server("grey", rcpt=GREY)
bad = dl.Server("bad", rcpt="550 5.1.1 no such user here")
held = dl.Server("held", rcpt=GREY)
cap = dl.Server("cap")

relay = dl.Relay([
    {"domain": "ok.test", "transport": "smtp:[127.0.0.1]:%d" % ok.port},
    {"domain": "grey.test", "transport": "smtp:[127.0.0.1]:%d" % grey.port, "retry": "1h"},
    {"domain": "bounce.test", "transport": "smtp:[127.0.0.1]:%d" % bad.port},
    {"domain": "held.test", "transport": "smtp:[127.0.0.1]:%d" % held.port, "retry": "1h"},
    {"domain": "sender.test", "transport": "smtp:[127.0.0.1]:%d" % cap.port},
], start=False)
L = relay.dlog
SENDER = "alice@sender.test"
KEY = {p: "[127.0.0.1]:%d" % p for p in (ok.port, grey.port, bad.port, held.port, cap.port)}

with T.case("no daemon yet: status fails clearly"):
    rc, out, err = relay.d.ctl("status")
    T.eq(rc, 1, "exit 1 without a daemon")
    T.ok("not running" in err, "stderr says sluiced is not running", err)
    T.eq(out, "", "nothing on stdout")

relay.start()

items = []
for i in range(4):          # the greylisted ones first: the oldest
    items.append((SENDER, ["carol%d@grey.test" % i],
                  dl.make_message("grey%d" % i, SENDER, ["carol%d@grey.test" % i])))
for i in range(12):
    items.append((SENDER, ["bob%d@ok.test" % i],
                  dl.make_message("ok%d" % i, SENDER, ["bob%d@ok.test" % i])))
for i in range(2):
    items.append((SENDER, ["dave%d@bounce.test" % i],
                  dl.make_message("bad%d" % i, SENDER, ["dave%d@bounce.test" % i])))
qids = {}
for k, it in enumerate(items[:4]):
    qids[k] = dl.submit(relay.port, *it)
    time.sleep(0.002)
more, errors = dl.submit_many(relay.port, items[4:], conns=3)
T.eq(errors, [], "every message accepted")
qids.update({k + 4: q for k, q in more.items()})
q_held = dl.submit(relay.port, SENDER, ["erin@held.test"],
                   dl.make_message("held0", SENDER, ["erin@held.test"]))

# The held one is deferred once, then held: it stays, out of delivery.
L.wait_for(lambda x: x.get("qid") == q_held and x.get("status") == "deferred", 20)
rc, out, err = relay.d.ctl("queue", "hold", q_held)
T.ok(rc == 0, "queue hold of the greylisted message", err)


def settled():
    ls = L.lines()
    st = [x.get("status") for x in ls]
    return (st.count("delivered") >= 14 and st.count("bounced") >= 2 and
            st.count("deferred") >= 5 and ok.count() >= 12 and cap.count() >= 2)


T.ok(dl.wait_until(settled, 30), "every attempt is in the delivery log",
     L.dump(40))
time.sleep(0.5)     # the last results reach the index
lines = L.lines()
by = {s: [x for x in lines if x.get("status") == s]
      for s in ("delivered", "deferred", "bounced", "expired")}

with T.case("status --json: totals agree with the delivery log and the servers"):
    doc = ml.status(relay.d)
    t = doc.get("totals", {})
    T.eq(t.get("accepted"), 19, "accepted: 19 messages got their 250")
    T.eq(t.get("recipients"), 19, "19 recipients accepted")
    T.eq(t.get("delivered"), len(by["delivered"]), "delivered = delivery log lines")
    T.eq(t.get("delivered"), ok.count() + cap.count(),
         "delivered = what the servers took (12 + 2 DSNs)")
    T.eq(t.get("deferred"), len(by["deferred"]), "deferred = delivery log lines")
    T.eq(t.get("bounced"), len(by["bounced"]), "bounced = delivery log lines")
    T.eq(t.get("bounced"), 2, "two bounced")
    T.eq(t.get("expired"), 0, "none expired")
    T.ok(t.get("replies_5xx", 0) == 0 and t.get("replies_4xx", 0) == 0,
         "no 4xx/5xx reply to our clients", repr(t))
    m = doc.get("last_minute", {})
    for k in ("accepted", "delivered", "deferred", "bounced"):
        T.eq(m.get(k), t.get(k), "last minute: %s as the total" % k)
    T.ok(0 < m.get("window_s", 0) <= 60.5, "the minute's window", repr(m.get("window_s")))
    ps = m.get("per_second", {})
    T.ok(abs(ps.get("accepted", 0) * m["window_s"] - 19) < 0.5,
         "per_second x window = the count", repr(ps))

with T.case("status --json: the queue as queue list counts it"):
    q = doc.get("queue", {})
    T.eq(q.get("messages"), relay.d.count(), "messages = queue count")
    T.eq(q.get("messages"), 5, "5 messages stay")
    for st, want in (("deferred", 4), ("held", 1), ("queued", 0)):
        rc, out, err = relay.d.ctl("queue", "list", "--status", st, "--json")
        n = len(json.loads(out)) if rc == 0 else None
        T.eq(q.get(st), n, "%s = queue list --status %s" % (st, st))
        T.eq(q.get(st), want, "%s: %d" % (st, want))
    T.eq(q.get("complete"), True, "the whole index was read")
    T.eq((q.get("oldest") or {}).get("id"), min(qids[k] for k in range(4)),
         "the oldest: the first greylisted message")
    T.ok(0 <= (q.get("oldest") or {}).get("age_s", -1) < 120, "its age", repr(q.get("oldest")))
    T.eq(q.get("quarantined"), 0, "none quarantined")

with T.case("status --json: the destination table"):
    ds = doc.get("destinations", [])
    keys = [d.get("destination") for d in ds]
    T.ok(len(ds) >= 1 and keys[0] == KEY[grey.port],
         "sorted by queued: the greylisting hop first", repr(keys))
    g = ds[0] if ds else {}
    T.eq(g.get("queued"), 4, "its 4 messages queued")
    T.eq(g.get("deferred"), 4, "4 deferred")
    T.eq(g.get("delivered"), 0, "none delivered")
    T.ok("451 4.7.1 Greylisted" in (g.get("last_error") or ""), "its last error is the 451",
         repr(g.get("last_error")))
    T.ok(g.get("state") in ("ok", "slowed", "gated", "held"), "a known state", repr(g.get("state")))
    T.ok(g.get("last_error_at") and re.match(r"^\d{4}-\d\d-\d\dT", g["last_error_at"]),
         "last_error_at is a time", repr(g.get("last_error_at")))
    rows = {d.get("destination"): d for d in ds}
    o = rows.get(KEY[ok.port], {})
    T.eq((o.get("queued"), o.get("delivered")), (0, 12), "the accepting hop: 12 delivered, 0 queued")
    T.ok(o.get("rate_per_min", 0) >= 11.5, "its rate over the last minute", repr(o))
    b = rows.get(KEY[bad.port], {})
    T.eq(b.get("bounced"), 2, "the refusing hop: 2 bounced")
    T.ok((b.get("last_error") or "").startswith("550 5.1.1"), "its last error, the 550",
         repr(b.get("last_error")))
    h = rows.get(KEY[held.port])
    T.ok(h is None or h.get("queued") == 0, "the held message is out of the schedule", repr(h))
    a = doc.get("destinations_all", {})
    T.eq(a.get("queued"), sum(d.get("queued", 0) for d in ds) + doc["destinations_other"]["queued"],
         "all = the rows + other")
    T.eq(doc.get("shards_answered"), 2, "both shards answered")

with T.case("status --json: the daemon"):
    T.eq(doc.get("shards"), 2, "2 shards")
    T.eq([x.get("address") for x in doc.get("listeners", [])], ["127.0.0.1:%d" % relay.port],
         "the listener")
    T.eq(doc.get("metrics"), None, "metrics off: null")
    T.ok(isinstance(doc.get("pid"), int) and doc.get("version"), "pid and version")
    T.ok(0 < doc.get("uptime_s", 0) < 170, "uptime", repr(doc.get("uptime_s")))
    c = doc.get("connections", {})
    T.ok(c.get("inbound") == 0 and c.get("inbound_max") == 1000,
         "no inbound connection now, of 1000", repr(c))
    T.ok(isinstance(c.get("outbound"), int), "outbound connections counted", repr(c))

with T.case("status: the text form"):
    rc, out, err = relay.d.ctl("status")
    T.ok(rc == 0, "exit 0", err)
    T.ok(re.search(r"^queue\s+5 message\(s\): 0 queued, 4 deferred, 1 held", out, re.M),
         "the queue line", out)
    tot = re.search(r"^total\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", out, re.M)
    T.ok(tot and [int(x) for x in tot.groups()] ==
         [19, len(by["delivered"]), len(by["deferred"]), len(by["bounced"])],
         "the totals line", out)
    row = re.search(r"^%s\s+4\s" % re.escape(KEY[grey.port]), out, re.M)
    T.ok(row is not None and "451 4.7.1 Greylisted" in out, "the greylisting hop's row", out)
    T.ok("listening    127.0.0.1:%d" % relay.port in out, "the listener", out)

with T.case("after a stop: status says sluiced is not running"):
    T.eq(relay.stop(), 0, "sluiced stops")
    rc, out, err = relay.d.ctl("status", "--json")
    T.eq(rc, 1, "exit 1")
    T.ok("not running" in err, "not running", err)
    rc, out, err = relay.d.ctl("status", "--bogus")
    T.eq(rc, 2, "an unknown option: usage error (2)")

sluice.finish()
