"""Event sinks in the real daemon: bindings from a configuration file, the
builtins (access, header, delay, command), the example modules loaded by
path, deadlines, `sluiced --bindings` and start-up errors."""
import os
import re
import subprocess
import threading
import time

import pytest

from conftest import (BUILD, SLUICED, Raw, assert_reply, find_by_sender,
                      msg_rcpts, raw_session, spool_cat, spool_list)

LIB = os.path.join(BUILD, "lib")
QUEUED = re.compile(r"queued as ([0-9a-f]{16})")


def _daemon_has_sinks():
    """The daemon is wired to the sink engine (`--bindings` exists)."""
    if not os.path.exists(SLUICED):
        return False
    r = subprocess.run([SLUICED, "--bindings"], capture_output=True, text=True,
                       timeout=30)
    return r.returncode == 0


pytestmark = pytest.mark.skipif(
    not _daemon_has_sinks(),
    reason="sluiced is not wired to the sink engine yet (no --bindings)")


def conf_file(tmp_path, text, name="sinks.conf"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def send_message(c, sender, rcpts, body, expect_rcpt=250):
    """MAIL, RCPTs, DATA, body, dot on a Raw session past EHLO; returns the
    final reply (code, text)."""
    assert_reply(c.cmd("MAIL FROM:<%s>" % sender), 250)
    for r in rcpts:
        assert c.cmd("RCPT TO:<%s>" % r)[0] == expect_rcpt
    assert_reply(c.cmd("DATA"), 354)
    c.send(body + b".\r\n")
    return c.reply()


def queued_id(text):
    m = QUEUED.search(text)
    assert m, text
    return m.group(1)


# ---- builtin:access ----

ACCESS = """
binding "no-spam" {
  event = "mail"; sink = "builtin:access"; priority = 1000;
  rule = "MAIL FROM=*@spam.example";
  properties { action = "reject"; text = "sender refused"; }
}
binding "later" {
  event = "rcpt"; sink = "builtin:access"; priority = 1000;
  rule = "RCPT TO=*@later.example";
  properties { action = "tempfail"; }
}
binding "partners" {
  event = "rcpt"; sink = "builtin:access"; priority = 500;
  rule = "RCPT TO=*@foreign.example";
  properties { action = "accept"; }
}
"""


def test_access_reject_tempfail_accept(daemon_factory, tmp_path):
    # 127.0.0.1 is not in mynetworks: relay control applies to this client
    d = daemon_factory(conf=conf_file(tmp_path, ACCESS),
                       mynetworks='["10.255.255.0/24"]')
    c = raw_session(d.port)
    assert_reply(c.cmd("MAIL FROM:<x@spam.example>"), 550, "5.7.1")
    assert_reply(c.cmd("MAIL FROM:<x@good.example>"), 250)
    assert_reply(c.cmd("RCPT TO:<a@later.example>"), 450, "4.7.1")
    assert_reply(c.cmd("RCPT TO:<a@foreign.example>"), 250)  # relay control overridden
    assert_reply(c.cmd("RCPT TO:<b@other.example>"), 554, "5.7.1")  # relay denied
    assert_reply(c.cmd("RCPT TO:<c@example.test>"), 250)
    assert_reply(c.cmd("DATA"), 354)
    c.send(b"Subject: access\r\n\r\nhi\r\n.\r\n")
    code, text = c.reply()
    assert code == 250, text
    msgs = find_by_sender(d.spool, "x@good.example")
    assert len(msgs) == 1
    assert msg_rcpts(msgs[0]) == ["a@foreign.example", "c@example.test"]
    assert c.cmd("QUIT")[0] == 221
    assert d.wait_log(r'binding "no-spam": reject'), d.log()


# ---- builtin:header, cat and cat --raw ----

def test_header_sink_visible_in_cat(daemon_factory, tmp_path):
    d = daemon_factory(conf=conf_file(tmp_path, """
binding "scanned" {
  event = "eod"; sink = "builtin:header";
  properties { name = "X-Scanned"; value = "yes"; }
}
"""))
    c = raw_session(d.port)
    body = b"Subject: scanned\r\nFrom: a@example.test\r\n\r\nhello\r\n"
    code, text = send_message(c, "h@example.test", ["b@example.test"], body)
    assert code == 250, text
    qid = queued_id(text)
    edited = spool_cat(d.spool, qid)
    assert edited.startswith(b"Received: ")
    # right after the Received: header the server prepended
    m = re.match(rb"Received: [^\r]*\r\n(\t[^\r]*\r\n)*X-Scanned: yes\r\n", edited)
    assert m, edited[:400]
    assert edited.endswith(body)
    raw = subprocess.run([os.path.join(BUILD, "bin", "sluice-spool"), d.spool, "cat",
                          "--raw", qid], check=True, capture_output=True,
                         timeout=60).stdout
    assert b"X-Scanned" not in raw
    assert raw.endswith(body)
    assert [m["edits"] for m in spool_list(d.spool)] == [1]


# ---- builtin:delay: pending, deadlines ----

def test_delayed_eod_still_delivers(daemon_factory, tmp_path):
    d = daemon_factory(conf=conf_file(tmp_path, """
binding "slow" {
  event = "eod"; sink = "builtin:delay"; deadline = "3s";
  properties { ms = 200; }
}
"""))
    c = raw_session(d.port)
    t0 = time.monotonic()
    code, text = send_message(c, "slow@example.test", ["b@example.test"],
                              b"Subject: slow\r\n\r\nx\r\n")
    waited = time.monotonic() - t0
    assert code == 250, text
    assert waited >= 0.2, waited
    assert [m["id"] for m in find_by_sender(d.spool, "slow@example.test")] == [queued_id(text)]


def test_hung_sink_costs_4xx_within_deadline(daemon_factory, tmp_path):
    d = daemon_factory(conf=conf_file(tmp_path, """
binding "hung" {
  event = "eod"; sink = "builtin:delay"; deadline = "500ms";
  rule = "MAIL FROM=hung@*";
  properties { never = true; }
}
"""))
    result = {}

    def hung_client():
        c = raw_session(d.port)
        assert_reply(c.cmd("MAIL FROM:<hung@example.test>"), 250)
        assert_reply(c.cmd("RCPT TO:<b@example.test>"), 250)
        assert_reply(c.cmd("DATA"), 354)
        t0 = time.monotonic()
        c.send(b"Subject: hung\r\n\r\nx\r\n.\r\n")
        result["reply"] = c.reply()
        result["waited"] = time.monotonic() - t0
        c.close()

    th = threading.Thread(target=hung_client)
    th.start()
    time.sleep(0.1)
    # meanwhile other sessions flow, on whichever worker they land
    for i in range(4):
        c = raw_session(d.port)
        t0 = time.monotonic()
        code, text = send_message(c, "other%d@example.test" % i, ["b@example.test"],
                                  b"Subject: other\r\n\r\nx\r\n")
        assert code == 250, text
        assert time.monotonic() - t0 < 0.4
        c.close()
    th.join(10)
    code, text = result["reply"]
    assert code == 451, text
    assert text.startswith("451 4.7.1"), text
    assert 0.45 <= result["waited"] < 0.5 + 1.0, result["waited"]
    assert find_by_sender(d.spool, "hung@example.test") == []
    assert len(spool_list(d.spool)) == 4


def test_discard_and_quarantine(daemon_factory, tmp_path):
    d = daemon_factory(conf=conf_file(tmp_path, """
binding "bin" {
  event = "eod"; sink = "builtin:delay"; rule = "MAIL FROM=bin@*";
  properties { verdict = "discard"; }
}
binding "apart" {
  event = "eod"; sink = "builtin:delay"; rule = "MAIL FROM=apart@*";
  properties { verdict = "quarantine"; }
}
"""))
    c = raw_session(d.port)
    code, text = send_message(c, "bin@example.test", ["b@example.test"], b"x\r\n")
    assert code == 250 and QUEUED.search(text), text
    code, text = send_message(c, "apart@example.test", ["b@example.test"], b"y\r\n")
    assert code == 250, text
    msgs = spool_list(d.spool)
    assert [m["sender"] for m in msgs] == ["apart@example.test"]
    assert msgs[0]["quarantine"] is True
    listing = subprocess.run([os.path.join(BUILD, "bin", "sluice-spool"), d.spool, "list"],
                             check=True, capture_output=True, text=True).stdout
    assert " quarantine <apart@example.test>" in listing, listing


# ---- builtin:command ----

def test_command_sink_adds_a_verb(daemon_factory, tmp_path):
    d = daemon_factory(conf=conf_file(tmp_path, """
binding "xhello" {
  event = "command"; sink = "builtin:command"; priority = 100;
  properties { verb = "XHELLO"; code = 250; text = "hello from a sink"; }
}
"""))
    c = raw_session(d.port)
    code, text = c.cmd("XHELLO")
    assert (code, text) == (250, "250 hello from a sink")
    assert c.cmd("xhello with args") == (250, "250 hello from a sink")
    assert_reply(c.cmd("XGOODBYE"), 500, "5.5.2")
    assert_reply(c.cmd("NOOP"), 250, "2.0.0")
    assert c.cmd("QUIT")[0] == 221


# ---- the example modules, loaded by path ----

def test_example_modules(daemon_factory, tmp_path):
    tag = os.path.join(LIB, "tag_sender.so")
    score = os.path.join(LIB, "async_score.so")
    assert os.path.exists(tag) and os.path.exists(score), os.listdir(LIB)
    d = daemon_factory(conf=conf_file(tmp_path, """
binding "tag-mail" {
  event = "mail"; sink = "%(tag)s";
  properties { pattern = "*@blocked.example"; }
}
binding "tag-eod" {
  event = "eod"; sink = "%(tag)s"; priority = 100;
  properties { header = "X-Sender-Domain"; }
}
binding "score" {
  event = "eod"; sink = "%(score)s"; priority = 200; deadline = "2s";
  properties { word = "viagra"; threshold = 2; }
}
""" % {"tag": tag, "score": score}))
    c = raw_session(d.port)
    assert_reply(c.cmd("MAIL FROM:<x@blocked.example>"), 550, "5.7.1")
    code, text = send_message(c, "alice@fine.example", ["b@example.test"],
                              b"Subject: hello\r\n\r\nnothing to see\r\n")
    assert code == 250, text
    stored = spool_cat(d.spool, queued_id(text))
    assert b"\r\nX-Sender-Domain: fine.example\r\n" in stored, stored[:400]
    code, text = send_message(c, "bob@fine.example", ["b@example.test"],
                              b"Subject: VIAGRA\r\n\r\ncheap viagra\r\n")
    assert code == 554 and "5.7.1" in text, text
    assert find_by_sender(d.spool, "bob@fine.example") == []


# ---- sluiced --bindings and start-up errors ----

def test_bindings_listing(tmp_path):
    conf = conf_file(tmp_path, ACCESS + """
binding "scanned" {
  event = "eod"; sink = "builtin:header";
  properties { name = "X-Scanned"; value = "yes"; }
}
""")
    r = subprocess.run([SLUICED, "-c", conf, "--bindings"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    rcpt = out[out.index("rcpt:"):out.index("data:")]
    lines = [l.split() for l in rcpt.splitlines()[1:]]
    assert [(l[0], l[1]) for l in lines] == [("500", "partners"), ("1000", "later"),
                                             ("24575", "server")], rcpt
    eod = out[out.index("eod:"):out.index("command:")]
    assert re.search(r"24575\s+server.*\n\s+24575\s+scanned", eod), eod


@pytest.mark.parametrize("sink,want", [
    ("bad_abi.so", r"built for sink ABI 2\.1, this sluiced has 2\.0"),
    ("no_such_module.so", r"cannot load"),
])
def test_bad_module_is_a_startup_error(tmp_path, sink, want):
    conf = conf_file(tmp_path, """
binding "broken" { event = "eod"; sink = "%s"; }
""" % os.path.join(LIB, sink))
    r = subprocess.run([SLUICED, "-c", conf, "-o", "listen=127.0.0.1:0",
                        "-o", "spool_dir=%s" % (tmp_path / "spool")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert 'binding "broken"' in r.stderr, r.stderr
    assert re.search(want, r.stderr), r.stderr
