"""
sluice.py - shared helper for the sluice integration tests.

Description: starts a real bin/sluiced on a private loopback port and spool,
runs bin/sluicectl against that spool, and speaks raw SMTP over sockets so
that tests can check exact reply lines (including multi-line EHLO replies).

Contract:
  - Daemon(*opts, env=None, config=None, spool=None, hostname=...,
    user="root") starts `sluiced -o hostname=... -o spool=DIR
    -o listen.0.address=127.0.0.1:PORT -o shards=2 -o user=root [-o opt]...`
    with stdout/stderr appended to DIR/sluiced.log. The suite runs as root
    and its temporary directories are root's alone, so daemons stay root
    unless a test passes user=NAME (and makes its paths reachable);
    user=None leaves the key to the config (default: sluice)
    and waits (at most 10 s) for a `220 ` greeting. stop() sends SIGTERM and
    returns the exit code (None if it had to be killed); kill9() kills it;
    start() starts it again on the same port and spool.
  - Conn(port) is a raw SMTP client: send(bytes), reply() reads one complete
    reply (up to a final `NNN ` line) with a timeout, cmd(line) does both.
  - T (a Checker) records checks; finish() prints a summary and exits
    0 (all passed), 1 (any failed) or 77 (skip()).
  - dkim_keygen(dir, sel, alg) makes a key with `sluicectl dkim-keygen`
    for example.com: (its path, its TXT record's text); dkim_dns(keys)
    answers python3-dkim's DNS queries from {sel: (path, txt)}.
  - system_user(name="sluice") is the pwd entry of the system user a
    daemon drops root for, created (as `make test` does) if it is
    missing; the test is skipped unless it runs as root.
  - At exit every daemon still running is killed; temporary directories are
    removed unless a check failed (their path is printed then), and the tail
    of every daemon log is printed on failure.
Diagnostics: every check prints `ok   what` or `FAIL what: detail`.
Tests must run as /usr/bin/python3 tests/integration/test_NAME.py from the
repository root (tests/run.sh does this), with SLUICE_BIN naming bin/.
"""

import atexit
import base64
import contextlib
import hashlib
import json
import os
import pwd
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("SLUICE_BIN") or os.path.join(ROOT, "bin")
SLUICED = os.path.join(BIN, "sluiced")
SLUICECTL = os.path.join(BIN, "sluicectl")
HOSTNAME = "test.example"
SKIP = 77

sys.stdout.reconfigure(line_buffering=True)

QID_RE = re.compile(r"^[0-9A-F]{16}$")
QUEUED_RE = re.compile(r"^250 2\.0\.0 Ok: queued as ([0-9A-F]{16})$")
# RFC 5322 date-time, day of week optional, an optional trailing comment.
DATE_RE = re.compile(r"^(?:[A-Z][a-z]{2}, )?\d{1,2} [A-Z][a-z]{2} \d{4} "
                     r"\d{2}:\d{2}(?::\d{2})? [+-]\d{4}(?: \([^()]*\))?$")

_daemons = []
_tmpdirs = []
_failed = False
_lock = threading.Lock()


def _mark_failed():
    global _failed
    _failed = True


# ---------------------------------------------------------------- checks

class Checker:
    """Counts checks and failures; each check prints one line."""

    def __init__(self):
        self.checks = 0
        self.failures = 0
        self.failed = []

    def ok(self, cond, what, detail=""):
        with _lock:
            self.checks += 1
            if cond:
                print("ok   " + what)
            else:
                self.failures += 1
                _mark_failed()
                msg = "FAIL " + what + (": " + detail if detail else "")
                self.failed.append(msg)
                print(msg)
        return bool(cond)

    def fail(self, what, detail=""):
        return self.ok(False, what, detail)

    def eq(self, got, want, what):
        return self.ok(got == want, what, "expected %r, got %r" % (want, got))

    def line(self, reply, want, what=None):
        """The reply's final line is exactly `want`."""
        what = what or "reply %r" % want
        got = reply.last if reply is not None else None
        return self.ok(got == want, what, "expected %r, got %r" % (want, str(reply)))

    def prefix(self, reply, want, what=None):
        """The reply's final line starts with `want`."""
        what = what or "reply starts %r" % want
        got = reply.last if reply is not None else ""
        return self.ok(got.startswith(want), what,
                       "expected %r..., got %r" % (want, str(reply)))

    def code(self, reply, code, what=None):
        what = what or "reply code %d" % code
        got = reply.code if reply is not None else None
        return self.ok(got == code, what, "expected %d, got %r" % (code, str(reply)))

    @contextlib.contextmanager
    def case(self, name):
        """A named group of checks; an exception fails the case only."""
        print("--- " + name)
        try:
            yield
        except Exception as e:
            self.fail(name + " raised " + type(e).__name__, str(e))
            traceback.print_exc(file=sys.stdout)


