"""offload = true in the real daemon: the handler runs as a scheduler task."""
import smtplib

from conftest import spool_cat, spool_list


def test_offloaded_header_sink_and_reject(daemon_factory, tmp_path):
    conf = tmp_path / "off.conf"
    conf.write_text(
        'binding "tag" { event = "eod"; sink = "builtin:header"; offload = true;\n'
        '  properties { name = "X-Offloaded"; value = "yes"; } }\n'
        'binding "deny" { event = "mail"; sink = "builtin:access"; offload = true;\n'
        '  rule = "MAIL FROM=*@bad.example";\n'
        '  properties { action = "reject"; text = "not from there"; } }\n')
    d = daemon_factory(conf=str(conf))
    with smtplib.SMTP("127.0.0.1", d.port, timeout=10) as c:
        for i in range(20):
            c.sendmail("ok@example.test", ["r@example.test"],
                       f"Subject: m{i}\r\n\r\nbody {i}\r\n")
        try:
            c.sendmail("x@bad.example", ["r@example.test"], "Subject: no\r\n\r\nx\r\n")
            raise AssertionError("an offloaded reject was not applied")
        except smtplib.SMTPSenderRefused as e:
            assert e.smtp_code == 550 and b"not from there" in e.smtp_error
    msgs = spool_list(d.spool)
    assert len(msgs) == 20
    for m in msgs:
        body = spool_cat(d.spool, m["id"])
        assert b"\r\nX-Offloaded: yes\r\n" in body
    assert d.stop() == 0
