#!/usr/bin/python3
# Description: SMTP smuggling and bare CR/LF: every fake end-of-data variant
# followed by a smuggled transaction gives exactly one 554 5.6.0 and queues
# nothing; bare CR and bare LF in DATA and BDAT are refused; <CRLF>.<CRLF>
# sent one byte per write still ends DATA; clients that vanish mid-DATA queue
# nothing. The queue count is exactly the number of 250 replies.
# timeout: 120
import socket
import struct
import time

import sluice
from sluice import T

d = sluice.Daemon()
count = 0
BARE = "554 5.6.0 Error: bare CR or LF in message data"


def start_data(c):
    c.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n")
    r = c.replies(3)
    if r[2].code != 354:
        raise RuntimeError("DATA not accepted: %r" % r)


def only_reply(c, want, what):
    """The next reply is `want`, and no other reply follows unasked."""
    r = c.try_reply(10)
    T.line(r, want, what)
    extra = c.pending(0.5)
    T.eq(extra, b"", what + ": no further (smuggled) replies")


SMUGGLED = (b"MAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\n"
            b"Subject: smuggled\r\n\r\nsmuggled body\r\n")
FAKE_ENDS = [b"\n.\n", b"\r\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\r", b"\r.\r", b"\n.\r\r\n"]

with T.case("smuggling variants"):
    c = sluice.connect(d.port, helo="smuggler.example")
    for fake in FAKE_ENDS:
        start_data(c)
        c.send(b"Subject: legit\r\n\r\nhello" + fake + SMUGGLED + b".\r\n")
        only_reply(c, BARE, "fake end %r" % fake)
        T.eq(d.count(), count, "fake end %r: nothing queued" % fake)
    usable = c.cmd("NOOP")
    T.line(usable, "250 2.0.0 Ok", "session usable after the smuggling attempts")
    body = b"Subject: legit\r\n\r\nfine\r\n"
    rs, r = sluice.send_message(c, body)
    q = sluice.qid_of(r)
    if T.ok(q, "a clean message on the same session is queued", str(r)):
        count += 1
        sluice.check_stored(d, q, body, helo="smuggler.example", what="clean after smuggling")
    c.close()

with T.case("smuggling with the fake end in its own write"):
    c = sluice.connect(d.port, helo="smuggler.example")
    for fake in (b"\n.\n", b"\r\n.\n", b"\n.\r\n"):
        start_data(c)
        c.send(b"Subject: legit\r\n\r\nhello")
        time.sleep(0.05)
        c.send(fake)
        time.sleep(0.05)
        c.send(SMUGGLED)
        time.sleep(0.05)
        c.send(b".\r\n")
        only_reply(c, BARE, "split fake end %r" % fake)
    c.close()
    T.eq(d.count(), count, "nothing queued")

with T.case("bare CR and bare LF"):
    c = sluice.connect(d.port)
    for name, body in (("bare LF", b"Subject: x\r\n\r\na\nb\r\n"),
                       ("bare CR", b"Subject: x\r\n\r\na\rb\r\n"),
                       ("bare LF in a header", b"Subject: x\nX: y\r\n\r\nb\r\n"),
                       ("CR CR LF", b"Subject: x\r\r\n\r\nb\r\n"),
                       ("LF at start", b"\nSubject: x\r\n\r\nb\r\n"),
                       ("bare LF before the end", b"Subject: x\r\n\r\nb\n\r\n")):
        start_data(c)
        c.send(body + b".\r\n")
        only_reply(c, BARE, name)
    T.eq(d.count(), count, "nothing queued")
    for name, body in (("BDAT bare LF", b"Subject: x\r\n\r\na\nb\r\n"),
                       ("BDAT bare CR", b"Subject: x\r\n\r\na\rb\r\n"),
                       ("BDAT bare CR at the end", b"Subject: x\r\n\r\nab\r")):
        c.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nBDAT %d LAST\r\n" % len(body) + body)
        r = c.replies(3)
        T.line(r[2], BARE, name)
        T.eq(c.pending(0.3), b"", name + ": no further replies")
    T.line(c.cmd("NOOP"), "250 2.0.0 Ok", "session usable after bare CR/LF")
    c.close()
    T.eq(d.count(), count, "nothing queued")

with T.case("one byte per write"):
    c = sluice.connect(d.port)
    body = b"Subject: slow\r\n\r\nline\r\n.dot\r\n.\r\n..\r\nend\r\n"
    c.send_slowly(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n", 1, 0.001)
    r = c.replies(3)
    T.line(r[2], "354 End data with <CR><LF>.<CR><LF>", "DATA sent byte by byte")
    c.send_slowly(sluice.dot_stuff(body) + b".\r\n", 1, 0.003)
    r = c.reply()
    q = sluice.qid_of(r)
    if T.ok(q, "message sent byte by byte is queued", str(r)):
        count += 1
        sluice.check_stored(d, q, body, what="byte-by-byte")
    # A dot line that is not the end, split between writes.
    start_data(c)
    # Sent: "..", "", then the end: a stuffed "." line and an empty line.
    for part in (b"Subject: split\r\n\r\n", b".", b".", b"\r", b"\n", b"\r", b"\n", b".", b"\r", b"\n"):
        c.send(part)
        time.sleep(0.02)
    r = c.reply()
    q = sluice.qid_of(r)
    if T.ok(q, "queued after a dot-stuffed line split across writes", str(r)):
        count += 1
        sluice.check_stored(d, q, b"Subject: split\r\n\r\n.\r\n\r\n", what="split stuffed dot")
    T.eq(d.count(), count, "queue count")
    c.close()

with T.case("clients that vanish mid-DATA"):
    for name, tail, rst in (("close mid-line", b"Subject: gone\r\n\r\nhalf a li", False),
                            ("close after CRLF.", b"Subject: gone\r\n\r\nx\r\n.", False),
                            ("close after CRLF.CR", b"Subject: gone\r\n\r\nx\r\n.\r", False),
                            ("close after LF.LF", b"Subject: gone\r\n\r\nx\n.\n", False),
                            ("reset mid-line", b"Subject: gone\r\n\r\n" + b"y" * 70000, True),
                            ("close in BDAT chunk", None, False)):
        c = sluice.connect(d.port)
        if tail is None:
            c.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nBDAT 1000 LAST\r\n" + b"z" * 500)
            c.replies(2)
        else:
            start_data(c)
            c.send(tail)
        time.sleep(0.1)
        if rst:
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
        print("vanished: " + name)
    time.sleep(1)
    c = sluice.connect(d.port)
    body = b"Subject: after\r\n\r\nstill here\r\n"
    rs, r = sluice.send_message(c, body)
    q = sluice.qid_of(r)
    if T.ok(q, "a later message is queued", str(r)):
        count += 1
        sluice.check_stored(d, q, body, what="after vanished clients")
    c.close()
    time.sleep(0.5)
    T.eq(d.count(), count, "queue count is exactly the number of 250s (nothing half-received)")

with T.case("everything listed is a message that got 250"):
    ids = sorted(m.get("id") for m in d.list())
    T.eq(len(ids), count, "queue list length")
    for i in ids:
        data = d.cat(i) or b""
        T.ok(b"smuggled" not in data and b"gone" not in data, "%s: no smuggled or partial content" % i)

T.eq(d.stop(), 0, "daemon exits 0 on SIGTERM")
with T.case("after restart"):
    d.start()
    T.eq(d.count(), count, "queue count after restart")
    T.eq(d.stop(), 0, "daemon exits 0 on SIGTERM")
sluice.finish()
