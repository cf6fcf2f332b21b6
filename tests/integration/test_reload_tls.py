#!/usr/bin/python3
# timeout: 120
# Description: a certificate swap by reload. sluiced serves certificate 1
# (tls.cert/tls.key); a STARTTLS session is opened; the file names change
# to certificate 2 and `sluicectl reload` succeeds: a new TLS connection
# is served certificate 2, and the session opened before the reload keeps
# working over its TLS (a message accepted, 250). Then certificate 2's
# files are overwritten with certificate 3 in place (same names): the
# reload reads them again and new connections get certificate 3. A key
# that does not belong to its certificate is refused, naming the file,
# and certificate 3 stays. Under NOTIFY_SOCKET the reload is announced
# with RELOADING=1 (and MONOTONIC_USEC), then READY=1 naming generation 2.
import os
import shutil
import socket
import ssl
import time

import sluice
import tlslib
from sluice import T


def served_cert(port):
    with tlslib.TlsConn(port) as c:
        c.greet()
        c.ehlo()
        T.code(c.cmd("STARTTLS"), 220, "STARTTLS")
        s = c.starttls(tlslib.client_ctx(None))
        der = s.getpeercert(binary_form=True)
        c.cmd("QUIT")
        return der


def pem_der(path):
    with open(path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


c1 = tlslib.Certs(["one.example"])
c2 = tlslib.Certs(["two.example"])
c3 = tlslib.Certs(["three.example"])
for c in (c1, c2, c3):
    os.chmod(c.key, 0o600)
dir_ = sluice.tmpdir()
conf = os.path.join(dir_, "sluice.yaml")
# Certificate 2 goes where the reload will look; 3 overwrites it later.
cert2, key2 = os.path.join(dir_, "cert2.pem"), os.path.join(dir_, "key2.pem")
shutil.copy(c2.cert, cert2)
shutil.copy(c2.key, key2)
os.chmod(key2, 0o600)


def config(cert, key):
    with open(conf, "w") as f:
        f.write("listen:\n"
                "  - address: 127.0.0.1:1\n"     # the helper sets the port
                "    tls: starttls\n"
                "tls: {cert: %s, key: %s}\n" % (cert, key))


config(c1.cert, c1.key)
# The service manager's side of NOTIFY_SOCKET: what sluiced tells it.
nsock_path = os.path.join(dir_, "notify.sock")
nsock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
nsock.bind(nsock_path)
nsock.settimeout(0.2)
d = sluice.Daemon(config=conf, deliver=False, env={"NOTIFY_SOCKET": nsock_path})


def notified(until, timeout=10):
    """Messages received until one has the line `until` (bounded)."""
    got, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            m = nsock.recv(4096).decode()
        except socket.timeout:
            continue
        got.append(m)
        if until in m.split("\n"):
            break
    return got

with T.case("before: certificate 1"):
    T.eq(served_cert(d.port), pem_der(c1.cert), "the certificate served")

with T.case("reload to certificate 2; the open TLS session goes on"):
    old = tlslib.TlsConn(d.port)
    old.greet()
    old.ehlo()
    T.code(old.cmd("STARTTLS"), 220, "STARTTLS")
    old.starttls(tlslib.client_ctx(None))
    old.ehlo()
    config(cert2, key2)
    notified("READY=1")                      # the start's
    rc, out, err = d.ctl("reload")
    T.eq(rc, 0, "sluicectl reload exits 0: " + out + err)
    T.ok("tls" in out, "the summary says tls changed", out)
    msgs = notified("STATUS=configuration generation 2")
    T.ok(len(msgs) >= 2 and "RELOADING=1" in msgs[0].split("\n") and
         any(ln.startswith("MONOTONIC_USEC=") for ln in msgs[0].split("\n")),
         "NOTIFY_SOCKET: RELOADING=1 with MONOTONIC_USEC first", repr(msgs))
    T.ok(msgs and "READY=1" in msgs[-1].split("\n"),
         "then READY=1 with the generation", repr(msgs))
    T.eq(served_cert(d.port), pem_der(c2.cert), "a new connection gets certificate 2")
    T.code(old.cmd("MAIL FROM:<a@example.com>"), 250, "old session: MAIL")
    T.code(old.cmd("RCPT TO:<b@example.net>"), 250, "old session: RCPT")
    T.code(old.cmd("DATA"), 354, "old session: DATA")
    old.send(b"Subject: across a reload\r\n\r\nhello\r\n.\r\n")
    T.prefix(old.reply(), "250 2.0.0", "old session: its message is accepted")
    old.cmd("QUIT")
    old.close()

with T.case("the same file names, new contents: read again"):
    shutil.copy(c3.cert, cert2)
    shutil.copy(c3.key, key2)
    rc, out, err = d.ctl("reload")
    T.eq(rc, 0, "sluicectl reload exits 0: " + out + err)
    T.eq(served_cert(d.port), pem_der(c3.cert), "a new connection gets certificate 3")

with T.case("a key of another certificate is refused"):
    config(cert2, c1.key)
    rc, out, err = d.ctl("reload")
    T.ok(rc != 0, "sluicectl reload exits non-zero", "rc %d" % rc)
    T.ok(conf + ":" in err and c1.key in err, "the error names the file, line and key", err)
    T.eq(served_cert(d.port), pem_der(c3.cert), "certificate 3 is still served")

with T.case("stop"):
    T.eq(d.stop(), 0, "exit 0")

sluice.finish()
