"""Basic protocol behaviour of sluiced, driven by real clients (smtplib,
swaks, smtp-source) and by raw sockets for byte-exact checks."""
import re
import smtplib
import subprocess

import pytest

from conftest import (Raw, assert_reply, find_by_sender, msg_rcpts,
                      msg_sender, raw_session, spool_list, stored_body)

QUEUED = re.compile(r"^250 2\.0\.0 .*queued as [0-9a-f]{16}\b", re.M)


def smtp(port, timeout=10):
    s = smtplib.SMTP("127.0.0.1", port, local_hostname="client.example.test",
                     timeout=timeout)
    return s


def test_smtplib_message_stored_exact(daemon):
    body = (b"From: Alice <alice@example.test>\r\n"
            b"To: bob@example.test, carol@example.test\r\n"
            b"Subject: hello\r\n"
            b"Message-ID: <basic-1@example.test>\r\n"
            b"\r\n"
            b"first line\r\n"
            b".a line that starts with a dot (smtplib stuffs it)\r\n"
            b"..two dots\r\n"
            b".\r\n"  # a lone dot line inside the text, stuffed
            b"\r\n"
            b"  leading and trailing spaces  \r\n"
            b"last line\r\n")
    with smtp(daemon.port) as s:
        refused = s.sendmail("alice@example.test",
                             ["bob@example.test", "carol@example.test"], body)
        assert refused == {}
    msgs = spool_list(daemon.spool)
    assert len(msgs) == 1, msgs
    m = msgs[0]
    assert msg_sender(m) == "alice@example.test"
    assert msg_rcpts(m) == ["bob@example.test", "carol@example.test"]
    assert re.fullmatch(r"[0-9a-f]{16}", m["id"]), m
    assert stored_body(daemon.spool, m) == body


