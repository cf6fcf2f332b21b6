#!/usr/bin/python3
# timeout: 300
# Description: kill -9 during delivery loses nothing. 500 messages to a slow
# sink (max_connections 2, 40 ms per DATA); sluiced is killed with SIGKILL
# while about a third has arrived, and started again on the same spool
# (and killed and started once more while it delivers the rest):
# every message arrives at least once (duplicates allowed: deliveries in
# flight at the kill), each copy intact, and the queue empties.
# Then under load: sluice-bench source sends at a steady rate (500 a
# second, open loop) to sluiced, which relays to a sluice-bench sink;
# sluiced is killed with SIGKILL six times (and started again at once).
# Delivered recipients are journaled in the segments before the index has
# them, so duplicates come only from the last moments before each kill:
# every duplicate's first copy reached the sink within a second before a
# kill (a mark lost or never written would repeat deliveries from long
# before), and on a machine that keeps up there are at most 2 per kill on
# average (before the journal: 2.8-7.5 at this rate). The window a kill
# catches deliveries in grows when the machine is busy, so the bound
# follows the median time the source waited for a 250 (the same way to
# disk: the committer's write and fdatasync), up to the 16 deliveries the
# relay can have unanswered (8 connections, 2 transactions each); every
# message the source got a 250 for arrives.
# SLUICE_DUP_RATE and SLUICE_DUP_KILLS change the load and the kills.
import collections
import json
import os
import subprocess
import time

import sluice
from sluice import T

import benchlib
import deliverlib as dl

N = 500
slow = dl.Server("slow", data_delay=0.04)
relay = dl.Relay([
    {"domain": "slow.test", "transport": "smtp:[127.0.0.1]:%d" % slow.port, "retry": "1s",
     "max_connections": "2"},
])

items = []
sent = {}
for i in range(N):
    tag = "k%03d" % i
    rc = ["u%d@slow.test" % i]
    data = dl.make_message(tag, "s@client.test", rc, size=1500 + (i % 7) * 700, leading_dots=(i % 4 == 0))
    items.append(("s@client.test", rc, data))
    sent["<%s@client.test>" % tag] = data

