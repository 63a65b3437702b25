"""A full spool file system (ACCEPTANCE D6, D8; docs/spool-format.md, Full
disk): sluiced starts anyway, answers MAIL with 452 4.3.1, delivers what is
queued without sending it again after a restart, and accepts mail again
once space comes back.  Runs on a small tmpfs; skipped (with the reason)
where one cannot be mounted."""
import os
import re
import smtplib
import subprocess
import time

import pytest

from delivery_util import message, send, start, wait_until
from conftest import spool_list
from nexthop import NextHop, closed_port

FS_SIZE = "16m"


@pytest.fixture
def small_fs(tmp_path):
    mnt = tmp_path / "fs"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=" + FS_SIZE, "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: " + r.stderr.strip())
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(path):
    """Writes path until the file system is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (65536, 512):
            block = b"\0" * size
            try:
                while True:
                    os.write(fd, block)
            except OSError:
                pass
    finally:
        os.close(fd)


def mail_reply(port):
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("client.test")
        return s.mail("sender@client.test")


def test_full_spool_starts_refuses_mail_and_drains(daemon_factory, tmp_path, small_fs):
    spool = str(small_fs / "spool")
    port = closed_port()
    relay = "127.0.0.1:%d" % port
    d = start(daemon_factory, tmp_path, relayhost=relay, spool=spool)
    for i in range(3):
        assert send(d, "sender@client.test", "rcpt%d@example.test" % i,
                    message(tag="full%d" % i)) == {}
    assert d.stop() == 0
    assert len(spool_list(spool)) == 3
    reserve = os.path.getsize(os.path.join(spool, "reserve"))
    assert reserve == (16 << 20) // 32  # 1/32 of a small file system

    fill(small_fs / "filler")
    # full: it starts, says so, and refuses mail
    d2 = start(daemon_factory, tmp_path, relayhost=relay, spool=spool)
    assert d2.wait_log(r"spool full: accepting no mail, delivering what is queued"), d2.log()
    code, msg = mail_reply(d2.port)
    assert code == 452 and msg.startswith(b"4.3.1"), (code, msg)
    # the queued mail goes out, and its REMOVE records find room
    hop = NextHop(port=port).start()
    try:
        assert hop.wait_messages(3, timeout=30), d2.log()
        assert wait_until(lambda: not spool_list(spool), 20), spool_list(spool)
        assert d2.stop() == 0, d2.log()
        assert "REMOVE record" not in d2.log(), d2.log()
        # a restart, still full: nothing goes out again
        d3 = start(daemon_factory, tmp_path, relayhost=relay, spool=spool)
        time.sleep(3)
        assert hop.count() == 3
        assert mail_reply(d3.port)[0] == 452, d2.log() + "\n----\n" + d3.log()
        # space comes back: mail is accepted again within the check's period
        os.unlink(small_fs / "filler")
        assert d3.wait_log(r"space again", timeout=15), d3.log()
        assert wait_until(lambda: mail_reply(d3.port)[0] == 250, 10)
        assert send(d3, "sender@client.test", "after@example.test",
                    message(tag="after")) == {}
        assert hop.wait_messages(4, timeout=30), d3.log()
        assert d3.stop() == 0
        assert os.path.getsize(os.path.join(spool, "reserve")) == reserve
    finally:
        hop.stop()


def test_full_spool_without_reserve_still_fails_clearly(daemon_factory, tmp_path, small_fs):
    """A file system full before sluiced ever made its reserve leaves the
    queue manager no room for its first segment: the start fails, naming
    the cause (the one case the reserve cannot cover)."""
    spool = small_fs / "spool"
    spool.mkdir()
    fill(small_fs / "filler")
    with pytest.raises(RuntimeError) as e:
        start(daemon_factory, tmp_path, relayhost="hold", spool=str(spool))
    assert re.search(r"file system full before a reserve was ever made there: no room for "
                     r"a segment of delivery records; free some space", str(e.value)), e.value
