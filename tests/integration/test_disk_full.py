#!/usr/bin/python3
# Description: disk full. The spool is a 6 MiB tmpfs; 64 KiB messages are sent
# until one gets `452 4.3.1 Insufficient system storage`. Up to 5 MiB of it
# may be allocated ahead of any message (the index's 1 MiB reserve, and each
# of the two shards' current and next 1 MiB segments, allocated whole, in an
# order that depends on timing), so at least a segment's worth (15 messages)
# always fits, however the allocations fell. The session must
# stay usable, and every message that got 250 must be listed and intact, both
# while the disk is full and after SIGTERM and a restart on the same mount.
# Skips (77) when tmpfs cannot be mounted (not root, no CAP_SYS_ADMIN).
# timeout: 90
import os
import random
import subprocess

import sluice
from sluice import T

FULL = "452 4.3.1 Insufficient system storage"

if os.geteuid() != 0:
    sluice.skip("needs root to mount a tmpfs")
mnt = os.path.join(sluice.tmpdir(), "spool")
os.makedirs(mnt)
p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", mnt],
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
if p.returncode != 0:
    sluice.skip("cannot mount tmpfs: %s" % p.stdout.decode(errors="replace").strip())


def attempt(c, body):
    """One transaction; returns the first reply that is not 250/354."""
    for cmd in ("MAIL FROM:<a@example.com>", "RCPT TO:<b@example.net>", "DATA"):
        r = c.cmd(cmd)
        if r.code not in (250, 354):
            return r
    c.send(sluice.dot_stuff(body) + b".\r\n")
    return c.reply(30)


def check_all(d, acked, when):
    listed = sorted(m.get("id") for m in d.list())
    T.eq(listed, sorted(q for q, b in acked), when + ": exactly the acknowledged messages are listed")
    bad = []
    for q, body in acked:
        data = d.cat(q)
        hdr, rest = sluice.split_received(data or b"")
        if hdr is None or rest != body:
            bad.append(q)
    T.eq(bad, [], when + ": every acknowledged message is intact (%d)" % len(acked))


try:
    d = sluice.Daemon("queue.index_size=16M", "queue.segment_size=1M", spool=mnt)
    rnd = random.Random(11)
    acked = []
    with T.case("fill the disk"):
        c = sluice.connect(d.port)
        full = None
        for i in range(200):
            body = sluice.make_body(rnd, 64 * 1024, leading_dots=True, tag="full-%d" % i)
            r = attempt(c, body)
            q = sluice.qid_of(r)
            if q:
                acked.append((q, body))
                continue
            full = r
            if r.last != FULL:
                c.cmd("RSET")
            break
        print("%d messages of 64 KiB acknowledged before: %s" % (len(acked), full))
        T.line(full, FULL, "a message is refused with 452 4.3.1 once the disk is full")
        T.ok(len(acked) >= 10, "at least 10 messages fitted in 6 MiB", "%d" % len(acked))
        T.ok(d.running(), "daemon still running")
        T.line(c.cmd("RSET"), "250 2.0.0 Ok", "session alive after 452 (RSET)")
        T.line(c.cmd("NOOP"), "250 2.0.0 Ok", "session alive after 452 (NOOP)")
        r = attempt(c, b"Subject: tiny\r\n\r\nx\r\n")
        T.ok(r.code in (250, 452), "a tiny message while full: 250 or 452", str(r))
        if sluice.qid_of(r):
            acked.append((sluice.qid_of(r), b"Subject: tiny\r\n\r\nx\r\n"))
        else:
            c.cmd("RSET")
        T.line(c.cmd("QUIT"), "221 2.0.0 Bye", "QUIT")
        c.close()
        c = sluice.Conn(d.port)
        T.line(c.reply(), "220 test.example ESMTP sluice", "new connections still served while full")
        c.close()

    with T.case("while full: nothing acknowledged is lost"):
        check_all(d, acked, "while full")

    with T.case("SIGTERM and restart on the full disk"):
        T.eq(d.stop(), 0, "SIGTERM: exit 0 with a full spool")
        d.start()
        check_all(d, acked, "after restart")
        T.eq(d.count(), len(acked), "queue count after restart")
        T.eq(d.stop(), 0, "exit 0")
finally:
    for dd in sluice._daemons:
        dd.kill9()
    u = subprocess.run(["umount", mnt], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if u.returncode != 0:
        subprocess.run(["umount", "-l", mnt])

sluice.finish()
