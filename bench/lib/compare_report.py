#!/usr/bin/env python3
"""bench/lib/compare_report.py - bench/compare's report: medians, tables, plots.

Usage: compare_report.py --raw RAW.tsv --latency LAT.tsv --out DIR --date DATE
                         [--header TEXT] [--config TEXT]

RAW.tsv has one line per measurement (kind size sessions reuse tls target
run rate cpu_us syncs; "NA" where a value could not be had); LAT.tsv one
line per open-loop run (target fraction offered achieved p50_us p90_us
p99_us p999_us).  Writes DIR/DATE.md (tables of medians, with sluiced's
ratio to Postfix and to the smtp-sink ceiling), DIR/DATE-throughput.png
(ingest msg/s against sessions) and DIR/DATE-latency.png (latency
percentiles against offered load) with gnuplot when it is installed (the
report says so when it is not).  Exit 0, or 2 on unreadable input.
"""

import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

TARGETS = ("sink", "postfix", "sluiced")
LABEL = {"sink": "smtp-sink", "postfix": "Postfix", "sluiced": "sluiced"}


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def median(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def fmt(v, f="%.0f"):
    return "NA" if v is None else f % v


def ratio(a, b, f="%.2f×"):
    return "NA" if a is None or b in (None, 0) else f % (a / b)


def load(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def size_label(s):
    s = int(s)
    return "%d KiB" % (s // 1024) if s % 1024 == 0 else "%d B" % s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--raw", required=True)
    ap.add_argument("--latency", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--date", required=True)
    ap.add_argument("--header", default="")
    ap.add_argument("--config", default="")
    a = ap.parse_args()
    try:
        raw = load(a.raw)
        lat = load(a.latency)
    except OSError as e:
        print("compare_report: %s" % e, file=sys.stderr)
        return 2

    cells = {}  # (kind, size, sessions, reuse, tls, target) -> lists
    for r in raw:
        k = (r["kind"], int(r["size"]), int(r["sessions"]), r["reuse"], r["tls"], r["target"])
        c = cells.setdefault(k, {"rate": [], "cpu": [], "syncs": [], "n": 0})
        c["rate"].append(num(r["rate"]))
        c["cpu"].append(num(r["cpu_us"]))
        c["syncs"].append(num(r["syncs"]))
        c["n"] += 1
    med = {k: {m: median(v[m]) for m in ("rate", "cpu", "syncs")} | {"n": v["n"]}
           for k, v in cells.items()}

    def get(kind, size, sess, reuse, tls, target, m="rate"):
        c = med.get((kind, size, sess, reuse, tls, target))
        return None if c is None else c[m]

    kinds = sorted({k[0] for k in med}, key=lambda x: ("ingest", "relay").index(x))
    sizes = sorted({k[1] for k in med})
    sessions = sorted({k[2] for k in med})
    reuses = sorted({k[3] for k in med}, key=lambda x: ("reuse", "noreuse").index(x))
    tlss = sorted({k[4] for k in med}, key=lambda x: ("plain", "tls").index(x))
    runs = max((c["n"] for c in med.values()), default=0)

    base = os.path.join(a.out, a.date)
    lines = ["# sluice against Postfix and the smtp-sink ceiling, %s" % a.date, ""]
    if a.header:
        lines += [a.header, ""]
    if a.config:
        lines += ["`bench/compare` %s; medians of %d run(s), the order of the servers "
                  "rotated from run to run." % (a.config, runs), ""]
    lines += [
        "msg/s: ingest = messages accepted (250 to the final dot) over a closed-loop run;",
        "relay = messages from the first connect until the final hop (a counting",
        "smtp-sink) has them all.  CPU = the server's utime+stime per message (/proc;",
        "Postfix: master and all its children).  fdatasync/msg: sluiced's own count",
        "(Postfix syncs each queue file; not counted here).  TLS = STARTTLS on every",
        "connection (smtp-sink has no TLS: no ceiling there).  Load: sluice-bench.",
        "",
    ]
    for kind in kinds:
        for size in sizes:
            lines += ["## %s, %s messages" % (kind, size_label(size)), ""]
            hdr = ["sessions", "reuse", "TLS"]
            if kind == "ingest":
                hdr.append("smtp-sink msg/s")
            hdr += ["Postfix msg/s", "sluiced msg/s", "sluiced/Postfix"]
            if kind == "ingest":
                hdr.append("sluiced/ceiling")
            hdr += ["CPU µs/msg sluiced", "CPU µs/msg Postfix", "fdatasync/msg sluiced"]
            lines.append("| " + " | ".join(hdr) + " |")
            lines.append("|" + "---|" * len(hdr))
            for sess in sessions:
                for reuse in reuses:
                    for tls in tlss:
                        sl = get(kind, size, sess, reuse, tls, "sluiced")
                        pf = get(kind, size, sess, reuse, tls, "postfix")
                        sk = get(kind, size, sess, reuse, tls, "sink")
                        row = [str(sess), "yes" if reuse == "reuse" else "no",
                               "STARTTLS" if tls == "tls" else "no"]
                        if kind == "ingest":
                            row.append("—" if tls == "tls" else fmt(sk))
                        row += [fmt(pf), fmt(sl), ratio(sl, pf)]
                        if kind == "ingest":
                            row.append("—" if tls == "tls" else ratio(sl, sk, "%.2f"))
                        row += [fmt(get(kind, size, sess, reuse, tls, "sluiced", "cpu"), "%.1f"),
                                fmt(get(kind, size, sess, reuse, tls, "postfix", "cpu"), "%.1f"),
                                fmt(get(kind, size, sess, reuse, tls, "sluiced", "syncs"), "%.3f")]
                        lines.append("| " + " | ".join(row) + " |")
            lines.append("")

    if lat:
        lines += ["## Latency against offered load", "",
                  "Open loop (sluice-bench --rate, coordinated-omission corrected: from when",
                  "each message was due), ingest, reuse, plaintext; the offered rate is a",
                  "fraction of the same server's closed-loop median above.  Milliseconds, MAIL",
                  "to the final reply.", "",
                  "| server | fraction | offered msg/s | achieved msg/s | p50 | p90 | p99 | p99.9 |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in lat:
            lines.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
                LABEL.get(r["target"], r["target"]), r["fraction"], fmt(num(r["offered"])),
                fmt(num(r["achieved"])),
                *(fmt(num(r[k]) / 1000 if num(r[k]) is not None else None, "%.2f")
                  for k in ("p50_us", "p90_us", "p99_us", "p999_us"))))
        lines.append("")

    plots = plot(a, base, med, lat, sizes, sessions, reuses)
    lines += plots
    os.makedirs(a.out, exist_ok=True)
    with open(base + ".md", "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print(base + ".md")
    return 0


def plot(a, base, med, lat, sizes, sessions, reuses):
    gp = shutil.which("gnuplot")
    if gp is None:
        return ["(no plots: gnuplot is not installed; apt-get install gnuplot-nox)", ""]
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        size = sizes[0] if sizes else 4096
        series = []
        for t in TARGETS:
            for reuse in reuses:
                pts = [(s, med.get(("ingest", size, s, reuse, "plain", t), {}).get("rate"))
                       for s in sessions]
                pts = [(s, v) for s, v in pts if v is not None]
                if not pts:
                    continue
                f = os.path.join(tmp, "%s-%s.dat" % (t, reuse))
                with open(f, "w") as fh:
                    fh.writelines("%d %f\n" % p for p in pts)
                series.append((f, "%s, %s" % (LABEL[t], "reuse" if reuse == "reuse" else "no reuse")))
        script = ["set terminal png size 900,560", "set key outside right",
                  "set grid", "set logscale x 2", "set xlabel 'sessions'",
                  "set ylabel 'messages/s'",
                  "set title 'ingest, %s messages, plaintext (median)'" % size_label(size)]
        if series:
            png = base + "-throughput.png"
            script.append("set output '%s'" % png)
            script.append("plot " + ", ".join("'%s' using 1:2 with linespoints lw 2 title '%s'"
                                              % s for s in series))
            if run_gp(gp, script, tmp):
                out += ["![throughput against sessions](%s)" % os.path.basename(png), ""]
        lser = []
        for t in ("sluiced", "postfix"):
            rows = [r for r in lat if r["target"] == t]
            if not rows:
                continue
            f = os.path.join(tmp, "lat-%s.dat" % t)
            with open(f, "w") as fh:
                for r in rows:
                    fh.write("%s %s %s %s\n" % (r["fraction"], num(r["p50_us"]) / 1000,
                                                num(r["p99_us"]) / 1000, num(r["p999_us"]) / 1000))
            lser += ["'%s' using 1:2 with linespoints lw 2 title '%s p50'" % (f, LABEL[t]),
                     "'%s' using 1:3 with linespoints lw 2 title '%s p99'" % (f, LABEL[t]),
                     "'%s' using 1:4 with linespoints dt 2 title '%s p99.9'" % (f, LABEL[t])]
        if lser:
            png = base + "-latency.png"
            script = ["set terminal png size 900,560", "set key outside right", "set grid",
                      "set logscale y",
                      "set xlabel 'offered load, fraction of the server''s own closed-loop rate'",
                      "set ylabel 'ms, MAIL to final reply'",
                      "set title 'latency against offered load (open loop, corrected)'",
                      "set output '%s'" % png, "plot " + ", ".join(lser)]
            if run_gp(gp, script, tmp):
                out += ["![latency against offered load](%s)" % os.path.basename(png), ""]
    return out


def run_gp(gp, script, tmp):
    path = os.path.join(tmp, "plot.gp")
    with open(path, "w") as fh:
        fh.write("\n".join(script) + "\n")
    r = subprocess.run([gp, path], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        print("compare_report: gnuplot: %s" % r.stderr.strip(), file=sys.stderr)
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
