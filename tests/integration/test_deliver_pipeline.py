#!/usr/bin/python3
# timeout: 300
# Description: several transactions in flight per outbound connection
# (delivery.pipeline_depth, BDAT). Against a scripted server that offers
# PIPELINING and CHUNKING and holds each BDAT reply back a little: the next
# MAIL arrives while a BDAT reply is still owed (pipelined), and each
# message arrives exactly once; a second transaction refused (550 at RCPT
# for one recipient, 550 at BDAT for the whole message) bounces exactly its
# own recipients while the ones around it are delivered; a connection that
# drops after the first transaction's 250 and before the second's gets the
# first delivered once and the second retried and delivered once (counted
# at the server by Message-ID and bytes); pipeline_depth 1 sends nothing
# before the replies; a server without PIPELINING still gets everything,
# one transaction at a time; and 20,000 messages from sluice-bench source
# through sluiced to sluice-bench sink arrive in the number accepted.
import asyncio
import collections
import threading
import time

import sluice
from sluice import T

import deliverlib as dl
from benchlib import Sink, source


class PipeServer:
    """An SMTP server on raw asyncio streams, in a thread: EHLO offers
    PIPELINING (unless pipelining=False) and CHUNKING, replies leave in
    order, each BDAT reply `delay` seconds after its chunk arrived (what
    lets a pipelining client put the next MAIL on the wire meanwhile).
    rcpt(addr) and bdat(conn, k, data) may return a reply line instead of
    250, or "drop" (bdat: close once the replies before it are out, and
    never answer it). Records, under the lock: .accepted (conn, mail_from,
    rcpts, data) per BDAT/DATA answered 250; .mails (conn, owed) per MAIL:
    BDAT replies still owed when it arrived; .conns."""

    def __init__(self, pipelining=True, delay=0.03, rcpt=None, bdat=None):
        self.pipelining = pipelining
        self.delay = delay
        self.rcpt_hook = rcpt
        self.bdat_hook = bdat
        self.lock = threading.Lock()
        self.accepted = []
        self.mails = []
        self.conns = 0
        self.port = dl.free_port()
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self.thread.start()
        if not started.wait(10):
            raise RuntimeError("server did not start")

    def _run(self, started):
        asyncio.set_event_loop(self.loop)
        srv = self.loop.run_until_complete(
            asyncio.start_server(self._conn, "127.0.0.1", self.port))
        started.set()
        try:
            self.loop.run_until_complete(srv.serve_forever())
        except RuntimeError:
            pass        # stop(): the loop stopped under serve_forever

    async def _conn(self, reader, writer):
        with self.lock:
            self.conns += 1
            cn = self.conns
        q = asyncio.Queue()
        owed = [0]
        wtask = asyncio.ensure_future(self._writer(writer, q, owed))
        q.put_nowait((0, b"220 pipe.test ESMTP\r\n", None))
        mail_from, rcpts, k = None, [], 0
        try:
            while True:
                line = await asyncio.wait_for(reader.readline(), 30)
                if not line:
                    break
                cmd = line.decode("latin-1").rstrip("\r\n")
                up = cmd.upper()
                if up.startswith("EHLO"):
                    ext = ["pipe.test", "CHUNKING", "ENHANCEDSTATUSCODES"]
                    if self.pipelining:
                        ext.insert(1, "PIPELINING")
                    text = "".join("250-%s\r\n" % e for e in ext[:-1]) + "250 %s\r\n" % ext[-1]
                    q.put_nowait((0, text.encode(), None))
                elif up.startswith("MAIL FROM:"):
                    with self.lock:
                        self.mails.append((cn, owed[0]))
                    mail_from = cmd[10:].split(">")[0].lstrip("<")
                    rcpts = []
                    q.put_nowait((0, b"250 2.1.0 Ok\r\n", None))
                elif up.startswith("RCPT TO:"):
                    addr = cmd[8:].split(">")[0].lstrip("<")
                    r = self.rcpt_hook(addr) if self.rcpt_hook else None
                    if r is None:
                        rcpts.append(addr)
                        r = "250 2.1.5 Ok"
                    q.put_nowait((0, (r + "\r\n").encode(), None))
                elif up.startswith("BDAT") or up == "DATA":
                    if up == "DATA":
                        if mail_from is None or not rcpts:
                            q.put_nowait((0, b"554 5.5.1 no valid recipients\r\n", None))
                            continue
                        q.put_nowait((0, b"354 go ahead\r\n", None))
                        buf = b""
                        while not buf.endswith(b"\r\n.\r\n") and buf != b".\r\n":
                            more = await asyncio.wait_for(reader.readline(), 30)
                            if not more:
                                return
                            buf += more
                        data = b"".join(ln[1:] if ln.startswith(b".") else ln
                                        for ln in buf[:-3].splitlines(True))
                    else:
                        n = int(cmd.split()[1])
                        data = await asyncio.wait_for(reader.readexactly(n), 30)
                        if mail_from is None or not rcpts:
                            q.put_nowait((0, b"554 5.5.1 no valid recipients\r\n", None))
                            mail_from, rcpts = None, []
                            continue
                    k += 1
                    r = self.bdat_hook(cn, k, data) if self.bdat_hook else None
                    rec = (cn, mail_from, list(rcpts), data)
                    mail_from, rcpts = None, []
                    owed[0] += 1
                    due = time.monotonic() + self.delay
                    if r == "drop":
                        q.put_nowait((due, None, "drop"))
                        continue
                    q.put_nowait((due, ((r or "250 2.0.0 Ok: queued") + "\r\n").encode(),
                                  rec if r is None else "owed"))
                elif up == "RSET":
                    mail_from, rcpts = None, []
                    q.put_nowait((0, b"250 2.0.0 Ok\r\n", None))
                elif up == "QUIT":
                    q.put_nowait((0, b"221 2.0.0 Bye\r\n", "quit"))
                    break
                else:
                    q.put_nowait((0, b"502 5.5.2 not here\r\n", None))
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            q.put_nowait((0, None, "quit"))
            await wtask

    async def _writer(self, writer, q, owed):
        """Replies in order, each when it is due; a 250 to data counts as
        accepted only once written."""
        try:
            while True:
                due, data, what = await q.get()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if what == "drop":
                    writer.transport.abort()
                    return
                if data is not None:
                    writer.write(data)
                    await writer.drain()
                if isinstance(what, tuple):
                    owed[0] -= 1
                    with self.lock:
                        self.accepted.append(what)
                elif what == "owed":
                    owed[0] -= 1
                if what == "quit":
                    writer.close()
                    return
        except ConnectionError:
            return

    def snapshot(self):
        with self.lock:
            return list(self.accepted), list(self.mails), self.conns

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)


