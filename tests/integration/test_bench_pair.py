#!/usr/bin/python3
# Description: sluice-bench source -> sluice-bench sink directly. Exact counts
# on both sides: source accepted == sink messages == N, the sink --log has N
# message lines with unique bench_ids over exactly C connections (and N/2 with
# --per-connection 2), latency percentiles present and ordered; LMTP with 3
# recipients (per-recipient accounting, clean and with an injected data mix);
# --corpus files arrive byte for byte (CRLF-normalised, X-Sluice-Bench added)
# in the sink's --store directory.
import hashlib
import os
import re

import sluice
from sluice import T

from benchlib import Sink, check_sink_latency, check_source_latency, g, source


BENCH_ID_RE = re.compile(r"^([0-9a-f]{1,8})-(\d+)-(\d+)$")

# ------------------------------------------------------------ 1. closed loop, N over C

N, C = 1000, 8
with T.case("source -> sink: %d messages over %d connections" % (N, C)):
    s = Sink()
    try:
        rc, rep, err = source(s.port, "--messages", str(N), "--connections", str(C))
    finally:
        src, srep = s.stop()
    T.eq(rc, 0, "source exits 0")
    T.eq(src, 0, "sink exits 0 on SIGTERM")
    T.eq(g(rep, "exit"), 0, "source JSON exit")
    T.eq(g(rep, "sent"), N, "source sent")
    T.eq(g(rep, "accepted"), N, "source accepted")
    T.eq((g(rep, "tempfail", "total"), g(rep, "permfail", "total"), g(rep, "lost"),
          g(rep, "unfinished")), (0, 0, 0, 0), "source tempfail, permfail, lost, unfinished")
    T.eq((g(rep, "connections_detail", "opened"), g(rep, "connections_detail", "sessions"),
          g(rep, "connections_detail", "errors")), (C, C, 0), "source connections opened, sessions, errors")
    T.eq((g(rep, "loop"), g(rep, "protocol"), g(rep, "connections"), g(rep, "messages"), g(rep, "size")),
         ("closed", "smtp", C, N, 1024), "source settings echoed")
    T.eq(g(rep, "server", "pipelining"), True, "source saw PIPELINING")
    check_source_latency(rep, N, "closed loop")
    T.eq(g(g(rep, "latency_us", "connect_greeting"), "count"), C, "source connect_greeting latency count")
    T.eq(g(srep, "messages"), N, "sink messages")
    T.eq((g(srep, "refused_total"), g(srep, "dropped"), g(srep, "too_big"), g(srep, "protocol_errors")),
         (0, 0, 0, 0), "sink refused_total, dropped, too_big, protocol_errors")
    T.eq((g(srep, "connections", "accepted"), g(srep, "connections", "refused_connect"),
          g(srep, "connections", "refused_cap")), (C, 0, 0), "sink connections accepted, refused")
    T.ok(g(srep, "connections", "max_concurrent") in range(1, C + 1), "sink max_concurrent <= C",
         repr(g(srep, "connections")))
    T.eq(sum(g(srep, "per_second") or [-1]), N, "sink per_second adds up to N")
    T.eq([(g(li, "messages"), g(li, "connections")) for li in g(srep, "listeners") or []],
         [(N, C)], "sink listener counts")
    T.eq((g(srep, "bare_cr"), g(srep, "bare_lf"), g(srep, "log_errors")), (0, 0, 0),
         "sink bare_cr, bare_lf, log_errors")
    check_sink_latency(srep, N, "closed loop")
    msgs, closes = s.log_lines()
    T.eq(len(msgs), N, "sink --log has exactly N message lines")
    ids = [m.get("bench_id") for m in msgs]
    T.eq(len(set(ids)), N, "bench_ids are unique")
    parsed = [BENCH_ID_RE.match(i or "") for i in ids]
    T.ok(all(parsed), "bench_ids look like RUN-CONN-SEQ", repr([i for i, p in zip(ids, parsed) if not p][:5]))
    if all(parsed):
        T.eq(len({p.group(1) for p in parsed}), 1, "one run id in all bench_ids")
        T.eq(sorted(int(p.group(3)) for p in parsed), list(range(N)), "bench_id seqs are 0..N-1")
        T.eq(len({p.group(2) for p in parsed}), C, "distinct source conn numbers in bench_ids == C")
    T.eq(len({m.get("conn") for m in msgs}), C, "distinct sink conn values == C")
    T.eq(len(closes), C, "C close lines")
    T.eq(sum(c.get("messages", 0) for c in closes), N, "close lines' messages add up to N")
    T.eq(sorted(c.get("conn") for c in closes), sorted({m.get("conn") for m in msgs}),
         "close lines name the message lines' conns")
    T.ok(all(m.get("mail_from") == "bench@example.com" and isinstance(m.get("rcpt"), list)
             and len(m["rcpt"]) == 1 and re.fullmatch(r"rcpt\d+@example\.net", m["rcpt"][0])
             for m in msgs), "envelope: bench@example.com -> one rcptN@example.net")
    T.eq(sorted(m["rcpt"][0] for m in msgs),
         sorted("rcpt%d@example.net" % i for i in range(N)), "recipient counter: rcpt0..rcpt999 once each")
    T.eq(len({m.get("id") for m in msgs}), N, "queue ids unique")
    T.ok(all(1000 <= m.get("size", 0) <= 1048 for m in msgs), "message sizes about 1024",
         repr(sorted({m.get("size") for m in msgs})[:10]))
    T.eq([li.get("bytes") for li in g(srep, "listeners") or []], [g(srep, "bytes")],
         "sink listener bytes == total bytes")
    T.ok(isinstance(g(srep, "bytes"), int) and g(srep, "bytes") > sum(m["size"] for m in msgs),
         "sink bytes received > sum of message sizes")

