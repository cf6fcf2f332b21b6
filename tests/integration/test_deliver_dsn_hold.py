#!/usr/bin/python3
# timeout: 120
# Description: a failure held for its pass's one DSN is dropped when the
# operator puts the message on hold, and reported once when it is released
# and fails again. One message to a.test (550 at RCPT at once) and
# slow.test (takes it, answering after 4 s), delivery.bounce_wait 30s:
# `queue hold` while a.test's failure is held; slow.test's delivery then
# ends the pass and no DSN goes out; `queue release` tries x@a.test again,
# and exactly one DSN reports it (and not the delivered recipient).
import time

import sluice
from sluice import T

import deliverlib as dl

cap = dl.Server("capture")                                                 # sender.test
a550 = dl.Server("a550", rcpt="550 5.1.1 <x@a.test>: user unknown at alpha")
slow = dl.Server("slow", data_delay=4.0)

relay = dl.Relay([
    {"domain": "sender.test", "transport": "smtp:[127.0.0.1]:%d" % cap.port, "retry": "1s"},
    {"domain": "a.test", "transport": "smtp:[127.0.0.1]:%d" % a550.port, "retry": "1s"},
    {"domain": "slow.test", "transport": "smtp:[127.0.0.1]:%d" % slow.port, "retry": "1s"},
], delivery={"bounce_wait": "30s"}, shards=2)


ctl = relay.ctl

rcpts = ["x@a.test", "s@slow.test"]
data = dl.make_message("held-hold", "alice@sender.test", rcpts, subject="Held then on hold")
q = dl.submit(relay.port, "alice@sender.test", rcpts, data)

with T.case("hold while the failure is held: no DSN when the pass ends"):
    T.ok(dl.wait_until(lambda: [r for r in a550.rcpt_log() if r[2] == "x@a.test"], 10),
         "a.test refused x@a.test")
    rc, out, err = ctl("queue", "hold", q)
    T.eq(rc, 0, "hold: " + err)
    T.ok(dl.wait_until(lambda: slow.msgs(), 15), "slow.test took its copy")
    time.sleep(1.5)
    T.eq(dl.dsns_for(cap, q), [], "no DSN for a message on hold")

with T.case("release: tried again, one DSN"):
    rc, out, err = ctl("queue", "release", q)
    T.eq(rc, 0, "release: " + err)
    dsn = dl.wait_until(lambda: dl.dsns_for(cap, q), 15)
    T.ok(relay.wait_empty(20), "the queue empties", "count %s" % relay.count())
    time.sleep(1)
    dsn = dl.dsns_for(cap, q)
    T.eq(len(dsn), 1, "exactly one DSN")
    if dsn:
        dl.check_dsn(dsn[0], "alice@sender.test", ["x@a.test"], "DSN after release")
    T.eq([m.rcpts for m in slow.msgs()], [["s@slow.test"]], "s@slow.test delivered once")

T.eq(relay.stop(), 0, "sluiced exits 0 on SIGTERM")
sluice.finish()
