"""Local delivery: the built-in route localhost = maildir (no transport
table), maildir_root in the test's directory, mail sent with swaks as a new
user would."""
import os
import subprocess

from conftest import spool_list
from delivery_util import outcomes, qmgr_log, start, wait_spool_empty, wait_until


def new_files(root, user):
    d = os.path.join(root, user, "new")
    try:
        return sorted(os.path.join(d, n) for n in os.listdir(d))
    except FileNotFoundError:
        return []


def swaks(port, to, sender="sender@client.test", body="Hello from swaks\nsecond line",
          header="Subject: maildir test"):
    r = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % port, "--from", sender,
                        "--to", to, "--header", header, "--body", body, "--timeout", "15"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    return r.stdout


def test_swaks_to_me_at_localhost(daemon_factory, tmp_path):
    """swaks --to me@localhost: one file in ROOT/me/new/ with Return-Path,
    Delivered-To, the header and the body, LF line ends; tmp/ is empty."""
    root = tmp_path / "mail"
    # no relayhost and no transport table in the file: the built-in
    # localhost = maildir route (the fixture holds everything else)
    d = start(daemon_factory, tmp_path, maildir_root=str(root))
    swaks(d.port, "me@localhost")
    assert wait_until(lambda: new_files(root, "me"), 15), qmgr_log(d)
    assert wait_spool_empty(d.spool, 10), spool_list(d.spool)
    files = new_files(root, "me")
    assert len(files) == 1, files
    data = open(files[0], "rb").read()
    assert data.startswith(b"Return-Path: <sender@client.test>\n"), data[:200]
    assert b"\nDelivered-To: me@localhost\n" in data.split(b"\n\n")[0] + b"\n", data[:300]
    assert b"\nSubject: maildir test\n" in data
    assert b"Hello from swaks\nsecond line" in data
    assert b"\r" not in data
    assert os.listdir(root / "me" / "tmp") == []
    assert os.path.isdir(root / "me" / "cur")
    assert oct(os.stat(root / "me").st_mode & 0o777) == "0o700"
    via = outcomes(d, "me@localhost", "delivered")
    assert len(via) == 1, qmgr_log(d)


def test_two_recipients_two_mailboxes(daemon_factory, tmp_path):
    """One message to me@ and you+tag@localhost: a file in each mailbox
    (the +detail dropped), each with its own Delivered-To."""
    root = tmp_path / "mail"
    d = start(daemon_factory, tmp_path, maildir_root=str(root))
    swaks(d.port, "me@localhost,you+tag@localhost")
    assert wait_until(lambda: new_files(root, "me") and new_files(root, "you"), 15), \
        qmgr_log(d)
    assert wait_spool_empty(d.spool, 10), spool_list(d.spool)
    me = open(new_files(root, "me")[0], "rb").read()
    you = open(new_files(root, "you")[0], "rb").read()
    assert b"Delivered-To: me@localhost\n" in me and b"Delivered-To: you" not in me
    assert b"Delivered-To: you+tag@localhost\n" in you, you[:300]
    assert len(new_files(root, "me")) == 1 and len(new_files(root, "you")) == 1
    assert me.split(b"\n", 2)[2] == you.split(b"\n", 2)[2]  # same message after the two


def test_postmaster_without_a_domain_is_delivered(daemon_factory, tmp_path):
    """RCPT TO:<postmaster> (RFC 5321 4.5.1) from a client outside
    mynetworks: accepted, and delivered to the postmaster address (default
    postmaster@localhost, a Maildir), never looked up in DNS."""
    root = tmp_path / "mail"
    d = start(daemon_factory, tmp_path, maildir_root=str(root), mynetworks="[]")
    swaks(d.port, "postmaster")
    assert wait_until(lambda: new_files(root, "postmaster"), 15), qmgr_log(d)
    assert wait_spool_empty(d.spool, 10), spool_list(d.spool)
    data = open(new_files(root, "postmaster")[0], "rb").read()
    assert b"\nDelivered-To: postmaster@localhost\n" in data, data[:300]
    assert "DNS" not in qmgr_log(d)


def test_postmaster_goes_where_configured(daemon_factory, tmp_path):
    root = tmp_path / "mail"
    d = start(daemon_factory, tmp_path, maildir_root=str(root),
              postmaster='"abuse-desk@localhost"')
    swaks(d.port, "postmaster")
    assert wait_until(lambda: new_files(root, "abuse-desk"), 15), qmgr_log(d)


def test_mail_for_the_own_hostname_is_local_not_relayed(daemon_factory, tmp_path):
    """Mail for the server's hostname from any client is delivered here
    (Maildir), never routed by MX and bounced to a possibly forged sender."""
    root = tmp_path / "mail"
    d = start(daemon_factory, tmp_path, maildir_root=str(root), mynetworks="[]")
    swaks(d.port, "someone@mx.example.test", sender="forged@victim.test")
    assert wait_until(lambda: new_files(root, "someone"), 15), qmgr_log(d)
    assert wait_spool_empty(d.spool, 10), spool_list(d.spool)
    assert outcomes(d, "someone@mx.example.test", "delivered"), qmgr_log(d)
