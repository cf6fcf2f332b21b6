#!/usr/bin/python3
# timeout: 150
# Description: outbound TLS to a real Postfix smtpd with TLS on
# (bench/postfix-instance with smtpd_tls_cert_file/key_file from a
# certificate this test makes with openssl): under the default policy
# (may) sluice says STARTTLS and delivers over TLS 1.3, the delivery log
# and Postfix's own log ("TLS connection established") both say so, and
# the messages come out of Postfix at the sink intact; under verify with
# the CA file and the certificate's name the log says "verified"; under
# verify with a name the certificate does not carry the message is
# deferred with 4.7.5 and Postfix never gets it.
import os
import re
import shutil
import subprocess
import time

import sluice
from sluice import T

import deliverlib as dl
import tlslib
from benchlib import Sink

PF = os.path.join(sluice.ROOT, "bench", "postfix-instance")
if shutil.which("postfix") is None:
    sluice.skip("Postfix is not installed")

certs = tlslib.Certs(["smtp.pf.test"])
store = sluice.tmpdir()
sink = Sink("--store", store)
inst = sluice.tmpdir()
os.chmod(inst, 0o755)               # Postfix's daemons run as postfix
pf_port = dl.free_port()
env = dict(os.environ, PF_MAIN_EXTRA="\n".join([
    "smtpd_tls_cert_file = %s" % certs.cert,
    "smtpd_tls_key_file = %s" % certs.key,
    "smtpd_tls_security_level = may",
    "smtpd_tls_loglevel = 1"]))
subprocess.run([PF, "start", inst, str(pf_port), "127.0.0.1:%d" % sink.port],
               check=True, stdout=subprocess.DEVNULL, env=env)

hop = "smtp:[127.0.0.1]:%d" % pf_port
relay = dl.Relay([
    {"domain": "may.pf.test", "transport": hop, "retry": "1s"},
    {"domain": "verify.pf.test", "transport": hop, "retry": "1s",
     "tls": "verify", "tls_name": "smtp.pf.test", "tls_ca_file": certs.ca},
    {"domain": "wrong.pf.test", "transport": hop, "retry": "1s",
     "tls": "verify", "tls_name": "mx.elsewhere.test", "tls_ca_file": certs.ca},
])
L = relay.dlog


def one(tag, rcpt, size=2000):
    return relay.send_one(tag, rcpt, size=size, leading_dots=True)


def final(qid):
    return L.last_for(qid, 30)


def at_sink(tag, timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for m in sink.log_lines()[0]:
            with open(os.path.join(store, m["id"] + ".eml"), "rb") as f:
                got = f.read()
            if dl.message_id(got) == "<%s@client.test>" % tag:
                return got
        time.sleep(0.2)
    return None


def maillog():
    with open(os.path.join(inst, "maillog"), errors="replace") as f:
        return f.read()


try:
    with T.case("may: STARTTLS to Postfix, TLS 1.3, the message intact"):
        sent = {}
        qs = []
        for i, size in enumerate((2000, 300000)):
            q, sent["pm%d" % i] = one("pm%d" % i, "r%d@may.pf.test" % i, size)
            qs.append(q)
        for q in qs:
            x = final(q)
            T.ok(x.get("status") == "delivered", "%s delivered" % q, L.dump())
            T.ok(x.get("tls", "").startswith("TLSv1.3 "),
                 "the log says TLSv1.3: %r" % x.get("tls"))
        for tag, data in sent.items():
            got = at_sink(tag)
            T.ok(got is not None, "%s reached the sink through Postfix" % tag)
            if got is not None:
                T.eq(dl.check_tail(got, data), None, "%s intact" % tag)
        T.ok(dl.wait_until(lambda: re.search(
            r"smtpd\[\d+\]: .*TLS connection established from "
            r"localhost\[127\.0\.0\.1\]: TLSv1\.3", maillog()), 10),
            "Postfix's log: TLS connection established, TLSv1.3",
            maillog()[-1500:])

    with T.case("verify: the CA file and the certificate's name"):
        q, data = one("pv1", "a@verify.pf.test")
        x = final(q)
        T.ok(x.get("status") == "delivered", "delivered", L.dump())
        T.eq(x.get("tls_verify"), "verified", "tls_verify: verified")
        T.ok(at_sink("pv1") is not None, "it reached the sink")

    with T.case("verify: a name the certificate does not carry"):
        q, _ = one("pw1", "a@wrong.pf.test")
        x = final(q)
        T.ok((x.get("status"), x.get("enhanced")) == ("deferred", "4.7.5"),
             "deferred with 4.7.5", L.dump())
        T.eq(x.get("tls_verify"), "hostname mismatch", "tls_verify says why")
        T.ok(at_sink("pw1", timeout=2) is None, "Postfix never got it")
finally:
    subprocess.run([PF, "stop", inst], stdout=subprocess.DEVNULL)
    sink.stop()

T.eq(relay.stop(), 0, "sluiced exits 0 on SIGTERM")
sluice.finish()
