#!/usr/bin/python3
# Description: many destinations, as a relay benchmark needs them.
# 1. sluice-bench source --domains 1000 -> sink: every one of the 1,000
#    domains d0.bench.test .. d999.bench.test gets exactly one of the 1,000
#    recipients (round robin), each recipient exactly the address the
#    template names; the source's JSON echoes "domains".
# 2. --domains 50 with 3 recipients per message: 300 recipients, 6 per
#    domain, consecutive recipients of a message in consecutive domains.
# 3. A --rcpt template of one's own with {d} (and {n} wrapping apart).
# 4. One sink listening on 127.0.0.2..127.0.0.9 at once (repeated
#    --listen), a different load to each: the report and the --log count
#    every listener's connections, messages and bytes apart, exactly.
import collections
import re

import sluice
from sluice import T

from benchlib import Sink, g, source

# ------------------------------------------------------------ 1. 1,000 domains

N = 1000
with T.case("--domains %d: %d messages, one recipient each, every domain once" % (N, N)):
    s = Sink()
    try:
        rc, rep, err = source(s.port, "--messages", str(N), "--connections", "8",
                              "--domains", str(N))
    finally:
        src, srep = s.stop()
    T.eq(rc, 0, "source exits 0")
    T.eq((g(rep, "accepted"), g(rep, "domains")), (N, N), "source accepted, domains echoed")
    T.eq(g(srep, "messages"), N, "sink messages")
    msgs, _ = s.log_lines()
    rcpts = [r for m in msgs for r in m.get("rcpt", [])]
    T.eq(len(rcpts), N, "sink got N recipients")
    doms = collections.Counter(r.rpartition("@")[2] for r in rcpts)
    T.eq(sorted(doms), sorted("d%d.bench.test" % i for i in range(N)),
         "the recipients' domains are exactly d0.bench.test .. d999.bench.test")
    T.ok(set(doms.values()) == {1}, "each domain exactly once",
         repr([d for d, c in doms.items() if c != 1][:5]))
    T.eq(sorted(rcpts), sorted("rcpt%d@d%d.bench.test" % (k, k) for k in range(N)),
         "recipient k is rcpt{k}@d{k}.bench.test")

# ------------------------------------------------------------ 2. several recipients

D, M, R = 50, 100, 3
with T.case("--domains %d --recipients %d: %d recipients, %d per domain" % (D, R, M * R, M * R // D)):
    s = Sink()
    try:
        rc, rep, err = source(s.port, "--messages", str(M), "--connections", "4",
                              "--recipients", str(R), "--domains", str(D))
    finally:
        src, srep = s.stop()
    T.eq((rc, g(rep, "accepted")), (0, M), "source exits 0, all accepted")
    msgs, _ = s.log_lines()
    T.eq(len(msgs), M, "sink --log has M messages")
    rcpts = [r for m in msgs for r in m.get("rcpt", [])]
    T.eq(sorted(rcpts), sorted("rcpt%d@d%d.bench.test" % (k, k % D) for k in range(M * R)),
         "recipient k is rcpt{k}@d{k mod 50}.bench.test, k = 0..299")
    doms = collections.Counter(r.rpartition("@")[2] for r in rcpts)
    T.eq((len(doms), set(doms.values())), (D, {M * R // D}), "50 domains, 6 recipients each")

    def dnum(r):
        m = re.search(r"@d(\d+)\.bench\.test$", r)
        return int(m.group(1)) if m else -1
    T.ok(all(len(m["rcpt"]) == R and
             [dnum(r) for r in m["rcpt"]] == [(dnum(m["rcpt"][0]) + i) % D for i in range(R)]
             for m in msgs),
         "a message's recipients are in consecutive domains",
         repr([m.get("rcpt") for m in msgs[:3]]))

# ------------------------------------------------------------ 3. own template

with T.case("--rcpt with {d} and {n}: the template names the domains"):
    s = Sink()
    try:
        rc, rep, err = source(s.port, "--messages", "30", "--connections", "2",
                              "--domains", "3", "--rcpt", "user{n}@host{d}.example",
                              "--rcpt-mod", "5")
    finally:
        src, srep = s.stop()
    T.eq((rc, g(rep, "accepted")), (0, 30), "source exits 0, all accepted")
    msgs, _ = s.log_lines()
    rcpts = collections.Counter(r for m in msgs for r in m.get("rcpt", []))
    want = collections.Counter("user%d@host%d.example" % (k % 5, k % 3) for k in range(30))
    T.eq(rcpts, want, "recipient k is user{k mod 5}@host{k mod 3}.example")

# ------------------------------------------------------------ 4. 8 listeners

ADDRS = ["127.0.0.%d" % i for i in range(2, 10)]
with T.case("one sink on %s..%s at once, a different load on each" % (ADDRS[0], ADDRS[-1])):
    s = Sink(listen=[a + ":0" for a in ADDRS])
    T.eq(sorted(s.ports), sorted(ADDRS), "a listener on each address, each reported on stderr")
    want = {}
    try:
        for i, a in enumerate(ADDRS):
            n, c = 10 * (i + 1), 1 + i % 3
            rc, rep, err = source(s.ports.get(a, 1), "--messages", str(n), "--connections", str(c),
                                  host=a)
            T.eq((rc, g(rep, "accepted")), (0, n), "source to %s: %d accepted" % (a, n))
            want["%s:%d" % (a, s.ports.get(a, 1))] = (c, n)
    finally:
        src, srep = s.stop()
    T.eq(src, 0, "sink exits 0")
    got = {li.get("address"): (li.get("connections"), li.get("messages"))
           for li in g(srep, "listeners") or []}
    T.eq(got, want, "report: connections and messages per listener")
    T.eq(g(srep, "messages"), sum(n for _, n in want.values()), "report: messages in all")
    T.eq(sum(li.get("bytes", 0) for li in g(srep, "listeners") or []), g(srep, "bytes"),
         "listeners' bytes add up to the total")
    msgs, closes = s.log_lines()
    T.eq(collections.Counter(m.get("listener") for m in msgs),
         collections.Counter({a: n for a, (_, n) in want.items()}),
         "--log: each message names the listener it came in on")
    T.eq(collections.Counter(c.get("listener") for c in closes),
         collections.Counter({a: c for a, (c, _) in want.items()}),
         "--log: each close line names its listener")

sluice.finish()
