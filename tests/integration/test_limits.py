"""Limits and hostile input (ACCEPTANCE P2, P4-P9, P11, P13-P16)."""
import socket
import time

import pytest

from conftest import (Raw, assert_reply, code_class, find_by_sender,
                      msg_rcpts, raw_session, replies_until_close, spool_cat,
                      spool_list, stored_body)


def start_data(c, sender="lim@example.test", rcpt="r@example.test"):
    assert c.cmd("MAIL FROM:<%s>" % sender)[0] == 250
    assert c.cmd("RCPT TO:<%s>" % rcpt)[0] == 250
    assert c.cmd("DATA")[0] == 354


def send_message(c, body, sender="lim@example.test"):
    start_data(c, sender)
    c.send(body + b".\r\n")
    return c.reply()


# ---- P4: command lines ----

def test_long_command_line(daemon):
    c = raw_session(daemon.port)
    assert_reply(c.cmd("NOOP " + "x" * 600), 500, "5.5.2")
    # the session goes on
    assert c.cmd("NOOP")[0] == 250
    assert c.cmd("MAIL FROM:<a@example.test>")[0] == 250
    # a path near the 512 line limit but over the RFC path limit
    code, text = c.cmd("RCPT TO:<%s@example.test>" % ("l" * 300))
    assert 500 <= code < 600, text


def test_one_megabyte_command_line(daemon):
    rss0 = daemon.rss_kib()
    chunk = b"A" * 65536
    for _ in range(4):
        c = raw_session(daemon.port)
        for _ in range(16):  # 1 MiB, no newline
            c.send(chunk)
        c.send(b"\r\n")
        c.s.settimeout(10)
        assert_reply(c.reply(), 500, "5.5.2")
        # still usable (one reply for the whole line), or closed cleanly
        try:
            c.send("NOOP\r\n")
            code, text = c.reply()
        except (ConnectionError, OSError):
            code, text = None, None
        if code is not None:
            assert code in (250, 421), text
        c.close()
    assert daemon.rss_kib() - rss0 < 8 * 1024, (rss0, daemon.rss_kib())
    c = raw_session(daemon.port)
    assert c.cmd("NOOP")[0] == 250


def test_nul_in_command(daemon):
    c = raw_session(daemon.port)
    code, text = c.cmd("NOOP\x00")
    assert 500 <= code < 600, text
    code, text = c.cmd("MAIL FROM:<a\x00b@example.test>")
    assert 500 <= code < 600, text
    # nothing was truncated into a valid command
    assert c.cmd("MAIL FROM:<ok@example.test>")[0] == 250
    code, text = c.cmd("RCPT TO:<r@example.test>\x00<evil@other.example>")
    assert 500 <= code < 600, text


def test_bare_cr_and_lf_in_commands(daemon):
    c = Raw(daemon.port)
    assert c.reply()[0] == 220
    assert c.cmd("EHLO foo\rbar.example.test")[0] == 501
    code, text = c.cmd("EHLO client.example.test")
    assert code == 250, text
    code, text = c.cmd("MAIL FROM:<a@example.test>\rRCPT TO:<x@example.test>")
    assert 500 <= code < 600, text
    c.close()
    # the Received: header the server adds stays one header
    c = Raw(daemon.port)
    c.reply()
    assert c.cmd("EHLO foo\rX-Injected: yes")[0] == 501
    assert c.cmd("EHLO client.example.test")[0] == 250
    code, _ = send_message(c, b"Subject: r\r\n\r\nx\r\n", sender="rcv@example.test")
    assert code == 250
    m = find_by_sender(daemon.spool, "rcv@example.test")[0]
    assert b"X-Injected" not in stored_body(daemon.spool, m)
    assert b"X-Injected" not in spool_cat(daemon.spool, m["id"])


# ---- P5: text lines ----

def test_998_octet_line_stored_exact(daemon):
    c = raw_session(daemon.port)
    line = bytes((0x21 + i % 90) for i in range(998))
    assert line[0:1] != b"."
    body = b"Subject: long\r\n\r\n" + line + b"\r\n" + b"." + line[:997] + b"\r\n"
    # the second line is 998 octets once unstuffed: 999 on the wire
    code, text = send_message(c, b"Subject: long\r\n\r\n" + line + b"\r\n"
                              + b".." + line[:997] + b"\r\n", sender="l998@example.test")
    assert code == 250, text
    m = find_by_sender(daemon.spool, "l998@example.test")
    assert len(m) == 1
    assert stored_body(daemon.spool, m[0]) == body


