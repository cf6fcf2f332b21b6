#!/usr/bin/python3
# timeout: 300
# Description: DKIM signatures made by sluiced, judged by three independent
# verifiers: dkimpy (python3-dkim), OpenDKIM (opendkim -t, the keys given
# with TestPublicKeys) and mailauth (npm, in build/node: `make test`
# installs it), all offline. Keys come from `sluicectl dkim-keygen` (RSA
# 2048 and Ed25519, both on example.com, so every message is signed twice).
# A corpus of hard cases (folded, repeated and long header fields, white
# space runs and trailing white space, empty body, no body, a body without
# its final CRLF, 8-bit and UTF-8 headers and body, very long lines,
# dot-stuffed lines, messages sent with BDAT in chunks split inside CRLF)
# goes through sluiced with relaxed/relaxed and with simple/simple, to a
# sink; each message as delivered must pass both signatures in all three
# verifiers, and each message changed after signing (body or a signed
# header field) must fail in all three. Also: From is oversigned, x= is
# there, a message from a domain without a key is delivered unsigned, and
# a message that cannot be signed (too many signed fields) gets 451 4.3.0
# and is not queued. /metrics' sluice_dkim_sign_seconds counts each signed
# message once and an unsigned one not at all.
import json
import os
import re
import shutil
import subprocess

import sluice
from sluice import T

import deliverlib as dl
import metricslib as ml

NODE_DIR = os.path.join(sluice.ROOT, "build", "node")
MAILAUTH_JS = os.path.join(sluice.ROOT, "tests", "integration", "dkim_mailauth.js")

missing = []
try:
    import dkim
except ImportError:
    missing.append("python3-dkim")
if not shutil.which("opendkim") and not os.path.exists("/usr/sbin/opendkim"):
    missing.append("opendkim")
if not shutil.which("node") or not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "mailauth")):
    missing.append("mailauth (make node-deps)")
if missing:
    # Not a skip: the verifiers are the test. `make test` installs them.
    T.ok(False, "the three verifiers are installed", "missing: " + ", ".join(missing))
    sluice.finish()

d = sluice.tmpdir()
env = sluice.clean_env()


keys = {"r1": sluice.dkim_keygen(d, "r1", "rsa"), "e1": sluice.dkim_keygen(d, "e1")}
keyfile = os.path.join(d, "keys.txt")
with open(keyfile, "w") as f:
    for sel, (_, txt) in keys.items():
        f.write("%s._domainkey.example.com %s\n" % (sel, txt))


dnsfunc = sluice.dkim_dns(keys)


srv = dl.Server("sink")
relays = {}
MPORT = sluice.free_port()
for canon in ("relaxed/relaxed", "simple/simple"):
    extra = "dkim:\n" + "".join(
        "  - {domain: example.com, selector: %s, key: %s, algorithm: %s}\n"
        % (sel, path, "rsa" if sel.startswith("r") else "ed25519")
        for sel, (path, _) in keys.items())
    extra += "dkim_signing: {canonicalization: %s, expire: 168h}\n" % canon
    if canon == "relaxed/relaxed":
        extra += 'metrics: {listen: "127.0.0.1:%d"}\n' % MPORT
    relays[canon] = dl.Relay([{"domain": "dest.test",
                               "transport": "smtp:[127.0.0.1]:%d" % srv.port}], extra=extra)

