"""
deliverlib.py - what the delivery tests (test_deliver*.py) share: scriptable
SMTP/LMTP servers that sluiced delivers to, a sluiced started on a config
with routes, the delivery log, DSN parsing, and Postfix's smtp-sink.

Servers (python3-aiosmtpd, in a thread of the test process):

  Server(name, addr="127.0.0.1", port=None, lmtp=False, unix=None,
         greeting=None, mail=None, rcpt=None, data=None, data_delay=0.0,
         pipelining=True, smtp_kw=None, ssl_context=None)
      An SMTP (lmtp=True: LMTP) server on addr:port (port None: a free
      one), or on the Unix socket `unix`. smtp_kw: more keyword arguments
      for aiosmtpd's SMTP (tls_context for STARTTLS, authenticator,
      auth_require_tls...); ssl_context: TLS from the first byte (465). It records everything and
      answers as scripted; every hook may return None for the normal
      reply, or a reply line such as "451 4.7.1 try later":
        greeting(conn)      instead of the 220 greeting: the reply is sent
                            and the connection closed (e.g. 421)
        mail(address, conn) the reply to MAIL FROM ("" is the null sender)
        rcpt(address, n)    the reply to RCPT TO; n counts the RCPTs of this
                            address at this server, this one included (1..)
        data(msg)           SMTP: the reply at the end of the data; msg is a
                            Msg whose .attempt counts end-of-data for the
                            same Message-ID at this server (1..)
        data(address, n)    LMTP: the reply for one accepted recipient after
                            the data; n counts this address's post-data
                            replies at this server (1..)
      data_delay: seconds to wait before the end-of-data reply (this does
      not block other connections).
      Records (read them through the methods, they take the lock):
        msgs()          accepted transactions (a 2xx for at least one
                        recipient), in arrival order, as Msg: .conn (the
                        connection number), .t (time.monotonic()),
                        .mail_from ("" for <>), .rcpts (accepted at RCPT),
                        .delivered (recipients that got a 2xx in the end),
                        .data (bytes after dot-unstuffing, CRLF), .reply,
                        .tls (the transaction was under TLS),
                        .tls_resumed (its handshake resumed a session; None
                        without TLS), .login (the AUTH user, or None),
                        .attempt, .mail_options, .msgid
        refused()       transactions whose end-of-data reply was not 2xx
        rcpt_log()      (t, conn number, address, reply) for every RCPT
        conns()         Conn: .n (1..), .peer, .t_open, .t_close (None while
                        open), .refused (the greeting hook's reply or None),
                        .helo, .messages, .rsets, .quit
        max_concurrent(t0=None, t1=None)  most greeted connections open at
                        once (within [t0, t1] if given)
        attempts(t0=None, t1=None)  connections opened (refused included)
        count(pred=None)   number of accepted transactions
        tagged(tag)     accepted transactions of make_message(tag, ...)'s
                        message (by its Message-ID)
      The connection aiosmtpd makes to itself at start is not recorded.
      stop() ends it (also at exit). Scripting helpers:
        fail_first(n, reply)    for rcpt/LMTP data: reply for the first n
        by_address({addr: reply}) for rcpt/LMTP data (addresses lower-case)
        data_fail_first(n, reply) for SMTP data: the first n attempts of
                                  each message
        refuse_connections(n=None, seconds=None, reply) for greeting: the
                                  first n connections, or those within
                                  `seconds` of the first one

  RawServer(name, addr="127.0.0.1", port=None, greeting=None, drip=0.0,
            after_greeting=b"", mail=None, idle_close=None, after_ehlo=b"",
            idle_reply=b"")
      An SMTP server on raw asyncio streams (PIPELINING, no CHUNKING), fast
      enough for throughput tests and free to misbehave: a dripped
      greeting, unasked lines after it, scripted MAIL replies (a 421
      closes), idle connections closed. See the class for its records.

sluiced:
  Relay(routes, dns=None, delivery=None, hostname="sluice.test", start=True,
        port=None)
      A sluice.Daemon (listening on 127.0.0.1:port, a free port if None;
      with start=False, more `-o` options can go into .d.opts first) on a
      YAML config with these routes (a list of dicts,
      written as given, values quoted), the delivery log in the daemon's
      dir (.dlog, a DeliveryLog), idle_keep 1s and connect_timeout 2s unless
      `delivery` says otherwise (a list value is written as a YAML list:
      {"denied_networks": []} lets MX hosts on loopback be dialled), `dns`
      as the dns map. Attributes: d (the
      Daemon), port, conf, dlog. start()/stop()/kill9() as the Daemon's.
      wait_empty(timeout) waits for `queue count` to reach 0.
      send_one(tag, rcpt, sender="s@client.test", **make_message options)
      submits one message: (qid, data).
      ctl(*args, timeout=120) runs sluicectl -c conf: (rc, stdout, stderr);
      listing(*filters) is `queue list --json` with those filters, checked
      to succeed (T), as a list of messages; ids(*filters) their sorted ids.
  DeliveryLog(path): lines() -> list of dicts (complete lines only);
      for_rcpt(addr), with_(**fields), wait_for(pred, timeout) -> the
      matching lines once there is one (bounded), last_for(qid,
      timeout=20) -> the newest line about qid once there is one, or {},
      dump(n, pred) for failure messages. ts_of(ts) turns a log time into epoch seconds.

Messages:
  make_message(tag, sender, rcpts, subject=None, size=600, rnd=None,
               leading_dots=False, eight_bit=False) -> bytes (CRLF)
  submit(port, sender, rcpts, data) -> qid (one smtplib session)
  submit_many(port, items, conns=1) -> {index: qid} over `conns` parallel
      smtplib sessions; items are (sender, rcpts, data)
  check_tail(received, sent) -> None if `received` is exactly `sent` with
      header fields (Received: first) put in front, else a reason

DSNs:
  parse_dsn(data) -> Dsn: .msg (email.message.Message), .content_type,
      .report_type, .part_types, .per_message (dict), .per_rcpt (list of
      dicts, keys lower-case), .headers_part (str), .text_part (str)
  final_recipients(dsn) -> the addresses of its Final-Recipient fields
  dsns_for(server, qid) -> the DSNs (Msg) a server got about queue id qid
      (by X-Sluice-Queue-ID)
  one_dsn(server, qid, sender, failed, what, status_prefix, subject) -> Dsn
      or None: waits for the one DSN about qid, checks it with check_dsn
  check_dsn(msg, sender, failed, what, status_prefix, subject) -> Dsn,
      after checking it (envelope, parts, fields) with T

Postfix:
  PostfixSink(*args)  /usr/sbin/smtp-sink -d DIR/... on 127.0.0.1:port;
      messages() -> list of (envelope dict, content bytes with LF ends).
  have_smtp_sink()

Every wait is bounded; every server and process started here is ended at
exit.
"""

