#!/usr/bin/python3
# timeout: 180
# Description: relaying through a provider with credentials, as smarthost
# users do (aiosmtpd servers with an authenticator):
#  - relay_host on a submission port with relay_tls: encrypt and relay_auth
#    {user, password_file}: STARTTLS, then AUTH (the server takes AUTH only
#    under TLS, auth_require_tls), the message arrives under TLS from the
#    right user, the delivery log says TLS;
#  - a route with tls: implicit (port 465 style, TLS from the first byte)
#    and auth: delivered the same way;
#  - a server that offers AUTH without STARTTLS: the password is not sent,
#    the message is deferred (4.7.0, "not sent in plaintext") and stays
#    queued; a route with auth_insecure: true to that server delivers;
#  - a wrong password: 535 from the server, deferred (never bounced).

import sluice
from sluice import T

import deliverlib as dl
import tlslib
from aiosmtpd.smtp import AuthResult

certs = tlslib.Certs(["smtp.provider.test"])
USERS = {b"apikey": b"s3cr:et pass", b"plain": b"pw"}
logins = []


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = USERS.get(auth_data.login) == auth_data.password
    logins.append((auth_data.login, mechanism, ok))
    return AuthResult(success=ok, handled=False, auth_data=auth_data)


sub = dl.Server("submission", smtp_kw={
    "tls_context": certs.server_ctx(), "authenticator": authenticator,
    "auth_require_tls": True, "auth_required": True})
smtps = dl.Server("smtps", ssl_context=certs.server_ctx(), smtp_kw={
    "authenticator": authenticator, "auth_require_tls": False,
    "auth_required": True})
noTLS = dl.Server("notls", smtp_kw={
    "authenticator": authenticator, "auth_require_tls": False,
    "auth_required": True})
wrong = dl.Server("wrongpw", smtp_kw={
    "tls_context": certs.server_ctx(), "authenticator": authenticator,
    "auth_require_tls": True, "auth_required": True})

pw = tlslib.password_file("s3cr:et pass\n")
relay = dl.Relay([
    {"domain": "implicit.test", "transport": "smtp:[127.0.0.1]:%d" % smtps.port,
     "tls": "implicit", "auth": "apikey:s3cr:et pass", "retry": "1s"},
    {"domain": "plain.test", "transport": "smtp:[127.0.0.1]:%d" % noTLS.port,
     "auth": "plain:pw", "retry": "1s"},
    {"domain": "insecure.test", "transport": "smtp:[127.0.0.1]:%d" % noTLS.port,
     "auth": "plain:pw", "auth_insecure": "true", "retry": "1s"},
    {"domain": "wrongpw.test", "transport": "smtp:[127.0.0.1]:%d" % wrong.port,
     "tls": "encrypt", "auth": "apikey:nope", "retry": "1s"},
], extra="relay_host: \"[127.0.0.1]:%d\"\nrelay_tls: encrypt\n"
         "relay_auth: {user: apikey, password_file: \"%s\"}" % (sub.port, pw))
L = relay.dlog


one = relay.send_one


final = L.last_for


def got(srv, tag):
    return srv.tagged(tag)


try:
    with T.case("relay_host with STARTTLS and AUTH from a password file"):
        q, data = one("sub1", "someone@anywhere.example")
        x = final(q)
        T.ok(x.get("status") == "delivered", "delivered", L.dump())
        T.ok(x.get("tls", "").startswith("TLSv1."), "over TLS: %r" % x.get("tls"))
        ms = got(sub, "sub1")
        T.eq([(m.tls, m.login) for m in ms], [(True, b"apikey")],
             "the provider got it once, under TLS, from apikey")
        if ms:
            T.eq(dl.check_tail(ms[0].data, data), None, "the bytes are intact")

    with T.case("implicit TLS (465) with AUTH"):
        q, data = one("imp1", "a@implicit.test")
        x = final(q)
        T.ok(x.get("status") == "delivered", "delivered", L.dump())
        T.ok(x.get("tls", "").startswith("TLSv1."), "over TLS: %r" % x.get("tls"))
        T.eq([(m.tls, m.login) for m in got(smtps, "imp1")], [(True, b"apikey")],
             "the server got it under TLS from apikey")

    with T.case("no AUTH over plaintext unless the route says so"):
        q, _ = one("pl1", "a@plain.test")
        x = final(q)
        T.ok((x.get("status"), x.get("enhanced")) == ("deferred", "4.7.0"),
             "deferred with 4.7.0", L.dump())
        T.ok("not sent in plaintext" in x.get("text", ""),
             "the log says why: %r" % x.get("text"))
        T.eq([l for l in logins if l[0] == b"plain"], [],
             "the server never saw the password")
        T.eq(got(noTLS, "pl1"), [], "nor the message")
        q, _ = one("ins1", "a@insecure.test")
        x = final(q)
        T.ok(x.get("status") == "delivered", "auth_insecure: delivered", L.dump())
        T.eq([(m.tls, m.login) for m in got(noTLS, "ins1")], [(False, b"plain")],
             "in plaintext, from plain")
        T.ok(relay.count() >= 1, "the refused one stays queued")

    with T.case("a wrong password defers, never bounces"):
        q, _ = one("wr1", "a@wrongpw.test")
        x = final(q)
        T.ok(x.get("status") == "deferred" and str(x.get("code", "")).startswith("4"),
             "deferred with a 4xx: %r %r" % (x.get("code"), x.get("text")),
             L.dump())
        T.ok("authentication failed" in x.get("text", ""), "the log says why")
finally:
    rc = relay.stop()
T.eq(rc, 0, "sluiced exits 0 on SIGTERM")
sluice.finish()
