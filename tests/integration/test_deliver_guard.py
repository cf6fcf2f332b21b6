#!/usr/bin/python3
# timeout: 120
# Description: what delivery never dials, against a real nsd on loopback.
# denied.test has three MX hosts, at 127.0.0.1, ::1 and 0.0.0.0, all in the
# default delivery.denied_networks: a server listens at each of them on the
# route's port and sees no connection, and the message bounces at once
# (delivery.log: bounced, 550 5.4.4 "all addresses of ... are in
# delivery.denied_networks", no addr; a DSN with Status 5.4.4). The DSN
# itself reaches the sender's domain through a route to [127.0.0.1]:PORT:
# next hops written as addresses are the operator's choice and exempt. A
# next hop written as a name, smtp:[fixed.denied.test]:PORT, is looked up
# in DNS like an MX host: its A record 127.0.0.1 is refused the same way
# (bounced 5.4.4, no connection). A second
# sluiced denies only 127.0.0.1/32: part.test (MX 10 at 127.0.0.1, MX 20 at
# 127.0.0.3) is delivered to 127.0.0.3 and 127.0.0.1 sees nothing.
# Loops, with denied_networks [] and a sluiced listening on 127.0.0.1:RPORT
# and 0.0.0.0:WPORT: loop.test's only MX is 127.0.0.1 on RPORT (routed
# smtp:loop.test:RPORT), so mail for it bounces 554 5.4.6 "mail for
# loop.test loops back to myself" (and a DSN); wild.test's MX is 127.0.0.5
# on WPORT, which the wildcard listener takes: a loop too; backup.test
# (MX 10 at 127.0.0.3, MX 20 ourselves: we are its backup MX) is delivered
# to 127.0.0.3; selffirst.test (MX 10 ourselves, MX 20 127.0.0.3) bounces
# as a loop, as RFC 5321 section 5.1 wants.
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
        "mx1 IN A 127.0.0.1", "mx2 IN AAAA ::1", "mx3 IN A 0.0.0.0",
        "fixed IN A 127.0.0.1"]),
    "part.test": dnslib.zone_text("part.test", [
        "@ IN MX 10 bad", "@ IN MX 20 ok", "bad IN A 127.0.0.1", "ok IN A 127.0.0.3"]),
}
ns = dnslib.NSD(sluice.tmpdir(), zones)
DNS = {"resolver": ns.spec, "timeout": "1s", "attempts": "2"}

relay = dl.Relay([
    {"domain": "sender.test", "transport": "smtp:[127.0.0.1]:%d" % cap.port, "retry": "1s"},
    {"domain": "denied.test", "transport": "smtp:denied.test:%d" % PORT, "retry": "1s"},
    {"domain": "named.test", "transport": "smtp:[fixed.denied.test]:%d" % PORT, "retry": "1s"},
], dns=DNS)
L = relay.dlog

data = dl.make_message("denied1", "alice@sender.test", ["bob@denied.test"], subject="To loopback")
q = dl.submit(relay.port, "alice@sender.test", ["bob@denied.test"], data)
data = dl.make_message("named1", "alice@sender.test", ["bob@named.test"])
q_named = dl.submit(relay.port, "alice@sender.test", ["bob@named.test"], data)

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
    # The DSN reaches the sender through the bracketed loopback route (exempt).
    d = dl.one_dsn(cap, q, "alice@sender.test", ["bob@denied.test"], "denied DSN",
                   status_prefix="5.4.4", subject="To loopback")
    if d:
        T.ok("denied_networks" in (d.text_part or "") or
             any("denied_networks" in b.get("diagnostic-code", "") for b in d.per_rcpt),
             "the DSN says why", repr(d.per_rcpt))
    ls = L.wait_for(lambda x: x.get("qid") == q_named and x.get("status") != "deferred", 20)
    T.eq([(x.get("status"), x.get("enhanced"), x.get("text")) for x in ls],
         [("bounced", "5.4.4", "all addresses of fixed.denied.test are in delivery.denied_networks")],
         "a next hop named in brackets is looked up in DNS, and refused the same way")
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

# ---------------------------------------------------------------- loops
try:
    RPORT = dl.free_port(("127.0.0.1", "127.0.0.3"))
    WPORT = dl.free_port(("0.0.0.0",))
except (RuntimeError, OSError) as e:
    sluice.skip("no ports for the loop cases: %s" % e)
