#!/usr/bin/python3
# Description: sluiced behind a real HAProxy (Debian's, started here in the
# foreground on loopback) with send-proxy (v1), send-proxy-v2, and v2 with
# CRC32C and unique-id TLVs: the client's own address (127.0.0.5, bound by
# smtplib, not HAProxy's 127.0.0.1) is in the Received header and the log,
# allowed_networks judges it (127.0.0.6 gets 554 5.7.1 though HAProxy is
# on loopback), and connections_per_client counts it, not HAProxy. HAProxy's
# health checks (PROXY v2 LOCAL + SMTP) see the server up. Raw sockets: an
# untrusted peer, SMTP without a header, malformed, oversized, cut and slow
# headers are all closed without a greeting and logged once each with the
# reason, and sluiced keeps serving; the client's bytes behind a header
# (even one split over writes) are its first SMTP input.
# timeout: 180
import atexit
import contextlib
import os
import re
import shutil
import smtplib
import socket
import struct
import subprocess
import time

import sluice
from sluice import T

if shutil.which("haproxy") is None:
    sluice.skip("haproxy is not installed (Debian package haproxy)")

ALLOWED = "127.0.0.5"       # in allowed_networks: may relay
DENIED = "127.0.0.6"        # not: gets 554 5.7.1 for a remote recipient
LIMITED = "127.0.0.8"       # for the per-client limit
UNTRUSTED = "127.0.0.9"     # not in proxy_trusted
PER_CLIENT = 2
PROXY_TIMEOUT_S = 1


def distinct_ports(n):
    """n free ports, all different: two listeners on one port
    (SO_REUSEPORT) would split the connections between them."""
    ports = []
    while len(ports) < n:
        p = sluice.free_port()
        if p not in ports:
            ports.append(p)
        else:
            time.sleep(0.002)
    return ports


dport, pport, f1, f2, f3 = distinct_ports(5)
d = sluice.Daemon(
    "allowed_networks=[%s/32]" % ALLOWED,
    "limits.connections_per_client=%d" % PER_CLIENT,
    'listen.1={address: "127.0.0.1:%d", proxy_protocol: true, '
    'proxy_trusted: [127.0.0.1/32], proxy_timeout: %ds}' % (pport, PROXY_TIMEOUT_S),
    port=dport)

# ---------------------------------------------------------------- HAProxy

hdir = sluice.tmpdir()
fronts = {"v1": f1, "v2": f2, "v2tlv": f3}
stats = os.path.join(hdir, "stats.sock")
cfg = """global
    maxconn 200
    stats socket %(stats)s level admin
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend f_v1
    bind 127.0.0.1:%(v1)d
    default_backend b_v1
frontend f_v2
    bind 127.0.0.1:%(v2)d
    default_backend b_v2
frontend f_v2tlv
    bind 127.0.0.1:%(v2tlv)d
    unique-id-format %%{+X}o%%ci:%%cp_%%fi:%%fp_%%Ts_%%rt:%%pid
    default_backend b_v2tlv
backend b_v1
    server s 127.0.0.1:%(sp)d send-proxy
backend b_v2
    server s 127.0.0.1:%(sp)d send-proxy-v2
backend b_v2tlv
    server s 127.0.0.1:%(sp)d send-proxy-v2 proxy-v2-options crc32c,unique-id
backend b_check
    option smtpchk HELO haproxy.example
    server s 127.0.0.1:%(sp)d send-proxy-v2 check check-send-proxy inter 300 rise 1
""" % dict(fronts, stats=stats, sp=pport)
cfgpath = os.path.join(hdir, "haproxy.cfg")
with open(cfgpath, "w") as f:
    f.write(cfg)
