"""
tlslib.py - certificates and TLS contexts for the outbound TLS tests
(test_deliver_tls*.py).

  Certs(names, ips=("127.0.0.1",))
      A private CA (ECDSA P-256, made with `openssl req -x509`) and a
      server certificate it signs for the DNS names `names` and the
      addresses `ips`, in a fresh directory: .ca (the CA's PEM, what
      tls_ca_file takes), .cert and .key (the server's chain and key).
      server_ctx() -> an ssl.SSLContext serving them; broken_ctx() -> one
      that can never agree with sluice (TLS 1.0/1.1 only), for handshakes
      that fail.
  password_file(text, mode=0o600) -> the path of a new file holding text.
"""
import os
import ssl
import subprocess

import sluice


def _openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class Certs:
    def __init__(self, names, ips=("127.0.0.1",)):
        self.dir = sluice.tmpdir()
        j = lambda n: os.path.join(self.dir, n)
        self.ca, self.ca_key = j("ca.pem"), j("ca.key")
        self.cert, self.key = j("server.pem"), j("server.key")
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt",
                 "ec_paramgen_curve:P-256", "-nodes", "-keyout", self.ca_key,
                 "-out", self.ca, "-days", "2", "-subj", "/CN=sluice test CA",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        san = ",".join(["DNS:" + n for n in names] + ["IP:" + a for a in ips])
        ext = j("ext.cnf")
        with open(ext, "w") as f:
            f.write("subjectAltName=%s\nbasicConstraints=CA:FALSE\n"
                    "extendedKeyUsage=serverAuth\n" % san)
        _openssl("req", "-new", "-newkey", "ec", "-pkeyopt",
                 "ec_paramgen_curve:P-256", "-nodes", "-keyout", self.key,
                 "-out", j("server.csr"), "-subj", "/CN=%s" % names[0])
        _openssl("x509", "-req", "-in", j("server.csr"), "-CA", self.ca,
                 "-CAkey", self.ca_key, "-CAcreateserial", "-days", "2",
                 "-extfile", ext, "-out", self.cert)
        # Postfix's smtpd reads them as user postfix.
        os.chmod(self.dir, 0o755)
        for p in (self.cert, self.key, self.ca):
            os.chmod(p, 0o644)

    def server_ctx(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx

    def broken_ctx(self):
        """Offers only what sluice refuses: every handshake fails."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        ctx.set_ciphers("ALL:@SECLEVEL=0")
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        return ctx


def password_file(text, mode=0o600):
    path = os.path.join(sluice.tmpdir(), "password")
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path
