#!/usr/bin/python3
# timeout: 200
# Description: per-destination limits. relaylim: the serial.test sink never
# sees more than one connection at a time while a.test's sink (same load,
# same 0.2 s per DATA) sees several at once. 421 backoff: a destination
# (max_connections 10) whose server answers 421 to every connection for 3 s
# gets fewer than 10 connection attempts in those 3 s although 40 messages
# arrive for it meanwhile; everything is delivered exactly once in the end
# and another destination's mail is not held up. max_messages_per_connection
# 5: no connection carries more than 5. max_connections 3: never more than 3
# at once (but more than 1). max_rate 10/s: 30 messages take at
# least 1.5 s to arrive. A run of 451s at RCPT (3 s) likewise: fewer than 15
# RCPT attempts while 40 messages arrive, all delivered in the end.
import collections
import threading
import time

import sluice
from sluice import T

import deliverlib as dl

par = dl.Server("par", data_delay=0.2)        # a.test
ser = dl.Server("ser", data_delay=0.2)        # serial.test
busy = dl.Server("busy", greeting=dl.refuse_connections(seconds=3.0))
calm = dl.Server("calm")                      # calm.test, next to busy
_g0 = {}
grey4 = dl.Server("grey4", rcpt=lambda a, n: "451 4.7.1 Try again later" if time.monotonic() -
                  _g0.setdefault("t0", time.monotonic()) < 3.0 else None)   # run.test
mpc = dl.Server("mpc")                        # mpc.test
mc3 = dl.Server("mc3", data_delay=0.2)        # mc3.test: max_connections 3
rate = dl.Server("rate")                      # rate.test

relay = dl.Relay([
    {"domain": "a.test", "transport": "smtp:[127.0.0.1]:%d" % par.port, "retry": "1s"},
    {"domain": "serial.test", "transport": "smtp:[127.0.0.1]:%d" % ser.port, "preset": "relaylim",
     "retry": "1s"},
    {"domain": "busy.test", "transport": "smtp:[127.0.0.1]:%d" % busy.port, "max_connections": "10",
     "retry": "1s"},
    {"domain": "calm.test", "transport": "smtp:[127.0.0.1]:%d" % calm.port, "retry": "1s"},
    {"domain": "run.test", "transport": "smtp:[127.0.0.1]:%d" % grey4.port, "max_connections": "10",
     "retry": "1s"},
    {"domain": "mc3.test", "transport": "smtp:[127.0.0.1]:%d" % mc3.port, "max_connections": "3",
     "retry": "1s"},
    {"domain": "mpc.test", "transport": "smtp:[127.0.0.1]:%d" % mpc.port,
     "max_messages_per_connection": "5", "retry": "1s"},
    {"domain": "rate.test", "transport": "smtp:[127.0.0.1]:%d" % rate.port, "max_rate": "10/s",
     "retry": "1s"},
])
L = relay.dlog


def items_for(prefix, domain, n):
    out = []
    for i in range(n):
        tag = "%s%02d" % (prefix, i)
        rc = ["u%d@%s" % (i, domain)]
        out.append(("s@client.test", rc, dl.make_message(tag, "s@client.test", rc, size=2000)))
    return out


def once_each(srv, prefix, n, what):
    c = collections.Counter(m.msgid for m in srv.msgs())
    want = {"<%s%02d@client.test>" % (prefix, i) for i in range(n)}
    T.ok(set(c) == want and all(v == 1 for v in c.values()),
         what + ": all %d messages arrived exactly once" % n,
         "missing %r, extra/dup %r" % (sorted(want - set(c))[:5],
                                       {k: v for k, v in c.items() if k not in want or v != 1}))


# --- 421 backoff (paced, in the background) alongside calm.test
busy_items = items_for("busy", "busy.test", 40)
calm_items = items_for("calm", "calm.test", 40)
run_items = items_for("run", "run.test", 40)
mixed = [x for tri in zip(busy_items, calm_items, run_items) for x in tri]
res = {}


def pacer():
    res["qids"], res["errors"] = dl.submit_many(relay.port, mixed, conns=1, pace=0.02)


T0 = time.monotonic()
th = threading.Thread(target=pacer, daemon=True)
th.start()

with T.case("relaylim: one connection at a time; other destinations in parallel"):
    items = [x for pair in zip(items_for("par", "a.test", 30), items_for("ser", "serial.test", 30))
             for x in pair]
    qids, errors = dl.submit_many(relay.port, items, conns=4)
    T.eq(errors, [], "60 messages accepted")
    dl.wait_until(lambda: ser.count() >= 30 and par.count() >= 30, 40, 0.2)
    once_each(par, "par", 30, "a.test")
    once_each(ser, "ser", 30, "serial.test")
    T.eq(ser.max_concurrent(), 1, "serial.test (relaylim): at most 1 concurrent connection")
    T.ok(par.max_concurrent() > 1, "a.test: more than 1 concurrent connection (%d)" % par.max_concurrent())
    sc = ser.conns()
    T.ok(0 < len(sc) <= 5, "serial.test: 30 messages over few connections (reuse)", "%d connections" % len(sc))
    dl.wait_until(lambda: all(c.t_close is not None for c in ser.conns() + par.conns()), 8, 0.1)
    allc = ser.conns() + par.conns()
    T.eq(sum(c.rsets for c in allc), 0, "no RSET between successful transactions")
    T.ok(allc and all(c.quit for c in allc), "idle connections are closed with QUIT (idle_keep 1s)",
         repr([(c.n, c.messages, c.quit, c.t_close is not None) for c in allc if not c.quit][:5]))

