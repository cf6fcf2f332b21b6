#!/usr/bin/python3
# Description: inbound TLS against real clients. Three listeners of one
# daemon: tls: starttls, tls: required and tls: implicit, on the self-signed
# certificate sluiced makes for its host name. Python's smtplib (starttls()
# and SMTP_SSL, verifying the certificate and the host name), openssl
# s_client (-starttls smtp, implicit, TLS 1.2 and 1.3) and swaks (--tls,
# --tls-on-connect) each get a message queued, whose Received: header says
# ESMTPS with the version and cipher, over the body byte for byte. EHLO
# offers STARTTLS only before TLS and only where the listener has it;
# required answers MAIL with 530 before STARTTLS; STARTTLS answers 501 with
# an argument, 503 in a transaction and once over TLS. Commands pipelined
# behind STARTTLS (RSET, MAIL) are discarded, not run after the handshake.
# A garbage handshake is logged with the client's address and reason, and
# the daemon goes on serving. sluice-bench's STARTTLS (lib/tls as a client,
# verifying the certificate) gets its messages through.
# timeout: 180
import json
import os
import re
import smtplib
import socket

import sluice
import tlslib
from sluice import T

p0, p_req, p_imp = tlslib.ports(3)
d = sluice.Daemon("listen.0.tls=starttls", port=p0,
                  *tlslib.listen_opts(1, p_req, "required"),
                  *tlslib.listen_opts(2, p_imp, "implicit"))
cert, key = tlslib.selfsigned_paths(d)
ctx = tlslib.client_ctx(cert)
BODY = b"Subject: over TLS\r\nFrom: a@example.com\r\n\r\nHello over TLS.\r\n.leading dot\r\n"
STUFFED = BODY.replace(b"\r\n.", b"\r\n..")


def tls_ehlo_lines():
    lines = sluice.ehlo_lines()
    return lines[:1] + ["250-STARTTLS"] + lines[1:]


with T.case("EHLO offers STARTTLS on starttls and required listeners only"):
    for port, name in ((d.port, "starttls"), (p_req, "required")):
        with sluice.Conn(port) as c:
            c.greet()
            r = c.ehlo()
            T.ok(r.lines[:2] == ["250-test.example", "250-STARTTLS"],
                 name + ": EHLO lists STARTTLS", str(r))
            T.eq(len(r.lines), len(tls_ehlo_lines()), name + ": and the usual extensions")
    with tlslib.TlsConn(p_imp, ctx, implicit=True) as c:
        T.line(c.greet(), "220 test.example ESMTP sluice", "implicit: greeting after the handshake")
        sluice.check_ehlo(c.ehlo(), what="implicit: EHLO without STARTTLS")

with T.case("STARTTLS refusals"):
    with tlslib.TlsConn(d.port) as c:
        c.greet()
        c.ehlo()
        T.line(c.cmd("STARTTLS now"), "501 5.5.4 Syntax: STARTTLS", "STARTTLS with an argument")
        T.code(c.cmd("MAIL FROM:<a@example.com>"), 250, "MAIL")
        T.line(c.cmd("STARTTLS"), "503 5.5.1 Error: MAIL transaction in progress",
               "STARTTLS inside a transaction")
        T.code(c.cmd("RSET"), 250, "RSET")
        T.line(c.cmd("STARTTLS"), "220 2.0.0 Ready to start TLS", "STARTTLS")
        c.starttls(ctx)
        r = c.ehlo()
        sluice.check_ehlo(r, what="EHLO over TLS (no STARTTLS)")
        T.line(c.cmd("STARTTLS"), "503 5.5.1 Error: TLS already active", "STARTTLS over TLS")
        T.line(c.cmd("QUIT"), "221 2.0.0 Bye", "QUIT")
    with tlslib.TlsConn(p_imp, ctx, implicit=True) as c:
        c.greet()
        c.ehlo()
        T.line(c.cmd("STARTTLS"), "503 5.5.1 Error: TLS already active", "implicit: STARTTLS")

with T.case("required: 530 before STARTTLS, mail after it"):
    with tlslib.TlsConn(p_req) as c:
        c.greet()
        c.ehlo()
        T.line(c.cmd("MAIL FROM:<a@example.com>"), "530 5.7.0 Must issue a STARTTLS command first",
               "MAIL before STARTTLS")
        T.code(c.cmd("RCPT TO:<b@example.net>"), 503, "RCPT without MAIL")
        T.code(c.cmd("STARTTLS"), 220, "STARTTLS")
        c.starttls(ctx)
        c.ehlo()
        _, q = sluice.send_message(c, BODY)
        qid = sluice.qid_of(q)
        T.ok(qid, "queued over TLS on the required listener", str(q))
        if qid:
            tlslib.check_tls_stored(d, qid, BODY, what="required listener")

