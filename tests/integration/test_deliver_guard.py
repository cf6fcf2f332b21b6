#!/usr/bin/python3
# timeout: 120
# Description: what delivery never dials, against a real nsd on loopback.
# denied.test has three MX hosts, at 127.0.0.1, ::1 and 0.0.0.0, all in the
# default delivery.denied_networks: a server listens at each of them on the
# route's port and sees no connection, and the message bounces at once
# (delivery.log: bounced, 550 5.4.4 "all addresses of ... are in
# delivery.denied_networks", no addr; a DSN with Status 5.4.4). The DSN
# itself reaches the sender's domain through a route to [127.0.0.1]:PORT:
# next hops in brackets are the operator's choice and exempt. A second
# sluiced denies only 127.0.0.1/32: part.test (MX 10 at 127.0.0.1, MX 20 at
# 127.0.0.3) is delivered to 127.0.0.3 and 127.0.0.1 sees nothing.
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

try:
    PORT = dl.free_port(("127.0.0.1", "127.0.0.3"))
except (RuntimeError, OSError) as e:
    sluice.skip("cannot bind 127.0.0.1 and 127.0.0.3: %s" % e)

cap = dl.Server("capture")                                   # sender.test
lo4 = dl.RawServer("lo4", addr="127.0.0.1", port=PORT)       # also reached by 0.0.0.0
try:
    lo6 = dl.RawServer("lo6", addr="::1", port=PORT)
except (OSError, RuntimeError) as e:
    lo6 = None
    print("NOTE: no server on [::1]:%d (%s)" % (PORT, e))
good = dl.RawServer("good", addr="127.0.0.3", port=PORT)

zones = {
    "denied.test": dnslib.zone_text("denied.test", [
        "@ IN MX 10 mx1", "@ IN MX 20 mx2", "@ IN MX 30 mx3",
        "mx1 IN A 127.0.0.1", "mx2 IN AAAA ::1", "mx3 IN A 0.0.0.0"]),
    "part.test": dnslib.zone_text("part.test", [
        "@ IN MX 10 bad", "@ IN MX 20 ok", "bad IN A 127.0.0.1", "ok IN A 127.0.0.3"]),
}
ns = dnslib.NSD(sluice.tmpdir(), zones)
DNS = {"resolver": ns.spec, "timeout": "1s", "attempts": "2"}

relay = dl.Relay([
    {"domain": "sender.test", "transport": "smtp:[127.0.0.1]:%d" % cap.port, "retry": "1s"},
    {"domain": "denied.test", "transport": "smtp:denied.test:%d" % PORT, "retry": "1s"},
], dns=DNS)
L = relay.dlog

data = dl.make_message("denied1", "alice@sender.test", ["bob@denied.test"], subject="To loopback")
q = dl.submit(relay.port, "alice@sender.test", ["bob@denied.test"], data)

with T.case("MX hosts in denied_networks: never dialled, the mail bounces"):
    got = L.wait_for(lambda x: x.get("qid") == q and x.get("status") != "deferred", 20)
    ls = [x for x in L.lines() if x.get("qid") == q]
    T.eq([x.get("status") for x in ls], ["bounced"], "delivery.log: bounced at the first attempt")
    if ls:
        x = ls[0]
        T.eq((x.get("code"), x.get("enhanced")), (550, "5.4.4"), "550 5.4.4")
        T.eq(x.get("text"), "all addresses of mx1.denied.test, mx2.denied.test, mx3.denied.test "
             "are in delivery.denied_networks", "the line says why")
        T.ok("addr" not in x, "no connection was made (no addr)", repr(x))
    dsn = dl.wait_until(lambda: dl.dsns_for(cap, q), 15)
    T.eq(len(dsn or []), 1, "one DSN, delivered through the bracketed loopback route (exempt)")
    if dsn:
        d = dl.check_dsn(dsn[0], "alice@sender.test", ["bob@denied.test"], "denied DSN",
                         status_prefix="5.4.4", subject="To loopback")
        T.ok("denied_networks" in (d.text_part or "") or
             any("denied_networks" in b.get("diagnostic-code", "") for b in d.per_rcpt),
             "the DSN says why", repr(d.per_rcpt))
    T.eq(lo4.conns(), [], "nothing connected to 127.0.0.1:%d (nor through 0.0.0.0)" % PORT)
    if lo6 is not None:
        T.eq(lo6.conns(), [], "nothing connected to [::1]:%d" % PORT)
    T.ok(relay.wait_empty(15), "the queue is empty")

T.eq(relay.stop(), 0, "sluiced exits 0 on SIGTERM")

relay2 = dl.Relay([
    {"domain": "part.test", "transport": "smtp:part.test:%d" % PORT, "retry": "1s"},
], dns=DNS, delivery={"denied_networks": ["127.0.0.1/32"]})
L2 = relay2.dlog
data = dl.make_message("part1", "alice@sender.test", ["bob@part.test"])
q2 = dl.submit(relay2.port, "alice@sender.test", ["bob@part.test"], data)

with T.case("an MX host in denied_networks is skipped, the next one is used"):
    got = L2.wait_for(lambda x: x.get("qid") == q2 and x.get("status") == "delivered", 20)
    T.ok([(x.get("mx"), x.get("addr")) for x in got] == [("ok.part.test", "127.0.0.3:%d" % PORT)],
         "delivered via ok.part.test at 127.0.0.3", L2.dump())
    T.eq([x.get("status") for x in L2.lines() if x.get("qid") == q2], ["delivered"],
         "one line: delivered at the first attempt")
    T.eq(len(good.msgs()), 1, "127.0.0.3 got the message once")
    T.eq(lo4.conns(), [], "127.0.0.1 (denied) saw no connection")

T.eq(relay2.stop(), 0, "sluiced exits 0 on SIGTERM")
ns.stop()
sluice.finish()
