"""
danelib.py - a DNSSEC-signed test tree for DANE, on loopback only.

  signed_zone(tmpdir, name, text, expired=False, corrupt_type=None)
      Makes a key with ldns-keygen (ECDSA P-256, one key with the SEP flag
      that signs everything) and signs `text` with ldns-signzone. expired:
      signatures valid from 2019-12-01 to 2020-01-01, long over.
      corrupt_type: the RRSIG over that type gets one octet of its
      signature changed (a bogus answer). Returns (signed text, DS lines
      for the parent).

  Unbound(tmpdir, nsd, zones, anchor, extra=())
      A validating unbound on 127.0.0.1 (a free port; attribute spec is
      "127.0.0.1:PORT"), and on the interfaces in extra ("ADDR@PORT") that asks `nsd` (a dnslib.NSD) for every zone in
      `zones` (stub zones: nsd listens on a high port, so delegations
      alone could not reach it), with `anchor` (DS lines) as its only trust
      anchor. stop() ends it.

  signed_tree(tmpdir, parent, children)
      The zones of a test tree under `parent`: children is {name: (zone
      text as served, DS lines for the parent or None for an unsigned
      delegation)}; the parent gets an NS record and the DS lines of
      each child and is signed here. Returns (zones {name: text} for
      dnslib.NSD, the parent's DS lines: the trust anchor).

  resign_as(signed, rtype, owner_prefix, signer)
      The signed text with one RRSIG's signer name replaced (a forgery).

  spki_sha256(certfile)
      The hex SHA-256 of a certificate's SubjectPublicKeyInfo: the data of
      a TLSA 3 1 1 (or 2 1 1) record.

Tools: ldns-keygen and ldns-signzone (ldnsutils), unbound, nsd, openssl.
have_tools() says whether they are there (callers skip otherwise).
"""
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import dnslib

UNBOUND_BIN = "/usr/sbin/unbound"
KEYGEN = "/usr/bin/ldns-keygen"
SIGNZONE = "/usr/bin/ldns-signzone"
_live = []


def have_tools():
    return all(os.access(p, os.X_OK) for p in (UNBOUND_BIN, KEYGEN, SIGNZONE)) and \
        dnslib.have_nsd() and shutil.which("openssl") is not None


def _run(argv, cwd):
    p = subprocess.run(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=60)
    if p.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (argv[0], p.returncode,
                                                   p.stderr.decode(errors="replace")))
    return p.stdout.decode()


def resign_as(signed, rtype, owner_prefix, signer):
    """signed with the signer name of the RRSIG over rtype, at the owner
    starting with owner_prefix, changed to signer: a forged claim."""
    out, done = [], False
    for ln in signed.splitlines():
        f = ln.split()
        if (not done and len(f) > 12 and f[3] == "RRSIG" and f[4] == rtype and
                f[0].startswith(owner_prefix)):
            f[11] = signer
            ln, done = "\t".join(f), True
        out.append(ln)
    if not done:
        raise RuntimeError("no RRSIG over %s at %s*" % (rtype, owner_prefix))
    return "\n".join(out) + "\n"


def signed_zone(tmpdir, name, text, expired=False, corrupt_type=None):
    d = os.path.join(tmpdir, "keys-" + name)
    os.makedirs(d, exist_ok=True)
    base = _run([KEYGEN, "-a", "ECDSAP256SHA256", "-k", name], d).strip()
    zf = os.path.join(d, name + ".zone")
    with open(zf, "w") as f:
        f.write(text)
    argv = [SIGNZONE, "-o", name, "-f", zf + ".signed"]
    if expired:
        argv += ["-i", "20191201000000", "-e", "20200101000000"]
    _run(argv + [zf, base], d)
    with open(zf + ".signed") as f:
        signed = f.read()
    if corrupt_type is not None:
        out, done = [], False
        for ln in signed.splitlines():
            f = ln.split()
            if not done and len(f) > 5 and f[3] == "RRSIG" and f[4] == corrupt_type:
                sig = f[-1]
                i = len(sig) // 2
                f[-1] = sig[:i] + ("A" if sig[i] != "A" else "B") + sig[i + 1:]
                ln, done = "\t".join(f), True
            out.append(ln)
        if not done:
            raise RuntimeError("no RRSIG over %s in %s" % (corrupt_type, name))
        signed = "\n".join(out) + "\n"
    with open(os.path.join(d, base + ".ds")) as f:
        ds = f.read()
    return signed, ds


