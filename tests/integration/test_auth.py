"""SMTP AUTH (RFC 4954) and the submission listener (RFC 6409) against the
real daemon: smtplib starttls() + login(), 538 over plaintext, 535 and the
failure limit, 12288-octet responses, authenticated relay, the Received:
header, a password file reloaded on SIGHUP, a start-up error naming the
file and line, an `auth` sink binding, and guessing spread over many
addresses: the held 535 and the per-user budget (454).

Every test makes its own certificate with openssl and its own password
file with `openssl passwd -6` in tmp_path."""
import base64
import re
import signal
import smtplib
import socket
import ssl
import subprocess
import time

import pytest

from conftest import make_cert, Daemon, SLUICED, spool_cat, spool_list, msg_id, split_received

MSG = b"From: bob@example.org\r\nTo: x@far.example\r\nSubject: auth\r\n\r\nhello\r\n"


def passwd6(pw):
    return subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=pw, text=True,
                          check=True, capture_output=True, timeout=30).stdout.strip()


def write_users(path, users):
    path.write_text("# sluice users\n" + "".join(f"{u}:{passwd6(p)}\n" for u, p in users.items()))


def write_conf(tmp_path, users_file, extra="", submission=True, max_failures=3, delay="0s"):
    cert, key = make_cert(tmp_path)
    conf = tmp_path / "auth.conf"
    text = f'tls {{ cert = "{cert}"; key = "{key}"; }}\n'
    text += f'auth_users = "{users_file}";\n'
    text += f"auth_max_failures = {max_failures};\n"
    text += f"auth_failure_delay = {delay};\n"  # 0s: the other tests' 535s come at once
    if submission:
        text += 'listen_submission = ["127.0.0.1:0"];\n'
    conf.write_text(text + extra)
    return str(conf)


@pytest.fixture
def authd(tmp_path, daemon_factory):
    users = tmp_path / "users"
    write_users(users, {"bob": "secret", "ann": "s3cret"})
    d = daemon_factory(conf=write_conf(tmp_path, users))
    assert d.wait_log(r"listening on 127\.0\.0\.1:\d+ \(submission\)")
    d.sub_port = int(re.search(r"listening on 127\.0\.0\.1:(\d+) \(submission\)",
                               d.log()).group(1))
    d.users = users
    return d


def ctx():
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    return c


def tls_client(port, source="127.0.0.1"):
    s = smtplib.SMTP("127.0.0.1", port, timeout=10, source_address=(source, 0))
    s.ehlo("client.example")
    s.starttls(context=ctx())
    s.ehlo("client.example")
    return s


def plain(user, pw):
    return base64.b64encode(b"\0" + user.encode() + b"\0" + pw.encode()).decode()


def test_starttls_login_and_relay(authd):
    s = tls_client(authd.port)
    assert "PLAIN" in s.esmtp_features.get("auth", "") and "LOGIN" in s.esmtp_features["auth"]
    # unauthenticated relay from outside mynetworks is refused... but the
    # test client is 127.0.0.1 (mynetworks): shown on the submission port
    code, resp = s.login("bob", "secret")
    assert code == 235 and resp.startswith(b"2.7.0"), (code, resp)
    s.sendmail("bob@example.org", ["x@far.example"], MSG)
    s.quit()
    msgs = spool_list(authd.spool)
    assert len(msgs) == 1
    received, _ = split_received(spool_cat(authd.spool, msg_id(msgs[0])))
    assert b"(Authenticated sender: bob)" in received, received
    assert b" with ESMTPSA id " in received, received


def test_login_mechanism_and_failure(authd):
    s = tls_client(authd.port)
    s.user, s.password = "ann", "s3cret"
    code, resp = s.auth("LOGIN", s.auth_login, initial_response_ok=False)
    assert code == 235, (code, resp)
    s.quit()
    s = tls_client(authd.port)
    with pytest.raises(smtplib.SMTPAuthenticationError) as e:
        s.login("bob", "wrong")
    assert e.value.smtp_code == 535 and e.value.smtp_error.startswith(b"5.7.8")
    s.quit()


