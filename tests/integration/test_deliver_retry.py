#!/usr/bin/python3
# timeout: 120
# Description: temporary failures. A 451 at RCPT on the first attempt is
# delivered on retry (delivery.log: deferred with `next` about 1 s later,
# then delivered, attempt 2; the message arrives once); a 451 at the end of
# data likewise; `oneshot` bounces after exactly one 4xx (one DSN at the
# sender's domain, delivery.log "bounced" attempt 1); retry "1s,2s" with
# max_attempts 4 against a server that always says 451 waits at least 1, 2,
# 2 s and bounces at attempt 4; max_age 3s expires the message (status
# "expired", DSN Status 4.4.7, subject "... delivery time expired").
import time

import sluice
from sluice import T

import deliverlib as dl

GREY = "451 4.7.1 Greylisted, try again later"
cap = dl.Server("capture")                                  # sender.test
grey = dl.Server("grey", rcpt=dl.fail_first(1, GREY))        # retry.test
dgrey = dl.Server("dgrey", data=dl.data_fail_first(1, "451 4.3.0 queue full, later"))
once = dl.Server("once", rcpt=GREY)                          # once.test: always 451
always = dl.Server("always", rcpt=GREY)                      # list.test
old = dl.Server("old", rcpt=GREY)                            # age.test

relay = dl.Relay([
    {"domain": "sender.test", "transport": "smtp:[127.0.0.1]:%d" % cap.port, "retry": "1s"},
    {"domain": "retry.test", "transport": "smtp:[127.0.0.1]:%d" % grey.port, "retry": "1s"},
    {"domain": "dretry.test", "transport": "smtp:[127.0.0.1]:%d" % dgrey.port, "retry": "1s"},
    {"domain": "once.test", "transport": "smtp:[127.0.0.1]:%d" % once.port, "preset": "oneshot"},
    {"domain": "list.test", "transport": "smtp:[127.0.0.1]:%d" % always.port, "retry": "1s, 2s",
     "max_attempts": "4"},
    {"domain": "age.test", "transport": "smtp:[127.0.0.1]:%d" % old.port, "retry": "1s",
     "max_age": "3s"},
])
L = relay.dlog


def send(tag, rcpts, subject=None, sender="alice@sender.test"):
    data = dl.make_message(tag, sender, rcpts, subject=subject)
    return dl.submit(relay.port, sender, rcpts, data), data


t_start = time.monotonic()
q_grey, d_grey = send("grey1", ["bob@retry.test"])
q_dgrey, d_dgrey = send("dgrey1", ["carol@dretry.test"])
q_once, _ = send("once1", ["dave@once.test"], subject="Oneshot notice 77")
q_list, _ = send("list1", ["erin@list.test"])
q_age, _ = send("age1", ["frank@age.test"], subject="Too old 42")
print("queued: grey %s dgrey %s once %s list %s age %s" % (q_grey, q_dgrey, q_once, q_list, q_age))

with T.case("451 at RCPT on the first attempt: delivered on retry"):
    got = L.wait_for(lambda x: x.get("qid") == q_grey and x.get("status") == "delivered", 20)
    ls = [x for x in L.lines() if x.get("qid") == q_grey]
    T.ok([x.get("status") for x in ls] == ["deferred", "delivered"],
         "delivery.log: deferred, then delivered", L.dump(pred=lambda x: x.get("qid") == q_grey))
    if len(ls) == 2:
        a, b = ls
        T.eq((a.get("code"), a.get("enhanced"), a.get("attempt")), (451, "4.7.1", 1),
             "deferred line: code 451, 4.7.1, attempt 1")
        T.ok("Greylisted" in (a.get("text") or ""), "deferred line carries the reply text", repr(a))
        nxt = dl.ts_of(a["next"]) - dl.ts_of(a["ts"]) if a.get("next") else None
        T.ok(nxt is not None and 0.8 <= nxt <= 2.5, "`next` is about 1 s after the attempt", repr(nxt))
        T.eq((b.get("code"), b.get("attempt"), b.get("to")), (250, 2, "bob@retry.test"),
             "delivered line: code 250, attempt 2")
    rl = [r for r in grey.rcpt_log() if r[2] == "bob@retry.test"]
    T.eq([r[3][:3] for r in rl], ["451", "250"], "the server saw two RCPTs: 451 then 250")
    if len(rl) == 2:
        T.ok(rl[1][0] - rl[0][0] >= 0.8, "the retry came at least ~1 s later",
             "%.2fs" % (rl[1][0] - rl[0][0]))
    ms = grey.msgs()
    T.eq(len(ms), 1, "the message arrived once")
    if ms:
        T.eq(dl.check_tail(ms[0].data, d_grey), None, "with its bytes intact")

