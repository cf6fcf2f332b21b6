#!/usr/bin/python3
# timeout: 120
# Description: delivery by MX against a real nsd on loopback (dns.resolver).
# mxzone.test: MX 10 mx1 (127.0.0.2, nothing listening: connection refused)
# and MX 20 mx2 (127.0.0.3): delivered to mx2 (delivery.log mx/addr name it).
# mx4xx.test: MX 10 a (127.0.0.5, answers 421 at connect) and MX 20 b
# (127.0.0.6): delivered to b. mxbroken.test: MX 10 brk (127.0.0.8, sends
# two unasked lines after its greeting: broken) and MX 20 ok (127.0.0.9):
# delivered to ok at the first attempt. aonly.test has only an A record (127.0.0.4):
# implicit MX. A null MX domain and an NXDOMAIN bounce at once (DSN to the
# sender, Status 5.1.10 for null MX), with no connection made; SERVFAIL
# defers (no bounce, the message stays queued). port25.test, routed with
# plain `smtp` (MX lookup, the SMTP port): MX 10 mx (127.0.0.7), where a
# server listens on port 25 (run as root; the case is skipped when port 25
# cannot be bound there): delivered to 127.0.0.7:25. Every MX host here is
# on loopback, which delivery.denied_networks refuses by default: it is [].
import socket

import sluice
from sluice import T

try:
    import dnslib
except ImportError as e:
    sluice.skip("dnslib needs dnspython: %s" % e)
if not dnslib.have_nsd():
    sluice.skip("nsd is not installed")

import deliverlib as dl

ADDRS = ("127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6",
         "127.0.0.8", "127.0.0.9")
try:
    PORT = dl.free_port(ADDRS)
except (RuntimeError, OSError) as e:
    sluice.skip("cannot bind 127.0.0.2-9: %s" % e)

cap = dl.Server("capture")                                   # sender.test, 127.0.0.1
mx2 = dl.Server("mx2", addr="127.0.0.3", port=PORT)
aonly = dl.Server("aonly", addr="127.0.0.4", port=PORT)
busy = dl.Server("mxa", addr="127.0.0.5", port=PORT, greeting=lambda c: "421 4.3.2 Service shutting down")
mxb = dl.Server("mxb", addr="127.0.0.6", port=PORT)
brk = dl.RawServer("brk", addr="127.0.0.8", port=PORT, after_greeting=b"250 one\r\n250 two\r\n")
okmx = dl.Server("okmx", addr="127.0.0.9", port=PORT)
# The SMTP port itself, for a plain smtp route (needs root, and no
# wildcard listener on port 25).
try:
    with socket.socket() as probe:
        probe.bind(("127.0.0.7", 25))
    mx25 = dl.Server("mx25", addr="127.0.0.7", port=25)
except OSError as e:
    mx25 = None
    print("NOTE: cannot listen on 127.0.0.7:25 (%s): the port 25 case is left out" % e)
# Nothing listens on 127.0.0.2:PORT; make sure of it.
s = socket.socket()
T.ok(s.connect_ex(("127.0.0.2", PORT)) != 0, "nothing listens on mx1 (127.0.0.2:%d)" % PORT)
s.close()

zones = {
    "mxzone.test": dnslib.zone_text("mxzone.test", [
        "@ IN MX 10 mx1", "@ IN MX 20 mx2",
        "mx1 IN A 127.0.0.2", "mx2 IN A 127.0.0.3"]),
    "mx4xx.test": dnslib.zone_text("mx4xx.test", [
        "@ IN MX 10 a", "@ IN MX 20 b", "a IN A 127.0.0.5", "b IN A 127.0.0.6"]),
    "aonly.test": dnslib.zone_text("aonly.test", ["@ IN A 127.0.0.4"]),
    "mxbroken.test": dnslib.zone_text("mxbroken.test", [
        "@ IN MX 10 brk", "@ IN MX 20 ok", "brk IN A 127.0.0.8", "ok IN A 127.0.0.9"]),
    "nullmx.test": dnslib.zone_text("nullmx.test", ["@ IN MX 0 ."]),
    "broken.test": None,                                      # SERVFAIL
    "port25.test": dnslib.zone_text("port25.test", ["@ IN MX 10 mx", "mx IN A 127.0.0.7"]),
}
ns = dnslib.NSD(sluice.tmpdir(), zones)