def test_538_over_plaintext(authd):
    s = smtplib.SMTP("127.0.0.1", authd.port, timeout=10)
    s.ehlo("client.example")
    assert "auth" not in s.esmtp_features  # not offered without TLS
    code, resp = s.docmd("AUTH", "PLAIN " + plain("bob", "secret"))
    assert code == 538 and resp.startswith(b"5.7.11 Encryption required"), (code, resp)
    s.quit()


def test_submission_requires_auth(authd):
    s = smtplib.SMTP("127.0.0.1", authd.sub_port, timeout=10)
    s.ehlo("client.example")
    code, resp = s.mail("bob@example.org")
    assert code == 530 and resp.startswith(b"5.7.0"), (code, resp)
    s.starttls(context=ctx())
    s.ehlo("client.example")
    code, _ = s.mail("bob@example.org")
    assert code == 530
    s.rset()
    s.login("bob", "secret")
    s.sendmail("bob@example.org", ["x@far.example"], MSG)  # relay to an outside domain
    s.quit()
    assert len(spool_list(authd.spool)) == 1


def test_unauthenticated_relay_refused(tmp_path, daemon_factory):
    users = tmp_path / "users"
    write_users(users, {"bob": "secret"})
    # 127.0.0.1 outside mynetworks: relay control applies to the test client
    d = daemon_factory(conf=write_conf(tmp_path, users, submission=False),
                       mynetworks='["192.0.2.0/24"]')
    s = tls_client(d.port)
    s.mail("bob@example.org")
    code, resp = s.rcpt("x@far.example")
    assert code == 554 and resp.startswith(b"5.7.1"), (code, resp)
    s.rset()
    s.login("bob", "secret")
    s.mail("bob@example.org")
    code, _ = s.rcpt("x@far.example")
    assert code == 250
    s.quit()


def test_failure_limit(authd):
    for i in range(3):  # (smtplib's login() would try PLAIN and then LOGIN: 2 failures)
        s = tls_client(authd.port)
        code, _ = s.docmd("AUTH", "PLAIN " + plain("bob", f"wrong{i}"))
        assert code == 535
        s.quit()
    s = tls_client(authd.port)
    code, resp = s.docmd("AUTH", "PLAIN " + plain("bob", "secret"))
    assert code == 421 and resp.startswith(b"4.7.0"), (code, resp)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        s.noop()


def test_12288_octet_response(authd):
    s = tls_client(authd.port)
    code, resp = s.docmd("AUTH", "PLAIN")
    assert code == 334
    raw = b"\0bob\0" + b"p" * (9216 - 5)
    line = base64.b64encode(raw)
    assert len(line) == 12288
    code, resp = s.docmd(line.decode())
    assert code == 535, (code, resp)  # read whole: the password is just wrong
    code, resp = s.docmd("AUTH", "LOGIN")
    assert code == 334
    code, resp = s.docmd("A" * 12289)
    assert code == 500 and resp.startswith(b"5.5.6"), (code, resp)
    assert s.noop()[0] == 250
    s.quit()


def test_sighup_reloads_users(authd):
    write_users(authd.users, {"carol": "new"})
    authd.proc.send_signal(signal.SIGHUP)
    assert authd.wait_log(r"auth_users reloaded")
    s = tls_client(authd.port)
    s.login("carol", "new")
    s.quit()
    s = tls_client(authd.port)
    with pytest.raises(smtplib.SMTPAuthenticationError):
        s.login("bob", "secret")
    s.quit()
    # a broken file keeps the previous users
    authd.users.write_text("carol\n")
    authd.proc.send_signal(signal.SIGHUP)
    assert authd.wait_log(r"auth_users: .*:1: .*previous users stay")
    s = tls_client(authd.port)
    s.login("carol", "new")
    s.quit()


