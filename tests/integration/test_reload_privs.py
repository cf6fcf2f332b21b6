#!/usr/bin/python3
# timeout: 120
# Description: a reload runs as the unprivileged user. sluiced starts as
# root with `user: sluice` and a TLS key that only root may read (root's,
# mode 0600): the start reads it. A reload then cannot, and is refused:
# sluicectl exits 1 and says which file and "Permission denied", with the
# pointer to the docs; the certificate in force is still served. Once the
# key is the user's (chown, still 0600) the same reload succeeds. A
# listener added on a port below 1024 is refused, saying that a privileged
# port needs a restart; mail still flows. The test creates the system
# user `sluice` if it is missing (as `make test` does).
import os
import random
import ssl

import sluice
import tlslib
from sluice import T

import deliverlib as dl

USER = "sluice"
pw = sluice.system_user(USER)

certs = tlslib.Certs(["one.example"])
os.chown(certs.key, 0, 0)
os.chmod(certs.key, 0o600)
sink = dl.Server("sink")
relay = dl.Relay([{"domain": "dest.test", "transport": "smtp:[127.0.0.1]:%d" % sink.port}],
                 start=False)
relay.d.user = USER
os.chmod(relay.d.dir, 0o755)


def low_port():
    """A free port below 1024 (bounded tries)."""
    for _ in range(50):
        p = random.randint(600, 1000)
        try:
            s = __import__("socket").socket()
            s.bind(("127.0.0.1", p))
            s.close()
            return p
        except OSError:
            continue
    raise RuntimeError("no free port below 1024")


def config(extra_port=None):
    lines = ["spool: %s" % relay.d.spool, "shards: 2", "hostname: sluice.test",
             "listen:", "  - {address: \"127.0.0.1:%d\", tls: starttls}" % relay.port]
    if extra_port:
        lines.append("  - {address: \"127.0.0.1:%d\"}" % extra_port)
    lines += ["tls: {cert: %s, key: %s}" % (certs.cert, certs.key),
              "delivery: {log: %s}" % relay.dlog_path,
              "routes:",
              '  - {domain: dest.test, transport: "smtp:[127.0.0.1]:%d", retry: 1s}' % sink.port]
    with open(relay.conf, "w") as f:
        f.write("\n".join(lines) + "\n")


def served_cert():
    with tlslib.TlsConn(relay.port) as c:
        c.greet()
        c.ehlo()
        T.code(c.cmd("STARTTLS"), 220, "STARTTLS")
        der = c.starttls(tlslib.client_ctx(None)).getpeercert(binary_form=True)
        c.cmd("QUIT")
        return der


with open(certs.cert) as f:
    CERT = ssl.PEM_cert_to_DER_cert(f.read())
config()

with T.case("started as root, running as the user, with a root-only key"):
    relay.start()
    T.eq(served_cert(), CERT, "the certificate is served")

with T.case("a reload cannot read the root-only key: refused"):
    rc, out, err = relay.d.ctl("reload")
    T.eq(rc, 1, "sluicectl reload exits 1")
    T.ok(certs.key in err and "Permission denied" in err, "it names the file and why", err)
    T.ok("docs/operations.md" in err, "and where to read about it", err)
    T.ok("refused; configuration generation 1 stays" in relay.log_tail(30),
         "the daemon logs the refusal", relay.log_tail(10))
    T.eq(served_cert(), CERT, "the certificate is still served")

with T.case("the key given to the user: the reload succeeds"):
    os.chown(certs.key, pw.pw_uid, pw.pw_gid)
    rc, out, err = relay.d.ctl("reload")
    T.eq(rc, 0, "sluicectl reload exits 0: " + out + err)
    T.ok(out.startswith("generation 2: "), "generation 2", out)
    T.eq(served_cert(), CERT, "the certificate is served")

with T.case("a listener on a port below 1024 needs a restart"):
    p = low_port()
    config(extra_port=p)
    rc, out, err = relay.d.ctl("reload")
    T.eq(rc, 1, "sluicectl reload exits 1")
    T.ok("cannot listen on 127.0.0.1:%d" % p in err and "privileged port needs a restart" in err,
         "it names the listener and why", err)
    body = dl.make_message("after", "from@client.test", ["to@dest.test"])
    T.ok(dl.submit(relay.port, "from@client.test", ["to@dest.test"], body), "mail still flows")
    T.ok(dl.wait_until(lambda: sink.count() >= 1, 15), "and is delivered")
    T.eq(relay.stop(), 0, "daemon exits 0")

sluice.finish()
