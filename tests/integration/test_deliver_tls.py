#!/usr/bin/python3
# timeout: 180
# Description: outbound TLS to aiosmtpd servers (python3-aiosmtpd, with
# its STARTTLS and AUTH support), per route:
#  - may, STARTTLS offered: the message goes over TLS (the server saw the
#    transaction under TLS), the delivery log says "TLSv1.x <cipher>";
#  - may, the handshake fails (a server that only speaks TLS 1.0/1.1): the
#    same host gets the message in plaintext on a new connection, the log
#    says tls "none"; the next message goes in plaintext straight away
#    (the host is remembered), with no second failed handshake;
#  - encrypt, no STARTTLS offered: deferred 4.7.4, nothing reaches the
#    server, the message stays queued;
#  - verify with a name the certificate does not carry: deferred 4.7.5
#    ("hostname mismatch" in tls_verify); with the right name and the
#    CA file: delivered, tls_verify "verified";
#  - several connections to one next hop, one after the other: each later
#    one resumes the TLS session the one before was given (the server
#    sees a resumed handshake; sluiced's shutdown line counts them).
#    Connections opened at once cannot resume (no session exists yet), so
#    each message is sent once the one before is delivered: how many
#    overlap would otherwise depend on how fast the machine is.
import re

import sluice
from sluice import T

import deliverlib as dl
import tlslib

certs = tlslib.Certs(["mx.tls.test"])

tls_srv = dl.Server("tls", smtp_kw={"tls_context": certs.server_ctx()})
bad_srv = dl.Server("badtls", smtp_kw={"tls_context": certs.broken_ctx()})
plain_srv = dl.Server("plain")
ver_srv = dl.Server("verify", smtp_kw={"tls_context": certs.server_ctx()})
res_srv = dl.Server("resume", smtp_kw={"tls_context": certs.server_ctx()})


def route(domain, srv, **kw):
    r = {"domain": domain, "transport": "smtp:[127.0.0.1]:%d" % srv.port,
         "retry": "1s"}
    r.update(kw)
    return r


relay = dl.Relay([
    route("may.test", tls_srv),
    route("broken.test", bad_srv),
    route("encrypt.test", plain_srv, tls="encrypt"),
    route("wrongname.test", ver_srv, tls="verify", tls_name="other.tls.test",
          tls_ca_file=certs.ca),
    route("verify.test", ver_srv, tls="verify", tls_name="mx.tls.test",
          tls_ca_file=certs.ca),
    route("resume.test", res_srv, max_messages_per_connection="1"),
# What a host's handshakes teach (plaintext after a failed one under may,
# the session to resume) is kept per shard: one owner per destination here,
# so that each message, whichever shard accepts it, meets what it learnt.
], delivery={"spread": "false"})
L = relay.dlog


one = relay.send_one


def eq(got, want, what, detail=""):
    """T.eq with more to show when it fails."""
    T.ok(got == want, what, "expected %r, got %r%s" % (want, got,
                                                    "\n" + detail if detail else ""))


final = L.last_for


try:
    with T.case("may: STARTTLS offered, the message goes over TLS"):
        q, data = one("may1", "a@may.test")
        x = final(q)
        eq(x.get("status"), "delivered", "delivered", L.dump())
        T.ok(re.match(r"TLSv1\.[23] \S+$", x.get("tls", "")),
             "the log's tls is the version and the cipher: %r" % x.get("tls"))
        T.ok("tls_verify" not in x, "no verification result under may")
        ms = [m for m in tls_srv.msgs() if m.msgid == "<may1@client.test>"]
        eq([m.tls for m in ms], [True], "the server got it once, under TLS")
        if ms:
            eq(dl.check_tail(ms[0].data, data), None, "the bytes are intact")

    with T.case("may: a failed handshake falls back to plaintext"):
        q, data = one("bad1", "a@broken.test")
        x = final(q)
        eq(x.get("status"), "delivered", "delivered", L.dump())
        eq(x.get("tls"), "none", "the log says no TLS")
        ms = [m for m in bad_srv.msgs() if m.msgid == "<bad1@client.test>"]
        eq([m.tls for m in ms], [False], "the server got it in plaintext")
        eq(len(bad_srv.conns()), 2, "two connections: the failed "
             "handshake, then plaintext")
        T.ok(dl.wait_until(lambda: re.search(r"TLS handshake failed: .*again "
             r"without TLS", relay.log_tail(200)), 5),
             "sluiced says why and that it goes on without TLS",
             relay.log_tail(20))
        # The idle connection closes after idle_keep (1 s): a new one.
        dl.wait_until(lambda: all(c.t_close for c in bad_srv.conns()), 5)
        q, data = one("bad2", "b@broken.test")
        x = final(q)
        eq(x.get("status"), "delivered", "the next one too", L.dump())
        eq(len(bad_srv.conns()), 3, "on one connection: the host is "
             "remembered, no second failed handshake")

    with T.case("encrypt: no STARTTLS offered, deferred 4.7.4"):
        q, _ = one("enc1", "a@encrypt.test")
        x = final(q)
        eq((x.get("status"), x.get("enhanced")), ("deferred", "4.7.4"),
             "deferred with 4.7.4", L.dump())
        T.ok("TLS is required, but was not offered" in x.get("text", ""),
             "the log says why: %r" % x.get("text"))
        eq(plain_srv.count(), 0, "nothing reached the server")
        T.ok(relay.count() >= 1, "the message stays queued")

    with T.case("verify: a certificate for another name is refused"):
        q, _ = one("vw1", "a@wrongname.test")
        x = final(q)
        eq((x.get("status"), x.get("enhanced")), ("deferred", "4.7.5"),
             "deferred with 4.7.5", L.dump())
        eq(x.get("tls_verify"), "hostname mismatch",
             "tls_verify says why")
        eq([m for m in ver_srv.msgs() if m.msgid == "<vw1@client.test>"], [],
             "the server did not get it")

    with T.case("verify: the right name and CA: delivered, verified"):
        q, data = one("vok1", "a@verify.test")
        x = final(q)
        eq(x.get("status"), "delivered", "delivered", L.dump())
        eq(x.get("tls_verify"), "verified", "tls_verify: verified")
        T.ok(x.get("tls", "").startswith("TLSv1."), "over TLS")
        ms = [m for m in ver_srv.msgs() if m.msgid == "<vok1@client.test>"]
        eq([m.tls for m in ms], [True], "the server got it under TLS")

    with T.case("later connections to one next hop resume the session"):
        for i in range(4):
            q = one("res%d" % i, "r%d@resume.test" % i)[0]
            eq(final(q).get("status"), "delivered", "%s delivered" % q,
                 L.dump())
        T.ok(len(res_srv.conns()) >= 4, "a connection per message (%d)"
             % len(res_srv.conns()))
        ms = sorted(res_srv.msgs(), key=lambda m: m.t)
        T.ok(all(m.tls for m in ms), "all under TLS")
        eq([(m.msgid, m.tls_resumed) for m in ms],
           [("<res%d@client.test>" % i, i > 0) for i in range(4)],
           "the server saw a full handshake, then three resumed ones")
finally:
    rc = relay.stop()
T.eq(rc, 0, "sluiced exits 0 on SIGTERM")
with T.case("resumed handshakes are counted"):
    m = re.findall(r"(\d+) TLS handshake\(s\), (\d+) resumed, (\d+) failed",
                   relay.log_tail(400))
    tot = [sum(int(x[i]) for x in m) for i in range(3)]
    T.ok(m and tot[1] >= 3, "at least three resumed handshakes: %r" % (tot,),
         relay.log_tail(20))
sluice.finish()