def test_999_octet_line_refused(daemon):
    c = raw_session(daemon.port)
    code, text = send_message(c, b"Subject: long\r\n\r\n" + b"y" * 999 + b"\r\nend\r\n",
                              sender="l999@example.test")
    assert code == 550 and code_class(text)[1] == "5.5.2", text
    assert find_by_sender(daemon.spool, "l999@example.test") == []
    # the session goes on
    code, text = send_message(c, b"Subject: ok\r\n\r\nshort\r\n", sender="after@example.test")
    assert code == 250, text
    assert len(spool_list(daemon.spool)) == 1


def test_very_long_data_line_memory_flat(daemon):
    c = raw_session(daemon.port)
    rss0 = daemon.rss_kib()
    start_data(c, "huge@example.test")
    for _ in range(64):  # 4 MiB in one line
        c.send(b"h" * 65536)
    c.send(b"\r\n.\r\n")
    c.s.settimeout(20)
    code, text = c.reply()
    assert code == 550 or code == 552, text
    assert daemon.rss_kib() - rss0 < 8 * 1024
    assert find_by_sender(daemon.spool, "huge@example.test") == []


@pytest.mark.parametrize("junk", [b"bare\nLF", b"bare\rCR", b"end with CR\r", b"\n"])
def test_bare_cr_lf_in_data(daemon, junk):
    c = raw_session(daemon.port)
    code, text = send_message(c, b"Subject: bare\r\n\r\nbefore\r\n" + junk + b"\r\nafter\r\n",
                              sender="bare@example.test")
    assert code == 550 and code_class(text)[1] == "5.6.0", text
    assert c.cmd("NOOP")[0] == 250
    assert find_by_sender(daemon.spool, "bare@example.test") == []


# ---- P6: recipients ----

def test_100_recipients_accepted(daemon):
    c = raw_session(daemon.port)
    assert c.cmd("MAIL FROM:<many@example.test>")[0] == 250
    rcpts = ["u%03d@example.test" % i for i in range(100)]
    c.send("".join("RCPT TO:<%s>\r\n" % r for r in rcpts))
    codes = [c.reply()[0] for _ in rcpts]
    assert codes == [250] * 100
    assert c.cmd("DATA")[0] == 354
    c.send("Subject: many\r\n\r\nx\r\n.\r\n")
    assert c.reply()[0] == 250
    m = find_by_sender(daemon.spool, "many@example.test")
    assert len(m) == 1 and msg_rcpts(m[0]) == rcpts


def test_excess_recipients(daemon_factory):
    d = daemon_factory(max_recipients=100)
    c = raw_session(d.port)
    assert c.cmd("MAIL FROM:<excess@example.test>")[0] == 250
    rcpts = ["u%03d@example.test" % i for i in range(103)]
    c.send("".join("RCPT TO:<%s>\r\n" % r for r in rcpts))
    replies = [c.reply() for _ in rcpts]
    assert [r[0] for r in replies[:100]] == [250] * 100
    for r in replies[100:]:
        assert_reply(r, 452, "4.5.3")
    assert c.cmd("DATA")[0] == 354
    c.send("Subject: excess\r\n\r\nx\r\n.\r\n")
    assert c.reply()[0] == 250
    m = find_by_sender(d.spool, "excess@example.test")
    assert len(m) == 1 and msg_rcpts(m[0]) == rcpts[:100]


def test_rcpt_flood_memory_flat(daemon_factory):
    d = daemon_factory(max_recipients=100, max_errors=1000000)
    c = raw_session(d.port)
    assert c.cmd("MAIL FROM:<flood@example.test>")[0] == 250
    rss0 = d.rss_kib()
    batch = "".join("RCPT TO:<f%06d@example.test>\r\n" % i for i in range(1000)).encode()
    total = 0
    for _ in range(50):  # 50000 RCPT, replies read as they come
        c.send(batch)
        for _ in range(1000):
            code, _ = c.reply()
            assert code in (250, 452)
            total += 1
    assert total == 50000
    assert d.rss_kib() - rss0 < 8 * 1024
    assert c.cmd("RSET")[0] == 250


