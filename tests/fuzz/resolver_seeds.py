#!/usr/bin/env python3
# resolver_seeds.py - writes the seed inputs of fuzz_resolver into
# tests/fuzz/corpus/fuzz_resolver/ (run from anywhere; the files are
# committed, this is how they were made).
#
# Description: each seed is the header fuzz_resolver.c describes (flags,
# destroy step, one byte per lookup) and then one chunk per query, in the
# order the resolver sends them: an action byte, the answer's flags and
# AN/NS/AR counts, and its records, whose names may point at the question
# (offset 12, 0xC00C) or at a name earlier in the records.
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus",
                   "fuzz_resolver")
Q = 12  # where the question's name starts in every answer


def name(text):
    out = b""
    for label in text.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def ptr(off):
    return struct.pack(">H", 0xC000 | off)


class Answer:
    """Records after a question of qlen octets (name + type + class)."""

    def __init__(self, qname, flags=0x8180, rcode=0, action=0):
        self.qlen = len(name(qname)) + 4
        self.flags = flags | rcode
        self.action = action
        self.sections = [[], [], []]
        self.body = b""

    def offset(self):
        return Q + self.qlen + len(self.body)

    def rr(self, sec, owner, rtype, rdata, ttl=300):
        rec = owner + struct.pack(">HHIH", rtype, 1, ttl, len(rdata)) + rdata
        self.sections[sec].append(rec)
        self.body += rec

    def chunk(self):
        counts = struct.pack(">HHH", *(len(s) for s in self.sections))
        return (bytes([self.action]) + struct.pack(">H", self.flags) +
                counts + self.body)


A, MX, CNAME, SOA, AAAA, TLSA = 1, 15, 5, 6, 28, 52
AD = 0x0020  # authenticated data: what a validating resolver sets


def mx_rdata(pref, host_bytes):
    return struct.pack(">H", pref) + host_bytes


def soa(ans):
    ans.rr(1, ptr(Q), SOA, name("ns.test") + name("h.test") +
           struct.pack(">IIIII", 1, 2, 3, 4, 300))


def write(fname, header, chunks):
    with open(os.path.join(OUT, fname), "wb") as f:
        f.write(bytes(header) + b"\xfe".join(chunks))


def mx_two_hosts():
    # MX example.test: 10 mx1.example.test, 20 mx2 (compressed on the
    # question); A and AAAA of each.
    m = Answer("example.test")
    m.rr(0, ptr(Q), MX, mx_rdata(10, b"\x03mx1" + ptr(Q)))
    m.rr(0, ptr(Q), MX, mx_rdata(20, b"\x03mx2" + ptr(Q)))
    a1 = Answer("mx1.example.test")
    a1.rr(0, ptr(Q), A, bytes([192, 0, 2, 1]))
    aaaa1 = Answer("mx1.example.test")
    aaaa1.rr(0, ptr(Q), AAAA, bytes.fromhex("20010db8000000000000000000000001"))
    a2 = Answer("mx2.example.test")
    a2.rr(0, ptr(Q), A, bytes([192, 0, 2, 2]))
    aaaa2 = Answer("mx2.example.test")
    soa(aaaa2)
    # 1 lookup, MX, cache on, its callback asks again
    write("mx-two-hosts", [0x04, 0, 0x08 | 0x10],
          [m.chunk(), a1.chunk(), aaaa1.chunk(), a2.chunk(), aaaa2.chunk()])


def cname_chain():
    # A of a.test: CNAME b.test, b.test A 198.51.100.7; AAAA NODATA.
    a = Answer("a.test")
    target = a.offset() + 12  # the CNAME's rdata, after owner and fixed part
    a.rr(0, ptr(Q), CNAME, b"\x01b\x04test\x00")
    a.rr(0, ptr(target), A, bytes([198, 51, 100, 7]))
    aaaa = Answer("a.test")
    soa(aaaa)
    write("cname-a", [0x00, 0, 0x02], [a.chunk(), aaaa.chunk()])


