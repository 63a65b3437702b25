"""builtin:dkim_sign in the real daemon: messages signed by sluiced and
verified, as delivered (to a next hop, byte for byte, and into a Maildir),
by dkimpy and by OpenDKIM's opendkim-testmsg; RSA-SHA256 and
Ed25519-SHA256, relaxed and simple; over-signing; tampering detected;
edits by later bindings to signed fields refused; keytables."""
import os
import re
import smtplib

import pytest

from delivery_util import qmgr_log, start, wait_until
from dkim_util import (crlf, dkimpy_verify, make_key, need_dkimpy, opendkim_verify,
                       opendkim_verify_each, sig_count)
from nexthop import NextHop


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    k = {}
    for name, kind in (("rsa", "rsa"), ("ed", "ed25519"), ("rsa2", "rsa")):
        path = d / (name + ".pem")
        k[name] = (str(path), make_key(path, kind))
    return k


def records(keys, domain="example.org", sel=(("rsa1", "rsa"), ("ed1", "ed"))):
    return {"%s._domainkey.%s" % (s, domain): keys[k][1] for s, k in sel}


def binding(props, name="sign", priority=32000, extra=""):
    p = " ".join('%s = "%s";' % kv for kv in props.items())
    return ('binding "%s" { event = eod; sink = "builtin:dkim_sign"; priority = %d; %s '
            'properties { %s } }\n' % (name, priority, extra, p))


MSG = (b"From: Alice Example <alice@example.org>\r\n"
       b"To: bob@example.test\r\n"
       b"Subject: a  test \t message\r\n"
       b"  folded onto a second line\r\n"
       b"Date: Tue, 08 Dec 2026 01:00:00 +0000\r\n"
       b"Message-ID: <t1@example.org>\r\n"
       b"MIME-Version: 1.0\r\n"
       b"Content-Type: text/plain; charset=us-ascii\r\n"
       b"\r\n"
       b"Hello  Bob, \t\r\n"
       b".a line that starts with a dot\r\n"
       b"..two dots\r\n"
       b"\r\n"
       b"trailing white space   \r\n"
       b"\r\n\r\n\r\n")


def send(port, data, sender="alice@example.org", rcpt="bob@example.test"):
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
        s.ehlo("client.test")
        return s.sendmail(sender, [rcpt], data)


def relay(daemon_factory, tmp_path, conf, data=MSG, sender="alice@example.org"):
    """Sends data through a sluiced with conf; returns the bytes the next hop got."""
    with NextHop("127.0.0.1") as hop:
        d = start(daemon_factory, tmp_path, relayhost=hop.addr, extra=conf)
        send(d.port, data, sender)
        assert hop.wait_messages(1, timeout=15), qmgr_log(d)
        return d, hop.messages[0].data


def test_rsa_and_ed25519_verified_by_dkimpy_and_opendkim(daemon_factory, tmp_path, keys):
    """Two signatures (selector and key lists), relaxed/relaxed: both
    verify with dkimpy on the relayed bytes; OpenDKIM verifies them too."""
    need_dkimpy()
    conf = binding({"domain": "example.org", "selector": "rsa1, ed1",
                    "key": "%s, %s" % (keys["rsa"][0], keys["ed"][0])})
    d, got = relay(daemon_factory, tmp_path, conf)
    assert sig_count(got) == 2, got[:2000]
    hdr = got.split(b"\r\n\r\n", 1)[0].decode()
    assert "a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=rsa1;" in hdr
    assert "a=ed25519-sha256; c=relaxed/relaxed; d=example.org; s=ed1;" in hdr
    assert " l=" not in hdr
    h = re.search(r"s=rsa1;.*? h=([^;]*);", hdr).group(1).split(":")
    for f in ("from", "to", "subject", "date"):  # over-signed: one more than present
        assert h.count(f) == 2, h
    assert h.count("message-id") == 1 and "received" not in h
    recs = records(keys)
    assert dkimpy_verify(got, recs) == [True, True]
    # exit 0 and silence: verified (a bad one: 70 "dkim_eom(): Bad signature")
    assert opendkim_verify_each(got, recs, tmp_path) == [(0, ""), (0, "")]


def test_maildir_copy_verifies(daemon_factory, tmp_path, keys):
    """The Maildir file (LF line ends, Return-Path and Delivered-To on top)
    verifies once its line ends are CRLF again."""
    need_dkimpy()
    root = tmp_path / "mail"
    conf = binding({"domain": "example.org", "selector": "ed1", "key": keys["ed"][0]})
    d = start(daemon_factory, tmp_path, maildir_root=str(root), extra=conf)
    send(d.port, MSG, rcpt="me@localhost")
    new = root / "me" / "new"
    assert wait_until(lambda: new.exists() and os.listdir(new), 15), qmgr_log(d)
    data = crlf((new / os.listdir(new)[0]).read_bytes())
    assert data.startswith(b"Return-Path:")
    assert dkimpy_verify(data, records(keys)) == [True]
    assert opendkim_verify_each(data, records(keys), tmp_path) == [(0, "")]


@pytest.mark.parametrize("canon", ["simple/simple", "relaxed/simple", "simple/relaxed"])
def test_canonicalizations(daemon_factory, tmp_path, keys, canon):
    need_dkimpy()
    conf = binding({"domain": "example.org", "selector": "rsa1, ed1",
                    "key": "%s, %s" % (keys["rsa"][0], keys["ed"][0]),
                    "canonicalization": canon})
    d, got = relay(daemon_factory, tmp_path, conf)
    assert ("c=%s;" % canon).encode() in got
    recs = records(keys)
    assert dkimpy_verify(got, recs) == [True, True]
    assert opendkim_verify_each(got, recs, tmp_path) == [(0, ""), (0, "")]


