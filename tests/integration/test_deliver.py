#!/usr/bin/python3
# timeout: 200
# Description: delivery end to end. 300 messages (300 B - 100 KiB, leading
# dots, 8-bit lines, some with two recipients on one or two destinations)
# go in over 3 smtplib sessions (a few with 40 recipients on two
# destinations, taking turns) and out to sluice-bench sink (--log --store)
# (which offers CHUNKING: BDAT, unstuffed) and to Postfix's smtp-sink (-d,
# no CHUNKING: DATA, dot-stuffed): every message arrives exactly once per
# destination with the recipients it should have, and what arrives is
# exactly what was sent with header fields (Received: first) put in front;
# connections carry many messages; the queue empties; delivery.log has one
# "delivered" line per recipient and nothing else. Also: an error: route
# refuses at RCPT with its text, a discard route drops the message and
# logs "discarded".
import collections
import os
import random
import re
import smtplib
import time

import sluice
from sluice import T

import deliverlib as dl
from benchlib import Sink

N = 300

store = sluice.tmpdir()
sink = Sink("--store", store)
pf = dl.PostfixSink() if dl.have_smtp_sink() else None
if pf is None:
    print("NOTE: Postfix smtp-sink is not installed: its half is left out")

routes = [{"domain": "a.test", "transport": "smtp:[127.0.0.1]:%d" % sink.port, "retry": "1s"},
          {"domain": "bad.test", "transport": "error:550 5.1.2 no such domain"},
          {"domain": "discard.test", "transport": "discard"}]
if pf:
    routes.append({"domain": "pf.test", "transport": "smtp:[127.0.0.1]:%d" % pf.port, "retry": "1s"})
relay = dl.Relay(routes)

with T.case("error: route refuses at RCPT"):
    s = smtplib.SMTP("127.0.0.1", relay.port, local_hostname="client.test", timeout=10)
    s.ehlo("client.test")
    s.mail("x@client.test")
    T.eq(s.rcpt("y@bad.test"), (550, b"5.1.2 no such domain"), "RCPT to bad.test: 550 5.1.2 no such domain")
    s.quit()

with T.case("discard route"):
    q = dl.submit(relay.port, "x@client.test", ["gone@discard.test"],
                  dl.make_message("discard1", "x@client.test", ["gone@discard.test"]))
    T.ok(q, "message to discard.test accepted")
    got = relay.dlog.wait_for(lambda x: x.get("to") == "gone@discard.test", 15)
    T.ok([x.get("status") for x in got] == ["discarded"], "delivery.log: one line, discarded",
         relay.dlog.dump())
    T.eq([x.get("qid") for x in got], [q], "the line carries the message's qid")

# ------------------------------------------------------------------ the load
rnd = random.Random(4711)
items = []
expect = {}             # tag -> {"sender", "data", "a": [rcpts], "pf": [rcpts]}
for i in range(N):
    tag = "m%03d" % i
    k = i % 10
    if k == 0 and pf:
        rc = ["r%da@a.test" % i, "r%dp@pf.test" % i]
    elif k == 1:
        rc = ["r%da@a.test" % i, "r%db@a.test" % i]
    elif k == 2 and i < 50:
        # 40 recipients, the two destinations taking turns.
        rc = ["r%dx%d@%s" % (i, j, "pf.test" if pf and j % 2 else "a.test")
              for j in range(40)]
    elif i % 2 == 0 or not pf:
        rc = ["r%d@a.test" % i]
    else:
        rc = ["r%d@pf.test" % i]
    size = rnd.choice([300, 1500, 4000, 12000, 30000] + ([100000] if i % 25 == 7 else []))
    sender = "s%d@client.test" % i
    data = dl.make_message(tag, sender, rc, size=size, rnd=rnd, leading_dots=(i % 3 == 0),
                           eight_bit=(i % 11 == 5))
    items.append((sender, rc, data))
    expect[tag] = {"sender": sender, "data": data, "i": i,
                   "a": sorted(r for r in rc if r.endswith("@a.test")),
                   "pf": sorted(r for r in rc if r.endswith("@pf.test"))}

with T.case("submit %d messages over 3 sessions" % N):
    t0 = time.monotonic()
    qids, errors = dl.submit_many(relay.port, items, conns=3)
    print("submitted in %.1fs" % (time.monotonic() - t0))
    T.eq(errors, [], "every message accepted")
    T.eq(len(set(qids.values())), N, "%d distinct queue ids" % N)

with T.case("the queue empties"):
    t0 = time.monotonic()
    ok = relay.wait_empty(90)
    print("queue empty after %.1fs more" % (time.monotonic() - t0))
    T.ok(ok, "queue count reaches 0 within 90 s", "count %s; log:\n%s\ndelivery.log:\n%s"
         % (relay.count(), relay.log_tail(15), relay.dlog.dump(10)))

time.sleep(0.5)
src, srep = sink.stop()
if pf:
    pf.stop()