th.join(60)
print("relaylim case done at %.1fs" % (time.monotonic() - T0))
with T.case("421 backoff"):
    T.eq(res.get("errors"), [], "120 paced messages accepted")
    conns = busy.conns()
    t0 = conns[0].t_open if conns else None
    n421 = busy.attempts(t0, t0 + 3.0) if t0 else 0
    print("busy: %d connection attempts during the 3 s of 421s, %d in all"
          % (n421, len(conns)))
    T.ok(0 < n421 < 10, "fewer than 10 connection attempts while the server says 421 "
         "(40 messages arrived meanwhile)", "%d attempts, opened at %r s" % (
             n421, [round(c.t_open - t0, 2) for c in conns if c.t_open <= t0 + 3.0]))
    # Once the server accepts again, the destination recovers: with retry 1s
    # a backoff of a few seconds is fine, more is not. The 421s to the
    # connections open at once count as one slow-down (hold 1 s, then 2 s),
    # not one each (which compounded to a 16 s hold).
    left = (t0 + 3.0 + 8.0 - time.monotonic()) if t0 else 8.0
    dl.wait_until(lambda: busy.count() >= 40, max(1.0, left), 0.2)
    last = max((m.t for m in busy.msgs()), default=None)
    T.ok(busy.count() >= 40 and last is not None and last - (t0 + 3.0) <= 8.0,
         "busy.test recovers: all 40 delivered within 8 s after the 421s stop",
         "%d delivered; %s" % (busy.count(), "last %.1fs after" % (last - t0 - 3.0) if last else "none"))
    if busy.count() < 40:
        dl.wait_until(lambda: busy.count() >= 40, 30, 0.2)     # for the checks below
    print("busy connections (open time after the first, refused): %s"
          % [(round(c.t_open - t0, 2), c.refused is not None) for c in busy.conns()][:40])
    once_each(busy, "busy", 40, "busy.test")
    once_each(calm, "calm", 40, "calm.test")
    lt = [x for x in L.lines() if x.get("to", "").endswith("@calm.test")]
    slow = [x for x in lt if x.get("status") != "delivered" or x.get("delay", 99) > 2.0]
    T.ok(len(lt) == 40 and not slow, "calm.test is not held up: each delivered within 2 s, first try",
         repr(slow[:3]))
    ld = [x for x in L.lines() if x.get("to", "").endswith("@busy.test")]
    T.eq(collections.Counter(x.get("status") for x in ld)["delivered"], 40,
         "delivery.log: 40 busy.test messages delivered")

print("421 case done at %.1fs" % (time.monotonic() - T0))
with T.case("a run of 4xx slows the destination"):
    rl = grey4.rcpt_log()
    g0 = _g0.get("t0")
    n4 = len([r for r in rl if g0 is not None and r[0] - g0 < 3.0])
    print("run.test: %d RCPTs during the 3 s of 451s, %d in all" % (n4, len(rl)))
    T.ok(0 < n4 < 15, "fewer than 15 RCPT attempts while every RCPT gets 451 "
         "(40 messages arrived meanwhile)", "%d attempts" % n4)
    dl.wait_until(lambda: grey4.count() >= 40, max(1.0, (g0 or 0) + 3.0 + 20.0 - time.monotonic()), 0.2)
    lastg = max((m.t for m in grey4.msgs()), default=None)
    T.ok(grey4.count() >= 40 and lastg is not None and lastg - (g0 + 3.0) <= 20.0,
         "run.test recovers: all 40 delivered within 20 s after the 451s stop",
         "%d delivered, the last %s" % (grey4.count(), "%.1fs after" % (lastg - g0 - 3.0) if lastg else "-"))
    if grey4.count() < 40:
        dl.wait_until(lambda: grey4.count() >= 40, 30, 0.2)
    once_each(grey4, "run", 40, "run.test")

print("run-of-4xx case done at %.1fs" % (time.monotonic() - T0))
with T.case("max_messages_per_connection 5"):
    qids, errors = dl.submit_many(relay.port, items_for("mpc", "mpc.test", 23), conns=2)
    T.eq(errors, [], "23 messages accepted")
    dl.wait_until(lambda: mpc.count() >= 23, 30, 0.2)
    once_each(mpc, "mpc", 23, "mpc.test")
    per = [c.messages for c in mpc.conns()]
    T.ok(per and max(per) <= 5 and len([p for p in per if p]) >= 5,
         "no connection carries more than 5 messages", repr(per))

print("mpc case done at %.1fs" % (time.monotonic() - T0))
with T.case("max_connections 3"):
    qids, errors = dl.submit_many(relay.port, items_for("mc", "mc3.test", 24), conns=4)
    T.eq(errors, [], "24 messages accepted")
    dl.wait_until(lambda: mc3.count() >= 24, 30, 0.2)
    once_each(mc3, "mc", 24, "mc3.test")
    T.ok(1 < mc3.max_concurrent() <= 3, "between 2 and 3 concurrent connections (%d)" % mc3.max_concurrent())

with T.case("max_rate 10/s"):
    qids, errors = dl.submit_many(relay.port, items_for("rate", "rate.test", 30), conns=3)
    T.eq(errors, [], "30 messages accepted")
    dl.wait_until(lambda: rate.count() >= 30, 30, 0.2)
    once_each(rate, "rate", 30, "rate.test")
    ts = sorted(m.t for m in rate.msgs())
    span = ts[-1] - ts[0] if ts else 0
    T.ok(span >= 1.5, "30 messages at 10/s take at least 1.5 s to arrive", "%.2fs" % span)

T.ok(relay.wait_empty(30), "the queue empties", "count %s" % relay.count())
T.eq(relay.stop(), 0, "sluiced exits 0 on SIGTERM")
sluice.finish()
