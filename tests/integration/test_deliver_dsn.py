#!/usr/bin/python3
# timeout: 120
# Description: bounces. A 550 at RCPT for one of two recipients: the other is
# delivered once, and one DSN from <> arrives at the sender's domain that
# Python's email package parses as multipart/report; report-type=
# delivery-status with text/plain, message/delivery-status (Reporting-MTA,
# X-Sluice-Queue-ID, Final-Recipient of the failed address only, Action:
# failed, Status 5.1.1, Diagnostic-Code with the reply) and
# text/rfc822-headers (the original Subject); delivery.log: "bounced" with
# code 550 and dsn_qid naming the DSN, which is itself logged delivered
# from "". A 554 at the end of data for two recipients: one DSN reporting
# both. Mail from the null sender that fails: bounced, no dsn_qid, no DSN.
# A DSN that cannot be delivered (550) is not bounced again.
import time

import sluice
from sluice import T

import deliverlib as dl

cap = dl.Server("capture")                                                 # sender.test
rcpt550 = dl.Server("r550", rcpt=dl.by_address({
    "nobody@a.test": "550 5.1.1 <nobody@a.test>: Recipient address rejected: User unknown"}))
data554 = dl.Server("d554", data=lambda m: "554 5.6.0 Message content rejected"
                    if "reject-me" in m.data.decode("latin-1") else None)
dead = dl.Server("dead", rcpt="550 5.1.1 no such sender mailbox")         # deadsender.test

relay = dl.Relay([
    {"domain": "sender.test", "transport": "smtp:[127.0.0.1]:%d" % cap.port, "retry": "1s"},
    {"domain": "deadsender.test", "transport": "smtp:[127.0.0.1]:%d" % dead.port, "retry": "1s"},
    {"domain": "a.test", "transport": "smtp:[127.0.0.1]:%d" % rcpt550.port, "retry": "1s"},
    {"domain": "b.test", "transport": "smtp:[127.0.0.1]:%d" % data554.port, "retry": "1s"},
])
L = relay.dlog


def send(tag, sender, rcpts, subject=None, extra=()):
    data = dl.make_message(tag, sender, rcpts, subject=subject, extra_headers=extra)
    return dl.submit(relay.port, sender, rcpts, data), data


q1, d1 = send("rcpt550", "alice@sender.test", ["ok@a.test", "nobody@a.test"],
              subject="Quarterly report 1234")
q2, d2 = send("data554", "alice@sender.test", ["x1@b.test", "x2@b.test"],
              subject="Rejected content 99", extra=("X-Flag: reject-me",))
q3, d3 = send("null550", "", ["nobody@a.test"], subject="A bounce itself")
q4, d4 = send("dead550", "bob@deadsender.test", ["nobody@a.test"], subject="From a dead sender")
print("queued: %s %s %s %s" % (q1, q2, q3, q4))

