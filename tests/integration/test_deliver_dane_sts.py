#!/usr/bin/python3
# timeout: 180
# Description: DANE (RFC 7672) and MTA-STS (RFC 8461) on the same
# destination, with real delivery to loopback MX hosts. A signed tree
# under dsts.test (ldns-signzone, served by nsd, validated by unbound with
# the parent's DS as its only anchor; sluiced asks unbound, dns.dnssec:
# trust-ad) publishes, for each domain, MX records, TLSA records at
# _PORT._tcp.MXHOST, the _mta-sts TXT record and mta-sts.DOMAIN; an HTTPS
# server on NET.1:443 serves every policy with a certificate from a test
# CA (mta_sts.ca_file). The MX hosts are aiosmtpd servers with STARTTLS.
# The rule (docs/tls.md): an MX host with usable TLSA records is DANE's,
# and MTA-STS is not applied to it; the other MX hosts of the domain stay
# under its policy.
#  - ctl:  enforce, the MX host not in the policy, no TLSA: deferred 4.7.5
#          for MTA-STS, never dialled (the policy is fetched and applied
#          in this setup, so the cases below owe their outcome to DANE);
#  - one:  the same policy, but the MX host has TLSA 3 1 1 of its key:
#          delivered over TLS, tls_auth dane, tls_policy dane, the bytes
#          intact at the host;
#  - bad:  the same, the TLSA record of another key: deferred 4.7.5 with
#          DANE's reason (no matching DANE TLSA records, after dialling
#          the host), nothing reaches the host;
#  - two:  MX 10 mxd (TLSA of its key), MX 20 mxs (no TLSA, a certificate
#          without its name), policy enforce with *.two.dsts.test: the
#          mail goes to mxd under DANE; with mxd stopped, mxs is refused
#          by MTA-STS (deferred 4.7.5, tls_policy sts-enforce, tls_verify
#          hostname mismatch), never used without authentication, and the
#          status counts the failure for two.dsts.test.
import json
import time

import sluice
from sluice import T

try:
    import dnslib
    import danelib
except ImportError as e:
    sluice.skip("dnslib needs dnspython: %s" % e)
if not danelib.have_tools():
    sluice.skip("unbound, nsd, ldns-keygen/ldns-signzone or openssl missing")

import deliverlib as dl
import stslib
import tlslib

NET = stslib.pick_net(("127.0.41.", "127.0.141.", "127.0.241.", "127.0.81."))
WEB = NET + "1"
MX = {"one": NET + "2", "bad": NET + "3", "twod": NET + "4", "twos": NET + "5",
      "ctl": NET + "6"}
try:
    PORT = dl.free_port(tuple(MX.values()))
except (RuntimeError, OSError) as e:
    sluice.skip("no free port on %sx: %s" % (NET, e))

PARENT = "dsts.test"
DOMAINS = ("one", "bad", "two", "ctl")
tmp = sluice.tmpdir()
# The policy hosts' names and the DANE hosts' are in the certificate;
# mxs.two.dsts.test (the host without DANE) is not.
certs = tlslib.Certs(["mta-sts.%s.%s" % (d, PARENT) for d in DOMAINS] +
                     ["mx.one.%s" % PARENT, "mx.bad.%s" % PARENT,
                      "mxd.two.%s" % PARENT, "mx.ctl.%s" % PARENT])
other = tlslib.Certs(["other.test"])
good = danelib.spki_sha256(certs.cert)
wrong = danelib.spki_sha256(other.cert)


def policy(mx):
    return "version: STSv1\r\nmode: enforce\r\nmx: %s\r\nmax_age: 86400\r\n" % mx


POLICIES = {
    "one." + PARENT: policy("other.one." + PARENT),
    "bad." + PARENT: policy("other.bad." + PARENT),
    "two." + PARENT: policy("*.two." + PARENT),
    "ctl." + PARENT: policy("other.ctl." + PARENT),
}
web = stslib.PolicyServer(WEB, certs.server_ctx(), POLICIES)
srv = {h: dl.Server(h, addr=a, port=PORT, smtp_kw={"tls_context": certs.server_ctx()})
       for h, a in MX.items()}


