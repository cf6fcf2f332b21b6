#!/usr/bin/python3
# timeout: 200
# Description: reload under load. sluice-bench source sends a sustained
# stream (open loop, 400 messages a second for 10 s, 8 connections that
# reconnect every 25 messages) into sluiced, which relays to two
# sluice-bench sinks; meanwhile `sluicectl reload` runs once a second (10
# times), each time moving the route to the other sink and changing a
# delivery limit, and SIGHUP twice more. Every reload succeeds; the source
# sees no connection error, no refusal and nothing lost; every message
# that got a 250 arrives at a sink (the two counts add up to the accepted
# count exactly), and both sinks got mail.
import os
import signal
import threading
import time

import sluice
from sluice import T

import benchlib
import deliverlib as dl

S1 = benchlib.Sink()
S2 = benchlib.Sink()
relay = dl.Relay([{"domain": "r.test", "transport": "smtp:[127.0.0.1]:%d" % S1.port}],
                 start=False)


def config(sink, conns):
    with open(relay.conf, "w") as f:
        f.write("spool: %s\nshards: 2\nhostname: sluice.test\n"
                "listen: [{address: \"127.0.0.1:%d\"}]\n"
                "relay_domains: [r.test]\n"
                "delivery: {log: %s, idle_keep: 1s, connect_timeout: 2s}\n"
                "routes:\n"
                "  - {domain: r.test, transport: \"smtp:[127.0.0.1]:%d\", "
                "max_connections: %d, retry: 1s}\n"
                % (relay.d.spool, relay.port, relay.dlog_path, sink.port, conns))


config(S1, 10)
relay.start()

results = {}


def run_source():
    results["source"] = benchlib.source(
        relay.port, "--duration", "10s", "--rate", "400", "--connections", "8",
        "--per-connection", "25", "--rcpt", "rcpt{n}@r.test", "--size", "2000",
        timeout=60)


with T.case("a sustained stream while the configuration is reloaded"):
    th = threading.Thread(target=run_source)
    th.start()
    outs = []
    t0 = time.monotonic()
    for i in range(12):
        # Bounded: 12 reloads at most, one a second, while the source runs.
        if not th.is_alive() or time.monotonic() - t0 > 20:
            break
        time.sleep(1)
        config(S2 if i % 2 == 0 else S1, 5 + i)
        if i in (5, 9):
            relay.d.proc.send_signal(signal.SIGHUP)
            outs.append((0, "SIGHUP", ""))
        else:
            outs.append(relay.d.ctl("reload"))
    th.join(60)
    # Six at least (the sixth is a SIGHUP): an ASan build on a busy
    # machine fits about seven into the stream.
    T.ok(len(outs) >= 6, "reloads ran during the stream", "%d" % len(outs))
    bad = [o for o in outs if o[0] != 0]
    T.eq(bad, [], "every sluicectl reload succeeded")
    rc, rep, err = results.get("source", (None, None, ""))
    T.eq(rc, 0, "source exits 0: " + err[-500:])
    accepted = benchlib.g(rep, "accepted") or 0
    T.ok(accepted > 2000, "a sustained stream was accepted", "accepted %d" % accepted)
    T.eq((benchlib.g(rep, "tempfail", "total"), benchlib.g(rep, "permfail", "total"),
          benchlib.g(rep, "lost"), benchlib.g(rep, "unfinished")), (0, 0, 0, 0),
         "source: no refusal, nothing lost or unfinished")
    T.eq(benchlib.g(rep, "connections_detail", "errors"), 0, "source: no connection error")
    T.ok(relay.wait_empty(60), "the queue drains")
    _, r1 = S1.stop()
    _, r2 = S2.stop()
    n1, n2 = benchlib.g(r1, "messages") or 0, benchlib.g(r2, "messages") or 0
    T.eq(n1 + n2, accepted, "every accepted message arrived at a sink (%d + %d)" % (n1, n2))
    T.ok(n1 > 0 and n2 > 0, "both sinks got mail", "%d %d" % (n1, n2))
    with open(relay.d.log) as f:
        log = f.read()
    last = "configuration generation %d in force" % (1 + len(outs))
    T.ok(last in log, "the daemon went through every generation", last)

with T.case("stop"):
    T.eq(relay.stop(), 0, "exit 0")

sluice.finish()
