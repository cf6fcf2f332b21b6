"""
stslib.py - what the MTA-STS tests share: an HTTPS server that serves
policies as mta-sts.DOMAIN would, on port 443 of a loopback address.

  pick_net(nets) -> "127.0.N."
      The first of the /24 prefixes in nets whose .1 can take port 443
      (a policy URL has no port, so the server needs 443 on its own
      address; another test, or a second checkout, may hold one prefix).
      Skips the test (77) when none can: binding 443 needs root.

  PolicyServer(addr, ctx, policies, delays=None, redirects=None)
      A threaded HTTPS server on addr:443 with the ssl.SSLContext ctx
      (tlslib.Certs(...).server_ctx()). It answers
      GET /.well-known/mta-sts.txt for Host mta-sts.DOMAIN with
      policies[DOMAIN] as text/plain (a 404 when DOMAIN is not in it:
      the dict may change while it runs), after delays[DOMAIN] seconds
      if given; redirects[DOMAIN] is a Location it answers 301 with.
      Attributes: gets ({"mta-sts.DOMAIN": GETs so far}; read through
      get(host)). stop() ends it (also at exit).

Every server started here is ended at exit.
"""

import atexit
import contextlib
import http.server
import socket
import threading
import time

import sluice

_live = []


def pick_net(nets):
    err = None
    for net in nets:
        try:
            with socket.socket() as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind((net + "1", 443))
            return net
        except OSError as e:
            err = e
    sluice.skip("cannot bind port 443 on 127.0.x.1 (it needs root): %s" % err)


class _TLSServer(http.server.ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True


class _Handler(http.server.BaseHTTPRequestHandler):
    owner = None                    # the PolicyServer, set per class

    def do_GET(self):
        o = self.owner
        host = (self.headers.get("Host") or "").lower()
        with o.lock:
            o.gets[host] = o.gets.get(host, 0) + 1
        dom = host[len("mta-sts."):] if host.startswith("mta-sts.") else ""
        time.sleep(o.delays.get(dom, 0))
        if dom in o.redirects:
            self.send_response(301)
            self.send_header("Location", o.redirects[dom])
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            return
        body = o.policies.get(dom)
        if self.path != "/.well-known/mta-sts.txt" or body is None:
            self.send_error(404)
            return
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        print("https %s: %s" % (self.owner.addr, fmt % args))


class PolicyServer:
    def __init__(self, addr, ctx, policies, delays=None, redirects=None):
        self.addr = addr
        self.policies = policies
        self.delays = delays if delays is not None else {}
        self.redirects = redirects if redirects is not None else {}
        self.gets = {}
        self.lock = threading.Lock()
        handler = type("PolicyHandler", (_Handler,), {"owner": self})
        self.srv = _TLSServer((addr, 443), handler)
        self.srv.socket = ctx.wrap_socket(self.srv.socket, server_side=True)
        self.srv.socket.settimeout(None)
        threading.Thread(target=self.srv.serve_forever,
                         kwargs={"poll_interval": 0.2}, daemon=True).start()
        _live.append(self)

    def get(self, host, default=None):
        with self.lock:
            return self.gets.get(host, default)

    def stop(self):
        if self in _live:
            _live.remove(self)
            with contextlib.suppress(Exception):
                self.srv.shutdown()
                self.srv.server_close()


@atexit.register
def _cleanup():
    for s in list(_live):
        s.stop()
