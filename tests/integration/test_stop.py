"""A stop while the queue manager is writing delivery state always ends.

Once, SIGTERM after 30,000 messages routed to `discard` left sluiced alive
for half an hour: the queue manager's last group commit had been prepared
but never submitted when the stop came, and its teardown waited for a
completion that could not come.  Here: mail for a discard route pours in
(so every turn of the queue manager writes REMOVE/STATE records) and the
daemon is stopped at different moments; each stop must end within the
bound (Daemon.stop raises after 15 s), with exit 0, and a restart finds a
consistent spool."""
import subprocess
import time

from conftest import spool_verify
from delivery_util import start

SMTP_SOURCE = "/usr/sbin/smtp-source"


def test_stop_during_discard_delivery_always_ends(daemon_factory, tmp_path):
    spool = str(tmp_path / "spool")
    for rnd, delay in enumerate((0.3, 1.0, 2.0)):
        d = start(daemon_factory, tmp_path, transport={"bar.test": "discard"}, spool=spool,
                  relay_domains='["bar.test"]')
        load = subprocess.Popen(
            ["timeout", "60", SMTP_SOURCE, "-s", "16", "-m", "3000", "-l", "1024",
             "-M", "client.example.test", "-f", "a@example.test", "-t", "u@bar.test",
             "127.0.0.1:%d" % d.port],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        t0 = time.monotonic()
        rc = d.stop(timeout=15)
        took = time.monotonic() - t0
        load.kill()
        load.wait()
        assert rc == 0, "round %d: exit %s\n%s" % (rnd, rc, d.log()[-3000:])
        assert took < 15, "round %d: the stop took %.1f s" % (rnd, took)
    code, out = spool_verify(spool)
    assert code == 0, out
