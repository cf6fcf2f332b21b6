#!/usr/bin/python3
# timeout: 200
# Description: configuration reload without a restart. `sluicectl reload`
# after the route of r.test moved from sink A to sink B and
# limits.message_size shrank: mail sent afterwards reaches B, a big message
# on a new connection gets 552, while a connection opened before the
# reload still has the old limit; SIGHUP does the same (the route back to
# A). A broken file (a YAML syntax error, a missing key file) is refused
# with FILE:LINE in sluicectl's output and its exit status, and the daemon
# keeps working with the old one; a restart-only key (queue.index_size) is refused
# by the daemon, naming the key, and so is a listener on a port another
# program listens on. A listener added starts accepting; when
# removed it stops, and a connection open on it finishes its message.
# `sluicectl status` names the generation in force and its listeners.
# A destination's max_connections raised from 1 to 4 by a reload: before,
# its sink never sees two connections at once; after, it sees several.
# users_file: after a reload the new password logs in and the old one no
# longer does.
import json
import os
import signal
import smtplib
import socket
import subprocess
import time

import sluice
from sluice import T

import deliverlib as dl

A = dl.Server("A")
B = dl.Server("B")
C = dl.Server("C", data_delay=0.3)             # c.test: max_connections 1, then 4
users = os.path.join(sluice.tmpdir(), "users")
PW1, PW2 = "first password", "second password"


def hash_password(pw):
    p = subprocess.run([sluice.SLUICECTL, "hash-password"], input=pw + "\n",
                       capture_output=True, text=True, timeout=30,
                       env=sluice.clean_env())
    if p.returncode != 0:
        raise RuntimeError("hash-password: %s" % p.stderr)
    return p.stdout.strip()


def write_users(pw):
    with open(users, "w") as f:
        f.write("alice:%s\n" % hash_password(pw))
    os.chmod(users, 0o600)


write_users(PW1)
P2 = sluice.free_port()


def config(sink, size="1M", extra_listener=False, broken="", tls_cert=None, c_conns=1):
    lines = ["spool: %s" % relay.d.spool,
             "shards: 2",
             "listen:",
             "  - address: 127.0.0.1:%d" % relay.port,
             "    auth: optional",
             "    auth_insecure: true"]
    if extra_listener:
        lines.append("  - address: 127.0.0.1:%d" % P2)
    lines += ["hostname: sluice.test",
              "users_file: %s" % users,
              "relay_domains: [r.test, c.test]",
              "delivery: {log: %s, idle_keep: 1s, connect_timeout: 2s}" % relay.dlog_path,
              "limits: {message_size: %s}" % size,
              "routes:",
              '  - {domain: r.test, transport: "smtp:[127.0.0.1]:%d", retry: 1s}' % sink.port,
              '  - {domain: c.test, transport: "smtp:[127.0.0.1]:%d", max_connections: %d}'
              % (C.port, c_conns)]
    if tls_cert:
        lines.append("tls: {cert: %s, key: %s}" % (tls_cert, tls_cert + ".key"))
    if broken:
        lines.append(broken)
    with open(relay.conf, "w") as f:
        f.write("\n".join(lines) + "\n")


def reload():
    return relay.d.ctl("reload")


def msg(tag, size=300):
    return dl.make_message(tag, "s@example.com", ["x@r.test"], size=size)


def wait_count(server, n, timeout=15):
    return dl.wait_until(lambda: server.count() >= n, timeout)


relay = dl.Relay([{"domain": "r.test", "transport": "smtp:[127.0.0.1]:%d" % A.port}],
                 start=False)
config(A)
relay.start()

with T.case("before: mail to r.test reaches A"):
    dl.submit(relay.port, "s@example.com", ["x@r.test"], msg("before"))
    T.ok(wait_count(A, 1), "A got it", "A has %d" % A.count())