import asyncio
import atexit
import contextlib
import email
import email.policy
import json
import os
import random
import re
import smtplib
import socket
import subprocess
import threading
import time

import sluice
from sluice import T

try:
    from aiosmtpd.controller import Controller, UnixSocketController
    from aiosmtpd.lmtp import LMTP
    from aiosmtpd.smtp import SMTP
except ImportError as e:                    # python3-aiosmtpd missing
    sluice.skip("python3-aiosmtpd is not installed: %s" % e)

_live = []
_procs = []


def _cleanup():
    for s in list(_live):
        with contextlib.suppress(Exception):
            s.stop()
    for p in _procs:
        if p.poll() is None:
            p.kill()
            with contextlib.suppress(Exception):
                p.wait(5)


atexit.register(_cleanup)


def wait_until(pred, timeout, step=0.05):
    """Polls pred() until it is true or `timeout` seconds pass; returns its
    last value."""
    return sluice.wait_until(pred, timeout, step)


def free_port(addrs=("127.0.0.1",)):
    """A TCP port free on every address in addrs (all loopback; IPv6
    ones such as "::1" too)."""
    rnd = random.Random(os.getpid() ^ int(time.time() * 1e6))
    for _ in range(300):
        port = rnd.randrange(20000, 32000)
        socks = []
        try:
            for a in addrs:
                s = socket.socket(socket.AF_INET6 if ":" in a else socket.AF_INET,
                                  socket.SOCK_STREAM)
                socks.append(s)
                s.bind((a, port))
            return port
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port on %s" % (addrs,))


# ---------------------------------------------------------------- servers

class Conn:
    def __init__(self, n, peer, internal):
        self.n = n
        self.peer = peer
        self.internal = internal
        self.t_open = time.monotonic()
        self.t_close = None
        self.refused = None
        self.helo = None
        self.messages = 0
        self.rsets = 0
        self.quit = False

    def __repr__(self):
        return "<conn %d %s%s>" % (self.n, "refused " if self.refused else "",
                                    "open" if self.t_close is None else "closed")


class Msg:
    def __init__(self, conn, mail_from, rcpts, data, mail_options):
        self.conn = conn
        self.t = time.monotonic()
        self.mail_from = mail_from
        self.rcpts = list(rcpts)
        self.delivered = []
        self.data = data
        self.reply = None
        self.attempt = 1
        self.mail_options = list(mail_options)
        self.msgid = message_id(data)

    def __repr__(self):
        return "<msg %s from %r to %r conn %d>" % (self.msgid, self.mail_from,
                                                   self.rcpts, self.conn)


def _peak(ev):
    """Most at once of (time, +1 open / -1 close) events."""
    ev.sort(key=lambda e: (e[0], e[1]))
    cur = best = 0
    for _, d in ev:
        cur += d
        best = max(best, cur)
    return best


def max_open(spans):
    """Most of the (t_open, t_close) spans open at once (t_close None:
    still open)."""
    ev = []
    for a, b in spans:
        ev.append((a, 1))
        ev.append((b if b is not None else float("inf"), -1))
    return _peak(ev)


def message_id(data):
    m = re.search(rb"(?im)^Message-ID:[ \t]*(<[^>\r\n]*>)", data.split(b"\r\n\r\n", 1)[0])
    return m.group(1).decode("latin-1") if m else None


def _norm_sender(address):
    return "" if address in ("<>", "") else address


