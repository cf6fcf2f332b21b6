#!/usr/bin/python3
# Description: `sluicectl resolve` against a real nsd on loopback: MX hosts
# in preference order, equal preferences in random order (both orders seen),
# at most 10 MX hosts, implicit MX, CNAME to a host, null MX and NXDOMAIN
# and hosts without addresses are permanent (exit 1), SERVFAIL, silence and
# nothing listening are temporary (exit 75), and a truncated UDP answer is
# asked again over TCP and that answer used.
# timeout: 240
import json
import os
import subprocess
import time

import sluice
from sluice import T

try:
    import dnslib
except ImportError as e:        # python3-dnspython missing
    sluice.skip("dnslib needs dnspython: %s" % e)
if not dnslib.have_nsd():
    sluice.skip("nsd is not installed")
if not os.access(sluice.SLUICECTL, os.X_OK):
    raise SystemExit("%s is not built (run make)" % sluice.SLUICECTL)

ZONES = {
    "mx.test": dnslib.zone_text("mx.test", [
        "@ IN MX 20 mx2",
        "@ IN MX 10 mx1",
        "@ IN MX 30 eqa",
        "@ IN MX 30 eqb",
        "mx1 IN A 127.0.0.11",
        "mx1 IN AAAA ::1",
        "mx2 IN A 127.0.0.12",
        "eqa IN A 127.0.0.13",
        "eqb IN A 127.0.0.14",
        "eqb IN A 127.0.0.15",
        "alias IN CNAME mx1",
    ]),
    "nullmx.test": dnslib.zone_text("nullmx.test", ["@ IN MX 0 ."]),
    "aonly.test": dnslib.zone_text("aonly.test", ["@ IN A 127.0.0.20"]),
    "noaddr.test": dnslib.zone_text("noaddr.test", [
        "@ IN MX 10 ghost",         # ghost.noaddr.test does not exist
        "@ IN MX 20 empty",
        "empty IN TXT \"no address here\"",
    ]),
    "partial.test": dnslib.zone_text("partial.test", [
        "@ IN MX 10 ghost",
        "@ IN MX 20 real",
        "real IN A 127.0.0.30",
    ]),
    "empty.test": dnslib.zone_text("empty.test", ["@ IN TXT \"nothing\""]),
    "many.test": dnslib.zone_text("many.test",
                                  ["@ IN MX %d h%d" % (i, i) for i in range(12)] +
                                  ["h%d IN A 127.0.1.%d" % (i, i + 1) for i in range(12)]),
    "broken.test": None,            # fails to load: SERVFAIL
}


def resolve(spec, name, *flags, timeout=60, opts=()):
    """Runs sluicectl [-o OPT]... resolve --json; returns (exit code, parsed
    JSON or None, stderr, seconds)."""
    argv = [sluice.SLUICECTL] + [a for o in opts for a in ("-o", o)] + \
        ["resolve", "--resolver", spec, "--json"] + list(flags) + [name]
    t0 = time.monotonic()
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       stdin=subprocess.DEVNULL, timeout=timeout,
                       env=sluice.clean_env())
    secs = time.monotonic() - t0
    try:
        doc = json.loads(p.stdout.decode())
    except ValueError:
        doc = None
    err = p.stderr.decode("utf-8", "replace")
    for pat in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
        if pat in err:
            T.fail("no sanitizer report from sluicectl resolve %s" % name, err[-2000:])
    return p.returncode, doc, err, secs


def hosts(doc):
    return [t["host"] for t in doc["targets"]] if doc else None


def check_status(rc, doc, want_rc, want_status, what):
    T.eq(rc, want_rc, what + ": exit %d" % want_rc)
    T.eq(doc["status"] if doc else None, want_status, what + ": status " + want_status)


