#!/usr/bin/python3
# Description: the memory ceiling (limits.memory) on message bytes held by
# sessions, across both shards. With memory=3M and message_size=1M: six
# clients declaring 900 kB each ask for DATA at once; some get `354`, the
# rest `452 4.3.1 Insufficient system storage` without sending anything,
# every 354 ends in 250 and is stored intact, and the refused ones succeed
# on a later DATA. A message without SIZE that outgrows what is left gets
# 452 4.3.1 at its end; a BDAT chunk that cannot be held is read and then
# refused with 452 4.3.1; nothing refused is queued; nothing is lost.
# timeout: 120
import random
import threading

import sluice
from sluice import T

d = sluice.Daemon("limits.memory=3M", "limits.message_size=1M")
rnd = random.Random(7)
NOSTORE = "452 4.3.1 Insufficient system storage"
count = 0


def holder(size):
    """A session in DATA that declared `size`: it holds that much."""
    c = sluice.connect(d.port)
    r = sluice.pipeline(c, b"DATA\r\n", mail_params="SIZE=%d" % size)
    if r.code != 354:
        raise RuntimeError("holder of %d: %s" % (size, r))
    return c


def finish(c, body, what):
    """Send the body of a session in DATA; it must be queued intact."""
    global count
    c.send(sluice.dot_stuff(body) + b".\r\n")
    if sluice.expect_queued(d, c.reply(timeout=20), body, what):
        count += 1


with T.case("concurrent DATA: some 452 up front, every 354 queued"):
    n = 6
    bodies = [sluice.make_body(rnd, 900000, leading_dots=True, tag="c%d" % i) for i in range(n)]
    ready = threading.Barrier(n, timeout=20)
    answered = threading.Barrier(n, timeout=20)
    results = [None] * n

    def client(i):
        c = None
        try:
            c = sluice.connect(d.port, timeout=20)
            c.cmd("MAIL FROM:<a@example.com> SIZE=%d" % len(bodies[i]))
            c.cmd("RCPT TO:<b@example.net>")
            ready.wait()
            first = c.cmd("DATA")
            answered.wait()     # every DATA answered before any body is sent
            results[i] = [first.last]
            if first.code == 354:
                c.send(sluice.dot_stuff(bodies[i]) + b".\r\n")
                results[i].append(c.reply().last)
            else:
                answered.wait()  # the others are done: memory is back
                r = c.cmd("DATA")
                results[i].append(r.last)
                if r.code == 354:
                    c.send(sluice.dot_stuff(bodies[i]) + b".\r\n")
                    results[i].append(c.reply().last)
                return
            answered.wait()
        except Exception as e:
            results[i] = (results[i] or []) + ["error: %s" % e]
            answered.abort()
        finally:
            if c:
                c.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    print("results:", results)
    first = [r[0] if r else None for r in results]
    n354 = first.count("354 End data with <CR><LF>.<CR><LF>")
    n452 = first.count(NOSTORE)
    T.ok(n354 + n452 == n, "every DATA got 354 or 452 4.3.1", repr(first))
    T.ok(1 <= n354 <= 3, "at most 3 of 900 kB fit in 3M at once", "%d got 354" % n354)
    T.ok(n452 >= 3, "the others got 452 4.3.1 before sending", "%d got 452" % n452)
    qids = []
    for i, r in enumerate(results):
        last = r[-1] if r else None
        q = sluice.QUEUED_RE.match(last or "")
        if T.ok(q, "client %d: its message is finally queued" % i, repr(r)):
            qids.append((q.group(1), i))
    for q, i in qids:
        sluice.check_stored(d, q, bodies[i], what="concurrent message %d" % i)
    count += len(qids)
    T.eq(d.count(), count, "queue holds exactly the 250s")

with T.case("a message without SIZE outgrows what is left"):
    held = [holder(1048000), holder(1048000), holder(700000)]
    c = sluice.connect(d.port)
    T.code(sluice.pipeline(c, b"DATA\r\n"), 354, "DATA without SIZE is let in (64 kB fits)")
    big = sluice.make_body(rnd, 900000, tag="nosize")
    c.send(sluice.dot_stuff(big) + b".\r\n")
    T.line(c.reply(timeout=20), NOSTORE, "452 4.3.1 at the end of the data")
    T.line(c.cmd("NOOP"), "250 2.0.0 Ok", "the session goes on")
    T.eq(d.count(), count, "nothing queued for it")
    for i, h in enumerate(held):
        finish(h, sluice.make_body(rnd, (1040000, 1040000, 690000)[i], tag="held%d" % i), "holder %d" % i)
        h.close()
    rs, r = sluice.send_message(c, big)
    if sluice.expect_queued(d, r, big, "the no-SIZE message, once the holders are done"):
        count += 1
    c.close()

with T.case("a BDAT chunk that cannot be held"):
    held = [holder(1048000), holder(1048000), holder(1048000)]
    c = sluice.connect(d.port)
    chunk = sluice.make_body(rnd, 100000, tag="bdat")
    T.line(sluice.pipeline(c, b"BDAT %d LAST\r\n" % len(chunk) + chunk), NOSTORE,
           "BDAT: the chunk is read, then 452 4.3.1")
    T.line(c.cmd("NOOP"), "250 2.0.0 Ok", "the session stays in step")
    T.eq(d.count(), count, "nothing queued for it")
    for i, h in enumerate(held):
        finish(h, sluice.make_body(rnd, 1000000, tag="bheld%d" % i), "BDAT holder %d" % i)
        h.close()
    r = sluice.pipeline(c, b"BDAT %d LAST\r\n" % len(chunk) + chunk)
    if sluice.expect_queued(d, r, chunk, "the BDAT message, once memory is free"):
        count += 1
    c.close()

T.eq(d.count(), count, "final queue count")
T.eq(d.stop(), 0, "daemon exits 0")
sluice.finish()
