"""Logs: JSON lines with structured fields, text lines, a log file
reopened on SIGUSR1 (logrotate's rename-then-signal), bad log settings."""
import json
import os
import re
import signal
import smtplib
import subprocess
import time

from conftest import SLUICED, raw_session, spool_list

QUIET = {"control_socket": '""', "admin_listen": '""'}


def json_lines(text):
    """Every log line that is a JSON object, parsed (the exit counters are
    plain lines on stderr by design)."""
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def send(port, sender="a@example.test", rcpts=("b@example.test",), body="Subject: t\r\n\r\nx\r\n"):
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("client.example.test")
        s.sendmail(sender, list(rcpts), body)


def wait_for(pred, timeout=10, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def test_json_lines_parse_and_carry_fields(daemon_factory):
    d = daemon_factory(log_format="json", **QUIET)
    send(d.port, rcpts=("b@example.test", "c@example.test"), body="Subject: t\r\n\r\n" + ("y" * 99 + "\r\n") * 11)
    # a sender with a quote and a backslash in its quoted local part
    c = raw_session(d.port)
    assert c.cmd('MAIL FROM:<"q\\"uo\\\\te"@example.test>')[0] == 250
    assert c.cmd("RCPT TO:<b@example.test>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send("Subject: q\r\n\r\nz\r\n.\r\n")
    assert c.reply()[0] == 250
    c.cmd("QUIT")
    assert d.wait_log(r'"msg":"accepted".*"sender":"\\"q', timeout=10), d.log()
    assert d.stop() == 0
    lines = d.log().splitlines()
    # every line before the exit counters is one JSON object
    logged = [l for l in lines if not l.startswith("sluiced ") and not l.startswith("binding ")]
    recs = [json.loads(l) for l in logged]
    assert recs and all({"ts", "level", "thread", "msg"} <= set(r) for r in recs)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r["ts"]) for r in recs)
    acc = [r for r in recs if r["msg"] == "accepted"]
    assert len(acc) == 2, recs
    first = acc[0]
    assert re.fullmatch(r"[0-9a-f]{16}", first["id"])
    assert first["client"] == "127.0.0.1"
    assert first["sender"] == "a@example.test"
    assert first["rcpts"] == "2"
    assert int(first["size"]) > 1000
    assert first["level"] == "info" and first["thread"].startswith("w")
    assert acc[1]["sender"] == '"q\\"uo\\\\te"@example.test'
    # the id in the log is the id in the spool
    from conftest import spool_list
    ids = {m["id"] for m in spool_list(d.spool)}
    assert {a["id"] for a in acc} == ids
    stop = [r for r in recs if r["msg"].startswith("stopping")]
    assert stop and stop[0]["drain_ms"] == "30000"


def test_refused_messages_are_logged_with_the_reply(daemon_factory):
    d = daemon_factory(log_format="json", max_message_size="2k", **QUIET)
    c = raw_session(d.port)
    assert c.cmd("MAIL FROM:<big@example.test>")[0] == 250
    assert c.cmd("RCPT TO:<b@example.test>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send("Subject: r\r\n\r\n" + ("x" * 60 + "\r\n") * 50 + ".\r\n")
    code, text = c.reply()
    assert code == 552, text
    c.cmd("QUIT")
    assert d.wait_log(r'"msg":"rejected"', timeout=10), d.log()
    rej = [r for r in json_lines(d.log()) if r["msg"] == "rejected"]
    assert len(rej) == 1
    assert rej[0]["sender"] == "big@example.test" and rej[0]["client"] == "127.0.0.1"
    assert rej[0]["rcpts"] == "1"
    assert rej[0]["reply"].startswith("552 5.3.4"), rej
    assert "verdict" not in rej[0]  # no bindings: no sink decided
    assert d.stop() == 0
    assert spool_list(d.spool) == []


def test_text_lines_keep_their_shape(daemon_factory):
    d = daemon_factory(**QUIET)
    send(d.port)
    assert d.wait_log(r"sluiced\[w\d+\] info: accepted id=[0-9a-f]{16} client=127\.0\.0\.1 "
                      r"sender=a@example\.test rcpts=1 size=\d+ data_ms=\d+")
    assert d.stop() == 0


def test_delivery_outcome_lines_in_json(daemon_factory, tmp_path):
    mail = tmp_path / "mail"
    d = daemon_factory(log_format="json", relayhost=None, maildir_root=str(mail), **QUIET)
    send(d.port, sender="a@example.test", rcpts=("me@localhost",))
    assert d.wait_log(r'"event":"delivered"', timeout=15), d.log()
    recs = json_lines(d.log())
    dl = [r for r in recs if r.get("event") == "delivered"]
    assert dl[0]["recipient"] == "me@localhost"
    assert dl[0]["reply"].startswith("2")
    acc = [r for r in recs if r["msg"] == "accepted"]
    assert dl[0]["id"] == acc[0]["id"]
    assert d.stop() == 0


def start_with_log_file(tmp_path, log, extra=()):
    """sluiced logging to a file: its port comes from the file."""
    args = [SLUICED, "-o", "listen=127.0.0.1:0", "-o", f"spool_dir={tmp_path}/spool",
            "-o", "workers=2", "-o", "relayhost=hold", "-o", 'relay_domains=["example.test"]',
            "-o", f"log_file={log}", "-o", 'control_socket=""', "-o", 'admin_listen=""']
    for e in extra:
        args += ["-o", e]
    p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)

    def port():
        try:
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", log.read_text())
        except FileNotFoundError:
            return None
        return int(m.group(1)) if m else None
    wait_for(lambda: port() or p.poll() is not None)
    if not port():
        p.kill()
        raise AssertionError("sluiced did not start: " + p.stderr.read())
    return p, port()