with T.case("sluicectl reload: new route and limit"):
    old = sluice.connect(relay.port)        # opened under generation 1
    config(B, size="2000")
    rc, out, err = reload()
    T.eq(rc, 0, "sluicectl reload exits 0")
    T.ok(out.startswith("generation 2: ") and "routes" in out and "limits" in out,
         "the summary names the generation and what changed", out + err)
    dl.submit(relay.port, "s@example.com", ["x@r.test"], msg("after"))
    T.ok(wait_count(B, 1), "mail sent after the reload reaches B", "B has %d" % B.count())
    T.eq(A.count(), 1, "A got nothing more")
    c = sluice.connect(relay.port)
    c.cmd("MAIL FROM:<s@example.com>")
    c.cmd("RCPT TO:<x@r.test>")
    T.code(c.cmd("DATA"), 354)
    c.send(sluice.dot_stuff(msg("big", 5000)) + b".\r\n")
    T.prefix(c.reply(), "552 5.3.4", "a new session has the new limit")
    c.close()
    # The session opened before the reload keeps its generation.
    T.code(old.cmd("MAIL FROM:<s@example.com>"), 250)
    T.code(old.cmd("RCPT TO:<y@r.test>"), 250)
    T.code(old.cmd("DATA"), 354)
    old.send(sluice.dot_stuff(msg("old-session", 5000)) + b".\r\n")
    T.prefix(old.reply(), "250 2.0.0", "the older session keeps the old limit")
    old.close()
    T.ok(wait_count(B, 2), "its message is delivered (by the new route)")

with T.case("SIGHUP does the same"):
    config(A, size="1M")
    relay.d.proc.send_signal(signal.SIGHUP)
    ok = dl.wait_until(lambda: "configuration generation 3 in force" in relay.log_tail(50), 10)
    T.ok(ok, "the daemon logs generation 3", relay.log_tail(10))
    dl.submit(relay.port, "s@example.com", ["x@r.test"], msg("hup"))
    T.ok(wait_count(A, 2), "mail reaches A again", "A has %d" % A.count())

with T.case("a YAML syntax error is refused with file:line"):
    config(A, broken="limits: {message_size: [")
    rc, out, err = reload()
    T.ok(rc != 0, "sluicectl reload exits non-zero", "rc %d" % rc)
    T.ok(relay.conf + ":" in err, "the error names the file and line", err)
    relay.d.proc.send_signal(signal.SIGHUP)
    ok = dl.wait_until(lambda: "refused; configuration generation 3 stays" in
                       relay.log_tail(50), 10)
    T.ok(ok, "SIGHUP: the daemon logs the refusal", relay.log_tail(10))
    T.ok(relay.conf + ":" in relay.log_tail(50), "... with file and line")
    dl.submit(relay.port, "s@example.com", ["x@r.test"], msg("still"))
    T.ok(wait_count(A, 3), "the old configuration keeps working")

with T.case("a missing key file is refused with file:line"):
    config(A, tls_cert="/nonexistent/cert.pem")
    rc, out, err = reload()
    T.ok(rc != 0, "sluicectl reload exits non-zero", "rc %d" % rc)
    T.ok(relay.conf + ":" in err and "/nonexistent/cert.pem" in err,
         "the error names the file, the line and the key file", err)

with T.case("a restart-only key is refused by the daemon"):
    config(A, broken="queue: {index_size: 123M}")
    rc, out, err = reload()
    T.ok(rc != 0, "sluicectl reload exits non-zero", "rc %d" % rc)
    T.ok("queue.index_size cannot change without a restart" in err, "the key is named", err)
    T.ok("generation 3 stays in force" in err, "the old generation stays", err)
    dl.submit(relay.port, "s@example.com", ["x@r.test"], msg("restart"))
    T.ok(wait_count(A, 4), "mail still flows")

with T.case("a listener on a port in use elsewhere is refused"):
    other = socket.socket()
    other.bind(("127.0.0.1", P2))
    other.listen(1)
    config(A, extra_listener=True)
    rc, out, err = reload()
    T.ok(rc != 0, "sluicectl reload exits non-zero", "rc %d" % rc)
    T.ok("cannot listen on 127.0.0.1:%d: address already in use" % P2 in err,
         "it names the address", err)
    other.close()

