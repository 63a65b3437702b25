"""sluicectl against a running sluiced (core/ops/ctl.c, core/cmd/sluicectl.c).

Every daemon gets its own control socket in the test's directory.  Mail
stays in the spool (relayhost/transport "hold") unless a test routes it,
so the queue verbs have something to act on.
"""
import json
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import time

import pytest

from conftest import BUILD, SLUICED, spool_list
from delivery_util import message, send, start, wait_until
from nexthop import NextHop, closed_port

SLUICECTL = os.path.join(BUILD, "bin", "sluicectl")


def _admin_off():
    """admin_listen="" when this build has the key (no metrics listener on
    the fixed default port while other daemons run)."""
    r = subprocess.run([SLUICED, "--check", "-o", 'admin_listen=""'],
                       capture_output=True, text=True, timeout=30)
    return {"admin_listen": '""'} if r.returncode == 0 else {}


ADMIN_OFF = _admin_off()


def ctl(*args, sock=None, conf=None, user=None, timeout=60, check=None):
    """Runs sluicectl; returns CompletedProcess (text).  check: expected
    exit code (0 / nonzero "!0"), asserted with the output shown."""
    cmd = [SLUICECTL]
    if conf:
        cmd += ["-c", conf]
    if sock:
        cmd += ["-s", sock]
    cmd += list(args)
    if user:
        cmd = ["setpriv", "--reuid=" + user, "--regid=nogroup", "--clear-groups"] + cmd
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check == 0:
        assert r.returncode == 0, (cmd, r.returncode, r.stdout, r.stderr)
    elif check == "!0":
        assert r.returncode != 0, (cmd, r.stdout, r.stderr)
        assert r.stderr.startswith("sluicectl: "), r.stderr
        assert r.stderr.count("\n") == 1, r.stderr  # one line
    return r


def ctl_json(sock, *args):
    return json.loads(ctl(*args, "--json", sock=sock, check=0).stdout)


@pytest.fixture
def sock(tmp_path):
    return str(tmp_path / "ctl.sock")


def hold_daemon(daemon_factory, tmp_path, sock, **kw):
    """Mail for example.test and client.test is held in the queue."""
    ov = dict(ADMIN_OFF)
    ov.update(kw)
    return start(daemon_factory, tmp_path,
                 transport={"example.test": "hold", "client.test": "hold"},
                 control_socket=sock, **ov)


def queue(sock):
    return ctl_json(sock, "queue", "list")


def by_sender(sock, sender):
    return [m for m in queue(sock) if m["sender"] == sender]


def test_socket_mode_status_and_stale_socket(daemon_factory, tmp_path, sock):
    # a stale socket file (nobody listens) is replaced at start
    s = socket.socket(socket.AF_UNIX)
    s.bind(sock)
    s.close()
    assert stat.S_ISSOCK(os.lstat(sock).st_mode)
    d = hold_daemon(daemon_factory, tmp_path, sock)
    st = os.lstat(sock)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == os.geteuid()

    send(d, "a@client.test", ["x@example.test", "y@example.test"], message("one"))
    send(d, "b@client.test", ["z@example.test"], message("two"))
    assert wait_until(lambda: len(queue(sock)) == 2, 10), queue(sock)
    s = ctl_json(sock, "status")
    assert s["pid"] == d.proc.pid
    assert s["version"]
    assert s["workers"] == 2
    assert s["uptime_s"] >= 0
    assert s["queue"]["queued"] == 2, s
    assert s["queue"]["held"] == 2, s
    assert s["queue"]["deferred"] == 0, s
    assert s["spool"]["bytes"] > 0 and s["spool"]["segments"] >= 1, s
    assert s["spool"]["live_messages"] == 2, s
    txt = ctl("status", sock=sock, check=0).stdout
    assert "pid %d" % d.proc.pid in txt and "2 messages" in txt, txt
    # connections open now, and the counters since start
    assert s["net"]["messages"] == 2 and s["net"]["accepted"] == 2, s
    assert wait_until(lambda: ctl_json(sock, "status")["net"]["connections"] == 0, 10)
    held = [socket.create_connection(("127.0.0.1", d.port), timeout=10) for _ in range(2)]
    for c in held:
        assert c.recv(512).startswith(b"220")
    assert wait_until(lambda: ctl_json(sock, "status")["net"]["connections"] == 2, 10), \
        ctl_json(sock, "status")
    assert "2 connections now" in ctl("status", sock=sock, check=0).stdout
    for c in held:
        c.close()
    assert wait_until(lambda: ctl_json(sock, "status")["net"]["connections"] == 0, 10), \
        ctl_json(sock, "status")

    # a second daemon with the same control socket: a clear start-up error
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(RuntimeError) as e:
        hold_daemon(daemon_factory, other, sock, spool=str(other / "spool"))
    assert "another sluiced is listening" in str(e.value), str(e.value)
    # and the first one still answers
    assert ctl_json(sock, "status")["pid"] == d.proc.pid

    assert d.stop() == 0
    assert not os.path.exists(sock)  # removed at exit


