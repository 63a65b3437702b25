"""Outbound TLS: the queue manager's STARTTLS to a next hop, with
the per-destination policy of the transport table (may, encrypt, verify,
none).  The next hop is a second sluiced with a certificate; what it
stored tells whether the hop was encrypted (its Received: line)."""
import subprocess
import time

import pytest

from conftest import make_cert, spool_list, spool_cat, msg_id

MSG = "From: a@example.org\r\nTo: x@example.test\r\nSubject: out-tls\r\n\r\nbody\r\n"


def next_hop(daemon_factory, tmp_path, cert, key):
    conf = tmp_path / "hop.conf"
    conf.write_text(f'tls {{ cert = "{cert}"; key = "{key}"; }}\nrelayhost = "hold";\n')
    return daemon_factory(spool=str(tmp_path / "hop-spool"), conf=str(conf))


def relay(daemon_factory, tmp_path, transport, extra=""):
    conf = tmp_path / "relay.conf"
    conf.write_text("transport {\n" + transport + "\n}\n"
                    'retry { min = "1s"; max = "2s"; }\n' + extra)
    return daemon_factory(spool=str(tmp_path / "relay-spool"), conf=str(conf))


def send(d, rcpt):
    import smtplib
    with smtplib.SMTP(d.host, d.port, timeout=10) as s:
        s.sendmail("a@example.org", [rcpt], MSG)


def log_line(d, pattern, timeout=15):
    """The first log line matching pattern, waiting for it."""
    import re
    assert d.wait_log(pattern, timeout=timeout), f"no log line /{pattern}/:\n{d.log()}"
    return next(l for l in d.log().splitlines() if re.search(pattern, l))


def wait_stored(spool, n, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msgs = spool_list(spool)
        if len(msgs) >= n:
            return msgs
        time.sleep(0.1)
    raise AssertionError(f"the next hop has {len(spool_list(spool))} messages, wanted {n}")


def test_opportunistic_starttls_by_default(daemon_factory, tmp_path):
    cert, key = make_cert(tmp_path, "hop", "hop.example.test", "DNS:hop.example.test")
    hop = next_hop(daemon_factory, tmp_path, cert, key)
    r = relay(daemon_factory, tmp_path, f'"example.test" = "smtp:127.0.0.1:{hop.port}";')
    send(r, "x@example.test")
    m = wait_stored(hop.spool, 1)[0]
    stored = spool_cat(hop.spool, msg_id(m))
    assert b"(using TLSv1.3 with cipher" in stored, stored[:400]
    assert b"with ESMTPS" in stored


def test_policy_none_stays_plaintext(daemon_factory, tmp_path):
    cert, key = make_cert(tmp_path, "hop", "hop.example.test", "DNS:hop.example.test")
    hop = next_hop(daemon_factory, tmp_path, cert, key)
    r = relay(daemon_factory, tmp_path,
              f'"example.test" = "smtp:127.0.0.1:{hop.port} tls=none";')
    send(r, "x@example.test")
    m = wait_stored(hop.spool, 1)[0]
    stored = spool_cat(hop.spool, msg_id(m))
    assert b"using TLS" not in stored
    assert b"with ESMTP " in stored or b"with ESMTP\r\n" in stored or b"with ESMTP id" in stored


def test_verify_fails_on_a_self_signed_certificate_and_defers(daemon_factory, tmp_path):
    cert, key = make_cert(tmp_path, "hop", "hop.example.test", "IP:127.0.0.1")
    hop = next_hop(daemon_factory, tmp_path, cert, key)
    r = relay(daemon_factory, tmp_path,
              f'"example.test" = "smtp:127.0.0.1:{hop.port} tls=verify";')
    send(r, "x@example.test")
    line = log_line(r, r"deferred via .*certificate verification failed", timeout=15)
    assert "self-signed" in line or "self signed" in line, line
    assert spool_list(hop.spool) == []
    msgs = spool_list(r.spool)
    assert len(msgs) == 1 and "certificate verification failed" in msgs[0]["last_error"]


def test_verify_succeeds_with_the_ca_file_and_the_right_address(daemon_factory, tmp_path):
    cert, key = make_cert(tmp_path, "hop", "hop.example.test", "IP:127.0.0.1")
    hop = next_hop(daemon_factory, tmp_path, cert, key)
    # the relay trusts the hop's self-signed certificate as its CA; the
    # relay's own tls block needs a pair of its own for inbound
    rcert, rkey = make_cert(tmp_path, "relay", "relay.example.test", "DNS:relay.example.test")
    r = relay(daemon_factory, tmp_path,
              f'"example.test" = "smtp:127.0.0.1:{hop.port} tls=verify";',
              f'tls {{ cert = "{rcert}"; key = "{rkey}"; ca_file = "{cert}"; }}\n')
    send(r, "x@example.test")
    m = wait_stored(hop.spool, 1)[0]
    assert b"using TLSv1.3" in spool_cat(hop.spool, msg_id(m))


def test_verify_fails_on_a_name_mismatch(daemon_factory, tmp_path):
    cert, key = make_cert(tmp_path, "hop", "hop.example.test", "IP:127.0.0.2")
    hop = next_hop(daemon_factory, tmp_path, cert, key)
    rcert, rkey = make_cert(tmp_path, "relay", "relay.example.test", "DNS:relay.example.test")
    r = relay(daemon_factory, tmp_path,
              f'"example.test" = "smtp:127.0.0.1:{hop.port} tls=verify";',
              f'tls {{ cert = "{rcert}"; key = "{rkey}"; ca_file = "{cert}"; }}\n')
    send(r, "x@example.test")
    line = log_line(r, r"deferred via .*certificate verification failed", timeout=15)
    assert "mismatch" in line, line
    assert spool_list(hop.spool) == []


def test_encrypt_defers_when_the_next_hop_offers_no_starttls(daemon_factory, tmp_path):
    hop = daemon_factory(spool=str(tmp_path / "hop-spool"))  # no tls block: no STARTTLS
    r = relay(daemon_factory, tmp_path,
              f'"example.test" = "smtp:127.0.0.1:{hop.port} tls=encrypt";')
    send(r, "x@example.test")
    line = log_line(r, r"deferred via .*TLS is required", timeout=15)
    assert spool_list(hop.spool) == []
    assert line


def make_expired_cert(d):
    """A self-signed certificate for IP 127.0.0.1 that expired yesterday
    (openssl 3.0's req cannot backdate; python3-cryptography can)."""
    import datetime
    import ipaddress
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "expired.example.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=10))
            .not_valid_after(now - datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cp, kp = d / "expired.pem", d / "expired.key"
    cp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    kp.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))
    return cp, kp