# ------------------------------------------------------------------ corpus
# (name, how, message); how: "data", or "bdat:N,M" (chunk sizes, the rest
# last). {tag} becomes the X-Test-Id that finds the message at the sink.
# Lines stay within RFC 5322's 998 octets (the sink enforces RFC 5321's
# limit). Every header field has exactly one space right after its colon
# (white space runs and trailing white space elsewhere): OpenDKIM's test
# mode hands each field to its milter code as name and value, which
# changes "Name:value", "Name:\tvalue" and "Name:   value" before it
# hashes them, so simple/simple fails there even for a message dkimpy
# signed (checked by hand; a milter client passes the field exactly).
# The golden files cover those spellings against dkimpy. A message
# with no empty line at all (no body) is left to the golden files:
# mailauth does not find its header section.
FROM = "From: Joe SixPack <joe@example.com>\r\n"
corpus = [
    ("plain", "data", FROM + "To: Suzie <suzie@dest.test>\r\nSubject: Is dinner ready?\r\n"
     "Date: Fri, 11 Jul 2003 21:00:37 -0700\r\nMessage-ID: <{tag}@example.com>\r\n"
     "X-Test-Id: {tag}\r\n\r\nHi.\r\n\r\nWe lost the game.  Are you hungry yet?\r\n\r\nJoe.\r\n"),
    ("folded_repeated", "data", "Received: from a.example by b.example; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
     + FROM + "To: a@dest.test,\r\n\tb@dest.test,\r\n  c@dest.test\r\nSubject: folded\r\n  over\r\n\tthree lines\r\n"
     "Cc: one@dest.test\r\nCc: two@dest.test\r\nTo: d@dest.test\r\nX-Test-Id: {tag}\r\n"
     "Subject: a second subject\r\n\r\nbody\r\n"),
    ("whitespace", "data", "From: \"Joe   Six\"  <joe@Example.COM>  \r\nTo: suzie@dest.test\t \t\r\n"
     "Subject: lots   of\t\t space   \r\nX-Test-Id: {tag}\r\n\r\n  leading\r\ninner \t \t runs\r\n"
     "trailing   \r\n\t\r\n \r\ntabs\tat\tend\t\t\r\n\r\n\r\n \r\n"),
    ("empty_body", "data", FROM + "Subject: empty body\r\nX-Test-Id: {tag}\r\n\r\n"),
    ("blank_lines_body", "data", FROM + "Subject: only blank lines\r\nX-Test-Id: {tag}\r\n\r\n\r\n\r\n\r\n"),
    ("utf8", "data", "From: =?UTF-8?Q?J=C3=B6rg?= <joerg@example.com>\r\n"
     "Subject: Gr\u00fc\u00dfe aus K\u00f6ln \u2014 \u2603\r\nTo: \"Z\u00fcrich\" <z@dest.test>\r\n"
     "X-Test-Id: {tag}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
     "Content-Transfer-Encoding: 8bit\r\n\r\nR\u00e9sum\u00e9  na\u00efve \u2014 caf\u00e9\r\n\u00ff\u00fe\r\n"),
    ("latin1", "data", FROM + "Subject: caf\udce9 8-bit\r\nX-Test-Id: {tag}\r\n\r\nna\udcefve\r\n"),
    ("long_lines", "data", FROM + "Subject:" + "".join(" long%03d\r\n" % i for i in range(200))
     + "X-Long: " + "h" * 990 + "\r\nX-Test-Id: {tag}\r\n\r\n"
     + "x" * 995 + "   \r\n" + ("word " * 199) + "\r\n" + "y" * 998 + "\r\n"),
    ("dots", "data", FROM + "Subject: dots\r\nX-Test-Id: {tag}\r\n\r\n.\r\n..\r\n.leading\r\n"
     "...three\r\n \r\n.\r\nend\r\n"),
    ("bdat_chunks", "bdat:7,30,1", FROM + "Subject: bdat\r\nX-Test-Id: {tag}\r\n\r\nline one\r\n"
     "line two\r\n\r\n"),
    ("bdat_split_crlf", "bdat:61,1,1", FROM + "Subject: split\r\nX-Test-Id: {tag}\r\n\r\nab  \r\ncd\r\n\r\n"),
    ("bdat_no_final_crlf", "bdat:40", FROM + "Subject: no final CRLF\r\nX-Test-Id: {tag}\r\n\r\n"
     "last line without its CRLF  "),
    ("mime", "data", FROM + "Subject: mime\r\nX-Test-Id: {tag}\r\nMIME-Version: 1.0\r\n"
     "Content-Type: multipart/alternative;\r\n boundary=\"b1\"\r\nList-Unsubscribe: <mailto:u@example.com>\r\n"
     "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\n"
     "plain\r\n--b1--\r\n"),
]


def to_bytes(s):
    return s.encode("utf-8", "surrogateescape")


def send_bdat(port, data, sizes):
    c = sluice.Conn(port, timeout=20)
    try:
        c.reply()
        c.cmd("EHLO client.test")
        for line in ("MAIL FROM:<joe@example.com>", "RCPT TO:<x@dest.test>"):
            r = c.cmd(line)
            assert str(r).startswith("250"), r
        at = 0
        for n in sizes:
            c.send(b"BDAT %d\r\n" % n + data[at:at + n])
            r = c.reply()
            assert str(r).startswith("250"), r
            at += n
        c.send(b"BDAT %d LAST\r\n" % (len(data) - at) + data[at:])
        return str(c.reply())
    finally:
        c.close()


