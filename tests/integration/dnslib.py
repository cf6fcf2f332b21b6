"""
dnslib.py - DNS servers for the integration tests: a real nsd, and tiny
dnspython responders for what nsd will not do on demand (TC over UDP).

Description: everything listens on 127.0.0.1 on a port the test picks; no
system paths are touched and nothing outside the test talks to them.

API:
  zone_text(origin, records, ttl=300, neg_ttl=60) -> str
      A master file for ORIGIN: $ORIGIN, $TTL, an SOA (MINIMUM neg_ttl),
      NS ns.ORIGIN with ns A 127.0.0.1, then `records` (lines, relative
      or absolute names, e.g. "@ IN MX 10 mx1", "mx1 IN A 127.0.0.2").

  NSD(tmpdir, zones, port=None, timeout=10)      (a context manager)
      Writes nsd.conf and one file per zone into tmpdir and runs
      `/usr/sbin/nsd -d -c tmpdir/nsd.conf` in its own process group.
      zones: {"x.test": zone text, ...}; a value of None configures the
      zone with a file that cannot load, so nsd answers SERVFAIL for it.
      Names outside every zone get REFUSED. Waits (at most `timeout`
      seconds) until nsd answers a query. Attributes: port, addr
      ("127.0.0.1"), spec ("127.0.0.1:PORT", for --resolver and
      dns.resolver), dir. stop() ends the whole process group (SIGTERM,
      then SIGKILL after 5 s); log_tail(n) returns nsd's log.
      Raises RuntimeError if nsd is missing (callers may skip: see
      have_nsd()) or does not come up.

  Responder(handler, port=None)                  (a context manager)
      A UDP and TCP server on 127.0.0.1:port in a thread of this process.
      handler(query, tcp) gets a dns.message.Message and whether it came
      over TCP, and returns a dns.message.Message, wire bytes, or None
      (no reply). Every query is appended to .log as (qname, rdtype
      text, tcp). Attributes: port, spec. stop() joins the thread.

  Handlers: servfail_handler; truncating_handler(records) answers over
  TCP from records {("name.", "MX"): ["10 mx1.x.", ...], ...} (NXDOMAIN
  for unknown names) and over UDP only with TC set and no records.

  free_port() -> a port free for UDP and TCP on 127.0.0.1.
  query(port, name, rdtype, tcp=False, timeout=2) -> dns.message.Message

Every wait is bounded; every process and thread started here is ended
at exit (atexit), also when the test fails.
"""

import atexit
import contextlib
import os
import random
import selectors
import signal
import socket
import struct
import subprocess
import threading
import time

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset

NSD_BIN = "/usr/sbin/nsd"
ADDR = "127.0.0.1"

_live = []


def _cleanup():
    for s in list(_live):
        with contextlib.suppress(Exception):
            s.stop()


atexit.register(_cleanup)


def have_nsd():
    return os.access(NSD_BIN, os.X_OK)


def free_port():
    """A port free for both UDP and TCP on 127.0.0.1, below the
    ephemeral range so that client sockets cannot take it meanwhile."""
    rnd = random.Random(os.getpid() ^ int(time.time() * 1000))
    for _ in range(200):
        port = rnd.randrange(20000, 32000)
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            u.bind((ADDR, port))
            t.bind((ADDR, port))
            return port
        except OSError:
            continue
        finally:
            u.close()
            t.close()
    raise RuntimeError("no free port found")


def zone_text(origin, records, ttl=300, neg_ttl=60):
    origin = origin.rstrip(".")
    head = ["$ORIGIN %s." % origin,
            "$TTL %d" % ttl,
            "@ IN SOA ns.%s. hostmaster.%s. 1 3600 900 86400 %d"
            % (origin, origin, neg_ttl),
            "@ IN NS ns.%s." % origin,
            "ns IN A 127.0.0.1"]
    return "\n".join(head + list(records)) + "\n"


def query(port, name, rdtype, tcp=False, timeout=2.0):
    q = dns.message.make_query(name, rdtype)
    if tcp:
        return dns.query.tcp(q, ADDR, port=port, timeout=timeout)
    return dns.query.udp(q, ADDR, port=port, timeout=timeout)