def test_verify_fails_on_an_expired_certificate(daemon_factory, tmp_path):
    cert, key = make_expired_cert(tmp_path)
    hop = next_hop(daemon_factory, tmp_path, cert, key)
    rcert, rkey = make_cert(tmp_path, "relay", "relay.example.test", "DNS:relay.example.test")
    r = relay(daemon_factory, tmp_path,
              f'"example.test" = "smtp:127.0.0.1:{hop.port} tls=verify";',
              f'tls {{ cert = "{rcert}"; key = "{rkey}"; ca_file = "{cert}"; }}\n')
    send(r, "x@example.test")
    line = log_line(r, r"deferred via .*certificate verification failed")
    assert "expired" in line, line
    assert spool_list(hop.spool) == []
    # the same expired certificate is fine for opportunistic TLS
    conf = tmp_path / "relay2.conf"
    conf.write_text(f'transport {{ "example.test" = "smtp:127.0.0.1:{hop.port}"; }}\n')
    r2 = daemon_factory(spool=str(tmp_path / "relay2-spool"), conf=str(conf))
    send(r2, "x@example.test")
    m = wait_stored(hop.spool, 1)[0]
    assert b"using TLSv1.3" in spool_cat(hop.spool, msg_id(m))


class BrokenTlsHop:
    """A next hop that offers STARTTLS, answers 220, reads the ClientHello and
    sends garbage instead of a ServerHello (a broken TLS stack), but takes
    mail in plaintext.  Records the sessions: [("tls-broken"|"plain", data)]."""

    def __init__(self):
        import socket
        import threading
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(8)
        self.port = self.srv.getsockname()[1]
        self.sessions = []
        self.stop = False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        import socket
        self.srv.settimeout(0.2)
        while not self.stop:
            try:
                c, _ = self.srv.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                self.serve(c)
            except OSError:
                pass
            finally:
                c.close()

    def serve(self, c):
        c.settimeout(10)
        f = c.makefile("rb")
        c.sendall(b"220 broken.example.test ESMTP\r\n")
        data = b""
        while True:
            line = f.readline()
            if not line:
                return
            cmd = line.strip().upper()
            if cmd.startswith(b"EHLO"):
                c.sendall(b"250-broken.example.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n")
            elif cmd == b"STARTTLS":
                c.sendall(b"220 2.0.0 go ahead\r\n")
                # the ClientHello first, then junk instead of a ServerHello
                # (junk in the same segment as the 220 would be a response
                # injection, which fails the session by design)
                c.recv(4096)
                c.sendall(b"this is not a TLS record\r\n" * 4)
                self.sessions.append(("tls-broken", b""))
                return
            elif cmd.startswith(b"MAIL") or cmd.startswith(b"RCPT") or cmd == b"RSET":
                c.sendall(b"250 2.0.0 ok\r\n")
            elif cmd == b"DATA":
                c.sendall(b"354 go\r\n")
                while True:
                    l = f.readline()
                    if not l or l == b".\r\n":
                        break
                    data += l
                c.sendall(b"250 2.0.0 queued\r\n")
                self.sessions.append(("plain", data))
            elif cmd == b"QUIT":
                c.sendall(b"221 2.0.0 bye\r\n")
                return
            else:
                c.sendall(b"502 5.5.2 no\r\n")

    def close(self):
        self.stop = True
        self.srv.close()


def test_may_falls_back_to_plaintext_when_the_handshake_fails(daemon_factory, tmp_path):
    hop = BrokenTlsHop()
    try:
        r = relay(daemon_factory, tmp_path, f'"example.test" = "smtp:127.0.0.1:{hop.port}";')
        send(r, "x@example.test")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not any(k == "plain" for k, _ in hop.sessions):
            time.sleep(0.1)
        kinds = [k for k, _ in hop.sessions]
        assert kinds[:2] == ["tls-broken", "plain"], (kinds, r.log())
        assert b"Subject: out-tls" in hop.sessions[1][1]
        assert r.wait_log(r"TLS handshake failed .*trying again without TLS", 5)
        assert r.wait_log(r"<x@example.test> delivered via", 5), r.log()
    finally:
        hop.close()


def test_encrypt_does_not_fall_back(daemon_factory, tmp_path):
    hop = BrokenTlsHop()
    try:
        r = relay(daemon_factory, tmp_path,
                  f'"example.test" = "smtp:127.0.0.1:{hop.port} tls=encrypt";')
        send(r, "x@example.test")
        log_line(r, r"deferred via .*TLS handshake")
        assert "plain" not in [k for k, _ in hop.sessions]
    finally:
        hop.close()
