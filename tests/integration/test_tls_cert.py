#!/usr/bin/python3
# Description: the certificates inbound TLS serves. Without tls.cert,
# sluiced makes a self-signed certificate for its host name in the spool
# at first start (key mode 0600, logged), serves it, and serves the same
# one after a restart (logged as reused). With tls.cert/tls.key (RSA) and
# tls.extra (ECDSA), each client gets the certificate of the key type it
# asked for, and no self-signed one is made. `sluiced -n` refuses a key
# that belongs to another certificate and a certificate that cannot be
# read, naming the file and line; an implicit-TLS listener alone is
# enough to get a certificate.
# timeout: 120
import os
import socket
import ssl
import stat

import sluice
import tlslib
from sluice import T


def served_cert(port, ctx, starttls=True):
    """DER of the certificate the server presents (after STARTTLS)."""
    with tlslib.TlsConn(port) as c:
        c.greet()
        c.ehlo()
        T.code(c.cmd("STARTTLS"), 220, "STARTTLS")
        s = c.starttls(ctx)
        der = s.getpeercert(binary_form=True)
        c.ehlo()
        c.cmd("QUIT")
        return der


def pem_der(path):
    with open(path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


with T.case("a self-signed certificate made at first start, reused after"):
    d = sluice.Daemon("listen.0.tls=starttls")
    cert, key = tlslib.selfsigned_paths(d)
    T.ok(os.path.exists(cert) and os.path.exists(key), "certificate and key in the spool")
    T.eq(stat.S_IMODE(os.stat(key).st_mode), 0o600, "key file mode 0600")
    T.ok("made a self-signed ECDSA P-256 certificate for test.example" in d.log_tail(50),
         "the log says it was made", d.log_tail(10))
    # Verified for the host name: the certificate is for test.example.
    der1 = served_cert(d.port, tlslib.client_ctx(cert))
    T.eq(der1, pem_der(cert), "the certificate served is the one in the spool")
    T.eq(d.stop(), 0, "stop")
    d.start()
    T.ok("using the self-signed certificate in " + cert in d.log_tail(50),
         "after a restart the log says it is reused", d.log_tail(10))
    der2 = served_cert(d.port, tlslib.client_ctx(cert))
    T.eq(der2, der1, "the same certificate after a restart")
    T.eq(d.stop(), 0, "stop")

dir_ = sluice.tmpdir()


def openssl_pair(name, newkey):
    c = os.path.join(dir_, name + "-cert.pem")
    k = os.path.join(dir_, name + "-key.pem")
    rc, out = tlslib.run(["openssl", "req", "-x509", "-newkey", newkey, "-nodes",
                          "-keyout", k, "-out", c, "-days", "2", "-subj", "/CN=test.example",
                          "-addext", "subjectAltName=DNS:test.example"])
    if rc != 0:
        raise RuntimeError("openssl req: " + out)
    return c, k


with T.case("configured RSA and ECDSA certificates, each to the client that asks"):
    rsa_c, rsa_k = openssl_pair("rsa", "rsa:2048")
    ec_k = os.path.join(dir_, "ec-key.pem")
    ec_c = os.path.join(dir_, "ec-cert.pem")
    rc, out = tlslib.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                          "ec_paramgen_curve:P-256", "-nodes", "-keyout", ec_k, "-out", ec_c,
                          "-days", "2", "-subj", "/CN=test.example",
                          "-addext", "subjectAltName=DNS:test.example"])
    T.ok(rc == 0, "an ECDSA certificate made with openssl", out)
    conf = os.path.join(dir_, "tls.yaml")
    with open(conf, "w") as f:
        f.write("tls:\n  cert: %s\n  key: %s\n  extra:\n    - cert: %s\n      key: %s\n"
                "listen:\n  - address: 127.0.0.1:25\n    tls: starttls\n"
                % (rsa_c, rsa_k, ec_c, ec_k))
    d = sluice.Daemon(config=conf, deliver=False)
    T.ok(not os.path.exists(tlslib.selfsigned_paths(d)[0]), "no self-signed certificate made")
    for name, ciphers, want in (("RSA", "ECDHE-RSA-AES256-GCM-SHA384", rsa_c),
                                ("ECDSA", "ECDHE-ECDSA-AES256-GCM-SHA384", ec_c)):
        ctx = tlslib.client_ctx(want)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(ciphers)
        T.eq(served_cert(d.port, ctx), pem_der(want), "TLS 1.2 %s: the %s certificate"
             % (ciphers, name))
    T.eq(d.stop(), 0, "stop")

with T.case("sluiced -n: certificate errors with file and line"):
    bad = os.path.join(dir_, "bad.yaml")
    with open(bad, "w") as f:
        f.write("hostname: mx.test\ntls:\n  cert: %s\n  key: %s\n" % (rsa_c, ec_k))
    rc, out = tlslib.run([sluice.SLUICED, "-n", "-c", bad])
    T.eq(rc, 2, "exit 2")
    T.ok("%s:3: tls.cert: key %s does not belong to certificate %s" % (bad, ec_k, rsa_c) in out,
         "mismatched key named with file and line", out)
    with open(bad, "w") as f:
        f.write("hostname: mx.test\ntls:\n  key: %s\n  cert: %s/nonexistent.pem\n" % (rsa_k, dir_))
    rc, out = tlslib.run([sluice.SLUICED, "-n", "-c", bad])
    T.eq(rc, 2, "exit 2")
    T.ok("%s:4: tls.cert: certificate %s/nonexistent.pem: No such file or directory"
         % (bad, dir_) in out, "unreadable certificate named with file and line", out)
    with open(bad, "w") as f:
        f.write("hostname: mx.test\nlisten:\n  - address: 127.0.0.1:25\n    tls: yes\n")
    rc, out = tlslib.run([sluice.SLUICED, "-n", "-c", bad])
    T.ok(rc == 2 and "%s:4: listen.0.tls: invalid TLS mode" % bad in out,
         "a bad listener mode named with file and line", out)
    with open(bad, "w") as f:
        f.write("hostname: mx.test\ntls:\n  cert: %s\n  key: %s\n" % (rsa_c, rsa_k))
    rc, out = tlslib.run([sluice.SLUICED, "-n", "-c", bad])
    T.ok(rc == 0 and "configuration OK" in out, "a good pair passes", out)

with T.case("an implicit-TLS listener alone gets the self-signed certificate"):
    p_imp, = tlslib.ports(1)
    d = sluice.Daemon(*tlslib.listen_opts(1, p_imp, "implicit"))
    cert, _ = tlslib.selfsigned_paths(d)
    with tlslib.TlsConn(p_imp, tlslib.client_ctx(cert), implicit=True) as c:
        T.line(c.greet(), "220 test.example ESMTP sluice", "greeting over TLS, verified")
    T.eq(d.stop(), 0, "stop")

sluice.finish()
