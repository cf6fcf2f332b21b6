#!/usr/bin/python3
# timeout: 180
# Description: MTA-STS (RFC 8461) for MX delivery, all on loopback: a real
# nsd serves the _mta-sts TXT records, the MX records and the hosts'
# addresses (127.0.31.x or another free /24); a Python HTTPS server on
# its .1:443 serves every mta-sts.DOMAIN policy, with a certificate from a test CA
# (mta_sts.ca_file); the MX hosts are aiosmtpd servers with STARTTLS and a
# certificate from the same CA. Routes are `smtp:DOMAIN:PORT` (an MX
# lookup of DOMAIN, the policy domain, on a test port).
#  - enforce, the MX in the policy, a valid certificate: delivered over
#    TLS, tls_verify "verified", tls_policy "sts-enforce";
#  - enforce, the MX host not in the policy: deferred 4.7.5, nothing
#    reaches the host (no plaintext either);
#  - enforce, a certificate without the MX host's name: deferred 4.7.5
#    (hostname mismatch), nothing delivered;
#  - testing, the same mismatch: delivered, tls_policy "sts-testing", and
#    sluicectl status counts a certificate-host-mismatch for the domain;
#  - a policy with max_age 2: after 3 s the next delivery fetches it again
#    (a second GET), and still applies it;
#  - a TXT record but nothing listening on 443: delivered as without a
#    policy (tls_policy "none") and counted as sts-policy-fetch-error;
#  - a policy host whose certificate is from another CA, a policy that is
#    HTML, a 301 to another policy: each delivered as without a policy,
#    counted as sts-webpki-invalid, sts-policy-invalid and
#    sts-policy-fetch-error; the redirect is not followed; a policy host
#    whose address is in delivery.denied_networks is not dialled
#    (sts-policy-fetch-error, the error names denied_networks);
#  - a policy host that takes 3.5 s: the first message waits
#    mta_sts.wait (1.5 s) and goes as without a policy; once the fetch
#    ends, the next one goes under sts-enforce;
#  - status --json lists each policy domain with its mode and its counts,
#    and the text status shows the table;
#  - after a restart the policies kept in SPOOL/mta-sts apply at once: the
#    policy host answering 404 changes nothing while the TXT id is the
#    same (no second GET), delivery is still sts-enforce and verified.
import json
import os
import time

import sluice
from sluice import T

try:
    import dnslib
except ImportError as e:
    sluice.skip("dnslib needs dnspython: %s" % e)
if not dnslib.have_nsd():
    sluice.skip("nsd is not installed")

import deliverlib as dl
import stslib
import tlslib

# The policy URL has no port: the HTTPS server must have 443 on its own
# address (stslib.pick_net).
NET = stslib.pick_net(("127.0.31.", "127.0.131.", "127.0.231.", "127.0.71."))
WEB = NET + "1"
MX = {"enf": NET + "2", "notin": NET + "3", "wrong": NET + "4",
      "testing": NET + "5", "exp": NET + "6", "down": NET + "7",
      "slow": NET + "8"}
NOWEB = NET + "9"               # nothing listens on 443 here
BADWEB = NET + "10"             # 443 with a certificate from another CA
# Policy domains whose fetch fails another way; their mail goes to the
# host of down.test.
DENIED = NET + "11"             # in delivery.denied_networks
ODD = ("untrusted", "invalid", "redirect", "denied")

try:
    PORT = dl.free_port(tuple(MX.values()))
except (RuntimeError, OSError) as e:
    sluice.skip("no free port on %sx: %s" % (NET, e))

# One certificate for every name that should verify; the MX hosts of
# wrong.test and testing.test are left out of it on purpose.
good_names = ["mta-sts.%s.test" % d for d in list(MX) + ["invalid",
                                                     "redirect"]] + [
    "mx.enf.test", "mx.notin.test", "mx.exp.test", "mx.down.test",
    "mx.slow.test"]