def tag_of(data):
    mid = dl.message_id(data)
    return mid[1:-1].split("@")[0] if mid else None


def relay_for(srv, depth=None):
    delivery = {"idle_keep": "5s"}
    if depth is not None:
        delivery["pipeline_depth"] = depth
    # One connection: its messages queue up behind each other on it.
    return dl.Relay([{"domain": "p.test", "transport": "smtp:[127.0.0.1]:%d" % srv.port,
                      "retry": "1s", "max_connections": "1"},
                     {"domain": "client.test", "transport": "discard"}], delivery=delivery)


def submit_batch(relay, prefix, n, rcpts_of=None, subject_of=None):
    """n messages over one session, so that they queue up together."""
    items, want = [], {}
    for i in range(n):
        tag = "%s%03d" % (prefix, i)
        rc = rcpts_of(i) if rcpts_of else ["%s-%d@p.test" % (prefix, i)]
        data = dl.make_message(tag, "s@client.test", rc, size=800,
                               subject=subject_of(i) if subject_of else None)
        items.append(("s@client.test", rc, data))
        want[tag] = (rc, data)
    qids, errors = dl.submit_many(relay.port, items, conns=1)
    T.eq(errors, [], "%s: every message accepted" % prefix)
    return want


def check_once(accepted, want, what):
    seen = collections.Counter(tag_of(a[3]) for a in accepted)
    bad = []
    for a in accepted:
        t = tag_of(a[3])
        if t not in want:
            bad.append("unexpected %r" % t)
        elif dl.check_tail(a[3], want[t][1]):
            bad.append("%s: %s" % (t, dl.check_tail(a[3], want[t][1])))
    T.eq(bad, [], what + ": what arrived is what was sent, whole")
    T.eq(({t: c for t, c in seen.items() if c != 1}, sorted(set(want) - set(seen))),
         ({}, []), what + ": each message accepted exactly once")


# ------------------------------------------------------------ pipelined
with T.case("pipelined: the next MAIL goes out before the BDAT reply"):
    srv = PipeServer()
    relay = relay_for(srv)
    want = submit_batch(relay, "pa", 30)
    T.ok(relay.wait_empty(30), "the queue empties", relay.log_tail(10))
    acc, mails, conns = srv.snapshot()
    check_once(acc, want, "pipelined")
    piped = sum(1 for m in mails if m[1] > 0)
    T.ok(piped >= 10, "MAIL arrived while a BDAT reply was owed (%d of %d MAILs)"
         % (piped, len(mails)), repr(mails[:40]))
    T.ok(max(m[1] for m in mails) <= 1, "never more than one reply owed at a new MAIL "
         "(pipeline_depth 2)", repr(mails[:40]))
    st = collections.Counter(x.get("status") for x in relay.dlog.lines())
    T.eq(dict(st), {"delivered": 30}, "delivery.log: 30 delivered")
    relay.stop()
    srv.stop()