with T.case("smtplib starttls(), verifying the certificate for the host name"):
    s = smtplib.SMTP("127.0.0.1", d.port, local_hostname="client.example", timeout=20)
    s.ehlo()
    T.ok(s.has_extn("starttls"), "smtplib sees STARTTLS")
    s._host = sluice.HOSTNAME    # the name the certificate is checked against
    code, _ = s.starttls(context=ctx)
    T.eq(code, 220, "starttls()")
    T.eq(s.sock.version(), "TLSv1.3", "TLS 1.3 negotiated")
    s.ehlo()
    T.ok(not s.has_extn("starttls"), "no STARTTLS after TLS")
    T.eq(s.mail("a@example.com"), (250, b"2.1.0 Ok"), "MAIL")
    T.eq(s.rcpt("b@example.net"), (250, b"2.1.5 Ok"), "RCPT")
    code, msg = s.data(BODY)
    T.eq(code, 250, "end of data")
    qid = sluice.qid_of(sluice.Reply(["%d %s" % (code, msg.decode())]))
    if T.ok(qid, "queued", str(msg)):
        m = tlslib.check_tls_stored(d, qid, BODY, what="smtplib starttls")
        if m:
            T.eq(m.group("cipher"), "TLS_AES_256_GCM_SHA384", "cipher named as negotiated")
            T.eq(m.group("bits"), "256", "256 bits")
    s.quit()

with T.case("smtplib SMTP_SSL on the implicit listener"):
    # SMTP_SSL checks the certificate against the host it connects to;
    # connect by address, check for the daemon's host name.
    s = smtplib.SMTP_SSL(local_hostname="client.example", context=ctx, timeout=20)

    def by_addr(host, port, timeout):
        raw = socket.create_connection(("127.0.0.1", port), timeout)
        return ctx.wrap_socket(raw, server_hostname=sluice.HOSTNAME)
    s._get_socket = by_addr
    before = len(d.list())
    code, msg = s.connect("127.0.0.1", p_imp)
    T.eq((code, msg), (220, b"test.example ESMTP sluice"), "greeting over TLS")
    s.ehlo()
    T.ok(not s.has_extn("starttls"), "no STARTTLS offered on implicit TLS")
    r = s.sendmail("a@example.com", ["b@example.net"], BODY)
    T.eq(r, {}, "sendmail accepted")
    s.quit()
    T.eq(len(d.list()), before + 1, "one more message in the queue")

with T.case("openssl s_client -starttls smtp, TLS 1.3 and TLS 1.2"):
    script = (b"EHLO client.example\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\n"
              b"DATA\r\n" + STUFFED + b".\r\nQUIT\r\n")
    for ver, flag in (("TLSv1.3", "-tls1_3"), ("TLSv1.2", "-tls1_2")):
        rc, out = tlslib.run(["openssl", "s_client", "-starttls", "smtp", "-connect",
                              "127.0.0.1:%d" % d.port, flag, "-CAfile", cert,
                              "-verify_hostname", sluice.HOSTNAME, "-verify_return_error",
                              "-ign_eof", "-quiet"], script)
        ids = tlslib.queued_ids(out)
        T.ok(len(ids) == 1, "s_client %s: one message queued" % ver, out[-600:])
        if ids:
            m = tlslib.check_tls_stored(d, ids[0], BODY, version=ver, what="s_client " + ver)
            if m and ver == "TLSv1.2":
                T.ok(m.group("cipher").startswith("ECDHE-ECDSA-"),
                     "TLS 1.2: ECDHE with the ECDSA key", m.group("cipher"))

with T.case("openssl s_client on the implicit listener"):
    rc, out = tlslib.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % p_imp,
                          "-CAfile", cert, "-verify_hostname", sluice.HOSTNAME,
                          "-verify_return_error", "-ign_eof", "-quiet"],
                         script)
    ids = tlslib.queued_ids(out)
    T.ok(out.find("220 test.example ESMTP sluice") >= 0, "greeting over TLS", out[-400:])
    T.ok(len(ids) == 1, "implicit: one message queued", out[-600:])
    if ids:
        tlslib.check_tls_stored(d, ids[0], BODY, what="s_client implicit")