class _Handler:
    def __init__(self, srv):
        self.srv = srv

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        c = getattr(session, "sl_conn", None)
        if c:
            c.helo = hostname
        if self.srv.pipelining and "250-PIPELINING" not in responses:
            responses.insert(1, "250-PIPELINING")
        # LHLO goes through smtp_EHLO as well.
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        srv = self.srv
        c = session.sl_conn
        r = srv.mail_hook(_norm_sender(address), c) if srv.mail_hook else None
        if r is None or r.startswith("2"):
            envelope.mail_from = address
            envelope.mail_options.extend(mail_options)
            return r or "250 2.1.0 Ok"
        return r

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        srv = self.srv
        key = address.lower()
        with srv.lock:
            srv._rcpt_n[key] = srv._rcpt_n.get(key, 0) + 1
            n = srv._rcpt_n[key]
        r = _call(srv.rcpt_hook, address, n)
        r = r or "250 2.1.5 Ok"
        if r.startswith("2"):
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
        with srv.lock:
            srv._rcpts.append((time.monotonic(), session.sl_conn.n, address, r))
        return r

    async def handle_RSET(self, server, session, envelope):
        session.sl_conn.rsets += 1
        return "250 2.0.0 Ok"

    async def handle_QUIT(self, server, session, envelope):
        session.sl_conn.quit = True
        return "221 2.0.0 Bye"

    async def handle_DATA(self, server, session, envelope):
        srv = self.srv
        c = session.sl_conn
        data = bytes(envelope.original_content)
        m = Msg(c.n, _norm_sender(envelope.mail_from), envelope.rcpt_tos, data,
                envelope.mail_options)
        # TLS under the transaction (STARTTLS or implicit), whether its
        # handshake resumed a session, and who logged in.
        tls = server.transport.get_extra_info("ssl_object")
        m.tls = tls is not None
        m.tls_resumed = tls.session_reused if tls is not None else None
        m.login = getattr(getattr(session, "auth_data", None), "login", None)
        with srv.lock:
            k = m.msgid or sluice.sha256(data)
            srv._data_n[k] = srv._data_n.get(k, 0) + 1
            m.attempt = srv._data_n[k]
        if srv.data_delay:
            await asyncio.sleep(srv.data_delay)
        if srv.lmtp:
            lines = []
            for a in m.rcpts:
                key = a.lower()
                with srv.lock:
                    srv._ldata_n[key] = srv._ldata_n.get(key, 0) + 1
                    n = srv._ldata_n[key]
                r = _call(srv.data_hook, a, n) or "250 2.0.0 <%s> Ok" % a
                if r.startswith("2"):
                    m.delivered.append(a)
                lines.append(r)
            m.reply = "\r\n".join(lines)
        else:
            r = (srv.data_hook(m) if srv.data_hook else None)
            if r is None:
                with srv.lock:
                    srv._qn += 1
                    r = "250 2.0.0 Ok: queued as %s%06d" % (srv.name, srv._qn)
            if r.startswith("2"):
                m.delivered = list(m.rcpts)
            m.reply = r
        with srv.lock:
            if m.delivered:
                srv._msgs.append(m)
                c.messages += 1
            else:
                srv._refused.append(m)
        return m.reply


def _call(hook, address, n):
    if hook is None:
        return None
    if isinstance(hook, str):
        return hook
    return hook(address, n)


class _Track:
    """Mixed into aiosmtpd's SMTP/LMTP: connection bookkeeping and the
    scripted greeting."""
    srv = None

    def connection_made(self, transport):
        super().connection_made(transport)
        self.sl_conn = self.srv._opened(self.session.peer)
        self.session.sl_conn = self.sl_conn

    def connection_lost(self, error):
        with contextlib.suppress(Exception):
            self.srv._closed(self.sl_conn)
        super().connection_lost(error)

    async def _handle_client(self):
        c = self.sl_conn
        r = None if c.internal or self.srv.greeting_hook is None else self.srv.greeting_hook(c)
        if r is not None:
            c.refused = r
            with contextlib.suppress(Exception):
                await self.push(r)
            self.transport.close()
            return
        await super()._handle_client()