relay = dl.Relay([
    {"domain": "sender.test", "transport": "smtp:[127.0.0.1]:%d" % cap.port, "retry": "1s"},
    {"domain": "mx.test", "transport": "smtp:mxzone.test:%d" % PORT, "retry": "1s"},
    {"domain": "mx4xx.test", "transport": "smtp:mx4xx.test:%d" % PORT, "retry": "1s"},
    {"domain": "aonly.test", "transport": "smtp:aonly.test:%d" % PORT, "retry": "1s"},
    {"domain": "mxbroken.test", "transport": "smtp:mxbroken.test:%d" % PORT, "retry": "1s"},
    {"domain": "nullmx.test", "transport": "smtp", "retry": "1s"},
    {"domain": "nosuch.mxzone.test", "transport": "smtp", "retry": "1s"},
    {"domain": "broken.test", "transport": "smtp", "retry": "1s"},
    {"domain": "port25.test", "transport": "smtp", "retry": "1s"},
], dns={"resolver": ns.spec, "timeout": "1s", "attempts": "2"},
   delivery={"denied_networks": []})          # the MX hosts live on loopback
L = relay.dlog


def send(tag, rcpt, subject=None):
    data = dl.make_message(tag, "alice@sender.test", [rcpt], subject=subject)
    return dl.submit(relay.port, "alice@sender.test", [rcpt], data), data


q_mx, d_mx = send("mx1", "bob@mx.test")
q_4xx, d_4xx = send("mx4xx", "bob@mx4xx.test")
q_a, d_a = send("aonly", "bob@aonly.test")
q_brk, d_brk = send("mxbroken", "bob@mxbroken.test")
q_null, _ = send("nullmx", "bob@nullmx.test", subject="To a null MX")
q_nx, _ = send("nx", "bob@nosuch.mxzone.test", subject="To nowhere")
q_sf, _ = send("servfail", "bob@broken.test")
q_25, d_25 = send("port25", "bob@port25.test") if mx25 else (None, None)


def delivered_once(q, sink, rcpt, data, who):
    """Wait for q's delivered line; the sink got it once, intact. The lines."""
    got = L.wait_for(lambda x: x.get("qid") == q and x.get("status") == "delivered", 20)
    ms = sink.msgs()
    T.eq([m.rcpts for m in ms], [[rcpt]], who + " got the message once")
    if ms:
        T.eq(dl.check_tail(ms[0].data, data), None, "intact")
    return got


with T.case("MX fallback: mx1 refuses connections, mx2 gets the mail"):
    got = delivered_once(q_mx, mx2, "bob@mx.test", d_mx, "mx2")
    T.ok([(x.get("mx"), x.get("addr")) for x in got] == [("mx2.mxzone.test", "127.0.0.3:%d" % PORT)],
         "delivery.log: delivered via mx2.mxzone.test at 127.0.0.3", L.dump(pred=lambda x: x.get("qid") == q_mx))
    T.eq([x.get("status") for x in L.lines() if x.get("qid") == q_mx], ["delivered"],
         "one line: delivered at the first attempt")
    T.eq([x.get("dest") for x in got], ["mxzone.test:%d" % PORT], "dest is mxzone.test:PORT")

with T.case("MX fallback on 421: the next MX gets the mail"):
    got = L.wait_for(lambda x: x.get("qid") == q_4xx and x.get("status") == "delivered", 20)
    T.eq([m.rcpts for m in mxb.msgs()], [["bob@mx4xx.test"]], "b.mx4xx.test got the message once")
    T.eq(busy.count(), 0, "a.mx4xx.test (421) got nothing")
    T.ok([x.get("addr") for x in got] == ["127.0.0.6:%d" % PORT], "delivery.log: delivered at 127.0.0.6",
         L.dump(pred=lambda x: x.get("qid") == q_4xx))

