#!/usr/bin/env python3
"""bigmsg.py - how much a server's RSS rises while it takes one big message.

Sends one message of --size bytes (header plus body lines of 76 characters
and CRLF) with smtplib to --host:--port, while a background thread samples
VmRSS of --pid every --interval seconds.  Before sending it reads VmRSS and
VmHWM; after the final 250 it reads VmHWM again.  The peak is the highest
sample, or VmHWM after the send when the send raised VmHWM (VmHWM is the
kernel's own high-water mark, so nothing between samples is missed).
Prints key=value lines:

    size=... reply=250 seconds=... rss_before_kib=... hwm_before_kib=...
    peak_sampled_kib=... peak_rssanon_kib=... peak_rssfile_kib=...
    peak_rssshmem_kib=... hwm_after_kib=... peak_kib=... rise_kib=...

(the peak_rss* values split the highest sampled VmRSS into anonymous
memory, file mappings and shared memory, to tell buffers from mappings).

Exit status 0 when the server accepted the message, 1 otherwise, 2 on a
usage error.  Standard library only.
"""

import argparse
import smtplib
import sys
import threading
import time


def proc_status(pid):
    """The "Name:  N kB" fields of /proc/PID/status as a dict of KiB."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and parts[2] == "kB":
                    out[parts[0].rstrip(":")] = int(parts[1])
    except OSError:
        pass
    return out


def proc_kib(pid, field):
    return proc_status(pid).get(field)


def build_message(size, sender, rcpt):
    head = (f"From: <{sender}>\r\nTo: <{rcpt}>\r\n"
            f"Subject: bigmsg {size} bytes\r\n"
            f"Message-ID: <bigmsg.{time.time_ns()}@bench.test>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n").encode()
    # 64 distinct 76-character lines, repeated: no line starts with ".".
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    block = b"".join((alphabet[i:] + alphabet[:i] + alphabet[:12]) + b"\r\n"
                     for i in range(64))
    left = max(size - len(head), 0)
    body = block * (left // len(block))
    body += block[:(left - len(body)) // 78 * 78]
    return head + body


class Sampler(threading.Thread):
    def __init__(self, pid, interval):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak = 0
        self.at_peak = {}   # the whole status at the highest VmRSS seen
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            st = proc_status(self.pid)
            v = st.get("VmRSS")
            if v is not None and v > self.peak:
                self.peak, self.at_peak = v, st
            self.stop.wait(self.interval)


def main(a):
    msg = build_message(a.size, a.sender, a.rcpt)
    out = {"size": len(msg),
           "rss_before_kib": proc_kib(a.pid, "VmRSS"),
           "hwm_before_kib": proc_kib(a.pid, "VmHWM")}
    if out["rss_before_kib"] is None:
        print(f"bigmsg: no /proc/{a.pid}/status", file=sys.stderr)
        return 2
    sampler = Sampler(a.pid, a.interval)
    sampler.start()
    t0 = time.monotonic()
    ok = False
    try:
        with smtplib.SMTP(a.host, a.port, timeout=a.timeout) as s:
            s.ehlo("bigmsg.bench.test")
            refused = s.sendmail(a.sender, [a.rcpt], msg)
            ok = not refused
            out["reply"] = 250 if ok else "refused"
    except (smtplib.SMTPException, OSError) as e:
        out["reply"] = repr(e).replace(" ", "_")
    out["seconds"] = round(time.monotonic() - t0, 3)
    time.sleep(2 * a.interval)
    sampler.stop.set()
    sampler.join(5)
    out["peak_sampled_kib"] = sampler.peak
    for f in ("RssAnon", "RssFile", "RssShmem"):
        out[f"peak_{f.lower()}_kib"] = sampler.at_peak.get(f, "NA")
    out["hwm_after_kib"] = proc_kib(a.pid, "VmHWM")
    peak = sampler.peak
    if out["hwm_after_kib"] is not None and out["hwm_before_kib"] is not None \
            and out["hwm_after_kib"] > out["hwm_before_kib"]:
        peak = max(peak, out["hwm_after_kib"])
    out["peak_kib"] = peak
    out["rise_kib"] = max(peak - out["rss_before_kib"], 0)
    for k in ("size", "reply", "seconds", "rss_before_kib", "hwm_before_kib",
              "peak_sampled_kib", "peak_rssanon_kib", "peak_rssfile_kib",
              "peak_rssshmem_kib", "hwm_after_kib", "peak_kib", "rise_kib"):
        print(f"{k}={out[k]}")
    return 0 if ok else 1


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--size", type=int, default=50 * 1024 * 1024)
    ap.add_argument("--sender", default="big@client.bench.test")
    ap.add_argument("--rcpt", default="rcpt@dest.example.test")
    ap.add_argument("--interval", type=float, default=0.02)
    ap.add_argument("--timeout", type=float, default=300.0)
    sys.exit(main(ap.parse_args()))