def test_startup_errors(tmp_path):
    users = tmp_path / "users"
    users.write_text(f"# ok\nbob:{passwd6('x')}\nbroken\n")
    r = subprocess.run([SLUICED, "-o", f"auth_users={users}", "-o", "listen=127.0.0.1:0",
                        "-o", f"spool_dir={tmp_path}/spool"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert f"{users}:3:" in r.stderr, r.stderr
    r = subprocess.run([SLUICED, "-o", f"auth_users={tmp_path}/missing", "-o",
                        "listen=127.0.0.1:0", "-o", f"spool_dir={tmp_path}/spool"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "missing" in r.stderr, r.stderr


def test_auth_sink_binding(tmp_path, daemon_factory):
    """builtin:delay on the auth event: PENDING, then CONSUMED after 20 ms:
    the user is authenticated without the password file."""
    users = tmp_path / "users"
    write_users(users, {"bob": "secret"})
    extra = ('binding "ext" { event = "auth"; sink = "builtin:delay"; deadline = "2s";\n'
             '  properties { ms = 20; verdict = "consumed"; } }\n')
    d = daemon_factory(conf=write_conf(tmp_path, users, extra=extra, submission=False))
    s = tls_client(d.port)
    code, _ = s.login("someone", "anything")
    assert code == 235
    s.quit()
    assert d.wait_log(r"AUTH PLAIN: user someone authenticated")


def test_concurrent_sessions_not_blocked_by_hashes(authd):
    """While several AUTHs hash, another session's NOOPs are answered."""
    clients = [tls_client(authd.port) for _ in range(4)]
    other = tls_client(authd.port)
    for c in clients:
        c.send(("AUTH PLAIN " + plain("bob", "secret") + "\r\n").encode())
    t0 = time.monotonic()
    assert other.noop()[0] == 250
    for c in clients:
        code, _ = c.getreply()
        assert code == 235
        c.quit()
    other.quit()
    assert time.monotonic() - t0 < 10


def test_guessing_over_addresses_held_and_budgeted(tmp_path, daemon_factory):
    """Wrong passwords for bob from 6 loopback addresses (one each, in
    parallel): every 535 is held back (1 s, then doubling to the 5 s cap,
    released by the once-a-second tick), and the 6th failure uses up bob's
    budget: then 454 4.7.0 without a check, even for the right password,
    from a failed address and from a new one, while the address bob logged
    in from before still logs in."""
    import concurrent.futures
    users = tmp_path / "users"
    write_users(users, {"bob": "secret", "ann": "s3cret"})
    d = daemon_factory(conf=write_conf(tmp_path, users, delay="1s",
                                       extra="auth_user_max_failures = 6;\n"))
    s = tls_client(d.port)  # 127.0.0.1: bob's own network
    assert s.docmd("AUTH", "PLAIN " + plain("bob", "secret"))[0] == 235
    s.quit()

    def guess(i):
        c = tls_client(d.port, f"127.0.0.{i}")
        t0 = time.monotonic()
        code, resp = c.docmd("AUTH", "PLAIN " + plain("bob", f"guess{i}"))
        took = time.monotonic() - t0
        c.quit()
        return code, resp, took

    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(6) as ex:
        results = list(ex.map(guess, range(2, 8)))
    for code, resp, took in results:
        assert code == 535 and resp.startswith(b"5.7.8"), (code, resp)
        assert 0.9 <= took < 8, took  # held at least the first delay, at most cap + a tick
    assert max(r[2] for r in results) >= 1.9  # later failures wait longer
    assert time.monotonic() - t0 < 20

    for src in ("127.0.0.2", "127.0.0.40"):  # a guessing address, a new one
        c = tls_client(d.port, src)
        t1 = time.monotonic()
        code, resp = c.docmd("AUTH", "PLAIN " + plain("bob", "secret"))
        assert code == 454 and resp.startswith(b"4.7.0 Error: too many authentication"), resp
        assert time.monotonic() - t1 < 1  # no hold, no hash
        c.quit()
    c = tls_client(d.port, "127.0.0.40")  # another user is not affected
    assert c.docmd("AUTH", "PLAIN " + plain("ann", "s3cret"))[0] == 235
    c.quit()
    c = tls_client(d.port)  # the network bob logged in from
    assert c.docmd("AUTH", "PLAIN " + plain("bob", "secret"))[0] == 235
    c.quit()
    assert d.wait_log(r"AUTH PLAIN: user bob: refused, too many failures for the user")
