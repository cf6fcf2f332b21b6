#!/usr/bin/python3
# timeout: 120
# Description: a failure held for its pass's one DSN is not lost by a
# crash, nor reported twice. One message to a.test (550 at RCPT at once)
# and slow.test (its end-of-data reply comes after 8 s), with
# delivery.bounce_wait 3s. sluiced is killed (-9) after a.test refused and
# before the bound: no DSN was sent. After the restart a.test is tried
# again, refuses again, and one DSN reports x@a.test; slow.test's refusal
# gets its own; x@a.test is reported exactly once in all, and its bounce
# is logged once, naming the DSN that went out.
import time

import sluice
from sluice import T

import deliverlib as dl

cap = dl.Server("capture")                                                 # sender.test
a550 = dl.Server("a550", rcpt="550 5.1.1 <x@a.test>: user unknown at alpha")
slow = dl.Server("slow", data=lambda m: "554 5.6.0 rejected slowly", data_delay=8.0)

relay = dl.Relay([
    {"domain": "sender.test", "transport": "smtp:[127.0.0.1]:%d" % cap.port, "retry": "1s"},
    {"domain": "a.test", "transport": "smtp:[127.0.0.1]:%d" % a550.port, "retry": "1s"},
    {"domain": "slow.test", "transport": "smtp:[127.0.0.1]:%d" % slow.port, "retry": "1s"},
], delivery={"bounce_wait": "3s"}, shards=2)
L = relay.dlog

rcpts = ["x@a.test", "s@slow.test"]
data = dl.make_message("held-crash", "alice@sender.test", rcpts, subject="Held then killed")
q = dl.submit(relay.port, "alice@sender.test", rcpts, data)

with T.case("killed while the failure is held: nothing sent yet"):
    T.ok(dl.wait_until(lambda: [r for r in a550.rcpt_log() if r[2] == "x@a.test"], 10),
         "a.test refused x@a.test")
    time.sleep(0.5)
    T.eq(dl.dsns_for(cap, q), [], "no DSN before the bound")
    T.eq(relay.kill9(), -9, "sluiced killed with SIGKILL")
    T.eq(dl.dsns_for(cap, q), [], "no DSN before the crash")

with T.case("after the restart: tried again, reported once"):
    relay.start()
    first = dl.wait_until(lambda: dl.dsns_for(cap, q), 20)
    T.ok(first, "a DSN came after the restart")
    if first:
        dl.check_dsn(first[0], "alice@sender.test", ["x@a.test"], "DSN after the restart")
    T.ok(len([r for r in a550.rcpt_log() if r[2] == "x@a.test"]) >= 2,
         "a.test was asked again after the restart", repr(a550.rcpt_log()))
    T.ok(dl.wait_until(lambda: len(dl.dsns_for(cap, q)) >= 2, 30),
         "a second DSN, for the recipient that failed after the restart",
         "%d DSN(s)" % len(dl.dsns_for(cap, q)))
    T.ok(relay.wait_empty(20), "the queue empties", "count %s" % relay.count())
    time.sleep(1)
    dsns = dl.dsns_for(cap, q)
    reported = sorted(a for m in dsns for a in dl.final_recipients(dl.parse_dsn(m.data)))
    T.eq(reported, ["s@slow.test", "x@a.test"], "each failed recipient reported exactly once")
    bx = [x for x in L.lines() if x.get("qid") == q and x.get("to") == "x@a.test"
          and x.get("status") == "bounced"]
    T.eq(len(bx), 1, "x@a.test's bounce is logged once")
    dq = bx[0].get("dsn_qid") if bx else None
    sent = [x for x in L.lines() if dq and x.get("qid") == dq and x.get("status") == "delivered"]
    T.ok([(x.get("from"), x.get("to")) for x in sent] == [("", "alice@sender.test")],
         "the bounce names the DSN that was delivered to the sender", repr(bx))

T.eq(relay.stop(), 0, "sluiced exits 0 on SIGTERM")
sluice.finish()
