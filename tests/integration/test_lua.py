"""Sinks in Lua (sinks/lua_*.c): `sink = "lua:PATH"` in a real sluiced, with
real SMTP sessions, a real DNS server (dnsfix.py) and a real HTTP server."""
import json
import os
import re
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from conftest import BUILD, assert_reply, raw_session, spool_cat, spool_list
from dnsfix import dns_server  # noqa: F401 (the fixture)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "sinks", "examples")
SLUICECTL = os.path.join(BUILD, "bin", "sluicectl")
QUEUED = re.compile(r"queued as ([0-9a-f]{16})")
BODY = b"Subject: lua\r\nFrom: a@example.org\r\nX-Drop: me\r\n\r\nhello\r\n"


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def binding(name, event, path, extra="", props=""):
    return 'binding "%s" { event = "%s"; sink = "lua:%s"; %s properties { %s } }\n' % (
        name, event, path, extra, props)


def send(port, sender, rcpts=("b@example.test",), body=BODY):
    """One message; the reply to MAIL if refused, else to the final dot."""
    c = raw_session(port)
    try:
        r = c.cmd("MAIL FROM:<%s>" % sender)
        if r[0] != 250:
            return r
        for rc in rcpts:
            assert_reply(c.cmd("RCPT TO:<%s>" % rc), 250)
        assert_reply(c.cmd("DATA"), 354)
        c.send(body + b".\r\n")
        return c.reply()
    finally:
        try:
            c.cmd("QUIT")
        except OSError:
            pass


def test_the_issue_example_as_written(daemon_factory, tmp_path):
    conf = write(tmp_path, "a.conf",
                 binding("spam", "mail", os.path.join(EXAMPLES, "spam_domain.lua"),
                         props='domain = "spam.example";') +
                 binding("spam-eod", "eod", os.path.join(EXAMPLES, "spam_domain.lua")))
    d = daemon_factory(conf=conf)
    assert_reply(send(d.port, "Someone@Spam.Example"), 550, "5.7.1")
    r = send(d.port, "alice@example.org")
    assert r[0] == 250, r
    qid = QUEUED.search(r[1]).group(1)
    assert b"\r\nX-Lua-Checked: yes\r\n" in spool_cat(d.spool, qid)


VERDICTS = """
local s = { events = { "mail", "eod" } }
function s.create(p) s.tag = p.tag end
function s.handle(ctx)
  local who = ctx.sender:match("^([^@]*)")
  if ctx.event == "mail" then
    assert(ctx.client == "127.0.0.1" and ctx.helo == "client.example.test")
    if who == "rej" then return "reject", 550, "5.7.1", "no " .. ctx.sender end
    if who == "tmp" then return "tempfail", 451, "4.7.1", "later" end
    if who == "bad" then return 42 end
    if who == "boom" then error("boom on purpose") end
    ctx:prop_set("session", "seen", who)
    return "continue"
  end
  -- eod: headers, the body, the envelope, bags, shared counters
  local n = 0
  for slice in ctx:body() do n = n + #slice end
  assert(n == ctx.body_size, n .. " vs " .. ctx.body_size)
  assert(ctx:header_get("subject") == "lua")
  assert(ctx:header_get("X-Nope") == nil)
  ctx:header_remove("X-Drop")
  ctx:header_change("Subject", "[" .. s.tag .. "] lua")
  ctx:header_add("X-Rcpts", table.concat(ctx:rcpts(), ","))
  ctx:header_add("X-Seen", ctx:prop_get("session", "seen") or "?")
  ctx:header_add("X-Count", string.format("%d", sluice.incr("lua-test-count")))
  local ok, why = ctx:route_set("discard")
  ctx:header_add("X-Route", tostring(ok) .. " " .. tostring(why))
  return "continue"
end
return s
"""


