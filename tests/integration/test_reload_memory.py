#!/usr/bin/python3
# timeout: 400
# Description: a daemon reloaded again and again does not grow. 200
# `sluicectl reload`s of a configuration with 400 routes (a changed limit
# each time): sluiced's resident size after the last one is within a few
# MB of what it was after the 20th (a parsed configuration kept per reload
# would add hundreds of MB), and mail keeps flowing: a message sent every
# 20 reloads reaches its sink, and so does one whose first attempts are
# refused and that is retried while the reloads go on (its item holds the
# generation it was routed under). The verified-TLS route's CA file is
# replaced in place by another CA's: a message sent before does not go
# (its server's certificate is not from the CA in the file), and after a
# reload (same file name) it and a new one arrive, over TLS. A reload that
# changes mta_sts.fetch_timeout or mta_sts.enabled is refused naming the
# key; one that changes mta_sts.wait is not. Under ASan
# (SLUICE_BIN of an ASan build) the resident size is not compared (freed
# memory sits in ASan's quarantine); any use of a freed configuration
# is reported there instead.
import json
import os
import re
import shutil
import time

import sluice
from sluice import T

import deliverlib as dl
import tlslib

ASAN = "asan" in os.environ.get("SLUICE_BIN", "")
RELOADS = 200
ROUTES = 400

certs1 = tlslib.Certs(["mx.v.test"])
certs2 = tlslib.Certs(["mx.v.test"])
A = dl.Server("A")
# d.test: the first three attempts of each message are refused.
D = dl.Server("D", data=dl.data_fail_first(3, "451 4.3.0 try again"))
V = dl.Server("V", smtp_kw={"tls_context": certs2.server_ctx()})
cafile = os.path.join(sluice.tmpdir(), "ca.pem")
shutil.copyfile(certs1.ca, cafile)

relay = dl.Relay([], start=False)


def config(i, extra=()):
    lines = ["spool: %s" % relay.d.spool,
             "shards: 2",
             "hostname: sluice.test",
             'listen: [{address: "127.0.0.1:%d"}]' % relay.port,
             "relay_domains: [r.test, d.test, v.test]",
             "delivery: {log: %s, idle_keep: 1s, connect_timeout: 2s}"
             % relay.dlog_path] + list(extra) + [
             "routes:",
             '  - {domain: r.test, transport: "smtp:[127.0.0.1]:%d", '
             "max_connections: %d, retry: 1s}" % (A.port, 1 + i % 5),
             '  - {domain: d.test, transport: "smtp:[127.0.0.1]:%d", '
             "retry: 1s}" % D.port,
             '  - {domain: v.test, transport: "smtp:[127.0.0.1]:%d", '
             "retry: 1s, tls: verify, tls_name: mx.v.test, tls_ca_file: %s}"
             % (V.port, cafile)]
    # Routes no message takes: the bulk of each parsed configuration.
    for n in range(ROUTES):
        lines.append('  - {domain: host%d.example%d.test, transport: '
                     '"smtp:[127.0.0.1]:%d", max_connections: %d}'
                     % (n, i, A.port, 1 + n % 7))
    with open(relay.conf, "w") as f:
        f.write("\n".join(lines) + "\n")


def kept_generations():
    rc, out, err = relay.d.ctl("status", "--json")
    try:
        return json.loads(out)["config_generations_kept"]
    except (ValueError, KeyError, TypeError):
        return None


def rss_kb():
    with open("/proc/%d/status" % relay.d.proc.pid) as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1])
    return -1


def send(tag, rcpt):
    data = dl.make_message(tag, "s@client.test", [rcpt])
    return dl.submit(relay.port, "s@client.test", [rcpt], data)


def arrived(srv, tag):
    return [m for m in srv.msgs() if m.msgid == "<%s@client.test>" % tag]


def reload(i, extra=()):
    config(i, extra)
    return relay.d.ctl("reload")


config(0)
relay.start()

