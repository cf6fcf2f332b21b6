#!/usr/bin/python3
# Description: swaks sends a plain message and a --pipeline message; raw
# sockets exercise CHUNKING (several BDAT chunks, BDAT 0 LAST, BDAT mixed
# with DATA, bad BDAT arguments); stored bytes and the queue count are checked.
# timeout: 120
import os
import shutil
import subprocess

import sluice
from sluice import T

d = sluice.Daemon()
count = 0
tmp = sluice.tmpdir()


def swaks(*args, data=None):
    argv = ["swaks", "--server", "127.0.0.1:%d" % d.port, "--from", "a@example.com",
            "--to", "b@example.net", "--helo", "swaks.example", "--timeout", "10"] + list(args)
    if data is not None:
        f = os.path.join(tmp, "data.eml")
        with open(f, "wb") as fh:
            fh.write(data)
        argv += ["--data", "@" + f]
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    out = p.stdout.decode("utf-8", "replace")
    qid = None
    for line in out.splitlines():
        if line.startswith("<-") and "queued as" in line:
            m = sluice.QUEUED_RE.match(line[2:].strip())
            qid = m.group(1) if m else None
    return p.returncode, out, qid


if shutil.which("swaks") is None:
    T.fail("swaks is installed")
else:
    # swaks appends CRLF . CRLF after the data, so data without a final CRLF
    # is stored with one CRLF added.
    for name, extra in (("swaks plain", []), ("swaks --pipeline", ["--pipeline"])):
        with T.case(name):
            data = b"Subject: from swaks\r\nX-Test: %s\r\n\r\nbody line\r\n.leading dot\r\n..two\r\nlast" % name.encode()
            rc, out, qid = swaks(*extra, data=data)
            T.eq(rc, 0, name + ": swaks exits 0")
            if T.ok(qid, name + ": swaks saw `250 2.0.0 Ok: queued as QID`", out[-600:]):
                count += 1
                sluice.check_stored(d, qid, data + b"\r\n", helo="swaks.example", what=name)
            T.eq(d.count(), count, name + ": queue count")

    with T.case("swaks with its default message"):
        rc, out, qid = swaks("--pipeline")
        T.eq(rc, 0, "swaks default data exits 0")
        if T.ok(qid, "queued", out[-600:]):
            count += 1
            data = d.cat(qid)
            T.ok(data is not None and b"X-Mailer: swaks" in data and b"\r\n" in data,
                 "stored message has swaks' headers", repr(data[:300]) if data else "")

