"""A next hop that offers CHUNKING (a second sluiced): the body goes out as
one BDAT, spliced from the spool segment to the socket (the exit line's
spliced= counter), and arrives byte for byte, dot-leading lines and header
edits included; the same message to a DATA-only next hop (smtp-sink-like
aiosmtpd is not needed: tls=none to a sluiced with CHUNKING is the splice
path, and a sink edit proves the edited header is sent from memory)."""
import re
import smtplib
import time

from conftest import spool_list, spool_cat, msg_id


def body_lines(n):
    out = []
    for i in range(n):
        out.append(("." + str(i) + "x" * 70) if i % 7 == 0 else ("line %d " % i) + "y" * 60)
    return out


def wait_stored(spool, n, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msgs = spool_list(spool)
        if len(msgs) >= n:
            return msgs
        time.sleep(0.1)
    raise AssertionError("next hop has %d messages" % len(spool_list(spool)))


def test_bdat_body_is_spliced_and_arrives_intact(daemon_factory, tmp_path):
    hop = daemon_factory(spool=str(tmp_path / "hop"))  # relayhost=hold: it keeps what it gets
    conf = tmp_path / "relay.conf"
    conf.write_text('transport { "example.test" = "smtp:127.0.0.1:%d tls=none"; }\n'
                    'binding "tag" { event = "eod"; sink = "builtin:header"; '
                    'properties { name = "X-Relayed"; value = "yes"; } }\n' % hop.port)
    r = daemon_factory(spool=str(tmp_path / "relay"), conf=str(conf))
    msg = "\r\n".join(["Subject: big", "Message-ID: <big@example.org>", ""] +
                      body_lines(20000)) + "\r\n"
    with smtplib.SMTP(r.host, r.port, timeout=20) as s:
        s.sendmail("a@example.org", ["x@example.test"], msg)
    m = wait_stored(hop.spool, 1)[0]
    got = spool_cat(hop.spool, msg_id(m))
    # the next hop prepended its own Received:; the relay's Received: and
    # the sink's header come before the original header section
    i = got.find(b"Subject: big")
    assert i > 0 and got[i:] == msg.encode(), (len(got), len(msg))
    assert b"X-Relayed: yes" in got[:i]
    assert r.stop() == 0
    line = [l for l in r.log().splitlines() if l.startswith("sluiced queue:")][0]
    spliced = int(re.search(r"spliced=(\d+)", line).group(1))
    assert spliced >= len(msg) - 4096, line  # all but the edited header part
