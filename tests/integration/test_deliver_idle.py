#!/usr/bin/python3
# timeout: 120
# Description: a next hop closing a connection kept idle for reuse is not a
# failure. Two next hops close connections that sat 0.5 s without a
# command (idle_keep is 1s here, so sluiced keeps them longer): one just
# closes, one says "421 4.4.2 idle timeout" first. Three messages go to
# each, then three more once the first connections were closed. Every
# message is delivered once at its first attempt (delivery.log: only
# "delivered", attempt 1), the second round within 3 s (the destination
# was not slowed down), the next hops did close idle connections, and
# sluiced's stderr at the default log level says nothing about them (no
# "session failed at idle" line, nothing naming their addresses).
import time

import sluice
from sluice import T

import deliverlib as dl

quiet = dl.RawServer("quiet", idle_close=0.5)
polite = dl.RawServer("polite", idle_close=0.5, idle_reply=b"421 4.4.2 polite.sink.test idle timeout\r\n")
relay = dl.Relay([
    {"domain": "quiet.test", "transport": "smtp:[127.0.0.1]:%d" % quiet.port, "retry": "1s"},
    {"domain": "polite.test", "transport": "smtp:[127.0.0.1]:%d" % polite.port, "retry": "1s"},
])
L = relay.dlog


def batch(tag):
    items = []
    for dom in ("quiet.test", "polite.test"):
        for i in range(3):
            rc = ["u%d@%s" % (i, dom)]
            items.append(("s@client.test", rc, dl.make_message("%s-%s-%d" % (tag, dom, i),
                                                                "s@client.test", rc)))
    qids, errs = dl.submit_many(relay.port, items, conns=1)
    T.eq(errs, [], "%s: 6 messages queued" % tag)
    return set(qids.values())


first = batch("one")
ok = dl.wait_until(lambda: quiet.count() + polite.count() >= 6, 15)
T.ok(ok, "first round delivered")
closed = dl.wait_until(lambda: any(c.closed_by_server for c in quiet.conns()) and
                       any(c.closed_by_server for c in polite.conns()), 10)
T.ok(closed, "both next hops closed an idle connection of sluiced's")
time.sleep(0.5)                       # sluiced has seen the closes
t1 = time.monotonic()
second = batch("two")
ok = dl.wait_until(lambda: quiet.count() + polite.count() >= 12, 15)
took = time.monotonic() - t1
T.ok(ok and took <= 3.0, "second round delivered within 3 s (%.2f s)" % took)

with T.case("every message delivered once, at its first attempt"):
    ls = [x for x in L.lines() if x.get("qid") in first | second]
    T.eq(sorted({x.get("status") for x in ls}), ["delivered"], "delivery.log: only delivered lines")
    T.ok(len(ls) == 12 and all(x.get("attempt") == 1 for x in ls), "12 lines, all attempt 1",
         repr([(x.get("status"), x.get("attempt")) for x in ls]))
    ids = [m[1] for m in quiet.msgs() + polite.msgs()]
    T.eq(len(ids), len(set(ids)), "no message arrived twice")

T.eq(relay.stop(), 0, "sluiced exits 0 on SIGTERM")
with T.case("nothing on stderr about the idle closes"):
    with open(relay.d.log, encoding="utf-8", errors="replace") as f:
        log = f.read()
    bad = [ln for ln in log.splitlines() if "session failed" in ln or
           ":%d]" % quiet.port in ln or ":%d]" % polite.port in ln]
    T.eq(bad, [], "no line about the next hops' idle closes at the default level")
sluice.finish()
