"""MX routing against a real DNS server (dnsmasq, dnsfix.py): the transport
value mx:PORT looks up the recipient domain's MX records and delivers on
PORT.  Next hops listen on 127.0.0.2 and 127.0.0.3 (same port): preference
order, fallback when the preferred exchange is down, the implicit MX (an A
record only), NXDOMAIN (bounce 5.1.2) and the null MX (bounce)."""
import time

import pytest

from conftest import spool_list
from delivery_util import (message, outcomes, qmgr_log, send, start, wait_spool_empty,
                           wait_until)
from dnsfix import DnsServer, dns_server  # noqa: F401 (fixture)
from nexthop import NextHop
from test_bounce import parse_report


@pytest.fixture
def mx_pair():
    """Two next hops on the same port, 127.0.0.2 and 127.0.0.3; 127.0.0.4
    on that port has nothing listening."""
    for _ in range(20):
        a = NextHop("127.0.0.2").start()
        b = NextHop("127.0.0.3", port=a.port)
        try:
            b.start()
        except OSError:
            a.stop()
            continue
        try:
            yield a, b
        finally:
            a.stop()
            b.stop()
        return
    raise RuntimeError("no port free on both 127.0.0.2 and 127.0.0.3")


@pytest.fixture
def mx_setup(daemon_factory, tmp_path, dns_server, mx_pair):
    a, b = mx_pair
    dns_server.update(
        mx=[("example.test", "mx1.example.test", 10), ("example.test", "mx2.example.test", 20),
            ("down.test", "mx1.down.test", 10), ("down.test", "mx2.down.test", 20)],
        hosts={"mx1.example.test": "127.0.0.2", "mx2.example.test": "127.0.0.3",
               "mx1.down.test": "127.0.0.4", "mx2.down.test": "127.0.0.3",
               "aonly.test": "127.0.0.3"},
        null_mx=["nullmx.test"])
    home = NextHop("127.0.0.1").start()
    d = start(daemon_factory, tmp_path,
              transport={"client.test": "smtp:" + home.addr, ".test": "mx:%d" % a.port},
              dns_servers='["%s"]' % dns_server.addr)
    yield d, a, b, home
    home.stop()


def test_mx_preference_and_fallback(mx_setup):
    """MX 10 (127.0.0.2) gets the mail while it is up; once it is down the
    next message falls back to MX 20 (127.0.0.3)."""
    d, a, b, home = mx_setup
    send(d, "sender@client.test", ["u1@example.test"], message("pref"))
    assert wait_until(lambda: a.count() >= 1, 15), qmgr_log(d)
    assert wait_spool_empty(d.spool, 10), spool_list(d.spool)
    assert b.count() == 0, b.snapshot()
    assert a.messages[0].rcpt_tos == ["u1@example.test"]
    via = outcomes(d, "u1@example.test", "delivered")
    assert via and "127.0.0.2" in via[0][3], qmgr_log(d)

    a.stop()  # the preferred exchange goes away (its cached connection too)
    send(d, "sender@client.test", ["u2@example.test"], message("fallback"))
    assert wait_until(lambda: b.count() >= 1, 15), qmgr_log(d)
    assert b.messages[0].rcpt_tos == ["u2@example.test"]
    assert b.messages[0].header("Subject") == "fallback"
    assert wait_spool_empty(d.spool, 10), spool_list(d.spool)
    via = outcomes(d, "u2@example.test", "delivered")
    assert via and "127.0.0.3" in via[0][3], qmgr_log(d)
    assert not outcomes(d, "u2@example.test", "deferred"), qmgr_log(d)


def test_mx_preferred_dead_from_the_start(mx_setup):
    """down.test: MX 10 points at 127.0.0.4 where nothing listens, MX 20 at
    127.0.0.3: delivered there at the first attempt."""
    d, a, b, home = mx_setup
    send(d, "sender@client.test", ["u@down.test"], message("down"))
    assert wait_until(lambda: b.count() >= 1, 15), qmgr_log(d)
    assert b.messages[0].rcpt_tos == ["u@down.test"]
    assert wait_spool_empty(d.spool, 10), spool_list(d.spool)
    assert a.count() == 0
    assert not outcomes(d, "u@down.test", "deferred"), qmgr_log(d)


def test_implicit_mx(mx_setup):
    """aonly.test has an A record (127.0.0.3) and no MX: delivered there."""
    d, a, b, home = mx_setup
    send(d, "sender@client.test", ["u@aonly.test"], message("implicit"))
    assert wait_until(lambda: b.count() >= 1, 15), qmgr_log(d)
    assert b.messages[0].rcpt_tos == ["u@aonly.test"]
    assert a.count() == 0
    assert wait_spool_empty(d.spool, 10), spool_list(d.spool)


def test_nxdomain_and_null_mx_bounce(mx_setup):
    """nx.test does not exist (NXDOMAIN): bounce with 5.1.2.  nullmx.test
    publishes the null MX (RFC 7505): bounce with a 5.x.x status.  Both
    bounces go to the sender's next hop; nothing reaches the MX hops."""
    d, a, b, home = mx_setup
    send(d, "sender@client.test", ["u@nx.test"], message("nowhere"))
    assert wait_until(lambda: home.count() >= 1, 15), qmgr_log(d)
    _, r, h = parse_report(home.messages[0].data)
    assert r[0]["Final-Recipient"].lower().endswith("u@nx.test"), r
    assert r[0]["Action"].lower() == "failed", r
    assert r[0]["Status"] == "5.1.2", r
    assert "Subject: nowhere" in h

    send(d, "sender@client.test", ["u@nullmx.test"], message("null mx"))
    assert wait_until(lambda: home.count() >= 2, 15), qmgr_log(d)
    _, r, h = parse_report(home.messages[1].data)
    assert r[0]["Final-Recipient"].lower().endswith("u@nullmx.test"), r
    assert r[0]["Action"].lower() == "failed", r
    assert r[0]["Status"].startswith("5."), r
    assert "Subject: null mx" in h
    assert wait_spool_empty(d.spool, 10), spool_list(d.spool)
    assert a.count() == 0 and b.count() == 0
    assert outcomes(d, "u@nx.test", "failed") and outcomes(d, "u@nullmx.test", "failed")
