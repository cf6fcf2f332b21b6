#!/usr/bin/python3
# Description: the command deadline (limits.command_timeout, like Postfix's
# smtpd_timeout but for a whole command line). With command_timeout=1s and
# a long idle timeout, a client dripping one byte every 100 ms gets
# `421 4.4.2 ... command not completed in time` about 1 s after the line's
# first byte and is closed, though it was never idle; lines that each
# finish within the deadline are served however long the session lasts;
# message data is not a command line; nothing half-sent is queued.
# timeout: 90
import time

import sluice
from sluice import T

d = sluice.Daemon("limits.command_timeout=1s", "limits.idle_timeout=20s")
DEADLINE = "421 4.4.2 test.example Error: command not completed in time"
count = 0


def drip(c, data, delay=0.1):
    """One byte per `delay` seconds; stops early when a reply line comes
    (or the server closes). Returns (seconds spent, bytes sent)."""
    t0 = time.monotonic()
    for i in range(len(data)):
        try:
            c.send(data[i:i + 1])
        except OSError:
            return time.monotonic() - t0, i
        if b"\r\n" in c.pending(delay):
            return time.monotonic() - t0, i + 1
    return time.monotonic() - t0, len(data)


with T.case("a command line dripped past the deadline"):
    c = sluice.connect(d.port)
    dt, sent = drip(c, b"MAIL FROM:<slow-sender-with-a-long-name@example.com>\r\n")
    T.line(c.try_reply(3), DEADLINE, "421 4.4.2 while the line drips")
    T.ok(0.8 <= dt <= 2.5, "about 1 s after the line's first byte", "%.2fs, %d bytes" % (dt, sent))
    T.ok(sent < 40, "the line was not finished", "%d bytes sent" % sent)
    T.ok(c.wait_closed(3), "connection closed")
    c.close()

with T.case("a line begun, then silence"):
    c = sluice.connect(d.port)
    t0 = time.monotonic()
    c.send(b"RCPT TO:<b@exa")
    r = c.try_reply(5)
    dt = time.monotonic() - t0
    T.line(r, DEADLINE, "421 4.4.2 for an unfinished line")
    T.ok(0.8 <= dt <= 2.5, "after about 1 s, not the 20 s idle timeout", "%.2fs" % dt)
    T.ok(c.wait_closed(3), "connection closed")
    c.close()

with T.case("slow lines that each finish in time"):
    c = sluice.connect(d.port)
    t0 = time.monotonic()
    ok = True
    for i in range(6):
        drip(c, b"NOOP\r\n")        # 0.6 s per line
        r = c.try_reply(3)
        ok &= T.line(r, "250 2.0.0 Ok", "slow NOOP %d" % (i + 1))
    T.ok(time.monotonic() - t0 > 3, "the session outlived the deadline several times")
    c.close()

with T.case("message data is not a command line"):
    c = sluice.connect(d.port)
    T.code(sluice.pipeline(c, b"DATA\r\n"), 354, "DATA")
    body = b"Subject: slow data\r\n\r\nxxxx\r\n"
    dt, sent = drip(c, body + b".\r\n", 0.08)
    if sluice.expect_queued(d, c.try_reply(3), body, "data dripped for %.1f s" % dt):
        count += 1
    c.close()

with T.case("a dripped line in a transaction is not queued"):
    c = sluice.connect(d.port)
    c.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\n")
    c.replies(2)
    drip(c, b"RCPT TO:<c@example.net>\r\n", 0.2)
    T.line(c.try_reply(3), DEADLINE, "421 4.4.2 mid-transaction")
    c.close()
    T.eq(d.count(), count, "nothing more queued")

T.eq(d.stop(), 0, "daemon exits 0")
sluice.finish()