with T.case("550 at RCPT: the other recipient delivered, one DSN"):
    dsn = dl.wait_until(lambda: dl.dsns_for(cap, q1), 20)
    L.wait_for(lambda x: x.get("qid") == q1 and x.get("to") == "ok@a.test", 10)
    ok = [m for m in rcpt550.msgs() if m.msgid == "<rcpt550@client.test>"]
    T.eq([m.rcpts for m in ok], [["ok@a.test"]], "ok@a.test got the message once")
    if ok:
        T.eq(dl.check_tail(ok[0].data, d1), None, "intact")
    T.eq(len(dsn or []), 1, "one DSN arrived at the sender's domain")
    if dsn:
        d = dl.check_dsn(dsn[0], "alice@sender.test", ["nobody@a.test"], "550 DSN",
                         status_prefix="5.1.1", subject="Quarterly report 1234")
        pm = d.per_message
        T.eq((pm.get("reporting-mta") or "").strip(), "dns; sluice.test", "Reporting-MTA: dns; sluice.test")
        T.eq((pm.get("x-sluice-queue-id") or "").strip(), q1, "X-Sluice-Queue-ID is the original's qid")
        T.ok(pm.get("arrival-date"), "Arrival-Date is there", repr(pm))
        b = d.per_rcpt[0] if d.per_rcpt else {}
        T.ok("550 5.1.1" in b.get("diagnostic-code", "") and b.get("diagnostic-code", "").startswith("smtp;"),
             "Diagnostic-Code: smtp; 550 5.1.1 ...", repr(b))
        T.ok(b.get("remote-mta", "").startswith("dns;"), "Remote-MTA: dns; host", repr(b))
        T.ok("nobody@a.test" in (d.text_part or ""), "the text part names the failed address",
             repr((d.text_part or "")[:300]))
        T.ok("Message-ID: <rcpt550@client.test>" in (d.headers_part or ""),
             "the headers part has the original Message-ID")
        T.ok("line 0" not in (d.headers_part or "") and b"line 3 " not in dsn[0].data,
             "the body is not returned")
    ls = [x for x in L.lines() if x.get("qid") == q1]
    bounced = [x for x in ls if x.get("to") == "nobody@a.test"]
    T.ok([(x.get("status"), x.get("code"), x.get("enhanced")) for x in bounced] == [("bounced", 550, "5.1.1")],
         "delivery.log: nobody@a.test bounced 550 5.1.1", L.dump(pred=lambda x: x.get("qid") == q1))
    T.eq([x.get("status") for x in ls if x.get("to") == "ok@a.test"], ["delivered"],
         "delivery.log: ok@a.test delivered")
    dq = bounced[0].get("dsn_qid") if bounced else None
    T.ok(dq is not None and sluice.QID_RE.match(dq or ""), "the bounced line has dsn_qid", repr(bounced))
    if dq:
        dd = L.wait_for(lambda x: x.get("qid") == dq, 10)
        T.eq([(x.get("from"), x.get("to"), x.get("status")) for x in dd],
             [("", "alice@sender.test", "delivered")], "the DSN (dsn_qid) is logged delivered from <>")

with T.case("554 at end of data: one DSN for both recipients"):
    dsn = dl.wait_until(lambda: dl.dsns_for(cap, q2), 20)
    T.eq(len(dsn or []), 1, "one DSN")
    if dsn:
        dl.check_dsn(dsn[0], "alice@sender.test", ["x1@b.test", "x2@b.test"], "554 DSN",
                     status_prefix="5.6.0", subject="Rejected content 99")
    ls = [x for x in L.lines() if x.get("qid") == q2]
    T.ok(sorted((x.get("to"), x.get("status"), x.get("code")) for x in ls) ==
         [("x1@b.test", "bounced", 554), ("x2@b.test", "bounced", 554)],
         "delivery.log: both bounced 554", L.dump(pred=lambda x: x.get("qid") == q2))
    T.eq(data554.count(), 0, "nothing was accepted")

with T.case("no DSN for the null sender; no bounce of a bounce"):
    L.wait_for(lambda x: x.get("qid") == q3 and x.get("status") == "bounced", 20)
    # The DSN for q4 goes to deadsender.test, which refuses it with 550.
    L.wait_for(lambda x: x.get("from") == "" and x.get("to") == "bob@deadsender.test"
               and x.get("status") == "bounced", 20)
    T.ok(relay.wait_empty(20), "the queue empties", "count %s" % relay.count())
    time.sleep(2)
    ls = [x for x in L.lines() if x.get("qid") == q3]
    T.ok([(x.get("status"), x.get("from"), "dsn_qid" in x) for x in ls] == [("bounced", "", False)],
         "null sender: bounced, from \"\", no dsn_qid", L.dump(pred=lambda x: x.get("qid") == q3))
    T.eq(dl.dsns_for(cap, q3), [], "no DSN for the null sender's message")
    T.eq(len([m for m in cap.msgs() if m.mail_from == ""]), 2,
         "the sender's domain got exactly the two DSNs of alice's messages")
    dsn4 = [x for x in L.lines() if x.get("from") == "" and x.get("to") == "bob@deadsender.test"]
    T.ok([(x.get("status"), "dsn_qid" in x) for x in dsn4] == [("bounced", False)],
         "the DSN to deadsender.test bounced once, without a DSN of its own",
         L.dump(pred=lambda x: x.get("from") == ""))
    T.eq([r[2] for r in dead.rcpt_log()], ["bob@deadsender.test"], "deadsender.test was tried once")
    T.eq(len([x for x in L.lines() if x.get("status") in ("bounced", "expired")]), 6,
         "6 bounced lines in all (nobody twice, x1, x2, the <> message, the DSN to deadsender)")

T.eq(relay.stop(), 0, "sluiced exits 0 on SIGTERM")
sluice.finish()