with T.case("a broken MX host: the next one gets the mail at the first attempt"):
    got = delivered_once(q_brk, okmx, "bob@mxbroken.test", d_brk, "ok.mxbroken.test")
    T.ok([x.get("addr") for x in got] == ["127.0.0.9:%d" % PORT], "delivery.log: delivered at 127.0.0.9",
         L.dump(pred=lambda x: x.get("qid") == q_brk))
    T.eq([x.get("status") for x in L.lines() if x.get("qid") == q_brk], ["delivered"],
         "one line: delivered at the first attempt")
    T.ok(len(brk.conns()) >= 1, "brk.mxbroken.test was tried first")

with T.case("implicit MX (A record only)"):
    got = L.wait_for(lambda x: x.get("qid") == q_a and x.get("status") == "delivered", 20)
    T.eq([m.rcpts for m in aonly.msgs()], [["bob@aonly.test"]], "aonly.test's A host got the message")
    T.ok([x.get("addr") for x in got] == ["127.0.0.4:%d" % PORT], "delivery.log: delivered at 127.0.0.4",
         L.dump(pred=lambda x: x.get("qid") == q_a))

with T.case("null MX bounces"):
    got = L.wait_for(lambda x: x.get("qid") == q_null and x.get("status") != "deferred", 20)
    T.ok([x.get("status") for x in L.lines() if x.get("qid") == q_null] == ["bounced"],
         "delivery.log: bounced at once", L.dump(pred=lambda x: x.get("qid") == q_null))
    T.ok(all("addr" not in x for x in got), "no connection was made (no addr)", repr(got))
    T.eq([x.get("dest") for x in got], ["nullmx.test"], "dest is the recipient domain (transport smtp)")
    dl.one_dsn(cap, q_null, "alice@sender.test", ["bob@nullmx.test"], "null MX DSN",
               status_prefix="5.1.10", subject="To a null MX")

with T.case("NXDOMAIN bounces"):
    got = L.wait_for(lambda x: x.get("qid") == q_nx and x.get("status") != "deferred", 20)
    T.ok([x.get("status") for x in L.lines() if x.get("qid") == q_nx] == ["bounced"],
         "delivery.log: bounced at once", L.dump(pred=lambda x: x.get("qid") == q_nx))
    dl.one_dsn(cap, q_nx, "alice@sender.test", ["bob@nosuch.mxzone.test"], "NXDOMAIN DSN",
               status_prefix="5.", subject="To nowhere")

if mx25:
    with T.case("plain smtp route: MX host on port 25"):
        got = delivered_once(q_25, mx25, "bob@port25.test", d_25, "the MX host on port 25")
        T.ok([(x.get("mx"), x.get("addr"), x.get("dest")) for x in got] ==
             [("mx.port25.test", "127.0.0.7:25", "port25.test")],
             "delivery.log: via mx.port25.test at 127.0.0.7:25, dest port25.test",
             L.dump(pred=lambda x: x.get("qid") == q_25))

with T.case("SERVFAIL defers"):
    got = L.wait_for(lambda x: x.get("qid") == q_sf, 20)
    dl.wait_until(lambda: len([x for x in L.lines() if x.get("qid") == q_sf]) >= 2, 8)
    ls = [x for x in L.lines() if x.get("qid") == q_sf]
    T.ok(ls and all(x.get("status") == "deferred" for x in ls), "delivery.log: deferred, never bounced",
         L.dump(pred=lambda x: x.get("qid") == q_sf))
    T.ok(ls and all(x.get("next") and "addr" not in x for x in ls), "deferred lines have next, no addr",
         repr(ls[:2]))
    T.eq(dl.dsns_for(cap, q_sf), [], "no DSN")
    ids = [m.get("id") for m in relay.d.list()]
    T.ok(q_sf in ids, "the SERVFAIL message is still queued", repr(ids))
    T.ok(not {q_mx, q_a, q_brk, q_null, q_nx, q_25} & set(ids), "the delivered and bounced ones are not",
         repr(ids))

T.eq(relay.stop(), 0, "sluiced exits 0 on SIGTERM")
ns.stop()
sluice.finish()