with T.case("451 at the end of data on the first attempt: delivered on retry"):
    L.wait_for(lambda x: x.get("qid") == q_dgrey and x.get("status") == "delivered", 20)
    ls = [x for x in L.lines() if x.get("qid") == q_dgrey]
    T.ok([(x.get("status"), x.get("code")) for x in ls] == [("deferred", 451), ("delivered", 250)],
         "delivery.log: deferred 451, then delivered 250", L.dump(pred=lambda x: x.get("qid") == q_dgrey))
    T.eq((len(dgrey.refused()), dgrey.count()), (1, 1), "one refused transaction, one accepted")
    ms = dgrey.msgs()
    if ms:
        T.eq(dl.check_tail(ms[0].data, d_dgrey), None, "the accepted copy is intact")

with T.case("oneshot: one 451 bounces"):
    got = L.wait_for(lambda x: x.get("qid") == q_once and x.get("status") != "deferred", 20)
    dsn = dl.wait_until(lambda: dl.dsns_for(cap, q_once), 20)
    time.sleep(2.5)                 # room for a (wrong) retry to show
    ls = [x for x in L.lines() if x.get("qid") == q_once]
    T.ok([(x.get("status"), x.get("attempt"), x.get("code")) for x in ls] == [("bounced", 1, 451)],
         "delivery.log: one line, bounced, attempt 1, code 451", L.dump(pred=lambda x: x.get("qid") == q_once))
    T.eq(len([r for r in once.rcpt_log() if r[2] == "dave@once.test"]), 1, "the server saw exactly one attempt")
    dsn = dl.dsns_for(cap, q_once)
    T.eq(len(dsn), 1, "exactly one DSN arrived at the sender's domain")
    if dsn:
        d = dl.check_dsn(dsn[0], "alice@sender.test", ["dave@once.test"], "oneshot DSN",
                         status_prefix="4.", subject="Oneshot notice 77")
        if ls:
            T.eq(ls[0].get("dsn_qid") is not None, True, "the bounced line names the DSN's qid")

with T.case("retry 1s, 2s with max_attempts 4"):
    got = L.wait_for(lambda x: x.get("qid") == q_list and x.get("status") == "bounced", 40)
    ls = [x for x in L.lines() if x.get("qid") == q_list]
    T.ok([(x.get("status"), x.get("attempt")) for x in ls] ==
         [("deferred", 1), ("deferred", 2), ("deferred", 3), ("bounced", 4)],
         "delivery.log: deferred x3 (attempts 1-3), bounced at attempt 4",
         L.dump(pred=lambda x: x.get("qid") == q_list))
    waits = [round(dl.ts_of(x["next"]) - dl.ts_of(x["ts"]), 2) for x in ls if x.get("next")]
    T.ok(len(waits) == 3 and all(w >= s - 0.2 for w, s in zip(waits, (1, 2, 2))),
         "`next` follows the schedule: at least 1, 2, 2 s", repr(waits))
    rl = [r[0] for r in always.rcpt_log() if r[2] == "erin@list.test"]
    gaps = [round(b - a, 2) for a, b in zip(rl, rl[1:])]
    T.ok(len(rl) == 4 and all(g >= s - 0.2 for g, s in zip(gaps, (1, 2, 2))),
         "the server saw 4 attempts at least 1, 2, 2 s apart", repr(gaps))
    dsn = dl.wait_until(lambda: dl.dsns_for(cap, q_list), 15)
    T.eq(len(dsn or []), 1, "one DSN")

with T.case("max_age 3s: expired"):
    got = L.wait_for(lambda x: x.get("qid") == q_age and x.get("status") not in ("deferred",), 30)
    ls = [x for x in L.lines() if x.get("qid") == q_age]
    fin = [x for x in ls if x.get("status") != "deferred"]
    T.ok([x.get("status") for x in fin] == ["expired"], "delivery.log: the final line is expired",
         L.dump(pred=lambda x: x.get("qid") == q_age))
    if fin:
        T.eq(fin[0].get("enhanced"), "4.4.7", "expired line: enhanced 4.4.7")
        T.ok(fin[0].get("delay", 0) >= 3.0, "expired no earlier than max_age", repr(fin[0].get("delay")))
    dsn = dl.wait_until(lambda: dl.dsns_for(cap, q_age), 15)
    T.eq(len(dsn or []), 1, "one DSN")
    if dsn:
        d = dl.check_dsn(dsn[0], "alice@sender.test", ["frank@age.test"], "expiry DSN",
                         status_prefix="4.4.7", subject="Too old 42")
        T.ok((d.msg.get("Subject") or "").endswith("delivery time expired"),
             "DSN subject says delivery time expired", repr(d.msg.get("Subject")))

with T.case("the queue empties; the DSNs themselves are delivered"):
    T.ok(relay.wait_empty(20), "queue count reaches 0", "count %s" % relay.count())
    dl_dsn = [x for x in L.lines() if x.get("from") == "" and x.get("status") == "delivered"]
    T.eq(sorted(x.get("to") for x in dl_dsn), ["alice@sender.test"] * 3,
         "delivery.log: 3 DSNs delivered from <> to the sender")

print("elapsed %.1fs" % (time.monotonic() - t_start))
T.eq(relay.stop(), 0, "sluiced exits 0 on SIGTERM")
sluice.finish()
