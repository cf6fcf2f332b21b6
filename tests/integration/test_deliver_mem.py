#!/usr/bin/python3
# Description: a freshly accepted message is delivered from the bytes the
# shard kept in memory, not read back from the spool: after a burst, status
# --json counts every delivery in totals.delivered_from_memory and none in
# read_back, and the sink got exactly the bytes sent. Messages too big for
# the share of limits.memory copies may take (a quarter) are read back and arrive
# intact. After a restart, queued mail (deferred before it) comes from the
# spool: read_back counts it, and it arrives intact too.
import json

import sluice
from sluice import T

import deliverlib as dl


def totals(relay):
    rc, out, err = relay.d.ctl("status", "--json")
    if rc != 0:
        return {}
    try:
        return json.loads(out).get("totals", {})
    except ValueError:
        return {}


def intact(server, sent, what):
    got = {m.msgid: m.data for m in server.msgs()}
    bad = []
    for tag, data in sent.items():
        why = dl.check_tail(got.get("<%s@client.test>" % tag), data)
        if why is not None:
            bad.append("%s: %s" % (tag, why))
    T.ok(not bad, what + ": every body arrived byte for byte", "; ".join(bad[:3]))


# ---- a burst: every record from memory
sink = dl.Server("sink")
relay = dl.Relay([{"domain": "mem.test", "transport": "smtp:[127.0.0.1]:%d" % sink.port}])
N = 40
sent = {}
items = []
for i in range(N):
    tag = "mem%d" % i
    sent[tag] = dl.make_message(tag, "alice@sender.test", ["u%d@mem.test" % i], size=1500)
    items.append(("alice@sender.test", ["u%d@mem.test" % i], sent[tag]))

with T.case("a fresh burst is delivered from memory"):
    qids, errors = dl.submit_many(relay.port, items, conns=4)
    T.eq(len(qids), N, "every message got its 250")
    T.ok(dl.wait_until(lambda: sink.count() >= N, 20), "the sink got them all",
         "%d of %d" % (sink.count(), N))
    T.ok(relay.wait_empty(10), "the queue is empty")
    t = totals(relay)
    T.eq(t.get("delivered"), N, "delivered: all")
    T.eq(t.get("delivered_from_memory"), N, "each record came from memory")
    T.eq(t.get("read_back"), 0, "none was read back from the spool")
    intact(sink, sent, "from memory")
relay.stop()

# ---- queued across a restart: read back from the spool
held = dl.Server("held", rcpt=lambda address, n: "451 4.7.1 not now")
relay2 = dl.Relay([{"domain": "later.test", "transport": "smtp:[127.0.0.1]:%d" % held.port,
                    "retry": "1h"}])
later = {}
for i in range(5):
    tag = "later%d" % i
    later[tag] = dl.make_message(tag, "bob@sender.test", ["v%d@later.test" % i], size=900)
    dl.submit(relay2.port, "bob@sender.test", ["v%d@later.test" % i], later[tag])

with T.case("mail deferred before a restart is read back after it"):
    L = relay2.dlog
    T.ok(L.wait_for(lambda x: len([y for y in L.lines() if y.get("status") == "deferred"]) >= 5, 15),
         "all five deferred once")
    t = totals(relay2)
    T.eq(t.get("delivered_from_memory"), 5, "first attempts sent from memory")
    relay2.stop()
    held.stop()
    ok = dl.Server("ok2", port=held.port)
    relay2.start()
    rc, out, err = relay2.d.ctl("queue", "flush")
    T.eq(rc, 0, "queue flush")
    T.ok(dl.wait_until(lambda: ok.count() >= 5, 20), "delivered after the restart",
         "%d of 5" % ok.count())
    T.ok(relay2.wait_empty(10), "the queue is empty")
    t = totals(relay2)
    T.ok(t.get("read_back", 0) >= 5, "read back from the spool", repr(t))
    T.eq(t.get("delivered_from_memory"), 0, "nothing from memory after the restart")
    intact(ok, later, "after a restart")
relay2.stop()

# ---- copies the budget refuses: read back, still delivered intact
big_sink = dl.Server("big")
relay3 = dl.Relay([{"domain": "big.test", "transport": "smtp:[127.0.0.1]:%d" % big_sink.port}],
                  extra="limits: {memory: 1M, message_size: 1M}")
big = {}
with T.case("a tiny limits.memory forces read-back, nothing is lost"):
    for i in range(3):
        tag = "big%d" % i
        # Over the quarter of limits.memory copies get: none is kept.
        big[tag] = dl.make_message(tag, "carol@sender.test", ["w%d@big.test" % i], size=600000)
        dl.submit(relay3.port, "carol@sender.test", ["w%d@big.test" % i], big[tag])
    T.ok(dl.wait_until(lambda: big_sink.count() >= 3, 20), "all three delivered",
         "%d of 3" % big_sink.count())
    T.ok(relay3.wait_empty(10), "the queue is empty")
    t = totals(relay3)
    T.eq(t.get("read_back"), 3, "each read back from the spool")
    T.eq(t.get("delivered_from_memory"), 0, "none kept in memory")
    intact(big_sink, big, "read back")
relay3.stop()

sluice.finish()