hlog = open(os.path.join(hdir, "haproxy.log"), "wb")
haproxy = subprocess.Popen(["haproxy", "-f", cfgpath, "-db"], stdout=hlog,
                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


@atexit.register
def _stop_haproxy():
    if haproxy.poll() is None:
        haproxy.terminate()
        try:
            haproxy.wait(5)
        except subprocess.TimeoutExpired:
            haproxy.kill()
            haproxy.wait(5)
    hlog.close()


def haproxy_up():
    for p in fronts.values():
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", p), timeout=1).close()
            continue
        return False
    return True


if not sluice.wait_until(lambda: haproxy.poll() is not None or haproxy_up(), 10):
    T.fail("haproxy listens within 10 s")
if haproxy.poll() is not None:
    with open(os.path.join(hdir, "haproxy.log"), "rb") as f:
        print(f.read().decode("utf-8", "replace"))
    T.fail("haproxy started", "exit %s" % haproxy.returncode)
    sluice.finish()


def log_text():
    with open(d.log, "rb") as f:
        return f.read().decode("utf-8", "replace")


def log_lines_since(mark, pattern):
    return [ln for ln in log_text()[mark:].splitlines() if re.search(pattern, ln)]


def received_of(qid):
    data = d.cat(qid)
    hdr, _ = sluice.split_received(data or b"")
    m = sluice.RECEIVED_RE.match(hdr.decode("latin-1")) if hdr else None
    return m, data


def send_via(front, source, rcpt="b@example.net", body=None):
    """One message through HAProxy's frontend from `source` with smtplib.
    Returns (RCPT code, end-of-data reply text or None)."""
    body = body or ("Subject: via %s\r\n\r\nfrom %s\r\n" % (front, source)).encode()
    s = smtplib.SMTP(local_hostname="client.example", timeout=10,
                     source_address=(source, 0))
    try:
        code, msg = s.connect("127.0.0.1", fronts[front])
        T.eq((code, msg), (220, b"test.example ESMTP sluice"), "%s from %s: greeting" % (front, source))
        s.ehlo("client.example")
        T.eq(s.mail("a@example.com")[0], 250, "%s from %s: MAIL" % (front, source))
        rc = s.rcpt(rcpt)
        if rc[0] != 250:
            return rc, None
        code, msg = s.data(body)
        return rc, "%d %s" % (code, msg.decode())
    finally:
        with contextlib.suppress(Exception):
            s.quit()
        s.close()


# ---------------------------------------------------------------- through HAProxy

for front, what in (("v1", "send-proxy (v1)"), ("v2", "send-proxy-v2"),
                    ("v2tlv", "send-proxy-v2 with CRC32C and unique-id TLVs")):
    with T.case(what + ": the client's address everywhere"):
        mark = len(log_text())
        rc, end = send_via(front, ALLOWED)
        T.eq(rc[0], 250, what + ": RCPT to a remote domain from an allowed client")
        qid = sluice.qid_of(sluice.Reply([end])) if end else None
        if T.ok(qid, what + ": queued", str(end)):
            m, data = received_of(qid)
            if T.ok(m, what + ": Received header has the contract's form", repr((data or b"")[:300])):
                T.eq(m.group("addr"), ALLOWED, what + ": Received from the client's address")
                T.eq(m.group("helo"), "client.example", what + ": Received HELO name")
            lines = [ln for ln in log_text()[mark:].splitlines() if qid in ln and "client=" in ln]
            T.ok(lines and "client=[%s]" % ALLOWED in lines[0],
                 what + ": the log line names the client, not HAProxy", repr(lines))
            lst = [x for x in d.list() if x.get("id") == qid]
            T.ok(lst and lst[0].get("client_address") == ALLOWED,
                 what + ": queue list shows the client's address", repr(lst))

    with T.case(what + ": allowed_networks judges the client, not HAProxy"):
        rc, end = send_via(front, DENIED)
        T.eq(rc, (554, b"5.7.1 <b@example.net>: Relay access denied"),
             what + ": a client outside allowed_networks may not relay")

with T.case("connections_per_client counts the client, not HAProxy"):
    held = []
    try:
        for i in range(PER_CLIENT):
            c = sluice.Conn(fronts["v2"], source=LIMITED)
            T.code(c.reply(), 220, "connection %d of %d from %s" % (i + 1, PER_CLIENT, LIMITED))
            held.append(c)
        c = sluice.Conn(fronts["v2"], source=LIMITED)
        held.append(c)
        T.line(c.try_reply(5), "421 4.7.0 test.example Error: too many connections",
               "one more from %s: 421 too many connections" % LIMITED)
        # HAProxy holds all of these from 127.0.0.1; another client is free.
        c = sluice.Conn(fronts["v1"], source=ALLOWED)
        held.append(c)
        T.code(c.try_reply(5), 220, "another client through the same HAProxy is greeted")
    finally:
        for c in held:
            c.close()

with T.case("HAProxy's health check (PROXY v2 LOCAL, then SMTP) finds the server up"):
    def check_status():
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(3)
        try:
            s.connect(stats)
            s.sendall(b"show stat\n")
            out = b""
            while True:
                b = s.recv(65536)
                if not b:
                    break
                out += b
        finally:
            s.close()
        for ln in out.decode().splitlines():
            f = ln.split(",")
            if len(f) > 17 and f[0] == "b_check" and f[1] == "s":
                return f[17]
        return None
    status = sluice.wait_until(lambda: (check_status() or "").startswith("UP"), 10, 0.2)
    T.ok(status, "b_check/s is UP", repr(check_status()))

# ---------------------------------------------------------------- raw sockets

V2SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v2_header(src, dst, sport, dport, cmd=0x21, tlvs=b""):
    block = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack(">HH", sport, dport)
    return V2SIG + bytes([cmd, 0x11]) + struct.pack(">H", len(block + tlvs)) + block + tlvs


def raw(source="127.0.0.1"):
    return sluice.Conn(pport, source=source, timeout=5)


def closed_silently(c, what, within=3):
    """The server closes without having sent a single byte."""
    ok = c.wait_closed(within)
    T.ok(ok, what + ": closed", "still open after %ds" % within)
    T.eq(c.buf, b"", what + ": not a byte sent (no greeting)")
    c.close()


def one_log_line(mark, pattern, what):
    lines = log_lines_since(mark, pattern)
    # The line is written after the close; give it a moment.
    if not lines:
        time.sleep(0.5)
        lines = log_lines_since(mark, pattern)
    T.eq(len(lines), 1, what + ": logged once (%r)" % pattern)


with T.case("a direct connection from outside proxy_trusted"):
    mark = len(log_text())
    c = raw(UNTRUSTED)
    c.send(b"PROXY TCP4 127.0.0.5 127.0.0.1 1000 25\r\nEHLO x\r\n")
    closed_silently(c, "untrusted peer with a good header")
    one_log_line(mark, r"connection from %s closed without a greeting: not in proxy_trusted"
                 % re.escape(UNTRUSTED), "untrusted peer")

# A v2 header whose length covers a TLV whose value runs past it.
blk = socket.inet_aton("10.0.0.1") + socket.inet_aton("127.0.0.1") + struct.pack(">HH", 1, 25)
tlv_past = V2SIG + b"\x21\x11" + struct.pack(">H", 12 + 3) + blk + b"\x04\x00\x09" + b"EHLO x\r\n"
bad_headers = [
    ("SMTP without a header", b"EHLO client.example\r\n", "not a PROXY header"),
    ("leading zero in an octet", b"PROXY TCP4 010.0.0.1 127.0.0.1 1000 25\r\n", "bad IPv4 address"),
    ("port 65536", b"PROXY TCP4 10.0.0.1 127.0.0.1 65536 25\r\n", "bad port"),
    ("bare LF", b"PROXY TCP4 10.0.0.1 127.0.0.1 1000 25\n", "LF without CR"),
    ("v1 line past 107 bytes", b"PROXY UNKNOWN " + b"x" * 120 + b"\r\n", "no CRLF within 107 bytes"),
    ("v2 version 1", V2SIG + b"\x11\x11\x00\x0c" + b"\x00" * 12, "version not 2"),
    ("v2 oversized", V2SIG + b"\x21\x11\xff\xff" + b"\x00" * 300, "header too long"),
    ("v2 TLV past the end", tlv_past, "TLV longer than the header"),
]

for name, data, reason in bad_headers:
    with T.case("malformed: " + name):
        mark = len(log_text())
        c = raw()
        c.send(data)
        closed_silently(c, name)
        one_log_line(mark, r"closed without a greeting: .*%s" % re.escape(reason), name)

with T.case("truncated: the peer closes halfway through a header"):
    mark = len(log_text())
    c = raw()
    c.send(b"PROXY TCP4 10.0.0.1 12")
    time.sleep(0.2)
    c.sock.shutdown(socket.SHUT_WR)
    closed_silently(c, "truncated header")
    one_log_line(mark, r"closed by the peer after 22 byte\(s\) of a PROXY header", "truncated header")

with T.case("slow: a header not whole within proxy_timeout"):
    mark = len(log_text())
    c = raw()
    t0 = time.monotonic()
    c.send(b"PROXY TCP4 10.0.0.1 ")
    # Drip a byte now and then: bytes do not extend the header's deadline.
    for b in b"127.0.0":
        if c.pending(0.2):
            break
        with contextlib.suppress(OSError):
            c.send(bytes([b]))
    ok = c.wait_closed(PROXY_TIMEOUT_S + 3)
    took = time.monotonic() - t0
    T.ok(ok, "slow header: closed")
    T.eq(c.buf, b"", "slow header: no greeting")
    T.ok(PROXY_TIMEOUT_S - 0.1 <= took <= PROXY_TIMEOUT_S + 1.5,
         "slow header: closed at proxy_timeout (%ds), not before or much after" % PROXY_TIMEOUT_S,
         "after %.2fs" % took)
    c.close()
    one_log_line(mark, r"no complete PROXY header within %d ms" % (PROXY_TIMEOUT_S * 1000), "slow header")

with T.case("the client's first bytes behind the header are kept"):
    # v1 in three writes, the last with SMTP behind the CRLF.
    c = raw()
    c.send(b"PROXY TCP4 127.0.0.5 ")
    time.sleep(0.1)
    c.send(b"127.0.0.1 4242")
    time.sleep(0.1)
    T.eq(c.pending(0.2), b"", "nothing sent before the header is whole")
    c.send(b" 25\r\nEHLO split.example\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\n")
    T.line(c.reply(), "220 test.example ESMTP sluice", "split v1: greeting")
    T.code(c.reply(), 250, "split v1: EHLO sent with the header's end is answered")
    T.line(c.reply(), "250 2.1.0 Ok", "split v1: MAIL")
    T.line(c.reply(), "250 2.1.5 Ok", "split v1: RCPT allowed: the header's 127.0.0.5 relays")
    T.line(c.cmd("QUIT"), "221 2.0.0 Bye", "split v1: QUIT")
    c.close()
    # v2 with the whole first transaction in the same write.
    c = raw()
    body = b"Subject: same write\r\n\r\nbehind a v2 header\r\n"
    c.send(v2_header("127.0.0.5", "127.0.0.1", 5555, 25) + b"HELO same.example\r\n"
           b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n")
    T.line(c.reply(), "220 test.example ESMTP sluice", "v2 + SMTP in one write: greeting")
    T.line(c.reply(), "250 test.example", "HELO")
    T.line(c.reply(), "250 2.1.0 Ok", "MAIL")
    T.line(c.reply(), "250 2.1.5 Ok", "RCPT")
    T.code(c.reply(), 354, "DATA")
    c.send(body + b".\r\n")
    qid = sluice.qid_of(c.reply())
    if T.ok(qid, "v2 + SMTP in one write: queued"):
        m, data = received_of(qid)
        T.ok(m and m.group("addr") == "127.0.0.5" and m.group("helo") == "same.example",
             "Received from the v2 header's address", repr((data or b"")[:200]))
        T.ok(data is not None and data.endswith(body), "body stored exactly")
    c.cmd("QUIT")
    c.close()

with T.case("LOCAL and UNKNOWN keep the connection's own address"):
    for name, hdr in (("v2 LOCAL", V2SIG + b"\x20\x00\x00\x00"),
                      ("v1 UNKNOWN", b"PROXY UNKNOWN\r\n")):
        c = raw()
        c.send(hdr + b"EHLO local.example\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\n")
        T.line(c.reply(), "220 test.example ESMTP sluice", name + ": greeting")
        T.code(c.reply(), 250, name + ": EHLO")
        c.reply()
        # 127.0.0.1 (the real peer) is not in allowed_networks.
        T.line(c.reply(), "554 5.7.1 <b@example.net>: Relay access denied",
               name + ": judged as the real peer 127.0.0.1")
        c.close()

with T.case("IPv4-mapped TCP6 is the IPv4 client"):
    c = raw()
    c.send(b"PROXY TCP6 ::ffff:127.0.0.5 ::1 4000 25\r\nEHLO mapped.example\r\n"
           b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\n")
    T.line(c.reply(), "220 test.example ESMTP sluice", "mapped: greeting")
    c.reply()
    c.reply()
    T.line(c.reply(), "250 2.1.5 Ok", "mapped: ::ffff:127.0.0.5 matches allowed 127.0.0.5/32")
    c.close()

with T.case("sluiced keeps serving after all that"):
    rc, end = send_via("v2", ALLOWED)
    T.ok(end and end.startswith("250 2.0.0 Ok: queued as"), "a message through HAProxy is still queued", str(end))
    with sluice.Conn(d.port) as c:
        T.code(c.reply(), 220, "the plain listener still greets")
    T.ok(haproxy.poll() is None, "haproxy still running")

T.eq(d.stop(), 0, "sluiced exits 0 on SIGTERM")
sluice.finish()