try:
    with T.case("200 reloads: the resident size stays put, mail flows"):
        sent, bad, rss20 = [], [], None
        t0 = time.monotonic()
        for i in range(1, RELOADS + 1):
            # Bounded in count and in time (ASan is slow).
            if time.monotonic() - t0 > 300:
                break
            rc, out, err = reload(i)
            if rc != 0 or not re.search(r"generation \d+", out):
                bad.append((i, rc, out, err))
            if i % 20 == 0:
                tag = "flow%d" % i
                send(tag, "a%d@r.test" % i)
                sent.append(tag)
            if i == 100:
                send("retried", "x@d.test")
            if i == 20:
                # Let the sweep (every 5 s) free what it can first.
                time.sleep(12)
                rss20 = rss_kb()
        T.eq(bad[:3], [], "every reload succeeded")
        T.ok(i == RELOADS, "all %d reloads ran" % RELOADS, "stopped at %d" % i)
        # Replaced generations are freed by a sweep every 5 s: give it
        # a few rounds (bounded), as an operator looking later would.
        # What is kept is counted exactly (status); the resident size
        # only roughly, since freed heap is not always given back.
        t1 = time.monotonic()
        kept = None
        while True:
            time.sleep(2)
            kept = kept_generations()
            if (kept is not None and kept <= 3) or time.monotonic() - t1 > 40:
                break
        rss = rss_kb()
        print("VmRSS after 20 reloads: %s kB, after %d: %s kB; "
              "generations kept: %s" % (rss20, i, rss, kept))
        T.ok(kept is not None and kept <= 3,
             "at most 3 configurations kept after %d reloads" % i,
             "kept %r" % kept)
        if not ASAN:
            T.ok(rss20 is not None and rss - rss20 < 48 * 1024,
                 "resident size grew by less than 48 MB over 180 reloads",
                 "%s kB -> %s kB" % (rss20, rss))
        T.ok(dl.wait_until(lambda: all(arrived(A, t) for t in sent), 30),
             "every message sent between reloads arrived",
             "missing %r" % [t for t in sent if not arrived(A, t)])
        T.ok(dl.wait_until(lambda: arrived(D, "retried"), 60),
             "the message retried across reloads arrived")
        ms = arrived(D, "retried")
        T.ok(ms and ms[-1].attempt == 4, "on its fourth attempt",
             "%r" % [m.attempt for m in ms])

    with T.case("a CA file replaced in place is read again by a reload"):
        send("v1", "v1@v.test")
        time.sleep(4)
        T.eq(arrived(V, "v1"), [], "not delivered: the CA in the file did not "
             "issue the server's certificate")
        shutil.copyfile(certs2.ca, cafile + ".new")
        os.rename(cafile + ".new", cafile)
        rc, out, err = reload(RELOADS + 1)
        T.eq(rc, 0, "reload: " + out + err)
        send("v2", "v2@v.test")
        T.ok(dl.wait_until(lambda: arrived(V, "v1") and arrived(V, "v2"), 30),
             "both messages arrived once the reload read the new CA",
             relay.dlog.dump() if hasattr(relay.dlog, "dump") else "")
        T.eq([m.tls for m in arrived(V, "v1") + arrived(V, "v2")],
             [True, True], "over TLS")
    with T.case("MTA-STS: the fetcher's settings need a restart, wait does not"):
        for key, extra in (("mta_sts.fetch_timeout", "mta_sts: {fetch_timeout: 20s}"),
                           ("mta_sts.enabled", "mta_sts: {enabled: false}")):
            rc, out, err = reload(RELOADS + 2, [extra])
            T.eq(rc, 1, "a reload changing %s is refused" % key)
            T.ok("%s cannot change without a restart" % key in out + err,
                 "the answer names %s" % key, out + err)
        rc, out, err = reload(RELOADS + 2, ["mta_sts: {wait: 1s}"])
        T.eq(rc, 0, "a reload changing mta_sts.wait succeeds: " + out + err)
        send("after", "after@r.test")
        T.ok(dl.wait_until(lambda: arrived(A, "after"), 20),
             "mail still flows after the refused reloads")
    rc = relay.stop()
    T.eq(rc, 0, "sluiced stops cleanly")
finally:
    if relay.d.running():
        relay.d.print_log_tail(40)
        relay.stop()

sluice.finish()
