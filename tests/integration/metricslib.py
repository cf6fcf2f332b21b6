"""
metricslib.py - what the status and metrics tests share: a raw HTTP
client for the metrics endpoint, a strict reader of the Prometheus text
format, promtool, and `sluicectl status --json`.

  http(port, request_bytes, timeout=5) -> (status, headers dict (lower-case
      names), body bytes) after the server closes; status None when the
      connection closed without a status line.
  get_metrics(port) -> (text, samples) where samples maps
      (name, frozenset of (label, value))) -> float; raises on a non-200.
  parse(text) -> samples, after checking the text strictly (HELP and TYPE
      once per family and before its samples, samples of a family
      together, names and label values well formed, histogram buckets
      rising to le="+Inf" equal to _count); raises ValueError with the
      line at fault.
  sample(samples, name, **labels) -> the value or None.
  promtool(text) -> (rc, output), or None when promtool is not installed.
  status(daemon) -> the parsed `sluicectl status --json` document.
"""

import json
import math
import re
import shutil
import socket
import subprocess
import time

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
SAMPLE_RE = re.compile(r"^(%s)(\{(.*)\})? (\S+)$" % NAME)
LABEL_RE = re.compile(r'(%s)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)' % LABEL)


def http(port, request, timeout=5.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    data = b""
    try:
        if request:
            s.sendall(request)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"^HTTP/1\.1 (\d{3}) ", lines[0]) if lines else None
    if not m:
        return None, {}, data
    hdrs = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return int(m.group(1)), hdrs, body


def _unescape(v):
    return v.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")


def parse(text):
    if not text.endswith("\n"):
        raise ValueError("text does not end with a newline")
    fams = {}                       # name -> {"type", "help", "done"}
    samples = {}
    cur = None
    hist = {}

    def family_of(name):
        for sfx in ("_bucket", "_sum", "_count"):
            base = name[:-len(sfx)]
            if name.endswith(sfx) and fams.get(base, {}).get("type") == "histogram":
                return base
        return name

    for ln in text[:-1].split("\n"):
        if ln.startswith("# HELP ") or ln.startswith("# TYPE "):
            parts = ln.split(" ", 3)
            if len(parts) != 4 or not re.fullmatch(NAME, parts[2]) or not parts[3]:
                raise ValueError("bad comment line: %r" % ln)
            f = fams.setdefault(parts[2], {})
            if f.get("done") or parts[2] in samples_families(samples):
                raise ValueError("HELP/TYPE after samples: %r" % ln)
            key = "help" if parts[1] == "HELP" else "type"
            if key in f:
                raise ValueError("second %s: %r" % (parts[1], ln))
            if key == "type" and parts[3] not in ("counter", "gauge", "histogram",
                                                  "summary", "untyped"):
                raise ValueError("bad type: %r" % ln)
            f[key] = parts[3]
            continue
        if ln.startswith("#") or not ln:
            raise ValueError("unexpected line: %r" % ln)
        m = SAMPLE_RE.match(ln)
        if not m:
            raise ValueError("bad sample line: %r" % ln)
        name, _, lbl, val = m.groups()
        labels = []
        if lbl is not None:
            pos = 0
            while pos < len(lbl):
                lm = LABEL_RE.match(lbl, pos)
                if not lm:
                    raise ValueError("bad labels: %r" % ln)
                labels.append((lm.group(1), _unescape(lm.group(2))))
                pos = lm.end()
            if len({k for k, _ in labels}) != len(labels):
                raise ValueError("repeated label: %r" % ln)
        v = float(val)                      # raises on a bad value
        fam = family_of(name)
        f = fams.get(fam)
        if f is None or "type" not in f or "help" not in f:
            raise ValueError("sample before HELP/TYPE: %r" % ln)
        if cur is not None and cur != fam:
            fams[cur]["done"] = True
        if f.get("done"):
            raise ValueError("samples of %s not together: %r" % (fam, ln))
        cur = fam
        if f["type"] == "counter" and (v < 0 or math.isnan(v)):
            raise ValueError("bad counter value: %r" % ln)
        key = (name, frozenset(labels))
        if key in samples:
            raise ValueError("repeated sample: %r" % ln)
        samples[key] = v
        if f["type"] == "histogram":
            h = hist.setdefault(fam, {"le": -math.inf, "last": 0.0, "inf": None})
            d = dict(labels)
            if name.endswith("_bucket"):
                le = float(d["le"])
                if le <= h["le"] or v < h["last"]:
                    raise ValueError("buckets do not rise: %r" % ln)
                h["le"], h["last"] = le, v
                if math.isinf(le):
                    h["inf"] = v
            elif name.endswith("_count"):
                if h["inf"] != v:
                    raise ValueError("_count is not the +Inf bucket: %r" % ln)
    for name, f in fams.items():
        if "type" not in f or "help" not in f:
            raise ValueError("family %s lacks HELP or TYPE" % name)
    return samples


def samples_families(samples):
    return {k[0] for k in samples}


def sample(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


def get_metrics(port, timeout=10.0):
    st, hdrs, body = http(port, b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                b"Accept: text/plain\r\n\r\n", timeout)
    if st != 200:
        raise RuntimeError("GET /metrics: %s %r" % (st, body[:200]))
    text = body.decode("utf-8")
    if int(hdrs.get("content-length", -1)) != len(body):
        raise RuntimeError("Content-Length %s, body %d bytes"
                           % (hdrs.get("content-length"), len(body)))
    return text, parse(text)


def promtool(text):
    tool = shutil.which("promtool")
    if tool is None:
        return None
    p = subprocess.run([tool, "check", "metrics"], input=text.encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    return p.returncode, p.stdout.decode("utf-8", "replace")


def status(daemon):
    rc, out, err = daemon.ctl("status", "--json")
    if rc != 0:
        raise RuntimeError("sluicectl status --json: rc %d err %r" % (rc, err))
    return json.loads(out)
