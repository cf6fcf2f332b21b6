#!/usr/bin/python3
# timeout: 120
# Description: sluice delivers with BDAT to a real Postfix smtpd (which
# offers CHUNKING and PIPELINING), and the messages come out of that
# Postfix intact. 40 messages (300 B - 200 KiB, leading dots, 8-bit lines,
# one with two recipients) go in over smtplib; sluiced relays them to a
# private Postfix (bench/postfix-instance), which relays them on to
# sluice-bench sink --store. At the sink each message is there once,
# with the recipients it should have, and is exactly what was sent with
# header fields (sluice's and Postfix's Received:) put in front. Postfix's
# own log says the mail came by BDAT: its smtpd disconnect lines count
# bdat=N and no data=, and their bdat counts add up to the messages sent.
# With 1 MiB segments, the sealed ones are deleted once their mail is out,
# and sluiced keeps none of them open (their space is really freed).
import collections
import os
import random
import re
import shutil
import subprocess
import time

import sluice
from sluice import T

import deliverlib as dl
from benchlib import Sink

PF = os.path.join(sluice.ROOT, "bench", "postfix-instance")
if shutil.which("postfix") is None:
    sluice.skip("Postfix is not installed")

N = 40

store = sluice.tmpdir()
sink = Sink("--store", store)
inst = sluice.tmpdir()
os.chmod(inst, 0o755)               # Postfix's daemons run as postfix
pf_port = dl.free_port()
subprocess.run([PF, "start", inst, str(pf_port), "127.0.0.1:%d" % sink.port],
               check=True, stdout=subprocess.DEVNULL)
stopped = []


def stop_postfix():
    if not stopped:
        subprocess.run([PF, "stop", inst], stdout=subprocess.DEVNULL)
        stopped.append(True)


# 1 MiB segments on one shard: the load fills and seals some, which the
# committer deletes once their mail is delivered.
relay = dl.Relay([{"domain": "pf.test",
                   "transport": "smtp:[127.0.0.1]:%d" % pf_port, "retry": "1s"}],
                 extra="queue: {segment_size: 1M}", shards=1)

rnd = random.Random(1234)
items, expect = [], {}
for i in range(N):
    tag = "p%03d" % i
    rc = ["r%da@pf.test" % i, "r%db@pf.test" % i] if i == 7 else ["r%d@pf.test" % i]
    size = rnd.choice([300, 20000, 60000, 120000]) if i != 11 else 200000
    sender = "s%d@client.test" % i
    data = dl.make_message(tag, sender, rc, size=size, rnd=rnd,
                           leading_dots=(i % 3 == 0), eight_bit=(i % 5 == 1))
    items.append((sender, rc, data))
    expect[tag] = {"sender": sender, "data": data, "rcpt": sorted(rc)}

try:
    with T.case("submit %d messages" % N):
        qids, errors = dl.submit_many(relay.port, items, conns=2)
        T.eq(errors, [], "every message accepted")

    with T.case("sluice's queue empties (Postfix took them)"):
        T.ok(relay.wait_empty(60), "queue count reaches 0 within 60 s",
             "count %s; log:\n%s" % (relay.count(), relay.log_tail(15)))

    with T.case("delivered segments are deleted and not held open"):
        segdir = os.path.join(relay.d.dir, "spool", "seg")
        fddir = "/proc/%d/fd" % relay.d.proc.pid

        def held():
            out = []
            for fd in os.listdir(fddir):
                try:
                    t = os.readlink(os.path.join(fddir, fd))
                except OSError:
                    continue
                if "/seg/" in t and t.endswith(" (deleted)"):
                    out.append(t)
            return out
        end = time.monotonic() + 5
        while time.monotonic() < end and held():
            time.sleep(0.1)
        T.ok(len(os.listdir(segdir)) < 3, "sealed segments were deleted (%d left)"
             % len(os.listdir(segdir)), repr(os.listdir(segdir)))
        T.eq(held(), [], "sluiced holds no deleted segment open")

    with T.case("Postfix relays them all to the sink"):
        end = time.monotonic() + 60
        while time.monotonic() < end and len(sink.log_lines()[0]) < N:
            time.sleep(0.2)
        msgs, _ = sink.log_lines()
        T.eq(len(msgs), N, "the sink got %d messages" % N)

    with T.case("each message once, with its recipients, bytes intact"):
        seen = collections.Counter()
        bad = []
        for m in msgs:
            with open(os.path.join(store, m["id"] + ".eml"), "rb") as f:
                got = f.read()
            mid = dl.message_id(got)
            tag = mid[1:-1].split("@")[0] if mid else None
            seen[tag] += 1
            e = expect.get(tag)
            if e is None:
                bad.append("unexpected message %r" % mid)
                continue
            why = dl.check_tail(got, e["data"])
            if why:
                bad.append("%s: %s" % (tag, why))
            if sorted(m.get("rcpt", [])) != e["rcpt"]:
                bad.append("%s: recipients %r" % (tag, m.get("rcpt")))
            if m.get("mail_from") != e["sender"]:
                bad.append("%s: MAIL FROM %r" % (tag, m.get("mail_from")))
            if got.count(b"\r\nReceived:") + got.startswith(b"Received:") < 2:
                bad.append("%s: not both Received: fields (sluice's, Postfix's)" % tag)
        T.eq(bad[:5], [], "every message is one that was sent, whole")
        T.eq(sorted(t for t, n in seen.items() if n != 1), [], "no duplicates")
        T.eq(sorted(set(expect) - set(seen)), [], "none missing")

    with T.case("Postfix's log: the mail came by BDAT"):
        log = ""
        end = time.monotonic() + 10
        while time.monotonic() < end:
            with open(os.path.join(inst, "maillog"), errors="replace") as f:
                log = f.read()
            # sluiced's connections close after idle_keep (1 s).
            lines = [ln for ln in log.splitlines()
                     if "smtpd[" in ln and "disconnect from" in ln and " mail=" in ln]
            if sum(int(x) for ln in lines for x in re.findall(r" bdat=(\d+)", ln)) >= N:
                break
            time.sleep(0.3)
        bdat = sum(int(x) for ln in lines for x in re.findall(r" bdat=(\d+)", ln))
        datas = [ln for ln in lines if " data=" in ln]
        T.ok(bdat == N, "smtpd counted %d BDAT commands" % N, "got %d:\n%s"
             % (bdat, "\n".join(lines[-5:]) or log[-2000:]))
        T.eq(datas, [], "and no DATA")
finally:
    stop_postfix()
    sink.stop()

T.eq(relay.stop(), 0, "sluiced exits 0 on SIGTERM")
sluice.finish()