def signed_tree(tmpdir, parent, children):
    recs = ["%s. IN NS ns.%s." % (n, parent) for n in children]
    for _, ds in children.values():
        recs += [ln for ln in (ds or "").splitlines() if ln.strip()]
    text, anchor = signed_zone(tmpdir, parent,
                               dnslib.zone_text(parent, recs, ttl=5, neg_ttl=5))
    zones = {n: t for n, (t, _) in children.items()}
    zones[parent] = text
    return zones, anchor


def can_bind53(addr):
    """Can a DNS server listen on addr:53 (UDP and TCP)?"""
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((addr, 53))
        except OSError:
            return False
        finally:
            s.close()
    return True


def spki_sha256(certfile):
    pem = subprocess.run(["openssl", "x509", "-in", certfile, "-pubkey", "-noout"],
                         stdout=subprocess.PIPE, check=True, timeout=30).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pem,
                         stdout=subprocess.PIPE, check=True, timeout=30).stdout
    return hashlib.sha256(der).hexdigest()


class Unbound:
    def __init__(self, tmpdir, nsd, zones, anchor, extra=(), timeout=10):
        zones = list(zones)
        self.dir = os.path.join(tmpdir, "unbound")
        os.makedirs(self.dir, exist_ok=True)
        self.port = dnslib.free_port()
        self.spec = "127.0.0.1:%d" % self.port
        ta = os.path.join(self.dir, "anchor.ds")
        with open(ta, "w") as f:
            f.write(anchor)
        self.log = os.path.join(self.dir, "unbound.log")
        conf = ["server:",
                "  interface: 127.0.0.1@%d" % self.port] + \
               ["  interface: %s" % x for x in extra] + [
                "  port: %d" % self.port,
                "  do-ip6: no",
                "  do-daemonize: no",
                '  username: ""',
                '  chroot: ""',
                '  directory: "%s"' % self.dir,
                '  pidfile: "%s"' % os.path.join(self.dir, "unbound.pid"),
                '  logfile: "%s"' % self.log,
                "  use-syslog: no",
                "  verbosity: 1",
                "  val-log-level: 2",
                # RFC 8914: SERVFAIL says why (sluice logs it).
                "  ede: yes",
                "  num-threads: 1",
                "  do-not-query-localhost: no",
                "  access-control: 127.0.0.0/8 allow",
                '  module-config: "validator iterator"',
                '  trust-anchor-file: "%s"' % ta,
                "  qname-minimisation: no",
                "  harden-referral-path: no",
                "  cache-max-ttl: 5",
                "  cache-max-negative-ttl: 5",
                '  local-zone: "test." nodefault',
                "remote-control:",
                "  control-enable: no"]
        for z in zones:
            conf += ["stub-zone:", '  name: "%s"' % z,
                     "  stub-addr: %s@%d" % (nsd.addr, nsd.port)]
        self.conf = os.path.join(self.dir, "unbound.conf")
        with open(self.conf, "w") as f:
            f.write("\n".join(conf) + "\n")
        out = open(os.path.join(self.dir, "unbound.out"), "ab")
        self.proc = subprocess.Popen([UNBOUND_BIN, "-d", "-c", self.conf], stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        _live.append(self)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("unbound exited with %s: %s" % (self.proc.returncode,
                                                                 self.log_tail()))
            try:
                dnslib.query(self.port, zones[-1], "SOA", timeout=0.5)
                return
            except Exception:
                time.sleep(0.1)
        raise RuntimeError("unbound not answering after %ss: %s" % (timeout, self.log_tail()))

    def log_tail(self, n=20):
        text = ""
        for f in (self.log, os.path.join(self.dir, "unbound.out")):
            try:
                with open(f, errors="replace") as fh:
                    text += "".join(fh.readlines()[-n:])
            except OSError:
                pass
        return text

    def stop(self):
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self.proc = None


def stop_all():
    for u in list(_live):
        u.stop()
