#!/usr/bin/python3
# timeout: 120
# Description: a reply must be complete within its timeout, counted from
# when it became expected, however slowly its bytes come. A next hop drips
# its 70-byte greeting one byte every 200 ms (14 s in all) and
# delivery.reply_timeout is 2s: the attempt fails about 2 s after the
# connection (delivery.log: deferred, 451 4.4.2 "... timed out waiting for
# the server greeting", logged 1.5 to 6 s after the message was queued),
# sluiced closes the connection within 6 s of opening it, and nothing is
# delivered. (Before, every byte restarted the timer: the greeting
# completed after 14 s and the message went through.)
import time

import sluice
from sluice import T

import deliverlib as dl

GREETING = b"220 drip.sink.test ESMTP " + b"x" * 43 + b"\r\n"
assert len(GREETING) == 70
drip = dl.RawServer("drip", greeting=GREETING, drip=0.2)
relay = dl.Relay([
    {"domain": "drip.test", "transport": "smtp:[127.0.0.1]:%d" % drip.port, "retry": "1h"},
], delivery={"reply_timeout": "2s"})
L = relay.dlog

rc = ["bob@drip.test"]
t_wall = time.time()
q = dl.submit(relay.port, "alice@client.test", rc, dl.make_message("drip1", "alice@client.test", rc))

with T.case("a dripping greeting times out after reply_timeout"):
    got = L.wait_for(lambda x: x.get("qid") == q, 15)
    T.eq([x.get("status") for x in got], ["deferred"], "delivery.log: one deferred line")
    if got:
        x = got[0]
        T.eq((x.get("code"), x.get("enhanced")), (451, "4.4.2"), "451 4.4.2")
        T.ok("timed out waiting for the server greeting" in x.get("text", ""),
             "the line says what timed out", x.get("text"))
        after = dl.ts_of(x["ts"]) - t_wall
        print("deferred %.2f s after the message was queued" % after)
        T.ok(1.5 <= after <= 6.0, "about reply_timeout (2 s) after queueing, not after the "
             "whole greeting (14 s)", "%.2f s" % after)
    dl.wait_until(lambda: all(c.t_close is not None for c in drip.conns()), 8)
    cs = drip.conns()
    T.ok(len(cs) >= 1, "the next hop was connected to")
    T.ok(cs and all(c.t_close is not None and c.t_close - c.t_open <= 6.0 for c in cs),
         "sluiced closed the connection within 6 s",
         repr([(round(c.t_open, 2), c.t_close and round(c.t_close - c.t_open, 2)) for c in cs]))
    T.eq(drip.count(), 0, "nothing was delivered")

T.eq(relay.stop(), 0, "sluiced exits 0 on SIGTERM")
sluice.finish()
