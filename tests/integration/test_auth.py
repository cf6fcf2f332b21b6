#!/usr/bin/python3
# timeout: 180
# Description: SMTP AUTH against the daemon, as clients do it: Python's
# smtplib login() (PLAIN with and without an initial response, LOGIN) and
# swaks --auth PLAIN/LOGIN on a listener with auth_insecure; the hash comes
# from `sluicectl hash-password` (stdin, and a pty that must not echo).
# Authenticated clients relay, others get 554 5.7.1; a user sending as
# someone else gets 553 5.7.1 (MAIL FROM) and 550 5.7.1 (From:); wrong
# passwords get 535 5.7.8 held back 1 s then 2 s, then 421 and close, and
# the address stays refused; no password reaches the log. Without TLS and
# auth_insecure, AUTH is not offered and gets 538; auth: required answers
# MAIL with 530. (Over STARTTLS: the same checks once inbound TLS exists.)
import base64
import os
import pty
import select
import smtplib
import subprocess
import time

import sluice
from sluice import T

PASSWORD = "correct horse battery staple"
WRONG = "Tr0ub4dor&3-wrong"


def hash_password(pw):
    """sluicectl hash-password fed on stdin, as a script would."""
    p = subprocess.run([sluice.SLUICECTL, "hash-password"], input=pw + "\n",
                       capture_output=True, text=True, timeout=30,
                       env=sluice.clean_env())
    if p.returncode != 0:
        raise RuntimeError("hash-password: rc %d: %s" % (p.returncode, p.stderr))
    return p.stdout.strip()


def b64(s):
    return base64.b64encode(s.encode()).decode()


def plain(user, pw, authzid=""):
    return b64("%s\0%s\0%s" % (authzid, user, pw))


with T.case("hash-password from stdin"):
    h = hash_password(PASSWORD)
    T.ok(h.startswith("$y$") and h.count("$") == 4, "a yescrypt hash", h)
    T.ok(PASSWORD not in h, "the password is not in the output")
    T.ok(hash_password(PASSWORD) != h, "a new salt each time")



def distinct_ports(n):
    """n free loopback ports, all different (free_port() may repeat one
    within the same millisecond)."""
    ports = []
    for _ in range(200):
        p = sluice.free_port()
        if p not in ports:
            ports.append(p)
        if len(ports) == n:
            return ports
        time.sleep(0.002)
    raise RuntimeError("no %d distinct free ports" % n)


d1_port, d2_port, d3_port = distinct_ports(3)
conf = os.path.join(sluice.tmpdir(), "auth.yaml")
with open(conf, "w") as f:
    f.write("listen:\n"
            "  - address: 127.0.0.1:1\n"      # the helper sets the port
            "    auth: optional\n"
            "    auth_insecure: true\n"
            "  - address: 127.0.0.1:%d\n"
            "    auth: optional\n"            # no TLS, not insecure
            "  - address: 127.0.0.1:%d\n"
            "    auth: required\n"
            "    auth_insecure: true\n"
            "allowed_networks: []\n"
            "relay_domains: [local.example]\n"
            "sender_restrictions: email\n"
            "limits:\n"
            "  auth_failures: 3\n"
            "  auth_failure_window: 1m\n"
            "users:\n"
            "  - name: alice\n"
            "    password: '%s'\n"
            "    allowed_from: [alice@example.com, \"@alice.example\"]\n"
            "  - name: bob@example.org\n"
            "    password: '%s'\n"
            % (d2_port, d3_port, h, hash_password("bobs password")))
d = sluice.Daemon(config=conf, deliver=False, port=d1_port)
queued = 0

with T.case("EHLO offers AUTH on the insecure-allowed listener"):
    s = smtplib.SMTP("127.0.0.1", d.port, local_hostname="client.example", timeout=10)
    code, msg = s.ehlo()
    T.eq(code, 250, "EHLO")
    T.ok(s.has_extn("auth"), "AUTH advertised", msg.decode())
    T.eq(s.esmtp_features.get("auth", "").split(), ["PLAIN", "LOGIN"], "mechanisms PLAIN LOGIN")
    s.quit()

