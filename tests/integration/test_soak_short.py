"""The soak's short form (tests/soak/soak.py; `make soak` runs the long
one): SLUICE_SOAK_MINUTES (default 1) of mixed load at 70% of peak with
TLS, AUTH, sinks and a counting next hop that temp-fails some; RSS and fds
bounded, the queue drained, every 250 delivered exactly once."""
import os
import signal
import subprocess
import sys

from conftest import BUILD

SOAK = os.path.join(os.path.dirname(__file__), "..", "soak", "soak.py")


def test_soak_short():
    minutes = float(os.environ.get("SLUICE_SOAK_MINUTES", "1"))
    signal.alarm(int(minutes * 60) + 300)  # longer than the suite's per-test bound
    r = subprocess.run([sys.executable, SOAK, BUILD, "--minutes", str(minutes),
                        "--sample", "15"], capture_output=True, text=True,
                       timeout=minutes * 60 + 280)
    print(r.stdout)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
    assert "soak: ok" in r.stdout
