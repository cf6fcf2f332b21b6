#!/usr/bin/python3
# Description: PIPELINING over a raw socket: EHLO, then MAIL+RCPT+RCPT+DATA in
# one write, body+dot+next transaction (or QUIT) in one write; every reply is
# checked in order, and the stored messages and queue count are checked.
# timeout: 120
import random

import sluice
from sluice import T

d = sluice.Daemon()
rnd = random.Random(2)
count = 0

with T.case("one pipelined group, two recipients, then body+dot+QUIT together"):
    c = sluice.Conn(d.port)
    T.line(c.reply(), "220 test.example ESMTP sluice", "greeting")
    sluice.check_ehlo(c.ehlo("pipe.example"))
    c.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nRCPT TO:<c@example.net>\r\nDATA\r\n")
    r = c.replies(4)
    T.line(r[0], "250 2.1.0 Ok", "pipelined MAIL")
    T.line(r[1], "250 2.1.5 Ok", "pipelined RCPT 1")
    T.line(r[2], "250 2.1.5 Ok", "pipelined RCPT 2")
    T.line(r[3], "354 End data with <CR><LF>.<CR><LF>", "pipelined DATA")
    body = b"Subject: pipelined\r\n\r\nline one\r\n.dotted\r\n"
    c.send(sluice.dot_stuff(body) + b".\r\nQUIT\r\n")
    r = c.replies(2)
    qid = sluice.qid_of(r[0])
    T.ok(qid, "end of data: queued as QID", str(r[0]))
    T.line(r[1], "221 2.0.0 Bye", "pipelined QUIT after the dot")
    T.ok(c.wait_closed(3), "closed after QUIT")
    c.close()
    if qid:
        count += 1
        sluice.check_stored(d, qid, body, helo="pipe.example",
                            rcpts=("b@example.net", "c@example.net"), what="2-rcpt pipelined")
        m = [x for x in d.list() if x.get("id") == qid]
        T.ok(m and sorted(r["address"] for r in m[0]["recipients"]) == ["b@example.net", "c@example.net"],
             "queue list shows both recipients", repr(m))
    T.eq(d.count(), count, "queue count")

with T.case("next transaction pipelined after the dot, 20 messages per connection"):
    c = sluice.connect(d.port, helo="pipe.example")
    n = 20
    bodies = [sluice.make_body(rnd, rnd.randrange(10, 4000), leading_dots=True, tag="p%d" % i)
              for i in range(n)]
    c.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n")
    qids = []
    got = c.replies(3)
    ok = T.ok([x.last for x in got] == ["250 2.1.0 Ok", "250 2.1.5 Ok",
                                        "354 End data with <CR><LF>.<CR><LF>"],
              "first group replies in order", repr(got))
    for i in range(n):
        if not ok:
            break
        tail = (b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n"
                if i + 1 < n else b"QUIT\r\n")
        c.send(sluice.dot_stuff(bodies[i]) + b".\r\n" + tail)
        r = c.reply()
        q = sluice.qid_of(r)
        ok = T.ok(q, "message %d queued" % i, str(r))
        qids.append(q)
        if i + 1 < n:
            got = c.replies(3)
            ok &= T.ok([x.last for x in got] == ["250 2.1.0 Ok", "250 2.1.5 Ok",
                                                 "354 End data with <CR><LF>.<CR><LF>"],
                       "group %d replies in order" % (i + 1), repr(got))
        else:
            T.line(c.reply(), "221 2.0.0 Bye", "QUIT")
    c.close()
    good = [q for q in qids if q]
    count += len(good)
    T.eq(len(good), n, "all %d messages queued" % n)
    T.eq(len(set(good)), len(good), "QIDs unique")
    T.ok(good == sorted(good), "QIDs increase on one connection", repr(good))
    T.eq(d.count(), count, "queue count")
    for i, q in enumerate(qids):
        if q:
            sluice.check_stored(d, q, bodies[i], helo="pipe.example", what="pipelined #%d" % i)

