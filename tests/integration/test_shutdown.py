#!/usr/bin/python3
# Description: graceful shutdown. On SIGTERM idle sessions get `421 4.3.2`,
# a transaction in progress may finish (its 250 is kept), new connections are
# not served, and the daemon exits 0 within shutdown_timeout; a transaction
# that does not finish in time is dropped, not half-queued; SIGINT behaves the
# same. Messages acknowledged before are all there after a restart.
# timeout: 90
import signal
import time

import sluice
from sluice import T

SHUTDOWN = "421 4.3.2 test.example Service shutting down"


def queue_one(d, tag):
    c = sluice.connect(d.port)
    body = b"Subject: %s\r\n\r\nbefore shutdown\r\n" % tag
    rs, r = sluice.send_message(c, body)
    T.line(c.cmd("QUIT"), "221 2.0.0 Bye", "QUIT")
    c.close()
    q = sluice.qid_of(r)
    T.ok(q, "%s queued before the signal" % tag.decode(), str(r))
    return q, body


def wait_exit(d, limit):
    t0 = time.monotonic()
    try:
        rc = d.proc.wait(limit + 5)
    except Exception:
        d.kill9()
        rc = None
    return rc, time.monotonic() - t0


with T.case("SIGTERM with an idle session and one mid-transaction"):
    d = sluice.Daemon("shutdown_timeout=5s")
    q0, b0 = queue_one(d, b"early")
    idle = sluice.connect(d.port)
    fresh = sluice.Conn(d.port)
    T.line(fresh.reply(), "220 test.example ESMTP sluice", "greeted-only session")
    mid = sluice.connect(d.port, helo="mid.example")
    mid.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n")
    T.line(mid.replies(3)[2], "354 End data with <CR><LF>.<CR><LF>", "mid-transaction DATA")
    body = b"Subject: mid\r\n\r\nfirst half\r\n" + b"m" * 1000 + b"\r\n"
    mid.send(body[:500])
    time.sleep(0.2)
    t0 = time.monotonic()
    d.proc.send_signal(signal.SIGTERM)
    T.line(idle.try_reply(4), SHUTDOWN, "idle session gets 421 4.3.2")
    T.ok(idle.wait_closed(3), "idle session closed")
    T.line(fresh.try_reply(4), SHUTDOWN, "greeted-only session gets 421 4.3.2")
    T.ok(fresh.wait_closed(3), "greeted-only session closed")
    try:
        late = sluice.Conn(d.port, timeout=3)
        g = late.try_reply(3)
        T.ok(g is None or g.code == 421, "a new connection after SIGTERM is not served", str(g))
        late.close()
    except OSError as e:
        T.ok(True, "a new connection after SIGTERM is refused (%s)" % type(e).__name__)
    mid.send(body[500:] + b".\r\n")
    r = mid.try_reply(5)
    q1 = sluice.qid_of(r)
    T.ok(q1, "the transaction in progress finishes with 250", str(r))
    try:
        r = mid.cmd("QUIT", timeout=3)
    except (OSError, EOFError):
        r = None
    T.ok(r is None or r.last in ("221 2.0.0 Bye", SHUTDOWN), "after it: QUIT answered 221 or 421 4.3.2", str(r))
    T.ok(mid.wait_closed(3), "finished session closed")
    rc, dt = wait_exit(d, 5)
    T.eq(rc, 0, "daemon exits 0")
    T.ok(dt <= 5 + 2, "daemon exits within shutdown_timeout", "%.1fs" % dt)
    d.start()
    want = [q for q in (q0, q1) if q]
    T.eq(sorted(m["id"] for m in d.list()), sorted(want), "after restart: exactly the acknowledged messages")
    if q0:
        sluice.check_stored(d, q0, b0, what="message from before SIGTERM")
    if q1:
        sluice.check_stored(d, q1, body, helo="mid.example", what="message finished during shutdown")
    T.eq(d.stop(), 0, "second SIGTERM exit 0")

with T.case("a transaction stalled past shutdown_timeout is dropped"):
    d = sluice.Daemon("shutdown_timeout=2s")
    q0, b0 = queue_one(d, b"kept")
    stuck = sluice.connect(d.port)
    stuck.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n")
    stuck.replies(3)
    stuck.send(b"Subject: stuck\r\n\r\nnever finished")
    time.sleep(0.2)
    d.proc.send_signal(signal.SIGTERM)
    rc, dt = wait_exit(d, 2)
    T.eq(rc, 0, "daemon exits 0")
    T.ok(dt <= 2 + 2.5, "exits within shutdown_timeout (2s) despite the stalled client", "%.1fs" % dt)
    T.ok(stuck.wait_closed(2), "stalled session closed")
    stuck.close()
    d.start()
    T.eq([m["id"] for m in d.list()], [q0] if q0 else [], "only the acknowledged message is queued")
    if q0:
        sluice.check_stored(d, q0, b0, what="message from before SIGTERM")
    T.eq(d.stop(), 0, "exit 0")

with T.case("SIGINT"):
    d = sluice.Daemon()
    q0, b0 = queue_one(d, b"sigint")
    idle = sluice.connect(d.port)
    d.proc.send_signal(signal.SIGINT)
    T.line(idle.try_reply(4), SHUTDOWN, "idle session gets 421 4.3.2 on SIGINT")
    rc, dt = wait_exit(d, 10)
    T.eq(rc, 0, "SIGINT: exit 0")
    idle.close()
    d.start()
    T.eq(d.count(), 1 if q0 else 0, "message kept")
    T.eq(d.stop(), 0, "exit 0")

sluice.finish()
