"""core/client/dns.h against a real DNS server (dnsmasq, see dnsfix.py), through
build/bin/dns-probe: MX order, shuffling of equal preferences, implicit MX,
null MX, NXDOMAIN, SERVFAIL/timeouts, exchanges without address, AAAA,
literals."""
import os
import subprocess
import time

from conftest import BUILD
from dnsfix import DnsServer, dns_server  # noqa: F401 (fixture)

PROBE = os.path.join(BUILD, "bin", "dns-probe")


class Result:
    def __init__(self, out, rc):
        lines = out.splitlines()
        assert lines and lines[0].startswith("status "), out
        head = lines[0].split(" ", 2)
        self.status = head[1]
        self.error = head[2] if len(head) > 2 else ""
        self.rows = [tuple(l.split(" ")) for l in lines[1:]]
        self.rc = rc

    @property
    def hosts(self):
        """Exchanges in order, each once."""
        seen = []
        for h, _, _ in self.rows:
            if h not in seen:
                seen.append(h)
        return seen

    @property
    def addrs(self):
        return [a for _, _, a in self.rows]

    def __repr__(self):
        return f"status={self.status} error={self.error!r} rows={self.rows}"


def probe(server, kind, name, port=None, timeout_ms=300, tries=2, wall_ms=10000):
    args = [PROBE, "-t", str(timeout_ms), "-n", str(tries), "-w", str(wall_ms),
            server, kind, name]
    if port is not None:
        args.append(str(port))
    r = subprocess.run(args, capture_output=True, text=True, timeout=wall_ms / 1000 + 10)
    assert r.returncode in (0, 3), f"rc={r.returncode} {r.stderr}"
    return Result(r.stdout, r.returncode)


def test_mx_preference_order(dns_server):
    dns_server.update(
        mx=[("a.test", "mx30.a.test", 30), ("a.test", "mx10.a.test", 10),
            ("a.test", "mx20.a.test", 20)],
        hosts={"mx10.a.test": "127.0.0.10", "mx20.a.test": ["127.0.0.20", "127.0.0.21"],
               "mx30.a.test": "127.0.0.30"})
    r = probe(dns_server.addr, "mx", "a.test", 2525)
    assert r.status == "ok", r
    assert r.error == ""
    # all addresses of an exchange together, in the server's order
    assert r.rows[0] == ("mx10.a.test", "10", "127.0.0.10:2525")
    assert sorted(r.rows[1:3]) == [("mx20.a.test", "20", "127.0.0.20:2525"),
                                   ("mx20.a.test", "20", "127.0.0.21:2525")]
    assert r.rows[3] == ("mx30.a.test", "30", "127.0.0.30:2525")
    assert len(r.rows) == 4


def test_equal_preferences_random_order(dns_server):
    """Both orders of two equal-preference exchanges show up within a
    bounded number of lookups; the lower preference always comes first."""
    dns_server.update(
        mx=[("eq.test", "x.eq.test", 10), ("eq.test", "y.eq.test", 10),
            ("eq.test", "first.eq.test", 5)],
        hosts={"x.eq.test": "127.0.1.1", "y.eq.test": "127.0.1.2",
               "first.eq.test": "127.0.1.3"})
    orders = set()
    for _ in range(60):
        r = probe(dns_server.addr, "mx", "eq.test")
        assert r.status == "ok", r
        assert r.hosts[0] == "first.eq.test", r
        orders.add(tuple(r.hosts[1:]))
        if len(orders) == 2:
            break
    assert orders == {("x.eq.test", "y.eq.test"), ("y.eq.test", "x.eq.test")}


def test_implicit_mx(dns_server):
    dns_server.add_host("plain.test", "127.0.0.7")
    r = probe(dns_server.addr, "mx", "plain.test")
    assert r.status == "ok", r
    assert r.rows == [("plain.test", "0", "127.0.0.7:25")]


def test_implicit_mx_without_address_is_permanent(dns_server):
    """The domain exists (a TXT record; an empty non-terminal) but has
    neither MX nor address records."""
    dns_server.update(txt=[("txt.test", "v=none")],
                      mx=[("sub.ent.test", "mx.ent.test", 10)],
                      hosts={"mx.ent.test": "127.0.0.1"})
    for domain in ("txt.test", "ent.test"):
        r = probe(dns_server.addr, "mx", domain)
        assert r.status == "perm", r
        assert "no MX records and no address" in r.error, r
        assert r.rows == []


def test_null_mx_is_permanent(dns_server):
    dns_server.update(null_mx=["nomail.test"], hosts={"nomail.test": "127.0.0.8"})
    r = probe(dns_server.addr, "mx", "nomail.test")
    assert r.status == "perm", r
    assert "null MX" in r.error
    assert r.rows == []


