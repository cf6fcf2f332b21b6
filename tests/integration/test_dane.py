#!/usr/bin/python3
# timeout: 240
# Description: DNSSEC and DANE (RFC 7672) against a signed zone tree served
# by nsd and validated by unbound, all on loopback, keys made with
# ldns-keygen and zones signed with ldns-signzone at test time; the trust
# anchor is the DS of the test parent zone dane.test. sluiced asks unbound
# (dns.dnssec: trust-ad). MX hosts are aiosmtpd servers with STARTTLS and
# a certificate made here (openssl), each on its own 127.0.0.x address.
# Zones under dane.test, each with "MX 10 mx" and mx's TLSA records at
# _PORT._tcp.mx (the route's port; TLSA names follow the port dialled):
#  - sec:      signed, TLSA 3 1 1 of the server's key -> delivered, tls_auth
#              dane, tlsa "3 1 1" in the delivery log; a recipient it
#              refuses with 550 bounces, held for its DSN until the same
#              message's other recipient (at a slow plain server) is
#              delivered, after the DANE connection has closed: the
#              bounce's line, written when the DSN is queued from the copy
#              the bounce held, still names that connection's TLS (tls,
#              tls_auth, tlsa);
#  - mismatch: signed, TLSA 3 1 1 of another key -> deferred 4.7.5, the
#              server gets nothing (no plaintext, no unauthenticated TLS);
#  - pkix:     signed, only a PKIX-EE (1 1 1) record, unusable for SMTP ->
#              TLS mandatory, unauthenticated: delivered, tls_auth none;
#  - insec:    an unsigned delegation (no DS), TLSA present but not
#              authenticated -> the route's may: delivered over TLS,
#              tls_auth none; under tls: dane-only -> deferred 4.7.5;
#  - bogus:    signed, the MX RRSIG corrupted -> unbound SERVFAIL ->
#              deferred 4.4.3, nothing dialled;
#  - expired:  signed with signatures that expired in 2020 -> deferred 4.4.3;
#  - tlsafail: signed, the TLSA RRSIG corrupted -> the host is not used
#              (4.4.3), never plaintext;
#  - stripped: signed (its DS in the parent) but served without any
#              signature -> bogus, deferred 4.4.3 (not taken for unsigned);
#  - abovesig, selfsig: an RRSIG whose signer name is forged (the zone
#              above the anchor; the owner itself, no zone cut) -> bogus.
# `sluicectl resolve` shows each answer's status (secure, insecure) and the
# TLSA records. The decision table itself is tests/unit/t_tls_policy.c.
# A second sluiced with dns.dnssec: validate asks nsd directly (no
# validating resolver) with the test's trust anchor and checks the
# signatures itself: it reaches the same outcome as trust-ad on every zone.
# Reference: a private Postfix (bench/postfix-instance) with
# smtp_dns_support_level = dnssec and smtp_tls_security_level = dane, asking
# the same unbound (on 127.0.0.53:53, through PF_RESOLV_CONF with "options
# trust-ad": glibc asks port 53 only), sends to the same zones; for each
# zone both reach the same outcome: delivered with the host authenticated
# by DANE, delivered without authentication, or deferred with nothing
# delivered. Left out (said so) when Postfix is missing or 127.0.0.53:53
# is taken.
import json
import os
import re
import shutil
import subprocess

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
import tlslib

HOSTS = {"sec": "127.0.0.21", "mismatch": "127.0.0.22", "pkix": "127.0.0.23",
         "insec": "127.0.0.24", "bogus": "127.0.0.25", "expired": "127.0.0.26",
         "tlsafail": "127.0.0.27", "stripped": "127.0.0.28",
         "abovesig": "127.0.0.29", "selfsig": "127.0.0.30"}
try:
    PORT = dl.free_port(tuple(HOSTS.values()))
except (RuntimeError, OSError) as e:
    sluice.skip("cannot bind 127.0.0.21-30: %s" % e)

tmp = sluice.tmpdir()
certs = tlslib.Certs(["mx.%s.dane.test" % z for z in HOSTS], ips=tuple(HOSTS.values()))
other = tlslib.Certs(["other.test"])
good = danelib.spki_sha256(certs.cert)
wrong = danelib.spki_sha256(other.cert)

def no_such_user(address, n):
    return "550 5.1.1 No such user" if address.lower().startswith("nobody@") else None


