#!/usr/bin/python3
# Description: sluice-bench sink misbehaves on request and sluice-bench source
# counts it: a reply mix at RCPT and after DATA (source refusals by stage ==
# sink `refused` counts, accepted + refused == sent), 421 greetings (source 421
# errors == sink refused_connect, every message still accepted), a
# --max-connections cap (sink max_concurrent within it, source 421 errors ==
# sink refused_cap), --drop-data (source lost == sink dropped without
# pipelining; each drop is one `closed` error; the source survives drops of a
# session's last message after its pipelined QUIT, exit 0), and a --delay
# rcpt:20ms that shows in the source's transaction p50.

import sluice
from sluice import T

from benchlib import Sink, g, source




def run_pair(sink_args, source_args):
    s = Sink(*sink_args)
    try:
        rc, rep, err = source(s.port, *source_args)
    finally:
        src, srep = s.stop()
    T.eq(rc, 0, "source exits 0")
    T.eq(src, 0, "sink exits 0")
    if rep is not None and srep is not None:
        print("source: sent %r accepted %r lost %r tempfail %r permfail %r recipients %r connections %r"
              % (rep.get("sent"), rep.get("accepted"), rep.get("lost"), rep.get("tempfail"),
                 rep.get("permfail"), rep.get("recipients_detail"), rep.get("connections_detail")))
        print("sink: messages %r refused %r dropped %r connections %r protocol_errors %r"
              % (srep.get("messages"), srep.get("refused"), srep.get("dropped"),
                 srep.get("connections"), srep.get("protocol_errors")))
    return s, rep or {}, srep or {}


def balance(rep, n, what=""):
    """sent == n == accepted + tempfail + permfail + lost, nothing unfinished."""
    if not rep:
        return      # no report: already failed ("source exits 0")
    parts = [g(rep, "accepted"), g(rep, "tempfail", "total"), g(rep, "permfail", "total"), g(rep, "lost")]
    T.eq(g(rep, "sent"), n, what + "source sent == %d" % n)
    T.ok(all(isinstance(p, int) for p in parts) and sum(parts) == n, what +
         "accepted + tempfail + permfail + lost == sent", repr(parts))
    T.eq(g(rep, "unfinished"), 0, what + "nothing unfinished")
    for k in ("tempfail", "permfail"):
        d = g(rep, k) or {}
        T.eq(sum(d.get(st, 0) for st in ("mail", "rcpt", "data", "end_of_data")), d.get("total"),
             what + k + " stages add up to its total")


N = 1000
with T.case("--reply rcpt:451=20%,data:550=10% --seed 1, 1000 messages"):
    s, rep, srep = run_pair(["--reply", "rcpt:451=20%,data:550=10%", "--seed", "1"],
                            ["--messages", str(N), "--connections", "10"])
    ref = g(srep, "refused") or {}
    T.eq(sorted(ref), ["data:550", "rcpt:451"], "sink refused keys")
    T.ok(150 <= ref.get("rcpt:451", 0) <= 250 and 40 <= ref.get("data:550", 0) <= 120,
         "refusal shares near 20% and 10% x 80%", repr(ref))
    T.eq(g(rep, "tempfail", "rcpt"), ref.get("rcpt:451"), "source tempfail.rcpt == sink rcpt:451")
    T.eq(g(rep, "permfail", "end_of_data"), ref.get("data:550"), "source permfail.end_of_data == sink data:550")
    T.eq((g(rep, "tempfail", "rcpt") or 0) + (g(rep, "permfail", "total") or 0), g(srep, "refused_total"),
         "source tempfail.rcpt + permfail == sink refused_total")
    T.eq((g(rep, "tempfail", "total"), g(rep, "permfail", "total")),
         (ref.get("rcpt:451"), ref.get("data:550")), "no refusal counted at another stage")
    T.eq((g(rep, "accepted") or 0) + (g(srep, "refused_total") or 0), N, "accepted + sink refused == sent")
    T.eq(g(rep, "accepted"), g(srep, "messages"), "source accepted == sink messages")
    T.eq(g(rep, "lost"), 0, "nothing lost")
    balance(rep, N)
    T.eq(g(rep, "recipients_detail", "refused_4xx"), ref.get("rcpt:451"),
         "source recipients_detail.refused_4xx == sink rcpt:451")
    T.ok(str(g(rep, "first_refusal") or "").startswith(("rcpt: 451 ", "end_of_data: 550 ")),
         "first_refusal quotes an injected reply", repr(g(rep, "first_refusal")))
    msgs, closes = s.log_lines()
    T.eq(len(msgs), g(srep, "messages"), "sink log lines == sink messages")
    T.eq(len({m.get("bench_id") for m in msgs}), len(msgs), "logged bench_ids unique")

    # Same seed, same dialogue on one connection: the same replies.
    counts = []
    for k in range(2):
        s, rep, srep = run_pair(["--reply", "rcpt:451=20%,data:550=10%", "--seed", "1"],
                                ["--messages", "300", "--connections", "1"])
        counts.append((g(rep, "accepted"), g(rep, "tempfail", "rcpt"), g(rep, "permfail", "end_of_data"),
                       g(srep, "refused")))
    T.eq(counts[0], counts[1], "one connection, --seed 1 twice: identical refusals")

