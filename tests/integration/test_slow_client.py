#!/usr/bin/python3
# Description: with limits.idle_timeout=1s, a client sending one byte every
# 0.3 s completes its commands and a whole message (the timeout is idleness,
# not command duration); silence for 2 s gets `421 4.4.2` and a close, also
# mid-DATA, where nothing is queued.
# timeout: 90
import time

import sluice
from sluice import T

d = sluice.Daemon("limits.idle_timeout=1s")
count = 0
TIMEOUT = "421 4.4.2 test.example Error: timeout exceeded"


def slow(c, data):
    c.send_slowly(data, 1, 0.3)


def expect_timeout(c, what, t0=None):
    """421 about 1 s after t0: the client's last byte (default: now)."""
    t0 = t0 if t0 is not None else time.monotonic()
    r = c.try_reply(5)
    dt = time.monotonic() - t0
    T.line(r, TIMEOUT, what + ": 421 4.4.2 after silence")
    T.ok(0.6 <= dt <= 3.5, what + ": the timeout came after about 1 s", "%.2fs" % dt)
    T.ok(c.wait_closed(3), what + ": connection closed")


with T.case("slow EHLO and a slow message"):
    c = sluice.Conn(d.port)
    T.line(c.reply(), "220 test.example ESMTP sluice", "greeting")
    t0 = time.monotonic()
    slow(c, b"EHLO slow.example\r\n")
    print("EHLO took %.1fs" % (time.monotonic() - t0))
    sluice.check_ehlo(c.reply())
    slow(c, b"MAIL FROM:<a@example.com>\r\n")
    T.line(c.reply(), "250 2.1.0 Ok", "slow MAIL")
    c.send(b"RCPT TO:<b@example.net>\r\nDATA\r\n")
    r = c.replies(2)
    T.line(r[1], "354 End data with <CR><LF>.<CR><LF>", "DATA")
    body = b"Subject: slow\r\n\r\n.x\r\n"
    data = sluice.dot_stuff(body) + b".\r\n"
    slow(c, data[:-1])
    c.send(data[-1:])
    t_last = time.monotonic()
    r = c.reply()
    # The idle time runs from the last byte, not from the checks below
    # (sluicectl is slow in sanitizer builds).
    expect_timeout(c, "idle after the message", t_last)
    c.close()
    q = sluice.qid_of(r)
    if T.ok(q, "slowly sent message is queued", str(r)):
        count += 1
        # (sluicectl takes half a second under ASAN: not idle time)
        sluice.check_stored(d, q, body, helo="slow.example", what="slow message")

with T.case("silence right after the greeting"):
    c = sluice.Conn(d.port)
    c.reply()
    expect_timeout(c, "idle after greeting")
    c.close()

with T.case("silence mid-command"):
    c = sluice.connect(d.port)
    c.send(b"MAIL FROM:<a@exa")
    expect_timeout(c, "idle mid-command")
    c.close()

with T.case("silence mid-DATA"):
    c = sluice.connect(d.port)
    c.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n")
    c.replies(3)
    c.send(b"Subject: stalled\r\n\r\nhalf")
    expect_timeout(c, "idle mid-DATA")
    c.close()
    T.eq(d.count(), count, "the stalled message is not queued")

with T.case("silence mid-BDAT chunk"):
    c = sluice.connect(d.port)
    c.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nBDAT 100 LAST\r\nabc")
    c.replies(2)
    expect_timeout(c, "idle mid-BDAT")
    c.close()
    T.eq(d.count(), count, "the stalled BDAT message is not queued")

T.eq(d.count(), count, "final queue count")
T.eq(d.stop(), 0, "daemon exits 0 on SIGTERM")
sluice.finish()
