#!/usr/bin/python3
# timeout: 180
# Description: bulk queue operations, as `postsuper -d ALL deferred` or
# "bounce everything to one domain" are for Postfix. With 5 messages to
# a.test, 3 to b.test and 2 to c.test, all deferred by next hops that
# answer 451: `queue list` selects by --domain, --to, --from (@domain and
# the null sender), --status, --older-than and --code, and shows each
# recipient's attempts, last code and next try; `hold --domain`,
# `release --from`, `delete --domain` and `bounce --domain` touch exactly
# the selected messages and say how many; `flush --domain` makes one
# destination's mail due now (a new attempt there, none elsewhere); ids
# and filters together, or a bulk verb without either, are usage errors;
# more than 100 selected messages need --yes; a released message keeps
# its attempt count; bounce writes one DSN per message to the sender.
import time

import sluice
from sluice import T

import deliverlib as dl

GREY = "451 4.7.1 try again later"
grey_a = dl.Server("grey_a", rcpt=GREY)
grey_bc = dl.Server("grey_bc", rcpt=GREY)
cap = dl.Server("capture")

relay = dl.Relay([
    {"domain": "a.test", "transport": "smtp:[127.0.0.1]:%d" % grey_a.port, "retry": "1h"},
    {"domain": "b.test", "transport": "smtp:[127.0.0.1]:%d" % grey_bc.port, "retry": "1h"},
    {"domain": "c.test", "transport": "smtp:[127.0.0.1]:%d" % grey_bc.port, "retry": "1h"},
    {"domain": "x.test", "transport": "smtp:[127.0.0.1]:%d" % cap.port},
    {"domain": "y.test", "transport": "smtp:[127.0.0.1]:%d" % cap.port},
    {"domain": "many.test", "transport": "smtp:[127.0.0.1]:%d" % grey_bc.port, "retry": "1h"},
])
d = relay.d


ctl, listing, ids = relay.ctl, relay.listing, relay.ids


def send(sender, rcpt, tag):
    data = dl.make_message(tag, sender, [rcpt])
    return dl.submit(relay.port, sender, [rcpt], data)


qa = [send("alice@x.test", "u%d@a.test" % i, "a%d" % i) for i in range(5)]
qb = [send("bob@y.test", "v%d@b.test" % i, "b%d" % i) for i in range(3)]
qc = [send("carol@x.test", "w%d@c.test" % i, "c%d" % i) for i in range(2)]
T.ok(all(qa + qb + qc), "10 messages queued")

with T.case("every message is tried once and deferred"):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ms = listing()
        if len(ms) == 10 and all(r["attempts"] >= 1 for m in ms for r in m["recipients"]):
            break
        time.sleep(0.2)
    T.eq(ids("--status", "deferred"), sorted(qa + qb + qc), "--status deferred: all 10")
    T.eq(ids("--status", "queued"), [], "--status queued: none")
    m = [x for x in listing() if x["id"] == qa[0]]
    r = m[0]["recipients"][0] if m else {}
    T.eq((r.get("state"), r.get("attempts"), r.get("last_code")), ("pending", 1, 451),
         "list --json: state, attempts, last code")
    T.ok("next_try" in r, "list --json: next try time")
    rc, out, err = ctl("queue", "list", "--domain", "a.test")
    T.ok(rc == 0 and "u0@a.test (pending, 1 attempt, last 451, next " in out,
         "text list shows attempts, last code and next try: " + out[:300])

with T.case("filters select"):
    T.eq(ids("--domain", "a.test"), sorted(qa), "--domain a.test")
    T.eq(ids("--domain", "A.TEST"), sorted(qa), "--domain is case-blind")
    T.eq(ids("--to", "v1@b.test"), [qb[1]], "--to one address")
    T.eq(ids("--to", "@c.test"), sorted(qc), "--to @domain")
    T.eq(ids("--from", "@x.test"), sorted(qa + qc), "--from @domain")
    T.eq(ids("--from", "bob@y.test", "--domain", "a.test"), [], "filters AND")
    T.eq(ids("--code", "4"), sorted(qa + qb + qc), "--code 4 (class)")
    T.eq(ids("--code", "550"), [], "--code 550")
    T.eq(ids("--older-than", "1h"), [], "--older-than 1h: none")
    T.eq(ids("--older-than", "0s"), sorted(qa + qb + qc), "--older-than 0s: all")
    T.eq(ids("--from", "<>"), [], "--from '<>': no bounces yet")

