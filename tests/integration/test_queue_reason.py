#!/usr/bin/python3
# timeout: 180
# Description: selecting queued mail by why it waits, as one filters
# Postfix's mailq by the deferral reason. One sink defers a.test with
# "451 4.7.1 greylisted", another b.test with "452 4.2.2 mailbox full"
# (a third message has one recipient at each). `queue list` shows each
# deferred recipient's last reply text and next try, in text and --json;
# `queue list --reason greylist` (and GREYLIST) lists exactly the
# messages with an a.test recipient; the texts survive a restart;
# `delete --reason "mailbox full" --yes` deletes exactly the messages
# with a b.test recipient and prints that count; a reason nobody gave
# selects nothing, and an empty --reason is a usage error.

import sluice
from sluice import T

import deliverlib as dl

grey = dl.Server("grey", rcpt="451 4.7.1 greylisted")
full = dl.Server("full", rcpt="452 4.2.2 mailbox full")

relay = dl.Relay([
    {"domain": "a.test", "transport": "smtp:[127.0.0.1]:%d" % grey.port, "retry": "1h"},
    {"domain": "b.test", "transport": "smtp:[127.0.0.1]:%d" % full.port, "retry": "1h"},
])


ctl, listing, ids = relay.ctl, relay.listing, relay.ids


def send(rcpts, tag):
    data = dl.make_message(tag, "alice@x.test", rcpts)
    return dl.submit(relay.port, "alice@x.test", rcpts, data)


qa = [send(["u%d@a.test" % i], "a%d" % i) for i in range(3)]
qb = [send(["v%d@b.test" % i], "b%d" % i) for i in range(2)]
qab = send(["m@a.test", "m@b.test"], "ab")
T.ok(all(qa + qb) and qab, "6 messages queued")


def all_tried():
    ms = listing()
    return len(ms) == 6 and all(r["attempts"] >= 1 for m in ms for r in m["recipients"])


with T.case("every recipient deferred once; list shows the reply and the next try"):
    T.ok(dl.wait_until(all_tried, 30), "all tried", repr(listing()))
    m = [x for x in listing() if x["id"] == qa[0]]
    r = m[0]["recipients"][0] if m else {}
    T.ok((r.get("last_code"), r.get("last_reply")) == (451, "451 4.7.1 greylisted"),
         "list --json: last_code and last_reply", repr(r))
    T.ok("next_try" in r, "list --json: next_try")
    rc, out, err = ctl("queue", "list")
    T.ok(rc == 0 and "(452 4.2.2 mailbox full)" in out and "(451 4.7.1 greylisted)" in out,
         "text list shows each reason", out[:800])
    T.ok("v0@b.test (pending, 1 attempt, last 452, next " in out, "text list: next try", out[:800])

with T.case("--reason greylist lists exactly the a.test messages"):
    T.eq(ids("--reason", "greylist"), sorted(qa + [qab]), "--reason greylist")
    T.eq(ids("--reason", "GREYLIST"), sorted(qa + [qab]), "--reason is case-blind")
    T.eq(ids("--reason", "4.2.2"), sorted(qb + [qab]), "--reason 4.2.2")
    T.eq(ids("--reason", "no such text anywhere"), [], "a reason nobody gave: none")
    T.eq(ids("--reason", "greylist", "--domain", "b.test"), [qab], "with --domain: AND")
    rc, out, err = ctl("queue", "list", "--reason", "")
    T.ok(rc == 2 and "--reason" in err, "an empty --reason is a usage error: " + err)

with T.case("the reply texts survive a restart"):
    T.eq(relay.stop(), 0, "sluiced stops")
    relay.start()
    T.eq(ids("--reason", "greylist"), sorted(qa + [qab]), "--reason greylist after a restart")

with T.case("delete --reason 'mailbox full' deletes exactly those"):
    rc, out, err = ctl("queue", "delete", "--reason", "mailbox full", "--yes")
    T.eq((rc, out), (0, "deleted 3 message(s)\n"), "delete --reason prints the count: " + err)
    T.ok(dl.wait_until(lambda: relay.count() == 3, 10), "3 left", "count %s" % relay.count())
    T.eq(ids(), sorted(qa), "what is left is the greylisted ones")
    T.eq(ids("--reason", "mailbox full"), [], "nothing left that says mailbox full")

T.eq(relay.stop(), 0, "sluiced exits 0 on SIGTERM")
sluice.finish()