certs = tlslib.Certs(good_names)
other_ca = tlslib.Certs(["mta-sts.untrusted.test"])

# Served by policy domain; the test takes enf.test's away later.
POLICIES = {
    "enf.test": "version: STSv1\r\nmode: enforce\r\nmx: mx.enf.test\r\n"
                "max_age: 86400\r\n",
    "notin.test": "version: STSv1\nmode: enforce\nmx: other.notin.test\n"
                  "max_age: 86400\n",
    "wrong.test": "version: STSv1\nmode: enforce\nmx: *.wrong.test\n"
                  "max_age: 86400\n",
    "testing.test": "version: STSv1\nmode: testing\nmx: mx.testing.test\n"
                    "max_age: 86400\n",
    "exp.test": "version: STSv1\nmode: enforce\nmx: mx.exp.test\nmax_age: 2\n",
    "slow.test": "version: STSv1\nmode: enforce\nmx: mx.slow.test\n"
                 "max_age: 86400\n",
    "invalid.test": "<html><body>no policy here</body></html>\n",
}
SLOW_S = 3.5                    # the slow policy host's delay
web = stslib.PolicyServer(
    WEB, certs.server_ctx(), POLICIES, delays={"slow.test": SLOW_S},
    redirects={"redirect.test": "https://mta-sts.enf.test/.well-known/mta-sts.txt"})
badweb = stslib.PolicyServer(BADWEB, other_ca.server_ctx(), POLICIES)
gets = web.get

srv = {d: dl.Server(d, addr=a, port=PORT,
                    smtp_kw={"tls_context": certs.server_ctx()})
       for d, a in MX.items()}


def zone(d, txt=True, web=WEB):
    recs = ["@ IN MX 10 mx", "mx IN A %s" % MX[d],
            "mta-sts IN A %s" % web]
    if txt:
        recs.append('_mta-sts IN TXT "v=STSv1; id=%s1;"' % d)
    return dnslib.zone_text("%s.test" % d, recs, ttl=1)


zones = {"%s.test" % d: zone(d) for d in MX if d != "down"}
zones["down.test"] = zone("down", web=NOWEB)
for d in ODD:
    zones["%s.test" % d] = dnslib.zone_text("%s.test" % d, [
        "@ IN MX 10 mx", "mx IN A %s" % MX["down"],
        "mta-sts IN A %s" % {"untrusted": BADWEB, "denied": DENIED}.get(
            d, WEB),
        '_mta-sts IN TXT "v=STSv1; id=%s1;"' % d], ttl=1)
ns = dnslib.NSD(sluice.tmpdir(), zones)

relay = dl.Relay(
    [{"domain": "%s.test" % d, "transport": "smtp:%s.test:%d" % (d, PORT),
      "retry": "1s"} for d in list(MX) + list(ODD)],
    dns={"resolver": ns.spec, "timeout": "1s", "attempts": "2"},
    delivery={"denied_networks": [DENIED + "/32"]},
    extra="mta_sts: {ca_file: %s, wait: 1500ms, fetch_timeout: 6s}" %
    json.dumps(certs.ca))
L = relay.dlog


one = relay.send_one


final = L.last_for


def got(d, tag):
    return srv[d].tagged(tag)


def status():
    rc, out, err = relay.d.ctl("status", "--json")
    T.ok(rc == 0, "status --json runs", err)
    try:
        doc = json.loads(out)
    except ValueError:
        return {}
    return {x.get("domain"): x for x in doc.get("mta_sts", [])}


