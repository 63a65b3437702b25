"""A real DNS server for the integration tests: dnsmasq on 127.0.0.1.

Usage from a test module::

    from dnsfix import DnsServer, dns_server  # noqa: F401 (the fixture)

    def test_something(dns_server):
        dns_server.add_mx("a.test", "mx1.a.test", 10)
        dns_server.add_host("mx1.a.test", "127.0.0.1", "::1")
        # dns_server.addr == "127.0.0.1:PORT": give it to dns_create() (or to
        # sluiced's DNS server setting, or to build/bin/dns-probe)

The ``dns_server`` fixture yields a started :class:`DnsServer` and stops it
at teardown.  Every ``add_*`` call records the data and, when the server is
running, restarts dnsmasq on the same port (dnsmasq does not reload
command-line records; a restart takes a few milliseconds).  To add many
records with one restart use ``update(mx=[...], hosts={...}, ...)``.  A
:class:`DnsServer` can also be made and started by hand (``with
DnsServer() as d:``), e.g. from another fixture that must know the address
before starting sluiced.

What it serves:

* ``add_mx(domain, target, pref)``: an MX record (``--mx-host``);
* ``add_host(name, *addrs)``: A and/or AAAA records (``--host-record``);
* ``add_null_mx(domain)``: the RFC 7505 null MX (``0 .``, a raw record);
* ``add_txt(name, text)``: a TXT record (a name that exists without MX or
  address records);
* ``add_servfail(domain)``: queries for the domain and its subdomains are
  forwarded to a small responder in this module that answers SERVFAIL;
* ``add_timeout(domain)``: queries for it are forwarded to a UDP socket
  that never answers (the client sees a timeout);
* ``add_zone(zone)``: answer the zone from local data only.  Zones
  ``test``, ``example``, ``example.com``, ``example.net``, ``example.org``
  and ``invalid`` are local from the start, so a name there with no record
  gets NXDOMAIN (and an existing name with no record of the asked type
  gets an empty NOERROR answer).  A name outside every local zone gets
  REFUSED (there is no upstream server: nothing leaves 127.0.0.1).

dnsmasq runs in the foreground (``--no-daemon``) as the current user (as
root it drops to nobody by itself; unprivileged it needs nothing more:
port numbers above 1024 and no pid file), without caching
(``--cache-size=0``) and logs every query into ``self.log()``.
"""
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time

import pytest

DNSMASQ = "/usr/sbin/dnsmasq"
LOCAL_ZONES = ("test", "example", "example.com", "example.net", "example.org", "invalid")


def free_port():
    """A port free for both UDP and TCP on 127.0.0.1 (when asked)."""
    for _ in range(50):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", 0))
        port = u.getsockname()[1]
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            t.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            t.close()
            u.close()
    raise RuntimeError("no free port for dnsmasq")


