#!/usr/bin/python3
# timeout: 240
# Description: the Prometheus endpoint (metrics.listen). Mail to a next
# hop that takes it (20 messages, 2 recipients each), one that greylists
# for an hour (3 messages stay deferred) and one that refuses (1 bounce,
# its DSN to the sender's server): /metrics then says what the servers
# and the delivery log say (sluice_recipients_total by outcome, accepted
# messages and recipients, 2xx/5xx replies to our client, the queue's
# deferred gauge, the greylisting hop's queued series, the histograms'
# counts), and agrees with `sluicectl status --json`. The text passes
# `promtool check metrics` and a strict reader. While 400 messages pour
# in over 8 connections, every scrape is answered within 2 s, both shards
# answer, and counters never go back. Bad requests get clean answers and
# the endpoint goes on serving: 404 for another path, 405 with Allow for
# POST, 400 for garbage and a missing Host, 505 for HTTP/2.0, 414 for a
# long target, 431 for a huge head, 408 for a head not sent in time; HEAD
# gives the headers alone. With more than 20 destinations only the top 20
# get their own series, the rest is summed as destination="_other".
# Metrics are off by default: nothing listens.
import threading
import time

import sluice
from sluice import T

import deliverlib as dl
import metricslib as ml

GREY = "451 4.7.1 Greylisted, come back in an hour"
ok = dl.Server("ok")
grey = dl.Server("grey", rcpt=GREY)
bad = dl.Server("bad", rcpt="550 5.1.1 no such user here")
cap = dl.Server("cap")
MPORT = sluice.free_port()

relay = dl.Relay([
    {"domain": "ok.test", "transport": "smtp:[127.0.0.1]:%d" % ok.port},
    {"domain": "grey.test", "transport": "smtp:[127.0.0.1]:%d" % grey.port, "retry": "1h"},
    {"domain": "bounce.test", "transport": "smtp:[127.0.0.1]:%d" % bad.port},
    {"domain": "sender.test", "transport": "smtp:[127.0.0.1]:%d" % cap.port},
    # Many destinations, one server: over the series limit.
    {"domain": ".many.test", "transport": "smtp", "retry": "1h"},
], extra='metrics: {listen: "127.0.0.1:%d"}' % MPORT)
L = relay.dlog
SENDER = "alice@sender.test"
GKEY = "[127.0.0.1]:%d" % grey.port
S = ml.sample

items = [(SENDER, ["bob%d@ok.test" % i, "bea%d@ok.test" % i],
          dl.make_message("ok%d" % i, SENDER, ["bob%d@ok.test" % i, "bea%d@ok.test" % i]))
         for i in range(20)]
items += [(SENDER, ["carol%d@grey.test" % i], dl.make_message("g%d" % i, SENDER, ["carol%d@grey.test" % i]))
          for i in range(3)]
items += [(SENDER, ["dave@bounce.test"], dl.make_message("b0", SENDER, ["dave@bounce.test"]))]
_, errors = dl.submit_many(relay.port, items, conns=2)
T.eq(errors, [], "every message accepted")


def settled():
    st = [x.get("status") for x in L.lines()]
    return (st.count("delivered") >= 41 and st.count("bounced") >= 1 and
            st.count("deferred") >= 3 and cap.count() >= 1)


T.ok(dl.wait_until(settled, 30), "every attempt is in the delivery log", L.dump(40))
time.sleep(0.5)

with T.case("the exposition passes promtool and a strict reader"):
    text, smp = ml.get_metrics(MPORT)
    pt = ml.promtool(text)
    if pt is None:
        print("promtool is not installed (Debian package prometheus): "
              "only the strict reader checked the text")
    else:
        T.ok(pt[0] == 0, "promtool check metrics: no problem", pt[1] + "\n" + text[:2000])
    T.ok(len(smp) > 50, "samples read", str(len(smp)))

