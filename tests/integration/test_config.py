#!/usr/bin/python3
# Description: configuration. `sluiced -n` accepts a good file (prints
# `configuration OK`, exit 0) and reports every error of a bad one as
# FILE:LINE: message (exit 2); -o and SLUICE_* overrides take effect with
# the precedence file < environment < -o; `sluicectl check` agrees.
# timeout: 60
import os
import re
import subprocess

import sluice
from sluice import T

tmp = sluice.tmpdir()
spool = os.path.join(tmp, "spool")
os.makedirs(spool)
port = sluice.free_port()

GOOD = """\
# sluice test configuration
hostname: file.example
spool: %s
shards: 2
listen:
  - address: 127.0.0.1:%d
allowed_networks:
  - 127.0.0.0/8
  - ::1/128
limits:
  message_size: 10M
  recipients: 50
  line_length: 2048
  errors: 20
  idle_timeout: 300s
  connections: 100
  connections_per_client: 20
queue:
  segment_size: 1M
  index_size: 16M
shutdown_timeout: 10s
""" % (spool, port)

# Errors on lines 3 and 5.
BAD2 = """\
hostname: bad.example
spool: %s
bogus_key: 1
limits:
  recipients: many
  idle_timeout: 300s
""" % spool

# Errors on lines 3, 5 and 7.
BAD3 = """\
hostname: bad.example
allowed_networks:
  - 10.0.0.0/33
limits:
  nonsense: 5
queue:
  index_size: lots
"""


def write(name, text):
    p = os.path.join(tmp, name)
    with open(p, "w") as f:
        f.write(text)
    return p


good, bad2, bad3 = write("good.yaml", GOOD), write("bad2.yaml", BAD2), write("bad3.yaml", BAD3)


def run(argv, env=None):
    e = sluice.clean_env()
    e.update(env or {})
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e, timeout=20,
                       stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def has_error_at(err, fname, line):
    pat = re.compile(r"^(?:.*/)?%s:%d: \S" % (re.escape(fname), line), re.M)
    return bool(pat.search(err))


with T.case("sluiced -n"):
    rc, out, err = run([sluice.SLUICED, "-c", good, "-n"])
    T.eq((rc, out.strip()), (0, "configuration OK"), "good file: `configuration OK`, exit 0")
    rc, out, err = run([sluice.SLUICED, "-c", bad2, "-n"])
    T.eq(rc, 2, "file with two errors: exit 2")
    T.ok("configuration OK" not in out, "no `configuration OK` for a bad file")
    T.ok(has_error_at(err, "bad2.yaml", 3), "error reported at bad2.yaml:3 (unknown key)", err)
    T.ok(has_error_at(err, "bad2.yaml", 5), "error reported at bad2.yaml:5 (bad number)", err)
    rc, out, err = run([sluice.SLUICED, "-c", bad3, "-n"])
    T.eq(rc, 2, "file with three errors: exit 2")
    for ln, what in ((3, "bad CIDR"), (5, "unknown nested key"), (7, "bad size")):
        T.ok(has_error_at(err, "bad3.yaml", ln), "error reported at bad3.yaml:%d (%s)" % (ln, what), err)
    rc, out, err = run([sluice.SLUICED, "-n", "-o", "spool=" + spool])
    T.eq((rc, out.strip()), (0, "configuration OK"), "embedded default config is OK")
    rc, out, err = run([sluice.SLUICED, "-c", good, "-n", "-o", "limits.recipients=abc"])
    T.ok(rc == 2 and err.strip(), "-o with a bad value: exit 2 and an error", "rc %d err %r" % (rc, err))
    rc, out, err = run([sluice.SLUICED, "-c", good, "-n", "-o", "no.such.key=1"])
    T.ok(rc == 2 and err.strip(), "-o with an unknown key: exit 2 and an error", "rc %d err %r" % (rc, err))
    rc, out, err = run([sluice.SLUICED, "-c", good, "-n"], env={"SLUICE_LIMITS_RECIPIENTS": "abc"})
    T.ok(rc == 2 and err.strip(), "SLUICE_LIMITS_RECIPIENTS=abc: exit 2 and an error", "rc %d err %r" % (rc, err))
    rc, out, err = run([sluice.SLUICED, "-c", os.path.join(tmp, "missing.yaml"), "-n"])
    T.ok(rc != 0 and "missing.yaml" in err, "missing file: non-zero exit naming the file", "rc %d err %r" % (rc, err))

