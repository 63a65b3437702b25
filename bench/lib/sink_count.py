#!/usr/bin/env python3
"""bench/lib/sink_count.py - count the messages smtp-sink(1) received.

Usage: smtp-sink -c ... > FIFO;  sink_count.py --want N --status FILE < FIFO

smtp-sink -c writes "sess=S quit=Q mesg=M\\r" to its standard output each
time it receives the final "." of a message (and when a session ends or a
QUIT arrives), M being the number of messages received so far.  This helper
reads that stream (through a pipe, so smtp-sink never waits on a disk),
keeps the last counters and rewrites FILE (atomically: write + rename) as

    mesg=M sess=S quit=Q first_ns=T done_ns=T now_ns=T last_ns=T

at most every --every seconds (also when no input came meanwhile but the
counters changed since the last write), at once when M first reaches --want
(done_ns, the wall clock in ns since the epoch at that moment, same clock as
`date +%s%N`; 0 until then; first_ns is the time of the first message;
last_ns the time M last grew) and at end of input.  It never stops reading before end of input, so smtp-sink
can go on answering messages beyond N (duplicates then show as M > N).
Exit status 0 at end of input, 2 on a usage error.
"""

import argparse
import os
import re
import select
import sys
import time

REC = re.compile(rb"sess=(\d+) quit=(\d+) mesg=(\d+)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--want", type=int, required=True)
    ap.add_argument("--status", required=True)
    ap.add_argument("--every", type=float, default=0.1)
    a = ap.parse_args()
    if a.want < 1:
        ap.error("--want must be >= 1")

    sess = quit_ = mesg = 0
    first_ns = done_ns = last_ns = 0
    dirty = False
    tmp = a.status + ".tmp"

    def write():
        with open(tmp, "w") as f:
            f.write("mesg=%d sess=%d quit=%d first_ns=%d done_ns=%d now_ns=%d last_ns=%d\n"
                    % (mesg, sess, quit_, first_ns, done_ns, time.time_ns(), last_ns))
        os.replace(tmp, a.status)

    write()
    fd = sys.stdin.fileno()
    tail = b""
    last = time.monotonic()
    while True:
        if not select.select([fd], [], [], a.every)[0]:
            if dirty:  # quiet now: the last counters must not wait for more input
                write()
                dirty = False
                last = time.monotonic()
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data = tail + chunk
        # Records end with "\r"; keep an unfinished one for the next read.
        cut = data.rfind(b"\r")
        if cut < 0:
            tail = data[-4096:]
            continue
        tail = data[cut + 1:]
        # Only the last complete record matters: the counters only grow.
        m = REC.match(data, max(data.rfind(b"sess=", 0, cut), 0), cut)
        if m is None:
            continue
        old = mesg
        sess, quit_, mesg = (int(x) for x in m.groups())
        if mesg > old:
            last_ns = time.time_ns()
        dirty = True
        if mesg > 0 and first_ns == 0:
            first_ns = time.time_ns()
        if mesg >= a.want and done_ns == 0:
            done_ns = time.time_ns()
            write()
            dirty = False
            last = time.monotonic()
        elif time.monotonic() - last >= a.every:
            write()
            dirty = False
            last = time.monotonic()
    write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