def test_nxdomain_is_permanent(dns_server):
    r = probe(dns_server.addr, "mx", "nonexistent.test")
    assert r.status == "perm", r
    assert "NXDOMAIN" in r.error


def test_servfail_is_temporary(dns_server):
    dns_server.add_servfail("broken.test")
    t0 = time.monotonic()
    r = probe(dns_server.addr, "mx", "x.broken.test")
    assert r.status == "temp", r
    assert "SERVFAIL" in r.error
    assert time.monotonic() - t0 < 5
    assert "reply error is SERVFAIL" in dns_server.log() or "SERVFAIL" in dns_server.log()


def test_timeout_is_temporary_and_bounded(dns_server):
    """Queries for slow.test are forwarded to a socket that never answers:
    300 ms per try, 2 tries (c-ares doubles the second): about 1 s."""
    dns_server.add_timeout("slow.test")
    t0 = time.monotonic()
    r = probe(dns_server.addr, "mx", "x.slow.test", timeout_ms=300, tries=2)
    took = time.monotonic() - t0
    assert r.status == "temp", r
    assert "timed out" in r.error
    assert took < 5, took


def test_unreachable_server_is_temporary(dns_server):
    port = dns_server.port
    dns_server.stop()  # nothing listens on the port now
    t0 = time.monotonic()
    r = probe(f"127.0.0.1:{port}", "mx", "a.test", timeout_ms=300, tries=2)
    assert r.status == "temp", r
    assert time.monotonic() - t0 < 5


def test_exchange_without_address_is_skipped(dns_server):
    dns_server.update(
        mx=[("skip.test", "gone.skip.test", 5), ("skip.test", "up.skip.test", 10)],
        hosts={"up.skip.test": "127.0.0.9"})
    r = probe(dns_server.addr, "mx", "skip.test")
    assert r.status == "ok", r
    assert r.rows == [("up.skip.test", "10", "127.0.0.9:25")]
    assert "gone.skip.test" in r.error  # said why, though the result is ok


def test_no_exchange_with_address_nxdomain_is_permanent(dns_server):
    dns_server.update(mx=[("dead.test", "a.dead.test", 5), ("dead.test", "b.dead.test", 10)])
    r = probe(dns_server.addr, "mx", "dead.test")
    assert r.status == "perm", r
    assert "no address for any MX host" in r.error


def test_no_exchange_with_address_timeout_is_temporary(dns_server):
    dns_server.update(mx=[("half.test", "a.half.test", 5), ("half.test", "mx.slow.test", 10)],
                      timeouts=["slow.test"])
    r = probe(dns_server.addr, "mx", "half.test", timeout_ms=300, tries=1)
    assert r.status == "temp", r


def test_aaaa_addresses_included_after_a(dns_server):
    dns_server.update(
        mx=[("six.test", "dual.six.test", 10), ("six.test", "v6.six.test", 20)],
        hosts={"dual.six.test": ["::1", "127.0.0.1"], "v6.six.test": "::1"})
    r = probe(dns_server.addr, "mx", "six.test", 2525)
    assert r.status == "ok", r
    assert r.rows == [("dual.six.test", "10", "127.0.0.1:2525"),
                      ("dual.six.test", "10", "[::1]:2525"),
                      ("v6.six.test", "20", "[::1]:2525")]


def test_host_lookup(dns_server):
    dns_server.add_host("relay.test", "127.0.0.5", "::1")
    r = probe(dns_server.addr, "host", "relay.test", 587)
    assert r.status == "ok", r
    assert r.rows == [("relay.test", "0", "127.0.0.5:587"), ("relay.test", "0", "[::1]:587")]
    r = probe(dns_server.addr, "host", "norelay.test")
    assert r.status == "perm", r


def test_literals_need_no_server():
    """A literal resolves without any query: the server given does not
    exist (port 9 on loopback is closed)."""
    r = probe("127.0.0.1:9", "host", "192.0.2.1", 25)
    assert r.status == "ok", r
    assert r.rows == [("192.0.2.1", "0", "192.0.2.1:25")]
    r = probe("127.0.0.1:9", "host", "::1", 2525)
    assert r.rows == [("::1", "0", "[::1]:2525")]
    r = probe("127.0.0.1:9", "mx", "[IPv6:2001:db8::5]")
    assert r.status == "ok", r
    assert r.rows == [("[IPv6:2001:db8::5]", "0", "[2001:db8::5]:25")]


def test_restart_keeps_port():
    with DnsServer() as d:
        port = d.port
        d.add_host("late.test", "127.0.0.4")  # restarts dnsmasq
        assert d.port == port
        r = probe(d.addr, "host", "late.test")
        assert r.rows == [("late.test", "0", "127.0.0.4:25")]
