"""sluice-bench, the load generator, checked against real servers.

Counts (messages, connections, replies by code) against Postfix's
smtp-sink (counting with -c) and against sluiced (the spool afterwards);
reply parsing against a scripted server on loopback that answers with
multi-line replies and refusals; pipelining on and off as the server sees
the commands arrive; STARTTLS, implicit TLS and AUTH PLAIN against
sluiced; the open loop's rate; `sluice-bench sink` on builtin sinks; and
bench/compare in its reduced mode (so the report cannot rot).
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import BUILD, make_cert, spool_list

SB = os.path.join(BUILD, "bin", "sluice-bench")
SMTP_SINK = "/usr/sbin/smtp-sink"
REPO = os.path.join(os.path.dirname(__file__), "..", "..")


def bench(*args, timeout=60, check=True):
    r = subprocess.run([SB, "--json", "--no-progress", "--timeout", "20", *args],
                       capture_output=True, text=True, timeout=timeout)
    if check:
        assert r.returncode == 0, r.stderr
    return json.loads(r.stdout) if r.stdout.strip() else None, r


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


@pytest.fixture
def smtp_sink(tmp_path):
    """smtp-sink -c on a free port; yields (port, counter) where counter()
    is its last "mesg=" count."""
    if not os.path.exists(SMTP_SINK):
        pytest.skip("smtp-sink is not installed (postfix)")
    port = free_port()
    out = open(tmp_path / "sink.out", "wb")
    args = [SMTP_SINK, "-4", "-c", "-m", "512"]
    if os.geteuid() == 0:
        args += ["-u", "nobody"]
    p = subprocess.Popen(args + [f"127.0.0.1:{port}", "1024"], stdout=out,
                         stderr=subprocess.STDOUT)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            break
        except OSError:
            time.sleep(0.05)

    def counter():
        data = (tmp_path / "sink.out").read_bytes()
        m = re.findall(rb"mesg=(\d+)", data)
        return int(m[-1]) if m else 0
    yield port, counter
    p.kill()
    p.wait()
    out.close()


def wait_count(counter, n, secs=10):
    deadline = time.monotonic() + secs
    while counter() < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return counter()


def test_counts_reuse_against_smtp_sink(smtp_sink):
    port, counter = smtp_sink
    d, _ = bench("-m", "600", "-s", "8", "-r", "3", f"127.0.0.1:{port}")
    assert d["sent"] == d["accepted"] == 600 and d["failed"] == 0
    assert d["connections"] == 8
    rep = d["replies"]
    # per connection 220, EHLO 250, QUIT 221; per message MAIL, 3 RCPT and
    # the final reply 250, DATA 354
    assert rep == {"220": 8, "221": 8, "250": 8 + 600 * 5, "354": 600}
    assert wait_count(counter, 600) == 600
    assert d["latency_mail"]["count"] == 600 and d["latency_connect"]["count"] == 8
    lm = d["latency_mail"]
    assert 0 < lm["p50_us"] <= lm["p90_us"] <= lm["p99_us"] <= lm["p999_us"] <= lm["max_us"]
    assert d["bytes"] >= 600 * 4096


def test_counts_no_reuse_against_smtp_sink(smtp_sink):
    port, counter = smtp_sink
    d, _ = bench("-m", "300", "-s", "16", "--no-reuse", "-l", "100k", f"127.0.0.1:{port}")
    assert d["accepted"] == 300 and d["connections"] == 300
    assert d["replies"]["221"] == 300 and d["replies"]["220"] == 300
    assert d["latency_connect"]["count"] == 300
    assert wait_count(counter, 300) == 300
    assert d["bytes"] >= 300 * 102400


def test_size_distribution_file(smtp_sink, tmp_path):
    port, _ = smtp_sink
    f = tmp_path / "sizes"
    f.write_text("# size weight\n1k 3\n64k 1\n")
    d, _ = bench("-m", "400", "-s", "4", "-l", f"@{f}", f"127.0.0.1:{port}")
    assert d["accepted"] == 400 and d["sizes"] == 2
    mean = d["bytes"] / 400
    assert 1024 < mean < 65536  # both sizes were drawn
    bad = tmp_path / "bad"
    bad.write_text("12 -1\n")
    _, r = bench("-l", f"@{bad}", f"127.0.0.1:{port}", check=False)
    assert r.returncode == 2 and "bad:1" in r.stderr


class Scripted:
    """A tiny SMTP server on loopback: multi-line replies, a 550 for every
    RCPT to a local part starting with "bad", a 554 after the dot for
    every third message; records how commands arrived (one list per recv)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.chunks = []
        self.messages = 0
        self.lock = threading.Lock()
        self.stop = False
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self.session, args=(c,), daemon=True).start()

    def session(self, c):
        c.settimeout(20)
        c.sendall(b"220-scripted.test ESMTP\r\n220 ready\r\n")
        buf, data = b"", False
        try:
            while True:
                chunk = c.recv(65536)
                if not chunk:
                    return
                buf += chunk
                if not data:
                    with self.lock:
                        self.chunks.append(chunk.count(b"\r\n"))
                out = b""
                while True:
                    if data:
                        end = buf.find(b"\r\n.\r\n")
                        if end < 0:
                            break
                        buf = buf[end + 5:]
                        data = False
                        with self.lock:
                            self.messages += 1
                            n = self.messages
                        out += b"554 5.7.1 no\r\n" if n % 3 == 0 else b"250-queued\r\n250 2.0.0 ok\r\n"
                        continue
                    i = buf.find(b"\r\n")
                    if i < 0:
                        break
                    line, buf = buf[:i].decode(), buf[i + 2:]
                    verb = line[:4].upper()
                    if verb == "EHLO":
                        out += b"250-scripted.test\r\n250-PIPELINING\r\n250-SIZE 1000000\r\n250 8BITMIME\r\n"
                    elif verb == "MAIL" or verb == "RSET":
                        out += b"250 2.1.0 ok\r\n"
                    elif verb == "RCPT":
                        out += (b"550-5.1.1 no such\r\n550 5.1.1 user\r\n" if "<bad" in line
                                else b"250 2.1.5 ok\r\n")
                    elif verb == "DATA":
                        out += b"354 go\r\n"
                        data = True
                    elif verb == "QUIT":
                        c.sendall(out + b"221 bye\r\n")
                        return
                    else:
                        out += b"500 what\r\n"
                if out:
                    c.sendall(out)
        except OSError:
            return
        finally:
            c.close()

    def close(self):
        self.stop = True
        self.sock.close()