tmp = sluice.tmpdir()
with dnslib.NSD(tmp, ZONES) as ns:
    with T.case("MX hosts in preference order with their addresses"):
        rc, doc, err, _ = resolve(ns.spec, "mx.test")
        check_status(rc, doc, 0, "ok", "mx.test")
        if doc:
            T.eq(hosts(doc)[:2], ["mx1.mx.test", "mx2.mx.test"], "lowest preference first")
            T.eq(sorted(hosts(doc)[2:]), ["eqa.mx.test", "eqb.mx.test"],
                 "the two preference-30 hosts last")
            T.eq([t["pref"] for t in doc["targets"]], [10, 20, 30, 30], "preferences")
            T.eq(doc["targets"][0]["addresses"], ["127.0.0.11", "::1"],
                 "mx1: IPv4 then IPv6")
            by = {t["host"]: t["addresses"] for t in doc["targets"]}
            T.eq(sorted(by.get("eqb.mx.test", [])), ["127.0.0.14", "127.0.0.15"],
                 "eqb: both addresses")
            T.eq(doc["authenticated"], False, "nsd sets no AD bit")
            T.eq(doc["lookup"], "mx", "an MX lookup by default")

    with T.case("equal preferences come in random order"):
        seen = set()
        for i in range(40):
            rc, doc, err, _ = resolve(ns.spec, "mx.test")
            if rc != 0 or not doc:
                T.fail("run %d of mx.test" % i, err)
                break
            seen.add(tuple(hosts(doc)[2:]))
            if len(seen) == 2:
                break
        T.eq(sorted(seen), [("eqa.mx.test", "eqb.mx.test"), ("eqb.mx.test", "eqa.mx.test")],
             "both orders of eqa/eqb seen within 40 runs")

    with T.case("at most 10 MX hosts"):
        rc, doc, err, _ = resolve(ns.spec, "many.test")
        check_status(rc, doc, 0, "ok", "many.test")
        T.eq(hosts(doc), ["h%d.many.test" % i for i in range(10)], "the 10 best, in order")

    with T.case("implicit MX: no MX record, the domain's own address"):
        rc, doc, err, _ = resolve(ns.spec, "aonly.test")
        check_status(rc, doc, 0, "ok", "aonly.test")
        if doc:
            T.eq(doc["targets"], [{"host": "aonly.test", "pref": 0,
                                   "addresses": ["127.0.0.20"], "dnssec": "insecure"}], "one implicit target")

    with T.case("text output and trailing dot / upper case"):
        p = subprocess.run([sluice.SLUICECTL, "resolve", "--resolver", ns.spec, "MX.Test."],
                           capture_output=True, text=True, timeout=60, env=sluice.clean_env())
        T.eq(p.returncode, 0, "text mode exits 0")
        lines = p.stdout.splitlines()
        T.ok(lines and lines[0].startswith("MX.Test.: ok (mx lookup, not authenticated)"),
             "a status line first", p.stdout)
        T.ok(len(lines) == 5 and lines[1] == "  10 mx1.mx.test 127.0.0.11 ::1",
             "then one line per host: preference, host, addresses", p.stdout)

    with T.case("fixed next hop (--host) and a CNAME"):
        rc, doc, err, _ = resolve(ns.spec, "mx2.mx.test", "--host")
        check_status(rc, doc, 0, "ok", "--host mx2.mx.test")
        if doc:
            T.eq(doc["targets"], [{"host": "mx2.mx.test", "pref": 0,
                                   "addresses": ["127.0.0.12"],
                                   "dnssec": "insecure"}], "the host itself")
        rc, doc, err, _ = resolve(ns.spec, "alias.mx.test", "--host")
        check_status(rc, doc, 0, "ok", "--host alias.mx.test")
        if doc:
            T.eq(doc["targets"][0]["addresses"] if doc["targets"] else None,
                 ["127.0.0.11", "::1"], "the CNAME's target's addresses")
        rc, doc, err, _ = resolve(ns.spec, "ghost.mx.test", "--host")
        check_status(rc, doc, 1, "nxdomain", "--host of a name that does not exist")

    with T.case("permanent failures exit 1"):
        rc, doc, err, _ = resolve(ns.spec, "nullmx.test")
        check_status(rc, doc, 1, "nullmx", "null MX")
        T.ok(doc and "null MX" in doc["why"], "why names the null MX", str(doc))
        rc, doc, err, _ = resolve(ns.spec, "nope.mx.test")
        check_status(rc, doc, 1, "nxdomain", "NXDOMAIN")
        T.eq(doc["why"] if doc else None, "domain nope.mx.test does not exist (NXDOMAIN)",
             "why says NXDOMAIN")
        rc, doc, err, _ = resolve(ns.spec, "noaddr.test")
        check_status(rc, doc, 1, "noaddr", "MX hosts without addresses")
        rc, doc, err, _ = resolve(ns.spec, "empty.test")
        check_status(rc, doc, 1, "noaddr", "no MX and no address")
        rc, doc, err, _ = resolve(ns.spec, "not..valid")
        check_status(rc, doc, 1, "nxdomain", "an invalid name")

    with T.case("an MX host without address is skipped, the others kept"):
        rc, doc, err, _ = resolve(ns.spec, "partial.test")
        check_status(rc, doc, 0, "ok", "partial.test")
        T.eq(hosts(doc), ["real.partial.test"], "only the host with an address")

    with T.case("SERVFAIL and REFUSED are temporary"):
        rc, doc, err, _ = resolve(ns.spec, "broken.test")
        check_status(rc, doc, 75, "tempfail", "SERVFAIL (zone that failed to load)")
        T.ok(doc and "SERVFAIL" in doc["why"], "why says SERVFAIL", str(doc))
        rc, doc, err, _ = resolve(ns.spec, "outside.example")
        check_status(rc, doc, 75, "tempfail", "REFUSED (not nsd's zone)")

