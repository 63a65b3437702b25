#!/usr/bin/env python3
"""idle_conns.py - what N idle SMTP connections cost a server in RSS.

Reads VmRSS of --pid, opens --count connections to --host:--port, on each
one waits for the 220 greeting, sends EHLO and reads the whole 250 reply,
then leaves it idle.  After --settle seconds with all of them open it reads
VmRSS again, checks with NOOP that the connections are still served,
closes them (QUIT) and prints key=value lines:

    opened=1000 failed=0 alive=1000 rss_before_kib=... rss_after_kib=...
    hwm_after_kib=... open_seconds=...

Exit status: 0 when every connection was opened and stayed alive, 1 when
some were not (the numbers are still printed), 2 on a usage error.
Standard library only; every wait has a timeout.
"""

import argparse
import asyncio
import resource
import sys
import time


def proc_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


async def read_reply(reader, timeout):
    """Read one (possibly multi-line) SMTP reply; return its code."""
    while True:
        line = await asyncio.wait_for(reader.readline(), timeout)
        if not line:
            raise ConnectionError("connection closed by server")
        if len(line) < 4 or line[3:4] != b"-":
            return int(line[:3])


async def open_one(i, args, sem, conns, errors):
    async with sem:
        for attempt in range(3):
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(args.host, args.port), args.timeout)
            except (OSError, asyncio.TimeoutError) as e:
                # A full listen queue shows as a reset or a timeout: retry.
                err = e
                await asyncio.sleep(0.1 * (attempt + 1))
                continue
            try:
                code = await read_reply(reader, args.timeout)
                if code != 220:
                    raise ConnectionError(f"greeting {code}")
                writer.write(b"EHLO idle%d.bench.test\r\n" % i)
                code = await read_reply(reader, args.timeout)
                if code != 250:
                    raise ConnectionError(f"EHLO {code}")
                conns.append((reader, writer))
                return
            except (OSError, ConnectionError, asyncio.TimeoutError, ValueError) as e:
                err = e
                writer.close()
                await asyncio.sleep(0.1 * (attempt + 1))
        errors.append(f"{type(err).__name__}: {err}")


async def check_alive(reader, writer, timeout):
    try:
        writer.write(b"NOOP\r\n")
        return await read_reply(reader, timeout) == 250
    except (OSError, ConnectionError, asyncio.TimeoutError, ValueError):
        return False


async def close_one(reader, writer):
    try:
        writer.write(b"QUIT\r\n")
        await asyncio.wait_for(reader.readline(), 2)
    except (OSError, ConnectionError, asyncio.TimeoutError):
        pass
    writer.close()


async def main(args):
    conns, errors = [], []
    out = {"rss_before_kib": proc_kib(args.pid, "VmRSS")}
    sem = asyncio.Semaphore(args.concurrency)
    t0 = time.monotonic()
    tasks = [asyncio.ensure_future(open_one(i, args, sem, conns, errors))
             for i in range(args.count)]
    done, pending = await asyncio.wait(tasks, timeout=args.deadline)
    for t in pending:
        t.cancel()
    out["open_seconds"] = round(time.monotonic() - t0, 3)
    out["opened"] = len(conns)
    out["failed"] = args.count - len(conns)
    await asyncio.sleep(args.settle)
    out["rss_after_kib"] = proc_kib(args.pid, "VmRSS")
    out["hwm_after_kib"] = proc_kib(args.pid, "VmHWM")
    alive = await asyncio.wait_for(asyncio.gather(
        *(check_alive(r, w, args.timeout) for r, w in conns)), args.deadline)
    out["alive"] = sum(alive)
    await asyncio.wait_for(asyncio.gather(
        *(close_one(r, w) for r, w in conns)), args.deadline)
    for k in ("opened", "failed", "alive", "rss_before_kib", "rss_after_kib",
              "hwm_after_kib", "open_seconds"):
        print(f"{k}={out[k]}")
    if errors:
        print(f"first_error={errors[0]!r}", file=sys.stderr)
    return 0 if out["opened"] == args.count == out["alive"] else 1


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True,
                    help="server process whose /proc/PID/status is read")
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=64,
                    help="connections being set up at the same time")
    ap.add_argument("--timeout", type=float, default=10.0,
                    help="per connect / per reply, seconds")
    ap.add_argument("--deadline", type=float, default=120.0,
                    help="for each phase (open, check, close), seconds")
    ap.add_argument("--settle", type=float, default=1.0,
                    help="seconds between the last open and the RSS reading")
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = a.count + 64
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            print(f"idle_conns: RLIMIT_NOFILE hard limit {hard} < {want}",
                  file=sys.stderr)
            sys.exit(2)
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    sys.exit(asyncio.run(main(a)))