with T.case("RSET, NOOP, refused RCPT and a bad command inside a pipeline"):
    c = sluice.connect(d.port)
    c.send(b"MAIL FROM:<a@example.com>\r\nRSET\r\nNOOP\r\nMAIL FROM:<a@example.com>\r\n"
           b"RCPT TO:<bad@@example.net>\r\nRCPT TO:<b@example.net>\r\nBOGUS\r\nDATA\r\n")
    r = c.replies(8)
    want = ["250 2.1.0 Ok", "250 2.0.0 Ok", "250 2.0.0 Ok", "250 2.1.0 Ok",
            "501 5.1.3 Bad recipient address syntax", "250 2.1.5 Ok",
            "500 5.5.2 Error: command not recognized", "354 End data with <CR><LF>.<CR><LF>"]
    for i, w in enumerate(want):
        T.line(r[i], w, "pipelined reply %d" % i)
    body = b"Subject: mixed\r\n\r\nok\r\n"
    c.send(body + b".\r\nQUIT\r\n")
    r = c.replies(2)
    q = sluice.qid_of(r[0])
    if T.ok(q, "queued after a partly refused pipeline", str(r[0])):
        count += 1
        sluice.check_stored(d, q, body, what="mixed pipeline")
    T.line(r[1], "221 2.0.0 Bye", "QUIT")
    c.close()
    T.eq(d.count(), count, "queue count")

with T.case("all RCPTs refused in a pipeline: DATA 554, nothing queued"):
    c = sluice.connect(d.port)
    c.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<x@@y>\r\nDATA\r\nNOOP\r\n")
    r = c.replies(4)
    T.line(r[0], "250 2.1.0 Ok", "MAIL")
    T.line(r[1], "501 5.1.3 Bad recipient address syntax", "bad RCPT")
    T.line(r[2], "554 5.5.1 Error: no valid recipients", "DATA with no valid recipient")
    T.line(r[3], "250 2.0.0 Ok", "NOOP after (session usable)")
    c.close()
    T.eq(d.count(), count, "queue count unchanged")

with T.case("an empty message (DATA then . at once)"):
    c = sluice.connect(d.port)
    c.send(b"MAIL FROM:<>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n")
    r = c.replies(3)
    T.line(r[2], "354 End data with <CR><LF>.<CR><LF>", "DATA")
    c.send(b".\r\n")
    q = sluice.qid_of(c.reply())
    if T.ok(q, "empty message with null sender queued"):
        count += 1
        sluice.check_stored(d, q, b"", what="empty message")
        m = [x for x in d.list() if x.get("id") == q]
        T.ok(m and m[0].get("sender") == "", "null sender listed as \"\"", repr(m))
    c.close()

with T.case("4 connections interleaved, each pipelining 5 messages"):
    conns = [sluice.connect(d.port, helo="c%d.example" % i) for i in range(4)]
    sent = {}
    for k in range(5):
        for i, c in enumerate(conns):
            c.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n")
        for i, c in enumerate(conns):
            r = c.replies(3)
            T.ok(r[2].code == 354, "conn %d msg %d: 354" % (i, k), repr(r))
            body = sluice.make_body(rnd, rnd.randrange(100, 20000), tag="i%d-%d" % (i, k))
            c.send(sluice.dot_stuff(body) + b".\r\n")
            sent[(i, k)] = body
        for i, c in enumerate(conns):
            q = sluice.qid_of(c.reply())
            if T.ok(q, "conn %d msg %d queued" % (i, k)):
                count += 1
                if k == 4:
                    sluice.check_stored(d, q, sent[(i, k)], helo="c%d.example" % i,
                                        what="interleaved %d/%d" % (i, k))
    for c in conns:
        T.line(c.cmd("QUIT"), "221 2.0.0 Bye", "QUIT")
        c.close()
    T.eq(d.count(), count, "queue count after interleaved sessions")

T.eq(d.stop(), 0, "daemon exits 0 on SIGTERM")
sluice.finish()