with T.case("a listener added starts accepting"):
    config(A, extra_listener=True)
    rc, out, err = reload()
    T.eq(rc, 0, "reload exits 0: " + out + err)
    T.ok("listeners (+1 -0" in out, "the summary counts the listener", out)
    rc, st, err = relay.d.ctl("status", "--json")
    doc = json.loads(st) if rc == 0 else {}
    T.eq((doc.get("config_generation"), len(doc.get("listeners", []))), (4, 2),
         "sluicectl status: generation 4, two listeners")
    c2 = sluice.connect(P2)
    T.code(c2.cmd("MAIL FROM:<s@example.com>"), 250)
    T.code(c2.cmd("RCPT TO:<x@r.test>"), 250)

with T.case("a listener removed stops; its open connection finishes"):
    config(A)
    rc, out, err = reload()
    T.eq(rc, 0, "reload exits 0: " + out + err)
    T.ok("listeners (+0 -1" in out, "the summary counts the listener", out)
    refused = False
    try:
        socket.create_connection(("127.0.0.1", P2), timeout=2).close()
    except OSError:
        refused = True
    T.ok(refused, "a new connection to the removed listener is refused")
    T.code(c2.cmd("DATA"), 354)
    c2.send(sluice.dot_stuff(msg("removed")) + b".\r\n")
    T.prefix(c2.reply(), "250 2.0.0", "the open connection's message is accepted")
    c2.cmd("QUIT")
    c2.close()
    T.ok(wait_count(A, 5), "and delivered")

with T.case("users_file: the new password works after a reload"):
    s = smtplib.SMTP("127.0.0.1", relay.port, local_hostname="client.example", timeout=10)
    s.ehlo()
    T.eq(s.login("alice", PW1)[0], 235, "the first password logs in")
    s.quit()
    write_users(PW2)
    rc, out, err = reload()
    T.eq(rc, 0, "reload exits 0: " + out + err)
    T.ok("users" in out, "the summary says users changed", out)
    s = smtplib.SMTP("127.0.0.1", relay.port, local_hostname="client.example", timeout=10)
    s.ehlo()
    T.eq(s.login("alice", PW2)[0], 235, "the new password logs in")
    s.quit()
    s = smtplib.SMTP("127.0.0.1", relay.port, local_hostname="client.example", timeout=10)
    s.ehlo()
    try:
        s.login("alice", PW1)
        T.fail("the old password is refused", "it logged in")
    except smtplib.SMTPAuthenticationError as e:
        T.eq(e.smtp_code, 535, "the old password is refused")
    s.close()

with T.case("a destination's limit changes; its state stays"):
    def burst(tag, n):
        items = [("s@example.com", ["x%d@c.test" % i],
                  dl.make_message("%s%d" % (tag, i), "s@example.com", ["x%d@c.test" % i]))
                 for i in range(n)]
        qids, errors = dl.submit_many(relay.port, items, conns=4)
        T.eq(errors, [], tag + ": all accepted")
    t0 = time.monotonic()
    before = C.count()
    burst("one", 6)
    T.ok(wait_count(C, before + 6, 30), "max_connections 1: all delivered")
    T.eq(C.max_concurrent(t0, time.monotonic()), 1, "never more than 1 connection at once")
    config(A, c_conns=4)
    rc, out, err = reload()
    T.eq(rc, 0, "reload exits 0: " + out + err)
    t1 = time.monotonic()
    burst("two", 16)
    T.ok(wait_count(C, before + 22, 30), "max_connections 4: all delivered")
    mc = C.max_concurrent(t1, time.monotonic())
    T.ok(2 <= mc <= 4, "more than 1 connection at once, at most 4", "%d" % mc)

with T.case("the daemon stops cleanly after reloads"):
    T.eq(relay.stop(), 0, "exit 0")

sluice.finish()
