"""Configuration forms the daemon accepts (core/cfg/): JSON files with named
blocks, syslog's log level names, and live binding changes written back into
a JSON file by the parser's own spans (core/cfg/cfg_edit.c)."""
import json
import os
import subprocess

from conftest import BUILD, SLUICED

SLUICECTL = os.path.join(BUILD, "bin", "sluicectl")


def run(*args, timeout=30):
    return subprocess.run([SLUICED, *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def json_conf(tmp_path, **extra):
    conf = {"binding": {"tag": {"event": "mail", "sink": "builtin:noop"},
                        "caf\u00e9": {"event": "rcpt", "sink": "builtin:noop",
                                      "priority": 100}},
            "spool_dir": str(tmp_path / "spool"), "admin_listen": "",
            "control_socket": ""}
    conf.update(extra)
    p = tmp_path / "sluice.json"
    p.write_text(json.dumps(conf, indent=2))  # \u00e9 escaped, as JSON writers do
    return p


def test_json_named_blocks_check_and_bindings(tmp_path):
    p = json_conf(tmp_path)
    r = run("-c", str(p), "--check")
    assert r.returncode == 0, r.stderr
    r = run("-c", str(p), "--bindings")
    assert r.returncode == 0, r.stderr
    mail = r.stdout.split("mail:")[1].split("rcpt:")[0]
    assert "tag" in mail and "builtin:noop" in mail, r.stdout
    rcpt = r.stdout.split("rcpt:")[1].split("data:")[0]
    assert "caf\u00e9" in rcpt and "100" in rcpt, r.stdout


def test_json_binding_without_a_name_is_still_refused(tmp_path):
    p = tmp_path / "sluice.json"
    p.write_text('{"binding": {"event": "mail", "sink": "builtin:noop"}}')
    r = run("-c", str(p), "--check")
    assert r.returncode == 1
    assert "a binding needs a name" in r.stderr, r.stderr


def test_log_level_syslog_names():
    for name in ("warning", "notice", "err", "crit", "WARN"):
        r = run("-o", "log_level=" + name, "-o", 'admin_listen=""', "--check")
        assert r.returncode == 0, (name, r.stderr)
    r = run("-o", "log_level=loud", "--check")
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1, r.stderr
    assert ("-o log_level: expected one of debug, info, notice, warn, warning, err, error, "
            "crit, alert, emerg") in r.stderr, r.stderr


def test_json_file_live_changes_written_back(daemon_factory, tmp_path):
    sock = str(tmp_path / "ctl.sock")
    p = json_conf(tmp_path, control_socket=sock, relayhost="hold")
    before = p.read_text()
    d = daemon_factory(conf=str(p))

    def ctl(*args):
        r = subprocess.run([SLUICECTL, "-s", sock, "bindings", *args],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, (args, r.stdout, r.stderr)

    ctl("disable", "caf\u00e9")
    after = p.read_text()
    # the entry's braces changed, its "caf\u00e9": key and everything else did not
    head = before.index('"caf\\u00e9": {') + len('"caf\\u00e9": ')
    assert after[:head] == before[:head]
    assert "enabled = false" in after[head:], after
    tail = before[before.index("}", head) + 1:]
    assert after.endswith(tail), after
    r = run("-c", str(p), "--bindings")
    assert r.returncode == 0, r.stderr
    rcpt = r.stdout.split("rcpt:")[1].split("data:")[0]
    assert "caf\u00e9" in rcpt and "disabled" in rcpt, r.stdout
    ctl("remove", "tag")
    ctl("add", "new", "event=eod", "sink=builtin:noop")
    r = run("-c", str(p), "--bindings")
    assert r.returncode == 0, (r.stderr, p.read_text())
    assert "tag" not in r.stdout.split("mail:")[1].split("rcpt:")[0], r.stdout
    assert "new" in r.stdout.split("eod:")[1].split("command:")[0], r.stdout
    assert d.stop() == 0
