"""README.md's first commands, run as a new user would run them after `make
run`: the swaks lines (plaintext, then STARTTLS with -tls, which needs
Net::SSLeay: scripts/deps.sh installs libnet-ssleay-perl), the Maildir they
fill and the spool tool, read from README.md itself so that the README and
what works cannot drift apart.  The daemon gets what scripts/run.sh gives
`make run` (a certificate, STARTTLS, implicit TLS), on ports of its own."""
import os
import re
import shlex
import subprocess

from conftest import BUILD, make_cert
from delivery_util import qmgr_log, start, wait_until

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def readme_commands():
    """The lines of the first ```sh block of README.md that mentions swaks,
    without their comments."""
    text = open(os.path.join(ROOT, "README.md")).read()
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        if "swaks" in block:
            return [l.split("#")[0].strip() for l in block.splitlines()
                    if l.strip() and not l.startswith("#")]
    raise AssertionError("README.md has no sh block with swaks")


def run_like_make_run(daemon_factory, tmp_path):
    cert, key = make_cert(tmp_path, cn="localhost", san="DNS:localhost,IP:127.0.0.1")
    tls = 'tls { cert = "%s"; key = "%s"; }\nlisten_smtps = ["127.0.0.1:0"];\n' % (cert, key)
    d = start(daemon_factory, tmp_path, extra=tls, maildir_root=str(tmp_path / "mail"))
    # start() returns at the first listener's line; the implicit TLS one may follow
    assert d.wait_log(r"listening on 127\.0\.0\.1:\d+ \(implicit TLS\)"), d.log()
    m = re.search(r"listening on 127\.0\.0\.1:(\d+) \(implicit TLS\)", d.log())
    d.smtps_port = int(m.group(1))
    return d


def swaks(argv):
    r = subprocess.run(argv + ["--timeout", "15"], capture_output=True, text=True, timeout=60)
    out = r.stdout + r.stderr
    assert r.returncode == 0, "%s: exit %d\n%s" % (" ".join(argv), r.returncode, out[-3000:])
    # the 250 after the final dot: the message was accepted
    assert re.search(r"^ [-~]> \.\n<[-~] +250 ", out, re.M), out[-3000:]
    return out


def test_readme_commands_work(daemon_factory, tmp_path):
    cmds = readme_commands()
    assert [c.split()[0] for c in cmds] == ["swaks", "ls", "swaks", "build/bin/sluice-spool"], cmds
    d = run_like_make_run(daemon_factory, tmp_path)
    maildir = tmp_path / "mail" / "me" / "new"
    sent = 0
    for c in cmds:
        argv = shlex.split(c)
        if argv[0] == "swaks":
            assert "127.0.0.1:2525" in argv, c  # make run's port
            argv = [("127.0.0.1:%d" % d.port) if a == "127.0.0.1:2525" else a for a in argv]
            out = swaks(argv)
            sent += 1
            if "-tls" in argv:
                assert "TLS started" in out, out[-3000:]
                assert re.search(r"^ ~> \.\n<~ +250 ", out, re.M)  # over TLS
        elif argv[0] == "ls":
            assert argv[1:] == ["var/mail/me/new/"], c  # make run's maildir_root is ./var/mail
            assert wait_until(lambda: len(os.listdir(maildir)) == sent
                              if maildir.is_dir() else False, 15), qmgr_log(d)
        else:
            assert argv[1:] == ["var/spool", "list"], c  # make run's spool
            r = subprocess.run([os.path.join(BUILD, "bin", "sluice-spool"), d.spool, "list"],
                               capture_output=True, text=True, timeout=30)
            assert r.returncode == 0, r.stdout + r.stderr
    assert wait_until(lambda: len(os.listdir(maildir)) == 2, 15), qmgr_log(d)
    assert d.stop() == 0


def test_swaks_implicit_tls(daemon_factory, tmp_path):
    """The other listener make run opens: implicit TLS (swaks --tlsc)."""
    d = run_like_make_run(daemon_factory, tmp_path)
    out = swaks(["swaks", "--server", "127.0.0.1:%d" % d.smtps_port, "--tlsc",
                 "--to", "me@localhost", "--from", "you@example.test"])
    assert "TLS started" in out, out[-3000:]
    maildir = tmp_path / "mail" / "me" / "new"
    assert wait_until(lambda: maildir.is_dir() and len(os.listdir(maildir)) == 1, 15), \
        qmgr_log(d)
    assert d.stop() == 0


def test_make_run_matches_the_readme():
    """scripts/run.sh (what make run starts) names the same ports, and
    prints the README's commands."""
    run = open(os.path.join(ROOT, "scripts", "run.sh")).read()
    readme = open(os.path.join(ROOT, "README.md")).read()
    assert "127.0.0.1:2465" in run and "127.0.0.1:2465" in readme
    for c in readme_commands():
        assert c in run, c
