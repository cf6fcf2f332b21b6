#!/usr/bin/python3
# timeout: 240
# Description: with delivery.spread: true a busy next hop is delivered by
# every shard. With shards: 2, 2,000 messages submitted over 16
# connections to one next hop (max_connections 20) all arrive exactly once,
# and each shard's end-of-run line counts recipients it delivered itself,
# adding up to 2,000; `sluicectl status --json` shows that destination as
# one row (the shards' lanes added up, delivered 2,000, a connection limit
# within max_connections). A serial route (relaylim) still never has two
# sessions open at once and is delivered by one shard. A route with
# max_connections 4 (two lanes of 2) never has more than 4 sessions open
# at once at a sink that holds each message 50 ms, though both shards
# deliver to it. A next hop that breaks the protocol, with 40 messages for
# it accepted on both shards, gets at most 5 connections per lane in 12 s
# (each lane backs off on its own). Mail deferred in both lanes (a CA file
# that did not issue the next hop's certificate) is delivered once a
# reload reads the right one, though new mail reaches one lane only. By
# default (delivery.spread: false) the same hot destination is delivered
# by one shard only; a reload that would turn it on is refused (the key
# needs a restart) and `sluiced -n` refuses `spread: maybe` with the file
# and line.
import collections
import json
import os
import re
import shutil
import subprocess
import time

import sluice
from sluice import T

import deliverlib as dl
import tlslib

N = 2000
CONNS = 16
SHARD_LINE = re.compile(r"deliver: shard (\d+): (\d+) recipient\(s\) delivered")

hot = dl.RawServer("hot")                          # hot.test: max_connections 20
ser = dl.Server("ser", data_delay=0.01)            # serial.test: relaylim
four = dl.Server("four", data_delay=0.05)          # four.test: max_connections 4
broken = dl.RawServer("broken", after_greeting=b"garbage one\r\ngarbage two\r\n")

relay = dl.Relay([
    {"domain": "hot.test", "transport": "smtp:[127.0.0.1]:%d" % hot.port, "retry": "1s"},
    {"domain": "serial.test", "transport": "smtp:[127.0.0.1]:%d" % ser.port,
     "preset": "relaylim", "retry": "1s"},
    {"domain": "four.test", "transport": "smtp:[127.0.0.1]:%d" % four.port,
     "max_connections": "4", "retry": "1s"},
    {"domain": "broken.test", "transport": "smtp:[127.0.0.1]:%d" % broken.port, "retry": "1s"},
], delivery={"spread": "true"}, shards=2)


def items(prefix, domain, n, size=600):
    out = []
    for i in range(n):
        tag = "%s%05d" % (prefix, i)
        rc = ["u%d@%s" % (i, domain)]
        out.append(("s@client.test", rc, dl.make_message(tag, "s@client.test", rc, size=size)))
    return out


def once_each(got_ids, prefix, n, what):
    c = collections.Counter(got_ids)
    want = {"<%s%05d@client.test>" % (prefix, i) for i in range(n)}
    T.ok(set(c) == want and all(v == 1 for v in c.values()),
         what + ": all %d messages arrived exactly once" % n,
         "missing %d (%r), extra/dup %r" % (len(want - set(c)), sorted(want - set(c))[:5],
                                           {k: v for k, v in c.items()
                                            if k not in want or v != 1}))


def shard_lines(daemon, since):
    """{shard: recipients delivered} from the lines sluiced logs as it ends."""
    with open(daemon.log, "rb") as f:
        f.seek(since)
        text = f.read().decode("utf-8", "replace")
    return {int(m.group(1)): int(m.group(2)) for m in SHARD_LINE.finditer(text)}


hot_items = items("hot", "hot.test", N)
ser_items = items("ser", "serial.test", 150)
four_items = items("four", "four.test", 300)
mixed = hot_items + ser_items + four_items