class Server:
    def __init__(self, name="srv", addr="127.0.0.1", port=None, lmtp=False, unix=None,
                 greeting=None, mail=None, rcpt=None, data=None, data_delay=0.0,
                 pipelining=True, smtp_kw=None, ssl_context=None):
        self.name = name
        self.addr = addr
        self.unix = unix
        self.lmtp = lmtp
        self.greeting_hook = greeting
        self.mail_hook = mail
        self.rcpt_hook = rcpt
        self.data_hook = data
        self.data_delay = data_delay
        self.pipelining = pipelining
        self.lock = threading.Lock()
        self._conns = []
        self._msgs = []
        self._refused = []
        self._rcpts = []
        self._rcpt_n = {}
        self._data_n = {}
        self._ldata_n = {}
        self._qn = 0
        self._n = 0
        self._cur = 0
        self._max = 0
        self._ready = False
        base = LMTP if lmtp else SMTP
        proto = type("Srv_" + name, (_Track, base), {"srv": self})
        handler = _Handler(self)
        hostname = "%s.sink.test" % name
        kw = dict(ready_timeout=10)
        if unix:
            self.ctl = UnixSocketController(handler, unix_socket=unix, **kw)
            self.port = None
        else:
            self.port = port or free_port((addr,))
            if ssl_context is not None:
                kw["ssl_context"] = ssl_context
            self.ctl = Controller(handler, hostname=addr, port=self.port, **kw)
        skw = dict(hostname=hostname, enable_SMTPUTF8=True, decode_data=False,
                   data_size_limit=64 * 1024 * 1024, timeout=120)
        skw.update(smtp_kw or {})
        self.ctl.factory = lambda: proto(handler, **skw)
        self.ctl.start()
        with self.lock:
            self._ready = True
        _live.append(self)
        print("server %s listening on %s (%s)" % (name, unix or "%s:%d" % (addr, self.port),
                                                  "LMTP" if lmtp else "SMTP"))

    @property
    def hostport(self):
        return "%s:%d" % (self.addr, self.port)

    # called on the server's loop thread
    def _opened(self, peer):
        with self.lock:
            if not self._ready:
                return Conn(0, peer, True)
            self._n += 1
            c = Conn(self._n, peer, False)
            self._conns.append(c)
            self._cur += 1
            self._max = max(self._max, self._cur)
            return c

    def _closed(self, c):
        with self.lock:
            if c.t_close is None:
                c.t_close = time.monotonic()
                if not c.internal:
                    self._cur -= 1

    # read from the test
    def msgs(self):
        with self.lock:
            return list(self._msgs)

    def tagged(self, tag):
        """The accepted transactions of make_message(tag, ...)'s message."""
        return [m for m in self.msgs() if m.msgid == "<%s@client.test>" % tag]

    def refused(self):
        with self.lock:
            return list(self._refused)

    def rcpt_log(self):
        with self.lock:
            return list(self._rcpts)

    def conns(self):
        with self.lock:
            return list(self._conns)

    def count(self, pred=None):
        with self.lock:
            return sum(1 for m in self._msgs if pred is None or pred(m))

    def current(self):
        with self.lock:
            return self._cur

    def max_concurrent(self, t0=None, t1=None):
        """Most connections open at once that were greeted (not refused by
        the greeting hook), within [t0, t1] if given."""
        now = time.monotonic()
        ev = []
        with self.lock:
            for c in self._conns:
                if c.refused is not None:
                    continue
                a, b = c.t_open, c.t_close if c.t_close is not None else now
                if t0 is not None:
                    a = max(a, t0)
                if t1 is not None:
                    b = min(b, t1)
                if a <= b:
                    ev.append((a, 1))
                    ev.append((b, -1))
        return _peak(ev)

    def attempts(self, t0=None, t1=None):
        """Connections opened in [t0, t1] (refused ones included)."""
        with self.lock:
            return sum(1 for c in self._conns
                       if (t0 is None or c.t_open >= t0) and (t1 is None or c.t_open <= t1))

    def stop(self):
        if self in _live:
            _live.remove(self)
            with contextlib.suppress(Exception):
                self.ctl.stop()
            if self.unix:
                with contextlib.suppress(OSError):
                    os.unlink(self.unix)


class RawConn:
    def __init__(self, n, peer):
        self.n = n
        self.peer = peer
        self.t_open = time.monotonic()
        self.t_close = None
        self.messages = 0
        self.closed_by_server = False

    def __repr__(self):
        return "<raw conn %d %s>" % (self.n, "open" if self.t_close is None else "closed")


