#!/usr/bin/python3
# Description: input hygiene over a real connection. Under SMTPUTF8 a MAIL
# FROM or RCPT TO address that is not UTF-8 (Latin-1, overlong forms,
# surrogates) gets `553 5.6.7`, a UTF-8 one is accepted and queued; without
# SMTPUTF8 non-ASCII is refused as before. A NUL byte in the message, sent
# with DATA or BDAT, gets `554 5.6.0 ... NUL ...` at the end and nothing is
# queued; the session stays usable.
# timeout: 60
import sluice
from sluice import T

d = sluice.Daemon()
count = 0
NUL = "554 5.6.0 Error: NUL character in message data"

with T.case("addresses under SMTPUTF8 must be UTF-8"):
    c = sluice.connect(d.port)
    for addr in (b"j\xf6rg@example.com", b"x\xc0\xafy@example.com",
                 b"x\xed\xa0\x80y@example.com", b"x\x80@example.com"):
        T.line(c.cmd(b"MAIL FROM:<" + addr + b"> SMTPUTF8"),
               "553 5.6.7 Sender address is not valid UTF-8", "MAIL %r" % addr)
    T.line(c.cmd("MAIL FROM:<j\u00f6rg@example.com> SMTPUTF8"), "250 2.1.0 Ok",
           "a UTF-8 sender with SMTPUTF8")
    T.line(c.cmd(b"RCPT TO:<m\xfcller@example.net>"),
           "553 5.6.7 Recipient address is not valid UTF-8", "RCPT in Latin-1")
    T.line(c.cmd(b"RCPT TO:<x@\xe6\x97\xa5\xe6\x9c.jp>"),
           "553 5.6.7 Recipient address is not valid UTF-8", "RCPT with a cut sequence")
    T.line(c.cmd("RCPT TO:<m\u00fcller@\u65e5\u672c.jp>"), "250 2.1.5 Ok", "a UTF-8 recipient")
    T.line(c.cmd("DATA"), "354 End data with <CR><LF>.<CR><LF>", "DATA")
    body = "Subject: utf8\r\n\r\nGr\u00fc\u00dfe\r\n".encode()
    c.send(body + b".\r\n")
    q = sluice.qid_of(c.reply())
    if T.ok(q, "the UTF-8 message is queued"):
        count += 1
        m = [x for x in d.list() if x.get("id") == q]
        T.ok(m and [r["address"] for r in m[0]["recipients"]] == ["m\u00fcller@\u65e5\u672c.jp"],
             "the recipient is stored as sent", repr(m))
    T.prefix(c.cmd(b"MAIL FROM:<j\xc3\xb6rg@example.com>"), "553 5.6.7 Sender address needs SMTPUTF8",
             "non-ASCII without SMTPUTF8 is still refused")
    c.close()

with T.case("NUL in DATA"):
    c = sluice.connect(d.port)
    T.code(sluice.pipeline(c, b"DATA\r\n"), 354, "DATA")
    c.send(b"Subject: nul\r\n\r\nbefore\x00after\r\n" + b"x" * 100 + b"\r\n.\r\n")
    T.line(c.reply(), NUL, "a NUL in DATA is refused at the end")
    T.line(c.cmd("NOOP"), "250 2.0.0 Ok", "the session goes on")
    T.eq(d.count(), count, "nothing queued for the NUL message")
    rs, r = sluice.send_message(c, b"Subject: clean\r\n\r\nclean\r\n")
    T.ok(sluice.qid_of(r), "a clean message after it is queued", str(r))
    count += 1
    c.close()

with T.case("NUL in BDAT"):
    c = sluice.connect(d.port)
    chunk = b"Subject: nul\r\n\r\n\x00\r\n"
    T.line(sluice.pipeline(c, b"BDAT %d LAST\r\n" % len(chunk) + chunk), NUL,
           "a NUL in BDAT is refused")
    T.eq(d.count(), count, "nothing queued for the NUL BDAT message")
    c.close()

T.eq(d.count(), count, "final queue count")
T.eq(d.stop(), 0, "daemon exits 0")
sluice.finish()
