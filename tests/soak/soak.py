#!/usr/bin/python3
"""soak - the real sluiced under steady mixed load for a set time (issue 17,
Soak; docs/faults.md, Soak).

    python3 tests/soak/soak.py BUILD [--minutes M] [--sample S] [--clients N]

What runs, all on loopback:
* sluiced with STARTTLS (a throw-away P-256 certificate), a submission
  listener with AUTH (a password file), three sinks bound at the end of data
  (builtin:header, builtin:delay 2 ms, the async_score example module), and
  a relayhost that is
* a counting next hop (aiosmtpd in a thread): counts every message by its
  X-Soak-Id header, answers about one DATA in twelve with 451 (so the retry
  path runs), keeps no message bodies;
* N client threads, each a mix: port 25 in plain text, port 25 after
  STARTTLS, submission after STARTTLS and AUTH PLAIN; sizes 1 KiB (60%),
  20 KiB (30%), 300 KiB (10%); one to five messages per session.

First a calibration: the clients send flat out for CAL seconds; the message
rate reached is the peak.  Then the soak proper paces them at 70% of it
for M minutes, printing sluiced's RSS and open descriptors every S seconds.
At the end: the load stops, the queue must drain (every acknowledged
message delivered), and the checks below decide the exit status:

* every reply was an expected one (no 4xx/5xx at ingest, no dropped session);
* every message acknowledged with 250 reached the next hop exactly once
  (duplicates, losses and messages that arrived without a 250 are counted);
* the spool is empty and `sluice-spool verify` is clean after the stop;
* RSS bounded: the last sample under load at most 25% + 16 MiB above the
  first sample under load; descriptors flat: open fds once idle again at
  most 4 above the idle count before the load (connection cache slack),
  and the samples under load at most 64 above it after the first.

Exit 0 when all hold, 1 otherwise; the figures are printed either way.
"""
import argparse
import asyncio
import base64
import os
import random
import re
import smtplib
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))

from aiosmtpd.smtp import SMTP  # noqa: E402

SIZES = [(1024, 60), (20 * 1024, 30), (300 * 1024, 10)]
TEMPFAIL_ONE_IN = 12
CAL = 15  # seconds of calibration


# ---- the counting next hop ----

class Counter:
    def __init__(self):
        self.lock = threading.Lock()
        self.count = {}       # soak id -> deliveries accepted
        self.tempfailed = 0
        self.rng = random.Random(7)


class HopHandler:
    def __init__(self, c):
        self.c = c

    async def handle_DATA(self, server, session, envelope):
        head = bytes(envelope.content[:4096])
        m = re.search(rb"\r\nX-Soak-Id: (\S+)\r\n", head)
        with self.c.lock:
            if self.c.rng.randrange(TEMPFAIL_ONE_IN) == 0:
                self.c.tempfailed += 1
                return "451 4.3.0 soak: try again later"
            key = m.group(1).decode() if m else "?"
            self.c.count[key] = self.c.count.get(key, 0) + 1
        return "250 2.0.0 counted"


def start_hop(counter):
    ready = threading.Event()
    box = {}

    def run():
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        handler = HopHandler(counter)
        srv = loop.run_until_complete(loop.create_server(
            lambda: SMTP(handler, hostname="hop.test", data_size_limit=0, decode_data=False,
                         enable_SMTPUTF8=True),
            host="127.0.0.1", port=0, backlog=256))
        box["port"] = srv.sockets[0].getsockname()[1]
        box["loop"] = loop
        ready.set()
        loop.run_forever()

    threading.Thread(target=run, daemon=True).start()
    if not ready.wait(10):
        raise RuntimeError("next hop did not start")
    return box


# ---- sluiced ----

def passwd6(pw):
    return subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=pw, text=True,
                          check=True, capture_output=True, timeout=30).stdout.strip()


def setup(build, work, hop_port):
    from conftest import make_cert
    cert, key = make_cert(work)
    users = work / "users"
    users.write_text("soak:%s\n" % passwd6("soak-pass"))
    lib = Path(build) / "lib"
    conf = work / "soak.conf"
    conf.write_text("""
tls { cert = "%(cert)s"; key = "%(key)s"; }
auth_users = "%(users)s";
auth_failure_delay = 0s;
listen_submission = ["127.0.0.1:0"];
relayhost = "127.0.0.1:%(hop)d";
retry { min = "1s"; max = "2s"; max_age = "1h"; }
max_connections = 2000;
binding "scanned" {
  event = "eod"; sink = "builtin:header";
  properties { name = "X-Soak-Scanned"; value = "yes"; }
}
binding "pause" {
  event = "eod"; sink = "builtin:delay"; deadline = "2s";
  properties { ms = 2; }
}
binding "score" {
  event = "eod"; sink = "%(score)s"; deadline = "2s";
  properties { word = "soakspam"; threshold = 1000000; }
}
""" % {"cert": cert, "key": key, "users": users, "hop": hop_port,
       "score": lib / "async_score.so"})
    return str(conf)