class RawServer:
    """An SMTP next hop on raw asyncio streams, in a thread of the test:
    fast (PIPELINING, replies as commands arrive) and free to break the
    protocol in ways aiosmtpd will not. Hooks:
      greeting        bytes sent first (default a 220 line)
      drip            seconds between the greeting's bytes (0: at once)
      after_greeting  bytes sent right after the greeting, unasked
      mail(n, sender) the reply to the n-th MAIL FROM at this server (1..;
                      sender without brackets), or None for 250; a 421
                      closes the connection after it
      after_ehlo      bytes sent right after the EHLO reply, unasked
      idle_close      seconds a connection may sit without a command after
                      a reply before the server closes it (None: never)
      idle_reply      bytes sent before that close (e.g. a 421 line)
    Records: conns() (RawConn: .n, .t_open, .t_close, .messages,
    .closed_by_server), msgs() ((conn n, Message-ID, data) per accepted
    message), count(), mail_count()."""

    def __init__(self, name="raw", addr="127.0.0.1", port=None,
                 greeting=None, drip=0.0, after_greeting=b"", mail=None,
                 idle_close=None, after_ehlo=b"", idle_reply=b""):
        self.name = name
        self.addr = addr
        self.port = port or free_port((addr,))
        self.greeting = greeting if greeting is not None else \
            ("220 %s.sink.test ESMTP\r\n" % name).encode()
        self.drip = drip
        self.after_greeting = after_greeting
        self.after_ehlo = after_ehlo
        self.mail_hook = mail
        self.idle_close = idle_close
        self.idle_reply = idle_reply
        self.lock = threading.Lock()
        self._conns = []
        self._msgs = []
        self._mails = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._server = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10) or self._server is None:
            raise RuntimeError("raw server %s did not start" % name)
        _live.append(self)
        print("raw server %s listening on %s:%d" % (name, addr, self.port))

    @property
    def hostport(self):
        return "%s:%d" % (self.addr, self.port)

    def _run(self):
        asyncio.set_event_loop(self._loop)

        async def start():
            try:
                self._server = await asyncio.start_server(
                    self._client, self.addr, self.port, reuse_address=True)
            finally:
                self._ready.set()
        self._loop.run_until_complete(start())
        self._loop.run_forever()

    async def _send(self, w, data):
        w.write(data)
        await w.drain()

    async def _client(self, reader, writer):
        with self.lock:
            c = RawConn(len(self._conns) + 1, writer.get_extra_info("peername"))
            self._conns.append(c)
        try:
            await self._dialogue(c, reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            with self.lock:
                c.t_close = time.monotonic()
            with contextlib.suppress(Exception):
                writer.close()

    async def _dialogue(self, c, reader, writer):
        if self.drip:
            for i in range(len(self.greeting)):
                await self._send(writer, self.greeting[i:i + 1])
                await asyncio.sleep(self.drip)
        else:
            await self._send(writer, self.greeting)
        if self.after_greeting:
            await self._send(writer, self.after_greeting)
        while True:
            try:
                if self.idle_close is not None:
                    line = await asyncio.wait_for(reader.readline(), self.idle_close)
                else:
                    line = await reader.readline()
            except asyncio.TimeoutError:
                c.closed_by_server = True
                if self.idle_reply:
                    await self._send(writer, self.idle_reply)
                return
            if not line:
                return
            verb = line[:4].upper()
            if verb in (b"EHLO", b"LHLO"):
                await self._send(writer, ("250-%s.sink.test\r\n250-PIPELINING\r\n"
                                          "250-8BITMIME\r\n250 SMTPUTF8\r\n" % self.name).encode()
                                 + self.after_ehlo)
            elif verb == b"HELO":
                await self._send(writer, b"250 ok\r\n")
            elif verb == b"MAIL":
                with self.lock:
                    self._mails += 1
                    n = self._mails
                m = re.match(rb"(?i)MAIL FROM:\s*<([^>]*)>", line)
                sender = m.group(1).decode("latin-1") if m else ""
                r = self.mail_hook(n, sender) if self.mail_hook else None
                await self._send(writer, ((r or "250 2.1.0 Ok") + "\r\n").encode())
                if r is not None and r.startswith("421"):
                    c.closed_by_server = True
                    return
            elif verb == b"RCPT":
                await self._send(writer, b"250 2.1.5 Ok\r\n")
            elif verb == b"DATA":
                await self._send(writer, b"354 go ahead\r\n")
                data = await reader.readuntil(b"\r\n.\r\n")
                data = data[:-3].replace(b"\r\n..", b"\r\n.")
                if data.startswith(b".."):
                    data = data[1:]
                with self.lock:
                    c.messages += 1
                    self._msgs.append((c.n, message_id(data), data))
                    k = len(self._msgs)
                await self._send(writer, ("250 2.0.0 Ok: queued as %s%06d\r\n" % (self.name, k)).encode())
            elif verb == b"RSET" or verb == b"NOOP":
                await self._send(writer, b"250 2.0.0 Ok\r\n")
            elif verb == b"QUIT":
                await self._send(writer, b"221 2.0.0 Bye\r\n")
                return
            else:
                await self._send(writer, b"502 5.5.2 what?\r\n")

    def conns(self):
        with self.lock:
            return list(self._conns)

    def msgs(self):
        with self.lock:
            return list(self._msgs)

    def count(self):
        with self.lock:
            return len(self._msgs)

    def mail_count(self):
        with self.lock:
            return self._mails

    def stop(self):
        if self in _live:
            _live.remove(self)

            async def close():
                if self._server is not None:
                    self._server.close()
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)


def fail_first(n, reply="451 4.7.1 Greylisted, try again later"):
    """rcpt / LMTP data hook: `reply` for an address's first n tries."""
    return lambda address, k: reply if k <= n else None


def by_address(mapping):
    """rcpt / LMTP data hook: a fixed reply per address."""
    m = {k.lower(): v for k, v in mapping.items()}
    return lambda address, k: m.get(address.lower())


def data_fail_first(n, reply="451 4.3.0 try again later"):
    """SMTP data hook: `reply` for the first n attempts of each message."""
    return lambda msg: reply if msg.attempt <= n else None


def refuse_connections(n=None, seconds=None, reply="421 4.7.0 Too busy, try again later"):
    """greeting hook: refuse the first n connections, and/or every
    connection within `seconds` of the first one."""
    state = {}

    def hook(c):
        t0 = state.setdefault("t0", c.t_open)
        if n is not None and c.n <= n:
            return reply
        if seconds is not None and c.t_open - t0 < seconds:
            return reply
        return None
    return hook


# ---------------------------------------------------------------- sluiced

def _yaml_map(d):
    """A YAML flow map; scalars quoted, lists as flow lists of strings."""
    def val(v):
        if isinstance(v, (list, tuple)):
            return json.dumps([str(x) for x in v])
        return json.dumps(str(v))
    return "{" + ", ".join("%s: %s" % (k, val(v)) for k, v in d.items()) + "}"


