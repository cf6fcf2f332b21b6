#!/usr/bin/python3
# Description: `make install` into a scratch prefix puts the three
# programs, four man pages, the configuration, the systemd unit and the
# spool where they belong, with the right modes; the installed
# configuration passes `sluiced -n`; the unit names the installed paths
# and passes `systemd-analyze verify`; every man page passes `mandoc -T
# lint` and `man --warnings`; a second install keeps an edited
# configuration. Every program answers --version and --help. Under
# NOTIFY_SOCKET (path and abstract name) sluiced sends READY=1 once its
# listener greets, and STOPPING=1 when it stops.
# timeout: 180
import os
import shutil
import signal
import socket
import stat
import subprocess
import time

import sluice
from sluice import T

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("SLUICE_BIN", os.path.join(ROOT, "bin"))

tmp = sluice.tmpdir()
prefix = os.path.join(tmp, "usr")
etc = os.path.join(tmp, "etc")
spool = os.path.join(tmp, "spool")
vars_ = ["PREFIX=" + prefix, "SYSCONFDIR=" + etc, "SPOOLDIR=" + spool,
         # the test's binaries, not a rebuild of the tree's
         "BIN=" + BIN]


def make_install():
    # -o all: install the binaries as they are. Without it, make rebuilt
    # BIN's programs from the plain build's objects whenever those were
    # newer, overwriting (under `make asan`) the sanitizer build other
    # tests were running at that moment.
    return subprocess.run(["make", "-s", "-C", ROOT, "-o", "all", "install"] + vars_,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=120, env=sluice.clean_env())


with T.case("make install puts every file in place"):
    p = make_install()
    T.eq(p.returncode, 0, "make install exits 0: " + p.stdout.decode()[-400:])
    want = {
        "usr/sbin/sluiced": 0o755, "usr/sbin/sluicectl": 0o755,
        "usr/bin/sluice-bench": 0o755,
        "usr/share/man/man8/sluiced.8": 0o644,
        "usr/share/man/man8/sluicectl.8": 0o644,
        "usr/share/man/man1/sluice-bench.1": 0o644,
        "usr/share/man/man5/sluice.yaml.5": 0o644,
        "usr/lib/systemd/system/sluiced.service": 0o644,
        "etc/sluice/sluice.yaml": 0o644,
        "usr/share/doc/sluice/configuration.md": 0o644,
    }
    for rel, mode in want.items():
        path = os.path.join(tmp, rel)
        T.ok(os.path.isfile(path), rel + " installed")
        if os.path.isfile(path):
            T.eq(stat.S_IMODE(os.stat(path).st_mode), mode, rel + " mode %o" % mode)
    st = os.stat(spool)
    T.eq(stat.S_IMODE(st.st_mode), 0o750, "spool mode 750")

conf = os.path.join(etc, "sluice", "sluice.yaml")
unit = os.path.join(prefix, "lib", "systemd", "system", "sluiced.service")