with T.case("--reply rcpt:451=20%,rcpt:550=10%, 2 recipients per message"):
    s, rep, srep = run_pair(["--reply", "rcpt:451=20%,rcpt:550=10%", "--seed", "3"],
                            ["--messages", str(N), "--connections", "10", "--recipients", "2"])
    ref = g(srep, "refused") or {}
    rd = g(rep, "recipients_detail") or {}
    T.eq((rd.get("refused_4xx"), rd.get("refused_5xx")), (ref.get("rcpt:451"), ref.get("rcpt:550")),
         "source recipients refused 4xx, 5xx == sink rcpt:451, rcpt:550")
    failed = (g(rep, "tempfail", "rcpt") or 0) + (g(rep, "permfail", "rcpt") or 0)
    T.ok(failed > 0, "some transactions had both recipients refused", repr(failed))
    T.eq((g(rep, "accepted") or 0) + failed, N, "accepted + refused at rcpt == sent")
    T.eq(g(rep, "accepted"), g(srep, "messages"), "source accepted == sink messages")
    msgs, closes = s.log_lines()
    T.eq(sum(len(m.get("rcpt", [])) for m in msgs), 2 * N - (ref.get("rcpt:451", 0) + ref.get("rcpt:550", 0)),
         "recipients logged == 2N - refused recipients")
    T.eq(g(srep, "protocol_errors"), failed, "sink answered DATA without recipients (554) once per failed transaction")
    balance(rep, N)

with T.case("--reply connect:421=30%: 421 greetings counted, every message accepted"):
    NC = 500
    s, rep, srep = run_pair(["--reply", "connect:421=30%", "--seed", "2"],
                            ["--messages", str(NC), "--connections", "5", "--per-connection", "5"])
    cd = g(rep, "connections_detail") or {}
    sc = g(srep, "connections") or {}
    T.ok((sc.get("refused_connect") or 0) >= 10, "the sink refused some greetings", repr(sc))
    T.eq(cd.get("421"), sc.get("refused_connect"), "source 421 errors == sink refused_connect")
    T.eq(g(srep, "refused"), {"connect:421": sc.get("refused_connect")}, "sink refused == {connect:421: N}")
    T.eq(cd.get("errors"), cd.get("421"), "every source connection error is a 421")
    T.eq(cd.get("opened"), sc.get("accepted"), "source opened == sink connections accepted")
    T.eq(cd.get("sessions"), (sc.get("accepted") or 0) - (sc.get("refused_connect") or 0),
         "source sessions == sink accepted - refused_connect")
    T.eq((g(rep, "accepted"), g(srep, "messages")), (NC, NC), "all messages accepted (source, sink)")
    T.ok(str(g(rep, "first_connection_error") or "").startswith("421"),
         "first_connection_error is the 421", repr(g(rep, "first_connection_error")))
    balance(rep, NC)

with T.case("--max-connections 2 against 5 source connections"):
    NM = 1000
    s, rep, srep = run_pair(["--max-connections", "2", "--delay", "data:1ms"],
                            ["--messages", str(NM), "--connections", "5"])
    cd = g(rep, "connections_detail") or {}
    sc = g(srep, "connections") or {}
    T.ok(isinstance(sc.get("max_concurrent"), int) and sc["max_concurrent"] <= 2,
         "sink max_concurrent <= 2", repr(sc))
    T.ok((sc.get("refused_cap") or 0) >= 3, "the sink refused connections over the cap", repr(sc))
    T.eq(cd.get("421"), sc.get("refused_cap"), "source 421 errors == sink refused_cap")
    T.eq(cd.get("errors"), cd.get("421"), "every source connection error is a 421")
    T.eq(cd.get("opened"), (sc.get("accepted") or 0) + (sc.get("refused_cap") or 0),
         "source opened == sink accepted + refused_cap")
    T.eq(cd.get("sessions"), 2, "2 sessions worked")
    T.eq((g(rep, "accepted"), g(srep, "messages")), (NM, NM), "all messages accepted (source, sink)")
    T.ok("too many connections" in str(g(rep, "first_connection_error")),
         "first_connection_error quotes the cap's 421", repr(g(rep, "first_connection_error")))
    T.eq([li.get("refused_cap") for li in g(srep, "listeners") or []], [sc.get("refused_cap")],
         "listener refused_cap")
    balance(rep, NM)

