"""
tlslib.py - what the TLS integration tests share.

Description: ssl contexts that trust a daemon's certificate, a raw SMTP
connection that can switch to TLS in the middle (for STARTTLS injection
checks), the form of a Received: header written over TLS, and openssl
s_client / swaks runs with bounded time.

Contract:
  - client_ctx(cafile) verifies the chain against cafile and the host name
    given at wrap time; client_ctx(None) verifies nothing.
  - TlsConn(port, ctx) is a sluice.Conn whose socket can be wrapped:
    starttls(ctx, hostname) after the 220, or implicit=True to start with
    TLS; reads and writes go through the TLS layer afterwards.
  - check_tls_stored(d, qid, body, version, proto) checks `queue cat`:
    Received: names the version, a cipher and its bits, with PROTO, and
    the body follows byte for byte.
  - run(argv, input) runs a program with a 30 s timeout; (rc, stdout+stderr).

For the outbound tests (test_deliver_tls*.py):
  Certs(names, ips=("127.0.0.1",))
      A private CA (ECDSA P-256, made with `openssl req -x509`) and a
      server certificate it signs for the DNS names `names` and the
      addresses `ips`, in a fresh directory: .ca (the CA's PEM, what
      tls_ca_file takes), .cert and .key (the server's chain and key).
      server_ctx() -> an ssl.SSLContext serving them; broken_ctx() -> one
      that can never agree with sluice (TLS 1.0/1.1 only), for handshakes
      that fail.
  password_file(text, mode=0o600) -> the path of a new file holding text.
"""

import os
import re
import socket
import ssl
import subprocess
import time

import sluice
from sluice import T

TLS_RECEIVED_RE = re.compile(
    r"^Received: from (?P<helo>\S+) \(\[127\.0\.0\.1\]\)\r\n"
    r"\t\(version=(?P<version>TLSv1\.[23]) cipher=(?P<cipher>[A-Za-z0-9_-]+)"
    r" bits=(?P<bits>\d+)\)\r\n"
    r"\tby (?P<host>\S+) \(sluice\) with (?P<proto>\S+) id (?P<qid>[0-9A-F]{16})"
    r"(?:\r\n\tfor <(?P<rcpt>[^>]*)>; |;\r\n\t)(?P<date>[^\r\n]+)\r\n$")


def selfsigned_paths(d):
    return (os.path.join(d.spool, "tls-selfsigned-cert.pem"),
            os.path.join(d.spool, "tls-selfsigned-key.pem"))


def client_ctx(cafile):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if cafile is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.load_verify_locations(cafile)
    return ctx


class TlsConn(sluice.Conn):
    def __init__(self, port, ctx=None, hostname=sluice.HOSTNAME,
                 implicit=False, timeout=10):
        super().__init__(port, timeout=timeout)
        if implicit:
            self.starttls(ctx, hostname)

    def starttls(self, ctx, hostname=sluice.HOSTNAME):
        """Wrap the socket; bytes already read but unparsed are kept."""
        self.sock.settimeout(self.timeout)
        self.sock = ctx.wrap_socket(self.sock, server_hostname=hostname)
        return self.sock


def check_tls_stored(d, qid, body, version="TLSv1.3", proto="ESMTPS",
                     helo="client.example", rcpt="b@example.net", what=None):
    what = what or "stored message %s" % qid
    data = d.cat(qid)
    if not T.ok(data is not None, what + ": queue cat succeeds"):
        return None
    hdr, rest = sluice.split_received(data)
    if not T.ok(hdr is not None, what + ": starts with Received:", repr(data[:200])):
        return None
    h = hdr.decode("latin-1")
    m = TLS_RECEIVED_RE.match(h)
    if not T.ok(m is not None, what + ": Received: names the TLS version and cipher", repr(h)):
        return None
    T.eq(m.group("proto"), proto, what + ": Received with " + proto)
    T.eq(m.group("version"), version, what + ": Received version")
    T.ok(int(m.group("bits")) >= 128, what + ": cipher bits at least 128", m.group("bits"))
    T.eq(m.group("helo"), helo, what + ": Received from the HELO name")
    T.eq(m.group("host"), d.hostname, what + ": Received by our hostname")
    T.eq(m.group("qid"), qid, what + ": Received id is the QID")
    T.eq(m.group("rcpt"), rcpt, what + ": Received for <rcpt>")
    T.ok(rest == body, what + ": body stored exactly (%d bytes)" % len(body),
         "got %r" % rest[:200])
    return m


def run(argv, input=b"", timeout=30):
    p = subprocess.run(argv, input=input, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=timeout,
                       env=sluice.clean_env())
    return p.returncode, p.stdout.decode("utf-8", "replace")


def queued_ids(text):
    return re.findall(r"250 2\.0\.0 Ok: queued as ([0-9A-F]{16})", text)


def ports(n):
    """n distinct free loopback ports (free_port() draws from a seed of
    the time in ms, so calls in the same ms would give the same one)."""
    got = []
    for _ in range(1000):
        if len(got) == n:
            break
        p = sluice.free_port()
        if p not in got:
            got.append(p)
        time.sleep(0.002)
    if len(got) != n:
        raise RuntimeError("no %d distinct free ports" % n)
    return got


def listen_opts(n, port, mode):
    return ["listen.%d.address=127.0.0.1:%d" % (n, port), "listen.%d.tls=%s" % (n, mode)]


def tls_handshake_refused(port, payload, timeout=5):
    """Connect, send payload as if it were a ClientHello, and return True
    when the server closes the connection within timeout."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(payload)
        s.settimeout(timeout)
        while True:
            try:
                b = s.recv(4096)
            except ConnectionResetError:
                return True
            except socket.timeout:
                return False
            if not b:
                return True
    finally:
        s.close()


# ---------------------------------------------------------------- outbound

def _openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class Certs:
    def __init__(self, names, ips=("127.0.0.1",)):
        self.dir = sluice.tmpdir()
        j = lambda n: os.path.join(self.dir, n)
        self.ca, self.ca_key = j("ca.pem"), j("ca.key")
        self.cert, self.key = j("server.pem"), j("server.key")
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt",
                 "ec_paramgen_curve:P-256", "-nodes", "-keyout", self.ca_key,
                 "-out", self.ca, "-days", "2", "-subj", "/CN=sluice test CA",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        san = ",".join(["DNS:" + n for n in names] + ["IP:" + a for a in ips])
        ext = j("ext.cnf")
        with open(ext, "w") as f:
            f.write("subjectAltName=%s\nbasicConstraints=CA:FALSE\n"
                    "extendedKeyUsage=serverAuth\n" % san)
        _openssl("req", "-new", "-newkey", "ec", "-pkeyopt",
                 "ec_paramgen_curve:P-256", "-nodes", "-keyout", self.key,
                 "-out", j("server.csr"), "-subj", "/CN=%s" % names[0])
        _openssl("x509", "-req", "-in", j("server.csr"), "-CA", self.ca,
                 "-CAkey", self.ca_key, "-CAcreateserial", "-days", "2",
                 "-extfile", ext, "-out", self.cert)
        # Postfix's smtpd reads them as user postfix.
        os.chmod(self.dir, 0o755)
        for p in (self.cert, self.key, self.ca):
            os.chmod(p, 0o644)

    def server_ctx(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx

    def broken_ctx(self):
        """Offers only what sluice refuses: every handshake fails."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        ctx.set_ciphers("ALL:@SECLEVEL=0")
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        return ctx


def password_file(text, mode=0o600):
    path = os.path.join(sluice.tmpdir(), "password")
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path
