#!/usr/bin/python3
# timeout: 120
# Description: DNS trouble defers mail (4.4.3), it never bounces it; only a
# domain that does not exist bounces. A dnspython responder on loopback
# answers: sf.test's MX with SERVFAIL; cnsf.test's MX with a CNAME alone to
# t.broken.test, whose lookups SERVFAIL (an authoritative server answers a
# CNAME to another zone so, and the chain must be followed there: before,
# sluice took the bare CNAME for "no MX, no address" and bounced 550);
# cnto.test's MX with a CNAME to t.silent.test, which never answers;
# cnlong.test's MX with a CNAME to c1.cnlong.test, c1 to c2 ... c11, one
# answer each (a chain longer than 8); nx.test with NXDOMAIN. With retry 1s
# each of the first four gets at least two delivery-log lines, all
# "deferred" 451 4.4.3, no DSN, and stays queued; nx.test's message
# bounces 550 5.1.2 with a DSN.
import dns.flags
import dns.message
import dns.rcode
import dns.rrset

import sluice
from sluice import T

try:
    import dnslib
except ImportError as e:
    sluice.skip("dnslib needs dnspython: %s" % e)

import deliverlib as dl


def handler(q, tcp):
    name = q.question[0].name.to_text().lower()
    r = dns.message.make_response(q)
    r.flags |= dns.flags.RA

    def cname(target):
        r.answer.append(dns.rrset.from_text(name, 300, "IN", "CNAME", target))
        return r
    if name == "sf.test." or name.endswith(".broken.test."):
        r.set_rcode(dns.rcode.SERVFAIL)
        return r
    if name.endswith(".silent.test."):
        return None
    if name == "cnsf.test.":
        return cname("t.broken.test.")
    if name == "cnto.test.":
        return cname("t.silent.test.")
    if name == "cnlong.test.":
        return cname("c1.cnlong.test.")
    if name.startswith("c") and name.endswith(".cnlong.test.") and name[1:].split(".")[0].isdigit():
        return cname("c%d.cnlong.test." % (int(name[1:].split(".")[0]) + 1))
    r.set_rcode(dns.rcode.NXDOMAIN)
    return r


ns = dnslib.Responder(handler)
cap = dl.Server("capture")                                   # sender.test
relay = dl.Relay([
    {"domain": "sender.test", "transport": "smtp:[127.0.0.1]:%d" % cap.port, "retry": "1s"},
] + [{"domain": d, "transport": "smtp", "retry": "1s"}
     for d in ("sf.test", "cnsf.test", "cnto.test", "cnlong.test", "nx.test")],
    dns={"resolver": ns.spec, "timeout": "500ms", "attempts": "1"})
L = relay.dlog

q = {}
for d in ("sf.test", "cnsf.test", "cnto.test", "cnlong.test", "nx.test"):
    rc = ["bob@" + d]
    q[d] = dl.submit(relay.port, "alice@sender.test", rc,
                     dl.make_message("dnsfail-" + d, "alice@sender.test", rc, subject="To " + d))

for d in ("sf.test", "cnsf.test", "cnto.test", "cnlong.test"):
    with T.case("%s: deferred 4.4.3, never bounced" % d):
        dl.wait_until(lambda: len([x for x in L.lines() if x.get("qid") == q[d]]) >= 2, 20)
        ls = [x for x in L.lines() if x.get("qid") == q[d]]
        T.ok(len(ls) >= 2, "%s: retried (%d lines)" % (d, len(ls)), L.dump(pred=lambda x: x.get("qid") == q[d]))
        T.ok(ls and all((x.get("status"), x.get("code"), x.get("enhanced")) == ("deferred", 451, "4.4.3")
                        for x in ls), "%s: every line deferred 451 4.4.3" % d,
             repr([(x.get("status"), x.get("code"), x.get("enhanced"), x.get("text")) for x in ls]))
        print("%s: %s" % (d, ls[0].get("text") if ls else None))
        T.ok(ls and all("addr" not in x for x in ls), "%s: no connection was made" % d)
        T.eq(dl.dsns_for(cap, q[d]), [], "%s: no DSN" % d)

with T.case("the reasons name the trouble"):
    text = {d: next((x.get("text", "") for x in L.lines() if x.get("qid") == q[d]), "")
            for d in ("cnsf.test", "cnto.test", "cnlong.test")}
    T.ok("t.broken.test" in text["cnsf.test"] and "SERVFAIL" in text["cnsf.test"],
         "cnsf.test: the CNAME target and SERVFAIL", text["cnsf.test"])
    T.ok("t.silent.test" in text["cnto.test"] and "no answer" in text["cnto.test"],
         "cnto.test: the CNAME target and no answer", text["cnto.test"])
    T.ok("CNAME chain longer than 8" in text["cnlong.test"], "cnlong.test: chain too long",
         text["cnlong.test"])

with T.case("NXDOMAIN still bounces"):
    L.wait_for(lambda x: x.get("qid") == q["nx.test"] and x.get("status") != "deferred", 20)
    ls = [x for x in L.lines() if x.get("qid") == q["nx.test"]]
    T.eq([(x.get("status"), x.get("code"), x.get("enhanced")) for x in ls], [("bounced", 550, "5.1.2")],
         "delivery.log: bounced 550 5.1.2")
    dl.one_dsn(cap, q["nx.test"], "alice@sender.test", ["bob@nx.test"], "NXDOMAIN DSN",
               status_prefix="5.1.2", subject="To nx.test")

ids = {m.get("id") for m in relay.d.list()}
T.ok(all(q[d] in ids for d in ("sf.test", "cnsf.test", "cnto.test", "cnlong.test")),
     "the deferred messages are still queued", repr(ids))
T.ok(q["nx.test"] not in ids, "the bounced one is not")
T.eq(relay.stop(), 0, "sluiced exits 0 on SIGTERM")
ns.stop()
sluice.finish()
