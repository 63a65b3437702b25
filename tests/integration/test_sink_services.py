"""Sink services on the session's worker (sinks/service.c, svc_dns.c), used
as a sink author uses them: the dnsbl example (sinks/examples/dnsbl.c) in a
real sluiced against a real DNS server (dnsmasq, dnsfix.py)."""
import os
import socket
import time

from conftest import BUILD, assert_reply
from dnsfix import dns_server  # noqa: F401 (the fixture)

LIB = os.path.join(BUILD, "lib")


def conf(tmp_path, zone, deadline="2s", on_deadline="continue", extra=""):
    p = tmp_path / ("dnsbl-%s.conf" % zone.replace(".", "-"))
    p.write_text("""
binding "dnsbl" {
  event = "connect"; sink = "%s"; deadline = "%s"; on_deadline = %s;
  properties { zone = "%s"; %s }
}
""" % (os.path.join(LIB, "dnsbl.so"), deadline, on_deadline, zone, extra))
    return str(p)


def greeting(port, timeout=10):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    t0 = time.monotonic()
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    s.close()
    return data.decode(errors="replace"), time.monotonic() - t0


def threads(pid):
    return len(os.listdir("/proc/%d/task" % pid))


def test_dnsbl_listed_unlisted_and_cached(daemon_factory, dns_server, tmp_path):
    dns_server.local_ttl = 300
    dns_server.update(hosts={"1.0.0.127.bl.test": ["127.0.0.2"]})
    d = daemon_factory(conf=conf(tmp_path, "bl.test"), dns_servers='["%s"]' % dns_server.addr)
    text, _ = greeting(d.port)
    assert text.startswith("554 5.7.1 ") and "bl.test" in text and "127.0.0.1" in text, text
    # sluiced's own threads (workers, scheduler, queue manager) are up by
    # now; a sink that needed a thread per lookup would add to them
    time.sleep(0.5)
    before = threads(d.proc.pid)
    # the worker's cache answers the next ones (dnsmasq's records have a TTL)
    for _ in range(20):
        text, _ = greeting(d.port)
        assert text.startswith("554 5.7.1 "), text
    assert threads(d.proc.pid) == before, "the sink started threads"
    asked = [ln for ln in dns_server.log().splitlines() if "1.0.0.127.bl.test" in ln and "query" in ln]
    assert 1 <= len(asked) <= 2 * 2, asked  # at most one per worker (2), A only


def test_dnsbl_not_listed_goes_on(daemon_factory, dns_server, tmp_path):
    d = daemon_factory(conf=conf(tmp_path, "clean.test"), dns_servers='["%s"]' % dns_server.addr)
    text, _ = greeting(d.port)
    assert text.startswith("220 "), text  # NXDOMAIN: let in
    c = None
    from conftest import raw_session
    c = raw_session(d.port)
    assert_reply(c.cmd("MAIL FROM:<a@example.test>"), 250)
    c.cmd("QUIT")


def test_dnsbl_no_answer_is_the_deadline(daemon_factory, dns_server, tmp_path):
    dns_server.add_timeout("slow.test")
    d = daemon_factory(conf=conf(tmp_path, "slow.test", deadline="700ms", on_deadline="tempfail"),
                       dns_servers='["%s"]' % dns_server.addr)
    text, took = greeting(d.port)
    assert text.startswith("421 ") or text.startswith("451 "), text
    assert 0.6 <= took < 3.0, took
    # the server kept serving meanwhile and the cancelled lookup left nothing behind
    text, took = greeting(d.port)
    assert text.startswith(("421 ", "451 ")), text
    d2 = daemon_factory(spool=str(tmp_path / "spool2"),
                        conf=conf(tmp_path, "slow.test", deadline="500ms", on_deadline="continue"),
                        dns_servers='["%s"]' % dns_server.addr)
    text, took = greeting(d2.port)
    assert text.startswith("220 ") and 0.4 <= took < 3.0, (text, took)


def test_dnsbl_servfail_follows_on_tempfail(daemon_factory, dns_server, tmp_path):
    dns_server.add_servfail("broken.test")
    d = daemon_factory(conf=conf(tmp_path, "broken.test", extra='on_tempfail = "tempfail";'),
                       dns_servers='["%s"]' % dns_server.addr)
    text, took = greeting(d.port)
    assert text.startswith(("421 4.7.1", "451 4.7.1")), text
    assert took < 2.0, took
    d2 = daemon_factory(spool=str(tmp_path / "spool2"), conf=conf(tmp_path, "broken.test"),
                        dns_servers='["%s"]' % dns_server.addr)
    text, _ = greeting(d2.port)
    assert text.startswith("220 "), text


def test_dns_cache_honours_ttl(daemon_factory, dns_server, tmp_path):
    dns_server.local_ttl = 1
    dns_server.update(hosts={"1.0.0.127.ttl.test": ["127.0.0.2"]})
    d = daemon_factory(conf=conf(tmp_path, "ttl.test"), dns_servers='["%s"]' % dns_server.addr,
                       workers=1)

    def asked():
        return len([ln for ln in dns_server.log().splitlines()
                    if "query[A] 1.0.0.127.ttl.test" in ln])

    for _ in range(5):
        assert greeting(d.port)[0].startswith("554 "), "listed"
    assert asked() == 1, dns_server.log()  # one query, four answers from the cache
    time.sleep(2.2)  # the record's TTL (1 s) has passed
    assert greeting(d.port)[0].startswith("554 ")
    assert asked() == 2, dns_server.log()


