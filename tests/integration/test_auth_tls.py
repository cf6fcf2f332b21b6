#!/usr/bin/python3
# timeout: 120
# Description: SMTP AUTH over TLS, as mail clients use it on 587 and 465.
# On a listener with tls: starttls (and no auth_insecure) EHLO offers AUTH
# only after STARTTLS; smtplib starttls() + login() relays, and the stored
# message's Received says ESMTPSA with the TLS version; a login made
# before STARTTLS (on a listener that allows it in plaintext) is forgotten
# by STARTTLS (RFC 3207), so MAIL to a remote recipient is refused until
# the client logs in again; swaks --tls --auth PLAIN and --tls-on-connect
# --auth LOGIN deliver to the queue; a wrong password over TLS gets 535.
# The log line of each queued message names the user (sasl_username=).
import os
import smtplib
import subprocess
import time

import sluice
from sluice import T

import tlslib

PASSWORD = "a long pass phrase"


def hash_password(pw):
    p = subprocess.run([sluice.SLUICECTL, "hash-password"], input=pw + "\n",
                       capture_output=True, text=True, timeout=30,
                       env=sluice.clean_env())
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


ports = []
while len(ports) < 3:
    p = sluice.free_port()
    if p not in ports:
        ports.append(p)
    time.sleep(0.002)
starttls_port, insecure_port, implicit_port = ports
conf = os.path.join(sluice.tmpdir(), "auth_tls.yaml")
with open(conf, "w") as f:
    f.write("listen:\n"
            "  - address: 127.0.0.1:%d\n"
            "    tls: starttls\n"
            "    auth: optional\n"
            "  - address: 127.0.0.1:%d\n"
            "    tls: starttls\n"
            "    auth: optional\n"
            "    auth_insecure: true\n"
            "  - address: 127.0.0.1:%d\n"
            "    tls: implicit\n"
            "    auth: required\n"
            "allowed_networks: []\n"
            "users:\n"
            "  - name: carol\n"
            "    password: '%s'\n"
            % (starttls_port, insecure_port, implicit_port, hash_password(PASSWORD)))
d = sluice.Daemon(config=conf, deliver=False, port=starttls_port)
ctx = tlslib.client_ctx(None)
queued = 0

with T.case("AUTH only after STARTTLS; login over TLS relays; ESMTPSA"):
    s = smtplib.SMTP("127.0.0.1", starttls_port, local_hostname="client.example", timeout=10)
    s.ehlo()
    T.ok(s.has_extn("starttls"), "STARTTLS offered")
    T.ok(not s.has_extn("auth"), "AUTH not offered before TLS")
    code, _ = s.docmd("AUTH", "PLAIN")
    T.eq(code, 538, "AUTH before TLS: 538")
    s.starttls(context=ctx)
    s.ehlo()
    T.ok(s.has_extn("auth"), "AUTH offered over TLS")
    T.eq(s.login("carol", PASSWORD)[0], 235, "login over TLS: 235")
    body = b"Subject: over tls\r\n\r\nhi\r\n"
    T.eq(s.sendmail("carol@example.com", ["x@remote.example"], body), {}, "relayed")
    queued += 1
    s.quit()
    T.eq(d.count(), queued, "queued")
    ls = d.list()
    qid = ls[-1]["id"] if ls else None
    data = d.cat(qid) if qid else b""
    T.ok(b"with ESMTPSA" in (data or b""), "Received: with ESMTPSA",
         (data or b"")[:400].decode("latin-1"))
    T.ok(b"version=TLSv1.3" in (data or b""), "Received: names TLS 1.3")
    log = open(d.log).read()
    T.ok(("%s: client=[127.0.0.1]" % qid) in log and "sasl_username=carol" in log,
         "the queued line names the TLS and the user")

with T.case("STARTTLS forgets a plaintext login"):
    s = smtplib.SMTP("127.0.0.1", insecure_port, local_hostname="client.example", timeout=10)
    s.ehlo()
    T.eq(s.login("carol", PASSWORD)[0], 235, "login in plaintext (auth_insecure)")
    s.starttls(context=ctx)
    s.ehlo()
    s.mail("carol@example.com")
    code, msg = s.rcpt("x@remote.example")
    T.eq(code, 554, "after STARTTLS the login is gone: relay refused")
    s.rset()
    T.eq(s.login("carol", PASSWORD)[0], 235, "login again over TLS")
    s.quit()

with T.case("a wrong password over TLS: 535 5.7.8"):
    s = smtplib.SMTP("127.0.0.1", starttls_port, local_hostname="client.example", timeout=10)
    s.ehlo()
    s.starttls(context=ctx)
    s.ehlo()
    try:
        s.login("carol", "not it")
        T.fail("a wrong password is refused")
    except smtplib.SMTPAuthenticationError as e:
        T.eq(e.smtp_code, 535, "535")
        T.ok(b"5.7.8" in e.smtp_error, "5.7.8")
    s.close()


def swaks(*args):
    p = subprocess.run(["swaks", "--server", "127.0.0.1", "--from", "carol@example.com",
                        "--to", "y@remote.example", "--auth-user", "carol",
                        "--auth-password", PASSWORD, "--timeout", "20"] + list(args),
                       capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout + p.stderr


with T.case("swaks --tls --auth PLAIN (587 style)"):
    rc, out = swaks("--port", str(starttls_port), "--tls", "--auth", "PLAIN")
    T.eq(rc, 0, "swaks exits 0: " + out[-600:])
    T.ok("235 2.7.0" in out, "authenticated over TLS")
    queued += 1

with T.case("swaks --tls-on-connect --auth LOGIN (465 style, auth required)"):
    rc, out = swaks("--port", str(implicit_port), "--tls-on-connect", "--auth", "LOGIN")
    T.eq(rc, 0, "swaks exits 0: " + out[-600:])
    queued += 1
    T.eq(d.count(), queued, "both queued")

T.eq(d.stop(), 0, "graceful stop")
sluice.finish()