def truncated_then_tcp():
    # MX of b.test truncated over UDP (TC), answered over TCP; null MX.
    tc = Answer("b.test", action=0x04)
    full = Answer("b.test")
    full.rr(0, ptr(Q), MX, mx_rdata(0, b"\x00"))
    write("tc-null-mx", [0x01, 0, 0x06 | 0x08], [tc.chunk(), full.chunk()])


def nxdomain_implicit():
    # Two lookups: NXDOMAIN for the MX of x.y.z.test, NODATA for the MX
    # of c-1.test (implicit MX): A 203.0.113.9, AAAA never answered.
    nx = Answer("x.y.z.test", rcode=3)
    soa(nx)
    nodata = Answer("c-1.test")
    soa(nodata)
    a = Answer("c-1.test")
    a.rr(0, ptr(Q), A, bytes([203, 0, 113, 9]))
    aaaa = Answer("c-1.test", action=0x02)  # no answer: times out
    write("nx-implicit", [0x12, 0, 0x04 | 0x08, 0x07 | 0x08],
          [nx.chunk(), nodata.chunk(), a.chunk(), aaaa.chunk()])


def many_over_tcp():
    # MX of a.test: ten hosts; every address query truncated over UDP, so
    # more queries want TCP than there are connections (some wait); over
    # TCP, A answers for even hosts, the rest held open unanswered.
    m = Answer("a.test")
    for i in range(10):
        m.rr(0, ptr(Q), MX, mx_rdata(10 + i, bytes([2]) + b"h%d" % i + ptr(Q)))
    chunks = [m.chunk()]
    chunks += [Answer("h%d.a.test" % (i // 2), action=0x04).chunk()
               for i in range(20)]
    for i in range(20):
        if i % 2 == 0:
            a = Answer("h%d.a.test" % (i // 2))
            a.rr(0, ptr(Q), A, bytes([192, 0, 2, 10 + i]))
            chunks.append(a.chunk())
        else:
            chunks.append(Answer("h%d.a.test" % (i // 2), action=0x02).chunk())
    write("tcp-many", [0x02, 0, 0x02 | 0x08], chunks)


def dane_tlsa():
    # DNSSEC on: MX of example.test, 10 mx1 and 20 mx2, every answer with
    # AD; mx1's TLSA (_25._tcp.mx1.example.test) 3 1 1 and a PKIX-EE
    # record; mx2's TLSA query SERVFAIL (bogus); the callback asks again.
    m = Answer("example.test", flags=0x8180 | AD)
    m.rr(0, ptr(Q), MX, mx_rdata(10, b"\x03mx1" + ptr(Q)))
    m.rr(0, ptr(Q), MX, mx_rdata(20, b"\x03mx2" + ptr(Q)))
    chunks = [m.chunk()]
    for h in ("mx1", "mx2"):
        a = Answer("%s.example.test" % h, flags=0x8180 | AD)
        a.rr(0, ptr(Q), A, bytes([192, 0, 2, 1 if h == "mx1" else 2]))
        aaaa = Answer("%s.example.test" % h, flags=0x8180 | AD)
        soa(aaaa)
        chunks += [a.chunk(), aaaa.chunk()]
    t = Answer("_25._tcp.mx1.example.test", flags=0x8180 | AD)
    t.rr(0, ptr(Q), TLSA, bytes([3, 1, 1]) + bytes(range(32)))
    t.rr(0, ptr(Q), TLSA, bytes([1, 1, 1]) + bytes(32))
    chunks.append(t.chunk())
    chunks.append(Answer("_25._tcp.mx2.example.test", rcode=2).chunk())
    write("dane-tlsa", [0x40 | 0x04, 0, 0x08 | 0x10 | 0x20], chunks)
    # The same under validate (trust anchor: example.test's DS): unsigned
    # answers, so sluice asks for the DS sets that could prove them
    # insecure; those queries get what follows (nothing: they time out).
    write("validate-unsigned", [0x80 | 0x04, 0, 0x08 | 0x20], chunks)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    mx_two_hosts()
    cname_chain()
    truncated_then_tcp()
    nxdomain_implicit()
    many_over_tcp()
    dane_tlsa()
