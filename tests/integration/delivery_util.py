"""Helpers for the queue-manager tests (test_delivery, test_mx, test_bounce,
test_delivery_crash, test_maildir): a configuration file with a transport
table and short retry times, sending with smtplib, polling with deadlines,
and reading the daemon's per-outcome log lines and exit counters."""
import re
import smtplib
import time

from conftest import spool_list

# Short timings: a retry within a second or two, and connect/command
# timeouts that fail fast against a loopback peer.
FAST = {
    "connect_timeout": "2s",
    "command_timeout": "5s",
    "log_level": "info",
}


def conf_text(relayhost=None, transport=None, retry=None, extra=""):
    """sluice.conf text: relayhost, transport { }, retry { } (a dict of
    min/max/max_age/delay_warning; default min 1s, max 2s, max_age 30s)."""
    out = []
    if relayhost is not None:
        out.append('relayhost = "%s";' % relayhost)
    if transport:
        out.append("transport {")
        for k, v in transport.items():
            out.append('  "%s" = "%s";' % (k, v))
        out.append("}")
    r = {"min": "1s", "max": "2s", "max_age": "30s"}
    r.update(retry or {})
    out.append("retry { %s }" % " ".join('%s = "%s";' % kv for kv in r.items()))
    out.append(extra)
    return "\n".join(out) + "\n"


def start(daemon_factory, tmp_path, relayhost=None, transport=None, retry=None,
          extra="", spool=None, **overrides):
    """A sluiced with that routing; returns the Daemon."""
    p = tmp_path / "sluice.conf"
    p.write_text(conf_text(relayhost, transport, retry, extra))
    ov = dict(FAST)
    ov.update(overrides)
    return daemon_factory(conf=str(p), spool=spool, **ov)


def message(subject="test", tag=None, body="hello\r\n", headers=()):
    h = ["From: <sender@client.test>", "To: <rcpt@example.test>", "Subject: " + subject,
         "Message-ID: <%s@client.test>" % (tag or "m%d" % time.monotonic_ns())]
    if tag:
        h.append("X-Test-Tag: " + tag)
    h += list(headers)
    return ("\r\n".join(h) + "\r\n\r\n" + body).encode()


def send(port, sender, rcpts, data=None, timeout=20):
    """One message over a fresh session; returns smtplib's refused dict.
    port may be a Daemon: then a failure shows its queue-manager log."""
    d = None
    if not isinstance(port, int):
        d, port = port, port.port
    if isinstance(rcpts, str):
        rcpts = [rcpts]
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=timeout) as s:
            s.ehlo("client.test")
            return s.sendmail(sender, rcpts, data if data is not None else message())
    except (OSError, smtplib.SMTPException) as e:
        if d is None:
            raise
        time.sleep(0.2)
        raise AssertionError("sending failed: %r\n%s" % (e, qmgr_log(d)))


def send_many(port, items, timeout=30):
    """Several messages over one session: items = [(sender, rcpts, data)]."""
    with smtplib.SMTP("127.0.0.1", port, timeout=timeout) as s:
        s.ehlo("client.test")
        for sender, rcpts, data in items:
            s.sendmail(sender, rcpts, data)


def wait_until(pred, timeout=15, step=0.05):
    """Polls pred() until it is true (returns its value) or the deadline
    passes (returns the last value)."""
    deadline = time.monotonic() + timeout
    v = pred()
    while not v and time.monotonic() < deadline:
        time.sleep(step)
        v = pred()
    return v


def live(spool):
    return spool_list(spool)


def wait_spool_empty(spool, timeout=20):
    return wait_until(lambda: not live(spool), timeout, 0.1)


def queue_counters(d):
    """The "sluiced queue: ..." exit line as a dict ({} before exit)."""
    m = re.search(r"sluiced queue: (.*)", d.log())
    if not m:
        return {}
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(1))}


OUTCOME = re.compile(r"qmgr: message ([0-9a-f]{16}): <([^>]*)> (delivered|failed|deferred) "
                     r"via (\S+): (.*)")


def outcomes(d, rcpt=None, kind=None):
    """[(msgid, rcpt, kind, via, reply)] from the daemon's log."""
    out = []
    for line in d.log().splitlines():
        m = OUTCOME.search(line)
        if not m:
            continue
        t = m.groups()
        if rcpt is not None and t[1].lower() != rcpt.lower():
            continue
        if kind is not None and t[2] != kind:
            continue
        out.append(t)
    return out


def qmgr_log(d):
    """The queue manager's log lines (for failure messages), and how the
    daemon ended if it did (a crash shows as a negative signal number and
    the sanitizer's report when there is one)."""
    lines = d.log().splitlines()
    out = [l for l in lines if "qmgr" in l or "sluiced queue" in l]
    rc = d.proc.poll() if d.proc else None
    if rc is not None:
        out.append("sluiced EXITED with %s" % rc)
        out += [l for l in lines if "Sanitizer" in l or l.lstrip().startswith("#")][:30]
    return "\n".join(out)


def wait_hop(d, hop, n, timeout=15):
    """Until the next hop accepted n messages; stops early (False) when the
    daemon died."""
    return wait_until(lambda: hop.count() >= n or d.proc.poll() is not None,
                      timeout) and hop.count() >= n