servers = {z: dl.Server(z, addr=a, port=PORT, smtp_kw={"tls_context": certs.server_ctx()},
                        rcpt=no_such_user if z == "sec" else None)
           for z, a in HOSTS.items()}


def child(z, tlsa):
    return dnslib.zone_text("%s.dane.test" % z, [
        "@ IN MX 10 mx", "mx IN A %s" % HOSTS[z],
        "_%d._tcp.mx IN TLSA %s" % (PORT, tlsa)], ttl=5, neg_ttl=5)


children = {}
ds = {}
for z, tlsa, kw in [("sec", "3 1 1 " + good, {}),
                    ("mismatch", "3 1 1 " + wrong, {}),
                    ("pkix", "1 1 1 " + good, {}),
                    ("bogus", "3 1 1 " + good, {"corrupt_type": "MX"}),
                    ("expired", "3 1 1 " + good, {"expired": True}),
                    ("tlsafail", "3 1 1 " + good, {"corrupt_type": "TLSA"})]:
    name = "%s.dane.test" % z
    children[name], ds[name] = danelib.signed_zone(tmp, name, child(z, tlsa), **kw)
children["insec.dane.test"] = child("insec", "3 1 1 " + good)
# Signed, its DS in the parent, but served without signatures (stripped
# on the way): a downgrade that must be bogus, never insecure.
_, ds["stripped.dane.test"] = danelib.signed_zone(
    tmp, "stripped.dane.test", child("stripped", "3 1 1 " + good))
children["stripped.dane.test"] = child("stripped", "3 1 1 " + good)
# Forged signer names: the MX signature claims the zone above the trust
# anchor ("test."), the address signature claims its own name as a zone
# (no cut there): both must be bogus, not insecure.
for z, rtype, prefix, signer in (("abovesig", "MX", "abovesig.", "test."),
                                 ("selfsig", "A", "mx.selfsig.",
                                  "mx.selfsig.dane.test.")):
    text, ds["%s.dane.test" % z] = danelib.signed_zone(
        tmp, "%s.dane.test" % z, child(z, "3 1 1 " + good))
    children["%s.dane.test" % z] = danelib.resign_as(text, rtype, prefix, signer)

zones, anchor = danelib.signed_tree(tmp, "dane.test",
                                   {n: (t, ds.get(n)) for n, t in children.items()})
ns = dnslib.NSD(tmp, zones)
PF = os.path.join(sluice.ROOT, "bench", "postfix-instance")
PF_DNS = "127.0.0.53"
pf_ok = shutil.which("postfix") is not None and os.geteuid() == 0 and \
    danelib.can_bind53(PF_DNS)
if not pf_ok:
    print("NOTE: Postfix, root or %s:53 missing: no Postfix reference run" % PF_DNS)
ub = danelib.Unbound(tmp, ns, list(zones), anchor,
                     extra=("%s@53" % PF_DNS,) if pf_ok else ())

routes = [{"domain": "%s.test" % z, "transport": "smtp:%s.dane.test:%d" % (z, PORT),
           "retry": "1s"} for z in HOSTS]
routes.append({"domain": "only.test", "transport": "smtp:insec.dane.test:%d" % PORT,
               "retry": "1s", "tls": "dane-only"})
routes.append({"domain": "onlysec.test", "transport": "smtp:sec.dane.test:%d" % PORT,
               "retry": "1s", "tls": "dane-only"})
relay = dl.Relay(routes, dns={"resolver": ub.spec, "timeout": "1s", "attempts": "2",
                              "dnssec": "trust-ad"},
                 delivery={"denied_networks": []})          # MX hosts on loopback
L = relay.dlog
# The same zones, validated by sluice itself: dns.dnssec: validate, asking
# nsd directly (no validating resolver), with the test's trust anchor.
anchor_file = os.path.join(tmp, "anchor.ds")
with open(anchor_file, "w") as f:
    f.write(anchor)
vrelay = dl.Relay(routes, dns={"resolver": ns.spec, "timeout": "1s", "attempts": "2",
                               "dnssec": "validate", "trust_anchor": anchor_file},
                  delivery={"denied_networks": []})
VL = vrelay.dlog
# A bounce held past its connection's close: one shard (one list of free
# connection slots), sec.test and a slow plain server (slower than the
# DANE connection's idle_keep, 1 s).
slow = dl.Server("slow", data_delay=3.0)
brelay = dl.Relay([{"domain": "sec.test", "transport": "smtp:sec.dane.test:%d" % PORT,
                    "retry": "1s"},
                   {"domain": "slow.test", "transport": "smtp:[127.0.0.1]:%d" % slow.port,
                    "retry": "1s"}],
                  dns={"resolver": ub.spec, "timeout": "1s", "attempts": "2",
                       "dnssec": "trust-ad"},
                  delivery={"denied_networks": []}, shards=1)