def test_final_reply_names_queue_id(daemon):
    c = raw_session(daemon.port)
    assert c.cmd("MAIL FROM:<a@example.test>")[0] == 250
    assert c.cmd("RCPT TO:<b@example.test>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send("Subject: x\r\n\r\nhi\r\n.\r\n")
    code, text = c.reply()
    assert code == 250 and QUEUED.search(text), text
    qid = re.search(r"queued as ([0-9a-f]{16})", text).group(1)
    assert [m["id"] for m in spool_list(daemon.spool)] == [qid]
    assert c.cmd("QUIT")[0] == 221


def test_ehlo_extensions(daemon):
    c = Raw(daemon.port)
    code, text = c.reply()
    assert code == 220, text
    code, text = c.cmd("EHLO client.example.test")
    assert code == 250, text
    lines = text.split("\n")
    assert all(ln.startswith("250-") for ln in lines[:-1]), text
    assert lines[-1].startswith("250 "), text
    kw = [ln[4:].strip().upper() for ln in lines[1:]]
    for k in ("PIPELINING", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "CHUNKING"):
        assert k in kw, (k, text)
    size = [k for k in kw if k.split()[0] == "SIZE"]
    assert size == ["SIZE 52428800"], text
    assert c.cmd("QUIT")[0] == 221


def test_ehlo_size_follows_config(daemon_factory):
    d = daemon_factory(max_message_size=100000)
    c = Raw(d.port)
    c.reply()
    code, text = c.cmd("EHLO client.example.test")
    assert code == 250
    assert "SIZE 100000" in text.upper(), text


def test_helo_and_simple_commands(daemon):
    c = Raw(daemon.port)
    assert c.reply()[0] == 220
    code, text = c.cmd("HELO client.example.test")
    assert code == 250, text
    assert c.cmd("NOOP")[0] == 250
    assert c.cmd("RSET")[0] == 250
    assert c.cmd("VRFY postmaster")[0] == 252
    assert c.cmd("HELP")[0] == 214
    # a message after HELO (no extensions) works
    assert c.cmd("MAIL FROM:<h@example.test>")[0] == 250
    assert c.cmd("RCPT TO:<r@example.test>")[0] == 250
    assert c.cmd("RSET")[0] == 250
    # RSET forgot the transaction
    assert c.cmd("DATA")[0] == 503
    assert c.cmd("MAIL FROM:<h@example.test>")[0] == 250
    assert c.cmd("RCPT TO:<r@example.test>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send("Subject: helo\r\n\r\nbody\r\n.\r\n")
    assert c.reply()[0] == 250
    code, _ = c.cmd("QUIT")
    assert code == 221
    assert c.closed()
    assert [msg_sender(m) for m in spool_list(daemon.spool)] == ["h@example.test"]


def test_commands_case_insensitive_and_enhanced(daemon):
    c = Raw(daemon.port)
    c.reply()
    assert c.cmd("ehlo client.example.test")[0] == 250
    assert_reply(c.cmd("noop"), 250, "2.0.0")
    assert_reply(c.cmd("mail from:<x@example.test>"), 250, "2.1.0")
    assert_reply(c.cmd("rcpt to:<y@example.test>"), 250, "2.1.5")
    assert_reply(c.cmd("rset"), 250, "2.0.0")
    assert c.cmd("quit")[0] == 221


def test_swaks(daemon):
    r = subprocess.run(
        ["swaks", "--server", "127.0.0.1:%d" % daemon.port,
         "--to", "x@example.test", "--from", "y@example.test",
         "--ehlo", "client.example.test", "--timeout", "10",
         "--body", "swaks was here"],
        capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    msgs = find_by_sender(daemon.spool, "y@example.test")
    assert len(msgs) == 1
    assert msg_rcpts(msgs[0]) == ["x@example.test"]
    assert b"swaks was here" in stored_body(daemon.spool, msgs[0])


def test_pipelined_session(daemon):
    c = raw_session(daemon.port)
    c.send("MAIL FROM:<p1@example.test>\r\n"
           "RCPT TO:<r1@example.test>\r\n"
           "RCPT TO:<r2@example.test>\r\n"
           "RCPT TO:<r3@example.test>\r\n"
           "DATA\r\n")
    assert [c.reply()[0] for _ in range(5)] == [250, 250, 250, 250, 354]
    body1 = b"Subject: one\r\n\r\nfirst message\r\n"
    body2 = b"Subject: two\r\n\r\nsecond message\r\n"
    c.send(body1 + b".\r\n"
           b"MAIL FROM:<p2@example.test>\r\n"
           b"RCPT TO:<r4@example.test>\r\n"
           b"DATA\r\n")
    r = [c.reply() for _ in range(4)]
    assert [x[0] for x in r] == [250, 250, 250, 354], r
    assert QUEUED.search(r[0][1]), r
    c.send(body2 + b".\r\nQUIT\r\n")
    code, text = c.reply()
    assert code == 250 and QUEUED.search(text), text
    assert c.reply()[0] == 221
    assert c.closed()
    m1 = find_by_sender(daemon.spool, "p1@example.test")
    m2 = find_by_sender(daemon.spool, "p2@example.test")
    assert len(m1) == 1 and len(m2) == 1
    assert msg_rcpts(m1[0]) == ["r1@example.test", "r2@example.test", "r3@example.test"]
    assert msg_rcpts(m2[0]) == ["r4@example.test"]
    assert stored_body(daemon.spool, m1[0]) == body1
    assert stored_body(daemon.spool, m2[0]) == body2


def test_bdat_chunks(daemon):
    c = raw_session(daemon.port)
    assert c.cmd("MAIL FROM:<bdat1@example.test>")[0] == 250
    assert c.cmd("RCPT TO:<r@example.test>")[0] == 250
    chunks = [
        b"Subject: bdat\r\n\r\n",
        b"x" * 1,
        b"\r",                 # a CRLF split across two chunks
        b"\n.leading dot is not stuffing in BDAT\r\n.\r\n",
        (b"y" * 998 + b"\r\n") * 5,
        (b"z" * 900 + b"\r\n") * 80 + (b"0123456789" * 99 + b"\r\n") * 50,
    ]
    for ch in chunks:
        c.send(b"BDAT %d\r\n" % len(ch) + ch)
        code, text = c.reply()
        assert code == 250, text
    code, text = c.cmd("BDAT 0 LAST")
    assert code == 250 and QUEUED.search(text), text
    # a second message: the whole transaction and its one chunk in one send
    body2 = b"Subject: bdat2\r\n\r\npipelined chunk\r\n"
    c.send(b"MAIL FROM:<bdat2@example.test>\r\nRCPT TO:<r2@example.test>\r\n"
           b"BDAT %d LAST\r\n" % len(body2) + body2)
    r = [c.reply() for _ in range(3)]
    assert [x[0] for x in r] == [250, 250, 250], r
    assert QUEUED.search(r[2][1]), r
    # a third: two chunks, the last one carrying data, sent in one go
    c.send(b"MAIL FROM:<bdat3@example.test>\r\nRCPT TO:<r3@example.test>\r\n"
           b"BDAT 5\r\nabc\r\nBDAT 5 LAST\r\ndef\r\n")
    r = [c.reply() for _ in range(4)]
    assert [x[0] for x in r] == [250, 250, 250, 250], r
    assert c.cmd("QUIT")[0] == 221
    m1 = find_by_sender(daemon.spool, "bdat1@example.test")
    m2 = find_by_sender(daemon.spool, "bdat2@example.test")
    m3 = find_by_sender(daemon.spool, "bdat3@example.test")
    assert len(m1) == len(m2) == len(m3) == 1
    assert stored_body(daemon.spool, m1[0]) == b"".join(chunks)
    assert stored_body(daemon.spool, m2[0]) == body2
    assert stored_body(daemon.spool, m3[0]) == b"abc\r\ndef\r\n"


def test_data_after_bdat_refused(daemon):
    c = raw_session(daemon.port)
    assert c.cmd("MAIL FROM:<mix@example.test>")[0] == 250
    assert c.cmd("RCPT TO:<r@example.test>")[0] == 250
    c.send(b"BDAT 4\r\nab\r\n")
    assert c.reply()[0] == 250
    code, text = c.cmd("DATA")
    assert 500 <= code < 600, text


def test_8bitmime_body_exact(daemon):
    body = (b"Subject: 8bit\r\nContent-Type: text/plain; charset=latin1\r\n"
            b"Content-Transfer-Encoding: 8bit\r\n\r\n"
            + bytes(range(0x80, 0x100)) + b"\r\n"
            + "Grüße, ½ € — ✓\r\n".encode("utf-8")
            + bytes(range(0x20, 0x7f)) + b"\t\x01\x7f\r\n")
    with smtp(daemon.port) as s:
        s.ehlo()
        assert s.has_extn("8bitmime")
        s.sendmail("eight@example.test", ["r@example.test"], body,
                   mail_options=["BODY=8BITMIME"])
    msgs = find_by_sender(daemon.spool, "eight@example.test")
    assert len(msgs) == 1
    assert stored_body(daemon.spool, msgs[0]) == body


def test_smtputf8(daemon):
    sender = "dörte@example.test"
    rcpt = "jürgen.müller@example.test"
    body = "Subject: ünïcödé\r\n\r\nПривет, 世界\r\n".encode("utf-8")
    with smtp(daemon.port) as s:
        s.ehlo()
        assert s.has_extn("smtputf8")
        refused = s.sendmail(sender, [rcpt], body, mail_options=["SMTPUTF8"])
        assert refused == {}
    msgs = find_by_sender(daemon.spool, sender)
    assert len(msgs) == 1, spool_list(daemon.spool)
    assert msg_rcpts(msgs[0]) == [rcpt]
    assert stored_body(daemon.spool, msgs[0]) == body


def test_smtp_source_load(daemon):
    r = subprocess.run(
        ["timeout", "120", "/usr/sbin/smtp-source", "-s", "8", "-m", "200",
         "-l", "4096", "-M", "client.example.test",
         "-f", "a@example.test", "-t", "b@example.test",
         "127.0.0.1:%d" % daemon.port],
        capture_output=True, text=True, timeout=150)
    assert r.returncode == 0, r.stdout + r.stderr
    msgs = spool_list(daemon.spool)
    assert len(msgs) == 200
    assert all(msg_sender(m) == "a@example.test" for m in msgs)
    assert all(msg_rcpts(m) == ["b@example.test"] for m in msgs)
    assert len({m["id"] for m in msgs}) == 200


@pytest.mark.parametrize("sender", ["", "postmaster@example.test"])
def test_null_and_plain_sender(daemon, sender):
    c = raw_session(daemon.port)
    assert c.cmd("MAIL FROM:<%s>" % sender)[0] == 250
    assert c.cmd("RCPT TO:<postmaster@example.test>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send("Subject: n\r\n\r\nx\r\n.\r\n")
    assert c.reply()[0] == 250
    msgs = spool_list(daemon.spool)
    assert [msg_sender(m) for m in msgs] == [sender]


# ---- transfer paths: pipelined BDAT, big messages, tiny segments ----

def test_pipelined_bdat_burst(daemon):
    """50 complete transactions in one send (CHUNKING makes that legal):
    no pipelined input is lost while a session waits for its group commit."""
    c = raw_session(daemon.port)
    n = 50
    wire = b""
    bodies = {}
    for i in range(n):
        sender = "burst-%d@example.test" % i
        body = b"Subject: burst %d\r\n\r\n" % i + b"line %d\r\n" % i * (i + 1)
        bodies[sender] = body
        wire += (b"MAIL FROM:<%s>\r\nRCPT TO:<r@example.test>\r\nBDAT %d LAST\r\n"
                 % (sender.encode(), len(body)) + body)
    c.send(wire + b"QUIT\r\n")
    c.s.settimeout(20)
    replies = [c.reply() for _ in range(3 * n + 1)]
    assert [r[0] for r in replies] == [250] * (3 * n) + [221], [
        r for r in replies if r[0] != 250][:5]
    assert all(QUEUED.search(replies[3 * i + 2][1]) for i in range(n))
    msgs = {m["sender"]: m for m in spool_list(daemon.spool)}
    assert set(msgs) == set(bodies)
    for sender in ("burst-0@example.test", "burst-17@example.test", "burst-49@example.test"):
        assert stored_body(daemon.spool, msgs[sender]) == bodies[sender]


def big_body(tag, size):
    import hashlib
    out = [b"Subject: big %s\r\n\r\n" % tag.encode()]
    n = 0
    total = 0
    while total < size:
        h = hashlib.sha256(b"%s-%d" % (tag.encode(), n)).hexdigest().encode()
        line = (b"." if n % 7 == 0 else b"") + h * 3 + b"\r\n"
        out.append(line)
        total += len(line)
        n += 1
    return b"".join(out)


def stuff(body):
    return b"\r\n".join(b"." + ln if ln.startswith(b".") else ln
                        for ln in body.split(b"\r\n"))


def test_big_messages_with_few_buffers(daemon_factory):
    """Four concurrent 2 MiB messages through a worker with 64 buffers of
    4 KiB: the ring runs dry, sessions spill, nothing is lost or reordered."""
    import threading
    d = daemon_factory(workers=1, buffer_count=64, buffer_size=4096)
    bodies = {"big-%d@example.test" % i: big_body("b%d" % i, 2 << 20) for i in range(4)}
    errors = []

    def send(sender, body):
        try:
            c = raw_session(d.port)
            c.s.settimeout(30)
            assert c.cmd("MAIL FROM:<%s>" % sender)[0] == 250
            assert c.cmd("RCPT TO:<r@example.test>")[0] == 250
            assert c.cmd("DATA")[0] == 354
            wire = stuff(body) + b".\r\n"
            for i in range(0, len(wire), 100000):
                c.send(wire[i:i + 100000])
            code, text = c.reply()
            assert code == 250, text
            c.close()
        except Exception as e:  # reported below
            errors.append((sender, repr(e)))

    ts = [threading.Thread(target=send, args=kv) for kv in bodies.items()]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not errors, errors
    msgs = {m["sender"]: m for m in spool_list(d.spool)}
    assert set(msgs) == set(bodies)
    for sender, body in bodies.items():
        assert stored_body(d.spool, msgs[sender]) == body


def test_tiny_segments(daemon_factory):
    """The body dribbled in 1-7 octet sends (end of data split everywhere)
    with small receive buffers: dot-unstuffing and the end of data are found
    across every boundary."""
    import random
    import socket as so
    import time
    d = daemon_factory(workers=1, buffer_size=1024)
    rng = random.Random(5)
    body = b"Subject: tiny\r\n\r\n" + b"".join(
        (b"." * rng.randrange(0, 3)) + b"x" * rng.randrange(0, 40) + b"\r\n" for _ in range(150))
    c = raw_session(d.port)
    c.s.setsockopt(so.IPPROTO_TCP, so.TCP_NODELAY, 1)
    assert c.cmd("MAIL FROM:<tiny@example.test>")[0] == 250
    assert c.cmd("RCPT TO:<r@example.test>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    wire = stuff(body) + b".\r\n"
    i = 0
    while i < len(wire):
        n = rng.randrange(1, 8)
        c.send(wire[i:i + n])
        i += n
        if rng.random() < 0.05:
            time.sleep(0.002)
    code, text = c.reply()
    assert code == 250, text
    m = find_by_sender(d.spool, "tiny@example.test")
    assert len(m) == 1
    assert stored_body(d.spool, m[0]) == body


def test_many_segments_survive_restart(daemon_factory, tmp_path):
    spool = str(tmp_path / "spool")
    d = daemon_factory(spool=spool, segment_size="64kb", workers=2)
    bodies = {}
    with smtp(d.port) as s:
        for i in range(80):
            sender = "seg-%d@example.test" % i
            bodies[sender] = b"Subject: seg\r\n\r\n" + ((b"%04d " % i) * 100 + b"\r\n") * 6
            s.sendmail(sender, ["r@example.test"], bodies[sender])
    assert d.stop() == 0
    segs = [n for n in __import__("os").listdir(spool) if n.endswith(".sg")]
    assert len(segs) >= 4, segs
    d2 = daemon_factory(spool=spool, segment_size="64kb", workers=2)
    msgs = {m["sender"]: m for m in spool_list(spool)}
    assert set(msgs) == set(bodies)
    for sender in list(bodies)[::9]:
        assert stored_body(spool, msgs[sender]) == bodies[sender]
    assert d2.stop() == 0


# ---- command sequencing (RFC 5321 4.1.4, RFC 3030) ----

def test_sequencing(daemon):
    c = raw_session(daemon.port)
    assert c.cmd("RCPT TO:<r@example.test>")[0] == 503
    assert c.cmd("DATA")[0] == 503
    assert c.cmd("MAIL FROM:<s@example.test>")[0] == 250
    assert c.cmd("MAIL FROM:<s@example.test>")[0] == 503
    assert c.cmd("DATA")[0] in (503, 554)
    assert c.cmd("RCPT TO:<r@example.test>")[0] == 250
    # EHLO resets the transaction (4.1.4)
    assert c.cmd("EHLO again.example.test")[0] == 250
    assert c.cmd("DATA")[0] == 503
    assert c.cmd("QUIT")[0] == 221
    assert spool_list(daemon.spool) == []


def test_bdat_without_transaction_consumes_its_chunk(daemon):
    """The chunk's octets are data even when the BDAT is refused: they are
    never read as commands (RFC 3030 2)."""
    c = raw_session(daemon.port)
    chunk = b"MAIL FROM:<evil@x>\r\nRCPT TO:<v@example.test>\r\nBDAT 4 LAST\r\nabc\r\n"
    c.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk)
    code, text = c.reply()
    assert code == 503, text
    c.send(b"NOOP\r\n")
    code, text = c.reply()
    assert code == 250 and "2.0.0" in text, "chunk octets were read as commands: %r" % text
    # and in a transaction without a recipient
    assert c.cmd("MAIL FROM:<s@example.test>")[0] == 250
    c.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk)
    code, text = c.reply()
    assert code in (503, 554), text
    c.send(b"NOOP\r\n")
    code, text = c.reply()
    assert code == 250 and "2.0.0" in text, "chunk octets were read as commands: %r" % text
    assert spool_list(daemon.spool) == []


@pytest.mark.parametrize("bad", ["BDAT", "BDAT x", "BDAT -1", "BDAT 1 FIRST",
                                 "BDAT 99999999999999999999999", "BDAT 0x10"])
def test_bdat_syntax(daemon, bad):
    """501 5.5.4; as the chunk size is unknown the server may close then
    (it cannot tell data from commands any more), or go on."""
    c = raw_session(daemon.port)
    assert c.cmd("MAIL FROM:<s@example.test>")[0] == 250
    assert c.cmd("RCPT TO:<r@example.test>")[0] == 250
    assert_reply(c.cmd(bad), 501, "5.5.4")
    try:
        c.send("NOOP\r\n")
        code, text = c.reply()
        assert code == 250, text
    except (ConnectionError, OSError):
        pass
    assert spool_list(daemon.spool) == []


def test_command_line_512_boundary(daemon):
    c = raw_session(daemon.port)
    line = "NOOP " + "x" * (512 - 2 - 5)
    assert len(line) + 2 == 512
    assert c.cmd(line)[0] == 250
    assert_reply(c.cmd(line + "x"), 500, "5.5.2")
    assert c.cmd("NOOP")[0] == 250


def test_received_header(daemon):
    from conftest import spool_cat, split_received
    c = Raw(daemon.port)
    c.reply()
    assert c.cmd("EHLO client.example.test")[0] == 250
    assert c.cmd("MAIL FROM:<rh@example.test>")[0] == 250
    assert c.cmd("RCPT TO:<r@example.test>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send("Subject: rh\r\n\r\nx\r\n.\r\n")
    code, text = c.reply()
    qid = re.search(r"queued as ([0-9a-f]{16})", text).group(1)
    c.cmd("HELO old.example.test")
    assert c.cmd("MAIL FROM:<rh2@example.test>")[0] == 250
    assert c.cmd("RCPT TO:<r@example.test>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send("Subject: rh\r\n\r\nx\r\n.\r\n")
    assert c.reply()[0] == 250
    msgs = {m["sender"]: m for m in spool_list(daemon.spool)}
    assert msgs["rh@example.test"]["id"] == qid
    hdr, _ = split_received(spool_cat(daemon.spool, qid))
    flat = re.sub(rb"\r\n[ \t]+", b" ", hdr).decode()
    assert re.match(r"Received: from client\.example\.test ", flat), flat
    assert "127.0.0.1" in flat and "by mx.example.test" in flat, flat
    assert re.search(r"\bwith ESMTP\b", flat), flat
    assert qid in flat, flat
    assert re.search(r";\s*\w{3}, \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}", flat), flat
    hdr2, _ = split_received(spool_cat(daemon.spool, msgs["rh2@example.test"]["id"]))
    flat2 = re.sub(rb"\r\n[ \t]+", b" ", hdr2).decode()
    assert "from old.example.test" in flat2 and re.search(r"\bwith SMTP\b", flat2), flat2
