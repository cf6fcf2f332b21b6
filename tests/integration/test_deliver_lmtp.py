#!/usr/bin/python3
# timeout: 120
# Description: LMTP delivery (aiosmtpd's LMTP server, over TCP and over a
# Unix socket). One message to two recipients where the server answers 552
# 5.2.2 (over quota) for one and 250 for the other after the data: one
# transaction with both RCPTs, one recipient delivered, one bounced with a
# DSN to the sender (Status 5.2.2); a per-recipient 452 4.2.2 on the first
# try is retried for that recipient only (the other is not delivered twice).
import os

import sluice
from sluice import T

import deliverlib as dl

QUOTA = "552 5.2.2 <full@lmtp.test>: Mailbox full, over quota"
cap = dl.Server("capture")
lm = dl.Server("lmtp", lmtp=True, data=lambda a, n: (
    QUOTA if a.lower() == "full@lmtp.test" else
    "452 4.2.2 <tmp@lmtp.test>: Mailbox busy, try later" if a.lower() == "tmp@lmtp.test" and n == 1
    else None))
sock = os.path.join(sluice.tmpdir(), "lmtp.sock")
ul = dl.Server("ulmtp", lmtp=True, unix=sock)

relay = dl.Relay([
    {"domain": "sender.test", "transport": "smtp:[127.0.0.1]:%d" % cap.port, "retry": "1s"},
    {"domain": "lmtp.test", "transport": "lmtp:[127.0.0.1]:%d" % lm.port, "retry": "1s"},
    {"domain": "ulmtp.test", "transport": "lmtp:unix:%s" % sock, "retry": "1s"},
])
L = relay.dlog

d1 = dl.make_message("lm1", "alice@sender.test", ["ok@lmtp.test", "full@lmtp.test"], subject="Quota test 5")
q1 = dl.submit(relay.port, "alice@sender.test", ["ok@lmtp.test", "full@lmtp.test"], d1)
d2 = dl.make_message("lm2", "alice@sender.test", ["tmp@lmtp.test", "ok2@lmtp.test"])
q2 = dl.submit(relay.port, "alice@sender.test", ["tmp@lmtp.test", "ok2@lmtp.test"], d2)
d3 = dl.make_message("lm3", "alice@sender.test", ["u1@ulmtp.test", "u2@ulmtp.test"])
q3 = dl.submit(relay.port, "alice@sender.test", ["u1@ulmtp.test", "u2@ulmtp.test"], d3)

with T.case("LMTP: one over quota, one fine"):
    dsn = dl.wait_until(lambda: dl.dsns_for(cap, q1), 20)
    L.wait_for(lambda x: x.get("qid") == q1 and x.get("to") == "ok@lmtp.test", 10)
    tx = [m for m in lm.msgs() + lm.refused() if m.msgid == "<lm1@client.test>"]
    T.eq([(m.rcpts, m.delivered) for m in tx], [(["ok@lmtp.test", "full@lmtp.test"], ["ok@lmtp.test"])],
         "one LMTP transaction with both recipients; only ok@ delivered")
    if tx:
        T.eq(dl.check_tail(tx[0].data, d1), None, "the bytes arrived intact")
    ls = sorted((x.get("to"), x.get("status"), x.get("code"), x.get("enhanced"), x.get("transport"))
                for x in L.lines() if x.get("qid") == q1)
    T.ok(ls == [("full@lmtp.test", "bounced", 552, "5.2.2", "lmtp"),
                ("ok@lmtp.test", "delivered", 250, "2.0.0", "lmtp")],
         "delivery.log: full@ bounced 552 5.2.2, ok@ delivered (transport lmtp)",
         L.dump(pred=lambda x: x.get("qid") == q1))
    T.eq(len(dsn or []), 1, "one DSN to the sender")
    if dsn:
        dl.check_dsn(dsn[0], "alice@sender.test", ["full@lmtp.test"], "LMTP DSN",
                     status_prefix="5.2.2", subject="Quota test 5")

with T.case("LMTP: a per-recipient 452 is retried for that recipient only"):
    L.wait_for(lambda x: x.get("qid") == q2 and x.get("to") == "tmp@lmtp.test"
               and x.get("status") == "delivered", 20)
    tx = [m for m in lm.msgs() + lm.refused() if m.msgid == "<lm2@client.test>"]
    T.eq(sorted((m.rcpts, m.delivered) for m in tx),
         sorted([(["tmp@lmtp.test", "ok2@lmtp.test"], ["ok2@lmtp.test"]), (["tmp@lmtp.test"], ["tmp@lmtp.test"])]),
         "first transaction: both (ok2 delivered); the retry carries tmp@ only")
    ls = [(x.get("to"), x.get("status"), x.get("attempt")) for x in L.lines() if x.get("qid") == q2]
    T.ok(sorted(ls) == [("ok2@lmtp.test", "delivered", 1), ("tmp@lmtp.test", "deferred", 1),
                        ("tmp@lmtp.test", "delivered", 2)],
         "delivery.log: ok2 delivered once; tmp deferred then delivered",
         L.dump(pred=lambda x: x.get("qid") == q2))

with T.case("LMTP over a Unix socket"):
    L.wait_for(lambda x: x.get("qid") == q3 and x.get("status") == "delivered"
               and x.get("to") == "u2@ulmtp.test", 20)
    tx = ul.msgs()
    T.eq([m.delivered for m in tx], [["u1@ulmtp.test", "u2@ulmtp.test"]], "one transaction, both delivered")
    if tx:
        T.eq(dl.check_tail(tx[0].data, d3), None, "intact")
    ls = sorted((x.get("to"), x.get("status"), x.get("addr")) for x in L.lines() if x.get("qid") == q3)
    T.ok(ls == [("u1@ulmtp.test", "delivered", sock), ("u2@ulmtp.test", "delivered", sock)],
         "delivery.log: both delivered, addr is the socket path", L.dump(pred=lambda x: x.get("qid") == q3))

T.ok(relay.wait_empty(20), "the queue empties", "count %s" % relay.count())
T.eq(relay.stop(), 0, "sluiced exits 0 on SIGTERM")
sluice.finish()