def test_configured_socket_that_cannot_be_made_is_an_error(daemon_factory, tmp_path):
    bad = str(tmp_path / "no" / "such" / "dir" / "ctl.sock")
    with pytest.raises(RuntimeError) as e:
        hold_daemon(daemon_factory, tmp_path, bad)
    assert "control socket " + bad in str(e.value), str(e.value)
    f = tmp_path / "plain"
    f.write_text("x")
    with pytest.raises(RuntimeError) as e:
        hold_daemon(daemon_factory, tmp_path, str(f))
    assert "not a socket" in str(e.value), str(e.value)


def test_socket_from_config_file(daemon_factory, tmp_path, sock):
    conf = tmp_path / "sluice.conf"
    conf.write_text('control_socket = "%s";\ntransport { "example.test" = "hold"; }\n' % sock)
    ov = dict(ADMIN_OFF)
    d = daemon_factory(conf=str(conf), **ov)
    r = ctl("status", "--json", conf=str(conf), check=0)
    assert json.loads(r.stdout)["pid"] == d.proc.pid
    # a file without one: the default path, where nobody listens here
    empty = tmp_path / "empty.conf"
    empty.write_text('control_socket = "";\n')
    r = ctl("status", conf=str(empty), check="!0")
    assert "no control_socket" in r.stderr


def test_queue_list_show_hold_release_delete(daemon_factory, tmp_path, sock):
    d = hold_daemon(daemon_factory, tmp_path, sock)
    send(d, "alice@client.test", ["r1@example.test", "r2@example.test"],
         message("Hello list", tag="list-1"))
    send(d, "bob@client.test", ["r3@example.test"], message("Second"))
    assert wait_until(lambda: len(queue(sock)) == 2, 10)
    q = queue(sock)
    alice = [m for m in q if m["sender"] == "alice@client.test"][0]
    assert len(alice["id"]) == 16
    assert [r["addr"] for r in alice["rcpts"]] == ["r1@example.test", "r2@example.test"]
    assert all(r["state"] == "pending" for r in alice["rcpts"])
    assert alice["size"] > 0 and alice["arrival"]

    # the table: id, size, arrival, sender, then the recipients indented
    txt = ctl("queue", "list", sock=sock, check=0).stdout
    lines = txt.splitlines()
    head = [l for l in lines if l.startswith(alice["id"])]
    assert len(head) == 1, txt
    assert "alice@client.test" in head[0] and str(alice["size"]) in head[0], txt
    i = lines.index(head[0])
    assert lines[i + 1].strip().startswith("r1@example.test") and "[pending]" in lines[i + 1]
    assert lines[i + 1].startswith(" "), txt
    assert lines[i + 2].strip().startswith("r2@example.test"), txt
    assert "in 2 Requests." in lines[-1], txt

    # show: envelope, recipients, headers
    sh = ctl_json(sock, "queue", "show", alice["id"])
    assert sh["id"] == alice["id"] and sh["sender"] == "alice@client.test"
    assert "Subject: Hello list" in sh["headers"]
    assert sh["helo"] == "client.test"
    txt = ctl("queue", "show", alice["id"], sock=sock, check=0).stdout
    assert "Subject: Hello list" in txt and "X-Test-Tag: list-1" in txt
    assert "r2@example.test" in txt and "sender: alice@client.test" in txt

    # hold, then release
    r = ctl("queue", "hold", alice["id"], sock=sock, check=0)
    st = {m["id"]: m["state"] for m in queue(sock)}
    assert st[alice["id"]] == "held", st
    assert "!" in [l for l in ctl("queue", "list", sock=sock, check=0).stdout.splitlines()
                   if l.startswith(alice["id"])][0]
    ctl("queue", "release", alice["id"], sock=sock, check=0)
    st = {m["id"]: m["state"] for m in queue(sock)}
    assert st[alice["id"]] != "held", st  # routed again (to the hold transport)
    r = ctl("queue", "release", alice["id"], sock=sock, check="!0")
    assert "not held" in r.stderr

    # delete one, then the rest
    r = ctl_json(sock, "queue", "delete", alice["id"])
    assert r["deleted"] == 1
    assert [m["sender"] for m in queue(sock)] == ["bob@client.test"]
    assert wait_until(lambda: len(spool_list(d.spool)) == 1, 10), spool_list(d.spool)
    r = ctl("queue", "show", alice["id"], sock=sock, check="!0")
    assert "no such message: " + alice["id"] in r.stderr
    r = ctl_json(sock, "queue", "delete", "--all")
    assert r["deleted"] == 1
    assert queue(sock) == []
    assert ctl("queue", "list", sock=sock, check=0).stdout.strip() == "Mail queue is empty"
    assert wait_until(lambda: spool_list(d.spool) == [], 10), spool_list(d.spool)
    assert d.stop() == 0


