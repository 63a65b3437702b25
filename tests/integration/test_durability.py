"""Durability (ACCEPTANCE D2, D4, D5, D6) and a graceful stop: what got a
250 survives, what got a 4xx/5xx is never delivered."""
import os
import random
import shutil
import smtplib
import subprocess
import threading
import time

import pytest

from conftest import (SLUICED, assert_reply, code_class, raw_session,
                      replies_until_close,
                      segment_records, spool_list, spool_segments,
                      spool_senders, spool_verify, stored_body)


def size_for(sender):
    """Load messages of three sizes (so that kills land inside DATA too)."""
    n = int(sender.split("@")[0].rsplit("-", 1)[1])
    return (300, 3000, 40000)[n % 3]


def body_for(sender, size=0):
    b = ("From: <%s>\r\nTo: <r@example.test>\r\nSubject: durability\r\n"
         "Message-ID: <%s>\r\n\r\n" % (sender, sender.replace("@", ".") + "@test")).encode()
    line = b"0123456789abcdefghijklmnopqrstuvwxyz" * 2 + b"\r\n"
    b += line * max(1, size // len(line))
    return b


def send_raw(port, sender, size=0, timeout=10):
    """One message on its own connection; the reply to the end of data."""
    c = raw_session(port)
    c.s.settimeout(timeout)
    try:
        assert c.cmd("MAIL FROM:<%s>" % sender)[0] == 250
        assert c.cmd("RCPT TO:<r@example.test>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(body_for(sender, size) + b".\r\n")
        return c.reply()
    finally:
        c.close()


# ---- D2: kill -9 under load ----

ACKED, REFUSED, UNKNOWN = "acked", "refused", "unknown"


def load_client(port, tag, stop, results, lock, pause=0.0):
    """Sends until stop is set or the daemon is gone, pause seconds between
    messages; results[sender] = ACKED, REFUSED or UNKNOWN (no reply)."""
    n = 0
    while not stop.is_set() and n < 5000:
        try:
            s = smtplib.SMTP("127.0.0.1", port, local_hostname="client.example.test",
                             timeout=5)
            s.ehlo()
        except (OSError, smtplib.SMTPException):
            return  # the daemon is gone
        try:
            while not stop.is_set() and n < 5000:
                sender = "%s-%d@example.test" % (tag, n)
                n += 1
                outcome = UNKNOWN
                try:
                    code, _ = s.mail(sender)
                    if code == 250:
                        code, _ = s.rcpt("r@example.test")
                    if code != 250:
                        outcome = REFUSED
                    else:
                        body = body_for(sender, size_for(sender))
                        if n % 5 == 0:  # one in five is refused (550 5.5.2)
                            body += b"L" * 1200 + b"\r\n"
                        code, _ = s.data(body)
                        outcome = ACKED if code == 250 else REFUSED
                except smtplib.SMTPDataError as e:
                    # a reply to DATA or to the end of data: definitive
                    outcome = REFUSED if e.smtp_code >= 400 else UNKNOWN
                except (OSError, smtplib.SMTPException):
                    outcome = UNKNOWN
                with lock:
                    results[sender] = outcome
                if outcome != ACKED:
                    break  # a new connection (the refusal may have closed it)
                if pause:
                    time.sleep(pause)
        finally:
            try:
                s.close()
            except OSError:
                pass


def test_kill9_under_load(daemon_factory, tmp_path):
    spool = str(tmp_path / "spool")
    rng = random.Random(os.getpid() ^ int(time.time()))
    results = {}
    lock = threading.Lock()
    for rnd in range(3):
        d = daemon_factory(spool=spool)
        # everything acknowledged in earlier rounds is there after recovery
        listed = spool_senders(spool)
        acked = {k for k, v in results.items() if v == ACKED}
        refused = {k for k, v in results.items() if v == REFUSED}
        assert acked <= set(listed), sorted(acked - set(listed))[:10]
        assert not (refused & set(listed)), sorted(refused & set(listed))[:10]
        assert len(listed) == len(set(listed)), "a message is listed twice"
        stop = threading.Event()
        threads = [threading.Thread(target=load_client,
                                    args=(d.port, "r%dt%d" % (rnd, i), stop, results, lock),
                                    daemon=True) for i in range(6)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.4, 1.5))
        d.kill9()
        stop.set()
        for t in threads:
            t.join(15)
            assert not t.is_alive()
    d = daemon_factory(spool=spool)
    assert d.wait_log(r"recovered", timeout=5)
    listed = spool_senders(spool)
    acked = {k for k, v in results.items() if v == ACKED}
    refused = {k for k, v in results.items() if v == REFUSED}
    assert len(acked) >= 20, "too little load to mean anything: %d" % len(acked)
    assert len(refused) >= 5, "no refused messages in the load: %d" % len(refused)
    assert acked <= set(listed), sorted(acked - set(listed))[:10]
    assert not (refused & set(listed)), sorted(refused & set(listed))[:10]
    assert len(listed) == len(set(listed)), "a message is listed twice"
    # nothing listed that was never sent
    assert set(listed) <= set(results), sorted(set(listed) - set(results))[:10]
    # the bodies of acknowledged messages are intact
    by_sender = {m["sender"]: m for m in spool_list(spool)}
    for sender in sorted(acked)[:: max(1, len(acked) // 25)]:
        assert stored_body(spool, by_sender[sender]) == body_for(sender, size_for(sender))
    # the daemon still takes mail on the recovered spool
    assert send_raw(d.port, "after-kill@example.test")[0] == 250
    assert d.stop() == 0
    rc, out = spool_verify(spool)
    assert rc == 0, out


# ---- D4: torn tail and garbage ----

def make_traffic(daemon_factory, spool, n):
    d = daemon_factory(spool=spool, workers=1)
    senders = ["d4-%d@example.test" % i for i in range(n)]
    for s in senders:
        code, text = send_raw(d.port, s, size=80)
        assert code == 250, text
    assert d.stop() == 0
    return senders


def last_segment(spool):
    segs = [p for p in spool_segments(spool) if segment_records(p)]
    assert segs, os.listdir(spool)
    return segs[-1]


def test_torn_tail_every_offset(daemon_factory, tmp_path):
    spool = str(tmp_path / "spool")
    senders = make_traffic(daemon_factory, spool, 4)
    seg = last_segment(spool)
    recs = segment_records(seg)
    with open(seg, "rb") as f:
        data = f.read()
    assert recs[-1][1] == len(data), "trailing octets after the last record"
    last_off, last_end, last_type, last_id = recs[-1]
    assert last_type == "COMMIT", recs[-3:]
    msg_recs = [r for r in recs if r[3] == last_id]
    assert msg_recs[0][2] == "START", msg_recs
    msg_start = msg_recs[0][0]
    bounds = {r[0] for r in recs} | {r[1] for r in recs}
    last_msg = [m for m in spool_list(spool) if int(m["id"], 16) == last_id]
    assert len(last_msg) == 1 and last_msg[0]["sender"] == senders[-1]
    earlier = sorted(spool_senders(spool))
    earlier.remove(senders[-1])

    copy = str(tmp_path / "copy")
    shutil.copytree(spool, copy)
    cseg = os.path.join(copy, os.path.basename(seg))
    bad = []
    for off in range(msg_start + 1, len(data)):
        with open(cseg, "wb") as f:
            f.write(data[:off])
        got = sorted(spool_senders(copy))
        if got != earlier:
            bad.append((off, "list", got))
        if off not in bounds:
            rc, out = spool_verify(copy)
            if rc == 0:
                bad.append((off, "verify passed", out))
    assert not bad, "%d bad offsets (message at %d..%d, COMMIT at %d); first: %r" % (
        len(bad), msg_start, len(data), last_off, bad[:5])

    # sluiced on a copy torn inside the last record: repairs and goes on
    cut = last_off + (last_end - last_off) // 2
    with open(cseg, "wb") as f:
        f.write(data[:cut])
    d = daemon_factory(spool=copy, workers=1)
    assert sorted(spool_senders(copy)) == earlier
    code, text = send_raw(d.port, "after-repair@example.test")
    assert code == 250, text
    assert d.stop() == 0
    assert sorted(spool_senders(copy)) == sorted(earlier + ["after-repair@example.test"])
    rc, out = spool_verify(copy)
    assert rc == 0, out


@pytest.mark.parametrize("kind", ["random", "zeros", "fake_header"])
def test_garbage_appended(daemon_factory, tmp_path, kind):
    import struct
    spool = str(tmp_path / "spool")
    senders = make_traffic(daemon_factory, spool, 3)
    seg = last_segment(spool)
    recs = segment_records(seg)
    if kind == "random":
        junk = random.Random(7).randbytes(333)
    elif kind == "zeros":
        junk = b"\0" * 4096
    else:  # a COMMIT header for the last id, with a wrong crc, and a payload
        junk = struct.pack("<IIQII", 0x5352 << 16 | 3, 16, recs[-1][3], 0xdeadbeef, 0)
        junk += b"\x10" + b"\0" * 15
    with open(seg, "ab") as f:
        f.write(junk)
    assert sorted(spool_senders(spool)) == sorted(senders)
    rc, out = spool_verify(spool)
    if kind == "zeros":  # what the writer's pre-zeroing leaves: the end
        assert rc == 0, out
    else:
        assert rc != 0, "verify accepted %d octets of garbage: %s" % (len(junk), out)
    d = daemon_factory(spool=spool, workers=1)
    assert sorted(spool_senders(spool)) == sorted(senders)
    code, text = send_raw(d.port, "after-garbage@example.test")
    assert code == 250, text
    assert d.stop() == 0
    assert sorted(spool_senders(spool)) == sorted(senders + ["after-garbage@example.test"])
    rc, out = spool_verify(spool)
    assert rc == 0, out


# ---- D5: fsync failure ----

def test_fsync_failure(daemon_factory, tmp_path):
    spool = str(tmp_path / "spool")
    d = daemon_factory(spool=spool, workers=1, env={"SLUICE_FAULT_FSYNC_AFTER": "2"})
    assert d.wait_log("fault injection", timeout=2), d.log()
    replies = []
    for i in range(6):
        replies.append(send_raw(d.port, "d5-%d@example.test" % i))
    codes = [r[0] for r in replies]
    assert codes == [250, 250, 451, 451, 451, 451], replies
    for r in replies[2:]:
        assert code_class(r[1])[1] == "4.3.0", r
    # also within one session: the failure is not retried and then acknowledged
    c = raw_session(d.port)
    for i in range(2):
        assert c.cmd("MAIL FROM:<d5-s%d@example.test>" % i)[0] == 250
        assert c.cmd("RCPT TO:<r@example.test>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(body_for("d5-s%d@example.test" % i) + b".\r\n")
        assert_reply(c.reply(), 451, "4.3.0")
    c.close()
    d.stop()
    d2 = daemon_factory(spool=spool, workers=1)
    assert sorted(spool_senders(spool)) == ["d5-0@example.test", "d5-1@example.test"]
    assert send_raw(d2.port, "d5-after@example.test")[0] == 250
    assert d2.stop() == 0
    assert sorted(spool_senders(spool)) == ["d5-0@example.test", "d5-1@example.test",
                                            "d5-after@example.test"]
    rc, out = spool_verify(spool)
    assert rc == 0, out


# ---- D6: disk full ----

@pytest.fixture
def tmpfs_dir(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                       capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs: " + r.stderr.strip())
    yield str(mnt)
    r = subprocess.run(["umount", str(mnt)], capture_output=True, timeout=10)
    if r.returncode != 0:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=10)


def test_disk_full(tmpfs_dir, daemon_factory):
    spool = os.path.join(tmpfs_dir, "spool")
    d = daemon_factory(spool=spool, workers=1)
    acked, got452 = [], None
    for i in range(40):
        sender = "d6-%d@example.test" % i
        code, text = send_raw(d.port, sender, size=100 * 1024)
        if code == 250:
            acked.append(sender)
            continue
        assert_reply((code, text), 452, "4.3.1")
        got452 = i
        break
    assert got452 is not None, "no 452 after 40 messages of 100 KiB on a 2 MiB tmpfs"
    assert len(acked) >= 5, acked
    # the daemon goes on, and while the spool is full MAIL itself gets
    # 452 4.3.1 (docs/spool-format.md, Full disk)
    c = raw_session(d.port)
    try:
        assert_reply(c.cmd("MAIL FROM:<d6-more@example.test>"), 452, "4.3.1")
        assert c.cmd("NOOP")[0] == 250
    finally:
        c.close()
    assert set(acked) <= set(spool_senders(spool))
    d.kill9()
    listed = spool_senders(spool)
    assert set(acked) <= set(listed), sorted(set(acked) - set(listed))
    d2 = daemon_factory(spool=spool, workers=1)
    listed = spool_senders(spool)
    assert set(acked) <= set(listed), sorted(set(acked) - set(listed))
    assert set(listed) <= set(acked) | {"d6-%d@example.test" % got452}
    by_sender = {m["sender"]: m for m in spool_list(spool)}
    for s in acked[:3]:
        assert stored_body(spool, by_sender[s]) == body_for(s, 100 * 1024)
    d2.kill9()


# ---- graceful stop ----

def test_sigterm_idle(daemon):
    t0 = time.monotonic()
    assert daemon.stop(timeout=10) == 0
    assert time.monotonic() - t0 < 5
    st = daemon.stats()
    assert set(st) >= {"sessions", "messages", "commits", "syncs"}, daemon.log()
    assert st["messages"] == 0


def test_sigterm_after_traffic(daemon):
    for i in range(3):
        assert send_raw(daemon.port, "st-%d@example.test" % i)[0] == 250
    assert daemon.stop(timeout=10) == 0
    st = daemon.stats()
    assert st["messages"] == 3 and st["commits"] == 3, st
    assert st["sessions"] >= 3 and 1 <= st["syncs"] <= 3, st
    assert len(spool_list(daemon.spool)) == 3


def test_sigterm_with_idle_client(daemon):
    c = raw_session(daemon.port)
    t0 = time.monotonic()
    daemon.proc.send_signal(15)
    c.s.settimeout(8)
    code, text = c.reply()
    assert_reply((code, text), 421, "4.3.2")
    assert c.closed()
    assert daemon.stop(timeout=10) == 0
    assert time.monotonic() - t0 < 7
    assert daemon.stats() != {}


def test_second_daemon_on_same_spool_refused(daemon):
    r = subprocess.run([SLUICED, "-o", "listen=127.0.0.1:0", "-o", "spool_dir=" + daemon.spool],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode != 0
    assert "spool" in r.stderr, r.stderr
    # the first one is unharmed
    assert send_raw(daemon.port, "one@example.test")[0] == 250


def test_sigterm_under_load(daemon_factory, tmp_path):
    spool = str(tmp_path / "spool")
    d = daemon_factory(spool=spool)
    results, lock, stop = {}, threading.Lock(), threading.Event()
    threads = [threading.Thread(target=load_client, args=(d.port, "st%d" % i, stop, results, lock),
                                daemon=True) for i in range(6)]
    for t in threads:
        t.start()
    time.sleep(0.8)
    t0 = time.monotonic()
    assert d.stop(timeout=10) == 0
    assert time.monotonic() - t0 < 7
    stop.set()
    for t in threads:
        t.join(15)
    acked = {k for k, v in results.items() if v == ACKED}
    refused = {k for k, v in results.items() if v == REFUSED}
    assert len(acked) >= 20
    listed = spool_senders(spool)
    assert acked <= set(listed), sorted(acked - set(listed))[:10]
    assert not (refused & set(listed))
    st = d.stats()
    assert st["messages"] >= len(acked) and st["commits"] >= st["messages"], (st, len(acked))
    rc, out = spool_verify(spool)
    assert rc == 0, out


def test_sigterm_mid_data(daemon):
    c = raw_session(daemon.port)
    assert c.cmd("MAIL FROM:<mid@example.test>")[0] == 250
    assert c.cmd("RCPT TO:<r@example.test>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(b"Subject: mid\r\n\r\nfirst half\r\n")
    daemon.proc.send_signal(15)
    time.sleep(0.3)
    got = []
    try:
        c.send(b"second half\r\n.\r\n")
        got = replies_until_close(c, timeout=6)
    except OSError:
        pass
    assert daemon.stop(timeout=10) == 0
    codes = [g[0] for g in got]
    listed = spool_senders(daemon.spool)
    if 250 in codes:
        assert listed == ["mid@example.test"]
        assert codes[codes.index(250) + 1:] in ([], [421]), got
    else:
        assert listed == [], got
        assert all(x // 100 == 4 for x in codes), got
