"""Integration-test fixtures: the real sluiced on a loopback port.

Every daemon listens on 127.0.0.1 with port 0 (the kernel picks a free one);
the fixture reads the chosen port from the daemon's "listening on" line.
Nothing here talks to any address outside 127.0.0.0/8.
"""
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

BUILD = os.environ.get("SLUICE_BUILD") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build")
SLUICED = os.path.join(BUILD, "bin", "sluiced")
# The same daemon with the test-only hooks compiled in (SLUICE_TEST_HOOKS):
# only a test that injects a fault (SLUICE_FAULT_* in env) runs it.
SLUICED_TEST = os.path.join(BUILD, "tests", "sluiced-test")
SPOOLTOOL = os.path.join(BUILD, "bin", "sluice-spool")


class Daemon:
    """A running sluiced; stderr is collected in self.log."""

    def __init__(self, spool, overrides, conf=None, env=None, wrap=None):
        self.spool = spool
        self.wrap = wrap  # a command line the daemon runs under (e.g. fiu-run -x)
        self.overrides = overrides
        self.conf = conf
        self.env = env  # extra environment variables (e.g. fault injection)
        self.proc = None
        self.log_lines = []
        self.host = "127.0.0.1"
        self.port = None
        self._cv = threading.Condition()

    def start(self, timeout=10):
        faults = any(k.startswith("SLUICE_FAULT_") for k in (self.env or {}))
        args = list(self.wrap or []) + [SLUICED_TEST if faults else SLUICED]
        if self.conf:
            args += ["-c", self.conf]
        for k, v in self.overrides.items():
            args += ["-o", f"{k}={v}"]
        self.log_lines = []
        self.port = None
        env = None
        if self.env:
            env = dict(os.environ)
            env.update({k: str(v) for k, v in self.env.items()})
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True,
                                     errors="replace", env=env)
        self._rt = threading.Thread(target=self._reader, daemon=True)
        self._rt.start()
        deadline = time.monotonic() + timeout
        with self._cv:
            while self.port is None:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    break
                self._cv.wait(min(left, 0.1))
        if self.port is None:
            self.proc.kill()
            self.proc.wait()
            self._rt.join(5)  # every line it wrote before it exited
            raise RuntimeError("sluiced did not start:\n" + self.log())
        return self

    def _reader(self):
        for line in self.proc.stderr:
            with self._cv:
                self.log_lines.append(line.rstrip("\n"))
                m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
                if m and self.port is None:
                    self.port = int(m.group(1))
                self._cv.notify_all()

    def log(self):
        with self._cv:
            return "\n".join(self.log_lines)

    def wait_log(self, pattern, timeout=10):
        deadline = time.monotonic() + timeout
        with self._cv:
            while not re.search(pattern, "\n".join(self.log_lines)):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(min(left, 0.1))
        return True

    def stop(self, timeout=15):
        """SIGTERM; returns the exit code."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("sluiced did not stop on SIGTERM:\n" + self.log())
        time.sleep(0.05)  # let the reader thread take the last lines
        return self.proc.returncode

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stats(self):
        m = re.search(r"sluiced stats: (.*)", self.log())
        if not m:
            return {}
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(1))}

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0


def spool_list(spool):
    out = subprocess.run([SPOOLTOOL, spool, "list", "--json"], check=True,
                         capture_output=True, text=True, timeout=60).stdout
    return json.loads(out)


def spool_cat(spool, msgid):
    return subprocess.run([SPOOLTOOL, spool, "cat", msgid], check=True,
                          capture_output=True, timeout=60).stdout


@pytest.fixture
def daemon_factory(tmp_path):
    started = []

    def make(spool=None, conf=None, env=None, wrap=None, **overrides):
        spool = spool or str(tmp_path / "spool")
        ov = {
            "listen": "127.0.0.1:0",
            "spool_dir": spool,
            "workers": 2,
            "hostname": "mx.example.test",
            "relay_domains": '["example.test"]',
        }
        # Mail the queue manager would send out stays in the spool: tests
        # of ingress inspect it there, and nothing may reach a real MX.
        # Delivery tests name their routes (a relayhost or transport
        # override, or a configuration file that sets them).
        conf_text = open(conf).read() if conf else ""
        if "relayhost" not in conf_text and "transport" not in conf_text:
            ov["relayhost"] = "hold"
        # no control socket or metrics listener unless a test asks: test
        # daemons must not compete for ./var/sluice.sock or 127.0.0.1:9025
        for key in ("control_socket", "admin_listen"):
            if key not in conf_text:
                ov[key] = '""'
        ov.update({k: v for k, v in overrides.items() if v is not None})
        for k, v in overrides.items():
            if v is None:
                ov.pop(k, None)
        d = Daemon(spool, ov, conf, env, wrap)
        started.append(d)
        return d.start()

    yield make
    for d in started:
        try:
            d.kill9()
        except Exception:
            pass


@pytest.fixture
def daemon(daemon_factory):
    return daemon_factory()


class Raw:
    """A raw SMTP connection for byte-exact protocol tests."""

    def __init__(self, port, timeout=10):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.s.sendall(data)

    def reply(self):
        """Reads one (possibly multi-line) reply; returns (code, text)."""
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.s.recv(65536)
                if not chunk:
                    raise ConnectionError("closed; got %r" % (self.buf,))
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line.decode("utf-8", "replace"))
            if len(line) < 4 or line[3:4] != b"-":
                break
        return int(lines[-1][:3]), "\n".join(lines)

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.reply()

    def closed(self, timeout=5):
        """True once the server has closed the connection."""
        self.s.settimeout(timeout)
        try:
            while True:
                d = self.s.recv(65536)
                if not d:
                    return True
                self.buf += d
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def close(self):
        self.s.close()


@pytest.fixture
def raw(daemon):
    conns = []

    def make(port=None):
        c = Raw(port or daemon.port)
        conns.append(c)
        return c

    yield make
    for c in conns:
        c.close()


# ---- helpers shared by the test modules ----

def spool_verify(spool):
    """Runs `sluice-spool DIR verify`; returns (exit code, stdout+stderr)."""
    r = subprocess.run([SPOOLTOOL, spool, "verify"], capture_output=True,
                       text=True, errors="replace", timeout=60)
    return r.returncode, r.stdout + r.stderr


def msg_id(m):
    return m["id"]


def msg_sender(m):
    return m["sender"]


def msg_rcpts(m):
    for k in ("recipients", "rcpts"):
        if k in m:
            return list(m[k])
    raise KeyError("no recipients field in %r" % (m,))


def spool_senders(spool):
    """The sender of every live message (a list: duplicates show)."""
    return [msg_sender(m) for m in spool_list(spool)]


def split_received(stored):
    """Splits a stored body into (the Received: header the server prepended,
    the rest).  Asserts the header is there and is one header (its
    continuation lines start with white space)."""
    assert stored.startswith(b"Received:"), stored[:200]
    pos = 0
    while True:
        eol = stored.index(b"\r\n", pos)
        pos = eol + 2
        if stored[pos:pos + 1] not in (b" ", b"\t"):
            break
    hdr = stored[:pos]
    assert b"\r" not in hdr.replace(b"\r\n", b""), hdr
    assert b"\n" not in hdr.replace(b"\r\n", b""), hdr
    return hdr, stored[pos:]


def stored_body(spool, m):
    """The body as the client sent it (the Received: header removed)."""
    return split_received(spool_cat(spool, msg_id(m)))[1]


def find_by_sender(spool, sender):
    return [m for m in spool_list(spool) if msg_sender(m) == sender]


def code_class(text):
    """'250 2.0.0 Ok' -> ('250', '2.0.0'); enhanced code None if absent."""
    last = text.split("\n")[-1]
    m = re.match(r"(\d{3})[ -](\d\.\d{1,3}\.\d{1,3})?", last)
    return m.group(1), m.group(2)


def assert_reply(reply, code, enhanced=None):
    c, t = reply
    assert c == code, "expected %s, got %r" % (code, t)
    if enhanced is not None:
        got = code_class(t)[1]
        assert got == enhanced, "expected %s %s, got %r" % (code, enhanced, t)


def raw_session(port, ehlo="client.example.test"):
    """A Raw connection past the greeting and EHLO."""
    c = Raw(port)
    assert c.reply()[0] == 220
    c2, t = c.cmd("EHLO " + ehlo)
    assert c2 == 250, t
    return c


def replies_until_close(c, timeout=5, limit=50):
    """Reads replies until the server closes (or timeout); returns them."""
    out = []
    c.s.settimeout(timeout)
    for _ in range(limit):
        try:
            out.append(c.reply())
        except (ConnectionError, OSError):
            break
    return out


# ---- the on-disk spool format (docs/spool-format.md, storage/spool_int.h) ----

SEG_HDR = 40
REC_HDR = 24
REC_MAGIC = 0x5352
REC_TYPES = {1: "START", 2: "DATA", 3: "COMMIT", 4: "ABORT", 5: "REMOVE", 6: "EDITS"}


def spool_segments(spool):
    """Segment files (seg-WW-SSSSSSSS.sg), oldest first per worker."""
    names = sorted(n for n in os.listdir(spool)
                   if re.fullmatch(r"seg-[0-9a-f]{2}-[0-9a-f]{8}\.sg", n))
    return [os.path.join(spool, n) for n in names]


def segment_records(path):
    """[(offset, end, type name, message id)] of the well-formed-looking
    records of a segment (headers only: no crc check); stops at the first
    header that does not parse."""
    import struct
    with open(path, "rb") as f:
        data = f.read()
    out = []
    off = SEG_HDR
    while off + REC_HDR <= len(data):
        word, length, mid = struct.unpack_from("<IIQ", data, off)
        if word >> 16 != REC_MAGIC or (word & 0xffff) not in REC_TYPES:
            break
        end = off + REC_HDR + ((length + 7) & ~7)
        if end > len(data):
            break
        out.append((off, end, REC_TYPES[word & 0xffff], mid))
        off = end
    return out


# ---- a time bound on every test ----

TEST_TIMEOUT = int(os.environ.get("SLUICE_TEST_TIMEOUT", "120"))


class SuiteTimeout(Exception):
    pass


@pytest.fixture(autouse=True)
def _time_bound():
    """SIGALRM after TEST_TIMEOUT seconds raises in the test's main thread
    (a blocked socket call included), so a hung daemon fails one test and
    the fixtures still kill it."""
    def expired(signum, frame):
        raise SuiteTimeout("test exceeded %d s" % TEST_TIMEOUT)
    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(TEST_TIMEOUT)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def make_cert(d, name="srv", cn="mx.example.test", san=None):
    """A self-signed P-256 certificate and key in directory d (NAME.pem,
    NAME.key), valid two days, subjectAltName san (default DNS:cn)."""
    key, cert = d / f"{name}.key", d / f"{name}.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-subj", f"/CN={cn}", "-days", "2", "-addext",
                    f"subjectAltName={san or 'DNS:' + cn}"],
                   check=True, capture_output=True, timeout=60)
    return cert, key