sent = {}
with T.case("sending the corpus"):
    for canon, relay in relays.items():
        for name, how, text in corpus:
            tag = "%s-%s" % (name, canon.split("/")[0])
            data = to_bytes(text.replace("{tag}", tag))
            if how == "data":
                q = dl.submit(relay.port, "joe@example.com", ["x@dest.test"], data)
                T.ok(q, "%s: queued over DATA" % tag)
            else:
                sizes = [int(x) for x in how.split(":")[1].split(",")]
                r = send_bdat(relay.port, data, sizes)
                T.ok(r.startswith("250 2.0.0 Ok: queued as"), "%s: queued over BDAT" % tag, r)
            sent[tag] = data

dl.wait_until(lambda: srv.count() >= len(sent), 60)
got = {}
for m in srv.msgs():
    hm = re.search(rb"^X-Test-Id: (\S+)", m.data.split(b"\r\n\r\n")[0], re.M)
    if hm:
        got[hm.group(1).decode()] = m.data
T.eq(sorted(got), sorted(sent), "every message reached the sink")

outdir = os.path.join(d, "out")
os.makedirs(outdir)
files = {}


def save(tag, data):
    p = os.path.join(outdir, tag + ".eml")
    with open(p, "wb") as f:
        f.write(data)
    files[tag] = p


with T.case("as delivered"):
    for tag, data in sorted(got.items()):
        save(tag, data)
        head = data.split(b"\r\n\r\n")[0]
        sigs = re.findall(rb"^DKIM-Signature:", head, re.M)
        T.eq(len(sigs), 2, "%s: two signatures (RSA and Ed25519)" % tag)
        T.ok(data.endswith(sent[tag]) or tag.startswith("bdat_no_final"),
             "%s: the client's bytes are delivered unchanged after our fields" % tag)
        hl = re.search(rb"h=([^;]*);", re.sub(rb"\r\n[ \t]", b" ", head))
        names = [x.strip().lower() for x in hl.group(1).split(b":")] if hl else []
        T.ok(names.count(b"from") == 2, "%s: From is oversigned (h=%s)" % (tag, b":".join(names).decode()))
        T.ok(re.search(rb"\bx=\d+", re.sub(rb"\r\n[ \t]", b" ", head)), "%s: x= is there" % tag)

# Changed after signing: a body byte, and a signed header field.
tampered = {}
for tag, data in sorted(got.items()):
    if not (tag.startswith("plain") or tag.startswith("utf8") or tag.startswith("bdat_chunks")):
        continue
    head, _, body = data.partition(b"\r\n\r\n")
    tampered[tag + "-body"] = head + b"\r\n\r\n" + body.replace(b"e", b"E", 1) + b"P.S. added\r\n"
    tampered[tag + "-subject"] = re.sub(rb"^Subject: ", b"Subject: [changed] ", head, count=1,
                                        flags=re.M) + b"\r\n\r\n" + body
for tag, data in tampered.items():
    save(tag, data)


def selectors(data):
    """s= of each DKIM-Signature field, top down."""
    head = re.sub(rb"\r\n[ \t]", b" ", data.split(b"\r\n\r\n")[0])
    return [m.decode() for m in re.findall(rb"^DKIM-Signature:.*?\bs=([^;\s]+)", head, re.M)]


def verify_dkimpy(data):
    v = dkim.DKIM(data)
    out = {}
    for i, sel in enumerate(selectors(data)):
        try:
            ok = v.verify(idx=i, dnsfunc=dnsfunc)
        except dkim.DKIMException as e:
            print("dkimpy: signature %d: %s" % (i, e))
            ok = False
        out[sel] = ok
    return out


def verify_opendkim(path):
    conf = os.path.join(d, "opendkim.conf")
    if not os.path.exists(conf):
        with open(conf, "w") as f:
            f.write("Syslog no\nMode v\nTestPublicKeys %s\nMinimumKeyBits 1024\n" % keyfile)
    r = subprocess.run(["opendkim", "-vvv", "-x", conf, "-t", path], capture_output=True, text=True,
                       timeout=60, env=env, stdin=subprocess.DEVNULL)
    text = r.stdout + r.stderr
    out = {}
    for res, sel in re.findall(r"dkim=(\w+)[^;]*?header\.s=(\w+)", text):
        out[sel] = res == "pass"
    return out, text