backup = dl.RawServer("backup", addr="127.0.0.3", port=RPORT)
zones = {
    "loop.test": dnslib.zone_text("loop.test", ["@ IN MX 10 mx", "mx IN A 127.0.0.1"]),
    "wild.test": dnslib.zone_text("wild.test", ["@ IN MX 10 mx", "mx IN A 127.0.0.5"]),
    "backup.test": dnslib.zone_text("backup.test", [
        "@ IN MX 10 primary", "@ IN MX 20 us", "primary IN A 127.0.0.3", "us IN A 127.0.0.1"]),
    "selffirst.test": dnslib.zone_text("selffirst.test", [
        "@ IN MX 10 us", "@ IN MX 20 other", "us IN A 127.0.0.1", "other IN A 127.0.0.3"]),
}
ns = dnslib.NSD(sluice.tmpdir(), zones)
relay3 = dl.Relay([
    {"domain": "sender.test", "transport": "smtp:[127.0.0.1]:%d" % cap.port, "retry": "1s"},
    {"domain": "loop.test", "transport": "smtp:loop.test:%d" % RPORT, "retry": "1s"},
    {"domain": "wild.test", "transport": "smtp:wild.test:%d" % WPORT, "retry": "1s"},
    {"domain": "backup.test", "transport": "smtp:backup.test:%d" % RPORT, "retry": "1s"},
    {"domain": "selffirst.test", "transport": "smtp:selffirst.test:%d" % RPORT, "retry": "1s"},
], dns={"resolver": ns.spec, "timeout": "1s", "attempts": "2"},
    delivery={"denied_networks": []}, port=RPORT, start=False)
relay3.d.opts.append("listen.1.address=0.0.0.0:%d" % WPORT)
relay3.start()
L3 = relay3.dlog


def send3(tag, rcpt, subject=None):
    data = dl.make_message(tag, "alice@sender.test", [rcpt], subject=subject)
    return dl.submit(relay3.port, "alice@sender.test", [rcpt], data)


q_loop = send3("loop1", "bob@loop.test", subject="Around and around")
q_wild = send3("wild1", "bob@wild.test")
q_backup = send3("backup1", "bob@backup.test")
q_first = send3("first1", "bob@selffirst.test")


def final(L, q):
    L.wait_for(lambda x: x.get("qid") == q and x.get("status") != "deferred", 20)
    return [x for x in L.lines() if x.get("qid") == q]


with T.case("an MX host that is our own listener: 5.4.6, mail loops back to myself"):
    ls = final(L3, q_loop)
    T.eq([(x.get("status"), x.get("code"), x.get("enhanced")) for x in ls],
         [("bounced", 554, "5.4.6")], "delivery.log: bounced 554 5.4.6 at the first attempt")
    T.eq([x.get("text") for x in ls], ["mail for loop.test loops back to myself"], "the line says why")
    T.ok(all("addr" not in x for x in ls), "no connection was made", repr(ls))
    dl.one_dsn(cap, q_loop, "alice@sender.test", ["bob@loop.test"], "loop DSN",
               status_prefix="5.4.6", subject="Around and around")

with T.case("a listener on 0.0.0.0 is every local address: a loop too"):
    ls = final(L3, q_wild)
    T.eq([(x.get("status"), x.get("enhanced"), x.get("text")) for x in ls],
         [("bounced", "5.4.6", "mail for wild.test loops back to myself")],
         "delivery.log: bounced 5.4.6 (127.0.0.5 on the wildcard listener's port)")

with T.case("we are the backup MX: the better MX host gets the mail"):
    ls = final(L3, q_backup)
    T.eq([(x.get("status"), x.get("addr")) for x in ls], [("delivered", "127.0.0.3:%d" % RPORT)],
         "delivery.log: delivered to primary.backup.test")
    T.eq(len(backup.msgs()), 1, "127.0.0.3 got it once")

with T.case("we are the best MX: worse ones are not used either (RFC 5321 5.1)"):
    ls = final(L3, q_first)
    T.eq([(x.get("status"), x.get("enhanced")) for x in ls], [("bounced", "5.4.6")],
         "delivery.log: bounced 5.4.6, other.selffirst.test not tried")
    T.eq(len(backup.msgs()), 1, "127.0.0.3 got nothing more")

T.ok(relay3.wait_empty(15), "the queue is empty")
T.eq(relay3.stop(), 0, "sluiced exits 0 on SIGTERM")
ns.stop()
sluice.finish()
