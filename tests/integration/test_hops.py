#!/usr/bin/python3
# Description: the hop limit (limits.hops, default 50, Postfix's
# hopcount_limit): a message whose header section holds 51 Received:
# fields is refused with `554 5.4.6` at the end of DATA and of the last
# BDAT chunk and is not queued; 50 are accepted and stored intact;
# Received: lines in the body do not count; a lower configured limit holds.
# timeout: 60
import sluice
from sluice import T


def received(n):
    return b"".join(b"Received: from hop%d.example by hop%d.example; "
                    b"Mon, 1 Jan 2024 00:00:00 +0000\r\n" % (i, i + 1)
                    for i in range(n))


def body(nhops, tag):
    return (received(nhops) + b"Subject: %s\r\n\r\n" % tag.encode() +
            received(60) + b"the body may quote many hops\r\n")


TOO_MANY = "554 5.4.6 Error: too many hops"

d = sluice.Daemon()
count = 0

with T.case("50 Received: fields are accepted"):
    c = sluice.connect(d.port)
    b = body(50, "fifty")
    rs, r = sluice.send_message(c, b)
    if sluice.expect_queued(d, r, b, "50-hop message"):
        count += 1
    c.close()

with T.case("51 Received: fields are refused at the end of DATA"):
    c = sluice.connect(d.port)
    T.code(sluice.pipeline(c, b"DATA\r\n"), 354, "DATA")
    c.send(sluice.dot_stuff(body(51, "fifty-one")) + b".\r\n")
    T.line(c.reply(), TOO_MANY, "51 hops: 554 5.4.6")
    T.line(c.cmd("NOOP"), "250 2.0.0 Ok", "the session goes on")
    T.eq(d.count(), count, "the 51-hop message is not queued")
    c.close()

with T.case("51 Received: fields are refused at the last BDAT chunk"):
    c = sluice.connect(d.port)
    b = body(51, "bdat")
    half = len(b) // 2
    T.line(sluice.pipeline(c, b"BDAT %d\r\n" % half + b[:half]),
           "250 2.0.0 Ok: %d octets received" % half, "first chunk")
    c.send(b"BDAT %d LAST\r\n" % (len(b) - half) + b[half:])
    T.line(c.reply(), TOO_MANY, "51 hops over BDAT: 554 5.4.6")
    T.eq(d.count(), count, "the 51-hop BDAT message is not queued")
    c.close()
T.eq(d.stop(), 0, "daemon exits 0")

with T.case("limits.hops=3"):
    d3 = sluice.Daemon("limits.hops=3")
    c = sluice.connect(d3.port)
    b = body(3, "three")
    rs, r = sluice.send_message(c, b)
    T.ok(sluice.qid_of(r), "3 hops with limits.hops=3: queued", str(r))
    T.code(sluice.pipeline(c, b"DATA\r\n"), 354, "DATA")
    c.send(body(4, "four") + b".\r\n")
    T.line(c.reply(), TOO_MANY, "4 hops with limits.hops=3: 554 5.4.6")
    T.eq(d3.count(), 1, "only the 3-hop message is queued")
    c.close()
    T.eq(d3.stop(), 0, "daemon exits 0")

sluice.finish()