with T.case("the installed configuration and unit agree"):
    p = subprocess.run([os.path.join(prefix, "sbin", "sluiced"), "-c", conf, "-n"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30,
                       env=sluice.clean_env())
    T.eq((p.returncode, p.stdout.decode().strip()), (0, "configuration OK"),
         "sluiced -n on the installed file")
    text = open(conf).read()
    T.ok("spool: %s\n" % spool in text, "the configuration names the spool")
    u = open(unit).read()
    T.ok("ExecStart=%s/sbin/sluiced -c %s" % (prefix, conf) in u.splitlines(),
         "ExecStart names the installed sluiced and configuration")
    T.ok("Type=notify" in u, "Type=notify")
    T.ok("ExecReload=%s/sbin/sluicectl -c %s reload" % (prefix, conf) in u.splitlines(),
         "ExecReload waits for the verdict through the installed sluicectl")
    T.ok("ReadWritePaths=%s\n" % spool in u, "the spool is the one writable path")
    if shutil.which("systemd-analyze"):
        p = subprocess.run(["systemd-analyze", "verify", unit],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60,
                           env=dict(sluice.clean_env(),
                                    MANPATH=os.path.join(prefix, "share", "man") + ":"))
        T.eq(p.returncode, 0, "systemd-analyze verify: " + p.stdout.decode()[-600:])
        T.eq(p.stdout.decode().strip(), "", "systemd-analyze verify says nothing")
    else:
        T.fail("systemd-analyze missing (make test installs systemd)")

with T.case("man pages are clean"):
    for sect, page in (("8", "sluiced.8"), ("8", "sluicectl.8"),
                       ("1", "sluice-bench.1"), ("5", "sluice.yaml.5")):
        path = os.path.join(prefix, "share", "man", "man" + sect, page)
        p = subprocess.run(["mandoc", "-T", "lint", "-W", "warning", path],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        T.eq((p.returncode, p.stdout.decode()), (0, ""), "mandoc -T lint " + page)
        p = subprocess.run(["man", "--warnings", "-l", path],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30,
                           env=dict(sluice.clean_env(), MANWIDTH="80"))
        T.eq((p.returncode, p.stderr.decode()), (0, ""), "man --warnings " + page)
        T.ok(b"NAME" in p.stdout and b"SEE ALSO" in p.stdout, page + " renders")

with T.case("a second install keeps an edited configuration"):
    with open(conf, "a") as f:
        f.write("# edited by the operator\n")
    p = make_install()
    T.eq(p.returncode, 0, "second make install exits 0")
    T.ok(open(conf).read().endswith("# edited by the operator\n"), "edit kept")
    T.ok(b"kept" in p.stdout, "install says it kept the file")

with T.case("--version and --help"):
    for prog in ("sluiced", "sluicectl", "sluice-bench"):
        exe = os.path.join(BIN, prog)
        p = subprocess.run([exe, "--version"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=10)
        out = p.stdout.decode()
        T.ok(p.returncode == 0 and out.startswith(prog + " ") and
             out.count("\n") == 1, "%s --version: %r" % (prog, out))
        p = subprocess.run([exe, "--help"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=10)
        T.ok(p.returncode == 0 and b"usage:" in p.stdout, prog + " --help")


def notify_run(addr, bind_to):
    """Starts sluiced with NOTIFY_SOCKET=addr, a datagram socket bound to
    bind_to listening; returns the messages seen up to ready, then after
    stop, and whether the daemon greeted when READY=1 came."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(bind_to)
    s.settimeout(0.2)
    d = sluice.Daemon(start=False, env={"NOTIFY_SOCKET": addr})
    env = sluice.clean_env()
    env["NOTIFY_SOCKET"] = addr
    log = open(d.log, "ab")
    proc = subprocess.Popen(d.argv(), stdout=log, stderr=subprocess.STDOUT, env=env)
    d.proc = proc
    got, greeted = [], None
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            m = s.recv(4096).decode()
        except socket.timeout:
            continue
        got.append(m)
        if "READY=1" in m.split("\n"):
            try:
                c = sluice.Conn(d.port, timeout=5)
                greeted = c.reply().code == 220
                c.close()
            except OSError:
                greeted = False
            break
    proc.send_signal(signal.SIGTERM)
    after = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            after.append(s.recv(4096).decode())
        except socket.timeout:
            if proc.poll() is not None:
                break
    rc = proc.wait(20)
    log.close()
    s.close()
    return got, greeted, after, rc


with T.case("NOTIFY_SOCKET: READY=1 once serving, STOPPING=1 at stop"):
    path = os.path.join(tmp, "notify.sock")
    got, greeted, after, rc = notify_run(path, path)
    T.ok(any("READY=1" in m.split("\n") for m in got), "READY=1 sent: %r" % got)
    T.ok(any("STATUS=listening on" in m for m in got), "STATUS names the listeners")
    T.eq(greeted, True, "the listener greets when READY=1 arrives")
    T.ok(any("STOPPING=1" in m.split("\n") for m in after), "STOPPING=1 sent: %r" % after)
    T.eq(rc, 0, "graceful exit")

with T.case("NOTIFY_SOCKET with an abstract name"):
    name = "sluice-test-notify-%d" % os.getpid()
    got, greeted, after, rc = notify_run("@" + name, "\0" + name)
    T.ok(any("READY=1" in m.split("\n") for m in got), "READY=1 sent: %r" % got)
    T.eq(rc, 0, "graceful exit")

with T.case("a malformed NOTIFY_SOCKET is logged and ignored"):
    d = sluice.Daemon(env={"NOTIFY_SOCKET": "relative/path"})
    T.eq(d.stop(), 0, "starts and stops anyway")
    T.ok("NOTIFY_SOCKET" in open(d.log).read(), "the log says why it does not notify")

sluice.finish()