def child(d, recs):
    return dnslib.zone_text("%s.%s" % (d, PARENT), recs + [
        "mta-sts IN A %s" % WEB,
        '_mta-sts IN TXT "v=STSv1; id=%s1;"' % d], ttl=5, neg_ttl=5)


texts = {
    "one": child("one", ["@ IN MX 10 mx", "mx IN A %s" % MX["one"],
                         "_%d._tcp.mx IN TLSA 3 1 1 %s" % (PORT, good)]),
    "bad": child("bad", ["@ IN MX 10 mx", "mx IN A %s" % MX["bad"],
                         "_%d._tcp.mx IN TLSA 3 1 1 %s" % (PORT, wrong)]),
    "two": child("two", ["@ IN MX 10 mxd", "@ IN MX 20 mxs",
                         "mxd IN A %s" % MX["twod"], "mxs IN A %s" % MX["twos"],
                         "_%d._tcp.mxd IN TLSA 3 1 1 %s" % (PORT, good)]),
    "ctl": child("ctl", ["@ IN MX 10 mx", "mx IN A %s" % MX["ctl"]]),
}
children = {}
for d, text in texts.items():
    name = "%s.%s" % (d, PARENT)
    children[name] = danelib.signed_zone(tmp, name, text)
zones, anchor = danelib.signed_tree(tmp, PARENT, children)
ns = dnslib.NSD(tmp, zones)
ub = danelib.Unbound(tmp, ns, list(zones), anchor)

relay = dl.Relay(
    [{"domain": "%s.%s" % (d, PARENT), "transport": "smtp:%s.%s:%d" % (d, PARENT, PORT),
      "retry": "1s"} for d in DOMAINS],
    dns={"resolver": ub.spec, "timeout": "1s", "attempts": "2", "dnssec": "trust-ad"},
    delivery={"denied_networks": []},           # MX and policy hosts on loopback
    extra="mta_sts: {ca_file: %s, wait: 4s, fetch_timeout: 6s}" % json.dumps(certs.ca))
L = relay.dlog


def one(tag, d):
    rcpt = "a@%s.%s" % (d, PARENT)
    data = dl.make_message(tag, "s@client.test", [rcpt])
    return dl.submit(relay.port, "s@client.test", [rcpt], data), data


def first(qid, timeout=20):
    got = L.wait_for(lambda x: x.get("qid") == qid, timeout)
    return got[0] if got else {}


def got(h, tag):
    return [m for m in srv[h].msgs() if m.msgid == "<%s@client.test>" % tag]


def status():
    rc, out, err = relay.d.ctl("status", "--json")
    T.ok(rc == 0, "status --json runs", err)
    try:
        return {x.get("domain"): x for x in json.loads(out).get("mta_sts", [])}
    except ValueError:
        return {}


