#!/usr/bin/python3
# timeout: 120
# Description: DKIM key rotation by reload. sluiced signs mail from
# example.com with selector s1; the dkim entry is replaced by a new key
# with selector s2 and `sluicectl reload` succeeds (its summary says
# dkim): mail sent afterwards carries s=s2 and verifies (dkimpy) against
# s2's record, while a session opened before the reload still signs with
# s1 (verified against s1's record).
# A reload that removes every key stops signing, and one that names a key
# file that does not exist is refused with file and line, the running
# keys staying in force.
import os
import re

import sluice
from sluice import T

import deliverlib as dl

try:
    import dkim
except ImportError:
    T.ok(False, "python3-dkim is installed (make test installs it)")
    sluice.finish()

d = sluice.tmpdir()
keys = {sel: sluice.dkim_keygen(d, sel) for sel in ("s1", "s2")}
dnsfunc = sluice.dkim_dns(keys)


sink = dl.Server("sink")
relay = dl.Relay([{"domain": "dest.test", "transport": "smtp:[127.0.0.1]:%d" % sink.port}],
                 start=False)


def config(sel=None, path=None):
    lines = ["spool: %s" % relay.d.spool, "shards: 2", "hostname: sluice.test",
             'listen: [{address: "127.0.0.1:%d"}]' % relay.port,
             "delivery: {log: %s}" % relay.dlog_path,
             "routes:",
             '  - {domain: dest.test, transport: "smtp:[127.0.0.1]:%d"}' % sink.port]
    if sel:
        lines += ["dkim:",
                  "  - {domain: example.com, selector: %s, key: %s, algorithm: ed25519}"
                  % (sel, path or keys[sel][0])]
    with open(relay.conf, "w") as f:
        f.write("\n".join(lines) + "\n")


def send(tag):
    body = ("From: Joe <joe@example.com>\r\nTo: x@dest.test\r\nSubject: %s\r\n"
            "Message-ID: <%s@example.com>\r\n\r\nhello %s\r\n" % (tag, tag, tag)).encode()
    dl.submit(relay.port, "joe@example.com", ["x@dest.test"], body)
    ok = dl.wait_until(lambda: any(dl.message_id(m.data) == dl.message_id(body)
                                   for m in sink.msgs()), 15)
    if not ok:
        return None
    return [m.data for m in sink.msgs() if dl.message_id(m.data) == dl.message_id(body)][0]


def selectors(data):
    return re.findall(rb"DKIM-Signature:[^\r]*(?:\r\n[ \t][^\r]*)*", data)


def sel_of(data):
    sigs = selectors(data)
    m = [re.search(rb"\bs=([a-z0-9]+)", s) for s in sigs]
    return [x.group(1).decode() for x in m if x]


config("s1")
relay.start()

with T.case("signed with s1 at start"):
    m1 = send("one")
    T.ok(m1 is not None, "delivered")
    T.eq(sel_of(m1 or b""), ["s1"], "one signature, s=s1")
    T.ok(m1 is not None and dkim.verify(m1, dnsfunc=dnsfunc), "it verifies against s1's record")

with T.case("rotated to s2 by reload"):
    old = sluice.connect(relay.port)        # a session of generation 1
    config("s2")
    rc, out, err = relay.d.ctl("reload")
    T.eq(rc, 0, "sluicectl reload exits 0: " + out + err)
    T.ok("dkim" in out, "the summary says dkim", out)
    m2 = send("two")
    T.eq(sel_of(m2 or b""), ["s2"], "mail sent after it: s=s2")
    T.ok(m2 is not None and dkim.verify(m2, dnsfunc=dnsfunc), "it verifies against s2's record")
    # The session opened before the reload signs with the keys it began with.
    body = (b"From: Joe <joe@example.com>\r\nTo: x@dest.test\r\nSubject: old\r\n"
            b"Message-ID: <old-session@example.com>\r\n\r\nhello\r\n")
    T.code(old.cmd("MAIL FROM:<joe@example.com>"), 250)
    T.code(old.cmd("RCPT TO:<x@dest.test>"), 250)
    T.code(old.cmd("DATA"), 354)
    old.send(body + b".\r\n")
    T.prefix(old.reply(), "250 2.0.0", "the older session's message is accepted")
    old.cmd("QUIT")
    old.close()
    ok = dl.wait_until(lambda: any(dl.message_id(m.data) == dl.message_id(body)
                                   for m in sink.msgs()), 15)
    m_old = [m.data for m in sink.msgs() if dl.message_id(m.data) == dl.message_id(body)]
    T.eq(sel_of(m_old[0] if m_old else b""), ["s1"], "the older session's message: s=s1")
    T.ok(m_old and dkim.verify(m_old[0], dnsfunc=dnsfunc), "it verifies against s1's record")

with T.case("a missing key file is refused; s2 stays"):
    config("s3", path=os.path.join(d, "missing.pem"))
    rc, out, err = relay.d.ctl("reload")
    T.ok(rc != 0, "sluicectl reload exits non-zero", "rc %d" % rc)
    T.ok(relay.conf + ":" in err and "missing.pem" in err, "the error names file, line, key", err)
    T.eq(sel_of(send("three") or b""), ["s2"], "still signed with s2")

with T.case("no keys: no signature"):
    config(None)
    rc, out, err = relay.d.ctl("reload")
    T.eq(rc, 0, "sluicectl reload exits 0: " + out + err)
    T.eq(sel_of(send("four") or b"x"), [], "not signed")
    T.eq(relay.stop(), 0, "daemon exits 0")

sluice.finish()
