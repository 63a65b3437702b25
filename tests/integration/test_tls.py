"""TLS: STARTTLS (RFC 3207), implicit TLS (RFC 8314), injection (ACCEPTANCE
P3), protocol floor, start-up errors, SIGHUP reload, many sessions.

Every test makes its own key and self-signed certificate with the openssl
command in tmp_path."""
import re
import signal
import smtplib
import socket
import ssl
import subprocess
import threading
import time

import pytest

from conftest import (make_cert, Daemon, SLUICED, spool_cat, spool_list, msg_id,
                      split_received)

MSG = b"From: a@example.test\r\nTo: b@example.test\r\nSubject: tls\r\n\r\nhello over TLS\r\n"


def cert_serial(pem_or_der):
    if isinstance(pem_or_der, bytes):
        pem_or_der = ssl.DER_cert_to_PEM_cert(pem_or_der)
    out = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=pem_or_der,
                         capture_output=True, text=True, check=True, timeout=30).stdout
    return out.strip().split("=", 1)[1]


def write_conf(tmp_path, cert, key, smtps=True, extra=""):
    conf = tmp_path / "tls.conf"
    text = f'tls {{ cert = "{cert}"; key = "{key}"; }}\n'
    if smtps:
        text += 'listen_smtps = ["127.0.0.1:0"];\n'
    conf.write_text(text + extra)
    return str(conf)


@pytest.fixture
def tlsd(tmp_path, daemon_factory):
    cert, key = make_cert(tmp_path)
    d = daemon_factory(conf=write_conf(tmp_path, cert, key))
    assert d.wait_log(r"listening on 127\.0\.0\.1:\d+ \(implicit TLS\)")
    d.smtps_port = int(re.search(r"listening on 127\.0\.0\.1:(\d+) \(implicit TLS\)",
                                 d.log()).group(1))
    d.cert, d.key = cert, key
    return d


def client_ctx(**kw):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx


