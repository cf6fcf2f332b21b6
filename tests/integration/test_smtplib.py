#!/usr/bin/python3
# Description: Python's smtplib (no pipelining) sends plain messages; checks
# reply codes, QIDs, the queue count, and that `queue cat` shows the Received
# header followed by exactly the bytes sent (dot-stuffing, 8BITMIME, SMTPUTF8).
# timeout: 120
import json
import random
import smtplib

import sluice
from sluice import T

SIZE = 1000000
d = sluice.Daemon("limits.message_size=%d" % SIZE)
rnd = random.Random(1)
qids = []
expect_count = 0

with T.case("greeting, EHLO and HELO"):
    s = smtplib.SMTP(local_hostname="client.example", timeout=10)
    T.eq(s.connect("127.0.0.1", d.port), (220, b"test.example ESMTP sluice"), "greeting")
    code, msg = s.ehlo("client.example")
    T.eq(code, 250, "EHLO code")
    lines = msg.decode().split("\n")
    T.eq(lines, ["test.example", "PIPELINING", "SIZE %d" % SIZE, "ENHANCEDSTATUSCODES",
                 "8BITMIME", "SMTPUTF8", "CHUNKING"], "EHLO extension list")
    T.ok(s.has_extn("pipelining") and s.has_extn("chunking"), "smtplib sees PIPELINING and CHUNKING")
    T.eq(s.noop(), (250, b"2.0.0 Ok"), "NOOP")
    T.eq(s.rset(), (250, b"2.0.0 Ok"), "RSET")
    code, msg = s.helo("client.example")
    T.eq((code, msg), (250, b"test.example"), "HELO after EHLO")
    T.eq(s.quit(), (221, b"2.0.0 Bye"), "QUIT")

with T.case("raw greeting text"):
    with sluice.Conn(d.port) as c:
        T.line(c.reply(), "220 test.example ESMTP sluice", "greeting")
        T.line(c.cmd("HELO client.example"), "250 test.example", "HELO")
        T.line(c.cmd("QUIT"), "221 2.0.0 Bye", "QUIT")
        T.ok(c.wait_closed(3), "server closes after QUIT")

bodies = []
bodies.append(("plain", b"Subject: hello\r\nFrom: a@example.com\r\n\r\nHello, world.\r\n", "", "ESMTP"))
bodies.append(("leading dots", b"Subject: dots\r\n\r\n.\r\n..\r\n.leading\r\n...three\r\nend .\r\n.\r\n", "", "ESMTP"))
bodies.append(("8-bit BODY=8BITMIME", "Subject: caf\u00e9\r\n\r\nGr\u00fc\u00dfe, \u00e7a va? \u65e5\u672c\r\n".encode("utf-8")
               + bytes(range(0x80, 0x100)) + b"\r\n", "BODY=8BITMIME", "ESMTP"))
bodies.append(("header-only, no body", b"Subject: none\r\n", "", "ESMTP"))
bodies.append(("200 KiB random", sluice.make_body(rnd, 200 * 1024, leading_dots=True, tag="big"), "", "ESMTP"))
bodies.append(("long lines near 998", b"Subject: long\r\n\r\n" + b"x" * 998 + b"\r\n" + b"." + b"y" * 997 + b"\r\n", "", "ESMTP"))

with T.case("messages over one connection with smtplib"):
    s = smtplib.SMTP("127.0.0.1", d.port, local_hostname="client.example", timeout=20)
    s.ehlo("client.example")
    for name, body, param, proto in bodies:
        opts = [param] if param else []
        if s.has_extn("size"):
            opts.append("SIZE=%d" % len(body))
        T.eq(s.mail("a@example.com", opts), (250, b"2.1.0 Ok"), name + ": MAIL")
        T.eq(s.rcpt("b@example.net"), (250, b"2.1.5 Ok"), name + ": RCPT")
        code, msg = s.data(body)
        T.eq(code, 250, name + ": end of data code")
        qid = sluice.qid_of(sluice.Reply(["%d %s" % (code, msg.decode())]))
        if T.ok(qid is not None, name + ": reply is `2.0.0 Ok: queued as QID`", msg.decode()):
            qids.append(qid)
            expect_count += 1
            T.eq(d.count(), expect_count, name + ": queue count right after the 250")
            sluice.check_stored(d, qid, body, what=name)
    s.quit()

