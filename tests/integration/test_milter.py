"""The milter bridge (sinks/milter*.c) against real milters: a test milter
written with python3-milter (tests/tools/milter_all.py, libmilter) that
takes every action the bridge maps, and OpenDKIM from Debian signing and
verifying (docs/milter.md)."""
import json
import os
import re
import socket
import subprocess
import time

import pytest

from conftest import assert_reply, raw_session, spool_cat, spool_list

HERE = os.path.dirname(os.path.abspath(__file__))
TOOL = os.path.join(HERE, "..", "tools", "milter_all.py")
QUEUED = re.compile(r"queued as ([0-9a-f]{16})")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, proc, timeout=10):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        assert proc.poll() is None, "the milter exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("milter not listening on %d" % port)


@pytest.fixture
def test_milter(tmp_path):
    port = free_port()
    log = tmp_path / "milter.log"
    log.write_text("")
    p = subprocess.Popen(["/usr/bin/python3", TOOL, "inet:%d@127.0.0.1" % port, str(log)],
                         stdout=subprocess.DEVNULL, stderr=open(tmp_path / "milter.err", "w"))
    wait_port(port, p)

    class M:
        pass
    m = M()
    m.port = port
    m.events = lambda: [json.loads(ln) for ln in log.read_text().splitlines() if ln.strip()]
    yield m
    p.terminate()
    try:
        p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        p.kill()


def conf(tmp_path, port, extra="", name="milter.conf"):
    p = tmp_path / name
    p.write_text("""
binding "m" {
  sink = "milter:inet:127.0.0.1:%d"; deadline = 2s; on_deadline = tempfail;
  %s
}
""" % (port, extra))
    return str(p)


def message(c, sender, rcpts, body, params=""):
    assert_reply(c.cmd("MAIL FROM:<%s>%s" % (sender, params)), 250)
    for r in rcpts:
        assert_reply(c.cmd("RCPT TO:<%s>" % r), 250)
    assert_reply(c.cmd("DATA"), 354)
    c.send(body + b".\r\n")
    return c.reply()


def wait_events(m, pred, timeout=5):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        ev = m.events()
        if pred(ev):
            return ev
        time.sleep(0.05)
    return m.events()


def stored(d, sender):
    msgs = [x for x in spool_list(d.spool) if x["sender"] == sender]
    assert len(msgs) == 1, spool_list(d.spool)
    return msgs[0], spool_cat(d.spool, msgs[0]["id"])


BODY = (b"From: a@example.test\r\nSubject: hello\r\nX-Drop-Me: bye\r\n"
        b"X-Folded: one\r\n two\r\n\r\nthe body\r\n")


def test_every_step_and_header_edits(daemon_factory, test_milter, tmp_path):
    d = daemon_factory(conf=conf(tmp_path, test_milter.port))
    c = raw_session(d.port)
    code, text = message(c, "edit@example.test", ["b@example.test"], BODY, " BODY=8BITMIME")
    assert code == 250, text
    c.cmd("QUIT")
    ev = wait_events(test_milter, lambda e: any(x["ev"] == "close" for x in e))
    kinds = [x["ev"] for x in ev]
    for k in ("connect", "helo", "mail", "rcpt", "data", "eoh", "body", "eom", "close"):
        assert k in kinds, kinds
    conn = ev[kinds.index("connect")]
    assert conn["addr"] == "127.0.0.1" and conn["client_addr"] == "127.0.0.1", conn
    assert conn["j"], conn
    assert ev[kinds.index("helo")]["name"] == "client.example.test"
    mail = ev[kinds.index("mail")]
    assert mail["sender"] == "<edit@example.test>" and "BODY=8BITMIME" in mail["params"], mail
    assert ev[kinds.index("rcpt")]["rcpt"] == "<b@example.test>"
    # our Received: is not shown; folding as Sendmail sends it
    hdrs = ev[kinds.index("eoh")]["headers"]
    assert hdrs[0] == ["From", "a@example.test"], hdrs
    assert ["X-Folded", "one\n two"] in hdrs, hdrs
    assert not any(h[0].lower() == "received" for h in hdrs), hdrs
    m, raw = stored(d, "edit@example.test")
    head = raw.split(b"\r\n\r\n")[0]
    assert b"X-Milter-Added: yes" in head, head
    assert b"X-Milter-Inserted: at the top" in head, head
    assert b"Subject: changed by the milter" in head and b"Subject: hello" not in head, head
    assert b"X-Drop-Me" not in head, head
    assert raw.endswith(b"the body\r\n")