T = Checker()


def skip(reason):
    print("SKIP: " + reason)
    sys.exit(SKIP)


def finish():
    """Print the summary and exit 0 / 1."""
    print("%d checks, %d failed" % (T.checks, T.failures))
    if T.checks == 0:
        print("FAIL no checks ran")
        _mark_failed()
    sys.exit(1 if _failed else 0)


def _excepthook(tp, val, tb):
    _mark_failed()
    sys.__excepthook__(tp, val, tb)


sys.excepthook = _excepthook


def _cleanup():
    for d in list(_daemons):
        if d.proc is not None and d.proc.poll() is None:
            d.proc.kill()
            with contextlib.suppress(Exception):
                d.proc.wait(5)
    if _failed:
        for d in _daemons:
            d.print_log_tail(12)
    for p in _tmpdirs:
        if _failed:
            print("kept " + p)
        else:
            shutil.rmtree(p, ignore_errors=True)
    if T.failed:
        # Repeated last, so that a runner showing the tail shows them.
        print("=== failed checks:")
        for m in T.failed:
            print(m if len(m) <= 600 else m[:600] + "...")
        print("%d checks, %d failed" % (T.checks, T.failures))


atexit.register(_cleanup)


def dkim_keygen(d, sel, alg="ed25519", domain="example.com"):
    """A new DKIM key in d by `sluicectl dkim-keygen`: (path, the text of
    the TXT record it printed, its strings joined)."""
    path = os.path.join(d, sel + ".pem")
    r = subprocess.run([SLUICECTL, "dkim-keygen", "--domain", domain,
                        "--selector", sel, "--algorithm", alg, "--out", path],
                       capture_output=True, text=True, timeout=60, env=clean_env(),
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    return path, "".join(re.findall(r'"([^"]*)"', r.stdout))


def dkim_dns(keys, domain="example.com"):
    """A dnsfunc for python3-dkim: SEL._domainkey.DOMAIN answered from
    keys {sel: (path, txt)} as they are when asked."""
    def dnsfunc(name, timeout=5):
        name = name.decode() if isinstance(name, bytes) else name
        for sel, (_, txt) in keys.items():
            if name.rstrip(".").lower() == "%s._domainkey.%s" % (sel, domain):
                return txt.encode()
        return None
    return dnsfunc


def system_user(name="sluice"):
    """The pwd entry of system user name, made if missing; skips the test
    unless it runs as root (only root can drop root)."""
    if os.geteuid() != 0:
        skip("needs root to drop it")
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                        "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
                        name], check=True, timeout=30)
        return pwd.getpwnam(name)


def tmpdir():
    p = tempfile.mkdtemp(prefix="sluice-it-")
    _tmpdirs.append(p)
    return p


# One generator per process: seeded afresh on every call, two calls in the
# same millisecond gave the same port, and two listeners on one port
# (SO_REUSEPORT) silently share its connections.
_port_rnd = random.Random(os.getpid() ^ int(time.time() * 1000))


def free_port():
    """A loopback port below the ephemeral range, so that client sockets
    of concurrent tests cannot take it between our probe and a restart."""
    for _ in range(200):
        port = _port_rnd.randrange(20000, 32000)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    raise RuntimeError("no free port found")


# ---------------------------------------------------------------- daemon

