#!/usr/bin/python3
# Description: Postfix's smtp-source loads the daemon: 20 parallel sessions,
# 20000 messages of 1 KiB (one connection per message), then 20 sessions
# reusing their connection (-d) for 20000 more (1000 each); smtp-source must exit 0 and
# the queue must hold exactly every message, with intact envelopes.
# timeout: 240
import os
import subprocess
import time

import sluice
from sluice import T

SMTP_SOURCE = "/usr/sbin/smtp-source"
if not os.access(SMTP_SOURCE, os.X_OK):
    sluice.skip("smtp-source is not installed")

d = sluice.Daemon()
total = 0


def run(args, n, what):
    global total
    argv = [SMTP_SOURCE] + args + ["127.0.0.1:%d" % d.port]
    print("running " + " ".join(argv))
    t0 = time.monotonic()
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=150)
        rc, out = p.returncode, p.stdout.decode("utf-8", "replace")
    except subprocess.TimeoutExpired as e:
        rc, out = "timeout after 150s", (e.output or b"").decode("utf-8", "replace")
    dt = time.monotonic() - t0
    print("%s: %d messages in %.1fs (%.0f/s)" % (what, n, dt, n / dt if dt else 0))
    T.eq(rc, 0, what + ": smtp-source exits 0")
    if rc != 0:
        print(out[-2000:])
    total += n
    T.eq(d.count(), total, what + ": queue count is exactly %d" % total)


with T.case("smtp-source -s 20 -m 20000 -l 1024"):
    run(["-s", "20", "-m", "20000", "-l", "1024", "-f", "a@example.com", "-t", "b@example.net"],
        20000, "20000 connections")

with T.case("smtp-source -d -s 20 -m 20000 -l 4096 -r 2"):
    run(["-d", "-s", "20", "-m", "20000", "-l", "4096", "-r", "2", "-f", "c@example.com",
         "-t", "d@example.net"], 20000, "20 reused connections (1000 messages each)")

with T.case("the queue listing agrees"):
    lst = d.list()
    ids = [m.get("id") for m in lst]
    T.eq(len(ids), total, "queue list --json has every message")
    T.eq(len(set(ids)), len(ids), "QIDs unique")
    T.ok(all(isinstance(i, str) and sluice.QID_RE.match(i) for i in ids), "QIDs are 16 upper-case hex digits")
    first = [m for m in lst if m.get("sender") == "a@example.com"]
    second = [m for m in lst if m.get("sender") == "c@example.com"]
    T.eq((len(first), len(second)), (20000, 20000), "messages per sender")
    T.ok(all([r.get("address") for r in m.get("recipients", [])] == ["b@example.net"] for m in first),
         "first run: one recipient b@example.net each")
    T.ok(all(len(m.get("recipients", [])) == 2 for m in second), "second run: two recipients each")
    for m in first[:3] + second[-3:]:
        data = d.cat(m["id"])
        hdr, rest = sluice.split_received(data or b"")
        T.ok(hdr is not None and len(rest) >= 1024 and rest.endswith(b"\r\n")
             and b"\n" not in rest.replace(b"\r\n", b""),
             "%s: stored message has a Received header and >= 1 KiB of CRLF text" % m["id"],
             repr((data or b"")[:200]))

T.eq(d.stop(), 0, "daemon exits 0 on SIGTERM")
with T.case("restart: count unchanged"):
    d.start()
    T.eq(d.count(), total, "queue count after restart")
    T.eq(d.stop(), 0, "daemon exits 0 on SIGTERM")
sluice.finish()
