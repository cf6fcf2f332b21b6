#!/usr/bin/python3
# Description: every limit and error reply of the contract: SIZE at MAIL and
# message size at end of DATA, recipients, line length, errors -> 421 and
# close, junk commands (NOOP, RSET, VRFY, HELP) past limits.junk_commands
# counted as errors, connections and connections per client, idle timeout,
# relay denied,
# syntax errors, unknown and unimplemented commands, commands out of order,
# binary garbage; checks the session stays usable where it should and that
# nothing refused is queued.
# timeout: 120
import time

import sluice
from sluice import T

SIZE = 100000
d = sluice.Daemon("limits.message_size=%d" % SIZE, "limits.recipients=3",
                  "limits.line_length=512", "limits.errors=10")
count = 0


def fresh():
    return sluice.connect(d.port)


def usable(c, what):
    return T.line(c.cmd("NOOP"), "250 2.0.0 Ok", what + ": session still usable (NOOP)")


with T.case("EHLO advertises the configured SIZE"):
    c = sluice.Conn(d.port)
    c.reply()
    sluice.check_ehlo(c.ehlo(), size=SIZE)
    c.close()

with T.case("SIZE= at MAIL"):
    c = fresh()
    T.line(c.cmd("MAIL FROM:<a@example.com> SIZE=%d" % (SIZE + 1)),
           "552 5.3.4 Message size exceeds fixed limit", "SIZE=limit+1")
    T.line(c.cmd("MAIL FROM:<a@example.com> SIZE=99999999999999999999"),
           "552 5.3.4 Message size exceeds fixed limit", "SIZE=huge (20 digits)")
    T.line(c.cmd("MAIL FROM:<a@example.com> SIZE=%d" % SIZE), "250 2.1.0 Ok", "SIZE=limit accepted")
    T.line(c.cmd("RSET"), "250 2.0.0 Ok", "RSET")
    T.line(c.cmd("MAIL FROM:<a@example.com> size=100"), "250 2.1.0 Ok", "lower-case size= accepted")
    T.line(c.cmd("RSET"), "250 2.0.0 Ok", "RSET")
    c.close()

