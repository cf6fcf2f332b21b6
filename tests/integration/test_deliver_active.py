#!/usr/bin/python3
# timeout: 180
# Description: delivery keeps a bounded active set in memory and parks the
# rest in the index. (1) With active_messages 20, 200 messages to a slow
# next hop (2 connections, 20 ms per message, the first try of every
# tenth message refused with 451, retry 1s): the shard says it parks,
# and every message arrives exactly once, intact, and the queue empties.
# (2) active_messages 10, delivery paused: 120 messages queued park all
# but 10 at once; after a restart (still paused) start-up parks again
# what exceeds the set ("recipient(s) parked beyond the active set"). A
# parked message put on hold stays out of delivery until released; a
# parked message bounced by the operator is bounced (log line, DSN to the
# sender). Unpaused, every other message arrives exactly once; four whose
# first try is deferred for an hour wait, parked, until `queue flush`.
# (3) A set full of mail deferred for an hour does not keep parked mail
# for a live destination out: with a set of 4, four messages to a host
# that answers 451 after 3 s, then four to a live host while those are in
# flight: the live four arrive within seconds.
import time

import sluice
from sluice import T
import deliverlib as dl


def msgid_counts(server):
    c = {}
    for m in server.msgs():
        c[m.msgid] = c.get(m.msgid, 0) + 1
    return c


def log_has(daemon, text):
    return text in daemon.log_tail(100000)


def msgid_counts(server):
    c = {}
    for m in server.msgs():
        c[m.msgid] = c.get(m.msgid, 0) + 1
    return c


def tag_of(msg):
    """The N of a make_message("act...-N") Message-ID."""
    return int(msg.msgid.split("-")[-1].split("@")[0].split(".")[0])


# ---- (1) parking while running
def every_tenth_first(msg):
    if tag_of(msg) % 10 == 0 and msg.attempt == 1:
        return "451 4.3.0 try again"
    return None


slow = dl.Server("slow", data=every_tenth_first, data_delay=0.02)
relay = dl.Relay([{"domain": "slow.test", "transport": "smtp:[127.0.0.1]:%d" % slow.port,
                   "max_connections": "2", "retry": "1s"}],
                 delivery={"active_messages": "20", "active_recipients": "40",
                           "idle_keep": "2s"}, shards=1)
items = [("alice@sender.test", ["r%d@slow.test" % i],
          dl.make_message("act1-%d" % i, "alice@sender.test", ["r%d@slow.test" % i]))
         for i in range(200)]
qids, errs = dl.submit_many(relay.port, items, conns=4)
T.eq(errs, [], "200 messages accepted")
T.ok(dl.wait_until(lambda: relay.count() == 0, 90), "the queue empties",
     "%r left; %s" % (relay.count(), relay.log_tail(5)))
counts = msgid_counts(slow)
T.eq(len(counts), 200, "200 distinct messages arrived")
T.eq(sorted(set(counts.values())), [1], "each exactly once")
T.ok(log_has(relay.d, "active set full"),
     "the shard said it parked mail beyond its active set", relay.log_tail(10))
T.ok(len(slow.refused()) >= 20, "the deferred tries happened (%d)" % len(slow.refused()))
T.eq(relay.stop(), 0, "sluiced exits 0 on SIGTERM")

# ---- (2) start-up parking, hold/release, bounce, flush
def first_try_deferred_long(msg):
    if tag_of(msg) % 30 == 7 and msg.attempt == 1:
        return "451 4.3.0 come back in an hour"
    return None


cap = dl.Server("capture")                  # the sender's domain: DSNs
sink = dl.Server("sink", data=first_try_deferred_long)
routes = [{"domain": "sender.test", "transport": "smtp:[127.0.0.1]:%d" % cap.port},
          {"domain": "sink.test", "transport": "smtp:[127.0.0.1]:%d" % sink.port,
           "retry": "1h"}]
relay = dl.Relay(routes, delivery={"paused": "true", "active_messages": "10",
                                   "active_recipients": "10"}, shards=1)
items = [("alice@sender.test", ["s%d@sink.test" % i],
          dl.make_message("act2-%d" % i, "alice@sender.test", ["s%d@sink.test" % i]))
         for i in range(120)]