@pytest.fixture
def scripted():
    s = Scripted()
    yield s
    s.close()


def test_reply_parsing_multiline_and_refusals(scripted):
    d, _ = bench("-m", "90", "-s", "3", "-r", "2", f"127.0.0.1:{scripted.port}")
    # every third message is refused after its dot (554), the rest accepted
    assert d["sent"] == 90 and d["accepted"] == 60 and d["refused"] == 30
    assert d["failed"] == 0 and d["protocol_errors"] == 0
    # a multi-line reply counts once, by its code
    assert d["replies"] == {"220": 3, "221": 3, "250": 3 + 90 * 3 + 60, "354": 90, "554": 30}


def test_refused_recipients(scripted):
    d, _ = bench("-m", "20", "-s", "2", "--rcpt-domain", "x.test", "--from", "a@b.test",
                 f"127.0.0.1:{scripted.port}")
    assert d["accepted"] + d["refused"] == 20
    # all recipients refused: DATA answered (the scripted server is lax) ...
    d, _ = bench("-m", "10", "-s", "1", "--no-pipelining", f"127.0.0.1:{scripted.port}")
    assert d["sent"] == 10


def test_pipelining_on_and_off(scripted):
    bench("-m", "30", "-s", "1", "-r", "2", f"127.0.0.1:{scripted.port}")
    piped = list(scripted.chunks)
    # MAIL, 2 RCPT and DATA arrive together
    assert piped.count(4) >= 30, piped
    scripted.chunks.clear()
    bench("-m", "30", "-s", "1", "-r", "2", "--no-pipelining", f"127.0.0.1:{scripted.port}")
    alone = list(scripted.chunks)
    # one command per round trip: never two lines in one read
    assert alone and max(alone) == 1, alone