def verify_mailauth(paths):
    r = subprocess.run(["node", MAILAUTH_JS, NODE_DIR, keyfile] + paths, capture_output=True,
                       text=True, timeout=120, env=env, stdin=subprocess.DEVNULL)
    res = {}
    for line in r.stdout.splitlines():
        x = json.loads(line)
        res.setdefault(x["file"], {})[x.get("s", "?")] = x["result"] == "pass"
    return res, r.stderr


ma, ma_err = verify_mailauth(sorted(files.values()))
T.ok(ma, "mailauth ran", ma_err)
for tag in sorted(files):
    want = not (tag.endswith("-body") or tag.endswith("-subject"))
    with T.case("%s (%s)" % (tag, "must pass" if want else "changed: must fail")):
        data = open(files[tag], "rb").read()
        dp = verify_dkimpy(data)
        od, od_text = verify_opendkim(files[tag])
        mr = ma.get(files[tag], {})
        for name, res, detail in (("dkimpy", dp, ""), ("opendkim", od, od_text[-600:]),
                                  ("mailauth", mr, ma_err)):
            if want:
                T.ok(res.get("r1") is True and res.get("e1") is True,
                     "%s: %s passes both signatures" % (tag, name), "%r %s" % (res, detail))
            else:
                T.ok(res.get("r1") is False and res.get("e1") is False,
                     "%s: %s fails both signatures" % (tag, name), "%r %s" % (res, detail))

def signed_count():
    return ml.sample(ml.get_metrics(MPORT)[1], "sluice_dkim_sign_seconds_count")


with T.case("a domain without a key: queued unsigned"):
    relay = relays["relaxed/relaxed"]
    signs_before = signed_count()
    T.ok(signs_before is not None and signs_before >= 1,
         "/metrics counts the corpus's signatures (sluice_dkim_sign_seconds)", signs_before)
    data = b"From: Ann <ann@other.test>\r\nSubject: not ours to sign\r\nX-Test-Id: nokey\r\n\r\nhi\r\n"
    T.ok(dl.submit(relay.port, "ann@other.test", ["x@dest.test"], data), "queued")
    T.ok(dl.wait_until(lambda: any(b"X-Test-Id: nokey" in m.data for m in srv.msgs()), 30),
         "delivered")
    m = [m.data for m in srv.msgs() if b"X-Test-Id: nokey" in m.data]
    T.ok(m and b"DKIM-Signature:" not in m[0] and m[0].endswith(data),
         "no DKIM-Signature field, the message as sent", m[:1])
    T.eq(signed_count(), signs_before, "an unsigned message is not in the signing histogram")
    data = FROM + "Subject: one more\r\nX-Test-Id: onemore\r\n\r\nsigned\r\n"
    T.ok(dl.submit(relay.port, "joe@example.com", ["x@dest.test"], data.encode()), "queued")
    T.eq(signed_count(), signs_before + 1, "a signed message is one more observation")

with T.case("a message that cannot be signed: 451 4.3.0, not queued"):
    relay = relays["relaxed/relaxed"]
    before = relay.count()
    many = FROM + "".join("To: r%d@dest.test\r\n" % i for i in range(600)) + "Subject: many\r\n\r\nx\r\n"
    c = sluice.Conn(relay.port, timeout=20)
    c.reply()
    c.cmd("EHLO client.test")
    c.cmd("MAIL FROM:<joe@example.com>")
    c.cmd("RCPT TO:<x@dest.test>")
    c.cmd("DATA")
    c.send(to_bytes(many) + b".\r\n")
    r = str(c.reply())
    T.ok(r.startswith("451 4.3.0"), "the reply is 451 4.3.0", r)
    T.eq(str(c.cmd("NOOP"))[:3], "250", "the session goes on")
    c.close()
    T.eq(relay.count(), before, "nothing was queued")

for relay in relays.values():
    T.eq(relay.stop(), 0, "sluiced exits 0 on SIGTERM")
sluice.finish()