def test_verdicts_headers_body_props(daemon_factory, tmp_path):
    path = write(tmp_path, "v.lua", VERDICTS)
    conf = write(tmp_path, "v.conf", binding("v-mail", "mail", path, props='tag = "T";') +
                 binding("v-eod", "eod", path, props='tag = "T";'))
    d = daemon_factory(conf=conf)
    assert_reply(send(d.port, "rej@example.org"), 550, "5.7.1")
    assert_reply(send(d.port, "tmp@example.org"), 451, "4.7.1")
    assert_reply(send(d.port, "bad@example.org"), 451, "4.3.0")   # nonsense: on_error
    assert_reply(send(d.port, "boom@example.org"), 451, "4.3.0")  # an error: on_error
    assert d.wait_log(r'binding "v-mail" \(lua .*v\.lua\): .*v\.lua:11: boom on purpose'), d.log()
    assert d.wait_log(r'binding "v-mail".*handle returned number, not a verdict'), d.log()
    for i in (1, 2):
        r = send(d.port, "ok%d@example.org" % i, rcpts=("b@example.test", "c@example.test"))
        assert r[0] == 250, r
        text = spool_cat(d.spool, QUEUED.search(r[1]).group(1))
        assert b"Subject: [T] lua\r\n" in text and b"X-Drop" not in text, text
        assert b"X-Rcpts: b@example.test,c@example.test\r\n" in text, text
        assert b"X-Seen: ok%d\r\n" % i in text, text
        assert b"X-Count: %d\r\n" % i in text, text  # one counter across workers and calls
        assert b"X-Route: nil not available at this event\r\n" in text, text


def parallel(n, fn):
    out = [None] * n
    errs = []

    def run(i):
        try:
            out[i] = fn(i)
        except Exception as e:  # noqa: BLE001 (reported below)
            errs.append(e)
    ts = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert not errs, errs
    return out


SLEEPER = """
return { events = { "eod" }, handle = function(ctx)
  sluice.sleep(%s)
  sluice.log("info", "woke")
  ctx:header_add("X-Slept", "yes")
  return "continue"
end }
"""


def test_sleep_64_sessions_in_parallel(daemon_factory, tmp_path):
    path = write(tmp_path, "sleep.lua", SLEEPER % "0.5")
    d = daemon_factory(conf=write(tmp_path, "s.conf", binding("sleep", "eod", path)), workers=2)
    t0 = time.monotonic()
    replies = parallel(64, lambda i: send(d.port, "p%d@example.org" % i))
    took = time.monotonic() - t0
    assert all(r[0] == 250 for r in replies), replies
    assert d.log().count("woke") == 64
    # 64 x 0.5 s one after another would be 32 s (16 s per worker): the
    # sleeps overlap on 2 workers
    assert took < 10, took
    assert len(spool_list(d.spool)) == 64


def test_deadline_ends_the_coroutine(daemon_factory, tmp_path):
    path = write(tmp_path, "slow.lua", SLEEPER % "5")
    d = daemon_factory(conf=write(tmp_path, "d.conf", binding(
        "slow", "eod", path, extra='deadline = "500ms"; on_deadline = tempfail;')))
    t0 = time.monotonic()
    r = send(d.port, "slow@example.org")
    assert r[0] == 451 and time.monotonic() - t0 < 3, r
    # the closed coroutine never runs on: it would log when it woke
    time.sleep(5.5)
    assert "woke" not in d.log(), d.log()
    r = send(d.port, "again@example.org")
    assert r[0] == 451, r  # still served


DNS = """
return { events = { "mail" }, handle = function(ctx)
  local dom = ctx.sender:match("@(.*)$")
  local rr, status, why = sluice.dns(dom, "MX")
  if status == "nxdomain" then return "reject", 550, "5.1.8", "no such domain " .. dom end
  if status ~= "ok" then return "tempfail", 451, "4.4.3", status .. " " .. tostring(why) end
  ctx:prop_set("session", "mx", rr[1].text)
  local a = sluice.dns("listed." .. dom, "A")
  if #a > 0 and a[1].text == "127.0.0.2" then
    return "reject", 554, "5.7.1", "listed " .. a[1].text .. " ttl " .. a[1].ttl
  end
  return "continue"
end }
"""


def test_dns_against_a_real_server(daemon_factory, dns_server, tmp_path):
    dns_server.update(hosts={"listed.bad.test": ["127.0.0.2"]},
                      mx=[("good.test", "mx.good.test", 10), ("bad.test", "mx.bad.test", 10)])
    path = write(tmp_path, "dns.lua", DNS)
    d = daemon_factory(conf=write(tmp_path, "n.conf", binding(
        "dns", "mail", path, extra='deadline = "3s";')), dns_servers='["%s"]' % dns_server.addr)
    c = raw_session(d.port)
    assert_reply(c.cmd("MAIL FROM:<a@good.test>"), 250)
    c.cmd("QUIT")
    c = raw_session(d.port)
    r = c.cmd("MAIL FROM:<a@bad.test>")
    assert r[0] == 554 and "listed 127.0.0.2" in r[1], r
    c.cmd("QUIT")
    c = raw_session(d.port)
    assert_reply(c.cmd("MAIL FROM:<a@nowhere.test>"), 550, "5.1.8")
    c.cmd("QUIT")