# ---- http_policy: libcurl's multi-socket interface on the sink services ----

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Policy(BaseHTTPRequestHandler):
    seen = []
    delay = 0.0

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        req = json.loads(self.rfile.read(n))
        Policy.seen.append(req)
        time.sleep(Policy.delay)
        rcpt = req["rcpt"]
        if rcpt.startswith("nobody@"):
            ans = {"verdict": "reject", "code": 550, "enhanced": "5.1.1",
                   "text": "no such user here"}
        elif rcpt.startswith("later@"):
            ans = {"verdict": "tempfail", "code": 450, "enhanced": "4.2.1", "text": "try later"}
        elif rcpt.startswith("broken@"):
            self.send_response(500)
            self.end_headers()
            return
        else:
            ans = {"verdict": "continue"}
        body = json.dumps(ans).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def policy_server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Policy)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def test_http_policy_decides_per_recipient(daemon_factory, tmp_path):
    srv = policy_server()
    Policy.seen.clear()
    Policy.delay = 0.0
    try:
        p = tmp_path / "policy.conf"
        p.write_text("""
binding "policy" {
  event = "rcpt"; sink = "%s"; deadline = "2s"; on_deadline = tempfail;
  properties { url = "http://127.0.0.1:%d/check"; }
}
""" % (os.path.join(LIB, "http_policy.so"), srv.server_address[1]))
        d = daemon_factory(conf=str(p))
        from conftest import raw_session
        c = raw_session(d.port)
        assert_reply(c.cmd("MAIL FROM:<alice@example.org>"), 250)
        assert_reply(c.cmd("RCPT TO:<bob@example.test>"), 250)
        assert_reply(c.cmd("RCPT TO:<nobody@example.test>"), 550, "5.1.1")
        assert_reply(c.cmd("RCPT TO:<later@example.test>"), 450, "4.2.1")
        assert_reply(c.cmd("RCPT TO:<broken@example.test>"), 451, "4.7.1")  # on_error tempfail
        c.cmd("QUIT")
        first = Policy.seen[0]
        assert first["sender"] == "alice@example.org" and first["rcpt"] == "bob@example.test"
        assert first["client"] == "127.0.0.1" and first["rcpts"] == []
        assert Policy.seen[1]["rcpts"] == ["bob@example.test"]
        # a service slower than the deadline: the binding's on_deadline, in time
        Policy.delay = 3.0
        c = raw_session(d.port)
        assert_reply(c.cmd("MAIL FROM:<alice@example.org>"), 250)
        t0 = time.monotonic()
        r = c.cmd("RCPT TO:<bob@example.test>")
        took = time.monotonic() - t0
        assert r[0] == 451 and 1.8 <= took < 2.8, (r, took)
        Policy.delay = 0.0
        assert_reply(c.cmd("RCPT TO:<bob@example.test>"), 250)  # the server kept serving
        c.cmd("QUIT")
    finally:
        srv.shutdown()


# ---- a pending response sink holds the reply (it used to be abandoned) ----

def test_pending_response_holds_the_reply(daemon_factory, tmp_path):
    p = tmp_path / "resp.conf"
    p.write_text("""
binding "slow-replies" {
  event = "response"; sink = "builtin:delay"; deadline = "2s";
  properties { ms = 150; }
}
""")
    d = daemon_factory(conf=str(p))
    t0 = time.monotonic()
    s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
    f = s.makefile("rb")
    assert f.readline().startswith(b"220 ")
    assert time.monotonic() - t0 >= 0.14  # the greeting waited for the sink
    # pipelined: every reply waits for its sink, in order, none lost
    s.sendall(b"EHLO c.example\r\n")
    while True:
        ln = f.readline()
        assert ln.startswith(b"250"), ln
        if ln[:4] == b"250 ":
            break
    s.sendall(b"RSET\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\n")
    rest = [f.readline(), f.readline(), f.readline()]
    assert [r[:4] for r in rest] == [b"250 "] * 3, rest
    s.sendall(b"QUIT\r\n")
    assert f.readline().startswith(b"221 ")
    s.close()


def test_pending_response_past_its_deadline(daemon_factory, tmp_path):
    p = tmp_path / "never.conf"
    p.write_text("""
binding "hangs" {
  event = "response"; sink = "builtin:delay"; deadline = "300ms"; on_deadline = continue;
  properties { never = true; }
}
""")
    d = daemon_factory(conf=str(p))
    for _ in range(2):  # the deadline's verdict (continue): unchanged, after it
        t0 = time.monotonic()
        text, _ = greeting(d.port)
        assert text.startswith("220 ") and 0.28 <= time.monotonic() - t0 < 2.0, text


def test_services_counted_in_metrics(daemon_factory, dns_server, tmp_path):
    from test_metrics import admin_addr, fetch
    dns_server.add_timeout("gone.test")
    p = tmp_path / "two.conf"
    p.write_text("""
binding "slowbl" {
  event = "connect"; sink = "%s"; deadline = "300ms"; on_deadline = continue;
  properties { zone = "gone.test"; }
}
""" % os.path.join(LIB, "dnsbl.so"))
    d = daemon_factory(conf=str(p), dns_servers='["%s"]' % dns_server.addr,
                       admin_listen="127.0.0.1:0")
    for _ in range(3):
        assert greeting(d.port)[0].startswith("220 ")
    _, _, body = fetch(admin_addr(d))
    lab = '{binding="slowbl",event="connect"}'
    assert "sluice_binding_services_total%s 3" % lab in body, body
    assert "sluice_binding_services_cancelled_total%s 3" % lab in body
    assert "sluice_binding_services_in_flight%s 0" % lab in body
    assert "sluice_binding_deadline_misses_total%s 3" % lab in body