def test_hold_survives_restart(daemon_factory, tmp_path, sock):
    d = hold_daemon(daemon_factory, tmp_path, sock)
    send(d, "keep@client.test", ["r@example.test"], message("held"))
    assert wait_until(lambda: len(queue(sock)) == 1, 10)
    mid = queue(sock)[0]["id"]
    ctl("queue", "hold", mid, sock=sock, check=0)
    assert d.stop() == 0
    d2 = hold_daemon(daemon_factory, tmp_path, sock, spool=d.spool)
    assert wait_until(lambda: len(queue(sock)) == 1, 10)
    assert queue(sock)[0]["state"] == "held"
    assert d2.stop() == 0


def test_bounce_by_operator(daemon_factory, tmp_path, sock):
    """The DSN goes to the sender, whose domain is held: it stays in the
    queue, from <>."""
    d = hold_daemon(daemon_factory, tmp_path, sock)
    send(d, "sender@client.test", ["a@example.test", "b@example.test"], message("Bounce me"))
    assert wait_until(lambda: len(queue(sock)) == 1, 10)
    mid = queue(sock)[0]["id"]
    r = ctl_json(sock, "queue", "bounce", mid)
    assert r["bounced"] == 2
    assert wait_until(lambda: by_sender(sock, "") and not [m for m in queue(sock)
                                                          if m["id"] == mid], 10), queue(sock)
    dsn = by_sender(sock, "")
    assert len(dsn) == 1, queue(sock)
    assert [x["addr"] for x in dsn[0]["rcpts"]] == ["sender@client.test"]
    txt = ctl("queue", "list", sock=sock, check=0).stdout
    assert "<>" in txt and "sender@client.test" in txt, txt
    sh = ctl_json(sock, "queue", "show", dsn[0]["id"])
    assert "multipart/report" in sh["headers"], sh["headers"]
    r = ctl("queue", "bounce", mid, sock=sock, check="!0")
    assert "no such message" in r.stderr
    assert d.stop() == 0


def test_flush_delivers_deferred_at_once(daemon_factory, tmp_path, sock):
    port = closed_port()
    ov = dict(ADMIN_OFF)
    d = start(daemon_factory, tmp_path, transport={"example.test": "smtp:127.0.0.1:%d" % port},
              retry={"min": "1h", "max": "1h", "max_age": "5d"}, control_socket=sock, **ov)
    send(d, "s@client.test", ["r@example.test"], message("flush me"))
    assert wait_until(lambda: [m for m in queue(sock) if m["state"] == "deferred"], 15), \
        queue(sock)
    m = queue(sock)[0]
    assert m["next_attempt"] and m["last_error"], m
    txt = ctl("queue", "list", sock=sock, check=0).stdout
    assert "(" + m["last_error"] + ")" in txt, txt
    with NextHop("127.0.0.1", port=port) as hop:
        time.sleep(1.0)  # nothing is retried on its own within the hour
        assert hop.count() == 0
        r = ctl_json(sock, "queue", "flush", "example.test")
        assert r["flushed"] == 1, r
        assert hop.wait_messages(1, timeout=10), hop.snapshot()
        assert wait_until(lambda: queue(sock) == [], 10), queue(sock)
    r = ctl_json(sock, "queue", "flush")
    assert r["flushed"] == 0
    assert d.stop() == 0


def test_flush_one_id(daemon_factory, tmp_path, sock):
    port = closed_port()
    ov = dict(ADMIN_OFF)
    d = start(daemon_factory, tmp_path, transport={"example.test": "smtp:127.0.0.1:%d" % port},
              retry={"min": "1h", "max": "1h", "max_age": "5d"}, control_socket=sock, **ov)
    send(d, "one@client.test", ["r@example.test"], message("1"))
    send(d, "two@client.test", ["r@example.test"], message("2"))
    assert wait_until(lambda: len([m for m in queue(sock) if m["state"] == "deferred"]) == 2,
                      15), queue(sock)
    one = by_sender(sock, "one@client.test")[0]["id"]
    with NextHop("127.0.0.1", port=port) as hop:
        assert ctl_json(sock, "queue", "flush", one)["flushed"] == 1
        assert hop.wait_messages(1, timeout=10)
        time.sleep(0.5)
        assert hop.count() == 1
        assert hop.messages[0].mail_from == "one@client.test"
        assert [m["sender"] for m in queue(sock)] == ["two@client.test"]
    r = ctl("queue", "flush", "00000000000000aa", sock=sock, check="!0")
    assert "no such message" in r.stderr
    assert d.stop() == 0