with T.case("smtplib login() with PLAIN, then relaying"):
    s = smtplib.SMTP("127.0.0.1", d.port, local_hostname="client.example", timeout=10)
    s.ehlo()
    T.eq(s.rcpt("x@remote.example") if s.mail("alice@example.com")[0] == 250 else None,
         (554, b"5.7.1 <x@remote.example>: Relay access denied"),
         "before AUTH: no relaying")
    s.rset()
    code, msg = s.login("alice", PASSWORD)
    T.eq((code, msg), (235, b"2.7.0 Authentication successful"), "login: 235 2.7.0")
    body = b"From: Alice <alice@example.com>\r\nSubject: via PLAIN\r\n\r\nhello\r\n"
    refused = s.sendmail("alice@example.com", ["x@remote.example", "y@local.example"], body)
    T.eq(refused, {}, "authenticated: a remote recipient is accepted")
    queued += 1
    T.eq(d.count(), queued, "the message is queued")
    s.quit()

with T.case("smtplib: PLAIN without an initial response, LOGIN both ways"):
    s = smtplib.SMTP("127.0.0.1", d.port, local_hostname="client.example", timeout=10)
    s.ehlo()
    s.user, s.password = "alice", PASSWORD
    T.eq(s.auth("PLAIN", s.auth_plain, initial_response_ok=False)[0], 235,
         "AUTH PLAIN, then the response after 334")
    s.quit()
    for iro in (True, False):
        s = smtplib.SMTP("127.0.0.1", d.port, local_hostname="client.example", timeout=10)
        s.ehlo()
        s.user, s.password = "bob@example.org", "bobs password"
        T.eq(s.auth("LOGIN", s.auth_login, initial_response_ok=iro)[0], 235,
             "AUTH LOGIN (%s)" % ("user name as initial response" if iro else "two 334s"))
        s.quit()

with T.case("raw dialogue: authzid, cancel, bad base64, twice"):
    with sluice.connect(d.port) as c:
        T.line(c.cmd("AUTH PLAIN " + plain("alice", PASSWORD, authzid="bob@example.org")),
               "535 5.7.8 Error: authentication failed: authorization identity must be "
               "empty or the user's own", "another authzid: 535 5.7.8")
        T.line(c.cmd("AUTH LOGIN"), "334 VXNlcm5hbWU6", "LOGIN asks the user name")
        T.line(c.cmd("*"), "501 5.0.0 Error: authentication aborted", "* cancels: 501 5.0.0")
        T.line(c.cmd("AUTH PLAIN not-base64!"), "501 5.5.2 Error: cannot decode response",
               "bad base64: 501 5.5.2")
        T.line(c.cmd("AUTH DIGEST-MD5"), "504 5.5.4 Unrecognized authentication type",
               "unknown mechanism: 504 5.5.4")
        T.line(c.cmd("AUTH PLAIN " + plain("alice", PASSWORD, authzid="alice")),
               "235 2.7.0 Authentication successful", "authzid = authcid: 235")
        T.line(c.cmd("AUTH PLAIN " + plain("alice", PASSWORD)),
               "503 5.5.1 Error: already authenticated", "again: 503 5.5.1")
        T.code(c.cmd("MAIL FROM:<alice@example.com> AUTH=<>"), 250, "MAIL with AUTH=<> taken")
        T.line(c.cmd("AUTH PLAIN " + plain("alice", PASSWORD)),
               "503 5.5.1 Error: already authenticated", "in a transaction: 503")
        c.cmd("QUIT")

with T.case("swaks --auth PLAIN and LOGIN"):
    for mech in ("PLAIN", "LOGIN"):
        p = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % d.port,
                            "--helo", "client.example", "--auth", mech,
                            "--auth-user", "alice", "--auth-password", PASSWORD,
                            "--from", "alice@example.com", "--to", "z@remote.example",
                            "--header", "From: alice@example.com",
                            "--header", "Subject: swaks " + mech],
                           capture_output=True, text=True, timeout=60)
        T.eq(p.returncode, 0, "swaks --auth %s exits 0" % mech)
        T.ok("235 2.7.0 Authentication successful" in p.stdout, "swaks %s: 235" % mech,
             p.stdout[-600:])
        T.ok("250 2.0.0 Ok: queued as" in p.stdout, "swaks %s: queued" % mech)
        queued += 1
    T.eq(d.count(), queued, "both queued")