with T.case("2,000 messages to one next hop, over 16 connections"):
    t_broken = time.monotonic()
    qids, errors = dl.submit_many(relay.port, items("brk", "broken.test", 40), conns=CONNS)
    T.eq(errors, [], "40 messages for a next hop that breaks the protocol accepted")
    qids, errors = dl.submit_many(relay.port, mixed, conns=CONNS)
    T.eq(errors, [], "every message was accepted")
    total = len(mixed)
    T.ok(dl.wait_until(lambda: hot.count() >= N and ser.count() >= 150 and
                       four.count() >= 300, 120, 0.2),
         "everything delivered within 120 s",
         "hot %d/%d, serial %d/150, four %d/300; %s" % (
             hot.count(), N, ser.count(), four.count(), relay.dlog.dump(5)))
    T.ok(dl.wait_until(lambda: relay.count() == 40, 30, 0.2),
         "only broken.test's 40 messages stay queued", "count %d" % relay.count())
    once_each([m[1] for m in hot.msgs()], "hot", N, "hot.test")
    once_each([m.msgid for m in ser.msgs()], "ser", 150, "serial.test")
    once_each([m.msgid for m in four.msgs()], "four", 300, "four.test")
    hot_open = dl.max_open([(c.t_open, c.t_close) for c in hot.conns()])
    T.ok(hot_open <= 20, "hot.test: at most max_connections (20) sessions at once",
         "%d" % hot_open)

with T.case("the operator sees one row per destination"):
    rc, out, err = relay.d.ctl("status", "--json")
    T.eq(rc, 0, "sluicectl status --json")
    st = json.loads(out) if rc == 0 else {}
    key = "[127.0.0.1]:%d" % hot.port
    rows = [r for r in st.get("destinations", []) if r.get("destination") == key]
    T.eq(len(rows), 1, "one row for %s" % key)
    if rows:
        T.eq(rows[0]["delivered"], N, "its lanes' deliveries add up")
        T.eq(rows[0]["max_connections"], 20, "its route's max_connections")
        T.ok(1 <= rows[0]["connection_limit"] <= 20,
             "the lanes' limits add up within max_connections", json.dumps(rows[0]))
    T.eq(st.get("destinations_all", {}).get("count"), 4,
         "four destinations, each counted once")

with T.case("serial and limited routes keep their limits"):
    T.eq(ser.max_concurrent(), 1, "serial.test: never two sessions at once")
    four_open = four.max_concurrent()
    T.ok(four_open <= 4, "four.test: never more than 4 sessions at once", "%d" % four_open)
    T.ok(four_open >= 3, "four.test: both lanes' sessions open together (more than "
         "one lane's 2)", "%d" % four_open)

with T.case("a broken next hop backs off in each lane"):
    time.sleep(max(0.0, t_broken + 12 - time.monotonic()))
    opens = [c.t_open - t_broken for c in broken.conns() if c.t_open <= t_broken + 12]
    T.ok(1 <= len(opens) <= 10, "broken.test: at most 5 connections a lane (10) in 12 s, "
         "though 40 messages wait (retry 1s)", "%r" % [round(x, 2) for x in opens])
    T.eq(broken.count(), 0, "nothing reached it")

