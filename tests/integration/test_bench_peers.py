#!/usr/bin/python3
# Description: sluice-bench against other implementations. source -> Postfix
# smtp-sink (SMTP and LMTP): every message accepted, exit 0; Postfix
# smtp-source -d -> sink --expect 200: exactly 200 messages logged with their
# envelope and plausible sizes over 5 sessions; Python smtplib -> sink --log:
# the logged sha256 and size are those of the bytes smtplib was given (CRLF);
# source -> bin/sluiced: accepted == `sluicectl queue count`.
import contextlib
import hashlib
import os
import re
import smtplib
import socket
import subprocess
import time

import sluice
from sluice import T

from benchlib import Sink, check_source_latency, g, source, procs
SMTP_SINK = "/usr/sbin/smtp-sink"
SMTP_SOURCE = "/usr/sbin/smtp-source"




def wait_listening(port, proc, timeout=10):
    """Bounded: until something accepts on 127.0.0.1:port or proc dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        time.sleep(0.05)
    return False


def normalise(b):
    b = b.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return b if b.endswith(b"\r\n") else b + b"\r\n"


# ------------------------------------------------------------ source -> Postfix smtp-sink

def smtp_sink(*extra):
    port = sluice.free_port()
    argv = [SMTP_SINK] + list(extra) + ["-u", "nobody", "127.0.0.1:%d" % port, "1000"]
    print("starting " + " ".join(argv))
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         stdin=subprocess.DEVNULL)
    procs.append(p)
    if not wait_listening(port, p):
        raise RuntimeError("smtp-sink did not start (rc %s)" % p.poll())
    return p, port


def stop_proc(p):
    if p.poll() is None:
        p.kill()
    with contextlib.suppress(Exception):
        p.wait(5)


if not os.access(SMTP_SINK, os.X_OK):
    T.fail("smtp-sink is installed", SMTP_SINK)
else:
    with T.case("source -> smtp-sink: 2000 messages over 10 sessions"):
        p, port = smtp_sink()
        try:
            rc, rep, err = source(port, "--messages", "2000", "--connections", "10")
        finally:
            stop_proc(p)
        T.eq(rc, 0, "source exits 0")
        T.eq((g(rep, "sent"), g(rep, "accepted"), g(rep, "lost")), (2000, 2000, 0), "source sent, accepted, lost")
        T.eq((g(rep, "tempfail", "total"), g(rep, "permfail", "total")), (0, 0), "no refusals")
        T.eq((g(rep, "connections_detail", "opened"), g(rep, "connections_detail", "errors")), (10, 0),
             "10 connections, no errors")
        T.eq(g(rep, "server", "pipelining"), True, "smtp-sink offers PIPELINING")
        check_source_latency(rep, 2000, "smtp-sink")

    with T.case("source -> smtp-sink: a connection per message, no pipelining"):
        p, port = smtp_sink()
        try:
            rc, rep, err = source(port, "--messages", "300", "--connections", "5",
                                  "--per-connection", "1", "--pipelining", "off", "--size", "4k")
        finally:
            stop_proc(p)
        T.eq(rc, 0, "source exits 0")
        T.eq((g(rep, "sent"), g(rep, "accepted")), (300, 300), "source sent, accepted")
        T.eq(g(rep, "pipelining"), False, "source reports pipelining off")
        T.eq(g(rep, "connections_detail", "errors"), 0, "no connection errors")
        T.ok((g(rep, "connections_detail", "sessions") or 0) >= 300, "at least one session per message",
             repr(g(rep, "connections_detail")))

    with T.case("source --lmtp --recipients 3 -> smtp-sink -L"):
        p, port = smtp_sink("-L")
        try:
            rc, rep, err = source(port, "--lmtp", "--recipients", "3", "--messages", "300",
                                  "--connections", "4")
        finally:
            stop_proc(p)
        T.eq(rc, 0, "source exits 0")
        T.eq((g(rep, "sent"), g(rep, "accepted")), (300, 300), "source sent, accepted")
        T.eq(g(rep, "recipients_detail", "lmtp_accepted"), 900, "900 LMTP recipient replies accepted")
        T.eq((g(rep, "recipients_detail", "lmtp_tempfail"), g(rep, "recipients_detail", "lmtp_permfail")),
             (0, 0), "no LMTP recipient refused")

# ------------------------------------------------------------ Postfix smtp-source -> sink

if not os.access(SMTP_SOURCE, os.X_OK):
    T.fail("smtp-source is installed", SMTP_SOURCE)
else:
    with T.case("smtp-source -d -s 5 -m 200 -l 2048 -> sink --expect 200"):
        s = Sink("--expect", "200")
        argv = [SMTP_SOURCE, "-d", "-s", "5", "-m", "200", "-l", "2048", "-f", "a@example.com",
                "-t", "b@example.net", "127.0.0.1:%d" % s.port]
        print("running " + " ".join(argv))
        try:
            pr = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, timeout=30)
            prc, pout = pr.returncode, pr.stdout.decode("utf-8", "replace")
        except subprocess.TimeoutExpired:
            prc, pout = "timeout", ""
        src, srep = s.wait(15)
        T.eq(prc, 0, "smtp-source exits 0", )
        if prc != 0:
            print(pout[-2000:])
        T.eq(src, 0, "sink exits 0 by itself (--expect)")
        T.eq(g(srep, "messages"), 200, "sink messages == 200")
        T.eq((g(srep, "refused_total"), g(srep, "dropped"), g(srep, "protocol_errors")), (0, 0, 0),
             "sink refused, dropped, protocol errors")
        T.eq(g(srep, "without_header"), 200, "200 messages without X-Sluice-Bench")
        T.eq(g(srep, "latency_ms"), {"p50": None, "p90": None, "p99": None, "p99.9": None,
                                     "max": None, "count": 0}, "latency null without the header")
        T.eq(g(srep, "connections", "accepted"), 5, "5 connections (-d -s 5)")
        msgs, closes = s.log_lines()
        T.eq(len(msgs), 200, "200 message lines in the log")
        T.ok(all(m.get("mail_from") == "a@example.com" and m.get("rcpt") == ["b@example.net"]
                 for m in msgs), "every envelope is a@example.com -> b@example.net")
        T.ok(not any("bench_id" in m or "latency_us" in m for m in msgs), "no bench_id, latency_us")
        sizes = sorted({m.get("size") for m in msgs})
        T.ok(2048 < sizes[0] and sizes[-1] <= 2048 + 512 and sizes[-1] - sizes[0] <= 16,
             "sizes: a 2 KiB body plus a few varying headers", repr(sizes))
        T.eq(len({m.get("sha256") for m in msgs}), 200, "200 distinct sha256 (headers differ)")
        T.ok(all(re.fullmatch(r"[0-9a-f]{64}", m.get("sha256", "")) for m in msgs), "sha256 is 64 hex digits")
        T.eq((len(closes), sum(c.get("messages", 0) for c in closes)), (5, 200),
             "5 close lines carrying 200 messages")
        T.eq(len({m.get("conn") for m in msgs}), 5, "5 distinct conns in the message lines")
        T.ok(g(srep, "bytes") > 200 * sizes[-1], "sink bytes > message bytes", repr(g(srep, "bytes")))

# ------------------------------------------------------------ smtplib -> sink

with T.case("smtplib sends 20 known messages -> sink --log sha256"):
    bodies = []
    for i in range(20):
        b = b"From: m%d@example.com\r\nSubject: message %d\r\n\r\n" % (i, i)
        b += b"".join(b"line %d of message %d %s\r\n" % (k, i, b"x" * (i * 7 % 60)) for k in range(i * 5 + 1))
        if i % 4 == 1:
            b += b".leading dot\r\n.\r\n..\r\nend\r\n"
        if i % 5 == 2:
            b += b"8-bit \xc3\xa9\xe2\x82\xac\r\n"
        if i % 6 == 3:
            # Given as str with LF line ends, smtplib sends CRLF (bytes go as
            # they are).
            b = b.replace(b"\r\n", b"\n").replace(b"\xc3\xa9\xe2\x82\xac", b"")
        if i % 7 == 4:
            b = b[:-2]                          # no final line end: smtplib adds it
        bodies.append(b)
    s = Sink()
    try:
        c = smtplib.SMTP("127.0.0.1", s.port, local_hostname="client.example", timeout=10)
        refused = []
        for i, b in enumerate(bodies):
            msg = b.decode("ascii") if i % 6 == 3 else b
            refused.append(c.sendmail("m%d@example.com" % i, ["r%d@example.net" % i], msg))
        c.quit()
    finally:
        src, srep = s.stop()
    T.eq(refused, [{}] * 20, "sendmail accepted all 20")
    T.eq(src, 0, "sink exits 0")
    T.eq(g(srep, "messages"), 20, "sink messages == 20")
    T.eq((g(srep, "bare_lf"), g(srep, "bare_cr"), g(srep, "without_header")), (0, 0, 20),
         "no bare LF/CR, 20 without header")
    msgs, closes = s.log_lines()
    T.eq(len(msgs), 20, "20 message lines")
    by_from = {m.get("mail_from"): m for m in msgs}
    bad = []
    for i, b in enumerate(bodies):
        m = by_from.get("m%d@example.com" % i)
        want = normalise(b)
        if m is None:
            bad.append("message %d missing" % i)
        elif (m.get("sha256"), m.get("size"), m.get("rcpt")) != (
                hashlib.sha256(want).hexdigest(), len(want), ["r%d@example.net" % i]):
            bad.append("message %d: got size %r sha %r rcpt %r, want size %d sha %s"
                       % (i, m.get("size"), m.get("sha256"), m.get("rcpt"), len(want),
                          hashlib.sha256(want).hexdigest()))
    T.ok(not bad, "log sha256 and size == those of the bytes given to sendmail (CRLF)", "; ".join(bad[:3]))
    T.eq([m.get("conn") for m in msgs], [1] * 20, "one connection")
    T.eq([(x.get("conn"), x.get("messages")) for x in closes], [(1, 20)], "one close line with 20 messages")

# ------------------------------------------------------------ source -> sluiced

with T.case("source -> sluiced: accepted == sluicectl queue count"):
    d = sluice.Daemon()
    total = 0
    rc, rep, err = source(d.port, "--messages", "500", "--connections", "5", "--size", "2k")
    T.eq(rc, 0, "source exits 0")
    T.eq((g(rep, "sent"), g(rep, "accepted"), g(rep, "lost")), (500, 500, 0), "source sent, accepted, lost")
    total += g(rep, "accepted") or 0
    T.eq(d.count(), total, "queue count == accepted (%d)" % total)
    rc, rep, err = source(d.port, "--messages", "200", "--connections", "4", "--per-connection", "10",
                          "--pipelining", "off", "--recipients", "2", "--from", "other@example.org")
    T.eq(rc, 0, "second run: source exits 0")
    T.eq((g(rep, "sent"), g(rep, "accepted")), (200, 200), "second run: sent, accepted")
    total += g(rep, "accepted") or 0
    T.eq(d.count(), total, "queue count == accepted over both runs (%d)" % total)
    lst = d.list()
    first = [m for m in lst if m.get("sender") == "bench@example.com"]
    second = [m for m in lst if m.get("sender") == "other@example.org"]
    T.eq((len(first), len(second)), (500, 200), "messages per sender in queue list")
    T.ok(all(len(m.get("recipients", [])) == 2 for m in second), "second run: 2 recipients each")
    data = d.cat(first[0]["id"]) if first else b""
    hdr, rest = sluice.split_received(data or b"")
    T.ok(hdr is not None and rest.startswith(b"X-Sluice-Bench: id="), "stored message: Received + X-Sluice-Bench",
         repr((data or b"")[:200]))
    T.eq(d.stop(), 0, "daemon exits 0 on SIGTERM")

sluice.finish()