with T.case("sending as someone else: 553 5.7.1 at MAIL, 550 5.7.1 for From:"):
    with sluice.connect(d.port) as c:
        T.code(c.cmd("AUTH PLAIN " + plain("alice", PASSWORD)), 235, "alice logs in")
        T.line(c.cmd("MAIL FROM:<bob@example.org>"),
               "553 5.7.1 <bob@example.org>: Sender address rejected: not owned by user "
               "alice", "MAIL FROM another user's address: 553 5.7.1")
        T.code(c.cmd("MAIL FROM:<anything@alice.example>"), 250, "@alice.example is hers")
        T.code(c.cmd("RCPT TO:<x@remote.example>"), 250, "RCPT")
        T.code(c.cmd("DATA"), 354, "DATA")
        c.send(b"From: Bob <bob@example.org>\r\nSubject: forged\r\n\r\nx\r\n.\r\n")
        T.line(c.reply(), "550 5.7.1 <bob@example.org>: From: address rejected: not owned "
               "by user alice", "From: another user: 550 5.7.1 after DATA")
        T.code(c.cmd("MAIL FROM:<alice@example.com>"), 250, "the session goes on")
        c.cmd("QUIT")
    T.eq(d.count(), queued, "nothing forged was queued")

with T.case("no AUTH without TLS unless auth_insecure"):
    with sluice.connect(d2_port) as c:
        T.ok(not any("AUTH" in ln for ln in c.ehlo().lines), "EHLO does not offer AUTH")
        T.line(c.cmd("AUTH PLAIN " + plain("alice", PASSWORD)),
               "538 5.7.11 Encryption required for requested authentication mechanism",
               "AUTH refused with 538 5.7.11")
        c.cmd("QUIT")

with T.case("auth: required"):
    with sluice.connect(d3_port) as c:
        T.line(c.cmd("MAIL FROM:<alice@example.com>"), "530 5.7.0 Authentication required",
               "MAIL before AUTH: 530 5.7.0")
        T.code(c.cmd("AUTH PLAIN " + plain("alice", PASSWORD)), 235, "AUTH")
        T.code(c.cmd("MAIL FROM:<alice@example.com>"), 250, "MAIL after AUTH")
        c.cmd("QUIT")

with T.case("wrong passwords: 535 held back 1 s, then 2 s, then 421"):
    src = "127.0.0.5"     # its own address: the others stay unblocked
    times = []
    with sluice.connect(d.port, source=src) as c:
        for i in range(2):
            t0 = time.monotonic()
            r = c.cmd("AUTH PLAIN " + plain("alice", WRONG), timeout=20)
            times.append(time.monotonic() - t0)
            T.line(r, "535 5.7.8 Error: authentication failed", "failure %d: 535 5.7.8" % (i + 1))
    T.ok(0.7 <= times[0] < 1.9, "the first 535 is held back about 1 s", "%.2f s" % times[0])
    T.ok(times[1] >= times[0] + 0.6 and times[1] < 3.2,
         "the second about 2 s", "%.2f s after %.2f s" % (times[1], times[0]))
    # A new connection (maybe on the other shard) carries the count on.
    with sluice.connect(d.port, source=src) as c:
        t0 = time.monotonic()
        r = c.cmd("AUTH LOGIN " + b64("alice"))
        T.line(r, "334 UGFzc3dvcmQ6", "LOGIN asks the password")
        r = c.cmd(b64(WRONG), timeout=20)
        T.line(r, "421 4.7.0 test.example Error: too many failed logins",
               "the third failure: 421 4.7.0")
        T.ok(time.monotonic() - t0 < 1.5, "421 comes without the delay")
        T.ok(c.wait_closed(3), "and the connection is closed")
    with sluice.connect(d.port, source=src) as c:
        t0 = time.monotonic()
        T.line(c.cmd("AUTH PLAIN " + plain("alice", PASSWORD)),
               "421 4.7.0 test.example Error: too many failed logins",
               "even the right password gets 421 from that address now")
        T.ok(time.monotonic() - t0 < 1.0, "at once, without hashing")
        T.ok(c.wait_closed(3), "closed")
    with sluice.connect(d.port) as c:
        T.code(c.cmd("AUTH PLAIN " + plain("alice", PASSWORD)), 235,
               "another address logs in as usual")
        c.cmd("QUIT")
    log = open(d.log, encoding="utf-8", errors="replace").read()
    T.ok("auth failed: client=[127.0.0.5], sasl_method=PLAIN, sasl_username=alice" in log,
         "the failure is logged with the address and user")
    T.ok("client=[127.0.0.1], sasl_method=PLAIN, sasl_username=alice" in log,
         "a success is logged too")
    for secret in (PASSWORD, WRONG, plain("alice", WRONG), b64(WRONG)):
        T.ok(secret not in log, "no password (or its base64) in the log: %r" % secret[:12])

