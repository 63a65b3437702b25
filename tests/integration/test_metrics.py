"""The metrics endpoint of the real daemon (core/ops/admin.c): GET /metrics
moves with the mail sent, passes `promtool check metrics`, is scraped by a
real Prometheus on loopback; the listener's HTTP errors and bounds.

Every daemon here sets admin_listen = 127.0.0.1:0 and reads the chosen port
from its "metrics at http://ADDR/metrics" line; Prometheus gets a free port
found at run time and a temporary storage directory, and is stopped (its
own PID only) at the end.
"""
import json
import os
import re
import shutil
import smtplib
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from conftest import SLUICED

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


def admin_addr(d):
    assert d.wait_log(r"metrics at http://\S+/metrics"), d.log()
    m = re.search(r"metrics at http://(\S+)/metrics", d.log())
    return m.group(1)


def fetch(addr, path="/metrics"):
    with urllib.request.urlopen(f"http://{addr}{path}", timeout=10) as r:
        return r.status, r.headers, r.read().decode()


def sample(body, name, labels=None):
    """The value of one sample (labels: the exact {...} text or None)."""
    want = name + (labels or "")
    for line in body.splitlines():
        if line.startswith("#") or not line:
            continue
        key, _, val = line.rpartition(" ")
        if key == want:
            return float(val)
    return None


def send_mail(port, n):
    s = smtplib.SMTP("127.0.0.1", port, local_hostname="client.example.test", timeout=30)
    for i in range(n):
        s.sendmail("sender@example.org", [f"rcpt{i}@example.test"],
                   f"Subject: metrics {i}\r\n\r\nbody {i}\r\n")
    s.quit()


def raw(addr, data, timeout=10):
    """Sends data, reads until the server closes; returns what came back."""
    host, port = addr.rsplit(":", 1)
    c = socket.create_connection((host, int(port)), timeout=timeout)
    try:
        try:
            c.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # it may answer and close before taking everything
        out = b""
        while True:
            chunk = c.recv(65536)
            if not chunk:
                return out
            out += chunk
    finally:
        c.close()


BINDINGS = """
binding "tagger" {
  event = "mail"; sink = "builtin:noop"; priority = 1000;
}
"""


def test_metrics_move_with_mail(daemon_factory, tmp_path):
    conf = tmp_path / "sluice.conf"
    conf.write_text(BINDINGS)
    d = daemon_factory(conf=str(conf), admin_listen="127.0.0.1:0")
    addr = admin_addr(d)
    status, headers, body = fetch(addr)
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert sample(body, "sluice_messages_accepted_total") == 0
    assert "# TYPE sluice_messages_accepted_total counter" in body
    assert "# TYPE sluice_fsync_duration_seconds histogram" in body

    send_mail(d.port, 3)
    # each worker publishes at the end of its loop turn: bounded poll
    deadline = time.monotonic() + 10
    while True:
        _, _, body = fetch(addr)
        if sample(body, "sluice_messages_accepted_total") == 3 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert sample(body, "sluice_messages_accepted_total") == 3, body
    assert sample(body, "sluice_connections_accepted_total") >= 1
    assert sample(body, "sluice_sessions_total") >= 1
    assert sample(body, "sluice_spool_commits_total") == 3
    assert sample(body, "sluice_fsync_duration_seconds_count") >= 1
    assert sample(body, "sluice_fsync_duration_seconds_bucket", '{le="+Inf"}') == \
        sample(body, "sluice_fsync_duration_seconds_count")
    assert sample(body, "sluice_fsync_duration_seconds_sum") > 0
    # relayhost=hold: the three stay queued, held
    assert sample(body, "sluice_spool_live_messages") == 3
    assert sample(body, "sluice_spool_bytes") > 0
    assert sample(body, "sluice_queue_messages") == 3
    assert sample(body, "sluice_scheduler_tasks_total", '{worker="0"}') is not None
    assert sample(body, "sluice_scheduler_steals_total", '{worker="2"}') is not None
    # the binding ran once per MAIL
    assert sample(body, "sluice_binding_calls_total",
                  '{binding="tagger",event="mail"}') == 3, body
    assert sample(body, "sluice_binding_verdicts_total",
                  '{binding="tagger",event="mail",verdict="continue"}') == 3
    assert sample(body, "sluice_binding_latency_seconds_count",
                  '{binding="tagger",event="mail"}') == 3
    # cumulative buckets never decrease
    les = [float(v) for v in re.findall(
        r'^sluice_binding_latency_seconds_bucket\{binding="tagger",event="mail",le="[^"]+"\} (\d+)$',
        body, re.M)]
    assert les and les == sorted(les) and les[-1] == 3

    if not os.access(PROMTOOL, os.X_OK):
        pytest.skip("promtool not installed (Debian package prometheus; scripts/deps.sh)")
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "" and r.stderr.strip() == "", \
        (r.returncode, r.stdout, r.stderr)