with T.case("both shards delivered the hot destination"):
    T.eq(relay.stop(), 0, "sluiced stops cleanly")
    per = shard_lines(relay.d, 0)
    print("delivered per shard: %r" % per)
    T.eq(sorted(per), [0, 1], "each shard logs what it delivered")
    T.eq(sum(per.values()), total, "the shards' counts add up to every message")
    T.ok(all(v >= N // 20 for v in per.values()),
         "each shard delivered a real part (at least 5%% of %d)" % N, repr(per))

with T.case("after a reload, every lane's deferred mail takes the new CA file"):
    certs1 = tlslib.Certs(["mx.v.test"])
    certs2 = tlslib.Certs(["mx.v.test"])
    vsrv = dl.Server("V", smtp_kw={"tls_context": certs2.server_ctx()})
    cafile = os.path.join(sluice.tmpdir(), "ca.pem")
    shutil.copyfile(certs1.ca, cafile)
    vrelay = dl.Relay([{"domain": "v.test", "transport": "smtp:[127.0.0.1]:%d" % vsrv.port,
                        "retry": "1s", "tls": "verify", "tls_name": "mx.v.test",
                        "tls_ca_file": cafile}], delivery={"spread": "true"}, shards=2)
    n_v = 20
    qids, errors = dl.submit_many(vrelay.port, items("vca", "v.test", n_v), conns=CONNS)
    T.eq(errors, [], "every message was accepted")
    T.ok(dl.wait_until(lambda: len({ln.get("qid") for ln in vrelay.dlog.lines()
                                    if ln.get("status") == "deferred"}) >= n_v, 20, 0.2),
         "each was deferred: the CA file did not issue the server's certificate",
         vrelay.dlog.dump(5))
    T.eq(vsrv.count(), 0, "nothing delivered yet")
    shutil.copyfile(certs2.ca, cafile + ".new")
    os.rename(cafile + ".new", cafile)
    rc, out, err = vrelay.d.ctl("reload")
    T.eq(rc, 0, "reload: " + out + err)
    # One message of the new generation reaches one lane only: the other
    # lane's mail must take the new contexts by itself.
    qids, errors = dl.submit_many(vrelay.port, items("vnew", "v.test", 1), conns=1)
    T.ok(dl.wait_until(lambda: vsrv.count() >= n_v + 1, 30, 0.2),
         "all %d deferred messages and the new one arrived" % n_v,
         "%d arrived; %s" % (vsrv.count(), vrelay.dlog.dump(4)))
    once_each([m.msgid for m in vsrv.msgs() if m.msgid.startswith("<vca")], "vca", n_v,
              "v.test")
    T.eq(vrelay.stop(), 0, "sluiced stops cleanly")
    per = shard_lines(vrelay.d, 0)
    print("delivered per shard: %r" % per)
    T.ok(len(per) == 2 and all(v > 0 for v in per.values()),
         "both shards' lanes had mail, and delivered it", repr(per))

with T.case("delivery.spread: false (the default): one shard delivers it"):
    off_sink = dl.RawServer("off")
    off = dl.Relay([{"domain": "hot.test", "transport": "smtp:[127.0.0.1]:%d" % off_sink.port,
                     "retry": "1s"}], shards=2)
    n_off = 400
    off_items = items("off", "hot.test", n_off)
    qids, errors = dl.submit_many(off.port, off_items, conns=CONNS)
    T.eq(errors, [], "every message was accepted")
    T.ok(dl.wait_until(lambda: off_sink.count() >= n_off, 60, 0.2),
         "everything delivered", "%d/%d" % (off_sink.count(), n_off))
    once_each([m[1] for m in off_sink.msgs()], "off", n_off, "spread off")
    with open(off.conf) as f:
        text = f.read()
    with open(off.conf, "w") as f:
        f.write(text.replace('connect_timeout: "2s"', 'connect_timeout: "2s", spread: "true"'))
    rc, out, err = off.d.ctl("reload")
    T.ok(rc != 0 and "delivery.spread cannot change without a restart" in out + err,
         "a reload that turns spread on is refused, naming the key", "rc %d %s" % (rc, out + err))
    with open(off.conf, "w") as f:
        f.write(text.replace('connect_timeout: "2s"', 'connect_timeout: "2s", spread: "maybe"'))
    p = subprocess.run([sluice.SLUICED, "-c", off.conf, "-n"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30, env=sluice.clean_env())
    err = p.stderr.decode("utf-8", "replace")
    line = next(i + 1 for i, ln in enumerate(text.splitlines()) if "connect_timeout" in ln)
    T.ok(p.returncode != 0 and ("%s:%d" % (off.conf, line)) in err and "spread" in err,
         "sluiced -n refuses spread: maybe with the file and line", err)
    T.eq(off.stop(), 0, "sluiced stops cleanly")
    per = shard_lines(off.d, 0)
    print("delivered per shard: %r" % per)
    T.eq(sorted(per.values()), [n_off], "one shard delivered all %d" % n_off)

sluice.finish()
