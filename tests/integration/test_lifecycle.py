"""Lifecycle: SIGHUP reload under load and with a bad file,
graceful stop (drain) with sessions in flight and under load, privileges
(user = "nobody" when started as root)."""
import os
import pwd
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import SLUICED, Raw, raw_session, spool_list

QUIET = {"control_socket": '""', "admin_listen": '""'}
SMTP_SOURCE = "/usr/sbin/smtp-source"


def write_conf(path, text):
    tmp = str(path) + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)  # a reload never sees half a file


def wait_exit(proc, timeout):
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


# ---- reload ----

def test_reload_under_load_loses_nothing(daemon_factory, tmp_path):
    conf = tmp_path / "sluice.conf"
    write_conf(conf, 'log_level = "info";\n')
    d = daemon_factory(conf=str(conf), **QUIET)
    src = subprocess.Popen(
        ["timeout", "120", SMTP_SOURCE, "-s", "16", "-m", "2000", "-l", "512",
         "-M", "client.example.test", "-f", "a@example.test", "-t", "b@example.test",
         "127.0.0.1:%d" % d.port],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(0.1)
    during = 0
    for i in range(5):
        # each reload also changes something it applies: the drain bound
        write_conf(conf, 'log_level = "info";\ndrain_timeout = %ds;\n' % (20 + i))
        d.proc.send_signal(signal.SIGHUP)
        during += src.poll() is None
        time.sleep(0.05)
    out, _ = src.communicate(timeout=150)
    assert src.returncode == 0, out
    assert "error" not in out.lower() and "421" not in out, out
    assert d.wait_log(r"(?s)(SIGHUP: configuration .* reloaded.*){5}", timeout=10), d.log()
    assert during >= 3, "smtp-source ended before the reloads"
    assert d.stop() == 0
    assert d.stats()["messages"] == 2000
    assert len(spool_list(d.spool)) == 2000
    # the last reload's drain bound was the one in force at the stop
    assert re.search(r"stopping: listeners closed, sessions drain drain_ms=24000", d.log()), d.log()


def test_bad_config_on_sighup_keeps_the_running_one(daemon_factory, tmp_path):
    conf = tmp_path / "sluice.conf"
    write_conf(conf, 'log_level = "info";\n')
    d = daemon_factory(conf=str(conf), **QUIET)
    # a syntax error: the reason names the file and the line
    write_conf(conf, 'log_level = "info";\nmax_errors = ;\n')
    d.proc.send_signal(signal.SIGHUP)
    assert d.wait_log(r"SIGHUP: .*sluice\.conf:2: .*reload refused: the running configuration "
                      r"stays"), d.log()
    # a bad binding: refused too
    write_conf(conf, 'binding "x" { event = "mial"; sink = "builtin:access"; }\n')
    d.proc.send_signal(signal.SIGHUP)
    assert d.wait_log(r'SIGHUP: .*unknown event "mial".*reload refused'), d.log()
    # a log file that cannot be opened: refused
    write_conf(conf, 'log_file = "/nonexistent/dir/x.log";\n')
    d.proc.send_signal(signal.SIGHUP)
    assert d.wait_log(r"SIGHUP: log_file /nonexistent/dir/x\.log: .*reload refused"), d.log()
    # still serving, with the old settings
    c = raw_session(d.port)
    assert c.cmd("MAIL FROM:<a@example.test>")[0] == 250
    assert c.cmd("RCPT TO:<b@example.test>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send("Subject: x\r\n\r\nx\r\n.\r\n")
    assert c.reply()[0] == 250
    assert c.cmd("QUIT")[0] == 221
    assert "reloaded" not in d.log()
    assert d.stop() == 0
    assert len(spool_list(d.spool)) == 1


def test_reload_applies_bindings_and_log_format_and_names_restart_settings(daemon_factory,
                                                                           tmp_path):
    conf = tmp_path / "sluice.conf"
    write_conf(conf, 'log_level = "info";\n')
    d = daemon_factory(conf=str(conf), **QUIET)
    c = raw_session(d.port)  # a connection open across the reload
    write_conf(conf, '''log_format = "json";
max_message_size = 1m;
binding "no-spam" {
  event = "mail"; sink = "builtin:access"; rule = "MAIL FROM=*@spam.example";
  properties { action = "reject"; text = "sender refused"; }
}
''')
    d.proc.send_signal(signal.SIGHUP)
    assert d.wait_log(r'"msg":"SIGHUP: configuration .* reloaded .*bindings'), d.log()
    assert re.search(r"need a restart.*max_message_size", d.log()), d.log()
    # a worker picks the new chains up at its next loop turn (sinks/engine.h):
    # a NOOP makes one on each connection's worker
    c2 = raw_session(d.port)
    assert c.cmd("NOOP")[0] == 250 and c2.cmd("NOOP")[0] == 250
    code, text = c2.cmd("MAIL FROM:<x@spam.example>")
    assert code == 550 and "sender refused" in text, text
    code, text = c.cmd("MAIL FROM:<x@spam.example>")
    assert code == 550 and "sender refused" in text, text
    assert c.cmd("MAIL FROM:<ok@example.test>")[0] == 250
    assert c.cmd("QUIT")[0] == 221
    assert d.stop() == 0


# ---- graceful stop ----

def data_started(port):
    c = raw_session(port)
    assert c.cmd("MAIL FROM:<a@example.test>")[0] == 250
    assert c.cmd("RCPT TO:<b@example.test>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send("Subject: drain\r\n\r\nfirst half\r\n")
    return c


def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return True
    return False


def test_sigterm_lets_a_message_in_flight_finish(daemon_factory):
    d = daemon_factory(**QUIET)
    c = data_started(d.port)
    idle = raw_session(d.port)
    t0 = time.monotonic()
    d.proc.send_signal(signal.SIGTERM)
    assert d.wait_log(r"stopping: listeners closed")
    # an idle session is told at once, new connections are refused
    code, text = idle.reply()
    assert code == 421 and "4.3.2" in text, text
    deadline = time.monotonic() + 5
    while not refused(d.port) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert refused(d.port)
    # the message being sent completes, then the session is told
    c.send("second half\r\n.\r\n")
    code, text = c.reply()
    assert code == 250, text
    qid = re.search(r"queued as ([0-9a-f]{16})", text).group(1)
    code, text = c.cmd("MAIL FROM:<a@example.test>")
    assert code == 421 and "4.3.2" in text, text
    assert wait_exit(d.proc, 10) == 0, d.log()
    assert time.monotonic() - t0 < 10
    assert [m["id"] for m in spool_list(d.spool)] == [qid]


def test_sigterm_lets_a_transaction_begun_finish(daemon_factory):
    d = daemon_factory(**QUIET)
    c = raw_session(d.port)
    assert c.cmd("MAIL FROM:<a@example.test>")[0] == 250
    d.proc.send_signal(signal.SIGTERM)
    assert d.wait_log(r"stopping: listeners closed")
    time.sleep(1.2)  # a worker tick: sessions outside a transaction are told now
    assert c.cmd("RCPT TO:<b@example.test>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send("Subject: late\r\n\r\nx\r\n.\r\n")
    code, text = c.reply()
    assert code == 250, text
    code, text = c.cmd("MAIL FROM:<a@example.test>")
    assert code == 421 and "4.3.2" in text, text
    assert wait_exit(d.proc, 10) == 0, d.log()
    assert len(spool_list(d.spool)) == 1


def test_drain_timeout_bounds_the_stop(daemon_factory):
    d = daemon_factory(drain_timeout="1s", **QUIET)
    c = data_started(d.port)  # and never finishes
    t0 = time.monotonic()
    d.proc.send_signal(signal.SIGTERM)
    assert wait_exit(d.proc, 10) == 0, d.log()
    assert time.monotonic() - t0 < 4
    assert spool_list(d.spool) == []  # never acknowledged, not kept
    c.close()


def test_second_sigterm_stops_without_waiting(daemon_factory):
    d = daemon_factory(drain_timeout="60s", **QUIET)
    c = data_started(d.port)
    t0 = time.monotonic()
    d.proc.send_signal(signal.SIGTERM)
    assert d.wait_log(r"stopping: listeners closed")
    assert wait_exit(d.proc, 1) is None  # draining
    d.proc.send_signal(signal.SIGTERM)
    assert wait_exit(d.proc, 10) == 0, d.log()
    assert time.monotonic() - t0 < 6
    assert "again: stopping without waiting" in d.log()
    c.close()


def test_drain_under_load_keeps_every_acknowledged_message(daemon_factory):
    d = daemon_factory(drain_timeout="10s", **QUIET)
    acked = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(n):
        for _ in range(10000):
            if stop.is_set():
                return
            try:
                with smtplib.SMTP("127.0.0.1", d.port, timeout=15) as s:
                    s.ehlo("client.example.test")
                    for i in range(20):
                        s.mail("a@example.test")
                        s.rcpt("b@example.test")
                        code, text = s.data(b"Subject: load %d %d\r\n\r\nbody\r\n" % (n, i))
                        if code != 250:
                            return
                        with lock:
                            acked.append(re.search(rb"queued as ([0-9a-f]{16})", text)
                                         .group(1).decode())
            except (smtplib.SMTPException, OSError):
                return  # 421 or refused: the daemon is stopping

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while len(acked) < 200 and time.monotonic() < deadline:
        time.sleep(0.02)
    t0 = time.monotonic()
    d.proc.send_signal(signal.SIGTERM)
    rc = wait_exit(d.proc, 15)
    elapsed = time.monotonic() - t0
    stop.set()
    for t in threads:
        t.join(30)
    assert rc == 0, d.log()
    assert elapsed < 10 + 2
    stored = {m["id"] for m in spool_list(d.spool)}
    assert len(acked) >= 200
    missing = set(acked) - stored
    assert not missing, "%d acknowledged messages lost" % len(missing)


# ---- privileges ----

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def nobody():
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody")


@pytest.fixture
def open_dir():
    """A directory other users can traverse (pytest's tmp_path is 0700)."""
    d = tempfile.mkdtemp(prefix="sluice-priv-", dir="/tmp")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def status_ids(pid):
    with open("/proc/%d/status" % pid) as f:
        st = f.read()
    uid = re.search(r"^Uid:\s+(.*)$", st, re.M).group(1).split()
    gid = re.search(r"^Gid:\s+(.*)$", st, re.M).group(1).split()
    return [int(x) for x in uid], [int(x) for x in gid]


@root_only
def test_runs_as_the_configured_user(daemon_factory, open_dir):
    pw = nobody()
    spool = os.path.join(open_dir, "spool")
    os.mkdir(spool, 0o700)
    os.chown(spool, pw.pw_uid, pw.pw_gid)
    d = daemon_factory(spool=spool, user="nobody", **QUIET)
    uid, gid = status_ids(d.proc.pid)
    assert uid == [pw.pw_uid] * 4, uid
    assert gid == [pw.pw_gid] * 4, gid
    assert "running as user nobody" in d.log()
    assert "running as root" not in d.log()
    c = raw_session(d.port)
    assert c.cmd("MAIL FROM:<a@example.test>")[0] == 250
    assert c.cmd("RCPT TO:<b@example.test>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send("Subject: x\r\n\r\nx\r\n.\r\n")
    assert c.reply()[0] == 250
    c.cmd("QUIT")
    assert d.stop() == 0
    assert len(spool_list(spool)) == 1
    # the worker threads too: every file the daemon made belongs to nobody
    owners = {os.stat(os.path.join(spool, f)).st_uid for f in os.listdir(spool) if f != "lock"}
    assert owners == {pw.pw_uid}, owners


def run_sluiced(*ov, timeout=30):
    args = [SLUICED, "-o", "listen=127.0.0.1:0", "-o", "relayhost=hold",
            "-o", 'control_socket=""', "-o", 'admin_listen=""']
    for o in ov:
        args += ["-o", o]
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


@root_only
def test_spool_the_user_cannot_write_is_a_clear_error(open_dir):
    nobody()
    spool = os.path.join(open_dir, "spool")
    os.mkdir(spool, 0o755)  # root's
    r = run_sluiced("spool_dir=" + spool, "user=nobody")
    assert r.returncode == 1, r.stderr
    assert re.search(r"spool_dir %s is not writable by user \"nobody\"" % re.escape(spool),
                     r.stderr), r.stderr


@root_only
def test_unknown_user_and_root_warning(tmp_path):
    r = run_sluiced("spool_dir=%s/spool" % tmp_path, "user=no-such-user-here")
    assert r.returncode == 1
    assert 'user "no-such-user-here": no such user' in r.stderr, r.stderr


@root_only
def test_root_without_user_warns(daemon_factory):
    d = daemon_factory(**QUIET)
    assert re.search(r"warn: running as root: set user", d.log()), d.log()
    assert d.stop() == 0


def test_user_without_root_is_an_error(tmp_path):
    if os.geteuid() == 0:
        # as root: the same check through a child that is not root.  It runs
        # a copy of sluiced from a directory anyone can enter: the build tree
        # may sit in one nobody cannot (a clone under /root, a mktemp -d).
        pw = nobody()
        d = tempfile.mkdtemp(prefix="sluice-priv-", dir="/tmp")
        os.chmod(d, 0o777)
        try:
            exe = os.path.join(d, "sluiced")
            shutil.copy(SLUICED, exe)  # its own libraries are linked in
            os.chmod(exe, 0o755)
            r = subprocess.run(
                [exe, "-o", "listen=127.0.0.1:0", "-o", "spool_dir=%s/spool" % d,
                 "-o", "user=root", "-o", 'control_socket=""', "-o", 'admin_listen=""'],
                capture_output=True, text=True, timeout=30, cwd=d,
                preexec_fn=lambda: (os.setgroups([]), os.setgid(pw.pw_gid),
                                    os.setuid(pw.pw_uid)))
        finally:
            shutil.rmtree(d, ignore_errors=True)
    else:
        r = run_sluiced("spool_dir=%s/spool" % tmp_path, "user=root")
    assert r.returncode == 1
    assert "needs sluiced to start as root" in r.stderr, r.stderr