with T.case("message size at end of DATA"):
    c = fresh()
    big = b"Subject: big\r\n\r\n" + (b"x" * 98 + b"\r\n") * (SIZE // 100 + 500)
    c.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n")
    r = c.replies(3)
    T.code(r[2], 354, "DATA")
    c.send(big + b".\r\n")
    T.line(c.reply(), "552 5.3.4 Error: message file too big", "message over the limit refused")
    usable(c, "after too big")
    T.eq(d.count(), count, "too big message not queued")
    small = b"Subject: small\r\n\r\n" + (b"y" * 98 + b"\r\n") * (SIZE // 200)
    rs, r = sluice.send_message(c, small)
    q = sluice.qid_of(r)
    if T.ok(q, "a message of half the limit is queued on the same session", str(r)):
        count += 1
        sluice.check_stored(d, q, small, what="half-limit message")
    T.eq(d.count(), count, "queue count")
    c.close()

with T.case("recipients limit"):
    c = fresh()
    c.cmd("MAIL FROM:<a@example.com>")
    for i in range(3):
        T.line(c.cmd("RCPT TO:<r%d@example.net>" % i), "250 2.1.5 Ok", "RCPT %d of 3" % (i + 1))
    T.line(c.cmd("RCPT TO:<r3@example.net>"), "452 4.5.3 Error: too many recipients", "4th RCPT")
    T.line(c.cmd("RCPT TO:<r4@example.net>"), "452 4.5.3 Error: too many recipients", "5th RCPT")
    T.line(c.cmd("DATA"), "354 End data with <CR><LF>.<CR><LF>", "DATA with 3 recipients")
    body = b"Subject: rcpts\r\n\r\nthree\r\n"
    c.send(body + b".\r\n")
    q = sluice.qid_of(c.reply())
    if T.ok(q, "queued with the accepted recipients"):
        count += 1
        m = [x for x in d.list() if x.get("id") == q]
        T.ok(m and sorted(r["address"] for r in m[0]["recipients"]) ==
             ["r0@example.net", "r1@example.net", "r2@example.net"], "exactly the 3 accepted recipients", repr(m))
    T.line(c.cmd("MAIL FROM:<a@example.com>"), "250 2.1.0 Ok", "next transaction: MAIL")
    T.line(c.cmd("RCPT TO:<x@example.net>"), "250 2.1.5 Ok", "the limit is per transaction")
    c.cmd("RSET")
    c.close()

with T.case("line length"):
    c = fresh()
    # limits.line_length counts the CRLF.
    line = "NOOP " + "a" * (512 - 5 - 2)
    T.line(c.cmd(line), "250 2.0.0 Ok", "a 512-byte command line (with CRLF) is accepted")
    T.line(c.cmd(line + "a"), "500 5.5.2 Error: line too long", "513 bytes: line too long")
    usable(c, "after 513-byte line (the rest was discarded, one reply only)")
    T.line(c.cmd("NOOP " + "b" * 100000), "500 5.5.2 Error: line too long", "100 kB line")
    usable(c, "after 100 kB line")
    c.send(b"MAIL FROM:<" + b"c" * 2000)
    time.sleep(0.2)
    c.send(b"@example.com>\r\n")
    T.line(c.reply(), "500 5.5.2 Error: line too long", "long MAIL line in two writes")
    T.line(c.cmd("MAIL FROM:<a@example.com>"), "250 2.1.0 Ok", "the long MAIL did not start a transaction")
    c.cmd("RSET")
    c.close()

with T.case("too many errors: 421 and close"):
    c = fresh()
    n500 = 0
    final = None
    for i in range(13):
        try:
            c.send(b"XYZZY\r\n")
            r = c.reply(5)
        except (OSError, EOFError) as e:
            final = "closed without 421 (%s)" % e
            break
        if r.last == "500 5.5.2 Error: command not recognized":
            n500 += 1
            continue
        final = r
        break
    T.line(final if isinstance(final, sluice.Reply) else None,
           "421 4.7.0 test.example Error: too many errors", "421 after too many errors (%s)" % final)
    T.ok(9 <= n500 <= 10, "9 or 10 errors answered before the 421 (limit 10)", "got %d" % n500)
    T.ok(c.wait_closed(3), "socket closed after 421")
    c.close()

with T.case("syntax errors"):
    c = fresh()
    for cmd, want in (("MAIL", "501 5.5.4 Syntax: MAIL FROM:<address>"),
                      ("MAIL TO:<a@example.com>", "501 5.5.4 Syntax: MAIL FROM:<address>"),
                      ("MAIL FROM:<a@b@example.com>", "501 5.1.7 Bad sender address syntax"),
                      ("MAIL FROM:<user@>", "501 5.1.7 Bad sender address syntax")):
        T.line(c.cmd(cmd), want, repr(cmd))
    usable(c, "after MAIL syntax errors")
    c.close()
    c = fresh()
    T.line(c.cmd("MAIL FROM:<a@example.com>"), "250 2.1.0 Ok", "MAIL")
    for cmd, want in (("RCPT", "501 5.5.4 Syntax: RCPT TO:<address>"),
                      ("RCPT FROM:<b@example.net>", "501 5.5.4 Syntax: RCPT TO:<address>"),
                      ("RCPT TO:<a@b@example.net>", "501 5.1.3 Bad recipient address syntax"),
                      ("RCPT TO:<>", "501 5.1.3 Bad recipient address syntax")):
        T.line(c.cmd(cmd), want, repr(cmd))
    T.prefix(c.cmd("RCPT TO:<b@example.net> XYZ=1"), "555 5.5.4 Unsupported option: XYZ", "unknown RCPT parameter")
    T.line(c.cmd("RCPT TO:<b@example.net>"), "250 2.1.5 Ok", "a good RCPT still works")
    c.cmd("RSET")
    c.close()
    c = fresh()
    T.prefix(c.cmd("MAIL FROM:<a@example.com> FOO=BAR"), "555 5.5.4 Unsupported option: FOO", "unknown MAIL parameter")
    T.prefix(c.cmd("MAIL FROM:<j\u00f6rg@example.com>"), "553 5.6.7 ", "non-ASCII sender without SMTPUTF8")
    T.line(c.cmd("MAIL FROM:<j\u00f6rg@example.com> SMTPUTF8"), "250 2.1.0 Ok", "non-ASCII sender with SMTPUTF8")
    c.cmd("RSET")
    T.line(c.cmd("MAIL FROM:<a@example.com>"), "250 2.1.0 Ok", "ASCII MAIL")
    T.prefix(c.cmd("RCPT TO:<m\u00fcller@example.net>"), "553 5.6.7 ", "non-ASCII recipient without SMTPUTF8")
    T.line(c.cmd("MAIL FROM:<>"), "503 5.5.1 Error: nested MAIL command", "MAIL <> while in a transaction")
    c.cmd("RSET")
    T.line(c.cmd("MAIL FROM:<>"), "250 2.1.0 Ok", "null sender accepted")
    c.cmd("RSET")
    c.close()

with T.case("unknown and unimplemented commands, VRFY, HELP"):
    c = fresh()
    T.line(c.cmd("FOO"), "500 5.5.2 Error: command not recognized", "FOO")
    T.line(c.cmd("STARTTLS"), "502 5.5.1 Error: command not supported", "STARTTLS")
    T.line(c.cmd("AUTH PLAIN AGFAYg=="), "502 5.5.1 Error: command not supported", "AUTH")
    T.prefix(c.cmd("VRFY b@example.net"), "252 2.0.0 ", "VRFY")
    T.prefix(c.cmd("HELP"), "214 2.0.0 ", "HELP")
    T.line(c.cmd("noop"), "250 2.0.0 Ok", "lower-case noop")
    T.line(c.cmd("RSET"), "250 2.0.0 Ok", "RSET")
    T.line(c.cmd("QUIT"), "221 2.0.0 Bye", "QUIT")
    T.ok(c.wait_closed(3), "closed after QUIT")
    c.close()

with T.case("commands out of order"):
    c = sluice.Conn(d.port)
    c.reply()
    T.line(c.cmd("MAIL FROM:<a@example.com>"), "503 5.5.1 Error: send HELO/EHLO first", "MAIL before EHLO")
    T.line(c.cmd("EHLO client.example"), "250 CHUNKING", "EHLO")
    T.line(c.cmd("RCPT TO:<b@example.net>"), "503 5.5.1 Error: need MAIL command", "RCPT before MAIL")
    T.code(c.cmd("DATA"), 503, "DATA before MAIL")
    T.line(c.cmd("MAIL FROM:<a@example.com>"), "250 2.1.0 Ok", "MAIL")
    T.line(c.cmd("MAIL FROM:<a@example.com>"), "503 5.5.1 Error: nested MAIL command", "nested MAIL")
    T.line(c.cmd("DATA"), "503 5.5.1 Error: need RCPT command", "DATA before RCPT")
    T.line(c.cmd("RCPT TO:<a@b@c>"), "501 5.1.3 Bad recipient address syntax", "refused RCPT")
    T.line(c.cmd("DATA"), "554 5.5.1 Error: no valid recipients", "DATA when every RCPT was refused")
    usable(c, "after out-of-order commands")
    c.close()
    T.eq(d.count(), count, "nothing queued")

with T.case("binary garbage as commands"):
    c = fresh()
    for g in (b"\x00\x00\x00", b"\xff\xfe\xfd\x80 \x00 GARBAGE", b"MA\x00IL FROM:<a@example.com>",
              bytes(range(1, 10)) + bytes(range(14, 32)) + bytes(range(0x80, 0x100))):
        r = c.cmd(g)
        T.ok(r.code in (500, 501), "garbage %r: 500/501" % g[:12], str(r))
    usable(c, "after garbage")
    T.line(c.cmd("MAIL FROM:<a@example.com>"), "250 2.1.0 Ok", "MAIL after garbage")
    c.cmd("RSET")
    c.close()
    T.eq(d.count(), count, "nothing queued by garbage")

# ---- connection limits: a separate daemon; 127.0.0.x are distinct clients.
with T.case("connections and connections_per_client"):
    dc = sluice.Daemon("limits.connections=4", "limits.connections_per_client=2")
    held = []

    def open_from(src):
        # The daemon releases a slot shortly after it closes a connection;
        # leave it a moment so that each step sees the previous one settled.
        time.sleep(0.3)
        c = sluice.Conn(dc.port, source=src, timeout=5)
        return c, c.reply()

    for src in ("127.0.0.1", "127.0.0.1"):
        c, g = open_from(src)
        T.line(g, "220 test.example ESMTP sluice", "connection from %s accepted" % src)
        held.append(c)
    c, g = open_from("127.0.0.1")
    T.line(g, "421 4.7.0 test.example Error: too many connections", "3rd connection from 127.0.0.1")
    T.ok(c.wait_closed(3), "refused connection is closed")
    c.close()
    for src in ("127.0.0.2", "127.0.0.2"):
        c, g = open_from(src)
        T.line(g, "220 test.example ESMTP sluice", "connection from %s accepted (total %d)" % (src, len(held) + 1))
        held.append(c)
    c, g = open_from("127.0.0.3")
    T.line(g, "421 4.7.0 test.example Error: too many connections", "5th connection in total (from 127.0.0.3)")
    c.close()
    T.line(held[0].cmd("EHLO client.example"), "250 CHUNKING", "held sessions still work")
    T.line(held[0].cmd("QUIT"), "221 2.0.0 Bye", "QUIT one from 127.0.0.1")
    held[0].wait_closed(3)
    held[0].close()

    def again():
        c, g = open_from("127.0.0.1")
        if g.code == 220:
            held.append(c)
            return g
        c.close()
        return None
    g = sluice.wait_until(again, 3, 0.2)
    T.line(g, "220 test.example ESMTP sluice", "a slot freed by QUIT is reusable")
    for c in held:
        c.close()
    T.eq(dc.stop(), 0, "connection-limit daemon exits 0")

with T.case("idle timeout"):
    di = sluice.Daemon("limits.idle_timeout=1s")
    c = sluice.connect(di.port)
    t0 = time.monotonic()
    r = c.try_reply(6)
    dt = time.monotonic() - t0
    T.line(r, "421 4.4.2 test.example Error: timeout exceeded", "idle session times out")
    T.ok(0.7 <= dt <= 4, "timeout after about 1 s", "%.2fs" % dt)
    T.ok(c.wait_closed(3), "closed after the timeout")
    c.close()
    T.eq(di.stop(), 0, "idle-timeout daemon exits 0")

with T.case("junk commands"):
    dj = sluice.Daemon("limits.junk_commands=5", "limits.errors=3")
    c = sluice.connect(dj.port)
    for i, cmd in enumerate(("NOOP", "RSET", "VRFY b@example.net", "HELP", "NOOP")):
        T.code(c.cmd(cmd), {0: 250, 1: 250, 2: 252, 3: 214, 4: 250}[i], "junk %d of 5: %s" % (i + 1, cmd))
    T.line(c.cmd("NOOP"), "250 2.0.0 Ok", "6th: still answered (error 1 of 3)")
    rs, r = sluice.send_message(c, b"Subject: real mail\r\n\r\nhello\r\n")
    T.ok(sluice.qid_of(r), "a message is queued", str(r))
    for i in range(5):
        T.line(c.cmd("NOOP"), "250 2.0.0 Ok", "after the message, junk %d of 5 again" % (i + 1))
    T.line(c.cmd("NOOP"), "250 2.0.0 Ok", "6th after the message: error 2 of 3")
    c.send(b"RSET\r\n")
    r = c.replies(2, timeout=5)
    T.line(r[0], "250 2.0.0 Ok", "7th: answered")
    T.line(r[1], "421 4.7.0 test.example Error: too many junk commands", "then 421 at the error limit")
    T.ok(c.wait_closed(3), "closed after the 421")
    c.close()
    T.eq(dj.count(), 1, "the message is queued")
    T.eq(dj.stop(), 0, "junk daemon exits 0")

with T.case("relay access denied outside allowed_networks"):
    dr = sluice.Daemon("allowed_networks=[10.0.0.0/8]")
    c = sluice.connect(dr.port)
    T.line(c.cmd("MAIL FROM:<a@example.com>"), "250 2.1.0 Ok", "MAIL")
    T.line(c.cmd("RCPT TO:<b@example.net>"), "554 5.7.1 <b@example.net>: Relay access denied", "RCPT relay denied")
    T.line(c.cmd("RCPT TO:<c@example.org>"), "554 5.7.1 <c@example.org>: Relay access denied", "second RCPT")
    T.line(c.cmd("DATA"), "554 5.5.1 Error: no valid recipients", "DATA: no valid recipients")
    usable(c, "after relay denied")
    c.close()
    T.eq(dr.count(), 0, "nothing queued by the relay-denied client")
    T.eq(dr.stop(), 0, "relay daemon exits 0")

T.eq(d.count(), count, "final queue count")
T.eq(d.stop(), 0, "daemon exits 0 on SIGTERM")
sluice.finish()