def test_http_errors_and_bounds(daemon_factory):
    d = daemon_factory(admin_listen="127.0.0.1:0")
    addr = admin_addr(d)
    with pytest.raises(urllib.error.HTTPError) as e:
        fetch(addr, "/")
    assert e.value.code == 404
    with pytest.raises(urllib.error.HTTPError) as e:
        fetch(addr, "/metrics/../x")
    assert e.value.code == 404

    out = raw(addr, b"GARBAGE\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 "), out
    out = raw(addr, b"GET /metrics HTTP/1.1\r\nbad header line\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 "), out
    out = raw(addr, b"DELETE /metrics HTTP/1.1\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 405 "), out

    # a request line far over the bound, never finished: 431, then closed
    # (raw() returns only once the server has closed the connection)
    out = raw(addr, b"GET /" + b"a" * 100000)
    assert out.startswith(b"HTTP/1.1 431 ") or out.startswith(b"HTTP/1.1 400 "), out[:80]
    assert b"Connection: close" in out

    # HTTP/1.0, one request per connection, still served after all that
    out = raw(addr, b"GET /metrics HTTP/1.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 OK\r\n"), out[:80]
    head, _, body = out.partition(b"\r\n\r\n")
    m = re.search(rb"Content-Length: (\d+)", head)
    assert m and int(m.group(1)) == len(body)
    assert b"sluice_messages_accepted_total 0\n" in body

    # a client that sends half a request and stalls gets 408 within the bound
    host, port = addr.rsplit(":", 1)
    c = socket.create_connection((host, int(port)), timeout=15)
    c.sendall(b"GET /metrics HTTP/1.1\r\n")
    t0 = time.monotonic()
    got = b""
    while True:
        chunk = c.recv(4096)
        if not chunk:
            break
        got += chunk
    c.close()
    assert got.startswith(b"HTTP/1.1 408 "), got
    assert time.monotonic() - t0 < 10
    assert fetch(addr)[0] == 200


def timed_scrape(addr):
    t0 = time.monotonic()
    status, _, body = fetch(addr)
    return status, body, time.monotonic() - t0


@pytest.mark.parametrize("idle", [10, 100])
def test_idle_connections_do_not_stall_a_scrape(daemon_factory, idle):
    """Idle connections (and half-sent heads) sit in their own slots; past
    the 64 slots the oldest waiting ones give way.  Each would have held a
    one-at-a-time listener for 5 s."""
    d = daemon_factory(admin_listen="127.0.0.1:0")
    addr = admin_addr(d)
    host, port = addr.rsplit(":", 1)
    socks = []
    try:
        for i in range(idle):
            c = socket.create_connection((host, int(port)), timeout=5)
            if i % 2:
                c.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never ended
            socks.append(c)
        for _ in range(3):
            status, body, took = timed_scrape(addr)
            assert status == 200 and "sluice_messages_accepted_total" in body
            assert took < 2.0, f"scrape took {took:.2f}s with {idle} idle connections"
    finally:
        for c in socks:
            c.close()


def test_body_framing_errors(daemon_factory):
    """RFC 9112 6.3: Content-Length with Transfer-Encoding, or two different
    Content-Length values, is a 400; a GET body is ignored, never taken for
    a next request (the connection closes after one response)."""
    d = daemon_factory(admin_listen="127.0.0.1:0")
    addr = admin_addr(d)
    bad = [
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        b"GET /metrics HTTP/1.1\r\nContent-Length: 0, 7\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
    ]
    for req in bad:
        out = raw(addr, req)
        assert out.startswith(b"HTTP/1.1 400 "), (req, out[:80])
        assert b"Connection: close" in out

    smuggled = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    req = (b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(smuggled)
           + smuggled)
    out = raw(addr, req)
    assert out.startswith(b"HTTP/1.1 200 OK\r\n"), out[:80]
    assert out.count(b"HTTP/1.1 ") == 1, "the body was answered as a second request"
    head, _, body = out.partition(b"\r\n\r\n")
    m = re.search(rb"Content-Length: (\d+)", head)
    assert m and int(m.group(1)) == len(body)