def clean_env():
    """The environment without SLUICE_* (SLUICE_BIN is ours, not a config
    override), so that only overrides a test asks for reach the programs."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}


class Daemon:
    def __init__(self, *opts, env=None, config=None, spool=None,
                 hostname=HOSTNAME, port=None, start=True, shards=2,
                 deliver=None, user="root"):
        for b in (SLUICED, SLUICECTL):
            if not os.access(b, os.X_OK):
                raise RuntimeError("%s is not built (run make)" % b)
        self.dir = tmpdir()
        self.spool = spool or os.path.join(self.dir, "spool")
        os.makedirs(self.spool, exist_ok=True)
        self.port = port or free_port()
        self.hostname = hostname
        self.opts = list(opts)
        self.env = env
        self.config = config
        self.shards = shards
        self.user = user
        # Tests of acceptance keep their mail queued: delivery is paused
        # unless asked for (or the test brings its own config file).
        self.deliver = deliver if deliver is not None else config is not None
        self.log = os.path.join(self.dir, "sluiced.log")
        self.delivery_log = os.path.join(self.dir, "delivery.log")
        self.proc = None
        _daemons.append(self)
        if start:
            self.start()

    def argv(self):
        a = [SLUICED]
        if self.config:
            a += ["-c", self.config]
        if self.hostname:
            a += ["-o", "hostname=" + self.hostname]
        a += ["-o", "spool=" + self.spool,
              "-o", "listen.0.address=127.0.0.1:%d" % self.port,
              "-o", "shards=%d" % self.shards]
        if self.user:
            a += ["-o", "user=" + self.user]
        # Never the system resolver: a dead loopback port unless the
        # test's config names its own DNS server.
        text = ""
        if self.config:
            with open(self.config) as f:
                text = f.read()
        if "resolver" not in text:
            a += ["-o", "dns.resolver=127.0.0.1:9"]
        if "log:" not in text:
            a += ["-o", "delivery.log=" + self.delivery_log]
        if not self.deliver:
            a += ["-o", "delivery.paused=true"]
        for o in self.opts:
            a += ["-o", o]
        return a

    def start(self, timeout=10):
        env = clean_env()
        if self.env:
            env.update(self.env)
        with open(self.log, "ab") as log:
            log.write(("=== start %s\n" % " ".join(self.argv())).encode())
            log.flush()
            self.proc = subprocess.Popen(self.argv(), stdout=log,
                                         stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=10):
        """Bounded: until a 220 greeting arrives, the daemon dies, or timeout."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("sluiced exited with %s during start-up; log:\n%s"
                                   % (self.proc.returncode, self.log_tail(20)))
            try:
                c = Conn(self.port, timeout=max(0.5, deadline - time.monotonic()))
                try:
                    g = c.reply()
                    if g.code != 220:
                        raise RuntimeError("greeting %s" % g)
                    c.send(b"QUIT\r\n")
                    with contextlib.suppress(Exception):
                        c.reply(timeout=2)
                        c.wait_closed(2)
                    return
                finally:
                    c.close()
            except (OSError, EOFError) as e:
                last = e
                time.sleep(0.05)
        raise RuntimeError("sluiced not ready after %.0fs (%s); log:\n%s"
                           % (timeout, last, self.log_tail(20)))

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=15):
        """SIGTERM and wait; returns the exit code, or None if it was killed
        because it did not exit within timeout seconds."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            rc = None
        self._check_log()
        return rc

    def kill9(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        return self.proc.returncode if self.proc else None

    def _check_log(self):
        with contextlib.suppress(OSError):
            with open(self.log, "rb") as f:
                text = f.read().decode("utf-8", "replace")
            for pat in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                        "runtime error:", "ThreadSanitizer"):
                if pat in text:
                    T.fail("daemon log has no sanitizer report", pat)

    def log_tail(self, n=30):
        try:
            with open(self.log, "rb") as f:
                f.seek(0, 2)
                f.seek(max(0, f.tell() - 200000))
                lines = f.read().decode("utf-8", "replace").splitlines()
            return "\n".join(ln if len(ln) <= 300 else ln[:300] + "...(%d chars)" % len(ln)
                             for ln in lines[-n:])
        except OSError:
            return "(no log)"

    def print_log_tail(self, n=30):
        print("--- last %d lines of %s" % (n, self.log))
        print(self.log_tail(n))

    # sluicectl ---------------------------------------------------------
    def ctl(self, *args, binary=False, timeout=60):
        """Runs sluicectl on this spool; returns (rc, stdout, stderr)."""
        argv = [SLUICECTL, "-o", "spool=" + self.spool] + list(args)
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, timeout=timeout, env=clean_env())
        out = p.stdout if binary else p.stdout.decode("utf-8", "replace")
        return p.returncode, out, p.stderr.decode("utf-8", "replace")

    def count(self):
        rc, out, err = self.ctl("queue", "count")
        if rc != 0 or not out.strip().isdigit():
            raise RuntimeError("sluicectl queue count: rc %d out %r err %r" % (rc, out, err))
        return int(out.strip())

    def list(self):
        rc, out, err = self.ctl("queue", "list", "--json")
        if rc != 0:
            raise RuntimeError("sluicectl queue list --json: rc %d err %r" % (rc, err))
        v = json.loads(out)
        if not isinstance(v, list):
            raise RuntimeError("queue list --json is not an array: %r" % out[:200])
        return v

    def cat(self, qid):
        """The stored bytes, or None if sluicectl failed."""
        rc, out, err = self.ctl("queue", "cat", qid, binary=True)
        return out if rc == 0 else None


# ---------------------------------------------------------------- SMTP

class Reply:
    def __init__(self, lines):
        self.lines = lines          # str lines (latin-1), without CRLF
        self.code = int(lines[-1][:3])

    @property
    def last(self):
        return self.lines[-1]

    def __str__(self):
        return " | ".join(self.lines)

    __repr__ = __str__


class Closed(EOFError):
    pass


class Conn:
    """A raw SMTP client connection; all reads are bounded by a timeout."""

    def __init__(self, port, timeout=10, source=None, host="127.0.0.1"):
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(timeout)
        if source:
            self.sock.bind((source, 0))
        try:
            self.sock.connect((host, port))
        except BaseException:
            self.sock.close()
            raise
        self.buf = b""
        self.eof = False

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.sock.sendall(data)

    def send_slowly(self, data, step=1, delay=0.0):
        if isinstance(data, str):
            data = data.encode("utf-8")
        for i in range(0, len(data), step):
            self.sock.sendall(data[i:i + step])
            if delay:
                time.sleep(delay)

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("timed out; received so far %r" % self.buf[:300])
        self.sock.settimeout(left)
        try:
            d = self.sock.recv(65536)
        except socket.timeout:
            raise socket.timeout("timed out; received so far %r" % self.buf[:300])
        except ConnectionResetError:
            d = b""
        if not d:
            self.eof = True
            raise Closed("connection closed; unparsed %r" % self.buf[:300])
        self.buf += d

    def read_line(self, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while b"\r\n" not in self.buf:
            if len(self.buf) > 100000:
                raise RuntimeError("reply line too long")
            self._fill(deadline)
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("latin-1")

    def reply(self, timeout=None):
        """One complete reply: lines `NNN-...` then a final `NNN ...`."""
        deadline = time.monotonic() + (timeout or self.timeout)
        lines = []
        while True:
            line = self.read_line(max(0.01, deadline - time.monotonic()))
            if not re.match(r"^\d{3}([ -]|$)", line):
                raise RuntimeError("malformed reply line %r after %r" % (line, lines))
            if lines and line[:3] != lines[0][:3]:
                raise RuntimeError("reply code changed within a reply: %r" % (lines + [line]))
            lines.append(line)
            if len(line) == 3 or line[3] == " ":
                return Reply(lines)

    def replies(self, n, timeout=None):
        return [self.reply(timeout) for _ in range(n)]

    def cmd(self, line, timeout=None):
        self.send(line + "\r\n" if isinstance(line, str) else line + b"\r\n")
        return self.reply(timeout)

    def try_reply(self, timeout=None):
        """A reply, or None on timeout/close (for checks that must not raise)."""
        try:
            return self.reply(timeout)
        except (OSError, EOFError, RuntimeError):
            return None

    def wait_closed(self, timeout=3):
        """True if the peer closes within timeout (any further bytes are
        collected into self.buf). False on timeout."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self._fill(deadline)
        except Closed:
            return True
        except socket.timeout:
            return False
        except OSError:
            return True

    def pending(self, wait=0.3):
        """Bytes that arrive within `wait` seconds without being asked for."""
        deadline = time.monotonic() + wait
        with contextlib.suppress(OSError, EOFError):
            while True:
                self._fill(deadline)
        return self.buf

    def greet(self):
        return self.reply()

    def ehlo(self, name="client.example"):
        return self.cmd("EHLO " + name)

    def close(self):
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def connect(port, helo="client.example", **kw):
    """Connect, check the greeting, EHLO; returns the Conn."""
    c = Conn(port, **kw)
    g = c.reply()
    if g.code != 220:
        c.close()
        raise RuntimeError("greeting %s" % g)
    r = c.ehlo(helo)
    if r.code != 250:
        c.close()
        raise RuntimeError("EHLO %s" % r)
    return c