def test_log_file_reopened_on_sigusr1(tmp_path):
    log = tmp_path / "sluice.log"
    p, port = start_with_log_file(tmp_path, log, ["log_format=json"])
    try:
        send(port)
        assert wait_for(lambda: '"msg":"accepted"' in log.read_text())
        rotated = tmp_path / "sluice.log.1"
        os.rename(log, rotated)
        send(port)  # still goes to the renamed file: the descriptor is the same
        assert wait_for(lambda: rotated.read_text().count('"msg":"accepted"') == 2)
        p.send_signal(signal.SIGUSR1)
        assert wait_for(lambda: log.exists() and "log file reopened" in log.read_text())
        send(port, sender="after@example.test")
        assert wait_for(lambda: '"sender":"after@example.test"' in log.read_text())
        assert "after@example.test" not in rotated.read_text()
        for f in (log, rotated):
            json_lines(f.read_text())  # every line parses
            assert all(l.startswith("{") for l in f.read_text().splitlines())
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 0
    # the exit counters stay on stderr
    assert "sluiced stats:" in p.stderr.read()


def test_sigusr2_prints_sink_stats(daemon_factory):
    d = daemon_factory(**QUIET)
    d.proc.send_signal(signal.SIGUSR2)
    assert d.wait_log(r"(?m)^binding\s+event\s+calls", timeout=10), d.log()
    d.proc.send_signal(signal.SIGUSR1)  # no log file: nothing to reopen, no harm
    assert d.wait_log(r"SIGUSR1: log file reopened")
    send(d.port)
    assert d.stop() == 0


def test_bad_log_settings_are_start_up_errors(tmp_path):
    base = [SLUICED, "-o", "listen=127.0.0.1:0", "-o", f"spool_dir={tmp_path}/spool",
            "-o", 'control_socket=""', "-o", 'admin_listen=""']
    r = subprocess.run(base + ["-o", "log_format=xml"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "log_format" in r.stderr and "json" in r.stderr, r.stderr
    r = subprocess.run(base + ["-o", "log_file=/nonexistent/dir/sluice.log"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "/nonexistent/dir/sluice.log" in r.stderr, r.stderr


def test_syslog_output(tmp_path):
    """log_file = "syslog": the lines reach /dev/log (facility mail).  The
    daemon runs in a private mount namespace whose /dev holds our datagram
    socket as /dev/log, so the host's /dev is never touched."""
    import shutil
    import socket
    import tempfile
    if os.geteuid() != 0 or not shutil.which("unshare"):
        import pytest
        pytest.skip("needs root and unshare(1)")
    dev = tempfile.mkdtemp(prefix="sluice-dev-", dir="/tmp")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    p = None
    try:
        sock.bind(os.path.join(dev, "log"))
        sock.settimeout(0.2)
        binds = "; ".join("touch %s/%s && mount --bind /dev/%s %s/%s" % (dev, f, f, dev, f)
                          for f in ("null", "zero", "urandom", "random"))
        cmd = ("%s && mount --rbind %s /dev && exec %s -o listen=127.0.0.1:0 "
               "-o spool_dir=%s/spool -o workers=1 -o relayhost=hold "
               "-o 'relay_domains=[\"example.test\"]' -o log_file=syslog -o log_format=json "
               "-o 'control_socket=\"\"' -o 'admin_listen=\"\"'" % (binds, dev, SLUICED, tmp_path))
        p = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", cmd],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
        got = []

        def recv_until(pred, timeout=10):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    got.append(sock.recv(65536).decode("utf-8", "replace"))
                except socket.timeout:
                    if p.poll() is not None:
                        break
                    continue
                if pred():
                    return True
            return pred()

        def port():
            for g in got:
                m = re.search(r"listening on 127\.0\.0\.1:(\d+)", g)
                if m:
                    return int(m.group(1))
            return None
        if not recv_until(port):
            p.kill()
            import pytest
            err = p.stderr.read()
            if "mount" in err or "unshare" in err:
                pytest.skip("no mount namespace here: " + err)
            raise AssertionError("no syslog lines: %r %s" % (got, err))
        send(port())
        assert recv_until(lambda: any('"msg":"accepted"' in g for g in got)), got
        for g in got:
            m = re.fullmatch(r"<(\d+)>\w{3} [ \d]\d \d\d:\d\d:\d\d sluiced\[(\d+)\]: (\{.*\})", g)
            assert m, g
            assert int(m.group(1)) >> 3 == 2  # LOG_MAIL
            assert int(m.group(2)) == p.pid
            rec = json.loads(m.group(3))
            assert "ts" not in rec  # syslog stamps its own time
            assert {"level", "thread", "msg"} <= set(rec)
        acc = [json.loads(g.split(": ", 1)[1]) for g in got if '"msg":"accepted"' in g]
        assert acc[0]["sender"] == "a@example.test"
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 0
    finally:
        if p is not None and p.poll() is None:
            p.kill()
            p.wait()
        sock.close()
        shutil.rmtree(dev, ignore_errors=True)