def test_admin_listen_off_and_invalid(daemon_factory, tmp_path):
    d = daemon_factory(admin_listen='""')
    assert not re.search(r"metrics at http://", d.log())
    r = subprocess.run([SLUICED, "--check", "-o", "admin_listen=not-an-address"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "admin_listen" in r.stderr, r.stderr


def test_admin_port_taken_is_not_fatal(daemon_factory):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    taken = "127.0.0.1:%d" % s.getsockname()[1]
    try:
        d = daemon_factory(admin_listen=taken)
        assert d.wait_log(r"admin_listen %s: Address already in use; metrics are off"
                          % re.escape(taken)), d.log()
        send_mail(d.port, 1)  # mail still flows
    finally:
        s.close()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_prometheus_scrapes(daemon_factory, tmp_path):
    if not os.access(PROMETHEUS, os.X_OK):
        pytest.skip("prometheus not installed (Debian package prometheus; scripts/deps.sh)")
    d = daemon_factory(admin_listen="127.0.0.1:0")
    addr = admin_addr(d)
    send_mail(d.port, 2)

    prom_port = free_port()
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(f"""
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: sluice
    static_configs:
      - targets: ["{addr}"]
""")
    log = open(tmp_path / "prometheus.log", "w")
    p = subprocess.Popen([PROMETHEUS, f"--config.file={cfg}",
                          f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                          f"--web.listen-address=127.0.0.1:{prom_port}",
                          "--log.level=warn"],
                         stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        url = (f"http://127.0.0.1:{prom_port}/api/v1/query?query="
               "sluice_messages_accepted_total")
        value, last = None, None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and p.poll() is None:
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    last = json.load(r)
                res = last["data"]["result"]
                if res:
                    value = float(res[0]["value"][1])
                    if value == 2:
                        break
            except (urllib.error.URLError, ConnectionError, OSError):
                pass  # not up yet
            time.sleep(0.5)
        assert p.poll() is None, open(tmp_path / "prometheus.log").read()
        assert value == 2, (last, open(tmp_path / "prometheus.log").read())
        assert res[0]["metric"]["job"] == "sluice"
        assert res[0]["metric"]["instance"] == addr
        # the target is healthy: the scrape itself did not fail
        with urllib.request.urlopen(
                f"http://127.0.0.1:{prom_port}/api/v1/query?query=up", timeout=5) as r:
            up = json.load(r)["data"]["result"]
        assert up and up[0]["value"][1] == "1", up
    finally:
        p.terminate()
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        log.close()


def test_sessions_by_outcome(daemon_factory):
    d = daemon_factory(admin_listen="127.0.0.1:0")
    addr = admin_addr(d)
    send_mail(d.port, 1)                       # QUIT
    s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
    s.recv(512)
    s.sendall(b"EHLO x.example.test\r\n")
    s.recv(4096)
    s.close()                                  # gone without QUIT
    s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
    s.recv(512)
    s.sendall(b"EHLO x\r\nMAIL FROM:<a@example.org>\r\nDATA\r\n")  # DATA not last: 554, closed
    s.settimeout(10)
    while s.recv(4096):
        pass
    s.close()
    want = {"quit": 1, "dropped": 1, "error": 1}
    deadline = time.monotonic() + 10
    got = {}
    while time.monotonic() < deadline:
        body = fetch(addr)[2]
        got = {k: sample(body, "sluice_sessions_ended_total", '{outcome="%s"}' % k)
               for k in ("quit", "dropped", "error", "shutdown", "timeout")}
        if all(got[k] == v for k, v in want.items()):
            break
        time.sleep(0.1)
    assert all(got[k] == v for k, v in want.items()), got
    assert got["shutdown"] == 0 and got["timeout"] == 0, got