def dot_stuff(body):
    """DATA transparency (RFC 5321 4.5.2); body must be empty or end in CRLF."""
    assert body == b"" or body.endswith(b"\r\n")
    out = body.replace(b"\r\n.", b"\r\n..")
    if out.startswith(b"."):
        out = b"." + out
    return out


def qid_of(reply):
    m = QUEUED_RE.match(reply.last) if reply is not None else None
    return m.group(1) if m else None


def send_message(c, body, sender="a@example.com", rcpts=("b@example.net",),
                 mail_params=""):
    """MAIL, RCPT..., DATA, body (dot-stuffed), `.`, one command at a time.
    Returns (replies, final reply); raises if any step is not 250/354."""
    rs = []
    r = c.cmd("MAIL FROM:<%s>%s" % (sender, (" " + mail_params) if mail_params else ""))
    rs.append(r)
    if r.code != 250:
        raise RuntimeError("MAIL: %s" % r)
    for rc in rcpts:
        r = c.cmd("RCPT TO:<%s>" % rc)
        rs.append(r)
        if r.code != 250:
            raise RuntimeError("RCPT: %s" % r)
    r = c.cmd("DATA")
    rs.append(r)
    if r.code != 354:
        raise RuntimeError("DATA: %s" % r)
    c.send(dot_stuff(body) + b".\r\n")
    r = c.reply()
    rs.append(r)
    return rs, r