with T.case("sluice-bench sink got each message once, bytes intact"):
    msgs, closes = sink.log_lines()
    want_a = {t: e for t, e in expect.items() if e["a"]}
    seen = collections.Counter()
    bad = []
    per_conn = collections.Counter()
    for m in msgs:
        path = os.path.join(store, m["id"] + ".eml")
        try:
            with open(path, "rb") as f:
                got = f.read()
        except OSError as e:
            bad.append("%s: %s" % (m["id"], e))
            continue
        mid = dl.message_id(got)
        tag = mid[1:-1].split("@")[0] if mid else None
        seen[tag] += 1
        per_conn[m.get("conn")] += 1
        e = want_a.get(tag)
        if e is None:
            bad.append("unexpected message %r (%s)" % (mid, m["id"]))
            continue
        why = dl.check_tail(got, e["data"])
        if why:
            bad.append("%s: %s" % (tag, why))
        if sluice.sha256(got) != m.get("sha256"):
            bad.append("%s: sink log sha256 differs from the stored file" % tag)
        if sorted(m.get("rcpt", [])) != e["a"]:
            bad.append("%s: recipients %r, want %r" % (tag, m.get("rcpt"), e["a"]))
        if m.get("mail_from") != e["sender"]:
            bad.append("%s: MAIL FROM %r, want %r" % (tag, m.get("mail_from"), e["sender"]))
    T.eq(bad, [], "every message at the sink is one that was sent, whole, with its envelope")
    T.eq(collections.Counter(m.get("via") for m in msgs), {"bdat": len(msgs)},
         "the sink offers CHUNKING and PIPELINING: every message came with BDAT")
    dup = {t: n for t, n in seen.items() if n != 1}
    missing = sorted(set(want_a) - set(seen))
    T.eq((missing[:10], dup), ([], {}), "each of the %d a.test messages arrived exactly once" % len(want_a))
    T.eq(sum(seen.values()), len(want_a), "message count at the sink")
    nconn = len(per_conn)
    T.ok(0 < nconn <= max(1, len(want_a) // 4) and max(per_conn.values() or [0]) >= 5,
         "connections are reused (%d messages over %d connections, at most %d on one)"
         % (len(msgs), nconn, max(per_conn.values() or [0])),
         "messages per connection: %r" % sorted(per_conn.values()))

if pf:
    with T.case("Postfix smtp-sink got each message once, bytes intact"):
        want_p = {t: e for t, e in expect.items() if e["pf"]}
        seen = collections.Counter()
        bad = []
        for env, content in pf.messages():
            head = content.split(b"\n\n", 1)[0]
            m = re.search(rb"(?im)^Message-ID:[ \t]*<([^@>]*)@", head)
            tag = m.group(1).decode() if m else None
            seen[tag] += 1
            e = want_p.get(tag)
            if e is None:
                bad.append("unexpected message %r" % (tag or content[:200]))
                continue
            sent = e["data"].replace(b"\r\n", b"\n")
            if not content.endswith(sent):
                bad.append("%s: content is not what was sent (got %d bytes for %d)"
                           % (tag, len(content), len(sent)))
            else:
                prefix = content[:len(content) - len(sent)]
                if not prefix.startswith(b"Received:") or b"\n\n" in prefix:
                    bad.append("%s: added prefix is not a header block: %r" % (tag, prefix[:300]))
            frm = (env["mail"] or "").split(" ")[0]
            if frm != "<%s>" % e["sender"]:
                bad.append("%s: MAIL FROM %r" % (tag, env["mail"]))
            if sorted(r.split(" ")[0] for r in env["rcpt"]) != ["<%s>" % r for r in e["pf"]]:
                bad.append("%s: RCPT %r, want %r" % (tag, env["rcpt"], e["pf"]))
        T.eq(bad[:10], [], "every message at smtp-sink is one that was sent, whole, with its envelope")
        dup = {t: n for t, n in seen.items() if n != 1}
        missing = sorted(set(want_p) - set(seen))
        T.eq((missing[:10], dup), ([], {}), "each of the %d pf.test messages arrived exactly once" % len(want_p))

with T.case("delivery.log: one delivered line per recipient"):
    lines = [x for x in relay.dlog.lines() if x.get("to", "").endswith((".test",))
             and x.get("to") != "gone@discard.test"]
    want = set()
    for i, (sender, rc, data) in enumerate(items):
        for r in rc:
            want.add((qids.get(i), r))
    got = collections.Counter((x.get("qid"), x.get("to")) for x in lines)
    statuses = collections.Counter(x.get("status") for x in lines)
    T.eq(dict(statuses), {"delivered": len(want)}, "only delivered lines, one per recipient")
    T.ok(set(got) == want, "the (qid, recipient) pairs are those submitted",
         "%d missing, e.g. %r; %d unexpected, e.g. %r"
         % (len(want - set(got)), sorted(want - set(got))[:5], len(set(got) - want),
            sorted(set(got) - want)[:5]))
    T.eq([k for k, n in got.items() if n != 1][:5], [], "no recipient logged twice")
    bad = []
    for x in lines:
        port = sink.port if x.get("to", "").endswith("@a.test") else (pf.port if pf else 0)
        if (x.get("code"), x.get("attempt"), x.get("transport"), x.get("addr"), x.get("dest")) != \
                (250, 1, "smtp", "127.0.0.1:%d" % port, "[127.0.0.1]:%d" % port):
            bad.append(x)
        elif not x.get("from", "").startswith("s") or not isinstance(x.get("delay"), (int, float)) \
                or not isinstance(x.get("size"), int) or "next" in x or "dsn_qid" in x:
            bad.append(x)
    T.eq(bad[:3], [], "every line: code 250, attempt 1, transport smtp, addr and dest of the sink, from, delay, size")
    sizes = {x["qid"]: x.get("size") for x in lines}
    small = [q for i, q in qids.items() if sizes.get(q, 0) <= len(items[i][2])]
    T.eq(small[:5], [], "size counts the stored message (more than the bytes sent: Received: added)")

T.eq(relay.stop(), 0, "sluiced exits 0 on SIGTERM")
sluice.finish()