def eq(got, want, what, detail=""):
    T.ok(got == want, what, "expected %r, got %r\n%s" % (want, got, detail))


send = relay.send_one


def first(q, timeout=20):
    got = L.wait_for(lambda x: x.get("qid") == q, timeout)
    return got[0] if got else {}


def got_by(z, tag):
    return servers[z].tagged(tag)


def resolve(name, conf=None):
    p = subprocess.run([sluice.SLUICECTL, "-c", conf or relay.conf, "resolve", "--json",
                        "--port", str(PORT), name],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60,
                       env=sluice.clean_env())
    try:
        return p.returncode, json.loads(p.stdout.decode())
    except ValueError:
        return p.returncode, {"stderr": p.stderr.decode(), "stdout": p.stdout.decode()}


try:
    sent = {z: send(z + "1", "a@%s.test" % z) for z in HOSTS}
    q_only, _ = send("only1", "a@only.test")
    q_onlysec, _ = send("onlysec1", "a@onlysec.test")

    with T.case("secure zone, matching TLSA 3 1 1: DANE-authenticated TLS"):
        x = first(sent["sec"][0])
        eq(x.get("status"), "delivered", "delivered", L.dump())
        eq(x.get("tls_auth"), "dane", "tls_auth: dane")
        eq(x.get("tlsa"), "3 1 1", "the TLSA record that matched")
        eq([m.tls for m in got_by("sec", "sec1")], [True], "the server got it under TLS")

    with T.case("dane-only to a secure zone with TLSA: delivered, dane"):
        x = first(q_onlysec)
        eq((x.get("status"), x.get("tls_auth")), ("delivered", "dane"), "delivered, dane",
             L.dump())

    with T.case("secure zone, TLSA of another key: deferred 4.7.5, nothing sent"):
        x = first(sent["mismatch"][0])
        eq((x.get("status"), x.get("enhanced")), ("deferred", "4.7.5"),
             "deferred 4.7.5", L.dump())
        T.ok("TLS handshake failed" in x.get("text", ""), "says why: %r" % x.get("text"))
        eq(x.get("tls_verify"), "no matching DANE TLSA records", "tls_verify says why")
        eq(got_by("mismatch", "mismatch1"), [], "the server got nothing")

    with T.case("secure zone, only PKIX-EE TLSA: TLS required, not authenticated"):
        x = first(sent["pkix"][0])
        eq(x.get("status"), "delivered", "delivered", L.dump())
        eq(x.get("tls_auth"), "none", "tls_auth: none")
        eq([m.tls for m in got_by("pkix", "pkix1")], [True], "under TLS")

    with T.case("unsigned delegation: may (TLS, unauthenticated)"):
        x = first(sent["insec"][0])
        eq(x.get("status"), "delivered", "delivered", L.dump())
        eq(x.get("tls_auth"), "none", "tls_auth: none (the TLSA is not trusted)")
        T.ok(x.get("tls", "").startswith("TLSv1."), "opportunistic TLS")

    with T.case("unsigned delegation under dane-only: deferred 4.7.5"):
        x = first(q_only)
        eq((x.get("status"), x.get("enhanced")), ("deferred", "4.7.5"),
             "deferred 4.7.5", L.dump())
        eq(got_by("insec", "only1"), [], "nothing reached the host")

    for z, what, ede in (("stripped", "signatures stripped", "DNSKEY Missing"),
                         ("abovesig", "a signer above the anchor", None),
                         ("selfsig", "a signer that is no zone", None),
                         ("bogus", "corrupted MX signature", "DNSSEC Bogus"),
                         ("expired", "expired signatures", "Signature Expired"),
                         ("tlsafail", "corrupted TLSA signature", "DNSSEC Bogus")):
        with T.case("%s: deferred 4.4.3, never dialled" % what):
            x = first(sent[z][0])
            eq((x.get("status"), x.get("enhanced")), ("deferred", "4.4.3"),
                 "deferred 4.4.3", L.dump())
            eq(len(servers[z].conns()), 0, "no connection to its host")
            # unbound's Extended DNS Error (RFC 8914) in the reason.
            T.ok(ede is None or "SERVFAIL (%s)" % ede in x.get("text", "") or
                 "SERVFAIL (%s)" % ede in relay.log_tail(200),
                 "the reason says %r: %r" % (ede, x.get("text")))

    with T.case("a bounce held past its DANE connection's close keeps its TLS"):
        # nobody@sec.test is refused (550) at once; its bounce waits for
        # a@slow.test (3 s) to have one DSN. Meanwhile the connection to
        # sec.test closes (idle_keep) and a second message to slow.test
        # opens a connection in its freed slot: the held line must not
        # point into it.
        b_rcpts = ["nobody@sec.test", "a@slow.test"]
        q_bounce = dl.submit(brelay.port, "s@client.test", b_rcpts,
                             dl.make_message("secb1", "s@client.test", b_rcpts))
        def refusal():
            return [r for r in servers["sec"].rcpt_log() if r[2] == "nobody@sec.test"]
        T.ok(dl.wait_until(refusal, 10), "sec.test refused nobody@",
             repr(servers["sec"].rcpt_log()))
        n = refusal()[0][1] if refusal() else None
        T.ok(dl.wait_until(lambda: any(c.n == n and c.t_close
                                       for c in servers["sec"].conns()), 10),
             "that connection closed", repr(servers["sec"].conns()))
        q2 = dl.submit(brelay.port, "s@client.test", ["b@slow.test"],
                       dl.make_message("slow2", "s@client.test", ["b@slow.test"]))
        BL = brelay.dlog
        got = BL.wait_for(lambda x: x.get("qid") == q_bounce and
                          x.get("to") == "nobody@sec.test", 30)
        x = got[0] if got else {}
        eq((x.get("status"), x.get("enhanced")), ("bounced", "5.1.1"), "bounced 5.1.1",
           BL.dump())
        T.ok(re.match(r"[0-9A-F]{16}$", x.get("dsn_qid", "")),
             "a DSN was queued: %r" % x.get("dsn_qid"))
        eq(BL.last_for(q2).get("status"), "delivered", "the second message delivered")
        T.ok(len(slow.conns()) >= 2, "it went on a second connection to slow.test",
             repr(slow.conns()))
        T.ok(re.match(r"TLSv1\.[23] \S+$", x.get("tls", "")),
             "tls is the version and cipher: %r" % x.get("tls"))
        eq((x.get("tls_auth"), x.get("tlsa")), ("dane", "3 1 1"),
           "tls_auth dane and the TLSA that matched", json.dumps(x))

    with T.case("sluicectl resolve shows DNSSEC status and TLSA"):
        rc, j = resolve("sec.dane.test")
        eq(rc, 0, "exit 0", j)
        eq(j.get("mx_dnssec"), "secure", "the MX answer is secure", j)
        t = (j.get("targets") or [{}])[0]
        eq((t.get("dnssec"), t.get("tlsa_status")), ("secure", "found"),
             "host secure, TLSA found", j)
        eq([r.get("usage") for r in t.get("tlsa", [])], [3], "one TLSA 3 ...", j)
        rc, j = resolve("insec.dane.test")
        eq(j.get("mx_dnssec"), "insecure", "unsigned: insecure", j)
        rc, j = resolve("sec.dane.test", vrelay.conf)
        t = (j.get("targets") or [{}])[0]
        eq((j.get("mx_dnssec"), t.get("dnssec"), t.get("tlsa_status")),
           ("secure", "secure", "found"), "validate: the same marks", j)
        rc, j = resolve("bogus.dane.test", vrelay.conf)
        eq(j.get("mx_dnssec"), "bogus", "validate: the corrupted MX is bogus", j)
        rc, j = resolve("bogus.dane.test")
        eq(rc, 75, "bogus: temporary failure (75)", j)
        T.ok("DNSSEC" in j.get("why", ""), "the reason names DNSSEC: %r" % j.get("why"))
    # What sluice did, per zone: (delivered?, authenticated by DANE?).
    ours = {}
    for z in HOSTS:
        x = first(sent[z][0])
        ours[z] = (x.get("status") == "delivered", x.get("tls_auth") == "dane")

    with T.case("dns.dnssec: validate (sluice checks the signatures, asking nsd "
                "directly) reaches the same outcome per zone"):
        vsent = {}
        for z in HOSTS:
            data = dl.make_message("v" + z, "s@client.test", ["v@%s.test" % z])
            vsent[z] = dl.submit(vrelay.port, "s@client.test", ["v@%s.test" % z], data)
        for z in HOSTS:
            got = VL.wait_for(lambda x, q=vsent[z]: x.get("qid") == q, 20)
            x = got[0] if got else {}
            mine = (x.get("status") == "delivered", x.get("tls_auth") == "dane")
            print("zone %-9s trust-ad: %-16r validate: %r %s %s" % (
                z, ours[z], mine, x.get("enhanced"), x.get("text", "")[:100]))
            eq(mine, ours[z], "zone %s: validate agrees with trust-ad "
               "(delivered, DANE-authenticated)" % z, VL.dump())
            if not ours[z][0]:
                eq(x.get("enhanced"), first(sent[z][0]).get("enhanced"),
                   "zone %s: the same enhanced code" % z)

    if pf_ok:
        with T.case("Postfix (dane, dnssec) reaches the same outcome per zone"):
            inst = sluice.tmpdir()
            os.chmod(inst, 0o755)
            resolv = os.path.join(inst, "resolv.conf")
            with open(resolv, "w") as f:
                f.write("nameserver %s\noptions trust-ad\n" % PF_DNS)
            transport = os.path.join(inst, "transport")
            with open(transport, "w") as f:
                for z in HOSTS:
                    f.write("pf%s.test smtp:%s.dane.test:%d\n" % (z, z, PORT))
            pf_port = dl.free_port()
            env = dict(os.environ, PF_RESOLV_CONF=resolv, PF_TRANSPORT=transport,
                       PF_MAIN_EXTRA="\n".join([
                           "smtp_dns_support_level = dnssec",
                           "smtp_tls_security_level = dane",
                           "smtp_tls_loglevel = 1",
                           "smtp_tls_connection_reuse = no",
                           "relay_domains = %s" % ", ".join("pf%s.test" % z
                                                            for z in HOSTS)]))
            # (relay_domains overrides the instance's empty default.)
            p = subprocess.run([PF, "start", inst, str(pf_port), "mx"], env=env,
                               capture_output=True, text=True, timeout=60)
            T.eq(p.returncode, 0, "Postfix starts: %s" % p.stderr[-300:])
            try:
                for z in HOSTS:
                    data = dl.make_message("pf" + z, "s@client.test", ["a@pf%s.test" % z])
                    dl.submit(pf_port, "s@client.test", ["a@pf%s.test" % z], data)
                log = os.path.join(inst, "maillog")

                def statuses():
                    try:
                        text = open(log, errors="replace").read()
                    except OSError:
                        return {}
                    got = {}
                    for m in re.finditer(r"to=<a@pf(\w+)\.test>.*?dsn=([\d.]+), "
                                         r"status=(\w+)", text):
                        got.setdefault(m.group(1), (m.group(2), m.group(3)))
                    return got
                dl.wait_until(lambda: len(statuses()) == len(HOSTS), 60, 0.5)
                got = statuses()
                text = open(log, errors="replace").read() if os.path.exists(log) else ""
                theirs = {}
                for z in HOSTS:
                    dsn, st = got.get(z, ("?", "?"))
                    verified = re.search(r"Verified TLS connection established to "
                                         r"mx\.%s\.dane\.test" % z, text) is not None
                    theirs[z] = (st == "sent", verified and st == "sent")
                    tl = re.search(r"(\w+) TLS connection established to "
                                   r"mx\.%s\.dane\.test" % z, text)
                    print("zone %-9s sluice: %-9s %-5s Postfix: %s dsn=%s %s TLS" % (
                        z, "delivered" if ours[z][0] else "deferred",
                        "dane" if ours[z][1] else "", st, dsn,
                        tl.group(1) if tl else "no"))
                for z in HOSTS:
                    if not theirs[z][0]:
                        eq(got_by(z, "pf" + z), [], "zone %s: Postfix sent nothing to "
                           "the host" % z)
                    eq(theirs.get(z), ours[z], "zone %s: Postfix and sluice agree "
                       "(delivered, DANE-authenticated)" % z,
                       "\n".join(ln for ln in text.splitlines()
                                  if "pf%s.test" % z in ln or ".%s.dane" % z in ln)[-1500:])
            finally:
                subprocess.run([PF, "stop", inst], timeout=60)
finally:
    vrc = vrelay.stop()
    brc = brelay.stop()
    rc = relay.stop()
    ub.stop()
T.eq(rc, 0, "sluiced exits 0")
T.eq(vrc, 0, "sluiced (validate) exits 0")
T.eq(brc, 0, "sluiced (one shard) exits 0")
sluice.finish()
