#!/usr/bin/python3
# Description: sluice-bench command line. No arguments and unknown commands
# exit 2 with the usage on stderr; `--help` (top level, source, sink) exits 0
# and lists every documented option; bad options of each half exit 2 with a
# reason naming the option on stderr and nothing on stdout; an unreadable
# --corpus or --tls-verify file exits 2; a sink whose port is taken or whose
# --store directory is missing exits 1; a source with nothing listening exits
# 1 and still prints its report with the reason.
import json
import os
import re
import socket
import subprocess

import sluice
from sluice import T

BENCH = os.path.join(sluice.BIN, "sluice-bench")
if not os.access(BENCH, os.X_OK):
    raise RuntimeError("%s is not built (run make)" % BENCH)


def run(*args, timeout=10):
    """(rc, stdout, stderr); a program still running after timeout is killed."""
    try:
        p = subprocess.run([BENCH] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, timeout=timeout, env=sluice.clean_env())
        return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        return "timeout", "", ""


SOURCE_OPTS = ["--to", "--connections", "--messages", "--duration", "--size", "--corpus", "--recipients",
               "--per-connection", "--pipelining", "--rate", "--from", "--rcpt", "--rcpt-mod", "--domains", "--helo",
               "--lmtp", "--starttls", "--tls", "--tls-verify", "--tls-resume", "--auth", "--auth-mech", "--timeout", "--max-errors", "--json",
               "--quiet", "--help"]
SINK_OPTS = ["--listen", "--lmtp", "--expect", "--duration", "--json", "--reply", "--delay",
             "--max-connections", "--drop-data", "--store", "--log", "--hostname", "--seed", "--max-slots",
             "--quiet", "--help"]

with T.case("no arguments, unknown command"):
    for args in ([], ["bogus"], ["--bogus"]):
        rc, out, err = run(*args)
        T.eq(rc, 2, "sluice-bench %s exits 2" % " ".join(args))
        T.eq(out, "", "sluice-bench %s: nothing on stdout" % " ".join(args))
        T.ok("sluice-bench source --to HOST:PORT" in err and "sluice-bench sink --listen ADDR:PORT" in err,
             "sluice-bench %s: usage of both halves on stderr" % " ".join(args), err[:300])

with T.case("--help"):
    rc, out, err = run("--help")
    T.eq(rc, 0, "sluice-bench --help exits 0")
    T.ok("source" in out and "sink" in out, "sluice-bench --help names both halves", out[:300])
    for half, opts, first in (("source", SOURCE_OPTS, "usage: sluice-bench source --to HOST:PORT"),
                              ("sink", SINK_OPTS, "usage: sluice-bench sink --listen ADDR:PORT")):
        rc, out, err = run(half, "--help")
        T.eq(rc, 0, "%s --help exits 0" % half)
        T.ok(out.startswith(first), "%s --help starts with its usage line" % half, out[:200])
        listed = set(re.findall(r"^\s+(--[a-z-]+)", out, re.M))
        T.eq(sorted(set(opts) - listed), [], "%s --help lists every documented option" % half)
        T.eq(sorted(listed - set(opts)), [], "%s --help lists no undocumented option" % half)
        T.eq(err, "", "%s --help: nothing on stderr" % half)

SRC_BAD = [
    ([], "--to"),
    (["--to", "127.0.0.1"], "--to"),
    (["--to", "localhost:25"], "--to"),
    (["--to", "127.0.0.1:25", "--connections", "0"], "--connections"),
    (["--to", "127.0.0.1:25", "--connections", "20001"], "--connections"),
    (["--to", "127.0.0.1:25", "--size", "abc"], "--size"),
    (["--to", "127.0.0.1:25", "--size=2G"], "--size"),
    (["--to", "127.0.0.1:25", "--messages", "10", "--duration", "1s"], "--duration"),
    (["--to", "127.0.0.1:25", "--corpus", "/tmp", "--size", "10"], "--corpus"),
    (["--to", "127.0.0.1:25", "--recipients", "1001"], "--recipients"),
    (["--to", "127.0.0.1:25", "--pipelining", "maybe"], "--pipelining"),
    (["--to", "127.0.0.1:25", "--rate", "0"], "--rate"),
    (["--to", "127.0.0.1:25", "--timeout", "xyz"], "--timeout"),
    (["--to", "127.0.0.1:25", "--messages"], "--messages"),
    (["--to", "127.0.0.1:25", "--bogus"], "--bogus"),
    (["--to", "127.0.0.1:25", "--domains", "0"], "--domains"),
    (["--to", "127.0.0.1:25", "--domains", "3", "--rcpt", "a@b.c"], "--domains"),
    (["--to", "127.0.0.1:25", "--rcpt", "a@d{d}.c"], "{d}"),
]
with T.case("source usage errors exit 2"):
    for args, opt in SRC_BAD:
        rc, out, err = run("source", *args)
        what = "source %s" % " ".join(args)
        first = err.splitlines()[0] if err else ""
        T.ok(rc == 2 and out == "" and first.startswith("sluice-bench source: ") and opt in first,
             what + ": exit 2, a reason naming %s on stderr, nothing on stdout" % opt,
             "rc %r stdout %r stderr %r" % (rc, out[:100], err[:300]))