for pipe in ("off", "on"):
    with T.case("--drop-data 5%%, pipelining %s" % pipe):
        ND = 1000
        s, rep, srep = run_pair(["--drop-data", "5%", "--seed", "4"],
                                ["--messages", str(ND), "--connections", "5", "--pipelining", pipe])
        if not rep:
            continue    # no report (crashed): already failed
        cd = g(rep, "connections_detail") or {}
        dropped = g(srep, "dropped")
        T.ok(isinstance(dropped, int) and 20 <= dropped <= 90, "the sink dropped about 5%", repr(dropped))
        T.eq(cd.get("errors"), dropped, "one source connection error per drop")
        T.eq((cd.get("closed") or 0) + (cd.get("reset") or 0), dropped, "the errors are closed/reset")
        lost = g(rep, "lost")
        if pipe == "off":
            T.eq(lost, dropped, "source lost == sink dropped")
        else:
            # With pipelining the next transaction is already under way when
            # the connection goes: it is lost too (docs: "transactions in
            # flight on a connection that failed").
            T.ok(isinstance(lost, int) and dropped <= lost <= 2 * dropped,
                 "dropped <= source lost <= 2 x dropped", "lost %r dropped %r" % (lost, dropped))
        T.eq(g(rep, "accepted"), g(srep, "messages"), "source accepted == sink messages")
        T.eq((g(rep, "accepted") or 0) + (lost or 0), ND, "accepted + lost == sent")
        T.eq(cd.get("opened"), g(srep, "connections", "accepted"), "source opened == sink connections accepted")
        # A connection dropped after the last transaction was taken is not
        # reconnected.
        T.ok(isinstance(dropped, int) and dropped < (cd.get("opened") or 0) <= 5 + dropped,
             "dropped < source opened <= 5 + dropped (a reconnect per drop while work remains)",
             "opened %r dropped %r" % (cd.get("opened"), dropped))
        balance(rep, ND)

with T.case("--drop-data 30%, 20 connections: drops after the source pipelined its QUIT"):
    # With pipelining, a session's last message, its dot and QUIT leave in
    # one write; a drop there is still a connection error and a lost
    # transaction, not a normal end of session. 3 runs: the last messages of
    # 20 sessions are each dropped with 30% chance.
    for k in range(3):
        s, rep, srep = run_pair(["--drop-data", "30%", "--seed", str(10 + k)],
                                ["--messages", "200", "--connections", "20"])
        if not rep:
            continue    # no report (crashed): already failed
        cd = g(rep, "connections_detail") or {}
        dropped = g(srep, "dropped")
        T.eq(g(rep, "accepted"), g(srep, "messages"), "run %d: source accepted == sink messages" % k)
        T.eq(cd.get("errors"), dropped, "run %d: one source connection error per drop" % k)
        lost = g(rep, "lost")
        T.ok(isinstance(lost, int) and isinstance(dropped, int) and dropped <= lost <= 2 * dropped,
             "run %d: dropped <= source lost <= 2 x dropped" % k, "lost %r dropped %r" % (lost, dropped))
        balance(rep, 200, "run %d: " % k)

with T.case("--delay rcpt:20ms: source transaction p50 >= 20 ms"):
    s, rep, srep = run_pair(["--delay", "rcpt:20ms"], ["--messages", "100", "--connections", "4"])
    lat = g(rep, "latency_us", "transaction") or {}
    T.eq((g(rep, "accepted"), lat.get("count")), (100, 100), "100 accepted, 100 latencies")
    # bench_hist is accurate to 1%.
    T.ok(isinstance(lat.get("p50"), int) and lat["p50"] >= 20000 * 0.99, "transaction p50 >= 20 ms",
         repr(lat))
    T.ok(isinstance(lat.get("p50"), int) and lat["p50"] < 500000, "transaction p50 < 500 ms (sanity)",
         repr(lat))
    T.ok(g(rep, "elapsed_s") is not None and g(rep, "elapsed_s") >= 100 / 4 * 0.02 * 0.95,
         "elapsed >= 25 transactions x 20 ms per connection", repr(g(rep, "elapsed_s")))
    T.ok(g(rep, "latency_us", "connect_greeting", "p50") < 20000, "the greeting is not delayed",
         repr(g(rep, "latency_us", "connect_greeting")))

sluice.finish()
