#!/usr/bin/python3
# Description: started as root with `user: sluice`, sluiced binds, opens
# and recovers its spool, then runs as that user: every uid and gid in
# /proc/PID/status is the user's (none 0), the spool and the delivery log
# are the user's, and mail flows end to end (accepted, queued, delivered to
# a local SMTP server, logged), also after a restart on the same spool. A
# user that does not exist stops the start (exit 2) with an error naming
# it; a spool the user cannot reach stops it naming the spool and user;
# `user: root` keeps root. The test creates the system user `sluice` if
# it is missing (as `make test` does).
# timeout: 120
import os
import subprocess
import time

import sluice
from sluice import T

import deliverlib as dl

USER = "sluice"
pw = sluice.system_user(USER)
T.ok(pw.pw_uid != 0 and pw.pw_gid != 0, "user %s is not root (uid %d, gid %d)" % (USER, pw.pw_uid, pw.pw_gid))


def ids(pid):
    """{'Uid': [real, effective, saved, fs], 'Gid': [...], 'Groups': [...]}"""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            k, _, v = ln.partition(":")
            if k in ("Uid", "Gid", "Groups"):
                out[k] = [int(x) for x in v.split()]
    return out


def owners(top):
    """(path, uid, gid) of everything under top, top included."""
    res = []
    for dirpath, dirs, files in os.walk(top):
        for n in [""] + dirs + files:
            p = os.path.join(dirpath, n) if n else dirpath
            st = os.lstat(p)
            res.append((p, st.st_uid, st.st_gid))
    return res


sink = dl.Server("sink")
relay = dl.Relay([{"domain": "dest.test", "transport": "smtp:[127.0.0.1]:%d" % sink.port,
                   "retry": "1s"}], start=False)
relay.d.user = USER
# mkdtemp() made the daemon's directory root's alone: the user must be able
# to reach the spool and the delivery log inside it.
os.chmod(relay.d.dir, 0o755)

with T.case("runs as the user"):
    relay.start()
    st = ids(relay.d.proc.pid)
    print("ids:", st)
    T.eq(st.get("Uid"), [pw.pw_uid] * 4, "Uid: real, effective, saved, fs are the user's")
    T.eq(st.get("Gid"), [pw.pw_gid] * 4, "Gid: all the user's group")
    T.ok(0 not in st.get("Groups", [0]) or st.get("Groups") == [], "no root group among the groups",
         repr(st.get("Groups")))
    # The control thread starts just after the listeners greet: bounded wait.
    sock = os.path.join(relay.d.spool, "control.sock")
    deadline = time.monotonic() + 5
    while not os.path.exists(sock) and time.monotonic() < deadline:
        time.sleep(0.05)
    T.ok(os.path.exists(sock), "control socket created")
    bad = [o for o in owners(relay.d.spool) if o[1:] != (pw.pw_uid, pw.pw_gid)]
    T.ok(not bad, "everything in the spool is the user's", repr(bad[:5]))
    st = os.stat(relay.dlog_path)
    T.eq((st.st_uid, st.st_gid), (pw.pw_uid, pw.pw_gid), "the delivery log is the user's")
    T.ok(" running as user %s " % USER in relay.d.log_tail(20), "the log says whom it runs as")


def flows(tag):
    body = dl.make_message(tag, "from@client.test", ["to@dest.test"])
    q = dl.submit(relay.port, "from@client.test", ["to@dest.test"], body)
    if not T.ok(q, tag + ": accepted with 250"):
        return
    got = relay.dlog.wait_for(lambda x: x.get("qid") == q and x.get("status") == "delivered", 20)
    T.ok(got, tag + ": delivery log says delivered", relay.dlog.dump())
    arrived = [m for m in sink.msgs() if dl.message_id(m.data) == dl.message_id(body)]
    T.eq(len(arrived), 1, tag + ": arrived once at the sink")
    if arrived:
        T.ok(arrived[0].data.endswith(body), tag + ": arrived intact")
    T.ok(relay.wait_empty(15), tag + ": the queue empties")


with T.case("mail flows end to end"):
    flows("first")
    T.eq(relay.stop(), 0, "daemon exits 0")

with T.case("restart on the user's spool"):
    relay.start()
    T.eq(ids(relay.d.proc.pid).get("Uid"), [pw.pw_uid] * 4, "again the user's uid")
    flows("after-restart")
    T.eq(relay.stop(), 0, "daemon exits 0")

with T.case("a user that does not exist"):
    d = sluice.Daemon(start=False, user="no-such-user-xq")
    p = subprocess.run(d.argv(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20,
                       env=sluice.clean_env())
    err = p.stderr.decode("utf-8", "replace")
    T.eq(p.returncode, 2, "exit 2 (a configuration error)")
    T.ok("user: 'no-such-user-xq' does not exist" in err, "the error names the user", err)
    p = subprocess.run([sluice.SLUICED, "-n", "-o", "user=no-such-user-xq"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=20, env=sluice.clean_env())
    T.eq(p.returncode, 2, "sluiced -n finds it too")
    T.ok(not os.path.exists(os.path.join(d.spool, "index")), "nothing was opened")

with T.case("a spool the user cannot reach"):
    d = sluice.Daemon(start=False, user=USER)   # its directory stays 0700
    try:
        d.start(timeout=10)
        started = True
    except RuntimeError:
        started = False
    T.ok(not started, "sluiced does not start")
    T.ok("is not accessible to user %s" % USER in d.log_tail(5), "the log names the spool and user",
         d.log_tail(5))

with T.case("user: root stays root"):
    d = sluice.Daemon(user="root")
    T.eq(ids(d.proc.pid).get("Uid"), [0, 0, 0, 0], "Uid stays 0")
    T.eq(d.stop(), 0, "daemon exits 0")

sluice.finish()