def test_errors(daemon_factory, tmp_path, sock):
    # no daemon at the socket
    r = ctl("status", sock=str(tmp_path / "nobody.sock"), check="!0")
    assert "no daemon at" in r.stderr and "nobody.sock" in r.stderr
    # usage errors need no daemon
    r = ctl("frobnicate", sock=sock, check="!0")
    assert r.returncode == 2 and "unknown verb 'frobnicate'" in r.stderr
    r = ctl("queue", "frob", sock=sock, check="!0")
    assert "unknown verb 'queue frob'" in r.stderr
    r = ctl("queue", sock=sock, check="!0")
    assert "needs a subverb" in r.stderr
    r = ctl("queue", "show", sock=sock, check="!0")
    assert r.returncode == 2 and "expected ID" in r.stderr
    r = ctl("--bogus", "status", check="!0")
    assert "unknown option" in r.stderr

    d = hold_daemon(daemon_factory, tmp_path, sock)
    r = ctl("queue", "show", "0123456789abcdef", sock=sock, check="!0")
    assert r.returncode == 1 and "no such message: 0123456789abcdef" in r.stderr
    r = ctl("queue", "hold", "not-an-id", sock=sock, check="!0")
    assert "bad argument 'not-an-id'" in r.stderr
    r = ctl("stop", "--now", sock=sock, check="!0")
    assert "unknown argument" in r.stderr
    # a raw client: unknown verb and malformed requests, one answer each
    for req, want in ((b'{"verb": "launch"}\n', "unknown verb 'launch'"),
                      (b'{"verb": "status", "args": [1]}\n', "array of strings"),
                      (b'not json\n', "JSON object"),
                      (b'{"verb": "queue show", "args": []}\n', "wrong number of arguments"),
                      (b'{"verb": "status", "args": ["' + b"x" * 20000 + b'"]}\n',
                       "longer than 8192 bytes")):
        c = socket.socket(socket.AF_UNIX)
        c.settimeout(10)
        c.connect(sock)
        c.sendall(req)
        ans = b""
        while True:
            b = c.recv(65536)
            if not b:
                break
            ans += b
        c.close()
        a = json.loads(ans)
        assert a["ok"] is False and want in a["error"], (req, a)
    # a client that sends nothing is cut off after the timeout, and the
    # server then serves the next one
    idle = socket.socket(socket.AF_UNIX)
    idle.connect(sock)
    t0 = time.monotonic()
    assert ctl_json(sock, "status")["pid"] == d.proc.pid
    assert time.monotonic() - t0 < 15
    idle.close()
    assert d.proc.poll() is None
    assert d.stop() == 0


def test_help(sock):
    r = ctl("--help", check=0)
    assert "queue list" in r.stdout and "bindings setprop" in r.stdout and "stop" in r.stdout
    r = ctl("queue", "--help", check=0)
    assert "queue flush [ID|DOMAIN]" in r.stdout and "bindings" not in r.stdout
    r = ctl("queue", "flush", "--help", check=0)
    assert r.stdout.startswith("usage: sluicectl") and "queue flush [ID|DOMAIN]" in r.stdout
    assert "deferred" in r.stdout
    for verb in (["status"], ["reload"], ["stop"], ["bindings"], ["bindings", "add"],
                 ["queue", "bounce"], ["queue", "delete"]):
        r = ctl(*verb, "--help", check=0)
        assert "usage: sluicectl" in r.stdout, verb
    r = ctl(check=None)
    assert r.returncode == 2 and "usage:" in r.stderr