class TLSRaw:
    """Raw SMTP lines over a socket that may be wrapped in TLS later."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data.encode() if isinstance(data, str) else data)

    def reply(self):
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.s.recv(65536)
                if not chunk:
                    raise ConnectionError("closed; got %r" % (self.buf,))
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line.decode())
            if len(line) < 4 or line[3:4] != b"-":
                return int(lines[-1][:3]), "\n".join(lines)

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.reply()

    def starttls(self, ctx=None):
        assert self.buf == b"", self.buf
        self.s = (ctx or client_ctx()).wrap_socket(self.s, server_hostname="mx.example.test")

    def pending_after(self, wait=0.5):
        """What the server sends within wait seconds (b"" if nothing)."""
        self.s.settimeout(wait)
        try:
            return self.buf + self.s.recv(65536)
        except (socket.timeout, ssl.SSLWantReadError):
            return self.buf
        finally:
            self.s.settimeout(10)


def test_openssl_s_client_starttls(tlsd):
    # the commands are written once the handshake is over (-quiet: no key renegotiation on "R")
    p = subprocess.Popen(["openssl", "s_client", "-starttls", "smtp", "-connect",
                          f"127.0.0.1:{tlsd.port}", "-servername", "mx.example.test",
                          "-ign_eof", "-crlf"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    time.sleep(1.0)
    p.stdin.write("EHLO c.example.test\n")
    p.stdin.flush()
    time.sleep(0.5)
    p.stdin.write("QUIT\n")
    p.stdin.flush()
    out, _ = p.communicate(timeout=30)
    assert "Protocol  : TLSv1.3" in out or "New, TLSv1.3" in out, out[-2000:]
    # after the handshake: EHLO answered over TLS, without STARTTLS
    ehlo = out[out.index("250-mx.example.test"):]
    assert "STARTTLS" not in ehlo.split("221")[0], ehlo
    assert "221 2.0.0 Bye" in out


def test_ehlo_offers_starttls_only_before(tlsd):
    c = TLSRaw(tlsd.port)
    assert c.reply()[0] == 220
    code, text = c.cmd("EHLO c.example.test")
    assert code == 250 and "250-STARTTLS" in text or "250 STARTTLS" in text, text
    assert c.cmd("STARTTLS") == (220, "220 2.0.0 Ready to start TLS")
    c.starttls()
    code, text = c.cmd("EHLO c.example.test")
    assert code == 250 and "STARTTLS" not in text, text


def test_smtplib_starttls_message_spooled_with_tls_info(tlsd):
    with smtplib.SMTP("127.0.0.1", tlsd.port, timeout=10) as s:
        s.ehlo("c.example.test")
        s.starttls(context=client_ctx())
        s.ehlo("c.example.test")
        s.sendmail("a@example.test", ["b@example.test"], MSG)
    msgs = spool_list(tlsd.spool)
    assert len(msgs) == 1
    hdr, body = split_received(spool_cat(tlsd.spool, msg_id(msgs[0])))
    assert body == MSG
    assert re.search(rb"\(using TLSv1\.3 with cipher TLS_[A-Z0-9_]+ \(\d+/\d+ bits\)\)", hdr), hdr
    assert b"with ESMTPS id" in hdr, hdr


def test_smtp_ssl_on_smtps_listener(tlsd):
    with smtplib.SMTP_SSL("127.0.0.1", tlsd.smtps_port, timeout=10,
                          context=client_ctx()) as s:
        code, text = s.ehlo("c.example.test")
        assert code == 250 and b"STARTTLS" not in text
        assert s.docmd("STARTTLS")[0] == 554
        s.sendmail("a@example.test", ["b@example.test"], MSG)
    hdr, _ = split_received(spool_cat(tlsd.spool, msg_id(spool_list(tlsd.spool)[0])))
    assert b"(using TLSv1.3" in hdr


def test_smtps_greeting_only_after_handshake(tlsd):
    s = socket.create_connection(("127.0.0.1", tlsd.smtps_port), timeout=10)
    s.settimeout(0.7)
    with pytest.raises(socket.timeout):
        s.recv(100)  # RFC 8314: nothing in plaintext, the server waits for the ClientHello
    s.settimeout(10)
    t = client_ctx().wrap_socket(s, server_hostname="mx.example.test")
    assert t.recv(100).startswith(b"220 mx.example.test ESMTP")
    assert t.version() == "TLSv1.3"
    t.close()


def test_starttls_injection_discarded(tlsd):
    c = TLSRaw(tlsd.port)
    assert c.reply()[0] == 220
    assert c.cmd("EHLO c.example.test")[0] == 250
    c.send("STARTTLS\r\nRSET\r\n")  # one write: RSET is plaintext injected after STARTTLS
    assert c.reply() == (220, "220 2.0.0 Ready to start TLS")
    assert c.buf == b""
    c.starttls()
    # the injected RSET must not be answered inside TLS
    assert c.pending_after(0.7) == b""
    # EHLO is required again: the state was reset
    assert c.cmd("MAIL FROM:<a@example.test>") == (503, "503 5.5.1 Error: send HELO/EHLO first")
    assert c.cmd("EHLO c.example.test")[0] == 250
    assert c.cmd("MAIL FROM:<a@example.test>")[0] == 250
    assert c.cmd("STARTTLS")[0] == 554  # never twice
    assert c.cmd("QUIT")[0] == 221


def test_injection_with_transaction_before_starttls(tlsd):
    """A transaction begun in plaintext does not survive STARTTLS, and
    STARTTLS inside it is refused."""
    c = TLSRaw(tlsd.port)
    c.reply()
    c.cmd("EHLO c.example.test")
    assert c.cmd("MAIL FROM:<a@example.test>")[0] == 250
    assert c.cmd("STARTTLS") == (503, "503 5.5.1 Error: MAIL transaction in progress")
    assert c.cmd("RSET")[0] == 250
    c.send("STARTTLS\r\nMAIL FROM:<evil@example.test>\r\nRCPT TO:<b@example.test>\r\n")
    assert c.reply()[0] == 220
    c.starttls()
    assert c.cmd("EHLO c.example.test")[0] == 250
    assert c.cmd("RCPT TO:<b@example.test>")[0] == 503  # no MAIL survived


def test_tls11_client_refused(tlsd):
    ctx = client_ctx()
    try:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    except (ValueError, ssl.SSLError) as e:
        pytest.skip("this Python cannot speak TLS 1.1: %s" % e)
    s = socket.create_connection(("127.0.0.1", tlsd.smtps_port), timeout=10)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        ctx.wrap_socket(s, server_hostname="mx.example.test")
    s.close()
    assert tlsd.wait_log(r"TLS handshake failed: .*protocol")
    # and a TLS 1.2 client is fine
    ctx12 = client_ctx(maximum_version=ssl.TLSVersion.TLSv1_2)
    with socket.create_connection(("127.0.0.1", tlsd.smtps_port), timeout=10) as s:
        t = ctx12.wrap_socket(s, server_hostname="mx.example.test")
        assert t.version() == "TLSv1.2"
        assert t.recv(100).startswith(b"220 ")
        t.close()


def start_fail(tmp_path, conf):
    d = Daemon(str(tmp_path / "spool"), {"listen": "127.0.0.1:0", "spool_dir":
                                         str(tmp_path / "spool"), "workers": 1}, conf)
    with pytest.raises(RuntimeError) as e:
        d.start(timeout=10)
    assert d.proc.returncode not in (0, None)
    return str(e.value)


def test_missing_key_is_a_clear_start_error(tmp_path):
    cert, key = make_cert(tmp_path)
    log = start_fail(tmp_path, write_conf(tmp_path, cert, tmp_path / "nope.key", smtps=False))
    assert f"tls: key {tmp_path}/nope.key: No such file or directory" in log, log


def test_mismatched_key_is_a_clear_start_error(tmp_path):
    cert, key = make_cert(tmp_path)
    _, other = make_cert(tmp_path, "other")
    log = start_fail(tmp_path, write_conf(tmp_path, cert, other, smtps=False))
    assert f"tls: key {other} does not match the certificate {cert}" in log, log


def test_smtps_without_tls_block_refused(tmp_path):
    conf = tmp_path / "c.conf"
    conf.write_text('listen_smtps = ["127.0.0.1:0"];\n')
    log = start_fail(tmp_path, str(conf))
    assert "listen_smtps needs a tls" in log, log


def test_sighup_reload_new_cert_for_new_connections(tlsd, tmp_path):
    old_serial = cert_serial(open(tlsd.cert).read())
    # an open session, before the reload
    keep = TLSRaw(tlsd.port)
    keep.reply()
    keep.cmd("EHLO c.example.test")
    keep.cmd("STARTTLS")
    keep.starttls()
    assert cert_serial(keep.s.getpeercert(binary_form=True)) == old_serial
    assert keep.cmd("EHLO c.example.test")[0] == 250
    # new pair in place, then SIGHUP
    newc, newk = make_cert(tmp_path, "new")
    new_serial = cert_serial(open(newc).read())
    assert new_serial != old_serial
    (tmp_path / "srv.pem").write_bytes(newc.read_bytes())
    (tmp_path / "srv.key").write_bytes(newk.read_bytes())
    tlsd.proc.send_signal(signal.SIGHUP)
    assert tlsd.wait_log(r"SIGHUP: TLS certificate and key reloaded")
    with socket.create_connection(("127.0.0.1", tlsd.smtps_port), timeout=10) as s:
        t = client_ctx().wrap_socket(s, server_hostname="mx.example.test")
        assert cert_serial(t.getpeercert(binary_form=True)) == new_serial
        t.close()
    # the old session goes on with its old context
    assert keep.cmd("MAIL FROM:<a@example.test>")[0] == 250
    assert keep.cmd("RCPT TO:<b@example.test>")[0] == 250
    assert keep.cmd("DATA")[0] == 354
    keep.send(MSG + b".\r\n")
    assert keep.reply()[0] == 250
    assert keep.cmd("QUIT")[0] == 221
    # a broken pair: the reload fails, the current one stays
    (tmp_path / "srv.key").write_bytes((tmp_path / "srv.pem").read_bytes())
    tlsd.proc.send_signal(signal.SIGHUP)
    assert tlsd.wait_log(r"SIGHUP: tls: key .* the previous certificate stays in use")
    with socket.create_connection(("127.0.0.1", tlsd.smtps_port), timeout=10) as s:
        t = client_ctx().wrap_socket(s, server_hostname="mx.example.test")
        assert cert_serial(t.getpeercert(binary_form=True)) == new_serial
        t.close()


def test_many_concurrent_tls_sessions(tlsd):
    n, per = 40, 3
    errors = []

    def one(i):
        try:
            for j in range(per):
                if (i + j) % 2:
                    s = smtplib.SMTP_SSL("127.0.0.1", tlsd.smtps_port, timeout=20,
                                         context=client_ctx())
                else:
                    s = smtplib.SMTP("127.0.0.1", tlsd.port, timeout=20)
                    s.starttls(context=client_ctx())
                s.sendmail(f"s{i}-{j}@example.test", ["b@example.test"], MSG)
                s.quit()
        except Exception as e:  # collected, asserted below
            errors.append(repr(e))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:5]
    assert len(spool_list(tlsd.spool)) == n * per


def test_plaintext_unchanged_without_tls(daemon_factory):
    d = daemon_factory()
    c = TLSRaw(d.port)
    c.reply()
    code, text = c.cmd("EHLO c.example.test")
    assert "STARTTLS" not in text
    assert c.cmd("STARTTLS")[0] == 500
