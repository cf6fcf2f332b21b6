#!/usr/bin/python3
# Description: dev_redirect sends every message to one address instead of
# its recipients: a message for two recipients at two domains (one of them
# routed to a server that must see nothing) arrives once, addressed only
# to the redirect address, at the redirect address's route, with its bytes
# intact; delivery.log shows each original recipient delivered; the queue
# empties.
import sluice
from sluice import T

import deliverlib as dl

dev = dl.Server("dev")               # dev.test: where everything goes
real = dl.Server("real")             # a.test: must see nothing
relay = dl.Relay([
    {"domain": "dev.test", "transport": "smtp:[127.0.0.1]:%d" % dev.port},
    {"domain": "a.test", "transport": "smtp:[127.0.0.1]:%d" % real.port},
], extra="dev_redirect: inbox@dev.test")
L = relay.dlog

rcpts = ["x@a.test", "y@b.test"]
data = dl.make_message("redir1", "alice@sender.test", rcpts, subject="Redirect me")
qid = dl.submit(relay.port, "alice@sender.test", rcpts, data)

with T.case("one copy at the redirect address, none at the real one"):
    T.ok(dl.wait_until(lambda: dev.count() >= 1, 15), "the message reached dev.test")
    T.ok(relay.wait_empty(10), "the queue is empty")
    T.eq(real.count(), 0, "a.test's server saw nothing")
    T.eq(dev.count(), 1, "exactly one copy")
    if dev.count():
        m = dev.msgs()[0]
        T.eq(m.rcpts, ["inbox@dev.test"], "addressed to the redirect address only")
        T.eq(m.mail_from, "alice@sender.test", "the sender kept")
        T.ok(m.data.endswith(data), "the bytes intact after sluice's Received:")

with T.case("delivery.log: each original recipient delivered"):
    ok = L.wait_for(lambda x: len([y for y in L.lines() if y.get("qid") == qid and
                                   y.get("status") == "delivered"]) >= 2, 10)
    got = sorted(y.get("to") for y in L.lines() if y.get("qid") == qid)
    T.eq(got, rcpts, "two delivered lines, one per original recipient")

sluice.finish()