with T.case("nothing listening is temporary, and quick"):
    port = dnslib.free_port()
    rc, doc, err, secs = resolve("127.0.0.1:%d" % port, "mx.test")
    check_status(rc, doc, 75, "tempfail", "port unreachable")
    T.ok(secs < 10, "ICMP refusal ends the tries early (%.1fs)" % secs)

with T.case("silence is temporary after the tries"):
    with dnslib.Responder(lambda q, tcp: None) as silent:
        rc, doc, err, secs = resolve(silent.spec, "mx.test")
        check_status(rc, doc, 75, "tempfail", "no answer")
        T.ok(doc and "no answer" in doc["why"], "why says no answer", str(doc))
        T.ok(4.0 <= secs < 20, "3 tries of 2 s (%.1fs)" % secs)
        # Each 2 s try: sent, then again after 0.5 s and 1 s more (no
        # round trip measured yet: 500 ms, doubling).
        T.eq(sum(1 for _, t, _tcp in silent.log if t == "MX"), 9,
             "3 tries over UDP, each datagram sent 3 times")

with T.case("a lost datagram costs a retransmission, not the try's timeout"):
    records = {("lossy.test.", "MX"): ["10 mx.lossy.test."],
               ("mx.lossy.test.", "A"): ["127.0.0.43"]}
    seen = set()
    import dns.message, dns.rdatatype, dns.rrset

    def lossy(q, tcp):
        """Drops the first datagram of every question, answers the next."""
        key = (q.question[0].name.to_text().lower(), q.question[0].rdtype)
        if key not in seen:
            seen.add(key)
            return None
        r = dns.message.make_response(q)
        rd = records.get((key[0], dns.rdatatype.to_text(key[1])))
        if rd:
            r.answer.append(dns.rrset.from_text_list(
                key[0], 300, "IN", dns.rdatatype.to_text(key[1]), rd))
        return r
    with dnslib.Responder(lossy) as srv:
        rc, doc, err, secs = resolve(srv.spec, "lossy.test", opts=["dns.timeout=5s"])
        check_status(rc, doc, 0, "ok", "lossy.test")
        T.eq(hosts(doc), ["mx.lossy.test"], "the answer after the loss")
        # Two lost datagrams (MX, then A) at 0.5 s each; one 5 s try
        # without retransmission would take 10 s.
        T.ok(secs < 3.5, "resent within the try (%.1fs)" % secs)

with T.case("a truncated answer is asked again over TCP"):
    handler = dnslib.truncating_handler({
        ("big.test.", "MX"): ["10 mx1.big.test.", "20 mx2.big.test."],
        ("mx1.big.test.", "A"): ["127.0.0.41"],
        ("mx2.big.test.", "A"): ["127.0.0.42"],
        ("mx2.big.test.", "AAAA"): ["::1"],
    })
    with dnslib.Responder(handler) as tc:
        rc, doc, err, _ = resolve(tc.spec, "big.test")
        check_status(rc, doc, 0, "ok", "big.test over TCP")
        if doc:
            T.eq(doc["targets"], [
                {"host": "mx1.big.test", "pref": 10, "addresses": ["127.0.0.41"],
                 "dnssec": "insecure"},
                {"host": "mx2.big.test", "pref": 20, "addresses": ["127.0.0.42", "::1"],
                 "dnssec": "insecure"},
            ], "the TCP answers are used")
        T.ok(("big.test.", "MX", False) in tc.log and ("big.test.", "MX", True) in tc.log,
             "MX asked over UDP, then over TCP", str(tc.log))

with T.case("truncated over TCP too is temporary"):
    def always_tc(q, tcp):
        r = dnslib.dns.message.make_response(q)
        r.flags |= dnslib.dns.flags.TC
        return r
    with dnslib.Responder(always_tc) as tc2:
        rc, doc, err, _ = resolve(tc2.spec, "big.test")
        check_status(rc, doc, 75, "tempfail", "TC over TCP")
        T.ok(doc and "truncated" in doc["why"], "why says truncated", str(doc))

with T.case("usage errors exit 2"):
    for argv in (["resolve"], ["resolve", "--bogus", "x.test"],
                 ["resolve", "--resolver", "not-an-address", "x.test"],
                 ["resolve", "--resolver", "127.0.0.1:99999", "x.test"]):
        p = subprocess.run([sluice.SLUICECTL] + argv, capture_output=True, text=True,
                           timeout=30, env=sluice.clean_env())
        T.eq(p.returncode, 2, "sluicectl %s exits 2" % " ".join(argv))

sluice.finish()
