"""SMTP smuggling (ACCEPTANCE P1; CVE-2023-51764/-51765/-51766): only
<CRLF>.<CRLF> ends the data; no other "end of data" look-alike may end the
message or start a second one."""
import pytest

from conftest import (code_class, find_by_sender, raw_session, spool_list,
                      stored_body)

SMUGGLED = (b"MAIL FROM:<evil@x>\r\n"
            b"RCPT TO:<victim@example.test>\r\n"
            b"DATA\r\n"
            b"From: ceo@example.test\r\n"
            b"Subject: smuggled\r\n"
            b"\r\n"
            b"smuggled text\r\n")

BARE = [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\r\n.\r",
        b"\n..\n", b"\r\n.\n.", b"\n.\r\r\n"]
NUL = [b"\r\n\x00.\r\n", b"\r\n.\x00\r\n"]


def smuggle(c, sep, via_bdat=False):
    head = b"From: good@example.test\r\nSubject: legit\r\n\r\nlegit text"
    body = head + sep + SMUGGLED
    if via_bdat:
        assert c.cmd("MAIL FROM:<good@example.test>")[0] == 250
        assert c.cmd("RCPT TO:<victim@example.test>")[0] == 250
        c.send(b"BDAT %d LAST\r\n" % len(body) + body)
    else:
        assert c.cmd("MAIL FROM:<good@example.test>")[0] == 250
        assert c.cmd("RCPT TO:<victim@example.test>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(body + b".\r\n")
    return body


def unstuffed(body):
    """The content of DATA text: one leading dot removed from every line."""
    return b"\r\n".join(ln[1:] if ln.startswith(b".") else ln
                         for ln in body.split(b"\r\n"))


def check_one_reply_then_noop(c):
    """Exactly one reply to the end of data: the next reply is NOOP's."""
    code, text = c.reply()
    c.send(b"NOOP\r\n")
    ncode, ntext = c.reply()
    assert ncode == 250 and "2.0.0" in ntext, (
        "a reply after the end-of-data reply was not NOOP's", text, ntext)
    assert c.buf == b"", c.buf
    return code, text


@pytest.mark.parametrize("sep", BARE, ids=repr)
def test_bare_line_end_smuggling(daemon, sep):
    c = raw_session(daemon.port)
    smuggle(c, sep)
    code, text = check_one_reply_then_noop(c)
    assert code == 550 and code_class(text)[1] == "5.6.0", (sep, text)
    assert c.cmd("QUIT")[0] == 221
    assert find_by_sender(daemon.spool, "evil@x") == []
    assert spool_list(daemon.spool) == []


@pytest.mark.parametrize("sep", NUL, ids=repr)
def test_nul_dot_smuggling(daemon, sep):
    c = raw_session(daemon.port)
    body = smuggle(c, sep)
    code, text = check_one_reply_then_noop(c)
    assert code == 250 or 500 <= code < 600, text
    assert c.cmd("QUIT")[0] == 221
    assert find_by_sender(daemon.spool, "evil@x") == []
    msgs = spool_list(daemon.spool)
    if code == 250:
        # carried as content: one message, the smuggled text inside it
        assert len(msgs) == 1
        assert stored_body(daemon.spool, msgs[0]) == unstuffed(body)
    else:
        assert msgs == []


@pytest.mark.parametrize("sep", BARE + NUL, ids=repr)
def test_bdat_smuggling(daemon, sep):
    c = raw_session(daemon.port)
    body = smuggle(c, sep, via_bdat=True)
    code, text = check_one_reply_then_noop(c)
    assert code == 250 or 500 <= code < 600, text
    assert find_by_sender(daemon.spool, "evil@x") == []
    msgs = spool_list(daemon.spool)
    if code == 250:
        assert len(msgs) == 1
        assert stored_body(daemon.spool, msgs[0]) == body
    else:
        assert msgs == []


def test_pipelined_smuggling_with_split_segments(daemon):
    """The look-alike split over separate TCP sends changes nothing."""
    import time
    c = raw_session(daemon.port)
    assert c.cmd("MAIL FROM:<good@example.test>")[0] == 250
    assert c.cmd("RCPT TO:<victim@example.test>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    for part in (b"Subject: s\r\n\r\nlegit", b"\n", b".", b"\n", SMUGGLED, b"\r\n.", b"\r\n"):
        c.send(part)
        time.sleep(0.05)
    code, text = check_one_reply_then_noop(c)
    assert code == 550, text
    assert spool_list(daemon.spool) == []
