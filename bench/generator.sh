#!/usr/bin/env bash
# bench/generator.sh - is sluice-bench the bottleneck?  smtp-source(1) and
# sluice-bench against one smtp-sink(1), same machine, same invocation,
# alternating: 4 KiB messages, 32 sessions, with and without connection
# reuse.  The load generator must reach >= 1.5x smtp-source's rate.
#
# Usage: bench/generator.sh [RUNS]     (default 3; as root: smtp-sink -u)
# Environment: BUILD [build], MSGS_REUSE [20000], MSGS_NOREUSE [8000].
# Prints one line per measurement and the median ratios.
set -uo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_NAME=generator
PYTHON=${PYTHON:-/usr/bin/python3}
# shellcheck source=bench/lib/common.sh
. "$REPO/bench/lib/common.sh"
# shellcheck source=bench/lib/sink.sh
. "$REPO/bench/lib/sink.sh"
RUNS=${1:-3}
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$REPO/$BUILD ;; esac
SB=$BUILD/bin/sluice-bench
[ -x "$SB" ] || bench_die "$SB is missing (make build)"
[[ $RUNS =~ ^[0-9]+$ ]] && [ "$RUNS" -ge 1 ] || bench_die "RUNS must be >= 1"
BENCH_TMP=$(mktemp -d "${TMPDIR:-/tmp}/sluice-generator.XXXXXX") || bench_die "mktemp failed"
trap 'sink_stop; bench_kill_tracked; rm -rf "$BENCH_TMP"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
SINK_PORT=$(bench_free_port)
sink_start "$BENCH_TMP" "$SINK_PORT" 32 || bench_die "smtp-sink did not start"
declare -A R=()
for ((run = 1; run <= RUNS; run++)); do
    for mode in reuse noreuse; do
        if [ $mode = reuse ]; then d=(-d) sbm=--reuse n=${MSGS_REUSE:-20000}; else d=() sbm=--no-reuse n=${MSGS_NOREUSE:-8000}; fi
        t0=$(bench_now_ns)
        bench_run "$BENCH_TMP/src.out" "$BENCH_TMP/src.err" timeout 600 /usr/sbin/smtp-source -4 -s 32 \
            -m "$n" -l 4096 "${d[@]}" -f a@client.bench.test -t b@dest.example.test "127.0.0.1:$SINK_PORT" ||
            bench_die "smtp-source failed: $(tail -n 2 "$BENCH_TMP/src.err")"
        t1=$(bench_now_ns)
        src=$(bench_calc "$n / (($t1 - $t0) / 1e9)")
        bench_run "$BENCH_TMP/sb.json" "$BENCH_TMP/sb.err" timeout 600 "$SB" --json --no-progress -s 32 \
            -m "$n" -l 4096 $sbm "127.0.0.1:$SINK_PORT" || bench_die "sluice-bench failed: $(cat "$BENCH_TMP/sb.err")"
        sb=$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["msg_per_s"])' "$BENCH_TMP/sb.json")
        ratio=$(bench_calc "$sb / $src")
        R[$mode]="${R[$mode]:-} $ratio"
        printf 'run %d/%d %-8s smtp-source %8.0f msg/s  sluice-bench %8.0f msg/s  %.2fx\n' \
            "$run" "$RUNS" "$mode" "$src" "$sb" "$ratio"
    done
done
for mode in reuse noreuse; do
    # shellcheck disable=SC2086
    m=$(bench_median ${R[$mode]})
    printf 'median sluice-bench/smtp-source, %-8s %.2fx  %s (target >= 1.5x)\n' "$mode" "$m" \
        "$(bench_verdict "$m" '>=' 1.5)"
done