SINK_BAD = [
    ([], "--listen"),
    (["--listen", "127.0.0.1"], "--listen"),
    (["--listen", "localhost:25"], "--listen"),
    (["--listen", "127.0.0.1:0"] * 17, "--listen"),
    (["--listen", "127.0.0.1:0", "--reply", "rcpt:451=120%"], "--reply"),
    (["--listen", "127.0.0.1:0", "--reply", "rcpt:451=60%,rcpt:550=50%"], "--reply"),
    (["--listen", "127.0.0.1:0", "--reply", "foo:451=1%"], "--reply"),
    (["--listen", "127.0.0.1:0", "--reply", "rcpt:399=1%"], "--reply"),
    (["--listen", "127.0.0.1:0", "--delay", "rcpt:2h"], "--delay"),
    (["--listen", "127.0.0.1:0", "--delay", "foo:1s"], "--delay"),
    (["--listen", "127.0.0.1:0", "--drop-data", "101%"], "--drop-data"),
    (["--listen", "127.0.0.1:0", "--expect", "x"], "--expect"),
    (["--listen", "127.0.0.1:0", "--max-connections", "0"], "--max-connections"),
    (["--listen", "127.0.0.1:0", "--bogus"], "--bogus"),
    (["--listen", "127.0.0.1:0", "--duration"], "--duration"),
]
with T.case("sink usage errors exit 2"):
    for args, opt in SINK_BAD:
        rc, out, err = run("sink", *args)
        what = "sink %s" % (" ".join(args) if len(args) < 10 else "--listen x17")
        first = err.splitlines()[0] if err else ""
        T.ok(rc == 2 and out == "" and first.startswith("sluice-bench sink: ") and opt in first,
             what + ": exit 2, a reason naming %s on stderr, nothing on stdout" % opt,
             "rc %r stdout %r stderr %r" % (rc, out[:100], err[:300]))

with T.case("unreadable files: exit 2"):
    rc, out, err = run("source", "--to", "127.0.0.1:25", "--corpus", "/nonexistent/corpus")
    T.ok(rc == 2 and "/nonexistent/corpus" in err, "source --corpus missing dir: exit 2, named on stderr",
         "rc %r stderr %r" % (rc, err[:300]))
    rc, out, err = run("source", "--to", "127.0.0.1:25", "--tls-verify", "/nonexistent/ca.pem")
    T.ok(rc == 2 and "/nonexistent/ca.pem" in err, "source --tls-verify missing file: exit 2, named on stderr",
         "rc %r stderr %r" % (rc, err[:300]))

with T.case("sink cannot start: exit 1"):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        rc, out, err = run("sink", "--listen", "127.0.0.1:%d" % port, "--duration", "2s", timeout=10)
        T.ok(rc == 1 and err.strip() != "", "sink on a port in use: exit 1 with a message",
             "rc %r stderr %r" % (rc, err[:300]))
    finally:
        s.close()
    rc, out, err = run("sink", "--listen", "127.0.0.1:0", "--store", "/nonexistent/store", "--duration", "2s",
                       timeout=10)
    T.ok(rc == 1 and "/nonexistent/store" in err, "sink --store missing dir: exit 1, named on stderr",
         "rc %r stderr %r" % (rc, err[:300]))

with T.case("source with nothing listening: exit 1, report with the reason"):
    port = sluice.free_port()
    rc, out, err = run("source", "--to", "127.0.0.1:%d" % port, "--messages", "5", "--json", timeout=20)
    T.eq(rc, 1, "exit 1")
    try:
        rep = json.loads(out)
    except ValueError:
        rep = {}
    T.eq((rep.get("exit"), rep.get("sent"), rep.get("accepted")), (1, 0, 0), "JSON exit 1, 0 sent, 0 accepted")
    T.ok("refused" in str(rep.get("error")).lower(), "JSON error says the connection was refused",
         repr(rep.get("error")))
    T.ok((rep.get("connections_detail") or {}).get("refused", 0) >= 1, "refused connection errors counted",
         repr(rep.get("connections_detail")))
    T.ok("refused" in err.lower(), "the reason is on stderr too", err[:300])
    rc, out, err = run("source", "--to", "127.0.0.1:%d" % port, "--messages", "5", timeout=20)
    T.ok(rc == 1 and "run failed" in out, "text report: exit 1 and a `run failed` line",
         "rc %r stdout %r" % (rc, out[-400:]))

sluice.finish()
