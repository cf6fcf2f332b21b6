#!/usr/bin/python3
# Description: sluicectl queue commands against a running sluiced. Mail for
# a next hop that is down is deferred (retry 1h); `hold` shows it held in
# `queue list`; `release` puts it back (twice: an error); `delete` removes it
# without a DSN; `bounce` returns it to the sender as a DSN naming the
# recipient; once the next hop is up, `flush` delivers what is left at once
# instead of in an hour. Unknown ids and a stopped daemon give clear errors.
# timeout: 120
import email
import subprocess

import sluice
from sluice import T

import deliverlib as dl

cap = dl.Server("capture")                       # sender.test: the DSNs
down_port = dl.free_port()                       # nothing listens here yet
relay = dl.Relay([
    {"domain": "sender.test", "transport": "smtp:[127.0.0.1]:%d" % cap.port, "retry": "1s"},
    {"domain": "later.test", "transport": "smtp:[127.0.0.1]:%d" % down_port, "retry": "1h"},
])
L = relay.dlog


def ctl(*args):
    return subprocess.run([sluice.SLUICECTL, "-c", relay.conf, "queue"] + list(args),
                          capture_output=True, text=True, timeout=30,
                          env=sluice.clean_env())


def state(qid):
    for m in relay.d.list():
        if m.get("queue_id", m.get("qid")) == qid or qid in str(m):
            return m.get("state")
    return None


qids = []
for i in range(4):
    data = dl.make_message("ctl%d" % i, "alice@sender.test", ["u%d@later.test" % i],
                           subject="Control %d" % i)
    qids.append(dl.submit(relay.port, "alice@sender.test", ["u%d@later.test" % i], data))
q_hold, q_del, q_bounce, q_flush = qids

with T.case("the next hop is down: every message deferred once, then waits an hour"):
    ok = L.wait_for(lambda x: sum(1 for y in L.lines() if y.get("status") == "deferred") >= 4, 20)
    T.ok(ok, "four deferred lines", L.dump())
    T.eq(relay.count(), 4, "four messages queued")

with T.case("hold"):
    r = ctl("hold", q_hold)
    T.eq(r.returncode, 0, "hold exits 0: " + r.stderr.strip())
    T.ok(q_hold in r.stdout, "hold names the message", r.stdout)
    out = subprocess.run([sluice.SLUICECTL, "-c", relay.conf, "queue", "list"],
                         capture_output=True, text=True, timeout=30, env=sluice.clean_env()).stdout
    line = [ln for ln in out.splitlines() if ln.startswith(q_hold)]
    T.ok(line and " hold " in line[0], "queue list shows it on hold", out)

with T.case("release"):
    r = ctl("release", q_hold)
    T.eq(r.returncode, 0, "release exits 0: " + r.stderr.strip())
    r = ctl("release", q_hold)
    T.ok(r.returncode != 0 and "not on hold" in r.stderr, "releasing twice is an error", r.stderr)

with T.case("delete"):
    r = ctl("delete", q_del)
    T.eq(r.returncode, 0, "delete exits 0: " + r.stderr.strip())
    T.eq(relay.count(), 3, "three messages left")
    r = ctl("delete", q_del)
    T.ok(r.returncode == 1 and "no such queue id" in r.stderr, "deleting it again: no such queue id",
         r.stderr)

with T.case("bounce: a DSN to the sender"):
    r = ctl("bounce", q_bounce)
    T.eq(r.returncode, 0, "bounce exits 0: " + r.stderr.strip())
    got = dl.wait_until(lambda: cap.count() >= 1, 15)
    T.ok(got, "a DSN arrived at sender.test")
    if got:
        m = cap.msgs()[0]
        T.eq(m.mail_from, "", "from the null sender")
        T.eq(m.rcpts, ["alice@sender.test"], "to the original sender")
        msg = email.message_from_bytes(m.data)
        T.eq(msg.get_content_type(), "multipart/report", "multipart/report")
        T.ok(b"u2@later.test" in m.data, "names the bounced recipient")
        T.ok(b"Control 2" in m.data, "carries the original Subject")
    T.ok(dl.wait_until(lambda: relay.count() == 2, 10), "two messages left",
         "count %d" % relay.count())

with T.case("flush: delivered now once the next hop is up"):
    srv = dl.Server("late", port=down_port)
    r = ctl("flush")
    T.eq(r.returncode, 0, "flush exits 0: " + r.stderr.strip())
    got = dl.wait_until(lambda: srv.count() >= 2, 20)
    T.ok(got, "both remaining messages delivered within seconds",
         "%d arrived" % srv.count())
    T.ok(relay.wait_empty(10), "the queue is empty")
    T.eq(sorted(r for m in srv.msgs() for r in m.rcpts), ["u0@later.test", "u3@later.test"],
         "the held-then-released and the flushed message, not the deleted one")

with T.case("errors"):
    r = ctl("hold", "0123456789ABCDEF")
    T.ok(r.returncode == 1 and "no such queue id" in r.stderr, "unknown id", r.stderr)
    r = ctl("hold", "nonsense")
    T.ok(r.returncode != 0, "a malformed id is refused", r.stderr)
    relay.stop()
    r = ctl("flush")
    T.ok(r.returncode == 1 and "is it running" in r.stderr, "no daemon: a clear error", r.stderr)

sluice.finish()