with T.case("unknown users take as long as known ones"):
    def attempt(user):
        with sluice.connect(d.port, source="127.0.0.%d" % (20 + len(user))) as c:
            t0 = time.monotonic()
            r = c.cmd("AUTH PLAIN " + plain(user, WRONG), timeout=20)
            return r.code, time.monotonic() - t0
    k = attempt("alice")
    u = attempt("nobody-here")
    T.eq((k[0], u[0]), (535, 535), "both get 535 5.7.8")
    T.ok(abs(k[1] - u[1]) < 0.5, "about the same time", "known %.2f s, unknown %.2f s" % (k[1], u[1]))

T.eq(d.stop(), 0, "sluiced exits 0")

with T.case("hash-password on a terminal: no echo, asked twice"):
    def on_pty(answers):
        pid, fd = pty.fork()
        if pid == 0:
            os.execve(sluice.SLUICECTL, [sluice.SLUICECTL, "hash-password"], sluice.clean_env())
        out = b""
        deadline = time.monotonic() + 20
        sent = 0
        while time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], 0.2)
            if r:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
                if sent < len(answers) and out.count(b"assword") > sent:
                    os.write(fd, answers[sent].encode() + b"\n")
                    sent += 1
        for _ in range(50):     # bounded: a child that hangs is killed
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, 9)
            _, status = os.waitpid(pid, 0)
        os.close(fd)
        return os.waitstatus_to_exitcode(status), out.decode("utf-8", "replace")
    rc, out = on_pty(["pty secret", "pty secret"])
    T.eq(rc, 0, "exit 0")
    T.ok("Password: " in out and "Password again: " in out, "asks twice", repr(out))
    T.ok("pty secret" not in out, "the password is not echoed", repr(out))
    pty_hash = [ln.strip() for ln in out.splitlines() if ln.strip().startswith("$y$")]
    T.eq(len(pty_hash), 1, "prints one yescrypt hash")
    rc, out = on_pty(["one thing", "another"])
    T.eq(rc, 1, "different answers: exit 1")
    T.ok("do not match" in out, "and says so", repr(out))

with T.case("the pty's hash works in a users_file"):
    if pty_hash:
        dd = sluice.tmpdir()
        users = os.path.join(dd, "users")
        with open(users, "w") as f:
            f.write("# name:hash:senders\ncarol:%s:carol@example.com\n" % pty_hash[0])
        os.chmod(users, 0o644)
        conf2 = os.path.join(dd, "users.yaml")
        with open(conf2, "w") as f:
            f.write("listen:\n  - address: 127.0.0.1:1\n    auth: optional\n"
                    "    auth_insecure: true\nusers_file: %s\n" % users)
        r = subprocess.run([sluice.SLUICED, "-n", "-c", conf2], capture_output=True,
                           text=True, env=sluice.clean_env())
        T.eq(r.returncode, 2, "a users_file anyone can read is refused")
        T.ok(users in r.stderr and "chmod o-rw" in r.stderr, "and the message says why",
             r.stderr.strip())
        os.chmod(users, 0o600)
        d4 = sluice.Daemon(config=conf2, deliver=False)
        s = smtplib.SMTP("127.0.0.1", d4.port, local_hostname="client.example", timeout=10)
        s.ehlo()
        T.eq(s.login("carol", "pty secret")[0], 235, "carol logs in with it")
        s.quit()
        T.eq(d4.stop(), 0, "exit 0")

with T.case("a plaintext password is a config error with file:line"):
    bad = os.path.join(sluice.tmpdir(), "plain.yaml")
    with open(bad, "w") as f:
        f.write("users:\n  - name: alice\n    password: hunter2-plain\n")
    r = subprocess.run([sluice.SLUICED, "-n", "-c", bad], capture_output=True, text=True,
                       env=sluice.clean_env())
    T.eq(r.returncode, 2, "sluiced -n exits 2")
    T.ok("%s:3: users.0.password: not a crypt(3) hash" % bad in r.stderr,
         "names the file, line 3 and the key", r.stderr.strip())
    T.ok("hunter2-plain" not in r.stderr, "does not repeat the password")

sluice.finish()