def test_tampering_fails(daemon_factory, tmp_path, keys):
    """Changing the body, a signed field, or adding a From (over-signed)
    breaks both signatures; an unsigned field added does not."""
    need_dkimpy()
    conf = binding({"domain": "example.org", "selector": "rsa1, ed1",
                    "key": "%s, %s" % (keys["rsa"][0], keys["ed"][0])})
    d, got = relay(daemon_factory, tmp_path, conf)
    recs = records(keys)
    assert dkimpy_verify(got, recs) == [True, True]
    assert dkimpy_verify(got.replace(b"Hello  Bob", b"Hello Eve"), recs) == [False, False]
    assert dkimpy_verify(got.replace(b"Subject: a  test", b"Subject: a  jest"), recs) == \
        [False, False]
    assert dkimpy_verify(b"From: mallory@example.org\r\n" + got, recs) == [False, False]
    assert dkimpy_verify(got.replace(b"\r\n\r\n", b"\r\nX-Unsigned: 1\r\n\r\n", 1), recs) == \
        [True, True]
    bad = opendkim_verify_each(got.replace(b"Hello  Bob", b"Hello Eve"), recs, tmp_path)
    assert [rc for rc, _ in bad] == [70, 70] and all("Bad signature" in o for _, o in bad), bad


def test_later_edits_of_signed_fields_are_refused(daemon_factory, tmp_path, keys):
    """A binding after the signer that adds a Subject (signed, over-signed)
    is refused with a log line, inline or offloaded; one adding X-After is not; one before the
    signer adding a To is signed with the message.  The result verifies."""
    need_dkimpy()
    conf = binding({"domain": "example.org", "selector": "rsa1", "key": keys["rsa"][0]})
    conf += ('binding "before" { event = eod; sink = "builtin:header"; priority = 30000; '
             'properties { name = "To"; value = "carol@example.test"; } }\n'
             'binding "after" { event = eod; sink = "builtin:header"; priority = 32100; '
             'properties { name = "Subject"; value = "changed"; } }\n'
             'binding "after2" { event = eod; sink = "builtin:header"; priority = 32200; '
             'properties { name = "X-After"; value = "yes"; } }\n'
             'binding "after3" { event = eod; sink = "builtin:header"; priority = 32300; '
             'offload = true; properties { name = "Date"; value = "now"; } }\n')
    d, got = relay(daemon_factory, tmp_path, conf)
    assert b"\r\nTo: carol@example.test\r\n" in got
    assert b"Subject: changed" not in got
    assert b"\r\nX-After: yes\r\n" in got
    assert d.wait_log(r'sink after: edit of header field Subject refused'), d.log()
    # an offloaded handler's edits are checked when replayed on the owner
    assert b"Date: now" not in got
    assert d.wait_log(r'sink after3: edit of header field Date refused'), d.log()
    h = re.search(rb" h=([^;]*);", got).group(1).split(b":")
    assert h.count(b"to") == 3  # two present (one added before signing) + over-signing
    assert dkimpy_verify(got, records(keys, sel=(("rsa1", "rsa"),))) == [True]


def test_keytable_wildcards_and_unknown_domains(daemon_factory, tmp_path, keys):
    """example.org: two keys; *.example.net: subdomains signed with
    d=example.net; a sender of another domain: not signed at all."""
    need_dkimpy()
    kt = tmp_path / "keytable"
    kt.write_text("# domain selector keyfile\n"
                  "example.org rsa1 %s\nexample.org ed1 %s\n\n"
                  "*.example.net s2 %s   # subdomains\n" % (keys["rsa"][0], keys["ed"][0],
                                                            keys["rsa2"][0]))
    conf = binding({"keytable": str(kt)})
    with NextHop("127.0.0.1") as hop:
        d = start(daemon_factory, tmp_path, relayhost=hop.addr, extra=conf)
        send(d.port, MSG)
        sub = MSG.replace(b"alice@example.org>", b"carol@mail.example.net>")
        send(d.port, sub, sender="carol@mail.example.net")
        other = MSG.replace(b"alice@example.org>", b"dave@elsewhere.test>")
        send(d.port, other, sender="dave@elsewhere.test")
        assert hop.wait_messages(3, timeout=15), qmgr_log(d)
        got = {m.mail_from: m.data for m in hop.messages}
    recs = records(keys)
    recs["s2._domainkey.example.net"] = keys["rsa2"][1]
    assert dkimpy_verify(got["alice@example.org"], recs) == [True, True]
    assert b"d=example.net; s=s2;" in got["carol@mail.example.net"]
    assert dkimpy_verify(got["carol@mail.example.net"], recs) == [True]
    assert sig_count(got["dave@elsewhere.test"]) == 0


@pytest.mark.parametrize("props,want", [
    ({"domain": "example.org", "selector": "s1", "key": "/nonexistent/k.pem"},
     "cannot read /nonexistent/k.pem"),
    ({"domain": "example.org", "selector": "a, b", "key": "KEY"},
     "the same number of entries"),
    ({"domain": "example.org", "selector": "s1", "key": "KEY", "canonicalization": "loose"},
     "canonicalization"),
    ({"selector": "s1", "key": "KEY"}, "are required"),
])
def test_bad_configuration_is_refused_at_start(daemon_factory, tmp_path, keys, props, want):
    props = {k: v.replace("KEY", keys["rsa"][0]) for k, v in props.items()}
    conf = tmp_path / "sluice.conf"
    conf.write_text(binding(props))
    with pytest.raises(Exception) as e:
        daemon_factory(conf=str(conf))
    assert want in str(e.value), str(e.value)
