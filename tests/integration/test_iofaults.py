"""I/O errors on the spool path injected with libfiu (ACCEPTANCE D5, D6;
docs/faults.md, I/O errors): sluiced-test runs under `fiu-run` with
tests/faults/fiu_spool.c preloaded (libfiu failure points in front of
pwritev, pwrite, fdatasync, fsync, ftruncate, openat, open, rename ...;
why not `fiu-run -x`: see that file), with SLUICE_FAULT_PLAIN_FSYNC=1
so that the group commits' fdatasync is a libc call libfiu sees, not an
IORING_OP_FSYNC.  `fiu-ctrl` turns a failure point on and off while the
daemon runs.  While it is on: only 4xx at the end of data (451 4.3.0, or
452 4.3.1 for ENOSPC), never a 250; once it is off: 250 again within a few
seconds; afterwards the spool holds every acknowledged message once, and
a restart relaying to a counting next hop delivers each exactly once."""
import errno
import os
import re
import shutil
import subprocess
import time
import urllib.request

import pytest

from conftest import (BUILD, code_class, raw_session, spool_list, spool_senders,
                      spool_verify, stored_body)
from delivery_util import wait_until
from nexthop import NextHop
from test_durability import body_for

FIU_RUN = shutil.which("fiu-run")
FIU_CTRL = shutil.which("fiu-ctrl")
FIU_LIBDIR = "/usr/lib/fiu"
SHIM = os.path.join(BUILD, "tests", "libfiu_spool.so")
SIZE = 40000  # with segment_size = 64kb, every message after the first rotates

pytestmark = pytest.mark.skipif(
    not (FIU_RUN and FIU_CTRL and os.path.exists(SHIM)
         and os.path.exists(os.path.join(FIU_LIBDIR, "fiu_run_preload.so"))),
    reason="libfiu (fiu-utils, libfiu-dev) not installed: make deps")