# ---- P7: SIZE ----

def test_size_absurd(daemon):
    c = raw_session(daemon.port)
    for v in ("999999999999999999999999", "18446744073709551616", "-1", "1e9", ""):
        code, text = c.cmd("MAIL FROM:<s@example.test> SIZE=%s" % v)
        assert code == 501, (v, text)
    assert c.cmd("MAIL FROM:<s@example.test> SIZE=1000")[0] == 250


def test_size_declared_too_big(daemon):
    c = raw_session(daemon.port)
    assert_reply(c.cmd("MAIL FROM:<s@example.test> SIZE=52428801"), 552, "5.3.4")
    assert c.cmd("MAIL FROM:<s@example.test> SIZE=52428800")[0] == 250


def test_size_actual_oversize(daemon_factory):
    d = daemon_factory(max_message_size=100000)
    c = raw_session(d.port)
    # lies: declares 1000 octets, sends 150000
    assert c.cmd("MAIL FROM:<big@example.test> SIZE=1000")[0] == 250
    assert c.cmd("RCPT TO:<r@example.test>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(b"Subject: big\r\n\r\n" + (b"b" * 98 + b"\r\n") * 1500 + b".\r\n")
    code, text = c.reply()
    assert code == 552, text
    assert code_class(text)[1] in ("5.3.4", "5.2.3"), text
    assert c.cmd("NOOP")[0] == 250
    # BDAT too
    assert c.cmd("MAIL FROM:<bigb@example.test>")[0] == 250
    assert c.cmd("RCPT TO:<r@example.test>")[0] == 250
    chunk = (b"b" * 98 + b"\r\n") * 600
    replies = []
    for last in (False, False, True):
        c.send(b"BDAT %d%s\r\n" % (len(chunk), b" LAST" if last else b"") + chunk)
        replies.append(c.reply())
    assert any(r[0] == 552 for r in replies), replies
    assert all(r[0] != 250 or "queued" not in r[1] for r in replies), replies
    assert spool_list(d.spool) == []


# ---- P9: errors ----

def test_too_many_errors(daemon_factory):
    d = daemon_factory(max_errors=3)
    c = raw_session(d.port)
    got = []
    for i in range(6):
        try:
            c.send("BOGUS%d\r\n" % i)
            got.append(c.reply())
        except (ConnectionError, OSError):
            break
        if got[-1][0] == 421:
            break
    codes = [g[0] for g in got]
    assert 421 in codes, got
    assert_reply(got[codes.index(421)], 421, "4.7.0")
    assert all(500 <= x < 600 for x in codes[:codes.index(421)]), got
    assert codes.index(421) <= 4, got
    assert c.closed()


# ---- P11: open relay ----

@pytest.fixture
def untrusted(daemon_factory):
    return daemon_factory(mynetworks='["10.255.255.0/24"]')


@pytest.mark.parametrize("rcpt", [
    "user@other.example",
    "user%other.example@example.test",
    "other.example!user@example.test",
    '"user@other.example"@[127.0.0.1]',
    "user@other.example@example.test",
    "user@example.test.other.example",
])
def test_relay_denied(untrusted, rcpt):
    c = raw_session(untrusted.port)
    assert c.cmd("MAIL FROM:<outside@other.example>")[0] == 250
    code, text = c.cmd("RCPT TO:<%s>" % rcpt)
    assert 500 <= code < 600, (rcpt, text)
    if rcpt == "user@other.example":
        assert_reply((code, text), 554, "5.7.1")
    assert_reply(c.cmd("RCPT TO:<user@example.test>"), 250)
    assert c.cmd("DATA")[0] == 354
    c.send("Subject: relay\r\n\r\nx\r\n.\r\n")
    assert c.reply()[0] == 250
    msgs = spool_list(untrusted.spool)
    assert [msg_rcpts(m) for m in msgs] == [["user@example.test"]]


def test_relay_allowed_for_mynetworks(daemon):
    c = raw_session(daemon.port)
    assert c.cmd("MAIL FROM:<inside@example.test>")[0] == 250
    assert c.cmd("RCPT TO:<user@other.example>")[0] == 250


# ---- P13: shell metacharacters ----

def test_shell_metachar_sender(daemon):
    c = raw_session(daemon.port)
    t0 = time.monotonic()
    code, text = c.cmd("MAIL FROM:<;sleep 5;>")
    assert 500 <= code < 600, text
    code, text = c.cmd("MAIL FROM:<`sleep 5`@example.test>")
    assert code >= 500 or code == 250, text  # a legal atext local part
    assert time.monotonic() - t0 < 2
    c.cmd("RSET")
    code, text = c.cmd("RCPT TO:<;sleep 5;>")
    assert 500 <= code < 600, text


# ---- P12: spool injection through parameters ----

@pytest.mark.parametrize("param", [
    "ENVID=abc\rX-Injected:1", "ENVID=abc\x00def", "BODY=8BITMIME\rRCPT TO:<x@other.example>",
    "SIZE=10\x00", "AUTH=<>\rfoo", "ENVID=" + "a" * 101])
def test_mail_param_injection(daemon, param):
    c = raw_session(daemon.port)
    code, text = c.cmd("MAIL FROM:<inj@example.test> " + param)
    assert 500 <= code < 600, (param, text)
    assert c.cmd("NOOP")[0] == 250


@pytest.mark.parametrize("param", ["ORCPT=rfc822;a\rb@example.test",
                                   "ORCPT=rfc822;a\x00b@example.test",
                                   "NOTIFY=NEVER\x00"])
def test_rcpt_param_injection(daemon, param):
    c = raw_session(daemon.port)
    assert c.cmd("MAIL FROM:<inj@example.test>")[0] == 250
    code, text = c.cmd("RCPT TO:<r@example.test> " + param)
    assert 500 <= code < 600, (param, text)
    assert c.cmd("RCPT TO:<ok@example.test>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send("Subject: inj\r\n\r\nx\r\n.\r\n")
    assert c.reply()[0] == 250
    msgs = spool_list(daemon.spool)
    assert len(msgs) == 1 and msg_rcpts(msgs[0]) == ["ok@example.test"]
    for v in [msgs[0]["sender"], msgs[0]["params"], msgs[0]["helo"]] + msg_rcpts(msgs[0]):
        assert not any(ch in v for ch in "\r\n\x00"), msgs[0]


# ---- P16: SMTPUTF8 ----

def test_non_ascii_needs_smtputf8(daemon):
    c = raw_session(daemon.port)
    c.send("MAIL FROM:<dörte@example.test>\r\n".encode())
    assert_reply(c.reply(), 553, "5.6.7")
    assert c.cmd("MAIL FROM:<ascii@example.test>")[0] == 250
    c.send("RCPT TO:<jürgen@example.test>\r\n".encode())
    assert_reply(c.reply(), 553, "5.6.7")


@pytest.mark.parametrize("bad", [b"\xc3\x28", b"\xc0\xaf", b"\xed\xa0\x80",
                                 b"\xf4\x90\x80\x80", b"\xe2\x82", b"\xff"])
def test_malformed_utf8(daemon, bad):
    c = raw_session(daemon.port)
    c.send(b"MAIL FROM:<a" + bad + b"b@example.test> SMTPUTF8\r\n")
    code, text = c.reply()
    assert code == 501, text
    assert c.cmd("MAIL FROM:<ok@example.test> SMTPUTF8")[0] == 250
    c.send(b"RCPT TO:<r" + bad + b"@example.test>\r\n")
    code, text = c.reply()
    assert code == 501, text


# ---- P2: synchronisation ----

def test_data_sync_error(daemon):
    c = raw_session(daemon.port)
    assert c.cmd("MAIL FROM:<sync@example.test>")[0] == 250
    assert c.cmd("RCPT TO:<r@example.test>")[0] == 250
    c.send(b"DATA\r\nSubject: early\r\n\r\nsent before 354\r\n.\r\n")
    got = replies_until_close(c, timeout=5)
    codes = [g[0] for g in got]
    assert 554 in codes, got
    assert_reply(got[codes.index(554)], 554, "5.5.0")
    assert not any(g[0] == 250 for g in got), got
    assert c.closed()
    assert find_by_sender(daemon.spool, "sync@example.test") == []


def test_talking_before_greeting(daemon):
    """A client that sends commands before it has read the greeting
    violates RFC 5321 4.3.1 / RFC 2920 (Postfix: "improper command
    pipelining after CONNECT"): 554 and nothing stored.  No body is sent
    with DATA here, so that a DATA synchronisation error cannot stand in
    for the missing pre-greeting check."""
    s = socket.create_connection(("127.0.0.1", daemon.port), timeout=5)
    s.sendall(b"EHLO early.example.test\r\nMAIL FROM:<early@example.test>\r\n"
              b"RCPT TO:<r@example.test>\r\nDATA\r\n")
    c = Raw.__new__(Raw)
    c.s, c.buf = s, b""
    got = []
    c.s.settimeout(3)
    try:
        for _ in range(20):
            got.append(c.reply())
            if got[-1][0] == 354:  # the server went along: finish the message
                c.send(b"Subject: early\r\n\r\nx\r\n.\r\nQUIT\r\n")
            if got[-1][0] in (221, 554, 421):
                break
    except (ConnectionError, OSError):
        pass
    s.close()
    codes = [g[0] for g in got]
    assert codes[:1] == [220] or codes[:1] == [554], got
    after = codes[1:] if codes[:1] == [220] else codes
    assert after[:1] == [554], "no 554 to commands sent before the greeting: %r" % got
    time.sleep(0.2)
    assert find_by_sender(daemon.spool, "early@example.test") == []


# ---- P8: slow clients ----

def test_idle_timeout(daemon_factory):
    d = daemon_factory(idle_timeout="1s")
    c = raw_session(d.port)
    t0 = time.monotonic()
    c.s.settimeout(6)
    code, text = c.reply()
    assert_reply((code, text), 421, "4.4.2")
    assert time.monotonic() - t0 < 5
    assert c.closed()


def test_idle_timeout_in_data(daemon_factory):
    d = daemon_factory(idle_timeout="1s")
    c = raw_session(d.port)
    start_data(c, "idle@example.test")
    c.send(b"Subject: half\r\n\r\nhalf a message")
    c.s.settimeout(6)
    code, text = c.reply()
    assert code == 421 and code_class(text)[1] == "4.4.2", text
    assert c.closed()
    assert find_by_sender(d.spool, "idle@example.test") == []


def test_min_data_rate(daemon_factory):
    d = daemon_factory(min_data_rate=100000, data_rate_grace="1s", idle_timeout="30s")
    c = raw_session(d.port)
    start_data(c, "slow@example.test")
    c.s.settimeout(0.3)
    t0 = time.monotonic()
    got = None
    while time.monotonic() - t0 < 8:
        try:
            c.send(b"x\r\n")
        except OSError:
            break
        try:
            got = c.reply()
            break
        except socket.timeout:
            continue
        except ConnectionError:
            break
    assert got is not None, "no reply to a client sending 10 B/s"
    assert got[0] // 100 == 4, got
    assert c.closed()
    assert find_by_sender(d.spool, "slow@example.test") == []


def test_conn_per_ip(daemon_factory):
    d = daemon_factory(max_conn_per_ip=3, conn_limit_exceptions="[]")
    held = []
    for _ in range(3):
        c = Raw(d.port)
        assert c.reply()[0] == 220
        held.append(c)
    c4 = Raw(d.port)
    assert_reply(c4.reply(), 421, "4.7.0")
    assert c4.closed()
    c4.close()
    held.pop().close()
    deadline = time.monotonic() + 5
    while True:
        c5 = Raw(d.port)
        code, text = c5.reply()
        if code == 220 or time.monotonic() > deadline:
            break
        c5.close()
        time.sleep(0.1)
    assert code == 220, text
    assert c5.cmd("NOOP")[0] == 250
    for c in held + [c5]:
        c.close()


def test_conn_per_ip_exempt_by_default(daemon_factory):
    d = daemon_factory(max_conn_per_ip=2)  # 127.0.0.1 is in mynetworks
    held = []
    for _ in range(4):
        c = Raw(d.port)
        assert c.reply()[0] == 220
        held.append(c)
    for c in held:
        c.close()


def test_max_connections(daemon_factory):
    d = daemon_factory(workers=1, max_connections=2)
    held = []
    for _ in range(2):
        c = Raw(d.port)
        assert c.reply()[0] == 220
        held.append(c)
    c3 = Raw(d.port)
    code, text = c3.reply()
    assert code == 421 and code_class(text)[1] in ("4.3.2", "4.7.0"), text
    for c in held + [c3]:
        c.close()


def test_conn_per_ip_count_does_not_leak(daemon_factory):
    """Connections that end every which way give their per-IP slot back."""
    import struct
    d = daemon_factory(max_conn_per_ip=3, conn_limit_exceptions="[]", idle_timeout="1s")

    def wait_220():
        deadline = time.monotonic() + 5
        while True:
            c = Raw(d.port)
            code, text = c.reply()
            if code == 220 or time.monotonic() > deadline:
                return c, code, text
            c.close()
            time.sleep(0.1)

    for rnd in range(3):
        # QUIT
        c, code, text = wait_220()
        assert code == 220, text
        c.cmd("QUIT")
        c.close()
        # abrupt close after EHLO
        c, code, text = wait_220()
        assert code == 220, text
        c.cmd("EHLO a.example.test")
        c.close()
        # reset (SO_LINGER 0) in the middle of DATA
        c, code, text = wait_220()
        assert code == 220, text
        c.cmd("EHLO a.example.test")
        c.cmd("MAIL FROM:<a@example.test>")
        c.cmd("RCPT TO:<r@example.test>")
        c.cmd("DATA")
        c.send(b"Subject: half\r\n\r\nhalf")
        c.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
        # a protocol error that closes (sync error)
        c, code, text = wait_220()
        assert code == 220, text
        c.send(b"EHLO a.example.test\r\n")
        c.reply()
        c.send(b"MAIL FROM:<a@example.test>\r\nRCPT TO:<r@example.test>\r\n")
        c.reply(), c.reply()
        c.send(b"DATA\r\nearly body\r\n.\r\n")
        replies_until_close(c, timeout=3)
        c.close()
    # an idle timeout
    c, code, text = wait_220()
    assert code == 220, text
    c.s.settimeout(5)
    assert c.reply()[0] == 421
    c.close()
    # the three slots are all free again
    held = []
    for _ in range(3):
        c, code, text = wait_220()
        assert code == 220, "a per-IP slot leaked: %r" % text
        held.append(c)
    c4 = Raw(d.port)
    assert c4.reply()[0] == 421
    for c in held + [c4]:
        c.close()


def test_slowloris_command_line_is_cut(daemon_factory):
    """An EHLO line trickled one octet a second: every octet resets the
    idle time, but the line as a whole gets idle_timeout (3 s) from its
    first octet: 421 4.4.2 and the connection closes, in well under the
    time the trickle would take."""
    d = daemon_factory(idle_timeout="3s")
    c = Raw(d.port)
    assert c.reply()[0] == 220
    t0 = time.monotonic()
    line = b"EHLO slow.client.example.test\r\n"
    got = None
    for ch in line:
        try:
            c.send(bytes([ch]))
        except OSError:
            break
        c.s.settimeout(1.0)
        try:
            data = c.s.recv(4096)
        except socket.timeout:
            continue
        got = data
        break
    took = time.monotonic() - t0
    assert got is not None and got.startswith(b"421 4.4.2"), got
    assert took < 8, took


def test_max_session_time(daemon_factory):
    """A client that keeps a session busy (NOOP every 0.5 s) is still
    ended at max_session_time (3 s) with 421 4.4.2."""
    d = daemon_factory(max_session_time="3s")
    c = Raw(d.port)
    assert c.reply()[0] == 220
    t0 = time.monotonic()
    code = 250
    while code == 250 and time.monotonic() - t0 < 10:
        time.sleep(0.5)
        code = c.cmd("NOOP")[0]
    assert code == 421, code
    assert 2.5 < time.monotonic() - t0 < 7


def test_every_connection_refused_gets_421(daemon_factory):
    """Past max_connections a worker answers 421 from its spare slots; past
    those (64) it used to close with no reply at all.  Every connection
    refused now gets 421 4.3.2, whichever way it was refused."""
    d = daemon_factory(workers=1, max_connections=2)
    conns, answers = [], []
    try:
        for _ in range(100):
            conns.append(socket.create_connection(("127.0.0.1", d.port), timeout=10))
        for s in conns:
            s.settimeout(10)
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            answers.append(data[:3])
    finally:
        for s in conns:
            s.close()
    assert answers.count(b"220") == 2, answers
    assert answers.count(b"421") == 98, answers