class NSD:
    def __init__(self, tmpdir, zones, port=None, timeout=10):
        if not have_nsd():
            raise RuntimeError("%s is not installed" % NSD_BIN)
        self.dir = os.path.join(tmpdir, "nsd")
        os.makedirs(self.dir, exist_ok=True)
        self.addr = ADDR
        self.port = port or free_port()
        self.spec = "%s:%d" % (ADDR, self.port)
        self.zones = dict(zones)
        self.proc = None
        self.log = os.path.join(self.dir, "nsd.log")
        self._write_config()
        self.start(timeout)

    def _write_config(self):
        d = self.dir
        conf = ["server:",
                "  ip-address: %s" % ADDR,
                "  port: %d" % self.port,
                "  do-ip6: no",
                '  username: ""',
                '  chroot: ""',
                '  zonesdir: "%s"' % d,
                '  database: ""',
                '  pidfile: "%s"' % os.path.join(d, "nsd.pid"),
                '  xfrdfile: "%s"' % os.path.join(d, "xfrd.state"),
                '  xfrdir: "%s"' % d,
                '  zonelistfile: "%s"' % os.path.join(d, "zone.list"),
                '  logfile: "%s"' % self.log,
                "  server-count: 1",
                "  tcp-count: 16",
                # Debian's nsd limits responses to 200/s per /24 (RRL),
                # and every query here comes from 127.0.0.1: past that
                # rate answers go missing, which no caller asked for
                # (bench/compare sends thousands a second).
                "  rrl-ratelimit: 0",
                "  verbosity: 1",
                "  hide-version: yes",
                "  identity: \"\"",
                "remote-control:",
                "  control-enable: no"]
        for name, text in self.zones.items():
            name = name.rstrip(".")
            fname = "%s.zone" % name
            with open(os.path.join(d, fname), "w") as f:
                # A zone that cannot load: nsd then answers SERVFAIL.
                f.write(text if text is not None else "this is not a zone\n")
            conf += ["zone:", "  name: %s" % name, "  zonefile: %s" % fname]
        self.conf = os.path.join(d, "nsd.conf")
        with open(self.conf, "w") as f:
            f.write("\n".join(conf) + "\n")

    def start(self, timeout=10):
        out = open(os.path.join(self.dir, "nsd.out"), "ab")
        try:
            # Own process group: nsd forks a server and xfrd, and stop()
            # must end all of them, and only them.
            self.proc = subprocess.Popen([NSD_BIN, "-d", "-c", self.conf],
                                         stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        finally:
            out.close()
        _live.append(self)
        probe = next(iter(self.zones), "probe.test")
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("nsd exited with %s; log:\n%s"
                                   % (self.proc.returncode, self.log_tail()))
            try:
                query(self.port, probe, "SOA", timeout=0.3)
                return self
            except Exception as e:      # not listening yet
                last = e
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("nsd not answering after %ss (%s); log:\n%s"
                           % (timeout, last, self.log_tail()))

    def stop(self):
        p = self.proc
        if p is None:
            return
        self.proc = None
        if self in _live:
            _live.remove(self)
        if p.returncode is not None:
            return                      # reaped already: it died by itself
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGTERM)
        # Wait without reaping: while nsd's main process is an unreaped
        # zombie its pid (our group id) cannot be reused, so the SIGKILL
        # below reaches only nsd's own processes.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                if os.waitid(os.P_PID, p.pid,
                             os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                    break
            except ChildProcessError:
                break
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(5)

    def log_tail(self, n=20):
        lines = []
        for f in (self.log, os.path.join(self.dir, "nsd.out")):
            with contextlib.suppress(OSError):
                with open(f, "rb") as fh:
                    lines += fh.read().decode("utf-8", "replace").splitlines()
        return "\n".join(lines[-n:])

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.stop()


# ---------------------------------------------------------------- responders

class Responder:
    """UDP + TCP DNS responder in a thread; see the module docstring."""

    def __init__(self, handler, port=None):
        self.handler = handler
        self.port = port or free_port()
        self.spec = "%s:%d" % (ADDR, self.port)
        self.log = []
        self._stop = threading.Event()
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.udp.bind((ADDR, self.port))
        self.tcp.bind((ADDR, self.port))
        self.tcp.listen(16)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        _live.append(self)

    def _answer(self, wire, tcp):
        try:
            q = dns.message.from_wire(wire)
        except Exception:
            return None
        if q.question:
            self.log.append((q.question[0].name.to_text(),
                             dns.rdatatype.to_text(q.question[0].rdtype), tcp))
        r = self.handler(q, tcp)
        if r is None or isinstance(r, (bytes, bytearray)):
            return r
        return r.to_wire()

    def _serve_tcp(self, conn):
        """One connection: queries until EOF, each read bounded by 2 s."""
        conn.settimeout(2.0)
        with conn:
            for _ in range(16):
                try:
                    hdr = self._recv_exact(conn, 2)
                    if hdr is None:
                        return
                    msg = self._recv_exact(conn, struct.unpack("!H", hdr)[0])
                    if msg is None:
                        return
                except OSError:
                    return
                out = self._answer(msg, True)
                if out is None:
                    return
                with contextlib.suppress(OSError):
                    conn.sendall(struct.pack("!H", len(out)) + out)

    @staticmethod
    def _recv_exact(conn, n):
        buf = b""
        while len(buf) < n:
            d = conn.recv(n - len(buf))
            if not d:
                return None
            buf += d
        return buf

    def _run(self):
        sel = selectors.DefaultSelector()
        sel.register(self.udp, selectors.EVENT_READ, "udp")
        sel.register(self.tcp, selectors.EVENT_READ, "tcp")
        try:
            while not self._stop.is_set():
                for key, _ in sel.select(0.1):
                    if key.data == "udp":
                        try:
                            wire, peer = self.udp.recvfrom(65535)
                        except OSError:
                            continue
                        out = self._answer(wire, False)
                        if out is not None:
                            with contextlib.suppress(OSError):
                                self.udp.sendto(out, peer)
                    else:
                        try:
                            conn, _ = self.tcp.accept()
                        except OSError:
                            continue
                        self._serve_tcp(conn)
        finally:
            sel.close()

    def stop(self):
        if self in _live:
            _live.remove(self)
        self._stop.set()
        self.thread.join(5)
        self.udp.close()
        self.tcp.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.stop()


def servfail_handler(q, tcp):
    r = dns.message.make_response(q)
    r.set_rcode(dns.rcode.SERVFAIL)
    return r


def truncating_handler(records):
    """records: {("name.", "TYPE"): ["rdata", ...]} (absolute names)."""
    table = {(n.lower(), t.upper()): v for (n, t), v in records.items()}
    names = {n for n, _ in table}

    def handler(q, tcp):
        r = dns.message.make_response(q)
        qn = q.question[0].name.to_text().lower()
        qt = dns.rdatatype.to_text(q.question[0].rdtype)
        if not tcp:
            r.flags |= dns.flags.TC     # "too big": ask over TCP
            return r
        if qn not in names:
            r.set_rcode(dns.rcode.NXDOMAIN)
            return r
        rd = table.get((qn, qt))
        if rd:
            r.answer.append(dns.rrset.from_text_list(qn, 300, "IN", qt, rd))
        return r
    return handler
