#!/usr/bin/python3
# Description: routes in the configuration. A recipient whose route is an
# error: transport is refused at RCPT with that route's text (smtplib sees
# the code), other recipients of the same message are accepted and the
# message is queued for them only; a file with a bad route is refused by
# `sluiced -n` with file:line.
import os
import smtplib

import sluice
from sluice import T

with T.case("error: routes refuse at RCPT"):
    conf = os.path.join(sluice.tmpdir(), "routes.yaml")
    with open(conf, "w") as f:
        f.write("routes:\n"
                "  - domain: gone.example\n"
                "    transport: \"error:550 5.1.1 This domain no longer receives mail\"\n"
                "  - domain: .legacy.example\n"
                "    transport: \"error:Mail for legacy hosts is refused\"\n"
                "  - domain: \"*\"\n"
                "    transport: smtp\n"
                "    preset: relaylim\n")
    d = sluice.Daemon(config=conf)
    s = smtplib.SMTP("127.0.0.1", d.port, timeout=10)
    s.ehlo("client.example")
    s.mail("a@example.com")
    T.eq(s.rcpt("x@gone.example"), (550, b"5.1.1 This domain no longer receives mail"),
         "gone.example refused with its route's text")
    T.eq(s.rcpt("x@host.legacy.example"), (550, b"5.7.1 Mail for legacy hosts is refused"),
         ".legacy.example refuses a subdomain with 550 5.7.1")
    T.eq(s.rcpt("x@legacy.example")[0], 250, ".legacy.example does not cover legacy.example")
    T.eq(s.rcpt("y@example.net")[0], 250, "the * route accepts")
    code, _ = s.data(b"Subject: routed\r\n\r\nhello\r\n")
    T.eq(code, 250, "the message is queued")
    s.quit()
    msgs = d.list()
    T.eq(len(msgs), 1, "one message queued")
    if msgs:
        T.eq(sorted(r["address"] for r in msgs[0]["recipients"]),
             ["x@legacy.example", "y@example.net"], "only the accepted recipients")
    T.eq(d.stop(), 0, "exit 0")

with T.case("a bad route is a config error with file:line"):
    bad = os.path.join(sluice.tmpdir(), "bad.yaml")
    with open(bad, "w") as f:
        f.write("routes:\n  - domain: example.com\n    transport: smpt\n")
    r = sluice.subprocess.run([sluice.SLUICED, "-n", "-c", bad], capture_output=True,
                              text=True, env=sluice.clean_env())
    T.eq(r.returncode, 2, "sluiced -n exits 2")
    T.ok("%s:3:" % bad in r.stderr and "smpt" in r.stderr,
         "the error names the file, line 3 and the transport", r.stderr.strip())

sluice.finish()
