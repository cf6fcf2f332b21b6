#!/usr/bin/python3
# timeout: 120
# Description: sluicectl dkim-keygen and dkim-check. keygen writes a new
# key file of mode 0600 (never over an existing file), prints a TXT record
# whose strings are at most 255 bytes and which nsd serves as written;
# the key loads in `sluicectl check` and signs. dkim-check, through the
# configured resolver (a local nsd), says OK (exit 0) for a published key
# that matches, MISMATCH (exit 1) for a record of another key or none,
# and exit 75 when DNS does not answer.
import os
import re
import subprocess

import sluice
from sluice import T

try:
    import dnslib
except ImportError as e:
    sluice.skip("dnslib needs dnspython: %s" % e)
if not dnslib.have_nsd():
    sluice.skip("nsd is not installed")

d = sluice.tmpdir()


def ctl(*args, config=None):
    cmd = [sluice.SLUICECTL] + (["-c", config] if config else []) + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                          env=sluice.clean_env(), stdin=subprocess.DEVNULL)


def record_of(out):
    """The zone-file lines of the TXT record keygen printed."""
    m = re.search(r"^(\S+\._domainkey\.\S+ IN TXT \(.*?\))$", out, re.S | re.M)
    return m.group(1) if m else None


keys = {}
with T.case("dkim-keygen"):
    for sel, alg, bits in (("r1", "rsa", "2048"), ("e1", "ed25519", None), ("r4", "rsa", "4096")):
        path = os.path.join(d, "%s.pem" % sel)
        args = ["dkim-keygen", "--domain", "example.com", "--selector", sel,
                "--algorithm", alg, "--out", path] + (["--bits", bits] if bits else [])
        r = ctl(*args)
        T.eq(r.returncode, 0, "keygen %s exits 0 (%s)" % (sel, r.stderr.strip()))
        T.eq(os.stat(path).st_mode & 0o777, 0o600, "key file %s is mode 0600" % sel)
        rec = record_of(r.stdout)
        T.ok(rec is not None, "keygen %s prints a TXT record" % sel, r.stdout)
        strings = re.findall(r'"([^"]*)"', rec or "")
        T.ok(strings and all(len(s) <= 255 for s in strings),
             "every string of %s's record is at most 255 bytes" % sel,
             [len(s) for s in strings])
        joined = "".join(strings)
        T.ok(joined.startswith("v=DKIM1; k=%s; p=" % alg), "%s record: v=DKIM1; k=%s" % (sel, alg), joined[:40])
        if bits == "4096":
            T.ok(len(strings) >= 3, "a 4096-bit record needs three strings or more", len(strings))
        T.ok("key: %s" % path in r.stdout, "keygen prints the config line with the key's path")
        keys[sel] = (path, alg, rec)
    r = ctl("dkim-keygen", "--domain", "example.com", "--selector", "r1", "--out", keys["r1"][0])
    T.eq(r.returncode, 1, "keygen does not overwrite an existing file")
    r = ctl("dkim-keygen", "--domain", "example.com", "--selector", "x", "--bits", "512",
            "--out", os.path.join(d, "weak.pem"))
    T.eq(r.returncode, 2, "keygen refuses --bits 512")
    T.ok(not os.path.exists(os.path.join(d, "weak.pem")), "and writes nothing")
    r = ctl("dkim-keygen", "--domain", "example.com")
    T.eq(r.returncode, 2, "keygen without --selector is a usage error")

# The zone publishes r1 and e1 as printed, r4's selector with r1's key.
other = keys["r1"][2].replace("r1._domainkey", "r4._domainkey")
zone = dnslib.zone_text("example.com", [keys["r1"][2], keys["e1"][2], other])
conf = os.path.join(d, "sluice.yaml")
ns = dnslib.NSD(os.path.join(d, "nsd"), {"example.com": zone})
with open(conf, "w") as f:
    f.write("spool: %s\ndns: {resolver: \"%s\", timeout: 500ms, attempts: 1}\ndkim:\n" % (
        os.path.join(d, "spool"), ns.spec))
    for sel in ("r1", "e1", "r4"):
        f.write("  - {domain: example.com, selector: %s, key: %s, algorithm: %s}\n" % (
            sel, keys[sel][0], keys[sel][1]))
    f.write("  - {domain: example.org, selector: gone, key: %s}\n" % keys["r1"][0])

with T.case("the keys load"):
    r = ctl("check", config=conf)
    T.eq((r.returncode, r.stdout.strip()), (0, "configuration OK"), "sluicectl check (%s)" % r.stderr.strip())

with T.case("dkim-check"):
    r = ctl("dkim-check", "--domain", "example.com", "--selector", "r1", config=conf)
    T.eq(r.returncode, 0, "r1 published as printed: exit 0")
    T.ok("example.com r1 (rsa-sha256): OK" in r.stdout, "r1: OK", r.stdout)
    r = ctl("dkim-check", "--selector", "e1", config=conf)
    T.eq(r.returncode, 0, "e1 (ed25519) published as printed: exit 0")
    T.ok("OK, the published key matches" in r.stdout, "e1: OK", r.stdout)
    r = ctl("dkim-check", "--selector", "r4", config=conf)
    T.eq(r.returncode, 1, "r4 publishes another key: exit 1")
    T.ok("MISMATCH" in r.stdout and "another key" in r.stdout, "r4: MISMATCH, another key", r.stdout)
    r = ctl("dkim-check", "--domain", "example.org", config=conf)
    T.eq(r.returncode, 1, "a selector not published: exit 1")
    T.ok("no TXT record" in r.stdout, "says there is no TXT record", r.stdout)
    r = ctl("dkim-check", config=conf)
    T.eq(r.returncode, 1, "all keys: exit 1 when any does not match")
    T.eq(len(r.stdout.strip().splitlines()), 4, "one line per configured key")
    r = ctl("dkim-check", "--selector", "nope", config=conf)
    T.eq(r.returncode, 2, "no key matches the filter: exit 2")

ns.stop()
with T.case("DNS down"):
    r = ctl("dkim-check", "--selector", "r1", config=conf)
    T.eq(r.returncode, 75, "no answer: exit 75 (%s)" % r.stdout.strip())

sluice.finish()
