#!/usr/bin/python3
# Description: sluice-bench source open loop (--rate). 500 messages at 500/s
# take about one second (0.9-2.5 s) and are all accepted; against a sink that
# holds the end-of-data reply for 200 ms the transaction p50 is >= 200 ms;
# when the sink cannot keep up, latency counts from the scheduled time, so
# open-loop p50 far exceeds the closed-loop p50 of the same setup; --duration
# bounds a run in time.
import time

import sluice
from sluice import T

from benchlib import Sink, g, source




def run_pair(sink_args, source_args):
    s = Sink(*sink_args)
    t0 = time.monotonic()
    try:
        rc, rep, err = source(s.port, *source_args)
    finally:
        wall = time.monotonic() - t0
        src, srep = s.stop()
    T.eq(rc, 0, "source exits 0")
    T.eq(src, 0, "sink exits 0")
    if rep:
        print("source: elapsed %r accepted %r latency %r" % (rep.get("elapsed_s"), rep.get("accepted"),
                                                           g(rep, "latency_us", "transaction")))
    return s, rep or {}, srep or {}, wall


with T.case("--rate 500 --messages 500"):
    s, rep, srep, wall = run_pair([], ["--rate", "500", "--messages", "500"])
    T.eq((g(rep, "loop"), g(rep, "rate")), ("open", 500), "source reports loop open, rate 500")
    T.eq((g(rep, "sent"), g(rep, "accepted"), g(srep, "messages")), (500, 500, 500),
         "sent, accepted, sink messages")
    el = g(rep, "elapsed_s")
    T.ok(isinstance(el, (int, float)) and 0.9 <= el <= 2.5, "elapsed between 0.9 and 2.5 s", repr(el))
    T.ok(0.9 <= wall <= 5, "wall time of the source run about 1 s", "%.2f s" % wall)
    mps = g(rep, "messages_per_s")
    T.ok(isinstance(mps, (int, float)) and 200 <= mps <= 560, "messages_per_s about 500", repr(mps))
    # Messages arrive spread over the second, not in a burst: the sink's
    # first and last arrivals are about 1 s apart.
    msgs, closes = s.log_lines()
    times = sorted(m["time"] for m in msgs)
    T.ok(len(times) == 500 and 0.9 <= times[-1] - times[0] <= 2.5, "arrivals spread over about 1 s",
         "%.3f s" % (times[-1] - times[0]) if times else "no log")
    # Half of the messages have arrived by about half-time.
    if len(times) == 500:
        mid = times[0] + (times[-1] - times[0]) / 2
        half = sum(1 for t in times if t <= mid)
        T.ok(150 <= half <= 350, "about half the messages arrive in the first half", repr(half))
    T.ok(g(rep, "latency_us", "transaction", "p50") < 100000, "unloaded p50 < 100 ms",
         repr(g(rep, "latency_us", "transaction")))

with T.case("open loop against --delay data:200ms, enough connections"):
    s, rep, srep, wall = run_pair(["--delay", "data:200ms"],
                                  ["--rate", "100", "--messages", "100", "--connections", "50"])
    lat = g(rep, "latency_us", "transaction") or {}
    T.eq((g(rep, "accepted"), lat.get("count")), (100, 100), "100 accepted, 100 latencies")
    T.ok(isinstance(lat.get("p50"), int) and lat["p50"] >= 200000 * 0.99,
         "transaction p50 >= 200 ms (histogram within 1%)", repr(lat))
    T.ok(isinstance(lat.get("max"), int) and lat["max"] < 1000000, "max < 1 s: the sink keeps up", repr(lat))
    el = g(rep, "elapsed_s")
    T.ok(isinstance(el, (int, float)) and 1.1 <= el <= 3, "elapsed about 0.99 s + 0.2 s", repr(el))

with T.case("open loop vs closed loop when the sink falls behind"):
    # 5 sessions, each one message per 200 ms: 25 msg/s, offered 100 msg/s.
    s, rep, srep, wall = run_pair(["--delay", "data:200ms"],
                                  ["--rate", "100", "--messages", "50", "--connections", "5"])
    open_lat = g(rep, "latency_us", "transaction") or {}
    T.eq(g(rep, "accepted"), 50, "open loop: 50 accepted")
    el = g(rep, "elapsed_s")
    T.ok(isinstance(el, (int, float)) and 1.8 <= el <= 4, "open loop: elapsed about 2 s (25 msg/s)", repr(el))
    s, rep2, srep2, wall2 = run_pair(["--delay", "data:200ms"], ["--messages", "50", "--connections", "5"])
    closed_lat = g(rep2, "latency_us", "transaction") or {}
    T.eq(g(rep2, "accepted"), 50, "closed loop: 50 accepted")
    print("open p50 %r max %r; closed p50 %r max %r" % (open_lat.get("p50"), open_lat.get("max"),
                                                        closed_lat.get("p50"), closed_lat.get("max")))
    T.ok(isinstance(open_lat.get("p50"), int) and open_lat["p50"] >= 500000,
         "open loop p50 >= 500 ms: queueing counts from the scheduled time", repr(open_lat))
    T.ok(isinstance(open_lat.get("max"), int) and open_lat["max"] >= 1200000,
         "open loop max >= 1.2 s (the last ones waited about 1.5 s)", repr(open_lat))
    T.ok(isinstance(closed_lat.get("max"), int) and closed_lat["max"] < 1000000,
         "closed loop max < 1 s (no queueing counted)", repr(closed_lat))
    T.ok(isinstance(closed_lat.get("p50"), int) and isinstance(open_lat.get("p50"), int)
         and open_lat["p50"] > closed_lat["p50"], "open loop p50 > closed loop p50")

with T.case("--duration 1s --rate 200"):
    s, rep, srep, wall = run_pair([], ["--rate", "200", "--duration", "1s"])
    T.eq(g(rep, "duration_s"), 1, "source reports duration_s 1")
    T.ok(g(rep, "messages") is None, "no messages setting with --duration", repr(g(rep, "messages")))
    acc = g(rep, "accepted")
    T.ok(isinstance(acc, int) and 180 <= acc <= 202, "about 200 messages in 1 s at 200/s", repr(acc))
    T.eq(g(srep, "messages"), acc, "sink messages == source accepted")
    T.eq(g(rep, "sent"), acc, "sent == accepted")
    T.ok(0.9 <= wall <= 4, "the run lasts about 1 s", "%.2f s" % wall)

sluice.finish()
