#!/usr/bin/python3
# Description: a listener with both proxy_protocol and implicit TLS (port
# 465 behind a load balancer) reads the PROXY header first, then runs the
# TLS handshake, then greets: with the header and the client's TLS
# ClientHello in one write (the ClientHello is the bytes behind the
# header), and with them in separate writes. The message arrives over TLS
# (Received says ESMTPS) from the address the header named, and a header
# from outside proxy_trusted gets no handshake.
# timeout: 60
import re
import socket
import ssl
import time

import sluice
from sluice import T

CLIENT = "192.0.2.7"
d = sluice.Daemon("listen.0.proxy_protocol=true", "listen.0.proxy_trusted=[127.0.0.1/32]",
                  "listen.0.tls=implicit", "allowed_networks=[%s/32]" % CLIENT, start=False)


def start():
    import subprocess
    log = open(d.log, "ab")
    d.proc = subprocess.Popen(d.argv(), stdout=log, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, env=sluice.clean_env())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if "ready:" in open(d.log).read():
            return
        time.sleep(0.05)
    raise RuntimeError("sluiced did not start")


def tls_session(header, together):
    """PROXY header, TLS over memory BIOs, one SMTP transaction; returns
    (greeting line, final reply line)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_side=False)
    s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = out.read()
    if together:
        s.sendall(header + hello)
    else:
        s.sendall(header)
        time.sleep(0.2)
        s.sendall(hello)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            data = s.recv(65536)
            if not data:
                raise EOFError("closed during the handshake")
            inc.write(data)
        finally:
            pending = out.read()
            if pending:
                s.sendall(pending)
    buf = b""

    def line():
        nonlocal buf
        while b"\r\n" not in buf:
            try:
                buf += obj.read(65536)
            except ssl.SSLWantReadError:
                data = s.recv(65536)
                if not data:
                    raise EOFError("closed")
                inc.write(data)
        ln, buf = buf.split(b"\r\n", 1)
        return ln.decode()

    def reply():
        while True:
            ln = line()
            if ln[3:4] != "-":
                return ln

    def send(b):
        obj.write(b)
        s.sendall(out.read())

    greet = reply()
    send(b"EHLO client.test\r\n")
    reply()
    send(b"MAIL FROM:<a@example.com>\r\n")
    reply()
    send(b"RCPT TO:<b@example.net>\r\n")
    reply()
    send(b"DATA\r\n")
    reply()
    send(b"Subject: proxied tls\r\n\r\nhello\r\n.\r\n")
    last = reply()
    send(b"QUIT\r\n")
    s.close()
    return greet, last


start()
hdr = ("PROXY TCP4 %s 127.0.0.1 40000 465\r\n" % CLIENT).encode()
for together in (True, False):
    with T.case("header then TLS (%s)" % ("one write" if together else "two writes")):
        greet, last = tls_session(hdr, together)
        T.ok(greet.startswith("220 "), "greeting over TLS: " + greet)
        T.ok(last.startswith("250 "), "message accepted: " + last)
        m = re.search(r"queued as ([0-9A-F]{16})", last)
        if m:
            data = d.cat(m.group(1)) or b""
            text = data.decode("latin-1")
            T.ok("[%s]" % CLIENT in text, "Received names the header's client")
            T.ok("ESMTPS" in text, "Received says ESMTPS")

with T.case("an untrusted header's connection gets no handshake"):
    s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
    s.sendall(b"garbage that is not a header\r\n")
    s.settimeout(3)
    try:
        got = s.recv(100)
    except (socket.timeout, ConnectionResetError):
        got = b""
    T.eq(got, b"", "closed without a byte")
    s.close()

T.eq(d.stop(), 0, "graceful stop")
sluice.finish()
