#!/usr/bin/python3
# timeout: 120
# Description: one DSN for a message whose recipients fail at different
# destinations in the same pass. One message to three domains (three
# loopback sinks through fixed routes, over three shards): two refuse at
# RCPT with 550 and their own texts, one takes it. Exactly one DSN reaches
# the sender's sink, listing both failed recipients with their remote
# replies and not the delivered one; both bounced log lines name that DSN.
# The bound (delivery.bounce_wait, 1s here): a destination that answers
# only after 6 s does not hold the fast failure back: its DSN comes first,
# before the slow answer, and the slow failure gets a DSN of its own.
import time

import sluice
from sluice import T

import deliverlib as dl

cap = dl.Server("capture")                                                 # sender.test
a550 = dl.Server("a550", rcpt="550 5.1.1 <x@a.test>: user unknown at alpha")
b550 = dl.Server("b550", rcpt="550 5.7.1 <y@b.test>: relaying denied at beta")
c250 = dl.Server("c250")
slow = dl.Server("slow", data=lambda m: "554 5.6.0 rejected slowly", data_delay=6.0)

relay = dl.Relay([
    {"domain": "sender.test", "transport": "smtp:[127.0.0.1]:%d" % cap.port, "retry": "1s"},
    {"domain": "a.test", "transport": "smtp:[127.0.0.1]:%d" % a550.port, "retry": "1s"},
    {"domain": "b.test", "transport": "smtp:[127.0.0.1]:%d" % b550.port, "retry": "1s"},
    {"domain": "c.test", "transport": "smtp:[127.0.0.1]:%d" % c250.port, "retry": "1s"},
    {"domain": "slow.test", "transport": "smtp:[127.0.0.1]:%d" % slow.port, "retry": "1s"},
], delivery={"bounce_wait": "1s"}, shards=3)
L = relay.dlog


def send(tag, sender, rcpts, subject):
    data = dl.make_message(tag, sender, rcpts, subject=subject)
    return dl.submit(relay.port, sender, rcpts, data)


with T.case("two destinations refuse, one takes it: one DSN lists both"):
    q1 = send("pass3", "alice@sender.test", ["x@a.test", "y@b.test", "z@c.test"],
              "Three domains 4711")
    dsn = dl.wait_until(lambda: dl.dsns_for(cap, q1), 20)
    L.wait_for(lambda x: x.get("qid") == q1 and x.get("to") == "z@c.test", 10)
    time.sleep(2.5)             # longer than bounce_wait: a second DSN would be here
    dsn = dl.dsns_for(cap, q1)
    T.eq(len(dsn), 1, "exactly one DSN arrived at the sender's sink")
    T.eq([m.rcpts for m in c250.msgs()], [["z@c.test"]], "z@c.test got the message once")
    if dsn:
        d = dl.check_dsn(dsn[0], "alice@sender.test", ["x@a.test", "y@b.test"], "pass DSN",
                         subject="Three domains 4711")
        diag = {dl.final_recipients(d)[i]: b.get("diagnostic-code", "")
                for i, b in enumerate(d.per_rcpt)}
        T.ok("550 5.1.1 <x@a.test>: user unknown at alpha" in diag.get("x@a.test", ""),
             "x@a.test's block has alpha's reply", repr(diag))
        T.ok("550 5.7.1 <y@b.test>: relaying denied at beta" in diag.get("y@b.test", ""),
             "y@b.test's block has beta's reply", repr(diag))
        st = sorted(b.get("status") for b in d.per_rcpt)
        T.eq(st, ["5.1.1", "5.7.1"], "each block has its own status")
        T.ok("z@c.test" not in dsn[0].data.decode("latin-1").split("text/rfc822-headers")[0],
             "the delivered recipient is not reported")
        T.ok("x@a.test" in (d.text_part or "") and "y@b.test" in (d.text_part or ""),
             "the text part names both", repr((d.text_part or "")[:400]))
    ls = [x for x in L.lines() if x.get("qid") == q1]
    bounced = sorted((x.get("to"), x.get("status"), x.get("code")) for x in ls
                     if x.get("status") == "bounced")
    T.eq(bounced, [("x@a.test", "bounced", 550), ("y@b.test", "bounced", 550)],
         "delivery.log: both bounced 550")
    dq = set(x.get("dsn_qid") for x in ls if x.get("status") == "bounced")
    T.ok(len(dq) == 1 and None not in dq and all(sluice.QID_RE.match(q) for q in dq),
         "both bounced lines name the one DSN", repr(dq))
    T.eq([x.get("status") for x in ls if x.get("to") == "z@c.test"], ["delivered"],
         "delivery.log: z@c.test delivered")

with T.case("bounce_wait bounds the wait for a slow destination"):
    q2 = send("pass-slow", "alice@sender.test", ["x@a.test", "s@slow.test"], "Slow one 815")
    t0 = time.time()
    first = dl.wait_until(lambda: dl.dsns_for(cap, q2), 20)
    t_first = time.time() - t0
    slow_lines = [x for x in L.lines() if x.get("qid") == q2 and x.get("to") == "s@slow.test"]
    T.eq(slow_lines, [], "the fast failure's DSN came before the slow destination answered")
    T.ok(t_first < 5.5, "within bounce_wait and a tick or so, not after the slow answer",
         "%.1f s" % t_first)
    if first:
        dl.check_dsn(first[0], "alice@sender.test", ["x@a.test"], "first DSN")
    both = dl.wait_until(lambda: len(dl.dsns_for(cap, q2)) >= 2 and dl.dsns_for(cap, q2), 20)
    T.eq(len(both or []), 2, "the slow failure got its own DSN")
    if both and len(both) == 2:
        second = [m for m in both if m is not first[0] and m.data != first[0].data]
        if second:
            dl.check_dsn(second[0], "alice@sender.test", ["s@slow.test"], "second DSN",
                         status_prefix="5.6.0")
    T.ok(relay.wait_empty(20), "the queue empties", "count %s" % relay.count())

T.eq(relay.stop(), 0, "sluiced exits 0 on SIGTERM")
sluice.finish()