with T.case("starting with a bad file fails fast"):
    try:
        rc, out, err = run([sluice.SLUICED, "-c", bad2])
    except subprocess.TimeoutExpired:
        rc, err = None, ""
    T.ok(rc not in (0, None), "sluiced -c bad exits non-zero without serving", "rc %r" % rc)
    T.ok(has_error_at(err, "bad2.yaml", 3) and has_error_at(err, "bad2.yaml", 5), "and reports both errors", err)

with T.case("sluicectl check"):
    rc, out, err = run([sluice.SLUICECTL, "-c", good, "check"])
    T.eq((rc, out.strip()), (0, "configuration OK"), "sluicectl -c good check")
    rc, out, err = run([sluice.SLUICECTL, "-c", bad2, "check"])
    T.ok(rc != 0, "sluicectl -c bad check exits non-zero", "rc %d" % rc)
    T.ok(has_error_at(err, "bad2.yaml", 3) and has_error_at(err, "bad2.yaml", 5),
         "sluicectl check reports both errors with file:line", err)

with T.case("file values, environment over file, -o over environment"):
    d = sluice.Daemon(config=good, spool=spool, port=port, hostname=None)
    c = sluice.Conn(d.port)
    T.line(c.reply(), "220 file.example ESMTP sluice", "hostname from the file")
    r = c.ehlo()
    T.ok(r.lines[2] in ("250-SIZE 10485760", "250-SIZE 10000000"), "message_size: 10M from the file", str(r))
    c.close()
    T.eq(d.stop(), 0, "exit 0")

    d = sluice.Daemon(config=good, spool=spool, port=port, hostname=None,
                      env={"SLUICE_HOSTNAME": "env.example", "SLUICE_LIMITS_MESSAGE_SIZE": "7777"})
    c = sluice.Conn(d.port)
    T.line(c.reply(), "220 env.example ESMTP sluice", "SLUICE_HOSTNAME overrides the file")
    sluice.check_ehlo(c.ehlo(), size=7777, hostname="env.example", what="SLUICE_LIMITS_MESSAGE_SIZE=7777")
    c.close()
    T.eq(d.stop(), 0, "exit 0")

    d = sluice.Daemon("limits.message_size=12345", config=good, spool=spool, port=port,
                      env={"SLUICE_LIMITS_MESSAGE_SIZE": "5555"})
    c = sluice.Conn(d.port)
    T.line(c.reply(), "220 test.example ESMTP sluice", "-o hostname overrides the file")
    sluice.check_ehlo(c.ehlo(), size=12345, what="-o limits.message_size=12345 over SLUICE_...=5555")
    c.close()
    T.eq(d.stop(), 0, "exit 0")

with T.case("SLUICE_LIMITS_RECIPIENTS=2"):
    d = sluice.Daemon(env={"SLUICE_LIMITS_RECIPIENTS": "2"})
    c = sluice.connect(d.port)
    T.line(c.cmd("MAIL FROM:<a@example.com>"), "250 2.1.0 Ok", "MAIL")
    T.line(c.cmd("RCPT TO:<r1@example.net>"), "250 2.1.5 Ok", "RCPT 1")
    T.line(c.cmd("RCPT TO:<r2@example.net>"), "250 2.1.5 Ok", "RCPT 2")
    T.line(c.cmd("RCPT TO:<r3@example.net>"), "452 4.5.3 Error: too many recipients", "RCPT 3")
    c.close()
    T.eq(d.stop(), 0, "exit 0")

with T.case("-o limits.recipients=1 beats SLUICE_LIMITS_RECIPIENTS=5"):
    d = sluice.Daemon("limits.recipients=1", env={"SLUICE_LIMITS_RECIPIENTS": "5"})
    c = sluice.connect(d.port)
    c.cmd("MAIL FROM:<a@example.com>")
    T.line(c.cmd("RCPT TO:<r1@example.net>"), "250 2.1.5 Ok", "RCPT 1")
    T.line(c.cmd("RCPT TO:<r2@example.net>"), "452 4.5.3 Error: too many recipients", "RCPT 2")
    c.close()
    T.eq(d.stop(), 0, "exit 0")

sluice.finish()