# ------------------------------------------------------------ per-connection 2

N2, C2 = 200, 4
with T.case("--per-connection 2: %d messages, %d connections" % (N2, N2 // 2)):
    s = Sink()
    try:
        rc, rep, err = source(s.port, "--messages", str(N2), "--connections", str(C2),
                              "--per-connection", "2")
    finally:
        src, srep = s.stop()
    T.eq(rc, 0, "source exits 0")
    T.eq(src, 0, "sink exits 0")
    T.eq((g(rep, "sent"), g(rep, "accepted")), (N2, N2), "source sent, accepted")
    T.eq(g(rep, "per_connection"), 2, "source per_connection echoed")
    T.eq(g(srep, "messages"), N2, "sink messages")
    msgs, closes = s.log_lines()
    T.eq(len(msgs), N2, "N message lines")
    T.eq(len({m.get("bench_id") for m in msgs}), N2, "bench_ids unique")
    used = [c for c in closes if c.get("messages")]
    T.eq(len(used), N2 // 2, "N/2 connections carried messages")
    T.eq(sorted({c.get("messages") for c in used}), [2], "each carried exactly 2 messages")
    T.eq(len({m.get("conn") for m in msgs}), N2 // 2, "N/2 distinct conns in the message lines")
    # No session is opened once every transaction has been taken.
    T.eq(len(closes), N2 // 2, "sink close lines == N/2 (no empty connection at the end)")
    T.eq(g(srep, "connections", "accepted"), N2 // 2, "sink connections accepted == N/2")
    T.eq((g(rep, "connections_detail", "opened"), g(rep, "connections_detail", "sessions"),
          g(rep, "connections_detail", "errors")), (N2 // 2, N2 // 2, 0),
         "source opened N/2 connections, N/2 sessions, 0 errors")
    check_source_latency(rep, N2, "per-connection")
    check_sink_latency(srep, N2, "per-connection")

# ------------------------------------------------------------ LMTP

NL = 200
with T.case("LMTP, --recipients 3, clean"):
    s = Sink("--lmtp")
    try:
        rc, rep, err = source(s.port, "--lmtp", "--recipients", "3", "--messages", str(NL),
                              "--connections", "4")
    finally:
        src, srep = s.stop()
    T.eq(rc, 0, "source exits 0")
    T.eq((g(rep, "protocol"), g(srep, "protocol")), ("lmtp", "lmtp"), "both report protocol lmtp")
    T.eq((g(rep, "sent"), g(rep, "accepted"), g(rep, "recipients")), (NL, NL, 3), "source sent, accepted, recipients")
    rd = g(rep, "recipients_detail") or {}
    T.eq((rd.get("lmtp_accepted"), rd.get("lmtp_tempfail"), rd.get("lmtp_permfail"),
          rd.get("refused_4xx"), rd.get("refused_5xx")), (3 * NL, 0, 0, 0, 0),
         "source recipients_detail: 3N LMTP accepted, nothing refused")
    T.eq(g(srep, "messages"), NL, "sink messages")
    msgs, closes = s.log_lines()
    T.eq(len(msgs), NL, "N message lines")
    T.eq(sorted({len(m.get("rcpt", [])) for m in msgs}), [3], "every logged message has 3 recipients")
    T.eq(sorted(r for m in msgs for r in m["rcpt"]),
         sorted("rcpt%d@example.net" % (i % 1000) for i in range(3 * NL)),
         "recipients rcpt0..rcpt599, once each")
    T.eq(len(closes), 4, "4 close lines")
    check_source_latency(rep, NL, "LMTP")

with T.case("LMTP, --recipients 3, data:452=20%,data:550=10% per recipient"):
    s = Sink("--lmtp", "--reply", "data:452=20%,data:550=10%", "--seed", "7")
    try:
        rc, rep, err = source(s.port, "--lmtp", "--recipients", "3", "--messages", str(NL),
                              "--connections", "4")
    finally:
        src, srep = s.stop()
    T.eq(rc, 0, "source exits 0")
    rd = g(rep, "recipients_detail") or {}
    ref = g(srep, "refused") or {}
    msgs, closes = s.log_lines()
    logged_rcpts = sum(len(m.get("rcpt", [])) for m in msgs)
    print("sink refused %r, source recipients_detail %r" % (ref, rd))
    T.ok(ref.get("data:452", 0) > 0 and ref.get("data:550", 0) > 0, "the mix refused some recipients", repr(ref))
    T.eq(rd.get("lmtp_tempfail"), ref.get("data:452"), "source lmtp_tempfail == sink refused data:452")
    T.eq(rd.get("lmtp_permfail"), ref.get("data:550"), "source lmtp_permfail == sink refused data:550")
    T.eq(rd.get("lmtp_accepted"), logged_rcpts, "source lmtp_accepted == recipients in the sink log")
    T.eq((rd.get("lmtp_accepted") or 0) + (rd.get("lmtp_tempfail") or 0) + (rd.get("lmtp_permfail") or 0),
         3 * NL, "lmtp accepted + tempfail + permfail == 3N")
    T.eq(g(rep, "accepted"), g(srep, "messages"), "source accepted == sink messages")
    T.eq(len(msgs), g(srep, "messages"), "sink log lines == sink messages")
    failed = (g(rep, "tempfail", "total") or 0) + (g(rep, "permfail", "total") or 0)
    T.eq((g(rep, "accepted") or 0) + failed, NL, "accepted + tempfail + permfail == N")
    T.eq((g(rep, "tempfail", "end_of_data") or 0) + (g(rep, "permfail", "end_of_data") or 0), failed,
         "every refused message was refused at end_of_data")
    T.eq(g(rep, "lost"), 0, "nothing lost")

# ------------------------------------------------------------ corpus

CORPUS = {
    "01-crlf.eml": b"From: a@example.com\r\nTo: b@example.net\r\nSubject: crlf\r\n\r\nplain CRLF body\r\n",
    "02-lf.eml": b"From: a@example.com\nSubject: lf only\n\nline one\n.dot line\n.\n..\nlast\n",
    "03-dots.eml": b"Subject: dots, CRLF\r\n\r\n.\r\n..\r\n...three\r\n.leading\r\nend .\r\n.\r\n",
    "04-nofinal.eml": b"Subject: no final newline\n\nfirst\n.second\nunterminated",
    "05-mixed.eml": b"Subject: mixed \xc3\xa9\xff\r\n\nCRLF then LF\r\n.x\nlast\r\n",
    "06-dotfirst.eml": b".Subject: file starts with a dot\n\nbody\n",
}


def normalise(b):
    b = b.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return b if b.endswith(b"\r\n") else b + b"\r\n"


HDR_RE = re.compile(rb"^X-Sluice-Bench: id=([0-9a-f]{1,8}-\d+-(\d+)); sent=\d+\r\n")

with T.case("--corpus DIR -> sink --store DIR: bytes compared"):
    base = sluice.tmpdir()
    cdir, sdir = os.path.join(base, "corpus"), os.path.join(base, "store")
    os.makedirs(os.path.join(cdir, "subdir"))  # not a regular file: ignored
    os.makedirs(sdir)
    for name, data in CORPUS.items():
        with open(os.path.join(cdir, name), "wb") as f:
            f.write(data)
    names = sorted(CORPUS)
    NC = 3 * len(names)
    s = Sink("--store", sdir)
    try:
        rc, rep, err = source(s.port, "--corpus", cdir, "--messages", str(NC), "--connections", "2")
    finally:
        src, srep = s.stop()
    T.eq(rc, 0, "source exits 0")
    T.eq(g(rep, "corpus_files"), len(names), "source corpus_files == %d (the subdirectory is skipped)" % len(names))
    T.eq(g(rep, "accepted"), NC, "source accepted")
    T.eq(g(srep, "messages"), NC, "sink messages")
    T.eq(g(srep, "store"), {"written": NC, "errors": 0}, "sink store written, errors")
    msgs, closes = s.log_lines()
    by_id = {m["id"]: m for m in msgs}
    stored = sorted(os.listdir(sdir))
    T.eq(stored, sorted(i + ".eml" for i in by_id), "one DIR/ID.eml per logged message")
    seen = []
    bad = []
    for fn in stored:
        with open(os.path.join(sdir, fn), "rb") as f:
            data = f.read()
        m = HDR_RE.match(data)
        if not m:
            bad.append("%s: no X-Sluice-Bench first line: %r" % (fn, data[:100]))
            continue
        seq = int(m.group(2))
        seen.append(seq)
        want = normalise(CORPUS[names[seq % len(names)]])
        if data[m.end():] != want:
            bad.append("%s (seq %d, %s): got %r want %r" % (fn, seq, names[seq % len(names)],
                                                           data[m.end():][:200], want[:200]))
        lm = by_id.get(fn[:-4], {})
        if lm.get("bench_id") != m.group(1).decode():
            bad.append("%s: log bench_id %r != header id %r" % (fn, lm.get("bench_id"), m.group(1)))
        if lm.get("sha256") != hashlib.sha256(data).hexdigest() or lm.get("size") != len(data):
            bad.append("%s: log sha256/size do not match the stored file" % fn)
    T.eq(sorted(seen), list(range(NC)), "every seq stored once")
    T.ok(not bad, "stored files == X-Sluice-Bench line + CRLF-normalised corpus file (name order, round robin)",
         "; ".join(bad[:4]))
    T.eq((g(srep, "bare_lf"), g(srep, "bare_cr")), (0, 0), "no bare LF or CR reached the sink")

sluice.finish()
