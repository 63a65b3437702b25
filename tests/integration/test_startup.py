"""Start-up errors: each is one clear line naming the cause, and a non-zero exit."""
import os
import socket
import subprocess
import time

from conftest import SLUICED


def run(*args, timeout=15):
    return subprocess.run([SLUICED, *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def test_port_in_use_by_another_program(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        r = run("-o", f"listen=127.0.0.1:{port}", "-o", f"spool_dir={tmp_path}/spool")
    finally:
        s.close()
    assert r.returncode == 1
    assert f"listen 127.0.0.1:{port}" in r.stderr
    assert "Address already in use" in r.stderr


def test_port_in_use_by_another_sluiced(daemon_factory, tmp_path):
    d = daemon_factory()
    r = run("-o", f"listen=127.0.0.1:{d.port}", "-o", f"spool_dir={tmp_path}/other")
    assert r.returncode == 1, r.stderr
    assert "Address already in use" in r.stderr
    # the first one is untouched and still answers
    c = socket.create_connection(("127.0.0.1", d.port), timeout=5)
    assert c.recv(100).startswith(b"220 ")
    c.close()


def test_unknown_setting_names_key_and_line(tmp_path):
    conf = tmp_path / "sluice.conf"
    conf.write_text('listen = ["127.0.0.1:0"];\n# comment\nmax_recipent = 200;\n')
    r = run("-c", str(conf))
    assert r.returncode == 1
    assert f"{conf}:3: max_recipent: unknown setting" in r.stderr


def test_bad_value_names_key_and_line(tmp_path):
    conf = tmp_path / "sluice.conf"
    conf.write_text('max_recipients = 5;\n')
    r = run("-c", str(conf))
    assert r.returncode == 1
    assert f"{conf}:1: max_recipients:" in r.stderr
    assert "minimum 100" in r.stderr


def test_syntax_error_names_line(tmp_path):
    conf = tmp_path / "sluice.conf"
    conf.write_text('listen = ["127.0.0.1:0";\nspool_dir = "x";\n')
    r = run("-c", str(conf))
    assert r.returncode == 1
    assert str(conf) in r.stderr


def test_bad_override(tmp_path):
    r = run("-o", "workers=lots")
    assert r.returncode == 1
    assert "-o workers:" in r.stderr


def test_missing_config_file(tmp_path):
    r = run("-c", str(tmp_path / "nope.conf"))
    assert r.returncode == 1
    assert "nope.conf" in r.stderr


def test_spool_that_is_not_a_directory(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    r = run("-o", "listen=127.0.0.1:0", "-o", f"spool_dir={f}")
    assert r.returncode == 1
    assert "spool" in r.stderr and str(f) in r.stderr


def test_config_fifo_is_refused_at_once(tmp_path):
    """A FIFO as the configuration: refused before anything blocks on it
    (it used to hang, with SIGTERM blocked, until a writer came)."""
    fifo = tmp_path / "sluice.conf"
    os.mkfifo(fifo)
    r = run("-c", str(fifo), "--check", timeout=10)
    assert r.returncode == 1
    assert f"sluiced: configuration: {fifo}: not a regular file" in r.stderr


def test_config_fifo_start_ends_on_sigterm(tmp_path):
    fifo = tmp_path / "sluice.conf"
    os.mkfifo(fifo)
    t0 = time.monotonic()
    r = subprocess.run(["timeout", "-s", "TERM", "5", SLUICED, "-c", str(fifo)],
                       capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert time.monotonic() - t0 < 10
    assert r.returncode == 1, r.stderr
    assert "not a regular file" in r.stderr


def test_auth_users_fifo_is_refused(tmp_path):
    fifo = tmp_path / "users"
    os.mkfifo(fifo)
    conf = tmp_path / "sluice.conf"
    conf.write_text(f'listen = ["127.0.0.1:0"];\nauth_users = "{fifo}";\n')
    r = run("-c", str(conf), "--check", timeout=10)
    assert r.returncode == 1
    assert f"auth_users: {fifo}: not a regular file" in r.stderr


def test_check_accepts_a_valid_file(tmp_path):
    conf = tmp_path / "sluice.conf"
    conf.write_text('listen = ["127.0.0.1:2525"];\nspool_dir = "./var/spool";\nworkers = 2;\n'
                    'hostname = "mx.example.test";\nmynetworks = ["127.0.0.0/8", "::1/128"];\n'
                    'relay_domains = ["example.test"];\nmax_message_size = 52428800;\n'
                    'max_recipients = 1000;\n')
    r = run("-c", str(conf), "--check")
    assert r.returncode == 0, r.stderr
    assert "valid" in r.stdout


def test_unknown_argument():
    r = run("--frobnicate")
    assert r.returncode == 2
    assert "unknown argument" in r.stderr


def test_io_uring_not_permitted(tmp_path):
    """As under a container runtime's default seccomp profile."""
    import os
    tool = os.path.join(os.path.dirname(SLUICED), "no-uring")
    r = subprocess.run([tool, SLUICED, "-o", "listen=127.0.0.1:0",
                        "-o", f"spool_dir={tmp_path}/spool"],
                       capture_output=True, text=True, timeout=15)
    assert r.returncode == 1
    assert "io_uring is not permitted" in r.stderr
    assert "seccomp" in r.stderr and "io_uring_disabled" in r.stderr
