"""Bounds from docs/limits.md that had no test of their own: a configured
max_line_length, the outbound command_timeout and connect_timeout, the end
of an AUTH failure window, sink deadlines and the per-worker pending bound
of a hung sink.  Each against the real daemon on loopback."""
import os
import re
import socket
import time

import pytest

from conftest import assert_reply, raw_session, spool_cat, spool_list
from delivery_util import message, send, start, wait_until
from nexthop import NextHop
from test_auth import plain, tls_client, write_conf, write_users


def test_max_line_length_configured(daemon_factory):
    d = daemon_factory(max_line_length=100)
    c = raw_session(d.port)
    try:
        ok = b"x" * 100 + b"\r\n"
        assert_reply(c.cmd("MAIL FROM:<len@example.test>"), 250)
        assert_reply(c.cmd("RCPT TO:<r@example.test>"), 250)
        assert_reply(c.cmd("DATA"), 354)
        c.send(b"Subject: l\r\n\r\n" + ok + b".\r\n")
        assert_reply(c.reply(), 250)
        assert_reply(c.cmd("MAIL FROM:<len2@example.test>"), 250)
        assert_reply(c.cmd("RCPT TO:<r@example.test>"), 250)
        assert_reply(c.cmd("DATA"), 354)
        c.send(b"Subject: l\r\n\r\n" + b"y" * 101 + b"\r\n.\r\n")
        assert_reply(c.reply(), 550, "5.5.2")
    finally:
        c.close()
    msgs = spool_list(d.spool)
    assert [m["sender"] for m in msgs] == ["len@example.test"]
    assert spool_cat(d.spool, msgs[0]["id"]).endswith(ok)


def test_command_timeout_to_a_stalled_next_hop(daemon_factory, tmp_path):
    """A next hop slower than command_timeout to answer the end of data:
    the attempt is given up at the bound and retried; once the hop is quick
    the message goes out, once (the stalled attempt was never recorded)."""
    hop = NextHop("127.0.0.1", delay=4.0).start()
    try:
        d = start(daemon_factory, tmp_path, relayhost=hop.addr, command_timeout="1s")
        t0 = time.monotonic()
        assert send(d, "sender@client.test", "r@example.test", message(tag="ct")) == {}
        assert d.wait_log(r"timed out|timeout", timeout=10), d.log()
        took = time.monotonic() - t0
        assert took < 4.0, took  # given up before the hop would have answered
        hop.set_delay(0)
        assert hop.wait_messages(1, timeout=20), d.log()
        assert wait_until(lambda: not spool_list(d.spool), 10)
        time.sleep(1)
        assert len(hop.messages) == 1
        assert d.stop() == 0
    finally:
        hop.stop()


def test_connect_timeout(daemon_factory, tmp_path):
    """A next hop whose listen queue is full never completes the handshake:
    the connect is given up after connect_timeout and the message waits."""
    lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lst.bind(("127.0.0.1", 0))
    lst.listen(0)
    port = lst.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):  # fill the accept queue; later SYNs are dropped
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            fillers.append(s)
        time.sleep(0.2)
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(("127.0.0.1", port))
            pytest.skip("this kernel completes connects past a full listen queue")
        except (socket.timeout, OSError):
            pass
        finally:
            probe.close()
        d = start(daemon_factory, tmp_path, relayhost="127.0.0.1:%d" % port,
                  connect_timeout="1s")
        t0 = time.monotonic()
        assert send(d, "sender@client.test", "r@example.test", message(tag="cto")) == {}
        assert d.wait_log(r"connect to 127\.0\.0\.1\[127\.0\.0\.1\]:%d: timed out" % port,
                          timeout=10), d.log()
        assert time.monotonic() - t0 < 4.0
        assert len(spool_list(d.spool)) == 1  # still queued
        assert d.stop() == 0
    finally:
        for s in fillers:
            s.close()
        lst.close()


def test_auth_failure_window_ends(tmp_path, daemon_factory):
    """auth_max_failures within auth_failure_window block the network (421);
    once the window is over the same client is checked again."""
    users = tmp_path / "users"
    write_users(users, {"bob": "secret"})
    d = daemon_factory(conf=write_conf(tmp_path, users, max_failures=2,
                                       extra="auth_failure_window = 1s;\n"))
    s = tls_client(d.port)
    for _ in range(2):
        assert s.docmd("AUTH", "PLAIN " + plain("eve", "guess"))[0] == 535
    code, text = s.docmd("AUTH", "PLAIN " + plain("eve", "guess"))
    assert code == 421, text
    s.close()
    time.sleep(1.2)
    s = tls_client(d.port)
    assert s.docmd("AUTH", "PLAIN " + plain("bob", "secret"))[0] == 235
    s.close()


HUNG = """
binding "hung" {
  event = "eod"; sink = "builtin:delay"; deadline = "%s";
  properties { never = true; }
}
"""


@pytest.mark.parametrize("deadline,low,high", [("300ms", 0.25, 1.3), ("2s", 1.9, 3.0)])
def test_sink_deadline_bounds_the_wait(daemon_factory, tmp_path, deadline, low, high):
    p = tmp_path / "hung.conf"
    p.write_text(HUNG % deadline)
    d = daemon_factory(conf=str(p))
    c = raw_session(d.port)
    try:
        assert_reply(c.cmd("MAIL FROM:<h@example.test>"), 250)
        assert_reply(c.cmd("RCPT TO:<r@example.test>"), 250)
        assert_reply(c.cmd("DATA"), 354)
        t0 = time.monotonic()
        c.send(b"Subject: h\r\n\r\nx\r\n.\r\n")
        assert_reply(c.reply(), 451, "4.7.1")
        assert low <= time.monotonic() - t0 < high
    finally:
        c.close()


@pytest.mark.parametrize("bad", ['"0ms"', '"2h"'])
def test_sink_deadline_out_of_range_is_a_startup_error(tmp_path, bad):
    import subprocess
    from conftest import SLUICED
    p = tmp_path / "bad.conf"
    p.write_text(HUNG.replace('"%s"', bad))
    r = subprocess.run([SLUICED, "-c", str(p), "--check"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode != 0, r.stderr
    assert "deadline" in r.stderr, r.stderr