class DeliveryLog:
    def __init__(self, path):
        self.path = path

    def lines(self):
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return []
        out = []
        for ln in raw.split(b"\n")[:-1]:          # complete lines only
            try:
                out.append(json.loads(ln.decode("utf-8")))
            except ValueError:
                out.append({"status": "UNPARSABLE", "raw": ln[:300].decode("latin-1")})
        return out

    def for_rcpt(self, addr):
        return [x for x in self.lines() if x.get("to", "").lower() == addr.lower()]

    def with_(self, **fields):
        return [x for x in self.lines() if all(x.get(k) == v for k, v in fields.items())]

    def wait_for(self, pred, timeout):
        """Waits until some line satisfies pred; returns the matching lines."""
        def f():
            return [x for x in self.lines() if pred(x)]
        return wait_until(f, timeout, 0.1) or []

    def last_for(self, qid, timeout=20):
        """The newest line about qid, once there is one (bounded); {} if none."""
        got = self.wait_for(lambda x: x.get("qid") == qid, timeout)
        return got[-1] if got else {}

    def dump(self, n=40, pred=None):
        ls = [x for x in self.lines() if pred is None or pred(x)]
        return "\n".join(json.dumps(x) for x in ls[-n:])


class Relay:
    """sluiced with a config file holding `routes` (see the module doc)."""

    def __init__(self, routes, dns=None, delivery=None, hostname="sluice.test",
                 extra="", start=True, shards=2, port=None):
        self.d = sluice.Daemon(config="/nonexistent", hostname=hostname, start=False,
                               shards=shards, deliver=True, port=port)
        self.conf = os.path.join(self.d.dir, "sluice.yaml")
        self.d.config = self.conf
        self.port = self.d.port
        self.dlog_path = os.path.join(self.d.dir, "delivery.log")
        self.dlog = DeliveryLog(self.dlog_path)
        dl = {"log": self.dlog_path, "idle_keep": "1s", "connect_timeout": "2s"}
        dl.update(delivery or {})
        lines = ["spool: %s" % json.dumps(self.d.spool),
                 "shards: %d" % shards,
                 'listen: [{address: "127.0.0.1:%d"}]' % self.port,
                 "hostname: %s" % hostname,
                 "delivery: " + _yaml_map(dl)]
        if dns:
            lines.append("dns: " + _yaml_map(dns))
        lines.append("routes:")
        for r in routes:
            lines.append("  - " + _yaml_map(r))
        if extra:
            lines.append(extra)
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        print("config %s:\n%s" % (self.conf, "\n".join("  | " + ln for ln in lines)))
        if start:
            self.start()

    def start(self):
        self.d.start()
        return self

    def stop(self):
        return self.d.stop()

    def kill9(self):
        return self.d.kill9()

    def count(self):
        return self.d.count()

    def wait_empty(self, timeout):
        """True once `sluicectl queue count` is 0 (bounded)."""
        def f():
            try:
                return self.d.count() == 0
            except Exception:
                return False
        return bool(wait_until(f, timeout, 0.2))

    def log_tail(self, n=30):
        return self.d.log_tail(n)

    def send_one(self, tag, rcpt, sender="s@client.test", **kw):
        """make_message(tag, sender, [rcpt], **kw) submitted: (qid, data)."""
        data = make_message(tag, sender, [rcpt], **kw)
        return submit(self.port, sender, [rcpt], data), data

    def ctl(self, *args, timeout=120):
        """sluicectl on this relay's config file; (rc, stdout, stderr)."""
        p = subprocess.run([sluice.SLUICECTL, "-c", self.conf] + list(args),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, timeout=timeout,
                           env=sluice.clean_env())
        return p.returncode, p.stdout.decode(), p.stderr.decode()

    def listing(self, *filters):
        """The messages `queue list --json FILTERS` shows; a failure is one."""
        rc, out, err = self.ctl("queue", "list", "--json", *filters)
        T.eq(rc, 0, "queue list %s: %s" % (" ".join(filters), err))
        return json.loads(out) if rc == 0 else []

    def ids(self, *filters):
        return sorted(m["id"] for m in self.listing(*filters))


# ---------------------------------------------------------------- messages

def make_message(tag, sender, rcpts, subject=None, size=600, rnd=None,
                 leading_dots=False, eight_bit=False, extra_headers=()):
    rnd = rnd or random.Random(tag)
    hdr = ["From: <%s>" % (sender or "mailer-daemon@client.test"),
           "To: " + ", ".join("<%s>" % r for r in rcpts),
           "Subject: %s" % (subject or "test message %s" % tag),
           "Date: Mon, 13 Nov 2023 20:13:19 +0000",
           "Message-ID: <%s@client.test>" % tag,
           "X-Test-Id: %s" % tag] + list(extra_headers)
    head = ("\r\n".join(hdr) + "\r\n\r\n").encode()
    lines = []
    n = len(head)
    k = 0
    while n < size:
        ln = "%s line %d %s" % (tag, k, "%016x" % rnd.getrandbits(64) * rnd.randrange(1, 4))
        x = rnd.randrange(12) if leading_dots else 99
        if x == 0:
            ln = "." + ln
        elif x == 1:
            ln = "."
        elif x == 2:
            ln = ".."
        b = ln.encode()
        if eight_bit and k % 7 == 3:
            b += " caf\u00e9 \u20ac".encode()
        lines.append(b)
        n += len(b) + 2
        k += 1
    return head + b"".join(b + b"\r\n" for b in lines)