with T.case("BDAT: three chunks then BDAT 0 LAST"):
    c = sluice.connect(d.port, helo="bdat.example")
    T.line(c.cmd("MAIL FROM:<a@example.com>"), "250 2.1.0 Ok", "MAIL")
    T.line(c.cmd("RCPT TO:<b@example.net>"), "250 2.1.5 Ok", "RCPT")
    # No dot-unstuffing with BDAT: ".\r\n" and "..x" are message content.
    chunks = [b"Subject: bdat\r\n\r\nfirst\r\n.\r\n..x\r\n",
              b"second chunk\r",            # CRLF split across chunks
              b"\nthird\r\n" + b"z" * 5000 + b"\r\n"]
    total = 0
    for i, ch in enumerate(chunks):
        c.send(b"BDAT %d\r\n" % len(ch) + ch)
        total += len(ch)
        # N is this chunk's size or the total so far (RFC 3030 shows both).
        r = c.reply()
        T.ok(r.last in ("250 2.0.0 Ok: %d octets received" % len(ch),
                        "250 2.0.0 Ok: %d octets received" % total),
             "BDAT chunk %d: 250 2.0.0 Ok: N octets received" % i, str(r))
    r = c.cmd("BDAT 0 LAST")
    q = sluice.qid_of(r)
    if T.ok(q, "BDAT 0 LAST: queued as QID", str(r)):
        count += 1
        sluice.check_stored(d, q, b"".join(chunks), helo="bdat.example", what="BDAT 3 chunks")
    T.eq(d.count(), count, "queue count")

    with T.case("BDAT: one chunk with LAST, pipelined with the envelope"):
        body = b"Subject: one\r\n\r\n.\r\nno unstuffing\r\n"
        c.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nBDAT %d LAST\r\n" % len(body) + body)
        r = c.replies(3)
        T.line(r[0], "250 2.1.0 Ok", "MAIL")
        T.line(r[1], "250 2.1.5 Ok", "RCPT")
        q = sluice.qid_of(r[2])
        if T.ok(q, "BDAT n LAST queued", str(r[2])):
            count += 1
            sluice.check_stored(d, q, body, helo="bdat.example", what="BDAT LAST")

    with T.case("BDAT: chunk bytes sent in several writes, a chunk of 1 MiB"):
        big = (b"Subject: big\r\n\r\n" + b"0123456789abcdef" * 65536)[:1 << 20]
        big = big[:-2] + b"\r\n"
        c.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\n")
        c.replies(2)
        c.send(b"BDAT %d\r\n" % len(big))
        for i in range(0, len(big), 65536):
            c.send(big[i:i + 65536])
        T.line(c.reply(), "250 2.0.0 Ok: %d octets received" % len(big), "1 MiB chunk")
        c.send(b"BDAT 7 LAST\r\nend\r\n\r\n")
        q = sluice.qid_of(c.reply())
        if T.ok(q, "big BDAT message queued"):
            count += 1
            sluice.check_stored(d, q, big + b"end\r\n\r\n", helo="bdat.example", what="1 MiB BDAT")

    with T.case("BDAT out of order and mixed with DATA"):
        r = c.cmd("BDAT 0 LAST")
        T.code(r, 503, "BDAT without MAIL: 503")
        c.cmd("MAIL FROM:<a@example.com>")
        r = c.cmd("BDAT 0 LAST")
        T.code(r, 503, "BDAT without RCPT: 503")
        c.cmd("RCPT TO:<b@example.net>")
        c.send(b"BDAT 5\r\nhello")
        T.line(c.reply(), "250 2.0.0 Ok: 5 octets received", "BDAT chunk")
        r = c.cmd("DATA")
        T.code(r, 503, "DATA after BDAT in the same transaction: 503")
        r = c.cmd("RSET")
        T.line(r, "250 2.0.0 Ok", "RSET ends the BDAT transaction")
        c.cmd("MAIL FROM:<a@example.com>")
        c.cmd("RCPT TO:<b@example.net>")
        r = c.cmd("BDAT abc")
        T.code(r, 501, "BDAT with a non-numeric size: 501")
        T.line(c.cmd("NOOP"), "250 2.0.0 Ok", "session usable after BDAT errors")
        T.line(c.cmd("RSET"), "250 2.0.0 Ok", "RSET")
        T.eq(d.count(), count, "nothing queued by the failed BDAT transactions")
    T.line(c.cmd("QUIT"), "221 2.0.0 Bye", "QUIT")
    c.close()

with T.case("DATA message then BDAT message on one connection"):
    c = sluice.connect(d.port, helo="bdat.example")
    b1 = b"Subject: data\r\n\r\n.x\r\n"
    rs, r = sluice.send_message(c, b1)
    q1 = sluice.qid_of(r)
    body = b"Subject: bdat after data\r\n\r\n.x\r\n"
    c.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nBDAT %d LAST\r\n" % len(body) + body)
    r = c.replies(3)
    q2 = sluice.qid_of(r[2])
    if T.ok(q1 and q2, "both queued", "%s %s" % (q1, r)):
        count += 2
        sluice.check_stored(d, q1, b1, helo="bdat.example", what="DATA one")
        sluice.check_stored(d, q2, body, helo="bdat.example", what="BDAT after DATA")
    c.close()

T.eq(d.count(), count, "final queue count")
T.eq(d.stop(), 0, "daemon exits 0 on SIGTERM")
sluice.finish()