with T.case("swaks --tls and --tls-on-connect"):
    for port, flag in ((d.port, "--tls"), (p_imp, "--tls-on-connect")):
        rc, out = tlslib.run(["swaks", "--server", "127.0.0.1:%d" % port, flag,
                              "--helo", "client.example", "--from", "a@example.com",
                              "--to", "b@example.net", "--data", "-"], BODY)
        ids = tlslib.queued_ids(out)
        T.ok(rc == 0 and len(ids) == 1, "swaks %s: queued" % flag, out[-800:])
        if ids:
            data = d.cat(ids[0]) or b""
            hdr, _ = sluice.split_received(data)
            T.ok(hdr is not None and tlslib.TLS_RECEIVED_RE.match(hdr.decode("latin-1")),
                 "swaks %s: Received: with the TLS version and cipher" % flag, repr(hdr))

with T.case("sluice-bench source --starttls, verifying the certificate"):
    before = len(d.list())
    rc, out = tlslib.run([os.path.join(sluice.BIN, "sluice-bench"), "source", "--to",
                          "127.0.0.1:%d" % d.port, "--starttls", "--tls-verify", cert,
                          "--connections", "4", "--messages", "200", "--per-connection", "20",
                          "--json"], timeout=60)
    try:
        j = json.loads(out[out.index("{"):])
    except ValueError:
        j = {}
    T.ok(rc == 0 and j.get("accepted") == 200, "200 messages accepted over STARTTLS", out[-600:])
    T.eq(j.get("tls"), {"version": "TLSv1.3", "cipher": "TLS_AES_256_GCM_SHA384"},
         "the bench reports the negotiated TLS")
    T.eq(len(d.list()), before + 200, "200 more messages queued")

with T.case("STARTTLS injection: RSET pipelined behind STARTTLS is not run"):
    with tlslib.TlsConn(d.port) as c:
        c.greet()
        c.ehlo()
        c.send(b"STARTTLS\r\nRSET\r\n")
        T.line(c.reply(), "220 2.0.0 Ready to start TLS", "STARTTLS")
        T.eq(c.buf, b"", "nothing after the 220 in plaintext")
        c.starttls(ctx)
        r = c.cmd("NOOP")
        T.line(r, "250 2.0.0 Ok", "the first reply over TLS is NOOP's, not the RSET's")
        T.eq(c.pending(0.3), b"", "no other reply")

with T.case("STARTTLS injection: MAIL pipelined behind STARTTLS is forgotten"):
    with tlslib.TlsConn(d.port) as c:
        c.greet()
        c.ehlo()
        c.send(b"STARTTLS\r\nMAIL FROM:<evil@example.org>\r\n")
        T.code(c.reply(), 220, "STARTTLS")
        c.starttls(ctx)
        T.line(c.cmd("RCPT TO:<b@example.net>"), "503 5.5.1 Error: send HELO/EHLO first",
               "session back at its start: EHLO needed again")
        c.ehlo()
        T.line(c.cmd("RCPT TO:<b@example.net>"), "503 5.5.1 Error: need MAIL command",
               "the injected MAIL did not count")
    T.ok(sluice.wait_until(lambda: "sent behind STARTTLS discarded" in d.log_tail(400), 5),
         "the discarded bytes are logged")

with T.case("garbage handshakes are logged and cost nothing else"):
    T.ok(tlslib.tls_handshake_refused(p_imp, b"GET / HTTP/1.0\r\n\r\n"),
         "implicit: an HTTP request is closed")
    with sluice.Conn(d.port) as c:
        c.greet()
        c.ehlo()
        T.code(c.cmd("STARTTLS"), 220, "STARTTLS")
        c.send(b"\x16\x03\x01\x00\x05garbage")
        T.ok(c.wait_closed(5), "a bad ClientHello after STARTTLS is closed")
    T.ok(tlslib.tls_handshake_refused(p_imp, b"\x16\x03\x01\xff\xff" + b"\x00" * 300),
         "implicit: an oversized record is closed")
    log = ""
    sluice.wait_until(lambda: d.log_tail(400).count("TLS handshake failed") >= 3, 5)
    log = d.log_tail(400)
    T.ok(re.search(r"127\.0\.0\.1: TLS handshake failed: http request", log),
         "the log names the client and the reason", log[-800:])
    T.ok(log.count("TLS handshake failed") >= 3, "each failure logged", log[-800:])
    with tlslib.TlsConn(p_imp, ctx, implicit=True) as c:
        T.code(c.greet(), 220, "the daemon still serves TLS")
    with sluice.Conn(d.port) as c:
        T.code(c.greet(), 220, "and plaintext")

T.eq(d.stop(), 0, "daemon stops cleanly")
sluice.finish()
