"""Bounces (RFC 3464 delivery status notifications) produced by the queue
manager, delivered to a second next hop that the sender's domain is routed
to, and read back with Python's email parser: a 550 for one recipient, no
bounce for the null sender, expiry after max_age (4.4.7) with a delay
warning first."""
import email
import email.policy
import time

from conftest import spool_list
from delivery_util import (message, outcomes, qmgr_log, queue_counters, send, start,
                           wait_spool_empty, wait_until)
from nexthop import NextHop, closed_port


def parse_report(data):
    """The bounce as (message, [per-recipient dicts], rfc822-headers text);
    asserts the RFC 6522 / RFC 3464 structure on the way."""
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/report", msg.get_content_type()
    assert msg.get_param("report-type") == "delivery-status", msg["Content-Type"]
    parts = list(msg.iter_parts())
    assert len(parts) == 3, [p.get_content_type() for p in parts]
    assert parts[0].get_content_type() == "text/plain"
    assert parts[1].get_content_type() == "message/delivery-status"
    assert parts[2].get_content_type() in ("text/rfc822-headers", "message/rfc822-headers")
    # message/delivery-status: the per-message fields, then one block of
    # fields per recipient (email parses each block as a sub-message)
    blocks = parts[1].get_payload()
    assert isinstance(blocks, list) and len(blocks) >= 2, blocks
    per_msg = blocks[0]
    assert per_msg["Reporting-MTA"], per_msg
    rcpts = []
    for b in blocks[1:]:
        rcpts.append({k: str(v) for k, v in b.items()})
    headers = parts[2].get_content()
    if isinstance(headers, bytes):
        headers = headers.decode("ascii", "replace")
    return msg, rcpts, headers


def test_550_one_recipient_bounce_parsed(daemon_factory, tmp_path):
    """550 for one of two recipients: the other is delivered, the sender
    gets a multipart/report with Action failed, Status 5.x.x, the 550 text
    in Diagnostic-Code and the original Subject in text/rfc822-headers."""
    with NextHop("127.0.0.1", rcpt={"bad@example.test": "550 5.1.1 no such user here"}) as hop, \
            NextHop("127.0.0.1") as home:
        d = start(daemon_factory, tmp_path,
                  transport={"example.test": "smtp:" + hop.addr,
                             "client.test": "smtp:" + home.addr})
        send(d, "sender@client.test", ["ok@example.test", "bad@example.test"],
             message("Quarterly numbers 42", tag="bounce-me"))
        assert wait_until(lambda: hop.count() >= 1 and home.count() >= 1, 15), \
            (hop.snapshot(), home.snapshot(), qmgr_log(d))
        assert hop.messages[0].rcpt_tos == ["ok@example.test"]
        b = home.messages[0]
        assert b.mail_from == "", b          # from the null sender
        assert b.rcpt_tos == ["sender@client.test"], b
        msg, rcpts, headers = parse_report(b.data)
        assert msg["Auto-Submitted"] and "auto-replied" in str(msg["Auto-Submitted"])
        assert "sender@client.test" in str(msg["To"])
        assert len(rcpts) == 1, rcpts
        r = rcpts[0]
        assert r["Final-Recipient"].lower().endswith("bad@example.test"), r
        assert r["Final-Recipient"].lower().startswith("rfc822;"), r
        assert r["Action"].lower() == "failed", r
        assert r["Status"].startswith("5."), r
        assert r["Status"] == "5.1.1", r
        assert "550" in r["Diagnostic-Code"] and "no such user here" in r["Diagnostic-Code"], r
        assert r["Diagnostic-Code"].lower().startswith("smtp;"), r
        assert "Subject: Quarterly numbers 42" in headers, headers
        assert "X-Test-Tag: bounce-me" in headers
        # the original body is not in the report
        assert "hello" not in headers
        assert wait_spool_empty(d.spool, 10), spool_list(d.spool)
        assert len(outcomes(d, "bad@example.test", "failed")) == 1, qmgr_log(d)
        assert len(outcomes(d, "ok@example.test", "delivered")) == 1, qmgr_log(d)

        # a message from <> that fails: no bounce (logged), nothing more
        # arrives at the sender's next hop
        send(d, "", ["bad@example.test"], message("null sender"))
        assert d.wait_log(r"from <>: no bounce", 10), qmgr_log(d)
        assert wait_spool_empty(d.spool, 10), spool_list(d.spool)
        time.sleep(0.5)
        assert home.count() == 1, home.snapshot()
        assert d.stop() == 0
        q = queue_counters(d)
        assert q["bounces"] == 1 and q["failed"] == 2, q
        # delivered: ok@ and the bounce itself
        assert q["delivered"] == 2 and q["queued"] == 0, q


def test_expiry_bounces_447_after_delay_warning(daemon_factory, tmp_path):
    """A dead next hop and retry max_age 4 s: a delay warning (Action
    delayed, 4.x.x, Will-Retry-Until) after delay_warning 1 s, then a bounce
    with Status 4.4.7 once the message is older than max_age; the message
    leaves the spool.

    Found under ASan a use-after-free at expiry (qmgr_set_diag given the
    recipient's own host string; fixed in 0fdd544)."""
    dead = "127.0.0.1:%d" % closed_port()
    with NextHop("127.0.0.1") as home:
        d = start(daemon_factory, tmp_path,
                  transport={"example.test": "smtp:" + dead,
                             "client.test": "smtp:" + home.addr},
                  retry={"min": "1s", "max": "1s", "max_age": "4s", "delay_warning": "1s"})
        t0 = time.monotonic()
        send(d, "sender@client.test", ["late@example.test"], message("too late"))
        assert wait_until(lambda: home.count() >= 2, 25), (home.snapshot(), qmgr_log(d))
        took = time.monotonic() - t0
        assert took >= 3.5, took  # not before max_age
        warn, fail = home.messages[0], home.messages[1]
        _, wr, wh = parse_report(warn.data)
        assert wr[0]["Action"].lower() == "delayed", wr
        assert wr[0]["Status"].startswith("4."), wr
        assert "Will-Retry-Until" in wr[0], wr
        assert "Subject: too late" in wh
        _, fr, fh = parse_report(fail.data)
        assert fr[0]["Action"].lower() == "failed", fr
        assert fr[0]["Status"] == "4.4.7", fr
        assert fr[0]["Final-Recipient"].lower().endswith("late@example.test")
        assert fr[0]["Remote-MTA"] == "dns; 127.0.0.1", fr  # the host of the last try
        assert "connect" in fr[0]["Diagnostic-Code"], fr    # and its error
        assert "Subject: too late" in fh
        assert fail.mail_from == "" and fail.rcpt_tos == ["sender@client.test"]
        assert wait_spool_empty(d.spool, 10), spool_list(d.spool)
        time.sleep(1.5)  # one more retry interval: nothing else arrives
        assert home.count() == 2, home.snapshot()