class Fiu:
    """A sluiced-test under fiu-run plus the spool shim; on/off by fiu-ctrl."""

    def __init__(self, tmp_path, daemon_factory, spool=None, enable=(), **overrides):
        self.ctl = str(tmp_path / "fiu")
        preload = " ".join([os.path.join(FIU_LIBDIR, "fiu_run_preload.so"), SHIM])
        wrap = [FIU_RUN, "-f", self.ctl]
        for e in enable:
            wrap += ["-c", e]
        # fiu-run sets LD_PRELOAD to its library; env adds the shim
        wrap += ["env", "LD_PRELOAD=" + preload]
        ov = {"workers": 1, "segment_size": "64kb"}
        ov.update(overrides)
        self.d = daemon_factory(spool=spool, wrap=wrap,
                                env={"SLUICE_FAULT_PLAIN_FSYNC": "1"}, **ov)

    def ctrl(self, command):
        r = subprocess.run([FIU_CTRL, "-f", self.ctl, "-c", command, str(self.d.proc.pid)],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode == 0, (command, r.stdout, r.stderr)

    def enable(self, name, err):
        self.ctrl("enable name=%s,failinfo=%d" % (name, err))

    def disable(self, name):
        self.ctrl("disable name=%s" % name)


def attempt(port, sender, size=SIZE):
    """One message on its own session: (code, enhanced code, text) of the
    reply that decided it (MAIL's when MAIL was refused)."""
    c = raw_session(port)
    c.s.settimeout(15)
    try:
        code, text = c.cmd("MAIL FROM:<%s>" % sender)
        if code == 250:
            code, text = c.cmd("RCPT TO:<r@example.test>")
        if code == 250:
            code, text = c.cmd("DATA")
            if code == 354:
                c.send(body_for(sender, size) + b".\r\n")
                code, text = c.reply()
        return code, code_class(text)[1], text
    finally:
        c.close()


def admin_addr(d):
    m = re.search(r"metrics at http://(\S+)/metrics", d.log())
    return m and m.group(1)


def metric(d, name):
    with urllib.request.urlopen("http://%s/metrics" % admin_addr(d), timeout=10) as r:
        body = r.read().decode()
    m = re.search(r"^%s (\S+)$" % re.escape(name), body, re.M)
    assert m, body
    return float(m.group(1))


# (failure points, errno, the refusals allowed while they are on, what
# they hit).  An append or a group commit fails for every message.  A new
# segment (its openat, header pwrite and directory fsync) is only made when
# a message does not fit the current one, and a healthy segment then grows
# past its size instead (storage/writer.c): alone, those points cost no
# refusal, only a log line, and every 250 given meanwhile must be in the
# spool (with ENOSPC the spool is full from then on: 452 at MAIL).  Together with a failing fdatasync, which abandons the current
# segment, no segment is left to write to: every message is refused.
REFUSE_ALL = "refused"
GROW = "grows"
CASES = [
    (["posix/io/rw/pwritev"], errno.EIO, {("451", "4.3.0")}, REFUSE_ALL),
    (["posix/io/rw/pwritev"], errno.ENOSPC, {("452", "4.3.1")}, REFUSE_ALL),
    (["posix/io/sync/fdatasync"], errno.EIO, {("451", "4.3.0")}, REFUSE_ALL),
    (["sluice/io/openat/creat"], errno.EIO, set(), GROW),
    (["sluice/io/openat/creat"], errno.ENOSPC, {("452", "4.3.1")}, GROW),
    (["posix/io/rw/pwrite"], errno.EIO, set(), GROW),
    (["posix/io/sync/fsync"], errno.EIO, set(), GROW),
    (["posix/io/sync/fdatasync", "sluice/io/openat/creat"], errno.EIO, {("451", "4.3.0")},
     REFUSE_ALL),
    (["posix/io/sync/fdatasync", "posix/io/rw/pwrite"], errno.EIO, {("451", "4.3.0")},
     REFUSE_ALL),
    (["posix/io/sync/fdatasync", "posix/io/sync/fsync"], errno.EIO, {("451", "4.3.0")},
     REFUSE_ALL),
]


@pytest.mark.parametrize("points,err,allowed,kind", CASES,
                         ids=["+".join(p.split("/")[-1] for p in c[0]) + "-"
                              + errno.errorcode[c[1]] for c in CASES])
def test_fault_refuses_then_recovers(tmp_path, daemon_factory, points, err, allowed, kind):
    spool = str(tmp_path / "spool")
    f = Fiu(tmp_path, daemon_factory, spool=spool, admin_listen="127.0.0.1:0")
    d = f.d
    acked, refused = [], []
    for i in range(3):
        s = "before-%d@example.test" % i
        code, enh, text = attempt(d.port, s)
        assert code == 250, (s, text, d.log())
        acked.append(s)
    for p in points:
        f.enable(p, err)
    for i in range(4):
        s = "during-%d@example.test" % i
        code, enh, text = attempt(d.port, s)
        if code == 250 and kind == GROW:
            acked.append(s)
            continue
        assert (str(code), enh) in allowed, (points, s, text, d.log())
        refused.append(s)
    if kind == GROW:
        assert d.wait_log(r"cannot start segment|create: "), d.log()
    if err == errno.ENOSPC:
        # a log line and a metric say the spool is full
        assert d.wait_log(r"spool full: accepting no mail", timeout=5), d.log()
        assert metric(d, "sluice_spool_full") == 1
        assert metric(d, "sluice_spool_full_episodes_total") >= 1
    for p in points:
        f.disable(p)
    # service comes back: the spool-full state clears at the space check
    t0 = time.monotonic()
    got = None
    n = 0
    while time.monotonic() - t0 < 20:
        s = "after-%d@example.test" % n
        n += 1
        code, enh, text = attempt(d.port, s)
        if code == 250:
            acked.append(s)
            got = time.monotonic() - t0
            break
        assert code // 100 == 4, (s, text)
        refused.append(s)
        time.sleep(0.5)
    assert got is not None, "no 250 within 20 s of the fault clearing:\n" + d.log()
    for i in range(3):
        s = "later-%d@example.test" % i
        code, enh, text = attempt(d.port, s)
        assert code == 250, (s, text, d.log())
        acked.append(s)
    if err == errno.ENOSPC:
        assert metric(d, "sluice_spool_full") == 0
    assert d.stop() == 0, d.log()
    log = d.log()
    # the spool: every acknowledged message once, with its body
    listed = spool_senders(spool)
    for s in acked:
        assert listed.count(s) == 1, (s, listed, log)
    # a refused message may only be there if the daemon said it could not
    # record its refusal (the ABORT record's own sync failed)
    stray = [s for s in listed if s not in acked]
    assert set(stray) <= set(refused), stray
    if stray:
        assert "cannot record" in log, (stray, log)
    by_sender = {m["sender"]: m for m in spool_list(spool)}
    for s in acked:
        assert stored_body(spool, by_sender[s]) == body_for(s, SIZE), s
    rc, out = spool_verify(spool)
    assert rc == 0, out
    # and delivery: each acknowledged message exactly once
    hop = NextHop().start()
    try:
        d2 = daemon_factory(spool=spool, relayhost=hop.addr, workers=1)
        assert hop.wait_messages(len(acked) + len(stray), timeout=30), d2.log()
        assert wait_until(lambda: not spool_list(spool), 20), spool_list(spool)
        assert d2.stop() == 0
        got_from = [m.mail_from for m in hop.messages]
        for s in acked:
            assert got_from.count(s) == 1, (s, got_from)
        assert set(got_from) <= set(acked) | set(stray)
    finally:
        hop.stop()
    print("%s %s: %d acknowledged, %d refused (%d kept as stray), 250 again after %.2f s"
          % ("+".join(points), errno.errorcode[err], len(acked), len(refused), len(stray), got))


def test_cut_back_fails_segment_abandoned(tmp_path, daemon_factory):
    """An append fails and so does the ftruncate that would cut it back:
    the segment is abandoned, the next message goes to a new one."""
    spool = str(tmp_path / "spool")
    f = Fiu(tmp_path, daemon_factory, spool=spool, segment_size="64mb")
    d = f.d
    assert attempt(d.port, "a-0@example.test", 3000)[0] == 250
    f.enable("posix/io/rw/ftruncate", errno.EIO)
    f.enable("posix/io/rw/pwritev", errno.EIO)
    code, enh, text = attempt(d.port, "a-1@example.test", 3000)
    assert (code, enh) == (451, "4.3.0"), text
    f.disable("posix/io/rw/pwritev")
    f.disable("posix/io/rw/ftruncate")
    assert d.wait_log(r"segment abandoned"), d.log()
    code, enh, text = attempt(d.port, "a-2@example.test", 3000)
    assert code == 250, (text, d.log())
    assert d.stop() == 0
    assert sorted(spool_senders(spool)) == ["a-0@example.test", "a-2@example.test"]
    rc, out = spool_verify(spool)
    assert rc == 0, out


def test_fdatasync_fails_during_delivery(tmp_path, daemon_factory):
    """The queue manager's group commit (its STATE and REMOVE records)
    fails while mail goes out: nothing acknowledged is lost; what was
    delivered but could not be recorded goes out again (at least once),
    counted here."""
    spool = str(tmp_path / "spool")
    d = daemon_factory(spool=spool, workers=1)
    senders = ["q-%d@example.test" % i for i in range(8)]
    for s in senders:
        assert attempt(d.port, s, 3000)[0] == 250
    assert d.stop() == 0
    hop = NextHop().start()
    try:
        f = Fiu(tmp_path, daemon_factory, spool=spool, relayhost=hop.addr,
                enable=["enable name=posix/io/sync/fdatasync,failinfo=%d" % errno.EIO])
        d2 = f.d
        assert hop.wait_messages(len(senders), timeout=30), d2.log()
        # the queue manager's records could not be made durable
        assert d2.wait_log(r"fdatasync.*Input/output error", timeout=10), d2.log()
        time.sleep(1)
        f.disable("posix/io/sync/fdatasync")
        # the spool drains once the records can be made durable
        ok = wait_until(lambda: not spool_list(spool), 30, 0.5)
        assert d2.stop() == 0
        if not ok:  # what is left is delivered by the next start
            d3 = daemon_factory(spool=spool, relayhost=hop.addr, workers=1)
            assert wait_until(lambda: not spool_list(spool), 30, 0.5), d3.log()
            assert d3.stop() == 0
        got = [m.mail_from for m in hop.messages]
        for s in senders:
            assert got.count(s) >= 1, (s, got)
        assert set(got) == set(senders)
        print("delivery under failing fdatasync: %d messages, %d deliveries (%d duplicates)"
              % (len(senders), len(got), len(got) - len(senders)))
    finally:
        hop.stop()


@pytest.mark.parametrize("point", ["posix/io/dir/rename", "posix/io/oc/open",
                                   "posix/io/rw/write"])
def test_maildir_delivery_fault_defers_then_delivers_once(tmp_path, daemon_factory, point):
    """Local delivery (Maildir) while its open, write or rename into new/
    fails: the message is deferred and stays queued, nothing half-written
    is left in new/ or tmp/; once the point is off the retry delivers it,
    once."""
    from delivery_util import conf_text, message, send
    root = tmp_path / "mail"
    conf = tmp_path / "sluice.conf"
    conf.write_text(conf_text())
    f = Fiu(tmp_path, daemon_factory, conf=str(conf), maildir_root=str(root),
            relayhost=None, segment_size="64mb")
    d = f.d
    f.enable(point, errno.EIO)
    assert send(d, "sender@client.test", "me@localhost", message(tag="md")) == {}
    assert d.wait_log(r"<me@localhost> deferred", timeout=15), d.log()
    new = root / "me" / "new"
    assert not new.exists() or os.listdir(new) == []
    assert len(spool_list(d.spool)) == 1
    f.disable(point)
    assert wait_until(lambda: new.exists() and os.listdir(new), 20, 0.2), d.log()
    assert wait_until(lambda: not spool_list(d.spool), 10)
    time.sleep(1)
    assert len(os.listdir(new)) == 1
    assert os.listdir(root / "me" / "tmp") == []
    assert d.stop() == 0
