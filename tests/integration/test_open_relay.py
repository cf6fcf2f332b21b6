#!/usr/bin/python3
# Description: no open relay. A client outside allowed_networks that has
# not authenticated may only send to relay_domains, by their literal
# address: other domains, source routes, the percent hack, bang paths,
# quoted local parts with '@' or '%', address literals, upper case and
# trailing dots, bare addresses without <> are all refused (554 5.7.1, or
# 501 for what is not an address at all), and nothing is queued for them.
# The same client relays once authenticated; a client in allowed_networks
# relays without AUTH.
import base64
import smtplib

import sluice
from sluice import T

PW = "relay test password"
h = sluice.subprocess.run([sluice.SLUICECTL, "hash-password"], input=PW + "\n",
                          capture_output=True, text=True, timeout=30,
                          env=sluice.clean_env()).stdout.strip()
conf = sluice.os.path.join(sluice.tmpdir(), "relay.yaml")
with open(conf, "w") as f:
    f.write("listen:\n"
            "  - address: 127.0.0.1:1\n"
            "    auth: optional\n"
            "    auth_insecure: true\n"
            "allowed_networks: [127.0.0.9/32]\n"
            "relay_domains: [local.example, .sub.local.example]\n"
            "limits:\n"
            "  errors: 100\n"
            "users:\n"
            "  - name: user\n"
            "    password: '%s'\n" % h)
d = sluice.Daemon(config=conf, deliver=False)

# (recipient as sent, expected reply line)
DENIED = "554 5.7.1 <%s>: Relay access denied"
cases = [
    ("<u@local.example>", "250 2.1.5 Ok"),
    ("<U@LOCAL.EXAMPLE>", "250 2.1.5 Ok"),
    ("<u@local.example.>", "250 2.1.5 Ok"),
    ("<u@a.sub.local.example>", "250 2.1.5 Ok"),
    ("<\"two words\"@local.example>", "250 2.1.5 Ok"),
    # The source route is dropped (RFC 5321 4.1.2): judged by what is left.
    ("<@other.example:u@local.example>", "250 2.1.5 Ok"),
    ("<u@other.example>", DENIED % "u@other.example"),
    ("<u@OTHER.EXAMPLE.>", DENIED % "u@OTHER.EXAMPLE."),
    ("<@local.example:u@other.example>", DENIED % "u@other.example"),
    ("<@local.example,@a.sub.local.example:u@other.example>", DENIED % "u@other.example"),
    ("<u%other.example@local.example>", DENIED % "u%other.example@local.example"),
    ("<other.example!u@local.example>", DENIED % "other.example!u@local.example"),
    ("<\"u@other.example\"@local.example>", DENIED % "\"u@other.example\"@local.example"),
    ("<\"u%other.example\"@local.example>", DENIED % "\"u%other.example\"@local.example"),
    ("<u@sub.local.example>", DENIED % "u@sub.local.example"),
    ("<u@local.example.other.example>", DENIED % "u@local.example.other.example"),
    ("<u@notlocal.example>", DENIED % "u@notlocal.example"),
    ("<u@[127.0.0.1]>", DENIED % "u@[127.0.0.1]"),
    ("<u@[IPv6:::1]>", DENIED % "u@[IPv6:::1]"),
    ("<postmaster>", DENIED % "postmaster"),
    ("u@other.example", "501 5.5.4 Syntax: RCPT TO:<address>"),
    ("u@local.example", "501 5.5.4 Syntax: RCPT TO:<address>"),
    ("<u@other.example> <u@local.example>", "555 5.5.4 Unsupported option: <u@local.example>"),
    ("<u@local.example..>", "501 5.1.3 Bad recipient address syntax"),
    ("<u@local.example@other.example>", None),     # refused, one way or another
]

with T.case("an outside client without AUTH"):
    with sluice.connect(d.port) as c:
        T.code(c.cmd("MAIL FROM:<someone@outside.example>"), 250, "MAIL")
        accepted = 0
        for rcpt, want in cases:
            r = c.cmd("RCPT TO:" + rcpt)
            if want is None:
                T.ok(r.code >= 500, "RCPT TO:%s refused" % rcpt, str(r))
            else:
                T.line(r, want, "RCPT TO:%s -> %s" % (rcpt, want.split(" ")[0]))
            accepted += r.code == 250
        T.code(c.cmd("DATA"), 354, "DATA with the local recipients")
        c.send(b"Subject: inbound\r\n\r\nx\r\n.\r\n")
        T.code(c.reply(), 250, "queued")
        c.cmd("QUIT")
    msgs = d.list()
    T.eq(len(msgs), 1, "one message")
    if msgs:
        got = sorted(r["address"] for r in msgs[0]["recipients"])
        T.eq(len(got), accepted, "queued for exactly the %d accepted recipients" % accepted)
        T.ok(all(a.lower().rstrip(".").endswith("local.example") and "%" not in a
                 and "!" not in a for a in got), "all of them local, literally", repr(got))

with T.case("every remote recipient of a whole session is refused"):
    with sluice.connect(d.port) as c:
        c.cmd("MAIL FROM:<a@outside.example>")
        for i in range(5):
            T.line(c.cmd("RCPT TO:<v%d@gmail.example>" % i), DENIED % ("v%d@gmail.example" % i),
                   "remote recipient %d refused" % i)
        T.line(c.cmd("DATA"), "554 5.5.1 Error: no valid recipients", "DATA: no valid recipients")
        c.cmd("QUIT")

with T.case("the same client relays once authenticated"):
    s = smtplib.SMTP("127.0.0.1", d.port, local_hostname="client.example", timeout=10)
    s.ehlo()
    T.eq(s.login("user", PW)[0], 235, "login")
    T.eq(s.sendmail("a@outside.example", ["v@gmail.example"], b"Subject: out\r\n\r\nx\r\n"),
         {}, "a remote recipient is accepted")
    s.quit()

with T.case("an allowed network relays without AUTH"):
    with sluice.connect(d.port, source="127.0.0.9") as c:
        c.cmd("MAIL FROM:<a@inside.example>")
        T.code(c.cmd("RCPT TO:<v@gmail.example>"), 250, "127.0.0.9 may relay")
        c.cmd("RSET")
        c.cmd("QUIT")
    with sluice.connect(d.port, source="127.0.0.10") as c:
        c.cmd("MAIL FROM:<a@inside.example>")
        T.line(c.cmd("RCPT TO:<v@gmail.example>"), DENIED % "v@gmail.example",
               "127.0.0.10 may not")
        c.cmd("QUIT")

with T.case("a failed AUTH does not open the relay"):
    with sluice.connect(d.port, source="127.0.0.11") as c:
        r = c.cmd("AUTH PLAIN " + base64.b64encode(b"\0user\0wrong").decode(), timeout=15)
        T.code(r, 535, "wrong password: 535")
        c.cmd("MAIL FROM:<a@outside.example>")
        T.line(c.cmd("RCPT TO:<v@gmail.example>"), DENIED % "v@gmail.example",
               "still no relaying")
        c.cmd("QUIT")

T.eq(len(d.list()), 2, "two messages queued in all")
T.eq(d.stop(), 0, "exit 0")
sluice.finish()