try:
    with T.case("control: enforce, MX host not in the policy, no TLSA: refused"):
        q, _ = one("ctl1", "ctl")
        x = first(q)
        T.eq((x.get("status"), x.get("code"), x.get("enhanced")),
             ("deferred", 451, "4.7.5"), "deferred 451 4.7.5\n" + L.dump())
        T.ok("MTA-STS policy" in x.get("text", ""), "MTA-STS's reason: %r"
             % x.get("text"))
        T.eq(x.get("tls_policy"), "sts-enforce", "tls_policy sts-enforce")
        T.eq(len(srv["ctl"].conns()), 0, "the MX host was not dialled")

    with T.case("DANE host outside the STS policy: delivered, DANE-authenticated"):
        q, data = one("one1", "one")
        x = first(q)
        T.eq(x.get("status"), "delivered", "delivered\n" + L.dump())
        T.eq((x.get("tls_auth"), x.get("tlsa")), ("dane", "3 1 1"),
             "tls_auth dane, tlsa 3 1 1")
        T.eq(x.get("tls_policy"), "dane", "tls_policy: DANE, not the MTA-STS policy")
        T.eq(x.get("mx"), "mx.one." + PARENT, "to its MX host")
        T.ok(x.get("tls", "").startswith("TLSv1."), "over TLS: %r" % x.get("tls"))
        ms = got("one", "one1")
        T.eq([m.tls for m in ms], [True], "the MX host got it once, under TLS")
        if ms:
            T.eq(dl.check_tail(ms[0].data, data), None, "the bytes are intact")
        # The policy was fetched (the domain's other hosts would be under
        # it), but the DANE host's session is not charged to it.
        st = status().get("one." + PARENT, {})
        T.eq((st.get("mode"), st.get("successful_sessions"), st.get("failures")),
             ("enforce", 0, {}), "status: policy enforce, no session counted "
             "against it (%r)" % st)

    with T.case("DANE host, TLSA of another key: deferred for DANE's reason"):
        q, _ = one("bad1", "bad")
        x = first(q)
        T.eq((x.get("status"), x.get("enhanced")), ("deferred", "4.7.5"),
             "deferred 4.7.5\n" + L.dump())
        T.eq(x.get("tls_verify"), "no matching DANE TLSA records",
             "tls_verify: DANE's failure")
        T.ok("TLS handshake failed" in x.get("text", "") and
             "MTA-STS" not in x.get("text", ""),
             "the reply text is DANE's, not MTA-STS's: %r" % x.get("text"))
        T.eq(x.get("tls_policy"), "dane", "tls_policy dane")
        T.ok(len(srv["bad"].conns()) >= 1, "the host was dialled (DANE tried it; "
             "MTA-STS alone would have skipped it)")
        time.sleep(1.5)                   # a retry (1 s) changes nothing
        T.eq(got("bad", "bad1"), [], "nothing reached the host")

    with T.case("two MX hosts: the DANE one is used, under DANE"):
        q, data = one("two1", "two")
        x = first(q)
        T.eq((x.get("status"), x.get("mx")), ("delivered", "mxd.two." + PARENT),
             "delivered to mxd\n" + L.dump())
        T.eq((x.get("tls_auth"), x.get("tls_policy")), ("dane", "dane"),
             "tls_auth dane, tls_policy dane")
        T.eq([m.tls for m in got("twod", "two1")], [True], "mxd got it under TLS")
        T.eq(len(srv["twos"].conns()), 0, "mxs not dialled")

    with T.case("the DANE host down: the other host is refused by MTA-STS"):
        srv["twod"].stop()
        time.sleep(1.5)                   # past idle_keep: no connection kept
        q, _ = one("two2", "two")
        x = first(q)
        print("two2: %r" % x)
        T.eq((x.get("status"), x.get("enhanced")), ("deferred", "4.7.5"),
             "deferred 4.7.5\n" + L.dump())
        T.eq(x.get("mx"), "mxs.two." + PARENT, "mxs was the last host tried")
        T.ok("TLS handshake failed" in x.get("text", ""), "the reply says the "
             "handshake failed: %r" % x.get("text"))
        T.eq(x.get("tls_policy"), "sts-enforce", "tls_policy sts-enforce")
        T.eq(x.get("tls_verify"), "hostname mismatch",
             "tls_verify: the certificate does not carry mxs's name")
        time.sleep(2)                     # retries (1 s) change nothing
        T.eq(got("twos", "two2"), [], "mxs got nothing, in plaintext or otherwise")
        T.eq([y.get("status") for y in L.lines() if y.get("qid") == q and
              y.get("status") != "deferred"], [], "never delivered")
        st = status().get("two." + PARENT, {})
        T.eq(st.get("mode"), "enforce", "status: two.dsts.test enforce (%r)" % st)
        T.ok(st.get("failures", {}).get("certificate-host-mismatch", 0) >= 1,
             "status: certificate-host-mismatch counted (%r)" % st)
finally:
    relay.stop()
    web.stop()
    for s in srv.values():
        s.stop()
    ub.stop()
    ns.stop()
sluice.finish()