def pipeline(c, last, sender="a@example.com", rcpts=("b@example.net",),
             mail_params=""):
    """MAIL, RCPT... and then `last` (b"DATA\\r\\n", or a BDAT command with
    its chunk) in one write, as a PIPELINING client sends them. Raises if
    MAIL or a RCPT is not 250; returns the reply to `last`."""
    head = "MAIL FROM:<%s>%s\r\n" % (sender, (" " + mail_params) if mail_params else "")
    head += "".join("RCPT TO:<%s>\r\n" % r for r in rcpts)
    c.send(head.encode("utf-8") + last)
    rs = c.replies(1 + len(rcpts))
    for r in rs:
        if r.code != 250:
            raise RuntimeError("pipelined MAIL/RCPT: %s" % r)
    return c.reply()


def make_body(rnd, size, leading_dots=False, tag=""):
    """A CRLF-terminated RFC 5322-ish message of about `size` bytes of
    printable ASCII (base64 lines of random bytes); with leading_dots, about
    one line in six starts with '.', is '.' or is '..'."""
    hdr = ("Subject: test %s\r\nMessage-ID: <%s@client.example>\r\n\r\n"
           % (tag, tag or rnd.getrandbits(64))).encode()
    n = max(0, size - len(hdr))
    raw = base64.b64encode(rnd.randbytes(n * 3 // 4 + 3))[:max(0, n - 2 * (n // 78 + 1))]
    lines = [raw[j:j + 76] for j in range(0, len(raw), 76)]
    if leading_dots:
        for k in range(len(lines)):
            x = rnd.randrange(18)
            if x == 0:
                lines[k] = b"." + lines[k]
            elif x == 1:
                lines[k] = b"."
            elif x == 2:
                lines[k] = b".."
    return hdr + b"".join(ln + b"\r\n" for ln in lines)


def sha256(b):
    return hashlib.sha256(b).hexdigest()


# ---------------------------------------------------------------- stored messages

RECEIVED_RE = re.compile(
    r"^Received: from (?P<helo>\S+) \(\[(?P<addr>[^\]\s]+)\]\)\r\n"
    r"\tby (?P<host>\S+) \(sluice\) with (?P<proto>\S+) id (?P<qid>[0-9A-F]{16})"
    r"(?:\r\n\tfor <(?P<rcpt>[^>]*)>; |;\r\n\t)(?P<date>[^\r\n]+)\r\n$")


def split_received(data):
    """Splits stored bytes into (first header field incl. CRLF, rest).
    Returns (None, data) if the data does not start with `Received:`."""
    if not data.startswith(b"Received:"):
        return None, data
    i = 0
    while True:
        j = data.find(b"\r\n", i)
        if j < 0:
            return None, data
        nxt = data[j + 2:j + 3]
        if nxt not in (b" ", b"\t"):
            return data[:j + 2], data[j + 2:]
        i = j + 2


def check_stored(d, qid, body, helo="client.example", rcpts=("b@example.net",),
                 proto="ESMTP", what=None):
    """queue cat QID == Received header + exactly `body`."""
    what = what or "stored message %s" % qid
    data = d.cat(qid)
    if not T.ok(data is not None, what + ": queue cat succeeds"):
        return False
    hdr, rest = split_received(data)
    if not T.ok(hdr is not None, what + ": starts with a Received: header",
                repr(data[:200])):
        return False
    h = hdr.decode("latin-1")
    m = RECEIVED_RE.match(h)
    good = T.ok(m is not None, what + ": Received header has the contract's form", repr(h))
    if m:
        good &= T.eq(m.group("helo"), helo, what + ": Received from HELO name")
        good &= T.eq(m.group("addr"), "127.0.0.1", what + ": Received client address")
        good &= T.eq(m.group("host"), d.hostname, what + ": Received by hostname")
        good &= T.eq(m.group("proto"), proto, what + ": Received with protocol")
        good &= T.eq(m.group("qid"), qid, what + ": Received id is the QID")
        if len(rcpts) == 1:
            good &= T.eq(m.group("rcpt"), rcpts[0], what + ": Received for <rcpt>")
        else:
            good &= T.eq(m.group("rcpt"), None, what + ": no `for` clause with several recipients")
        good &= T.ok(DATE_RE.match(m.group("date")), what + ": Received date is RFC 5322",
                     repr(m.group("date")))
    good &= T.ok(rest == body, what + ": body bytes stored exactly (%d bytes)" % len(body),
                 "got %d bytes, first difference at %s" % (len(rest), _first_diff(rest, body)))
    return good


def expect_queued(d, reply, body, what, **kw):
    """The reply is `250 ... queued as QID` and the queue holds the message
    as check_stored() says (kw go there). Returns the QID, or None when the
    message was not queued (a failed check)."""
    q = qid_of(reply)
    if not T.ok(q, what + ": queued", str(reply)):
        return None
    check_stored(d, q, body, what=what, **kw)
    return q


def _first_diff(a, b):
    for i in range(min(len(a), len(b))):
        if a[i] != b[i]:
            return "offset %d: got %r want %r" % (i, a[max(0, i - 10):i + 20], b[max(0, i - 10):i + 20])
    return "offset %d (length)" % min(len(a), len(b))


def ehlo_lines(size=None, hostname=HOSTNAME):
    """The exact EHLO reply of the contract; size None = any number."""
    return ["250-" + hostname, "250-PIPELINING",
            "250-SIZE %s" % ("\\d+" if size is None else size),
            "250-ENHANCEDSTATUSCODES", "250-8BITMIME", "250-SMTPUTF8", "250 CHUNKING"]


def check_ehlo(reply, size=None, hostname=HOSTNAME, what="EHLO reply"):
    want = ehlo_lines(size, hostname)
    got = reply.lines if reply is not None else []
    good = len(got) == len(want) and all(
        (re.fullmatch(w, g) if size is None and "SIZE" in w else w == g)
        for w, g in zip(want, got))
    return T.ok(good, what + " is exactly the advertised extension list",
                "expected %r, got %r" % (want, got))


def wait_until(fn, timeout, step=0.1):
    """Polls fn() until true or timeout (bounded); returns the last value."""
    deadline = time.monotonic() + timeout
    v = fn()
    while not v and time.monotonic() < deadline:
        time.sleep(step)
        v = fn()
    return v