QUEUED = re.compile(rb"queued as ([0-9A-F]{16})")


def _send_one(s, sender, rcpts, data):
    s.ehlo_or_helo_if_needed()
    code, resp = s.mail(sender)
    if code != 250:
        raise RuntimeError("MAIL: %d %r" % (code, resp))
    for r in rcpts:
        code, resp = s.rcpt(r)
        if code != 250:
            raise RuntimeError("RCPT %s: %d %r" % (r, code, resp))
    code, resp = s.data(data)
    if code != 250:
        raise RuntimeError("DATA: %d %r" % (code, resp))
    m = QUEUED.search(resp)
    return m.group(1).decode() if m else None


def submit(port, sender, rcpts, data):
    """One smtplib session, one message; returns the QID."""
    s = smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=30)
    try:
        return _send_one(s, sender, rcpts, data)
    finally:
        with contextlib.suppress(Exception):
            s.quit()


def submit_many(port, items, conns=1, pace=0.0):
    """Sends items [(sender, rcpts, data)] over `conns` parallel smtplib
    sessions (item i on session i % conns), `pace` seconds apart within a
    session. Returns ({index: qid}, [errors])."""
    qids = {}
    errors = []
    lock = threading.Lock()

    def worker(k):
        try:
            s = smtplib.SMTP("127.0.0.1", port, local_hostname="client%d.test" % k, timeout=30)
        except Exception as e:
            with lock:
                errors.append("connect: %r" % e)
            return
        try:
            for i in range(k, len(items), conns):
                snd, rc, data = items[i]
                try:
                    q = _send_one(s, snd, rc, data)
                except Exception as e:
                    with lock:
                        errors.append("item %d: %r" % (i, e))
                    return
                with lock:
                    qids[i] = q
                if pace:
                    time.sleep(pace)
        finally:
            with contextlib.suppress(Exception):
                s.quit()
    ts = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(conns)]
    for t in ts:
        t.start()
    deadline = time.monotonic() + 120
    for t in ts:
        t.join(max(0.1, deadline - time.monotonic()))
    if any(t.is_alive() for t in ts):
        errors.append("submit threads still running after 120 s")
    return qids, errors


def check_tail(received, sent):
    """None if `received` == header fields (the first one Received:) + sent;
    otherwise why not."""
    if received is None:
        return "nothing received"
    if not received.endswith(sent):
        return "does not end with the %d bytes sent (got %d bytes, head %r)" % (
            len(sent), len(received), received[:200])
    prefix = received[:len(received) - len(sent)]
    if not prefix.startswith(b"Received:"):
        return "added prefix does not start with Received: %r" % prefix[:200]
    if not prefix.endswith(b"\r\n") or b"\r\n\r\n" in prefix:
        return "added prefix is not a header block: %r" % prefix[:400]
    return None


# ---------------------------------------------------------------- DSNs

class Dsn:
    pass


def parse_dsn(data):
    """Parses a DSN (bytes) with Python's email package."""
    d = Dsn()
    d.raw = data
    d.msg = email.message_from_bytes(data, policy=email.policy.compat32)
    d.content_type = d.msg.get_content_type()
    d.report_type = d.msg.get_param("report-type")
    parts = d.msg.get_payload() if d.msg.is_multipart() else []
    d.part_types = [p.get_content_type() for p in parts]
    d.per_message = {}
    d.per_rcpt = []
    d.headers_part = None
    d.text_part = None
    for p in parts:
        ct = p.get_content_type()
        if ct == "message/delivery-status":
            blocks = p.get_payload()
            if isinstance(blocks, list) and blocks:
                d.per_message = {k.lower(): v for k, v in blocks[0].items()}
                for b in blocks[1:]:
                    d.per_rcpt.append({k.lower(): " ".join(v.split()) for k, v in b.items()})
        elif ct == "text/rfc822-headers":
            pl = p.get_payload(decode=True)
            d.headers_part = pl.decode("utf-8", "replace") if isinstance(pl, bytes) else str(p.get_payload())
        elif ct == "text/plain" and d.text_part is None:
            pl = p.get_payload(decode=True)
            d.text_part = pl.decode("utf-8", "replace") if isinstance(pl, bytes) else str(p.get_payload())
    return d


def final_recipients(dsn):
    out = []
    for b in dsn.per_rcpt:
        v = b.get("final-recipient", "")
        out.append(v.split(";", 1)[1].strip().lower() if ";" in v else v.lower())
    return out


