"""The queue manager delivering to real next hops: smtp-sink (Postfix) under
smtp-source load, and the scripted aiosmtpd next hop of nexthop.py for
4xx-then-2xx, a connection dropped mid-DATA, a reply lost after the
content, a dead next hop (destination backoff), and the transport sinks
(builtin:alias, builtin:route) end to end."""
import os
import re
import shutil
import socket
import subprocess
import threading
import time

import pytest

from conftest import SLUICED, spool_list
from delivery_util import (message, outcomes, qmgr_log, queue_counters, send, send_many,
                           start, wait_hop, wait_spool_empty, wait_until)
from nexthop import NextHop, closed_port

SMTP_SINK = "/usr/sbin/smtp-sink"
SMTP_SOURCE = "/usr/sbin/smtp-source"


# ---- smtp-sink as a counting next hop ----

class SmtpSink:
    """smtp-sink -c on 127.0.0.1:PORT; its running counters
    ("sess=S quit=Q mesg=M") are read from its standard output."""

    def __init__(self):
        self.port = closed_port()
        self.mesg = 0
        self.sess = 0
        args = [SMTP_SINK, "-4", "-c", "-m", "256", "-h", "sink.test"]
        if os.getuid() == 0:
            args += ["-u", "nobody"]  # as root it insists on dropping privileges
        args += ["127.0.0.1:%d" % self.port, "256"]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        threading.Thread(target=self._read, daemon=True).start()
        ok = wait_until(self._listening, 10)
        if not ok:
            self.stop()
            raise RuntimeError("smtp-sink did not listen: %r" % self.proc.stderr.read())

    def _listening(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def _read(self):
        buf = b""
        while True:
            b = self.proc.stdout.read1(4096) if hasattr(self.proc.stdout, "read1") \
                else self.proc.stdout.read(1)
            if not b:
                return
            buf = (buf + b)[-4096:]
            for m in re.finditer(rb"sess=(\d+) quit=(\d+) mesg=(\d+)", buf):
                self.sess = int(m.group(1))
                self.mesg = int(m.group(3))

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def smtp_sink():
    if not (os.path.exists(SMTP_SINK) and os.path.exists(SMTP_SOURCE)):
        pytest.skip("postfix's smtp-sink/smtp-source are not installed")
    s = SmtpSink()
    yield s
    s.stop()


@pytest.fixture
def hop():
    """A scripted next hop on 127.0.0.1 (tests set hop.data etc. before
    mail arrives)."""
    h = NextHop("127.0.0.1").start()
    yield h
    h.stop()


def test_relay_200_messages_to_smtp_sink(daemon_factory, tmp_path, smtp_sink):
    """smtp-source, 200 messages over 8 sessions -> sluiced -> smtp-sink:
    every message arrives, nothing stays in the spool, connections are
    reused (far fewer connections than messages)."""
    d = start(daemon_factory, tmp_path, relayhost=smtp_sink.addr, delivery_concurrency=4)
    r = subprocess.run([SMTP_SOURCE, "-s", "8", "-m", "200", "-l", "2048",
                        "-f", "sender@client.test", "-t", "rcpt@example.test",
                        "127.0.0.1:%d" % d.port], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert wait_until(lambda: smtp_sink.mesg >= 200, 30), \
        "smtp-sink counted %d of 200\n%s" % (smtp_sink.mesg, qmgr_log(d)[-3000:])
    assert wait_spool_empty(d.spool, 15), spool_list(d.spool)[:3]
    assert d.stop() == 0
    q = queue_counters(d)
    assert q, d.log()[-2000:]
    print("relay 200: %s" % q)
    assert q["delivered"] == 200, q
    assert q["queued"] == 0 and q["failed"] == 0 and q["bounces"] == 0, q
    # reuse: at most delivery_concurrency connections at a time; 200
    # messages over a few dozen connections at most
    assert q["connections"] <= 40, q
    assert q["reused"] >= 200 - q["connections"], q
    # smtp-sink saw the same number of sessions as the counter says
    assert smtp_sink.mesg == 200


def test_451_then_250_retried(daemon_factory, tmp_path, hop):
    """451 at the first attempt: the message is deferred (sluice-spool list
    shows attempts and the 451 as the last error), then delivered on the
    retry about retry.min (1 s) later."""
    hop.data = ["451 4.3.0 try again later"]
    d = start(daemon_factory, tmp_path, relayhost=hop.addr)
    t0 = time.monotonic()
    send(d, "sender@client.test", ["rcpt@example.test"], message("retry me"))
    seen = {}

    def deferred_state():
        for m in spool_list(d.spool):
            if m.get("attempts", 0) >= 1:
                seen.update(m)
                return True
        return hop.count() > 0  # too late to see it (should not happen with 1 s)

    assert wait_until(deferred_state, 10, 0.02), qmgr_log(d)
    assert seen, "the deferral was never visible in sluice-spool list:\n" + qmgr_log(d)
    assert seen["attempts"] == 1, seen
    assert "451" in seen["last_error"] and "try again later" in seen["last_error"], seen
    assert [x["state"] for x in seen["delivery"]] == ["pending"], seen
    assert seen["next_attempt_ms"] > seen["arrival_ms"], seen

    assert wait_hop(d, hop, 1), qmgr_log(d)
    took = time.monotonic() - t0
    assert 0.8 <= took < 12, took
    m = hop.messages[0]
    assert m.rcpt_tos == ["rcpt@example.test"] and m.mail_from == "sender@client.test"
    assert m.header("Subject") == "retry me"
    assert [a[1] for a in hop.attempts] == ["451 4.3.0 try again later", "250"]
    assert wait_spool_empty(d.spool, 10), spool_list(d.spool)
    assert outcomes(d, kind="deferred") and outcomes(d, kind="delivered"), qmgr_log(d)
    assert "451" in outcomes(d, kind="deferred")[0][4]
    assert d.stop() == 0
    q = queue_counters(d)
    assert q["delivered"] == 1 and q["failed"] == 0 and q["queued"] == 0, q


def test_drop_mid_data_then_delivered_once(daemon_factory, tmp_path, hop):
    """The next hop closes the connection after a line of the content: the
    message is deferred, then delivered exactly once when the next hop
    behaves.

    Found a queue-manager crash (fixed in d7c8014): a close from inside
    osmtp's callbacks freed the connection under qmgr_conn_cqe."""
    hop.data = ["drop"]
    d = start(daemon_factory, tmp_path, relayhost=hop.addr)
    send(d, "sender@client.test", ["rcpt@example.test"], message("dropped"))
    assert wait_until(lambda: outcomes(d, kind="deferred"), 10), qmgr_log(d)
    assert wait_hop(d, hop, 1), qmgr_log(d)
    assert wait_spool_empty(d.spool, 10), spool_list(d.spool)
    # no second copy later (retry max is 2 s: wait past it)
    time.sleep(2.5)
    assert hop.count() == 1, hop.snapshot()
    assert hop.messages[0].header("Subject") == "dropped"
    assert len(outcomes(d, kind="delivered")) == 1, qmgr_log(d)
    assert [a[1] for a in hop.attempts] == ["drop", "250"], hop.attempts


def test_reply_lost_after_content_duplicates_once(daemon_factory, tmp_path, hop):
    """The content arrives but the connection closes before the reply:
    sluice cannot know, so it retries; the next hop gets the message again
    (the only case where a duplicate is expected) and then it is done."""
    hop.data = ["lost"]
    d = start(daemon_factory, tmp_path, relayhost=hop.addr)
    send(d, "sender@client.test", ["rcpt@example.test"], message("lost reply"))
    assert wait_hop(d, hop, 1), qmgr_log(d)
    assert wait_spool_empty(d.spool, 10), spool_list(d.spool)
    assert [a[1] for a in hop.attempts] == ["lost", "250"], hop.attempts
    assert len(outcomes(d, kind="deferred")) == 1, qmgr_log(d)


def test_dead_next_hop_backed_off_as_a_whole(daemon_factory, tmp_path, hop):
    """Nothing listens on the next hop's port: deferred with "connect" in
    the last error; with several messages the destination is backed off
    after destination_failure_limit failed connections, and the rest are
    deferred without a connection each; a message arriving during the
    backoff too.  Another destination is served meanwhile."""
    port = closed_port()
    d = start(daemon_factory, tmp_path, relayhost="127.0.0.1:%d" % port,
              transport={"live.test": "smtp:" + hop.addr},
              retry={"min": "3s", "max": "6s"}, destination_failure_limit=3,
              delivery_concurrency=2)
    n = 10
    send_many(d.port, [("sender@client.test", ["rcpt%d@example.test" % i],
                        message("dead %d" % i)) for i in range(n)])

    def all_deferred():
        ms = spool_list(d.spool)
        return len(ms) == n and all(m.get("attempts", 0) >= 1 for m in ms) and ms

    ms = wait_until(all_deferred, 10)
    assert ms, (spool_list(d.spool), qmgr_log(d))
    for m in ms:
        assert "connect" in m["last_error"], m
    assert d.wait_log(r"qmgr: destination \S+: \d+ failed connections: backed off", 5), \
        qmgr_log(d)
    # one round (retry min is 3 s): a connection per message would be n
    # "connect to" lines; the backoff keeps it at about the limit
    connect = r"qmgr: connect to 127\.0\.0\.1\S*:%d" % port
    connects = len(re.findall(connect, d.log()))
    assert 1 <= connects <= 3 + 2, (connects, qmgr_log(d))
    assert len(outcomes(d, kind="deferred")) == n, qmgr_log(d)

    # during the backoff: a new message for it is deferred without a
    # connection, one for another destination is delivered at once
    send(d, "sender@client.test", ["late@example.test"], message("during backoff"))
    send(d, "sender@client.test", ["x@live.test"], message("elsewhere"))
    assert wait_hop(d, hop, 1, 5), qmgr_log(d)
    assert wait_until(lambda: outcomes(d, "late@example.test", "deferred"), 5), qmgr_log(d)
    assert len(re.findall(connect, d.log())) == connects, qmgr_log(d)
    assert d.stop() == 0
    q = queue_counters(d)
    assert q["queued"] == n + 1 and q["delivered"] == 1, q


# ---- transport sinks end to end ----

def _daemon_has_sinks():
    if not os.path.exists(SLUICED):
        return False
    # (LeakSanitizer would turn a small leak at exit into a failure here)
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0")
    r = subprocess.run([SLUICED, "--bindings"], capture_output=True, text=True, timeout=30,
                       env=env)
    return r.returncode == 0


SINKS = """
binding "aliases" {
  event = categorize; sink = "builtin:alias";
  properties {
    "team@example.test" = "alice@example.test, bob@example.test";
  }
}
binding "routes" {
  event = route; sink = "builtin:route";
  properties {
    "partner.test" = "smtp:%s";
  }
}
"""


@pytest.mark.skipif(not _daemon_has_sinks(), reason="sluiced has no sink engine")
def test_alias_and_route_sinks(daemon_factory, tmp_path, hop):
    """builtin:alias expands team@ into two recipients, both delivered to
    the relayhost; builtin:route sends partner.test to a second next hop
    instead of the relayhost."""
    with NextHop("127.0.0.1") as partner:
        d = start(daemon_factory, tmp_path, relayhost=hop.addr,
                  extra=SINKS % partner.addr)
        send(d, "sender@client.test", ["team@example.test"], message("to the team"))
        send(d, "sender@client.test", ["x@partner.test", "y@example.test"],
             message("split"))
        assert wait_until(lambda: hop.count() >= 2 and partner.count() >= 1, 15), \
            (hop.snapshot(), partner.snapshot(), qmgr_log(d))
        assert wait_spool_empty(d.spool, 10), spool_list(d.spool)
        got = {}
        for m in hop.snapshot():
            got.setdefault(m.header("Subject"), []).extend(r.lower() for r in m.rcpt_tos)
        assert sorted(got["to the team"]) == ["alice@example.test", "bob@example.test"], got
        assert got["split"] == ["y@example.test"], got
        pm = partner.snapshot()
        assert len(pm) == 1 and pm[0].rcpt_tos == ["x@partner.test"], pm
        assert pm[0].header("Subject") == "split"
        assert not any(r.lower() == "team@example.test" for r in hop.rcpt_seen)


# ---- limits and routes ----

def test_concurrency_limit_per_destination(daemon_factory, tmp_path):
    """delivery_concurrency 2 and a next hop slow to answer: never more
    than 2 connections open at once, all 12 messages delivered."""
    with NextHop("127.0.0.1", delay=0.2) as slow:
        d = start(daemon_factory, tmp_path, relayhost=slow.addr, delivery_concurrency=2)
        send_many(d.port, [("sender@client.test", ["r%d@example.test" % i],
                            message("conc %d" % i)) for i in range(12)])
        assert wait_until(lambda: slow.count() >= 12, 30), qmgr_log(d)
        assert wait_spool_empty(d.spool, 10), spool_list(d.spool)
        assert slow.max_open <= 2, slow.max_open
        assert slow.max_open == 2, "the limit was never reached: %d" % slow.max_open
        assert d.stop() == 0
        q = queue_counters(d)
        assert q["delivered"] == 12 and q["connections"] <= 4, q


def test_8bit_message_to_a_next_hop_without_8bitmime(daemon_factory, tmp_path):
    """BODY=8BITMIME with 8-bit content, next hop without 8BITMIME: not
    sent there; the sender gets a bounce that says why; a 7-bit message
    to the same next hop goes through."""
    import smtplib
    from test_bounce import parse_report
    with NextHop("127.0.0.1", without=["8BITMIME", "SMTPUTF8"]) as hop, \
            NextHop("127.0.0.1") as home:
        d = start(daemon_factory, tmp_path,
                  transport={"example.test": "smtp:" + hop.addr,
                             "client.test": "smtp:" + home.addr})
        with smtplib.SMTP("127.0.0.1", d.port, timeout=20) as s:
            s.ehlo("client.test")
            s.sendmail("sender@client.test", ["u@example.test"],
                       b"Subject: eight bit\r\nContent-Type: text/plain; charset=utf-8\r\n"
                       b"Content-Transfer-Encoding: 8bit\r\n\r\ngr\xc3\xbc\xc3\x9fe\r\n",
                       mail_options=["BODY=8BITMIME"])
        send(d, "sender@client.test", ["v@example.test"], message("seven bit"))
        assert wait_until(lambda: home.count() >= 1 and hop.count() >= 1, 15), \
            (hop.snapshot(), home.snapshot(), qmgr_log(d))
        assert [m.header("Subject") for m in hop.snapshot()] == ["seven bit"]
        _, r, h = parse_report(home.messages[0].data)
        assert r[0]["Final-Recipient"].lower().endswith("u@example.test"), r
        assert r[0]["Action"].lower() == "failed", r
        assert r[0]["Status"].startswith("5."), r
        assert "8BITMIME" in r[0]["Diagnostic-Code"], r
        assert "Subject: eight bit" in h
        assert wait_spool_empty(d.spool, 10), spool_list(d.spool)


def test_error_and_discard_routes(daemon_factory, tmp_path):
    """transport error:5.1.2 bounces with that status and text; error:4.x.x
    defers; discard drops the mail (logged), nothing is sent."""
    from test_bounce import parse_report
    with NextHop("127.0.0.1") as home:
        d = start(daemon_factory, tmp_path,
                  transport={"client.test": "smtp:" + home.addr,
                             "bad.test": "error:5.1.2 no mail for bad.test",
                             "later.test": "error:4.3.2 not now",
                             "void.test": "discard"})
        send(d, "sender@client.test", ["u@bad.test"], message("to bad"))
        send(d, "sender@client.test", ["u@void.test"], message("to void"))
        send(d, "sender@client.test", ["u@later.test"], message("to later"))
        assert wait_until(lambda: home.count() >= 1, 15), qmgr_log(d)
        _, r, _ = parse_report(home.messages[0].data)
        assert r[0]["Status"] == "5.1.2", r
        assert "no mail for bad.test" in r[0]["Diagnostic-Code"], r
        assert d.wait_log(r"<u@void\.test> discarded", 10), qmgr_log(d)
        assert wait_until(lambda: [m for m in spool_list(d.spool)
                                   if m.get("attempts", 0) >= 1], 10), spool_list(d.spool)
        left = spool_list(d.spool)
        assert [m["rcpts"] for m in left] == [["u@later.test"]], left
        assert "not now" in left[0]["last_error"], left
        time.sleep(0.3)
        assert home.count() == 1, home.snapshot()


def test_connection_cache(daemon_factory, tmp_path, hop):
    """connection_cache_time 3 s: a second message 0.5 s after the first
    goes over the same connection; with 0.3 s the idle connection is closed
    soon after the delivery (the next hop sees it go)."""
    d = start(daemon_factory, tmp_path, relayhost=hop.addr, connection_cache_time="3s")
    send(d, "sender@client.test", ["a@example.test"], message("one"))
    assert wait_hop(d, hop, 1), qmgr_log(d)
    time.sleep(0.5)
    send(d, "sender@client.test", ["b@example.test"], message("two"))
    assert wait_hop(d, hop, 2), qmgr_log(d)
    assert hop.connections == 1, hop.connections
    assert hop.messages[0].conn == hop.messages[1].conn
    assert d.stop() == 0
    assert queue_counters(d)["reused"] >= 1, queue_counters(d)

    with NextHop("127.0.0.1") as h2:
        d2 = start(daemon_factory, tmp_path, relayhost=h2.addr, spool=str(tmp_path / "s2"),
                   connection_cache_time="300ms")
        send(d2, "sender@client.test", ["c@example.test"], message("three"))
        assert wait_hop(d2, h2, 1), qmgr_log(d2)
        t = time.monotonic()
        assert wait_until(lambda: h2.open_now == 0, 5), h2.open_now
        assert time.monotonic() - t < 3
        assert h2.connections == 1


def test_global_connection_limit_shared_between_destinations(daemon_factory, tmp_path):
    """delivery_connections 1 and a long connection_cache_time: the one
    connection cached idle for the first destination gives its slot up when
    the second destination has mail, instead of holding it for 30 s."""
    with NextHop("127.0.0.1") as a, NextHop("127.0.0.1") as b:
        d = start(daemon_factory, tmp_path,
                  transport={"a.test": "smtp:" + a.addr, "b.test": "smtp:" + b.addr},
                  delivery_connections=1, connection_cache_time="30s")
        t0 = time.monotonic()
        send(d.port, "sender@client.test", ["x@a.test"], message("to a"))
        assert wait_until(lambda: a.count() >= 1, 10), qmgr_log(d)
        send(d.port, "sender@client.test", ["y@b.test"], message("to b"))
        send(d.port, "sender@client.test", ["z@a.test"], message("to a again"))
        assert wait_until(lambda: b.count() >= 1 and a.count() >= 2, 10), \
            (a.snapshot(), b.snapshot(), qmgr_log(d))
        assert time.monotonic() - t0 < 10
        assert a.max_open <= 1 and b.max_open <= 1
        assert d.stop() == 0