qids, errs = dl.submit_many(relay.port, items, conns=1)
T.eq(errs, [], "120 messages accepted while paused")
T.ok(dl.wait_until(lambda: log_has(relay.d, "active set full"), 5),
     "parked at once beyond 10", relay.log_tail(10))
T.eq(relay.stop(), 0, "stopped")
relay.start()
T.ok(log_has(relay.d, "parked beyond the active set"),
     "start-up parked what exceeds the active set", relay.log_tail(10))
T.eq(relay.count(), 120, "all 120 still queued")
held_q, bounce_q = qids[119], qids[118]
rc, out, err = relay.d.ctl("queue", "hold", held_q)
T.eq(rc, 0, "hold a parked message: " + out + err)
rc, out, err = relay.d.ctl("queue", "bounce", bounce_q)
T.eq(rc, 0, "bounce a parked message: " + out + err)
T.ok(relay.dlog.wait_for(lambda ln: ln.get("qid") == bounce_q and
                         ln.get("status") == "bounced", 10),
     "the parked message was bounced", relay.dlog.dump(5))
T.eq(relay.stop(), 0, "stopped")

with open(relay.conf) as f:
    conf = f.read()
with open(relay.conf, "w") as f:
    f.write(conf.replace('paused: "true"', 'paused: "false"'))
relay.start()
deferred = [i for i in range(118) if i % 30 == 7]          # 7, 37, 67, 97
want = [i for i in range(118) if i not in deferred]
T.ok(dl.wait_until(lambda: len(msgid_counts(sink)) >= len(want), 60),
     "the others arrive", "%d of %d; %s" % (len(msgid_counts(sink)), len(want),
                                           relay.log_tail(5)))
T.ok(dl.wait_until(lambda: sum(1 for ln in relay.dlog.lines()
                               if ln.get("status") == "deferred") == len(deferred), 10),
     "four were deferred for an hour", relay.dlog.dump(5))
T.ok(dl.wait_until(lambda: relay.count() == 1 + len(deferred), 10),
     "the held and the deferred ones are left", "%r left" % relay.count())
rc, out, err = relay.d.ctl("queue", "flush")
T.eq(rc, 0, "flush")
T.ok(dl.wait_until(lambda: len(sink.msgs()) == 118, 30),
     "after flush the deferred ones arrive", relay.log_tail(5))
rc, out, err = relay.d.ctl("queue", "release", held_q)
T.eq(rc, 0, "release the held one: " + out + err)
T.ok(dl.wait_until(lambda: relay.count() == 0, 30), "the queue empties",
     "%r left" % relay.count())
counts = msgid_counts(sink)
tags = sorted(tag_of(m) for m in sink.msgs())
T.eq(tags, sorted(list(range(118)) + [119]),
     "every message but the bounced one arrived exactly once")
T.ok(len(cap.msgs()) >= 1, "the bounce's DSN reached the sender")
T.eq(relay.stop(), 0, "sluiced exits 0 on SIGTERM")

# ---- (3) deferred mail does not starve parked live mail
dead = dl.Server("dead", data=lambda msg: "451 4.3.0 later", data_delay=3.0)
live = dl.Server("live")
relay = dl.Relay([{"domain": "dead.test", "transport": "smtp:[127.0.0.1]:%d" % dead.port,
                   "retry": "1h"},
                  {"domain": "live.test", "transport": "smtp:[127.0.0.1]:%d" % live.port}],
                 delivery={"active_messages": "4", "active_recipients": "4"}, shards=1)
for i in range(4):
    dl.submit(relay.port, "alice@sender.test", ["d%d@dead.test" % i],
              dl.make_message("act3d-%d" % i, "alice@sender.test", ["d%d@dead.test" % i]))
T.ok(dl.wait_until(lambda: dead.current() >= 1, 5), "the dead host has the first four")
for i in range(4):
    dl.submit(relay.port, "alice@sender.test", ["l%d@live.test" % i],
              dl.make_message("act3l-%d" % i, "alice@sender.test", ["l%d@live.test" % i]))
T.ok(dl.wait_until(lambda: len(live.msgs()) == 4, 20),
     "the live host's four arrive although the set is full of deferred mail",
     "%d arrived; %s" % (len(live.msgs()), relay.log_tail(8)))
T.eq(relay.stop(), 0, "sluiced exits 0 on SIGTERM")
sluice.finish()
