#!/usr/bin/env python3
"""bench/lib/sink_hang.py - time a never-completing sink's deadline reply.

Used by bench/sinks.sh.  sluiced runs with a `builtin:delay` binding with
`never = true` (at eod, or mail) whose rule matches the sender this client
uses (`MAIL FROM=*@hang.example`).  The client keeps PARALLEL sessions
waiting on that sink at all times: each connects, says EHLO, MAIL FROM a
hang.example sender, RCPT TO, DATA and a small message, and times the
interval from sending the final "." (or the MAIL command, --event mail) to
the reply, which must be 4xx with an enhanced code 4.7.x (the binding's
on_deadline = "tempfail").  It goes on until at least COUNT sessions are
done and the STOP file exists (the script creates it when its concurrent
smtp-source load is over), and writes READY once the first PARALLEL
sessions are waiting (the script starts that load then).

Output on stdout, key=value lines:
  sessions=N ok=N bad=N
  wait_ms=a,b,c,...         the intervals, in completion order
  median_ms= p90_ms= max_ms= min_ms=
  bad_reply=...             the first reply that was not 4xx 4.7.x
Exit status: 0 when every session got a 4.7.x reply, 1 otherwise, 2 on a
usage or connection error.  Standard library only; every socket operation
has a timeout.
"""

import argparse
import os
import socket
import sys
import threading
import time


class SmtpError(Exception):
    pass


def read_reply(f):
    """One SMTP reply (possibly multi-line): (code, last line text)."""
    lines = []
    while True:
        line = f.readline()
        if not line:
            raise SmtpError("connection closed (after %r)" % lines)
        line = line.decode("ascii", "replace").rstrip("\r\n")
        lines.append(line)
        if len(line) < 4 or line[3] != "-":
            break
    try:
        code = int(lines[-1][:3])
    except ValueError:
        raise SmtpError("bad reply %r" % lines)
    return code, lines[-1]


def cmd(sock, f, line, want):
    sock.sendall(line.encode("ascii") + b"\r\n")
    code, text = read_reply(f)
    if code != want:
        raise SmtpError("%s -> %s" % (line, text))
    return text


WAITING = [0]
WAITING_LOCK = threading.Lock()
ALL_WAITING = threading.Event()


def now_waiting(args):
    with WAITING_LOCK:
        WAITING[0] += 1
        if WAITING[0] >= args.parallel:
            ALL_WAITING.set()


def one_session(args, n):
    """Returns (wait_ms, reply line)."""
    timeout = args.deadline_ms / 1000.0 + 30
    with socket.create_connection(("127.0.0.1", args.port), timeout=timeout) as sock:
        # Without TCP_NODELAY, Nagle holds the final "." until the body is
        # acknowledged, and the server delays that ACK (it has nothing to
        # say yet): 40 ms on Linux loopback, charged to the sink.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        f = sock.makefile("rb")
        code, text = read_reply(f)
        if code != 220:
            raise SmtpError("greeting: " + text)
        cmd(sock, f, "EHLO hang-client.bench.test", 250)
        sender = "MAIL FROM:<hang-%d@hang.example>" % n
        if args.event == "mail":
            t0 = time.monotonic()
            sock.sendall(sender.encode("ascii") + b"\r\n")
            now_waiting(args)
        else:
            cmd(sock, f, sender, 250)
            cmd(sock, f, "RCPT TO:<%s>" % args.rcpt, 250)
            cmd(sock, f, "DATA", 354)
            body = (
                "From: <hang-%d@hang.example>\r\nTo: <%s>\r\n"
                "Subject: waits for a sink that never answers\r\n\r\n" % (n, args.rcpt)
            )
            body += ("x" * 74 + "\r\n") * 8
            sock.sendall(body.encode("ascii"))
            t0 = time.monotonic()
            sock.sendall(b".\r\n")
            now_waiting(args)
        code, text = read_reply(f)
        t1 = time.monotonic()
        try:
            sock.sendall(b"QUIT\r\n")
            read_reply(f)
        except (OSError, SmtpError):
            pass
        return (t1 - t0) * 1000.0, text


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, default=10, help="at least this many sessions")
    ap.add_argument("--parallel", type=int, default=4, help="sessions waiting at once")
    ap.add_argument("--deadline-ms", type=int, default=1000)
    ap.add_argument("--event", choices=["eod", "mail"], default="eod")
    ap.add_argument("--rcpt", default="rcpt@dest.example.test")
    ap.add_argument("--ready", help="file written once PARALLEL sessions wait")
    ap.add_argument("--stop", help="go on until this file exists (and COUNT are done)")
    ap.add_argument("--max-seconds", type=float, default=300, help="hard limit")
    args = ap.parse_args()
    if args.count < 1 or args.parallel < 1:
        ap.error("--count and --parallel must be >= 1")

    lock = threading.Lock()
    waits, replies, bad, errors = [], [], [], []
    started = [0]
    t_end = time.monotonic() + args.max_seconds

    def more():
        with lock:
            if errors or time.monotonic() > t_end:
                return None
            done = started[0] >= args.count
            if done and (args.stop is None or os.path.exists(args.stop)):
                return None
            started[0] += 1
            return started[0]

    def worker():
        while True:
            n = more()
            if n is None:
                return
            try:
                ms, text = one_session(args, n)
            except (OSError, SmtpError) as e:
                with lock:
                    errors.append("session %d: %s" % (n, e))
                return
            ok = text.startswith("4") and text[4:9].startswith("4.7.")
            with lock:
                waits.append(ms)
                replies.append(text)
                if not ok:
                    bad.append(text)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(args.parallel)]
    for t in threads:
        t.start()
    if args.ready:
        # PARALLEL sessions have sent their final dot (or MAIL): they wait.
        ALL_WAITING.wait(min(30.0, args.max_seconds))
        with open(args.ready, "w") as fh:
            fh.write("ready\n")
    for t in threads:
        t.join(max(0.0, t_end - time.monotonic()) + args.deadline_ms / 1000.0 + 35)

    s = sorted(waits)
    print("sessions=%d ok=%d bad=%d" % (len(waits), len(waits) - len(bad), len(bad)))
    print("wait_ms=" + ",".join("%.1f" % w for w in waits))
    if s:
        med = s[len(s) // 2] if len(s) % 2 else (s[len(s) // 2 - 1] + s[len(s) // 2]) / 2
        print("median_ms=%.1f" % med)
        print("p90_ms=%.1f" % s[min(len(s) - 1, int(len(s) * 0.9))])
        print("min_ms=%.1f" % s[0])
        print("max_ms=%.1f" % s[-1])
    if replies:
        print("reply=" + replies[0])
    if bad:
        print("bad_reply=" + bad[0])
    for e in errors:
        print("error: " + e, file=sys.stderr)
    if errors or not waits:
        return 2
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
