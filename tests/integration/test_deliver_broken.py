#!/usr/bin/python3
# timeout: 120
# Description: next hops that break the protocol cost a few connections,
# not thousands, and every attempt gets a result. Five next hops, each
# with two messages queued for it (retry 1s): one sends two unasked
# "250" lines after its greeting, one two lines that are no replies, one a
# greeting whose lines carry two codes (220-/250), one a greeting line of
# 5000 bytes, one an unasked line after its EHLO reply. For 12 s after the
# mail is queued each gets at most 5 connections, and its second round
# comes at least 4 s after its first (the back-off); the delivery log has
# deferred lines for each message, 451 4.5.0 "... protocol error: ...";
# nothing is delivered or bounced and the messages stay queued.
import time

import sluice
from sluice import T

import deliverlib as dl

GREET = b"220 broken.sink.test ESMTP\r\n"
servers = {
    "extra": dl.RawServer("extra", after_greeting=b"250 extra one\r\n250 extra two\r\n"),
    "garbage": dl.RawServer("garbage", after_greeting=b"garbage one\r\ngarbage two\r\n"),
    "mixed": dl.RawServer("mixed", greeting=b"220-mixed.sink.test hello\r\n250 and goodbye\r\n"),
    "long": dl.RawServer("long", greeting=b"220 " + b"x" * 5000 + b"\r\n"),
    "afterehlo": dl.RawServer("afterehlo", after_ehlo=b"250 bonus line\r\n"),
}
# One owner per destination, so that one back-off is counted whichever
# shard accepts each message (with delivery.spread each shard's lane backs
# off on its own: test_deliver_spread.py counts that).
relay = dl.Relay([{"domain": "%s.test" % k, "transport": "smtp:[127.0.0.1]:%d" % s.port,
                   "retry": "1s"} for k, s in servers.items()], delivery={"spread": "false"})
L = relay.dlog

qids = {}
t0 = time.monotonic()
for k in servers:
    for i in range(2):
        rc = ["u%d@%s.test" % (i, k)]
        qids.setdefault(k, []).append(
            dl.submit(relay.port, "s@client.test", rc, dl.make_message("%s%d" % (k, i), "s@client.test", rc)))
time.sleep(max(0.0, t0 + 12.0 - time.monotonic()))
t1 = time.monotonic()

for k, srv in servers.items():
    with T.case("%s: few connections, each attempt deferred with the reason" % k):
        opens = [round(c.t_open - t0, 2) for c in srv.conns() if c.t_open <= t1]
        print("%s: %d connection(s) at %s" % (k, len(opens), opens[:20]))
        T.ok(0 < len(opens) <= 5, "%s: at most 5 connections in 12 s" % k,
             "%d: %r..." % (len(opens), opens[:20]))
        later = [x for x in opens if x > opens[0] + 1.0] if opens else []
        T.ok(not later or later[0] - opens[0] >= 4.0,
             "%s: the next round waits the back-off (>= 4 s)" % k, repr(opens[:20]))
        for q in qids[k]:
            ls = [x for x in L.lines() if x.get("qid") == q]
            T.ok(ls and all(x.get("status") == "deferred" for x in ls),
                 "%s %s: deferred, never delivered or bounced" % (k, q), L.dump(pred=lambda x, q=q: x.get("qid") == q))
            T.ok(ls and all((x.get("code"), x.get("enhanced")) == (451, "4.5.0") and
                            "protocol error" in x.get("text", "") for x in ls),
                 "%s %s: 451 4.5.0 ... protocol error ..." % (k, q), repr([x.get("text") for x in ls]))
        T.eq(srv.count(), 0, "%s: nothing reached the sink" % k)

ids = {m.get("id") for m in relay.d.list()}
T.ok(all(q in ids for qs in qids.values() for q in qs), "every message is still queued", repr(ids))
T.eq(relay.stop(), 0, "sluiced exits 0 on SIGTERM")
sluice.finish()
