"""10,000 live binding changes through sluicectl against a running sluiced
leave its memory flat: replaced chains and removed or replaced bindings
are freed while the daemon runs (sinks/engine.c, "Freeing what a change
retired"; issue 10).

The daemon has no configuration file, so the changes are not written back
(no fsync per change); eight lanes of sluicectl processes each change a
binding of their own (disable, enable, setprop with a 4 KB value: a new
instance), so every request is a real change however they interleave.
Mail goes through the bindings meanwhile.
"""
import concurrent.futures
import os
import signal
import subprocess
import time

from conftest import BUILD
from delivery_util import message, send

SLUICECTL = os.path.join(BUILD, "bin", "sluicectl")
LANES = 8
WARMUP = 100  # changes per lane before the first measure
CHANGES = 10000  # measured, over all lanes
BLOB = 4000
BUDGET_S = float(os.environ.get("SLUICE_CHURN_BUDGET_S", "420"))


def _ctl(sock, *args):
    r = subprocess.run([SLUICECTL, "-s", sock] + list(args), capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, (args[:3], r.returncode, r.stdout, r.stderr)
    return r.stdout


def _lane(sock, lane, first, n, deadline):
    """Changes first .. first+n-1 of binding b<lane>: disable, enable,
    setprop; returns how many were made before the deadline."""
    name = "b%d" % lane
    for i in range(first, first + n):
        if time.monotonic() > deadline:
            return i - first
        k = i % 3
        if k == 0:
            _ctl(sock, "bindings", "disable", name)
        elif k == 1:
            _ctl(sock, "bindings", "enable", name)
        else:
            blob = ("%d-" % i) + "x" * BLOB
            _ctl(sock, "bindings", "setprop", name, "blob", blob)
    return n


def _rounds(sock, first, per_lane, deadline):
    with concurrent.futures.ThreadPoolExecutor(LANES) as ex:
        futs = [ex.submit(_lane, sock, l, first, per_lane, deadline) for l in range(LANES)]
        return sum(f.result() for f in futs)


def test_ten_thousand_live_changes_leave_rss_flat(daemon_factory, tmp_path):
    # 10,000 sluicectl processes take 60-110 s on a busy two-core machine:
    # this test's own bound replaces conftest's 120 s (its fixture still
    # cancels the alarm at the end)
    signal.alarm(int(BUDGET_S) + 60)
    sock = str(tmp_path / "ctl.sock")
    d = daemon_factory(control_socket='"%s"' % sock)
    for l in range(LANES):
        _ctl(sock, "bindings", "add", "b%d" % l, "event=mail", "sink=builtin:noop",
             "prop.blob=" + "y" * BLOB)
    deadline = time.monotonic() + BUDGET_S
    t0 = time.monotonic()
    assert _rounds(sock, 0, WARMUP, deadline) == WARMUP * LANES
    time.sleep(3)  # what the warm-up retired goes (two turns of idle workers)
    before = d.rss_kib()
    per_lane = CHANGES // LANES
    made = 0
    first = WARMUP
    while made < CHANGES:  # in steps, with mail through the chain between them
        step = min(per_lane - (first - WARMUP), 125)
        made += _rounds(sock, first, step, deadline)
        first += step
        assert time.monotonic() < deadline, "only %d changes in %.0f s" % (made, BUDGET_S)
        assert send(d, "churn@client.test", ["rcpt@example.test"],
                    message("through %d changes" % made)) == {}
    assert made == CHANGES
    took = time.monotonic() - t0
    time.sleep(3)  # the last retired objects: two turns of every worker
    after = d.rss_kib()
    print("10000 live changes in %.1f s: VmRSS %d KiB -> %d KiB (%+d)"
          % (took, before, after, after - before))
    # without reclamation: some 3,300 instances with a 4 KB property each,
    # and 10,000 chains: about 20 MB
    assert after - before < 4096, (before, after)
    txt = _ctl(sock, "bindings", "list")
    assert "b0" in txt and "b%d" % (LANES - 1) in txt
    assert d.stop() == 0