def test_runaway_loop_and_memory_hog(daemon_factory, tmp_path):
    loop = write(tmp_path, "loop.lua", 'return { events = { "mail" }, handle = function(ctx)\n'
                 '  local n = 0\n  while true do n = n + 1 end\nend }\n')
    hog = write(tmp_path, "hog.lua", 'return { events = { "rcpt" }, handle = function(ctx)\n'
                '  local t = {}\n  for i = 1, 1e9 do t[i] = string.rep("x", 100) .. i end\nend }\n')
    d = daemon_factory(conf=write(tmp_path, "l.conf",
                                  binding("loop", "mail", loop, props='lua_budget = 100000;') +
                                  binding("hog", "rcpt", hog, props='lua_memory = 4000000; '
                                          'lua_budget = 2000000000; on_error = "reject";')))
    c = raw_session(d.port)
    assert_reply(c.cmd("MAIL FROM:<a@example.org>"), 451, "4.3.0")
    c.cmd("QUIT")
    assert d.wait_log(r'binding "loop".*loop\.lua:3: instruction budget of 100000 exceeded'), \
        d.log()
    d2 = daemon_factory(spool=str(tmp_path / "spool2"), conf=write(
        tmp_path, "h.conf", binding("hog", "rcpt", hog, props='lua_memory = 4000000; '
                                    'lua_budget = 2000000000; on_error = "reject";')))
    for _ in range(3):  # the state recovers after each failed call
        c = raw_session(d2.port)
        assert_reply(c.cmd("MAIL FROM:<a@example.org>"), 250)
        assert_reply(c.cmd("RCPT TO:<b@example.test>"), 554, "5.7.0")
        c.cmd("QUIT")
    assert d2.wait_log(r'binding "hog".*hog\.lua:3: memory limit exceeded \(lua_memory 4000000\)'),\
        d2.log()
    assert d2.proc.poll() is None


def ctl(sock, *args):
    return subprocess.run([SLUICECTL, "-s", sock] + list(args), capture_output=True, text=True,
                          timeout=60)


def test_reload_and_a_syntax_error_keeps_the_old_code(daemon_factory, tmp_path):
    v1 = 'return { events = { "mail" }, handle = function(ctx) return "reject", 550, "5.7.1", "v1" end }\n'
    v2 = 'return { events = { "mail" }, handle = function(ctx) return "reject", 550, "5.7.1", "v2" end }\n'
    path = write(tmp_path, "r.lua", v1)
    sock = str(tmp_path / "ctl.sock")
    d = daemon_factory(conf=write(tmp_path, "r.conf", binding("r", "mail", path)),
                       control_socket=sock)

    def said():
        c = raw_session(d.port)
        r = c.cmd("MAIL FROM:<a@example.org>")
        c.cmd("QUIT")
        return r[1].split()[-1]
    assert said() == "v1"
    assert "woke" not in d.log()
    write(tmp_path, "r.lua", v2)
    r = ctl(sock, "bindings", "reload", "r")
    assert r.returncode == 0, r.stderr
    assert said() == "v2"
    write(tmp_path, "r.lua", v2.replace("function(ctx)", "function(ctx"))
    r = ctl(sock, "bindings", "reload", "r")
    assert r.returncode != 0 and "r.lua:1:" in r.stderr and "stays" in r.stderr, r.stderr
    assert said() == "v2"
    # SIGHUP reads the file again too; a bad file is refused, the old code stays
    write(tmp_path, "r.lua", v1)
    d.proc.send_signal(1)
    deadline = time.monotonic() + 10
    while said() != "v1" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert said() == "v1", d.log()