with T.case("/metrics agrees with the servers and the delivery log"):
    lines = L.lines()
    cnt = {s: sum(1 for x in lines if x.get("status") == s)
           for s in ("delivered", "deferred", "bounced", "expired", "discarded")}
    for s, n in cnt.items():
        T.eq(S(smp, "sluice_recipients_total", outcome=s), float(n),
             "recipients_total{%s} = delivery log lines" % s)
    T.eq(S(smp, "sluice_recipients_total", outcome="delivered"),
         float(sum(len(m.delivered) for m in ok.msgs()) + cap.count()),
         "delivered = recipients the servers took (40 + 1 DSN)")
    T.eq(S(smp, "sluice_messages_accepted_total"), 24.0, "24 messages accepted")
    T.eq(S(smp, "sluice_recipients_accepted_total"), 44.0, "44 recipients accepted")
    T.eq(S(smp, "sluice_smtp_replies_total", **{"class": "2xx", "enhanced": "2.0"}) >= 24,
         True, "a 250 2.0.0 per message (and 221s)")
    T.eq(S(smp, "sluice_smtp_replies_total", **{"class": "2xx", "enhanced": "2.1"}), 24.0 + 44.0,
         "250 2.1.0 per MAIL and 2.1.5 per RCPT")
    T.eq(S(smp, "sluice_smtp_replies_total", **{"class": "5xx", "enhanced": "none"}), 0.0,
         "no 5xx to our client")
    T.eq(S(smp, "sluice_delivery_replies_total", **{"class": "5xx"}), 1.0, "one 5xx from a next hop")
    T.eq(S(smp, "sluice_delivery_replies_total", **{"class": "4xx"}), 3.0, "three 4xx")
    T.eq(S(smp, "sluice_queue_messages", state="deferred"), 3.0, "3 messages deferred")
    T.eq(S(smp, "sluice_queue_messages", state="held"), 0.0, "none held")
    T.eq(S(smp, "sluice_queue_size_messages"), float(relay.d.count()), "queue size = queue count")
    T.eq(S(smp, "sluice_destination_queued", destination=GKEY), 3.0,
         "the greylisting hop's queued series: 3")
    T.eq(S(smp, "sluice_accept_latency_seconds_count"), 24.0, "accept latency: 24 observations")
    T.eq(S(smp, "sluice_delivery_delay_seconds_count"), float(cnt["delivered"]),
         "delivery delay: one per delivered recipient")
    T.ok(S(smp, "sluice_commit_batch_records_count") >= 1 and
         S(smp, "sluice_commit_batch_records_sum") >= 24,
         "commit batches: at least the 24 records", repr(S(smp, "sluice_commit_batch_records_sum")))
    T.eq(S(smp, "sluice_stats_shards_answered"), 2.0, "both shards answered")
    T.eq(S(smp, "sluice_shards"), 2.0, "2 shards")

with T.case("/metrics agrees with sluicectl status"):
    doc = ml.status(relay.d)
    text, smp = ml.get_metrics(MPORT)
    t = doc["totals"]
    for k in ("delivered", "deferred", "bounced"):
        T.eq(S(smp, "sluice_recipients_total", outcome=k), float(t[k]), "%s: the same" % k)
    T.eq(S(smp, "sluice_messages_accepted_total"), float(t["accepted"]), "accepted: the same")
    T.eq(S(smp, "sluice_queue_messages", state="deferred"), float(doc["queue"]["deferred"]),
         "deferred messages: the same")
    T.eq(doc.get("metrics"), "127.0.0.1:%d" % MPORT, "status names the endpoint")