def proc_figures(pid):
    rss = 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return rss, len(os.listdir("/proc/%d/fd" % pid))


# ---- the clients ----

class Results:
    def __init__(self):
        self.lock = threading.Lock()
        self.acked = set()
        self.refused = {}     # soak id -> reply
        self.unknown = set()  # no reply (connection broke)
        self.sent = 0
        self.sessions = {"plain": 0, "starttls": 0, "auth": 0}
        self.errors = []


def body(sid, size, rng):
    h = ("From: <soak@client.test>\r\nTo: <r@example.test>\r\nSubject: soak %s\r\n"
         "Message-ID: <%s@client.test>\r\nX-Soak-Id: %s\r\n\r\n" % (sid, sid, sid)).encode()
    line = b"the quick brown fox jumps over the lazy dog 0123456789 soak text\r\n"
    return h + line * max(1, (size - len(h)) // len(line))


def client(idx, port, sub_port, stop, pace, res, ctxs):
    rng = random.Random(1000 + idx)
    n = 0
    while not stop.is_set():
        kind = rng.choice(["plain", "starttls", "auth"])
        try:
            s = smtplib.SMTP("127.0.0.1", sub_port if kind == "auth" else port,
                             local_hostname="client%d.test" % idx, timeout=30)
            s.ehlo()
            if kind != "plain":
                s.starttls(context=ctxs)
                s.ehlo()
            if kind == "auth":
                s.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0soak\0soak-pass").decode())
            with res.lock:
                res.sessions[kind] += 1
        except (OSError, smtplib.SMTPException) as e:
            with res.lock:
                res.errors.append("session %s: %r" % (kind, e))
            time.sleep(0.2)
            continue
        try:
            for _ in range(rng.randint(1, 5)):
                if stop.is_set():
                    break
                sid = "c%d-%d" % (idx, n)
                n += 1
                size = rng.choices([s_ for s_, _ in SIZES], [w for _, w in SIZES])[0]
                with res.lock:
                    res.sent += 1
                try:
                    s.sendmail("soak@client.test", ["r%d@example.test" % (n % 7)],
                               body(sid, size, rng))
                    with res.lock:
                        res.acked.add(sid)
                except (smtplib.SMTPDataError, smtplib.SMTPRecipientsRefused,
                        smtplib.SMTPSenderRefused) as e:
                    with res.lock:
                        res.refused[sid] = repr(e)
                    break
                except (OSError, smtplib.SMTPException) as e:
                    with res.lock:
                        res.unknown.add(sid)
                        res.errors.append("%s: %r" % (sid, e))
                    break
                pace()
        finally:
            try:
                s.quit()
            except (OSError, smtplib.SMTPException):
                pass


class Pacer:
    """A shared token bucket: rate messages per second over all clients
    (None: flat out)."""

    def __init__(self):
        self.rate = None
        self.lock = threading.Lock()
        self.next = time.monotonic()

    def __call__(self):
        if self.rate is None:
            return
        with self.lock:
            now = time.monotonic()
            self.next = max(self.next + 1.0 / self.rate, now - 1.0)
            wait = self.next - now
        if wait > 0:
            time.sleep(wait)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", 10)))
    ap.add_argument("--sample", type=float, default=60.0)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--load", type=float, default=0.7)
    a = ap.parse_args()
    os.environ["SLUICE_BUILD"] = str(Path(a.build).resolve())
    import conftest
    work = Path(tempfile.mkdtemp(prefix="sluice-soak-"))
    counter = Counter()
    hop = start_hop(counter)
    d = conftest.Daemon(str(work / "spool"), {
        "listen": "127.0.0.1:0", "spool_dir": str(work / "spool"), "workers": 2,
        "hostname": "mx.example.test", "relay_domains": '["example.test"]',
        "control_socket": '""', "admin_listen": '""',
    }, setup(a.build, work, hop["port"]))
    d.start()
    if not d.wait_log(r"listening on 127\.0\.0\.1:\d+ \(submission\)"):
        print("soak: no submission listener\n" + d.log())
        return 1
    sub_port = int(re.search(r"listening on 127\.0\.0\.1:(\d+) \(submission\)",
                             d.log()).group(1))
    pid = d.proc.pid
    time.sleep(1)
    rss0, fds0 = proc_figures(pid)
    print("soak: sluiced pid %d, idle: RSS %d KiB, %d fds; %d clients, %.1f min at %d%% of peak"
          % (pid, rss0, fds0, a.clients, a.minutes, a.load * 100), flush=True)
    ctxs = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctxs.check_hostname = False
    ctxs.verify_mode = ssl.CERT_NONE
    res = Results()
    pacer = Pacer()
    stop = threading.Event()
    ts = [threading.Thread(target=client, args=(i, d.port, sub_port, stop, pacer, res, ctxs),
                           daemon=True) for i in range(a.clients)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    time.sleep(CAL)
    with res.lock:
        peak = len(res.acked) / (time.monotonic() - t0)
    pacer.rate = max(1.0, peak * a.load)
    print("soak: calibration: %.1f messages/s flat out; pacing at %.1f/s" % (peak, pacer.rate),
          flush=True)
    samples = []
    end = time.monotonic() + a.minutes * 60
    start_count = len(res.acked)
    tl = time.monotonic()
    while time.monotonic() < end:
        time.sleep(min(a.sample, max(0.0, end - time.monotonic())))
        if d.proc.poll() is not None:
            print("soak: sluiced exited %s\n%s" % (d.proc.returncode, d.log()[-4000:]))
            return 1
        rss, fds = proc_figures(pid)
        with res.lock:
            acked = len(res.acked)
        with counter.lock:
            delivered = sum(counter.count.values())
        samples.append((rss, fds))
        print("soak: t=%5.0fs RSS %7d KiB  fds %4d  acked %7d  delivered %7d  (%.1f/s)"
              % (time.monotonic() - t0, rss, fds, acked, delivered,
                 (acked - start_count) / (time.monotonic() - tl)), flush=True)
    stop.set()
    for t in ts:
        t.join(60)
    # the queue drains
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        with counter.lock:
            got = set(counter.count)
        if res.acked <= got:
            break
        time.sleep(1)
    time.sleep(3)  # connection cache, last REMOVE records
    rss_end, fds_end = proc_figures(pid)
    ok = True

    def fail(msg):
        nonlocal ok
        ok = False
        print("soak: FAIL: " + msg, flush=True)

    rc = d.stop(60)
    if rc != 0:
        fail("sluiced exited %s on SIGTERM" % rc)
    left = conftest.spool_list(str(work / "spool"))
    vrc, vout = conftest.spool_verify(str(work / "spool"))
    with counter.lock:
        count = dict(counter.count)
        hop_tempfailed = counter.tempfailed
    lost = sorted(res.acked - set(count))
    dups = {k: v for k, v in count.items() if v > 1}
    unacked = sorted(set(count) - res.acked - res.unknown)
    print("soak: sent %d, acknowledged %d, refused %d, no reply %d; sessions %s"
          % (res.sent, len(res.acked), len(res.refused), len(res.unknown), res.sessions))
    print("soak: next hop: %d distinct delivered, %d deliveries, %d duplicates, "
          "%d temporary failures given, %d lost, %d delivered without a 250 "
          "(of those with no reply: %d)"
          % (len(count), sum(count.values()), sum(v - 1 for v in dups.values()),
             hop_tempfailed, len(lost), len(unacked),
             len(set(count) & res.unknown)))
    print("soak: RSS first/last under load %d/%d KiB, idle before/after %d/%d KiB; "
          "fds first/max under load %d/%d, idle before/after %d/%d"
          % (samples[0][0] if samples else 0, samples[-1][0] if samples else 0, rss0, rss_end,
             samples[0][1] if samples else 0, max(s[1] for s in samples) if samples else 0,
             fds0, fds_end))
    if res.refused:
        fail("%d refused at ingest, e.g. %s" % (len(res.refused),
                                                list(res.refused.items())[:3]))
    if res.unknown or res.errors:
        fail("%d sessions or messages broke: %s" % (len(res.errors), res.errors[:5]))
    if lost:
        fail("%d acknowledged messages never delivered: %s" % (len(lost), lost[:10]))
    if dups:
        fail("%d messages delivered more than once: %s" % (len(dups), list(dups.items())[:10]))
    if unacked:
        fail("%d messages delivered that never got a 250: %s" % (len(unacked), unacked[:10]))
    if left:
        fail("%d messages left in the spool" % len(left))
    if vrc != 0:
        fail("sluice-spool verify: " + vout[-2000:])
    if len(samples) >= 2:
        first, last = samples[0][0], samples[-1][0]
        if last > first * 1.25 + 16 * 1024:
            fail("RSS grew from %d to %d KiB under steady load" % (first, last))
        if max(s[1] for s in samples[1:]) > samples[0][1] + 64:
            fail("open fds grew under steady load: %s" % [s[1] for s in samples])
    if fds_end > fds0 + 4:
        fail("open fds idle before %d, after %d" % (fds0, fds_end))
    print("soak: %s (work directory %s)" % ("ok" if ok else "FAILED", work), flush=True)
    if ok:
        subprocess.run(["rm", "-rf", str(work)])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