def test_against_sluiced_counts_in_spool(daemon_factory):
    d = daemon_factory(max_conn_per_ip=0)
    out, _ = bench("-m", "250", "-s", "16", "-r", "2", f"127.0.0.1:{d.port}")
    assert out["accepted"] == 250 and out["failed"] == 0
    msgs = spool_list(d.spool)
    assert len(msgs) == 250
    out, _ = bench("-m", "40", "-s", "8", "--no-reuse", "--no-pipelining", f"127.0.0.1:{d.port}")
    assert out["accepted"] == 40 and out["connections"] == 40
    assert len(spool_list(d.spool)) == 290


def test_tls_and_auth_against_sluiced(tmp_path, daemon_factory):
    cert, key = make_cert(tmp_path)
    hashed = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input="secret", text=True,
                            check=True, capture_output=True, timeout=30).stdout.strip()
    (tmp_path / "users").write_text(f"bob:{hashed}\n")
    conf = tmp_path / "tls.conf"
    conf.write_text(f'tls {{ cert = "{cert}"; key = "{key}"; }}\n'
                    f'listen_smtps = ["127.0.0.1:0"];\n'
                    f'auth_users = "{tmp_path / "users"}";\nauth_failure_delay = 0s;\n')
    d = daemon_factory(conf=str(conf), max_conn_per_ip=0)
    assert d.wait_log(r"listening on 127\.0\.0\.1:\d+ \(implicit TLS\)")
    sport = int(re.search(r"listening on 127\.0\.0\.1:(\d+) \(implicit TLS\)", d.log()).group(1))
    out, _ = bench("-m", "60", "-s", "4", "--starttls", "--auth", "bob:secret",
                   f"127.0.0.1:{d.port}")
    assert out["accepted"] == 60 and out["tls"] == "starttls"
    assert out["replies"]["235"] == 4 and out["replies"]["220"] == 8  # greeting + STARTTLS
    out, _ = bench("-m", "20", "-s", "4", "--tls", "--no-reuse", f"127.0.0.1:{sport}")
    assert out["accepted"] == 20 and out["connections"] == 20
    assert len(spool_list(d.spool)) == 80
    # a wrong password: the run stops with the server's reply, nothing sent
    out, r = bench("-m", "20", "-s", "2", "--starttls", "--auth", "bob:wrong",
                   f"127.0.0.1:{d.port}", check=False)
    assert r.returncode == 1 and "535" in r.stderr
    assert out["accepted"] == 0


def test_open_loop_rate(smtp_sink):
    port, _ = smtp_sink
    d, _ = bench("--rate", "200", "-d", "1.5", "-s", "8", f"127.0.0.1:{port}")
    assert d["offered_rate"] == 200
    assert 240 <= d["accepted"] <= 310, d["accepted"]  # 300 due in 1.5 s
    assert d["latency_service"]["count"] == d["accepted"]


