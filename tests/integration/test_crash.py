#!/usr/bin/python3
# timeout: 300
# Description: kill -9 under load. 8 client threads send random 1-30 KiB
# messages (some with leading dots) and record the sha256 of each body and the
# QID of each 250; the daemon is killed with SIGKILL at 3 moments while they
# run and restarted. Afterwards every QID that got a 250 must be listed and
# `queue cat` minus its Received header must hash to what was sent; every
# other listed message must be intact (one of the bodies sent, whole). The
# index follows the segments by milliseconds, so a kill under load leaves
# acknowledged messages only in the segments: the restarts must have
# replayed some from the log.
import random
import re
import threading
import time

import sluice
from sluice import T

N_THREADS = 8
MAX_PER_THREAD = 250
DEADLINE = time.monotonic() + 70

d = sluice.Daemon()
lock = threading.Lock()
sent = {}          # sha256 -> record
records = []
stop = threading.Event()
phase = [0]


def worker(tid):
    rnd = random.Random(1000 + tid)
    c = None
    i = 0
    while not stop.is_set() and i < MAX_PER_THREAD and time.monotonic() < DEADLINE:
        if c is None:
            try:
                c = sluice.connect(d.port, helo="t%d.example" % tid, timeout=10)
            except Exception:
                c = None
                time.sleep(0.1)
                continue
        body = sluice.make_body(rnd, rnd.randrange(1024, 30 * 1024 + 1),
                                leading_dots=rnd.random() < 0.4, tag="t%d-%d" % (tid, i))
        rec = {"sha": sluice.sha256(body), "size": len(body), "qid": None, "tid": tid,
               "i": i, "phase": phase[0], "result": None}
        with lock:
            sent[rec["sha"]] = rec
            records.append(rec)
        i += 1
        try:
            rs, r = sluice.send_message(c, body)
            q = sluice.qid_of(r)
            rec["result"] = str(r)
            if q:
                rec["qid"] = q
                rec["phase"] = phase[0]
            elif r.code == 421:
                c.close()
                c = None
        except Exception as e:
            rec["result"] = repr(e)[:100]
            c.close()
            c = None
    if c is not None:
        c.close()


def acked():
    with lock:
        return sum(1 for r in records if r["qid"])


threads = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(N_THREADS)]
for t in threads:
    t.start()

rnd = random.Random(7)
with T.case("kill -9 three times under load"):
    for k in range(3):
        base = acked()
        target = base + rnd.randrange(100, 300)
        sluice.wait_until(lambda: acked() >= target, 20, 0.01)
        time.sleep(rnd.uniform(0.0, 0.05))
        got = acked() - base
        T.ok(got > 0, "phase %d: messages were acknowledged before the kill" % k, "none")
        T.ok(sum(t.is_alive() for t in threads) >= 4, "kill #%d: clients are still sending" % (k + 1))
        d.kill9()
        print("kill -9 #%d after %d acknowledged in this phase (%d in total)" % (k + 1, got, acked()))
        time.sleep(rnd.uniform(0.05, 0.5))
        phase[0] = k + 1
        if k < 2:
            t0 = time.monotonic()
            d.start()
            print("restarted in %.2fs" % (time.monotonic() - t0))
    stop.set()
    for t in threads:
        t.join(30)
    T.ok(not any(t.is_alive() for t in threads), "client threads finished")
    # Killed, not stopped: a reader is told the newest messages may be
    # missing from the index until the next start replays them.
    rc, out, err = d.ctl("queue", "count")
    T.ok(rc == 0 and "did not stop cleanly" in err,
         "sluicectl after kill -9 warns that the index may lag", "%d %r" % (rc, err))
    t0 = time.monotonic()
    d.start()
    print("final restart in %.2fs" % (time.monotonic() - t0))

with T.case("every acknowledged message is there and intact"):
    lst = d.list()
    ids = [m.get("id") for m in lst]
    acks = [r for r in records if r["qid"]]
    print("%d messages attempted, %d acknowledged, %d listed" % (len(records), len(acks), len(ids)))
    T.ok(len(acks) >= 100, "at least 100 messages acknowledged", "%d" % len(acks))
    T.eq(len(set(ids)), len(ids), "listed QIDs are unique")
    aq = [r["qid"] for r in acks]
    T.eq(len(set(aq)), len(aq), "no QID was given twice (also across restarts)")
    for k in range(3):
        before = [r["qid"] for r in acks if r["phase"] <= k]
        after = [r["qid"] for r in acks if r["phase"] > k]
        if before and after:
            T.ok(max(before) < min(after), "QIDs after restart %d are greater than before" % (k + 1),
                 "%s >= %s" % (max(before), min(after)))
    listed = set(ids)
    missing = [q for q in aq if q not in listed]
    T.eq(missing, [], "every QID that got 250 is listed (%d)" % len(aq))
    T.eq(d.count(), len(ids), "queue count equals the listing")
    by_qid = {r["qid"]: r for r in acks}
    bad = []
    unknown = []
    for q in ids:
        data = d.cat(q)
        if data is None:
            bad.append((q, "queue cat failed"))
            continue
        hdr, rest = sluice.split_received(data)
        m = sluice.RECEIVED_RE.match(hdr.decode("latin-1")) if hdr else None
        if not m or m.group("qid") != q:
            bad.append((q, "bad Received header %r" % data[:150]))
            continue
        h = sluice.sha256(rest)
        if q in by_qid:
            if h != by_qid[q]["sha"]:
                bad.append((q, "content differs from what was sent (%d vs %d bytes)"
                            % (len(rest), by_qid[q]["size"])))
        elif h not in sent:
            unknown.append((q, len(rest)))
        elif sent[h]["qid"]:
            bad.append((q, "duplicate of acknowledged %s" % sent[h]["qid"]))
    T.eq(bad, [], "every listed message is intact (%d checked)" % len(ids))
    T.eq(unknown, [], "no listed message is partial or unknown")
    extra = len(ids) - len(acks) + len(missing)
    print("%d listed messages had no 250 (in flight at a kill)" % extra)
    with open(d.log, "rb") as f:
        replayed = [int(n) for n in re.findall(
            rb"queue: \d+ message\(s\) \((\d+) replayed from the log\)", f.read())]
    print("replayed from the log at each start: %s" % replayed)
    T.ok(sum(replayed) > 0, "the restarts replayed acknowledged messages from the log",
         "%s" % replayed)

T.eq(d.stop(), 0, "daemon exits 0 on SIGTERM")
sluice.finish()