def test_verdicts(daemon_factory, test_milter, tmp_path):
    d = daemon_factory(conf=conf(tmp_path, test_milter.port))
    c = raw_session(d.port)
    # reject one recipient, keep the other
    assert_reply(c.cmd("MAIL FROM:<reject-rcpt@example.test>"), 250)
    assert c.cmd("RCPT TO:<no@example.test>")[0] == 550
    assert_reply(c.cmd("RCPT TO:<yes@example.test>"), 250)
    assert_reply(c.cmd("RSET"), 250)
    # tempfail, replycode
    assert c.cmd("MAIL FROM:<tempfail@example.test>")[0] // 100 == 4
    code, text = c.cmd("MAIL FROM:<replycode@example.test>")
    assert code == 550 and "5.7.9" in text and "custom words" in text, text
    # discard: accepted, not kept; quarantine: kept apart
    code, text = message(c, "discard@example.test", ["b@example.test"], b"x\r\n")
    assert code == 250, text
    code, text = message(c, "quarantine@example.test", ["b@example.test"], b"y\r\n")
    assert code == 250, text
    # accept at MAIL: nothing more of that message reaches the milter,
    # and the next MAIL aborts it first
    code, text = message(c, "accept@example.test", ["b@example.test"], b"z\r\n")
    assert code == 250, text
    code, text = message(c, "plain@example.test", ["b@example.test"], b"w\r\n")
    assert code == 250, text
    c.cmd("QUIT")
    senders = sorted(x["sender"] for x in spool_list(d.spool))
    assert senders == ["accept@example.test", "plain@example.test", "quarantine@example.test"]
    q = [x for x in spool_list(d.spool) if x["sender"] == "quarantine@example.test"][0]
    assert q["quarantine"] is True
    ev = wait_events(test_milter, lambda e: any(x["ev"] == "close" for x in e))
    eoms = [x["kind"] for x in ev if x["ev"] == "eom"]
    assert "accept" not in eoms and "plain" in eoms and "discard" in eoms, eoms
    kinds = [x["ev"] for x in ev]
    assert "abort" in kinds, kinds


def test_on_error_and_deadline(daemon_factory, test_milter, tmp_path):
    dead = free_port()  # nobody listens there
    d = daemon_factory(conf=conf(tmp_path, dead, 'properties { on_error = "continue"; }'))
    c = raw_session(d.port)
    code, text = message(c, "a@example.test", ["b@example.test"], b"x\r\n")
    assert code == 250, text
    c.cmd("QUIT")
    d2 = daemon_factory(conf=conf(tmp_path, dead, "", name="m2.conf"),
                        spool=str(tmp_path / "spool2"))
    s = socket.create_connection(("127.0.0.1", d2.port), timeout=5)
    greet = s.recv(512).decode()
    assert greet.startswith("421") or greet.startswith("451") or greet.startswith("4"), greet
    s.close()
    # a milter that does not answer in time: on_deadline, then on_error
    d3 = daemon_factory(conf=conf(tmp_path, test_milter.port, "", name="m3.conf"),
                        spool=str(tmp_path / "spool3"))
    c = raw_session(d3.port)
    t0 = time.monotonic()
    code, text = message(c, "slow@example.test", ["b@example.test"], b"x\r\n")
    took = time.monotonic() - t0
    assert code // 100 == 4, text
    assert 1.5 < took < 3.5, took
    assert c.cmd("MAIL FROM:<plain@example.test>")[0] // 100 == 4  # the milter is dropped
    c.cmd("QUIT")