def dns_query(port, name, qtype=1, timeout=1.0):
    """One UDP query to 127.0.0.1:port; the rcode, or None on timeout."""
    qid = os.getpid() & 0xFFFF
    pkt = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        pkt += bytes([len(label)]) + label.encode()
    pkt += b"\0" + struct.pack(">HH", qtype, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.connect(("127.0.0.1", port))  # a closed port fails at once
        s.send(pkt)
        r = s.recv(4096)
        return struct.unpack(">H", r[2:4])[0] & 15
    except OSError:
        return None
    finally:
        s.close()


class _Servfail:
    """Answers every UDP query with SERVFAIL (rcode 2), or never answers
    (silent=True).  A daemon thread; close() stops it."""

    def __init__(self, silent=False):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.silent = silent
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop:
            try:
                q, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            if self.stop or self.silent or len(q) < 12:
                continue
            flags = struct.unpack(">H", q[2:4])[0]
            # QR, the query's RD, RA, rcode SERVFAIL; the question echoed
            hdr = struct.pack(">H", 0x8000 | (flags & 0x0100) | 0x0080 | 2)
            try:
                self.sock.sendto(q[:2] + hdr + q[4:6] + b"\0" * 6 + q[12:], peer)
            except OSError:
                pass

    def close(self):
        self.stop = True
        w = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        w.sendto(b"", ("127.0.0.1", self.port))  # wakes the thread now
        w.close()
        self.thread.join(2)
        self.sock.close()


class DnsServer:
    """dnsmasq on 127.0.0.1:port serving the records given (see the module
    docstring)."""

    def __init__(self, port=None):
        self.port = port
        self.mx = []        # (domain, target, pref)
        self.hosts = []     # (name, addr)
        self.null_mx = []
        self.txt = []       # (name, text)
        self.servfail = []
        self.timeouts = []
        self.zones = list(LOCAL_ZONES)
        self.local_ttl = 0  # the TTL of the records served (dnsmasq's --local-ttl)
        self.proc = None
        self.dir = tempfile.mkdtemp(prefix="sluice-dns-")
        self._servfail = _Servfail()
        self._silent = _Servfail(silent=True)

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    # -- records ---------------------------------------------------------
    def add_mx(self, domain, target, pref):
        self.mx.append((domain, target, int(pref)))
        return self._changed()

    def add_host(self, name, *addrs):
        for a in addrs:
            self.hosts.append((name, a))
        return self._changed()

    def add_null_mx(self, domain):
        self.null_mx.append(domain)
        return self._changed()

    def add_txt(self, name, text):
        self.txt.append((name, text))
        return self._changed()

    def add_servfail(self, domain):
        self.servfail.append(domain)
        return self._changed()

    def add_timeout(self, domain):
        self.timeouts.append(domain)
        return self._changed()

    def add_zone(self, zone):
        self.zones.append(zone)
        return self._changed()

    def update(self, mx=(), hosts=None, null_mx=(), txt=(), servfail=(), timeouts=(),
               zones=()):
        """Many records, one restart.  hosts: {name: [addr, ...]}."""
        self.mx += [(d, t, int(p)) for d, t, p in mx]
        for name, addrs in (hosts or {}).items():
            if isinstance(addrs, str):
                addrs = [addrs]
            self.hosts += [(name, a) for a in addrs]
        self.null_mx += list(null_mx)
        self.txt += list(txt)
        self.servfail += list(servfail)
        self.timeouts += list(timeouts)
        self.zones += list(zones)
        return self._changed()

    def _changed(self):
        if self.proc is not None:
            self.restart()
        return self

    # -- process ---------------------------------------------------------
    def args(self):
        a = [DNSMASQ, "--no-daemon", f"--port={self.port}",
             "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv",
             "--no-hosts", "--conf-file=/dev/null", "--pid-file=",
             "--log-facility=-", "--log-queries", "--cache-size=0"]
        a += [f"--local=/{z}/" for z in self.zones]
        if self.local_ttl:
            a.append(f"--local-ttl={int(self.local_ttl)}")
        a += [f"--mx-host={d},{t},{p}" for d, t, p in self.mx]
        a += [f"--host-record={n},{addr}" for n, addr in self.hosts]
        # MX RDATA: preference 0, the root name (a single zero byte)
        a += [f"--dns-rr={d},15,000000" for d in self.null_mx]
        a += [f"--txt-record={n},{t}" for n, t in self.txt]
        a += [f"--server=/{d}/127.0.0.1#{self._servfail.port}" for d in self.servfail]
        a += [f"--server=/{d}/127.0.0.1#{self._silent.port}" for d in self.timeouts]
        return a

    def start(self, timeout=10):
        """Starts dnsmasq (on a free port unless one was given) and waits
        until it answers a query."""
        if shutil.which(DNSMASQ) is None:
            pytest.skip("dnsmasq is not installed (dnsmasq-base)")
        fixed = self.port is not None
        for _ in range(1 if fixed else 5):
            if not fixed:
                self.port = free_port()
            log = open(os.path.join(self.dir, "dnsmasq.log"), "a")
            self.proc = subprocess.Popen(self.args(), stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT)
            log.close()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                if dns_query(self.port, "ready.invalid", timeout=0.2) is not None:
                    return self
                time.sleep(0.01)
            self._kill()
        raise RuntimeError("dnsmasq did not start:\n" + self.log())

    def _kill(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None

    def restart(self):
        """Same port, current records."""
        self._kill()
        return self.start()

    def stop(self):
        self._kill()

    def close(self):
        self._kill()
        self._servfail.close()
        self._silent.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self):
        try:
            with open(os.path.join(self.dir, "dnsmasq.log")) as f:
                return f.read()
        except OSError:
            return ""

    def __enter__(self):
        return self.start() if self.proc is None else self

    def __exit__(self, *exc):
        self.close()


@pytest.fixture
def dns_server():
    """A started DnsServer with no records; stopped at teardown."""
    d = DnsServer()
    try:
        d.start()
        yield d
    finally:
        d.close()