with T.case("bad requests get clean answers"):
    cases = [
        ("another path", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 404),
        ("POST", b"POST /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", 405),
        ("garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),
        ("no Host", b"GET /metrics HTTP/1.1\r\n\r\n", 400),
        ("HTTP/2.0", b"GET /metrics HTTP/2.0\r\nHost: a\r\n\r\n", 505),
        ("long target", b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
        ("huge head", b"GET /metrics HTTP/1.1\r\nHost: a\r\nX: " + b"v" * 20000 + b"\r\n\r\n", 431),
    ]
    for what, req, want in cases:
        st, hdrs, body = ml.http(MPORT, req)
        T.eq(st, want, "%s: %d" % (what, want))
        T.eq(hdrs.get("connection"), "close", "%s: Connection: close" % what)
        T.eq(int(hdrs.get("content-length", -1)), len(body), "%s: its body as long as said" % what)
        if want == 405:
            T.eq(hdrs.get("allow"), "GET, HEAD", "405 names the methods allowed")
    t0 = time.monotonic()
    st, hdrs, body = ml.http(MPORT, b"GET /metrics HTTP/1.1\r\nHost: a\r\n", timeout=10)
    T.eq(st, 408, "a head not finished in time: 408")
    T.ok(4 <= time.monotonic() - t0 <= 8, "after about 5 s", "%.1fs" % (time.monotonic() - t0))
    st, hdrs, body = ml.http(MPORT, b"HEAD /metrics HTTP/1.1\r\nHost: a\r\n\r\n")
    T.eq((st, body), (200, b""), "HEAD: 200 and no body")
    T.ok(int(hdrs.get("content-length", 0)) > 1000, "HEAD: the length of the body", repr(hdrs))
    T.ok(hdrs.get("content-type", "").startswith("text/plain; version=0.0.4"),
         "the exposition's content type", repr(hdrs))
    text, smp = ml.get_metrics(MPORT)
    T.ok(len(smp) > 50, "still serving after all that")

with T.case("served while the shards are busy"):
    load = [(SENDER, ["bob%d@ok.test" % (i % 50)], dl.make_message("load%d" % i, SENDER,
                                                                   ["bob%d@ok.test" % (i % 50)]))
            for i in range(400)]
    result = {}

    def pour():
        result["r"] = dl.submit_many(relay.port, load, conns=8)

    th = threading.Thread(target=pour)
    t_start = time.monotonic()
    th.start()
    slow, answered, back, scrapes = [], [], [], 0
    prev = None
    while th.is_alive() and time.monotonic() - t_start < 120:
        t0 = time.monotonic()
        text, smp = ml.get_metrics(MPORT)
        dt = time.monotonic() - t0
        scrapes += 1
        if dt > 2:
            slow.append(dt)
        answered.append(S(smp, "sluice_stats_shards_answered"))
        cur = (S(smp, "sluice_messages_accepted_total"),
               S(smp, "sluice_recipients_total", outcome="delivered"))
        if prev is not None and (cur[0] < prev[0] or cur[1] < prev[1]):
            back.append((prev, cur))
        prev = cur
        time.sleep(0.05)
    th.join(150)
    T.eq(result.get("r", (None, ["did not finish"]))[1], [], "the 400 messages were accepted")
    T.ok(scrapes >= 3, "scraped during the load", str(scrapes))
    T.eq(slow, [], "every scrape answered within 2 s")
    T.ok(all(a == 2.0 for a in answered), "both shards answered every time", repr(answered))
    T.eq(back, [], "counters never went back")
    T.ok(dl.wait_until(lambda: ok.count() >= 420, 60), "the load reached the server",
         str(ok.count()))
    text, smp = ml.get_metrics(MPORT)
    T.eq(S(smp, "sluice_messages_accepted_total"), 424.0, "424 accepted in all")

with T.case("more destinations than series: the top 20 and _other"):
    # 25 domains through MX lookup to a dead resolver: each is its own
    # destination, deferred and kept (retry 1h); d0 gets 25 messages,
    # d1 24, ... so the order is known.
    many = []
    for k in range(25):
        for j in range(25 - k):
            many.append((SENDER, ["u%d@d%d.many.test" % (j, k)],
                         dl.make_message("m%d-%d" % (k, j), SENDER, ["u%d@d%d.many.test" % (j, k)])))
    _, errors = dl.submit_many(relay.port, many, conns=4)
    T.eq(errors, [], "325 more messages accepted")

    def all_deferred():
        return sum(1 for x in L.lines() if x.get("status") == "deferred" and
                   (x.get("dest") or "").endswith(".many.test")) >= len(many)

    T.ok(dl.wait_until(all_deferred, 60), "every one deferred (no DNS)")
    text, smp = ml.get_metrics(MPORT)
    series = {dict(k[1])["destination"]: v for k, v in smp.items()
              if k[0] == "sluice_destination_queued"}
    T.eq(len(series), 21, "21 series: 20 destinations and _other")
    T.ok("_other" in series, "_other is there")
    want = {"d%d.many.test" % k: float(25 - k) for k in range(17)}
    got = {d: v for d, v in series.items() if d.startswith("d") and d.endswith(".many.test")}
    T.ok(all(got.get(d) == v for d, v in want.items()),
         "the top ones by queued, each with its count", repr(sorted(got.items())))
    total = sum(series.values())
    T.eq(total, float(325 + 3), "the series sum to every item queued (with the greylisted 3)")
    T.eq(S(smp, "sluice_destinations") >= 26, True, "all destinations counted")
    pt = ml.promtool(text)
    if pt is not None:
        T.ok(pt[0] == 0, "promtool still content", pt[1])

with T.case("off by default: nothing listens"):
    d = sluice.Daemon()
    T.eq(ml.status(d).get("metrics"), None, "status: metrics null")
    T.eq(d.stop(), 0, "it stops")
    with open(d.log, encoding="utf-8", errors="replace") as f:
        T.ok("serving /metrics" not in f.read(), "no endpoint was started")
    with open(relay.d.log, encoding="utf-8", errors="replace") as f:
        T.ok("metrics: serving /metrics on 127.0.0.1:%d" % MPORT in f.read(),
             "while the relay's was, and said where")

T.eq(relay.stop(), 0, "sluiced stops with the endpoint open")
sluice.finish()