with T.case("usage errors"):
    rc, out, err = ctl("queue", "delete")
    T.ok(rc == 2 and "which messages" in err, "delete without ids or filters: " + err)
    rc, out, err = ctl("queue", "delete", qa[0], "--domain", "a.test")
    T.ok(rc == 2 and "not both" in err, "ids and filters together: " + err)
    rc, out, err = ctl("queue", "list", "--status", "frozen")
    T.ok(rc == 2 and "--status" in err, "bad status: " + err)
    rc, out, err = ctl("queue", "list", "--older-than", "soon")
    T.ok(rc == 2 and "--older-than" in err, "bad age: " + err)
    T.eq(len(listing()), 10, "nothing changed")

with T.case("hold and release in bulk"):
    rc, out, err = ctl("queue", "hold", "--domain", "b.test")
    T.eq((rc, out), (0, "held 3 message(s)\n"), "hold --domain b.test: " + err)
    T.eq(ids("--status", "held"), sorted(qb), "exactly b.test's are held")
    rc, out, err = ctl("queue", "release", "--from", "bob@y.test")
    T.eq((rc, out), (0, "released 3 message(s)\n"), "release --from: " + err)
    T.eq(ids("--status", "held"), [], "none held")
    # Released mail is due at once; its next attempt is the second.
    L = relay.dlog
    for q in qb:
        got = L.wait_for(lambda x, q=q: x.get("qid") == q and x.get("attempt") == 2, 20)
        T.ok(got, "%s: tried again as attempt 2 (its count kept)" % q)

with T.case("flush --domain retries one destination now"):
    rc, out, err = ctl("flush", "--domain", "a.test")
    T.eq((rc, out), (0, "flushed 5 message(s)\n"), "flush --domain a.test: " + err)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        att = [r["attempts"] for m in listing("--domain", "a.test") for r in m["recipients"]]
        if att and all(a >= 2 for a in att):
            break
        time.sleep(0.2)
    T.eq(att, [2] * 5, "a.test: a second attempt each")
    T.eq(sorted(r["attempts"] for m in listing("--domain", "c.test") for r in m["recipients"]),
         [1, 1], "c.test: not tried again")

with T.case("delete and bounce in bulk"):
    rc, out, err = ctl("queue", "delete", "--domain", "c.test")
    T.eq((rc, out), (0, "deleted 2 message(s)\n"), "delete --domain c.test: " + err)
    T.eq(ids("--domain", "c.test"), [], "c.test's are gone")
    rc, out, err = ctl("queue", "bounce", "--domain", "a.test")
    T.eq((rc, out), (0, "bounced 5 message(s)\n"), "bounce --domain a.test: " + err)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and ids("--domain", "a.test"):
        time.sleep(0.2)
    T.eq(ids("--domain", "a.test"), [], "a.test's are gone")
    deadline = time.monotonic() + 20
    bounces = lambda m: m.mail_from in ("", "<>") and m.rcpts == ["alice@x.test"]
    while time.monotonic() < deadline and cap.count(bounces) < 5:
        time.sleep(0.2)
    T.eq(cap.count(bounces), 5, "one DSN per bounced message, to the sender")
    T.eq(ids(), sorted(qb), "only b.test's remain")

with T.case("ids that are gone are counted, not errors"):
    gone = "0000000000000001"
    rc, out, err = ctl("queue", "hold", qb[0], gone)
    T.eq((rc, out), (0, "held 1 message(s), 1 no longer queued\n"),
         "two ids, one gone: " + err)
    rc, out, err = ctl("queue", "release", "--yes", gone)
    T.eq((rc, out), (0, "released 0 message(s), 1 no longer queued\n"),
         "one id through the bulk path, gone: " + err)
    rc, out, err = ctl("queue", "release", "--yes", qb[1])
    T.eq((rc, out), (0, "released 0 message(s), 1 refused (not on hold)\n"),
         "one id through the bulk path, not held: " + err)
    rc, out, err = ctl("queue", "release", qb[0])
    T.eq(rc, 0, "release the held one again: " + err)

with T.case("more than 100 need --yes"):
    items = [("dan@x.test", ["m%d@many.test" % i], dl.make_message("m%d" % i, "dan@x.test",
              ["m%d@many.test" % i])) for i in range(101)]
    got, errors = dl.submit_many(relay.port, items, conns=4)
    T.eq((len(got), errors), (101, []), "101 more queued")
    rc, out, err = ctl("queue", "hold", "--domain", "many.test")
    T.ok(rc == 1 and "101 messages match" in err and "--yes" in err,
         "refused without --yes: " + err)
    T.eq(ids("--status", "held"), [], "nothing held")
    rc, out, err = ctl("queue", "delete", "--all", "--yes")
    T.eq((rc, out), (0, "deleted 104 message(s)\n"), "delete --all --yes: " + err)
    rc, out, err = ctl("queue", "count")
    T.eq(out.strip(), "0", "the queue is empty")

sluice.finish()