def _world_dir():
    d = tempfile.mkdtemp(prefix="sctl-")
    os.chmod(d, 0o711)
    return d


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and setpriv to run sluicectl as nobody")
def test_permission_check(daemon_factory, tmp_path):
    wd = _world_dir()
    try:
        sock = os.path.join(wd, "ctl.sock")
        d = hold_daemon(daemon_factory, tmp_path, sock)
        # the file's mode keeps other users out
        r = ctl("status", sock=sock, user="nobody", check="!0")
        assert "Permission denied" in r.stderr, r.stderr
        # past the mode, the peer's uid is checked
        os.chmod(sock, 0o666)
        r = ctl("queue", "list", sock=sock, user="nobody", check="!0")
        assert "permission denied" in r.stderr and "uid 65534" in r.stderr, r.stderr
        r = ctl("stop", sock=sock, user="nobody", check="!0")
        assert d.proc.poll() is None
        assert d.wait_log(r"control: refused uid 65534", 5)
        # root still may
        assert ctl_json(sock, "status")["pid"] == d.proc.pid
        assert d.stop() == 0
    finally:
        shutil.rmtree(wd, ignore_errors=True)


def test_stop_drain_exits_zero(daemon_factory, tmp_path, sock):
    d = hold_daemon(daemon_factory, tmp_path, sock)
    send(d, "s@client.test", ["r@example.test"], message("kept"))
    r = ctl("stop", "--drain", sock=sock, check=0)
    assert "drain" in r.stdout
    assert d.proc.wait(30) == 0
    assert not os.path.exists(sock)
    assert len(spool_list(d.spool)) == 1  # acknowledged mail is kept


def test_stop_exits_zero(daemon_factory, tmp_path, sock):
    d = hold_daemon(daemon_factory, tmp_path, sock)
    ctl("stop", sock=sock, check=0)
    assert d.proc.wait(30) == 0


def test_reload(daemon_factory, tmp_path, sock):
    conf = tmp_path / "sluice.conf"
    good = ('control_socket = "%s";\ntransport { "example.test" = "hold"; }\n'
            'log_level = "info";\n' % sock)
    conf.write_text(good)
    d = daemon_factory(conf=str(conf), **ADMIN_OFF)
    r = ctl("reload", sock=sock, check=0)
    assert "reloaded" in r.stdout
    conf.write_text(good + "log_level = 17 {\n")  # does not parse
    r = ctl("reload", sock=sock, check="!0")
    assert "rejected" in r.stderr and "sluice.conf" in r.stderr, r.stderr
    assert ctl_json(sock, "status")["pid"] == d.proc.pid  # still running
    assert d.stop() == 0


def test_bindings_list(daemon_factory, tmp_path, sock):
    conf = tmp_path / "sluice.conf"
    conf.write_text('control_socket = "%s";\nrelayhost = "hold";\n'
                    'binding "tagger" { event = "eod"; sink = "builtin:noop"; }\n' % sock)
    d = daemon_factory(conf=str(conf), **ADMIN_OFF)
    send(d, "s@client.test", ["r@example.test"], message("through the chain"))
    r = ctl_json(sock, "bindings", "list")
    assert "tagger" in r["chains"] and "tagger" in r["stats"]
    txt = ctl("bindings", "list", sock=sock, check=0).stdout
    line = [l for l in txt.splitlines() if l.startswith("tagger") and "eod" in l]
    assert line and " 1 " in line[-1], txt  # one call
    assert d.stop() == 0


def test_bindings_live_changes_written_back(daemon_factory, tmp_path, sock):
    conf = tmp_path / "sluice.conf"
    conf.write_text('control_socket = "%s";\nrelayhost = "hold";\n'
                    'binding "tagger" { event = "eod"; sink = "builtin:noop"; }\n' % sock)
    d = daemon_factory(conf=str(conf), **ADMIN_OFF)
    ctl("bindings", "disable", "tagger", sock=sock, check=0)
    assert "enabled = false" in conf.read_text(), conf.read_text()
    ctl("bindings", "enable", "tagger", sock=sock, check=0)
    assert "enabled = true" in conf.read_text(), conf.read_text()
    r = ctl("bindings", "add", "hdr", "event=eod", "sink=builtin:header", "priority=100",
            "prop.name=X-Ctl", "prop.value=added", sock=sock, check=0)
    assert "hdr" in r.stdout
    assert 'binding "hdr"' in conf.read_text(), conf.read_text()
    send(d, "s@client.test", ["r@example.test"], message("tag me"))
    assert wait_until(lambda: len(queue(sock)) == 1, 10)
    assert "X-Ctl: added" in ctl_json(sock, "queue", "show", queue(sock)[0]["id"])["headers"]
    ctl("bindings", "setprop", "hdr", "value", "changed", sock=sock, check=0)
    assert "changed" in conf.read_text()
    r = ctl("bindings", "remove", "nosuch", sock=sock, check="!0")
    assert "nosuch" in r.stderr
    ctl("bindings", "remove", "hdr", sock=sock, check=0)
    assert 'binding "hdr"' not in conf.read_text()
    assert "hdr" not in ctl_json(sock, "bindings", "list")["chains"]
    assert d.stop() == 0