with T.case("submit, kill -9 mid-delivery, restart"):
    t0 = time.monotonic()
    qids, errors = dl.submit_many(relay.port, items, conns=4)
    print("submitted %d in %.1fs; %d arrived so far" % (len(qids), time.monotonic() - t0, slow.count()))
    T.eq(errors, [], "%d messages accepted" % N)
    dl.wait_until(lambda: slow.count() >= N // 3, 60, 0.01)
    before = slow.count()
    relay.kill9()
    at_kill = slow.count()
    print("killed with %d arrived (%d when the kill was decided)" % (at_kill, before))
    T.ok(before >= N // 3 and at_kill < N, "killed in the middle of delivery (%d of %d arrived)" % (at_kill, N))
    time.sleep(0.5)
    relay.start()
    # A second kill, while the restarted daemon is delivering what is left.
    dl.wait_until(lambda: slow.count() >= at_kill + (N - at_kill) // 3, 60, 0.01)
    relay.kill9()
    at_kill2 = slow.count()
    print("killed again with %d arrived" % at_kill2)
    T.ok(at_kill2 < N, "the second kill came before the end (%d of %d arrived)" % (at_kill2, N))
    time.sleep(0.3)
    relay.start()
    ok = dl.wait_until(lambda: len({m.msgid for m in slow.msgs()}) >= N, 90, 0.2)
    print("all arrived %.1fs after the restart" % (time.monotonic() - t0))
    T.ok(ok, "every message arrived after the restart",
         "%d distinct of %d" % (len({m.msgid for m in slow.msgs()}), N))

with T.case("every message at least once, intact; the queue empties"):
    T.ok(relay.wait_empty(30), "queue count reaches 0", "count %s" % relay.count())
    c = collections.Counter(m.msgid for m in slow.msgs())
    missing = sorted(set(sent) - set(c))
    T.eq(missing[:10], [], "no message lost")
    T.eq(sorted(set(c) - set(sent))[:5], [], "nothing unknown arrived")
    bad = [(m.msgid, dl.check_tail(m.data, sent.get(m.msgid, b"?"))) for m in slow.msgs()
           if dl.check_tail(m.data, sent.get(m.msgid, b"?"))]
    T.eq(bad[:3], [], "every copy is intact")
    dups = sum(v - 1 for v in c.values())
    print("%d duplicate deliveries (in flight at the kill)" % dups)
    L = relay.dlog
    dlv = {x.get("qid") for x in L.lines() if x.get("status") == "delivered"}
    T.eq(sorted(set(qids.values()) - dlv)[:5], [], "delivery.log has a delivered line for every qid")

T.eq(relay.stop(), 0, "sluiced exits 0 on SIGTERM")

RATE = int(os.environ.get("SLUICE_DUP_RATE", "500"))
KILLS = int(os.environ.get("SLUICE_DUP_KILLS", "6"))
GAP = 2.5      # seconds between kills; the source runs through them all
CONNS = 8      # the route's max_connections
DEPTH = 2      # delivery.pipeline_depth (its default)
IN_FLIGHT = 1.0     # seconds before a kill a duplicate's first copy may be
LOG_LAG = 0.2       # the sink's log time against the test's clock


def dup_bound(rep):
    """Duplicates allowed per kill on average: 2 on a machine that keeps
    up; where more, the deliveries of twice the source's median wait for a
    250 (a margin of two), at most what the relay can have unanswered."""
    p50 = (benchlib.g(rep, "latency_us", "transaction", "p50") or 0) / 1e6
    rate = benchlib.g(rep, "messages_per_s") or RATE
    return min(CONNS * DEPTH, max(2.0, 2 * rate * p50)), p50


with T.case("kill -9 under load: duplicates only from the moments before each kill"):
    sink = benchlib.Sink()
    loaded = dl.Relay([
        {"domain": "example.net", "transport": "smtp:[127.0.0.1]:%d" % sink.port,
         "max_connections": str(CONNS)},
    ], extra="limits: {connections_per_client: 1000}")
    dur = GAP * (KILLS + 1)
    argv = [benchlib.BENCH, "source", "--to", "127.0.0.1:%d" % loaded.port, "--json",
            "--quiet", "--rate", str(RATE), "--duration", "%gs" % dur,
            "--connections", "10", "--max-errors", "1000000", "--timeout", "5s"]
    print("running " + " ".join(argv))
    src = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, env=sluice.clean_env())
    benchlib.procs.append(src)
    t0 = time.monotonic()
    kills = []     # wall clock, as the sink logs its times
    for k in range(KILLS):
        while time.monotonic() < t0 + GAP * (k + 1):
            time.sleep(0.02)
        kills.append(time.time())
        loaded.kill9()
        loaded.start()
    try:
        out, err = src.communicate(timeout=dur + 60)
    except subprocess.TimeoutExpired:
        src.kill()
        out, err = src.communicate()
    rep = json.loads(out) if out.strip() else None
    acc = benchlib.g(rep, "accepted") or 0
    print("source: %s accepted of %s sent, %.0f/s" % (
        acc, benchlib.g(rep, "sent"), benchlib.g(rep, "messages_per_s") or 0))
    T.ok(rep is not None and acc >= RATE * dur * 0.8,
         "the source kept up the load through the kills",
         "report %r, stderr %r" % (rep, err[-500:]))
    T.ok(loaded.wait_empty(60), "the queue empties", "count %s" % loaded.count())
    # The sink writes its log when it stops; the relay's idle connections
    # may still be open: stop the relay first.
    T.eq(loaded.stop(), 0, "sluiced exits 0 on SIGTERM")
    sink.stop()
    msgs, _ = sink.log_lines()
    c = collections.Counter(m.get("bench_id") for m in msgs)
    T.eq(c.get(None, 0), 0, "every message the sink got is the source's")
    dups = sum(v - 1 for v in c.values())
    print("%d duplicate deliveries in %d kills at %d msg/s: %.1f per kill" % (
        dups, KILLS, RATE, dups / KILLS))
    T.ok(len(c) >= acc, "every message the source got a 250 for arrived",
         "%d distinct arrived, %d accepted" % (len(c), acc))
    first = {}
    for m in msgs:
        t = float(m.get("time", 0))
        first[m.get("bench_id")] = min(t, first.get(m.get("bench_id"), t))
    stray = []
    for bid, n in c.items():
        if n < 2:
            continue
        t = first[bid]
        if not any(k - IN_FLIGHT <= t <= k + LOG_LAG for k in kills):
            stray.append((bid, n, ["%+.3f" % (t - k) for k in kills]))
    T.eq(stray[:5], [], "every duplicate was in flight at a kill (its first copy "
         "arrived at most %gs before one)" % IN_FLIGHT)
    bound, p50 = dup_bound(rep)
    print("median wait for a 250: %.1f ms; duplicates allowed per kill: %.1f" % (
        p50 * 1e3, bound))
    T.ok(dups / KILLS <= bound, "at most %.1f duplicates per kill on average" % bound,
         "%d duplicates in %d kills" % (dups, KILLS))

sluice.finish()