class Policy(BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        req = json.loads(self.rfile.read(n))
        if self.headers.get("X-Key") != "k1":
            self.send_response(403)
            self.end_headers()
            return
        body = json.dumps({"ok": not req["rcpt"].startswith("nobody@")}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


HTTP = """
local s = { events = { "rcpt" } }
function s.create(p) s.url = p.url end
function s.handle(ctx)
  local r, err = sluice.http{ url = s.url, method = "POST",
    headers = { ["Content-Type"] = "application/json", ["X-Key"] = "k1" },
    body = string.format('{"rcpt":"%s"}', ctx.rcpt) }
  if not r then return "tempfail", 451, "4.7.1", "policy: " .. err end
  if r.status ~= 200 then return "tempfail", 451, "4.7.1", "policy status " .. r.status end
  if r.body:find('"ok": false', 1, true) then return "reject", 550, "5.1.1", "no such user" end
  return "continue"
end
return s
"""


def test_http_request(daemon_factory, tmp_path):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Policy)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        path = write(tmp_path, "http.lua", HTTP)
        d = daemon_factory(conf=write(tmp_path, "h.conf", binding(
            "http", "rcpt", path, extra='deadline = "3s";',
            props='url = "http://127.0.0.1:%d/check";' % srv.server_address[1])))
        c = raw_session(d.port)
        assert_reply(c.cmd("MAIL FROM:<a@example.org>"), 250)
        assert_reply(c.cmd("RCPT TO:<b@example.test>"), 250)
        assert_reply(c.cmd("RCPT TO:<nobody@example.test>"), 550, "5.1.1")
        c.cmd("QUIT")
    finally:
        srv.shutdown()


def test_bad_files_are_startup_errors(daemon_factory, tmp_path):
    cases = [("syn.lua", "return {", "syn.lua:1:"),
             ("none.lua", "return 1", "not a table"),
             ("noh.lua", 'return { events = { "mail" } }', "no handle function"),
             ("ev.lua", 'return { events = { "mial" }, handle = print }', '"mial" is not an event'),
             ("other.lua", 'return { events = { "rcpt" }, handle = print }',
              'does not handle event "mail"')]
    for name, text, want in cases:
        path = write(tmp_path, name, text)
        try:
            daemon_factory(conf=write(tmp_path, name + ".conf", binding("b", "mail", path)))
        except RuntimeError as e:
            assert want in str(e), (name, str(e))
        else:
            raise AssertionError("started with " + name)


def test_example_scripts(daemon_factory, tmp_path):
    ex = lambda n: os.path.join(EXAMPLES, n)  # noqa: E731
    conf = write(tmp_path, "ex.conf",
                 binding("acc", "mail", ex("access.lua"), extra="priority = 1000;",
                         props='match = "@spam%.example$"; text = "sender refused";') +
                 binding("hdr", "eod", ex("header.lua"),
                         props='name = "Subject"; value = "changed"; replace = "true";') +
                 binding("ali", "categorize", ex("alias.lua"),
                         props='"sales@example.test" = "a@example.test, b@example.test";') +
                 binding("rte", "route", ex("route.lua"), props='"*" = "hold";'))
    # all four load (alias and route at the queue manager's events)
    r = subprocess.run([os.path.join(BUILD, "bin", "sluiced"), "-c", conf, "--bindings"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "ali" in r.stdout and "rte" in r.stdout, r.stdout + r.stderr
    d = daemon_factory(conf=conf)
    r = send(d.port, "x@spam.example")
    assert r[0] == 550 and "sender refused" in r[1], r
    r = send(d.port, "alice@example.org")
    assert r[0] == 250, r
    text = spool_cat(d.spool, QUEUED.search(r[1]).group(1))
    assert b"Subject: changed\r\n" in text and b"Subject: lua" not in text, text


class Big(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"y" * (1024 * 1024)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def test_an_answer_that_does_not_fit_the_memory_limit(daemon_factory, tmp_path):
    """A script near its lua_memory when a 1 MiB HTTP answer arrives: the
    answer is built under protection, the script gets nil (no Lua panic,
    the daemon keeps serving)."""
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Big)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        path = write(tmp_path, "full.lua", """
local s = { events = { "rcpt" } }
function s.create(p) s.url = p.url end
function s.handle(ctx)
  local ballast = {}
  for i = 1, 22 do ballast[i] = string.rep("x", 100000) .. i end
  local r = sluice.http{ url = s.url }
  if not r then return "tempfail", 451, "4.7.1", "no room for the answer" end
  return "continue", 250, "2.1.5", "got " .. #r.body .. " " .. #ballast
end
return s
""")
        d = daemon_factory(conf=write(tmp_path, "f.conf", binding(
            "full", "rcpt", path, extra='deadline = "3s";',
            props='url = "http://127.0.0.1:%d/big"; lua_memory = 3000000;'
            % srv.server_address[1])))
        for _ in range(2):
            c = raw_session(d.port)
            assert_reply(c.cmd("MAIL FROM:<a@example.org>"), 250)
            assert_reply(c.cmd("RCPT TO:<b@example.test>"), 451, "4.7.1")
            c.cmd("QUIT")
        assert d.proc.poll() is None, d.log()
    finally:
        srv.shutdown()