def test_bindings_shows_the_bridge_once(tmp_path, test_milter):
    from conftest import SLUICED
    p = tmp_path / "b.conf"
    p.write_text('binding "dkim" { sink = "milter:inet:127.0.0.1:%d"; }\n'
                 'spool_dir = "%s";\n' % (test_milter.port, tmp_path / "sp"))
    r = subprocess.run([SLUICED, "-c", str(p), "--bindings"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.count("milter:inet:127.0.0.1:%d  (a bridge" % test_milter.port) == 7, out
    assert "bridges:" in out and "steps:" in out, out
    bad = tmp_path / "bad.conf"
    bad.write_text('binding "x" { event = "mail"; sink = "milter:inet:127.0.0.1:1"; }\n')
    r = subprocess.run([SLUICED, "-c", str(bad), "--bindings"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode != 0 and "names no event" in (r.stderr + r.stdout), r.stderr


# ---- OpenDKIM from Debian ----

def dkim_key(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    import base64
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                          serialization.NoEncryption())
    pub = k.public_key().public_bytes(serialization.Encoding.DER,
                                      serialization.PublicFormat.SubjectPublicKeyInfo)
    txt = "v=DKIM1; k=rsa; p=" + base64.b64encode(pub).decode()
    keyfile = tmp_path / "dkim.private"
    keyfile.write_bytes(pem)
    os.chmod(keyfile, 0o600)
    return pem, txt, str(keyfile)


@pytest.fixture
def opendkim(tmp_path):
    procs = []

    def start(mode, keyfile, domain, txt_records):
        port = free_port()
        keys = tmp_path / ("keys-%d" % port)
        keys.write_text("".join("%s %s\n" % (n, t) for n, t in txt_records.items()))
        cfgp = tmp_path / ("opendkim-%d.conf" % port)
        cfgp.write_text("\n".join([
            "Syslog no", "Background no", "Mode %s" % mode,
            "Domain %s" % domain, "Selector test", "KeyFile %s" % keyfile,
            "Socket inet:%d@127.0.0.1" % port, "PidFile %s" % (tmp_path / ("od-%d.pid" % port)),
            "TestPublicKeys %s" % keys, "Canonicalization relaxed/simple",
            "AuthservID mx.example.test", "RequireSafeKeys no",
            "InternalHosts %s" % ("127.0.0.1" if mode == "s" else "192.0.2.1"), ""]))
        p = subprocess.Popen(["/usr/sbin/opendkim", "-f", "-x", str(cfgp)],
                             stdout=subprocess.DEVNULL,
                             stderr=open(tmp_path / ("od-%d.err" % port), "w"))
        procs.append(p)
        wait_port(port, p)
        return port

    yield start
    for p in procs:
        p.terminate()
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()


DKIM_MSG = (b"From: Alice <alice@example.test>\r\nTo: bob@example.test\r\n"
            b"Subject: signed by OpenDKIM through sluice\r\nDate: Tue, 8 Dec 2026 01:00:00 +0000\r\n"
            b"Message-ID: <m1@example.test>\r\n\r\nHello Bob,\r\n\r\n.. a dotted line\r\nbye\r\n")


def test_opendkim_signs(daemon_factory, opendkim, tmp_path):
    import dkim
    _, txt, keyfile = dkim_key(tmp_path)
    port = opendkim("s", keyfile, "example.test", {})
    d = daemon_factory(conf=conf(tmp_path, port))
    c = raw_session(d.port)
    # DATA dot-stuffs the line that starts with a dot
    code, text = message(c, "alice@example.test", ["bob@example.test"],
                         DKIM_MSG.replace(b"\r\n.. a", b"\r\n... a"))
    assert code == 250, text
    c.cmd("QUIT")
    _, raw = stored(d, "alice@example.test")
    assert b"DKIM-Signature:" in raw, raw[:800]

    def dns(name, timeout=5):
        assert name == b"test._domainkey.example.test.", name
        return txt.encode()
    assert dkim.verify(raw, dnsfunc=dns), raw[:1200]
    # and a change after signing is caught (the verifier is not a rubber stamp)
    assert not dkim.verify(raw.replace(b"Hello Bob", b"Hello Eve"), dnsfunc=dns)


def test_opendkim_verifies(daemon_factory, opendkim, tmp_path):
    import dkim
    pem, txt, keyfile = dkim_key(tmp_path)
    port = opendkim("v", keyfile, "example.test",
                    {"test._domainkey.other.test": txt})
    d = daemon_factory(conf=conf(tmp_path, port))
    msg = DKIM_MSG.replace(b"alice@example.test", b"carol@other.test")
    sig = dkim.sign(msg, b"test", b"other.test", pem,
                    include_headers=[b"From", b"To", b"Subject", b"Date", b"Message-ID"])
    c = raw_session(d.port)
    code, text = message(c, "carol@other.test", ["bob@example.test"],
                         (sig + msg).replace(b"\r\n.. a", b"\r\n... a"))
    assert code == 250, text
    # a second one, altered after signing
    bad = (sig + msg).replace(b"Hello Bob", b"Hello Eve").replace(b"\r\n.. a", b"\r\n... a")
    code, text = message(c, "mallory@other.test", ["bob@example.test"], bad)
    assert code == 250, text
    c.cmd("QUIT")
    _, raw = stored(d, "carol@other.test")
    ar = [ln for ln in raw.split(b"\r\n") if ln.startswith(b"Authentication-Results:")]
    assert ar and b"mx.example.test" in ar[0] and b"dkim=pass" in raw, raw[:1500]
    _, raw = stored(d, "mallory@other.test")
    assert b"dkim=fail" in raw, raw[:1500]
