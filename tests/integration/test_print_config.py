#!/usr/bin/python3
# Description: `sluiced --print-config` prints what the file, -o options
# and SLUICE_* variables set (nothing for the embedded default), as
# written ("20M", not bytes), and its output loads back to the same
# configuration; `--print-config --all` adds every default, and the
# values settled at load (hostname, limits.memory); a bad file prints the
# error with file and line, and nothing on standard output. `sluiced -n`
# refuses a dev_redirect without a domain, and warns about a hostname
# that is not fully qualified.
import os
import subprocess

import sluice
from sluice import T

tmp = sluice.tmpdir()


def sluiced(*args, env=None):
    e = sluice.clean_env()
    e.update(env or {})
    p = subprocess.run([sluice.SLUICED] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30, env=e)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


with T.case("the embedded default sets nothing"):
    rc, out, err = sluiced("--print-config")
    T.eq((rc, out), (0, ""), "no keys printed")

conf = os.path.join(tmp, "s.yaml")
with open(conf, "w") as f:
    f.write("hostname: mx.example.org\n"
            "limits:\n  message_size: 20M\n"
            "routes:\n  - domain: example.com\n    transport: \"lmtp:[127.0.0.1]:24\"\n")

with T.case("file, -o and environment, as written"):
    rc, out, err = sluiced("-c", conf, "-o", "dns.timeout=3s", "--print-config",
                           env={"SLUICE_ALLOWED_NETWORKS": "[10.0.0.0/8, \"::1/128\"]"})
    T.eq(rc, 0, "exit 0: " + err)
    T.eq(out, "hostname: mx.example.org\n"
              "allowed_networks: [10.0.0.0/8, \"::1/128\"]\n"
              "limits:\n  message_size: 20M\n"
              "routes:\n  - domain: example.com\n    transport: \"lmtp:[127.0.0.1]:24\"\n"
              "dns:\n  timeout: 3s\n", "exactly the keys set")
    back = os.path.join(tmp, "back.yaml")
    with open(back, "w") as f:
        f.write(out)
    rc2, out2, err2 = sluiced("-c", back, "--print-config")
    T.eq((rc2, out2), (0, out), "the output loads back to the same keys")

with T.case("--all: every key, defaults and settled values"):
    rc, out, err = sluiced("-c", conf, "--print-config", "--all")
    T.eq(rc, 0, "exit 0")
    for line in ("hostname: mx.example.org\n", "  message_size: 20M\n",
                 "  recipients: 1000\n", "  memory: 512M\n", "shutdown_timeout: 30s\n",
                 "  idle_keep: 5s\n", "\n#relay_host: ~\n"):
        T.ok(line in out, "has %r" % line.strip())
    back = os.path.join(tmp, "all.yaml")
    with open(back, "w") as f:
        f.write(out)
    rc2, out2, err2 = sluiced("-c", back, "-n")
    T.eq(rc2, 0, "the --all output is a valid configuration: " + err2)
    rc3, out3, _ = sluiced("-c", back, "--print-config", "--all")
    T.ok(rc3 == 0 and "  message_size: 20M\n" in out3, "and prints the same values")

with T.case("errors: file and line, nothing printed"):
    bad = os.path.join(tmp, "bad.yaml")
    with open(bad, "w") as f:
        f.write("limits:\n  message_size: lots\n")
    rc, out, err = sluiced("-c", bad, "--print-config")
    T.eq((rc, out), (2, ""), "exit 2, no output")
    T.ok(bad + ":2" in err, "error names file and line: " + err)
    rc, out, err = sluiced("--all")
    T.eq(rc, 2, "--all alone is a usage error")

with T.case("-n: dev_redirect needs a domain; hostname should be qualified"):
    rc, out, err = sluiced("-o", "dev_redirect=root", "-o", "hostname=mx.example.org", "-n")
    T.eq(rc, 2, "dev_redirect: root refused")
    T.ok("dev_redirect" in err and "domain" in err, "says why: " + err)
    rc, out, err = sluiced("-o", "dev_redirect=dev@example.org", "-o", "hostname=mx.example.org", "-n")
    T.eq((rc, out.strip(), err), (0, "configuration OK", ""), "a full address passes quietly")
    rc, out, err = sluiced("-o", "hostname=localhost", "-n")
    T.eq((rc, out.strip()), (0, "configuration OK"), "a bare hostname passes")
    T.ok("warning" in err and "fully qualified" in err, "with a warning: " + err)

sluice.finish()