def test_bad_usage():
    r = subprocess.run([SB, "127.0.0.1:"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "bad target" in r.stderr
    r = subprocess.run([SB, "-s", "0", "127.0.0.1:25"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2
    port = free_port()  # nothing listens there
    r = subprocess.run([SB, "-m", "5", f"127.0.0.1:{port}"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1 and "refused" in r.stderr


def sink_bench(*args, check=True):
    r = subprocess.run([SB, "sink", *args, "--json"], capture_output=True, text=True, timeout=120)
    if check:
        assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.splitlines()[0]) if r.returncode == 0 else None, r


def test_sink_noop_and_delay():
    d, _ = sink_bench("builtin:noop", "--calls", "20000")
    assert d["with"]["verdicts"] == {"continue": 20000} and d["with"]["pending"] == 0
    assert d["with"]["latency_sync"]["count"] == 20000
    assert d["without"]["cpu_ns_per_call"] > 0
    d, _ = sink_bench("builtin:delay", "--prop", "ms=1", "--calls", "400", "--sessions", "16",
                      "--workers", "2")
    assert d["with"]["pending"] == 400 and d["with"]["latency_pending"]["count"] == 400
    assert d["with"]["latency_pending"]["p50_ns"] >= 1000000  # it waited its millisecond


def test_sink_deadline_and_reject():
    # delay past a 20 ms deadline: every call settled by the deadline
    d, _ = sink_bench("builtin:delay", "--prop", "ms=200", "--deadline", "20ms", "--calls", "64",
                      "--sessions", "64")
    assert d["with"]["deadline_misses"] == 64
    assert d["with"]["verdicts"] == {"tempfail": 64}


def test_sink_errors():
    _, r = sink_bench("builtin:nope", check=False)
    assert r.returncode == 1 and "no such builtin sink" in r.stderr
    _, r = sink_bench("builtin:noop", "--event", "bogus", check=False)
    assert r.returncode == 2 and "no event" in r.stderr


def test_sink_module_at_eod():
    so = os.path.join(BUILD, "lib", "async_score.so")
    if not os.path.exists(so):
        pytest.skip("examples not built")
    d, _ = sink_bench(so, "--event", "eod", "--prop", "word=aaaa", "--calls", "200")
    assert d["with"]["pending"] == 200
    assert sum(d["with"]["verdicts"].values()) == 200


def test_sink_daemon():
    r = subprocess.run([SB, "sink", "builtin:noop", "--calls", "1000", "--daemon", "--seconds",
                        "0.5", "--sessions", "4"], capture_output=True, text=True, timeout=110)
    assert r.returncode == 0, r.stderr
    m = re.search(r"without the binding\s+(\d+) msg/s\s+with the binding\s+(\d+) msg/s", r.stdout)
    assert m and int(m.group(1)) > 0 and int(m.group(2)) > 0, r.stdout


@pytest.mark.skipif(shutil.which("gnuplot") is None, reason="gnuplot not installed")
def test_compare_reduced(tmp_path):
    """bench/compare QUICK=1: every target that can run here, a report with
    tables and plots."""
    signal.alarm(290)  # longer than the suite's per-test bound: two Postfix instances start
    env = dict(os.environ, QUICK="1", OUT=str(tmp_path), BUILD=BUILD, SESSIONS="2",
               REUSE="reuse", RELAY_MSGS="20", DUR="0.3", LOADS="1.0", STALL_TIMEOUT="20")
    if os.geteuid() != 0 or not os.path.exists("/usr/sbin/postfix"):
        env["TARGETS"] = "sink sluiced"
    r = subprocess.run(["flock", "-w", "5", "-E", "75", "/tmp/sluice-bench.lock",
                        os.path.join(REPO, "bench", "compare")],
                       env=env, capture_output=True, text=True, timeout=280)
    if r.returncode == 75:
        pytest.skip("another benchmark holds /tmp/sluice-bench.lock")
    assert r.returncode == 0, r.stderr[-3000:]
    mds = [f for f in os.listdir(tmp_path) if f.endswith(".md")]
    assert len(mds) == 1
    text = (tmp_path / mds[0]).read_text()
    assert "## ingest, 4 KiB messages" in text and "## relay, 4 KiB messages" in text
    row = re.search(r"^\| 2 \| yes \| no \| (\d+) \| (\S+) \| (\d+) \|", text, re.M)
    assert row and int(row.group(1)) > 0 and int(row.group(3)) > 0, text
    assert os.path.getsize(tmp_path / mds[0].replace(".md", "-throughput.png")) > 1000
    assert os.path.getsize(tmp_path / mds[0].replace(".md", "-latency.png")) > 1000


def test_grafana_dashboard(tmp_path):
    """contrib/grafana-sluice.json: valid JSON, every query valid PromQL
    (promtool check rules) over metrics docs/metrics.md documents."""
    dash = json.load(open(os.path.join(REPO, "contrib", "grafana-sluice.json")))
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 20
    documented = set(re.findall(r"`(sluice_[a-z_]+)", open(os.path.join(REPO, "docs",
                                                                         "metrics.md")).read()))
    used = set()
    for e in exprs:
        for name in re.findall(r"\b(sluice_[a-z_]+)", e):
            used.add(re.sub(r"_(bucket|sum|count)$", "", name))
    assert used and used <= documented, used - documented
    for want in ("sluice_messages_accepted_total", "sluice_queue_messages",
                 "sluice_binding_calls_total", "sluice_binding_verdicts_total",
                 "sluice_binding_latency_seconds"):
        assert want in used
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (prometheus)")
    rules = ["groups:", "  - name: dashboard", "    rules:"]
    for i, e in enumerate(exprs):
        e = e.replace("$__rate_interval", "1m").replace("$instance", ".*")
        rules += [f"      - record: dashboard:q{i}", f"        expr: {json.dumps(e)}"]
    (tmp_path / "rules.yml").write_text("\n".join(rules) + "\n")
    r = subprocess.run([promtool, "check", "rules", str(tmp_path / "rules.yml")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