with T.case("sendmail() with several recipients, SMTPUTF8"):
    s = smtplib.SMTP("127.0.0.1", d.port, local_hostname="client.example", timeout=20)
    body = "Subject: utf8\r\n\r\nj\u00f6rg\r\n".encode()
    refused = s.sendmail("j\u00f6rg@example.com", ["b@example.net", "c@example.org", "d@example.net"],
                         body, mail_options=["SMTPUTF8", "BODY=8BITMIME"])
    T.eq(refused, {}, "sendmail: no recipient refused")
    expect_count += 1
    s.quit()
    T.eq(d.count(), expect_count, "queue count after sendmail")
    lst = d.list()
    new = [m for m in lst if m.get("id") not in qids]
    if T.eq(len(new), 1, "one new message listed"):
        m = new[0]
        qids.append(m["id"])
        T.eq(sorted(r.get("address") for r in m.get("recipients", [])),
             ["b@example.net", "c@example.org", "d@example.net"], "listed recipients")
        T.eq(m.get("sender"), "j\u00f6rg@example.com", "listed sender (UTF-8)")
        T.eq(m.get("helo"), "client.example", "listed helo")
        T.eq(m.get("client_address"), "127.0.0.1", "listed client_address")
        sluice.check_stored(d, m["id"], body, rcpts=("b@example.net", "c@example.org", "d@example.net"),
                            what="3-recipient message")

with T.case("QIDs unique and increasing; queue list/show agree"):
    T.eq(len(set(qids)), len(qids), "QIDs are unique")
    seq = qids[:len(bodies)]
    T.ok(all(a < b for a, b in zip(seq, seq[1:])), "QIDs of one connection increase", repr(seq))
    lst = {m["id"]: m for m in d.list()}
    T.eq(sorted(lst), sorted(qids), "queue list --json lists exactly the queued QIDs")
    for q in qids[:2]:
        data = d.cat(q)
        T.eq(lst[q].get("size") in (len(data), len(sluice.split_received(data)[1])), True,
             "%s: listed size is the stored size (with or without Received)" % q)
    q = qids[0]
    rc, out, err = d.ctl("queue", "show", q)
    T.eq(rc, 0, "queue show exits 0")
    T.ok("Headers:" in out and "Subject: hello" in out, "queue show has a Headers: section", out[:300])
    rc, out, err = d.ctl("queue", "show", q, "--json")
    try:
        v = json.loads(out)
    except ValueError:
        v = {}
    T.ok(isinstance(v, dict) and v.get("id") == q and "Subject: hello" in v.get("headers", ""),
         "queue show --json has id and headers", out[:300])
    rc, out, err = d.ctl("queue", "cat", "0123456789ABCDEF")
    T.eq(rc, 1, "queue cat of an unknown id exits 1")
    rc, out, err = d.ctl("queue", "show", "0123456789ABCDEF")
    T.eq(rc, 1, "queue show of an unknown id exits 1")

with T.case("HELO session is stored WITH SMTP"):
    s = smtplib.SMTP("127.0.0.1", d.port, local_hostname="old.example", timeout=10)
    s.helo("old.example")
    body = b"Subject: helo\r\n\r\nplain SMTP\r\n"
    T.eq(s.mail("a@example.com"), (250, b"2.1.0 Ok"), "MAIL after HELO")
    T.eq(s.rcpt("b@example.net"), (250, b"2.1.5 Ok"), "RCPT after HELO")
    code, msg = s.data(body)
    qid = sluice.qid_of(sluice.Reply(["%d %s" % (code, msg.decode())]))
    if T.ok(qid is not None, "HELO message queued", msg.decode()):
        expect_count += 1
        sluice.check_stored(d, qid, body, helo="old.example", proto="SMTP", what="HELO message")
    s.quit()

with T.case("restart keeps everything"):
    T.eq(d.stop(), 0, "SIGTERM: exit 0")
    d.start()
    T.eq(d.count(), expect_count, "queue count after restart")
    for q in qids[:3]:
        T.ok(d.cat(q) is not None, "%s still there after restart" % q)

T.eq(d.stop(), 0, "daemon exits 0 on SIGTERM")
sluice.finish()