# ------------------------------------------------------------ refusals
with T.case("a refused transaction settles only its own recipients"):
    def rcpt(addr):
        return "550 5.1.1 <%s>: no such user" % addr if addr.startswith("bad") else None

    def bdat(conn, k, data):
        return "550 5.7.1 content rejected" if b"REJECTME" in data else None

    srv = PipeServer(rcpt=rcpt, bdat=bdat)
    relay = relay_for(srv)
    # Every 3rd message is rejected whole at BDAT; every 4th has a second
    # recipient refused at RCPT.
    want = submit_batch(relay, "pr", 24,
                        rcpts_of=lambda i: ["pr-%d@p.test" % i] + (["bad%d@p.test" % i] if i % 4 == 1 else []),
                        subject_of=lambda i: "REJECTME %d" % i if i % 3 == 2 else "fine %d" % i)
    T.ok(relay.wait_empty(30), "the queue empties", relay.log_tail(10))
    acc, mails, conns = srv.snapshot()
    good = {t: w for t, w in want.items() if int(t[2:]) % 3 != 2}
    check_once(acc, good, "refusals")
    T.ok(sum(1 for m in mails if m[1] > 0) >= 5, "transactions were pipelined",
         repr(mails[:40]))
    got = {}
    for x in relay.dlog.lines():
        if not x.get("to", "").endswith("@p.test"):
            continue        # the bounces' DSNs, discarded
        got.setdefault(x.get("to"), []).append((x.get("status"), x.get("code")))
    expect = {}
    for i in range(24):
        expect["pr-%d@p.test" % i] = [("bounced", 550) if i % 3 == 2 else ("delivered", 250)]
        if i % 4 == 1:
            expect["bad%d@p.test" % i] = [("bounced", 550)]
    T.eq(got, expect, "delivery.log: each recipient exactly its own result")
    T.eq([a[2] for a in acc if any(r.startswith("bad") for r in a[2])], [],
         "no refused recipient in an accepted transaction")
    relay.stop()
    srv.stop()

# ------------------------------------------------------------ dropped
with T.case("connection lost between the first transaction's 250 and the second's"):
    dropped = []

    def bdat(conn, k, data):
        if conn == 1 and k == 2 and not dropped:
            dropped.append(tag_of(data))
            return "drop"
        return None

    srv = PipeServer(bdat=bdat, delay=0.05)
    relay = relay_for(srv)
    want = submit_batch(relay, "pd", 10)
    T.ok(relay.wait_empty(30), "the queue empties", relay.log_tail(10))
    acc, mails, conns = srv.snapshot()
    T.eq(len(dropped), 1, "the server dropped the connection once, at the 2nd BDAT")
    check_once(acc, want, "dropped")
    first = [tag_of(a[3]) for a in acc if a[0] == 1]
    T.ok(len(first) == 1 and first[0] != dropped[0],
         "the first connection delivered exactly one message, not the dropped one", repr(first))
    lines = [x for x in relay.dlog.lines() if x.get("to") == "pd-%d@p.test" % int(dropped[0][2:])]
    T.ok([x.get("status") for x in lines] == ["deferred", "delivered"],
         "the dropped one: deferred (connection lost), then delivered", relay.dlog.dump())
    T.ok("connection lost" in (lines[0].get("text") or "") if lines else False,
         "its deferral says connection lost", repr(lines[:1]))
    relay.stop()
    srv.stop()

# ------------------------------------------------------------ depth 1
with T.case("pipeline_depth 1: one transaction at a time"):
    srv = PipeServer()
    relay = relay_for(srv, depth=1)
    want = submit_batch(relay, "p1", 10)
    T.ok(relay.wait_empty(30), "the queue empties", relay.log_tail(10))
    acc, mails, conns = srv.snapshot()
    check_once(acc, want, "depth 1")
    T.eq([m for m in mails if m[1] > 0], [], "no MAIL before the last BDAT reply")
    relay.stop()
    srv.stop()

# ------------------------------------------------------------ no PIPELINING
with T.case("server without PIPELINING"):
    srv = PipeServer(pipelining=False)
    relay = relay_for(srv)
    want = submit_batch(relay, "pn", 10)
    T.ok(relay.wait_empty(30), "the queue empties", relay.log_tail(10))
    acc, mails, conns = srv.snapshot()
    check_once(acc, want, "no PIPELINING")
    T.eq([m for m in mails if m[1] > 0], [], "no MAIL before the last reply")
    relay.stop()
    srv.stop()

# ------------------------------------------------------------ volume
with T.case("20,000 messages: the sink counts what sluiced accepted"):
    N = 20000
    sink = Sink(log=False)
    relay = dl.Relay([{"domain": "example.net", "transport": "smtp:[127.0.0.1]:%d" % sink.port}])
    rc, rep, err = source(relay.port, "--messages", str(N), "--connections", "8",
                          "--size", "1k", timeout=240)
    T.ok(rc == 0, "source exits 0", err[-500:])
    T.eq((rep or {}).get("accepted"), N, "source: %d accepted by sluiced" % N)
    T.ok(relay.wait_empty(180), "the queue empties", relay.log_tail(10))
    time.sleep(0.5)
    rc, srep = sink.stop()
    T.eq((srep or {}).get("messages"), N, "sink: %d messages accepted" % N)
    relay.stop()

sluice.finish()
