#!/usr/bin/python3
# Description: every refusal is logged (Postfix's "reject:" lines): a
# relay attempt (RCPT, 554 5.7.1, with the sender and HELO name), an
# unknown command (500), a connection over connections_per_client
# (CONNECT, 421); log.format json writes one parseable object a line with
# ts, level, program and msg; log.level warn drops the info lines (the
# queued message's line) but keeps warnings; a bad level or format is a
# configuration error naming the key.
import json
import smtplib
import subprocess
import time

import sluice
from sluice import T


def log_of(d):
    with open(d.log, encoding="utf-8", errors="replace") as f:
        return f.read()


def wait_log(d, needle, timeout=5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in log_of(d):
            return True
        time.sleep(0.05)
    return False


with T.case("text: refusals are logged with client, command, reply"):
    d = sluice.Daemon("allowed_networks=[]", "limits.connections_per_client=1")
    s = smtplib.SMTP("127.0.0.1", d.port, local_hostname="client.example", timeout=10)
    s.ehlo()
    s.mail("a@example.com")
    code, _ = s.rcpt("x@remote.example")
    T.eq(code, 554, "relay refused")
    T.ok(wait_log(d, "reject: RCPT from [127.0.0.1]: 554 5.7.1 <x@remote.example>"),
         "the RCPT refusal is logged")
    T.ok("from=<a@example.com> helo=<client.example>" in log_of(d),
         "with the sender and HELO name")
    code, _ = s.docmd("FROBNICATE")
    T.eq(code, 500, "unknown command")
    T.ok(wait_log(d, "reject: unknown command from [127.0.0.1]: 500 5.5.2"),
         "the unknown command is logged")
    c2 = sluice.Conn(d.port)
    g = c2.reply()
    T.eq(g.code, 421, "second connection over the per-client limit: 421")
    c2.close()
    T.ok(wait_log(d, "reject: CONNECT from [127.0.0.1]: 421 4.7.0 too many connections"),
         "the refused connection is logged")
    s.quit()
    T.eq(d.stop(), 0, "stop")

with T.case("json: one object a line"):
    d = sluice.Daemon("allowed_networks=[]", "log.format=json")
    s = smtplib.SMTP("127.0.0.1", d.port, local_hostname="client.example", timeout=10)
    s.ehlo()
    s.mail("a@example.com")
    s.rcpt("x@remote.example")
    s.quit()
    T.ok(wait_log(d, "Relay access denied"), "refusal logged")
    T.eq(d.stop(), 0, "stop")
    objs, bad = [], []
    for ln in log_of(d).splitlines():
        if ln.startswith("=== start"):
            continue            # the test harness's own marker
        try:
            objs.append(json.loads(ln))
        except ValueError:
            bad.append(ln)
    T.eq(bad, [], "every line is JSON")
    rej = [o for o in objs if o.get("msg", "").startswith("reject: RCPT")]
    T.eq(len(rej), 1, "one reject object")
    if rej:
        o = rej[0]
        T.eq((o.get("level"), o.get("program")), ("info", "sluiced"), "level and program")
        T.ok(isinstance(o.get("ts"), str) and o["ts"].endswith("Z") and "T" in o["ts"],
             "an RFC 3339 UTC timestamp: %r" % o.get("ts"))
    T.ok(any(o.get("msg", "").startswith("ready:") for o in objs), "the ready line too")

with T.case("level warn: no info lines"):
    d = sluice.Daemon("log.level=warn")
    s = smtplib.SMTP("127.0.0.1", d.port, local_hostname="client.example", timeout=10)
    s.sendmail("a@example.com", ["b@example.net"], b"Subject: x\r\n\r\nx\r\n")
    s.quit()
    T.eq(d.count(), 1, "the message is queued")
    T.eq(d.stop(), 0, "stop")
    text = log_of(d)
    T.ok("client=[127.0.0.1]" not in text and "ready:" not in text,
         "no info lines at level warn")

with T.case("bad values are configuration errors"):
    for opt, key in (("log.level=loud", "log.level"), ("log.format=xml", "log.format")):
        p = subprocess.run([sluice.SLUICED, "-o", opt, "-n"], capture_output=True,
                           text=True, timeout=30, env=sluice.clean_env())
        T.ok(p.returncode == 2 and key in p.stderr, "%s: exit 2 naming the key: %s"
             % (opt, p.stderr.strip()))

sluice.finish()
