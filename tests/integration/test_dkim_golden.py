#!/usr/bin/env python3
"""Description: the DKIM canonicalisation golden files, checked against an
independent implementation: dkimpy's (Debian python3-dkim). For every
tests/golden/dkim/NAME.in, the body and header sections of NAME.ref (made
by sluice's dkim/dkim_canon.c and dkim/dkim_body.c) must equal what dkimpy's
Simple and Relaxed canonicalisers give, and the bh lines its body hash.
Cases dkimpy's own message parser cannot read (a bare CR, white space
before a header's colon) are compared for what it can: the body only, or
skipped, and said so.
"""
import base64
import hashlib
import os
import re
import sys

try:
    from dkim.canonicalization import Relaxed, Simple
    from dkim import rfc822_parse
except ImportError:
    print("SKIP: python3-dkim is not installed")
    sys.exit(77)

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
GOLDEN = os.path.join(ROOT, "tests", "golden", "dkim")


def parse_in(text):
    """The .in escapes of t_dkim_canon.c, as bytes."""
    out = bytearray()
    for line in text.split("\n")[:-1] if text.endswith("\n") else text.split("\n"):
        if line.startswith("# "):
            continue
        crlf = True
        i = 0
        while i < len(line):
            c = line[i]
            if c == "\\" and i + 1 < len(line):
                e = line[i + 1]
                i += 2
                if e == "r":
                    out += b"\r"
                elif e == "n":
                    out += b"\n"
                elif e == "t":
                    out += b"\t"
                elif e == "c" and i == len(line):
                    crlf = False
                elif e == "x":
                    out.append(int(line[i:i + 2], 16))
                    i += 2
                else:
                    out += e.encode()
                continue
            out += c.encode("latin-1")
            i += 1
        if crlf:
            out += b"\r\n"
    return bytes(out)


def unrender(text):
    """The .ref rendering back to bytes."""
    out = bytearray()
    i = 0
    text = text.replace("\\n\n", "\\n")
    if text.endswith("\n"):
        text = text[:-1]
    while i < len(text):
        c = text[i]
        if c == "\\":
            e = text[i + 1]
            if e == "x":
                out.append(int(text[i + 2:i + 4], 16))
                i += 4
                continue
            out += {"r": b"\r", "n": b"\n", "t": b"\t", "\\": b"\\"}[e]
            i += 2
            continue
        out += c.encode("latin-1")
        i += 1
    return bytes(out)


def sections(ref):
    secs, bh = {}, {}
    for m in re.finditer(r"^== (header|body) (simple|relaxed) ==\n(.*?)(?=^== )",
                         ref, re.S | re.M):
        secs[(m.group(1), m.group(2))] = unrender(m.group(3))
    for m in re.finditer(r"^== bh (simple|relaxed): (\S+)$", ref, re.M):
        bh[m.group(1)] = m.group(2)
    return secs, bh


def main():
    names = sorted(n[:-3] for n in os.listdir(GOLDEN) if n.endswith(".in"))
    assert len(names) >= 8, names
    checked = failed = 0
    for name in names:
        with open(os.path.join(GOLDEN, name + ".in"), encoding="latin-1") as f:
            msg = parse_in(f.read())
        with open(os.path.join(GOLDEN, name + ".ref"), encoding="latin-1") as f:
            secs, bh = sections(f.read())
        if b"\r" in msg.replace(b"\r\n", b""):
            print("note %s: bare CR, which dkimpy reads as a line end: skipped" % name)
            continue
        sep = msg.find(b"\r\n\r\n")
        if msg.startswith(b"\r\n"):
            head, body = b"", msg[2:]
        elif sep < 0:
            head, body = msg, b""
        else:
            head, body = msg[:sep + 2], msg[sep + 4:]
        for canon, cls in (("simple", Simple), ("relaxed", Relaxed)):
            want = cls.canonicalize_body(body)
            digest = base64.b64encode(hashlib.sha256(want).digest()).decode()
            ok = secs[("body", canon)] == want and bh[canon] == digest
            checked += 1
            if not ok:
                failed += 1
                print("FAIL %s body %s:\n  sluice %r\n  dkimpy %r (%s vs %s)" % (
                    name, canon, secs[("body", canon)], want, bh[canon], digest))
        try:
            headers, _ = rfc822_parse(head + b"\r\n")
        except Exception as e:  # dkimpy's parser refuses it
            print("note %s: dkimpy cannot parse the header (%s): body only" % (name, e))
            continue
        for canon, cls in (("simple", Simple), ("relaxed", Relaxed)):
            got = b"".join(n + b":" + v for n, v in cls.canonicalize_headers(
                [list(h) for h in headers]))
            checked += 1
            if secs[("header", canon)] != got:
                failed += 1
                print("FAIL %s header %s:\n  sluice %r\n  dkimpy %r" % (
                    name, canon, secs[("header", canon)], got))
    print("%d comparisons, %d failed" % (checked, failed))
    assert checked >= 30
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
