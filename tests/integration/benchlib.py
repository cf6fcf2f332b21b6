#!/usr/bin/python3
"""benchlib: what the sluice-bench integration tests share: running the sink
and the source as subprocesses with JSON reports, killing whatever is left at
exit, and checks of the latency fields both report."""
import atexit
import contextlib
import json
import os
import re
import signal
import subprocess
import time

import sluice
from sluice import T

BENCH = os.path.join(sluice.BIN, "sluice-bench")
if not os.access(BENCH, os.X_OK):
    raise RuntimeError("%s is not built (run make)" % BENCH)

# ------------------------------------------------------------ helpers
procs = []


def _kill_all():
    for p in procs:
        if p.poll() is None:
            p.kill()
            with contextlib.suppress(Exception):
                p.wait(5)


atexit.register(_kill_all)


class Sink:
    """sluice-bench sink on 127.0.0.1:0, or on each of listen (ADDR:PORT
    strings); the ports actually bound are read from its stderr: .ports
    maps each address to its port, .port is the first listener's."""

    def __init__(self, *args, log=True, listen=("127.0.0.1:0",)):
        self.dir = sluice.tmpdir()
        self.log = os.path.join(self.dir, "sink.jsonl") if log else None
        self.out = os.path.join(self.dir, "sink.out")
        self.err = os.path.join(self.dir, "sink.err")
        self.argv = [BENCH, "sink"]
        for a in listen:
            self.argv += ["--listen", a]
        self.argv += ["--json"] + list(args)
        if self.log:
            self.argv += ["--log", self.log]
        print("starting " + " ".join(self.argv))
        with open(self.out, "wb") as o, open(self.err, "wb") as e:
            self.proc = subprocess.Popen(self.argv, stdout=o, stderr=e,
                                         stdin=subprocess.DEVNULL, env=sluice.clean_env())
        procs.append(self.proc)
        self.port = None
        self.ports = {}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            found = re.findall(r"listening on (\d+\.\d+\.\d+\.\d+):(\d+)", self.stderr())
            if len(found) >= len(listen):
                self.ports = {a: int(p) for a, p in found}
                self.port = int(found[0][1])
                break
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        if self.port is None:
            raise RuntimeError("sink did not start: rc %s stderr %r"
                               % (self.proc.poll(), self.stderr()))

    def stderr(self):
        with open(self.err, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self, timeout=10):
        """SIGTERM (if still running), wait; returns (rc, report dict or None)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def wait(self, timeout=20):
        """Waits for the sink to stop by itself (--expect)."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            rc = "killed after %ss" % timeout
        return rc, self.report()

    def report(self):
        with open(self.out, "rb") as f:
            text = f.read().decode("utf-8", "replace")
        try:
            return json.loads(text)
        except ValueError:
            print("sink stdout is not JSON: %r" % text[:2000])
            print("sink stderr: %r" % self.stderr()[-2000:])
            return None

    def log_lines(self):
        """(message lines, close lines) of the --log file."""
        msgs, closes = [], []
        with open(self.log, "rb") as f:
            for ln in f.read().decode("utf-8").splitlines():
                v = json.loads(ln)
                (closes if v.get("event") == "close" else msgs).append(v)
        return msgs, closes


def source(port, *args, timeout=60, host="127.0.0.1"):
    """Runs sluice-bench source --json against host:port; returns (rc,
    report dict or None, stderr)."""
    argv = [BENCH, "source", "--to", "%s:%d" % (host, port), "--json", "--quiet"] + list(args)
    print("running " + " ".join(argv))
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, timeout=timeout, env=sluice.clean_env())
    except subprocess.TimeoutExpired:
        return "timeout after %ss" % timeout, None, ""
    out, err = p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
    try:
        rep = json.loads(out)
    except ValueError:
        print("source stdout is not JSON: %r\nstderr: %r" % (out[:2000], err[-2000:]))
        rep = None
    return p.returncode, rep, err


def g(d, *path):
    """d[path0][path1]..., or None."""
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def check_source_latency(rep, count, what):
    lat = g(rep, "latency_us", "transaction") or {}
    keys = ("count", "p50", "p90", "p99", "p99.9", "max", "mean")
    T.ok(all(isinstance(lat.get(k), (int, float)) for k in keys),
         what + ": source latency_us.transaction has " + ", ".join(keys), repr(lat))
    T.eq(lat.get("count"), count, what + ": source transaction latency count")
    v = [lat.get(k) for k in ("p50", "p90", "p99", "p99.9", "max")]
    T.ok(all(isinstance(x, (int, float)) for x in v) and 0 < v[0] and v == sorted(v),
         what + ": source 0 < p50 <= p90 <= p99 <= p99.9 <= max", repr(v))


def check_sink_latency(rep, count, what):
    lat = g(rep, "latency_ms") or {}
    v = [lat.get(k) for k in ("p50", "p90", "p99", "p99.9", "max")]
    T.ok(all(isinstance(x, (int, float)) for x in v) and v == sorted(v) and v[0] >= 0,
         what + ": sink latency_ms p50 <= p90 <= p99 <= p99.9 <= max", repr(lat))
    T.eq(lat.get("count"), count, what + ": sink latency count (messages with X-Sluice-Bench)")
    T.eq(g(rep, "without_header"), 0, what + ": sink without_header")