def check_dsn(dsn_msg, sender, failed, what, status_prefix="5.", subject=None,
              hostname="sluice.test"):
    """Checks one DSN as received (a Msg) against the contract: from <> to
    `sender`, multipart/report with the three parts, one failed block per
    address in `failed`, Status starting with status_prefix, the original
    Subject in the headers part. Returns the Dsn."""
    T.eq(dsn_msg.mail_from, "", what + ": DSN envelope sender is <>")
    T.eq([r.lower() for r in dsn_msg.rcpts], [sender.lower()], what + ": DSN goes to the original sender")
    d = parse_dsn(dsn_msg.data)
    T.eq(d.content_type, "multipart/report", what + ": DSN is multipart/report")
    T.eq(d.report_type, "delivery-status", what + ": report-type=delivery-status")
    T.eq(d.part_types, ["text/plain", "message/delivery-status", "text/rfc822-headers"],
         what + ": the three parts")
    T.ok("mailer-daemon@" + hostname in (d.msg.get("From") or "").lower(),
         what + ": From: MAILER-DAEMON@" + hostname, repr(d.msg.get("From")))
    T.eq((d.msg.get("Auto-Submitted") or "").strip(), "auto-replied", what + ": Auto-Submitted: auto-replied")
    T.eq(sorted(final_recipients(d)), sorted(a.lower() for a in failed),
         what + ": Final-Recipient of each failed address")
    T.ok(d.per_rcpt and all(b.get("action", "").lower() == "failed" for b in d.per_rcpt),
         what + ": Action: failed", repr(d.per_rcpt))
    T.ok(d.per_rcpt and all(b.get("status", "").startswith(status_prefix) for b in d.per_rcpt),
         what + ": Status " + status_prefix + ("x.x" if status_prefix.endswith(".") else ""), repr([b.get("status") for b in d.per_rcpt]))
    if subject is not None:
        T.ok(d.headers_part is not None and ("Subject: " + subject) in d.headers_part,
             what + ": the original Subject is in the text/rfc822-headers part",
             repr((d.headers_part or "")[:600]))
    return d


# ---------------------------------------------------------------- Postfix smtp-sink

SMTP_SINK = next((p for p in ("/usr/sbin/smtp-sink", "/usr/libexec/postfix/smtp-sink")
                  if os.access(p, os.X_OK)), None)


def have_smtp_sink():
    return SMTP_SINK is not None


class PostfixSink:
    """Postfix smtp-sink dumping each transaction to a file (-d)."""

    def __init__(self, *args):
        self.dir = sluice.tmpdir()
        os.chmod(self.dir, 0o777)           # smtp-sink runs as nobody
        self.port = free_port()
        self.argv = [SMTP_SINK, "-u", "nobody", "-d", os.path.join(self.dir, "m.")] + \
            list(args) + ["127.0.0.1:%d" % self.port, "1000"]
        print("starting " + " ".join(self.argv))
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        _procs.append(self.proc)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("smtp-sink exited with %s" % self.proc.returncode)
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("smtp-sink did not start")
        time.sleep(0.2)
        self.skip = set(os.listdir(self.dir))   # the probe's (empty) dumps

    def files(self):
        return sorted(f for f in os.listdir(self.dir) if f not in self.skip)

    def messages(self):
        """[(envelope, content)]: envelope {'mail': str, 'rcpt': [str]};
        content is the message as smtp-sink got it, with LF line ends
        (smtp-sink's own Received header and trailing empty line removed)."""
        out = []
        for fn in self.files():
            with open(os.path.join(self.dir, fn), "rb") as f:
                raw = f.read()
            if not raw:
                continue
            lines = raw.split(b"\n")
            env = {"mail": None, "rcpt": []}
            i = 0
            while i < len(lines) and lines[i].startswith(b"X-"):
                if lines[i].startswith(b"X-Mail-Args: "):
                    env["mail"] = lines[i][13:].decode("latin-1")
                elif lines[i].startswith(b"X-Rcpt-Args: "):
                    env["rcpt"].append(lines[i][13:].decode("latin-1"))
                i += 1
            if i < len(lines) and lines[i].startswith(b"Received: "):   # smtp-sink's own
                i += 1
                while i < len(lines) and lines[i][:1] in (b"\t", b" "):
                    i += 1
            content = b"\n".join(lines[i:])
            if content.endswith(b"\n\n"):
                content = content[:-1]
            out.append((env, content))
        return out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
        with contextlib.suppress(Exception):
            self.proc.wait(5)
        if self.proc.poll() is None:
            self.proc.kill()


def dsns_for(server, qid):
    """The DSNs (Msg) at `server` that report on original queue id qid."""
    out = []
    for m in server.msgs():
        if m.mail_from != "":
            continue
        try:
            d = parse_dsn(m.data)
        except Exception:
            continue
        if (d.per_message.get("x-sluice-queue-id") or "").strip() == qid:
            out.append(m)
    return out


def one_dsn(server, qid, sender, failed, what, status_prefix="5.", subject=None,
            timeout=15):
    """Waits (bounded) for the DSN about qid at `server`, checks there is
    exactly one and checks it (check_dsn). Returns the Dsn, or None."""
    dsn = wait_until(lambda: dsns_for(server, qid), timeout)
    T.eq(len(dsn or []), 1, what + ": one DSN")
    if not dsn:
        return None
    return check_dsn(dsn[0], sender, failed, what, status_prefix=status_prefix,
                     subject=subject)


def ts_of(s):
    """Seconds since the epoch of a delivery-log time (…Z)."""
    import datetime
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()