try:
    with T.case("enforce, MX in the policy, valid certificate: delivered"):
        q, data = one("enf1", "a@enf.test")
        x = final(q)
        T.eq(x.get("status"), "delivered", "delivered\n" + L.dump())
        T.eq(x.get("tls_policy"), "sts-enforce", "tls_policy sts-enforce")
        T.eq(x.get("tls_verify"), "verified", "the certificate verified")
        T.ok(x.get("tls", "").startswith("TLSv1."), "over TLS")
        ms = got("enf", "enf1")
        T.eq([m.tls for m in ms], [True], "the MX got it once, under TLS")
        if ms:
            T.eq(dl.check_tail(ms[0].data, data), None, "the bytes are intact")
        T.eq(gets("mta-sts.enf.test"), 1, "the policy was fetched once")

    with T.case("enforce, MX not in the policy: deferred 4.7.5"):
        q, _ = one("notin1", "a@notin.test")
        x = final(q)
        T.eq((x.get("status"), x.get("code"), x.get("enhanced")),
             ("deferred", 451, "4.7.5"), "deferred 451 4.7.5\n" + L.dump())
        T.ok("MTA-STS" in x.get("text", ""), "the log says why: %r"
             % x.get("text"))
        T.eq(x.get("tls_policy"), "sts-enforce", "tls_policy sts-enforce")
        time.sleep(1.5)                   # a retry (1 s) changes nothing
        T.eq(len(srv["notin"].conns()), 0, "no connection to the MX host")
        T.eq(got("notin", "notin1"), [], "nothing delivered, in plaintext "
             "or otherwise")

    with T.case("enforce, certificate without the MX name: deferred"):
        q, _ = one("wrong1", "a@wrong.test")
        x = final(q)
        T.eq((x.get("status"), x.get("enhanced")), ("deferred", "4.7.5"),
             "deferred 4.7.5\n" + L.dump())
        T.eq(x.get("tls_verify"), "hostname mismatch", "tls_verify says why")
        T.eq(got("wrong", "wrong1"), [], "the MX host did not get it")

    with T.case("testing, certificate mismatch: delivered and counted"):
        q, _ = one("test1", "a@testing.test")
        x = final(q)
        T.eq(x.get("status"), "delivered", "delivered\n" + L.dump())
        T.eq(x.get("tls_policy"), "sts-testing", "tls_policy sts-testing")
        T.eq([m.tls for m in got("testing", "test1")], [True],
             "the MX got it under TLS")
        st = status().get("testing.test", {})
        T.eq(st.get("mode"), "testing", "status: mode testing (%r)" % st)
        T.eq(st.get("failures", {}).get("certificate-host-mismatch"), 1,
             "status: one certificate-host-mismatch (%r)" % st)
        T.eq(st.get("successful_sessions"), 0, "status: no success")

    with T.case("an expired policy is fetched again, and still applied"):
        q, _ = one("exp1", "a@exp.test")
        T.eq(final(q).get("status"), "delivered", "first delivered\n"
             + L.dump())
        T.eq(gets("mta-sts.exp.test"), 1, "one fetch so far")
        time.sleep(3)                     # max_age 2
        q, _ = one("exp2", "b@exp.test")
        x = final(q)
        T.eq(x.get("status"), "delivered", "second delivered")
        T.eq(x.get("tls_policy"), "sts-enforce", "still sts-enforce")
        T.ok(dl.wait_until(lambda: gets("mta-sts.exp.test", 0) >= 2, 10),
             "the policy was fetched again (%r)" % web.gets)

    with T.case("policy fetch fails, nothing cached: delivered, counted"):
        q, _ = one("down1", "a@down.test")
        x = final(q)
        T.eq(x.get("status"), "delivered", "delivered\n" + L.dump())
        T.eq(x.get("tls_policy"), "none", "tls_policy none")
        T.eq(len(got("down", "down1")), 1, "the MX host got it")
        st = status().get("down.test", {})
        T.eq(st.get("failures", {}).get("sts-policy-fetch-error"), 1,
             "status: one sts-policy-fetch-error (%r)" % st)
        T.eq(st.get("policy"), False, "status: no policy")

    with T.case("an untrusted policy host, a bad policy, a redirect"):
        want = {"untrusted": "sts-webpki-invalid",
                "invalid": "sts-policy-invalid",
                "redirect": "sts-policy-fetch-error",
                "denied": "sts-policy-fetch-error"}
        for d in ODD:
            q, _ = one(d + "1", "a@%s.test" % d)
            x = final(q)
            T.eq((x.get("status"), x.get("tls_policy")), ("delivered", "none"),
                 "%s: delivered as without a policy" % d)
            st = status().get("%s.test" % d, {})
            T.eq(st.get("failures", {}).get(want[d]), 1,
                 "%s: one %s (%r)" % (d, want[d], st))
            T.eq(st.get("policy"), False, "%s: no policy cached" % d)
        T.ok(gets("mta-sts.enf.test", 0) == 1, "the redirect was not "
             "followed (%r)" % web.gets)
        T.eq(gets("mta-sts.untrusted.test"), None, "nothing was asked "
             "of the untrusted host")
        T.ok("denied_networks" in (status().get("denied.test", {}).get(
             "last_error") or ""), "a policy host in denied_networks is "
             "not dialled, and the error says so")

    with T.case("a slow first fetch: mail waits mta_sts.wait, then goes"):
        t0 = time.time()
        q, _ = one("slow1", "a@slow.test")
        x = final(q)
        waited = time.time() - t0
        T.eq((x.get("status"), x.get("tls_policy")), ("delivered", "none"),
             "delivered as without a policy\n" + L.dump())
        T.ok(1.3 <= waited < SLOW_S, "after the wait (1.5 s), before the "
             "fetch ended: %.1f s" % waited)
        T.ok(dl.wait_until(lambda: status().get("slow.test", {}).get(
             "policy"), 10), "the fetch finished and the policy is cached")
        time.sleep(1.2)          # a destination asks the cache once a second
        q, _ = one("slow2", "b@slow.test")
        x = final(q)
        T.eq((x.get("status"), x.get("tls_policy")),
             ("delivered", "sts-enforce"), "the next one under it\n"
             + L.dump())

    with T.case("status: per policy domain, JSON and text"):
        st = status()
        e = st.get("enf.test", {})
        T.eq((e.get("mode"), e.get("id")), ("enforce", "enf1"),
             "enf.test: enforce, id enf1 (%r)" % e)
        T.eq(e.get("mx"), ["mx.enf.test"], "enf.test: its mx patterns")
        T.ok(e.get("successful_sessions", 0) >= 1, "enf.test: sessions ok")
        w = st.get("wrong.test", {})
        T.ok(w.get("failures", {}).get("certificate-host-mismatch", 0) >= 1,
             "wrong.test: host mismatch counted (%r)" % w)
        n = st.get("notin.test", {})
        T.ok(n.get("failures", {}).get("validation-failure", 0) >= 1,
             "notin.test: MX not in the policy counted (%r)" % n)
        rc, out, err = relay.d.ctl("status")
        T.ok(rc == 0 and "MTA-STS domain" in out and "testing.test" in out
             and "certificate-host-mismatch=1" in out,
             "the text status shows the table", out + err)

    with T.case("a restart keeps the policies (spool), no fetch needed"):
        kept = os.path.join(relay.d.spool, "mta-sts", "enf.test")
        T.ok(os.path.exists(kept), "the policy is kept in %s" % kept)
        relay.stop()
        POLICIES.pop("enf.test")               # the policy host now says 404
        before = gets("mta-sts.enf.test", 0)
        relay.start()
        q, _ = one("enf2", "b@enf.test")
        x = final(q)
        T.eq((x.get("status"), x.get("tls_policy"), x.get("tls_verify")),
             ("delivered", "sts-enforce", "verified"),
             "delivered under the kept policy\n" + L.dump())
        T.eq(gets("mta-sts.enf.test", 0), before, "not fetched again "
             "(the TXT id did not change)")
        T.eq(status().get("enf.test", {}).get("mode"), "enforce",
             "status: enforce after the restart")
finally:
    relay.stop()
    web.stop()
    badweb.stop()
    for s in srv.values():
        s.stop()
    ns.stop()
sluice.finish()
